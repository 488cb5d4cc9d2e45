//! Requests parsed and answers written.

use super::*;

const LIMITS: Limits = Limits {
    conns: 4,
    head: 256,
    body: 16,
    timeout: Duration::from_secs(1),
};

fn peer() -> SocketAddr {
    "127.0.0.1:5000".parse().unwrap()
}

fn parsed(bytes: &[u8]) -> Parsed {
    parse(bytes, &LIMITS, peer())
}

#[test]
fn a_request_is_whole_with_its_body_only() {
    let head = b"POST /login?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nCookie: a=b\r\ncookie: c=d\r\n\r\n";
    assert_eq!(parsed(&head[..20]), Parsed::Partial);
    assert_eq!(parsed(head), Parsed::Partial);
    let mut whole = head.to_vec();
    whole.extend_from_slice(b"k=v&x");
    let Parsed::Complete(r) = parsed(&whole) else {
        panic!("complete")
    };
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_deref()),
        ("POST", "/login", Some("x=1"))
    );
    assert_eq!(r.body, b"k=v&x");
    assert_eq!(r.header("HOST"), Some("a"));
    assert_eq!(
        r.headers_named("cookie").collect::<Vec<_>>(),
        ["a=b", "c=d"]
    );
}

#[test]
fn too_big_malformed_or_chunked_requests_are_refused() {
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(300));
    assert_eq!(parsed(long.as_bytes()), Parsed::Refused(431));
    assert_eq!(parsed(b"\x01GET / HTTP/1.1\r\n\r\n"), Parsed::Refused(400));
    assert_eq!(parsed(&vec![b'G'; 300]), Parsed::Refused(431));
    let big = b"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n";
    assert_eq!(parsed(big), Parsed::Refused(413));
    let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    assert_eq!(parsed(two), Parsed::Refused(400));
    let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(parsed(chunked), Parsed::Refused(411));
    let many: String = (0..60).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
    let limits = Limits {
        head: 4096,
        ..LIMITS
    };
    assert_eq!(
        parse(many.as_bytes(), &limits, peer()),
        Parsed::Refused(431)
    );
    assert_eq!(
        parsed(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
        Parsed::Refused(400)
    );
}

#[test]
fn connection_tokens_are_matched_in_lists() {
    let Parsed::Complete(r) = parsed(
        b"GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
    ) else {
        panic!("complete")
    };
    assert!(r.header_has("connection", "upgrade"));
    assert!(r.header_has("upgrade", "websocket"));
    assert!(!r.header_has("connection", "close"));
}

#[test]
fn responses_say_their_length_close_and_keep_headers_on_one_line() {
    let r = Response::text(404, "no")
        .header("X-A", "1\r\nSet-Cookie: evil=1")
        .to_bytes();
    let text = String::from_utf8(r).unwrap();
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
    assert!(text.contains("X-A: 1Set-Cookie: evil=1\r\n"), "{text}");
    assert!(!text.contains("\r\nSet-Cookie"), "{text}");
    assert!(
        text.contains("Content-Length: 2\r\nConnection: close\r\n\r\nno"),
        "{text}"
    );
    let up =
        String::from_utf8(Response::new(101).header("Upgrade", "websocket").to_bytes()).unwrap();
    assert_eq!(
        up,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    );
}
