//! A server that lost part of itself during a trial's window: the JVM or a
//! model worker died (or was restarted) between the start and the end of
//! the measurement. Such figures measured a server in trouble, not the
//! candidate: the runner compares the server's processes before and after
//! the window (`Snapshot`, `what_was_lost`), the study journals the trial
//! with `server_lost` saying what was lost, tells the strategy nothing of
//! it, leaves it out of every estimate, and measures the candidate again as
//! the next trial — on a server restarted first when it is not ready (the
//! runner checks before every move). A candidate whose server is lost in
//! `WINDOWS_LOST_AT_MOST` windows in a row is taken as failing: its config
//! may be what kills the server (too many workers for the memory, say).

use crate::search::FAILED_LOSS;
use crate::trial::{Entry, TrialKind};

use super::testbed::Subject;
use super::{Study, TrialUpdate};

/// Windows in a row in which a candidate's server may be lost before the
/// candidate is taken as the cause (a failed trial).
pub const WINDOWS_LOST_AT_MOST: usize = 3;

/// The server's processes at one moment: the JVM (a managed server's, from
/// its pid file or work directory) and each worker of the model as the
/// management API lists it (pid, status), sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub jvm: Option<i32>,
    pub workers: Vec<(i64, String)>,
}

/// What the server lost between `before` and `after`, in words for the
/// journal: the JVM gone or replaced, a worker gone, replaced or not READY.
/// None when nothing was lost, or when nothing was known before (a worker
/// list that could not be read proves nothing).
pub fn what_was_lost(before: &Snapshot, after: &Snapshot) -> Option<String> {
    if let Some(jvm) = before.jvm {
        if after.jvm != Some(jvm) {
            return Some(match after.jvm {
                Some(new) => format!("the JVM (pid {jvm}) was replaced by pid {new} during the window"),
                None => format!("the JVM (pid {jvm}) died during the window"),
            });
        }
    }
    if before.workers.is_empty() {
        return None;
    }
    let pids = |workers: &[(i64, String)]| workers.iter().map(|(pid, _)| *pid).collect::<Vec<_>>();
    let unready = after.workers.iter().any(|(_, status)| status != "READY");
    if pids(&before.workers) != pids(&after.workers) || unready {
        return Some(format!(
            "a worker restarted during the window (workers {:?} -> {:?})",
            before.workers, after.workers
        ));
    }
    None
}

impl Study<'_> {
    /// Decides what a trial whose server was lost becomes: true when it is
    /// to be measured again (it stays marked); on the last allowed window
    /// the mark turns into the trial's failure, told to the strategy as such.
    pub(super) fn judge_server_loss(&self, entry: &mut Entry) -> bool {
        let Some(lost) = entry.server_lost.clone() else {
            return false;
        };
        let in_a_row = self
            .entries
            .iter()
            .rev()
            .take_while(|e| e.server_lost.is_some() && e.point == entry.point && e.kind == entry.kind)
            .count();
        if in_a_row + 1 < WINDOWS_LOST_AT_MOST {
            return true;
        }
        entry.failure = Some(format!(
            "{lost}, in {WINDOWS_LOST_AT_MOST} windows in a row: taken as this config's failure"
        ));
        entry.server_lost = None;
        entry.figures = None;
        entry.loss = FAILED_LOSS;
        entry.feasible = false;
        false
    }

    /// Screening trials that count against the trial limit: a lost one
    /// does not (its candidate is measured again).
    pub(super) fn screened_counted(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == TrialKind::Screen && e.server_lost.is_none())
            .count()
    }

    /// Keeps `lost` (journaled, marked, not told) and measures its subject
    /// again as a trial of its own. Returns what `trial` returns.
    pub(super) async fn measure_again(
        &mut self,
        lost: Entry,
        subject: Subject,
        kind: TrialKind,
        round: Option<u32>,
        on_trial: &(dyn Fn(&TrialUpdate) + Sync),
    ) -> anyhow::Result<bool> {
        tracing::warn!(
            trial = lost.number,
            "{}: the figures are not this candidate's; it is measured again",
            lost.server_lost.as_deref().unwrap_or("the server was lost")
        );
        self.entries.push(lost);
        Box::pin(self.trial(subject, kind, round, None, on_trial)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(jvm: Option<i32>, workers: &[(i64, &str)]) -> Snapshot {
        Snapshot {
            jvm,
            workers: workers.iter().map(|(pid, s)| (*pid, s.to_string())).collect(),
        }
    }

    #[test]
    fn a_dead_jvm_or_worker_is_a_loss_and_a_steady_server_is_not() {
        let before = snapshot(Some(10), &[(11, "READY"), (12, "READY")]);
        assert_eq!(what_was_lost(&before, &before.clone()), None);
        let jvm_gone = what_was_lost(&before, &snapshot(None, &[])).unwrap();
        assert!(jvm_gone.contains("JVM (pid 10) died"), "{jvm_gone}");
        let jvm_new = what_was_lost(&before, &snapshot(Some(20), &[(21, "READY")])).unwrap();
        assert!(jvm_new.contains("replaced by pid 20"), "{jvm_new}");
        let replaced = what_was_lost(&before, &snapshot(Some(10), &[(11, "READY"), (13, "READY")])).unwrap();
        assert!(replaced.contains("worker restarted"), "{replaced}");
        // A killed worker shows first as UNLOADING with its old pid.
        let unloading = what_was_lost(&before, &snapshot(Some(10), &[(11, "READY"), (12, "UNLOADING")]));
        assert!(unloading.is_some());
        let scaled_down = what_was_lost(&before, &snapshot(Some(10), &[(11, "READY")]));
        assert!(scaled_down.is_some(), "a worker that vanished is lost");
    }

    #[test]
    fn nothing_known_before_proves_nothing() {
        let unknown = snapshot(None, &[]);
        assert_eq!(what_was_lost(&unknown, &snapshot(Some(5), &[(6, "READY")])), None);
        // A server without a JVM pid of its own (a service) still shows its workers.
        let service = snapshot(None, &[(6, "READY")]);
        assert!(what_was_lost(&service, &snapshot(None, &[])).is_some());
    }
}
