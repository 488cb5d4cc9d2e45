//! `console-reply`: a human operator answers.
//!
//! Each message that reaches it is shown to the operator (the daemon's console escapes it and
//! tags it with the session); the operator's line for the session is sent back as the reply.
//! The bye word typed by the operator is sent and then ends the session, as the tutorial's
//! chat server does. While no operator is attached the daemon keeps the messages for the
//! first one to attach, and `unattended_reply`, when set, answers each of them.
//!
//! Settings (`[listener.console-reply]`):
//! - `unattended_reply` (default none): sent for each message while no operator is attached;
//! - `bye` (default `"bye"`): the word that ends the session when the operator types it;
//! - `close_after_reply` (default `false`): end the session after the operator's first reply
//!   (the tutorial's one-round UDP receiver).

use std::sync::Arc;

use crate::registry::{BuildEnv, BuildError};
use crate::settings::Settings;
use crate::text::{lossy, trim_line_end};
use crate::{Flow, Handler, HandlerFactory, Outbox, Scope, Session};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ConsoleSettings {
    unattended_reply: Option<String>,
    bye: String,
    close_after_reply: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            unattended_reply: None,
            bye: "bye".into(),
            close_after_reply: false,
        }
    }
}

/// The `console-reply` factory.
#[derive(Debug)]
pub struct ConsoleReply(Arc<ConsoleSettings>);

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
    Ok(Arc::new(ConsoleReply(Arc::new(s))))
}

impl HandlerFactory for ConsoleReply {
    fn name(&self) -> &'static str {
        "console-reply"
    }

    fn session(&self) -> Box<dyn Handler> {
        Box::new(ConsoleHandler(self.0.clone()))
    }

    fn takes_operator(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct ConsoleHandler(Arc<ConsoleSettings>);

impl Handler for ConsoleHandler {
    fn on_message(&mut self, msg: &[u8], s: &Session, out: &mut Outbox) -> Flow {
        out.to_operator(lossy(trim_line_end(msg)));
        if s.operators == 0
            && let Some(reply) = &self.0.unattended_reply
        {
            out.send(reply.as_bytes());
        }
        Flow::Handled
    }

    fn on_operator(&mut self, line: &str, _s: &Session, out: &mut Outbox) -> Flow {
        out.send(line.as_bytes());
        if line.trim() == self.0.bye || self.0.close_after_reply {
            out.close(Scope::Session);
        }
        Flow::Handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Harness, build_one};
    use crate::{Action, CloseReason};

    fn harness(settings: &str) -> Harness {
        Harness::new(vec![
            build_one("console-reply", settings).unwrap().session(),
        ])
    }

    #[test]
    fn messages_go_to_the_operator_and_lines_come_back() {
        let mut h = harness("");
        let out = h.message(b"\xe4\xbd\xa0\xe5\xa5\xbd\r\n");
        assert_eq!(
            out.actions(),
            &[Action::ToOperator {
                text: "你好".into()
            }]
        );
        assert!(!out.has_messages(), "no automatic answer while attended");
        assert_eq!(h.operator("hello there").data(), b"hello there");
    }

    #[test]
    fn operator_bye_sends_then_closes() {
        let mut h = harness("");
        let out = h.operator("bye");
        assert_eq!(out.data(), b"bye");
        assert_eq!(
            out.actions(),
            &[Action::Close {
                scope: Scope::Session,
                reason: CloseReason::Handler
            }]
        );
    }

    #[test]
    fn unattended_reply_answers_each_message_when_nobody_is_attached() {
        let mut h = harness("unattended_reply = \"an agent will be with you shortly\"");
        h.session.operators = 0;
        let out = h.message(b"hello?");
        assert!(
            matches!(out.actions()[0], Action::ToOperator { .. }),
            "still kept for the operator"
        );
        assert_eq!(h.sent(), vec!["an agent will be with you shortly"]);
        h.session.operators = 1;
        h.message(b"again");
        assert!(h.sent().is_empty());
    }

    #[test]
    fn invalid_utf8_is_shown_replaced_not_dropped() {
        let mut h = harness("");
        let out = h.message(b"ok\xff");
        assert_eq!(
            out.actions(),
            &[Action::ToOperator {
                text: "ok\u{fffd}".into()
            }]
        );
    }

    #[test]
    fn close_after_reply_ends_the_session_after_one_answer() {
        let mut h = harness("close_after_reply = true");
        let out = h.operator("ok");
        assert_eq!(
            out.actions(),
            &[Action::Close {
                scope: Scope::Session,
                reason: CloseReason::Handler
            }]
        );
    }

    #[test]
    fn settings_are_checked() {
        assert!(build_one("console-reply", "bye = \"\"").is_err());
        let e = build_one("console-reply", "unattended = \"x\"").unwrap_err();
        assert!(
            e.message
                .starts_with("`unattended`: unknown key; did you mean `unattended_reply`?"),
            "{e}"
        );
    }
}
