//! PLACEHOLDER: replaced by the load work (see the issues).

/// Command-line arguments of `blindfold load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {}

/// Entry point of `blindfold load`.
pub fn run_cli(_args: LoadArgs) -> anyhow::Result<()> {
    anyhow::bail!("blindfold load is not built yet")
}

pub mod plan {
    //! PLACEHOLDER: the capacity planner.

    /// Command-line arguments of `blindfold plan`.
    #[derive(clap::Args, Debug)]
    pub struct PlanArgs {}

    /// Entry point of `blindfold plan`.
    pub fn run_cli(_args: PlanArgs) -> anyhow::Result<()> {
        anyhow::bail!("blindfold plan is not built yet")
    }
}
