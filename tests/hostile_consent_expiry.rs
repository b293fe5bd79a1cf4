//! Consent freshness (RFC 7675): an endpoint that stops sending valid STUN checks stops
//! receiving once its consent lapses, and a fresh check restores it.

mod common;
use common::*;

#[test]
fn lapsed_consent_stops_media_and_a_fresh_check_restores_it() {
    let serve = ServeProcess::start(2, &["--consent-timeout", "1"]);
    let call = Call::on(serve.media, serve.control);
    let (a, b) = (call.peer("a"), call.peer("b"));
    let mut seq = 0u16;
    let mut send_and_check = |want: bool| {
        wait_for(|| {
            seq = seq.wrapping_add(1);
            a.send(&rtp(0xA1, seq, 20));
            std::thread::sleep(std::time::Duration::from_millis(20));
            let got = b.drain().iter().any(|p| rtp_id(p).is_some());
            got == want
        })
    };
    // b sends no more checks: within the timeout (plus propagation) it stops receiving.
    assert!(
        send_and_check(false),
        "b kept receiving after its consent lapsed"
    );
    assert!(
        call.api.counter(
            "blindfold_dropped_packets_total",
            "reason=\"no_destination\""
        ) > 0,
        "copies to a lapsed endpoint are counted"
    );
    // A fresh valid check restores it.
    b.latch(&call.creds[1]);
    assert!(
        send_and_check(true),
        "b did not receive again after a fresh check"
    );
}
