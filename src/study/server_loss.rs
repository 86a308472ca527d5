//! A server that lost part of itself during a trial's window: the JVM or a
//! model worker died (or was restarted) between the start and the end of
//! the measurement. Such figures measured a server in trouble, not the
//! candidate: the runner compares the server's processes before and after
//! the window (`server_snapshot`), the study journals the trial
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
