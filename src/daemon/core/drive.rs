//! The one path from any input to a session's chain and back: [`Core::drive`] refreshes the
//! session (its clock, the operator count, a waiting session's place in the queue), calls the
//! chain for the input, takes a handoff asked meanwhile (`desk.rs`), records and shapes what
//! the handlers said (`replies.rs`) and applies the outbox; and the ends of a session
//! ([`Core::begin_draining`], [`Core::end`], [`Core::release`]).

use switchboard_handlers::text::{escape, lossy, trim_line_end};
use switchboard_handlers::{
    Action, ChannelEvent, ChannelId, CloseReason, Flow, Handoff, Scope, TimerId,
};
use tracing::{debug, info, warn};

use super::due::Due;
use super::listeners::PeerAddr;
use super::replies::Said;
use super::session::{HandlerTimer, LINGER, OutputEnd, Phase};
use super::{Core, Effect, RunState, SessionKey, Staged};
use crate::framing::{Framer, TooLong};

/// What reaches a session.
#[derive(Debug, Clone, Copy)]
pub(super) enum Input<'a> {
    /// The session opened: every link's `on_open`.
    Open,
    /// Bytes from a stream, cut into messages by the session's framer.
    Bytes(&'a [u8]),
    /// One datagram: one message.
    Datagram(&'a [u8]),
    /// The input ended: a last unterminated line is still a message.
    End,
    /// An operator line for the session.
    Operator(&'a str),
    /// A handler timer fired.
    Timer { link: usize, id: TimerId },
    /// The session's standing with the people at the console changed.
    Handoff(Handoff),
    /// Something happened on a channel of link `link`.
    Channel {
        link: usize,
        id: ChannelId,
        event: ChannelEvent<'a>,
    },
}

impl Core {
    /// Drive one input through a session's chain and apply the outbox. Returns whether a
    /// handler took it (for operator lines: `Pass` means no handler takes replies).
    pub(super) fn drive(&mut self, key: SessionKey, input: Input<'_>) -> Flow {
        self.unstage();
        self.out.clear();
        self.said.begin();
        let operators = self.console.attached();
        let (now, debug) = (self.now, self.debug);
        let recording = self.records(key);
        // Units are kept only where they are used: recording, or one reply per message.
        let units = recording || self.counts_replies(key);
        let moved = match input {
            Input::Handoff(_) => None,
            _ => self.moved_position(key),
        };
        if self.desk_followed()
            && self
                .sessions
                .get(key)
                .is_some_and(|s| s.cfg.takes_operator())
        {
            self.desk_touched();
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return Flow::Pass;
        };
        s.info.now = self.wall;
        s.info.operators = operators;
        let out = &mut self.out;
        let said = &mut self.said;
        // What is said before any message (an event, a moved place in the queue) is a unit.
        if units {
            said.mark(0, None, false);
        }
        if let Some(position) = moved {
            s.chain.handoff(Handoff::Waiting { position }, &s.info, out);
        }
        let mut too_long = false;
        let flow = match input {
            Input::Open => {
                s.chain.open(&s.info, out);
                Flow::Handled
            }
            Input::Operator(line) => {
                s.unanswered = 0;
                s.chain.operator(line, &s.info, out)
            }
            Input::Timer { link, id } => {
                s.chain.timer(link, id, &s.info, out);
                Flow::Handled
            }
            Input::Handoff(to) => {
                s.chain.handoff(to, &s.info, out);
                Flow::Handled
            }
            Input::Channel { link, id, event } => {
                s.chain.channel(link, id, event, &s.info, out);
                Flow::Handled
            }
            Input::Bytes(data) | Input::Datagram(data) => {
                s.last_active = now;
                s.counts.bytes_in += data.len() as u64;
                let msgs_before = s.counts.msgs_in;
                let (chain, info, counts) = (&mut s.chain, &s.info, &mut s.counts);
                let result = s.framer.decode(data, |msg| {
                    counts.msgs_in += 1;
                    if units {
                        heard(said, out, msg, recording);
                    }
                    deliver(chain, info, msg, out, debug);
                });
                // The unfinished message (if any) began with this read unless it was there
                // before and no message completed since.
                match (s.framer.has_partial(), s.partial_since) {
                    (false, _) => s.partial_since = None,
                    (true, Some(_)) if s.counts.msgs_in == msgs_before => {}
                    (true, old) => {
                        s.partial_since = Some(now);
                        if let (None, Some(t)) = (old, s.cfg.limits.message_timeout) {
                            let sref = s.key_id(key);
                            self.timers.push(now + t, Due::MessageTimeout(sref));
                        }
                    }
                }
                if result == Err(TooLong) {
                    too_long = true;
                    warn!(session = info.id, peer = %info.peer, event = "too_long",
                        max_message = s.cfg.max_message,
                        "line longer than max_message; closing the session");
                    if let Some(reply) = &s.cfg.limits.too_long_reply {
                        out.send(reply.as_bytes());
                    }
                }
                Flow::Handled
            }
            Input::End => {
                let (chain, info, counts) = (&mut s.chain, &s.info, &mut s.counts);
                s.framer.finish(|msg| {
                    counts.msgs_in += 1;
                    if units {
                        heard(said, out, msg, recording);
                    }
                    deliver(chain, info, msg, out, debug);
                });
                Flow::Handled
            }
        };
        if self.out.handoff_asked() {
            // Recorded first, so that the operators see the message that asked for them.
            self.record(key);
            self.hand_over(key);
        }
        self.apply(key);
        if too_long {
            self.begin_draining(key, CloseReason::TooLong);
        }
        self.deliver_opened_later();
        flow
    }

    /// Turn what the handlers put in the outbox into output, timers and closes.
    fn apply(&mut self, key: SessionKey) {
        let mut fate = None;
        if !self.sessions.contains(key) {
            return;
        }
        self.record(key);
        self.shape(key);
        let s = &mut self.sessions[key];
        if self.out.has_messages() && s.output_end != OutputEnd::Open {
            if self.debug {
                debug!(
                    session = s.info.id,
                    event = "output_dropped",
                    "the session's output was ended; a reply is dropped"
                );
            }
        } else if self.out.has_messages() {
            s.counts.msgs_out += self.out.messages().count() as u64;
            match &s.framer {
                Framer::Datagram { .. } => {
                    s.counts.bytes_out += self.out.data().len() as u64;
                    let (lid, peer) = (s.listener, s.info.peer);
                    if self.watching || s.cfg.record.is_some() {
                        for m in self.out.messages() {
                            self.effects.push_back(Effect::note(super::Note::Wrote {
                                id: s.info.id,
                                bytes: m.to_vec(),
                            }));
                        }
                    }
                    let mut shaper = s.shaper.as_deref_mut().filter(|sh| sh.is_active());
                    for m in self.out.messages() {
                        super::datagrams::reply(
                            &mut self.listeners[lid.0],
                            lid,
                            peer,
                            m,
                            shaper.as_deref_mut(),
                            &mut self.datagrams,
                            &mut self.timers,
                            &mut self.effects,
                            self.now,
                        );
                    }
                }
                framer => {
                    let in_scratch = matches!(framer, Framer::Line { .. });
                    let bytes = framer.encode(&self.out, &mut self.scratch);
                    s.counts.bytes_out += bytes.len() as u64;
                    let shaped = s.shaper.as_ref().is_some_and(|sh| sh.is_active());
                    if shaped {
                        let copy = bytes.to_vec();
                        fate = self.shape_output(key, &copy);
                    } else if s.pending.is_empty() {
                        self.staged = Some(Staged { key, in_scratch });
                    } else {
                        s.pending.extend_from_slice(bytes);
                    }
                    self.effects.push_back(Effect::Transmit(key));
                }
            }
        }
        if !self.out.actions().is_empty() {
            for action in self.out.take_actions() {
                self.act(key, action);
            }
        }
        if let Some(f) = fate {
            self.fault_fate(key, f);
        }
        self.settle(key);
    }

    /// One action of a handler of session `key`.
    fn act(&mut self, key: SessionKey, action: Action) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        match action {
            Action::Close { scope, reason, .. } => {
                let lid = s.listener;
                self.begin_draining(key, reason);
                match scope {
                    Scope::Session => {}
                    Scope::Listener => {
                        self.stop_listener(lid, "a handler ended it (scope = \"listener\")")
                    }
                    Scope::Daemon => {
                        if self.state == RunState::Running {
                            info!(
                                event = "stop_requested",
                                by = "handler",
                                "a handler asked the daemon to stop (scope = \"daemon\")"
                            );
                            self.stop();
                        }
                    }
                }
            }
            Action::Timer {
                link,
                id,
                after,
                holds,
                ..
            } => {
                if s.chain.is_closing() || !s.is_live() {
                    return;
                }
                s.forget_timer(link, id);
                self.timer_seq += 1;
                let seq = self.timer_seq;
                s.timers.push(HandlerTimer {
                    link,
                    id,
                    seq,
                    holds,
                });
                let sref = s.key_id(key);
                self.timers.push(self.now + after, Due::Handler(sref, seq));
            }
            Action::CancelTimer { link, id, .. } => {
                s.forget_timer(link, id);
            }
            Action::ToOperator { text, .. } => self.show_to_operators(key, &text),
            Action::Open { link, id, spec, .. } => self.open_channel(key, link, id, spec),
            Action::ToChannel { link, id, data, .. } => self.write_channel(key, link, id, &data),
            Action::EndChannelInput { link, id, .. } => {
                if let Some((slot, _)) = s.channel_at(link, id) {
                    self.end_channel_input(key, slot);
                }
            }
            Action::CloseChannel { link, id, .. } => {
                if let Some((slot, _)) = s.channel_at(link, id) {
                    self.close_channel(key, slot);
                }
            }
            // Taken during the drive (`hand_over`) and when shaping the replies (`shape`).
            Action::Handoff { .. } | Action::Ahead { .. } => {}
            Action::Reset { reason, .. } => self.reset_session(key, reason),
            Action::EndOutput => {
                if s.output_end == OutputEnd::Open && !matches!(s.framer, Framer::Datagram { .. }) {
                    s.output_end = OutputEnd::Asked;
                    self.output_ended(key);
                }
            }
        }
    }

    /// A session whose output a handler ended: FIN once its output is flushed.
    pub(super) fn output_ended(&mut self, key: SessionKey) {
        let staged = self.staged.is_some_and(|st| st.key == key);
        if let Some(s) = self.sessions.get_mut(key)
            && s.output_end == OutputEnd::Asked
            && s.pending.is_empty()
            && s.held() == 0
            && !staged
            && s.is_live()
        {
            s.output_end = OutputEnd::Done;
            match s.shaper.as_ref().and_then(|sh| sh.slow_close(self.now)) {
                Some(d) => {
                    let sref = s.key_id(key);
                    self.timers.push(self.now + d, Due::SlowClose(sref));
                }
                None => self.effects.push_back(Effect::EndOutput(key)),
            }
        }
    }

    /// End a session now with a reset: its peer's connection and its channels are reset.
    pub(super) fn reset_session(&mut self, key: SessionKey, reason: CloseReason) {
        if let Some(s) = self.sessions.get_mut(key).filter(|s| s.is_live()) {
            s.reset = true;
            self.end(key, reason);
        }
    }

    /// The session is to end once its output is flushed and (unless a handler asked for the
    /// end) the replies its handlers decided have gone out.
    pub(super) fn begin_draining(&mut self, key: SessionKey, reason: CloseReason) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        match s.phase {
            Phase::Open => {
                s.phase = Phase::Draining(reason);
                super::desk_view::touch(&mut self.feed);
            }
            Phase::Handshake => return self.end(key, reason),
            Phase::Draining(_) | Phase::Lingering { .. } => return,
        }
        if s.chain.is_closing() || s.fault_closing {
            // A handler (or a fault) asked for the end: its timers are forgotten.
            s.timers.clear();
        } else {
            if s.waits_for_timers() {
                let sref = s.key_id(key);
                self.timers
                    .push(self.now + self.drain_timeout, Due::Drained(sref));
            }
            if !s.channels.is_empty() {
                self.drain_channels(key);
            }
        }
        self.settle(key);
    }

    /// End a draining session that has nothing left to do.
    pub(super) fn settle(&mut self, key: SessionKey) {
        let staged = self.staged.is_some_and(|st| st.key == key);
        if let Some(s) = self.sessions.get(key)
            && s.drained(staged)
            && let Phase::Draining(reason) = s.phase
        {
            self.end(key, reason);
        }
    }

    /// The logical end of a session: the console is told, the chain's `on_close`, the
    /// counters, the log line; then the connection lingers (a clean TCP end) or is released.
    pub(super) fn end(&mut self, key: SessionKey, reason: CloseReason) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let was_open = match s.phase {
            Phase::Lingering { .. } => return,
            Phase::Handshake => false,
            Phase::Open | Phase::Draining(_) => true,
        };
        if self.staged.is_some_and(|st| st.key == key) {
            self.staged = None;
        }
        s.timers.clear();
        s.pending = Vec::new();
        if s.shaper
            .as_ref()
            .is_some_and(|sh| sh.slow_close(self.now).is_none())
        {
            s.shaper = None;
        }
        let (lid, peer, id, counts) = (s.listener, s.info.peer, s.info.id, s.counts);
        let tls = s.tls.as_ref().map(|t| t.version);
        let client_cert = s.info.client_cert.clone();
        let has_channels = !s.channels.is_empty();
        let reset = s.reset || reason == CloseReason::PeerReset;
        let takes_operator = s.cfg.takes_operator();
        let tcp = !matches!(s.framer, Framer::Datagram { .. });
        if was_open {
            s.chain.close(&s.info, reason);
        }
        if has_channels {
            self.end_channels(key, reset);
        }
        if was_open && (self.watching || self.sessions[key].cfg.record.is_some()) {
            self.effects
                .push_back(Effect::note(super::Note::Closed { id, reason }));
        }
        let s = &mut self.sessions[key];
        let duration = self.now.saturating_duration_since(s.opened);
        if was_open && takes_operator {
            self.console_closed(key, reason);
        }
        let l = &mut self.listeners[lid.0];
        l.closed(peer, &counts, reason == CloseReason::Error);
        if let Some(u) = &mut l.udp {
            u.peers.remove(&PeerAddr(peer));
        }
        if !was_open {
            debug!(parent: &l.span, event = "handshake_ended", session = id, %peer,
                reason = reason.as_str(), "connection ended before its session opened");
        } else {
            l.span.in_scope(|| {
                info!(
                    event = "session_closed",
                    session = id,
                    %peer,
                    reason = reason.as_str(),
                    bytes_in = counts.bytes_in,
                    bytes_out = counts.bytes_out,
                    messages_in = counts.msgs_in,
                    messages_out = counts.msgs_out,
                    duration_us = duration.as_micros() as u64,
                    tls,
                    client_cert = client_cert.as_deref(),
                    "session closed"
                )
            });
        }
        let once_udp = l.cfg.once && !tcp;
        let lingers = tcp
            && self.state != RunState::Exit
            && !reset
            && !matches!(reason, CloseReason::Error | CloseReason::WriteTimeout);
        if tcp && self.sessions[key].reset {
            self.effects.push_back(Effect::Reset(key));
        }
        if lingers {
            let s = &mut self.sessions[key];
            // A slow_close fault holds the FIN back: the linger starts after it.
            let slow = s.shaper.as_ref().and_then(|sh| sh.slow_close(self.now));
            let start = self.now + slow.unwrap_or_default();
            s.phase = Phase::Lingering { since: start };
            s.last_active = start;
            let sref = s.key_id(key);
            self.timers.push(start + LINGER, Due::Linger(sref));
            match slow {
                Some(_) => self.timers.push(start, Due::SlowClose(sref)),
                None => self.effects.push_back(Effect::Close(key)),
            }
        } else {
            self.release(key);
        }
        if once_udp {
            self.stop_listener(lid, "once = true: its one session ended");
        }
        self.finish_listener(lid);
    }

    /// Remove a session and have the shell drop its socket.
    pub(super) fn release(&mut self, key: SessionKey) {
        if self.sessions.try_remove(key).is_some() {
            self.effects.push_back(Effect::Release(key));
            self.check_done();
        }
    }
}

/// A message of the peer starts a unit of the drive (see `replies.rs`), with its text when
/// the session records what is said.
fn heard(said: &mut Said, out: &switchboard_handlers::Outbox, msg: &[u8], recording: bool) {
    let text = recording.then(|| lossy(trim_line_end(msg)).into_owned());
    said.mark(out.message_count(), text, true);
}

/// Give one message to a session's chain; the answers accumulate in `out`.
fn deliver(
    chain: &mut switchboard_handlers::Chain,
    info: &switchboard_handlers::Session,
    msg: &[u8],
    out: &mut switchboard_handlers::Outbox,
    debug: bool,
) {
    if debug {
        const SHOWN: usize = 256;
        let text = escape(&msg[..msg.len().min(SHOWN)]);
        let cut = if msg.len() > SHOWN { "..." } else { "" };
        debug!(session = info.id, event = "message", bytes = msg.len(),
            text = %format_args!("{text}{cut}"), "message");
    }
    if chain.message(msg, info, out) == Flow::Pass && debug {
        debug!(
            session = info.id,
            event = "dropped",
            "no handler took the message; dropped"
        );
    }
}
