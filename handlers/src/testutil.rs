//! Helpers to drive handlers with plain calls, for this crate's tests and the daemon's.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::registry::{BuildEnv, BuildError, NoFiles, Registry};
use crate::settings::Settings;
use crate::{
    Action, Chain, ChannelEvent, ChannelId, CloseReason, Flow, Handler, HandlerFactory, Handoff,
    Outbox, Proto, Session,
};

/// A session with a fixed peer and clock, and a chain to call.
#[derive(Debug)]
pub struct Harness {
    /// The chain under test.
    pub chain: Chain,
    /// The session given to each call; tests may change `now` or `proto`.
    pub session: Session,
    out: Outbox,
    flow: Option<Flow>,
}

impl Harness {
    /// A TCP session from 127.0.0.1:40000 on listener `test`, at a fixed time.
    pub fn new(links: Vec<Box<dyn Handler>>) -> Harness {
        Harness {
            chain: Chain::from_handlers(links),
            session: Session {
                id: 1,
                listener: Arc::from("test"),
                proto: Proto::Tcp,
                peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)),
                now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                operators: 1,
                client_cert: None,
            },
            out: Outbox::new(),
            flow: None,
        }
    }

    /// A harness over the factories' handlers.
    pub fn from_factories(factories: &[Arc<dyn HandlerFactory>]) -> Harness {
        Harness::new(factories.iter().map(|f| f.session()).collect())
    }

    /// Open the session; returns what the handlers produced.
    pub fn open(&mut self) -> &Outbox {
        self.out.clear();
        self.chain.open(&self.session, &mut self.out);
        &self.out
    }

    /// Deliver a message; returns what the handlers produced.
    pub fn message(&mut self, msg: &[u8]) -> &Outbox {
        self.out.clear();
        self.flow = Some(self.chain.message(msg, &self.session, &mut self.out));
        &self.out
    }

    /// Deliver an operator line.
    pub fn operator(&mut self, line: &str) -> &Outbox {
        self.out.clear();
        self.flow = Some(self.chain.operator(line, &self.session, &mut self.out));
        &self.out
    }

    /// Tell the chain where the session stands with the people at the console.
    pub fn handoff(&mut self, to: Handoff) -> &Outbox {
        self.out.clear();
        self.chain.handoff(to, &self.session, &mut self.out);
        &self.out
    }

    /// Fire every timer the last call started, in order of delay; returns what they produced.
    pub fn fire_timers(&mut self) -> &Outbox {
        let mut timers: Vec<(Duration, usize, u64)> = self
            .out
            .actions()
            .iter()
            .filter_map(|a| match *a {
                Action::Timer {
                    link, id, after, ..
                } => Some((after, link, id)),
                _ => None,
            })
            .collect();
        timers.sort();
        self.out.clear();
        for (after, link, id) in timers {
            self.session.now += after;
            self.chain.timer(link, id, &self.session, &mut self.out);
        }
        &self.out
    }

    /// An event on channel `id` of link `link`; returns what the handlers produced.
    pub fn channel(&mut self, link: usize, id: ChannelId, event: ChannelEvent<'_>) -> &Outbox {
        self.out.clear();
        self.chain
            .channel(link, id, event, &self.session, &mut self.out);
        &self.out
    }

    /// Close the session.
    pub fn close(&mut self, reason: CloseReason) {
        self.chain.close(&self.session, reason);
    }

    /// The flow of the last message or operator line.
    pub fn flow(&self) -> Option<Flow> {
        self.flow
    }

    /// The sent messages of the last call, as text.
    pub fn sent(&self) -> Vec<String> {
        self.out
            .messages()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }
}

/// Build one built-in handler from settings written as TOML.
pub fn build_one(name: &str, settings: &str) -> Result<Arc<dyn HandlerFactory>, BuildError> {
    build_with(name, settings, &NoFiles)
}

/// Build one built-in handler from settings written as TOML, with files.
pub fn build_with(
    name: &str,
    settings: &str,
    env: &dyn BuildEnv,
) -> Result<Arc<dyn HandlerFactory>, BuildError> {
    let settings = if settings.trim().is_empty() {
        Settings::none()
    } else {
        Settings::parse_str(settings)?
    };
    Registry::builtin()
        .build(name, settings, env)
        .unwrap_or_else(|| panic!("no handler named {name}"))
}
