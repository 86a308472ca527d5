//! One deployment's life under the daemon: its watcher (`watcher`) follows
//! production and fires triggers; the cycle runner here takes one trigger at
//! a time — study (shadow or in-place, exactly what `tune` runs) → decision
//! → canary with probation → keep or roll back. The canary moves production
//! with `apply::converge` and reads live traffic from the watcher's feed.
//!
//! Files under `<results_dir>/<deployment>/`: the studies, `shadow/`,
//! `decisions.jsonl`, and `daemon-state.json` (the running study's name, so a
//! daemon killed mid-study resumes it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::canary::{self, Action, Decision, DecisionFigures, Verdict};
use super::config::{DeploymentConfig, Mode};
use super::live::{LiveFigures, Tally};
use super::shadow::{self, ShadowFiles};
use super::status::{RunningStudy, Shared};
use super::trigger::Trigger;
use super::watcher::{self, CycleState, LiveFeed};
use crate::apply::converge::{converge_torchserve, Plan, Way};
use crate::apply::state::{Deployment, Transition};
use crate::server::{TargetSpec, TorchServe};
use crate::study::{run_study, Launch, TrialUpdate, WarmFrom};
use crate::trial::Switch;

pub struct Supervisor {
    name: String,
    config: watch::Receiver<DeploymentConfig>,
    results: PathBuf,
    shared: Arc<Shared>,
    /// What the watcher sees of live traffic.
    live: LiveFeed,
    /// What the watcher is told: a cycle runs, a decision was taken.
    cycle: watch::Sender<CycleState>,
    /// Which traffic the running cycle's study measures (its decisions say so).
    traffic: std::sync::Mutex<Option<String>>,
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
    let (queue, triggers) = mpsc::unbounded_channel();
    let (cycle, cycle_receiver) = watch::channel(CycleState::default());
    let (live, watcher) = watcher::spawn(
        config.clone(),
        cycle_receiver,
        shared.clone(),
        queue.clone(),
        stop.clone(),
    );
    let supervisor = Supervisor {
        results: results_dir.join(&name),
        name: name.clone(),
        config,
        shared: shared.clone(),
        live,
        cycle,
        traffic: std::sync::Mutex::new(None),
    };
    shared.open_trigger_queue(&name, queue.clone());
    tokio::spawn(async move {
        if let Some(study) = supervisor.interrupted_study() {
            tracing::info!(deployment = %supervisor.name, study, "resuming the study a previous daemon left running");
            let _ = queue.send(Trigger::Resume(study));
        }
        supervisor.run_cycles(triggers, stop).await;
        watcher.abort();
        supervisor.shared.close_trigger_queue(&supervisor.name, &queue);
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
        crate::config::file::write_data_atomically(&path, &serde_json::to_vec(&state)?)
            .with_context(|| format!("cannot write {}", path.display()))
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
            self.cycle.send_modify(|cycle| cycle.busy = true);
            if let Err(error) = self.cycle(&why, resume, &stop).await {
                tracing::error!(deployment = %self.name, "the cycle failed: {error:#}");
                self.shared
                    .with_deployment(&self.name, |d| d.note = Some(format!("last cycle failed: {error:#}")));
            }
            self.cycle.send_modify(|cycle| cycle.busy = false);
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
        let live = self.live.figures.borrow().rate_rps;
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
        let traffic = config.replay.cycle_traffic(&settings, &config.access_log);
        tracing::info!(deployment = %self.name, "the study measures {}", traffic.description);
        *self.traffic.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(traffic.description.clone());
        if let Some(replayed) = traffic.schedule.clone() {
            // A varying load is measured in fixed windows.
            settings.varying = Some(replayed);
            settings.max_window = None;
        }
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
        let launch = Launch {
            resume: resuming,
            apply_best: false,
            warm_start: (!resuming)
                .then(|| last_study_of(&self.results, &self.name, &study_name))
                .flatten()
                .map(WarmFrom::Earlier),
            prior: None,
        };
        let report = run_study(&settings, &self.results, launch, stop.child_token(), &on_trial).await;
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

    fn decide(&self, mut decision: Decision) -> anyhow::Result<()> {
        if decision.traffic.is_none() {
            decision.traffic = self
                .traffic
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
        }
        tracing::info!(deployment = %self.name, action = ?decision.action, "{}", decision.reason);
        canary::journal(&self.results, &decision)?;
        self.shared.with_deployment(&self.name, |d| {
            let action = serde_json::to_value(decision.action).expect("serialises");
            *d.decisions
                .entry(action.as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            d.last_decision = serde_json::to_value(&decision).ok();
        });
        self.cycle.send_modify(|cycle| cycle.decisions += 1);
        Ok(())
    }

    /// Watches live traffic for `span` (cancellable); the figures seen.
    async fn observe(&self, span: Duration, stop: &CancellationToken) -> LiveFigures {
        let mut lines = self.live.subscribe();
        let mut tally = Tally::new(Instant::now());
        let end = tokio::time::sleep(span);
        tokio::pin!(end);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = &mut end => break,
                round = lines.recv() => match round {
                    Ok(round) => round.iter().for_each(|line| tally.record(line)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(deployment = %self.name, "the canary's window missed {missed} rounds of access lines");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        // The watcher stopped: the daemon stops too.
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = &mut end => {}
                        }
                        break;
                    }
                },
            }
        }
        tally.figures(Instant::now())
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
        // The target file as it is now: an earlier canary may have written
        // its environment.
        let production =
            TorchServe::new(TargetSpec::load(&config.target.source).unwrap_or_else(|_| config.target.clone()));
        let config_path = config.target.config.clone();
        let previous = Deployment {
            config: std::fs::read(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?,
            environment: production.environment(),
            gateway: None,
        };
        let next = shadow::to_production(recommended, &config_path)?;
        if previous.transition_to(&next) == Transition::Nothing {
            return Ok(Decision::new(
                Action::Kept,
                "production already runs the recommendation",
                study,
                figures.clone(),
            ));
        }
        if next.environment != previous.environment && !config.target.control.sets_environment() {
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
        let mut running = Some(previous.clone());
        let moved = match converge_torchserve(&production, &mut running, &next, Plan::deploy(Way::Least)).await {
            Ok(moved) => moved,
            Err(error) => {
                return Ok(Decision::new(
                    Action::Kept,
                    format!("applying the recommendation failed and was rolled back: {error:#}"),
                    study,
                    figures.clone(),
                ))
            }
        };
        self.decide(Decision::new(
            Action::Applied,
            format!(
                "{gain}; applied {}, on probation for {}",
                if moved.switch == Switch::Restart {
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
                let back = converge_torchserve(&production, &mut running, &previous, Plan::deploy(Way::Restart)).await;
                let reason = match back {
                    Ok(_) => format!("{reason}; the previous config is back"),
                    Err(e) => format!("{reason}; putting the previous config back FAILED: {e:#}"),
                };
                Ok(Decision::new(Action::RolledBack, reason, study, figures.clone()))
            }
        }
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

/// The results folder of the deployment's last finished study before
/// `current` (the daemon warm-starts each cycle from it), if any.
fn last_study_of(results: &Path, deployment: &str, current: &str) -> Option<PathBuf> {
    let prefix = format!("{deployment}-");
    let mut finished: Vec<(u64, PathBuf)> = std::fs::read_dir(results)
        .ok()?
        .flatten()
        .filter_map(|dir| {
            let name = dir.file_name().to_string_lossy().into_owned();
            let stamp: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
            let path = dir.path();
            (name != current && path.join("report.json").is_file()).then_some((stamp, path))
        })
        .collect();
    finished.sort();
    finished.pop().map(|(_, path)| path)
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

    #[test]
    fn each_cycle_warm_starts_from_the_deployments_last_finished_study() {
        let results = tempfile::tempdir().unwrap();
        let make = |name: &str, finished: bool| {
            let dir = results.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            if finished {
                std::fs::write(dir.join("report.json"), "{}").unwrap();
            }
        };
        assert_eq!(last_study_of(results.path(), "tiny", "tiny-300"), None);
        make("tiny-100", true);
        make("tiny-200", true);
        make("tiny-250", false);
        make("tinybig-900", true);
        make("other-999", true);
        make("tiny-300", true);
        assert_eq!(
            last_study_of(results.path(), "tiny", "tiny-300"),
            Some(results.path().join("tiny-200")),
            "the newest finished one of this deployment, not the current one"
        );
    }
}
