//! What sits between a session's socket and its framer. Plain TCP today; a TLS session or a
//! PROXY-protocol header reader becomes another variant, done with its handshake before the
//! core's [`open`](super::core::Core::open) (the session's `Handshake` phase), so that neither
//! the framer nor any handler ever sees whether bytes were encrypted.
//!
//! Raw I/O results are turned into small enums here before any logic sees them.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use switchboard_handlers::CloseReason;

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

/// A session's connection.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Bytes as they are.
    Plain(TcpStream),
}

impl Transport {
    /// The socket, for the poller.
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
        }
    }

    /// Read once into `buf`.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Readout {
        loop {
            let r = match self {
                Transport::Plain(s) => s.read(buf),
            };
            return match r {
                Ok(0) => Readout::Eof,
                Ok(n) => Readout::Data(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Readout::WouldBlock,
                Err(e) => Readout::Failed(failure(&e), e),
            };
        }
    }

    /// Write as much of `bytes` as the kernel takes now.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => write_some(s, bytes),
        }
    }

    /// Send FIN. False when the connection is already gone.
    pub(crate) fn shutdown_write(&mut self) -> bool {
        match self {
            Transport::Plain(s) => s.shutdown(Shutdown::Write).is_ok(),
        }
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
    let mut written = 0;
    while written < bytes.len() {
        match w.write(&bytes[written..]) {
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
