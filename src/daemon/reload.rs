//! Reload (SIGHUP, `switchboard reload`), the shell's part: re-read the config, let the core
//! plan the diff, bind what is new (a failure changes nothing), commit, and install the new
//! sockets. The plan and its commit are the core's (`core/reload.rs`).

use tracing::{error, info, warn};

use super::bind;
use super::core::{ReloadSummary, RunState};
use super::{Daemon, Inherited, ListenerIo};
use crate::config;

impl Daemon {
    /// Re-read the config and apply it. On any error the running config stays as it is.
    pub(super) fn reload(&mut self) -> Result<ReloadSummary, String> {
        if self.core.state() != RunState::Running {
            return Err("the daemon is stopping".into());
        }
        self.notify.reloading();
        let result = self.try_reload();
        self.notify.serving(self.core.serving());
        match &result {
            Ok(summary) => info!(event = "reloaded", %summary, "reloaded"),
            Err(e) => {
                warn!(event = "reload_refused", error = %e, "reload refused; the running config is unchanged");
                self.notify.status(&format!("reload refused: {e}"));
            }
        }
        result
    }

    fn try_reload(&mut self) -> Result<ReloadSummary, String> {
        let new = config::load(self.config_file.as_deref()).map_err(|errors| {
            for e in &errors.0 {
                error!(event = "config_error", error = %e, "{e}");
            }
            format!("the config has {} error(s): {errors}", errors.0.len())
        })?;
        super::check_transcripts(&new).map_err(|e| format!("{e:#}"))?;
        let plan = self.core.plan_reload(&new);
        // Bind first: a failure here leaves everything as it was.
        let mut bound = Vec::new();
        for cfg in &plan.bind {
            let mut none = Inherited::default();
            bound.push(bind::bind(cfg, &mut none).map_err(|e| e.to_string())?);
        }
        // A kept TCP socket takes a new backlog in place.
        for (id, cfg) in &plan.keep {
            let old = self.core.listener(*id).map(|l| l.cfg.backlog);
            if old != Some(cfg.backlog)
                && let Some(Some(ListenerIo::Tcp(t))) = self.sockets.get(id.0)
                && let Err(e) = socket2::SockRef::from(&t.socket)
                    .listen(cfg.backlog.min(i32::MAX as u32) as i32)
            {
                warn!(listener = %cfg.name, error = %e, "cannot change the backlog; restart to apply it");
            }
        }
        let summary = plan.summary.clone();
        let addrs: Vec<_> = bound.iter().map(|(_, local)| *local).collect();
        let ids = self.core.apply_reload(plan, &addrs);
        // Retired sockets close before new ones take their slots.
        self.settle();
        for (id, (socket, _)) in ids.into_iter().zip(bound) {
            if let Err(e) = self.install_socket(id, socket) {
                error!(error = %e, "cannot register a new listener");
                self.core
                    .stop_listener(id, "its socket could not be registered");
            }
        }
        self.settle();
        // Daemon-wide settings.
        self.core.set_drain_timeout(new.daemon.drain_timeout);
        if new.daemon.control_socket != self.daemon_cfg.control_socket {
            warn!(
                event = "restart_needed",
                what = "control_socket",
                "control_socket changed: restart to move the control socket"
            );
        }
        if let Some(logging) = self.logging.as_mut()
            && logging.differs(&new.daemon)
            && let Err(e) = logging.reload(&new.daemon)
        {
            warn!(error = %e, "cannot apply the new log settings; keeping the old ones");
        }
        self.daemon_cfg = new.daemon;
        self.core.refresh_debug();
        Ok(summary)
    }
}
