//! The study loop — the one loop every study runs, generic over what it
//! tunes (`Testbed`) and where its trials are kept (`store::Store`): the
//! baseline → TorchServe's defaults (screened on the baseline's own window
//! when the server was found at them: `baseline_window`) → what the
//! strategy proposes while the next trial fits the budget with the
//! confirmation kept back (`Planner::fits`) → the confirmation rounds the
//! budget allows (`Planner::confirmation`) → tier decisions among the
//! confirmed (`estimator`). Every way out — done, the budget, the trial limit, the
//! cancellation token, an error, a panic — ends with the testbed restored
//! (onto the balanced recommendation when the study applies it).
//!
//! Fixed order per trial: claim → move → measure → journal → tell. Each
//! candidate is *claimed* from the store: a file journal is the one-worker
//! case (the next line); in a shared store the strategy is rebuilt from
//! every worker's finished trials and asks beside the points in flight, a
//! lost trial's candidate comes first, and only the leader checks the
//! budget. A worker (`Role::Worker`) only measures claims until the study
//! closes. A trial whose server was lost (`server_loss`) is journaled
//! marked and measured again. A resumed loop replays its journal into the
//! history and the strategy and never measures a journaled trial again.
//! A warm-started loop (`warm`) measures an earlier study's best points
//! first, tells the strategy its trials at a lower weight, and may stop
//! the search early when the earlier recommendation is unchanged.
//!
//! `tune`, `worker` and the daemon run it on a TorchServe (`served`);
//! `servetune replay` and the loop's tests on a recorded landscape
//! (`recorded`), on simulated time.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bench::soak::SoakReport;
use crate::objective::{Constraints, Figures, ModelLimits, Tier};
use crate::search::{History, Strategy, Trial};
use crate::space::{Point, Space};
use crate::store::file::Journal;
use crate::store::{Appended, KeepAlive, RunningTrial, Store, StudyState};
use crate::trial::{Candidate, Entry, StopReason, TierDecision, TrialKind};

use super::baseline_window;
use super::estimator;
use super::exit;
use super::planner::{Confirmation, Plan, Planner};
use super::runner::{entry_of, EntryContext};
use super::scheduler::Budget;
use super::server_loss::{judge_server_loss, screened_counted};
use super::shared::{lost_entry, pause, ClaimStep};
use super::shortfall;
use super::testbed::{Subject, Testbed};
use super::warm::WarmStart;
use crate::report::WarmStartSummary;

pub use super::shared::Role;

/// What the caller sees after each trial.
#[derive(Debug, Clone)]
pub struct TrialUpdate {
    pub number: usize,
    pub description: String,
    pub figures: Option<Figures>,
    pub feasible: bool,
    /// The best so far, this trial included.
    pub best: Option<Figures>,
    pub elapsed: Duration,
    pub budget: Duration,
}

/// What the loop found and how it ended.
pub struct Finished<T, S> {
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
    /// Study time spent until the restore.
    pub elapsed: Duration,
    /// An error or panic that ended the loop.
    pub failure: Option<anyhow::Error>,
    /// Whether the final restore went through.
    pub restored: anyhow::Result<()>,
    pub testbed: T,
    pub store: S,
    /// The leader's sign of life in a shared store, kept until the caller
    /// has marked the study finished.
    pub leader_alive: Option<KeepAlive>,
    /// What a warm start reused, and whether it found the earlier
    /// recommendation unchanged.
    pub warm_start: Option<WarmStartSummary>,
    /// How the balanced recommendation held up over the study's `soak`.
    pub soak: Option<SoakReport>,
}

/// One study over a testbed, its trials kept in a store.
pub struct StudyLoop<'a, T: Testbed, S: Store> {
    plan: &'a Plan,
    space: &'a Space,
    testbed: T,
    store: S,
    strategy: Box<dyn Strategy>,
    history: History,
    entries: Vec<Entry>,
    budget: Budget,
    token: CancellationToken,
    role: Role,
    resumed: bool,
    /// The testbed had to start its server (a cold JIT: the baseline gets
    /// the extra warm-up of a restart).
    started: bool,
    /// End on the balanced recommendation instead of the config as found.
    apply_best: bool,
    no_budget_to_confirm: bool,
    /// The confirmation measures fixed-length windows (`Confirmation::Steps`).
    fixed_confirmation: bool,
    leader_alive: Option<KeepAlive>,
    /// What an earlier study of this deployment hands on (`warm`).
    warm: Option<WarmStart>,
    /// The warm start found the earlier recommendation unchanged.
    unchanged: bool,
    /// Each model's own limits (a study of several models).
    model_limits: ModelLimits,
}

impl<'a, T: Testbed> StudyLoop<'a, T, Journal> {
    /// A study whose trials are kept in memory only (see `with_store`).
    pub fn new(plan: &'a Plan, space: &'a Space, testbed: T, strategy: Box<dyn Strategy>) -> Self {
        let budget = Budget::on(testbed.clock(), plan.budget, Duration::ZERO);
        Self {
            plan,
            space,
            testbed,
            store: Journal::unkept(),
            strategy,
            history: History::default(),
            entries: Vec::new(),
            budget,
            token: CancellationToken::new(),
            role: Role::Leader,
            resumed: false,
            started: false,
            apply_best: false,
            no_budget_to_confirm: false,
            fixed_confirmation: false,
            leader_alive: None,
            warm: None,
            unchanged: false,
            model_limits: ModelLimits::default(),
        }
    }

    /// Keeps every trial in `store`, going on from `entries` (its trials so far).
    pub fn with_store<S: Store>(self, store: S, entries: Vec<Entry>) -> StudyLoop<'a, T, S> {
        let spent = Duration::from_secs_f64(entries.last().map_or(0.0, |e| e.elapsed_s));
        let mut study = StudyLoop {
            budget: Budget::on(self.testbed.clock(), self.plan.budget, spent),
            resumed: self.resumed || !entries.is_empty(),
            plan: self.plan,
            space: self.space,
            testbed: self.testbed,
            store,
            strategy: self.strategy,
            history: self.history,
            entries: self.entries,
            token: self.token,
            role: self.role,
            started: self.started,
            apply_best: self.apply_best,
            no_budget_to_confirm: self.no_budget_to_confirm,
            fixed_confirmation: self.fixed_confirmation,
            leader_alive: None,
            warm: self.warm,
            unchanged: self.unchanged,
            model_limits: self.model_limits,
        };
        for entry in entries {
            study.replay(entry);
        }
        study
    }
}

impl<'a, T: Testbed, S: Store> StudyLoop<'a, T, S> {
    /// Judges each model of a trial against its own limits too.
    #[must_use]
    pub fn judging_models(mut self, limits: ModelLimits) -> Self {
        self.model_limits = limits;
        self
    }

    /// Stops at the next trial once `token` is cancelled (SIGTERM, Ctrl-C).
    #[must_use]
    pub fn with_token(mut self, token: CancellationToken) -> Self {
        self.token = token;
        self
    }

    /// Takes part as `role`: a worker measures claims until the study closes.
    #[must_use]
    pub fn as_role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Goes on from an earlier run (the testbed then does not know what runs).
    #[must_use]
    pub fn resuming(mut self, resumed: bool) -> Self {
        self.resumed |= resumed;
        self
    }

    /// Ends on the balanced recommendation, when there is one that changes
    /// something, instead of the config as found.
    #[must_use]
    pub fn applying_best(mut self, apply_best: bool) -> Self {
        self.apply_best = apply_best;
        self
    }

    /// Starts from a prediction (`prior`): `search::Guided` proposes the
    /// best expected points first, around the study's own strategy.
    #[must_use]
    pub fn guided_by(mut self, guesses: Vec<crate::search::Guess>) -> Self {
        if !guesses.is_empty() {
            self.strategy = Box::new(crate::search::Guided::new(guesses, self.strategy));
        }
        self
    }

    /// Starts from what an earlier study learned (`warm`): its points
    /// measured first, its trials told to the strategy at their weight.
    #[must_use]
    pub fn warm_started(mut self, warm: Option<WarmStart>) -> Self {
        self.warm = warm;
        self.tell_prior();
        self
    }

    /// Tells the strategy the earlier study's trials (before this study's own).
    fn tell_prior(&mut self) {
        if let Some(warm) = &self.warm {
            for trial in &warm.prior {
                self.strategy.tell(self.space, trial);
            }
        }
    }

    /// Runs the study to its end and restores the testbed, whatever happens.
    pub async fn run(mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> Finished<T, S> {
        let what = match self.role {
            Role::Leader => "study",
            Role::Worker => "worker",
        };
        let (stop, failure) = exit::guarded(what, self.phases(on_trial)).await;
        let elapsed = self.budget.elapsed();
        let constraints = self.planner().constraints();
        let candidates = estimator::candidates(&self.entries, self.space);
        let reference = estimator::reference_figures(&candidates, self.space);
        let decisions = estimator::decide_tiers(&candidates, &constraints, &self.plan.weights, &reference);
        let soak = match (&failure, stop, self.plan.soak) {
            (None, stop, Some(length)) if stop != StopReason::Interrupted => {
                self.soak_balanced(&decisions, &candidates, length).await
            }
            _ => None,
        };
        let onto = match (self.apply_best, &failure) {
            (true, None) => balanced_point(&decisions, &candidates),
            _ => None,
        };
        let restored = self.testbed.restore(self.space, onto.as_ref()).await;
        let confirms = self.entries.iter().filter(|e| e.kind == TrialKind::Confirm).count();
        Finished {
            stop,
            confirmation_incomplete: shortfall::confirmation_shortfall(&candidates, stop, confirms),
            no_budget_to_confirm: self.no_budget_to_confirm,
            constraints,
            elapsed,
            entries: self.entries,
            candidates,
            decisions,
            failure,
            restored,
            testbed: self.testbed,
            store: self.store,
            leader_alive: self.leader_alive,
            warm_start: self.warm.as_ref().map(|w| w.summary(self.unchanged)),
            soak,
        }
    }

    /// Soaks the balanced recommendation (when it changes something)
    /// before it is recommended; a soak that could not run is said in the
    /// log, and the recommendation stands without it.
    async fn soak_balanced(
        &mut self,
        decisions: &[TierDecision],
        candidates: &[Candidate],
        length: Duration,
    ) -> Option<SoakReport> {
        let point = balanced_point(decisions, candidates)?;
        if self.token.is_cancelled() {
            return None;
        }
        tracing::info!(
            "soaking the balanced recommendation for {}",
            humantime::format_duration(length)
        );
        match self.testbed.soak(self.space, &point, length).await {
            Ok(report) => report,
            Err(e) => {
                tracing::warn!("soaking the balanced recommendation: {e:#}");
                None
            }
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

    /// How often a trial (or the leader) beats in a shared store: six
    /// times a grace period, so a late beat or two never loses a trial.
    fn beat_every(&self) -> Duration {
        (self.plan.heartbeat_grace / 6).max(Duration::from_millis(500))
    }

    /// Rebuilds history and strategy state from a journaled trial.
    fn replay(&mut self, entry: Entry) {
        if let (TrialKind::Screen, Some(point), None) = (entry.kind, &entry.point, &entry.server_lost) {
            let trial = Trial {
                point: point.clone(),
                loss: entry.loss,
            };
            self.history.set_running(point.iter().map(|&l| Some(l)).collect());
            self.history.push(trial.clone());
            if let Some(figures) = &entry.figures {
                self.history.push_p99(point, figures.p99_ms);
            }
            self.strategy.tell(self.space, &trial);
        }
        self.entries.push(entry);
    }

    /// Takes in the store's finished trials this study has not seen (other
    /// workers'): each is told to the strategy as it arrives, so a strategy
    /// that plans ahead (staged) keeps its plan, and the entries stay in
    /// number order.
    fn adopt(&mut self, entries: Vec<Entry>) {
        let known: std::collections::HashSet<usize> = self.entries.iter().map(|e| e.number).collect();
        let before = self.entries.len();
        for entry in entries {
            if !known.contains(&entry.number) {
                self.replay(entry);
            }
        }
        if self.entries.len() > before {
            self.entries.sort_by_key(|e| e.number);
        }
    }

    async fn phases(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<StopReason> {
        if self.resumed && self.role == Role::Leader {
            tracing::info!("resuming the study after {} trials", self.entries.len());
        }
        if self.role == Role::Leader {
            self.leader_alive = self.store.keep_study_alive(self.beat_every());
        }
        self.started = self.testbed.start(self.resumed).await?;
        if self.role == Role::Worker {
            return self.measure_claims(on_trial).await;
        }
        let stop = self.search(on_trial).await?;
        tracing::info!(?stop, trials = self.entries.len(), "search finished");
        if stop != StopReason::Interrupted {
            self.close_search().await?;
            self.confirm(on_trial).await?;
        }
        Ok(stop)
    }

    /// The baseline unless the study has it, then the claimed candidates.
    async fn search(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<StopReason> {
        let has_baseline = self.entries.iter().any(|e| e.kind == TrialKind::Baseline);
        if !has_baseline
            && !self
                .trial(Subject::Baseline, TrialKind::Baseline, None, None, on_trial)
                .await?
        {
            return Ok(StopReason::Interrupted);
        }
        self.measure_claims(on_trial).await
    }

    /// Claims and measures candidates until the search ends (the leader:
    /// its budget, trial limit or space; a worker: the study closing).
    async fn measure_claims(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<StopReason> {
        loop {
            if self.token.is_cancelled() {
                return Ok(StopReason::Interrupted);
            }
            match self.claim_next().await? {
                ClaimStep::Measure {
                    number,
                    point,
                    on_baseline,
                } => {
                    let finished = match on_baseline {
                        Some(baseline) => self.screen_on(&baseline, number, point, on_trial).await?,
                        None => {
                            self.trial(Subject::Point(point), TrialKind::Screen, None, Some(number), on_trial)
                                .await?
                        }
                    };
                    if !finished {
                        return Ok(StopReason::Interrupted);
                    }
                }
                ClaimStep::Stop(stop) if self.role == Role::Leader => return Ok(stop),
                // A worker waits for the leader to end the search.
                ClaimStep::Wait | ClaimStep::Stop(_) => pause(&self.testbed.clock(), self.token.clone()).await,
                ClaimStep::Closed => return Ok(StopReason::Exhausted),
                ClaimStep::LeaderGone(silent_s) => anyhow::bail!(
                    "the study's leader (`servetune tune`) has shown no sign of life for {silent_s:.0} s, \
                     more than heartbeat_grace: this worker stops; start it again once a leader runs the study \
                     (`servetune tune --study FILE --storage …` on any host takes it up)"
                ),
            }
        }
    }

    /// Claims the next candidate: gives up trials whose workers fell
    /// silent, takes in every finished trial, and picks a lost candidate,
    /// the defaults, or what the strategy proposes beside the points being
    /// measured (constant liar). The leader also checks that the trial fits
    /// its budget.
    async fn claim_next(&mut self) -> anyhow::Result<ClaimStep> {
        let grace = self.plan.heartbeat_grace;
        let space = self.space;
        let lost = move |trial: &RunningTrial| lost_entry(space, trial, grace);
        let claim = self.store.claim_next(grace, &lost, self.entries.len()).await?;
        if claim.state != StudyState::Running {
            return Ok(ClaimStep::Closed);
        }
        if self.role == Role::Worker && claim.leader_silent_s > grace.as_secs_f64() {
            return Ok(ClaimStep::LeaderGone(claim.leader_silent_s));
        }
        if let Some(finished) = claim.finished.clone() {
            self.adopt(finished);
        }
        let planner = self.planner();
        let (running, costs) = (planner.running_levels(), planner.costs());
        self.history.set_running(running);
        self.history.set_costs(costs);
        let idle = claim.pending.is_empty();
        if self.role == Role::Leader && idle && self.warm_unchanged() {
            self.unchanged = true;
            return Ok(ClaimStep::Stop(StopReason::Unchanged));
        }
        if screened_counted(&self.entries) + claim.pending.len() >= self.plan.max_trials {
            return Ok(if idle {
                ClaimStep::Stop(StopReason::MaxTrials)
            } else {
                ClaimStep::Wait
            });
        }
        let defaults = self.space.default_point();
        let warm_first = self
            .warm
            .as_ref()
            .and_then(|warm| warm.next_first(|p| self.history.contains(p) || claim.pending.contains(p)));
        let point = if let Some(point) = claim.requeued.clone() {
            point
        } else if let Some(point) = warm_first {
            point
        } else if !self.history.contains(&defaults) && !claim.pending.contains(&defaults) {
            defaults
        } else {
            match crate::search::ask_beside_pending(self.strategy.as_mut(), self.space, &self.history, &claim.pending)?
            {
                Some(point) if !claim.pending.contains(&self.space.normalize(&point)) => self.space.normalize(&point),
                _ if idle => return Ok(ClaimStep::Stop(StopReason::Exhausted)),
                _ => return Ok(ClaimStep::Wait),
            }
        };
        let on_baseline = self.baseline_window_for(&point).cloned().map(Box::new);
        if self.role == Role::Leader && on_baseline.is_none() && !self.planner().fits(&point, &self.budget) {
            return Ok(ClaimStep::Stop(StopReason::Budget));
        }
        let number = match claim.take(&point).await {
            // The store's connection broke: claim again once it is back.
            Err(e) if e.is_transient() => {
                tracing::warn!("{e}: claiming again");
                return Ok(ClaimStep::Wait);
            }
            taken => taken?,
        };
        Ok(ClaimStep::Measure {
            number,
            point,
            on_baseline,
        })
    }

    /// Ends the screening: no more candidates are handed out, the other
    /// workers' trials are waited for (or given up after the grace period),
    /// and every finished trial is taken in (a file journal: at once).
    async fn close_search(&mut self) -> anyhow::Result<()> {
        let grace = self.plan.heartbeat_grace;
        let space = self.space;
        let lost = move |trial: &RunningTrial| lost_entry(space, trial, grace);
        self.store.close_claims().await?;
        loop {
            let running = self.store.running_elsewhere(grace, &lost).await?;
            if running == 0 || self.token.is_cancelled() {
                break;
            }
            tracing::info!("waiting for {running} trial(s) of other workers before the confirmation");
            pause(&self.testbed.clock(), self.token.clone()).await;
        }
        if let Some(entries) = self.store.finished_entries().await? {
            self.adopt(entries);
        }
        Ok(())
    }

    /// The confirmation rounds the planner fits into what is left: the
    /// baseline, the best candidates and each tier's leader re-measured in
    /// alternating rounds, grouped by cold config.
    async fn confirm(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<()> {
        let (candidates, steps) = match self.planner().confirmation(&self.budget) {
            Confirmation::Steps {
                candidates,
                steps,
                fixed_windows,
            } => {
                self.fixed_confirmation = fixed_windows;
                (candidates, steps)
            }
            Confirmation::NothingToConfirm => {
                tracing::info!("nothing to confirm against the baseline");
                return Ok(());
            }
            Confirmation::NoBudget { needed_s, left_s } => {
                tracing::warn!(
                    "no budget left to confirm ({needed_s:.0} s needed, {left_s:.0} s left): nothing will be recommended"
                );
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
                    .trial(subject, TrialKind::Confirm, Some(step.round), None, on_trial)
                    .await?
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Runs one trial: moves, measures, journals, tells. Returns false when
    /// interrupted mid-trial (nothing journaled; in a shared store the
    /// trial is given up at once, its candidate back in the queue).
    /// `claimed`: the number a claim took for it (else one is taken here).
    async fn trial(
        &mut self,
        subject: Subject,
        kind: TrialKind,
        round: Option<u32>,
        claimed: Option<usize>,
        on_trial: &(dyn Fn(&TrialUpdate) + Sync),
    ) -> anyhow::Result<bool> {
        let number = match claimed {
            Some(number) => number,
            None => self.store.begin(subject.point(), self.entries.len()).await?,
        };
        let heartbeat = self.store.keep_alive(number, self.beat_every());
        #[cfg(feature = "failpoints")]
        fail::fail_point!("study::before-move");
        let cold_start = kind == TrialKind::Baseline && self.started;
        let window = self.plan.window(kind, cold_start, self.fixed_confirmation);
        let result = self.testbed.run(self.space, &subject, window).await;
        drop(heartbeat);
        let result = result?;
        if self.token.is_cancelled() {
            self.give_up(number, subject.point()).await;
            return Ok(false);
        }
        let context = EntryContext {
            number,
            kind,
            values: self.testbed.values(self.space, &subject),
            subject: &subject,
            round,
            elapsed: self.budget.elapsed(),
        };
        let mut entry = entry_of(context, &result, &self.planner().constraints(), &self.model_limits);
        let lost = judge_server_loss(&self.entries, &mut entry);
        if self.store.append(&entry).await? == Appended::GivenUp {
            tracing::warn!(
                trial = number,
                "this trial was given up meanwhile (no heartbeat within {}) and its candidate handed out again: \
                 its result is dropped",
                humantime::format_duration(self.plan.heartbeat_grace)
            );
            return Ok(true);
        }
        if lost {
            return self.measure_again(entry, subject, kind, round, on_trial).await;
        }
        #[cfg(feature = "failpoints")]
        fail::fail_point!("study::after-trial", |_| Err(anyhow::anyhow!(
            "injected fault after a trial"
        )));
        self.tell(kind, &subject, &entry);
        self.report_trial(entry, &subject, kind, round, on_trial);
        Ok(true)
    }

    /// The leader's baseline entry when its window can stand for screening `point`.
    fn baseline_window_for(&self, point: &Point) -> Option<&Entry> {
        let found_at = self.planner().found_at();
        (self.role == Role::Leader)
            .then(|| baseline_window::stands_for(&self.entries, found_at.as_ref(), point))
            .flatten()
    }

    /// Journals screening trial `number` of `point` on `baseline`'s window,
    /// then tells the strategy as any trial. Returns what `trial` returns.
    async fn screen_on(
        &mut self,
        baseline: &Entry,
        number: usize,
        point: Point,
        on_trial: &(dyn Fn(&TrialUpdate) + Sync),
    ) -> anyhow::Result<bool> {
        let subject = Subject::Point(point);
        let values = self.testbed.values(self.space, &subject);
        let (constraints, elapsed) = (self.planner().constraints(), self.budget.elapsed());
        let point = subject.point().expect("a point");
        let entry = baseline_window::screening_entry(baseline, number, point, values, &constraints, elapsed);
        if self.store.append(&entry).await? == Appended::GivenUp {
            return Ok(true);
        }
        tracing::info!(
            trial = number,
            "{}: the config as found, screened on the baseline's window (trial {})",
            subject.describe(self.space, TrialKind::Screen, None),
            baseline.number
        );
        self.tell(TrialKind::Screen, &subject, &entry);
        self.report_trial(entry, &subject, TrialKind::Screen, None, on_trial);
        Ok(true)
    }

    /// Tells the strategy a screening trial's outcome.
    fn tell(&mut self, kind: TrialKind, subject: &Subject, entry: &Entry) {
        if let (TrialKind::Screen, Some(point)) = (kind, subject.point()) {
            let trial = Trial {
                point: point.clone(),
                loss: entry.loss,
            };
            self.history.push(trial.clone());
            if let Some(figures) = &entry.figures {
                self.history.push_p99(point, figures.p99_ms);
            }
            self.strategy.tell(self.space, &trial);
        }
    }

    /// Keeps the trial and tells the caller, with the best so far (this
    /// trial included).
    fn report_trial(
        &mut self,
        entry: Entry,
        subject: &Subject,
        kind: TrialKind,
        round: Option<u32>,
        on_trial: &(dyn Fn(&TrialUpdate) + Sync),
    ) {
        let description = subject.describe(self.space, kind, round);
        if let Some(reason) = &entry.failure {
            tracing::warn!(trial = entry.number, "{description}: failed: {reason}");
        }
        for incident in &entry.incidents {
            tracing::warn!(trial = entry.number, "{description}: {incident}");
        }
        let (number, figures, feasible) = (entry.number, entry.figures, entry.feasible);
        tracing::debug!(
            trial = number,
            feasible,
            throughput_rps = figures.map(|f| f.throughput_rps),
            p99_ms = figures.map(|f| f.p99_ms),
            "{description}"
        );
        self.entries.push(entry);
        on_trial(&TrialUpdate {
            number,
            description,
            figures,
            feasible,
            best: self.best_figures(),
            elapsed: self.budget.elapsed(),
            budget: self.budget.total(),
        });
    }

    /// Keeps `lost` (journaled, marked, not told) and measures its subject
    /// again as a trial of its own. Returns what `trial` returns.
    async fn measure_again(
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

    /// Gives up an interrupted trial at once, so that in a shared store its
    /// candidate goes back to the queue without the grace period.
    async fn give_up(&mut self, number: usize, point: Option<&Point>) {
        let trial = RunningTrial {
            number,
            point: point.cloned(),
            worker: crate::store::worker_id(),
            silent_s: 0.0,
        };
        let mut entry = lost_entry(self.space, &trial, self.plan.heartbeat_grace);
        entry.failure = Some(format!("interrupted: {} gave its trial up", trial.worker));
        if let Err(e) = self.store.give_up(number, &entry).await {
            tracing::warn!("giving up trial {number}: {e:#}");
        }
    }

    /// Whether the warm start's earlier recommendation came out unchanged.
    fn warm_unchanged(&self) -> bool {
        let screened: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.kind == TrialKind::Screen)
            .cloned()
            .collect();
        self.warm.as_ref().is_some_and(|warm| warm.unchanged(&screened))
    }

    fn best_figures(&self) -> Option<Figures> {
        let (best, loss) = self.history.best()?;
        (loss < 0.0).then(|| {
            self.entries
                .iter()
                .rev()
                .find(|e| e.point.as_ref() == Some(&best))
                .and_then(|e| e.figures)
        })?
    }
}

/// The balanced recommendation's point, unless it keeps the current config.
fn balanced_point(decisions: &[TierDecision], candidates: &[Candidate]) -> Option<Point> {
    let balanced = decisions.iter().find(|d| d.tier == Tier::Balanced)?;
    if balanced.keep_current {
        return None;
    }
    candidates[balanced.chosen].point.clone()
}
