//! `mode = "shared"`: one child for every session of the listener, JSON lines both ways.
//!
//! To the child, one line per event (the loop adds `open` and `close`; this handler adds
//! `message`): `{"session":3,"event":"message","text":"hello"}`, with `"hex"` instead of
//! `"text"` when the bytes are not UTF-8. From the child: `{"session":3,"text":"HELLO"}` (or
//! `"hex"`) sends a message to that session's peer; `"close": true` ends the session (after
//! the text, when both are given).

use std::fmt::Write;

use serde_json::Value;
use tracing::debug;

use crate::channel::{ChannelEvent, ChannelSpec};
use crate::{Flow, Handler, Outbox, Scope, Session};

const CHILD: u64 = 0;

/// One session's `exec` link in shared mode.
#[derive(Debug)]
pub(super) struct SharedExec {
    spec: ChannelSpec,
    open: bool,
}

impl SharedExec {
    pub(super) fn new(spec: ChannelSpec) -> SharedExec {
        SharedExec { spec, open: false }
    }
}

/// The bytes as hexadecimal digits.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The line telling the child about a message of session `id`.
pub(crate) fn message_line(id: u64, msg: &[u8]) -> Vec<u8> {
    let v = match std::str::from_utf8(msg) {
        Ok(text) => serde_json::json!({"session": id, "event": "message", "text": text}),
        Err(_) => serde_json::json!({"session": id, "event": "message", "hex": hex(msg)}),
    };
    let mut line = v.to_string().into_bytes();
    line.push(b'\n');
    line
}

impl Handler for SharedExec {
    fn on_open(&mut self, _s: &Session, out: &mut Outbox) {
        out.open(CHILD, self.spec.clone());
        self.open = true;
    }

    fn on_message(&mut self, msg: &[u8], s: &Session, out: &mut Outbox) -> Flow {
        if self.open {
            out.to_channel(CHILD, &message_line(s.id, msg));
        }
        Flow::Handled
    }

    fn on_channel(&mut self, _id: u64, event: ChannelEvent<'_>, s: &Session, out: &mut Outbox) {
        match event {
            ChannelEvent::Data(line) => {
                let Ok(v) = serde_json::from_slice::<Value>(line) else {
                    debug!(
                        session = s.id,
                        event = "exec_bad_line",
                        "shared child: not a JSON line; dropped"
                    );
                    return;
                };
                if let Some(text) = v["text"].as_str() {
                    out.send(text.as_bytes());
                } else if let Some(bytes) = v["hex"].as_str().and_then(unhex) {
                    out.send(&bytes);
                }
                if v["close"].as_bool() == Some(true) {
                    out.close(Scope::Session);
                }
            }
            ChannelEvent::Closed(_) => {
                self.open = false;
                out.close(Scope::Session);
            }
            ChannelEvent::Opened | ChannelEvent::Stderr(_) | ChannelEvent::End => {}
        }
    }
}
