//! `exec`: a program in any language answers the peer, with the session on its stdin and
//! stdout, as inetd, tcpserver and systemd's `Accept=yes` run one.
//!
//! Settings (`[listener.exec]`):
//! - `cmd` (required): the argv, e.g. `["python3", "-u", "student.py"]`; no shell is involved
//!   unless `shell = true` (then `cmd` is one string run by `/bin/sh -c`);
//! - `cwd` (default: the config's folder), `env` (default `{}`): the child's environment is
//!   cleared except for these, `PATH` (a standard one unless `env` sets it) and the standard
//!   variables (`PROTO`, `TCPREMOTEIP`, `TCPREMOTEPORT`, `TCPLOCALIP`, `TCPLOCALPORT`, or the
//!   `UDP...` ones, `REMOTE_ADDR`, `REMOTE_PORT`, `SWITCHBOARD_SESSION`,
//!   `SWITCHBOARD_LISTENER`);
//! - `framing` (default `"line"`): each message goes to stdin as a line (a `\n` added) and
//!   each line of stdout is one message; `"raw"` passes bytes through as they are;
//! - `mode` (default `"session"`): one child per session; `"shared"`: one long-running child
//!   for every session of the listener, speaking JSON lines tagged with the session id;
//! - `stderr` (default `"log"`): `"peer"` sends it to the peer, `"discard"` drops it;
//! - `grace` (default `"2s"`): after the peer closes, the child's stdin is closed, then after
//!   `grace` it gets SIGTERM, after another `grace` SIGKILL;
//! - `max_children` (default: no limit): sessions with a child at once; over it the listener
//!   refuses new peers like `max_connections` (`busy_message`);
//! - `user`, `group`: run the child as them (the daemon must be root);
//! - `rlimit_cpu` (seconds), `rlimit_as` (bytes), `rlimit_nofile`, `rlimit_nproc`.

mod session;
mod shared;

pub use shared::hex;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::channel::{ChannelScope, ChannelSpec, Limits, Program, Stderr, Target};
use crate::registry::{BuildEnv, BuildError};
use crate::settings::Settings;
use crate::{Handler, HandlerFactory};

/// `PATH` given to children whose `env` does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Default `grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// How messages map to the child's stdin and stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecFraming {
    /// A message is a line of stdin; a line of stdout is a message.
    #[default]
    Line,
    /// Bytes as they are, both ways.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Session,
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum StderrSetting {
    #[default]
    Log,
    Peer,
    Discard,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ExecSettings {
    cmd: Vec<String>,
    shell: bool,
    cwd: Option<String>,
    env: BTreeMap<String, String>,
    framing: ExecFraming,
    mode: Mode,
    stderr: StderrSetting,
    grace: Option<String>,
    max_children: Option<usize>,
    user: Option<String>,
    group: Option<String>,
    rlimit_cpu: Option<u64>,
    rlimit_as: Option<u64>,
    rlimit_nofile: Option<u64>,
    rlimit_nproc: Option<u64>,
}

/// The `exec` factory: the program, shared by every session's handler.
#[derive(Debug)]
pub struct Exec {
    spec: ChannelSpec,
    framing: ExecFraming,
    shared: bool,
    max_children: Option<usize>,
}

pub(crate) fn build(
    settings: Settings<'_>,
    env: &dyn BuildEnv,
) -> Result<Arc<dyn HandlerFactory>, BuildError> {
    let span = settings.span();
    if !settings.is_present() {
        return Err(BuildError::new(
            "exec needs a `[listener.exec]` table with `cmd = [\"program\", \"arg\", ...]`",
            span,
        ));
    }
    let s: ExecSettings = settings.parse()?;
    let err = |m: String| BuildError::new(m, span.clone());
    if s.cmd.is_empty() || s.cmd[0].trim().is_empty() {
        return Err(err(
            "`cmd`: name the program to run, e.g. cmd = [\"python3\", \"-u\", \"server.py\"]"
                .into(),
        ));
    }
    if s.shell && s.cmd.len() != 1 {
        return Err(err(
            "`cmd`: with shell = true, cmd is one command line for /bin/sh -c, e.g. cmd = [\"./a | ./b\"]"
                .into(),
        ));
    }
    let grace = match &s.grace {
        None => DEFAULT_GRACE,
        Some(g) => humantime::parse_duration(g).map_err(|e| {
            err(format!(
                "`grace`: {g:?} is not a duration ({e}); write e.g. \"2s\" or \"500ms\""
            ))
        })?,
    };
    if s.max_children == Some(0) {
        return Err(err(
            "`max_children`: 0 would refuse every peer; remove it for no limit".into(),
        ));
    }
    if s.mode == Mode::Shared && s.max_children.is_some() {
        return Err(err(
            "`max_children`: mode = \"shared\" runs one child for the whole listener".into(),
        ));
    }
    if s.mode == Mode::Shared && s.stderr == StderrSetting::Peer {
        return Err(err(
            "`stderr`: \"peer\" needs mode = \"session\" (a shared child's stderr has no one peer); use \"log\" or \"discard\""
                .into(),
        ));
    }
    for key in s.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(err(format!("`env`: {key:?} is not a variable name")));
        }
    }
    let base = env.dir();
    let cwd = match (&s.cwd, &base) {
        (Some(c), Some(b)) => Some(b.join(c)),
        (Some(c), None) => Some(PathBuf::from(c)),
        (None, b) => b.clone(),
    };
    let (path, arg0, args) = if s.shell {
        (
            PathBuf::from("/bin/sh"),
            "sh".to_string(),
            vec!["-c".to_string(), s.cmd[0].clone()],
        )
    } else {
        let name = &s.cmd[0];
        let path = if name.contains('/') && Path::new(name).is_relative() {
            // Relative to the child's folder, where it will run.
            match &cwd {
                Some(c) => c.join(name),
                None => PathBuf::from(name),
            }
        } else {
            env.program(name).map_err(|e| err(format!("`cmd`: {e}")))?
        };
        (path, name.clone(), s.cmd[1..].to_vec())
    };
    let mut vars: Vec<(String, String)> = s.env.into_iter().collect();
    if !vars.iter().any(|(k, _)| k == "PATH") {
        vars.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    let program = Program {
        path,
        arg0,
        args,
        cwd,
        env: vars,
        standard_env: true,
        stderr: match s.stderr {
            StderrSetting::Log => Stderr::Log,
            StderrSetting::Peer => Stderr::Channel,
            StderrSetting::Discard => Stderr::Discard,
        },
        user: s.user,
        group: s.group,
        limits: Limits {
            cpu: s.rlimit_cpu,
            address_space: s.rlimit_as,
            open_files: s.rlimit_nofile,
            processes: s.rlimit_nproc,
        },
    };
    let shared = s.mode == Mode::Shared;
    Ok(Arc::new(Exec {
        spec: ChannelSpec {
            target: Target::Program(Arc::new(program)),
            scope: if shared {
                ChannelScope::Listener
            } else {
                ChannelScope::Session
            },
            grace,
        },
        framing: s.framing,
        shared,
        max_children: s.max_children,
    }))
}

impl HandlerFactory for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn session(&self) -> Box<dyn Handler> {
        if self.shared {
            Box::new(shared::SharedExec::new(self.spec.clone()))
        } else {
            Box::new(session::SessionExec::new(self.spec.clone(), self.framing))
        }
    }

    fn max_sessions(&self) -> Option<usize> {
        self.max_children
    }
}

#[cfg(test)]
mod tests;
