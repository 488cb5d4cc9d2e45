//! Running as a service: reload, status, metrics, log reopen, reuse_port.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::util::*;

const ECHO: &str = "[\"echo\"]";

fn rewrite(d: &Daemon, config: &str) {
    std::fs::write(
        d.dir.path().join("switchboard.toml"),
        with_json_logs(config),
    )
    .unwrap();
}

fn v2_bot() -> &'static str {
    "[listener.scripted-reply]\n[[listener.scripted-reply.rule]]\nmatch = \"regex\"\npattern = \".*\"\nreply = \"v2\""
}

#[test]
fn sessions_keep_talking_across_a_reload_that_adds_removes_and_changes() {
    let before = format!(
        "{}{}{}{}",
        tcp_listener("keep", ECHO, ""),
        udp_listener("udp", ECHO, ""),
        tcp_listener("gone", ECHO, ""),
        tcp_listener("changed", ECHO, "")
    );
    let mut d = Daemon::start(&before);
    let mut keep = connect(d.addr("keep"));
    let u = udp_client();
    let mut gone = connect(d.addr("gone"));
    let mut changed_old = connect(d.addr("changed"));
    assert_eq!(ask(&mut keep, "one"), "one");
    assert_eq!(udp_ask(&u, d.addr("udp"), "one"), "one");
    assert_eq!(ask(&mut changed_old, "one"), "one");

    let after = format!(
        "{}{}{}{}",
        tcp_listener("keep", ECHO, ""),
        udp_listener("udp", ECHO, ""),
        tcp_listener("changed", "[\"scripted-reply\"]", v2_bot()),
        tcp_listener("new", ECHO, "")
    );
    rewrite(&d, &after);
    d.signal(libc::SIGHUP);
    let new = d.wait_event("listening");
    assert_eq!(field(&new, "listener"), "new");
    let summary = d.wait_event("reloaded");
    let summary = field(&summary, "summary");
    assert!(
        summary.contains("added new")
            && summary.contains("removed gone")
            && summary.contains("changed changed"),
        "{summary}"
    );

    // Same sockets: the TCP session and the UDP peer go on as if nothing happened.
    assert_eq!(ask(&mut keep, "two"), "two");
    assert_eq!(udp_ask(&u, d.addr("udp"), "two"), "two");
    // The removed listener's open session finishes on its own; new connections are refused.
    assert_eq!(ask(&mut gone, "still here"), "still here");
    assert!(TcpStream::connect(d.addr("gone")).is_err());
    // The changed listener: open sessions keep their chain, new ones get the new one.
    assert_eq!(ask(&mut changed_old, "old chain"), "old chain");
    let mut changed_new = connect(d.addr("changed"));
    assert_eq!(ask(&mut changed_new, "hello"), "v2");
    // The added listener serves.
    let addr: std::net::SocketAddr = field(&new, "addr").parse().unwrap();
    assert_eq!(ask(&mut connect(addr), "new"), "new");
}

#[test]
fn an_invalid_config_on_reload_changes_nothing() {
    let config = format!(
        "{}{}",
        tcp_listener("a", ECHO, ""),
        tcp_listener("b", ECHO, "")
    );
    let mut d = Daemon::start(&config);
    let mut a = connect(d.addr("a"));
    rewrite(
        &d,
        &format!("{}colour = \"red\"\n", tcp_listener("a", ECHO, "")),
    );
    d.signal(libc::SIGHUP);
    let err = d
        .wait_for(|v| event(v) == "config_error")
        .expect("the error is logged");
    assert_eq!(field(&err, "level"), "ERROR");
    assert!(
        field(&err, "error").contains("switchboard.toml:8:1: listener \"a\" colour: unknown key"),
        "the error names file, line and key: {err}"
    );
    d.wait_event("reload_refused");
    assert_eq!(ask(&mut a, "still"), "still");
    assert_eq!(ask(&mut connect(d.addr("b")), "b too"), "b too");
}

#[test]
fn reload_and_status_commands_over_the_control_socket() {
    let mut d = Daemon::start(&tcp_listener("a", ECHO, ""));
    let sock = d.dir.path().join("ctl.sock");
    let mut c = connect(d.addr("a"));
    assert_eq!(ask(&mut c, "12345"), "12345");
    let o = run(&["status", "--socket", sock.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("a 127.0.0.1:")
            && out.contains("active 1")
            && out.contains("messages in 1 out 1 bytes in 5 out 5"),
        "{out}"
    );
    rewrite(
        &d,
        &format!(
            "{}{}",
            tcp_listener("a", ECHO, ""),
            udp_listener("b", ECHO, "")
        ),
    );
    let o = run(&["reload", "--socket", sock.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("reloaded: added b; removed -; changed -; unchanged 1"),
        "{}",
        stdout(&o)
    );
    d.wait_event("reloaded");
    rewrite(&d, "nonsense = 1\n");
    let o = run(&["reload", "--socket", sock.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("reload refused"), "{}", stdout(&o));
}

#[test]
fn log_level_changes_on_reload() {
    let config = tcp_listener("a", ECHO, "");
    let mut d = Daemon::start(&config);
    rewrite(&d, &format!("[daemon]\nlog_level = \"debug\"\n{config}"));
    d.signal(libc::SIGHUP);
    d.wait_event("reloaded");
    let mut c = connect(d.addr("a"));
    assert_eq!(ask(&mut c, "now visible"), "now visible");
    let ev = d.wait_event("message");
    assert_eq!(field(&ev, "text"), "now visible");
}

#[test]
fn metrics_match_a_known_exchange() {
    let config = format!(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n{}{}",
        tcp_listener("t", "[\"bye-close\", \"echo\"]", ""),
        udp_listener("u", ECHO, "")
    );
    let mut d = Daemon::start(&config);
    // Logged before "ready", so it is already among the lines read.
    let ev: serde_json::Value = d
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v| event(v) == "metrics_listening")
        .expect("metrics listening");
    let metrics: std::net::SocketAddr = field(&ev, "addr").parse().unwrap();
    let mut c = connect(d.addr("t"));
    assert_eq!(ask(&mut c, "hello"), "hello");
    assert_eq!(ask(&mut c, "bye"), "bye");
    assert!(closed(&mut c));
    d.wait_event("session_closed");
    let u = udp_client();
    assert_eq!(udp_ask(&u, d.addr("u"), "abc"), "abc");
    let body = http_get(metrics, "/metrics");
    for line in [
        "switchboard_sessions_opened_total{listener=\"t\",proto=\"tcp\"} 1",
        "switchboard_sessions_closed_total{listener=\"t\",proto=\"tcp\"} 1",
        "switchboard_messages_in_total{listener=\"t\",proto=\"tcp\"} 2",
        "switchboard_bytes_out_total{listener=\"t\",proto=\"tcp\"} 8",
        "switchboard_sessions_active{listener=\"u\",proto=\"udp\"} 1",
        "switchboard_bytes_in_total{listener=\"u\",proto=\"udp\"} 3",
        "switchboard_listener_up{listener=\"t\",proto=\"tcp\"} 1",
    ] {
        assert!(body.contains(line), "missing {line:?} in\n{body}");
    }
    assert!(http_get(metrics, "/other").starts_with("HTTP/1.1 404"));
}

#[test]
fn metrics_scrapers_are_capped_and_timed_out() {
    let mut d = Daemon::start(&format!(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n{}",
        tcp_listener("t", ECHO, "")
    ));
    let ev = d
        .events("metrics_listening")
        .next()
        .expect("metrics listening");
    let metrics: std::net::SocketAddr = field(&ev, "addr").parse().unwrap();
    // Scrapers that never send their request take every place...
    let mut idle: Vec<std::net::TcpStream> = (0..16).map(|_| connect(metrics)).collect();
    // ...so one more waits (in the listen backlog), while the loop still serves sessions.
    let start = std::time::Instant::now();
    let waiting = std::thread::spawn(move || http_get(metrics, "/metrics"));
    d.wait_event("scrapers_full");
    assert_eq!(ask(&mut connect(d.addr("t")), "served"), "served");
    // The silent ones are dropped after the scrape timeout, and the one waiting is served.
    assert!(closed(&mut idle[0]), "a silent scraper is dropped");
    assert!(
        start.elapsed() >= std::time::Duration::from_secs(3),
        "not before its time"
    );
    let body = waiting.join().unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    idle.clear();
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn sigusr2_reopens_the_log_file() {
    let config = format!(
        "[daemon]\nlog_file = \"sb.log\"\n{}",
        tcp_listener("a", ECHO, "")
    );
    let d = Daemon::spawn(&config, |_| {});
    let log = d.dir.path().join("sb.log");
    let moved = d.dir.path().join("sb.log.1");
    wait_until(|| std::fs::read_to_string(&log).is_ok_and(|l| l.contains("\"ready\"")));
    std::fs::rename(&log, &moved).unwrap();
    d.signal(libc::SIGUSR2);
    wait_until(|| std::fs::read_to_string(&log).is_ok_and(|l| l.contains("log file reopened")));
    d.signal(libc::SIGUSR1);
    wait_until(|| std::fs::read_to_string(&log).is_ok_and(|l| l.contains("session(s) open")));
    assert!(
        !std::fs::read_to_string(&moved)
            .unwrap()
            .contains("session(s) open")
    );
}

/// Poll a condition on files (the daemon writes them through a background thread, so there
/// is no event to wait for) until it holds or `WAIT` passes.
fn wait_until(cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {WAIT:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn two_daemons_share_a_port_with_reuse_port() {
    let first = Daemon::start(&tcp_listener("shared", ECHO, "reuse_port = true"));
    let port = first.addr("shared").port();
    let mut second = Daemon::start(
        &tcp_listener("shared", ECHO, "reuse_port = true")
            .replace("port = 0", &format!("port = {port}")),
    );
    assert_eq!(second.addr("shared").port(), port);
    let mut first = first;
    for i in 0..32 {
        let mut c = connect(first.addr("shared"));
        assert_eq!(ask(&mut c, &format!("m{i}")), format!("m{i}"));
    }
    // The kernel spreads connections over both: each daemon served some.
    assert!(first.wait_for(|v| event(v) == "session_closed").is_some());
    assert!(second.wait_for(|v| event(v) == "session_closed").is_some());
}

#[test]
fn root_drops_to_the_configured_user_after_binding() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping privileges needs the test to run as root");
        return;
    }
    // The control socket in a folder the daemon makes and gives to that user, not beside
    // the config: a folder that was already there must belong to the user the daemon serves as.
    let d = Daemon::start(&format!(
        "[daemon]\nuser = \"nobody\"\ncontrol_socket = \"run/ctl.sock\"\n{}",
        tcp_listener("a", ECHO, "")
    ));
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid}"
    );
    assert_eq!(ask(&mut connect(d.addr("a")), "as nobody"), "as nobody");
}

#[test]
fn scripts_that_are_not_regular_files_are_refused_without_hanging() {
    let bot = |script: &str| {
        tcp_listener(
            "a",
            "[\"scripted-reply\"]",
            &format!("[listener.scripted-reply]\nscript = \"{script}\""),
        )
    };
    let mut d = Daemon::start(&tcp_listener("a", ECHO, ""));
    let fifo = d.dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let mut c = connect(d.addr("a"));
    for script in [fifo.to_str().unwrap(), "/dev/zero"] {
        // `check` says why at once...
        let path = d.dir.path().join("check.toml");
        std::fs::write(&path, bot(script)).unwrap();
        let o = run(&["check", "-c", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
        // ...and a reload to it is refused while the daemon goes on serving.
        rewrite(&d, &bot(script));
        d.signal(libc::SIGHUP);
        let ev = d.wait_event("reload_refused");
        assert!(field(&ev, "error").contains("not a regular file"), "{ev}");
        assert_eq!(ask(&mut c, "still"), "still");
    }
}

#[test]
fn a_large_script_is_compiled_while_the_loop_keeps_serving() {
    let rules: String = (0..20_000)
        .map(|i| format!("[[rule]]\nmatch = \"exact\"\npattern = \"q{i}\"\nreply = \"a{i}\"\n"))
        .collect();
    // Debug, so that the daemon logs each message: its log is in the order it did things.
    let debug = "[daemon]\nlog_level = \"info,switchboard::daemon=debug\"\n";
    let echo = format!("{debug}{}", tcp_listener("a", ECHO, ""));
    let bot = format!(
        "{echo}{}",
        tcp_listener(
            "bot",
            "[\"scripted-reply\"]",
            "[listener.scripted-reply]\nscript = \"rules.toml\""
        )
    );
    let mut d = Daemon::start_with(&echo, |dir| {
        std::fs::write(dir.join("rules.toml"), &rules).unwrap()
    });
    let mut c = connect(d.addr("a"));
    rewrite(&d, &bot);
    d.signal(libc::SIGHUP);
    d.wait_event("reload_started");
    assert_eq!(ask(&mut c, "ping"), "ping");
    let ev = d.wait_event("reloaded");
    assert!(field(&ev, "summary").contains("added bot"), "{ev}");
    // The loop answered while the new config was compiled: the message comes before the end
    // of the reload in the daemon's own log.
    let order: Vec<String> = d
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| event(v) == "reloaded" || (event(v) == "message" && field(v, "text") == "ping"))
        .map(|v| event(&v).to_string())
        .collect();
    assert_eq!(order, ["message", "reloaded"]);
    let bot = d
        .events("listening")
        .find(|v| field(v, "listener") == "bot")
        .expect("the new listener");
    let mut b = connect(field(&bot, "addr").parse().unwrap());
    assert_eq!(ask(&mut b, "q19999"), "a19999");
}

#[test]
fn public_listeners_without_allow_and_public_metrics_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("public.toml");
    let open = tcp_listener("open", ECHO, "").replace("127.0.0.1", "0.0.0.0");
    let guarded =
        tcp_listener("guarded", ECHO, "allow = [\"10.0.0.0/8\"]").replace("127.0.0.1", "0.0.0.0");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nmetrics = \"0.0.0.0:0\"\n{open}{guarded}{}",
            tcp_listener("local", ECHO, "")
        ),
    )
    .unwrap();
    let o = run(&["check", "-c", path.to_str().unwrap()]);
    assert!(o.status.success(), "warnings are no errors: {}", stderr(&o));
    let err = stderr(&o);
    let warned: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned[0].contains("listener \"open\"") && warned[0].contains("allow"));
    assert!(warned[1].contains("metrics"));
    // The daemon says the same when it starts.
    let d = Daemon::start(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(d.events("public_bind").count(), 2);
}

#[test]
fn sigterm_delivers_every_reply_already_decided() {
    let bot = "[listener.scripted-reply]\n[[listener.scripted-reply.rule]]\nmatch = \"exact\"\npattern = \"slow\"\nreply = \"late\"\ndelay = \"300ms\"";
    // Debug: the daemon logs each message it takes, so the test knows all arrived.
    let mut d = Daemon::start(&format!(
        "[daemon]\nlog_level = \"info,switchboard::daemon=debug\"\n{}{}",
        udp_listener("u", ECHO, "delay = \"1s\""),
        tcp_listener("bot", "[\"scripted-reply\"]", bot)
    ));
    let peers: Vec<std::net::UdpSocket> = (0..5).map(|_| udp_client()).collect();
    for p in &peers {
        p.send_to(b"delayed", d.addr("u")).unwrap();
    }
    let mut c = connect(d.addr("bot"));
    c.write_all(b"slow").unwrap();
    for _ in 0..6 {
        d.wait_event("message");
    }
    d.signal(libc::SIGTERM);
    let mut buf = [0; 64];
    for p in &peers {
        let (n, _) = p.recv_from(&mut buf).expect("the delayed reply");
        assert_eq!(&buf[..n], b"delayed");
    }
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(got, "late");
    assert!(d.wait_exit().success());
}

#[test]
fn a_udp_listener_removed_and_added_back_keeps_serving() {
    let mut d = Daemon::start(&format!(
        "{}{}",
        tcp_listener("t", ECHO, ""),
        udp_listener("u", ECHO, "")
    ));
    let u = d.addr("u");
    let peer = udp_client();
    assert_eq!(udp_ask(&peer, u, "one"), "one");
    let pinned = udp_listener("u", ECHO, "").replace("port = 0", &format!("port = {}", u.port()));
    rewrite(&d, &tcp_listener("t", ECHO, ""));
    d.signal(libc::SIGHUP);
    d.wait_event("reloaded");
    assert_eq!(udp_ask(&peer, u, "two"), "two", "its peer is still served");
    rewrite(&d, &format!("{}{pinned}", tcp_listener("t", ECHO, "")));
    d.signal(libc::SIGHUP);
    let ev = d
        .wait_for(|v| event(v) == "reloaded" || event(v) == "reload_refused")
        .unwrap();
    assert_eq!(event(&ev), "reloaded", "{ev}");
    assert_eq!(udp_ask(&udp_client(), u, "new peer"), "new peer");
    assert_eq!(udp_ask(&peer, u, "three"), "three");
}

#[test]
fn add_and_remove_cycles_leave_no_rows_in_status_or_metrics() {
    let base = format!(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n{}",
        tcp_listener("t", ECHO, "")
    );
    let mut d = Daemon::start(&base);
    let metrics: std::net::SocketAddr =
        field(&d.events("metrics_listening").next().unwrap(), "addr")
            .parse()
            .unwrap();
    let extra = format!("{base}{}", udp_listener("x", ECHO, ""));
    for i in 0..50 {
        for config in [&extra, &base] {
            rewrite(&d, config);
            d.signal(libc::SIGHUP);
            d.wait_event("reloaded");
            if i == 0 && config == &extra {
                assert!(http_get(metrics, "/metrics").contains("listener=\"x\""));
            }
        }
    }
    let sock = d.dir.path().join("ctl.sock");
    let o = run(&["status", "--socket", sock.to_str().unwrap()]);
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
    let body = http_get(metrics, "/metrics");
    assert_eq!(
        body.lines()
            .filter(|l| l.starts_with("switchboard_sessions_active{"))
            .count(),
        1,
        "{body}"
    );
}
