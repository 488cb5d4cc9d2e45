use super::*;

fn errors(text: &str) -> Vec<String> {
    parse(text, Path::new("t.toml"), Path::new("."))
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

const ONE: &str = "[[listener]]\nname = \"a\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = [\"echo\"]\n";

#[test]
fn embedded_default_is_valid() {
    let c = load(None).unwrap();
    assert_eq!(c.listeners.len(), 2);
    assert!(c.listeners.iter().all(|l| l.addr.port() == 8888));
}

#[test]
fn minimal_listener_gets_defaults() {
    let c = parse(ONE, Path::new("t.toml"), Path::new(".")).unwrap();
    let l = &c.listeners[0];
    assert_eq!(l.backlog, DEFAULT_BACKLOG);
    assert_eq!(l.framing, Framing::Raw);
    assert_eq!(c.daemon.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = errors(&format!("{ONE}colour = \"red\"\n"));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(
            "t.toml:7:1: listener \"a\" colour: unknown key (known keys: name, protocol,"
        ),
        "{e:?}"
    );
}

#[test]
fn handler_settings_errors_point_into_the_table() {
    let text = "[[listener]]\nname = \"a\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = [\"bye-close\", \"echo\"]\n[listener.bye-close]\nwrod = \"x\"\n";
    let e = errors(text);
    assert!(
        e[0] == "t.toml:8:1: listener \"a\" bye-close wrod: unknown key; did you mean `word`?",
        "{e:?}"
    );
}

#[test]
fn semantic_errors_are_all_reported() {
    let text = "[[listener]]\nname = \"a\"\nprotocol = \"udp\"\nip = \"localhost\"\nport = 0\nbacklog = 5\nhandlers = []\n";
    let e = errors(text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains(":4:6: listener \"a\" ip:"), "{e:?}");
    assert!(
        e[1].contains(":6:11: listener \"a\" backlog: backlog applies to TCP"),
        "{e:?}"
    );
    assert!(
        e[2].contains(":7:12: listener \"a\" handlers: the chain is empty"),
        "{e:?}"
    );
}

#[test]
fn duplicates_unknown_handlers_and_orphan_settings() {
    let text = format!("{ONE}port = 9\n");
    assert!(
        errors(&text)[0].contains("duplicate key"),
        "{:?}",
        errors(&text)
    );
    let text = format!(
        "{ONE}{}",
        ONE.replace("port = 0", "port = 7000")
            .replace("[\"echo\"]", "[\"eco\"]")
    );
    let e = errors(&text);
    assert!(
        e.iter()
            .any(|e| e.contains("listener \"a\" name: another listener has this name")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.contains("unknown handler \"eco\"")),
        "{e:?}"
    );
    let two = format!(
        "{}{}",
        ONE.replace("port = 0", "port = 7000"),
        ONE.replace("port = 0", "port = 7000")
            .replace("\"a\"", "\"b\"")
    );
    let e = errors(&two);
    assert!(
        e.iter()
            .any(|e| e.contains("127.0.0.1:7000/tcp is declared twice")),
        "{e:?}"
    );
    let e = errors(&format!("{ONE}[listener.bye-close]\nword = \"x\"\n"));
    assert!(e[0].contains("not in this listener's handlers"), "{e:?}");
}

#[test]
fn log_level_field_values_are_not_compiled_as_regexes() {
    // Not a valid regex, but a fine literal value: refused if values were compiled.
    let paren = format!("[daemon]\nlog_level = \"[{{f=(}}]=info\"\n{ONE}");
    assert!(parse(&paren, Path::new("t.toml"), Path::new(".")).is_ok());
    // Found by the config_parse fuzz target: as a regex, this value built a DFA for minutes
    // and gigabytes before `check` could answer.
    let slow = format!(
        "[daemon]\nlog_level = \"[{{f=a{}}}]=info\"\n{ONE}",
        ".".repeat(25)
    );
    assert!(parse(&slow, Path::new("t.toml"), Path::new(".")).is_ok());
}

#[test]
fn log_level_directives_may_have_spaces_around_them() {
    // Found by the config_parse fuzz target: tracing-subscriber's directive parser walks the
    // trimmed directive but slices the untrimmed one, so a leading space shifted every
    // index: a panic inside a multi-byte character, a refused level otherwise.
    for level in [
        " 客服=info",
        "info, switchboard=debug",
        "warn ,\tswitchboard=info ",
    ] {
        let text = format!("[daemon]\nlog_level = \"{level}\"\n{ONE}");
        let c = parse(&text, Path::new("t.toml"), Path::new("."));
        assert!(c.is_ok(), "{level:?}: {:?}", c.unwrap_err().0);
    }
    let filter = crate::logging::config_filter("info, switchboard=debug").unwrap();
    assert_eq!(filter.to_string(), "switchboard=debug,info");
}

#[test]
fn durations_and_levels_are_checked() {
    let e = errors(&format!(
        "[daemon]\ndrain_timeout = \"soon\"\nlog_level = \"loud\"\n{ONE}"
    ));
    assert!(
        e.iter()
            .any(|e| e.contains("t.toml:2:17: daemon drain_timeout")),
        "{e:?}"
    );
    assert!(e.iter().any(|e| e.contains("daemon log_level")), "{e:?}");
}

#[test]
fn the_messages_say_what_is_allowed_and_what_was_meant() {
    let text = "[[listener]]\nname = \"a\"\nprotocol = \"TCP\"\nip = \"127.0.0.1\"\nport = 70000\nhandlers = [\"echo\"]\n";
    assert_eq!(
        errors(text),
        [
            "t.toml:3:12: listener \"a\" protocol: \"TCP\" is not allowed; expected \"tcp\" or \"udp\" (write `tcp`: values are lowercase)",
            "t.toml:5:8: listener \"a\" port: 70000 is out of range: expected a whole number from 0 to 65535",
        ]
    );
    let e = errors(
        &ONE.replace("port = 0", "port = \"8888\"")
            .replace("[\"echo\"]", "[\"ecoh\"]"),
    );
    assert_eq!(
        e,
        [
            "t.toml:5:8: listener \"a\" port: expected a whole number from 0 to 65535, found a string (\"8888\"); write it without quotes: 8888",
            "t.toml:6:13: listener \"a\" handlers: unknown handler \"ecoh\"; did you mean \"echo\"? (known handlers: echo, bye-close, console-reply, scripted-reply, exec, forward)",
        ]
    );
}

#[test]
fn a_single_bracket_listener_says_that_two_are_meant() {
    let e = errors(
        &ONE.replace("[[listener]]", "[listener]")
            .replace("port = 0", "prot = 0"),
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:1:1: listener: `[listener]` declares a single table, but listeners are a list: write `[[listener]]`"),
        "{e:?}"
    );
    // What it says is still checked, as the listener it was meant to be.
    assert!(
        e[1].starts_with("t.toml:1:1: listener \"a\" port: missing"),
        "{e:?}"
    );
    assert_eq!(
        e[2],
        "t.toml:5:1: listener \"a\" prot: unknown key; did you mean `port`?"
    );
}

#[test]
fn one_mistake_hides_no_other() {
    // A typo in [daemon] used to hide everything after it; two typos in one listener showed
    // only the first.
    let text = format!(
        "[daemon]\nlog_levl = \"info\"\n{ONE}protocl = \"tcp\"\nbaclog = 5\n{}",
        ONE.replace("[\"echo\"]", "[]")
    );
    let e = errors(&text);
    assert_eq!(
        e,
        [
            "t.toml:2:1: daemon log_levl: unknown key; did you mean `log_level`?",
            "t.toml:9:1: listener \"a\" protocl: unknown key; did you mean `protocol`?",
            "t.toml:10:1: listener \"a\" baclog: unknown key; did you mean `backlog`?",
            "t.toml:12:8: listener \"a\" name: another listener has this name; names must be unique",
            "t.toml:16:12: listener \"a\" handlers: the chain is empty; name at least one of: echo, bye-close, console-reply, scripted-reply, exec, forward",
        ]
    );
}

#[test]
fn syntax_errors_are_all_listed() {
    let e = errors(&format!("{ONE}port = 9\nname = \"b\"\n"));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e.iter().all(|e| e.contains("duplicate key")), "{e:?}");
}

#[test]
fn support_desk_keys_have_defaults_and_are_checked() {
    let c = parse(ONE, Path::new("t.toml"), Path::new("/etc/sb")).unwrap();
    assert_eq!(c.listeners[0].reply_mode, ReplyMode::Free);
    assert_eq!(c.listeners[0].transcripts, None);
    let text = format!(
        "{ONE}reply_mode = \"one-per-message\"\ntranscripts = \"talk\"\nmax_transcript = 8192\n"
    );
    let c = parse(&text, Path::new("t.toml"), Path::new("/etc/sb")).unwrap();
    let l = &c.listeners[0];
    assert_eq!(l.reply_mode, ReplyMode::OnePerMessage);
    let t = l.transcripts.as_deref().unwrap();
    assert_eq!(t.dir, Path::new("/etc/sb/talk"), "relative to the config");
    assert_eq!(t.max_file, 8192);
    assert_eq!(
        t.file("bot", "2026-03-01"),
        Path::new("/etc/sb/talk/bot-2026-03-01.jsonl")
    );

    let e = errors(&format!(
        "{ONE}reply_mode = \"one\"\nmax_transcript = 100\n"
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:7:14: listener \"a\" reply_mode: \"one\" is not allowed; expected \"free\" or \"one-per-message\""),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("t.toml:8:18: listener \"a\" max_transcript:"),
        "{e:?}"
    );
    let e = errors(&format!("{ONE}max_transcript = 100000\n"));
    assert!(
        e[0].contains("max_transcript bounds the transcript files, but `transcripts`"),
        "{e:?}"
    );
}

#[test]
fn a_bot_that_hands_over_needs_a_person_after_it() {
    let bot = "[listener.scripted-reply]\nfallback = \"?\"\nhandoff_after_unmatched = 2\n";
    let listener = |handlers: &str| {
        format!(
            "[[listener]]\nname = \"a\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = {handlers}\n{bot}"
        )
    };
    let e = errors(&listener("[\"bye-close\", \"scripted-reply\"]"));
    assert_eq!(
        e,
        [
            "t.toml:6:12: listener \"a\" handlers: \"scripted-reply\" hands sessions to a person (`handoff`), but no handler after it takes operator lines: add \"console-reply\" after it"
        ]
    );
    let e = errors(&listener("[\"console-reply\", \"scripted-reply\"]"));
    assert_eq!(e.len(), 1, "a person before the bot never gets the session");
    let ok = listener("[\"scripted-reply\", \"console-reply\"]");
    assert!(parse(&ok, Path::new("t.toml"), Path::new(".")).is_ok());
}

#[test]
fn the_web_console_keys_are_read_checked_and_refused_where_unsafe() {
    let ok = format!(
        "[daemon]\nweb = \"127.0.0.1:9899\"\nweb_origins = [\"HTTPS://Desk.Example.com\"]\nweb_session = \"8h\"\n{ONE}"
    );
    let c = parse(&ok, Path::new("t.toml"), Path::new("/etc/sb")).unwrap();
    let w = c.daemon.web.expect("web");
    assert_eq!(w.addr, "127.0.0.1:9899".parse().unwrap());
    assert!(w.token && w.token_file.is_none() && w.password_hash.is_none());
    assert_eq!(w.origins, ["https://desk.example.com"]);
    assert_eq!(w.session, Duration::from_secs(8 * 3600));
    let file =
        format!("[daemon]\nweb = \"0.0.0.0:9899\"\nweb_token_file = \"private/web-token\"\n{ONE}");
    let c = parse(&file, Path::new("t.toml"), Path::new("/etc/sb")).unwrap();
    assert_eq!(
        c.daemon.web.unwrap().token_file.unwrap(),
        Path::new("/etc/sb/private/web-token")
    );
    let bad = [
        (
            "web = \"0.0.0.0:9899\"",
            "2:7: daemon web: the web console on 0.0.0.0:9899 is reachable",
        ),
        (
            "web = \"localhost\"",
            "2:7: daemon web: \"localhost\" is not an ip:port",
        ),
        (
            "web_session = \"1h\"",
            "2:15: daemon web_session: means nothing without `web`",
        ),
        (
            "web = \"127.0.0.1:1\"\nweb_token = false",
            "3:13: daemon web_token: web_token = false leaves",
        ),
        (
            "web = \"127.0.0.1:1\"\nweb_password_hash = \"hunter2\"",
            "3:21: daemon web_password_hash: not a password hash",
        ),
        (
            "web = \"127.0.0.1:1\"\nweb_origins = [\"desk.example.com\"]",
            "3:16: daemon web_origins: \"desk.example.com\" is not an origin",
        ),
        (
            "web = \"127.0.0.1:1\"\nweb_session = \"10s\"",
            "3:15: daemon web_session: a login must last at least a minute",
        ),
    ];
    for (keys, want) in bad {
        let e = errors(&format!("[daemon]\n{keys}\n{ONE}"));
        assert!(
            e.iter().any(|e| e.starts_with(&format!("t.toml:{want}"))),
            "{keys}: {e:?}"
        );
    }
}
