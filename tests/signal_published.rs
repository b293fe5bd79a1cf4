//! The `published` acknowledgement: once a publisher hears it, the forwarder holds its
//! tracks, so media it sends from then on is never dropped as `ssrc_not_owned`. Before
//! the service had no such message, and a participant that started sending right after
//! `publish` had its first packets dropped.

mod common;

use common::signal::*;
use common::*;

fn latch(serve: &ServeProcess, joined: &serde_json::Value) -> Peer {
    let peer = Peer::new(serve.media);
    let creds = Creds {
        ufrag: joined["ice"]["ufrag"].as_str().unwrap().into(),
        pwd: joined["ice"]["pwd"].as_str().unwrap().into(),
    };
    peer.latch(&creds);
    peer
}

#[test]
fn media_sent_after_published_is_never_dropped_as_foreign() {
    let serve = ServeProcess::start(1, &[]);
    let signal = SignalProcess::start(serve.control, &[]);
    let api = Api::new(serve.control);
    let conf = eid(1);
    let mut publisher = RawWs::open(signal.addr);
    let p_joined = publisher.join(&conf, &eid(10), true);
    let mut subscriber = RawWs::open(signal.addr);
    let s_joined = subscriber.join(&conf, &eid(11), true);
    let (p, s) = (latch(&serve, &p_joined), latch(&serve, &s_joined));

    for round in 0..5u32 {
        let ssrc = 0xA0 + round;
        // Each publish adds an SSRC and keeps the earlier ones: the last round's packets
        // may still sit in the forwarder's socket when this publish lands (a descheduled
        // shard on a loaded machine), and they must not count as foreign either.
        let ssrcs: Vec<String> = (0xA0..=ssrc).map(|s| s.to_string()).collect();
        let ssrcs = ssrcs.join(",");
        let publish = format!(
            r#"{{"v":1,"type":"publish","tracks":[{{"id":"mic","kind":"audio","ssrcs":[{ssrcs}]}}]}}"#
        );
        publisher.send_text(&publish).unwrap();
        publisher
            .recv_type("published")
            .expect("`published` acknowledges the publish");
        // Media at once, as a participant does on `published`.
        p.send(&rtp(ssrc, 1, 40));
        p.send(&rtp(ssrc, 2, 40));
    }
    // The subscriber's subscription follows; media reaches it.
    let mut seq = 100u16;
    let mut got = Vec::new();
    assert!(
        wait_for(|| {
            seq += 1;
            p.send(&rtp(0xA4, seq, 40));
            got.extend(s.drain());
            got.iter()
                .any(|x| rtp_id(x).is_some_and(|(ssrc, _)| ssrc == 0xA4))
        }),
        "the subscriber receives the published track"
    );
    assert_eq!(
        api.counter(
            "blindfold_dropped_packets_total",
            "reason=\"ssrc_not_owned\""
        ),
        0,
        "packets sent after `published` were dropped as foreign"
    );
}
