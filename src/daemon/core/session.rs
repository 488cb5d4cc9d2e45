//! A session: a TCP connection or a UDP peer, as a state machine.
//!
//! ```text
//!  Handshake ──open──▶ Open ──close asked / end of input / stop──▶ Draining ──flushed──▶ (ended)
//!      │                 │                                            │
//!      └──── error, write timeout, reset: ended at once ◀─────────────┘
//!  (ended) ──TCP, clean end──▶ Lingering ──peer's EOF, or quiet for LINGER──▶ removed
//!  (ended) ──UDP, or an error──▶ removed
//! ```
//!
//! Each phase says what it accepts: only `Open` takes messages and operator lines; `Open` and
//! `Draining` take handler timers (unless a handler asked to close); `Lingering` takes nothing
//! but the end of the peer's input. The chain is called in `Open` and `Draining` only, and
//! `on_close` exactly once, when the session leaves them.

use std::rc::Rc;
use std::time::{Duration, Instant};

use switchboard_handlers::{Chain, ChannelId, CloseReason, TimerId};

use super::channels::Channel;
use super::desk::Attendance;
use super::{ListenerId, SessionKey};
use crate::config::ListenerConfig;
use crate::faults::shape::Shaper;
use crate::framing::Framer;

/// How long an ended TCP session waits for more of what the peer still sends, before it
/// closes. Closing with unread input resets the connection, and a reset can destroy replies
/// still in flight to the peer: so, as nginx's lingering close does, the connection is read
/// and drained while data keeps coming (at most [`LINGER_MAX`] in all), and closed once the
/// peer has been quiet this long or has closed its side.
pub(crate) const LINGER: Duration = Duration::from_secs(5);
/// The longest an ended TCP session lingers, however much the peer keeps sending.
pub(crate) const LINGER_MAX: Duration = Duration::from_secs(30);

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepted; something in front of the bytes (a TLS handshake, a PROXY header) is not
    /// done yet. The chain has not been called.
    Handshake,
    /// Messages, operator lines and timers reach the chain.
    Open,
    /// Ending: no more input; waits for its output to be flushed and, unless a handler asked
    /// for the end, for the timers its handlers started.
    Draining(CloseReason),
    /// Ended (the chain is closed, the end logged) at `since`; the connection sent its FIN and
    /// its input is read and dropped until the peer's EOF, [`LINGER`] of quiet, or
    /// [`LINGER_MAX`].
    Lingering {
        /// When the session ended.
        since: Instant,
    },
}

/// What stands before a session in `Handshake` opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// Nothing (any more): the transport is ready.
    Ready,
    /// A PROXY protocol header.
    Header,
    /// A TLS handshake.
    Tls,
}

impl Front {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Front::Ready => "ready",
            Front::Header => "proxy_header",
            Front::Tls => "tls",
        }
    }
}

/// What the TLS handshake settled, for the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsInfo {
    /// `1.2` or `1.3`.
    pub(crate) version: &'static str,
    /// The server name the client asked for.
    pub(crate) sni: Option<Box<str>>,
    /// The subject of the client's certificate.
    pub(crate) client_cert: Option<std::sync::Arc<str>>,
}

/// Per-session traffic counts, logged when it ends and added to its listener's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) msgs_in: u64,
    pub(crate) msgs_out: u64,
}

/// A handler timer that is pending: link, the handler's id, and the heap entry's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandlerTimer {
    pub(crate) link: usize,
    pub(crate) id: TimerId,
    pub(crate) seq: u64,
    /// A session that ends waits for it (not for a soft timer).
    pub(crate) holds: bool,
}

/// What the shell should do with a session's socket before reading from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMode {
    /// Read and hand the bytes to the core.
    Read,
    /// Do not read now (backpressure, or the session drains); a `Resume` effect says when.
    Paused,
    /// Read and drop (lingering): hand only the end of input to the core.
    Discard,
}

/// Whether a session's output was ended by a handler (a half-close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputEnd {
    /// Output goes on.
    Open,
    /// FIN once what is pending is flushed.
    Asked,
    /// FIN sent (asked of the shell); later output is dropped.
    Done,
}

/// One session.
#[derive(Debug)]
pub(crate) struct Session {
    /// What handlers see: id, listener, peer, and `now`/`operators` as of the last event.
    pub(crate) info: switchboard_handlers::Session,
    pub(crate) listener: ListenerId,
    /// The listener's settings when the session opened: a reload changes them for new
    /// sessions only.
    pub(crate) cfg: Rc<ListenerConfig>,
    pub(crate) chain: Chain,
    pub(crate) framer: Framer,
    pub(crate) phase: Phase,
    /// Output the transport has not taken yet (TCP); empty, without capacity, when idle.
    pub(crate) pending: Vec<u8>,
    /// Handler timers started and neither fired nor cancelled.
    pub(crate) timers: Vec<HandlerTimer>,
    pub(crate) opened: Instant,
    pub(crate) last_active: Instant,
    /// When the unfinished message the framer holds began to arrive (`message_timeout`).
    pub(crate) partial_since: Option<Instant>,
    /// When the transport last took output, or output started to pile up.
    pub(crate) write_progress: Instant,
    /// A `write_timeout` check is pending.
    pub(crate) write_timer: bool,
    pub(crate) counts: Counts,
    /// Messages shown to the operator since the last operator reply.
    pub(crate) unanswered: u32,
    /// In `Handshake`: what is still to come before the session opens, and until when.
    pub(crate) front: Front,
    pub(crate) front_deadline: Instant,
    /// The TLS handshake's outcome, on a TLS listener.
    pub(crate) tls: Option<Box<TlsInfo>>,
    /// Who answers it, its recent messages, and what the reply discipline keeps for it.
    pub(crate) desk: Attendance,
    /// The channels its handlers opened, by slot (`core/channels.rs`).
    pub(crate) channels: Vec<Option<Channel>>,
    /// A handler ended its output (half-close).
    pub(crate) output_end: OutputEnd,
    /// It ends with a reset (a handler asked, or a fault): no linger, RST to the peer.
    pub(crate) reset: bool,
    /// Its place among its listener's sessions (1 for the first), for fault selectors.
    pub(crate) ordinal: u64,
    /// The faults on its output (`core/faults.rs`), while any apply or hold bytes.
    pub(crate) shaper: Option<Box<Shaper>>,
    /// A fault ends it: its channels do not hold it open.
    pub(crate) fault_closing: bool,
    /// When its fault timer is armed for.
    pub(crate) fault_timer: Option<Instant>,
}

impl Session {
    pub(crate) fn key_id(&self, key: SessionKey) -> SessionRef {
        SessionRef {
            key,
            id: self.info.id,
        }
    }

    /// Whether the chain still runs (the session has not ended).
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Draining(_))
    }

    /// What the shell should do before reading.
    pub(crate) fn read_mode(&self) -> ReadMode {
        match self.phase {
            Phase::Handshake => ReadMode::Read,
            Phase::Open if self.pending.len() + self.held() < self.cfg.max_output => ReadMode::Read,
            Phase::Open | Phase::Draining(_) => ReadMode::Paused,
            Phase::Lingering { .. } => ReadMode::Discard,
        }
    }

    /// Bytes its faults hold back on the way to the peer.
    pub(crate) fn held(&self) -> usize {
        self.shaper.as_ref().map_or(0, |s| s.held())
    }

    /// Whether a draining session may end: nothing left to write and, unless a handler (or a
    /// fault) asked for the end, no handler timer pending that it waits for and no channel open.
    pub(crate) fn drained(&self, staged: bool) -> bool {
        matches!(self.phase, Phase::Draining(_))
            && self.pending.is_empty()
            && !staged
            && self.held() == 0
            && !self.waits_for_timers()
            && (self.chain.is_closing()
                || self.fault_closing
                || self.channels.iter().all(Option::is_none))
    }

    /// Whether a handler timer it waits for is pending.
    pub(crate) fn waits_for_timers(&self) -> bool {
        self.timers.iter().any(|t| t.holds)
    }

    /// The channel `(link, id)` and its slot.
    pub(crate) fn channel_at(&mut self, link: usize, id: ChannelId) -> Option<(u16, &mut Channel)> {
        self.channels.iter_mut().enumerate().find_map(|(i, c)| {
            c.as_mut()
                .filter(|c| (c.link, c.id) == (link, id))
                .map(|c| (i as u16, c))
        })
    }

    /// The channel in `slot`.
    pub(crate) fn channel_mut(&mut self, slot: u16) -> Option<&mut Channel> {
        self.channels.get_mut(slot as usize)?.as_mut()
    }

    /// Forget the timer `(link, id)`; whether it was pending.
    pub(crate) fn forget_timer(&mut self, link: usize, id: TimerId) -> bool {
        let before = self.timers.len();
        self.timers.retain(|t| (t.link, t.id) != (link, id));
        self.timers.len() != before
    }

    /// Take the pending timer with this heap number, if it is still pending.
    pub(crate) fn take_timer(&mut self, seq: u64) -> Option<HandlerTimer> {
        let i = self.timers.iter().position(|t| t.seq == seq)?;
        Some(self.timers.swap_remove(i))
    }
}

/// A session named by its slab key and its id, so that a timer or effect for an ended
/// session is not applied to a new one that reuses the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SessionRef {
    pub(crate) key: SessionKey,
    pub(crate) id: u64,
}
