//! `bye-close`: the bye word ends the session, as in the tutorial's chat programs.
//!
//! Settings (`[listener.bye-close]`):
//! - `word` (default `"bye"`): the word, compared with the message minus trailing `\r`/`\n`;
//! - `ignore_case` (default `false`);
//! - `reply` (default: the word itself, so a client waiting for an answer gets one; `""` for
//!   none);
//! - `scope` (default `"session"`): `"listener"` also stops the listener accepting (the
//!   tutorial's one-shot server), `"daemon"` shuts the daemon down (its UDP customer-service
//!   server exits when the customer says bye).

use std::sync::Arc;

use crate::registry::{BuildEnv, BuildError};
use crate::settings::Settings;
use crate::text::trim_line_end;
use crate::{Flow, Handler, HandlerFactory, Outbox, Scope, Session};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ByeSettings {
    word: String,
    ignore_case: bool,
    reply: Option<String>,
    scope: Scope,
}

impl Default for ByeSettings {
    fn default() -> Self {
        ByeSettings {
            word: "bye".into(),
            ignore_case: false,
            reply: None,
            scope: Scope::Session,
        }
    }
}

/// The `bye-close` factory; its handlers share its settings.
#[derive(Debug)]
pub struct ByeClose(Arc<Bye>);

/// The validated settings.
#[derive(Debug)]
pub struct Bye {
    word: String,
    ignore_case: bool,
    reply: Vec<u8>,
    scope: Scope,
}

pub(crate) fn build(
    settings: Settings<'_>,
    _env: &dyn BuildEnv,
) -> Result<Arc<dyn HandlerFactory>, BuildError> {
    let span = settings.span();
    let s: ByeSettings = settings.parse()?;
    if s.word.trim().is_empty() || s.word.contains(['\r', '\n']) {
        return Err(BuildError::new(
            "key `word`: the bye word must be non-empty and on one line",
            span,
        ));
    }
    let reply = s.reply.unwrap_or_else(|| s.word.clone()).into_bytes();
    Ok(Arc::new(ByeClose(Arc::new(Bye {
        word: s.word,
        ignore_case: s.ignore_case,
        reply,
        scope: s.scope,
    }))))
}

impl Bye {
    /// Whether `msg` is the bye word.
    pub fn is_bye(&self, msg: &[u8]) -> bool {
        let msg = trim_line_end(msg);
        if self.ignore_case {
            std::str::from_utf8(msg).is_ok_and(|m| m.to_lowercase() == self.word.to_lowercase())
        } else {
            msg == self.word.as_bytes()
        }
    }
}

impl HandlerFactory for ByeClose {
    fn name(&self) -> &'static str {
        "bye-close"
    }

    fn session(&self) -> Box<dyn Handler> {
        Box::new(ByeHandler(self.0.clone()))
    }
}

/// One session's `bye-close` link.
#[derive(Debug)]
struct ByeHandler(Arc<Bye>);

impl Handler for ByeHandler {
    fn on_message(&mut self, msg: &[u8], _s: &Session, out: &mut Outbox) -> Flow {
        if !self.0.is_bye(msg) {
            return Flow::Pass;
        }
        if !self.0.reply.is_empty() {
            out.send(&self.0.reply);
        }
        out.close(self.0.scope);
        Flow::Handled
    }

    fn on_operator(&mut self, line: &str, _s: &Session, out: &mut Outbox) -> Flow {
        // The operator typing the word ends the session the way the tutorial's server does:
        // send it, then close.
        if !self.0.is_bye(line.as_bytes()) {
            return Flow::Pass;
        }
        out.send(line.trim_end_matches(['\r', '\n']).as_bytes());
        out.close(Scope::Session);
        Flow::Handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::Echo;
    use crate::testutil::{Harness, build_one};
    use crate::{Action, CloseReason};

    fn chain(settings: &str) -> Harness {
        let bye = build_one("bye-close", settings).unwrap();
        Harness::new(vec![bye.session(), Echo.session()])
    }

    #[test]
    fn bye_replies_then_closes_the_session() {
        let mut h = chain("");
        let out = h.message(b"bye");
        assert_eq!(out.data(), b"bye");
        assert_eq!(
            out.actions(),
            &[Action::Close {
                scope: Scope::Session,
                reason: CloseReason::Handler
            }]
        );
        assert!(h.chain.is_closing());
    }

    #[test]
    fn trailing_newline_is_trimmed_and_other_messages_pass() {
        let mut h = chain("");
        assert_eq!(h.message(b"bye\r\n").actions().len(), 1);
        let mut h = chain("");
        let out = h.message(b"byebye");
        assert_eq!(out.data(), b"byebye", "echo got it");
        assert_eq!(
            h.message(b"Bye").data(),
            b"Bye",
            "case-sensitive by default"
        );
    }

    #[test]
    fn word_reply_case_and_scope_are_configurable() {
        let mut h =
            chain("word = \"quit\"\nignore_case = true\nreply = \"see you\"\nscope = \"listener\"");
        let out = h.message(b"QUIT\n");
        assert_eq!(out.data(), b"see you");
        assert_eq!(
            out.actions(),
            &[Action::Close {
                scope: Scope::Listener,
                reason: CloseReason::Handler
            }]
        );
    }

    #[test]
    fn empty_reply_sends_nothing() {
        let mut h = chain("reply = \"\"\nscope = \"daemon\"");
        let out = h.message(b"bye");
        assert!(out.data().is_empty());
        assert_eq!(
            out.actions(),
            &[Action::Close {
                scope: Scope::Daemon,
                reason: CloseReason::Handler
            }]
        );
    }

    #[test]
    fn messages_after_bye_are_ignored() {
        let mut h = chain("");
        h.message(b"bye");
        assert!(h.message(b"late").is_empty());
    }

    #[test]
    fn operator_bye_sends_word_and_closes() {
        let mut h = chain("");
        let out = h.operator("bye");
        assert_eq!(out.data(), b"bye");
        assert_eq!(
            out.actions(),
            &[Action::Close {
                scope: Scope::Session,
                reason: CloseReason::Handler
            }]
        );
        assert_eq!(h.flow(), Some(Flow::Handled));
        let mut h = chain("");
        h.operator("hello");
        assert_eq!(h.flow(), Some(Flow::Pass));
    }

    #[test]
    fn bad_settings_are_errors_with_a_place() {
        let e = build_one("bye-close", "wrod = \"x\"").unwrap_err();
        assert!(
            e.message
                .starts_with("`wrod`: unknown key; did you mean `word`?"),
            "{e}"
        );
        assert_eq!(e.span, Some(0..4));
        let e = build_one("bye-close", "scope = \"world\"").unwrap_err();
        assert!(
            e.message
                .starts_with("`scope`: \"world\" is not allowed; expected"),
            "{e}"
        );
        let e = build_one("bye-close", "word = \" \"").unwrap_err();
        assert!(e.message.contains("word"), "{e}");
    }
}
