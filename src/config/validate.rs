//! From the parsed TOML document to a [`Config`]: each table is read on its own, key by key
//! (`read.rs`), then cross-field rules are checked; every problem is collected.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use switchboard_handlers::{BuildEnv, BuildError, Proto, Registry};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::desk::REPLY_MODES;
use super::read::{Fields, IntRange, Value};
use super::{
    Config, ConfigError, DEFAULT_BACKLOG, DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_MESSAGE,
    DEFAULT_MAX_OUTPUT, DEFAULT_UDP_IDLE_TIMEOUT, DaemonConfig, FilesBeside, Framing,
    ListenerConfig, LogFormat, ReplyMode, Rotation, line_col,
};

const TOP_KEYS: &[&str] = &["daemon", "listener"];

const DAEMON_KEYS: &[&str] = &[
    "log_level",
    "log_format",
    "log_file",
    "log_rotation",
    "drain_timeout",
    "control_socket",
    "metrics",
    "toxiproxy_api",
    "user",
    "group",
    "web",
    "web_token",
    "web_token_file",
    "web_password_hash",
    "web_origins",
    "web_session",
];

const LISTENER_KEYS: &[&str] = &[
    "name",
    "protocol",
    "ip",
    "port",
    "backlog",
    "framing",
    "handlers",
    "idle_timeout",
    "max_message",
    "max_output",
    "reuse_port",
    "once",
    "loss",
    "duplicate",
    "delay",
    "seed",
    "allow",
    "deny",
    "max_connections",
    "max_per_ip",
    "accept_rate",
    "accept_burst",
    "busy_message",
    "too_long_reply",
    "write_timeout",
    "message_timeout",
    "udp_blocked_ports",
    "reply_rate",
    "reply_burst",
    "tls",
    "proxy_protocol",
    "proxy_timeout",
    "reply_mode",
    "transcripts",
    "max_transcript",
    "record",
    "fault",
];

const PROTOCOLS: &[(&str, Proto)] = &[("tcp", Proto::Tcp), ("udp", Proto::Udp)];

/// One listener's keys as read, each checked for its type and range on its own.
#[derive(Debug, Default)]
pub(super) struct FileListener {
    pub(super) name: Option<Spanned<String>>,
    pub(super) protocol: Option<Proto>,
    pub(super) ip: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) backlog: Option<Spanned<u32>>,
    pub(super) framing: Option<Spanned<Framing>>,
    pub(super) handlers: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) max_message: Option<Spanned<usize>>,
    pub(super) max_output: Option<Spanned<usize>>,
    pub(super) reuse_port: Option<Spanned<bool>>,
    pub(super) once: Option<Spanned<bool>>,
    pub(super) loss: Option<Spanned<f64>>,
    pub(super) duplicate: Option<Spanned<f64>>,
    pub(super) delay: Option<Spanned<String>>,
    pub(super) seed: Option<Spanned<u64>>,
    // Limits and hardening, validated together in limits.rs.
    pub(super) allow: Option<Vec<Spanned<String>>>,
    pub(super) deny: Option<Vec<Spanned<String>>>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) max_per_ip: Option<Spanned<usize>>,
    pub(super) accept_rate: Option<Spanned<f64>>,
    pub(super) accept_burst: Option<Spanned<u32>>,
    pub(super) busy_message: Option<Spanned<String>>,
    pub(super) too_long_reply: Option<Spanned<String>>,
    pub(super) write_timeout: Option<Spanned<String>>,
    pub(super) message_timeout: Option<Spanned<String>>,
    pub(super) udp_blocked_ports: Option<Spanned<Vec<u16>>>,
    pub(super) reply_rate: Option<Spanned<f64>>,
    pub(super) reply_burst: Option<Spanned<u32>>,
    // The support desk, validated in desk.rs.
    pub(super) reply_mode: Option<Spanned<ReplyMode>>,
    pub(super) transcripts: Option<Spanned<String>>,
    pub(super) max_transcript: Option<Spanned<u64>>,
}

/// Collects the errors of one config.
#[derive(Debug)]
pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) source: &'a Path,
    pub(super) errors: Vec<ConfigError>,
}

impl Validator<'_> {
    pub(super) fn error_in(
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

    pub(super) fn error(
        &mut self,
        span: Option<Range<usize>>,
        key: Option<String>,
        msg: impl Into<String>,
    ) {
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

    /// A handler's error (and those it carries), in the config or in the script it names.
    /// A message that starts with the key it is about (`` `word`: ... ``) has it moved into
    /// the key: `listener "a" bye-close word: ...`.
    pub(super) fn build_error(&mut self, e: BuildError, key: String) {
        let also = e.also;
        let (full, message) = match e
            .message
            .strip_prefix('`')
            .and_then(|m| m.split_once("`: "))
        {
            Some((k, m)) if !k.contains(' ') => (format!("{key} {k}"), m.to_string()),
            _ => (key.clone(), e.message),
        };
        match &e.file {
            Some(file) => self.error_in(&file.path, &file.text, e.span, Some(full), message),
            None => self.error(e.span, Some(full), message),
        }
        for more in also {
            self.build_error(more, key.clone());
        }
    }

    pub(super) fn duration(&mut self, v: &Spanned<String>, key: String) -> Option<Duration> {
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

    pub(super) fn parse(&mut self, dir: &Path) -> Option<Config> {
        let registry = Registry::builtin();
        let (doc, syntax) = DeTable::parse_recoverable(self.text);
        if !syntax.is_empty() {
            // What follows a syntax error cannot be trusted to mean what was written.
            for e in syntax {
                self.toml_error(e);
            }
            return None;
        }
        let span = doc.span();
        let mut top = self.fields("", span, doc.into_inner(), TOP_KEYS, &[]);
        let daemon = match top.take_value("daemon") {
            None => Some(self.daemon(None, dir)),
            Some(v) => match v.get_ref() {
                DeValue::Table(_) => {
                    let span = v.span();
                    let DeValue::Table(t) = v.into_inner() else {
                        unreachable!()
                    };
                    let f = self.fields("daemon", span, t, DAEMON_KEYS, &[]);
                    Some(self.daemon(Some(f), dir))
                }
                DeValue::Array(_) => {
                    self.error(
                        Some(v.span()),
                        Some("daemon".into()),
                        "there is one [daemon] table: write `[daemon]` (one pair of brackets), \
                         not `[[daemon]]`",
                    );
                    None
                }
                _ => {
                    self.error(
                        Some(v.span()),
                        Some("daemon".into()),
                        "expected a table: write the settings under a `[daemon]` line",
                    );
                    None
                }
            },
        };
        let entries = match top.take_value("listener") {
            None => Vec::new(),
            Some(v) => match v.into_inner() {
                DeValue::Array(items) => items.into_iter().collect(),
                DeValue::Table(t) => {
                    self.error(
                        Some(span_of_header(self.text, "[listener]").unwrap_or(0..0)),
                        Some("listener".into()),
                        "`[listener]` declares a single table, but listeners are a list: write \
                         `[[listener]]` (two pairs of brackets) before each listener",
                    );
                    // Still check what it says, as the one listener it was meant to be.
                    let s = span_of_header(self.text, "[listener]").unwrap_or(0..0);
                    vec![Spanned::new(s, DeValue::Table(t))]
                }
                other => {
                    self.error(
                        Some(0..0),
                        Some("listener".into()),
                        format!("expected `[[listener]]` tables, found {}", other.type_str()),
                    );
                    Vec::new()
                }
            },
        };
        if entries.is_empty() {
            self.error(
                Some(0..0),
                Some("listener".into()),
                "no [[listener]] is declared: nothing to serve",
            );
        }
        let env = FilesBeside(dir);
        let mut listeners = Vec::new();
        let mut names = HashSet::new();
        let mut endpoints = HashSet::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let span = entry.span();
            if let Some(lc) = self.listener(i, entry, &mut names, &registry, &env, dir) {
                if !endpoints.insert((lc.addr, lc.proto)) && lc.addr.port() != 0 {
                    self.error(
                        Some(span),
                        Some(format!("listener {:?}", &*lc.name)),
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

    fn daemon(&mut self, f: Option<Fields<'_>>, dir: &Path) -> DaemonConfig {
        let mut f = f.unwrap_or_else(|| Fields::empty("daemon"));
        let drain_timeout = self
            .duration_text(&mut f, "drain_timeout")
            .and_then(|v| self.duration(&v, f.key("drain_timeout")))
            .unwrap_or(DEFAULT_DRAIN_TIMEOUT);
        let metrics =
            self.string(&mut f, "metrics")
                .and_then(|m| match m.get_ref().parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        self.error(
                            Some(m.span()),
                            Some(f.key("metrics")),
                            format!(
                                "{:?} is not an ip:port address (write e.g. \"127.0.0.1:9898\")",
                                m.get_ref()
                            ),
                        );
                        None
                    }
                });
        let toxiproxy_api = self.string(&mut f, "toxiproxy_api").and_then(|m| {
            m.get_ref()
                .parse::<SocketAddr>()
                .map_err(|_| {
                    self.error(
                        Some(m.span()),
                        Some(f.key("toxiproxy_api")),
                        format!(
                            "{:?} is not an ip:port address (write e.g. \"127.0.0.1:8474\")",
                            m.get_ref()
                        ),
                    )
                })
                .ok()
        });
        let log_level = match self.string(&mut f, "log_level") {
            Some(level) => {
                let l = level.get_ref();
                let plain = !l.contains(['=', ',', '[']);
                let known = ["off", "error", "warn", "info", "debug", "trace"];
                if (plain && !known.contains(&l.to_ascii_lowercase().as_str()))
                    || crate::logging::config_filter(l).is_err()
                {
                    let near = switchboard_handlers::settings::hint(l, known.into_iter());
                    self.error(
                        Some(level.span()),
                        Some(f.key("log_level")),
                        format!(
                            "{l:?} is not a log level; expected \"error\", \"warn\", \"info\", \
                             \"debug\", \"trace\" or a filter like \"info,switchboard=debug\"{near}"
                        ),
                    );
                }
                level.into_inner()
            }
            None => "info".into(),
        };
        let log_format = self.choice(
            &mut f,
            "log_format",
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        );
        let log_rotation = self.choice(
            &mut f,
            "log_rotation",
            &[
                ("never", Rotation::Never),
                ("hourly", Rotation::Hourly),
                ("daily", Rotation::Daily),
            ],
        );
        let log_file = self.string(&mut f, "log_file");
        let control_socket = self.string(&mut f, "control_socket");
        let user = self.string(&mut f, "user");
        let group = self.string(&mut f, "group");
        let web = self.web(&mut f, dir);
        DaemonConfig {
            log_level,
            log_format: log_format.map_or(LogFormat::Text, |v| v.into_inner()),
            log_file: log_file.map(|v| dir.join(v.into_inner())),
            log_rotation: log_rotation.map_or(Rotation::Never, |v| v.into_inner()),
            drain_timeout,
            control_socket: control_socket.map(|v| dir.join(v.into_inner())),
            metrics,
            toxiproxy_api,
            user: user.map(|v| v.into_inner()),
            group: group.map(|v| v.into_inner()),
            web,
        }
    }

    /// Read one `[[listener]]` table's keys, each on its own.
    fn read_listener(&mut self, f: &mut Fields<'_>) -> FileListener {
        self.require(
            f,
            &[
                ("name", "a string"),
                ("protocol", "\"tcp\" or \"udp\""),
                ("ip", "an IPv4 or IPv6 address, like \"127.0.0.1\""),
                ("port", "a whole number from 0 to 65535"),
                ("handlers", "a list of handler names, like [\"echo\"]"),
            ],
        );
        let framings = [("raw", Framing::Raw), ("line", Framing::Line)];
        FileListener {
            name: self.string(f, "name"),
            protocol: self
                .choice(f, "protocol", PROTOCOLS)
                .map(|p| p.into_inner()),
            ip: self.string(f, "ip"),
            port: self.integer(f, "port", IntRange::PORT),
            backlog: self.integer(f, "backlog", IntRange::U32_POSITIVE),
            framing: self.choice(f, "framing", &framings),
            handlers: self.strings(f, "handlers"),
            idle_timeout: self.duration_text(f, "idle_timeout"),
            max_message: self.integer(f, "max_message", IntRange::BYTES),
            max_output: self.integer(f, "max_output", IntRange::BYTES),
            reuse_port: self.boolean(f, "reuse_port"),
            once: self.boolean(f, "once"),
            loss: self.number(f, "loss", 0.0, 1.0),
            duplicate: self.number(f, "duplicate", 0.0, 1.0),
            delay: self.duration_text(f, "delay"),
            seed: self.integer(f, "seed", IntRange::U64),
            allow: self.strings(f, "allow").map(|v| v.into_inner()),
            deny: self.strings(f, "deny").map(|v| v.into_inner()),
            max_connections: self.integer(f, "max_connections", IntRange::COUNT),
            max_per_ip: self.integer(f, "max_per_ip", IntRange::COUNT),
            accept_rate: self.number(f, "accept_rate", 0.0, f64::INFINITY),
            accept_burst: self.integer(f, "accept_burst", IntRange::U32_POSITIVE),
            busy_message: self.string(f, "busy_message"),
            too_long_reply: self.string(f, "too_long_reply"),
            write_timeout: self.duration_text(f, "write_timeout"),
            message_timeout: self.duration_text(f, "message_timeout"),
            udp_blocked_ports: self.integers(f, "udp_blocked_ports", IntRange::PORT),
            reply_rate: self.number(f, "reply_rate", 0.0, f64::INFINITY),
            reply_burst: self.integer(f, "reply_burst", IntRange::U32_POSITIVE),
            reply_mode: self.choice(f, "reply_mode", REPLY_MODES),
            transcripts: self.string(f, "transcripts"),
            max_transcript: self.integer(f, "max_transcript", IntRange::TRANSCRIPT),
        }
    }

    fn listener(
        &mut self,
        index: usize,
        entry: Value<'_>,
        names: &mut HashSet<String>,
        registry: &Registry,
        env: &dyn BuildEnv,
        dir: &Path,
    ) -> Option<ListenerConfig> {
        let span = entry.span();
        let DeValue::Table(table) = entry.into_inner() else {
            self.error(
                Some(span),
                Some(format!("listener #{}", index + 1)),
                "expected a table: write each listener under a `[[listener]]` line",
            );
            return None;
        };
        let named = table
            .iter()
            .find(|(k, _)| k.get_ref() == "name")
            .and_then(|(_, n)| n.get_ref().as_str())
            .filter(|n| !n.trim().is_empty());
        let label = match named {
            Some(n) => format!("listener {n:?}"),
            None => format!("listener #{}", index + 1),
        };
        // A handler's settings are a table named after it; the rest are the listener's keys.
        let mut tables: Vec<(String, Value<'_>)> = Vec::new();
        let mut rest = DeTable::new();
        for (k, v) in table {
            if registry.contains(k.get_ref()) && v.get_ref().is_table() {
                tables.push((k.get_ref().to_string(), v));
            } else {
                rest.insert(k, v);
            }
        }
        let handler_names: Vec<&str> = registry.names().collect();
        let mut f = self.fields(&label, span.clone(), rest, LISTENER_KEYS, &handler_names);
        let record = self.record(&mut f, env.dir().as_deref().unwrap_or(Path::new(".")));
        let l = self.read_listener(&mut f);
        let tls = self.tls(&mut f, l.protocol, dir);
        let proxy = self.proxy_protocol(&mut f, l.protocol);
        let key = |k: &str| Some(f.key(k));
        if let Some(name) = &l.name {
            if name.get_ref().trim().is_empty() {
                self.error(Some(name.span()), key("name"), "the name must not be empty");
            } else if !names.insert(name.get_ref().clone()) {
                self.error(
                    Some(name.span()),
                    key("name"),
                    "another listener has this name; names must be unique",
                );
            }
        }
        let ip: Option<IpAddr> = l.ip.as_ref().and_then(|ip| match ip.get_ref().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(Some(ip.span()), key("ip"), format!("{:?} is not an IPv4 or IPv6 address (write e.g. \"127.0.0.1\", \"0.0.0.0\" or \"::1\"; host names are not resolved)", ip.get_ref()));
                None
            }
        });
        let udp = l.protocol == Some(Proto::Udp);
        if let (Some(b), true) = (&l.backlog, udp) {
            self.error(
                Some(b.span()),
                key("backlog"),
                "backlog applies to TCP listeners only; remove it",
            );
        }
        if let (Some(fr), true) = (&l.framing, udp)
            && *fr.get_ref() == Framing::Line
        {
            self.error(
                Some(fr.span()),
                key("framing"),
                "UDP has no stream to frame: each datagram is one message; remove framing",
            );
        }
        if let Some(fr) = &l.framing
            && *fr.get_ref() == Framing::Line
            && l.handlers
                .as_ref()
                .is_some_and(|h| h.get_ref().iter().any(|n| n.get_ref() == "forward"))
        {
            self.error(
                Some(fr.span()),
                key("framing"),
                "forward relays bytes as they are: use framing = \"raw\" (the default)",
            );
        }
        // UDP sessions expire by default (a UDP peer never says it left); "0" turns it off.
        let idle_timeout = match &l.idle_timeout {
            Some(v) => self
                .duration(v, f.key("idle_timeout"))
                .filter(|d| !d.is_zero()),
            None if udp => Some(DEFAULT_UDP_IDLE_TIMEOUT),
            None => None,
        };
        let faults = self.faults(&mut f, &l, l.protocol);
        let limits = self.limits(&l, f.label());
        let (reply_mode, transcripts) = self.desk(&l, &f, dir);
        let (handler_names, built) = self.chain(&l, tables, &f, registry, env);
        let (handlers, handler_sources) = built?;
        let (name, proto, ip, port) = (l.name?, l.protocol?, ip?, l.port?);
        Some(ListenerConfig {
            name: Arc::from(name.get_ref().as_str()),
            proto,
            addr: SocketAddr::new(ip, *port.get_ref()),
            backlog: l.backlog.map_or(DEFAULT_BACKLOG, |b| b.into_inner()),
            framing: l.framing.map_or(Framing::Raw, |f| f.into_inner()),
            handler_names,
            handlers,
            handler_sources,
            idle_timeout,
            max_message: l
                .max_message
                .map_or(DEFAULT_MAX_MESSAGE, |v| v.into_inner()),
            max_output: l.max_output.map_or(DEFAULT_MAX_OUTPUT, |v| v.into_inner()),
            reuse_port: l.reuse_port.is_some_and(|v| *v.get_ref()),
            once: l.once.is_some_and(|v| *v.get_ref()),
            faults,
            limits,
            tls,
            proxy,
            reply_mode,
            transcripts,
            record: record.map(Arc::new),
        })
    }
}

/// Where a table header like `[listener]` is written, for errors about the header itself.
fn span_of_header(text: &str, header: &str) -> Option<Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(header) {
            let start = offset + (line.len() - trimmed.len());
            return Some(start..start + header.len());
        }
        offset += line.len();
    }
    None
}
