//! Recordings, written by a thread of their own: the loop hands each event over a bounded
//! queue (never waiting: when the queue is full the event is dropped and counted), and the
//! thread writes a listener's JSON lines and each session's pcapng file, keeping all of a
//! listener's files within its `max_bytes` (the oldest finished files go first; the JSON
//! lines file is rotated at an eighth of it).

mod pcap;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use pcap_file::pcapng::PcapNgWriter;
use tracing::warn;

use super::tap::{Event, Kind, TapSession};
use pcap::{Capture, From};

/// Events queued for the writer before further ones are dropped.
const QUEUE: usize = 16 * 1024;
/// The smallest size a JSON lines file is rotated at.
const MIN_ROTATE: u64 = 4 * 1024;

/// The loop's end of the recording thread.
#[derive(Debug)]
pub(crate) struct Recorder {
    tx: Option<SyncSender<(Arc<TapSession>, Event)>>,
    done: Receiver<()>,
    dropped: u64,
}

impl Recorder {
    pub(crate) fn start() -> Recorder {
        let (tx, rx) = sync_channel(QUEUE);
        let (done_tx, done) = sync_channel(1);
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                let stamp = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut w = Writer {
                    stamp,
                    groups: HashMap::new(),
                    sessions: HashMap::new(),
                };
                while let Ok((ctx, ev)) = rx.recv() {
                    let ctx: Arc<TapSession> = ctx;
                    w.handle(&ctx, ev);
                    while let Ok((ctx, ev)) = rx.try_recv() {
                        w.handle(&ctx, ev);
                    }
                    w.flush();
                }
                w.finish();
                let _ = done_tx.send(());
            })
            .expect("spawn the recorder");
        Recorder {
            tx: Some(tx),
            done,
            dropped: 0,
        }
    }

    /// Hand an event to the writer without waiting.
    pub(crate) fn send(&mut self, ctx: &Arc<TapSession>, ev: Event) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send((ctx.clone(), ev)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    warn!(
                        event = "record_dropped",
                        dropped = self.dropped,
                        "the disk is not keeping up; recording events dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Let the writer finish what is queued, but never hang on a stuck disk.
        self.tx = None;
        let _ = self.done.recv_timeout(Duration::from_secs(2));
    }
}

type GroupKey = (PathBuf, Arc<str>);

/// The files of one listener in one folder.
#[derive(Debug)]
struct Group {
    max: u64,
    /// Bytes of the files below and of those still being written.
    total: u64,
    finished: VecDeque<(PathBuf, u64)>,
    jsonl: Option<(BufWriter<File>, PathBuf, u64)>,
    seq: u32,
    failed: bool,
}

impl Group {
    /// Make room for `n` more bytes by removing the oldest finished files; whether it fits.
    fn room(&mut self, n: u64) -> bool {
        while self.total + n > self.max {
            let Some((path, size)) = self.finished.pop_front() else {
                return false;
            };
            let _ = std::fs::remove_file(&path);
            self.total -= size;
        }
        true
    }

    fn failed(&mut self, what: &std::path::Path, e: impl std::fmt::Display) {
        if !self.failed {
            self.failed = true;
            warn!(event = "record_failed", path = %what.display(), error = %e, "cannot write a recording");
        }
    }
}

struct PcapFile {
    w: PcapNgWriter<BufWriter<File>>,
    path: PathBuf,
    size: u64,
    capture: Capture,
    /// Over the budget: nothing more is written to it.
    full: bool,
}

struct Sess {
    group: GroupKey,
    pcap: Option<PcapFile>,
}

struct Writer {
    stamp: u64,
    groups: HashMap<GroupKey, Group>,
    sessions: HashMap<u64, Sess>,
}

fn file_name(listener: &str) -> String {
    listener
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Writer {
    fn handle(&mut self, ctx: &TapSession, ev: Event) {
        let Some(cfg) = ctx.record.clone() else {
            return;
        };
        let key = (cfg.dir.clone(), ctx.listener.clone());
        let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
            max: cfg.max_bytes,
            total: 0,
            finished: VecDeque::new(),
            jsonl: None,
            seq: 0,
            failed: false,
        });
        group.max = cfg.max_bytes;
        if cfg.jsonl {
            let line = super::tap::line(ctx, &ev, None);
            write_jsonl(group, &cfg.dir, &ctx.listener, self.stamp, line.as_bytes());
        }
        if !cfg.pcapng {
            return;
        }
        if matches!(ev.kind, Kind::Open) {
            let path = cfg.dir.join(format!(
                "{}-{}-s{}.pcapng",
                file_name(&ctx.listener),
                self.stamp,
                ev.session
            ));
            let opened = File::create(&path)
                .map_err(|e| e.to_string())
                .and_then(|f| Capture::start(BufWriter::new(f)).map_err(|e| e.to_string()));
            let pcap = match opened {
                Ok(w) => Some(PcapFile {
                    w,
                    path,
                    size: 0,
                    capture: Capture::new(ctx.proto, ctx.peer, ctx.local, ev.session),
                    full: false,
                }),
                Err(e) => {
                    group.failed(&path, e);
                    None
                }
            };
            self.sessions.insert(ev.session, Sess { group: key, pcap });
        }
        let Some(sess) = self.sessions.get_mut(&ev.session) else {
            return;
        };
        let group = self.groups.get_mut(&sess.group).expect("made above");
        if let Some(p) = sess.pcap.as_mut().filter(|p| !p.full) {
            let need = match &ev.kind {
                Kind::Read(b) | Kind::Write(b) => b.len() as u64 + 256,
                _ => 512,
            };
            if !group.room(need) {
                p.full = true;
                warn!(event = "record_full", path = %p.path.display(), max_bytes = group.max,
                    "the listener's recordings reached max_bytes; this capture stops here");
            } else {
                let r = match &ev.kind {
                    Kind::Open => p.capture.open(&mut p.w, ev.at),
                    Kind::Read(b) => p.capture.data(&mut p.w, ev.at, From::Peer, b),
                    Kind::Write(b) => p.capture.data(&mut p.w, ev.at, From::Daemon, b),
                    Kind::Close(reason) => p.capture.close(&mut p.w, ev.at, *reason),
                };
                match r {
                    Ok(n) => {
                        p.size += n as u64;
                        group.total += n as u64;
                    }
                    Err(e) => {
                        p.full = true;
                        group.failed(&p.path, e);
                    }
                }
            }
        }
        if matches!(ev.kind, Kind::Close(_))
            && let Some(sess) = self.sessions.remove(&ev.session)
            && let Some(mut p) = sess.pcap
        {
            let _ = p.w.get_mut().flush();
            group.finished.push_back((p.path, p.size));
        }
    }

    fn flush(&mut self) {
        for g in self.groups.values_mut() {
            if let Some((w, _, _)) = &mut g.jsonl {
                let _ = w.flush();
            }
        }
        for s in self.sessions.values_mut() {
            if let Some(p) = &mut s.pcap {
                let _ = p.w.get_mut().flush();
            }
        }
    }

    fn finish(&mut self) {
        self.flush();
    }
}

/// Append a line to the listener's JSON lines file, rotating it when it is big enough.
fn write_jsonl(group: &mut Group, dir: &std::path::Path, listener: &str, stamp: u64, line: &[u8]) {
    let n = line.len() as u64 + 1;
    let rotate_at = (group.max / 8).max(MIN_ROTATE);
    if let Some((_, _, size)) = &group.jsonl
        && *size + n > rotate_at
        && let Some((mut w, path, size)) = group.jsonl.take()
    {
        let _ = w.flush();
        group.finished.push_back((path, size));
    }
    if group.jsonl.is_none() {
        group.seq += 1;
        let path = dir.join(format!(
            "{}-{stamp}.{}.jsonl",
            file_name(listener),
            group.seq
        ));
        match File::create(&path) {
            Ok(f) => group.jsonl = Some((BufWriter::new(f), path, 0)),
            Err(e) => return group.failed(&path, e),
        }
    }
    if !group.room(n) {
        return;
    }
    let Some((w, path, size)) = &mut group.jsonl else {
        return;
    };
    match w.write_all(line).and_then(|()| w.write_all(b"\n")) {
        Ok(()) => {
            *size += n;
            group.total += n;
        }
        Err(e) => {
            let path = path.clone();
            group.failed(&path, e);
        }
    }
}
