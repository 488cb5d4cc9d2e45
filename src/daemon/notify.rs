//! Telling the service manager how the daemon is doing: the `sd_notify(3)` protocol.
//!
//! systemd names a Unix datagram socket in `NOTIFY_SOCKET`: a path, or an abstract name
//! written with a leading `@`. Each notification is one datagram of `KEY=VALUE` lines. Without
//! `NOTIFY_SOCKET` every method here does nothing, so the loop calls them unconditionally.
//!
//! The sender is hand-written, on std alone: the `sd-notify` crate connects to the variable's
//! value as a file path, so an abstract `@name` socket is never reached, and it sends with a
//! blocking socket, which a single-threaded event loop must not do. Here the socket is
//! non-blocking: when the manager's queue is full, a notification is dropped, not waited for.
//!
//! What the loop sends, and when:
//! - `READY=1` with `STATUS=serving N listeners` once every listener is bound ([`started`]);
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, from the loop's timer heap, so a stuck loop
//!   stops the pings and systemd restarts the service ([`on_watchdog_timer`]);
//! - `STOPPING=1` when the drain begins ([`stopping`]);
//! - `RELOADING=1` with `MONOTONIC_USEC` when a reload begins ([`reloading`]), followed by
//!   [`ready`] when it is done (systemd 253 and later reject a `RELOADING=1` without it).
//!
//! [`started`]: Notifier::started
//! [`on_watchdog_timer`]: Notifier::on_watchdog_timer
//! [`stopping`]: Notifier::stopping
//! [`reloading`]: Notifier::reloading
//! [`ready`]: Notifier::ready

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::ShellDue;
use super::timers::Timers;

/// Where notifications go, and how often the watchdog wants to hear from us.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    target: Option<Target>,
    /// `WATCHDOG_USEC`, when it is meant for this process.
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: UnixAddr,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. An unusable `NOTIFY_SOCKET`
    /// is reported once and notifications are off; nothing here is fatal.
    pub(crate) fn from_env() -> Notifier {
        let watchdog = watchdog_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        match Notifier::to(&value, watchdog) {
            Ok(n) => n,
            Err(e) => {
                warn!(NOTIFY_SOCKET = %value.to_string_lossy(), error = %e, "cannot notify the service manager; readiness and watchdog notifications are off");
                Notifier::default()
            }
        }
    }

    /// A notifier sending to `socket` (`/path` or `@abstract`).
    fn to(socket: &OsStr, watchdog: Option<Duration>) -> io::Result<Notifier> {
        let addr = target_addr(socket)?;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            target: Some(Target { socket, addr }),
            watchdog,
        })
    }

    /// Startup is done: `READY=1` with a status line.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}\n", one_line(status)));
    }

    /// A reload begins: `RELOADING=1` with the monotonic clock, as systemd 253 and later
    /// require. Send [`ready`](Notifier::ready) when it is done.
    pub(crate) fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading\n",
            monotonic_usec()
        ));
    }

    /// Shutdown begins: `STOPPING=1`, with how many sessions are still to finish.
    pub(crate) fn stopping(&self, sessions: usize) {
        self.send(&format!(
            "STOPPING=1\nSTATUS=stopping: {sessions} session(s) to finish\n"
        ));
    }

    /// A free-form status line, shown by `systemctl status` (after a refused reload, say).
    pub(crate) fn status(&self, text: &str) {
        self.send(&format!("STATUS={}\n", one_line(text)));
    }

    /// How long the service manager waits for a `WATCHDOG=1` before it considers the
    /// service hung; `None` when the watchdog is off or meant for another process.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.target.is_some())
    }

    /// Tell the watchdog the loop is alive.
    pub(crate) fn watchdog(&self) {
        self.send("WATCHDOG=1\n");
    }

    /// Every listener is bound: report ready and start the watchdog pings.
    pub(crate) fn started(&self, listeners: usize, timers: &mut Timers<ShellDue>, now: Instant) {
        if self.target.is_none() {
            return;
        }
        self.serving(listeners);
        if let Some(interval) = self.watchdog_interval() {
            info!(interval = ?interval, "systemd watchdog on; pinging at half the interval");
            timers.push(now + interval / 2, ShellDue::Watchdog);
        }
    }

    /// READY=1 with the number of listeners serving, at start and after a reload.
    pub(crate) fn serving(&self, listeners: usize) {
        let plural = if listeners == 1 { "" } else { "s" };
        self.ready(&format!("serving {listeners} listener{plural}"));
    }

    /// [`ShellDue::Watchdog`] fired: ping, and arm the next one at half the interval.
    pub(crate) fn on_watchdog_timer(&self, timers: &mut Timers<ShellDue>, now: Instant) {
        if let Some(interval) = self.watchdog_interval() {
            self.watchdog();
            timers.push(now + interval / 2, ShellDue::Watchdog);
        }
    }

    fn send(&self, msg: &str) {
        let Some(t) = &self.target else {
            return;
        };
        match t.socket.send_to_addr(msg.as_bytes(), &t.addr) {
            Ok(_) => {
                debug!(msg = %msg.trim_end().replace('\n', " "), "notified the service manager")
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                debug!(msg = %msg.trim_end().replace('\n', " "), "the service manager's queue is full; notification dropped")
            }
            Err(e) => {
                warn!(msg = %msg.trim_end().replace('\n', " "), error = %e, "cannot notify the service manager")
            }
        }
    }
}

/// The socket address named by a `NOTIFY_SOCKET` value.
fn target_addr(value: &OsStr) -> io::Result<UnixAddr> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'@') => UnixAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => UnixAddr::from_pathname(value),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "expected an absolute path or an @abstract name",
        )),
    }
}

/// The watchdog interval from `WATCHDOG_USEC` and `WATCHDOG_PID`, as `sd_watchdog_enabled(3)`
/// reads them: `WATCHDOG_PID`, when present, must be `me`.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    Some(Duration::from_micros(usec))
}

/// A status text cannot hold a newline: that would start another `KEY=`.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn receiver(addr: &UnixAddr) -> UnixDatagram {
        let r = UnixDatagram::bind_addr(addr).expect("bind receiver");
        r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        r
    }

    fn recv(r: &UnixDatagram) -> String {
        let mut buf = [0; 1024];
        let n = r.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let r = receiver(&UnixAddr::from_pathname(&path).unwrap());
        let n = Notifier::to(path.as_os_str(), None).unwrap();
        n.ready("serving 2 listeners");
        assert_eq!(recv(&r), "READY=1\nSTATUS=serving 2 listeners\n");
        n.stopping(3);
        assert_eq!(
            recv(&r),
            "STOPPING=1\nSTATUS=stopping: 3 session(s) to finish\n"
        );
        n.status("2 sessions\ninjected=1");
        assert_eq!(recv(&r), "STATUS=2 sessions injected=1\n");
    }

    #[test]
    fn sends_to_an_abstract_socket_named_with_at() {
        let name = format!("switchboard-notify-test-{}", std::process::id());
        let r = receiver(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap());
        let n = Notifier::to(&OsString::from(format!("@{name}")), None).unwrap();
        n.watchdog();
        assert_eq!(recv(&r), "WATCHDOG=1\n");
        n.reloading();
        let msg = recv(&r);
        let usec: u64 = msg
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC")
            .parse()
            .unwrap();
        assert!(msg.starts_with("RELOADING=1\n"), "{msg}");
        let now = monotonic_usec();
        assert!(usec <= now && now - usec < 10_000_000, "{usec} vs {now}");
    }

    #[test]
    fn rejects_relative_and_vsock_addresses() {
        assert!(target_addr(OsStr::new("notify.sock")).is_err());
        assert!(target_addr(OsStr::new("vsock:2:1234")).is_err());
        assert!(target_addr(OsStr::new("")).is_err());
    }

    #[test]
    fn watchdog_needs_a_positive_usec_and_our_pid_if_one_is_given() {
        let ms200 = Some(Duration::from_millis(200));
        assert_eq!(watchdog_from(Some("200000"), None, 7), ms200);
        assert_eq!(watchdog_from(Some("200000"), Some("7"), 7), ms200);
        assert_eq!(watchdog_from(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("200000"), Some("x"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_from(None, Some("7"), 7), None);
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_the_watchdog_is_off() {
        let n = Notifier {
            target: None,
            watchdog: Some(Duration::from_secs(1)),
        };
        assert_eq!(n.watchdog_interval(), None);
        let mut timers = Timers::default();
        n.started(1, &mut timers, Instant::now());
        assert_eq!(timers.next_deadline(), None);
    }
}
