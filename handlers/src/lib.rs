//! The message handlers of switchboard, free of I/O.
//!
//! A handler never touches a socket, a file or the clock. The event loop calls it with events
//! (a session opened, a message arrived, the operator typed a line, a timer fired, the session
//! is closing) and the handler answers by pushing actions into an [`Outbox`]: bytes to send,
//! close the session, start a timer, show something to the operator. The loop turns those
//! actions into writes and timers. So each handler is tested with plain function calls.
//!
//! A listener's `handlers = ["bye-close", "scripted-reply", "console-reply"]` is a chain of
//! responsibility: a message goes to the first handler; [`Flow::Pass`] hands it to the next.
//! One [`Handler`] instance exists per session and per chain link, made by the link's
//! [`HandlerFactory`], which the [`registry`] builds once from the config.
#![warn(missing_docs)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub mod bye_close;
mod chain;
pub mod channel;
pub mod console_reply;
pub mod echo;
pub mod exec;
pub mod forward;
mod outbox;
pub mod rand;
pub mod registry;
pub mod scripted_reply;
pub mod settings;
mod template;
pub mod testutil;
pub mod text;

pub use chain::Chain;
pub use channel::{ChannelEvent, ChannelId, ChannelSpec, Ending};
pub use outbox::Outbox;
pub use registry::{BuildEnv, BuildError, Registry};
pub use settings::Settings;

/// Transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// A stream socket: one session per connection.
    Tcp,
    /// A datagram socket: one session per peer address.
    Udp,
}

impl Proto {
    /// `"tcp"` or `"udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a handler knows about the session it serves. The loop fills `now` before each call,
/// so handlers never read the clock.
#[derive(Debug, Clone)]
pub struct Session {
    /// Daemon-wide session number, never reused while the daemon runs.
    pub id: u64,
    /// Name of the listener the session belongs to.
    pub listener: Arc<str>,
    /// Transport of the listener.
    pub proto: Proto,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Wall-clock time of the event being handled.
    pub now: SystemTime,
    /// How many operators are attached to the console right now.
    pub operators: usize,
    /// TLS with client certificates: the subject of the certificate the peer presented, like
    /// `CN=alice, O=Example`.
    pub client_cert: Option<Arc<str>>,
}

/// Identifies a timer within one handler instance; the handler chooses the numbers.
pub type TimerId = u64;

/// Whether a handler dealt with a message or hands it to the next link of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The message is dealt with; the rest of the chain does not see it.
    Handled,
    /// Give the message to the next handler. A message passed by the last handler is dropped
    /// (and logged at debug by the loop).
    Pass,
}

/// How far an end reaches when a handler ends a session (see `bye-close`'s `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// End this session only.
    Session,
    /// End this session and stop the listener accepting new ones.
    Listener,
    /// End this session and shut the whole daemon down gracefully.
    Daemon,
}

/// Where a session stands with the people at the operator console, given to
/// [`Handler::on_handoff`] when it changes.
///
/// A session starts with its handlers answering on their own. A handler hands it to a person
/// with [`Outbox::handoff`] (a bot's "talk to a person" rule); an operator takes it (`/take`,
/// or by answering it) and gives it back (`/release`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Handed to a person and waiting for one: `position` 1 is the next to be served.
    Waiting {
        /// The session's place in the queue, from 1.
        position: usize,
    },
    /// An operator took the session: people answer it.
    Taken,
    /// Given back: the handlers answer on their own again.
    Released,
}

/// Why a session ends; given to [`Handler::on_close`] and logged as `reason=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (TCP FIN).
    PeerClosed,
    /// The peer reset the connection (TCP RST).
    PeerReset,
    /// A handler asked for the end (for example on `bye`).
    Handler,
    /// The operator closed the session.
    Operator,
    /// No traffic within the listener's idle timeout.
    IdleTimeout,
    /// The daemon is stopping.
    Shutdown,
    /// A socket error.
    Error,
    /// A message longer than the listener's `max_message` (TCP line framing).
    TooLong,
    /// A line stayed unfinished longer than the listener's `message_timeout` (a peer that
    /// trickles bytes to hold a session open).
    MessageTimeout,
    /// A UDP listener's session table was full: the least recently active session made room
    /// for a new peer.
    Evicted,
    /// Output stayed pending without progress for the listener's `write_timeout`: the peer
    /// does not read.
    WriteTimeout,
    /// The upstream could not be reached (refused, unreachable, no answer in time).
    UpstreamFailed,
    /// The upstream reset its connection; the peer's is reset too.
    UpstreamReset,
    /// A fault ended it (`reset_peer`, `limit_data`, `timeout`).
    Fault,
    /// Its TLS handshake or PROXY header failed, before the session opened (no handler sees it).
    HandshakeFailed,
    /// Its TLS handshake or PROXY header did not finish in time (no handler sees it).
    HandshakeTimeout,
    /// The client a PROXY header named is refused by the rules or limits (no handler sees it).
    Refused,
}

impl CloseReason {
    /// Stable name for logs and metrics (`reason=peer_closed`).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::PeerReset => "peer_reset",
            CloseReason::Handler => "handler",
            CloseReason::Operator => "operator",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Error => "error",
            CloseReason::TooLong => "too_long",
            CloseReason::MessageTimeout => "message_timeout",
            CloseReason::Evicted => "evicted",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::UpstreamFailed => "upstream_failed",
            CloseReason::UpstreamReset => "upstream_reset",
            CloseReason::Fault => "fault",
            CloseReason::HandshakeFailed => "handshake_failed",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::Refused => "refused",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a handler asked the loop to do, other than sending bytes.
///
/// Handlers ask through [`Outbox`]'s methods, which fill in the chain link; the variants
/// cannot be built outside this crate, so no handler can start, cancel or forge a timer of
/// another link. The loop and tests read them with [`Outbox::actions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// End the session once everything sent before is flushed, with this reach.
    #[non_exhaustive]
    Close {
        /// How far the end reaches.
        scope: Scope,
        /// Why, as logged (`Handler` unless the handler says otherwise).
        reason: CloseReason,
    },
    /// End the session now, dropping what is not sent yet; a TCP peer's connection is reset
    /// (it sees ECONNRESET).
    #[non_exhaustive]
    Reset {
        /// Why, as logged.
        reason: CloseReason,
    },
    /// The peer gets no more output: once what was sent before is flushed, a TCP peer gets
    /// FIN (a half-close) while its input is still read. Later sends are dropped.
    EndOutput,
    /// Call [`Handler::on_timer`] of chain link `link` with `id` after the delay. A timer of
    /// the same link and id that is still pending is replaced.
    #[non_exhaustive]
    Timer {
        /// Index of the link in the chain.
        link: usize,
        /// The handler's own timer number.
        id: TimerId,
        /// How long from now.
        after: Duration,
        /// Whether a session that is ending waits for it ([`Outbox::timer`]) or not
        /// ([`Outbox::soft_timer`]).
        holds: bool,
    },
    /// Forget the pending timer `id` of chain link `link`, if there is one.
    #[non_exhaustive]
    CancelTimer {
        /// Index of the link in the chain.
        link: usize,
        /// The handler's own timer number.
        id: TimerId,
    },
    /// Show this text to the operator, tagged with the session. The text is raw peer text;
    /// the console escapes it.
    #[non_exhaustive]
    ToOperator {
        /// The text.
        text: String,
    },
    /// Hand the session to a person: it joins the operators' queue and every link's
    /// [`Handler::on_handoff`] is called. Ignored when no link of the chain takes operator
    /// lines, and when the session is with a person already.
    #[non_exhaustive]
    Handoff {
        /// Index of the link that asked.
        link: usize,
    },
    /// Send these bytes in front of the next message to the peer, in the same message
    /// (joined by a `\n`), whichever link sends it; or on their own if a link ends the session
    /// first.
    #[non_exhaustive]
    Ahead {
        /// Index of the link that sent them.
        link: usize,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Open channel `id` of chain link `link` (see [`channel`]). Opening an id that is still
    /// open is ignored.
    #[non_exhaustive]
    Open {
        /// Index of the link in the chain.
        link: usize,
        /// The handler's own channel number.
        id: ChannelId,
        /// What to open.
        spec: ChannelSpec,
    },
    /// Write bytes to the input of channel `id` of chain link `link`.
    #[non_exhaustive]
    ToChannel {
        /// Index of the link in the chain.
        link: usize,
        /// The handler's own channel number.
        id: ChannelId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// End the input of channel `id` once what was written is through (close a program's
    /// stdin; half-close a connection).
    #[non_exhaustive]
    EndChannelInput {
        /// Index of the link in the chain.
        link: usize,
        /// The handler's own channel number.
        id: ChannelId,
    },
    /// End channel `id` now (a program: SIGTERM, then SIGKILL after its `grace`); its
    /// `Closed` event still comes.
    #[non_exhaustive]
    CloseChannel {
        /// Index of the link in the chain.
        link: usize,
        /// The handler's own channel number.
        id: ChannelId,
    },
}

/// One link of a listener's chain, for one session.
///
/// Calling contract, for each session:
/// 1. [`on_open`](Handler::on_open) once, when the session opens (TCP: once the connection is
///    accepted and any handshake in front of it is done; UDP: on the peer's first datagram,
///    before that datagram's `on_message`), for every link in order.
/// 2. Then, while the session is open, in any order: [`on_message`](Handler::on_message) for
///    each complete message that reaches this link, [`on_operator`](Handler::on_operator) for
///    each operator line aimed at the session, and [`on_timer`](Handler::on_timer) for each
///    timer this instance started and did not cancel.
/// 3. [`on_close`](Handler::on_close) once, last, for every link. Nothing sent from it reaches
///    the peer.
///
/// Between 2 and 3 the session may drain, waiting for its output to be flushed:
/// - after a handler asked to close ([`Outbox::close`]): no further messages, operator lines or
///   timers reach the chain; the pending timers are forgotten;
/// - after the peer ended its input, or while the daemon stops gracefully: no further messages
///   or operator lines, but timers already started still fire, so that replies already decided
///   (a delayed answer) go out, until the daemon's `drain_timeout` passes (the session does not
///   wait for a [soft timer](Outbox::soft_timer)).
///
/// For listeners with a link that takes operator lines, [`on_handoff`](Handler::on_handoff) is
/// called for every link, in order, when the session is handed to a person, taken by an
/// operator or given back; and, while it waits, before the next call to the link when its
/// place in the queue has moved. What it sends joins the answer to the event in progress.
///
/// Every call gets the [`Session`] with `now` and `operators` as of that event.
///
/// Channels (see [`channel`]): a link that opened one with [`Outbox::open`] gets
/// [`on_channel`](Handler::on_channel) for it, in this order: `Opened` (or straight `Closed`
/// when it cannot be opened), any number of `Data` and `Stderr`, at most one `End`, and
/// exactly one `Closed`, last. Channel events reach the chain in `Open` and while draining,
/// like timers: after a handler asked to close, they no longer do. When the peer's input ends
/// or the daemon stops gracefully, the loop ends each channel's input and the session drains
/// until its channels are closed (each ends at most two `grace` periods later); when the
/// session ends for any other reason, its channels are ended with it. `on_close` comes after
/// the last channel event; a channel still open then gets no `Closed`.
pub trait Handler: fmt::Debug {
    /// The session opened.
    fn on_open(&mut self, _s: &Session, _out: &mut Outbox) {}

    /// A complete message (a read, a datagram or a line without its terminator). Return
    /// [`Flow::Pass`] to hand it to the next link.
    fn on_message(&mut self, msg: &[u8], s: &Session, out: &mut Outbox) -> Flow;

    /// The operator typed a reply for this session. Only the first link that returns
    /// [`Flow::Handled`] sees it.
    fn on_operator(&mut self, _line: &str, _s: &Session, _out: &mut Outbox) -> Flow {
        Flow::Pass
    }

    /// A timer started by this instance fired.
    fn on_timer(&mut self, _timer: TimerId, _s: &Session, _out: &mut Outbox) {}

    /// Where the session stands with the people at the console changed (see [`Handoff`]).
    /// A bot falls silent while a person has the session.
    fn on_handoff(&mut self, _to: Handoff, _s: &Session, _out: &mut Outbox) {}

    /// Something happened on channel `id`, which this instance opened.
    fn on_channel(
        &mut self,
        _id: ChannelId,
        _event: ChannelEvent<'_>,
        _s: &Session,
        _out: &mut Outbox,
    ) {
    }

    /// The session is ending.
    fn on_close(&mut self, _s: &Session, _reason: CloseReason) {}
}

/// Makes one [`Handler`] per session. Built once from the config; holds what sessions share
/// (compiled rules, loaded scripts).
pub trait HandlerFactory: fmt::Debug + Send + Sync {
    /// The registry name of the handler (`"echo"`, `"bye-close"`, ...).
    fn name(&self) -> &'static str;

    /// A handler for a new session.
    fn session(&self) -> Box<dyn Handler>;

    /// Whether the handler wants operator lines (the console only offers sessions of
    /// listeners that have one).
    fn takes_operator(&self) -> bool {
        false
    }

    /// Whether its handlers may hand sessions to a person ([`Outbox::handoff`]); the config
    /// then needs a link that takes operator lines after it.
    fn hands_off(&self) -> bool {
        false
    }

    /// How many recent messages of a session (both ways) operators are shown when it is
    /// handed to them; 0 for none.
    fn history(&self) -> usize {
        0
    }

    /// The canned replies operators may send (`/c NAME`): each name with its text as written,
    /// by name.
    fn canned(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The canned reply `name` rendered for session `s`, when this handler has one.
    fn render_canned(&self, _name: &str, _s: &Session) -> Option<String> {
        None
    }

    /// The most sessions of the listener that may run this handler at once (`exec`'s
    /// `max_children`); past it, the listener refuses new peers as it does at
    /// `max_connections`.
    fn max_sessions(&self) -> Option<usize> {
        None
    }
}
