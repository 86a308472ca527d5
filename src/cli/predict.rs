//! `servetune predict`: measures a served model's cheap features and prints
//! the configs the landscape model expects to be best for each tier, with
//! predicted figures and their uncertainty, without a search (see
//! `crate::predict`). `--json` writes what `tune --prior` reads.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use crate::predict::{rank::describe, Ask, Forecast};
use crate::server::{TargetSpec, TorchServe};

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The target file of the TorchServe serving the model.
    #[arg(long, value_name = "FILE.toml")]
    target: PathBuf,
    /// A request body the model reads (a file, or a folder: its first file).
    #[arg(long, value_name = "FILE")]
    body: PathBuf,
    /// The model (default: the first the server lists).
    #[arg(long)]
    model: Option<String>,
    /// The p99 objective the tiers must meet (default: 5 × the measured
    /// single-request latency).
    #[arg(long)]
    slo_p99_ms: Option<f64>,
    /// A folder of landscapes with model features to learn from (default:
    /// the ones bundled with servetune, recorded on a 2-core machine).
    #[arg(long, value_name = "DIR")]
    landscapes: Option<PathBuf>,
    /// The closed-loop users the latencies are predicted for: the model
    /// learns from the landscapes recorded at the nearest load (bundled: 16
    /// and 4).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    users: u32,
    /// Print the forecast as JSON (what `tune --prior` reads).
    #[arg(long)]
    json: bool,
    /// Only measure the model's features (no landscapes needed): what a
    /// landscape's header records.
    #[arg(long)]
    features_only: bool,
}

pub fn run(args: PredictArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<()> {
    if args.slo_p99_ms.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        bail!("--slo-p99-ms must be a positive number of milliseconds");
    }
    let body = crate::load::request::read_bodies(&args.body)
        .with_context(|| format!("--body {}", args.body.display()))?
        .into_iter()
        .next()
        .with_context(|| format!("--body {}: no request body in it", args.body.display()))?;
    let server = TorchServe::new(TargetSpec::load(&args.target)?);
    let ask = Ask {
        model: args.model.as_deref(),
        body: &body,
        slo_p99_ms: args.slo_p99_ms,
        landscapes: args.landscapes.as_deref(),
        users: args.users,
    };
    let measured = runtime.block_on(crate::predict::measure(&server, &ask))?;
    if args.features_only {
        let f = &measured.features;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&measured).expect("the features serialise")
            );
        } else {
            println!(
                "{}: latency_ms={:.2} worker_mb={:.0} frontend_mb={:.0}",
                measured.model, f.latency_ms, f.worker_mb, f.frontend_mb
            );
        }
        return Ok(());
    }
    let forecast = crate::predict::forecast(&measured, &ask)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&forecast).expect("the forecast serialises")
        );
    } else {
        print!("{}", text(&forecast));
    }
    Ok(())
}

/// The forecast as the terminal shows it.
fn text(forecast: &Forecast) -> String {
    let f = &forecast.features;
    let mut out = format!(
        "{}: one request at a time {:.1} ms, a worker {:.0} MB, the frontend {:.0} MB\n\
         learnt from {} ({} configs predicted, latencies for {} users at once); p99 objective {:.0} ms\n",
        forecast.model,
        f.latency_ms,
        f.worker_mb,
        f.frontend_mb,
        forecast.learnt_from.join(", "),
        forecast.configs,
        forecast.users,
        forecast.slo_p99_ms,
    );
    let line = |c: &crate::predict::RankedConfig| {
        let p = &c.predicted;
        let spread = |sd: f64| (sd.exp() - 1.0) * 100.0;
        format!(
            "{:<62} {:>8.1} req/s ±{:.0} %  p99 {:>7.1} ms ±{:.0} %  {:>6.0} MB  (meets the objective: {:.0} %)",
            describe(&c.settings),
            p.figures.throughput_rps,
            spread(p.throughput_ln_sd),
            p.figures.p99_ms,
            spread(p.p99_ln_sd),
            p.figures.memory_mb,
            c.chance_within_slo * p.chance_error_free * 100.0
        )
    };
    out.push_str(&format!("\nas it runs now:\n  {}\n", line(&forecast.current)));
    for tier in &forecast.tiers {
        out.push_str(&format!("\n{}:\n", tier.tier.label()));
        if tier.configs.is_empty() {
            out.push_str("  none expected to meet the p99 objective\n");
        }
        for (rank, config) in tier.configs.iter().enumerate() {
            out.push_str(&format!("  {}. {}\n", rank + 1, line(config)));
        }
    }
    out.push_str("\nPredicted, not measured: `servetune tune --prior <this, as --json>` starts a study from it.\n");
    out
}
