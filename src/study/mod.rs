//! The study: the tuning loop that ties every stage together.
//!
//! Phases: the config as it is (the baseline) → TorchServe's defaults →
//! whatever the strategy proposes, until the budget (kept back for what
//! follows), the trial limit, the space or a signal stops it → confirmation
//! (`scheduler`): the baseline, the best candidates and each tier's leader
//! re-measured in alternating rounds on one server, grouped by cold config →
//! tier decisions among the confirmed only (`estimator`) → export → the
//! server back on the original config (or, with `--apply`, the balanced
//! recommendation).
//!
//! Order per trial (fixed, `runner`): ask → move → wait ready → load →
//! measure → score → journal (fsync) → tell. The planning (what the next
//! trial costs, what the confirmation keeps back, its rounds) is the
//! `planner`'s, shared with the generic loop (`study_loop`) that `replay`
//! runs on a recorded landscape (`recorded`, behind `testbed::Testbed`).
//!
//! Every way out restores: done, budget, Ctrl-C, SIGTERM, an error, a panic
//! in the loop — the phases run under a guard, and whatever they return, the
//! final config is put back first, the server left as it was found (running
//! and ready on it, or stopped: `as_found`), then the report is exported,
//! each step under a deadline (`way_out`). A trial whose server lost a
//! worker or its JVM is marked and measured again (`server_loss`).
//!
//! In a shared store the study has a leader (`tune`, `run_study`) and any
//! number of workers (`servetune worker`, `run_worker`), each on its own
//! server. Both get candidates by *claiming* them (`claim_next`): under the
//! study row's lock the strategy is rebuilt from every finished trial and
//! asks beside the points in flight. Only the leader checks the budget; when
//! its search ends it closes the study to claims, waits for the workers'
//! last trials (`close_search`), and confirms on its own server.

mod as_found;
pub mod clock;
pub mod estimator;
mod exit;
pub mod exit_steps;
mod findings;
pub mod gateway;
pub mod journal;
pub mod lock;
mod original;
pub mod planner;
pub mod recorded;
pub mod runner;
pub mod scheduler;
mod server_loss;
mod server_snapshot;
pub mod settings;
mod setup;
mod shared;
mod shortfall;
pub mod study_loop;
pub mod testbed;
pub mod way_out;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::apply::state::Deployment;
use crate::config;
use crate::objective::Figures;
use crate::report::Report;
use crate::search::{make_strategy, History, Strategy, Trial};
use crate::server::TorchServe;
use crate::space::{Point, Space};
use crate::store::{Store as _, StudyRecord, TrialStore};
use crate::trial::{Entry, NotSearched, TrialKind};
use planner::{Confirmation, Plan, Planner};
use runner::{entry_of, EntryContext, Runner, Subject, RESTART_WARMUP};
use scheduler::Budget;
use settings::Settings;
use shared::{joins_shared, lost_entry, pause, space_fingerprint, ClaimStep, Joined, Role};

pub use crate::trial::StopReason;

/// What the caller sees after each trial.
#[derive(Debug, Clone)]
pub struct TrialUpdate {
    pub number: usize,
    pub description: String,
    pub figures: Option<Figures>,
    pub feasible: bool,
    pub best: Option<Figures>,
    pub elapsed: Duration,
    pub budget: Duration,
}

/// Where a study keeps its files.
pub fn study_dir(results: &Path, name: &str) -> PathBuf {
    results.join(name)
}

/// The path of the study file a study was started from (for `--resume`).
pub fn source_marker(dir: &Path) -> PathBuf {
    dir.join("study-source.txt")
}

/// Runs (or resumes) a study; returns the report that was exported. Every
/// exit puts the original config (or, with `apply_best`, the balanced
/// recommendation) back and leaves the server as found (`as_found`).
pub async fn run_study(
    settings: &Settings,
    results: &Path,
    resume: bool,
    apply_best: bool,
    token: CancellationToken,
    on_trial: &(dyn Fn(&TrialUpdate) + Sync),
) -> anyhow::Result<Report> {
    let mut study = Study::open(settings, results, resume, Role::Leader, token).await?;
    use exit_steps::{EXPORT, RELEASE_LOCK, RESTORE, STOP_TRIAL};
    exit_steps::begin(
        &study.runner.server.spec().config,
        &[STOP_TRIAL, RESTORE, RELEASE_LOCK, EXPORT],
    );
    // A shared study this process takes up is resumed too.
    let resume = study.resumed;
    let (stop, failure) = exit::guarded("study", study.phases(resume, on_trial)).await;
    study.wind_up(stop, failure, apply_best).await
}

struct Study<'a> {
    settings: &'a Settings,
    role: Role,
    /// The study goes on from trials stored before this process.
    resumed: bool,
    /// The leader's sign of life in a shared store, while the study runs.
    leader_alive: Option<crate::store::KeepAlive>,
    space: Space,
    not_searched: Vec<NotSearched>,
    runner: Runner,
    journal: TrialStore,
    entries: Vec<Entry>,
    history: History,
    strategy: Box<dyn Strategy>,
    budget: Budget,
    plan: Plan,
    token: CancellationToken,
    dir: PathBuf,
    /// Whether the study moved the server (else nothing needs restoring).
    touched: bool,
    /// Whether the study started the server (a cold JIT: the baseline
    /// gets the extra warm-up of a restart).
    started_server: bool,
    /// Whether the server was ever ready during the study: one that never
    /// came up is not started again on the way out (its files are put back).
    server_up: bool,
    /// TorchServe was not running before the study: it is stopped again at the end.
    found_stopped: bool,
}

impl<'a> Study<'a> {
    /// Reads and checks everything before any server is touched.
    async fn open(
        settings: &'a Settings,
        results: &Path,
        resume: bool,
        role: Role,
        token: CancellationToken,
    ) -> anyhow::Result<Self> {
        // A worker joins a study under way: like a resume, it takes its
        // server's original from the backup a cut-short run left.
        let resume = resume || role == Role::Worker;
        let setup::Prepared {
            space,
            not_searched,
            spec,
            original_bytes,
            gateway,
            study_gateway,
            workload,
        } = setup::prepare(settings, resume)?;
        let dir = study_dir(results, &settings.name);
        let create_dir = || std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()));
        // The file journal lives in the folder; a shared store's study
        // makes it only once this process may take part (a refusal writes nothing).
        if matches!(settings.storage, crate::store::Storage::File) {
            create_dir()?;
        }
        let journal_path = dir.join("trials.jsonl");
        // Absolute: workers on other hosts find the study's files by it.
        let source = std::path::absolute(&settings.source).unwrap_or_else(|_| settings.source.clone());
        let record = StudyRecord {
            name: &settings.name,
            source: &source,
            journal: journal_path.clone(),
            space: Some(space_fingerprint(&space)),
        };
        let (journal, entries) = TrialStore::open(&settings.storage, &record).await?;
        let mut journal = journal;
        let resume = match journal.shared() {
            Some(shared) => {
                let (state, leader_silent_s) = shared.status().await?;
                let joined = Joined {
                    created: shared.created(),
                    state,
                    leader_silent_s,
                };
                joins_shared(settings, role, resume, &joined)?
            }
            None if !resume && !entries.is_empty() => anyhow::bail!(
                "study '{}' already has {} trials in {}; continue it with --resume {} or choose another name",
                settings.name,
                entries.len(),
                journal_path.display(),
                settings.name
            ),
            None => resume,
        };
        create_dir()?;
        if role == Role::Leader {
            config::file::write_data_atomically(&source_marker(&dir), source.display().to_string().as_bytes())
                .context("writing the study's source marker")?;
        }
        let original = Deployment {
            config: original_bytes,
            environment: spec.environment.clone(),
            gateway,
        };
        let elapsed_before = Duration::from_secs_f64(entries.last().map_or(0.0, |e| e.elapsed_s));
        let server = TorchServe::new(spec);
        let mut runner = Runner::new(server, &settings.model, original, workload, token.clone());
        if let Some(gateway) = study_gateway {
            runner = runner.with_gateway(gateway);
        }
        let mut study = Self {
            settings,
            role,
            resumed: resume,
            leader_alive: None,
            not_searched,
            runner,
            journal,
            entries: Vec::new(),
            history: History::default(),
            strategy: make_strategy(settings.strategy, settings.seed),
            budget: Budget::new(settings.budget, elapsed_before),
            plan: Plan::from(settings),
            token,
            dir,
            touched: false,
            started_server: false,
            server_up: false,
            found_stopped: false,
            space,
        };
        for entry in entries {
            study.replay(entry);
        }
        Ok(study)
    }

    /// With a shared store, `results/<study>/trials.jsonl` is written from
    /// it, as the file journal would be (each line names its worker).
    async fn export_trials(&mut self) -> anyhow::Result<()> {
        let Some(shared) = self.journal.shared() else {
            return Ok(());
        };
        // Every trial, those given up included (they say which worker fell silent).
        let entries = shared.all_entries().await?;
        let mut lines = Vec::new();
        for entry in &entries {
            serde_json::to_writer(&mut lines, entry).expect("entries serialise");
            lines.push(b'\n');
        }
        let path = self.dir.join("trials.jsonl");
        config::file::write_data_atomically(&path, &lines).with_context(|| format!("writing {}", path.display()))
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
            self.strategy.tell(&self.space, &trial);
        }
        self.entries.push(entry);
    }

    async fn phases(&mut self, resume: bool, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<StopReason> {
        if resume {
            tracing::info!(
                "resuming study {} after {} trials",
                self.settings.name,
                self.entries.len()
            );
        }
        self.take_server(resume).await?;
        let every = self.beat_every();
        self.leader_alive = self.journal.shared().map(|shared| shared.keep_alive(None, every));
        self.start_server(resume).await?;
        let stop = self.search(on_trial).await?;
        tracing::info!(?stop, trials = self.entries.len(), "search finished");
        if stop != StopReason::Interrupted {
            self.close_search().await?;
            self.confirm(on_trial).await?;
        }
        Ok(stop)
    }

    /// Marks the server's config as this study's (no other study may move
    /// it meanwhile); from here on, every way out restores it.
    fn lock_server(&mut self, server_was_running: bool) -> anyhow::Result<()> {
        let config = self.runner.server.spec().config.clone();
        lock::acquire(
            &config,
            &lock::Holder {
                study: self.settings.name.clone(),
                results_dir: std::path::absolute(self.dir.parent().unwrap_or(Path::new(".")))
                    .unwrap_or_else(|_| self.dir.clone()),
                pid: std::process::id(),
                server_was_running: Some(server_was_running),
            },
        )?;
        lock::keep_original(&config, &self.runner.original.config)?;
        self.touched = true;
        Ok(())
    }

    /// How often a trial (or the leader) beats in a shared store: six
    /// times a grace period, so a late beat or two never loses a trial.
    fn beat_every(&self) -> Duration {
        (self.settings.heartbeat_grace / 6).max(Duration::from_millis(500))
    }

    /// The search: the baseline, then each candidate claimed from the store
    /// (a file journal is the one-worker case; in a shared store the
    /// strategy sees every worker's trials), measured here, and told by
    /// storing it; the search ends on the budget, the trial limit or an
    /// exhausted space, once the other workers' trials are in.
    async fn search(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<StopReason> {
        if !self.baseline_measured(on_trial).await? {
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
                ClaimStep::Measure { number, point } => {
                    if !self
                        .trial(Subject::Point(point), TrialKind::Screen, None, Some(number), on_trial)
                        .await?
                    {
                        return Ok(StopReason::Interrupted);
                    }
                }
                ClaimStep::Stop(stop) if self.role == Role::Leader => return Ok(stop),
                // A worker waits for the leader to end the search.
                ClaimStep::Wait | ClaimStep::Stop(_) => pause(self.token.clone()).await,
                ClaimStep::Closed => return Ok(StopReason::Exhausted),
                ClaimStep::LeaderGone(silent_s) => anyhow::bail!(
                    "study {}: its leader (`servetune tune`) has shown no sign of life for {silent_s:.0} s, \
                     more than heartbeat_grace: this worker stops; start it again once a leader runs the study \
                     (`servetune tune --study {} --storage …` on any host takes it up)",
                    self.settings.name,
                    self.settings.source.display()
                ),
            }
        }
    }

    /// Claims the next candidate of a shared study: under the study row's
    /// lock, gives up trials whose workers fell silent, takes in every
    /// finished trial, and picks a lost candidate, the defaults, or what the
    /// strategy proposes beside the points being measured (constant liar).
    /// The leader also checks that the trial fits its budget.
    async fn claim_next(&mut self) -> anyhow::Result<ClaimStep> {
        let grace = self.settings.heartbeat_grace;
        let space = &self.space;
        let lost = move |trial: &crate::store::RunningTrial| lost_entry(space, trial, grace);
        let claim = self.journal.claim_next(grace, &lost, self.entries.len()).await?;
        if claim.state != crate::store::StudyState::Running {
            return Ok(ClaimStep::Closed);
        }
        if self.role == Role::Worker && claim.leader_silent_s > grace.as_secs_f64() {
            return Ok(ClaimStep::LeaderGone(claim.leader_silent_s));
        }
        if let Some(finished) = claim.finished.clone() {
            self.adopt(finished);
        }
        let costs = self.planner().costs();
        self.history.set_running(self.runner.running_levels(&self.space));
        self.history.set_costs(costs);
        let screened = self.screened_counted();
        let idle = claim.pending.is_empty();
        if screened + claim.pending.len() >= self.settings.max_trials {
            return Ok(if idle {
                ClaimStep::Stop(StopReason::MaxTrials)
            } else {
                ClaimStep::Wait
            });
        }
        let defaults = self.space.default_point();
        let point = if let Some(point) = claim.requeued.clone() {
            point
        } else if !self.history.contains(&defaults) && !claim.pending.contains(&defaults) {
            defaults
        } else {
            match crate::search::ask_beside_pending(self.strategy.as_mut(), &self.space, &self.history, &claim.pending)?
            {
                Some(point) if !claim.pending.contains(&self.space.normalize(&point)) => self.space.normalize(&point),
                _ if idle => return Ok(ClaimStep::Stop(StopReason::Exhausted)),
                _ => return Ok(ClaimStep::Wait),
            }
        };
        if self.role == Role::Leader && !self.planner().fits(&point, &self.budget) {
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
        Ok(ClaimStep::Measure { number, point })
    }

    /// Takes the store's finished trials as this study's: entries, history
    /// and a strategy told all of them, in number order.
    fn adopt(&mut self, entries: Vec<Entry>) {
        self.entries.clear();
        self.history = History::default();
        self.strategy = make_strategy(self.settings.strategy, self.settings.seed);
        for entry in entries {
            self.replay(entry);
        }
    }

    /// Ends the screening of a shared study: no more candidates are handed
    /// out, the other workers' trials are waited for (or given up after the
    /// grace period), and every finished trial is taken in.
    async fn close_search(&mut self) -> anyhow::Result<()> {
        let grace = self.settings.heartbeat_grace;
        let space = &self.space;
        let lost = move |trial: &crate::store::RunningTrial| lost_entry(space, trial, grace);
        let Some(shared) = self.journal.shared() else {
            return Ok(());
        };
        shared.set_state(crate::store::StudyState::Confirming).await?;
        loop {
            let running = shared.running(grace, &lost).await?;
            if running.is_empty() || self.token.is_cancelled() {
                break;
            }
            tracing::info!(
                "waiting for {} trial(s) of other workers before the confirmation",
                running.len()
            );
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.token.cancelled() => {}
            }
        }
        let entries = shared.entries().await?;
        self.adopt(entries);
        Ok(())
    }

    /// A worker's part: claim, measure, store, until the study stops
    /// handing out candidates.
    async fn work(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<StopReason> {
        self.take_server(true).await?;
        self.start_server(true).await?;
        self.measure_claims(on_trial).await
    }

    /// The planner's view of the study now.
    fn planner(&self) -> Planner<'_> {
        Planner {
            plan: &self.plan,
            space: &self.space,
            entries: &self.entries,
            running: self.runner.deployed().map(|_| self.runner.running_levels(&self.space)),
            baseline_levels: self.runner.original.running_levels(&self.space, &self.settings.model),
        }
    }

    /// The constraints trials are judged by (`Planner::constraints`).
    fn constraints(&self) -> crate::objective::Constraints {
        self.planner().constraints()
    }

    /// Measures the baseline unless the study has it; false when interrupted.
    async fn baseline_measured(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<bool> {
        if self.entries.iter().any(|e| e.kind == TrialKind::Baseline) {
            return Ok(true);
        }
        self.trial(Subject::Baseline, TrialKind::Baseline, None, None, on_trial)
            .await
    }

    /// Re-measures the baseline, the best candidates and each tier's leader
    /// in alternating rounds, grouped by cold config, as the budget allows
    /// (`Planner::confirmation`).
    async fn confirm(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<()> {
        let (candidates, steps) = match self.planner().confirmation(&self.budget) {
            Confirmation::Steps { candidates, steps } => (candidates, steps),
            Confirmation::NothingToConfirm => {
                tracing::info!("nothing to confirm against the baseline");
                return Ok(());
            }
            Confirmation::NoBudget { needed_s, left_s } => {
                tracing::warn!(
                    "no budget left to confirm ({needed_s:.0} s needed, {left_s:.0} s left): nothing will be recommended"
                );
                return Ok(());
            }
        };
        for step in steps {
            if self.token.is_cancelled() {
                return Ok(());
            }
            let candidate = &candidates[step.candidate];
            if self.planner().step_done(candidate, step.round) {
                continue;
            }
            let subject = match &candidate.point {
                Some(point) => Subject::Point(point.clone()),
                None => Subject::Baseline,
            };
            if !self
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
        let s = self.settings;
        let (duration, max_window) = match kind {
            TrialKind::Confirm => (
                s.confirm_duration,
                s.max_window
                    .map(|m| m.mul_f64(s.confirm_duration.as_secs_f64() / s.duration.as_secs_f64())),
            ),
            _ => (s.duration, s.max_window),
        };
        let target = match self.runner.deployment_of(&self.space, &subject) {
            Ok(target) => target,
            Err(reason) => anyhow::bail!(
                "{}: {reason}",
                s.spaces
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
        };
        let warmup = s.warmup
            + if kind == TrialKind::Baseline && self.started_server {
                RESTART_WARMUP
            } else {
                Duration::ZERO
            };
        let number = match claimed {
            Some(number) => number,
            None => self.journal.begin(subject.point(), self.entries.len()).await?,
        };
        let heartbeat = self.journal.keep_alive(number, self.beat_every());
        #[cfg(feature = "failpoints")]
        fail::fail_point!("study::before-move");
        let result = self.runner.run(&target, warmup, duration, max_window).await;
        drop(heartbeat);
        if self.token.is_cancelled() {
            self.give_up(number, subject.point()).await;
            return Ok(false);
        }
        let values = runner::values_of(&self.space, &subject, &self.runner.original, &s.model);
        let mut entry = entry_of(
            EntryContext {
                number,
                kind,
                subject: &subject,
                values,
                round,
                elapsed: self.budget.elapsed(),
            },
            &result,
            &self.constraints(),
        );
        let lost = self.judge_server_loss(&mut entry);
        if self.journal.append(&entry).await? == crate::store::Appended::GivenUp {
            tracing::warn!(
                trial = number,
                "this trial was given up meanwhile (no heartbeat within {}) and its candidate handed out again: \
                 its result is dropped",
                humantime::format_duration(s.heartbeat_grace)
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
        if let (TrialKind::Screen, Some(point)) = (kind, subject.point()) {
            let trial = Trial {
                point: point.clone(),
                loss: entry.loss,
            };
            self.history.push(trial.clone());
            self.strategy.tell(&self.space, &trial);
        }
        let description = subject.describe(&self.space, kind, round);
        if let Some(reason) = &entry.failure {
            tracing::warn!(trial = entry.number, "{description}: failed: {reason}");
        }
        for incident in &entry.incidents {
            tracing::warn!(trial = entry.number, "{description}: {incident}");
        }
        let (number, figures, feasible) = (entry.number, entry.figures, entry.feasible);
        // The best may be this very trial: look for it among the entries with it.
        self.entries.push(entry);
        let update = TrialUpdate {
            number,
            description,
            figures,
            feasible,
            best: self.best_figures(),
            elapsed: self.budget.elapsed(),
            budget: self.budget.total(),
        };
        on_trial(&update);
        Ok(true)
    }

    /// Gives up an interrupted trial of a shared study at once, so that
    /// its candidate goes back to the queue without the grace period.
    async fn give_up(&mut self, number: usize, point: Option<&Point>) {
        let grace = self.settings.heartbeat_grace;
        let space = &self.space;
        let Some(shared) = self.journal.shared() else {
            return;
        };
        let trial = crate::store::RunningTrial {
            number,
            point: point.cloned(),
            worker: crate::store::worker_id(),
            silent_s: 0.0,
        };
        let mut entry = lost_entry(space, &trial, grace);
        entry.failure = Some(format!("interrupted: {} gave its trial up", trial.worker));
        if let Err(e) = shared.give_up(number, &entry).await {
            tracing::warn!("giving up trial {number}: {e:#}");
        }
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

    /// Puts `target` (default: the original) on disk and the server on it,
    /// running or stopped as the study found it.
    async fn restore(&mut self, target: Option<Deployment>) -> anyhow::Result<()> {
        if !self.touched {
            return Ok(());
        }
        let config_path = self.runner.server.spec().config.clone();
        let applying = target.is_some();
        let target = target.unwrap_or_else(|| self.runner.original.clone());
        if self.server_up {
            self.leave_as_found(&target).await?;
        } else {
            self.runner.put_back_files(&target)?;
        }
        if applying {
            tracing::info!("left {} on the balanced recommendation", config_path.display());
            self.runner
                .server
                .spec()
                .write_environment(&target.environment)
                .context("writing the recommendation's environment into the target file")?;
        } else {
            // The files are the originals again: drop servetune's backups of them.
            original::forget_backup_if_original(&config_path, &target.config);
            if let (Some(path), Some(gateway)) = (self.runner.gateway_config_path(), &target.gateway) {
                original::forget_backup_if_original(&path, &gateway.config);
            }
        }
        Ok(())
    }
}

/// Runs a worker of a shared study (`servetune worker`): claims candidates,
/// measures them on this host's server, stores the results, until the
/// study stops handing them out; then puts the server back on its original
/// config. Returns the number of trials this worker measured.
pub async fn run_worker(
    settings: &Settings,
    results: &Path,
    token: CancellationToken,
    on_trial: &(dyn Fn(&TrialUpdate) + Sync),
) -> anyhow::Result<usize> {
    if settings.stack.is_some() {
        anyhow::bail!(
            "study {} tunes a stack: its gateway and TorchServe are measured by the leader alone \
             (workers take TorchServe studies)",
            settings.name
        );
    }
    let mut study = Study::open(settings, results, true, Role::Worker, token).await?;
    if study.journal.shared().is_none() {
        anyhow::bail!("a worker needs a shared store (--storage postgres://…)");
    }
    use exit_steps::{RELEASE_LOCK, RESTORE, STOP_TRIAL};
    exit_steps::begin(&study.runner.server.spec().config, &[STOP_TRIAL, RESTORE, RELEASE_LOCK]);
    let (_, failure) = exit::guarded("worker", study.work(on_trial)).await;
    let me = crate::store::worker_id();
    let measured = study
        .entries
        .iter()
        .filter(|e| e.worker.as_deref() == Some(me.as_str()))
        .count();
    let restored = study.restore_within(None).await;
    exit::with_restore(
        failure,
        restored,
        "the worker stopped; its server is back on its original config",
    )?;
    Ok(measured)
}
