//! The edge's counters (Prometheus text at `/metrics`): sessions and packets each way,
//! drops by reason. Fixed labels only: nothing here names a browser or a call.
//! Must not touch: sockets, sessions.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every session; relaxed atomics (monitoring, not synchronisation).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sessions running now.
    pub sessions_open: AtomicU64,
    /// Sessions created since start.
    pub sessions_created: AtomicU64,
    /// Session requests refused (bad SDP, bad forwarder address, limit).
    pub sessions_refused: AtomicU64,
    /// RTP packets from browsers sent on to the forwarder.
    pub to_forwarder: AtomicU64,
    /// RTP packets from the forwarder sent on to browsers.
    pub to_browser: AtomicU64,
    /// Browser datagrams dropped (malformed, unknown codec, failed SRTP).
    pub browser_dropped: AtomicU64,
    /// Forwarder datagrams dropped (malformed, unknown payload type).
    pub forwarder_dropped: AtomicU64,
    /// Forwarded packets dropped because the browser has no free receive slot.
    pub no_slot: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let rows: [(&str, &str, &AtomicU64, &str); 8] = [
            (
                "blindfold_edge_sessions",
                "gauge",
                &self.sessions_open,
                "Browser sessions running.",
            ),
            (
                "blindfold_edge_sessions_created_total",
                "counter",
                &self.sessions_created,
                "Browser sessions created.",
            ),
            (
                "blindfold_edge_sessions_refused_total",
                "counter",
                &self.sessions_refused,
                "Session requests refused.",
            ),
            (
                "blindfold_edge_packets_to_forwarder_total",
                "counter",
                &self.to_forwarder,
                "RTP packets from browsers sent to the forwarder.",
            ),
            (
                "blindfold_edge_packets_to_browser_total",
                "counter",
                &self.to_browser,
                "RTP packets from the forwarder sent to browsers.",
            ),
            (
                "blindfold_edge_browser_dropped_total",
                "counter",
                &self.browser_dropped,
                "Browser datagrams dropped.",
            ),
            (
                "blindfold_edge_forwarder_dropped_total",
                "counter",
                &self.forwarder_dropped,
                "Forwarder datagrams dropped.",
            ),
            (
                "blindfold_edge_no_slot_total",
                "counter",
                &self.no_slot,
                "Packets dropped for want of a browser receive slot.",
            ),
        ];
        for (name, kind, v, help) in rows {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        s
    }
}
