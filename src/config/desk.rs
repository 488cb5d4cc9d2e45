//! A listener's support-desk keys: how replies are paced against the peer's messages
//! (`reply_mode`), and where its conversations are written (`transcripts`, `max_transcript`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::read::Fields;
use super::validate::{FileListener, Validator};

/// A day's transcript file stops growing at this size when `max_transcript` is not given.
pub const DEFAULT_MAX_TRANSCRIPT: u64 = 64 << 20;

/// How a listener's replies are paced against its peer's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    /// Every reply goes out as soon as a handler produces it.
    #[default]
    Free,
    /// Each message the peer sends gets exactly one reply, for clients that send one message
    /// and read one answer (the tutorial's): what handlers send for one message is joined into
    /// one reply, and what they send with no message waiting for an answer (a TCP greeting, an
    /// operator's second line) goes out in front of the next reply.
    OnePerMessage,
}

pub(super) const REPLY_MODES: &[(&str, ReplyMode)] = &[
    ("free", ReplyMode::Free),
    ("one-per-message", ReplyMode::OnePerMessage),
];

/// Where a listener's conversations are written: one JSON object per line, one file per day
/// (`LISTENER-YYYY-MM-DD.jsonl`, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcripts {
    /// The folder.
    pub dir: PathBuf,
    /// A day's file stops growing at this many bytes (later lines of that day are dropped,
    /// and counted in the log).
    pub max_file: u64,
}

impl Transcripts {
    /// The file of `listener` for `day` (`YYYY-MM-DD`).
    pub fn file(&self, listener: &str, day: &str) -> PathBuf {
        self.dir.join(format!("{listener}-{day}.jsonl"))
    }

    /// Whether the folder can be written: made if missing, then a probe file created and
    /// removed. The error says what is wrong in words.
    pub fn check(&self) -> Result<(), String> {
        check_folder(&self.dir)
    }
}

fn check_folder(dir: &Path) -> Result<(), String> {
    let words = |e: std::io::Error| crate::client::words(&e);
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the folder {}: {}", dir.display(), words(e)))?;
    let probe = dir.join(format!(".switchboard-probe-{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| format!("cannot write in {}: {}", dir.display(), words(e)))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

impl Validator<'_> {
    /// `reply_mode`, `transcripts` and `max_transcript`.
    pub(super) fn desk(
        &mut self,
        l: &FileListener,
        f: &Fields<'_>,
        dir: &Path,
    ) -> (ReplyMode, Option<Arc<Transcripts>>) {
        let mode = l
            .reply_mode
            .as_ref()
            .map_or(ReplyMode::Free, |m| *m.get_ref());
        let transcripts = l.transcripts.as_ref().and_then(|t| {
            if t.get_ref().trim().is_empty() {
                self.error(
                    Some(t.span()),
                    Some(f.key("transcripts")),
                    "the folder must not be empty (leave the key out for no transcripts)",
                );
                return None;
            }
            Some(Arc::new(Transcripts {
                dir: dir.join(t.get_ref()),
                max_file: l
                    .max_transcript
                    .as_ref()
                    .map_or(DEFAULT_MAX_TRANSCRIPT, |m| *m.get_ref()),
            }))
        });
        if let (Some(m), None) = (&l.max_transcript, &l.transcripts) {
            self.error(
                Some(m.span()),
                Some(f.key("max_transcript")),
                "max_transcript bounds the transcript files, but `transcripts` (their folder) \
                 is not set",
            );
        }
        (mode, transcripts)
    }
}
