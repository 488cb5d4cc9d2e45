//! Dropping root after binding (`[daemon] user` / `group`), so that a daemon started as root
//! to bind a low port serves as an ordinary user.
//!
//! What the daemon made while root and must still use afterwards (the control socket and its
//! folder, the log file) is given to that user through open descriptors, never by path: a
//! path can be swapped for a symbolic link between the moment it is checked and the `chown`.

use std::ffi::CString;
use std::os::fd::BorrowedFd;

use anyhow::{Context, bail};
use nix::unistd::{Gid, Group, Uid, User};
use rustix::fs::{AtFlags, chownat};
use tracing::info;

/// The account the daemon serves as after binding, looked up once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// `[daemon] user`.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// `[daemon] group`'s gid, or the user's primary group.
    pub gid: u32,
}

/// Something made while root that the daemon's user must own after the drop, by its open
/// descriptor (a directory, a file, or an `O_PATH` descriptor of a socket's node).
#[derive(Debug)]
pub struct Handover<'a> {
    /// What it is, for an error message: "control socket /run/x/a.sock".
    pub what: String,
    /// The open descriptor.
    pub fd: BorrowedFd<'a>,
}

/// Look up `[daemon] user` and `group` (through NSS, as `getpwnam_r`/`getgrnam_r` do).
/// `None` when no user is set; an error when it is set but the daemon does not run as root,
/// or the user or group does not exist.
pub fn run_as(user: Option<&str>, group: Option<&str>) -> anyhow::Result<Option<RunAs>> {
    let Some(user) = user else {
        return Ok(None);
    };
    if !rustix::process::geteuid().is_root() {
        bail!(
            "[daemon] user = {user:?} needs the daemon to start as root (it is not); remove it or start as root"
        );
    }
    let account = User::from_name(user)
        .with_context(|| format!("[daemon] user = {user:?}: cannot look it up"))?
        .with_context(|| format!("[daemon] user = {user:?}: no such user"))?;
    let gid = match group {
        Some(g) => {
            Group::from_name(g)
                .with_context(|| format!("[daemon] group = {g:?}: cannot look it up"))?
                .with_context(|| format!("[daemon] group = {g:?}: no such group"))?
                .gid
        }
        None => account.gid,
    };
    Ok(Some(RunAs {
        user: user.to_owned(),
        uid: account.uid.as_raw(),
        gid: gid.as_raw(),
    }))
}

/// The uid the daemon serves as: `run_as`'s, or its own when it does not drop privileges.
pub fn serving_uid(run_as: Option<&RunAs>) -> u32 {
    run_as.map_or_else(|| rustix::process::geteuid().as_raw(), |r| r.uid)
}

/// Switch to `run_as` (nothing to do for `None`), giving it what is in `owned` first.
pub fn drop_to(run_as: Option<&RunAs>, owned: &[Handover<'_>]) -> anyhow::Result<()> {
    let Some(RunAs { user, uid, gid }) = run_as else {
        return Ok(());
    };
    let (uid, gid) = (*uid, *gid);
    for item in owned {
        // An empty path with AT_EMPTY_PATH changes the descriptor's own file, whatever kind
        // of descriptor it is (fchown refuses O_PATH ones).
        chownat(
            item.fd,
            "",
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH,
        )
        .with_context(|| format!("cannot give the {} to {user}", item.what))?;
    }
    let name = CString::new(user.as_str()).context("user name")?;
    // Order matters: groups and gid must change while we are still root. nix calls the C
    // library's functions, which change the credentials of every thread of the process.
    nix::unistd::initgroups(&name, Gid::from_raw(gid))
        .with_context(|| format!("initgroups({user})"))?;
    nix::unistd::setgid(Gid::from_raw(gid)).with_context(|| format!("setgid({gid})"))?;
    nix::unistd::setuid(Uid::from_raw(uid)).with_context(|| format!("setuid({uid})"))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!("privileges were not dropped: setuid(0) still succeeds");
    }
    info!(
        event = "privileges_dropped",
        user, uid, gid, "dropped root privileges"
    );
    Ok(())
}

/// The uid and gid a child runs as (`exec`'s `user` and `group`, by name or number); a user
/// without a group gets the user's primary group.
pub fn child_ids(
    user: Option<&str>,
    group: Option<&str>,
) -> anyhow::Result<(Option<u32>, Option<u32>)> {
    let (uid, primary) = match user {
        None => (None, None),
        Some(u) => match u.parse::<u32>() {
            Ok(n) => (Some(n), None),
            Err(_) => {
                let a = User::from_name(u)
                    .with_context(|| format!("user {u:?}: cannot look it up"))?
                    .with_context(|| format!("user {u:?}: no such user"))?;
                (Some(a.uid.as_raw()), Some(a.gid.as_raw()))
            }
        },
    };
    let gid = match group {
        None => primary,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => Group::from_name(g)
                .with_context(|| format!("group {g:?}: cannot look it up"))?
                .with_context(|| format!("group {g:?}: no such group"))?
                .gid
                .as_raw(),
        }),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_user_means_no_drop() {
        assert_eq!(run_as(None, Some("nogroup")).unwrap(), None);
        drop_to(None, &[]).unwrap();
    }

    #[test]
    fn an_unknown_user_or_group_is_named() {
        if !rustix::process::geteuid().is_root() {
            let e = run_as(Some("root"), None).unwrap_err();
            assert!(
                format!("{e:#}").contains("needs the daemon to start as root"),
                "{e:#}"
            );
            return;
        }
        let e = run_as(Some("no-such-user-here"), None).unwrap_err();
        assert!(format!("{e:#}").contains("no such user"), "{e:#}");
        let e = run_as(Some("root"), Some("no-such-group-here")).unwrap_err();
        assert!(format!("{e:#}").contains("no such group"), "{e:#}");
        let root = run_as(Some("root"), None).unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
    }

    #[test]
    fn the_serving_uid_is_the_users_or_our_own() {
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(serving_uid(None), me);
        let nobody = RunAs {
            user: "nobody".into(),
            uid: 65534,
            gid: 65534,
        };
        assert_eq!(serving_uid(Some(&nobody)), 65534);
    }
}
