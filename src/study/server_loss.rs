//! A server that lost part of itself during a trial's window: the JVM or a
//! model worker died (or was restarted) between the start and the end of
//! the measurement. Such figures measured a server in trouble, not the
//! candidate: the runner compares the server's processes before and after
//! the window (`server_snapshot`), the study loop journals the trial
//! with `server_lost` saying what was lost, tells the strategy nothing of
//! it, leaves it out of every estimate, and measures the candidate again as
//! the next trial — on a server restarted first when it is not ready (the
//! runner checks before every move). A candidate whose server is lost in
//! `WINDOWS_LOST_AT_MOST` windows in a row is taken as failing: its config
//! may be what kills the server (too many workers for the memory, say).

use crate::search::FAILED_LOSS;
use crate::trial::{Entry, TrialKind};

/// Windows in a row in which a candidate's server may be lost before the
/// candidate is taken as the cause (a failed trial).
pub const WINDOWS_LOST_AT_MOST: usize = 3;

/// Decides what a trial whose server was lost becomes, given the trials
/// before it: true when it is to be measured again (it stays marked); on
/// the last allowed window the mark turns into the trial's failure, told
/// to the strategy as such.
pub fn judge_server_loss(before: &[Entry], entry: &mut Entry) -> bool {
    let Some(lost) = entry.server_lost.clone() else {
        return false;
    };
    let in_a_row = before
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

/// Screening trials that count against the trial limit: a lost one does
/// not (its candidate is measured again).
pub fn screened_counted(entries: &[Entry]) -> usize {
    entries
        .iter()
        .filter(|e| e.kind == TrialKind::Screen && e.server_lost.is_none())
        .count()
}
