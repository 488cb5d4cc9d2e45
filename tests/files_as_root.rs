//! What a daemon started as root does with files that another local user can reach: the
//! control socket's folder, the socket itself, the log file, and the client's trust in the
//! socket it connects to. Each test plays the other user with `setpriv`; none depends on
//! `fs.protected_symlinks` (the links are placed in folders that are not sticky). Skipped,
//! saying so, when not run as root.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::users::{OTHER_UID, as_user, can_switch_users};
use crate::util::{
    Daemon, WAIT, bin, event, field, run, stderr, stdout, tcp_listener, without_service_manager,
};

const ECHO: &str = "[\"echo\"]";
const NOBODY: u32 = 65534;

/// A temporary folder the other user may enter (not write).
fn shared_tmp() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    tmp
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A folder of the other user's, mode 0755, inside `parent`.
fn others_folder(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).expect("mkdir");
    std::os::unix::fs::chown(&dir, Some(OTHER_UID), Some(OTHER_UID)).expect("chown");
    chmod(&dir, 0o755);
    dir
}

/// Run a shell command line as the other user; it must succeed.
fn as_other(script: &str) {
    let out = as_user(OTHER_UID, OTHER_UID, "sh")
        .args(["-c", script])
        .output()
        .expect("run sh as the other user");
    assert!(out.status.success(), "{script}: {out:?}");
}

/// A root-owned file with known content and mode, for an attack to aim at.
fn victim(dir: &Path) -> PathBuf {
    let path = dir.join("victim.txt");
    std::fs::write(&path, "precious\n").expect("write victim");
    chmod(&path, 0o644);
    path
}

fn assert_untouched(victim: &Path) {
    let meta = std::fs::symlink_metadata(victim).expect("victim still there");
    assert!(meta.is_file(), "{victim:?} is no longer a regular file");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o644),
        "{victim:?} changed owner or mode"
    );
    assert_eq!(std::fs::read_to_string(victim).unwrap(), "precious\n");
}

/// Start a daemon that should refuse its config. Returns it once it has exited (refused) or
/// become ready (then harm may have been done: the test checks for it first), and whether it
/// became ready. A daemon logging to a file says nothing on stderr: it is waited for `WAIT`.
fn start_expecting_refusal(config: &str) -> (Daemon, bool) {
    let mut d = Daemon::spawn(config, |_| {});
    let ready = d.wait_for(|v| event(v) == "ready").is_some();
    (d, ready)
}

/// The daemon refused to start, naming `culprit` in its error.
fn assert_refused((mut d, ready): (Daemon, bool), culprit: &Path) {
    assert!(!ready, "the daemon started:\n{}", d.seen.join("\n"));
    assert!(!d.wait_exit().success());
    let err = d.seen.join("\n");
    assert!(err.contains(&culprit.display().to_string()), "{err}");
}

#[test]
fn a_default_control_socket_folder_made_by_another_user_is_not_used() {
    let test = "a_default_control_socket_folder_made_by_another_user_is_not_used";
    if !can_switch_users(test) {
        return;
    }
    // In a /tmp of its own, the other user makes the folder of root's default socket
    // (/tmp/switchboard-0) before the daemon starts, open to everyone.
    // The binary is opened first: it may itself live under /tmp.
    let script = format!(
        "exec 3<\"$0\" && mount -t tmpfs none /tmp \
         && setpriv --reuid={OTHER_UID} --regid={OTHER_UID} --clear-groups -- mkdir -m 0777 /tmp/switchboard-0 \
         && mkdir /tmp/cfg && printf '%s' \"$SB_CONFIG\" > /tmp/cfg/t.toml \
         && exec /proc/self/fd/3 run -c /tmp/cfg/t.toml"
    );
    // The word control_socket in a comment keeps the test helper from setting one: the
    // daemon uses its default place.
    let config = format!(
        "# no control_socket: the default place\n{}",
        tcp_listener("a", ECHO, "")
    );
    let d = Daemon::start_command(&config, |path| {
        let text = std::fs::read_to_string(path).expect("config");
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "sh", "-c", &script])
            .arg(bin())
            .env("SB_CONFIG", text)
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("XDG_RUNTIME_DIR");
        without_service_manager(&mut cmd);
        cmd
    });
    let folder = PathBuf::from(format!("/proc/{}/root/tmp/switchboard-0", d.pid()));
    let entries: Vec<_> = std::fs::read_dir(&folder)
        .expect("the other user's folder")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        entries.is_empty(),
        "the daemon put {entries:?} in another user's folder"
    );
    // It serves without a control socket, and says why.
    let refused = d
        .events("no_control_socket")
        .next()
        .unwrap_or_else(|| panic!("no no_control_socket event:\n{}", d.seen.join("\n")));
    assert_eq!(field(&refused, "level"), "WARN");
    assert_eq!(field(&refused, "reason"), "owner");
    assert_eq!(field(&refused, "path"), "/tmp/switchboard-0/t.sock");
}

#[test]
fn a_control_socket_folder_that_is_a_symlink_is_not_followed() {
    let test = "a_control_socket_folder_that_is_a_symlink_is_not_followed";
    if !can_switch_users(test) {
        return;
    }
    let tmp = shared_tmp();
    // Root's private folder holds a file named like the socket.
    let private = tmp.path().join("private");
    std::fs::create_dir(&private).unwrap();
    chmod(&private, 0o700);
    let precious = victim(&private);
    let named_like_socket = private.join("ctl.sock");
    std::fs::rename(&precious, &named_like_socket).unwrap();
    // The socket's folder is the other user's link to it.
    let theirs = others_folder(tmp.path(), "theirs");
    let run = theirs.join("run");
    as_other(&format!("ln -s {} {}", private.display(), run.display()));
    let outcome = start_expecting_refusal(&format!(
        "[daemon]\ncontrol_socket = \"{}\"\n{}",
        run.join("ctl.sock").display(),
        tcp_listener("a", ECHO, "")
    ));
    assert_untouched(&named_like_socket);
    assert_refused(outcome, &run);
}

/// The other user, racing the daemon: each time a socket appears at `socket`, it is
/// replaced by a link to `target`. Stops when killed, or after `WAIT`.
fn symlink_racer(socket: &Path, target: &Path) -> Child {
    let script = "import os, stat, sys, time\n\
                  sock, target = sys.argv[1], sys.argv[2]\n\
                  tmp = sock + '.swap'\n\
                  print('racing', flush=True)\n\
                  end = time.monotonic() + float(sys.argv[3])\n\
                  while time.monotonic() < end:\n\
                  \x20   try:\n\
                  \x20       if stat.S_ISSOCK(os.lstat(sock).st_mode):\n\
                  \x20           os.symlink(target, tmp)\n\
                  \x20           os.rename(tmp, sock)\n\
                  \x20   except OSError:\n\
                  \x20       pass\n";
    let mut child = as_user(OTHER_UID, OTHER_UID, "python3")
        .args(["-c", script])
        .arg(socket)
        .arg(target)
        .arg(WAIT.as_secs().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("this test needs python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "racing");
    child
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_control_socket_is_never_chowned_through_a_symlink() {
    let test = "the_control_socket_is_never_chowned_through_a_symlink";
    if !can_switch_users(test) {
        return;
    }
    let tmp = shared_tmp();
    let precious = victim(tmp.path());
    // A folder the other user made, open to everyone, where the daemon is told to put its
    // socket; while it starts, the other user swaps the socket for a link to a root file,
    // hoping that the daemon gives that file to its own user.
    let theirs = others_folder(tmp.path(), "theirs");
    chmod(&theirs, 0o777);
    let socket = theirs.join("ctl.sock");
    let _racer = Killed(symlink_racer(&socket, &precious));
    let outcome = start_expecting_refusal(&format!(
        "[daemon]\nuser = \"nobody\"\ncontrol_socket = \"{}\"\n{}",
        socket.display(),
        tcp_listener("a", ECHO, "")
    ));
    assert_untouched(&precious);
    assert_refused(outcome, &theirs);
}

#[test]
fn the_log_file_is_not_opened_through_a_symlink() {
    let test = "the_log_file_is_not_opened_through_a_symlink";
    if !can_switch_users(test) {
        return;
    }
    let tmp = shared_tmp();
    let precious = victim(tmp.path());
    let theirs = others_folder(tmp.path(), "logs");
    let log = theirs.join("sb.log");
    as_other(&format!("ln -s {} {}", precious.display(), log.display()));
    let outcome = start_expecting_refusal(&format!(
        "[daemon]\nuser = \"nobody\"\ncontrol_socket = \"run/ctl.sock\"\nlog_file = \"{}\"\n{}",
        log.display(),
        tcp_listener("a", ECHO, "")
    ));
    assert_untouched(&precious);
    assert_refused(outcome, &log);
}

#[test]
fn rotating_logs_are_not_opened_in_a_folder_another_user_can_write() {
    let test = "rotating_logs_are_not_opened_in_a_folder_another_user_can_write";
    if !can_switch_users(test) {
        return;
    }
    let tmp = shared_tmp();
    let precious = victim(tmp.path());
    let theirs = others_folder(tmp.path(), "logs");
    // tracing-appender names a daily file PREFIX.YYYY-MM-DD, in UTC: the other user places
    // links for today and tomorrow.
    for day in ["today", "tomorrow"] {
        let date = Command::new("date")
            .args(["-u", "-d", day, "+%Y-%m-%d"])
            .output()
            .expect("date");
        let date = String::from_utf8(date.stdout).unwrap();
        let link = theirs.join(format!("sb.log.{}", date.trim()));
        as_other(&format!("ln -s {} {}", precious.display(), link.display()));
    }
    let outcome = start_expecting_refusal(&format!(
        "[daemon]\nlog_file = \"{}\"\nlog_rotation = \"daily\"\n{}",
        theirs.join("sb.log").display(),
        tcp_listener("a", ECHO, "")
    ));
    assert_untouched(&precious);
    assert_refused(outcome, &theirs);
}

#[test]
fn after_the_drop_the_daemons_user_reaches_its_control_socket_which_goes_at_stop() {
    let test = "after_the_drop_the_daemons_user_reaches_its_control_socket_which_goes_at_stop";
    if !can_switch_users(test) {
        return;
    }
    let mut d = Daemon::start_with(
        &format!(
            "[daemon]\nuser = \"nobody\"\ncontrol_socket = \"run/ctl.sock\"\n{}",
            tcp_listener("dropped", ECHO, "")
        ),
        // nobody may enter the config's folder; the daemon makes run/ inside it.
        |dir| chmod(dir, 0o755),
    );
    let socket = d.dir.path().join("run/ctl.sock");
    let out = as_user(NOBODY, NOBODY, &bin().to_string_lossy())
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .expect("status as nobody");
    assert!(out.status.success(), "{out:?}");
    let row = format!("dropped {}/tcp serving", d.addr("dropped"));
    assert!(
        stdout(&out).lines().any(|l| l.starts_with(&row)),
        "no {row:?} in {out:?}"
    );
    let folder = std::fs::metadata(d.dir.path().join("run")).unwrap();
    assert_eq!(
        (folder.uid(), folder.mode() & 0o7777),
        (NOBODY, 0o700),
        "the socket's folder"
    );
    // Root is served too, knowing from the config that the daemon runs as nobody.
    let config = d.dir.path().join("switchboard.toml");
    let out = run(&[
        "status",
        "-c",
        &config.to_string_lossy(),
        "--socket",
        &socket.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit().success());
    assert!(!socket.exists(), "the control socket outlived the daemon");
}

/// A Unix socket server run by the other user: answers each client with a line and reports
/// on its stdout what each client sent before closing ("got b'...'").
struct FakeServer {
    _child: Killed,
    reports: BufReader<std::process::ChildStdout>,
}

impl FakeServer {
    fn start(path: &Path) -> FakeServer {
        let script = "import socket, sys\n\
                      s = socket.socket(socket.AF_UNIX)\n\
                      s.bind(sys.argv[1])\n\
                      s.listen()\n\
                      print('ready', flush=True)\n\
                      while True:\n\
                      \x20   c, _ = s.accept()\n\
                      \x20   c.settimeout(10)\n\
                      \x20   data = b''\n\
                      \x20   try:\n\
                      \x20       c.sendall(b'status: fake\\n')\n\
                      \x20       while b'\\n' not in data:\n\
                      \x20           more = c.recv(100)\n\
                      \x20           if not more:\n\
                      \x20               break\n\
                      \x20           data += more\n\
                      \x20   except OSError:\n\
                      \x20       pass\n\
                      \x20   c.close()\n\
                      \x20   print('got', data, flush=True)\n";
        let mut child = as_user(OTHER_UID, OTHER_UID, "python3")
            .args(["-c", script])
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("this test needs python3");
        let mut reports = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reports.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        FakeServer {
            _child: Killed(child),
            reports,
        }
    }

    /// What the last client sent.
    fn report(&mut self) -> String {
        let mut line = String::new();
        self.reports.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }
}

#[test]
fn clients_check_the_servers_user_before_sending_anything() {
    let test = "clients_check_the_servers_user_before_sending_anything";
    if !can_switch_users(test) {
        return;
    }
    let tmp = shared_tmp();
    let theirs = others_folder(tmp.path(), "theirs");
    let socket = theirs.join("ctl.sock");
    let mut fake = FakeServer::start(&socket);
    let socket_arg = socket.to_string_lossy();

    let out = run(&["status", "--socket", &socket_arg]);
    assert!(
        !out.status.success(),
        "status trusted another user's socket: {out:?}"
    );
    assert!(!stdout(&out).contains("fake"), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("uid {OTHER_UID}")),
        "{out:?}"
    );
    assert_eq!(fake.report(), "got b''");

    let out = run(&["attach", "--socket", &socket_arg]);
    assert!(
        !out.status.success(),
        "attach trusted another user's socket: {out:?}"
    );
    assert!(
        stderr(&out).contains(&format!("uid {OTHER_UID}")),
        "{out:?}"
    );
    assert_eq!(fake.report(), "got b''");
}

#[test]
fn the_web_token_file_is_the_daemons_users_alone() {
    let test = "the_web_token_file_is_the_daemons_users_alone";
    if !can_switch_users(test) {
        return;
    }
    let d = Daemon::start_with(
        &format!(
            "[daemon]\nuser = \"nobody\"\ncontrol_socket = \"run/ctl.sock\"\nweb = \"127.0.0.1:0\"\n{}",
            tcp_listener("a", ECHO, "")
        ),
        |dir| chmod(dir, 0o755),
    );
    let ev = d.events("web_token").next().expect("web_token");
    let path = PathBuf::from(field(&ev, "path"));
    assert_eq!(path, d.dir.path().join("run/ctl.web-token"));
    let meta = std::fs::symlink_metadata(&path).expect("the token file");
    assert!(meta.is_file());
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (NOBODY, 0o600),
        "owned by the daemon's user, readable by it alone"
    );
    // Another user cannot read it.
    let out = as_user(OTHER_UID, OTHER_UID, "cat")
        .arg(&path)
        .output()
        .expect("cat as the other user");
    assert!(!out.status.success());
}

#[test]
fn a_web_token_file_in_another_users_folder_is_refused() {
    let test = "a_web_token_file_in_another_users_folder_is_refused";
    if !can_switch_users(test) {
        return;
    }
    let tmp = shared_tmp();
    let precious = victim(tmp.path());
    let theirs = others_folder(tmp.path(), "web");
    let token = theirs.join("token");
    as_other(&format!("ln -s {} {}", precious.display(), token.display()));
    let outcome = start_expecting_refusal(&format!(
        "[daemon]\ncontrol_socket = \"run/ctl.sock\"\nweb = \"127.0.0.1:0\"\nweb_token_file = \"{}\"\n{}",
        token.display(),
        tcp_listener("a", ECHO, "")
    ));
    assert_untouched(&precious);
    assert_refused(outcome, &theirs);
}
