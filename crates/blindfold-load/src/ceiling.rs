//! The ceiling: the least a forwarder can do on this machine. A thread with the shard's
//! socket setup ([`sys::bind_media_socket`], same buffer sizes), the same `recvmmsg`
//! batch and the same `sendmmsg` chunking, and no routing: no sender check, no latching,
//! no hash lookup, no metrics. Each RTP datagram goes to every other member of its
//! group, found by arithmetic on the SSRC the load generator wrote (see
//! [`super::topology`]), with the iovecs pointing at the received buffer exactly as in
//! the shard.
//!
//! Two loops ([`CeilingLoop`]): `minimal` (the default) is the least any forwarder can
//! do per wake, a blocking `recvmmsg(MSG_WAITFORONE)` then `sendmmsg`, two syscalls and
//! no poll; `poll` is the shard's own structure (mio edge-triggered poll, `recvmmsg`
//! until a short batch shows the queue drained, `sendmmsg`), which shows what the event
//! loop itself costs.
//!
//! Members join with a 14-byte datagram `00 01 'C' 'E' 'I' 'L' p:u32 group:u32` (first
//! byte in the STUN range, so it can never be mistaken for RTP), which is echoed back as
//! the acknowledgement. Owns its thread and socket; touches no forwarder state.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use super::topology::Topology;
use blindfold_udp::{self as sys, RecvBatch, SendBatch, Transmit};

/// Prefix of a join datagram.
pub const JOIN_MAGIC: [u8; 6] = [0x00, 0x01, b'C', b'E', b'I', b'L'];
/// Length of a join datagram.
pub const JOIN_LEN: usize = 14;
const SEND_CHUNK: usize = 1024;
const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// A join datagram for participant `p` of a group of `group` members.
pub fn join_datagram(p: u32, group: u32) -> [u8; JOIN_LEN] {
    let mut d = [0u8; JOIN_LEN];
    d[..6].copy_from_slice(&JOIN_MAGIC);
    d[6..10].copy_from_slice(&p.to_be_bytes());
    d[10..14].copy_from_slice(&group.to_be_bytes());
    d
}

/// Settings of a ceiling instance.
#[derive(Debug, Clone, clap::Args)]
pub struct CeilingArgs {
    /// UDP address to bind.
    #[arg(long, default_value = "127.0.0.1:10100")]
    pub media: SocketAddr,
    /// Datagrams per recvmmsg (the forwarder's default).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// SO_RCVBUF / SO_SNDBUF asked for, in bytes (the forwarder's default).
    #[arg(long, default_value_t = 8 << 20)]
    pub socket_buffer: usize,
    /// Core to pin the thread to (none: leave it to the scheduler or to taskset).
    #[arg(long)]
    pub core: Option<usize>,
    /// Which loop: minimal (blocking recvmmsg with MSG_WAITFORONE, then sendmmsg) or
    /// poll (the shard's mio edge-triggered loop).
    #[arg(long = "loop", value_enum, default_value = "minimal")]
    pub mode: CeilingLoop,
}

/// The ceiling's receive loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CeilingLoop {
    /// Blocking `recvmmsg(MSG_WAITFORONE)` → `sendmmsg`: two syscalls per wake.
    Minimal,
    /// mio edge-triggered poll, `recvmmsg(MSG_DONTWAIT)` until a short batch, `sendmmsg`.
    Poll,
}

/// How long the minimal loop's blocking receive waits before it looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Counters of a running ceiling.
#[derive(Debug, Default)]
pub struct CeilingCounters {
    /// Datagrams received.
    pub rx: AtomicU64,
    /// Copies the kernel accepted.
    pub tx: AtomicU64,
    /// Copies refused (send buffer full, or an error).
    pub send_failed: AtomicU64,
}

/// A running ceiling thread.
pub struct Ceiling {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
    counters: Arc<CeilingCounters>,
}

impl Ceiling {
    /// Binds the socket and starts the thread (named `ceiling`).
    pub fn start(args: &CeilingArgs) -> io::Result<Self> {
        let std_sock = sys::bind_media_socket(args.media, args.socket_buffer)?;
        let addr = std_sock.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mode = args.mode;
        let socket = match mode {
            CeilingLoop::Minimal => {
                std_sock.set_nonblocking(false)?;
                std_sock.set_read_timeout(Some(STOP_CHECK))?;
                Socket::Blocking(std_sock)
            }
            CeilingLoop::Poll => {
                let mut socket = UdpSocket::from_std(std_sock);
                poll.registry()
                    .register(&mut socket, SOCKET, Interest::READABLE)?;
                Socket::Polled(socket)
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(CeilingCounters::default());
        let (batch, core) = (args.batch, args.core);
        let (stop2, counters2) = (stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("ceiling".into())
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                let mut l = Loop::new(socket, batch, counters2);
                let r = match mode {
                    CeilingLoop::Minimal => l.run_minimal(&stop2),
                    CeilingLoop::Poll => l.run_poll(poll, &stop2),
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "ceiling stopped on error");
                }
            })?;
        Ok(Self {
            addr,
            stop,
            waker,
            thread,
            counters,
        })
    }

    /// The bound address.
    pub fn media_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live counters.
    pub fn counters(&self) -> &Arc<CeilingCounters> {
        &self.counters
    }

    /// Stops and joins the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        let _ = self.thread.join();
    }
}

/// The ceiling's socket: blocking for the minimal loop, registered with mio for the
/// poll loop.
enum Socket {
    Blocking(std::net::UdpSocket),
    Polled(UdpSocket),
}

impl std::os::fd::AsRawFd for Socket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Socket::Blocking(s) => s.as_raw_fd(),
            Socket::Polled(s) => s.as_raw_fd(),
        }
    }
}

struct Loop {
    socket: Socket,
    rx: RecvBatch,
    tx_batch: SendBatch,
    tx: Vec<(u16, SocketAddr)>,
    /// Member addresses by participant number; `None` until it joins.
    members: Vec<Option<SocketAddr>>,
    group: usize,
    counters: Arc<CeilingCounters>,
}

impl Loop {
    fn new(socket: Socket, batch: usize, counters: Arc<CeilingCounters>) -> Self {
        Self {
            socket,
            rx: RecvBatch::new(batch),
            tx_batch: SendBatch::new(SEND_CHUNK),
            tx: Vec::with_capacity(batch * 16 + 2 * 256),
            members: Vec::new(),
            group: 1,
            counters,
        }
    }

    /// Two syscalls per wake: the receive sleeps in the kernel until a datagram comes
    /// (or [`STOP_CHECK`] passes), then takes whatever else is queued.
    fn run_minimal(&mut self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            match self.rx.recv_wait(&self.socket) {
                Ok(n) => self.process(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                // ICMP errors surface here, as in the shard; they are not fatal.
                Err(_) => {}
            }
        }
        Ok(())
    }

    fn run_poll(&mut self, mut poll: Poll, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(16);
        loop {
            match poll.poll(&mut events, Some(Duration::from_millis(500))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            loop {
                match self.rx.recv(&self.socket) {
                    Ok(n) => {
                        self.process(n);
                        // As the shard: a short batch shows the queue drained.
                        if n < self.rx.capacity() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // ICMP errors surface here, as in the shard; they are not fatal.
                    Err(_) => {}
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
        }
    }

    fn process(&mut self, n: usize) {
        self.tx.clear();
        for i in 0..n {
            if self.tx.len() + self.group > self.tx.capacity() {
                self.flush();
            }
            let d = self.rx.get(i);
            let (pkt, src) = (d.bytes, d.src);
            if pkt.first().is_some_and(|b| b >> 6 == 2) && pkt.len() >= 12 {
                let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
                let Some((p, _)) = Topology::parse_ssrc(ssrc) else {
                    continue;
                };
                let first = p - p % self.group;
                let last = (first + self.group).min(self.members.len());
                for j in first..last {
                    if j != p
                        && let Some(dst) = self.members[j]
                    {
                        self.tx.push((i as u16, dst));
                    }
                }
            } else if pkt.len() == JOIN_LEN && pkt[..6] == JOIN_MAGIC {
                let p = u32::from_be_bytes([pkt[6], pkt[7], pkt[8], pkt[9]]) as usize;
                let group = u32::from_be_bytes([pkt[10], pkt[11], pkt[12], pkt[13]]) as usize;
                if p < super::topology::MAX_PARTICIPANTS && group > 0 {
                    if self.members.len() <= p {
                        self.members.resize(p + 1, None);
                    }
                    self.members[p] = Some(src);
                    self.group = group;
                    if self.tx.capacity() < 2 * group + self.rx.capacity() {
                        self.flush();
                        self.tx.reserve(2 * group + self.rx.capacity());
                    }
                    // The acknowledgement is the join itself, echoed.
                    self.tx.push((i as u16, src));
                }
            }
        }
        self.counters.rx.fetch_add(n as u64, Ordering::Relaxed);
        self.flush();
    }

    /// Same policy as the shard: what the kernel will not take now is dropped.
    fn flush(&mut self) {
        let mut off = 0;
        let mut failed = 0u64;
        let total = self.tx.len();
        while off < total {
            let rx = &self.rx;
            let items = self.tx[off..]
                .iter()
                .map(|&(b, dst)| Transmit::new(rx.get(usize::from(b)).bytes, dst));
            match self.tx_batch.send(&self.socket, items) {
                Ok(k) => off += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    failed += (total - off) as u64;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed += 1;
                    off += 1;
                }
            }
        }
        let c = &self.counters;
        c.tx.fetch_add(total as u64 - failed, Ordering::Relaxed);
        c.send_failed.fetch_add(failed, Ordering::Relaxed);
        self.tx.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_datagram_is_not_rtp() {
        let d = join_datagram(7, 5);
        assert_eq!(d[0] >> 6, 0);
        assert_eq!(&d[..6], &JOIN_MAGIC);
    }
}
