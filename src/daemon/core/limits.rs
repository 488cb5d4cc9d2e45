//! Limits: who may open a session, how many, how fast; how often a UDP peer is answered;
//! and the log lines all of that produces, rate-limited per peer so that an attack cannot
//! flood the log. Pure: time is passed in.
//!
//! Each listener has a [`State`]: [`State::judge`] decides on a new peer,
//! [`State::opened`]/[`State::closed`] keep the per-address counts,
//! [`State::reply_allowed`] meters UDP replies, [`State::may_log`] rate-limits log lines.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use switchboard_handlers::Proto;

use crate::acl::{Verdict, canonical};
use crate::config::{ListenerConfig, Rate};

/// At most one log line per peer address and kind of event in this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Peers remembered by a listener's log limiter; beyond that they share one entry.
const LOG_PEERS: usize = 4096;
/// How often the UDP reply buckets that filled up again are forgotten.
const REPLY_SWEEP: Duration = Duration::from_secs(1);
/// How often a full log limiter may look for room.
const MAKE_ROOM_EVERY: Duration = Duration::from_secs(1);

/// A token bucket: `burst` tokens at most, refilled at `per_second`. Pure: time is passed in.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: Rate, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            tokens: f64::from(rate.burst),
            last: now,
        }
    }

    /// Whether the bucket would be full at `now`: it then holds nothing worth keeping.
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.rate.per_second;
        self.tokens + earned >= f64::from(self.rate.burst)
    }

    /// Take one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if now > self.last {
            let earned = now.duration_since(self.last).as_secs_f64() * self.rate.per_second;
            self.tokens = (self.tokens + earned).min(f64::from(self.rate.burst));
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Logged {
    at: Instant,
    suppressed: u64,
}

/// Allows one log line per key per interval and counts the lines it holds back. Its memory
/// is bounded: at most `cap` keys, forgotten once their interval has passed; keys beyond the
/// cap share one entry. Pure: time is passed in.
#[derive(Debug)]
pub(crate) struct LogLimiter<K> {
    interval: Duration,
    cap: usize,
    entries: HashMap<K, Logged>,
    /// Shared by the keys that found the table full.
    overflow: Option<Logged>,
    next_sweep: Option<Instant>,
    /// When the full table was last swept for room (at most once per `MAKE_ROOM_EVERY`, so
    /// that a flood of new keys does not sweep it on every event).
    made_room: Option<Instant>,
}

impl<K: Hash + Eq> LogLimiter<K> {
    pub(crate) fn new(interval: Duration, cap: usize) -> LogLimiter<K> {
        LogLimiter {
            interval,
            cap,
            entries: HashMap::new(),
            overflow: None,
            next_sweep: None,
            made_room: None,
        }
    }

    /// Whether a line for `key` may be logged at `now`: `Some(n)` with the number of lines
    /// held back since the previous one, or `None` to hold this one back.
    pub(crate) fn check(&mut self, key: K, now: Instant) -> Option<u64> {
        let interval = self.interval;
        // Forget, now and then, the keys whose interval passed with nothing held back; the
        // others keep their count for their next line, unless room is needed.
        if self.next_sweep.is_none_or(|at| now >= at) {
            self.entries
                .retain(|_, e| now < e.at + interval || e.suppressed > 0);
            self.next_sweep = Some(now + interval);
        }
        if !self.entries.contains_key(&key)
            && self.entries.len() >= self.cap
            && self.made_room.is_none_or(|at| now >= at + MAKE_ROOM_EVERY)
        {
            self.entries.retain(|_, e| now < e.at + interval);
            self.made_room = Some(now);
        }
        if !self.entries.contains_key(&key) && self.entries.len() < self.cap {
            self.entries.insert(
                key,
                Logged {
                    at: now,
                    suppressed: 0,
                },
            );
            return Some(0);
        }
        let entry = match self.entries.get_mut(&key) {
            Some(e) => e,
            None => match &mut self.overflow {
                Some(e) => e,
                None => {
                    self.overflow = Some(Logged {
                        at: now,
                        suppressed: 0,
                    });
                    return Some(0);
                }
            },
        };
        if now >= entry.at + self.interval {
            let held = entry.suppressed;
            *entry = Logged {
                at: now,
                suppressed: 0,
            };
            Some(held)
        } else {
            entry.suppressed += 1;
            None
        }
    }

    /// Keys remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The kinds of event whose log lines are rate-limited separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Event {
    Refused,
    OverLimit,
    BlockedPort,
    TooLarge,
    ReplyRate,
    Handshake,
}

/// Why a peer is not served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Refusal {
    Rules(Verdict),
    MaxConnections(usize),
    MaxPerIp(usize),
    AcceptRate(Rate),
    BlockedPort(u16),
    /// A PROXY-protocol listener's connection from an address not in `trusted`.
    Untrusted,
    MaxChildren(usize),
}

/// A listener's limits state.
#[derive(Debug)]
pub(crate) struct State {
    /// Sessions open per peer address (IPv4-mapped addresses counted as IPv4).
    per_ip: HashMap<IpAddr, usize>,
    /// `accept_rate`, made on first use (and again if the rate changes).
    accept: Option<TokenBucket>,
    /// UDP: `reply_rate` per peer address (all its ports together: a forged source names
    /// a victim by its address). Kept after a session ends, so that ending sessions (a
    /// forged `bye`) does not refill it, until it is full again.
    replies: HashMap<IpAddr, TokenBucket>,
    /// When full buckets were last forgotten.
    replies_swept: Option<Instant>,
    /// UDP: replies dropped for `reply_rate`.
    pub(crate) replies_dropped: u64,
    log: LogLimiter<(IpAddr, Event)>,
}

impl Default for State {
    fn default() -> State {
        State {
            per_ip: HashMap::new(),
            accept: None,
            replies: HashMap::new(),
            replies_swept: None,
            replies_dropped: 0,
            log: LogLimiter::new(LOG_INTERVAL, LOG_PEERS),
        }
    }
}

impl State {
    /// A session from `peer` opened.
    pub(crate) fn opened(&mut self, peer: SocketAddr) {
        *self.per_ip.entry(canonical(peer.ip())).or_default() += 1;
    }

    /// A session from `peer` ended: its capacity returns.
    pub(crate) fn closed(&mut self, peer: SocketAddr) {
        let ip = canonical(peer.ip());
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    fn sessions_from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&canonical(ip)).copied().unwrap_or(0)
    }

    /// The limits `peer` would break by opening a session on a listener with `active` open.
    pub(crate) fn judge(
        &mut self,
        cfg: &ListenerConfig,
        active: usize,
        peer: SocketAddr,
        now: Instant,
    ) -> Option<Refusal> {
        let l = &cfg.limits;
        if cfg.proto == Proto::Udp && l.port_blocked(peer.port()) {
            return Some(Refusal::BlockedPort(peer.port()));
        }
        match &cfg.proxy {
            // Behind a balancer the rules and the per-address limit wait for the real
            // address (`judge_real`); only the balancers may connect.
            Some(p) if !p.trusts(peer.ip()) => return Some(Refusal::Untrusted),
            Some(_) => {}
            None => {
                if let Some(r) = self.judge_address(cfg, peer) {
                    return Some(r);
                }
            }
        }
        if let Some(max) = l.max_connections
            && active >= max
        {
            return Some(Refusal::MaxConnections(max));
        }
        if let Some(max) = cfg.handlers.iter().filter_map(|h| h.max_sessions()).min()
            && active >= max
        {
            return Some(Refusal::MaxChildren(max));
        }
        if let Some(rate) = l.accept_rate {
            let bucket = match &mut self.accept {
                Some(b) if b.rate == rate => b,
                other => other.insert(TokenBucket::new(rate, now)),
            };
            if !bucket.take(now) {
                return Some(Refusal::AcceptRate(rate));
            }
        }
        None
    }

    /// The rules and the per-address limit, for a session from `peer` (not yet counted).
    fn judge_address(&self, cfg: &ListenerConfig, peer: SocketAddr) -> Option<Refusal> {
        let l = &cfg.limits;
        if !l.acl.is_open() {
            match l.acl.check(peer.ip()) {
                Verdict::Allowed => {}
                v => return Some(Refusal::Rules(v)),
            }
        }
        if let Some(max) = l.max_per_ip
            && (l.max_per_ip_loopback || !canonical(peer.ip()).is_loopback())
            && self.sessions_from(peer.ip()) >= max
        {
            return Some(Refusal::MaxPerIp(max));
        }
        None
    }

    /// A session counted under `from` (a balancer) turns out to come from `real` (its PROXY
    /// header): the rules and the per-address limit on `real`. Admitted, it is counted under
    /// `real`; refused, it stays under `from`.
    pub(crate) fn judge_real(
        &mut self,
        cfg: &ListenerConfig,
        from: SocketAddr,
        real: SocketAddr,
    ) -> Option<Refusal> {
        self.closed(from);
        let refusal = self.judge_address(cfg, real);
        self.opened(if refusal.is_some() { from } else { real });
        refusal
    }

    /// Whether a line about `event` from `ip` may be logged now: the number held back since
    /// the last one, or `None`.
    pub(crate) fn may_log(&mut self, ip: IpAddr, event: Event, now: Instant) -> Option<u64> {
        self.log.check((canonical(ip), event), now)
    }

    /// UDP `reply_rate`: whether a reply to `peer` may go now. A refused reply is counted;
    /// the caller logs it (rate-limited).
    pub(crate) fn reply_allowed(
        &mut self,
        cfg: &ListenerConfig,
        peer: SocketAddr,
        now: Instant,
    ) -> bool {
        let Some(rate) = cfg.limits.reply_rate else {
            return true;
        };
        if !cfg.limits.reply_rate_loopback && canonical(peer.ip()).is_loopback() {
            return true;
        }
        if self.replies_swept.is_none_or(|at| now >= at + REPLY_SWEEP) {
            self.replies.retain(|_, b| !b.is_full(now));
            self.replies_swept = Some(now);
        }
        let bucket = match self.replies.entry(canonical(peer.ip())) {
            Entry::Occupied(e) if e.get().rate == rate => e.into_mut(),
            Entry::Occupied(mut e) => {
                e.insert(TokenBucket::new(rate, now));
                e.into_mut()
            }
            Entry::Vacant(e) => e.insert(TokenBucket::new(rate, now)),
        };
        if bucket.take(now) {
            return true;
        }
        self.replies_dropped += 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(2.0, 3), t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "the burst is spent");
        assert!(!b.take(t0 + Duration::from_millis(400)), "0.8 token");
        assert!(
            b.take(t0 + Duration::from_millis(500)),
            "one token per 500 ms"
        );
        assert!(!b.take(t0 + Duration::from_millis(500)));
        // A long quiet spell refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 3);
    }

    #[test]
    fn bucket_ignores_time_going_backwards() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut b = TokenBucket::new(rate(1.0, 1), t0);
        assert!(b.take(t0));
        assert!(!b.take(t0 - Duration::from_millis(900)));
        assert!(!b.take(t0 + Duration::from_millis(900)));
        assert!(b.take(t0 + Duration::from_millis(1000)));
    }

    #[test]
    fn bucket_knows_when_it_is_full_again() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10.0, 10), t0);
        assert!(b.is_full(t0));
        assert!(b.take(t0) && b.take(t0));
        assert!(!b.is_full(t0 + Duration::from_millis(100)));
        assert!(b.is_full(t0 + Duration::from_millis(200)));
    }

    #[test]
    fn slow_rates_work() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(0.1, 1), t0);
        assert!(b.take(t0));
        assert!(!b.take(t0 + Duration::from_secs(9)));
        assert!(b.take(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn log_limiter_allows_one_line_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = LogLimiter::new(10 * s, 100);
        assert_eq!(l.check("a", t0), Some(0));
        assert_eq!(l.check("a", t0 + s), None);
        assert_eq!(l.check("a", t0 + 2 * s), None);
        assert_eq!(l.check("b", t0 + 2 * s), Some(0), "keys are separate");
        assert_eq!(l.check("a", t0 + 10 * s), Some(2), "two were held back");
        assert_eq!(l.check("a", t0 + 11 * s), None);
    }

    #[test]
    fn log_limiter_memory_is_bounded() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = LogLimiter::new(10 * s, 3);
        for k in 0..3 {
            assert_eq!(l.check(k, t0), Some(0));
        }
        // The table is full: other keys share one entry, one line per interval for all.
        assert_eq!(l.check(3, t0), Some(0));
        assert_eq!(l.check(4, t0 + s), None);
        assert_eq!(l.check(5, t0 + s), None);
        assert_eq!(l.len(), 3);
        assert_eq!(l.check(6, t0 + 10 * s), Some(0), "swept: room again");
        assert_eq!(l.len(), 1);
        for k in 0..10_000 {
            l.check(k, t0 + 12 * s);
        }
        assert_eq!(l.len(), 3);
    }
}
