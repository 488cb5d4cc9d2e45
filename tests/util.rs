//! Shared helpers: start the daemon on port 0, read its bound addresses from its logs.
#![allow(dead_code)]

use std::path::PathBuf;

/// Path of the built `switchboard` binary.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchboard"))
}
