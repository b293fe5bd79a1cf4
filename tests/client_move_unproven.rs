//! A `moved` naming an address that never answers gets STUN checks and no media: the
//! participant sends media only to an address that answered its check with the
//! endpoint's pwd. Here the signalling service moves the call (its first forwarder is
//! killed) to a forwarder whose advertised candidate is a stranger's socket (a
//! misconfigured or hostile service would do the same); the stranger never answers. Without
//! the participant's guard, media flows to the stranger once the re-latch times out.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use blindfold::client::{Identity, Participant, ParticipantConfig};
use common::ServeProcess;
use common::signal::SignalProcess;

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn a_move_to_an_address_that_never_answers_sends_it_no_media() {
    let mut a = ServeProcess::start(1, &[]);
    // B's control API answers, but its advertised candidate is 127.0.0.2 at B's media port
    // (B listens on 127.0.0.1), where the stranger listens.
    let b = ServeProcess::start(1, &["--advertise", "127.0.0.2"]);
    let stranger = UdpSocket::bind(("127.0.0.2", b.media.port())).expect("stranger binds");
    stranger
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let signal = SignalProcess::start_on(
        &[a.control, b.control],
        &["--health-interval-ms", "200", "--health-failures", "3"],
        &[],
    );
    let ws = format!("ws://{}/v1/ws", signal.addr);
    let secret: [u8; 32] = rand::random();
    let ps: Vec<Participant> = (0..2)
        .map(|i| {
            let id = Identity::generate(&format!("p{i}@example.org"), "laptop");
            let mut c = ParticipantConfig::new(&ws, secret, id);
            // The re-latch gives up after this long; then the guard is all that holds.
            c.join_timeout = Duration::from_secs(3);
            let p = Participant::spawn(c).expect("participant starts");
            p.wait_ready(DEADLINE).expect("participant ready");
            p
        })
        .collect();
    for p in &ps {
        assert!(
            p.wait_stats(DEADLINE, |s| s.decrypted > 20),
            "{:?}",
            p.stats()
        );
    }
    a.child.kill().expect("SIGKILL A");
    a.child.wait().expect("A reaped");
    for p in &ps {
        assert!(
            p.wait_stats(DEADLINE, |s| s.moves == 1),
            "moved: {:?}",
            p.stats()
        );
    }
    // Watch the stranger past the re-latch's give-up (3 s) and as long again.
    let (mut stun, mut media) = (0usize, 0usize);
    let until = Instant::now() + Duration::from_secs(7);
    let mut buf = [0u8; 2048];
    while Instant::now() < until {
        if let Ok((n, _)) = stranger.recv_from(&mut buf) {
            match buf[..n].first() {
                Some(0..=3) => stun += 1,
                _ => media += 1,
            }
        }
    }
    println!("the stranger got {stun} STUN checks and {media} media datagrams");
    assert!(stun > 0, "the participants did try the new address");
    assert_eq!(media, 0, "no media to an address that never answered");
}
