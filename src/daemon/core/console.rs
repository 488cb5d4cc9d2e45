//! The operator console, as logic: who is attached, what each focuses on, the backlog kept
//! while nobody is, the queue of sessions waiting for a person (kept here, run by `desk.rs`),
//! and the commands. Lines for operators leave as [`Effect::Tell`]; the shell's control module
//! reads and writes the terminals and sockets.

use std::collections::{BTreeMap, VecDeque};

use switchboard_handlers::text::escape;
use switchboard_handlers::{CloseReason, Flow};
use tracing::{info, warn};

use super::desk::Desk;
use super::drive::Input;
use super::session::Phase;
use super::{Core, Effect, SessionKey};
use crate::console::{self, Command};

/// An operator's place in the shell's table of control clients.
pub(crate) type OpId = usize;

/// Messages kept while no operator is attached; beyond it the oldest are dropped (and the
/// first operator to attach is told how many).
const BACKLOG_MAX: usize = 10_000;

#[derive(Debug)]
struct Operator {
    name: String,
    /// Session pinned with `/to`.
    focus: Option<u64>,
}

/// The attached operators and what waits for them.
#[derive(Debug, Default)]
pub(super) struct Console {
    ops: BTreeMap<OpId, Operator>,
    backlog: VecDeque<String>,
    dropped: u64,
    /// The session that spoke last to the console.
    last_spoke: Option<u64>,
    /// Sessions waiting for a person, in order (a number given at the handoff, and the key).
    pub(super) queue: Vec<(u64, SessionKey)>,
    /// The last handoff number given.
    pub(super) next_seq: u64,
}

impl Console {
    pub(super) fn attached(&self) -> usize {
        self.ops.len()
    }

    pub(super) fn tell(&self, op: OpId, line: impl Into<String>, effects: &mut VecDeque<Effect>) {
        effects.push_back(Effect::Tell(op, line.into().into_boxed_str()));
    }

    pub(super) fn name_of(&self, op: OpId) -> Option<&str> {
        self.ops.get(&op).map(|o| o.name.as_str())
    }

    /// The attached operators' names.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.ops.values().map(|o| o.name.as_str())
    }

    /// A line for every operator but `except`, or for the backlog when nobody is attached.
    pub(super) fn broadcast(
        &mut self,
        line: &str,
        except: Option<OpId>,
        effects: &mut VecDeque<Effect>,
    ) {
        if self.ops.is_empty() {
            if self.backlog.len() >= BACKLOG_MAX {
                self.backlog.pop_front();
                self.dropped += 1;
                if self.dropped == 1 || self.dropped.is_power_of_two() {
                    warn!(
                        event = "backlog_full",
                        dropped = self.dropped,
                        "no operator attached and the console backlog is full; oldest messages dropped"
                    );
                }
            }
            self.backlog.push_back(line.to_string());
            return;
        }
        for &op in self.ops.keys().filter(|&&k| Some(k) != except) {
            self.tell(op, line, effects);
        }
    }
}

impl Core {
    /// A control client (or the stdin console) becomes an operator: greet it (`greet`) and
    /// show what waited.
    pub(crate) fn attach_operator(&mut self, op: OpId, name: String, greet: bool) {
        info!(event = "operator_attached", operator = %name, "operator attached");
        let open = self.console_sessions().len();
        let (c, fx) = (&mut self.console, &mut self.effects);
        if greet {
            let hello = format!(
                "switchboard console: you are {name}; {open} session(s) open; /help for commands"
            );
            c.tell(op, hello, fx);
        }
        if c.dropped > 0 {
            let n = std::mem::take(&mut c.dropped);
            let line = format!("(!) {n} earlier message(s) were dropped: the backlog was full");
            c.tell(op, line, fx);
        }
        if !c.backlog.is_empty() {
            c.tell(
                op,
                format!("-- {} message(s) waiting --", c.backlog.len()),
                fx,
            );
            while let Some(line) = c.backlog.pop_front() {
                c.tell(op, line, fx);
            }
        }
        if !c.queue.is_empty() {
            let ids: Vec<String> = c
                .queue
                .iter()
                .map(|&(_, k)| format!("#{}", self.sessions[k].info.id))
                .collect();
            let line = format!(
                "-- {} session(s) waiting for a person: {}; /take ID to answer --",
                ids.len(),
                ids.join(" ")
            );
            c.tell(op, line, fx);
        }
        c.ops.insert(op, Operator { name, focus: None });
        self.desk_touched();
    }

    /// An operator left: the sessions they had go back to the queue.
    pub(crate) fn detach_operator(&mut self, op: OpId, why: &str) {
        if let Some(o) = self.console.ops.remove(&op) {
            info!(event = "operator_detached", operator = %o.name, why, "operator detached");
            self.requeue_taken_by(op, &o.name);
            self.desk_touched();
        }
    }

    /// Sessions whose chain takes operator replies, open ones only.
    fn console_sessions(&self) -> Vec<SessionKey> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.phase == Phase::Open && s.cfg.takes_operator())
            .map(|(k, _)| k)
            .collect()
    }

    fn find_session(&self, id: u64) -> Option<SessionKey> {
        self.console_sessions()
            .into_iter()
            .find(|&k| self.sessions[k].info.id == id)
    }

    pub(super) fn console_tag(&self, key: SessionKey) -> String {
        let s = &self.sessions[key].info;
        console::tag(s.id, &s.listener, s.proto, s.peer)
    }

    /// A handler has something for the operator.
    pub(super) fn show_to_operators(&mut self, key: SessionKey, text: &str) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        s.unanswered += 1;
        let id = s.info.id;
        if self.console.attached() == 0 && self.debug {
            tracing::debug!(session = id, event = "kept_for_operator", text = %escape(text.as_bytes()),
                "message kept for the operator (none attached)");
        }
        self.console.last_spoke = Some(id);
        let line = console::message_line(&self.console_tag(key), text);
        self.console.broadcast(&line, None, &mut self.effects);
    }

    /// Tell operators a console session ended.
    pub(super) fn console_closed(&mut self, key: SessionKey, reason: CloseReason) {
        self.dequeue(key);
        self.desk_touched();
        if self.console.attached() > 0 {
            let line = format!("[{}] session closed ({reason})", self.console_tag(key));
            self.console.broadcast(&line, None, &mut self.effects);
        }
    }

    /// A line an operator typed.
    pub(crate) fn operator_line(&mut self, op: OpId, line: &str) {
        self.operator_command(op, console::parse(line));
    }

    /// A command of an operator: typed (`operator_line`), or a button of the web console.
    pub(crate) fn operator_command(&mut self, op: OpId, command: Command) {
        match command {
            Command::Nothing => {}
            Command::Help => {
                for l in console::HELP.lines() {
                    self.console.tell(op, l, &mut self.effects);
                }
            }
            Command::Invalid(why) => self
                .console
                .tell(op, format!("(!) {why}"), &mut self.effects),
            Command::List => {
                let keys = self.console_sessions();
                if keys.is_empty() {
                    self.console.tell(op, "no open sessions", &mut self.effects);
                }
                let focus = self.focus_of(op);
                for key in keys {
                    let s = &self.sessions[key];
                    let row = console::list_row(
                        &self.console_tag(key),
                        self.now.saturating_duration_since(s.last_active),
                        s.unanswered,
                        focus == Some(s.info.id),
                        &self.desk_label(key),
                    );
                    self.console.tell(op, row, &mut self.effects);
                }
            }
            Command::Take(id) => match self.find_session(id) {
                Some(key) => self.take(op, key, true),
                None => self.no_session(op, id),
            },
            Command::Release(id) => match self.find_session(id) {
                Some(key) => self.give_back(op, key),
                None => self.no_session(op, id),
            },
            Command::Canned(name) => self.canned(op, name.as_deref()),
            Command::To(id) => match self.find_session(id) {
                Some(key) => {
                    let tag = self.console_tag(key);
                    self.set_focus(op, id);
                    self.console
                        .tell(op, format!("now replying to [{tag}]"), &mut self.effects);
                }
                None => self.no_session(op, id),
            },
            Command::Close(id) => match self.find_session(id) {
                Some(key) => {
                    let name = self.console.ops.get(&op).map_or("", |o| &o.name);
                    info!(event = "operator_close", session = id, operator = %name, "closed by the operator");
                    self.begin_draining(key, CloseReason::Operator);
                }
                None => {
                    self.console
                        .tell(op, format!("(!) no open session #{id}"), &mut self.effects)
                }
            },
            Command::At(id, text) => {
                self.operator_reply(op, id, &text);
            }
            Command::Reply(text) => match self.focus_of(op) {
                Some(id) => {
                    self.operator_reply(op, id, &text);
                }
                None => self.console.tell(
                    op,
                    "(!) no session to reply to yet; /list shows the open ones",
                    &mut self.effects,
                ),
            },
        }
    }

    /// The session an operator's plain lines go to: the pinned one while it is open, else the
    /// one that spoke last.
    fn focus_of(&self, op: OpId) -> Option<u64> {
        let pinned = self.console.ops.get(&op).and_then(|o| o.focus);
        pinned
            .filter(|&id| self.find_session(id).is_some())
            .or(self.console.last_spoke)
    }

    fn no_session(&mut self, op: OpId, id: u64) {
        let line = format!("(!) no open session #{id}; /list shows them");
        self.console.tell(op, line, &mut self.effects);
    }

    pub(super) fn set_focus(&mut self, op: OpId, id: u64) {
        if let Some(o) = self.console.ops.get_mut(&op) {
            o.focus = Some(id);
        }
    }

    /// `/c NAME`: a canned reply to the focused session; `/c`: the canned replies there are.
    fn canned(&mut self, op: OpId, name: Option<&str>) {
        let focus = self.focus_of(op).and_then(|id| self.find_session(id));
        let Some(name) = name else {
            // Those of the focused session's listener, or of every console listener.
            let mut seen = Vec::new();
            for (lid, l) in self.listeners() {
                if focus.is_some_and(|k| self.sessions[k].listener.0 != lid.0) {
                    continue;
                }
                for h in &l.cfg.handlers {
                    for (n, text) in h.canned() {
                        let line = format!("  /c {n:<12} {}", escape(text.as_bytes()));
                        if !seen.contains(&line) {
                            seen.push(line);
                        }
                    }
                }
            }
            if seen.is_empty() {
                seen.push(
                    "no canned replies: set [listener.console-reply] canned = { NAME = \"...\" }"
                        .into(),
                );
            }
            for line in seen {
                self.console.tell(op, line, &mut self.effects);
            }
            return;
        };
        let Some(key) = focus else {
            self.console.tell(
                op,
                "(!) no session to reply to yet; /to ID first (/list shows them)",
                &mut self.effects,
            );
            return;
        };
        self.send_canned(op, key, name);
    }

    /// The canned reply `name` to session `id` (a button of the web console), which becomes
    /// the operator's focus.
    pub(crate) fn operator_canned(&mut self, op: OpId, id: u64, name: &str) {
        match self.find_session(id) {
            Some(key) => {
                self.set_focus(op, id);
                self.send_canned(op, key, name);
            }
            None => self.no_session(op, id),
        }
    }

    fn send_canned(&mut self, op: OpId, key: SessionKey, name: &str) {
        let s = &self.sessions[key];
        let text = s
            .cfg
            .handlers
            .iter()
            .find_map(|h| h.render_canned(name, &s.info));
        match text {
            Some(text) => {
                let id = s.info.id;
                if self.operator_reply(op, id, &text) {
                    // They did not type it: show them what went out.
                    let line = format!(
                        "[{}] {}> {}",
                        self.console_tag(key),
                        self.op_name(op),
                        escape(text.as_bytes())
                    );
                    self.console.tell(op, line, &mut self.effects);
                }
            }
            None => {
                let line = format!("(!) no canned reply named {name:?}; /c lists them");
                self.console.tell(op, line, &mut self.effects);
            }
        }
    }

    /// An operator's reply to session `id`; whether it was sent.
    fn operator_reply(&mut self, op: OpId, id: u64, text: &str) -> bool {
        let Some(key) = self.find_session(id) else {
            let line = format!(
                "(!) session #{id} has ended (or is closing); your reply was not sent (/list shows the open ones)"
            );
            self.console.tell(op, line, &mut self.effects);
            return false;
        };
        match self.sessions[key].desk.with {
            Desk::Taken { op: owner, .. } if owner == op => {}
            Desk::Taken { op: owner, .. } => {
                let line = format!(
                    "(!) #{id} is taken by {}; your reply was not sent (/take {id} to take it over)",
                    self.op_name(owner)
                );
                self.console.tell(op, line, &mut self.effects);
                return false;
            }
            // Answering a session takes it: its bot falls silent.
            Desk::Bot | Desk::Waiting { .. } => self.take(op, key, false),
        }
        if self.find_session(id).is_none() {
            return false;
        }
        let tag = self.console_tag(key);
        let name = self.op_name(op);
        self.said.operator = Some(name.clone());
        let flow = self.drive(key, Input::Operator(text));
        self.said.operator = None;
        if flow == Flow::Pass {
            let line = format!("(!) no handler of session #{id} takes replies");
            self.console.tell(op, line, &mut self.effects);
            return false;
        }
        let line = format!("[{tag}] {name}> {}", escape(text.as_bytes()));
        self.console.broadcast(&line, Some(op), &mut self.effects);
        true
    }
}
