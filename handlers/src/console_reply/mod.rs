//! `console-reply`: a human operator answers.
//!
//! Each message that reaches it is shown to the operators (the daemon's console escapes it and
//! tags it with the session); an operator's line for the session is sent back as the reply.
//! The bye word typed by the operator is sent and then ends the session, as the tutorial's
//! chat server does. While no operator is attached the daemon keeps the messages for the
//! first one to attach.
//!
//! It is also the person's side of a support desk. A session handed to a person (by a bot
//! rule, see [`Handoff`]) waits in a queue until an operator takes it; meanwhile each of its
//! messages waits for a person's answer for `wait_timeout`, and only then is told to wait
//! (`queue_reply` with its place in the queue, or `wait_reply`). With nobody attached it gets
//! `offline_reply` at once. So a customer gets one answer per message, from a person when one
//! answers in time.
//!
//! Settings (`[listener.console-reply]`), texts being templates (`{peer}` `{session}`
//! `{listener}` `{date}` `{time}`, UTC; `{{` and `}}` for braces):
//! - `unattended_reply` (default none): sent for each message while no operator is attached;
//! - `offline_reply` (default: `unattended_reply`): the same for a session handed to a person
//!   (also sent once at the handoff itself when nobody is attached);
//! - `queue_reply` (default none): to a message of a session waiting in the queue that no
//!   operator answered within `wait_timeout`, and once at the handoff when it did not
//!   hold a message of its own; `{position}` (1 is next) and `{ahead}` too;
//! - `wait_reply` (default none): to a message no operator answered within `wait_timeout`
//!   otherwise (an operator has the session, or it was never handed over);
//! - `wait_timeout` (default `"30s"`);
//! - `history` (default 10): how many recent messages of a session operators are shown when it
//!   is handed to them or taken;
//! - `canned` (default none): replies operators send with `/c NAME`, e.g.
//!   `canned = { hours = "Open 9:00-18:00", refund = "Refunds take 3 days, {peer}" }`;
//! - `bye` (default `"bye"`): the word that ends the session when the operator types it;
//! - `close_after_reply` (default `false`): end the session after the operator's first reply
//!   (the tutorial's one-round UDP receiver).

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use crate::registry::{BuildEnv, BuildError};
use crate::settings::Settings;
use crate::template::{Ctx, Names, Template};
use crate::text::{lossy, trim_line_end};
use crate::{Flow, Handler, HandlerFactory, Handoff, Outbox, Scope, Session, TimerId};

const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HISTORY: usize = 10;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ConsoleSettings {
    unattended_reply: Option<Spanned<String>>,
    offline_reply: Option<Spanned<String>>,
    queue_reply: Option<Spanned<String>>,
    wait_reply: Option<Spanned<String>>,
    wait_timeout: Option<Spanned<String>>,
    history: usize,
    canned: BTreeMap<String, Spanned<String>>,
    bye: String,
    close_after_reply: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            unattended_reply: None,
            offline_reply: None,
            queue_reply: None,
            wait_reply: None,
            wait_timeout: None,
            history: DEFAULT_HISTORY,
            canned: BTreeMap::new(),
            bye: "bye".into(),
            close_after_reply: false,
        }
    }
}

/// The validated settings, shared by every session of a listener.
#[derive(Debug)]
struct Desk {
    unattended: Option<Template>,
    offline: Option<Template>,
    queue: Option<Template>,
    wait: Option<Template>,
    wait_timeout: Duration,
    history: usize,
    /// Name, text as written, template; by name.
    canned: Vec<(String, String, Template)>,
    bye: String,
    close_after_reply: bool,
}

impl Desk {
    /// The text for a message that no operator can answer now.
    fn offline(&self, handed: bool) -> Option<&Template> {
        if handed {
            self.offline.as_ref().or(self.unattended.as_ref())
        } else {
            self.unattended.as_ref()
        }
    }

    /// Whether any text may tell a waiting customer something.
    fn tells_waiting(&self) -> bool {
        self.unattended.is_some()
            || self.offline.is_some()
            || self.queue.is_some()
            || self.wait.is_some()
    }
}

/// The `console-reply` factory.
#[derive(Debug)]
pub struct ConsoleReply(Arc<Desk>);

fn template(
    key: &str,
    value: Option<&Spanned<String>>,
    names: Names<'_>,
) -> Result<Option<Template>, BuildError> {
    value
        .map(|v| {
            Template::parse(v.get_ref(), names)
                .map_err(|e| BuildError::new(format!("key `{key}`: {e}"), Some(v.span())))
        })
        .transpose()
}

pub(crate) fn build(
    settings: Settings<'_>,
    _env: &dyn BuildEnv,
) -> Result<Arc<dyn HandlerFactory>, BuildError> {
    let span = settings.span();
    let s: ConsoleSettings = settings.parse()?;
    if s.bye.trim().is_empty() {
        return Err(BuildError::new(
            "key `bye`: the bye word must not be empty",
            span,
        ));
    }
    let wait_timeout = match &s.wait_timeout {
        None => DEFAULT_WAIT_TIMEOUT,
        Some(w) => humantime::parse_duration(w.get_ref()).map_err(|e| {
            BuildError::new(
                format!(
                    "key `wait_timeout`: {:?} is not a duration ({e}); write e.g. \"30s\" or \
                     \"2m\"",
                    w.get_ref()
                ),
                Some(w.span()),
            )
        })?,
    };
    let mut canned = Vec::with_capacity(s.canned.len());
    for (name, text) in &s.canned {
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(BuildError::new(
                format!(
                    "key `canned`: the name {name:?} cannot be typed as `/c NAME`: use one word"
                ),
                Some(text.span()),
            ));
        }
        let t = template(&format!("canned.{name}"), Some(text), Names::NoMessage)?
            .expect("a text was given");
        canned.push((name.clone(), text.get_ref().clone(), t));
    }
    let desk = Desk {
        unattended: template(
            "unattended_reply",
            s.unattended_reply.as_ref(),
            Names::NoMessage,
        )?,
        offline: template("offline_reply", s.offline_reply.as_ref(), Names::NoMessage)?,
        queue: template("queue_reply", s.queue_reply.as_ref(), Names::Queue)?,
        wait: template("wait_reply", s.wait_reply.as_ref(), Names::NoMessage)?,
        wait_timeout,
        history: s.history,
        canned,
        bye: s.bye,
        close_after_reply: s.close_after_reply,
    };
    Ok(Arc::new(ConsoleReply(Arc::new(desk))))
}

impl HandlerFactory for ConsoleReply {
    fn name(&self) -> &'static str {
        "console-reply"
    }

    fn session(&self) -> Box<dyn Handler> {
        Box::new(ConsoleHandler {
            desk: self.0.clone(),
            handoff: None,
            waiting: VecDeque::new(),
            last_timer: 0,
            offline_told: false,
            buf: Vec::new(),
        })
    }

    fn takes_operator(&self) -> bool {
        true
    }

    fn history(&self) -> usize {
        self.0.history
    }

    fn canned(&self) -> Vec<(String, String)> {
        self.0
            .canned
            .iter()
            .map(|(name, text, _)| (name.clone(), text.clone()))
            .collect()
    }

    fn render_canned(&self, name: &str, s: &Session) -> Option<String> {
        let (_, _, t) = self.0.canned.iter().find(|(n, _, _)| n == name)?;
        let mut buf = Vec::new();
        t.render(&Ctx::plain(s), &mut buf);
        Some(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// One session's link.
#[derive(Debug)]
struct ConsoleHandler {
    desk: Arc<Desk>,
    /// Where the session stands with the people at the console; `None` while it was never
    /// handed over or was given back.
    handoff: Option<Handoff>,
    /// Messages waiting for a person's answer, oldest first, each with the timer that tells
    /// the customer to wait.
    waiting: VecDeque<TimerId>,
    last_timer: TimerId,
    /// The customer was told that nobody is there, since the handoff.
    offline_told: bool,
    buf: Vec<u8>,
}

impl ConsoleHandler {
    fn send(&mut self, t: &Template, cx: &Ctx<'_>, out: &mut Outbox) {
        self.buf.clear();
        t.render(cx, &mut self.buf);
        out.send(&self.buf);
    }

    fn position(&self) -> usize {
        match self.handoff {
            Some(Handoff::Waiting { position }) => position,
            _ => 0,
        }
    }
}

impl Handler for ConsoleHandler {
    fn on_message(&mut self, msg: &[u8], s: &Session, out: &mut Outbox) -> Flow {
        out.to_operator(lossy(trim_line_end(msg)));
        // A bot earlier in the chain may have handed the session over for this very message.
        let handed = self.handoff.is_some() || out.handoff_asked();
        let desk = self.desk.clone();
        if s.operators == 0 {
            if let Some(t) = desk.offline(handed) {
                self.send(t, &Ctx::plain(s), out);
                self.offline_told |= handed;
            }
        } else if desk.tells_waiting() {
            self.last_timer += 1;
            // A reminder: a session that ends does not wait for it.
            out.soft_timer(self.last_timer, desk.wait_timeout);
            self.waiting.push_back(self.last_timer);
        }
        Flow::Handled
    }

    fn on_operator(&mut self, line: &str, _s: &Session, out: &mut Outbox) -> Flow {
        out.send(line.as_bytes());
        if let Some(t) = self.waiting.pop_front() {
            out.cancel_timer(t);
        }
        if line.trim() == self.desk.bye || self.desk.close_after_reply {
            out.close(Scope::Session);
        }
        Flow::Handled
    }

    fn on_timer(&mut self, timer: TimerId, s: &Session, out: &mut Outbox) {
        let Some(i) = self.waiting.iter().position(|&t| t == timer) else {
            return;
        };
        self.waiting.remove(i);
        let desk = self.desk.clone();
        let handed = self.handoff.is_some();
        let text = if s.operators == 0 {
            desk.offline(handed)
        } else if matches!(self.handoff, Some(Handoff::Waiting { .. })) {
            desk.queue.as_ref().or(desk.wait.as_ref())
        } else {
            desk.wait.as_ref()
        };
        if let Some(t) = text {
            let cx = Ctx {
                position: self.position(),
                ..Ctx::plain(s)
            };
            self.send(t, &cx, out);
        }
    }

    fn on_handoff(&mut self, to: Handoff, s: &Session, out: &mut Outbox) {
        let first = self.handoff.is_none();
        self.handoff = (to != Handoff::Released).then_some(to);
        let desk = self.desk.clone();
        match to {
            Handoff::Released => {
                self.offline_told = false;
                for t in self.waiting.drain(..) {
                    out.cancel_timer(t);
                }
            }
            Handoff::Waiting { position } if first => {
                if s.operators == 0 {
                    if !self.offline_told
                        && let Some(t) = desk.offline(true)
                    {
                        self.send(t, &Ctx::plain(s), out);
                        self.offline_told = true;
                    }
                } else if self.waiting.is_empty()
                    && let Some(t) = &desk.queue
                {
                    // The handoff came with a bot's answer (no message waits here): tell the
                    // customer its place with it.
                    let cx = Ctx {
                        position,
                        ..Ctx::plain(s)
                    };
                    self.send(t, &cx, out);
                }
            }
            Handoff::Waiting { .. } | Handoff::Taken => {}
        }
    }
}
