//! Shared helpers: start the real daemon on port 0 and read its bound addresses from its
//! `listening` log events; run the binary's other commands.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;
use wait_timeout::ChildExt;

/// How long any single wait in a test may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Clear what the service manager that may be running these tests put in the environment,
/// so the daemon under test does not think it runs under systemd.
pub(crate) fn without_service_manager(cmd: &mut Command) {
    for var in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_PID",
    ] {
        cmd.env_remove(var);
    }
}

/// Path of the built `switchboard` binary.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchboard"))
}

/// A config with JSON logs on stderr, so tests can read events.
pub(crate) fn with_json_logs(config: &str) -> String {
    // A control socket of its own beside the config, so parallel daemons never share the
    // default one.
    let mut daemon = "log_format = \"json\"".to_string();
    if !config.contains("control_socket") {
        daemon.push_str("\ncontrol_socket = \"ctl.sock\"");
    }
    // Added at the end, so line numbers in error messages stay those of the test's text.
    if config.contains("[daemon]") {
        config.replacen("[daemon]", &format!("[daemon]\n{daemon}"), 1)
    } else {
        format!("{config}\n[daemon]\n{daemon}\n")
    }
}

/// One TCP listener on 127.0.0.1:0 with these handlers and extra lines.
pub(crate) fn tcp_listener(name: &str, handlers: &str, extra: &str) -> String {
    format!(
        "[[listener]]\nname = \"{name}\"\nprotocol = \"tcp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = {handlers}\n{extra}\n"
    )
}

/// One UDP listener on 127.0.0.1:0 with these handlers and extra lines.
pub(crate) fn udp_listener(name: &str, handlers: &str, extra: &str) -> String {
    format!(
        "[[listener]]\nname = \"{name}\"\nprotocol = \"udp\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = {handlers}\n{extra}\n"
    )
}

/// The daemon, running. Killed when dropped.
pub(crate) struct Daemon {
    child: Child,
    /// The daemon's stdin: its operator console when a listener has `console-reply`.
    pub(crate) stdin: Option<std::process::ChildStdin>,
    /// The daemon's stdout, line by line (what the stdin console prints).
    pub(crate) stdout: Lines,
    /// The folder holding the config (and anything the test puts beside it).
    pub(crate) dir: tempfile::TempDir,
    lines: Receiver<String>,
    /// Every stderr line read so far.
    pub(crate) seen: Vec<String>,
    listening: Vec<(String, String, SocketAddr)>,
}

impl Daemon {
    /// Start `switchboard run -c` on this config (JSON logs added) and wait until it is ready.
    pub(crate) fn start(config: &str) -> Daemon {
        Daemon::start_with(config, |_| {})
    }

    /// Start with files prepared in the config's folder first.
    pub(crate) fn start_with(config: &str, prepare: impl FnOnce(&Path)) -> Daemon {
        Daemon::spawn(config, prepare).until_ready()
    }

    /// Start through a command of the test's making (environment, a wrapper), given the
    /// config's path, and wait until it is ready.
    pub(crate) fn start_command(config: &str, command: impl FnOnce(&Path) -> Command) -> Daemon {
        Daemon::spawn_command(config, |_| {}, command).until_ready()
    }

    /// Wait for the `ready` event and learn the listeners' addresses.
    fn until_ready(mut self) -> Daemon {
        let ready = self.wait_for(|v| event(v) == "ready");
        assert!(
            ready.is_some(),
            "daemon never became ready; stderr:\n{}",
            self.seen.join("\n")
        );
        let listening: Vec<_> = self
            .seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| event(v) == "listening")
            .map(|v| {
                (
                    field(&v, "listener"),
                    field(&v, "proto"),
                    field(&v, "addr").parse().expect("addr"),
                )
            })
            .collect();
        self.listening = listening;
        self
    }

    /// Start without waiting for readiness (for configs expected to fail).
    pub(crate) fn spawn(config: &str, prepare: impl FnOnce(&Path)) -> Daemon {
        Daemon::spawn_command(config, prepare, |path| {
            let mut cmd = Command::new(bin());
            cmd.args(["run", "-c"]).arg(path);
            without_service_manager(&mut cmd);
            cmd
        })
    }

    /// Start with its stdout going to `stdout` (not read by the test), and wait until ready.
    pub(crate) fn start_with_stdout(config: &str, stdout: impl Into<Stdio>) -> Daemon {
        let stdout = stdout.into();
        Daemon::spawn_full(
            config,
            |_| {},
            |path| {
                let mut cmd = Command::new(bin());
                cmd.args(["run", "-c"]).arg(path);
                without_service_manager(&mut cmd);
                cmd
            },
            Some(stdout),
        )
        .until_ready()
    }

    /// Start the command `command` makes from the config's path, without waiting.
    pub(crate) fn spawn_command(
        config: &str,
        prepare: impl FnOnce(&Path),
        command: impl FnOnce(&Path) -> Command,
    ) -> Daemon {
        Daemon::spawn_full(config, prepare, command, None)
    }

    fn spawn_full(
        config: &str,
        prepare: impl FnOnce(&Path),
        command: impl FnOnce(&Path) -> Command,
        stdout: Option<Stdio>,
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        // The daemon keeps its control socket here, and takes only a folder of its own.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod tempdir");
        prepare(dir.path());
        let path = dir.path().join("switchboard.toml");
        std::fs::write(&path, with_json_logs(config)).expect("write config");
        let read_stdout = stdout.is_none();
        let mut child = command(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(stdout.unwrap_or_else(Stdio::piped))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard");
        let stdin = child.stdin.take();
        let stdout = match read_stdout {
            true => Lines::new(child.stdout.take().expect("stdout")),
            false => Lines::new(std::io::empty()),
        };
        let rx = read_lines(child.stderr.take().expect("stderr"));
        Daemon {
            child,
            stdin,
            stdout,
            dir,
            lines: rx,
            seen: Vec::new(),
            listening: Vec::new(),
        }
    }

    /// The bound address of a listener.
    pub(crate) fn addr(&self, listener: &str) -> SocketAddr {
        self.listening
            .iter()
            .find(|(n, _, _)| n == listener)
            .unwrap_or_else(|| panic!("no listener {listener}: {:?}", self.listening))
            .2
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (up to `WAIT`) for a JSON log event matching `pred`; events before it are
    /// consumed. `None` if it never came or stderr closed.
    pub(crate) fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => {
                    self.seen.push(l.clone());
                    l
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && pred(&v)
            {
                return Some(v);
            }
        }
    }

    /// Wait for a log event whose `event` field is `name`.
    pub(crate) fn wait_event(&mut self, name: &str) -> Value {
        self.wait_for(|v| event(v) == name)
            .unwrap_or_else(|| panic!("no event={name} line; stderr:\n{}", self.seen.join("\n")))
    }

    /// The log events with `event` = `name` read so far.
    pub(crate) fn events<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Value> + 'a {
        self.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(move |v| event(v) == name)
    }

    /// Everything on stderr until the process closes it.
    pub(crate) fn drain_stderr(&mut self) -> String {
        while let Ok(l) = self.lines.recv_timeout(WAIT) {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    /// Send a signal.
    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
        let r = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(r, 0, "kill failed");
    }

    /// Wait for the process to exit.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        match self.child.wait_timeout(WAIT).expect("wait") {
            Some(status) => status,
            None => panic!(
                "daemon did not exit within {WAIT:?}; stderr:\n{}",
                self.seen.join("\n")
            ),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `event` field of a JSON log line: what happened, as a stable name.
pub(crate) fn event(v: &Value) -> &str {
    v["event"].as_str().unwrap_or("")
}

/// A field of a JSON log event as text: the event's own, else its span's (`listener`,
/// `proto`), empty when neither has it.
pub(crate) fn field(v: &Value, name: &str) -> String {
    let value = match &v[name] {
        Value::Null => &v["span"][name],
        own => own,
    };
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Run the binary with arguments; wait up to `WAIT`.
pub(crate) fn run(args: &[&str]) -> Output {
    run_in(args, None, "")
}

/// Run the binary with arguments, stdin text, and optionally a working folder.
pub(crate) fn run_in(args: &[&str], dir: Option<&Path>, stdin: &str) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = match child.wait_timeout(WAIT).expect("wait") {
        Some(s) => s,
        None => {
            let _ = child.kill();
            panic!("{args:?} did not finish within {WAIT:?}");
        }
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// A TCP client with a read timeout.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Send and read one reply of up to 1024 bytes, as the tutorial's clients do.
pub(crate) fn ask(s: &mut TcpStream, text: &str) -> String {
    s.write_all(text.as_bytes()).unwrap();
    let mut buf = [0; 1024];
    let n = s.read(&mut buf).expect("reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Read exactly `n` bytes.
pub(crate) fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Whether the peer closed: the next read returns 0 bytes.
pub(crate) fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0; 64];
    matches!(s.read(&mut buf), Ok(0))
}

/// A UDP client socket on 127.0.0.1 with a read timeout.
pub(crate) fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Send a datagram and receive one back.
pub(crate) fn udp_ask(s: &UdpSocket, to: SocketAddr, text: &str) -> String {
    s.send_to(text.as_bytes(), to).unwrap();
    let mut buf = [0; 2048];
    let (n, from) = s.recv_from(&mut buf).expect("udp reply");
    assert_eq!(from, to);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Text of a command's stderr.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Text of a command's stdout.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Lines of a child's output, read by a thread, waited for with a deadline.
pub(crate) struct Lines {
    rx: Receiver<String>,
    /// Every line read so far.
    pub(crate) seen: Vec<String>,
}

/// A thread that reads `r` line by line into a channel, until EOF or the receiver is gone.
fn read_lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Lines {
    pub(crate) fn new(r: impl Read + Send + 'static) -> Lines {
        Lines {
            rx: read_lines(r),
            seen: Vec::new(),
        }
    }

    /// The next line containing every one of `parts` (lines before it are skipped).
    pub(crate) fn wait(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {parts:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }
}

/// `switchboard attach` driven through pipes.
pub(crate) struct Attach {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    /// What the operator sees.
    pub(crate) out: Lines,
}

impl Attach {
    pub(crate) fn new(socket: &Path) -> Attach {
        Attach::as_user(socket, None)
    }

    /// Attach, optionally as another user (through `setpriv`, when running as root).
    pub(crate) fn as_user(socket: &Path, user: Option<(u32, u32)>) -> Attach {
        let mut cmd = match user {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let mut child = cmd
            .arg("attach")
            .arg("--socket")
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn attach");
        let stdin = child.stdin.take();
        let out = Lines::new(child.stdout.take().expect("stdout"));
        Attach { child, stdin, out }
    }

    /// Type a line.
    pub(crate) fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to attach");
        stdin.flush().unwrap();
    }
}

impl Drop for Attach {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP client whose socket is bound to `src` (e.g. "127.0.0.2") before connecting, so the
/// daemon sees another peer address.
pub(crate) fn connect_from(src: &str, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    let src: std::net::IpAddr = src.parse().expect("source address");
    s.bind(&SocketAddr::new(src, 0).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    s.connect(&addr.into()).expect("connect");
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// A UDP client socket bound to `src` with a read timeout.
pub(crate) fn udp_client_from(src: &str) -> UdpSocket {
    let s = UdpSocket::bind((src, 0)).unwrap_or_else(|e| panic!("bind {src}: {e}"));
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

impl Daemon {
    /// Start with the open-file limit (soft and hard) set to `n` for the daemon only.
    pub(crate) fn start_with_nofile(config: &str, n: u32) -> Daemon {
        Daemon::start_command(config, |path| {
            let mut cmd = Command::new("sh");
            // `ulimit -n` sets both limits, so the daemon cannot raise its own.
            cmd.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" run -c \"$1\""))
                .arg(bin())
                .arg(path);
            without_service_manager(&mut cmd);
            cmd
        })
    }

    /// Entries in the daemon's /proc/PID/fd.
    pub(crate) fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/PID/fd")
            .count()
    }

    /// The daemon's resident memory in KiB (VmRSS in /proc/PID/status).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}
