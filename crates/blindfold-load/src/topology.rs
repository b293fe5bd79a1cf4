//! The shape of a synthetic load: C conferences of P participants, the first K of each
//! publishing the same tracks, each participant subscribing to all other publishers or
//! to the last N. Pure index arithmetic shared by the sender, the receivers, the control
//! API setup and the ceiling; it owns no socket and does no I/O.
//!
//! Numbering: participant `p = c * P + m` (conference `c`, member `m`); stream
//! `s = (c * K + m) * T + t` for publisher `m < K` and track `t < T`. The SSRC carries
//! the participant and the track (`SSRC_BASE + (p << 4) + t`) so a receiver maps a copy
//! back to its stream with arithmetic, without a table and without reading the payload.

use std::fmt;
use std::str::FromStr;

use super::profile::TrackProfile;

/// First SSRC the generator uses.
pub const SSRC_BASE: u32 = 0x1000_0000;
/// Bits of the SSRC that number the track.
pub const TRACK_BITS: u32 = 4;
/// Most tracks one participant may publish.
pub const MAX_TRACKS: usize = 1 << TRACK_BITS;
/// Most participants in one run (the SSRC space above `SSRC_BASE`).
pub const MAX_PARTICIPANTS: usize = ((u32::MAX - SSRC_BASE) >> TRACK_BITS) as usize;

/// Which publishers a participant receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Subscribe {
    /// Every other publisher of the conference.
    All,
    /// The N publishers preceding it in the conference (a stand-in for last-N active
    /// speakers).
    LastN(usize),
}

/// A subscription mode string could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("unknown subscription mode {0:?}: expected all or last:N")]
pub struct BadSubscribe(String);

impl FromStr for Subscribe {
    type Err = BadSubscribe;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Self::All);
        }
        s.strip_prefix("last:")
            .and_then(|n| n.parse().ok())
            .map(Self::LastN)
            .ok_or_else(|| BadSubscribe(s.to_string()))
    }
}

impl fmt::Display for Subscribe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::LastN(n) => write!(f, "last:{n}"),
        }
    }
}

/// The topology is not one the generator can drive.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Sizes out of range.
    #[error("invalid topology: {0}")]
    Invalid(String),
}

/// C conferences × P participants, K publishers each, T tracks per publisher.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Topology {
    /// Number of conferences (C).
    pub conferences: usize,
    /// Participants per conference (P).
    pub size: usize,
    /// Publishers per conference (K ≤ P): members `0..K` publish.
    pub publishers: usize,
    /// Tracks every publisher sends.
    pub tracks: Vec<TrackProfile>,
    /// Subscription mode.
    pub subscribe: Subscribe,
    /// For each publisher member index, how many members receive it (same in every
    /// conference).
    #[serde(skip)]
    fanout: Vec<usize>,
}

impl Topology {
    /// Validates and derives the fan-out of each publisher.
    pub fn new(
        conferences: usize,
        size: usize,
        publishers: Option<usize>,
        tracks: Vec<TrackProfile>,
        subscribe: Subscribe,
    ) -> Result<Self, TopologyError> {
        let publishers = publishers.unwrap_or(size);
        let bad = |m: String| Err(TopologyError::Invalid(m));
        if conferences == 0 || size < 2 {
            return bad("need at least one conference of at least two participants".into());
        }
        if publishers == 0 || publishers > size {
            return bad(format!("publishers must be 1..={size}"));
        }
        if tracks.is_empty() || tracks.len() > MAX_TRACKS {
            return bad(format!("1..={MAX_TRACKS} tracks per publisher"));
        }
        if conferences.saturating_mul(size) > MAX_PARTICIPANTS {
            return bad(format!("at most {MAX_PARTICIPANTS} participants"));
        }
        let mut t = Self {
            conferences,
            size,
            publishers,
            tracks,
            subscribe,
            fanout: Vec::new(),
        };
        let mut fanout = vec![0; publishers];
        for m in 0..size {
            t.for_each_source(m, |src| fanout[src] += 1);
        }
        t.fanout = fanout;
        Ok(t)
    }

    /// Total participants (C × P).
    pub fn participants(&self) -> usize {
        self.conferences * self.size
    }

    /// Tracks per publisher (T).
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Total streams (C × K × T).
    pub fn streams(&self) -> usize {
        self.conferences * self.publishers * self.tracks.len()
    }

    /// The publishers (member indices) member `m` receives, in order.
    pub fn for_each_source(&self, m: usize, mut f: impl FnMut(usize)) {
        match self.subscribe {
            Subscribe::All => (0..self.publishers).filter(|&s| s != m).for_each(f),
            Subscribe::LastN(n) => {
                let mut taken = 0;
                for back in 1..self.size {
                    if taken == n {
                        break;
                    }
                    let s = (m + self.size - back) % self.size;
                    if s < self.publishers {
                        f(s);
                        taken += 1;
                    }
                }
            }
        }
    }

    /// How many members receive publisher member `m`'s tracks.
    pub fn fanout(&self, m: usize) -> usize {
        self.fanout.get(m).copied().unwrap_or(0)
    }

    /// Mean fan-out over publishers (copies out per packet in).
    pub fn mean_fanout(&self) -> f64 {
        self.fanout.iter().sum::<usize>() as f64 / self.publishers as f64
    }

    /// The stream index of publisher participant `p`, track `t`, if `p` publishes.
    pub fn stream(&self, p: usize, t: usize) -> Option<usize> {
        let (c, m) = (p / self.size, p % self.size);
        (c < self.conferences && m < self.publishers && t < self.tracks.len())
            .then(|| (c * self.publishers + m) * self.tracks.len() + t)
    }

    /// The publisher participant and track of stream `s`.
    pub fn stream_owner(&self, s: usize) -> (usize, usize) {
        let t = s % self.tracks.len();
        let pub_idx = s / self.tracks.len();
        let (c, m) = (pub_idx / self.publishers, pub_idx % self.publishers);
        (c * self.size + m, t)
    }

    /// SSRC of participant `p`'s track `t`.
    pub fn ssrc(p: usize, t: usize) -> u32 {
        SSRC_BASE + ((p as u32) << TRACK_BITS) + t as u32
    }

    /// Participant and track an SSRC names, if it is one of the generator's.
    pub fn parse_ssrc(ssrc: u32) -> Option<(usize, usize)> {
        let v = ssrc.checked_sub(SSRC_BASE)?;
        Some((
            (v >> TRACK_BITS) as usize,
            (v & (MAX_TRACKS as u32 - 1)) as usize,
        ))
    }

    /// Offered packets/s in and copies/s out, and bits/s out, from the profiles' means.
    pub fn offered(&self) -> (f64, f64, f64) {
        let (mut pps, mut bps) = (0.0, 0.0);
        for tr in &self.tracks {
            let (p, b) = tr.mean_rates();
            pps += p;
            bps += b;
        }
        let per_conf_fan: f64 = self.fanout.iter().sum::<usize>() as f64;
        let c = self.conferences as f64;
        (
            pps * self.publishers as f64 * c,
            pps * per_conf_fan * c,
            bps * per_conf_fan * c,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(c: usize, p: usize, k: Option<usize>, sub: Subscribe) -> Topology {
        Topology::new(c, p, k, vec![TrackProfile::Audio, TrackProfile::Video], sub).unwrap()
    }

    #[test]
    fn fanout_all_and_last_n() {
        let t = topo(2, 5, None, Subscribe::All);
        assert!((0..5).all(|m| t.fanout(m) == 4));
        let t = topo(2, 5, None, Subscribe::LastN(2));
        assert!((0..5).all(|m| t.fanout(m) == 2));
        let t = topo(1, 5, Some(2), Subscribe::All);
        assert_eq!(t.fanout(0), 4);
        assert_eq!(t.fanout(1), 4);
        let mut srcs = Vec::new();
        t.for_each_source(3, |s| srcs.push(s));
        assert_eq!(srcs, vec![0, 1]);
    }

    #[test]
    fn stream_and_ssrc_round_trip() {
        let t = topo(3, 4, Some(3), Subscribe::All);
        assert_eq!(t.streams(), 3 * 3 * 2);
        for s in 0..t.streams() {
            let (p, tr) = t.stream_owner(s);
            assert_eq!(t.stream(p, tr), Some(s));
            assert_eq!(Topology::parse_ssrc(Topology::ssrc(p, tr)), Some((p, tr)));
        }
        assert_eq!(t.stream(3, 0), None, "member 3 does not publish");
    }
}
