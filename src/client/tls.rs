//! TLS for `send` and `chat`: the handshake done up front (so that a refused certificate is
//! one clear error), then rustls over the blocking socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use rustls::ClientConnection;

use super::Target;
use crate::tls::ClientTls;

/// Connect TLS over `stream` to `target` and finish the handshake within `timeout`.
pub(super) fn handshake(
    stream: &mut TcpStream,
    target: &Target,
    opts: &ClientTls,
    timeout: Duration,
) -> anyhow::Result<ClientConnection> {
    let config = crate::tls::client_config(opts, true)?;
    let name = crate::tls::server_name(&target.host)?;
    let mut conn =
        ClientConnection::new(config, name).map_err(|e| anyhow!("cannot start TLS: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(stream) {
            let why = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    format!("no answer within {}", super::human(timeout))
                }
                io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
                _ => super::words(&e),
            };
            anyhow::bail!("TLS handshake with {target} failed: {why}");
        }
    }
    stream.set_read_timeout(None)?;
    Ok(conn)
}

/// A blocking connection: plain, or TLS over it.
#[derive(Debug)]
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => match t.read(buf) {
                // The server closed without a close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// TLS for `chat`, whose reader thread and main thread share one rustls connection: the
/// reader waits on the socket without the lock, then hands rustls what came.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub(super) sock: Arc<TcpStream>,
    pub(super) conn: Arc<Mutex<ClientConnection>>,
}

impl Shared {
    fn flush(conn: &mut ClientConnection, mut sock: &TcpStream) -> io::Result<()> {
        while conn.wants_write() {
            conn.write_tls(&mut sock)?;
        }
        Ok(())
    }

    /// Encrypt and send `bytes`.
    pub(super) fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let mut conn = self.conn.lock().expect("the other thread did not panic");
        conn.writer().write_all(bytes)?;
        Self::flush(&mut conn, &self.sock)
    }

    /// close_notify, then FIN.
    pub(super) fn shutdown_write(&self) {
        let mut conn = self.conn.lock().expect("the other thread did not panic");
        conn.send_close_notify();
        let _ = Self::flush(&mut conn, &self.sock);
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }

    /// Wait for the server's next bytes: the plaintext they carry (empty when they carried
    /// none, such as a ticket), or `Ok(None)` at the end.
    pub(super) fn receive(&self, raw: &mut [u8]) -> io::Result<Option<Vec<u8>>> {
        let n = (&*self.sock).read(raw)?;
        let mut conn = self.conn.lock().expect("the other thread did not panic");
        if n == 0 {
            return Ok(None);
        }
        let mut fed = &raw[..n];
        while !fed.is_empty() {
            conn.read_tls(&mut fed)?;
            conn.process_new_packets().map_err(io::Error::other)?;
        }
        Self::flush(&mut conn, &self.sock)?;
        let mut plain = Vec::new();
        match conn.reader().read_to_end(&mut plain) {
            Ok(_) if plain.is_empty() => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(Some(plain))
    }
}
