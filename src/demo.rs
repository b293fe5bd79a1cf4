//! PLACEHOLDER: the one-command demo.

/// Command-line arguments of `blindfold demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

/// Entry point of `blindfold demo`.
pub fn run_cli(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("blindfold demo is not built yet")
}
