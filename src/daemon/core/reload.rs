//! A reload as a diff of two configs: [`Core::plan_reload`] compares the listeners in
//! service with the new config (pure), the shell binds what is new, then
//! [`Core::apply_reload`] commits. A reload that cannot bind changes nothing.
//!
//! Listeners are matched by name. Same protocol, address and `reuse_port`: the socket is kept
//! (no reconnects, no lost datagrams) and new sessions get the new chain and settings while
//! open ones keep theirs. New: bound, unless a retiring listener still holds that very socket
//! (removed by an earlier reload, still serving its UDP peers), which then comes back with the
//! new settings. Removed, or moved to another address: stop accepting, and go once their
//! sessions end (or at `drain_timeout`).

use std::net::SocketAddr;
use std::rc::Rc;

use tracing::info;

use super::due::Due;
use super::listeners::{Listener, ListenerId, ListenerPhase, ListenerRef};
use super::{Core, Effect};
use crate::config::{Config, ListenerConfig};

/// What a reload did, for the log line and the `reload` command.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReloadSummary {
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
    pub(crate) changed: Vec<String>,
    pub(crate) unchanged: usize,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        write!(
            f,
            "added {}; removed {}; changed {}; unchanged {}",
            list(&self.added),
            list(&self.removed),
            list(&self.changed),
            self.unchanged
        )
    }
}

/// What a reload will do.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Listeners that keep their socket, with their new settings.
    pub(crate) keep: Vec<(ListenerId, ListenerConfig)>,
    /// Retiring listeners whose socket the new config wants back.
    revive: Vec<(ListenerId, ListenerConfig)>,
    /// Listeners that need a new socket: the shell binds these.
    pub(crate) bind: Vec<ListenerConfig>,
    retire: Vec<ListenerId>,
    pub(crate) summary: ReloadSummary,
}

/// Whether listener `l` holds the socket `cfg` asks for: the same protocol and options, and
/// the same address as configured, or as bound (a port 0 written down as the port it got).
fn same_socket(l: &Listener, cfg: &ListenerConfig) -> bool {
    (l.cfg.proto, l.cfg.reuse_port) == (cfg.proto, cfg.reuse_port)
        && (l.cfg.addr == cfg.addr || l.local == cfg.addr)
}

impl Core {
    /// Compare the listeners in service with `new`.
    pub(crate) fn plan_reload(&self, new: &Config) -> Plan {
        let mut plan = Plan::default();
        let serving = |name: &str| {
            self.listeners()
                .find(|(_, l)| l.is_serving() && !l.api && l.name() == name)
        };
        for cfg in &new.listeners {
            match serving(&cfg.name) {
                Some((id, l)) if same_socket(l, cfg) => {
                    if *l.cfg != *cfg {
                        plan.summary.changed.push(cfg.name.to_string());
                    } else {
                        plan.summary.unchanged += 1;
                    }
                    plan.keep.push((id, cfg.clone()));
                }
                Some((id, _)) => {
                    plan.retire.push(id);
                    plan.bind.push(cfg.clone());
                    plan.summary.changed.push(cfg.name.to_string());
                }
                None => {
                    let retired = self.listeners().find(|(id, l)| {
                        !l.is_serving()
                            && l.has_socket()
                            && same_socket(l, cfg)
                            && !plan.revive.iter().any(|(r, _)| r == id)
                    });
                    match retired {
                        Some((id, _)) => plan.revive.push((id, cfg.clone())),
                        None => plan.bind.push(cfg.clone()),
                    }
                    plan.summary.added.push(cfg.name.to_string());
                }
            }
        }
        for (id, l) in self.listeners() {
            if l.is_serving() && !l.api && !new.listeners.iter().any(|c| *c.name == *l.name()) {
                plan.retire.push(id);
                plan.summary.removed.push(l.name().to_string());
            }
        }
        plan
    }

    /// Commit a plan; `bound` are the addresses of `plan.bind`'s new sockets, in order.
    /// Returns the new listeners' ids, in the same order, for the shell to install the
    /// sockets under (after applying the effects queued here).
    pub(crate) fn apply_reload(&mut self, plan: Plan, bound: &[SocketAddr]) -> Vec<ListenerId> {
        for (id, cfg) in plan.keep {
            // An unchanged listener keeps its very factories, so that its shared children
            // go on; a changed one's serve its open sessions and end after them. Faults
            // changed in the file replace the listener's at once, for its open sessions too.
            let old = self.listeners[id.0].cfg.clone();
            if old.faults != cfg.faults {
                self.set_faults(id, cfg.faults.seed, cfg.faults.list.clone());
            }
            let mut same = cfg.clone();
            same.faults = old.faults.clone();
            if *old != cfg {
                self.listeners[id.0].cfg = Rc::new(cfg);
            }
            if *old != same {
                self.retire_shared(id);
            }
        }
        for (id, cfg) in plan.revive {
            let l = &mut self.listeners[id.0];
            info!(parent: &l.span, event = "listener_revived",
                "back in the config: the retiring listener takes new sessions again");
            l.cfg = Rc::new(cfg);
            l.phase = ListenerPhase::Serving;
        }
        for id in plan.retire {
            self.retire_listener(id);
        }
        plan.bind
            .into_iter()
            .zip(bound)
            .map(|(cfg, &local)| self.add_listener(Rc::new(cfg), local))
            .collect()
    }

    /// A listener made through the toxiproxy API: a reload leaves it alone.
    pub(crate) fn mark_api(&mut self, id: ListenerId) {
        if let Some(l) = self.listeners.get_mut(id.0) {
            l.api = true;
        }
    }

    /// Take a TCP listener out of service at once (a proxy disabled or deleted through the
    /// API): its socket closes and its sessions end.
    pub(crate) fn remove_listener(&mut self, id: ListenerId) {
        let Some(l) = self.listeners.get_mut(id.0) else {
            return;
        };
        if l.phase == ListenerPhase::Serving {
            l.phase = ListenerPhase::Retiring;
            self.retire_shared(id);
            self.effects.push_back(Effect::StopListener(id));
        }
        let keys: Vec<super::SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.listener == id && s.is_live())
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.end(key, switchboard_handlers::CloseReason::Shutdown);
        }
        self.finish_listener(id);
    }

    /// Stop a listener taking new sessions; it leaves when its sessions end.
    fn retire_listener(&mut self, id: ListenerId) {
        self.retire_shared(id);
        let drain_timeout = self.drain_timeout;
        let l = &mut self.listeners[id.0];
        l.phase = ListenerPhase::Retiring;
        if l.is_udp() {
            if l.active > 0 {
                l.span.in_scope(|| {
                    info!(
                        event = "listener_retiring",
                        sessions = l.active,
                        "removed from the config; serving its open sessions until they end"
                    )
                });
                let r = ListenerRef {
                    id,
                    serial: l.serial,
                };
                self.timers.push(self.now + drain_timeout, Due::Retire(r));
            }
        } else {
            l.span.in_scope(|| {
                info!(
                    event = "listener_retiring",
                    sessions = l.active,
                    "removed from the config; open sessions go on"
                )
            });
            self.effects.push_back(Effect::StopListener(id));
        }
        self.finish_listener(id);
    }
}
