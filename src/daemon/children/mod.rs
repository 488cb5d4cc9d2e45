//! Channels in the shell: child processes with their stdin, stdout and stderr as
//! non-blocking pipes in the loop, registered under the session's key (`Part::Channel`) or,
//! for a listener's shared child, under `Owner::Shared`.
//!
//! One code path ends every child: [`Daemon::terminate`] closes its stdin, sends SIGTERM to
//! its process group and arms a SIGKILL for `grace` later. A channel the core ends
//! (`CloseChannel`) keeps being read until the child exits; a released session's children go
//! on being ended without their pipes. Exits are learnt from SIGCHLD and reaped at once
//! (`Daemon::reap`), and whatever is left when the loop returns is ended and reaped before
//! `run` does ([`Daemon::end_children`]): no zombie outlives its session or the daemon.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};
use switchboard_handlers::Ending;
use switchboard_handlers::channel::{Stderr, Target};
use tracing::{debug, info, warn};

mod command;

use command::{command, ending_of, log_line, log_stderr, nonblocking, signal_group, standard_env};

use super::core::{ChanRef, ChannelOpen};
use super::tokens::{Owner, Part, Pipe};
use super::{Daemon, MAX_OPS_PER_EVENT, ShellDue};

/// Longest stderr line logged; the rest of it is cut.
pub(super) const LOG_LINE: usize = 1024;
/// Longest wait for children when the daemon exits, whatever their grace.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// A pipe registered with the poller.
#[derive(Debug)]
struct PipeIo<T> {
    io: T,
    token: Token,
    writable: bool,
}

/// A running child.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    /// The channel it serves; `None` once its session is gone (it is being ended).
    owner: Option<ChanRef>,
    stdin: Option<PipeIo<ChildStdin>>,
    stdout: Option<PipeIo<ChildStdout>>,
    stderr: Option<PipeIo<ChildStderr>>,
    /// Stderr goes to the log (else to the core).
    stderr_log: bool,
    log_partial: Vec<u8>,
    /// How it ended, once reaped.
    exited: Option<Ending>,
    grace: Duration,
    /// SIGTERM was sent.
    terminating: bool,
    /// For log lines: the session id (0 for a shared child) and the listener.
    session: u64,
    listener: std::sync::Arc<str>,
}

impl Daemon {
    fn owner_of(r: ChanRef, pipe: Pipe) -> Owner {
        match r {
            ChanRef::Session(key, slot) => Owner::Session(key, Part::Channel(slot, pipe)),
            ChanRef::Shared(i) => Owner::Shared(i, pipe),
        }
    }

    /// The core asks for a channel: start the program (or connect: `upstream.rs`).
    pub(super) fn open_channel(&mut self, r: ChanRef) {
        let Some(open) = self.core.channel_open(r) else {
            return;
        };
        if matches!(open.spec.target, Target::Connect { .. }) {
            return self.connect_upstream(r);
        }
        let session = open.session.map_or(0, |(id, _)| id);
        match self.spawn(r, &open) {
            Ok(()) => {
                self.core.channel_opened(r);
                // Output may be waiting with no new edge to announce it.
                self.resume_channel(r);
            }
            Err(e) => {
                warn!(listener = %open.listener, session, event = "child_failed", error = %format!("{e:#}"),
                    "cannot start the child");
                self.core
                    .channel_closed(r, &Ending::Failed(format!("{e:#}")));
            }
        }
    }

    fn spawn(&mut self, r: ChanRef, open: &ChannelOpen) -> anyhow::Result<()> {
        let Target::Program(p) = &open.spec.target else {
            anyhow::bail!("this kind of channel is not available");
        };
        let local = match r {
            ChanRef::Session(key, _) => self
                .conns
                .get_mut(key)
                .and_then(Option::as_mut)
                .and_then(|c| c.transport.socket().local_addr().ok())
                .unwrap_or(open.local),
            ChanRef::Shared(_) => open.local,
        };
        let env = if p.standard_env {
            standard_env(open, local)
        } else {
            Vec::new()
        };
        let mut child = command(p, env)?
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", p.path.display()))?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let idx = self.procs.vacant_key();
        let registry = self.poll.registry();
        let tokens = &mut self.tokens;
        let mut reg = |fd: i32, pipe: Pipe| -> io::Result<Token> {
            let token = tokens.add(Daemon::owner_of(r, pipe));
            if fd < 0 {
                return Ok(token);
            }
            registry
                .register(&mut SourceFd(&fd), token, Interest::READABLE)
                .inspect_err(|_| tokens.remove(token))?;
            Ok(token)
        };
        let mut proc = Proc {
            child,
            owner: Some(r),
            stdin: None,
            stdout: None,
            stderr: None,
            stderr_log: p.stderr == Stderr::Log,
            log_partial: Vec::new(),
            exited: None,
            grace: open.spec.grace,
            terminating: false,
            session: open.session.map_or(0, |(id, _)| id),
            listener: open.listener.clone(),
        };
        let registered = (|| -> io::Result<()> {
            if let Some(io) = stdin {
                nonblocking(&io)?;
                // Registered for WRITABLE only while input waits.
                let token = reg(-1, Pipe::Stdin)?;
                proc.stdin = Some(PipeIo {
                    io,
                    token,
                    writable: false,
                });
            }
            if let Some(io) = stdout {
                nonblocking(&io)?;
                let token = reg(io.as_raw_fd(), Pipe::Stdout)?;
                proc.stdout = Some(PipeIo {
                    io,
                    token,
                    writable: false,
                });
            }
            if let Some(io) = stderr {
                nonblocking(&io)?;
                let token = reg(io.as_raw_fd(), Pipe::Stderr)?;
                proc.stderr = Some(PipeIo {
                    io,
                    token,
                    writable: false,
                });
            }
            Ok(())
        })();
        debug!(listener = %open.listener, session = proc.session, pid = proc.child.id(),
            event = "child_started", "child started");
        let failed = registered.err();
        let i = self.procs.insert(proc);
        debug_assert_eq!(i, idx);
        self.chans.insert(r, i);
        if let Some(e) = failed {
            // Its pipes could not be watched: end it, and the channel with it.
            self.drop_channel(r);
            anyhow::bail!("cannot watch the child's pipes: {e}");
        }
        Ok(())
    }

    /// Read a channel's output again before the next wait (its peer caught up).
    pub(super) fn resume_channel(&mut self, r: ChanRef) {
        if let Some(p) = self.chans.get(&r).map(|&i| &self.procs[i]) {
            self.pending.extend(p.stdout.as_ref().map(|s| s.token));
            self.pending.extend(p.stderr.as_ref().map(|s| s.token));
        }
    }

    /// A pipe of a channel is ready.
    pub(super) fn channel_ready(&mut self, r: ChanRef, pipe: Pipe, readable: bool, writable: bool) {
        match pipe {
            Pipe::Stdin if writable => self.channel_write(r),
            Pipe::Stdout | Pipe::Stderr if readable => self.serve_channel(r, pipe),
            _ => {}
        }
    }

    /// Read a channel's stdout or stderr until drained, paused, or the per-event cap.
    pub(super) fn serve_channel(&mut self, r: ChanRef, pipe: Pipe) {
        for _ in 0..MAX_OPS_PER_EVENT {
            let Some(&i) = self.chans.get(&r) else {
                return;
            };
            let to_core = pipe == Pipe::Stdout || !self.procs[i].stderr_log;
            if to_core && !self.core.channel_reads(r) {
                return; // a ResumeChannel effect says when
            }
            let p = &mut self.procs[i];
            let exited = p.exited.is_some();
            let read = match pipe {
                Pipe::Stdout => p.stdout.as_mut().map(|s| s.io.read(&mut self.buf)),
                Pipe::Stderr => p.stderr.as_mut().map(|s| s.io.read(&mut self.buf)),
                Pipe::Stdin | Pipe::Socket => None,
            };
            match read {
                None => return,
                Some(Ok(n)) if n > 0 => {
                    if to_core {
                        self.core
                            .channel_output(r, pipe == Pipe::Stderr, &self.buf[..n]);
                        self.settle();
                    } else {
                        log_stderr(&mut self.procs[i], &self.buf[..n]);
                    }
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                // After the exit, an empty pipe is its end (a descendant may hold it open).
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock && !exited => return,
                Some(_) => {
                    self.pipe_ended(r, i, pipe);
                    return;
                }
            }
        }
        if let Some(&i) = self.chans.get(&r) {
            let p = &self.procs[i];
            let token = match pipe {
                Pipe::Stdout => p.stdout.as_ref().map(|s| s.token),
                _ => p.stderr.as_ref().map(|s| s.token),
            };
            self.pending.extend(token);
        }
    }

    /// A child's stdout or stderr reached its end.
    fn pipe_ended(&mut self, r: ChanRef, i: usize, pipe: Pipe) {
        let p = &mut self.procs[i];
        let registry = self.poll.registry();
        match pipe {
            Pipe::Stdout => {
                if let Some(s) = p.stdout.take() {
                    let _ = registry.deregister(&mut SourceFd(&s.io.as_raw_fd()));
                    self.tokens.remove(s.token);
                    self.core.channel_eof(r);
                    self.settle();
                }
            }
            _ => {
                if let Some(s) = p.stderr.take() {
                    let _ = registry.deregister(&mut SourceFd(&s.io.as_raw_fd()));
                    self.tokens.remove(s.token);
                    let rest = std::mem::take(&mut p.log_partial);
                    if !rest.is_empty() {
                        log_line(p, &rest);
                    }
                }
            }
        }
        self.finish_channel(r);
    }

    /// A channel whose child exited and whose pipes are read to their end is closed.
    fn finish_channel(&mut self, r: ChanRef) {
        let Some(&i) = self.chans.get(&r) else {
            return;
        };
        let p = &self.procs[i];
        if p.exited.is_none() || p.stdout.is_some() || p.stderr.is_some() {
            return;
        }
        let mut p = self.procs.remove(i);
        self.chans.remove(&r);
        if let Some(s) = p.stdin.take() {
            self.tokens.remove(s.token);
        }
        let ending = p.exited.take().expect("checked");
        self.core.channel_closed(r, &ending);
        self.settle();
    }

    /// Write what the core has for a channel's stdin; WRITABLE interest while some is left.
    pub(super) fn channel_write(&mut self, r: ChanRef) {
        let Some(&i) = self.chans.get(&r) else {
            return;
        };
        let Some(bytes) = self.core.channel_input(r) else {
            return self.want_stdin(i, false);
        };
        let len = bytes.len();
        let p = &mut self.procs[i];
        let result = match p.stdin.as_mut() {
            Some(s) => super::transport::write_some(&mut s.io, bytes),
            None => Ok(len), // its stdin is closed: input goes nowhere
        };
        match result {
            Ok(n) => {
                self.core.channel_written(r, n);
                let left = self.core.channel_input(r).is_some();
                self.want_stdin(i, left);
            }
            Err(e) => {
                debug!(session = p.session, error = %e, "the child's stdin is closed; its input is dropped");
                self.close_stdin(i);
                self.core.channel_written(r, len);
            }
        }
    }

    fn want_stdin(&mut self, i: usize, on: bool) {
        let registry = self.poll.registry();
        let Some(s) = self.procs.get_mut(i).and_then(|p| p.stdin.as_mut()) else {
            return;
        };
        if s.writable == on {
            return;
        }
        s.writable = on;
        let fd = s.io.as_raw_fd();
        let _ = if on {
            registry.register(&mut SourceFd(&fd), s.token, Interest::WRITABLE)
        } else {
            registry.deregister(&mut SourceFd(&fd))
        };
    }

    fn close_stdin(&mut self, i: usize) {
        self.want_stdin(i, false);
        if let Some(s) = self.procs.get_mut(i).and_then(|p| p.stdin.take()) {
            self.tokens.remove(s.token);
        }
    }

    /// The core ends a channel's input: close the child's stdin.
    pub(super) fn end_channel_input(&mut self, r: ChanRef) {
        if let Some(&i) = self.chans.get(&r) {
            self.close_stdin(i);
        }
    }

    /// End a child: stdin closed, SIGTERM to its group, SIGKILL after its grace.
    fn terminate(&mut self, i: usize) {
        self.close_stdin(i);
        let Some(p) = self.procs.get_mut(i) else {
            return;
        };
        if p.exited.is_some() || p.terminating {
            return;
        }
        p.terminating = true;
        let pid = p.child.id();
        signal_group(pid, rustix::process::Signal::TERM);
        self.timers.push(self.now + p.grace, ShellDue::Kill(i, pid));
    }

    /// The core ends a channel: the child is ended; its pipes are read until it exits.
    pub(super) fn close_channel(&mut self, r: ChanRef) {
        if let Some(&i) = self.chans.get(&r) {
            self.terminate(i);
        }
    }

    /// The grace after SIGTERM is over.
    pub(super) fn kill_due(&mut self, i: usize, pid: u32) {
        if let Some(p) = self.procs.get(i)
            && p.child.id() == pid
            && p.exited.is_none()
        {
            info!(listener = %p.listener, session = p.session, pid, event = "child_killed",
                "the child did not end within its grace after SIGTERM; SIGKILL");
            signal_group(pid, rustix::process::Signal::KILL);
        }
    }

    /// A channel's pipes go (its session is released); the child is ended if it runs.
    fn drop_channel(&mut self, r: ChanRef) {
        let Some(i) = self.chans.remove(&r) else {
            return;
        };
        self.terminate(i);
        let registry = self.poll.registry();
        let p = &mut self.procs[i];
        p.owner = None;
        if let Some(s) = p.stdout.take() {
            let _ = registry.deregister(&mut SourceFd(&s.io.as_raw_fd()));
            self.tokens.remove(s.token);
        }
        if let Some(s) = p.stderr.take() {
            let _ = registry.deregister(&mut SourceFd(&s.io.as_raw_fd()));
            self.tokens.remove(s.token);
        }
        if p.exited.is_some() {
            self.procs.remove(i);
        }
    }

    /// A session is released: every channel of it goes.
    pub(super) fn release_channels(&mut self, key: super::core::SessionKey) {
        let mine: Vec<ChanRef> = self
            .chans
            .range(ChanRef::Session(key, 0)..=ChanRef::Session(key, u16::MAX))
            .map(|(r, _)| *r)
            .collect();
        for r in mine {
            self.drop_channel(r);
        }
    }

    /// SIGCHLD: reap every child that exited.
    pub(super) fn reap(&mut self) {
        let mut done = Vec::new();
        for (i, p) in self.procs.iter_mut() {
            if p.exited.is_some() {
                continue;
            }
            match p.child.try_wait() {
                Ok(Some(status)) => {
                    let ending = ending_of(status);
                    if p.owner.is_some() && !ending.is_success() && !p.terminating {
                        warn!(listener = %p.listener, session = p.session, pid = p.child.id(),
                            event = "child_exited", ending = %ending, "the child failed");
                    } else {
                        debug!(listener = %p.listener, session = p.session, pid = p.child.id(),
                            event = "child_exited", ending = %ending, "the child exited");
                    }
                    p.exited = Some(ending);
                    done.push((i, p.owner));
                }
                Ok(None) => {}
                Err(e) => {
                    debug!(error = %e, "waitpid failed");
                }
            }
        }
        for (i, owner) in done {
            match owner {
                None => {
                    self.procs.remove(i);
                }
                Some(r) => {
                    // Read what it left in its pipes, then it is closed.
                    let p = &self.procs[i];
                    let (out, err) = (p.stdout.is_some(), p.stderr.is_some());
                    if out {
                        self.serve_channel(r, Pipe::Stdout);
                    }
                    if err {
                        self.serve_channel(r, Pipe::Stderr);
                    }
                    self.finish_channel(r);
                }
            }
        }
    }

    /// The loop is over: end every child still running, and reap them all.
    pub(super) fn end_children(&mut self) {
        if self.procs.is_empty() {
            return;
        }
        let longest = self
            .procs
            .iter()
            .map(|(_, p)| p.grace)
            .max()
            .unwrap_or_default();
        let keys: Vec<usize> = self.procs.iter().map(|(i, _)| i).collect();
        for i in &keys {
            self.terminate(*i);
        }
        let deadline = Instant::now() + longest.min(EXIT_WAIT);
        loop {
            self.procs
                .retain(|_, p| p.exited.is_some() || !matches!(p.child.try_wait(), Ok(Some(_))));
            self.procs.retain(|_, p| p.exited.is_none());
            if self.procs.is_empty() || Instant::now() >= deadline {
                break;
            }
            // The loop is over: nothing else waits on this thread.
            std::thread::sleep(Duration::from_millis(10));
        }
        for (_, p) in self.procs.iter_mut() {
            warn!(listener = %p.listener, session = p.session, pid = p.child.id(), event = "child_killed",
                "the child did not end at shutdown; SIGKILL");
            signal_group(p.child.id(), rustix::process::Signal::KILL);
            let _ = p.child.wait();
        }
        self.procs.clear();
    }
}
