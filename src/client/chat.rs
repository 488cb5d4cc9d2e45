//! `switchboard chat`: the tutorial's chat clients, with replies shown as they come.
//!
//! Two threads feed one channel: one reads stdin lines, one reads the socket. The main thread
//! owns the conversation: it sends a line once the previous one has had its reply (or the
//! timeout passed), prints replies, and decides when the chat is over.

use std::collections::VecDeque;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use switchboard_handlers::text::{escape, trim_line_end};

use super::{ChatArgs, IDLE, Proto, connect_tcp, connect_udp, peer_error, words};

/// Largest UDP payload; also the TCP read size.
const BUF_LEN: usize = 64 * 1024;

pub(super) fn run(args: ChatArgs) -> anyhow::Result<ExitCode> {
    let (conn, peer) = Conn::open(&args)?;
    let (tx, rx) = mpsc::channel();
    conn.spawn_reader(tx.clone())
        .map_err(|e| anyhow!("cannot start reading from {peer}: {}", words(&e)))?;
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_stdin(&tx))
        .context("cannot start reading stdin")?;

    let screen = Screen {
        interactive: io::stdin().is_terminal() && io::stdout().is_terminal(),
    };
    if io::stdin().is_terminal() {
        screen.status(&format!(
            "connected to {peer}; send {:?} or press Ctrl-D to end",
            args.bye
        ));
    }
    screen.prompt()?;
    Chat {
        conn,
        peer,
        bye: args.bye.into_bytes(),
        newline: args.newline,
        timeout: args.timeout,
        screen,
        pending: VecDeque::new(),
        awaiting: None,
        input_done: false,
        closing: None,
    }
    .run(&rx)
}

/// What the main thread waits for.
#[derive(Debug)]
enum Event {
    /// A line of stdin, without its line ending.
    Line(Vec<u8>),
    /// stdin is at its end (Ctrl-D).
    InputEnd,
    InputError(io::Error),
    /// Bytes from the server: one read (TCP) or one datagram (UDP).
    Reply(Vec<u8>),
    /// The server closed the TCP connection.
    Closed,
    NetError(io::Error),
}

#[derive(Debug)]
struct Chat {
    conn: Conn,
    /// `ADDR/PROTO`, for messages.
    peer: String,
    bye: Vec<u8>,
    newline: bool,
    timeout: Duration,
    screen: Screen,
    /// Lines read but not sent yet, because the previous message still awaits its reply.
    pending: VecDeque<Vec<u8>>,
    /// When the reply to the last message sent stops being waited for.
    awaiting: Option<Instant>,
    input_done: bool,
    /// Nothing more will be sent (bye or end of input); the chat ends at this instant, or
    /// earlier when the server closes.
    closing: Option<Instant>,
}

impl Chat {
    fn run(mut self, rx: &Receiver<Event>) -> anyhow::Result<ExitCode> {
        loop {
            if self.closing.is_none()
                && let Some(code) = self.send_pending()?
            {
                return Ok(code);
            }
            let event = match self.closing.or(self.awaiting) {
                None => rx.recv().ok(),
                Some(deadline) => {
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(event) => Some(event),
                        Err(RecvTimeoutError::Timeout) if self.closing.is_some() => {
                            return Ok(ExitCode::SUCCESS);
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            // No reply to the last message: the next line may go.
                            self.awaiting = None;
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            let Some(event) = event else {
                return Ok(ExitCode::SUCCESS);
            };
            if let Some(code) = self.handle(event)? {
                return Ok(code);
            }
        }
    }

    /// Send queued lines while no reply is awaited; start closing after the bye word or
    /// once input is over. `Some` when the chat is over.
    fn send_pending(&mut self) -> anyhow::Result<Option<ExitCode>> {
        while self.awaiting.is_none() {
            let Some(line) = self.pending.pop_front() else {
                break;
            };
            let is_bye = line == self.bye;
            let mut message = line;
            if self.newline {
                message.push(b'\n');
            }
            if message.is_empty() && !matches!(self.conn, Conn::Udp(_)) {
                continue; // nothing to send, so no reply to wait for
            }
            match self.conn.send(&message) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.screen.status("connection closed by server");
                    return Ok(Some(ExitCode::SUCCESS));
                }
                Err(e) => return Err(peer_error(&e, "cannot send to", &self.peer)),
            }
            if is_bye {
                self.close(None);
                return Ok(None);
            }
            self.awaiting = Some(Instant::now() + self.timeout);
        }
        if self.input_done && self.pending.is_empty() {
            self.close(self.awaiting);
        }
        Ok(None)
    }

    /// Stop sending: half-close TCP so the server sees the end, then wait until `until` (the
    /// last message's reply deadline) or briefly for anything still on its way.
    fn close(&mut self, until: Option<Instant>) {
        self.conn.shutdown_write();
        self.closing = Some(until.unwrap_or_else(|| Instant::now() + IDLE));
        self.awaiting = None;
    }

    /// React to one event; `Some` when the chat is over.
    fn handle(&mut self, event: Event) -> anyhow::Result<Option<ExitCode>> {
        match event {
            Event::Line(line) => {
                // No prompt after the bye word: nothing more will be read.
                if line != self.bye {
                    self.screen.prompt()?;
                }
                self.pending.push_back(line);
            }
            Event::InputEnd => {
                self.input_done = true;
                self.screen.end_prompt()?;
            }
            Event::InputError(e) => {
                anyhow::bail!("cannot read stdin: {}", words(&e));
            }
            Event::Reply(bytes) => {
                let more = self.closing.is_none() && !self.input_done;
                self.screen.reply(&bytes, more)?;
                if trim_line_end(&bytes) == self.bye.as_slice() {
                    self.screen.status("server said bye");
                    return Ok(Some(ExitCode::SUCCESS));
                }
                self.awaiting = None;
                if self.closing.is_some() {
                    self.closing = Some(Instant::now() + IDLE);
                }
            }
            Event::Closed => {
                if self.closing.is_none() {
                    self.screen.status("connection closed by server");
                }
                return Ok(Some(ExitCode::SUCCESS));
            }
            // Once we are leaving, a reset (the server closed with our last bytes unread)
            // ends the chat as a close would.
            Event::NetError(e)
                if self.closing.is_some() && e.kind() == io::ErrorKind::ConnectionReset =>
            {
                return Ok(Some(ExitCode::SUCCESS));
            }
            Event::NetError(e) => return Err(peer_error(&e, "cannot read from", &self.peer)),
        }
        Ok(None)
    }
}

/// The connection to the server.
#[derive(Debug)]
enum Conn {
    Tcp(TcpStream),
    /// TLS over TCP, shared by the reader thread and the main thread.
    Tls(super::tls::Shared),
    /// Connected to the server's address: only its datagrams are received.
    Udp(UdpSocket),
}

impl Conn {
    /// Connect, and name the peer as `ADDR/PROTO`.
    fn open(args: &ChatArgs) -> anyhow::Result<(Self, String)> {
        if args.udp {
            if args.tls.tls {
                anyhow::bail!("--tls is for TCP: UDP has no TLS (DTLS is not supported)");
            }
            let (socket, addr) = connect_udp(&args.target)?;
            Ok((Conn::Udp(socket), format!("{addr}/{}", Proto::Udp)))
        } else {
            let mut stream = connect_tcp(&args.target, args.timeout)?;
            let peer = match stream.peer_addr() {
                Ok(addr) => format!("{addr}/{}", Proto::Tcp),
                Err(_) => format!("{}/{}", args.target, Proto::Tcp),
            };
            if !args.tls.tls {
                return Ok((Conn::Tcp(stream), peer));
            }
            let conn = super::tls::handshake(&mut stream, &args.target, &args.tls, args.timeout)?;
            let shared = super::tls::Shared {
                sock: std::sync::Arc::new(stream),
                conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
            };
            Ok((Conn::Tls(shared), format!("{peer} (TLS)")))
        }
    }

    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(stream) => stream.write_all(message),
            Conn::Tls(t) => t.send(message),
            Conn::Udp(socket) => socket.send(message).map(drop),
        }
    }

    fn shutdown_write(&self) {
        match self {
            // Fails only if the connection is already gone, which the reader reports.
            Conn::Tcp(stream) => {
                let _ = stream.shutdown(Shutdown::Write);
            }
            Conn::Tls(t) => t.shutdown_write(),
            Conn::Udp(_) => {}
        }
    }

    /// Start the thread that reads the socket into `tx` until the server closes.
    fn spawn_reader(&self, tx: Sender<Event>) -> io::Result<()> {
        let builder = thread::Builder::new().name("socket".into());
        match self {
            Conn::Tcp(stream) => {
                let mut stream = stream.try_clone()?;
                builder.spawn(move || read_socket(&tx, true, |buf| stream.read(buf)))?;
            }
            Conn::Udp(socket) => {
                let socket = socket.try_clone()?;
                builder.spawn(move || read_socket(&tx, false, |buf| socket.recv(buf)))?;
            }
            Conn::Tls(t) => {
                let t = t.clone();
                builder.spawn(move || read_tls(&tx, &t))?;
            }
        }
        Ok(())
    }
}

/// The reader thread: each read (TCP) or datagram (UDP) is one reply. Ends at the server's
/// close (`zero_is_end`: for TCP, reading 0 bytes is the end; for UDP it is an empty
/// datagram), at an error, or when the main thread has gone.
fn read_socket(
    tx: &Sender<Event>,
    zero_is_end: bool,
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
) {
    let mut buf = vec![0; BUF_LEN];
    loop {
        let event = match read(&mut buf) {
            Ok(0) if zero_is_end => Event::Closed,
            Ok(n) => Event::Reply(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Event::NetError(e),
        };
        let last = matches!(event, Event::Closed | Event::NetError(_));
        if tx.send(event).is_err() || last {
            return;
        }
    }
}

/// The reader thread of a TLS chat: each record's plaintext is one reply.
fn read_tls(tx: &Sender<Event>, t: &super::tls::Shared) {
    let mut raw = vec![0; BUF_LEN];
    loop {
        let event = match t.receive(&mut raw) {
            Ok(None) => Event::Closed,
            Ok(Some(plain)) if plain.is_empty() => continue,
            Ok(Some(plain)) => Event::Reply(plain),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Event::NetError(e),
        };
        let last = matches!(event, Event::Closed | Event::NetError(_));
        if tx.send(event).is_err() || last {
            return;
        }
    }
}

/// The stdin thread: one event per line, then the end.
fn read_stdin(tx: &Sender<Event>) {
    let mut stdin = io::stdin().lock();
    loop {
        let mut line = Vec::new();
        let event = match stdin.read_until(b'\n', &mut line) {
            Ok(0) => Event::InputEnd,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                Event::Line(line)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Event::InputError(e),
        };
        let last = matches!(event, Event::InputEnd | Event::InputError(_));
        if tx.send(event).is_err() || last {
            return;
        }
    }
}

/// stdout for replies, stderr for status lines, and a prompt when a person is typing.
#[derive(Debug)]
struct Screen {
    /// stdin and stdout are terminals: show a prompt and redraw it around replies.
    interactive: bool,
}

impl Screen {
    /// Clears the line the prompt is on (our own escape sequence, only on a terminal).
    const CLEAR_LINE: &str = "\r\x1b[2K";

    fn prompt(&self) -> anyhow::Result<()> {
        if self.interactive {
            let mut out = io::stdout().lock();
            write!(out, "> ")
                .and_then(|()| out.flush())
                .map_err(stdout_error)?;
        }
        Ok(())
    }

    /// After Ctrl-D, move off the prompt line.
    fn end_prompt(&self) -> anyhow::Result<()> {
        if self.interactive {
            let mut out = io::stdout().lock();
            writeln!(out)
                .and_then(|()| out.flush())
                .map_err(stdout_error)?;
        }
        Ok(())
    }

    /// One reply, shown as lines: the first after `< `, the others indented under it, each
    /// escaped (a peer can neither move the cursor nor fake a line of its own); then the
    /// prompt again if more may be typed.
    fn reply(&self, bytes: &[u8], prompt_again: bool) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        let clear = if self.interactive {
            Self::CLEAR_LINE
        } else {
            ""
        };
        let prompt = if self.interactive && prompt_again {
            "> "
        } else {
            ""
        };
        write!(out, "{clear}{}{prompt}", reply_lines(bytes))
            .and_then(|()| out.flush())
            .map_err(stdout_error)
    }

    fn status(&self, line: &str) {
        if self.interactive {
            let mut out = io::stdout().lock();
            let _ = write!(out, "{}", Self::CLEAR_LINE).and_then(|()| out.flush());
        }
        eprintln!("{line}");
    }
}

/// `< first line\n  second line\n`: a reply's lines (a `\r` before each `\n` and one line end
/// at the very end belong to the line breaks), each escaped.
fn reply_lines(bytes: &[u8]) -> String {
    let body = bytes
        .strip_suffix(b"\n")
        .map_or(bytes, |b| b.strip_suffix(b"\r").unwrap_or(b));
    let mut shown = String::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        shown.push_str(if i == 0 { "< " } else { "  " });
        shown.push_str(&escape(line));
        shown.push('\n');
    }
    shown
}

fn stdout_error(e: io::Error) -> anyhow::Error {
    anyhow!("cannot write to stdout: {}", words(&e))
}
