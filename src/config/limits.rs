//! A listener's limits and hardening options: validation of the raw keys into [`Limits`].
//!
//! Every option has a safe default, so a listener declared without any of them is already
//! bounded: 10000 sessions, 256 per address, 30 s for a stalled write, and on UDP no reply to
//! the well-known service ports and at most 100 replies per second to one address.

use std::time::Duration;

use switchboard_handlers::Proto;
use toml::Spanned;

use super::Framing;
use super::validate::{FileListener, Validator};
use crate::acl::{Acl, Cidr};

/// Sessions per listener (TCP connections, UDP peers) when `max_connections` is not given.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Sessions per peer address when `max_per_ip` is not given.
const DEFAULT_MAX_PER_IP: usize = 256;
/// How long output may stay pending without progress when `write_timeout` is not given.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a line may take to arrive in full (line framing) when `message_timeout` is not
/// given: a peer that trickles a line a byte at a time cannot hold its session forever.
const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// UDP replies per second to one peer address when `reply_rate` is not given.
const DEFAULT_REPLY_RATE: f64 = 100.0;
/// UDP source ports never answered when `udp_blocked_ports` is not given: services that
/// answer datagrams, so that a datagram forged with one of them as its source cannot set two
/// servers talking to each other, or turn us into a reflector against them.
const DEFAULT_UDP_BLOCKED_PORTS: &[u16] = &[
    7,     // echo
    9,     // discard
    13,    // daytime
    17,    // qotd
    19,    // chargen
    37,    // time
    53,    // DNS
    69,    // TFTP
    111,   // portmap
    123,   // NTP
    137,   // NetBIOS name
    161,   // SNMP
    389,   // CLDAP
    500,   // IKE
    520,   // RIP
    1900,  // SSDP
    3702,  // WS-Discovery
    5353,  // mDNS
    5683,  // CoAP
    11211, // memcached
];

/// A token bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held: how many may pass at once after a quiet spell.
    pub burst: u32,
}

/// A listener's validated limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `allow` and `deny`.
    pub acl: Acl,
    /// Most sessions open at once; `None` for no limit (`max_connections = 0`).
    pub max_connections: Option<usize>,
    /// Most sessions open at once from one address; `None` for no limit.
    pub max_per_ip: Option<usize>,
    /// Whether `max_per_ip` also holds for loopback peers: the default does not (a local
    /// load tool or proxy is one address for many clients); a value written in the config
    /// holds for every peer.
    pub max_per_ip_loopback: bool,
    /// New sessions per second; `None` (the default) for no limit.
    pub accept_rate: Option<Rate>,
    /// TCP: written to a connection refused for a limit before it is closed.
    pub busy_message: Option<Vec<u8>>,
    /// TCP line framing: sent before closing a session whose line is longer than
    /// `max_message`.
    pub too_long_reply: Option<String>,
    /// TCP: close a session whose output makes no progress for this long.
    pub write_timeout: Duration,
    /// Line framing: close a session whose unfinished line is this old (slowloris); `None`
    /// for no limit.
    pub message_timeout: Option<Duration>,
    /// UDP: datagrams from these source ports are dropped unanswered (port 0 always is).
    pub udp_blocked_ports: Vec<u16>,
    /// UDP: replies per second to one peer address (all its ports); `None` for no limit.
    pub reply_rate: Option<Rate>,
    /// Whether `reply_rate` also holds for loopback peers. The default rate does not:
    /// amplification needs a forged source, and the kernel drops loopback sources arriving
    /// from the network, while local load tools and tests send far faster than the default.
    /// A rate written in the config holds for every peer.
    pub reply_rate_loopback: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            acl: Acl::default(),
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            max_per_ip: Some(DEFAULT_MAX_PER_IP),
            max_per_ip_loopback: false,
            accept_rate: None,
            busy_message: None,
            too_long_reply: None,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            message_timeout: None,
            udp_blocked_ports: DEFAULT_UDP_BLOCKED_PORTS.to_vec(),
            reply_rate: Some(Rate {
                per_second: DEFAULT_REPLY_RATE,
                burst: DEFAULT_REPLY_RATE as u32,
            }),
            reply_rate_loopback: false,
        }
    }
}

impl Limits {
    /// Whether replies to this UDP source port are forbidden.
    pub fn port_blocked(&self, port: u16) -> bool {
        port == 0 || self.udp_blocked_ports.contains(&port)
    }
}

/// A limit where 0 means none.
fn count(v: &Option<Spanned<usize>>, default: usize) -> Option<usize> {
    match v {
        None => Some(default),
        Some(v) if *v.get_ref() == 0 => None,
        Some(v) => Some(*v.get_ref()),
    }
}

impl Validator<'_> {
    /// Check the limits keys of one listener (all in one place) and build its [`Limits`].
    pub(super) fn limits(&mut self, l: &FileListener, label: &str) -> Limits {
        let key = |k: &str| Some(format!("{label} {k}"));
        let mut limits = Limits::default();
        let mut acl = Acl::default();
        for (list, k, rules) in [
            (&l.allow, "allow", &mut acl.allow),
            (&l.deny, "deny", &mut acl.deny),
        ] {
            for rule in list.iter().flatten() {
                match rule.get_ref().parse::<Cidr>() {
                    Ok(c) => rules.push(c),
                    Err(e) => self.error(Some(rule.span()), key(k), e.to_string()),
                }
            }
        }
        limits.acl = acl;
        limits.max_connections = count(&l.max_connections, DEFAULT_MAX_CONNECTIONS);
        limits.max_per_ip = count(&l.max_per_ip, DEFAULT_MAX_PER_IP);
        limits.max_per_ip_loopback = l.max_per_ip.is_some();
        limits.accept_rate = self.rate(&l.accept_rate, &l.accept_burst, None, label, "accept");
        limits.reply_rate = self.rate(
            &l.reply_rate,
            &l.reply_burst,
            limits.reply_rate,
            label,
            "reply",
        );
        limits.reply_rate_loopback = l.reply_rate.is_some() || l.reply_burst.is_some();
        if let Some(w) = &l.write_timeout
            && let Some(d) = self.duration(w, format!("{label} write_timeout"))
        {
            if d.is_zero() {
                self.error(
                    Some(w.span()),
                    key("write_timeout"),
                    "must be longer than 0",
                );
            }
            limits.write_timeout = d;
        }
        let line = l.framing.as_ref().map(|f| *f.get_ref()) == Some(Framing::Line);
        limits.message_timeout = match &l.message_timeout {
            Some(m) => {
                let d = self.duration(m, format!("{label} message_timeout"));
                if !line {
                    self.error(
                        Some(m.span()),
                        key("message_timeout"),
                        "applies to framing = \"line\" only (a raw read or a datagram is a \
                         whole message as soon as it arrives)",
                    );
                }
                d.filter(|d| !d.is_zero())
            }
            None if line => Some(DEFAULT_MESSAGE_TIMEOUT),
            None => None,
        };
        if let Some(ports) = &l.udp_blocked_ports {
            limits.udp_blocked_ports = ports.get_ref().clone();
        }
        limits.busy_message = l.busy_message.as_ref().map(|m| {
            let mut m = m.get_ref().clone().into_bytes();
            if l.framing.as_ref().map(|f| *f.get_ref()) == Some(Framing::Line)
                && m.last() != Some(&b'\n')
            {
                m.push(b'\n');
            }
            m
        });
        limits.too_long_reply = l.too_long_reply.as_ref().map(|m| m.get_ref().clone());
        if let (Some(r), false) = (&l.too_long_reply, line) {
            self.error(
                Some(r.span()),
                key("too_long_reply"),
                "applies to framing = \"line\" only (raw reads and datagrams are never too long \
                 to deliver: reads are cut into max_message pieces, large datagrams dropped)",
            );
        }
        let tcp_only = [
            l.busy_message.as_ref().map(|v| (v.span(), "busy_message")),
            l.write_timeout
                .as_ref()
                .map(|v| (v.span(), "write_timeout")),
            None,
        ];
        let udp_only = [
            l.udp_blocked_ports
                .as_ref()
                .map(|v| (v.span(), "udp_blocked_ports")),
            l.reply_rate.as_ref().map(|v| (v.span(), "reply_rate")),
            l.reply_burst.as_ref().map(|v| (v.span(), "reply_burst")),
        ];
        let (wrong, why) = match l.protocol {
            None => return limits,
            Some(Proto::Udp) => (
                tcp_only,
                "applies to TCP listeners only (a UDP listener drops what it refuses without \
                 answering: an answer to a forged source would be a reflection)",
            ),
            Some(Proto::Tcp) => (udp_only, "applies to UDP listeners only"),
        };
        for (span, k) in wrong.into_iter().flatten() {
            self.error(Some(span), key(k), why);
        }
        limits
    }

    /// A `NAME_burst` given where no rate applies.
    fn burst_without_rate(&mut self, burst: &Option<Spanned<u32>>, label: &str, name: &str) {
        if let Some(b) = burst {
            self.error(
                Some(b.span()),
                Some(format!("{label} {name}_burst")),
                format!("has no effect without a {name}_rate"),
            );
        }
    }

    /// `NAME_rate` and `NAME_burst`: a rate of 0 turns the limit off; the burst defaults to
    /// one second's worth.
    fn rate(
        &mut self,
        rate: &Option<Spanned<f64>>,
        burst: &Option<Spanned<u32>>,
        default: Option<Rate>,
        label: &str,
        name: &str,
    ) -> Option<Rate> {
        if let Some(b) = burst
            && *b.get_ref() == 0
        {
            self.error(
                Some(b.span()),
                Some(format!("{label} {name}_burst")),
                "must be at least 1",
            );
        }
        let per_second = match rate {
            None => {
                let Some(mut d) = default else {
                    self.burst_without_rate(burst, label, name);
                    return None;
                };
                if let Some(b) = burst {
                    d.burst = (*b.get_ref()).max(1);
                }
                return Some(d);
            }
            Some(r) => *r.get_ref(),
        };
        if !per_second.is_finite() || per_second < 0.0 {
            self.error(
                rate.as_ref().map(|r| r.span()),
                Some(format!("{label} {name}_rate")),
                format!("must be a number per second (0 for no {name} limit)"),
            );
            return None;
        }
        if per_second == 0.0 {
            self.burst_without_rate(burst, label, name);
            return None;
        }
        let burst = burst
            .as_ref()
            .map_or(per_second.ceil() as u32, |b| *b.get_ref())
            .max(1);
        Some(Rate { per_second, burst })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    fn listener(proto: &str, extra: &str) -> Result<Limits, Vec<String>> {
        let text = format!(
            "[[listener]]\nname = \"a\"\nprotocol = \"{proto}\"\nip = \"127.0.0.1\"\nport = 0\nhandlers = [\"echo\"]\n{extra}\n"
        );
        parse(&text, Path::new("t.toml"), Path::new("."))
            .map(|c| c.listeners[0].limits.clone())
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults_are_safe() {
        let l = listener("tcp", "").unwrap();
        assert_eq!(l, Limits::default());
        assert_eq!(l.max_connections, Some(DEFAULT_MAX_CONNECTIONS));
        assert_eq!(l.max_per_ip, Some(DEFAULT_MAX_PER_IP));
        assert_eq!(l.accept_rate, None);
        assert_eq!(l.write_timeout, DEFAULT_WRITE_TIMEOUT);
        assert!(l.port_blocked(0) && l.port_blocked(53) && l.port_blocked(11211));
        assert!(!l.port_blocked(40000));
        assert_eq!(l.reply_rate.unwrap().per_second, 100.0);
    }

    #[test]
    fn every_key_is_read() {
        let l = listener(
            "tcp",
            "framing = \"line\"\nallow = [\"127.0.0.0/8\", \"::1\"]\ndeny = [\"127.0.0.2\"]\nmax_connections = 5\nmax_per_ip = 0\naccept_rate = 2.5\nbusy_message = \"busy\"\ntoo_long_reply = \"too long\"\nwrite_timeout = \"2s\"",
        )
        .unwrap();
        assert_eq!(l.acl.allow.len(), 2);
        assert_eq!(l.acl.deny[0].to_string(), "127.0.0.2");
        assert_eq!(l.max_connections, Some(5));
        assert_eq!(l.max_per_ip, None);
        assert_eq!(
            l.accept_rate,
            Some(Rate {
                per_second: 2.5,
                burst: 3
            })
        );
        assert_eq!(l.busy_message.as_deref(), Some(&b"busy\n"[..]));
        assert_eq!(l.too_long_reply.as_deref(), Some("too long"));
        assert_eq!(l.write_timeout, Duration::from_secs(2));
        let u = listener(
            "udp",
            "udp_blocked_ports = [9999]\nreply_rate = 10\nreply_burst = 1\naccept_rate = 1\naccept_burst = 4",
        )
        .unwrap();
        assert!(u.port_blocked(9999) && u.port_blocked(0) && !u.port_blocked(53));
        assert_eq!(
            u.reply_rate,
            Some(Rate {
                per_second: 10.0,
                burst: 1
            })
        );
        assert_eq!(u.accept_rate.unwrap().burst, 4);
        assert_eq!(listener("udp", "reply_rate = 0").unwrap().reply_rate, None);
    }

    #[test]
    fn mistakes_name_line_and_key() {
        let e = listener("tcp", "allow = [\"10.1.2.3/16\", \"nowhere\"]").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:7:10: listener \"a\" allow: \"10.1.2.3/16\" has bits set"),
            "{e:?}"
        );
        assert!(e[1].contains("\"nowhere\" is not an IP address"), "{e:?}");
        let e = listener("udp", "busy_message = \"x\"\nwrite_timeout = \"1s\"").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("busy_message: applies to TCP listeners only"),
            "{e:?}"
        );
        let e = listener(
            "tcp",
            "udp_blocked_ports = [1]\nreply_rate = 1\nreply_burst = 2",
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().all(|e| e.contains("UDP listeners only")), "{e:?}");
        let e = listener("tcp", "too_long_reply = \"x\"").unwrap_err();
        assert!(e[0].contains("too_long_reply: applies to framing"), "{e:?}");
        let e = listener("tcp", "accept_rate = -1\nwrite_timeout = \"0s\"").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        let e = listener("tcp", "accept_burst = 3").unwrap_err();
        assert!(e[0].contains("accept_burst: has no effect"), "{e:?}");
        let e = listener("tcp", "max_conections = 3").unwrap_err();
        assert!(
            e[0].contains("max_conections: unknown key; did you mean `max_connections`?"),
            "{e:?}"
        );
    }
}
