//! The web console in the loop: its listening socket and HTTP connections, the browsers'
//! WebSockets, and what goes to them: the desk (rows, the conversation lines, operators'
//! notices) after the core has settled, the live events from the tap, the listeners'
//! counters once a second while someone follows them.
//!
//! A browser that logs in as an operator is one to the core, with an id of its own
//! ([`op_of`]): what it does goes through the same commands as a typed line.

use std::time::Duration;

use mio::Interest;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::super::core::{OpId, SaidLine, Standing};
use super::super::httpd::{self, Site, Step};
use super::super::{Daemon, ShellDue};
use super::clients::{self, Ask, Client};
use super::{MAX_CLIENTS, Route, Web};
use crate::config::Config;
use crate::console::Command;

/// Operator ids of browsers start here (the control socket's clients count up from 0).
const OP_BASE: OpId = usize::MAX / 2;
/// How often the listeners' counters go to those following the live view.
const TICK: Duration = Duration::from_secs(1);

/// The operator id of browser `key`.
pub(crate) fn op_of(key: usize) -> OpId {
    OP_BASE + key
}

/// The browser of operator id `op`, if it is one.
pub(crate) fn client_of(op: OpId) -> Option<usize> {
    op.checked_sub(OP_BASE)
}

impl Daemon {
    /// Serve the web console if `[daemon] web` is set: read or make the token file, bind.
    /// Returns the token file, which the daemon's user must own after the privilege drop.
    pub(crate) fn open_web(
        &mut self,
        config: &Config,
        serving_uid: u32,
    ) -> anyhow::Result<Option<super::token::TokenFile>> {
        let Some(w) = &config.daemon.web else {
            return Ok(None);
        };
        let file = if w.token {
            let path = w.token_file.clone().unwrap_or_else(|| {
                let socket = config
                    .daemon
                    .control_socket
                    .clone()
                    .unwrap_or_else(|| crate::console::default_socket(config.file.as_deref()));
                let stem = socket.file_stem().map_or_else(
                    || "switchboard".into(),
                    |s| s.to_string_lossy().into_owned(),
                );
                socket.with_file_name(format!("{stem}.web-token"))
            });
            let f = super::token::read_or_create(&path, serving_uid, self.control.socket_dir())?;
            info!(event = "web_token", path = %f.path.display(), created = f.created,
                "web console: the token is in this file");
            Some(f)
        } else {
            None
        };
        let server = httpd::Server::bind(
            w.addr,
            Site::Web,
            super::LIMITS,
            self.poll.registry(),
            &mut self.tokens,
        )
        .map_err(|e| anyhow::anyhow!("[daemon] web: cannot listen on {}: {e}", w.addr))?;
        let auth = super::auth::Auth::new(
            file.as_ref().map(|f| f.token.clone()),
            w.password_hash.clone(),
            w.session,
            w.origins.clone(),
            self.now,
        );
        let web = Web::new(server, auth);
        if let Some(addr) = web.local_addr() {
            info!(event = "web_listening", addr = %addr,
                "web console on http://{addr}/");
        }
        self.web = Some(web);
        Ok(file)
    }

    /// An HTTP connection is ready: read its request, answer it.
    pub(crate) fn web_conn_ready(&mut self, key: usize) {
        let Some(w) = self.web.as_mut() else {
            return;
        };
        let registry = self.poll.registry();
        let mut step = w.server.ready(key, registry, &mut self.tokens);
        let mut logout = false;
        if let Step::Request(req) = step {
            step = match w.route(&req, self.now) {
                Route::Answer(r) => {
                    debug!(event = "http_request", path = %req.path, status = r.status, "web console");
                    logout = req.path == "/logout";
                    w.server.respond(key, r, registry, &mut self.tokens)
                }
                Route::Upgrade(r, login, name) if w.clients.len() < MAX_CLIENTS => {
                    w.upgrading.insert(key, (login, name));
                    w.server.upgrade(key, r, registry, &mut self.tokens)
                }
                Route::Upgrade(..) => {
                    warn!(
                        event = "web_full",
                        max = MAX_CLIENTS,
                        "web console: too many browsers"
                    );
                    let r = super::answer(httpd::Response::new(503));
                    w.server.respond(key, r, registry, &mut self.tokens)
                }
            };
        }
        if let Step::Refused(status) = step {
            let r = super::answer(httpd::Response::new(status));
            step = w.server.respond(key, r, registry, &mut self.tokens);
        }
        // The 101 went (now, or after waiting for the socket): the socket is a browser's.
        if let Step::Upgraded(stream) = step
            && let Some((login, name)) = w.upgrading.remove(&key)
        {
            self.web_client_new(stream, login, name);
        }
        if logout {
            self.web_prune();
        }
    }

    /// The WebSocket of a login that was answered with a 101.
    fn web_client_new(&mut self, mut stream: mio::net::TcpStream, login: String, name: String) {
        let Some(w) = self.web.as_mut() else {
            return;
        };
        let entry = w.clients.vacant_entry();
        let key = entry.key();
        let token = self.tokens.add(super::super::tokens::Owner::WebClient(key));
        if self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            self.tokens.remove(token);
            return;
        }
        let name = if name.is_empty() {
            format!("web{}", key + 1)
        } else {
            name
        };
        entry.insert(Client::new(stream, token, login, name.clone()));
        let hello = json!({"t": "hello", "you": name});
        self.web_send(key, &hello.to_string());
        self.web_arm_tick();
    }

    /// A browser's socket is ready.
    pub(crate) fn web_client_ready(&mut self, key: usize, readable: bool, writable: bool) {
        let Some(c) = self.web.as_mut().and_then(|w| w.clients.get_mut(key)) else {
            return;
        };
        if writable && let Err(why) = c.flush() {
            return self.web_drop(key, why);
        }
        if !readable {
            return;
        }
        let mut asks = Vec::new();
        let gone = c.read(&mut asks).err();
        for ask in asks {
            self.web_ask(key, ask);
        }
        if let Some(why) = gone {
            self.web_drop(key, why);
        }
    }

    /// What a browser asked.
    fn web_ask(&mut self, key: usize, ask: Ask) {
        let now = self.now;
        let Some(c) = self.web.as_ref().and_then(|w| w.clients.get(key)) else {
            return;
        };
        if !self
            .web
            .as_ref()
            .is_some_and(|w| w.login_open(&c.login, now))
        {
            return self.web_drop(key, "its login ended");
        }
        let op = op_of(key);
        let desk = c.desk;
        let command = match ask {
            Ask::Desk => {
                if !desk {
                    let name = c.name.clone();
                    if let Some(c) = self.web.as_mut().and_then(|w| w.clients.get_mut(key)) {
                        c.desk = true;
                    }
                    self.core.set_desk_feed(true);
                    self.core.attach_operator(op, name, true);
                    self.web_desk_to(Some(key), true);
                    self.settle();
                }
                return;
            }
            Ask::Live { on } => {
                if let Some(c) = self.web.as_mut().and_then(|w| w.clients.get_mut(key)) {
                    c.live = on;
                }
                self.watchers_changed();
                if on {
                    self.web_counters(Some(key));
                }
                return;
            }
            _ if !desk => {
                let m = json!({"t": "error", "text": "open the desk first"});
                return self.web_send(key, &m.to_string());
            }
            Ask::Say { text, .. } if text.trim().is_empty() => return,
            Ask::Say { session, text } => Command::At(session, text),
            Ask::Take { session } => Command::Take(session),
            Ask::Release { session } => Command::Release(session),
            Ask::Close { session } => Command::Close(session),
            Ask::Canned { session, name } => {
                self.core.operator_canned(op, session, &name);
                return self.settle();
            }
        };
        self.core.operator_command(op, command);
        self.settle();
    }

    /// Whether a browser follows the live events.
    pub(crate) fn web_live(&self) -> bool {
        self.web
            .as_ref()
            .is_some_and(|w| w.clients.iter().any(|(_, c)| c.live))
    }

    /// Send to one browser; drop it if it cannot take it.
    fn web_send(&mut self, key: usize, text: &str) {
        let Some(c) = self.web.as_mut().and_then(|w| w.clients.get_mut(key)) else {
            return;
        };
        if let Err(why) = c.send(text) {
            self.web_drop(key, why);
        }
    }

    /// Send to every browser `to` picks.
    fn web_broadcast(&mut self, text: &str, to: impl Fn(&Client) -> bool) {
        let Some(w) = self.web.as_mut() else {
            return;
        };
        let mut gone = Vec::new();
        for (key, c) in w.clients.iter_mut() {
            if to(c)
                && let Err(why) = c.send(text)
            {
                gone.push((key, why));
            }
        }
        for (key, why) in gone {
            self.web_drop(key, why);
        }
    }

    /// Drop a browser; if it was an operator, the sessions it had go back to the queue.
    pub(crate) fn web_drop(&mut self, key: usize, why: &str) {
        let Some(w) = self.web.as_mut() else {
            return;
        };
        let Some(mut c) = w.clients.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(c.socket());
        self.tokens.remove(c.token);
        if why == clients::SLOW {
            warn!(event = "web_client_dropped", client = %c.name, reason = "slow",
                "web console: a browser did not read what it was sent; dropped");
        } else {
            debug!(event = "web_client_gone", client = %c.name, why, "web console: browser gone");
        }
        let any_desk = w.clients.iter().any(|(_, c)| c.desk);
        if c.desk {
            self.core.detach_operator(op_of(key), why);
            self.core.set_desk_feed(any_desk);
        }
        self.watchers_changed();
        self.settle();
    }

    /// A line for a browser operator (what a terminal operator would see).
    pub(crate) fn web_tell(&mut self, key: usize, line: &str) {
        let m = json!({"t": "tell", "text": line});
        self.web_send(key, &m.to_string());
    }

    /// A tapped event for the browsers following the live view.
    pub(crate) fn web_event(&mut self, line: &str) {
        let m = format!("{{\"t\":\"event\",\"e\":{line}}}");
        self.web_broadcast(&m, |c| c.live);
    }

    /// The desk, after the core settled: the rows when they changed, each line said.
    pub(crate) fn web_sync(&mut self) {
        if self.web.is_none() {
            return;
        }
        let (dirty, said) = self.core.take_desk_changes();
        if dirty {
            self.web_desk_to(None, false);
        }
        for line in said {
            let m = said_json(&line).to_string();
            self.web_broadcast(&m, |c| c.desk);
        }
    }

    /// The desk's rows (and, with `history`, the conversations so far) to browser `to`, or
    /// to every operator.
    fn web_desk_to(&mut self, to: Option<usize>, history: bool) {
        let rows: Vec<Value> = self
            .core
            .desk_rows()
            .into_iter()
            .map(|r| {
                let (state, by, place) = match r.standing {
                    Standing::Bot => ("bot", None, None),
                    Standing::Waiting(n) => ("waiting", None, Some(n)),
                    Standing::Taken(op) => ("taken", Some(op.to_string()), None),
                };
                json!({"id": r.id, "listener": &*r.listener, "proto": r.proto.as_str(),
                    "peer": r.peer.to_string(), "state": state, "by": by, "place": place,
                    "unanswered": r.unanswered, "idle": r.idle.as_secs()})
            })
            .collect();
        let canned: Vec<Value> = self
            .core
            .canned_replies()
            .into_iter()
            .map(|(l, name, text)| json!({"listener": &*l, "name": name, "text": text}))
            .collect();
        let m = json!({"t": "desk", "rows": rows, "operators": self.core.operator_names(),
            "canned": canned})
        .to_string();
        match to {
            Some(key) => {
                self.web_send(key, &m);
                if history {
                    let lines: Vec<Value> =
                        self.core.desk_histories().iter().map(said_json).collect();
                    let h = json!({"t": "history", "lines": lines}).to_string();
                    self.web_send(key, &h);
                }
            }
            None => self.web_broadcast(&m, |c| c.desk),
        }
    }

    /// The listeners' counters to browser `to`, or to every one following the live view.
    fn web_counters(&mut self, to: Option<usize>) {
        let rows: Vec<Value> = self
            .core
            .listener_rows()
            .into_iter()
            .map(|r| {
                json!({"name": r.name, "proto": r.proto, "addr": r.addr.to_string(),
                    "serving": r.serving, "active": r.active, "opened": r.stats.opened,
                    "closed": r.stats.closed, "refused": r.stats.refused,
                    "errors": r.stats.errors, "msgs_in": r.stats.traffic.msgs_in,
                    "msgs_out": r.stats.traffic.msgs_out, "bytes_in": r.stats.traffic.bytes_in,
                    "bytes_out": r.stats.traffic.bytes_out})
            })
            .collect();
        let m = json!({"t": "listeners", "rows": rows}).to_string();
        match to {
            Some(key) => self.web_send(key, &m),
            None => self.web_broadcast(&m, |c| c.live),
        }
    }

    /// Once a second while someone follows the live view: the counters; and logins that
    /// ended close their browsers.
    pub(crate) fn web_tick(&mut self) {
        if let Some(w) = self.web.as_mut() {
            w.ticking = false;
        }
        self.web_prune();
        if self.web_live() {
            self.web_counters(None);
        }
        self.web_arm_tick();
    }

    /// Have the tick come, while any browser is connected.
    fn web_arm_tick(&mut self) {
        if let Some(w) = self.web.as_mut()
            && !w.ticking
            && !w.clients.is_empty()
        {
            w.ticking = true;
            self.timers.push(self.now + TICK, ShellDue::WebTick);
        }
    }

    /// Drop the browsers whose login ended (its time, or a logout).
    fn web_prune(&mut self) {
        let now = self.now;
        let ended: Vec<usize> = self.web.as_ref().map_or_else(Vec::new, |w| {
            w.clients
                .iter()
                .filter(|(_, c)| !w.login_open(&c.login, now))
                .map(|(k, _)| k)
                .collect()
        });
        for key in ended {
            self.web_drop(key, "its login ended");
        }
    }
}

/// A conversation line as the page gets it.
fn said_json(l: &SaidLine) -> Value {
    use super::super::core::Speaker;
    let (who, name) = match &l.who {
        Speaker::Customer => ("customer", None),
        Speaker::Bot => ("bot", None),
        Speaker::Operator(n) => ("operator", Some(n.to_string())),
    };
    json!({"t": "said", "session": l.session, "who": who, "name": name, "text": l.text})
}
