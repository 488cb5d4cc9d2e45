//! The event loop's shell: one thread, one `mio::Poll`, every socket.
//!
//! The shell owns the sockets and routes each readiness event to the part that owns its
//! token (`tokens.rs`): a listener (`tcp.rs`, `udp.rs`), a session's connection (`tcp.rs`,
//! `transport/`), the control socket and the stdin console (`control.rs`), the metrics
//! endpoint (`http.rs`), the signals. Everything that decides what happens lives in the
//! I/O-free core (`core/`): the shell tells it what arrived and applies the effects it
//! answers with (`Daemon::settle`). ARCHITECTURE.md draws the whole path.
//!
//! Sockets are edge-triggered: reads drain until `WouldBlock` (or a short read, which on
//! Linux means drained: new data brings a new edge), capped per event so one busy peer cannot
//! starve the rest; writes go out at once and only what the kernel did not take is kept, with
//! WRITABLE interest while it lasts.

mod activation;
mod alarm;
mod api;
mod bind;
mod certs;
mod children;
mod control;
pub(crate) mod core;
mod http;
mod httpd;
mod mmsg;
mod notify;
mod record;
mod reload;
mod requests;
mod rlimit;
mod tap;
mod tcp;
pub(crate) mod timers;
mod tokens;
mod transcripts;
mod transport;
mod udp;
mod upstream;
mod web;

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use switchboard_handlers::Proto;
use tracing::{info, warn};

pub use activation::Inherited;
pub use bind::BindError;
use bind::Bound;
use core::{ChanRef, Core, Effect, ListenerId, RunState, SessionKey};
use notify::Notifier;
use timers::Timers;
use tokens::{Owner, Part, Tokens};

use crate::config::Config;

/// Largest single read; also the largest datagram.
const READ_BUF: usize = 64 * 1024;
/// Reads (or accepts, or datagram batches) per readiness event before others get a turn.
const MAX_OPS_PER_EVENT: usize = 32;

/// What a shell deadline is for (the core has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ShellDue {
    /// Try accepting again after running out of file descriptors.
    ResumeAccept(ListenerId),
    /// The same, for the control socket.
    RetryControl,
    /// Tell systemd's watchdog the loop is alive.
    Watchdog,
    /// Look whether TLS certificate files changed.
    CertCheck,
    /// SIGKILL a child (its slot in `procs` and pid) that has not ended since SIGTERM.
    Kill(usize, u32),
    /// Give up an upstream connection that has not connected by now (its serial).
    ConnectTimeout(ChanRef, u64),
    /// Accepting again, for an HTTP site.
    RetryHttp(httpd::Site),
    /// Drop an HTTP connection that has not finished by now (its key and when it came).
    HttpConn(httpd::Site, usize, Instant),
    /// The web console's counters and logins, once a second.
    WebTick,
}

/// A listener's socket.
#[derive(Debug)]
enum ListenerIo {
    Tcp(tcp::TcpIo),
    Udp(udp::UdpIo),
}

/// The daemon: bound listeners and the loop that serves them.
pub struct Daemon {
    poll: Poll,
    events: Option<Events>,
    tokens: Tokens,
    signals: Signals,
    core: Core,
    /// Each session's connection, at its session key (TCP; UDP sessions have none).
    conns: Vec<Option<tcp::Conn>>,
    /// Each listener's socket, at its listener id.
    sockets: Vec<Option<ListenerIo>>,
    control: control::Control,
    /// The stdin console's operator id, while it is attached.
    stdin_op: Option<core::OpId>,
    /// The metrics endpoint (`http.rs`).
    metrics: Option<httpd::Server>,
    /// The web console (`web/`).
    web: Option<web::Web>,
    /// The transcript writer thread, once a listener writes transcripts.
    transcripts: Option<transcripts::Writer>,
    timers: Timers<ShellDue>,
    /// Wakes the loop for the earliest deadline of `timers` and the core's.
    alarm: alarm::Alarm,
    /// The one read buffer every socket reads into.
    buf: Vec<u8>,
    /// The datagram batch of UDP listeners (`recvmmsg`), made on first use.
    batch: Option<Box<mmsg::Batch>>,
    /// Tokens whose drain hit the per-event cap, served again before the next wait.
    pending: Vec<Token>,
    /// The config file, re-read on reload (`None`: the embedded default).
    config_file: Option<std::path::PathBuf>,
    /// The `[daemon]` settings in force.
    daemon_cfg: crate::config::DaemonConfig,
    /// The logger, once `run` has it: reload and SIGUSR2 change it.
    logging: Option<crate::logging::Logging>,
    /// Wakes the loop when a config read on another thread is ready.
    waker: Arc<Waker>,
    /// A reload whose config is being read.
    loading: Option<reload::Loading>,
    now: Instant,
    notify: Notifier,
    /// TLS certificate files, watched.
    certs: certs::CertWatch,
    /// Children of channels, running or being ended (`children.rs`).
    procs: slab::Slab<children::Proc>,
    /// The child of each open channel, by its place in `procs`.
    chans: std::collections::BTreeMap<ChanRef, usize>,
    /// Recordings and watchers (`tap.rs`).
    tap: tap::Tap,
    /// Upstream connections of connect channels (`upstream.rs`).
    upstreams: std::collections::BTreeMap<ChanRef, upstream::Upstream>,
    next_upstream: u64,
    /// The toxiproxy API, when `[daemon] toxiproxy_api` is set (`api/`).
    api: Option<api::Api>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("core", &self.core.state())
            .field("sessions", &self.core.session_count())
            .finish_non_exhaustive()
    }
}

/// Name, protocol and bound address of each listener.
pub type LocalAddrs = Vec<(Arc<str>, Proto, SocketAddr)>;

/// Every listener's transcript folder can be written (made if missing).
pub(crate) fn check_transcripts(config: &Config) -> Result<(), crate::config::ConfigError> {
    for l in &config.listeners {
        if let Some(t) = &l.transcripts {
            t.check().map_err(|message| crate::config::ConfigError {
                file: config.source.clone(),
                line: 0,
                column: 0,
                key: Some(format!("listener {:?} transcripts", &*l.name)),
                message,
            })?;
        }
    }
    Ok(())
}

impl Daemon {
    /// Bind every listener of `config` and prepare the loop. Nothing is served until
    /// [`run`](Daemon::run).
    pub fn bind(config: &Config) -> anyhow::Result<Daemon> {
        Daemon::bind_with(config, Inherited::default())
    }

    /// [`bind`](Daemon::bind), taking the sockets systemd passed where they fit.
    pub fn bind_with(config: &Config, mut inherited: Inherited) -> anyhow::Result<Daemon> {
        let poll = Poll::new()?;
        let mut tokens = Tokens::default();
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD])?;
        let token = tokens.add(Owner::Signals);
        poll.registry()
            .register(&mut signals, token, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), tokens.add(Owner::Waker))?);
        let alarm = alarm::Alarm::new(poll.registry(), tokens.add(Owner::Alarm))?;
        let now = Instant::now();
        let mut daemon = Daemon {
            poll,
            events: Some(Events::with_capacity(1024)),
            tokens,
            signals,
            core: Core::new(config.daemon.drain_timeout, now, SystemTime::now()),
            conns: Vec::new(),
            sockets: Vec::new(),
            control: control::Control::default(),
            stdin_op: None,
            metrics: None,
            web: None,
            transcripts: None,
            timers: Timers::default(),
            alarm,
            buf: vec![0; READ_BUF],
            batch: None,
            pending: Vec::new(),
            config_file: config.file.clone(),
            daemon_cfg: config.daemon.clone(),
            logging: None,
            waker,
            loading: None,
            now,
            notify: Notifier::from_env(),
            certs: certs::CertWatch::default(),
            procs: slab::Slab::new(),
            chans: std::collections::BTreeMap::new(),
            tap: tap::Tap::default(),
            upstreams: std::collections::BTreeMap::new(),
            next_upstream: 0,
            api: None,
        };
        // Who the daemon serves as once bound: a wrong user stops it before anything is made.
        let run_as = crate::privileges::run_as(
            config.daemon.user.as_deref(),
            config.daemon.group.as_deref(),
        )?;
        daemon.open_control(config, crate::privileges::serving_uid(run_as.as_ref()))?;
        if let Some(addr) = config.daemon.toxiproxy_api {
            daemon.api = Some(api::Api::bind(
                addr,
                daemon.poll.registry(),
                &mut daemon.tokens,
            )?);
        }
        if let Some(addr) = config.daemon.metrics {
            daemon.metrics = Some(http::bind_metrics(
                addr,
                daemon.poll.registry(),
                &mut daemon.tokens,
            )?);
        }
        for l in &config.listeners {
            if let Some(r) = &l.record {
                r.check_writable().map_err(|e| {
                    anyhow::anyhow!("listener {:?}: [listener.record] dir: {e}", &*l.name)
                })?;
            }
        }
        inherited.reserve(&config.listeners);
        for cfg in &config.listeners {
            let (socket, local) = bind::bind(cfg, &mut inherited)?;
            let id = daemon.core.add_listener(Rc::new(cfg.clone()), local);
            daemon.install_socket(id, socket)?;
        }
        if config.listeners.iter().any(|l| l.takes_operator()) {
            daemon.open_stdin_console(config);
        }
        inherited.close_unused();
        // What the daemon's user must own after the drop, by descriptor.
        let log_file = crate::logging::open_log_file();
        let web_token = daemon.open_web(config, crate::privileges::serving_uid(run_as.as_ref()))?;
        let mut owned = daemon.control.handover();
        owned.extend(web_token.as_ref().map(|f| f.handover()));
        owned.extend(log_file.as_ref().and_then(|f| f.handover()));
        crate::privileges::drop_to(run_as.as_ref(), &owned)?;
        // As the user the daemon serves as: a folder it cannot write is an error now, not
        // lines lost later.
        check_transcripts(config).map_err(|e| anyhow::anyhow!("{e}"))?;
        rlimit::check_open_files(&config.listeners);
        daemon.watch_certs();
        for w in config.warnings() {
            warn!(event = "public_bind", "{w}");
        }
        info!(event = "ready", listeners = config.listeners.len(), "ready");
        daemon
            .notify
            .started(config.listeners.len(), &mut daemon.timers, now);
        Ok(daemon)
    }

    /// The control socket (attach, status, reload), for a daemon serving as `serving_uid`. A
    /// configured one must work; the default one is skipped with a warning when another
    /// daemon of the same config name holds it, or its folder is not fit for it.
    fn open_control(&mut self, config: &Config, serving_uid: u32) -> anyhow::Result<()> {
        let registry = self.poll.registry();
        let tokens = &mut self.tokens;
        match &config.daemon.control_socket {
            Some(path) => self
                .control
                .open_socket(path, serving_uid, registry, tokens),
            None => {
                let path = crate::console::default_socket(config.file.as_deref());
                if let Err(e) = self
                    .control
                    .open_socket(&path, serving_uid, registry, tokens)
                {
                    warn!(
                        event = "no_control_socket",
                        reason = crate::runtime_dir::reason_of(&e),
                        path = %path.display(),
                        "{e:#}; running without a control socket (set [daemon] control_socket)"
                    );
                }
                Ok(())
            }
        }
    }

    /// The daemon's stdin as an operator console, when a listener takes operator lines.
    fn open_stdin_console(&mut self, config: &Config) {
        let Some(op) = self
            .control
            .open_stdin(self.poll.registry(), &mut self.tokens)
        else {
            return;
        };
        self.core.attach_operator(op, "console".into(), false);
        self.stdin_op = Some(op);
        if config.daemon.log_file.is_none()
            && std::io::IsTerminal::is_terminal(&std::io::stdin())
            && std::io::IsTerminal::is_terminal(&std::io::stderr())
        {
            warn!(
                event = "console_shares_terminal",
                "the operator console and the log share this terminal; set [daemon] log_file to keep log lines out of the conversation"
            );
        }
    }

    /// Register a bound listener socket under listener `id`.
    fn install_socket(&mut self, id: ListenerId, socket: Bound) -> Result<(), BindError> {
        let token = self.tokens.add(Owner::Listener(id));
        let registry = self.poll.registry();
        let io = match socket {
            Bound::Tcp(mut l) => registry
                .register(&mut l, token, Interest::READABLE)
                .map(|()| ListenerIo::Tcp(tcp::TcpIo::new(l, token))),
            Bound::Udp(mut s) => registry
                .register(&mut s, token, Interest::READABLE)
                .map(|()| ListenerIo::Udp(udp::UdpIo::new(s, token))),
        };
        let io = io.map_err(|source| {
            self.tokens.remove(token);
            let cfg = &self.core.listener(id).expect("just added").cfg;
            BindError::Other {
                listener: cfg.name.to_string(),
                endpoint: cfg.endpoint(),
                source,
            }
        })?;
        if self.sockets.len() <= id.0 {
            self.sockets.resize_with(id.0 + 1, || None);
        }
        self.sockets[id.0] = Some(io);
        Ok(())
    }

    /// The bound address of every listener (port 0 resolved).
    pub fn local_addrs(&self) -> LocalAddrs {
        self.core
            .listeners()
            .map(|(_, l)| (l.cfg.name.clone(), l.cfg.proto, l.local))
            .collect()
    }

    /// Serve until a stop signal (or a handler's `scope = "daemon"`) and every session has
    /// ended or the drain deadline passed.
    pub fn run(mut self, logging: crate::logging::Logging) -> io::Result<()> {
        self.logging = Some(logging);
        self.core.refresh_debug();
        while !self.core.is_done() {
            // With work pending, only look; otherwise sleep until an event or the alarm.
            let timeout = (!self.pending.is_empty()).then_some(Duration::ZERO);
            if timeout.is_none() {
                let next = [self.core.next_deadline(), self.timers.next_deadline()];
                self.alarm.wake_by(next.into_iter().flatten().min())?;
            }
            let mut events = self
                .events
                .take()
                .unwrap_or_else(|| Events::with_capacity(1024));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            self.now = Instant::now();
            self.core.set_clock(self.now, SystemTime::now());
            for event in events.iter() {
                self.dispatch(event);
            }
            self.events = Some(events);
            for token in std::mem::take(&mut self.pending) {
                // Its owner may have gone since (a session released, a child's pipe closed).
                if self.tokens.owner(token).is_some() {
                    self.serve(token, true, false);
                }
            }
            self.core.handle_timeout();
            self.settle();
            while let Some(due) = self.timers.pop_due(self.now) {
                self.fire(due);
            }
        }
        self.end_children();
        info!(event = "stopped", "stopped");
        Ok(())
    }

    fn dispatch(&mut self, event: &mio::event::Event) {
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        if (event.is_read_closed() || event.is_error())
            && let Some(Owner::Session(key, Part::Peer)) = self.tokens.owner(event.token())
            && let Some(Some(c)) = self.conns.get_mut(key)
        {
            c.peer_done = true;
        }
        self.serve(event.token(), readable, event.is_writable());
    }

    fn serve(&mut self, token: Token, readable: bool, writable: bool) {
        match self.tokens.owner(token) {
            Some(Owner::Session(key, Part::Peer)) => self.session_ready(key, readable, writable),
            Some(Owner::Session(key, Part::Channel(slot, tokens::Pipe::Socket))) => {
                self.upstream_ready(ChanRef::Session(key, slot), readable, writable)
            }
            Some(Owner::Session(key, Part::Channel(slot, pipe))) => {
                self.channel_ready(ChanRef::Session(key, slot), pipe, readable, writable)
            }
            Some(Owner::Shared(i, pipe)) => {
                self.channel_ready(ChanRef::Shared(i), pipe, readable, writable)
            }
            Some(Owner::Listener(id)) => match self.sockets.get(id.0) {
                Some(Some(ListenerIo::Tcp(_))) => self.accept(id),
                Some(Some(ListenerIo::Udp(_))) => {
                    if writable && let Some(Some(ListenerIo::Udp(io))) = self.sockets.get_mut(id.0)
                    {
                        let name = self.core.listener(id).map_or("", |l| l.name());
                        io.flush(name, self.poll.registry());
                    }
                    if readable {
                        self.udp_read(id);
                    }
                }
                _ => warn!(?token, "event for a listener that is gone"),
            },
            Some(Owner::Signals) => self.on_signals(),
            Some(Owner::Waker) => self.reload_loaded(),
            Some(Owner::Alarm) => self.alarm.rang(),
            Some(Owner::Control) => self.control_accept(),
            Some(Owner::ControlClient(op)) => self.control_ready(op, readable, writable),
            Some(Owner::Stdin) => {
                if let Some(op) = self.stdin_op {
                    self.control_ready(op, readable, false);
                }
            }
            Some(Owner::Http(site)) => self.http_accept(site),
            Some(Owner::HttpConn(site, key)) => self.http_ready(site, key),
            Some(Owner::WebClient(key)) => self.web_client_ready(key, readable, writable),
            None => warn!(?token, "event for an unknown token"),
        }
        self.settle();
    }

    /// Apply the effects the core queued, until there are none.
    pub(crate) fn settle(&mut self) {
        while let Some(effect) = self.core.poll_effect() {
            match effect {
                Effect::Transmit(key) => self.transmit(key),
                other => self.carry_out(other),
            }
        }
        self.web_sync();
    }

    /// Every effect but a transmit (the one effect of most messages), out of line: the loop
    /// above then stays a few instructions, not a frame that sets up for all of these.
    #[inline(never)]
    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Transmit(key) => self.transmit(key),
            Effect::Resume(key) => self.resume(key),
            Effect::Close(key) => self.close_session(key),
            Effect::Release(key) => self.release_session(key),
            Effect::StopListener(id) => self.stop_listener(id),
            Effect::Tell(op, line) => self.tell(op, &line),
            Effect::Datagrams => self.send_datagrams(),
            Effect::Transcripts => {
                let records = self.core.take_records();
                self.transcripts
                    .get_or_insert_with(transcripts::Writer::spawn)
                    .write(records);
            }
            Effect::OpenChannel(r) => self.open_channel(r),
            Effect::ChannelWrite(_)
            | Effect::EndChannelInput(_)
            | Effect::CloseChannel(_)
            | Effect::ResetChannel(_)
            | Effect::ResumeChannel(_) => self.channel_effect(effect),
            Effect::EndOutput(key) => self.end_output(key),
            Effect::Reset(key) => self.reset_connection(key),
            Effect::Note(n) => self.tap_note(*n),
        }
    }

    /// Reading from a session may resume: serve it again before the next wait.
    fn resume(&mut self, key: SessionKey) {
        if let Some(Some(c)) = self.conns.get(key) {
            self.pending.push(c.token);
        }
    }

    /// Close a listener's socket (a UDP one after sending what is waiting for it).
    fn stop_listener(&mut self, id: ListenerId) {
        if !self.core.datagrams().is_empty() {
            self.send_datagrams();
        }
        let Some(io) = self.sockets.get_mut(id.0).and_then(Option::take) else {
            return;
        };
        let registry = self.poll.registry();
        let token = match io {
            ListenerIo::Tcp(mut t) => {
                let _ = registry.deregister(&mut t.socket);
                t.token
            }
            ListenerIo::Udp(mut u) => {
                let name = self.core.listener(id).map_or("", |l| l.name());
                u.flush(name, registry);
                let _ = registry.deregister(&mut u.socket);
                u.token
            }
        };
        self.tokens.remove(token);
    }

    fn fire(&mut self, due: ShellDue) {
        match due {
            ShellDue::ResumeAccept(id) => self.resume_accepting(id),
            ShellDue::RetryControl => self.control_accept(),
            ShellDue::Watchdog => self.notify.on_watchdog_timer(&mut self.timers, self.now),
            ShellDue::CertCheck => self.check_certs(),
            ShellDue::Kill(i, pid) => self.kill_due(i, pid),
            ShellDue::RetryHttp(site) => self.http_accept(site),
            ShellDue::HttpConn(site, key, since) => self.http_expired(site, key, since),
            ShellDue::WebTick => self.web_tick(),
            ShellDue::ConnectTimeout(r, serial) => self.connect_timeout_due(r, serial),
        }
    }

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGINT | SIGTERM => {
                    let name = signal_hook::low_level::signal_name(signal).unwrap_or("?");
                    if self.core.state() == RunState::Running {
                        info!(
                            event = "stop_requested",
                            signal = name,
                            "stop requested; finishing sessions (send again to stop at once)"
                        );
                        self.notify.stopping(self.core.session_count());
                        self.core.stop();
                    } else {
                        warn!(
                            event = "hard_stop",
                            signal = name,
                            sessions = self.core.session_count(),
                            "second stop signal: stopping now"
                        );
                        self.core.halt();
                    }
                }
                SIGHUP => self.reload(None),
                SIGUSR1 => self.core.log_status(),
                SIGCHLD => self.reap(),
                SIGUSR2 => match self.logging.as_mut().map(|l| l.reopen()) {
                    Some(Err(e)) => warn!(error = %e, "SIGUSR2: cannot reopen the log file"),
                    _ => info!(event = "log_reopened", "SIGUSR2: log file reopened"),
                },
                _ => {}
            }
        }
        self.settle();
    }
}
