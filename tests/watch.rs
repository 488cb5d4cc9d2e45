//! `switchboard watch`: a running daemon's sessions as they happen.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// `switchboard watch --json` with extra arguments, once the daemon has taken it.
struct Watcher {
    child: Child,
    out: Lines,
}

impl Watcher {
    fn new(d: &Daemon, extra: &[&str]) -> Watcher {
        let mut child = Command::new(bin())
            .arg("watch")
            .arg("--socket")
            .arg(d.dir.path().join("ctl.sock"))
            .arg("--json")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watch");
        let mut out = Lines::new(child.stdout.take().unwrap());
        out.wait(&["\"event\":\"watching\""]);
        Watcher { child, out }
    }

    /// The next event named `event` (earlier ones are skipped).
    fn next(&mut self, event: &str) -> Value {
        serde_json::from_str(&self.out.wait(&[&format!("\"event\":\"{event}\"")])).unwrap()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_sees_accepts_reads_fin_and_rst() {
    let d = Daemon::start(&tcp_listener("chat", r#"["echo"]"#, ""));
    let mut w = Watcher::new(&d, &[]);
    let mut s = connect(d.addr("chat"));
    let me = s.local_addr().unwrap().to_string();
    let open = w.next("open");
    assert_eq!(
        (open["listener"].as_str(), open["peer"].as_str()),
        (Some("chat"), Some(me.as_str()))
    );
    assert_eq!(open["proto"], "tcp");
    assert_eq!(ask(&mut s, "hello there"), "hello there");
    let read = w.next("read");
    assert_eq!(
        (read["size"].as_u64(), read["text"].as_str()),
        (Some(11), Some("hello there"))
    );
    assert_eq!(w.next("write")["size"], 11);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut s));
    assert_eq!(w.next("close")["reason"], "peer_closed");

    let s = connect(d.addr("chat"));
    let session = w.next("open")["session"].clone();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    let close = w.next("close");
    assert_eq!(close["session"], session);
    assert_eq!(close["reason"], "peer_reset");
}

#[test]
fn watch_sees_a_new_udp_peer_and_its_expiry_and_filters_by_listener() {
    let d = Daemon::start(&format!(
        "{}{}",
        udp_listener("u", r#"["echo"]"#, "idle_timeout = \"200ms\""),
        tcp_listener("other", r#"["echo"]"#, "")
    ));
    let mut w = Watcher::new(&d, &["--listener", "u"]);
    let mut s = connect(d.addr("other"));
    assert_eq!(ask(&mut s, "not watched"), "not watched");
    let c = udp_client();
    assert_eq!(udp_ask(&c, d.addr("u"), "ping"), "ping");
    let open = w.next("open");
    assert_eq!(open["listener"], "u", "the other listener is filtered out");
    assert_eq!(open["proto"], "udp");
    assert_eq!(open["peer"], c.local_addr().unwrap().to_string());
    assert_eq!(w.next("read")["text"], "ping");
    assert_eq!(w.next("close")["reason"], "idle_timeout");
    assert!(!w.out.seen.iter().any(|l| l.contains("not watched")));
}

#[test]
fn a_watcher_that_does_not_read_never_slows_the_daemon_and_is_told_what_it_missed() {
    let d = Daemon::start(&tcp_listener("chat", r#"["echo"]"#, ""));
    let mut slow = UnixStream::connect(d.dir.path().join("ctl.sock")).unwrap();
    slow.write_all(b"watch\n").unwrap();
    let mut first = BufReader::new(slow.try_clone().unwrap());
    let mut hello = String::new();
    first.read_line(&mut hello).unwrap();
    assert!(hello.contains("watching"), "{hello}");
    // Far more events than the watcher's buffers hold, while it reads nothing.
    let started = Instant::now();
    let mut s = connect(d.addr("chat"));
    let msg = "x".repeat(1000);
    for _ in 0..2000 {
        s.write_all(msg.as_bytes()).unwrap();
        read_n(&mut s, msg.len());
    }
    assert!(started.elapsed() < WAIT, "the daemon was held up");
    // Now it reads: what it has, then, after one more event, how many it missed.
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut sink = vec![0; 1 << 20];
    while matches!(slow.read(&mut sink), Ok(n) if n > 0) {}
    assert_eq!(ask(&mut s, "after"), "after");
    slow.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = BufReader::new(slow);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "no dropped event");
        if line.contains("\"dropped\"") {
            break;
        }
    }
    let v: Value = serde_json::from_str(&line).unwrap();
    assert!(v["count"].as_u64().unwrap() > 100, "{v}");
}
