//! The demo's checks, over the participants' public handles only: what each received and
//! decrypted, when each sender sent what, and what each participant's keys can open of a
//! ciphertext recording (the attacker's view of a leaver or a late joiner).
//!
//! Owns the pass/fail rules; it starts nothing and must not reach into a participant's
//! state beyond [`Participant`]'s methods. Also used by the end-to-end test.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use blindfold_client::{Captured, Participant};

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// The forwarder's counters, summed over shards.
#[derive(Debug, Clone, Default)]
pub struct ForwarderCounters {
    /// Datagrams received.
    pub rx_packets: u64,
    /// Datagrams sent (copies and STUN answers).
    pub tx_packets: u64,
    /// RTP packets forwarded.
    pub rtp_forwarded: u64,
    /// STUN Binding requests answered.
    pub stun_answered: u64,
    /// Drops by reason label.
    pub drops: Vec<(String, u64)>,
}

impl ForwarderCounters {
    /// Sums the counters of a Prometheus text exposition from `GET /metrics`.
    pub fn from_prometheus(text: &str) -> Self {
        let mut c = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name_labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let v = v as u64;
            let name = name_labels.split('{').next().unwrap_or("");
            match name {
                "blindfold_rx_packets_total" => c.rx_packets += v,
                "blindfold_tx_packets_total" => c.tx_packets += v,
                "blindfold_rtp_forwarded_total" => c.rtp_forwarded += v,
                "blindfold_stun_answered_total" => c.stun_answered += v,
                "blindfold_dropped_packets_total" => {
                    let reason = name_labels
                        .split("reason=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("unknown")
                        .to_string();
                    match c.drops.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, n)) => *n += v,
                        None => c.drops.push((reason, v)),
                    }
                }
                _ => {}
            }
        }
        c
    }
}

/// When things happened in the script, and who played which part.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Just before the late joiner started joining.
    pub before_join: Instant,
    /// Index of the late joiner.
    pub joiner: usize,
    /// (index, time its leave completed) of each leaver, in order.
    pub leaves: Vec<(usize, Instant)>,
    /// Index of the participant that recorded ciphertext; present throughout.
    pub recorder: usize,
    /// The schedule's grace window in ms.
    pub grace_ms: u64,
    /// [`joiner_check`], run right after the joiner got its keys.
    pub joiner_check: Check,
}

/// The late joiner cannot decrypt what was sent before it joined. Run it soon after the
/// join, while the group still holds the step before it (within the grace window): the
/// joiner's keys are then the strongest they will be against that recording. The control
/// shows the same probe opens what was sent after the join.
pub fn joiner_check(
    ps: &[Participant],
    recorder: usize,
    joiner: usize,
    before_join: Instant,
    ready: Instant,
) -> Check {
    let recording = ps[recorder].captured();
    let pre: Vec<Vec<u8>> = recording
        .iter()
        .filter(|c| c.at < before_join)
        .map(|c| c.data.clone())
        .collect();
    let post: Vec<Vec<u8>> = recording
        .iter()
        .filter(|c| c.at > ready)
        .rev()
        .take(50)
        .map(|c| c.data.clone())
        .collect();
    let (tried, opened) = probe(&ps[joiner], pre);
    let (ctl_tried, ctl_opened) = probe(&ps[joiner], post);
    check(
        format!("participant {joiner} (late joiner) cannot decrypt packets sent before it joined"),
        tried > 0 && opened == 0 && ctl_opened > 0,
        format!(
            "opened {opened} of {tried} earlier packets; control: opened {ctl_opened} of {ctl_tried} packets sent after its join"
        ),
    )
}

/// The promise after a leave: nothing sent later than this opens with the leaver's keys
/// (fail closed at 1.5 s, plus the slack of a loaded machine's timers).
pub const REKEY_BOUND: Duration = Duration::from_secs(2);

const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most packets a probe tries (evenly sampled), to bound the demo's run time.
const PROBE_SAMPLE: usize = 1500;

fn sample(v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    if v.len() <= PROBE_SAMPLE {
        return v;
    }
    let step = v.len().div_ceil(PROBE_SAMPLE);
    v.into_iter().step_by(step).collect()
}

fn check(name: String, passed: bool, detail: String) -> Check {
    Check {
        name,
        passed,
        detail,
    }
}

fn probe(p: &Participant, packets: Vec<Vec<u8>>) -> (usize, usize) {
    match p.probe(sample(packets), PROBE_TIMEOUT) {
        Ok(r) => (r.tried, r.opened),
        Err(_) => (0, usize::MAX),
    }
}

/// Runs every check; participants must still be running (leavers included).
pub fn run_all(ps: &[Participant], t: &Timeline) -> Vec<Check> {
    let mut out = Vec::new();
    let left: BTreeSet<usize> = t.leaves.iter().map(|(i, _)| *i).collect();
    let present: Vec<usize> = (0..ps.len()).filter(|i| !left.contains(i)).collect();

    // 1. Every member decrypts what it receives while present.
    for (i, p) in ps.iter().enumerate() {
        let s = p.stats();
        let ok = s.failed == 0
            && s.content_errors == 0
            && s.decrypted > 0
            && s.no_key * 20 <= s.received;
        out.push(check(
            format!(
                "{} decrypted and verified all media while present",
                who(i, t)
            ),
            ok,
            format!(
                "received {}, decrypted {}, failed {} (content {}), not yet verifiable {} (no key {}, unannounced track {}), lost {}",
                s.received, s.decrypted, s.failed, s.content_errors, s.no_key + s.unknown_sender, s.no_key, s.unknown_sender, s.lost
            ),
        ));
    }

    let recording: Vec<Captured> = ps[t.recorder].captured();
    for &(i, left_at) in &t.leaves {
        // 2. Nothing sent after the leave reached the leaver.
        let late = ps[i].received_after_leave();
        let mut after = 0;
        let mut unknown = 0;
        for (ssrc, seq, _) in &late {
            match ps.iter().find_map(|p| p.send_time(*ssrc, *seq)) {
                Some(sent) if sent > left_at => after += 1,
                Some(_) => {}
                None => unknown += 1,
            }
        }
        out.push(check(
            format!("{} received nothing sent after its leave", who(i, t)),
            after == 0 && unknown == 0,
            format!(
                "{} datagrams arrived after the leave (sent before it, in flight); {} sent after it; {} unknown",
                late.len() - after - unknown,
                after,
                unknown
            ),
        ));

        // 3. Packets sent more than REKEY_BOUND after the leave do not open with the
        // leaver's keys. (Until the new epoch is in use, the others may still send under
        // one the leaver held, by design: a commit that added a joiner just before the
        // leave, say. The promise is the bound.)
        let rekeyed: Vec<Vec<u8>> = recording
            .iter()
            .filter(|c| c.at > left_at + REKEY_BOUND)
            .map(|c| c.data.clone())
            .collect();
        let last_before: Vec<Vec<u8>> = recording
            .iter()
            .filter(|c| c.at <= left_at)
            .rev()
            .take(50)
            .map(|c| c.data.clone())
            .collect();
        let (tried, opened) = probe(&ps[i], rekeyed);
        let (ctl_tried, ctl_opened) = probe(&ps[i], last_before);
        out.push(check(
            format!(
                "{} cannot decrypt packets sent more than {} ms after its leave",
                who(i, t),
                REKEY_BOUND.as_millis()
            ),
            tried > 0 && opened == 0 && ctl_opened > 0,
            format!(
                "opened {opened} of {tried} later packets; control: opened {ctl_opened} of {ctl_tried} packets from just before its leave"
            ),
        ));
    }

    out.push(t.joiner_check.clone());
    out.push(verification_check(ps, &present, &t.leaves));

    // 5. Media went on through the leaves, the committer's included.
    for &i in &present {
        let s = ps[i].stats();
        let ok = s.max_gap_ms < t.grace_ms && s.rekeys >= t.leaves.len() as u64;
        out.push(check(
            format!(
                "{} had no media gap over the grace window through the leaves",
                who(i, t)
            ),
            ok,
            format!(
                "longest gap {} ms (grace {} ms), rekeys {} (leaves {})",
                s.max_gap_ms,
                t.grace_ms,
                s.rekeys,
                t.leaves.len()
            ),
        ));
    }
    out
}

/// Every present member shows the same verification code for the same MLS epoch; the
/// control is a leaver's last code, which must differ (the comparison can fail).
fn verification_check(ps: &[Participant], present: &[usize], leaves: &[(usize, Instant)]) -> Check {
    let codes: Vec<(u64, Option<String>)> = present
        .iter()
        .map(|&i| {
            let s = ps[i].stats();
            (s.mls_epoch, s.verification_code)
        })
        .collect();
    let first = codes.first().cloned().unwrap_or((0, None));
    let agree = first.1.is_some() && codes.iter().all(|c| *c == first);
    let leaver_code = leaves
        .first()
        .and_then(|(i, _)| ps[*i].stats().verification_code);
    let control = leaver_code.is_some() && leaver_code != first.1;
    check(
        format!(
            "the {} present members show the same verification code",
            present.len()
        ),
        agree && control,
        format!(
            "epoch {} code {}; distinct codes among them: {}; control: a leaver's last code {} differs",
            first.0,
            first.1.as_deref().unwrap_or("-"),
            codes.iter().map(|c| &c.1).collect::<BTreeSet<_>>().len(),
            leaver_code.as_deref().unwrap_or("-"),
        ),
    )
}

fn who(i: usize, t: &Timeline) -> String {
    let role = if t.leaves.first().is_some_and(|(l, _)| *l == i) && t.leaves.len() > 1 {
        "leaver"
    } else if t.leaves.iter().any(|(l, _)| *l == i) {
        "committer"
    } else if i == t.joiner {
        "late joiner"
    } else {
        "member"
    };
    format!("participant {i} ({role})")
}
