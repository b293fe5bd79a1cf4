//! Native participants speak SFrame on the wire (`--media sframe`, the format of calls
//! browsers are in): three of them, keyed by their real MLS group, through the real
//! signalling service and forwarder, each decrypt and verify the others' audio and video
//! (plain RTP headers, SFrame payloads found by KID), including across a ratchet step
//! and after a member leaves, with no failure.

mod common;

use std::time::Duration;

use blindfold::client::{Identity, MediaFormat, Participant, ParticipantConfig, VideoConfig};
use blindfold::signal::{SignalArgs, SignalServer};

#[test]
fn native_members_open_each_others_sframe_media() {
    let fwd = common::forwarder(1);
    let signal = SignalServer::start(&SignalArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        forwarders: vec![format!("http://{}", fwd.control_addr())],
        control_token: common::TOKEN.into(),
        debug_state: false,
        metrics: false,
        limits: Default::default(),
        health: Default::default(),
        speaker_detection: true,
    })
    .unwrap();
    let secret: [u8; 32] = rand::random();
    let ps: Vec<Participant> = (0..3)
        .map(|i| {
            let mut c = ParticipantConfig::new(
                &signal.ws_url(),
                secret,
                Identity::generate(&format!("p{i}"), "d"),
            );
            c.media = MediaFormat::Sframe;
            c.video = Some(VideoConfig {
                bitrate_bps: 300_000,
                ..VideoConfig::default()
            });
            c.schedule.epoch_interval_ms = 2_000;
            let p = Participant::spawn(c).unwrap();
            p.wait_ready(common::DEADLINE).unwrap();
            p
        })
        .collect();
    let deadline = Duration::from_secs(30);
    for (i, p) in ps.iter().enumerate() {
        assert!(
            p.wait_stats(deadline, |s| s.group_size == 3
                && s.decrypted > 300
                && s.epochs_seen >= 2),
            "participant {i} opens the others' frames across a ratchet step: {:?}",
            p.stats()
        );
    }
    ps[2].leave(common::DEADLINE).unwrap();
    let marks: Vec<u64> = ps[..2].iter().map(|p| p.stats().decrypted).collect();
    for (p, m) in ps[..2].iter().zip(marks) {
        assert!(
            p.wait_stats(deadline, |s| s.group_size == 2 && s.decrypted > m + 200),
            "after the leave the rest go on: {:?}",
            p.stats()
        );
        let s = p.stats();
        assert_eq!(
            (s.failed, s.content_errors),
            (0, 0),
            "no frame failed: {s:?}"
        );
    }
    for p in ps {
        let _ = p.stop();
    }
    signal.stop();
    fwd.stop();
}
