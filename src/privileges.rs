//! Dropping root after binding (`[daemon] user` / `group`), so that a daemon started as root
//! to bind a low port serves as an ordinary user.

use std::ffi::CString;

use anyhow::{Context, bail};
use tracing::info;

/// Switch to `user` (and `group`, or the user's primary group) when running as root. Nothing
/// to do when `user` is `None`; an error when it is set but we are not root.
/// Files made while root (the control socket, the log file) are given to the user first, so
/// that it can still use them.
pub fn drop_to(
    user: Option<&str>,
    group: Option<&str>,
    owned: &[&std::path::Path],
) -> anyhow::Result<()> {
    let Some(user) = user else {
        return Ok(());
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "[daemon] user = {user:?} needs the daemon to start as root (it is not); remove it or start as root"
        );
    }
    let (uid, primary) = lookup_user(user)?;
    let gid = match group {
        Some(g) => lookup_group(g)?,
        None => primary,
    };
    for path in owned {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {} to {user}", path.display()))?;
    }
    let name = CString::new(user).context("user name")?;
    // SAFETY: plain libc calls with valid arguments; their results are checked. Order matters:
    // groups and gid must change while we are still root.
    unsafe {
        if libc::initgroups(name.as_ptr(), gid) != 0 {
            bail!("initgroups({user}): {}", std::io::Error::last_os_error());
        }
        if libc::setgid(gid) != 0 {
            bail!("setgid({gid}): {}", std::io::Error::last_os_error());
        }
        if libc::setuid(uid) != 0 {
            bail!("setuid({uid}): {}", std::io::Error::last_os_error());
        }
        if libc::setuid(0) == 0 {
            bail!("privileges were not dropped: setuid(0) still succeeds");
        }
    }
    info!(
        event = "privileges_dropped",
        user, uid, gid, "dropped root privileges"
    );
    Ok(())
}

fn lookup_user(user: &str) -> anyhow::Result<(libc::uid_t, libc::gid_t)> {
    let name = CString::new(user).context("user name")?;
    // SAFETY: getpwnam returns a pointer to static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("user {user:?}: no such user");
    }
    // SAFETY: non-null pointer from getpwnam.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn lookup_group(group: &str) -> anyhow::Result<libc::gid_t> {
    let name = CString::new(group).context("group name")?;
    // SAFETY: getgrnam returns a pointer to static storage or null; read at once.
    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
    if gr.is_null() {
        bail!("group {group:?}: no such group");
    }
    // SAFETY: non-null pointer from getgrnam.
    Ok(unsafe { (*gr).gr_gid })
}

/// The uid and gid a child runs as: `user` and `group` by name or number; a user without a
/// group gets the user's primary group.
pub fn child_ids(
    user: Option<&str>,
    group: Option<&str>,
) -> anyhow::Result<(Option<libc::uid_t>, Option<libc::gid_t>)> {
    let (uid, primary) = match user {
        None => (None, None),
        Some(u) => match u.parse::<libc::uid_t>() {
            Ok(n) => (Some(n), None),
            Err(_) => {
                let (uid, gid) = lookup_user(u)?;
                (Some(uid), Some(gid))
            }
        },
    };
    let gid = match group {
        None => primary,
        Some(g) => Some(match g.parse::<libc::gid_t>() {
            Ok(n) => n,
            Err(_) => lookup_group(g)?,
        }),
    };
    Ok((uid, gid))
}
