//! The core daemon: listeners, framing, echo, bye-close, shutdown, config errors.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use crate::util::*;

const ECHO: &str = "[\"echo\"]";
const BYE_ECHO: &str = "[\"bye-close\", \"echo\"]";
/// The daemon's own debug events (a session opening, output piling up).
const DEBUG: &str = "[daemon]\nlog_level = \"info,switchboard::daemon=debug\"\n";

#[test]
fn tcp_echo_answers_a_send_without_newline_like_the_tutorial_client() {
    let d = Daemon::start(&tcp_listener("t", ECHO, ""));
    let mut c = connect(d.addr("t"));
    assert_eq!(
        ask(&mut c, "welcome to Python world"),
        "welcome to Python world"
    );
    assert_eq!(ask(&mut c, "你好"), "你好");
}

#[test]
fn udp_echo_answers_each_datagram_to_its_sender() {
    let d = Daemon::start(&udp_listener("u", ECHO, ""));
    let (a, b) = (udp_client(), udp_client());
    assert_eq!(udp_ask(&a, d.addr("u"), "from a"), "from a");
    assert_eq!(udp_ask(&b, d.addr("u"), "from b"), "from b");
    assert_eq!(udp_ask(&a, d.addr("u"), ""), "");
}

#[test]
fn line_framing_joins_split_lines_and_splits_joined_ones() {
    let d = Daemon::start(&tcp_listener("t", ECHO, "framing = \"line\""));
    let mut c = connect(d.addr("t"));
    c.write_all(b"hel").unwrap();
    c.flush().unwrap();
    // The first half alone is no message: nothing comes back until the newline.
    c.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0; 16];
    assert!(
        c.read(&mut buf).is_err(),
        "a partial line must not be answered"
    );
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"lo\r\none\ntwo\n").unwrap();
    assert_eq!(read_n(&mut c, 14), b"hello\none\ntwo\n");
    // A last line without newline is still delivered when the peer half-closes.
    c.write_all(b"tail").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"tail\n");
}

#[test]
fn raw_framing_splits_reads_longer_than_max_message() {
    let d = Daemon::start(&tcp_listener("t", ECHO, "max_message = 4"));
    let mut c = connect(d.addr("t"));
    c.write_all(b"0123456789").unwrap();
    assert_eq!(read_n(&mut c, 10), b"0123456789");
}

#[test]
fn tutorial_multi_turn_client_then_bye_gets_bye_and_close() {
    let mut d = Daemon::start(&tcp_listener("chat", BYE_ECHO, "backlog = 5"));
    let mut c = connect(d.addr("chat"));
    for m in ["你好", "how are you", "byebye"] {
        assert_eq!(ask(&mut c, m), m);
    }
    assert_eq!(ask(&mut c, "bye"), "bye");
    assert!(closed(&mut c), "the server closes after bye");
    let ev = d.wait_event("session_closed");
    assert_eq!(field(&ev, "reason"), "handler");
    assert_eq!(field(&ev, "messages_in"), "4");
    // Other clients are still served.
    assert_eq!(ask(&mut connect(d.addr("chat")), "again"), "again");
}

#[test]
fn bye_close_on_udp_replies_and_forgets_the_peer() {
    let mut d = Daemon::start(&format!("{DEBUG}{}", udp_listener("u", BYE_ECHO, "")));
    let c = udp_client();
    assert_eq!(udp_ask(&c, d.addr("u"), "hi"), "hi");
    assert_eq!(udp_ask(&c, d.addr("u"), "bye"), "bye");
    let ev = d.wait_event("session_closed");
    assert_eq!(field(&ev, "reason"), "handler");
    // The same peer speaking again opens a new session.
    assert_eq!(udp_ask(&c, d.addr("u"), "back"), "back");
    let ev = d.wait_event("session_opened");
    assert_eq!(field(&ev, "session"), "2");
}

#[test]
fn bye_scope_listener_is_the_one_shot_server() {
    let config = tcp_listener(
        "once",
        BYE_ECHO,
        "[listener.bye-close]\nscope = \"listener\"",
    );
    let mut d = Daemon::start(&config);
    let addr = d.addr("once");
    let mut c = connect(addr);
    assert_eq!(ask(&mut c, "bye"), "bye");
    assert!(closed(&mut c));
    d.wait_event("listener_stopped");
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
    assert!(d.wait_exit().success(), "nothing left to serve: exit 0");
}

#[test]
fn bye_scope_daemon_is_the_udp_customer_service_server() {
    let config = udp_listener(
        "kefu",
        BYE_ECHO,
        "[listener.bye-close]\nscope = \"daemon\"\nreply = \"\"",
    );
    let mut d = Daemon::start(&config);
    let c = udp_client();
    assert_eq!(udp_ask(&c, d.addr("kefu"), "在吗"), "在吗");
    c.send_to(b"bye", d.addr("kefu")).unwrap();
    assert!(d.wait_exit().success());
}

#[test]
fn bye_word_and_case_are_configurable() {
    let config = tcp_listener(
        "t",
        BYE_ECHO,
        "[listener.bye-close]\nword = \"再见\"\nreply = \"再见！\"",
    );
    let d = Daemon::start(&config);
    let mut c = connect(d.addr("t"));
    assert_eq!(
        ask(&mut c, "bye"),
        "bye",
        "the default word no longer ends it"
    );
    assert_eq!(ask(&mut c, "再见\n"), "再见！");
    assert!(closed(&mut c));
}

#[test]
fn two_hundred_concurrent_tcp_clients_all_get_their_echo() {
    let d = Daemon::start(&tcp_listener("t", ECHO, ""));
    let addr = d.addr("t");
    let mut clients: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("client {i:03}").as_bytes()).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(read_n(c, 10), format!("client {i:03}").as_bytes());
    }
}

#[test]
fn idle_sessions_are_closed_after_idle_timeout() {
    let mut d = Daemon::start(&format!(
        "{}{}",
        tcp_listener("t", ECHO, "idle_timeout = \"300ms\""),
        udp_listener("u", ECHO, "idle_timeout = \"300ms\"")
    ));
    let mut c = connect(d.addr("t"));
    assert_eq!(ask(&mut c, "ping"), "ping");
    assert!(closed(&mut c), "closed for idleness");
    let ev = d.wait_for(|v| event(v) == "session_closed").unwrap();
    assert_eq!(field(&ev, "reason"), "idle_timeout");
    let u = udp_client();
    assert_eq!(udp_ask(&u, d.addr("u"), "x"), "x");
    let ev = d.wait_for(|v| event(v) == "session_closed").unwrap();
    assert_eq!(field(&ev, "reason"), "idle_timeout");
}

#[test]
fn sigterm_flushes_pending_replies_then_exits_zero() {
    // A drain_timeout far above what flushing 2 MiB takes, even on a loaded machine: the
    // test is about what a graceful stop delivers, not about the default timeout.
    let mut d = Daemon::start(&format!(
        "{DEBUG}drain_timeout = \"60s\"\n{}",
        tcp_listener("t", ECHO, "max_output = 16777216")
    ));
    let mut c = connect(d.addr("t"));
    let idle = connect(d.addr("t"));
    // Send 2 MiB without reading: the echo piles up in the daemon's output buffer.
    let block = vec![b'x'; 64 * 1024];
    let mut writer = c.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for _ in 0..32 {
            if writer.write_all(&block).is_err() {
                break;
            }
        }
    });
    d.wait_for(|v| event(v) == "session_opened" && field(v, "session") == "2")
        .expect("second session");
    // Wait until the daemon has read a good part of it (its reads are logged at debug only,
    // so watch the socket instead: the echo starts arriving).
    let mut first = [0u8; 1];
    c.read_exact(&mut first).unwrap();
    d.signal(libc::SIGTERM);
    d.wait_event("stop_requested");
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    let _ = sender.join();
    let total = got.len() + 1;
    assert!(got.iter().all(|&b| b == b'x'));
    assert!(d.wait_exit().success(), "exit 0 after draining");
    d.drain_stderr();
    let closes: Vec<serde_json::Value> = d
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v| event(v) == "session_closed")
        .collect();
    let busy = closes
        .iter()
        .find(|v| field(v, "bytes_out") != "0")
        .expect("busy session closed");
    assert_eq!(
        field(busy, "bytes_out"),
        total.to_string(),
        "everything produced was delivered"
    );
    drop(idle);
}

#[test]
fn second_signal_stops_at_once() {
    let mut d = Daemon::start(&format!(
        "[daemon]\ndrain_timeout = \"1h\"\nlog_level = \"info,switchboard::daemon=debug\"\n{}",
        tcp_listener("t", ECHO, "max_output = 67108864")
    ));
    let c = connect(d.addr("t"));
    // A client that never reads: its echo stays pending, so the drain would wait an hour.
    let block = vec![b'y'; 32 * 1024 * 1024];
    let mut writer = c.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&block);
    });
    d.wait_event("output_buffered");
    d.signal(libc::SIGINT);
    d.wait_event("draining");
    d.signal(libc::SIGINT);
    assert!(d.wait_exit().success());
    drop(c);
    let _ = sender.join();
}

#[test]
fn ipv6_loopback_listener() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback (binding [::1]:0 failed)");
        return;
    }
    let config = tcp_listener("v6", ECHO, "").replace("127.0.0.1", "::1");
    let d = Daemon::start(&config);
    let addr = d.addr("v6");
    assert!(addr.is_ipv6());
    let mut c = connect(addr);
    assert_eq!(ask(&mut c, "over v6"), "over v6");
}

#[test]
fn port_in_use_is_a_clear_error_naming_the_listener() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let config = tcp_listener("chat", ECHO, "").replace("port = 0", &format!("port = {port}"));
    let mut d = Daemon::spawn(&config, |_| {});
    let status = d.wait_exit();
    let err = d.drain_stderr();
    assert!(!status.success());
    assert!(
        err.contains(&format!(
            "listener \\\"chat\\\": 127.0.0.1:{port}/tcp is already in use"
        )) || err.contains(&format!(
            "listener \"chat\": 127.0.0.1:{port}/tcp is already in use"
        )),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("os error 98"),
        "{err}"
    );
}

#[test]
fn missing_config_file_is_one_clear_line() {
    let o = run(&["run", "-c", "/nonexistent/switchboard.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(
            "/nonexistent/switchboard.toml: cannot read the config file: No such file or directory"
        ),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

/// Each bad config exits non-zero with file:line and the key, before binding anything.
#[test]
fn config_errors_name_file_line_and_key() {
    let good = tcp_listener("a", ECHO, "");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{good}colour = \"red\"\n"),
            ":8:1: listener \"a\" colour: unknown key (known keys: name,",
        ),
        (
            format!("{good}{good}"),
            "listener \"a\" name: another listener has this name",
        ),
        (
            format!("{good}{}", tcp_listener("b", ECHO, "")).replace("port = 0", "port = 9"),
            "listener \"b\": 127.0.0.1:9/tcp is declared twice",
        ),
        (
            udp_listener("u", ECHO, "backlog = 5"),
            ":7:11: listener \"u\" backlog: backlog applies to TCP listeners only",
        ),
        (
            tcp_listener("e", "[]", ""),
            ":6:12: listener \"e\" handlers: the chain is empty",
        ),
        (
            tcp_listener("h", "[\"ecko\"]", ""),
            ":6:13: listener \"h\" handlers: unknown handler \"ecko\"",
        ),
        (
            tcp_listener("s", BYE_ECHO, "[listener.bye-close]\nwrod = \"x\""),
            ":8:1: listener \"s\" bye-close wrod: unknown key; did you mean `word`?",
        ),
        (
            tcp_listener("ip", ECHO, "").replace("127.0.0.1", "localhost"),
            ":4:6: listener \"ip\" ip: \"localhost\" is not an IPv4 or IPv6 address",
        ),
        (
            tcp_listener("d", ECHO, "idle_timeout = \"forever\""),
            "listener \"d\" idle_timeout: \"forever\" is not a duration",
        ),
        (
            "[[listener]]\nname = \"x\"\n".to_string(),
            ":1:1: listener \"x\" protocol: missing; this key is required",
        ),
        ("[[listener]\n".to_string(), ":1:"),
    ];
    for (config, expected) in cases {
        let mut d = Daemon::spawn(&config, |_| {});
        let status = d.wait_exit();
        let err = d.drain_stderr();
        assert_eq!(status.code(), Some(2), "{config}\n{err}");
        assert!(
            err.contains("switchboard.toml:"),
            "no file named for {config}:\n{err}"
        );
        assert!(
            err.contains(expected),
            "expected {expected:?} for\n{config}\ngot:\n{err}"
        );
        assert!(!err.contains("listening"), "nothing may be bound:\n{err}");
    }
}

#[test]
fn relative_log_file_is_beside_the_config() {
    let config = format!(
        "[daemon]\nlog_file = \"logs/sb.log\"\n{}",
        tcp_listener("t", ECHO, "")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["run", "-c"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // With logs in a file, the bound addresses are still printed on stderr.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("t listening on 127.0.0.1:"), "{line}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(dir.path().join("logs/sb.log")).unwrap();
    assert!(
        log.contains("listening") && log.contains("stopped"),
        "{log}"
    );
}

#[test]
fn check_validates_without_binding() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        tcp_listener("a", BYE_ECHO, "").replace("port = 0", "port = 1"),
    )
    .unwrap();
    let o = run(&["check", "-c", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("bye-close -> echo"), "{}", stdout(&o));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("{}{}", udp_listener("u", "[]", "backlog = 1"), ""),
    )
    .unwrap();
    let o = run(&["check", "-c", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("backlog applies") && err.contains("chain is empty"),
        "all errors: {err}"
    );
}
