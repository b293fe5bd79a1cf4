//! Forwarder metrics: how each shard publishes its counters without contention, and their
//! Prometheus text rendering.
//!
//! A shard counts into a plain [`LocalCounters`] per batch and publishes with relaxed
//! stores into its own cache-padded [`ShardMetrics`], so the per-packet cost is an add to
//! a local integer. Must not add labels: the shard number and the fixed drop reasons of
//! [`DropReason`] are the only ones, never an address or an id.

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use blindfold_proto::counters::{DropReason, LocalCounters};

/// One shard's published counters; written only by that shard, read by the control thread.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rtp_forwarded: AtomicU64,
    rtcp_forwarded: AtomicU64,
    stun_answered: AtomicU64,
    latches: AtomicU64,
    gro_buffers: AtomicU64,
    gso_sends: AtomicU64,
    gso_fallbacks: AtomicU64,
    ext_missing: AtomicU64,
    ext_malformed: AtomicU64,
    layer_switches: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
    /// Endpoints and latched addresses in this shard's table (gauges).
    endpoints: AtomicU64,
    latched: AtomicU64,
    /// Receive-to-send latency in nanoseconds, merged in by the shard every 500 ms
    /// (`shard::PUBLISH_EVERY`) with `try_lock`, so the shard never waits for a reader.
    latency: Mutex<Option<Histogram<u64>>>,
}

/// A plain copy of one shard's counters.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// See [`LocalCounters`].
    pub counters: LocalCounters,
    /// Endpoint slots in the shard's table.
    pub endpoints: u64,
    /// Latched addresses in the shard's table.
    pub latched: u64,
}

impl ShardMetrics {
    /// Adds a batch's counters. Only the owning shard calls this, so load+store suffices.
    pub fn publish(&self, c: &LocalCounters) {
        fn add(a: &AtomicU64, v: u64) {
            if v != 0 {
                a.store(a.load(Ordering::Relaxed) + v, Ordering::Relaxed);
            }
        }
        add(&self.rx_packets, c.rx_packets);
        add(&self.rx_bytes, c.rx_bytes);
        add(&self.tx_packets, c.tx_packets);
        add(&self.tx_bytes, c.tx_bytes);
        add(&self.rtp_forwarded, c.rtp_forwarded);
        add(&self.rtcp_forwarded, c.rtcp_forwarded);
        add(&self.stun_answered, c.stun_answered);
        add(&self.latches, c.latches);
        add(&self.gro_buffers, c.gro_buffers);
        add(&self.gso_sends, c.gso_sends);
        add(&self.gso_fallbacks, c.gso_fallbacks);
        add(&self.ext_missing, c.ext_missing);
        add(&self.ext_malformed, c.ext_malformed);
        add(&self.layer_switches, c.layer_switches);
        for (a, v) in self.drops.iter().zip(c.drops.iter()) {
            add(a, *v);
        }
    }

    /// Sets the table-size gauges.
    pub fn set_table_counts(&self, endpoints: usize, latched: usize) {
        self.endpoints.store(endpoints as u64, Ordering::Relaxed);
        self.latched.store(latched as u64, Ordering::Relaxed);
    }

    /// Merges `h` into the published latency histogram if no reader holds it; returns
    /// whether it did (the caller keeps accumulating otherwise).
    pub fn try_merge_latency(&self, h: &Histogram<u64>) -> bool {
        match self.latency.try_lock() {
            Ok(mut g) => {
                match g.as_mut() {
                    Some(acc) => {
                        let _ = acc.add(h);
                    }
                    None => *g = Some(h.clone()),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// A copy of the latency histogram so far.
    pub fn latency(&self) -> Option<Histogram<u64>> {
        self.latency.lock().ok().and_then(|g| g.clone())
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> Snapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut drops = [0; DropReason::COUNT];
        for (d, a) in drops.iter_mut().zip(self.drops.iter()) {
            *d = l(a);
        }
        Snapshot {
            counters: LocalCounters {
                rx_packets: l(&self.rx_packets),
                rx_bytes: l(&self.rx_bytes),
                tx_packets: l(&self.tx_packets),
                tx_bytes: l(&self.tx_bytes),
                rtp_forwarded: l(&self.rtp_forwarded),
                rtcp_forwarded: l(&self.rtcp_forwarded),
                stun_answered: l(&self.stun_answered),
                latches: l(&self.latches),
                gro_buffers: l(&self.gro_buffers),
                gso_sends: l(&self.gso_sends),
                gso_fallbacks: l(&self.gso_fallbacks),
                ext_missing: l(&self.ext_missing),
                ext_malformed: l(&self.ext_malformed),
                layer_switches: l(&self.layer_switches),
                drops,
            },
            endpoints: l(&self.endpoints),
            latched: l(&self.latched),
        }
    }
}

/// All shards' metrics, indexed by shard number.
pub type AllShards = Vec<CachePadded<ShardMetrics>>;

/// Creates metrics for `n` shards.
pub fn new_shards(n: usize) -> AllShards {
    (0..n)
        .map(|_| CachePadded::new(ShardMetrics::default()))
        .collect()
}

/// Renders the shards' counters in the Prometheus text exposition format (0.0.4).
/// `extra` lines (control-plane gauges) are appended verbatim.
pub fn render_prometheus(shards: &AllShards, extra: &str) -> String {
    let snaps: Vec<Snapshot> = shards.iter().map(|s| s.snapshot()).collect();
    let mut out = String::with_capacity(4096);
    type Getter = fn(&Snapshot) -> u64;
    let counters: [(&str, &str, Getter); 14] = [
        ("blindfold_rx_packets_total", "Datagrams received.", |s| {
            s.counters.rx_packets
        }),
        ("blindfold_rx_bytes_total", "Bytes received.", |s| {
            s.counters.rx_bytes
        }),
        ("blindfold_tx_packets_total", "Datagrams sent.", |s| {
            s.counters.tx_packets
        }),
        ("blindfold_tx_bytes_total", "Bytes sent.", |s| {
            s.counters.tx_bytes
        }),
        (
            "blindfold_rtp_forwarded_total",
            "RTP packets that produced at least one copy.",
            |s| s.counters.rtp_forwarded,
        ),
        (
            "blindfold_rtcp_forwarded_total",
            "RTCP packets that produced at least one copy.",
            |s| s.counters.rtcp_forwarded,
        ),
        (
            "blindfold_stun_answered_total",
            "STUN Binding requests answered.",
            |s| s.counters.stun_answered,
        ),
        (
            "blindfold_latches_total",
            "Endpoints latched or moved by STUN.",
            |s| s.counters.latches,
        ),
        (
            "blindfold_gro_buffers_total",
            "Receive buffers holding several datagrams coalesced by the kernel (UDP GRO).",
            |s| s.counters.gro_buffers,
        ),
        (
            "blindfold_gso_sends_total",
            "Segmented sends (UDP GSO), each several datagrams to one destination.",
            |s| s.counters.gso_sends,
        ),
        (
            "blindfold_gso_fallbacks_total",
            "Segmented sends the kernel refused, sent again one datagram at a time.",
            |s| s.counters.gso_fallbacks,
        ),
        (
            "blindfold_ext_missing_total",
            "Packets of a track declared with a header extension that lacked it (forwarded).",
            |s| s.counters.ext_missing,
        ),
        (
            "blindfold_ext_malformed_total",
            "Packets whose header extension did not fit its lengths (forwarded).",
            |s| s.counters.ext_malformed,
        ),
        (
            "blindfold_layer_switches_total",
            "Subscribers moved onto a video layer at one of its key frames.",
            |s| s.counters.layer_switches,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (i, s) in snaps.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", get(s));
        }
    }
    let name = "blindfold_dropped_packets_total";
    let _ = writeln!(
        out,
        "# HELP {name} Datagrams or copies dropped, by reason.\n# TYPE {name} counter"
    );
    for (i, s) in snaps.iter().enumerate() {
        for r in DropReason::ALL {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{i}\",reason=\"{}\"}} {}",
                r.label(),
                s.counters.drops[r as usize]
            );
        }
    }
    let name = "blindfold_shard_endpoints";
    let _ = writeln!(
        out,
        "# HELP {name} Endpoint slots in the shard's table.\n# TYPE {name} gauge"
    );
    for (i, s) in snaps.iter().enumerate() {
        let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", s.endpoints);
    }
    let name = "blindfold_shard_latched_endpoints";
    let _ = writeln!(
        out,
        "# HELP {name} Latched endpoints in the shard's table.\n# TYPE {name} gauge"
    );
    for (i, s) in snaps.iter().enumerate() {
        let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", s.latched);
    }
    let name = "blindfold_forward_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a datagram's receive to its copies' send.\n# TYPE {name} summary"
    );
    for (i, s) in shards.iter().enumerate() {
        if let Some(h) = s.latency() {
            for q in [0.5, 0.9, 0.99, 0.999] {
                let v = h.value_at_quantile(q) as f64 / 1e9;
                let _ = writeln!(out, "{name}{{shard=\"{i}\",quantile=\"{q}\"}} {v:e}");
            }
            let _ = writeln!(out, "{name}_count{{shard=\"{i}\"}} {}", h.len());
        }
    }
    out.push_str(extra);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_accumulates_and_renders() {
        let shards = new_shards(2);
        let mut c = LocalCounters {
            rx_packets: 3,
            ..Default::default()
        };
        c.drop(DropReason::UnknownSource);
        shards[1].publish(&c);
        shards[1].publish(&c);
        let s = shards[1].snapshot();
        assert_eq!(s.counters.rx_packets, 6);
        assert_eq!(s.counters.drops[DropReason::UnknownSource as usize], 2);
        let text = render_prometheus(&shards, "");
        assert!(text.contains("blindfold_rx_packets_total{shard=\"1\"} 6"));
        assert!(
            text.contains(
                "blindfold_dropped_packets_total{shard=\"1\",reason=\"unknown_source\"} 2"
            )
        );
        assert!(text.contains("blindfold_rx_packets_total{shard=\"0\"} 0"));
    }

    #[test]
    fn labels_are_unique() {
        let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::COUNT);
    }
}
