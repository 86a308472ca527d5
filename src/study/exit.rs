//! How the phases of a study (or a worker's part) ended, whatever way they
//! ended: done, stopped, an error, or a panic caught on the way out, so
//! that the caller restores the deployment in every case.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;

use crate::trial::StopReason;

/// Runs `phases` and turns any way out into a stop reason and the failure,
/// if any (`what` names the process in a panic's message: "study", "worker").
pub async fn guarded(
    what: &str,
    phases: impl Future<Output = anyhow::Result<StopReason>>,
) -> (StopReason, Option<anyhow::Error>) {
    match AssertUnwindSafe(phases).catch_unwind().await {
        Ok(Ok(stop)) => (stop, None),
        Ok(Err(error)) => (StopReason::Interrupted, Some(error)),
        Err(panic) => (
            StopReason::Interrupted,
            Some(anyhow::anyhow!(
                "the {what} stopped on an internal error: {}",
                panic_text(&panic)
            )),
        ),
    }
}

fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// The failure of a process whose deployment was then restored (or not):
/// both are said when both went wrong.
pub fn with_restore(
    failure: Option<anyhow::Error>,
    restored: anyhow::Result<()>,
    restored_text: &str,
) -> anyhow::Result<()> {
    match (failure, restored) {
        (None, Ok(())) => Ok(()),
        (Some(failure), Ok(())) => Err(failure.context(restored_text.to_string())),
        (None, Err(restore)) => Err(restore),
        (Some(failure), Err(restore)) => {
            Err(failure.context(format!("and putting the server back also failed: {restore:#}")))
        }
    }
}
