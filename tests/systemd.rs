//! systemd integration: `sd_notify` (ready, watchdog, stopping) and socket activation, with
//! the test standing in for the service manager.

use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const ECHO: &str = "[\"echo\"]";

/// The notification socket systemd would listen on.
struct NotifySocket {
    socket: UnixDatagram,
    /// The value for `NOTIFY_SOCKET`.
    env: String,
    _dir: Option<tempfile::TempDir>,
}

impl NotifySocket {
    /// A socket at a path in a fresh folder, as systemd's `/run/systemd/notify`.
    fn at_path() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket::new(socket, path.display().to_string(), Some(dir))
    }

    /// A socket in the abstract namespace, named `@...` in `NOTIFY_SOCKET`.
    fn abstract_name() -> NotifySocket {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "switchboard-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
        NotifySocket::new(socket, format!("@{name}"), None)
    }

    fn new(socket: UnixDatagram, env: String, dir: Option<tempfile::TempDir>) -> NotifySocket {
        socket.set_read_timeout(Some(WAIT)).unwrap();
        NotifySocket {
            socket,
            env,
            _dir: dir,
        }
    }

    /// The next notification that has `line` as one of its lines (those before it are
    /// consumed); fails the test after `WAIT` without one.
    fn wait_line(&self, line: &str) -> String {
        let mut buf = [0; 4096];
        loop {
            let n = self
                .socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no notification with {line:?}: {e}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == line) {
                return msg;
            }
        }
    }
}

/// `switchboard run -c CONFIG` without any systemd variable of the environment the tests run
/// in.
fn switchboard(config: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "-c"]).arg(config);
    without_service_manager(&mut cmd);
    cmd
}

/// Like [`switchboard`], through `sh` so that `var` holds the daemon's own pid (`$$` survives
/// `exec`), as systemd sets `LISTEN_PID` and `WATCHDOG_PID` to the pid it forks.
fn switchboard_with_own_pid_in(var: &str, config: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("export {var}=$$; exec \"$0\" \"$@\""))
        .arg(bin())
        .args(["run", "-c"])
        .arg(config);
    without_service_manager(&mut cmd);
    cmd
}

/// The daemon started as systemd starts a socket-activated service: `fds` become fds 3, 4,
/// ..., with `LISTEN_FDS`, `LISTEN_PID` and, when given, `LISTEN_FDNAMES`.
fn socket_activated(config: &Path, fds: &[RawFd], names: Option<&str>) -> Command {
    const MAX: usize = 8;
    assert!(fds.len() <= MAX);
    let mut cmd = switchboard_with_own_pid_in("LISTEN_PID", config);
    cmd.env("LISTEN_FDS", fds.len().to_string());
    if let Some(names) = names {
        cmd.env("LISTEN_FDNAMES", names);
    }
    let fds = fds.to_vec();
    let child_side = move || {
        // First out of the way (a source may be 3 or 4), then into place: dup2 leaves the
        // copy without close-on-exec, so it survives exec; the temporary ones do not.
        let mut high = [0; MAX];
        for (i, &fd) in fds.iter().enumerate() {
            // SAFETY: fcntl on an fd number; no memory is touched.
            high[i] = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
            if high[i] < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        for (i, &fd) in high[..fds.len()].iter().enumerate() {
            // SAFETY: dup2 on fd numbers; no memory is touched.
            if unsafe { libc::dup2(fd, 3 + i as RawFd) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the closure runs between fork and exec and only calls fcntl and dup2, which are
    // async-signal-safe; it allocates nothing.
    unsafe { cmd.pre_exec(child_side) };
    cmd
}

/// A log event seen before the daemon became ready.
fn seen_event(d: &Daemon, name: &str) -> Option<Value> {
    d.events(name).next()
}

#[test]
fn notify_socket_gets_ready_reloading_and_stopping() {
    let n = NotifySocket::at_path();
    let mut d = Daemon::start_command(&tcp_listener("t", ECHO, ""), |config| {
        let mut cmd = switchboard(config);
        cmd.env("NOTIFY_SOCKET", &n.env);
        cmd
    });
    let ready = n.wait_line("READY=1");
    assert!(
        ready.lines().any(|l| l == "STATUS=serving 1 listener"),
        "{ready:?}"
    );
    assert_eq!(ask(&mut connect(d.addr("t")), "still here"), "still here");
    // A reload is announced, with the monotonic clock systemd 253 and later need, then ready.
    d.signal(libc::SIGHUP);
    let reloading = n.wait_line("RELOADING=1");
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let ready = n.wait_line("READY=1");
    assert!(
        ready.lines().any(|l| l == "STATUS=serving 1 listener"),
        "{ready:?}"
    );
    d.signal(libc::SIGTERM);
    let stopping = n.wait_line("STOPPING=1");
    assert!(
        stopping.lines().any(|l| l.starts_with("STATUS=stopping")),
        "{stopping:?}"
    );
    assert!(d.wait_exit().success());
}

#[test]
fn watchdog_is_pinged_at_half_the_interval_through_an_abstract_notify_socket() {
    let n = NotifySocket::abstract_name();
    let _d = Daemon::start_command(&tcp_listener("t", ECHO, ""), |config| {
        let mut cmd = switchboard_with_own_pid_in("WATCHDOG_PID", config);
        cmd.env("NOTIFY_SOCKET", &n.env)
            .env("WATCHDOG_USEC", "200000");
        cmd
    });
    n.wait_line("READY=1");
    n.wait_line("WATCHDOG=1");
    let first = Instant::now();
    for _ in 0..4 {
        n.wait_line("WATCHDOG=1");
    }
    // Four more pings 100 ms apart take about 400 ms; far less means they are not paced.
    let took = first.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "4 pings in {took:?}: not paced by the interval"
    );
}

#[test]
fn socket_activation_serves_the_passed_tcp_socket_matched_by_address() {
    let passed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = passed.local_addr().unwrap();
    let config = format!(
        "[[listener]]\nname = \"echo\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = {}\nhandlers = {ECHO}\n",
        addr.port()
    );
    let d = Daemon::start_command(&config, |path| {
        socket_activated(path, &[passed.as_raw_fd()], None)
    });
    // While this copy was open, the daemon could not have bound the port itself; now only
    // the daemon's copy is left.
    drop(passed);
    assert_eq!(d.addr("echo"), addr);
    let ev = seen_event(&d, "socket_inherited")
        .unwrap_or_else(|| panic!("no log of the inherited socket:\n{}", d.seen.join("\n")));
    assert_eq!(field(&ev, "listener"), "echo");
    assert_eq!(field(&ev, "matched_by"), "address");
    assert_eq!(field(&ev, "fd"), "3");
    let mut c = connect(addr);
    assert_eq!(
        ask(&mut c, "welcome to Python world"),
        "welcome to Python world"
    );
}

#[test]
fn socket_activation_matches_by_name_and_closes_a_socket_no_listener_takes() {
    let passed = TcpListener::bind("127.0.0.1:0").unwrap();
    let stray = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The config asks for port 0: the name, not the address, gives it the passed socket.
    let d = Daemon::start_command(&tcp_listener("web", ECHO, ""), |path| {
        socket_activated(
            path,
            &[passed.as_raw_fd(), stray.as_raw_fd()],
            Some("web:stray"),
        )
    });
    assert_eq!(d.addr("web"), passed.local_addr().unwrap());
    let used = seen_event(&d, "socket_inherited").expect("used event");
    assert_eq!(field(&used, "matched_by"), "name");
    let unused = d
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| event(v) == "socket_unused")
        .unwrap_or_else(|| panic!("no warning for the stray socket:\n{}", d.seen.join("\n")));
    assert_eq!(field(&unused, "level"), "WARN");
    assert_eq!(field(&unused, "name"), "stray");
    assert_eq!(field(&unused, "fd"), "4");
    // The daemon's fd 4 is no longer the stray socket.
    let ours = std::fs::read_link(format!("/proc/self/fd/{}", stray.as_raw_fd())).unwrap();
    let theirs = std::fs::read_link(format!("/proc/{}/fd/4", d.pid())).ok();
    assert_ne!(theirs, Some(ours), "the unused socket is still open");
    assert_eq!(ask(&mut connect(d.addr("web")), "hello"), "hello");
}
