//! Faults in the core: a listener's [`FaultSet`] applied to what its sessions send their
//! peers (`to_client`: a session's [`Shaper`]) and what they give their channels (`to_server`:
//! each channel's), with the core's clock and timers. Held bytes count against `max_output`
//! like pending ones, so a fault never holds more than that: reading stops, as it does for a
//! peer that does not read. What ends a session (`limit_data`, `timeout`, `reset_peer`) ends it
//! here; `slow_close` holds its FIN back. Faults change at run time, all at once, by reload or
//! by a command (`fault add|remove|reset`), and the sessions that run take the new set.

use std::rc::Rc;

use std::net::SocketAddr;
use std::time::Instant;

use switchboard_handlers::{CloseReason, Proto};
use tracing::{debug, info};

use super::due::Due;
use super::listeners::ListenerId;
use super::session::SessionRef;
use super::{Core, Effect, SessionKey};
use crate::faults::shape::{Fate, FaultSet, Installed, Shaper};
use crate::faults::{Direction, Fault};

/// The shaper of a new session's output, when faults apply to it.
pub(super) fn output_shaper(
    set: &FaultSet,
    proto: Proto,
    peer: SocketAddr,
    ordinal: u64,
    now: Instant,
) -> Option<Box<Shaper>> {
    set.any(Direction::ToClient).then(|| {
        Box::new(Shaper::new(
            set,
            Direction::ToClient,
            proto == Proto::Udp,
            peer.ip(),
            ordinal,
            now,
        ))
    })
}

impl Core {
    /// A stream session's output goes through its faults (some apply, or hold bytes);
    /// returns what happens to the session because of it, if anything.
    pub(super) fn shape_output(&mut self, key: SessionKey, bytes: &[u8]) -> Option<Fate> {
        let s = self.sessions.get_mut(key)?;
        let sh = s.shaper.as_mut()?;
        let fate = sh.push(self.now, bytes);
        self.release_output(key);
        fate
    }

    /// Move what the faults let go now into the session's pending output.
    fn release_output(&mut self, key: SessionKey) {
        let now = self.now;
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(sh) = s.shaper.as_mut() else {
            return;
        };
        let was_empty = s.pending.is_empty();
        while let Some(piece) = sh.pop_due(now) {
            s.pending.extend_from_slice(&piece);
        }
        if !sh.is_active() {
            s.shaper = None;
        }
        if was_empty && !s.pending.is_empty() {
            self.effects.push_back(Effect::Transmit(key));
        }
        self.arm_fault_timer(key);
    }

    /// A channel's input goes through its faults. Returns `None` when none apply.
    pub(super) fn shape_input(
        &mut self,
        key: SessionKey,
        slot: u16,
        data: &[u8],
    ) -> Option<Option<Fate>> {
        let s = self.sessions.get_mut(key)?;
        let c = s.channel_mut(slot)?;
        let sh = c.shaper.as_mut().filter(|sh| sh.is_active())?;
        let fate = sh.push(self.now, data);
        self.release_input(key, slot);
        self.arm_fault_timer(key);
        Some(fate)
    }

    /// Move what the faults let go now into a channel's input.
    fn release_input(&mut self, key: SessionKey, slot: u16) {
        let now = self.now;
        let Some(c) = self.sessions.get_mut(key).and_then(|s| s.channel_mut(slot)) else {
            return;
        };
        let Some(sh) = c.shaper.as_mut() else {
            return;
        };
        let was_empty = c.input.is_empty();
        while let Some(piece) = sh.pop_due(now) {
            c.input.extend_from_slice(&piece);
            if let Some(ends) = &mut c.datagrams {
                ends.push_back(piece.len());
            }
        }
        if !sh.is_active() {
            c.shaper = None;
        }
        let r = super::ChanRef::Session(key, slot);
        if was_empty && !c.input.is_empty() {
            self.effects.push_back(Effect::ChannelWrite(r));
        } else if c.input.is_empty()
            && c.queued() == 0
            && c.input_end == super::channels::InputEnd::Asked
        {
            c.input_end = super::channels::InputEnd::Done;
            self.effects.push_back(Effect::EndChannelInput(r));
        }
    }

    /// What a fault does to a session as a whole.
    pub(super) fn fault_fate(&mut self, key: SessionKey, fate: Fate) {
        let Some(s) = self.sessions.get_mut(key).filter(|s| s.is_live()) else {
            return;
        };
        if self.debug {
            debug!(session = s.info.id, event = "fault", fate = ?fate, "a fault ends the session");
        }
        match fate {
            Fate::Reset => self.reset_session(key, CloseReason::Fault),
            Fate::Close => {
                s.fault_closing = true;
                self.begin_draining(key, CloseReason::Fault);
                self.settle(key);
            }
        }
    }

    /// Arm the session's fault timer for the earliest of its faults' deadlines.
    pub(super) fn arm_fault_timer(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let channels = s.channels.iter().flatten();
        let next = channels
            .filter_map(|c| c.shaper.as_ref()?.next_deadline())
            .chain(s.shaper.as_ref().and_then(|sh| sh.next_deadline()))
            .min();
        let Some(at) = next else {
            return;
        };
        if s.fault_timer.is_some_and(|t| t <= at && t > self.now) {
            return;
        }
        s.fault_timer = Some(at);
        let sref = s.key_id(key);
        self.timers.push(at, Due::Fault(sref));
    }

    /// A session's fault timer: let go what is due, and apply what ends it.
    pub(super) fn fault_due(&mut self, r: SessionRef) {
        let Some(s) = self
            .sessions
            .get_mut(r.key)
            .filter(|s| s.info.id == r.id && s.is_live())
        else {
            return;
        };
        s.fault_timer = None;
        let slots: Vec<u16> = (0..s.channels.len() as u16).collect();
        self.release_output(r.key);
        for slot in slots {
            self.release_input(r.key, slot);
        }
        let now = self.now;
        let Some(s) = self.sessions.get_mut(r.key) else {
            return;
        };
        let mut fate = s.shaper.as_mut().and_then(|sh| sh.fate_due(now));
        for c in s.channels.iter_mut().flatten() {
            if let Some(f) = c.shaper.as_mut().and_then(|sh| sh.fate_due(now)) {
                fate = Some(fate.map_or(f, |old| if f == Fate::Reset { f } else { old }));
            }
        }
        match fate {
            Some(f) => self.fault_fate(r.key, f),
            None => {
                self.arm_fault_timer(r.key);
                self.settle(r.key);
            }
        }
    }

    /// The shaper for a new channel of session `key`, when faults apply to what it is given.
    pub(super) fn input_shaper(&self, key: SessionKey, datagrams: bool) -> Option<Box<Shaper>> {
        let s = self.sessions.get(key)?;
        let set = &self.listeners.get(s.listener.0)?.faults;
        set.any(Direction::ToServer).then(|| {
            Box::new(Shaper::new(
                set,
                Direction::ToServer,
                datagrams,
                s.info.peer.ip(),
                s.ordinal,
                self.now,
            ))
        })
    }

    /// Put `faults` in force on a listener, at once for every session it has: a fault kept
    /// from before (same name and settings) keeps its time and its state in each session.
    pub(crate) fn set_faults(&mut self, lid: ListenerId, seed: u64, faults: Vec<Fault>) {
        let now = self.now;
        let Some(l) = self.listeners.get_mut(lid.0) else {
            return;
        };
        let old = &l.faults;
        let installed: Vec<Installed> = faults
            .into_iter()
            .map(|f| {
                old.faults
                    .iter()
                    .find(|o| *o.fault == f)
                    .cloned()
                    .unwrap_or(Installed {
                        fault: Rc::new(f),
                        since: now,
                    })
            })
            .collect();
        let set = Rc::new(FaultSet {
            seed,
            faults: installed,
            generation: old.generation + 1,
        });
        l.faults = set.clone();
        let keys: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.listener == lid && s.is_live())
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let s = &mut self.sessions[key];
            let (peer, ordinal) = (s.info.peer.ip(), s.ordinal);
            let udp = s.cfg.proto == Proto::Udp;
            let sref = s.key_id(key);
            let refresh = |sh: &mut Option<Box<Shaper>>, dir: Direction, datagrams: bool| match sh {
                Some(x) => x.refresh(&set, peer, ordinal, now),
                None if set.any(dir) => {
                    *sh = Some(Box::new(Shaper::new(
                        &set, dir, datagrams, peer, ordinal, now,
                    )))
                }
                None => {}
            };
            refresh(&mut s.shaper, Direction::ToClient, udp);
            for c in s.channels.iter_mut().flatten() {
                if c.shared.is_none() {
                    let datagrams = c.datagrams.is_some();
                    refresh(&mut c.shaper, Direction::ToServer, datagrams);
                }
            }
            self.fault_due(sref);
        }
        let l = &self.listeners[lid.0];
        l.span.in_scope(|| {
            info!(
                event = "faults_changed",
                faults = l.faults.faults.len(),
                "the listener's faults changed"
            )
        });
    }

    /// The serving listener named `name`.
    pub(crate) fn listener_named(&self, name: &str) -> Option<ListenerId> {
        self.listeners()
            .find(|(_, l)| l.is_serving() && l.name() == name)
            .map(|(id, _)| id)
    }

    /// `fault add`: one more fault on a listener.
    pub(crate) fn add_fault(&mut self, lid: ListenerId, fault: Fault) -> Result<(), String> {
        let l = &self.listeners[lid.0];
        if l.faults.faults.iter().any(|f| f.fault.name == fault.name) {
            return Err(format!(
                "listener {:?} has a fault named {:?} already; remove it first or give name=...",
                l.name(),
                fault.name
            ));
        }
        let mut list = self.faults_of(lid);
        list.push(fault);
        let seed = l.faults.seed;
        self.set_faults(lid, seed, list);
        Ok(())
    }

    /// `fault remove`: take a fault off a listener.
    pub(crate) fn remove_fault(&mut self, lid: ListenerId, name: &str) -> Result<(), String> {
        let mut list = self.faults_of(lid);
        let before = list.len();
        list.retain(|f| f.name != name);
        if list.len() == before {
            return Err(format!(
                "listener {:?} has no fault named {name:?}",
                self.listeners[lid.0].name()
            ));
        }
        let seed = self.listeners[lid.0].faults.seed;
        self.set_faults(lid, seed, list);
        Ok(())
    }

    /// A listener's faults, in order.
    pub(crate) fn faults_of(&self, lid: ListenerId) -> Vec<Fault> {
        self.listeners
            .get(lid.0)
            .map(|l| l.faults.faults.iter().map(|f| (*f.fault).clone()).collect())
            .unwrap_or_default()
    }
}
