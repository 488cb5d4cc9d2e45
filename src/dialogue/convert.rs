//! `switchboard test-script --from-transcript FILE`: a transcript's conversations as a
//! dialogue file, so that a conversation that went well becomes a test the script must keep
//! passing.
//!
//! Each session becomes a dialogue at the session's clock, peer and number. What
//! `scripted-reply` said before the first message is the greeting; each message of the
//! customer is a turn (`at` its time), expecting what `scripted-reply` answered to it, with a
//! `pause` when the answer came later (a delayed rule). A handoff marks the turn that asked
//! for it; while a person had the session the bot is expected to stay silent; an operator
//! taking a session from the bot, and giving it back, come back as `take = true` and
//! `release = true`. Messages another handler answered (`bye-close`, say) are left
//! out, as the bot never saw them.

use std::fmt::Write;
use std::time::Duration;

use crate::transcript::{Entry, sessions};

/// A TOML string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Milliseconds from `a` to `b`, when both times read.
fn gap(a: &Entry, b: &Entry) -> Option<Duration> {
    let (a, b) = (a.millis()?, b.millis()?);
    Some(Duration::from_millis(
        u64::try_from(b.saturating_sub(a)).unwrap_or(u64::MAX),
    ))
}

/// The bot whose answers a dialogue checks.
const BOT: &str = "scripted-reply";

fn is_bot(e: &Entry) -> bool {
    e.direction == "out" && e.who == "bot" && e.name.as_deref() == Some(BOT)
}

/// A dialogue file from a transcript's entries (only session `only`, when given).
pub(super) fn dialogues(entries: &[Entry], source: &str, only: Option<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Dialogues from the transcript {source}:\n\
         # what scripted-reply said there, which the script must keep saying.\n\
         # Run: switchboard test-script SCRIPT THIS_FILE"
    );
    let mut listener = None;
    for (id, list) in sessions(entries) {
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let first = list[0];
        if listener.is_none() {
            listener = Some(first.listener.clone());
            let _ = writeln!(out, "listener = {}", quoted(&first.listener));
        }
        let _ = writeln!(out, "\n[[dialogue]]");
        let _ = writeln!(
            out,
            "name = {}",
            quoted(&format!("session {id} from {}, {}", first.peer, first.time))
        );
        let _ = writeln!(out, "session = {id}");
        let _ = writeln!(out, "peer = {}", quoted(&first.peer));
        let _ = writeln!(out, "clock = {}", quoted(&first.time));
        let start = list.iter().position(|e| e.direction == "in");
        let greeting: Vec<&str> = list[..start.unwrap_or(list.len())]
            .iter()
            .filter(|e| is_bot(e))
            .map(|e| e.text.as_str())
            .collect();
        if let [g] = greeting.as_slice() {
            let _ = writeln!(out, "greeting = {}", quoted(g));
        }
        let Some(start) = start else {
            continue;
        };
        let mut with_person = list[..start]
            .iter()
            .any(|e| e.event.as_deref() == Some("handoff"));
        let mut release = false;
        let mut take = false;
        let mut i = start;
        while i < list.len() {
            let said = list[i];
            let next = list[i + 1..]
                .iter()
                .position(|e| e.direction == "in")
                .map_or(list.len(), |p| i + 1 + p);
            let after = &list[i + 1..next];
            let bot: Vec<&Entry> = after.iter().copied().filter(|e| is_bot(e)).collect();
            let others = after
                .iter()
                .any(|e| e.direction == "out" && e.who == "bot" && !is_bot(e));
            let handoff = after.iter().any(|e| e.event.as_deref() == Some("handoff"));
            let released = after.iter().any(|e| e.event.as_deref() == Some("released"));
            let taken = after.iter().any(|e| e.event.as_deref() == Some("taken"));
            i = next;
            if bot.is_empty() && others && !with_person && !handoff {
                let _ = writeln!(
                    out,
                    "# {:?} was answered by another handler: left out",
                    said.text
                );
                continue;
            }
            let _ = writeln!(out, "\n[[dialogue.turn]]");
            let _ = writeln!(out, "at = {}", quoted(&said.time));
            if release {
                let _ = writeln!(out, "release = true");
                release = false;
            }
            if take {
                let _ = writeln!(out, "take = true");
                take = false;
            }
            let _ = writeln!(out, "say = {}", quoted(&said.text));
            let late = bot
                .iter()
                .filter_map(|e| gap(said, e))
                .max()
                .unwrap_or_default();
            if !late.is_zero() {
                let _ = writeln!(
                    out,
                    "pause = {}",
                    quoted(&format!("{}ms", late.as_millis()))
                );
            }
            match bot.as_slice() {
                [] => {
                    let _ = writeln!(out, "silent = true");
                }
                [one] => {
                    let _ = writeln!(out, "reply = {}", quoted(&one.text));
                }
                many => {
                    let list: Vec<String> = many.iter().map(|e| quoted(&e.text)).collect();
                    let _ = writeln!(out, "replies = [{}]", list.join(", "));
                }
            }
            if handoff {
                let _ = writeln!(out, "handoff = true");
                with_person = true;
            }
            if released {
                with_person = false;
                release = true;
            } else if taken && !with_person {
                with_person = true;
                take = true;
            }
        }
    }
    out
}
