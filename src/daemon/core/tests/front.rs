//! The front of a session: the PROXY header's deadline, and the real client admitted again.

use super::harness::Harness;
use super::{MS, tcp};
use crate::daemon::core::Refusal;

const BEHIND: &str = "proxy_protocol = { trusted = [\"127.0.0.1/32\"] }\nproxy_timeout = \"300ms\"";

fn metric(h: &Harness, name: &str) -> String {
    let text = h.core.prometheus();
    let prefix = format!("switchboard_{name}{{listener=\"t\",proto=\"tcp\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

#[test]
fn a_header_that_does_not_come_in_time_ends_the_connection_before_any_handler_runs() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, BEHIND));
    let s = h.admit("t", "127.0.0.1:50000").unwrap();
    h.advance(299 * MS);
    assert!(!h.peer(s).released && !h.peer(s).fin, "still waiting");
    h.advance(MS);
    let p = h.peer(s);
    assert!(p.fin && p.received.is_empty(), "closed, nothing sent");
    assert_eq!(metric(&h, "handshakes_failed_total"), "1");
    assert_eq!(metric(&h, "sessions_active"), "0");
}

#[test]
fn a_header_in_time_opens_the_session_as_the_client_it_names_and_its_deadline_is_void() {
    let mut h = Harness::new(&tcp(r#"["echo"]"#, BEHIND));
    let s = h.admit("t", "127.0.0.1:50000").unwrap();
    assert!(
        h.core
            .proxied(s, Some("198.51.100.7:4000".parse().unwrap()))
            .is_ok()
    );
    h.core.open(s);
    h.settle();
    h.advance(500 * MS);
    h.send(s, b"still open");
    assert_eq!(h.received(s), "still open");
    assert_eq!(metric(&h, "handshakes_failed_total"), "0");
    let status = h.core.status_lines().join("\n");
    assert!(status.contains("active 1"), "{status}");
}

#[test]
fn the_real_client_meets_the_rules_and_max_per_ip_and_only_balancers_may_connect() {
    let extra = format!("{BEHIND}\ndeny = [\"203.0.113.9\"]\nmax_per_ip = 1");
    let mut h = Harness::new(&tcp(r#"["echo"]"#, &extra));
    // Many connections from the one balancer: its address is not what max_per_ip counts.
    let keys: Vec<_> = (0..4)
        .map(|i| h.admit("t", &format!("127.0.0.1:{}", 50000 + i)).unwrap())
        .collect();
    let alice = || Some("198.51.100.1:1000".parse().unwrap());
    assert!(h.core.proxied(keys[0], alice()).is_ok());
    assert_eq!(h.core.proxied(keys[1], alice()), Err(Refusal::MaxPerIp(1)));
    assert!(matches!(
        h.core
            .proxied(keys[2], Some("203.0.113.9:1".parse().unwrap())),
        Err(Refusal::Rules(_))
    ));
    // LOCAL (a health check): the balancer itself, no new judgement.
    assert!(h.core.proxied(keys[3], None).is_ok());
    h.settle();
    assert!(h.peer(keys[1]).fin && h.peer(keys[2]).fin);
    assert_eq!(metric(&h, "sessions_refused_total"), "2");
    assert_eq!(metric(&h, "handshakes_failed_total"), "0");
    // Alice's session ends: she may come again.
    h.core.open(keys[0]);
    h.settle();
    h.eof(keys[0]);
    let again = h.admit("t", "127.0.0.1:50010").unwrap();
    assert!(h.core.proxied(again, alice()).is_ok());
    // Another address is not a balancer.
    assert_eq!(h.admit("t", "10.1.2.3:5").err(), Some(Refusal::Untrusted));
}
