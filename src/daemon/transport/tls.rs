//! A rustls server connection driven through its sans-IO API over a non-blocking socket:
//! `read_tls` and `process_new_packets` for what comes in, `reader` for the plaintext,
//! `writer` and `write_tls` for what goes out. No runtime and no thread: each call does what
//! the socket allows now and says so.

use std::io::{self, Read, Write};

use mio::net::TcpStream;
use rustls::ServerConnection;
use switchboard_handlers::CloseReason;

use super::{Readout, failure};
use crate::daemon::core::TlsInfo;

/// Where a handshake is.
#[derive(Debug)]
pub(super) enum Hand {
    /// Waiting for the socket.
    Pending,
    /// Done.
    Done(TlsInfo),
    /// The peer closed before sending anything.
    Eof,
    /// The handshake failed (the alert, if any, was sent).
    Failed(String),
    /// The socket failed.
    Broken(CloseReason, io::Error),
}

/// Write what rustls has for the peer, until it is all out or the socket is full.
pub(super) fn flush(tls: &mut ServerConnection, socket: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(socket) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Give rustls bytes that came before it was in place (after a PROXY header).
pub(super) fn feed(tls: &mut ServerConnection, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        tls.read_tls(&mut bytes).map_err(|e| e.to_string())?;
        tls.process_new_packets().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn info(tls: &ServerConnection) -> TlsInfo {
    TlsInfo {
        version: tls.protocol_version().map_or("?", crate::tls::version_name),
        sni: tls.server_name().map(Box::from),
        client_cert: tls
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| crate::tls::subject_of(c))
            .map(Into::into),
    }
}

/// Advance the handshake as far as the socket allows.
pub(super) fn handshake(
    tls: &mut ServerConnection,
    socket: &mut TcpStream,
    received: &mut bool,
) -> Hand {
    loop {
        if let Err(e) = flush(tls, socket) {
            return Hand::Broken(failure(&e), e);
        }
        if !tls.is_handshaking() {
            return Hand::Done(info(tls));
        }
        match tls.read_tls(socket) {
            Ok(0) if !*received => return Hand::Eof,
            Ok(0) => return Hand::Failed("the peer closed the connection mid-handshake".into()),
            Ok(_) => {
                *received = true;
                if let Err(e) = tls.process_new_packets() {
                    // The alert that says why, if the socket takes it.
                    let _ = flush(tls, socket);
                    return Hand::Failed(e.to_string());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Hand::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Hand::Broken(failure(&e), e),
        }
    }
}

/// Read plaintext into `buf`: what rustls holds, else what the socket brings.
pub(super) fn read(tls: &mut ServerConnection, socket: &mut TcpStream, buf: &mut [u8]) -> Readout {
    loop {
        match tls.reader().read(buf) {
            // A close_notify: the peer's input ended cleanly.
            Ok(0) => return Readout::Eof,
            Ok(n) => return Readout::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The TCP connection ended without a close_notify: the input ended all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Readout::Eof,
            Err(e) => return Readout::Failed(CloseReason::Error, e),
        }
        match tls.read_tls(socket) {
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    let _ = flush(tls, socket);
                    return Readout::Failed(CloseReason::Error, io::Error::other(e));
                }
                // A key update or a ticket may want an answer.
                if let Err(e) = flush(tls, socket) {
                    return Readout::Failed(failure(&e), e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Readout::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Readout::Failed(failure(&e), e),
        }
    }
}

/// Encrypt and send as much of `bytes` as the socket takes now; the count taken. Records
/// still waiting from before go first; rustls holds at most its buffer limit more.
pub(super) fn write(
    tls: &mut ServerConnection,
    socket: &mut TcpStream,
    bytes: &[u8],
) -> io::Result<usize> {
    flush(tls, socket)?;
    let mut taken = 0;
    while taken < bytes.len() && !tls.wants_write() {
        let n = tls.writer().write(&bytes[taken..])?;
        if n == 0 {
            break;
        }
        taken += n;
        flush(tls, socket)?;
    }
    Ok(taken)
}
