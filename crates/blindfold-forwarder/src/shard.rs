//! One shard: a pinned thread with its own mio `Poll` and SO_REUSEPORT socket, receiving
//! in batches with recvmmsg, routing through its private [`Router`] and sending the
//! copies in batches with sendmmsg.
//!
//! Owns all media I/O of the shard and nothing else: routing decisions are the router's,
//! routing state changes come from the control thread as ordered updates. Nothing here
//! allocates per packet or takes a lock a reader could hold: buffers and transmit lists
//! are sized at start, metrics are published once per batch with relaxed stores.

use std::io;
use std::net::IpAddr;
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
use blindfold_proto::route::{Outcome, Router, RouterConfig, Transmit};
use blindfold_proto::stun::MAX_RESPONSE;
use blindfold_proto::table::Update;
use blindfold_udp::{RecvBatch, SendBatch};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Most datagrams in one sendmmsg call (the kernel's UIO_MAXIOV).
const SEND_CHUNK: usize = 1024;
/// How often idle shards publish their latency histogram and table gauges.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

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
    let ShardSpec {
        index,
        socket,
        batch,
        max_fanout,
        core,
        router,
    } = spec;
    let mut socket = UdpSocket::from_std(socket);
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let thread = std::thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || {
            if let Some(core) = core
                && !core_affinity::set_for_current(core)
            {
                tracing::warn!(shard = index, "could not pin shard to its core");
            }
            let mut shard = Shard::new(
                index, batch, max_fanout, router, socket, updates, events, metrics,
            );
            if let Err(e) = shard.run(poll, &stop) {
                tracing::error!(shard = index, error = %e, "shard stopped on error");
            }
        })?;
    Ok(ShardHandle { waker, thread })
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
    tx: Vec<Transmit>,
    max_fanout: usize,
    replies: Vec<[u8; MAX_RESPONSE]>,
    reply_lens: Vec<usize>,
    /// The local address each reply's request was sent to: the reply comes from it.
    reply_src: Vec<Option<IpAddr>>,
    latency: Histogram<u64>,
    last_publish: Instant,
    send_errors_logged: Instant,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    fn new(
        index: usize,
        batch: usize,
        max_fanout: usize,
        router: RouterConfig,
        socket: UdpSocket,
        updates: Receiver<Update>,
        events: Sender<ShardEvent>,
        metrics: Arc<AllShards>,
    ) -> Self {
        let max_fanout = max_fanout.max(1);
        // Room for a full batch at typical fan-out, and never less than two worst-case
        // packets, so `flush_if_needed` keeps it from ever reallocating.
        let tx_cap = (batch * 16).max(2 * max_fanout) + batch;
        Self {
            index,
            socket,
            router: Router::new(router),
            updates,
            events,
            metrics,
            rx: RecvBatch::new(batch),
            tx_batch: SendBatch::new(SEND_CHUNK),
            tx: Vec::with_capacity(tx_cap),
            max_fanout,
            replies: vec![[0u8; MAX_RESPONSE]; batch],
            reply_lens: vec![0; batch],
            reply_src: vec![None; batch],
            // 1 µs .. 10 s in ns, 3 significant figures.
            latency: Histogram::new_with_bounds(1_000, 10_000_000_000, 3)
                .expect("static histogram bounds are valid"),
            last_publish: Instant::now(),
            send_errors_logged: Instant::now() - Duration::from_secs(60),
        }
    }

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
            // Edge-triggered: drain the socket until it would block, whatever woke us.
            self.drain_socket(stop);
            self.publish(Instant::now());
        }
    }

    fn apply_updates(&mut self) {
        while let Ok(u) = self.updates.try_recv() {
            self.router.apply(u);
        }
    }

    fn drain_socket(&mut self, stop: &AtomicBool) {
        let mut errors = 0;
        loop {
            match self.rx.recv(&self.socket) {
                Ok(n) => {
                    // Apply control changes after the receive and before routing: any
                    // update enqueued before a datagram was sent is then visible to it,
                    // so a DELETE that has answered stops traffic at once.
                    self.apply_updates();
                    self.process(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors queued on the socket surface here; they are not fatal.
                    errors += 1;
                    self.log_io_error("recv", &e);
                    if errors > 64 {
                        return;
                    }
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }

    fn process(&mut self, n: usize) {
        let now = Instant::now();
        self.tx.clear();
        let mut replies = 0;
        let mut rx_bytes = 0u64;
        for i in 0..n {
            if self.tx.len() + self.max_fanout > self.tx.capacity() {
                self.flush();
            }
            let d = self.rx.get(i);
            let (pkt, src, truncated) = (d.bytes, d.src, d.truncated);
            let local = d.dst_ip;
            rx_bytes += pkt.len() as u64;
            if truncated {
                self.router.counters_mut().drop(DropReason::Oversize);
                continue;
            }
            let reply = &mut self.replies[replies];
            match self
                .router
                .handle(i as u16, pkt, src, now, &mut self.tx, reply)
            {
                Outcome::Reply(len) => {
                    self.reply_lens[replies] = len;
                    self.reply_src[replies] = local;
                    self.tx.push(Transmit {
                        buf: reply_buf(replies),
                        dst: src,
                    });
                    replies += 1;
                }
                Outcome::Forwarded(_) | Outcome::Dropped(_) => {}
            }
        }
        let c = self.router.counters_mut();
        c.rx_packets += n as u64;
        c.rx_bytes += rx_bytes;
        let copies = self.tx.len();
        self.flush();
        if copies > 0 {
            let ns = now.elapsed().as_nanos() as u64;
            let _ = self.latency.record_n(ns.max(1_000), copies as u64);
        }
        for ev in self.router.drain_events() {
            let _ = self.events.send(ev);
        }
        self.publish(now);
    }

    /// Sends every queued transmit; what the kernel will not take now is dropped and
    /// counted, never retried in a loop, so a full send buffer cannot stall the shard.
    fn flush(&mut self) {
        let mut off = 0;
        let mut sent_bytes = 0u64;
        let mut failed = 0u64;
        let total = self.tx.len();
        while off < total {
            let rx = &self.rx;
            let replies = &self.replies;
            let lens = &self.reply_lens;
            let reply_src = &self.reply_src;
            // Every copy and answer leaves from the local address its datagram was sent
            // to (packet info; None unless the socket is wildcard-bound), so a
            // multi-homed host never answers from an address the peer does not know.
            let items = self.tx[off..].iter().map(|t| {
                let (data, src_ip): (&[u8], _) = match reply_index(t.buf) {
                    Some(r) => (&replies[r][..lens[r]], reply_src[r]),
                    None => {
                        let d = rx.get(usize::from(t.buf));
                        (d.bytes, d.dst_ip)
                    }
                };
                blindfold_udp::Transmit {
                    dst: t.dst,
                    src_ip,
                    segment_size: None,
                    parts: [data],
                }
            });
            match self.tx_batch.send(&self.socket, items) {
                Ok(k) => {
                    for t in &self.tx[off..off + k] {
                        sent_bytes += match reply_index(t.buf) {
                            Some(r) => lens[r] as u64,
                            None => rx.get(usize::from(t.buf)).bytes.len() as u64,
                        };
                    }
                    off += k;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    failed += (total - off) as u64;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The first datagram was refused (e.g. unreachable destination):
                    // drop that one and go on with the rest.
                    self.log_io_error("send", &e);
                    failed += 1;
                    off += 1;
                }
            }
        }
        let c = self.router.counters_mut();
        c.tx_packets += (total as u64) - failed;
        c.tx_bytes += sent_bytes;
        c.drops[DropReason::SendFailed as usize] += failed;
        self.tx.clear();
    }

    /// Counters go out after every batch (a handful of relaxed stores); the table gauges
    /// and the latency histogram only every [`PUBLISH_EVERY`], because merging a
    /// histogram costs more than forwarding a small batch. The poll timeout is the same
    /// period, so an idle shard still publishes.
    fn publish(&mut self, now: Instant) {
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

/// Reply buffers are numbered after the receive slots, from the top of the u16 range.
const REPLY_BASE: u16 = 0x8000;

fn reply_buf(i: usize) -> u16 {
    REPLY_BASE + i as u16
}

fn reply_index(buf: u16) -> Option<usize> {
    buf.checked_sub(REPLY_BASE).map(usize::from)
}
