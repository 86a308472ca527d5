//! `servetune tune`: run (or resume) a study and show its recommendation.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;

use crate::search::StrategyKind;
use crate::study::settings::{Overrides, Settings};
use crate::study::{run_study, source_marker, study_dir, Launch, TrialUpdate, WarmFrom};

#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// The study file (target, space, workload, objectives, constraints);
    /// default: servetune/study.toml, as `servetune init` writes it.
    #[arg(long, value_name = "STUDY.toml", conflicts_with = "resume")]
    study: Option<PathBuf>,
    /// Continue the study of this name where it stopped.
    #[arg(long, value_name = "NAME")]
    resume: Option<String>,
    /// Wall-clock budget for the whole run, e.g. 2h, 30m (confirmation, export and restore included).
    #[arg(long, value_parser = humantime::parse_duration)]
    budget: Option<Duration>,
    /// Stop after this many screening trials.
    #[arg(long)]
    max_trials: Option<usize>,
    #[arg(long, value_enum)]
    strategy: Option<StrategyKind>,
    #[arg(long)]
    seed: Option<u64>,
    /// Where the trials are kept: a postgres:// URL (a shared study store),
    /// or "file" (results/<study>/trials.jsonl, the default).
    #[arg(long, value_name = "URL")]
    storage: Option<String>,
    /// Leave the server on the balanced recommendation instead of the original config.
    #[arg(long)]
    apply: bool,
    /// Start from an earlier study of the same deployment and space
    /// (its results folder, e.g. results/<study>): its recommendation and
    /// best candidates are measured first, its trials inform the strategy at
    /// half weight, and the search stops early when its recommendation
    /// still wins ("unchanged").
    #[arg(long, value_name = "RESULTS/STUDY", conflicts_with = "resume")]
    warm_start: Option<PathBuf>,
    /// Start from the landscape model's prediction (`servetune predict
    /// --json > FILE`): the configs it expects to be best are measured
    /// first, the prediction corrected with each measurement, until the
    /// study's own strategy takes over.
    #[arg(long, value_name = "FILE.json")]
    prior: Option<PathBuf>,
    /// Print the report as JSON at the end.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
}

pub fn run(args: TuneArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<()> {
    let overrides = Overrides {
        budget: args.budget,
        max_trials: args.max_trials,
        strategy: args.strategy,
        seed: args.seed,
        storage: args.storage.clone(),
    };
    let (study_file, resume) = match (&args.study, &args.resume) {
        (Some(file), None) => (file.clone(), false),
        (None, None) => {
            let written = PathBuf::from(super::init::DEFAULT_DIR).join("study.toml");
            if !written.is_file() {
                bail!(
                    "no study to run: {} does not exist. Run `servetune init` in the deployment's folder first \
                     (it reads config.properties and writes it), or pass --study FILE",
                    written.display()
                );
            }
            (written, false)
        }
        (None, Some(name)) => {
            let marker = source_marker(&study_dir(&args.results_dir, name));
            let source = std::fs::read_to_string(&marker)
                .with_context(|| format!("no study '{name}' to resume ({} is missing)", marker.display()))?;
            (PathBuf::from(source.trim()), true)
        }
        _ => bail!("give --study FILE or --resume NAME"),
    };
    let settings = Settings::load(&study_file, &overrides)?;
    if let Some(name) = &args.resume {
        if *name != settings.name {
            bail!(
                "{} now names the study '{}', not '{name}'",
                study_file.display(),
                settings.name
            );
        }
    }
    if let Some(line) = settings.storage.announcement() {
        eprintln!("{line}");
    }
    let token = CancellationToken::new();
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(settings.budget.as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] budget {len}s  {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar
    });
    let on_trial = |update: &TrialUpdate| {
        let measured = match &update.figures {
            Some(f) => format!(
                "{:.1} req/s p99 {:.1} ms{}",
                f.throughput_rps,
                f.p99_ms,
                if update.feasible {
                    ""
                } else {
                    " (outside the constraints)"
                }
            ),
            None => "failed".to_string(),
        };
        let best = update.best.map_or("none feasible yet".into(), |b| {
            format!("{:.1} req/s p99 {:.1} ms", b.throughput_rps, b.p99_ms)
        });
        let line = format!(
            "trial {} {}: {measured} | best {best}",
            update.number, update.description
        );
        match &bar {
            Some(bar) => {
                bar.set_position(update.elapsed.as_secs());
                bar.println(&line);
                bar.set_message(format!("trial {} | best {best}", update.number));
            }
            None if !args.json => eprintln!(
                "[{:>5.0}s/{:.0}s] {line}",
                update.elapsed.as_secs_f64(),
                update.budget.as_secs_f64()
            ),
            None => {}
        }
    };
    let report = runtime.block_on(async {
        super::signals::cancel_on_signals(
            token.clone(),
            "interrupted: stopping the trial, exporting what there is, restoring the server",
        );
        let launch = Launch {
            resume,
            apply_best: args.apply,
            warm_start: args.warm_start.clone().map(WarmFrom::Asked),
            prior: args.prior.clone(),
        };
        run_study(&settings, &args.results_dir, launch, token.clone(), &on_trial).await
    });
    // A step of the way out abandoned past its deadline may still hold a
    // blocking thread: the process does not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let report = report?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let dir = study_dir(&args.results_dir, &settings.name);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
    } else {
        println!("{}", crate::report::summary_markdown(&report));
        println!("results: {}", dir.display());
        if let Some(tier) = report.recommendation(crate::objective::Tier::Balanced) {
            if !args.apply && !tier.keep_current {
                println!(
                    "deploy it as measured: servetune apply --from {} --target {} --restart",
                    dir.join("recommended").join(tier.tier.label()).display(),
                    settings.target.display()
                );
            }
        }
    }
    Ok(())
}
