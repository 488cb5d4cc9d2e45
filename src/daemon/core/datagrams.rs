//! UDP in the core: datagrams to sessions, replies through the session's faults (loss,
//! duplicate, reorder, latency...; seeded: `core/faults.rs`) into an outgoing batch that the
//! shell sends with one `sendmmsg` per listener.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use tracing::{debug, warn};

use super::drive::Input;
use super::due::Due;
use super::listeners::{Listener, ListenerId, ListenerRef, PeerAddr};
use super::{Core, Effect, SessionKey};
use crate::daemon::timers::Timers;
use crate::faults::shape::Shaper;

/// Datagrams waiting to be sent, in order, their bytes in one buffer.
#[derive(Debug, Default)]
pub(crate) struct Datagrams {
    entries: Vec<(ListenerId, SocketAddr, Range<usize>)>,
    data: Vec<u8>,
}

impl Datagrams {
    fn push(&mut self, lid: ListenerId, peer: SocketAddr, msg: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(msg);
        self.entries.push((lid, peer, start..self.data.len()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each datagram: listener, destination, bytes.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ListenerId, SocketAddr, &[u8])> + '_ {
        self.entries
            .iter()
            .map(|(l, p, r)| (*l, *p, &self.data[r.clone()]))
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.data.clear();
    }
}

/// Queue a reply to `peer` through the listener's `reply_rate` and the session's faults
/// (`shaper`, when any apply): what they let go now joins the batch, what they hold back
/// waits in the listener's delayed queue (so that it still goes if the session ends).
#[allow(clippy::too_many_arguments)]
pub(super) fn reply(
    l: &mut Listener,
    lid: ListenerId,
    peer: SocketAddr,
    msg: &[u8],
    shaper: Option<&mut Shaper>,
    out: &mut Datagrams,
    timers: &mut Timers<Due>,
    effects: &mut VecDeque<Effect>,
    now: Instant,
) {
    if !l.reply_allowed(peer, now) {
        return;
    }
    let (Some(u), span, serial) = (l.udp.as_mut(), &l.span, l.serial) else {
        return;
    };
    let Some(sh) = shaper else {
        if out.is_empty() {
            effects.push_back(Effect::Datagrams);
        }
        out.push(lid, peer, msg);
        return;
    };
    sh.push(now, msg);
    let mut sent = 0;
    for (at, bytes) in sh.take_all() {
        sent += 1;
        if at <= now {
            if out.is_empty() {
                effects.push_back(Effect::Datagrams);
            }
            out.push(lid, peer, &bytes);
        } else {
            let i = u.delayed.partition_point(|(t, _, _)| *t <= at);
            u.delayed.insert(i, (at, peer, bytes));
            timers.push(at, Due::Delayed(ListenerRef { id: lid, serial }));
        }
    }
    if sent == 0 {
        debug!(parent: span, %peer, event = "fault", fault = "loss", "reply dropped by a fault");
    }
}

impl Core {
    /// A datagram from `peer` on a UDP listener; `truncated` when it did not fit the buffer.
    pub(crate) fn datagram(
        &mut self,
        lid: ListenerId,
        peer: SocketAddr,
        data: &[u8],
        truncated: bool,
    ) {
        let now = self.now;
        let Some(l) = self.listeners.get_mut(lid.0) else {
            return;
        };
        // A listener stopped in the middle of a batch takes nothing more from it.
        if !l.takes_datagram_from(&peer) {
            if self.debug {
                debug!(parent: &l.span, %peer, event = "datagram_dropped", reason = "not_serving",
                    "listener not serving: datagram dropped");
            }
            return;
        }
        if data.len() > l.cfg.max_message || truncated {
            l.too_large(peer, data.len(), now);
            return;
        }
        let known = l
            .udp
            .as_ref()
            .and_then(|u| u.peers.get(&PeerAddr(peer)).copied());
        let key = match known {
            Some(key) => key,
            None => match self.open_udp(lid, peer) {
                Some(key) => key,
                None => return,
            },
        };
        if let Some(s) = self
            .sessions
            .get(key)
            .filter(|s| s.phase == super::Phase::Open)
        {
            if self.tapped(s) {
                let id = s.info.id;
                self.effects.push_back(Effect::note(super::Note::Read {
                    id,
                    bytes: data.to_vec(),
                }));
            }
            self.drive(key, Input::Datagram(data));
        }
    }

    /// A new UDP peer: a session if the limits let it in. A full table makes room rather
    /// than refuse every newcomer for good (a UDP peer never says it left).
    fn open_udp(&mut self, lid: ListenerId, peer: SocketAddr) -> Option<SessionKey> {
        if self.listeners[lid.0].is_full() {
            self.make_room(lid);
        }
        let key = self.admit(lid, peer).ok()?;
        let (id, now) = (self.sessions[key].info.id, self.now);
        let live = |k: SessionKey, id: u64| self.sessions.get(k).is_some_and(|s| s.info.id == id);
        let l = &mut self.listeners[lid.0];
        if let Some(u) = l.udp.as_mut() {
            u.peers.insert(PeerAddr(peer), key);
            u.order.push_back((key, id, now));
            if u.order.len() > 2 * u.peers.len() + 64 {
                u.order.retain(|&(k, id, _)| live(k, id));
            }
        }
        self.open(key);
        self.sessions
            .get(key)
            .is_some_and(|s| s.phase == super::Phase::Open)
            .then_some(key)
    }

    /// End the least recently active session of a full UDP listener. Sessions seen active
    /// since they were queued go to the back once; the scan is bounded, so a flood of new
    /// peers costs little each.
    fn make_room(&mut self, lid: ListenerId) {
        const SCAN: usize = 64;
        for _ in 0..SCAN {
            let Some((key, id, stamp)) = self.listeners[lid.0]
                .udp
                .as_mut()
                .and_then(|u| u.order.pop_front())
            else {
                return;
            };
            let Some(s) = self
                .sessions
                .get(key)
                .filter(|s| s.info.id == id && s.is_live())
            else {
                continue;
            };
            let u = self.listeners[lid.0].udp.as_mut().expect("a UDP listener");
            if s.last_active > stamp {
                u.order.push_back((key, id, s.last_active));
                continue;
            }
            u.evicted += 1;
            if u.evicted.is_power_of_two() {
                let l = &self.listeners[lid.0];
                warn!(parent: &l.span, event = "evicted", evicted_total = l.udp.as_ref().map_or(0, |u| u.evicted),
                    max_connections = l.cfg.limits.max_connections,
                    "the session table is full: the least recently active sessions make room for new peers");
            }
            self.end(key, super::CloseReason::Evicted);
            return;
        }
    }

    /// The datagrams to send now; call [`Core::clear_datagrams`] once sent.
    pub(crate) fn datagrams(&self) -> &Datagrams {
        &self.datagrams
    }

    pub(crate) fn clear_datagrams(&mut self) {
        self.datagrams.clear();
    }

    /// Send the held-back replies of a listener that are due.
    pub(super) fn send_delayed(&mut self, r: ListenerRef) {
        let Some(u) = self
            .listeners
            .get_mut(r.id.0)
            .filter(|l| l.serial == r.serial)
            .and_then(|l| l.udp.as_mut())
        else {
            return;
        };
        while u
            .delayed
            .front()
            .is_some_and(|(due, _, _)| *due <= self.now)
        {
            let (_, peer, msg) = u.delayed.pop_front().expect("front exists");
            if self.datagrams.is_empty() {
                self.effects.push_back(Effect::Datagrams);
            }
            self.datagrams.push(r.id, peer, &msg);
        }
        self.finish_listener(r.id);
    }
}
