//! The signalling service's counters: requests refused (by the code the participant was
//! told), connections refused at accept, slow consumers disconnected, and open
//! connections, rendered as Prometheus text at `GET /metrics` when `--metrics` is on.
//!
//! Owns the counters only. Labels are fixed codes: never an id, an address or anything a
//! participant chose.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::ErrorCode;

/// Every refusal code, in [`index`] order.
const CODES: [ErrorCode; 10] = [
    ErrorCode::BadRequest,
    ErrorCode::WrongState,
    ErrorCode::ParticipantTaken,
    ErrorCode::BadProof,
    ErrorCode::ConferenceUnknown,
    ErrorCode::StaleCommit,
    ErrorCode::Forwarder,
    ErrorCode::Capacity,
    ErrorCode::SourceLimit,
    ErrorCode::JoinTimeout,
];

/// A code's slot. Exhaustive, so a new code does not compile until it is counted.
const fn index(c: ErrorCode) -> usize {
    match c {
        ErrorCode::BadRequest => 0,
        ErrorCode::WrongState => 1,
        ErrorCode::ParticipantTaken => 2,
        ErrorCode::BadProof => 3,
        ErrorCode::ConferenceUnknown => 4,
        ErrorCode::StaleCommit => 5,
        ErrorCode::Forwarder => 6,
        ErrorCode::Capacity => 7,
        ErrorCode::SourceLimit => 8,
        ErrorCode::JoinTimeout => 9,
    }
}

/// The code as the protocol spells it.
fn code_name(c: ErrorCode) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy)]
pub enum ConnectionRefusal {
    /// The service's total was reached.
    Total,
    /// The source's share was used up.
    PerSource,
}

/// The counters, shared by the accept loop, the connections and the service.
#[derive(Debug, Default)]
pub struct Metrics {
    refused: [AtomicU64; CODES.len()],
    connections_refused: [AtomicU64; 2],
    slow_consumers: AtomicU64,
}

impl Metrics {
    /// A request refused with `code`.
    pub fn refused(&self, code: ErrorCode) {
        self.refused[index(code)].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection refused at accept.
    pub fn connection_refused(&self, why: ConnectionRefusal) {
        self.connections_refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A member disconnected for not reading.
    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text format 0.0.4, with `open` connections as a gauge.
    pub fn render(&self, open: usize) -> String {
        let mut out = String::with_capacity(1024);
        let _ = writeln!(
            out,
            "# HELP blindfold_signal_connections Open connections.\n\
             # TYPE blindfold_signal_connections gauge\nblindfold_signal_connections {open}"
        );
        let _ = writeln!(
            out,
            "# HELP blindfold_signal_refused_total Requests refused, by the code sent back.\n\
             # TYPE blindfold_signal_refused_total counter"
        );
        for (c, n) in CODES.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "blindfold_signal_refused_total{{code=\"{}\"}} {}",
                code_name(*c),
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP blindfold_signal_connections_refused_total Connections refused at accept.\n\
             # TYPE blindfold_signal_connections_refused_total counter"
        );
        for (reason, n) in ["total", "per_source"]
            .iter()
            .zip(&self.connections_refused)
        {
            let _ = writeln!(
                out,
                "blindfold_signal_connections_refused_total{{limit=\"{reason}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP blindfold_signal_slow_consumers_total Members disconnected for not reading.\n\
             # TYPE blindfold_signal_slow_consumers_total counter\n\
             blindfold_signal_slow_consumers_total {}",
            self.slow_consumers.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_in_index_order() {
        for (i, c) in CODES.iter().enumerate() {
            assert_eq!(index(*c), i);
        }
    }

    #[test]
    fn every_code_is_counted_under_its_own_label() {
        let m = Metrics::default();
        for c in CODES {
            m.refused(c);
        }
        m.connection_refused(ConnectionRefusal::PerSource);
        m.slow_consumer();
        let text = m.render(3);
        for c in CODES {
            let line = format!(
                "blindfold_signal_refused_total{{code=\"{}\"}} 1",
                code_name(c)
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains("limit=\"per_source\"} 1"));
        assert!(text.contains("limit=\"total\"} 0"));
        assert!(text.contains("blindfold_signal_slow_consumers_total 1"));
        assert!(text.contains("blindfold_signal_connections 3"));
    }
}
