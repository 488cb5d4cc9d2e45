//! `switchboard port`: which process holds a port, from /proc (Linux).
//!
//! Sockets come from /proc/net/{tcp,tcp6,udp,udp6} (`proc_net`), their processes from one
//! pass over the `socket:[INODE]` links of /proc/*/fd (`owners`), both read with procfs. The
//! daemon calls [`describe_holder`] when a bind fails with EADDRINUSE.

mod holder;
mod owners;
mod proc_net;
mod report;

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use holder::describe_holder;
use procfs::ProcError;
use switchboard_handlers::Proto;

use owners::{Owners, find_owners, user_names};
use proc_net::{SocketEntry, read_table, tables};
use report::{Held, Owner};

/// Arguments of `switchboard port`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 when some socket uses the port, 1 when the port is free, \
2 on a usage error or when /proc cannot be read.")]
pub struct PortArgs {
    /// The port to look up (the local port of the sockets to show).
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Only TCP sockets.
    #[arg(long, conflicts_with = "udp")]
    tcp: bool,
    /// Only UDP sockets.
    #[arg(long)]
    udp: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What can go wrong while reading /proc.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A socket table could not be read.
    #[error("cannot read the socket table {}", path.display())]
    ReadTable {
        /// The table, e.g. /proc/net/tcp.
        path: PathBuf,
        /// Why.
        source: ProcError,
    },
    /// The process list could not be read.
    #[error("cannot list the processes in {}", path.display())]
    ListProcesses {
        /// Usually /proc.
        path: PathBuf,
        /// Why.
        source: ProcError,
    },
}

/// Exit status for failures: 1 already means "the port is free", so a script must not read a
/// failure as that.
const EXIT_TROUBLE: u8 = 2;

/// `switchboard port`.
pub fn run(args: PortArgs) -> anyhow::Result<ExitCode> {
    let protos: &[Proto] = match (args.tcp, args.udp) {
        (true, false) => &[Proto::Tcp],
        (false, true) => &[Proto::Udp],
        _ => &[Proto::Tcp, Proto::Udp],
    };
    let held = match lookup(Path::new("/proc"), protos, args.port) {
        Ok(held) => held,
        Err(e) => {
            eprintln!("switchboard: error: {:#}", anyhow::Error::from(e));
            return Ok(ExitCode::from(EXIT_TROUBLE));
        }
    };
    let text = if args.json {
        report::json(args.port, &held)
    } else {
        report::table(args.port, protos, &held)
    };
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => {}
        // `switchboard port 80 | head -1`: the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            eprintln!("switchboard: error: cannot write the result: {e}");
            return Ok(ExitCode::from(EXIT_TROUBLE));
        }
    }
    Ok(if held.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Every socket of `protos` on local port `port`, with its owners, sorted for display.
fn lookup(proc_root: &Path, protos: &[Proto], port: u16) -> Result<Vec<Held>, PortError> {
    let sockets = read_sockets(proc_root, protos, port)?;
    let wanted: HashSet<u64> = sockets
        .iter()
        .map(|s| s.inode)
        .filter(|&i| i != 0)
        .collect();
    let owners =
        find_owners(proc_root, &wanted, false).map_err(|source| PortError::ListProcesses {
            path: proc_root.to_owned(),
            source,
        })?;
    let users = user_names(sockets.iter().map(|s| s.uid));
    let mut held: Vec<Held> = sockets
        .into_iter()
        .map(|socket| {
            let owner = owner_of(&socket, &owners);
            let user = users
                .get(&socket.uid)
                .cloned()
                .unwrap_or_else(|| socket.uid.to_string());
            Held {
                socket,
                user,
                owner,
            }
        })
        .collect();
    held.sort_by(|a, b| {
        let key = |h: &Held| {
            (
                h.socket.proto == Proto::Udp,
                !h.socket.is_listening(),
                h.socket.local,
                h.socket.remote,
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(held)
}

fn owner_of(socket: &SocketEntry, owners: &Owners) -> Owner {
    match owners.by_inode.get(&socket.inode) {
        Some(processes) => Owner::Processes(processes.clone()),
        None if socket.inode != 0 && owners.partial_view => Owner::NotVisible,
        None => Owner::NoProcess,
    }
}

/// The sockets of `protos` whose local port is `port`, from both IPv4 and IPv6 tables.
fn read_sockets(
    proc_root: &Path,
    protos: &[Proto],
    port: u16,
) -> Result<Vec<SocketEntry>, PortError> {
    let mut sockets = Vec::new();
    for &proto in protos {
        for path in tables(proto, proc_root) {
            let table =
                read_table(proto, &path).map_err(|source| PortError::ReadTable { path, source })?;
            sockets.extend(table.into_iter().filter(|s| s.local.port() == port));
        }
    }
    Ok(sockets)
}
