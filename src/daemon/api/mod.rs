//! The toxiproxy HTTP API (`[daemon] toxiproxy_api`), served by the loop like the metrics
//! endpoint: one request per connection (answered with `Connection: close`, which every
//! HTTP client follows), parsed with `httparse`. Bounded: at most [`MAX_CLIENTS`] at once
//! (more wait in the listen backlog), a head of at most [`MAX_HEAD`] bytes (else 431), a
//! body of at most [`MAX_BODY`] (else 413), and [`CLIENT_TIMEOUT`] for the whole exchange.
//! What each request does is in `routes.rs`; toxics and faults map in `toxics.rs`.

mod routes;
pub(crate) mod toxics;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use tracing::{debug, info, warn};

use super::tokens::{Owner, Tokens};
use super::transport::write_some;
use crate::faults::Fault;

/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (a `populate` of many proxies fits).
const MAX_BODY: usize = 1 << 20;
/// Clients served at once.
const MAX_CLIENTS: usize = 16;
/// How long a client has to send its request and read the answer.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A complete request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) user_agent: String,
    pub(crate) body: Vec<u8>,
}

/// What a client's readiness led to.
#[derive(Debug)]
pub(crate) enum Step {
    /// Waiting for more of the request, or for the socket to take the answer.
    Wait,
    /// The request is complete: route it, then [`Api::respond`].
    Request(Request),
    /// Done (answered, failed or gone).
    Done,
}

#[derive(Debug)]
struct Client {
    stream: TcpStream,
    token: Token,
    since: Instant,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
}

/// A proxy the API made, or one disabled (out of the loop, kept to be enabled again).
#[derive(Debug, Clone)]
pub(crate) struct ProxyDef {
    /// `listen` as asked (`127.0.0.1:0`); the bound address is the listener's.
    pub(crate) listen: String,
    /// `upstream` as given.
    pub(crate) upstream: String,
    /// Disabled: its faults, kept while it has no listener.
    pub(crate) disabled: Option<Vec<Fault>>,
}

/// The API's socket, its clients, and the proxies it made.
#[derive(Debug)]
pub(crate) struct Api {
    listener: TcpListener,
    clients: Slab<Client>,
    full: bool,
    /// Proxies made through the API (and disabled ones, of any origin), by name.
    pub(crate) proxies: BTreeMap<String, ProxyDef>,
}

impl Api {
    pub(crate) fn bind(
        addr: SocketAddr,
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> anyhow::Result<Api> {
        let mut listener = TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("toxiproxy_api: cannot listen on {addr}: {e}"))?;
        let token = tokens.add(Owner::Api);
        registry.register(&mut listener, token, Interest::READABLE)?;
        info!(event = "toxiproxy_api_listening", addr = %listener.local_addr()?,
            "toxiproxy API listening");
        Ok(Api {
            listener,
            clients: Slab::new(),
            full: false,
            proxies: BTreeMap::new(),
        })
    }

    /// Accept clients; returns the new ones (to be served and timed), and false when it ran
    /// out of file descriptors.
    pub(crate) fn accept(
        &mut self,
        registry: &Registry,
        tokens: &mut Tokens,
        now: Instant,
    ) -> (Vec<usize>, bool) {
        let mut new = Vec::new();
        loop {
            if self.clients.len() >= MAX_CLIENTS {
                self.full = true;
                return (new, true);
            }
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let key = self.clients.vacant_key();
                    let token = tokens.add(Owner::ApiClient(key));
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        tokens.remove(token);
                        continue;
                    }
                    self.clients.insert(Client {
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
                    warn!(event = "accept_paused", socket = "toxiproxy_api", error = %e,
                        "toxiproxy API: out of file descriptors; retrying shortly");
                    return (new, false);
                }
                Err(e) => {
                    warn!(error = %e, "toxiproxy API: accept failed");
                    return (new, true);
                }
            }
        }
    }

    /// Read the request, or write the answer.
    pub(crate) fn ready(&mut self, key: usize, registry: &Registry, tokens: &mut Tokens) -> Step {
        let Some(c) = self.clients.get_mut(key) else {
            return Step::Done;
        };
        if !c.response.is_empty() {
            return self.write(key, registry, tokens);
        }
        let mut buf = [0u8; 4096];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return self.close(key, registry, tokens),
                Ok(n) => c.request.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(key, registry, tokens),
            }
            if c.request.len() > MAX_HEAD + MAX_BODY {
                break;
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(&c.request) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if c.request.len() > MAX_HEAD => {
                return self.fail(
                    key,
                    431,
                    "request header fields too large",
                    registry,
                    tokens,
                );
            }
            Ok(httparse::Status::Partial) => return Step::Wait,
            Err(e) => return self.fail(key, 400, &format!("bad request: {e}"), registry, tokens),
        };
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        let length = match header("content-length").map(|v| v.parse::<usize>()) {
            None => 0,
            Some(Ok(n)) if n <= MAX_BODY => n,
            Some(Ok(_)) => {
                return self.fail(key, 413, "request body too large", registry, tokens);
            }
            Some(Err(_)) => {
                return self.fail(key, 400, "bad Content-Length", registry, tokens);
            }
        };
        if header("transfer-encoding").is_some() {
            return self.fail(key, 411, "send a Content-Length", registry, tokens);
        }
        if c.request.len() < head + length {
            return Step::Wait;
        }
        let request = Request {
            method: req.method.unwrap_or_default().to_string(),
            path: req.path.unwrap_or_default().to_string(),
            user_agent: header("user-agent").unwrap_or_default(),
            body: c.request[head..head + length].to_vec(),
        };
        Step::Request(request)
    }

    fn fail(
        &mut self,
        key: usize,
        status: u16,
        why: &str,
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> Step {
        let body = toxics::ApiError::new(status, why).body();
        self.respond(key, status, Some(&body), registry, tokens);
        Step::Done
    }

    /// Answer a client: a status and, unless it is 204, a JSON body.
    pub(crate) fn respond(
        &mut self,
        key: usize,
        status: u16,
        body: Option<&str>,
        registry: &Registry,
        tokens: &mut Tokens,
    ) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let reason = match status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            411 => "Length Required",
            413 => "Payload Too Large",
            431 => "Request Header Fields Too Large",
            _ => "Internal Server Error",
        };
        let mut head = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
        let body = body.unwrap_or("");
        if status != 204 {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        c.response = head.into_bytes();
        if status != 204 {
            c.response.extend_from_slice(body.as_bytes());
        }
        debug!(event = "api_request", status, "toxiproxy API answered");
        self.write(key, registry, tokens);
    }

    fn write(&mut self, key: usize, registry: &Registry, tokens: &mut Tokens) -> Step {
        let c = &mut self.clients[key];
        match write_some(&mut c.stream, &c.response[c.written..]) {
            Ok(n) => c.written += n,
            Err(_) => return self.close(key, registry, tokens),
        }
        if c.written < c.response.len() {
            let _ = registry.reregister(
                &mut c.stream,
                c.token,
                Interest::READABLE | Interest::WRITABLE,
            );
            return Step::Wait;
        }
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        self.close(key, registry, tokens)
    }

    /// Drop a client still there [`CLIENT_TIMEOUT`] after `since`.
    pub(crate) fn expire(
        &mut self,
        key: usize,
        since: Instant,
        registry: &Registry,
        tokens: &mut Tokens,
    ) {
        if self.clients.get(key).is_some_and(|c| c.since == since) {
            debug!(
                event = "api_client_timeout",
                "toxiproxy API: client too slow; dropped"
            );
            self.close(key, registry, tokens);
        }
    }

    fn close(&mut self, key: usize, registry: &Registry, tokens: &mut Tokens) -> Step {
        if let Some(mut c) = self.clients.try_remove(key) {
            let _ = registry.deregister(&mut c.stream);
            tokens.remove(c.token);
        }
        Step::Done
    }

    /// Accepting stopped at the cap and a place is free again.
    pub(crate) fn has_room_again(&mut self) -> bool {
        let again = self.full && self.clients.len() < MAX_CLIENTS;
        if again {
            self.full = false;
        }
        again
    }
}
