//! Limits and hardening: allow/deny, session caps, rates, oversized lines, stalled readers,
//! running out of file descriptors, the UDP reflection guard, and descriptor leaks.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const ECHO: &str = "[\"echo\"]";

/// Read to the end: what the daemon sent before closing. A reset counts as the end.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading to the end: {e}"),
    }
    got
}

/// Whether no datagram is waiting on `s` (call after a round trip that follows what would
/// have been answered).
fn nothing_received(s: &UdpSocket) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0; 64];
    let r = s.recv_from(&mut buf);
    s.set_nonblocking(false).unwrap();
    matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// Every datagram waiting on `s`.
fn drain(s: &UdpSocket) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0; 64];
    let mut n = 0;
    while s.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    s.set_nonblocking(false).unwrap();
    n
}

fn peer_of(s: &TcpStream) -> String {
    s.local_addr().unwrap().to_string()
}

/// A peer refused by the allow/deny rules.
fn by_rules(v: &Value) -> bool {
    event(v) == "refused" && field(v, "reason") == "rules"
}

/// A peer refused for a limit.
fn at_limit(v: &Value) -> bool {
    event(v) == "refused" && field(v, "reason") == "limit"
}

#[test]
fn allow_and_deny_by_source_address() {
    let rules = "allow = [\"127.0.0.0/8\", \"::1\"]\ndeny = [\"127.0.0.2\", \"127.0.0.3\"]";
    let mut d = Daemon::start(&format!(
        "{}{}{}",
        tcp_listener("t", ECHO, &format!("{rules}\nbusy_message = \"busy\"")),
        udp_listener("u", ECHO, rules),
        tcp_listener("only2", ECHO, "allow = [\"127.0.0.2/32\"]"),
    ));
    let (t, u, only2) = (d.addr("t"), d.addr("u"), d.addr("only2"));
    assert_eq!(ask(&mut connect(t), "allowed"), "allowed");

    // A denied TCP peer is closed at once, without the busy message (that is for limits).
    let mut denied = connect_from("127.0.0.2", t);
    assert_eq!(read_all(&mut denied), b"");
    let ev = d
        .wait_for(|v| by_rules(v) && field(v, "peer") == peer_of(&denied))
        .expect("refusal logged");
    assert_eq!(field(&ev, "rule"), "deny 127.0.0.2");
    assert_eq!(field(&ev, "level"), "WARN");
    // More from the same address within 10 s are not logged again; another address is.
    for _ in 0..5 {
        assert_eq!(read_all(&mut connect_from("127.0.0.2", t)), b"");
    }
    let other = connect_from("127.0.0.3", t);
    d.wait_for(|v| by_rules(v) && field(v, "peer") == peer_of(&other))
        .expect("another address is logged");
    let lines_for_2 = d
        .events("refused")
        .filter(by_rules)
        .filter(|v| field(v, "peer").starts_with("127.0.0.2:"))
        .count();
    assert_eq!(lines_for_2, 1, "one line per address and interval");

    // UDP: a denied peer's datagram is dropped unanswered.
    let bad = udp_client_from("127.0.0.2");
    bad.send_to(b"let me in", u).unwrap();
    let ev = d
        .wait_for(|v| by_rules(v) && field(v, "proto") == "udp")
        .expect("UDP refusal logged");
    assert_eq!(field(&ev, "peer"), bad.local_addr().unwrap().to_string());
    let good = udp_client();
    assert_eq!(udp_ask(&good, u, "hello"), "hello");
    assert!(nothing_received(&bad), "a denied peer got an answer");

    // With an allow list, everyone else is refused.
    assert_eq!(read_all(&mut connect(only2)), b"");
    let ev = d
        .wait_for(|v| by_rules(v) && field(v, "listener") == "only2")
        .expect("refusal logged");
    assert_eq!(field(&ev, "rule"), "not in allow");
    assert_eq!(
        ask(&mut connect_from("127.0.0.2", only2), "me"),
        "me",
        "the allowed address is served"
    );
}

#[test]
fn max_connections_serves_n_and_tells_the_rest_busy() {
    const N: usize = 5;
    let mut d = Daemon::start(&tcp_listener(
        "t",
        ECHO,
        &format!("max_connections = {N}\nbusy_message = \"busy, try later\\n\""),
    ));
    let addr = d.addr("t");
    let mut clients: Vec<TcpStream> = (0..N + 10).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate().take(N) {
        assert_eq!(ask(c, &format!("client {i}")), format!("client {i}"));
    }
    for c in &mut clients[N..] {
        assert_eq!(read_all(c), b"busy, try later\n");
    }
    let ev = d.wait_for(at_limit).expect("refusal logged");
    assert_eq!(field(&ev, "limit"), "max_connections");
    assert_eq!(field(&ev, "max"), N.to_string());
    // The ones served are undisturbed.
    for (i, c) in clients.iter_mut().enumerate().take(N) {
        assert_eq!(ask(c, &format!("again {i}")), format!("again {i}"));
    }
    // When they leave, their places are free again.
    clients.clear();
    for _ in 0..N {
        d.wait_event("session_closed");
    }
    let mut next: Vec<TcpStream> = (0..N).map(|_| connect(addr)).collect();
    for (i, c) in next.iter_mut().enumerate() {
        assert_eq!(ask(c, &format!("new {i}")), format!("new {i}"));
    }
    assert_eq!(read_all(&mut connect(addr)), b"busy, try later\n");
}

#[test]
fn max_per_ip_counts_each_address_apart() {
    let mut d = Daemon::start(&tcp_listener(
        "t",
        ECHO,
        "max_per_ip = 2\nbusy_message = \"busy\"",
    ));
    let addr = d.addr("t");
    let mut a1 = connect(addr);
    let mut a2 = connect(addr);
    assert_eq!(ask(&mut a1, "a1"), "a1");
    assert_eq!(ask(&mut a2, "a2"), "a2");
    assert_eq!(read_all(&mut connect(addr)), b"busy");
    let ev = d.wait_for(at_limit).expect("refusal logged");
    assert_eq!(field(&ev, "limit"), "max_per_ip");
    // Another address has its own count.
    let mut b1 = connect_from("127.0.0.2", addr);
    let mut b2 = connect_from("127.0.0.2", addr);
    assert_eq!(ask(&mut b1, "b1"), "b1");
    assert_eq!(ask(&mut b2, "b2"), "b2");
    assert_eq!(read_all(&mut connect_from("127.0.0.2", addr)), b"busy");
    // A session that ends gives its place back to its address.
    drop(a1);
    d.wait_event("session_closed");
    assert_eq!(ask(&mut connect(addr), "a3"), "a3");
    assert_eq!(ask(&mut a2, "still"), "still");
}

#[test]
fn accept_rate_refuses_beyond_the_burst() {
    // One new session per 10 s after a burst of 2: the test takes far less than 10 s.
    let mut d = Daemon::start(&tcp_listener(
        "t",
        ECHO,
        "accept_rate = 0.1\naccept_burst = 2\nbusy_message = \"slow down\"",
    ));
    let addr = d.addr("t");
    let mut served: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for c in &mut served {
        assert_eq!(ask(c, "in"), "in");
    }
    assert_eq!(read_all(&mut connect(addr)), b"slow down");
    assert_eq!(read_all(&mut connect(addr)), b"slow down");
    let ev = d.wait_for(at_limit).expect("refusal logged");
    assert_eq!(field(&ev, "limit"), "accept_rate");
}

#[test]
fn an_oversized_line_closes_only_its_session() {
    let mut d = Daemon::start(&tcp_listener(
        "t",
        ECHO,
        "framing = \"line\"\nmax_message = 16\ntoo_long_reply = \"line too long\"",
    ));
    let addr = d.addr("t");
    let mut other = connect(addr);
    other.write_all(b"before\n").unwrap();
    assert_eq!(read_n(&mut other, 7), b"before\n");
    let mut big = connect(addr);
    big.write_all(b"short\n").unwrap();
    big.write_all(&[b'x'; 100]).unwrap();
    big.write_all(b"\n").unwrap();
    assert_eq!(read_all(&mut big), b"short\nline too long\n");
    d.wait_event("too_long");
    let ev = d.wait_event("session_closed");
    assert_eq!(field(&ev, "reason"), "too_long");
    other.write_all(b"after\n").unwrap();
    assert_eq!(read_n(&mut other, 6), b"after\n");
}

#[test]
fn a_reader_that_stalls_is_bounded_by_max_output_then_closed_by_write_timeout() {
    const MAX_OUTPUT: u64 = 1 << 20;
    let mut d = Daemon::start(&format!(
        "[daemon]\nlog_level = \"info,switchboard::daemon=debug\"\n{}",
        tcp_listener(
            "t",
            ECHO,
            &format!("max_output = {MAX_OUTPUT}\nwrite_timeout = \"1s\""),
        )
    ));
    let addr = d.addr("t");
    let mut good = connect(addr);
    assert_eq!(ask(&mut good, "warm up"), "warm up");
    let before = d.rss_kib();
    // 64 MiB sent, nothing read: without backpressure the daemon would hold most of it.
    let stalled = connect(addr);
    let mut writer = stalled.try_clone().unwrap();
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let block = vec![b's'; 64 * 1024];
        for _ in 0..1024 {
            if writer.write_all(&block).is_err() {
                return;
            }
        }
    });
    d.wait_event("read_paused");
    for i in 0..3 {
        assert_eq!(ask(&mut good, &format!("ping {i}")), format!("ping {i}"));
    }
    let grown = d.rss_kib().saturating_sub(before);
    let slack = 4 * 1024;
    assert!(
        grown < MAX_OUTPUT / 1024 + slack,
        "RSS grew by {grown} KiB with max_output = {} KiB",
        MAX_OUTPUT / 1024
    );
    let ev = d.wait_event("write_timeout");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "closed too early"
    );
    assert_eq!(field(&ev, "level"), "WARN");
    let ev = d.wait_event("session_closed");
    assert_eq!(field(&ev, "reason"), "write_timeout");
    sender.join().unwrap();
    assert_eq!(ask(&mut good, "still here"), "still here");
    drop(stalled);
}

#[test]
fn running_out_of_descriptors_pauses_accepts_once_and_resumes() {
    let mut d = Daemon::start_with_nofile(
        &format!(
            "[daemon]\nlog_level = \"info,switchboard::daemon=debug\"\n{}",
            tcp_listener("t", ECHO, "")
        ),
        40,
    );
    let warning = d
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| event(v) == "nofile_low")
        .unwrap_or_else(|| panic!("no start warning:\n{}", d.seen.join("\n")));
    assert_eq!(field(&warning, "limit"), "40");
    let needed: u64 = field(&warning, "needed")
        .parse()
        .expect("needed is a number");
    assert!(needed > 40, "says what the limit should be: {warning}");
    let addr = d.addr("t");
    let clients: Vec<TcpStream> = (0..60).map(|_| connect(addr)).collect();
    let warned = |v: &Value| event(v) == "accept_paused" && field(v, "level") == "WARN";
    d.wait_for(warned).expect("out of descriptors logged");
    // Retries go on, without another warning.
    for _ in 0..2 {
        d.wait_for(|v| event(v) == "accept_paused" && field(v, "level") == "DEBUG")
            .expect("a retry");
    }
    assert_eq!(
        d.events("accept_paused").filter(|v| warned(v)).count(),
        1,
        "one warning per episode"
    );
    drop(clients);
    let ev = d.wait_event("accept_resumed");
    assert_eq!(field(&ev, "level"), "INFO");
    let mut c = connect(addr);
    assert_eq!(ask(&mut c, "served again"), "served again");
    assert_eq!(d.events("accept_paused").filter(|v| warned(v)).count(), 1);
}

/// Send from `client` (bound to a blocked port), check the drop is logged, and that nothing
/// came back while an ordinary peer is answered.
fn assert_blocked(d: &mut Daemon, client: &UdpSocket, to: SocketAddr) {
    client.send_to(b"reflect me", to).unwrap();
    let port = client.local_addr().unwrap().port();
    let ev = d
        .wait_for(|v| event(v) == "refused" && field(v, "reason") == "blocked_port")
        .expect("drop logged");
    assert_eq!(field(&ev, "port"), port.to_string());
    assert_eq!(udp_ask(&udp_client(), to, "ordinary"), "ordinary");
    assert!(nothing_received(client), "a blocked port got an answer");
}

#[test]
fn udp_does_not_answer_well_known_service_ports() {
    let client = match UdpSocket::bind("127.0.0.1:7") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: cannot bind 127.0.0.1:7 to play the echo service ({e})");
            return;
        }
    };
    let mut d = Daemon::start(&udp_listener("u", ECHO, ""));
    let to = d.addr("u");
    assert_blocked(&mut d, &client, to);
}

#[test]
fn udp_blocked_ports_can_be_configured() {
    let client = udp_client();
    let port = client.local_addr().unwrap().port();
    let mut d = Daemon::start(&udp_listener(
        "u",
        ECHO,
        &format!("udp_blocked_ports = [{port}]"),
    ));
    let to = d.addr("u");
    assert_blocked(&mut d, &client, to);
}

#[test]
fn udp_reply_rate_limits_what_one_peer_gets() {
    let mut d = Daemon::start(&udp_listener("u", ECHO, "reply_rate = 5\nreply_burst = 5"));
    let to = d.addr("u");
    let flood = udp_client();
    let start = Instant::now();
    for i in 0..40 {
        flood.send_to(format!("{i}").as_bytes(), to).unwrap();
    }
    let ev = d.wait_event("reply_dropped");
    assert_eq!(field(&ev, "peer"), flood.local_addr().unwrap().to_string());
    // Another address has its own allowance; its answer also comes after every flood reply.
    assert_eq!(udp_ask(&udp_client_from("127.0.0.2"), to, "mine"), "mine");
    let elapsed = start.elapsed().as_secs_f64();
    let got = drain(&flood);
    let most = 5 + (elapsed * 5.0).ceil() as usize;
    assert!(
        (5..=most).contains(&got),
        "{got} replies in {elapsed:.2} s at 5/s with a burst of 5"
    );
}

#[test]
fn udp_reply_rate_holds_across_sessions_of_one_address() {
    // A forged `bye` ends a session; the next datagram opens a new one. Its allowance must
    // not start afresh, or `bye` would lift the limit.
    let mut d = Daemon::start(&format!(
        "[daemon]\nlog_level = \"info,switchboard::daemon=debug\"\n{}",
        udp_listener(
            "u",
            "[\"bye-close\", \"echo\"]",
            "reply_rate = 1\nreply_burst = 3"
        )
    ));
    let to = d.addr("u");
    let flood = udp_client();
    let start = Instant::now();
    for i in 0..4 {
        flood.send_to(format!("m{i}").as_bytes(), to).unwrap();
        flood.send_to(b"bye", to).unwrap();
    }
    d.wait_event("reply_dropped");
    assert_eq!(udp_ask(&udp_client_from("127.0.0.2"), to, "sync"), "sync");
    let elapsed = start.elapsed().as_secs_f64();
    let got = drain(&flood);
    let most = 3 + elapsed.ceil() as usize;
    assert!(
        got <= most,
        "{got} of 8 replies in {elapsed:.2} s at 1/s with a burst of 3"
    );
    // Everything the flood caused is logged before the sync peer's session opens.
    d.wait_for(|v| event(v) == "session_opened" && field(v, "peer").starts_with("127.0.0.2:"))
        .expect("sync session");
    let flood_peer = flood.local_addr().unwrap().to_string();
    let opened = d
        .events("session_opened")
        .filter(|v| field(v, "peer") == flood_peer)
        .count();
    assert!(opened >= 4, "each bye ended a session ({opened} opened)");
}

#[test]
fn five_thousand_connections_leave_no_descriptor_behind() {
    let mut d = Daemon::start(&tcp_listener("t", ECHO, ""));
    let addr = d.addr("t");
    let before = d.open_fds();
    let start = Instant::now();
    for _ in 0..50 {
        let batch: Vec<TcpStream> = (0..100).map(|_| connect(addr)).collect();
        drop(batch);
        for _ in 0..100 {
            d.wait_event("session_closed");
        }
    }
    let deadline = Instant::now() + WAIT;
    let mut after = d.open_fds();
    while after > before && Instant::now() < deadline {
        // Polling /proc (the daemon may still be releasing a socket), with a deadline.
        std::thread::sleep(Duration::from_millis(10));
        after = d.open_fds();
    }
    assert_eq!(
        after, before,
        "descriptors before and after 5000 connections"
    );
    eprintln!("5000 connections in {:?}", start.elapsed());
}

/// The default `max_per_ip` (256) spares loopback peers: a local load tool or proxy is one
/// address for many clients. A value written in the config holds for them too (above).
#[test]
fn default_max_per_ip_spares_loopback_peers() {
    let d = Daemon::start(&tcp_listener("t", ECHO, ""));
    let addr = d.addr("t");
    let mut clients: Vec<TcpStream> = (0..300).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let m = format!("{i:03}");
        assert_eq!(ask(c, &m), m);
    }
}

#[test]
fn a_flood_of_udp_peers_never_locks_out_a_new_one() {
    let d = Daemon::start(&udp_listener("u", ECHO, "max_connections = 1000"));
    let to = d.addr("u");
    // 30,000 source ports, each a new peer: far more than the table holds, even if the
    // kernel drops some of them.
    for _ in 0..30_000 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"flood", to).unwrap();
    }
    let start = Instant::now();
    let c = udp_client();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0; 64];
    // The new peer's port may be one a flood socket had: a late "flood" echo may come first.
    c.send_to(b"a new peer", to).unwrap();
    loop {
        match c.recv_from(&mut buf) {
            Ok((n, _)) if &buf[..n] == b"a new peer" => break,
            Ok(_) => {}
            Err(_) => {
                c.send_to(b"a new peer", to).unwrap();
            }
        }
        assert!(start.elapsed() < WAIT, "never served");
    }
    // Served while the table is full of flood peers: the oldest made room.
    let status = run(&[
        "status",
        "--socket",
        d.dir.path().join("ctl.sock").to_str().unwrap(),
    ]);
    assert!(
        stdout(&status).contains("active 1000 "),
        "{}",
        stdout(&status)
    );
}

#[test]
fn slowloris_connections_are_closed_while_others_are_served() {
    let mut d = Daemon::start(&tcp_listener(
        "t",
        ECHO,
        "framing = \"line\"\nmessage_timeout = \"1s\"",
    ));
    let addr = d.addr("t");
    let mut slow: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
    let mut good = connect(addr);
    let start = Instant::now();
    // Each slow peer sends a byte at a time; none finishes its line.
    while start.elapsed() < Duration::from_millis(1500) {
        for s in &mut slow {
            let _ = s.write_all(b"x");
        }
        good.write_all(b"ping\n").unwrap();
        assert_eq!(read_n(&mut good, 5), b"ping\n");
        // The attacker's pace (a byte every 100 ms), not a wait for the daemon.
        std::thread::sleep(Duration::from_millis(100));
    }
    for s in &mut slow {
        assert_eq!(read_all(s), b"", "closed without an answer");
    }
    let ev = d
        .wait_for(|v| event(v) == "session_closed" && field(v, "reason") == "message_timeout")
        .expect("closed for message_timeout");
    assert_eq!(field(&ev, "level"), "INFO");
    good.write_all(b"still\n").unwrap();
    assert_eq!(read_n(&mut good, 6), b"still\n");
}

#[test]
fn a_status_request_waiting_out_a_descriptor_shortage_is_answered_when_it_ends() {
    let mut d = Daemon::start_with_nofile(&tcp_listener("t", ECHO, ""), 40);
    let addr = d.addr("t");
    let clients: Vec<TcpStream> = (0..60).map(|_| connect(addr)).collect();
    d.wait_for(|v| event(v) == "accept_paused" && field(v, "level") == "WARN")
        .expect("out of descriptors");
    // A status request comes while none is left for it...
    let sock = d.dir.path().join("ctl.sock");
    let status = std::thread::spawn(move || run(&["status", "--socket", sock.to_str().unwrap()]));
    d.wait_for(|v| event(v) == "accept_paused" && field(v, "socket") == "control")
        .expect("the control socket ran out too");
    // ...and is answered once descriptors are free, with no other client to wake the socket.
    drop(clients);
    let o = status.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("t 127.0.0.1:"), "{}", stdout(&o));
}
