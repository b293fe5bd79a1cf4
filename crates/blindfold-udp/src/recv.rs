//! [`RecvBatch`]: one `recvmmsg` into preallocated buffers, and the [`Datagram`] view of
//! each entry (bytes, source, the local address it was sent to, GRO segment size).

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::ptr;

use crate::addr::{empty_iovecs, storage_to_addr, zeroed_mmsghdrs, zeroed_storages};
use crate::cmsg::{self, CMSG_BUF, CmsgBuf, RecvInfo};
use crate::{MAX_BATCH, syscall};

/// Size of each receive buffer of a plain batch. Media datagrams stay under the path MTU
/// (~1200-1500 bytes), so anything larger is not ours; the kernel truncates it and
/// [`RecvBatch::get`] reports it as truncated so the caller can drop and count it.
pub const MAX_DATAGRAM: usize = 2048;

/// Size of each receive buffer of a GRO batch ([`RecvBatch::with_gro`]): a coalesced
/// buffer can hold up to the largest UDP payload (65,507 bytes), and one that does not
/// fit is truncated and loses every segment past the buffer.
pub const MAX_GRO_DATAGRAM: usize = 1 << 16;

/// One received entry of a [`RecvBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The received bytes: one datagram, or with GRO several segments back to back.
    pub bytes: &'a [u8],
    /// Where it came from. A family other than IPv4/IPv6 (never produced for UDP
    /// sockets) reads as `0.0.0.0:0`, which is never latched and cannot be sent to.
    pub src: SocketAddr,
    /// The local address it was sent to, when the socket has packet info on
    /// ([`crate::enable_pktinfo`]) and the address is one a reply can come from.
    pub dst_ip: Option<IpAddr>,
    /// Length of every segment but the last (which may be shorter): the GRO segment size
    /// of a coalesced buffer, `bytes.len()` otherwise.
    pub segment_size: usize,
    /// The kernel cut the entry to the buffer's size (`MSG_TRUNC`).
    pub truncated: bool,
}

impl<'a> Datagram<'a> {
    /// Number of datagrams in this entry (at least 1: an empty datagram is one).
    pub fn segment_count(&self) -> usize {
        if self.bytes.is_empty() {
            1
        } else {
            self.bytes.len().div_ceil(self.segment_size)
        }
    }

    /// True when the kernel coalesced several datagrams into this entry.
    pub fn is_coalesced(&self) -> bool {
        self.bytes.len() > self.segment_size
    }

    /// The datagrams of this entry, in arrival order.
    pub fn segments(&self) -> Segments<'a> {
        Segments {
            rest: Some(self.bytes),
            size: self.segment_size.max(1),
        }
    }
}

/// The datagrams of one [`Datagram`] entry ([`Datagram::segments`]).
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    rest: Option<&'a [u8]>,
    size: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        if rest.len() <= self.size {
            self.rest = None;
            Some(rest)
        } else {
            let (seg, tail) = rest.split_at(self.size);
            self.rest = Some(tail);
            Some(seg)
        }
    }
}

/// A preallocated `recvmmsg` batch: `capacity` buffers with their `mmsghdr`, `iovec`,
/// `sockaddr_storage` and control arrays. Nothing is allocated after construction.
pub struct RecvBatch {
    /// `capacity` buffers of `slot` bytes each, back to back.
    bufs: Box<[u8]>,
    slot: usize,
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    ctrls: Box<[CmsgBuf]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// What each filled entry's control messages said, decoded right after the call.
    info: Box<[RecvInfo]>,
    /// How many entries the last receive filled.
    filled: usize,
}

// SAFETY: the raw pointers inside `iovecs` and `hdrs` only ever point into the heap
// allocations owned by this same struct (they are rewritten before every syscall), so
// moving the struct to another thread moves everything they refer to along with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// A batch of `batch` datagrams of at most [`MAX_DATAGRAM`] bytes, clamped to
    /// `1..=1024` (the kernel's `UIO_MAXIOV`).
    pub fn new(batch: usize) -> Self {
        Self::with_slot(batch, MAX_DATAGRAM)
    }

    /// A batch whose buffers can take a GRO-coalesced burst ([`MAX_GRO_DATAGRAM`] bytes
    /// each), for a socket with [`crate::enable_gro`] on. The memory is reserved, not
    /// touched: a buffer's pages are only faulted in as far as datagrams fill it.
    pub fn with_gro(batch: usize) -> Self {
        Self::with_slot(batch, MAX_GRO_DATAGRAM)
    }

    fn with_slot(batch: usize, slot: usize) -> Self {
        let n = batch.clamp(1, MAX_BATCH);
        Self {
            bufs: vec![0u8; n * slot].into_boxed_slice(),
            slot,
            iovecs: empty_iovecs(n),
            addrs: zeroed_storages(n),
            ctrls: vec![CmsgBuf::ZERO; n].into_boxed_slice(),
            hdrs: zeroed_mmsghdrs(n),
            info: vec![RecvInfo::default(); n].into_boxed_slice(),
            filled: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Size of each buffer ([`MAX_DATAGRAM`] or [`MAX_GRO_DATAGRAM`]).
    pub fn buffer_size(&self) -> usize {
        self.slot
    }

    /// One `recvmmsg(MSG_DONTWAIT)` call: `Ok(n)` with `1 <= n <= capacity` entries,
    /// `Err(WouldBlock)` when none is queued. Fewer than `capacity` means the queue was
    /// empty when the kernel looked, which an edge-triggered caller may take as drained.
    pub fn recv(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        self.recv_flags(fd, libc::MSG_DONTWAIT)
    }

    /// One `recvmmsg(MSG_WAITFORONE)` call: on a blocking socket it sleeps until one
    /// datagram arrives, then takes whatever else is queued without waiting. Only for a
    /// dedicated thread (the ceiling's minimal loop); give the socket a read timeout so
    /// the thread can notice a stop request.
    pub fn recv_wait(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        self.recv_flags(fd, libc::MSG_WAITFORONE)
    }

    fn recv_flags(&mut self, fd: &impl AsRawFd, flags: libc::c_int) -> io::Result<usize> {
        self.filled = 0;
        // The kernel overwrites msg_namelen, msg_controllen, msg_flags and msg_len, so
        // every field is reset each call rather than trusted from the previous one, and
        // the pointers are taken afresh from the buffers they point into.
        let slot = self.slot;
        for ((((hdr, iov), buf), addr), ctrl) in self
            .hdrs
            .iter_mut()
            .zip(self.iovecs.iter_mut())
            .zip(self.bufs.chunks_exact_mut(slot))
            .zip(self.addrs.iter_mut())
            .zip(self.ctrls.iter_mut())
        {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = slot;
            hdr.msg_hdr.msg_name = ptr::from_mut(addr).cast();
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = ctrl.0.as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = CMSG_BUF as _;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: `hdrs` has `capacity()` entries, each pointing at one iovec of `slot`
        // writable bytes, at a sockaddr_storage whose size is in msg_namelen and at a
        // CMSG_BUF-byte control buffer aligned for cmsghdr; all of them are owned by
        // `self`, borrowed mutably for the call, and the kernel writes no further than
        // these lengths.
        let n = syscall(unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                flags as _,
                ptr::null_mut(),
            )
        })?;
        if n == 0 {
            // Not produced for datagram sockets with vlen >= 1; keep the contract.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.filled = n.min(self.hdrs.len());
        for ((info, hdr), ctrl) in self
            .info
            .iter_mut()
            .zip(self.hdrs.iter())
            .zip(self.ctrls.iter())
            .take(self.filled)
        {
            #[allow(
                clippy::unnecessary_cast,
                reason = "size_t on glibc, socklen_t on musl"
            )]
            let len = (hdr.msg_hdr.msg_controllen as usize).min(CMSG_BUF);
            *info = if len == 0 {
                RecvInfo::default()
            } else {
                cmsg::decode_recv(&ctrl.0[..len])
            };
        }
        Ok(self.filled)
    }

    /// How many entries the last receive returned (0 after an error).
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The bytes of entry `i` alone (what [`RecvBatch::get`] returns as `bytes`, without
    /// decoding the source).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    #[inline]
    pub fn bytes(&self, i: usize) -> &[u8] {
        assert!(
            i < self.filled,
            "RecvBatch::bytes({i}) beyond {}",
            self.filled
        );
        let len = (self.hdrs[i].msg_len as usize).min(self.slot);
        &self.bufs[i * self.slot..i * self.slot + len]
    }

    /// Entry `i` of the last receive.
    ///
    /// # Panics
    /// If `i >= self.len()`: indices come from the caller's loop, not from the network.
    pub fn get(&self, i: usize) -> Datagram<'_> {
        assert!(
            i < self.filled,
            "RecvBatch::get({i}) beyond {}",
            self.filled
        );
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(self.slot);
        let info = self.info[i];
        let bytes = &self.bufs[i * self.slot..i * self.slot + len];
        debug_assert_eq!(bytes, self.bytes(i));
        Datagram {
            bytes,
            src: storage_to_addr(&self.addrs[i])
                .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))),
            dst_ip: info.dst_ip,
            segment_size: info.segment_size.map_or(len, |s| s.min(len)).max(1),
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sock::{bind_media_socket, enable_gro, enable_pktinfo, gso_supported};
    use crate::test_util::{loopback_v4, recv_at_least};
    use crate::{SendBatch, Transmit};
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn recv_batch_reports_sources_and_lengths() {
        let rx = loopback_v4();
        let rx_addr = rx.local_addr().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sent = Vec::new();
        for i in 0..6u8 {
            let from = if i % 2 == 0 { &a } else { &b };
            let payload = vec![i; 10 + usize::from(i) * 100];
            from.send_to(&payload, rx_addr).unwrap();
            sent.push((payload, from.local_addr().unwrap()));
        }
        let mut batch = RecvBatch::new(4);
        let got = recv_at_least(&mut batch, &rx, 6);
        assert_eq!(got.len(), 6);
        for (g, (payload, from)) in got.iter().zip(&sent) {
            assert_eq!(&g.bytes, payload);
            assert_eq!(g.src, *from);
            assert!(!g.truncated);
            assert_eq!(g.segment_size, payload.len(), "not coalesced");
            assert_eq!(g.dst_ip, None, "packet info is off unless asked for");
        }
    }

    #[test]
    fn recv_batch_never_exceeds_capacity() {
        let rx = loopback_v4();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            tx.send_to(&[i], rx.local_addr().unwrap()).unwrap();
        }
        let mut batch = RecvBatch::new(2);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(batch.recv(&rx).unwrap(), 2);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.get(1).bytes, &[1]);
        assert_eq!(batch.bytes(1), &[1]);
    }

    #[test]
    fn oversized_datagram_is_flagged_truncated() {
        let rx = loopback_v4();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        tx.send_to(&big, rx.local_addr().unwrap()).unwrap();
        tx.send_to(&big[..MAX_DATAGRAM], rx.local_addr().unwrap())
            .unwrap();
        let mut batch = RecvBatch::new(8);
        let got = recv_at_least(&mut batch, &rx, 2);
        assert_eq!(got[0].bytes.len(), MAX_DATAGRAM);
        assert_eq!(got[0].bytes, big[..MAX_DATAGRAM]);
        assert!(
            got[0].truncated,
            "3000-byte datagram must be flagged truncated"
        );
        // Exactly MAX_DATAGRAM fits and is not truncated.
        assert_eq!(got[1].bytes.len(), MAX_DATAGRAM);
        assert!(!got[1].truncated);
    }

    #[test]
    fn empty_socket_would_block() {
        let rx = loopback_v4();
        let mut batch = RecvBatch::new(8);
        let err = batch.recv(&rx).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(batch.is_empty());
    }

    #[test]
    #[should_panic(expected = "beyond")]
    fn get_beyond_received_panics() {
        let batch = RecvBatch::new(8);
        let _ = batch.get(0);
    }

    #[test]
    fn empty_datagram_is_one_segment() {
        let rx = loopback_v4();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[], rx.local_addr().unwrap()).unwrap();
        let mut batch = RecvBatch::new(2);
        recv_at_least(&mut batch, &rx, 1);
        let d = batch.get(0);
        assert!(d.bytes.is_empty());
        assert_eq!(d.segment_count(), 1);
        assert_eq!(d.segments().collect::<Vec<_>>(), vec![&[][..]]);
        assert!(!d.is_coalesced());
    }

    #[test]
    fn recv_wait_blocks_until_a_datagram_then_takes_the_queue() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let mut batch = RecvBatch::new(8);
        // Nothing queued: the read timeout ends the wait.
        let err = batch.recv_wait(&rx).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let dest = rx.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            std::thread::sleep(Duration::from_millis(5));
            for i in 0..3u8 {
                tx.send_to(&[i], dest).unwrap();
            }
        });
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = batch.recv_wait(&rx).unwrap();
            got.extend((0..n).map(|i| batch.get(i).bytes[0]));
        }
        sender.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
    }

    #[test]
    fn pktinfo_reports_the_address_each_datagram_was_sent_to() {
        // Bound to the wildcard, the socket hears on 127.0.0.1 and 127.0.0.2 (both on
        // lo); packet info tells them apart.
        let rx = bind_media_socket("0.0.0.0:0".parse().unwrap(), 1 << 16).unwrap();
        enable_pktinfo(&rx).unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"one", ("127.0.0.1", port)).unwrap();
        tx.send_to(b"two", ("127.0.0.2", port)).unwrap();
        let mut batch = RecvBatch::new(4);
        let got = recv_at_least(&mut batch, &rx, 2);
        let dsts: Vec<_> = got.iter().map(|g| (g.bytes.clone(), g.dst_ip)).collect();
        assert_eq!(
            dsts,
            vec![
                (b"one".to_vec(), Some("127.0.0.1".parse().unwrap())),
                (b"two".to_vec(), Some("127.0.0.2".parse().unwrap())),
            ]
        );
    }

    #[test]
    fn pktinfo_on_ipv6() {
        let Ok(rx) = bind_media_socket("[::]:0".parse().unwrap(), 1 << 16) else {
            eprintln!("note: no IPv6 on this host; skipping");
            return;
        };
        enable_pktinfo(&rx).unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"six", ("::1", port)).unwrap();
        let mut batch = RecvBatch::new(4);
        let got = recv_at_least(&mut batch, &rx, 1);
        assert_eq!(got[0].dst_ip, Some("::1".parse().unwrap()));
    }

    #[test]
    fn gro_batch_takes_a_segmented_burst_as_one_entry() {
        let rx = loopback_v4();
        if enable_gro(&rx).is_err() || !gso_supported(rx.local_addr().unwrap()) {
            eprintln!("note: kernel without UDP_GRO/UDP_SEGMENT; skipping");
            return;
        }
        let tx = loopback_v4();
        let burst: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![i; if i == 4 { 300 } else { 1000 }])
            .collect();
        let parts: Vec<&[u8]> = burst.iter().map(|b| &b[..]).collect();
        let mut sb = SendBatch::new(4);
        let dest = rx.local_addr().unwrap();
        let t = Transmit {
            dst: dest,
            src_ip: None,
            segment_size: Some(1000),
            parts: parts.iter().copied(),
        };
        assert_eq!(sb.send(&tx, [t]).unwrap(), 1);
        let mut batch = RecvBatch::with_gro(4);
        let got = recv_at_least(&mut batch, &rx, 1);
        assert_eq!(got.len(), 1, "one coalesced entry");
        assert_eq!(got[0].segment_size, 1000);
        assert_eq!(got[0].bytes.len(), 4300);
        let d = batch.get(0);
        assert!(d.is_coalesced());
        assert_eq!(d.segment_count(), 5);
        let segs: Vec<&[u8]> = d.segments().collect();
        assert_eq!(segs, parts);
    }

    #[test]
    fn plain_batch_on_a_gro_socket_truncates_a_burst() {
        // Why GRO needs its own batch size: a coalesced burst larger than the buffer is
        // cut (MSG_TRUNC) and its later segments are lost.
        let rx = loopback_v4();
        if enable_gro(&rx).is_err() || !gso_supported(rx.local_addr().unwrap()) {
            return;
        }
        let tx = loopback_v4();
        let data = vec![7u8; 4000];
        let mut sb = SendBatch::new(1);
        let t = Transmit {
            dst: rx.local_addr().unwrap(),
            src_ip: None,
            segment_size: Some(1000),
            parts: [&data[..]],
        };
        sb.send(&tx, [t]).unwrap();
        let mut batch = RecvBatch::new(1);
        let got = recv_at_least(&mut batch, &rx, 1);
        assert!(got[0].truncated);
        assert_eq!(got[0].bytes.len(), MAX_DATAGRAM);
    }

    #[test]
    fn batches_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<RecvBatch>();
    }
}
