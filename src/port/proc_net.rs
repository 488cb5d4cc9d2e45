//! The socket tables of /proc/net/{tcp,tcp6,udp,udp6}, read with procfs, and how
//! `switchboard port` names their states and addresses.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use procfs::net::{TcpNetEntries, TcpNetEntry, UdpNetEntries, UdpNetEntry};
use procfs::{FromReadSI, ProcError, ProcResult};
use switchboard_handlers::Proto;

/// The two tables (IPv4, IPv6) that hold `proto`'s sockets, under `proc_root`.
pub(crate) fn tables(proto: Proto, proc_root: &Path) -> [PathBuf; 2] {
    let name = proto.as_str();
    [
        proc_root.join("net").join(name),
        proc_root.join("net").join(format!("{name}6")),
    ]
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

impl From<TcpNetEntry> for SocketEntry {
    fn from(e: TcpNetEntry) -> SocketEntry {
        SocketEntry {
            proto: Proto::Tcp,
            local: e.local_address,
            remote: e.remote_address,
            state: e.state.to_u8(),
            uid: e.uid,
            inode: e.inode,
        }
    }
}

impl From<UdpNetEntry> for SocketEntry {
    fn from(e: UdpNetEntry) -> SocketEntry {
        SocketEntry {
            proto: Proto::Udp,
            local: e.local_address,
            remote: e.remote_address,
            state: e.state.to_u8(),
            uid: e.uid,
            inode: e.inode,
        }
    }
}

/// Parse a whole table as the kernel writes it (header line first).
pub(crate) fn parse_table(proto: Proto, text: &[u8]) -> ProcResult<Vec<SocketEntry>> {
    let system = procfs::current_system_info();
    Ok(match proto {
        Proto::Tcp => TcpNetEntries::from_read(text, system)?
            .0
            .into_iter()
            .map(SocketEntry::from)
            .collect(),
        Proto::Udp => UdpNetEntries::from_read(text, system)?
            .0
            .into_iter()
            .map(SocketEntry::from)
            .collect(),
    })
}

/// Read one table. A missing table (IPv6 disabled, no /proc) is an empty one.
pub(crate) fn read_table(proto: Proto, path: &Path) -> ProcResult<Vec<SocketEntry>> {
    match std::fs::read(path) {
        Ok(text) => parse_table(proto, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ProcError::Io(e, Some(path.to_owned()))),
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
    fn ipv4_lines_give_entries_with_state_uid_and_inode() {
        let v = parse_table(Proto::Tcp, TCP.as_bytes()).unwrap();
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
        let v = parse_table(Proto::Tcp, TCP6.as_bytes()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].local, addr("[::1]:8443"));
        assert_eq!(v[1].local, addr("[::]:8080"));
        assert_eq!((v[1].uid, v[1].inode), (33, 777));

        let v = parse_table(Proto::Udp, UDP6.as_bytes()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].proto, Proto::Udp);
        assert_eq!(v[0].local, addr("[::ffff:127.0.0.1]:54407"));
        assert_eq!(v[0].remote, addr("[::ffff:127.0.0.1]:6354"));
        assert_eq!(v[0].state_name(), "ESTAB");
        assert_eq!(v[1].local, addr("[::]:6353"));
        assert_eq!(v[1].state_name(), "UNCONN");
        assert!(v[1].is_listening());
    }

    #[test]
    fn a_malformed_table_is_an_error_not_a_panic() {
        let header = TCP.lines().next().unwrap();
        for line in [
            "0: 0100007F",
            "0: 0100007F:1F90 00000000:0000",
            "0: +100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 x 0 1",
            "0: 0100007F:10000 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 010000é:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 0000000é00000000000000000100000:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 0100007F:1F90 00000000:0000 42 0:0 0:0 0 0 0 1",
        ] {
            let table = format!("{header}\n{line}\n");
            assert!(
                parse_table(Proto::Tcp, table.as_bytes()).is_err(),
                "{line:?}"
            );
        }
        assert!(
            parse_table(Proto::Tcp, format!("{header}\n").as_bytes())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_missing_table_is_empty_and_the_real_ones_read() {
        let none = read_table(Proto::Tcp, Path::new("/nonexistent/net/tcp")).unwrap();
        assert!(none.is_empty());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let [v4, _] = tables(Proto::Tcp, Path::new("/proc"));
        let table = read_table(Proto::Tcp, &v4).unwrap();
        assert!(
            table
                .iter()
                .any(|s| s.local == local && s.is_listening() && s.inode != 0),
            "{local} not in {table:#?}"
        );
    }

    #[test]
    fn unknown_states_have_a_name_too() {
        let mut e = SocketEntry {
            proto: Proto::Udp,
            local: addr("0.0.0.0:53"),
            remote: addr("0.0.0.0:0"),
            state: TCP_LISTEN,
            uid: 0,
            inode: 1,
        };
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
