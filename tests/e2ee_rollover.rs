//! Rollover-counter tracking across sequence wrap, and a late joiner decrypting a stream
//! that wrapped before it joined: by trial over 0..=roc_search, or from an announced ROC.

use blindfold::e2ee::{SrtpError, SrtpKeys, SrtpReceiver, SrtpSender};

const KEY: [u8; 16] = [0x42; 16];
const SALT: [u8; 12] = [0x24; 12];
const SSRC: u32 = 0x0bad_cafe;

fn keys() -> SrtpKeys {
    SrtpKeys::derive(&KEY, &SALT, None)
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p
}

/// Drives a sender to ROC 3 with large sequence steps (each below 2^15, so the ROC
/// estimate stays exact), returning every protected packet.
fn stream_to_roc_3(sender: &mut SrtpSender, k: &SrtpKeys) -> Vec<Vec<u8>> {
    let mut seq = 0u16;
    let mut out = Vec::new();
    for _ in 0..9 {
        let mut p = rtp(seq);
        sender.protect_rtp_vec(k, &mut p).unwrap();
        out.push(p);
        seq = seq.wrapping_add(30_000);
    }
    assert_eq!(sender.roc(SSRC), Some(3));
    out
}

#[test]
fn continuous_receiver_tracks_roc_across_wraps() {
    let k = keys();
    let mut sender = SrtpSender::new();
    let mut receiver = SrtpReceiver::new();
    for p in stream_to_roc_3(&mut sender, &k) {
        let mut buf = p.clone();
        receiver.unprotect_rtp(&k, &mut buf).unwrap();
    }
    assert_eq!(receiver.roc(SSRC), Some(3));
    // Reordering around a wrap: 65535 of ROC 3 after 0 of ROC 4.
    let mut sender = SrtpSender::new();
    let mut receiver = SrtpReceiver::new();
    let mut packets = Vec::new();
    for seq in [65_533u16, 65_534, 65_535, 0, 1] {
        let mut p = rtp(seq);
        sender.protect_rtp_vec(&k, &mut p).unwrap();
        packets.push(p);
    }
    for i in [0usize, 1, 3, 2, 4] {
        let mut buf = packets[i].clone();
        receiver.unprotect_rtp(&k, &mut buf).unwrap();
        assert_eq!(
            &buf[..buf.len() - 16],
            &rtp([65_533u16, 65_534, 65_535, 0, 1][i])[..]
        );
    }
    let mut replay = packets[2].clone();
    assert_eq!(
        receiver.unprotect_rtp(&k, &mut replay),
        Err(SrtpError::Replay)
    );
}

#[test]
fn late_joiner_finds_the_roc_by_trial() {
    let k = keys();
    let mut sender = SrtpSender::new();
    let last = stream_to_roc_3(&mut sender, &k).pop().unwrap();
    let mut joiner = SrtpReceiver::new();
    let mut buf = last.clone();
    joiner
        .unprotect_rtp(&k, &mut buf)
        .expect("ROC 3 is within the default search");
    assert_eq!(joiner.roc(SSRC), Some(3));

    let mut narrow = SrtpReceiver::with_roc_search(2);
    let mut buf = last.clone();
    assert_eq!(
        narrow.unprotect_rtp(&k, &mut buf),
        Err(SrtpError::AuthFailed)
    );
}

#[test]
fn late_joiner_uses_an_announced_roc() {
    let k = keys();
    let mut sender = SrtpSender::new();
    let last = stream_to_roc_3(&mut sender, &k).pop().unwrap();
    let mut joiner = SrtpReceiver::with_roc_search(0);
    joiner.set_roc_hint(SSRC, sender.roc(SSRC).unwrap());
    let mut buf = last.clone();
    joiner.unprotect_rtp(&k, &mut buf).unwrap();
    assert_eq!(joiner.roc(SSRC), Some(3));
}

#[test]
fn sender_refuses_to_reuse_an_index() {
    let k = keys();
    let mut sender = SrtpSender::new();
    let mut p = rtp(7);
    sender.protect_rtp_vec(&k, &mut p).unwrap();
    let mut again = rtp(7);
    assert_eq!(
        sender.protect_rtp_vec(&k, &mut again),
        Err(SrtpError::IndexReuse)
    );
    assert_eq!(again, rtp(7), "a refused packet is left as it was");
}
