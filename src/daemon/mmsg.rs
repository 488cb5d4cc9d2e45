//! Datagrams in batches: received with one `recvmmsg(2)` call, sent with one `sendmmsg(2)`.
//!
//! Besides taking several datagrams per system call when peers are busy, a receive batch that
//! comes back short of its size means the socket's queue is empty: the next datagram brings a
//! new edge, so the loop need not make the extra `recvfrom` that would only say `EAGAIN`.
//!
//! Sending goes through rustix, which wraps `sendmmsg` safely. rustix has no `recvmmsg` yet,
//! so receiving is the one `unsafe` call here, over buffers this module owns.

use std::io::{self, IoSlice};
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsFd, RawFd};

use rustix::net::addr::SocketAddrArg;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

/// Datagrams taken per call.
pub(super) const BATCH: usize = 16;
/// The room for a sender's address that a header offers the kernel.
const NAME_LEN: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
/// Room for the largest UDP payload (65,507 bytes over IPv4), plus one byte to see truncation.
const SLOT: usize = 65_536;

/// Buffers and headers for one `recvmmsg` call, allocated once and reused.
pub(super) struct Batch {
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    received: usize,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Default for Batch {
    fn default() -> Batch {
        let mut b = Batch {
            data: vec![0; BATCH * SLOT],
            // SAFETY: sockaddr_storage is plain old data; all zero bytes is a valid value.
            addrs: vec![unsafe { zeroed() }; BATCH],
            iovecs: Vec::with_capacity(BATCH),
            headers: Vec::with_capacity(BATCH),
            received: 0,
        };
        for chunk in b.data.chunks_mut(SLOT) {
            b.iovecs.push(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
        }
        // The headers point into the three vectors' heap buffers, which never grow past the
        // capacity they were made with, so the pointers stay valid when the Batch moves.
        for (addr, iov) in b.addrs.iter_mut().zip(b.iovecs.iter_mut()) {
            // SAFETY: msghdr is plain old data; zero is valid for every field.
            let mut hdr: libc::msghdr = unsafe { zeroed() };
            hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = NAME_LEN;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            b.headers.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        b
    }
}

impl Batch {
    /// Receive up to [`BATCH`] datagrams from the non-blocking socket `fd`; returns how many.
    pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // The kernel rewrites the address length (and the flags) of each header it fills,
        // the first `received` of the last call; the rest of a header stays as it was made.
        for h in &mut self.headers[..self.received] {
            h.msg_hdr.msg_namelen = NAME_LEN;
        }
        // The system call itself, not glibc's `recvmmsg`: that wrapper is a thread
        // cancellation point and brackets every call with two more library calls (some 60
        // instructions per datagram of one peer), and nothing here uses cancellation.
        // SAFETY: `headers` holds BATCH valid mmsghdr entries whose name and iovec pointers
        // point into `addrs`, `iovecs` and `data`, which are owned by `self`, sized as
        // declared, and neither moved nor read while the call runs. MSG_DONTWAIT keeps it
        // from blocking. The arguments are those of recvmmsg(2), widened to `long`.
        let n = unsafe {
            libc::syscall(
                libc::SYS_recvmmsg,
                libc::c_long::from(fd),
                self.headers.as_mut_ptr(),
                BATCH as libc::c_long,
                libc::c_long::from(libc::MSG_DONTWAIT),
                std::ptr::null_mut::<libc::timespec>(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last call: its bytes (cut to the slot when it was larger, which
    /// `truncated` tells) and its sender.
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, bool)> {
        if i >= self.received {
            return None;
        }
        let h = &self.headers[i];
        let len = (h.msg_len as usize).min(SLOT);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let peer = to_socket_addr(&self.addrs[i], h.msg_hdr.msg_namelen)?;
        Some((&self.data[i * SLOT..i * SLOT + len], peer, truncated))
    }
}

/// Most datagrams handed to one `sendmmsg` call.
pub(super) const SEND_BATCH: usize = 64;

/// Send `msgs` (destination, bytes) in order with as few `sendmmsg` calls as it takes, up to
/// [`SEND_BATCH`] at once. Returns how many went; stops at the first error, which is returned
/// when nothing went (`WouldBlock` when the send buffer is full).
pub(super) fn send(socket: impl AsFd, msgs: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    if let [(peer, msg)] = msgs {
        // One datagram (a reply to one peer, the common case): sendto, without the four
        // vectors that a batch needs.
        return loop {
            match rustix::net::sendto(&socket, msg, SendFlags::DONTWAIT, peer) {
                Ok(_) => break Ok(1),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => break Err(e.into()),
            }
        };
    }
    let msgs = &msgs[..msgs.len().min(SEND_BATCH)];
    let addrs: Vec<SocketAddrAny> = msgs.iter().map(|(a, _)| a.as_any()).collect();
    let iovs: Vec<[IoSlice<'_>; 1]> = msgs.iter().map(|(_, m)| [IoSlice::new(m)]).collect();
    let mut control: Vec<SendAncillaryBuffer<'_, '_, '_>> = msgs
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut headers: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(control.iter_mut())
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    loop {
        match rustix::net::sendmmsg(&socket, &mut headers, SendFlags::DONTWAIT) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The sender's address as the kernel wrote it, read by socket2 (IPv4 or IPv6).
fn to_socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: `SockAddrStorage` wraps a `sockaddr_storage`, so viewing it as one fits; `len`
    // is the length recvmmsg reported for the address it wrote into `s`.
    let addr = unsafe {
        *storage.view_as::<libc::sockaddr_storage>() = *s;
        socket2::SockAddr::new(storage, len)
    };
    addr.as_socket()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_queued_datagrams_in_one_call_with_their_senders() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        a.send_to(b"one", to).unwrap();
        b.send_to(b"", to).unwrap();
        a.send_to(&[7u8; 3000], to).unwrap();
        let mut batch = Batch::default();
        let mut got = Vec::new();
        // Loopback delivery is synchronous, but read until all three arrived to be safe.
        while got.len() < 3 {
            match batch.recv(server.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (d, peer, trunc) = batch.get(i).unwrap();
                        got.push((d.to_vec(), peer, trunc));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got[0], (b"one".to_vec(), a.local_addr().unwrap(), false));
        assert_eq!(got[1], (Vec::new(), b.local_addr().unwrap(), false));
        assert_eq!(got[2].0.len(), 3000);
        assert!(batch.get(3).is_none());
        assert_eq!(
            batch.recv(server.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn sends_a_batch_to_several_peers_in_one_call() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let sent = send(&server, &[(pa, b"one"), (pb, b""), (pa, b"two")]).unwrap();
        assert_eq!(sent, 3);
        let mut buf = [0; 16];
        let from = server.local_addr().unwrap();
        assert_eq!(a.recv_from(&mut buf).unwrap(), (3, from));
        assert_eq!(&buf[..3], b"one");
        assert_eq!(b.recv_from(&mut buf).unwrap(), (0, from));
        assert_eq!(a.recv_from(&mut buf).unwrap(), (3, from));
        assert_eq!(&buf[..3], b"two");
    }

    #[test]
    fn sends_one_datagram_alone_and_batches_again_after_it() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let pa = a.local_addr().unwrap();
        assert_eq!(send(&server, &[(pa, b"solo")]).unwrap(), 1);
        assert_eq!(send(&server, &[(pa, b"x"), (pa, b"yz")]).unwrap(), 2);
        let mut buf = [0; 16];
        let from = server.local_addr().unwrap();
        assert_eq!(a.recv_from(&mut buf).unwrap(), (4, from));
        assert_eq!(&buf[..4], b"solo");
        assert_eq!(a.recv_from(&mut buf).unwrap(), (1, from));
        assert_eq!(a.recv_from(&mut buf).unwrap(), (2, from));
    }

    #[test]
    fn a_batch_moved_and_reused_reads_each_call_s_datagrams_and_senders() {
        // The headers made once point into the batch's heap buffers: moving the batch (into
        // a box here, as the loop keeps it) must not leave them pointing at the old place.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        let peers: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut batch = Box::new(Batch::default());
        for (i, p) in peers.iter().enumerate() {
            p.send_to(&[b'a' + i as u8; 5][..=i], to).unwrap();
            while batch.recv(server.as_raw_fd()).map_or(true, |n| n == 0) {
                std::thread::yield_now();
            }
            let (data, peer, truncated) = batch.get(0).unwrap();
            assert_eq!(data, &[b'a' + i as u8; 5][..=i]);
            assert_eq!((peer, truncated), (p.local_addr().unwrap(), false));
        }
    }

    #[test]
    fn ipv6_senders_are_decoded() {
        let Ok(server) = UdpSocket::bind("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback");
            return;
        };
        let c = UdpSocket::bind("[::1]:0").unwrap();
        c.send_to(b"v6", server.local_addr().unwrap()).unwrap();
        let mut batch = Batch::default();
        let n = loop {
            match batch.recv(server.as_raw_fd()) {
                Ok(n) => break n,
                Err(_) => std::thread::yield_now(),
            }
        };
        assert_eq!(n, 1);
        let (d, peer, _) = batch.get(0).unwrap();
        assert_eq!((d, peer), (&b"v6"[..], c.local_addr().unwrap()));
    }
}
