//! `servetune compare`: direct TorchServe against TorchServe behind the
//! TensorZero gateway, per model of a stack file (see `crate::compare`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use crate::compare::{self, tables, Comparison, Options};
use crate::server::stack::StackSpec;

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The stack file: a TorchServe target, the gateway's config and the models.
    #[arg(long, value_name = "FILE.toml")]
    stack: PathBuf,
    /// Models to compare, comma-separated (default: all of the stack's, in its order).
    #[arg(long, value_delimiter = ',', value_name = "NAME,…")]
    models: Option<Vec<String>>,
    /// Rounds at the fixed load (each measures both paths, in alternating order).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Window of each measurement (latency rounds and capacity probes).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Warm-up before each window.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    warmup: Duration,
    /// Request pairs of the low-load overhead measurement: one request in
    /// flight, direct and through the gateway alternating (a few seconds on
    /// a millisecond model; a ResNet-50 pair takes a fraction of a second).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pairs: u32,
    /// Errors allowed at capacity (a share of requests).
    #[arg(long, default_value_t = 0.01)]
    max_error_rate: f64,
    /// Print the comparison as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Where results are saved (under compare/<time>/).
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
}

pub fn run(args: CompareArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<()> {
    if args.rounds < 2 {
        bail!("--rounds must be at least 2: an interval needs independent repeats");
    }
    if args.duration < Duration::from_secs(1) {
        bail!("--duration must be at least 1s");
    }
    if args.pairs < 2 {
        bail!("--pairs must be at least 2: a paired interval needs repeats");
    }
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        bail!("--max-error-rate must be within [0, 1]");
    }
    let stack = StackSpec::load(&args.stack)?;
    let models = stack.select(args.models.as_deref())?;
    let options = Options {
        rounds: args.rounds,
        warmup: args.warmup,
        duration: args.duration,
        max_error_rate: args.max_error_rate,
        pairs: args.pairs,
    };
    let token = CancellationToken::new();
    let comparison = runtime.block_on(async {
        super::signals::cancel_on_signals(
            token.clone(),
            "interrupted: stopping the load, then what this command started",
        );
        compare::compare(&stack, &models, &options, token.clone()).await
    })?;
    let saved = tables::save(&args.results_dir, &comparison)?;
    if args.json {
        println!("{}", json_of(&comparison));
    } else {
        println!("{}", tables::markdown(&comparison));
        println!("saved in {}", saved.display());
    }
    Ok(())
}

/// `{"models": [{"model", "direct": {…}, "gateway": {…}, …}], "machine": …}`.
fn json_of(comparison: &Comparison) -> String {
    serde_json::to_string_pretty(comparison).expect("the comparison serialises")
}
