use std::time::Duration;

use super::*;
use crate::testutil::{Harness, build_one};
use crate::{Action, CloseReason};

fn harness(settings: &str) -> Harness {
    Harness::new(vec![
        build_one("console-reply", settings).unwrap().session(),
    ])
}

fn timers(out: &Outbox) -> Vec<(u64, Duration)> {
    out.actions()
        .iter()
        .filter_map(|a| match *a {
            Action::Timer { id, after, .. } => Some((id, after)),
            _ => None,
        })
        .collect()
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

const DESK: &str = r#"
unattended_reply = "nobody here, {peer}"
offline_reply = "no person online; your message is kept"
queue_reply = "you are number {position} ({ahead} before you)"
wait_reply = "a person will answer soon"
wait_timeout = "20s"
"#;

#[test]
fn a_handoff_with_nobody_attached_gets_the_offline_reply_once() {
    let mut h = harness(DESK);
    h.session.operators = 0;
    assert_eq!(
        h.handoff(Handoff::Waiting { position: 1 }).data(),
        b"no person online; your message is kept"
    );
    // A later place in the queue is no new handoff.
    assert!(h.handoff(Handoff::Waiting { position: 1 }).is_empty());
    // Each message meanwhile gets it too.
    h.message(b"hello?");
    assert_eq!(h.sent(), ["no person online; your message is kept"]);
    // Given back, the session is not handed over any more: unattended_reply.
    h.handoff(Handoff::Released);
    h.message(b"and now?");
    assert_eq!(h.sent(), ["nobody here, 127.0.0.1:40000"]);
}

#[test]
fn a_handoff_asked_for_this_very_message_answers_it_once() {
    // A bot earlier in the chain handed over and passed the message on.
    let mut h = harness(DESK);
    h.session.operators = 0;
    let mut out = Outbox::new();
    out.handoff();
    let mut link = h.chain;
    link.message(b"my parcel", &h.session, &mut out);
    let sent: Vec<&[u8]> = out.messages().collect();
    assert_eq!(sent, [&b"no person online; your message is kept"[..]]);
    out.clear();
    link.handoff(Handoff::Waiting { position: 1 }, &h.session, &mut out);
    assert!(!out.has_messages(), "told once, not twice");
}

#[test]
fn a_waiting_message_is_told_its_place_only_if_no_person_answers_in_time() {
    let mut h = harness(DESK);
    h.handoff(Handoff::Waiting { position: 3 });
    assert_eq!(
        h.sent(),
        ["you are number 3 (2 before you)"],
        "at the handoff, with the bot's answer"
    );
    // A message waits for a person: no answer now, a timer instead.
    let out = h.message(b"where is my parcel?");
    assert!(!out.has_messages());
    assert_eq!(timers(out), [(1, Duration::from_secs(20))]);
    // The queue moved meanwhile.
    h.handoff(Handoff::Waiting { position: 2 });
    h.message(b"hello?");
    let out = h.fire_timers();
    let sent: Vec<&[u8]> = out.messages().collect();
    assert_eq!(sent, [&b"you are number 2 (1 before you)"[..]]);
}

#[test]
fn an_operator_answer_cancels_the_wait_and_taken_sessions_get_the_wait_reply() {
    let mut h = harness(DESK);
    h.handoff(Handoff::Waiting { position: 1 });
    h.message(b"first");
    h.message(b"second");
    let out = h.operator("here I am");
    assert_eq!(out.data(), b"here I am");
    assert!(
        out.actions()
            .contains(&Action::CancelTimer { link: 0, id: 1 }),
        "the oldest waiting message is answered: {:?}",
        out.actions()
    );
    h.handoff(Handoff::Taken);
    let out = h.message(b"third");
    assert_eq!(timers(out), [(3, Duration::from_secs(20))]);
    assert_eq!(h.fire_timers().data(), b"a person will answer soon");
}

#[test]
fn without_operators_when_the_wait_ends_the_offline_text_goes() {
    let mut h = harness(DESK);
    h.handoff(Handoff::Taken);
    h.message(b"still there?");
    h.session.operators = 0;
    assert_eq!(
        h.fire_timers().data(),
        b"no person online; your message is kept"
    );
}

#[test]
fn release_forgets_the_waits() {
    let mut h = harness(DESK);
    h.handoff(Handoff::Taken);
    h.message(b"a question");
    let out = h.handoff(Handoff::Released);
    assert_eq!(out.actions(), &[Action::CancelTimer { link: 0, id: 1 }]);
}

#[test]
fn without_any_text_a_message_simply_waits_for_the_operator() {
    let mut h = harness("");
    h.handoff(Handoff::Waiting { position: 1 });
    let out = h.message(b"hello?");
    assert!(timers(out).is_empty() && !out.has_messages());
}

#[test]
fn canned_replies_are_listed_and_rendered_for_the_session() {
    let f = build_one(
        "console-reply",
        "canned = { refund = \"Refunds take 3 days, {peer}.\", hours = \"Open 9-18 ({date})\" }",
    )
    .unwrap();
    assert_eq!(
        f.canned(),
        [
            ("hours".to_string(), "Open 9-18 ({date})".to_string()),
            (
                "refund".to_string(),
                "Refunds take 3 days, {peer}.".to_string()
            )
        ]
    );
    let h = Harness::from_factories(std::slice::from_ref(&f));
    assert_eq!(
        f.render_canned("refund", &h.session).as_deref(),
        Some("Refunds take 3 days, 127.0.0.1:40000.")
    );
    assert_eq!(
        f.render_canned("hours", &h.session).as_deref(),
        Some("Open 9-18 (2023-11-14)")
    );
    assert_eq!(f.render_canned("nope", &h.session), None);
    assert_eq!(f.history(), 10);
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
    let e = build_one("console-reply", "canned = { refund = \"for {message}\" }").unwrap_err();
    assert!(
        e.message
            .starts_with("key `canned.refund`: `{message}` is not known here"),
        "{e}"
    );
    let e = build_one("console-reply", "wait_reply = \"number {position}\"").unwrap_err();
    assert!(
        e.message
            .starts_with("key `wait_reply`: unknown template name `{position}`"),
        "{e}"
    );
    let e = build_one("console-reply", "wait_timeout = \"soon\"").unwrap_err();
    assert!(e.message.starts_with("key `wait_timeout`"), "{e}");
    let e = build_one("console-reply", "canned = { \"two words\" = \"x\" }").unwrap_err();
    assert!(e.message.contains("one word"), "{e}");
}
