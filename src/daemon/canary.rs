//! Decisions about production: whether a study's recommendation goes on at
//! all (only when its confirmation beat the current config beyond the
//! noise), and after probation whether it stays or the previous config goes
//! back (live p99 or error rate worse than before by more than the margins).
//! Every decision is appended to the deployment's `decisions.jsonl` and is
//! the `last_decision` of `/status`.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::config::Canary;
use super::live::LiveFigures;
use crate::report::{Recommendation, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Applied,
    Kept,
    RolledBack,
}

/// Figures behind a decision.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DecisionFigures {
    /// The study's figures of the config as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::objective::Figures>,
    /// The study's confirmed figures of the recommendation, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended: Option<crate::objective::Figures>,
    /// Live traffic on the previous config just before the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<LiveFigures>,
    /// Live traffic during probation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probation: Option<LiveFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub action: Action,
    pub reason: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub study: String,
    pub figures: DecisionFigures,
    /// The recommended settings (empty when nothing was recommended).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub values: std::collections::BTreeMap<String, String>,
    /// Which traffic the study measured (production's replayed log, or why not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<String>,
}

impl Decision {
    pub fn new(action: Action, reason: impl Into<String>, study: &str, figures: DecisionFigures) -> Self {
        Self {
            action,
            reason: reason.into(),
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            study: study.to_string(),
            figures,
            values: Default::default(),
            traffic: None,
        }
    }
}

/// The recommendation worth putting on production, or why none is.
pub fn worth_applying(report: &Report) -> Result<&Recommendation, String> {
    if let Some(why) = &report.no_recommendation {
        return Err(format!("the study recommends nothing: {why}"));
    }
    let Some(balanced) = report.recommendation(crate::objective::Tier::Balanced) else {
        return Err("the study has no balanced recommendation".into());
    };
    if balanced.keep_current {
        return Err(format!(
            "the current config is not beaten beyond the noise: {}",
            balanced.reason
        ));
    }
    if !balanced.confirmed {
        return Err("the recommendation was not confirmed by re-measurement".into());
    }
    Ok(balanced)
}

/// After probation: keep the new config, or why it goes back.
pub fn judge_probation(policy: &Canary, before: &LiveFigures, during: &LiveFigures) -> Verdict {
    if during.requests < policy.min_requests {
        return Verdict::Keep(format!(
            "kept: too little live traffic in probation to judge ({} requests, {} needed)",
            during.requests, policy.min_requests
        ));
    }
    if during.error_rate > before.error_rate + policy.error_rate_margin {
        return Verdict::RollBack(format!(
            "the error rate rose from {:.2} % to {:.2} % in probation (margin {:.2} points)",
            before.error_rate * 100.0,
            during.error_rate * 100.0,
            policy.error_rate_margin * 100.0
        ));
    }
    if let (Some(was), Some(now)) = (before.p99_ms, during.p99_ms) {
        if before.requests >= policy.min_requests && now > was * (1.0 + policy.p99_margin) {
            return Verdict::RollBack(format!(
                "live p99 rose from {was:.1} ms to {now:.1} ms in probation (margin {:.0} %)",
                policy.p99_margin * 100.0
            ));
        }
    }
    Verdict::Keep(format!(
        "probation passed: p99 {} -> {}, errors {:.2} % -> {:.2} % over {} requests",
        ms(before.p99_ms),
        ms(during.p99_ms),
        before.error_rate * 100.0,
        during.error_rate * 100.0,
        during.requests
    ))
}

fn ms(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.1} ms"))
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Keep(String),
    RollBack(String),
}

/// Appends one decision (fsynced) to `decisions.jsonl` in `dir`.
pub fn journal(dir: &Path, decision: &Decision) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("decisions.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut line = serde_json::to_string(decision).expect("a decision serialises");
    line.push('\n');
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot append to {}", path.display()))
}

/// The last decision journaled in `dir`, if any (for `/status` after a restart).
pub fn last_journaled(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("decisions.jsonl")).ok()?;
    text.lines().rev().find_map(|line| serde_json::from_str(line).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> Canary {
        Canary {
            probation: Duration::from_secs(10),
            p99_margin: 0.2,
            error_rate_margin: 0.01,
            min_requests: 100,
        }
    }

    fn live(requests: u64, error_rate: f64, p99: f64) -> LiveFigures {
        LiveFigures {
            requests,
            error_rate,
            p99_ms: Some(p99),
            ..LiveFigures::default()
        }
    }

    #[test]
    fn probation_rolls_back_on_errors_or_a_slower_tail() {
        let before = live(1000, 0.0, 10.0);
        assert!(matches!(
            judge_probation(&policy(), &before, &live(1000, 0.05, 10.0)),
            Verdict::RollBack(reason) if reason.contains("error rate")
        ));
        assert!(matches!(
            judge_probation(&policy(), &before, &live(1000, 0.0, 12.5)),
            Verdict::RollBack(reason) if reason.contains("p99")
        ));
        assert!(matches!(
            judge_probation(&policy(), &before, &live(1000, 0.005, 11.9)),
            Verdict::Keep(_)
        ));
    }

    #[test]
    fn too_little_traffic_is_kept_and_said() {
        let verdict = judge_probation(&policy(), &live(1000, 0.0, 10.0), &live(20, 0.5, 90.0));
        assert!(matches!(verdict, Verdict::Keep(reason) if reason.contains("too little")));
    }

    #[test]
    fn decisions_are_journaled_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(last_journaled(dir.path()).is_none());
        journal(
            dir.path(),
            &Decision::new(Action::Kept, "first", "s1", DecisionFigures::default()),
        )
        .unwrap();
        journal(
            dir.path(),
            &Decision::new(Action::RolledBack, "second", "s2", DecisionFigures::default()),
        )
        .unwrap();
        let last = last_journaled(dir.path()).unwrap();
        assert_eq!(last["action"], "rolled_back");
        assert_eq!(last["reason"], "second");
    }
}
