//! PLACEHOLDER: replaced by the client work (see the issues).

/// Command-line arguments of `blindfold client`.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {}

/// Entry point of `blindfold client`.
pub fn run_cli(_args: ClientArgs) -> anyhow::Result<()> {
    anyhow::bail!("blindfold client is not built yet")
}
