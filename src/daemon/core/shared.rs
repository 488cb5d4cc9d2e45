//! Listener channels: one channel for every session of a listener that asks for the same
//! target (`ChannelScope::Listener`, exec's `mode = "shared"`). Its input is the JSON lines
//! its sessions write, plus an `open` and a `close` line the core writes as each joins and
//! leaves; its output lines go to the session their `"session"` field names. It ends once
//! its listener stopped or was replaced and its last session left.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use switchboard_handlers::ChannelEvent;
use switchboard_handlers::channel::{ChannelSpec, Target};
use tracing::debug;

use super::channels::{ChanRef, InputEnd};
use super::due::Due;
use super::listeners::ListenerId;
use super::{Core, Effect, SessionKey};

/// A listener channel.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) listener: ListenerId,
    pub(crate) serial: u64,
    pub(crate) spec: ChannelSpec,
    /// Member sessions by id: their key and slot.
    pub(crate) members: HashMap<u64, (SessionKey, u16)>,
    pub(crate) input: Vec<u8>,
    pub(crate) input_end: InputEnd,
    /// An unfinished output line.
    pub(super) partial: Vec<u8>,
    pub(crate) opened: bool,
    /// No new members: it ends once the last one leaves.
    pub(crate) retiring: bool,
    pub(super) max_output: usize,
}

/// The routing field of a listener channel's output line.
#[derive(Deserialize)]
struct Tag {
    session: u64,
}

fn same_target(a: &ChannelSpec, b: &ChannelSpec) -> bool {
    match (&a.target, &b.target) {
        (Target::Program(x), Target::Program(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

impl Core {
    /// Session `key` joins the listener channel of `spec` (started if there is none) with
    /// its channel in `slot`.
    pub(super) fn join_shared(&mut self, key: SessionKey, slot: u16, spec: ChannelSpec) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let s = &self.sessions[key];
        let (lid, sid, peer, max_output) = (s.listener, s.info.id, s.info.peer, s.cfg.max_output);
        let found = self
            .shared
            .iter()
            .find(|(_, sh)| sh.listener == lid && !sh.retiring && same_target(&sh.spec, &spec));
        let shared = match found {
            Some((i, _)) => i,
            None => {
                let i = self.shared.insert(Shared {
                    listener: lid,
                    serial,
                    spec,
                    members: HashMap::new(),
                    input: Vec::new(),
                    input_end: InputEnd::Open,
                    partial: Vec::new(),
                    opened: false,
                    retiring: false,
                    max_output,
                });
                self.effects
                    .push_back(Effect::OpenChannel(ChanRef::Shared(i)));
                i
            }
        };
        let s = &mut self.sessions[key];
        if let Some(c) = s.channel_mut(slot) {
            c.shared = Some(shared);
        }
        let line = serde_json::json!({"session": sid, "event": "open", "listener": &*s.info.listener, "peer": peer.to_string()});
        let sh = &mut self.shared[shared];
        sh.members.insert(sid, (key, slot));
        self.write_shared(shared, format!("{line}\n").as_bytes());
        if self.shared[shared].opened {
            self.opened_later.push((key, slot));
        }
    }

    /// Append to a listener channel's input.
    pub(super) fn write_shared(&mut self, i: usize, bytes: &[u8]) {
        let sh = &mut self.shared[i];
        if sh.input_end != InputEnd::Open {
            return;
        }
        if sh.input.is_empty() {
            self.effects
                .push_back(Effect::ChannelWrite(ChanRef::Shared(i)));
        }
        sh.input.extend_from_slice(bytes);
    }

    /// A session leaves its listener channel: the child is told, the membership goes.
    pub(super) fn leave_shared(&mut self, key: SessionKey, slot: u16, reason: &str) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let sid = s.info.id;
        let Some(c) = s.channels.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        let Some(i) = c.shared else {
            return;
        };
        let Some(sh) = self.shared.get_mut(i) else {
            return;
        };
        sh.members.remove(&sid);
        let line = serde_json::json!({"session": sid, "event": "close", "reason": reason});
        self.write_shared(i, format!("{line}\n").as_bytes());
        self.maybe_end_shared(i);
    }

    /// A retiring listener channel with no member left: its input ends, and it is ended
    /// after its grace.
    pub(super) fn maybe_end_shared(&mut self, i: usize) {
        let Some(sh) = self.shared.get_mut(i) else {
            return;
        };
        if !sh.retiring || !sh.members.is_empty() || sh.input_end != InputEnd::Open {
            return;
        }
        if sh.input.is_empty() {
            sh.input_end = InputEnd::Done;
            self.effects
                .push_back(Effect::EndChannelInput(ChanRef::Shared(i)));
        } else {
            sh.input_end = InputEnd::Asked;
        }
        let at = self.now + sh.spec.grace;
        self.timers.push(at, Due::SharedGrace(i, sh.serial));
    }

    /// The listener channels of a listener take no new sessions (it stopped, or a reload
    /// replaced it); each ends once its last session has left.
    pub(super) fn retire_shared(&mut self, lid: ListenerId) {
        let ids: Vec<usize> = self
            .shared
            .iter()
            .filter(|(_, sh)| sh.listener == lid && !sh.retiring)
            .map(|(i, _)| i)
            .collect();
        for i in ids {
            self.shared[i].retiring = true;
            self.maybe_end_shared(i);
        }
    }

    /// A listener channel's grace after its last session left is over.
    pub(super) fn shared_grace_due(&mut self, i: usize, serial: u64) {
        if self.shared.get(i).is_some_and(|sh| sh.serial == serial) {
            self.effects
                .push_back(Effect::CloseChannel(ChanRef::Shared(i)));
        }
    }

    /// Hand a listener channel's output line to the session it names.
    pub(super) fn route_line(&mut self, i: usize, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        let Some(sh) = self.shared.get(i) else {
            return;
        };
        let to = serde_json::from_slice::<Tag>(line)
            .ok()
            .and_then(|t| sh.members.get(&t.session).copied());
        match to {
            Some((key, slot)) => self.tell_handler(key, slot, ChannelEvent::Data(line)),
            None => {
                if self.debug {
                    let text = switchboard_handlers::text::escape(&line[..line.len().min(200)]);
                    debug!(event = "channel_line_dropped", %text, "a shared child's line names no session it serves; dropped");
                }
            }
        }
    }
}
