//! `servetune restore`: puts back the config file servetune saved before
//! its first change, optionally restarting the server on it, and releases
//! the hold an interrupted study left on the deployment.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use super::server::load_server;
use super::setup::runtime;
use crate::config::{self, RestoreOutcome};

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The config.properties to restore.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Restore even if someone else changed the file after servetune did.
    #[arg(long)]
    force: bool,
    /// Restart the server on the restored config.
    #[arg(long, requires = "target")]
    restart: bool,
    #[arg(long, value_name = "TARGET.toml")]
    target: Option<PathBuf>,
}

pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let server = match &args.target {
        Some(target) => Some(load_server(target, Some(&args.config))?),
        None => None,
    };
    let held = crate::study::lock::holder(&args.config);
    if let Some(holder) = held.as_ref().filter(|h| crate::study::lock::running(h)) {
        bail!("{}", crate::study::lock::refusal(&args.config, holder));
    }
    match config::restore(&args.config, args.force) {
        Ok(RestoreOutcome::Restored) => println!("{}: restored the original", args.config.display()),
        Ok(RestoreOutcome::AlreadyOriginal) => {
            println!("{}: already the original", args.config.display())
        }
        // An interrupted study may have ended on the original: nothing to put back.
        Err(config::ConfigError::NoBackup { .. }) if held.is_some() => {
            println!("{}: already the original", args.config.display())
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(server) = server.filter(|_| args.restart) {
        runtime()?
            .block_on(server.restart())
            .context("restarting TorchServe on the restored config")?;
        println!("TorchServe restarted on the restored config and ready");
    }
    if held.is_some() {
        crate::study::lock::release(&args.config);
        println!(
            "{}: released the interrupted study's hold on the deployment{}",
            args.config.display(),
            if args.restart {
                ""
            } else {
                " (the server may still run its last candidate: add --restart --target TARGET.toml)"
            }
        );
    }
    Ok(())
}
