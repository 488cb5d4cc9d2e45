//! The config file: parsed with spans kept, then validated into a typed [`Config`].
//!
//! Parse, then validate: the TOML document is read once with positions (`toml::de::DeTable`),
//! the handler tables (`[listener.NAME]`) are taken out and handed to their factories, and
//! the rest is deserialized into `File*` structs with `deny_unknown_fields`. Cross-field checks
//! then run in one place and collect every error, each naming the file, line and key.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use switchboard_handlers::registry::SourceFile;
use switchboard_handlers::{BuildEnv, HandlerFactory, Proto, Registry, Settings};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

mod limits;
pub use limits::{Limits, Rate};

/// The config served when none is given, kept as `config/switchboard.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../config/switchboard.toml");
/// Name shown for the embedded config in messages.
pub const EMBEDDED_NAME: &str = "<embedded config/switchboard.toml>";

const DEFAULT_BACKLOG: u32 = 1024;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// When the log file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    /// One file forever (rotate it externally and send SIGUSR2... or restart).
    Never,
    /// A new file every hour.
    Hourly,
    /// A new file every day.
    Daily,
}

/// How a TCP byte stream is cut into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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
        } = self;
        (
            name,
            proto,
            addr,
            backlog,
            framing,
            handler_names,
            handler_sources,
            idle_timeout,
            max_message,
            max_output,
            reuse_port,
            once,
        ) == (
            &o.name,
            &o.proto,
            &o.addr,
            &o.backlog,
            &o.framing,
            &o.handler_names,
            &o.handler_sources,
            &o.idle_timeout,
            &o.max_message,
            &o.max_output,
            &o.reuse_port,
            &o.once,
        ) && *faults == o.faults
            && *limits == o.limits
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    daemon: Option<FileDaemon>,
    #[serde(default)]
    listener: Vec<Spanned<FileListener>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDaemon {
    log_level: Option<Spanned<String>>,
    log_format: Option<LogFormat>,
    log_file: Option<String>,
    log_rotation: Option<Rotation>,
    drain_timeout: Option<Spanned<String>>,
    control_socket: Option<String>,
    metrics: Option<Spanned<String>>,
    user: Option<String>,
    group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    name: Spanned<String>,
    protocol: Proto,
    ip: Spanned<String>,
    port: u16,
    backlog: Option<Spanned<u32>>,
    framing: Option<Spanned<Framing>>,
    handlers: Spanned<Vec<Spanned<String>>>,
    idle_timeout: Option<Spanned<String>>,
    max_message: Option<Spanned<usize>>,
    max_output: Option<Spanned<usize>>,
    #[serde(default)]
    reuse_port: bool,
    #[serde(default)]
    once: bool,
    loss: Option<Spanned<f64>>,
    duplicate: Option<Spanned<f64>>,
    delay: Option<Spanned<String>>,
    seed: Option<u64>,
    // Limits and hardening, validated together in config/limits.rs.
    allow: Option<Vec<Spanned<String>>>,
    deny: Option<Vec<Spanned<String>>>,
    max_connections: Option<Spanned<usize>>,
    max_per_ip: Option<Spanned<usize>>,
    accept_rate: Option<Spanned<f64>>,
    accept_burst: Option<Spanned<u32>>,
    busy_message: Option<Spanned<String>>,
    too_long_reply: Option<Spanned<String>>,
    write_timeout: Option<Spanned<String>>,
    udp_blocked_ports: Option<Spanned<Vec<u16>>>,
    reply_rate: Option<Spanned<f64>>,
    reply_burst: Option<Spanned<u32>>,
}

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

/// A [`BuildEnv`] that remembers what it read, for [`ListenerConfig::handler_sources`].
struct Recording<'a> {
    inner: &'a dyn BuildEnv,
    read: std::cell::RefCell<Vec<Arc<SourceFile>>>,
}

impl BuildEnv for Recording<'_> {
    fn read_file(&self, name: &str) -> Result<Arc<SourceFile>, String> {
        let file = self.inner.read_file(name)?;
        self.read.borrow_mut().push(file.clone());
        Ok(file)
    }
}

/// A handler's settings table as canonical TOML (key order and layout do not matter),
/// followed by the files its factory read.
fn handler_source(table: Option<&Spanned<DeValue<'_>>>, files: &[Arc<SourceFile>]) -> String {
    let mut text = match table {
        Some(t) => toml::Value::deserialize(toml::de::ValueDeserializer::from(t.clone()))
            .map_or_else(|e| e.to_string(), |v| v.to_string()),
        None => String::new(),
    };
    for f in files {
        text.push_str("\n# file ");
        text.push_str(&f.path.to_string_lossy());
        text.push('\n');
        text.push_str(&f.text);
    }
    text
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
        _ => Err(ConfigErrors(v.errors)),
    }
}

struct Validator<'a> {
    text: &'a str,
    source: &'a Path,
    errors: Vec<ConfigError>,
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Validator<'_> {
    fn error_in(
        &mut self,
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = span.map_or((0, 0), |s| line_col(text, s.start));
        self.errors.push(ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            key,
            message: message.into(),
        });
    }

    fn error(&mut self, span: Option<Range<usize>>, key: Option<String>, msg: impl Into<String>) {
        let (source, text) = (self.source, self.text);
        self.error_in(source, text, span, key, msg);
    }

    fn toml_error(&mut self, e: toml::de::Error) {
        let key = e.span().and_then(|s| {
            let k = self.text.get(s)?.trim();
            (!k.is_empty() && k.len() < 60 && !k.contains('\n')).then(|| k.to_string())
        });
        let message = e.message().trim_end().to_string();
        self.error(e.span(), key, message);
    }

    fn duration(&mut self, v: &Spanned<String>, key: String) -> Option<Duration> {
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    Some(v.span()),
                    Some(key),
                    format!(
                        "{:?} is not a duration ({e}); write e.g. \"5s\", \"800ms\", \"10m\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn parse(&mut self, dir: &Path) -> Option<Config> {
        let registry = Registry::builtin();
        let mut doc = match DeTable::parse(self.text) {
            Ok(doc) => doc,
            Err(e) => {
                self.toml_error(e);
                return None;
            }
        };
        // Take each listener's handler tables out before the strict deserialization.
        let mut settings: Vec<Vec<(String, Spanned<DeValue<'_>>)>> = Vec::new();
        if let Some(list) = doc.get_mut().get_mut("listener")
            && let DeValue::Array(list) = list.get_mut()
        {
            for entry in list.iter_mut() {
                let mut mine = Vec::new();
                if let DeValue::Table(table) = entry.get_mut() {
                    let old = std::mem::take(table);
                    for (k, v) in old {
                        if registry.contains(k.get_ref()) && v.get_ref().is_table() {
                            mine.push((k.get_ref().to_string(), v));
                        } else {
                            table.insert(k, v);
                        }
                    }
                }
                settings.push(mine);
            }
        }
        let file: FileConfig = match FileConfig::deserialize(toml::de::Deserializer::from(doc)) {
            Ok(f) => f,
            Err(e) => {
                self.toml_error(e);
                return None;
            }
        };
        let daemon = self.daemon(file.daemon.unwrap_or_default(), dir);
        let env = FilesBeside(dir);
        let mut listeners = Vec::new();
        let mut names = HashSet::new();
        let mut endpoints = HashSet::new();
        if file.listener.is_empty() {
            self.error(None, None, "no [[listener]] is declared: nothing to serve");
        }
        for (i, (l, tables)) in file.listener.into_iter().zip(settings).enumerate() {
            let span = l.span();
            let l = l.into_inner();
            let label = format!("listener {:?}", l.name.get_ref());
            if l.name.get_ref().trim().is_empty() {
                self.error(
                    Some(l.name.span()),
                    Some(format!("listener #{} name", i + 1)),
                    "the name must not be empty",
                );
            } else if !names.insert(l.name.get_ref().clone()) {
                self.error(
                    Some(l.name.span()),
                    Some(format!("{label} name")),
                    "another listener has this name; names must be unique",
                );
            }
            if let Some(lc) = self.listener(l, tables, &label, &registry, &env) {
                if !endpoints.insert((lc.addr, lc.proto)) && lc.addr.port() != 0 {
                    self.error(
                        Some(span.clone()),
                        Some(label.clone()),
                        format!("{} is declared twice", lc.endpoint()),
                    );
                }
                listeners.push(lc);
            }
        }
        Some(Config {
            source: self.source.to_path_buf(),
            file: None,
            daemon: daemon?,
            listeners,
        })
    }

    fn daemon(&mut self, d: FileDaemon, dir: &Path) -> Option<DaemonConfig> {
        let drain_timeout = match &d.drain_timeout {
            Some(v) => self
                .duration(v, "daemon drain_timeout".into())
                .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            None => DEFAULT_DRAIN_TIMEOUT,
        };
        let metrics = match &d.metrics {
            Some(m) => match m.get_ref().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.error(
                        Some(m.span()),
                        Some("daemon metrics".into()),
                        format!(
                            "{:?} is not an ip:port address (write e.g. \"127.0.0.1:9898\")",
                            m.get_ref()
                        ),
                    );
                    None
                }
            },
            None => None,
        };
        let log_level = match d.log_level {
            Some(level) => {
                let l = level.get_ref();
                let plain = !l.contains(['=', ',', '[']);
                let known = ["off", "error", "warn", "info", "debug", "trace"];
                if (plain && !known.contains(&l.to_ascii_lowercase().as_str()))
                    || crate::logging::config_filter(l).is_err()
                {
                    self.error(Some(level.span()), Some("daemon log_level".into()), format!("{l:?} is not a log level; use error, warn, info, debug, trace or a filter like \"info,switchboard=debug\""));
                }
                level.into_inner()
            }
            None => "info".into(),
        };
        Some(DaemonConfig {
            log_level,
            log_format: d.log_format.unwrap_or(LogFormat::Text),
            log_file: d.log_file.map(|f| dir.join(f)),
            log_rotation: d.log_rotation.unwrap_or(Rotation::Never),
            drain_timeout,
            control_socket: d.control_socket.map(|f| dir.join(f)),
            metrics,
            user: d.user,
            group: d.group,
        })
    }

    fn listener(
        &mut self,
        l: FileListener,
        tables: Vec<(String, Spanned<DeValue<'_>>)>,
        label: &str,
        registry: &Registry,
        env: &dyn BuildEnv,
    ) -> Option<ListenerConfig> {
        let key = |k: &str| Some(format!("{label} {k}"));
        let ip: Option<IpAddr> = match l.ip.get_ref().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(Some(l.ip.span()), key("ip"), format!("{:?} is not an IPv4 or IPv6 address (write e.g. \"127.0.0.1\", \"0.0.0.0\" or \"::1\"; host names are not resolved)", l.ip.get_ref()));
                None
            }
        };
        if let (Some(b), Proto::Udp) = (&l.backlog, l.protocol) {
            self.error(
                Some(b.span()),
                key("backlog"),
                "backlog applies to TCP listeners only; remove it",
            );
        }
        if let Some(b) = &l.backlog
            && *b.get_ref() == 0
        {
            self.error(Some(b.span()), key("backlog"), "backlog must be at least 1");
        }
        if let (Some(f), Proto::Udp) = (&l.framing, l.protocol)
            && *f.get_ref() == Framing::Line
        {
            self.error(
                Some(f.span()),
                key("framing"),
                "UDP has no stream to frame: each datagram is one message; remove framing",
            );
        }
        let idle_timeout = match &l.idle_timeout {
            Some(v) => self.duration(v, format!("{label} idle_timeout")),
            None => None,
        };
        for (v, k) in [
            (&l.max_message, "max_message"),
            (&l.max_output, "max_output"),
        ] {
            if let Some(v) = v
                && *v.get_ref() == 0
            {
                self.error(Some(v.span()), key(k), "must be at least 1");
            }
        }
        let mut faults = Faults {
            seed: l.seed.unwrap_or(0),
            ..Faults::default()
        };
        for (v, k, slot) in [
            (&l.loss, "loss", &mut faults.loss),
            (&l.duplicate, "duplicate", &mut faults.duplicate),
        ] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(v.get_ref()) {
                    self.error(Some(v.span()), key(k), "must be between 0.0 and 1.0");
                }
                *slot = *v.get_ref();
            }
        }
        if let Some(d) = &l.delay {
            faults.delay = self.duration(d, format!("{label} delay"));
        }
        if l.protocol == Proto::Tcp
            && let Some(span) = [
                l.loss.as_ref().map(|v| v.span()),
                l.duplicate.as_ref().map(|v| v.span()),
                l.delay.as_ref().map(|v| v.span()),
            ]
            .into_iter()
            .flatten()
            .next()
        {
            self.error(
                Some(span),
                key("loss/duplicate/delay"),
                "faults apply to UDP listeners only (TCP is reliable by design)",
            );
        }
        let limits = self.limits(&l, label);
        // The chain.
        let mut handlers = Vec::new();
        let mut names = Vec::new();
        if l.handlers.get_ref().is_empty() {
            self.error(
                Some(l.handlers.span()),
                key("handlers"),
                format!(
                    "the chain is empty; name at least one of: {}",
                    registry.names().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        let mut tables = tables;
        let mut sources = Vec::new();
        for h in l.handlers.get_ref() {
            let name = h.get_ref();
            if !registry.contains(name) {
                self.error(
                    Some(h.span()),
                    key("handlers"),
                    format!(
                        "unknown handler {name:?}; known handlers: {}",
                        registry.names().collect::<Vec<_>>().join(", ")
                    ),
                );
                continue;
            }
            if names.contains(name) {
                self.error(
                    Some(h.span()),
                    key("handlers"),
                    format!("{name:?} appears twice in the chain"),
                );
                continue;
            }
            let table = tables
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| tables.swap_remove(i).1);
            let recording = Recording {
                inner: env,
                read: Default::default(),
            };
            let source_table = table.clone();
            match registry.build(name, Settings::new(table), &recording) {
                Some(Ok(f)) => {
                    handlers.push(f);
                    sources.push(handler_source(
                        source_table.as_ref(),
                        &recording.read.borrow(),
                    ));
                }
                Some(Err(e)) => {
                    let k = key(name);
                    match &e.file {
                        Some(file) => {
                            self.error_in(&file.path, &file.text, e.span.clone(), k, e.message)
                        }
                        None => self.error(e.span, k, e.message),
                    }
                }
                None => unreachable!("checked above"),
            }
            names.push(name.clone());
        }
        for (name, table) in tables {
            self.error(
                Some(table.span()),
                key(&name),
                format!("settings for {name:?}, which is not in this listener's handlers"),
            );
        }
        Some(ListenerConfig {
            name: Arc::from(l.name.get_ref().as_str()),
            proto: l.protocol,
            addr: SocketAddr::new(ip?, l.port),
            backlog: l.backlog.map_or(DEFAULT_BACKLOG, |b| b.into_inner()),
            framing: l.framing.map_or(Framing::Raw, |f| f.into_inner()),
            handler_names: names,
            handlers,
            handler_sources: sources,
            idle_timeout,
            max_message: l
                .max_message
                .map_or(DEFAULT_MAX_MESSAGE, |v| v.into_inner()),
            max_output: l.max_output.map_or(DEFAULT_MAX_OUTPUT, |v| v.into_inner()),
            reuse_port: l.reuse_port,
            once: l.once,
            faults,
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse(text, Path::new("t.toml"), Path::new("."))
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    const ONE: &str = "[[listener]]\nname = \"a\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = [\"echo\"]\n";

    #[test]
    fn embedded_default_is_valid() {
        let c = load(None).unwrap();
        assert_eq!(c.listeners.len(), 2);
        assert!(c.listeners.iter().all(|l| l.addr.port() == 8888));
    }

    #[test]
    fn minimal_listener_gets_defaults() {
        let c = parse(ONE, Path::new("t.toml"), Path::new(".")).unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.backlog, DEFAULT_BACKLOG);
        assert_eq!(l.framing, Framing::Raw);
        assert_eq!(c.daemon.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = errors(&format!("{ONE}colour = \"red\"\n"));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("t.toml:7:1: colour: unknown field `colour`"),
            "{e:?}"
        );
    }

    #[test]
    fn handler_settings_errors_point_into_the_table() {
        let text = "[[listener]]\nname = \"a\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = [\"bye-close\", \"echo\"]\n[listener.bye-close]\nwrod = \"x\"\n";
        let e = errors(text);
        assert!(
            e[0].starts_with("t.toml:8:1: listener \"a\" bye-close: unknown field `wrod`"),
            "{e:?}"
        );
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = "[[listener]]\nname = \"a\"\nprotocol = \"udp\"\nip = \"localhost\"\nport = 0\nbacklog = 5\nhandlers = []\n";
        let e = errors(text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains(":4:6: listener \"a\" ip:"), "{e:?}");
        assert!(
            e[1].contains(":6:11: listener \"a\" backlog: backlog applies to TCP"),
            "{e:?}"
        );
        assert!(
            e[2].contains(":7:12: listener \"a\" handlers: the chain is empty"),
            "{e:?}"
        );
    }

    #[test]
    fn duplicates_unknown_handlers_and_orphan_settings() {
        let text = format!("{ONE}port = 9\n");
        assert!(
            errors(&text)[0].contains("duplicate key"),
            "{:?}",
            errors(&text)
        );
        let text = format!(
            "{ONE}{}",
            ONE.replace("port = 0", "port = 7000")
                .replace("[\"echo\"]", "[\"eco\"]")
        );
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|e| e.contains("listener \"a\" name: another listener has this name")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.contains("unknown handler \"eco\"")),
            "{e:?}"
        );
        let two = format!(
            "{}{}",
            ONE.replace("port = 0", "port = 7000"),
            ONE.replace("port = 0", "port = 7000")
                .replace("\"a\"", "\"b\"")
        );
        let e = errors(&two);
        assert!(
            e.iter()
                .any(|e| e.contains("127.0.0.1:7000/tcp is declared twice")),
            "{e:?}"
        );
        let e = errors(&format!("{ONE}[listener.bye-close]\nword = \"x\"\n"));
        assert!(e[0].contains("not in this listener's handlers"), "{e:?}");
    }

    #[test]
    fn log_level_field_values_are_not_compiled_as_regexes() {
        // Not a valid regex, but a fine literal value: refused if values were compiled.
        let paren = format!("[daemon]\nlog_level = \"[{{f=(}}]=info\"\n{ONE}");
        assert!(parse(&paren, Path::new("t.toml"), Path::new(".")).is_ok());
        // Found by the config_parse fuzz target: as a regex, this value built a DFA for minutes
        // and gigabytes before `check` could answer.
        let slow = format!(
            "[daemon]\nlog_level = \"[{{f=a{}}}]=info\"\n{ONE}",
            ".".repeat(25)
        );
        assert!(parse(&slow, Path::new("t.toml"), Path::new(".")).is_ok());
    }

    #[test]
    fn log_level_directives_may_have_spaces_around_them() {
        // Found by the config_parse fuzz target: tracing-subscriber's directive parser walks the
        // trimmed directive but slices the untrimmed one, so a leading space shifted every
        // index: a panic inside a multi-byte character, a refused level otherwise.
        for level in [
            " 客服=info",
            "info, switchboard=debug",
            "warn ,\tswitchboard=info ",
        ] {
            let text = format!("[daemon]\nlog_level = \"{level}\"\n{ONE}");
            let c = parse(&text, Path::new("t.toml"), Path::new("."));
            assert!(c.is_ok(), "{level:?}: {:?}", c.unwrap_err().0);
        }
        let filter = crate::logging::config_filter("info, switchboard=debug").unwrap();
        assert_eq!(filter.to_string(), "switchboard=debug,info");
    }

    #[test]
    fn durations_and_levels_are_checked() {
        let e = errors(&format!(
            "[daemon]\ndrain_timeout = \"soon\"\nlog_level = \"loud\"\n{ONE}"
        ));
        assert!(
            e.iter()
                .any(|e| e.contains("t.toml:2:17: daemon drain_timeout")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.contains("daemon log_level")), "{e:?}");
    }
}
