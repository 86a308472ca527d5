//! The command line: argument syntax (clap) and one dispatch `match`.
//!
//! Each subcommand validates its arguments, builds a tokio runtime only when
//! it talks to a server, and calls into the pipeline modules. Errors come back
//! as `anyhow` with context naming the file or flag; `main` prints them.

use std::path::{Path, PathBuf};

mod apply;
mod apply_from;
mod bench;
mod compare;
mod init;
mod signals;
mod studies;
mod tune;
mod worker;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

use crate::config::{self, RestoreOutcome};
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
    /// Read the deployment in this folder (config.properties, model store, running
    /// server) and write servetune/{target,study,space}.toml for `tune`; changes nothing.
    Init(init::InitArgs),
    /// Set properties or model fields in config.properties, optionally
    /// restarting the server (cold) or changing it live (hot).
    Apply(apply::ApplyArgs),
    /// Put back the config file servetune saved before its first change.
    Restore(RestoreArgs),
    /// Tune a deployment: search its settings under load within a budget, export the recommendation.
    Tune(Box<tune::TuneArgs>),
    /// Benchmark an endpoint or a managed TorchServe: fixed load, capacity at an SLO, or stress test.
    Bench(Box<bench::BenchArgs>),
    /// Work on a shared study from this host: claim candidates, measure them on
    /// this host's TorchServe, store the results; exit 0 when the study is done.
    Worker(Box<worker::WorkerArgs>),
    /// List the studies a storage holds (a shared PostgreSQL, or results/), their state and best trial.
    Studies(studies::StudiesArgs),
    /// Measure each model of a stack direct and through the TensorZero gateway,
    /// side by side: latency, throughput at the SLO and memory, as three tables.
    Compare(Box<compare::CompareArgs>),
    /// Replay a strategy against a recorded landscape: trials it needs to get
    /// within the target regret of the best config (chooses the default strategy).
    Replay(ReplayArgs),
    /// Keep deployments tuned as a service: watch production, run studies on
    /// triggers (shadow or in place), apply with a canary and roll back.
    Daemon(DaemonArgs),
    /// Start, stop or inspect the TorchServe a target file describes.
    Server {
        #[command(subcommand)]
        action: ServerAction,
    },
}

#[derive(Debug, clap::Args)]
struct DaemonArgs {
    /// The daemon's config (API, results, deployments).
    #[arg(long, value_name = "FILE.toml")]
    config: PathBuf,
    /// Read and validate the config (and each deployment's study and target), then exit.
    #[arg(long)]
    check: bool,
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
    /// Seconds charged for a restart (default: the landscape's, else 12).
    #[arg(long)]
    restart_s: Option<f64>,
    /// Seconds charged for a live change (default: the landscape's, else 2).
    #[arg(long)]
    hot_s: Option<f64>,
    /// Seconds charged for each measurement (default: the landscape's, else 5).
    #[arg(long)]
    window_s: Option<f64>,
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

pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.verbose);
    match args.command {
        Command::Init(init) => init::run(init),
        Command::Apply(args) => apply::run(args),
        Command::Restore(restore) => run_restore(restore),
        Command::Bench(bench) => bench::run(*bench, runtime()?),
        Command::Tune(tune) => tune::run(*tune, runtime()?),
        Command::Studies(studies) => studies::run(studies, runtime()?),
        Command::Worker(worker) => worker::run(*worker, runtime()?),
        Command::Compare(compare) => compare::run(*compare, runtime()?),
        Command::Daemon(daemon) if daemon.check => {
            println!("{}", crate::daemon::check(&daemon.config)?);
            Ok(())
        }
        Command::Daemon(daemon) => runtime()?.block_on(crate::daemon::run(&daemon.config)),
        Command::Replay(replay) => run_replay(replay),
        Command::Server { action } => run_server(action),
    }
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    if !(args.slo_p99_ms.is_finite() && args.slo_p99_ms > 0.0) {
        bail!("--slo-p99-ms must be a positive number of milliseconds");
    }
    if !(0.0..1.0).contains(&args.target_regret) {
        bail!("--target-regret must be within [0, 1)");
    }
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        bail!("--max-error-rate must be within [0, 1]");
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    for (flag, value) in [
        ("--restart-s", args.restart_s),
        ("--hot-s", args.hot_s),
        ("--window-s", args.window_s),
    ] {
        if value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            bail!("{flag} must be a number of seconds ≥ 0");
        }
    }
    let landscape = crate::replay::load_landscape(&args.landscape)?;
    let mut costs = landscape.costs;
    costs.restart_s = args.restart_s.unwrap_or(costs.restart_s);
    costs.hot_s = args.hot_s.unwrap_or(costs.hot_s);
    costs.window_s = args.window_s.unwrap_or(costs.window_s);
    let objective = crate::replay::throughput_under_slo(args.slo_p99_ms, args.max_error_rate);
    let report = crate::replay::replay(
        &landscape,
        args.strategy,
        args.seeds,
        objective,
        args.target_regret,
        costs,
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
        return Ok(());
    }
    let show = |v: Option<f64>| v.map_or("failed".to_string(), |v| format!("{v:.1}"));
    println!(
        "{}: median {} trials ({} s), p90 {} trials ({} s), median restarts {:.0}, failed seeds {}/{} \
         (landscape: {} configs, best feasible {:.1} req/s at p99 <= {} ms; restart {} s, live change {} s, window {} s)",
        report.strategy,
        show(report.median_trials_to_target),
        show(report.median_seconds_to_target),
        show(report.p90_trials_to_target),
        show(report.p90_seconds_to_target),
        report.median_restarts,
        report.failed_seeds,
        report.seeds,
        report.points,
        report.best_feasible_throughput_rps,
        report.slo_p99_ms,
        costs.restart_s,
        costs.hot_s,
        costs.window_s
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
    let server = TorchServe::new(spec);
    crate::server::tls::announce(&server.endpoints()?, &server.spec().tls, target);
    Ok(server)
}

fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
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
