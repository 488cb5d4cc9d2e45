//! `switchboard port`: which process holds a port, from /proc.

use std::process::ExitCode;

/// Arguments of `switchboard port`.
#[derive(Debug, clap::Args)]
pub struct PortArgs {}

/// `switchboard port`.
pub fn run(_args: PortArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("port is not available yet")
}

/// Who holds `addr`, as text to follow "is already in use".
pub fn describe_holder(addr: std::net::SocketAddr, udp: bool) -> String {
    let _ = udp;
    format!("(see `switchboard port {}`)", addr.port())
}
