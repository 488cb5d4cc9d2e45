//! UDP pingpong on one event-loop thread: each socket (one peer for the server) sends a
//! datagram and waits for its echo, and sends it again when none came within
//! [`LOSS_TIMEOUT`].
//!
//! A datagram of 8 bytes or more starts with the socket's sequence number in hex, so an
//! echo that arrives after its datagram was given up for lost is not taken for the echo
//! of the one sent again (the payload stays printable text for servers that expect it).

use std::io;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::stats::{self, Clock, Published, Stats, Window};

/// A datagram with no echo after this long is counted lost and sent again (as loadgen).
pub const LOSS_TIMEOUT: Duration = Duration::from_millis(200);
/// How often the sockets are checked for a lost datagram.
const LOSS_SCAN: Duration = Duration::from_millis(20);
/// Bytes of the sequence tag.
const TAG: usize = 8;

/// The tag that starts datagram `seq`: its low 32 bits in hex.
fn tag(seq: u64) -> [u8; TAG] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [0u8; TAG];
    for (i, b) in t.iter_mut().enumerate() {
        *b = HEX[((seq >> (4 * (TAG - 1 - i))) & 0xf) as usize];
    }
    t
}

#[derive(Debug)]
struct Peer {
    socket: UdpSocket,
    seq: u64,
    sent_at: Instant,
}

impl Peer {
    /// Send the next datagram. A full socket buffer is not an error: the datagram counts
    /// as lost and is sent again after the timeout.
    fn send_next(&mut self, out: &mut [u8], now: Instant) -> io::Result<()> {
        self.seq += 1;
        self.sent_at = now;
        if out.len() >= TAG {
            out[..TAG].copy_from_slice(&tag(self.seq));
        }
        match self.socket.send(out) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether `echo` answers the datagram in flight.
    fn answers(&self, echo: &[u8], size: usize) -> bool {
        echo.len() == size && (size < TAG || echo[..TAG] == tag(self.seq))
    }
}

/// Run `sockets` (connected to the server, non-blocking), sending `size`-byte datagrams,
/// until the end of `window`.
pub fn run(
    sockets: Vec<std::net::UdpSocket>,
    size: usize,
    window: Window,
    published: &Published,
) -> io::Result<(Stats, Instant)> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut out = vec![b'u'; size];
    let mut rbuf = vec![0u8; 65_536];
    let mut stats = Stats::new();
    let mut clock = Clock::new(window);

    let now = Instant::now();
    let mut peers = Vec::with_capacity(sockets.len());
    for (i, s) in sockets.into_iter().enumerate() {
        let mut socket = UdpSocket::from_std(s);
        poll.registry()
            .register(&mut socket, Token(i), Interest::READABLE)?;
        let mut peer = Peer {
            socket,
            seq: 0,
            sent_at: now,
        };
        if let Err(e) = peer.send_next(&mut out, now) {
            stats.error("send", &e);
        }
        peers.push(peer);
    }

    let mut next_scan = now + LOSS_SCAN;
    while let Some(timeout) = clock.turn(Instant::now(), &mut stats) {
        stats::poll(&mut poll, &mut events, timeout.min(LOSS_SCAN))?;
        for event in events.iter() {
            let Some(peer) = peers.get_mut(event.token().0) else {
                continue;
            };
            let now = Instant::now();
            loop {
                match peer.socket.recv(&mut rbuf) {
                    Ok(n) if peer.answers(&rbuf[..n], size) => {
                        stats.bytes += n as u64;
                        stats.complete(now - peer.sent_at);
                        if let Err(e) = peer.send_next(&mut out, now) {
                            stats.error("send", &e);
                        }
                        // Nothing else is due until the echo of what was just sent; a late
                        // echo still queued comes out before it at the next edge.
                        break;
                    }
                    Ok(_) => {} // the echo of a datagram already counted lost
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // Typically ECONNREFUSED from an ICMP error: the datagram in
                        // flight is lost and goes again after the timeout.
                        stats.error("receive", &e);
                        break;
                    }
                }
            }
        }
        let now = Instant::now();
        if now >= next_scan {
            next_scan = now + LOSS_SCAN;
            for peer in &mut peers {
                if now - peer.sent_at > LOSS_TIMEOUT {
                    stats.lost += 1;
                    if let Err(e) = peer.send_next(&mut out, now) {
                        stats.error("send", &e);
                    }
                }
            }
        }
        published.publish(&stats, clock.measuring());
    }
    let stopped = clock.finish(&mut stats);
    Ok((stats, stopped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_hex_sequence_numbers() {
        assert_eq!(&tag(1), b"00000001");
        assert_eq!(&tag(0xdead_beef), b"deadbeef");
        assert_eq!(&tag(0x1_0000_0002), b"00000002", "the low 32 bits");
    }
}
