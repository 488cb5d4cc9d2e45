//! TCP: accept, read and frame, write with buffering only on short writes.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use switchboard_handlers::CloseReason;
use tracing::{debug, warn};

use super::{ACCEPT_RETRY, Daemon, LISTENER_BASE, MAX_OPS_PER_EVENT, RunState, Timer};
use crate::config::Framing;
use crate::daemon::bind::Bound;
use crate::framing::split_lines;

/// A TCP session's socket and the buffers it needs only while a frame is partial or output
/// is pending: an idle connection holds no buffer.
#[derive(Debug)]
pub(super) struct TcpIo {
    stream: TcpStream,
    /// Unfinished line (line framing).
    partial: Vec<u8>,
    /// Output the kernel has not taken yet; `out[out_pos..]` is pending.
    out: Vec<u8>,
    out_pos: usize,
    /// WRITABLE interest is registered (only while output is pending).
    want_write: bool,
    /// Reading paused because `out` reached `max_output` (backpressure).
    read_paused: bool,
    /// The peer closed its writing side.
    read_eof: bool,
    /// The poller reported the peer's FIN (or an error): read on to the end even after a
    /// short read, since no further edge will come.
    pub(super) peer_done: bool,
    /// The session ended; input is read and discarded until EOF or the linger timer.
    lingering: bool,
    /// A `write_timeout` timer is pending for this connection.
    pub(super) write_timer: bool,
    /// When the kernel last took output, or output started to pile up.
    pub(super) write_progress: Instant,
}

impl TcpIo {
    pub(super) fn flushed(&self) -> bool {
        self.out_pos >= self.out.len()
    }

    fn interest(&self) -> Interest {
        if self.want_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Write `bytes` now; buffer what the kernel does not take and ask for WRITABLE.
    pub(super) fn send(
        &mut self,
        bytes: &[u8],
        registry: &Registry,
        token: Token,
        max_output: usize,
    ) -> io::Result<()> {
        let mut written = 0;
        if self.flushed() {
            while written < bytes.len() {
                match self.stream.write(&bytes[written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if written < bytes.len() {
            if self.flushed() {
                debug!(
                    pending = bytes.len() - written,
                    "the peer is not reading fast enough; output buffered"
                );
            }
            self.out.extend_from_slice(&bytes[written..]);
            if self.pending() >= max_output && !self.read_paused {
                self.read_paused = true;
                debug!(
                    pending = self.pending(),
                    max_output, "reading paused: max_output bytes are pending for the peer"
                );
            }
            if !self.want_write {
                self.want_write = true;
                let interest = self.interest();
                registry.reregister(&mut self.stream, token, interest)?;
            }
        }
        Ok(())
    }

    pub(super) fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Write buffered output. Returns whether reading was paused and may resume.
    fn flush(&mut self, registry: &Registry, token: Token, now: Instant) -> io::Result<bool> {
        while !self.flushed() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    self.write_progress = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.out_pos > self.out.len() / 2 {
                        self.out.drain(..self.out_pos);
                        self.out_pos = 0;
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Everything went out: release the buffer and stop asking for WRITABLE.
        self.out = Vec::new();
        self.out_pos = 0;
        if self.want_write {
            self.want_write = false;
            let interest = self.interest();
            registry.reregister(&mut self.stream, token, interest)?;
        }
        Ok(std::mem::take(&mut self.read_paused))
    }

    /// Start a lingering close: send FIN now, keep reading (and discarding) what the peer
    /// still sends. Returns false when there is nothing to wait for.
    pub(super) fn linger(&mut self) -> bool {
        if self.read_eof || self.stream.shutdown(std::net::Shutdown::Write).is_err() {
            return false;
        }
        self.lingering = true;
        self.read_paused = false;
        true
    }

    pub(super) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.stream);
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl Daemon {
    /// Accept until `WouldBlock` (capped per event).
    pub(super) fn accept(&mut self, idx: usize) {
        for _ in 0..MAX_OPS_PER_EVENT {
            let listener = &mut self.listeners[idx];
            if listener.accept_paused || self.state != RunState::Running {
                return;
            }
            let Some(Bound::Tcp(socket)) = &listener.socket else {
                return;
            };
            match socket.accept() {
                Ok((stream, peer)) => {
                    self.accept_resumed(idx);
                    if !self.admit_tcp(idx, peer, &stream) {
                        continue;
                    }
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    let io = TcpIo {
                        stream,
                        partial: Vec::new(),
                        out: Vec::new(),
                        out_pos: 0,
                        want_write: false,
                        read_paused: false,
                        read_eof: false,
                        peer_done: false,
                        lingering: false,
                        write_timer: false,
                        write_progress: self.now,
                    };
                    let key = self.sessions.vacant_key();
                    let Some(io) = self.register_conn(io, key) else {
                        continue;
                    };
                    self.open_session(idx, peer, Some(io));
                    self.tcp_read(key);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_fd_exhaustion(&e) => {
                    listener.accept_paused = true;
                    self.accept_out_of_fds(idx, &e, ACCEPT_RETRY);
                    self.timers.push(
                        self.now + ACCEPT_RETRY,
                        Timer::ResumeAccept { listener: idx },
                    );
                    return;
                }
                Err(e) => debug!(listener = %listener.cfg.name, error = %e, "accept failed"),
            }
        }
        self.pending.push(Token(LISTENER_BASE + idx));
    }

    fn register_conn(&mut self, mut io: TcpIo, key: usize) -> Option<TcpIo> {
        match self
            .poll
            .registry()
            .register(&mut io.stream, Token(key), Interest::READABLE)
        {
            Ok(()) => Some(io),
            Err(e) => {
                warn!(error = %e, "cannot register a new connection; closed");
                None
            }
        }
    }

    /// Read until `WouldBlock`, a short read, or the per-event cap; frame and deliver.
    pub(super) fn tcp_read(&mut self, key: usize) {
        for _ in 0..MAX_OPS_PER_EVENT {
            let Some(conn) = self.sessions.get_mut(key) else {
                return;
            };
            let Some(io) = conn.tcp.as_mut() else {
                return;
            };
            if io.lingering {
                return self.discard_input(key);
            }
            if io.read_paused || io.read_eof || conn.closing.is_some() {
                return;
            }
            match io.stream.read(&mut self.buf) {
                Ok(0) => {
                    io.read_eof = true;
                    self.on_eof(key);
                    return;
                }
                Ok(n) => {
                    // A short read means drained: on Linux new data brings a new edge. This
                    // saves the read that would only return WouldBlock.
                    let drained = n < self.buf.len() && !io.peer_done;
                    self.on_bytes(key, n);
                    if drained {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(parent: &conn.span, error = %e, "read failed");
                    self.close(key, CloseReason::Error);
                    return;
                }
            }
        }
        self.pending.push(Token(key));
    }

    /// A lingering connection: read and drop input; release it at EOF or on error.
    fn discard_input(&mut self, key: usize) {
        let io = self.sessions[key].tcp.as_mut().expect("TCP session");
        for _ in 0..MAX_OPS_PER_EVENT {
            match io.stream.read(&mut self.buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.release(key);
    }

    /// `n` fresh bytes in `self.buf` for session `key`.
    fn on_bytes(&mut self, key: usize, n: usize) {
        let conn = &mut self.sessions[key];
        let (framing, max_message) = (conn.cfg.framing, conn.cfg.max_message);
        conn.last_active = self.now;
        conn.session.now = self.wall;
        conn.session.operators = self.operators.attached();
        conn.counts.bytes_in += n as u64;
        let data = &self.buf[..n];
        let debug = self.debug;
        self.out.clear();
        let mut too_long = false;
        match framing {
            Framing::Raw => {
                for msg in data.chunks(max_message) {
                    Daemon::deliver(conn, msg, &mut self.out, debug);
                }
            }
            Framing::Line => {
                let io = conn.tcp.as_mut().expect("TCP session");
                let mut partial = std::mem::take(&mut io.partial);
                let out = &mut self.out;
                let result = split_lines(&mut partial, data, max_message, |line| {
                    Daemon::deliver(conn, line, out, debug)
                });
                conn.tcp.as_mut().expect("TCP session").partial = partial;
                too_long = result.is_err();
            }
        }
        if too_long {
            warn!(parent: &conn.span, max_message, "line longer than max_message; closing the session");
            if let Some(reply) = &conn.cfg.limits.too_long_reply {
                self.out.send(reply.as_bytes());
            }
            conn.closing.get_or_insert(CloseReason::TooLong);
        }
        self.apply_outbox(key);
        self.finish_if_flushed(key);
    }

    /// The peer closed its side: a last unterminated line is still a message; the session
    /// ends once the replies are flushed (the peer may still be reading).
    fn on_eof(&mut self, key: usize) {
        let conn = &mut self.sessions[key];
        let io = conn.tcp.as_mut().expect("TCP session");
        let last = std::mem::take(&mut io.partial);
        self.out.clear();
        if !last.is_empty() {
            let line = last.strip_suffix(b"\r").unwrap_or(&last);
            Daemon::deliver(conn, line, &mut self.out, self.debug);
        }
        conn.closing.get_or_insert(CloseReason::PeerClosed);
        self.apply_outbox(key);
        self.finish_if_flushed(key);
    }

    /// The socket became writable: flush, resume reading if paused, close if it was waiting.
    pub(super) fn tcp_flush(&mut self, key: usize) {
        let Some(conn) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(io) = conn.tcp.as_mut() else {
            return;
        };
        match io.flush(self.poll.registry(), Token(key), self.now) {
            Ok(resume) => {
                if resume {
                    // Data may be waiting with no new edge to announce it.
                    self.pending.push(Token(key));
                }
                self.finish_if_flushed(key);
            }
            Err(e) => {
                debug!(parent: &conn.span, error = %e, "write failed");
                self.close(key, CloseReason::Error);
            }
        }
    }
}
