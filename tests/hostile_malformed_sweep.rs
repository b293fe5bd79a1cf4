//! A malformed-datagram sweep against the real `blindfold serve` process: every
//! truncation of valid STUN, RTP and RTCP datagrams, bad versions, lying length fields,
//! zero-length and 64 KiB datagrams, sent from a latched endpoint. The process never
//! panics, forwards none of them, and counts each drop under its reason.
//!
//! RTP padding cannot be checked by a keyless forwarder (the padding count sits inside
//! the encrypted, authenticated part), so a padded packet with a well-formed header is
//! forwarded and rejected by the receiver's SRTP authentication; it is not part of the
//! sweep.

mod common;
use common::*;
use std::collections::BTreeMap;

fn valid_rtp() -> Vec<u8> {
    // Version 2, X=1 with a 1-word extension, CC=1.
    let mut p = vec![0x91, 96, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0xA1, 0, 0, 0, 9];
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
    p.extend_from_slice(&[0x5a; 40]);
    p
}

fn valid_rr() -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7, 0, 0, 0, 0xB0, 0, 0, 0, 0xA1];
    p.extend_from_slice(&[0; 20]);
    p
}

fn drops(api: &Api) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in api.metrics().lines() {
        if let Some(rest) = line.strip_prefix("blindfold_dropped_packets_total{") {
            let reason = rest
                .split("reason=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let v: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            *m.entry(reason.to_string()).or_default() += v;
        }
    }
    m
}

#[test]
fn malformed_datagrams_are_dropped_counted_and_never_forwarded() {
    for shards in [1, 2] {
        let mut serve = ServeProcess::start(shards, &[]);
        let call = Call::on(serve.media, serve.control);
        let a = call.peer("a");
        let stun = blindfold::proto::stun::binding_request(
            [9; 12],
            &call.creds[0].ufrag,
            "x",
            call.creds[0].pwd.as_bytes(),
        );
        let base = drops(&call.api);
        let mut expect: BTreeMap<&str, u64> = BTreeMap::new();
        let mut send = |pkt: &[u8], reason: &'static str| {
            a.send(pkt);
            *expect.entry(reason).or_default() += 1;
        };

        // Truncations of RTP below its own header (12 + CSRC + extension = 24 bytes).
        let rtp = valid_rtp();
        for n in 2..24 {
            send(&rtp[..n], "malformed");
        }
        // An extension length pointing past the end.
        let mut lying = rtp.clone();
        lying[18] = 0;
        lying[19] = 200;
        send(&lying, "malformed");
        // Bad versions: 0 and 1 land outside RTP's first-byte range.
        for b0 in [0x10u8, 0x50, 0x7f] {
            let mut p = rtp.clone();
            p[0] = b0;
            send(&p, "unclassified");
        }
        // Zero-length and one-byte RTP-range datagrams.
        send(&[], "unclassified");
        send(&[0x80], "unclassified");
        // Truncations of RTCP that cut the report block, and lying RTCP lengths.
        let rr = valid_rr();
        for n in 2..12 {
            send(&rr[..n], "rtcp_no_target");
        }
        let mut long = rr.clone();
        long[3] = 0xff;
        send(&long, "rtcp_no_target");
        let mut short = rr.clone();
        short[3] = 1;
        send(&short, "rtcp_no_target");
        let mut v1 = rr.clone();
        v1[0] = 0x41;
        send(&v1, "unclassified");
        // Every truncation of a valid, verifiable STUN request.
        for n in 0..stun.len() {
            if n == 0 {
                continue; // counted above as a zero-length datagram
            }
            send(
                &stun[..n],
                if stun[0] <= 3 {
                    "stun_malformed"
                } else {
                    "unclassified"
                },
            );
        }
        // A STUN request with a flipped integrity byte.
        let mut bad = stun.clone();
        let mi = bad.len() - 8 - 10;
        bad[mi] ^= 1;
        send(&bad, "stun_malformed");
        // A 64 KiB datagram (the largest UDP payload loopback carries).
        let mut huge = rtp.clone();
        huge.resize(65_507, 0x33);
        send(&huge, "oversize");

        let total: u64 = expect.values().sum();
        assert!(
            wait_for(|| {
                let now = drops(&call.api);
                expect.iter().all(|(r, n)| {
                    now.get(*r).copied().unwrap_or(0) - base.get(*r).copied().unwrap_or(0) >= *n
                })
            }),
            "drops by reason: expected at least {expect:?} over {base:?}, got {:?}",
            drops(&call.api)
        );
        // Barrier: a valid packet arrives at b after all of the above, and nothing
        // before it did.
        let marker = common::rtp(0xA1, 1, 20);
        a.send(&marker);
        let mut before = Vec::new();
        call.peer("b")
            .recv_until(|p| p == marker.as_slice(), &mut before)
            .expect("b receives the marker");
        assert!(
            before.is_empty(),
            "{} malformed datagrams were forwarded",
            before.len()
        );
        assert!(serve.alive(), "the forwarder died");
        assert_eq!(call.api.client().healthz().ok(), Some(true));
        assert!(total > 100, "the sweep sent {total} datagrams");
    }
}
