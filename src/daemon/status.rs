//! What the daemon knows and shows: per deployment its phase, production's
//! config and live figures, the running study, the next scheduled run and
//! the last decision — read by `/status`, `/metrics` and the systemd STATUS
//! line; and the API token and the trigger queues the API feeds.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::mpsc;

use super::live::{LiveFigures, ServerTimes};
use super::trigger::Trigger;

#[derive(Debug, Clone, Serialize)]
pub struct RunningStudy {
    pub name: String,
    pub trigger: String,
    pub trials: usize,
    /// "1,203 req/s at p99 19.0 ms"
    pub best: Option<String>,
    pub best_rps: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    pub name: String,
    pub mode: super::config::Mode,
    /// watching | study | before | probation | rolling_back | deferred
    pub phase: String,
    pub production_up: bool,
    /// Production's effective config.properties (key → value).
    pub current_config: BTreeMap<String, String>,
    pub live: LiveFigures,
    pub server_times: ServerTimes,
    pub running_study: Option<RunningStudy>,
    pub next_scheduled_run: Option<String>,
    /// A trigger that arrived during a study, run after it.
    pub queued: Option<String>,
    pub last_decision: Option<serde_json::Value>,
    pub decisions: BTreeMap<String, u64>,
    pub access_log_skipped_lines: u64,
    pub note: Option<String>,
}

impl DeploymentStatus {
    pub fn new(name: &str, mode: super::config::Mode) -> Self {
        Self {
            name: name.to_string(),
            mode,
            phase: "watching".into(),
            production_up: false,
            current_config: BTreeMap::new(),
            live: LiveFigures::default(),
            server_times: ServerTimes::default(),
            running_study: None,
            next_scheduled_run: None,
            queued: None,
            last_decision: None,
            decisions: BTreeMap::new(),
            access_log_skipped_lines: 0,
            note: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DaemonStatus {
    /// starting | running | reloading | stopping
    pub state: String,
    pub config: String,
    pub started_at: String,
    pub reload_error: Option<String>,
    pub deployments: Vec<DeploymentStatus>,
}

/// Shared between the API, the supervisors and the main loop.
pub struct Shared {
    pub status: Mutex<DaemonStatus>,
    token: String,
    triggers: Mutex<BTreeMap<String, mpsc::UnboundedSender<Trigger>>>,
}

impl Shared {
    pub fn new(config: &Path, token: String) -> Self {
        Self {
            status: Mutex::new(DaemonStatus {
                state: "starting".into(),
                config: config.display().to_string(),
                started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                reload_error: None,
                deployments: Vec::new(),
            }),
            token,
            triggers: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn token_matches(&self, given: Option<&str>) -> bool {
        let Some(given) = given else { return false };
        // Compare every byte so the time taken does not tell how much matched.
        given.len() == self.token.len()
            && given
                .bytes()
                .zip(self.token.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }

    pub fn open_trigger_queue(&self, name: &str, queue: mpsc::UnboundedSender<Trigger>) {
        let mut triggers = self.triggers.lock().expect("no panics under the lock");
        triggers.insert(name.to_string(), queue);
    }

    /// Forgets `queue` for `name`, unless a deployment of the same name
    /// (added again by a reload) has its own by now.
    pub fn close_trigger_queue(&self, name: &str, queue: &mpsc::UnboundedSender<Trigger>) {
        let mut triggers = self.triggers.lock().expect("no panics under the lock");
        if triggers.get(name).is_some_and(|open| open.same_channel(queue)) {
            triggers.remove(name);
        }
    }

    /// Queues a trigger for `name`; says whether a study is running (it is queued behind it).
    pub async fn trigger(&self, name: &str, trigger: Trigger) -> Result<String, String> {
        let queue = self
            .triggers
            .lock()
            .expect("no panics under the lock")
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no deployment named '{name}'"))?;
        queue
            .send(trigger.clone())
            .map_err(|_| format!("deployment '{name}' is stopping"))?;
        let busy = self.with_deployment(name, |d| {
            if d.running_study.is_some() {
                d.queued = Some(trigger.describe());
            }
            d.running_study.is_some()
        });
        Ok(if busy == Some(true) {
            "a study is running: this one runs after it".into()
        } else {
            "starting".into()
        })
    }

    pub fn set_state(&self, state: &str) {
        self.status.lock().expect("no panics under the lock").state = state.to_string();
    }

    pub fn with_deployment<R>(&self, name: &str, f: impl FnOnce(&mut DeploymentStatus) -> R) -> Option<R> {
        let mut status = self.status.lock().expect("no panics under the lock");
        status.deployments.iter_mut().find(|d| d.name == name).map(f)
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&*self.status.lock().expect("no panics under the lock")).expect("status serialises")
    }

    /// The systemd STATUS= line: each deployment's phase in a few words.
    pub fn summary_line(&self) -> String {
        let status = self.status.lock().expect("no panics under the lock");
        let parts: Vec<String> = status
            .deployments
            .iter()
            .map(|d| match &d.running_study {
                Some(study) => format!(
                    "{}: trial {}, best {}",
                    d.name,
                    study.trials,
                    study.best.as_deref().unwrap_or("none yet")
                ),
                None => format!("{}: {} ({:.0} req/s live)", d.name, d.phase, d.live.rate_rps),
            })
            .collect();
        if parts.is_empty() {
            status.state.clone()
        } else {
            parts.join("; ")
        }
    }

    pub fn metrics_text(&self) -> String {
        let status = self.status.lock().expect("no panics under the lock");
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, rows: Vec<(String, f64)>| {
            out.push_str(&format!(
                "# HELP servetune_{name} {help}\n# TYPE servetune_{name} gauge\n"
            ));
            for (labels, value) in rows {
                out.push_str(&format!("servetune_{name}{labels} {value}\n"));
            }
        };
        let per = |f: &dyn Fn(&DeploymentStatus) -> Option<f64>| -> Vec<(String, f64)> {
            status
                .deployments
                .iter()
                .filter_map(|d| f(d).map(|v| (format!("{{deployment=\"{}\"}}", d.name), v)))
                .collect()
        };
        gauge("up", "The daemon runs.", vec![(String::new(), 1.0)]);
        gauge(
            "production_up",
            "Production TorchServe answers /ping.",
            per(&|d| Some(f64::from(u8::from(d.production_up)))),
        );
        gauge(
            "live_requests_per_second",
            "Inference requests per second in the access log (last minute).",
            per(&|d| Some(d.live.rate_rps)),
        );
        gauge(
            "live_error_ratio",
            "Share of inference requests answered 5xx/429/503/507.",
            per(&|d| Some(d.live.error_rate)),
        );
        gauge(
            "live_p50_ms",
            "Live median latency (access log).",
            per(&|d| d.live.p50_ms),
        );
        gauge("live_p99_ms", "Live p99 latency (access log).", per(&|d| d.live.p99_ms));
        gauge(
            "live_queue_ms",
            "Mean time in TorchServe's queue per request (metrics API).",
            per(&|d| d.server_times.queue_ms),
        );
        gauge(
            "live_inference_ms",
            "Mean inference time per request (metrics API).",
            per(&|d| d.server_times.inference_ms),
        );
        gauge(
            "study_running",
            "A study of the deployment runs.",
            per(&|d| Some(f64::from(u8::from(d.running_study.is_some())))),
        );
        gauge(
            "study_trials",
            "Trials of the running study.",
            per(&|d| d.running_study.as_ref().map(|s| s.trials as f64)),
        );
        gauge(
            "study_best_requests_per_second",
            "Best feasible throughput of the running study.",
            per(&|d| d.running_study.as_ref().and_then(|s| s.best_rps)),
        );
        let mut decisions = Vec::new();
        for d in &status.deployments {
            for (action, count) in &d.decisions {
                decisions.push((
                    format!("{{deployment=\"{}\",action=\"{action}\"}}", d.name),
                    *count as f64,
                ));
            }
        }
        out.push_str("# HELP servetune_decisions_total Decisions since the daemon started.\n");
        out.push_str("# TYPE servetune_decisions_total counter\n");
        for (labels, value) in decisions {
            out.push_str(&format!("servetune_decisions_total{labels} {value}\n"));
        }
        out
    }
}

/// The API token: read from `path`, or created there (mode 0600) with 32
/// random bytes in hex when missing.
pub fn load_or_create_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => anyhow::bail!(
            "{}: the token file is empty (delete it to get a new token)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read the token file {}", path.display())),
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("reading /dev/urandom for a token")?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the token file {}", path.display()))?;
    file.write_all(format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_token_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/token");
        let token = load_or_create_token(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create_token(&path).unwrap(), token);
        let shared = Shared::new(Path::new("x.toml"), token.clone());
        assert!(shared.token_matches(Some(&token)));
        assert!(!shared.token_matches(Some("nope")));
        assert!(!shared.token_matches(None));
    }
}
