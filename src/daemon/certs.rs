//! Certificates on disk, watched: once a second the files of every TLS listener are looked
//! at (modification time, size, inode); when they changed, they are read again and new
//! connections get the new certificate while open sessions keep theirs. Files that do not
//! make a usable certificate (a key that does not match, half a file) leave the one in
//! force, and the log says why; the next change is tried again. A reload (SIGHUP,
//! `switchboard reload`) reads them too, with the whole config.

use std::collections::HashMap;
use std::time::Duration;

use tracing::{info, warn};

use super::core::ListenerId;
use super::{Daemon, ShellDue};
use crate::tls::Stamp;

/// How often the files are looked at.
pub(super) const CERT_CHECK: Duration = Duration::from_secs(1);

/// What was last seen of each TLS listener's files.
#[derive(Debug, Default)]
pub(super) struct CertWatch {
    /// By listener id and serial: the stamps last acted on.
    seen: HashMap<(usize, u64), Vec<Stamp>>,
    armed: bool,
}

impl Daemon {
    /// Start looking at the files if a listener has TLS and nobody looks yet.
    pub(super) fn watch_certs(&mut self) {
        let any = self
            .core
            .listeners()
            .any(|(_, l)| l.is_serving() && l.cfg.tls.is_some());
        if any && !self.certs.armed {
            self.certs.armed = true;
            self.timers.push(self.now + CERT_CHECK, ShellDue::CertCheck);
        }
    }

    /// The check timer: read again the files that changed.
    pub(super) fn check_certs(&mut self) {
        self.certs.armed = false;
        let tls: Vec<(ListenerId, u64)> = self
            .core
            .listeners()
            .filter(|(_, l)| l.is_serving() && l.cfg.tls.is_some())
            .map(|(id, l)| (id, l.serial))
            .collect();
        self.certs
            .seen
            .retain(|(id, serial), _| tls.contains(&(ListenerId(*id), *serial)));
        for (id, serial) in tls {
            let Some(l) = self.core.listener(id) else {
                continue;
            };
            let Some(settings) = l.cfg.tls.as_ref() else {
                continue;
            };
            let now = settings.stamps_now();
            let seen = self
                .certs
                .seen
                .entry((id.0, serial))
                .or_insert_with(|| settings.loaded.stamps.clone());
            if *seen == now {
                continue;
            }
            *seen = now;
            if !settings.differs_from_disk() {
                continue;
            }
            let span = l.span.clone();
            match settings.reload() {
                Ok(new) => {
                    info!(parent: &span, event = "certificate_reloaded",
                        "certificate files changed: new connections get the new certificate");
                    self.core.replace_tls(id, new);
                }
                Err(e) => {
                    warn!(parent: &span, event = "certificate_rejected", error = %e,
                        "certificate files changed but cannot be used; keeping the current certificate");
                }
            }
        }
        self.watch_certs();
    }
}
