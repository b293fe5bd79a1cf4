//! STUN latching: a verified Binding request latches the source address; a request with
//! the wrong password gets no answer and latches nothing.

mod common;
use blindfold::control::TrackKind;
use common::*;
use std::time::Duration;

#[test]
fn stun_with_right_pwd_latches_and_wrong_pwd_does_not() {
    with_shard_counts(|fwd| {
        let api = Api::new(fwd.control_addr());
        api.conference("s1");
        let pub_creds = api.endpoint("s1", "pub");
        let sub_creds = api.endpoint("s1", "sub");
        api.tracks("s1", "pub", vec![track("mic", TrackKind::Audio, &[7])]);
        api.subscribe("s1", "sub", &[("pub", "mic")]);

        let publisher = Peer::new(fwd.media_addr());
        let intruder = Peer::new(fwd.media_addr());
        let wrong = Creds {
            ufrag: sub_creds.ufrag.clone(),
            pwd: "not-the-password-at-all!".into(),
        };
        assert!(
            intruder
                .try_latch(&wrong, Duration::from_millis(600))
                .is_none(),
            "a wrong pwd must get no success response"
        );
        assert!(
            api.counter(
                "blindfold_dropped_packets_total",
                "reason=\"stun_bad_integrity\""
            ) >= 1
        );
        assert!(api.get("s1").endpoints.iter().all(|e| !e.latched));

        publisher.latch(&pub_creds);
        let subscriber = Peer::new(fwd.media_addr());
        subscriber.latch(&sub_creds);
        assert!(wait_for(|| api.get("s1").all_latched(2)));
        let p = rtp(7, 1, 50);
        publisher.send(&p);
        let mut other = Vec::new();
        subscriber
            .recv_until(|x| x == p.as_slice(), &mut other)
            .expect("latched subscriber receives");
        assert!(
            intruder.drain().iter().all(|x| rtp_id(x).is_none()),
            "the intruder received media"
        );
    });
}
