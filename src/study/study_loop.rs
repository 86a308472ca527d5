//! The study loop, generic over what it tunes (`Testbed`): the baseline →
//! TorchServe's defaults → what the strategy proposes while the next trial
//! fits the budget with the confirmation kept back (`Planner::fits`) → the
//! confirmation rounds the budget allows (`Planner::confirmation`) → tier
//! decisions among the confirmed (`estimator`). Every way out — done, the
//! budget, the trial limit, the cancellation token, an error, a panic —
//! ends with the testbed restored.
//!
//! Fixed order per trial: ask → move → measure → journal → tell. A resumed
//! loop replays its journal into the history and the strategy and never
//! measures a journaled trial again. `servetune replay` runs this loop on a
//! recorded landscape (`recorded`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::objective::Constraints;
use crate::search::{History, Strategy, Trial};
use crate::space::Space;
use crate::store::file::Journal;
use crate::trial::{Candidate, Entry, StopReason, TierDecision, TrialKind};

use super::estimator;
use super::exit;
use super::planner::{Confirmation, Plan, Planner};
use super::runner::{entry_of, EntryContext};
use super::scheduler::Budget;
use super::shortfall;
use super::testbed::{values_at, Subject, Testbed, Window};

/// What the loop found and how it ended.
pub struct Finished<T> {
    pub stop: StopReason,
    /// Every trial, in order.
    pub entries: Vec<Entry>,
    /// Every candidate's estimate, and the tier decisions among the confirmed.
    pub candidates: Vec<Candidate>,
    pub decisions: Vec<TierDecision>,
    /// Why the confirmation is incomplete, if it is.
    pub confirmation_incomplete: Option<String>,
    /// The confirmation did not fit what the budget left.
    pub no_budget_to_confirm: bool,
    /// The constraints the trials were judged by.
    pub constraints: Constraints,
    /// Study time spent.
    pub elapsed: Duration,
    /// An error or panic that ended the loop.
    pub failure: Option<anyhow::Error>,
    /// Whether the final restore went through.
    pub restored: anyhow::Result<()>,
    pub testbed: T,
}

/// One study over a testbed.
pub struct StudyLoop<'a, T: Testbed> {
    plan: &'a Plan,
    space: &'a Space,
    testbed: T,
    strategy: Box<dyn Strategy>,
    history: History,
    entries: Vec<Entry>,
    budget: Budget,
    token: CancellationToken,
    journal: Option<Journal>,
    resumed: bool,
    no_budget_to_confirm: bool,
}

impl<'a, T: Testbed> StudyLoop<'a, T> {
    pub fn new(plan: &'a Plan, space: &'a Space, testbed: T, strategy: Box<dyn Strategy>) -> Self {
        let budget = Budget::on(testbed.clock(), plan.budget, Duration::ZERO);
        Self {
            plan,
            space,
            testbed,
            strategy,
            history: History::default(),
            entries: Vec::new(),
            budget,
            token: CancellationToken::new(),
            journal: None,
            resumed: false,
            no_budget_to_confirm: false,
        }
    }

    /// Stops at the next trial once `token` is cancelled (SIGTERM, Ctrl-C).
    #[must_use]
    pub fn with_token(mut self, token: CancellationToken) -> Self {
        self.token = token;
        self
    }

    /// Journals every trial to `journal`, going on from `entries` (read from it).
    #[must_use]
    pub fn with_journal(mut self, journal: Journal, entries: Vec<Entry>) -> Self {
        let spent = Duration::from_secs_f64(entries.last().map_or(0.0, |e| e.elapsed_s));
        self.budget = Budget::on(self.testbed.clock(), self.plan.budget, spent);
        self.resumed = !entries.is_empty();
        for entry in entries {
            self.replay(entry);
        }
        self.journal = Some(journal);
        self
    }

    /// Runs the study to its end and restores the testbed, whatever happens.
    pub async fn run(mut self, on_trial: &(dyn Fn(&Entry) + Sync)) -> Finished<T> {
        let (stop, failure) = exit::guarded("study", self.phases(on_trial)).await;
        let restored = self.testbed.restore().await;
        let planner = self.planner();
        let constraints = planner.constraints();
        let candidates = estimator::candidates(&self.entries, self.space);
        let reference = estimator::reference_figures(&candidates, self.space);
        let decisions = estimator::decide_tiers(&candidates, &constraints, &self.plan.weights, &reference);
        let confirms = self.entries.iter().filter(|e| e.kind == TrialKind::Confirm).count();
        Finished {
            stop,
            confirmation_incomplete: shortfall::confirmation_shortfall(&candidates, stop, confirms),
            no_budget_to_confirm: self.no_budget_to_confirm,
            constraints,
            elapsed: self.budget.elapsed(),
            entries: self.entries,
            candidates,
            decisions,
            failure,
            restored,
            testbed: self.testbed,
        }
    }

    fn planner(&self) -> Planner<'_> {
        Planner {
            plan: self.plan,
            space: self.space,
            entries: &self.entries,
            running: self.testbed.running(self.space),
            baseline_levels: self.testbed.baseline_levels(self.space),
        }
    }

    /// Rebuilds history and strategy state from a journaled trial.
    fn replay(&mut self, entry: Entry) {
        if let (TrialKind::Screen, Some(point), None) = (entry.kind, &entry.point, &entry.server_lost) {
            let trial = Trial {
                point: point.clone(),
                loss: entry.loss,
            };
            self.history.push(trial.clone());
            self.strategy.tell(self.space, &trial);
        }
        self.entries.push(entry);
    }

    async fn phases(&mut self, on_trial: &(dyn Fn(&Entry) + Sync)) -> anyhow::Result<StopReason> {
        self.testbed.start(self.resumed).await?;
        let stop = self.search(on_trial).await?;
        if stop != StopReason::Interrupted {
            self.confirm(on_trial).await?;
        }
        Ok(stop)
    }

    /// The baseline, then the defaults, then the strategy's proposals.
    async fn search(&mut self, on_trial: &(dyn Fn(&Entry) + Sync)) -> anyhow::Result<StopReason> {
        let has_baseline = self.entries.iter().any(|e| e.kind == TrialKind::Baseline);
        if !has_baseline
            && !self
                .trial(Subject::Baseline, TrialKind::Baseline, None, on_trial)
                .await?
        {
            return Ok(StopReason::Interrupted);
        }
        loop {
            if self.token.is_cancelled() {
                return Ok(StopReason::Interrupted);
            }
            let screened = self
                .entries
                .iter()
                .filter(|e| e.kind == TrialKind::Screen && e.server_lost.is_none())
                .count();
            if screened >= self.plan.max_trials {
                return Ok(StopReason::MaxTrials);
            }
            let planner = self.planner();
            let (running, costs) = (planner.running_levels(), planner.costs());
            self.history.set_running(running);
            self.history.set_costs(costs);
            let defaults = self.space.default_point();
            let point = if !self.history.contains(&defaults) {
                defaults
            } else {
                match self.strategy.ask(self.space, &self.history)? {
                    Some(point) => self.space.normalize(&point),
                    None => return Ok(StopReason::Exhausted),
                }
            };
            if !self.planner().fits(&point, &self.budget) {
                return Ok(StopReason::Budget);
            }
            if !self
                .trial(Subject::Point(point), TrialKind::Screen, None, on_trial)
                .await?
            {
                return Ok(StopReason::Interrupted);
            }
        }
    }

    /// The confirmation rounds the planner fits into what is left.
    async fn confirm(&mut self, on_trial: &(dyn Fn(&Entry) + Sync)) -> anyhow::Result<()> {
        let (candidates, steps) = match self.planner().confirmation(&self.budget) {
            Confirmation::Steps { candidates, steps } => (candidates, steps),
            Confirmation::NothingToConfirm => return Ok(()),
            Confirmation::NoBudget { .. } => {
                self.no_budget_to_confirm = true;
                return Ok(());
            }
        };
        for step in steps {
            let candidate = &candidates[step.candidate];
            if self.planner().step_done(candidate, step.round) {
                continue;
            }
            let subject = match &candidate.point {
                Some(point) => Subject::Point(point.clone()),
                None => Subject::Baseline,
            };
            if self.token.is_cancelled()
                || !self
                    .trial(subject, TrialKind::Confirm, Some(step.round), on_trial)
                    .await?
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Moves, measures, journals, tells; false when interrupted mid-trial.
    async fn trial(
        &mut self,
        subject: Subject,
        kind: TrialKind,
        round: Option<u32>,
        on_trial: &(dyn Fn(&Entry) + Sync),
    ) -> anyhow::Result<bool> {
        let p = self.plan;
        let window = Window {
            warmup: p.warmup,
            duration: if kind == TrialKind::Confirm {
                p.confirm_duration
            } else {
                p.duration
            },
            max_window: None,
        };
        let result = self.testbed.run(self.space, &subject, window).await?;
        if self.token.is_cancelled() {
            return Ok(false);
        }
        let values = match &subject {
            Subject::Point(point) => self
                .space
                .values(point)
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            Subject::Baseline => values_at(self.space, &self.testbed.baseline_levels(self.space)),
        };
        let context = EntryContext {
            number: self.entries.len(),
            kind,
            subject: &subject,
            values,
            round,
            elapsed: self.budget.elapsed(),
        };
        let entry = entry_of(context, &result, &self.planner().constraints());
        if let Some(journal) = self.journal.as_mut() {
            journal.append(&entry)?;
        }
        if let (TrialKind::Screen, Some(point)) = (kind, subject.point()) {
            let trial = Trial {
                point: point.clone(),
                loss: entry.loss,
            };
            self.history.push(trial.clone());
            self.strategy.tell(self.space, &trial);
        }
        on_trial(&entry);
        self.entries.push(entry);
        Ok(true)
    }
}
