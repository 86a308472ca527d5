//! The command line: argument syntax (clap) and one dispatch `match`.
//!
//! Each subcommand validates its arguments, builds a tokio runtime only when
//! it talks to a server, and calls into the pipeline modules. Errors come back
//! as `anyhow` with context naming the file or flag; `main` prints them.

use std::path::{Path, PathBuf};

mod bench;
mod tune;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

use crate::apply::{self, Edit};
use crate::config::{self, Assignment, RestoreOutcome};
use crate::server::{TargetSpec, TorchServe};

#[derive(Debug, Parser)]
#[command(
    name = "servetune",
    version,
    about = "Finds the best settings of a TorchServe deployment by experiment"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set properties or model fields in config.properties, optionally
    /// restarting the server (cold) or changing it live (hot).
    Apply(ApplyArgs),
    /// Put back the config file servetune saved before its first change.
    Restore(RestoreArgs),
    /// Tune a deployment: search its settings under load within a budget, export the recommendation.
    Tune(Box<tune::TuneArgs>),
    /// Benchmark an endpoint or a managed TorchServe: fixed load, capacity at an SLO, or stress test.
    Bench(Box<bench::BenchArgs>),
    /// Replay a strategy against a recorded landscape: trials it needs to get
    /// within the target regret of the best config (chooses the default strategy).
    Replay(ReplayArgs),
    /// Start, stop or inspect the TorchServe a target file describes.
    Server {
        #[command(subcommand)]
        action: ServerAction,
    },
}

#[derive(Debug, clap::Args)]
struct ApplyArgs {
    /// The config.properties to edit.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// KEY=VALUE: a property (job_queue_size=200) or a model field of the
    /// model's default version (models.tiny.batchSize=8). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", required = true, value_parser = parse_assignment)]
    assignments: Vec<Assignment>,
    /// Restart the server on the new config and wait until it is ready;
    /// roll back if it does not come up.
    #[arg(long, requires = "target", conflicts_with = "hot")]
    restart: bool,
    /// Change the running server through its management API instead of
    /// restarting (batchSize, maxBatchDelay, minWorkers, maxWorkers only).
    #[arg(long, requires = "target")]
    hot: bool,
    /// The target file describing the deployment (needed with --restart/--hot).
    #[arg(long, value_name = "TARGET.toml")]
    target: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RestoreArgs {
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

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// Landscape CSV (see benches/landscapes/).
    #[arg(long, value_name = "FILE")]
    landscape: PathBuf,
    #[arg(long, value_enum, default_value = "default")]
    strategy: crate::search::StrategyKind,
    #[arg(long, default_value_t = 30)]
    seeds: u64,
    /// The SLO of the objective "max throughput with p99 <= SLO".
    #[arg(long)]
    slo_p99_ms: f64,
    #[arg(long, default_value_t = 0.03)]
    target_regret: f64,
    #[arg(long, default_value_t = 0.01)]
    max_error_rate: f64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ServerAction {
    /// Start TorchServe and wait until every model's workers are READY.
    Start(TargetArg),
    /// Stop TorchServe and wait until the JVM and every worker are gone.
    Stop(TargetArg),
    /// Show whether TorchServe is ready, and each model's settings and workers.
    Status(TargetArg),
}

#[derive(Debug, clap::Args)]
struct TargetArg {
    #[arg(long, value_name = "TARGET.toml")]
    target: PathBuf,
}

fn parse_assignment(text: &str) -> Result<Assignment, String> {
    text.parse()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.verbose);
    match args.command {
        Command::Apply(apply) => run_apply(apply),
        Command::Restore(restore) => run_restore(restore),
        Command::Bench(bench) => bench::run(*bench, runtime()?),
        Command::Tune(tune) => tune::run(*tune, runtime()?),
        Command::Replay(replay) => run_replay(replay),
        Command::Server { action } => run_server(action),
    }
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    if args.slo_p99_ms.is_nan()
        || args.slo_p99_ms <= 0.0
        || !(0.0..1.0).contains(&args.target_regret)
        || args.seeds == 0
    {
        bail!("--slo-p99-ms must be positive, --target-regret in [0, 1), --seeds at least 1");
    }
    let landscape = crate::replay::load_landscape(&args.landscape)?;
    let objective = crate::replay::ThroughputUnderSlo {
        slo_p99_ms: args.slo_p99_ms,
        max_error_rate: args.max_error_rate,
    };
    let report = crate::replay::replay(&landscape, args.strategy, args.seeds, objective, args.target_regret);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
        return Ok(());
    }
    let show = |v: Option<f64>| v.map_or("failed".to_string(), |v| format!("{v:.1}"));
    println!(
        "{}: median {} trials, p90 {}, failed seeds {}/{} (landscape: {} configs, best feasible {:.1} req/s at p99 <= {} ms)",
        report.strategy,
        show(report.median_trials_to_target),
        show(report.p90_trials_to_target),
        report.failed_seeds,
        report.seeds,
        report.points,
        report.best_feasible_throughput_rps,
        report.slo_p99_ms
    );
    Ok(())
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "servetune=info",
        1 => "servetune=debug",
        _ => "servetune=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SERVETUNE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Loads `--target` and checks it describes `config` (when given).
fn load_server(target: &Path, config: Option<&Path>) -> anyhow::Result<TorchServe> {
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
    Ok(TorchServe::new(spec))
}

fn run_apply(args: ApplyArgs) -> anyhow::Result<()> {
    for assignment in &args.assignments {
        if let config::SettingKey::Property(key) = &assignment.key {
            if !config::assignment::is_known_property(key) {
                tracing::warn!("--set {assignment}: TorchServe 0.12 does not document '{key}'; check the spelling");
            }
        }
    }
    let server = match &args.target {
        Some(target) => Some(load_server(target, Some(&args.config))?),
        None => None,
    };
    let mut edit = Edit::prepare(&args.config, &args.assignments)?;
    let changes = edit.changes();
    if changes.is_empty() {
        println!("{}: already set, nothing to change", args.config.display());
    }
    for change in &changes {
        println!("{}: {change}", args.config.display());
    }
    match server {
        Some(server) if args.restart => {
            runtime()?.block_on(apply::apply_with_restart(&server, edit))?;
            println!("TorchServe restarted on the new config and ready");
            print_status(&server)?;
        }
        Some(server) if args.hot => {
            runtime()?.block_on(apply::apply_hot(&server, edit, &args.assignments))?;
            println!("TorchServe changed live and ready");
            print_status(&server)?;
        }
        _ => {
            if !changes.is_empty() {
                edit.write()?;
            }
        }
    }
    Ok(())
}

fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let server = match &args.target {
        Some(target) => Some(load_server(target, Some(&args.config))?),
        None => None,
    };
    match config::restore(&args.config, args.force)? {
        RestoreOutcome::Restored => println!("{}: restored the original", args.config.display()),
        RestoreOutcome::AlreadyOriginal => {
            println!("{}: already the original", args.config.display())
        }
    }
    if let Some(server) = server.filter(|_| args.restart) {
        runtime()?
            .block_on(server.restart())
            .context("restarting TorchServe on the restored config")?;
        println!("TorchServe restarted on the restored config and ready");
    }
    Ok(())
}

fn run_server(action: ServerAction) -> anyhow::Result<()> {
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
fn print_status(server: &TorchServe) -> anyhow::Result<()> {
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
