//! The control side, as I/O: the Unix control socket and its clients (`switchboard attach`,
//! `status`, `reload`), and the daemon's own stdin and stdout as an operator console. Lines
//! typed by operators go to the core (`operator_line`); lines for them come back as
//! `Tell` effects. Nothing here blocks the loop: socket clients are written without
//! blocking and buffered (a client that does not read is dropped), and stdout is written by
//! a thread of its own through a bounded queue.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::fs::OFlags;
use slab::Slab;
use tracing::{debug, info, warn};

use super::core::OpId;
use super::tokens::{Owner, Tokens};
use super::transport::write_some;
use crate::framing::split_lines;
use crate::privileges::Handover;
use crate::runtime_dir::ControlSocket;

/// Output kept for an operator that does not read before it is detached.
const OPERATOR_OUT_MAX: usize = 4 << 20;
/// Longest line an operator may type.
const LINE_MAX: usize = 64 * 1024;
/// Lines queued for the stdout writer before further ones are dropped.
const STDOUT_QUEUE: usize = 4096;
/// Output kept for a `watch` client; events beyond it are dropped for it, and counted.
const WATCH_OUT_MAX: usize = 256 * 1024;

/// What a `watch` client asked to see, and what it missed.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    pub(crate) listener: Option<String>,
    pub(crate) session: Option<u64>,
    dropped: u64,
}

impl Watch {
    /// `watch [listener=NAME] [session=ID]`.
    pub(crate) fn parse(args: &str) -> Result<Watch, String> {
        let mut w = Watch::default();
        for word in args.split_whitespace() {
            match word.split_once('=') {
                Some(("listener", name)) => w.listener = Some(name.to_string()),
                Some(("session", id)) => {
                    w.session = Some(
                        id.parse()
                            .map_err(|_| format!("session={id:?} is not a number"))?,
                    )
                }
                _ => {
                    return Err(format!(
                        "unknown watch filter {word:?}: expected listener=NAME or session=ID"
                    ));
                }
            }
        }
        Ok(w)
    }
}

#[derive(Debug)]
enum ClientIo {
    /// The daemon's own stdin (read) and stdout (written by the writer thread).
    Stdin,
    Socket(UnixStream),
}

/// A control client: a request, or an operator once it asked to attach.
#[derive(Debug)]
struct Client {
    io: ClientIo,
    token: Token,
    name: String,
    partial: Vec<u8>,
    out: Vec<u8>,
    writable: bool,
    attached: bool,
    /// A `watch` client: it gets events, and what it sends is ignored.
    watch: Option<Watch>,
}

/// What a line from a client is.
#[derive(Debug)]
pub(crate) enum Line {
    /// A line of an attached operator.
    Operator(OpId, String),
    /// The first line of a control client: `attach`, `status`, `reload` or else.
    Request(OpId, String),
}

/// The stdout writer thread's end of the queue.
#[derive(Debug)]
struct Stdout {
    lines: SyncSender<String>,
    done: Receiver<()>,
    dropped: u64,
}

/// The control socket, its clients, and the stdin console.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// The listener, the guard that removes its file on drop, and its token.
    listener: Option<(UnixListener, ControlSocket, Token)>,
    clients: Slab<Client>,
    /// fd 0's flags before it was made non-blocking, restored on drop.
    stdin_flags: Option<OFlags>,
    stdout: Option<Stdout>,
    accepted: u64,
    /// How many clients watch.
    watchers: usize,
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(flags) = self.stdin_flags {
            let _ = rustix::fs::fcntl_setfl(io::stdin().as_fd(), flags);
        }
        if let Some(out) = self.stdout.take() {
            // Let the writer finish what is queued, but never hang on a stuck terminal.
            drop(out.lines);
            let _ = out.done.recv_timeout(Duration::from_secs(1));
        }
    }
}

impl Control {
    /// Listen on the control socket, for a daemon serving as `serving_uid`. The folder is
    /// checked (or made) and the socket bound as `runtime_dir` says: a stale file from a
    /// crash is replaced; a live socket (another daemon), a file of another kind, a folder
    /// that is a symlink or that another user could use, are errors.
    pub(crate) fn open_socket(
        &mut self,
        path: &Path,
        serving_uid: u32,
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> anyhow::Result<()> {
        let (mut listener, socket) = crate::runtime_dir::bind_control_socket(path, serving_uid)?;
        let token = tokens.add(Owner::Control);
        registry.register(&mut listener, token, Interest::READABLE)?;
        info!(event = "control_socket", path = %path.display(), "control socket");
        self.listener = Some((listener, socket, token));
        Ok(())
    }

    /// The control socket's folder and file, for the privilege drop (none without a socket).
    /// The control socket's folder, checked, when there is a socket.
    pub(crate) fn socket_dir(&self) -> Option<&crate::runtime_dir::CheckedDir> {
        self.listener.as_ref().map(|(_, s, _)| s.dir())
    }

    pub(crate) fn handover(&self) -> Vec<Handover<'_>> {
        self.listener
            .iter()
            .flat_map(|(_, socket, _)| socket.handover())
            .collect()
    }

    /// Read operator lines from the daemon's stdin, when it can be polled; returns the
    /// operator's id.
    pub(crate) fn open_stdin(&mut self, registry: &Registry, tokens: &mut Tokens) -> Option<OpId> {
        let stdin = io::stdin();
        let flags = rustix::fs::fcntl_getfl(stdin.as_fd()).ok()?;
        let token = tokens.add(Owner::Stdin);
        if registry
            .register(&mut SourceFd(&0), token, Interest::READABLE)
            .is_err()
        {
            // /dev/null or a file: not an operator.
            tokens.remove(token);
            return None;
        }
        let _ = rustix::fs::fcntl_setfl(stdin.as_fd(), flags | OFlags::NONBLOCK);
        self.stdin_flags = Some(flags);
        self.stdout = Some(spawn_stdout_writer());
        let op = self.clients.insert(Client {
            io: ClientIo::Stdin,
            token,
            name: "console".into(),
            partial: Vec::new(),
            out: Vec::new(),
            writable: false,
            attached: true,
            watch: None,
        });
        info!(event = "stdin_console", "operator console on stdin");
        Some(op)
    }

    /// Accept `switchboard attach` clients from our own user or root. Returns false when it
    /// ran out of file descriptors: the caller retries later.
    pub(crate) fn accept(&mut self, registry: &Registry, tokens: &mut Tokens) -> bool {
        loop {
            let Some((listener, _, _)) = &self.listener else {
                return true;
            };
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let me = rustix::process::geteuid().as_raw();
                    match rustix::net::sockopt::socket_peercred(&stream) {
                        Ok(cred) if cred.uid.as_raw() == me || cred.uid.is_root() => {
                            self.accepted += 1;
                            let token = tokens.add(Owner::ControlClient(self.clients.vacant_key()));
                            if registry
                                .register(&mut stream, token, Interest::READABLE)
                                .is_err()
                            {
                                tokens.remove(token);
                                continue;
                            }
                            let name = format!("op{} (uid {})", self.accepted, cred.uid.as_raw());
                            self.clients.insert(Client {
                                io: ClientIo::Socket(stream),
                                token,
                                name,
                                partial: Vec::new(),
                                out: Vec::new(),
                                writable: false,
                                attached: false,
                                watch: None,
                            });
                        }
                        Ok(cred) => {
                            warn!(
                                event = "control_refused",
                                uid = cred.uid.as_raw(),
                                allowed = me,
                                "control socket: refused a client of another user"
                            );
                            let _ = stream.write_all(
                                b"refused: the console is open only to the daemon's user and root\n",
                            );
                        }
                        Err(e) => {
                            warn!(event = "control_refused", error = %e,
                                "control socket: cannot check the client's user; refused")
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if super::tcp::is_fd_exhaustion(&e) => {
                    warn!(event = "accept_paused", socket = "control", error = %e,
                        "control socket: out of file descriptors; retrying shortly");
                    return false;
                }
                Err(e) => {
                    warn!(error = %e, "control socket: accept failed");
                    return true;
                }
            }
        }
    }

    /// A client is ready: flush what waits for it and read its lines into `lines`. Returns
    /// why it is gone, if it is.
    pub(crate) fn ready(
        &mut self,
        op: OpId,
        readable: bool,
        writable: bool,
        buf: &mut [u8],
        registry: &Registry,
        lines: &mut Vec<Line>,
    ) -> Option<&'static str> {
        let c = self.clients.get_mut(op)?;
        if writable && let Err(why) = c.flush(registry) {
            return Some(why);
        }
        if !readable {
            return None;
        }
        for _ in 0..super::MAX_OPS_PER_EVENT {
            let r = match &mut c.io {
                ClientIo::Stdin => {
                    rustix::io::read(io::stdin().as_fd(), &mut *buf).map_err(io::Error::from)
                }
                ClientIo::Socket(s) => io::Read::read(s, buf),
            };
            match r {
                Ok(0) => return Some("end of input"),
                Ok(_) if c.watch.is_some() => {}
                Ok(n) => {
                    let attached = c.attached;
                    let result = split_lines(&mut c.partial, &buf[..n], LINE_MAX, |l| {
                        let text = String::from_utf8_lossy(l).into_owned();
                        lines.push(if attached {
                            Line::Operator(op, text)
                        } else {
                            Line::Request(op, text)
                        });
                    });
                    if result.is_err() {
                        return Some("line too long");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Some("read failed"),
            }
        }
        None
    }

    /// The client becomes an operator; its name.
    pub(crate) fn attach(&mut self, op: OpId) -> Option<String> {
        let c = self.clients.get_mut(op)?;
        c.attached = true;
        Some(c.name.clone())
    }

    /// The client becomes a watcher.
    pub(crate) fn watch(&mut self, op: OpId, watch: Watch) {
        if let Some(c) = self.clients.get_mut(op)
            && c.watch.is_none()
        {
            c.watch = Some(watch);
            self.watchers += 1;
        }
    }

    /// Whether any client watches.
    pub(crate) fn watching(&self) -> bool {
        self.watchers > 0
    }

    /// An event line for the watchers whose filter it passes. One whose output is full
    /// misses it (and is told how many it missed once it catches up). Returns the clients
    /// that broke.
    pub(crate) fn watch_line(
        &mut self,
        line: &str,
        listener: &str,
        session: u64,
        registry: &Registry,
    ) -> Vec<OpId> {
        let mut gone = Vec::new();
        for (op, c) in self.clients.iter_mut() {
            let Some(w) = c.watch.as_mut() else {
                continue;
            };
            if w.listener.as_deref().is_some_and(|l| l != listener)
                || w.session.is_some_and(|s| s != session)
            {
                continue;
            }
            if c.out.len() + line.len() > WATCH_OUT_MAX {
                w.dropped += 1;
                continue;
            }
            if w.dropped > 0 {
                let note = serde_json::json!({"event": "dropped", "count": w.dropped});
                c.out.extend_from_slice(note.to_string().as_bytes());
                c.out.push(b'\n');
                w.dropped = 0;
            }
            c.out.extend_from_slice(line.as_bytes());
            c.out.push(b'\n');
            if c.flush(registry).is_err() {
                gone.push(op);
            }
        }
        gone
    }

    /// Whether a client is an attached operator.
    pub(crate) fn is_attached(&self, op: OpId) -> bool {
        self.clients.get(op).is_some_and(|c| c.attached)
    }

    /// Send a line to a client. Returns why it is gone, if writing to it failed.
    pub(crate) fn tell(
        &mut self,
        op: OpId,
        line: &str,
        registry: &Registry,
    ) -> Option<&'static str> {
        let c = self.clients.get_mut(op)?;
        match &c.io {
            ClientIo::Stdin => {
                let out = self.stdout.as_mut()?;
                match out.lines.try_send(line.to_string()) {
                    Ok(()) => None,
                    Err(TrySendError::Full(_)) => {
                        out.dropped += 1;
                        if out.dropped.is_power_of_two() {
                            warn!(
                                event = "console_dropped",
                                dropped = out.dropped,
                                "the terminal is not keeping up; console lines dropped"
                            );
                        }
                        None
                    }
                    Err(TrySendError::Disconnected(_)) => Some("cannot write to it"),
                }
            }
            ClientIo::Socket(_) => {
                c.out.extend_from_slice(line.as_bytes());
                c.out.push(b'\n');
                if c.out.len() > OPERATOR_OUT_MAX {
                    return Some("it does not read its output");
                }
                c.flush(registry).err()
            }
        }
    }

    /// Drop a client; whether it was an attached operator.
    pub(crate) fn remove(
        &mut self,
        op: OpId,
        why: &str,
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> bool {
        let Some(mut c) = self.clients.try_remove(op) else {
            return false;
        };
        match &mut c.io {
            ClientIo::Stdin => {
                let _ = registry.deregister(&mut SourceFd(&0));
            }
            ClientIo::Socket(s) => {
                let _ = registry.deregister(s);
            }
        }
        tokens.remove(c.token);
        if c.watch.is_some() {
            self.watchers -= 1;
        }
        if !c.attached {
            debug!(client = %c.name, why, "control client done");
        }
        c.attached
    }
}

impl Client {
    /// Write what is buffered; keep WRITABLE interest while some is left.
    fn flush(&mut self, registry: &Registry) -> Result<(), &'static str> {
        let ClientIo::Socket(stream) = &mut self.io else {
            return Ok(());
        };
        let n = write_some(stream, &self.out).map_err(|_| "cannot write to it")?;
        self.out.drain(..n);
        let want = !self.out.is_empty();
        if want != self.writable {
            self.writable = want;
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = registry.reregister(stream, self.token, interest);
        }
        Ok(())
    }
}

/// A thread that writes console lines to stdout, so that a slow terminal never blocks the
/// loop; the queue is bounded (lines beyond it are dropped and counted).
fn spawn_stdout_writer() -> Stdout {
    let (lines, rx) = sync_channel::<String>(STDOUT_QUEUE);
    let (done_tx, done) = sync_channel(1);
    std::thread::Builder::new()
        .name("console-stdout".into())
        .spawn(move || {
            let mut out = io::stdout();
            for line in rx {
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
            let _ = done_tx.send(());
        })
        .expect("spawn the console's stdout writer");
    Stdout {
        lines,
        done,
        dropped: 0,
    }
}
