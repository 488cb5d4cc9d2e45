//! `switchboard bench` against small echo servers started here (std sockets in threads: the
//! thing under test is the client).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Command, Output};
use std::thread;

use serde_json::Value;

use crate::util::bin;

/// A TCP echo server on 127.0.0.1:0, one thread per connection.
fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A UDP echo server on 127.0.0.1:0.
fn udp_echo() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 65_536];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    });
    addr
}

fn bench(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

/// The JSON object of a successful run.
fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Nonzero throughput, no errors, percentiles in order and within the run.
fn assert_sane(j: &Value, rate_key: &str) {
    let f = |k: &str| {
        j[k].as_f64()
            .unwrap_or_else(|| panic!("no number `{k}` in {j}"))
    };
    assert!(f(rate_key) > 0.0, "{j}");
    assert!(f("ops") > 0.0 && f("bytes") > 0.0, "{j}");
    assert_eq!(j["errors"], 0, "{j}");
    let secs = f("secs");
    assert!((0.5..=1.5).contains(&secs), "{j}");
    let p = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"].map(f);
    assert!(p[0] > 0.0, "{j}");
    assert!(
        p.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {j}"
    );
    assert!(
        p[4] <= secs * 1e6 * 1.01,
        "a round trip longer than the run: {j}"
    );
}

#[test]
fn bench_tcp_pingpong_reports_throughput_and_percentiles() {
    let addr = tcp_echo().to_string();
    let out = bench(&[
        &addr,
        "--connections",
        "4",
        "--size",
        "100",
        "--duration",
        "1s",
        "--json",
    ]);
    let j = json_of(&out);
    assert_eq!(j["mode"], "pingpong");
    assert_eq!(j["proto"], "tcp");
    assert_eq!(j["connections"], 4);
    assert_eq!(j["bytes"].as_u64(), j["ops"].as_u64().map(|n| n * 100));
    assert_sane(&j, "msgs_per_s");
}

#[test]
fn bench_udp_pingpong_reports_datagrams() {
    let addr = udp_echo().to_string();
    let out = bench(&[
        "--udp",
        &addr,
        "--connections",
        "2",
        "--duration",
        "1s",
        "--json",
    ]);
    let j = json_of(&out);
    assert_eq!(j["proto"], "udp");
    assert_sane(&j, "dgrams_per_s");
}

#[test]
fn bench_without_a_server_says_so() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = bench(&[&closed.to_string(), "--duration", "1s"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a server listening there?"), "{stderr}");
}

#[test]
fn bench_refuses_udp_bulk_before_sending_anything() {
    let out = bench(&["--udp", "127.0.0.1:9", "--mode", "bulk"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--udp supports --mode pingpong only"),
        "{stderr}"
    );
}
