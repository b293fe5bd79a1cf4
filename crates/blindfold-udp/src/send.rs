//! [`SendBatch`]: one `sendmmsg` of [`Transmit`]s. Each message's iovecs point straight at
//! the caller's bytes, so the kernel makes the copies; a message may gather several parts
//! (the datagrams of a burst, each in its own receive buffer) and send them as segments of
//! one `UDP_SEGMENT` (GSO) send, and may name the local address to send from.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::ptr;

use crate::addr::{addr_to_storage, empty_iovecs, zeroed_mmsghdrs, zeroed_storages};
use crate::cmsg::{self, CmsgBuf};
use crate::{MAX_BATCH, syscall};

/// Most iovecs one message may use. Parts that follow each other in memory (segments of
/// one GRO buffer) share an iovec, so this bounds separate buffers, and matches the
/// segments one GSO send may carry ([`crate::MAX_GSO_SEGMENTS`]).
pub const MAX_PARTS: usize = 64;

/// One message: `parts` concatenated, to `dst`.
#[derive(Debug, Clone)]
pub struct Transmit<P> {
    /// Destination.
    pub dst: SocketAddr,
    /// Local address to send from (`IP_PKTINFO`/`IPV6_PKTINFO`); `None` lets the kernel
    /// pick by route, which on a wildcard-bound socket may not be the address the peer
    /// talks to.
    pub src_ip: Option<IpAddr>,
    /// Cut the bytes into datagrams of this size, the last one shorter (`UDP_SEGMENT`);
    /// `None` sends them as one datagram.
    pub segment_size: Option<u16>,
    /// The bytes, as slices that outlive the send (at most [`MAX_PARTS`] separate ones).
    pub parts: P,
}

impl<'a> Transmit<[&'a [u8]; 1]> {
    /// One datagram of `bytes` to `dst`, from whatever address the kernel picks.
    pub fn new(bytes: &'a [u8], dst: SocketAddr) -> Self {
        Self {
            dst,
            src_ip: None,
            segment_size: None,
            parts: [bytes],
        }
    }
}

/// A preallocated `sendmmsg` batch of `capacity` messages.
pub struct SendBatch {
    /// `capacity + MAX_PARTS` entries, so single-part messages always fill every header
    /// and a message of MAX_PARTS parts always fits once it is started.
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    ctrls: Box<[CmsgBuf]>,
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
            iovecs: empty_iovecs(n + MAX_PARTS),
            addrs: zeroed_storages(n),
            ctrls: vec![CmsgBuf::ZERO; n].into_boxed_slice(),
            hdrs: zeroed_mmsghdrs(n),
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// One `sendmmsg(MSG_DONTWAIT)` call for the messages pulled from `items`: up to
    /// `capacity()`, fewer when many-part messages use up the iovecs. Items that do not
    /// fit are not pulled, so pass `iter.by_ref()` to resume.
    ///
    /// Returns how many messages the kernel accepted, which may be fewer than offered:
    /// the caller decides whether to retry the rest. `Ok(0)` only when `items` was empty;
    /// `Err(WouldBlock)` when the first could not be queued. Any other error concerns the
    /// first message (e.g. `EAFNOSUPPORT` for an IPv6 destination on an IPv4 socket, or a
    /// refused GSO send: [`crate::is_gso_refusal`]), which the caller should count and
    /// skip, or send again without segmentation.
    ///
    /// # Panics
    /// If one message has more than [`MAX_PARTS`] separate parts: the caller builds
    /// messages from its own bounded runs, never from a count the network chose.
    pub fn send<'a, I, P>(&mut self, fd: &impl AsRawFd, items: I) -> io::Result<usize>
    where
        I: IntoIterator<Item = Transmit<P>>,
        P: IntoIterator<Item = &'a [u8]>,
    {
        let mut items = items.into_iter();
        let cap = self.hdrs.len();
        let (mut n, mut iov) = (0, 0);
        while n < cap && iov + MAX_PARTS <= self.iovecs.len() {
            let Some(t) = items.next() else { break };
            let first = iov;
            for part in t.parts {
                if iov > first {
                    let prev = &mut self.iovecs[iov - 1];
                    if (prev.iov_base as usize).wrapping_add(prev.iov_len) == part.as_ptr() as usize
                    {
                        // Adjacent in memory (segments of one buffer): one iovec.
                        prev.iov_len += part.len();
                        continue;
                    }
                }
                assert!(
                    iov - first < MAX_PARTS,
                    "a message of more than {MAX_PARTS} separate parts"
                );
                // The kernel only reads through this pointer (sendmmsg), so casting away
                // const is sound.
                self.iovecs[iov] = libc::iovec {
                    iov_base: part.as_ptr().cast_mut().cast(),
                    iov_len: part.len(),
                };
                iov += 1;
            }
            let hdr = &mut self.hdrs[n].msg_hdr;
            hdr.msg_namelen = addr_to_storage(t.dst, &mut self.addrs[n]);
            hdr.msg_iovlen = iov - first;
            hdr.msg_controllen =
                cmsg::encode_send(&mut self.ctrls[n], t.src_ip, t.segment_size) as _;
            hdr.msg_flags = 0;
            self.hdrs[n].msg_len = 0;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // Pointers last, from one borrow of each array, after every write to them.
        let (iov_base, addr_base, ctrl_base) = (
            self.iovecs.as_mut_ptr(),
            self.addrs.as_mut_ptr(),
            self.ctrls.as_mut_ptr(),
        );
        let mut off = 0;
        for (k, h) in self.hdrs[..n].iter_mut().enumerate() {
            let hdr = &mut h.msg_hdr;
            hdr.msg_iov = iov_base.wrapping_add(off);
            off += hdr.msg_iovlen;
            hdr.msg_name = addr_base.wrapping_add(k).cast();
            hdr.msg_control = if hdr.msg_controllen == 0 {
                ptr::null_mut()
            } else {
                ctrl_base.wrapping_add(k).cast()
            };
        }
        // SAFETY: the first `n` headers were just filled with pointers to iovecs,
        // addresses and control buffers owned by `self` (each in bounds: `off` never
        // passes the iovecs written, `k < n <= capacity`) and, through the iovecs, to
        // byte slices borrowed for 'a, which outlives this call; the kernel reads at most
        // iov_len / msg_namelen / msg_controllen bytes through them and writes only
        // msg_len.
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
    use crate::sock::{bind_media_socket, enable_pktinfo, gso_supported, set_udp_checksums};
    use crate::test_util::{loopback_v4, recv_at_least};
    use crate::{RecvBatch, is_gso_refusal};
    use std::net::UdpSocket;

    fn one(bytes: &[u8], dst: SocketAddr) -> Transmit<[&[u8]; 1]> {
        Transmit::new(bytes, dst)
    }

    #[test]
    fn send_batch_reaches_two_destinations_byte_identical() {
        let tx = loopback_v4();
        let d1 = loopback_v4();
        let d2 = loopback_v4();
        let p1 = vec![0xAB; 1200];
        let p2: Vec<u8> = (0..=255).collect();
        let items = [
            one(&p1, d1.local_addr().unwrap()),
            one(&p2, d2.local_addr().unwrap()),
            one(&p2, d1.local_addr().unwrap()),
        ];
        let mut batch = SendBatch::new(8);
        assert_eq!(batch.send(&tx, items).unwrap(), 3);
        let mut rb = RecvBatch::new(8);
        let at1 = recv_at_least(&mut rb, &d1, 2);
        let at2 = recv_at_least(&mut rb, &d2, 1);
        let tx_addr = tx.local_addr().unwrap();
        assert_eq!(at1[0].bytes, p1);
        assert_eq!(at1[1].bytes, p2);
        assert_eq!(at2[0].bytes, p2);
        assert!(at1.iter().chain(&at2).all(|g| g.src == tx_addr));
    }

    #[test]
    fn send_consumes_only_capacity_items() {
        let tx = loopback_v4();
        let rx = loopback_v4();
        let dest = rx.local_addr().unwrap();
        let payloads: Vec<[u8; 1]> = (0..5u8).map(|i| [i]).collect();
        let mut items = payloads.iter().map(|p| one(p, dest));
        let mut batch = SendBatch::new(2);
        assert_eq!(batch.send(&tx, items.by_ref()).unwrap(), 2);
        assert_eq!(items.len(), 3, "items beyond capacity must not be pulled");
        assert_eq!(batch.send(&tx, items.by_ref()).unwrap(), 2);
        assert_eq!(batch.send(&tx, items.by_ref()).unwrap(), 1);
        assert_eq!(batch.send(&tx, items.by_ref()).unwrap(), 0);
        let mut rb = RecvBatch::new(8);
        let got = recv_at_least(&mut rb, &rx, 5);
        let order: Vec<u8> = got.iter().map(|g| g.bytes[0]).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn send_wrong_family_is_an_error_not_a_panic() {
        let tx = loopback_v4();
        let mut batch = SendBatch::new(2);
        let err = batch
            .send(&tx, [one(b"x", "[::1]:9".parse().unwrap())])
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
            sb.send(&tx, [one(payload, dest), one(&payload[..4], dest)])
                .unwrap(),
            2
        );
        let mut rb = RecvBatch::new(4);
        let got = recv_at_least(&mut rb, &rx, 2);
        assert_eq!(got[0].bytes, payload);
        assert_eq!(got[1].bytes, payload[..4]);
        assert_eq!(got[0].src, tx.local_addr().unwrap());
        assert!(got[0].src.is_ipv6());
    }

    #[test]
    fn source_address_is_the_one_asked_for() {
        // A wildcard-bound socket sending to 127.0.0.2 would pick 127.0.0.1 by route
        // (the control below); with a source address it sends from 127.0.0.2.
        let tx = bind_media_socket("0.0.0.0:0".parse().unwrap(), 1 << 16).unwrap();
        enable_pktinfo(&tx).unwrap();
        let port = tx.local_addr().unwrap().port();
        let rx = UdpSocket::bind("127.0.0.2:0").unwrap();
        let dest = rx.local_addr().unwrap();
        let mut sb = SendBatch::new(4);
        let pinned = Transmit {
            dst: dest,
            src_ip: Some("127.0.0.2".parse().unwrap()),
            segment_size: None,
            parts: [&b"pinned"[..]],
        };
        assert_eq!(sb.send(&tx, [pinned, one(b"routed", dest)]).unwrap(), 2);
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"pinned"[..], ([127, 0, 0, 2], port).into())
        );
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"routed"[..], ([127, 0, 0, 1], port).into())
        );
    }

    #[test]
    fn source_address_on_ipv6() {
        let Ok(tx) = bind_media_socket("[::]:0".parse().unwrap(), 1 << 16) else {
            return;
        };
        let Ok(rx) = UdpSocket::bind("[::1]:0") else {
            return;
        };
        let mut sb = SendBatch::new(1);
        let t = Transmit {
            dst: rx.local_addr().unwrap(),
            src_ip: Some("::1".parse().unwrap()),
            segment_size: None,
            parts: [&b"v6"[..]],
        };
        assert_eq!(sb.send(&tx, [t]).unwrap(), 1);
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"v6");
        assert_eq!(from.ip(), "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn segmented_send_of_separate_buffers_arrives_as_datagrams() {
        let tx = loopback_v4();
        if !gso_supported(tx.local_addr().unwrap()) {
            eprintln!("note: kernel without UDP_SEGMENT; skipping");
            return;
        }
        let rx = loopback_v4();
        let bufs: Vec<Vec<u8>> = (0..4u8)
            .map(|i| vec![i; if i == 3 { 10 } else { 700 }])
            .collect();
        let t = Transmit {
            dst: rx.local_addr().unwrap(),
            src_ip: None,
            segment_size: Some(700),
            parts: bufs.iter().map(|b| &b[..]),
        };
        let mut sb = SendBatch::new(4);
        assert_eq!(sb.send(&tx, [t]).unwrap(), 1, "one message");
        assert_eq!(
            sb.hdrs[0].msg_hdr.msg_iovlen, 4,
            "four buffers, four iovecs"
        );
        let mut rb = RecvBatch::new(8);
        let got = recv_at_least(&mut rb, &rx, 4);
        let datagrams: Vec<Vec<u8>> = got.into_iter().map(|g| g.bytes).collect();
        assert_eq!(datagrams, bufs, "the receiver sees four datagrams");
    }

    #[test]
    fn adjacent_parts_share_an_iovec() {
        let tx = loopback_v4();
        let rx = loopback_v4();
        let data = vec![5u8; 300];
        let t = Transmit {
            dst: rx.local_addr().unwrap(),
            src_ip: None,
            segment_size: None,
            parts: data.chunks(100),
        };
        let mut sb = SendBatch::new(1);
        assert_eq!(sb.send(&tx, [t]).unwrap(), 1);
        assert_eq!(sb.hdrs[0].msg_hdr.msg_iovlen, 1);
        let mut rb = RecvBatch::new(1);
        assert_eq!(recv_at_least(&mut rb, &rx, 1)[0].bytes, data);
    }

    #[test]
    fn refused_segmentation_is_reported_and_plain_send_still_works() {
        let tx = loopback_v4();
        if !gso_supported(tx.local_addr().unwrap()) {
            return;
        }
        // UDP without checksums cannot be segmented: a refusal we can cause on loopback.
        set_udp_checksums(&tx, false).unwrap();
        let rx = loopback_v4();
        let dst = rx.local_addr().unwrap();
        let data = vec![1u8; 2000];
        let mut sb = SendBatch::new(4);
        let gso = Transmit {
            dst,
            src_ip: None,
            segment_size: Some(1000),
            parts: [&data[..]],
        };
        let err = sb.send(&tx, [gso]).unwrap_err();
        assert!(is_gso_refusal(&err), "{err}");
        // The fallback a caller makes: the same bytes as separate datagrams.
        let plain = data.chunks(1000).map(|c| one(c, dst));
        assert_eq!(sb.send(&tx, plain).unwrap(), 2);
        let mut rb = RecvBatch::new(4);
        assert_eq!(recv_at_least(&mut rb, &rx, 2).len(), 2);
        assert!(!is_gso_refusal(&io::Error::from_raw_os_error(libc::EAGAIN)));
        // With checksums back on, the segmented send goes through.
        set_udp_checksums(&tx, true).unwrap();
        let gso = Transmit {
            dst,
            src_ip: None,
            segment_size: Some(1000),
            parts: [&data[..]],
        };
        assert_eq!(sb.send(&tx, [gso]).unwrap(), 1);
        assert_eq!(recv_at_least(&mut rb, &rx, 2).len(), 2);
    }

    #[test]
    fn many_part_messages_stop_at_the_iovec_pool() {
        let tx = loopback_v4();
        let rx = loopback_v4();
        let dst = rx.local_addr().unwrap();
        // 64 separate one-byte buffers (a Vec each, so never adjacent).
        let bufs: Vec<Vec<u8>> = (0..MAX_PARTS as u8).map(|i| vec![i]).collect();
        let msg = || Transmit {
            dst,
            src_ip: None,
            segment_size: None,
            parts: bufs.iter().map(|b| &b[..]),
        };
        let mut items = [msg(), msg()].into_iter();
        let mut sb = SendBatch::new(2);
        assert_eq!(sb.send(&tx, items.by_ref()).unwrap(), 1);
        assert_eq!(items.len(), 1, "the second message waits for the next call");
        assert_eq!(sb.send(&tx, items.by_ref()).unwrap(), 1);
        let mut rb = RecvBatch::new(2);
        let got = recv_at_least(&mut rb, &rx, 2);
        assert_eq!(got[0].bytes, (0..MAX_PARTS as u8).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "separate parts")]
    fn more_than_max_parts_is_a_caller_bug() {
        let tx = loopback_v4();
        let bufs: Vec<Vec<u8>> = (0..=MAX_PARTS).map(|i| vec![i as u8]).collect();
        let t = Transmit {
            dst: tx.local_addr().unwrap(),
            src_ip: None,
            segment_size: None,
            parts: bufs.iter().map(|b| &b[..]),
        };
        let _ = SendBatch::new(1).send(&tx, [t]);
    }

    #[test]
    fn batches_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<SendBatch>();
    }
}
