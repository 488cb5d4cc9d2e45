//! Limits and hardening: who may open a session, how many, how fast; how often a UDP peer is
//! answered; how long output may stall; and the log lines all of that produces, rate-limited
//! per peer so that an attack cannot flood the log.
//!
//! The token bucket and the log limiter are pure (time is passed in). The rest is the
//! per-listener [`State`] and the `Daemon` methods the loop calls at its hooks: on accept and
//! on a new UDP peer ([`Daemon::admit_tcp`], [`Daemon::admit_udp`]), when a session opens or
//! ends ([`State::opened`], [`State::closed`]), before a UDP reply
//! ([`Listener::reply_allowed`]), when output starts to pile up
//! (`TcpIo::arm_write_timeout`), and when accepting runs out of file descriptors.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use switchboard_handlers::{CloseReason, Proto};
use tracing::{debug, info, warn};

use super::tcp::TcpIo;
use super::timers::{Timer, Timers};
use super::{Daemon, Listener};
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
/// Descriptors kept for what is not a session (listeners, epoll, signals, console, logs).
const FD_MARGIN: u64 = 64;

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
pub(super) enum Event {
    Refused,
    OverLimit,
    BlockedPort,
    TooLarge,
    ReplyRate,
}

/// Why a peer is not served.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refusal {
    Rules(Verdict),
    MaxConnections(usize),
    MaxPerIp(usize),
    AcceptRate(Rate),
    BlockedPort(u16),
}

/// A listener's limits state.
#[derive(Debug)]
pub(super) struct State {
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
    replies_dropped: u64,
    log: LogLimiter<(IpAddr, Event)>,
    /// Accepting ran out of file descriptors: since when, and how many retries failed.
    out_of_fds: Option<(Instant, u64)>,
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
            out_of_fds: None,
        }
    }
}

impl State {
    /// A session from `peer` opened.
    pub(super) fn opened(&mut self, peer: SocketAddr) {
        *self.per_ip.entry(canonical(peer.ip())).or_default() += 1;
    }

    /// A session from `peer` ended: its capacity returns.
    pub(super) fn closed(&mut self, peer: SocketAddr) {
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
    fn judge(
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
        if !l.acl.is_open() {
            match l.acl.check(peer.ip()) {
                Verdict::Allowed => {}
                v => return Some(Refusal::Rules(v)),
            }
        }
        if let Some(max) = l.max_connections
            && active >= max
        {
            return Some(Refusal::MaxConnections(max));
        }
        if let Some(max) = l.max_per_ip
            && (l.max_per_ip_loopback || !canonical(peer.ip()).is_loopback())
            && self.sessions_from(peer.ip()) >= max
        {
            return Some(Refusal::MaxPerIp(max));
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
}

impl Listener {
    /// Whether a line about `event` from `ip` may be logged now: the number held back since
    /// the last one, or `None`.
    pub(super) fn may_log(&mut self, ip: IpAddr, event: Event, now: Instant) -> Option<u64> {
        self.limits.log.check((canonical(ip), event), now)
    }

    /// UDP `reply_rate`: whether a reply to `peer` may go now. A dropped reply is counted
    /// and logged (rate-limited).
    pub(super) fn reply_allowed(&mut self, peer: SocketAddr, now: Instant) -> bool {
        let Some(rate) = self.cfg.limits.reply_rate else {
            return true;
        };
        if !self.cfg.limits.reply_rate_loopback && canonical(peer.ip()).is_loopback() {
            return true;
        }
        let limits = &mut self.limits;
        if limits
            .replies_swept
            .is_none_or(|at| now >= at + REPLY_SWEEP)
        {
            limits.replies.retain(|_, b| !b.is_full(now));
            limits.replies_swept = Some(now);
        }
        let bucket = match limits.replies.entry(canonical(peer.ip())) {
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
        self.limits.replies_dropped += 1;
        if let Some(suppressed) = self.may_log(peer.ip(), Event::ReplyRate, now) {
            warn!(parent: &self.span, listener = %self.cfg.name, proto = %self.cfg.proto, %peer,
                reply_rate = rate.per_second, reply_burst = rate.burst, suppressed,
                dropped_total = self.limits.replies_dropped,
                "reply dropped: over reply_rate for this peer");
        }
        false
    }

    /// Log why a peer is refused, at most once per address and interval.
    fn log_refusal(&mut self, peer: SocketAddr, refusal: Refusal, now: Instant) {
        let event = match refusal {
            Refusal::Rules(_) => Event::Refused,
            Refusal::BlockedPort(_) => Event::BlockedPort,
            _ => Event::OverLimit,
        };
        let Some(suppressed) = self.may_log(peer.ip(), event, now) else {
            return;
        };
        let (name, proto, span) = (&self.cfg.name, self.cfg.proto, &self.span);
        match refusal {
            Refusal::Rules(v) => {
                let rule = match v {
                    Verdict::Denied(rule) => format!("deny {rule}"),
                    _ => "not in allow".to_string(),
                };
                warn!(parent: span, listener = %name, %proto, %peer, rule, suppressed,
                    "peer refused by the allow/deny rules");
            }
            Refusal::BlockedPort(port) => {
                warn!(parent: span, listener = %name, %proto, %peer, port, suppressed,
                    "datagram dropped: its source port is blocked (udp_blocked_ports; port 0 always)");
            }
            Refusal::MaxConnections(max) => {
                warn!(parent: span, listener = %name, %proto, %peer, limit = "max_connections",
                    max, suppressed, "peer refused: the listener is at a limit");
            }
            Refusal::MaxPerIp(max) => {
                warn!(parent: span, listener = %name, %proto, %peer, limit = "max_per_ip",
                    max, suppressed, "peer refused: the listener is at a limit");
            }
            Refusal::AcceptRate(rate) => {
                warn!(parent: span, listener = %name, %proto, %peer, limit = "accept_rate",
                    accept_rate = rate.per_second, accept_burst = rate.burst, suppressed,
                    "peer refused: the listener is at a limit");
            }
        }
    }
}

impl TcpIo {
    /// After output was queued for session `key`: if it just started to pile up, start the
    /// `write_timeout` clock (one timer per connection at a time).
    pub(super) fn arm_write_timeout(
        &mut self,
        cfg: &ListenerConfig,
        timers: &mut Timers,
        now: Instant,
        key: usize,
        session: u64,
    ) {
        if self.flushed() || self.write_timer {
            return;
        }
        self.write_timer = true;
        self.write_progress = now;
        timers.push(
            now + cfg.limits.write_timeout,
            Timer::WriteTimeout { key, session },
        );
    }
}

impl Daemon {
    /// A connection just accepted: whether it may become a session. A refused one gets the
    /// `busy_message` (when over a limit, not when the rules refuse it), written once
    /// without blocking, and is closed when the caller drops it.
    pub(super) fn admit_tcp(&mut self, idx: usize, peer: SocketAddr, stream: &TcpStream) -> bool {
        let listener = &mut self.listeners[idx];
        let Some(refusal) = listener
            .limits
            .judge(&listener.cfg, listener.active, peer, self.now)
        else {
            return true;
        };
        listener.stats.refused += 1;
        listener.log_refusal(peer, refusal, self.now);
        if !matches!(refusal, Refusal::Rules(_))
            && let Some(msg) = &listener.cfg.limits.busy_message
        {
            let mut s = stream;
            if let Err(e) = s.write(msg) {
                debug!(parent: &listener.span, %peer, error = %e, "busy_message not written");
            }
            // Read what the peer already sent, so that closing sends FIN, not a reset that
            // could destroy the message in flight.
            for _ in 0..4 {
                if !matches!(s.read(&mut self.buf), Ok(1..)) {
                    break;
                }
            }
        }
        false
    }

    /// A datagram from a peer without a session: whether it may open one. Refused datagrams
    /// are dropped unanswered.
    pub(super) fn admit_udp(&mut self, idx: usize, peer: SocketAddr) -> bool {
        let listener = &mut self.listeners[idx];
        match listener
            .limits
            .judge(&listener.cfg, listener.active, peer, self.now)
        {
            None => true,
            Some(refusal) => {
                listener.stats.refused += 1;
                listener.log_refusal(peer, refusal, self.now);
                false
            }
        }
    }

    /// The `write_timeout` timer of a session: close it if its output made no progress for
    /// that long; look again later if it did; forget it once the output is flushed.
    pub(super) fn write_timeout_due(&mut self, key: usize, session: u64) {
        let Some(conn) = self
            .sessions
            .get_mut(key)
            .filter(|c| c.session.id == session && !c.ended)
        else {
            return;
        };
        let Some(io) = conn.tcp.as_mut() else {
            return;
        };
        if io.flushed() {
            io.write_timer = false;
            return;
        }
        let timeout = self.listeners[conn.listener].cfg.limits.write_timeout;
        let deadline = io.write_progress + timeout;
        if deadline > self.now {
            self.timers
                .push(deadline, Timer::WriteTimeout { key, session });
            return;
        }
        let pending = io.pending();
        warn!(parent: &conn.span, session, pending, write_timeout = ?timeout,
            "no write progress within write_timeout (the peer does not read); closing the session");
        self.close(key, CloseReason::WriteTimeout);
    }

    /// `accept` failed for want of file descriptors: log the first failure of an episode at
    /// warn, the retries at debug.
    pub(super) fn accept_out_of_fds(
        &mut self,
        idx: usize,
        error: &std::io::Error,
        retry: Duration,
    ) {
        let listener = &mut self.listeners[idx];
        match &mut listener.limits.out_of_fds {
            Some((_, retries)) => {
                *retries += 1;
                let retries = *retries;
                debug!(parent: &listener.span, listener = %listener.cfg.name, retries,
                    "still out of file descriptors; accepts stay paused");
            }
            None => {
                listener.limits.out_of_fds = Some((self.now, 0));
                warn!(parent: &listener.span, listener = %listener.cfg.name, error = %error,
                    sessions = listener.active, retry_every = ?retry,
                    "cannot accept: out of file descriptors; pausing accepts (raise `ulimit -n` or LimitNOFILE=, or lower max_connections)");
            }
        }
    }

    /// A connection was accepted: if an out-of-descriptors episode was on, it is over.
    pub(super) fn accept_resumed(&mut self, idx: usize) {
        let listener = &mut self.listeners[idx];
        if let Some((since, retries)) = listener.limits.out_of_fds.take() {
            info!(parent: &listener.span, listener = %listener.cfg.name, retries,
                paused_for = ?self.now.saturating_duration_since(since),
                "accepting resumed: file descriptors are available again");
        }
    }
}

/// At start: make sure the open-file limit can hold every TCP session the listeners allow.
/// The soft limit is raised towards the hard one if needed (we poll with epoll, never with
/// select(2), so a high limit is harmless); if even that is too low, say how to raise it.
pub(super) fn check_open_files(listeners: &[ListenerConfig]) {
    let tcp: Vec<&ListenerConfig> = listeners.iter().filter(|l| l.proto == Proto::Tcp).collect();
    if tcp.is_empty() {
        return;
    }
    let unlimited = tcp.iter().any(|l| l.limits.max_connections.is_none());
    let needed = FD_MARGIN
        + listeners.len() as u64
        + tcp
            .iter()
            .filter_map(|l| l.limits.max_connections)
            .map(|n| n as u64)
            .sum::<u64>();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and has no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let (mut soft, hard) = (lim.rlim_cur, lim.rlim_max);
    // An infinite hard limit is still capped by the kernel (fs.nr_open).
    let most = if hard == libc::RLIM_INFINITY {
        1 << 20
    } else {
        hard
    };
    let wanted = if unlimited { most } else { needed.min(most) };
    if soft < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the hard
        // one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            soft = wanted;
            info!(
                from = lim.rlim_cur,
                to = wanted,
                "raised the open-file limit (RLIMIT_NOFILE) to fit max_connections"
            );
        }
    }
    if !unlimited && soft < needed {
        warn!(
            limit = soft,
            needed,
            "the open-file limit (RLIMIT_NOFILE) is below the sum of max_connections of the \
             TCP listeners plus a margin; accepts will pause when descriptors run out. Raise it \
             with `ulimit -n {needed}` before starting, or LimitNOFILE={needed} in the systemd \
             unit, or lower max_connections"
        );
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
