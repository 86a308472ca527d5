//! The way out of a study, whatever ended it (done, budget, signal, error,
//! panic): the server goes back on its config first, then the study lock is
//! released, then the report is exported — so nothing that could hang or
//! crash runs while the server is still on a trial's config. Each step has
//! a deadline: one past it is reported as not done (the lock then stays and
//! says how to recover) and the process goes on to exit.
//! What is left to do is recorded in `exit_steps` (a second signal reads
//! it). Called by `run_study` and `run_worker`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::exit_steps::{done, within, EXPORT, RELEASE_LOCK, RESTORE, STOP_TRIAL};
use super::{lock, Study};
use crate::report::{self, Report};
use crate::store::Store as _;
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

impl Study<'_> {
    /// Puts the server back, frees the deployment, exports the report;
    /// returns the report, or the first failure (with the restore's, when
    /// that failed too).
    pub(super) async fn wind_up(
        &mut self,
        stop: StopReason,
        failure: Option<anyhow::Error>,
        apply_best: bool,
    ) -> anyhow::Result<Report> {
        done(STOP_TRIAL);
        let report = self.report(stop);
        if stop != StopReason::Interrupted && failure.is_none() {
            if let Err(e) = within(STORE_DEADLINE, "marking the study finished", self.journal.finish()).await {
                tracing::warn!("marking the study finished: {e:#}");
            }
        }
        let final_state = match (&report, apply_best) {
            (Ok(report), true) => self.balanced_deployment(report),
            _ => None,
        };
        let restored = self.restore_within(final_state).await;
        let exported = match &report {
            Ok(report) => self.export(report).await,
            Err(e) => Err(anyhow::anyhow!("building the report: {e:#}")),
        };
        if let Err(restore_error) = restored {
            let first = failure.or(exported.err());
            return Err(match first {
                Some(e) => e.context(format!("and putting the server back also failed: {restore_error:#}")),
                None => restore_error,
            });
        }
        if let Some(failure) = failure {
            let state = match self.server_up {
                true => "the server is back on its original config",
                false => "TorchServe never came up; its config file is as it was",
            };
            return Err(failure.context(format!("the study failed; {state}")));
        }
        exported?;
        report
    }

    /// Brings the study's server up, noting whether TorchServe ever was:
    /// the way out starts again only a server that came up (one that never
    /// did would only fail again, and its files are put back instead).
    pub(super) async fn start_server(&mut self, resumed: bool) -> anyhow::Result<()> {
        let started = self.runner.start(resumed).await;
        self.server_up = started.is_ok() || self.runner.server.is_ready().await;
        self.started_server = started?;
        Ok(())
    }

    /// `restore` under its deadline; on success the deployment is freed,
    /// else the lock stays and the error says how to recover.
    pub(super) async fn restore_within(
        &mut self,
        target: Option<crate::apply::state::Deployment>,
    ) -> anyhow::Result<()> {
        done(STOP_TRIAL);
        let config = self.runner.server.spec().config.clone();
        let deadline = self.restore_deadline();
        match within(deadline, RESTORE, self.restore(target)).await {
            Ok(()) => {
                done(RESTORE);
                lock::release(&config);
                done(RELEASE_LOCK);
                Ok(())
            }
            Err(error) => Err(match lock::holder(&config) {
                Some(holder) => error.context(format!(
                    "the study lock stays on the deployment; {}",
                    lock::refusal(&config, &holder)
                )),
                None => error,
            }),
        }
    }

    /// The longest a restore may take: a stop, then a start whose launcher
    /// and wait for READY share one ready_timeout, a live change or a
    /// gateway's restart besides, and a minute of slack.
    fn restore_deadline(&self) -> Duration {
        let spec = self.runner.server.spec();
        spec.ready_timeout * 2 + spec.stop_timeout + Duration::from_secs(60)
    }

    /// The report's files, then (a shared store) `trials.jsonl`, each under
    /// its deadline.
    async fn export(&mut self, report: &Report) -> anyhow::Result<()> {
        export_files(report, &self.dir, EXPORT_DEADLINE).await?;
        within(
            STORE_DEADLINE,
            "writing trials.jsonl from the store",
            self.export_trials(),
        )
        .await?;
        done(EXPORT);
        Ok(())
    }
}
