//! Channels: a child's stdin and stdout as a session's part, with backpressure both ways,
//! the end of input and its grace, a listener's shared child, and admission by max_children.

use std::time::Duration;

use super::harness::Harness;
use super::tcp;
use crate::daemon::core::{ChanRef, Effect, ReadMode};

const PEER: &str = "127.0.0.1:40000";

fn exec(extra: &str, exec: &str) -> String {
    tcp(
        r#"["bye-close", "exec"]"#,
        &format!("{extra}\n[listener.exec]\ncmd = [\"cat\"]\n{exec}"),
    )
}

#[test]
fn a_child_answers_through_its_pipes_and_its_exit_ends_the_session() {
    let mut h = Harness::new(&exec("", ""));
    let s = h.connect("t", PEER).unwrap();
    let c = ChanRef::Session(s, 0);
    assert!(h.effects.contains(&Effect::OpenChannel(c)));
    h.send(s, b"hello");
    assert_eq!(h.child_input(c), "hello\n");
    assert!(h.child_says(c, b"HEL"));
    assert_eq!(h.received(s), "", "half a line");
    assert!(h.child_says(c, b"LO\nsecond"));
    assert_eq!(h.received(s), "HELLO");
    h.child_exits(c, 0);
    assert_eq!(
        h.received(s),
        "second",
        "what the child wrote goes out first"
    );
    assert!(h.peer(s).fin, "then the session ends");
}

#[test]
fn a_child_that_does_not_read_stops_the_peer_being_read() {
    let mut h = Harness::new(&exec("max_output = 100", "framing = \"raw\""));
    let s = h.connect("t", PEER).unwrap();
    let c = ChanRef::Session(s, 0);
    h.children.get_mut(&c).unwrap().room = 0;
    for _ in 0..10 {
        h.send(s, &[b'x'; 10]);
    }
    assert_eq!(h.core.read_mode(s), Some(ReadMode::Paused));
    let before = h.peer(s).resumed;
    h.child_room(c, 60);
    assert_eq!(h.child_input(c).len(), 60);
    assert_eq!(h.core.read_mode(s), Some(ReadMode::Read));
    assert_eq!(h.peer(s).resumed, before + 1, "the peer is read again");
}

#[test]
fn a_peer_that_does_not_read_stops_the_child_being_read() {
    let mut h = Harness::new(&exec("max_output = 100", "framing = \"raw\""));
    let s = h.connect("t", PEER).unwrap();
    let c = ChanRef::Session(s, 0);
    h.peers.get_mut(&s).unwrap().room = 0;
    assert!(h.child_says(c, &[b'y'; 60]));
    assert!(h.child_says(c, &[b'y'; 60]));
    assert!(!h.child_says(c, b"more"), "max_output pending: not read");
    h.make_room(s, 1000);
    assert_eq!(h.received(s).len(), 120);
    assert_eq!(h.children[&c].resumed, 1);
    assert!(h.child_says(c, b"more"));
}

#[test]
fn the_peers_end_closes_stdin_then_the_child_is_ended_after_its_grace() {
    let mut h = Harness::new(&exec("", "grace = \"1s\""));
    let s = h.connect("t", PEER).unwrap();
    let c = ChanRef::Session(s, 0);
    h.send(s, b"last");
    h.eof(s);
    assert!(h.children[&c].input_ended);
    assert_eq!(h.child_input(c), "last\n");
    assert!(!h.peer(s).fin, "the session waits for its child");
    h.advance(Duration::from_millis(999));
    assert!(!h.children[&c].terminated);
    h.advance(Duration::from_millis(1));
    assert!(h.children[&c].terminated, "SIGTERM after grace");
    assert!(h.child_says(c, b"LAST\n"));
    h.child_exits(c, 143);
    assert_eq!(h.received(s), "LAST");
    assert!(h.peer(s).released, "the peer had closed: no linger");
}

#[test]
fn a_session_that_ends_otherwise_ends_its_child() {
    let mut h = Harness::new(&exec("", ""));
    let s = h.connect("t", PEER).unwrap();
    let c = ChanRef::Session(s, 0);
    h.send(s, b"bye");
    assert!(h.children[&c].terminated);
    let s = h.connect("t", "127.0.0.1:40001").unwrap();
    let c = ChanRef::Session(s, 0);
    h.fail(s, switchboard_handlers::CloseReason::PeerReset);
    assert!(h.children[&c].terminated);
    assert!(h.peer(s).released);
}

#[test]
fn a_shared_child_serves_every_session_by_its_id() {
    let mut h = Harness::new(&exec("", "mode = \"shared\""));
    let a = h.connect("t", PEER).unwrap();
    let b = h.connect("t", "127.0.0.1:40001").unwrap();
    let c = ChanRef::Shared(0);
    let opens = h
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::OpenChannel(_)))
        .count();
    assert_eq!(opens, 1, "one child for both");
    let input = h.child_input(c);
    assert!(
        input.contains(r#""event":"open""#) && input.contains(r#""session":2"#),
        "{input}"
    );
    h.send(b, b"hi");
    let input = h.child_input(c);
    assert!(
        input.contains(r#"{"session":2,"event":"message","text":"hi"}"#),
        "{input}"
    );
    assert!(h.child_says(c, b"{\"session\":2,\"text\":\"to b\"}\n{\"session\":1,\"te"));
    assert!(h.child_says(c, b"xt\":\"to a\"}\n{\"session\":99,\"text\":\"nobody\"}\n"));
    assert_eq!(h.received(a), "to a");
    assert_eq!(h.received(b), "to b");
    h.eof(a);
    assert!(h.child_input(c).contains(r#""session":1,"event":"close""#));
    assert!(
        !h.children[&c].terminated,
        "the child outlives its sessions"
    );
    h.core.stop();
    h.settle();
    h.eof(b);
    assert!(h.children[&c].input_ended, "stopping: the last one left");
    h.advance(switchboard_handlers::exec::DEFAULT_GRACE);
    assert!(h.children[&c].terminated);
}

#[test]
fn max_children_refuses_like_max_connections() {
    let mut h = Harness::new(&exec("", "max_children = 1"));
    assert!(h.connect("t", PEER).is_some());
    assert!(h.connect("t", "127.0.0.1:40001").is_none());
}
