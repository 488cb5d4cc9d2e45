//! The client commands: `send` and `chat`, the tutorial's client programs.

use std::process::ExitCode;

/// Arguments of `switchboard send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {}

/// Arguments of `switchboard chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {}

/// `switchboard send`.
pub fn send(_args: SendArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("send is not available yet")
}

/// `switchboard chat`.
pub fn chat(_args: ChatArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("chat is not available yet")
}
