//! The core of the loop, free of I/O: listeners, sessions, the console, metrics and timers,
//! driven by inputs and a clock that the caller passes in, answering with [`Effect`]s.
//!
//! The shell (`src/daemon/mod.rs` and its socket modules) owns the sockets. It tells the core
//! what happened (`admit`, `open`, `input`, `end_of_input`, `failed`, `datagram`,
//! `operator_line`, `handle_timeout`, `stop`), then applies the effects the core queued:
//! write a session's output ([`Core::transmit`]), close or release a socket, stop a listener,
//! send datagrams ([`Core::datagrams`]), show a line to an operator. Tests drive the same core
//! with a virtual clock and no sockets (`core/tests/`).
//!
//! Every kind of input reaches a session's chain through one path, [`Core::drive`]
//! (`drive.rs`): refresh the session, call the chain, apply the outbox.

mod channels;
mod console;
mod datagrams;
mod desk;
mod desk_view;
mod drive;
mod due;
mod faults;
mod front;
mod limits;
mod listeners;
mod metrics;
mod notes;
mod output;
mod reload;
mod replies;
mod session;
mod shared;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use slab::Slab;
use switchboard_handlers::{Chain, CloseReason, Outbox, Proto};
use tracing::{debug, info};

pub(crate) use channels::{ChanRef, ChannelOpen};
pub(crate) use console::OpId;
pub(crate) use datagrams::Datagrams;
pub(crate) use desk_view::{SaidLine, Standing};
use due::Due;
pub(crate) use limits::Refusal;
pub(crate) use listeners::{Listener, ListenerId, ListenerPhase};
pub(crate) use notes::Note;
pub(crate) use reload::ReloadSummary;
pub(crate) use replies::Record;
pub(crate) use replies::Speaker;
use session::{Phase, Session};
pub(crate) use session::{ReadMode, TlsInfo};

use super::timers::Timers;
use crate::config::ListenerConfig;
use crate::framing::Framer;

/// A session's place in the core's table. The shell keeps the session's socket under the
/// same key.
pub(crate) type SessionKey = usize;

/// What the core asks the shell to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// The session has output: write [`Core::transmit`] and report with
    /// [`Core::transmitted`].
    Transmit(SessionKey),
    /// Reading may resume (backpressure is over): read again, as no new readiness edge may
    /// come for what already waits.
    Resume(SessionKey),
    /// The session ended cleanly: send FIN and read and drop the peer's input until its EOF
    /// (then [`Core::lingered`]) or until a [`Effect::Release`] comes.
    Close(SessionKey),
    /// Drop the session's socket and everything it owns, now.
    Release(SessionKey),
    /// Close the listener's socket (after sending what it has queued).
    StopListener(ListenerId),
    /// Show a line to an operator.
    Tell(OpId, Box<str>),
    /// Datagrams are ready to send: [`Core::datagrams`].
    Datagrams,
    /// Transcript lines are ready to write: [`Core::take_records`].
    Transcripts,
    /// Open a channel: [`Core::channel_open`] says what; report with
    /// [`Core::channel_opened`], or [`Core::channel_closed`] if it cannot be opened.
    OpenChannel(ChanRef),
    /// A channel has input: write [`Core::channel_input`] and report with
    /// [`Core::channel_written`].
    ChannelWrite(ChanRef),
    /// End a channel's input (close a program's stdin), its pending input being written.
    EndChannelInput(ChanRef),
    /// End a channel now (a program: SIGTERM, SIGKILL after its grace); keep reading it and
    /// report its end with [`Core::channel_closed`].
    CloseChannel(ChanRef),
    /// A channel's output may be read again (its peer caught up).
    ResumeChannel(ChanRef),
    /// End a channel at once with a reset (a connection: RST; a program: as `CloseChannel`),
    /// its session's peer having reset or been reset.
    ResetChannel(ChanRef),
    /// Half-close: send the session's peer FIN (its output is flushed); keep reading it.
    EndOutput(SessionKey),
    /// The session is to end with a reset: make the `Release` that follows send RST.
    Reset(SessionKey),
    /// What a recorded or watched session did (`tap.rs`). Boxed, as is `Tell`'s line: every
    /// message queues at least one effect, and the common ones carry a key or two.
    Note(Box<Note>),
}

// Queued and taken once or twice per message: kept to a few words.
const _: () = assert!(std::mem::size_of::<Effect>() <= 32);

impl Effect {
    pub(crate) fn note(note: Note) -> Self {
        Effect::Note(Box::new(note))
    }
}

/// Where the daemon is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    /// Stopping gracefully: no new sessions; sessions end as soon as their output is flushed
    /// and their decided replies are sent, or at the deadline.
    Draining,
    /// Done: the shell returns.
    Exit,
}

/// The bytes [`Core::transmit`] hands out for a session that had nothing pending: the
/// outbox (or its framed copy) of the last drive, not yet copied anywhere.
#[derive(Debug, Clone, Copy)]
struct Staged {
    key: SessionKey,
    /// In `scratch` (line framing added to it) rather than the outbox itself.
    in_scratch: bool,
}

/// The core.
#[derive(Debug)]
pub(crate) struct Core {
    sessions: Slab<Session>,
    listeners: Slab<Listener>,
    timers: Timers<Due>,
    effects: VecDeque<Effect>,
    console: console::Console,
    datagrams: Datagrams,
    /// The one outbox every handler call writes into.
    out: Outbox,
    /// What the drive in progress heard and said, and the transcript lines for the shell.
    said: replies::Said,
    /// Framed output (line framing's newlines) for the last drive.
    scratch: Vec<u8>,
    staged: Option<Staged>,
    state: RunState,
    drain_timeout: Duration,
    next_session: u64,
    next_serial: u64,
    timer_seq: u64,
    /// Whether debug events are on, asked once (at start and reload) rather than per message.
    debug: bool,
    /// Listener channels (`core/channels.rs`).
    shared: Slab<shared::Shared>,
    /// Sessions that joined an open listener channel, to be told it is open.
    opened_later: Vec<(SessionKey, u16)>,
    /// A watcher is connected: every session's events are noted.
    watching: bool,
    /// A browser follows the desk (`desk_view.rs`).
    feed: Option<desk_view::Feed>,
    now: Instant,
    wall: SystemTime,
}

impl Core {
    pub(crate) fn new(drain_timeout: Duration, now: Instant, wall: SystemTime) -> Core {
        Core {
            sessions: Slab::new(),
            listeners: Slab::new(),
            timers: Timers::default(),
            effects: VecDeque::new(),
            console: console::Console::default(),
            datagrams: Datagrams::default(),
            out: Outbox::new(),
            said: replies::Said::default(),
            scratch: Vec::new(),
            staged: None,
            state: RunState::Running,
            drain_timeout,
            next_session: 1,
            next_serial: 1,
            timer_seq: 0,
            debug: tracing::enabled!(tracing::Level::DEBUG),
            shared: Slab::new(),
            opened_later: Vec::new(),
            watching: false,
            feed: None,
            now,
            wall,
        }
    }

    /// The time of the events about to be handed in.
    pub(crate) fn set_clock(&mut self, now: Instant, wall: SystemTime) {
        self.now = now;
        self.wall = wall;
    }

    /// Ask the subscriber again whether debug events are on (after the log level changed).
    pub(crate) fn refresh_debug(&mut self) {
        self.debug = tracing::enabled!(tracing::Level::DEBUG);
    }

    /// The next effect to apply.
    pub(crate) fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The earliest deadline of the core's timers.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    pub(crate) fn state(&self) -> RunState {
        self.state
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == RunState::Exit
    }

    /// Sessions not yet removed (lingering ones included).
    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub(crate) fn listener(&self, id: ListenerId) -> Option<&Listener> {
        self.listeners.get(id.0)
    }

    pub(crate) fn listeners(&self) -> impl Iterator<Item = (ListenerId, &Listener)> {
        self.listeners.iter().map(|(i, l)| (ListenerId(i), l))
    }

    /// Listeners taking new sessions.
    pub(crate) fn serving(&self) -> usize {
        self.listeners
            .iter()
            .filter(|(_, l)| l.is_serving())
            .count()
    }

    /// A new listener, bound by the shell at `local`.
    pub(crate) fn add_listener(
        &mut self,
        cfg: Rc<ListenerConfig>,
        local: SocketAddr,
    ) -> ListenerId {
        let serial = self.next_serial;
        self.next_serial += 1;
        let l = Listener::new(serial, cfg, local, self.now);
        l.span.in_scope(|| {
            info!(event = "listening", addr = %local, handlers = ?l.cfg.handler_names, "listening")
        });
        ListenerId(self.listeners.insert(l))
    }

    /// A connection arrived on a TCP listener: a new session (in its handshake phase) if the
    /// limits let `peer` in. The shell then registers the socket and calls [`Core::open`]
    /// (or [`Core::abort`] if it cannot).
    pub(crate) fn admit(
        &mut self,
        lid: ListenerId,
        peer: SocketAddr,
    ) -> Result<SessionKey, Refusal> {
        let now = self.now;
        let l = &mut self.listeners[lid.0];
        l.admit(peer, now)?;
        let key = self.insert_session(lid, peer);
        if self.sessions[key].cfg.has_front() {
            self.arm_front(key);
        }
        Ok(key)
    }

    fn insert_session(&mut self, lid: ListenerId, peer: SocketAddr) -> SessionKey {
        let l = &mut self.listeners[lid.0];
        l.opened(peer);
        let cfg = l.cfg.clone();
        let ordinal = l.stats.opened;
        let shaper = faults::output_shaper(&l.faults, cfg.proto, peer, ordinal, self.now);
        let id = self.next_session;
        self.next_session += 1;
        let framer = match cfg.proto {
            Proto::Tcp => Framer::stream(cfg.framing, cfg.max_message),
            Proto::Udp => Framer::Datagram {
                max: cfg.max_message,
            },
        };
        let info = switchboard_handlers::Session {
            id,
            listener: cfg.name.clone(),
            proto: cfg.proto,
            peer,
            now: self.wall,
            operators: self.console.attached(),
            client_cert: None,
        };
        self.sessions.insert(Session {
            info,
            desk: desk::Attendance::for_listener(&cfg),
            listener: lid,
            chain: Chain::new(&cfg.handlers),
            framer,
            cfg,
            phase: Phase::Handshake,
            pending: Vec::new(),
            timers: Vec::new(),
            opened: self.now,
            last_active: self.now,
            partial_since: None,
            write_progress: self.now,
            write_timer: false,
            counts: session::Counts::default(),
            unanswered: 0,
            front: session::Front::Ready,
            front_deadline: self.now,
            tls: None,
            channels: Vec::new(),
            output_end: session::OutputEnd::Open,
            reset: false,
            ordinal,
            shaper,
            fault_closing: false,
            fault_timer: None,
        })
    }

    /// The transport in front of a session is ready: the session opens and its chain greets.
    pub(crate) fn open(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.phase != Phase::Handshake {
            return;
        }
        s.phase = Phase::Open;
        let (sref, lid, cfg) = (s.key_id(key), s.listener, s.cfg.clone());
        if self.tapped(&self.sessions[key]) {
            let s = &self.sessions[key];
            self.effects.push_back(Effect::note(Note::Opened {
                key,
                id: s.info.id,
                listener: lid,
                peer: s.info.peer,
                earlier: false,
            }));
        }
        let s = &self.sessions[key];
        if self.debug {
            let l = &self.listeners[lid.0];
            debug!(parent: &l.span, event = "session_opened", session = sref.id, peer = %s.info.peer, "session opened");
        }
        if let Some(idle) = cfg.idle_timeout {
            self.timers.push(self.now + idle, Due::Idle(sref));
        }
        if cfg.once && cfg.proto == Proto::Tcp {
            self.stop_listener(lid, "once = true: its one session is open");
        }
        self.drive(key, drive::Input::Open);
    }

    /// The shell could not take a session it was given (registration failed): forget it
    /// without a trace in the chain.
    pub(crate) fn abort(&mut self, key: SessionKey) {
        if let Some(s) = self.sessions.try_remove(key) {
            self.listeners[s.listener.0].closed(s.info.peer, &s.counts, true);
        }
    }

    /// Fresh bytes from a session's transport.
    pub(crate) fn input(&mut self, key: SessionKey, bytes: &[u8]) {
        if let Some(s) = self.sessions.get(key).filter(|s| s.phase == Phase::Open) {
            if self.tapped(s) {
                let id = s.info.id;
                self.effects.push_back(Effect::note(Note::Read {
                    id,
                    bytes: bytes.to_vec(),
                }));
            }
            self.drive(key, drive::Input::Bytes(bytes));
        }
    }

    /// The peer ended its input (TCP FIN).
    pub(crate) fn end_of_input(&mut self, key: SessionKey) {
        match self.sessions.get(key).map(|s| s.phase) {
            Some(Phase::Open) => {
                self.drive(key, drive::Input::End);
                self.begin_draining(key, CloseReason::PeerClosed);
            }
            Some(Phase::Handshake) => self.end(key, CloseReason::PeerClosed),
            Some(Phase::Lingering { .. }) => self.lingered(key),
            Some(Phase::Draining(_)) | None => {}
        }
    }

    /// The transport failed (a reset, an error): the session ends at once.
    pub(crate) fn failed(&mut self, key: SessionKey, reason: CloseReason) {
        match self.sessions.get(key).map(|s| s.phase) {
            Some(Phase::Lingering { .. }) => self.release(key),
            Some(_) => self.end(key, reason),
            None => {}
        }
    }

    /// A lingering session's peer is still sending: the quiet the linger waits for starts
    /// again.
    pub(crate) fn discarded(&mut self, key: SessionKey) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.last_active = self.now;
        }
    }

    /// A lingering session's input ended: drop it.
    pub(crate) fn lingered(&mut self, key: SessionKey) {
        if self
            .sessions
            .get(key)
            .is_some_and(|s| matches!(s.phase, Phase::Lingering { .. }))
        {
            self.release(key);
        }
    }

    /// What the shell should do before reading from a session.
    pub(crate) fn read_mode(&self, key: SessionKey) -> Option<ReadMode> {
        let mode = self.sessions.get(key).map(Session::read_mode)?;
        if mode == ReadMode::Read && self.channels_full(key) {
            return Some(ReadMode::Paused);
        }
        Some(mode)
    }

    /// Graceful stop: listeners stop, sessions drain; the daemon exits when the last one is
    /// gone or `drain_timeout` passes.
    pub(crate) fn stop(&mut self) {
        if self.state != RunState::Running {
            return;
        }
        self.state = RunState::Draining;
        let ids: Vec<ListenerId> = self.listeners().map(|(id, _)| id).collect();
        for id in ids {
            self.stop_listener(id, "shutting down");
        }
        let keys: Vec<SessionKey> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.sessions[key].phase {
                Phase::Open => self.begin_draining(key, CloseReason::Shutdown),
                Phase::Handshake => self.end(key, CloseReason::Shutdown),
                Phase::Draining(_) | Phase::Lingering { .. } => {}
            }
        }
        let flushing = self.sessions.iter().filter(|(_, s)| s.is_live()).count();
        info!(event = "draining", sessions = flushing, lingering = self.sessions.len() - flushing,
            timeout = ?self.drain_timeout,
            "finishing the open sessions");
        // Armed whatever is open now: a session may still come from a listener's last batch.
        self.timers.push(self.now + self.drain_timeout, Due::Stop);
        self.check_done();
    }

    /// Hard stop: end every session and drop its socket now.
    pub(crate) fn halt(&mut self) {
        self.state = RunState::Exit;
        let keys: Vec<SessionKey> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            if self
                .sessions
                .get(key)
                .is_some_and(|s| !matches!(s.phase, Phase::Lingering { .. }))
            {
                self.end(key, CloseReason::Shutdown);
            }
            self.release(key);
        }
        let ids: Vec<ListenerId> = self.listeners().map(|(id, _)| id).collect();
        for id in ids {
            if self.listeners[id.0].has_socket() {
                self.listeners[id.0].phase = ListenerPhase::Stopped;
                self.effects.push_back(Effect::StopListener(id));
            }
        }
    }

    /// Decide whether the loop is done.
    fn check_done(&mut self) {
        match self.state {
            RunState::Draining
                if self.sessions.is_empty()
                    && self.listeners.iter().all(|(_, l)| !l.has_socket()) =>
            {
                self.state = RunState::Exit;
            }
            RunState::Running
                if self.sessions.is_empty()
                    && self.listeners.iter().all(|(_, l)| !l.has_socket()) =>
            {
                info!(
                    event = "nothing_left",
                    "no listener left and no session open"
                );
                self.state = RunState::Exit;
            }
            _ => {}
        }
    }

    pub(crate) fn set_drain_timeout(&mut self, d: Duration) {
        self.drain_timeout = d;
    }
}
