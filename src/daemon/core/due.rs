//! The core's deadlines and what each does when it comes.

use switchboard_handlers::CloseReason;
use tracing::warn;

use super::drive::Input;
use super::listeners::{ListenerPhase, ListenerRef};
use super::session::{LINGER, LINGER_MAX, Phase, SessionRef};
use super::{Core, RunState};

/// What a core deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Due {
    /// A session's TLS handshake or PROXY header is due.
    Handshake(SessionRef),
    /// Check a session for idleness.
    Idle(SessionRef),
    /// A handler timer; the number tells whether it is still the pending one.
    Handler(SessionRef, u64),
    /// Close a session whose output made no progress for `write_timeout`.
    WriteTimeout(SessionRef),
    /// Close a session whose unfinished message is older than `message_timeout`.
    MessageTimeout(SessionRef),
    /// A session that waits for its handlers' timers has waited `drain_timeout`.
    Drained(SessionRef),
    /// Stop draining an ended connection's input.
    Linger(SessionRef),
    /// Replies held back by a UDP listener's `delay` are due.
    Delayed(ListenerRef),
    /// A listener removed by a reload stops even if sessions remain.
    Retire(ListenerRef),
    /// The graceful stop gives up waiting.
    Stop,
    /// A session channel's grace after its input ended: slot and channel serial.
    ChannelGrace(SessionRef, u16, u64),
    /// A listener channel's grace after its last session left: its slot and serial.
    SharedGrace(usize, u64),
    /// A session's faults have something due: held bytes, a close, a reset.
    Fault(SessionRef),
    /// The FIN a `slow_close` fault held back is due.
    SlowClose(SessionRef),
}

impl Core {
    /// Fire every deadline that has come (the clock set by [`Core::set_clock`]).
    pub(crate) fn handle_timeout(&mut self) {
        while let Some(due) = self.timers.pop_due(self.now) {
            self.fire(due);
        }
    }

    fn live(&self, r: SessionRef) -> Option<Phase> {
        self.sessions
            .get(r.key)
            .filter(|s| s.info.id == r.id)
            .map(|s| s.phase)
    }

    fn fire(&mut self, due: Due) {
        match due {
            Due::Handshake(r) => self.front_due(r),
            Due::Idle(r) => {
                if self.live(r) != Some(Phase::Open) {
                    return;
                }
                let s = &self.sessions[r.key];
                let Some(idle) = s.cfg.idle_timeout else {
                    return;
                };
                let deadline = s.last_active + idle;
                if deadline <= self.now {
                    self.begin_draining(r.key, CloseReason::IdleTimeout);
                } else {
                    self.timers.push(deadline, Due::Idle(r));
                }
            }
            Due::Handler(r, seq) => {
                if !matches!(self.live(r), Some(Phase::Open | Phase::Draining(_))) {
                    return;
                }
                if let Some(t) = self.sessions[r.key].take_timer(seq) {
                    self.drive(
                        r.key,
                        Input::Timer {
                            link: t.link,
                            id: t.id,
                        },
                    );
                    self.settle(r.key);
                }
            }
            Due::WriteTimeout(r) => self.write_timeout_due(r),
            Due::MessageTimeout(r) => {
                if self.live(r) != Some(Phase::Open) {
                    return;
                }
                let s = &self.sessions[r.key];
                let (Some(since), Some(timeout)) = (s.partial_since, s.cfg.limits.message_timeout)
                else {
                    return;
                };
                if since + timeout > self.now {
                    self.timers.push(since + timeout, Due::MessageTimeout(r));
                    return;
                }
                warn!(session = r.id, peer = %s.info.peer, message_timeout = ?timeout,
                    event = "message_timeout",
                    "a message stayed unfinished longer than message_timeout; closing the session");
                self.begin_draining(r.key, CloseReason::MessageTimeout);
            }
            Due::Drained(r) => {
                if let Some(Phase::Draining(reason)) = self.live(r) {
                    let s = &self.sessions[r.key];
                    warn!(
                        session = r.id,
                        timers = s.timers.iter().filter(|t| t.holds).count(),
                        event = "drain_timeout",
                        "drain_timeout passed with handler timers still pending; closing the session"
                    );
                    self.end(r.key, reason);
                }
            }
            Due::Linger(r) => {
                if let Some(Phase::Lingering { since }) = self.live(r) {
                    let quiet = self.sessions[r.key].last_active + LINGER;
                    let deadline = quiet.min(since + LINGER_MAX);
                    if deadline <= self.now {
                        self.release(r.key);
                    } else {
                        self.timers.push(deadline, Due::Linger(r));
                    }
                }
            }
            Due::Delayed(l) => self.send_delayed(l),
            Due::Fault(r) => self.fault_due(r),
            Due::SlowClose(r) => match self.live(r) {
                Some(Phase::Lingering { .. }) => {
                    self.effects.push_back(super::Effect::Close(r.key))
                }
                Some(Phase::Open | Phase::Draining(_)) => {
                    self.effects.push_back(super::Effect::EndOutput(r.key))
                }
                _ => {}
            },
            Due::ChannelGrace(r, slot, serial) => self.channel_grace_due(r, slot, serial),
            Due::SharedGrace(i, serial) => self.shared_grace_due(i, serial),
            Due::Retire(l) => {
                if self
                    .listeners
                    .get(l.id.0)
                    .is_some_and(|x| x.serial == l.serial && x.phase == ListenerPhase::Retiring)
                {
                    self.stop_listener(l.id, "removed from the config; drain_timeout passed");
                }
            }
            Due::Stop => {
                if self.state == RunState::Draining {
                    let open = self.sessions.len();
                    if open > 0 {
                        warn!(
                            event = "drain_timeout",
                            sessions = open,
                            "drain timeout: closing sessions with output still pending"
                        );
                    }
                    self.halt();
                }
            }
        }
    }

    /// The `write_timeout` check of a session: close it if its output made no progress for
    /// that long; look again later if it did; forget it once the output is flushed.
    fn write_timeout_due(&mut self, r: SessionRef) {
        if !matches!(self.live(r), Some(Phase::Open | Phase::Draining(_))) {
            return;
        }
        let s = &mut self.sessions[r.key];
        if s.pending.is_empty() {
            s.write_timer = false;
            return;
        }
        let timeout = s.cfg.limits.write_timeout;
        let deadline = s.write_progress + timeout;
        if deadline > self.now {
            self.timers.push(deadline, Due::WriteTimeout(r));
            return;
        }
        warn!(session = r.id, pending = s.pending.len(), write_timeout = ?timeout,
            event = "write_timeout",
            "no write progress within write_timeout (the peer does not read); closing the session");
        self.end(r.key, CloseReason::WriteTimeout);
    }

    /// Timers waiting in the core (tests).
    #[cfg(test)]
    pub(crate) fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// When the next deadline is, relative to `now` (tests).
    #[cfg(test)]
    pub(crate) fn until_next(&self) -> Option<std::time::Duration> {
        self.next_deadline()
            .map(|d| d.saturating_duration_since(self.now))
    }
}
