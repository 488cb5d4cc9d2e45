//! Counters per listener, shown three ways: logged on SIGUSR1, answered to `switchboard
//! status`, and rendered as Prometheus text for `[daemon] metrics`. Pure rendering: the shell
//! serves the text.
//!
//! Traffic counts live in each session and are added to its listener when it ends, so the
//! hot path only bumps the session's own counters; a render adds the open sessions' counts.
//! Rows are per listener name (and protocol): a listener that a reload moved (same name, new address) and
//! its retiring predecessor are one row, so a scrape never holds the same series twice, and
//! the counters of a removed row carry over to the live listener of its name.

use std::fmt::Write as _;
use std::net::SocketAddr;

use slab::Slab;

use super::listeners::Listener;
use super::session::{Counts, Session};

/// Counters of one listener.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stats {
    pub(crate) opened: u64,
    pub(crate) closed: u64,
    pub(crate) errors: u64,
    /// Sessions or datagrams turned away (access rules, limits).
    pub(crate) refused: u64,
    /// Connections whose TLS handshake or PROXY header failed or timed out.
    pub(crate) handshakes_failed: u64,
    /// Traffic of sessions that have ended.
    pub(crate) traffic: Counts,
}

impl Stats {
    pub(crate) fn add(&mut self, c: &Counts) {
        self.traffic.bytes_in += c.bytes_in;
        self.traffic.bytes_out += c.bytes_out;
        self.traffic.msgs_in += c.msgs_in;
        self.traffic.msgs_out += c.msgs_out;
    }

    /// Add another row's counters (a predecessor of the same name).
    pub(crate) fn merge(&mut self, o: &Stats) {
        self.opened += o.opened;
        self.closed += o.closed;
        self.errors += o.errors;
        self.refused += o.refused;
        self.handshakes_failed += o.handshakes_failed;
        self.add(&o.traffic);
    }
}

/// One listener name's figures, open sessions included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) proto: &'static str,
    /// The address of the serving listener of this name (or the last one).
    pub(crate) addr: SocketAddr,
    pub(crate) serving: bool,
    pub(crate) active: usize,
    pub(crate) stats: Stats,
}

impl super::Core {
    /// Status lines for the log and `switchboard status`.
    pub(crate) fn status_lines(&self) -> Vec<String> {
        let rows = rows(&self.listeners, &self.sessions);
        let open = self.sessions.iter().filter(|(_, s)| s.is_live()).count();
        status_lines(&rows, open, self.console.attached())
    }

    /// Log the status (SIGUSR1).
    pub(crate) fn log_status(&self) {
        for line in self.status_lines() {
            tracing::info!(event = "status", "{line}");
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn prometheus(&self) -> String {
        prometheus(&rows(&self.listeners, &self.sessions))
    }
}

/// The rows, one per listener name and protocol, in the order they first appear.
pub(crate) fn rows(listeners: &Slab<Listener>, sessions: &Slab<Session>) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut row_of = vec![usize::MAX; listeners.capacity()];
    for (id, l) in listeners {
        let proto = l.cfg.proto.as_str();
        let i = match rows
            .iter()
            .position(|r| r.name == l.name() && r.proto == proto)
        {
            Some(i) => i,
            None => {
                rows.push(Row {
                    name: l.name().to_string(),
                    proto,
                    addr: l.local,
                    serving: false,
                    active: 0,
                    stats: Stats::default(),
                });
                rows.len() - 1
            }
        };
        row_of[id] = i;
        let r = &mut rows[i];
        if l.is_serving() {
            r.serving = true;
            r.addr = l.local;
        }
        r.active += l.active;
        r.stats.merge(&l.stats);
    }
    for (_, s) in sessions {
        if s.is_live()
            && let Some(&i) = row_of.get(s.listener.0)
        {
            rows[i].stats.add(&s.counts);
        }
    }
    rows
}

/// One line per listener name, for the log and `switchboard status`.
pub(crate) fn status_lines(rows: &[Row], sessions: usize, operators: usize) -> Vec<String> {
    let mut lines = vec![format!(
        "switchboard {}: {sessions} session(s) open, {operators} operator(s) attached",
        env!("CARGO_PKG_VERSION"),
    )];
    for r in rows {
        let t = r.stats.traffic;
        lines.push(format!(
            "{} {}/{} {}: active {} opened {} closed {} refused {} errors {} handshakes failed {} messages in {} out {} bytes in {} out {}",
            r.name,
            r.addr,
            r.proto,
            if r.serving { "serving" } else { "stopped" },
            r.active,
            r.stats.opened,
            r.stats.closed,
            r.stats.refused,
            r.stats.errors,
            r.stats.handshakes_failed,
            t.msgs_in,
            t.msgs_out,
            t.bytes_in,
            t.bytes_out
        ));
    }
    lines
}

/// The Prometheus text exposition.
pub(crate) fn prometheus(rows: &[Row]) -> String {
    type Value = fn(&Row) -> u64;
    const METRICS: [(&str, &str, &str, Value); 11] = [
        ("sessions_active", "gauge", "Sessions open now.", |r| {
            r.active as u64
        }),
        (
            "sessions_opened_total",
            "counter",
            "Sessions opened.",
            |r| r.stats.opened,
        ),
        (
            "sessions_closed_total",
            "counter",
            "Sessions closed.",
            |r| r.stats.closed,
        ),
        (
            "sessions_refused_total",
            "counter",
            "Sessions or datagrams refused by access rules or limits.",
            |r| r.stats.refused,
        ),
        (
            "errors_total",
            "counter",
            "Sessions ended by an error.",
            |r| r.stats.errors,
        ),
        (
            "handshakes_failed_total",
            "counter",
            "Connections closed because their TLS handshake or PROXY header failed or timed out.",
            |r| r.stats.handshakes_failed,
        ),
        ("messages_in_total", "counter", "Messages received.", |r| {
            r.stats.traffic.msgs_in
        }),
        ("messages_out_total", "counter", "Messages sent.", |r| {
            r.stats.traffic.msgs_out
        }),
        ("bytes_in_total", "counter", "Bytes received.", |r| {
            r.stats.traffic.bytes_in
        }),
        ("bytes_out_total", "counter", "Bytes sent.", |r| {
            r.stats.traffic.bytes_out
        }),
        (
            "listener_up",
            "gauge",
            "1 while the listener accepts.",
            |r| u64::from(r.serving),
        ),
    ];
    let mut s = String::new();
    for (name, kind, help, value) in METRICS {
        let _ = writeln!(
            s,
            "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} {kind}"
        );
        for r in rows {
            let _ = writeln!(
                s,
                "switchboard_{name}{{listener=\"{}\",proto=\"{}\"}} {}",
                r.name.replace('\\', "\\\\").replace('"', "\\\""),
                r.proto,
                value(r)
            );
        }
    }
    s
}
