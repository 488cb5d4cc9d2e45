//! The web console's token file: made at first start with a random token, readable only by the
//! daemon's user; read at later starts.
//!
//! Its folder is checked (or made 0700) as the control socket's is (`runtime_dir`): a real
//! folder of the daemon's user that nobody else can use. The file is then opened relative to
//! that folder without following links, made with `O_EXCL` and mode 0600 when absent, and
//! refused when it is anything but a regular file of ours that only we can read. A daemon
//! started as root gives it to its user at the privilege drop, through its descriptor.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::privileges::Handover;
use crate::runtime_dir::{CheckedDir, RuntimeDirError, open_private_dir};

/// The shortest token taken from a file someone wrote by hand.
const TOKEN_MIN: usize = 16;
/// The most of the file read.
const FILE_MAX: u64 = 4096;

/// The token, and the file it is kept in.
#[derive(Debug)]
pub(crate) struct TokenFile {
    pub(crate) token: String,
    pub(crate) path: PathBuf,
    /// Made now (rather than read).
    pub(crate) created: bool,
    fd: OwnedFd,
}

impl TokenFile {
    /// The file, for the privilege drop: the daemon's user must own it.
    pub(crate) fn handover(&self) -> Handover<'_> {
        Handover {
            what: format!("web token file {}", self.path.display()),
            fd: self.fd.as_fd(),
        }
    }
}

/// Read the token at `path`, or make the file with a new one, for a daemon serving as
/// `serving_uid`. `known` is a folder already checked (the control socket's, which a daemon
/// started as root made and gives to its user at the drop): a file in it is opened there.
pub(crate) fn read_or_create(
    path: &Path,
    serving_uid: u32,
    known: Option<&CheckedDir>,
) -> anyhow::Result<TokenFile> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("web token file {}: the path names no file", path.display());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let opened;
    let folder = match known.filter(|k| k.path() == dir) {
        Some(k) => k,
        None => {
            opened = open_private_dir(dir, serving_uid).map_err(|e| match e {
        RuntimeDirError::Owner { owner, serving, .. } => anyhow!(
            "the web token file's folder {} belongs to uid {owner}, but the daemon serves as \
             uid {serving}: choose a folder of the daemon's user (web_token_file)",
            dir.display()
        ),
        RuntimeDirError::Mode { mode, .. } => anyhow!(
            "the web token file's folder {} has mode {mode:04o}: other users can use it; make \
             it 0700 (chmod 700 {}) or choose another folder (web_token_file)",
            dir.display(),
            dir.display()
        ),
                other => anyhow!("web token file {}: {other}", path.display()),
            })?;
            &opened
        }
    };
    let me = rustix::process::geteuid().as_raw();
    let flags = OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(folder.fd(), name, OFlags::RDONLY | flags, Mode::empty()) {
        Ok(fd) => {
            let st = rustix::fs::fstat(&fd)
                .with_context(|| format!("web token file {}", path.display()))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                bail!("web token file {} is not a regular file", path.display());
            }
            if st.st_uid != serving_uid && st.st_uid != me {
                bail!(
                    "web token file {} belongs to uid {}, not to the daemon's user (uid {serving_uid}); remove it to have a new one made",
                    path.display(),
                    st.st_uid
                );
            }
            if st.st_mode & 0o077 != 0 {
                bail!(
                    "web token file {} has mode {:04o}: other users can read it; make it 0600 \
                     (chmod 600 {}), or remove it to have a new one made",
                    path.display(),
                    st.st_mode & 0o7777,
                    path.display()
                );
            }
            let mut text = String::new();
            std::fs::File::from(fd.try_clone()?)
                .take(FILE_MAX)
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read the web token file {}", path.display()))?;
            let token = text.trim().to_string();
            if token.len() < TOKEN_MIN || token.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                bail!(
                    "web token file {}: the token must be one word of at least {TOKEN_MIN} \
                     characters; remove the file to have a new one made",
                    path.display()
                );
            }
            Ok(TokenFile {
                token,
                path: path.to_owned(),
                created: false,
                fd,
            })
        }
        Err(Errno::NOENT) => {
            let fd = rustix::fs::openat(
                folder.fd(),
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | flags,
                Mode::RUSR | Mode::WUSR,
            )
            .with_context(|| format!("cannot create the web token file {}", path.display()))?;
            let token = super::auth::random_hex(32);
            let mut file = std::fs::File::from(fd.try_clone()?);
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write the web token file {}", path.display()))?;
            Ok(TokenFile {
                token,
                path: path.to_owned(),
                created: true,
                fd,
            })
        }
        Err(e) => {
            Err(anyhow!(e).context(format!("cannot open the web token file {}", path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    fn private() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        tmp
    }

    #[test]
    fn made_once_readable_only_by_us_then_read_back() {
        let tmp = private();
        let path = tmp.path().join("run/web-token");
        let first = read_or_create(&path, me(), None).unwrap();
        assert!(first.created);
        assert_eq!(first.token.len(), 64);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(
            std::fs::metadata(tmp.path().join("run")).unwrap().mode() & 0o777,
            0o700
        );
        let again = read_or_create(&path, me(), None).unwrap();
        assert!(!again.created);
        assert_eq!(again.token, first.token);
    }

    #[test]
    fn a_file_others_can_read_a_link_or_a_short_token_is_refused() {
        let tmp = private();
        let path = tmp.path().join("web-token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_or_create(&path, me(), None).unwrap_err().to_string();
        assert!(e.contains("mode 0644"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_or_create(&path, me(), None).unwrap().token,
            "0123456789abcdef0123"
        );
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_or_create(&path, me(), None).is_err());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(read_or_create(&link, me(), None).is_err());
    }

    #[test]
    fn a_folder_others_can_use_is_refused() {
        let tmp = private();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = read_or_create(&open.join("t"), me(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode 0755"), "{e}");
        assert!(!open.join("t").exists());
    }
}
