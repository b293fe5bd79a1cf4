//! `ceiling`: the kernel ceiling as its own process, so `scripts/bench.sh` can pin it with
//! taskset exactly like `blindfold serve`. A thin shell over `blindfold::load::ceiling`;
//! runs until SIGINT or SIGTERM.

use clap::Parser;

/// Minimal recvmmsg → sendmmsg fan-out with the forwarder's socket setup and no routing.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    args: blindfold::load::ceiling::CeilingArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let c = blindfold::load::ceiling::Ceiling::start(&cli.args)?;
    println!("media {}", c.media_addr());
    blindfold::telemetry::wait_for_stop_signal()?;
    c.stop();
    Ok(())
}
