//! TCP pingpong and bulk on one event-loop thread.
//!
//! Both are the same loop: each connection keeps up to `in_flight` blocks of `size` bytes
//! unanswered, and sends the next as soon as the echo of the oldest is complete. Pingpong
//! is one block in flight (one message, wait for its whole echo, send the next); bulk
//! usually more. Nothing is allocated per message: one outgoing buffer holds `in_flight`
//! copies of the block and every write is a slice of it, one read buffer serves every
//! connection, and each connection remembers when each block in flight was sent.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::stats::{self, Clock, Published, Stats, Window};
use super::tls::Link;

/// Read buffer shared by the connections of one thread.
const READ_BUF: usize = 256 * 1024;

/// What each connection sends.
#[derive(Debug, Clone, Copy)]
pub struct StreamLoad {
    /// Bytes per block (the message in pingpong).
    pub size: usize,
    /// Blocks each connection keeps unanswered.
    pub in_flight: usize,
}

/// The bytes of one message: `size - 1` times `x` and a newline, as loadgen sends, so that a
/// server framing by lines sees one message per block.
pub fn message(size: usize) -> Vec<u8> {
    let mut m = vec![b'x'; size];
    if let Some(last) = m.last_mut() {
        *last = b'\n';
    }
    m
}

/// One connection and its position in the stream of blocks.
#[derive(Debug)]
struct Conn {
    stream: Link,
    /// Bytes written so far.
    sent: u64,
    /// Bytes of echo read so far.
    received: u64,
    /// When each block in flight was sent, indexed by block number modulo `in_flight`.
    sent_at: Box<[Instant]>,
}

impl Conn {
    /// Read the echo that has arrived, recording each block it completes.
    ///
    /// Stops at `WouldBlock` or as soon as everything sent has come back: an echo server
    /// cannot have sent more, so the read that would only say `WouldBlock` is skipped (the
    /// next echo raises a new edge). This also bounds the loop: a connection never has more
    /// than `in_flight` blocks to read, so it cannot starve the others.
    fn read_echo(
        &mut self,
        rbuf: &mut [u8],
        load: StreamLoad,
        now: Instant,
        stats: &mut Stats,
    ) -> io::Result<()> {
        let size = load.size as u64;
        let slots = load.in_flight as u64;
        while self.received < self.sent {
            match self.stream.read(rbuf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ));
                }
                Ok(n) => {
                    let before = self.received;
                    self.received += n as u64;
                    if self.received > self.sent {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the server sent more bytes than it was sent",
                        ));
                    }
                    stats.bytes += n as u64;
                    for block in before / size..self.received / size {
                        stats.complete(now - self.sent_at[(block % slots) as usize]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Write until `in_flight` blocks are unanswered or the socket is full.
    fn send_blocks(&mut self, out: &[u8], load: StreamLoad, now: Instant) -> io::Result<()> {
        let size = load.size as u64;
        let slots = load.in_flight as u64;
        let limit = (self.received / size + slots) * size;
        while self.sent < limit {
            // `out` holds `in_flight` blocks, and what may be written now starts inside
            // one and ends at most `in_flight` blocks later, so the slice always fits.
            let off = (self.sent % size) as usize;
            let len = (limit - self.sent) as usize;
            match self.stream.write(&out[off..off + len]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let first_new = self.sent.div_ceil(size);
                    self.sent += n as u64;
                    for block in first_new..self.sent.div_ceil(size) {
                        self.sent_at[(block % slots) as usize] = now;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Run `streams` (connected, non-blocking, TCP_NODELAY) until the end of `window`.
pub fn run(
    streams: Vec<super::Opened>,
    load: StreamLoad,
    window: Window,
    published: &Published,
) -> io::Result<(Stats, Instant)> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let out = message(load.size).repeat(load.in_flight);
    let mut rbuf = vec![0u8; READ_BUF];
    let mut stats = Stats::new();
    let mut clock = Clock::new(window);

    let start = Instant::now();
    let mut conns = Vec::with_capacity(streams.len());
    for (i, (s, tls)) in streams.into_iter().enumerate() {
        let mut stream = match tls {
            Some(c) => Link::Tls(TcpStream::from_std(s), c),
            None => Link::Plain(TcpStream::from_std(s)),
        };
        poll.registry().register(
            stream.socket(),
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Some(Conn {
            stream,
            sent: 0,
            received: 0,
            sent_at: vec![start; load.in_flight].into_boxed_slice(),
        }));
    }
    let mut open = conns.len();
    for slot in &mut conns {
        if let Some(conn) = slot
            && let Err(e) = conn.send_blocks(&out, load, Instant::now())
        {
            stats.error("write", &e);
            *slot = None;
            open -= 1;
        }
    }

    while open > 0 {
        let Some(timeout) = clock.turn(Instant::now(), &mut stats) else {
            break;
        };
        stats::poll(&mut poll, &mut events, timeout)?;
        for event in events.iter() {
            let slot = &mut conns[event.token().0];
            let Some(conn) = slot else { continue };
            let now = Instant::now();
            let mut result = Ok(());
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                result = conn.read_echo(&mut rbuf, load, now, &mut stats);
            }
            if result.is_ok() {
                result = conn.send_blocks(&out, load, now);
            }
            if let Err(e) = result {
                stats.error("connection", &e);
                *slot = None;
                open -= 1;
            }
        }
        published.publish(&stats, clock.measuring());
    }
    let stopped = clock.finish(&mut stats);
    Ok((stats, stopped))
}
