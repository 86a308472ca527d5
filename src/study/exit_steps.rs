//! The steps of a study's way out that are still to do, kept for the whole
//! process (which deployment, which steps), so that a second Ctrl-C or
//! SIGTERM (the CLI's signal handler) can end the process at once and say
//! what it leaves undone and how to recover; and `within`, which gives a
//! step its deadline. `way_out` runs the steps.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::lock;

/// A step of the way out, as the second signal names it.
pub const STOP_TRIAL: &str = "stopping the trial under way";
pub const RESTORE: &str = "putting the server back on its original config (or --apply's recommendation)";
pub const RELEASE_LOCK: &str = "releasing the study lock";
pub const EXPORT: &str = "exporting the report and the recommended configs";

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
