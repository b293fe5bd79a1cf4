//! PLACEHOLDER: the keyless forwarder (issue 2).
pub mod ice;
pub mod sys;

pub mod config {
    //! PLACEHOLDER
    /// Arguments of `blindfold serve`.
    #[derive(clap::Args, Debug)]
    pub struct ServeArgs {}
}
/// Entry point of `blindfold serve`.
pub fn run_cli(_args: config::ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
