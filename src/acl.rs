//! Address rules for a listener's `allow` and `deny` lists: CIDR blocks or plain addresses.
//!
//! Pure code: parsing and matching only, no sockets. IPv4-mapped IPv6 addresses
//! (`::ffff:10.1.2.3`, what a dual-stack socket reports for an IPv4 peer) are matched as the
//! IPv4 address they carry, both as peers and as rules.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// One rule: a network in CIDR notation, or a single address (a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

/// Why a rule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is no IP address.
    #[error("{0:?} is not an IP address or CIDR block (write e.g. \"10.1.0.0/16\", \"::1\")")]
    Address(String),
    /// The prefix length is not a number within the family's width.
    #[error("{text:?}: the prefix length must be a number from 0 to {max}")]
    Prefix {
        /// The rule as written.
        text: String,
        /// 32 or 128.
        max: u8,
    },
    /// Bits are set after the prefix, so the rule is probably not what was meant.
    #[error("{text:?} has bits set after the /{prefix} prefix; did you mean \"{fixed}\"?")]
    HostBits {
        /// The rule as written.
        text: String,
        /// Its prefix length.
        prefix: u8,
        /// The network the prefix keeps.
        fixed: String,
    },
}

/// The IPv4 address inside an IPv4-mapped IPv6 address; any other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Cidr {
    /// Whether `ip` is in this network. IPv4-mapped IPv6 peers match IPv4 rules.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // ipnet answers false across families, so only the mapping is ours.
        self.0.contains(&canonical(ip))
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// ipnet's own parser takes only `addr/prefix` and says nothing of what is wrong, so the
    /// rule is split here and each part's error named.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let t = text.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(text.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix.map(str::parse::<u8>) {
            None => max,
            Some(Ok(p)) => p,
            Some(Err(_)) => max + 1,
        };
        let net = IpNet::new(addr, prefix).map_err(|_| CidrError::Prefix {
            text: text.to_string(),
            max,
        })?;
        if net.trunc() != net {
            return Err(CidrError::HostBits {
                text: text.to_string(),
                prefix,
                fixed: net.trunc().to_string(),
            });
        }
        // A rule written as an IPv4-mapped network is the IPv4 network it maps.
        if let IpNet::V6(v6) = net
            && prefix >= 96
            && let Some(v4) = v6.addr().to_ipv4_mapped()
            && let Ok(v4) = ipnet::Ipv4Net::new(v4, prefix - 96)
        {
            return Ok(Cidr(IpNet::V4(v4)));
        }
        Ok(Cidr(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// What the rules say about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Served.
    Allowed,
    /// A `deny` rule matches (deny wins over allow).
    Denied(Cidr),
    /// `allow` is not empty and no rule of it matches.
    NotAllowed,
}

/// A listener's `allow` and `deny` lists. Empty lists let everyone in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    /// Peers served; empty means everyone.
    pub allow: Vec<Cidr>,
    /// Peers refused, even when `allow` matches.
    pub deny: Vec<Cidr>,
}

impl Acl {
    /// Whether there is any rule at all.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Judge a peer: deny wins; an empty allow list admits everyone else.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        if let Some(rule) = self.deny.iter().find(|r| r.contains(ip)) {
            return Verdict::Denied(*rule);
        }
        if self.allow.is_empty() || self.allow.iter().any(|r| r.contains(ip)) {
            Verdict::Allowed
        } else {
            Verdict::NotAllowed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_blocks_and_plain_addresses() {
        assert_eq!(cidr("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert_eq!(cidr("127.0.0.1").to_string(), "127.0.0.1");
        assert_eq!(cidr("::1").to_string(), "::1");
        assert_eq!(cidr("fe80::/10").to_string(), "fe80::/10");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr(" 10.0.0.0/8 ").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn rejects_what_is_no_rule() {
        assert!(matches!(
            "localhost".parse::<Cidr>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!(
            "10.0.0.0/".parse::<Cidr>(),
            Err(CidrError::Prefix { .. })
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 32, .. })
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 128, .. })
        ));
        let e = "10.1.2.3/16".parse::<Cidr>().unwrap_err();
        assert!(
            e.to_string().contains("did you mean \"10.1.0.0/16\""),
            "{e}"
        );
        let e = "fe80::1/10".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("\"fe80::/10\""), "{e}");
    }

    #[test]
    fn matches_by_prefix() {
        let r = cidr("10.1.0.0/16");
        assert!(r.contains(ip("10.1.0.0")));
        assert!(r.contains(ip("10.1.255.255")));
        assert!(!r.contains(ip("10.2.0.0")));
        assert!(!r.contains(ip("::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!cidr("2001:db8::/33").contains(ip("2001:db8:8000::1")));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_rules() {
        assert!(cidr("10.1.0.0/16").contains(ip("::ffff:10.1.2.3")));
        assert!(!cidr("10.1.0.0/16").contains(ip("::ffff:10.2.2.3")));
        // And a rule written in the mapped form is the IPv4 network.
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert!(cidr("::ffff:127.0.0.1").contains(ip("127.0.0.1")));
    }

    /// Membership by the definition: the top `prefix` bits are equal.
    fn same_top_bits(a: u128, b: u128, width: u32, prefix: u32) -> bool {
        prefix == 0 || (a ^ b) >> (width - prefix) == 0
    }

    proptest::proptest! {
        #[test]
        fn ipv4_blocks_hold_the_addresses_that_share_their_prefix(
            net: u32, prefix in 0u32..=32, peer: u32, mapped: bool
        ) {
            let net = if prefix == 0 { 0 } else { net & (u32::MAX << (32 - prefix)) };
            let rule = cidr(&format!("{}/{prefix}", std::net::Ipv4Addr::from(net)));
            let v4 = std::net::Ipv4Addr::from(peer);
            let ip = if mapped { IpAddr::V6(v4.to_ipv6_mapped()) } else { IpAddr::V4(v4) };
            proptest::prop_assert_eq!(
                rule.contains(ip),
                same_top_bits(u128::from(net), u128::from(peer), 32, prefix)
            );
        }

        #[test]
        fn ipv6_blocks_hold_the_addresses_that_share_their_prefix(
            net: u128, prefix in 0u32..=128, peer: u128, map_net: bool, map_peer: bool
        ) {
            // Half the cases in the IPv4-mapped range ::ffff:0:0/96, which is IPv4's.
            const MAPPED: u128 = 0xffff << 32;
            let in_mapped = |a: u128, yes: bool| if yes { MAPPED | (a & 0xffff_ffff) } else { a };
            let (net, peer) = (in_mapped(net, map_net), in_mapped(peer, map_peer));
            let net = if prefix == 0 { 0 } else { net & (u128::MAX << (128 - prefix)) };
            let rule = cidr(&format!("{}/{prefix}", std::net::Ipv6Addr::from(net)));
            let is_mapped = |a: u128| std::net::Ipv6Addr::from(a).to_ipv4_mapped().is_some();
            // A rule of prefix 96 or more inside the range is an IPv4 rule, and a mapped peer
            // an IPv4 address: a family holds only its own addresses.
            let rule_v4 = prefix >= 96 && is_mapped(net);
            let expected = rule_v4 == is_mapped(peer) && same_top_bits(net, peer, 128, prefix);
            proptest::prop_assert_eq!(rule.contains(IpAddr::V6(peer.into())), expected);
        }
    }

    #[test]
    fn deny_wins_and_empty_allow_admits_everyone() {
        let open = Acl::default();
        assert!(open.is_open());
        assert_eq!(open.check(ip("198.51.100.1")), Verdict::Allowed);
        let acl = Acl {
            allow: vec![cidr("127.0.0.0/8"), cidr("::1")],
            deny: vec![cidr("127.0.0.2")],
        };
        assert_eq!(acl.check(ip("127.0.0.1")), Verdict::Allowed);
        assert_eq!(acl.check(ip("::1")), Verdict::Allowed);
        assert_eq!(
            acl.check(ip("127.0.0.2")),
            Verdict::Denied(cidr("127.0.0.2"))
        );
        assert_eq!(
            acl.check(ip("::ffff:127.0.0.2")),
            Verdict::Denied(cidr("127.0.0.2"))
        );
        assert_eq!(acl.check(ip("10.0.0.1")), Verdict::NotAllowed);
        let deny_only = Acl {
            allow: vec![],
            deny: vec![cidr("10.0.0.0/8")],
        };
        assert_eq!(deny_only.check(ip("192.0.2.1")), Verdict::Allowed);
        assert!(matches!(
            deny_only.check(ip("10.9.9.9")),
            Verdict::Denied(_)
        ));
    }
}
