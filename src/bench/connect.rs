//! Connect cycles on one event-loop thread: each of `workers` slots connects, sends one
//! message, reads its whole echo, closes, and starts again at once. Latency is the whole
//! cycle, from `connect` to the last byte of the echo.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::stats::{self, Clock, Published, Stats, Window};
use super::stream::message;
use super::tls::{Link, Tls};

/// A cycle that has not finished after this long is counted as an error (as loadgen).
pub const CYCLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Wait before retrying a slot whose `connect` failed at once (the server is gone, or no
/// ephemeral port is free), so that a dead server is not hammered in a busy loop.
const RETRY_DELAY: Duration = Duration::from_millis(10);
/// How often slots are checked for a cycle past [`CYCLE_TIMEOUT`].
const TIMEOUT_SCAN: Duration = Duration::from_millis(100);

/// What a step of a cycle came to.
#[derive(Debug)]
enum Step {
    /// Waiting for the socket.
    Pending,
    /// The whole echo is in.
    Done,
    /// The cycle failed at this stage.
    Failed(&'static str, io::Error),
}

#[derive(Debug)]
struct Cycle {
    stream: Link,
    started: Instant,
    connected: bool,
    written: usize,
    received: usize,
}

impl Cycle {
    /// Advance the cycle after a readiness event.
    fn advance(&mut self, msg: &[u8], rbuf: &mut [u8]) -> Step {
        if !self.connected {
            // mio's contract for a non-blocking connect: on an event, a pending socket
            // error means failure; otherwise a peer address means connected.
            match self.stream.socket().take_error() {
                Ok(Some(e)) | Err(e) => return Step::Failed("connect", e),
                Ok(None) => {}
            }
            match self.stream.socket().peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Pending,
                Err(e) => return Step::Failed("connect", e),
            }
        }
        while self.written < msg.len() {
            match self.stream.write(&msg[self.written..]) {
                Ok(0) => return Step::Failed("write", io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed("write", e),
            }
        }
        while self.received < msg.len() {
            match self.stream.read(rbuf) {
                Ok(0) => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection before the whole echo",
                    );
                    return Step::Failed("read", e);
                }
                Ok(n) => self.received += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed("read", e),
            }
        }
        Step::Done
    }
}

/// The slots of one thread and what they share.
struct Cycles {
    addr: SocketAddr,
    tls: Option<Tls>,
    poll: Poll,
    slots: Vec<Option<Cycle>>,
    msg: Vec<u8>,
    rbuf: Vec<u8>,
}

impl Cycles {
    /// Start a cycle in slot `i`; false when `connect` failed at once.
    fn start(&mut self, i: usize, now: Instant, stats: &mut Stats) -> bool {
        let opened = TcpStream::connect(self.addr).and_then(|mut stream| {
            stream.set_nodelay(true)?;
            self.poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let link = match &self.tls {
                Some(tls) => Link::Tls(stream, Box::new(tls.connection()?)),
                None => Link::Plain(stream),
            };
            Ok(link)
        });
        match opened {
            Ok(stream) => {
                self.slots[i] = Some(Cycle {
                    stream,
                    started: now,
                    connected: false,
                    written: 0,
                    received: 0,
                });
                true
            }
            Err(e) => {
                stats.error("connect", &e);
                false
            }
        }
    }
}

/// Run `workers` concurrent connect cycles against `addr` with `size`-byte messages until
/// the end of `window`.
pub fn run(
    addr: SocketAddr,
    workers: usize,
    size: usize,
    window: Window,
    published: &Published,
    tls: Option<Tls>,
) -> io::Result<(Stats, Instant)> {
    let mut events = Events::with_capacity(1024);
    let mut c = Cycles {
        addr,
        tls,
        poll: Poll::new()?,
        slots: (0..workers).map(|_| None).collect(),
        msg: message(size),
        rbuf: vec![0u8; 64 * 1024],
    };
    let mut stats = Stats::new();
    let mut clock = Clock::new(window);
    let mut next_scan = Instant::now() + TIMEOUT_SCAN;

    while let Some(mut timeout) = clock.turn(Instant::now(), &mut stats) {
        let now = Instant::now();
        for i in 0..workers {
            if c.slots[i].is_none() && !c.start(i, now, &mut stats) {
                timeout = timeout.min(RETRY_DELAY);
            }
        }
        stats::poll(&mut c.poll, &mut events, timeout)?;
        // A slot's token is its index. A slot reused within this batch cannot receive a
        // stale event: epoll reports each descriptor at most once per wait, and a closed
        // one leaves the interest list.
        for event in events.iter() {
            let i = event.token().0;
            let Some(cycle) = c.slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            match cycle.advance(&c.msg, &mut c.rbuf) {
                Step::Pending => continue,
                Step::Done => {
                    let now = Instant::now();
                    stats.bytes += size as u64;
                    stats.complete(now - cycle.started);
                    c.slots[i] = None;
                    c.start(i, now, &mut stats);
                }
                Step::Failed(what, e) => {
                    stats.error(what, &e);
                    c.slots[i] = None;
                }
            }
        }
        let now = Instant::now();
        if now >= next_scan {
            next_scan = now + TIMEOUT_SCAN;
            for slot in &mut c.slots {
                if slot
                    .as_ref()
                    .is_some_and(|x| now - x.started > CYCLE_TIMEOUT)
                {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "no echo within 3 s");
                    stats.error("cycle", &e);
                    *slot = None;
                }
            }
        }
        published.publish(&stats, clock.measuring());
    }
    let stopped = clock.finish(&mut stats);
    Ok((stats, stopped))
}
