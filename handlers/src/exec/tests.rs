use super::*;
use crate::channel::{ChannelEvent, Ending};
use crate::testutil::{Harness, build_one};
use crate::{Action, Flow};

fn written(out: &crate::Outbox) -> Vec<String> {
    out.actions()
        .iter()
        .filter_map(|a| match a {
            Action::ToChannel { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn settings_are_checked() {
    let e = build_one("exec", "").unwrap_err();
    assert!(e.message.contains("cmd"), "{e}");
    let e = build_one("exec", "cmd = []").unwrap_err();
    assert!(e.message.starts_with("`cmd`"), "{e}");
    let e = build_one("exec", "cmd = [\"a\", \"b\"]\nshell = true").unwrap_err();
    assert!(e.message.contains("/bin/sh -c"), "{e}");
    let e = build_one("exec", "cmd = [\"cat\"]\ngrace = \"soon\"").unwrap_err();
    assert!(e.message.starts_with("`grace`"), "{e}");
    let e = build_one(
        "exec",
        "cmd = [\"cat\"]\nmode = \"shared\"\nmax_children = 3",
    )
    .unwrap_err();
    assert!(e.message.starts_with("`max_children`"), "{e}");
    let e = build_one("exec", "cmd = [\"cat\"]\nstderr = \"loud\"").unwrap_err();
    assert!(
        e.message.contains("\"log\", \"peer\" or \"discard\""),
        "{e}"
    );
    let e = build_one("exec", "cmd = [\"cat\"]\nrlimit_mem = 3").unwrap_err();
    assert!(e.message.contains("unknown key"), "{e}");
    let f = build_one("exec", "cmd = [\"cat\"]\nmax_children = 4").unwrap();
    assert_eq!(f.max_sessions(), Some(4));
}

#[test]
fn the_program_is_an_argv_with_a_cleared_environment() {
    let f = build_one(
        "exec",
        "cmd = [\"python3\", \"-u\", \"s.py\"]\nenv = { LANG = \"C.UTF-8\" }\nrlimit_cpu = 5",
    )
    .unwrap();
    let mut h = Harness::from_factories(&[f]);
    let out = h.open();
    let Action::Open { spec, id: 0, .. } = &out.actions()[0] else {
        panic!("{:?}", out.actions());
    };
    let Target::Program(p) = &spec.target else {
        panic!("a program")
    };
    assert_eq!(p.arg0, "python3");
    assert_eq!(p.args, ["-u", "s.py"]);
    assert_eq!(p.limits.cpu, Some(5));
    assert!(p.env.contains(&("LANG".into(), "C.UTF-8".into())));
    assert!(p.env.contains(&("PATH".into(), DEFAULT_PATH.into())));
    assert_eq!(p.env.len(), 2);
    assert_eq!(spec.grace, DEFAULT_GRACE);
    assert_eq!(spec.scope, ChannelScope::Session);

    let f = build_one("exec", "cmd = [\"echo hi | tr a-z A-Z\"]\nshell = true").unwrap();
    let mut h = Harness::from_factories(&[f]);
    let out = h.open();
    let Action::Open { spec, .. } = &out.actions()[0] else {
        panic!()
    };
    let Target::Program(p) = &spec.target else {
        panic!("a program")
    };
    assert_eq!(p.path, std::path::Path::new("/bin/sh"));
    assert_eq!(p.args, ["-c", "echo hi | tr a-z A-Z"]);
}

#[test]
fn line_framing_adds_and_cuts_newlines() {
    let f = build_one("exec", "cmd = [\"cat\"]").unwrap();
    let mut h = Harness::from_factories(&[f]);
    h.open();
    assert_eq!(written(h.message(b"hello")), ["hello\n"]);
    assert_eq!(h.flow(), Some(Flow::Handled));
    assert_eq!(written(h.message(b"done\n")), ["done\n"]);
    h.channel(0, 0, ChannelEvent::Opened);
    assert_eq!(h.sent(), Vec::<String>::new());
    h.channel(0, 0, ChannelEvent::Data(b"HEL"));
    assert!(h.sent().is_empty(), "no line yet");
    h.channel(0, 0, ChannelEvent::Data(b"LO\r\nA\nB"));
    assert_eq!(h.sent(), ["HELLO", "A"]);
    h.channel(0, 0, ChannelEvent::End);
    assert_eq!(h.sent(), ["B"], "the last unterminated line");
    let out = h.channel(0, 0, ChannelEvent::Closed(&Ending::Exited(0)));
    assert!(
        out.actions()
            .iter()
            .any(|a| matches!(a, Action::Close { .. }))
    );
    assert!(written(h.message(b"late")).is_empty(), "the child is gone");
}

#[test]
fn a_line_that_never_ends_is_sent_in_bounded_pieces() {
    let f = build_one("exec", "cmd = [\"cat\"]").unwrap();
    let mut h = Harness::from_factories(&[f]);
    h.open();
    let big = vec![b'x'; session::MAX_LINE * 2 + 10];
    let out = h.channel(0, 0, ChannelEvent::Data(&big));
    assert_eq!(out.messages().count(), 2);
    assert!(out.messages().all(|m| m.len() == session::MAX_LINE));
    assert_eq!(h.channel(0, 0, ChannelEvent::End).data().len(), 10);
}

#[test]
fn raw_framing_passes_bytes_through() {
    let f = build_one(
        "exec",
        "cmd = [\"cat\"]\nframing = \"raw\"\nstderr = \"peer\"",
    )
    .unwrap();
    let mut h = Harness::from_factories(&[f]);
    let out = h.open();
    let Action::Open { spec, .. } = &out.actions()[0] else {
        panic!()
    };
    let Target::Program(p) = &spec.target else {
        panic!("a program")
    };
    assert_eq!(p.stderr, Stderr::Channel);
    assert_eq!(written(h.message(b"a\x00b")), ["a\u{0}b"]);
    assert_eq!(h.channel(0, 0, ChannelEvent::Data(b"x\ny")).data(), b"x\ny");
    assert_eq!(
        h.channel(0, 0, ChannelEvent::Stderr(b"oops")).data(),
        b"oops"
    );
}

#[test]
fn shared_mode_speaks_json_lines_tagged_with_the_session() {
    let f = build_one("exec", "cmd = [\"python3\", \"hub.py\"]\nmode = \"shared\"").unwrap();
    let mut h = Harness::from_factories(&[f]);
    let out = h.open();
    let Action::Open { spec, .. } = &out.actions()[0] else {
        panic!()
    };
    assert_eq!(spec.scope, ChannelScope::Listener);
    let w = written(h.message(b"hi \"you\""));
    let v: serde_json::Value = serde_json::from_str(w[0].trim_end()).unwrap();
    assert_eq!(v["session"], 1);
    assert_eq!(v["event"], "message");
    assert_eq!(v["text"], "hi \"you\"");
    assert!(w[0].ends_with('\n'));
    let w = written(h.message(b"\xff\x00"));
    assert!(w[0].contains("\"hex\":\"ff00\""), "{w:?}");

    assert_eq!(
        h.channel(0, 0, ChannelEvent::Data(br#"{"session":1,"text":"HI"}"#))
            .data(),
        b"HI"
    );
    assert_eq!(
        h.channel(0, 0, ChannelEvent::Data(br#"{"session":1,"hex":"00ff"}"#))
            .data(),
        b"\x00\xff"
    );
    assert!(h.channel(0, 0, ChannelEvent::Data(b"not json")).is_empty());
    let out = h.channel(
        0,
        0,
        ChannelEvent::Data(br#"{"session":1,"text":"bye","close":true}"#),
    );
    assert_eq!(out.data(), b"bye");
    assert!(
        out.actions()
            .iter()
            .any(|a| matches!(a, Action::Close { .. }))
    );
}
