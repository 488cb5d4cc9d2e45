//! The dialogue file: TOML read with positions kept, then checked into [`Dialogue`]s, so that
//! every mistake names the file, line and key.
//!
//! ```toml
//! clock = "2026-03-01T09:00:00Z"   # the virtual clock's start, UTC (the default)
//! peer = "127.0.0.1:40000"         # the customer's address (the default)
//!
//! [[dialogue]]
//! name = "asks the price"
//! greeting = "您好..."               # the greeting expected when the session opens
//!
//! [[dialogue.turn]]
//! say = "价格"                        # what the customer says
//! reply = "基础版 99 元/月..."        # the one reply expected
//!
//! [[dialogue.turn]]
//! say = "订单 12345"
//! pause = "300ms"                     # let this much time pass (a delayed rule answers)
//! matches = '订单 12345 已发货'         # a regex the reply (replies joined by "\n") matches
//! ```
//!
//! A turn's keys: `say`; `at` (the clock moves to this time first); `take = true` and
//! `release = true` (an operator takes the session from the bot, or gives it back, before
//! `say`); `pause`; and what to expect, at
//! most one of `reply`, `replies = [...]` (exactly these, in order), `matches`, `silent = true`
//! (no reply); plus `handoff` and `close` (whether the bot hands over to a person, or ends the
//! session, in this turn). A turn without an expectation checks nothing about the replies.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, SystemTime};

use regex::Regex;
use toml::Spanned;

use crate::config::line_col;

/// The clock's start when the file does not say.
pub(super) const DEFAULT_CLOCK: &str = "2026-03-01T09:00:00Z";
/// The customer's address when the file does not say.
pub(super) const DEFAULT_PEER: &str = "127.0.0.1:40000";

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    clock: Option<Spanned<String>>,
    peer: Option<Spanned<String>>,
    listener: Option<String>,
    #[serde(default)]
    dialogue: Vec<Spanned<DialogueSettings>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DialogueSettings {
    name: String,
    clock: Option<Spanned<String>>,
    peer: Option<Spanned<String>>,
    session: Option<u64>,
    greeting: Option<String>,
    #[serde(default)]
    turn: Vec<Spanned<TurnSettings>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnSettings {
    at: Option<Spanned<String>>,
    #[serde(default)]
    take: bool,
    #[serde(default)]
    release: bool,
    say: Option<String>,
    pause: Option<Spanned<String>>,
    reply: Option<String>,
    replies: Option<Vec<String>>,
    matches: Option<Spanned<String>>,
    #[serde(default)]
    silent: bool,
    handoff: Option<bool>,
    close: Option<bool>,
}

/// What a turn expects of the bot's replies.
#[derive(Debug, Clone)]
pub(super) enum Expect {
    /// Nothing is checked.
    Any,
    /// Exactly these replies, in order.
    Exactly(Vec<String>),
    /// Some reply; all of them joined by `\n` match.
    Matches(Regex),
    /// No reply.
    Silent,
}

/// One turn of a dialogue.
#[derive(Debug, Clone)]
pub(super) struct Turn {
    pub(super) line: usize,
    pub(super) at: Option<SystemTime>,
    pub(super) take: bool,
    pub(super) release: bool,
    pub(super) say: Option<String>,
    pub(super) pause: Duration,
    pub(super) expect: Expect,
    pub(super) handoff: Option<bool>,
    pub(super) close: Option<bool>,
}

/// One dialogue: a session from its opening.
#[derive(Debug, Clone)]
pub(super) struct Dialogue {
    pub(super) name: String,
    pub(super) line: usize,
    pub(super) clock: SystemTime,
    pub(super) peer: SocketAddr,
    pub(super) session: u64,
    pub(super) greeting: Option<String>,
    pub(super) turns: Vec<Turn>,
}

/// A dialogue file, checked.
#[derive(Debug)]
pub(super) struct Dialogues {
    pub(super) listener: String,
    pub(super) dialogues: Vec<Dialogue>,
}

/// Collects the errors of one file.
struct Errors<'a> {
    path: &'a Path,
    text: &'a str,
    list: Vec<String>,
}

impl Errors<'_> {
    fn at(&mut self, span: Option<Range<usize>>, message: impl std::fmt::Display) {
        match span {
            Some(s) => {
                let (line, col) = line_col(self.text, s.start);
                self.list
                    .push(format!("{}:{line}:{col}: {message}", self.path.display()));
            }
            None => self
                .list
                .push(format!("{}: {message}", self.path.display())),
        }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    fn time(&mut self, v: &Spanned<String>, key: &str) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(v.get_ref())
            .map_err(|e| {
                self.at(
                    Some(v.span()),
                    format!(
                        "`{key}`: {:?} is not a time ({e}); write e.g. \"2026-03-01T09:00:00Z\"",
                        v.get_ref()
                    ),
                )
            })
            .ok()
    }

    fn peer(&mut self, v: &Spanned<String>) -> Option<SocketAddr> {
        v.get_ref()
            .parse()
            .map_err(|_| {
                self.at(
                    Some(v.span()),
                    format!(
                        "`peer`: {:?} is not an ip:port address (write e.g. \"127.0.0.1:40000\")",
                        v.get_ref()
                    ),
                )
            })
            .ok()
    }
}

/// Read and check a dialogue file; every problem, with its file and line.
pub(super) fn load(path: &Path) -> Result<Dialogues, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "{}: cannot read the dialogues: {}",
            path.display(),
            crate::client::words(&e)
        )]
    })?;
    parse(&text, path)
}

/// Check dialogue text; `path` names it in errors.
pub(super) fn parse(text: &str, path: &Path) -> Result<Dialogues, Vec<String>> {
    let mut errors = Errors {
        path,
        text,
        list: Vec::new(),
    };
    let raw: FileSettings = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            errors.at(e.span(), e.message().trim_end());
            return Err(errors.list);
        }
    };
    let default_clock = match &raw.clock {
        Some(c) => errors.time(c, "clock"),
        None => humantime::parse_rfc3339(DEFAULT_CLOCK).ok(),
    };
    let default_peer = match &raw.peer {
        Some(p) => errors.peer(p),
        None => DEFAULT_PEER.parse().ok(),
    };
    if raw.dialogue.is_empty() {
        errors.at(Some(0..0), "no [[dialogue]] in the file: nothing to test");
    }
    let mut dialogues = Vec::new();
    for (i, d) in raw.dialogue.into_iter().enumerate() {
        let line = errors.line(&d.span());
        let span = d.span();
        let d = d.into_inner();
        let clock = match &d.clock {
            Some(c) => errors.time(c, "clock"),
            None => default_clock,
        };
        let peer = match &d.peer {
            Some(p) => errors.peer(p),
            None => default_peer,
        };
        if d.turn.is_empty() && d.greeting.is_none() {
            errors.at(
                Some(span),
                format!(
                    "dialogue {:?} has no [[dialogue.turn]] and no greeting to check",
                    d.name
                ),
            );
        }
        let mut turns = Vec::new();
        for t in d.turn {
            let span = t.span();
            let t = t.into_inner();
            if let Some(turn) = turn(&mut errors, span, t) {
                turns.push(turn);
            }
        }
        if let (Some(clock), Some(peer)) = (clock, peer) {
            dialogues.push(Dialogue {
                name: d.name,
                line,
                clock,
                peer,
                session: d.session.unwrap_or(i as u64 + 1),
                greeting: d.greeting,
                turns,
            });
        }
    }
    if errors.list.is_empty() {
        Ok(Dialogues {
            listener: raw.listener.unwrap_or_else(|| "test".into()),
            dialogues,
        })
    } else {
        Err(errors.list)
    }
}

fn turn(errors: &mut Errors<'_>, span: Range<usize>, t: TurnSettings) -> Option<Turn> {
    let line = errors.line(&span);
    let given = [
        t.reply.is_some(),
        t.replies.is_some(),
        t.matches.is_some(),
        t.silent,
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if given > 1 {
        errors.at(
            Some(span.clone()),
            "a turn expects one of `reply`, `replies`, `matches` or `silent`; keep one",
        );
        return None;
    }
    if t.say.is_none() && t.pause.is_none() && t.at.is_none() && !t.release && !t.take {
        errors.at(
            Some(span),
            "a turn needs `say` (or `pause`, `at`, `take` or `release` to let something \
             happen)",
        );
        return None;
    }
    if t.take && t.release {
        errors.at(
            Some(span),
            "a turn cannot both `take` and `release` the session",
        );
        return None;
    }
    let at = match &t.at {
        Some(a) => Some(errors.time(a, "at")?),
        None => None,
    };
    let pause = match &t.pause {
        None => Duration::ZERO,
        Some(p) => match humantime::parse_duration(p.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                errors.at(
                    Some(p.span()),
                    format!(
                        "`pause`: {:?} is not a duration ({e}); write e.g. \"300ms\"",
                        p.get_ref()
                    ),
                );
                return None;
            }
        },
    };
    let expect = if let Some(r) = t.reply {
        Expect::Exactly(vec![r])
    } else if let Some(list) = t.replies {
        Expect::Exactly(list)
    } else if let Some(m) = &t.matches {
        match Regex::new(m.get_ref()) {
            Ok(re) => Expect::Matches(re),
            Err(e) => {
                errors.at(Some(m.span()), format!("`matches`: bad regex: {e}"));
                return None;
            }
        }
    } else if t.silent {
        Expect::Silent
    } else {
        Expect::Any
    };
    Some(Turn {
        line,
        at,
        take: t.take,
        release: t.release,
        say: t.say,
        pause,
        expect,
        handoff: t.handoff,
        close: t.close,
    })
}
