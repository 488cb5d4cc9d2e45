//! Reload (SIGHUP, `switchboard reload`): re-read the config and apply it as a diff.
//!
//! Listeners are matched by name. Same protocol, address and `reuse_port`: the socket is kept
//! (no reconnects, no lost datagrams) and new sessions get the new chain and settings while
//! open ones keep theirs. New: bound. Removed, or moved to another address: stop accepting,
//! and stop once their sessions end (or at `drain_timeout`). Everything new is bound before
//! anything changes, so a reload that cannot bind changes nothing.

use std::collections::HashMap;
use std::rc::Rc;

use tracing::{error, info, warn};

use super::bind::{self, Bound};
use super::{Daemon, Inherited, RunState, Timer};
use crate::config::{self, ListenerConfig};

/// What a reload did, for the log line and the `reload` command.
#[derive(Debug, Default)]
pub(super) struct ReloadSummary {
    pub(super) added: Vec<String>,
    pub(super) removed: Vec<String>,
    pub(super) changed: Vec<String>,
    pub(super) unchanged: usize,
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

fn same_socket(a: &ListenerConfig, b: &ListenerConfig) -> bool {
    (a.proto, a.addr, a.reuse_port) == (b.proto, b.addr, b.reuse_port)
}

impl Daemon {
    /// Re-read the config and apply it. On any error the running config stays as it is.
    pub(super) fn reload(&mut self) -> Result<ReloadSummary, String> {
        if self.state != RunState::Running {
            return Err("the daemon is stopping".into());
        }
        self.notify.reloading();
        let result = self.try_reload();
        match &result {
            Ok(summary) => info!(%summary, "reloaded"),
            Err(e) => warn!(error = %e, "reload refused; the running config is unchanged"),
        }
        let serving = self
            .listeners
            .iter()
            .filter(|l| l.socket.is_some() && !l.retiring)
            .count();
        self.notify.serving(serving);
        result
    }

    fn try_reload(&mut self) -> Result<ReloadSummary, String> {
        let new = config::load(self.config_file.as_deref()).map_err(|errors| {
            for e in &errors.0 {
                error!("{e}");
            }
            format!("the config has {} error(s): {errors}", errors.0.len())
        })?;
        // Listeners in service, by name.
        let live: HashMap<Rc<str>, usize> = self
            .listeners
            .iter()
            .filter(|l| l.socket.is_some() && !l.retiring)
            .map(|l| (Rc::from(&*l.cfg.name), l.index))
            .collect();
        let mut summary = ReloadSummary::default();
        let mut keep = Vec::new();
        let mut to_bind = Vec::new();
        let mut retire = Vec::new();
        for cfg in &new.listeners {
            match live.get(&*cfg.name) {
                Some(&idx) if same_socket(&self.listeners[idx].cfg, cfg) => keep.push((idx, cfg)),
                Some(&idx) => {
                    retire.push(idx);
                    to_bind.push(cfg);
                    summary.changed.push(cfg.name.to_string());
                }
                None => {
                    to_bind.push(cfg);
                    summary.added.push(cfg.name.to_string());
                }
            }
        }
        for (name, &idx) in &live {
            if !new.listeners.iter().any(|l| *l.name == **name) {
                retire.push(idx);
                summary.removed.push(name.to_string());
            }
        }
        // Bind first: a failure here leaves everything as it was.
        let mut bound = Vec::new();
        for cfg in to_bind {
            let mut none = Inherited::default();
            let (socket, local) = bind::bind(cfg, &mut none).map_err(|e| e.to_string())?;
            bound.push((cfg, socket, local));
        }
        // Commit.
        for (idx, cfg) in keep {
            let listener = &mut self.listeners[idx];
            let old = std::mem::replace(&mut listener.cfg, Rc::new(cfg.clone()));
            if old.backlog != cfg.backlog
                && let Some(Bound::Tcp(l)) = &listener.socket
                && let Err(e) =
                    socket2::SockRef::from(l).listen(cfg.backlog.min(i32::MAX as u32) as i32)
            {
                warn!(listener = %cfg.name, error = %e, "cannot change the backlog; restart to apply it");
            }
            if old.handler_names != cfg.handler_names || format!("{old:?}") != format!("{cfg:?}") {
                summary.changed.push(cfg.name.to_string());
            } else {
                summary.unchanged += 1;
            }
        }
        for idx in retire {
            self.retire_listener(idx);
        }
        for (cfg, socket, local) in bound {
            self.install_listener(Rc::new(cfg.clone()), socket, local)
                .map_err(|e| e.to_string())?;
        }
        // Daemon-wide settings.
        self.drain_timeout = new.daemon.drain_timeout;
        if new.daemon.control_socket != self.daemon_cfg.control_socket {
            warn!("control_socket changed: restart to move the control socket");
        }
        if let Some(logging) = self.logging.as_mut()
            && logging.differs(&new.daemon)
            && let Err(e) = logging.reload(&new.daemon)
        {
            warn!(error = %e, "cannot apply the new log settings; keeping the old ones");
        }
        self.daemon_cfg = new.daemon;
        self.debug = tracing::enabled!(tracing::Level::DEBUG);
        Ok(summary)
    }

    /// Stop a listener taking new sessions; it stops for good when its sessions end.
    fn retire_listener(&mut self, idx: usize) {
        let listener = &mut self.listeners[idx];
        listener.retiring = true;
        if listener.cfg.proto == switchboard_handlers::Proto::Tcp || listener.active == 0 {
            // TCP sessions have their own sockets: the listening one can close now.
            let tcp = listener.cfg.proto == switchboard_handlers::Proto::Tcp;
            let why = if tcp {
                "removed from the config; open sessions go on"
            } else {
                "removed from the config"
            };
            self.stop_listener(idx, why);
        } else {
            let name = listener.cfg.name.clone();
            info!(listener = %name, sessions = listener.active, "removed from the config; serving its open sessions until they end");
            self.timers.push(
                self.now + self.drain_timeout,
                Timer::Retire { listener: idx },
            );
        }
    }
}
