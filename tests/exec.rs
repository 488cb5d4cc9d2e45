//! The exec handler with real children: Python programs on the session's stdin and stdout,
//! their variables, crashes, children that never end or flood a slow reader, many at once,
//! the daemon's stop, a listener's shared child; and never a zombie or a leaked descriptor.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const UPPER: &str =
    "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n";

fn script(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn exec_listener(name: &str, handlers: &str, extra: &str, exec: &str) -> String {
    tcp_listener(name, handlers, &format!("{extra}\n[listener.exec]\n{exec}"))
}

/// Read one line (without its newline).
fn line(s: &mut TcpStream) -> String {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut l = String::new();
    r.read_line(&mut l).expect("a line");
    l.trim_end_matches('\n').to_string()
}

/// The daemon's children (pids), from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                all.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    all
}

/// The state letter of a process (`Z` for a zombie), if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim().chars().next()
}

/// Wait until the daemon has no child left; fails if one stays (or stays a zombie).
fn no_children(d: &Daemon) {
    let deadline = Instant::now() + WAIT;
    loop {
        let kids = children(d.pid());
        if kids.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "children left: {:?}",
            kids.iter().map(|p| (p, state(*p))).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until the daemon has exactly `n` children.
fn wait_children(d: &Daemon, n: usize) {
    let deadline = Instant::now() + WAIT;
    while children(d.pid()).len() != n {
        assert!(
            Instant::now() < deadline,
            "children: {:?}",
            children(d.pid())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_python_child_upper_cases_lines_and_ends_with_the_session() {
    let mut d = Daemon::start_with(
        &exec_listener(
            "up",
            r#"["bye-close", "exec"]"#,
            "",
            "cmd = [\"python3\", \"-u\", \"upper.py\"]",
        ),
        |dir| script(dir, "upper.py", UPPER),
    );
    let fds = d.open_fds();
    let mut s = connect(d.addr("up"));
    assert_eq!(ask(&mut s, "hello\n"), "HELLO");
    // The tutorial's clients send no newline: each message is still one line for the child.
    assert_eq!(ask(&mut s, "one send"), "ONE SEND");
    wait_children(&d, 1);
    assert_eq!(ask(&mut s, "bye"), "bye");
    assert!(closed(&mut s));
    d.wait_event("session_closed");
    no_children(&d);

    // The peer closing ends the child: its stdin closes, it exits, the session ends.
    let mut s = connect(d.addr("up"));
    assert_eq!(ask(&mut s, "x\n"), "X");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut s));
    let ev = d.wait_event("session_closed");
    assert_eq!(field(&ev, "reason"), "peer_closed");
    no_children(&d);
    drop(s);
    let deadline = Instant::now() + WAIT;
    while d.open_fds() > fds {
        assert!(
            Instant::now() < deadline,
            "descriptors leaked: {} > {fds}",
            d.open_fds()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_readmes_one_shot_server_as_a_three_line_program() {
    let mut d = Daemon::start_with(
        &exec_listener(
            "oneshot",
            r#"["exec"]"#,
            "once = true",
            "cmd = [\"python3\", \"-u\", \"oneshot.py\"]",
        ),
        |dir| {
            script(
                dir,
                "oneshot.py",
                "import sys\ndata = sys.stdin.readline()\nprint('接收到的数据为:', data.strip(), flush=True)\n",
            )
        },
    );
    let addr = d.addr("oneshot").to_string();
    let out = run(&["send", &addr, "welcome to Python world"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim_end(),
        "接收到的数据为: welcome to Python world"
    );
    assert!(
        d.wait_exit().success(),
        "one session, then the daemon is done"
    );
}

const SHOW_ENV: &str = "import os, sys, json\nsys.stdin.readline()\nprint(json.dumps({\"env\": dict(os.environ), \"fds\": sorted(os.listdir('/proc/self/fd')), \"cwd\": os.getcwd()}), flush=True)\n";

#[test]
fn the_child_sees_the_standard_variables_and_nothing_of_the_daemon() {
    let config = format!(
        "{}{}",
        exec_listener(
            "t",
            r#"["exec"]"#,
            "framing = \"line\"",
            "cmd = [\"python3\", \"env.py\"]\nenv = { GREETING = \"hi\" }",
        ),
        udp_listener(
            "u",
            r#"["exec"]"#,
            "[listener.exec]\ncmd = [\"python3\", \"env.py\"]",
        )
    );
    let d = Daemon::start_command(&config, |path| {
        script(path.parent().unwrap(), "env.py", SHOW_ENV);
        let mut cmd = Command::new(bin());
        cmd.args(["run", "-c"])
            .arg(path)
            .env("SWITCHBOARD_TEST_SECRET", "leak");
        without_service_manager(&mut cmd);
        cmd
    });
    let mut s = connect(d.addr("t"));
    s.write_all(b"go\n").unwrap();
    let v: Value = serde_json::from_str(&line(&mut s)).expect("JSON from the child");
    let env = &v["env"];
    let me = s.local_addr().unwrap();
    let server = d.addr("t");
    assert_eq!(env["PROTO"], "TCP");
    assert_eq!(env["TCPREMOTEIP"], me.ip().to_string());
    assert_eq!(env["TCPREMOTEPORT"], me.port().to_string());
    assert_eq!(env["TCPLOCALIP"], server.ip().to_string());
    assert_eq!(env["TCPLOCALPORT"], server.port().to_string());
    assert_eq!(env["REMOTE_ADDR"], me.ip().to_string());
    assert_eq!(env["REMOTE_PORT"], me.port().to_string());
    assert_eq!(env["SWITCHBOARD_LISTENER"], "t");
    assert_eq!(env["SWITCHBOARD_SESSION"], "1");
    assert_eq!(env["GREETING"], "hi");
    assert!(env["PATH"].as_str().unwrap().contains("/usr/bin"));
    assert!(env.get("SWITCHBOARD_TEST_SECRET").is_none(), "{env}");
    assert!(
        env.get("HOME").is_none(),
        "the environment is cleared: {env}"
    );
    // stdin, stdout, stderr and the folder listing itself: no descriptor of the daemon.
    assert_eq!(v["fds"], serde_json::json!(["0", "1", "2", "3"]));
    assert_eq!(
        Path::new(v["cwd"].as_str().unwrap()),
        d.dir.path().canonicalize().unwrap()
    );

    let u = udp_client();
    let reply = udp_ask(&u, d.addr("u"), "go");
    let v: Value = serde_json::from_str(&reply).expect("JSON from the child");
    assert_eq!(v["env"]["PROTO"], "UDP");
    assert_eq!(
        v["env"]["UDPREMOTEPORT"],
        u.local_addr().unwrap().port().to_string()
    );
    assert_eq!(v["env"]["UDPLOCALPORT"], d.addr("u").port().to_string());
}

#[test]
fn a_crashing_child_ends_its_session_and_harms_no_other() {
    let mut d = Daemon::start_with(
        &format!(
            "{}{}{}",
            exec_listener(
                "crash",
                r#"["exec"]"#,
                "",
                "cmd = [\"python3\", \"-c\", \"import sys; sys.stdin.readline(); print('dying', flush=True); sys.exit(3)\"]",
            ),
            exec_listener(
                "up",
                r#"["exec"]"#,
                "",
                "cmd = [\"python3\", \"-u\", \"upper.py\"]"
            ),
            exec_listener("missing", r#"["exec"]"#, "", "cmd = [\"./not-there\"]"),
        ),
        |dir| script(dir, "upper.py", UPPER),
    );
    let mut other = connect(d.addr("up"));
    assert_eq!(ask(&mut other, "before\n"), "BEFORE");
    let mut s = connect(d.addr("crash"));
    assert_eq!(ask(&mut s, "hi\n"), "dying");
    assert!(
        closed(&mut s),
        "the session ends after the child's last words"
    );
    let ev = d.wait_event("child_exited");
    assert_eq!(field(&ev, "ending"), "exited with status 3");
    assert_eq!(field(&ev, "level"), "WARN");
    assert_eq!(ask(&mut other, "after\n"), "AFTER");

    // A program that cannot start: the session ends, the daemon goes on.
    let mut s = connect(d.addr("missing"));
    assert!(closed(&mut s));
    let ev = d.wait_event("child_failed");
    assert!(field(&ev, "error").contains("not-there"), "{ev}");
    assert_eq!(ask(&mut other, "still\n"), "STILL");
    drop(other);
    no_children(&d);
}

#[test]
fn a_program_that_is_not_there_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.toml");
    std::fs::write(
        &path,
        exec_listener(
            "t",
            r#"["exec"]"#,
            "",
            "cmd = [\"no-such-program-anywhere\"]",
        ),
    )
    .unwrap();
    let out = run(&["check", "-c", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("x.toml:"), "{err}");
    assert!(err.contains("listener \"t\" exec cmd"), "{err}");
    assert!(err.contains("not found in PATH"), "{err}");
}

#[test]
fn a_child_that_never_exits_is_terminated_then_killed_after_the_peer_leaves() {
    let mut d = Daemon::start_with(
        &exec_listener(
            "stuck",
            r#"["exec"]"#,
            "",
            "cmd = [\"python3\", \"stuck.py\"]\ngrace = \"200ms\"",
        ),
        |dir| {
            script(
                dir,
                "stuck.py",
                "import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\nwhile True:\n    time.sleep(1)\n",
            )
        },
    );
    let mut s = connect(d.addr("stuck"));
    let mut buf = [0; 16];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ready");
    drop(s);
    let ev = d.wait_event("child_killed");
    assert_eq!(field(&ev, "session"), "1");
    d.wait_event("session_closed");
    no_children(&d);
}

#[test]
fn a_child_flooding_a_slow_reader_is_held_back_within_max_output() {
    let d = Daemon::start(&exec_listener(
        "flood",
        r#"["exec"]"#,
        "max_output = 65536",
        "cmd = [\"python3\", \"-c\", \"import sys\\nwhile True: sys.stdout.write('x' * 65536)\"]\nframing = \"raw\"",
    ));
    let mut s = connect(d.addr("flood"));
    let before = d.rss_kib();
    let mut buf = vec![0; 65536];
    let mut got = 0;
    // A slow reader: 8 MiB at about 64 KiB per 5 ms while the child would write gigabytes.
    while got < 8 << 20 {
        got += s.read(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = d.rss_kib();
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    drop(s);
    no_children(&d);
}

#[test]
fn a_hundred_sessions_with_children_at_once_and_none_left_after() {
    let mut d = Daemon::start_with(
        &exec_listener(
            "up",
            r#"["exec"]"#,
            "",
            "cmd = [\"python3\", \"-u\", \"upper.py\"]",
        ),
        |dir| script(dir, "upper.py", UPPER),
    );
    let fds = d.open_fds();
    let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(d.addr("up"))).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("client {i}\n").as_bytes()).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut buf = [0; 64];
        let n = c.read(&mut buf).unwrap();
        assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("CLIENT {i}"));
    }
    assert_eq!(
        children(d.pid()).len(),
        100,
        "one child per session, all at once"
    );
    drop(clients);
    for _ in 0..100 {
        d.wait_event("session_closed");
    }
    no_children(&d);
    let deadline = Instant::now() + WAIT;
    while d.open_fds() > fds {
        assert!(
            Instant::now() < deadline,
            "descriptors leaked: {} > {fds}",
            d.open_fds()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_daemon_stops_with_children_running_and_leaves_none() {
    let mut d = Daemon::start_with(
        &exec_listener(
            "up",
            r#"["exec"]"#,
            "",
            "cmd = [\"python3\", \"-u\", \"upper.py\"]\ngrace = \"300ms\"",
        ),
        |dir| script(dir, "upper.py", UPPER),
    );
    let mut clients: Vec<TcpStream> = (0..5).map(|_| connect(d.addr("up"))).collect();
    for c in &mut clients {
        assert_eq!(ask(c, "hi\n"), "HI");
    }
    let kids = children(d.pid());
    assert_eq!(kids.len(), 5);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit().success());
    for pid in kids {
        assert!(
            state(pid).is_none(),
            "child {pid} outlived the daemon: {:?}",
            state(pid)
        );
    }
    for c in &mut clients {
        assert!(closed(c));
    }
}

const HUB: &str = "import sys, json\ncount = 0\nfor line in sys.stdin:\n    m = json.loads(line)\n    if m['event'] == 'message':\n        count += 1\n        print(json.dumps({'session': m['session'], 'text': '%d %s' % (count, m['text'].upper())}), flush=True)\n";

#[test]
fn a_shared_child_serves_two_sessions_and_keeps_its_state() {
    let d = Daemon::start_with(
        &exec_listener(
            "hub",
            r#"["exec"]"#,
            "",
            "cmd = [\"python3\", \"hub.py\"]\nmode = \"shared\"",
        ),
        |dir| script(dir, "hub.py", HUB),
    );
    let mut a = connect(d.addr("hub"));
    let mut b = connect(d.addr("hub"));
    assert_eq!(ask(&mut a, "from a"), "1 FROM A");
    assert_eq!(ask(&mut b, "from b"), "2 FROM B");
    assert_eq!(ask(&mut a, "again"), "3 AGAIN");
    assert_eq!(children(d.pid()).len(), 1, "one child for both");
    drop(a);
    drop(b);
    let mut c = connect(d.addr("hub"));
    assert_eq!(
        ask(&mut c, "later"),
        "4 LATER",
        "the child outlives sessions"
    );
}

#[test]
fn over_max_children_peers_get_the_busy_message() {
    let mut d = Daemon::start_with(
        &exec_listener(
            "up",
            r#"["exec"]"#,
            "busy_message = \"busy\"",
            "cmd = [\"python3\", \"-u\", \"upper.py\"]\nmax_children = 1",
        ),
        |dir| script(dir, "upper.py", UPPER),
    );
    let mut first = connect(d.addr("up"));
    assert_eq!(ask(&mut first, "a\n"), "A");
    let mut second = connect(d.addr("up"));
    let mut got = Vec::new();
    let _ = second.read_to_end(&mut got);
    assert_eq!(got, b"busy");
    let ev = d.wait_event("refused");
    assert_eq!(field(&ev, "limit"), "max_children");
}

#[test]
fn untrusted_children_get_their_limits_and_user() {
    let root = rustix::process::geteuid().is_root();
    let code = "import os, sys, json, resource as r\nsys.stdin.readline()\nprint(json.dumps({'nofile': r.getrlimit(r.RLIMIT_NOFILE), 'cpu': r.getrlimit(r.RLIMIT_CPU), 'as': r.getrlimit(r.RLIMIT_AS), 'uid': os.getuid(), 'gid': os.getgid()}), flush=True)";
    // The child runs as nobody, from a folder nobody may enter.
    let mut d = Daemon::start(&exec_listener(
        "t",
        r#"["exec"]"#,
        "framing = \"line\"",
        &format!(
            "cmd = [\"/usr/bin/python3\", \"-c\", {code:?}]\ncwd = \"/\"\nrlimit_nofile = 32\nrlimit_cpu = 5\nrlimit_as = 1000000000\nuser = \"65534\"\ngroup = \"65534\""
        ),
    ));
    let mut s = connect(d.addr("t"));
    s.write_all(b"go\n").unwrap();
    if !root {
        // Only root may run a child as another user: the session ends, the daemon says why.
        assert!(closed(&mut s));
        d.wait_event("child_failed");
        return;
    }
    let v: Value = serde_json::from_str(&line(&mut s)).expect("JSON from the child");
    assert_eq!(v["nofile"], serde_json::json!([32, 32]));
    assert_eq!(v["cpu"], serde_json::json!([5, 5]));
    assert_eq!(
        v["as"],
        serde_json::json!([1_000_000_000u64, 1_000_000_000u64])
    );
    assert_eq!(
        (v["uid"].as_u64(), v["gid"].as_u64()),
        (Some(65534), Some(65534))
    );
}
