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
//! Order per trial (fixed, `runner`): ask → move (nothing, live, or restart,
//! by parsed difference) → wait ready → load → measure → score → journal
//! (fsync) → tell. Failed trials are journaled and told to the strategy with
//! `FAILED_LOSS`; only infrastructure faults abort the study.
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
pub mod settings;
mod setup;
mod shortfall;
pub mod study_loop;
pub mod testbed;
pub mod way_out;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::apply::state::Deployment;
use crate::config;
use crate::load::request::read_bodies;
use crate::objective::Figures;
use crate::report::Report;
use crate::search::{make_strategy, History, Strategy, Trial};
use crate::server::stack::StackSpec;
use crate::server::{TargetSpec, TorchServe};
use crate::space::{load_spaces, Current, Point, Space};
use crate::store::{StudyRecord, TrialStore};
use crate::trial::{Candidate, Entry, NotSearched, TrialKind};
use planner::{Confirmation, Plan, Planner};
use runner::{entry_of, EntryContext, Runner, Subject, RESTART_WARMUP};
use scheduler::Budget;
use settings::Settings;
use setup::{check_gateway_targets, check_model_served, check_targets_reachable, gateway_of, prune, workload_of};

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
    use way_out::{EXPORT, RELEASE_LOCK, RESTORE, STOP_TRIAL};
    way_out::begin(
        &study.runner.server.spec().config,
        &[STOP_TRIAL, RESTORE, RELEASE_LOCK, EXPORT],
    );
    // A shared study this process takes up is resumed too.
    let resume = study.resumed;
    let (stop, failure) = exit::guarded("study", study.phases(resume, on_trial)).await;
    study.wind_up(stop, failure, apply_best).await
}

/// How this process takes part in a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `tune`: creates (or resumes) the study, measures, decides when the
    /// search ends, confirms on its own server, reports.
    Leader,
    /// `worker`: joins a shared study and measures candidates on its own
    /// server until the study stops handing them out.
    Worker,
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
        let space = load_spaces(&settings.spaces)?;
        let spec = TargetSpec::load(&settings.target)?;
        crate::server::tls::announce_spec(&spec);
        let stack = settings.stack.as_deref().map(StackSpec::load).transpose()?;
        let config_path = spec.config.clone();
        // The original config: servetune's backup only when this study was cut short here.
        let original::Original {
            bytes: original_bytes,
            props: original_props,
            from_backup,
        } = original::read(&config_path, &settings.name, resume)?;
        if let Some(holder) = lock::holder(&config_path) {
            let ours = resume && holder.study == settings.name && !lock::running(&holder);
            if !ours {
                anyhow::bail!("{}", lock::refusal(&config_path, &holder));
            }
        }
        check_model_served(&original_props, &settings.model, &config_path)?;
        if let Some((first, second, port)) = crate::server::Endpoints::from_properties(&original_props).clash() {
            anyhow::bail!("{}: {first} and {second} both use port {port}", config_path.display());
        }
        check_targets_reachable(&space, &spec, &settings.spaces)?;
        check_gateway_targets(&space, stack.as_ref(), &settings.spaces)?;
        let (gateway, study_gateway) = match &stack {
            Some(stack) => {
                let (state, gateway) = gateway_of(stack, &settings.model, &original_props, from_backup)?;
                (Some(state), Some(gateway))
            }
            None => (None, None),
        };
        let bodies = match &settings.body {
            Some(path) => read_bodies(path)?,
            None => Vec::new(),
        };
        let workload = workload_of(settings, bodies);
        let (space, not_searched) = prune(space, &workload, &original_props);
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
        let resume = match &journal {
            TrialStore::Postgres(shared) => {
                let (state, leader_silent_s) = shared.status().await?;
                let joined = Joined {
                    created: shared.created(),
                    state,
                    leader_silent_s,
                };
                joins_shared(settings, role, resume, &joined)?
            }
            TrialStore::File(_) if !resume && !entries.is_empty() => anyhow::bail!(
                "study '{}' already has {} trials in {}; continue it with --resume {} or choose another name",
                settings.name,
                entries.len(),
                journal_path.display(),
                settings.name
            ),
            TrialStore::File(_) => resume,
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
        let stop = match self.journal.shared().is_some() {
            true => self.search_shared(on_trial).await?,
            false => self.search(on_trial).await?,
        };
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

    /// The search of a shared study: each candidate is claimed from the
    /// store (the strategy sees every worker's trials), measured here, and
    /// told by storing it; the search ends on the budget, the trial limit
    /// or an exhausted space, once the other workers' trials are in.
    async fn search_shared(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<StopReason> {
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
        let shared = match &self.journal {
            TrialStore::Postgres(shared) => shared,
            TrialStore::File(_) => anyhow::bail!("claims need a shared store"),
        };
        let claim = shared.claim(grace, &lost).await?;
        if claim.state != crate::store::StudyState::Running {
            return Ok(ClaimStep::Closed);
        }
        if self.role == Role::Worker && claim.leader_silent_s > grace.as_secs_f64() {
            return Ok(ClaimStep::LeaderGone(claim.leader_silent_s));
        }
        self.adopt(claim.finished.clone());
        let costs = self.costs();
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
        let TrialStore::Postgres(shared) = &mut self.journal else {
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

    fn costs(&self) -> crate::search::SwitchCosts {
        self.planner().costs()
    }

    /// Every candidate the screening (baseline and search) measured.
    fn screened_candidates(&self) -> Vec<Candidate> {
        self.planner().screened_candidates()
    }

    /// Measures the baseline unless the study has it; false when interrupted.
    async fn baseline_measured(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<bool> {
        if self.entries.iter().any(|e| e.kind == TrialKind::Baseline) {
            return Ok(true);
        }
        self.trial(Subject::Baseline, TrialKind::Baseline, None, None, on_trial)
            .await
    }

    async fn search(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<StopReason> {
        if !self.baseline_measured(on_trial).await? {
            return Ok(StopReason::Interrupted);
        }
        loop {
            if self.token.is_cancelled() {
                return Ok(StopReason::Interrupted);
            }
            let screened = self.screened_counted();
            if screened >= self.settings.max_trials {
                return Ok(StopReason::MaxTrials);
            }
            let costs = self.costs();
            self.history.set_running(self.runner.running_levels(&self.space));
            self.history.set_costs(costs);
            let defaults = self.space.default_point();
            let point = if !self.history.contains(&defaults) {
                defaults
            } else {
                match self.strategy.ask(&self.space, &self.history)? {
                    Some(point) => self.space.normalize(&point),
                    None => return Ok(StopReason::Exhausted),
                }
            };
            if !self.planner().fits(&point, &self.budget) {
                return Ok(StopReason::Budget);
            }
            if !self
                .trial(Subject::Point(point), TrialKind::Screen, None, None, on_trial)
                .await?
            {
                return Ok(StopReason::Interrupted);
            }
        }
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
        let values = self.values_of(&subject);
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
        let description = match (&subject, kind) {
            (Subject::Point(p), TrialKind::Confirm) => {
                format!("confirm r{} {}", round.unwrap_or(0), self.space.describe(p))
            }
            (Subject::Point(p), _) => self.space.describe(p),
            (Subject::Baseline, TrialKind::Confirm) => format!("confirm r{} baseline", round.unwrap_or(0)),
            (Subject::Baseline, _) => "baseline (the config as it was)".to_string(),
        };
        if let Some(reason) = &entry.failure {
            tracing::warn!(trial = entry.number, "{description}: failed: {reason}");
        }
        for incident in &entry.incidents {
            tracing::warn!(trial = entry.number, "{description}: {incident}");
        }
        let update = TrialUpdate {
            number: entry.number,
            description,
            figures: entry.figures,
            feasible: entry.feasible,
            best: self.best_figures(),
            elapsed: self.budget.elapsed(),
            budget: self.budget.total(),
        };
        self.entries.push(entry);
        on_trial(&update);
        Ok(true)
    }

    /// Gives up an interrupted trial of a shared study at once, so that
    /// its candidate goes back to the queue without the grace period.
    async fn give_up(&mut self, number: usize, point: Option<&Point>) {
        let TrialStore::Postgres(shared) = &self.journal else {
            return;
        };
        let trial = crate::store::RunningTrial {
            number,
            point: point.cloned(),
            worker: crate::store::worker_id(),
            silent_s: 0.0,
        };
        let mut entry = lost_entry(&self.space, &trial, self.settings.heartbeat_grace);
        entry.failure = Some(format!("interrupted: {} gave its trial up", trial.worker));
        if let Err(e) = shared.give_up(number, &entry).await {
            tracing::warn!("giving up trial {number}: {e:#}");
        }
    }

    /// Parameter → value of a subject, for the journal's readers.
    fn values_of(&self, subject: &Subject) -> BTreeMap<String, String> {
        match subject {
            Subject::Point(point) => self
                .space
                .values(point)
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            Subject::Baseline => {
                let original = &self.runner.original;
                self.space
                    .parameters
                    .iter()
                    .filter_map(|p| {
                        let value = match original.current(&p.targets[0], &self.settings.model) {
                            Current::Set(text) => text,
                            Current::Unset => format!("(unset: {})", p.levels[p.default_level]),
                            Current::Unknown => return None,
                        };
                        Some((p.name.clone(), value))
                    })
                    .collect()
            }
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

/// A shared study as `open` found it.
struct Joined {
    /// This process created it.
    created: bool,
    state: crate::store::StudyState,
    leader_silent_s: f64,
}

/// Whether this process takes up a shared study it did not create (as a
/// resume does), or why it may not: a finished study takes no more work; a
/// leader that still beats keeps its study (another host joins as a worker,
/// a resume waits for the grace period); a silent leader's study is taken
/// over by the next `tune` of it, from any host.
fn joins_shared(settings: &Settings, role: Role, resume: bool, joined: &Joined) -> anyhow::Result<bool> {
    let name = &settings.name;
    if role == Role::Worker || joined.created {
        return Ok(resume);
    }
    if joined.state == crate::store::StudyState::Finished {
        anyhow::bail!(
            "study '{name}' is finished in {}: its results are exported; choose another name for a new study",
            settings.storage.display()
        );
    }
    let grace = settings.heartbeat_grace;
    if joined.leader_silent_s <= grace.as_secs_f64() {
        anyhow::bail!(
            "study '{name}' is led by a running `servetune tune` (its last sign {:.0} s ago, grace {}): \
             to add this host, run `servetune worker --storage {} --study {name} --target TARGET.toml`; \
             to take the study over, stop that leader and wait out the grace period",
            joined.leader_silent_s,
            humantime::format_duration(grace),
            settings.storage.display()
        );
    }
    if !resume {
        tracing::info!(
            "taking up study {name}: its leader fell silent {:.0} s ago",
            joined.leader_silent_s
        );
    }
    Ok(true)
}

/// A second's wait between claims that found nothing to do.
async fn pause(token: CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        _ = token.cancelled() => {}
    }
}

/// What a claim on a shared study came to.
enum ClaimStep {
    /// Measure `point` as trial `number`.
    Measure { number: usize, point: Point },
    /// Nothing to hand out until other workers' trials finish.
    Wait,
    /// The search is over (for the leader; workers wait for it to say so).
    Stop(StopReason),
    /// The study no longer hands out candidates.
    Closed,
    /// The leader has been silent this many seconds.
    LeaderGone(f64),
}

/// The journal entry of a trial given up: no figures, the worst loss, and
/// the reason, naming the worker.
fn lost_entry(space: &Space, trial: &crate::store::RunningTrial, grace: Duration) -> Entry {
    let values = trial
        .point
        .as_ref()
        .map(|point| {
            space
                .values(point)
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    Entry {
        number: trial.number,
        kind: if trial.point.is_some() {
            TrialKind::Screen
        } else {
            TrialKind::Baseline
        },
        point: trial.point.clone(),
        values,
        figures: None,
        failure: Some(format!(
            "lost: worker {} sent no heartbeat for {:.0} s (grace {}); the candidate went back to the queue",
            trial.worker,
            trial.silent_s,
            humantime::format_duration(grace)
        )),
        loss: crate::search::FAILED_LOSS,
        feasible: false,
        restarted: false,
        throughput_ci95: None,
        duration_s: 0.0,
        elapsed_s: 0.0,
        switch: Default::default(),
        switch_s: 0.0,
        warmup_s: 0.0,
        stability: None,
        round: None,
        latency_histogram: None,
        server_cpu_cores: None,
        observer_cpu_share: None,
        incidents: Vec::new(),
        worker: Some(trial.worker.clone()),
        server_lost: None,
    }
}

/// The space as a shared study stores it: each parameter's name and levels.
fn space_fingerprint(space: &Space) -> serde_json::Value {
    serde_json::Value::Array(
        space
            .parameters
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "levels": p.levels.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
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
    use way_out::{RELEASE_LOCK, RESTORE, STOP_TRIAL};
    way_out::begin(&study.runner.server.spec().config, &[STOP_TRIAL, RESTORE, RELEASE_LOCK]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StudyState;

    fn settings() -> Settings {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let overrides = settings::Overrides {
            storage: Some("postgres://tuner@db/studies".into()),
            ..Default::default()
        };
        Settings::load(&root.join("examples/deployment/study.toml"), &overrides).unwrap()
    }

    fn found(created: bool, state: StudyState, leader_silent_s: f64) -> Joined {
        Joined {
            created,
            state,
            leader_silent_s,
        }
    }

    #[test]
    fn a_tune_takes_up_a_shared_study_only_from_a_silent_leader() {
        let s = settings();
        let grace = s.heartbeat_grace.as_secs_f64();
        // Created here: a new study (or the resume asked for).
        assert!(!joins_shared(&s, Role::Leader, false, &found(true, StudyState::Running, 0.0)).unwrap());
        // A live leader keeps its study, also against a resume; the error says how to help.
        for resume in [false, true] {
            let e = joins_shared(&s, Role::Leader, resume, &found(false, StudyState::Running, 1.0))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("servetune worker --storage postgres://tuner@db/studies"),
                "{e}"
            );
        }
        // A silent leader's study is taken up, as a resume.
        assert!(joins_shared(&s, Role::Leader, false, &found(false, StudyState::Running, grace + 1.0)).unwrap());
        // A finished study takes no more work.
        let e = joins_shared(&s, Role::Leader, true, &found(false, StudyState::Finished, 1e6))
            .unwrap_err()
            .to_string();
        assert!(e.contains("finished"), "{e}");
        // Workers always join (they watch the leader at each claim).
        assert!(!joins_shared(&s, Role::Worker, false, &found(false, StudyState::Running, 0.0)).unwrap());
    }

    #[test]
    fn a_lost_trial_names_its_worker_and_counts_as_failed() {
        let space = crate::space::load_spaces(&settings().spaces).unwrap();
        let trial = crate::store::RunningTrial {
            number: 7,
            point: Some(space.default_point()),
            worker: "host-b:42".into(),
            silent_s: 75.0,
        };
        let entry = lost_entry(&space, &trial, Duration::from_secs(60));
        let failure = entry.failure.unwrap();
        assert!(
            failure.contains("host-b:42") && failure.contains("75 s") && failure.contains("1m"),
            "{failure}"
        );
        assert_eq!(
            (entry.number, entry.kind, entry.feasible),
            (7, TrialKind::Screen, false)
        );
        assert_eq!(entry.loss, crate::search::FAILED_LOSS);
        assert_eq!(entry.values.len(), space.parameters.len());
        assert_eq!(entry.worker.as_deref(), Some("host-b:42"));
    }
}
