//! The way out of a study, whatever ended it (done, budget, signal, error,
//! panic): the server goes back on its config first, then the study lock is
//! released, then the report is exported — so nothing that could hang or
//! crash runs while the server is still on a trial's config. Each step has
//! a deadline: one past it is reported as not done (the lock then stays and
//! says how to recover) and the process goes on to exit.
//!
//! It also keeps, for the whole process, what is still left to do and which
//! deployment it concerns, so that a second Ctrl-C or SIGTERM (the CLI's
//! signal handler) can end the process at once and say what it leaves
//! undone and how to recover. Called by `run_study` and `run_worker`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;

use super::{lock, Study};
use crate::report::{self, Report};
use crate::store::Store as _;
use crate::trial::StopReason;

/// A step of the way out, as the second signal names it.
pub const STOP_TRIAL: &str = "stopping the trial under way";
pub const RESTORE: &str = "putting the server back on its original config (or --apply's recommendation)";
pub const RELEASE_LOCK: &str = "releasing the study lock";
pub const EXPORT: &str = "exporting the report and the recommended configs";

/// Time for the report's files (config files, summary, CSV, plots).
const EXPORT_DEADLINE: Duration = Duration::from_secs(60);
/// Time for a store to answer on the way out (mark finished, read trials).
const STORE_DEADLINE: Duration = Duration::from_secs(30);

/// What this process still has to do on a deployment.
struct Pending {
    config: Option<PathBuf>,
    steps: Vec<&'static str>,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    config: None,
    steps: Vec::new(),
});

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    PENDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records that this process moves the deployment of `config` and has
/// `steps` left to do before it may exit.
pub fn begin(config: &Path, steps: &[&'static str]) {
    let mut pending = pending();
    pending.config = Some(config.to_path_buf());
    pending.steps = steps.to_vec();
}

/// Records that `step` is done.
pub fn done(step: &str) {
    pending().steps.retain(|s| *s != step);
}

/// What a process ending now leaves undone and how to recover, in words
/// (None when nothing is recorded as left to do).
pub fn undone() -> Option<String> {
    let pending = pending();
    let config = pending.config.as_deref()?;
    if pending.steps.is_empty() {
        return None;
    }
    let mut text = format!("left undone: {}.", pending.steps.join("; "));
    match lock::holder(config) {
        Some(holder) => text.push_str(&format!("\nto recover: {}", lock::refusal(config, &holder))),
        None => text.push_str(&format!(
            "\nthe deployment of {} is back on its config and free; the study's results folder may be incomplete \
             (its trials are in trials.jsonl)",
            config.display()
        )),
    }
    Some(text)
}

/// Runs `work` for at most `deadline`; past it the work is dropped and
/// reported as not done.
pub async fn within<T, E: Into<anyhow::Error>>(
    deadline: Duration,
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(deadline, work).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(anyhow::anyhow!(
            "{what}: not done within {}; abandoned",
            humantime::format_duration(deadline)
        )),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_step_past_its_deadline_is_reported_as_not_done() {
        let never = std::future::pending::<anyhow::Result<()>>();
        let started = std::time::Instant::now();
        let e = within(Duration::from_millis(50), "exporting", never).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("exporting: not done within 50ms"), "{e}");
        assert_eq!(
            within(Duration::from_secs(5), "x", async { anyhow::Ok(7) })
                .await
                .unwrap(),
            7
        );
    }

    #[test]
    fn the_undone_steps_name_the_lock_s_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.properties");
        lock::acquire(
            &config,
            &lock::Holder {
                study: "tiny".into(),
                results_dir: dir.path().join("results"),
                pid: std::process::id(),
                server_was_running: None,
            },
        )
        .unwrap();
        begin(&config, &[STOP_TRIAL, RESTORE, RELEASE_LOCK, EXPORT]);
        done(STOP_TRIAL);
        let text = undone().unwrap();
        assert!(
            text.contains(RESTORE) && text.contains(EXPORT) && !text.contains(STOP_TRIAL),
            "{text}"
        );
        assert!(
            text.contains("servetune restore") && text.contains("tune --resume tiny"),
            "{text}"
        );
        lock::release(&config);
        done(RESTORE);
        done(RELEASE_LOCK);
        assert!(undone().unwrap().contains("back on its config"));
        done(EXPORT);
        assert!(undone().is_none());
    }
}
