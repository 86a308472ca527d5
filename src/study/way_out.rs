//! The way out of a study, whatever ended it (done, budget, signal, error,
//! panic): the server goes back on its config first (the loop's restore,
//! `served`, under its deadline), then the study lock is released, then
//! the report is exported here — so nothing that could hang or crash runs
//! while the server is still on a trial's config. Each step has a
//! deadline: one past it is reported as not done (the lock then stays and
//! says how to recover) and the process goes on to exit. What is left to
//! do is recorded in `exit_steps` (a second signal reads it).

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::exit_steps::{done, within, EXPORT};
use super::findings::{self, Found};
use super::served::Served;
use super::study_loop::Finished;
use crate::config;
use crate::report::{self, Report};
use crate::store::{Store as _, TrialStore};
use crate::trial::StopReason;

/// Time for the report's files (config files, summary, CSV, plots).
const EXPORT_DEADLINE: Duration = Duration::from_secs(60);
/// Time for a store to answer on the way out (mark finished, read trials).
const STORE_DEADLINE: Duration = Duration::from_secs(30);

/// Writes the report's files on a blocking thread, for at most `deadline`
/// (a thread past it is left behind; the process exits without it).
async fn export_files(report: &Report, dir: &Path, deadline: Duration) -> anyhow::Result<()> {
    let (report, dir) = (report.clone(), dir.to_path_buf());
    let files = tokio::task::spawn_blocking(move || {
        report::export(&report, &dir).with_context(|| format!("exporting to {}", dir.display()))
    });
    within(deadline, EXPORT, async {
        files.await.context("the export stopped on an internal error")?
    })
    .await
}

/// After the loop (which put the server back and released the lock):
/// marks a finished study so in its store, exports the report; returns
/// the report, or the first failure (with the restore's, when that failed
/// too).
pub(super) async fn wind_up(
    found: &Found<'_>,
    dir: &Path,
    mut finished: Finished<Served, TrialStore>,
) -> anyhow::Result<Report> {
    let report = findings::report(found, &finished);
    if finished.stop != StopReason::Interrupted && finished.failure.is_none() {
        if let Err(e) = within(STORE_DEADLINE, "marking the study finished", finished.store.finish()).await {
            tracing::warn!("marking the study finished: {e:#}");
        }
    }
    drop(finished.leader_alive.take());
    let exported = match &report {
        Ok(report) => export(report, dir, &mut finished.store).await,
        Err(e) => Err(anyhow::anyhow!("building the report: {e:#}")),
    };
    if let Err(restore_error) = finished.restored {
        let first = finished.failure.or(exported.err());
        return Err(match first {
            Some(e) => e.context(format!("and putting the server back also failed: {restore_error:#}")),
            None => restore_error,
        });
    }
    if let Some(failure) = finished.failure {
        let state = match finished.testbed.server_up {
            true => "the server is back on its original config",
            false => "TorchServe never came up; its config file is as it was",
        };
        return Err(failure.context(format!("the study failed; {state}")));
    }
    exported?;
    report
}

/// The report's files, then (a shared store) `trials.jsonl`, each under
/// its deadline.
async fn export(report: &Report, dir: &Path, store: &mut TrialStore) -> anyhow::Result<()> {
    export_files(report, dir, EXPORT_DEADLINE).await?;
    within(
        STORE_DEADLINE,
        "writing trials.jsonl from the store",
        export_trials(dir, store),
    )
    .await?;
    done(EXPORT);
    Ok(())
}

/// With a shared store, `results/<study>/trials.jsonl` is written from
/// it, as the file journal would be (each line names its worker; trials
/// given up included: they say which worker fell silent).
async fn export_trials(dir: &Path, store: &mut TrialStore) -> anyhow::Result<()> {
    let Some(entries) = store.every_entry().await? else {
        return Ok(());
    };
    let mut lines = Vec::new();
    for entry in &entries {
        serde_json::to_writer(&mut lines, entry).expect("entries serialise");
        lines.push(b'\n');
    }
    let path = dir.join("trials.jsonl");
    config::file::write_data_atomically(&path, &lines).with_context(|| format!("writing {}", path.display()))
}
