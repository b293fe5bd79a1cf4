//! The `blindfold` command: one binary, one subcommand per role. Everything lives in the
//! library; this file only parses the command line and dispatches.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// blindfold: a keyless media forwarder for end-to-end encrypted group calls.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the keyless forwarder (media over UDP, control API over HTTP).
    Serve(Box<blindfold::forwarder::config::ServeArgs>),
    /// Run the reference signalling service.
    Signal(blindfold::signal::SignalArgs),
    /// Run the browser edge (ICE and DTLS-SRTP for browsers; hop keys only).
    Edge(blindfold::edge::EdgeArgs),
    /// Run one headless E2EE participant.
    Client(blindfold::client::ClientArgs),
    /// Run a whole encrypted call on this machine and check its security properties.
    Demo(blindfold::demo::DemoArgs),
    /// Drive a forwarder with synthetic calls and measure loss and latency.
    Load(blindfold::load::LoadArgs),
    /// Sweep offered load until the service-level objective breaks; write a report.
    Plan(blindfold::load::plan::PlanArgs),
    /// Measure what an MLS join and leave cost (Commit size, CPU) at given group sizes.
    GroupCost(blindfold::group_cost::GroupCostArgs),
}

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Servers log at info; tools whose stdout is a report keep stderr to warnings.
    blindfold::telemetry::init(match cli.command {
        Command::Serve(_) | Command::Signal(_) | Command::Edge(_) | Command::Client(_) => "info",
        Command::Demo(_) | Command::Load(_) | Command::Plan(_) | Command::GroupCost(_) => "warn",
    });
    match cli.command {
        // The serve matches tell which settings were given explicitly, so a --config
        // file fills in only the rest.
        Command::Serve(args) => {
            blindfold::forwarder::run_cli(*args, matches.subcommand_matches("serve"))
        }
        Command::Signal(args) => run_signal(args),
        Command::Edge(args) => run_edge(args),
        Command::Client(args) => blindfold::client::run_cli(args),
        Command::Demo(args) => blindfold::demo::run_cli(args),
        Command::Load(args) => blindfold::load::run_cli(args),
        Command::Plan(args) => blindfold::load::plan::run_cli(args),
        Command::GroupCost(args) => blindfold::group_cost::run_cli(args),
    }
}

/// `blindfold edge`: serves until SIGINT or SIGTERM.
fn run_edge(args: blindfold::edge::EdgeArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let server = blindfold::edge::EdgeServer::start(&args).context("starting the edge")?;
    // The bound address on stdout lets scripts and tests use port 0.
    println!("edge http://{}", server.local_addr());
    blindfold::telemetry::wait_for_stop_signal()?;
    server.stop();
    tracing::info!("edge stopped");
    Ok(())
}

/// `blindfold signal`: serves until SIGINT or SIGTERM.
fn run_signal(args: blindfold::signal::SignalArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let server =
        blindfold::signal::SignalServer::start(&args).context("starting the signalling service")?;
    // The bound address on stdout lets scripts and tests use port 0.
    println!("signal {}", server.ws_url());
    blindfold::telemetry::wait_for_stop_signal()?;
    server.stop();
    tracing::info!("signalling service stopped");
    Ok(())
}
