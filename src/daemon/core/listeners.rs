//! Listeners as the core sees them: settings, counters, limits, UDP peers and faults, where
//! each is in its life, and how they stop. Their sockets live in the shell.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use switchboard_handlers::{CloseReason, Proto};
use tracing::{Span, info, info_span, warn};

use super::limits::{self, Event, Refusal};
use super::metrics::Stats;
use super::session::Counts;
use super::session::Phase;
use super::{Effect, SessionKey};
use crate::acl::Verdict;
use crate::config::ListenerConfig;
use crate::faults::shape::{FaultSet, Installed};

/// A listener's place in the core's table; its shell socket has the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ListenerId(pub(crate) usize);

/// A listener named by id and serial, so that a timer for a removed listener is not applied
/// to a new one in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ListenerRef {
    pub(crate) id: ListenerId,
    pub(crate) serial: u64,
}

/// Where a listener is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerPhase {
    /// Takes new sessions.
    Serving,
    /// Removed by a reload: no new sessions. TCP: its socket is closed and its sessions go
    /// on. UDP: its socket serves the peers it has until they end or `drain_timeout` passes.
    /// The row goes once its last session ends.
    Retiring,
    /// No new messages (the daemon stops, or the listener was stopped); a UDP socket is kept
    /// only to send the replies already decided (delayed ones), then closes.
    Stopping,
    /// Its socket is closed; the row stays (the listener is still in the config).
    Stopped,
}

/// One listener.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) serial: u64,
    pub(crate) cfg: Rc<ListenerConfig>,
    pub(crate) local: SocketAddr,
    pub(crate) phase: ListenerPhase,
    /// Sessions open on it (handshakes included).
    pub(crate) active: usize,
    pub(crate) stats: Stats,
    pub(crate) limits: limits::State,
    /// What only a UDP listener has.
    pub(crate) udp: Option<UdpState>,
    pub(crate) span: Span,
    /// The faults in force (`core/faults.rs`): the config's, or as changed at run time.
    pub(crate) faults: Rc<FaultSet>,
    /// Made through the toxiproxy API, not the config: a reload leaves it alone.
    pub(crate) api: bool,
}

/// A UDP listener's peers and faults.
#[derive(Debug)]
pub(crate) struct UdpState {
    /// The session of each peer.
    pub(crate) peers: HashMap<PeerAddr, SessionKey>,
    /// Replies held back by faults (`latency`, `reorder`), due in order of time.
    pub(crate) delayed: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    /// Sessions in the order they opened or were last seen active, for making room when the
    /// table is full (least recently active first). Entries of ended sessions are skipped
    /// and pruned lazily.
    pub(crate) order: VecDeque<(SessionKey, u64, Instant)>,
    /// Sessions ended to make room.
    pub(crate) evicted: u64,
}

/// A UDP peer's address as the key of [`UdpState::peers`], looked up for every datagram.
/// Hashed in one write of its address and port, where `SocketAddr`'s own `Hash` makes four
/// (the family, the length and bytes of the address, the port), each a round of std's
/// SipHash: about 150 of the 1,800 instructions per datagram of one peer. The hasher stays
/// std's keyed one, as peers choose their addresses: the bytes written are distinct for
/// distinct addresses (the two families differ in length, which SipHash counts), so no peer
/// can aim at another's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

impl std::hash::Hash for PeerAddr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self.0 {
            SocketAddr::V4(a) => {
                state.write_u64(u64::from(a.ip().to_bits()) << 16 | u64::from(a.port()))
            }
            // Flow label and scope are left out: keys equal under `Eq` still hash alike.
            SocketAddr::V6(a) => {
                let mut bytes = [0u8; 18];
                bytes[..16].copy_from_slice(&a.ip().octets());
                bytes[16..].copy_from_slice(&a.port().to_be_bytes());
                state.write(&bytes);
            }
        }
    }
}

impl Listener {
    pub(crate) fn new(
        serial: u64,
        cfg: Rc<ListenerConfig>,
        local: SocketAddr,
        now: Instant,
    ) -> Listener {
        let span = info_span!("listener", listener = %cfg.name, proto = %cfg.proto);
        let faults = Rc::new(FaultSet {
            seed: cfg.faults.seed,
            faults: cfg
                .faults
                .list
                .iter()
                .map(|f| Installed {
                    fault: Rc::new(f.clone()),
                    since: now,
                })
                .collect(),
            generation: 1,
        });
        let udp = (cfg.proto == Proto::Udp).then(|| UdpState {
            peers: HashMap::new(),
            delayed: VecDeque::new(),
            order: VecDeque::new(),
            evicted: 0,
        });
        Listener {
            serial,
            cfg,
            local,
            phase: ListenerPhase::Serving,
            active: 0,
            stats: Stats::default(),
            limits: limits::State::default(),
            udp,
            span,
            faults,
            api: false,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.cfg.name
    }

    pub(crate) fn is_udp(&self) -> bool {
        self.udp.is_some()
    }

    /// Replies held back by a UDP `delay`, not yet due.
    pub(crate) fn has_delayed(&self) -> bool {
        self.udp.as_ref().is_some_and(|u| !u.delayed.is_empty())
    }

    /// Whether it takes new sessions.
    pub(crate) fn is_serving(&self) -> bool {
        self.phase == ListenerPhase::Serving
    }

    /// Whether its socket is still open.
    pub(crate) fn has_socket(&self) -> bool {
        match self.phase {
            ListenerPhase::Serving => true,
            ListenerPhase::Retiring | ListenerPhase::Stopping => self.is_udp(),
            ListenerPhase::Stopped => false,
        }
    }

    /// Whether a datagram from `peer` reaches a session: a serving listener takes every
    /// peer, a retiring one only those it has.
    pub(crate) fn takes_datagram_from(&self, peer: &SocketAddr) -> bool {
        match self.phase {
            ListenerPhase::Serving => true,
            ListenerPhase::Retiring => self
                .udp
                .as_ref()
                .is_some_and(|u| u.peers.contains_key(&PeerAddr(*peer))),
            ListenerPhase::Stopping | ListenerPhase::Stopped => false,
        }
    }

    /// Whether it holds as many sessions as `max_connections` allows.
    pub(crate) fn is_full(&self) -> bool {
        self.cfg
            .limits
            .max_connections
            .is_some_and(|max| self.active >= max)
    }

    /// A session opened on it.
    pub(crate) fn opened(&mut self, peer: SocketAddr) {
        self.active += 1;
        self.stats.opened += 1;
        self.limits.opened(peer);
    }

    /// A session of it ended with these counts.
    pub(crate) fn closed(&mut self, peer: SocketAddr, counts: &Counts, error: bool) {
        self.active -= 1;
        self.stats.closed += 1;
        self.stats.add(counts);
        if error {
            self.stats.errors += 1;
        }
        self.limits.closed(peer);
    }

    /// Whether `peer` may open a session now; a refusal is counted and logged (rate-limited).
    pub(crate) fn admit(&mut self, peer: SocketAddr, now: Instant) -> Result<(), Refusal> {
        match self.limits.judge(&self.cfg, self.active, peer, now) {
            None => Ok(()),
            Some(refusal) => {
                self.stats.refused += 1;
                self.log_refusal(peer, refusal, now);
                Err(refusal)
            }
        }
    }

    /// The real peer a PROXY header named for a session counted under `from`: the rules and
    /// the per-address limit again; a refusal is counted and logged like any other.
    pub(crate) fn admit_real(
        &mut self,
        from: SocketAddr,
        real: SocketAddr,
        now: Instant,
    ) -> Result<(), Refusal> {
        match self.limits.judge_real(&self.cfg, from, real) {
            None => Ok(()),
            Some(refusal) => {
                self.stats.refused += 1;
                self.log_refusal(real, refusal, now);
                Err(refusal)
            }
        }
    }

    /// Log why a peer is refused, at most once per address and interval.
    fn log_refusal(&mut self, peer: SocketAddr, refusal: Refusal, now: Instant) {
        let event = match refusal {
            Refusal::Rules(_) | Refusal::Untrusted => Event::Refused,
            Refusal::BlockedPort(_) => Event::BlockedPort,
            _ => Event::OverLimit,
        };
        let Some(suppressed) = self.limits.may_log(peer.ip(), event, now) else {
            return;
        };
        let span = &self.span;
        match refusal {
            Refusal::Rules(v) => {
                let rule = match v {
                    Verdict::Denied(rule) => format!("deny {rule}"),
                    _ => "not in allow".to_string(),
                };
                warn!(parent: span, event = "refused", reason = "rules", %peer, rule, suppressed,
                    "peer refused by the allow/deny rules");
            }
            Refusal::Untrusted => {
                warn!(parent: span, event = "refused", reason = "proxy_untrusted", %peer, suppressed,
                    "connection refused: the listener takes the PROXY protocol and this address is not in its trusted list");
            }
            Refusal::BlockedPort(port) => {
                warn!(parent: span, event = "refused", reason = "blocked_port", %peer, port, suppressed,
                    "datagram dropped: its source port is blocked (udp_blocked_ports; port 0 always)");
            }
            Refusal::MaxConnections(max) => {
                warn!(parent: span, event = "refused", reason = "limit", limit = "max_connections",
                    %peer, max, suppressed, "peer refused: the listener is at a limit");
            }
            Refusal::MaxChildren(max) => {
                warn!(parent: span, event = "refused", reason = "limit", limit = "max_children",
                    %peer, max, suppressed, "peer refused: the listener is at a limit");
            }
            Refusal::MaxPerIp(max) => {
                warn!(parent: span, event = "refused", reason = "limit", limit = "max_per_ip",
                    %peer, max, suppressed, "peer refused: the listener is at a limit");
            }
            Refusal::AcceptRate(rate) => {
                warn!(parent: span, event = "refused", reason = "limit", limit = "accept_rate",
                    %peer, accept_rate = rate.per_second, accept_burst = rate.burst, suppressed,
                    "peer refused: the listener is at a limit");
            }
        }
    }

    /// UDP `reply_rate`: whether a reply to `peer` may go now; a dropped one is logged
    /// (rate-limited).
    pub(crate) fn reply_allowed(&mut self, peer: SocketAddr, now: Instant) -> bool {
        if self.limits.reply_allowed(&self.cfg, peer, now) {
            return true;
        }
        if let Some(suppressed) = self.limits.may_log(peer.ip(), Event::ReplyRate, now)
            && let Some(rate) = self.cfg.limits.reply_rate
        {
            warn!(parent: &self.span, event = "reply_dropped", reason = "reply_rate", %peer,
                reply_rate = rate.per_second, reply_burst = rate.burst, suppressed,
                dropped_total = self.limits.replies_dropped,
                "reply dropped: over reply_rate for this peer");
        }
        false
    }

    /// A datagram over `max_message` from `peer`: logged (rate-limited) and dropped.
    pub(crate) fn too_large(&mut self, peer: SocketAddr, bytes: usize, now: Instant) {
        if let Some(suppressed) = self.limits.may_log(peer.ip(), Event::TooLarge, now) {
            warn!(parent: &self.span, event = "datagram_dropped", reason = "too_long", %peer,
                bytes, max_message = self.cfg.max_message, suppressed,
                "datagram larger than max_message; dropped");
        }
    }
}

impl super::Core {
    /// Stop taking new sessions on a listener. TCP: its socket closes now and its sessions
    /// go on. UDP: its sessions end (they share its socket), which closes once the replies
    /// already decided are sent. A retiring listener stays retiring, so that it leaves the
    /// table when it is done.
    pub(crate) fn stop_listener(&mut self, lid: ListenerId, why: &str) {
        let Some(l) = self.listeners.get_mut(lid.0) else {
            return;
        };
        if matches!(l.phase, ListenerPhase::Stopping | ListenerPhase::Stopped) {
            return;
        }
        l.span
            .in_scope(|| info!(event = "listener_stopped", why, "listener stopped"));
        self.retire_shared(lid);
        let l = &mut self.listeners[lid.0];
        let serving = l.phase == ListenerPhase::Serving;
        if !l.is_udp() {
            if serving {
                l.phase = ListenerPhase::Stopped;
                self.effects.push_back(Effect::StopListener(lid));
            }
            self.check_done();
            return;
        }
        if serving {
            l.phase = ListenerPhase::Stopping;
        }
        let keys: Vec<SessionKey> = l
            .udp
            .as_ref()
            .map(|u| u.peers.values().copied().collect())
            .unwrap_or_default();
        for key in keys {
            let reason = match self.sessions.get(key).map(|s| s.phase) {
                Some(Phase::Draining(r)) => r,
                _ => CloseReason::Shutdown,
            };
            self.end(key, reason);
        }
        self.finish_listener(lid);
    }

    /// A stopping or retiring listener with nothing left to serve closes its socket, and a
    /// retired one leaves the table (its counters go to the listener of the same name).
    pub(super) fn finish_listener(&mut self, lid: ListenerId) {
        let Some(l) = self.listeners.get_mut(lid.0) else {
            return;
        };
        if l.active > 0 || l.has_delayed() {
            return;
        }
        match l.phase {
            ListenerPhase::Stopping => {
                l.phase = ListenerPhase::Stopped;
                self.effects.push_back(Effect::StopListener(lid));
            }
            ListenerPhase::Retiring => {
                if l.is_udp() {
                    self.effects.push_back(Effect::StopListener(lid));
                }
                let old = self.listeners.remove(lid.0);
                old.span.in_scope(|| {
                    info!(
                        event = "listener_removed",
                        "removed from the config; its last session ended"
                    )
                });
                if let Some((_, heir)) = self
                    .listeners
                    .iter_mut()
                    .find(|(_, l)| l.cfg.name == old.cfg.name && l.cfg.proto == old.cfg.proto)
                {
                    heir.stats.merge(&old.stats);
                }
            }
            ListenerPhase::Serving | ListenerPhase::Stopped => {}
        }
        self.check_done();
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn peer_addresses_hash_apart_unless_equal() {
        let h = std::collections::hash_map::RandomState::new();
        let hash = |a: &str| h.hash_one(PeerAddr(a.parse().unwrap()));
        let peers = [
            "127.0.0.1:5000",
            "127.0.0.1:5001",
            "127.0.0.2:5000",
            "0.0.0.0:0",
            "[::ffff:127.0.0.1]:5000",
            "[::1]:5000",
            "[::1]:5001",
            "[::]:0",
        ];
        for (i, a) in peers.iter().enumerate() {
            assert_eq!(hash(a), hash(a), "{a}");
            for b in &peers[i + 1..] {
                assert_ne!(hash(a), hash(b), "{a} and {b}");
            }
        }
        // Flow label and scope are not hashed: addresses that differ only there share a
        // hash (Eq still tells them apart).
        let a: std::net::SocketAddrV6 = "[fe80::1%2]:7".parse().unwrap();
        let mut b = a;
        b.set_flowinfo(9);
        assert_eq!(
            h.hash_one(PeerAddr(a.into())),
            h.hash_one(PeerAddr(b.into()))
        );
    }
}
