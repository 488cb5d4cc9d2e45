//! The engine that applies a listener's faults to one direction of one session: a
//! [`Shaper`] takes what flows (a chunk of a stream, or a datagram) with the time, and holds it
//! as pieces, each with the time it may go. Pure: no clock is read, every draw comes from a
//! generator seeded by the listener's `seed` and the session's number, so the same inputs at
//! the same times give the same output on every run.
//!
//! A stream keeps its order (a piece never goes before the one in front of it); datagrams may
//! overtake each other (`reorder`, jitter). What ends a session (`limit_data`, `timeout`,
//! `reset_peer`) comes back as a [`Fate`], at once from [`Shaper::push`] or when its deadline
//! comes from [`Shaper::fate_due`].

use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use switchboard_handlers::rand::SplitMix64;

use super::{Direction, Fault, Kind};

/// A fault in force on a listener, and since when.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The fault.
    pub fault: Rc<Fault>,
    /// When it came into force (the daemon's start, a reload, a `fault add`).
    pub since: Instant,
}

/// The faults in force on a listener.
#[derive(Debug, Clone, Default)]
pub struct FaultSet {
    /// The seed of every draw.
    pub seed: u64,
    /// In the order they apply.
    pub faults: Vec<Installed>,
    /// Changes each time the list does, so that sessions take the new one.
    pub generation: u64,
}

impl FaultSet {
    /// Whether a fault applies this way (any session).
    pub fn any(&self, direction: Direction) -> bool {
        self.faults.iter().any(|f| f.fault.direction == direction)
    }
}

/// What a fault does to the session as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// End it cleanly once what passed is delivered (`limit_data`, `timeout`).
    Close,
    /// Reset its connections now (`reset_peer`).
    Reset,
}

/// A fault's state in one session.
#[derive(Debug)]
struct State {
    fault: Rc<Fault>,
    since: Instant,
    /// Toxicity's draw for a stream: whether it touches this session at all.
    chosen: bool,
    /// Bytes it let through (`limit_data`, `reset_peer`'s `bytes`).
    passed: u64,
    /// When the bandwidth in use is free again.
    free_at: Option<Instant>,
    /// A close or reset to come.
    deadline: Option<(Instant, Fate)>,
    /// `reset_peer` was triggered (its deadline is set once).
    triggered: bool,
}

impl State {
    fn in_window(&self, now: Instant) -> bool {
        let start = self.since + self.fault.after;
        now >= start && self.fault.lasts.is_none_or(|l| now < start + l)
    }
}

/// One direction of one session, as the faults shape it.
#[derive(Debug)]
pub struct Shaper {
    direction: Direction,
    datagrams: bool,
    rng: SplitMix64,
    generation: u64,
    states: Vec<State>,
    /// Pieces held back, in the order they go, with the time each may.
    queue: VecDeque<(Instant, Vec<u8>)>,
    held: usize,
    /// When the last piece of a stream may go: none goes before it.
    last: Option<Instant>,
    /// Messages pushed so far.
    messages: u64,
}

impl Shaper {
    /// The shaper of one direction of the `ordinal`-th session of a listener, from `peer`.
    pub fn new(
        set: &FaultSet,
        direction: Direction,
        datagrams: bool,
        peer: IpAddr,
        ordinal: u64,
        now: Instant,
    ) -> Shaper {
        let salt = match direction {
            Direction::ToClient => 0x5bd1_e995,
            Direction::ToServer => 0x1b87_3593,
        };
        let mut s = Shaper {
            direction,
            datagrams,
            rng: SplitMix64::new(set.seed ^ ordinal.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt),
            generation: u64::MAX,
            states: Vec::new(),
            queue: VecDeque::new(),
            held: 0,
            last: None,
            messages: 0,
        };
        s.refresh(set, peer, ordinal, now);
        s
    }

    /// Take the listener's faults as they are now: a fault kept (same name, same settings)
    /// keeps its state; a new one is drawn for (toxicity) and armed (`timeout`).
    pub fn refresh(&mut self, set: &FaultSet, peer: IpAddr, ordinal: u64, now: Instant) {
        if self.generation == set.generation {
            return;
        }
        self.generation = set.generation;
        let mut old = std::mem::take(&mut self.states);
        for inst in &set.faults {
            let f = &inst.fault;
            if f.direction != self.direction || !f.kind.fits(self.datagrams) {
                continue;
            }
            if !f.selects(peer, ordinal) {
                continue;
            }
            if let Some(i) = old.iter().position(|s| *s.fault == **f) {
                self.states.push(old.swap_remove(i));
                continue;
            }
            let chosen = self.datagrams || self.rng.next_f64() < f.toxicity;
            let mut st = State {
                fault: f.clone(),
                since: inst.since,
                chosen,
                passed: 0,
                free_at: None,
                deadline: None,
                triggered: false,
            };
            if let (true, Kind::Timeout { timeout }) = (chosen, &f.kind)
                && !timeout.is_zero()
            {
                let start = now.max(inst.since + f.after);
                st.deadline = Some((start + *timeout, Fate::Close));
            }
            self.states.push(st);
        }
    }

    /// Whether anything may change what flows: a fault applies, or pieces are held.
    pub fn is_active(&self) -> bool {
        !self.states.is_empty() || !self.queue.is_empty()
    }

    /// Bytes held back.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Take in what flows now; it is held as pieces until [`pop_due`](Shaper::pop_due) lets
    /// them go. Returns what happens to the session because of it, if anything.
    pub fn push(&mut self, now: Instant, data: &[u8]) -> Option<Fate> {
        self.messages += 1;
        let n = self.messages;
        let mut pieces: Vec<(Duration, Vec<u8>)> = vec![(Duration::ZERO, data.to_vec())];
        let mut fate = None;
        let rng = &mut self.rng;
        for st in &mut self.states {
            if !st.chosen || !st.in_window(now) || st.fault.messages.is_some_and(|c| !c.contains(n))
            {
                continue;
            }
            if self.datagrams && st.fault.toxicity < 1.0 && rng.next_f64() >= st.fault.toxicity {
                continue;
            }
            match &st.fault.kind {
                Kind::Timeout { .. } => pieces.clear(),
                Kind::LimitData { bytes } => {
                    let allowed = bytes.saturating_sub(st.passed);
                    st.passed += truncate(&mut pieces, allowed);
                    if st.passed >= *bytes {
                        fate = Some(Fate::Close);
                    }
                }
                Kind::ResetPeer { timeout, bytes } => {
                    let due = match bytes {
                        Some(limit) => {
                            st.passed += truncate(&mut pieces, limit.saturating_sub(st.passed));
                            (st.passed >= *limit).then(|| {
                                now + pieces.last().map_or(Duration::ZERO, |p| p.0) + *timeout
                            })
                        }
                        None => Some(now + *timeout),
                    };
                    if let (Some(at), false) = (due, st.triggered) {
                        st.triggered = true;
                        if at <= now {
                            pieces.clear();
                            fate = Some(Fate::Reset);
                        } else {
                            st.deadline = Some((at, Fate::Reset));
                        }
                    }
                }
                Kind::Corrupt { probability } => {
                    for (_, bytes) in &mut pieces {
                        for b in bytes.iter_mut() {
                            if rng.next_f64() < *probability {
                                *b ^= 1 + rng.below(255) as u8;
                            }
                        }
                    }
                }
                Kind::Latency { latency, jitter } => {
                    let d = vary(rng, *latency, *jitter);
                    for p in &mut pieces {
                        p.0 += d;
                    }
                }
                Kind::Bandwidth { rate } => {
                    let rate = (*rate).max(1);
                    // Slices of a tenth of a second's worth, so that a big chunk flows.
                    let slice = (rate / 10).max(1) as usize;
                    let mut out = Vec::new();
                    for (d, bytes) in pieces.drain(..) {
                        for part in bytes.chunks(slice) {
                            let start = st.free_at.map_or(now + d, |f| f.max(now + d));
                            let took = Duration::from_nanos(
                                (part.len() as u128 * 1_000_000_000 / rate as u128) as u64,
                            );
                            st.free_at = Some(start + took);
                            out.push((start + took - now, part.to_vec()));
                        }
                    }
                    pieces = out;
                }
                Kind::Slicer {
                    average_size,
                    size_variation,
                    delay,
                } => {
                    let mut out = Vec::new();
                    for (d, bytes) in pieces.drain(..) {
                        let mut rest = &bytes[..];
                        let mut k = 0u32;
                        while !rest.is_empty() {
                            let var = *size_variation;
                            let size = (average_size + rng.below(2 * var + 1)).saturating_sub(var);
                            let (head, tail) = rest.split_at(size.clamp(1, rest.len()));
                            out.push((d + *delay * k, head.to_vec()));
                            rest = tail;
                            k += 1;
                        }
                    }
                    pieces = out;
                }
                Kind::SlowClose { .. } => {}
                Kind::Loss { probability } => {
                    if rng.next_f64() < *probability {
                        pieces.clear();
                    }
                }
                Kind::Duplicate { probability } => {
                    if rng.next_f64() < *probability {
                        let copies = pieces.clone();
                        pieces.extend(copies);
                    }
                }
                Kind::Reorder { probability, delay } => {
                    if rng.next_f64() < *probability {
                        for p in &mut pieces {
                            p.0 += *delay;
                        }
                    }
                }
            }
        }
        for (d, bytes) in pieces {
            self.hold(now + d, bytes);
        }
        fate
    }

    fn hold(&mut self, at: Instant, bytes: Vec<u8>) {
        self.held += bytes.len();
        if self.datagrams {
            // Datagrams go by time; of the same time, in the order they came.
            let i = self.queue.partition_point(|(t, _)| *t <= at);
            self.queue.insert(i, (at, bytes));
        } else {
            if bytes.is_empty() {
                return;
            }
            let at = self.last.map_or(at, |l| l.max(at));
            self.last = Some(at);
            self.queue.push_back((at, bytes));
        }
    }

    /// The next piece whose time has come.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|(t, _)| *t <= now) {
            let (_, bytes) = self.queue.pop_front()?;
            self.held -= bytes.len();
            return Some(bytes);
        }
        None
    }

    /// Every piece held, with its time (the pieces leave the shaper).
    pub fn take_all(&mut self) -> impl Iterator<Item = (Instant, Vec<u8>)> + '_ {
        self.held = 0;
        self.queue.drain(..)
    }

    /// A close or reset whose time has come.
    pub fn fate_due(&mut self, now: Instant) -> Option<Fate> {
        for st in &mut self.states {
            if let Some((at, fate)) = st.deadline
                && at <= now
                && (fate == Fate::Reset || st.in_window(now))
            {
                st.deadline = None;
                return Some(fate);
            }
        }
        None
    }

    /// When something is next due: a held piece, a close or a reset.
    pub fn next_deadline(&self) -> Option<Instant> {
        let queued = self.queue.front().map(|(t, _)| *t);
        self.states
            .iter()
            .filter_map(|s| s.deadline.map(|(t, _)| t))
            .chain(queued)
            .min()
    }

    /// How long the FIN this way is held back (`slow_close`), if a fault says so now.
    pub fn slow_close(&self, now: Instant) -> Option<Duration> {
        self.states
            .iter()
            .filter(|s| s.chosen && s.in_window(now))
            .filter_map(|s| match s.fault.kind {
                Kind::SlowClose { delay } => Some(delay),
                _ => None,
            })
            .max()
    }
}

/// Keep at most `allowed` bytes of the pieces; returns how many were kept.
fn truncate(pieces: &mut Vec<(Duration, Vec<u8>)>, allowed: u64) -> u64 {
    let mut kept = 0u64;
    pieces.retain_mut(|(_, bytes)| {
        let room = allowed - kept;
        if room == 0 {
            return false;
        }
        if bytes.len() as u64 > room {
            bytes.truncate(room as usize);
        }
        kept += bytes.len() as u64;
        true
    });
    kept
}

/// `base` ± up to `jitter`, drawn.
fn vary(rng: &mut SplitMix64, base: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return base;
    }
    let j = jitter.as_nanos() as u64;
    let offset = rng.next_u64() % (2 * j + 1);
    (base + Duration::from_nanos(offset)).saturating_sub(jitter)
}

#[cfg(test)]
mod tests;
