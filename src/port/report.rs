//! What `switchboard port` prints: an aligned table with notes, or JSON.

use std::fmt::Write as _;

use switchboard_handlers::Proto;

use super::owners::Process;
use super::proc_net::{DisplayAddr, SocketEntry};

/// A socket on the port and what is known of its owner.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) socket: SocketEntry,
    pub(crate) user: String,
    pub(crate) owner: Owner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The processes that have the socket open.
    Processes(Vec<Process>),
    /// Held by a process whose descriptors this user may not read.
    NotVisible,
    /// No process has it open: TIME_WAIT and the like, kernel sockets, or a process in another
    /// PID namespace.
    NoProcess,
}

const HEADER: [&str; 7] = [
    "PROTO", "STATE", "LOCAL", "REMOTE", "PID", "PROCESS", "USER",
];

/// The table, one row per socket and process, then a note for each kind of unknown owner.
pub(crate) fn table(port: u16, protos: &[Proto], held: &[Held]) -> String {
    let mut out = String::new();
    if held.is_empty() {
        let what = match protos {
            [Proto::Tcp] => "TCP socket",
            [Proto::Udp] => "UDP socket",
            _ => "TCP or UDP socket",
        };
        let _ = writeln!(out, "port {port} is free: no {what} uses it");
        return out;
    }
    let mut rows: Vec<[String; 7]> = vec![HEADER.map(str::to_owned)];
    for h in held {
        let s = &h.socket;
        let row = |pid: String, name: String| {
            [
                s.proto.as_str().to_owned(),
                s.state_name().to_owned(),
                DisplayAddr(s.local).to_string(),
                DisplayAddr(s.remote).to_string(),
                pid,
                name,
                h.user.clone(),
            ]
        };
        match &h.owner {
            Owner::Processes(ps) => {
                rows.extend(ps.iter().map(|p| row(p.pid.to_string(), p.name.clone())));
            }
            Owner::NotVisible => rows.push(row("?".into(), "(not visible)".into())),
            Owner::NoProcess => rows.push(row("-".into(), "-".into())),
        }
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if held.iter().any(|h| h.owner == Owner::NotVisible) {
        let (flag, ss) = match protos {
            [Proto::Tcp] => (" --tcp", "-tapn"),
            [Proto::Udp] => (" --udp", "-uapn"),
            _ => ("", "-tuapn"),
        };
        let _ = writeln!(
            out,
            "\n?: owner not visible to this user. To see it, run \
             `sudo switchboard port {port}{flag}` or `sudo ss {ss} 'sport = :{port}'`."
        );
    }
    if held.iter().any(|h| h.owner == Owner::NoProcess) {
        let _ = writeln!(
            out,
            "\n-: no process has this socket open (the kernel keeps it, as in TIME_WAIT, \
             or its process lives in another PID namespace)."
        );
    }
    out
}

/// `{"port": N, "free": bool, "sockets": [...]}`, one object per socket.
pub(crate) fn json(port: u16, held: &[Held]) -> String {
    let sockets: Vec<serde_json::Value> = held
        .iter()
        .map(|h| {
            let s = &h.socket;
            let (owner, processes) = match &h.owner {
                Owner::Processes(ps) => ("visible", ps.as_slice()),
                Owner::NotVisible => ("not_visible", &[][..]),
                Owner::NoProcess => ("none", &[][..]),
            };
            serde_json::json!({
                "proto": s.proto.as_str(),
                "state": s.state_name(),
                "local": s.local.to_string(),
                "remote": s.remote.to_string(),
                "uid": s.uid,
                "user": h.user,
                "inode": s.inode,
                "owner": owner,
                "processes": processes
                    .iter()
                    .map(|p| serde_json::json!({"pid": p.pid, "name": p.name}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = serde_json::json!({"port": port, "free": held.is_empty(), "sockets": sockets});
    format!("{doc:#}\n")
}

#[cfg(test)]
mod tests {
    use super::super::proc_net::{TCP_CLOSE, TCP_LISTEN};
    use super::*;

    fn held(proto: Proto, local: &str, state: u8, owner: Owner) -> Held {
        let local: std::net::SocketAddr = local.parse().unwrap();
        let remote = if local.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        Held {
            socket: SocketEntry {
                proto,
                local,
                remote: remote.parse().unwrap(),
                state,
                uid: 1000,
                inode: 1,
            },
            user: "alice".into(),
            owner,
        }
    }

    #[test]
    fn the_table_is_aligned_and_explains_unknown_owners() {
        let rows = [
            held(
                Proto::Tcp,
                "127.0.0.1:8888",
                TCP_LISTEN,
                Owner::Processes(vec![Process {
                    pid: 4242,
                    name: "python3".into(),
                }]),
            ),
            held(Proto::Tcp, "[::]:8888", TCP_LISTEN, Owner::NotVisible),
            held(Proto::Udp, "0.0.0.0:8888", TCP_CLOSE, Owner::NoProcess),
        ];
        let text = table(8888, &[Proto::Tcp, Proto::Udp], &rows);
        let expected = "\
PROTO  STATE   LOCAL           REMOTE     PID   PROCESS        USER
tcp    LISTEN  127.0.0.1:8888  0.0.0.0:*  4242  python3        alice
tcp    LISTEN  [::]:8888       [::]:*     ?     (not visible)  alice
udp    UNCONN  0.0.0.0:8888    0.0.0.0:*  -     -              alice

?: owner not visible to this user. To see it, run `sudo switchboard port 8888` or `sudo ss -tuapn 'sport = :8888'`.

-: no process has this socket open (the kernel keeps it, as in TIME_WAIT, or its process lives in another PID namespace).
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_free_port_says_so_for_the_protocols_asked() {
        assert_eq!(
            table(9, &[Proto::Udp], &[]),
            "port 9 is free: no UDP socket uses it\n"
        );
        assert_eq!(
            table(9, &[Proto::Tcp, Proto::Udp], &[]),
            "port 9 is free: no TCP or UDP socket uses it\n"
        );
        let doc: serde_json::Value = serde_json::from_str(&json(9, &[])).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"port": 9, "free": true, "sockets": []})
        );
    }

    #[test]
    fn json_lists_processes_per_socket() {
        let rows = [held(
            Proto::Tcp,
            "[::1]:8888",
            TCP_LISTEN,
            Owner::NotVisible,
        )];
        let doc: serde_json::Value = serde_json::from_str(&json(8888, &rows)).unwrap();
        assert_eq!(doc["sockets"][0]["local"], "[::1]:8888");
        assert_eq!(doc["sockets"][0]["owner"], "not_visible");
        assert_eq!(doc["sockets"][0]["processes"], serde_json::json!([]));
    }
}
