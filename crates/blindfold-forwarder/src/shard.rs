//! One shard: a pinned thread with its own mio `Poll` and SO_REUSEPORT socket, receiving
//! in batches with recvmmsg, routing through its private [`Router`] and sending the
//! copies in batches with sendmmsg.
//!
//! Per wake: an idle shard sleeps in `epoll_wait`; a busy one sleeps in
//! `recvmmsg(MSG_WAITFORONE)` itself, so forwarding costs two syscalls per wake, as the
//! minimal loop does (see `Shard::run`). Each batch (GRO buffers when the kernel
//! coalesced a burst) is routed datagram by datagram, so source, SSRC ownership,
//! ingress limits and RTCP routing hold per datagram; then the router's transmits are
//! grouped into messages. A run of consecutive datagrams of equal size (the last may be
//! shorter) that go to the same destinations from the same local address is sent to
//! each destination as one segmented send (UDP GSO): a video frame's burst costs the
//! kernel one pass per subscriber instead of one per packet. Anything else is one
//! datagram per message. A coalesced buffer whose datagrams route differently is split
//! the same way.
//!
//! Owns all media I/O of the shard and nothing else: routing decisions are the router's,
//! routing state changes come from the control thread as ordered updates. Nothing here
//! allocates per packet or takes a lock a reader could hold: buffers, the transmit,
//! datagram and message lists are sized at start, metrics are published once per wake
//! with relaxed stores.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::ShardEvent;
use crate::metrics::{AllShards, DropReason};
use blindfold_proto::route::{Outcome, Router, RouterConfig, StunReply, Transmit};
use blindfold_proto::table::Update;
use blindfold_udp::{self as udp, MAX_DATAGRAM, MAX_GSO_SEGMENTS, RecvBatch, SendBatch};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Most datagrams in one sendmmsg call (the kernel's UIO_MAXIOV).
const SEND_CHUNK: usize = 1024;
/// How often idle shards publish their latency histogram and table gauges.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// How long a busy shard waits in `recvmmsg` for the next datagram before it goes back
/// to the poll (where the control thread's waker reaches it). Also the longest a stop
/// request waits.
const HOLD: Duration = Duration::from_millis(20);
/// Most datagrams routed between two flushes. Their numbers are the router's buffer ids
/// and must stay below [`REPLY_BASE`].
const WINDOW: usize = 4096;
/// Most bytes in one segmented send: the UDP payload limit (65,507) with room to spare.
const MAX_GSO_BYTES: usize = 65_000;

/// Everything a shard needs to start.
pub struct ShardSpec {
    /// Shard number (metrics label, core choice).
    pub index: usize,
    /// The shard's own socket, already bound with SO_REUSEPORT and non-blocking.
    pub socket: std::net::UdpSocket,
    /// Datagrams per recvmmsg.
    pub batch: usize,
    /// Largest fan-out a packet can have (endpoints per conference); sizes the transmit
    /// list so it never grows.
    pub max_fanout: usize,
    /// Core to pin to, if any.
    pub core: Option<core_affinity::CoreId>,
    /// Routing settings.
    pub router: RouterConfig,
    /// Group runs of datagrams into segmented sends (the kernel has `UDP_SEGMENT`).
    pub gso: bool,
    /// The socket has `UDP_GRO` on: receive into buffers that hold a coalesced burst.
    pub gro: bool,
}

/// A running shard.
pub struct ShardHandle {
    /// Wakes the shard's `Poll`.
    pub waker: Arc<Waker>,
    /// The shard's thread.
    pub thread: JoinHandle<()>,
}

/// Starts a shard thread. Updates arrive on `updates`; latches are reported on `events`;
/// `stop` ends the loop at its next wake.
pub fn spawn(
    spec: ShardSpec,
    updates: Receiver<Update>,
    events: Sender<ShardEvent>,
    metrics: Arc<AllShards>,
    stop: Arc<AtomicBool>,
) -> io::Result<ShardHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let index = spec.index;
    let core = spec.core;
    // Blocking, so that a busy shard can wait in recvmmsg itself (MSG_WAITFORONE), with
    // HOLD as the longest wait; every other call passes MSG_DONTWAIT.
    spec.socket.set_nonblocking(false)?;
    spec.socket.set_read_timeout(Some(HOLD))?;
    let mut shard = Shard::new(spec, updates, events, metrics);
    poll.registry()
        .register(&mut shard.socket, SOCKET, Interest::READABLE)?;
    let thread = std::thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || {
            if let Some(core) = core
                && !core_affinity::set_for_current(core)
            {
                tracing::warn!(shard = index, "could not pin shard to its core");
            }
            if let Err(e) = shard.run(poll, &stop) {
                tracing::error!(shard = index, error = %e, "shard stopped on error");
            }
        })?;
    Ok(ShardHandle { waker, thread })
}

/// One datagram routed in the current window.
#[derive(Debug, Clone, Copy)]
struct Dgram {
    /// Receive entry it sits in, and where in it (a segment of a GRO buffer).
    slot: u16,
    off: u32,
    len: u32,
    /// The local address it was sent to (packet info), which its copies leave from.
    src_ip: Option<IpAddr>,
    /// Its transmits: `tx[tx_start..tx_end]`.
    tx_start: u32,
    tx_end: u32,
    /// Its transmits are STUN datagrams (the answer and maybe the forwarder's own
    /// check), never grouped.
    reply: bool,
}

/// One `sendmmsg` entry: the window datagrams `first..=last` (or one reply, numbered
/// from [`REPLY_BASE`]) to one destination, segmented when `seg > 0`.
#[derive(Debug, Clone, Copy)]
struct Msg {
    dst: SocketAddr,
    src_ip: Option<IpAddr>,
    first: u16,
    last: u16,
    seg: u16,
    bytes: u32,
}

impl Msg {
    fn datagrams(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    datagrams: u64,
    bytes: u64,
    failed: u64,
}

struct Shard {
    index: usize,
    socket: UdpSocket,
    router: Router,
    updates: Receiver<Update>,
    events: Sender<ShardEvent>,
    metrics: Arc<AllShards>,
    rx: RecvBatch,
    tx_batch: SendBatch,
    /// The router's transmits in this window (`buf` is a window datagram number or a
    /// reply number).
    tx: Vec<Transmit>,
    /// The datagrams routed in this window.
    dgrams: Vec<Dgram>,
    /// `tx` grouped into sendmmsg entries, at flush time.
    msgs: Vec<Msg>,
    max_fanout: usize,
    /// STUN datagrams the router wrote (its return-path check and the answer), one set
    /// per answered check in this window.
    replies: Vec<StunReply>,
    /// (check, response) lengths of each.
    reply_lens: Vec<(usize, usize)>,
    /// The local address each reply's request was sent to: the reply comes from it.
    reply_src: Vec<Option<IpAddr>>,
    n_replies: usize,
    /// Segmented sends allowed: the kernel has them and has not refused one.
    gso: bool,
    latency: Histogram<u64>,
    last_publish: Instant,
    send_errors_logged: Instant,
}

impl Shard {
    fn new(
        spec: ShardSpec,
        updates: Receiver<Update>,
        events: Sender<ShardEvent>,
        metrics: Arc<AllShards>,
    ) -> Self {
        // A STUN check makes two datagrams (the forwarder's own check and the answer).
        let max_fanout = spec.max_fanout.max(2);
        let batch = spec.batch;
        // Room for a full batch at typical fan-out, and never less than two worst-case
        // packets, so the window check keeps it from ever reallocating.
        let tx_cap = (batch * 16).max(2 * max_fanout) + batch;
        Self {
            index: spec.index,
            socket: UdpSocket::from_std(spec.socket),
            router: Router::new(spec.router),
            updates,
            events,
            metrics,
            rx: if spec.gro {
                RecvBatch::with_gro(batch)
            } else {
                RecvBatch::new(batch)
            },
            tx_batch: SendBatch::new(SEND_CHUNK),
            tx: Vec::with_capacity(tx_cap),
            dgrams: Vec::with_capacity(WINDOW),
            msgs: Vec::with_capacity(tx_cap),
            max_fanout,
            replies: vec![StunReply::new(); batch],
            reply_lens: vec![(0, 0); batch],
            reply_src: vec![None; batch],
            n_replies: 0,
            gso: spec.gso,
            // 1 µs .. 10 s in ns, 3 significant figures.
            latency: Histogram::new_with_bounds(1_000, 10_000_000_000, 3)
                .expect("static histogram bounds are valid"),
            last_publish: Instant::now(),
            send_errors_logged: Instant::now() - Duration::from_secs(60),
        }
    }

    /// Two modes. Idle, the shard waits in `epoll_wait` for a datagram, the control
    /// thread's waker or the publish period. Once datagrams flow, it waits for the next
    /// batch inside `recvmmsg(MSG_WAITFORONE)` itself, as the minimal forwarding loop
    /// does: two syscalls per wake (receive, send) instead of three, the poll's being
    /// the one a busy shard does not need. After [`HOLD`] without a datagram it goes
    /// back to the poll, so the waker is never ignored for longer than that.
    fn run(&mut self, mut poll: Poll, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(16);
        loop {
            match poll.poll(&mut events, Some(PUBLISH_EVERY)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.apply_updates();
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // Edge-triggered: drain the socket, whatever woke us.
            let mut now = self.drain_socket(stop);
            let mut errors = 0;
            loop {
                self.publish(now);
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                match self.rx.recv_wait(&self.socket) {
                    Ok(n) => {
                        errors = 0;
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        // As in the drain: updates before routing.
                        self.apply_updates();
                        now = self.process(n);
                    }
                    // HOLD passed without a datagram: back to the poll.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.log_io_error("recv", &e);
                        errors += 1;
                        if errors > 64 {
                            break;
                        }
                    }
                }
            }
            self.publish(Instant::now());
        }
    }

    fn apply_updates(&mut self) {
        while let Ok(u) = self.updates.try_recv() {
            self.router.apply(u);
        }
    }

    /// Receives and forwards until the socket is drained; returns the time of the last
    /// batch (or now, when there was none).
    ///
    /// A batch shorter than the receive batch ends the drain without a further
    /// `recvmmsg` that would only say `WouldBlock`: the kernel stopped because the queue
    /// was empty, and under edge-triggered epoll every datagram queued after that raises
    /// a new event. (A short batch can also end on a pending socket error, but an
    /// unconnected UDP socket without `IP_RECVERR` never holds one: ICMP errors are not
    /// reported to it.) This saves one syscall per wake, which at audio rates is a
    /// quarter of them.
    fn drain_socket(&mut self, stop: &AtomicBool) -> Instant {
        let mut errors = 0;
        loop {
            match self.rx.recv(&self.socket) {
                Ok(n) => {
                    // Apply control changes after the receive and before routing: any
                    // update enqueued before a datagram was sent is then visible to it,
                    // so a DELETE that has answered stops traffic at once.
                    self.apply_updates();
                    let now = self.process(n);
                    if n < self.rx.capacity() || stop.load(Ordering::Relaxed) {
                        return now;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    errors += 1;
                    self.log_io_error("recv", &e);
                    if errors > 64 || stop.load(Ordering::Relaxed) {
                        return Instant::now();
                    }
                }
            }
        }
    }

    /// Routes the `n` entries of the last receive and sends their copies; returns the
    /// time the batch was taken.
    fn process(&mut self, n: usize) -> Instant {
        let now = Instant::now();
        let mut rx_bytes = 0u64;
        let mut rx_packets = 0u64;
        let mut gro_buffers = 0u64;
        let mut copies = 0u64;
        for slot in 0..n {
            let d = self.rx.get(slot);
            rx_bytes += d.bytes.len() as u64;
            if d.truncated {
                // Only a plain batch truncates (a GRO batch holds any UDP payload): one
                // datagram larger than any media packet.
                rx_packets += 1;
                self.router.counters_mut().drop(DropReason::Oversize);
                continue;
            }
            let (count, seg, src, local) = (d.segment_count(), d.segment_size, d.src, d.dst_ip);
            let total = d.bytes.len();
            if count > 1 {
                gro_buffers += 1;
            }
            for k in 0..count {
                if self.tx.len() + self.max_fanout + 2 > self.tx.capacity()
                    || self.dgrams.len() == WINDOW
                    || self.n_replies == self.replies.len()
                {
                    copies += self.flush();
                }
                rx_packets += 1;
                let off = k * seg;
                let len = seg.min(total - off);
                if len > MAX_DATAGRAM {
                    // A datagram larger than any media packet, alone or as a segment.
                    self.router.counters_mut().drop(DropReason::Oversize);
                    continue;
                }
                let pkt = &self.rx.bytes(slot)[off..off + len];
                let id = self.dgrams.len() as u16;
                let tx_start = self.tx.len() as u32;
                let reply = &mut self.replies[self.n_replies];
                let answered = match self.router.handle(id, pkt, src, now, &mut self.tx, reply) {
                    Outcome::Reply { check, response } => {
                        let r = self.n_replies;
                        self.reply_lens[r] = (check, response);
                        self.reply_src[r] = local;
                        // The check first: an agent that has answered it by the time the
                        // answer to its own check arrives is latched one round trip
                        // sooner.
                        if check > 0 {
                            self.tx.push(Transmit {
                                buf: reply_buf(r, Part::Check),
                                dst: src,
                            });
                        }
                        self.tx.push(Transmit {
                            buf: reply_buf(r, Part::Response),
                            dst: src,
                        });
                        self.n_replies += 1;
                        true
                    }
                    Outcome::Forwarded(_) | Outcome::Proven | Outcome::Dropped(_) => false,
                };
                self.dgrams.push(Dgram {
                    slot: slot as u16,
                    off: off as u32,
                    len: len as u32,
                    src_ip: local,
                    tx_start,
                    tx_end: self.tx.len() as u32,
                    reply: answered,
                });
            }
        }
        let c = self.router.counters_mut();
        c.rx_packets += rx_packets;
        c.rx_bytes += rx_bytes;
        c.gro_buffers += gro_buffers;
        copies += self.flush();
        if copies > 0 {
            let ns = now.elapsed().as_nanos() as u64;
            let _ = self.latency.record_n(ns.max(1_000), copies);
        }
        for ev in self.router.drain_events() {
            let _ = self.events.send(ev);
        }
        now
    }

    /// Groups the window's transmits into sendmmsg entries: a run of consecutive
    /// datagrams with the same destinations (in the same order), the same local address
    /// and one size (the last may be shorter) becomes one segmented entry per
    /// destination; a datagram no run takes becomes one entry per destination.
    fn build_messages(&mut self) {
        let nd = self.dgrams.len();
        let mut d = 0;
        while d < nd {
            let g = self.dgrams[d];
            let (s, e) = (g.tx_start as usize, g.tx_end as usize);
            if s == e {
                d += 1;
                continue;
            }
            if g.reply {
                // The forwarder's check (if any) and the answer, each on its own.
                for t in &self.tx[s..e] {
                    let (r, part) = reply_index(t.buf).unwrap_or((0, Part::Response));
                    let (check, response) = self.reply_lens[r];
                    self.msgs.push(Msg {
                        dst: t.dst,
                        src_ip: self.reply_src[r],
                        first: t.buf,
                        last: t.buf,
                        seg: 0,
                        bytes: if part == Part::Check { check } else { response } as u32,
                    });
                }
                d += 1;
                continue;
            }
            let mut last = d;
            let mut bytes = g.len as usize;
            if self.gso && g.len > 0 {
                while last + 1 < nd && last + 1 - d < MAX_GSO_SEGMENTS {
                    let (p, q) = (&self.dgrams[last], &self.dgrams[last + 1]);
                    let (qs, qe) = (q.tx_start as usize, q.tx_end as usize);
                    let joins = p.len == g.len
                        && !q.reply
                        && q.len > 0
                        && q.len <= g.len
                        && q.src_ip == g.src_ip
                        && bytes + q.len as usize <= MAX_GSO_BYTES
                        && qe - qs == e - s
                        && self.tx[qs..qe]
                            .iter()
                            .zip(&self.tx[s..e])
                            .all(|(a, b)| a.dst == b.dst);
                    if !joins {
                        break;
                    }
                    bytes += q.len as usize;
                    last += 1;
                }
            }
            let seg = if last > d { g.len as u16 } else { 0 };
            for t in &self.tx[s..e] {
                self.msgs.push(Msg {
                    dst: t.dst,
                    src_ip: g.src_ip,
                    first: d as u16,
                    last: last as u16,
                    seg,
                    bytes: bytes as u32,
                });
            }
            d = last + 1;
        }
    }

    /// Sends the window and starts a new one; returns how many datagram copies were
    /// handed to the kernel or failed. What the kernel will not take now is dropped and
    /// counted, never retried in a loop, so a full send buffer cannot stall the shard.
    fn flush(&mut self) -> u64 {
        self.build_messages();
        let total = self.msgs.len();
        let mut off = 0;
        let mut sent = Sent::default();
        let mut gso_sends = 0u64;
        let mut fallbacks = 0u64;
        while off < total {
            let (rx, dgrams) = (&self.rx, &self.dgrams);
            let (replies, lens) = (&self.replies, &self.reply_lens);
            let part = |i: u16| part_bytes(rx, dgrams, replies, lens, i);
            // Every copy and answer leaves from the local address its datagram was sent
            // to (packet info; None unless the socket is wildcard-bound), so a
            // multi-homed host never answers from an address the peer does not know.
            let items = self.msgs[off..].iter().map(|m| udp::Transmit {
                dst: m.dst,
                src_ip: m.src_ip,
                segment_size: (m.seg > 0).then_some(m.seg),
                parts: (m.first..=m.last).map(part),
            });
            match self.tx_batch.send(&self.socket, items) {
                Ok(k) => {
                    for m in &self.msgs[off..off + k] {
                        sent.datagrams += m.datagrams();
                        sent.bytes += u64::from(m.bytes);
                        gso_sends += u64::from(m.seg > 0);
                    }
                    off += k;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    sent.failed += self.msgs[off..].iter().map(Msg::datagrams).sum::<u64>();
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let m = self.msgs[off];
                    if m.seg > 0 && udp::is_gso_refusal(&e) {
                        // The route's device cannot segment (no checksum offload) or the
                        // socket forbids it. As quinn-udp does: stop asking, and send
                        // this destination's datagrams one by one.
                        if self.gso {
                            self.gso = false;
                            tracing::warn!(shard = self.index, error = %e, "the kernel refused a segmented send; UDP GSO off for this shard");
                        }
                        fallbacks += 1;
                        let s = self.send_one_by_one(&m);
                        sent.datagrams += s.datagrams;
                        sent.bytes += s.bytes;
                        sent.failed += s.failed;
                    } else {
                        // The first entry was refused (e.g. unreachable destination):
                        // drop that one and go on with the rest.
                        self.log_io_error("send", &e);
                        sent.failed += m.datagrams();
                    }
                    off += 1;
                }
            }
        }
        let c = self.router.counters_mut();
        c.tx_packets += sent.datagrams;
        c.tx_bytes += sent.bytes;
        c.gso_sends += gso_sends;
        c.gso_fallbacks += fallbacks;
        c.drops[DropReason::SendFailed as usize] += sent.failed;
        self.tx.clear();
        self.dgrams.clear();
        self.msgs.clear();
        self.n_replies = 0;
        sent.datagrams + sent.failed
    }

    /// The datagrams of a refused segmented entry, each as its own entry.
    fn send_one_by_one(&mut self, m: &Msg) -> Sent {
        let mut sent = Sent::default();
        let mut i = m.first;
        while i <= m.last {
            let (rx, dgrams) = (&self.rx, &self.dgrams);
            let (replies, lens) = (&self.replies, &self.reply_lens);
            let items = (i..=m.last).map(|j| udp::Transmit {
                dst: m.dst,
                src_ip: m.src_ip,
                segment_size: None,
                parts: [part_bytes(rx, dgrams, replies, lens, j)],
            });
            match self.tx_batch.send(&self.socket, items) {
                Ok(k) => {
                    for j in i..i + k as u16 {
                        sent.bytes += part_bytes(rx, dgrams, replies, lens, j).len() as u64;
                    }
                    sent.datagrams += k as u64;
                    i += k as u16;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    sent.failed += u64::from(m.last - i) + 1;
                    break;
                }
                Err(_) => {
                    sent.failed += 1;
                    i += 1;
                }
            }
        }
        sent
    }

    /// Counters go out once per wake (a handful of relaxed stores); the table gauges
    /// and the latency histogram only every [`PUBLISH_EVERY`], because merging a
    /// histogram costs more than forwarding a small batch. The poll timeout is the same
    /// period, so an idle shard still publishes.
    fn publish(&mut self, now: Instant) {
        // Periodic router work first (audio activity reports for speaker detection, due
        // every 100 ms), so its events leave with this wake's.
        self.router.poll(now);
        for ev in self.router.drain_events() {
            let _ = self.events.send(ev);
        }
        let m = &self.metrics[self.index];
        m.publish(&self.router.take_counters());
        if now.duration_since(self.last_publish) >= PUBLISH_EVERY {
            let (eps, latched) = self.router.table().counts();
            m.set_table_counts(eps, latched);
            if !self.latency.is_empty() && m.try_merge_latency(&self.latency) {
                self.latency.reset();
            }
            self.last_publish = now;
        }
    }

    /// Logs I/O errors at most once a second: a flood of them must not become a flood of
    /// log lines. Never names an address.
    fn log_io_error(&mut self, what: &str, e: &io::Error) {
        let now = Instant::now();
        if now.duration_since(self.send_errors_logged) >= Duration::from_secs(1) {
            tracing::warn!(shard = self.index, op = what, error = %e, "media socket error");
            self.send_errors_logged = now;
        }
    }
}

/// The bytes of window datagram or reply datagram number `i`.
#[inline]
fn part_bytes<'a>(
    rx: &'a RecvBatch,
    dgrams: &[Dgram],
    replies: &'a [StunReply],
    lens: &[(usize, usize)],
    i: u16,
) -> &'a [u8] {
    match reply_index(i) {
        Some((r, Part::Check)) => &replies[r].check[..lens[r].0],
        Some((r, Part::Response)) => &replies[r].response[..lens[r].1],
        None => {
            let g = &dgrams[usize::from(i)];
            let (off, len) = (g.off as usize, g.len as usize);
            &rx.bytes(usize::from(g.slot))[off..off + len]
        }
    }
}

/// Reply datagrams are numbered after the window's datagrams, from the top of the u16
/// range: two per answered check (at most one per receive slot, 1,024 a batch).
const REPLY_BASE: u16 = 0x8000;
const _: () = assert!(WINDOW < REPLY_BASE as usize);

/// Which of a reply's two datagrams.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    Check,
    Response,
}

fn reply_buf(i: usize, part: Part) -> u16 {
    REPLY_BASE + 2 * i as u16 + u16::from(part == Part::Response)
}

fn reply_index(buf: u16) -> Option<(usize, Part)> {
    let i = buf.checked_sub(REPLY_BASE)?;
    let part = if i % 2 == 0 {
        Part::Check
    } else {
        Part::Response
    };
    Some((usize::from(i / 2), part))
}

#[cfg(test)]
mod tests {
    //! The shard's own I/O decisions on real loopback sockets, driven without its thread:
    //! grouping a burst into segmented sends, and falling back when the kernel refuses
    //! them. The routing behind them is the router's and is tested there.
    use super::*;
    use blindfold_proto::table::{ConfRoutesBuilder, IngressLimits, Latch};
    use std::net::UdpSocket as StdSocket;

    const SSRC: u32 = 100;

    /// A shard on `socket` whose table holds one conference: endpoint 0 at `publisher`
    /// publishes [`SSRC`] to every endpoint in `subscribers`.
    fn shard_with_call(
        socket: StdSocket,
        publisher: SocketAddr,
        subscribers: &[SocketAddr],
        gso: bool,
    ) -> Shard {
        let (utx, urx) = crossbeam_channel::unbounded();
        let (etx, _) = crossbeam_channel::unbounded();
        let spec = ShardSpec {
            index: 0,
            socket,
            batch: 32,
            max_fanout: 16,
            core: None,
            router: RouterConfig {
                consent_timeout: Duration::from_secs(30),
            },
            gso,
            gro: false,
        };
        let mut shard = Shard::new(spec, urx, etx, Arc::new(crate::metrics::new_shards(1)));
        let mut routes = ConfRoutesBuilder::default();
        routes.own(SSRC, 0).unwrap();
        for (ep, addr) in std::iter::once(&publisher).chain(subscribers).enumerate() {
            let ep = ep as u32;
            utx.send(Update::Endpoint {
                ep,
                generation: 1,
                conf: 0,
                ice: None,
                limits: IngressLimits::UNLIMITED,
            })
            .unwrap();
            utx.send(Update::Address {
                ep,
                generation: 1,
                addr: Some((*addr, Latch::Declared)),
            })
            .unwrap();
            if ep > 0 {
                routes.subscribe(SSRC, ep);
            }
        }
        utx.send(Update::Routes {
            conf: 0,
            routes: Some(Arc::new(routes.build())),
        })
        .unwrap();
        shard.apply_updates();
        shard
    }

    fn rtp(seq: u16, len: usize) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(&SSRC.to_be_bytes());
        p.resize(len, seq as u8);
        p
    }

    fn sockets(n: usize) -> Vec<StdSocket> {
        (0..n)
            .map(|_| {
                let s = StdSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s
            })
            .collect()
    }

    /// Sends `burst` from `from` to the shard and lets the shard drain it as one batch
    /// (loopback delivery is synchronous, and the shard is driven from here).
    fn forward(shard: &mut Shard, from: &StdSocket, burst: &[Vec<u8>]) {
        let to = shard.socket.local_addr().unwrap();
        for p in burst {
            from.send_to(p, to).unwrap();
        }
        shard.drain_socket(&AtomicBool::new(false));
    }

    fn received(sock: &StdSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        (0..n)
            .map(|_| {
                let (len, _) = sock.recv_from(&mut buf).expect("copy arrives");
                buf[..len].to_vec()
            })
            .collect()
    }

    fn media_socket() -> StdSocket {
        udp::bind_media_socket("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap()
    }

    #[test]
    fn a_burst_goes_to_each_subscriber_as_segmented_sends() {
        if !udp::gso_supported("127.0.0.1:0".parse().unwrap()) {
            eprintln!("note: kernel without UDP_SEGMENT; skipping");
            return;
        }
        let peers = sockets(3);
        let addrs: Vec<SocketAddr> = peers.iter().map(|s| s.local_addr().unwrap()).collect();
        let mut shard = shard_with_call(media_socket(), addrs[0], &addrs[1..], true);
        // Three of 200 bytes and a shorter one close a run; the size changes, so the
        // last two make a second run.
        let burst: Vec<Vec<u8>> = [200, 200, 200, 120, 300, 300]
            .iter()
            .enumerate()
            .map(|(i, &len)| rtp(i as u16, len))
            .collect();
        forward(&mut shard, &peers[0], &burst);
        for sub in &peers[1..] {
            assert_eq!(received(sub, 6), burst, "in order, byte-identical");
        }
        let c = shard.router.take_counters();
        assert_eq!(c.gso_sends, 4, "two runs to each of two subscribers");
        assert_eq!(c.tx_packets, 12);
        assert_eq!(c.gso_fallbacks, 0);
        // The same burst with GSO off: the same copies, one entry each.
        let peers = sockets(3);
        let addrs: Vec<SocketAddr> = peers.iter().map(|s| s.local_addr().unwrap()).collect();
        let mut plain = shard_with_call(media_socket(), addrs[0], &addrs[1..], false);
        forward(&mut plain, &peers[0], &burst);
        for sub in &peers[1..] {
            assert_eq!(received(sub, 6), burst);
        }
        let c = plain.router.take_counters();
        assert_eq!((c.gso_sends, c.tx_packets), (0, 12));
    }

    #[test]
    fn a_refused_segmented_send_falls_back_per_destination_and_turns_gso_off() {
        if !udp::gso_supported("127.0.0.1:0".parse().unwrap()) {
            return;
        }
        let peers = sockets(3);
        let addrs: Vec<SocketAddr> = peers.iter().map(|s| s.local_addr().unwrap()).collect();
        let socket = media_socket();
        // Without UDP checksums the kernel refuses every segmented send (EINVAL), as a
        // device without checksum offload does (EIO).
        udp::set_udp_checksums(&socket, false).unwrap();
        let mut shard = shard_with_call(socket, addrs[0], &addrs[1..], true);
        let burst: Vec<Vec<u8>> = (0..5).map(|i| rtp(i, 200)).collect();
        forward(&mut shard, &peers[0], &burst);
        for sub in &peers[1..] {
            assert_eq!(received(sub, 5), burst, "nothing lost to the refusal");
        }
        let c = shard.router.take_counters();
        assert_eq!(
            c.gso_fallbacks, 2,
            "both destinations' entries were built segmented, both fell back"
        );
        assert_eq!((c.gso_sends, c.tx_packets), (0, 10));
        assert_eq!(c.drops[DropReason::SendFailed as usize], 0);
        assert!(!shard.gso, "GSO is off for this shard from now on");
        // The next burst is not segmented at all, so nothing more is refused.
        forward(&mut shard, &peers[0], &burst);
        for sub in &peers[1..] {
            assert_eq!(received(sub, 5), burst);
        }
        let c = shard.router.take_counters();
        assert_eq!((c.gso_fallbacks, c.gso_sends, c.tx_packets), (0, 0, 10));
    }

    #[test]
    fn reply_buffers_never_collide_with_receive_slots() {
        for i in [0, 1, 511, 1023] {
            for part in [Part::Check, Part::Response] {
                let b = reply_buf(i, part);
                assert!(b >= REPLY_BASE);
                assert_eq!(reply_index(b), Some((i, part)));
            }
        }
        assert_eq!(reply_index(1023), None);
    }
}
