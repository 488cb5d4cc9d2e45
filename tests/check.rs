//! `switchboard check`: every error of a config at once, each naming its place and key.

use crate::util::*;

/// Ten independent mistakes: unknown keys, wrong types and bad values, in the `[daemon]`
/// table, in three listeners and in a handler's settings.
const TEN_ERRORS: &str = r#"[daemon]
log_levl = "info"
log_format = "JSON"
drain_timeout = 5

[[listener]]
name = "a"
protocol = "TCP"
ip = "127.0.0.1"
port = 70000
backlg = 5
handlers = ["echo"]

[[listener]]
name = "b"
protocol = "udp"
ip = "127.0.0.1"
port = 0
handlers = ["bye-close", "echo"]
idle_timeout = "soon"
loss = 1.5

[listener.bye-close]
scope = "world"

[[listener]]
name = "c"
protocol = "tcp"
ip = "127.0.0.1"
port = 0
handlers = ["eco"]
"#;

#[test]
fn a_file_with_ten_independent_errors_reports_ten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ten.toml");
    std::fs::write(&path, TEN_ERRORS).unwrap();
    let file = path.to_str().unwrap();
    let o = run(&["check", "-c", file]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    let (summary, errors) = lines.split_last().unwrap();
    assert_eq!(*summary, "switchboard: 10 error(s)", "{err}");
    // file:line:col, then the key, in the order of the file.
    let places: Vec<(&str, &str)> = errors
        .iter()
        .map(|l| {
            let rest = l
                .strip_prefix(&format!("{file}:"))
                .unwrap_or_else(|| panic!("no file in {l:?}"));
            let (place, rest) = rest.split_once(": ").unwrap();
            let (key, _) = rest.split_once(": ").unwrap();
            (place, key)
        })
        .collect();
    assert_eq!(
        places,
        [
            ("2:1", "daemon log_levl"),
            ("3:14", "daemon log_format"),
            ("4:17", "daemon drain_timeout"),
            ("8:12", "listener \"a\" protocol"),
            ("10:8", "listener \"a\" port"),
            ("11:1", "listener \"a\" backlg"),
            ("20:16", "listener \"b\" idle_timeout"),
            ("21:8", "listener \"b\" loss"),
            ("24:9", "listener \"b\" bye-close scope"),
            ("31:13", "listener \"c\" handlers"),
        ],
        "{err}"
    );
    // What is allowed, and what was probably meant.
    for part in [
        "log_levl: unknown key; did you mean `log_level`?",
        "\"JSON\" is not allowed; expected \"text\" or \"json\" (write `json`: values are lowercase)",
        "drain_timeout: expected a duration in quotes, like \"5s\", \"800ms\" or \"10m\", found an integer; for seconds write \"5s\"",
        "\"TCP\" is not allowed; expected \"tcp\" or \"udp\" (write `tcp`",
        "70000 is out of range: expected a whole number from 0 to 65535",
        "backlg: unknown key; did you mean `backlog`?",
        "\"soon\" is not a duration",
        "1.5 is out of range: expected a number from 0.0 to 1.0",
        "\"world\" is not allowed; expected \"session\", \"listener\" or \"daemon\"",
        "unknown handler \"eco\"; did you mean \"echo\"?",
    ] {
        assert!(err.contains(part), "{part:?} missing in:\n{err}");
    }
}

#[test]
fn one_bracket_pair_for_the_listener_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("single.toml");
    std::fs::write(
        &path,
        tcp_listener("a", "[\"echo\"]", "").replace("[[listener]]", "[listener]"),
    )
    .unwrap();
    let o = run(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(":1:1: listener: `[listener]` declares a single table")
            && err.contains("write `[[listener]]`"),
        "{err}"
    );
    assert!(err.ends_with("switchboard: 1 error(s)\n"), "{err}");
}
