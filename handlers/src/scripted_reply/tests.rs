use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::registry::{BuildEnv, BuildError, SourceFile};
use crate::testutil::{Harness, build_one};
use crate::{Action, CloseReason, Flow, Outbox, Proto, Scope};

pub(super) fn bot(script: &str) -> Harness {
    let factory = build_one("scripted-reply", script).unwrap_or_else(|e| panic!("{e}"));
    Harness::from_factories(&[factory])
}

pub(super) fn ask(h: &mut Harness, msg: &str) -> Vec<String> {
    h.message(msg.as_bytes());
    h.sent()
}

pub(super) fn error(script: &str) -> BuildError {
    build_one("scripted-reply", script).unwrap_err()
}

/// The place of the only occurrence of `needle` in `text`.
pub(super) fn span_of(text: &str, needle: &str) -> Range<usize> {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the script"));
    assert_eq!(text.rfind(needle), Some(at), "{needle:?} occurs twice");
    at..at + needle.len()
}

/// Serves files from memory, as the daemon serves them from the config's folder.
#[derive(Default)]
pub(super) struct Files(HashMap<&'static str, Arc<SourceFile>>);

impl Files {
    pub(super) fn with(name: &'static str, text: &str) -> Files {
        let file = SourceFile {
            path: PathBuf::from("/etc/switchboard").join(name),
            text: text.to_string(),
        };
        Files(HashMap::from([(name, Arc::new(file))]))
    }
}

impl BuildEnv for Files {
    fn read_file(&self, name: &str) -> Result<Arc<SourceFile>, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("cannot read {name:?}: not found"))
    }
}

const KINDS: &str = r#"
[[rule]]
match = "exact"
pattern = "help"
reply = "exact"

[[rule]]
match = "prefix"
pattern = "order"
reply = "prefix"

[[rule]]
match = "contains"
pattern = "价格"
reply = "contains"

[[rule]]
match = "regex"
pattern = '^\d+$'
reply = "regex"
"#;

#[test]
fn each_match_kind() {
    let mut h = bot(KINDS);
    assert_eq!(ask(&mut h, "help"), ["exact"]);
    assert_eq!(
        ask(&mut h, "help me"),
        [] as [&str; 0],
        "exact is the whole message"
    );
    assert_eq!(h.flow(), Some(Flow::Pass));
    assert_eq!(ask(&mut h, "order 42"), ["prefix"]);
    assert_eq!(ask(&mut h, "my order"), [] as [&str; 0]);
    assert_eq!(ask(&mut h, "请问价格多少"), ["contains"]);
    assert_eq!(ask(&mut h, "12345"), ["regex"]);
    assert_eq!(ask(&mut h, "12a"), [] as [&str; 0]);
    assert_eq!(h.flow(), Some(Flow::Pass));
}

#[test]
fn first_matching_rule_wins_and_line_ends_are_trimmed() {
    let mut h = bot(r#"
        [[rule]]
        match = "prefix"
        pattern = "order"
        reply = "first"
        [[rule]]
        match = "exact"
        pattern = "order"
        reply = "second"
        "#);
    assert_eq!(ask(&mut h, "order\r\n"), ["first"]);
    assert_eq!(h.flow(), Some(Flow::Handled));
}

#[test]
fn case_is_kept_unless_ignore_case_globally_or_per_rule() {
    let mut h = bot(KINDS);
    assert_eq!(
        ask(&mut h, "HELP"),
        [] as [&str; 0],
        "case-sensitive by default"
    );

    let mut h = bot(r#"
        ignore_case = true
        [[rule]]
        match = "exact"
        pattern = "Help"
        reply = "help"
        [[rule]]
        match = "contains"
        pattern = "Straße"
        reply = "street"
        [[rule]]
        match = "prefix"
        pattern = "Exact"
        ignore_case = false
        reply = "exact case"
        [[rule]]
        match = "regex"
        pattern = '^name (\w+)$'
        reply = "hi {1}"
        "#);
    assert_eq!(ask(&mut h, "hELp"), ["help"]);
    assert_eq!(ask(&mut h, "IN DER STRAßE"), ["street"]);
    assert_eq!(
        ask(&mut h, "exactly"),
        [] as [&str; 0],
        "the rule's own ignore_case wins"
    );
    assert_eq!(ask(&mut h, "Exactly"), ["exact case"]);
    assert_eq!(
        ask(&mut h, "NAME Bob"),
        ["hi Bob"],
        "groups keep the peer's case"
    );

    let mut h = bot(r#"
        [[rule]]
        match = "exact"
        pattern = "yes"
        ignore_case = true
        reply = "ok"
        [[rule]]
        match = "exact"
        pattern = "no"
        reply = "hm"
        "#);
    assert_eq!(ask(&mut h, "YES"), ["ok"]);
    assert_eq!(ask(&mut h, "NO"), [] as [&str; 0]);
}

#[test]
fn templates_render_session_fields_time_and_braces() {
    let mut h = bot(r#"
        [[rule]]
        match = "contains"
        pattern = "x"
        reply = "{message}|{peer}|{session}|{listener}|{time}|{date}|{{literal}}"
        "#);
    h.session.id = 42;
    // The harness clock is 1_700_000_000 s after the epoch: 2023-11-14 22:13:20 UTC.
    assert_eq!(
        ask(&mut h, "x marks\r\n"),
        ["x marks|127.0.0.1:40000|42|test|22:13:20|2023-11-14|{literal}"]
    );
}

#[test]
fn templates_render_numbered_and_named_groups() {
    let mut h = bot(r#"
        [[rule]]
        match = "regex"
        pattern = '^(?:order|订单)\s*(?P<id>\d+)(!)?$'
        reply = "[{0}] 订单 {id} / {1} [{2}]"
        "#);
    assert_eq!(
        ask(&mut h, "订单 8848"),
        ["[订单 8848] 订单 8848 / 8848 []"]
    );
    assert_eq!(ask(&mut h, "order7!"), ["[order7!] 订单 7 / 7 [!]"]);
}

#[test]
fn rotate_cycles_per_session() {
    let script = r#"
        [[rule]]
        match = "exact"
        pattern = "joke"
        replies = ["a", "b", "c"]
        [[rule]]
        match = "exact"
        pattern = "tip"
        replies = ["x", "y"]
        pick = "rotate"
    "#;
    let mut h = bot(script);
    let jokes: Vec<_> = (0..4).map(|_| ask(&mut h, "joke").concat()).collect();
    assert_eq!(jokes, ["a", "b", "c", "a"]);
    assert_eq!(ask(&mut h, "tip"), ["x"], "each rule has its own turn");
    assert_eq!(ask(&mut h, "tip"), ["y"]);
    let mut other = bot(script);
    assert_eq!(
        ask(&mut other, "joke"),
        ["a"],
        "each session starts at the first"
    );
}

#[test]
fn random_is_reproducible_per_session_number() {
    let script = r#"
        [[rule]]
        match = "exact"
        pattern = "roll"
        replies = ["1", "2", "3", "4", "5", "6"]
        pick = "random"
    "#;
    let rolls = |id: u64| -> Vec<String> {
        let mut h = bot(script);
        h.session.id = id;
        (0..40).map(|_| ask(&mut h, "roll").concat()).collect()
    };
    let seven = rolls(7);
    assert_eq!(seven, rolls(7));
    assert_ne!(seven, rolls(8));
    let mut seen: Vec<&str> = seven.iter().map(String::as_str).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        ["1", "2", "3", "4", "5", "6"],
        "every face comes up in 40 rolls"
    );
}

#[test]
fn all_sends_each_reply_as_its_own_message() {
    let mut h = bot(r#"
        [[rule]]
        match = "exact"
        pattern = "menu"
        replies = ["1. 价格", "2. 营业时间", "3. 订单 {message}"]
        pick = "all"
        "#);
    assert_eq!(
        ask(&mut h, "menu"),
        ["1. 价格", "2. 营业时间", "3. 订单 menu"]
    );
}

const REFUND: &str = r#"
fallback = "?"
[[rule]]
match = "exact"
pattern = "help"
reply = "help text"

[[rule]]
match = "exact"
pattern = "refund"
reply = "order number?"
next = "refund-order"

[[rule]]
match = "regex"
pattern = '^\d+$'
state = "refund-order"
reply = "refund {0}? yes/no"
next = "refund-confirm"

[[rule]]
match = "exact"
pattern = "yes"
state = "refund-confirm"
reply = "refunded"
next = "start"

[[rule]]
match = "exact"
pattern = "no"
state = "refund-confirm"
reply = "kept"
next = "start"
"#;

#[test]
fn states_gate_rules_and_next_moves_the_dialogue() {
    let mut h = bot(REFUND);
    assert_eq!(ask(&mut h, "123"), ["?"], "not in refund-order yet");
    assert_eq!(ask(&mut h, "refund"), ["order number?"]);
    assert_eq!(
        ask(&mut h, "help"),
        ["help text"],
        "rules without state apply in any state"
    );
    assert_eq!(
        ask(&mut h, "yes"),
        ["?"],
        "still waiting for the order number"
    );
    assert_eq!(ask(&mut h, "123"), ["refund 123? yes/no"]);
    assert_eq!(ask(&mut h, "yes"), ["refunded"]);
    assert_eq!(ask(&mut h, "yes"), ["?"], "back in start");
    assert_eq!(ask(&mut h, "123"), ["?"]);
}

#[test]
fn close_replies_then_ends_the_session() {
    let mut h = bot(r#"
        [[rule]]
        match = "exact"
        pattern = "quit"
        reply = "再见"
        close = true
        [[rule]]
        match = "exact"
        pattern = "drop"
        reply = ""
        close = true
        "#);
    let out = h.message(b"quit");
    assert_eq!(out.data(), "再见".as_bytes());
    assert_eq!(
        out.actions(),
        &[Action::Close {
            scope: Scope::Session,
            reason: CloseReason::Handler
        }]
    );
    assert!(h.chain.is_closing());

    let mut h = bot(r#"
        [[rule]]
        match = "exact"
        pattern = "drop"
        reply = ""
        close = true
        "#);
    let out = h.message(b"drop");
    assert_eq!(out.messages().count(), 0, "an empty reply sends nothing");
    assert_eq!(
        out.actions(),
        &[Action::Close {
            scope: Scope::Session,
            reason: CloseReason::Handler
        }]
    );
}

const SLOW: &str = r#"
[[rule]]
match = "exact"
pattern = "slow"
reply = "slow at {time}"
delay = "800ms"

[[rule]]
match = "exact"
pattern = "fast"
reply = "fast"

[[rule]]
match = "exact"
pattern = "bye"
reply = "bye"
delay = "2s"
close = true
"#;

#[test]
fn delay_starts_a_timer_and_replies_when_it_fires() {
    let mut h = bot(SLOW);
    let out = h.message(b"slow");
    assert!(out.data().is_empty());
    let timer = Action::Timer {
        link: 0,
        id: 1,
        after: Duration::from_millis(800),
        holds: true,
    };
    assert_eq!(out.actions(), &[timer]);
    assert_eq!(
        h.fire_timers().data(),
        b"slow at 22:13:20",
        "rendered when asked"
    );
    assert_eq!(ask(&mut h, "fast"), ["fast"], "nothing pending any more");
}

#[test]
fn a_delayed_reply_holds_back_later_ones_to_keep_their_order() {
    let mut h = bot(SLOW);
    h.message(b"slow");
    assert!(h.message(b"fast").is_empty(), "waits behind the slow one");
    let mut out = Outbox::new();
    h.chain.timer(0, 1, &h.session, &mut out);
    let sent: Vec<&[u8]> = out.messages().collect();
    assert_eq!(sent, [&b"slow at 22:13:20"[..], b"fast"]);
}

#[test]
fn a_peer_talking_through_a_delay_cannot_grow_the_queue_without_bound() {
    let mut h = bot(SLOW);
    h.message(b"slow");
    for _ in 0..63 {
        assert!(h.message(b"fast").is_empty());
    }
    let out = h.message(b"fast");
    assert_eq!(out.messages().count(), 65, "all sent at once, in order");
    assert_eq!(out.messages().next(), Some(&b"slow at 22:13:20"[..]));
    let mut late = Outbox::new();
    h.chain.timer(0, 1, &h.session, &mut late);
    assert!(late.is_empty(), "the late timer finds nothing to send");
    assert_eq!(ask(&mut h, "fast"), ["fast"]);
}

#[test]
fn delayed_close_closes_after_the_reply_and_ignores_messages_meanwhile() {
    let mut h = bot(SLOW);
    let out = h.message(b"bye");
    assert!(matches!(out.actions(), [Action::Timer { .. }]));
    assert!(!h.chain.is_closing());
    let out = h.fire_timers();
    assert_eq!(out.data(), b"bye");
    assert_eq!(
        out.actions(),
        &[Action::Close {
            scope: Scope::Session,
            reason: CloseReason::Handler
        }]
    );

    let mut h = bot(SLOW);
    h.message(b"bye");
    assert!(h.message(b"fast").is_empty());
    assert_eq!(
        h.flow(),
        Some(Flow::Handled),
        "swallowed: the session is ending"
    );
}

#[test]
fn fallback_answers_what_no_rule_does_otherwise_the_message_is_passed() {
    let mut h = bot(
        "fallback = \"不明白：{message}\"\n[[rule]]\nmatch = \"exact\"\npattern = \"a\"\nreply = \"b\"",
    );
    assert_eq!(ask(&mut h, "zzz"), ["不明白：zzz"]);
    assert_eq!(h.flow(), Some(Flow::Handled));

    let mut h = bot(KINDS);
    assert!(h.message(b"zzz").is_empty());
    assert_eq!(h.flow(), Some(Flow::Pass));
}

const GREETER: &str = r#"
greeting = "您好 {peer}"
[[rule]]
match = "exact"
pattern = "help"
reply = "help text"
[[rule]]
match = "exact"
pattern = "later"
reply = "later text"
delay = "1s"
[[rule]]
match = "exact"
pattern = "hush"
reply = ""
"#;

#[test]
fn tcp_greeting_is_sent_on_open() {
    let mut h = bot(GREETER);
    let out = h.open();
    assert_eq!(out.data(), "您好 127.0.0.1:40000".as_bytes());
    assert_eq!(ask(&mut h, "help"), ["help text"]);
}

#[test]
fn udp_greeting_is_sent_ahead_of_the_first_answer_whoever_gives_it() {
    let mut h = bot(GREETER);
    h.session.proto = Proto::Udp;
    let out = h.open();
    assert!(!out.has_messages(), "no datagram of its own");
    assert_eq!(
        out.actions(),
        &[Action::Ahead {
            link: 0,
            bytes: "您好 127.0.0.1:40000".into()
        }],
        "the loop puts it in front of the first answer"
    );
    assert_eq!(ask(&mut h, "help"), ["help text"]);
}

#[test]
fn invalid_utf8_is_matched_with_replacement_characters() {
    let mut h = bot(r#"
        ignore_case = true
        [[rule]]
        match = "contains"
        pattern = "HELP"
        reply = "<{message}>"
        "#);
    assert_eq!(ask(&mut h, "x"), [] as [&str; 0]);
    h.message(b"\xff\xfeHelp\xc3\r\n");
    assert_eq!(h.sent(), ["<\u{fffd}\u{fffd}Help\u{fffd}>"]);
}

#[test]
fn works_behind_bye_close_in_a_chain() {
    let factories = [
        build_one("bye-close", "").unwrap(),
        build_one("scripted-reply", KINDS).unwrap(),
    ];
    let mut h = Harness::from_factories(&factories);
    assert_eq!(ask(&mut h, "help"), ["exact"]);
    let out = h.message(b"bye\n");
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
fn regexes_tested_together_keep_rule_order_and_case_rules() {
    // Rules 2, 3 and 5 are tested as one set; rule 1 has a word boundary and is tested alone.
    let mut h = bot(r#"
        [[rule]]
        match = "regex"
        pattern = '\bfoo\b'
        reply = "1"
        [[rule]]
        match = "regex"
        pattern = 'foo'
        reply = "2"
        [[rule]]
        match = "regex"
        pattern = 'BAR'
        ignore_case = true
        reply = "3"
        [[rule]]
        match = "exact"
        pattern = "baz"
        reply = "4"
        [[rule]]
        match = "regex"
        pattern = 'ba(z|r)'
        reply = "5 {1}"
        "#);
    assert_eq!(ask(&mut h, "a foo"), ["1"]);
    assert_eq!(ask(&mut h, "afoo"), ["2"]);
    assert_eq!(ask(&mut h, "bar"), ["3"]);
    assert_eq!(ask(&mut h, "baz"), ["4"]);
    assert_eq!(ask(&mut h, "bazaar"), ["5 z"]);
    assert_eq!(ask(&mut h, "Bar"), ["3"]);
    assert_eq!(ask(&mut h, "xyz"), [] as [&str; 0]);
}
