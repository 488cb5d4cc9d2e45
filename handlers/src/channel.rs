//! Channels: external I/O that a session owns, opened by the loop on a handler's request.
//!
//! A handler never spawns a process or opens a socket. It asks the loop for a channel with
//! [`Outbox::open`](crate::Outbox::open) and a [`ChannelSpec`] saying what is at the other end
//! ([`Target`]: a program's stdin and stdout, or a connection to an upstream server). The loop
//! opens it as a part of the session, registers its descriptors, and from then on:
//!
//! - bytes the handler writes with [`Outbox::to_channel`](crate::Outbox::to_channel) go to the
//!   channel's input (a program's stdin; an upstream's socket);
//! - what comes out of it reaches the handler as [`ChannelEvent`]s through
//!   [`Handler::on_channel`](crate::Handler::on_channel): `Opened`, `Data`, `Stderr`, `End`,
//!   and last `Closed` with its [`Ending`];
//! - backpressure holds both ways: while the peer has `max_output` bytes pending, the channel
//!   is not read; while the channel has `max_output` bytes of input pending, the peer is not
//!   read;
//! - when the peer's input ends (or the daemon stops gracefully), the channel's input is ended
//!   (stdin closed; an upstream half-closed) and the session waits for the channel to close;
//!   after [`ChannelSpec::grace`] it is ended (a program: SIGTERM, then SIGKILL after another
//!   `grace`; a connection: closed);
//! - when the session ends for any reason, its channels end with it, by the same code path
//!   on close, reload and shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Proto;

/// Identifies a channel within one handler instance; the handler chooses the numbers.
pub type ChannelId = u64;

/// What a handler asks the loop to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    /// What is at the other end.
    pub target: Target,
    /// Who owns it: the session, or the listener (one channel shared by its sessions).
    pub scope: ChannelScope,
    /// How long the channel may go on after its input ended before the loop ends it.
    pub grace: Duration,
}

/// Who owns a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelScope {
    /// One channel for this session; it ends with the session.
    Session,
    /// One channel for every session of the listener that asks for the same target (the same
    /// `Arc`), started on first use and kept across sessions. Its input and output are JSON
    /// lines tagged with the session id (`{"session":3,...}`): each session writes whole
    /// lines; the loop writes `{"session":N,"event":"open",...}` when a session joins and
    /// `{"session":N,"event":"close","reason":...}` when it leaves, and hands each output line
    /// to the session its `"session"` field names (lines naming no session of the channel are
    /// logged and dropped). It ends when the listener stops or is replaced and its last
    /// session has left.
    Listener,
}

/// The other end of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A program, run with its stdin and stdout as the channel.
    Program(Arc<Program>),
    /// A connection to an upstream server, opened without blocking: `Opened` once connected;
    /// a refusal, an unreachable address or no answer within `timeout` is
    /// `Closed(Failed)`. TCP: the upstream's FIN is `End`, ending the channel's input sends
    /// FIN to it (a half-close), its reset is `Closed(Reset)`, and the channel is `Closed`
    /// once both directions ended. UDP: a connected socket of its own, so that replies come
    /// back to this session; each write is one datagram and each datagram read one `Data`.
    Connect {
        /// Where to connect.
        addr: SocketAddr,
        /// TCP or UDP.
        proto: Proto,
        /// How long connecting may take (TCP).
        timeout: Duration,
    },
}

/// A program to run: an argv (no shell unless the argv names one), its folder, environment
/// and limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    /// The executable, as resolved when the config was read.
    pub path: PathBuf,
    /// `argv[0]` as the config wrote it.
    pub arg0: String,
    /// The arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Working folder (the daemon's own when `None`).
    pub cwd: Option<PathBuf>,
    /// The environment, complete: nothing of the daemon's own is inherited.
    pub env: Vec<(String, String)>,
    /// Add the standard variables of the connection (`PROTO`, `TCPREMOTEIP`, ...,
    /// `SWITCHBOARD_SESSION`; for a listener channel only those of the listener).
    pub standard_env: bool,
    /// Where its stderr goes.
    pub stderr: Stderr,
    /// Run as this user (name or number) when the daemon is root.
    pub user: Option<String>,
    /// Run with this group (name or number) when the daemon is root.
    pub group: Option<String>,
    /// Resource limits (`setrlimit`), each soft and hard.
    pub limits: Limits,
}

/// Where a program's stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stderr {
    /// Into the daemon's log, line by line, with the session.
    #[default]
    Log,
    /// To the handler, as [`ChannelEvent::Stderr`].
    Channel,
    /// Nowhere (`/dev/null`).
    Discard,
}

/// Resource limits of a program; `None` leaves the daemon's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// CPU seconds (`RLIMIT_CPU`).
    pub cpu: Option<u64>,
    /// Address space in bytes (`RLIMIT_AS`).
    pub address_space: Option<u64>,
    /// Open files (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Processes of its user (`RLIMIT_NPROC`).
    pub processes: Option<u64>,
}

/// What happened on a channel, for [`Handler::on_channel`](crate::Handler::on_channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEvent<'a> {
    /// The channel is open (the program started).
    Opened,
    /// Bytes from its output, as read (a listener channel: one JSON line naming this
    /// session, without its newline).
    Data(&'a [u8]),
    /// Bytes from a program's stderr, when its spec says [`Stderr::Channel`].
    Stderr(&'a [u8]),
    /// Its output ended: no more `Data` will come.
    End,
    /// It is gone; the last event of the channel.
    Closed(&'a Ending),
}

/// How a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The program exited with this status.
    Exited(i32),
    /// The program was killed by this signal.
    Signalled(i32),
    /// It could not be opened, or broke: why.
    Failed(String),
    /// A connection ended cleanly: both sides sent their FIN.
    Closed,
    /// A connection was reset by the other end (TCP RST).
    Reset,
}

impl Ending {
    /// Whether it ended well (a program's exit status 0; a connection closed cleanly).
    pub fn is_success(&self) -> bool {
        matches!(self, Ending::Exited(0) | Ending::Closed)
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Exited(code) => write!(f, "exited with status {code}"),
            Ending::Signalled(sig) => write!(f, "killed by signal {sig}"),
            Ending::Failed(why) => write!(f, "failed: {why}"),
            Ending::Closed => f.write_str("closed"),
            Ending::Reset => f.write_str("reset by the other end"),
        }
    }
}
