//! Control messages (`cmsghdr`) in fixed, aligned per-message buffers: the source address
//! a datagram is sent from (`IP_PKTINFO`/`IPV6_PKTINFO`) and its GSO segment size
//! (`UDP_SEGMENT`) on the way out; the local address a datagram arrived at and its GRO
//! segment size (`UDP_GRO`) on the way in.
//!
//! Layout follows `cmsg(3)`: each message is a `cmsghdr` followed by its data at
//! `CMSG_LEN(0)`, the next one `CMSG_SPACE(len)` further on. The encoder computes those
//! offsets itself instead of calling `CMSG_NXTHDR`, which would read the stale length of
//! the slot it is about to fill; the decoder bounds every read by what the kernel
//! reported in `msg_controllen`. Owns no socket and makes no syscall.

use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr;

/// Bytes of control space per message. The most either direction uses is a packet-info
/// message (IPv6: `CMSG_SPACE(20)` = 40) plus a 2- or 4-byte UDP message
/// (`CMSG_SPACE(4)` = 24), 64 in all; the rest is headroom, and the kernel flags
/// `MSG_CTRUNC` rather than overrun it.
pub(crate) const CMSG_BUF: usize = 128;

/// One message's control buffer, aligned for `cmsghdr` (its `size_t` length field).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct CmsgBuf(pub(crate) [u8; CMSG_BUF]);

impl CmsgBuf {
    pub(crate) const ZERO: CmsgBuf = CmsgBuf([0; CMSG_BUF]);
}

// `cmsghdr`'s alignment must not exceed the buffer's, or the kernel would see a
// misaligned header.
const _: () = assert!(mem::align_of::<libc::cmsghdr>() <= mem::align_of::<CmsgBuf>());

/// Types that are plain integers in C, valid for every bit pattern, so reading one out
/// of a control message's bytes cannot produce an invalid value.
trait Pod: Copy {}
impl Pod for libc::c_int {}
impl Pod for u16 {}
impl Pod for libc::in_pktinfo {}
impl Pod for libc::in6_pktinfo {}
impl Pod for libc::cmsghdr {}

/// `CMSG_LEN(len)`: header plus `len` bytes of data (where the data of a message starts
/// is `cmsg_len(0)`).
fn cmsg_len(len: usize) -> usize {
    // SAFETY: CMSG_LEN is pure arithmetic on its argument; it dereferences nothing.
    unsafe { libc::CMSG_LEN(len as libc::c_uint) as usize }
}

/// `CMSG_SPACE(len)`: what one message with `len` bytes of data occupies, padding
/// included.
fn cmsg_space(len: usize) -> usize {
    // SAFETY: as above.
    unsafe { libc::CMSG_SPACE(len as libc::c_uint) as usize }
}

/// Reads a `T` from the start of `bytes`, if they are long enough.
fn read<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < mem::size_of::<T>() {
        return None;
    }
    // SAFETY: `bytes` holds at least size_of::<T>() initialised bytes, `T` is valid for
    // any bit pattern (Pod), and read_unaligned makes no alignment assumption.
    Some(unsafe { ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Appends control messages to one [`CmsgBuf`].
struct Encoder<'a> {
    buf: &'a mut CmsgBuf,
    len: usize,
}

impl<'a> Encoder<'a> {
    fn new(buf: &'a mut CmsgBuf) -> Self {
        Self { buf, len: 0 }
    }

    /// Appends one message carrying `value`.
    ///
    /// # Panics
    /// If the buffer has no room left: the callers push a fixed set of small messages
    /// that fits [`CMSG_BUF`] by construction, so this is a bug, never input.
    fn push<T: Pod>(&mut self, level: libc::c_int, ty: libc::c_int, value: T) {
        let size = mem::size_of::<T>();
        let space = cmsg_space(size);
        assert!(self.len + space <= CMSG_BUF, "control buffer overflow");
        // SAFETY: all-zero is a valid `cmsghdr` (integers, and padding on some libcs).
        let mut hdr: libc::cmsghdr = unsafe { mem::zeroed() };
        hdr.cmsg_len = cmsg_len(size) as _;
        hdr.cmsg_level = level;
        hdr.cmsg_type = ty;
        let at = &mut self.buf.0[self.len..self.len + space];
        // SAFETY: `at` is `space` writable bytes, and space >= cmsg_len(size) =
        // cmsg_len(0) + size, so both the header (size_of::<cmsghdr>() <= cmsg_len(0))
        // and the data written at cmsg_len(0) stay inside it; write_unaligned makes no
        // alignment assumption.
        unsafe {
            ptr::write_unaligned(at.as_mut_ptr().cast::<libc::cmsghdr>(), hdr);
            ptr::write_unaligned(at.as_mut_ptr().add(cmsg_len(0)).cast::<T>(), value);
        }
        self.len += space;
    }
}

/// Writes the control messages of one outgoing message: the source address (packet
/// info) and the GSO segment size, each only when given. Returns the length to put in
/// `msg_controllen` (0: none, leave `msg_control` null).
pub(crate) fn encode_send(
    buf: &mut CmsgBuf,
    src_ip: Option<IpAddr>,
    segment_size: Option<u16>,
) -> usize {
    let mut enc = Encoder::new(buf);
    match src_ip {
        Some(IpAddr::V4(ip)) => enc.push(
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            libc::in_pktinfo {
                // 0: let the route decide the interface; only the source is pinned.
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            },
        ),
        Some(IpAddr::V6(ip)) => enc.push(
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: 0,
            },
        ),
        None => {}
    }
    if let Some(size) = segment_size {
        enc.push(libc::SOL_UDP, libc::UDP_SEGMENT, size);
    }
    enc.len
}

/// What a received datagram's control messages said.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvInfo {
    /// The local address the datagram was sent to, fit to send replies from.
    pub(crate) dst_ip: Option<IpAddr>,
    /// The GRO segment size, for a buffer the kernel coalesced.
    pub(crate) segment_size: Option<usize>,
}

/// Reads the control messages of one received datagram; `bytes` is the control buffer
/// cut to the `msg_controllen` the kernel returned. Unknown messages are skipped, a
/// malformed one ends the walk.
pub(crate) fn decode_recv(bytes: &[u8]) -> RecvInfo {
    let mut info = RecvInfo::default();
    let mut off = 0;
    while let Some(hdr) = bytes.get(off..).and_then(read::<libc::cmsghdr>) {
        #[allow(
            clippy::unnecessary_cast,
            reason = "size_t on glibc, socklen_t on musl"
        )]
        let len = hdr.cmsg_len as usize;
        // `off <= bytes.len()` (the header was read from there): no overflow.
        if len < cmsg_len(0) || len > bytes.len() - off {
            break;
        }
        let data = &bytes[off + cmsg_len(0)..off + len];
        match (hdr.cmsg_level, hdr.cmsg_type) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                if let Some(pi) = read::<libc::in_pktinfo>(data) {
                    // ipi_spec_dst is the kernel's answer to "which local address should
                    // a reply come from": the header's destination for unicast, an
                    // address of the receiving interface for broadcast. The header
                    // destination is the fallback when it is unset.
                    let spec = Ipv4Addr::from(u32::from_be(pi.ipi_spec_dst.s_addr));
                    let hdr_dst = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
                    let ip = if spec.is_unspecified() { hdr_dst } else { spec };
                    if !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast() {
                        info.dst_ip = Some(IpAddr::V4(ip));
                    }
                }
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                if let Some(pi) = read::<libc::in6_pktinfo>(data) {
                    let ip = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                    // A multicast destination is no address to send from.
                    if !ip.is_unspecified() && !ip.is_multicast() {
                        info.dst_ip = Some(IpAddr::V6(ip));
                    }
                }
            }
            (libc::SOL_UDP, libc::UDP_GRO) => {
                if let Some(size) = read::<libc::c_int>(data)
                    && size > 0
                {
                    info.segment_size = Some(size as usize);
                }
            }
            _ => {}
        }
        off += cmsg_space(len - cmsg_len(0));
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_nothing_is_empty() {
        let mut b = CmsgBuf::ZERO;
        assert_eq!(encode_send(&mut b, None, None), 0);
    }

    #[test]
    fn encoded_v4_source_and_segment_decode_back() {
        // The decoder reads IP_PKTINFO's ipi_spec_dst, which is where the encoder puts
        // the source, and reads UDP_SEGMENT's neighbour UDP_GRO as a c_int: check the
        // shared layout by decoding what was encoded (with the GRO type patched in).
        let mut b = CmsgBuf::ZERO;
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let len = encode_send(&mut b, Some(src), None);
        assert_eq!(len, cmsg_space(mem::size_of::<libc::in_pktinfo>()));
        assert_eq!(
            decode_recv(&b.0[..len]),
            RecvInfo {
                dst_ip: Some(src),
                segment_size: None
            }
        );
        let len = encode_send(&mut b, Some(src), Some(1200));
        assert_eq!(len, cmsg_space(12) + cmsg_space(2));
        let walked = walk(&b.0[..len]);
        assert_eq!(
            walked,
            vec![
                (libc::IPPROTO_IP, libc::IP_PKTINFO, 12),
                (libc::SOL_UDP, libc::UDP_SEGMENT, 2)
            ]
        );
        let seg_at = cmsg_space(12) + cmsg_len(0);
        assert_eq!(u16::from_ne_bytes([b.0[seg_at], b.0[seg_at + 1]]), 1200);
    }

    #[test]
    fn encoded_v6_source_decodes_back() {
        let mut b = CmsgBuf::ZERO;
        let src: IpAddr = "2001:db8::1".parse().unwrap();
        let len = encode_send(&mut b, Some(src), Some(500));
        assert_eq!(decode_recv(&b.0[..len]).dst_ip, Some(src));
        assert_eq!(
            walk(&b.0[..len]),
            vec![
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, 20),
                (libc::SOL_UDP, libc::UDP_SEGMENT, 2)
            ]
        );
    }

    #[test]
    fn gro_segment_size_is_read() {
        let mut b = CmsgBuf::ZERO;
        let mut enc = Encoder::new(&mut b);
        enc.push(libc::SOL_UDP, libc::UDP_GRO, 1200 as libc::c_int);
        let len = enc.len;
        assert_eq!(
            decode_recv(&b.0[..len]),
            RecvInfo {
                dst_ip: None,
                segment_size: Some(1200)
            }
        );
    }

    #[test]
    fn unusable_destinations_are_dropped() {
        for ip in ["224.0.0.1", "255.255.255.255", "0.0.0.0", "ff02::1", "::"] {
            let mut b = CmsgBuf::ZERO;
            let len = encode_send(&mut b, Some(ip.parse().unwrap()), None);
            assert_eq!(decode_recv(&b.0[..len]).dst_ip, None, "{ip}");
        }
    }

    #[test]
    fn malformed_control_data_never_reads_past_its_length() {
        let mut b = CmsgBuf::ZERO;
        let len = encode_send(&mut b, Some("10.0.0.1".parse().unwrap()), Some(9));
        // Every truncation of a valid buffer, and garbage lengths, decode without
        // panicking; a truncated packet-info message is ignored.
        for cut in 0..len {
            let info = decode_recv(&b.0[..cut]);
            if cut < cmsg_len(12) {
                assert_eq!(info.dst_ip, None);
            }
        }
        let mut junk = CmsgBuf::ZERO;
        junk.0.fill(0xff);
        assert_eq!(decode_recv(&junk.0), RecvInfo::default());
        let zero = CmsgBuf::ZERO;
        assert_eq!(decode_recv(&zero.0), RecvInfo::default());
    }

    #[test]
    #[should_panic(expected = "overflow")]
    fn encoder_refuses_to_overflow() {
        let mut b = CmsgBuf::ZERO;
        let mut enc = Encoder::new(&mut b);
        for _ in 0..CMSG_BUF {
            enc.push(libc::SOL_UDP, libc::UDP_SEGMENT, 1u16);
        }
    }

    /// (level, type, data length) of every message in `bytes`.
    fn walk(bytes: &[u8]) -> Vec<(libc::c_int, libc::c_int, usize)> {
        let mut v = Vec::new();
        let mut off = 0;
        while let Some(h) = bytes.get(off..).and_then(read::<libc::cmsghdr>) {
            #[allow(
                clippy::unnecessary_cast,
                reason = "size_t on glibc, socklen_t on musl"
            )]
            let len = h.cmsg_len as usize;
            if len < cmsg_len(0) || len > bytes.len() - off {
                break;
            }
            v.push((h.cmsg_level, h.cmsg_type, len - cmsg_len(0)));
            off += cmsg_space(len - cmsg_len(0));
        }
        v
    }
}
