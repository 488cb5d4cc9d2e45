//! UDP: each datagram is a message; a session per peer address; replies by `send_to`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use tracing::{debug, warn};

use std::time::Instant;

use super::limits::Event;
use super::{Daemon, LISTENER_BASE, Listener, MAX_OPS_PER_EVENT, RunState, Timer, Timers, mmsg};
use crate::daemon::bind::Bound;

/// Datagrams kept per listener while the kernel's send buffer is full.
const UDP_QUEUE_MAX: usize = 4096;

/// A uniform draw in [0, 1) from the listener's seeded generator (splitmix64).
fn draw(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Send a reply through the listener's configured faults (loss, duplicate, delay).
pub(super) fn send_faulty(
    listener: &mut Listener,
    peer: SocketAddr,
    msg: &[u8],
    registry: &Registry,
    timers: &mut Timers,
    now: Instant,
) {
    if !listener.reply_allowed(peer, now) {
        return;
    }
    let f = listener.cfg.faults;
    if !f.any() {
        return send_to(listener, peer, msg, registry);
    }
    if f.loss > 0.0 && draw(&mut listener.rng) < f.loss {
        debug!(listener = %listener.cfg.name, %peer, "reply dropped (loss)");
        return;
    }
    let copies = if f.duplicate > 0.0 && draw(&mut listener.rng) < f.duplicate {
        2
    } else {
        1
    };
    for _ in 0..copies {
        match f.delay {
            Some(d) => {
                listener.delayed.push_back((now + d, peer, msg.to_vec()));
                timers.push(
                    now + d,
                    Timer::Delayed {
                        listener: listener.index,
                    },
                );
            }
            None => send_to(listener, peer, msg, registry),
        }
    }
}

/// Send one datagram to `peer`, queueing it if the socket would block.
pub(super) fn send_to(listener: &mut Listener, peer: SocketAddr, msg: &[u8], registry: &Registry) {
    let Some(Bound::Udp(socket)) = &mut listener.socket else {
        return;
    };
    if listener.udp_queue.is_empty() {
        loop {
            match socket.send_to(msg, peer) {
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(listener = %listener.cfg.name, %peer, error = %e, "send_to failed; datagram dropped");
                    return;
                }
            }
        }
    }
    if listener.udp_queue.len() >= UDP_QUEUE_MAX {
        warn!(listener = %listener.cfg.name, %peer, "send queue full; datagram dropped");
        return;
    }
    listener.udp_queue.push_back((peer, msg.to_vec()));
    if !listener.udp_writable {
        listener.udp_writable = true;
        let token = Token(LISTENER_BASE + listener.index);
        let _ = registry.reregister(socket, token, Interest::READABLE | Interest::WRITABLE);
    }
}

/// Send queued datagrams until the socket would block. Returns whether the queue emptied.
pub(super) fn flush_now(listener: &mut Listener, socket: &mut UdpSocket) -> bool {
    while let Some((peer, msg)) = listener.udp_queue.front() {
        match socket.send_to(msg, *peer) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                debug!(listener = %listener.cfg.name, peer = %peer, error = %e, "send_to failed; datagram dropped")
            }
        }
        listener.udp_queue.pop_front();
    }
    true
}

impl Daemon {
    /// Receive datagrams until `WouldBlock` (capped per event).
    pub(super) fn udp_read(&mut self, idx: usize) {
        // The batch leaves `self` while its datagrams are handled, and comes back after.
        let mut batch = self.batch.take().unwrap_or_default();
        let drained = self.udp_read_batches(idx, &mut batch);
        self.batch = Some(batch);
        if !drained {
            self.pending.push(Token(LISTENER_BASE + idx));
        }
    }

    /// Receive and handle batches until the queue is empty (true) or the per-event cap.
    fn udp_read_batches(&mut self, idx: usize, batch: &mut mmsg::Batch) -> bool {
        for _ in 0..MAX_OPS_PER_EVENT {
            if self.state != RunState::Running {
                return true;
            }
            let listener = &mut self.listeners[idx];
            let Some(Bound::Udp(socket)) = &listener.socket else {
                return true;
            };
            match batch.recv(socket.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        if let Some((data, peer, truncated)) = batch.get(i) {
                            self.on_datagram(idx, data, peer, truncated);
                        }
                    }
                    // Short of a full batch: the queue is empty, and the next datagram
                    // brings a new edge.
                    if n < mmsg::BATCH {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(listener = %listener.cfg.name, error = %e, "recvmmsg failed");
                    return true;
                }
            }
        }
        false
    }

    fn on_datagram(&mut self, idx: usize, data: &[u8], peer: SocketAddr, truncated: bool) {
        let n = data.len();
        let max = self.listeners[idx].cfg.max_message;
        if n > max || truncated {
            let listener = &mut self.listeners[idx];
            if let Some(suppressed) = listener.may_log(peer.ip(), Event::TooLarge, self.now) {
                warn!(listener = %listener.cfg.name, %peer, bytes = n, max_message = max, suppressed, "datagram larger than max_message; dropped");
            }
            return;
        }
        let key = match self.listeners[idx].peers.get(&peer) {
            Some(&key) => key,
            None if self.listeners[idx].retiring => {
                debug!(listener = %self.listeners[idx].cfg.name, %peer, "listener removed by a reload: datagram from a new peer dropped");
                return;
            }
            None => {
                if !self.admit_udp(idx, peer) {
                    return;
                }
                let key = self.open_session(idx, peer, None);
                if !self.sessions.contains(key) {
                    return;
                }
                self.listeners[idx].peers.insert(peer, key);
                key
            }
        };
        let conn = &mut self.sessions[key];
        conn.last_active = self.now;
        conn.session.now = self.wall;
        conn.session.operators = self.operators.attached();
        conn.counts.bytes_in += n as u64;
        self.out.clear();
        Daemon::deliver(conn, data, &mut self.out, self.debug);
        self.apply_outbox(key);
    }

    /// Send the held-back replies that are due.
    pub(super) fn send_delayed(&mut self, idx: usize) {
        let listener = &mut self.listeners[idx];
        while let Some((due, _, _)) = listener.delayed.front() {
            if *due > self.now {
                break;
            }
            let (_, peer, msg) = listener.delayed.pop_front().expect("front exists");
            send_to(listener, peer, &msg, self.poll.registry());
        }
    }

    /// The socket became writable: send what was queued.
    pub(super) fn udp_flush(&mut self, idx: usize) {
        let listener = &mut self.listeners[idx];
        let Some(Bound::Udp(mut socket)) = listener.socket.take() else {
            return;
        };
        if flush_now(listener, &mut socket) && listener.udp_writable {
            listener.udp_writable = false;
            let _ = self.poll.registry().reregister(
                &mut socket,
                Token(LISTENER_BASE + idx),
                Interest::READABLE,
            );
        }
        listener.socket = Some(Bound::Udp(socket));
    }
}
