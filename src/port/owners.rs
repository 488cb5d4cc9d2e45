//! Who holds a socket: one pass over the descriptors of every process (procfs), process
//! names from /proc/PID/stat, user names from the system's user database (NSS, so LDAP,
//! sssd and systemd's users are named too, not only those of /etc/passwd).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use nix::unistd::{Uid, User};
use procfs::ProcError;
use procfs::process::FDTarget;

/// A process that has a socket open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    /// From /proc/PID/comm, escaped for a terminal; `?` when it could not be read.
    pub(crate) name: String,
}

/// The result of one pass over /proc/*/fd.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    /// Socket inode -> the processes that have it open, in pid order.
    pub(crate) by_inode: HashMap<u64, Vec<Process>>,
    /// Some processes' descriptors could not be read (another user's process, no root, or
    /// /proc mounted with hidepid), so a socket missing from `by_inode` may still be held.
    pub(crate) partial_view: bool,
}

/// Find the processes holding the `wanted` socket inodes in one pass over `proc_root/*/fd`.
///
/// With `stop_early`, the pass ends as soon as every inode has one holder, so a socket shared
/// by several processes (inherited across fork) may list only the first of them.
pub(crate) fn find_owners(
    proc_root: &Path,
    wanted: &HashSet<u64>,
    stop_early: bool,
) -> Result<Owners, ProcError> {
    let mut owners = Owners {
        // Only root sees every process's descriptors.
        partial_view: !rustix::process::geteuid().is_root(),
        ..Owners::default()
    };
    if wanted.is_empty() {
        return Ok(owners);
    }
    let mut held = Vec::new();
    // A process that exits during the pass, or a kernel thread, is simply skipped.
    for process in procfs::process::all_processes_with_root(proc_root)?.flatten() {
        let Ok(pid) = u32::try_from(process.pid) else {
            continue;
        };
        let fds = match process.fd() {
            Ok(fds) => fds,
            Err(ProcError::PermissionDenied(_)) => {
                owners.partial_view = true;
                continue;
            }
            Err(_) => continue,
        };
        held.clear();
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target
                && wanted.contains(&inode)
                && !held.contains(&inode)
            {
                held.push(inode);
            }
        }
        if held.is_empty() {
            continue;
        }
        let name = process
            .stat()
            .map_or_else(|_| "?".to_owned(), |stat| printable(&stat.comm));
        let process = Process { pid, name };
        for inode in &held {
            owners
                .by_inode
                .entry(*inode)
                .or_default()
                .push(process.clone());
        }
        if stop_early && owners.by_inode.len() == wanted.len() {
            break;
        }
    }
    for processes in owners.by_inode.values_mut() {
        processes.sort_by_key(|p| p.pid);
    }
    Ok(owners)
}

/// Escape control characters so that a process may not write to our terminal through its name.
pub(crate) fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Names of the given uids from the user database (getpwuid_r, through NSS); a uid it does
/// not know is shown as its number.
pub(crate) fn user_names(uids: impl IntoIterator<Item = u32>) -> HashMap<u32, String> {
    uids.into_iter()
        .collect::<HashSet<u32>>()
        .into_iter()
        .map(|uid| {
            let name = match User::from_uid(Uid::from_raw(uid)) {
                Ok(Some(user)) if !user.name.is_empty() => printable(&user.name),
                _ => uid.to_string(),
            };
            (uid, name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn users_are_named_through_the_user_database_and_unknown_uids_numbered() {
        // Four thousand million is above any allocated range (systemd's end at 2^31).
        let names = user_names([0, 4_000_000_123, 0]);
        assert_eq!(names.len(), 2);
        assert_eq!(names[&0], "root");
        assert_eq!(names[&4_000_000_123], "4000000123");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("nc"), "nc");
        assert_eq!(printable("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(printable("客服"), "客服");
    }

    #[test]
    fn the_own_listener_is_found_in_the_real_proc() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .unwrap()
            .ino();
        let owners = find_owners(Path::new("/proc"), &HashSet::from([inode]), true).unwrap();
        let holders = &owners.by_inode[&inode];
        let me = holders
            .iter()
            .find(|p| p.pid == std::process::id())
            .unwrap_or_else(|| panic!("{holders:?}"));
        // The test binary's name, as the kernel keeps it (15 bytes at most).
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(me.name, comm.trim_end());
    }

    #[test]
    fn no_proc_is_an_error() {
        assert!(find_owners(Path::new("/nonexistent"), &HashSet::from([1]), false).is_err());
    }
}
