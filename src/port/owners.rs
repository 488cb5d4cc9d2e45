//! Who holds a socket: one pass over /proc/*/fd, process names from /proc/PID/comm, user
//! names from /etc/passwd.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
) -> io::Result<Owners> {
    let mut owners = Owners {
        partial_view: !is_root(proc_root),
        ..Owners::default()
    };
    if wanted.is_empty() {
        return Ok(owners);
    }
    let mut held = Vec::new();
    for entry in std::fs::read_dir(proc_root)?.flatten() {
        let Some(pid) = parse_pid(&entry.file_name()) else {
            continue;
        };
        let fds = match std::fs::read_dir(entry.path().join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                owners.partial_view = true;
                continue;
            }
            Err(_) => continue, // the process exited meanwhile, or a kernel thread
        };
        held.clear();
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode(target.as_os_str())
                && wanted.contains(&inode)
                && !held.contains(&inode)
            {
                held.push(inode);
            }
        }
        if held.is_empty() {
            continue;
        }
        let process = Process {
            pid,
            name: read_comm(&entry.path().join("comm")),
        };
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

/// Directory names of /proc that are processes.
fn parse_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    if !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// `socket:[12345]` (the target of a /proc/PID/fd link) -> 12345.
pub(crate) fn socket_inode(link: &OsStr) -> Option<u64> {
    let digits = link
        .as_bytes()
        .strip_prefix(b"socket:[")?
        .strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether we see every process: /proc/self belongs to the effective uid.
fn is_root(proc_root: &Path) -> bool {
    std::fs::metadata(proc_root.join("self")).is_ok_and(|m| m.uid() == 0)
}

fn read_comm(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let name = String::from_utf8_lossy(&bytes);
            printable(name.strip_suffix('\n').unwrap_or(&name))
        }
        Err(_) => "?".to_owned(),
    }
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

/// Names of the given uids from /etc/passwd; a uid it does not list is shown as its number.
pub(crate) fn user_names(uids: impl IntoIterator<Item = u32>) -> HashMap<u32, String> {
    let passwd = std::fs::read("/etc/passwd").unwrap_or_default();
    names_from_passwd(&String::from_utf8_lossy(&passwd), uids)
}

pub(crate) fn names_from_passwd(
    passwd: &str,
    uids: impl IntoIterator<Item = u32>,
) -> HashMap<u32, String> {
    let mut names: HashMap<u32, String> = uids.into_iter().map(|u| (u, u.to_string())).collect();
    let mut missing: HashSet<u32> = names.keys().copied().collect();
    for line in passwd.lines() {
        if missing.is_empty() {
            break;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_password), Some(uid)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        // The first entry for a uid wins, as with getpwuid(3).
        if !name.is_empty() && missing.remove(&uid) {
            names.insert(uid, printable(name));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_give_their_inode() {
        assert_eq!(socket_inode(OsStr::new("socket:[12345]")), Some(12345));
        for other in [
            "pipe:[12345]",
            "/dev/null",
            "socket:[]",
            "socket:[12a]",
            "socket:[+1]",
            "socket:[1",
            "socket:[99999999999999999999999]",
            "anon_inode:[eventpoll]",
        ] {
            assert_eq!(socket_inode(OsStr::new(other)), None, "{other}");
        }
        let not_utf8 = OsStr::from_bytes(b"socket:[\xff]");
        assert_eq!(socket_inode(not_utf8), None);
    }

    #[test]
    fn only_numeric_proc_entries_are_processes() {
        assert_eq!(parse_pid(OsStr::new("4242")), Some(4242));
        for other in ["self", "net", "+1", "", "99999999999"] {
            assert_eq!(parse_pid(OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn passwd_names_the_uids_it_lists_and_numbers_the_rest() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # a comment\n\
                      garbage\n\
                      bad:x:notanumber:0::/:/bin/sh\n\
                      alice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
                      shadow-alice:x:1000:1000::/:/bin/sh\n\
                      \x1b[31mred:x:1001:1001::/:/bin/sh\n";
        let names = names_from_passwd(passwd, [0, 1000, 1001, 4242]);
        assert_eq!(names[&0], "root");
        assert_eq!(names[&1000], "alice");
        assert_eq!(names[&1001], "\\u{1b}[31mred");
        assert_eq!(names[&4242], "4242");
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
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            listener.as_raw_fd()
        }))
        .unwrap()
        .ino();
        let owners = find_owners(Path::new("/proc"), &HashSet::from([inode]), true).unwrap();
        let holders = &owners.by_inode[&inode];
        assert!(
            holders.iter().any(|p| p.pid == std::process::id()),
            "{holders:?}"
        );
    }
}
