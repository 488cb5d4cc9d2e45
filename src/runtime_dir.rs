//! The control socket's folder, prepared as tmux, ssh-agent and systemd prepare theirs.
//!
//! A daemon started as root must not be led by another local user into deleting, creating or
//! chowning files where that user chooses. So:
//! - the folder is created with mode 0700 when it is absent; when it is present it must be a
//!   real directory (opened with `O_NOFOLLOW | O_DIRECTORY`, checked with `fstat` on that
//!   descriptor) that belongs to the user the daemon serves as and that its group and others
//!   cannot use, or the daemon refuses it and says why;
//! - everything after that is done relative to the opened folder: the stale-socket check and
//!   removal (`fstatat`/`unlinkat`, only for a socket), the bind (through
//!   `/proc/self/fd/N/NAME`, which names the checked folder whatever happens to its path),
//!   the socket's mode (`fchmodat` in the folder) and owner (`fchownat` on an `O_PATH`
//!   descriptor of the socket's node; `fchmod`/`fchown` on the socket itself would change
//!   only the kernel's socket object, not the file);
//! - the socket file is removed when the [`ControlSocket`] guard drops, if it is still ours.
//!
//! The folders above the socket's folder are trusted as they are (`/tmp`, `/run`,
//! `$XDG_RUNTIME_DIR` or a folder the administrator chose).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::privileges::Handover;

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;

/// Why the control socket could not be set up. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    /// The path has no file name, or no folder.
    #[error("control socket {}: the path names no file in a folder", .0.display())]
    NoName(PathBuf),
    /// Too long for a Unix socket address.
    #[error("control socket {}: the path is {len} bytes long, a Unix socket's at most {SUN_PATH_MAX}; choose a shorter one", path.display())]
    TooLong {
        /// The socket.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// The folder could not be created or opened.
    #[error("cannot use the control socket folder {}: {source}", dir.display())]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The folder is a symbolic link.
    #[error("the control socket folder {} is a symbolic link; refusing to follow it (remove it, or point control_socket at a real folder)", .0.display())]
    Symlink(PathBuf),
    /// Not a folder at all.
    #[error("the control socket folder {} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    /// Someone else's folder.
    #[error("the control socket folder {} belongs to uid {owner}, but the daemon serves as uid {serving}; another user may have made it: remove it, or set [daemon] control_socket elsewhere", dir.display())]
    Owner {
        /// The folder.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// Who it should belong to.
        serving: u32,
    },
    /// Group or others may use the folder.
    #[error("the control socket folder {} has mode {mode:04o}: its group and other users can use it; make it 0700 (chmod 700 {})", dir.display(), dir.display())]
    Mode {
        /// The folder.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file that is not a socket has the socket's name.
    #[error("{} exists and is not a socket; refusing to remove it", .0.display())]
    NotASocket(PathBuf),
    /// Another daemon answers on the socket.
    #[error("control socket {} is in use by another running daemon; stop it or set [daemon] control_socket", .0.display())]
    InUse(PathBuf),
    /// bind(2) or a step after it failed.
    #[error("cannot create control socket {}: {source}", path.display())]
    Bind {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl RuntimeDirError {
    /// A short stable name for logs and tests: `symlink`, `owner`, `mode`, ...
    pub fn reason(&self) -> &'static str {
        match self {
            RuntimeDirError::NoName(_) => "no_name",
            RuntimeDirError::TooLong { .. } => "too_long",
            RuntimeDirError::Folder { .. } => "folder",
            RuntimeDirError::Symlink(_) => "symlink",
            RuntimeDirError::NotAFolder(_) => "not_a_folder",
            RuntimeDirError::Owner { .. } => "owner",
            RuntimeDirError::Mode { .. } => "mode",
            RuntimeDirError::NotASocket(_) => "not_a_socket",
            RuntimeDirError::InUse(_) => "in_use",
            RuntimeDirError::Bind { .. } => "bind",
        }
    }
}

/// The [`RuntimeDirError::reason`] of an error that is one, else `other`.
pub fn reason_of(e: &anyhow::Error) -> &'static str {
    e.downcast_ref::<RuntimeDirError>()
        .map_or("other", RuntimeDirError::reason)
}

/// A folder opened with `O_NOFOLLOW | O_DIRECTORY` and found to be ours alone.
#[derive(Debug)]
pub struct CheckedDir {
    fd: OwnedFd,
    path: PathBuf,
    /// (device, inode) of the folder.
    id: (u64, u64),
}

impl CheckedDir {
    /// The descriptor every later step is relative to.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path to `name` inside this very folder, for the calls that take only a path (bind,
    /// connect): `/proc/self/fd/N/name`, which names the folder whatever becomes of its path.
    fn path_of(&self, name: &OsStr) -> io::Result<PathBuf> {
        self.path_of_in(Path::new("/proc/self/fd"), name)
    }

    fn path_of_in(&self, proc_fds: &Path, name: &OsStr) -> io::Result<PathBuf> {
        let link = proc_fds.join(self.fd.as_raw_fd().to_string());
        if rustix::fs::stat(&link).is_ok_and(|st| node_id(&st) == self.id) {
            return Ok(link.join(name));
        }
        // Without /proc (a bare chroot): the folder's own path, as long as it still leads
        // to the folder that was checked. Only its parents, which are trusted, could change
        // that in between.
        match rustix::fs::stat(&self.path) {
            Ok(st) if node_id(&st) == self.id => Ok(self.path.join(name)),
            Ok(_) => Err(io::Error::other(format!(
                "{} was replaced while in use",
                self.path.display()
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

/// Open `dir` as the private folder of a daemon serving as `serving_uid`, creating it with
/// mode 0700 when absent (and its parents, with the usual modes).
///
/// A folder that was there before must belong to `serving_uid`; one made now belongs to the
/// daemon's current user, which gives it away at the privilege drop. Either way no group or
/// other permission bit may be set.
pub fn open_private_dir(dir: &Path, serving_uid: u32) -> Result<CheckedDir, RuntimeDirError> {
    let folder_error = |source: io::Error| RuntimeDirError::Folder {
        dir: dir.to_owned(),
        source,
    };
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(folder_error)?;
    }
    // mkdir is the test for absence: no window between looking and creating.
    let created = match rustix::fs::mkdir(dir, Mode::RWXU) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(folder_error(e.into())),
    };
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // With O_DIRECTORY, Linux reports a symlink as ENOTDIR: look again to say which.
        Errno::LOOP | Errno::NOTDIR => {
            match rustix::fs::lstat(dir).map(|st| FileType::from_raw_mode(st.st_mode)) {
                Ok(FileType::Symlink) => RuntimeDirError::Symlink(dir.to_owned()),
                _ => RuntimeDirError::NotAFolder(dir.to_owned()),
            }
        }
        e => folder_error(e.into()),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| folder_error(e.into()))?;
    let me = rustix::process::geteuid().as_raw();
    let owner = st.st_uid;
    if owner != serving_uid && !(created && owner == me) {
        return Err(RuntimeDirError::Owner {
            dir: dir.to_owned(),
            owner,
            serving: serving_uid,
        });
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o077 != 0 {
        return Err(RuntimeDirError::Mode {
            dir: dir.to_owned(),
            mode,
        });
    }
    Ok(CheckedDir {
        fd,
        path: dir.to_owned(),
        id: node_id(&st),
    })
}

/// The control socket's file: removed at drop, while it is still the one this guard made.
#[derive(Debug)]
pub struct ControlSocket {
    dir: CheckedDir,
    name: OsString,
    path: PathBuf,
    /// `O_PATH` descriptor of the socket's node, to set its mode and owner.
    node: OwnedFd,
    /// (device, inode) of that node: what drop removes, and nothing else.
    id: (u64, u64),
}

impl ControlSocket {
    /// The path clients connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its folder, checked (other private files of the daemon may go beside the socket).
    pub fn dir(&self) -> &CheckedDir {
        &self.dir
    }

    /// The folder and the socket file, for [`crate::privileges::drop_to`]: after the drop,
    /// the daemon's user must reach the socket and remove it at stop.
    pub fn handover(&self) -> [Handover<'_>; 2] {
        [
            Handover {
                what: format!("control socket folder {}", self.dir.path.display()),
                fd: self.dir.fd.as_fd(),
            },
            Handover {
                what: format!("control socket {}", self.path.display()),
                fd: self.node.as_fd(),
            },
        ]
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Ok(st) = rustix::fs::statat(&self.dir.fd, &self.name, AtFlags::SYMLINK_NOFOLLOW)
            && node_id(&st) == self.id
        {
            let _ = rustix::fs::unlinkat(&self.dir.fd, &self.name, AtFlags::empty());
        }
    }
}

fn node_id(st: &Stat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

/// Bind the control socket at `path` for a daemon serving as `serving_uid`: a non-blocking
/// listener, and the guard that removes the file when dropped.
///
/// The folder is checked as [`open_private_dir`] says. A stale socket file (from a crash) is
/// replaced; a live one (another daemon) is an error, and so is a file of any other kind.
/// The socket is made mode 0600.
pub fn bind_control_socket(
    path: &Path,
    serving_uid: u32,
) -> Result<(mio::net::UnixListener, ControlSocket), RuntimeDirError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(RuntimeDirError::NoName(path.to_owned()));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let len = path.as_os_str().as_bytes().len();
    if len > SUN_PATH_MAX {
        return Err(RuntimeDirError::TooLong {
            path: path.to_owned(),
            len,
        });
    }
    let dir = open_private_dir(dir, serving_uid)?;
    let bind_error = |source: io::Error| RuntimeDirError::Bind {
        path: path.to_owned(),
        source,
    };
    match rustix::fs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => {}
        Err(e) => return Err(bind_error(e.into())),
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Socket => {
            return Err(RuntimeDirError::NotASocket(path.to_owned()));
        }
        Ok(_) => {
            let live = dir.path_of(name).map_err(bind_error)?;
            if std::os::unix::net::UnixStream::connect(live).is_ok() {
                return Err(RuntimeDirError::InUse(path.to_owned()));
            }
            rustix::fs::unlinkat(&dir.fd, name, AtFlags::empty())
                .map_err(|e| bind_error(e.into()))?;
        }
    }
    let at = dir.path_of(name).map_err(bind_error)?;
    let listener = std::os::unix::net::UnixListener::bind(at).map_err(bind_error)?;
    // From here on the file exists: the guard removes it if a later step fails.
    let node = rustix::fs::openat(
        &dir.fd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| bind_error(e.into()))?;
    let st = rustix::fs::fstat(&node).map_err(|e| bind_error(e.into()))?;
    let guard = ControlSocket {
        name: name.to_owned(),
        path: path.to_owned(),
        id: node_id(&st),
        node,
        dir,
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(RuntimeDirError::NotASocket(path.to_owned()));
    }
    // Relative to the checked folder, where only this user (and root) can make entries.
    rustix::fs::chmodat(
        &guard.dir.fd,
        &guard.name,
        Mode::RUSR | Mode::WUSR,
        AtFlags::empty(),
    )
    .map_err(|e| bind_error(e.into()))?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok((mio::net::UnixListener::from_std(listener), guard))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    /// A private temporary folder (tempfile's mode follows the umask).
    fn tempdir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        tmp
    }

    #[test]
    fn an_absent_folder_is_made_0700_and_the_socket_0600_then_removed() {
        let tmp = tempdir();
        let path = tmp.path().join("run/sub/a.sock");
        let (listener, guard) = bind_control_socket(&path, me()).unwrap();
        let dir = std::fs::metadata(tmp.path().join("run/sub")).unwrap();
        assert_eq!(dir.mode() & 0o7777, 0o700);
        let sock = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(sock.mode() & 0o7777, 0o600);
        assert_eq!(guard.path(), path);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        drop(listener);
        drop(guard);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let tmp = tempdir();
        let path = tmp.path().join("a.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (listener, guard) = bind_control_socket(&path, me()).unwrap();
        let e = bind_control_socket(&path, me()).unwrap_err();
        assert_eq!(e.reason(), "in_use", "{e}");
        drop((listener, guard));
    }

    #[test]
    fn a_file_of_another_kind_is_left_alone() {
        let tmp = tempdir();
        let path = tmp.path().join("a.sock");
        std::fs::write(&path, "keep").unwrap();
        let e = bind_control_socket(&path, me()).unwrap_err();
        assert_eq!(e.reason(), "not_a_socket", "{e}");
        std::os::unix::fs::symlink("/nonexistent", tmp.path().join("b.sock")).unwrap();
        let e = bind_control_socket(&tmp.path().join("b.sock"), me()).unwrap_err();
        assert_eq!(e.reason(), "not_a_socket", "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep");
    }

    #[test]
    fn a_symlinked_open_or_foreign_folder_is_refused() {
        let tmp = tempdir();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let e = open_private_dir(&tmp.path().join("link"), me()).unwrap_err();
        assert_eq!(e.reason(), "symlink", "{e}");
        let e = open_private_dir(&real, me().wrapping_add(1)).unwrap_err();
        assert_eq!(e.reason(), "owner", "{e}");
        for mode in [0o750, 0o701, 0o1777] {
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = open_private_dir(&real, me()).unwrap_err();
            assert_eq!(e.reason(), "mode", "{mode:o}: {e}");
        }
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let e = open_private_dir(&tmp.path().join("file"), me()).unwrap_err();
        assert_eq!(e.reason(), "not_a_folder", "{e}");
    }

    #[test]
    fn the_guard_leaves_a_newer_socket_alone() {
        let tmp = tempdir();
        let path = tmp.path().join("a.sock");
        let (listener, guard) = bind_control_socket(&path, me()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop((listener, guard));
        assert!(path.exists());
        drop(other);
    }

    #[test]
    fn without_proc_the_folders_own_path_is_used_while_it_leads_there() {
        let tmp = tempdir();
        let dir = open_private_dir(&tmp.path().join("run"), me()).unwrap();
        let name = OsStr::new("a.sock");
        let with_proc = dir.path_of(name).unwrap();
        assert!(with_proc.starts_with("/proc/self/fd"), "{with_proc:?}");
        let none = Path::new("/nonexistent");
        assert_eq!(
            dir.path_of_in(none, name).unwrap(),
            tmp.path().join("run/a.sock")
        );
        std::fs::rename(tmp.path().join("run"), tmp.path().join("moved")).unwrap();
        std::fs::create_dir(tmp.path().join("run")).unwrap();
        assert!(dir.path_of_in(none, name).is_err());
        // Through /proc the moved folder is still the one.
        assert!(dir.path_of(name).unwrap().starts_with("/proc/self/fd"));
    }

    #[test]
    fn a_path_too_long_for_a_socket_address_is_named() {
        let long = format!("/tmp/{}/a.sock", "x".repeat(120));
        let e = bind_control_socket(Path::new(&long), me()).unwrap_err();
        assert_eq!(e.reason(), "too_long", "{e}");
    }
}
