//! The capacity planner (`blindfold plan`): runs the load generator at growing offered
//! load — more conferences, or a higher constant rate per stream — until the service-level
//! objective breaks, narrows the edge by bisection, and writes a report folder: `plan.json`,
//! `summary.md` with the capacity statement, SVG plots and one `.hgrm` per step.
//!
//! Owns the sweep and the report folder; every measurement comes from [`super::run`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::profile::TrackProfile;
use super::report::{self, LoadReport};
use super::{LoadError, RunArgs, ShapeArgs, Target, TargetArgs, plot};

/// What grows from step to step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Sweep {
    /// The number of conferences (participants = C × P).
    Conferences,
    /// The packet rate of every `cbr:` track and the burst rate of every `burst:` track.
    Rate,
}

/// Command-line arguments of `blindfold plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The first step's calls (`--conferences` is where a conference sweep starts).
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// Timing of each step.
    #[command(flatten)]
    pub run: RunArgs,
    /// What grows from step to step.
    #[arg(long, value_enum, default_value = "conferences")]
    pub sweep: Sweep,
    /// Growth factor between steps.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Most growth steps (bisection steps come on top).
    #[arg(long, default_value_t = 12)]
    pub max_steps: usize,
    /// Bisection steps between the last passing and the first failing step.
    #[arg(long, default_value_t = 2)]
    pub refine: usize,
    /// SLO: highest acceptable loss, in percent.
    #[arg(long, default_value_t = 0.1)]
    pub slo_loss_pct: f64,
    /// SLO: highest acceptable p99 latency in µs (0: no latency objective).
    #[arg(long, default_value_t = 1000.0)]
    pub slo_p99_us: f64,
    /// Report folder.
    #[arg(long, default_value = "plan-report")]
    pub out: PathBuf,
}

/// The objective a step must meet.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Slo {
    /// Highest loss ratio (0.001 = 0.1 %).
    pub loss: f64,
    /// Highest p99 in µs (None: not checked).
    pub p99_us: Option<f64>,
}

impl Slo {
    /// Why `r` breaks the SLO (empty: it meets it).
    pub fn breaches(&self, r: &LoadReport) -> Vec<String> {
        let mut v = Vec::new();
        if r.loss > self.loss || r.received_copies == 0 {
            v.push(format!(
                "loss {:.4} % > {:.4} %",
                r.loss * 100.0,
                self.loss * 100.0
            ));
        }
        if let Some(p) = self.p99_us
            && r.latency_us.p99 > p
        {
            v.push(format!("p99 {:.0} µs > {p:.0} µs", r.latency_us.p99));
        }
        if r.misrouted > 0 || r.unsubscribed > 0 {
            v.push(format!("{} misrouted copies", r.misrouted + r.unsubscribed));
        }
        v
    }
}

/// One step of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Order it ran in.
    pub index: usize,
    /// Conferences, or packets/s per stream.
    pub value: u64,
    /// Met the SLO.
    pub pass: bool,
    /// Why not.
    pub breaches: Vec<String>,
    /// Offered copies/s (what a lossless target would put out).
    pub offered_out_pps: f64,
    /// The run.
    pub report: LoadReport,
}

/// The planner's result.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Target name.
    pub target: String,
    /// Shards, when known.
    pub shards: Option<usize>,
    /// What grew.
    pub sweep: Sweep,
    /// The objective.
    pub slo: Slo,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    /// Index (into `steps`) of the highest passing step.
    pub best: Option<usize>,
    /// The capacity statement.
    pub statement: String,
}

fn shape_for(base: &ShapeArgs, sweep: Sweep, value: u64) -> ShapeArgs {
    let mut s = base.clone();
    match sweep {
        Sweep::Conferences => s.conferences = value as usize,
        Sweep::Rate => {
            for t in &mut s.profile {
                match t {
                    TrackProfile::Cbr { pps, .. } => *pps = value as u32,
                    TrackProfile::Burst { fps, .. } => *fps = value as u32,
                    _ => {}
                }
            }
        }
    }
    s
}

/// Runs the sweep against an open target; `on_step` sees each step as it finishes.
pub fn sweep(
    target: &Target,
    args: &PlanArgs,
    mut on_step: impl FnMut(&Step),
) -> Result<Plan, LoadError> {
    let slo = Slo {
        loss: args.slo_loss_pct / 100.0,
        p99_us: (args.slo_p99_us > 0.0).then_some(args.slo_p99_us),
    };
    let start = match args.sweep {
        Sweep::Conferences => args.shape.conferences as u64,
        Sweep::Rate => args
            .shape
            .profile
            .iter()
            .find_map(|t| match t {
                TrackProfile::Cbr { pps, .. } => Some(u64::from(*pps)),
                TrackProfile::Burst { fps, .. } => Some(u64::from(*fps)),
                _ => None,
            })
            .ok_or_else(|| {
                LoadError::Usage(
                    "--sweep rate needs a cbr:PPS:BYTES or burst:FPS:N:BYTES track".into(),
                )
            })?,
    };
    if args.factor <= 1.0 {
        return Err(LoadError::Usage("--factor must be above 1".into()));
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut run_step = |value: u64, steps: &mut Vec<Step>| -> Result<bool, LoadError> {
        let topo = shape_for(&args.shape, args.sweep, value).topology()?;
        let report = super::run(target, &topo, &args.run)?;
        let breaches = slo.breaches(&report);
        let step = Step {
            index: steps.len(),
            value,
            pass: breaches.is_empty(),
            breaches,
            offered_out_pps: topo.offered().1,
            report,
        };
        on_step(&step);
        let pass = step.pass;
        steps.push(step);
        Ok(pass)
    };
    let mut last_pass: Option<u64> = None;
    let mut first_fail: Option<u64> = None;
    let mut value = start.max(1);
    for _ in 0..args.max_steps.max(1) {
        if run_step(value, &mut steps)? {
            last_pass = Some(value);
            value = ((value as f64 * args.factor).round() as u64).max(value + 1);
        } else {
            first_fail = Some(value);
            break;
        }
    }
    if let (Some(mut lo), Some(mut hi)) = (last_pass, first_fail) {
        for _ in 0..args.refine {
            let mid = lo + (hi - lo) / 2;
            if mid == lo {
                break;
            }
            if run_step(mid, &mut steps)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    let best = steps
        .iter()
        .filter(|s| s.pass)
        .max_by(|a, b| a.report.out_pps.total_cmp(&b.report.out_pps))
        .map(|s| s.index);
    let statement = statement(target, &steps, best, &slo);
    Ok(Plan {
        target: target.name().into(),
        shards: target.shards,
        sweep: args.sweep,
        slo,
        steps,
        best,
        statement,
    })
}

fn statement(target: &Target, steps: &[Step], best: Option<usize>, slo: &Slo) -> String {
    let who = match (target.name(), target.shards) {
        ("ceiling", _) => "the ceiling (one thread)".to_string(),
        (_, Some(1)) => "one shard".to_string(),
        (_, Some(n)) => format!("{n} shards"),
        (_, None) => "the forwarder".to_string(),
    };
    let slo_text = format!(
        "loss < {} %{}",
        slo.loss * 100.0,
        slo.p99_us
            .map(|p| format!(", p99 < {p:.0} µs"))
            .unwrap_or_default()
    );
    match best {
        Some(i) => {
            let r = &steps[i].report;
            format!(
                "{who} carries {} participants in conferences of {}: {:.0} packets/s out, {:.3} Gbit/s, p99 {:.0} µs ({slo_text}; {})",
                r.participants,
                r.size,
                r.out_pps,
                r.out_gbps,
                r.latency_us.p99,
                r.tracks.join("+")
            )
        }
        None => format!("{who} met the SLO ({slo_text}) at no step of the sweep"),
    }
}

/// Writes `plan.json`, `summary.md`, `latency.svg`, `loss.svg`, `hdr.svg` and
/// `step-NN.hgrm` into `dir`.
pub fn write_folder(plan: &Plan, dir: &Path, command: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("plan.json"), serde_json::to_vec_pretty(plan)?)?;
    for s in &plan.steps {
        if let Some(h) = &s.report.histogram {
            let f = std::fs::File::create(dir.join(format!("step-{:02}.hgrm", s.index)))?;
            report::write_hgrm(h, std::io::BufWriter::new(f))?;
        }
    }
    let mut sorted: Vec<&Step> = plan.steps.iter().collect();
    sorted.sort_by(|a, b| a.offered_out_pps.total_cmp(&b.offered_out_pps));
    let xs = |f: &dyn Fn(&Step) -> f64| -> Vec<(f64, f64)> {
        sorted.iter().map(|s| (s.offered_out_pps, f(s))).collect()
    };
    plot::lines(
        &dir.join("latency.svg"),
        &format!("{}: latency against offered load", plan.target),
        "offered copies/s",
        "µs",
        &[
            ("p50".into(), xs(&|s| s.report.latency_us.p50.max(0.001))),
            ("p90".into(), xs(&|s| s.report.latency_us.p90.max(0.001))),
            ("p99".into(), xs(&|s| s.report.latency_us.p99.max(0.001))),
            ("p99.9".into(), xs(&|s| s.report.latency_us.p999.max(0.001))),
        ],
        plan.slo.p99_us.map(|p| ("p99 objective".into(), p)),
        true,
    )?;
    plot::lines(
        &dir.join("loss.svg"),
        &format!("{}: loss against offered load", plan.target),
        "offered copies/s",
        "loss %",
        &[("loss".into(), xs(&|s| s.report.loss * 100.0))],
        Some(("loss objective".into(), plan.slo.loss * 100.0)),
        false,
    )?;
    let curves: Vec<(String, Vec<(f64, f64)>)> = sorted
        .iter()
        .filter_map(|s| {
            let h = s.report.histogram.as_ref()?;
            let pts = report::percentile_curve(h)
                .into_iter()
                .filter(|(q, _)| *q < 1.0)
                // x: "nines" = log10(1 / (1 - q)): 1 is p90, 2 is p99, 3 is p99.9.
                .map(|(q, us)| ((1.0 / (1.0 - q)).log10(), us.max(0.001)))
                .collect();
            Some((format!("{:.0} copies/s", s.offered_out_pps), pts))
        })
        .collect();
    plot::lines(
        &dir.join("hdr.svg"),
        &format!("{}: latency percentile curve of each step", plan.target),
        "nines (1 = p90, 2 = p99, 3 = p99.9)",
        "µs",
        &curves,
        None,
        true,
    )?;
    let mut md = String::new();
    writeln!(md, "# Capacity plan: {}\n", plan.target)?;
    writeln!(md, "**{}**\n", plan.statement)?;
    writeln!(md, "Command: `{command}`\n")?;
    writeln!(
        md,
        "| step | {} | participants | offered copies/s | out copies/s | Gbit/s | loss % | p50 µs | p99 µs | p99.9 µs | max µs | target CPU µs/copy | generator limited | SLO |",
        match plan.sweep {
            Sweep::Conferences => "conferences",
            Sweep::Rate => "events/s per stream",
        }
    )?;
    writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for s in &plan.steps {
        let r = &s.report;
        writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0} | {:.3} | {:.4} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
            s.index,
            s.value,
            r.participants,
            s.offered_out_pps,
            r.out_pps,
            r.out_gbps,
            r.loss * 100.0,
            r.latency_us.p50,
            r.latency_us.p99,
            r.latency_us.p999,
            r.latency_us.max,
            r.target_cpu
                .map_or("?".into(), |c| format!("{:.3}", c.us_per_copy)),
            if r.generator_limited.is_empty() {
                "no".into()
            } else {
                r.generator_limited.join("; ")
            },
            if s.pass {
                "pass".into()
            } else {
                s.breaches.join(", ")
            },
        )?;
    }
    writeln!(
        md,
        "\nPlots: [latency](latency.svg), [loss](loss.svg), [percentile curves](hdr.svg). Percentile files: `step-NN.hgrm`."
    )?;
    std::fs::write(dir.join("summary.md"), md)?;
    Ok(())
}

/// Entry point of `blindfold plan`.
pub fn run_cli(args: PlanArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let target = Target::open(&args.target).context("opening the target")?;
    let result = sweep(&target, &args, |s| {
        let r = &s.report;
        eprintln!(
            "step {:>2}: {} = {:>6}: out {:>9.0} copies/s, loss {:.4} %, p99 {:>8.1} µs, {}{}",
            s.index,
            match args.sweep {
                Sweep::Conferences => "conferences",
                Sweep::Rate => "events/s per stream",
            },
            s.value,
            r.out_pps,
            r.loss * 100.0,
            r.latency_us.p99,
            if s.pass {
                "pass".into()
            } else {
                s.breaches.join(", ")
            },
            if r.generator_limited.is_empty() {
                String::new()
            } else {
                format!(" [GENERATOR LIMITED: {}]", r.generator_limited.join("; "))
            }
        );
    });
    target.close();
    let plan = result.context("capacity sweep")?;
    let command: Vec<String> = std::env::args().collect();
    write_folder(&plan, &args.out, &command.join(" "))?;
    println!("{}", plan.statement);
    if let Some(i) = plan.best {
        let r = &plan.steps[i].report;
        println!(
            "CAPACITY target={} max_out_pps={:.0} participants={} p99_us={:.1} cpu_us_per_copy={} target_cores={} generator_cores={:.2} generator_limited={}",
            plan.target,
            r.out_pps,
            r.participants,
            r.latency_us.p99,
            r.target_cpu
                .map_or("?".into(), |c| format!("{:.4}", c.us_per_copy)),
            r.target_cpu
                .map_or("?".into(), |c| format!("{:.2}", c.cores)),
            r.generator_cpu.cores,
            !r.generator_limited.is_empty()
        );
    } else {
        println!("CAPACITY target={} max_out_pps=0", plan.target);
    }
    println!("report: {}", args.out.display());
    Ok(())
}
