//! `servetune daemon`: keeps deployments tuned as a service, or with
//! `--check` validates its config and exits.

use std::path::PathBuf;

use super::setup::runtime;

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// The daemon's config (API, results, deployments).
    #[arg(long, value_name = "FILE.toml")]
    config: PathBuf,
    /// Read and validate the config (and each deployment's study and target), then exit.
    #[arg(long)]
    check: bool,
}

/// Runs the daemon until SIGTERM, or checks its config.
pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    if args.check {
        println!("{}", crate::daemon::check(&args.config)?);
        return Ok(());
    }
    runtime()?.block_on(crate::daemon::run(&args.config))
}
