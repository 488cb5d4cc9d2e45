//! At start: make sure the open-file limit can hold every TCP session the listeners allow.
//! The soft limit is raised towards the hard one if needed (the loop polls with epoll, never
//! with select(2), so a high limit is harmless); if even that is too low, say how to raise it.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use switchboard_handlers::Proto;
use tracing::{info, warn};

use crate::config::ListenerConfig;

/// Descriptors kept for what is not a session (listeners, epoll, signals, console, logs).
const FD_MARGIN: u64 = 64;
/// What an unlimited hard limit still is, by the kernel's `fs.nr_open` default.
const NR_OPEN: u64 = 1 << 20;

pub(crate) fn check_open_files(listeners: &[ListenerConfig]) {
    let tcp: Vec<&ListenerConfig> = listeners.iter().filter(|l| l.proto == Proto::Tcp).collect();
    if tcp.is_empty() {
        return;
    }
    let unlimited = tcp.iter().any(|l| l.limits.max_connections.is_none());
    let needed = FD_MARGIN
        + listeners.len() as u64
        + tcp
            .iter()
            .filter_map(|l| l.limits.max_connections)
            .map(|n| n as u64)
            .sum::<u64>();
    let lim = getrlimit(Resource::Nofile);
    let (Some(mut soft), hard) = (lim.current, lim.maximum) else {
        return;
    };
    let most = hard.unwrap_or(NR_OPEN);
    let wanted = if unlimited { most } else { needed.min(most) };
    if soft < wanted {
        let raised = Rlimit {
            current: Some(wanted),
            maximum: hard,
        };
        // Raising the soft limit up to the hard one needs no privilege.
        if setrlimit(Resource::Nofile, raised).is_ok() {
            info!(
                event = "nofile_raised",
                from = soft,
                to = wanted,
                "raised the open-file limit (RLIMIT_NOFILE) to fit max_connections"
            );
            soft = wanted;
        }
    }
    if !unlimited && soft < needed {
        warn!(
            event = "nofile_low",
            limit = soft,
            needed,
            "the open-file limit (RLIMIT_NOFILE) is below the sum of max_connections of the \
             TCP listeners plus a margin; accepts will pause when descriptors run out. Raise it \
             with `ulimit -n {needed}` before starting, or LimitNOFILE={needed} in the systemd \
             unit, or lower max_connections"
        );
    }
}
