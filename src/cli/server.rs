//! `servetune server start|stop|status`: the TorchServe a target file
//! describes, started and stopped with the wait for readiness and for every
//! process to exit; and what the commands that act on a target share:
//! loading it (checked against `--config`) and printing its models' status.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Subcommand;

use super::setup::runtime;
use crate::server::{TargetSpec, TorchServe};

#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Start TorchServe and wait until every model's workers are READY.
    Start(TargetArg),
    /// Stop TorchServe and wait until the JVM and every worker are gone.
    Stop(TargetArg),
    /// Show whether TorchServe is ready, and each model's settings and workers.
    Status(TargetArg),
}

#[derive(Debug, clap::Args)]
pub struct TargetArg {
    #[arg(long, value_name = "TARGET.toml")]
    target: PathBuf,
}

/// Loads `--target` and checks it describes `config` (when given).
pub fn load_server(target: &Path, config: Option<&Path>) -> anyhow::Result<TorchServe> {
    let spec = TargetSpec::load(target)?;
    if let Some(config) = config {
        let given = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
        let same = match (given.canonicalize(), spec.config.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => given == spec.config,
        };
        if !same {
            bail!(
                "--config {} is not the config of --target {} (that is {})",
                config.display(),
                target.display(),
                spec.config.display()
            );
        }
    }
    let server = TorchServe::new(spec);
    crate::server::tls::announce(&server.endpoints()?, &server.spec().tls, target);
    Ok(server)
}

pub fn run(action: ServerAction) -> anyhow::Result<()> {
    match action {
        ServerAction::Start(target) => {
            let server = load_server(&target.target, None)?;
            runtime()?.block_on(server.start())?;
            println!("TorchServe started and ready");
            print_status(&server)
        }
        ServerAction::Stop(target) => {
            let server = load_server(&target.target, None)?;
            runtime()?.block_on(server.stop())?;
            println!("TorchServe stopped");
            Ok(())
        }
        ServerAction::Status(target) => print_status(&load_server(&target.target, None)?),
    }
}

/// Prints each model's live settings and workers.
pub fn print_status(server: &TorchServe) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let api = server.api()?;
        let healthy = api.ping().await.unwrap_or(false);
        println!(
            "inference {}  ping: {}",
            api.endpoints().inference.base_url(),
            if healthy { "Healthy" } else { "not healthy" }
        );
        for model in api.list_models().await? {
            let status = api.describe_model(&model).await?;
            let ready = status.workers.iter().filter(|w| w.status == "READY").count();
            println!(
                "model {} v{}: batchSize={} maxBatchDelay={} minWorkers={} maxWorkers={} workers READY {}/{}",
                status.model_name,
                status.model_version,
                status.batch_size,
                status.max_batch_delay,
                status.min_workers,
                status.max_workers,
                ready,
                status.workers.len()
            );
        }
        Ok(())
    })
}
