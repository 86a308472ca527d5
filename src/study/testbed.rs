//! What a study tunes, as the study loop sees it: the running state, a move
//! to a candidate with a measurement window after it, health and revival
//! (`start`), the study's clock, and the final restore (leave it as found).
//!
//! Implementations: the `Runner` (a TorchServe, managed or through its
//! restart command, alone or behind the gateway) and a recorded landscape
//! (`recorded`: simulated clock, move costs from its header, noise from its
//! repeats). The loop (`study_loop`) is generic over this trait and never
//! asks which one it drives.

use std::time::Duration;

use std::collections::BTreeMap;

use crate::bench::soak::SoakReport;
use crate::bench::Measurement;
use crate::measure::traffic_figures::{ModelFigures, PeakFigures};
use crate::space::{Point, Space};
use crate::trial::{Switch, TrialKind};

use super::clock::Clock;

/// What a trial is of.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// The config as it was before the study.
    Baseline,
    Point(Point),
}

impl Subject {
    pub fn point(&self) -> Option<&Point> {
        match self {
            Subject::Baseline => None,
            Subject::Point(p) => Some(p),
        }
    }

    /// How a trial of it shows in the log and the progress line.
    pub fn describe(&self, space: &Space, kind: TrialKind, round: Option<u32>) -> String {
        let round = round.unwrap_or(0);
        match (self, kind) {
            (Subject::Point(p), TrialKind::Confirm) => format!("confirm r{round} {}", space.describe(p)),
            (Subject::Point(p), _) => space.describe(p),
            (Subject::Baseline, TrialKind::Confirm) => format!("confirm r{round} baseline"),
            (Subject::Baseline, _) => "baseline (the config as it was)".to_string(),
        }
    }
}

/// What one trial measured (or why it could not).
pub struct TrialResult {
    pub switch: Switch,
    pub switch_s: f64,
    pub measurement: Result<Measurement, String>,
    /// What went wrong around the measurement without failing it: a server
    /// found down before the move, a worker that restarted during the window.
    pub incidents: Vec<String>,
    /// What the server lost during the window (a worker or the JVM): the
    /// measurement is not the candidate's (`server_loss`).
    pub server_lost: Option<String>,
    /// Per model, when the window's requests named several (a replayed log).
    pub models: BTreeMap<String, ModelFigures>,
    /// The figures at a rate profile's peak.
    pub peak: Option<PeakFigures>,
}

/// Parameter → value of `point`, for the journal's readers.
pub fn point_values(space: &Space, point: &Point) -> BTreeMap<String, String> {
    space
        .values(point)
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

/// Parameter → value of what `subject` runs, where `baseline` gives the
/// baseline's levels (on the grid), for the journal's readers.
pub fn values_of_subject(space: &Space, subject: &Subject, baseline: &[Option<usize>]) -> BTreeMap<String, String> {
    match subject {
        Subject::Point(point) => point_values(space, point),
        Subject::Baseline => values_at(space, baseline),
    }
}

/// Parameter → value of the levels `levels` (the baseline's where it is
/// on the grid), for the journal's readers.
pub fn values_at(space: &Space, levels: &[Option<usize>]) -> BTreeMap<String, String> {
    space
        .parameters
        .iter()
        .zip(levels)
        .filter_map(|(p, level)| level.map(|l| (p.name.clone(), p.levels[l].to_string())))
        .collect()
}

/// The measurement window of one trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub warmup: Duration,
    pub duration: Duration,
    /// An adaptive window goes on until throughput is steady, at most this long.
    pub max_window: Option<Duration>,
}

/// A deployment the study loop can move, measure and put back.
#[allow(async_fn_in_trait)]
pub trait Testbed {
    /// The levels of `space` running now; None while unknown (the next move restarts).
    fn running(&self, space: &Space) -> Option<Vec<Option<usize>>>;

    /// The levels of the config as found (None where off the grid).
    fn baseline_levels(&self, space: &Space) -> Vec<Option<usize>>;

    /// The study's clock: real time for a server, simulated for a landscape.
    fn clock(&self) -> Clock;

    /// Parameter → value of what a trial of `subject` runs, for the journal's readers.
    fn values(&self, space: &Space, subject: &Subject) -> BTreeMap<String, String>;

    /// Makes sure the deployment is up (starting or reviving it); returns
    /// whether it had to start it.
    async fn start(&mut self, resumed: bool) -> anyhow::Result<bool>;

    /// Moves to `subject` (nothing, live or restart) and measures one
    /// window; a failed move or window is the trial's failure, an `Err` an
    /// infrastructure fault that ends the study.
    async fn run(&mut self, space: &Space, subject: &Subject, window: Window) -> anyhow::Result<TrialResult>;

    /// Moves to `point` and holds the study's load on it for `length`,
    /// judging how it holds up (memory growth, drift); None where the
    /// testbed has nothing to soak (a recorded landscape).
    async fn soak(&mut self, space: &Space, point: &Point, length: Duration) -> anyhow::Result<Option<SoakReport>>;

    /// Leaves the deployment as it was found: on the config as found, or
    /// on `onto` (the balanced recommendation, when the study applies it).
    async fn restore(&mut self, space: &Space, onto: Option<&Point>) -> anyhow::Result<()>;
}
