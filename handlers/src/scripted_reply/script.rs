//! The script: its TOML form, and the checks that turn it into compiled rules.
//!
//! Parse, then validate: serde reads the raw tables (`deny_unknown_fields`, spans kept), then
//! [`compile`] checks each rule in order and the states across rules, so that every error
//! names the rule and points at the offending value.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::matcher::{MatchKind, Pattern, RegexRules};
use crate::registry::{BuildEnv, BuildError, SourceFile};
use crate::settings::Settings;
use crate::template::{Names, Template};

/// A dialogue state, as an index into [`Script::states`].
pub(super) type StateId = usize;

/// The state every session starts in.
pub(super) const START: StateId = 0;
const START_NAME: &str = "start";

/// The `[listener.scripted-reply]` table, or a script file (which must not have `script`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptSettings {
    script: Option<Spanned<String>>,
    greeting: Option<Spanned<String>>,
    fallback: Option<Spanned<String>>,
    ignore_case: Option<Spanned<bool>>,
    handoff_after_unmatched: Option<Spanned<u32>>,
    #[serde(default)]
    rule: Vec<Spanned<RuleSettings>>,
}

/// One `[[rule]]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSettings {
    #[serde(rename = "match")]
    kind: MatchKind,
    pattern: Spanned<String>,
    ignore_case: Option<bool>,
    reply: Option<Spanned<String>>,
    replies: Option<Spanned<Vec<Spanned<String>>>>,
    pick: Option<Spanned<PickSetting>>,
    state: Option<Spanned<String>>,
    next: Option<Spanned<String>>,
    #[serde(default)]
    close: bool,
    #[serde(default)]
    handoff: bool,
    delay: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum PickSetting {
    Rotate,
    Random,
    All,
}

/// Which of a rule's replies are sent when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pick {
    /// The rule has one reply.
    One,
    /// The next one each time, per session; the number is the session's counter for the rule.
    Rotate(usize),
    /// One chosen by the session's generator.
    Random,
    /// Every reply, each as its own message.
    All,
}

/// A compiled rule.
#[derive(Debug)]
pub(super) struct Rule {
    /// 1-based, as users count `[[rule]]` tables.
    pub(super) number: usize,
    pub(super) pattern: Pattern,
    /// Only in this state; any state when `None`.
    pub(super) state: Option<StateId>,
    pub(super) next: Option<StateId>,
    pub(super) replies: Vec<Template>,
    pub(super) pick: Pick,
    /// Whether some reply uses regex groups, so they must be found when the rule fires.
    pub(super) uses_groups: bool,
    pub(super) delay: Option<Duration>,
    pub(super) close: bool,
    /// Hand the session to a person after answering.
    pub(super) handoff: bool,
}

/// A compiled script, shared by every session of a listener.
#[derive(Debug)]
pub(super) struct Script {
    pub(super) greeting: Option<Template>,
    pub(super) fallback: Option<Template>,
    pub(super) rules: Vec<Rule>,
    /// The rules' regexes, for testing them together.
    pub(super) regexes: RegexRules,
    /// State names; [`START`] is `"start"`.
    pub(super) states: Vec<String>,
    /// How many rules rotate their replies (each session keeps a counter per such rule).
    pub(super) rotating: usize,
    /// Hand the session to a person after this many messages in a row that no rule matched.
    pub(super) handoff_after_unmatched: Option<u32>,
}

impl Script {
    /// Whether the script may hand sessions to a person.
    pub(super) fn hands_off(&self) -> bool {
        self.handoff_after_unmatched.is_some() || self.rules.iter().any(|r| r.handoff)
    }
}

impl Script {
    /// The name of a state, for logs.
    pub(super) fn state_name(&self, id: StateId) -> &str {
        &self.states[id]
    }
}

/// Read the script from the handler's settings, or from the file they name.
pub(super) fn load(settings: Settings<'_>, env: &dyn BuildEnv) -> Result<Script, BuildError> {
    let span = settings.span();
    let raw: ScriptSettings = settings.parse()?;
    let Some(name) = &raw.script else {
        return compile(raw, span);
    };
    if let Some((key, at)) = raw.inline_key() {
        return Err(BuildError::new(
            format!(
                "key `{key}`: the script is in `script = {:?}`, so its keys belong in that file, \
                 not here",
                name.get_ref()
            ),
            Some(at),
        ));
    }
    let file = env
        .read_file(name.get_ref())
        .map_err(|e| BuildError::new(format!("key `script`: {e}"), Some(name.span())))?;
    load_file(&file)
}

fn load_file(file: &Arc<SourceFile>) -> Result<Script, BuildError> {
    let in_file = |e: BuildError| e.in_file(file);
    let settings = Settings::parse_str(&file.text).map_err(in_file)?;
    let span = settings.span();
    let raw: ScriptSettings = settings.parse().map_err(in_file)?;
    if let Some(inner) = &raw.script {
        return Err(in_file(BuildError::new(
            "key `script`: a script file cannot name another script",
            Some(inner.span()),
        )));
    }
    compile(raw, span).map_err(in_file)
}

impl ScriptSettings {
    /// The first script key given besides `script`, with its place.
    fn inline_key(&self) -> Option<(&'static str, Range<usize>)> {
        if let Some(g) = &self.greeting {
            return Some(("greeting", g.span()));
        }
        if let Some(f) = &self.fallback {
            return Some(("fallback", f.span()));
        }
        if let Some(i) = &self.ignore_case {
            return Some(("ignore_case", i.span()));
        }
        if let Some(h) = &self.handoff_after_unmatched {
            return Some(("handoff_after_unmatched", h.span()));
        }
        self.rule.first().map(|r| ("rule", r.span()))
    }
}

fn rule_error(number: usize, message: impl std::fmt::Display, span: Range<usize>) -> BuildError {
    BuildError::new(format!("rule {number}: {message}"), Some(span))
}

/// Validate the raw script and compile its patterns and templates.
fn compile(raw: ScriptSettings, span: Option<Range<usize>>) -> Result<Script, BuildError> {
    if raw.rule.is_empty() && raw.greeting.is_none() && raw.fallback.is_none() {
        return Err(BuildError::new(
            "empty script: it needs `[[rule]]` tables, a `fallback` or a `greeting` (inline, or \
             in a file named by `script = \"...\"`)",
            span,
        ));
    }
    let ignore_case = raw.ignore_case.as_ref().is_some_and(|i| *i.get_ref());
    let handoff_after_unmatched = match &raw.handoff_after_unmatched {
        Some(n) if *n.get_ref() == 0 => {
            return Err(BuildError::new(
                "key `handoff_after_unmatched`: 0 would hand over before any message; write 1 \
                 or more (or leave it out)",
                Some(n.span()),
            ));
        }
        n => n.as_ref().map(|n| *n.get_ref()),
    };
    let top = |key: &str, value: &Spanned<String>, names| {
        Template::parse(value.get_ref(), names)
            .map_err(|e| BuildError::new(format!("key `{key}`: {e}"), Some(value.span())))
    };
    let greeting = raw
        .greeting
        .as_ref()
        .map(|g| top("greeting", g, Names::Greeting))
        .transpose()?;
    let fallback = raw
        .fallback
        .as_ref()
        .map(|f| top("fallback", f, Names::Plain))
        .transpose()?;

    let mut states = vec![START_NAME.to_string()];
    let mut intern = |name: &str| match states.iter().position(|s| s == name) {
        Some(id) => id,
        None => {
            states.push(name.to_string());
            states.len() - 1
        }
    };
    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut keys = Vec::with_capacity(raw.rule.len());
    let mut rotating = 0;
    for (i, spanned) in raw.rule.into_iter().enumerate() {
        let number = i + 1;
        let rule_span = spanned.span();
        let r = spanned.into_inner();
        let fold = r.ignore_case.unwrap_or(ignore_case);
        let pattern = Pattern::new(r.kind, r.pattern.get_ref(), fold).map_err(|e| {
            rule_error(
                number,
                format_args!("bad regex in `pattern`: {e}"),
                r.pattern.span(),
            )
        })?;
        let names = pattern.regex().map_or(Names::Plain, Names::Regex);

        let (texts, key) = match (r.reply, r.replies) {
            (Some(_), Some(_)) => {
                return Err(rule_error(
                    number,
                    "has both `reply` and `replies`; keep one",
                    rule_span,
                ));
            }
            (None, None) => {
                return Err(rule_error(number, "needs `reply` or `replies`", rule_span));
            }
            (Some(one), None) => {
                if let Some(p) = &r.pick {
                    return Err(rule_error(
                        number,
                        "`pick` chooses among `replies`, but this rule has a single `reply`",
                        p.span(),
                    ));
                }
                (vec![one], "reply")
            }
            (None, Some(list)) => {
                if list.get_ref().is_empty() {
                    return Err(rule_error(number, "`replies` is empty", list.span()));
                }
                (list.into_inner(), "replies")
            }
        };
        let replies = texts
            .iter()
            .map(|t| {
                Template::parse(t.get_ref(), names)
                    .map_err(|e| rule_error(number, format_args!("`{key}`: {e}"), t.span()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pick = match r.pick.map(Spanned::into_inner) {
            _ if replies.len() == 1 => Pick::One,
            None | Some(PickSetting::Rotate) => {
                rotating += 1;
                Pick::Rotate(rotating - 1)
            }
            Some(PickSetting::Random) => Pick::Random,
            Some(PickSetting::All) => Pick::All,
        };

        let delay = match &r.delay {
            None => None,
            Some(d) => match humantime::parse_duration(d.get_ref()) {
                Ok(d) if d.is_zero() => None,
                Ok(d) => Some(d),
                Err(e) => {
                    return Err(rule_error(
                        number,
                        format_args!(
                            "bad `delay` {:?}: {e} (write e.g. \"800ms\" or \"2s\")",
                            d.get_ref()
                        ),
                        d.span(),
                    ));
                }
            },
        };
        if r.handoff && r.close {
            return Err(rule_error(
                number,
                "has both `close` and `handoff`: a session that ends cannot wait for a person; \
                 keep one",
                rule_span,
            ));
        }
        let state = r.state.as_ref().map(|s| intern(s.get_ref()));
        let next = r.next.as_ref().map(|n| intern(n.get_ref()));
        rules.push(Rule {
            number,
            uses_groups: replies.iter().any(Template::uses_groups),
            pattern,
            state,
            next,
            replies,
            pick,
            delay,
            close: r.close,
            handoff: r.handoff,
        });
        keys.push(StateKeys {
            state: r.state.map(|s| s.span()),
            next: r.next.map(|n| n.span()),
        });
    }
    check_states(&rules, &keys, &states)?;
    let regexes = RegexRules::new(rules.iter_mut().map(|r| &mut r.pattern));
    Ok(Script {
        greeting,
        fallback,
        rules,
        regexes,
        states,
        rotating,
        handoff_after_unmatched,
    })
}

/// Where a rule's `state` and `next` values are, for the checks across rules.
#[derive(Debug)]
struct StateKeys {
    state: Option<Range<usize>>,
    next: Option<Range<usize>>,
}

/// Every state a rule leads to must have rules of its own, and every state a rule waits for
/// must be led to by some rule (or be `start`).
fn check_states(rules: &[Rule], keys: &[StateKeys], names: &[String]) -> Result<(), BuildError> {
    for (rule, keys) in rules.iter().zip(keys) {
        if let (Some(id), Some(span)) = (rule.state, &keys.state)
            && id != START
            && !rules.iter().any(|r| r.next == Some(id))
        {
            return Err(rule_error(
                rule.number,
                format_args!(
                    "`state = {:?}` is never reached: no rule has `next = {0:?}` (sessions start \
                     in \"{START_NAME}\")",
                    names[id]
                ),
                span.clone(),
            ));
        }
        if let (Some(id), Some(span)) = (rule.next, &keys.next)
            && id != START
            && !rules.iter().any(|r| r.state == Some(id))
        {
            return Err(rule_error(
                rule.number,
                format_args!(
                    "`next = {:?}` is a dead end: no rule has `state = {0:?}`",
                    names[id]
                ),
                span.clone(),
            ));
        }
    }
    Ok(())
}
