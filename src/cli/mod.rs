//! The command line: argument syntax (clap) and one dispatch `match`.
//!
//! Each subcommand lives in its own file (`bench.rs`, `replay.rs`,
//! `server.rs`, …): it validates its arguments, builds a tokio runtime only
//! when it talks to a server (`setup.rs`), and calls into the pipeline
//! modules. Errors come back as `anyhow` with context naming the file or
//! flag; `main` prints them.

mod apply;
mod apply_from;
mod bench;
mod bench_print;
mod compare;
mod daemon;
mod init;
mod predict;
mod replay;
mod restore;
mod server;
mod setup;
mod signals;
mod studies;
mod tune;
mod worker;

use clap::{Parser, Subcommand};

use setup::{init_logging, runtime};

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
    Restore(restore::RestoreArgs),
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
    Replay(replay::ReplayArgs),
    /// Predict the best configs of a served model from the landscapes recorded
    /// with other models, without a search (measures its features in seconds).
    Predict(Box<predict::PredictArgs>),
    /// Keep deployments tuned as a service: watch production, run studies on
    /// triggers (shadow or in place), apply with a canary and roll back.
    Daemon(daemon::DaemonArgs),
    /// Start, stop or inspect the TorchServe a target file describes.
    Server {
        #[command(subcommand)]
        action: server::ServerAction,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.verbose);
    match args.command {
        Command::Init(init) => init::run(init),
        Command::Apply(args) => apply::run(args),
        Command::Restore(restore) => restore::run(restore),
        Command::Bench(bench) => bench::run(*bench, runtime()?),
        Command::Tune(tune) => tune::run(*tune, runtime()?),
        Command::Studies(studies) => studies::run(studies, runtime()?),
        Command::Worker(worker) => worker::run(*worker, runtime()?),
        Command::Compare(compare) => compare::run(*compare, runtime()?),
        Command::Daemon(daemon) => daemon::run(daemon),
        Command::Replay(replay) => replay::run(replay),
        Command::Predict(predict) => predict::run(*predict, runtime()?),
        Command::Server { action } => server::run(action),
    }
}
