//! blindfold-udp: raw socket syscalls for the forwarder's shards, the load generator
//! and the ceiling: `recvmmsg`/`sendmmsg` batches and the media socket's setup (Linux only).
//!
//! This is the only crate of the workspace allowed `unsafe`. It owns the kernel-facing
//! structures (`mmsghdr`, `iovec`, `sockaddr_storage`) and hides them behind
//! [`RecvBatch`] and [`SendBatch`], which allocate everything in `new()` and nothing per
//! packet. Every syscall result goes through one helper, `syscall`, which turns -1 into
//! `io::Error::last_os_error()`.
//!
//! It must not know anything about STUN, RTP or routing, must not log (the caller turns
//! what it reports into log lines and counters), and must not register sockets with mio:
//! the shard loop owns the poll. Every call here passes `MSG_DONTWAIT`, so even a socket
//! not created by [`bind_media_socket`] cannot stall a shard.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;

use socket2::{Domain, Protocol, Socket, Type};

/// Size of each receive buffer. Media datagrams stay under the path MTU (~1200-1500
/// bytes), so anything larger is not ours; the kernel truncates it and [`RecvBatch::get`]
/// reports it as truncated so the caller can drop and count it.
pub const MAX_DATAGRAM: usize = 2048;

/// The kernel caps `vlen` at `UIO_MAXIOV` (1024) for both `recvmmsg` and `sendmmsg`;
/// larger batches would only waste memory.
const MAX_BATCH: usize = 1024;

/// Maps a raw syscall return value to `io::Result`: -1 means the error is in `errno`.
fn syscall(ret: libc::c_int) -> io::Result<usize> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        // Every wrapped syscall returns either -1 or a non-negative count.
        Ok(ret as usize)
    }
}

/// Creates a non-blocking UDP socket bound to `addr` with `SO_REUSEPORT` (and
/// `SO_REUSEADDR`), so that every shard can bind its own socket to the same media
/// address and the kernel spreads flows across them.
///
/// The receive and send buffers are raised to `buf_bytes`: first with
/// `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (which ignore `net.core.rmem_max`/`wmem_max` but
/// need `CAP_NET_ADMIN`), then with `SO_RCVBUF`/`SO_SNDBUF` (capped by those sysctls).
/// A refused buffer size never fails the bind: the forwarder runs with whatever the
/// kernel grants, and the caller logs [`socket_buffer_sizes`]. Note that Linux doubles
/// the value it is given to account for its bookkeeping overhead.
///
/// An IPv6 address gets `IPV6_V6ONLY`, so an IPv6 socket never sees v4-mapped peers and
/// every source address has a single spelling.
pub fn bind_media_socket(addr: SocketAddr, buf_bytes: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    set_buffer(&socket, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, buf_bytes);
    set_buffer(&socket, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, buf_bytes);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Tries the privileged option, then the capped one; errors are deliberately dropped
/// because a smaller buffer is a performance concern, not a reason to refuse to serve.
fn set_buffer(sock: &impl AsRawFd, force_opt: libc::c_int, opt: libc::c_int, bytes: usize) {
    // The kernel takes an int and doubles it internally; stay below overflow.
    let value = libc::c_int::try_from(bytes.min(i32::MAX as usize / 2)).unwrap_or(0);
    if setsockopt_int(sock, libc::SOL_SOCKET, force_opt, value).is_err() {
        let _ = setsockopt_int(sock, libc::SOL_SOCKET, opt, value);
    }
}

fn setsockopt_int(
    sock: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` lives for the whole call and the length passed is exactly its
    // size; an invalid fd or option is reported through errno, not UB.
    syscall(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            ptr::from_ref(&value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn getsockopt_int(sock: &impl AsRawFd, level: libc::c_int, opt: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the whole call and `len` tells
    // the kernel the buffer's real size, so it cannot write past `value`.
    syscall(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// Reports the effective `(SO_RCVBUF, SO_SNDBUF)` in bytes, as the kernel accounts them
/// (twice the requested size on Linux), for the startup log line.
pub fn socket_buffer_sizes(sock: &impl AsRawFd) -> io::Result<(usize, usize)> {
    let rcv = getsockopt_int(sock, libc::SOL_SOCKET, libc::SO_RCVBUF)?;
    let snd = getsockopt_int(sock, libc::SOL_SOCKET, libc::SO_SNDBUF)?;
    Ok((rcv.max(0) as usize, snd.max(0) as usize))
}

fn zeroed_mmsghdrs(n: usize) -> Box<[libc::mmsghdr]> {
    // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers, for which the
    // all-zero bit pattern is valid (null pointers, zero lengths).
    let zero: libc::mmsghdr = unsafe { mem::zeroed() };
    vec![zero; n].into_boxed_slice()
}

fn zeroed_storages(n: usize) -> Box<[libc::sockaddr_storage]> {
    // SAFETY: `sockaddr_storage` is plain bytes; all-zero is a valid (AF_UNSPEC) value.
    let zero: libc::sockaddr_storage = unsafe { mem::zeroed() };
    vec![zero; n].into_boxed_slice()
}

fn empty_iovecs(n: usize) -> Box<[libc::iovec]> {
    let empty = libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    };
    vec![empty; n].into_boxed_slice()
}

/// Reads the address the kernel wrote into `storage`. Returns `None` for a family other
/// than IPv4/IPv6, which a UDP socket of those families never produces.
fn storage_to_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a `sockaddr_in`; `sockaddr_storage`
            // is at least as large and as aligned as every sockaddr type.
            let sin: libc::sockaddr_in =
                unsafe { ptr::read(ptr::from_ref(storage).cast::<libc::sockaddr_in>()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for `sockaddr_in6`.
            let sin6: libc::sockaddr_in6 =
                unsafe { ptr::read(ptr::from_ref(storage).cast::<libc::sockaddr_in6>()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `storage` and returns the length to pass as `msg_namelen`.
fn addr_to_storage(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is at least as large and as aligned as
            // `sockaddr_in`, and `storage` is a valid exclusive reference.
            unsafe { ptr::write(ptr::from_mut(storage).cast::<libc::sockaddr_in>(), sin) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for `sockaddr_in6`.
            unsafe { ptr::write(ptr::from_mut(storage).cast::<libc::sockaddr_in6>(), sin6) };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// A preallocated `recvmmsg` batch: `capacity` buffers of [`MAX_DATAGRAM`] bytes with
/// their `mmsghdr`, `iovec` and `sockaddr_storage` arrays. Nothing is allocated after
/// [`RecvBatch::new`].
pub struct RecvBatch {
    bufs: Box<[[u8; MAX_DATAGRAM]]>,
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// How many entries the last `recv` filled.
    filled: usize,
}

// SAFETY: the raw pointers inside `iovecs` and `hdrs` only ever point into the heap
// allocations owned by this same struct (they are rewritten before every syscall), so
// moving the struct to another thread moves everything they refer to along with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Allocates a batch of `batch` datagrams, clamped to `1..=1024` (the kernel's
    /// `UIO_MAXIOV`).
    pub fn new(batch: usize) -> Self {
        let n = batch.clamp(1, MAX_BATCH);
        Self {
            bufs: vec![[0u8; MAX_DATAGRAM]; n].into_boxed_slice(),
            iovecs: empty_iovecs(n),
            addrs: zeroed_storages(n),
            hdrs: zeroed_mmsghdrs(n),
            filled: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// One `recvmmsg(MSG_DONTWAIT)` call: `Ok(n)` with `1 <= n <= capacity` datagrams,
    /// `Err(WouldBlock)` when none is queued. An edge-triggered caller loops until
    /// `WouldBlock`.
    pub fn recv(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        self.filled = 0;
        // The kernel overwrites msg_namelen, msg_flags and msg_len, so every field is
        // reset each call rather than trusted from the previous one.
        for (((hdr, iov), buf), addr) in self
            .hdrs
            .iter_mut()
            .zip(self.iovecs.iter_mut())
            .zip(self.bufs.iter_mut())
            .zip(self.addrs.iter_mut())
        {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = MAX_DATAGRAM;
            hdr.msg_hdr.msg_name = ptr::from_mut(addr).cast();
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: `hdrs` has `capacity()` entries, each pointing at one iovec of
        // MAX_DATAGRAM writable bytes and at a sockaddr_storage whose size is in
        // msg_namelen; all of them are owned by `self`, borrowed mutably for the call,
        // and the kernel writes no further than these lengths.
        let n = syscall(unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT as _,
                ptr::null_mut(),
            )
        })?;
        if n == 0 {
            // Not produced for datagram sockets with vlen >= 1; keep the contract.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.filled = n.min(self.hdrs.len());
        Ok(self.filled)
    }

    /// How many datagrams the last [`RecvBatch::recv`] returned (0 after an error).
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Datagram `i` of the last `recv`: its received bytes, its source, and whether the
    /// kernel truncated it to [`MAX_DATAGRAM`] (`MSG_TRUNC`). A source of a family other
    /// than IPv4/IPv6 (never produced for UDP sockets) is reported as `0.0.0.0:0`, which
    /// is never latched and cannot be sent to.
    ///
    /// # Panics
    /// If `i >= self.len()`: indices come from the caller's loop, not from the network.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddr, bool) {
        assert!(
            i < self.filled,
            "RecvBatch::get({i}) beyond {}",
            self.filled
        );
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(MAX_DATAGRAM);
        let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let src = storage_to_addr(&self.addrs[i])
            .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
        (&self.bufs[i][..len], src, truncated)
    }
}

/// A preallocated `sendmmsg` batch of `capacity` messages. The iovecs point straight at
/// the caller's bytes (typically a [`RecvBatch`] buffer): the kernel makes the copies.
pub struct SendBatch {
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
}

// SAFETY: between calls the raw pointers are stale and never dereferenced: `send`
// rewrites every pointer it passes to the kernel from borrows that outlive the call.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Allocates a batch of `capacity` messages, clamped to `1..=1024` (`UIO_MAXIOV`).
    pub fn new(capacity: usize) -> Self {
        let n = capacity.clamp(1, MAX_BATCH);
        Self {
            iovecs: empty_iovecs(n),
            addrs: zeroed_storages(n),
            hdrs: zeroed_mmsghdrs(n),
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// One `sendmmsg(MSG_DONTWAIT)` call for up to `capacity()` items pulled from `items`
    /// (items beyond capacity are not pulled, so pass `iter.by_ref()` to resume).
    ///
    /// Returns how many the kernel accepted, which may be fewer than offered: the caller
    /// decides whether to retry the rest. `Ok(0)` only when `items` was empty;
    /// `Err(WouldBlock)` when the first could not be queued. Any other error concerns the
    /// first item (e.g. `EAFNOSUPPORT` for an IPv6 destination on an IPv4 socket), which
    /// the caller should count and skip.
    pub fn send<'a, I>(&mut self, fd: &impl AsRawFd, items: I) -> io::Result<usize>
    where
        I: IntoIterator<Item = (&'a [u8], SocketAddr)>,
    {
        let mut n = 0;
        for (((hdr, iov), storage), (bytes, dest)) in self
            .hdrs
            .iter_mut()
            .zip(self.iovecs.iter_mut())
            .zip(self.addrs.iter_mut())
            .zip(items)
        {
            // The kernel only reads through this pointer (sendmmsg), so casting away
            // const is sound.
            iov.iov_base = bytes.as_ptr().cast_mut().cast();
            iov.iov_len = bytes.len();
            hdr.msg_hdr.msg_namelen = addr_to_storage(dest, storage);
            hdr.msg_hdr.msg_name = ptr::from_mut(storage).cast();
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: the first `n` headers were just filled with pointers to iovecs and
        // addresses owned by `self` and to byte slices borrowed for 'a, which outlives
        // this call; the kernel reads at most iov_len / msg_namelen bytes through them
        // and writes only msg_len.
        let sent = syscall(unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT as _,
            )
        })?;
        Ok(sent.min(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn loopback_v4() -> UdpSocket {
        bind_media_socket("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap()
    }

    /// Loopback delivery is normally synchronous, but poll briefly so the tests do not
    /// depend on it.
    fn recv_at_least(
        batch: &mut RecvBatch,
        sock: &UdpSocket,
        want: usize,
    ) -> Vec<(Vec<u8>, SocketAddr, bool)> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.len() < want {
            match batch.recv(sock) {
                Ok(n) => {
                    for i in 0..n {
                        let (b, a, t) = batch.get(i);
                        got.push((b.to_vec(), a, t));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "timed out with {} of {want}",
                        got.len()
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        got
    }

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
        for ((bytes, src, trunc), (payload, from)) in got.iter().zip(&sent) {
            assert_eq!(bytes, payload);
            assert_eq!(src, from);
            assert!(!trunc);
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
        assert_eq!(batch.get(1).0, &[1]);
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
        assert_eq!(got[0].0.len(), MAX_DATAGRAM);
        assert_eq!(got[0].0, big[..MAX_DATAGRAM]);
        assert!(got[0].2, "3000-byte datagram must be flagged truncated");
        // Exactly MAX_DATAGRAM fits and is not truncated.
        assert_eq!(got[1].0.len(), MAX_DATAGRAM);
        assert!(!got[1].2);
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
    fn send_batch_reaches_two_destinations_byte_identical() {
        let tx = loopback_v4();
        let d1 = loopback_v4();
        let d2 = loopback_v4();
        let p1 = vec![0xAB; 1200];
        let p2: Vec<u8> = (0..=255).collect();
        let items = [
            (&p1[..], d1.local_addr().unwrap()),
            (&p2[..], d2.local_addr().unwrap()),
            (&p2[..], d1.local_addr().unwrap()),
        ];
        let mut batch = SendBatch::new(8);
        assert_eq!(batch.send(&tx, items.iter().copied()).unwrap(), 3);
        let mut rb = RecvBatch::new(8);
        let at1 = recv_at_least(&mut rb, &d1, 2);
        let at2 = recv_at_least(&mut rb, &d2, 1);
        let tx_addr = tx.local_addr().unwrap();
        assert_eq!(at1[0].0, p1);
        assert_eq!(at1[1].0, p2);
        assert_eq!(at2[0].0, p2);
        assert!(at1.iter().chain(&at2).all(|(_, src, _)| *src == tx_addr));
    }

    #[test]
    fn send_consumes_only_capacity_items() {
        let tx = loopback_v4();
        let rx = loopback_v4();
        let dest = rx.local_addr().unwrap();
        let payloads: Vec<[u8; 1]> = (0..5u8).map(|i| [i]).collect();
        let mut items = payloads.iter().map(|p| (&p[..], dest));
        let mut batch = SendBatch::new(2);
        assert_eq!(batch.send(&tx, items.by_ref()).unwrap(), 2);
        assert_eq!(items.len(), 3, "items beyond capacity must not be pulled");
        assert_eq!(batch.send(&tx, items.by_ref()).unwrap(), 2);
        assert_eq!(batch.send(&tx, items.by_ref()).unwrap(), 1);
        assert_eq!(batch.send(&tx, items.by_ref()).unwrap(), 0);
        let mut rb = RecvBatch::new(8);
        let got = recv_at_least(&mut rb, &rx, 5);
        let order: Vec<u8> = got.iter().map(|(b, _, _)| b[0]).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn send_wrong_family_is_an_error_not_a_panic() {
        let tx = loopback_v4();
        let mut batch = SendBatch::new(2);
        let err = batch
            .send(&tx, [(&b"x"[..], "[::1]:9".parse().unwrap())])
            .unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn ipv6_loopback_round_trip() {
        let rx = match bind_media_socket("[::1]:0".parse().unwrap(), 1 << 20) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("note: no IPv6 loopback on this host ({e}); skipping");
                return;
            }
        };
        let tx = bind_media_socket("[::1]:0".parse().unwrap(), 1 << 20).unwrap();
        let mut sb = SendBatch::new(4);
        let payload = b"over six";
        let dest = rx.local_addr().unwrap();
        assert_eq!(
            sb.send(&tx, [(&payload[..], dest), (&payload[..4], dest)])
                .unwrap(),
            2
        );
        let mut rb = RecvBatch::new(4);
        let got = recv_at_least(&mut rb, &rx, 2);
        assert_eq!(got[0].0, payload);
        assert_eq!(got[1].0, payload[..4]);
        assert_eq!(got[0].1, tx.local_addr().unwrap());
        assert!(got[0].1.is_ipv6());
    }

    #[test]
    fn ipv6_socket_is_not_dual_stack() {
        let Ok(sock) = bind_media_socket("[::]:0".parse().unwrap(), 1 << 16) else {
            eprintln!("note: no IPv6 on this host; skipping");
            return;
        };
        let v6only = getsockopt_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).unwrap();
        assert_eq!(v6only, 1);
    }

    #[test]
    fn reuseport_lets_two_sockets_share_a_port() {
        let first = loopback_v4();
        let addr = first.local_addr().unwrap();
        let second = bind_media_socket(addr, 1 << 20).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        // Control: without SO_REUSEPORT the same bind is refused, so the option matters.
        let plain = UdpSocket::bind(addr).unwrap_err();
        assert_eq!(plain.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            getsockopt_int(&second, libc::SOL_SOCKET, libc::SO_REUSEPORT).unwrap(),
            1
        );
    }

    #[test]
    fn buffer_sizes_are_applied_and_never_fatal() {
        let small = bind_media_socket("127.0.0.1:0".parse().unwrap(), 32 * 1024).unwrap();
        let (rcv, snd) = socket_buffer_sizes(&small).unwrap();
        // Linux reports twice the request; either way it is the size we asked for, not
        // the system default.
        assert!((32 * 1024..=64 * 1024).contains(&rcv), "rcvbuf {rcv}");
        assert!((32 * 1024..=64 * 1024).contains(&snd), "sndbuf {snd}");
        let huge = bind_media_socket("127.0.0.1:0".parse().unwrap(), usize::MAX).unwrap();
        let (rcv, snd) = socket_buffer_sizes(&huge).unwrap();
        assert!(rcv > 0 && snd > 0);
    }

    #[test]
    fn socket_is_non_blocking() {
        let sock = loopback_v4();
        let mut buf = [0u8; 16];
        let err = sock.recv_from(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn batches_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<RecvBatch>();
        assert_send::<SendBatch>();
    }
}
