//! The Prometheus endpoint's I/O: plain HTTP `GET /metrics`, one response per connection,
//! served by the loop. Bounded: at most [`MAX_SCRAPERS`] connections at once (more wait in
//! the listen backlog until one leaves), a request head of at most [`MAX_REQUEST`] bytes
//! (else 431), and [`SCRAPE_TIMEOUT`] to send it and read the answer (then the connection
//! is dropped).

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use tracing::{debug, info, warn};

use super::tokens::{Owner, Tokens};
use super::transport::write_some;

/// Largest HTTP request head read before answering 431.
const MAX_REQUEST: usize = 8 * 1024;
/// Scrapers served at once.
pub(crate) const MAX_SCRAPERS: usize = 16;
/// How long a scraper has for its request and the response.
pub(crate) const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Scraper {
    stream: TcpStream,
    token: Token,
    /// When it connected: a timer drops it after [`SCRAPE_TIMEOUT`].
    since: Instant,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
}

/// What a scraper's readiness led to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Waiting for more of the request, or for the socket to take the response.
    Wait,
    /// The request is complete and asks for the metrics: call [`Metrics::respond`] with
    /// them.
    WantsMetrics,
    /// Done (answered, failed or gone): it was dropped.
    Done,
}

/// The metrics endpoint.
#[derive(Debug)]
pub(crate) struct Metrics {
    listener: TcpListener,
    scrapers: Slab<Scraper>,
    /// Accepting stopped at [`MAX_SCRAPERS`]; resumes when one leaves.
    full: bool,
}

impl Metrics {
    pub(crate) fn bind(
        addr: SocketAddr,
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> anyhow::Result<Metrics> {
        let mut listener = TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {addr}: {e}"))?;
        let token = tokens.add(Owner::Metrics);
        registry.register(&mut listener, token, Interest::READABLE)?;
        info!(event = "metrics_listening", addr = %listener.local_addr()?, "metrics listening");
        Ok(Metrics {
            listener,
            scrapers: Slab::new(),
            full: false,
        })
    }

    /// Accept scrapers; returns the new ones, to be served at once and timed, and false when
    /// it ran out of file descriptors (the caller retries later).
    pub(crate) fn accept(
        &mut self,
        registry: &Registry,
        tokens: &mut Tokens,
        now: Instant,
    ) -> (Vec<usize>, bool) {
        let mut new = Vec::new();
        loop {
            if self.scrapers.len() >= MAX_SCRAPERS {
                if !self.full {
                    self.full = true;
                    warn!(
                        event = "scrapers_full",
                        max = MAX_SCRAPERS,
                        "metrics: too many scrapers at once; the others wait until one leaves"
                    );
                }
                return (new, true);
            }
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let key = self.scrapers.vacant_key();
                    let token = tokens.add(Owner::Scraper(key));
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        tokens.remove(token);
                        continue;
                    }
                    self.scrapers.insert(Scraper {
                        stream,
                        token,
                        since: now,
                        request: Vec::new(),
                        response: Vec::new(),
                        written: 0,
                    });
                    new.push(key);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (new, true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if super::tcp::is_fd_exhaustion(&e) => {
                    warn!(event = "accept_paused", socket = "metrics", error = %e,
                        "metrics: out of file descriptors; retrying shortly");
                    return (new, false);
                }
                Err(e) => {
                    warn!(error = %e, "metrics: accept failed");
                    return (new, true);
                }
            }
        }
    }

    /// Read the request head, or write the response.
    pub(crate) fn ready(&mut self, key: usize, registry: &Registry, tokens: &mut Tokens) -> Step {
        let Some(s) = self.scrapers.get_mut(key) else {
            return Step::Done;
        };
        if !s.response.is_empty() {
            return self.write(key, registry, tokens);
        }
        let mut buf = [0u8; 2048];
        loop {
            match s.stream.read(&mut buf) {
                Ok(0) => return self.close(key, registry, tokens),
                Ok(n) => s.request.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(key, registry, tokens),
            }
            if s.request.len() > MAX_REQUEST {
                break;
            }
        }
        if s.request.len() > MAX_REQUEST {
            s.response = response("431 Request Header Fields Too Large", "");
            return self.write(key, registry, tokens);
        }
        if memchr::memmem::find(&s.request, b"\r\n\r\n").is_none() {
            return Step::Wait;
        }
        let line = s.request.split(|&b| b == b'\r').next().unwrap_or_default();
        let mut parts = line.split(|&b| b == b' ');
        match (parts.next(), parts.next()) {
            (Some(b"GET"), Some(b"/metrics")) => Step::WantsMetrics,
            (Some(b"GET"), _) => {
                s.response = response("404 Not Found", "only /metrics is served here\n");
                self.write(key, registry, tokens)
            }
            _ => {
                s.response = response("405 Method Not Allowed", "GET only\n");
                self.write(key, registry, tokens)
            }
        }
    }

    /// Answer a complete `GET /metrics` with `body`.
    pub(crate) fn respond(
        &mut self,
        key: usize,
        body: &str,
        registry: &Registry,
        tokens: &mut Tokens,
    ) {
        if let Some(s) = self.scrapers.get_mut(key) {
            s.response = response("200 OK", body);
            self.write(key, registry, tokens);
        }
    }

    fn write(&mut self, key: usize, registry: &Registry, tokens: &mut Tokens) -> Step {
        let s = &mut self.scrapers[key];
        match write_some(&mut s.stream, &s.response[s.written..]) {
            Ok(n) => s.written += n,
            Err(e) => {
                debug!(error = %e, "metrics: write failed");
                return self.close(key, registry, tokens);
            }
        }
        if s.written < s.response.len() {
            let _ = registry.reregister(
                &mut s.stream,
                s.token,
                Interest::READABLE | Interest::WRITABLE,
            );
            return Step::Wait;
        }
        self.close(key, registry, tokens)
    }

    /// Drop a scraper that is still there after [`SCRAPE_TIMEOUT`] from `since`.
    pub(crate) fn expire(
        &mut self,
        key: usize,
        since: Instant,
        registry: &Registry,
        tokens: &mut Tokens,
    ) {
        if self.scrapers.get(key).is_some_and(|s| s.since == since) {
            debug!(
                event = "scraper_timeout",
                "metrics: scraper too slow; dropped"
            );
            self.close(key, registry, tokens);
        }
    }

    fn close(&mut self, key: usize, registry: &Registry, tokens: &mut Tokens) -> Step {
        if let Some(mut s) = self.scrapers.try_remove(key) {
            let _ = registry.deregister(&mut s.stream);
            tokens.remove(s.token);
        }
        Step::Done
    }

    /// Accepting stopped at the cap and a place is free again: the connections waiting in
    /// the backlog bring no new readiness edge, so the caller accepts now.
    pub(crate) fn has_room_again(&mut self) -> bool {
        let again = self.full && self.scrapers.len() < MAX_SCRAPERS;
        if again {
            self.full = false;
        }
        again
    }
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl super::Daemon {
    /// Take new scrapers; a full table or a failed accept is retried later.
    pub(super) fn metrics_accept(&mut self) {
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        let (new, ok) = m.accept(self.poll.registry(), &mut self.tokens, self.now);
        if !ok {
            self.timers.push(
                self.now + super::tcp::ACCEPT_RETRY,
                super::ShellDue::RetryMetrics,
            );
        }
        for key in new {
            self.timers.push(
                self.now + SCRAPE_TIMEOUT,
                super::ShellDue::Scraper(key, self.now),
            );
            self.scraper_ready(key);
        }
    }

    pub(super) fn scraper_ready(&mut self, key: usize) {
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        if m.ready(key, self.poll.registry(), &mut self.tokens) == Step::WantsMetrics {
            let body = self.core.prometheus();
            if let Some(m) = self.metrics.as_mut() {
                m.respond(key, &body, self.poll.registry(), &mut self.tokens);
            }
        }
        if self.metrics.as_mut().is_some_and(|m| m.has_room_again()) {
            self.metrics_accept();
        }
    }
}
