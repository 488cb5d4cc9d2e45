//! The config file: parsed with spans kept, then validated into a typed [`Config`].
//!
//! Parse, then validate: the TOML document is read once with positions (`toml::de::DeTable`).
//! Each table is then read on its own and key by key (`read.rs`): an unknown key, a wrong type
//! or a value out of range is one error, naming the file, line, column and key, saying what is
//! allowed and suggesting the key or value probably meant, and the reading goes on. The
//! handler tables (`[listener.NAME]`) are handed to their factories; cross-field checks run in
//! `validate.rs` and `limits.rs`. Every error is collected, so `check` lists them all.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use switchboard_handlers::registry::SourceFile;
use switchboard_handlers::{BuildEnv, HandlerFactory, Proto};

mod chain;
mod desk;
mod faults;
mod front;
mod limits;
mod read;
mod record;
mod validate;
mod web;

pub use desk::{DEFAULT_MAX_TRANSCRIPT, ReplyMode, Transcripts};
pub use faults::{Faults, parse_fault_text, parse_fault_words};
pub use front::ProxyProtocol;
pub use limits::{Limits, Rate};
pub use record::{DEFAULT_RECORD_MAX_BYTES, RecordConfig};
use validate::Validator;
pub use web::{DEFAULT_WEB_SESSION, WebConfig, check_password_hash, hash_password};

/// The config served when none is given, kept as `config/switchboard.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/switchboard.toml");
/// Name shown for the embedded config in messages.
pub const EMBEDDED_NAME: &str = "<embedded config/switchboard.toml>";

const DEFAULT_BACKLOG: u32 = 1024;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;
/// How long a UDP session lasts without a datagram when `idle_timeout` is not given.
const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// When the log file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// One file forever (rotate it externally and send SIGUSR2... or restart).
    Never,
    /// A new file every hour.
    Hourly,
    /// A new file every day.
    Daily,
}

/// How a TCP byte stream is cut into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Each read is one message, like the tutorial's `recv(1024)`.
    Raw,
    /// Newline-delimited; the message excludes `\n` (and a `\r` before it); replies get a
    /// `\n` appended when they lack one.
    Line,
}

/// Daemon-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// `tracing` filter directive, overridden by `RUST_LOG`.
    pub log_level: String,
    /// Text or JSON.
    pub log_format: LogFormat,
    /// Log file; stderr when absent.
    pub log_file: Option<PathBuf>,
    /// Rotation of the log file.
    pub log_rotation: Rotation,
    /// How long shutdown waits for pending output.
    pub drain_timeout: Duration,
    /// The operators' Unix socket; a default under `$XDG_RUNTIME_DIR` when absent.
    pub control_socket: Option<PathBuf>,
    /// Where Prometheus metrics are served over HTTP, when set.
    pub metrics: Option<SocketAddr>,
    /// Where the toxiproxy-compatible HTTP API is served, when set.
    pub toxiproxy_api: Option<SocketAddr>,
    /// Drop root privileges to this user after binding.
    pub user: Option<String>,
    /// And to this group (default: the user's primary group).
    pub group: Option<String>,
    /// The web console, when `web` is set.
    pub web: Option<WebConfig>,
}

/// One validated listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Unique name, used in logs.
    pub name: Arc<str>,
    /// TCP or UDP.
    pub proto: Proto,
    /// Address to bind.
    pub addr: SocketAddr,
    /// listen(2) backlog (TCP).
    pub backlog: u32,
    /// How a stream is cut into messages (TCP).
    pub framing: Framing,
    /// Handler names, in chain order.
    pub handler_names: Vec<String>,
    /// The chain's factories, in order.
    pub handlers: Vec<Arc<dyn HandlerFactory>>,
    /// What the factories were built from, so that two configs compare by value: each
    /// handler's settings table as canonical TOML, and the files they read.
    pub handler_sources: Vec<String>,
    /// End a session after this long without traffic.
    pub idle_timeout: Option<Duration>,
    /// Largest message (line or datagram) accepted.
    pub max_message: usize,
    /// Most bytes buffered for a peer that does not read before reading from it pauses.
    pub max_output: usize,
    /// Set SO_REUSEPORT so several daemons can share the port.
    pub reuse_port: bool,
    /// Serve one session, then stop listening (the tutorial's one-shot servers).
    pub once: bool,
    /// Faults applied to what flows to the client and to the server (`[[listener.fault]]`).
    pub faults: Faults,
    /// Access rules, session limits and hardening (see `config/limits.rs`).
    pub limits: Limits,
    /// TCP: TLS in front of the bytes (`[listener.tls]`).
    pub tls: Option<crate::tls::TlsSettings>,
    /// TCP: a PROXY protocol header before everything else.
    pub proxy: Option<ProxyProtocol>,
    /// How replies are paced against the peer's messages.
    pub reply_mode: ReplyMode,
    /// Where conversations are written, when they are.
    pub transcripts: Option<Arc<Transcripts>>,
    /// Recordings of its sessions, when set.
    pub record: Option<Arc<RecordConfig>>,
}

/// Two listeners are equal when every setting is, the handlers' included (compared by what
/// they were built from).
impl PartialEq for ListenerConfig {
    fn eq(&self, o: &ListenerConfig) -> bool {
        let ListenerConfig {
            name,
            proto,
            addr,
            backlog,
            framing,
            handler_names,
            handlers: _,
            handler_sources,
            idle_timeout,
            max_message,
            max_output,
            reuse_port,
            once,
            faults,
            limits,
            tls,
            proxy,
            reply_mode,
            transcripts,
            record,
        } = self;
        (
            name,
            proto,
            addr,
            backlog,
            framing,
            handler_names,
            handler_sources,
        ) == (
            &o.name,
            &o.proto,
            &o.addr,
            &o.backlog,
            &o.framing,
            &o.handler_names,
            &o.handler_sources,
        ) && (idle_timeout, max_message, max_output, reuse_port, once)
            == (
                &o.idle_timeout,
                &o.max_message,
                &o.max_output,
                &o.reuse_port,
                &o.once,
            )
            && *faults == o.faults
            && *limits == o.limits
            && (tls, proxy) == (&o.tls, &o.proxy)
            && (reply_mode, transcripts) == (&o.reply_mode, &o.transcripts)
            && *record == o.record
    }
}

impl Config {
    /// What is valid but probably unwise: a listener reachable from other machines with no
    /// `allow` list, the metrics endpoint on a public address. Shown by `check`, logged at
    /// start and on reload.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for l in &self.listeners {
            if !l.addr.ip().is_loopback() && l.limits.acl.allow.is_empty() {
                w.push(format!(
                    "listener {:?} on {} is reachable from other machines and has no `allow` \
                     list: anyone who can reach it may use it (add `allow = [\"10.0.0.0/8\"]` \
                     or the like, or bind 127.0.0.1)",
                    l.name,
                    l.endpoint()
                ));
            }
        }
        if let Some(m) = self.daemon.metrics.filter(|m| !m.ip().is_loopback()) {
            w.push(format!(
                "[daemon] metrics on {m} is reachable from other machines: anyone who can \
                 reach it sees listener names and traffic (bind 127.0.0.1 and scrape through a \
                 tunnel or a proxy that checks who asks)"
            ));
        }
        if let Some(web) = self
            .daemon
            .web
            .as_ref()
            .filter(|w| !w.addr.ip().is_loopback())
        {
            w.push(format!(
                "[daemon] web on {} is reachable from other machines over plain HTTP: \
                 credentials and conversations cross the network in clear (put it behind a \
                 TLS proxy and list its address in web_origins)",
                web.addr
            ));
        }
        w
    }
}

impl ListenerConfig {
    /// `127.0.0.1:8888/tcp`.
    pub fn endpoint(&self) -> String {
        format!("{}/{}", self.addr, self.proto)
    }

    /// Whether something stands in front of the bytes (TLS, a PROXY header): the session
    /// opens only once it is done.
    pub fn has_front(&self) -> bool {
        self.tls.is_some() || self.proxy.is_some()
    }

    /// Whether the chain has a handler that takes operator lines.
    pub fn takes_operator(&self) -> bool {
        self.handlers.iter().any(|h| h.takes_operator())
    }

    /// How many recent messages of a session operators are shown (0: none kept).
    pub fn history(&self) -> usize {
        self.handlers.iter().map(|h| h.history()).max().unwrap_or(0)
    }
}

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, as shown in messages.
    pub source: PathBuf,
    /// The config file, `None` for the embedded default.
    pub file: Option<PathBuf>,
    /// The `[daemon]` table.
    pub daemon: DaemonConfig,
    /// The listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
}

/// One problem in a config file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (the config or a script it names).
    pub file: PathBuf,
    /// 1-based line, 0 when the problem has no place.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key concerned, like `listener "chat" backlog`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads files named in settings relative to the config's folder.
struct FilesBeside<'a>(&'a Path);

/// Largest config or script file read.
const MAX_FILE: u64 = 16 << 20;

/// Read a config or script file as text, safely: it must be a regular file (a FIFO would
/// block the daemon, a device such as /dev/zero never ends), opened without blocking, and at
/// most `MAX_FILE` bytes.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, a device or a folder cannot be a config or a script)",
        ));
    }
    if meta.len() > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {} MiB a config or a script may have",
            meta.len(),
            MAX_FILE >> 20
        )));
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(
            "it grew past the size limit while read",
        ));
    }
    Ok(text)
}

impl BuildEnv for FilesBeside<'_> {
    fn read_file(&self, name: &str) -> Result<Arc<SourceFile>, String> {
        let path = self.0.join(name);
        read_text(&path)
            .map(|text| {
                Arc::new(SourceFile {
                    path: path.clone(),
                    text,
                })
            })
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    fn dir(&self) -> Option<PathBuf> {
        Some(self.0.to_path_buf())
    }

    fn resolve(&self, host_port: &str) -> Result<SocketAddr, String> {
        resolve(host_port)
    }

    fn program(&self, name: &str) -> Result<PathBuf, String> {
        use std::os::unix::fs::PermissionsExt;
        let runnable = |p: &Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if name.contains('/') {
            let path = self.0.join(name);
            return if runnable(&path) {
                Ok(path)
            } else {
                Err(format!("{} is not an executable file", path.display()))
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| runnable(p))
            .ok_or_else(|| {
                format!(
                    "program {name:?} is not found in PATH ({}); install it or give its full path",
                    path.to_string_lossy()
                )
            })
    }
}

/// The address of `host:port`: an `ip:port` as it is, a host name looked up (the first
/// address it has).
pub fn resolve(host_port: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = host_port.parse() {
        return Ok(a);
    }
    if !host_port.contains(':') {
        return Err(format!(
            "{host_port:?} has no port; write host:port, e.g. \"127.0.0.1:7000\""
        ));
    }
    match host_port.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{host_port:?} has no address")),
        Err(e) => Err(format!("cannot resolve {host_port:?}: {e}")),
    }
}

/// Read and validate the config at `path`, or the embedded default when `None`.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    match path {
        None => parse(DEFAULT_CONFIG, Path::new(EMBEDDED_NAME), Path::new(".")),
        Some(path) => {
            let text = read_text(path).map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    file: path.to_path_buf(),
                    line: 0,
                    column: 0,
                    key: None,
                    message: format!("cannot read the config file: {e}"),
                }])
            })?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let mut config = parse(&text, path, dir)?;
            config.file = Some(path.to_path_buf());
            Ok(config)
        }
    }
}

/// Validate config text. `source` names it in errors; relative paths in it are taken from
/// `dir`.
pub fn parse(text: &str, source: &Path, dir: &Path) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        text,
        source,
        errors: Vec::new(),
    };
    let config = v.parse(dir);
    match config {
        Some(c) if v.errors.is_empty() => Ok(c),
        _ => {
            // In the order of the file: the config's own errors by position, then those in
            // the scripts it names, then the ones without a place.
            let mut errors = v.errors;
            errors.sort_by_key(|e| (e.file != source, e.line == 0, e.line, e.column));
            Err(ConfigErrors(errors))
        }
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
