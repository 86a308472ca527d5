//! The study file (`servetune tune --study study.toml`) as written, and the
//! validated settings the loop runs on (paths resolved, units typed,
//! cross-field checks done, command-line overrides applied).
//!
//! ```toml
//! name = "tiny-cpu"                       # results/<name>/
//! target = "target.toml"                  # paths relative to this file
//! # stack = "stack.toml"                  # … or a gateway → TorchServe stack (instead of target)
//! space = "../search-spaces/torchserve-cpu.toml"   # or a list of space files
//! model = "tiny"                          # fills {model} in the space's targets …
//! # models = ["resnet50", "bert"]         # … or several models of one TorchServe (or "all"):
//! #                                       #   each model field searched per model (bert.batch_size)
//! strategy = "default"
//! budget = "30m"
//! max_trials = 60
//! # storage = "postgres://tuner@db/studies"   # trials in a shared PostgreSQL (default: results/<name>/)
//! # heartbeat_grace = "60s"   # shared store: a worker silent this long loses its trial
//!
//! [workload]
//! body = "bodies/tiny"                    # file or directory (round-robin)
//! # protocol = "torchserve"               # torchserve | kserve-v2 | openai (content type)
//! # content_type = "application/octet-stream"
//! users = 16                              # closed loop …
//! # rate = 300                            # … or open loop (requests/s) …
//! # profile = "step:50,200,50@20s"        # … or a rate profile (as bench --profile) …
//! # replay = "access_log.log"             # … or an access log replayed (as bench --replay),
//! # body_dir = "bodies"                   #   with bodies per model (bodies/<model>/),
//! # speed = "2x"                          #   faster or slower than recorded,
//! # from = "+60s"                         #   a slice of it (a log time, or an offset),
//! # to = "+120s"
//! # loop = true                           #   started again when it ends
//! # mix = { resnet50 = 0.7, bert = 0.3 }  # several models: each one's share (default equal;
//! #                                       #   bodies from body_dir/<model>/; a replay has its own)
//! duration = "5s"                         # screening window (default: budget/60, 3 to 10 s)
//! warmup = "2s"                           # the least warm-up (default: 1 s, 2 s for windows over 5 s)
//! steady = true                           # windows go on until throughput is steady …
//! # max_window = "15s"                    # … for at most this long (default 3x the window)
//! confirm_duration = "10s"                # confirmation window (default: the screening window)
//! confirm_top = 3                         # best screening candidates re-measured
//! confirm_rounds = 3                      # A B A B … rounds (independent repeats)
//!
//! [objectives]                            # weights of the balanced tier
//! throughput = 1.0
//! p99 = 1.0
//! memory = 0.2
//!
//! [constraints]
//! p99_ms = 50.0                           # or "baseline": no worse than the config as it is
//! error_rate = 0.01
//! # memory_mb = 4000
//! # throughput_rps = 100
//! # [constraints.bert]                    # several models: a model's own limits
//! # p99_ms = 300.0                        #   (its own requests' p99 and error rate)
//! # error_rate = 0.01
//!
//! # soak = "20m"                         # (top level) soak the balanced recommendation first
//!
//! [cost]                                  # cost per million requests, lowest-cost tier
//! core_hour = 0.04                        # per core and hour (this machine's cores, or `cores`) …
//! gb_hour = 0.005                         # … plus per GB of the config's memory and hour
//! # instance_hour = 0.34                  # … or an instance per hour,
//! # cores = 8                             # with the cores it has
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::model_set::{self, ModelsFile};
use crate::load::replay::{ReplayLog, ReplayOptions, ReplayTraffic};
use crate::load::{Arrival, Profile, Protocol, Schedule};
use crate::objective::{Constraints, ModelLimits, Weights};
use crate::report::cost::Prices;
use crate::search::StrategyKind;
use crate::server::stack::StackSpec;
use crate::store::Storage;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StudyFile {
    pub name: String,
    #[serde(default)]
    pub target: Option<PathBuf>,
    /// A stack (gateway → TorchServe) instead of a TorchServe target.
    #[serde(default)]
    pub stack: Option<PathBuf>,
    pub space: SpaceFiles,
    /// The model tuned …
    #[serde(default)]
    pub model: Option<String>,
    /// … or several models of one TorchServe (a list, or "all").
    #[serde(default)]
    pub models: Option<ModelsFile>,
    #[serde(default)]
    pub strategy: Option<StrategyKind>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub budget: Option<Duration>,
    #[serde(default)]
    pub max_trials: Option<usize>,
    /// Where trials are kept: "file" (default) or a postgres:// URL.
    #[serde(default)]
    pub storage: Option<String>,
    /// In a shared store: how long a worker may fall silent before its
    /// trial is given up and its candidate handed out again.
    #[serde(default, with = "humantime_serde")]
    pub heartbeat_grace: Option<Duration>,
    pub workload: WorkloadFile,
    #[serde(default)]
    pub objectives: Option<Weights>,
    pub constraints: ConstraintsFile,
    /// Soak the balanced recommendation this long before recommending it.
    #[serde(default, with = "humantime_serde")]
    pub soak: Option<Duration>,
    /// Prices, for the cost per million requests of each tier.
    #[serde(default)]
    pub cost: Option<Prices>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    pub body: Option<PathBuf>,
    #[serde(default)]
    pub protocol: Option<Protocol>,
    pub content_type: Option<String>,
    pub users: Option<u32>,
    pub rate: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub warmup: Option<Duration>,
    pub steady: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub max_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub confirm_duration: Option<Duration>,
    pub confirm_top: Option<usize>,
    pub confirm_rounds: Option<u32>,
    /// A rate profile (`step:…`, `burst:…`, `diurnal:…`).
    pub profile: Option<String>,
    /// An access log to replay.
    pub replay: Option<PathBuf>,
    /// Replay: one folder of sample bodies per model.
    pub body_dir: Option<PathBuf>,
    /// Replay: `4x`, `0.5x`.
    pub speed: Option<String>,
    /// Replay: a log time or `+offset` where the slice starts.
    pub from: Option<String>,
    /// Replay: where the slice ends.
    pub to: Option<String>,
    /// Replay: start the slice again when it ends.
    #[serde(rename = "loop")]
    pub looped: Option<bool>,
    /// Several models: each one's share of the requests.
    pub mix: Option<BTreeMap<String, f64>>,
}

/// One space file, or several whose parameters a study searches together
/// (TorchServe's and the gateway's).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SpaceFiles {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl SpaceFiles {
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            SpaceFiles::One(path) => vec![path.clone()],
            SpaceFiles::Many(paths) => paths.clone(),
        }
    }
}

/// A p99 limit as written: milliseconds, or `"baseline"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum P99File {
    Ms(f64),
    Named(String),
}

/// `[constraints]`: the server's limits, and `[constraints.<model>]`
/// tables of each model's own (any other key is refused in `model_set`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ConstraintsFile {
    pub p99_ms: P99File,
    #[serde(default)]
    pub error_rate: Option<f64>,
    pub memory_mb: Option<f64>,
    pub throughput_rps: Option<f64>,
    #[serde(flatten)]
    pub models: BTreeMap<String, toml::Value>,
}

/// How load is offered in each trial.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offered {
    Users(u32),
    Rate(f64),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub source: PathBuf,
    /// The TorchServe target (a stack's own, for a stack).
    pub target: PathBuf,
    /// The stack file, when the study tunes a gateway → TorchServe stack.
    pub stack: Option<PathBuf>,
    pub spaces: Vec<PathBuf>,
    /// The model the study tunes; with several, the first of `models`.
    pub model: String,
    /// Every model the study tunes (`model` alone, for one).
    pub models: Vec<String>,
    /// Several models, a synthetic load: each one's share of the requests
    /// (empty for one model, or a replay, whose log has its own mix).
    pub mix: Vec<(String, f64)>,
    /// One folder of sample bodies per model (`bodies/<model>/`): a replay's
    /// or several models'.
    pub body_dir: Option<PathBuf>,
    /// Each model's own limits (`[constraints.<model>]`).
    pub model_limits: ModelLimits,
    pub strategy: StrategyKind,
    pub seed: u64,
    pub budget: Duration,
    pub max_trials: usize,
    /// Where trials are kept.
    pub storage: Storage,
    /// Silence after which a shared study gives a worker's trial up.
    pub heartbeat_grace: Duration,
    pub body: Option<PathBuf>,
    pub protocol: Protocol,
    pub content_type: Option<String>,
    /// Users or a rate; with a profile its peak rate, with a replay the
    /// slice's mean rate at its speed.
    pub offered: Offered,
    /// A rate profile or a replayed slice of a log, sent instead of
    /// `offered` (the same for every candidate, from each window's start).
    pub varying: Option<Schedule>,
    pub duration: Duration,
    pub warmup: Duration,
    /// Windows go on until throughput is steady, for at most this long (None: fixed windows).
    pub max_window: Option<Duration>,
    pub confirm_duration: Duration,
    pub confirm_top: usize,
    pub confirm_rounds: u32,
    pub weights: Weights,
    /// With `p99_from_baseline`, `p99_ms` is infinite here: the study sets
    /// it from the baseline it measures.
    pub constraints: Constraints,
    /// The p99 limit is the baseline's p99: no candidate may be slower at
    /// the tail than the config as it is.
    pub p99_from_baseline: bool,
    /// How long the balanced recommendation is soaked before it is recommended.
    pub soak: Option<Duration>,
    /// Prices of the host, for the report's cost rows.
    pub cost: Option<Prices>,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub budget: Option<Duration>,
    pub max_trials: Option<usize>,
    pub strategy: Option<StrategyKind>,
    pub seed: Option<u64>,
    /// `--storage`.
    pub storage: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct SettingsError {
    pub file: String,
    pub reason: String,
}

impl Settings {
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, SettingsError> {
        let file = path.display().to_string();
        let fail = |reason: String| SettingsError {
            file: file.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let parsed: StudyFile = toml::from_str(&text).map_err(|e| fail(e.to_string().trim_end().to_string()))?;
        Self::from_file(parsed, path, overrides).map_err(fail)
    }

    fn from_file(f: StudyFile, path: &Path, overrides: &Overrides) -> Result<Self, String> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        if f.name.is_empty()
            || !f
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "name '{}': use letters, digits, '-', '_', '.' (it names results/<name>/)",
                f.name
            ));
        }
        let w = &f.workload;
        let varying = varying_schedule(w, &resolve)?;
        let offered = match (w.users, w.rate, &varying) {
            (Some(users), None, None) if users > 0 => Offered::Users(users),
            (None, Some(rate), None) if rate > 0.0 && rate.is_finite() => Offered::Rate(rate),
            (None, None, Some(schedule)) => Offered::Rate(offered_rate(schedule)),
            _ => return Err(
                "[workload] needs exactly one of users = N (≥ 1), rate = R (> 0), profile = \"…\" or replay = \"…\""
                    .into(),
            ),
        };
        let budget = overrides.budget.or(f.budget).unwrap_or(Duration::from_secs(30 * 60));
        if budget < Duration::from_secs(10) {
            return Err(format!(
                "budget {} is too short for even one trial (at least 10s)",
                humantime::format_duration(budget)
            ));
        }
        // Windows not given scale with the budget: short studies still get
        // to confirm, long ones measure longer.
        let duration = w
            .duration
            .unwrap_or_else(|| (budget / 60).clamp(Duration::from_secs(3), Duration::from_secs(10)));
        if duration < Duration::from_secs(1) {
            return Err("[workload] duration must be at least 1s".into());
        }
        let warmup = w.warmup.unwrap_or(if duration > Duration::from_secs(5) {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(1)
        });
        let confirm_duration = w.confirm_duration.unwrap_or(duration);
        if confirm_duration < Duration::from_secs(1) {
            return Err("[workload] confirm_duration must be at least 1s".into());
        }
        let confirm_rounds = w.confirm_rounds.unwrap_or(3);
        if confirm_rounds < 2 {
            return Err("[workload] confirm_rounds must be at least 2: an interval needs independent repeats".into());
        }
        // A varying load is measured as it is: fixed windows.
        let steady = w.steady.unwrap_or(varying.is_none());
        if steady && varying.is_some() {
            return Err("[workload] steady = true waits for a steady throughput, which a profile or a replay never has: leave it out".into());
        }
        check_replay_covers_windows(varying.as_ref(), warmup + duration.max(confirm_duration))?;
        let max_window = match (steady, w.max_window) {
            (false, Some(_)) => return Err("[workload] max_window needs steady = true".into()),
            (false, None) => None,
            (true, Some(max)) if max < duration => {
                return Err("[workload] max_window must be at least the duration".into())
            }
            (true, max) => Some(max.unwrap_or(duration * 3)),
        };
        if w.content_type
            .as_deref()
            .is_some_and(|c| c.trim().is_empty() || c.contains(['\r', '\n']))
        {
            return Err("[workload] content_type must be a one-line media type".into());
        }
        let (p99_ms, p99_from_baseline) = match &f.constraints.p99_ms {
            P99File::Ms(ms) if ms.is_finite() && *ms > 0.0 => (*ms, false),
            P99File::Named(name) if name == "baseline" => (f64::INFINITY, true),
            _ => return Err("[constraints] p99_ms must be a number of milliseconds > 0, or \"baseline\"".into()),
        };
        let constraints = Constraints {
            p99_ms,
            error_rate: f.constraints.error_rate.unwrap_or(0.01),
            memory_mb: f.constraints.memory_mb,
            throughput_rps: f.constraints.throughput_rps,
        };
        if !(0.0..=1.0).contains(&constraints.error_rate) {
            return Err("[constraints] error_rate must be within [0, 1]".into());
        }
        let weights = f.objectives.unwrap_or(Weights {
            throughput: 1.0,
            p99: 1.0,
            memory: 0.2,
        });
        if [weights.throughput, weights.p99, weights.memory]
            .iter()
            .any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return Err("[objectives] weights must be ≥ 0".into());
        }
        if weights.throughput + weights.p99 + weights.memory <= 0.0 {
            return Err("[objectives] at least one weight must be above 0".into());
        }
        if constraints.memory_mb.is_some_and(|m| !(m.is_finite() && m > 0.0))
            || constraints.throughput_rps.is_some_and(|t| !(t.is_finite() && t >= 0.0))
        {
            return Err("[constraints] memory_mb must be > 0 and throughput_rps ≥ 0".into());
        }
        let max_trials = overrides.max_trials.or(f.max_trials).unwrap_or(10_000);
        if max_trials == 0 {
            return Err("max_trials must be at least 1".into());
        }
        let spaces: Vec<PathBuf> = f.space.paths().iter().map(|p| resolve(p)).collect();
        if spaces.is_empty() {
            return Err("space: name at least one space file".into());
        }
        let (target, stack, stack_body) = match (&f.target, &f.stack) {
            (Some(target), None) => (resolve(target), None, None),
            (None, Some(stack)) => {
                let stack = resolve(stack);
                let spec = StackSpec::load(&stack).map_err(|e| format!("stack: {e:#}"))?;
                if f.models.is_some() {
                    return Err(
                        "a stack study tunes one model behind the gateway: give model = \"…\", not models".into(),
                    );
                }
                let wanted = f.model.as_deref().unwrap_or_default();
                let model = spec.models.iter().find(|m| m.name == wanted).ok_or_else(|| {
                    format!(
                        "model '{}' is not one of {}'s [[models]] ({})",
                        wanted,
                        stack.display(),
                        spec.models
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                (spec.torchserve.source.clone(), Some(stack), Some(model.body.clone()))
            }
            _ => return Err("name exactly one of target = \"target.toml\" or stack = \"stack.toml\"".into()),
        };
        let chosen = model_set::choose(
            &model_set::AsWritten {
                model: f.model.as_deref(),
                models: f.models.as_ref(),
                mix: w.mix.as_ref(),
                limits: &f.constraints.models,
                body: w.body.is_some(),
                body_dir: w.body_dir.as_deref().map(resolve),
                protocol: w.protocol,
                replayed: matches!(varying, Some(Schedule::Replay(_))),
            },
            &target,
        )?;
        let default_protocol = if stack.is_some() {
            Protocol::Openai
        } else {
            Protocol::Torchserve
        };
        let storage = match overrides.storage.as_deref().or(f.storage.as_deref()) {
            Some(text) => Storage::parse(text).map_err(|e| format!("storage: {e}"))?,
            None => Storage::File,
        };
        if f.soak.is_some_and(|soak| soak < Duration::from_secs(10)) {
            return Err("soak must be at least 10s (its first and last tenths are compared)".into());
        }
        let heartbeat_grace = f.heartbeat_grace.unwrap_or(Duration::from_secs(60));
        if heartbeat_grace < Duration::from_secs(2) {
            return Err("heartbeat_grace must be at least 2s (workers beat several times within it)".into());
        }
        Ok(Self {
            name: f.name,
            source: path.to_path_buf(),
            storage,
            heartbeat_grace,
            target,
            stack,
            spaces,
            model: chosen.models[0].clone(),
            models: chosen.models,
            mix: chosen.mix,
            body_dir: chosen.body_dir,
            model_limits: chosen.limits,
            strategy: overrides.strategy.or(f.strategy).unwrap_or(StrategyKind::Default),
            seed: overrides.seed.or(f.seed).unwrap_or(1),
            budget,
            max_trials,
            body: w.body.as_deref().map(resolve).or(stack_body),
            protocol: w.protocol.unwrap_or(default_protocol),
            content_type: w.content_type.clone(),
            offered,
            varying,
            duration,
            warmup,
            max_window,
            confirm_duration,
            confirm_top: w.confirm_top.unwrap_or(3),
            confirm_rounds,
            weights,
            constraints,
            p99_from_baseline,
            soak: f.soak,
            cost: f.cost,
        })
    }
}

/// The profile or replay of `[workload]`, if any (the log and bodies are
/// read here, so a bad one is refused before anything starts).
fn varying_schedule(w: &WorkloadFile, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<Option<Schedule>, String> {
    let replay_only = [
        ("speed", w.speed.is_some()),
        ("from", w.from.is_some()),
        ("to", w.to.is_some()),
        ("loop", w.looped.is_some()),
    ];
    if let Some((key, _)) = replay_only.iter().find(|(_, given)| *given && w.replay.is_none()) {
        return Err(format!("[workload] {key} needs replay = \"access_log.log\""));
    }
    match (&w.profile, &w.replay) {
        (Some(_), Some(_)) => Err("[workload] profile and replay: give one of them".into()),
        (Some(text), None) => {
            let profile: Profile = text.parse().map_err(|e| format!("[workload] profile: {e}"))?;
            Ok(Some(Schedule::Profile {
                profile,
                arrival: Arrival::Constant,
            }))
        }
        (None, Some(log)) => {
            let body_dir = w
                .body_dir
                .as_deref()
                .ok_or("[workload] replay needs body_dir = \"bodies\": one folder of sample bodies per model")?;
            let options = ReplayOptions {
                speed: parse_key("speed", &w.speed)?.unwrap_or(crate::load::replay::Speed(1.0)),
                from: parse_key("from", &w.from)?,
                to: parse_key("to", &w.to)?,
                looped: w.looped.unwrap_or(false),
            };
            let log = ReplayLog::read(&resolve(log)).map_err(|e| format!("[workload] replay: {e}"))?;
            let traffic = ReplayTraffic::build(&log, &options, &resolve(body_dir))
                .map_err(|e| format!("[workload] replay: {e}"))?;
            Ok(Some(Schedule::Replay(std::sync::Arc::new(traffic))))
        }
        (None, None) => Ok(None),
    }
}

/// `[workload] KEY` parsed, when given.
fn parse_key<T: std::str::FromStr<Err = String>>(key: &str, text: &Option<String>) -> Result<Option<T>, String> {
    text.as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| format!("[workload] {key}: {e}"))
}

/// The rate a profile or replay offers: a profile's peak, a replay's mean.
fn offered_rate(schedule: &Schedule) -> f64 {
    match schedule {
        Schedule::Profile { profile, .. } => profile.peak_rate(),
        Schedule::Replay(traffic) => traffic.entries.len() as f64 / traffic.period.as_secs_f64(),
        Schedule::Open { rate_per_s, .. } => *rate_per_s,
        Schedule::Closed { stages, .. } => f64::from(stages.peak_users()),
    }
}

/// A slice that is not looped must last as long as the longest window.
fn check_replay_covers_windows(varying: Option<&Schedule>, longest: Duration) -> Result<(), String> {
    let Some(Schedule::Replay(traffic)) = varying else {
        return Ok(());
    };
    if !traffic.looped && traffic.pass_length() < longest {
        return Err(format!(
            "[workload] replay: the slice lasts {}, shorter than a window ({} with its warm-up): set loop = true, or replay a longer slice",
            humantime::format_duration(Duration::from_millis(traffic.pass_length().as_millis() as u64)),
            humantime::format_duration(longest)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = "name = \"s\"\ntarget = \"t.toml\"\nspace = \"sp.toml\"\nmodel = \"tiny\"\n[workload]\nusers = 4\n[constraints]\np99_ms = 50\n";

    fn load(text: &str, overrides: &Overrides) -> Result<Settings, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load(&path, overrides)
    }

    #[test]
    fn defaults_and_overrides() {
        let s = load(
            STUDY,
            &Overrides {
                budget: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.budget, Duration::from_secs(60));
        assert_eq!(s.offered, Offered::Users(4));
        assert_eq!(
            (s.duration, s.warmup, s.confirm_duration),
            (Duration::from_secs(3), Duration::from_secs(1), Duration::from_secs(3)),
            "a one-minute study gets short windows"
        );
        let long = load(STUDY, &Default::default()).unwrap();
        assert_eq!(
            (long.duration, long.warmup),
            (Duration::from_secs(10), Duration::from_secs(2))
        );
        assert!(s.target.ends_with("t.toml") && s.target.is_absolute());
        assert_eq!(s.constraints.error_rate, 0.01);
        assert!(!s.p99_from_baseline);
        let relative = load(
            &STUDY.replace("p99_ms = 50", "p99_ms = \"baseline\""),
            &Overrides::default(),
        )
        .unwrap();
        assert!(relative.p99_from_baseline && relative.constraints.p99_ms.is_infinite());
        let e = load(
            &STUDY.replace("p99_ms = 50", "p99_ms = \"fast\""),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("p99_ms") && e.contains("baseline"), "{e}");
    }

    #[test]
    fn errors_name_the_file() {
        let e = load(
            &STUDY.replace("users = 4", "users = 4\nrate = 5.0"),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("study.toml") && e.contains("exactly one"), "{e}");
        let e = load(
            &STUDY.replace("[constraints]", "bogus = 1\n[constraints]"),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("study.toml") && e.contains("bogus"), "{e}");
        let e = load(&STUDY.replace("name = \"s\"", "name = \"a/b\""), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn soak_and_cost_are_read_and_bad_prices_name_the_file_and_line() {
        let text = format!("soak = \"20m\"\n{STUDY}[cost]\ncore_hour = 0.04\ngb_hour = 0.005\n");
        let s = load(&text, &Overrides::default()).unwrap();
        assert_eq!(s.soak, Some(Duration::from_secs(20 * 60)));
        let cost = s.cost.unwrap();
        assert_eq!((cost.core_hour, cost.gb_hour, cost.instance_hour), (0.04, 0.005, None));
        let plain = load(STUDY, &Overrides::default()).unwrap();
        assert!(plain.soak.is_none() && plain.cost.is_none(), "both are optional");
        let bad = format!("{STUDY}[cost]\ncore_hour = -0.04\n");
        let line = bad.lines().position(|l| l.starts_with("core_hour")).unwrap() + 1;
        let e = load(&bad, &Overrides::default()).unwrap_err().to_string();
        assert!(
            e.contains("study.toml") && e.contains(&format!("line {line}")) && e.contains("not a price"),
            "{e}"
        );
        let e = load(
            &format!("{STUDY}[cost]\ninstance_hour = 1\ngb_hour = 1\n"),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("study.toml") && e.contains("not both"), "{e}");
        let e = load(&format!("soak = \"5s\"\n{STUDY}"), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("study.toml") && e.contains("soak must be at least 10s"),
            "{e}"
        );
    }

    #[test]
    fn a_stack_study_loads_through_its_stack() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let s = Settings::load(&root.join("examples/stack/study.toml"), &Overrides::default()).unwrap();
        assert_eq!(
            s.stack.as_deref(),
            Some(root.join("examples/stack/stack.toml").as_path())
        );
        assert!(
            s.target.ends_with("examples/stack/target.toml"),
            "{}",
            s.target.display()
        );
        assert_eq!(s.spaces.len(), 2);
        assert!(
            s.body
                .as_deref()
                .is_some_and(|b| b.ends_with("bodies/bert-embeddings.json")),
            "the stack's body for the model"
        );
        assert_eq!(s.protocol, Protocol::Openai);

        let e = load(&STUDY.replace("target = \"t.toml\"", ""), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one of target") && e.contains("stack"), "{e}");
        let e = load(
            &STUDY.replace("target = \"t.toml\"", "target = \"t.toml\"\nstack = \"s.toml\""),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("exactly one of target"), "{e}");
        let e = load(
            &STUDY.replace("target = \"t.toml\"", "stack = \"missing.toml\""),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("study.toml") && e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn a_workload_can_be_a_profile_or_a_replayed_log() {
        let dir = tempfile::tempdir().unwrap();
        let line = |ms: u32| {
            format!(
                "2026-11-28T10:00:{:02},{:03} - /127.0.0.1:1 \"POST /predictions/tiny HTTP/1.1\" 200 3\n",
                ms / 1000,
                ms % 1000
            )
        };
        let log: String = (0..40).map(|i| line(i * 250)).collect();
        std::fs::write(dir.path().join("access_log.log"), log).unwrap();
        std::fs::create_dir_all(dir.path().join("bodies/tiny")).unwrap();
        std::fs::write(dir.path().join("bodies/tiny/a.bin"), b"x").unwrap();
        let load_in = |workload: &str| {
            let path = dir.path().join("study.toml");
            std::fs::write(&path, STUDY.replace("users = 4\n", workload)).unwrap();
            Settings::load(&path, &Overrides::default())
        };
        let profile = load_in("profile = \"step:10,40@5s\"\nduration = \"8s\"\n").unwrap();
        assert!(matches!(profile.varying, Some(Schedule::Profile { .. })));
        assert_eq!((profile.offered, profile.max_window), (Offered::Rate(40.0), None));

        let replay = load_in(
            "replay = \"access_log.log\"\nbody_dir = \"bodies\"\nspeed = \"2x\"\nloop = true\nduration = \"3s\"\n",
        )
        .unwrap();
        let Some(Schedule::Replay(traffic)) = &replay.varying else {
            panic!("a replay: {:?}", replay.varying)
        };
        assert_eq!((traffic.entries.len(), traffic.looped), (40, true));
        assert_eq!(replay.offered, Offered::Rate(8.0), "4 a second in the log, at 2x");

        for (workload, says) in [
            ("profile = \"step:10\"\n", "[workload] profile"),
            ("profile = \"step:10@5s\"\nusers = 4\n", "exactly one of"),
            ("profile = \"step:10@5s\"\nsteady = true\n", "steady"),
            ("replay = \"access_log.log\"\n", "body_dir"),
            ("speed = \"2x\"\nusers = 4\n", "speed needs replay"),
            ("replay = \"access_log.log\"\nbody_dir = \"nowhere\"\n", "nowhere"),
            (
                "replay = \"access_log.log\"\nbody_dir = \"bodies\"\nfrom = \"+1h\"\n",
                "no inference requests",
            ),
            (
                "replay = \"access_log.log\"\nbody_dir = \"bodies\"\nspeed = \"fast\"\n",
                "[workload] speed",
            ),
            (
                "replay = \"access_log.log\"\nbody_dir = \"bodies\"\nduration = \"20s\"\n",
                "loop = true",
            ),
            ("replay = \"missing.log\"\nbody_dir = \"bodies\"\n", "missing.log"),
        ] {
            let e = load_in(workload).unwrap_err().to_string();
            assert!(e.contains("study.toml") && e.contains(says), "{workload}: {e}");
        }
    }
}
