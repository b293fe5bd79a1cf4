//! `blindfold group-cost`: what a join and a leave cost with MLS, for groups of the given
//! sizes, measured on this machine with the real E2EE sessions around the in-memory
//! delivery service (`blindfold_e2ee::sim`; wall-clock CPU of each session, simulated
//! network).
//!
//! Owns the measurement and its table only. Must not touch the sessions' insides.

use std::time::Duration;

use blindfold_e2ee::sim::SimCall;
use blindfold_e2ee::{ParticipantId, ScheduleConfig};

/// Command-line arguments of `blindfold group-cost`.
#[derive(clap::Args, Debug, Clone)]
pub struct GroupCostArgs {
    /// Group sizes to measure (members before the join or the leave).
    #[arg(long, value_delimiter = ',', default_value = "10,50,200")]
    pub members: Vec<usize>,

    /// Joins and leaves measured per size (the table shows the mean).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// One operation's cost.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    pub commit_bytes: usize,
    pub welcome_bytes: usize,
    pub committer: Duration,
    pub member_mean: Duration,
    pub member_max: Duration,
}

fn cpu(call: &SimCall, ids: &[ParticipantId]) -> Vec<Duration> {
    ids.iter()
        .map(|id| call.cpu.get(id).copied().unwrap_or_default())
        .collect()
}

/// Runs `op` and returns its cost, the committer being the member whose CPU grew most.
fn measure(call: &mut SimCall, op: impl FnOnce(&mut SimCall)) -> Cost {
    let before_ids: Vec<ParticipantId> = call.members.keys().copied().collect();
    let before = cpu(call, &before_ids);
    let commits = call.ds.commits.len();
    let welcomes = call.ds.welcomes.len();
    op(call);
    call.advance(10);
    let present: Vec<(usize, ParticipantId)> = before_ids
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, id)| call.members.contains_key(id))
        .collect();
    let after = cpu(call, &before_ids);
    let mut spent: Vec<Duration> = present
        .iter()
        .map(|(i, _)| after[*i].saturating_sub(before[*i]))
        .collect();
    spent.sort();
    let committer = spent.pop().unwrap_or_default();
    let n = spent.len().max(1) as u32;
    Cost {
        commit_bytes: call.ds.commits[commits..].iter().map(|c| c.1).sum(),
        welcome_bytes: call.ds.welcomes[welcomes..].iter().map(|w| w.1.len()).sum(),
        committer,
        member_mean: spent.iter().sum::<Duration>() / n,
        member_max: spent.last().copied().unwrap_or_default(),
    }
}

fn mean(costs: &[Cost]) -> Cost {
    let n = costs.len().max(1);
    Cost {
        commit_bytes: costs.iter().map(|c| c.commit_bytes).sum::<usize>() / n,
        welcome_bytes: costs.iter().map(|c| c.welcome_bytes).sum::<usize>() / n,
        committer: costs.iter().map(|c| c.committer).sum::<Duration>() / n as u32,
        member_mean: costs.iter().map(|c| c.member_mean).sum::<Duration>() / n as u32,
        member_max: costs.iter().map(|c| c.member_max).sum::<Duration>() / n as u32,
    }
}

/// (join, leave) costs at `n` members.
pub fn costs(n: usize, rounds: usize) -> (Cost, Cost) {
    let config = ScheduleConfig::default();
    let mut call = SimCall::new(config);
    // Grow the group the way calls grow: joins arriving a few at a time.
    while call.members.len() < n {
        let k = (n - call.members.len()).min(8);
        call.join_many(k);
        call.advance(10);
    }
    let mut joins = Vec::new();
    let mut leaves = Vec::new();
    for _ in 0..rounds.max(1) {
        joins.push(measure(&mut call, |c| {
            c.join();
        }));
        let leaver = *call
            .members
            .keys()
            .nth(call.members.len() / 2)
            .expect("members");
        leaves.push(measure(&mut call, |c| c.leave(leaver, false)));
    }
    (mean(&joins), mean(&leaves))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Entry point of `blindfold group-cost`.
pub fn run_cli(args: GroupCostArgs) -> anyhow::Result<()> {
    let activation = ScheduleConfig::default().activation_ms;
    println!(
        "| members | op | Commit B | Welcome B | committer CPU ms | per member CPU ms (mean / max) | new epoch in use after |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &n in &args.members {
        let (join, leave) = costs(n, args.rounds);
        for (op, c) in [("join", &join), ("leave", &leave)] {
            println!(
                "| {n} | {op} | {} | {} | {} | {} / {} | {} ms + {activation} ms activation + 1 service round trip |",
                c.commit_bytes,
                if c.welcome_bytes > 0 {
                    c.welcome_bytes.to_string()
                } else {
                    "-".into()
                },
                ms(c.committer),
                ms(c.member_mean),
                ms(c.member_max),
                ms(c.committer + c.member_max),
            );
        }
    }
    Ok(())
}
