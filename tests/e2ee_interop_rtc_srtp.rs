//! Cross-check against an independent SRTP implementation (the rtc-srtp crate, profile
//! SRTP_AEAD_AES_128_GCM): it decrypts what we encrypt and we decrypt what it encrypts,
//! for RTP (across a sequence-number wrap) and RTCP.
//!
//! rtc-srtp has no MKI support, so these contexts are built without an MKI. It also always
//! sends SRTCP with E=1 and assumes E=1 on receipt, so the E=0 (tagging-only) form is pinned
//! by RFC 7714 §17.3 in `e2ee_rfc_vectors.rs` instead.

use blindfold::e2ee::srtp::{SrtpKeys, SrtpReceiver, SrtpSender};
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;

const MASTER_KEY: [u8; 16] = *b"blindfold-interp";
const MASTER_SALT: [u8; 12] = *b"salt-for-gcm";

fn theirs() -> Context {
    let provider = rtc_srtp::crypto::default_provider().expect("rtc-srtp crypto provider");
    Context::new(
        &MASTER_KEY,
        &MASTER_SALT,
        ProtectionProfile::AeadAes128Gcm,
        None,
        None,
        provider.crypto(),
    )
    .expect("rtc-srtp context")
}

fn ours() -> SrtpKeys {
    SrtpKeys::derive(&MASTER_KEY, &MASTER_SALT, None)
}

fn rtp(seq: u16, with_extension: bool) -> Vec<u8> {
    let mut p = vec![0x80, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    if with_extension {
        p[0] |= 0x10;
        // RFC 8285 one-byte header extension: audio level (id 1), padded to a word.
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0x00, 0x00]);
    }
    p.extend((0..100u8).map(|i| i ^ seq as u8));
    p
}

fn sequence() -> impl Iterator<Item = u16> {
    (65_530u16..=65_535).chain(0..6)
}

#[test]
fn rtc_srtp_decrypts_our_rtp() {
    let keys = ours();
    let mut sender = SrtpSender::new();
    let mut them = theirs();
    for (i, seq) in sequence().enumerate() {
        let plain = rtp(seq, i % 2 == 0);
        let mut packet = plain.clone();
        sender.protect_rtp_vec(&keys, &mut packet).unwrap();
        let decrypted = them.decrypt_rtp(&packet).expect("rtc-srtp decrypts ours");
        assert_eq!(&decrypted[..], &plain[..], "seq {seq}");
    }
    assert_eq!(
        sender.roc(0x1234_5678),
        Some(1),
        "the wrap advanced the ROC"
    );
}

#[test]
fn we_decrypt_rtc_srtp_rtp() {
    let keys = ours();
    let mut receiver = SrtpReceiver::new();
    let mut them = theirs();
    for (i, seq) in sequence().enumerate() {
        let plain = rtp(seq, i % 2 == 1);
        let mut packet = them
            .encrypt_rtp(&plain)
            .expect("rtc-srtp encrypts")
            .to_vec();
        let n = receiver
            .unprotect_rtp(&keys, &mut packet)
            .expect("we decrypt theirs");
        assert_eq!(&packet[..n], &plain[..], "seq {seq}");
    }
    assert_eq!(receiver.roc(0x1234_5678), Some(1));
}

fn sender_report(n: u8) -> Vec<u8> {
    // SR with no report blocks: header, SSRC, NTP(8), RTP ts, packet and octet counts.
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend((0..20u8).map(|i| i.wrapping_mul(n)));
    p
}

#[test]
fn rtc_srtp_decrypts_our_srtcp() {
    let keys = ours();
    let mut sender = SrtpSender::new();
    let mut them = theirs();
    for n in 1..5 {
        let plain = sender_report(n);
        let mut packet = plain.clone();
        sender.protect_rtcp_vec(&keys, &mut packet).unwrap();
        assert_eq!(packet[packet.len() - 4] & 0x80, 0x80, "an SR is encrypted");
        let decrypted = them.decrypt_rtcp(&packet).expect("rtc-srtp decrypts ours");
        assert_eq!(&decrypted[..], &plain[..]);
    }
}

#[test]
fn we_decrypt_rtc_srtp_srtcp() {
    let keys = ours();
    let mut receiver = SrtpReceiver::new();
    let mut them = theirs();
    for n in 1..5 {
        let plain = sender_report(n);
        let mut packet = them
            .encrypt_rtcp(&plain)
            .expect("rtc-srtp encrypts")
            .to_vec();
        assert_ne!(
            &packet[8..plain.len()],
            &plain[8..],
            "rtc-srtp encrypted it"
        );
        let opened = receiver
            .unprotect_rtcp(&keys, &mut packet)
            .expect("we decrypt theirs");
        assert!(opened.encrypted);
        assert_eq!(&packet[..opened.len], &plain[..]);
    }
}
