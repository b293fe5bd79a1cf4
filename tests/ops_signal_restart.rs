//! A signalling-service outage does not stop calls: the forwarder holds its own state, so
//! with `blindfold signal` killed outright, media keeps flowing and decrypting between
//! the participants, and the forwarder's API still lists the conference for a restarted
//! service to resynchronise from.

mod common;
use common::*;

use blindfold::client::{Identity, Participant, ParticipantConfig};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

#[test]
fn calls_keep_flowing_when_signalling_dies() {
    let serve = ServeProcess::start(2, &[]);
    let mut signal = Command::new(env!("CARGO_BIN_EXE_blindfold"))
        .args(["signal", "--listen", "127.0.0.1:0"])
        .args(["--forwarder", &format!("http://{}", serve.control)])
        .args(["--control-token", TOKEN])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = signal.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let ws = loop {
        let line = lines.next().expect("signal prints its address").unwrap();
        if let Some(rest) = line.strip_prefix("signal ") {
            break rest.trim().to_string();
        }
    };
    let mut signal = Kill(signal);

    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let ps: Vec<Participant> = ["r1@example.org", "r2@example.org", "r3@example.org"]
        .iter()
        .map(|u| {
            let p = Participant::spawn(ParticipantConfig::new(
                &ws,
                secret,
                Identity::generate(u, "dev"),
            ))
            .unwrap();
            p.wait_ready(DEADLINE).expect("participant ready");
            p
        })
        .collect();
    for p in &ps {
        assert!(
            p.wait_stats(DEADLINE, |s| s.decrypted > 20),
            "media flows before the outage"
        );
    }
    signal.0.kill().unwrap();
    signal.0.wait().unwrap();
    let killed = Instant::now();
    let at_kill: Vec<u64> = ps.iter().map(|p| p.stats().decrypted).collect();
    // Two more seconds of audio from two senders each: ~200 packets per participant.
    for (p, before) in ps.iter().zip(&at_kill) {
        let before = *before;
        assert!(
            p.wait_stats(DEADLINE, |s| s.decrypted >= before + 150 && s.failed == 0),
            "media stopped or failed after signalling died ({:?} after the kill): {:?}",
            killed.elapsed(),
            p.stats()
        );
    }
    let api = Api::new(serve.control);
    let list = api.list();
    assert_eq!(list.conferences.len(), 1, "{list:?}");
    assert_eq!(list.conferences[0].endpoints, 3);
    for p in ps {
        p.stop();
    }
}
