//! The generator's hot loops: one sender thread (`load-tx`) that publishes every stream
//! on schedule from each participant's own socket with `sendmmsg`, and receiver threads
//! (`load-rx-N`) that drain the participants' sockets with `recvmmsg` and account every
//! copy: latency, loss, duplicates, reordering, misrouting.
//!
//! Nothing here allocates per packet: send buffers, the schedule heap, the timestamp
//! rings and the per-subscription state are sized before the clock starts. The only
//! thing shared between the sender and the receivers is the ring of send timestamps of
//! each stream (one atomic word per slot: `send_ns << 16 | seq`) and the first sequence
//! number of the measured window; nothing is read from the payload. Owns no control-API
//! or forwarder state.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::profile::{self, MAX_PACKET, Rng, TrackProfile};
use super::topology::Topology;
use blindfold_e2ee::srtp::{EpochId, RTP_OVERHEAD, SrtpKeys, SrtpSender};
use blindfold_proto::stun as ice;
use blindfold_udp::{MAX_GSO_SEGMENTS, RecvBatch, SendBatch, Transmit};

/// Packets the sender hands to one `sendmmsg`.
const SEND_SCRATCH: usize = 64;
/// Most bytes in one segmented send (the UDP payload limit is 65,507).
const MAX_GSO_BYTES: usize = 65_000;
/// Consent refresh period (RFC 7675 asks for checks well inside 30 s).
const CONSENT_EVERY_NS: u64 = 10_000_000_000;
/// Beyond this lag the sender skips events instead of bursting to catch up.
const MAX_LAG_NS: u64 = 200_000_000;

/// ICE credentials of one participant (for consent refreshes).
#[derive(Debug, Clone)]
pub struct Creds {
    /// The forwarder's ufrag.
    pub ufrag: String,
    /// The pwd.
    pub pwd: String,
}

/// State shared by the sender and the receivers of one run.
pub struct Shared {
    /// Time zero of the run.
    pub epoch: Instant,
    /// Packets sent before this (ns since epoch) are warm-up and not measured.
    pub warmup_end_ns: u64,
    /// The sender stops at this instant (ns since epoch).
    pub end_ns: u64,
    ring_mask: u64,
    ring_len: usize,
    rings: Box<[AtomicU64]>,
    first_measured: Box<[AtomicU64]>,
    /// Set when the receivers should finish.
    pub stop_rx: AtomicBool,
    /// Copies received so far, for the progress bar.
    pub received: AtomicU64,
}

impl Shared {
    /// Sizes the timestamp rings for `streams` streams: between 256 and 4096 slots each,
    /// about 4 M slots (32 MiB) in all.
    pub fn new(streams: usize, epoch: Instant, warmup: Duration, duration: Duration) -> Self {
        let ring_len = (4usize << 20)
            .checked_div(streams.max(1))
            .unwrap_or(256)
            .next_power_of_two()
            .clamp(256, 4096);
        let rings = (0..streams * ring_len)
            .map(|_| AtomicU64::new(u64::MAX))
            .collect();
        let first_measured = (0..streams).map(|_| AtomicU64::new(u64::MAX)).collect();
        Self {
            epoch,
            warmup_end_ns: warmup.as_nanos() as u64,
            end_ns: (warmup + duration).as_nanos() as u64,
            ring_mask: ring_len as u64 - 1,
            ring_len,
            rings,
            first_measured,
            stop_rx: AtomicBool::new(false),
            received: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn slot(&self, stream: usize, ext: u64) -> &AtomicU64 {
        &self.rings[stream * self.ring_len + (ext & self.ring_mask) as usize]
    }
}

/// What the sender did.
#[derive(Debug)]
pub struct SenderResult {
    /// Packets of each stream sent in the measured window.
    pub measured_sent: Vec<u64>,
    /// Packets sent in the measured window, all streams.
    pub measured_packets: u64,
    /// Bytes sent in the measured window.
    pub measured_bytes: u64,
    /// Packets the generator's own sockets refused (its send buffer was full).
    pub send_refused: u64,
    /// Events skipped because the sender was more than 200 ms behind schedule.
    pub skipped_events: u64,
    /// Segmented sends (UDP GSO) made, each a burst's packets in one message.
    pub gso_sends: u64,
    /// Segmented sends the kernel refused; GSO was then turned off for the run.
    pub gso_fallbacks: u64,
    /// How late each send was against its schedule, in µs.
    pub lag_us: Histogram<u64>,
}

struct StreamState {
    profile: TrackProfile,
    participant: usize,
    ssrc: u32,
    ext: u64,
    ts: u32,
    events: u64,
    max_event: usize,
    interval_ns: u64,
}

/// How the sender sends.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// Seed of sizes and phases.
    pub seed: u64,
    /// Real SRTP instead of SRTP-sized opaque bytes.
    pub encrypt: bool,
    /// Send each burst of equal-size packets (a video frame) as one segmented send
    /// (UDP GSO), as a sender with GSO hands a frame to the kernel.
    pub gso: bool,
}

/// Runs the sender on the current thread until `shared.end_ns`.
/// `dests[p]` is where participant `p` sends: its forwarder's media address (all the
/// same for one forwarder; per participant in a cluster run).
pub fn run_sender(
    topo: &Topology,
    sockets: &[UdpSocket],
    dests: &[SocketAddr],
    creds: Option<&[Creds]>,
    shared: &Shared,
    opts: SendOptions,
) -> SenderResult {
    let (seed, encrypt) = (opts.seed, opts.encrypt);
    let mut rng = Rng::new(seed);
    // With --encrypt every participant gets its own master key, as a real sender's
    // per-sender key would be; one SrtpSender tracks every SSRC's rollover counter.
    let srtp_keys: Vec<SrtpKeys> = if encrypt {
        (0..sockets.len())
            .map(|_| {
                let mut key = [0u8; 16];
                let mut salt = [0u8; 12];
                key[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
                key[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
                salt[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
                salt[8..].copy_from_slice(&rng.next_u64().to_le_bytes()[..4]);
                SrtpKeys::derive(&key, &salt, Some(EpochId::new(1, 0)))
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut srtp = SrtpSender::new();
    let mut streams: Vec<StreamState> = (0..topo.streams())
        .map(|s| {
            let (p, t) = topo.stream_owner(s);
            let profile = topo.tracks[t];
            let mut sizes = [0u16; SEND_SCRATCH];
            // The largest event this profile produces bounds how many fit a batch.
            let max_event = (0..120)
                .map(|n| profile::event_sizes(&profile, n, &mut rng, &mut sizes))
                .max()
                .unwrap_or(1);
            StreamState {
                profile,
                participant: p,
                ssrc: Topology::ssrc(p, t),
                ext: 0,
                ts: rng.next_u64() as u32,
                events: 0,
                max_event,
                interval_ns: profile.interval_ns(),
            }
        })
        .collect();
    let n_streams = streams.len();
    let mut heap: BinaryHeap<Reverse<(u64, u32)>> =
        BinaryHeap::with_capacity(n_streams + sockets.len());
    let start = shared.now_ns();
    for (s, st) in streams.iter().enumerate() {
        // Spread the streams over one interval so they do not all fire at once.
        let offset = rng.next_u64() % st.interval_ns;
        heap.push(Reverse((start + offset, s as u32)));
    }
    if creds.is_some() {
        for p in 0..sockets.len() {
            let offset = rng.next_u64() % CONSENT_EVERY_NS;
            heap.push(Reverse((start + offset, (n_streams + p) as u32)));
        }
    }
    let mut bufs = vec![[0u8; MAX_PACKET]; SEND_SCRATCH];
    for b in &mut bufs {
        for chunk in b.chunks_mut(8) {
            let r = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
    let mut sizes = [0u16; SEND_SCRATCH];
    let mut batch = SendBatch::new(SEND_SCRATCH);
    let mut gso = opts.gso;
    let mut runs = Vec::with_capacity(SEND_SCRATCH);
    let mut res = SenderResult {
        measured_sent: vec![0; n_streams],
        measured_packets: 0,
        measured_bytes: 0,
        send_refused: 0,
        skipped_events: 0,
        gso_sends: 0,
        gso_fallbacks: 0,
        lag_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds"),
    };
    let mut txid_counter = 0u64;
    while let Some(&Reverse((due, id))) = heap.peek() {
        let now = shared.now_ns();
        if now >= shared.end_ns {
            break;
        }
        if due > now {
            std::thread::sleep(Duration::from_nanos((due - now).min(shared.end_ns - now)));
            continue;
        }
        heap.pop();
        let id = id as usize;
        if id >= n_streams {
            // Consent refresh: a STUN check every 10 s per participant. This allocates,
            // but once per participant per 10 s, not per media packet.
            let p = id - n_streams;
            if let Some(c) = creds.and_then(|c| c.get(p)) {
                txid_counter += 1;
                let mut txid = [0u8; 12];
                txid[..8].copy_from_slice(&txid_counter.to_be_bytes());
                let req = ice::binding_request(txid, &c.ufrag, "load", c.pwd.as_bytes());
                let _ = sockets[p].send_to(&req, dests[p]);
            }
            heap.push(Reverse((due + CONSENT_EVERY_NS, id as u32)));
            continue;
        }
        let st = &mut streams[id];
        let mut due = due;
        let lag = now - due;
        let _ = res.lag_us.record((lag / 1000).max(1));
        if lag > MAX_LAG_NS {
            let skip = lag / st.interval_ns;
            res.skipped_events += skip;
            st.events += skip;
            due += skip * st.interval_ns;
        }
        // Everything due by now, in one sendmmsg: a frame's packets, or a constant-rate
        // stream's backlog.
        let mut n = 0;
        let mut ts = [0u32; SEND_SCRATCH];
        let mut marker = [false; SEND_SCRATCH];
        loop {
            let k = profile::event_sizes(&st.profile, st.events, &mut rng, &mut sizes[n..]);
            ts[n..n + k].fill(st.ts);
            marker[n..n + k].fill(false);
            marker[n + k - 1] = true;
            st.ts = st.ts.wrapping_add(st.profile.ts_step());
            st.events += 1;
            n += k;
            due += st.interval_ns;
            if due > now || n + st.max_event > SEND_SCRATCH {
                break;
            }
        }
        let pt = st.profile.payload_type();
        let first_ext = st.ext;
        for i in 0..n {
            let seq = (first_ext + i as u64) as u16;
            let b = &mut bufs[i];
            b[0] = 0x80;
            b[1] = pt | if marker[i] { 0x80 } else { 0 };
            b[2..4].copy_from_slice(&seq.to_be_bytes());
            b[4..8].copy_from_slice(&ts[i].to_be_bytes());
            b[8..12].copy_from_slice(&st.ssrc.to_be_bytes());
            if let Some(keys) = srtp_keys.get(st.participant) {
                // The protected packet is exactly the profile's size: the plaintext
                // leaves room for the tag and MKI.
                let size = usize::from(sizes[i]);
                let plain = size.saturating_sub(RTP_OVERHEAD).max(12);
                if let Ok(len) = srtp.protect_rtp(keys, &mut b[..], plain) {
                    sizes[i] = len as u16;
                }
            }
        }
        let t = shared.now_ns();
        let measured = t >= shared.warmup_end_ns;
        for i in 0..n {
            let ext = first_ext + i as u64;
            shared
                .slot(id, ext)
                .store((t << 16) | (ext & 0xFFFF), Ordering::Release);
        }
        if measured && shared.first_measured[id].load(Ordering::Relaxed) == u64::MAX {
            shared.first_measured[id].store(first_ext, Ordering::Release);
        }
        st.ext += n as u64;
        let sock = &sockets[st.participant];
        let out = send_packets(
            &mut batch,
            sock,
            dests[st.participant],
            &bufs,
            &sizes[..n],
            &mut gso,
            &mut runs,
        );
        if measured {
            res.measured_packets += out.packets;
            res.measured_sent[id] += out.packets;
            res.measured_bytes += out.bytes;
        }
        res.send_refused += out.refused;
        res.gso_sends += out.gso_sends;
        res.gso_fallbacks += out.fallbacks;
        heap.push(Reverse((due, id as u32)));
        // Behind schedule the loop never sleeps; give the receivers sharing this core
        // their turn, even under a real-time policy where nothing else would preempt
        // the sender (scripts/bench.sh RT=…).
        if heap
            .peek()
            .is_some_and(|&Reverse((next, _))| next <= shared.now_ns())
        {
            std::thread::yield_now();
        }
    }
    res
}

/// What one [`send_packets`] did.
#[derive(Debug, Default, Clone, Copy)]
struct SendOutcome {
    packets: u64,
    bytes: u64,
    refused: u64,
    gso_sends: u64,
    fallbacks: u64,
}

/// Cuts packets `0..sizes.len()` into the messages they go out as: with `gso`, runs of
/// one size (the last may be shorter) within the kernel's segment and byte limits, each
/// one message; otherwise one packet per message.
fn plan_runs(sizes: &[u16], gso: bool, runs: &mut Vec<(usize, usize)>) {
    runs.clear();
    let n = sizes.len();
    let mut a = 0;
    while a < n {
        let mut b = a + 1;
        if gso {
            let seg = sizes[a];
            let mut total = usize::from(seg);
            while b < n
                && b - a < MAX_GSO_SEGMENTS
                && sizes[b - 1] == seg
                && sizes[b] <= seg
                && sizes[b] > 0
                && total + usize::from(sizes[b]) <= MAX_GSO_BYTES
            {
                total += usize::from(sizes[b]);
                b += 1;
            }
        }
        runs.push((a, b));
        a = b;
    }
}

/// Sends `bufs[i][..sizes[i]]` for every `i` from `sock` to `media`, a run per message
/// ([`plan_runs`]). A segmented send the kernel refuses turns `gso` off and is sent
/// again packet by packet; what the socket will not take now is counted as refused.
fn send_packets(
    batch: &mut SendBatch,
    sock: &UdpSocket,
    media: SocketAddr,
    bufs: &[[u8; MAX_PACKET]],
    sizes: &[u16],
    gso: &mut bool,
    runs: &mut Vec<(usize, usize)>,
) -> SendOutcome {
    plan_runs(sizes, *gso, runs);
    let mut out = SendOutcome::default();
    let mut r = 0;
    while r < runs.len() {
        let items = runs[r..].iter().map(|&(a, b)| Transmit {
            dst: media,
            src_ip: None,
            segment_size: (b - a > 1).then_some(sizes[a]),
            parts: (a..b).map(|i| &bufs[i][..usize::from(sizes[i])]),
        });
        match batch.send(sock, items) {
            Ok(0) => break,
            Ok(k) => {
                for &(a, b) in &runs[r..r + k] {
                    out.packets += (b - a) as u64;
                    out.bytes += sizes[a..b].iter().map(|&s| u64::from(s)).sum::<u64>();
                    out.gso_sends += u64::from(b - a > 1);
                }
                r += k;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                out.refused += runs[r..].iter().map(|&(a, b)| (b - a) as u64).sum::<u64>();
                break;
            }
            Err(e) if runs[r].1 - runs[r].0 > 1 && blindfold_udp::is_gso_refusal(&e) => {
                // The route cannot segment: the rest of the run goes plain, as the
                // forwarder does.
                *gso = false;
                out.fallbacks += 1;
                let (a, b) = runs[r];
                runs.splice(r..=r, (a..b).map(|i| (i, i + 1)));
            }
            Err(_) => {
                out.refused += (runs[r].1 - runs[r].0) as u64;
                r += 1;
            }
        }
    }
    out
}

/// Per-(receiver, stream) accounting.
#[derive(Clone, Copy, Default)]
struct SubState {
    subscribed: bool,
    seen: bool,
    max_ext: u64,
    /// Bit i set: `max_ext - i` was received.
    window: u128,
}

/// What one receiver thread saw.
#[derive(Debug)]
pub struct ReceiverResult {
    /// Send-to-receive latency of measured copies, in ns.
    pub latency_ns: Histogram<u64>,
    /// Distinct measured copies received.
    pub unique: u64,
    /// Bytes of those copies.
    pub bytes: u64,
    /// Copies received more than once.
    pub duplicates: u64,
    /// Copies that arrived after a later sequence number of the same stream.
    pub reordered: u64,
    /// Measured copies whose send time had left the ring (latency above the ring's span).
    pub stale: u64,
    /// Copies that came from another conference, from the receiver itself, or from an
    /// SSRC the generator never sent: an isolation failure of the target.
    pub misrouted: u64,
    /// Copies of a stream the receiver does not subscribe to.
    pub unsubscribed: u64,
    /// Datagrams that are not RTP (STUN responses, join acknowledgements).
    pub other: u64,
    /// Receive buffers in which the kernel had coalesced several copies (UDP GRO).
    pub gro_buffers: u64,
}

/// Runs one receiver over `members` (participant numbers with their sockets) until
/// `shared.stop_rx` is set. With `gro`, the sockets have UDP GRO on and each receive
/// buffer can hold a coalesced burst, every copy of which is accounted on its own.
pub fn run_receiver(
    topo: &Topology,
    members: &[(usize, &UdpSocket)],
    shared: &Shared,
    batch: usize,
    gro: bool,
) -> io::Result<ReceiverResult> {
    let mut poll = Poll::new()?;
    for (i, (_, s)) in members.iter().enumerate() {
        let fd = s.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
    }
    let (k, t_count, size) = (topo.publishers, topo.track_count(), topo.size);
    let per = k * t_count;
    let mut subs = vec![SubState::default(); members.len() * per];
    for (i, &(p, _)) in members.iter().enumerate() {
        topo.for_each_source(p % size, |m| {
            for t in 0..t_count {
                subs[i * per + m * t_count + t].subscribed = true;
            }
        });
    }
    let mut res = ReceiverResult {
        latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds"),
        unique: 0,
        bytes: 0,
        duplicates: 0,
        reordered: 0,
        stale: 0,
        misrouted: 0,
        unsubscribed: 0,
        other: 0,
        gro_buffers: 0,
    };
    let mut rx = if gro {
        RecvBatch::with_gro(batch)
    } else {
        RecvBatch::new(batch)
    };
    let mut events = Events::with_capacity(1024);
    loop {
        match poll.poll(&mut events, Some(Duration::from_millis(20))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let (me, sock) = members[i];
            loop {
                let n = match rx.recv(sock) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // ICMP port-unreachable and the like: not ours to count.
                    Err(_) => continue,
                };
                let now = shared.now_ns();
                let mut copies = 0;
                for j in 0..n {
                    let d = rx.get(j);
                    res.gro_buffers += u64::from(d.is_coalesced());
                    for pkt in d.segments() {
                        copies += 1;
                        account(
                            topo,
                            shared,
                            &mut subs[i * per..(i + 1) * per],
                            me,
                            pkt,
                            now,
                            &mut res,
                        );
                    }
                }
                shared.received.fetch_add(copies, Ordering::Relaxed);
                // A short batch: the queue was empty when the kernel looked, and under
                // edge-triggered polling anything later raises a new event (the socket
                // is unconnected, so no ICMP error can have cut the batch short).
                if n < rx.capacity() {
                    break;
                }
            }
        }
        if shared.stop_rx.load(Ordering::Relaxed) {
            return Ok(res);
        }
    }
}

#[inline]
fn account(
    topo: &Topology,
    shared: &Shared,
    subs: &mut [SubState],
    me: usize,
    pkt: &[u8],
    now: u64,
    res: &mut ReceiverResult,
) {
    if pkt.len() < 12 || pkt[0] >> 6 != 2 {
        res.other += 1;
        return;
    }
    let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
    let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
    let Some((p, t)) = Topology::parse_ssrc(ssrc) else {
        res.misrouted += 1;
        return;
    };
    let m = p % topo.size;
    if p == me || p / topo.size != me / topo.size || m >= topo.publishers || t >= topo.track_count()
    {
        res.misrouted += 1;
        return;
    }
    let Some(stream) = topo.stream(p, t) else {
        res.misrouted += 1;
        return;
    };
    let st = &mut subs[m * topo.track_count() + t];
    if !st.subscribed {
        res.unsubscribed += 1;
        return;
    }
    // Extend the 16-bit sequence number around the highest seen (RFC 3550 A.1 style).
    let ext = if st.seen {
        let base = st.max_ext & !0xFFFF;
        let cand = [base.wrapping_sub(0x1_0000), base, base + 0x1_0000].map(|b| b | u64::from(seq));
        *cand
            .iter()
            .filter(|&&c| c < u64::MAX - 0x2_0000)
            .min_by_key(|&&c| c.abs_diff(st.max_ext))
            .unwrap_or(&u64::from(seq))
    } else {
        u64::from(seq)
    };
    if !st.seen || ext > st.max_ext {
        let shift = if st.seen { ext - st.max_ext } else { 128 };
        st.window = if shift >= 128 { 0 } else { st.window << shift };
        st.window |= 1;
        st.max_ext = ext;
        st.seen = true;
    } else {
        let back = st.max_ext - ext;
        if back < 128 {
            if st.window & (1u128 << back) != 0 {
                res.duplicates += 1;
                return;
            }
            st.window |= 1u128 << back;
        }
        res.reordered += 1;
    }
    if ext < shared.first_measured[stream].load(Ordering::Acquire) {
        return; // warm-up
    }
    res.unique += 1;
    res.bytes += pkt.len() as u64;
    let e = shared.slot(stream, ext).load(Ordering::Acquire);
    if e != u64::MAX && e & 0xFFFF == u64::from(seq) {
        let sent = e >> 16;
        let _ = res.latency_ns.record(now.saturating_sub(sent).max(1));
    } else {
        res.stale += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Subscribe;

    fn pkt(p: usize, t: usize, seq: u16) -> Vec<u8> {
        let mut v = vec![0x80, 96];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&Topology::ssrc(p, t).to_be_bytes());
        v.extend_from_slice(&[0; 100]);
        v
    }

    #[test]
    fn accounts_dups_reorder_and_misrouting() {
        let topo = Topology::new(2, 3, None, vec![TrackProfile::Audio], Subscribe::All).unwrap();
        let shared = Shared::new(
            topo.streams(),
            Instant::now(),
            Duration::ZERO,
            Duration::from_secs(1),
        );
        for s in 0..topo.streams() {
            shared.first_measured[s].store(0, Ordering::Relaxed);
        }
        let mut subs = vec![SubState::default(); 3];
        for m in [1, 2] {
            subs[m].subscribed = true;
        }
        let mut res = run_receiver_result();
        let me = 0;
        for seq in [0u16, 1, 3, 2, 2] {
            account(&topo, &shared, &mut subs, me, &pkt(1, 0, seq), 10, &mut res);
        }
        assert_eq!(res.unique, 4);
        assert_eq!(res.duplicates, 1);
        assert_eq!(res.reordered, 1);
        account(&topo, &shared, &mut subs, me, &pkt(4, 0, 0), 10, &mut res);
        account(&topo, &shared, &mut subs, me, &pkt(0, 0, 0), 10, &mut res);
        assert_eq!(res.misrouted, 2, "another conference's and my own stream");
        // Sequence wrap keeps counting distinct packets.
        for seq in [65534u16, 65535, 0, 1] {
            account(&topo, &shared, &mut subs, me, &pkt(2, 0, seq), 10, &mut res);
        }
        assert_eq!(res.unique, 8);
    }

    fn run_receiver_result() -> ReceiverResult {
        ReceiverResult {
            latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap(),
            unique: 0,
            bytes: 0,
            duplicates: 0,
            reordered: 0,
            stale: 0,
            misrouted: 0,
            unsubscribed: 0,
            other: 0,
            gro_buffers: 0,
        }
    }
}
