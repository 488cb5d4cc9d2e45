//! The operator console: console-reply through `attach` and through the daemon's stdin, and
//! the `send`/`chat` clients against the daemon.

use std::io::Write;

use crate::util::*;

const CHAT: &str = "[\"bye-close\", \"console-reply\"]";

/// A daemon with one TCP and one UDP console listener and a control socket in its folder.
fn console_daemon(extra: &str) -> (Daemon, std::path::PathBuf) {
    // A relative control_socket is beside the config, in the daemon's own folder.
    let config = format!(
        "[daemon]\ncontrol_socket = \"ctl.sock\"\n{}{}",
        tcp_listener("chat", CHAT, extra),
        udp_listener("kefu", CHAT, extra)
    );
    let d = Daemon::start(&config);
    let sock = d.dir.path().join("ctl.sock");
    (d, sock)
}

/// Close the daemon's stdin so that only attached operators remain, and wait for it.
fn detach_stdin(d: &mut Daemon) {
    d.stdin.take();
    d.wait_event("operator_detached");
}

#[test]
fn a_message_reaches_the_operator_and_the_reply_reaches_the_peer() {
    let (d, sock) = console_daemon("");
    let mut op = Attach::new(&sock);
    op.out.wait(&["switchboard console"]);
    let mut peer = connect(d.addr("chat"));
    peer.write_all("你好，在吗".as_bytes()).unwrap();
    let line = op.out.wait(&["你好，在吗"]);
    assert!(line.contains("#1 chat/tcp 127.0.0.1:"), "{line}");
    op.say("在的，请讲");
    assert_eq!(ask_reply(&mut peer), "在的，请讲");
    // Operator bye: sent, then the session closes, as the tutorial's server does.
    op.say("bye");
    assert_eq!(ask_reply(&mut peer), "bye");
    assert!(closed(&mut peer));
    op.out.wait(&["#1", "session closed"]);
}

fn ask_reply(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = [0; 1024];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn two_sessions_at_id_and_list() {
    let (d, sock) = console_daemon("");
    let mut op = Attach::new(&sock);
    op.out.wait(&["switchboard console"]);
    let mut a = connect(d.addr("chat"));
    a.write_all(b"from a").unwrap();
    op.out.wait(&["#1", "from a"]);
    let b = udp_client();
    b.send_to(b"from b", d.addr("kefu")).unwrap();
    op.out.wait(&["#2 kefu/udp", "from b"]);
    // The focus is on the session that spoke last (#2); @1 answers #1 once.
    op.say("@1 answer for a");
    assert_eq!(ask_reply(&mut a), "answer for a");
    op.say("answer for b");
    let mut buf = [0; 64];
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"answer for b");
    b.send_to(b"again", d.addr("kefu")).unwrap();
    op.out.wait(&["#2", "again"]);
    op.say("/list");
    let row1 = op.out.wait(&["#1 chat/tcp"]);
    let row2 = op.out.wait(&["#2 kefu/udp"]);
    assert!(row1.contains("unanswered 0"), "{row1}");
    assert!(
        row2.contains("unanswered 1") && row2.starts_with('*'),
        "{row2}"
    );
    op.say("/to 1");
    op.out.wait(&["now replying to [#1"]);
    op.say("pinned");
    assert_eq!(ask_reply(&mut a), "pinned");
    op.say("/close 1");
    assert!(closed(&mut a));
    op.say("@1 too late");
    op.out.wait(&["session #1 has ended"]);
}

#[test]
fn unattended_reply_and_backlog_shown_on_attach() {
    let (mut d, sock) = console_daemon(
        "[listener.console-reply]\nunattended_reply = \"an agent will be with you shortly\"",
    );
    detach_stdin(&mut d);
    let mut peer = connect(d.addr("chat"));
    assert_eq!(
        ask(&mut peer, "first question"),
        "an agent will be with you shortly"
    );
    assert_eq!(
        ask(&mut peer, "second question"),
        "an agent will be with you shortly"
    );
    let u = udp_client();
    assert_eq!(
        udp_ask(&u, d.addr("kefu"), "udp question"),
        "an agent will be with you shortly"
    );
    let mut op = Attach::new(&sock);
    op.out.wait(&["3 message(s) waiting"]);
    op.out.wait(&["#1", "first question"]);
    op.out.wait(&["#1", "second question"]);
    op.out.wait(&["#2", "udp question"]);
    op.say("@1 here now");
    assert_eq!(ask_reply(&mut peer), "here now");
}

#[test]
fn injected_escape_sequences_are_shown_escaped() {
    let (d, sock) = console_daemon("");
    let mut op = Attach::new(&sock);
    op.out.wait(&["switchboard console"]);
    let mut peer = connect(d.addr("chat"));
    peer.write_all(b"\x1b[2Jclear\n[#9 fake] line").unwrap();
    let line = op.out.wait(&["clear"]);
    assert!(line.contains("\\u{1b}[2Jclear\\n[#9 fake] line"), "{line}");
    assert!(!line.contains('\x1b'));
}

#[test]
fn several_operators_see_messages_and_who_answered() {
    let (d, sock) = console_daemon("");
    // One after the other: two clients started together may reach the socket in any order.
    let mut op1 = Attach::new(&sock);
    op1.out.wait(&["you are op1"]);
    let mut op2 = Attach::new(&sock);
    op2.out.wait(&["you are op2"]);
    let mut peer = connect(d.addr("chat"));
    peer.write_all(b"anyone?").unwrap();
    op1.out.wait(&["anyone?"]);
    op2.out.wait(&["anyone?"]);
    op1.say("me");
    assert_eq!(ask_reply(&mut peer), "me");
    op2.out.wait(&["#1", "op1", "> me"]);
}

#[test]
fn stdin_is_the_foreground_console() {
    let config = format!(
        "[daemon]\ncontrol_socket = \"ctl.sock\"\n{}",
        tcp_listener("chat", CHAT, "")
    );
    let mut d = Daemon::start(&config);
    let mut peer = connect(d.addr("chat"));
    peer.write_all("请问价格".as_bytes()).unwrap();
    d.stdout.wait(&["#1 chat/tcp", "请问价格"]);
    let stdin = d.stdin.as_mut().unwrap();
    stdin.write_all("99 元\n".as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(ask_reply(&mut peer), "99 元");
}

#[test]
fn a_console_terminal_that_does_not_read_never_stalls_the_loop() {
    // The daemon's stdout is a pipe nobody reads: it fills after 64 KiB.
    let (_unread, stdout) = std::io::pipe().expect("pipe");
    let config = format!(
        "{}{}",
        tcp_listener("chat", "[\"console-reply\"]", "framing = \"line\""),
        tcp_listener("e", "[\"echo\"]", "")
    );
    let mut d = Daemon::start_with_stdout(&config, stdout);
    let mut peer = connect(d.addr("chat"));
    let line = format!("{}\n", "x".repeat(60));
    let flood = line.repeat(6000);
    peer.write_all(flood.as_bytes()).unwrap();
    // Far more than the pipe holds went to the console; the loop still serves everyone.
    d.wait_event("console_dropped");
    let mut e = connect(d.addr("e"));
    assert_eq!(ask(&mut e, "still served"), "still served");
}

#[test]
fn attach_from_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0
        || std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!("skipped: needs root and setpriv to run the client as another user");
        return;
    }
    let (mut d, sock) = console_daemon("");
    // Let the other user reach the socket file, so that the daemon's own check is what
    // refuses it (normally the 0600 file and 0700 folder already keep it out).
    let mut dir = sock.parent().unwrap().to_path_buf();
    while dir != std::path::Path::new("/") {
        let _ = std::process::Command::new("chmod")
            .arg("o+x")
            .arg(&dir)
            .status();
        dir = dir.parent().unwrap().to_path_buf();
    }
    std::process::Command::new("chmod")
        .arg("666")
        .arg(&sock)
        .status()
        .unwrap();
    let mut op = Attach::as_user(&sock, Some((65534, 65534)));
    op.out.wait(&["refused"]);
    let ev = d.wait_event("control_refused");
    assert_eq!(field(&ev, "uid"), "65534");
}

#[test]
fn chat_client_runs_the_tutorial_tcp_multi_turn_flow_against_the_daemon() {
    let d = Daemon::start(&tcp_listener("echo", "[\"bye-close\", \"echo\"]", ""));
    let target = d.addr("echo").to_string();
    let o = run_in(&["chat", &target], None, "你好\nhow are you\nbye\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("你好") && out.contains("how are you"), "{out}");
    assert!(out.contains("bye"), "{out}");
}

#[test]
fn chat_client_runs_the_udp_customer_flow_against_the_daemon() {
    let config = udp_listener(
        "kefu",
        "[\"bye-close\", \"scripted-reply\"]",
        "[listener.scripted-reply]\n[[listener.scripted-reply.rule]]\nmatch = \"contains\"\npattern = \"价格\"\nreply = \"99 元\"",
    );
    let d = Daemon::start(&config);
    let target = d.addr("kefu").to_string();
    let o = run_in(&["chat", "--udp", &target], None, "价格多少\nbye\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("99 元"), "{}", stdout(&o));
}

#[test]
fn send_client_against_the_daemon_tcp_and_udp() {
    let config = format!(
        "{}{}",
        tcp_listener("t", "[\"echo\"]", ""),
        udp_listener("u", "[\"echo\"]", "")
    );
    let d = Daemon::start(&config);
    let o = run(&["send", &d.addr("t").to_string(), "welcome to Python world"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "welcome to Python world");
    let o = run(&["send", "--udp", &d.addr("u").to_string(), "你好"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "你好");
}
