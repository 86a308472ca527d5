//! The daemon's config file: the API, where results go, and per deployment
//! its study file, mode, triggers and canary policy. Everything is read and
//! checked before anything starts (errors name the file, the line for syntax
//! errors, and the key); `--check` stops here.
//!
//! ```toml
//! results_dir = "results"             # paths are relative to this file
//! [api]
//! listen = "127.0.0.1:9181"           # loopback unless allow_remote = true
//! token_file = "token"                # created 0600 with a random token when missing
//! [[deployment]]
//! name = "prod"
//! study = "study.toml"                # the file `servetune tune` reads
//! mode = "shadow"                     # or "in-place"
//! [deployment.triggers]
//! schedule = "daily 03:00"            # UTC, or an RFC 3339 instant
//! [deployment.canary]
//! probation = "10m"
//! ```

use super::traffic::ProductionReplay;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::server::TargetSpec;
use crate::study::settings::{Overrides, Settings};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonFile {
    #[serde(default)]
    api: ApiFile,
    results_dir: Option<PathBuf>,
    #[serde(default)]
    deployment: Vec<DeploymentFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    listen: Option<String>,
    #[serde(default)]
    allow_remote: bool,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentFile {
    name: String,
    study: PathBuf,
    mode: Mode,
    access_log: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    budget: Option<Duration>,
    /// `false`: cycles measure the study's workload, not production's replayed log.
    replay: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    replay_window: Option<Duration>,
    samples: Option<PathBuf>,
    #[serde(default)]
    triggers: TriggersFile,
    #[serde(default)]
    canary: CanaryFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggersFile {
    schedule: Option<String>,
    maintenance_window: Option<String>,
    max_live_rps: Option<f64>,
    drift_rate: Option<f64>,
    drift_p99: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    drift_for: Option<Duration>,
    slo_p99_ms: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    slo_for: Option<Duration>,
    #[serde(default)]
    new_model_version: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryFile {
    #[serde(default, with = "humantime_serde")]
    probation: Option<Duration>,
    p99_margin: Option<f64>,
    error_rate_margin: Option<f64>,
    min_requests: Option<u64>,
}

/// How a deployment is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A second TorchServe on its own ports, same model store; production untouched.
    Shadow,
    /// Production itself, only in its maintenance window and below a traffic rate.
    InPlace,
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    pub results_dir: PathBuf,
    pub deployments: Vec<DeploymentConfig>,
}

#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub name: String,
    pub study_file: PathBuf,
    /// The study as `tune` would run it (budget overridden when set here).
    pub settings: Settings,
    pub target: TargetSpec,
    pub mode: Mode,
    pub access_log: PathBuf,
    /// How cycles replay production's traffic.
    pub replay: ProductionReplay,
    pub triggers: Triggers,
    pub canary: Canary,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every day at this many seconds after midnight UTC.
    Daily(u64),
    /// Once, at this instant.
    At(SystemTime),
}

/// Hours of the day (UTC, seconds after midnight); the end may wrap past midnight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    pub rate: Option<f64>,
    pub p99: Option<f64>,
    pub lasting: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub p99_ms: f64,
    pub lasting: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Triggers {
    pub schedule: Option<Schedule>,
    pub maintenance_window: Option<Window>,
    pub max_live_rps: Option<f64>,
    pub drift: Option<Drift>,
    pub slo: Option<Slo>,
    pub new_model_version: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    pub probation: Duration,
    pub p99_margin: f64,
    pub error_rate_margin: f64,
    pub min_requests: u64,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9181";

impl DaemonConfig {
    /// Reads and checks the whole file, each deployment's study and target included.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: DaemonFile = toml::from_str(&text).map_err(|e| syntax_error(path, &text, &e))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let invalid = |key: &str, why: String| anyhow::anyhow!("{}: {key}: {why}", path.display());
        let listen_text = file.api.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "api.listen",
                format!("'{listen_text}' is not an address like 127.0.0.1:9181"),
            )
        })?;
        if !listen.ip().is_loopback() && !file.api.allow_remote {
            return Err(invalid(
                "api.listen",
                format!("{listen} is not a loopback address; set api.allow_remote = true to serve other hosts"),
            ));
        }
        if file.deployment.is_empty() {
            return Err(invalid(
                "deployment",
                "no [[deployment]] table: nothing to keep tuned".into(),
            ));
        }
        let mut deployments = Vec::new();
        for (index, deployment) in file.deployment.into_iter().enumerate() {
            let key = format!("deployment[{index}]");
            let checked = DeploymentConfig::check(deployment, &base)
                .map_err(|e| anyhow::anyhow!("{}: {key}: {e:#}", path.display()))?;
            if deployments.iter().any(|d: &DeploymentConfig| d.name == checked.name) {
                return Err(invalid(&key, format!("two deployments are named '{}'", checked.name)));
            }
            deployments.push(checked);
        }
        Ok(Self {
            source: path.to_path_buf(),
            listen,
            token_file: base.join(file.api.token_file.unwrap_or_else(|| "token".into())),
            results_dir: base.join(file.results_dir.unwrap_or_else(|| "results".into())),
            deployments,
        })
    }

    pub fn deployment(&self, name: &str) -> Option<&DeploymentConfig> {
        self.deployments.iter().find(|d| d.name == name)
    }
}

fn syntax_error(path: &Path, text: &str, error: &toml::de::Error) -> anyhow::Error {
    let line = error
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    match line {
        Some(line) => anyhow::anyhow!("{}:{line}: {}", path.display(), error.message()),
        None => anyhow::anyhow!("{}: {}", path.display(), error.message()),
    }
}

impl DeploymentConfig {
    fn check(file: DeploymentFile, base: &Path) -> anyhow::Result<Self> {
        if file.name.is_empty()
            || !file
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("name '{}': use letters, digits, '-' and '_' only", file.name);
        }
        let study_file = base.join(&file.study);
        let overrides = Overrides {
            budget: file.budget,
            ..Overrides::default()
        };
        let settings = Settings::load(&study_file, &overrides).context("study")?;
        if settings.stack.is_some() {
            bail!(
                "{}: the daemon tunes a TorchServe target; a stack (gateway in front) is tuned with `servetune tune`",
                study_file.display()
            );
        }
        let target = TargetSpec::load(&settings.target).context("the study's target")?;
        crate::server::tls::announce_spec(&target);
        let access_log = match file.access_log {
            Some(path) => base.join(path),
            None => default_access_log(&target)?,
        };
        if file.replay_window.is_some_and(|w| w < Duration::from_secs(1)) {
            bail!("replay_window must be at least 1s");
        }
        let replay = ProductionReplay {
            off: file.replay == Some(false),
            window: file.replay_window,
            samples: file.samples.map(|path| base.join(path)),
        };
        let triggers = Triggers::check(file.triggers)?;
        if file.mode == Mode::InPlace && triggers.maintenance_window.is_none() {
            bail!("mode = \"in-place\" tunes production: set triggers.maintenance_window (e.g. \"02:00-04:00\")");
        }
        Ok(Self {
            name: file.name,
            study_file,
            settings,
            target,
            mode: file.mode,
            access_log,
            replay,
            triggers,
            canary: Canary::check(file.canary)?,
        })
    }
}

/// `<work_dir>/logs/access_log.log` for a server servetune starts; a
/// production server must name its log.
fn default_access_log(target: &TargetSpec) -> anyhow::Result<PathBuf> {
    match target.control.work_dir() {
        Some(work_dir) => Ok(work_dir.join("logs").join("access_log.log")),
        None => bail!("access_log: the target runs under restart_command: say where TorchServe writes access_log.log"),
    }
}

impl Triggers {
    fn check(file: TriggersFile) -> anyhow::Result<Self> {
        let fraction = |key: &str, value: Option<f64>| -> anyhow::Result<Option<f64>> {
            match value {
                Some(v) if !(v.is_finite() && v > 0.0) => bail!("triggers.{key} = {v}: give a fraction above 0"),
                other => Ok(other),
            }
        };
        let drift_rate = fraction("drift_rate", file.drift_rate)?;
        let drift_p99 = fraction("drift_p99", file.drift_p99)?;
        let drift = match (drift_rate, drift_p99, file.drift_for) {
            (None, None, None) => None,
            (None, None, Some(_)) => bail!("triggers.drift_for needs drift_rate or drift_p99"),
            (rate, p99, lasting) => Some(Drift {
                rate,
                p99,
                lasting: lasting.unwrap_or(Duration::from_secs(600)),
            }),
        };
        let slo = match (file.slo_p99_ms, file.slo_for) {
            (None, None) => None,
            (None, Some(_)) => bail!("triggers.slo_for needs slo_p99_ms"),
            (Some(ms), lasting) => {
                if !(ms.is_finite() && ms > 0.0) {
                    bail!("triggers.slo_p99_ms = {ms}: give milliseconds above 0");
                }
                Some(Slo {
                    p99_ms: ms,
                    lasting: lasting.unwrap_or(Duration::from_secs(300)),
                })
            }
        };
        Ok(Self {
            schedule: file
                .schedule
                .as_deref()
                .map(parse_schedule)
                .transpose()
                .context("triggers.schedule")?,
            maintenance_window: file
                .maintenance_window
                .as_deref()
                .map(parse_window)
                .transpose()
                .context("triggers.maintenance_window")?,
            max_live_rps: fraction("max_live_rps", file.max_live_rps)?,
            drift,
            slo,
            new_model_version: file.new_model_version,
        })
    }
}

impl Canary {
    fn check(file: CanaryFile) -> anyhow::Result<Self> {
        let margin = |key: &str, value: Option<f64>, default: f64| -> anyhow::Result<f64> {
            let v = value.unwrap_or(default);
            if !(v.is_finite() && v >= 0.0) {
                bail!("canary.{key} = {v}: give a fraction of 0 or more");
            }
            Ok(v)
        };
        let probation = file.probation.unwrap_or(Duration::from_secs(600));
        if probation < Duration::from_secs(1) {
            bail!("canary.probation: give at least 1s");
        }
        Ok(Self {
            probation,
            p99_margin: margin("p99_margin", file.p99_margin, 0.2)?,
            error_rate_margin: margin("error_rate_margin", file.error_rate_margin, 0.01)?,
            min_requests: file.min_requests.unwrap_or(100),
        })
    }
}

/// `HH:MM` → seconds after midnight.
fn parse_clock(text: &str) -> anyhow::Result<u64> {
    let (hours, minutes) = text
        .split_once(':')
        .with_context(|| format!("'{text}' is not a time like 03:00"))?;
    let hours: u64 = hours.trim().parse().with_context(|| format!("'{text}': bad hour"))?;
    let minutes: u64 = minutes
        .trim()
        .parse()
        .with_context(|| format!("'{text}': bad minute"))?;
    if hours > 23 || minutes > 59 {
        bail!("'{text}' is not a time of day");
    }
    Ok(hours * 3600 + minutes * 60)
}

/// "daily HH:MM" (UTC) or an RFC 3339 instant.
pub fn parse_schedule(text: &str) -> anyhow::Result<Schedule> {
    if let Some(clock) = text.trim().strip_prefix("daily ") {
        return Ok(Schedule::Daily(parse_clock(clock)?));
    }
    humantime::parse_rfc3339_weak(text.trim())
        .map(Schedule::At)
        .map_err(|_| anyhow::anyhow!("'{text}': give \"daily HH:MM\" (UTC) or an instant like 2099-01-01T03:00:00Z"))
}

/// "HH:MM-HH:MM" (UTC).
pub fn parse_window(text: &str) -> anyhow::Result<Window> {
    let (start, end) = text
        .split_once('-')
        .with_context(|| format!("'{text}': give \"HH:MM-HH:MM\" (UTC)"))?;
    let window = Window {
        start: parse_clock(start)?,
        end: parse_clock(end)?,
    };
    if window.start == window.end {
        bail!("'{text}': the window is empty");
    }
    Ok(window)
}

pub const DAY: u64 = 86_400;

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Schedule {
    /// The first run at or after `now`; None once a one-time instant has passed.
    pub fn next_after(&self, now: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::At(at) => (*at >= now).then_some(*at),
            Schedule::Daily(offset) => {
                let seconds = unix_seconds(now);
                let midnight = seconds - seconds % DAY;
                let today = midnight + offset;
                let next = if today >= seconds { today } else { today + DAY };
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(next))
            }
        }
    }
}

impl Window {
    /// How long the window still lasts at `now`; None outside it.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        let of_day = unix_seconds(now) % DAY;
        let (inside, left) = if self.start < self.end {
            (
                of_day >= self.start && of_day < self.end,
                self.end.saturating_sub(of_day),
            )
        } else {
            let inside = of_day >= self.start || of_day < self.end;
            let left = if of_day >= self.start {
                DAY - of_day + self.end
            } else {
                self.end.saturating_sub(of_day)
            };
            (inside, left)
        };
        inside.then(|| Duration::from_secs(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_daily_schedule_runs_today_or_tomorrow() {
        let schedule = parse_schedule("daily 03:00").unwrap();
        let day = 20_000 * DAY;
        assert_eq!(schedule.next_after(at(day + 3600)), Some(at(day + 3 * 3600)));
        assert_eq!(schedule.next_after(at(day + 4 * 3600)), Some(at(day + DAY + 3 * 3600)));
    }

    #[test]
    fn a_one_time_schedule_passes() {
        let schedule = parse_schedule("2099-01-01T03:00:00Z").unwrap();
        assert!(schedule.next_after(SystemTime::now()).is_some());
        let past = parse_schedule("2001-01-01T03:00:00Z").unwrap();
        assert_eq!(past.next_after(SystemTime::now()), None);
        assert!(parse_schedule("weekly").is_err());
        assert!(parse_schedule("daily 25:00").is_err());
    }

    #[test]
    fn a_window_may_wrap_past_midnight() {
        let day = 20_000 * DAY;
        let night = parse_window("23:00-01:00").unwrap();
        assert_eq!(
            night.remaining(at(day + 23 * 3600 + 1800)),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(night.remaining(at(day + 1800)), Some(Duration::from_secs(1800)));
        assert_eq!(night.remaining(at(day + 2 * 3600)), None);
        let early = parse_window("02:00-04:00").unwrap();
        assert_eq!(early.remaining(at(day + 3 * 3600)), Some(Duration::from_secs(3600)));
        assert_eq!(early.remaining(at(day + 4 * 3600)), None);
        assert!(parse_window("02:00-02:00").is_err());
    }
}
