//! Reload as a diff, and the metrics around it.

use std::net::SocketAddr;

use super::super::ReloadSummary;
use super::harness::{Harness, parse};
use super::{PEER, tcp};

/// Reload to `config` as the shell does: plan, "bind" what is new, commit.
fn reload(h: &mut Harness, config: &str) -> ReloadSummary {
    let new = parse(config);
    let plan = h.core.plan_reload(&new);
    let bound: Vec<SocketAddr> = plan
        .bind
        .iter()
        .enumerate()
        .map(|(i, c)| SocketAddr::new(c.addr.ip(), 20_000 + i as u16))
        .collect();
    let summary = plan.summary.clone();
    h.core.apply_reload(plan, &bound);
    h.settle();
    summary
}

fn udp(extra: &str) -> String {
    format!(
        "[[listener]]\nname = \"u\"\nprotocol = \"udp\"\nip = \"127.0.0.1\"\nport = 7000\nhandlers = [\"echo\"]\n{extra}\n"
    )
}

#[test]
fn configs_compare_by_value_not_by_layout() {
    let script = |reply: &str| {
        tcp(
            r#"["scripted-reply"]"#,
            &format!(
                "# a comment\n[listener.scripted-reply]\nfallback = \"{reply}\"\nignore_case = true"
            ),
        )
    };
    let mut h = Harness::new(&script("v1"));
    let same = tcp(
        r#"["scripted-reply"]"#,
        "[listener.scripted-reply]\nignore_case   =   true\nfallback = 'v1'",
    );
    let s = reload(&mut h, &same);
    assert_eq!((s.unchanged, s.changed.len()), (1, 0), "{s}");
    let s = reload(&mut h, &script("v2"));
    assert_eq!(s.changed, ["t"], "{s}");
    // New sessions get the new chain; an open one keeps its own.
    let c = h.connect("t", PEER).unwrap();
    h.send(c, b"x");
    assert_eq!(h.received(c), "v2");
}

#[test]
fn a_moved_listener_and_its_retiring_predecessor_are_one_series() {
    let moved = |port: u16| {
        format!(
            "[[listener]]\nname = \"a\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = {port}\nhandlers = [\"echo\"]\n"
        )
    };
    let mut h = Harness::new(&moved(7001));
    let s = h.connect("a", PEER).unwrap();
    h.send(s, b"1234");
    let summary = reload(&mut h, &moved(7002));
    assert_eq!(summary.changed, ["a"]);
    let text = h.core.prometheus();
    let active: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("switchboard_sessions_active{"))
        .collect();
    assert_eq!(
        active,
        ["switchboard_sessions_active{listener=\"a\",proto=\"tcp\"} 1"],
        "{text}"
    );
    assert!(text.contains("switchboard_listener_up{listener=\"a\",proto=\"tcp\"} 1"));
    assert!(text.contains("switchboard_bytes_in_total{listener=\"a\",proto=\"tcp\"} 4"));
    // The old session ends: the retired row leaves, its counts stay with the name.
    h.eof(s);
    h.eof(s);
    assert_eq!(h.core.listeners().count(), 1, "no dead row");
    let text = h.core.prometheus();
    assert!(
        text.contains("switchboard_sessions_opened_total{listener=\"a\",proto=\"tcp\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_bytes_in_total{listener=\"a\",proto=\"tcp\"} 4"),
        "{text}"
    );
    assert_eq!(h.core.status_lines().len(), 2);
}

#[test]
fn removing_and_adding_back_a_udp_listener_takes_its_socket_back() {
    let mut h = Harness::new(&udp(""));
    h.datagram("u", PEER, b"hi");
    let other = "[[listener]]\nname = \"x\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = 7005\nhandlers = [\"echo\"]\n";
    let s = reload(&mut h, other);
    assert_eq!(s.removed, ["u"]);
    assert!(h.stopped.is_empty(), "still serving its peer");
    // Its peer is still answered; a new one is not.
    h.datagram("u", PEER, b"still");
    assert_eq!(h.datagrams_to(PEER), ["hi", "still"]);
    h.datagram("u", "127.0.0.1:40009", b"new");
    assert!(h.datagrams_to("127.0.0.1:40009").is_empty());

    let s = reload(&mut h, &format!("{other}{}", udp("")));
    assert_eq!(s.added, ["u"]);
    let plan_bound = h
        .effects
        .iter()
        .filter(|e| matches!(e, super::Effect::StopListener(_)))
        .count();
    assert_eq!(plan_bound, 0, "the socket was taken over, never closed");
    h.datagram("u", "127.0.0.1:40009", b"new");
    assert_eq!(h.datagrams_to("127.0.0.1:40009"), ["new"], "serving again");
}

#[test]
fn add_remove_cycles_leave_no_rows_behind() {
    let base = tcp(r#"["echo"]"#, "");
    let mut h = Harness::new(&base);
    for _ in 0..50 {
        reload(&mut h, &format!("{base}{}", udp("")));
        reload(&mut h, &base);
    }
    assert_eq!(h.core.listeners().count(), 1);
    assert_eq!(h.core.status_lines().len(), 2);
}
