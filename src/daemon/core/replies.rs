//! What a drive heard and said: each message of the peer and each reply, kept in the session's
//! history (shown to operators) and written to the listener's transcripts; and the shaping of
//! the replies before they are framed: text sent ahead (a UDP greeting), and the
//! one-reply-per-message discipline of `reply_mode = "one-per-message"`.
//!
//! A drive is cut into *units*: what the handlers said before any message (an event: the
//! session opened, an operator line, a timer, a handoff), then what they said for each message
//! the drive delivered. Under the discipline each message the peer sent owes it one reply:
//! the messages of a unit are joined (`\n`) into one reply when one is owed, and otherwise
//! held, to go out in front of the next reply, or on their own when a handler ends the session.
//! An event's unit may answer several owed messages (a delayed reply releases those the bot
//! queued behind it): its messages then go one per owed reply, the last ones joined.

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use switchboard_handlers::Action;
use switchboard_handlers::text::{lossy, trim_line_end};

use super::{Core, Effect, SessionKey};
use crate::config::{ReplyMode, Transcripts};

/// Who said something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Speaker {
    Customer,
    /// The handlers on their own.
    Bot,
    /// An operator, by name.
    Operator(Rc<str>),
}

impl fmt::Display for Speaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Speaker::Customer => f.write_str("customer"),
            Speaker::Bot => f.write_str("bot"),
            Speaker::Operator(name) => f.write_str(name),
        }
    }
}

/// One line of a transcript, as the core hands it to the shell's writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) to: Arc<Transcripts>,
    pub(crate) listener: Arc<str>,
    pub(crate) time: SystemTime,
    pub(crate) session: u64,
    pub(crate) peer: SocketAddr,
    /// `in`, `out` or `event`.
    pub(crate) direction: &'static str,
    /// `customer`, `bot` or `operator`.
    pub(crate) who: &'static str,
    /// The handler (bot) or operator, by name.
    pub(crate) name: Option<String>,
    /// What happened (`handoff`, `taken`, `released`), for events.
    pub(crate) event: Option<&'static str>,
    pub(crate) text: String,
}

/// Where a unit of a drive starts.
#[derive(Debug)]
pub(super) struct Mark {
    /// The number of outbox messages before it.
    pub(super) start: usize,
    /// It is a message of the peer, which owes a reply.
    pub(super) message: bool,
    /// The message's text, when the session records what is said.
    pub(super) heard: Option<String>,
}

/// The core's state for this module, reused from drive to drive.
#[derive(Debug, Default)]
pub(super) struct Said {
    pub(super) marks: Vec<Mark>,
    /// Marks whose message is recorded.
    recorded_marks: usize,
    /// Outbox messages recorded.
    recorded_out: usize,
    /// Outbox actions looked at for text sent ahead.
    recorded_actions: usize,
    /// The operator typing, during a drive of their line.
    pub(super) operator: Option<Rc<str>>,
    /// Transcript lines for the shell.
    records: Vec<Record>,
}

impl Said {
    /// A new drive begins.
    pub(super) fn begin(&mut self) {
        self.marks.clear();
        self.recorded_marks = 0;
        self.recorded_out = 0;
        self.recorded_actions = 0;
    }

    /// A unit begins: an event's, or a message's.
    pub(super) fn mark(&mut self, start: usize, heard: Option<String>, message: bool) {
        self.marks.push(Mark {
            start,
            message,
            heard,
        });
    }
}

/// Append `text` as a line of its own (nothing for an empty text).
fn push_line(buf: &mut Vec<u8>, text: &[u8]) {
    if text.is_empty() {
        return;
    }
    if !buf.is_empty() {
        buf.push(b'\n');
    }
    buf.extend_from_slice(text);
}

impl Core {
    /// Whether a session's replies are paced one per message.
    pub(super) fn counts_replies(&self, key: SessionKey) -> bool {
        self.sessions
            .get(key)
            .is_some_and(|s| s.cfg.reply_mode == ReplyMode::OnePerMessage)
    }

    /// Whether a session keeps what is said (history or transcripts).
    pub(super) fn records(&self, key: SessionKey) -> bool {
        self.sessions.get(key).is_some_and(|s| {
            s.desk.history.is_some()
                || s.cfg.transcripts.is_some()
                || (self.desk_followed() && s.cfg.takes_operator())
        })
    }

    /// Record what the drive in progress heard and said and was not recorded yet.
    #[inline]
    pub(super) fn record(&mut self, key: SessionKey) {
        let count = self.out.message_count();
        if !self.records(key) {
            self.said.recorded_out = count;
            self.said.recorded_marks = self.said.marks.len();
            return;
        }
        self.record_said(key, count);
    }

    /// [`Core::record`] for a session that records: out of line, so that every drive of
    /// the others (nearly all) does not set up its frame.
    #[inline(never)]
    fn record_said(&mut self, key: SessionKey, count: usize) {
        let said = &mut self.said;
        let mut lines: Vec<(Speaker, Option<String>, String)> = Vec::new();
        let outputs: Vec<&[u8]> = self.out.messages().collect();
        let links = self.out.message_links();
        let s = &self.sessions[key];
        // Text sent ahead of the next reply (a UDP greeting) is said when it is sent.
        let actions = self.out.actions();
        for a in &actions[said.recorded_actions.min(actions.len())..] {
            if let Action::Ahead { link, bytes, .. } = a {
                let name = s.cfg.handler_names.get(*link).cloned();
                lines.push((Speaker::Bot, name, lossy(trim_line_end(bytes)).into_owned()));
            }
        }
        said.recorded_actions = actions.len();
        for i in 0..said.marks.len() {
            let end = said.marks.get(i + 1).map_or(count, |m| m.start);
            if i >= said.recorded_marks
                && let Some(text) = said.marks[i].heard.take()
            {
                lines.push((Speaker::Customer, None, text));
            }
            let from = said.marks[i].start.max(said.recorded_out);
            for (m, bytes) in outputs.iter().enumerate().take(end).skip(from) {
                let text = lossy(trim_line_end(bytes)).into_owned();
                let (who, name) = match &said.operator {
                    Some(op) => (Speaker::Operator(op.clone()), Some(op.to_string())),
                    None => (
                        Speaker::Bot,
                        links
                            .get(m)
                            .and_then(|&l| s.cfg.handler_names.get(l).cloned()),
                    ),
                };
                lines.push((who, name, text));
            }
        }
        said.recorded_marks = said.marks.len();
        said.recorded_out = count;
        for (who, name, text) in lines {
            self.keep(key, &who, name, text);
        }
    }

    /// An event in a session's transcript.
    pub(super) fn transcribe_event(
        &mut self,
        key: SessionKey,
        event: &'static str,
        who: &Speaker,
        name: Option<String>,
    ) {
        let name = name.or_else(|| match who {
            Speaker::Operator(n) => Some(n.to_string()),
            _ => None,
        });
        if self.sessions[key].cfg.transcripts.is_some() {
            self.transcribe(key, who, name, Some(event), String::new());
        }
    }

    /// Keep one message in the session's history and transcript.
    fn keep(&mut self, key: SessionKey, who: &Speaker, name: Option<String>, text: String) {
        self.desk_said(key, who, &text);
        let s = &mut self.sessions[key];
        if s.cfg.transcripts.is_some() {
            if let Some(h) = &mut s.desk.history {
                h.push(who.clone(), text.clone());
            }
            self.transcribe(key, who, name, None, text);
        } else if let Some(h) = &mut s.desk.history {
            h.push(who.clone(), text);
        }
    }

    fn transcribe(
        &mut self,
        key: SessionKey,
        who: &Speaker,
        name: Option<String>,
        event: Option<&'static str>,
        text: String,
    ) {
        let s = &self.sessions[key];
        let Some(to) = &s.cfg.transcripts else {
            return;
        };
        let (direction, who) = match (event, who) {
            (Some(_), Speaker::Operator(_)) => ("event", "operator"),
            (Some(_), _) => ("event", "bot"),
            (None, Speaker::Customer) => ("in", "customer"),
            (None, Speaker::Bot) => ("out", "bot"),
            (None, Speaker::Operator(_)) => ("out", "operator"),
        };
        if self.said.records.is_empty() {
            self.effects.push_back(Effect::Transcripts);
        }
        self.said.records.push(Record {
            to: to.clone(),
            listener: s.cfg.name.clone(),
            time: self.wall,
            session: s.info.id,
            peer: s.info.peer,
            direction,
            who,
            name,
            event,
            text,
        });
    }

    /// The transcript lines to write; the shell takes them after an `Effect::Transcripts`.
    pub(crate) fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.said.records)
    }

    /// Shape the outbox's messages into the replies that go out: text sent ahead goes in
    /// front of the next one, and under `one-per-message` each message of the peer gets one.
    pub(super) fn shape(&mut self, key: SessionKey) {
        let s = &mut self.sessions[key];
        let one = s.cfg.reply_mode == ReplyMode::OnePerMessage;
        let ahead = self
            .out
            .actions()
            .iter()
            .any(|a| matches!(a, Action::Ahead { .. }));
        if !one && !ahead && s.desk.held.is_empty() {
            return;
        }
        let mut closing = false;
        for a in self.out.actions() {
            match a {
                Action::Ahead { bytes, .. } => push_line(&mut s.desk.held, bytes),
                Action::Close { .. } => closing = true,
                _ => {}
            }
        }
        let outputs: Vec<Vec<u8>> = self.out.messages().map(<[u8]>::to_vec).collect();
        let mut replies: Vec<Vec<u8>> = Vec::new();
        if one {
            let marks = &self.said.marks;
            for (i, mark) in marks.iter().enumerate() {
                if mark.message {
                    s.desk.owed = s.desk.owed.saturating_add(1);
                }
                let end = marks.get(i + 1).map_or(outputs.len(), |m| m.start);
                if mark.start >= end {
                    continue;
                }
                let mut parts = &outputs[mark.start..end];
                // An event may answer several messages at once (a delayed reply releasing
                // those queued behind it): one message each while more are owed.
                while !mark.message && s.desk.owed > 1 && parts.len() > 1 {
                    s.desk.owed -= 1;
                    let mut reply = std::mem::take(&mut s.desk.held);
                    push_line(&mut reply, &parts[0]);
                    replies.push(reply);
                    parts = &parts[1..];
                }
                let mut text = Vec::new();
                for o in parts {
                    push_line(&mut text, o);
                }
                if s.desk.owed > 0 {
                    s.desk.owed -= 1;
                    let mut reply = std::mem::take(&mut s.desk.held);
                    push_line(&mut reply, &text);
                    replies.push(reply);
                } else {
                    push_line(&mut s.desk.held, &text);
                }
            }
        } else {
            for o in outputs {
                let mut reply = std::mem::take(&mut s.desk.held);
                push_line(&mut reply, &o);
                replies.push(reply);
            }
        }
        if closing && !s.desk.held.is_empty() {
            replies.push(std::mem::take(&mut s.desk.held));
        }
        if s.desk.held.is_empty() {
            s.desk.held = Vec::new();
        }
        self.out.clear_messages();
        for r in replies {
            self.out.send(&r);
        }
    }
}
