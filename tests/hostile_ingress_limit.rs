//! Per-endpoint ingress limits: an endpoint flooding far above its token bucket has the
//! excess dropped and counted, while another publisher in the same conference loses
//! nothing.

mod common;
use common::*;
use std::collections::BTreeSet;

#[test]
fn a_flooder_is_limited_and_the_others_lose_nothing() {
    // 200 packets/s with a 500 ms burst: the flood of 3000 packets exceeds it many times
    // over, while d's 100 packets stay well inside its own bucket.
    let serve = ServeProcess::start(2, &["--ingress-pps", "200", "--ingress-burst-ms", "500"]);
    let call = Call::on(serve.media, serve.control);
    let (a, d) = (call.peer("a"), call.peer("d"));
    for seq in 0..3000u16 {
        a.send(&rtp(0xA1, seq, 200));
        if seq % 30 == 0 {
            d.send(&rtp(0xD1, seq / 30, 100));
        }
    }
    let last = rtp(0xD1, 100, 100);
    d.send(&last);
    // a subscribes to d's mic: every one of d's 101 packets must arrive.
    let mut got = BTreeSet::new();
    assert!(
        wait_for(|| {
            for p in a.drain() {
                if let Some((0xD1, seq)) = rtp_id(&p) {
                    got.insert(seq);
                }
            }
            got.len() == 101
        }),
        "d lost packets to a's flood: got {} of 101",
        got.len()
    );
    let limited = call
        .api
        .counter("blindfold_dropped_packets_total", "reason=\"rate_limited\"");
    assert!(limited >= 2000, "only {limited} packets were rate limited");
    // And b, a subscriber of a, received at most the bucket's worth.
    let b_got = call
        .peer("b")
        .drain()
        .iter()
        .filter(|p| rtp_id(p).is_some())
        .count();
    assert!(b_got <= 1000, "b received {b_got} of a's 3000 packets");
}
