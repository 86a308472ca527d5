//! One deployment's life under the daemon: a watcher that follows
//! production (access log, metrics, readiness, model versions, schedule,
//! drift, SLO) and turns what it sees into triggers, and a cycle runner that
//! takes one trigger at a time — study (shadow or in-place, exactly what
//! `tune` runs) → decision → canary with probation → keep or roll back.
//!
//! Files under `<results_dir>/<deployment>/`: the studies, `shadow/`,
//! `decisions.jsonl`, and `daemon-state.json` (the running study's name, so a
//! daemon killed mid-study resumes it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::canary::{self, Action, Decision, DecisionFigures, Verdict};
use super::config::{DeploymentConfig, Mode};
use super::live::{LiveFigures, Tally};
use super::shadow::{self, ShadowFiles};
use super::status::{RunningStudy, Shared};
use super::watcher::{ServerWatch, Watch};
use super::Trigger;
use crate::apply::{self, state::Deployment, Edit};
use crate::server::TorchServe;
use crate::study::{run_study, TrialUpdate};

/// Per-deployment state the watcher and the cycle share.
pub(super) struct Eyes {
    /// When set, every access line also goes here (a canary's window).
    pub(super) probe: Mutex<Option<Tally>>,
    /// Figures the drift trigger compares with (set after each decision).
    pub(super) reference: Mutex<Option<LiveFigures>>,
    /// A cycle runs: drift and SLO are not judged meanwhile.
    pub(super) busy: std::sync::atomic::AtomicBool,
}

pub struct Supervisor {
    name: String,
    config: watch::Receiver<DeploymentConfig>,
    results: PathBuf,
    shared: Arc<Shared>,
    eyes: Arc<Eyes>,
}

/// Starts a deployment's watcher and cycle runner; they end when `stop` is
/// cancelled (a running study stops its trial and restores first).
pub fn spawn(
    config: watch::Receiver<DeploymentConfig>,
    results_dir: &Path,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let name = config.borrow().name.clone();
    let supervisor = Supervisor {
        results: results_dir.join(&name),
        name: name.clone(),
        config,
        shared: shared.clone(),
        eyes: Arc::new(Eyes {
            probe: Mutex::new(None),
            reference: Mutex::new(None),
            busy: Default::default(),
        }),
    };
    let (queue, triggers) = mpsc::unbounded_channel();
    shared.set_trigger_queue(&name, Some(queue.clone()));
    tokio::spawn(async move {
        if let Some(study) = supervisor.interrupted_study() {
            tracing::info!(deployment = %supervisor.name, study, "resuming the study a previous daemon left running");
            let _ = queue.send(Trigger::Resume(study));
        }
        let supervisor = Arc::new(supervisor);
        let watcher = tokio::spawn(supervisor.clone().watcher(queue, stop.clone()));
        supervisor.run_cycles(triggers, stop).await;
        watcher.abort();
        supervisor.shared.set_trigger_queue(&supervisor.name, None);
    })
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct DaemonState {
    running_study: Option<String>,
}

impl Supervisor {
    fn config(&self) -> DeploymentConfig {
        self.config.borrow().clone()
    }

    fn state_file(&self) -> PathBuf {
        self.results.join("daemon-state.json")
    }

    fn interrupted_study(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.state_file()).ok()?;
        serde_json::from_str::<DaemonState>(&text).ok()?.running_study
    }

    fn record_running(&self, study: Option<&str>) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.results).with_context(|| format!("cannot create {}", self.results.display()))?;
        let state = DaemonState {
            running_study: study.map(str::to_string),
        };
        let path = self.state_file();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&state)?).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    fn set_phase(&self, phase: &str) {
        self.shared.with_deployment(&self.name, |d| d.phase = phase.to_string());
    }

    // ---- the cycle runner ----

    async fn run_cycles(&self, mut triggers: mpsc::UnboundedReceiver<Trigger>, stop: CancellationToken) {
        if let Some(last) = canary::last_journaled(&self.results) {
            self.shared
                .with_deployment(&self.name, |d| d.last_decision = Some(last));
        }
        loop {
            let trigger = tokio::select! {
                _ = stop.cancelled() => return,
                trigger = triggers.recv() => match trigger { Some(t) => t, None => return },
            };
            // Triggers that arrived meanwhile merge into this cycle.
            let mut merged = vec![trigger];
            while let Ok(more) = triggers.try_recv() {
                merged.push(more);
            }
            let resume = merged.iter().find_map(|t| match t {
                Trigger::Resume(name) => Some(name.clone()),
                _ => None,
            });
            let why = merged.iter().map(Trigger::describe).collect::<Vec<_>>().join(", ");
            self.eyes.busy.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Err(error) = self.cycle(&why, resume, &stop).await {
                tracing::error!(deployment = %self.name, "the cycle failed: {error:#}");
                self.shared
                    .with_deployment(&self.name, |d| d.note = Some(format!("last cycle failed: {error:#}")));
            }
            self.eyes.busy.store(false, std::sync::atomic::Ordering::SeqCst);
            self.set_phase("watching");
            self.shared.with_deployment(&self.name, |d| d.queued = None);
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// In-place: the time left to tune now, or why not now.
    fn in_place_gate(&self, config: &DeploymentConfig) -> Result<Option<Duration>, String> {
        if config.mode != Mode::InPlace {
            return Ok(None);
        }
        let window = config.triggers.maintenance_window.expect("checked at load");
        let Some(left) = window.remaining(SystemTime::now()) else {
            return Err("outside the maintenance window".into());
        };
        let live = self
            .shared
            .with_deployment(&self.name, |d| d.live.rate_rps)
            .unwrap_or(0.0);
        if let Some(max) = config.triggers.max_live_rps {
            if live > max {
                return Err(format!("live traffic {live:.1} req/s is above max_live_rps {max}"));
            }
        }
        Ok(Some(left))
    }

    async fn cycle(&self, why: &str, resume: Option<String>, stop: &CancellationToken) -> anyhow::Result<()> {
        // In place: wait for the window (and quiet traffic); a reloaded
        // config is looked at again at once.
        let mut reloads = self.config.clone();
        let (config, window_left) = loop {
            let config = self.config();
            match self.in_place_gate(&config) {
                Ok(left) => break (config, left),
                Err(reason) => {
                    self.set_phase("deferred");
                    self.shared.with_deployment(&self.name, |d| {
                        d.note = Some(format!("study ({why}) deferred: {reason}"));
                    });
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = reloads.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    }
                }
            }
        };
        let resuming = resume.is_some();
        let study_name = resume.unwrap_or_else(|| format!("{}-{}", self.name, unix_now()));
        let mut settings = config.settings.clone();
        settings.name = study_name.clone();
        if let Some(left) = window_left {
            settings.budget = settings.budget.min(left.saturating_sub(Duration::from_secs(60)));
        }
        let shadow_spec = match config.mode {
            Mode::Shadow => {
                let files = ShadowFiles::of(&self.results.join("shadow"));
                let spec = match (resuming, files.load()) {
                    (true, Ok(spec)) => spec,
                    _ => files.write(&config.target)?,
                };
                // A shadow left by a killed daemon goes first.
                TorchServe::new(spec.clone()).stop().await.ok();
                settings.target = files.target.clone();
                Some(spec)
            }
            Mode::InPlace => None,
        };
        self.record_running(Some(&study_name))?;
        self.set_phase("study");
        self.shared.with_deployment(&self.name, |d| {
            d.note = None;
            d.running_study = Some(RunningStudy {
                name: study_name.clone(),
                trigger: why.to_string(),
                trials: 0,
                best: None,
                best_rps: None,
            });
        });
        tracing::info!(deployment = %self.name, study = %study_name, trigger = why, "study starts");
        let shared = self.shared.clone();
        let name = self.name.clone();
        let on_trial = move |update: &TrialUpdate| {
            shared.with_deployment(&name, |d| {
                if let Some(study) = d.running_study.as_mut() {
                    study.trials = update.number;
                    study.best_rps = update.best.map(|b| b.throughput_rps);
                    study.best = update
                        .best
                        .map(|b| format!("{:.0} req/s at p99 {:.1} ms", b.throughput_rps, b.p99_ms));
                }
            });
        };
        let report = run_study(&settings, &self.results, resuming, false, stop.child_token(), &on_trial).await;
        if let Some(spec) = shadow_spec {
            if let Err(e) = TorchServe::new(spec).stop().await {
                tracing::warn!(deployment = %self.name, "stopping the shadow: {e}");
            }
        }
        self.shared.with_deployment(&self.name, |d| d.running_study = None);
        if stop.is_cancelled() {
            // Interrupted by SIGTERM: the study restored its server; it is
            // not resumed (an operator stopped it).
            self.record_running(None)?;
            return Ok(());
        }
        self.record_running(None)?;
        prune_old_studies(&self.results, &self.name, KEEP_STUDIES);
        let report = report.context("the study")?;
        let decision = match canary::worth_applying(&report) {
            Err(why_not) => {
                let figures = DecisionFigures {
                    baseline: report.baseline,
                    ..Default::default()
                };
                Decision::new(Action::Kept, why_not, &study_name, figures)
            }
            Ok(recommendation) => {
                let recommended = Deployment {
                    config: recommendation.files.config.clone(),
                    environment: recommendation.environment.clone(),
                    gateway: None,
                };
                let mut figures = DecisionFigures {
                    baseline: report.baseline,
                    recommended: Some(recommendation.figures),
                    ..Default::default()
                };
                let mut decision = self
                    .canary(
                        &config,
                        &recommended,
                        &recommendation.reason,
                        &study_name,
                        &mut figures,
                        stop,
                    )
                    .await?;
                decision.values = recommendation.values.clone();
                decision
            }
        };
        self.decide(decision)
    }

    fn decide(&self, decision: Decision) -> anyhow::Result<()> {
        tracing::info!(deployment = %self.name, action = ?decision.action, "{}", decision.reason);
        canary::journal(&self.results, &decision)?;
        let live = self.shared.with_deployment(&self.name, |d| {
            let action = serde_json::to_value(decision.action).expect("serialises");
            *d.decisions
                .entry(action.as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            d.last_decision = serde_json::to_value(&decision).ok();
            d.live.clone()
        });
        *self.eyes.reference.lock().expect("no panics under the lock") = live;
        Ok(())
    }

    /// Watches live traffic for `span` (cancellable); the figures seen.
    async fn observe(&self, span: Duration, stop: &CancellationToken) -> LiveFigures {
        *self.eyes.probe.lock().expect("no panics under the lock") = Some(Tally::new(Instant::now()));
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(span) => {}
        }
        let tally = self.eyes.probe.lock().expect("no panics under the lock").take();
        tally.map(|t| t.figures(Instant::now())).unwrap_or_default()
    }

    /// Puts `recommended` on production, watches it through probation, and
    /// keeps it or puts the previous config back.
    async fn canary(
        &self,
        config: &DeploymentConfig,
        recommended: &Deployment,
        gain: &str,
        study: &str,
        figures: &mut DecisionFigures,
        stop: &CancellationToken,
    ) -> anyhow::Result<Decision> {
        let production = TorchServe::new(config.target.clone());
        let config_path = config.target.config.clone();
        let previous = Deployment {
            config: std::fs::read(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?,
            environment: production.environment(),
            gateway: None,
        };
        let next = shadow::to_production(recommended, &config_path)?;
        let transition = previous.transition_to(&next);
        if transition == apply::state::Transition::Nothing {
            return Ok(Decision::new(
                Action::Kept,
                "production already runs the recommendation",
                study,
                figures.clone(),
            ));
        }
        if next.environment != previous.environment
            && matches!(config.target.control, crate::server::Control::RestartCommand { .. })
        {
            return Ok(Decision::new(
                Action::Kept,
                format!(
                    "the recommendation needs the environment {:?}, which production's service sets: apply it there",
                    next.environment
                ),
                study,
                figures.clone(),
            ));
        }
        self.set_phase("before");
        let before = self.observe(config.canary.probation, stop).await;
        figures.before = Some(before.clone());
        if stop.is_cancelled() {
            return Ok(Decision::new(
                Action::Kept,
                "the daemon stopped before the change",
                study,
                figures.clone(),
            ));
        }
        let edit = Edit::replace(&config_path, &next.config)?;
        let applied = match &transition {
            apply::state::Transition::Live { assignments, .. } => {
                apply::apply_hot(&production, edit, assignments).await
            }
            _ => apply::apply_with_restart_in(&production, edit, next.environment.clone()).await,
        };
        if let Err(error) = applied {
            return Ok(Decision::new(
                Action::Kept,
                format!("applying the recommendation failed and was rolled back: {error}"),
                study,
                figures.clone(),
            ));
        }
        if next.environment != previous.environment {
            config.target.write_environment(&next.environment)?;
        }
        self.decide(Decision::new(
            Action::Applied,
            format!(
                "{gain}; applied {}, on probation for {}",
                if transition == apply::state::Transition::Restart {
                    "by restart"
                } else {
                    "live"
                },
                humantime::format_duration(config.canary.probation)
            ),
            study,
            figures.clone(),
        ))?;
        self.set_phase("probation");
        let during = self.observe(config.canary.probation, stop).await;
        figures.probation = Some(during.clone());
        let verdict = if stop.is_cancelled() {
            Verdict::RollBack("the daemon stopped during probation: an unproven config does not stay".into())
        } else {
            canary::judge_probation(&config.canary, &before, &during)
        };
        match verdict {
            Verdict::Keep(reason) => Ok(Decision::new(Action::Applied, reason, study, figures.clone())),
            Verdict::RollBack(reason) => {
                self.set_phase("rolling_back");
                let edit = Edit::replace(&config_path, &previous.config)?;
                let back = apply::apply_with_restart_in(&production, edit, previous.environment.clone()).await;
                if next.environment != previous.environment {
                    config.target.write_environment(&previous.environment)?;
                }
                let reason = match back {
                    Ok(()) => format!("{reason}; the previous config is back"),
                    Err(e) => format!("{reason}; putting the previous config back FAILED: {e}"),
                };
                Ok(Decision::new(Action::RolledBack, reason, study, figures.clone()))
            }
        }
    }

    // ---- the watcher ----

    /// Follows production once a second until `stop`: live figures, and
    /// the triggers they (and the clock, and new model versions) fire.
    async fn watcher(self: Arc<Self>, queue: mpsc::UnboundedSender<Trigger>, stop: CancellationToken) {
        let server_side = tokio::spawn(self.clone().watch_server(queue.clone(), stop.clone()));
        let mut eyes = Watch::new(self.config().access_log.clone());
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let config = self.config();
            if eyes.follower.path() != config.access_log {
                eyes = Watch::new(config.access_log.clone());
            }
            let figures = eyes.read_log(&self.eyes);
            let next = eyes.next_scheduled(&config);
            if let Some(at) = next.filter(|at| *at <= SystemTime::now()) {
                eyes.last_schedule = Some(at);
                self.fire(&queue, Trigger::Schedule);
            }
            if !self.eyes.busy.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(trigger) = eyes.judge_drift(&config.triggers, &figures, &self.eyes) {
                    self.fire(&queue, trigger);
                }
            }
            self.shared.with_deployment(&self.name, |d| {
                d.live = figures;
                d.access_log_skipped_lines = eyes.follower.skipped();
                d.next_scheduled_run = next.map(|at| humantime::format_rfc3339_seconds(at).to_string());
            });
        }
        server_side.abort();
    }

    /// Production's health and metrics every 5 s, new model versions every
    /// 30 s; each round bounded so a hung server cannot pile them up.
    async fn watch_server(self: Arc<Self>, queue: mpsc::UnboundedSender<Trigger>, stop: CancellationToken) {
        let mut server = ServerWatch::default();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for round in 0u64.. {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let config = self.config();
            let checked = tokio::time::timeout(Duration::from_secs(10), self.check_production(&config, &mut server));
            if checked.await.is_err() {
                tracing::warn!(deployment = %self.name, "production did not answer its checks within 10 s");
            }
            if round % 6 == 0 && config.triggers.new_model_version {
                let versions = tokio::time::timeout(Duration::from_secs(10), server.new_model_version(&config));
                if let Ok(Some(trigger)) = versions.await {
                    self.fire(&queue, trigger);
                }
            }
        }
    }

    /// Queues `trigger`; while a cycle runs, `/status` shows it as queued.
    fn fire(&self, queue: &mpsc::UnboundedSender<Trigger>, trigger: Trigger) {
        tracing::info!(deployment = %self.name, "trigger: {}", trigger.describe());
        if self.eyes.busy.load(std::sync::atomic::Ordering::SeqCst) {
            self.shared
                .with_deployment(&self.name, |d| d.queued = Some(trigger.describe()));
        }
        let _ = queue.send(trigger);
    }

    async fn check_production(&self, config: &DeploymentConfig, eyes: &mut ServerWatch) {
        let production = TorchServe::new(config.target.clone());
        let up = production.is_ready().await;
        let in_place_study = config.mode == Mode::InPlace && self.eyes.busy.load(std::sync::atomic::Ordering::SeqCst);
        if eyes.production_up && !up && !in_place_study {
            tracing::error!(deployment = %self.name, "production TorchServe does not answer /ping");
            let since = humantime::format_rfc3339_seconds(SystemTime::now());
            self.shared.with_deployment(&self.name, |d| {
                d.note = Some(format!("production TorchServe down since {since} (no /ping answer)"));
            });
        } else if !eyes.production_up && up {
            tracing::info!(deployment = %self.name, "production TorchServe is up");
            self.shared.with_deployment(&self.name, |d| {
                if d.note
                    .as_deref()
                    .is_some_and(|n| n.starts_with("production TorchServe down"))
                {
                    d.note = None;
                }
            });
        }
        eyes.production_up = up;
        let times = match up {
            true => eyes.server_times(&production, &config.settings.model).await,
            false => None,
        };
        let current = std::fs::read(&config.target.config)
            .ok()
            .and_then(|bytes| crate::config::Properties::parse(bytes).ok())
            .map(|props| {
                props
                    .effective()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                    .collect()
            });
        self.shared.with_deployment(&self.name, |d| {
            d.production_up = up;
            if let Some(times) = times {
                d.server_times = times;
            }
            if let Some(current) = current {
                d.current_config = current;
            }
        });
    }
}

/// Studies kept per deployment: a daemon runs for months.
const KEEP_STUDIES: usize = 30;

/// Removes all but the newest `keep` study folders (`<name>-<unix seconds>`).
fn prune_old_studies(results: &Path, name: &str, keep: usize) {
    let Ok(entries) = std::fs::read_dir(results) else {
        return;
    };
    let prefix = format!("{name}-");
    let mut studies: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file_name = entry.file_name().to_string_lossy().to_string();
            let stamp = file_name.strip_prefix(&prefix)?.parse::<u64>().ok()?;
            entry.path().is_dir().then(|| (stamp, entry.path()))
        })
        .collect();
    studies.sort();
    let excess = studies.len().saturating_sub(keep);
    for (_, old) in studies.into_iter().take(excess) {
        if let Err(e) = std::fs::remove_dir_all(&old) {
            tracing::warn!("removing the old study {}: {e}", old.display());
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_studies_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for stamp in [5, 1, 3, 4, 2] {
            std::fs::create_dir(dir.path().join(format!("prod-{stamp}"))).unwrap();
        }
        std::fs::create_dir(dir.path().join("shadow")).unwrap();
        std::fs::write(dir.path().join("decisions.jsonl"), "").unwrap();
        prune_old_studies(dir.path(), "prod", 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["decisions.jsonl", "prod-4", "prod-5", "shadow"]);
    }
}
