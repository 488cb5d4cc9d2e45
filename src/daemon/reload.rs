//! Reload (SIGHUP, `switchboard reload`), the shell's part: read and compile the new config
//! on a thread of its own (a script of many thousand rules takes a while, and the loop keeps
//! serving meanwhile), then, back in the loop, let the core plan the diff, bind what is new
//! (a failure changes nothing), commit, and install the new sockets. The plan and its commit
//! are the core's (`core/reload.rs`).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, channel};

use tracing::{error, info, warn};

use super::bind;
use super::core::{OpId, ReloadSummary, RunState};
use super::{Daemon, Inherited, ListenerIo};
use crate::config::{self, Config, ConfigErrors};

/// A reload whose config is being read.
#[derive(Debug)]
pub(super) struct Loading {
    result: Receiver<Result<Config, ConfigErrors>>,
    /// Control clients waiting for the outcome.
    waiters: Vec<OpId>,
    /// Another reload was asked for meanwhile: the file may have changed again.
    again: bool,
}

impl Daemon {
    /// Start a reload (SIGHUP, or `switchboard reload` from control client `waiter`): the
    /// config is read on a thread; [`Daemon::reload_loaded`] applies it when it is ready.
    pub(super) fn reload(&mut self, waiter: Option<OpId>) {
        if self.core.state() != RunState::Running {
            if let Some(op) = waiter {
                self.answer_reload(op, &Err("the daemon is stopping".into()));
            }
            return;
        }
        if let Some(loading) = self.loading.as_mut() {
            loading.waiters.extend(waiter);
            loading.again = true;
            return;
        }
        self.notify.reloading();
        info!(event = "reload_started", "reloading: reading the config");
        let (tx, rx) = channel();
        let (file, waker) = (self.config_file.clone(), Arc::clone(&self.waker));
        let spawned = std::thread::Builder::new()
            .name("config-reload".into())
            .spawn(move || {
                // A transcript folder the daemon cannot write refuses the reload.
                let loaded = config::load(file.as_deref()).and_then(|c| {
                    super::check_transcripts(&c).map_err(|e| ConfigErrors(vec![e]))?;
                    Ok(c)
                });
                let _ = tx.send(loaded);
                let _ = waker.wake();
            });
        if let Err(e) = spawned {
            let result = Err(format!("cannot start reading the config: {e}"));
            self.reload_done(result, waiter.into_iter().collect());
            return;
        }
        self.loading = Some(Loading {
            result: rx,
            waiters: waiter.into_iter().collect(),
            again: false,
        });
    }

    /// The waker fired: apply the config read on the thread, if it is there.
    pub(super) fn reload_loaded(&mut self) {
        let Some(loading) = self.loading.as_ref() else {
            return;
        };
        let loaded = match loading.result.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Err(ConfigErrors(Vec::new())),
        };
        let Loading { waiters, again, .. } = self.loading.take().expect("checked above");
        let result = match loaded {
            Err(errors) if errors.0.is_empty() => Err("reading the config failed".to_string()),
            Err(errors) => {
                for e in &errors.0 {
                    error!(event = "config_error", error = %e, "{e}");
                }
                Err(format!(
                    "the config has {} error(s): {errors}",
                    errors.0.len()
                ))
            }
            Ok(new) if self.core.state() == RunState::Running => self.apply(new),
            Ok(_) => Err("the daemon is stopping".into()),
        };
        self.reload_done(result, waiters);
        if again {
            self.reload(None);
        }
    }

    fn reload_done(&mut self, result: Result<ReloadSummary, String>, waiters: Vec<OpId>) {
        self.notify.serving(self.core.serving());
        match &result {
            Ok(summary) => info!(event = "reloaded", %summary, "reloaded"),
            Err(e) => {
                warn!(event = "reload_refused", error = %e, "reload refused; the running config is unchanged");
                self.notify.status(&format!("reload refused: {e}"));
            }
        }
        for op in waiters {
            self.answer_reload(op, &result);
        }
    }

    fn answer_reload(&mut self, op: OpId, result: &Result<ReloadSummary, String>) {
        let line = match result {
            Ok(summary) => format!("reloaded: {summary}"),
            Err(e) => format!("reload refused: {e}"),
        };
        self.control.tell(op, &line, self.poll.registry());
        self.drop_client(op, "request answered");
    }

    /// Apply a new config: plan, bind, commit.
    fn apply(&mut self, new: Config) -> Result<ReloadSummary, String> {
        for w in new.warnings() {
            warn!(event = "public_bind", "{w}");
        }
        for l in &new.listeners {
            if let Some(r) = &l.record {
                r.check_writable()
                    .map_err(|e| format!("listener {:?}: [listener.record] dir: {e}", &*l.name))?;
            }
        }
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
        if new.daemon.toxiproxy_api != self.daemon_cfg.toxiproxy_api {
            warn!(
                event = "restart_needed",
                what = "toxiproxy_api",
                "toxiproxy_api changed: restart to move the API"
            );
        }
        if new.daemon.web != self.daemon_cfg.web {
            warn!(
                event = "restart_needed",
                what = "web",
                "the web console's settings changed: restart to apply them"
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
        self.watch_certs();
        Ok(summary)
    }
}
