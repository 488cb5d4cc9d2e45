//! `switchboard port` and `describe_holder` against real sockets held by this test process
//! and by a child process.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Output, Stdio};

use switchboard::port::describe_holder;

use crate::users;
use crate::util::bin;

fn port_cmd(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("port")
        .args(args)
        .output()
        .expect("run switchboard port")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table rows (after the header) as columns:
/// PROTO STATE LOCAL REMOTE PID PROCESS USER.
fn rows(out: &Output) -> Vec<Vec<String>> {
    stdout(out)
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The row for `local` in `state` held by `pid`, if the table has one.
fn row_of(out: &Output, state: &str, local: SocketAddr, pid: u32) -> Option<Vec<String>> {
    rows(out).into_iter().find(|r| {
        r.len() == 7 && r[1] == state && r[2] == local.to_string() && r[4] == pid.to_string()
    })
}

#[test]
fn a_tcp_listener_of_this_process_is_listed_with_its_pid() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let out = port_cmd(&[&addr.port().to_string(), "--tcp"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let row = row_of(&out, "LISTEN", addr, std::process::id())
        .unwrap_or_else(|| panic!("no LISTEN row for {addr} and our pid in:\n{}", stdout(&out)));
    assert_eq!(row[0], "tcp");
    assert_eq!(row[3], "0.0.0.0:*");
}

#[test]
fn a_udp_socket_of_this_process_is_listed_as_unconn() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let out = port_cmd(&[&addr.port().to_string(), "--udp"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let row = row_of(&out, "UNCONN", addr, std::process::id())
        .unwrap_or_else(|| panic!("no UNCONN row for {addr} and our pid in:\n{}", stdout(&out)));
    assert_eq!(row[0], "udp");
}

#[test]
fn udp_only_hides_the_tcp_listener_on_the_same_port() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = port_cmd(&[&port, "--udp"]);
    // Nothing should hold this UDP port; if something does, it is not our TCP listener.
    assert!(!stdout(&out).contains("LISTEN"), "{}", stdout(&out));
}

#[test]
fn an_established_connection_is_listed_too() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = std::net::TcpStream::connect(addr).unwrap();
    let (_server, peer) = listener.accept().unwrap();
    let out = port_cmd(&[&addr.port().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let row = row_of(&out, "ESTABLISHED", addr, std::process::id())
        .unwrap_or_else(|| panic!("no ESTABLISHED row in:\n{}", stdout(&out)));
    assert_eq!(row[3], peer.to_string());
}

#[test]
fn a_free_port_exits_1_and_says_it_is_free() {
    // A port that a listener just released is free unless some other process takes it in the
    // meantime; three tries make that race irrelevant, while a wrong exit status fails all three.
    let mut last = None;
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = port_cmd(&[&port.to_string(), "--tcp"]);
        if out.status.code() == Some(1) {
            assert_eq!(
                stdout(&out),
                format!("port {port} is free: no TCP socket uses it\n")
            );
            return;
        }
        last = Some(out);
    }
    panic!("no released port was reported free: {last:?}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["0"],
        &["65536"],
        &["http"],
        &["80", "--tcp", "--udp"],
        &["80", "--nope"],
    ] {
        let out = port_cmd(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}

#[test]
fn json_lists_the_socket_with_its_process() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let out = port_cmd(&[&addr.port().to_string(), "--tcp", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["port"], addr.port());
    assert_eq!(doc["free"], false);
    let sockets = doc["sockets"].as_array().unwrap();
    let ours = sockets
        .iter()
        .find(|s| s["local"] == addr.to_string() && s["state"] == "LISTEN")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(ours["proto"], "tcp");
    assert_eq!(ours["owner"], "visible");
    let pids: Vec<u64> = ours["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    assert!(pids.contains(&u64::from(std::process::id())), "{doc:#}");
}

/// A child process that holds a socket until it is dropped.
struct Holder {
    child: Child,
    port: u16,
}

impl Holder {
    /// `python3` with a TCP listener (or a UDP socket) on 127.0.0.1, port 0; it prints the
    /// port once bound, so reading that line is the synchronisation.
    fn python(udp: bool) -> Holder {
        Holder::python_in(Command::new("python3"), udp)
    }

    /// The same, started through `command` (another user's python3).
    fn python_in(mut command: Command, udp: bool) -> Holder {
        let script = format!(
            "import socket, sys\n\
             s = socket.socket(socket.AF_INET, socket.{})\n\
             s.bind(('127.0.0.1', 0))\n\
             {}\n\
             print(s.getsockname()[1], flush=True)\n\
             sys.stdin.read()\n",
            if udp { "SOCK_DGRAM" } else { "SOCK_STREAM" },
            if udp { "" } else { "s.listen()" },
        );
        let mut child = command
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("this test needs python3 on PATH");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("python3 printed {line:?} instead of a port");
            }
        };
        Holder { child, port }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_child_process_holding_a_port_is_named_with_its_pid() {
    let holder = Holder::python(false);
    let addr = SocketAddr::from(([127, 0, 0, 1], holder.port));
    let out = port_cmd(&[&holder.port.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let row = row_of(&out, "LISTEN", addr, holder.child.id())
        .unwrap_or_else(|| panic!("no LISTEN row for the child in:\n{}", stdout(&out)));
    assert!(row[5].starts_with("python"), "{row:?}");
}

#[test]
fn describe_holder_names_the_child_process() {
    let holder = Holder::python(false);
    let addr = SocketAddr::from(([127, 0, 0, 1], holder.port));
    let text = describe_holder(addr, false);
    let expected = format!("by pid {} (python", holder.child.id());
    assert!(
        text.starts_with(&expected),
        "{text:?}, wanted {expected:?}..."
    );

    // Binding the wildcard address collides with the child's 127.0.0.1 listener.
    let text = describe_holder(SocketAddr::from(([0, 0, 0, 0], holder.port)), false);
    assert!(text.starts_with(&expected), "{text:?}");
}

#[test]
fn describe_holder_names_a_udp_holder_and_this_process() {
    let holder = Holder::python(true);
    let text = describe_holder(SocketAddr::from(([127, 0, 0, 1], holder.port)), true);
    assert!(
        text.starts_with(&format!("by pid {} (python", holder.child.id())),
        "{text:?}"
    );

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let text = describe_holder(socket.local_addr().unwrap(), true);
    assert!(
        text.starts_with(&format!("by pid {} (", std::process::id())),
        "{text:?}"
    );
    assert!(text.ends_with(", this process)"), "{text:?}");
}

/// A uid that only the system's user database knows (a record of systemd's userdb, which
/// nss-systemd serves, in a mount namespace of the test's own), and /etc/passwd does not:
/// the USER column names it all the same.
#[test]
fn the_user_column_names_users_through_nss_not_only_etc_passwd() {
    let test = "the_user_column_names_users_through_nss_not_only_etc_passwd";
    if !users::can_switch_users(test) {
        return;
    }
    let uid = users::OTHER_UID;
    let known = Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .output();
    if !matches!(&known, Ok(o) if o.status.code() == Some(2)) {
        eprintln!("skipped {test}: uid {uid} has an account here, or there is no getent");
        return;
    }
    let holder = Holder::python_in(users::as_user(uid, uid, "python3"), false);
    let record =
        format!(r#"{{"userName":"sbport","uid":{uid},"gid":{uid},"disposition":"regular"}}"#);
    // Exit 77: this system's NSS does not read userdb records (no nss-systemd).
    let script = r#"mount -t tmpfs none /run && mkdir /run/userdb \
        && printf '%s' "$1" > /run/userdb/sbport.user \
        && ln -s sbport.user "/run/userdb/$2.user" \
        && { getent passwd "$2" > /dev/null || exit 77; } \
        && exec "$0" port "$3" --tcp"#;
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .arg(bin())
        .arg(&record)
        .arg(uid.to_string())
        .arg(holder.port.to_string())
        .output()
        .expect("run unshare");
    if out.status.code() == Some(77) {
        eprintln!("skipped {test}: this system's NSS does not serve systemd's userdb records");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let addr = SocketAddr::from(([127, 0, 0, 1], holder.port));
    let row = row_of(&out, "LISTEN", addr, holder.child.id())
        .unwrap_or_else(|| panic!("no LISTEN row for the child in:\n{}", stdout(&out)));
    assert_eq!(row[6], "sbport", "{row:?}");
}
