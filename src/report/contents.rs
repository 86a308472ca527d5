//! What a report holds: the study's outcome (`Report`), each tier's
//! recommendation with its figures, intervals and gains over the baseline,
//! the files that realise it, and per-worker figures of a shared study.
//! The study fills it; `report` renders and writes it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cost::CostReport;
use crate::bench::soak::SoakReport;
use crate::measure::traffic_figures::{ModelFigures, PeakFigures};
use crate::objective::{pareto_front, Figures, ModelLimits, Tier};
use crate::trial::{Candidate, Entry, GainIntervals, Interval, MeasuredCosts, NotSearched, StopReason, TrialKind};

/// Relative changes in percent (positive throughput gain is good; negative
/// p99 and memory changes are good).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gains {
    pub throughput_pct: f64,
    pub p99_pct: f64,
    pub memory_pct: f64,
}

impl Gains {
    pub fn between(new: &Figures, old: &Figures) -> Self {
        let pct = |a: f64, b: f64| if b > 0.0 { (a / b - 1.0) * 100.0 } else { 0.0 };
        Self {
            throughput_pct: pct(new.throughput_rps, old.throughput_rps),
            p99_pct: pct(new.p99_ms, old.p99_ms),
            memory_pct: pct(new.memory_mb, old.memory_mb),
        }
    }
}

/// A recommendation: a tier, the config that realises it, and its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub tier: Tier,
    pub description: String,
    pub values: BTreeMap<String, String>,
    /// Confirmed figures: mean throughput and memory over the runs, p50/p99
    /// of the runs' merged latencies.
    pub figures: Figures,
    /// Per model (a replayed log naming several), from its latest window.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelFigures>,
    /// At a rate profile's peak, from its latest window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak: Option<PeakFigures>,
    /// Half-width of the 95 % interval of mean throughput (Student t over runs).
    pub throughput_ci95: Option<f64>,
    pub throughput: Option<Interval>,
    pub runs: usize,
    pub confirmed: bool,
    /// Nothing beat the current config beyond the noise: keep it.
    pub keep_current: bool,
    /// Confirmed candidates this one cannot be told apart from.
    pub indistinguishable_from: Vec<String>,
    pub reason: String,
    pub gain_vs_baseline: Option<Gains>,
    /// The same gains as 95 % intervals (Welch, on logarithms).
    pub gain_vs_baseline_ci95: Option<GainIntervals>,
    pub gain_vs_defaults: Option<Gains>,
    /// TorchServe's logging as this config runs it.
    pub logging: String,
    /// Intra-op threads each worker runs with.
    pub threads_per_worker: String,
    /// Environment variables TorchServe must start with.
    pub environment: BTreeMap<String, String>,
    /// Environment variables the gateway must start with (a stack).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_environment: Option<BTreeMap<String, String>>,
    #[serde(skip)]
    pub files: RecommendedFiles,
}

/// The deployable files of one tier.
#[derive(Debug, Clone, Default)]
pub struct RecommendedFiles {
    pub config: Vec<u8>,
    /// The study's model's (the first, in a study of several).
    pub model_config_yaml: String,
    /// In a study of several models, each one's (`model-config-<model>.yaml`).
    pub model_configs: BTreeMap<String, String>,
    /// servetune's log4j2 file the config names (file name, text).
    pub log4j: Option<(String, String)>,
    /// The gateway's config (file name, bytes), in a stack.
    pub gateway_config: Option<(String, Vec<u8>)>,
    /// `tier.json`: what the tier changes and where it was measured, for
    /// `servetune apply --from` (see `apply::tier`).
    pub tier_manifest: Option<String>,
}

/// What a warm-started study took from an earlier one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WarmStartSummary {
    /// The earlier study's results folder.
    pub from: String,
    /// Its screening trials told to the strategy.
    pub earlier_trials: usize,
    /// Its points measured first (its recommendation and best candidates).
    pub measured_first: usize,
    /// The weight its losses were told at.
    pub prior_weight: f64,
    /// Its recommendation still won within the noise: the search stopped early.
    pub unchanged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub study: String,
    pub strategy: String,
    pub stop: StopReason,
    pub trials: usize,
    pub screening_trials: usize,
    pub confirmation_runs: usize,
    pub failed_trials: usize,
    pub elapsed_s: f64,
    pub budget_s: f64,
    pub slo_p99_ms: f64,
    /// The p99 limit is the baseline's own p99 ("no worse than now").
    pub slo_from_baseline: bool,
    /// Each model's own limits, in a study of several models.
    #[serde(skip_serializing_if = "ModelLimits::is_empty")]
    pub model_limits: ModelLimits,
    pub baseline: Option<Figures>,
    pub defaults: Option<Figures>,
    pub recommendations: Vec<Recommendation>,
    pub pareto_front: Vec<String>,
    /// What moves cost in this study.
    pub costs: MeasuredCosts,
    /// Share of moves that were live (no restart).
    pub hot_share: f64,
    pub not_searched: Vec<NotSearched>,
    /// Trials with an incident (a worker restarted mid-window, a server
    /// found down): `trial N: what`.
    pub incidents: Vec<String>,
    /// Why nothing is recommended, when nothing is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_recommendation: Option<String>,
    /// Why the confirmation rounds did not complete, when they did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation_incomplete: Option<String>,
    /// When the confirmation did not complete: what the screening alone
    /// suggests for the balanced tier (keep the current config, or the best
    /// screened candidate), `confirmed: false`, with its screening figures;
    /// exported under `recommended/balanced-not-confirmed/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_confirmed: Option<Recommendation>,
    /// Per worker (`host:pid`), when several measured the study.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostFigures>,
    /// What a warm start reused (`tune --warm-start`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<WarmStartSummary>,
    /// Cost per million requests of the baseline and each tier, and the
    /// lowest-cost tier (the study file's `[cost]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostReport>,
    /// How the balanced recommendation held up over the study's `soak`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakReport>,
    #[serde(skip)]
    pub candidates: Vec<Candidate>,
    #[serde(skip)]
    pub entries: Vec<Entry>,
    #[serde(skip)]
    pub config_name: String,
}

impl Report {
    pub fn recommendation(&self, tier: Tier) -> Option<&Recommendation> {
        self.recommendations.iter().find(|r| r.tier == tier)
    }

    /// Records the balanced recommendation's soak: the report's `soak`,
    /// and, when it was not stable, the verdict in that tier's reason.
    pub fn record_soak(&mut self, soak: SoakReport) {
        if !soak.stable {
            if let Some(balanced) = self.recommendations.iter_mut().find(|r| r.tier == Tier::Balanced) {
                balanced.reason.push_str(&format!(
                    " Soaked {:.0} s: {} (see the soak section before deploying).",
                    soak.duration_s, soak.verdict
                ));
            }
        }
        self.soak = Some(soak);
    }

    /// The feasible candidates' descriptions on the Pareto front.
    pub fn front_of(candidates: &[Candidate], feasible: impl Fn(&Figures) -> bool) -> Vec<String> {
        let kept: Vec<&Candidate> = candidates.iter().filter(|c| feasible(&c.figures)).collect();
        let figures: Vec<Figures> = kept.iter().map(|c| c.figures).collect();
        pareto_front(&figures)
            .into_iter()
            .map(|i| kept[i].description.clone())
            .collect()
    }
}

/// What one worker of a shared study measured.
#[derive(Debug, Clone, Serialize)]
pub struct HostFigures {
    /// `host:pid`.
    pub worker: String,
    pub screening_trials: usize,
    pub failed_trials: usize,
    pub confirmation_runs: usize,
    /// Median throughput of its screening trials (each worker measured
    /// other candidates: a rough comparison of hosts only).
    pub median_throughput_rps: Option<f64>,
    /// Its best feasible screening trial: description, figures.
    pub best: Option<(String, Figures)>,
}

/// Per-worker figures of a study several workers measured (else none).
pub fn hosts_of(entries: &[Entry]) -> Vec<HostFigures> {
    let mut workers: Vec<&str> = entries.iter().filter_map(|e| e.worker.as_deref()).collect();
    workers.sort_unstable();
    workers.dedup();
    if workers.len() < 2 {
        return Vec::new();
    }
    workers
        .into_iter()
        .map(|worker| {
            let mine: Vec<&Entry> = entries.iter().filter(|e| e.worker.as_deref() == Some(worker)).collect();
            let screens: Vec<&&Entry> = mine.iter().filter(|e| e.kind == TrialKind::Screen).collect();
            let mut throughputs: Vec<f64> = screens
                .iter()
                .filter_map(|e| e.figures.map(|f| f.throughput_rps))
                .collect();
            throughputs.sort_by(f64::total_cmp);
            let best = screens
                .iter()
                .filter(|e| e.feasible && e.figures.is_some())
                .min_by(|a, b| a.loss.total_cmp(&b.loss))
                .map(|e| {
                    let description = e.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
                    (description.join(" "), e.figures.expect("filtered on figures"))
                });
            HostFigures {
                worker: worker.to_string(),
                screening_trials: screens.len(),
                failed_trials: mine.iter().filter(|e| e.failure.is_some()).count(),
                confirmation_runs: mine.iter().filter(|e| e.kind == TrialKind::Confirm).count(),
                median_throughput_rps: (!throughputs.is_empty()).then(|| throughputs[throughputs.len() / 2]),
                best,
            }
        })
        .collect()
}
