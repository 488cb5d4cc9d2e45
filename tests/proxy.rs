//! The PROXY protocol: HAProxy itself in front (`send-proxy`, `send-proxy-v2`), clients from
//! two addresses on 127.0.0.0/8, and hand-made headers: untrusted, malformed, truncated, slow,
//! and v2 LOCAL.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::tls::{make_cert, py};
use crate::util::*;

/// A port free now: bound on 127.0.0.1:0 and released (HAProxy cannot bind port 0 and
/// report it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy in the foreground on `config`; killed when dropped.
struct Haproxy(Child);

impl Haproxy {
    /// Start it and wait until each of `ports` accepts.
    fn start(dir: &Path, config: &str, ports: &[u16]) -> Haproxy {
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("haproxy (the Debian package) is needed: .ci/run installs it");
        let h = Haproxy(child);
        let deadline = Instant::now() + WAIT;
        for &port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "haproxy did not listen on {port}"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo_line(s: &mut TcpStream, text: &str) -> String {
    s.write_all(format!("{text}\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut byte = [0; 1];
    while s.read(&mut byte).unwrap_or(0) == 1 {
        got.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Whether the daemon ended the connection: a read gives its end or its reset.
pub(crate) fn ended(s: &mut TcpStream) -> bool {
    !matches!(s.read(&mut [0; 64]), Ok(1..))
}

fn peer_ip(v: &serde_json::Value) -> String {
    let peer: SocketAddr = field(v, "peer").parse().expect("peer");
    peer.ip().to_string()
}

const BEHIND: &str = "proxy_protocol = { trusted = [\"127.0.0.1/32\"] }\nframing = \"line\"";

#[test]
fn haproxy_send_proxy_v1_and_v2_give_the_real_client_to_rules_limits_and_logs() {
    let plain = tcp_listener(
        "plain",
        "[\"echo\"]",
        &format!("{BEHIND}\ndeny = [\"127.0.0.3\", \"127.0.0.13\"]\nmax_per_ip = 1"),
    );
    let tls = tcp_listener(
        "tls",
        "[\"echo\"]",
        &format!("{BEHIND}\n[listener.tls]\ncert = \"server.pem\"\nkey = \"server.key\""),
    );
    let mut d = Daemon::start_with(&format!("{plain}{tls}"), |dir| {
        make_cert(dir, "server", &["localhost"])
    });
    let (v1, v2, v2_tls) = (free_port(), free_port(), free_port());
    let (sb, sb_tls) = (d.addr("plain"), d.addr("tls"));
    let config = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         listen v1\n  bind 127.0.0.1:{v1}\n  server sb {sb} send-proxy\n\
         listen v2\n  bind 127.0.0.1:{v2}\n  server sb {sb} send-proxy-v2\n\
         listen v2tls\n  bind 127.0.0.1:{v2_tls}\n  server sb {sb_tls} send-proxy-v2\n"
    );
    let dir = d.dir.path().to_path_buf();
    let _h = Haproxy::start(&dir, &config, &[v1, v2, v2_tls]);
    let front = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

    // Each version from its own addresses: refusals are logged once per address and interval.
    for (port, base) in [(v1, 2), (v2, 12)] {
        let ip = |n: u8| format!("127.0.0.{}", base + n);
        // The first client from .2 is served as itself.
        let mut a = connect_from(&ip(0), front(port));
        assert_eq!(echo_line(&mut a, "hello"), "hello\n");
        // A second one from the same address is over max_per_ip = 1; one from .4 is not:
        // the limit counts real clients, not the balancer.
        let mut again = connect_from(&ip(0), front(port));
        assert!(ended(&mut again), "max_per_ip acts on the real address");
        // (HAProxy's start was awaited by connecting from 127.0.0.1: those may be refused too.)
        let over = d.wait_for(|v| event(v) == "refused" && peer_ip(v) == ip(0));
        let over = over.unwrap_or_else(|| panic!("{}", d.seen.join("\n")));
        assert_eq!(field(&over, "limit"), "max_per_ip");
        let mut other = connect_from(&ip(2), front(port));
        assert_eq!(echo_line(&mut other, "me too"), "me too\n");
        drop((a, other));
        let served = d.wait_for(|v| event(v) == "session_closed" && peer_ip(v) == ip(2));
        assert!(served.is_some(), "{}", d.seen.join("\n"));
        // .3 is denied by the rules.
        let mut denied = connect_from(&ip(1), front(port));
        assert!(ended(&mut denied));
        let refused = d.wait_for(|v| event(v) == "refused" && field(v, "reason") == "rules");
        assert_eq!(peer_ip(&refused.expect("a refusal by the rules")), ip(1));
    }

    // TLS behind the header, as HAProxy sends it.
    let r = py(
        &dir,
        front(v2_tls),
        &[
            "--ca",
            "server.pem",
            "--source",
            "127.0.0.2",
            "--send",
            "secret\n",
        ],
    );
    assert_eq!(r["reply"], "secret\n", "{r}");
    let s = d.wait_for(|v| event(v) == "session_closed" && !field(v, "tls").is_empty());
    assert_eq!(peer_ip(&s.expect("a TLS session")), "127.0.0.2");
}

#[test]
fn the_haproxy_example_spreads_clients_over_two_switchboards_and_checks_them() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let toml = std::fs::read_to_string(examples.join("behind-haproxy.toml")).unwrap();
    let toml: String = toml
        .replace("port = 9001", "port = 0")
        .lines()
        .filter(|l| !l.starts_with("log_file = "))
        .collect::<Vec<_>>()
        .join("\n");
    let mut a = Daemon::start(&toml);
    let mut b = Daemon::start(&toml);
    let front = free_port();
    let cfg = std::fs::read_to_string(examples.join("haproxy.cfg"))
        .unwrap()
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:9001", &a.addr("chat").to_string())
        .replace("127.0.0.1:9002", &b.addr("chat").to_string())
        .replace("inter 2s", "inter 100ms");
    let dir = a.dir.path().to_path_buf();
    let _h = Haproxy::start(&dir, &cfg, &[front]);
    // Health checks: a v2 LOCAL header, served as the balancer itself.
    for d in [&mut a, &mut b] {
        let check = d.wait_event("session_closed");
        assert_eq!(peer_ip(&check), "127.0.0.1", "{check}");
    }
    // Two clients at once: leastconn sends one to each, each seen as itself.
    let to = SocketAddr::from(([127, 0, 0, 1], front));
    let mut c2 = connect_from("127.0.0.2", to);
    assert_eq!(echo_line(&mut c2, "two"), "two\n");
    let mut c3 = connect_from("127.0.0.3", to);
    assert_eq!(echo_line(&mut c3, "three"), "three\n");
    drop((c2, c3));
    let real = |d: &mut Daemon| {
        d.wait_for(|v| event(v) == "session_closed" && peer_ip(v) != "127.0.0.1")
            .map(|v| peer_ip(&v))
    };
    let mut seen = [real(&mut a), real(&mut b)];
    seen.sort();
    assert_eq!(seen, [Some("127.0.0.2".into()), Some("127.0.0.3".into())]);
}

/// A listener that trusts only `trusted`, with a short header timeout.
fn listener(trusted: &str) -> Daemon {
    Daemon::start(&tcp_listener(
        "p",
        "[\"echo\"]",
        &format!("proxy_protocol = {{ trusted = [\"{trusted}\"] }}\nproxy_timeout = \"300ms\""),
    ))
}

#[test]
fn a_header_from_an_untrusted_address_is_refused() {
    let mut d = listener("127.0.0.9/32");
    let mut s = connect(d.addr("p"));
    let _ = s.write_all(b"PROXY TCP4 203.0.113.1 127.0.0.1 1234 80\r\nhello");
    assert!(ended(&mut s));
    let refused = d.wait_event("refused");
    assert_eq!(field(&refused, "reason"), "proxy_untrusted");
    assert_eq!(peer_ip(&refused), "127.0.0.1");
}

#[test]
fn malformed_truncated_and_slow_headers_are_closed_logged_and_counted_and_local_is_served() {
    let mut d = listener("127.0.0.0/8");
    let addr = d.addr("p");
    // v2 LOCAL: a health check, served as the balancer's own address.
    let mut local = connect_from("127.0.0.5", addr);
    local
        .write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00ping")
        .unwrap();
    let mut got = [0; 4];
    local.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    drop(local);
    let served = d.wait_event("session_closed");
    assert_eq!(peer_ip(&served), "127.0.0.5");

    let cases: [(&str, &[u8], bool, &str); 3] = [
        (
            "127.0.0.2",
            b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n",
            false,
            "handshake_failed",
        ),
        (
            "127.0.0.3",
            b"PROXY TCP4 198.51.100.1",
            true,
            "handshake_failed",
        ),
        ("127.0.0.4", b"", false, "handshake_timeout"),
    ];
    for (src, bytes, end, reason) in cases {
        let mut s = connect_from(src, addr);
        s.write_all(bytes).unwrap();
        if end {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let failed = d.wait_for(|v| event(v) == "handshake_failed" && peer_ip(v) == src);
        let failed = failed.unwrap_or_else(|| panic!("{src}: {}", d.seen.join("\n")));
        assert_eq!(field(&failed, "reason"), reason, "{failed}");
        assert_eq!(field(&failed, "stage"), "proxy_header");
        assert!(ended(&mut s));
    }
    let sock = d.dir.path().join("ctl.sock");
    let status = stdout(&run(&["status", "--socket", sock.to_str().unwrap()]));
    assert!(status.contains("handshakes failed 3"), "{status}");
}
