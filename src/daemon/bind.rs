//! Listener sockets, made with socket2 so that backlog and socket options are honoured, and
//! bind errors that say what to do.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use switchboard_handlers::Proto;

use super::activation::{self, Inherited};
use crate::config::ListenerConfig;

/// A bound listener socket.
#[derive(Debug)]
pub(crate) enum Bound {
    Tcp(mio::net::TcpListener),
    Udp(mio::net::UdpSocket),
}

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Someone else holds the address.
    #[error("listener {listener:?}: {endpoint} is already in use {holder}")]
    InUse {
        /// Listener name.
        listener: String,
        /// `ip:port/proto`.
        endpoint: String,
        /// Who holds it, as far as /proc tells.
        holder: String,
    },
    /// A privileged port without the privilege.
    #[error(
        "listener {listener:?}: permission denied binding {endpoint}: ports below 1024 need root or CAP_NET_BIND_SERVICE (or systemd socket activation); pick a port above 1023"
    )]
    Permission {
        /// Listener name.
        listener: String,
        /// `ip:port/proto`.
        endpoint: String,
    },
    /// The IP is not one of this machine's.
    #[error(
        "listener {listener:?}: cannot bind {endpoint}: the address is not available on this machine (use 127.0.0.1, 0.0.0.0 or an address `ip addr` shows)"
    )]
    NotAvailable {
        /// Listener name.
        listener: String,
        /// `ip:port/proto`.
        endpoint: String,
    },
    /// Anything else.
    #[error("listener {listener:?}: cannot bind {endpoint}: {source}")]
    Other {
        /// Listener name.
        listener: String,
        /// `ip:port/proto`.
        endpoint: String,
        /// The OS error.
        source: io::Error,
    },
}

/// The listener's socket: the one systemd passed for it, if any, else a new one.
pub(crate) fn bind(
    cfg: &ListenerConfig,
    inherited: &mut Inherited,
) -> Result<(Bound, SocketAddr), BindError> {
    let made = activation::take(cfg, inherited).unwrap_or_else(|| bind_socket(cfg));
    made.map_err(|e| {
        let listener = cfg.name.to_string();
        let endpoint = cfg.endpoint();
        match e.raw_os_error() {
            Some(libc::EADDRINUSE) => BindError::InUse {
                listener,
                endpoint,
                holder: crate::port::describe_holder(cfg.addr, cfg.proto == Proto::Udp),
            },
            Some(libc::EACCES) | Some(libc::EPERM) => BindError::Permission { listener, endpoint },
            Some(libc::EADDRNOTAVAIL) => BindError::NotAvailable { listener, endpoint },
            _ => BindError::Other {
                listener,
                endpoint,
                source: e,
            },
        }
    })
}

fn bind_socket(cfg: &ListenerConfig) -> io::Result<(Bound, SocketAddr)> {
    let addr = cfg.addr;
    let (ty, proto) = match cfg.proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        // "::" means IPv6 only, so that "0.0.0.0" and "::" can be separate listeners.
        socket.set_only_v6(true)?;
    }
    if cfg.proto == Proto::Tcp {
        // Restart without waiting for TIME_WAIT connections of the previous run.
        socket.set_reuse_address(true)?;
    }
    if cfg.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let bound = match cfg.proto {
        Proto::Tcp => {
            socket.listen(cfg.backlog.min(i32::MAX as u32) as i32)?;
            Bound::Tcp(mio::net::TcpListener::from_std(socket.into()))
        }
        Proto::Udp => Bound::Udp(mio::net::UdpSocket::from_std(socket.into())),
    };
    let local = match &bound {
        Bound::Tcp(l) => l.local_addr()?,
        Bound::Udp(s) => s.local_addr()?,
    };
    Ok((bound, local))
}
