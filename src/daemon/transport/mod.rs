//! What sits between a session's socket and its framer: plain bytes, or TLS (rustls, driven
//! through its sans-IO API: `tls.rs`), either one behind a PROXY protocol header
//! (`proxy.rs`). The header and the handshake are done before the core's
//! [`open`](super::core::Core::open) (the session's `Handshake` phase), so that neither the
//! framer nor any handler ever sees whether bytes were encrypted.
//!
//! Raw I/O results are turned into small enums here before any logic sees them.

mod proxy;
mod tls;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use mio::net::TcpStream;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};
use rustls::{ServerConfig, ServerConnection};
use switchboard_handlers::CloseReason;

use super::core::TlsInfo;
use crate::config::ProxyProtocol;
pub(crate) use proxy::MAX_HEADER;

/// What one read gave.
#[derive(Debug)]
pub(crate) enum Readout {
    /// `n` bytes, at the start of the buffer.
    Data(usize),
    /// The peer ended its input (FIN).
    Eof,
    /// Nothing more for now.
    WouldBlock,
    /// The connection broke: why the session ends.
    Failed(CloseReason, io::Error),
}

/// How far the front of a connection got.
#[derive(Debug)]
pub(crate) enum Step {
    /// Waiting for the socket.
    Pending,
    /// The PROXY header is in; it names this client (`None`: the balancer itself).
    Header(Option<SocketAddr>),
    /// The TLS handshake is done.
    Tls(TlsInfo),
    /// Nothing stands in front any more: the session may open.
    Ready,
    /// The peer closed before sending anything.
    Eof,
    /// The header or the handshake is not acceptable (why, for the log).
    Failed(String),
    /// The socket failed.
    Broken(CloseReason, io::Error),
}

/// A PROXY header being read.
#[derive(Debug)]
struct Header {
    versions: proxy::Versions,
    got: Vec<u8>,
}

/// A session's connection.
#[derive(Debug)]
pub(crate) struct Transport {
    socket: TcpStream,
    /// A PROXY header still to come.
    header: Option<Box<Header>>,
    /// TLS, when the listener has it.
    tls: Option<Box<ServerConnection>>,
    /// The handshake has begun (some bytes came): an end now is a failure, not a close.
    begun: bool,
    /// Plaintext that came right after the header, for the session once it opens.
    leftover: Vec<u8>,
}

impl Transport {
    /// Plain bytes.
    pub(crate) fn plain(socket: TcpStream) -> Transport {
        Transport {
            socket,
            header: None,
            tls: None,
            begun: false,
            leftover: Vec::new(),
        }
    }

    /// A connection with a PROXY header and/or TLS in front.
    pub(crate) fn new(
        socket: TcpStream,
        proxy: Option<&ProxyProtocol>,
        tls: Option<Arc<ServerConfig>>,
    ) -> io::Result<Transport> {
        let tls = match tls {
            Some(config) => Some(Box::new(
                ServerConnection::new(config).map_err(io::Error::other)?,
            )),
            None => None,
        };
        Ok(Transport {
            socket,
            header: proxy.map(|p| {
                Box::new(Header {
                    versions: proxy::Versions { v1: p.v1, v2: p.v2 },
                    got: Vec::new(),
                })
            }),
            tls,
            begun: false,
            leftover: Vec::new(),
        })
    }

    /// The socket, for the poller.
    #[inline]
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// Whether TLS is in front of the bytes.
    #[inline]
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the front (a header, a handshake) is still to be done.
    #[inline]
    pub(crate) fn in_front(&self) -> bool {
        self.header.is_some() || self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Bytes that came after the PROXY header on a plain connection.
    pub(crate) fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }

    /// Whether TLS records wait for the socket to take them.
    #[inline]
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Send what TLS has waiting.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            Some(t) => tls::flush(t, &mut self.socket),
            None => Ok(()),
        }
    }

    /// Advance the front as far as the socket allows; `buf` is scratch space.
    pub(crate) fn advance(&mut self, buf: &mut [u8]) -> Step {
        if let Some(h) = &mut self.header {
            return loop {
                let room = (MAX_HEADER - h.got.len()).min(buf.len());
                match self.socket.read(&mut buf[..room.max(1)]) {
                    Ok(0) if h.got.is_empty() => break Step::Eof,
                    Ok(0) => break Step::Failed("truncated PROXY header: the peer closed".into()),
                    Ok(n) => {
                        h.got.extend_from_slice(&buf[..n]);
                        match proxy::parse(&h.got, h.versions) {
                            proxy::Parsed::Incomplete => {}
                            proxy::Parsed::Invalid(why) => break Step::Failed(why),
                            proxy::Parsed::Done { real, len } => {
                                let rest = h.got.split_off(len);
                                self.header = None;
                                if let Some(t) = &mut self.tls {
                                    self.begun = !rest.is_empty();
                                    if let Err(why) = tls::feed(t, &rest) {
                                        let _ = tls::flush(t, &mut self.socket);
                                        break Step::Failed(why);
                                    }
                                } else {
                                    self.leftover = rest;
                                }
                                break Step::Header(real);
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Step::Pending,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Step::Broken(failure(&e), e),
                }
            };
        }
        match &mut self.tls {
            Some(t) if t.is_handshaking() => {
                match tls::handshake(t, &mut self.socket, &mut self.begun) {
                    tls::Hand::Pending => Step::Pending,
                    tls::Hand::Done(info) => Step::Tls(info),
                    tls::Hand::Eof => Step::Eof,
                    tls::Hand::Failed(why) => Step::Failed(why),
                    tls::Hand::Broken(reason, e) => Step::Broken(reason, e),
                }
            }
            _ => Step::Ready,
        }
    }

    /// Read once into `buf`.
    #[inline]
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Readout {
        if let Some(t) = &mut self.tls {
            return tls::read(t, &mut self.socket, buf);
        }
        self.read_raw(buf)
    }

    /// Read the socket's bytes as they are (a lingering connection's input is dropped
    /// without decrypting it).
    #[inline]
    pub(crate) fn read_raw(&mut self, buf: &mut [u8]) -> Readout {
        // rustix's recv is the bare system call: glibc's wrapper (what std calls) enters and
        // leaves a thread-cancellation point around it, a cost paid on every message.
        loop {
            return match rustix::net::recv(&self.socket, &mut *buf, RecvFlags::empty()) {
                Ok((0, _)) => Readout::Eof,
                Ok((n, _)) => Readout::Data(n),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => Readout::WouldBlock,
                Err(e) => {
                    let e = io::Error::from(e);
                    Readout::Failed(failure(&e), e)
                }
            };
        }
    }

    /// Write as much of `bytes` as the kernel takes now.
    #[inline]
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(t) => tls::write(t, &mut self.socket, bytes),
            None => send_some(&self.socket, bytes),
        }
    }

    /// End the output: TLS says close_notify. Then send FIN, unless TLS records still wait
    /// for the socket (`Ok(false)`: call again once they went). An error: the connection is
    /// already gone.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<bool> {
        if let Some(t) = &mut self.tls {
            if !t.is_handshaking() {
                t.send_close_notify();
            }
            tls::flush(t, &mut self.socket)?;
            if t.wants_write() {
                return Ok(false);
            }
        }
        self.socket.shutdown(Shutdown::Write).map(|()| true)
    }

    /// After [`Transport::shutdown_write`] said `Ok(false)`: send FIN once TLS is flushed.
    pub(crate) fn finish_shutdown(&mut self) -> io::Result<bool> {
        self.flush()?;
        if self.wants_write() {
            return Ok(false);
        }
        self.socket.shutdown(Shutdown::Write).map(|()| true)
    }
}

/// Why a session ends after this I/O error.
pub(crate) fn failure(e: &io::Error) -> CloseReason {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => CloseReason::PeerReset,
        _ => CloseReason::Error,
    }
}

/// Write until everything went or the writer would block; the count written. The one
/// write-until-`WouldBlock` loop of the daemon (sessions, operators, scrapers).
pub(crate) fn write_some(w: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
    until_blocked(bytes, |rest| w.write(rest))
}

/// [`write_some`] for a plain session's socket, by the bare `send` system call (as
/// [`Transport::read_raw`] reads; `MSG_NOSIGNAL` as std's own `send`).
fn send_some(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    until_blocked(bytes, |rest| {
        rustix::net::send(socket, rest, SendFlags::NOSIGNAL).map_err(io::Error::from)
    })
}

fn until_blocked(
    bytes: &[u8],
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes `room` bytes, then would block.
    struct Pipe {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.room).min(3);
            self.room -= n;
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_some_stops_at_would_block_and_counts() {
        let mut p = Pipe {
            room: 7,
            got: Vec::new(),
        };
        assert_eq!(write_some(&mut p, b"0123456789").unwrap(), 7);
        assert_eq!(p.got, b"0123456");
        assert_eq!(write_some(&mut p, b"x").unwrap(), 0);
    }

    #[test]
    fn resets_are_told_from_other_errors() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(failure(&reset), CloseReason::PeerReset);
        assert_eq!(failure(&io::Error::other("x")), CloseReason::Error);
    }
}
