//! Shared checks for the group tests over the in-memory delivery service.
#![allow(dead_code)]

use blindfold_e2ee::sim::{SimCall, opens};
use blindfold_e2ee::{ParticipantId, ScheduleConfig};

/// A call of `n` members with media every 20 ms, settled.
pub fn call_of(n: usize) -> (SimCall, Vec<ParticipantId>) {
    let mut call = SimCall::new(ScheduleConfig::default());
    call.media_interval_ms = 20;
    let ids = (0..n).map(|_| call.join()).collect();
    call.advance(1_000);
    (call, ids)
}

/// (packets sent more than 2 s after the frozen leaver's leave, how many it opens), and the
/// control: (packets of the last 200 ms before its leave, how many it opens).
pub fn leaver_view(call: &SimCall, leaver: usize) -> ((usize, usize), (usize, usize)) {
    let f = &call.frozen[leaver];
    let late: Vec<_> = call
        .sent
        .iter()
        .filter(|s| s.at > f.left_at + 2_000)
        .collect();
    let late_opened = late
        .iter()
        .filter(|s| opens(&f.session, &s.from, &s.packet))
        .count();
    let before: Vec<_> = call
        .sent
        .iter()
        .filter(|s| s.at <= f.left_at && s.at + 200 > f.left_at)
        .collect();
    let before_opened = before
        .iter()
        .filter(|s| opens(&f.session, &s.from, &s.packet))
        .count();
    ((late.len(), late_opened), (before.len(), before_opened))
}

/// Asserts the leaver opens nothing sent 2 s after its leave and (control) everything just
/// before it.
pub fn assert_leaver_locked_out(call: &SimCall, leaver: usize) {
    let ((late, late_opened), (before, before_opened)) = leaver_view(call, leaver);
    assert_eq!(
        late_opened, 0,
        "the leaver opened {late_opened} of {late} later packets"
    );
    assert!(
        before > 0 && before_opened == before,
        "control: opened {before_opened} of {before}"
    );
}
