//! `describe_holder`: the words after "is already in use" when a bind fails with EADDRINUSE.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use switchboard_handlers::Proto;

use super::owners::{Owners, Process, find_owners};
use super::proc_net::SocketEntry;
use super::read_sockets;

/// Describe who holds `addr` for the protocol (`udp` or TCP), for an error message that says
/// "ADDR is already in use {}", e.g. `by pid 4242 (python3)`,
/// `by pid 4242 (python3) and pid 4250 (nc)` or
/// `by a process this user cannot see (try: sudo switchboard port 8888)`.
///
/// Prefers the listening (TCP) or unconnected (UDP) socket bound to exactly `addr`, then one
/// bound to the wildcard address, then, when `addr` is itself a wildcard, one bound to any
/// address of its family. Reads /proc and never fails or panics: whatever it cannot find out,
/// it says so and names the command that can.
pub fn describe_holder(addr: SocketAddr, udp: bool) -> String {
    describe_holder_in(Path::new("/proc"), addr, udp)
}

fn describe_holder_in(proc_root: &Path, addr: SocketAddr, udp: bool) -> String {
    let proto = if udp { Proto::Udp } else { Proto::Tcp };
    let port = addr.port();
    let sockets = read_sockets(proc_root, &[proto], port).unwrap_or_default();
    let holders = pick_holders(addr, &sockets);
    let wanted: HashSet<u64> = holders
        .iter()
        .map(|s| s.inode)
        .filter(|&i| i != 0)
        .collect();
    let owners = find_owners(proc_root, &wanted, true).unwrap_or_else(|_| Owners {
        partial_view: true,
        ..Owners::default()
    });
    compose(proto, port, &holders, &owners, std::process::id())
}

/// The sockets that most likely made binding `addr` fail, best match first.
pub(crate) fn pick_holders(addr: SocketAddr, sockets: &[SocketEntry]) -> Vec<&SocketEntry> {
    // (not listening, address match) -- lower is better
    let ranked: Vec<((bool, u8), &SocketEntry)> = sockets
        .iter()
        .filter(|s| s.local.port() == addr.port())
        .filter_map(|s| {
            Some((
                (!s.is_listening(), address_match(addr.ip(), s.local.ip())?),
                s,
            ))
        })
        .collect();
    let Some(best) = ranked.iter().map(|(rank, _)| *rank).min() else {
        return Vec::new();
    };
    ranked
        .into_iter()
        .filter(|(rank, _)| *rank == best)
        .map(|(_, s)| s)
        .collect()
}

/// How a socket bound to `held` conflicts with binding `wanted`: 0 same address, 1 the holder
/// is a wildcard covering it, 2 we asked for a wildcard that covers the holder; `None` for no
/// conflict (an IPv4 address and an IPv6 one that is not `::`).
fn address_match(wanted: IpAddr, held: IpAddr) -> Option<u8> {
    let (wanted, held) = (wanted.to_canonical(), held.to_canonical());
    let covers = |wildcard: IpAddr, other: IpAddr| {
        wildcard.is_unspecified() && (wildcard.is_ipv6() || other.is_ipv4())
    };
    if wanted == held {
        Some(0)
    } else if covers(held, wanted) {
        Some(1)
    } else if covers(wanted, held) {
        Some(2)
    } else {
        None
    }
}

/// The description, from what was found; pure so that each case can be tested.
pub(crate) fn compose(
    proto: Proto,
    port: u16,
    holders: &[&SocketEntry],
    owners: &Owners,
    own_pid: u32,
) -> String {
    let flag = match proto {
        Proto::Tcp => "",
        Proto::Udp => " --udp",
    };
    if holders.is_empty() {
        let ss = match proto {
            Proto::Tcp => "-tapn",
            Proto::Udp => "-uapn",
        };
        return format!(
            "by a socket that could not be found in /proc/net (it may have just closed; try: \
             sudo ss {ss} 'sport = :{port}')"
        );
    }
    let mut processes: Vec<&Process> = Vec::new();
    let mut unseen = false;
    let mut ownerless: Vec<&str> = Vec::new();
    for socket in holders {
        match owners.by_inode.get(&socket.inode) {
            Some(ps) => {
                for p in ps {
                    if !processes.iter().any(|q| q.pid == p.pid) {
                        processes.push(p);
                    }
                }
            }
            None if socket.inode != 0 && owners.partial_view => unseen = true,
            None => {
                let state = socket.state_name();
                if !ownerless.contains(&state) {
                    ownerless.push(state);
                }
            }
        }
    }
    let mut parts: Vec<String> = processes
        .iter()
        .map(|p| {
            if p.pid == own_pid {
                format!("pid {} ({}, this process)", p.pid, p.name)
            } else {
                format!("pid {} ({})", p.pid, p.name)
            }
        })
        .collect();
    if unseen {
        parts.push(format!(
            "a process this user cannot see (try: sudo switchboard port {port}{flag})"
        ));
    }
    for state in ownerless {
        parts.push(format!(
            "a socket in state {state} that no process holds open"
        ));
    }
    format!("by {}", join_and(&parts))
}

/// "a", "a and b", "a, b and c".
fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::proc_net::{TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN};
    use super::*;

    fn sock(proto: Proto, local: &str, state: u8, inode: u64) -> SocketEntry {
        SocketEntry {
            proto,
            local: local.parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            state,
            uid: 0,
            inode,
        }
    }

    fn inodes(v: &[&SocketEntry]) -> Vec<u64> {
        v.iter().map(|s| s.inode).collect()
    }

    fn tcp_table() -> Vec<SocketEntry> {
        vec![
            sock(Proto::Tcp, "0.0.0.0:8888", TCP_LISTEN, 1),
            sock(Proto::Tcp, "127.0.0.1:8888", TCP_LISTEN, 2),
            sock(Proto::Tcp, "127.0.0.1:8888", TCP_ESTABLISHED, 3),
            sock(Proto::Tcp, "[::]:8888", TCP_LISTEN, 4),
            sock(Proto::Tcp, "[::1]:8888", TCP_LISTEN, 5),
            sock(Proto::Tcp, "127.0.0.1:9999", TCP_LISTEN, 6),
        ]
    }

    #[test]
    fn exact_address_wins_over_wildcards() {
        let t = tcp_table();
        assert_eq!(
            inodes(&pick_holders("127.0.0.1:8888".parse().unwrap(), &t)),
            [2]
        );
        assert_eq!(
            inodes(&pick_holders("[::1]:8888".parse().unwrap(), &t)),
            [5]
        );
        assert_eq!(
            inodes(&pick_holders("0.0.0.0:8888".parse().unwrap(), &t)),
            [1]
        );
        assert_eq!(inodes(&pick_holders("[::]:8888".parse().unwrap(), &t)), [4]);
        // an IPv4-mapped address is the IPv4 one
        assert_eq!(
            inodes(&pick_holders(
                "[::ffff:127.0.0.1]:8888".parse().unwrap(),
                &t
            )),
            [2]
        );
    }

    #[test]
    fn then_a_wildcard_holder_of_a_compatible_family() {
        let t = [
            sock(Proto::Tcp, "0.0.0.0:8888", TCP_LISTEN, 1),
            sock(Proto::Tcp, "[::]:8888", TCP_LISTEN, 4),
        ];
        assert_eq!(
            inodes(&pick_holders("10.1.2.3:8888".parse().unwrap(), &t)),
            [1, 4]
        );
        assert_eq!(
            inodes(&pick_holders("[fe80::1]:8888".parse().unwrap(), &t)),
            [4]
        );
    }

    #[test]
    fn then_any_holder_a_wildcard_bind_would_cover() {
        let t = [
            sock(Proto::Tcp, "127.0.0.1:8888", TCP_LISTEN, 2),
            sock(Proto::Tcp, "[::1]:8888", TCP_LISTEN, 5),
        ];
        assert_eq!(
            inodes(&pick_holders("0.0.0.0:8888".parse().unwrap(), &t)),
            [2]
        );
        assert_eq!(
            inodes(&pick_holders("[::]:8888".parse().unwrap(), &t)),
            [2, 5]
        );
        assert!(pick_holders("10.0.0.1:8888".parse().unwrap(), &t).is_empty());
    }

    #[test]
    fn listeners_win_over_connections_and_connections_still_count() {
        let t = tcp_table();
        let established = [t[2].clone()];
        assert_eq!(
            inodes(&pick_holders(
                "127.0.0.1:8888".parse().unwrap(),
                &established
            )),
            [3]
        );
        let udp = [
            sock(Proto::Udp, "127.0.0.1:5353", TCP_ESTABLISHED, 7),
            sock(Proto::Udp, "0.0.0.0:5353", TCP_CLOSE, 8),
        ];
        assert_eq!(
            inodes(&pick_holders("127.0.0.1:5353".parse().unwrap(), &udp)),
            [8]
        );
    }

    fn owners(pairs: &[(u64, u32, &str)], partial_view: bool) -> Owners {
        let mut o = Owners {
            partial_view,
            ..Owners::default()
        };
        for &(inode, pid, name) in pairs {
            o.by_inode.entry(inode).or_default().push(Process {
                pid,
                name: name.to_owned(),
            });
        }
        o
    }

    #[test]
    fn one_two_and_three_holders_read_as_a_sentence() {
        let a = sock(Proto::Tcp, "0.0.0.0:8888", TCP_LISTEN, 1);
        let b = sock(Proto::Tcp, "[::]:8888", TCP_LISTEN, 2);
        let one = owners(&[(1, 4242, "python3")], false);
        assert_eq!(
            compose(Proto::Tcp, 8888, &[&a], &one, 1),
            "by pid 4242 (python3)"
        );
        let two = owners(&[(1, 4242, "python3"), (2, 4250, "nc")], false);
        assert_eq!(
            compose(Proto::Tcp, 8888, &[&a, &b], &two, 1),
            "by pid 4242 (python3) and pid 4250 (nc)"
        );
        let shared = owners(
            &[
                (1, 7, "nginx"),
                (1, 8, "nginx"),
                (2, 7, "nginx"),
                (2, 9, "x"),
            ],
            false,
        );
        assert_eq!(
            compose(Proto::Tcp, 8888, &[&a, &b], &shared, 1),
            "by pid 7 (nginx), pid 8 (nginx) and pid 9 (x)"
        );
        assert_eq!(
            compose(Proto::Tcp, 8888, &[&a], &one, 4242),
            "by pid 4242 (python3, this process)"
        );
    }

    #[test]
    fn an_invisible_owner_is_named_with_the_command_that_can_see_it() {
        let a = sock(Proto::Tcp, "0.0.0.0:8888", TCP_LISTEN, 1);
        let b = sock(Proto::Tcp, "[::]:8888", TCP_LISTEN, 2);
        let none = owners(&[], true);
        assert_eq!(
            compose(Proto::Tcp, 8888, &[&a], &none, 1),
            "by a process this user cannot see (try: sudo switchboard port 8888)"
        );
        let u = sock(Proto::Udp, "0.0.0.0:8888", TCP_CLOSE, 1);
        assert_eq!(
            compose(Proto::Udp, 8888, &[&u], &none, 1),
            "by a process this user cannot see (try: sudo switchboard port 8888 --udp)"
        );
        let half = owners(&[(1, 4242, "python3")], true);
        assert_eq!(
            compose(Proto::Tcp, 8888, &[&a, &b], &half, 1),
            "by pid 4242 (python3) and a process this user cannot see \
             (try: sudo switchboard port 8888)"
        );
    }

    #[test]
    fn sockets_without_a_process_and_vanished_sockets_are_said_so() {
        let tw = sock(Proto::Tcp, "127.0.0.1:8888", 0x06, 0);
        assert_eq!(
            compose(Proto::Tcp, 8888, &[&tw], &owners(&[], true), 1),
            "by a socket in state TIME_WAIT that no process holds open"
        );
        assert_eq!(
            compose(Proto::Tcp, 8888, &[], &owners(&[], false), 1),
            "by a socket that could not be found in /proc/net (it may have just closed; \
             try: sudo ss -tapn 'sport = :8888')"
        );
    }

    #[test]
    fn a_missing_proc_is_no_panic() {
        let text = describe_holder_in(
            Path::new("/nonexistent"),
            "127.0.0.1:1".parse().unwrap(),
            false,
        );
        assert!(
            text.starts_with("by a socket that could not be found"),
            "{text}"
        );
    }
}
