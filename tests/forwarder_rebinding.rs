//! NAT rebinding: a verified STUN check from a new address moves the endpoint; the old
//! address stops receiving and can no longer send.

mod common;
use common::*;

#[test]
fn stun_from_new_address_moves_the_endpoint() {
    with_shard_counts(|fwd| {
        let call = Call::new(fwd);
        let b_creds = &call.creds[1];
        let b_new = Peer::new(fwd.media_addr());
        b_new.latch(b_creds);
        // The move propagates to every shard; wait until a's packets reach the new socket.
        let mut seq = 0u16;
        let arrived = wait_for(|| {
            seq += 1;
            call.peer("a").send(&rtp(0xA1, seq, 20));
            b_new
                .drain()
                .iter()
                .any(|p| rtp_id(p).map(|(s, _)| s) == Some(0xA1))
        });
        assert!(arrived, "media follows the endpoint to its new address");
        let old = call.peer("b");
        old.drain();
        // Barrier through c: once c has the marker, b's old address would have too.
        let marker = rtp(0xA1, 60_000, 20);
        call.peer("a").send(&marker);
        let mut skip = Vec::new();
        call.peer("c")
            .recv_until(|p| p == marker.as_slice(), &mut skip)
            .unwrap();
        let mut skip = Vec::new();
        b_new
            .recv_until(|p| p == marker.as_slice(), &mut skip)
            .expect("new address gets it");
        assert!(
            old.drain().iter().all(|p| p != &marker),
            "the old address still receives"
        );
    });
}
