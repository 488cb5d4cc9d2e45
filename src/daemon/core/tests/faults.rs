//! Faults in the core with a virtual clock: each kind on a session's output and on a
//! channel's input, bounded by max_output, changed while sessions run; and the forward
//! handler's channel events (half-close, reset, an unreachable upstream).

use std::net::SocketAddr;

use switchboard_handlers::{CloseReason, Ending};

use super::harness::{Harness, parse};
use super::{MS, PEER, SEC, tcp};
use crate::daemon::core::{ChanRef, ReadMode};

fn echo(faults: &str) -> Harness {
    Harness::new(&tcp(r#"["echo"]"#, faults))
}

fn fault(kind: &str, extra: &str) -> String {
    format!("[[listener.fault]]\nkind = \"{kind}\"\n{extra}\n")
}

/// A forward listener; its upstream is the harness's channel 0 of the session.
fn forward(extra: &str) -> Harness {
    Harness::new(&tcp(
        r#"["forward"]"#,
        &format!(
            "{extra}\n[listener.forward]\nupstream = \"127.0.0.1:7000\"\nunreachable_reply = \"down\""
        ),
    ))
}

fn reload(h: &mut Harness, config: &str) {
    let new = parse(config);
    let plan = h.core.plan_reload(&new);
    let bound: Vec<SocketAddr> = plan.bind.iter().map(|c| c.addr).collect();
    h.core.apply_reload(plan, &bound);
    h.settle();
}

#[test]
fn latency_holds_replies_back() {
    let mut h = echo(&fault("latency", "latency = \"200ms\""));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"hi");
    assert_eq!(h.received(s), "");
    h.advance(199 * MS);
    assert_eq!(h.received(s), "");
    h.advance(MS);
    assert_eq!(h.received(s), "hi");
}

#[test]
fn bandwidth_spreads_a_reply_over_time() {
    let mut h = echo(&fault("bandwidth", "rate = 1000"));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, &[b'x'; 1000]);
    h.advance(500 * MS);
    assert_eq!(h.received(s).len(), 500);
    h.advance(500 * MS);
    assert_eq!(h.received(s).len(), 500);
}

#[test]
fn limit_data_closes_after_n_bytes() {
    let mut h = echo(&fault("limit_data", "bytes = 5"));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"abc");
    h.send(s, b"defgh");
    assert_eq!(h.received(s), "abcde");
    assert!(h.peer(s).fin, "closed cleanly after the limit");
    assert!(!h.peer(s).reset);
}

#[test]
fn reset_peer_resets_after_its_timeout() {
    let mut h = echo(&fault("reset_peer", "timeout = \"100ms\""));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"a");
    assert_eq!(h.received(s), "a");
    h.advance(99 * MS);
    assert!(!h.peer(s).reset);
    h.advance(MS);
    let p = h.peer(s);
    assert!(p.reset && p.released && !p.fin, "RST, no FIN");
}

#[test]
fn timeout_passes_nothing_and_closes_when_its_time_comes() {
    let mut h = echo(&fault("timeout", "timeout = \"1s\""));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"lost");
    h.advance(999 * MS);
    assert_eq!(h.received(s), "");
    assert!(!h.peer(s).fin);
    h.advance(MS);
    assert!(h.peer(s).fin);
}

#[test]
fn slow_close_holds_the_fin_back() {
    let mut h = Harness::new(&tcp(
        r#"["bye-close", "echo"]"#,
        &fault("slow_close", "delay = \"2s\""),
    ));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"bye");
    assert_eq!(h.received(s), "bye");
    assert!(!h.peer(s).fin);
    h.advance(2 * SEC);
    assert!(h.peer(s).fin);
}

#[test]
fn a_fault_on_a_fast_stream_holds_no_more_than_max_output() {
    let mut h = echo(&format!(
        "max_output = 1000\n{}",
        fault("latency", "latency = \"10s\"")
    ));
    let s = h.connect("t", PEER).unwrap();
    for _ in 0..10 {
        h.send(s, &[b'x'; 100]);
    }
    assert_eq!(h.core.read_mode(s), Some(ReadMode::Paused), "held counts");
    let resumed = h.peer(s).resumed;
    h.advance(10 * SEC);
    assert_eq!(h.received(s).len(), 1000);
    assert_eq!(h.core.read_mode(s), Some(ReadMode::Read));
    assert!(h.peer(s).resumed > resumed, "reading resumes");
}

#[test]
fn corrupt_is_the_same_for_the_same_seed() {
    let run = |seed: u64| {
        let mut h = echo(&format!(
            "seed = {seed}\n{}",
            fault("corrupt", "probability = 0.05")
        ));
        let s = h.connect("t", PEER).unwrap();
        h.send(s, &[b'a'; 1000]);
        h.received(s)
    };
    let a = run(3);
    assert_eq!(a, run(3));
    assert_ne!(a, run(4));
    assert!(a.chars().any(|c| c != 'a'));
}

#[test]
fn to_server_faults_apply_to_what_the_upstream_is_given() {
    let mut h = forward(&fault(
        "latency",
        "direction = \"to_server\"\nlatency = \"100ms\"",
    ));
    let s = h.connect("t", PEER).unwrap();
    let up = ChanRef::Session(s, 0);
    h.send(s, b"request");
    assert_eq!(h.child_input(up), "");
    h.advance(100 * MS);
    assert_eq!(h.child_input(up), "request");
    assert!(h.child_says(up, b"answer"));
    assert_eq!(h.received(s), "answer", "the other way is untouched");
}

#[test]
fn selectors_pick_the_nth_session() {
    let mut h = echo(&fault("timeout", "sessions = \"2\""));
    let a = h.connect("t", PEER).unwrap();
    let b = h.connect("t", "127.0.0.1:40001").unwrap();
    h.send(a, b"one");
    h.send(b, b"two");
    assert_eq!(h.received(a), "one");
    assert_eq!(h.received(b), "", "only the second session");
}

#[test]
fn a_reload_adds_and_removes_faults_while_sessions_run() {
    let plain = tcp(r#"["echo"]"#, "");
    let mut h = Harness::new(&plain);
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"1");
    assert_eq!(h.received(s), "1");
    reload(
        &mut h,
        &tcp(r#"["echo"]"#, &fault("latency", "latency = \"1s\"")),
    );
    h.send(s, b"2");
    assert_eq!(h.received(s), "", "the open session takes the new fault");
    reload(&mut h, &plain);
    h.send(s, b"3");
    assert_eq!(h.received(s), "", "what was held goes first");
    h.advance(SEC);
    assert_eq!(h.received(s), "23");
    h.send(s, b"4");
    assert_eq!(h.received(s), "4");
}

#[test]
fn faults_added_and_removed_at_run_time() {
    let mut h = echo("");
    let s = h.connect("t", PEER).unwrap();
    let id = h.core.listener_named("t").unwrap();
    let f = crate::config::parse_fault_words(
        &["kind=timeout", "name=cut"],
        switchboard_handlers::Proto::Tcp,
    )
    .unwrap();
    h.core.add_fault(id, f.clone()).unwrap();
    assert!(h.core.add_fault(id, f).is_err(), "names are unique");
    h.send(s, b"lost");
    assert_eq!(h.received(s), "");
    assert!(h.core.remove_fault(id, "nope").is_err());
    h.core.remove_fault(id, "cut").unwrap();
    h.send(s, b"back");
    assert_eq!(h.received(s), "back");
}

#[test]
fn forward_passes_the_upstreams_fin_on_as_a_half_close() {
    let mut h = forward("");
    let s = h.connect("t", PEER).unwrap();
    let up = ChanRef::Session(s, 0);
    h.send(s, b"q");
    assert_eq!(h.child_input(up), "q");
    assert!(h.child_says(up, b"a"));
    h.core.channel_eof(up);
    h.settle();
    assert_eq!(h.received(s), "a");
    assert!(h.peer(s).half_closed && !h.peer(s).fin);
    h.send(s, b"still read");
    assert_eq!(h.child_input(up), "still read");
    h.eof(s);
    assert!(h.children[&up].input_ended, "the peer's FIN goes on");
    h.core.channel_closed(up, &Ending::Closed);
    h.settle();
    assert!(h.peer(s).released);
}

#[test]
fn forward_passes_resets_on_both_ways() {
    let mut h = forward("");
    let s = h.connect("t", PEER).unwrap();
    let up = ChanRef::Session(s, 0);
    h.core.channel_closed(up, &Ending::Reset);
    h.settle();
    assert!(h.peer(s).reset && h.peer(s).released);
    let s = h.connect("t", "127.0.0.1:40001").unwrap();
    let up = ChanRef::Session(s, 0);
    h.fail(s, CloseReason::PeerReset);
    assert!(h.children[&up].reset, "the upstream is reset too");
}

#[test]
fn an_unreachable_upstream_ends_the_session_with_its_reply() {
    let mut h = forward("");
    h.hold_opens = true;
    let s = h.connect("t", PEER).unwrap();
    let up = ChanRef::Session(s, 0);
    h.core
        .channel_closed(up, &Ending::Failed("connection refused".into()));
    h.settle();
    assert_eq!(h.received(s), "down");
    assert!(h.peer(s).fin);
}

#[test]
fn udp_faults_old_and_new_spellings_are_reproducible() {
    let udp = |extra: &str| {
        format!(
            "[[listener]]\nname = \"u\"\nprotocol = \"udp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = [\"echo\"]\nseed = 5\n{extra}\n"
        )
    };
    let run = |cfg: &str| {
        let mut h = Harness::new(cfg);
        for i in 0..40 {
            h.datagram("u", "127.0.0.1:40000", format!("{i}").as_bytes());
            h.advance(MS);
        }
        h.advance(SEC);
        h.datagrams_to("127.0.0.1:40000")
    };
    let old = udp("loss = 0.2\nduplicate = 0.2");
    let new = udp(&format!(
        "{}{}",
        fault("loss", "probability = 0.2"),
        fault("duplicate", "probability = 0.2")
    ));
    assert_eq!(run(&old), run(&new), "the old keys are these faults");
    let reorder = udp(&fault("reorder", "probability = 0.3\ndelay = \"5ms\""));
    let a = run(&reorder);
    assert_eq!(a, run(&reorder));
    let n: Vec<u32> = a.iter().map(|s| s.parse().unwrap()).collect();
    assert!(n.windows(2).any(|w| w[0] > w[1]), "reordered: {n:?}");
    assert_eq!(n.len(), 40, "none lost");
}
