//! Transcripts: a listener's conversations as JSON lines, one object per message (or event),
//! one file per day. The daemon writes them (`daemon/transcripts.rs`); `switchboard
//! transcript` prints them readably ([`print()`]), and `switchboard test-script
//! --from-transcript` turns them into dialogue tests (`crate::dialogue`).
//!
//! ```json
//! {"time":"2026-03-01T09:00:02.120Z","listener":"bot-tcp","session":3,"peer":"127.0.0.1:50312","direction":"in","who":"customer","text":"价格"}
//! {"time":"2026-03-01T09:00:02.120Z","listener":"bot-tcp","session":3,"peer":"127.0.0.1:50312","direction":"out","who":"bot","name":"scripted-reply","text":"基础版 99 元/月..."}
//! {"time":"2026-03-01T09:00:09.410Z","listener":"bot-tcp","session":3,"peer":"127.0.0.1:50312","direction":"event","who":"bot","name":"scripted-reply","event":"handoff","text":""}
//! ```
//!
//! `direction` is `in` (from the customer), `out` (to it) or `event`; `who` is `customer`,
//! `bot` (the handlers on their own; `name` says which) or `operator` (`name` says who);
//! events are `handoff`, `taken` and `released`.

mod print;

use std::io::BufRead;
use std::path::Path;

pub use print::{PrintArgs, print};

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// When, RFC 3339 in UTC with milliseconds.
    pub time: String,
    /// The listener's name.
    pub listener: String,
    /// The session's number.
    pub session: u64,
    /// The peer's address.
    pub peer: String,
    /// `in`, `out` or `event`.
    pub direction: String,
    /// `customer`, `bot` or `operator`.
    pub who: String,
    /// The handler (for the bot) or the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What happened, for events: `handoff`, `taken`, `released`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The message (empty for events).
    #[serde(default)]
    pub text: String,
}

impl Entry {
    /// Milliseconds since the Unix epoch, when the time reads.
    pub fn millis(&self) -> Option<u128> {
        humantime::parse_rfc3339(&self.time)
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis())
    }
}

/// Read a transcript file. A line that is not an entry is an error naming the file and line.
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let file = std::fs::File::open(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {}",
            path.display(),
            crate::client::words(&e)
        )
    })?;
    let mut entries = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{}:{}: {}", path.display(), i + 1, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!("{}:{}: not a transcript line: {e}", path.display(), i + 1)
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// The sessions of a transcript, each with its entries, in the order they first appear.
pub fn sessions(entries: &[Entry]) -> Vec<(u64, Vec<&Entry>)> {
    let mut out: Vec<(u64, Vec<&Entry>)> = Vec::new();
    for e in entries {
        match out
            .iter_mut()
            .find(|(id, list)| *id == e.session && list[0].listener == e.listener)
        {
            Some((_, list)) => list.push(e),
            None => out.push((e.session, vec![e])),
        }
    }
    out
}
