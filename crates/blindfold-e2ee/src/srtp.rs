//! SRTP and SRTCP with AEAD_AES_128_GCM (RFC 3711, RFC 7714), as the participants use it.
//!
//! Owns: the packet transforms (IV formation, associated data, tag and MKI placement), the
//! RFC 3711 §4.3 key derivation with the 96-bit salt of RFC 7714 §11 (errata 4938: the salt
//! is padded with zero octets on the right to the 112 bits the KDF expects, as libsrtp does),
//! the 4-octet MKI that names a key epoch, rollover-counter tracking, and a 1024-packet
//! replay window per stream (RFC 3711 §3.3.2).
//!
//! Must not touch: which key is in force (that is [`super::schedule`]), sockets or clocks.
//!
//! Wire layout (RFC 7714 §8, §9; MKI after the AEAD output as in libsrtp):
//! - SRTP:  `RTP header | ciphertext | tag(16) | MKI(4)`. The header, including CSRCs and
//!   header extensions, stays in the clear and is the associated data, so a keyless
//!   forwarder can read e.g. the audio level extension while any change to it is detected.
//! - SRTCP: `first 8 octets | ciphertext | tag(16) | E+index(4) | MKI(4)` with E=1, or
//!   `whole RTCP packet | tag(16) | E+index(4) | MKI(4)` with E=0 (authenticated only).
//!   Receiver feedback (RR, SDES, RTPFB, PSFB) goes out with E=0 so the forwarder can route
//!   NACK/PLI/FIR by the media SSRC; anything else (SR, APP, BYE, XR) is encrypted.
//!
//! The MKI itself is not covered by the AEAD (RFC 3711 leaves it outside the authenticated
//! portion); altering it selects another epoch's key, under which the tag cannot verify.
//!
//! Late joiners and rollover: a receiver that first sees a stream after its sequence number
//! has wrapped cannot know the rollover counter (ROC). We establish such a stream by trial:
//! the first packet is tried under ROC = hint-1, hint, hint+1 when the sender's ROC was
//! announced through signalling ([`SrtpReceiver::set_roc_hint`], from [`SrtpSender::roc`]),
//! otherwise under every ROC in `0..=roc_search` (default 64, i.e. 4.2 million packets, over
//! five hours of 200 packet/s video). GCM verifies before it decrypts, so failed trials leave
//! the packet untouched; only the first packet of a stream pays for the search. Once
//! established, the ROC follows RFC 3711 Appendix A (estimate within ±1 of the highest index).

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes128Gcm, KeyInit, Tag};
use ctr::cipher::{KeyIvInit, StreamCipher};
use thiserror::Error;
use zeroize::Zeroize;

type Aes128Ctr = ctr::Ctr128BE<aes_gcm::aes::Aes128>;

/// Length of the AES-GCM authentication tag (RFC 7714 §13.2: no truncation).
pub const TAG_LEN: usize = 16;
/// Length of the master key identifier that names a key epoch.
pub const MKI_LEN: usize = 4;
/// Length of the E flag plus 31-bit SRTCP index.
pub const SRTCP_INDEX_LEN: usize = 4;
/// Packets a receiver remembers per stream for replay detection (RFC 3711 §3.3.2 asks for
/// at least 64; video with retransmission wants far more reordering headroom).
pub const REPLAY_WINDOW: u64 = 1024;
/// Octets an SRTP packet grows by when protected with an MKI.
pub const RTP_OVERHEAD: usize = TAG_LEN + MKI_LEN;
/// Octets an SRTCP packet grows by when protected with an MKI.
pub const RTCP_OVERHEAD: usize = TAG_LEN + SRTCP_INDEX_LEN + MKI_LEN;
/// Master key length of AEAD_AES_128_GCM.
pub const MASTER_KEY_LEN: usize = 16;
/// Master salt length of AEAD_AES_128_GCM (96 bits).
pub const MASTER_SALT_LEN: usize = 12;
/// Default number of rollover counters a receiver tries for a stream it joins late.
pub const DEFAULT_ROC_SEARCH: u32 = 64;

const LABEL_RTP_ENCRYPTION: u8 = 0x00;
const LABEL_RTP_SALT: u8 = 0x02;
const LABEL_RTCP_ENCRYPTION: u8 = 0x03;
const LABEL_RTCP_SALT: u8 = 0x05;
const WINDOW_WORDS: usize = (REPLAY_WINDOW / 64) as usize;
const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;
const E_FLAG: u32 = 0x8000_0000;

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SrtpError {
    #[error("packet is truncated or its header lengths are inconsistent")]
    Malformed,
    #[error("not an RTP/RTCP version 2 packet")]
    BadVersion,
    #[error("output buffer too small for the protected packet")]
    BufferTooSmall,
    #[error("authentication failed")]
    AuthFailed,
    #[error("packet was already received")]
    Replay,
    #[error("packet is older than the replay window")]
    TooOld,
    #[error("packet's MKI does not name this key")]
    WrongMki,
    #[error("no key held for epoch {0}")]
    UnknownEpoch(EpochId),
    #[error("sender would reuse an SRTP index under the same key")]
    IndexReuse,
    #[error("SRTP/SRTCP index space exhausted: rekey")]
    IndexExhausted,
}

/// A key epoch as carried in the MKI: `generation(16) | step(16)`.
///
/// A generation is an MLS epoch: it starts with that epoch's exported secret;
/// steps within it are one-way ratchets, so a receiver holding step `s` can derive `s+k`
/// locally while it knows it needs the group's Commit for any other generation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EpochId(u32);

impl EpochId {
    pub const fn new(generation: u16, step: u16) -> Self {
        Self(((generation as u32) << 16) | step as u32)
    }
    pub const fn from_u32(raw: u32) -> Self {
        Self(raw)
    }
    pub const fn as_u32(self) -> u32 {
        self.0
    }
    pub const fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }
    pub const fn step(self) -> u16 {
        self.0 as u16
    }
    pub const fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
    pub const fn from_bytes(bytes: [u8; 4]) -> Self {
        Self(u32::from_be_bytes(bytes))
    }
    /// The next ratchet step in the same generation, if the step counter has room.
    pub fn next_step(self) -> Option<Self> {
        self.step()
            .checked_add(1)
            .map(|s| Self::new(self.generation(), s))
    }
}

impl fmt::Display for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EpochId({}:{})", self.generation(), self.step())
    }
}

/// RFC 3711 §4.3.3 AES-CM PRF with key derivation rate 0: fills `out` with the session key
/// material for `label`.
///
/// `master_salt` fills the high-order octets of the 112-bit `x` and is zero-padded on the
/// right when shorter, which is how a 96-bit AEAD salt enters the KDF (RFC 7714 errata
/// 4938, as libsrtp does it). Octets past the 14th are ignored.
pub fn kdf(master_key: &[u8; MASTER_KEY_LEN], master_salt: &[u8], label: u8, out: &mut [u8]) {
    // IV = (key_id XOR master_salt) * 2^16, key_id = label || r with r = 0 (kdr = 0).
    let mut iv = [0u8; 16];
    for (d, s) in iv[..14].iter_mut().zip(master_salt) {
        *d = *s;
    }
    iv[7] ^= label;
    out.fill(0);
    let mut keystream = Aes128Ctr::new(master_key.into(), &iv.into());
    keystream.apply_keystream(out);
    iv.zeroize();
}

/// Parsed fixed part of an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Octets up to the payload: fixed header, CSRCs and any header extension.
    pub len: usize,
    pub sequence: u16,
    pub ssrc: u32,
}

/// Parses the RTP header at the start of `packet`, checking every length against it.
pub fn parse_rtp_header(packet: &[u8]) -> Result<RtpHeader, SrtpError> {
    if packet.len() < 12 {
        return Err(SrtpError::Malformed);
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    let csrc_count = usize::from(packet[0] & 0x0f);
    let mut len = 12 + 4 * csrc_count;
    if packet[0] & 0x10 != 0 {
        if len + 4 > packet.len() {
            return Err(SrtpError::Malformed);
        }
        let words = usize::from(u16::from_be_bytes([packet[len + 2], packet[len + 3]]));
        len += 4 + 4 * words;
    }
    if len > packet.len() {
        return Err(SrtpError::Malformed);
    }
    Ok(RtpHeader {
        len,
        sequence: u16::from_be_bytes([packet[2], packet[3]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
    })
}

/// The epoch named by the MKI at the end of a protected SRTP or SRTCP packet.
pub fn read_mki(packet: &[u8]) -> Result<EpochId, SrtpError> {
    // Shortest carrier: an 8-octet RTCP header with tag, index and MKI.
    if packet.len() < 8 + RTCP_OVERHEAD {
        return Err(SrtpError::Malformed);
    }
    let n = packet.len();
    Ok(EpochId::from_bytes([
        packet[n - 4],
        packet[n - 3],
        packet[n - 2],
        packet[n - 1],
    ]))
}

/// Whether an outgoing (compound) RTCP packet must be encrypted (E=1).
///
/// Receiver feedback (RR 201, SDES 202, RTPFB 205 e.g. NACK, PSFB 206 e.g. PLI/FIR) is only
/// authenticated, so the keyless forwarder can route it by the media SSRC. Anything else,
/// and anything that does not parse as a compound packet, is encrypted.
pub fn rtcp_needs_encryption(packet: &[u8]) -> bool {
    let mut offset = 0;
    while offset + 4 <= packet.len() {
        if !matches!(packet[offset + 1], 201 | 202 | 205 | 206) {
            return true;
        }
        let words = usize::from(u16::from_be_bytes([packet[offset + 2], packet[offset + 3]]));
        offset += 4 * (words + 1);
    }
    offset != packet.len() || packet.is_empty()
}

/// An SRTCP packet's fields after successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedRtcp {
    /// Length of the recovered RTCP packet at the start of the buffer.
    pub len: usize,
    pub index: u32,
    pub encrypted: bool,
}

/// The session keys of one SRTP crypto context: one sender in one epoch.
///
/// Stateless transforms; [`SrtpSender`] and [`SrtpReceiver`] add index and replay state.
pub struct SrtpKeys {
    rtp: Aes128Gcm,
    rtp_salt: [u8; 12],
    rtcp: Aes128Gcm,
    rtcp_salt: [u8; 12],
    mki: Option<[u8; 4]>,
}

impl Drop for SrtpKeys {
    fn drop(&mut self) {
        // The AES-GCM states zeroize themselves (aes-gcm "zeroize" feature).
        self.rtp_salt.zeroize();
        self.rtcp_salt.zeroize();
    }
}

impl fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpKeys")
            .field("mki", &self.mki())
            .finish_non_exhaustive()
    }
}

impl SrtpKeys {
    /// Derives the SRTP and SRTCP session keys from a master key and 96-bit master salt
    /// (RFC 3711 §4.3 with RFC 7714 §11). `mki` is appended to and expected on every packet.
    pub fn derive(
        master_key: &[u8; MASTER_KEY_LEN],
        master_salt: &[u8; MASTER_SALT_LEN],
        mki: Option<EpochId>,
    ) -> Self {
        let mut rtp_key = [0u8; 16];
        let mut rtp_salt = [0u8; 12];
        let mut rtcp_key = [0u8; 16];
        let mut rtcp_salt = [0u8; 12];
        kdf(master_key, master_salt, LABEL_RTP_ENCRYPTION, &mut rtp_key);
        kdf(master_key, master_salt, LABEL_RTP_SALT, &mut rtp_salt);
        kdf(
            master_key,
            master_salt,
            LABEL_RTCP_ENCRYPTION,
            &mut rtcp_key,
        );
        kdf(master_key, master_salt, LABEL_RTCP_SALT, &mut rtcp_salt);
        let keys = Self::from_session_keys(&rtp_key, &rtp_salt, &rtcp_key, &rtcp_salt, mki);
        rtp_key.zeroize();
        rtp_salt.zeroize();
        rtcp_key.zeroize();
        rtcp_salt.zeroize();
        keys
    }

    /// Builds a context from already derived session keys. RFC 7714's test vectors are given
    /// at this level; calls should use [`SrtpKeys::derive`].
    pub fn from_session_keys(
        rtp_key: &[u8; 16],
        rtp_salt: &[u8; 12],
        rtcp_key: &[u8; 16],
        rtcp_salt: &[u8; 12],
        mki: Option<EpochId>,
    ) -> Self {
        Self {
            rtp: Aes128Gcm::new(rtp_key.into()),
            rtp_salt: *rtp_salt,
            rtcp: Aes128Gcm::new(rtcp_key.into()),
            rtcp_salt: *rtcp_salt,
            mki: mki.map(EpochId::to_bytes),
        }
    }

    pub fn mki(&self) -> Option<EpochId> {
        self.mki.map(EpochId::from_bytes)
    }

    fn mki_len(&self) -> usize {
        if self.mki.is_some() { MKI_LEN } else { 0 }
    }

    /// RFC 7714 §8.1: `00 00 || SSRC || ROC || SEQ` XOR salt.
    fn rtp_nonce(&self, ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (v, s) in iv.iter_mut().zip(&self.rtp_salt) {
            *v ^= s;
        }
        iv
    }

    /// RFC 7714 §9.1: `00 00 || SSRC || 00 00 || 0 || index` XOR salt.
    fn rtcp_nonce(&self, ssrc: u32, index: u32) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[8..12].copy_from_slice(&(index & MAX_SRTCP_INDEX).to_be_bytes());
        for (v, s) in iv.iter_mut().zip(&self.rtcp_salt) {
            *v ^= s;
        }
        iv
    }

    fn check_mki(&self, packet: &[u8]) -> Result<usize, SrtpError> {
        match self.mki {
            None => Ok(packet.len()),
            Some(mki) => {
                let end = packet
                    .len()
                    .checked_sub(MKI_LEN)
                    .ok_or(SrtpError::Malformed)?;
                if packet[end..] != mki {
                    return Err(SrtpError::WrongMki);
                }
                Ok(end)
            }
        }
    }

    /// Encrypts the RTP packet in `buf[..len]` in place under rollover counter `roc`,
    /// appending tag and MKI. Returns the protected length. Does not track indices: use
    /// [`SrtpSender`] unless you manage them yourself.
    pub fn encrypt_rtp(&self, buf: &mut [u8], len: usize, roc: u32) -> Result<usize, SrtpError> {
        let out_len = len + TAG_LEN + self.mki_len();
        if buf.len() < out_len {
            return Err(SrtpError::BufferTooSmall);
        }
        let header = parse_rtp_header(&buf[..len])?;
        let nonce = self.rtp_nonce(header.ssrc, roc, header.sequence);
        let (aad, payload) = buf[..len].split_at_mut(header.len);
        let tag = self
            .rtp
            .encrypt_inout_detached(&nonce.into(), aad, InOutBuf::from(payload))
            .map_err(|_| SrtpError::Malformed)?;
        buf[len..len + TAG_LEN].copy_from_slice(&tag);
        if let Some(mki) = self.mki {
            buf[len + TAG_LEN..out_len].copy_from_slice(&mki);
        }
        Ok(out_len)
    }

    /// Verifies and decrypts the SRTP packet filling `buf` under `roc`; returns the length
    /// of the RTP packet now at the start of `buf`. On failure `buf` is unchanged.
    pub fn decrypt_rtp(&self, buf: &mut [u8], roc: u32) -> Result<usize, SrtpError> {
        let end = self.check_mki(buf)?;
        let ct_end = end.checked_sub(TAG_LEN).ok_or(SrtpError::Malformed)?;
        let header = parse_rtp_header(&buf[..ct_end])?;
        let tag = Tag::try_from(&buf[ct_end..end]).map_err(|_| SrtpError::Malformed)?;
        let nonce = self.rtp_nonce(header.ssrc, roc, header.sequence);
        let (aad, payload) = buf[..ct_end].split_at_mut(header.len);
        self.rtp
            .decrypt_inout_detached(&nonce.into(), aad, InOutBuf::from(payload), &tag)
            .map_err(|_| SrtpError::AuthFailed)?;
        Ok(ct_end)
    }

    /// Protects the RTCP packet in `buf[..len]` with SRTCP index `index`, encrypting when
    /// `encrypt` (E=1) and only authenticating otherwise (E=0). Returns the protected length.
    pub fn encrypt_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        index: u32,
        encrypt: bool,
    ) -> Result<usize, SrtpError> {
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        let out_len = len + TAG_LEN + SRTCP_INDEX_LEN + self.mki_len();
        if buf.len() < out_len {
            return Err(SrtpError::BufferTooSmall);
        }
        if len < 8 || len > buf.len() {
            return Err(SrtpError::Malformed);
        }
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::BadVersion);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let nonce = self.rtcp_nonce(ssrc, index);
        let word = if encrypt { index | E_FLAG } else { index }.to_be_bytes();
        let tag = if encrypt {
            let mut aad = [0u8; 12];
            aad[..8].copy_from_slice(&buf[..8]);
            aad[8..].copy_from_slice(&word);
            self.rtcp
                .encrypt_inout_detached(&nonce.into(), &aad, InOutBuf::from(&mut buf[8..len]))
                .map_err(|_| SrtpError::Malformed)?
        } else {
            // AAD is the whole packet followed by the ESRTCP word (RFC 7714 §9.3); put the
            // word there for the computation, then lay out packet | tag | word.
            buf[len..len + 4].copy_from_slice(&word);
            let empty: &mut [u8] = &mut [];
            self.rtcp
                .encrypt_inout_detached(&nonce.into(), &buf[..len + 4], InOutBuf::from(empty))
                .map_err(|_| SrtpError::Malformed)?
        };
        buf[len..len + TAG_LEN].copy_from_slice(&tag);
        buf[len + TAG_LEN..len + TAG_LEN + 4].copy_from_slice(&word);
        if let Some(mki) = self.mki {
            buf[len + TAG_LEN + 4..out_len].copy_from_slice(&mki);
        }
        Ok(out_len)
    }

    /// The SRTCP index and E flag of a protected packet, read before verification so the
    /// replay check can run first.
    pub fn rtcp_trailer(&self, packet: &[u8]) -> Result<(u32, bool), SrtpError> {
        let end = self.check_mki(packet)?;
        if end < 8 + TAG_LEN + SRTCP_INDEX_LEN {
            return Err(SrtpError::Malformed);
        }
        let word = u32::from_be_bytes([
            packet[end - 4],
            packet[end - 3],
            packet[end - 2],
            packet[end - 1],
        ]);
        Ok((word & MAX_SRTCP_INDEX, word & E_FLAG != 0))
    }

    /// Verifies (and decrypts when E=1) the SRTCP packet filling `buf`. On failure `buf` is
    /// unchanged.
    pub fn decrypt_rtcp(&self, buf: &mut [u8]) -> Result<OpenedRtcp, SrtpError> {
        let (index, encrypted) = self.rtcp_trailer(buf)?;
        let end = self.check_mki(buf)?;
        let body_end = end - SRTCP_INDEX_LEN - TAG_LEN;
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::BadVersion);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let nonce = self.rtcp_nonce(ssrc, index);
        let tag =
            Tag::try_from(&buf[body_end..body_end + TAG_LEN]).map_err(|_| SrtpError::Malformed)?;
        let mut word = [0u8; 4];
        word.copy_from_slice(&buf[end - 4..end]);
        if encrypted {
            let mut aad = [0u8; 12];
            aad[..8].copy_from_slice(&buf[..8]);
            aad[8..].copy_from_slice(&word);
            self.rtcp
                .decrypt_inout_detached(
                    &nonce.into(),
                    &aad,
                    InOutBuf::from(&mut buf[8..body_end]),
                    &tag,
                )
                .map_err(|_| SrtpError::AuthFailed)?;
        } else {
            // Make packet || word contiguous over the tag's first octets, verify, restore.
            buf[body_end..body_end + 4].copy_from_slice(&word);
            let empty: &mut [u8] = &mut [];
            let verified = self.rtcp.decrypt_inout_detached(
                &nonce.into(),
                &buf[..body_end + 4],
                InOutBuf::from(empty),
                &tag,
            );
            buf[body_end..body_end + TAG_LEN].copy_from_slice(&tag);
            verified.map_err(|_| SrtpError::AuthFailed)?;
        }
        Ok(OpenedRtcp {
            len: body_end,
            index,
            encrypted,
        })
    }
}

/// RFC 3711 §3.3.2 sliding window over 48-bit SRTP (or 31-bit SRTCP) indices.
#[derive(Clone)]
struct ReplayWindow {
    top: u64,
    /// Bit `d` records index `top - d`.
    bits: [u64; WINDOW_WORDS],
    started: bool,
}

impl ReplayWindow {
    const fn new() -> Self {
        Self {
            top: 0,
            bits: [0; WINDOW_WORDS],
            started: false,
        }
    }

    fn check(&self, index: u64) -> Result<(), SrtpError> {
        if !self.started || index > self.top {
            return Ok(());
        }
        let d = self.top - index;
        if d >= REPLAY_WINDOW {
            return Err(SrtpError::TooOld);
        }
        if self.bits[(d / 64) as usize] >> (d % 64) & 1 == 1 {
            return Err(SrtpError::Replay);
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        if !self.started {
            self.started = true;
            self.top = index;
            self.bits = [0; WINDOW_WORDS];
            self.bits[0] = 1;
        } else if index > self.top {
            self.shift(index - self.top);
            self.top = index;
            self.bits[0] |= 1;
        } else {
            let d = self.top - index;
            if d < REPLAY_WINDOW {
                self.bits[(d / 64) as usize] |= 1 << (d % 64);
            }
        }
    }

    fn shift(&mut self, n: u64) {
        if n >= REPLAY_WINDOW {
            self.bits = [0; WINDOW_WORDS];
            return;
        }
        let words = (n / 64) as usize;
        let bits = (n % 64) as u32;
        for i in (0..WINDOW_WORDS).rev() {
            let mut v = 0;
            if i >= words {
                v = self.bits[i - words] << bits;
                if bits > 0 && i > words {
                    v |= self.bits[i - words - 1] >> (64 - bits);
                }
            }
            self.bits[i] = v;
        }
    }
}

/// Per-SSRC SRTP index state, the same on both ends.
#[derive(Clone)]
struct RtpStream {
    roc: u32,
    highest_seq: u16,
    window: ReplayWindow,
}

impl RtpStream {
    fn new(roc: u32, seq: u16) -> Self {
        Self {
            roc,
            highest_seq: seq,
            window: ReplayWindow::new(),
        }
    }

    /// RFC 3711 Appendix A: the ROC `v` and index of `seq`, relative to the highest seen.
    fn estimate(&self, seq: u16) -> Result<(u32, u64), SrtpError> {
        let s_l = i32::from(self.highest_seq);
        let s = i32::from(seq);
        let v = if s_l < 32768 {
            if s - s_l > 32768 {
                self.roc.checked_sub(1).ok_or(SrtpError::TooOld)?
            } else {
                self.roc
            }
        } else if s_l - 32768 > s {
            self.roc.checked_add(1).ok_or(SrtpError::IndexExhausted)?
        } else {
            self.roc
        };
        Ok((v, (u64::from(v) << 16) | u64::from(seq)))
    }

    fn update(&mut self, roc: u32, seq: u16, index: u64) {
        if !self.window.started || index > self.window.top {
            self.roc = roc;
            self.highest_seq = seq;
        }
        self.window.accept(index);
    }
}

/// Sending side of SRTP/SRTCP for one participant: per-SSRC rollover counters and SRTCP
/// indices. Works with any [`SrtpKeys`], so the key can change at each epoch while the
/// indices carry on.
#[derive(Default)]
pub struct SrtpSender {
    rtp: HashMap<u32, RtpStream>,
    rtcp: HashMap<u32, u32>,
}

impl SrtpSender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Protects `buf[..len]` in place; `buf` needs [`RTP_OVERHEAD`] spare octets. Returns
    /// the protected length. Refuses to encrypt an index it already used, since GCM
    /// under a repeated nonce leaks the key stream and the authentication key.
    pub fn protect_rtp(
        &mut self,
        keys: &SrtpKeys,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, SrtpError> {
        let header = parse_rtp_header(buf.get(..len).ok_or(SrtpError::Malformed)?)?;
        let stream = self
            .rtp
            .entry(header.ssrc)
            .or_insert_with(|| RtpStream::new(0, header.sequence));
        let (roc, index) = stream.estimate(header.sequence)?;
        stream
            .window
            .check(index)
            .map_err(|_| SrtpError::IndexReuse)?;
        let out = keys.encrypt_rtp(buf, len, roc)?;
        stream.update(roc, header.sequence, index);
        Ok(out)
    }

    /// [`SrtpSender::protect_rtp`] on a `Vec`, growing it by the overhead (reuse the `Vec`
    /// to stay allocation-free).
    pub fn protect_rtp_vec(
        &mut self,
        keys: &SrtpKeys,
        packet: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        in_grown_vec(packet, RTP_OVERHEAD, |buf, len| {
            self.protect_rtp(keys, buf, len)
        })
    }

    /// Protects the (compound) RTCP packet in `buf[..len]`, choosing E by
    /// [`rtcp_needs_encryption`]. `buf` needs [`RTCP_OVERHEAD`] spare octets.
    pub fn protect_rtcp(
        &mut self,
        keys: &SrtpKeys,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, SrtpError> {
        let encrypt = rtcp_needs_encryption(buf.get(..len).ok_or(SrtpError::Malformed)?);
        self.protect_rtcp_with(keys, buf, len, encrypt)
    }

    /// As [`SrtpSender::protect_rtcp`] with an explicit E flag.
    pub fn protect_rtcp_with(
        &mut self,
        keys: &SrtpKeys,
        buf: &mut [u8],
        len: usize,
        encrypt: bool,
    ) -> Result<usize, SrtpError> {
        if len < 8 || len > buf.len() {
            return Err(SrtpError::Malformed);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let next = self.rtcp.get(&ssrc).copied().unwrap_or(0);
        let out = keys.encrypt_rtcp(buf, len, next, encrypt)?;
        self.rtcp.insert(ssrc, next + 1);
        Ok(out)
    }

    /// [`SrtpSender::protect_rtcp`] on a `Vec`.
    pub fn protect_rtcp_vec(
        &mut self,
        keys: &SrtpKeys,
        packet: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        in_grown_vec(packet, RTCP_OVERHEAD, |buf, len| {
            self.protect_rtcp(keys, buf, len)
        })
    }

    /// The current rollover counter of an SSRC, for announcing to late joiners.
    pub fn roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp.get(&ssrc).map(|s| s.roc)
    }
}

/// Receiving side of SRTP/SRTCP for the streams of one remote participant.
pub struct SrtpReceiver {
    rtp: HashMap<u32, RtpStream>,
    rtcp: HashMap<u32, ReplayWindow>,
    roc_hints: HashMap<u32, u32>,
    roc_search: u32,
}

impl Default for SrtpReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl SrtpReceiver {
    pub fn new() -> Self {
        Self::with_roc_search(DEFAULT_ROC_SEARCH)
    }

    /// A receiver that tries rollover counters `0..=roc_search` on a stream's first packet.
    pub fn with_roc_search(roc_search: u32) -> Self {
        Self {
            rtp: HashMap::new(),
            rtcp: HashMap::new(),
            roc_hints: HashMap::new(),
            roc_search,
        }
    }

    /// The sender's announced rollover counter for an SSRC this receiver has not yet seen;
    /// the first packet is then tried under `roc-1..=roc+1` only.
    pub fn set_roc_hint(&mut self, ssrc: u32, roc: u32) {
        self.roc_hints.insert(ssrc, roc);
    }

    /// Rollover counter currently tracked for an SSRC.
    pub fn roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp.get(&ssrc).map(|s| s.roc)
    }

    /// Verifies, replay-checks and decrypts the SRTP packet filling `buf`; returns the RTP
    /// packet's length at the start of `buf`. State changes only on success.
    pub fn unprotect_rtp(&mut self, keys: &SrtpKeys, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let header = parse_rtp_header(buf)?;
        if let Some(stream) = self.rtp.get_mut(&header.ssrc) {
            let (roc, index) = stream.estimate(header.sequence)?;
            stream.window.check(index)?;
            let len = keys.decrypt_rtp(buf, roc)?;
            stream.update(roc, header.sequence, index);
            return Ok(len);
        }
        let (first, last) = match self.roc_hints.get(&header.ssrc) {
            Some(&hint) => (hint.saturating_sub(1), hint.saturating_add(1)),
            None => (0, self.roc_search),
        };
        for roc in first..=last {
            match keys.decrypt_rtp(buf, roc) {
                Ok(len) => {
                    let mut stream = RtpStream::new(roc, header.sequence);
                    let index = (u64::from(roc) << 16) | u64::from(header.sequence);
                    stream.update(roc, header.sequence, index);
                    self.rtp.insert(header.ssrc, stream);
                    self.roc_hints.remove(&header.ssrc);
                    return Ok(len);
                }
                Err(SrtpError::AuthFailed) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(SrtpError::AuthFailed)
    }

    /// Verifies, replay-checks and (if E=1) decrypts the SRTCP packet filling `buf`.
    pub fn unprotect_rtcp(
        &mut self,
        keys: &SrtpKeys,
        buf: &mut [u8],
    ) -> Result<OpenedRtcp, SrtpError> {
        let (index, _) = keys.rtcp_trailer(buf)?;
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if let Some(window) = self.rtcp.get(&ssrc) {
            window.check(u64::from(index))?;
        }
        let opened = keys.decrypt_rtcp(buf)?;
        self.rtcp
            .entry(ssrc)
            .or_insert_with(ReplayWindow::new)
            .accept(u64::from(index));
        Ok(opened)
    }

    /// Forgets all stream state (the remote participant left).
    pub fn clear(&mut self) {
        self.rtp.clear();
        self.rtcp.clear();
        self.roc_hints.clear();
    }
}

/// One `--key-log` line: `SRTP <ssrc 8 hex> <epoch 8 hex> <master key hex> <master salt hex>`.
pub fn keylog_line(
    ssrc: u32,
    epoch: EpochId,
    master_key: &[u8; MASTER_KEY_LEN],
    master_salt: &[u8; MASTER_SALT_LEN],
) -> String {
    format!(
        "SRTP {ssrc:08x} {epoch} {} {}",
        hex::encode(master_key),
        hex::encode(master_salt)
    )
}

/// Runs `protect` on `packet` grown by `overhead` spare octets and leaves the `Vec` at
/// the protected length, or at its old length when protection fails (so a caller that
/// reuses the `Vec` never sends a half-written tail).
fn in_grown_vec(
    packet: &mut Vec<u8>,
    overhead: usize,
    protect: impl FnOnce(&mut [u8], usize) -> Result<usize, SrtpError>,
) -> Result<(), SrtpError> {
    let len = packet.len();
    packet.resize(len + overhead, 0);
    match protect(packet, len) {
        Ok(n) => {
            packet.truncate(n);
            Ok(())
        }
        Err(e) => {
            packet.truncate(len);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_accepts_reordered_and_rejects_duplicates() {
        let mut w = ReplayWindow::new();
        w.accept(5000);
        assert_eq!(w.check(5000), Err(SrtpError::Replay));
        assert_eq!(w.check(4999), Ok(()));
        w.accept(4999);
        assert_eq!(w.check(4999), Err(SrtpError::Replay));
        w.accept(5200);
        assert_eq!(w.check(4999), Err(SrtpError::Replay));
        assert_eq!(w.check(5000), Err(SrtpError::Replay));
        assert_eq!(w.check(5001), Ok(()));
        assert_eq!(w.check(5200 - 1023), Ok(()));
        assert_eq!(w.check(5200 - 1024), Err(SrtpError::TooOld));
        w.accept(5200 + 64 * 3 + 7);
        assert_eq!(w.check(5200), Err(SrtpError::Replay));
        assert_eq!(w.check(4999), Err(SrtpError::Replay));
        w.accept(100_000);
        assert_eq!(w.check(5200), Err(SrtpError::TooOld));
        assert_eq!(w.check(99_999), Ok(()));
    }

    #[test]
    fn roc_estimate_follows_rfc3711_appendix_a() {
        let s = RtpStream::new(7, 65_530);
        assert_eq!(s.estimate(3), Ok((8, (8 << 16) | 3)));
        assert_eq!(s.estimate(65_000), Ok((7, (7 << 16) | 65_000)));
        let s = RtpStream::new(7, 10);
        assert_eq!(s.estimate(65_500), Ok((6, (6 << 16) | 65_500)));
        let s = RtpStream::new(0, 10);
        assert_eq!(s.estimate(65_500), Err(SrtpError::TooOld));
    }

    #[test]
    fn rtcp_encryption_choice() {
        let rr = [0x80, 201, 0, 1, 1, 2, 3, 4];
        let pli = [0x81, 206, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8];
        let sr = [0x80, 200, 0, 1, 1, 2, 3, 4];
        let mut compound = rr.to_vec();
        compound.extend_from_slice(&pli);
        assert!(!rtcp_needs_encryption(&compound));
        compound.extend_from_slice(&sr);
        assert!(rtcp_needs_encryption(&compound));
        assert!(rtcp_needs_encryption(&rr[..6]));
    }
}
