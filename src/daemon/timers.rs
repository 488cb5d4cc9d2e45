//! Deadlines in one heap; the earliest of both heaps sets the loop's alarm (`alarm.rs`).
//!
//! The core and the shell each own one, over their own kinds of timer. Entries are never
//! removed early: each names what it is for, and its owner checks on firing whether it still
//! applies (the session may be gone, its idle deadline moved, the timer cancelled).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Deadlines of kind `T`, earliest first; equal deadlines fire in the order they were set.
#[derive(Debug)]
pub(crate) struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, u64, T)>>,
    seq: u64,
}

impl<T: Ord> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T: Ord> Timers<T> {
    pub(crate) fn push(&mut self, at: Instant, timer: T) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, timer)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next timer due at `now`, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse((_, _, t))| t),
            _ => None,
        }
    }

    /// Timers waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
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
        t.push(t0 + Duration::from_secs(2), "drain");
        t.push(t0 + Duration::from_secs(1), "resume");
        t.push(t0 + Duration::from_secs(1), "second at the same time");
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(t.pop_due(later), Some("resume"));
        assert_eq!(t.pop_due(later), Some("second at the same time"));
        assert_eq!(t.pop_due(later), Some("drain"));
        assert_eq!(t.pop_due(later), None);
    }
}
