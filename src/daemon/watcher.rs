//! What the watcher keeps between its one-second rounds: the access-log
//! follower and the live window, production's last metrics sample, the
//! model's known versions, the last scheduled run, and how long drift or a
//! broken SLO has lasted — and the judgement that turns those into
//! triggers.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::access_log::Follower;
use super::config::{DeploymentConfig, Triggers};
use super::live::{self, LiveFigures, LiveWindow, MetricsSample};
use super::supervisor::Eyes;
use super::Trigger;
use crate::load::tls::Verification;
use crate::server::TorchServe;

/// How long the live window looks back.
pub const LIVE_SPAN: Duration = Duration::from_secs(60);

/// The watcher's own state.
pub struct Watch {
    pub follower: Follower,
    window: LiveWindow,
    pub last_schedule: Option<SystemTime>,
    drift_since: Option<Instant>,
    slo_since: Option<Instant>,
}

/// What the server side of the watcher keeps: production's health, its
/// last metrics sample and the model's known versions. Its calls go over
/// the network, so it runs apart from the access-log reading, which must
/// never wait on a busy server.
pub struct ServerWatch {
    pub production_up: bool,
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
            drift_since: None,
            slo_since: None,
        }
    }

    pub fn read_log(&mut self, eyes: &Eyes) -> LiveFigures {
        let now = Instant::now();
        match self.follower.poll() {
            Ok(lines) => {
                let mut probe = eyes.probe.lock().expect("no panics under the lock");
                for line in &lines {
                    self.window.record(now, line);
                    if let Some(tally) = probe.as_mut() {
                        tally.record(line);
                    }
                }
            }
            Err(e) => tracing::warn!("reading {}: {e}", self.follower.path().display()),
        }
        self.window.figures(now)
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
    pub fn judge_drift(&mut self, triggers: &Triggers, now: &LiveFigures, eyes: &Eyes) -> Option<Trigger> {
        let mut reference = eyes.reference.lock().expect("no panics under the lock");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::{Drift, Slo};
    use std::sync::Mutex;

    fn eyes() -> Eyes {
        Eyes {
            probe: Mutex::new(None),
            reference: Mutex::new(None),
            busy: Default::default(),
        }
    }

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
        let eyes = eyes();
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
            watch.judge_drift(&policy, &figures(100.0, 10.0), &eyes),
            None,
            "sets the reference"
        );
        assert_eq!(
            watch.judge_drift(&policy, &figures(120.0, 10.0), &eyes),
            None,
            "a small move"
        );
        assert_eq!(
            watch.judge_drift(&policy, &figures(200.0, 10.0), &eyes),
            None,
            "a move starts"
        );
        assert_eq!(
            watch.judge_drift(&policy, &figures(100.0, 10.0), &eyes),
            None,
            "and ends: reset"
        );
        assert_eq!(watch.judge_drift(&policy, &figures(200.0, 10.0), &eyes), None);
        std::thread::sleep(Duration::from_millis(60));
        let fired = watch.judge_drift(&policy, &figures(210.0, 10.0), &eyes);
        assert!(
            matches!(fired, Some(Trigger::Drift(ref what)) if what.contains("drifted")),
            "{fired:?}"
        );
        assert_eq!(
            watch.judge_drift(&policy, &figures(210.0, 10.0), &eyes),
            None,
            "the new level is the reference"
        );
    }

    #[test]
    fn a_broken_slo_fires_after_its_time() {
        let eyes = eyes();
        let mut watch = Watch::new(PathBuf::from("/nonexistent/access_log.log"));
        let policy = triggers(
            None,
            Some(Slo {
                p99_ms: 50.0,
                lasting: Duration::from_millis(50),
            }),
        );
        assert_eq!(watch.judge_drift(&policy, &figures(100.0, 80.0), &eyes), None);
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(
            watch.judge_drift(&policy, &figures(100.0, 80.0), &eyes),
            Some(Trigger::Slo(_))
        ));
        assert_eq!(watch.judge_drift(&policy, &figures(100.0, 20.0), &eyes), None);
    }
}
