//! `scripted-reply`: a rule-based auto-reply bot (a support bot).
//!
//! The script is TOML, written inline in the handler's settings table or kept in a file that
//! the table names with `script = "scripts/support-bot.toml"` (not both):
//!
//! ```toml
//! greeting = "您好，这里是客服，请问有什么可以帮您？"   # sent when a session opens
//! fallback = "抱歉，我没听懂。输入 help 查看可以问的问题。" # when no rule matches
//! ignore_case = true                                       # default for every rule
//!
//! [[rule]]
//! match = "regex"            # "exact" | "prefix" | "contains" | "regex"
//! pattern = '^(?:order|订单)\s*(?P<id>\d+)$'
//! reply = "订单 {id} 已发货。"
//! delay = "800ms"
//! ```
//!
//! Top-level keys: `greeting`, `fallback` (without it, an unmatched message is passed to the
//! next handler of the chain), `ignore_case` (default `false`), `handoff_after_unmatched`
//! (default: never), `[[rule]]` tables. A script needs at least one of `greeting`, `fallback`
//! or a rule.
//!
//! Rule keys:
//! - `match` and `pattern`: `exact` (the whole message), `prefix`, `contains`, or `regex`
//!   (matches anywhere: anchor it with `^...$` for a whole message);
//! - `ignore_case`: overrides the script's default for this rule;
//! - `reply = "..."`, or `replies = [...]` with `pick = "rotate"` (the default: the next one
//!   each time, per session), `"random"` or `"all"` (each as its own message);
//!   `reply = ""` sends nothing (useful with `close`);
//! - `state`: the rule applies only in this dialogue state (default: in any state);
//! - `next`: the state after the rule fires;
//! - `close = true`: reply, then end the session;
//! - `handoff = true`: reply, then hand the session to a person (`console-reply`, which must
//!   follow in the chain);
//! - `delay = "800ms"`: reply after a pause (a timer; the session goes on meanwhile).
//!
//! Templates (greeting, fallback, replies): `{message}` `{peer}` `{session}` `{listener}`
//! `{time}` `{date}` (UTC, `HH:MM:SS` and `YYYY-MM-DD`, from the time of the event), and in
//! regex rules the groups `{0}` (the whole match), `{1}`..`{9}` and `{name}`; `{{` and `}}` are
//! literal braces. A group that did not take part in the match renders as nothing.
//!
//! Semantics: a message is decoded as UTF-8 (invalid bytes replaced) with its trailing
//! `\r`/`\n` trimmed, and the rules are tried in order: the first that applies in the session's
//! state and matches wins. Sessions start in state `start`. Choices made by `pick = "random"`
//! come from a small generator seeded with the session number, so a session's answers are
//! reproducible and no clock is read.
//!
//! Order of replies: a delayed reply is rendered when its message arrives and holds back the
//! replies of later messages until it has gone out, so a peer always gets answers in the order
//! it asked. (A peer that sends more than 64 messages meanwhile gets the waiting answers at
//! once, still in order: the queue stays bounded.) Once a rule with `close` fired, later
//! messages get no answer. `next` takes effect at once, delay or not.
//!
//! Handing over to a person: a rule with `handoff = true`, or `handoff_after_unmatched = N` (the
//! Nth message in a row that no rule matched is passed on to the next handler instead of
//! getting the fallback), asks for a person ([`Outbox::handoff`]). From then until an operator
//! gives the session back, the bot is silent: every message is passed on. Replies it decided
//! before (a delayed one) still go out.
//!
//! Greeting and UDP: a TCP session gets the greeting as soon as it opens. A UDP session opens
//! with the peer's first datagram, and the tutorial's UDP client reads exactly one datagram per
//! message it sends; a greeting of its own would put that client one answer behind for the rest
//! of the dialogue. So on UDP the greeting rides in the same datagram as the first answer the
//! peer gets, whichever handler gives it, as `greeting + "\n" + answer`
//! ([`Outbox::send_ahead`]).
//!
//! Script errors name the rule (`rule 3: bad regex in `pattern`: ...`) and carry the place of
//! the offending value, in the config or in the script file: unknown keys, bad regexes,
//! unknown template names, `reply` and `replies` both or neither, a `next` state no rule has as
//! its `state` (a dead end), a `state` no rule leads to, a bad `delay`, an empty script.

#[cfg(test)]
mod handoff_tests;
mod matcher;
mod script;
#[cfg(test)]
mod script_tests;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use regex::CaptureLocations;

use self::matcher::Probe;
use self::script::{Pick, Rule, START, Script, StateId};
use crate::rand::SplitMix64;
use crate::registry::{BuildEnv, BuildError};
use crate::settings::Settings;
use crate::template::{Ctx, Template};
use crate::text::{escape, trim_line_end};
use crate::{Flow, Handler, HandlerFactory, Handoff, Outbox, Proto, Scope, Session, TimerId};

/// The `scripted-reply` factory: the compiled script, shared by every session.
#[derive(Debug)]
pub struct ScriptedReply(Arc<Script>);

pub(crate) fn build(
    settings: Settings<'_>,
    env: &dyn BuildEnv,
) -> Result<Arc<dyn HandlerFactory>, BuildError> {
    let script = script::load(settings, env)?;
    Ok(Arc::new(ScriptedReply(Arc::new(script))))
}

impl HandlerFactory for ScriptedReply {
    fn name(&self) -> &'static str {
        "scripted-reply"
    }

    fn hands_off(&self) -> bool {
        self.0.hands_off()
    }

    fn session(&self) -> Box<dyn Handler> {
        Box::new(Bot {
            script: self.0.clone(),
            dialogue: Dialogue {
                state: START,
                ..Dialogue::default()
            },
        })
    }
}

/// One session's bot: the shared script and the session's own state.
#[derive(Debug)]
struct Bot {
    script: Arc<Script>,
    dialogue: Dialogue,
}

/// What a session remembers. Buffers are made on first use and reused, so an answer costs no
/// allocation once a session has warmed up (except a delayed reply, and the result of the
/// regex set when the search reaches a regex rule).
#[derive(Debug, Default)]
struct Dialogue {
    state: StateId,
    /// A rule with `close` fired.
    closing: bool,
    /// A person has the session: the rules do not answer.
    silent: bool,
    /// Messages in a row that no rule matched.
    unmatched: u32,
    /// Per rotating rule: how many times it fired.
    rotation: Vec<u32>,
    /// The `pick = "random"` generator, seeded on first use.
    rng: Option<SplitMix64>,
    last_timer: TimerId,
    /// Replies waiting for their delay, or behind one that is, in the order they were asked.
    queue: VecDeque<Pending>,
    probe: Probe,
    /// Per rule: where its regex groups were found (regex rules whose replies use groups).
    groups: Vec<Option<CaptureLocations>>,
    buf: Vec<u8>,
}

/// How many answers may wait behind a delay. A peer that keeps talking while a delayed reply
/// is pending gets its answers early, still in order, rather than growing the queue.
const MAX_QUEUED: usize = 64;

/// Replies that cannot go out yet.
#[derive(Debug)]
struct Pending {
    /// The timer that releases them; `None` once it fired (or when they only wait for an
    /// earlier entry).
    timer: Option<TimerId>,
    messages: Vec<Vec<u8>>,
    close: bool,
}

/// What to send for one answer.
struct Answer<'a> {
    replies: &'a [Template],
    delay: Option<Duration>,
    close: bool,
}

impl Handler for Bot {
    fn on_open(&mut self, s: &Session, out: &mut Outbox) {
        let Some(greeting) = self.script.greeting.as_ref().filter(|g| !g.is_empty()) else {
            return;
        };
        let d = &mut self.dialogue;
        d.buf.clear();
        greeting.render(&Ctx::plain(s), &mut d.buf);
        match s.proto {
            Proto::Udp => out.send_ahead(&d.buf),
            Proto::Tcp => out.send(&d.buf),
        }
    }

    fn on_message(&mut self, msg: &[u8], s: &Session, out: &mut Outbox) -> Flow {
        let script = &*self.script;
        let d = &mut self.dialogue;
        if d.closing {
            return Flow::Handled;
        }
        if d.silent {
            return Flow::Pass;
        }
        let line = trim_line_end(msg);
        let text = match std::str::from_utf8(line) {
            Ok(t) => Cow::Borrowed(t),
            Err(_) => {
                tracing::debug!(
                    bytes = %escape(line),
                    "scripted-reply: message is not valid UTF-8; matching it with the invalid \
                     bytes replaced"
                );
                String::from_utf8_lossy(line)
            }
        };
        d.probe.reset();
        let state = d.state;
        let rule = script.rules.iter().find(|r| {
            r.state.is_none_or(|st| st == state)
                && r.pattern.is_match(&text, &script.regexes, &mut d.probe)
        });
        if let Some(rule) = rule {
            d.unmatched = 0;
            d.fire(script, rule, &text, s, out);
            if rule.handoff {
                tracing::debug!(
                    rule = rule.number,
                    "scripted-reply: handing over to a person"
                );
                out.handoff();
            }
            return Flow::Handled;
        }
        d.unmatched = d.unmatched.saturating_add(1);
        if script
            .handoff_after_unmatched
            .is_some_and(|n| d.unmatched >= n)
        {
            tracing::debug!(
                unmatched = d.unmatched,
                "scripted-reply: handing over to a person; message passed on"
            );
            d.unmatched = 0;
            out.handoff();
            return Flow::Pass;
        }
        if let Some(fallback) = &script.fallback {
            tracing::debug!(state = script.state_name(state), "scripted-reply: fallback");
            let answer = Answer {
                replies: std::slice::from_ref(fallback),
                delay: None,
                close: false,
            };
            d.answer(
                &answer,
                &Ctx {
                    message: &text,
                    ..Ctx::plain(s)
                },
                out,
            );
            return Flow::Handled;
        }
        tracing::debug!(
            state = script.state_name(state),
            "scripted-reply: no rule, passed on"
        );
        Flow::Pass
    }

    fn on_handoff(&mut self, to: Handoff, _s: &Session, _out: &mut Outbox) {
        let d = &mut self.dialogue;
        d.silent = to != Handoff::Released;
        d.unmatched = 0;
    }

    fn on_timer(&mut self, timer: TimerId, _s: &Session, out: &mut Outbox) {
        let d = &mut self.dialogue;
        if let Some(p) = d.queue.iter_mut().find(|p| p.timer == Some(timer)) {
            p.timer = None;
        }
        d.flush(out, false);
    }
}

impl Dialogue {
    /// `rule` matched `text`: move to its next state and answer.
    fn fire(&mut self, script: &Script, rule: &Rule, text: &str, s: &Session, out: &mut Outbox) {
        tracing::debug!(
            rule = rule.number,
            state = script.state_name(self.state),
            next = rule.next.map(|n| script.state_name(n)),
            "scripted-reply: rule matched"
        );
        if let Some(next) = rule.next {
            self.state = next;
        }
        if rule.close {
            self.closing = true;
        }
        let n = rule.replies.len();
        let replies = match rule.pick {
            Pick::One | Pick::All => &rule.replies[..],
            Pick::Rotate(slot) => {
                if self.rotation.len() < script.rotating {
                    self.rotation.resize(script.rotating, 0);
                }
                let count = &mut self.rotation[slot];
                let i = *count as usize % n;
                *count = count.wrapping_add(1);
                &rule.replies[i..=i]
            }
            Pick::Random => {
                let i = self.random(s.id, n);
                &rule.replies[i..=i]
            }
        };
        let answer = Answer {
            replies,
            delay: rule.delay,
            close: rule.close,
        };
        if !rule.uses_groups {
            let cx = Ctx {
                message: text,
                ..Ctx::plain(s)
            };
            self.answer(&answer, &cx, out);
            return;
        }
        // Taken out for the call so that the groups can be read while the buffers are written.
        let i = rule.number - 1;
        if self.groups.len() <= i {
            self.groups.resize_with(i + 1, || None);
        }
        let mut locs = self.groups[i].take();
        let cx = Ctx {
            message: text,
            groups: rule.pattern.groups(text, &mut locs),
            ..Ctx::plain(s)
        };
        self.answer(&answer, &cx, out);
        self.groups[i] = locs;
    }

    /// Render and send (or queue) an answer.
    fn answer(&mut self, answer: &Answer<'_>, cx: &Ctx<'_>, out: &mut Outbox) {
        let queued = answer.delay.is_some() || !self.queue.is_empty();
        let mut pending = Vec::new();
        for reply in answer.replies {
            if reply.is_empty() {
                continue;
            } else if let (false, Some(text)) = (queued, reply.literal()) {
                out.send(text);
                continue;
            } else {
                self.buf.clear();
                reply.render(cx, &mut self.buf);
            }
            if queued {
                pending.push(self.buf.clone());
            } else {
                out.send(&self.buf);
            }
        }
        if !queued {
            if answer.close {
                out.close(Scope::Session);
            }
            return;
        }
        let timer = answer.delay.map(|after| {
            self.last_timer += 1;
            out.timer(self.last_timer, after);
            self.last_timer
        });
        self.queue.push_back(Pending {
            timer,
            messages: pending,
            close: answer.close,
        });
        if self.queue.len() > MAX_QUEUED {
            tracing::debug!("scripted-reply: too many replies waiting; sending them now");
            self.flush(out, true);
        }
    }

    /// Send the waiting replies from the front of the queue: those whose timer fired, or all
    /// of them.
    fn flush(&mut self, out: &mut Outbox, all: bool) {
        while self.queue.front().is_some_and(|p| all || p.timer.is_none()) {
            let Some(p) = self.queue.pop_front() else {
                break;
            };
            for m in &p.messages {
                out.send(m);
            }
            if p.close {
                out.close(Scope::Session);
                self.queue.clear();
            }
        }
    }

    /// A number below `n` from the session's generator (seeded with the session number:
    /// reproducible, and no clock).
    fn random(&mut self, seed: u64, n: usize) -> usize {
        self.rng.get_or_insert(SplitMix64::new(seed)).below(n)
    }
}
