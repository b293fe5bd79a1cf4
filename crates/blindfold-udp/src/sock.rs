//! The media socket's setup: `SO_REUSEPORT` binding, buffer sizes, and the options the
//! batches rely on, each with a way to find out at start whether the kernel has it
//! (`UDP_SEGMENT`, `UDP_GRO`, `IP_PKTINFO`/`IPV6_RECVPKTINFO`). Callers log what they got
//! and degrade; nothing here fails a start for want of an optimisation.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::syscall;

/// Most segments one `UDP_SEGMENT` send may carry. Linux accepted 64 (`UDP_MAX_SEGMENTS`)
/// from 4.18 and 128 from 6.9; 64 holds everywhere GSO exists.
pub const MAX_GSO_SEGMENTS: usize = 64;

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

pub(crate) fn setsockopt_int(
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

pub(crate) fn getsockopt_int(
    sock: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
) -> io::Result<i32> {
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

/// Asks the kernel to report each datagram's local destination address
/// (`IP_PKTINFO` on IPv4, `IPV6_RECVPKTINFO` on IPv6), which [`crate::RecvBatch`] then
/// hands out as [`crate::Datagram::dst_ip`]. Only a socket bound to a wildcard address
/// needs it: one bound to a single address always sends from that address.
pub fn enable_pktinfo(sock: &UdpSocket) -> io::Result<()> {
    match sock.local_addr()? {
        SocketAddr::V4(_) => setsockopt_int(sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1),
        SocketAddr::V6(_) => setsockopt_int(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1),
    }
}

/// Turns on UDP receive coalescing (`UDP_GRO`, Linux 5.0): a burst of equal-size
/// datagrams of one flow may then come up as one buffer with its segment size, which
/// only a [`crate::RecvBatch::with_gro`] batch has room for. An error means the kernel
/// lacks it; the socket is unchanged and delivers datagrams one by one.
pub fn enable_gro(sock: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(sock, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Whether the kernel takes `UDP_SEGMENT` (Linux 4.18) on a socket of `addr`'s family.
/// Probed on a throwaway socket, because setting the option on a real one would make it
/// the default segment size of every later send there. A route whose device cannot
/// checksum in hardware may still refuse a segmented send (`EIO`): senders fall back then
/// (see [`crate::is_gso_refusal`]).
pub fn gso_supported(addr: SocketAddr) -> bool {
    let Ok(probe) = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)) else {
        return false;
    };
    setsockopt_int(&probe, libc::SOL_UDP, libc::UDP_SEGMENT, 1200).is_ok()
}

/// Turns UDP checksums off (`on = false`, `SO_NO_CHECK`) or back on for what `sock`
/// sends. No media socket wants this: it is the one way to make the kernel refuse a
/// segmented send on any host (segmentation needs the checksum), so the callers' GSO
/// fallback can be exercised on loopback.
pub fn set_udp_checksums(sock: &impl AsRawFd, on: bool) -> io::Result<()> {
    /// `SO_NO_CHECK` (asm-generic/socket.h); libc does not export it for Linux.
    const SO_NO_CHECK: libc::c_int = 11;
    setsockopt_int(sock, libc::SOL_SOCKET, SO_NO_CHECK, libc::c_int::from(!on))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::loopback_v4;

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
    fn pktinfo_option_is_set_per_family() {
        let v4 = loopback_v4();
        assert_eq!(
            getsockopt_int(&v4, libc::IPPROTO_IP, libc::IP_PKTINFO).unwrap(),
            0
        );
        enable_pktinfo(&v4).unwrap();
        assert_eq!(
            getsockopt_int(&v4, libc::IPPROTO_IP, libc::IP_PKTINFO).unwrap(),
            1
        );
        if let Ok(v6) = bind_media_socket("[::1]:0".parse().unwrap(), 1 << 16) {
            enable_pktinfo(&v6).unwrap();
            assert_eq!(
                getsockopt_int(&v6, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO).unwrap(),
                1
            );
        }
    }

    #[test]
    fn gro_option_is_set_or_reported() {
        let sock = loopback_v4();
        match enable_gro(&sock) {
            Ok(()) => assert_eq!(
                getsockopt_int(&sock, libc::SOL_UDP, libc::UDP_GRO).unwrap(),
                1
            ),
            Err(e) => eprintln!("note: kernel without UDP_GRO ({e})"),
        }
        // A closed descriptor is an error, not a panic.
        assert!(enable_gro(&-1).is_err());
    }

    #[test]
    fn gso_probe_leaves_no_default_segment_size_on_real_sockets() {
        let supported = gso_supported("127.0.0.1:0".parse().unwrap());
        let sock = loopback_v4();
        // The probe used its own socket: this one still sends whole datagrams.
        if supported {
            assert_eq!(
                getsockopt_int(&sock, libc::SOL_UDP, libc::UDP_SEGMENT).unwrap(),
                0
            );
        }
    }
}
