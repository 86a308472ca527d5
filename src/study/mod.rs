//! The study: the tuning loop that ties every stage together.
//!
//! Order per trial (fixed): ask → apply (restart when a cold parameter
//! changes, else live) → wait ready → load → measure → score → journal
//! (fsync) → tell. The current config is measured first (the baseline), then
//! TorchServe's defaults (the space's default point), then whatever the
//! strategy proposes, until the budget, the trial limit, the space or a
//! Ctrl-C stops it. The best few are then re-measured longer (confirmation),
//! recommendations are exported, and the server is put back on the original
//! config (or, with `--apply`, on the balanced recommendation).
//!
//! Failed trials (server did not come up, …) are journaled and told to the
//! strategy with `FAILED_LOSS`; only infrastructure faults abort the study.

pub mod journal;
pub mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::apply::{self, Edit};
use crate::bench::{measure_once, Measurement, ServerProbe};
use crate::config::{self, Assignment};
use crate::load::request::read_bodies;
use crate::load::run::resolve;
use crate::load::tls::{tls_target, Verification};
use crate::load::{Arrival, Endpoint, LoadPlan, Progress, RenderedRequests, RequestSpec, Schedule, Stages};
use crate::objective::Figures;
use crate::report::{self, Candidate, Report};
use crate::search::{make_strategy, History, Strategy, Trial, FAILED_LOSS};
use crate::server::{TargetSpec, TorchServe};
use crate::space::{load_space, Point, Space};
use journal::{Entry, Journal, TrialKind};
use settings::{Offered, Settings};

/// Extra warm-up after a restart: TorchServe's JVM compiles its hot paths
/// during the first seconds of traffic (measured: the first run after a
/// start is ~25% slower; see README, repeatability).
const RESTART_WARMUP: Duration = Duration::from_secs(5);

/// Why the search phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Budget,
    MaxTrials,
    Exhausted,
    Interrupted,
}

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

struct Loop<'a> {
    settings: &'a Settings,
    space: Space,
    server: TorchServe,
    config_path: PathBuf,
    original: Vec<u8>,
    journal: Journal,
    entries: Vec<Entry>,
    history: History,
    strategy: Box<dyn Strategy>,
    /// The point the server runs now (None: the original config).
    current: Option<Point>,
    bodies: Vec<Vec<u8>>,
    started: Instant,
    elapsed_before: Duration,
    token: CancellationToken,
    /// Time spent in trials of this run, and their count (for estimates).
    trial_time: Duration,
    trials_run: u32,
}

/// Runs (or resumes) a study; returns the report that was exported.
pub async fn run_study(
    settings: &Settings,
    results: &Path,
    resume: bool,
    apply_best: bool,
    token: CancellationToken,
    on_trial: &(dyn Fn(&TrialUpdate) + Sync),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let space = load_space(&settings.space)?;
    let spec = TargetSpec::load(&settings.target)?;
    let config_path = spec.config.clone();
    let server = TorchServe::new(spec);
    let dir = study_dir(results, &settings.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let journal_path = dir.join("trials.jsonl");
    let (journal, entries) = Journal::open(&journal_path)?;
    if !resume && !entries.is_empty() {
        anyhow::bail!(
            "study '{}' already has {} trials in {}; continue it with --resume {} or choose another name",
            settings.name,
            entries.len(),
            journal_path.display(),
            settings.name
        );
    }
    let source = std::path::absolute(&settings.source).unwrap_or_else(|_| settings.source.clone());
    std::fs::write(source_marker(&dir), source.display().to_string()).context("writing the study's source marker")?;
    // The original config: servetune's backup when a run was cut short.
    let backup = config::file::BackupPaths::of(&config_path).original;
    let original = match std::fs::read(&backup) {
        Ok(bytes) if resume => bytes,
        _ => std::fs::read(&config_path).with_context(|| format!("reading {}", config_path.display()))?,
    };
    config::read_properties(&config_path)?;
    let bodies = match &settings.body {
        Some(path) => read_bodies(path)?,
        None => Vec::new(),
    };
    let elapsed_before = Duration::from_secs_f64(entries.last().map_or(0.0, |e| e.elapsed_s));
    let mut state = Loop {
        settings,
        space,
        server,
        config_path,
        original,
        journal,
        entries: Vec::new(),
        history: History::default(),
        strategy: make_strategy(settings.strategy, settings.seed),
        current: None,
        bodies,
        started,
        elapsed_before,
        token,
        trial_time: Duration::ZERO,
        trials_run: 0,
    };
    for entry in entries {
        state.replay(entry);
    }
    if resume {
        tracing::info!("resuming study {} after {} trials", settings.name, state.entries.len());
    }
    state.ensure_server_up().await?;
    let stop = state.search(on_trial).await?;
    tracing::info!(?stop, trials = state.entries.len(), "search finished");
    state.confirm(on_trial).await?;
    let report = state.finish(&dir, stop, apply_best).await?;
    Ok(report)
}

impl Loop<'_> {
    fn elapsed(&self) -> Duration {
        self.elapsed_before + self.started.elapsed()
    }

    /// Rebuilds history and strategy state from a journaled trial.
    fn replay(&mut self, entry: Entry) {
        if let (TrialKind::Screen, Some(point)) = (entry.kind, &entry.point) {
            let trial = Trial {
                point: point.clone(),
                loss: entry.loss,
            };
            self.history.push(trial.clone());
            self.strategy.tell(&self.space, &trial);
        }
        self.entries.push(entry);
    }

    async fn ensure_server_up(&mut self) -> anyhow::Result<()> {
        if self.server.is_ready().await {
            return Ok(());
        }
        match self.server.spec().control {
            // Not ready: not running, starting, or stopping (a study killed
            // mid-restart). A restart waits for any JVM left and starts afresh.
            crate::server::Control::Managed { .. } => {
                self.server
                    .restart()
                    .await
                    .context("starting TorchServe for the study")?;
            }
            crate::server::Control::RestartCommand { .. } => {
                self.server.wait_ready().await.context("TorchServe is not ready")?;
            }
        }
        Ok(())
    }

    /// Time kept back for confirmation runs (2k at the confirmation window,
    /// k at twice it), the export and the final restart.
    fn reserve_for_confirmation(&self) -> Duration {
        let k = self.settings.confirm_top as u32;
        let overhead = self.settings.warmup + Duration::from_secs(5);
        let first = (self.settings.confirm_duration + overhead) * (2 * k);
        let second = (self.settings.confirm_duration * 2 + overhead) * k;
        first + second + Duration::from_secs(15)
    }

    /// The expected length of the next trial: the mean so far, or a guess.
    fn expected_trial(&self) -> Duration {
        match self.trials_run {
            0 => self.settings.duration + self.settings.warmup + Duration::from_secs(5),
            n => self.trial_time / n,
        }
    }

    async fn search(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<StopReason> {
        if !self.entries.iter().any(|e| e.kind == TrialKind::Baseline) {
            self.run_trial(None, TrialKind::Baseline, self.settings.duration, on_trial)
                .await?;
        }
        loop {
            if self.token.is_cancelled() {
                return Ok(StopReason::Interrupted);
            }
            let screened = self.entries.iter().filter(|e| e.kind == TrialKind::Screen).count();
            if screened >= self.settings.max_trials {
                return Ok(StopReason::MaxTrials);
            }
            if self.elapsed() + self.expected_trial() + self.reserve_for_confirmation() > self.settings.budget {
                return Ok(StopReason::Budget);
            }
            let defaults = self.space.default_point();
            let point = if !self.history.contains(&defaults) {
                defaults
            } else {
                match self.strategy.ask(&self.space, &self.history)? {
                    Some(point) => self.space.normalize(&point),
                    None => return Ok(StopReason::Exhausted),
                }
            };
            if !self
                .run_trial(Some(point), TrialKind::Screen, self.settings.duration, on_trial)
                .await?
            {
                return Ok(StopReason::Interrupted);
            }
        }
    }

    /// Successive halving over measurement length: the best 2k feasible
    /// points (k = `confirm_top`) are re-measured with the confirmation
    /// window, then the best k of those again with twice that window, so the
    /// incumbent and its close challengers are compared on longer runs before
    /// one is recommended. Measurements already journaled (a resumed study)
    /// are not repeated.
    async fn confirm(&mut self, on_trial: &(dyn Fn(&TrialUpdate) + Sync)) -> anyhow::Result<()> {
        let k = self.settings.confirm_top;
        if k == 0 {
            return Ok(());
        }
        let mut ranked: Vec<(Point, f64)> = self
            .history
            .points()
            .filter(|(_, loss)| *loss < 0.0)
            .map(|(p, l)| (p.clone(), l))
            .collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let mut pool: Vec<Point> = ranked.into_iter().take(2 * k).map(|(p, _)| p).collect();
        for (round, keep) in [(1u32, k), (2, 1)] {
            let duration = self.settings.confirm_duration * round;
            for point in pool.clone() {
                if self.token.is_cancelled() {
                    return Ok(());
                }
                if self.confirmed_loss(&point, duration).is_some() {
                    continue;
                }
                let needed = duration + self.settings.warmup + RESTART_WARMUP + Duration::from_secs(15);
                if self.elapsed() + needed > self.settings.budget {
                    tracing::info!("no budget left to confirm more candidates");
                    return Ok(());
                }
                if !self
                    .run_trial(Some(point), TrialKind::Confirm, duration, on_trial)
                    .await?
                {
                    return Ok(());
                }
            }
            pool.sort_by(|a, b| {
                let loss = |p: &Point| self.confirmed_loss(p, duration).unwrap_or(FAILED_LOSS);
                loss(a).total_cmp(&loss(b))
            });
            pool.truncate(keep.max(1));
            if pool.len() <= 1 && round > 1 {
                break;
            }
        }
        Ok(())
    }

    /// The loss of a confirmation run of `point` with window `duration`.
    fn confirmed_loss(&self, point: &Point, duration: Duration) -> Option<f64> {
        self.entries
            .iter()
            .rev()
            .find(|e| {
                e.kind == TrialKind::Confirm
                    && e.point.as_ref() == Some(point)
                    && (e.duration_s - duration.as_secs_f64()).abs() < 0.01
            })
            .map(|e| e.loss)
    }

    /// Applies `point` (None: the original config), measures it, journals and
    /// tells. Returns false when interrupted mid-trial (nothing journaled).
    async fn run_trial(
        &mut self,
        point: Option<Point>,
        kind: TrialKind,
        duration: Duration,
        on_trial: &(dyn Fn(&TrialUpdate) + Sync),
    ) -> anyhow::Result<bool> {
        let trial_started = Instant::now();
        let number = self.entries.len();
        let mut restarted = false;
        let mut failure = None;
        if let Some(point) = &point {
            match self.move_to(point).await {
                Ok(restart) => restarted = restart,
                Err(e) => failure = Some(format!("{e:#}")),
            }
        }
        let mut figures = None;
        let mut ci95 = None;
        if failure.is_none() {
            // After a (re)start the JVM's JIT needs extra warm-up; the
            // baseline gets it too, since the server may have just started.
            let cold = restarted || kind == TrialKind::Baseline;
            let warmup = self.settings.warmup + if cold { RESTART_WARMUP } else { Duration::ZERO };
            match self.measure(warmup, duration).await {
                Ok(measurement) => {
                    if self.token.is_cancelled() {
                        return Ok(false);
                    }
                    ci95 = throughput_ci95(&measurement);
                    figures = Some(figures_of(&measurement));
                }
                Err(e) => failure = Some(format!("measuring: {e:#}")),
            }
        }
        let (loss, feasible) = match &figures {
            Some(f) => (self.settings.constraints.loss(f), self.settings.constraints.feasible(f)),
            None => (FAILED_LOSS, false),
        };
        let values: BTreeMap<String, String> = match &point {
            Some(p) => self
                .space
                .values(p)
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            None => BTreeMap::new(),
        };
        let entry = Entry {
            number,
            kind,
            point: point.clone(),
            values,
            figures,
            failure: failure.clone(),
            loss,
            feasible,
            restarted,
            throughput_ci95: ci95,
            duration_s: duration.as_secs_f64(),
            elapsed_s: self.elapsed().as_secs_f64(),
        };
        self.journal.append(&entry)?;
        if let (TrialKind::Screen, Some(point)) = (kind, &point) {
            let trial = Trial {
                point: point.clone(),
                loss,
            };
            self.history.push(trial.clone());
            self.strategy.tell(&self.space, &trial);
        }
        self.entries.push(entry);
        self.trial_time += trial_started.elapsed();
        self.trials_run += 1;
        let description = match (&point, kind) {
            (Some(p), TrialKind::Confirm) => format!("confirm {}", self.space.describe(p)),
            (Some(p), _) => self.space.describe(p),
            (None, _) => "baseline (the config as it was)".to_string(),
        };
        if let Some(reason) = &failure {
            tracing::warn!(trial = number, "{description}: failed: {reason}");
        }
        on_trial(&TrialUpdate {
            number,
            description,
            figures,
            feasible,
            best: self.best_figures(),
            elapsed: self.elapsed(),
            budget: self.settings.budget,
        });
        Ok(true)
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

    /// Moves the server to `point`: a restart when a cold parameter changes
    /// (or nothing is known of the running config), live changes otherwise.
    async fn move_to(&mut self, point: &Point) -> anyhow::Result<bool> {
        let assignments: Vec<Assignment> = self
            .space
            .assignments(point, &self.settings.model)
            .iter()
            .map(|a| a.parse().map_err(|e: String| anyhow::anyhow!("space target {a}: {e}")))
            .collect::<Result<_, _>>()?;
        let restart = match &self.current {
            None => true,
            Some(current) => self.space.needs_restart(current, point),
        };
        let edit = Edit::prepare(&self.config_path, &assignments)?;
        if restart {
            apply::apply_with_restart(&self.server, edit).await?;
        } else {
            let current = self.current.clone().expect("restart when unknown");
            let model = &self.settings.model;
            let changed: Vec<Assignment> = self
                .space
                .parameters
                .iter()
                .enumerate()
                .filter(|(i, _)| current[*i] != point[*i])
                .flat_map(|(i, parameter)| {
                    let value = parameter.levels[point[i]].to_string();
                    parameter
                        .targets
                        .iter()
                        .map(move |t| format!("{}={value}", t.replace("{model}", model)))
                })
                .map(|a| a.parse().map_err(|e: String| anyhow::anyhow!("space target {a}: {e}")))
                .collect::<Result<_, _>>()?;
            if changed.is_empty() {
                edit_only(edit)?;
            } else {
                apply::apply_hot(&self.server, edit, &changed).await?;
            }
        }
        self.current = Some(point.clone());
        Ok(restart)
    }

    async fn measure(&self, warmup: Duration, duration: Duration) -> anyhow::Result<Measurement> {
        let api = self.server.api()?;
        let endpoint = Endpoint::parse(&format!(
            "{}/predictions/{}",
            api.endpoints().inference.base_url(),
            self.settings.model
        ))?;
        let mut headers = Vec::new();
        if let Some(key) = api.inference_key()? {
            headers.push(("Authorization".to_string(), format!("Bearer {key}")));
        }
        let spec = RequestSpec {
            method: "POST".into(),
            endpoint: endpoint.clone(),
            headers,
            content_type: Some("application/octet-stream".into()),
            bodies: self.bodies.clone(),
        };
        let schedule = match self.settings.offered {
            Offered::Users(users) => Schedule::Closed {
                stages: Stages::constant(users, warmup + duration),
                think_time: Duration::ZERO,
            },
            Offered::Rate(rate) => Schedule::Open {
                rate_per_s: rate,
                arrival: Arrival::Constant,
            },
        };
        // servetune manages this server: a self-signed certificate is expected.
        let tls = endpoint
            .tls
            .then(|| tls_target(&endpoint.host, Verification::Insecure))
            .transpose()?
            .map(Arc::new);
        let plan = LoadPlan {
            tls,
            address: resolve(&endpoint.host, endpoint.port).await?,
            requests: Arc::new(RenderedRequests::render(&spec)),
            schedule,
            warmup,
            duration,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 256,
            threads: 1,
            seed: self.settings.seed,
        };
        let probe = ServerProbe {
            pid: self.server.running_jvm(),
            metrics_url: Some(api.endpoints().metrics.base_url()),
        };
        Ok(measure_once(plan, &probe, self.token.clone(), Arc::new(Progress::default())).await?)
    }

    /// Exports the report, then puts the server back on the original config
    /// (or the balanced recommendation with `apply_best`).
    async fn finish(&mut self, dir: &Path, stop: StopReason, apply_best: bool) -> anyhow::Result<Report> {
        let candidates = self.candidates();
        let baseline = self
            .entries
            .iter()
            .find(|e| e.kind == TrialKind::Baseline)
            .and_then(|e| e.figures);
        let defaults_point = self.space.default_point();
        let defaults = candidates.iter().find(|c| c.point == defaults_point).map(|c| c.figures);
        let report = report::build(report::Inputs {
            settings: self.settings,
            space: &self.space,
            original_config: &self.original,
            config_name: self
                .config_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            entries: &self.entries,
            candidates,
            baseline,
            defaults,
            stop,
            elapsed: self.elapsed(),
        })?;
        report::export(&report, dir)?;
        let balanced = report
            .recommendation(crate::objective::Tier::Balanced)
            .map(|r| r.config.clone());
        let mut file = config::ConfigFile::read(&self.config_path)?;
        match (apply_best, balanced) {
            (true, Some(config)) => {
                file.write(&config)?;
                tracing::info!("applying the balanced recommendation to {}", self.config_path.display());
            }
            (true, None) => {
                tracing::warn!("no feasible recommendation to apply; restoring the original config")
            }
            _ => {}
        }
        if !apply_best || report.recommendation(crate::objective::Tier::Balanced).is_none() {
            file.write(&self.original)?;
            let _ = config::restore(&self.config_path, false);
        }
        self.server
            .restart()
            .await
            .context("restarting TorchServe on the final config")?;
        self.current = None;
        Ok(report)
    }

    /// Each evaluated point with its best estimate: the window-weighted mean
    /// of its confirmation runs if there are any, else of its screening runs.
    fn candidates(&self) -> Vec<Candidate> {
        let mut by_point: BTreeMap<Point, Estimates> = BTreeMap::new();
        for entry in &self.entries {
            let (Some(point), Some(figures)) = (&entry.point, entry.figures) else {
                continue;
            };
            let slot = by_point.entry(point.clone()).or_default();
            let run = (figures, entry.throughput_ci95, entry.duration_s);
            match entry.kind {
                TrialKind::Confirm => slot.1.push(run),
                _ => slot.0.push(run),
            }
        }
        by_point
            .into_iter()
            .filter_map(|(point, (screens, confirms))| {
                let confirmed = !confirms.is_empty();
                let runs = if confirmed { confirms } else { screens };
                if runs.is_empty() {
                    return None;
                }
                let (figures, ci95) = combine(&runs);
                Some(Candidate {
                    description: self.space.describe(&point),
                    point,
                    figures,
                    throughput_ci95: ci95,
                    confirmed,
                })
            })
            .collect()
    }
}

/// One run of a point: its figures, throughput CI and window (s).
type Run = (Figures, Option<f64>, f64);
/// A point's screening runs and its confirmation runs.
type Estimates = (Vec<Run>, Vec<Run>);

/// The window-weighted mean of runs, and the CI of that mean (runs'
/// intervals combined as independent estimates).
fn combine(runs: &[Run]) -> (Figures, Option<f64>) {
    let total: f64 = runs.iter().map(|r| r.2).sum::<f64>().max(1e-9);
    let mean = |f: fn(&Figures) -> f64| runs.iter().map(|r| f(&r.0) * r.2).sum::<f64>() / total;
    let figures = Figures {
        throughput_rps: mean(|f| f.throughput_rps),
        p50_ms: mean(|f| f.p50_ms),
        p99_ms: mean(|f| f.p99_ms),
        error_rate: mean(|f| f.error_rate),
        memory_mb: mean(|f| f.memory_mb),
    };
    let variance: Option<f64> = runs.iter().map(|r| r.1.map(|ci| (ci * r.2 / total).powi(2))).sum();
    (figures, variance.map(f64::sqrt))
}

fn edit_only(mut edit: Edit) -> anyhow::Result<()> {
    edit.write()?;
    Ok(())
}

fn figures_of(m: &Measurement) -> Figures {
    Figures {
        throughput_rps: m.load.throughput_rps,
        p50_ms: m.load.latency_ms.p50,
        p99_ms: m.load.latency_ms.p99,
        error_rate: m.load.error_rate,
        memory_mb: m.memory_mb.map_or(0.0, |mem| mem.pss_mean),
    }
}

/// 95% half-width of throughput from per-second batch means of the window.
fn throughput_ci95(m: &Measurement) -> Option<f64> {
    let seconds: Vec<f64> = m
        .load
        .timeline
        .iter()
        .filter(|s| !s.warmup)
        .map(|s| s.ok as f64)
        .collect();
    // The last second may be partial (the drain); leave it out.
    let seconds = &seconds[..seconds.len().saturating_sub(1)];
    if seconds.len() < 3 {
        return None;
    }
    let n = seconds.len() as f64;
    let mean = seconds.iter().sum::<f64>() / n;
    let variance = seconds.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some(1.96 * variance.sqrt() / n.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(throughput_rps: f64, p99_ms: f64) -> Figures {
        Figures {
            throughput_rps,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            error_rate: 0.0,
            memory_mb: 100.0,
        }
    }

    #[test]
    fn runs_combine_by_window_length() {
        let (f, ci) = combine(&[
            (figures(100.0, 10.0), Some(10.0), 5.0),
            (figures(200.0, 20.0), Some(6.0), 15.0),
        ]);
        assert!((f.throughput_rps - 175.0).abs() < 1e-9);
        assert!((f.p99_ms - 17.5).abs() < 1e-9);
        // sqrt((10 * 0.25)^2 + (6 * 0.75)^2)
        assert!((ci.unwrap() - (6.25f64 + 20.25).sqrt()).abs() < 1e-9);
        let (_, none) = combine(&[(figures(1.0, 1.0), None, 1.0), (figures(1.0, 1.0), Some(1.0), 1.0)]);
        assert_eq!(none, None, "a run without an interval leaves the mean without one");
    }
}
