//! `--key-log` works like SSLKEYLOGFILE: with the lines it writes, an independent SRTP
//! implementation (rtc-srtp, as libsrtp-based tools would) decrypts a capture of the call
//! to the exact payloads the senders built.

mod common;

use std::collections::HashMap;

use blindfold::client::keylog::parse_line;
use blindfold::client::media::check_payload;
use blindfold::client::{Identity, Participant, ParticipantConfig};
use blindfold::signal::{SignalArgs, SignalServer};
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;

#[test]
fn key_log_decrypts_a_capture_with_rtc_srtp() {
    let fwd = common::forwarder(1);
    let signal = SignalServer::start(&SignalArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        forwarders: vec![format!("http://{}", fwd.control_addr())],
        control_token: common::TOKEN.into(),
        debug_state: false,
        metrics: false,
        speaker_detection: true,
        limits: Default::default(),
        health: Default::default(),
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("blindfold-keylog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("keys.log");
    let _ = std::fs::remove_file(&log);
    let secret = [7u8; 32];
    let ps: Vec<Participant> = (0..3)
        .map(|i| {
            let mut cfg = ParticipantConfig::new(
                &signal.ws_url(),
                secret,
                Identity::generate(&format!("u{i}"), "d"),
            );
            cfg.key_log = Some(log.clone());
            cfg.record = 10_000;
            cfg.schedule.epoch_interval_ms = 1_000;
            let p = Participant::spawn(cfg).unwrap();
            p.wait_ready(common::DEADLINE).expect("ready");
            p
        })
        .collect();
    // Run across a few ratchet steps, so the capture spans several epochs.
    assert!(ps[0].wait_stats(common::DEADLINE, |s| s.ratchets >= 2 && s.decrypted > 200));
    let capture = ps[0].captured();
    let text = std::fs::read_to_string(&log).unwrap();
    let keys: HashMap<(u32, u32), (Vec<u8>, Vec<u8>)> = text
        .lines()
        .filter_map(parse_line)
        .map(|e| ((e.ssrc, e.epoch), (e.key, e.salt)))
        .collect();
    assert!(
        text.lines().all(|l| parse_line(l).is_some()),
        "every line parses: {text}"
    );

    let provider = rtc_srtp::crypto::default_provider().expect("crypto provider");
    let mut contexts: HashMap<(u32, u32), Context> = HashMap::new();
    let mut epochs = std::collections::BTreeSet::new();
    let mut decrypted = 0;
    for c in &capture {
        let pkt = &c.data;
        let ssrc = u32::from_be_bytes(pkt[8..12].try_into().unwrap());
        let seq = u16::from_be_bytes(pkt[2..4].try_into().unwrap());
        let n = pkt.len();
        let epoch = u32::from_be_bytes(pkt[n - 4..].try_into().unwrap());
        let Some((key, salt)) = keys.get(&(ssrc, epoch)) else {
            panic!("no key-log line for ssrc {ssrc:08x} epoch {epoch:08x}");
        };
        let ctx = contexts.entry((ssrc, epoch)).or_insert_with(|| {
            Context::new(
                key,
                salt,
                ProtectionProfile::AeadAes128Gcm,
                None,
                None,
                provider.crypto(),
            )
            .unwrap()
        });
        // rtc-srtp is configured without an MKI, like libsrtp for one key: strip it.
        let plain = ctx
            .decrypt_rtp(&pkt[..n - 4])
            .expect("rtc-srtp decrypts with the logged key");
        // The header may carry extensions (the audio level): skip them as a receiver would.
        let header = blindfold::e2ee::srtp::parse_rtp_header(&plain).expect("rtp header");
        assert!(
            check_payload(ssrc, seq, &plain[header.len..]),
            "payload as sent"
        );
        epochs.insert(epoch);
        decrypted += 1;
    }
    assert!(decrypted > 200, "decrypted {decrypted}");
    assert!(epochs.len() >= 2, "capture spans epochs: {epochs:?}");
    // A wrong key does not decrypt: the check above can fail.
    let pkt = &capture[0].data;
    let mut wrong = Context::new(
        &[0u8; 16],
        &[0u8; 12],
        ProtectionProfile::AeadAes128Gcm,
        None,
        None,
        provider.crypto(),
    )
    .unwrap();
    assert!(wrong.decrypt_rtp(&pkt[..pkt.len() - 4]).is_err());

    drop(ps);
    signal.stop();
    fwd.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
