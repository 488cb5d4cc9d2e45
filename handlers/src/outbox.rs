//! [`Outbox`]: where a handler puts its answers, and the only way to make an [`Action`].

use std::time::Duration;

use crate::{Action, ChannelId, ChannelSpec, CloseReason, Scope, TimerId};

/// Where a handler puts its answers. The loop owns one outbox and reuses it for every call,
/// so sending is an append to a buffer, not an allocation per message.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The chain link being called, so that timers come back to it.
    pub(crate) link: usize,
    data: Vec<u8>,
    /// End offsets in `data` of each message: one datagram each on UDP.
    ends: Vec<usize>,
    /// The link that sent each message.
    links: Vec<usize>,
    actions: Vec<Action>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Send these bytes to the peer as one message (one datagram on UDP).
    pub fn send(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.ends.push(self.data.len());
        self.links.push(self.link);
    }

    /// Send these bytes in front of the next message to the peer, whichever link sends it,
    /// in the same message (a greeting that must not be a reply of its own).
    pub fn send_ahead(&mut self, bytes: &[u8]) {
        let link = self.link;
        self.push(Action::Ahead {
            link,
            bytes: bytes.to_vec(),
        });
    }

    /// Hand the session to a person (see [`Handoff`](crate::Handoff)).
    pub fn handoff(&mut self) {
        let link = self.link;
        self.push(Action::Handoff { link });
    }

    /// Whether a link asked for a handoff during the call in progress (a later link of the
    /// chain may answer as if it had taken effect).
    pub fn handoff_asked(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::Handoff { .. }))
    }

    fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Start a timer: [`Handler::on_timer`](crate::Handler::on_timer) is called with `id` after `after`. Starting a
    /// timer whose `id` is still pending restarts it.
    pub fn timer(&mut self, id: TimerId, after: Duration) {
        let link = self.link;
        self.push(Action::Timer {
            link,
            id,
            after,
            holds: true,
        });
    }

    /// A timer that does not hold up the end of the session: when the peer ends its input or
    /// the daemon stops, the session ends without waiting for it (a reminder, such as "please
    /// wait", rather than a reply already decided). It may still fire while the session's
    /// output is flushed.
    pub fn soft_timer(&mut self, id: TimerId, after: Duration) {
        let link = self.link;
        self.push(Action::Timer {
            link,
            id,
            after,
            holds: false,
        });
    }

    /// Cancel the pending timer `id`; nothing happens if it already fired or never started.
    pub fn cancel_timer(&mut self, id: TimerId) {
        let link = self.link;
        self.push(Action::CancelTimer { link, id });
    }

    /// Show text to the operator.
    pub fn to_operator(&mut self, text: impl Into<String>) {
        self.push(Action::ToOperator { text: text.into() });
    }

    /// End the session (after flushing) with this reach.
    pub fn close(&mut self, scope: Scope) {
        self.push(Action::Close {
            scope,
            reason: CloseReason::Handler,
        });
    }

    /// End this session (after flushing), logged with `reason`.
    pub fn close_because(&mut self, reason: CloseReason) {
        self.push(Action::Close {
            scope: Scope::Session,
            reason,
        });
    }

    /// End the session now, resetting a TCP peer's connection (see [`Action::Reset`]).
    pub fn reset(&mut self, reason: CloseReason) {
        self.push(Action::Reset { reason });
    }

    /// Half-close: the peer gets FIN once what was sent is flushed, and is still read.
    pub fn end_output(&mut self) {
        self.push(Action::EndOutput);
    }

    /// Ask the loop to open channel `id` (see [`channel`](crate::channel)); its events come to
    /// [`Handler::on_channel`](crate::Handler::on_channel).
    pub fn open(&mut self, id: ChannelId, spec: ChannelSpec) {
        let link = self.link;
        self.push(Action::Open { link, id, spec });
    }

    /// Write bytes to channel `id`'s input. Bytes for a channel that is not open, or whose
    /// input ended, are dropped.
    pub fn to_channel(&mut self, id: ChannelId, bytes: &[u8]) {
        let link = self.link;
        self.push(Action::ToChannel {
            link,
            id,
            data: bytes.to_vec(),
        });
    }

    /// End channel `id`'s input once what was written is through.
    pub fn end_channel_input(&mut self, id: ChannelId) {
        let link = self.link;
        self.push(Action::EndChannelInput { link, id });
    }

    /// End channel `id` now.
    pub fn close_channel(&mut self, id: ChannelId) {
        let link = self.link;
        self.push(Action::CloseChannel { link, id });
    }

    /// Whether nothing was sent or asked for.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty() && self.actions.is_empty()
    }

    /// Whether any message was sent (an empty message counts: it is an empty datagram).
    pub fn has_messages(&self) -> bool {
        !self.ends.is_empty()
    }

    /// All bytes sent, concatenated (what a stream peer receives).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// How many messages were sent.
    pub fn message_count(&self) -> usize {
        self.ends.len()
    }

    /// The chain link that sent each message, in order.
    pub fn message_links(&self) -> &[usize] {
        &self.links
    }

    /// Forget the messages sent, keeping the actions (the loop reshapes them).
    pub fn clear_messages(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.links.clear();
    }

    /// The messages sent, one slice each.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let m = &self.data[start..end];
            start = end;
            m
        })
    }

    /// The actions asked for, in order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Take the actions out, leaving the sent data in place.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Forget everything, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.links.clear();
        self.actions.clear();
    }
}
