//! Recordings read back by an independent reader (tshark, from Wireshark): a TCP and a UDP
//! session with their real addresses, ports, payloads and stream; the JSON lines with each
//! read's boundaries; FIN and RST; the bound on disk; a folder that cannot be written.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    v
}

/// The JSON lines recorded for a session, once its close is written.
fn jsonl_session(dir: &Path, session: u64) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines: Vec<Value> = files(dir, "jsonl")
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<Value>>()
            })
            .filter(|v: &Value| v["session"] == session)
            .collect();
        if lines.iter().any(|v| v["event"] == "close") {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no close recorded for session {session}: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// tshark's fields, one row per packet, tab-separated.
fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark (Debian package tshark; .ci/run installs it)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The pcapng of a session, once the recorder closed it (its FIN or RST is in).
fn capture(dir: &Path, session: u64) -> PathBuf {
    jsonl_session(dir, session);
    let suffix = format!("-s{session}.pcapng");
    files(dir, "pcapng")
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(&suffix))
        .expect("a capture")
}

#[test]
fn a_tcp_session_opens_in_tshark_with_its_addresses_payloads_and_stream() {
    let mut d = Daemon::start(&tcp_listener(
        "chat",
        r#"["bye-close", "echo"]"#,
        "[listener.record]\ndir = \"rec\"",
    ));
    let dir = d.dir.path().join("rec");
    let server = d.addr("chat");
    let mut s = connect(server);
    let me = s.local_addr().unwrap();
    let sent: [&[u8]; 3] = [b"hello", b"two\x00\xffbytes", b"third one"];
    for m in sent {
        s.write_all(m).unwrap();
        assert_eq!(read_n(&mut s, m.len()), m);
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut s));
    d.wait_event("session_closed");

    // The JSON lines: one read per write of the client, with its bytes.
    let lines = jsonl_session(&dir, 1);
    let reads: Vec<Vec<u8>> = lines
        .iter()
        .filter(|v| v["event"] == "read")
        .map(|v| match v["text"].as_str() {
            Some(t) => t.as_bytes().to_vec(),
            None => unhex(v["hex"].as_str().unwrap()),
        })
        .collect();
    assert_eq!(reads, sent.map(|m| m.to_vec()));
    assert_eq!(lines[0]["event"], "open");
    assert_eq!(lines[0]["peer"], me.to_string());
    assert_eq!(lines[0]["local"], server.to_string());
    assert_eq!(lines.last().unwrap()["reason"], "peer_closed");

    // The capture, read by tshark: addresses, ports, flags and payload of every packet.
    let pcap = capture(&dir, 1);
    let rows = tshark(
        &pcap,
        &[
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.flags.str",
            "-e",
            "tcp.payload",
            "-e",
            "tcp.stream",
        ],
    );
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('\t').collect()).collect();
    let from_peer = |r: &Vec<&str>| r[0] == me.ip().to_string() && r[1] == me.port().to_string();
    for r in &rows {
        let (src, dst): (SocketAddr, SocketAddr) = (
            format!("{}:{}", r[0], r[1]).parse().unwrap(),
            format!("{}:{}", r[2], r[3]).parse().unwrap(),
        );
        assert!(
            (src, dst) == (me, server) || (src, dst) == (server, me),
            "{r:?}"
        );
        assert_eq!(r[6], "0", "one stream");
    }
    assert!(
        rows[0][4].contains('S') && from_peer(&rows[0]),
        "SYN first: {rows:?}"
    );
    let payloads: Vec<Vec<u8>> = rows
        .iter()
        .filter(|r| from_peer(r) && !r[5].is_empty())
        .map(|r| unhex(r[5]))
        .collect();
    assert_eq!(payloads, sent.map(|m| m.to_vec()), "one packet per read");
    assert!(
        rows.iter().any(|r| from_peer(r) && r[4].contains('F')),
        "the peer's FIN"
    );
    // Wireshark's Follow TCP Stream shows the conversation.
    let follow = tshark(&pcap, &["-qz", "follow,tcp,ascii,0"]);
    assert!(
        follow.contains("hello") && follow.contains("third one"),
        "{follow}"
    );
}

#[test]
fn a_reset_is_recorded_as_one() {
    let mut d = Daemon::start(&tcp_listener(
        "chat",
        r#"["echo"]"#,
        "[listener.record]\ndir = \"rec\"\nformats = [\"pcapng\", \"jsonl\"]",
    ));
    let dir = d.dir.path().join("rec");
    let s = connect(d.addr("chat"));
    let mut s2 = s.try_clone().unwrap();
    assert_eq!(ask(&mut s2, "x"), "x");
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    drop(s2);
    let ev = d.wait_event("session_closed");
    assert_eq!(field(&ev, "reason"), "peer_reset");
    assert_eq!(
        jsonl_session(&dir, 1).last().unwrap()["reason"],
        "peer_reset"
    );
    let flags = tshark(
        &capture(&dir, 1),
        &["-T", "fields", "-e", "tcp.flags.reset"],
    );
    let last = flags.lines().last().map(str::trim);
    assert!(
        matches!(last, Some("True" | "1")),
        "the last packet is a RST: {flags}"
    );
}

#[test]
fn a_udp_session_opens_in_tshark_with_its_datagrams() {
    let mut d = Daemon::start(&udp_listener(
        "u",
        r#"["echo"]"#,
        "idle_timeout = \"200ms\"\n[listener.record]\ndir = \"rec\"",
    ));
    let dir = d.dir.path().join("rec");
    let server = d.addr("u");
    let c = udp_client();
    assert_eq!(udp_ask(&c, server, "ping"), "ping");
    assert_eq!(udp_ask(&c, server, "pong!"), "pong!");
    let ev = d.wait_event("session_closed");
    assert_eq!(field(&ev, "reason"), "idle_timeout");
    let pcap = capture(&dir, 1);
    let rows = tshark(
        &pcap,
        &[
            "-T",
            "fields",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "udp.payload",
        ],
    );
    let me = c.local_addr().unwrap().port().to_string();
    let port = server.port().to_string();
    let rows: Vec<(String, String, Vec<u8>)> = rows
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), unhex(f[2]))
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (me.clone(), port.clone(), b"ping".to_vec()),
            (port.clone(), me.clone(), b"ping".to_vec()),
            (me.clone(), port.clone(), b"pong!".to_vec()),
            (port, me, b"pong!".to_vec()),
        ]
    );
}

#[test]
fn recordings_stay_within_max_bytes() {
    let mut d = Daemon::start(&tcp_listener(
        "chat",
        r#"["echo"]"#,
        "[listener.record]\ndir = \"rec\"\nmax_bytes = 40000",
    ));
    let dir = d.dir.path().join("rec");
    let msg = vec![b'z'; 1000];
    for _ in 0..40 {
        let mut s = connect(d.addr("chat"));
        s.write_all(&msg).unwrap();
        read_n(&mut s, msg.len());
        drop(s);
        d.wait_event("session_closed");
    }
    jsonl_session(&dir, 40);
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(total <= 40000, "{total} bytes on disk");
    assert!(
        files(&dir, "pcapng")
            .iter()
            .any(|p| p.to_string_lossy().ends_with("-s40.pcapng")),
        "the newest capture is kept"
    );
    assert!(
        !files(&dir, "pcapng")
            .iter()
            .any(|p| p.to_string_lossy().ends_with("-s1.pcapng")),
        "the oldest went"
    );
}

#[test]
fn a_folder_that_cannot_be_written_is_an_error_at_start_and_at_reload() {
    let config = tcp_listener(
        "chat",
        r#"["echo"]"#,
        "[listener.record]\ndir = \"taken/rec\"",
    );
    let mut d = Daemon::spawn(&config, |dir| {
        std::fs::write(dir.join("taken"), "a file").unwrap()
    });
    assert!(!d.wait_exit().success());
    let err = d.drain_stderr();
    assert!(
        err.contains("listener \\\"chat\\\"") || err.contains("listener \"chat\""),
        "{err}"
    );
    assert!(err.contains("taken/rec"), "{err}");

    let mut d = Daemon::start(&tcp_listener("chat", r#"["echo"]"#, ""));
    std::fs::write(d.dir.path().join("taken"), "a file").unwrap();
    let path = d.dir.path().join("switchboard.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "handlers = [\"echo\"]",
            "handlers = [\"echo\"]\n[listener.record]\ndir = \"taken/rec\"",
        ),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    let ev = d.wait_event("reload_refused");
    assert!(field(&ev, "error").contains("taken/rec"), "{ev}");
    let mut s = connect(d.addr("chat"));
    assert_eq!(ask(&mut s, "still"), "still");
    let _ = s.read(&mut [0; 1]);
}
