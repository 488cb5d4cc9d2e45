//! UDP sockets: datagrams in by `recvmmsg` batches, handed to the core one by one; replies
//! out by `sendmmsg`, after the whole batch, so that the replies of one batch leave together.
//! What the kernel will not take yet waits in a bounded queue until the socket is writable.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use smallvec::SmallVec;
use tracing::{debug, warn};

use super::core::ListenerId;
use super::{Daemon, MAX_OPS_PER_EVENT, mmsg};

/// Replies of one batch to one listener, in order: on the stack up to a receive batch.
type Run<'a> = SmallVec<[(SocketAddr, &'a [u8]); mmsg::BATCH]>;

/// Datagrams kept per listener while the kernel's send buffer is full.
const UDP_QUEUE_MAX: usize = 4096;

/// A UDP listener's socket and the datagrams it could not send yet.
#[derive(Debug)]
pub(crate) struct UdpIo {
    pub(crate) socket: UdpSocket,
    pub(crate) token: Token,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    /// WRITABLE interest is registered (only while the queue holds datagrams).
    writable: bool,
}

impl UdpIo {
    pub(crate) fn new(socket: UdpSocket, token: Token) -> UdpIo {
        UdpIo {
            socket,
            token,
            queue: VecDeque::new(),
            writable: false,
        }
    }

    /// Send `msgs` in order, behind what is queued; queue what the kernel will not take.
    fn send(&mut self, msgs: &[(SocketAddr, &[u8])], name: &str, registry: &Registry) {
        let mut rest = msgs;
        if self.queue.is_empty() {
            while !rest.is_empty() {
                match mmsg::send(&self.socket, rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        // This datagram cannot go (an unreachable destination...): drop it and
                        // go on with the next.
                        debug!(listener = name, peer = %rest[0].0, error = %e, "send failed; datagram dropped");
                        rest = &rest[1..];
                    }
                }
            }
        }
        for (peer, m) in rest {
            if self.queue.len() >= UDP_QUEUE_MAX {
                warn!(listener = name, %peer, event = "datagram_dropped", reason = "send_queue_full",
                    "send queue full; datagram dropped");
                continue;
            }
            self.queue.push_back((*peer, m.to_vec()));
        }
        self.want_write(!self.queue.is_empty(), registry);
    }

    /// Send what is queued until the socket would block.
    pub(crate) fn flush(&mut self, name: &str, registry: &Registry) {
        while let Some((peer, msg)) = self.queue.front() {
            match self.socket.send_to(msg, *peer) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(listener = name, %peer, error = %e, "send failed; datagram dropped")
                }
            }
            self.queue.pop_front();
        }
        self.want_write(!self.queue.is_empty(), registry);
    }

    fn want_write(&mut self, on: bool, registry: &Registry) {
        if on != self.writable {
            self.writable = on;
            let interest = if on {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = registry.reregister(&mut self.socket, self.token, interest);
        }
    }
}

impl Daemon {
    /// Receive datagrams until the socket is drained (capped per event); the replies of each
    /// batch go out together.
    pub(super) fn udp_read(&mut self, lid: ListenerId) {
        // The batch leaves `self` while its datagrams are handled, and comes back after.
        let mut batch = self.batch.take().unwrap_or_default();
        let mut drained = false;
        let mut token = None;
        for _ in 0..MAX_OPS_PER_EVENT {
            let Some(io) = self.udp_io(lid) else {
                drained = true;
                break;
            };
            token = Some(io.token);
            match batch.recv(io.socket.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        if let Some((data, peer, truncated)) = batch.get(i) {
                            self.core.datagram(lid, peer, data, truncated);
                        }
                    }
                    self.settle();
                    // Short of a full batch: the queue is empty, and the next datagram
                    // brings a new edge.
                    if n < mmsg::BATCH {
                        drained = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(error = %e, "recvmmsg failed");
                    drained = true;
                    break;
                }
            }
        }
        self.batch = Some(batch);
        if let (false, Some(token)) = (drained, token) {
            self.pending.push(token);
        }
    }

    pub(super) fn udp_io(&mut self, lid: ListenerId) -> Option<&mut UdpIo> {
        match self.sockets.get_mut(lid.0) {
            Some(Some(super::ListenerIo::Udp(u))) => Some(u),
            _ => None,
        }
    }

    /// Send the datagrams the core has ready, one `sendmmsg` per run of the same listener.
    pub(super) fn send_datagrams(&mut self) {
        let registry = self.poll.registry();
        let mut run: Run = SmallVec::new();
        let mut current: Option<ListenerId> = None;
        let datagrams = self.core.datagrams();
        let mut flush = |lid: ListenerId, run: &mut Run| {
            if let Some(Some(super::ListenerIo::Udp(io))) = self.sockets.get_mut(lid.0) {
                let name = self.core.listener(lid).map_or("", |l| l.name());
                io.send(run, name, registry);
            }
            run.clear();
        };
        for (lid, peer, bytes) in datagrams.iter() {
            if current.is_some_and(|c| c != lid) {
                flush(current.expect("set"), &mut run);
            }
            current = Some(lid);
            run.push((peer, bytes));
        }
        if let Some(lid) = current {
            flush(lid, &mut run);
        }
        drop(run);
        self.core.clear_datagrams();
    }
}
