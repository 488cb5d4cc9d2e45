//! The PROXY protocol header at the front of a connection (HAProxy's v1 text and v2 binary
//! forms), read as it arrives: parsed with `ppp` at each read until it is complete, invalid,
//! or longer than any header may be. Pure: bytes in, a verdict out.

use std::net::SocketAddr;

use ppp::{HeaderResult, PartialResult, v1, v2};

/// Longest header taken: a v1 line is at most 107 bytes; a v2 header may carry TLVs, which a
/// balancer keeps short (HAProxy's own limit is its buffer; nothing we use is in them).
pub(crate) const MAX_HEADER: usize = 4096;

/// What the bytes so far make.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not a whole header yet.
    Incomplete,
    /// A header of `len` bytes naming `real` as the client (`None`: a v2 LOCAL command or
    /// an unknown address family, served as the balancer itself).
    Done {
        real: Option<SocketAddr>,
        len: usize,
    },
    /// Not a header this listener takes, and more bytes will not make it one.
    Invalid(String),
}

/// The versions a listener takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Versions {
    pub(crate) v1: bool,
    pub(crate) v2: bool,
}

/// Parse the bytes received so far.
pub(crate) fn parse(bytes: &[u8], versions: Versions) -> Parsed {
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return if bytes.len() >= MAX_HEADER {
            Parsed::Invalid(format!("no complete header within {MAX_HEADER} bytes"))
        } else {
            Parsed::Incomplete
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) if versions.v1 => {
            let real = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Parsed::Done {
                real,
                len: h.header.len(),
            }
        }
        HeaderResult::V2(Ok(h)) if versions.v2 => {
            let real = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
            };
            Parsed::Done { real, len: h.len() }
        }
        HeaderResult::V1(Ok(_)) => Parsed::Invalid("a v1 header; this listener takes v2".into()),
        HeaderResult::V2(Ok(_)) => Parsed::Invalid("a v2 header; this listener takes v1".into()),
        HeaderResult::V1(Err(e)) => Parsed::Invalid(format!("not a PROXY header: {e}")),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(format!("malformed v2 PROXY header: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Versions = Versions { v1: true, v2: true };

    fn v2_header(local: bool) -> Vec<u8> {
        let cmd = if local {
            v2::Command::Local
        } else {
            v2::Command::Proxy
        };
        let addrs: v2::Addresses = (
            "203.0.113.7:5555".parse::<SocketAddr>().unwrap(),
            "10.0.0.1:443".parse::<SocketAddr>().unwrap(),
        )
            .into();
        v2::Builder::with_addresses(v2::Version::Two | cmd, v2::Protocol::Stream, addrs)
            .build()
            .unwrap()
    }

    #[test]
    fn a_v1_line_names_the_client_and_its_length_leaves_the_data_after_it() {
        let line = b"PROXY TCP4 198.51.100.9 10.0.0.1 40000 8888\r\nhello";
        assert_eq!(
            parse(line, BOTH),
            Parsed::Done {
                real: Some("198.51.100.9:40000".parse().unwrap()),
                len: line.len() - 5
            }
        );
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert!(matches!(parse(v6, BOTH), Parsed::Done { real: Some(a), .. } if a.is_ipv6()));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n", BOTH),
            Parsed::Done {
                real: None,
                len: 15
            }
        );
    }

    #[test]
    fn a_v2_header_in_pieces_completes_and_local_is_the_balancer() {
        let h = v2_header(false);
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut], BOTH), Parsed::Incomplete, "cut at {cut}");
        }
        assert_eq!(
            parse(&h, BOTH),
            Parsed::Done {
                real: Some("203.0.113.7:5555".parse().unwrap()),
                len: h.len()
            }
        );
        assert!(matches!(
            parse(&v2_header(true), BOTH),
            Parsed::Done { real: None, .. }
        ));
    }

    #[test]
    fn garbage_wrong_versions_and_endless_headers_are_invalid() {
        assert!(matches!(
            parse(b"GET / HTTP/1.0\r\n", BOTH),
            Parsed::Invalid(_)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 x y 1 2\r\n", BOTH),
            Parsed::Invalid(_)
        ));
        assert_eq!(parse(b"PROXY TCP4 1.2", BOTH), Parsed::Incomplete);
        let only_v2 = Versions {
            v1: false,
            v2: true,
        };
        assert!(matches!(
            parse(b"PROXY UNKNOWN\r\n", only_v2),
            Parsed::Invalid(_)
        ));
        let only_v1 = Versions {
            v1: true,
            v2: false,
        };
        assert!(matches!(
            parse(&v2_header(false), only_v1),
            Parsed::Invalid(_)
        ));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; MAX_HEADER]].concat();
        assert!(matches!(parse(&long, BOTH), Parsed::Invalid(_)));
    }
}
