//! SFrame (RFC 9605) media keys from the group's epochs: the end-to-end layer browsers can
//! run (inside their encoded-frame transform) and native participants run with them in a
//! mixed call.
//!
//! Owns the blindfold-specific part only: the key id layout and the per-sender base key.
//! The SFrame header, key and salt derivation (RFC 9605 §4.4.2), nonce and AEAD come from
//! the `sframe` crate (RustCrypto backend), never from code here. Must not touch: packets
//! (a frame is what a codec produced, before packetisation), MLS, sockets.
//!
//! # Keys
//! - Suite `AES_128_GCM_SHA256_128` (0x0004): full 16-byte tag, and WebCrypto does all of it.
//! - **KID** = `epoch id(32) << 16 | sender leaf index(16)`: the epoch id is the same
//!   `MLS epoch(16) | step(16)` the SRTP MKI carries, so one MLS epoch and its 30 s ratchet
//!   steps key both formats; the leaf index names the sender inside the group, which every
//!   member (native or browser) knows from the roster. (epoch, leaf) is unique: a leaf
//!   freed by a leave is reused only in a later epoch.
//! - **Base key** of a sender = `HKDF-SHA256(salt "blindfold/v1 sframe", epoch secret,
//!   "blindfold/v1 sframe base key" || epoch id (4 octets) || leaf (4 octets))`, 32
//!   octets; SFrame then derives the AEAD key and salt from base key and KID. Distinct
//!   (epoch, leaf) give independent keys, so no two senders share a (key, nonce); within a
//!   sender the frame counter never repeats ([`SframeSender`] refuses to wrap).

use hkdf::Hkdf;
use sframe::CipherSuite;
use sframe::frame::{EncryptedFrameView, FrameCounter, MediaFrameView, MonotonicCounter};
use sframe::header::SframeHeader;
use sframe::key::{DecryptionKey, EncryptionKey};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::srtp::EpochId;

/// The SFrame cipher suite of blindfold calls.
pub const SFRAME_SUITE: CipherSuite = CipherSuite::AesGcm128Sha256;
/// Length of a sender's base key.
pub const BASE_KEY_LEN: usize = 32;

const SFRAME_SALT: &[u8] = b"blindfold/v1 sframe";
const LABEL_BASE_KEY: &[u8] = b"blindfold/v1 sframe base key";

/// Errors of the SFrame layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The sender's leaf index does not fit the 16 bits of the KID.
    #[error("leaf index {0} does not fit a blindfold SFrame KID")]
    LeafTooLarge(u32),
    /// No frame header, or a KID outside blindfold's layout.
    #[error("not a blindfold SFrame frame")]
    Malformed,
    /// The frame names another key than the one given.
    #[error("frame is for another key id")]
    WrongKey,
    /// The tag did not verify (wrong key, tampered frame).
    #[error("frame failed authentication")]
    Authentication,
    /// This sender's frame counter is used up: it needs a new epoch.
    #[error("frame counter exhausted")]
    CounterExhausted,
}

/// The KID of `leaf`'s frames under `epoch`.
pub fn sframe_kid(epoch: EpochId, leaf: u32) -> Result<u64, FrameError> {
    let leaf16 = u16::try_from(leaf).map_err(|_| FrameError::LeafTooLarge(leaf))?;
    Ok((u64::from(u32::from_be_bytes(epoch.to_bytes())) << 16) | u64::from(leaf16))
}

/// The (epoch, leaf) a KID names; `None` for a KID wider than 48 bits.
pub fn split_sframe_kid(kid: u64) -> Option<(EpochId, u32)> {
    if kid >> 48 != 0 {
        return None;
    }
    let epoch = u32::try_from(kid >> 16).ok()?;
    let epoch = EpochId::new((epoch >> 16) as u16, epoch as u16);
    Some((epoch, (kid & 0xffff) as u32))
}

/// The KID in a frame's SFrame header, read without a key (to pick the sender's key).
pub fn frame_kid(frame: &[u8]) -> Option<u64> {
    SframeHeader::deserialize(frame).ok().map(|h| h.key_id())
}

/// How many leading octets of an encoded frame stay in the clear, as authenticated
/// metadata: VP8's payload header, which a receiving browser's depacketiser reads to find
/// keyframes (10 octets on a keyframe, 3 otherwise, told by bit 0 of the first octet);
/// nothing of audio. The same rule as the web client's `clearPrefix`.
pub fn clear_prefix(video: bool, frame: &[u8]) -> usize {
    match frame.first() {
        Some(b) if video => frame.len().min(if b & 0x01 == 0 { 10 } else { 3 }),
        _ => 0,
    }
}

/// A sender's base key for one epoch (erased on drop).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SframeBaseKey([u8; BASE_KEY_LEN]);

impl SframeBaseKey {
    /// Derives `leaf`'s base key under `epoch` from that epoch's secret (the MLS exporter
    /// secret at step 0, ratcheted for later steps: [`crate::KeySchedule`] holds it).
    pub fn derive(epoch_secret: &[u8], epoch: EpochId, leaf: u32) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SFRAME_SALT), epoch_secret);
        let mut out = [0u8; BASE_KEY_LEN];
        hk.expand_multi_info(
            &[LABEL_BASE_KEY, &epoch.to_bytes(), &leaf.to_be_bytes()],
            &mut out,
        )
        .expect("32 octets is a valid HKDF length");
        Self(out)
    }

    /// The octets (for a key log or a test against another implementation).
    pub fn as_bytes(&self) -> &[u8; BASE_KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for SframeBaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SframeBaseKey(..)")
    }
}

/// One sender's SFrame encryption under one KID.
pub struct SframeSender {
    key: EncryptionKey,
    counter: MonotonicCounter,
}

impl SframeSender {
    /// A sender for `kid` with `base` (frame counter from 0).
    pub fn new(base: &SframeBaseKey, kid: u64) -> Result<Self, FrameError> {
        let key = EncryptionKey::derive_from(SFRAME_SUITE, kid, base.as_bytes())
            .map_err(|_| FrameError::Malformed)?;
        Ok(Self {
            key,
            counter: MonotonicCounter::default(),
        })
    }

    /// The KID this sender writes.
    pub fn kid(&self) -> u64 {
        self.key.key_id()
    }

    /// Encrypts one frame: SFrame header, ciphertext, tag.
    pub fn protect(&mut self, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        self.protect_with_meta(frame, &[])
    }

    /// Encrypts one frame whose clear `meta` (e.g. the VP8 payload header, see
    /// [`clear_prefix`]) is authenticated with it: AAD = SFrame header ‖ meta. The output
    /// is the SFrame part only; the caller puts `meta` before it.
    pub fn protect_with_meta(&mut self, frame: &[u8], meta: &[u8]) -> Result<Vec<u8>, FrameError> {
        if self.counter.is_exhausted() {
            return Err(FrameError::CounterExhausted);
        }
        let counter = self
            .counter
            .try_next()
            .map_err(|_| FrameError::CounterExhausted)?;
        let mut counter = sframe::frame::SingleUseCounter::new(counter);
        let media = MediaFrameView::try_with_meta_data(&mut counter, &frame, &meta)
            .map_err(|_| FrameError::CounterExhausted)?;
        let mut out = Vec::with_capacity(meta.len() + frame.len() + 32);
        media
            .encrypt_into(&self.key, &mut out)
            .map_err(|_| FrameError::Malformed)?;
        // The crate lays the buffer out as meta ‖ header ‖ ciphertext: keep the SFrame part.
        out.drain(..meta.len());
        Ok(out)
    }
}

/// Decrypts one frame under `base`, which must be the key of the KID the frame names
/// (`kid`); returns the plaintext.
pub fn sframe_open(base: &SframeBaseKey, kid: u64, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
    sframe_open_with_meta(base, kid, frame, &[])
}

/// [`sframe_open`] for a frame sealed with clear, authenticated `meta`.
pub fn sframe_open_with_meta(
    base: &SframeBaseKey,
    kid: u64,
    frame: &[u8],
    meta: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let view =
        EncryptedFrameView::try_with_meta_data(&frame, &meta).map_err(|_| FrameError::Malformed)?;
    if view.header().key_id() != kid {
        return Err(FrameError::WrongKey);
    }
    let key = DecryptionKey::derive_from(SFRAME_SUITE, kid, base.as_bytes())
        .map_err(|_| FrameError::Malformed)?;
    let mut out = Vec::with_capacity(frame.len());
    view.decrypt_into(&key, &mut out)
        .map_err(|_| FrameError::Authentication)?;
    // Laid out as meta ‖ plaintext: return the plaintext.
    out.drain(..meta.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_layout_round_trips_and_refuses_wide_values() {
        let e = EpochId::new(7, 3);
        let kid = sframe_kid(e, 42).unwrap();
        assert_eq!(kid, (7 << 32) | (3 << 16) | 42);
        assert_eq!(split_sframe_kid(kid), Some((e, 42)));
        assert!(sframe_kid(e, 70_000).is_err());
        assert_eq!(split_sframe_kid(1 << 48), None);
    }

    #[test]
    fn frames_round_trip_and_fail_under_another_sender_or_epoch() {
        let secret = [9u8; 32];
        let e = EpochId::new(2, 0);
        let base = SframeBaseKey::derive(&secret, e, 1);
        let kid = sframe_kid(e, 1).unwrap();
        let mut tx = SframeSender::new(&base, kid).unwrap();
        let f1 = tx.protect(b"a video frame").unwrap();
        let f2 = tx.protect(b"a video frame").unwrap();
        assert_ne!(f1, f2, "the counter moves: same plaintext, new nonce");
        assert_eq!(frame_kid(&f1), Some(kid));
        assert_eq!(sframe_open(&base, kid, &f1).unwrap(), b"a video frame");
        // Another leaf's or another epoch's key does not open it.
        let other = SframeBaseKey::derive(&secret, e, 2);
        assert!(matches!(
            sframe_open(&other, kid, &f1),
            Err(FrameError::Authentication)
        ));
        let later = SframeBaseKey::derive(&secret, EpochId::new(2, 1), 1);
        assert!(sframe_open(&later, kid, &f1).is_err());
        assert!(matches!(
            sframe_open(&base, kid + 1, &f1),
            Err(FrameError::WrongKey)
        ));
    }

    #[test]
    fn clear_metadata_is_authenticated_with_the_frame() {
        let e = EpochId::new(1, 0);
        let base = SframeBaseKey::derive(&[2; 32], e, 5);
        let kid = sframe_kid(e, 5).unwrap();
        let vp8_key = [
            0x10u8, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0xaa, 0xbb,
        ];
        let n = clear_prefix(true, &vp8_key);
        assert_eq!((n, clear_prefix(true, &[0x31, 1, 2, 3, 4])), (10, 3));
        assert_eq!(clear_prefix(false, &vp8_key), 0);
        let (meta, body) = vp8_key.split_at(n);
        let sealed = SframeSender::new(&base, kid)
            .unwrap()
            .protect_with_meta(body, meta)
            .unwrap();
        assert_eq!(
            sframe_open_with_meta(&base, kid, &sealed, meta).unwrap(),
            body
        );
        let mut other = meta.to_vec();
        other[0] ^= 0x01; // a keyframe turned into a delta frame in transit
        assert!(sframe_open_with_meta(&base, kid, &sealed, &other).is_err());
        assert!(sframe_open(&base, kid, &sealed).is_err());
    }

    #[test]
    fn every_tampered_byte_is_refused_and_junk_never_panics() {
        let base = SframeBaseKey::derive(&[1; 32], EpochId::new(1, 0), 0);
        let kid = sframe_kid(EpochId::new(1, 0), 0).unwrap();
        let frame = SframeSender::new(&base, kid)
            .unwrap()
            .protect(b"opus")
            .unwrap();
        for i in 0..frame.len() {
            let mut t = frame.clone();
            t[i] ^= 0x01;
            assert!(sframe_open(&base, kid, &t).is_err(), "byte {i}");
        }
        for n in 0..40 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
            let _ = frame_kid(&junk);
            let _ = sframe_open(&base, kid, &junk);
        }
    }
}
