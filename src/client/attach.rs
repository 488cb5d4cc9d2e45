//! `switchboard attach`: be an operator of a running daemon over its control socket.
//!
//! Lines typed (or piped) on stdin go to the daemon as commands or replies; what the daemon
//! sends (peer messages, one per line, tagged with the session) is printed on stdout.

use std::io::{self, BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use nix::unistd::{Uid, User};

/// Arguments of `switchboard attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The control socket; by default the one the config names (`-c`), or the default place.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

/// The socket the daemon of this config listens on.
fn socket_of(c: &crate::config::Config, config: Option<&Path>) -> PathBuf {
    c.daemon.control_socket.clone().unwrap_or_else(|| {
        let places = crate::console::default_sockets(config);
        places
            .iter()
            .find(|p| p.exists())
            .unwrap_or(&places[0])
            .clone()
    })
}

fn connect(args: &AttachArgs, config: Option<&Path>) -> anyhow::Result<(UnixStream, PathBuf)> {
    connect_to(args.socket.clone(), config)
}

/// Connect to a running daemon's control socket: `socket`, or the one of `config`; the
/// listening process is checked first.
pub(crate) fn connect_to(
    socket: Option<PathBuf>,
    config: Option<&Path>,
) -> anyhow::Result<(UnixStream, PathBuf)> {
    let load = || crate::config::load(config).map_err(|e| anyhow::anyhow!("{e}"));
    let (path, loaded) = match socket {
        // The config, when one is named, only tells which user the daemon may run as.
        Some(p) => (p, config.and_then(|_| load().ok())),
        None => {
            let c = load()?;
            (socket_of(&c, config), Some(c))
        }
    };
    let stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "cannot reach the daemon at {}: is it running with this config? (or pass --socket)",
            path.display()
        )
    })?;
    let daemon_user = loaded.and_then(|c| c.daemon.user);
    check_server(&stream, &path, daemon_user.as_deref())?;
    Ok((stream, path))
}

/// Before anything is sent: the process listening on the socket must run as this user, as
/// root, or as the config's `[daemon] user` (a daemon that dropped privileges). Anyone else
/// may have put a socket of their own in the daemon's place, to read the operator's replies.
fn check_server(stream: &UnixStream, path: &Path, daemon_user: Option<&str>) -> anyhow::Result<()> {
    let server = rustix::net::sockopt::socket_peercred(stream)
        .with_context(|| format!("cannot check who listens on {}", path.display()))?
        .uid
        .as_raw();
    let me = rustix::process::geteuid().as_raw();
    let uid_of = |name: &str| User::from_name(name).ok().flatten().map(|u| u.uid.as_raw());
    if server == me || server == 0 || daemon_user.and_then(uid_of) == Some(server) {
        return Ok(());
    }
    let name = match User::from_uid(Uid::from_raw(server)) {
        Ok(Some(u)) => format!("uid {server} ({})", u.name),
        _ => format!("uid {server}"),
    };
    let expected = match daemon_user {
        Some(u) => format!("you (uid {me}), root or the config's [daemon] user {u:?}"),
        None => format!("you (uid {me}) or root"),
    };
    anyhow::bail!(
        "refusing to talk to {}: the process listening there runs as {name}, not as {expected}; \
         another user may have put that socket there. Nothing was sent",
        path.display()
    )
}

/// `switchboard status` and `switchboard reload`: one request over the control socket,
/// print the answer. Exit 1 when the daemon refused (a reload with an invalid config).
pub fn request(args: AttachArgs, config: Option<&Path>, what: &str) -> anyhow::Result<ExitCode> {
    let (mut stream, _) = connect(&args, config)?;
    let _ = stream.write_all(format!("{what}\n").as_bytes());
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    print!("{answer}");
    let refused = answer.starts_with("refused")
        || answer.starts_with("reload refused")
        || answer.starts_with("(!)");
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `switchboard attach`.
pub fn attach(args: AttachArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (stream, path) = connect(&args, config)?;
    let mut to_daemon = stream.try_clone()?;
    // A refused client may find the socket closed already; what the daemon said is read
    // below either way.
    let _ = to_daemon.write_all(b"attach\n");
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if to_daemon.write_all(format!("{line}\n").as_bytes()).is_err() {
                return;
            }
        }
        let _ = to_daemon.shutdown(std::net::Shutdown::Write);
    });
    let mut from_daemon = stream;
    let mut buf = [0u8; 8192];
    let mut stdout = io::stdout();
    loop {
        match from_daemon.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                stdout.write_all(&buf[..n])?;
                stdout.flush()?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("the control socket failed"),
        }
    }
    eprintln!("switchboard: detached from {}", path.display());
    Ok(ExitCode::SUCCESS)
}
