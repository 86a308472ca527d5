//! One deployment's watcher: it follows production — the access log every
//! second (live figures, the schedule, drift, the SLO), production's health
//! and metrics every 5 s, the model's versions every 30 s — and publishes
//! what it sees: triggers to the cycle runner's queue, the live figures on a
//! `watch` channel, and every access line on a `broadcast` channel (a
//! canary's before and probation windows subscribe to it). It owns its state
//! and its loops; the cycle runner tells it only `CycleState` (a cycle runs,
//! a decision was taken), and it never calls the cycle runner back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::access_log::{AccessLine, Follower};
use super::config::{DeploymentConfig, Mode, Triggers};
use super::live::{self, LiveFigures, LiveWindow, MetricsSample};
use super::status::Shared;
use super::trigger::Trigger;
use crate::load::tls::Verification;
use crate::server::TorchServe;

/// How long the live window looks back.
pub const LIVE_SPAN: Duration = Duration::from_secs(60);

/// Access lines read in one round.
pub type Lines = Arc<Vec<AccessLine>>;

/// Rounds of lines a slow subscriber may fall behind before it misses some.
const LINE_BACKLOG: usize = 64;

/// What the cycle runner tells the watcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleState {
    /// A cycle runs: drift and the SLO are not judged meanwhile, and a
    /// trigger shows in `/status` as queued.
    pub busy: bool,
    /// Decisions taken so far: each makes the live figures of the moment
    /// the reference drift is measured from.
    pub decisions: u64,
}

/// What the watcher publishes about live traffic.
#[derive(Clone)]
pub struct LiveFeed {
    /// The live window's figures, renewed every second.
    pub figures: watch::Receiver<LiveFigures>,
    lines: broadcast::Sender<Lines>,
}

impl LiveFeed {
    /// Every access line read from now on, one round at a time.
    pub fn subscribe(&self) -> broadcast::Receiver<Lines> {
        self.lines.subscribe()
    }
}

/// The watcher's access-log side: the follower, the live window, the last
/// scheduled run, and drift's reference and how long drift or a broken SLO
/// has lasted.
pub struct Watch {
    follower: Follower,
    window: LiveWindow,
    last_schedule: Option<SystemTime>,
    reference: Option<LiveFigures>,
    /// `CycleState::decisions` when the reference was last reset.
    decisions_seen: u64,
    drift_since: Option<Instant>,
    slo_since: Option<Instant>,
}

/// What the server side of the watcher keeps: production's health, its
/// last metrics sample and the model's known versions. Its calls go over
/// the network, so it runs apart from the access-log reading, which must
/// never wait on a busy server.
pub struct ServerWatch {
    production_up: bool,
    metrics: Option<MetricsSample>,
    /// One client for the metrics endpoint, kept while the target's TLS
    /// setting stays the same.
    http: Option<(Verification, reqwest::Client)>,
    versions: Option<Vec<String>>,
}

impl Default for ServerWatch {
    fn default() -> Self {
        Self {
            production_up: true,
            metrics: None,
            http: None,
            versions: None,
        }
    }
}

impl ServerWatch {
    pub async fn server_times(&mut self, production: &TorchServe, model: &str) -> Option<live::ServerTimes> {
        let url = format!("{}/metrics", production.endpoints().ok()?.metrics.base_url());
        let text = self
            .metrics_client(&production.spec().tls)?
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let sample = live::parse_metrics(&text, Some(model))?;
        let times = self.metrics.map(|before| live::per_request(&before, &sample));
        self.metrics = Some(sample);
        times
    }

    /// The metrics client for `verification` (made again when it changes).
    fn metrics_client(&mut self, verification: &Verification) -> Option<reqwest::Client> {
        match &self.http {
            Some((kept, client)) if kept == verification => Some(client.clone()),
            _ => {
                let client = crate::server::tls::http_client(verification, Duration::from_secs(3))
                    .map_err(|e| tracing::warn!("metrics: {e}"))
                    .ok()?;
                self.http = Some((verification.clone(), client.clone()));
                Some(client)
            }
        }
    }

    pub async fn new_model_version(&mut self, config: &DeploymentConfig) -> Option<Trigger> {
        let api = TorchServe::new(config.target.clone()).api().ok()?;
        let versions = api.model_versions(&config.settings.model).await.ok()?;
        let known = self.versions.replace(versions.clone())?;
        let added: Vec<&String> = versions.iter().filter(|v| !known.contains(v)).collect();
        (!added.is_empty()).then(|| Trigger::ModelVersion(format!("{} {:?}", config.settings.model, added)))
    }
}

impl Watch {
    pub fn new(access_log: PathBuf) -> Self {
        Self {
            follower: Follower::new(access_log),
            window: LiveWindow::new(LIVE_SPAN),
            last_schedule: None,
            reference: None,
            decisions_seen: 0,
            drift_since: None,
            slo_since: None,
        }
    }

    /// The lines added to the access log since the last round (recorded in
    /// the live window), and the window's figures now.
    pub fn read_log(&mut self) -> (Vec<AccessLine>, LiveFigures) {
        let now = Instant::now();
        let lines = match self.follower.poll() {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!("reading {}: {e}", self.follower.path().display());
                Vec::new()
            }
        };
        for line in &lines {
            self.window.record(now, line);
        }
        (lines, self.window.figures(now))
    }

    /// After a decision, drift is measured from the figures of the moment.
    pub fn rebase_after(&mut self, cycle: CycleState, now: &LiveFigures) {
        if cycle.decisions != self.decisions_seen {
            self.decisions_seen = cycle.decisions;
            self.reference = Some(now.clone());
        }
    }

    pub fn next_scheduled(&self, config: &DeploymentConfig) -> Option<SystemTime> {
        let schedule = config.triggers.schedule.as_ref()?;
        let from = match self.last_schedule {
            Some(last) => last + Duration::from_secs(1),
            None => SystemTime::now(),
        };
        schedule.next_after(from)
    }

    /// Drift from the reference figures, or the SLO broken, for long enough.
    pub fn judge_drift(&mut self, triggers: &Triggers, now: &LiveFigures) -> Option<Trigger> {
        let reference = &mut self.reference;
        if reference.is_none() && now.window_s >= LIVE_SPAN.as_secs_f64() {
            *reference = Some(now.clone());
        }
        let moved = |was: f64, is: f64, fraction: Option<f64>| {
            fraction.is_some_and(|f| was > 0.0 && ((is - was) / was).abs() > f)
        };
        if let (Some(drift), Some(was)) = (&triggers.drift, reference.as_ref()) {
            let rate_moved = moved(was.rate_rps, now.rate_rps, drift.rate);
            let p99_moved = match (was.p99_ms, now.p99_ms) {
                (Some(a), Some(b)) => moved(a, b, drift.p99),
                _ => false,
            };
            match (rate_moved || p99_moved, self.drift_since) {
                (false, _) => self.drift_since = None,
                (true, None) => self.drift_since = Some(Instant::now()),
                (true, Some(since)) if since.elapsed() >= drift.lasting => {
                    self.drift_since = None;
                    let what = format!(
                        "live traffic drifted: {:.1} -> {:.1} req/s, p99 {:?} -> {:?} ms",
                        was.rate_rps, now.rate_rps, was.p99_ms, now.p99_ms
                    );
                    *reference = Some(now.clone());
                    return Some(Trigger::Drift(what));
                }
                _ => {}
            }
        }
        if let Some(slo) = &triggers.slo {
            let broken = now.p99_ms.is_some_and(|p99| p99 > slo.p99_ms);
            match (broken, self.slo_since) {
                (false, _) => self.slo_since = None,
                (true, None) => self.slo_since = Some(Instant::now()),
                (true, Some(since)) if since.elapsed() >= slo.lasting => {
                    self.slo_since = None;
                    return Some(Trigger::Slo(format!(
                        "live p99 {:.1} ms above the SLO {} ms",
                        now.p99_ms.unwrap_or_default(),
                        slo.p99_ms
                    )));
                }
                _ => {}
            }
        }
        None
    }
}

/// One deployment's watcher: what it reads and where it publishes.
struct Watcher {
    name: String,
    config: watch::Receiver<DeploymentConfig>,
    cycle: watch::Receiver<CycleState>,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Trigger>,
}

/// Starts the watcher of the deployment `config` names; it fires triggers
/// into `queue` and ends when `stop` is cancelled. Returns its live feed.
pub fn spawn(
    config: watch::Receiver<DeploymentConfig>,
    cycle: watch::Receiver<CycleState>,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Trigger>,
    stop: CancellationToken,
) -> (LiveFeed, tokio::task::JoinHandle<()>) {
    let (figures_sender, figures) = watch::channel(LiveFigures::default());
    let (lines, _) = broadcast::channel(LINE_BACKLOG);
    let feed = LiveFeed {
        figures,
        lines: lines.clone(),
    };
    let name = config.borrow().name.clone();
    let watcher = Arc::new(Watcher {
        name,
        config,
        cycle,
        shared,
        queue,
    });
    let task = tokio::spawn(async move {
        let server_side = tokio::spawn(watcher.clone().watch_server(stop.clone()));
        watcher.follow_log(figures_sender, lines, stop).await;
        server_side.abort();
    });
    (feed, task)
}

impl Watcher {
    fn config(&self) -> DeploymentConfig {
        self.config.borrow().clone()
    }

    fn busy(&self) -> bool {
        self.cycle.borrow().busy
    }

    /// Follows the access log once a second until `stop`: the live figures
    /// and lines it publishes, and the triggers they (and the clock) fire.
    async fn follow_log(
        &self,
        figures_sender: watch::Sender<LiveFigures>,
        lines_sender: broadcast::Sender<Lines>,
        stop: CancellationToken,
    ) {
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
            let (lines, figures) = eyes.read_log();
            if !lines.is_empty() {
                // No subscriber (no canary window open) is no error.
                let _ = lines_sender.send(Arc::new(lines));
            }
            figures_sender.send_replace(figures.clone());
            let next = eyes.next_scheduled(&config);
            if let Some(at) = next.filter(|at| *at <= SystemTime::now()) {
                eyes.last_schedule = Some(at);
                self.fire(Trigger::Schedule);
            }
            let cycle = *self.cycle.borrow();
            eyes.rebase_after(cycle, &figures);
            if !cycle.busy {
                if let Some(trigger) = eyes.judge_drift(&config.triggers, &figures) {
                    self.fire(trigger);
                }
            }
            self.shared.with_deployment(&self.name, |d| {
                d.live = figures;
                d.access_log_skipped_lines = eyes.follower.skipped();
                d.next_scheduled_run = next.map(|at| humantime::format_rfc3339_seconds(at).to_string());
            });
        }
    }

    /// Production's health and metrics every 5 s, new model versions every
    /// 30 s; each round bounded so a hung server cannot pile them up.
    async fn watch_server(self: Arc<Self>, stop: CancellationToken) {
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
                    self.fire(trigger);
                }
            }
        }
    }

    /// Queues `trigger`; while a cycle runs, `/status` shows it as queued.
    fn fire(&self, trigger: Trigger) {
        tracing::info!(deployment = %self.name, "trigger: {}", trigger.describe());
        if self.busy() {
            self.shared
                .with_deployment(&self.name, |d| d.queued = Some(trigger.describe()));
        }
        let _ = self.queue.send(trigger);
    }

    async fn check_production(&self, config: &DeploymentConfig, eyes: &mut ServerWatch) {
        let production = TorchServe::new(config.target.clone());
        let up = production.is_ready().await;
        let in_place_study = config.mode == Mode::InPlace && self.busy();
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
        let current = current_config(config);
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

/// Production's effective properties as its file says now.
fn current_config(config: &DeploymentConfig) -> Option<std::collections::BTreeMap<String, String>> {
    let bytes = std::fs::read(&config.target.config).ok()?;
    let props = crate::config::Properties::parse(bytes).ok()?;
    Some(
        props
            .effective()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::{Drift, Slo};

    fn figures(rate: f64, p99: f64) -> LiveFigures {
        LiveFigures {
            window_s: 60.0,
            requests: (rate * 60.0) as u64,
            rate_rps: rate,
            p99_ms: Some(p99),
            ..LiveFigures::default()
        }
    }

    fn triggers(drift: Option<Drift>, slo: Option<Slo>) -> Triggers {
        Triggers {
            schedule: None,
            maintenance_window: None,
            max_live_rps: None,
            drift,
            slo,
            new_model_version: false,
        }
    }

    #[test]
    fn drift_fires_only_when_it_lasts() {
        let mut watch = Watch::new(PathBuf::from("/nonexistent/access_log.log"));
        let policy = triggers(
            Some(Drift {
                rate: Some(0.5),
                p99: None,
                lasting: Duration::from_millis(50),
            }),
            None,
        );
        assert_eq!(
            watch.judge_drift(&policy, &figures(100.0, 10.0)),
            None,
            "sets the reference"
        );
        assert_eq!(watch.judge_drift(&policy, &figures(120.0, 10.0)), None, "a small move");
        assert_eq!(watch.judge_drift(&policy, &figures(200.0, 10.0)), None, "a move starts");
        assert_eq!(
            watch.judge_drift(&policy, &figures(100.0, 10.0)),
            None,
            "and ends: reset"
        );
        assert_eq!(watch.judge_drift(&policy, &figures(200.0, 10.0)), None);
        std::thread::sleep(Duration::from_millis(60));
        let fired = watch.judge_drift(&policy, &figures(210.0, 10.0));
        assert!(
            matches!(fired, Some(Trigger::Drift(ref what)) if what.contains("drifted")),
            "{fired:?}"
        );
        assert_eq!(
            watch.judge_drift(&policy, &figures(210.0, 10.0)),
            None,
            "the new level is the reference"
        );
    }

    #[test]
    fn a_broken_slo_fires_after_its_time() {
        let mut watch = Watch::new(PathBuf::from("/nonexistent/access_log.log"));
        let policy = triggers(
            None,
            Some(Slo {
                p99_ms: 50.0,
                lasting: Duration::from_millis(50),
            }),
        );
        assert_eq!(watch.judge_drift(&policy, &figures(100.0, 80.0)), None);
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(
            watch.judge_drift(&policy, &figures(100.0, 80.0)),
            Some(Trigger::Slo(_))
        ));
        assert_eq!(watch.judge_drift(&policy, &figures(100.0, 20.0)), None);
    }

    #[test]
    fn a_decision_makes_the_figures_of_the_moment_the_drift_reference() {
        let mut watch = Watch::new(PathBuf::from("/nonexistent/access_log.log"));
        let policy = triggers(
            Some(Drift {
                rate: Some(0.5),
                p99: None,
                lasting: Duration::ZERO,
            }),
            None,
        );
        assert_eq!(
            watch.judge_drift(&policy, &figures(100.0, 10.0)),
            None,
            "sets the reference"
        );
        let decided = CycleState {
            busy: false,
            decisions: 1,
        };
        watch.rebase_after(decided, &figures(200.0, 10.0));
        for _ in 0..2 {
            assert_eq!(
                watch.judge_drift(&policy, &figures(210.0, 10.0)),
                None,
                "200 is the reference"
            );
        }
        watch.rebase_after(decided, &figures(100.0, 10.0));
        for _ in 0..2 {
            assert_eq!(
                watch.judge_drift(&policy, &figures(210.0, 10.0)),
                None,
                "the same decision rebases once"
            );
        }
        watch.rebase_after(
            CycleState {
                busy: false,
                decisions: 2,
            },
            &figures(100.0, 10.0),
        );
        assert_eq!(watch.judge_drift(&policy, &figures(210.0, 10.0)), None, "drift starts");
        assert!(matches!(
            watch.judge_drift(&policy, &figures(210.0, 10.0)),
            Some(Trigger::Drift(_))
        ));
    }
}
