//! blindfold-udp: raw socket syscalls for the forwarder's shards, the load generator
//! and the ceiling: `recvmmsg`/`sendmmsg` batches, the control messages they carry
//! (`IP_PKTINFO`/`IPV6_PKTINFO`, `UDP_GRO`, `UDP_SEGMENT`) and the media socket's setup
//! (Linux only).
//!
//! This is the only crate of the workspace allowed `unsafe`. It owns the kernel-facing
//! structures (`mmsghdr`, `iovec`, `sockaddr_storage`, `cmsghdr`) and hides them behind
//! [`RecvBatch`] and [`SendBatch`], which allocate everything in `new()` and nothing per
//! packet. Every syscall result goes through one helper, `syscall`, which turns -1 into
//! `io::Error::last_os_error()`.
//!
//! - [`sock`]: binding the media socket, buffer sizes, and the offload and packet-info
//!   options with their start-up probes ([`gso_supported`], [`enable_gro`],
//!   [`enable_pktinfo`]).
//! - [`recv`]: [`RecvBatch`], one `recvmmsg` into preallocated buffers; each
//!   [`Datagram`] carries its source, the local address it was sent to (packet info)
//!   and, for a GRO-coalesced buffer, its segment size.
//! - [`send`]: [`SendBatch`], one `sendmmsg` of [`Transmit`]s whose iovecs point at the
//!   caller's bytes (several parts per message for GSO), with the source address and
//!   segment size as control messages.
//! - `cmsg`: writing and reading control messages in fixed, aligned buffers.
//!
//! It must not know anything about STUN, RTP or routing, must not log (the caller turns
//! what it reports into log lines and counters), and must not register sockets with mio:
//! the caller owns the poll. Every call passes `MSG_DONTWAIT` except
//! [`RecvBatch::recv_wait`], which exists for the ceiling's minimal blocking loop, so a
//! shard can never stall on a socket, whoever created it.
#![allow(unsafe_code)]

mod addr;
mod cmsg;
pub mod recv;
pub mod send;
pub mod sock;

use std::io;

pub use recv::{Datagram, MAX_DATAGRAM, MAX_GRO_DATAGRAM, RecvBatch, Segments};
pub use send::{MAX_PARTS, SendBatch, Transmit};
pub use sock::{
    MAX_GSO_SEGMENTS, bind_media_socket, enable_gro, enable_pktinfo, gso_supported,
    set_udp_checksums, socket_buffer_sizes,
};

/// The kernel caps `vlen` at `UIO_MAXIOV` (1024) for both `recvmmsg` and `sendmmsg`, and
/// the iovecs of one message at the same number; larger batches would only waste memory.
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

/// True when `e` is the kernel refusing a `UDP_SEGMENT` send: `EIO` when the route's
/// device cannot checksum in hardware (segmentation needs it), `EINVAL` when the socket
/// or route forbids it (`SO_NO_CHECK`, a segment larger than the path MTU). quinn-udp
/// treats exactly these two as "stop using GSO"; callers here do the same.
pub fn is_gso_refusal(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL))
}

#[cfg(test)]
mod test_util {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    use super::RecvBatch;

    pub fn loopback_v4() -> UdpSocket {
        super::bind_media_socket("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap()
    }

    /// One received datagram, copied out of the batch.
    #[derive(Debug, Clone)]
    pub struct Got {
        pub bytes: Vec<u8>,
        pub src: SocketAddr,
        pub dst_ip: Option<std::net::IpAddr>,
        pub segment_size: usize,
        pub truncated: bool,
    }

    /// Loopback delivery is normally synchronous, but poll briefly so the tests do not
    /// depend on it.
    pub fn recv_at_least(batch: &mut RecvBatch, sock: &UdpSocket, want: usize) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.len() < want {
            match batch.recv(sock) {
                Ok(n) => {
                    for i in 0..n {
                        let d = batch.get(i);
                        got.push(Got {
                            bytes: d.bytes.to_vec(),
                            src: d.src,
                            dst_ip: d.dst_ip,
                            segment_size: d.segment_size,
                            truncated: d.truncated,
                        });
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
}
