//! `bench --tls`: a non-blocking rustls client connection with the `Read`/`Write` contract of
//! a socket (`WouldBlock` when the socket has nothing or takes nothing), so that the load
//! loops drive plain and TLS connections alike. The handshake runs inside the first reads and
//! writes.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::ClientConnection;
use rustls::pki_types::ServerName;

/// What the load loops need to start TLS connections.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Sessions are not resumed: every connection makes a full handshake.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry.
    pub name: ServerName<'static>,
}

impl Tls {
    /// A new client connection.
    pub fn connection(&self) -> io::Result<ClientConnection> {
        ClientConnection::new(self.config.clone(), self.name.clone()).map_err(io::Error::other)
    }
}

/// A load connection: plain, or TLS over it.
#[derive(Debug)]
pub enum Link {
    /// Bytes as they are.
    Plain(TcpStream),
    /// TLS.
    Tls(TcpStream, Box<ClientConnection>),
}

impl Link {
    /// The socket, for the poller and for connect checks.
    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Link::Plain(s) | Link::Tls(s, _) => s,
        }
    }
}

fn flush(conn: &mut ClientConnection, sock: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        match conn.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (sock, conn) = match self {
            Link::Plain(s) => return s.read(buf),
            Link::Tls(s, c) => (s, c),
        };
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // WouldBlock from the socket goes up as it is.
            conn.read_tls(sock)?;
            conn.process_new_packets().map_err(io::Error::other)?;
            flush(conn, sock)?;
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (sock, conn) = match self {
            Link::Plain(s) => return s.write(buf),
            Link::Tls(s, c) => (s, c),
        };
        flush(conn, sock)?;
        if conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = conn.writer().write(buf)?;
        flush(conn, sock)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(_) => Ok(()),
            Link::Tls(s, c) => flush(c, s),
        }
    }
}
