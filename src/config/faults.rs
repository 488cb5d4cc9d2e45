//! `[[listener.fault]]`: a listener's faults, each key checked on its own; the old UDP keys
//! (`loss`, `duplicate`, `delay`) read as the faults they are. The same reader takes a fault
//! given at run time (`switchboard fault add`), written as `key=value` words.

use std::path::Path;
use std::time::Duration;

use switchboard_handlers::Proto;
use switchboard_handlers::settings::hint;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::read::{Fields, IntRange, Value};
use super::validate::{FileListener, Validator};
use super::{ConfigError, ConfigErrors};
use crate::acl::Cidr;
use crate::faults::{Counts, Direction, Fault, KINDS, Kind};

/// A listener's faults and the seed of their draws.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    /// Seed of the random draws (`seed`, default 0).
    pub seed: u64,
    /// In the order they apply.
    pub list: Vec<Fault>,
}

impl Faults {
    /// Whether any fault is declared.
    pub fn any(&self) -> bool {
        !self.list.is_empty()
    }
}

/// Default `reorder` delay.
pub(super) const DEFAULT_REORDER_DELAY: Duration = Duration::from_millis(100);
/// Default `slicer` settings.
pub(super) const DEFAULT_SLICE: (usize, usize, Duration) = (64, 32, Duration::from_millis(10));

const COMMON: &[&str] = &[
    "name",
    "kind",
    "direction",
    "toxicity",
    "sources",
    "sessions",
    "messages",
    "after",
    "for",
];

/// The settings each kind takes, beyond the common ones.
fn settings_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "latency" => &["latency", "jitter"],
        "delay" => &["delay", "jitter"],
        "bandwidth" => &["rate"],
        "slicer" => &["average_size", "size_variation", "delay"],
        "slow_close" => &["delay"],
        "reset_peer" => &["timeout", "bytes"],
        "timeout" => &["timeout"],
        "limit_data" => &["bytes"],
        "corrupt" | "loss" | "duplicate" => &["probability"],
        "reorder" => &["probability", "delay"],
        _ => &[],
    }
}

const ALL_SETTINGS: &[&str] = &[
    "latency",
    "jitter",
    "rate",
    "average_size",
    "size_variation",
    "delay",
    "timeout",
    "bytes",
    "probability",
];

impl Validator<'_> {
    /// The listener's faults: `[[listener.fault]]` tables, and the old UDP keys.
    pub(super) fn faults(
        &mut self,
        f: &mut Fields<'_>,
        l: &FileListener,
        proto: Option<Proto>,
    ) -> Faults {
        let mut faults = Faults {
            seed: l.seed.as_ref().map_or(0, |s| *s.get_ref()),
            list: Vec::new(),
        };
        let label = f.key("fault");
        let old: [(&str, Option<std::ops::Range<usize>>); 3] = [
            ("loss", l.loss.as_ref().map(|v| v.span())),
            ("duplicate", l.duplicate.as_ref().map(|v| v.span())),
            ("delay", l.delay.as_ref().map(|v| v.span())),
        ];
        if proto == Some(Proto::Tcp) {
            for (key, span) in old {
                if span.is_some() {
                    self.error(
                        span,
                        Some(f.key(key)),
                        format!(
                            "`{key}` is a UDP fault; on TCP declare a fault table instead, e.g. \
                             [[listener.fault]] kind = \"latency\" latency = \"200ms\" (kinds: {})",
                            tcp_kinds()
                        ),
                    );
                }
            }
        } else {
            if let Some(p) = &l.loss {
                faults.list.push(Fault::new(
                    Kind::Loss {
                        probability: *p.get_ref(),
                    },
                    Direction::ToClient,
                ));
            }
            if let Some(p) = &l.duplicate {
                faults.list.push(Fault::new(
                    Kind::Duplicate {
                        probability: *p.get_ref(),
                    },
                    Direction::ToClient,
                ));
            }
            if let Some(d) = &l.delay
                && let Some(delay) = self.duration(d, f.key("delay"))
            {
                faults.list.push(Fault::new(
                    Kind::Latency {
                        latency: delay,
                        jitter: Duration::ZERO,
                    },
                    Direction::ToClient,
                ));
            }
        }
        let Some(v) = f.take_value("fault") else {
            return faults;
        };
        let span = v.span();
        let tables: Vec<Value<'_>> = match v.into_inner() {
            DeValue::Array(items) => items.into_iter().collect(),
            DeValue::Table(t) => {
                self.error(
                    Some(span.clone()),
                    Some(label.clone()),
                    "faults are a list: write `[[listener.fault]]` (two pairs of brackets) \
                     before each one",
                );
                vec![Spanned::new(span, DeValue::Table(t))]
            }
            _ => {
                self.error(
                    Some(span),
                    Some(label),
                    "expected `[[listener.fault]]` tables, one per fault",
                );
                return faults;
            }
        };
        for (i, t) in tables.into_iter().enumerate() {
            let span = t.span();
            let DeValue::Table(table) = t.into_inner() else {
                self.error(Some(span), Some(label.clone()), "expected a table");
                continue;
            };
            let mut ff = self.fault_fields(&format!("{label} #{}", i + 1), span.clone(), table);
            if let Some(fault) = self.fault(&mut ff, proto) {
                if faults.list.iter().any(|o| o.name == fault.name) {
                    self.error(
                        Some(span),
                        Some(ff.key("name")),
                        format!(
                            "another fault of this listener is named {:?}; names must be unique",
                            fault.name
                        ),
                    );
                    continue;
                }
                faults.list.push(fault);
            }
        }
        faults
    }

    fn fault_fields<'a>(
        &mut self,
        label: &str,
        span: std::ops::Range<usize>,
        table: DeTable<'a>,
    ) -> Fields<'a> {
        let known: Vec<&str> = COMMON.iter().chain(ALL_SETTINGS).copied().collect();
        self.fields(label, span, table, &known, &[])
    }

    /// One fault table.
    fn fault(&mut self, f: &mut Fields<'_>, proto: Option<Proto>) -> Option<Fault> {
        self.require(f, &[("kind", "one of the fault kinds")]);
        let kind_v = self.string(f, "kind")?;
        let kind = kind_v.get_ref().as_str();
        if !KINDS.contains(&kind) {
            self.error(
                Some(kind_v.span()),
                Some(f.key("kind")),
                format!(
                    "{kind:?} is not a fault kind; expected one of: {}{}",
                    KINDS.join(", "),
                    hint(kind, KINDS.iter().copied())
                ),
            );
            return None;
        }
        for key in ALL_SETTINGS {
            if f.has(key) && !settings_of(kind).contains(key) {
                let v = f.take_value(key).expect("has it");
                let takes = settings_of(kind).join(", ");
                self.error(
                    Some(v.span()),
                    Some(f.key(key)),
                    format!("a {kind:?} fault has no `{key}`; it takes: {takes}"),
                );
            }
        }
        let dirs = [
            ("to_client", Direction::ToClient),
            ("to_server", Direction::ToServer),
        ];
        let direction = self
            .choice(f, "direction", &dirs)
            .map_or(Direction::ToClient, |d| d.into_inner());
        let dur = |v: &mut Self, f: &mut Fields<'_>, key: &str| -> Option<Duration> {
            let t = v.duration_text(f, key)?;
            v.duration(&t, f.key(key))
        };
        let needed = |v: &mut Self, f: &Fields<'_>, key: &str, what: &str| {
            v.require(f, &[(key, what)]);
        };
        let probability = |v: &mut Self, f: &mut Fields<'_>| {
            needed(v, f, "probability", "a number from 0 to 1");
            v.number(f, "probability", 0.0, 1.0).map(|p| *p.get_ref())
        };
        let k = match kind {
            "latency" | "delay" => {
                needed(self, f, kind, "a duration, like \"200ms\"");
                Kind::Latency {
                    latency: dur(self, f, kind)?,
                    jitter: dur(self, f, "jitter").unwrap_or_default(),
                }
            }
            "bandwidth" => {
                needed(self, f, "rate", "bytes per second");
                Kind::Bandwidth {
                    rate: *self
                        .integer::<u64>(f, "rate", IntRange::U64_POSITIVE)?
                        .get_ref(),
                }
            }
            "slicer" => {
                let (avg, var, delay) = DEFAULT_SLICE;
                let size = |v: &mut Self, f: &mut Fields<'_>, key: &str, d: usize| {
                    v.integer::<usize>(f, key, IntRange::COUNT)
                        .map_or(d, |n| n.into_inner())
                };
                let average_size = size(self, f, "average_size", avg).max(1);
                let size_variation = size(self, f, "size_variation", var).min(average_size);
                Kind::Slicer {
                    average_size,
                    size_variation,
                    delay: dur(self, f, "delay").unwrap_or(delay),
                }
            }
            "slow_close" => {
                needed(self, f, "delay", "a duration, like \"2s\"");
                Kind::SlowClose {
                    delay: dur(self, f, "delay")?,
                }
            }
            "reset_peer" => Kind::ResetPeer {
                timeout: dur(self, f, "timeout").unwrap_or_default(),
                bytes: self
                    .integer::<u64>(f, "bytes", IntRange::U64_POSITIVE)
                    .map(|b| b.into_inner()),
            },
            "timeout" => Kind::Timeout {
                timeout: dur(self, f, "timeout").unwrap_or_default(),
            },
            "limit_data" => {
                needed(self, f, "bytes", "a number of bytes");
                Kind::LimitData {
                    bytes: *self.integer::<u64>(f, "bytes", IntRange::U64)?.get_ref(),
                }
            }
            "corrupt" => Kind::Corrupt {
                probability: probability(self, f)?,
            },
            "loss" => Kind::Loss {
                probability: probability(self, f)?,
            },
            "duplicate" => Kind::Duplicate {
                probability: probability(self, f)?,
            },
            "reorder" => Kind::Reorder {
                probability: probability(self, f)?,
                delay: dur(self, f, "delay").unwrap_or(DEFAULT_REORDER_DELAY),
            },
            _ => unreachable!("checked against KINDS"),
        };
        if let Some(p) = proto {
            let udp = p == Proto::Udp;
            if !k.fits(udp) || (kind == "delay" && !udp) {
                let (them, fits) = if udp {
                    ("UDP", kinds_for(true))
                } else {
                    ("TCP", kinds_for(false))
                };
                self.error(
                    Some(kind_v.span()),
                    Some(f.key("kind")),
                    format!("{kind:?} does not apply to {them}; {them} kinds: {fits}"),
                );
                return None;
            }
        }
        let mut fault = Fault::new(k, direction);
        if let Some(name) = self.string(f, "name") {
            if name.get_ref().trim().is_empty() {
                self.error(Some(name.span()), Some(f.key("name")), "must not be empty");
            } else {
                fault.name = name.into_inner();
            }
        }
        if let Some(t) = self.number(f, "toxicity", 0.0, 1.0) {
            fault.toxicity = *t.get_ref();
        }
        if let Some(list) = self.strings(f, "sources") {
            for s in list.get_ref() {
                match s.get_ref().parse::<Cidr>() {
                    Ok(c) => fault.sources.push(c),
                    Err(e) => self.error(Some(s.span()), Some(f.key("sources")), e.to_string()),
                }
            }
        }
        fault.sessions = self.counts(f, "sessions");
        fault.messages = self.counts(f, "messages");
        fault.after = dur(self, f, "after").unwrap_or_default();
        fault.lasts = dur(self, f, "for");
        Some(fault)
    }

    /// A range of counts: `"1..=2"`, `"3.."`, or a number.
    fn counts(&mut self, f: &mut Fields<'_>, key: &str) -> Option<Counts> {
        let v = f.take_value(key)?;
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => i.as_str().to_string(),
            _ => {
                self.error(
                    Some(v.span()),
                    Some(f.key(key)),
                    "expected a range of counts like \"1..=2\", \"3..\" or a number",
                );
                return None;
            }
        };
        match Counts::parse(&text) {
            Ok(c) => Some(c),
            Err(e) => {
                self.error(Some(v.span()), Some(f.key(key)), e);
                None
            }
        }
    }
}

fn tcp_kinds() -> String {
    kinds_for(false)
}

/// The kinds that apply to UDP (`udp`) or TCP, as a list for messages.
fn kinds_for(udp: bool) -> String {
    KINDS
        .iter()
        .copied()
        .filter(|k| match *k {
            "loss" | "duplicate" | "reorder" | "delay" => udp,
            "slicer" | "slow_close" | "reset_peer" | "limit_data" => !udp,
            _ => true,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One fault given at run time as `key=value` words (`kind=latency latency=200ms`), for a
/// listener of `proto`: read by the same rules as a `[[listener.fault]]` table.
pub fn parse_fault_words(words: &[&str], proto: Proto) -> Result<Fault, String> {
    let mut text = String::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("{w:?} is not key=value"));
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{k:?} is not a key"));
        }
        let value = match k {
            "toxicity" | "probability" | "rate" | "bytes" | "average_size" | "size_variation" => {
                v.to_string()
            }
            "sources" => format!(
                "[{}]",
                v.split(',')
                    .map(|s| toml_string(s.trim()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => toml_string(v),
        };
        text.push_str(&format!("{k} = {value}\n"));
    }
    parse_fault_text(&text, proto).map_err(|e| {
        e.0.iter()
            .map(|e| match &e.key {
                Some(k) => format!("{k}: {}", e.message),
                None => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One fault written as a TOML table's text.
pub fn parse_fault_text(text: &str, proto: Proto) -> Result<Fault, ConfigErrors> {
    let mut v = Validator {
        text,
        source: Path::new("<fault>"),
        errors: Vec::new(),
    };
    let fault = match DeTable::parse(text) {
        Ok(t) => {
            let span = t.span();
            let mut f = v.fault_fields("", span, t.into_inner());
            v.fault(&mut f, Some(proto))
        }
        Err(e) => {
            v.errors.push(ConfigError {
                file: "<fault>".into(),
                line: 0,
                column: 0,
                key: None,
                message: e.message().trim_end().to_string(),
            });
            None
        }
    };
    match fault {
        Some(f) if v.errors.is_empty() => Ok(f),
        _ => Err(ConfigErrors(v.errors)),
    }
}
