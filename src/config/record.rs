//! `[listener.record]`: recordings of every read and write of a listener's sessions.

use std::path::{Path, PathBuf};

use toml::de::DeValue;

use super::read::{Fields, IntRange};
use super::validate::Validator;

const RECORD_KEYS: &[&str] = &["dir", "formats", "max_bytes"];
const FORMATS: &[&str] = &["jsonl", "pcapng"];
/// Default `max_bytes`: what a listener's recordings may take on disk.
pub const DEFAULT_RECORD_MAX_BYTES: u64 = 64 << 20;

/// Where and how a listener's sessions are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// The folder (relative paths from the config's folder).
    pub dir: PathBuf,
    /// One JSON object per line: each read, write, open and close.
    pub jsonl: bool,
    /// One packet capture per session, with synthesized IP and TCP/UDP headers.
    pub pcapng: bool,
    /// The most the listener's recordings take; the oldest files go first.
    pub max_bytes: u64,
}

impl RecordConfig {
    /// Make the folder if needed and check that a file can be written in it: an error to
    /// show at start or reload.
    pub fn check_writable(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let probe = self
            .dir
            .join(format!(".switchboard-probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .map_err(|e| format!("cannot write in {}: {e}", self.dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }
}

impl Validator<'_> {
    /// The listener's `record` table, if it has one.
    pub(super) fn record(&mut self, f: &mut Fields<'_>, dir: &Path) -> Option<RecordConfig> {
        let v = f.take_value("record")?;
        let key = f.key("record");
        let span = v.span();
        let DeValue::Table(t) = v.into_inner() else {
            self.error(
                Some(span),
                Some(key),
                "expected a table: write `[listener.record]` with `dir = \"...\"` under the listener",
            );
            return None;
        };
        let mut r = self.fields(&key, span, t, RECORD_KEYS, &[]);
        self.require(&r, &[("dir", "the folder recordings go to")]);
        let folder = self.string(&mut r, "dir");
        let mut jsonl = true;
        let mut pcapng = true;
        if let Some(list) = self.strings(&mut r, "formats") {
            jsonl = false;
            pcapng = false;
            if list.get_ref().is_empty() {
                self.error(
                    Some(list.span()),
                    Some(r.key("formats")),
                    "name at least one of \"jsonl\", \"pcapng\" (or remove the record table)",
                );
            }
            for fmt in list.get_ref() {
                match fmt.get_ref().as_str() {
                    "jsonl" => jsonl = true,
                    "pcapng" => pcapng = true,
                    other => {
                        let near =
                            switchboard_handlers::settings::hint(other, FORMATS.iter().copied());
                        self.error(
                            Some(fmt.span()),
                            Some(r.key("formats")),
                            format!(
                                "{other:?} is not a format; expected \"jsonl\" or \"pcapng\"{near}"
                            ),
                        );
                    }
                }
            }
        }
        let max_bytes = self
            .integer::<u64>(&mut r, "max_bytes", IntRange::U64_POSITIVE)
            .map_or(DEFAULT_RECORD_MAX_BYTES, |v| v.into_inner());
        Some(RecordConfig {
            dir: dir.join(folder?.into_inner()),
            jsonl,
            pcapng,
            max_bytes,
        })
    }
}
