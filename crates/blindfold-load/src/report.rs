//! The result of one load run: what was offered, what came back, how late, what it cost
//! in CPU on both sides, where losses happened, and whether the generator itself was the
//! bottleneck. Also writes hdrhistogram percentile files (`.hgrm`, the text format of
//! HdrHistogram's `outputPercentileDistribution`). Formatting only; no I/O but the
//! writer it is given.

use std::fmt;
use std::io::{self, Write};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        let us = |v: u64| v as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// CPU consumed in the measured window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuReport {
    /// User seconds.
    pub user_s: f64,
    /// System seconds.
    pub sys_s: f64,
    /// (user + system) ÷ wall time: 1.0 is one core fully busy.
    pub cores: f64,
    /// The busiest thread's share of one core.
    pub busiest_thread: f64,
    /// µs of CPU per forwarded copy received.
    pub us_per_copy: f64,
}

/// Where copies were lost, as far as the kernel and the target tell.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Drops {
    /// Datagrams dropped at the target's socket(s) because its receive buffer was full
    /// (/proc/net/udp; only when the target runs on this host).
    pub target_socket: Option<u64>,
    /// Datagrams dropped at the generator's sockets (its receivers fell behind).
    pub generator_sockets: u64,
    /// Packets the generator's own sockets refused to send.
    pub generator_send_refused: u64,
    /// Copies the forwarder counted as `send_failed`.
    pub forwarder_send_failed: Option<f64>,
    /// Datagrams the forwarder dropped for any other reason.
    pub forwarder_other: Option<f64>,
}

/// The generator's use of UDP offloads in the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Offload {
    /// Bursts were sent as segmented sends (`--gso`, and the kernel has it).
    pub gso: bool,
    /// Segmented sends made.
    pub gso_sends: u64,
    /// Segmented sends the kernel refused (GSO was then turned off).
    pub gso_fallbacks: u64,
    /// The receivers took coalesced bursts (`--gro`, and the kernel has it).
    pub gro: bool,
    /// Receive buffers that held coalesced copies.
    pub gro_buffers: u64,
}

/// Subscription changes made during the measured window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Churn {
    /// Accepted changes per second.
    pub per_s: f64,
    /// Refused or failed requests.
    pub failed: u64,
}

/// The report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `forwarder` or `ceiling`.
    pub target: String,
    /// Shards of a spawned forwarder.
    pub shards: Option<usize>,
    /// Conferences.
    pub conferences: usize,
    /// Participants per conference.
    pub size: usize,
    /// Publishers per conference.
    pub publishers: usize,
    /// Track profiles per publisher.
    pub tracks: Vec<String>,
    /// Subscription mode.
    pub subscribe: String,
    /// All participants.
    pub participants: usize,
    /// Mean copies out per packet in.
    pub mean_fanout: f64,
    /// Measured window in seconds.
    pub measured_s: f64,
    /// Packets/s the generator sent in the window.
    pub in_pps: f64,
    /// Copies expected in the window.
    pub expected_copies: u64,
    /// Distinct copies received.
    pub received_copies: u64,
    /// Expected minus received.
    pub lost_copies: u64,
    /// Lost ÷ expected.
    pub loss: f64,
    /// Duplicates received.
    pub duplicates: u64,
    /// Reordered copies.
    pub reordered: u64,
    /// Copies too late for the timestamp ring (no latency sample).
    pub stale: u64,
    /// Copies that reached someone outside the stream's conference, or its sender.
    pub misrouted: u64,
    /// Copies of streams the receiver does not subscribe to.
    pub unsubscribed: u64,
    /// Copies out per second.
    pub out_pps: f64,
    /// Output in Gbit/s (UDP payload bytes).
    pub out_gbps: f64,
    /// Send-to-receive latency.
    pub latency_us: Percentiles,
    /// Target CPU (None when its process is unknown).
    pub target_cpu: Option<CpuReport>,
    /// The generator's CPU (its `load-*` threads).
    pub generator_cpu: CpuReport,
    /// Resident memory of the target at the end (None when unknown).
    pub target_rss_bytes: Option<u64>,
    /// Where losses happened.
    pub drops: Drops,
    /// How late the sender was against its schedule, µs (p50, p99, max).
    pub send_lag_us: [f64; 3],
    /// Events skipped because the sender fell more than 200 ms behind.
    pub skipped_events: u64,
    /// Reasons to think the generator, not the target, limited this run (empty: none).
    pub generator_limited: Vec<String>,
    /// The generator's use of GSO and GRO.
    pub offload: Offload,
    /// Subscription churn, when asked for.
    pub churn: Option<Churn>,
    /// Datagrams each cluster forwarder sent per second (empty for one forwarder).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_tx_pps: Vec<f64>,
    /// Cluster figures, for a run across several forwarders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReport>,
    /// The latency histogram, for percentile files and plots.
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

/// One forwarder's share of a cluster run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeFigures {
    /// Node id.
    pub id: String,
    /// Participants placed on it.
    pub participants: usize,
    /// Endpoints it held (participants and relays).
    pub endpoints: usize,
    /// Datagrams it sent per second (copies to members and over links).
    pub tx_pps: f64,
}

/// How a cluster run spread, and what crossed links.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterReport {
    /// The layout asked for.
    pub layout: String,
    /// Per forwarder.
    pub nodes: Vec<NodeFigures>,
    /// Copies per second that crossed a link: the forwarders' sends beyond the copies
    /// members received.
    pub link_pps: f64,
    /// `link_pps` over all the forwarders' sends.
    pub link_share: f64,
    /// Link copies per packet published, from the relay plans.
    pub planned_link_copies_per_packet: f64,
    /// Most forwarders one call used.
    pub max_span: usize,
    /// Calls on more than one forwarder.
    pub spanning_calls: usize,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "target {}{}: {} conferences × {} participants ({} publishing {}; subscribe {}), fan-out {:.1}",
            self.target,
            self.shards
                .map(|s| format!(" ({s} shard{})", if s == 1 { "" } else { "s" }))
                .unwrap_or_default(),
            self.conferences,
            self.size,
            self.publishers,
            self.tracks.join("+"),
            self.subscribe,
            self.mean_fanout
        )?;
        writeln!(
            f,
            "measured {:.1} s: in {:.0} packets/s, out {:.0} copies/s, {:.3} Gbit/s",
            self.measured_s, self.in_pps, self.out_pps, self.out_gbps
        )?;
        writeln!(
            f,
            "copies: expected {}, received {}, lost {} ({:.4} %), duplicates {}, reordered {}, misrouted {}, unsubscribed {}",
            self.expected_copies,
            self.received_copies,
            self.lost_copies,
            self.loss * 100.0,
            self.duplicates,
            self.reordered,
            self.misrouted,
            self.unsubscribed
        )?;
        let l = &self.latency_us;
        writeln!(
            f,
            "latency µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples, {} without a send time)",
            l.p50, l.p90, l.p99, l.p999, l.max, l.count, self.stale
        )?;
        if let Some(c) = &self.target_cpu {
            writeln!(
                f,
                "target CPU: {:.3} s user + {:.3} s sys = {:.0} % of a core (busiest thread {:.0} %), {:.3} µs per copy",
                c.user_s,
                c.sys_s,
                c.cores * 100.0,
                c.busiest_thread * 100.0,
                c.us_per_copy
            )?;
        }
        let g = &self.generator_cpu;
        writeln!(
            f,
            "generator CPU: {:.0} % of a core (busiest thread {:.0} %); send lag µs p50 {:.0} p99 {:.0} max {:.0}",
            g.cores * 100.0,
            g.busiest_thread * 100.0,
            self.send_lag_us[0],
            self.send_lag_us[1],
            self.send_lag_us[2]
        )?;
        let o = &self.offload;
        writeln!(
            f,
            "generator offload: GSO {}, GRO receivers {}",
            if o.gso {
                format!(
                    "on ({} segmented sends, {} refused)",
                    o.gso_sends, o.gso_fallbacks
                )
            } else {
                "off".into()
            },
            if o.gro {
                format!("on ({} coalesced buffers)", o.gro_buffers)
            } else {
                "off".into()
            }
        )?;
        if let Some(c) = &self.churn {
            writeln!(
                f,
                "subscription changes: {:.0}/s accepted, {} failed",
                c.per_s, c.failed
            )?;
        }
        if let Some(c) = &self.cluster {
            writeln!(
                f,
                "cluster ({}): {} calls span forwarders (at most {}); link copies {:.0}/s = {:.1} % of all sends (plan: {:.2} per packet published)",
                c.layout,
                c.spanning_calls,
                c.max_span,
                c.link_pps,
                c.link_share * 100.0,
                c.planned_link_copies_per_packet
            )?;
            for n in &c.nodes {
                writeln!(
                    f,
                    "  {}: {} participants, {} endpoints, {:.0} datagrams/s out",
                    n.id, n.participants, n.endpoints, n.tx_pps
                )?;
            }
        }
        if let Some(rss) = self.target_rss_bytes {
            writeln!(f, "target RSS: {:.1} MiB", rss as f64 / (1 << 20) as f64)?;
        }
        let d = &self.drops;
        writeln!(
            f,
            "drops: target socket {}, generator sockets {}, generator send refused {}, forwarder send_failed {}, forwarder other {}",
            d.target_socket.map_or("?".into(), |v| v.to_string()),
            d.generator_sockets,
            d.generator_send_refused,
            d.forwarder_send_failed
                .map_or("-".into(), |v| format!("{v:.0}")),
            d.forwarder_other.map_or("-".into(), |v| format!("{v:.0}")),
        )?;
        if self.generator_limited.is_empty() {
            writeln!(f, "generator: kept up (not the bottleneck)")
        } else {
            writeln!(
                f,
                "GENERATOR IS THE BOTTLENECK: {}",
                self.generator_limited.join("; ")
            )
        }
    }
}

/// Writes `h` (nanoseconds) as an HdrHistogram percentile distribution in microseconds.
pub fn write_hgrm(h: &Histogram<u64>, mut w: impl Write) -> io::Result<()> {
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if h.is_empty() {
        return Ok(());
    }
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / 1000.0;
        if q < 1.0 {
            writeln!(
                w,
                "{value:12.3} {q:14.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(w, "{value:12.3} {q:14.12} {total:10}")?;
        }
    }
    writeln!(
        w,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    )?;
    writeln!(
        w,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1000.0,
        h.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    )
}

/// The (percentile, µs) points of `h`'s distribution, for plots.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| {
            (
                v.quantile_iterated_to(),
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let mut out = Vec::new();
        write_hgrm(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("       Value     Percentile"));
        assert!(text.contains("#[Max     ="));
        assert!(text.lines().count() > 20);
        let p = Percentiles::from_ns(&h);
        assert!((p.p50 - 500.0).abs() < 2.0, "{}", p.p50);
    }
}
