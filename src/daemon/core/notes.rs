//! What sessions do, noted for recordings and watchers (`Effect::Note`, carried out by the
//! shell's `tap.rs`): only for sessions of a listener that records, or while someone
//! watches.

use std::net::SocketAddr;

use switchboard_handlers::CloseReason;

use super::session::{Phase, Session};
use super::{Core, Effect, ListenerId, SessionKey};

/// What a session did, noted for recordings and watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Note {
    /// It opened (a connection accepted and ready, or a new UDP peer).
    Opened {
        key: SessionKey,
        id: u64,
        listener: ListenerId,
        peer: SocketAddr,
        /// It opened before anyone watched: the tap learns of it without showing an open,
        /// and shows what it does from now on.
        earlier: bool,
    },
    /// One read (or datagram) from its peer.
    Read { id: u64, bytes: Vec<u8> },
    /// One write (or datagram) to its peer.
    Wrote { id: u64, bytes: Vec<u8> },
    /// It ended.
    Closed { id: u64, reason: CloseReason },
}

impl Core {
    /// Whether every session's events are to be noted (a watcher is connected).
    /// Sessions already open when watching begins are made known to the tap.
    pub(crate) fn set_watching(&mut self, on: bool) {
        if on && !self.watching {
            for (key, s) in self.sessions.iter() {
                if matches!(s.phase, Phase::Open | Phase::Draining(_)) && s.cfg.record.is_none() {
                    self.effects.push_back(Effect::note(Note::Opened {
                        key,
                        id: s.info.id,
                        listener: s.listener,
                        peer: s.info.peer,
                        earlier: true,
                    }));
                }
            }
        }
        self.watching = on;
    }

    /// Whether a session's events are noted: its listener records, or someone watches.
    pub(super) fn tapped(&self, s: &Session) -> bool {
        self.watching || s.cfg.record.is_some()
    }
}
