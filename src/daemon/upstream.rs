//! Connect channels in the shell: a session's connection to an upstream server (`forward`),
//! a non-blocking socket registered as the session's `Part::Channel(slot, Pipe::Socket)`.
//!
//! The mapping to the core's channel calls: connected → `channel_opened`; refused,
//! unreachable, or no answer by the connect time-out (a shell timer) → `channel_closed(Failed)`;
//! the upstream's FIN → `channel_eof`; `EndChannelInput` → `shutdown(Write)` (UDP: the socket
//! goes); both directions ended → `channel_closed(Closed)`; a reset from the upstream →
//! `channel_closed(Reset)`; `ResetChannel` → RST to the upstream. Reads stop while the core
//! says the session's peer is `max_output` behind (`channel_reads`), writes while the socket
//! would block. The socket goes with its session (`release_session`), like a child's pipes.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Token};
use switchboard_handlers::Ending;
use switchboard_handlers::channel::Target;
use tracing::{debug, warn};

use super::core::{ChanRef, Effect};
use super::tokens::{Owner, Part, Pipe};
use super::transport::write_some;
use super::{Daemon, MAX_OPS_PER_EVENT, ShellDue};

#[derive(Debug)]
enum Sock {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// One upstream connection.
#[derive(Debug)]
pub(crate) struct Upstream {
    sock: Sock,
    token: Token,
    addr: SocketAddr,
    /// The connect completed.
    connected: bool,
    /// Tells a connect time-out from one of a later connection in the same slot.
    serial: u64,
    /// WRITABLE interest is registered.
    writable: bool,
    /// The upstream's FIN was read.
    read_eof: bool,
    /// Our FIN was sent.
    input_ended: bool,
    /// Our FIN is to be sent once connected.
    end_asked: bool,
    session: u64,
    listener: Arc<str>,
}

/// How an I/O error on an upstream ends its channel.
fn ending_of(e: &io::Error) -> Ending {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Ending::Reset,
        _ => Ending::Failed(e.to_string()),
    }
}

impl Daemon {
    /// An effect on a channel: to its upstream connection, or to its child.
    pub(super) fn channel_effect(&mut self, effect: Effect) {
        let up = |r: &ChanRef| self.upstreams.contains_key(r);
        match effect {
            Effect::ChannelWrite(r) if up(&r) => self.upstream_write(r),
            Effect::ChannelWrite(r) => self.channel_write(r),
            Effect::EndChannelInput(r) if up(&r) => self.end_upstream_input(r),
            Effect::EndChannelInput(r) => self.end_channel_input(r),
            Effect::CloseChannel(r) if up(&r) => self.close_upstream(r),
            Effect::CloseChannel(r) | Effect::ResetChannel(r) if !up(&r) => self.close_channel(r),
            Effect::ResetChannel(r) => self.reset_upstream(r),
            Effect::ResumeChannel(r) if up(&r) => self.upstream_read(r),
            Effect::ResumeChannel(r) => self.resume_channel(r),
            _ => {}
        }
    }

    /// The core asks for a connect channel: start connecting.
    pub(super) fn connect_upstream(&mut self, r: ChanRef) {
        let Some(open) = self.core.channel_open(r) else {
            return;
        };
        let Target::Connect {
            addr,
            proto,
            timeout,
        } = open.spec.target
        else {
            return;
        };
        let ChanRef::Session(key, slot) = r else {
            self.core.channel_closed(
                r,
                &Ending::Failed("a connection cannot be a listener channel".into()),
            );
            return;
        };
        let session = open.session.map_or(0, |(id, _)| id);
        let sock = match proto {
            switchboard_handlers::Proto::Tcp => TcpStream::connect(addr).map(|s| {
                let _ = s.set_nodelay(true);
                Sock::Tcp(s)
            }),
            switchboard_handlers::Proto::Udp => {
                let any: SocketAddr = if addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                UdpSocket::bind(any).and_then(|s| s.connect(addr).map(|()| Sock::Udp(s)))
            }
        };
        let mut sock = match sock {
            Ok(s) => s,
            Err(e) => return self.upstream_failed(r, &open.listener, session, addr, &e),
        };
        let token = self
            .tokens
            .add(Owner::Session(key, Part::Channel(slot, Pipe::Socket)));
        let tcp = matches!(sock, Sock::Tcp(_));
        let interest = if tcp {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let registry = self.poll.registry();
        let registered = match &mut sock {
            Sock::Tcp(s) => registry.register(s, token, interest),
            Sock::Udp(s) => registry.register(s, token, interest),
        };
        if let Err(e) = registered {
            self.tokens.remove(token);
            return self.upstream_failed(r, &open.listener, session, addr, &e);
        }
        self.next_upstream += 1;
        let serial = self.next_upstream;
        self.upstreams.insert(
            r,
            Upstream {
                sock,
                token,
                addr,
                connected: !tcp,
                serial,
                writable: tcp,
                read_eof: false,
                input_ended: false,
                end_asked: false,
                session,
                listener: open.listener.clone(),
            },
        );
        if tcp {
            self.timers
                .push(self.now + timeout, ShellDue::ConnectTimeout(r, serial));
        } else {
            self.core.channel_opened(r);
            self.settle();
            self.upstream_write(r);
        }
    }

    fn upstream_failed(
        &mut self,
        r: ChanRef,
        listener: &str,
        session: u64,
        addr: SocketAddr,
        e: &io::Error,
    ) {
        warn!(listener, session, event = "upstream_failed", upstream = %addr, error = %e,
            "cannot connect to the upstream");
        self.core.channel_closed(r, &Ending::Failed(e.to_string()));
    }

    /// The connect time-out of a connection that may still be connecting.
    pub(super) fn connect_timeout_due(&mut self, r: ChanRef, serial: u64) {
        let Some(u) = self.upstreams.get(&r) else {
            return;
        };
        if u.serial != serial || u.connected {
            return;
        }
        let u = self.drop_upstream(r).expect("checked");
        let e = io::Error::new(io::ErrorKind::TimedOut, "no answer to the connect in time");
        self.upstream_failed(r, &u.listener, u.session, u.addr, &e);
    }

    /// Take an upstream out of the loop; its socket closes when the value is dropped.
    fn drop_upstream(&mut self, r: ChanRef) -> Option<Upstream> {
        let mut u = self.upstreams.remove(&r)?;
        let registry = self.poll.registry();
        let _ = match &mut u.sock {
            Sock::Tcp(s) => registry.deregister(s),
            Sock::Udp(s) => registry.deregister(s),
        };
        self.tokens.remove(u.token);
        Some(u)
    }

    /// An upstream's socket is ready.
    pub(super) fn upstream_ready(&mut self, r: ChanRef, readable: bool, writable: bool) {
        let Some(u) = self.upstreams.get_mut(&r) else {
            return;
        };
        if !u.connected {
            let Sock::Tcp(s) = &u.sock else {
                return;
            };
            match s.take_error() {
                // It connected and was reset before this event was seen.
                Ok(Some(e)) if ending_of(&e) == Ending::Reset => {
                    u.connected = true;
                    self.core.channel_opened(r);
                    self.settle();
                    return self.upstream_broke(r, &e);
                }
                Ok(Some(e)) | Err(e) => {
                    let u = self.drop_upstream(r).expect("present");
                    return self.upstream_failed(r, &u.listener, u.session, u.addr, &e);
                }
                Ok(None) => {}
            }
            match s.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let u = self.drop_upstream(r).expect("present");
                    return self.upstream_failed(r, &u.listener, u.session, u.addr, &e);
                }
            }
            u.connected = true;
            debug!(listener = %u.listener, session = u.session, upstream = %u.addr,
                event = "upstream_connected", "connected to the upstream");
            self.want_upstream_write(r, false);
            self.core.channel_opened(r);
            self.settle();
            self.upstream_write(r);
            if self.upstreams.get(&r).is_some_and(|u| u.end_asked) {
                self.end_upstream_input(r);
            }
            self.upstream_read(r);
            return;
        }
        if writable {
            self.upstream_write(r);
        }
        if readable {
            self.upstream_read(r);
        }
    }

    fn want_upstream_write(&mut self, r: ChanRef, on: bool) {
        let registry = self.poll.registry();
        let Some(u) = self.upstreams.get_mut(&r) else {
            return;
        };
        if u.writable == on {
            return;
        }
        u.writable = on;
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let _ = match &mut u.sock {
            Sock::Tcp(s) => registry.reregister(s, u.token, interest),
            Sock::Udp(s) => registry.reregister(s, u.token, interest),
        };
    }

    /// Read the upstream until drained, paused, or the per-event cap.
    pub(super) fn upstream_read(&mut self, r: ChanRef) {
        for _ in 0..MAX_OPS_PER_EVENT {
            let Some(u) = self.upstreams.get_mut(&r) else {
                return;
            };
            if !u.connected || u.read_eof || !self.core.channel_reads(r) {
                return; // a ResumeChannel effect says when
            }
            let read = match &mut u.sock {
                Sock::Tcp(s) => s.read(&mut self.buf),
                Sock::Udp(s) => s.recv(&mut self.buf),
            };
            let udp = matches!(u.sock, Sock::Udp(_));
            match read {
                Ok(0) if !udp => {
                    u.read_eof = true;
                    self.core.channel_eof(r);
                    self.settle();
                    self.upstream_finished(r);
                    return;
                }
                Ok(n) => {
                    self.core.channel_output(r, false, &self.buf[..n]);
                    self.settle();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Nothing listens there (an ICMP answer to an earlier datagram): the peer's
                // datagrams keep going, as they would to the server itself.
                Err(e) if udp && e.kind() == io::ErrorKind::ConnectionRefused => {
                    debug!(session = u.session, upstream = %u.addr, error = %e, "upstream refused a datagram");
                }
                Err(e) => return self.upstream_broke(r, &e),
            }
        }
        if let Some(u) = self.upstreams.get(&r) {
            self.pending.push(u.token);
        }
    }

    /// The upstream broke (a reset, an error): the channel is closed.
    fn upstream_broke(&mut self, r: ChanRef, e: &io::Error) {
        let Some(u) = self.drop_upstream(r) else {
            return;
        };
        let ending = ending_of(e);
        if ending == Ending::Reset {
            debug!(listener = %u.listener, session = u.session, upstream = %u.addr,
                event = "upstream_reset", "the upstream reset the connection");
        } else {
            warn!(listener = %u.listener, session = u.session, upstream = %u.addr, error = %e,
                event = "upstream_error", "the upstream connection failed");
        }
        self.core.channel_closed(r, &ending);
        self.settle();
    }

    /// Both directions of a TCP upstream ended: the channel is closed.
    fn upstream_finished(&mut self, r: ChanRef) {
        if self
            .upstreams
            .get(&r)
            .is_some_and(|u| u.read_eof && u.input_ended)
        {
            self.drop_upstream(r);
            self.core.channel_closed(r, &Ending::Closed);
            self.settle();
        }
    }

    /// Write what the core has for the upstream; WRITABLE interest while some is left.
    pub(super) fn upstream_write(&mut self, r: ChanRef) {
        loop {
            let Some(u) = self.upstreams.get_mut(&r) else {
                return;
            };
            if !u.connected {
                return;
            }
            let Some(bytes) = self.core.channel_input(r) else {
                return self.want_upstream_write(r, false);
            };
            let len = bytes.len();
            match &mut u.sock {
                Sock::Tcp(s) => {
                    match write_some(s, bytes) {
                        Ok(n) => {
                            self.core.channel_written(r, n);
                            let left = n < len;
                            self.want_upstream_write(r, left);
                        }
                        Err(e) => self.upstream_broke(r, &e),
                    }
                    return;
                }
                Sock::Udp(s) => match s.send(bytes) {
                    Ok(_) => self.core.channel_written(r, len),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return self.want_upstream_write(r, true);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        debug!(session = u.session, upstream = %u.addr, error = %e,
                            "datagram to the upstream not sent");
                        self.core.channel_written(r, len);
                    }
                },
            }
        }
    }

    /// The core ends the upstream's input: FIN to it (UDP: the socket goes, there is nothing
    /// more to wait for).
    pub(super) fn end_upstream_input(&mut self, r: ChanRef) {
        let Some(u) = self.upstreams.get_mut(&r) else {
            return;
        };
        match &u.sock {
            Sock::Tcp(_) if !u.connected => u.end_asked = true,
            Sock::Tcp(s) => {
                u.input_ended = true;
                if s.shutdown(Shutdown::Write).is_err() {
                    u.read_eof = true;
                }
                self.upstream_finished(r);
            }
            Sock::Udp(_) => self.close_upstream(r),
        }
    }

    /// The core ends the upstream now: it is closed.
    pub(super) fn close_upstream(&mut self, r: ChanRef) {
        if self.drop_upstream(r).is_some() {
            self.core.channel_closed(r, &Ending::Closed);
        }
    }

    /// The session's peer reset, or is reset: the upstream is reset too.
    pub(super) fn reset_upstream(&mut self, r: ChanRef) {
        if let Some(u) = self.drop_upstream(r) {
            if let Sock::Tcp(s) = &u.sock {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
            self.core.channel_closed(r, &Ending::Reset);
        }
    }

    /// A session is released: its upstream connections go (closed, FIN).
    pub(super) fn release_upstreams(&mut self, key: super::core::SessionKey) {
        let mine: Vec<ChanRef> = self
            .upstreams
            .range(ChanRef::Session(key, 0)..=ChanRef::Session(key, u16::MAX))
            .map(|(r, _)| *r)
            .collect();
        for r in mine {
            self.drop_upstream(r);
        }
    }
}
