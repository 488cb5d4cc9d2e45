//! Socket activation (`sd_listen_fds(3)`): listener sockets opened by systemd and passed in.
//!
//! A `.socket` unit binds the addresses (privileged ports too, before any privilege is
//! dropped) and starts the service with the sockets as fds 3, 4, ... and three variables:
//! `LISTEN_PID` (the process they are for), `LISTEN_FDS` (how many) and `LISTEN_FDNAMES`
//! (their `FileDescriptorName=`s, colon-separated). [`Inherited::from_env`] takes them at
//! startup; then each configured listener takes the socket whose name is the listener's name,
//! else the one with its protocol and address, and binds its own only when none fits
//! ([`take`]). A socket no listener takes is closed with a warning.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use socket2::{SockRef, Socket, Type};
use switchboard_handlers::Proto;
use tracing::{info, warn};

use super::bind::Bound;
use crate::config::ListenerConfig;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// Sockets passed by the service manager that no listener has taken yet.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<InheritedSocket>,
    /// Names and protocols of the configured listeners: a socket with one of these names and
    /// that protocol is kept for that listener, not taken by another with its address.
    reserved: HashSet<(String, Proto)>,
    /// What was wrong with the environment, reported once logging is up.
    problems: Vec<String>,
}

#[derive(Debug)]
struct InheritedSocket {
    fd: OwnedFd,
    number: RawFd,
    name: String,
    /// TCP for an IP stream socket, UDP for an IP datagram socket; `None` for anything else
    /// (a Unix socket, a FIFO), which no listener can serve.
    proto: Option<Proto>,
    addr: Option<SocketAddr>,
}

impl Inherited {
    /// Take the sockets passed by systemd, when `LISTEN_PID` is this process: fds 3 to
    /// 3 + `LISTEN_FDS` - 1, marked close-on-exec, named from `LISTEN_FDNAMES`. The three
    /// variables are removed from the environment, as `sd_listen_fds(3)` does, so that a
    /// second call finds nothing. Without them the result is empty.
    ///
    /// # Safety
    ///
    /// Call it at most once, at the start of `main`: before any thread exists (it changes the
    /// environment) and before anything opens a file descriptor (it takes ownership of fds 3
    /// and up, which must therefore be the ones systemd passed and no one else's).
    pub unsafe fn from_env() -> Inherited {
        let var = |k| std::env::var(k).ok();
        let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
        for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            // SAFETY: the caller promises no other thread exists yet.
            unsafe { std::env::remove_var(k) };
        }
        let mut inherited = Inherited::default();
        let passed = match passed_fds(
            pid.as_deref(),
            fds.as_deref(),
            names.as_deref(),
            std::process::id(),
        ) {
            Ok(p) => p,
            Err(e) => {
                inherited.problems.push(e);
                return inherited;
            }
        };
        for (number, name) in passed {
            // SAFETY: fcntl on an integer fd has no memory effects; F_GETFD tells whether it
            // is open at all.
            let flags = unsafe { libc::fcntl(number, libc::F_GETFD) };
            if flags < 0 {
                inherited
                    .problems
                    .push(format!("LISTEN_FDS names fd {number}, which is not open"));
                continue;
            }
            // SAFETY: as above; marks it close-on-exec so no child inherits it.
            unsafe { libc::fcntl(number, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
            // SAFETY: LISTEN_PID is this process, so fds 3.. were passed to it, and the caller
            // promises nothing else has claimed them; the env vars are gone, so this is the
            // only owner.
            let fd = unsafe { OwnedFd::from_raw_fd(number) };
            inherited.push(fd, number, name);
        }
        inherited
    }

    fn push(&mut self, fd: OwnedFd, number: RawFd, name: String) {
        let sock = SockRef::from(&fd);
        let addr = sock.local_addr().ok().and_then(|a| a.as_socket());
        let proto = match (addr, sock.r#type()) {
            (Some(_), Ok(Type::STREAM)) => Some(Proto::Tcp),
            (Some(_), Ok(Type::DGRAM)) => Some(Proto::Udp),
            _ => None,
        };
        self.sockets.push(InheritedSocket {
            fd,
            number,
            name,
            proto,
            addr,
        });
    }

    /// Whether any socket is left.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Keep each socket named like one of these listeners for that listener.
    pub(crate) fn reserve(&mut self, listeners: &[ListenerConfig]) {
        self.reserved = listeners
            .iter()
            .map(|l| (l.name.to_string(), l.proto))
            .collect();
    }

    /// Report problems with the environment, and close (with a warning) every socket no
    /// listener took.
    pub(crate) fn close_unused(&mut self) {
        for p in self.problems.drain(..) {
            warn!(event = "activation_ignored", problem = %p, "socket activation: ignoring the passed sockets");
        }
        for s in self.sockets.drain(..) {
            let addr = s.addr.map(|a| a.to_string()).unwrap_or_default();
            let proto = s.proto.map_or("not TCP or UDP", Proto::as_str);
            warn!(event = "socket_unused", fd = s.number, name = %s.name, addr = %addr, proto, "socket activation: no listener matches this socket (by name or protocol and address); closing it");
        }
    }
}

/// The socket passed for `cfg`, made ready for the loop: the one named like the listener,
/// else the one with its protocol and address (unless reserved for another listener by its
/// name). `None` when there is none, and the listener binds its own.
pub(crate) fn take(
    cfg: &ListenerConfig,
    inherited: &mut Inherited,
) -> Option<io::Result<(Bound, SocketAddr)>> {
    let fits = |s: &InheritedSocket| s.proto == Some(cfg.proto);
    let (pos, by) = match inherited
        .sockets
        .iter()
        .position(|s| fits(s) && s.name == *cfg.name)
    {
        Some(p) => (p, "name"),
        None => (
            inherited.sockets.iter().position(|s| {
                fits(s)
                    && s.addr == Some(cfg.addr)
                    && !inherited.reserved.contains(&(s.name.clone(), cfg.proto))
            })?,
            "address",
        ),
    };
    let s = inherited.sockets.remove(pos);
    let addr = s.addr?;
    info!(event = "socket_inherited", listener = %cfg.name, proto = %cfg.proto, fd = s.number, name = %s.name, addr = %addr, matched_by = by, "using the socket passed by systemd");
    if addr != cfg.addr {
        info!(event = "socket_address", listener = %cfg.name, configured = %cfg.addr, addr = %addr, "the passed socket's address replaces the configured one");
    }
    Some(ready(s.fd, cfg).map(|b| (b, addr)))
}

/// Non-blocking, listening (a stream socket passed before `listen(2)` gets the configured
/// backlog), wrapped for mio.
fn ready(fd: OwnedFd, cfg: &ListenerConfig) -> io::Result<Bound> {
    let socket = Socket::from(fd);
    socket.set_nonblocking(true)?;
    Ok(match cfg.proto {
        Proto::Tcp => {
            if !socket.is_listener()? {
                socket.listen(cfg.backlog.min(i32::MAX as u32) as i32)?;
            }
            Bound::Tcp(mio::net::TcpListener::from_std(socket.into()))
        }
        Proto::Udp => Bound::Udp(mio::net::UdpSocket::from_std(socket.into())),
    })
}

/// The passed fds and their names, from the three variables. `Ok(empty)` when they are not
/// for process `me` (or absent); `Err` when they are malformed.
fn passed_fds(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> Result<Vec<(RawFd, String)>, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_PID={pid:?} is not a process id"))?;
    if pid != me {
        return Ok(Vec::new());
    }
    let n: RawFd = fds
        .trim()
        .parse()
        .ok()
        .filter(|n| (0..=RawFd::MAX - FIRST_FD).contains(n))
        .ok_or_else(|| format!("LISTEN_FDS={fds:?} is not a count of descriptors"))?;
    let names: Vec<String> = match names {
        Some(names) if names.split(':').count() == n as usize => {
            names.split(':').map(str::to_string).collect()
        }
        // systemd always sends as many names as fds; without them, all are "unknown".
        _ => vec!["unknown".to_string(); n as usize],
    };
    Ok((FIRST_FD..FIRST_FD + n).zip(names).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Framing;
    use std::net::{TcpListener, UdpSocket};
    use std::sync::Arc;
    use std::time::Duration;

    fn listener(name: &str, proto: Proto, addr: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            name: Arc::from(name),
            proto,
            addr,
            backlog: 16,
            framing: Framing::Raw,
            handler_names: Vec::new(),
            handlers: Vec::new(),
            handler_sources: Vec::new(),
            idle_timeout: None::<Duration>,
            max_message: 1024,
            max_output: 1024,
            reuse_port: false,
            once: false,
            faults: crate::config::Faults::default(),
            limits: crate::config::Limits::default(),
            tls: None,
            proxy: None,
            reply_mode: crate::config::ReplyMode::Free,
            transcripts: None,
            record: None,
        }
    }

    fn inherited(sockets: Vec<(OwnedFd, &str)>) -> Inherited {
        let mut i = Inherited::default();
        for (n, (fd, name)) in sockets.into_iter().enumerate() {
            i.push(fd, 100 + n as RawFd, name.to_string());
        }
        i
    }

    fn tcp() -> (OwnedFd, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        (l.into(), a)
    }

    fn udp() -> (OwnedFd, SocketAddr) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = s.local_addr().unwrap();
        (s.into(), a)
    }

    #[test]
    fn env_is_for_us_only_when_listen_pid_is_our_pid() {
        assert_eq!(passed_fds(None, Some("2"), None, 7), Ok(vec![]));
        assert_eq!(passed_fds(Some("8"), Some("2"), None, 7), Ok(vec![]));
        assert_eq!(
            passed_fds(Some("7"), Some("2"), Some("web:echo"), 7),
            Ok(vec![(3, "web".into()), (4, "echo".into())])
        );
        assert_eq!(
            passed_fds(Some("7"), Some("2"), Some("only-one"), 7),
            Ok(vec![(3, "unknown".into()), (4, "unknown".into())])
        );
        assert!(passed_fds(Some("me"), Some("1"), None, 7).is_err());
        assert!(passed_fds(Some("7"), Some("-1"), None, 7).is_err());
        assert!(passed_fds(Some("7"), Some("lots"), None, 7).is_err());
    }

    #[test]
    fn learns_type_and_address_of_each_socket() {
        let ((t, ta), (u, ua)) = (tcp(), udp());
        let i = inherited(vec![(t, "a"), (u, "b")]);
        assert_eq!(i.sockets[0].proto, Some(Proto::Tcp));
        assert_eq!(i.sockets[0].addr, Some(ta));
        assert_eq!(i.sockets[1].proto, Some(Proto::Udp));
        assert_eq!(i.sockets[1].addr, Some(ua));
    }

    #[test]
    fn a_unix_socket_matches_no_listener() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut i = inherited(vec![(a.into(), "echo")]);
        assert_eq!(i.sockets[0].proto, None);
        let cfg = listener("echo", Proto::Tcp, "127.0.0.1:1".parse().unwrap());
        assert!(take(&cfg, &mut i).is_none());
        assert!(!i.is_empty());
    }

    #[test]
    fn matches_by_protocol_and_address() {
        let ((t, ta), (u, ua)) = (tcp(), udp());
        let mut i = inherited(vec![(t, "switchboard.socket"), (u, "switchboard.socket")]);
        let other = listener("x", Proto::Udp, ta);
        assert!(
            take(&other, &mut i).is_none(),
            "same address, other protocol"
        );
        let cfg = listener("x", Proto::Udp, ua);
        let (bound, local) = take(&cfg, &mut i).unwrap().unwrap();
        assert!(matches!(bound, Bound::Udp(_)));
        assert_eq!(local, ua);
        assert_eq!(i.sockets.len(), 1);
    }

    #[test]
    fn a_name_wins_over_an_address_and_is_kept_for_its_listener() {
        let ((t1, a1), (t2, a2)) = (tcp(), tcp());
        let mut i = inherited(vec![(t1, "chat"), (t2, "web")]);
        let by_addr = listener("echo", Proto::Tcp, a1);
        let chat = listener("chat", Proto::Tcp, a2);
        i.reserve(&[by_addr.clone(), chat.clone()]);
        assert!(
            take(&by_addr, &mut i).is_none(),
            "the socket named chat is for the chat listener"
        );
        let (_, local) = take(&chat, &mut i).unwrap().unwrap();
        assert_eq!(local, a1, "taken by name, whatever the configured address");
        assert_eq!(i.sockets.len(), 1);
        assert_eq!(i.sockets[0].name, "web");
    }

    #[test]
    fn a_name_is_reserved_only_for_its_listeners_protocol() {
        // One .socket unit's FileDescriptorName= names all its sockets: a TCP listener named
        // like it takes the stream socket, and a UDP listener still finds the datagram one
        // by its address.
        let ((t, ta), (u, ua)) = (tcp(), udp());
        let mut i = inherited(vec![(t, "echo"), (u, "echo")]);
        let tcp_cfg = listener("echo", Proto::Tcp, ta);
        let udp_cfg = listener("echo-udp", Proto::Udp, ua);
        i.reserve(&[tcp_cfg.clone(), udp_cfg.clone()]);
        let (bound, _) = take(&udp_cfg, &mut i).unwrap().unwrap();
        assert!(matches!(bound, Bound::Udp(_)));
        let (bound, _) = take(&tcp_cfg, &mut i).unwrap().unwrap();
        assert!(matches!(bound, Bound::Tcp(_)));
        assert!(i.is_empty());
    }

    #[test]
    fn a_stream_socket_not_yet_listening_is_made_to_listen() {
        let s = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        let mut i = inherited(vec![(s.into(), "t")]);
        let (_bound, _) = take(&listener("t", Proto::Tcp, addr), &mut i)
            .unwrap()
            .unwrap();
        std::net::TcpStream::connect(addr).expect("it accepts connections");
    }

    #[test]
    fn close_unused_empties_the_set() {
        let (t, _) = tcp();
        let mut i = inherited(vec![(t, "t")]);
        i.problems.push("x".into());
        i.close_unused();
        assert!(i.is_empty());
        assert!(i.problems.is_empty());
    }
}
