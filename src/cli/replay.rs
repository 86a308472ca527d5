//! `servetune replay`: a strategy against a recorded landscape, over many
//! seeds: the trials and study seconds it needs to get within the target
//! regret of the best config (the benchmark that chose the default
//! strategy). Checks the flags, applies the cost overrides, prints a line
//! or the JSON report.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
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
    /// Landscapes of other models to fit the landscape model on: the replay
    /// then runs twice, from nothing and started from the model's
    /// prediction for this landscape's model (its features from the
    /// landscape's first line), and compares the two.
    #[arg(long, value_delimiter = ',', value_name = "A.csv,B.csv")]
    prior: Option<Vec<PathBuf>>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
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
    if let Some(prior) = &args.prior {
        return run_with_prior(&args, &landscape, prior, &goal);
    }
    let report = crate::replay::replay_strategy(&landscape, args.strategy, args.seeds, &goal);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
        return Ok(());
    }
    print_report(&report);
    Ok(())
}

fn show(v: Option<f64>) -> String {
    v.map_or("failed".to_string(), |v| format!("{v:.1}"))
}

/// The one-line summary of a replay (and its budget line).
fn print_report(report: &crate::replay::ReplayReport) {
    let costs = report.costs;
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
}

/// `--prior`: the replay from nothing and from the landscape model fitted
/// on the other landscapes.
fn run_with_prior(
    args: &ReplayArgs,
    landscape: &crate::replay::Landscape,
    prior: &[PathBuf],
    goal: &crate::replay::ReplayObjective,
) -> anyhow::Result<()> {
    let features = landscape.features.ok_or_else(|| {
        anyhow::anyhow!(
            "--landscape {}: its first line has no model features (model=… latency_ms=… worker_mb=… frontend_mb=…, \
             as `servetune predict --features-only` measures them)",
            args.landscape.display()
        )
    })?;
    if let Some(same) = prior.iter().find(|p| **p == args.landscape) {
        bail!(
            "--prior {}: the landscape replayed cannot be one the model learns from",
            same.display()
        );
    }
    let priors = crate::predict::load_files(prior)?;
    let model = crate::predict::fit(&priors).context("--prior")?;
    let users = crate::predict::model::users_of(landscape);
    if users != model.users {
        bail!(
            "--landscape {} was recorded with {users} users, the --prior landscapes with {}: \
             the model's latencies would be for another load",
            args.landscape.display(),
            model.users
        );
    }
    let guesses = crate::predict::guesses(&model, &features, &landscape.space, &goal.objective);
    if guesses.is_empty() {
        bail!(
            "--landscape {}: none of its parameters is one the landscape model knows",
            args.landscape.display()
        );
    }
    let mut report = crate::replay::replay_prior(
        landscape,
        args.strategy,
        args.seeds,
        goal,
        &guesses,
        priors.iter().map(|(name, _)| name.clone()).collect(),
    );
    report.prediction = crate::predict::accuracy::accuracy(&model, &features, landscape);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
        return Ok(());
    }
    print_report(&report.without_prior);
    print_report(&report.with_prior);
    println!(
        "  first prediction {} (regret {:.1} %); trials to target without / with the prior: {}x (at most {}x: \
         a prior needs the baseline and one guess), seconds: {}x",
        report.first_prediction,
        report.first_prediction_regret * 100.0,
        show(report.trials_ratio),
        show(report.most_trials_ratio),
        show(report.seconds_ratio)
    );
    if let Some(noise) = report.repeat_noise {
        println!(
            "  repeat noise near the top: two windows of one config lie {:.1} % apart (root mean square), \
             so a mean of two is good to about {:.1} %",
            noise * 100.0,
            noise * 50.0
        );
    }
    if let Some(p) = report.prediction {
        println!(
            "  predicted throughput over {} configs: median error {:.0} %, rank correlation {:.2}",
            p.configs,
            (p.median_log_error.exp() - 1.0) * 100.0,
            p.rank_correlation
        );
    }
    Ok(())
}
