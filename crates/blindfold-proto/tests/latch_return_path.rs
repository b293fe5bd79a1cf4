//! The return-path proof (issue 14 item 1): a verified check from a new address moves no
//! media there until that address has answered the forwarder's own check (a Binding
//! request with a fresh unpredictable transaction id, keyed by the endpoint's pwd), and
//! until then the forwarder sends that address at most 3x what it received from it. An
//! address held by one endpoint is never taken by another without that proof, and never
//! across conferences.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use blindfold_proto::sim::{MEDIA_ADDR, SimConfig};
use blindfold_proto::stun::BindingRequest;
use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;

fn victim(i: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 99], 9000 + i))
}

fn is_rtp(d: &[u8]) -> bool {
    d.first().is_some_and(|b| b >> 6 == 2)
}

/// A participant forges its own valid check from 20 victims' addresses (issue 14's
/// experiment). The victims never answer: they get no media, and fewer bytes than 3x
/// what arrived "from" them.
#[test]
fn forged_sources_get_no_media_and_at_most_three_times_what_they_sent() {
    for shards in [1, 3] {
        let mut call = Call::new(SimConfig {
            shards,
            ..SimConfig::default()
        });
        let mut x = call.sim.join("c1", "x");
        call.sim
            .control(|m| m.set_subscriptions("c1", "x", vec![sub("a", "mic"), sub("a", "cam")]))
            .unwrap();
        let own = other(50);
        assert!(call.sim.latch(&mut x, own));
        let mut from_victim: HashMap<SocketAddr, usize> = HashMap::new();
        let mut to_victim: HashMap<SocketAddr, usize> = HashMap::new();
        for round in 0..3 {
            for i in 0..20 {
                let v = victim(i);
                let check = x.check(true);
                *from_victim.entry(v).or_default() += check.data.len();
                let h = call.sim.receive(v, &check.data);
                for d in h.to(v) {
                    assert!(!is_rtp(d));
                    *to_victim.entry(v).or_default() += d.len();
                }
                assert_eq!(call.sim.endpoint_at(v), None, "round {round}: {v} latched");
            }
        }
        let mut x_got = 0;
        for seq in 0..500 {
            let h = call.send("a", &rtp(0xA1 + u32::from(seq % 2), seq, 1000));
            for s in &h.sent {
                assert!(
                    !to_victim.contains_key(&s.dst) && !from_victim.contains_key(&s.dst),
                    "media reached a victim"
                );
            }
            x_got += h.to(own).count();
        }
        assert_eq!(x_got, 500, "the attacker's own address keeps its media");
        for (v, sent) in &to_victim {
            let received = from_victim[v];
            assert!(
                *sent <= 3 * received,
                "{v}: {sent} bytes sent for {received} received"
            );
        }
    }
}

/// An honest move: after a verified, nominating check from a new address the forwarder
/// sends its own check there; media moves when, and only when, the answer comes back
/// from that address.
#[test]
fn media_moves_to_a_new_address_once_it_answers_from_there() {
    for shards in [1, 3] {
        let mut call = Call::new(SimConfig {
            shards,
            ..SimConfig::default()
        });
        let (old, new, elsewhere) = (call.addr("b"), other(2), other(3));
        let mut b = call.agent("b").clone();
        let check = b.check(true);
        let h = call.sim.receive(new, &check.data);
        assert!(
            h.to(new).any(|d| b.verifies(&check, d)),
            "the check is answered"
        );
        let probe: Vec<u8> = h
            .to(new)
            .find(|d| BindingRequest::parse(d).is_ok())
            .expect("the forwarder checks the new address")
            .to_vec();
        let req = BindingRequest::parse(&probe).unwrap();
        assert_eq!(
            req.ufrags(),
            Ok((b.client_ufrag.as_str(), b.ufrag.as_str()))
        );
        assert!(req.verify_integrity(b.pwd.as_bytes()));
        assert_ne!(req.transaction_id(), check.txid);

        // Until the answer comes back, media stays at the proven address.
        let h = call.send("a", &rtp(0xA1, 1, 20));
        assert_eq!(h.dsts(), vec![old, call.addr("c")]);
        // An answer from any other address proves nothing.
        let answer = b.answer(&probe, MEDIA_ADDR).unwrap();
        let h = call.sim.receive(elsewhere, &answer);
        assert!(matches!(h.outcome, Outcome::Dropped(_)), "{:?}", h.outcome);
        let h = call.send("a", &rtp(0xA1, 2, 20));
        assert_eq!(h.dsts(), vec![old, call.addr("c")]);
        // A tampered answer from the right address proves nothing either.
        let mut forged = answer.clone();
        let at = forged.len() - 20;
        forged[at] ^= 1;
        let h = call.sim.receive(new, &forged);
        assert!(matches!(h.outcome, Outcome::Dropped(_)), "{:?}", h.outcome);
        // The genuine answer from the new address moves media there.
        let h = call.sim.receive(new, &answer);
        assert!(h.sent.is_empty());
        let h = call.send("a", &rtp(0xA1, 3, 20));
        assert_eq!(h.dsts(), vec![new, call.addr("c")]);
        assert_eq!(call.sim.endpoint_at(new), Some(b.ep));
        assert_eq!(call.sim.endpoint_at(old), None);
    }
}

/// Another conference's endpoint latched at an address keeps it, whatever a participant
/// of this conference sends from there, even with the proof (NAT port reuse or an
/// attacker on that host): it keeps receiving, and its uplink stays its own.
#[test]
fn an_address_held_in_another_conference_is_never_taken() {
    for shards in [1, 3] {
        let mut call = Call::new(SimConfig {
            shards,
            ..SimConfig::default()
        });
        let (w, w2) = (other(20), other(21));
        let mut f = call.sim.join("c2", "f");
        let mut g = call.sim.join("c2", "g");
        call.sim
            .control(|m| {
                m.set_tracks(
                    "c2",
                    "f",
                    vec![track(
                        "mic",
                        blindfold_proto::model::TrackKind::Audio,
                        &[0xF1],
                    )],
                )
            })
            .unwrap();
        call.sim
            .control(|m| m.set_subscriptions("c2", "g", vec![sub("f", "mic")]))
            .unwrap();
        assert!(call.sim.latch(&mut f, w));
        assert!(call.sim.latch(&mut g, w2));
        let mut x = call.sim.join("c1", "x");
        call.sim
            .control(|m| m.set_subscriptions("c1", "x", vec![sub("a", "mic")]))
            .unwrap();
        assert!(call.sim.latch(&mut x, other(50)));

        // x's check "from" f's address, without and then with the answer.
        for answer in [false, true] {
            let check = x.check(true);
            let h = call.sim.receive(w, &check.data);
            if answer {
                let answers: Vec<_> = h.to(w).filter_map(|d| x.answer(d, MEDIA_ADDR)).collect();
                for a in answers {
                    call.sim.receive(w, &a);
                }
            }
            assert_eq!(call.sim.endpoint_at(w), Some(f.ep), "answered: {answer}");
            let h = call.sim.receive(w, &rtp(0xF1, 1, 20));
            assert_eq!(h.dsts(), vec![w2], "f's uplink is still f's");
            let h = call.send("a", &rtp(0xA1, 1, 20));
            assert!(h.to(w).next().is_none(), "x's media reached f's address");
            assert!(h.to(other(50)).next().is_some());
        }
        assert!(call.sim.dropped(DropReason::StunAddressInUse) >= 1);
    }
}

/// Within a conference, an address another endpoint holds is not taken on a forged
/// check: without the answer from that address nothing changes.
#[test]
fn a_forged_check_does_not_unlatch_a_neighbour() {
    let mut call = Call::new(SimConfig::default());
    let b = call.addr("b");
    let check = call.agent("d").check(true);
    call.sim.receive(b, &check.data);
    assert_eq!(call.sim.endpoint_at(b), Some(call.agents[1].ep));
    let h = call.send("a", &rtp(0xA1, 1, 20));
    assert_eq!(h.dsts(), vec![b, call.addr("c")]);
    let h = call.send("b", &srtcp_e0(rr(0xB0, &[0xA1])));
    assert_eq!(h.outcome, Outcome::Forwarded(1), "b is still b");
}
