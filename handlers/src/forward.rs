//! `forward`: relay the session to an upstream server, so that switchboard stands in front of
//! any real server (TCP to TCP, UDP to UDP), where faults can be applied to what flows.
//!
//! Settings (`[listener.forward]`):
//! - `upstream` (required): `"host:port"`; a host name is looked up once, when the config is
//!   read;
//! - `connect_timeout` (default `"5s"`): how long connecting may take; a refusal, an
//!   unreachable address or no answer in time ends the session (`reason=upstream_failed`);
//! - `unreachable_reply` (default: none): text sent to the peer before that end;
//! - `grace` (default `"30s"`): after the peer ended its input (TCP FIN, passed on as a
//!   half-close), how long the upstream may go on answering before its connection is closed.
//!
//! The upstream connection is a channel of the session ([`crate::channel`]): it is opened when
//! the session opens, every message goes to it as it is, and what it sends goes to the peer.
//! Backpressure holds both ways within the listener's `max_output`. The upstream's FIN is
//! passed on to the peer as a half-close, and the peer's FIN to the upstream; a reset on
//! either side resets the other. The connection ends with the session, by the same path on
//! close, reload and shutdown. UDP: one upstream socket per peer, so that replies find their
//! way back; it goes when the session expires (`idle_timeout`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::channel::{ChannelEvent, ChannelScope, ChannelSpec, Ending, Target};
use crate::registry::{BuildEnv, BuildError};
use crate::settings::Settings;
use crate::{CloseReason, Flow, Handler, HandlerFactory, Outbox, Proto, Scope, Session};

/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// The upstream's channel.
const UP: u64 = 0;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ForwardSettings {
    upstream: String,
    connect_timeout: Option<String>,
    unreachable_reply: Option<String>,
    grace: Option<String>,
}

/// The `forward` factory.
#[derive(Debug)]
pub struct Forward {
    /// The upstream as written (`host:port`).
    pub upstream: String,
    addr: SocketAddr,
    timeout: Duration,
    grace: Duration,
    reply: Option<Arc<str>>,
}

fn duration(key: &str, text: &Option<String>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t).map_err(|e| {
            format!("`{key}`: {t:?} is not a duration ({e}); write e.g. \"5s\" or \"500ms\"")
        }),
    }
}

pub(crate) fn build(
    settings: Settings<'_>,
    env: &dyn BuildEnv,
) -> Result<Arc<dyn HandlerFactory>, BuildError> {
    let span = settings.span();
    if !settings.is_present() {
        return Err(BuildError::new(
            "forward needs a `[listener.forward]` table with `upstream = \"host:port\"`",
            span,
        ));
    }
    let s: ForwardSettings = settings.parse()?;
    let err = |m: String| BuildError::new(m, span.clone());
    if s.upstream.trim().is_empty() {
        return Err(err(
            "`upstream`: name the server to relay to, e.g. upstream = \"127.0.0.1:7000\"".into(),
        ));
    }
    let addr = env
        .resolve(&s.upstream)
        .map_err(|e| err(format!("`upstream`: {e}")))?;
    let timeout = duration(
        "connect_timeout",
        &s.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    )
    .map_err(&err)?;
    if timeout.is_zero() {
        return Err(err(
            "`connect_timeout`: 0 would fail every connection; write e.g. \"5s\"".into(),
        ));
    }
    let grace = duration("grace", &s.grace, DEFAULT_GRACE).map_err(&err)?;
    Ok(Arc::new(Forward {
        upstream: s.upstream,
        addr,
        timeout,
        grace,
        reply: s.unreachable_reply.map(Arc::from),
    }))
}

impl HandlerFactory for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn session(&self) -> Box<dyn Handler> {
        Box::new(ForwardSession {
            addr: self.addr,
            timeout: self.timeout,
            grace: self.grace,
            reply: self.reply.clone(),
            opened: false,
        })
    }
}

/// One session's relay.
#[derive(Debug)]
struct ForwardSession {
    addr: SocketAddr,
    timeout: Duration,
    grace: Duration,
    reply: Option<Arc<str>>,
    /// The upstream answered the connect.
    opened: bool,
}

impl Handler for ForwardSession {
    fn on_open(&mut self, s: &Session, out: &mut Outbox) {
        out.open(
            UP,
            ChannelSpec {
                target: Target::Connect {
                    addr: self.addr,
                    proto: s.proto,
                    timeout: self.timeout,
                },
                scope: ChannelScope::Session,
                grace: self.grace,
            },
        );
    }

    fn on_message(&mut self, msg: &[u8], _s: &Session, out: &mut Outbox) -> Flow {
        // Written before the upstream answered, it waits in the channel's input.
        out.to_channel(UP, msg);
        Flow::Handled
    }

    fn on_channel(&mut self, _id: u64, event: ChannelEvent<'_>, s: &Session, out: &mut Outbox) {
        match event {
            ChannelEvent::Opened => self.opened = true,
            ChannelEvent::Data(d) => out.send(d),
            ChannelEvent::Stderr(_) => {}
            ChannelEvent::End if s.proto == Proto::Tcp => out.end_output(),
            ChannelEvent::End => {}
            ChannelEvent::Closed(Ending::Reset) => out.reset(CloseReason::UpstreamReset),
            ChannelEvent::Closed(Ending::Failed(_)) if !self.opened => {
                if let Some(r) = &self.reply {
                    out.send(r.as_bytes());
                }
                out.close_because(CloseReason::UpstreamFailed);
            }
            ChannelEvent::Closed(Ending::Failed(_)) => out.reset(CloseReason::UpstreamReset),
            ChannelEvent::Closed(_) => out.close(Scope::Session),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Harness, build_one};
    use crate::{Action, ChannelEvent};

    fn forward(extra: &str) -> Harness {
        let f = build_one(
            "forward",
            &format!("upstream = \"127.0.0.1:7000\"\n{extra}"),
        )
        .unwrap();
        Harness::from_factories(&[f])
    }

    #[test]
    fn opens_the_upstream_and_relays_both_ways() {
        let mut h = forward("connect_timeout = \"2s\"");
        let out = h.open();
        match &out.actions()[0] {
            Action::Open { id: 0, spec, .. } => assert_eq!(
                spec.target,
                Target::Connect {
                    addr: "127.0.0.1:7000".parse().unwrap(),
                    proto: Proto::Tcp,
                    timeout: Duration::from_secs(2)
                }
            ),
            other => panic!("{other:?}"),
        }
        let out = h.message(b"GET /\r\n");
        assert!(
            matches!(&out.actions()[0], Action::ToChannel { data, .. } if data == b"GET /\r\n")
        );
        let out = h.channel(0, 0, ChannelEvent::Data(b"200 OK"));
        assert_eq!(out.data(), b"200 OK");
        let out = h.channel(0, 0, ChannelEvent::End);
        assert_eq!(out.actions(), &[Action::EndOutput]);
    }

    #[test]
    fn an_unreachable_upstream_ends_the_session_with_the_reply() {
        let mut h = forward("unreachable_reply = \"down\"");
        h.open();
        let out = h.channel(
            0,
            0,
            ChannelEvent::Closed(&Ending::Failed("refused".into())),
        );
        assert_eq!(out.data(), b"down");
        assert_eq!(
            out.actions(),
            &[Action::Close {
                scope: Scope::Session,
                reason: CloseReason::UpstreamFailed
            }]
        );
    }

    #[test]
    fn a_reset_upstream_resets_the_peer() {
        let mut h = forward("");
        h.open();
        h.channel(0, 0, ChannelEvent::Opened);
        let out = h.channel(0, 0, ChannelEvent::Closed(&Ending::Reset));
        assert_eq!(
            out.actions(),
            &[Action::Reset {
                reason: CloseReason::UpstreamReset
            }]
        );
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e = build_one("forward", "upstream = \"nowhere\"").unwrap_err();
        assert!(e.message.starts_with("`upstream`"), "{}", e.message);
        let e = build_one(
            "forward",
            "upstream = \"127.0.0.1:1\"\nconnect_timeout = \"0s\"",
        )
        .unwrap_err();
        assert!(e.message.starts_with("`connect_timeout`"), "{}", e.message);
        let e = build_one("forward", "upstrem = \"127.0.0.1:1\"").unwrap_err();
        assert!(e.message.contains("upstream"), "{}", e.message);
    }
}
