//! The web console in a real browser (headless Chromium, `browser.rs`) and over raw HTTP:
//! logging in, customers over TCP appearing and being answered, take and release seen by a
//! second operator, canned replies, markup from a customer shown as text, the live view, and
//! everything refused without a credential. Screenshots of both views are written to
//! `target/web-console/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use crate::browser::{Browser, Page};
use crate::util::{Daemon, WAIT, field, run, run_in, stderr, tcp_listener, udp_listener};

/// The daemon, whose log is printed if the test fails.
struct Logged(Daemon);

impl std::ops::Deref for Logged {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.0
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the daemon's log:\n{}", self.0.drain_stderr());
        }
    }
}

/// A support desk: the shipped bot script, a person on request, canned replies; and the web
/// console on a free port.
fn desk() -> Logged {
    let config = format!(
        "[daemon]\nweb = \"127.0.0.1:0\"\n\n{}{}",
        tcp_listener(
            "desk",
            "[\"bye-close\", \"scripted-reply\", \"console-reply\"]",
            "reply_mode = \"one-per-message\"\n\
             [listener.scripted-reply]\nscript = \"support-bot.toml\"\n\
             [listener.console-reply]\nhistory = 10\n\
             queue_reply = \"You are number {position} in line.\"\n\
             canned = { thanks = \"Thank you for your patience!\", hours = \"Open 9:00-18:00.\" }\n",
        ),
        udp_listener("udp-echo", "[\"echo\"]", "idle_timeout = \"1s\"")
    );
    Logged(Daemon::start_with(&config, |dir| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/scripts/support-bot.toml"
        );
        std::fs::copy(script, dir.join("support-bot.toml")).expect("copy the script");
    }))
}

/// The console's address and its token, from the log (the token from the file it names).
fn console(d: &Daemon) -> (SocketAddr, String) {
    let addr = d
        .events("web_listening")
        .next()
        .map(|v| field(&v, "addr").parse().expect("addr"))
        .expect("web_listening");
    let path = d
        .events("web_token")
        .next()
        .map(|v| PathBuf::from(field(&v, "path")))
        .expect("web_token");
    let token = std::fs::read_to_string(path).expect("token file");
    (addr, token.trim().to_string())
}

/// A customer over TCP.
struct Customer(TcpStream);

impl Customer {
    fn connect(addr: SocketAddr) -> Customer {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        Customer(s)
    }

    fn say(&mut self, text: &str) {
        self.0.write_all(text.as_bytes()).expect("send");
    }

    /// Read until what came contains `want`; everything read.
    fn until(&mut self, want: &str) -> String {
        let mut got = Vec::new();
        let deadline = Instant::now() + WAIT;
        while !String::from_utf8_lossy(&got).contains(want) {
            assert!(
                Instant::now() < deadline,
                "never got {want:?}; got {:?}",
                String::from_utf8_lossy(&got)
            );
            let mut buf = [0u8; 4096];
            match self.0.read(&mut buf) {
                Ok(0) => panic!(
                    "closed before {want:?}; got {:?}",
                    String::from_utf8_lossy(&got)
                ),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("read: {e}; got {:?}", String::from_utf8_lossy(&got)),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

/// Log `page` in as `name` with `credential`, and wait for the live connection.
fn log_in(b: &mut Browser, page: &Page, base: &str, credential: &str, name: &str) {
    b.goto(page, base);
    b.fill(page, "#credential", credential);
    b.fill(page, "#name", name);
    b.click(page, "#login");
    b.wait(page, "document.getElementById('status') && document.getElementById('status').textContent === 'connected'");
}

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/web-console")
        .join(name)
}

/// The row of session `id` in the desk's list.
fn row(id: u64) -> String {
    format!("#sessions li[data-id=\"{id}\"]")
}

#[test]
fn two_browser_operators_answer_a_tcp_customer_and_see_each_other() {
    let d = desk();
    let (web, token) = console(&d);
    let base = format!("http://{web}/");
    let mut b = Browser::start();
    let alice = b.page();
    // The login form, and nothing else, before a credential.
    b.goto(&alice, &base);
    assert_eq!(
        b.eval(&alice, "document.getElementById('sessions') === null"),
        true
    );
    log_in(&mut b, &alice, &base, &token, "Alice");
    b.wait(
        &alice,
        "document.getElementById('me').textContent === 'you are Alice'",
    );

    // A customer comes, talks to the bot, asks for a person: the desk shows it queued.
    let mut c = Customer::connect(d.addr("desk"));
    c.say("你好");
    c.until("Hello! How can I help you?");
    c.say("人工");
    c.until("You are number 1 in line.");
    let id = 1;
    b.wait(
        &alice,
        &format!(
            "document.querySelector('{} .badge').textContent === 'waiting 1'",
            row(id)
        ),
    );
    b.wait(&alice, "document.querySelector('#queue li.row') !== null");

    // A second operator, in a browser of its own.
    let bob = b.page();
    log_in(&mut b, &bob, &base, &token, "Bob");
    b.wait(
        &alice,
        "[...document.querySelectorAll('#operators li')].some(e => e.textContent === 'Bob')",
    );

    // Alice takes it: Bob sees who has it.
    b.click(&alice, &row(id));
    b.wait(&alice, "[...document.querySelectorAll('#conv .said.customer .text')].some(e => e.textContent === '人工')");
    b.click(&alice, "#take");
    b.wait(
        &bob,
        &format!(
            "document.querySelector('{} .badge').textContent === 'with Alice'",
            row(id)
        ),
    );

    // Her answer reaches the customer's socket.
    c.say("my parcel is late");
    b.wait(&alice, "[...document.querySelectorAll('#conv .said.customer .text')].some(e => e.textContent === 'my parcel is late')");
    b.fill(
        &alice,
        "#answer",
        "Hello from the web console, let me check.",
    );
    b.click(&alice, "#send");
    c.until("Hello from the web console, let me check.");
    b.wait(&alice, "[...document.querySelectorAll('#conv .said.operator')].some(e => e.textContent.includes('let me check'))");

    // A canned reply.
    c.say("ok");
    b.click(&alice, "#canned button[data-name=\"thanks\"]");
    c.until("Thank you for your patience!");

    // Markup and terminal escapes from a customer are text on the page.
    let payload =
        "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>\u{1b}[31mred";
    c.say(payload);
    b.wait(&alice, "[...document.querySelectorAll('#conv .said.customer .text')].some(e => e.textContent.startsWith('<img src=x'))");
    assert_eq!(
        b.eval(
            &alice,
            "document.querySelector('#conv img, #conv script') === null"
        ),
        true
    );
    assert_eq!(b.eval(&alice, "window.__xss === undefined"), true);
    let shown = b.eval(
        &alice,
        "[...document.querySelectorAll('#conv .said.customer .text')].pop().textContent",
    );
    assert!(
        shown
            .as_str()
            .unwrap()
            .contains("<script>window.__xss=2</script>"),
        "{shown}"
    );
    b.screenshot(&alice, &screenshot_path("desk.png"));

    // Released: back to the bot, for both operators.
    b.click(&alice, "#release");
    b.wait(
        &bob,
        &format!(
            "document.querySelector('{} .badge').textContent === 'bot'",
            row(id)
        ),
    );
    c.say("价格");
    c.until("Basic ¥99/month");
}

#[test]
fn the_live_view_follows_sessions_and_filters_them() {
    let d = desk();
    let (web, token) = console(&d);
    let base = format!("http://{web}/");
    let mut b = Browser::start();
    let p = b.page();
    log_in(&mut b, &p, &base, &token, "Teacher");
    // A session open before the live view is followed: what it does from then on is shown.
    let mut one = Customer::connect(d.addr("desk"));
    one.say("hello");
    one.until("How can I help");
    b.click(&p, "#tab-live");
    b.wait(
        &p,
        "[...document.querySelectorAll('#listeners tbody td')].some(e => e.textContent === 'desk')",
    );
    one.say("help");
    one.until("talk to a person");
    let mut two = Customer::connect(d.addr("desk"));
    two.say("price");
    two.until("Basic ¥99/month");
    drop(two); // FIN
    // A UDP peer: its datagram, the echo, and its expiry.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(WAIT)).unwrap();
    udp.send_to(b"ping", d.addr("udp-echo")).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    b.wait(&p, "[...document.querySelectorAll('#events tbody tr')].some(r => r.dataset.listener === 'udp-echo' && r.textContent.includes('close idle_timeout (expired)'))");
    b.wait(&p, "[...document.querySelectorAll('#events tbody tr')].some(r => r.dataset.session === '1' && r.children[4].textContent === 'read' && r.children[6].textContent === '\"help\"')");
    b.wait(&p, "[...document.querySelectorAll('#events tbody tr')].some(r => r.dataset.session === '2' && r.textContent.includes('close peer_closed (FIN)'))");
    // Sizes are shown with the reads.
    assert_eq!(
        b.eval(&p, "[...document.querySelectorAll('#events tbody tr')].some(r => r.dataset.session === '2' && r.children[4].textContent === 'read' && r.children[5].textContent === '5')"),
        true
    );
    // Filtered to session 1, session 2's events are hidden.
    b.fill(&p, "#f-session", "1");
    b.eval(
        &p,
        "document.getElementById('f-session').dispatchEvent(new Event('input'))",
    );
    assert_eq!(
        b.eval(&p, "[...document.querySelectorAll('#events tbody tr')].every(r => r.hidden === (r.dataset.session !== '1'))"),
        true
    );
    b.wait(&p, "[...document.querySelectorAll('#listeners tbody tr')].some(r => r.children[0].textContent === 'desk' && r.children[4].textContent === '2')");
    b.fill(&p, "#f-session", "");
    b.eval(
        &p,
        "document.getElementById('f-session').dispatchEvent(new Event('input'))",
    );
    b.screenshot(&p, &screenshot_path("live.png"));
}

/// One raw HTTP request; the whole answer.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn nothing_is_served_without_a_credential_from_the_pages_own_origin() {
    let d = desk();
    let (web, token) = console(&d);
    let mut c = Customer::connect(d.addr("desk"));
    c.say("secret-order-4711");
    c.until("help");
    let host = format!("Host: {web}\r\n");
    for path in ["/", "/app.js", "/ws", "/anything"] {
        let r = http(web, &format!("GET {path} HTTP/1.1\r\n{host}\r\n"));
        assert!(r.starts_with("HTTP/1.1 401 "), "{path}: {r}");
        assert!(
            !r.contains("secret-order") && !r.contains("desk"),
            "{path}: {r}"
        );
    }
    // In the browser: the page's script and the WebSocket are refused too.
    let mut b = Browser::start();
    let p = b.page();
    b.goto(&p, &format!("http://{web}/"));
    let status = b.eval(&p, "fetch('/app.js').then(r => r.status)");
    assert_eq!(status, 401);
    let ws = b.eval(&p, "new Promise(ok => { const w = new WebSocket('ws://' + location.host + '/ws'); w.onopen = () => ok('open'); w.onerror = () => ok('refused'); })");
    assert_eq!(ws, "refused");
    // A wrong credential is refused; a login from another origin or for another host too.
    let body = "credential=wrong&name=x";
    let wrong = http(
        web,
        &format!(
            "POST /login HTTP/1.1\r\n{host}Origin: http://{web}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(
        wrong.starts_with("HTTP/1.1 401 ") && !wrong.contains("Set-Cookie"),
        "{wrong}"
    );
    let body = format!("credential={token}&name=x");
    let elsewhere = http(
        web,
        &format!(
            "POST /login HTTP/1.1\r\n{host}Origin: http://evil.example\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(
        elsewhere.starts_with("HTTP/1.1 403 ") && !elsewhere.contains("Set-Cookie"),
        "{elsewhere}"
    );
    let rebound = http(
        web,
        &format!(
            "POST /login HTTP/1.1\r\nHost: evil.example\r\nOrigin: http://evil.example\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(rebound.starts_with("HTTP/1.1 421 "), "{rebound}");
    let ok = http(
        web,
        &format!(
            "POST /login HTTP/1.1\r\n{host}Origin: http://{web}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(ok.starts_with("HTTP/1.1 303 "), "{ok}");
    let cookie = ok
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .expect("a cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let login = cookie.split(';').next().unwrap();
    // With the login, a WebSocket from another origin is still refused.
    let upgrade = |origin: &str| {
        http(
            web,
            &format!(
                "GET /ws HTTP/1.1\r\n{host}Cookie: {login}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
        )
    };
    assert!(upgrade("http://evil.example").starts_with("HTTP/1.1 403 "));
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(format!("GET /ws HTTP/1.1\r\n{host}Cookie: {login}\r\nOrigin: http://{web}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes()).unwrap();
    let mut head = [0u8; 256];
    let n = s.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(
        head.starts_with("HTTP/1.1 101 ") && head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    // A request bigger than the console takes is refused.
    let big = http(
        web,
        &format!(
            "POST /login HTTP/1.1\r\n{host}Origin: http://{web}\r\nContent-Length: 100000\r\n\r\n"
        ),
    );
    assert!(big.starts_with("HTTP/1.1 413 "), "{big}");
}

#[test]
fn a_browser_that_stops_reading_is_dropped_and_the_daemon_goes_on() {
    let config = format!(
        "[daemon]\nweb = \"127.0.0.1:0\"\nlog_level = \"info,switchboard::daemon::web=debug\"\n\n{}",
        udp_listener("echo", "[\"echo\"]", "")
    );
    let mut d = Logged(Daemon::start(&config));
    let (web, token) = console(&d);
    let host = format!("Host: {web}\r\n");
    let body = format!("credential={token}&name=slow");
    let ok = http(
        web,
        &format!(
            "POST /login HTTP/1.1\r\n{host}Origin: http://{web}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    let login = ok
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a cookie")
        .to_string();
    // A WebSocket with a small receive buffer, that asks for the live events and never reads.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&web.into()).unwrap();
    let stream: TcpStream = socket.into();
    let request = tungstenite::http::Request::builder()
        .uri(format!("ws://{web}/ws"))
        .header("Host", web.to_string())
        .header("Origin", format!("http://{web}"))
        .header("Cookie", login)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (mut ws, _) = tungstenite::client::client(request, stream).expect("upgrade");
    ws.send(tungstenite::Message::text(r#"{"op":"live","on":true}"#))
        .unwrap();
    // Following from now on: the counters come first (sessions opened before are not shown).
    loop {
        let m = ws.read().expect("a message");
        if m.to_text()
            .unwrap_or_default()
            .contains(r#""t":"listeners""#)
        {
            break;
        }
    }
    // Traffic: each datagram and its echo are two events for the browser.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    peer.connect(d.addr("echo")).unwrap();
    // (In rounds a socket's buffer holds, so that no datagram is lost on the way.)
    let payload = [b'x'; 500];
    let mut buf = [0u8; 2048];
    for _ in 0..1000 {
        for _ in 0..20 {
            peer.send(&payload).unwrap();
        }
        for _ in 0..20 {
            peer.recv(&mut buf).expect("the echo goes on");
        }
    }
    let dropped = d.0.wait_event("web_client_dropped");
    assert_eq!(field(&dropped, "reason"), "slow");
    // The daemon serves on.
    peer.send(b"still there").unwrap();
    let n = peer.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still there");
    drop(ws);
}

#[test]
fn a_password_made_by_web_password_logs_in_and_no_token_file_is_made() {
    let made = run_in(&["web-password"], None, "a long passphrase\n");
    assert!(made.status.success(), "{}", stderr(&made));
    let hash = crate::util::stdout(&made).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let short = run_in(&["web-password"], None, "short\n");
    assert!(!short.status.success());
    let config = format!(
        "[daemon]\nweb = \"127.0.0.1:0\"\nweb_token = false\nweb_password_hash = \"{hash}\"\n\n{}",
        tcp_listener("desk", "[\"console-reply\"]", "")
    );
    let d = Logged(Daemon::start(&config));
    assert!(d.events("web_token").next().is_none(), "no token file");
    let web: SocketAddr = d
        .events("web_listening")
        .next()
        .map(|v| field(&v, "addr").parse().unwrap())
        .unwrap();
    let host = format!("Host: {web}\r\nOrigin: http://{web}\r\n");
    let login = |credential: &str| {
        let body = format!("credential={credential}&name=pw");
        http(
            web,
            &format!(
                "POST /login HTTP/1.1\r\n{host}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert!(login("a+long+passphrase").starts_with("HTTP/1.1 303 "));
    assert!(login("a+long+passphrasE").starts_with("HTTP/1.1 401 "));
}

#[test]
fn a_public_address_without_a_credential_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("public.toml");
    let config = format!(
        "[daemon]\nweb = \"0.0.0.0:0\"\n\n{}",
        tcp_listener("desk", "[\"console-reply\"]", "")
    );
    std::fs::write(&path, config).unwrap();
    let file = path.to_str().unwrap();
    for command in ["check", "run"] {
        let o = run(&[command, "-c", file]);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(if command == "run" { 2 } else { 1 }),
            "{err}"
        );
        assert!(
            err.starts_with(&format!("{file}:2:7: daemon web: ")),
            "{err}"
        );
    }
}
