//! PLACEHOLDER: replaced by the signal work (see the issues).

/// Command-line arguments of `blindfold signal`.
#[derive(clap::Args, Debug)]
pub struct SignalArgs {}

/// Entry point of `blindfold signal`.
pub fn run_cli(_args: SignalArgs) -> anyhow::Result<()> {
    anyhow::bail!("blindfold signal is not built yet")
}
