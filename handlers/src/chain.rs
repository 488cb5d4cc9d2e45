//! A listener's chain of handlers for one session.

use crate::{
    Action, ChannelEvent, ChannelId, CloseReason, Flow, Handler, HandlerFactory, Handoff, Outbox,
    Session, TimerId,
};
use std::sync::Arc;

/// The handlers of one session, in chain order. The loop calls the chain; the chain calls
/// the links following the [`Handler`] contract.
#[derive(Debug)]
pub struct Chain {
    links: Vec<Box<dyn Handler>>,
    closing: bool,
}

impl Chain {
    /// A chain of fresh handlers from the listener's factories.
    pub fn new(factories: &[Arc<dyn HandlerFactory>]) -> Chain {
        Chain::from_handlers(factories.iter().map(|f| f.session()).collect())
    }

    /// A chain of given handlers.
    pub fn from_handlers(links: Vec<Box<dyn Handler>>) -> Chain {
        Chain {
            links,
            closing: false,
        }
    }

    /// Whether a handler asked to end the session.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    fn note(&mut self, out: &Outbox, from: usize) {
        if out.actions()[from..]
            .iter()
            .any(|a| matches!(a, Action::Close { .. } | Action::Reset { .. }))
        {
            self.closing = true;
        }
    }

    /// The session opened: every link's `on_open`, in order.
    pub fn open(&mut self, s: &Session, out: &mut Outbox) {
        let from = out.actions().len();
        for (i, h) in self.links.iter_mut().enumerate() {
            out.link = i;
            h.on_open(s, out);
        }
        self.note(out, from);
    }

    /// A message walks the chain until a link handles it. Returns `Pass` when no link did.
    /// Messages that arrive after a link asked to close are ignored.
    pub fn message(&mut self, msg: &[u8], s: &Session, out: &mut Outbox) -> Flow {
        if self.closing {
            return Flow::Handled;
        }
        let from = out.actions().len();
        let mut flow = Flow::Pass;
        for (i, h) in self.links.iter_mut().enumerate() {
            out.link = i;
            if h.on_message(msg, s, out) == Flow::Handled {
                flow = Flow::Handled;
                break;
            }
        }
        self.note(out, from);
        flow
    }

    /// An operator line walks the chain until a link takes it.
    pub fn operator(&mut self, line: &str, s: &Session, out: &mut Outbox) -> Flow {
        let from = out.actions().len();
        let mut flow = Flow::Pass;
        for (i, h) in self.links.iter_mut().enumerate() {
            out.link = i;
            if h.on_operator(line, s, out) == Flow::Handled {
                flow = Flow::Handled;
                break;
            }
        }
        self.note(out, from);
        flow
    }

    /// A timer of link `link` fired.
    pub fn timer(&mut self, link: usize, id: TimerId, s: &Session, out: &mut Outbox) {
        if self.closing {
            return;
        }
        let from = out.actions().len();
        if let Some(h) = self.links.get_mut(link) {
            out.link = link;
            h.on_timer(id, s, out);
        }
        self.note(out, from);
    }

    /// The session's standing with the people at the console changed: every link's
    /// `on_handoff`, in order.
    pub fn handoff(&mut self, to: Handoff, s: &Session, out: &mut Outbox) {
        if self.closing {
            return;
        }
        let from = out.actions().len();
        for (i, h) in self.links.iter_mut().enumerate() {
            out.link = i;
            h.on_handoff(to, s, out);
        }
        self.note(out, from);
    }

    /// Something happened on channel `id` of link `link`. Ignored once a link asked to close.
    pub fn channel(
        &mut self,
        link: usize,
        id: ChannelId,
        event: ChannelEvent<'_>,
        s: &Session,
        out: &mut Outbox,
    ) {
        if self.closing {
            return;
        }
        let from = out.actions().len();
        if let Some(h) = self.links.get_mut(link) {
            out.link = link;
            h.on_channel(id, event, s, out);
        }
        self.note(out, from);
    }

    /// The session ends: every link's `on_close`.
    pub fn close(&mut self, s: &Session, reason: CloseReason) {
        for h in &mut self.links {
            h.on_close(s, reason);
        }
    }
}
