//! The study file (`servetune tune --study study.toml`) as written, and the
//! validated settings the loop runs on (paths resolved, units typed,
//! cross-field checks done, command-line overrides applied).
//!
//! ```toml
//! name = "tiny-cpu"                       # results/<name>/
//! target = "target.toml"                  # paths relative to this file
//! space = "../search-spaces/torchserve-cpu.toml"
//! model = "tiny"                          # fills {model} in the space's targets
//! strategy = "default"
//! budget = "30m"
//! max_trials = 60
//!
//! [workload]
//! body = "bodies/tiny"                    # file or directory (round-robin)
//! users = 16                              # closed loop …
//! # rate = 300                            # … or open loop (requests/s)
//! duration = "5s"                         # screening window
//! warmup = "2s"
//! confirm_duration = "10s"                # re-measurement of the best few
//! confirm_top = 3
//!
//! [objectives]                            # weights of the balanced tier
//! throughput = 1.0
//! p99 = 1.0
//! memory = 0.2
//!
//! [constraints]
//! p99_ms = 50.0
//! error_rate = 0.01
//! # memory_mb = 4000
//! # throughput_rps = 100
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::objective::{Constraints, Weights};
use crate::search::StrategyKind;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StudyFile {
    pub name: String,
    pub target: PathBuf,
    pub space: PathBuf,
    pub model: String,
    #[serde(default)]
    pub strategy: Option<StrategyKind>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub budget: Option<Duration>,
    #[serde(default)]
    pub max_trials: Option<usize>,
    pub workload: WorkloadFile,
    #[serde(default)]
    pub objectives: Option<Weights>,
    pub constraints: ConstraintsFile,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    pub body: Option<PathBuf>,
    pub users: Option<u32>,
    pub rate: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub warmup: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub confirm_duration: Option<Duration>,
    pub confirm_top: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintsFile {
    pub p99_ms: f64,
    #[serde(default)]
    pub error_rate: Option<f64>,
    pub memory_mb: Option<f64>,
    pub throughput_rps: Option<f64>,
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
    pub target: PathBuf,
    pub space: PathBuf,
    pub model: String,
    pub strategy: StrategyKind,
    pub seed: u64,
    pub budget: Duration,
    pub max_trials: usize,
    pub body: Option<PathBuf>,
    pub offered: Offered,
    pub duration: Duration,
    pub warmup: Duration,
    pub confirm_duration: Duration,
    pub confirm_top: usize,
    pub weights: Weights,
    pub constraints: Constraints,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub budget: Option<Duration>,
    pub max_trials: Option<usize>,
    pub strategy: Option<StrategyKind>,
    pub seed: Option<u64>,
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
        let offered = match (w.users, w.rate) {
            (Some(users), None) if users > 0 => Offered::Users(users),
            (None, Some(rate)) if rate > 0.0 && rate.is_finite() => Offered::Rate(rate),
            _ => return Err("[workload] needs exactly one of users = N (≥ 1) or rate = R (> 0)".into()),
        };
        let duration = w.duration.unwrap_or(Duration::from_secs(5));
        if duration < Duration::from_secs(1) {
            return Err("[workload] duration must be at least 1s".into());
        }
        let constraints = Constraints {
            p99_ms: f.constraints.p99_ms,
            error_rate: f.constraints.error_rate.unwrap_or(0.01),
            memory_mb: f.constraints.memory_mb,
            throughput_rps: f.constraints.throughput_rps,
        };
        if constraints.p99_ms.is_nan() || constraints.p99_ms <= 0.0 || !(0.0..=1.0).contains(&constraints.error_rate) {
            return Err("[constraints] p99_ms must be > 0 and error_rate within [0, 1]".into());
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
        let budget = overrides.budget.or(f.budget).unwrap_or(Duration::from_secs(30 * 60));
        let max_trials = overrides.max_trials.or(f.max_trials).unwrap_or(10_000);
        if max_trials == 0 {
            return Err("max_trials must be at least 1".into());
        }
        Ok(Self {
            name: f.name,
            source: path.to_path_buf(),
            target: resolve(&f.target),
            space: resolve(&f.space),
            model: f.model,
            strategy: overrides.strategy.or(f.strategy).unwrap_or(StrategyKind::Default),
            seed: overrides.seed.or(f.seed).unwrap_or(1),
            budget,
            max_trials,
            body: w.body.as_deref().map(resolve),
            offered,
            duration,
            warmup: w.warmup.unwrap_or(Duration::from_secs(2)),
            confirm_duration: w.confirm_duration.unwrap_or(duration * 2),
            confirm_top: w.confirm_top.unwrap_or(3),
            weights,
            constraints,
        })
    }
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
        assert_eq!(s.confirm_duration, Duration::from_secs(10));
        assert!(s.target.ends_with("t.toml") && s.target.is_absolute());
        assert_eq!(s.constraints.error_rate, 0.01);
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
}
