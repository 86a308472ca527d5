//! The ask/tell contract every strategy implements (`Strategy`) and what a
//! strategy sees: the `History` of evaluated points (`Trial`), where the
//! server runs now, what a move costs (`SwitchCosts`), and the neighbours
//! of a point. The strategies and the factory in `search` build on it.

use std::collections::HashMap;

use crate::space::{Point, Space};

/// One evaluated point.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub point: Point,
    pub loss: f64,
}

/// What moving the server and measuring costs, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SwitchCosts {
    /// A full restart until every worker is READY (JIT warm-up included).
    pub restart_s: f64,
    /// A live change (re-register or scale) until READY.
    pub hot_s: f64,
    /// One screening measurement: warm-up and window.
    pub window_s: f64,
}

impl Default for SwitchCosts {
    /// Typical of the example TorchServe on two cores, until measured.
    fn default() -> Self {
        Self {
            restart_s: 12.0,
            hot_s: 2.0,
            window_s: 5.0,
        }
    }
}

impl SwitchCosts {
    /// Seconds to move from `running` (None: unknown) to `to` and measure it.
    pub fn of_move(&self, space: &Space, running: &[Option<usize>], to: &[usize]) -> f64 {
        let mut seconds = self.window_s;
        if space.needs_restart_from(running, to) {
            seconds += self.restart_s;
        } else if space.hot_change(running, to) {
            seconds += self.hot_s;
        }
        seconds
    }
}

/// Every trial so far, with the mean loss per distinct point; the p99
/// measured there, where the caller knows it (a strategy that predicts
/// latency corrects its prediction with it: `Guided`); where the server
/// runs now, and what moves cost.
#[derive(Debug, Clone, Default)]
pub struct History {
    trials: Vec<Trial>,
    by_point: HashMap<Point, (f64, usize)>,
    /// Per point, the sum of `ln` p99 (ms) measured and how many.
    p99_by_point: HashMap<Point, (f64, usize)>,
    running: Vec<Option<usize>>,
    costs: SwitchCosts,
}

impl History {
    /// The level each parameter runs at now (empty or None: unknown).
    pub fn running(&self) -> &[Option<usize>] {
        &self.running
    }

    pub fn set_running(&mut self, levels: Vec<Option<usize>>) {
        self.running = levels;
    }

    pub fn costs(&self) -> SwitchCosts {
        self.costs
    }

    pub fn set_costs(&mut self, costs: SwitchCosts) {
        self.costs = costs;
    }

    /// Whether moving to `point` needs a restart from where the server runs.
    pub fn needs_restart(&self, space: &Space, point: &[usize]) -> bool {
        space.needs_restart_from(&self.running, point)
    }

    pub fn push(&mut self, trial: Trial) {
        let entry = self.by_point.entry(trial.point.clone()).or_insert((0.0, 0));
        entry.0 += trial.loss;
        entry.1 += 1;
        self.trials.push(trial);
    }

    /// Notes the p99 (ms) a trial of `point` measured (beside `push`:
    /// a trial without figures, a failed one or a lie, has none).
    pub fn push_p99(&mut self, point: &[usize], p99_ms: f64) {
        if p99_ms.is_finite() && p99_ms > 0.0 {
            let entry = self.p99_by_point.entry(point.to_vec()).or_insert((0.0, 0));
            entry.0 += p99_ms.ln();
            entry.1 += 1;
        }
    }

    /// The geometric mean p99 (ms) measured at `point`, if noted.
    pub fn mean_p99_ms(&self, point: &[usize]) -> Option<f64> {
        self.p99_by_point.get(point).map(|(sum, n)| (sum / *n as f64).exp())
    }

    /// The same history without the trials of `points` (same running
    /// config and costs).
    pub fn without(&self, points: &[Point]) -> History {
        let mut rest = History {
            running: self.running.clone(),
            costs: self.costs,
            ..History::default()
        };
        for trial in self.trials.iter().filter(|t| !points.contains(&t.point)) {
            rest.push(trial.clone());
        }
        rest.p99_by_point = self
            .p99_by_point
            .iter()
            .filter(|(p, _)| !points.contains(p))
            .map(|(p, v)| (p.clone(), *v))
            .collect();
        rest
    }

    pub fn trials(&self) -> &[Trial] {
        &self.trials
    }

    pub fn len(&self) -> usize {
        self.trials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trials.is_empty()
    }

    pub fn contains(&self, point: &[usize]) -> bool {
        self.by_point.contains_key(point)
    }

    /// Mean loss of `point`, if evaluated.
    pub fn mean_loss(&self, point: &[usize]) -> Option<f64> {
        self.by_point.get(point).map(|(sum, n)| sum / *n as f64)
    }

    /// Distinct points with their mean loss.
    pub fn points(&self) -> impl Iterator<Item = (&Point, f64)> {
        self.by_point.iter().map(|(p, (sum, n))| (p, sum / *n as f64))
    }

    pub fn distinct(&self) -> usize {
        self.by_point.len()
    }

    /// The point with the lowest mean loss.
    pub fn best(&self) -> Option<(Point, f64)> {
        self.points()
            .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)))
            .map(|(p, l)| (p.clone(), l))
    }
}

/// Why a strategy could not propose.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{strategy}: {reason}")]
    Failed { strategy: &'static str, reason: String },
}

/// A search strategy: proposes candidates, learns from results.
pub trait Strategy: Send {
    fn name(&self) -> &'static str;
    /// The next point to evaluate; `Ok(None)` when the space is exhausted.
    fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError>;
    /// A trial finished (also replayed from the journal on resume).
    fn tell(&mut self, _space: &Space, _trial: &Trial) {}
}

/// Neighbours of `point`: each active parameter one level up or down, and
/// in a study of several models each field of every model together (all
/// batch sizes up: one live move, where one model at a time would take as
/// many trials as there are models); hot changes first (they cost no
/// restart), normalized and deduplicated.
pub fn neighbours(space: &Space, point: &[usize]) -> Vec<Point> {
    let mut hot = Vec::new();
    let mut cold = Vec::new();
    let mut moves: Vec<Vec<usize>> = space.families();
    moves.extend((0..space.dimensions()).map(|index| vec![index]));
    for members in moves {
        let members: Vec<usize> = members.into_iter().filter(|&i| space.is_active(point, i)).collect();
        let Some(&first) = members.first() else { continue };
        for step in [-1i64, 1] {
            let mut next = point.to_vec();
            for &index in &members {
                let level = point[index] as i64 + step;
                if (0..space.parameters[index].levels.len() as i64).contains(&level) {
                    next[index] = level as usize;
                }
            }
            let next = space.normalize(&next);
            if next == space.normalize(point) {
                continue;
            }
            let bucket = if space.parameters[first].apply == crate::space::Apply::Cold {
                &mut cold
            } else {
                &mut hot
            };
            if !bucket.contains(&next) {
                bucket.push(next);
            }
        }
    }
    hot.extend(cold);
    hot
}
