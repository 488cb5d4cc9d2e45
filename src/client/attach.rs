//! `switchboard attach`: be an operator of a running daemon over its control socket.
//!
//! Lines typed (or piped) on stdin go to the daemon as commands or replies; what the daemon
//! sends (peer messages, one per line, tagged with the session) is printed on stdout.

use std::io::{self, BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `switchboard attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The control socket; by default the one the config names (`-c`), or the default place.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

/// The socket the daemon of this config listens on.
fn socket_of(config: Option<&Path>) -> anyhow::Result<PathBuf> {
    let c = crate::config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(c.daemon.control_socket.unwrap_or_else(|| {
        let places = crate::console::default_sockets(config);
        places
            .iter()
            .find(|p| p.exists())
            .unwrap_or(&places[0])
            .clone()
    }))
}

fn connect(args: &AttachArgs, config: Option<&Path>) -> anyhow::Result<(UnixStream, PathBuf)> {
    connect_to(args.socket.clone(), config)
}

/// Connect to a running daemon's control socket: `socket`, or the one of `config`.
pub(crate) fn connect_to(
    socket: Option<PathBuf>,
    config: Option<&Path>,
) -> anyhow::Result<(UnixStream, PathBuf)> {
    let path = match socket {
        Some(p) => p,
        None => socket_of(config)?,
    };
    let stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "cannot reach the daemon at {}: is it running with this config? (or pass --socket)",
            path.display()
        )
    })?;
    Ok((stream, path))
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
