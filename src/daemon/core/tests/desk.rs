//! The support desk in the core: one reply per message, handoff and takeover, the queue, the
//! history operators are shown, canned replies and transcripts, on the virtual clock.

use super::harness::Harness;
use super::{SEC, tcp};

const PEER_A: &str = "127.0.0.1:40001";
const PEER_B: &str = "127.0.0.1:40002";
const PEER_C: &str = "127.0.0.1:40003";

/// A support desk over TCP: bye-close, a small bot, a person.
fn desk(extra: &str) -> Harness {
    Harness::new(&tcp(
        r#"["bye-close", "scripted-reply", "console-reply"]"#,
        &format!(
            r#"reply_mode = "one-per-message"
{extra}
[listener.scripted-reply]
greeting = "hello"
fallback = "sorry?"
handoff_after_unmatched = 2
[[listener.scripted-reply.rule]]
match = "exact"
pattern = "help"
reply = "the menu"
[[listener.scripted-reply.rule]]
match = "exact"
pattern = "human"
reply = "connecting you"
handoff = true
[[listener.scripted-reply.rule]]
match = "exact"
pattern = "slow"
reply = "slow answer"
delay = "500ms"
[listener.console-reply]
offline_reply = "nobody is online"
queue_reply = "you are number {{position}}"
wait_reply = "please wait"
wait_timeout = "20s"
history = 4
canned = {{ refund = "refunds for {{peer}} take 3 days" }}
"#
        ),
    ))
}

/// The lines operator `op` was told, taken out.
fn told(h: &mut Harness, op: usize) -> Vec<String> {
    let (mine, rest) = std::mem::take(&mut h.told)
        .into_iter()
        .partition(|(o, _)| *o == op);
    h.told = rest;
    mine.into_iter().map(|(_, l)| l).collect()
}

fn say(h: &mut Harness, op: usize, line: &str) {
    h.core.operator_line(op, line);
    h.settle();
}

#[test]
fn one_reply_per_message_the_tcp_greeting_rides_with_the_first_answer() {
    let mut h = desk("");
    let s = h.connect("t", PEER_A).unwrap();
    assert_eq!(h.received(s), "", "no reply before a message");
    h.send(s, b"help");
    assert_eq!(h.received(s), "hello\nthe menu");
    h.send(s, b"help");
    assert_eq!(h.received(s), "the menu");
    // A delayed answer holds the message's place; the next one waits behind it.
    h.send(s, b"slow");
    h.send(s, b"help");
    assert_eq!(h.received(s), "");
    h.advance(500 * super::MS);
    assert_eq!(
        h.received(s),
        "slow answerthe menu",
        "two replies for two messages"
    );
}

#[test]
fn free_mode_sends_the_tcp_greeting_at_once() {
    let mut h = Harness::new(&tcp(
        r#"["scripted-reply"]"#,
        "[listener.scripted-reply]\ngreeting = \"hello\"\nfallback = \"?\"",
    ));
    let s = h.connect("t", PEER_A).unwrap();
    assert_eq!(h.received(s), "hello");
}

#[test]
fn operator_lines_sent_without_a_question_go_with_the_next_answer() {
    let mut h = Harness::new(&tcp(
        r#"["bye-close", "console-reply"]"#,
        "reply_mode = \"one-per-message\"",
    ));
    h.core.attach_operator(1, "op1".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"q1");
    assert_eq!(h.received(s), "", "waits for the person");
    say(&mut h, 1, "a1");
    assert_eq!(h.received(s), "a1");
    say(&mut h, 1, "a2");
    assert_eq!(h.received(s), "", "no question waits: held");
    h.send(s, b"q2");
    say(&mut h, 1, "a3");
    assert_eq!(h.received(s), "a2\na3", "one reply for q2, nothing lost");
    say(&mut h, 1, "a4");
    h.send(s, b"bye");
    assert_eq!(h.received(s), "a4\nbye");
    assert!(h.peer(s).fin);
}

#[test]
fn what_is_held_goes_out_on_its_own_when_a_handler_ends_the_session() {
    let mut h = Harness::new(&tcp(
        r#"["bye-close", "console-reply"]"#,
        "reply_mode = \"one-per-message\"\n[listener.bye-close]\nreply = \"\"",
    ));
    h.core.attach_operator(1, "op1".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"q1");
    say(&mut h, 1, "a1");
    say(&mut h, 1, "one more thing");
    h.send(s, b"bye");
    assert_eq!(h.received(s), "a1one more thing");
}

#[test]
fn the_udp_greeting_rides_with_the_operators_answer_to_the_first_message() {
    let mut h = Harness::new(&super::udp::udp(
        r#"["bye-close", "scripted-reply", "console-reply"]"#,
        "[listener.scripted-reply]\ngreeting = \"hello\"\n[[listener.scripted-reply.rule]]\nmatch = \"exact\"\npattern = \"help\"\nreply = \"the menu\"",
    ));
    h.core.attach_operator(1, "op1".into(), false);
    h.datagram("u", PEER_A, b"something the bot does not know");
    assert!(h.datagrams_to(PEER_A).is_empty());
    say(&mut h, 1, "a person answers");
    assert_eq!(h.datagrams_to(PEER_A), ["hello\na person answers"]);
    // Answering took the session: the bot is silent until it is given back.
    h.datagram("u", PEER_A, b"help");
    assert!(h.datagrams_to(PEER_A).is_empty());
    say(&mut h, 1, "/release 1");
    h.datagram("u", PEER_A, b"help");
    assert_eq!(h.datagrams_to(PEER_A), ["the menu"]);
}

#[test]
fn a_handoff_by_keyword_shows_the_conversation_and_silences_the_bot() {
    let mut h = desk("");
    h.core.attach_operator(1, "op1".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"help");
    h.received(s);
    h.send(s, b"human");
    assert_eq!(
        h.received(s),
        "connecting you\nyou are number 1",
        "the bot's answer and the place in the queue, as one reply"
    );
    let lines = told(&mut h, 1);
    let tag = "[#1 t/tcp 127.0.0.1:40001]";
    assert_eq!(
        lines,
        [
            format!(
                "{tag} handed to a person by scripted-reply; number 1 in the queue; /take 1 to answer"
            ),
            format!("{tag} | customer> help"),
            format!("{tag} | bot> the menu"),
            format!("{tag} | customer> human"),
            format!("{tag} | bot> connecting you"),
        ],
        "the last 4 messages (history = 4)"
    );
    // The bot is silent now: "help" goes to the person.
    h.send(s, b"help");
    assert_eq!(h.received(s), "");
    assert_eq!(told(&mut h, 1), [format!("{tag} help")]);
    say(&mut h, 1, "hi, I am a person");
    assert_eq!(h.received(s), "hi, I am a person");
    say(&mut h, 1, "/list");
    let rows = told(&mut h, 1);
    assert!(rows[0].ends_with("with op1"), "{rows:?}");
    // bye-close still works.
    h.send(s, b"bye");
    assert_eq!(h.received(s), "bye");
}

#[test]
fn unmatched_messages_in_a_row_hand_over_and_the_last_one_waits_for_a_person() {
    let mut h = desk("");
    h.core.attach_operator(1, "op1".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"my parcel?");
    assert_eq!(h.received(s), "hello\nsorry?");
    h.send(s, b"my parcel is lost");
    assert_eq!(h.received(s), "", "waits for a person");
    let lines = told(&mut h, 1);
    assert!(
        lines[0].contains("handed to a person by scripted-reply"),
        "{lines:?}"
    );
    assert!(
        lines.last().unwrap().ends_with("] my parcel is lost"),
        "{lines:?}"
    );
    // Nobody answers within wait_timeout: the customer is told its place.
    h.advance(20 * SEC);
    assert_eq!(h.received(s), "you are number 1");
}

#[test]
fn with_nobody_attached_a_handoff_gets_the_offline_reply_and_the_next_operator_sees_it_all() {
    let mut h = desk("");
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"human");
    assert_eq!(h.received(s), "hello\nconnecting you\nnobody is online");
    h.send(s, b"are you there?");
    assert_eq!(h.received(s), "nobody is online");
    h.core.attach_operator(2, "late".into(), true);
    h.settle();
    let lines = told(&mut h, 2);
    assert!(lines[1].starts_with("-- 5 message(s) waiting"), "{lines:?}");
    assert!(lines[2].contains("handed to a person") && lines[2].contains("nobody was attached"));
    assert!(lines.iter().any(|l| l.ends_with("] are you there?")));
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("-- 1 session(s) waiting for a person: #1"),
        "{lines:?}"
    );
}

#[test]
fn take_shows_the_history_silences_the_bot_and_release_gives_it_back() {
    let mut h = desk("");
    h.core.attach_operator(1, "op1".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"help");
    h.received(s);
    say(&mut h, 1, "/take 1");
    let lines = told(&mut h, 1);
    assert!(lines[0].ends_with("you have it now (op1)"), "{lines:?}");
    assert!(lines[2].ends_with("| customer> help"), "{lines:?}");
    h.send(s, b"help");
    assert_eq!(h.received(s), "", "the bot is silent");
    say(&mut h, 1, "I can help");
    assert_eq!(h.received(s), "I can help");
    h.told.clear();
    say(&mut h, 1, "/release 1");
    assert!(told(&mut h, 1)[0].contains("released by op1"));
    h.send(s, b"help");
    assert_eq!(h.received(s), "the menu", "the bot answers again");
    say(&mut h, 1, "/release 1");
    assert_eq!(
        told(&mut h, 1),
        ["(!) #1 is not with a person: nothing to release"]
    );
    say(&mut h, 1, "/take 99");
    assert_eq!(
        told(&mut h, 1),
        ["(!) no open session #99; /list shows them"]
    );
}

#[test]
fn two_operators_one_owner_and_an_owner_who_leaves_puts_the_session_back_in_the_queue() {
    let mut h = desk("");
    h.core.attach_operator(1, "op1".into(), false);
    h.core.attach_operator(2, "op2".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"human");
    h.received(s);
    h.told.clear();
    h.send(s, b"question");
    say(&mut h, 1, "@1 op1 here");
    assert_eq!(h.received(s), "op1 here");
    let seen = told(&mut h, 2);
    assert!(seen.iter().any(|l| l.ends_with("taken by op1")), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.ends_with("op1> op1 here")),
        "{seen:?}"
    );
    say(&mut h, 2, "@1 op2 here");
    assert_eq!(
        told(&mut h, 2),
        ["(!) #1 is taken by op1; your reply was not sent (/take 1 to take it over)"]
    );
    assert_eq!(h.received(s), "");
    say(&mut h, 2, "/release 1");
    assert!(told(&mut h, 2)[0].starts_with("(!) #1 is taken by op1; /take 1 first"));
    h.told.clear();
    say(&mut h, 2, "/take 1");
    assert!(told(&mut h, 1)[0].ends_with("taken by op2"));
    h.send(s, b"again");
    say(&mut h, 2, "op2 here");
    assert_eq!(h.received(s), "op2 here");
    h.told.clear();
    h.core.detach_operator(2, "gone");
    h.settle();
    assert_eq!(
        told(&mut h, 1),
        ["[#1 t/tcp 127.0.0.1:40001] op2 left: back in the queue, number 1"]
    );
    say(&mut h, 1, "/list");
    assert!(told(&mut h, 1)[0].ends_with("waiting 1"));
}

#[test]
fn three_waiting_customers_are_told_their_places_as_the_queue_moves() {
    let mut h = desk("");
    h.core.attach_operator(1, "op1".into(), false);
    let a = h.connect("t", PEER_A).unwrap();
    let b = h.connect("t", PEER_B).unwrap();
    let c = h.connect("t", PEER_C).unwrap();
    for (k, n) in [(a, 1), (b, 2), (c, 3)] {
        h.send(k, b"human");
        assert_eq!(
            h.received(k),
            format!("hello\nconnecting you\nyou are number {n}")
        );
    }
    for k in [a, b, c] {
        h.send(k, b"still waiting?");
    }
    h.advance(20 * SEC);
    assert_eq!(h.received(a), "you are number 1");
    assert_eq!(h.received(b), "you are number 2");
    assert_eq!(h.received(c), "you are number 3");
    // The first is taken; the others move up.
    say(&mut h, 1, "/take 1");
    for k in [a, b, c] {
        h.send(k, b"and now?");
    }
    h.advance(20 * SEC);
    assert_eq!(h.received(a), "please wait", "taken, not answered in time");
    assert_eq!(h.received(b), "you are number 1");
    assert_eq!(h.received(c), "you are number 2");
    // One leaves.
    h.eof(b);
    h.send(c, b"and now?");
    h.advance(20 * SEC);
    assert_eq!(h.received(c), "you are number 1");
}

#[test]
fn canned_replies_are_listed_and_sent_with_their_variables() {
    let mut h = desk("");
    h.core.attach_operator(1, "op1".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"human");
    h.received(s);
    h.send(s, b"can I get my money back?");
    h.told.clear();
    say(&mut h, 1, "/c");
    assert_eq!(
        told(&mut h, 1),
        ["  /c refund       refunds for {peer} take 3 days"]
    );
    say(&mut h, 1, "/c nope");
    assert_eq!(
        told(&mut h, 1),
        ["(!) no canned reply named \"nope\"; /c lists them"]
    );
    say(&mut h, 1, "/c refund");
    assert_eq!(h.received(s), "refunds for 127.0.0.1:40001 take 3 days");
    assert_eq!(
        told(&mut h, 1),
        ["[#1 t/tcp 127.0.0.1:40001] op1> refunds for 127.0.0.1:40001 take 3 days"],
        "shown what went out"
    );
}

#[test]
fn transcripts_record_both_ways_with_who_said_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = desk(&format!("transcripts = {:?}", dir.path().to_str().unwrap()));
    h.core.attach_operator(1, "op1".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"human");
    h.send(s, b"where is my parcel?");
    say(&mut h, 1, "on its way");
    say(&mut h, 1, "/release 1");
    let rows: Vec<String> = h
        .records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r.direction,
                r.who,
                r.name.as_deref().unwrap_or("-"),
                r.event.unwrap_or("-"),
                r.text
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "out bot scripted-reply - hello",
            "in customer - - human",
            "out bot scripted-reply - connecting you",
            "event bot scripted-reply handoff ",
            "out bot console-reply - you are number 1",
            "in customer - - where is my parcel?",
            "event operator op1 taken ",
            "out operator op1 - on its way",
            "event operator op1 released ",
        ]
    );
    assert!(
        h.records
            .iter()
            .all(|r| r.session == 1 && r.listener.as_ref() == "t")
    );
}

#[test]
fn a_customer_waiting_for_a_person_does_not_hold_up_the_end_of_the_session_or_a_stop() {
    let mut h = desk("");
    h.core.attach_operator(1, "op1".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, b"human");
    h.send(s, b"still there?");
    // The peer leaves while its message waits for wait_timeout: the session ends now.
    h.eof(s);
    assert!(h.peer(s).released, "ended without waiting for the reminder");
    let s = h.connect("t", PEER_B).unwrap();
    h.send(s, b"human");
    h.send(s, b"still there?");
    h.core.stop();
    h.settle();
    assert!(h.peer(s).fin);
    h.eof(s);
    assert_eq!(
        h.core.state(),
        super::RunState::Exit,
        "no wait for drain_timeout"
    );
}

#[test]
fn the_history_keeps_the_start_of_a_long_message() {
    let mut h = desk("");
    h.core.attach_operator(1, "op1".into(), false);
    let s = h.connect("t", PEER_A).unwrap();
    h.send(s, "长".repeat(2000).as_bytes());
    h.send(s, b"human");
    let lines = told(&mut h, 1);
    let long = lines
        .iter()
        .find(|l| l.contains("| customer> 长"))
        .expect("the long message in the history");
    let shown = long.split("customer> ").nth(1).unwrap();
    assert!(shown.ends_with('…'), "{shown}");
    assert_eq!(
        shown.chars().count(),
        1000 / 3 + 1,
        "cut at a character boundary"
    );
}
