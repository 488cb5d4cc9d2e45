//! Opening `log_file` without being led astray by another local user.
//!
//! The daemon opens its log file as root, before it drops to `[daemon] user`. A symbolic
//! link or a hard link that another user placed at that path must not make root append to,
//! or give away, a file of that user's choosing. Two cases:
//!
//! - `log_rotation = "never"` (the default): the file is opened here with `O_NOFOLLOW`
//!   (a symbolic link is refused), `O_NONBLOCK` (a FIFO cannot hang the open) and checked on
//!   the open descriptor: a regular file, with one name only (a hard link to another file
//!   is refused), belonging to the daemon's current user or to the user it serves as. The
//!   writer is that descriptor, and the privilege drop gives it to the daemon's user with
//!   `fchown` on it ([`LogFile::handover`]). A character device that root owns (`/dev/null`
//!   to throw the lines away, a console) is taken too: only root can make a device node, so
//!   nobody else can have put it there; it is written to as it is and never given away.
//! - `hourly` / `daily`: tracing-appender opens a new file by name at each period and cannot
//!   be given a descriptor, so the folder itself must be one only root or the daemon's user
//!   can write to (no group or other write bit, sticky or not); another user then has no way
//!   to place anything there. Such files are not given away at the drop, as before.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::privileges::Handover;

/// The log file the installed logger writes to, by descriptor.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    fd: OwnedFd,
    /// A regular file, which the privilege drop gives to the daemon's user (a device is not).
    regular: bool,
}

impl LogFile {
    /// A second handle on the same file.
    pub(super) fn try_clone(&self) -> Option<LogFile> {
        Some(LogFile {
            path: self.path.clone(),
            fd: self.fd.try_clone().ok()?,
            regular: self.regular,
        })
    }

    /// For [`crate::privileges::drop_to`]: `None` for a device, which stays root's.
    pub fn handover(&self) -> Option<Handover<'_>> {
        self.regular.then(|| Handover {
            what: format!("log file {}", self.path.display()),
            fd: self.fd.as_fd(),
        })
    }
}

fn refused(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("log_file {}: {why}", path.display()))
}

/// Open `path` for appending as the module doc says, for a daemon serving as `serving_uid`.
/// Returns the file for the writer and a second descriptor of it for the privilege drop.
pub(super) fn open_append(path: &Path, serving_uid: u32) -> io::Result<(File, LogFile)> {
    let fd = rustix::fs::open(
        path,
        OFlags::WRONLY
            | OFlags::APPEND
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map_err(|e| match e {
        Errno::LOOP => refused(
            path,
            "is a symbolic link; refusing to follow it (remove it, or name the real file)",
        ),
        Errno::NXIO => refused(path, "is a FIFO or socket, not a regular file"),
        e => refused(path, format!("cannot open it: {}", io::Error::from(e))),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| refused(path, io::Error::from(e)))?;
    let regular = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => true,
        FileType::CharacterDevice if st.st_uid == 0 => false,
        FileType::CharacterDevice => {
            return Err(refused(
                path,
                format!("is a device that belongs to uid {}, not to root", st.st_uid),
            ));
        }
        _ => {
            return Err(refused(
                path,
                "is not a regular file (nor a device such as /dev/null)",
            ));
        }
    };
    if st.st_nlink > 1 {
        return Err(refused(
            path,
            format!(
                "has {} hard links; refusing to write to a file that has other names (another user may have linked it there)",
                st.st_nlink
            ),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if regular && st.st_uid != me && st.st_uid != serving_uid {
        return Err(refused(
            path,
            format!(
                "belongs to uid {}, but the daemon serves as uid {serving_uid}; another user may have made it: remove it, or give it to that uid",
                st.st_uid
            ),
        ));
    }
    let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| refused(path, io::Error::from(e)))?;
    rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)
        .map_err(|e| refused(path, io::Error::from(e)))?;
    let handle = LogFile {
        path: path.to_owned(),
        fd: fd.try_clone()?,
        regular,
    };
    Ok((File::from(fd), handle))
}

/// Check that only root, the daemon's current user or the user it serves as can make files
/// in `dir`, as rotating logs need.
pub(super) fn check_rotation_folder(dir: &Path, serving_uid: u32) -> io::Result<()> {
    let st = rustix::fs::stat(dir).map_err(|e| {
        io::Error::other(format!(
            "cannot check log folder {}: {}",
            dir.display(),
            io::Error::from(e)
        ))
    })?;
    let me = rustix::process::geteuid().as_raw();
    let trusted = [0, me, serving_uid];
    let mode = st.st_mode & 0o7777;
    if !trusted.contains(&st.st_uid) || mode & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "log folder {} (uid {}, mode {mode:04o}) can be written by other users: with log_rotation \
             hourly or daily the daemon opens each new file there by name, and another user could put a \
             symbolic link in its place; use a folder that only root or the daemon's user can write to, \
             or log_rotation = \"never\"",
            dir.display(),
            st.st_uid,
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn a_new_file_is_made_and_appended_to() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.log");
        std::fs::write(&path, "first\n").unwrap();
        let (mut file, handle) = open_append(&path, me()).unwrap();
        file.write_all(b"second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n");
        assert_eq!(
            handle.handover().unwrap().what,
            format!("log file {}", path.display())
        );
    }

    #[test]
    fn dev_null_is_taken_and_never_given_away() {
        let path = Path::new("/dev/null");
        let (mut file, handle) = open_append(path, 4242).unwrap();
        file.write_all(b"gone\n").unwrap();
        assert!(handle.handover().is_none());
        assert!(handle.try_clone().unwrap().handover().is_none());
    }

    #[test]
    fn symlinks_hard_links_fifos_and_folders_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, "keep\n").unwrap();
        let link = tmp.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_append(&link, me()).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let hard = tmp.path().join("hard.log");
        std::fs::hard_link(&target, &hard).unwrap();
        let e = open_append(&hard, me()).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
        let fifo = tmp.path().join("fifo.log");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(open_append(&fifo, me()).is_err());
        assert!(open_append(tmp.path(), me()).is_err());
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: giving a file to another user needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("theirs.log");
        std::fs::write(&path, "").unwrap();
        std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
        let e = open_append(&path, me()).unwrap_err();
        assert!(e.to_string().contains("uid 4242"), "{e}");
        // ... unless the daemon serves as that user.
        open_append(&path, 4242).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), 4242);
    }

    #[test]
    fn rotation_needs_a_folder_others_cannot_write_to() {
        let tmp = tempfile::tempdir().unwrap();
        check_rotation_folder(tmp.path(), me()).unwrap();
        for mode in [0o1777, 0o775, 0o757] {
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let e = check_rotation_folder(tmp.path(), me()).unwrap_err();
            assert!(
                e.to_string().contains("can be written by other users"),
                "{e}"
            );
        }
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        check_rotation_folder(tmp.path(), me()).unwrap();
    }
}
