//! STUN floods: checks are limited per source before any HMAC is computed, answered only
//! when they verify, and a flood from one source does not stop another from latching.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use blindfold_proto::sim::{Sim, SimConfig};
use common::*;

#[test]
fn a_flood_from_one_source_is_limited_before_the_hmac() {
    let mut sim = Sim::new(SimConfig::default());
    let mut victim = sim.join("f1", "victim");
    // The attacker knows the ufrag (it is not secret) but not the pwd.
    let mut forged = victim.clone();
    forged.pwd = "guessed-password-guessed".into();
    let mut limited = 0;
    for _ in 0..200 {
        let check = forged.check(true);
        let h = sim.receive(other(1), &check.data);
        assert!(h.sent.is_empty(), "an unverifiable check got an answer");
        if h.outcome == Outcome::Dropped(DropReason::StunRateLimited) {
            limited += 1;
        }
    }
    assert_eq!(
        limited, 150,
        "50 checks per second per source, then refused"
    );
    assert_eq!(sim.dropped(DropReason::StunBadIntegrity), 50);
    // The legitimate participant, elsewhere, still latches.
    assert!(sim.latch(&mut victim, addr(1)));
}

fn attacker_port(i: u32) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([203, 0, 113, 66], 10_000 + (i % 1000) as u16))
}

/// Issue 14 item 3: ~150k wrong-password checks/s from 1,000 ports of one host, aimed at
/// the attacker's own ufrag, for longer than the consent timeout. Every honest consent
/// check (from an endpoint's selected address) is still answered, consent never lapses
/// and media keeps flowing; the flood itself costs at most the per-IP budget in HMACs.
#[test]
fn a_flood_from_many_ports_of_one_host_does_not_starve_honest_consent() {
    // Two shards: the attacker's ports spread over both, as SO_REUSEPORT spreads them.
    for shards in [2] {
        let mut call = Call::new(SimConfig {
            shards,
            consent_timeout: std::time::Duration::from_millis(500),
            ..SimConfig::default()
        });
        let x = call.sim.join("c2", "x");
        let mut forged = x.clone();
        forged.pwd = "wrong-password-wrong-pwd".into();
        let flood = forged.check(true).data;
        let (mut honest_sent, mut honest_answered, mut b_got) = (0, 0, 0);
        let step = std::time::Duration::from_millis(1);
        // 800 ms (past the 500 ms consent timeout) at 150 checks per millisecond.
        for ms in 0..800u32 {
            for i in 0..150 {
                let h = call.sim.receive(attacker_port(ms * 150 + i), &flood);
                assert!(h.sent.is_empty());
            }
            if ms % 100 == 0 {
                for (n, name) in NAMES.iter().enumerate() {
                    honest_sent += 1;
                    honest_answered += usize::from(call.latch(name, addr(n as u16)));
                }
            }
            if ms % 10 == 0 {
                let h = call.send("a", &rtp(0xA1, (ms / 10) as u16, 100));
                b_got += h.to(call.addr("b")).count();
            }
            call.sim.advance(step);
        }
        assert_eq!(honest_answered, honest_sent, "{shards} shard(s)");
        assert_eq!(b_got, 80, "b's consent lapsed under the flood");
        // One host is one budget, whatever its port count: the checks that reach the HMAC
        // are bounded by the attacked endpoint's budget (50/s per shard, 1 s burst).
        let verified = call.sim.dropped(DropReason::StunBadIntegrity);
        assert!(
            verified <= (50 + 40) * shards as u64,
            "{verified} HMACs spent on the flood"
        );
    }
}

/// Spoofed from many hosts, a flood can exhaust the shard-wide budget for checks from new
/// addresses, but never the budget of checks from endpoints' selected addresses.
#[test]
fn a_spoofed_flood_from_many_hosts_cannot_starve_consent_on_the_selected_address() {
    let mut call = Call::new(SimConfig {
        consent_timeout: std::time::Duration::from_secs(1),
        ..SimConfig::default()
    });
    let x = call.sim.join("c2", "x");
    let mut forged = x.clone();
    forged.pwd = "wrong-password-wrong-pwd".into();
    let flood = forged.check(true).data;
    let mut answered = 0;
    // 30k checks/s from as many hosts (over the 20k/s shard budget), for 1.5 s.
    for ms in 0..1500u32 {
        for i in 0..30u32 {
            let n = ms * 30 + i;
            let src =
                std::net::SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 9));
            call.sim.receive(src, &flood);
        }
        if ms % 250 == 0 {
            answered += usize::from(call.latch("b", addr(1)));
        }
        call.sim.advance(std::time::Duration::from_millis(1));
    }
    assert_eq!(answered, 6);
    assert!(call.sim.dropped(DropReason::StunRateLimited) > 10_000);
    let h = call.send("a", &rtp(0xA1, 1, 20));
    assert!(h.to(addr(1)).next().is_some(), "b's consent lapsed");
}

/// A flood spoofed from many hosts at one ufrag costs at most that endpoint's budget for
/// new addresses: other endpoints still latch from new addresses meanwhile.
#[test]
fn a_spoofed_flood_at_one_ufrag_leaves_others_their_latches() {
    let mut call = Call::new(SimConfig::default());
    let x = call.sim.join("c2", "x");
    let mut forged = x.clone();
    forged.pwd = "wrong-password-wrong-pwd".into();
    let flood = forged.check(true).data;
    let mut latched = 0;
    for ms in 0..1000u32 {
        for i in 0..30u32 {
            let n = ms * 30 + i;
            let src =
                std::net::SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 9));
            call.sim.receive(src, &flood);
        }
        if ms % 100 == 0 {
            let mut e = call.sim.join("c1", &format!("e{ms}"));
            latched += usize::from(call.sim.latch(&mut e, other(ms as u16)));
        }
        call.sim.advance(std::time::Duration::from_millis(1));
    }
    assert_eq!(latched, 10);
    // x's ufrag drew at most its new-address budget (500/s, 1 s burst) of HMACs.
    assert!(call.sim.dropped(DropReason::StunBadIntegrity) <= 1000);
}
