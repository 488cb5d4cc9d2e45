//! The front of a TCP session, in its `Handshake` phase: a PROXY header, then a TLS
//! handshake, each with its deadline. The shell's transport does the reading; the core
//! decides: the real peer a header names is admitted again by the listener's rules and
//! limits, a failure or a timeout ends the connection, logged (rate-limited) and counted.

use std::net::SocketAddr;

use switchboard_handlers::CloseReason;
use tracing::{debug, warn};

use super::due::Due;
use super::limits::{Event, Refusal};
use super::session::{Front, Phase, SessionRef, TlsInfo};
use super::{Core, SessionKey};
use crate::config::ListenerConfig;

/// What comes first on a new connection of a listener with these settings, and how long it
/// may take.
pub(super) fn first(cfg: &ListenerConfig) -> (Front, Option<std::time::Duration>) {
    match (&cfg.proxy, &cfg.tls) {
        (Some(p), _) => (Front::Header, Some(p.timeout)),
        (None, Some(t)) => (Front::Tls, Some(t.handshake_timeout)),
        (None, None) => (Front::Ready, None),
    }
}

impl Core {
    /// The listener of a session (while it is in the table, lingering included).
    pub(crate) fn listener_of(&self, key: SessionKey) -> Option<super::ListenerId> {
        self.sessions.get(key).map(|s| s.listener)
    }

    /// A TLS listener's certificate files were read again: new connections use `tls`.
    pub(crate) fn replace_tls(&mut self, id: super::ListenerId, tls: crate::tls::TlsSettings) {
        if let Some(l) = self.listeners.get_mut(id.0) {
            let mut cfg = (*l.cfg).clone();
            cfg.tls = Some(tls);
            l.cfg = std::rc::Rc::new(cfg);
        }
    }

    /// Arm the deadline of what a new session waits for first.
    pub(super) fn arm_front(&mut self, key: SessionKey) {
        let s = &mut self.sessions[key];
        let (front, timeout) = first(&s.cfg);
        s.front = front;
        if let Some(t) = timeout {
            s.front_deadline = self.now + t;
            let sref = s.key_id(key);
            self.timers.push(s.front_deadline, Due::Handshake(sref));
        }
    }

    /// The PROXY header of a session came: `real` is the client it names (`None`: a v2
    /// LOCAL command or an unknown family, served as the balancer's own address). The real
    /// client is admitted again by the rules and limits; a refusal ends the connection.
    pub(crate) fn proxied(
        &mut self,
        key: SessionKey,
        real: Option<SocketAddr>,
    ) -> Result<(), Refusal> {
        let now = self.now;
        let Some(s) = self.sessions.get_mut(key) else {
            return Ok(());
        };
        if s.phase != Phase::Handshake || s.front != Front::Header {
            return Ok(());
        }
        if let Some(real) = real {
            let from = s.info.peer;
            let l = &mut self.listeners[s.listener.0];
            if let Err(refusal) = l.admit_real(from, real, now) {
                self.end(key, CloseReason::Refused);
                return Err(refusal);
            }
            s.info.peer = real;
        }
        match s.cfg.tls.as_ref().map(|t| t.handshake_timeout) {
            Some(timeout) => {
                s.front = Front::Tls;
                s.front_deadline = now + timeout;
                let sref = s.key_id(key);
                self.timers.push(s.front_deadline, Due::Handshake(sref));
            }
            None => s.front = Front::Ready,
        }
        Ok(())
    }

    /// The TLS handshake of a session finished: the session opens.
    pub(crate) fn tls_ready(&mut self, key: SessionKey, info: TlsInfo) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.phase != Phase::Handshake || s.front != Front::Tls {
            return;
        }
        s.front = Front::Ready;
        if self.debug {
            debug!(
                session = s.info.id,
                event = "tls_ready",
                version = info.version,
                sni = info.sni.as_deref(),
                client_cert = info.client_cert.as_deref(),
                "TLS handshake done"
            );
        }
        s.info.client_cert = info.client_cert.clone();
        s.tls = Some(Box::new(info));
        self.open(key);
    }

    /// The front of a session failed (a malformed header, a failed TLS handshake): the
    /// connection ends, logged (rate-limited per address) and counted.
    pub(crate) fn front_failed(&mut self, key: SessionKey, error: &str) {
        self.front_ended(key, CloseReason::HandshakeFailed, error);
    }

    /// A session's front deadline came.
    pub(super) fn front_due(&mut self, r: SessionRef) {
        let Some(s) = self.sessions.get(r.key).filter(|s| s.info.id == r.id) else {
            return;
        };
        if s.phase == Phase::Handshake && s.front != Front::Ready && s.front_deadline <= self.now {
            self.front_ended(
                r.key,
                CloseReason::HandshakeTimeout,
                "no complete handshake in time",
            );
        }
    }

    fn front_ended(&mut self, key: SessionKey, reason: CloseReason, error: &str) {
        let now = self.now;
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        if s.phase != Phase::Handshake {
            return;
        }
        let (peer, id, stage) = (s.info.peer, s.info.id, s.front.as_str());
        let l = &mut self.listeners[s.listener.0];
        l.stats.handshakes_failed += 1;
        if let Some(suppressed) = l.limits.may_log(peer.ip(), Event::Handshake, now) {
            warn!(parent: &l.span, event = "handshake_failed", reason = reason.as_str(), stage,
                session = id, %peer, error, suppressed,
                "connection closed before its session opened");
        }
        self.end(key, reason);
    }
}
