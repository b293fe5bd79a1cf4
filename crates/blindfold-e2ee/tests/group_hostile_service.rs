//! A delivery service that drops, delays, reorders, replays or forks handshake messages
//! cannot keep a leaver able to decrypt anything sent more than 2 s after its leave: at
//! worst the call stalls, and every member shows it. In memory, simulated time.

mod common;

use blindfold_e2ee::SendState;
use blindfold_e2ee::StallReason::RekeyOverdue;
use blindfold_e2ee::sim::{Msg, Verdict};
use common::{assert_leaver_locked_out, call_of};

#[test]
fn an_honest_service_rekeys_within_the_deadline() {
    let (mut call, ids) = call_of(4);
    call.leave(ids[2], true);
    call.advance(4_000);
    assert!(call.states().iter().all(|s| *s == SendState::Sending));
    assert!(call.members.values().all(|m| m.failed == 0));
    assert_leaver_locked_out(&call, 0);
}

#[test]
fn dropping_every_commit_after_a_leave_stalls_everyone_and_shows_it() {
    let (mut call, ids) = call_of(4);
    call.set_policy(|_, env| {
        if env.commit {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    call.leave(ids[1], true);
    let left_at = call.now;
    call.advance(1_400);
    assert!(
        call.states().iter().all(|s| *s == SendState::Sending),
        "not before the deadline"
    );
    call.advance(1_000);
    assert!(
        call.states()
            .iter()
            .all(|s| *s == SendState::Stalled(RekeyOverdue)),
        "{:?}",
        call.states()
    );
    call.advance(5_000);
    let after_deadline = call.sent.iter().filter(|s| s.at > left_at + 1_500).count();
    assert_eq!(
        after_deadline, 0,
        "something was sent under the leaver's key"
    );
    assert_leaver_locked_out(&call, 0);
}

#[test]
fn delayed_commits_stall_the_call_then_it_resumes_under_a_new_epoch() {
    let (mut call, ids) = call_of(4);
    call.set_policy(|_, env| {
        if env.commit {
            Verdict::Delay(5_000)
        } else {
            Verdict::Deliver
        }
    });
    call.leave(ids[3], true);
    call.advance(3_000);
    assert!(
        call.states()
            .iter()
            .all(|s| *s == SendState::Stalled(RekeyOverdue))
    );
    call.advance(6_000);
    assert!(
        call.states().iter().all(|s| *s == SendState::Sending),
        "{:?}",
        call.states()
    );
    let codes = call.codes();
    assert!(codes.iter().all(|c| *c == codes[0]));
    assert_leaver_locked_out(&call, 0);
}

#[test]
fn a_hidden_leave_announcement_is_caught_by_the_leavers_own_proposal() {
    let (mut call, ids) = call_of(4);
    call.set_policy(|_, env| match env.msg {
        Msg::MemberLeft(_) => Verdict::Drop,
        _ => Verdict::Deliver,
    });
    call.leave(ids[0], true);
    call.advance(4_000);
    assert!(call.states().iter().all(|s| *s == SendState::Sending));
    assert_eq!(
        call.members.values().next().unwrap().session.roster().len(),
        3
    );
    assert_leaver_locked_out(&call, 0);
}

#[test]
fn reordered_commits_are_kept_until_their_epoch_comes() {
    let (mut call, ids) = call_of(4);
    let slow = ids[1];
    // The leave's Commit reaches `slow` late, after the next epoch's Commit (a join).
    call.set_policy(move |_, env| {
        if env.commit && env.to == slow && env.epoch == Some(4) {
            Verdict::Delay(700)
        } else {
            Verdict::Deliver
        }
    });
    call.leave(ids[2], true);
    call.join();
    call.advance(4_000);
    let codes = call.codes();
    assert!(codes.iter().all(|c| *c == codes[0]), "{codes:?}");
    assert_eq!(codes[0].as_ref().unwrap().0, 5);
    assert!(call.states().iter().all(|s| *s == SendState::Sending));
    assert_leaver_locked_out(&call, 0);
}

#[test]
fn replaying_everything_changes_nothing() {
    let (mut call, ids) = call_of(4);
    call.leave(ids[2], true);
    call.advance(3_000);
    let codes = call.codes();
    let commits = call.ds.commits.len();
    let history = call.relayed.clone();
    for env in history {
        let to: Vec<_> = call.members.keys().copied().collect();
        for t in to {
            call.send(env.from, t, env.msg.clone(), env.epoch, env.commit);
        }
    }
    call.advance(3_000);
    assert_eq!(call.codes(), codes, "a replay moved the group");
    assert_eq!(
        call.ds.commits.len(),
        commits,
        "a replay made someone commit"
    );
    assert!(call.states().iter().all(|s| *s == SendState::Sending));
    assert!(
        call.members
            .values()
            .all(|m| m.session.refusals().handshakes > 0)
    );
    assert_leaver_locked_out(&call, 0);
}

#[test]
fn a_forked_group_is_visible_and_keeps_the_leaver_out_of_both_halves() {
    let (mut call, ids) = call_of(5);
    call.order_commits = false;
    let half: Vec<_> = ids[3..].to_vec();
    // Each half only ever hears the Commits made inside it.
    call.set_policy(move |_, env| match env.from {
        Some(f) if env.commit && half.contains(&f) != half.contains(&env.to) => Verdict::Drop,
        _ => Verdict::Deliver,
    });
    call.leave(ids[2], true);
    call.advance(4_000);
    let a = call.members[&ids[0]].session.verification_code();
    let b = call.members[&ids[4]].session.verification_code();
    assert_eq!(
        a.as_ref().unwrap().0,
        b.as_ref().unwrap().0,
        "same epoch number"
    );
    assert_ne!(a, b, "the fork shows in the verification codes");
    assert_eq!(call.members[&ids[1]].session.verification_code(), a);
    assert_eq!(call.members[&ids[3]].session.verification_code(), b);
    assert_leaver_locked_out(&call, 0);
}
