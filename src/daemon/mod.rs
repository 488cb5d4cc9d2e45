//! The event loop: one thread, one `mio::Poll`, every listener and session.
//!
//! Tokens: a session's token is its key in the `sessions` slab; listeners and the signal pipe
//! have tokens in a reserved range above (see `Source`). Sockets are edge-triggered: reads
//! drain until `WouldBlock` (or a short read, which on Linux means drained: new data brings a
//! new edge), capped per event so one busy peer cannot starve the rest; writes go out at once
//! and only what the kernel did not take is buffered, with WRITABLE interest while it lasts.

mod activation;
mod bind;
mod limits;
mod metrics;
mod mmsg;
mod notify;
mod operators;
mod reload;
mod tcp;
mod timers;
mod udp;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use switchboard_handlers::text::escape;
use switchboard_handlers::{Action, Chain, CloseReason, Flow, Outbox, Proto, Scope, Session};
use tracing::{Span, debug, info, info_span, warn};

pub use activation::Inherited;
pub use bind::BindError;
use bind::Bound;
use notify::Notifier;
use timers::{Timer, Timers};

use crate::config::{Config, Framing, ListenerConfig};

/// Largest single read; also the largest datagram.
const READ_BUF: usize = 64 * 1024;
/// Reads (or accepts, or datagrams) per readiness event before others get a turn.
const MAX_OPS_PER_EVENT: usize = 32;
/// How long a closed connection keeps draining what the peer still sends, so that closing
/// with unread input does not reset the connection and destroy replies in flight.
const LINGER: Duration = Duration::from_secs(2);
/// Pause before accepting again after running out of file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const LISTENER_BASE: usize = 1 << 40;
const SIGNALS: Token = Token(usize::MAX - 1);

/// What a token stands for.
enum Source {
    Session(usize),
    Listener(usize),
    Signals,
    Stdin,
    Control,
    Operator(usize),
    Metrics,
    Scraper(usize),
}

fn source(token: Token) -> Option<Source> {
    match token {
        SIGNALS => Some(Source::Signals),
        operators::STDIN => Some(Source::Stdin),
        operators::CONTROL => Some(Source::Control),
        metrics::METRICS => Some(Source::Metrics),
        Token(t) if (metrics::METRICS_BASE..metrics::METRICS_BASE * 2).contains(&t) => {
            Some(Source::Scraper(t - metrics::METRICS_BASE))
        }
        Token(t) if (operators::OPERATOR_BASE..operators::OPERATOR_BASE * 2).contains(&t) => {
            Some(Source::Operator(t - operators::OPERATOR_BASE))
        }
        Token(t) if (LISTENER_BASE..LISTENER_BASE * 2).contains(&t) => {
            Some(Source::Listener(t - LISTENER_BASE))
        }
        Token(t) if t < LISTENER_BASE => Some(Source::Session(t)),
        _ => None,
    }
}

/// Per-session traffic counts, logged when it closes.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    bytes_in: u64,
    bytes_out: u64,
    msgs_in: u64,
    msgs_out: u64,
}

/// A session: a TCP connection or a UDP peer.
#[derive(Debug)]
struct Conn {
    session: Session,
    listener: usize,
    /// The listener's settings when the session opened: a reload changes them for new
    /// sessions only.
    cfg: Rc<ListenerConfig>,
    chain: Chain,
    /// The connection, for TCP; UDP sessions send through their listener's socket.
    tcp: Option<tcp::TcpIo>,
    opened: Instant,
    last_active: Instant,
    counts: Counts,
    /// Set when the session is to end once its output is flushed.
    closing: Option<CloseReason>,
    /// The session has ended (chain closed, logged); only its socket lingers.
    ended: bool,
    /// Messages shown to the operator since the last operator reply.
    unanswered: u32,
    span: Span,
}

/// A bound listener.
#[derive(Debug)]
struct Listener {
    /// Position in `Daemon::listeners`, for its token.
    index: usize,
    cfg: Rc<ListenerConfig>,
    /// `None` once the listener has stopped.
    socket: Option<Bound>,
    local: SocketAddr,
    /// UDP: the session of each peer.
    peers: HashMap<SocketAddr, usize>,
    /// UDP: datagrams the kernel would not take yet.
    udp_queue: VecDeque<(SocketAddr, Vec<u8>)>,
    udp_writable: bool,
    /// Sessions open on this listener.
    active: usize,
    /// Accepting paused after EMFILE; a timer resumes it.
    accept_paused: bool,
    /// Counters, with the traffic of ended sessions.
    stats: metrics::Stats,
    /// Removed by a reload: no new sessions; stops when its last session ends (UDP keeps
    /// its socket until then, for the peers it still serves).
    retiring: bool,
    /// Per-address session counts, rate buckets, rate-limited logs.
    limits: limits::State,
    /// UDP faults: the random draws, and replies held back by `delay`.
    rng: u64,
    delayed: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    /// Stop requested: listeners closed, sessions flushing until they end or the deadline.
    Draining,
    /// Done: `run` returns.
    Exit,
}

/// The daemon: bound listeners and the loop that serves them.
pub struct Daemon {
    poll: Poll,
    events: Option<Events>,
    signals: Signals,
    listeners: Vec<Listener>,
    sessions: Slab<Conn>,
    timers: Timers,
    /// The one read buffer every socket reads into.
    buf: Vec<u8>,
    /// The datagram batch of UDP listeners (`recvmmsg`), made on first use.
    batch: Option<Box<mmsg::Batch>>,
    /// The one outbox every handler call writes into.
    out: Outbox,
    /// Reused when line framing adds newlines to replies.
    scratch: Vec<u8>,
    /// Sources whose drain hit the per-event cap, served again before the next wait.
    pending: Vec<Token>,
    next_session: u64,
    /// Whether debug events are on, so that per-message logging costs one test of a bool.
    /// Set at start and after each reload (the level can only change then).
    debug: bool,
    operators: operators::Operators,
    state: RunState,
    drain_timeout: Duration,
    /// The config file, re-read on reload (`None`: the embedded default).
    config_file: Option<std::path::PathBuf>,
    /// The `[daemon]` settings in force.
    daemon_cfg: crate::config::DaemonConfig,
    /// The Prometheus endpoint, when `[daemon] metrics` is set.
    metrics: Option<metrics::MetricsServer>,
    /// The logger, once `run` has it: reload and SIGUSR2 change it.
    logging: Option<crate::logging::Logging>,
    now: Instant,
    wall: SystemTime,
    notify: Notifier,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("listeners", &self.listeners.len())
            .field("sessions", &self.sessions.len())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Name, protocol and bound address of each listener.
pub type LocalAddrs = Vec<(Arc<str>, Proto, SocketAddr)>;

impl Daemon {
    /// Bind every listener of `config` and prepare the loop. Nothing is served until
    /// [`run`](Daemon::run).
    pub fn bind(config: &Config) -> anyhow::Result<Daemon> {
        Daemon::bind_with(config, Inherited::default())
    }

    /// [`bind`](Daemon::bind), taking the sockets systemd passed where they fit.
    pub fn bind_with(config: &Config, mut inherited: Inherited) -> anyhow::Result<Daemon> {
        let poll = Poll::new()?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut daemon = Daemon {
            poll,
            events: Some(Events::with_capacity(1024)),
            signals,
            listeners: Vec::new(),
            sessions: Slab::new(),
            timers: Timers::default(),
            buf: vec![0; READ_BUF],
            batch: None,
            out: Outbox::new(),
            scratch: Vec::new(),
            pending: Vec::new(),
            next_session: 1,
            debug: tracing::enabled!(tracing::Level::DEBUG),
            operators: operators::Operators::default(),
            state: RunState::Running,
            drain_timeout: config.daemon.drain_timeout,
            config_file: config.file.clone(),
            daemon_cfg: config.daemon.clone(),
            logging: None,
            metrics: None,
            now: Instant::now(),
            wall: SystemTime::now(),
            notify: Notifier::from_env(),
        };
        // The control socket (attach, status, reload). A configured one must work; the
        // default one is skipped with a warning when another daemon of the same config name
        // already holds it.
        let console = config.listeners.iter().any(|l| l.takes_operator());
        match &config.daemon.control_socket {
            Some(path) => daemon
                .operators
                .open_control(path, daemon.poll.registry())?,
            None => {
                let path = crate::console::default_socket(config.file.as_deref());
                if let Err(e) = daemon.operators.open_control(&path, daemon.poll.registry()) {
                    warn!("{e:#}; running without a control socket (set [daemon] control_socket)");
                }
            }
        }
        if let Some(addr) = config.daemon.metrics {
            daemon.metrics = Some(metrics::MetricsServer::bind(addr, daemon.poll.registry())?);
        }
        inherited.reserve(&config.listeners);
        for cfg in &config.listeners {
            daemon.add_listener(Rc::new(cfg.clone()), &mut inherited)?;
        }
        if console {
            daemon.operators.open_stdin(daemon.poll.registry());
            if config.daemon.log_file.is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stdin())
                && std::io::IsTerminal::is_terminal(&std::io::stderr())
            {
                warn!(
                    "the operator console and the log share this terminal; set [daemon] log_file to keep log lines out of the conversation"
                );
            }
        }
        inherited.close_unused();
        let mut owned: Vec<&std::path::Path> =
            daemon.operators.control_path().into_iter().collect();
        owned.extend(config.daemon.log_file.as_deref().filter(|p| p.exists()));
        crate::privileges::drop_to(
            config.daemon.user.as_deref(),
            config.daemon.group.as_deref(),
            &owned,
        )?;
        limits::check_open_files(&config.listeners);
        info!(listeners = daemon.listeners.len(), "ready");
        daemon
            .notify
            .started(daemon.listeners.len(), &mut daemon.timers, daemon.now);
        Ok(daemon)
    }

    fn add_listener(
        &mut self,
        cfg: Rc<ListenerConfig>,
        inherited: &mut Inherited,
    ) -> Result<(), BindError> {
        let (socket, local) = bind::bind(&cfg, inherited)?;
        self.install_listener(cfg, socket, local)
    }

    /// Register a bound socket with the loop as a new listener.
    fn install_listener(
        &mut self,
        cfg: Rc<ListenerConfig>,
        mut socket: Bound,
        local: SocketAddr,
    ) -> Result<(), BindError> {
        let idx = self.listeners.len();
        let token = Token(LISTENER_BASE + idx);
        let registry = self.poll.registry();
        let registered = match &mut socket {
            Bound::Tcp(l) => registry.register(l, token, Interest::READABLE),
            Bound::Udp(s) => registry.register(s, token, Interest::READABLE),
        };
        registered.map_err(|source| BindError::Other {
            listener: cfg.name.to_string(),
            endpoint: cfg.endpoint(),
            source,
        })?;
        let span = info_span!("listener", listener = %cfg.name, proto = %cfg.proto);
        span.in_scope(|| {
            info!(listener = %cfg.name, proto = %cfg.proto, addr = %local, handlers = ?cfg.handler_names, "listening")
        });
        let rng = cfg.faults.seed;
        self.listeners.push(Listener {
            index: idx,
            cfg,
            socket: Some(socket),
            local,
            peers: HashMap::new(),
            udp_queue: VecDeque::new(),
            udp_writable: false,
            active: 0,
            accept_paused: false,
            stats: metrics::Stats::default(),
            retiring: false,
            limits: limits::State::default(),
            rng,
            delayed: VecDeque::new(),
            span,
        });
        Ok(())
    }

    /// The bound address of every listener (port 0 resolved).
    pub fn local_addrs(&self) -> LocalAddrs {
        self.listeners
            .iter()
            .map(|l| (l.cfg.name.clone(), l.cfg.proto, l.local))
            .collect()
    }

    /// Serve until a stop signal (or a handler's `scope = "daemon"`) and every session has
    /// ended or the drain deadline passed.
    pub fn run(mut self, logging: crate::logging::Logging) -> io::Result<()> {
        self.logging = Some(logging);
        self.debug = tracing::enabled!(tracing::Level::DEBUG);
        while self.state != RunState::Exit {
            let timeout = if self.pending.is_empty() {
                self.timers
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            let mut events = self
                .events
                .take()
                .unwrap_or_else(|| Events::with_capacity(1024));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            self.wall = SystemTime::now();
            for event in events.iter() {
                self.dispatch(event);
            }
            self.events = Some(events);
            for token in std::mem::take(&mut self.pending) {
                self.serve(token, true, false);
            }
            while let Some(timer) = self.timers.pop_due(self.now) {
                self.fire(timer);
            }
            self.check_done();
        }
        info!("stopped");
        Ok(())
    }

    fn dispatch(&mut self, event: &mio::event::Event) {
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        if (event.is_read_closed() || event.is_error())
            && let Some(Source::Session(key)) = source(event.token())
            && let Some(io) = self.sessions.get_mut(key).and_then(|c| c.tcp.as_mut())
        {
            io.peer_done = true;
        }
        self.serve(event.token(), readable, event.is_writable());
    }

    fn serve(&mut self, token: Token, readable: bool, writable: bool) {
        match source(token) {
            Some(Source::Session(key)) => {
                if writable {
                    self.tcp_flush(key);
                }
                if readable {
                    self.tcp_read(key);
                }
            }
            Some(Source::Listener(idx)) => match self.listeners.get(idx).map(|l| l.cfg.proto) {
                Some(Proto::Tcp) => self.accept(idx),
                Some(Proto::Udp) => {
                    if writable {
                        self.udp_flush(idx);
                    }
                    if readable {
                        self.udp_read(idx);
                    }
                }
                None => warn!(?token, "event for an unknown listener"),
            },
            Some(Source::Signals) => self.on_signals(),
            Some(Source::Control) => self.accept_operators(),
            Some(Source::Stdin) => {
                if let Some(key) = self.operators.stdin_key() {
                    self.operator_ready(key, readable, false);
                }
            }
            Some(Source::Operator(key)) => self.operator_ready(key, readable, writable),
            Some(Source::Metrics) => self.metrics_accept(),
            Some(Source::Scraper(key)) => self.metrics_ready(key),
            None => warn!(?token, "event for an unknown token"),
        }
    }

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGINT | SIGTERM => {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    if self.state == RunState::Running {
                        info!(
                            signal = name,
                            "stop requested; finishing sessions (send again to stop at once)"
                        );
                        self.begin_drain();
                    } else {
                        warn!(
                            signal = name,
                            sessions = self.sessions.len(),
                            "second stop signal: stopping now"
                        );
                        self.close_all(CloseReason::Shutdown);
                        self.state = RunState::Exit;
                    }
                }
                SIGHUP => {
                    let _ = self.reload();
                }
                SIGUSR1 => self.log_status(),
                SIGUSR2 => match self.logging.as_mut().map(|l| l.reopen()) {
                    Some(Err(e)) => warn!(error = %e, "SIGUSR2: cannot reopen the log file"),
                    _ => info!("SIGUSR2: log file reopened"),
                },
                _ => {}
            }
        }
    }

    /// A new session on listener `idx`: slab entry, span, log, and the chain's `on_open`.
    fn open_session(&mut self, idx: usize, peer: SocketAddr, io: Option<tcp::TcpIo>) -> usize {
        let listener = &mut self.listeners[idx];
        listener.active += 1;
        listener.stats.opened += 1;
        listener.limits.opened(peer);
        let id = self.next_session;
        self.next_session += 1;
        let cfg = listener.cfg.clone();
        let span = info_span!(parent: &listener.span, "session", session = id, peer = %peer);
        span.in_scope(|| info!(listener = %cfg.name, proto = %cfg.proto, peer = %peer, session = id, "session opened"));
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        let session = Session {
            id,
            listener: cfg.name.clone(),
            proto: cfg.proto,
            peer,
            now: self.wall,
            operators: self.operators.attached(),
        };
        entry.insert(Conn {
            session,
            listener: idx,
            cfg: cfg.clone(),
            chain: Chain::new(&cfg.handlers),
            tcp: io,
            opened: self.now,
            last_active: self.now,
            counts: Counts::default(),
            closing: None,
            ended: false,
            unanswered: 0,
            span,
        });
        if let Some(idle) = cfg.idle_timeout {
            self.timers
                .push(self.now + idle, Timer::Idle { key, session: id });
        }
        if cfg.once && cfg.proto == Proto::Tcp {
            self.stop_listener(idx, "once = true: its one session is open");
        }
        self.out.clear();
        let conn = &mut self.sessions[key];
        conn.chain.open(&conn.session, &mut self.out);
        self.apply_outbox(key);
        key
    }

    /// Give one message to a session's chain; the answers accumulate in `self.out`. `debug`
    /// is [`Daemon::debug`], read once rather than asking the subscriber per message.
    fn deliver(conn: &mut Conn, msg: &[u8], out: &mut Outbox, debug: bool) {
        conn.counts.msgs_in += 1;
        if debug {
            const SHOWN: usize = 256;
            let text = escape(&msg[..msg.len().min(SHOWN)]);
            let cut = if msg.len() > SHOWN { "..." } else { "" };
            debug!(parent: &conn.span, bytes = msg.len(), text = %format_args!("{text}{cut}"), "message");
        }
        if conn.chain.message(msg, &conn.session, out) == Flow::Pass {
            debug!(parent: &conn.span, "no handler took the message; dropped");
        }
    }

    /// Turn what the handlers put in `self.out` into writes, timers and closes.
    fn apply_outbox(&mut self, key: usize) {
        let Some(conn) = self.sessions.get_mut(key) else {
            return;
        };
        let listener = &mut self.listeners[conn.listener];
        let mut failed = None;
        if self.out.has_messages() {
            let count = self.out.messages().count() as u64;
            conn.counts.msgs_out += count;
            match &mut conn.tcp {
                Some(io) => {
                    let bytes = if conn.cfg.framing == Framing::Line {
                        self.scratch.clear();
                        for m in self.out.messages() {
                            self.scratch.extend_from_slice(m);
                            if m.last() != Some(&b'\n') {
                                self.scratch.push(b'\n');
                            }
                        }
                        &self.scratch[..]
                    } else {
                        self.out.data()
                    };
                    conn.counts.bytes_out += bytes.len() as u64;
                    match io.send(bytes, self.poll.registry(), Token(key), conn.cfg.max_output) {
                        Ok(()) => io.arm_write_timeout(
                            &conn.cfg,
                            &mut self.timers,
                            self.now,
                            key,
                            conn.session.id,
                        ),
                        Err(e) => failed = Some(e),
                    }
                }
                None => {
                    conn.counts.bytes_out += self.out.data().len() as u64;
                    for m in self.out.messages() {
                        udp::send_faulty(
                            listener,
                            conn.session.peer,
                            m,
                            self.poll.registry(),
                            &mut self.timers,
                            self.now,
                        );
                    }
                }
            }
        }
        if let Some(e) = failed {
            debug!(parent: &conn.span, error = %e, "write failed");
            self.out.clear();
            self.close(key, CloseReason::Error);
            return;
        }
        if self.out.actions().is_empty() {
            return;
        }
        let session_id = conn.session.id;
        for action in self.out.take_actions() {
            match action {
                Action::Close(scope) => {
                    if let Some(conn) = self.sessions.get_mut(key) {
                        conn.closing.get_or_insert(CloseReason::Handler);
                        let idx = conn.listener;
                        match scope {
                            Scope::Session => {}
                            Scope::Listener => {
                                self.stop_listener(idx, "a handler ended it (scope = \"listener\")")
                            }
                            Scope::Daemon => {
                                if self.state == RunState::Running {
                                    info!(
                                        "a handler asked the daemon to stop (scope = \"daemon\")"
                                    );
                                    self.begin_drain();
                                }
                            }
                        }
                    }
                }
                Action::Timer { link, id, after } => self.timers.push(
                    self.now + after,
                    Timer::Handler {
                        key,
                        session: session_id,
                        link,
                        id,
                    },
                ),
                Action::ToOperator(text) => self.show_to_operators(key, &text),
            }
        }
        self.finish_if_flushed(key);
    }

    /// Close a session that asked to close once nothing is left to write.
    fn finish_if_flushed(&mut self, key: usize) {
        if let Some(conn) = self.sessions.get(key)
            && !conn.ended
            && let Some(reason) = conn.closing
            && conn.tcp.as_ref().is_none_or(|io| io.flushed())
        {
            self.close(key, reason);
        }
    }

    /// End a session now: its chain's `on_close`, the log line, and the socket closed after
    /// a short linger (TCP) or the peer forgotten (UDP).
    fn close(&mut self, key: usize, reason: CloseReason) {
        self.end_session(key, reason);
        let Some(conn) = self.sessions.get_mut(key) else {
            return;
        };
        let linger = match conn.tcp.as_mut() {
            // A peer that broke the connection or stopped reading gets no linger.
            Some(io)
                if !matches!(reason, CloseReason::Error | CloseReason::WriteTimeout)
                    && self.state != RunState::Exit =>
            {
                io.linger()
            }
            _ => false,
        };
        if linger {
            let session = conn.session.id;
            self.timers
                .push(self.now + LINGER, Timer::Linger { key, session });
        } else {
            self.release(key);
        }
    }

    /// The logical end of a session (idempotent).
    fn end_session(&mut self, key: usize, reason: CloseReason) {
        let Some(conn) = self.sessions.get_mut(key) else {
            return;
        };
        if conn.ended {
            return;
        }
        self.console_closed(key, reason);
        let conn = &mut self.sessions[key];
        conn.ended = true;
        conn.chain.close(&conn.session, reason);
        let listener = &mut self.listeners[conn.listener];
        listener.active -= 1;
        listener.stats.closed += 1;
        listener.stats.add(&conn.counts);
        if reason == CloseReason::Error {
            listener.stats.errors += 1;
        }
        listener.limits.closed(conn.session.peer);
        if conn.tcp.is_none() {
            listener.peers.remove(&conn.session.peer);
        }
        let once_udp = listener.cfg.once && listener.cfg.proto == Proto::Udp;
        let idx = conn.listener;
        let c = conn.counts;
        conn.span.in_scope(|| {
            info!(
                session = conn.session.id,
                reason = %reason,
                bytes_in = c.bytes_in,
                bytes_out = c.bytes_out,
                messages_in = c.msgs_in,
                messages_out = c.msgs_out,
                duration = ?self.now.saturating_duration_since(conn.opened),
                "session closed"
            )
        });
        if once_udp {
            self.stop_listener(idx, "once = true: its one session ended");
        } else if self.listeners[idx].retiring && self.listeners[idx].active == 0 {
            self.stop_listener(idx, "removed from the config; its last session ended");
        }
    }

    /// Drop a session's entry and socket.
    fn release(&mut self, key: usize) {
        if let Some(mut conn) = self.sessions.try_remove(key)
            && let Some(io) = conn.tcp.as_mut()
        {
            io.deregister(self.poll.registry());
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Linger { key, session } => {
                if self
                    .sessions
                    .get(key)
                    .is_some_and(|c| c.session.id == session && c.ended)
                {
                    self.release(key);
                }
            }
            Timer::Idle { key, session } => {
                let Some(conn) = self
                    .sessions
                    .get(key)
                    .filter(|c| c.session.id == session && !c.ended)
                else {
                    return;
                };
                let Some(idle) = conn.cfg.idle_timeout else {
                    return;
                };
                let deadline = conn.last_active + idle;
                if deadline <= self.now {
                    self.close(key, CloseReason::IdleTimeout);
                } else {
                    self.timers.push(deadline, Timer::Idle { key, session });
                }
            }
            Timer::Handler {
                key,
                session,
                link,
                id,
            } => {
                let Some(conn) = self
                    .sessions
                    .get_mut(key)
                    .filter(|c| c.session.id == session)
                else {
                    return;
                };
                self.out.clear();
                conn.session.now = self.wall;
                conn.chain.timer(link, id, &conn.session, &mut self.out);
                self.apply_outbox(key);
            }
            Timer::WriteTimeout { key, session } => self.write_timeout_due(key, session),
            Timer::ResumeAccept { listener } => {
                if let Some(l) = self.listeners.get_mut(listener) {
                    l.accept_paused = false;
                    self.accept(listener);
                }
            }
            Timer::Delayed { listener } => self.send_delayed(listener),
            Timer::Watchdog => self.notify.on_watchdog_timer(&mut self.timers, self.now),
            Timer::Retire { listener } => {
                if self.listeners[listener].retiring {
                    self.stop_listener(listener, "removed from the config; drain_timeout passed");
                }
            }
            Timer::Drain => {
                if self.state == RunState::Draining && !self.sessions.is_empty() {
                    warn!(
                        sessions = self.sessions.len(),
                        "drain timeout: closing sessions with output still pending"
                    );
                    self.close_all(CloseReason::Shutdown);
                }
            }
        }
    }

    /// Stop accepting on a listener; its sessions go on (UDP ones end, as they share its
    /// socket).
    fn stop_listener(&mut self, idx: usize, why: &str) {
        let listener = &mut self.listeners[idx];
        let Some(mut socket) = listener.socket.take() else {
            return;
        };
        let registry = self.poll.registry();
        let _ = match &mut socket {
            Bound::Tcp(l) => registry.deregister(l),
            Bound::Udp(s) => {
                udp::flush_now(listener, s);
                registry.deregister(s)
            }
        };
        listener
            .span
            .in_scope(|| info!(listener = %listener.cfg.name, why, "listener stopped"));
        if listener.cfg.proto == Proto::Udp {
            let keys: Vec<usize> = listener.peers.values().copied().collect();
            for key in keys {
                let reason = self
                    .sessions
                    .get(key)
                    .and_then(|c| c.closing)
                    .unwrap_or(CloseReason::Shutdown);
                self.close(key, reason);
            }
        }
    }

    /// Soft stop: no new sessions, no more reading; sessions end as soon as their output is
    /// flushed, or at the drain deadline.
    fn begin_drain(&mut self) {
        self.state = RunState::Draining;
        self.notify.stopping(self.sessions.len());
        for idx in 0..self.listeners.len() {
            self.stop_listener(idx, "shutting down");
        }
        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.sessions[key];
            if conn.ended {
                continue;
            }
            conn.closing.get_or_insert(CloseReason::Shutdown);
            self.finish_if_flushed(key);
        }
        if !self.sessions.is_empty() {
            let flushing = self.sessions.iter().filter(|(_, c)| !c.ended).count();
            let lingering = self.sessions.len() - flushing;
            info!(
                sessions = flushing,
                lingering,
                timeout = ?self.drain_timeout,
                "waiting for output to flush (and closed connections to finish)"
            );
            self.timers
                .push(self.now + self.drain_timeout, Timer::Drain);
        }
    }

    /// End every session and drop its socket at once, without lingering.
    fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.end_session(key, reason);
            self.release(key);
        }
    }

    /// Decide whether the loop is done.
    fn check_done(&mut self) {
        match self.state {
            RunState::Draining if self.sessions.is_empty() => self.state = RunState::Exit,
            RunState::Running
                if self.sessions.is_empty()
                    && self.listeners.iter().all(|l| l.socket.is_none()) =>
            {
                info!("no listener left and no session open");
                self.state = RunState::Exit;
            }
            _ => {}
        }
    }
}
