//! Scripts in files of their own, the errors a script can have (each names the file, the
//! line, the rule and the key), and the support-bot script that ships with the daemon.

use std::path::PathBuf;

use super::tests::{Files, ask, bot, error, span_of};
use crate::testutil::{Harness, build_with};
use crate::{Action, CloseReason, Flow, Scope};

const FILE_SCRIPT: &str = r#"# a script in its own file
fallback = "?"

[[rule]]
match = "exact"
pattern = "ping"
reply = "pong"

[[rule]]
match = "regex"
pattern = '^(unclosed$'
reply = "x"
"#;

#[test]
fn script_from_a_file() {
    let files = Files::with(
        "scripts/bot.toml",
        &FILE_SCRIPT.replace("'^(unclosed$'", "'^ok$'"),
    );
    let factory = build_with("scripted-reply", "script = \"scripts/bot.toml\"", &files).unwrap();
    let mut h = Harness::from_factories(&[factory]);
    assert_eq!(ask(&mut h, "ping"), ["pong"]);
    assert_eq!(ask(&mut h, "zzz"), ["?"]);
}

#[test]
fn errors_in_a_script_file_point_into_that_file() {
    let files = Files::with("scripts/bot.toml", FILE_SCRIPT);
    let e = build_with("scripted-reply", "script = \"scripts/bot.toml\"", &files).unwrap_err();
    assert!(
        e.message.starts_with("rule 2: bad regex in `pattern`"),
        "{e}"
    );
    assert_eq!(e.span, Some(span_of(FILE_SCRIPT, "'^(unclosed$'")));
    let file = e.file.expect("the error names the script file");
    assert_eq!(
        file.path,
        PathBuf::from("/etc/switchboard/scripts/bot.toml")
    );

    let bad = "[[rule]]\nmatch = \"exact\"\npatern = \"x\"\n";
    let files = Files::with("bot.toml", bad);
    let e = build_with("scripted-reply", "script = \"bot.toml\"", &files).unwrap_err();
    assert!(
        e.message
            .contains("`patern`: unknown key; did you mean `pattern`?"),
        "{e}"
    );
    assert_eq!(e.span, Some(span_of(bad, "patern")));
    assert!(e.file.is_some());

    let nested = "script = \"other.toml\"";
    let files = Files::with("bot.toml", nested);
    let e = build_with("scripted-reply", "script = \"bot.toml\"", &files).unwrap_err();
    assert!(e.message.contains("cannot name another script"), "{e}");
    assert_eq!(e.span, Some(span_of(nested, "\"other.toml\"")));
    assert!(e.file.is_some());
}

#[test]
fn a_missing_file_or_a_script_in_two_places_is_an_error_in_the_config() {
    let config = "script = \"nowhere.toml\"";
    let e = build_with("scripted-reply", config, &Files::default()).unwrap_err();
    assert!(
        e.message
            .starts_with("key `script`: cannot read \"nowhere.toml\""),
        "{e}"
    );
    assert_eq!(e.span, Some(span_of(config, "\"nowhere.toml\"")));
    assert!(e.file.is_none());

    let config = "script = \"bot.toml\"\ngreeting = \"hi\"";
    let files = Files::with("bot.toml", FILE_SCRIPT);
    let e = build_with("scripted-reply", config, &files).unwrap_err();
    assert!(e.message.starts_with("key `greeting`"), "{e}");
    assert_eq!(e.span, Some(span_of(config, "\"hi\"")));
}

/// A rule that is valid on its own, to surround the broken one.
const OK_RULE: &str = "[[rule]]\nmatch = \"exact\"\npattern = \"ok\"\nreply = \"ok\"\n";

/// The error of a script whose second rule is `rule`, checked to point at `culprit`.
fn rule_error(rule: &str, culprit: &str) -> String {
    let script = format!("{OK_RULE}\n[[rule]]\n{rule}\n");
    let e = error(&script);
    assert_eq!(e.span, Some(span_of(&script, culprit)), "{e}");
    e.message
}

#[test]
fn unknown_keys_are_errors_at_the_key() {
    let m = rule_error(
        "match = \"exact\"\npattern = \"x\"\nreplly = \"y\"",
        "replly",
    );
    assert!(
        m.contains("`replly`: unknown key; did you mean `reply`?"),
        "{m}"
    );
    let e = error("greting = \"hi\"");
    assert!(
        e.message
            .contains("`greting`: unknown key; did you mean `greeting`?"),
        "{e}"
    );
    assert_eq!(e.span, Some(0..7));
    let m = rule_error(
        "match = \"fuzzy\"\npattern = \"x\"\nreply = \"y\"",
        "\"fuzzy\"",
    );
    assert!(m.contains("`match`: \"fuzzy\" is not allowed; expected \"exact\", \"prefix\", \"contains\" or \"regex\""), "{m}");
}

#[test]
fn bad_regex_names_the_rule() {
    let m = rule_error("match = \"regex\"\npattern = 'a(b'\nreply = \"y\"", "'a(b'");
    assert!(m.starts_with("rule 2: bad regex in `pattern`"), "{m}");
    assert!(m.contains("unclosed group"), "{m}");
}

#[test]
fn template_errors_name_the_rule_and_the_reply() {
    let m = rule_error(
        "match = \"regex\"\npattern = '(?P<id>\\d+)'\nreply = \"{idd}\"",
        "\"{idd}\"",
    );
    assert!(
        m.starts_with("rule 2: `reply`: unknown template name `{idd}`"),
        "{m}"
    );
    assert!(m.contains("{id}"), "lists the regex's names: {m}");
    let m = rule_error(
        "match = \"regex\"\npattern = '(\\d+)'\nreply = \"{2}\"",
        "\"{2}\"",
    );
    assert!(m.contains("the regex has 1 group"), "{m}");
    let m = rule_error(
        "match = \"contains\"\npattern = \"x\"\nreplies = [\"fine\", \"{1}\"]",
        "\"{1}\"",
    );
    assert!(
        m.starts_with("rule 2: `replies`: unknown template name `{1}`"),
        "{m}"
    );
    assert!(m.contains("need `match = \"regex\"`"), "{m}");
    let m = rule_error(
        "match = \"exact\"\npattern = \"x\"\nreply = \"{time\"",
        "\"{time\"",
    );
    assert!(m.contains("without its `}`"), "{m}");

    let e = error("greeting = \"hi {message}\"");
    assert!(
        e.message
            .starts_with("key `greeting`: `{message}` in the greeting"),
        "{e}"
    );
    assert_eq!(e.span, Some(11..25));
    let e = error("fallback = \"{nope}\"");
    assert!(
        e.message
            .starts_with("key `fallback`: unknown template name `{nope}`"),
        "{e}"
    );
}

#[test]
fn reply_and_replies_are_one_or_the_other() {
    let both = "match = \"exact\"\npattern = \"x\"\nreply = \"a\"\nreplies = [\"b\"]";
    let script = format!("{OK_RULE}\n[[rule]]\n{both}\n");
    let e = error(&script);
    assert_eq!(
        e.message,
        "rule 2: has both `reply` and `replies`; keep one"
    );
    let header = script.rfind("[[rule]]").unwrap();
    assert_eq!(
        e.span,
        Some(header..header + 8),
        "the rule's `[[rule]]` line"
    );

    let e = error(&format!(
        "{OK_RULE}\n[[rule]]\nmatch = \"exact\"\npattern = \"x\"\n"
    ));
    assert_eq!(e.message, "rule 2: needs `reply` or `replies`");
    assert_eq!(e.span, Some(header..header + 8));

    let m = rule_error("match = \"exact\"\npattern = \"x\"\nreplies = []", "[]");
    assert_eq!(m, "rule 2: `replies` is empty");
    let m = rule_error(
        "match = \"exact\"\npattern = \"x\"\nreply = \"a\"\npick = \"all\"",
        "\"all\"",
    );
    assert!(
        m.starts_with("rule 2: `pick` chooses among `replies`"),
        "{m}"
    );
}

#[test]
fn states_must_be_reachable_and_lead_somewhere() {
    let m = rule_error(
        "match = \"exact\"\npattern = \"x\"\nreply = \"a\"\nnext = \"nowhere\"",
        "\"nowhere\"",
    );
    assert!(
        m.starts_with("rule 2: `next = \"nowhere\"` is a dead end"),
        "{m}"
    );
    let m = rule_error(
        "match = \"exact\"\npattern = \"x\"\nreply = \"a\"\nstate = \"island\"",
        "\"island\"",
    );
    assert!(
        m.starts_with("rule 2: `state = \"island\"` is never reached"),
        "{m}"
    );
    // `start` needs no rule leading to it, and leading back to it is never a dead end.
    bot(
        "[[rule]]\nmatch = \"exact\"\npattern = \"x\"\nreply = \"a\"\nstate = \"start\"\nnext = \"start\"",
    );
}

#[test]
fn bad_delay_is_an_error_at_the_value() {
    let m = rule_error(
        "match = \"exact\"\npattern = \"x\"\nreply = \"a\"\ndelay = \"soon\"",
        "\"soon\"",
    );
    assert!(m.starts_with("rule 2: bad `delay` \"soon\""), "{m}");
    let m = rule_error(
        "match = \"exact\"\npattern = \"x\"\nreply = \"a\"\ndelay = 800",
        "800",
    );
    assert!(m.contains("invalid type"), "{m}");
}

#[test]
fn an_empty_script_is_an_error() {
    let e = error("");
    assert!(e.message.starts_with("empty script"), "{e}");
    let e = error("ignore_case = true");
    assert!(e.message.starts_with("empty script"), "{e}");
    assert!(e.span.is_some());
    let e = build_with(
        "scripted-reply",
        "script = \"empty.toml\"",
        &Files::with("empty.toml", "# nothing\n"),
    )
    .unwrap_err();
    assert!(e.message.starts_with("empty script"), "{e}");
    assert!(e.file.is_some());
    // A greeting alone, or a fallback alone, is a script.
    bot("greeting = \"hi\"");
    bot("fallback = \"?\"");
}

const SUPPORT_BOT: &str = include_str!("../../../config/scripts/support-bot.toml");

fn support_bot() -> Harness {
    let files = Files::with("scripts/support-bot.toml", SUPPORT_BOT);
    let config = "script = \"scripts/support-bot.toml\"";
    let factory = build_with("scripted-reply", config, &files).unwrap_or_else(|e| panic!("{e}"));
    Harness::from_factories(&[factory])
}

#[test]
fn support_bot_script_answers_in_chinese_and_english() {
    let mut h = support_bot();
    assert_eq!(h.open().messages().count(), 1, "greets on TCP");
    let help = ask(&mut h, "HELP\r\n").concat();
    assert!(help.contains("价格") && help.contains("price"), "{help}");
    assert!(ask(&mut h, "价格是多少？").concat().contains("99"));
    assert!(ask(&mut h, "what is the price").concat().contains("99"));
    assert!(ask(&mut h, "营业时间").concat().contains("9:00"));
    assert!(ask(&mut h, "opening hours?").concat().contains("9:00"));
    assert!(
        h.message("订单 20240101".as_bytes()).data().is_empty(),
        "looked up after a pause"
    );
    assert!(String::from_utf8_lossy(h.fire_timers().data()).contains("订单 20240101 已发货"));
    h.message(b"Order #77");
    assert!(String::from_utf8_lossy(h.fire_timers().data()).contains("Order 77 has shipped"));
    assert!(
        ask(&mut h, "订单").concat().contains("订单 12345"),
        "asks for the number"
    );
    assert!(
        ask(&mut h, "blah").concat().contains("没听懂"),
        "the fallback, the first time"
    );
    let out = h.message(b"blah blah");
    assert!(
        out.actions()
            .iter()
            .any(|a| matches!(a, Action::Handoff { .. })),
        "not understood twice: to a person"
    );
    assert_eq!(h.flow(), Some(Flow::Pass));
    h.handoff(crate::Handoff::Waiting { position: 1 });
    assert!(
        h.message("人工".as_bytes()).is_empty(),
        "silent until given back"
    );
    assert_eq!(h.flow(), Some(Flow::Pass));
}

#[test]
fn support_bot_refund_dialogue() {
    let mut h = support_bot();
    assert!(ask(&mut h, "我要退款").concat().contains("订单号"));
    assert!(
        ask(&mut h, "什么？").concat().contains("订单号"),
        "asks again"
    );
    assert!(
        ask(&mut h, "help").concat().contains("refund"),
        "the menu still answers"
    );
    assert!(ask(&mut h, "12345").concat().contains("订单 12345"));
    assert!(ask(&mut h, "是").concat().contains("已提交"));
    // Back in start: a bare number is not taken as a refund any more.
    assert!(ask(&mut h, "12345").concat().contains("没听懂"));

    let mut h = support_bot();
    ask(&mut h, "refund");
    ask(&mut h, "999");
    assert!(ask(&mut h, "no").concat().contains("cancel"));
    let thanks = ask(&mut h, "thanks").concat();
    assert!(
        thanks.contains("welcome") || thanks.contains("Glad"),
        "{thanks}"
    );
    let out = h.message("再见".as_bytes());
    assert_eq!(
        out.actions(),
        &[Action::Close {
            scope: Scope::Session,
            reason: CloseReason::Handler
        }]
    );
}
