//! Handing over to a person: the `handoff` rule key, `handoff_after_unmatched`, and the bot's
//! silence while a person has the session.

use super::tests::{ask, bot, error};
use crate::testutil::build_one;
use crate::{Action, Flow, Handoff, Outbox};

const KINDS: &str = r#"
[[rule]]
match = "exact"
pattern = "help"
reply = "exact"
"#;

const HANDOFF: &str = r#"
fallback = "sorry?"
handoff_after_unmatched = 2
[[rule]]
match = "exact"
pattern = "help"
reply = "help text"
[[rule]]
match = "exact"
pattern = "human"
reply = "connecting you to a person"
handoff = true
[[rule]]
match = "exact"
pattern = "slow"
reply = "slow text"
delay = "1s"
"#;

fn asked_handoff(out: &Outbox) -> bool {
    out.actions()
        .iter()
        .any(|a| matches!(a, Action::Handoff { .. }))
}

#[test]
fn a_handoff_rule_answers_then_asks_for_a_person_and_the_bot_falls_silent() {
    let mut h = bot(HANDOFF);
    let out = h.message(b"human");
    assert!(asked_handoff(out));
    assert_eq!(h.sent(), ["connecting you to a person"]);
    h.handoff(Handoff::Waiting { position: 1 });
    let out = h.message(b"help");
    assert!(out.is_empty(), "silent: {out:?}");
    assert_eq!(h.flow(), Some(Flow::Pass), "passed on to the person");
    h.handoff(Handoff::Taken);
    h.message(b"help");
    assert_eq!(h.flow(), Some(Flow::Pass));
    h.handoff(Handoff::Released);
    assert_eq!(
        ask(&mut h, "help"),
        ["help text"],
        "given back: answers again"
    );
}

#[test]
fn unmatched_messages_in_a_row_hand_over_and_a_match_resets_the_count() {
    let mut h = bot(HANDOFF);
    assert_eq!(ask(&mut h, "zzz"), ["sorry?"]);
    assert_eq!(ask(&mut h, "help"), ["help text"], "the count starts again");
    assert_eq!(ask(&mut h, "zzz"), ["sorry?"]);
    let out = h.message(b"still zzz");
    assert!(asked_handoff(out));
    assert!(
        !out.has_messages(),
        "no fallback: the message goes to a person"
    );
    assert_eq!(h.flow(), Some(Flow::Pass));
}

#[test]
fn a_reply_decided_before_the_handoff_still_goes_out() {
    let mut h = bot(HANDOFF);
    let timers: Vec<Action> = h.message(b"slow").actions().to_vec();
    h.handoff(Handoff::Taken);
    let mut out = Outbox::new();
    for a in timers {
        if let Action::Timer { link, id, .. } = a {
            h.chain.timer(link, id, &h.session, &mut out);
        }
    }
    let sent: Vec<&[u8]> = out.messages().collect();
    assert_eq!(sent, [&b"slow text"[..]]);
}

#[test]
fn handoff_settings_are_checked() {
    let e = error("handoff_after_unmatched = 0\nfallback = \"?\"");
    assert!(
        e.message.starts_with("key `handoff_after_unmatched`"),
        "{e}"
    );
    let e = error(
        "[[rule]]\nmatch = \"exact\"\npattern = \"x\"\nreply = \"y\"\nclose = true\nhandoff = true",
    );
    assert!(
        e.message
            .starts_with("rule 1: has both `close` and `handoff`"),
        "{e}"
    );
    let f = build_one("scripted-reply", HANDOFF).unwrap();
    assert!(f.hands_off());
    assert!(!build_one("scripted-reply", KINDS).unwrap().hands_off());
}
