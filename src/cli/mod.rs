//! The command line: argument syntax (clap) and one dispatch `match`.
//!
//! Each subcommand validates its arguments, builds a tokio runtime only when
//! it talks to a server, and calls into the pipeline modules. Errors come back
//! as `anyhow` with context naming the file or flag; `main` prints them.

use std::path::{Path, PathBuf};

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

use crate::apply::{self, Edit};
use crate::config::{self, Assignment, RestoreOutcome};
use crate::server::{TargetSpec, TorchServe};
use crate::space::Target;

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
    Apply(ApplyArgs),
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
struct ApplyArgs {
    /// The config.properties to edit.
    #[arg(long, value_name = "FILE", required_unless_present = "from", conflicts_with = "from")]
    config: Option<PathBuf>,
    /// Deploy a recommended tier (results/<study>/recommended/<tier>/) the way
    /// it was measured: only the keys it changes, its environment and log4j2
    /// file; needs --target and --restart (or --hot when every change is live).
    #[arg(long, value_name = "TIER_DIR", requires = "target", conflicts_with = "settings")]
    from: Option<PathBuf>,
    /// With --from: deploy a tier that was measured on another deployment.
    #[arg(long, requires = "from")]
    force: bool,
    /// KEY=VALUE: a property (job_queue_size=200), a model field of the
    /// model's default version (models.tiny.batchSize=8), TorchServe's log
    /// level (log4j.level=info) or a variable of its environment
    /// (env.OMP_NUM_THREADS=1, written to the target file; needs --target).
    /// Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", required_unless_present = "from", value_parser = parse_setting)]
    settings: Vec<Setting>,
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
    /// Simulated study time (e.g. 10m): the search stops so that the
    /// confirmation fits, and the recommendation's regret is reported.
    /// Without it the study screens up to every config of the landscape.
    #[arg(long, value_parser = humantime::parse_duration)]
    budget: Option<std::time::Duration>,
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

/// One `--set`: where it lands and the value.
#[derive(Debug, Clone)]
struct Setting {
    target: Target,
    value: String,
}

fn parse_setting(text: &str) -> Result<Setting, String> {
    let (key, value) = text.split_once('=').ok_or_else(|| "expected KEY=VALUE".to_string())?;
    if value.contains(['\n', '\r', '\0']) {
        return Err(format!("{key}: a value must be one line"));
    }
    let target = Target::parse(key.trim())?;
    if let Target::Config(_) = target {
        text.parse::<Assignment>()?;
    }
    Ok(Setting {
        target,
        value: value.to_string(),
    })
}

/// The `--set`s split by destination.
struct SplitSettings {
    /// Config edits (the log level among them, as a `vmargs` edit).
    assignments: Vec<Assignment>,
    environment: std::collections::BTreeMap<String, String>,
    /// The log level, whose log4j2 file must be written.
    log_level: Option<String>,
}

fn split_settings(settings: &[Setting], config: &Path) -> anyhow::Result<SplitSettings> {
    let mut assignments = Vec::new();
    let mut environment = std::collections::BTreeMap::new();
    let mut log_level = None;
    for setting in settings {
        match &setting.target {
            Target::Config(key) => assignments.push(
                format!("{key}={}", setting.value)
                    .parse::<Assignment>()
                    .map_err(|e| anyhow::anyhow!("--set {key}={}: {e}", setting.value))?,
            ),
            Target::Env(name) => {
                environment.insert(name.clone(), setting.value.clone());
            }
            Target::LogLevel => {
                let level = setting.value.trim().to_ascii_lowercase();
                if !crate::space::LOG_LEVELS.contains(&level.as_str()) {
                    bail!(
                        "--set log4j.level={}: one of {}",
                        setting.value,
                        crate::space::LOG_LEVELS.join(", ")
                    );
                }
                log_level = Some(level);
            }
            Target::GatewayEnv(_) | Target::GatewayConfig(_) => bail!(
                "--set {}: the gateway's settings are tuned in a stack study (stack = \"stack.toml\"); \
                 apply changes TorchServe only",
                setting.target
            ),
        }
    }
    if let Some(level) = &log_level {
        let (_, props) = config::read_properties(config)?;
        let config_dir = config.parent().unwrap_or(Path::new("."));
        if crate::server::logging::level_of(props.get("vmargs")).is_none() {
            bail!(
                "{}: vmargs names a log4j2 config of the deployment's own; servetune will not replace it",
                config.display()
            );
        }
        let vmargs = crate::server::logging::vmargs_with(props.get("vmargs"), level, config_dir).unwrap_or_default();
        assignments.push(Assignment {
            key: config::SettingKey::Property("vmargs".into()),
            value: vmargs,
        });
    }
    Ok(SplitSettings {
        assignments,
        environment,
        log_level,
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.verbose);
    match args.command {
        Command::Init(init) => init::run(init),
        Command::Apply(apply) => run_apply(apply),
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
    let goal = crate::replay::ReplayObjective {
        objective: crate::replay::throughput_under_slo(args.slo_p99_ms, args.max_error_rate),
        target_regret: args.target_regret,
        costs,
        budget: args.budget,
    };
    let report = crate::replay::replay_strategy(&landscape, args.strategy, args.seeds, &goal);
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
    if let Some(budget) = report.budget_s {
        println!(
            "  with a {budget:.0} s budget: recommendation regret median {}, p90 {}; kept the current config in {:.0} % of seeds",
            show(report.median_recommendation_regret.map(|r| r * 100.0)).replace("failed", "none") + " %",
            show(report.p90_recommendation_regret.map(|r| r * 100.0)).replace("failed", "none") + " %",
            report.kept_current_share * 100.0
        );
    }
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

fn run_apply(args: ApplyArgs) -> anyhow::Result<()> {
    if let (Some(from), Some(target)) = (&args.from, &args.target) {
        let mode = match (args.restart, args.hot) {
            (true, _) => apply_from::Mode::Restart,
            (_, true) => apply_from::Mode::Hot,
            _ => bail!(
                "--from {}: say how to deploy the tier: --restart (restart TorchServe on it, rolled back if it does \
                 not come up) or --hot (live, when every change is live)",
                from.display()
            ),
        };
        return apply_from::run(from, target, mode, args.force);
    }
    let config = args.config.clone().context("--config FILE is needed with --set")?;
    crate::study::lock::check_free(&config).map_err(|e| anyhow::anyhow!(e))?;
    let SplitSettings {
        assignments,
        environment,
        log_level,
    } = split_settings(&args.settings, &config)?;
    for assignment in &assignments {
        if let config::SettingKey::Property(key) = &assignment.key {
            if !config::assignment::is_known_property(key) {
                tracing::warn!("--set {assignment}: TorchServe 0.12 does not document '{key}'; check the spelling");
            }
        }
    }
    let server = match &args.target {
        Some(target) => Some(load_server(target, Some(&config))?),
        None => None,
    };
    let new_environment = match (&server, environment.is_empty()) {
        (_, true) => None,
        (None, false) => bail!("--set env.NAME=VALUE needs --target: the environment is the target file's"),
        (Some(server), false) => {
            if !matches!(server.spec().control, crate::server::Control::Managed { .. }) {
                bail!(
                    "--set env.*: {} restarts TorchServe through its restart_command; set the environment in the service",
                    server.spec().source.display()
                );
            }
            if args.hot {
                bail!("--set env.*: the environment is read only at start; use --restart");
            }
            let mut all = server.environment();
            all.extend(environment.clone());
            Some(all)
        }
    };
    if args.hot && log_level.is_some() {
        bail!("--set log4j.level: the log level is read only at start; use --restart");
    }
    let mut edit = Edit::prepare(&config, &assignments)?;
    let changes = edit.changes();
    for (name, value) in &environment {
        println!(
            "{}: env {name}={value}",
            args.target.as_deref().unwrap_or(Path::new("")).display()
        );
    }
    if changes.is_empty() && environment.is_empty() {
        println!("{}: already set, nothing to change", config.display());
    }
    for change in &changes {
        println!("{}: {change}", config.display());
    }
    if let Some(level) = &log_level {
        let config_dir = config.parent().unwrap_or(Path::new("."));
        crate::server::logging::ensure_written(config_dir, level)
            .with_context(|| format!("writing the log4j2 config for level {level}"))?;
    }
    match server {
        Some(server) if args.restart => {
            let environment = new_environment.clone().unwrap_or_else(|| server.environment());
            runtime()?.block_on(apply::apply_with_restart_in(&server, edit, environment))?;
            if let Some(environment) = &new_environment {
                server.spec().write_environment(environment)?;
            }
            println!("TorchServe restarted on the new config and ready");
            print_status(&server)?;
        }
        Some(server) if args.hot => {
            runtime()?.block_on(apply::apply_hot(&server, edit, &assignments))?;
            println!("TorchServe changed live and ready");
            print_status(&server)?;
        }
        server => {
            if !changes.is_empty() {
                edit.write()?;
            }
            if let (Some(server), Some(environment)) = (server, &new_environment) {
                server.spec().write_environment(environment)?;
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
