//! The web console: one page, served by the loop, for operators (the desk) and for whoever
//! follows the sessions live. HTTP goes through `httpd/`; this module decides what each
//! request gets (`Web::route`): the login, the page and its files, and the WebSocket that
//! carries every update and every action (`clients.rs`). The shell's side (accepting,
//! readiness, what the core says) is `shell.rs`.
//!
//! Everything is refused without a login: `401` with the login form for `/`, a bare `401`
//! for anything else. Every request must name a host that cannot be a rebound name, and the
//! login, the logout and the WebSocket must come from the page's own origin.

mod auth;
mod clients;
mod shell;
mod token;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use slab::Slab;

use super::httpd::{Limits, Request, Response, Server};
pub(crate) use clients::Client;
pub(crate) use shell::client_of;

/// What the HTTP server of the console takes: connections at once, request head and body
/// sizes, and the time from accept to the answer's last byte.
pub(crate) const LIMITS: Limits = Limits {
    conns: 32,
    head: 8 * 1024,
    body: 4 * 1024,
    timeout: Duration::from_secs(10),
};
/// Browsers connected at once (their WebSockets).
pub(crate) const MAX_CLIENTS: usize = 64;

/// The page, its style and its script, built into the binary.
const PAGE: &str = include_str!("page/index.html");
const LOGIN: &str = include_str!("page/login.html");
const STYLE: &str = include_str!("page/style.css");
const SCRIPT: &str = include_str!("page/app.js");

/// Headers every answer carries: nothing is cached, sniffed, framed, or loaded from
/// elsewhere.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
];

/// A test password hash: Argon2id of "correct horse" with the smallest costs.
#[cfg(test)]
pub(crate) const TEST_PASSWORD_HASH: &str =
    "$argon2id$v=19$m=8,t=1,p=1$F6+/gTLxLyfOBGvI/pV6OA$p+IiPTwjKqlIjN76gr6B6t2AD+SLRl3HK9VzOxBdDu0";

/// What a request gets.
#[derive(Debug)]
pub(crate) enum Route {
    /// This answer, then the connection closes.
    Answer(Response),
    /// The WebSocket: this 101, then the socket is a client's, for this login.
    Upgrade(Response, String, String),
}

/// The console: its HTTP server, who may come in, the browsers connected.
#[derive(Debug)]
pub(crate) struct Web {
    pub(crate) server: Server,
    auth: auth::Auth,
    pub(crate) clients: Slab<Client>,
    /// HTTP connections whose upgrade is being answered: the login and name they bring.
    upgrading: HashMap<usize, (String, String)>,
    /// The once-a-second tick is due (`ShellDue::WebTick`).
    ticking: bool,
}

impl Web {
    fn new(server: Server, auth: auth::Auth) -> Web {
        Web {
            server,
            auth,
            clients: Slab::new(),
            upgrading: HashMap::new(),
            ticking: false,
        }
    }

    /// What request `req` gets at `now`.
    pub(crate) fn route(&mut self, req: &Request, now: Instant) -> Route {
        if !self.auth.host_ok(req) {
            return Route::Answer(answer(Response::new(421)));
        }
        let login = self
            .auth
            .login_of(req, now)
            .map(|(id, l)| (id.to_string(), l.name.clone()));
        let method = req.method.as_str();
        let r = match (method, req.path.as_str()) {
            ("GET", "/style.css") => {
                Response::new(200).body("text/css; charset=utf-8", STYLE.into())
            }
            ("POST", "/login") => return Route::Answer(self.login(req, now)),
            ("POST", "/logout") => {
                if !self.auth.origin_ok(req) {
                    return Route::Answer(answer(Response::new(403)));
                }
                if let Some((id, _)) = &login {
                    self.auth.logout(id);
                }
                see_other("/").header("Set-Cookie", auth::clear_cookie())
            }
            (_, path) if login.is_none() => {
                return Route::Answer(match (method, path) {
                    ("GET", "/") => unauthorized_form(false),
                    _ => answer(Response::text(401, "unauthorized\n")),
                });
            }
            ("GET", "/") => Response::new(200).body("text/html; charset=utf-8", PAGE.into()),
            ("GET", "/app.js") => {
                Response::new(200).body("text/javascript; charset=utf-8", SCRIPT.into())
            }
            ("GET", "/ws") => {
                let Some((id, name)) = login else {
                    unreachable!("refused above")
                };
                return match self.upgrade(req) {
                    Ok(r) => Route::Upgrade(answer(r), id, name),
                    Err(status) => Route::Answer(answer(Response::new(status))),
                };
            }
            (_, "/" | "/app.js" | "/ws") => Response::new(405),
            _ => Response::new(404),
        };
        Route::Answer(answer(r))
    }

    /// `POST /login`: the credential (and a name) from the form.
    fn login(&mut self, req: &Request, now: Instant) -> Response {
        if !self.auth.origin_ok(req) {
            return answer(Response::new(403));
        }
        let form = form(&req.body);
        let field = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map_or("", |(_, v)| v.as_str())
        };
        match self
            .auth
            .login(req.peer.ip(), field("credential"), field("name"), now)
        {
            Ok(id) => {
                tracing::info!(event = "web_login", peer = %req.peer, "web console: logged in");
                see_other("/").header("Set-Cookie", auth::login_cookie(&id, self.auth.lifetime()))
            }
            Err(why) => {
                tracing::warn!(event = "web_login_failed", peer = %req.peer,
                    reason = ?why, "web console: login refused");
                match why {
                    auth::Refused::Wrong => unauthorized_form(true),
                    auth::Refused::TooMany => {
                        answer(Response::new(429).header("Retry-After", "60"))
                    }
                }
            }
        }
    }

    /// The WebSocket handshake's answer, or the status refusing it.
    fn upgrade(&self, req: &Request) -> Result<Response, u16> {
        if !self.auth.origin_ok(req) {
            return Err(403);
        }
        if !req.header_has("connection", "upgrade") || !req.header_has("upgrade", "websocket") {
            return Err(426);
        }
        if req.header("sec-websocket-version").map(str::trim) != Some("13") {
            return Err(426);
        }
        let key = req.header("sec-websocket-key").ok_or(400u16)?;
        Ok(Response::new(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header(
                "Sec-WebSocket-Accept",
                tungstenite::handshake::derive_accept_key(key.trim().as_bytes()),
            ))
    }

    /// Whether login `id` is still open (a client whose login ended is dropped).
    pub(crate) fn login_open(&self, id: &str, now: Instant) -> bool {
        self.auth.is_open(id, now)
    }

    /// Where it listens.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.server.local_addr().ok()
    }
}

/// `resp` with the security headers.
fn answer(mut resp: Response) -> Response {
    for (name, value) in SECURITY_HEADERS {
        resp = resp.header(name, value);
    }
    resp
}

fn see_other(to: &str) -> Response {
    answer(Response::new(303).header("Location", to))
}

/// 401 with the login form, and nothing else; `again` after a wrong credential.
fn unauthorized_form(again: bool) -> Response {
    let page = LOGIN.replace(
        "<!--again-->",
        if again {
            "<p class=\"error\">That is not a credential of this console.</p>"
        } else {
            ""
        },
    );
    answer(Response::new(401).body("text/html; charset=utf-8", page.into_bytes()))
}

/// The fields of an `application/x-www-form-urlencoded` body.
fn form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let k = unescape(kv.next().unwrap_or_default());
            let v = unescape(kv.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

/// Percent-decoding, with `+` as a space.
fn unescape(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                match std::str::from_utf8(&s[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
