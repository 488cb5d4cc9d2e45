//! HTTP served by the loop, for any site of the daemon (the web console): a listening
//! socket and its connections, each reading one request and writing one answer, then
//! closed. No thread per client, and bounded: [`Limits`] caps the connections served at once
//! (more wait in the listen backlog until one leaves), the request head and body, and the time
//! a connection may take from accept to its last byte (the shell drops it then, with
//! [`Server::expire`]). The head is parsed with `httparse`; a body is read by its
//! `Content-Length` (no chunked bodies). A request may upgrade its connection (WebSocket): the
//! answer is written, then the socket leaves this table for its new owner.
//!
//! The site sees a [`Request`] and answers with a [`Response`]; what a site is, and how its
//! tokens are named, is up to the shell (`Owner::HttpConn(site, key)`).

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use tracing::{debug, warn};

use super::tokens::{Owner, Tokens};
use super::transport::write_some;

/// The sites served over HTTP: each names its listening socket and connections in the token
/// table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Site {
    /// The Prometheus endpoint (`http.rs`).
    Metrics,
    /// The toxiproxy API (`api/`).
    Api,
    /// The web console (`web/`).
    Web,
}

impl Site {
    /// The event logged when it is full.
    fn full_event(self) -> &'static str {
        match self {
            Site::Metrics => "scrapers_full",
            Site::Api => "api_full",
            Site::Web => "http_full",
        }
    }
}

/// What a server takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) conns: usize,
    /// Bytes of a request head (request line and headers); 431 past it.
    pub(crate) head: usize,
    /// Bytes of a request body; 413 past it.
    pub(crate) body: usize,
    /// From accept to the answer's last byte.
    pub(crate) timeout: Duration,
}

/// Headers read from a request, at most.
const MAX_HEADERS: usize = 48;

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// What follows `?`, if anything.
    pub(crate) query: Option<String>,
    /// Names lowercased, in order; values as sent (lossy UTF-8).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) peer: SocketAddr,
}

impl Request {
    /// The first header of this name (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of this header (any case).
    pub(crate) fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (`Connection`, `Upgrade`) lists `token` (any case).
    pub(crate) fn header_has(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// An empty answer with this status.
    pub(crate) fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Plain text.
    pub(crate) fn text(status: u16, body: &str) -> Response {
        Response::new(status).body("text/plain; charset=utf-8", body.as_bytes().to_vec())
    }

    /// Add a header.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Set the body and its type.
    pub(crate) fn body(self, content_type: &str, body: Vec<u8>) -> Response {
        let mut r = self.header("Content-Type", content_type);
        r.body = body;
        r
    }

    /// The bytes on the wire: the connection closes after them, unless it is upgraded (101).
    /// A 101 or a 204 has no body, and says no length.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            // A value is ours, but a newline in it must never start a header of its own.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !matches!(self.status, 101 | 204) {
            out.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n",
                self.body.len()
            ));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The reason phrase of a status.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// What the bytes read so far make.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not the whole request yet.
    Partial,
    /// A whole request.
    Complete(Request),
    /// Not one we take: answer this and close.
    Refused(u16),
}

/// Parse what a connection has sent so far.
pub(crate) fn parse(buf: &[u8], limits: &Limits, peer: SocketAddr) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= limits.head => n,
        Ok(httparse::Status::Complete(_)) => return Parsed::Refused(431),
        Ok(httparse::Status::Partial) if buf.len() > limits.head => return Parsed::Refused(431),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refused(431),
        Err(_) => return Parsed::Refused(400),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parsed::Refused(400);
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    // Bodies come with their length (no chunks): one way to frame them, no smuggling.
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Parsed::Refused(411);
    }
    let mut lengths = headers.iter().filter(|(n, _)| n == "content-length");
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some((_, v)), None) => match v.trim().parse::<usize>() {
            Ok(n) => n,
            Err(_) => return Parsed::Refused(400),
        },
        // Two lengths: a smuggling attempt or a broken client.
        (Some(_), Some(_)) => return Parsed::Refused(400),
    };
    if length > limits.body {
        return Parsed::Refused(413);
    }
    if buf.len() < head + length {
        return Parsed::Partial;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    Parsed::Complete(Request {
        method: method.to_string(),
        path,
        query,
        headers,
        body: buf[head..head + length].to_vec(),
        peer,
    })
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    token: Token,
    peer: SocketAddr,
    /// When it was accepted: the shell drops it [`Limits::timeout`] later.
    since: Instant,
    request: Vec<u8>,
    /// The answer, once there is one, and how much of it went.
    response: Vec<u8>,
    written: usize,
    /// Answered: what it sends now is not read.
    answered: bool,
    /// Hand the socket over once the answer is written.
    upgrade: bool,
}

/// What a connection's readiness led to.
#[derive(Debug)]
pub(crate) enum Step {
    /// Waiting for more of the request, or for the socket to take the answer.
    Wait,
    /// The request is complete: answer it with [`Server::respond`] or [`Server::upgrade`].
    Request(Request),
    /// Not a request the server takes (malformed, too big): answer this status with
    /// [`Server::respond`], in the site's own words.
    Refused(u16),
    /// The upgrade's answer went: the socket is the caller's now (deregistered, its token
    /// freed).
    Upgraded(TcpStream),
    /// Done (answered, failed or gone): it was dropped.
    Done,
}

/// A listening socket and its connections.
#[derive(Debug)]
pub(crate) struct Server {
    site: Site,
    listener: TcpListener,
    conns: Slab<Conn>,
    limits: Limits,
    /// Accepting stopped at the cap; resumes when a connection leaves.
    full: bool,
}

impl Server {
    /// Listen on `addr` for `site`.
    pub(crate) fn bind(
        addr: SocketAddr,
        site: Site,
        limits: Limits,
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> io::Result<Server> {
        let mut listener = TcpListener::bind(addr)?;
        let token = tokens.add(Owner::Http(site));
        if let Err(e) = registry.register(&mut listener, token, Interest::READABLE) {
            tokens.remove(token);
            return Err(e);
        }
        Ok(Server {
            site,
            listener,
            conns: Slab::new(),
            limits,
            full: false,
        })
    }

    /// What it takes.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept connections; returns the new ones (to be served at once and timed: each
    /// with its accept time) and false when it ran out of file descriptors (the caller
    /// retries later).
    pub(crate) fn accept(
        &mut self,
        registry: &Registry,
        tokens: &mut Tokens,
        now: Instant,
    ) -> (Vec<usize>, bool) {
        let mut new = Vec::new();
        loop {
            if self.conns.len() >= self.limits.conns {
                if !self.full {
                    self.full = true;
                    warn!(event = self.site.full_event(), site = ?self.site, max = self.limits.conns,
                        "too many HTTP connections at once; the others wait until one leaves");
                }
                return (new, true);
            }
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    let key = self.conns.vacant_key();
                    let token = tokens.add(Owner::HttpConn(self.site, key));
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        tokens.remove(token);
                        continue;
                    }
                    self.conns.insert(Conn {
                        stream,
                        token,
                        peer,
                        since: now,
                        request: Vec::new(),
                        response: Vec::new(),
                        written: 0,
                        answered: false,
                        upgrade: false,
                    });
                    new.push(key);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (new, true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if super::tcp::is_fd_exhaustion(&e) => {
                    warn!(event = "accept_paused", socket = "http", site = ?self.site, error = %e,
                        "HTTP: out of file descriptors; retrying shortly");
                    return (new, false);
                }
                Err(e) => {
                    warn!(error = %e, site = ?self.site, "HTTP: accept failed");
                    return (new, true);
                }
            }
        }
    }

    /// Read the request, or write the answer.
    pub(crate) fn ready(&mut self, key: usize, registry: &Registry, tokens: &mut Tokens) -> Step {
        let Some(c) = self.conns.get_mut(key) else {
            return Step::Done;
        };
        if c.answered {
            return self.write(key, registry, tokens);
        }
        let mut buf = [0u8; 4096];
        let cap = self.limits.head + self.limits.body + 1;
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return self.close(key, registry, tokens),
                Ok(n) => c.request.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(key, registry, tokens),
            }
            if c.request.len() >= cap {
                break;
            }
        }
        match parse(&c.request, &self.limits, c.peer) {
            Parsed::Partial if c.request.len() >= cap => {
                c.request = Vec::new();
                c.answered = true;
                Step::Refused(413)
            }
            Parsed::Partial => Step::Wait,
            Parsed::Complete(req) => {
                c.request = Vec::new();
                c.answered = true;
                Step::Request(req)
            }
            Parsed::Refused(status) => {
                debug!(event = "http_refused", site = ?self.site, status, "HTTP: request refused");
                c.request = Vec::new();
                c.answered = true;
                Step::Refused(status)
            }
        }
    }

    /// Answer connection `key` and close it once the answer went.
    pub(crate) fn respond(
        &mut self,
        key: usize,
        response: Response,
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> Step {
        let Some(c) = self.conns.get_mut(key) else {
            return Step::Done;
        };
        c.answered = true;
        c.response = response.to_bytes();
        c.written = 0;
        self.write(key, registry, tokens)
    }

    /// Answer with `response` (a 101), then hand the socket over ([`Step::Upgraded`]).
    pub(crate) fn upgrade(
        &mut self,
        key: usize,
        response: Response,
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> Step {
        if let Some(c) = self.conns.get_mut(key) {
            c.upgrade = true;
        }
        self.respond(key, response, registry, tokens)
    }

    fn write(&mut self, key: usize, registry: &Registry, tokens: &mut Tokens) -> Step {
        let c = &mut self.conns[key];
        match write_some(&mut c.stream, &c.response[c.written..]) {
            Ok(n) => c.written += n,
            Err(e) => {
                debug!(error = %e, "HTTP: write failed");
                return self.close(key, registry, tokens);
            }
        }
        if c.written < c.response.len() {
            let _ = registry.reregister(
                &mut c.stream,
                c.token,
                Interest::READABLE | Interest::WRITABLE,
            );
            return Step::Wait;
        }
        if c.upgrade {
            let mut c = self.conns.remove(key);
            let _ = registry.deregister(&mut c.stream);
            tokens.remove(c.token);
            return Step::Upgraded(c.stream);
        }
        let _ = c.stream.shutdown(Shutdown::Write);
        self.close(key, registry, tokens)
    }

    /// Drop connection `key` if it is still the one accepted at `since` (its time is up).
    pub(crate) fn expire(
        &mut self,
        key: usize,
        since: Instant,
        registry: &Registry,
        tokens: &mut Tokens,
    ) {
        if self.conns.get(key).is_some_and(|c| c.since == since) {
            debug!(event = "http_timeout", site = ?self.site, "HTTP: too slow; dropped");
            self.close(key, registry, tokens);
        }
    }

    fn close(&mut self, key: usize, registry: &Registry, tokens: &mut Tokens) -> Step {
        if let Some(mut c) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut c.stream);
            tokens.remove(c.token);
        }
        Step::Done
    }

    /// Accepting stopped at the cap and a place is free again: the connections waiting in
    /// the backlog bring no new readiness edge, so the caller accepts now.
    pub(crate) fn has_room_again(&mut self) -> bool {
        let again = self.full && self.conns.len() < self.limits.conns;
        if again {
            self.full = false;
        }
        again
    }
}

#[cfg(test)]
mod tests;
