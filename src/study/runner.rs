//! Running one trial: move the server to a deployment state (nothing, a live
//! change, or a restart — whichever the parsed difference needs), wait until
//! it is ready, drive the study's workload through it, measure, and turn the
//! measurement into a journal entry. Also the server's final state when the
//! study ends.
//!
//! The runner knows what the server runs (`deployed`); None means unknown
//! (a resumed study, a server found down), and the next move restarts.
//! Before each move the server's readiness is checked, so a server that died
//! between trials is started again rather than sent live changes it cannot
//! take. A failed move is a failed trial, not an error of the study.
//!
//! In a stack study the runner also runs the gateway (`gateway.rs`): load
//! enters through it, its memory counts with TorchServe's, and a move
//! restarts it when its settings change or TorchServe restarted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::apply::converge::{converge, converge_torchserve, Plan, Purpose, Way};
use crate::apply::state::Deployment;
use crate::bench::soak::{run_soak, SoakReport};
use crate::bench::{measure_traffic, torchserve_endpoint, Measurement, ServerProbe};
use crate::load::{LoadPlan, Progress, TrafficReport, Workload};
use crate::objective::{Constraints, Figures, ModelLimits};
use crate::server::TorchServe;
use crate::space::{Current, Space};
use crate::trial::{Entry, Switch, TrialKind};

use super::clock::Clock;
use super::estimator::encode_histogram;
use super::gateway::StudyGateway;
use super::server_snapshot::{what_was_lost, Snapshot};
use super::testbed::point_values;
pub use super::testbed::{Subject, TrialResult};

/// Extra warm-up after a restart: TorchServe's JVM compiles its hot paths
/// during the first seconds of traffic (measured: the first run after a
/// start is 25–40 % slower; see README, repeatability).
pub const RESTART_WARMUP: Duration = Duration::from_secs(5);

/// Parameter → value of a subject, for the journal's readers (the
/// baseline's as its config sets them).
pub fn values_of(space: &Space, subject: &Subject, original: &Deployment, model: &str) -> BTreeMap<String, String> {
    match subject {
        Subject::Point(point) => point_values(space, point),
        Subject::Baseline => space
            .parameters
            .iter()
            .filter_map(|p| {
                let value = match original.current(&p.targets[0], model) {
                    Current::Set(text) => text,
                    Current::Unset => format!("(unset: {})", p.levels[p.default_level]),
                    Current::Unknown => return None,
                };
                Some((p.name.clone(), value))
            })
            .collect(),
    }
}

pub struct Runner {
    pub server: TorchServe,
    config_path: PathBuf,
    model: String,
    /// Every model the study tunes (whose workers a trial watches).
    models: Vec<String>,
    /// The deployment before the study.
    pub original: Deployment,
    /// What the server runs now (None: unknown).
    deployed: Option<Deployment>,
    workload: Workload,
    token: CancellationToken,
    /// The gateway in front, in a stack study.
    gateway: Option<StudyGateway>,
    /// Real time, from when the runner was made.
    clock: Clock,
}

impl Runner {
    pub fn new(
        server: TorchServe,
        model: &str,
        original: Deployment,
        workload: Workload,
        token: CancellationToken,
    ) -> Self {
        Self {
            config_path: server.spec().config.clone(),
            server,
            model: model.to_string(),
            models: vec![model.to_string()],
            original,
            deployed: None,
            workload,
            token,
            gateway: None,
            clock: Clock::wall(),
        }
    }

    /// Watches the workers of every one of `models` (a study of several).
    pub fn with_models(mut self, models: &[String]) -> Self {
        self.models = models.to_vec();
        self
    }

    /// Puts `gateway` in front: load goes through it.
    pub fn with_gateway(mut self, gateway: StudyGateway) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// The gateway's config file (a stack study).
    pub fn gateway_config_path(&self) -> Option<PathBuf> {
        self.gateway.as_ref().map(|g| g.config_path().to_path_buf())
    }

    /// The file name of the gateway's config (a stack study).
    pub fn gateway_config_name(&self) -> String {
        self.gateway
            .as_ref()
            .and_then(|g| g.config_path().file_name())
            .map_or_else(|| "tensorzero.toml".into(), |n| n.to_string_lossy().into_owned())
    }

    /// The model the study tunes.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Real time, from when the runner was made.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    pub fn config_dir(&self) -> &Path {
        self.config_path.parent().unwrap_or(Path::new("."))
    }

    /// What runs now, if known.
    pub fn deployed(&self) -> Option<&Deployment> {
        self.deployed.as_ref()
    }

    /// The level each parameter of `space` runs at now (all None when unknown).
    pub fn running_levels(&self, space: &Space) -> Vec<Option<usize>> {
        match &self.deployed {
            Some(deployed) => deployed.running_levels(space, &self.model),
            None => vec![None; space.dimensions()],
        }
    }

    /// The deployment state that runs `subject`.
    pub fn deployment_of(&self, space: &Space, subject: &Subject) -> Result<Deployment, String> {
        match subject {
            Subject::Baseline => Ok(self.original.clone()),
            Subject::Point(point) => Deployment::realize(&self.original, space, point, &self.model, self.config_dir()),
        }
    }

    /// Makes sure the server is up before the study; returns whether it
    /// had to start it (its JIT is then cold). A fresh study takes a ready
    /// server to run the config file as it is; a resumed one does not know
    /// what runs, so its first move restarts.
    pub async fn start(&mut self, resumed: bool) -> anyhow::Result<bool> {
        let started = self.start_torchserve(resumed).await?;
        if let (Some(gateway), Some(state)) = (self.gateway.as_mut(), &self.original.gateway) {
            gateway
                .begin(state, &self.server)
                .await
                .context("starting the TensorZero gateway on its config")?;
        }
        Ok(started)
    }

    async fn start_torchserve(&mut self, resumed: bool) -> anyhow::Result<bool> {
        if self.server.is_ready().await {
            self.deployed = (!resumed).then(|| self.original.clone());
            return Ok(false);
        }
        if self.server.spec().control.starts_server() {
            // Not running (or not ready): one start on the original, bounded
            // by ready_timeout — the final plan: a restart on it, no
            // rollback and second start (there is nothing running to go
            // back to, and the final restore puts the files back).
            let original = self.original.clone();
            converge_torchserve(&self.server, &mut self.deployed, &original, Plan::FINAL)
                .await
                .context("starting TorchServe for the study")?;
        } else {
            self.server.wait_ready().await.context("TorchServe is not ready")?;
            self.deployed = (!resumed).then(|| self.original.clone());
        }
        Ok(true)
    }

    /// Moves the server to `target` (`apply::converge`); returns how, and
    /// how long it took.
    pub async fn move_to(&mut self, target: &Deployment) -> anyhow::Result<(Switch, Duration)> {
        let gateway = self.gateway.as_mut();
        let moved = converge(&self.server, &mut self.deployed, target, Plan::TRIAL, gateway).await?;
        Ok((moved.switch, moved.took))
    }

    /// The study's workload over a window (`warmup`, `duration`, capped at
    /// `max_window` when adaptive), planned against what serves it now
    /// (TorchServe, or the gateway in front), and that server's probe.
    async fn plan_window(
        &self,
        warmup: Duration,
        duration: Duration,
        max_window: Option<Duration>,
    ) -> anyhow::Result<(LoadPlan, ServerProbe)> {
        let mut served = torchserve_endpoint(&self.server, Some(&self.model)).await?;
        if let Some(gateway) = &self.gateway {
            served.url = gateway.url().context("the gateway is not running")?;
            served.headers.clear();
            served.probe.also.extend(gateway.pid());
        }
        let mut workload = self.workload.with_window(warmup, duration);
        workload.verification = served.verification.clone();
        if let (Some(rule), Some(max)) = (workload.stability.as_mut(), max_window) {
            rule.max_window = max;
        }
        let plan = workload.plan(&served.url, &served.headers).await?;
        Ok((plan, served.probe))
    }

    /// Measures what runs now with the study's workload; with a replay's or
    /// a profile's own figures (per model, at the peak).
    pub async fn measure(
        &self,
        warmup: Duration,
        duration: Duration,
        max_window: Option<Duration>,
    ) -> anyhow::Result<(Measurement, TrafficReport)> {
        let (plan, probe) = self.plan_window(warmup, duration, max_window).await?;
        Ok(measure_traffic(plan, &probe, self.token.clone(), Arc::new(Progress::default())).await?)
    }

    /// Moves to `target` and holds the study's load on it for `length`
    /// (`bench --soak`): memory growth, throughput and p99 drift, errors.
    pub async fn soak(&mut self, target: &Deployment, length: Duration) -> anyhow::Result<SoakReport> {
        self.move_to(target).await.context("moving to the config to soak")?;
        let (mut plan, probe) = self.plan_window(RESTART_WARMUP, length, None).await?;
        plan.stability = None;
        let progress = Arc::new(Progress::default());
        let soaked = run_soak(plan, length, "soak", &probe, self.token.clone(), progress).await?;
        Ok(soaked.report)
    }

    /// Moves to `target` and measures it; a failure of either is the trial's.
    pub async fn run(
        &mut self,
        target: &Deployment,
        warmup: Duration,
        duration: Duration,
        max_window: Option<Duration>,
    ) -> TrialResult {
        let mut incidents = Vec::new();
        if self.deployed.is_some() && !self.server.is_ready().await {
            incidents.push("TorchServe was not ready before this trial (after the previous one); restarted".into());
        }
        let (switch, switch_time) = match self.move_to(target).await {
            Ok(moved) => moved,
            Err(e) => {
                return TrialResult {
                    switch: Switch::Restart,
                    switch_s: 0.0,
                    measurement: Err(format!("{e:#}")),
                    incidents,
                    server_lost: None,
                    models: Default::default(),
                    peak: None,
                }
            }
        };
        let warmup = warmup
            + if switch == Switch::Restart {
                RESTART_WARMUP
            } else {
                Duration::ZERO
            };
        let before = self.snapshot().await;
        #[cfg(feature = "failpoints")]
        let _chaos = kill_midway(&before, warmup + duration / 2);
        let measured = self
            .measure(warmup, duration, max_window)
            .await
            .map_err(|e| format!("measuring: {e:#}"));
        // Whether the window measured failed or not: a server that lost a
        // process during it says nothing about the candidate either way.
        let server_lost = what_was_lost(&before, &self.snapshot().await);
        incidents.extend(server_lost.clone());
        let (measurement, traffic) = match measured {
            Ok((measurement, traffic)) => (Ok(measurement), traffic),
            Err(e) => (Err(e), TrafficReport::default()),
        };
        TrialResult {
            switch,
            switch_s: switch_time.as_secs_f64(),
            measurement,
            incidents,
            server_lost,
            models: traffic.models,
            peak: traffic.peak,
        }
    }

    /// The server's processes now: its JVM and the model's workers.
    async fn snapshot(&self) -> Snapshot {
        Snapshot {
            jvm: self.server.running_jvm(),
            workers: self.workers().await,
        }
    }

    /// The models' workers: pid and status, by pid (empty when they cannot
    /// be read). A killed worker shows first as UNLOADING with its old pid,
    /// and only later (TorchServe backs off) as a new pid.
    async fn workers(&self) -> Vec<(i64, String)> {
        let Ok(api) = self.server.api() else {
            return Vec::new();
        };
        let mut workers: Vec<(i64, String)> = Vec::new();
        for model in &self.models {
            if let Ok(status) = api.describe_model(model).await {
                workers.extend(status.workers.iter().map(|w| (w.pid.unwrap_or(0), w.status.clone())));
            }
        }
        workers.sort();
        workers
    }

    /// Puts `target` on disk and the server on it: nothing or a live change
    /// when only live settings differ from what runs (and it is ready), a
    /// restart otherwise or when the live change fails. A stack's gateway
    /// was servetune's own: it stops, and its config file is `target`'s.
    pub async fn finish_on(&mut self, target: &Deployment) -> anyhow::Result<()> {
        let gateway = self.gateway.as_mut();
        converge(&self.server, &mut self.deployed, target, Plan::FINAL, gateway).await?;
        Ok(())
    }

    /// Puts `target` on disk and leaves the server down: stopped when
    /// `stop` (it was stopped before the study), not touched when it never
    /// came up. A stack's gateway ends as `finish_on` leaves it.
    pub async fn finish_down(&mut self, target: &Deployment, stop: bool) -> anyhow::Result<()> {
        let gateway = self.gateway.as_mut();
        let plan = Plan {
            way: Way::Down { stop },
            purpose: Purpose::Final,
        };
        converge(&self.server, &mut self.deployed, target, plan, gateway).await?;
        Ok(())
    }
}

/// The figures the objective judges.
pub fn figures_of(m: &Measurement) -> Figures {
    Figures {
        throughput_rps: m.load.throughput_rps,
        p50_ms: m.load.latency_ms.p50,
        p99_ms: m.load.latency_ms.p99,
        error_rate: m.load.error_rate,
        memory_mb: m.memory_mb.map_or(0.0, |mem| mem.pss_mean),
        model_excess: 0.0,
    }
}

/// What identifies a journal line besides its measurement.
pub struct EntryContext<'a> {
    pub number: usize,
    pub kind: TrialKind,
    pub subject: &'a Subject,
    pub values: BTreeMap<String, String>,
    pub round: Option<u32>,
    pub elapsed: Duration,
}

/// The journal line of a trial, judged by `constraints`.
pub fn entry_of(
    context: EntryContext<'_>,
    result: &TrialResult,
    constraints: &Constraints,
    model_limits: &ModelLimits,
) -> Entry {
    let measurement = result.measurement.as_ref().ok();
    let figures = measurement.map(|m| Figures {
        model_excess: model_limits.excess(|model| result.models.get(model).map(|f| (f.p99_ms, f.error_rate))),
        ..figures_of(m)
    });
    let (loss, feasible) = match &figures {
        Some(f) => (constraints.loss(f), constraints.feasible(f)),
        None => (crate::search::FAILED_LOSS, false),
    };
    Entry {
        number: context.number,
        kind: context.kind,
        point: context.subject.point().cloned(),
        values: context.values,
        figures,
        failure: result.measurement.as_ref().err().cloned(),
        loss,
        feasible,
        restarted: result.switch == Switch::Restart,
        throughput_ci95: None,
        duration_s: measurement.map_or(0.0, |m| m.load.duration_s),
        elapsed_s: context.elapsed.as_secs_f64(),
        switch: result.switch,
        switch_s: result.switch_s,
        warmup_s: measurement.map_or(0.0, |m| m.load.warmup_s),
        stability: measurement.and_then(|m| m.load.stability.clone()),
        round: context.round,
        // An empty histogram merges to nothing: the estimator falls back to the figures.
        latency_histogram: measurement
            .filter(|m| !m.load.histogram.is_empty())
            .and_then(|m| encode_histogram(&m.load.histogram)),
        server_cpu_cores: measurement.and_then(|m| m.memory_mb.map(|mem| mem.cpu_cores)),
        observer_cpu_share: measurement.and_then(|m| m.observer.map(|o| o.cpu_share)),
        incidents: result.incidents.clone(),
        worker: Some(crate::store::worker_id()),
        server_lost: result.server_lost.clone(),
        models: result.models.clone(),
        peak: result.peak.clone(),
        window_of: None,
    }
}

/// Fault injection for the incident tests: when the failpoint
/// `study::kill-worker-mid-window` fires (e.g. `4*off->1*return`), the first
/// worker is SIGKILLed `after` into this trial's measurement; when
/// `study::kill-jvm-mid-window` fires, the JVM is (its workers are left to
/// notice). Done here, not by the test, so that the kill lands inside the
/// window whatever the machine's speed. Each failpoint counts the trials
/// that had the process to kill. The task is aborted when the guard drops.
#[cfg(feature = "failpoints")]
fn kill_midway(before: &Snapshot, after: Duration) -> Option<AbortOnDrop> {
    fn worker_requested() -> bool {
        fail::fail_point!("study::kill-worker-mid-window", |_| true);
        false
    }
    fn jvm_requested() -> bool {
        fail::fail_point!("study::kill-jvm-mid-window", |_| true);
        false
    }
    let worker = before.workers.iter().map(|(pid, _)| *pid as i32).find(|&pid| pid > 0);
    let worker = worker.filter(|_| worker_requested());
    let jvm = before.jvm.filter(|_| jvm_requested());
    let (pid, what) = match (worker, jvm) {
        (_, Some(jvm)) => (jvm, "the JVM"),
        (Some(worker), None) => (worker, "a worker"),
        (None, None) => return None,
    };
    tracing::warn!(
        pid,
        "fault injection: killing {what} {:.1} s into the measurement",
        after.as_secs_f64()
    );
    Some(AbortOnDrop(tokio::spawn(async move {
        tokio::time::sleep(after).await;
        crate::server::process::signal(pid, libc::SIGKILL);
    })))
}

#[cfg(feature = "failpoints")]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

#[cfg(feature = "failpoints")]
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
