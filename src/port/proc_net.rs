//! The socket tables of /proc/net/{tcp,tcp6,udp,udp6}: pure parsing plus a thin reader.
//!
//! A line looks like
//! `   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000  0 12345 ...`
//! (slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode). Addresses are
//! the kernel's `__be32` words printed with `%08X` as if they were host-order integers, so the
//! bytes come back with `to_ne_bytes`: an IPv4 address is one such word, an IPv6 address four.
//! Ports are printed after `ntohs`, so they are plain hexadecimal numbers.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Transport protocol of a socket table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// The two tables (IPv4, IPv6) that hold this protocol's sockets, under `proc_root`.
    pub(crate) fn tables(self, proc_root: &Path) -> [PathBuf; 2] {
        let name = self.as_str();
        [
            proc_root.join("net").join(name),
            proc_root.join("net").join(format!("{name}6")),
        ]
    }
}

/// One socket as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketEntry {
    pub(crate) proto: Proto,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    /// The kernel's `TCP_*` state number (UDP reuses 1 for connected and 7 for unconnected).
    pub(crate) state: u8,
    /// Owner of the socket (the uid that created it), known even when its process is not.
    pub(crate) uid: u32,
    /// 0 for sockets no file descriptor refers to (TIME_WAIT, SYN_RECV, ...).
    pub(crate) inode: u64,
}

/// Kernel TCP state numbers (include/net/tcp_states.h) that the code refers to by name.
pub(crate) const TCP_ESTABLISHED: u8 = 0x01;
pub(crate) const TCP_CLOSE: u8 = 0x07;
pub(crate) const TCP_LISTEN: u8 = 0x0A;

impl SocketEntry {
    /// The state as netstat names it for TCP, and as ss names it for UDP (which has only
    /// "connected" and "not connected").
    pub(crate) fn state_name(&self) -> &'static str {
        match (self.proto, self.state) {
            (Proto::Udp, TCP_ESTABLISHED) => "ESTAB",
            (Proto::Udp, TCP_CLOSE) => "UNCONN",
            (Proto::Udp, _) => "UNKNOWN",
            (Proto::Tcp, s) => match s {
                TCP_ESTABLISHED => "ESTABLISHED",
                0x02 => "SYN_SENT",
                0x03 => "SYN_RECV",
                0x04 => "FIN_WAIT1",
                0x05 => "FIN_WAIT2",
                0x06 => "TIME_WAIT",
                TCP_CLOSE => "CLOSE",
                0x08 => "CLOSE_WAIT",
                0x09 => "LAST_ACK",
                TCP_LISTEN => "LISTEN",
                0x0B => "CLOSING",
                0x0C => "NEW_SYN_RECV",
                _ => "UNKNOWN",
            },
        }
    }

    /// Whether the socket is waiting for peers (a TCP listener or any unconnected UDP socket):
    /// the kind of socket that makes a server's bind() fail.
    pub(crate) fn is_listening(&self) -> bool {
        match self.proto {
            Proto::Tcp => self.state == TCP_LISTEN,
            Proto::Udp => self.state == TCP_CLOSE,
        }
    }
}

/// Parse a whole table, skipping the header and any line that does not parse.
pub(crate) fn parse_table(proto: Proto, text: &str) -> Vec<SocketEntry> {
    text.lines().filter_map(|l| parse_line(proto, l)).collect()
}

/// Parse one line of a table; `None` for the header and for anything malformed.
pub(crate) fn parse_line(proto: Proto, line: &str) -> Option<SocketEntry> {
    let mut fields = line.split_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') {
        return None; // the header ("sl local_address ...") and garbage
    }
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt
    let mut fields = fields.skip(3);
    let uid = fields.next()?.parse().ok()?;
    let _timeout = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    Some(SocketEntry {
        proto,
        local,
        remote,
        state,
        uid,
        inode,
    })
}

/// `0100007F:1F90` -> 127.0.0.1:8080; 32 hex digits before the colon for IPv6.
fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(hex_word(addr)?)),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&hex_word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Eight hex digits printed from a network-order word read as a host integer -> its bytes.
fn hex_word(s: &str) -> Option<[u8; 4]> {
    // from_str_radix accepts a leading '+', which is not hex: insist on digits only.
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(u32::from_str_radix(s, 16).ok()?.to_ne_bytes())
}

/// Read one table. A missing table (IPv6 disabled, no /proc) is an empty one.
pub(crate) fn read_table(proto: Proto, path: &Path) -> io::Result<Vec<SocketEntry>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_table(proto, &text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// An address as ss prints it, with `*` for the unset port of an unconnected peer.
pub(crate) struct DisplayAddr(pub(crate) SocketAddr);

impl fmt::Display for DisplayAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.ip(), self.0.port()) {
            (IpAddr::V4(ip), 0) => write!(f, "{ip}:*"),
            (IpAddr::V6(ip), 0) => write!(f, "[{ip}]:*"),
            (_, _) => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 12346 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:C351 06 00000000:00000000 03:00000F9C 00000000     0        0 0 3 0000000000000000
this is not a socket
   3: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   4: 0100007F:1F90 00000000:0000 0A 00000000:00000000
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:20FB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11215 1 000000005dd6a14a 100 0 0 10 0
   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 777 1 000000005dd6a14a 100 0 0 10 0
";

    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
13601: 0000000000000000FFFF00000100007F:D487 0000000000000000FFFF00000100007F:18D2 01 00000000:00000000 00:00000000 00000000     0        0 11217 2 0000000098e619ab 0
14699: 00000000000000000000000000000000:18D1 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 11216 2 0000000077a03adc 0
";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    // The samples were taken on x86-64; the words of a big-endian kernel print the other way.
    #[cfg(target_endian = "little")]
    #[test]
    fn ipv4_lines_parse_and_header_and_garbage_are_skipped() {
        let v = parse_table(Proto::Tcp, TCP);
        assert_eq!(v.len(), 3, "{v:#?}");
        assert_eq!(
            v[0],
            SocketEntry {
                proto: Proto::Tcp,
                local: addr("127.0.0.1:8080"),
                remote: addr("0.0.0.0:0"),
                state: TCP_LISTEN,
                uid: 1000,
                inode: 12345,
            }
        );
        assert_eq!(v[0].state_name(), "LISTEN");
        assert!(v[0].is_listening());
        assert_eq!(v[1].remote, addr("127.0.0.1:50000"));
        assert_eq!(v[1].state_name(), "ESTABLISHED");
        assert!(!v[1].is_listening());
        assert_eq!((v[2].state_name(), v[2].inode), ("TIME_WAIT", 0));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv6_addresses_are_four_host_order_words() {
        let v = parse_table(Proto::Tcp, TCP6);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].local, addr("[::1]:8443"));
        assert_eq!(v[1].local, addr("[::]:8080"));
        assert_eq!((v[1].uid, v[1].inode), (33, 777));

        let v = parse_table(Proto::Udp, UDP6);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].local, addr("[::ffff:127.0.0.1]:54407"));
        assert_eq!(v[0].remote, addr("[::ffff:127.0.0.1]:6354"));
        assert_eq!(v[0].state_name(), "ESTAB");
        assert_eq!(v[1].local, addr("[::]:6353"));
        assert_eq!(v[1].state_name(), "UNCONN");
        assert!(v[1].is_listening());
    }

    #[test]
    fn malformed_lines_give_none_without_panicking() {
        for line in [
            "",
            ":",
            "0:",
            "  sl  local_address rem_address   st",
            "0: 0100007F",
            "0: 0100007F:1F90",
            "0: 0100007F:1F90 00000000:0000",
            "0: 0100007F:1F90 00000000:0000 0A",
            "0: +100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 x 0 1",
            "0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 -1",
            "0: 0100007F:10000 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 0100007F1:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            // 32 bytes, but the 8-digit words would split the 'é'
            "0: 0000000é00000000000000000100000:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 010000é:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 0100007F:1F90 00000000:0000 1FF 0:0 0:0 0 0 0 1",
        ] {
            assert_eq!(parse_line(Proto::Tcp, line), None, "{line:?}");
        }
        assert!(
            parse_line(
                Proto::Tcp,
                "0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1"
            )
            .is_some()
        );
    }

    #[test]
    fn unknown_states_have_a_name_too() {
        let mut e = parse_line(
            Proto::Udp,
            "0: 00000000:0035 00000000:0000 0A 0:0 0:0 0 0 0 1",
        )
        .unwrap();
        assert_eq!(e.state_name(), "UNKNOWN");
        e.proto = Proto::Tcp;
        e.state = 0x42;
        assert_eq!(e.state_name(), "UNKNOWN");
    }

    #[test]
    fn unconnected_peers_print_with_a_star() {
        assert_eq!(DisplayAddr(addr("0.0.0.0:0")).to_string(), "0.0.0.0:*");
        assert_eq!(DisplayAddr(addr("[::]:0")).to_string(), "[::]:*");
        assert_eq!(DisplayAddr(addr("[::1]:80")).to_string(), "[::1]:80");
    }
}
