//! `servetune studies`: the studies a storage holds, their state and best
//! trial (a shared PostgreSQL, or the file journals under `results/`).

use std::path::PathBuf;

use crate::store::{list_studies, Storage, StudySummary};

#[derive(Debug, clap::Args)]
pub struct StudiesArgs {
    /// Where the studies are: a postgres:// URL, or "file" (the journals under --results-dir).
    #[arg(long, value_name = "URL", default_value = "file")]
    storage: String,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    /// Print them as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StudiesArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<()> {
    let storage = Storage::parse(&args.storage)?;
    if let Some(line) = storage.announcement() {
        eprintln!("{line}");
    }
    let studies = runtime.block_on(list_studies(&storage, &args.results_dir))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "studies": studies }))?
        );
        return Ok(());
    }
    if studies.is_empty() {
        println!("no studies in {}", storage.display());
        return Ok(());
    }
    for study in &studies {
        println!("{}", line_of(study));
    }
    Ok(())
}

fn line_of(study: &StudySummary) -> String {
    let best = match &study.best {
        Some(best) => format!(
            "best: trial {} {:.1} req/s p99 {:.1} ms ({})",
            best.number, best.figures.throughput_rps, best.figures.p99_ms, best.description
        ),
        None => "no feasible trial yet".into(),
    };
    format!(
        "{:<24} {:<9} {:>4} trials ({} failed) on {} worker(s); {best}",
        study.name,
        study.state,
        study.trials,
        study.failed,
        study.workers.len()
    )
}
