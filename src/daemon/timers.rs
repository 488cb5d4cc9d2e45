//! Deadlines of the loop in one heap; the earliest sets the poll timeout.
//!
//! Entries are never removed early: each names what it is for, and the loop checks on firing
//! whether it still applies (the session may be gone, or its idle deadline moved).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use switchboard_handlers::TimerId;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Check a session for idleness. `session` is the id, so a reused slab key is not mistaken.
    Idle { key: usize, session: u64 },
    /// Stop draining a closed connection's input.
    Linger { key: usize, session: u64 },
    /// A handler's timer.
    Handler {
        key: usize,
        session: u64,
        link: usize,
        id: TimerId,
    },
    /// Close a session whose output made no progress for `write_timeout`.
    WriteTimeout { key: usize, session: u64 },
    /// Try accepting again after running out of file descriptors.
    ResumeAccept { listener: usize },
    /// Replies held back by a UDP listener's `delay` are due.
    Delayed { listener: usize },
    /// A listener removed by a reload stops even if sessions remain.
    Retire { listener: usize },
    /// Shutdown gives up waiting for output.
    Drain,
    /// Tell systemd's watchdog the loop is alive.
    Watchdog,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
}

impl Timers {
    pub(crate) fn push(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, timer)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next timer due at `now`, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse((_, _, t))| t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.push(t0 + Duration::from_secs(2), Timer::Drain);
        t.push(
            t0 + Duration::from_secs(1),
            Timer::ResumeAccept { listener: 3 },
        );
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(5)),
            Some(Timer::ResumeAccept { listener: 3 })
        );
        assert_eq!(t.pop_due(t0 + Duration::from_secs(5)), Some(Timer::Drain));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(5)), None);
    }
}
