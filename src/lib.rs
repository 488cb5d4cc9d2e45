//! switchboard: TCP/UDP listeners declared in TOML, each with a chain of message handlers,
//! served by one mio event loop on one thread.

pub mod bench;
pub mod client;
pub mod port;

use std::path::Path;
use std::process::ExitCode;

/// Run the daemon with the config at `path`, or the embedded default.
pub fn run_daemon(_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}

/// Validate a config without binding.
pub fn check(_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
