//! Faults end to end, measured from the client's side: latency and bandwidth within
//! tolerance, a slicer's many reads, a reset seen as ECONNRESET, limit_data's N bytes,
//! corruption at seeded positions, UDP loss/duplicate/reorder the same twice; faults changed
//! by reload and by `switchboard fault` while a session runs.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::forward::{forward_to, upper_upstream};
use crate::util::{
    Daemon, WAIT, ask, closed, connect, run, stdout, tcp_listener, udp_client, udp_listener,
    with_json_logs,
};

const ECHO: &str = r#"["echo"]"#;

fn fault(kind: &str, extra: &str) -> String {
    format!("[[listener.fault]]\nkind = \"{kind}\"\n{extra}\n")
}

fn echo_with(faults: &str) -> Daemon {
    Daemon::start(&tcp_listener("e", ECHO, faults))
}

/// Read until `n` bytes came; returns them and how many reads it took.
fn read_exactly(s: &mut TcpStream, n: usize) -> (Vec<u8>, usize) {
    let mut got = Vec::new();
    let mut reads = 0;
    let mut buf = [0; 65536];
    while got.len() < n {
        let k = s.read(&mut buf).expect("read");
        assert!(k > 0, "EOF after {} of {n} bytes", got.len());
        got.extend_from_slice(&buf[..k]);
        reads += 1;
    }
    (got, reads)
}

#[test]
fn latency_delays_each_reply_within_tolerance() {
    let d = echo_with(&fault("latency", "latency = \"300ms\"\njitter = \"20ms\""));
    let mut c = connect(d.addr("e"));
    for _ in 0..2 {
        let t = Instant::now();
        assert_eq!(ask(&mut c, "ping"), "ping");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(280) && took < Duration::from_millis(900),
            "{took:?}"
        );
    }
}

#[test]
fn bandwidth_limits_the_rate_within_tolerance() {
    let d = echo_with(&fault("bandwidth", "rate = 40000"));
    let mut c = connect(d.addr("e"));
    let t = Instant::now();
    c.write_all(&[b'x'; 20000]).unwrap();
    let (got, _) = read_exactly(&mut c, 20000);
    let took = t.elapsed();
    assert_eq!(got.len(), 20000);
    // 20,000 bytes at 40,000 B/s: half a second.
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[test]
fn the_slicer_delivers_the_same_bytes_in_many_reads() {
    let d = echo_with(&fault(
        "slicer",
        "average_size = 100\nsize_variation = 10\ndelay = \"20ms\"",
    ));
    let mut c = connect(d.addr("e"));
    // One send of 1,000 bytes: at least ten slices of at most 110, 20 ms apart. A busy client
    // may find several slices waiting at one read, so the reads are not counted one by one:
    // more than one, and the last slice no sooner than nine pauses after the first.
    let data: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
    let t = Instant::now();
    c.write_all(&data).unwrap();
    let (got, reads) = read_exactly(&mut c, data.len());
    let took = t.elapsed();
    assert_eq!(got, data);
    assert!(reads >= 2, "one send arrived in {reads} read");
    assert!(took >= Duration::from_millis(170), "{took:?}");
}

#[test]
fn reset_peer_is_seen_as_econnreset() {
    let d = echo_with(&fault("reset_peer", "timeout = \"100ms\""));
    let mut c = connect(d.addr("e"));
    assert_eq!(ask(&mut c, "a"), "a");
    let mut buf = [0; 16];
    let e = c.read(&mut buf).expect_err("a reset");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn limit_data_closes_at_n_bytes() {
    let d = echo_with(&fault("limit_data", "bytes = 10"));
    let mut c = connect(d.addr("e"));
    c.write_all(b"0123456789abcdef").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"0123456789");
}

#[test]
fn corrupt_changes_bytes_at_the_seeded_positions() {
    let run_once = |seed: u64| {
        let d = echo_with(&format!(
            "seed = {seed}\n{}",
            fault("corrupt", "probability = 0.02")
        ));
        let mut c = connect(d.addr("e"));
        c.write_all(&[b'.'; 3000]).unwrap();
        read_exactly(&mut c, 3000).0
    };
    let a = run_once(11);
    let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b'.').collect();
    assert!(
        (20..120).contains(&changed.len()),
        "{} changed",
        changed.len()
    );
    assert_eq!(a, run_once(11), "the same seed, the same bytes");
    assert_ne!(a, run_once(12));
}

#[test]
fn to_server_faults_apply_to_what_the_upstream_gets() {
    let d = Daemon::start(&forward_to(
        "f",
        upper_upstream(),
        &fault("latency", "direction = \"to_server\"\nlatency = \"300ms\""),
    ));
    let mut c = connect(d.addr("f"));
    let t = Instant::now();
    assert_eq!(ask(&mut c, "up"), "UP");
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "{:?}",
        t.elapsed()
    );
}

/// Datagrams 0..n sent in one burst, and what came back until 400 ms of quiet.
fn udp_run(seed: u64) -> Vec<String> {
    let d = Daemon::start(&udp_listener(
        "u",
        ECHO,
        &format!(
            "seed = {seed}\n{}{}{}",
            fault("loss", "probability = 0.2"),
            fault("duplicate", "probability = 0.2"),
            fault("reorder", "probability = 0.2\ndelay = \"150ms\""),
        ),
    ));
    let s = udp_client();
    for i in 0..40 {
        s.send_to(format!("{i}").as_bytes(), d.addr("u")).unwrap();
    }
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 64];
    let deadline = Instant::now() + WAIT;
    while let Ok(n) = s.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        assert!(Instant::now() < deadline);
    }
    got
}

#[test]
fn udp_loss_duplicate_and_reorder_with_a_seed_give_the_same_sequence_twice() {
    let a = udp_run(21);
    assert_eq!(a, udp_run(21));
    let n: Vec<u32> = a.iter().map(|s| s.parse().unwrap()).collect();
    assert!(n.len() != 40 || n.windows(2).any(|w| w[0] >= w[1]), "{n:?}");
    assert!((0..40).any(|i| !n.contains(&i)), "some lost: {n:?}");
    assert!(n.windows(2).any(|w| w[0] > w[1]), "some reordered: {n:?}");
}

fn rewrite(d: &Daemon, config: &str) {
    std::fs::write(
        d.dir.path().join("switchboard.toml"),
        with_json_logs(config),
    )
    .unwrap();
}

fn control(d: &Daemon, args: &[&str]) -> String {
    let sock = d.dir.path().join("ctl.sock");
    let mut all = vec![args[0], "--socket", sock.to_str().unwrap()];
    all.extend(&args[1..]);
    let o = run(&all);
    assert!(o.status.success(), "{args:?}: {}", stdout(&o));
    stdout(&o)
}

fn timed_ask(c: &mut TcpStream, text: &str) -> Duration {
    let t = Instant::now();
    assert_eq!(ask(c, text), text);
    t.elapsed()
}

#[test]
fn a_reload_adds_and_removes_faults_while_a_session_runs() {
    let plain = tcp_listener("e", ECHO, "");
    let mut d = Daemon::start(&plain);
    let mut c = connect(d.addr("e"));
    assert!(timed_ask(&mut c, "a") < Duration::from_millis(250));
    rewrite(
        &d,
        &tcp_listener("e", ECHO, &fault("latency", "latency = \"300ms\"")),
    );
    let out = control(&d, &["reload"]);
    assert!(out.contains("changed e"), "{out}");
    d.wait_event("faults_changed");
    assert!(timed_ask(&mut c, "b") >= Duration::from_millis(290));
    rewrite(&d, &plain);
    control(&d, &["reload"]);
    assert!(timed_ask(&mut c, "c") < Duration::from_millis(250));
}

#[test]
fn switchboard_fault_adds_lists_and_removes_faults_at_run_time() {
    let d = Daemon::start(&tcp_listener("e", ECHO, ""));
    let mut c = connect(d.addr("e"));
    let out = control(
        &d,
        &[
            "fault",
            "add",
            "e",
            "kind=latency",
            "latency=300ms",
            "name=slow",
        ],
    );
    assert!(out.contains("added fault \"slow\""), "{out}");
    assert!(timed_ask(&mut c, "x") >= Duration::from_millis(290));
    let out = control(&d, &["fault", "list"]);
    assert!(
        out.contains("e slow kind=latency direction=to_client latency=300ms"),
        "{out}"
    );
    let sock = d.dir.path().join("ctl.sock");
    let bad = run(&[
        "fault",
        "--socket",
        sock.to_str().unwrap(),
        "add",
        "e",
        "kind=lost",
    ]);
    assert!(!bad.status.success());
    assert!(
        stdout(&bad).contains("not a fault kind"),
        "{}",
        stdout(&bad)
    );
    control(&d, &["fault", "remove", "e", "slow"]);
    assert!(timed_ask(&mut c, "y") < Duration::from_millis(250));
    control(&d, &["fault", "add", "e", "kind=timeout"]);
    c.write_all(b"lost").unwrap();
    control(&d, &["fault", "reset"]);
    assert!(!closed_soon(&mut c));
}

/// Whether the connection closes within 300 ms (false: still open, nothing came).
fn closed_soon(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let r = closed(c);
    c.set_read_timeout(Some(WAIT)).unwrap();
    r
}

#[test]
fn a_fault_for_one_source_spares_the_others() {
    let d = echo_with(&fault("timeout", "sources = [\"127.0.0.2/32\"]"));
    let addr: SocketAddr = d.addr("e");
    let mut c = connect(addr);
    assert_eq!(ask(&mut c, "spared"), "spared");
    let mut other = crate::util::connect_from("127.0.0.2", addr);
    other.write_all(b"dropped").unwrap();
    assert!(!closed_soon(&mut other));
}

/// The README's worked example, as shipped: a client's retry loop meets two resets, then a
/// slow answer.
#[test]
fn the_flaky_upstream_example_fails_twice_then_answers_late() {
    let up = upper_upstream();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/examples/flaky-upstream.toml"),
    )
    .unwrap();
    let text = text
        .replace("port = 8081", "port = 0")
        .replace("127.0.0.1:8000", &up.to_string())
        .lines()
        .filter(|l| !l.starts_with("log_file = "))
        .collect::<Vec<_>>()
        .join("\n");
    let d = Daemon::start(&text);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let mut c = connect(d.addr("flaky-api"));
        c.write_all(b"get").unwrap();
        let t = Instant::now();
        let mut buf = [0; 16];
        outcomes.push(match c.read(&mut buf) {
            Ok(n) => Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), t.elapsed())),
            Err(e) => Err(e.kind()),
        });
    }
    assert_eq!(outcomes[0], Err(ErrorKind::ConnectionReset));
    assert_eq!(outcomes[1], Err(ErrorKind::ConnectionReset));
    let (reply, took) = outcomes[2].clone().unwrap();
    assert_eq!(reply, "GET");
    assert!(took >= Duration::from_millis(245), "{took:?}");
}
