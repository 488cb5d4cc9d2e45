//! switchboard: TCP/UDP listeners declared in TOML, each with a chain of message handlers,
//! served by one mio event loop on one thread.
//!
//! [`config`] parses and validates; [`daemon::Daemon`] binds and runs the loop; the handlers
//! themselves live in the `switchboard-handlers` crate and never touch I/O.

pub mod acl;
pub mod bench;
pub mod client;
pub mod config;
pub mod console;
pub mod daemon;
pub mod dialogue;
pub mod faults;
pub mod framing;
pub mod logging;
pub mod port;
pub mod privileges;
pub mod runtime_dir;
pub mod tls;
pub mod transcript;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Exit status for a config that does not validate.
const EXIT_CONFIG: u8 = 2;

/// `switchboard run`: serve the config at `path`, or the embedded default, on the sockets
/// systemd passed (`inherited`) where they fit.
pub fn run_daemon(path: Option<&Path>, inherited: daemon::Inherited) -> anyhow::Result<ExitCode> {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "switchboard: the config has {} error(s); nothing was started",
                errors.0.len()
            );
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let logging = logging::init(&config.daemon).context("cannot set up logging")?;
    let daemon = match daemon::Daemon::bind_with(&config, inherited) {
        Ok(d) => d,
        Err(e) => {
            if config.daemon.log_file.is_some() {
                tracing::error!("{e:#}");
            }
            return Err(e);
        }
    };
    if config.daemon.log_file.is_some() {
        for (name, proto, addr) in daemon.local_addrs() {
            eprintln!("switchboard: {name} listening on {addr}/{proto}");
        }
    }
    // The daemon owns the logger from here (reload and SIGUSR2 change it); it is dropped,
    // flushing every line, when `run` returns.
    daemon.run(logging).context("the event loop failed")?;
    Ok(ExitCode::SUCCESS)
}

/// `switchboard check`: validate without binding; print a summary or every error.
pub fn check(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    match config::load(path) {
        Ok(c) => {
            println!(
                "{}: ok, {} listener(s)",
                c.source.display(),
                c.listeners.len()
            );
            for l in &c.listeners {
                let framing = match (l.proto, l.framing) {
                    (switchboard_handlers::Proto::Udp, _) => "datagram",
                    (_, config::Framing::Raw) => "raw",
                    (_, config::Framing::Line) => "line",
                };
                println!(
                    "  {:<16} {:<24} {:<8} {}",
                    l.name,
                    l.endpoint(),
                    framing,
                    l.handler_names.join(" -> ")
                );
            }
            for w in c.warnings() {
                eprintln!("{}: warning: {w}", c.source.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("switchboard: {} error(s)", errors.0.len());
            Ok(ExitCode::FAILURE)
        }
    }
}
