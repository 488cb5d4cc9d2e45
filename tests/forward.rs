//! `forward` end to end: a real upstream server in the test, the daemon in front of it;
//! half-close and resets passed on both ways, an unreachable upstream, UDP per peer, and a
//! chain with bye-close.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::Duration;

use crate::util::{
    Daemon, WAIT, ask, closed, connect, event, field, tcp_listener, udp_ask, udp_client,
    udp_listener,
};

/// An upstream that hands each accepted connection to the test.
pub(crate) fn upstream() -> (SocketAddr, Receiver<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = channel();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            c.set_read_timeout(Some(WAIT)).unwrap();
            if tx.send(c).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// An upstream that echoes each connection in upper case until its EOF, then says "eof"
/// and closes.
pub(crate) fn upper_upstream() -> SocketAddr {
    let (addr, rx) = upstream();
    thread::spawn(move || {
        for mut c in rx {
            thread::spawn(move || {
                let mut buf = [0; 65536];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = c.write_all(b"eof");
            });
        }
    });
    addr
}

pub(crate) fn forward_to(name: &str, up: SocketAddr, extra: &str) -> String {
    tcp_listener(
        name,
        r#"["forward"]"#,
        &format!("{extra}\n[listener.forward]\nupstream = \"{up}\"\n"),
    )
}

fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read to EOF");
    all
}

#[test]
fn relays_both_ways_and_passes_the_clients_half_close_on() {
    let d = Daemon::start(&forward_to("f", upper_upstream(), ""));
    let mut c = connect(d.addr("f"));
    assert_eq!(ask(&mut c, "hello"), "HELLO");
    c.write_all(b"last").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_end(&mut c),
        b"LASTeof",
        "the upstream saw our FIN and answered"
    );
}

#[test]
fn the_upstreams_half_close_reaches_the_client_which_may_still_send() {
    let (up, conns) = upstream();
    let d = Daemon::start(&forward_to("f", up, ""));
    let mut c = connect(d.addr("f"));
    let mut u = conns.recv_timeout(WAIT).unwrap();
    u.write_all(b"bye from upstream").unwrap();
    u.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut c), b"bye from upstream");
    c.write_all(b"late words").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut u), b"late words");
}

#[test]
fn a_reset_upstream_resets_the_client_and_a_reset_client_the_upstream() {
    let (up, conns) = upstream();
    let d = Daemon::start(&forward_to("f", up, ""));
    let mut c = connect(d.addr("f"));
    let u = conns.recv_timeout(WAIT).unwrap();
    socket2::SockRef::from(&u)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(u);
    let mut buf = [0; 16];
    let e = c.read(&mut buf).expect_err("a reset");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);

    let c = connect(d.addr("f"));
    let mut u = conns.recv_timeout(WAIT).unwrap();
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    let e = u.read(&mut buf).expect_err("a reset");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn an_unreachable_upstream_ends_the_session_with_a_logged_reason_and_the_reply() {
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut d = Daemon::start(&tcp_listener(
        "f",
        r#"["forward"]"#,
        &format!("[listener.forward]\nupstream = \"{gone}\"\nunreachable_reply = \"no server\\n\""),
    ));
    let mut c = connect(d.addr("f"));
    assert_eq!(read_to_end(&mut c), b"no server\n");
    let ev = d.wait_event("upstream_failed");
    assert_eq!(field(&ev, "upstream"), gone.to_string());
    let ev = d.wait_event("session_closed");
    assert_eq!(field(&ev, "reason"), "upstream_failed");
}

#[test]
fn an_upstream_that_never_answers_times_out() {
    // A listener whose backlog is full never completes another handshake: connects hang.
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let up = l.local_addr().unwrap().as_socket().unwrap();
    let _fill: Vec<_> = (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&up, Duration::from_millis(200)).ok())
        .collect();
    let mut d = Daemon::start(&tcp_listener(
        "f",
        r#"["forward"]"#,
        &format!("[listener.forward]\nupstream = \"{up}\"\nconnect_timeout = \"300ms\""),
    ));
    let mut c = connect(d.addr("f"));
    assert!(closed(&mut c));
    let ev = d.wait_for(|v| event(v) == "session_closed").unwrap();
    // Only a stop signal ends it with "shutdown"; name it if one came from outside.
    let stops: Vec<_> = d.events("stop_requested").collect();
    assert_eq!(field(&ev, "reason"), "upstream_failed", "{stops:?}");
}

#[test]
fn bye_close_in_front_of_forward_ends_the_session_itself() {
    let d = Daemon::start(&tcp_listener(
        "f",
        r#"["bye-close", "forward"]"#,
        &format!("[listener.forward]\nupstream = \"{}\"", upper_upstream()),
    ));
    let mut c = connect(d.addr("f"));
    assert_eq!(ask(&mut c, "hi"), "HI");
    assert_eq!(ask(&mut c, "bye"), "bye");
    assert!(closed(&mut c));
}

#[test]
fn udp_is_relayed_with_a_socket_per_peer() {
    let up = UdpSocket::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0; 2048];
        while let Ok((n, from)) = up.recv_from(&mut buf) {
            let reply = format!("{} via {}", String::from_utf8_lossy(&buf[..n]), from.port());
            let _ = up.send_to(reply.as_bytes(), from);
        }
    });
    let mut d = Daemon::start(&udp_listener(
        "u",
        r#"["forward"]"#,
        &format!("idle_timeout = \"500ms\"\n[listener.forward]\nupstream = \"{up_addr}\""),
    ));
    let (a, b) = (udp_client(), udp_client());
    let ra = udp_ask(&a, d.addr("u"), "a");
    let rb = udp_ask(&b, d.addr("u"), "b");
    let port = |r: &str| r.rsplit(' ').next().unwrap().to_string();
    assert!(
        ra.starts_with("a via ") && rb.starts_with("b via "),
        "{ra} / {rb}"
    );
    assert_ne!(port(&ra), port(&rb), "one upstream socket per peer");
    assert_eq!(port(&udp_ask(&a, d.addr("u"), "again")), port(&ra));
    let ev = d.wait_for(|v| event(v) == "session_closed").unwrap();
    // Only a stop signal ends it with "shutdown"; name it if one came from outside.
    let stops: Vec<_> = d.events("stop_requested").collect();
    assert_eq!(field(&ev, "reason"), "idle_timeout", "{stops:?}");
    let again = udp_ask(&a, d.addr("u"), "back");
    assert!(again.starts_with("back via "), "{again}");
}
