//! The desk as the web console sees it: rows with who answers each session, the lines said
//! while a browser follows it, and what it may act with.

use super::desk::{desk, say};
use crate::daemon::core::{SaidLine, Speaker, Standing};

const PEER: &str = "127.0.0.1:40001";

fn standing(h: &super::harness::Harness) -> Vec<(u64, Standing)> {
    h.core
        .desk_rows()
        .into_iter()
        .map(|r| (r.id, r.standing))
        .collect()
}

fn line(who: Speaker, text: &str) -> SaidLine {
    SaidLine {
        session: 1,
        who,
        text: text.into(),
    }
}

#[test]
fn the_feed_follows_a_handoff_a_take_a_release_and_every_line_said() {
    let mut h = desk("");
    // Nothing is collected while nobody follows the desk.
    let s = h.connect("t", PEER).unwrap();
    h.send(s, b"help");
    h.received(s);
    assert_eq!(h.core.take_desk_changes(), (false, Vec::new()));

    h.core.set_desk_feed(true);
    h.core.attach_operator(1, "Ann".into(), false);
    h.settle();
    assert!(h.core.take_desk_changes().0, "an operator came");
    assert_eq!(h.core.operator_names(), ["Ann"]);
    assert_eq!(standing(&h), [(1, Standing::Bot)]);
    // The history kept so far, for a browser that just came.
    assert_eq!(
        h.core.desk_histories(),
        [
            line(Speaker::Bot, "hello"),
            line(Speaker::Customer, "help"),
            line(Speaker::Bot, "the menu")
        ]
    );

    h.send(s, b"human");
    assert_eq!(h.received(s), "connecting you\nyou are number 1");
    let (dirty, said) = h.core.take_desk_changes();
    assert!(dirty, "handed over");
    assert_eq!(
        said,
        [
            line(Speaker::Customer, "human"),
            line(Speaker::Bot, "connecting you"),
            line(Speaker::Bot, "you are number 1"),
        ]
    );
    assert_eq!(standing(&h), [(1, Standing::Waiting(1))]);

    say(&mut h, 1, "/take 1");
    assert!(h.core.take_desk_changes().0);
    assert_eq!(standing(&h), [(1, Standing::Taken("Ann".into()))]);
    h.send(s, b"where is my parcel");
    say(&mut h, 1, "on its way");
    assert_eq!(h.received(s), "on its way");
    h.send(s, b"and a refund?");
    h.core.operator_canned(1, 1, "refund");
    h.settle();
    assert_eq!(h.received(s), "refunds for 127.0.0.1:40001 take 3 days");
    let (_, said) = h.core.take_desk_changes();
    assert_eq!(
        said,
        [
            line(Speaker::Customer, "where is my parcel"),
            line(Speaker::Operator("Ann".into()), "on its way"),
            line(Speaker::Customer, "and a refund?"),
            line(
                Speaker::Operator("Ann".into()),
                "refunds for 127.0.0.1:40001 take 3 days"
            ),
        ]
    );
    let canned = h.core.canned_replies();
    assert_eq!(canned.len(), 1);
    assert_eq!((&*canned[0].0, canned[0].1.as_str()), ("t", "refund"));

    // Released, then ended: the rows change each time; an ended session is no row.
    say(&mut h, 1, "/release 1");
    assert!(h.core.take_desk_changes().0);
    assert_eq!(standing(&h), [(1, Standing::Bot)]);
    say(&mut h, 1, "/close 1");
    assert!(h.core.take_desk_changes().0);
    assert_eq!(standing(&h), []);

    // An operator who leaves is no longer listed; without a follower nothing is kept.
    h.core.detach_operator(1, "gone");
    assert!(h.core.take_desk_changes().0);
    h.core.set_desk_feed(false);
    assert!(h.core.operator_names().is_empty());
}
