//! `switchboard send`: one message, one reply (the tutorial's one-shot clients).

use std::io::{self, IsTerminal, Read, Write};
use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use switchboard_handlers::text::escape;

use super::tls::Stream;
use super::{Proto, SendArgs, connect_tcp, connect_udp, human, peer_error, words};

/// Largest UDP payload; also the TCP read size.
const BUF_LEN: usize = 64 * 1024;

pub(super) fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let mut message = if args.message == "-" {
        let mut buf = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("cannot read the message from stdin")?;
        buf
    } else {
        args.message.as_bytes().to_vec()
    };
    if args.newline {
        message.push(b'\n');
    }
    let mut out = Reply::new();
    if args.udp {
        send_udp(&args, &message, &mut out)?;
    } else {
        send_tcp(&args, &message, &mut out)?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

fn send_tcp(args: &SendArgs, message: &[u8], out: &mut Reply) -> anyhow::Result<()> {
    let mut tcp = connect_tcp(&args.target, args.timeout)?;
    let peer = match tcp.peer_addr() {
        Ok(addr) => format!("{addr}/{}", Proto::Tcp),
        Err(_) => format!("{}/{}", args.target, Proto::Tcp),
    };
    if args.tls.tls && args.udp {
        anyhow::bail!("--tls is for TCP: UDP has no TLS (DTLS is not supported)");
    }
    let mut stream = if args.tls.tls {
        let conn = super::tls::handshake(&mut tcp, &args.target, &args.tls, args.timeout)?;
        Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
    } else {
        Stream::Plain(tcp)
    };
    stream
        .write_all(message)
        .and_then(|()| stream.flush())
        .map_err(|e| peer_error(&e, "cannot send to", &peer))?;
    if args.no_reply {
        return Ok(());
    }
    match read_tcp_reply(&mut stream, args.timeout, args.idle, out)? {
        Ended::Reply => Ok(()),
        Ended::Silence => anyhow::bail!("no reply within {}", human(args.timeout)),
        Ended::Closed => anyhow::bail!("no reply: {peer} closed the connection"),
        Ended::Failed(e) => Err(peer_error(&e, "no reply from", &peer)),
    }
}

/// How waiting for a reply ended.
enum Ended {
    /// Some bytes came, then the server went quiet or closed.
    Reply,
    /// Nothing came within the timeout.
    Silence,
    /// The server closed without sending anything.
    Closed,
    /// The connection failed before anything came.
    Failed(io::Error),
}

/// Read until the reply stops arriving: the first bytes within `timeout`, then more until
/// nothing comes for `idle` or the server closes. A reply in several segments is read whole.
fn read_tcp_reply(
    stream: &mut Stream,
    timeout: Duration,
    idle: Duration,
    out: &mut Reply,
) -> anyhow::Result<Ended> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0; BUF_LEN];
    let mut got_some = false;
    loop {
        let wait = if got_some {
            idle
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        if wait.is_zero() {
            return Ok(Ended::Silence);
        }
        if let Err(e) = stream.tcp().set_read_timeout(Some(wait)) {
            return Ok(Ended::Failed(e));
        }
        match stream.read(&mut buf) {
            Ok(0) if got_some => return Ok(Ended::Reply),
            Ok(0) => return Ok(Ended::Closed),
            Ok(n) => {
                got_some = true;
                out.push(&buf[..n])?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) && got_some => return Ok(Ended::Reply),
            Err(e) if is_timeout(&e) => return Ok(Ended::Silence),
            // A reset after the reply (the server closed with our bytes unread) still leaves
            // a complete reply to show.
            Err(_) if got_some => return Ok(Ended::Reply),
            Err(e) => return Ok(Ended::Failed(e)),
        }
    }
}

fn send_udp(args: &SendArgs, message: &[u8], out: &mut Reply) -> anyhow::Result<()> {
    let (socket, addr) = connect_udp(&args.target)?;
    let peer = format!("{addr}/{}", Proto::Udp);
    socket.send(message).map_err(|e| match e.raw_os_error() {
        Some(libc::EMSGSIZE) => anyhow!(
            "cannot send to {peer}: a message of {} bytes does not fit in one datagram",
            message.len()
        ),
        _ => peer_error(&e, "cannot send to", &peer),
    })?;
    if args.no_reply {
        return Ok(());
    }
    let datagram = recv_udp_reply(&socket, args.timeout).map_err(|e| {
        if is_timeout(&e) {
            anyhow!("no reply within {}", human(args.timeout))
        } else {
            peer_error(&e, "no reply from", &peer)
        }
    })?;
    out.push(&datagram)?;
    Ok(())
}

/// The first datagram back within `timeout`; a refusal (ICMP port unreachable) is an error.
fn recv_udp_reply(socket: &UdpSocket, timeout: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0; BUF_LEN];
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        socket.set_read_timeout(Some(wait))?;
        match socket.recv(&mut buf) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A read timeout: `WouldBlock` on Unix, `TimedOut` on Windows.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Where the reply goes: to a terminal escaped, once whole (an escape must not be split), or
/// to a pipe or file as the exact bytes, as they arrive.
struct Reply {
    terminal: bool,
    held: Vec<u8>,
}

impl Reply {
    fn new() -> Self {
        Self {
            terminal: io::stdout().is_terminal(),
            held: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if self.terminal {
            self.held.extend_from_slice(bytes);
            return Ok(());
        }
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(bytes)
            .and_then(|()| stdout.flush())
            .map_err(|e| anyhow!("cannot write the reply: {}", words(&e)))
    }

    fn finish(self) -> anyhow::Result<()> {
        if self.terminal && !self.held.is_empty() {
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{}", escape(&self.held))
                .and_then(|()| stdout.flush())
                .map_err(|e| anyhow!("cannot write the reply: {}", words(&e)))?;
        }
        Ok(())
    }
}
