//! UDP in the core: sessions per peer, batches, faults, stopping.

use std::time::Duration;

use super::harness::Harness;
use super::{RunState, SEC};

pub(super) fn udp(handlers: &str, extra: &str) -> String {
    format!(
        "[[listener]]\nname = \"u\"\nprotocol = \"udp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = {handlers}\n{extra}\n"
    )
}

const A: &str = "127.0.0.1:40000";
const B: &str = "127.0.0.1:40001";

#[test]
fn each_peer_is_a_session_and_gets_its_own_replies() {
    let mut h = Harness::new(&udp(r#"["echo"]"#, ""));
    h.batch("u", &[(A, b"from a"), (B, b"from b"), (A, b"")]);
    assert_eq!(h.datagrams_to(A), ["from a", ""]);
    assert_eq!(h.datagrams_to(B), ["from b"]);
    assert_eq!(h.core.session_count(), 2);
}

#[test]
fn a_listener_stopped_in_the_middle_of_a_batch_takes_nothing_more_from_it() {
    let mut h = Harness::new(&udp(
        r#"["bye-close", "echo"]"#,
        "[listener.bye-close]\nscope = \"listener\"",
    ));
    h.batch(
        "u",
        &[(A, b"hi"), (A, b"bye"), (B, b"new peer"), (A, b"again")],
    );
    assert_eq!(h.datagrams_to(A), ["hi", "bye"]);
    assert!(
        h.datagrams_to(B).is_empty(),
        "no session on a stopped listener"
    );
    assert_eq!(
        h.core.session_count(),
        0,
        "nothing left open on the dead socket"
    );
    assert_eq!(h.stopped, [h.listener("u")]);
    assert_eq!(h.core.state(), RunState::Exit);
}

#[test]
fn a_daemon_stop_in_the_middle_of_a_batch_leaves_no_session_behind() {
    let mut h = Harness::new(&udp(
        r#"["bye-close", "echo"]"#,
        "[listener.bye-close]\nscope = \"daemon\"",
    ));
    h.batch("u", &[(A, b"bye"), (B, b"new peer")]);
    assert_eq!(h.datagrams_to(A), ["bye"]);
    assert!(h.datagrams_to(B).is_empty());
    assert_eq!(h.core.state(), RunState::Exit);
}

#[test]
fn delayed_replies_go_out_before_the_socket_closes_on_stop() {
    let mut h = Harness::new(&udp(r#"["echo"]"#, "delay = \"1s\""));
    for i in 0..5 {
        h.datagram("u", &format!("127.0.0.1:{}", 40000 + i), b"x");
    }
    assert!(h.datagrams.is_empty());
    h.core.stop();
    h.settle();
    assert!(
        h.stopped.is_empty(),
        "kept open for the replies already decided"
    );
    assert_eq!(h.core.state(), RunState::Draining);
    h.advance(SEC);
    assert_eq!(h.datagrams.len(), 5);
    assert_eq!(h.stopped, [h.listener("u")]);
    assert_eq!(h.core.state(), RunState::Exit);
}

#[test]
fn faults_are_the_same_for_the_same_seed() {
    let run = |seed: u64| {
        let mut h = Harness::new(&udp(
            r#"["echo"]"#,
            &format!("loss = 0.3\nduplicate = 0.3\nseed = {seed}"),
        ));
        for i in 0..50 {
            h.datagram("u", A, format!("{i}").as_bytes());
        }
        h.datagrams_to(A)
    };
    let first = run(7);
    assert_eq!(first, run(7));
    assert_ne!(first, run(8));
    assert!(
        first.len() < 65 && first.len() > 35,
        "{} of 50",
        first.len()
    );
}

#[test]
fn idle_udp_sessions_end() {
    let mut h = Harness::new(&udp(r#"["echo"]"#, "idle_timeout = \"2s\""));
    h.datagram("u", A, b"x");
    h.advance(Duration::from_secs(2));
    assert_eq!(h.core.session_count(), 0);
    h.datagram("u", A, b"back");
    assert_eq!(h.core.session_count(), 1, "a new session for the same peer");
}

#[test]
fn udp_sessions_expire_by_default() {
    let mut h = Harness::new(&udp(r#"["echo"]"#, ""));
    h.datagram("u", A, b"x");
    h.advance(Duration::from_secs(119));
    assert_eq!(h.core.session_count(), 1);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.core.session_count(), 0, "120 s without a datagram");
    let mut h = Harness::new(&udp(r#"["echo"]"#, "idle_timeout = \"0\""));
    h.datagram("u", A, b"x");
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.core.session_count(), 1, "0 turns the expiry off");
}

#[test]
fn a_full_udp_table_makes_room_for_new_peers_least_recently_active_first() {
    let mut h = Harness::new(&udp(r#"["echo"]"#, "max_connections = 3"));
    for port in [1, 2, 3] {
        h.datagram("u", &format!("127.0.0.1:4000{port}"), b"hi");
        h.advance(SEC);
    }
    // Peer 1 speaks again: peer 2 is now the least recently active.
    h.datagram("u", "127.0.0.1:40001", b"still here");
    h.datagram("u", "127.0.0.1:40004", b"new");
    assert_eq!(h.datagrams_to("127.0.0.1:40004"), ["new"], "served at once");
    assert_eq!(h.core.session_count(), 3);
    let closed: Vec<_> = h.core.status_lines();
    assert!(closed[1].contains("refused 0"), "{closed:?}");
    // Peer 2's session is the one that went: it opens a new one when it speaks.
    h.datagram("u", "127.0.0.1:40002", b"back");
    assert!(
        h.core.status_lines()[1].contains("opened 5 closed 2"),
        "{:?}",
        h.core.status_lines()
    );
}

#[test]
fn a_flood_of_new_peers_never_locks_the_table() {
    let mut h = Harness::new(&udp(r#"["echo"]"#, "max_connections = 100"));
    for i in 0..3000u32 {
        let peer = format!("127.0.{}.{}:{}", i / 250, i % 250 + 1, 10_000 + i);
        h.datagram("u", &peer, b"flood");
    }
    h.datagrams.clear();
    h.datagram("u", A, b"a real peer");
    assert_eq!(h.datagrams_to(A), ["a real peer"]);
    assert_eq!(h.core.session_count(), 100);
}
