//! Issue 14 item 1 against the real process: a participant that sends its own valid
//! check with a forged source address cannot aim its media at that address. The check is
//! sent here from 20 sockets that never answer anything, standing in for victims whose
//! address was forged: none of them gets a media packet, and each gets at most 3x the
//! bytes that arrived "from" it. The same check "from" the address of an endpoint of
//! another conference leaves that endpoint latched where it was: it keeps receiving, and
//! its uplink stays its own.

mod common;
use blindfold::control::TrackKind;
use blindfold::proto::stun as ice;
use common::*;
use std::collections::BTreeSet;

fn latched(api: &Api, conf: &str) -> bool {
    api.get(conf).endpoints.iter().all(|e| e.latched)
}

#[test]
fn forged_sources_get_no_media_and_no_endpoint_loses_its_address() {
    let serve = ServeProcess::start(2, &[]);
    let api = Api::new(serve.control);
    api.conference("c1");
    let p = api.endpoint("c1", "p");
    let x = api.endpoint("c1", "x");
    let y = api.endpoint("c1", "y");
    api.tracks("c1", "p", vec![track("mic", TrackKind::Audio, &[0xA1])]);
    api.subscribe("c1", "x", &[("p", "mic")]);
    api.subscribe("c1", "y", &[("p", "mic")]);
    api.conference("c2");
    let f = api.endpoint("c2", "f");
    let g = api.endpoint("c2", "g");
    api.tracks("c2", "f", vec![track("mic", TrackKind::Audio, &[0xF1])]);
    api.subscribe("c2", "g", &[("f", "mic")]);
    let peers: Vec<Peer> = (0..5).map(|_| Peer::new(serve.media)).collect();
    for (peer, creds) in peers.iter().zip([&p, &x, &y, &f, &g]) {
        peer.latch(creds);
    }
    assert!(wait_for(|| latched(&api, "c1") && latched(&api, "c2")));
    let (pp, xp, yp, fp, gp) = (&peers[0], &peers[1], &peers[2], &peers[3], &peers[4]);

    // x's valid, nominating check "from" each of 20 victims, with p's media flowing, and
    // finally from f's address; f keeps sending its own uplink meanwhile.
    let victims: Vec<Peer> = (0..20).map(|_| Peer::new(serve.media)).collect();
    let mut sent_per_victim = 0;
    let mut seq = 0u16;
    let mut y_got = 0;
    let mut got = BTreeSet::new();
    let g_drain = |got: &mut BTreeSet<u16>| {
        for q in gp.drain() {
            if let Some((0xF1, seq)) = rtp_id(&q) {
                got.insert(seq);
            }
        }
    };
    let mut media = |seq: &mut u16, got: &mut BTreeSet<u16>| {
        for _ in 0..10 {
            pp.send(&rtp(0xA1, *seq, 200));
            fp.send(&rtp(0xF1, *seq, 100));
            *seq += 1;
        }
        // Read as we go, so no socket buffer overflows.
        std::thread::sleep(std::time::Duration::from_millis(5));
        y_got += yp.drain().iter().filter(|q| rtp_id(q).is_some()).count();
        g_drain(got);
    };
    for v in &victims {
        let req = ice::binding_request(rand::random(), &x.ufrag, "client", x.pwd.as_bytes());
        sent_per_victim = req.len();
        v.send(&req);
        media(&mut seq, &mut got);
    }
    let req = ice::binding_request(rand::random(), &x.ufrag, "client", x.pwd.as_bytes());
    fp.send(&req);
    for _ in 0..10 {
        media(&mut seq, &mut got);
    }
    let sent = usize::from(seq);
    for v in &victims {
        let got = v.drain();
        let bytes: usize = got.iter().map(Vec::len).sum();
        assert!(
            got.iter().all(|q| rtp_id(q).is_none()),
            "a victim received media"
        );
        assert!(
            bytes <= 3 * sent_per_victim,
            "a victim received {bytes} bytes for {sent_per_victim} sent"
        );
    }
    assert!(
        wait_for(|| {
            y_got += yp.drain().iter().filter(|q| rtp_id(q).is_some()).count();
            y_got == sent
        }),
        "an honest subscriber received {y_got} of {sent}"
    );
    let mut f_media = 0;
    assert!(
        wait_for(|| {
            g_drain(&mut got);
            for q in fp.drain() {
                if rtp_id(&q).is_some() {
                    f_media += 1;
                } else if let Some(a) = fp.answer(&q, &f) {
                    fp.sock.send_to(&a, serve.media).unwrap();
                }
            }
            got.len() == sent
        }),
        "f's uplink was not forwarded as f's: g got {} of {sent}",
        got.len()
    );
    assert_eq!(f_media, 0, "x's media reached f's address");
    let x_media = xp.drain().iter().filter(|q| rtp_id(q).is_some()).count();
    assert!(x_media > 0, "x's own address lost its media");
    assert!(latched(&api, "c2"), "f lost its latch");
}
