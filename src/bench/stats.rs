//! What an event-loop thread counts, the time window it measures, and the counters it
//! publishes for the progress line.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency the histogram tells apart (longer ones are counted as this).
const MAX_TRACKED: Duration = Duration::from_secs(60);
/// Significant figures kept: 3 gives 0.1% resolution at every magnitude.
const SIGFIG: u8 = 3;

/// Counts of one thread (or, merged, of the whole run) over the measured window.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of each completed operation, in nanoseconds.
    pub hist: Histogram<u64>,
    /// Completed operations: round trips, blocks or connect cycles.
    pub ops: u64,
    /// Bytes echoed back by the server.
    pub bytes: u64,
    /// Failed connections or operations.
    pub errors: u64,
    /// UDP datagrams with no echo within the loss timeout.
    pub lost: u64,
    /// What the first error was, for the report.
    pub first_error: Option<String>,
}

impl Stats {
    /// Empty counts.
    pub fn new() -> Self {
        let high = u64::try_from(MAX_TRACKED.as_nanos()).unwrap_or(u64::MAX);
        Stats {
            hist: Histogram::new_with_bounds(1, high, SIGFIG)
                .expect("constant histogram bounds are valid"),
            ops: 0,
            bytes: 0,
            errors: 0,
            lost: 0,
            first_error: None,
        }
    }

    /// One completed operation that took `latency`.
    #[inline]
    pub fn complete(&mut self, latency: Duration) {
        self.ops += 1;
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
    }

    /// One failure; the first one's message is kept.
    pub fn error(&mut self, what: &str, err: &io::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{what}: {err}"));
        }
    }

    /// Forget everything counted so far (the end of the warmup).
    pub fn reset(&mut self) {
        self.hist.reset();
        self.ops = 0;
        self.bytes = 0;
        self.errors = 0;
        self.lost = 0;
        self.first_error = None;
    }

    /// Add another thread's counts to these.
    pub fn merge(&mut self, other: &Stats) {
        self.hist
            .add(&other.hist)
            .expect("histograms with the same bounds add up");
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.lost += other.lost;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// When a thread starts counting and when it stops. Every thread of a run shares one.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// End of the warmup.
    pub measure_from: Instant,
    /// End of the run.
    pub end: Instant,
}

impl Window {
    /// A window that starts measuring after `warmup` from `start` and lasts `duration`.
    pub fn new(start: Instant, warmup: Duration, duration: Duration) -> Self {
        let measure_from = start + warmup;
        Window {
            measure_from,
            end: measure_from + duration,
        }
    }
}

/// Longest a thread sleeps in `poll`, so that it notices the end of the warmup and of the
/// run on time even when no event comes.
pub const TICK: Duration = Duration::from_millis(50);

/// The clock of one event-loop thread inside a [`Window`].
#[derive(Debug)]
pub struct Clock {
    window: Window,
    measuring: bool,
}

impl Clock {
    /// A clock for `window`.
    pub fn new(window: Window) -> Self {
        Clock {
            window,
            measuring: false,
        }
    }

    /// Called once per loop turn: `None` when the run is over, otherwise the poll timeout.
    /// At the end of the warmup it clears `stats`.
    pub fn turn(&mut self, now: Instant, stats: &mut Stats) -> Option<Duration> {
        if now >= self.window.end {
            return None;
        }
        if !self.measuring && now >= self.window.measure_from {
            stats.reset();
            self.measuring = true;
        }
        Some((self.window.end - now).min(TICK))
    }

    /// Whether the warmup is over (and the counts are figures of the run).
    pub fn measuring(&self) -> bool {
        self.measuring
    }

    /// Called when the loop ends (at the end of the window, or earlier when every
    /// connection failed): the time counting stopped. Operations completed during a warmup
    /// that never ended are not figures of the run, so they are dropped; errors are kept.
    pub fn finish(&self, stats: &mut Stats) -> Instant {
        if !self.measuring {
            let (errors, first_error) = (stats.errors, stats.first_error.take());
            stats.reset();
            stats.errors = errors;
            stats.first_error = first_error;
        }
        Instant::now().min(self.window.end)
    }
}

/// Counters one thread publishes once per loop turn for the progress line. Aligned to a
/// cache line so that threads publishing side by side do not share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Published {
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    measuring: AtomicBool,
}

impl Published {
    /// Publish `stats` (plain stores: one writer, and the reader only needs a recent value).
    #[inline]
    pub fn publish(&self, stats: &Stats, measuring: bool) {
        self.ops.store(stats.ops, Ordering::Relaxed);
        self.bytes.store(stats.bytes, Ordering::Relaxed);
        self.errors.store(stats.errors, Ordering::Relaxed);
        self.measuring.store(measuring, Ordering::Relaxed);
    }

    /// Whether the thread has started counting the run.
    pub fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    /// Last published (ops, bytes, errors).
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.ops.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Poll, retrying when a signal interrupts the wait.
pub fn poll(poll: &mut mio::Poll, events: &mut mio::Events, timeout: Duration) -> io::Result<()> {
    loop {
        match poll.poll(events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_keeps_the_first_error() {
        let mut a = Stats::new();
        a.complete(Duration::from_micros(10));
        let mut b = Stats::new();
        b.complete(Duration::from_micros(30));
        b.bytes = 64;
        b.error("read", &io::Error::from(io::ErrorKind::ConnectionReset));
        a.merge(&b);
        assert_eq!((a.ops, a.bytes, a.errors, a.hist.len()), (2, 64, 1, 2));
        assert!(a.first_error.unwrap().starts_with("read: "));
    }

    #[test]
    fn clock_clears_the_warmup_and_stops_at_the_end() {
        let start = Instant::now();
        let window = Window::new(start, Duration::from_secs(1), Duration::from_secs(2));
        let mut clock = Clock::new(window);
        let mut stats = Stats::new();
        stats.ops = 5;
        assert_eq!(clock.turn(start, &mut stats), Some(TICK));
        assert_eq!(stats.ops, 5, "warmup counts stay until the warmup ends");
        assert!(
            clock
                .turn(start + Duration::from_secs(1), &mut stats)
                .is_some()
        );
        assert_eq!(stats.ops, 0);
        stats.ops = 7;
        let near_end = start + Duration::from_millis(2990);
        assert_eq!(
            clock.turn(near_end, &mut stats),
            Some(Duration::from_millis(10))
        );
        assert_eq!(stats.ops, 7, "cleared once only");
        assert_eq!(clock.turn(start + Duration::from_secs(3), &mut stats), None);
    }
}
