//! Transcripts, as I/O: the lines the core records are written by a thread of their own
//! through a bounded queue, so that a slow or full disk never blocks the loop. Each listener
//! writes `LISTENER-YYYY-MM-DD.jsonl` (UTC) in its folder; a day's file stops growing at the
//! listener's `max_transcript`. Lines that cannot be written (the queue is full, the file is at
//! its size, the disk refuses) are dropped and counted in the log, never silently.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use tracing::warn;

use super::core::Record;
use crate::transcript::Entry;

/// Batches of lines queued for the writer before further ones are dropped.
const QUEUE: usize = 1024;
/// Files kept open at once (a listener's file of the day); beyond, all are closed and opened
/// again as needed.
const OPEN_MAX: usize = 64;

/// The writer thread's end of the queue.
#[derive(Debug)]
pub(crate) struct Writer {
    batches: Option<SyncSender<Vec<Record>>>,
    done: Receiver<()>,
    dropped: u64,
}

impl Writer {
    pub(crate) fn spawn() -> Writer {
        let (batches, rx) = sync_channel::<Vec<Record>>(QUEUE);
        let (done_tx, done) = sync_channel(1);
        std::thread::Builder::new()
            .name("transcripts".into())
            .spawn(move || {
                let mut files = Files::default();
                for batch in rx {
                    for record in batch {
                        files.write(record);
                    }
                    files.flush();
                }
                let _ = done_tx.send(());
            })
            .expect("spawn the transcript writer");
        Writer {
            batches: Some(batches),
            done,
            dropped: 0,
        }
    }

    /// Queue lines for writing; dropped and counted when the writer is behind.
    pub(crate) fn write(&mut self, records: Vec<Record>) {
        let Some(tx) = &self.batches else {
            return;
        };
        let n = records.len() as u64;
        match tx.try_send(records) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let before = self.dropped;
                self.dropped += n;
                if before == 0 || (before + 1..=self.dropped).any(u64::is_power_of_two) {
                    warn!(
                        event = "transcript_dropped",
                        dropped = self.dropped,
                        reason = "queue_full",
                        "the transcript writer is not keeping up; lines dropped"
                    );
                }
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Let the writer finish what is queued, but never hang on a stuck disk.
        self.batches.take();
        let _ = self.done.recv_timeout(Duration::from_secs(2));
    }
}

/// The writer thread's open files.
#[derive(Debug, Default)]
struct Files {
    open: HashMap<PathBuf, Open>,
}

#[derive(Debug)]
struct Open {
    file: std::io::BufWriter<File>,
    size: u64,
    /// Lines dropped because the file reached its size.
    full: u64,
    /// A write failed: reported once, then retried for each line.
    failing: bool,
}

impl Files {
    fn write(&mut self, r: Record) {
        let entry = Entry {
            time: humantime::format_rfc3339_millis(r.time).to_string(),
            listener: r.listener.to_string(),
            session: r.session,
            peer: r.peer.to_string(),
            direction: r.direction.into(),
            who: r.who.into(),
            name: r.name,
            event: r.event.map(str::to_string),
            text: r.text,
        };
        let Ok(mut line) = serde_json::to_string(&entry) else {
            return;
        };
        line.push('\n');
        let day = entry.time.get(..10).unwrap_or("unknown");
        let path = r.to.file(&entry.listener, day);
        if !self.open.contains_key(&path) {
            if self.open.len() >= OPEN_MAX {
                self.flush();
                self.open.clear();
            }
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|f| Ok((f.metadata()?.len(), f)));
            match opened {
                Ok((size, f)) => {
                    self.open.insert(
                        path.clone(),
                        Open {
                            file: std::io::BufWriter::new(f),
                            size,
                            full: 0,
                            failing: false,
                        },
                    );
                }
                Err(e) => {
                    warn!(event = "transcript_dropped", reason = "cannot_open", file = %path.display(),
                        error = %crate::client::words(&e), "cannot open the transcript file; line dropped");
                    return;
                }
            }
        }
        let o = self.open.get_mut(&path).expect("just opened");
        if o.size + line.len() as u64 > r.to.max_file {
            o.full += 1;
            if o.full.is_power_of_two() {
                warn!(event = "transcript_dropped", reason = "max_transcript", file = %path.display(),
                    dropped = o.full, max_transcript = r.to.max_file,
                    "the day's transcript file is at max_transcript; lines dropped");
            }
            return;
        }
        match o.file.write_all(line.as_bytes()) {
            Ok(()) => {
                o.size += line.len() as u64;
                o.failing = false;
            }
            Err(e) => {
                if !o.failing {
                    warn!(event = "transcript_dropped", reason = "write_failed", file = %path.display(),
                        error = %crate::client::words(&e), "cannot write the transcript; line dropped");
                }
                o.failing = true;
            }
        }
    }

    fn flush(&mut self) {
        for (path, o) in &mut self.open {
            if let Err(e) = o.file.flush()
                && !o.failing
            {
                o.failing = true;
                warn!(event = "transcript_dropped", reason = "write_failed", file = %path.display(),
                    error = %crate::client::words(&e), "cannot write the transcript; lines dropped");
            }
        }
    }
}
