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
mod limits;
mod read;
mod validate;

pub use desk::{DEFAULT_MAX_TRANSCRIPT, ReplyMode, Transcripts};
pub use limits::{Limits, Rate};
use validate::Validator;

/// The config served when none is given, kept as `config/switchboard.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/switchboard.toml");
/// Name shown for the embedded config in messages.
pub const EMBEDDED_NAME: &str = "<embedded config/switchboard.toml>";

const DEFAULT_BACKLOG: u32 = 1024;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;

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
    /// Drop root privileges to this user after binding.
    pub user: Option<String>,
    /// And to this group (default: the user's primary group).
    pub group: Option<String>,
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
    /// UDP: faults applied to replies, to show that UDP is unreliable.
    pub faults: Faults,
    /// Access rules, session limits and hardening (see `config/limits.rs`).
    pub limits: Limits,
    /// How replies are paced against the peer's messages.
    pub reply_mode: ReplyMode,
    /// Where conversations are written, when they are.
    pub transcripts: Option<Arc<Transcripts>>,
}

/// Faults the loop applies to a UDP listener's replies. Deterministic under `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Share of replies dropped, 0.0 to 1.0.
    pub loss: f64,
    /// Share of replies sent twice.
    pub duplicate: f64,
    /// Replies held back this long.
    pub delay: Option<Duration>,
    /// Seed of the random draws.
    pub seed: u64,
}

impl Faults {
    /// Whether any fault is configured.
    pub fn any(&self) -> bool {
        self.loss > 0.0 || self.duplicate > 0.0 || self.delay.is_some()
    }
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
            reply_mode,
            transcripts,
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
            && (reply_mode, transcripts) == (&o.reply_mode, &o.transcripts)
    }
}

impl ListenerConfig {
    /// `127.0.0.1:8888/tcp`.
    pub fn endpoint(&self) -> String {
        format!("{}/{}", self.addr, self.proto)
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

impl BuildEnv for FilesBeside<'_> {
    fn read_file(&self, name: &str) -> Result<Arc<SourceFile>, String> {
        let path = self.0.join(name);
        std::fs::read_to_string(&path)
            .map(|text| {
                Arc::new(SourceFile {
                    path: path.clone(),
                    text,
                })
            })
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

/// Read and validate the config at `path`, or the embedded default when `None`.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    match path {
        None => parse(DEFAULT_CONFIG, Path::new(EMBEDDED_NAME), Path::new(".")),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
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
