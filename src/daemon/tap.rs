//! What a session does, as events for its listener's recordings (`record/`) and for
//! `switchboard watch` clients: its open, each read and write with its bytes, its close with
//! the reason. The core notes them (`Effect::Note`) only for sessions of a listener that
//! records, or while a watcher is connected; the shell adds the time and the addresses and
//! passes them on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};
use switchboard_handlers::{CloseReason, Proto};

use super::Daemon;
use super::core::Note;
use super::record::Recorder;
use crate::config::RecordConfig;

/// Longest payload shown to a watcher; the rest is cut (`"cut": true`).
pub(crate) const WATCH_PAYLOAD: usize = 256;

/// What every event of a session shares.
#[derive(Debug)]
pub(crate) struct TapSession {
    pub(crate) listener: Arc<str>,
    pub(crate) proto: Proto,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) record: Option<Arc<RecordConfig>>,
}

/// One event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) at: SystemTime,
    pub(crate) session: u64,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Open,
    /// Bytes read from the peer, as one read (or one datagram) took them.
    Read(Vec<u8>),
    /// Bytes written to the peer, as one write (or one datagram) took them.
    Write(Vec<u8>),
    Close(CloseReason),
}

/// The tapped sessions and the recorder.
#[derive(Debug, Default)]
pub(crate) struct Tap {
    sessions: HashMap<u64, Arc<TapSession>>,
    recorder: Option<Recorder>,
}

/// Whether bytes read as text: UTF-8 without control characters other than line ends and
/// tabs.
fn printable(b: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(b).ok()?;
    (!s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')))
    .then_some(s)
}

/// The event as one JSON object (a line of a recording, or of `watch`); payloads longer
/// than `cut` are cut.
pub(crate) fn line(ctx: &TapSession, ev: &Event, cut: Option<usize>) -> String {
    let mut m = Map::new();
    m.insert(
        "time".into(),
        humantime::format_rfc3339_micros(ev.at).to_string().into(),
    );
    let (name, bytes) = match &ev.kind {
        Kind::Open => ("open", None),
        Kind::Read(b) => ("read", Some(b)),
        Kind::Write(b) => ("write", Some(b)),
        Kind::Close(_) => ("close", None),
    };
    m.insert("event".into(), name.into());
    m.insert("listener".into(), ctx.listener.to_string().into());
    m.insert("proto".into(), ctx.proto.as_str().into());
    m.insert("session".into(), ev.session.into());
    m.insert("peer".into(), ctx.peer.to_string().into());
    match &ev.kind {
        Kind::Open => {
            m.insert("local".into(), ctx.local.to_string().into());
        }
        Kind::Close(reason) => {
            m.insert("reason".into(), reason.as_str().into());
        }
        Kind::Read(_) | Kind::Write(_) => {}
    }
    if let Some(b) = bytes {
        m.insert("size".into(), b.len().into());
        let shown = match cut {
            Some(max) if b.len() > max => {
                m.insert("cut".into(), true.into());
                &b[..max]
            }
            _ => &b[..],
        };
        match printable(shown) {
            Some(text) => m.insert("text".into(), text.into()),
            None => m.insert("hex".into(), switchboard_handlers::exec::hex(shown).into()),
        };
    }
    Value::Object(m).to_string()
}

impl Daemon {
    /// A note of the core: add the time and addresses, hand it to the recorder and watchers.
    pub(super) fn tap_note(&mut self, note: Note) {
        let at = SystemTime::now();
        let (ctx, ev) = match note {
            Note::Opened {
                key,
                id,
                listener,
                peer,
                earlier,
            } => {
                let Some(l) = self.core.listener(listener) else {
                    return;
                };
                let local = self
                    .conns
                    .get_mut(key)
                    .and_then(Option::as_mut)
                    .and_then(|c| c.transport.socket().local_addr().ok())
                    .unwrap_or(l.local);
                let ctx = Arc::new(TapSession {
                    listener: l.cfg.name.clone(),
                    proto: l.cfg.proto,
                    peer,
                    local,
                    record: l.cfg.record.clone(),
                });
                self.tap.sessions.insert(id, ctx.clone());
                if earlier {
                    return;
                }
                (ctx, Kind::Open.at(at, id))
            }
            Note::Read { id, bytes } => match self.tap.sessions.get(&id) {
                Some(ctx) => (ctx.clone(), Kind::Read(bytes).at(at, id)),
                None => return,
            },
            Note::Wrote { id, bytes } => match self.tap.sessions.get(&id) {
                Some(ctx) => (ctx.clone(), Kind::Write(bytes).at(at, id)),
                None => return,
            },
            Note::Closed { id, reason } => match self.tap.sessions.remove(&id) {
                Some(ctx) => (ctx, Kind::Close(reason).at(at, id)),
                None => return,
            },
        };
        if self.control.watching() {
            let text = line(&ctx, &ev, Some(WATCH_PAYLOAD));
            let gone =
                self.control
                    .watch_line(&text, &ctx.listener, ev.session, self.poll.registry());
            for op in gone {
                self.drop_client(op, "it does not read its events");
            }
        }
        if self.web_live() {
            self.web_event(&line(&ctx, &ev, Some(WATCH_PAYLOAD)));
        }
        if ctx.record.is_some() {
            self.tap
                .recorder
                .get_or_insert_with(Recorder::start)
                .send(&ctx, ev);
        }
    }
}

impl Kind {
    fn at(self, at: SystemTime, session: u64) -> Event {
        Event {
            at,
            session,
            kind: self,
        }
    }
}

impl Daemon {
    /// Someone began or stopped watching (a `watch` client, a browser on the live view): the
    /// core notes every session while anyone does; when nobody does any more, the sessions
    /// that no recording needs are forgotten (their end will not be noted).
    pub(super) fn watchers_changed(&mut self) {
        let on = self.control.watching() || self.web_live();
        self.core.set_watching(on);
        if !on {
            self.tap.sessions.retain(|_, ctx| ctx.record.is_some());
        }
    }
}
