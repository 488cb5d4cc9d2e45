//! Counters per listener, shown three ways: logged on SIGUSR1, answered to `switchboard
//! status`, and served as Prometheus text on `[daemon] metrics` (plain HTTP GET /metrics,
//! served by the same loop, bounded request size, one response per connection).
//!
//! Traffic counts live in each session and are added to its listener when it ends, so the
//! hot path only bumps the session's own counters; a scrape adds the open sessions' counts.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use tracing::{debug, info, warn};

use super::{Counts, Daemon};

pub(super) const METRICS: Token = Token(usize::MAX - 4);
pub(super) const METRICS_BASE: usize = 1 << 42;
/// Largest HTTP request head read before answering 431.
const MAX_REQUEST: usize = 8 * 1024;

/// Counters of one listener.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stats {
    pub(super) opened: u64,
    pub(super) closed: u64,
    pub(super) errors: u64,
    /// Sessions or datagrams turned away (access rules, limits).
    pub(super) refused: u64,
    /// Traffic of sessions that have ended.
    pub(super) traffic: Counts,
}

impl Stats {
    pub(super) fn add(&mut self, c: &Counts) {
        self.traffic.bytes_in += c.bytes_in;
        self.traffic.bytes_out += c.bytes_out;
        self.traffic.msgs_in += c.msgs_in;
        self.traffic.msgs_out += c.msgs_out;
    }
}

#[derive(Debug)]
struct HttpConn {
    stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
}

/// The metrics endpoint.
#[derive(Debug)]
pub(super) struct MetricsServer {
    listener: TcpListener,
    conns: Slab<HttpConn>,
}

impl MetricsServer {
    pub(super) fn bind(addr: SocketAddr, registry: &Registry) -> anyhow::Result<MetricsServer> {
        let mut listener = TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {addr}: {e}"))?;
        registry.register(&mut listener, METRICS, Interest::READABLE)?;
        info!(addr = %listener.local_addr()?, "metrics listening");
        Ok(MetricsServer {
            listener,
            conns: Slab::new(),
        })
    }
}

/// One listener's figures, open sessions included.
struct Row<'a> {
    name: &'a str,
    proto: &'static str,
    addr: SocketAddr,
    serving: bool,
    active: usize,
    stats: Stats,
}

impl Daemon {
    fn rows(&self) -> Vec<Row<'_>> {
        let mut rows: Vec<Row<'_>> = self
            .listeners
            .iter()
            .map(|l| Row {
                name: &l.cfg.name,
                proto: l.cfg.proto.as_str(),
                addr: l.local,
                serving: l.socket.is_some() && !l.retiring,
                active: l.active,
                stats: l.stats,
            })
            .collect();
        for (_, c) in self.sessions.iter() {
            if !c.ended {
                rows[c.listener].stats.add(&c.counts);
            }
        }
        rows
    }

    /// One line per listener, for the log and `switchboard status`.
    pub(super) fn status_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "switchboard {}: {} session(s) open, {} operator(s) attached",
            env!("CARGO_PKG_VERSION"),
            self.sessions.iter().filter(|(_, c)| !c.ended).count(),
            self.operators.attached()
        )];
        for r in self.rows() {
            let t = r.stats.traffic;
            lines.push(format!(
                "{} {}/{} {}: active {} opened {} closed {} refused {} errors {} messages in {} out {} bytes in {} out {}",
                r.name,
                r.addr,
                r.proto,
                if r.serving { "serving" } else { "stopped" },
                r.active,
                r.stats.opened,
                r.stats.closed,
                r.stats.refused,
                r.stats.errors,
                t.msgs_in,
                t.msgs_out,
                t.bytes_in,
                t.bytes_out
            ));
        }
        lines
    }

    /// Log the status (SIGUSR1).
    pub(super) fn log_status(&self) {
        for line in self.status_lines() {
            info!("{line}");
        }
    }

    /// The Prometheus text exposition.
    pub(super) fn prometheus(&self) -> String {
        let rows = self.rows();
        let mut s = String::new();
        let metric = |s: &mut String,
                      name: &str,
                      kind: &str,
                      help: &str,
                      value: &dyn Fn(&Row<'_>) -> u64| {
            let _ = writeln!(
                s,
                "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} {kind}"
            );
            for r in &rows {
                let _ = writeln!(
                    s,
                    "switchboard_{name}{{listener=\"{}\",proto=\"{}\"}} {}",
                    r.name.replace('\\', "\\\\").replace('"', "\\\""),
                    r.proto,
                    value(r)
                );
            }
        };
        metric(
            &mut s,
            "sessions_active",
            "gauge",
            "Sessions open now.",
            &|r| r.active as u64,
        );
        metric(
            &mut s,
            "sessions_opened_total",
            "counter",
            "Sessions opened.",
            &|r| r.stats.opened,
        );
        metric(
            &mut s,
            "sessions_closed_total",
            "counter",
            "Sessions closed.",
            &|r| r.stats.closed,
        );
        metric(
            &mut s,
            "sessions_refused_total",
            "counter",
            "Sessions or datagrams refused by access rules or limits.",
            &|r| r.stats.refused,
        );
        metric(
            &mut s,
            "errors_total",
            "counter",
            "Sessions ended by an error.",
            &|r| r.stats.errors,
        );
        metric(
            &mut s,
            "messages_in_total",
            "counter",
            "Messages received.",
            &|r| r.stats.traffic.msgs_in,
        );
        metric(
            &mut s,
            "messages_out_total",
            "counter",
            "Messages sent.",
            &|r| r.stats.traffic.msgs_out,
        );
        metric(
            &mut s,
            "bytes_in_total",
            "counter",
            "Bytes received.",
            &|r| r.stats.traffic.bytes_in,
        );
        metric(&mut s, "bytes_out_total", "counter", "Bytes sent.", &|r| {
            r.stats.traffic.bytes_out
        });
        metric(
            &mut s,
            "listener_up",
            "gauge",
            "1 while the listener accepts.",
            &|r| u64::from(r.serving),
        );
        s
    }

    /// Accept scrapers.
    pub(super) fn metrics_accept(&mut self) {
        loop {
            let Some(server) = self.metrics.as_mut() else {
                return;
            };
            match server.listener.accept() {
                Ok((mut stream, _)) => {
                    let key = server.conns.vacant_key();
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, Token(METRICS_BASE + key), Interest::READABLE)
                        .is_ok()
                    {
                        server.conns.insert(HttpConn {
                            stream,
                            request: Vec::new(),
                            response: Vec::new(),
                            written: 0,
                        });
                        self.metrics_ready(key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(error = %e, "metrics: accept failed");
                    return;
                }
            }
        }
    }

    /// Read the request head, answer once, close.
    pub(super) fn metrics_ready(&mut self, key: usize) {
        let Some(server) = self.metrics.as_mut() else {
            return;
        };
        let Some(conn) = server.conns.get_mut(key) else {
            return;
        };
        if conn.response.is_empty() {
            let mut buf = [0u8; 2048];
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => {
                        self.metrics_close(key);
                        return;
                    }
                    Ok(n) => conn.request.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.metrics_close(key);
                        return;
                    }
                }
                if conn.request.len() > MAX_REQUEST {
                    break;
                }
            }
            let complete = memchr::memmem::find(&conn.request, b"\r\n\r\n").is_some();
            let (status, body) = if conn.request.len() > MAX_REQUEST {
                ("431 Request Header Fields Too Large", String::new())
            } else if !complete {
                return;
            } else {
                let line = conn
                    .request
                    .split(|&b| b == b'\r')
                    .next()
                    .unwrap_or_default();
                let mut parts = line.split(|&b| b == b' ');
                match (parts.next(), parts.next()) {
                    (Some(b"GET"), Some(b"/metrics")) => ("200 OK", String::new()),
                    (Some(b"GET"), _) => (
                        "404 Not Found",
                        "only /metrics is served here\n".to_string(),
                    ),
                    _ => ("405 Method Not Allowed", "GET only\n".to_string()),
                }
            };
            let body = if status.starts_with("200") {
                self.prometheus()
            } else {
                body
            };
            let Some(conn) = self.metrics.as_mut().and_then(|m| m.conns.get_mut(key)) else {
                return;
            };
            conn.response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes();
        }
        let Some(conn) = self.metrics.as_mut().and_then(|m| m.conns.get_mut(key)) else {
            return;
        };
        while conn.written < conn.response.len() {
            match conn.stream.write(&conn.response[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = self.poll.registry().reregister(
                        &mut conn.stream,
                        Token(METRICS_BASE + key),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(error = %e, "metrics: write failed");
                    break;
                }
            }
        }
        self.metrics_close(key);
    }

    fn metrics_close(&mut self, key: usize) {
        if let Some(server) = self.metrics.as_mut()
            && let Some(mut conn) = server.conns.try_remove(key)
        {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }
}
