//! A stream session's output: what the shell writes now ([`Core::transmit`]), what the
//! transport took ([`Core::transmitted`]), and the pending buffer behind it, with
//! `max_output` backpressure and the `write_timeout` clock.
//!
//! The output of the last drive is *staged*: it stays in the outbox (or the framer's
//! scratch buffer) and is lent to the shell as it is, so the common case, a reply the kernel
//! takes at once, is never copied. It moves into the session's pending buffer only when the
//! kernel does not take all of it, or before the outbox is reused.

use tracing::debug;

use super::due::Due;
use super::session::{Phase, ReadMode};
use super::{Core, Effect, Note, SessionKey, Staged};

impl Core {
    /// The bytes to write for a session now, if any.
    pub(crate) fn transmit(&mut self, key: SessionKey) -> Option<&[u8]> {
        if let Some(st) = self.staged.filter(|st| st.key == key) {
            let s = self.sessions.get(key)?;
            if s.pending.is_empty() {
                return Some(if st.in_scratch {
                    &self.scratch
                } else {
                    self.out.data()
                });
            }
            self.unstage();
        }
        let s = self.sessions.get(key)?;
        (!s.pending.is_empty()).then_some(&s.pending[..])
    }

    /// `n` bytes of what [`Core::transmit`] gave went out.
    pub(crate) fn transmitted(&mut self, key: SessionKey, n: usize) {
        let staged = self.staged.filter(|st| st.key == key);
        if let Some(st) = staged
            && self.took_all_quietly(key, st, n)
        {
            // The common case, a reply the kernel took whole: nothing else changes (the
            // session was reading, keeps reading, and is not draining).
            self.staged = None;
            if n > 0 {
                self.sessions[key].write_progress = self.now;
            }
            return;
        }
        if n > 0
            && let Some(s) = self.sessions.get(key)
            && self.tapped(s)
        {
            let id = s.info.id;
            let bytes = match staged {
                Some(st) if st.in_scratch => &self.scratch[..n],
                Some(_) => &self.out.data()[..n],
                None => &s.pending[..n.min(s.pending.len())],
            };
            self.effects.push_back(Effect::note(Note::Wrote {
                id,
                bytes: bytes.to_vec(),
            }));
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let was_paused = s.read_mode() == ReadMode::Paused;
        let was_full = s.pending.len() >= s.cfg.max_output;
        if let Some(st) = staged {
            self.staged = None;
            let bytes = if st.in_scratch {
                &self.scratch[..]
            } else {
                self.out.data()
            };
            s.pending.extend_from_slice(&bytes[n..]);
        } else {
            s.pending.drain(..n.min(s.pending.len()));
        }
        if n > 0 {
            s.write_progress = self.now;
        }
        if s.pending.is_empty() {
            // An idle session keeps no buffer.
            s.pending = Vec::new();
            if s.output_end == super::session::OutputEnd::Asked {
                self.output_ended(key);
            }
        } else {
            self.output_piled_up(key);
        }
        let s = &self.sessions[key];
        if was_paused && s.read_mode() == ReadMode::Read {
            self.effects.push_back(Effect::Resume(key));
        }
        if was_full && s.pending.len() < s.cfg.max_output && !s.channels.is_empty() {
            self.resume_channels(key);
        }
        self.settle(key);
    }

    /// Whether the transport took all of a staged reply of an open, reading session with
    /// nothing else pending and no tap to tell.
    fn took_all_quietly(&self, key: SessionKey, st: Staged, n: usize) -> bool {
        let len = if st.in_scratch {
            self.scratch.len()
        } else {
            self.out.data().len()
        };
        self.sessions.get(key).is_some_and(|s| {
            n == len
                && s.pending.capacity() == 0
                && matches!(s.phase, Phase::Open)
                && s.read_mode() == ReadMode::Read
                && !self.tapped(s)
        })
    }

    /// Whether a session has output waiting for the transport.
    pub(crate) fn has_pending(&self, key: SessionKey) -> bool {
        self.sessions
            .get(key)
            .is_some_and(|s| !s.pending.is_empty())
            || self.staged.is_some_and(|st| st.key == key)
    }

    /// Output went into a session's pending buffer: start the `write_timeout` clock if it
    /// was not running, and say when reading pauses.
    pub(super) fn output_piled_up(&mut self, key: SessionKey) {
        let s = &mut self.sessions[key];
        if !s.write_timer {
            s.write_timer = true;
            s.write_progress = self.now;
            let at = self.now + s.cfg.limits.write_timeout;
            let sref = s.key_id(key);
            self.timers.push(at, Due::WriteTimeout(sref));
            if self.debug {
                debug!(
                    session = sref.id,
                    pending = s.pending.len(),
                    event = "output_buffered",
                    "the peer is not reading fast enough; output buffered"
                );
            }
        }
        if s.pending.len() >= s.cfg.max_output && self.debug {
            debug!(
                session = s.info.id,
                pending = s.pending.len(),
                max_output = s.cfg.max_output,
                event = "read_paused",
                "reading paused: max_output bytes are pending for the peer"
            );
        }
    }

    /// Move the staged output into its session's pending buffer (before the outbox or the
    /// scratch buffer is reused).
    pub(super) fn unstage(&mut self) {
        let Some(st) = self.staged.take() else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(st.key) {
            let bytes = if st.in_scratch {
                &self.scratch[..]
            } else {
                self.out.data()
            };
            s.pending.extend_from_slice(bytes);
            self.output_piled_up(st.key);
        }
    }
}
