//! TCP sockets: accept, and each session's connection: read until drained (capped per event)
//! and hand the bytes to the core; write what the core has for it at once, asking for
//! WRITABLE only while some is left; FIN and lingering when the core ends a session.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use tracing::{debug, info, warn};

use super::core::{ListenerId, ReadMode, Refusal, RunState, SessionKey};
use super::tokens::{Owner, Part};
use super::transport::{Readout, Step, Transport, failure};
use super::{Daemon, MAX_OPS_PER_EVENT, ShellDue};

/// Pause before accepting again after running out of file descriptors.
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A TCP listener's socket.
#[derive(Debug)]
pub(crate) struct TcpIo {
    pub(crate) socket: TcpListener,
    pub(crate) token: Token,
    /// Accepting waits for the retry timer (after running out of file descriptors).
    paused: bool,
    /// An out-of-descriptors episode: since when, and how many retries failed.
    out_of_fds: Option<(Instant, u64)>,
}

impl TcpIo {
    pub(crate) fn new(socket: TcpListener, token: Token) -> TcpIo {
        TcpIo {
            socket,
            token,
            paused: false,
            out_of_fds: None,
        }
    }
}

/// A session's connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) token: Token,
    pub(crate) transport: Transport,
    /// WRITABLE interest is registered (only while output is pending).
    writable: bool,
    /// The poller reported the peer's FIN (or an error): read on to the end even after a
    /// short read, since no further edge will come.
    pub(crate) peer_done: bool,
    /// The peer's EOF was read.
    read_eof: bool,
    /// The session's output ended and its FIN waits for TLS records the socket has not taken
    /// yet.
    fin_pending: bool,
}

/// Whether an `accept` failed for want of file descriptors (or kernel memory): worth a retry
/// later, as no new readiness edge comes for the connections already waiting.
pub(super) fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl Daemon {
    fn tcp_io(&mut self, lid: ListenerId) -> Option<&mut TcpIo> {
        match self.sockets.get_mut(lid.0) {
            Some(Some(super::ListenerIo::Tcp(t))) => Some(t),
            _ => None,
        }
    }

    /// Accept until `WouldBlock` (capped per event).
    pub(super) fn accept(&mut self, lid: ListenerId) {
        let mut token = None;
        for _ in 0..MAX_OPS_PER_EVENT {
            if self.core.state() != RunState::Running {
                return;
            }
            let now = self.now;
            let Some(t) = self.tcp_io(lid) else {
                return;
            };
            if t.paused {
                return;
            }
            token = Some(t.token);
            match t.socket.accept() {
                Ok((stream, peer)) => {
                    if let Some((since, retries)) = t.out_of_fds.take() {
                        info!(event = "accept_resumed", retries,
                            paused_for = ?now.saturating_duration_since(since),
                            "accepting resumed: file descriptors are available again");
                    }
                    match self.core.admit(lid, peer) {
                        Ok(key) => self.install_session(key, lid, stream),
                        Err(refusal) => self.refuse(lid, refusal, stream),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_fd_exhaustion(&e) => {
                    let active = self.core.session_count();
                    let t = self.tcp_io(lid).expect("checked above");
                    match &mut t.out_of_fds {
                        Some((_, retries)) => {
                            *retries += 1;
                            debug!(
                                event = "accept_paused",
                                retries = *retries,
                                "still out of file descriptors; accepts stay paused"
                            );
                        }
                        None => {
                            t.out_of_fds = Some((now, 0));
                            warn!(event = "accept_paused", error = %e, sessions = active,
                                retry_every = ?ACCEPT_RETRY,
                                "cannot accept: out of file descriptors; pausing accepts (raise `ulimit -n` or LimitNOFILE=, or lower max_connections)");
                        }
                    }
                    t.paused = true;
                    self.timers
                        .push(now + ACCEPT_RETRY, ShellDue::ResumeAccept(lid));
                    return;
                }
                Err(e) => debug!(error = %e, "accept failed"),
            }
        }
        if let Some(token) = token {
            self.pending.push(token);
        }
    }

    /// The retry timer of a paused listener: accept again.
    pub(super) fn resume_accepting(&mut self, lid: ListenerId) {
        if let Some(t) = self.tcp_io(lid) {
            t.paused = false;
        }
        self.accept(lid);
    }

    /// A connection the limits refused: the `busy_message` (when over a limit, not when the
    /// rules refuse it), written once without blocking; closed when dropped.
    fn refuse(&mut self, lid: ListenerId, refusal: Refusal, stream: TcpStream) {
        if matches!(refusal, Refusal::Rules(_) | Refusal::Untrusted) {
            return;
        }
        let Some(msg) = self
            .core
            .listener(lid)
            .and_then(|l| l.cfg.limits.busy_message.clone())
        else {
            return;
        };
        let mut s = stream;
        if let Err(e) = super::transport::write_some(&mut s, &msg) {
            debug!(error = %e, "busy_message not written");
        }
        // Read what the peer already sent, so that closing sends FIN, not a reset that could
        // destroy the message in flight.
        for _ in 0..4 {
            if !matches!(s.read(&mut self.buf), Ok(1..)) {
                break;
            }
        }
    }

    /// Register a new session's connection, open the session (or start what stands in front
    /// of it), and read what already came.
    fn install_session(&mut self, key: SessionKey, lid: ListenerId, mut stream: TcpStream) {
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let token = self.tokens.add(Owner::Session(key, Part::Peer));
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            warn!(error = %e, "cannot register a new connection; closed");
            self.tokens.remove(token);
            self.core.abort(key);
            return;
        }
        let front = self
            .core
            .listener(lid)
            .map(|l| l.cfg.clone())
            .filter(|cfg| cfg.has_front());
        let transport = match &front {
            None => Transport::plain(stream),
            Some(cfg) => {
                let tls = cfg.tls.as_ref().map(|t| t.loaded.server.clone());
                match Transport::new(stream, cfg.proxy.as_ref(), tls) {
                    Ok(t) => t,
                    Err(e) => {
                        warn!(error = %e, "cannot start TLS on a new connection; closed");
                        self.tokens.remove(token);
                        self.core.abort(key);
                        return;
                    }
                }
            }
        };
        if self.conns.len() <= key {
            self.conns.resize_with(key + 1, || None);
        }
        self.conns[key] = Some(Conn {
            token,
            transport,
            writable: false,
            peer_done: false,
            read_eof: false,
            fin_pending: false,
        });
        if front.is_some() {
            return self.front(key);
        }
        self.core.open(key);
        self.settle();
        self.session_read(key);
    }

    /// Advance what stands in front of a session (a PROXY header, a TLS handshake) as far as
    /// the socket allows; open the session once it is done.
    fn front(&mut self, key: SessionKey) {
        // A header, then a handshake, then ready: a few steps at most per event.
        for _ in 0..4 {
            let Some(Some(c)) = self.conns.get_mut(key) else {
                return;
            };
            match c.transport.advance(&mut self.buf) {
                Step::Pending => return self.update_interest(key),
                Step::Header(real) => {
                    if let Err(refusal) = self.core.proxied(key, real) {
                        self.busy_after_header(key, refusal);
                        self.settle();
                        return;
                    }
                }
                Step::Tls(info) => {
                    self.core.tls_ready(key, info);
                    self.settle();
                    return self.session_read(key);
                }
                Step::Ready => {
                    let rest = c.transport.take_leftover();
                    self.core.open(key);
                    self.settle();
                    if !rest.is_empty() {
                        self.core.input(key, &rest);
                        self.settle();
                    }
                    return self.session_read(key);
                }
                Step::Eof => {
                    c.read_eof = true;
                    self.core.end_of_input(key);
                    self.settle();
                    return;
                }
                Step::Failed(why) => {
                    self.core.front_failed(key, &why);
                    self.settle();
                    return;
                }
                Step::Broken(reason, e) => {
                    debug!(error = %e, "connection failed before its session opened");
                    self.core.failed(key, reason);
                    self.settle();
                    return;
                }
            }
        }
    }

    /// The real client a PROXY header named is over a limit: the `busy_message`, on a plain
    /// listener (before a TLS handshake there is no way to say it).
    fn busy_after_header(&mut self, key: SessionKey, refusal: Refusal) {
        if matches!(refusal, Refusal::Rules(_) | Refusal::Untrusted) {
            return;
        }
        let Some(Some(c)) = self.conns.get_mut(key) else {
            return;
        };
        if c.transport.is_tls() {
            return;
        }
        let lid = self.core.listener_of(key);
        if let Some(msg) = lid
            .and_then(|lid| self.core.listener(lid))
            .and_then(|l| l.cfg.limits.busy_message.clone())
            && let Err(e) = c.transport.write(&msg)
        {
            debug!(error = %e, "busy_message not written");
        }
    }

    /// A session's connection is ready.
    pub(super) fn session_ready(&mut self, key: SessionKey, readable: bool, writable: bool) {
        if writable {
            self.transmit(key);
        }
        if readable {
            self.session_read(key);
        }
    }

    /// Read until `WouldBlock`, a short read, or the per-event cap; hand the bytes over.
    pub(super) fn session_read(&mut self, key: SessionKey) {
        for _ in 0..MAX_OPS_PER_EVENT {
            let Some(mode) = self.core.read_mode(key) else {
                return;
            };
            let Some(Some(c)) = self.conns.get_mut(key) else {
                return;
            };
            match mode {
                ReadMode::Paused => return,
                ReadMode::Discard => return self.discard(key),
                ReadMode::Read => {}
            }
            if c.transport.in_front() {
                return self.front(key);
            }
            match c.transport.read(&mut self.buf) {
                Readout::Data(n) => {
                    // A short read means drained: on Linux new data brings a new edge. This
                    // saves the read that would only return WouldBlock. (Not through TLS:
                    // a record's plaintext says nothing about what the socket still holds.)
                    let drained = n < self.buf.len() && !c.peer_done && !c.transport.is_tls();
                    self.core.input(key, &self.buf[..n]);
                    self.settle();
                    if drained {
                        return;
                    }
                }
                Readout::Eof => {
                    c.read_eof = true;
                    self.core.end_of_input(key);
                    self.settle();
                    return;
                }
                Readout::WouldBlock => return,
                Readout::Failed(reason, e) => {
                    debug!(error = %e, "read failed");
                    self.core.failed(key, reason);
                    self.settle();
                    return;
                }
            }
        }
        if let Some(Some(c)) = self.conns.get(key) {
            self.pending.push(c.token);
        }
    }

    /// A lingering connection: read and drop input; at EOF or on error it is done.
    fn discard(&mut self, key: SessionKey) {
        let Some(Some(c)) = self.conns.get_mut(key) else {
            return;
        };
        for _ in 0..MAX_OPS_PER_EVENT {
            match c.transport.read_raw(&mut self.buf) {
                Readout::Data(_) => self.core.discarded(key),
                Readout::WouldBlock => return,
                Readout::Eof | Readout::Failed(..) => break,
            }
        }
        self.core.lingered(key);
        self.settle();
    }

    /// Write what the core has for a session; keep WRITABLE interest while some is left.
    pub(super) fn transmit(&mut self, key: SessionKey) {
        let Some(Some(c)) = self.conns.get_mut(key) else {
            return;
        };
        if c.transport.is_tls() {
            let flushed = if c.fin_pending {
                c.transport
                    .finish_shutdown()
                    .map(|done| c.fin_pending = !done)
            } else {
                c.transport.flush()
            };
            if let Err(e) = flushed {
                debug!(error = %e, "write failed");
                self.core.failed(key, failure(&e));
                return;
            }
        }
        if let Some(bytes) = self.core.transmit(key) {
            match c.transport.write(bytes) {
                Ok(n) => self.core.transmitted(key, n),
                Err(e) => {
                    debug!(error = %e, "write failed");
                    self.core.failed(key, failure(&e));
                    return;
                }
            }
        }
        // The same borrow of the connection (the core and the poller are other fields): one
        // look-up per write on the hot path.
        let want = self.core.has_pending(key) || c.fin_pending || c.transport.wants_write();
        want_writable(self.poll.registry(), c, want);
    }

    /// Ask for WRITABLE while output (the core's, or TLS records) waits for the socket.
    fn update_interest(&mut self, key: SessionKey) {
        let Some(Some(c)) = self.conns.get_mut(key) else {
            return;
        };
        let want = self.core.has_pending(key) || c.fin_pending || c.transport.wants_write();
        want_writable(self.poll.registry(), c, want);
    }

    /// The core ended a session cleanly: send FIN, then read and drop until the peer's EOF.
    pub(super) fn close_session(&mut self, key: SessionKey) {
        let Some(Some(c)) = self.conns.get_mut(key) else {
            return;
        };
        if c.read_eof {
            if c.transport.is_tls() {
                // A close_notify, best effort: the peer's side is closed already.
                let _ = c.transport.shutdown_write();
            }
            self.core.lingered(key);
            return;
        }
        match c.transport.shutdown_write() {
            Err(_) => {
                self.core.lingered(key);
                return;
            }
            Ok(false) => {
                c.fin_pending = true;
                self.update_interest(key);
            }
            Ok(true) => {}
        }
        let Some(Some(c)) = self.conns.get(key) else {
            return;
        };
        // Input may be waiting with no new edge to announce it.
        self.pending.push(c.token);
    }

    /// Drop a session's connection. Closing the socket takes it out of the epoll set (it is
    /// the only descriptor of its file), so no `deregister` call is spent on it: one system
    /// call less per connection.
    pub(super) fn release_session(&mut self, key: SessionKey) {
        if let Some(c) = self.conns.get_mut(key).and_then(Option::take) {
            self.tokens.remove(c.token);
        }
        if !self.chans.is_empty() {
            self.release_channels(key);
        }
        if !self.upstreams.is_empty() {
            self.release_upstreams(key);
        }
    }

    /// A handler ended the session's output: FIN to the peer, which is still read.
    /// TLS: close_notify first, and the FIN once the socket took the records before it. An
    /// error means the connection is gone, which its next read reports.
    pub(super) fn end_output(&mut self, key: SessionKey) {
        if let Some(Some(c)) = self.conns.get_mut(key)
            && let Ok(false) = c.transport.shutdown_write()
        {
            c.fin_pending = true;
            self.update_interest(key);
        }
    }

    /// The session ends with a reset: the release that follows sends RST, not FIN.
    pub(super) fn reset_connection(&mut self, key: SessionKey) {
        if let Some(Some(c)) = self.conns.get_mut(key) {
            let _ = socket2::SockRef::from(&*c.transport.socket()).set_linger(Some(Duration::ZERO));
        }
    }
}

/// Ask for WRITABLE readiness on a connection while output waits for its socket, and stop
/// asking once it does not (a reregister only when that changes).
fn want_writable(registry: &mio::Registry, c: &mut Conn, want: bool) {
    if want != c.writable {
        c.writable = want;
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let _ = registry.reregister(c.transport.socket(), c.token, interest);
    }
}
