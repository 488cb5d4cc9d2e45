//! The kernel timer that wakes the loop for its earliest deadline: a `timerfd` in the poller.
//!
//! The loop could instead pass the time left to `epoll_wait` as its timeout, but then the
//! kernel sets up and tears down a timer at every wait in which the loop sleeps: with one UDP
//! peer (whose session has an idle deadline) that is once per datagram, and it costs more than
//! the rest of the datagram's user-space work (measured with `benches/`: about 0.5 µs of a
//! 7 µs round trip). The `timerfd` stays armed across waits and is set again only when an
//! earlier deadline comes, or after it rang; a deadline that moved later lets it ring early
//! once, and the loop finds nothing due and sets it again.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

/// A one-shot `CLOCK_MONOTONIC` timer (the clock of [`Instant`]) registered for reading.
#[derive(Debug)]
pub(crate) struct Alarm {
    fd: OwnedFd,
    /// When it is set to ring; `None` once it rang (or before it is first set).
    armed: Option<Instant>,
}

impl Alarm {
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Alarm> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Alarm { fd, armed: None })
    }

    /// Make sure the loop wakes by `deadline`. A system call only when nothing is armed or
    /// `deadline` is earlier than what is.
    pub(crate) fn wake_by(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let Some(at) = deadline else {
            return Ok(());
        };
        if self.armed.is_some_and(|armed| armed <= at) {
            return Ok(());
        }
        // A zero value would disarm it: a deadline already passed rings at once instead.
        let left = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let value = Itimerspec {
            it_interval: zero,
            it_value: Timespec::try_from(left).map_err(|_| io::ErrorKind::InvalidInput)?,
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &value)?;
        self.armed = Some(at);
        Ok(())
    }

    /// It rang: take the expiry so that the descriptor is quiet until it is set again.
    pub(crate) fn rang(&mut self) {
        let mut ticks = [0u8; 8];
        // WouldBlock (it was set again before this read) leaves nothing to take.
        let _ = rustix::io::read(&self.fd, &mut ticks);
        self.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    fn wait(poll: &mut Poll, events: &mut Events, within: Duration) -> bool {
        poll.poll(events, Some(within)).unwrap();
        !events.is_empty()
    }

    #[test]
    fn rings_at_the_earliest_deadline_and_is_quiet_otherwise() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(4);
        let mut alarm = Alarm::new(poll.registry(), Token(0)).unwrap();
        // Nothing set: quiet.
        alarm.wake_by(None).unwrap();
        assert!(!wait(&mut poll, &mut events, Duration::from_millis(30)));

        let start = Instant::now();
        alarm
            .wake_by(Some(start + Duration::from_secs(60)))
            .unwrap();
        // An earlier deadline replaces the later one; a later one does not.
        alarm
            .wake_by(Some(start + Duration::from_millis(20)))
            .unwrap();
        alarm
            .wake_by(Some(start + Duration::from_secs(30)))
            .unwrap();
        assert!(wait(&mut poll, &mut events, Duration::from_secs(5)));
        assert!(start.elapsed() >= Duration::from_millis(20));
        alarm.rang();
        assert!(!wait(&mut poll, &mut events, Duration::from_millis(30)));

        // After it rang it is set again; a deadline already passed rings at once.
        alarm.wake_by(Some(start)).unwrap();
        assert!(wait(&mut poll, &mut events, Duration::from_secs(5)));
        alarm.rang();
    }
}
