//! `mode = "session"`: one child per session.

use super::ExecFraming;
use crate::channel::{ChannelEvent, ChannelSpec};
use crate::{Flow, Handler, Outbox, Scope, Session};

/// The child's one channel.
const CHILD: u64 = 0;
/// Longest line taken from the child before it is sent in pieces: the memory a child that
/// never ends its line can hold.
pub(super) const MAX_LINE: usize = 64 * 1024;

/// Cuts a child's output into lines (line framing), bounded by [`MAX_LINE`].
#[derive(Debug, Default)]
pub(super) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Send each complete line of `data` (without its `\n` and a `\r` before it).
    pub(super) fn feed(&mut self, mut data: &[u8], out: &mut Outbox) {
        while let Some(i) = memchr(b'\n', data) {
            let (line, rest) = data.split_at(i);
            data = &rest[1..];
            if self.partial.is_empty() {
                out.send(strip_cr(line));
            } else {
                self.partial.extend_from_slice(line);
                out.send(strip_cr(&self.partial));
                self.partial.clear();
            }
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            out.send(&self.partial);
            self.partial = rest;
        }
        if self.partial.is_empty() {
            self.partial = Vec::new();
        }
    }

    /// The output ended: a last unterminated line is still a message.
    pub(super) fn finish(&mut self, out: &mut Outbox) {
        if !self.partial.is_empty() {
            out.send(strip_cr(&std::mem::take(&mut self.partial)));
        }
    }
}

fn memchr(b: u8, data: &[u8]) -> Option<usize> {
    data.iter().position(|&c| c == b)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One session's `exec` link in session mode.
#[derive(Debug)]
pub(super) struct SessionExec {
    spec: ChannelSpec,
    framing: ExecFraming,
    /// The child's channel is open (messages go to its stdin).
    open: bool,
    stdout: Lines,
    stderr: Lines,
}

impl SessionExec {
    pub(super) fn new(spec: ChannelSpec, framing: ExecFraming) -> SessionExec {
        SessionExec {
            spec,
            framing,
            open: false,
            stdout: Lines::default(),
            stderr: Lines::default(),
        }
    }
}

impl Handler for SessionExec {
    fn on_open(&mut self, _s: &Session, out: &mut Outbox) {
        out.open(CHILD, self.spec.clone());
        // Messages may be written before the loop reports the child started: they wait in
        // its input.
        self.open = true;
    }

    fn on_message(&mut self, msg: &[u8], _s: &Session, out: &mut Outbox) -> Flow {
        if !self.open {
            return Flow::Handled;
        }
        match self.framing {
            ExecFraming::Raw => out.to_channel(CHILD, msg),
            ExecFraming::Line if msg.ends_with(b"\n") => out.to_channel(CHILD, msg),
            ExecFraming::Line => {
                let mut line = Vec::with_capacity(msg.len() + 1);
                line.extend_from_slice(msg);
                line.push(b'\n');
                out.to_channel(CHILD, &line);
            }
        }
        Flow::Handled
    }

    fn on_channel(&mut self, _id: u64, event: ChannelEvent<'_>, _s: &Session, out: &mut Outbox) {
        match (event, self.framing) {
            (ChannelEvent::Opened, _) => {}
            (ChannelEvent::Data(d), ExecFraming::Raw)
            | (ChannelEvent::Stderr(d), ExecFraming::Raw) => out.send(d),
            (ChannelEvent::Data(d), ExecFraming::Line) => self.stdout.feed(d, out),
            (ChannelEvent::Stderr(d), ExecFraming::Line) => self.stderr.feed(d, out),
            (ChannelEvent::End, _) => {
                self.stdout.finish(out);
                self.stderr.finish(out);
            }
            (ChannelEvent::Closed(_), _) => {
                // The child is gone: what it wrote is sent, then the session ends.
                self.open = false;
                self.stdout.finish(out);
                self.stderr.finish(out);
                out.close(Scope::Session);
            }
        }
    }
}
