//! SFrame frames (the format of calls browsers are in) are keyed exactly per MLS epoch:
//! every member opens every other member's frames, across the 30 s ratchet; a member that
//! left and kept every key it had opens nothing sent after the rekey (control: it opens
//! frames from just before its leave); a member that joined later opens nothing sent
//! before its join (control: it opens frames sent after). In memory, simulated time, real
//! MLS and the real SFrame crate.

mod common;

use blindfold_e2ee::{
    E2eeSession, ParticipantId, frame_kid, sframe_open_with_meta, split_sframe_kid,
};
use common::call_of;

/// Whether any key `session` holds or can derive opens `frame` (stateless: what a
/// member that kept its keys can read).
fn opens(session: &E2eeSession, frame: &[u8]) -> bool {
    let Some(kid) = frame_kid(frame) else {
        return false;
    };
    let Some((epoch, leaf)) = split_sframe_kid(kid) else {
        return false;
    };
    session
        .schedule()
        .sframe_base_key(epoch, leaf)
        .is_some_and(|base| sframe_open_with_meta(&base, kid, frame, &[]).is_ok())
}

fn frames_of(
    call: &mut blindfold_e2ee::sim::SimCall,
    ids: &[ParticipantId],
    tag: u8,
) -> Vec<Vec<u8>> {
    ids.iter()
        .map(|id| {
            call.session(*id)
                .protect_frame(&[tag; 60], false)
                .expect("a member sends")
        })
        .collect()
}

#[test]
fn members_open_each_other_across_the_ratchet() {
    let (mut call, ids) = call_of(3);
    for step in 0..3u8 {
        let frames = frames_of(&mut call, &ids, step);
        for (i, f) in frames.iter().enumerate() {
            for (j, id) in ids.iter().enumerate() {
                let now = call.now;
                let r = call.session(*id).open_frame(f, false, now);
                if i == j {
                    assert!(r.is_err(), "a member's own frame is not taken as another's");
                } else {
                    let (_, plain) = r.expect("members open each other's frames");
                    assert_eq!(plain, vec![step; 60]);
                }
            }
        }
        call.advance(30_000);
    }
}

#[test]
fn a_leaver_opens_nothing_after_the_rekey_and_a_joiner_nothing_before_its_join() {
    let (mut call, ids) = call_of(4);
    let (stay, leaver) = (&ids[..3], ids[3]);
    let before_leave = frames_of(&mut call, stay, 1);
    call.leave(leaver, true);
    call.advance(3_000);
    let after_leave = frames_of(&mut call, stay, 2);
    let frozen = &call.frozen[0].session;
    assert!(
        before_leave.iter().all(|f| opens(frozen, f)),
        "control: the leaver opens what was sent before its leave"
    );
    assert_eq!(
        after_leave.iter().filter(|f| opens(frozen, f)).count(),
        0,
        "the leaver opens nothing sent after the rekey"
    );

    let joiner = call.join();
    call.advance(1_000);
    let after_join = frames_of(&mut call, stay, 3);
    let j = call.session(joiner);
    assert_eq!(
        after_leave.iter().filter(|f| opens(j, f)).count(),
        0,
        "the joiner opens nothing sent before its join"
    );
    assert!(
        after_join.iter().all(|f| opens(j, f)),
        "control: the joiner opens what was sent after its join"
    );
    // And it opens them statefully too, with the KID naming the sender's leaf.
    let now = call.now;
    for f in &after_join {
        assert!(call.session(joiner).open_frame(f, false, now).is_ok());
    }
}
