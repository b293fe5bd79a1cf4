//! No echo: however subscriptions are set, the forwarder never sends a packet back to the
//! endpoint that sent it.

mod common;
use blindfold_proto::model::TrackKind;
use common::*;

#[test]
fn nobody_receives_their_own_packets() {
    with_shards(|mut call| {
        // Everyone publishes and everyone subscribes to everyone else.
        for (i, n) in NAMES.iter().enumerate() {
            let ssrc = 0x100 + i as u32;
            call.sim
                .control(|m| m.set_tracks("c1", n, vec![track("t", TrackKind::Audio, &[ssrc])]))
                .unwrap();
        }
        for n in NAMES {
            let subs = NAMES
                .iter()
                .filter(|o| **o != n)
                .map(|o| sub(o, "t"))
                .collect();
            call.sim
                .control(|m| m.set_subscriptions("c1", n, subs))
                .unwrap();
        }
        for (i, n) in NAMES.iter().enumerate() {
            let me = call.addr(n);
            let h = call.send(n, &rtp(0x100 + i as u32, 1, 20));
            assert_eq!(h.sent.len(), 3, "{n} reaches the three others");
            assert!(h.to(me).next().is_none(), "{n} got its own packet back");
        }
    });
}
