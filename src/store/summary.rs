//! A study as `servetune studies` lists it, and the name each trial gives
//! the process that measured it (`host:pid`).

use crate::objective::Figures;
use crate::trial::Entry;

/// This process, as trials name it: `host:pid`.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// A study in a storage, for `servetune studies`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StudySummary {
    pub name: String,
    /// `running` or `finished`.
    pub state: String,
    pub trials: usize,
    pub failed: usize,
    /// The workers that measured its trials.
    pub workers: Vec<String>,
    /// The feasible trial with the lowest loss, if any.
    pub best: Option<BestTrial>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BestTrial {
    pub number: usize,
    pub description: String,
    pub figures: Figures,
}

impl StudySummary {
    /// Sums up a study's trials.
    pub fn of(name: &str, state: &str, entries: &[Entry]) -> Self {
        let mut workers: Vec<String> = entries.iter().filter_map(|e| e.worker.clone()).collect();
        workers.sort();
        workers.dedup();
        let best = entries
            .iter()
            .filter(|e| e.feasible && e.figures.is_some())
            .min_by(|a, b| a.loss.total_cmp(&b.loss))
            .map(|e| BestTrial {
                number: e.number,
                description: if e.point.is_none() {
                    "the config as it was (baseline)".into()
                } else {
                    e.values
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
                figures: e.figures.expect("filtered on figures"),
            });
        Self {
            name: name.to_string(),
            state: state.to_string(),
            trials: entries.len(),
            failed: entries.iter().filter(|e| e.failure.is_some()).count(),
            workers,
            best,
        }
    }
}
