//! Channels in the core: external I/O a session owns (a child's pipes today), opened by the
//! shell on a handler's request and torn down with the session.
//!
//! The core keeps, per channel, the input the shell has not written yet and where the channel
//! is in its life; the shell owns the descriptors. Handlers ask with `Action::Open`,
//! `ToChannel`, `EndChannelInput`, `CloseChannel`; the shell reports with
//! [`Core::channel_opened`], [`Core::channel_output`], [`Core::channel_eof`] and
//! [`Core::channel_closed`], and asks [`Core::channel_reads`] before reading. Backpressure
//! holds both ways through `max_output`: a session whose peer has that much pending stops its
//! channels being read; a channel with that much input pending stops its peer being read.
//!
//! A listener channel (`ChannelScope::Listener`) is one channel for all the sessions of a
//! listener that ask for the same target: its input is the JSON lines its sessions write, its
//! output is routed to sessions by the `"session"` field of each line.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use switchboard_handlers::channel::{ChannelScope, ChannelSpec, Target};
use switchboard_handlers::{ChannelEvent, ChannelId, Ending, Proto};
use tracing::{debug, info, warn};

use super::drive::Input;
use super::due::Due;
use super::session::SessionRef;
use super::{Core, Effect, SessionKey};

/// A channel, as the shell names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ChanRef {
    /// Slot `1` of session `0`.
    Session(SessionKey, u16),
    /// A listener channel.
    Shared(usize),
}

/// Where a channel's input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputEnd {
    /// Open: written bytes go through.
    Open,
    /// To end once what is pending is written.
    Asked,
    /// Ended (the shell closed it).
    Done,
}

/// One channel of a session.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) link: usize,
    pub(crate) id: ChannelId,
    /// Daemon-wide number, so that a grace deadline is not applied to a later channel.
    pub(crate) serial: u64,
    pub(crate) spec: ChannelSpec,
    /// Input not yet taken by the shell (session channels; a listener channel has one input).
    pub(crate) input: Vec<u8>,
    pub(crate) input_end: InputEnd,
    /// The listener channel this is a membership of.
    pub(crate) shared: Option<usize>,
    /// A datagram channel (a UDP upstream): the length of each datagram in `input`, in
    /// order; `None` for a byte stream.
    pub(crate) datagrams: Option<VecDeque<usize>>,
    /// The faults on its input (`core/faults.rs`), while any apply or hold bytes.
    pub(crate) shaper: Option<Box<crate::faults::shape::Shaper>>,
}

impl Channel {
    /// Input pending or held back by faults.
    pub(crate) fn queued(&self) -> usize {
        self.input.len() + self.shaper.as_ref().map_or(0, |s| s.held())
    }
}

/// What the shell needs to open a channel.
#[derive(Debug, Clone)]
pub(crate) struct ChannelOpen {
    pub(crate) spec: ChannelSpec,
    pub(crate) listener: Arc<str>,
    pub(crate) proto: Proto,
    /// The listener's bound address (UDP: also the session's local address).
    pub(crate) local: SocketAddr,
    /// Session channels: the session's id and peer.
    pub(crate) session: Option<(u64, SocketAddr)>,
}

impl Core {
    /// A handler of session `key` asks for a channel.
    pub(super) fn open_channel(
        &mut self,
        key: SessionKey,
        link: usize,
        id: ChannelId,
        spec: ChannelSpec,
    ) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if !s.is_live() || s.chain.is_closing() || s.channel_at(link, id).is_some() {
            return;
        }
        let slot = match s.channels.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                s.channels.push(None);
                s.channels.len() - 1
            }
        } as u16;
        let scope = spec.scope;
        let channel = Channel {
            link,
            id,
            serial,
            spec: spec.clone(),
            input: Vec::new(),
            input_end: InputEnd::Open,
            shared: None,
            datagrams: matches!(
                spec.target,
                Target::Connect {
                    proto: Proto::Udp,
                    ..
                }
            )
            .then(VecDeque::new),
            shaper: None,
        };
        if scope == ChannelScope::Session {
            let mut channel = channel;
            channel.shaper = self.input_shaper(key, channel.datagrams.is_some());
            let Some(s) = self.sessions.get_mut(key) else {
                return;
            };
            s.channels[slot as usize] = Some(channel);
            self.effects
                .push_back(Effect::OpenChannel(ChanRef::Session(key, slot)));
            return;
        }
        s.channels[slot as usize] = Some(channel);
        self.join_shared(key, slot, spec);
    }

    /// A handler writes to a channel's input.
    pub(super) fn write_channel(
        &mut self,
        key: SessionKey,
        link: usize,
        id: ChannelId,
        data: &[u8],
    ) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let max = s.cfg.max_output;
        let Some((slot, c)) = s.channel_at(link, id) else {
            return;
        };
        if let Some(i) = c.shared {
            let full = self
                .shared
                .get(i)
                .is_some_and(|sh| sh.input.len() >= 2 * max);
            if !full {
                self.write_shared(i, data);
            }
            return;
        }
        if c.input_end != InputEnd::Open {
            return;
        }
        if c.queued() >= 2 * max {
            // Only a datagram peer (never paused) gets here: its input is dropped.
            debug!(
                session = s.info.id,
                event = "channel_input_full",
                "the channel does not read its input; message dropped"
            );
            return;
        }
        if c.shaper.as_ref().is_some_and(|sh| sh.is_active()) {
            if let Some(Some(fate)) = self.shape_input(key, slot, data) {
                self.fault_fate(key, fate);
            }
            return;
        }
        if c.input.is_empty() {
            self.effects
                .push_back(Effect::ChannelWrite(ChanRef::Session(key, slot)));
        }
        c.input.extend_from_slice(data);
        if let Some(ends) = &mut c.datagrams {
            ends.push_back(data.len());
        }
    }

    /// End a channel's input once its pending bytes are written (a membership: leave).
    pub(super) fn end_channel_input(&mut self, key: SessionKey, slot: u16) {
        let Some(c) = self.sessions.get_mut(key).and_then(|s| s.channel_mut(slot)) else {
            return;
        };
        if c.shared.is_some() {
            return self.leave_shared(key, slot, "input_ended");
        }
        if c.input_end != InputEnd::Open {
            return;
        }
        if c.queued() == 0 {
            c.input_end = InputEnd::Done;
            self.effects
                .push_back(Effect::EndChannelInput(ChanRef::Session(key, slot)));
        } else {
            c.input_end = InputEnd::Asked;
        }
    }

    /// End a channel now (a membership: leave).
    pub(super) fn close_channel(&mut self, key: SessionKey, slot: u16) {
        let Some(c) = self.sessions.get_mut(key).and_then(|s| s.channel_mut(slot)) else {
            return;
        };
        if c.shared.is_some() {
            return self.leave_shared(key, slot, "closed");
        }
        self.effects
            .push_back(Effect::CloseChannel(ChanRef::Session(key, slot)));
    }

    /// A draining session: its channels' input ends, and each is ended after its grace.
    pub(super) fn drain_channels(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let sref = s.key_id(key);
        let slots: Vec<(u16, u64, std::time::Duration)> = s
            .channels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i as u16, c.serial, c.spec.grace)))
            .collect();
        for (slot, serial, grace) in slots {
            self.end_channel_input(key, slot);
            if self.sessions[key].channel_mut(slot).is_some() {
                self.timers
                    .push(self.now + grace, Due::ChannelGrace(sref, slot, serial));
            }
        }
    }

    /// An ended session's channels end with it (with a reset when its peer's connection
    /// was reset, or is).
    pub(super) fn end_channels(&mut self, key: SessionKey, reset: bool) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let slots: Vec<(u16, bool)> = s
            .channels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i as u16, c.shared.is_some())))
            .collect();
        for (slot, shared) in slots {
            if shared {
                self.leave_shared(key, slot, "session_closed");
            } else if reset {
                self.effects
                    .push_back(Effect::ResetChannel(ChanRef::Session(key, slot)));
            } else {
                self.effects
                    .push_back(Effect::CloseChannel(ChanRef::Session(key, slot)));
            }
        }
        if let Some(s) = self.sessions.get_mut(key) {
            s.channels.clear();
        }
    }

    /// A channel's grace after its input ended is over.
    pub(super) fn channel_grace_due(&mut self, r: SessionRef, slot: u16, serial: u64) {
        let Some(s) = self.sessions.get_mut(r.key).filter(|s| s.info.id == r.id) else {
            return;
        };
        if s.channel_mut(slot).is_some_and(|c| c.serial == serial) {
            info!(
                session = r.id,
                event = "channel_grace_over",
                "the session's channel did not end within its grace after the input ended; ending it"
            );
            self.effects
                .push_back(Effect::CloseChannel(ChanRef::Session(r.key, slot)));
        }
    }

    /// What the shell needs to open a channel it was asked to.
    pub(crate) fn channel_open(&self, r: ChanRef) -> Option<ChannelOpen> {
        match r {
            ChanRef::Session(key, slot) => {
                let s = self.sessions.get(key)?;
                let c = s.channels.get(slot as usize)?.as_ref()?;
                Some(ChannelOpen {
                    spec: c.spec.clone(),
                    listener: s.info.listener.clone(),
                    proto: s.info.proto,
                    local: self.listeners.get(s.listener.0).map(|l| l.local)?,
                    session: Some((s.info.id, s.info.peer)),
                })
            }
            ChanRef::Shared(i) => {
                let sh = self.shared.get(i)?;
                let l = self.listeners.get(sh.listener.0)?;
                Some(ChannelOpen {
                    spec: sh.spec.clone(),
                    listener: l.cfg.name.clone(),
                    proto: l.cfg.proto,
                    local: l.local,
                    session: None,
                })
            }
        }
    }

    /// Give an event to the handler of a session's channel.
    pub(super) fn tell_handler(&mut self, key: SessionKey, slot: u16, event: ChannelEvent<'_>) {
        let Some(c) = self
            .sessions
            .get(key)
            .filter(|s| s.is_live())
            .and_then(|s| s.channels.get(slot as usize)?.as_ref())
        else {
            return;
        };
        let (link, id) = (c.link, c.id);
        self.drive(key, Input::Channel { link, id, event });
    }

    /// Deliver the `Opened` of listener channels that were already open when a session
    /// joined them (queued while its actions were applied).
    pub(super) fn deliver_opened_later(&mut self) {
        while let Some((key, slot)) = self.opened_later.pop() {
            self.tell_handler(key, slot, ChannelEvent::Opened);
        }
    }

    /// The shell opened a channel.
    pub(crate) fn channel_opened(&mut self, r: ChanRef) {
        match r {
            ChanRef::Session(key, slot) => self.tell_handler(key, slot, ChannelEvent::Opened),
            ChanRef::Shared(i) => {
                let Some(sh) = self.shared.get_mut(i) else {
                    return;
                };
                sh.opened = true;
                let members: Vec<_> = sh.members.values().copied().collect();
                for (key, slot) in members {
                    self.tell_handler(key, slot, ChannelEvent::Opened);
                }
            }
        }
    }

    /// Bytes from a channel's output (`stderr`: from a program's stderr).
    pub(crate) fn channel_output(&mut self, r: ChanRef, stderr: bool, bytes: &[u8]) {
        match r {
            ChanRef::Session(key, slot) => {
                let event = if stderr {
                    ChannelEvent::Stderr(bytes)
                } else {
                    ChannelEvent::Data(bytes)
                };
                self.tell_handler(key, slot, event);
            }
            ChanRef::Shared(i) if !stderr => {
                let Some(sh) = self.shared.get_mut(i) else {
                    return;
                };
                let mut partial = std::mem::take(&mut sh.partial);
                let max = sh.max_output;
                let mut lines = Vec::new();
                let cut = crate::framing::split_lines(&mut partial, bytes, max, |l| {
                    lines.push(l.to_vec())
                });
                if cut.is_err() {
                    warn!(
                        event = "channel_line_too_long",
                        max_output = max,
                        "a shared child's output line is longer than max_output; dropped"
                    );
                    partial.clear();
                }
                self.shared[i].partial = partial;
                for line in lines {
                    self.route_line(i, &line);
                }
            }
            ChanRef::Shared(_) => {}
        }
    }

    /// A channel's output ended.
    pub(crate) fn channel_eof(&mut self, r: ChanRef) {
        match r {
            ChanRef::Session(key, slot) => self.tell_handler(key, slot, ChannelEvent::End),
            ChanRef::Shared(i) => {
                let Some(sh) = self.shared.get_mut(i) else {
                    return;
                };
                let last = std::mem::take(&mut sh.partial);
                self.route_line(i, &last);
                let members: Vec<_> = self.shared[i].members.values().copied().collect();
                for (key, slot) in members {
                    self.tell_handler(key, slot, ChannelEvent::End);
                }
            }
        }
    }

    /// A channel is gone: its last event.
    pub(crate) fn channel_closed(&mut self, r: ChanRef, ending: &Ending) {
        match r {
            ChanRef::Session(key, slot) => {
                self.tell_handler(key, slot, ChannelEvent::Closed(ending));
                if let Some(s) = self.sessions.get_mut(key)
                    && let Some(c) = s.channels.get_mut(slot as usize)
                {
                    *c = None;
                }
                self.settle(key);
            }
            ChanRef::Shared(i) => {
                let Some(sh) = self.shared.try_remove(i) else {
                    return;
                };
                let lid = sh.listener;
                if !sh.retiring
                    && let Some(l) = self.listeners.get(lid.0)
                {
                    l.span.in_scope(|| warn!(event = "shared_child_ended", ending = %ending, sessions = sh.members.len(), "the listener's shared child ended; its sessions end, the next one starts it again"));
                }
                for (key, slot) in sh.members.into_values() {
                    self.tell_handler(key, slot, ChannelEvent::Closed(ending));
                    if let Some(s) = self.sessions.get_mut(key)
                        && let Some(c) = s.channels.get_mut(slot as usize)
                    {
                        *c = None;
                    }
                    self.settle(key);
                }
            }
        }
    }

    /// Whether the shell may read a channel's output now: its sessions' peers are not
    /// `max_output` behind.
    pub(crate) fn channel_reads(&self, r: ChanRef) -> bool {
        let fine = |key: SessionKey| {
            self.sessions
                .get(key)
                .is_some_and(|s| s.is_live() && s.pending.len() + s.held() < s.cfg.max_output)
        };
        match r {
            ChanRef::Session(key, _) => fine(key),
            ChanRef::Shared(i) => self
                .shared
                .get(i)
                .is_some_and(|sh| sh.members.values().all(|(k, _)| fine(*k))),
        }
    }

    /// The bytes to write to a channel's input now, if any (a datagram channel: the next
    /// datagram, to be reported written whole).
    pub(crate) fn channel_input(&self, r: ChanRef) -> Option<&[u8]> {
        let input = match r {
            ChanRef::Session(key, slot) => {
                let c = self
                    .sessions
                    .get(key)?
                    .channels
                    .get(slot as usize)?
                    .as_ref()?;
                if let Some(ends) = &c.datagrams {
                    return ends.front().map(|&n| &c.input[..n]);
                }
                &c.input
            }
            ChanRef::Shared(i) => &self.shared.get(i)?.input,
        };
        (!input.is_empty()).then_some(&input[..])
    }

    /// `n` bytes of [`Core::channel_input`] were written (a datagram channel: the datagram
    /// it gave went, or was dropped).
    pub(crate) fn channel_written(&mut self, r: ChanRef, n: usize) {
        match r {
            ChanRef::Session(key, slot) => {
                let Some(s) = self.sessions.get_mut(key) else {
                    return;
                };
                let max = s.cfg.max_output;
                let Some(c) = s.channel_mut(slot) else {
                    return;
                };
                let was_full = c.queued() >= max;
                let n = match &mut c.datagrams {
                    // Each call takes the next datagram off (sent whole, or dropped).
                    Some(ends) => ends.pop_front().unwrap_or(0),
                    None => n,
                };
                c.input.drain(..n.min(c.input.len()));
                if c.input.is_empty() {
                    c.input = Vec::new();
                    if c.input_end == InputEnd::Asked && c.queued() == 0 {
                        c.input_end = InputEnd::Done;
                        self.effects.push_back(Effect::EndChannelInput(r));
                    }
                }
                if was_full && c.queued() < max {
                    self.effects.push_back(Effect::Resume(key));
                }
            }
            ChanRef::Shared(i) => {
                let Some(sh) = self.shared.get_mut(i) else {
                    return;
                };
                let was_full = sh.input.len() >= sh.max_output;
                sh.input.drain(..n.min(sh.input.len()));
                if sh.input.is_empty() {
                    sh.input = Vec::new();
                    if sh.input_end == InputEnd::Asked {
                        sh.input_end = InputEnd::Done;
                        self.effects.push_back(Effect::EndChannelInput(r));
                    }
                }
                if was_full && sh.input.len() < sh.max_output {
                    let keys: Vec<SessionKey> = sh.members.values().map(|(k, _)| *k).collect();
                    for key in keys {
                        self.effects.push_back(Effect::Resume(key));
                    }
                }
            }
        }
    }

    /// Whether a session's channels hold `max_output` bytes of input: its peer is not read.
    pub(super) fn channels_full(&self, key: SessionKey) -> bool {
        let Some(s) = self.sessions.get(key) else {
            return false;
        };
        let max = s.cfg.max_output;
        s.channels.iter().flatten().any(|c| match c.shared {
            Some(i) => self.shared.get(i).is_some_and(|sh| sh.input.len() >= max),
            None => c.queued() >= max,
        })
    }

    /// The peer's output went below `max_output`: the session's channels may be read again.
    pub(super) fn resume_channels(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        for (slot, c) in s.channels.iter().enumerate() {
            if let Some(c) = c {
                let r = match c.shared {
                    Some(i) => ChanRef::Shared(i),
                    None => ChanRef::Session(key, slot as u16),
                };
                self.effects.push_back(Effect::ResumeChannel(r));
            }
        }
    }
}
