//! The records of a study, shared by the study (which writes them), the
//! report (which reads them) and the storage (which keeps them): what kind
//! of trial a journal line is, how the server got to the trial's config
//! (`Switch`, with its measured cost), the line itself (`Entry`), why the
//! search stopped, and a candidate's estimate from its runs.
//!
//! A leaf: it imports only the value types of `objective`, `space` and
//! `measure`, so `report` never imports `study`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::measure::traffic_figures::{ModelFigures, PeakFigures};
use crate::measure::Stability;
use crate::objective::Figures;
use crate::space::Point;
use crate::stats::median;

/// What a journal line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialKind {
    /// The config as it was before the study (not a point of the space).
    Baseline,
    /// A short screening measurement of a candidate.
    Screen,
    /// A re-measurement of a candidate (or the baseline) in the confirmation rounds.
    Confirm,
}

impl TrialKind {
    pub fn label(self) -> &'static str {
        match self {
            TrialKind::Baseline => "baseline",
            TrialKind::Screen => "screen",
            TrialKind::Confirm => "confirm",
        }
    }
}

/// How the server got to a trial's config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Switch {
    /// It already ran it.
    #[default]
    None,
    /// Workers scaled through the management API.
    Scale,
    /// The model re-registered with another batch size or delay (and scaled).
    Register,
    /// A full restart until every worker was READY.
    Restart,
    /// Only the gateway in front restarted on a new config (TorchServe ran on).
    Gateway,
}

impl Switch {
    pub fn is_hot(self) -> bool {
        matches!(self, Switch::Scale | Switch::Register | Switch::Gateway)
    }
}

/// Why the search phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Budget,
    MaxTrials,
    Exhausted,
    Interrupted,
    /// A warm start found the earlier recommendation still best, within the noise.
    Unchanged,
}

/// One finished trial: a line of `trials.jsonl`. Fields added since the
/// first release default when absent, so older journals still resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub number: usize,
    pub kind: TrialKind,
    /// None for the baseline.
    pub point: Option<Point>,
    /// Parameter name → value, for people reading the journal.
    pub values: BTreeMap<String, String>,
    /// None when the trial failed (server did not come up, …).
    pub figures: Option<Figures>,
    pub failure: Option<String>,
    pub loss: f64,
    pub feasible: bool,
    pub restarted: bool,
    /// Kept for readers of older journals; intervals now come from
    /// independent repeats (the report), not from one window.
    pub throughput_ci95: Option<f64>,
    pub duration_s: f64,
    pub elapsed_s: f64,
    /// How the server got to this config, and how long that took (s).
    #[serde(default)]
    pub switch: Switch,
    #[serde(default)]
    pub switch_s: f64,
    /// Warm-up before the measured window (s), extra warm-up included.
    #[serde(default)]
    pub warmup_s: f64,
    /// How steady the window was.
    #[serde(default)]
    pub stability: Option<Stability>,
    /// Confirmation round (1-based).
    #[serde(default)]
    pub round: Option<u32>,
    /// The window's latencies (HdrHistogram V2, base64), to merge runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_histogram: Option<String>,
    /// CPU of the server's process tree over the window, in cores.
    #[serde(default)]
    pub server_cpu_cores: Option<f64>,
    /// CPU share of one core the memory sampling used.
    #[serde(default)]
    pub observer_cpu_share: Option<f64>,
    /// What went wrong around the trial without failing it (a worker that
    /// restarted mid-window, a server found down before the move). A
    /// confirmation run with an incident is measured again and left out of
    /// the estimates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<String>,
    /// The worker that measured it: `host:pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// What the server lost during the window (a model worker or the JVM
    /// died or restarted): the figures measured a server in trouble, not
    /// the candidate. Such a trial is not told to the strategy nor used in
    /// any estimate, and the candidate is measured again as the next trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_lost: Option<String>,
    /// Per model, when the window's requests named several (a replayed log).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelFigures>,
    /// The figures at a rate profile's peak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<PeakFigures>,
    /// Not measured: this screening trial's config is the one trial
    /// `window_of` (the baseline) ran, so that trial's window stands for
    /// this one as well. A server found at TorchServe's defaults is not
    /// measured a second time at them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_of: Option<usize>,
}

pub use crate::stats::Interval;

/// A candidate (or the baseline) with its best estimate.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// None: the baseline, the config as it was before the study.
    pub point: Option<Point>,
    pub description: String,
    /// Throughput and memory: means over runs; p50/p99: from the runs'
    /// merged latency histograms; errors: pooled.
    pub figures: Figures,
    /// Independent runs behind the figures.
    pub runs: usize,
    /// Student-t 95 % interval of mean throughput over the runs.
    pub throughput: Option<Interval>,
    /// Whether the figures come from confirmation rounds.
    pub confirmed: bool,
    /// Per-run throughput (req/s), for comparisons.
    #[serde(skip)]
    pub throughput_runs: Vec<f64>,
    /// Per-run p99 (ms).
    #[serde(skip)]
    pub p99_runs: Vec<f64>,
    /// Per-run memory (MB).
    #[serde(skip)]
    pub memory_runs: Vec<f64>,
}

impl Candidate {
    pub fn is_baseline(&self) -> bool {
        self.point.is_none()
    }
}

/// What a tier recommends, and how sure that is.
#[derive(Debug, Clone, Serialize)]
pub struct TierDecision {
    pub tier: crate::objective::Tier,
    /// Index of the chosen candidate.
    pub chosen: usize,
    /// The chosen candidate is the baseline: keep the config as it is.
    pub keep_current: bool,
    /// Candidates the measurements cannot tell apart from the chosen one on
    /// this tier's measure (indices).
    pub indistinguishable_from: Vec<usize>,
    /// Why, in words.
    pub reason: String,
}

/// Relative changes over the baseline in percent, each a 95 % interval
/// (None when either side has fewer than two runs).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GainIntervals {
    pub throughput_pct: Option<Interval>,
    pub p99_pct: Option<Interval>,
    pub memory_pct: Option<Interval>,
}

/// The median cost of each kind of move in this study (seconds), for the
/// report and the journal's readers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeasuredCosts {
    /// Full restart until every worker READY.
    pub restart_s: Option<f64>,
    pub restarts: usize,
    /// Re-registering the model (batch size or delay) until READY.
    pub register_s: Option<f64>,
    pub registers: usize,
    /// Scaling workers until READY.
    pub scale_s: Option<f64>,
    pub scales: usize,
    /// Restarting only the gateway in front (a stack) until it served.
    pub gateway_s: Option<f64>,
    pub gateways: usize,
    /// Trials that needed no change at all.
    pub unchanged: usize,
    /// Warm-up plus window of a screening trial.
    pub screening_trial_s: Option<f64>,
}

impl MeasuredCosts {
    pub fn of(entries: &[Entry]) -> Self {
        let of_kind = |switch: Switch| -> Vec<f64> {
            entries
                .iter()
                .filter(|e| e.switch == switch && e.failure.is_none() && e.server_lost.is_none())
                .filter(|e| e.window_of.is_none())
                .map(|e| e.switch_s)
                .collect()
        };
        let (mut restarts, mut registers, mut scales, mut gateways) = (
            of_kind(Switch::Restart),
            of_kind(Switch::Register),
            of_kind(Switch::Scale),
            of_kind(Switch::Gateway),
        );
        let mut screening: Vec<f64> = entries
            .iter()
            .filter(|e| e.kind == TrialKind::Screen && e.figures.is_some() && e.window_of.is_none())
            .map(|e| e.warmup_s + e.duration_s)
            .collect();
        Self {
            restarts: restarts.len(),
            registers: registers.len(),
            scales: scales.len(),
            gateways: gateways.len(),
            gateway_s: median(&mut gateways),
            unchanged: entries
                .iter()
                .filter(|e| e.switch == Switch::None && e.window_of.is_none())
                .count(),
            restart_s: median(&mut restarts),
            register_s: median(&mut registers),
            scale_s: median(&mut scales),
            screening_trial_s: median(&mut screening),
        }
    }

    /// Share of moves (trials after the baseline) that were live or none.
    pub fn hot_share(&self) -> f64 {
        let moves = self.restarts + self.registers + self.scales + self.gateways;
        if moves == 0 {
            return 1.0;
        }
        (self.registers + self.scales + self.gateways) as f64 / moves as f64
    }
}

/// A parameter of the space the study did not search, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotSearched {
    pub parameter: String,
    pub reason: String,
}
