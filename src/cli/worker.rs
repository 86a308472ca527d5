//! `servetune worker`: one more host on a shared study. It finds the study
//! in the store, reads the study file the study was created from (the same
//! path on every host), measures the candidates it claims on the server its
//! own target file names, and exits 0 once the study stops handing them
//! out, its server back on the original config.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;

use crate::store::{Storage, StudyState};
use crate::study::settings::{Overrides, Settings};
use crate::study::{run_worker, TrialUpdate};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The shared study store (a postgres:// URL; the password from the URL,
    /// PGPASSWORD or the password file).
    #[arg(long, value_name = "URL")]
    storage: String,
    /// The name of the study to work on (as `servetune studies` lists it).
    #[arg(long, value_name = "NAME")]
    study: String,
    /// This host's TorchServe: the target file of the server to measure on.
    #[arg(long, value_name = "TARGET.toml")]
    target: PathBuf,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
}

pub fn run(args: WorkerArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<()> {
    let storage = Storage::parse(&args.storage).context("--storage")?;
    let Storage::Postgres(pg) = &storage else {
        bail!("--storage: a worker needs a shared store (a postgres:// URL), not the file journal");
    };
    if let Some(line) = storage.announcement() {
        eprintln!("{line}");
    }
    if !args.target.is_file() {
        bail!("--target {}: no such file", args.target.display());
    }
    let (source, state) = runtime.block_on(pg.study_source(&args.study))?.with_context(|| {
        format!(
            "--study {}: {} holds no such study (create it with `servetune tune --storage … --study FILE`)",
            args.study,
            storage.display()
        )
    })?;
    if state == StudyState::Finished {
        // Still join: a worker killed earlier may have left this host's
        // server on a candidate; the join puts it back.
        eprintln!(
            "study {} is finished: only checking that this host's server is on its original config",
            args.study
        );
    }
    let source = PathBuf::from(source);
    if !source.is_file() {
        bail!(
            "study {} was created from {}, which this host lacks: every host needs the study's files at the same path",
            args.study,
            source.display()
        );
    }
    let overrides = Overrides {
        storage: Some(args.storage.clone()),
        ..Overrides::default()
    };
    let mut settings = Settings::load(&source, &overrides)?;
    if settings.name != args.study {
        bail!(
            "{} now names the study '{}', not '{}'",
            source.display(),
            settings.name,
            args.study
        );
    }
    settings.target = args.target.clone();
    let token = CancellationToken::new();
    let on_trial = |update: &TrialUpdate| {
        let measured = match &update.figures {
            Some(f) => format!("{:.1} req/s p99 {:.1} ms", f.throughput_rps, f.p99_ms),
            None => "failed".into(),
        };
        eprintln!("trial {} {}: {measured}", update.number, update.description);
    };
    let measured = runtime.block_on(async {
        super::signals::cancel_on_signals(
            token.clone(),
            "interrupted: giving the trial back, restoring the server",
        );
        run_worker(&settings, &args.results_dir, token.clone(), &on_trial).await
    })?;
    if token.is_cancelled() {
        bail!("interrupted after {measured} trial(s); the server is back on its original config");
    }
    eprintln!(
        "study {} no longer hands out candidates: {measured} trial(s) measured here; the server is back on its original config",
        args.study
    );
    Ok(())
}
