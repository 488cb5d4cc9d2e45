//! Operators: the daemon's own stdin (when it runs in a terminal or is fed by a pipe) and
//! clients of the Unix control socket (`switchboard attach`). Every operator sees every
//! message for `console-reply`; each line an operator types is a command or a reply.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use slab::Slab;
use switchboard_handlers::text::escape;
use switchboard_handlers::{CloseReason, Flow};
use tracing::{debug, info, warn};

use super::{Daemon, MAX_OPS_PER_EVENT};
use crate::console::{self, Command};

pub(super) const STDIN: Token = Token(usize::MAX - 2);
pub(super) const CONTROL: Token = Token(usize::MAX - 3);
pub(super) const OPERATOR_BASE: usize = 1 << 41;

/// Messages kept while no operator is attached; beyond it the oldest are dropped (and the
/// first operator to attach is told how many).
const BACKLOG_MAX: usize = 10_000;
/// Output kept for an operator that does not read before it is detached.
const OPERATOR_OUT_MAX: usize = 4 << 20;

#[derive(Debug)]
enum OpIo {
    Stdin,
    Socket(UnixStream),
}

#[derive(Debug)]
struct Operator {
    io: OpIo,
    name: String,
    partial: Vec<u8>,
    out: Vec<u8>,
    want_write: bool,
    /// Session pinned with `/to`.
    focus: Option<u64>,
    /// An operator (sees messages). A control client is not one until its first line asks
    /// to `attach`; `status` and `reload` are answered and the client closed.
    attached: bool,
}

/// The attached operators and what waits for them.
#[derive(Debug, Default)]
pub(super) struct Operators {
    ops: Slab<Operator>,
    backlog: VecDeque<String>,
    dropped: u64,
    control: Option<(UnixListener, PathBuf)>,
    /// fd 0's flags before it was made non-blocking, restored on drop.
    stdin_flags: Option<i32>,
    /// The session that spoke last to the console.
    last_spoke: Option<u64>,
    attached_total: u64,
    /// Operators attached now (read for every message, so kept rather than counted).
    attached_now: usize,
}

impl Drop for Operators {
    fn drop(&mut self) {
        if let Some(flags) = self.stdin_flags {
            // SAFETY: fcntl on fd 0 with flags read from it earlier.
            unsafe { libc::fcntl(0, libc::F_SETFL, flags) };
        }
        if let Some((_, path)) = &self.control {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Operators {
    /// How many operators are attached.
    pub(super) fn attached(&self) -> usize {
        self.attached_now
    }

    /// The control socket's path, when there is one.
    pub(super) fn control_path(&self) -> Option<&Path> {
        self.control.as_ref().map(|(_, p)| p.as_path())
    }

    /// The stdin operator, while attached.
    pub(super) fn stdin_key(&self) -> Option<usize> {
        self.ops
            .iter()
            .find(|(_, o)| matches!(o.io, OpIo::Stdin))
            .map(|(k, _)| k)
    }

    /// Read operator lines from the daemon's stdin, when it can be polled.
    pub(super) fn open_stdin(&mut self, registry: &Registry) {
        // SAFETY: fcntl on fd 0; the flags are restored on drop.
        let flags = unsafe { libc::fcntl(0, libc::F_GETFL) };
        if flags < 0
            || registry
                .register(&mut SourceFd(&0), STDIN, Interest::READABLE)
                .is_err()
        {
            // /dev/null or a file: not an operator.
            return;
        }
        // SAFETY: as above.
        unsafe { libc::fcntl(0, libc::F_SETFL, flags | libc::O_NONBLOCK) };
        self.stdin_flags = Some(flags);
        self.ops.insert(Operator {
            io: OpIo::Stdin,
            name: "console".into(),
            partial: Vec::new(),
            out: Vec::new(),
            want_write: false,
            focus: None,
            attached: true,
        });
        self.attached_now += 1;
        info!("operator console on stdin");
    }

    /// Listen on the control socket. A stale file from a crash is replaced; a live socket
    /// (another daemon) is an error.
    pub(super) fn open_control(&mut self, path: &Path, registry: &Registry) -> anyhow::Result<()> {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "control socket {} is in use by another running daemon; stop it or set [daemon] control_socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)?;
        }
        let mut listener = UnixListener::bind(path)
            .map_err(|e| anyhow::anyhow!("cannot create control socket {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        registry.register(&mut listener, CONTROL, Interest::READABLE)?;
        info!(path = %path.display(), "control socket");
        self.control = Some((listener, path.to_path_buf()));
        Ok(())
    }

    /// Send a line to one operator.
    fn tell(&mut self, key: usize, line: &str, registry: &Registry) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        let ok = match &mut op.io {
            OpIo::Stdin => {
                let mut stdout = io::stdout().lock();
                stdout
                    .write_all(line.as_bytes())
                    .and_then(|()| stdout.write_all(b"\n"))
                    .and_then(|()| stdout.flush())
                    .is_ok()
            }
            OpIo::Socket(stream) => {
                op.out.extend_from_slice(line.as_bytes());
                op.out.push(b'\n');
                flush(stream, &mut op.out).is_ok() && op.out.len() <= OPERATOR_OUT_MAX
            }
        };
        if !ok {
            self.detach(key, "cannot write to it", registry);
            return;
        }
        if let Some(op) = self.ops.get_mut(key)
            && let OpIo::Socket(stream) = &mut op.io
            && op.want_write == op.out.is_empty()
        {
            op.want_write = !op.out.is_empty();
            let interest = if op.want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = registry.reregister(stream, Token(OPERATOR_BASE + key), interest);
        }
    }

    /// Send a line to every operator (or keep it until one attaches).
    fn broadcast(&mut self, line: &str, except: Option<usize>, registry: &Registry) {
        if self.attached() == 0 {
            if self.backlog.len() >= BACKLOG_MAX {
                self.backlog.pop_front();
                self.dropped += 1;
                if self.dropped == 1 || self.dropped.is_power_of_two() {
                    warn!(
                        dropped = self.dropped,
                        "no operator attached and the console backlog is full; oldest messages dropped"
                    );
                }
            }
            self.backlog.push_back(line.to_string());
            return;
        }
        let keys: Vec<usize> = self
            .ops
            .iter()
            .filter(|(k, o)| o.attached && Some(*k) != except)
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.tell(key, line, registry);
        }
    }

    fn detach(&mut self, key: usize, why: &str, registry: &Registry) {
        let Some(mut op) = self.ops.try_remove(key) else {
            return;
        };
        if op.attached {
            self.attached_now -= 1;
        }
        match &mut op.io {
            OpIo::Stdin => {
                let _ = registry.deregister(&mut SourceFd(&0));
            }
            OpIo::Socket(s) => {
                let _ = registry.deregister(s);
            }
        }
        if op.attached {
            info!(operator = %op.name, why, "operator detached");
        } else {
            debug!(client = %op.name, why, "control client done");
        }
    }

    /// A control client asked to be an operator: greet it and show what waited.
    fn attach(&mut self, key: usize, sessions: usize, registry: &Registry) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        if !op.attached {
            op.attached = true;
            self.attached_now += 1;
        }
        let name = op.name.clone();
        info!(operator = %name, "operator attached");
        self.tell(key, &format!("switchboard console: you are {name}; {sessions} session(s) open; /help for commands"), registry);
        if self.dropped > 0 {
            let n = std::mem::take(&mut self.dropped);
            self.tell(
                key,
                &format!("(!) {n} earlier message(s) were dropped: the backlog was full"),
                registry,
            );
        }
        if !self.backlog.is_empty() {
            self.tell(
                key,
                &format!("-- {} message(s) waiting --", self.backlog.len()),
                registry,
            );
            while let Some(line) = self.backlog.pop_front() {
                self.tell(key, &line, registry);
            }
        }
    }
}

fn flush(stream: &mut UnixStream, out: &mut Vec<u8>) -> io::Result<()> {
    let mut written = 0;
    while written < out.len() {
        match stream.write(&out[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.drain(..written);
    Ok(())
}

/// The uid of a Unix socket's peer.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a properly sized ucred.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(cred.uid)
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Daemon {
    /// Accept `switchboard attach` clients from our own user or root.
    pub(super) fn accept_operators(&mut self) {
        loop {
            let Some((listener, _)) = &self.operators.control else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, _)) => {
                    // SAFETY: geteuid has no preconditions.
                    let me = unsafe { libc::geteuid() };
                    match peer_uid(&stream) {
                        Ok(uid) if uid == me || uid == 0 => {
                            self.operators.attached_total += 1;
                            let key = self.operators.ops.vacant_key();
                            if self
                                .poll
                                .registry()
                                .register(
                                    &mut stream,
                                    Token(OPERATOR_BASE + key),
                                    Interest::READABLE,
                                )
                                .is_err()
                            {
                                continue;
                            }
                            let name = format!("op{} (uid {uid})", self.operators.attached_total);
                            self.operators.ops.insert(Operator {
                                io: OpIo::Socket(stream),
                                name,
                                partial: Vec::new(),
                                out: Vec::new(),
                                want_write: false,
                                focus: None,
                                attached: false,
                            });
                        }
                        Ok(uid) => {
                            warn!(
                                uid,
                                allowed = me,
                                "control socket: refused a client of another user"
                            );
                            let _ = stream.write_all(b"refused: the console is open only to the daemon's user and root\n");
                        }
                        Err(e) => {
                            warn!(error = %e, "control socket: cannot check the client's user; refused")
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(error = %e, "control socket: accept failed");
                    return;
                }
            }
        }
    }

    /// An operator's input (stdin or socket) is readable or its output writable.
    pub(super) fn operator_ready(&mut self, key: usize, readable: bool, writable: bool) {
        let registry = self.poll.registry();
        let Some(op) = self.operators.ops.get_mut(key) else {
            return;
        };
        if writable && let OpIo::Socket(stream) = &mut op.io {
            if flush(stream, &mut op.out).is_err() {
                self.operators.detach(key, "write failed", registry);
                return;
            }
            if op.out.is_empty() && op.want_write {
                op.want_write = false;
                let _ = registry.reregister(stream, Token(OPERATOR_BASE + key), Interest::READABLE);
            }
        }
        if !readable {
            return;
        }
        let mut lines = Vec::new();
        let mut gone = None;
        for _ in 0..MAX_OPS_PER_EVENT {
            let r = match &mut op.io {
                OpIo::Stdin => io::stdin().lock().read(&mut self.buf),
                OpIo::Socket(s) => s.read(&mut self.buf),
            };
            match r {
                Ok(0) => {
                    gone = Some("end of input");
                    break;
                }
                Ok(n) => {
                    let mut partial = std::mem::take(&mut op.partial);
                    let result =
                        crate::framing::split_lines(&mut partial, &self.buf[..n], 64 * 1024, |l| {
                            lines.push(String::from_utf8_lossy(l).into_owned())
                        });
                    op.partial = partial;
                    if result.is_err() {
                        gone = Some("line too long");
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    gone = Some("read failed");
                    break;
                }
            }
        }
        for line in lines {
            if self.operators.ops.get(key).is_some_and(|o| o.attached) {
                self.operator_line(key, &line);
            } else if !self.control_request(key, &line) {
                return;
            }
        }
        if let Some(why) = gone {
            self.operators.detach(key, why, self.poll.registry());
        }
    }

    /// Sessions whose chain takes operator replies, open ones only.
    fn console_sessions(&self) -> Vec<usize> {
        self.sessions
            .iter()
            .filter(|(_, c)| !c.ended && c.cfg.takes_operator())
            .map(|(k, _)| k)
            .collect()
    }

    fn find_session(&self, id: u64) -> Option<usize> {
        self.console_sessions()
            .into_iter()
            .find(|&k| self.sessions[k].session.id == id)
    }

    fn console_tag(&self, key: usize) -> String {
        let c = &self.sessions[key];
        console::tag(
            c.session.id,
            &c.session.listener,
            c.session.proto,
            c.session.peer,
        )
    }

    /// A handler has something for the operator.
    pub(super) fn show_to_operators(&mut self, key: usize, text: &str) {
        let Some(conn) = self.sessions.get_mut(key) else {
            return;
        };
        conn.unanswered += 1;
        if self.operators.attached() == 0 {
            // Human-speed traffic: worth a line at info while nobody is watching.
            info!(parent: &conn.span, text = %escape(text.as_bytes()), "message kept for the operator (none attached)");
        }
        self.operators.last_spoke = Some(conn.session.id);
        let line = console::message_line(&self.console_tag(key), text);
        self.operators.broadcast(&line, None, self.poll.registry());
    }

    /// Tell operators a console session ended.
    pub(super) fn console_closed(&mut self, key: usize, reason: CloseReason) {
        if self.operators.attached() > 0
            && self.listeners[self.sessions[key].listener]
                .cfg
                .takes_operator()
        {
            let line = format!("[{}] session closed ({reason})", self.console_tag(key));
            self.operators.broadcast(&line, None, self.poll.registry());
        }
    }

    /// The first line of a control client. Returns whether it stays connected.
    fn control_request(&mut self, key: usize, line: &str) -> bool {
        let registry = self.poll.registry();
        match line.trim() {
            "attach" => {
                let sessions = self.console_sessions().len();
                self.operators.attach(key, sessions, self.poll.registry());
                return true;
            }
            "status" => {
                for l in self.status_lines() {
                    self.operators.tell(key, &l, self.poll.registry());
                }
            }
            "reload" => {
                let reply = match self.reload() {
                    Ok(summary) => format!("reloaded: {summary}"),
                    Err(e) => format!("reload refused: {e}"),
                };
                self.operators.tell(key, &reply, self.poll.registry());
            }
            other => self.operators.tell(
                key,
                &format!("(!) unknown request {other:?}: expected attach, status or reload"),
                registry,
            ),
        }
        self.operators
            .detach(key, "request answered", self.poll.registry());
        false
    }

    fn operator_line(&mut self, op: usize, line: &str) {
        let registry = self.poll.registry();
        match console::parse(line) {
            Command::Nothing => {}
            Command::Help => {
                for l in console::HELP.lines() {
                    self.operators.tell(op, l, registry);
                }
            }
            Command::Invalid(why) => self.operators.tell(op, &format!("(!) {why}"), registry),
            Command::List => {
                let keys = self.console_sessions();
                if keys.is_empty() {
                    self.operators.tell(op, "no open sessions", registry);
                }
                let focus = self.focus_of(op);
                for key in keys {
                    let c = &self.sessions[key];
                    let row = console::list_row(
                        &self.console_tag(key),
                        self.now.saturating_duration_since(c.last_active),
                        c.unanswered,
                        focus == Some(c.session.id),
                    );
                    self.operators.tell(op, &row, self.poll.registry());
                }
            }
            Command::To(id) => match self.find_session(id) {
                Some(key) => {
                    let tag = self.console_tag(key);
                    if let Some(o) = self.operators.ops.get_mut(op) {
                        o.focus = Some(id);
                    }
                    self.operators
                        .tell(op, &format!("now replying to [{tag}]"), registry);
                }
                None => self.operators.tell(
                    op,
                    &format!("(!) no open session #{id}; /list shows them"),
                    registry,
                ),
            },
            Command::Close(id) => match self.find_session(id) {
                Some(key) => {
                    let name = self.operators.ops[op].name.clone();
                    info!(session = id, operator = %name, "closed by the operator");
                    self.close(key, CloseReason::Operator);
                }
                None => self
                    .operators
                    .tell(op, &format!("(!) no open session #{id}"), registry),
            },
            Command::At(id, text) => self.operator_reply(op, id, &text),
            Command::Reply(text) => match self.focus_of(op) {
                Some(id) => self.operator_reply(op, id, &text),
                None => self.operators.tell(
                    op,
                    "(!) no session to reply to yet; /list shows the open ones",
                    registry,
                ),
            },
        }
    }

    /// The session an operator's plain lines go to: the pinned one while it is open, else the
    /// one that spoke last.
    fn focus_of(&self, op: usize) -> Option<u64> {
        let pinned = self.operators.ops.get(op).and_then(|o| o.focus);
        pinned
            .filter(|&id| self.find_session(id).is_some())
            .or(self.operators.last_spoke)
    }

    fn operator_reply(&mut self, op: usize, id: u64, text: &str) {
        let Some(key) = self.find_session(id) else {
            let line = format!(
                "(!) session #{id} has ended; your reply was not sent (/list shows the open ones)"
            );
            self.operators.tell(op, &line, self.poll.registry());
            return;
        };
        let operators = self.operators.attached();
        let conn = &mut self.sessions[key];
        conn.session.now = self.wall;
        conn.session.operators = operators;
        conn.unanswered = 0;
        self.out.clear();
        if conn.chain.operator(text, &conn.session, &mut self.out) == Flow::Pass {
            let line = format!("(!) no handler of session #{id} takes replies");
            self.operators.tell(op, &line, self.poll.registry());
            return;
        }
        let name = self
            .operators
            .ops
            .get(op)
            .map_or_else(String::new, |o| o.name.clone());
        let line = format!(
            "[{}] {name}> {}",
            self.console_tag(key),
            escape(text.as_bytes())
        );
        self.operators
            .broadcast(&line, Some(op), self.poll.registry());
        self.apply_outbox(key);
    }
}
