//! Media profiles: what one published track sends, and when. Pure arithmetic over a seeded
//! random generator; owns no socket and reads no clock (the sender passes event times).
//!
//! The figures follow real calls: audio is 50 packets/s of 100-160 bytes (Opus at 20 ms
//! plus SRTP overhead); video is 30 frames/s at about 1.5 Mbit/s, each frame split into
//! packets of at most 1200 bytes and sent as one burst, with a keyframe four times the
//! size every two seconds; screen share is 5 frames/s of small deltas with a large
//! refresh frame every ten seconds. `cbr:PPS:BYTES` is a constant-rate stream for
//! throughput sweeps, and `burst:FPS:N:BYTES` its bursty counterpart: FPS frames per second of
//! N packets each, all of BYTES but the last, which is half as long (as a packetizer
//! cuts a frame), for sweeping the GSO/GRO path.

use std::fmt;
use std::str::FromStr;

use blindfold_control::TrackKind;

/// Largest datagram the generator sends (RTP header included).
pub const MAX_PACKET: usize = 1200;
/// Most packets one event (one frame) can produce.
pub const MAX_EVENT_PACKETS: usize = 64;

/// What one track publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TrackProfile {
    /// 50 packets/s, 100-160 bytes.
    Audio,
    /// 30 frames/s, ~1.5 Mbit/s, bursts per frame.
    Video,
    /// 5 frames/s of deltas plus a refresh frame every 10 s.
    Screen,
    /// A constant packet rate and size.
    Cbr {
        /// Packets per second.
        pps: u32,
        /// Bytes per packet, RTP header included.
        bytes: u16,
    },
    /// Constant bursts: `fps` events per second of `packets` packets each.
    Burst {
        /// Bursts (frames) per second.
        fps: u32,
        /// Packets per burst.
        packets: u16,
        /// Bytes of every packet but the last (half as long), RTP header included.
        bytes: u16,
    },
}

/// A profile string could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown track profile {0:?}: expected audio, video, screen, cbr:PPS:BYTES or burst:FPS:N:BYTES (cbr BYTES 12..=1200; burst BYTES 24..=1200, N 1..=64)"
)]
pub struct BadProfile(String);

impl FromStr for TrackProfile {
    type Err = BadProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "audio" => Ok(Self::Audio),
            "video" => Ok(Self::Video),
            "screen" => Ok(Self::Screen),
            _ if s.starts_with("burst:") => {
                let bad = || BadProfile(s.to_string());
                let mut f = s["burst:".len()..].split(':');
                let (Some(fps), Some(n), Some(bytes), None) =
                    (f.next(), f.next(), f.next(), f.next())
                else {
                    return Err(bad());
                };
                let fps: u32 = fps.parse().map_err(|_| bad())?;
                let packets: u16 = n.parse().map_err(|_| bad())?;
                let bytes: u16 = bytes.parse().map_err(|_| bad())?;
                if fps == 0
                    || !(1..=MAX_EVENT_PACKETS as u16).contains(&packets)
                    || !(24..=MAX_PACKET as u16).contains(&bytes)
                {
                    return Err(bad());
                }
                Ok(Self::Burst {
                    fps,
                    packets,
                    bytes,
                })
            }
            _ => {
                let bad = || BadProfile(s.to_string());
                let rest = s.strip_prefix("cbr:").ok_or_else(bad)?;
                let (pps, bytes) = rest.split_once(':').ok_or_else(bad)?;
                let pps: u32 = pps.parse().map_err(|_| bad())?;
                let bytes: u16 = bytes.parse().map_err(|_| bad())?;
                if pps == 0 || !(12..=MAX_PACKET as u16).contains(&bytes) {
                    return Err(bad());
                }
                Ok(Self::Cbr { pps, bytes })
            }
        }
    }
}

impl fmt::Display for TrackProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Audio => f.write_str("audio"),
            Self::Video => f.write_str("video"),
            Self::Screen => f.write_str("screen"),
            Self::Cbr { pps, bytes } => write!(f, "cbr:{pps}:{bytes}"),
            Self::Burst {
                fps,
                packets,
                bytes,
            } => write!(f, "burst:{fps}:{packets}:{bytes}"),
        }
    }
}

impl TrackProfile {
    /// The track kind declared through the control API.
    pub fn kind(&self) -> TrackKind {
        match self {
            Self::Audio => TrackKind::Audio,
            Self::Video | Self::Cbr { .. } | Self::Burst { .. } => TrackKind::Video,
            Self::Screen => TrackKind::Screen,
        }
    }

    /// RTP payload type written in the header (never 64-95, which RFC 5761 reserves).
    pub fn payload_type(&self) -> u8 {
        match self {
            Self::Audio => 111,
            Self::Video | Self::Cbr { .. } | Self::Burst { .. } => 96,
            Self::Screen => 98,
        }
    }

    /// Time between two events (packets or frames), in nanoseconds.
    pub fn interval_ns(&self) -> u64 {
        match self {
            Self::Audio => 20_000_000,
            Self::Video => 1_000_000_000 / 30,
            Self::Screen => 200_000_000,
            Self::Cbr { pps, .. } => (1_000_000_000 / u64::from(*pps)).max(1),
            Self::Burst { fps, .. } => (1_000_000_000 / u64::from(*fps)).max(1),
        }
    }

    /// RTP timestamp increment per event (48 kHz audio, 90 kHz video).
    pub fn ts_step(&self) -> u32 {
        match self {
            Self::Audio => 960,
            Self::Video => 3000,
            Self::Screen => 18_000,
            Self::Cbr { pps, .. } => 90_000 / (*pps).max(1),
            Self::Burst { fps, .. } => 90_000 / (*fps).max(1),
        }
    }

    /// Mean packets per second and bits per second (for offered-load figures).
    pub fn mean_rates(&self) -> (f64, f64) {
        match self {
            Self::Audio => (50.0, 50.0 * 130.0 * 8.0),
            Self::Video => {
                let frame = VIDEO_FRAME_MEAN as f64;
                (
                    30.0 * (frame / MAX_PACKET as f64).ceil(),
                    30.0 * frame * 8.0,
                )
            }
            Self::Screen => {
                let mean = (49.0 * SCREEN_DELTA as f64 + SCREEN_REFRESH as f64) / 50.0;
                (5.0 * (mean / MAX_PACKET as f64).ceil(), 5.0 * mean * 8.0)
            }
            Self::Cbr { pps, bytes } => {
                (f64::from(*pps), f64::from(*pps) * f64::from(*bytes) * 8.0)
            }
            Self::Burst {
                fps,
                packets,
                bytes,
            } => {
                let per = f64::from(*packets - 1) * f64::from(*bytes) + f64::from(*bytes / 2);
                (
                    f64::from(*fps) * f64::from(*packets),
                    f64::from(*fps) * per * 8.0,
                )
            }
        }
    }
}

/// Mean video frame in bytes: 1.5 Mbit/s at 30 frames/s.
const VIDEO_FRAME_MEAN: usize = 1_500_000 / 8 / 30;
/// Keyframes are this many times a delta frame, once every `VIDEO_GOP` frames.
const VIDEO_KEY_FACTOR: usize = 4;
const VIDEO_GOP: u64 = 60;
const SCREEN_DELTA: usize = 3_000;
const SCREEN_REFRESH: usize = 60_000;
const SCREEN_GOP: u64 = 50;

/// A small xorshift64* generator: deterministic per seed, no allocation, no locking.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Fills `sizes` with the datagram sizes of event number `n` of `profile` and returns how
/// many packets it has (at least 1, at most [`MAX_EVENT_PACKETS`] and `sizes.len()`).
pub fn event_sizes(profile: &TrackProfile, n: u64, rng: &mut Rng, sizes: &mut [u16]) -> usize {
    let frame = |bytes: usize, sizes: &mut [u16]| -> usize {
        let cap = sizes.len().min(MAX_EVENT_PACKETS);
        let k = bytes.div_ceil(MAX_PACKET).clamp(1, cap);
        let each = (bytes / k).clamp(12, MAX_PACKET);
        for s in &mut sizes[..k] {
            *s = each as u16;
        }
        k
    };
    match profile {
        TrackProfile::Audio => {
            sizes[0] = rng.range(100, 160) as u16;
            1
        }
        TrackProfile::Cbr { bytes, .. } => {
            sizes[0] = *bytes;
            1
        }
        TrackProfile::Burst { packets, bytes, .. } => {
            let k = usize::from(*packets).clamp(1, sizes.len().min(MAX_EVENT_PACKETS));
            sizes[..k].fill(*bytes);
            sizes[k - 1] = (*bytes / 2).max(12);
            k
        }
        TrackProfile::Video => {
            // Delta frames are sized so the mean, keyframes included, is 1.5 Mbit/s.
            let delta =
                VIDEO_FRAME_MEAN * VIDEO_GOP as usize / (VIDEO_GOP as usize - 1 + VIDEO_KEY_FACTOR);
            let bytes = if n.is_multiple_of(VIDEO_GOP) {
                delta * VIDEO_KEY_FACTOR
            } else {
                rng.range(delta * 8 / 10, delta * 12 / 10)
            };
            frame(bytes, sizes)
        }
        TrackProfile::Screen => {
            let bytes = if n.is_multiple_of(SCREEN_GOP) {
                SCREEN_REFRESH
            } else {
                rng.range(SCREEN_DELTA / 2, SCREEN_DELTA * 3 / 2)
            };
            frame(bytes, sizes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profiles() {
        assert_eq!(
            "audio".parse::<TrackProfile>().unwrap(),
            TrackProfile::Audio
        );
        assert_eq!(
            "cbr:1000:500".parse::<TrackProfile>().unwrap(),
            TrackProfile::Cbr {
                pps: 1000,
                bytes: 500
            }
        );
        assert!("cbr:0:500".parse::<TrackProfile>().is_err());
        assert_eq!(
            "burst:100:8:1200".parse::<TrackProfile>().unwrap(),
            TrackProfile::Burst {
                fps: 100,
                packets: 8,
                bytes: 1200
            }
        );
        for bad in [
            "burst:0:8:1200",
            "burst:100:0:1200",
            "burst:100:65:1200",
            "burst:1:8:2000",
            "burst:1:8",
        ] {
            assert!(bad.parse::<TrackProfile>().is_err(), "{bad}");
        }
        let b: TrackProfile = "burst:30:5:1000".parse().unwrap();
        assert_eq!(b.to_string(), "burst:30:5:1000");
        assert!("cbr:10:5000".parse::<TrackProfile>().is_err());
        assert!("mp3".parse::<TrackProfile>().is_err());
    }

    #[test]
    fn video_averages_one_and_a_half_megabit() {
        let mut rng = Rng::new(7);
        let mut sizes = [0u16; MAX_EVENT_PACKETS];
        let mut bytes = 0usize;
        let frames = 30 * 60;
        for n in 0..frames {
            let k = event_sizes(&TrackProfile::Video, n, &mut rng, &mut sizes);
            assert!(sizes[..k].iter().all(|&s| s as usize <= MAX_PACKET));
            bytes += sizes[..k].iter().map(|&s| s as usize).sum::<usize>();
        }
        let mbps = bytes as f64 * 8.0 / 60.0 / 1e6;
        assert!((1.35..1.65).contains(&mbps), "{mbps} Mbit/s");
    }

    #[test]
    fn bursts_are_equal_sized_with_a_shorter_tail() {
        let b: TrackProfile = "burst:100:8:1200".parse().unwrap();
        let mut sizes = [0u16; MAX_EVENT_PACKETS];
        let k = event_sizes(&b, 0, &mut Rng::new(1), &mut sizes);
        assert_eq!(
            &sizes[..k],
            &[1200, 1200, 1200, 1200, 1200, 1200, 1200, 600]
        );
        assert_eq!(b.mean_rates().0, 800.0);
    }

    #[test]
    fn audio_sizes_in_range() {
        let mut rng = Rng::new(1);
        let mut sizes = [0u16; 4];
        for n in 0..1000 {
            assert_eq!(
                event_sizes(&TrackProfile::Audio, n, &mut rng, &mut sizes),
                1
            );
            assert!((100..=160).contains(&sizes[0]));
        }
    }
}
