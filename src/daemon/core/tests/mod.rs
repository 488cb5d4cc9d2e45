//! The core driven in process: sessions through every state, timers, drain and stop, UDP
//! batches, the console, reload and metrics, with a virtual clock and no sockets.

mod channels;
mod desk;
mod desk_view;
mod faults;
mod front;
mod harness;
mod reload;
mod udp;

use std::sync::Arc;
use std::time::Duration;

use switchboard_handlers::{CloseReason, Flow, Handler, HandlerFactory, Outbox, Session};

use self::harness::{Harness, parse};
use super::session::{LINGER, LINGER_MAX};
use super::{Effect, ReadMode, RunState};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

/// One TCP listener named `t` on 127.0.0.1:0 with these handlers and extra lines.
fn tcp(handlers: &str, extra: &str) -> String {
    format!(
        "[[listener]]\nname = \"t\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = {handlers}\n{extra}\n"
    )
}

const PEER: &str = "127.0.0.1:40000";

#[test]
fn a_session_opens_answers_ends_on_bye_and_lingers_until_the_peer_closes() {
    let mut h = Harness::new(&tcp(r#"["bye-close", "echo"]"#, ""));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"hi");
    assert_eq!(h.received(s), "hi");
    h.send(s, b"bye");
    assert_eq!(h.received(s), "bye");
    let p = h.peer(s);
    assert!(p.fin && !p.released, "FIN sent, input still drained");
    assert_eq!(h.core.read_mode(s), Some(ReadMode::Discard));
    h.eof(s);
    assert!(h.peer(s).released, "the peer's EOF ends the linger");
    assert_eq!(h.core.session_count(), 0);
}

#[test]
fn lingering_ends_after_linger_without_the_peers_eof() {
    let mut h = Harness::new(&tcp(r#"["bye-close", "echo"]"#, ""));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"bye");
    h.advance(LINGER - MS);
    assert!(!h.peer(s).released);
    h.advance(MS);
    assert!(h.peer(s).released);
}

#[test]
fn lingering_lasts_while_the_peer_keeps_sending_up_to_linger_max() {
    let mut h = Harness::new(&tcp(r#"["bye-close", "echo"]"#, ""));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"bye");
    let steps = LINGER_MAX.as_secs() / 2 - 1;
    for _ in 0..steps {
        h.advance(2 * SEC);
        h.core.discarded(s);
    }
    assert!(!h.peer(s).released, "still sending: still drained");
    h.advance(2 * SEC + MS);
    assert!(h.peer(s).released, "never more than LINGER_MAX");
}

#[test]
fn the_greeting_goes_out_when_the_session_opens() {
    let mut h = Harness::new(&tcp(
        r#"["scripted-reply"]"#,
        "[listener.scripted-reply]\ngreeting = \"hello {peer}\"\nfallback = \"?\"",
    ));
    let s = h.connect("t", PEER).unwrap();
    assert_eq!(h.received(s), format!("hello {PEER}"));
}

#[test]
fn the_last_line_at_end_of_input_sees_the_time_and_operators_of_that_moment() {
    let mut h = Harness::new(&tcp(
        r#"["scripted-reply", "console-reply"]"#,
        "framing = \"line\"\n[listener.scripted-reply]\n[[listener.scripted-reply.rule]]\nmatch = \"exact\"\npattern = \"time\"\nreply = \"{time}\"\n[listener.console-reply]\nunattended_reply = \"nobody here\"",
    ));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"time\n");
    assert_eq!(h.received(s), "22:13:20\n");
    // A minute later, an unterminated line, then the peer's FIN.
    h.advance(61 * SEC);
    h.send(s, b"time");
    assert_eq!(h.received(s), "", "not a line yet");
    h.eof(s);
    assert_eq!(h.received(s), "22:14:21\n");

    // The unattended decision is taken with the operators attached at that moment.
    let s = h.connect("t", "127.0.0.1:40001").unwrap();
    h.core.attach_operator(7, "op".into(), false);
    h.send(s, b"question");
    h.eof(s);
    assert_eq!(
        h.received(s),
        "",
        "an operator is attached: no unattended reply"
    );
    assert!(
        h.told
            .iter()
            .any(|(op, l)| *op == 7 && l.ends_with("question"))
    );
}

#[test]
fn replies_decided_before_the_end_of_input_still_go_out() {
    let mut h = Harness::new(&tcp(
        r#"["scripted-reply"]"#,
        "[listener.scripted-reply]\n[[listener.scripted-reply.rule]]\nmatch = \"exact\"\npattern = \"slow\"\nreply = \"late\"\ndelay = \"300ms\"",
    ));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"slow");
    h.eof(s);
    assert!(!h.peer(s).fin, "the session waits for its delayed reply");
    h.advance(300 * MS);
    assert_eq!(h.received(s), "late");
    assert!(
        h.peer(s).released,
        "then ends (the peer already closed: no linger)"
    );
}

#[test]
fn a_handler_that_closes_forgets_its_pending_timers() {
    let mut h = Harness::new(&tcp(
        r#"["bye-close", "scripted-reply"]"#,
        "[listener.scripted-reply]\n[[listener.scripted-reply.rule]]\nmatch = \"exact\"\npattern = \"slow\"\nreply = \"late\"\ndelay = \"300ms\"",
    ));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"slow");
    h.send(s, b"bye");
    assert_eq!(h.received(s), "bye");
    assert!(
        h.peer(s).fin,
        "ended once flushed, without waiting for the timer"
    );
    h.advance(SEC);
    assert_eq!(h.received(s), "");
}

/// A handler with a timer it can start and cancel: `arm`, `cancel`; it says `fired`.
#[derive(Debug)]
struct Alarm;

impl HandlerFactory for Alarm {
    fn name(&self) -> &'static str {
        "alarm"
    }

    fn session(&self) -> Box<dyn Handler> {
        Box::new(Alarm)
    }
}

impl Handler for Alarm {
    fn on_message(&mut self, msg: &[u8], _s: &Session, out: &mut Outbox) -> Flow {
        match msg {
            b"arm" => out.timer(1, SEC),
            b"cancel" => out.cancel_timer(1),
            _ => out.send(b"?"),
        }
        Flow::Handled
    }

    fn on_timer(&mut self, _id: u64, _s: &Session, out: &mut Outbox) {
        out.send(b"fired");
    }
}

fn alarm() -> Harness {
    let mut config = parse(&tcp(r#"["echo"]"#, ""));
    config.listeners[0].handlers = vec![Arc::new(Alarm) as Arc<dyn HandlerFactory>];
    Harness::with(config)
}

#[test]
fn handler_timers_fire_once_restart_on_rearm_and_can_be_cancelled() {
    let mut h = alarm();
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"arm");
    h.advance(SEC);
    assert_eq!(h.received(s), "fired");
    h.advance(10 * SEC);
    assert_eq!(h.received(s), "", "once");

    h.send(s, b"arm");
    h.advance(SEC / 2);
    h.send(s, b"arm");
    h.advance(SEC / 2);
    assert_eq!(
        h.received(s),
        "",
        "re-armed: the first one no longer counts"
    );
    h.advance(SEC / 2);
    assert_eq!(h.received(s), "fired");

    h.send(s, b"arm");
    h.send(s, b"cancel");
    h.advance(2 * SEC);
    assert_eq!(h.received(s), "", "cancelled");
}

#[test]
fn a_peer_that_does_not_read_pauses_reading_until_its_output_drains() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, "max_output = 8"));
    let s = h.connect("t", PEER).unwrap();
    h.peers.get_mut(&s).unwrap().room = 4;
    h.send(s, b"0123456789");
    assert_eq!(h.received(s), "0123");
    assert!(h.core.has_pending(s));
    assert_eq!(h.core.read_mode(s), Some(ReadMode::Read), "6 pending < 8");
    h.send(s, b"abcd");
    assert_eq!(
        h.core.read_mode(s),
        Some(ReadMode::Paused),
        "10 pending >= 8"
    );
    h.make_room(s, 100);
    assert_eq!(h.received(s), "456789abcd");
    assert_eq!(h.peer(s).resumed, 1, "told to read again");
    assert_eq!(h.core.read_mode(s), Some(ReadMode::Read));
    assert!(!h.core.has_pending(s));
}

#[test]
fn write_timeout_ends_a_session_whose_output_makes_no_progress() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, "write_timeout = \"1s\""));
    let s = h.connect("t", PEER).unwrap();
    h.peers.get_mut(&s).unwrap().room = 2;
    h.send(s, b"stuck");
    h.advance(SEC / 2);
    h.make_room(s, 1);
    assert_eq!(h.received(s), "stu", "progress moves the deadline");
    h.advance(SEC / 2 + MS);
    assert!(!h.peer(s).released);
    h.advance(SEC);
    let p = h.peer(s);
    assert!(
        p.released && !p.fin,
        "closed without linger: the peer does not read"
    );
}

#[test]
fn idle_sessions_end_after_idle_timeout_and_traffic_moves_the_deadline() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, "idle_timeout = \"5s\""));
    let s = h.connect("t", PEER).unwrap();
    h.advance(3 * SEC);
    h.send(s, b"still here");
    h.advance(3 * SEC);
    assert!(!h.peer(s).fin);
    h.advance(2 * SEC);
    assert!(h.peer(s).fin, "5 s after the last message");
}

#[test]
fn an_oversized_line_gets_the_reply_then_the_end() {
    let mut h = Harness::new(&tcp(
        r#"["echo"]"#,
        "framing = \"line\"\nmax_message = 4\ntoo_long_reply = \"too long\"",
    ));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"ok\ntoolong");
    assert_eq!(h.received(s), "ok\ntoo long\n");
    assert!(h.peer(s).fin);
    assert_eq!(h.core.read_mode(s), Some(ReadMode::Discard));
}

#[test]
fn stop_lets_sessions_flush_and_exits_when_the_last_one_is_gone() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, ""));
    let a = h.connect("t", PEER).unwrap();
    let b = h.connect("t", "127.0.0.1:40001").unwrap();
    h.peers.get_mut(&b).unwrap().room = 0;
    h.send(b, b"pending");
    h.core.stop();
    h.settle();
    assert_eq!(h.core.state(), RunState::Draining);
    assert!(
        h.stopped.contains(&h.listener("t")),
        "the listener closes at once"
    );
    assert!(h.peer(a).fin, "a had nothing pending: ended");
    assert!(!h.peer(b).fin, "b flushes first");
    h.make_room(b, 100);
    assert_eq!(h.received(b), "pending");
    assert!(h.peer(b).fin);
    h.eof(a);
    h.eof(b);
    assert_eq!(h.core.state(), RunState::Exit);
}

#[test]
fn stop_gives_up_at_drain_timeout() {
    let mut h = Harness::new(&format!(
        "{}[daemon]\ndrain_timeout = \"2s\"\n",
        tcp(r#"["echo"]"#, "")
    ));
    let s = h.connect("t", PEER).unwrap();
    h.peers.get_mut(&s).unwrap().room = 0;
    h.send(s, b"never read");
    h.core.stop();
    h.settle();
    h.advance(2 * SEC - MS);
    assert_eq!(h.core.state(), RunState::Draining);
    h.advance(MS);
    assert_eq!(h.core.state(), RunState::Exit);
    assert!(h.peer(s).released);
}

#[test]
fn stop_waits_for_delayed_replies() {
    let mut h = Harness::new(&tcp(
        r#"["scripted-reply"]"#,
        "[listener.scripted-reply]\n[[listener.scripted-reply.rule]]\nmatch = \"exact\"\npattern = \"slow\"\nreply = \"late\"\ndelay = \"300ms\"",
    ));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"slow");
    h.core.stop();
    h.settle();
    h.advance(300 * MS);
    assert_eq!(h.received(s), "late");
    assert!(h.peer(s).fin);
}

#[test]
fn a_stop_with_no_session_exits_at_once_and_a_drain_deadline_is_always_armed() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, ""));
    h.core.stop();
    h.settle();
    assert_eq!(h.core.state(), RunState::Exit);

    let mut h = Harness::new(&tcp(r#"["echo"]"#, ""));
    let s = h.connect("t", PEER).unwrap();
    h.peers.get_mut(&s).unwrap().room = 0;
    h.send(s, b"x");
    let before = h.core.timer_count();
    h.core.stop();
    assert!(h.core.timer_count() > before, "the drain deadline is armed");
    assert!(h.core.until_next().is_some());
}

#[test]
fn a_second_stop_ends_everything_at_once() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, ""));
    let s = h.connect("t", PEER).unwrap();
    h.peers.get_mut(&s).unwrap().room = 0;
    h.send(s, b"x");
    h.core.stop();
    h.core.halt();
    h.settle();
    assert_eq!(h.core.state(), RunState::Exit);
    let p = h.peer(s);
    assert!(p.released && !p.fin);
}

#[test]
fn errors_and_resets_end_at_once_without_linger() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, ""));
    let s = h.connect("t", PEER).unwrap();
    h.fail(s, CloseReason::PeerReset);
    let p = h.peer(s);
    assert!(p.released && !p.fin);
    assert!(
        h.core.status_lines()[1].contains("errors 0"),
        "a reset is no error of ours"
    );
    let s = h.connect("t", PEER).unwrap();
    h.fail(s, CloseReason::Error);
    assert!(h.core.status_lines()[1].contains("errors 1"));
}

#[test]
fn limits_refuse_before_a_session_exists() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, "max_connections = 1"));
    let _a = h.connect("t", PEER).unwrap();
    assert!(h.connect("t", "127.0.0.1:40001").is_none());
    assert_eq!(h.core.session_count(), 1);
    assert!(h.core.status_lines()[1].contains("refused 1"));
}

#[test]
fn a_connection_whose_handshake_never_finished_ends_without_its_chain() {
    let mut h = Harness::new(&tcp(
        r#"["scripted-reply"]"#,
        "[listener.scripted-reply]\ngreeting = \"hello\"\nfallback = \"?\"",
    ));
    let key = h
        .core
        .admit(h.listener("t"), PEER.parse().unwrap())
        .unwrap();
    h.peers.insert(key, Default::default());
    assert_eq!(
        h.core.read_mode(key),
        Some(ReadMode::Read),
        "the transport reads its handshake"
    );
    h.core.input(key, b"ignored before open");
    h.eof(key);
    assert_eq!(h.core.session_count(), 0);
    assert!(
        !h.effects.iter().any(|e| matches!(e, Effect::Transmit(_))),
        "no greeting: the session never opened"
    );
    assert!(h.core.status_lines()[1].contains("opened 1 closed 1"));
}

#[test]
fn once_listeners_stop_after_their_session_opens() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, "once = true"));
    let s = h.connect("t", PEER).unwrap();
    assert!(h.stopped.contains(&h.listener("t")));
    h.send(s, b"still served");
    assert_eq!(h.received(s), "still served");
    h.eof(s);
    assert_eq!(
        h.core.state(),
        RunState::Exit,
        "no listener, no session: done"
    );
}

#[test]
fn operators_answer_see_each_other_and_close_sessions() {
    let mut h = Harness::new(&tcp(r#"["bye-close", "console-reply"]"#, ""));
    h.core.attach_operator(1, "op1".into(), true);
    h.core.attach_operator(2, "op2".into(), true);
    h.settle();
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"help me");
    let shown: Vec<_> = h
        .told
        .iter()
        .filter(|(_, l)| l.ends_with("help me"))
        .collect();
    assert_eq!(shown.len(), 2, "both operators see it: {:?}", h.told);
    h.told.clear();
    h.core.operator_line(1, "hello");
    h.settle();
    assert_eq!(h.received(s), "hello");
    assert!(
        h.told
            .iter()
            .any(|(op, l)| *op == 2 && l.ends_with("op1> hello"))
    );
    assert!(
        !h.told.iter().any(|(op, _)| *op == 1),
        "op1 is not echoed its own line"
    );

    h.core.operator_line(2, "/close 1");
    h.settle();
    assert!(h.peer(s).fin);
    h.told.clear();
    h.core.operator_line(1, "@1 too late");
    h.settle();
    assert!(
        h.told[0].1.starts_with("(!) session #1 has ended"),
        "{:?}",
        h.told
    );
    assert_eq!(h.received(s), "");
}

#[test]
fn messages_wait_in_the_backlog_until_an_operator_attaches() {
    let mut h = Harness::new(&tcp(r#"["console-reply"]"#, ""));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"anyone?");
    assert!(h.told.is_empty());
    h.core.attach_operator(3, "late".into(), true);
    h.settle();
    let lines: Vec<&str> = h.told.iter().map(|(_, l)| l.as_str()).collect();
    assert!(lines[1].starts_with("-- 1 message(s) waiting"), "{lines:?}");
    assert!(lines[2].ends_with("anyone?"));
}

#[test]
fn a_line_trickled_byte_by_byte_cannot_hold_its_session() {
    let mut h = Harness::new(&tcp(
        r#"["echo"]"#,
        "framing = \"line\"\nidle_timeout = \"10s\"",
    ));
    let s = h.connect("t", PEER).unwrap();
    for _ in 0..29 {
        h.send(s, b"x");
        h.advance(SEC);
    }
    assert!(!h.peer(s).fin, "each byte keeps it from idling out");
    h.advance(SEC);
    assert!(
        h.peer(s).fin,
        "30 s after the line began (message_timeout's default)"
    );
    assert!(h.core.status_lines()[1].contains("closed 1"));
}

#[test]
fn the_message_timeout_counts_from_the_start_of_the_unfinished_line() {
    let mut h = Harness::new(&tcp(
        r#"["echo"]"#,
        "framing = \"line\"\nmessage_timeout = \"10s\"",
    ));
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"abc");
    h.advance(8 * SEC);
    h.send(s, b"def\nx");
    assert_eq!(h.received(s), "abcdef\n");
    h.advance(8 * SEC);
    assert!(!h.peer(s).fin, "the unfinished line is 8 s old");
    h.advance(2 * SEC);
    assert!(h.peer(s).fin);
}
