//! Starting a child (its argv, cleared environment with the standard variables, folder,
//! user, limits, own process group) and what is done with its stderr and its end.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use switchboard_handlers::channel::{Program, Stderr};
use switchboard_handlers::text::escape;
use switchboard_handlers::{Ending, Proto};
use tracing::info;

use super::{LOG_LINE, Proc};
use crate::daemon::core::ChannelOpen;

pub(super) fn nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// The standard variables of a connection, as tcpserver and inetd set them.
pub(super) fn standard_env(open: &ChannelOpen, local: SocketAddr) -> Vec<(String, String)> {
    let p = match open.proto {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    };
    let mut v = vec![
        ("PROTO".into(), p.into()),
        (format!("{p}LOCALIP"), local.ip().to_string()),
        (format!("{p}LOCALPORT"), local.port().to_string()),
        ("SWITCHBOARD_LISTENER".into(), open.listener.to_string()),
    ];
    if let Some((id, peer)) = open.session {
        v.extend([
            (format!("{p}REMOTEIP"), peer.ip().to_string()),
            (format!("{p}REMOTEPORT"), peer.port().to_string()),
            ("REMOTE_ADDR".into(), peer.ip().to_string()),
            ("REMOTE_PORT".into(), peer.port().to_string()),
            ("SWITCHBOARD_SESSION".into(), id.to_string()),
        ]);
    }
    v
}

/// The command for a program, its environment complete.
pub(super) fn command(p: &Program, env: Vec<(String, String)>) -> anyhow::Result<Command> {
    let mut cmd = Command::new(&p.path);
    cmd.arg0(&p.arg0)
        .args(&p.args)
        .env_clear()
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(match p.stderr {
            Stderr::Discard => Stdio::null(),
            Stderr::Log | Stderr::Channel => Stdio::piped(),
        })
        // Its own process group: signals reach what it started too, and a Ctrl-C meant for
        // the daemon does not.
        .process_group(0);
    if let Some(dir) = &p.cwd {
        cmd.current_dir(dir);
    }
    let (uid, gid) = crate::privileges::child_ids(p.user.as_deref(), p.group.as_deref())?;
    if let Some(gid) = gid {
        cmd.gid(gid);
    }
    if let Some(uid) = uid {
        cmd.uid(uid);
    }
    let limits = p.limits;
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        // SAFETY: the closure runs in the child between fork and exec and only makes system
        // calls that are async-signal-safe (close_range, setrlimit); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Descriptors the daemon inherited without close-on-exec (from whoever started
                // it) are not the child's business: mark every one above stderr close-on-exec.
                // Older kernels without close_range(2) keep them.
                const CLOSE_RANGE_CLOEXEC: libc::c_uint = 4;
                libc::syscall(
                    libc::SYS_close_range,
                    3 as libc::c_uint,
                    libc::c_uint::MAX,
                    CLOSE_RANGE_CLOEXEC,
                );
                for (res, v) in [
                    (Resource::Cpu, limits.cpu),
                    (Resource::As, limits.address_space),
                    (Resource::Nofile, limits.open_files),
                    (Resource::Nproc, limits.processes),
                ] {
                    if let Some(v) = v {
                        let l = Rlimit {
                            current: Some(v),
                            maximum: Some(v),
                        };
                        setrlimit(res, l).map_err(io::Error::from)?;
                    }
                }
                Ok(())
            });
        }
    }
    Ok(cmd)
}

pub(super) fn ending_of(status: std::process::ExitStatus) -> Ending {
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(sig)) => Ending::Signalled(sig),
        _ => Ending::Failed("ended in an unknown way".into()),
    }
}

pub(super) fn signal_group(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Log a child's stderr line by line.
pub(super) fn log_stderr(p: &mut Proc, bytes: &[u8]) {
    let mut data = bytes;
    while let Some(n) = data.iter().position(|&b| b == b'\n') {
        let (line, rest) = data.split_at(n);
        data = &rest[1..];
        if p.log_partial.is_empty() {
            log_line(p, line);
        } else {
            let mut whole = std::mem::take(&mut p.log_partial);
            whole.extend_from_slice(line);
            log_line(p, &whole);
        }
    }
    let room = LOG_LINE.saturating_sub(p.log_partial.len());
    p.log_partial
        .extend_from_slice(&data[..data.len().min(room)]);
}

pub(super) fn log_line(p: &Proc, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = escape(&line[..line.len().min(LOG_LINE)]);
    info!(listener = %p.listener, session = p.session, pid = p.child.id(), event = "child_stderr",
        text = %text, "child stderr");
}
