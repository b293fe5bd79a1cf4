//! Simulcast layers: a subscriber moves to another layer only at a key frame (S=1, I=1)
//! of that layer, the old layer flowing until then; pause stops at a frame boundary; the
//! receiver's PLI/FIR reaches the publisher for the layer it is moving to, and nothing
//! of a paused one's does; a missing or malformed frame marking never stops a packet.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::model::Subscription;
use blindfold_proto::route::Outcome;
use common::*;

/// Who got each packet of a frame.
fn got(hs: &[blindfold_proto::sim::Handled], dst: std::net::SocketAddr) -> Vec<bool> {
    hs.iter().map(|h| h.dsts().contains(&dst)).collect()
}

fn set_layer(room: &mut Room, who: usize, of: usize, layer: Option<u8>, paused: bool) {
    let id = Room::name(who);
    let mut subs: Vec<Subscription> = (0..room.agents.len())
        .filter(|&o| o != who)
        .flat_map(|o| [sub(&Room::name(o), "mic"), sub(&Room::name(o), "cam")])
        .collect();
    for s in &mut subs {
        if s.endpoint == Room::name(of) && s.track == "cam" {
            s.layer = layer;
            s.paused = paused;
        }
    }
    room.sim
        .control(|m| m.set_subscriptions("s1", &id, subs))
        .unwrap();
}

#[test]
fn a_subscriber_starts_and_switches_only_at_a_key_frame_of_its_layer() {
    for shards in [1, 3] {
        let mut room = Room::new(2, shards);
        let b = addr(1);
        // p1 wants p0's best layer (2). Delta frames of any layer: nothing yet.
        assert_eq!(got(&room.frame(0, 0, false, 2), b), [false, false]);
        assert_eq!(got(&room.frame(0, 2, false, 3), b), [false; 3]);
        // A key frame of layer 0 is not its layer either.
        assert_eq!(got(&room.frame(0, 0, true, 2), b), [false, false]);
        // Layer 2's key frame: from its first packet on, and every later frame.
        assert_eq!(got(&room.frame(0, 2, true, 3), b), [true; 3]);
        assert_eq!(got(&room.frame(0, 2, false, 3), b), [true; 3]);
        assert_eq!(got(&room.frame(0, 1, false, 2), b), [false; 2]);

        // Down to layer 0: layer 2 keeps flowing until layer 0 has a key frame.
        set_layer(&mut room, 1, 0, Some(0), false);
        assert_eq!(got(&room.frame(0, 2, false, 3), b), [true; 3]);
        assert_eq!(got(&room.frame(0, 0, false, 2), b), [false; 2]);
        assert_eq!(got(&room.frame(0, 2, false, 3), b), [true; 3]);
        assert_eq!(got(&room.frame(0, 0, true, 2), b), [true; 2]);
        assert_eq!(got(&room.frame(0, 2, false, 3), b), [false; 3]);
        assert_eq!(got(&room.frame(0, 2, true, 3), b), [false; 3]);
        assert_eq!(got(&room.frame(0, 0, false, 2), b), [true; 2]);
        assert!(room.sim.counters().layer_switches >= 2);
    }
}

#[test]
fn pause_stops_at_a_frame_boundary_and_resumes_at_a_key_frame() {
    let mut room = Room::new(2, 1);
    let b = addr(1);
    room.frame(0, 2, true, 1);
    // A frame in flight when the pause arrives is finished, the next one is not sent.
    let first = room.cams[0].frame(2, false, 3);
    assert!(room.sim.receive(addr(0), &first[0]).dsts().contains(&b));
    set_layer(&mut room, 1, 0, None, true);
    assert!(room.sim.receive(addr(0), &first[1]).dsts().contains(&b));
    assert!(room.sim.receive(addr(0), &first[2]).dsts().contains(&b));
    assert_eq!(got(&room.frame(0, 2, false, 3), b), [false; 3]);
    assert_eq!(got(&room.frame(0, 2, true, 3), b), [false; 3]);
    // Resumed: from the next key frame.
    set_layer(&mut room, 1, 0, None, false);
    assert_eq!(got(&room.frame(0, 2, false, 3), b), [false; 3]);
    assert_eq!(got(&room.frame(0, 2, true, 3), b), [true; 3]);
}

#[test]
fn feedback_reaches_the_publisher_for_the_layer_the_receiver_moves_to() {
    let mut room = Room::new(3, 1);
    let publisher = addr(0);
    // p1 is on layer 2 and moves to layer 0; its PLI about layer 0's SSRC goes to p0.
    room.frame(0, 2, true, 1);
    set_layer(&mut room, 1, 0, Some(0), false);
    let pli = srtcp_e0(fb(206, 1, 0x9999, cam_ssrcs(0)[0]));
    let h = room.sim.receive(addr(1), &pli);
    assert_eq!(h.dsts(), vec![publisher], "PLI for the target layer");
    // A FIR about layer 1 (not its target) still names a layer of a track it receives.
    let h = room
        .sim
        .receive(addr(1), &srtcp_e0(fb(206, 1, 0x9999, cam_ssrcs(0)[1])));
    assert_eq!(h.dsts(), vec![publisher]);
    // Paused: its key-frame requests go nowhere (no PLI flood from someone who gets
    // nothing). The pause takes effect at the next frame.
    set_layer(&mut room, 2, 0, None, true);
    room.frame(0, 2, false, 1);
    let h = room
        .sim
        .receive(addr(2), &srtcp_e0(fb(206, 1, 0x9998, cam_ssrcs(0)[2])));
    assert_eq!(h.outcome, Outcome::Dropped(DropReason::RtcpNoTarget));
    assert!(h.sent.is_empty());
    // The sender report of a layer goes to whoever is on that layer, only.
    let h = room.sim.receive(publisher, &sr(cam_ssrcs(0)[2]));
    assert_eq!(
        h.dsts(),
        vec![addr(1)],
        "p1 is still on layer 2, p2 is paused"
    );
}

#[test]
fn a_missing_or_malformed_frame_marking_is_counted_and_never_drops() {
    let mut room = Room::new(2, 1);
    let b = addr(1);
    room.frame(0, 2, true, 1);
    let ssrc = cam_ssrcs(0)[2];
    // No extension at all.
    let h = room.sim.receive(addr(0), &rtp(ssrc, 100, 200));
    assert_eq!(h.dsts(), vec![b]);
    // An extension block whose element claims more than the block holds.
    let mut bad = video(ssrc, 101, false, false, false);
    bad[12 + 4] = 0x3f;
    let h = room.sim.receive(addr(0), &bad);
    assert_eq!(h.dsts(), vec![b]);
    let c = room.sim.counters();
    assert_eq!((c.ext_missing, c.ext_malformed), (1, 1));
    // Neither counts as a switch point: a subscriber not on the layer gets neither.
    set_layer(&mut room, 1, 0, Some(1), false);
    room.frame(0, 1, true, 1);
    let h = room.sim.receive(addr(0), &rtp(ssrc, 102, 200));
    assert!(h.sent.is_empty());
}

#[test]
fn a_subscriber_falls_back_to_the_best_layer_the_publisher_sends() {
    let mut room = Room::new(2, 1);
    let b = addr(1);
    // p0 sends only layers 0 and 1 (its uplink cannot carry 2): p1, which wants 2, gets
    // 1 from its key frame on.
    room.frame(0, 0, true, 1);
    assert_eq!(got(&room.frame(0, 1, true, 2), b), [true; 2]);
    assert_eq!(got(&room.frame(0, 0, false, 1), b), [false]);
    // Layer 2 appears: p1 moves up at its key frame, not before.
    assert_eq!(got(&room.frame(0, 2, false, 2), b), [false; 2]);
    assert_eq!(got(&room.frame(0, 1, false, 2), b), [true; 2]);
    assert_eq!(got(&room.frame(0, 2, true, 2), b), [true; 2]);
    assert_eq!(got(&room.frame(0, 1, false, 2), b), [false; 2]);
    // Layer 2 stops for over a second: p1 goes back down at layer 1's next key frame.
    room.sim.advance(std::time::Duration::from_millis(1100));
    assert_eq!(got(&room.frame(0, 1, false, 2), b), [false; 2]);
    assert_eq!(got(&room.frame(0, 1, true, 2), b), [true; 2]);
}

#[test]
fn a_publisher_that_moves_to_another_shard_waits_for_a_key_frame_there() {
    let mut room = Room::new(2, 3);
    let b = addr(1);
    room.frame(0, 2, true, 1);
    assert_eq!(got(&room.frame(0, 2, false, 2), b), [true; 2]);
    // p0 rebinds to an address another shard receives: that shard never saw what p1
    // got, so a delta frame from there must wait for a key frame.
    let old = room.sim.shard_of(addr(0));
    let new = (0..64)
        .map(other)
        .find(|a| room.sim.shard_of(*a) != old)
        .expect("an address on another shard");
    let mut agent = room.agents[0].clone();
    assert!(room.sim.latch(&mut agent, new));
    for p in &room.cams[0].frame(2, false, 2) {
        assert!(!room.sim.receive(new, p).dsts().contains(&b));
    }
    for p in &room.cams[0].frame(2, true, 2) {
        assert!(room.sim.receive(new, p).dsts().contains(&b));
    }
    // Back to the first shard, which had stopped at the move: a key frame again.
    let mut agent = room.agents[0].clone();
    assert!(room.sim.latch(&mut agent, addr(0)));
    for p in &room.cams[0].frame(2, false, 2) {
        assert!(!room.sim.receive(addr(0), p).dsts().contains(&b));
    }
    for p in &room.cams[0].frame(2, true, 1) {
        assert!(room.sim.receive(addr(0), p).dsts().contains(&b));
    }
}

#[test]
fn a_publisher_that_rebinds_on_the_same_shard_flows_on() {
    // One shard saw everything p1 got, so the next delta frame continues it.
    let mut room = Room::new(2, 1);
    let b = addr(1);
    room.frame(0, 2, true, 1);
    let mut agent = room.agents[0].clone();
    assert!(room.sim.latch(&mut agent, other(0)));
    for p in &room.cams[0].frame(2, false, 2) {
        assert!(room.sim.receive(other(0), p).dsts().contains(&b));
    }
}

#[test]
fn a_subscriber_that_missed_the_key_frame_unlatched_waits_for_the_next_one() {
    let mut sim = blindfold_proto::sim::Sim::new(blindfold_proto::sim::SimConfig::default());
    let mut p0 = sim.join("s1", "p0");
    let mut p1 = sim.join("s1", "p1");
    sim.control(|m| m.set_tracks("s1", "p0", vec![simulcast("cam", &cam_ssrcs(0))]))
        .unwrap();
    sim.control(|m| m.set_subscriptions("s1", "p1", vec![sub("p0", "cam")]))
        .unwrap();
    assert!(sim.latch(&mut p0, addr(0)));
    let mut cam = Layers::new(&cam_ssrcs(0));
    // The key frame comes while p1 has no address yet: nobody to send it to.
    for pkt in cam.frame(2, true, 2) {
        assert!(sim.receive(addr(0), &pkt).dsts().is_empty());
    }
    assert!(sim.latch(&mut p1, addr(1)));
    // The delta frames after it are undecodable without it: not sent.
    for pkt in cam.frame(2, false, 2) {
        assert!(!sim.receive(addr(0), &pkt).dsts().contains(&addr(1)));
    }
    for pkt in cam.frame(2, true, 2) {
        assert!(sim.receive(addr(0), &pkt).dsts().contains(&addr(1)));
    }
}
