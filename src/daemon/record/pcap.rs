//! A session as a packet capture: Ethernet, IP and TCP or UDP headers synthesized around
//! each read and write (etherparse builds them, pcap-file writes the pcapng blocks), with the
//! session's real addresses and ports and TCP sequence numbers that grow with the bytes, a
//! handshake at the open and FIN or RST at the close, so that Wireshark's "Follow TCP Stream"
//! shows the conversation.

use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use etherparse::PacketBuilder;
use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use switchboard_handlers::{CloseReason, Proto};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Largest payload of one synthesized packet (an IPv4 packet holds at most 65535 bytes).
const SEGMENT: usize = 60_000;
const WINDOW: u16 = 65_535;

/// Who sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    Peer,
    Daemon,
}

/// The packets of one session.
#[derive(Debug)]
pub(crate) struct Capture {
    proto: Proto,
    peer: SocketAddr,
    local: SocketAddr,
    /// Next sequence numbers: the peer's and the daemon's.
    seq: [u32; 2],
    buf: Vec<u8>,
}

/// The same family for both ends (an IPv4 peer on an IPv6 socket arrives mapped).
fn family(peer: SocketAddr, local: SocketAddr) -> (IpAddr, IpAddr) {
    let (p, l) = (peer.ip().to_canonical(), local.ip().to_canonical());
    match (p, l) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (p, l),
        (IpAddr::V4(a), IpAddr::V6(b)) => (IpAddr::V6(a.to_ipv6_mapped()), IpAddr::V6(b)),
        (IpAddr::V6(a), IpAddr::V4(b)) => (IpAddr::V6(a), IpAddr::V6(b.to_ipv6_mapped())),
    }
}

impl Capture {
    pub(crate) fn new(proto: Proto, peer: SocketAddr, local: SocketAddr, id: u64) -> Capture {
        // Initial sequence numbers: any will do; these differ per session.
        let isn = (id as u32).wrapping_mul(2_654_435_761);
        Capture {
            proto,
            peer,
            local,
            seq: [isn, isn ^ 0x5a5a_5a5a],
            buf: Vec::with_capacity(128),
        }
    }

    /// The section header and the interface: what starts every file.
    pub(crate) fn start<W: Write>(w: W) -> Result<PcapNgWriter<W>, pcap_file::PcapError> {
        let mut pcap = PcapNgWriter::new(w)?;
        let interface = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            // Timestamps in nanoseconds.
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        };
        pcap.write_pcapng_block(interface)?;
        Ok(pcap)
    }

    /// Build one packet into `self.buf`.
    fn packet(&mut self, from: From, flags: &[u8], payload: &[u8]) {
        let (peer_ip, local_ip) = family(self.peer, self.local);
        let ((sip, sport, smac), (dip, dport, dmac)) = match from {
            From::Peer => (
                (peer_ip, self.peer.port(), CLIENT_MAC),
                (local_ip, self.local.port(), SERVER_MAC),
            ),
            From::Daemon => (
                (local_ip, self.local.port(), SERVER_MAC),
                (peer_ip, self.peer.port(), CLIENT_MAC),
            ),
        };
        let eth = PacketBuilder::ethernet2(smac, dmac);
        let ip = match (sip, dip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!("one family, see `family`"),
        };
        self.buf.clear();
        let written = match self.proto {
            Proto::Udp => ip.udp(sport, dport).write(&mut self.buf, payload),
            Proto::Tcp => {
                let (mine, theirs) = match from {
                    From::Peer => (0, 1),
                    From::Daemon => (1, 0),
                };
                let mut tcp = ip.tcp(sport, dport, self.seq[mine], WINDOW);
                let syn = flags.contains(&b'S');
                if !syn || from == From::Daemon {
                    tcp = tcp.ack(self.seq[theirs]);
                }
                for f in flags {
                    tcp = match f {
                        b'S' => tcp.syn(),
                        b'F' => tcp.fin(),
                        b'R' => tcp.rst(),
                        b'P' => tcp.psh(),
                        _ => tcp,
                    };
                }
                let r = tcp.write(&mut self.buf, payload);
                let grows = payload.len() + usize::from(syn) + usize::from(flags.contains(&b'F'));
                self.seq[mine] = self.seq[mine].wrapping_add(grows as u32);
                r
            }
        };
        debug_assert!(written.is_ok(), "{written:?}");
    }

    fn emit<W: Write>(
        &mut self,
        w: &mut PcapNgWriter<W>,
        at: SystemTime,
        from: From,
        flags: &[u8],
        payload: &[u8],
    ) -> Result<usize, pcap_file::PcapError> {
        self.packet(from, flags, payload);
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
            original_len: self.buf.len() as u32,
            data: Cow::Borrowed(&self.buf),
            options: vec![],
        };
        w.write_pcapng_block(block)
    }

    /// The session opened: a TCP handshake (nothing for UDP).
    pub(crate) fn open<W: Write>(
        &mut self,
        w: &mut PcapNgWriter<W>,
        at: SystemTime,
    ) -> Result<usize, pcap_file::PcapError> {
        if self.proto == Proto::Udp {
            return Ok(0);
        }
        Ok(self.emit(w, at, From::Peer, b"S", &[])?
            + self.emit(w, at, From::Daemon, b"S", &[])?
            + self.emit(w, at, From::Peer, b"", &[])?)
    }

    /// One read (`From::Peer`) or write (`From::Daemon`), in segments of at most 60000 bytes.
    pub(crate) fn data<W: Write>(
        &mut self,
        w: &mut PcapNgWriter<W>,
        at: SystemTime,
        from: From,
        bytes: &[u8],
    ) -> Result<usize, pcap_file::PcapError> {
        let mut n = 0;
        for chunk in bytes.chunks(SEGMENT) {
            n += self.emit(w, at, from, b"P", chunk)?;
        }
        Ok(n)
    }

    /// The session ended: FIN both ways, or RST from the side that broke it.
    pub(crate) fn close<W: Write>(
        &mut self,
        w: &mut PcapNgWriter<W>,
        at: SystemTime,
        reason: CloseReason,
    ) -> Result<usize, pcap_file::PcapError> {
        if self.proto == Proto::Udp {
            return Ok(0);
        }
        match reason {
            CloseReason::PeerReset => self.emit(w, at, From::Peer, b"R", &[]),
            CloseReason::Error | CloseReason::WriteTimeout => {
                self.emit(w, at, From::Daemon, b"R", &[])
            }
            CloseReason::PeerClosed => Ok(self.emit(w, at, From::Peer, b"F", &[])?
                + self.emit(w, at, From::Daemon, b"F", &[])?
                + self.emit(w, at, From::Peer, b"", &[])?),
            _ => Ok(self.emit(w, at, From::Daemon, b"F", &[])?
                + self.emit(w, at, From::Peer, b"F", &[])?
                + self.emit(w, at, From::Daemon, b"", &[])?),
        }
    }
}
