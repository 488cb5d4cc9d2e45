//! One dialogue through the scripted-reply handler: a session opened on a virtual clock,
//! the customer's messages given to the bot, its timers fired as the clock moves, no sockets.

use std::sync::Arc;
use std::time::SystemTime;

use switchboard_handlers::{
    Action, Chain, HandlerFactory, Handoff, Outbox, Proto, Session, TimerId,
};

use super::file::{Dialogue, Expect, Turn};

/// A turn that did not go as written.
#[derive(Debug)]
pub(super) struct Failure {
    /// The line of the turn (or of the dialogue, for its greeting).
    pub(super) line: usize,
    /// What it was about: `greeting`, or `turn 3, say "价格"`.
    pub(super) what: String,
    pub(super) expected: String,
    pub(super) actual: String,
}

/// The bot's session and the world around it.
struct Run {
    chain: Chain,
    session: Session,
    out: Outbox,
    /// Pending timers: when, in what order they were started, link and id.
    timers: Vec<(SystemTime, u64, usize, TimerId)>,
    started: u64,
    /// What the bot sent during the turn in progress.
    sent: Vec<String>,
    handoff: bool,
    closed: bool,
}

impl Run {
    /// Take what the last call put in the outbox.
    fn take(&mut self) {
        for m in self.out.messages() {
            self.sent.push(String::from_utf8_lossy(m).into_owned());
        }
        let mut handoff = false;
        for a in self.out.take_actions() {
            match a {
                Action::Timer {
                    link, id, after, ..
                } => {
                    self.timers.retain(|t| (t.2, t.3) != (link, id));
                    self.started += 1;
                    self.timers
                        .push((self.session.now + after, self.started, link, id));
                }
                Action::CancelTimer { link, id, .. } => {
                    self.timers.retain(|t| (t.2, t.3) != (link, id));
                }
                Action::Close { .. } => {
                    self.closed = true;
                    self.timers.clear();
                }
                Action::Handoff { .. } => handoff = true,
                Action::Ahead { bytes, .. } => {
                    self.sent.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                _ => {}
            }
        }
        self.out.clear();
        if handoff && !self.handoff {
            self.handoff = true;
            // As the daemon would: the session waits for a person, the bot falls silent.
            self.chain.handoff(
                Handoff::Waiting { position: 1 },
                &self.session,
                &mut self.out,
            );
            self.take();
        }
    }

    /// Move the clock to `to`, firing the timers due by then in order.
    fn advance(&mut self, to: SystemTime) {
        loop {
            let next = self
                .timers
                .iter()
                .filter(|t| t.0 <= to)
                .min_by_key(|t| (t.0, t.1))
                .copied();
            let Some((due, started, link, id)) = next else {
                break;
            };
            self.timers.retain(|t| t.1 != started);
            self.session.now = self.session.now.max(due);
            self.chain.timer(link, id, &self.session, &mut self.out);
            self.take();
        }
        self.session.now = self.session.now.max(to);
    }
}

/// Run a dialogue; its failures, none when it went as written.
pub(super) fn run(factory: &Arc<dyn HandlerFactory>, listener: &str, d: &Dialogue) -> Vec<Failure> {
    let mut r = Run {
        chain: Chain::new(std::slice::from_ref(factory)),
        session: Session {
            id: d.session,
            listener: Arc::from(listener),
            proto: Proto::Tcp,
            peer: d.peer,
            now: d.clock,
            operators: 1,
            client_cert: None,
        },
        out: Outbox::new(),
        timers: Vec::new(),
        started: 0,
        sent: Vec::new(),
        handoff: false,
        closed: false,
    };
    let mut failures = Vec::new();
    r.chain.open(&r.session, &mut r.out);
    r.take();
    let greeting = std::mem::take(&mut r.sent);
    if let Some(expected) = &d.greeting
        && greeting != [expected.clone()]
    {
        failures.push(Failure {
            line: d.line,
            what: "greeting".into(),
            expected: shown(std::slice::from_ref(expected)),
            actual: shown(&greeting),
        });
    }
    for (i, turn) in d.turns.iter().enumerate() {
        if let Some(f) = step(&mut r, i + 1, turn) {
            failures.push(f);
        }
    }
    failures
}

/// One turn.
fn step(r: &mut Run, number: usize, t: &Turn) -> Option<Failure> {
    r.sent.clear();
    let closed_before = r.closed;
    if let Some(at) = t.at {
        r.advance(at);
    }
    let handoff_before = r.handoff;
    if t.take && !r.handoff {
        r.handoff = true;
        r.chain.handoff(Handoff::Taken, &r.session, &mut r.out);
        r.take();
    }
    if t.release && r.handoff {
        r.handoff = false;
        r.chain.handoff(Handoff::Released, &r.session, &mut r.out);
        r.take();
    }
    if let Some(say) = &t.say
        && !r.closed
    {
        r.chain.message(say.as_bytes(), &r.session, &mut r.out);
        r.take();
    }
    let end = r.session.now + t.pause;
    r.advance(end);
    let what = match &t.say {
        Some(say) => format!("turn {number}, say {say:?}"),
        None => format!("turn {number}"),
    };
    let fail = |expected: String, actual: String| Failure {
        line: t.line,
        what: what.clone(),
        expected,
        actual,
    };
    let replies_ok = match &t.expect {
        Expect::Any => true,
        Expect::Exactly(list) => r.sent == *list,
        Expect::Matches(re) => !r.sent.is_empty() && re.is_match(&r.sent.join("\n")),
        Expect::Silent => r.sent.is_empty(),
    };
    if !replies_ok {
        let expected = match &t.expect {
            Expect::Exactly(list) => shown(list),
            Expect::Matches(re) => format!("a reply matching /{}/", re.as_str()),
            Expect::Silent | Expect::Any => "(no reply)".into(),
        };
        let mut actual = shown(&r.sent);
        if let Some(due) = r.timers.iter().map(|t| t.0).min()
            && let Ok(wait) = due.duration_since(r.session.now)
        {
            actual.push_str(&format!(
                " (a delayed reply is due {}ms later: add `pause = \"{}ms\"`)",
                wait.as_millis(),
                (t.pause + wait).as_millis()
            ));
        }
        return Some(fail(expected, actual));
    }
    let handed = r.handoff && !handoff_before;
    if let Some(want) = t.handoff
        && want != handed
    {
        let say = |b: bool| {
            if b {
                "a handoff to a person"
            } else {
                "no handoff"
            }
        };
        return Some(fail(say(want).into(), say(handed).into()));
    }
    let closed = r.closed && !closed_before;
    if let Some(want) = t.close
        && want != closed
    {
        let say = |b: bool| {
            if b {
                "the session ends"
            } else {
                "the session goes on"
            }
        };
        return Some(fail(say(want).into(), say(closed).into()));
    }
    None
}

/// Replies as shown in a report: each quoted, `(no reply)` for none.
fn shown(list: &[String]) -> String {
    match list {
        [] => "(no reply)".into(),
        [one] => format!("{one:?}"),
        many => many
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
