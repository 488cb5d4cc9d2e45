//! What each request gets, without a browser: the login, the page, the WebSocket's handshake,
//! and every refusal.

use super::*;
use crate::daemon::httpd::Site;
use crate::daemon::tokens::Tokens;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const HOST: &str = "127.0.0.1:9899";

fn web(now: Instant) -> (Web, mio::Poll) {
    let poll = mio::Poll::new().unwrap();
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        Site::Web,
        LIMITS,
        poll.registry(),
        &mut Tokens::default(),
    )
    .unwrap();
    let auth = auth::Auth::new(
        Some(TOKEN.into()),
        Some(TEST_PASSWORD_HASH.into()),
        Duration::from_secs(3600),
        Vec::new(),
        now,
    );
    (Web::new(server, auth), poll)
}

fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
    let mut all = vec![("host".to_string(), HOST.to_string())];
    all.extend(
        headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string())),
    );
    Request {
        method: method.into(),
        path: path.into(),
        query: None,
        headers: all,
        body: body.as_bytes().to_vec(),
        peer: "127.0.0.1:5000".parse().unwrap(),
    }
}

fn answer_of(r: Route) -> Response {
    match r {
        Route::Answer(r) => r,
        Route::Upgrade(..) => panic!("an upgrade"),
    }
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

const ORIGIN: (&str, &str) = ("Origin", "http://127.0.0.1:9899");

/// Log in with `credential`; the cookie header to send afterwards.
fn log_in(w: &mut Web, credential: &str, now: Instant) -> String {
    let r = answer_of(w.route(
        &req(
            "POST",
            "/login",
            &[ORIGIN],
            &format!("credential={credential}&name=Ann+Lee"),
        ),
        now,
    ));
    assert_eq!(r.status, 303);
    let cookie = header(&r, "Set-Cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

#[test]
fn without_a_login_only_the_form_and_its_style_are_served() {
    let now = Instant::now();
    let (mut w, _poll) = web(now);
    let r = answer_of(w.route(&req("GET", "/", &[], ""), now));
    assert_eq!(r.status, 401);
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        body.contains("name=\"credential\"") && !body.contains("app.js"),
        "{body}"
    );
    assert!(header(&r, "Content-Security-Policy").is_some());
    for path in ["/app.js", "/ws", "/x"] {
        let r = answer_of(w.route(&req("GET", path, &[], ""), now));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (401, &b"unauthorized\n"[..]),
            "{path}"
        );
    }
    let r = answer_of(w.route(&req("GET", "/style.css", &[], ""), now));
    assert_eq!(r.status, 200);
    let r = answer_of(w.route(
        &req("GET", "/", &[("Cookie", "switchboard_login=forged")], ""),
        now,
    ));
    assert_eq!(r.status, 401);
}

#[test]
fn the_token_or_the_password_logs_in_from_the_pages_origin_only() {
    let now = Instant::now();
    let (mut w, _poll) = web(now);
    let cookie = log_in(&mut w, TOKEN, now);
    let r = answer_of(w.route(&req("GET", "/", &[("Cookie", &cookie)], ""), now));
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("/app.js"));
    log_in(&mut w, "correct+horse", now);
    // Wrong, or from elsewhere: no cookie.
    let r = answer_of(w.route(&req("POST", "/login", &[ORIGIN], "credential=nope"), now));
    assert_eq!(r.status, 401);
    assert!(header(&r, "Set-Cookie").is_none());
    let evil = ("Origin", "http://evil.example");
    let body = format!("credential={TOKEN}");
    let r = answer_of(w.route(&req("POST", "/login", &[evil], &body), now));
    assert_eq!(r.status, 403);
    let r = answer_of(w.route(&req("POST", "/login", &[], &body), now));
    assert_eq!(r.status, 403, "no Origin");
    // A rebound name is not served at all.
    let mut rebound = req("GET", "/style.css", &[], "");
    rebound.headers[0].1 = "evil.example:9899".into();
    assert_eq!(answer_of(w.route(&rebound, now)).status, 421);
    // The login ends with its lifetime, and at logout.
    let later = now + Duration::from_secs(3601);
    let r = answer_of(w.route(&req("GET", "/", &[("Cookie", &cookie)], ""), later));
    assert_eq!(r.status, 401);
    let r = answer_of(w.route(
        &req("POST", "/logout", &[("Cookie", &cookie), ORIGIN], ""),
        now,
    ));
    assert_eq!(r.status, 303);
    assert!(header(&r, "Set-Cookie").unwrap().contains("Max-Age=0"));
    let r = answer_of(w.route(&req("GET", "/", &[("Cookie", &cookie)], ""), now));
    assert_eq!(r.status, 401);
}

#[test]
fn the_websocket_needs_the_login_the_origin_and_a_proper_handshake() {
    let now = Instant::now();
    let (mut w, _poll) = web(now);
    let cookie = log_in(&mut w, TOKEN, now);
    let ws = |origin: &'static str, version: &'static str| {
        vec![
            ("Cookie", cookie.clone()),
            ("Origin", origin.to_string()),
            ("Connection", "keep-alive, Upgrade".to_string()),
            ("Upgrade", "websocket".to_string()),
            ("Sec-WebSocket-Version", version.to_string()),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".to_string()),
        ]
    };
    let route = |w: &mut Web, h: Vec<(&str, String)>| {
        let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        w.route(&req("GET", "/ws", &h, ""), now)
    };
    match route(&mut w, ws("http://127.0.0.1:9899", "13")) {
        Route::Upgrade(r, _, name) => {
            assert_eq!(r.status, 101);
            assert_eq!(
                header(&r, "Sec-WebSocket-Accept"),
                Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            );
            assert_eq!(name, "Ann Lee");
        }
        Route::Answer(r) => panic!("refused: {}", r.status),
    }
    assert_eq!(
        answer_of(route(&mut w, ws("http://evil.example", "13"))).status,
        403
    );
    assert_eq!(
        answer_of(route(&mut w, ws("http://127.0.0.1:9899", "8"))).status,
        426
    );
}

#[test]
fn form_fields_are_percent_decoded() {
    assert_eq!(
        form(b"credential=a%2Bb%20c+d&name=%E4%BD%A0&empty=&odd=%zz%4"),
        [
            ("credential".to_string(), "a+b c d".to_string()),
            ("name".to_string(), "你".to_string()),
            ("empty".to_string(), String::new()),
            ("odd".to_string(), "%zz%4".to_string()),
        ]
    );
}
