//! The support desk in the core: sessions handed to a person, the queue they wait in, the
//! operator who has each, and the recent conversation operators are shown.
//!
//! A session starts with its handlers answering on their own (`Desk::Bot`). A handler asks
//! for a person (`Action::Handoff`, taken during the drive that asked, so that what the chain
//! answers to the handoff joins the answer to the message): the session joins the queue
//! (`Waiting`) and operators see its recent messages. An operator takes it (`/take`, or by
//! answering it: `Taken`), and gives it back (`/release`: `Bot` again). An operator who leaves
//! puts the sessions they had back in the queue, in their old places. Each change reaches the
//! chain as `Handler::on_handoff`; a waiting session's chain hears its new place lazily, before
//! its next event (`Core::drive`).

use std::collections::VecDeque;
use std::rc::Rc;

use switchboard_handlers::text::escape;
use switchboard_handlers::{Action, Handoff};
use tracing::{debug, info};

use super::console::OpId;
use super::drive::Input;
use super::replies::Speaker;
use super::{Core, SessionKey};
use crate::config::ListenerConfig;

/// Where a session stands with the people at the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Desk {
    /// Its handlers answer on their own.
    #[default]
    Bot,
    /// Handed to a person, in the queue: `seq` orders the queue, `told` is the place its chain
    /// heard last.
    Waiting { seq: u64, told: usize },
    /// An operator has it (`seq`: its place, should it go back to the queue).
    Taken { op: OpId, seq: u64 },
}

/// A session's part of the support desk: who answers it, its recent messages, and what the
/// reply discipline keeps for it (`replies.rs`).
#[derive(Debug, Default)]
pub(crate) struct Attendance {
    pub(crate) with: Desk,
    /// Its recent messages both ways, when operators are shown them.
    pub(crate) history: Option<Box<History>>,
    /// `reply_mode = "one-per-message"`: messages of the peer not answered yet.
    pub(crate) owed: u32,
    /// Text that goes out in front of the next reply (empty, without capacity, when none).
    pub(crate) held: Vec<u8>,
}

impl Attendance {
    /// A session of this listener: with its handlers, and a history when operators are
    /// shown one.
    pub(crate) fn for_listener(cfg: &ListenerConfig) -> Attendance {
        let max = cfg.history();
        let history = (max > 0 && cfg.takes_operator()).then(|| {
            Box::new(History {
                lines: VecDeque::new(),
                max,
            })
        });
        Attendance {
            history,
            ..Attendance::default()
        }
    }
}

/// A session's recent messages, both ways, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    lines: VecDeque<(Speaker, String)>,
    max: usize,
}

/// The most of a message a history keeps (operators see the start of a longer one), so that a
/// session's history stays small whatever its peer sends.
const HISTORY_TEXT_MAX: usize = 1000;

impl History {
    pub(crate) fn push(&mut self, who: Speaker, mut text: String) {
        if self.lines.len() >= self.max {
            self.lines.pop_front();
        }
        if text.len() > HISTORY_TEXT_MAX {
            let mut end = HISTORY_TEXT_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        self.lines.push_back((who, text));
    }
}

impl Core {
    /// The place of a waiting session in the queue, 1 being next.
    pub(super) fn queue_position(&self, key: SessionKey) -> Option<usize> {
        self.console
            .queue
            .iter()
            .position(|&(_, k)| k == key)
            .map(|i| i + 1)
    }

    fn enqueue(&mut self, seq: u64, key: SessionKey) -> usize {
        let q = &mut self.console.queue;
        let at = q.partition_point(|&(s, _)| s < seq);
        q.insert(at, (seq, key));
        at + 1
    }

    /// Take a session out of the queue (it was taken, given back, or it ended).
    pub(super) fn dequeue(&mut self, key: SessionKey) {
        self.console.queue.retain(|&(_, k)| k != key);
    }

    /// A waiting session whose place moved since its chain last heard it: the new place,
    /// now recorded as heard.
    pub(super) fn moved_position(&mut self, key: SessionKey) -> Option<usize> {
        let Desk::Waiting { told, .. } = self.sessions.get(key)?.desk.with else {
            return None;
        };
        let now = self.queue_position(key)?;
        if now == told {
            return None;
        }
        if let Desk::Waiting { told, .. } = &mut self.sessions[key].desk.with {
            *told = now;
        }
        Some(now)
    }

    /// A handler asked for a person during the drive in progress (`drive.rs`): the session
    /// joins the queue, the operators see its recent messages, and its chain learns its
    /// place, answering into the same outbox.
    pub(super) fn hand_over(&mut self, key: SessionKey) {
        let link = self.out.actions().iter().find_map(|a| match a {
            Action::Handoff { link, .. } => Some(*link),
            _ => None,
        });
        let s = &self.sessions[key];
        let by = link
            .and_then(|l| s.cfg.handler_names.get(l))
            .cloned()
            .unwrap_or_default();
        if !s.cfg.takes_operator() {
            debug!(session = s.info.id, by = %by, "handoff asked, but no handler takes operator lines; ignored");
            return;
        }
        if s.desk.with != Desk::Bot {
            return;
        }
        let id = s.info.id;
        self.console.next_seq += 1;
        let seq = self.console.next_seq;
        let position = self.enqueue(seq, key);
        self.sessions[key].desk.with = Desk::Waiting {
            seq,
            told: position,
        };
        info!(
            event = "handoff",
            session = id,
            by = %by,
            position,
            operators = self.console.attached(),
            "handed to a person"
        );
        self.transcribe_event(key, "handoff", &Speaker::Bot, Some(by.clone()));
        let headline = match self.console.attached() {
            0 => format!(
                "handed to a person by {by}; number {position} in the queue (nobody was \
                 attached); /take {id} to answer"
            ),
            _ => format!(
                "handed to a person by {by}; number {position} in the queue; /take {id} to \
                 answer"
            ),
        };
        self.show_history(key, &headline, None);
        let s = &mut self.sessions[key];
        s.chain
            .handoff(Handoff::Waiting { position }, &s.info, &mut self.out);
    }

    /// Operator `op` takes a session: by `/take` (`explicit`: they are shown its recent
    /// messages), or by answering it.
    pub(super) fn take(&mut self, op: OpId, key: SessionKey, explicit: bool) {
        let name = self.op_name(op);
        let s = &self.sessions[key];
        let (prev, id) = (s.desk.with, s.info.id);
        let tag = self.console_tag(key);
        if let Desk::Taken { op: owner, .. } = prev
            && owner == op
        {
            if explicit {
                self.console
                    .tell(op, format!("you have [{tag}] already"), &mut self.effects);
            }
            return;
        }
        let seq = match prev {
            Desk::Waiting { seq, .. } | Desk::Taken { seq, .. } => seq,
            Desk::Bot => {
                self.console.next_seq += 1;
                self.console.next_seq
            }
        };
        self.dequeue(key);
        self.sessions[key].desk.with = Desk::Taken { op, seq };
        info!(event = "taken", session = id, operator = %name, explicit, "an operator took the session");
        self.transcribe_event(key, "taken", &Speaker::Operator(name.clone()), None);
        let line = format!("[{tag}] taken by {name}");
        self.console.broadcast(&line, Some(op), &mut self.effects);
        if explicit {
            self.set_focus(op, id);
            self.show_history(key, &format!("you have it now ({name})"), Some(op));
        }
        self.drive(key, Input::Handoff(Handoff::Taken));
    }

    /// Operator `op` gives a session back to its handlers.
    pub(super) fn give_back(&mut self, op: OpId, key: SessionKey) {
        let name = self.op_name(op);
        let s = &self.sessions[key];
        let (desk, id) = (s.desk.with, s.info.id);
        let tag = self.console_tag(key);
        match desk {
            Desk::Bot => {
                let line = format!("(!) #{id} is not with a person: nothing to release");
                self.console.tell(op, line, &mut self.effects);
                return;
            }
            Desk::Taken { op: owner, .. } if owner != op => {
                let line = format!(
                    "(!) #{id} is taken by {}; /take {id} first to release it",
                    self.op_name(owner)
                );
                self.console.tell(op, line, &mut self.effects);
                return;
            }
            Desk::Waiting { .. } | Desk::Taken { .. } => {}
        }
        self.dequeue(key);
        self.sessions[key].desk.with = Desk::Bot;
        info!(event = "released", session = id, operator = %name, "given back to the handlers");
        self.transcribe_event(key, "released", &Speaker::Operator(name.clone()), None);
        let line = format!("[{tag}] released by {name}: the handlers answer again");
        self.console.broadcast(&line, None, &mut self.effects);
        self.drive(key, Input::Handoff(Handoff::Released));
    }

    /// Operator `op` left: the sessions they had go back to the queue, in their old places.
    pub(super) fn requeue_taken_by(&mut self, op: OpId, name: &str) {
        let keys: Vec<(SessionKey, u64)> = self
            .sessions
            .iter()
            .filter_map(|(k, s)| match s.desk.with {
                Desk::Taken { op: o, seq } if o == op => Some((k, seq)),
                _ => None,
            })
            .collect();
        for (key, seq) in keys {
            let position = self.enqueue(seq, key);
            self.sessions[key].desk.with = Desk::Waiting {
                seq,
                told: position,
            };
            let line = format!(
                "[{}] {name} left: back in the queue, number {position}",
                self.console_tag(key)
            );
            self.console.broadcast(&line, None, &mut self.effects);
            self.drive(key, Input::Handoff(Handoff::Waiting { position }));
        }
    }

    /// Show a session's recent messages under a headline, to one operator or to all (or to
    /// the backlog when nobody is attached).
    fn show_history(&mut self, key: SessionKey, headline: &str, to: Option<OpId>) {
        let tag = self.console_tag(key);
        let mut lines = vec![format!("[{tag}] {headline}")];
        if let Some(h) = &self.sessions[key].desk.history {
            for (who, text) in &h.lines {
                lines.push(format!("[{tag}] | {who}> {}", escape(text.as_bytes())));
            }
        }
        for line in lines {
            match to {
                Some(op) => self.console.tell(op, line, &mut self.effects),
                None => self.console.broadcast(&line, None, &mut self.effects),
            }
        }
    }

    /// An operator's name as shown to others.
    pub(super) fn op_name(&self, op: OpId) -> Rc<str> {
        self.console
            .name_of(op)
            .map_or_else(|| Rc::from("an operator"), Rc::from)
    }

    /// Who has a session, for `/list`.
    pub(super) fn desk_label(&self, key: SessionKey) -> String {
        match self.sessions[key].desk.with {
            Desk::Bot => "bot".into(),
            Desk::Waiting { .. } => {
                format!("waiting {}", self.queue_position(key).map_or(0, |p| p))
            }
            Desk::Taken { op, .. } => format!("with {}", self.op_name(op)),
        }
    }
}
