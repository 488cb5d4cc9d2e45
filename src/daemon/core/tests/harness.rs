//! An in-memory world for the core: a virtual clock, peers whose sockets take a set number
//! of bytes, and a record of every effect. It plays the shell's part exactly as
//! `src/daemon/mod.rs` does (`settle`), without a socket, so the loop's logic is tested with
//! plain calls and time that moves only when a test says so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use switchboard_handlers::CloseReason;

use super::super::{
    ChanRef, Core, Effect, ListenerId, OpId, ReadMode, Record, Refusal, SessionKey,
};
use crate::config::{self, Config};

/// The far end of a session's connection, as the shell would see its socket.
#[derive(Debug, Default)]
pub(super) struct Peer {
    /// What the session sent, not yet taken by the test.
    pub(super) received: Vec<u8>,
    /// How many more bytes its socket takes before it would block.
    pub(super) room: usize,
    /// The session sent FIN (a clean end).
    pub(super) fin: bool,
    /// The socket was dropped.
    pub(super) released: bool,
    /// The peer ended its input (the shell read its EOF).
    pub(super) eof: bool,
    /// Reading was resumed after backpressure.
    pub(super) resumed: u32,
    /// The session half-closed: FIN sent, input still read.
    pub(super) half_closed: bool,
    /// The connection was reset (RST).
    pub(super) reset: bool,
}

/// The far end of a channel, as the shell would see a child's pipes.
#[derive(Debug, Default)]
pub(super) struct Child {
    /// What was written to its stdin, not yet taken by the test.
    pub(super) input: Vec<u8>,
    /// How many more bytes its stdin takes before it would block.
    pub(super) room: usize,
    /// Its stdin was closed.
    pub(super) input_ended: bool,
    /// It was told to end (SIGTERM).
    pub(super) terminated: bool,
    /// Its output may be read again.
    pub(super) resumed: u32,
    /// It was reset (a connection's RST).
    pub(super) reset: bool,
}

/// The core and the world around it.
pub(super) struct Harness {
    pub(super) core: Core,
    pub(super) now: Instant,
    pub(super) wall: SystemTime,
    listeners: HashMap<String, ListenerId>,
    pub(super) peers: HashMap<SessionKey, Peer>,
    /// Datagrams sent: listener, destination, bytes.
    pub(super) datagrams: Vec<(ListenerId, SocketAddr, Vec<u8>)>,
    /// Lines shown to operators.
    pub(super) told: Vec<(OpId, String)>,
    /// Listener sockets the core had closed.
    pub(super) stopped: Vec<ListenerId>,
    /// Every effect, in order.
    pub(super) effects: Vec<Effect>,
    /// Transcript lines the core handed over.
    pub(super) records: Vec<Record>,
    /// The channels the core opened.
    pub(super) children: HashMap<ChanRef, Child>,
    /// Channels are not reported open by themselves (a connection still connecting).
    pub(super) hold_opens: bool,
}

/// A config from TOML text.
pub(super) fn parse(config: &str) -> Config {
    config::parse(config, Path::new("test.toml"), Path::new("."))
        .unwrap_or_else(|e| panic!("config: {e}"))
}

/// A time from which the wall clock starts in tests: 2023-11-14 22:13:20 UTC.
pub(super) const T0: u64 = 1_700_000_000;

impl Harness {
    /// A core serving the listeners of `config` (TOML; `port = 0` is fine: each listener gets
    /// a made-up local address).
    pub(super) fn new(config: &str) -> Harness {
        Harness::with(parse(config))
    }

    /// A core serving the listeners of a config the test prepared.
    pub(super) fn with(config: Config) -> Harness {
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(T0);
        let mut core = Core::new(config.daemon.drain_timeout, now, wall);
        let mut listeners = HashMap::new();
        for (i, cfg) in config.listeners.iter().enumerate() {
            let local = SocketAddr::new(cfg.addr.ip(), 10_000 + i as u16);
            let id = core.add_listener(Rc::new(cfg.clone()), local);
            listeners.insert(cfg.name.to_string(), id);
        }
        let mut h = Harness {
            core,
            now,
            wall,
            listeners,
            peers: HashMap::new(),
            datagrams: Vec::new(),
            told: Vec::new(),
            stopped: Vec::new(),
            effects: Vec::new(),
            records: Vec::new(),
            children: HashMap::new(),
            hold_opens: false,
        };
        h.settle();
        h
    }

    pub(super) fn listener(&self, name: &str) -> ListenerId {
        self.listeners[name]
    }

    /// A TCP connection from `peer` to listener `name`: admitted and opened (a plain
    /// transport). `None` when the limits refuse it.
    pub(super) fn connect(&mut self, name: &str, peer: &str) -> Option<SessionKey> {
        let key = self
            .core
            .admit(self.listener(name), peer.parse().unwrap())
            .ok()?;
        self.peers.insert(
            key,
            Peer {
                room: usize::MAX,
                ..Peer::default()
            },
        );
        self.core.open(key);
        self.settle();
        Some(key)
    }

    /// A TCP connection from `peer` admitted but not opened: something stands in front of
    /// it (a PROXY header, a TLS handshake).
    pub(super) fn admit(&mut self, name: &str, peer: &str) -> Result<SessionKey, Refusal> {
        let key = self
            .core
            .admit(self.listener(name), peer.parse().unwrap())?;
        self.peers.insert(
            key,
            Peer {
                room: usize::MAX,
                ..Peer::default()
            },
        );
        self.settle();
        Ok(key)
    }

    /// Bytes from the peer, if the session reads now.
    pub(super) fn send(&mut self, key: SessionKey, bytes: &[u8]) {
        assert_eq!(
            self.core.read_mode(key),
            Some(ReadMode::Read),
            "not reading"
        );
        self.core.input(key, bytes);
        self.settle();
    }

    /// The peer ends its input (FIN).
    pub(super) fn eof(&mut self, key: SessionKey) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.eof = true;
        }
        self.core.end_of_input(key);
        self.settle();
    }

    /// The connection breaks.
    pub(super) fn fail(&mut self, key: SessionKey, reason: CloseReason) {
        self.core.failed(key, reason);
        self.settle();
    }

    /// A datagram from `peer` to listener `name`.
    pub(super) fn datagram(&mut self, name: &str, peer: &str, bytes: &[u8]) {
        let id = self.listener(name);
        self.core.datagram(id, peer.parse().unwrap(), bytes, false);
        self.settle();
    }

    /// Several datagrams handled as one `recvmmsg` batch: effects are applied after the
    /// whole batch, as the shell does.
    pub(super) fn batch(&mut self, name: &str, datagrams: &[(&str, &[u8])]) {
        let id = self.listener(name);
        for (peer, bytes) in datagrams {
            self.core.datagram(id, peer.parse().unwrap(), bytes, false);
        }
        self.settle();
    }

    /// Let time pass: due timers fire.
    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.wall += d;
        self.core.set_clock(self.now, self.wall);
        self.core.handle_timeout();
        self.settle();
    }

    /// The peer's socket takes `n` more bytes; the shell writes what waits (WRITABLE).
    pub(super) fn make_room(&mut self, key: SessionKey, n: usize) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.room = p.room.saturating_add(n);
        }
        self.transmit(key);
        self.settle();
    }

    /// What session `key` sent since the last call, as text.
    pub(super) fn received(&mut self, key: SessionKey) -> String {
        let p = self.peers.get_mut(&key).expect("a peer");
        String::from_utf8_lossy(&std::mem::take(&mut p.received)).into_owned()
    }

    /// The datagrams sent to `peer` since the last call, as text.
    pub(super) fn datagrams_to(&mut self, peer: &str) -> Vec<String> {
        let peer: SocketAddr = peer.parse().unwrap();
        let (mine, rest) = std::mem::take(&mut self.datagrams)
            .into_iter()
            .partition(|(_, p, _)| *p == peer);
        self.datagrams = rest;
        mine.into_iter()
            .map(|(_, _, d)| String::from_utf8_lossy(&d).into_owned())
            .collect()
    }

    pub(super) fn peer(&self, key: SessionKey) -> &Peer {
        &self.peers[&key]
    }

    /// Apply the core's effects, as the shell's `settle` does.
    pub(super) fn settle(&mut self) {
        while let Some(effect) = self.core.poll_effect() {
            self.effects.push(effect.clone());
            match effect {
                Effect::Transmit(key) => self.transmit(key),
                Effect::Resume(key) => {
                    if let Some(p) = self.peers.get_mut(&key) {
                        p.resumed += 1;
                    }
                }
                Effect::Close(key) => {
                    let p = self.peers.get_mut(&key).expect("a TCP peer");
                    p.fin = true;
                    if p.eof {
                        self.core.lingered(key);
                    }
                }
                Effect::Release(key) => {
                    if let Some(p) = self.peers.get_mut(&key) {
                        p.released = true;
                    }
                }
                Effect::StopListener(id) => self.stopped.push(id),
                Effect::Tell(op, line) => self.told.push((op, line.into())),
                Effect::Transcripts => {
                    let records = self.core.take_records();
                    self.records.extend(records);
                }
                Effect::Datagrams => {
                    for (l, p, d) in self.core.datagrams().iter() {
                        self.datagrams.push((l, p, d.to_vec()));
                    }
                    self.core.clear_datagrams();
                }
                Effect::OpenChannel(r) => {
                    self.children.insert(
                        r,
                        Child {
                            room: usize::MAX,
                            ..Child::default()
                        },
                    );
                    if !self.hold_opens {
                        self.core.channel_opened(r);
                    }
                }
                Effect::ChannelWrite(r) => self.write_child(r),
                Effect::EndChannelInput(r) => {
                    if let Some(c) = self.children.get_mut(&r) {
                        c.input_ended = true;
                    }
                }
                Effect::CloseChannel(r) => {
                    if let Some(c) = self.children.get_mut(&r) {
                        c.terminated = true;
                    }
                }
                Effect::Note(_) => {}
                Effect::ResetChannel(r) => {
                    if let Some(c) = self.children.get_mut(&r) {
                        c.terminated = true;
                        c.reset = true;
                    }
                }
                Effect::EndOutput(key) => {
                    if let Some(p) = self.peers.get_mut(&key) {
                        p.half_closed = true;
                    }
                }
                Effect::Reset(key) => {
                    if let Some(p) = self.peers.get_mut(&key) {
                        p.reset = true;
                    }
                }
                Effect::ResumeChannel(r) => {
                    if let Some(c) = self.children.get_mut(&r) {
                        c.resumed += 1;
                    }
                }
            }
        }
    }

    fn write_child(&mut self, r: ChanRef) {
        let Some(c) = self.children.get_mut(&r) else {
            return;
        };
        if let Some(bytes) = self.core.channel_input(r) {
            let n = bytes.len().min(c.room);
            c.input.extend_from_slice(&bytes[..n]);
            c.room -= n;
            self.core.channel_written(r, n);
        }
    }

    /// The child's stdin takes `n` more bytes; the shell writes what waits (WRITABLE).
    pub(super) fn child_room(&mut self, r: ChanRef, n: usize) {
        if let Some(c) = self.children.get_mut(&r) {
            c.room = c.room.saturating_add(n);
        }
        self.write_child(r);
        self.settle();
    }

    /// What channel `r` was given on its stdin since the last call, as text.
    pub(super) fn child_input(&mut self, r: ChanRef) -> String {
        let c = self.children.get_mut(&r).expect("a channel");
        String::from_utf8_lossy(&std::mem::take(&mut c.input)).into_owned()
    }

    /// The child writes to its stdout; false when the shell would not read it now.
    pub(super) fn child_says(&mut self, r: ChanRef, bytes: &[u8]) -> bool {
        if !self.core.channel_reads(r) {
            return false;
        }
        self.core.channel_output(r, false, bytes);
        self.settle();
        true
    }

    /// The child closes its stdout and exits with `code`.
    pub(super) fn child_exits(&mut self, r: ChanRef, code: i32) {
        self.core.channel_eof(r);
        self.settle();
        self.core
            .channel_closed(r, &switchboard_handlers::Ending::Exited(code));
        self.settle();
        self.children.remove(&r);
    }

    fn transmit(&mut self, key: SessionKey) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.released {
            return;
        }
        if let Some(bytes) = self.core.transmit(key) {
            let n = bytes.len().min(p.room);
            p.received.extend_from_slice(&bytes[..n]);
            p.room -= n;
            self.core.transmitted(key, n);
        }
    }
}
