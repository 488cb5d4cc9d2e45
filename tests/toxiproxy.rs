//! The toxiproxy API with HTTP requests as toxiproxy's clients send them: the Python client
//! `toxiproxy-python` (from PyPI; .ci/run installs it) driving a suite written against
//! toxiproxy, and plain HTTP for the error statuses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use crate::forward::upper_upstream;
use crate::util::{Daemon, WAIT, field, stderr, stdout, tcp_listener};

fn with_api() -> (Daemon, SocketAddr) {
    let d = Daemon::start(&format!(
        "[daemon]\ntoxiproxy_api = \"127.0.0.1:0\"\n{}",
        tcp_listener("echo", r#"["echo"]"#, "")
    ));
    let addr = api_addr(&d);
    (d, addr)
}

/// Where the API listens, from its log event.
fn api_addr(d: &Daemon) -> SocketAddr {
    let ev = d
        .events("toxiproxy_api_listening")
        .next()
        .expect("the API listens");
    field(&ev, "addr").parse().unwrap()
}

/// One HTTP/1.1 request; the status and body of the answer.
fn http(api: SocketAddr, method: &str, path: &str, body: &str, agent: &str) -> (u16, String) {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nUser-Agent: {agent}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A suite written against toxiproxy, through its Python client, unchanged but for the
/// API's port.
const SUITE: &str = r#"
import socket, sys, time
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound, ProxyExists

APIConsumer.host, APIConsumer.port = "127.0.0.1", int(sys.argv[1])
upstream = sys.argv[2]
server = Toxiproxy()
assert server.running()
assert b"version" in server.version()

proxy = server.create(upstream=upstream, name="redis")
assert proxy.enabled and proxy.upstream == upstream
host, port = proxy.listen.rsplit(":", 1)
def ask(text):
    c = socket.create_connection((host, int(port)), timeout=5)
    t = time.time()
    c.sendall(text)
    reply = c.recv(100)
    c.close()
    return reply, time.time() - t
assert ask(b"ping")[0] == b"PING"

proxy.add_toxic(type="latency", attributes={"latency": 300, "jitter": 0})
toxics = proxy.toxics()
assert list(toxics) == ["latency_downstream"], toxics
assert toxics["latency_downstream"].attributes == {"latency": 300, "jitter": 0}
reply, took = ask(b"slow")
assert reply == b"SLOW" and took >= 0.29, took
proxy.destroy_toxic("latency_downstream")
assert ask(b"fast")[1] < 0.25

proxy.add_toxic(name="cut", type="timeout", stream="upstream", attributes={"timeout": 0})
assert proxy.get_toxic("cut").stream == "upstream"
proxy.destroy_toxic("cut")

try:
    server.create(upstream=upstream, name="redis")
    raise SystemExit("a second proxy of the same name was made")
except ProxyExists:
    pass

with proxy.down():
    assert server.get_proxy("redis").enabled is False
    try:
        socket.create_connection((host, int(port)), timeout=2)
        raise SystemExit("a disabled proxy still listens")
    except ConnectionRefusedError:
        pass
assert server.get_proxy("redis").enabled is True

made = server.populate([{"name": "a", "upstream": upstream, "listen": "127.0.0.1:0"},
                        {"name": "b", "upstream": upstream, "listen": "127.0.0.1:0"}])
assert sorted(p.name for p in made) == ["a", "b"], made
assert sorted(server.proxies()) == ["a", "b", "redis"]
server.get_proxy("a").add_toxic(type="bandwidth", attributes={"rate": 10})
assert server.reset()
assert server.get_proxy("a").toxics() == {}
server.destroy_all()
assert server.proxies() == {}
try:
    proxy.toxics()
    raise SystemExit("a deleted proxy still has toxics")
except NotFound:
    pass
print("suite passed")
"#;

#[test]
fn a_suite_written_against_toxiproxy_runs_unchanged() {
    let has_client = Command::new("python3")
        .args(["-c", "import toxiproxy"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_client,
        "the Python client is needed: python3 -m pip install future toxiproxy-python==0.1.1"
    );
    let (_d, api) = with_api();
    let up = upper_upstream();
    let o = Command::new("python3")
        .args(["-c", SUITE, &api.port().to_string(), &up.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("suite passed"));
}

#[test]
fn errors_have_toxiproxys_statuses_and_shapes() {
    let (_d, api) = with_api();
    let ua = "curl/8";
    let up = upper_upstream();
    assert_eq!(http(api, "GET", "/proxies", "", ua), (200, "{}".into()));
    let (s, body) = http(api, "GET", "/proxies/nope", "", ua);
    assert_eq!(s, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"error": "proxy not found", "status": 404})
    );
    assert_eq!(http(api, "POST", "/proxies", "{not json", ua).0, 400);
    let (s, body) = http(api, "POST", "/proxies", r#"{"name":"x"}"#, ua);
    assert_eq!(
        (s, body.contains("missing required field: upstream")),
        (400, true)
    );
    let create = format!(r#"{{"name":"x","upstream":"{up}","listen":"127.0.0.1:0"}}"#);
    let (s, body) = http(api, "POST", "/proxies", &create, ua);
    assert_eq!(s, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["enabled"], true);
    assert_eq!(v["toxics"], serde_json::json!([]));
    assert_eq!(http(api, "POST", "/proxies", &create, ua).0, 409);
    let t = |body: &str| http(api, "POST", "/proxies/x/toxics", body, ua);
    assert_eq!(t(r#"{"type":"nope"}"#).0, 400);
    assert_eq!(t(r#"{"type":"latency","stream":"sideways"}"#).0, 400);
    assert_eq!(t(r#"{"type":"latency","toxicity":1.5}"#).0, 400);
    let (s, body) = t(r#"{"type":"latency","attributes":{"latency":10}}"#);
    assert_eq!(s, 200, "{body}");
    assert_eq!(t(r#"{"type":"latency"}"#).0, 409, "toxic already exists");
    let (s, body) = http(
        api,
        "PATCH",
        "/proxies/x/toxics/latency_downstream",
        r#"{"attributes":{"latency":50},"toxicity":0.5}"#,
        ua,
    );
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["attributes"]["latency"].clone(), v["toxicity"].clone()),
        (50.into(), 0.5.into())
    );
    assert_eq!(http(api, "DELETE", "/proxies/x/toxics/none", "", ua).0, 404);
    assert_eq!(
        http(
            api,
            "DELETE",
            "/proxies/x/toxics/latency_downstream",
            "",
            ua
        )
        .0,
        204
    );
    assert_eq!(http(api, "GET", "/proxies", "", "Mozilla/5.0").0, 403);
    assert_eq!(http(api, "PUT", "/proxies", "", ua).0, 405);
    assert_eq!(http(api, "DELETE", "/proxies/x", "", ua).0, 204);
    assert_eq!(http(api, "POST", "/reset", "", ua).0, 204);
}

#[test]
fn a_forward_listener_of_the_config_is_a_proxy_and_takes_toxics() {
    let up = upper_upstream();
    let d = Daemon::start(&format!(
        "[daemon]\ntoxiproxy_api = \"127.0.0.1:0\"\n{}",
        crate::forward::forward_to("db", up, "")
    ));
    let api = api_addr(&d);
    let (s, body) = http(api, "GET", "/proxies/db", "", "curl/8");
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["upstream"], up.to_string());
    assert_eq!(v["listen"], d.addr("db").to_string());
    let (s, _) = http(
        api,
        "POST",
        "/proxies/db/toxics",
        r#"{"type":"limit_data","attributes":{"bytes":3}}"#,
        "curl/8",
    );
    assert_eq!(s, 200);
    let mut c = crate::util::connect(d.addr("db"));
    c.write_all(b"abcdef").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"ABC");
}
