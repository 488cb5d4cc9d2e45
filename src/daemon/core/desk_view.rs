//! The support desk as data, for the web console: the sessions operators can answer with who
//! has each, their recent conversation, the canned replies, the listeners' counters; and, while
//! a browser follows the desk (the *feed*), what changed since it last looked and each line
//! said. The terminal console gets the same events as lines (`console.rs`); the page is an
//! operator too, and acts through the same commands.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use switchboard_handlers::Proto;

use super::desk::Desk;
use super::metrics::{Row, rows};
use super::replies::Speaker;
use super::session::Phase;
use super::{Core, SessionKey};

/// Who answers a session, as the desk shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Its handlers.
    Bot,
    /// Nobody yet: waiting for a person, at this place in the queue (1 is next).
    Waiting(usize),
    /// This operator.
    Taken(Rc<str>),
}

/// One session an operator can answer.
#[derive(Debug, Clone)]
pub(crate) struct DeskRow {
    pub(crate) id: u64,
    pub(crate) listener: Arc<str>,
    pub(crate) proto: Proto,
    pub(crate) peer: SocketAddr,
    pub(crate) standing: Standing,
    /// Messages shown to operators since the last operator reply.
    pub(crate) unanswered: u32,
    /// Since its peer last sent something.
    pub(crate) idle: Duration,
}

/// One line of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SaidLine {
    pub(crate) session: u64,
    pub(crate) who: Speaker,
    pub(crate) text: String,
}

/// What the feed collected since the shell last took it.
#[derive(Debug, Default)]
pub(super) struct Feed {
    /// Rows changed (a session came or went, its standing or counts changed, an operator
    /// came or left).
    dirty: bool,
    said: Vec<SaidLine>,
}

/// Mark the rows changed, when the desk is followed.
pub(super) fn touch(feed: &mut Option<Feed>) {
    if let Some(f) = feed {
        f.dirty = true;
    }
}

/// The most lines the feed keeps between two takes (the shell takes them every turn of the
/// loop; this only bounds a pathological turn).
const FEED_MAX: usize = 10_000;

impl Core {
    /// Follow the desk (a browser shows it) or stop.
    pub(crate) fn set_desk_feed(&mut self, on: bool) {
        match (on, self.feed.is_some()) {
            (true, false) => self.feed = Some(Feed::default()),
            (false, true) => self.feed = None,
            _ => {}
        }
    }

    /// Whether the desk is followed.
    pub(super) fn desk_followed(&self) -> bool {
        self.feed.is_some()
    }

    /// Something an operator sees changed.
    pub(super) fn desk_touched(&mut self) {
        touch(&mut self.feed);
    }

    /// A line said in a session operators can answer.
    pub(super) fn desk_said(&mut self, key: SessionKey, who: &Speaker, text: &str) {
        let Some(f) = &mut self.feed else {
            return;
        };
        if f.said.len() < FEED_MAX
            && let Some(s) = self.sessions.get(key)
            && s.cfg.takes_operator()
        {
            f.said.push(SaidLine {
                session: s.info.id,
                who: who.clone(),
                text: text.to_string(),
            });
        }
    }

    /// What changed since the last call: whether the rows did, and the lines said.
    pub(crate) fn take_desk_changes(&mut self) -> (bool, Vec<SaidLine>) {
        match &mut self.feed {
            Some(f) => (std::mem::take(&mut f.dirty), std::mem::take(&mut f.said)),
            None => (false, Vec::new()),
        }
    }

    /// The open sessions operators can answer, oldest first.
    pub(crate) fn desk_rows(&self) -> Vec<DeskRow> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.phase == Phase::Open && s.cfg.takes_operator())
            .map(|(key, s)| DeskRow {
                id: s.info.id,
                listener: s.cfg.name.clone(),
                proto: s.cfg.proto,
                peer: s.info.peer,
                standing: match s.desk.with {
                    Desk::Bot => Standing::Bot,
                    Desk::Waiting { .. } => {
                        Standing::Waiting(self.queue_position(key).unwrap_or(0))
                    }
                    Desk::Taken { op, .. } => Standing::Taken(self.op_name(op)),
                },
                unanswered: s.unanswered,
                idle: self.now.saturating_duration_since(s.last_active),
            })
            .collect()
    }

    /// The recent conversation of each open session operators can answer (as far as its
    /// listener keeps one: console-reply's `history`).
    pub(crate) fn desk_histories(&self) -> Vec<SaidLine> {
        let mut lines = Vec::new();
        for (_, s) in self.sessions.iter() {
            if s.phase != Phase::Open || !s.cfg.takes_operator() {
                continue;
            }
            if let Some(h) = &s.desk.history {
                lines.extend(h.lines().map(|(who, text)| SaidLine {
                    session: s.info.id,
                    who: who.clone(),
                    text: text.to_string(),
                }));
            }
        }
        lines
    }

    /// The operators attached, by name, terminal and browser alike.
    pub(crate) fn operator_names(&self) -> Vec<String> {
        self.console.names().map(str::to_string).collect()
    }

    /// The canned replies of each listener operators answer on: listener, name, text (its
    /// placeholders not filled in).
    pub(crate) fn canned_replies(&self) -> Vec<(Arc<str>, String, String)> {
        let mut out = Vec::new();
        for (_, l) in self.listeners() {
            if !l.cfg.takes_operator() {
                continue;
            }
            for h in &l.cfg.handlers {
                for (name, text) in h.canned() {
                    let row = (l.cfg.name.clone(), name, text);
                    if !out.contains(&row) {
                        out.push(row);
                    }
                }
            }
        }
        out
    }

    /// Each listener's counters (one row per name and protocol), as `status` shows them.
    pub(crate) fn listener_rows(&self) -> Vec<Row> {
        rows(&self.listeners, &self.sessions)
    }
}
