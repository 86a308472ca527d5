//! Cold outer, hot inner: the strategy that spends a study's time on
//! measurements rather than restarts.
//!
//! A *stage* is one cold config (the levels of every parameter that needs a
//! restart). The first stage is the config the server already runs, so the
//! first moves are live; it opens with a Latin hypercube over the hot
//! parameters (`Knobs::initial_design`), so the model has spread-out points
//! to learn from. Within a stage only live (hot) parameters move:
//! first the best hot setting found so far (a warm start: what worked under
//! the last cold config usually works under this one), then TPE over the hot
//! parameters with the cold ones pinned, two proposals in three being a step
//! around the stage's best instead (as `tpe-local`). A stage lasts at least
//! as long in measurements as its restart cost (`SwitchCosts`), and at least
//! three trials; it ends when its best has not improved for three trials,
//! or at three times that length. The next cold config is an unvisited
//! neighbour (one cold parameter one level away) of the best cold config so
//! far, ranked by the TPE model over the cold parameters; when all of those
//! were visited, the best-ranked unvisited cold config anywhere; when none
//! is left, the next stage is under the cold config with the best trial so
//! far (which may be the current one: then no restart), so a good cold
//! config found late still gets its share of live trials.

use std::collections::BTreeSet;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::random::{latin_hypercube, unseen_uniform};
use super::strategy::{History, SearchError, Strategy, Trial};
use super::tpe::TpeModel;
use crate::space::{Apply, Point, Space};

/// The strategy's tuning knobs (chosen by `benches/knobs.rs` on a recorded
/// landscape other than the README's headline one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knobs {
    /// Points of the first stage's Latin hypercube over the hot parameters
    /// (after TorchServe's defaults).
    pub initial_design: usize,
    /// The fewest trials a stage gets.
    pub min_stage_trials: usize,
    /// Trials without a better stage best before a stage ends.
    pub patience: usize,
    /// Of every `local_cycle` proposals in a stage, all but one are local
    /// steps around the stage's best (the rest: TPE draws).
    pub local_cycle: usize,
    /// A stage ends at this many times its length at the latest.
    pub stage_cap: usize,
}

/// The knobs `staged` runs with.
/// Chosen by `cargo bench --bench knobs` on `tiny-cpu-cold.csv` (SLO 40 ms):
/// the lowest median seconds to target (78 s, p90 259 s, of 72 combinations;
/// a Latin-hypercube start and a longer stage cap both did worse).
pub const KNOBS: Knobs = Knobs {
    initial_design: 0,
    min_stage_trials: 3,
    patience: 4,
    local_cycle: 3,
    stage_cap: 2,
};

/// The cold levels of a point (hot dimensions None).
type ColdKey = Vec<Option<usize>>;

struct Stage {
    cold: ColdKey,
    trials: usize,
    best: Option<f64>,
    since_better: usize,
    /// Points still to try first (a warm start, or the initial design).
    queue: Vec<Point>,
}

pub struct Staged {
    rng: SmallRng,
    knobs: Knobs,
    stage: Option<Stage>,
    visited: BTreeSet<ColdKey>,
    asks: usize,
}

impl Staged {
    pub fn new(seed: u64) -> Self {
        Self::with_knobs(seed, KNOBS)
    }

    pub fn with_knobs(seed: u64, knobs: Knobs) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            knobs,
            stage: None,
            visited: BTreeSet::new(),
            asks: 0,
        }
    }
}

/// How many trials a stage is worth: at least its restart in measurement time.
fn stage_length(history: &History, min_stage_trials: usize) -> usize {
    let costs = history.costs();
    let per_trial = (costs.hot_s + costs.window_s).max(0.1);
    ((costs.restart_s / per_trial).ceil() as usize).max(min_stage_trials)
}

/// `point` with its cold levels replaced by `cold`'s.
fn with_cold(space: &Space, point: &[usize], cold: &ColdKey) -> Point {
    let raw: Point = point
        .iter()
        .zip(cold)
        .map(|(&level, cold)| cold.unwrap_or(level))
        .collect();
    space.normalize(&raw)
}

/// The cold key of the running config, when every cold level is known.
fn running_cold(space: &Space, history: &History) -> Option<ColdKey> {
    let running = history.running();
    if running.len() != space.dimensions() {
        return None;
    }
    space
        .parameters
        .iter()
        .zip(running)
        .map(|(p, level)| match p.apply {
            Apply::Cold => level.map(Some),
            Apply::Hot => Some(None),
        })
        .collect()
}

/// Every cold key, as points of the cold dimensions (hot ones None).
fn all_cold_keys(space: &Space) -> Vec<ColdKey> {
    let mut keys: Vec<ColdKey> = vec![vec![None; space.dimensions()]];
    for dimension in space.cold_dimensions() {
        let size = space.parameters[dimension].levels.len();
        keys = keys
            .into_iter()
            .flat_map(|key| {
                (0..size).map(move |level| {
                    let mut next = key.clone();
                    next[dimension] = Some(level);
                    next
                })
            })
            .collect();
        if keys.len() > 100_000 {
            break;
        }
    }
    keys
}

impl Staged {
    /// The best point of the history under `cold`, if any.
    fn best_under(space: &Space, history: &History, cold: &ColdKey) -> Option<(Point, f64)> {
        history
            .points()
            .filter(|(p, _)| space.cold_key(p) == *cold)
            .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)))
            .map(|(p, l)| (p.clone(), l))
    }

    /// The cold config of the next stage: an unvisited neighbour of the best
    /// cold config, else any unvisited one, ranked by the model over the
    /// cold dimensions (index order without a model).
    fn next_cold(&mut self, space: &Space, history: &History) -> Option<ColdKey> {
        let cold_dimensions = space.cold_dimensions();
        let best_cold = history.best().map(|(p, _)| space.cold_key(&p))?;
        let model = TpeModel::fit(space, history);
        let rank = |key: &ColdKey| -> f64 {
            let point: Point = key.iter().map(|l| l.unwrap_or(0)).collect();
            model.as_ref().map_or(0.0, |m| m.score(&point, Some(&cold_dimensions)))
        };
        let pick = |keys: Vec<ColdKey>| {
            keys.into_iter()
                .map(|k| (rank(&k), k))
                .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
                .map(|(_, k)| k)
        };
        let mut neighbours = Vec::new();
        for &dimension in &cold_dimensions {
            for step in [-1i64, 1] {
                let level = best_cold[dimension].expect("a cold dimension") as i64 + step;
                if level < 0 || level >= space.parameters[dimension].levels.len() as i64 {
                    continue;
                }
                let mut key = best_cold.clone();
                key[dimension] = Some(level as usize);
                if !self.visited.contains(&key) {
                    neighbours.push(key);
                }
            }
        }
        if let Some(key) = pick(neighbours) {
            return Some(key);
        }
        if let Some(key) = pick(
            all_cold_keys(space)
                .into_iter()
                .filter(|k| !self.visited.contains(k))
                .collect(),
        ) {
            return Some(key);
        }
        // Everything visited: the cold config with the best trial (perhaps
        // this one again).
        self.visited
            .iter()
            .filter_map(|k| Self::best_under(space, history, k).map(|(_, loss)| (loss, k.clone())))
            .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
            .map(|(_, k)| k)
    }

    fn begin_stage(&mut self, space: &Space, history: &History, cold: ColdKey) {
        self.visited.insert(cold.clone());
        let queue: Vec<Point> = match history.best() {
            Some((best, _)) => vec![with_cold(space, &best, &cold)],
            None => {
                let mut design: Vec<Point> = latin_hypercube(space, self.knobs.initial_design, &mut self.rng)
                    .iter()
                    .map(|p| with_cold(space, p, &cold))
                    .collect();
                // TorchServe's defaults first, when they run under this cold config.
                design.insert(0, with_cold(space, &space.default_point(), &cold));
                design.reverse();
                design
            }
        };
        self.stage = Some(Stage {
            best: Self::best_under(space, history, &cold).map(|(_, l)| l),
            cold,
            trials: 0,
            since_better: 0,
            queue,
        });
    }

    fn stage_over(&self, history: &History) -> bool {
        let Some(stage) = &self.stage else {
            return true;
        };
        let length = stage_length(history, self.knobs.min_stage_trials);
        stage.trials >= length * self.knobs.stage_cap
            || (stage.trials >= length && stage.since_better >= self.knobs.patience)
    }

    /// A hot move under the current stage's cold config, or None when the
    /// stage has nothing unseen left.
    fn propose_hot(&mut self, space: &Space, history: &History) -> Option<Point> {
        let stage = self.stage.as_mut().expect("a stage is open");
        while let Some(point) = stage.queue.pop() {
            if !history.contains(&point) {
                return Some(point);
            }
        }
        let cold = stage.cold.clone();
        self.asks += 1;
        if self.asks % self.knobs.local_cycle.max(1) != 0 {
            if let Some((best, _)) = Self::best_under(space, history, &cold) {
                let step = super::strategy::neighbours(space, &best)
                    .into_iter()
                    .find(|p| space.cold_key(p) == cold && !history.contains(p));
                if step.is_some() {
                    return step;
                }
            }
        }
        if let Some(model) = TpeModel::fit(space, history) {
            if let Some((point, _)) = model
                .candidates(space, history, &cold, 128, &mut self.rng)
                .into_iter()
                .next()
            {
                return Some(point);
            }
        }
        // Few points so far, or the draws all seen: any unseen point here.
        (0..64)
            .filter_map(|_| unseen_uniform(space, history, &mut self.rng))
            .map(|p| with_cold(space, &p, &cold))
            .find(|p| !history.contains(p))
    }
}

impl Strategy for Staged {
    fn name(&self) -> &'static str {
        "staged"
    }

    fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
        if self.stage.is_none() {
            let cold = running_cold(space, history).unwrap_or_else(|| space.cold_key(&space.default_point()));
            self.begin_stage(space, history, cold);
        }
        for _ in 0..2 {
            if !self.stage_over(history) {
                if let Some(point) = self.propose_hot(space, history) {
                    return Ok(Some(point));
                }
            }
            match self.next_cold(space, history) {
                Some(cold) => self.begin_stage(space, history, cold),
                None => break,
            }
        }
        // Every cold config visited: go on under the best one, then anywhere.
        if let Some((best, _)) = history.best() {
            let cold = space.cold_key(&best);
            self.begin_stage(space, history, cold);
            if let Some(point) = self.propose_hot(space, history) {
                return Ok(Some(point));
            }
        }
        Ok(unseen_uniform(space, history, &mut self.rng))
    }

    fn tell(&mut self, space: &Space, trial: &Trial) {
        let Some(stage) = self.stage.as_mut() else {
            return;
        };
        if space.cold_key(&trial.point) != stage.cold {
            return;
        }
        stage.trials += 1;
        if stage.best.is_none_or(|best| trial.loss < best) {
            stage.best = Some(trial.loss);
            stage.since_better = 0;
        } else {
            stage.since_better += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::test_support::{loss, space};
    use crate::search::SwitchCosts;

    #[test]
    fn stages_start_where_the_server_runs_and_stay_hot() {
        let space = space();
        let mut history = History::default();
        history.set_running(vec![Some(4), Some(4), Some(3)]);
        let mut staged = Staged::new(1);
        let mut points = Vec::new();
        for _ in 0..3 {
            let point = staged.ask(&space, &history).unwrap().unwrap();
            let trial = Trial {
                loss: loss(&point),
                point: point.clone(),
            };
            history.set_running(point.iter().map(|&l| Some(l)).collect());
            history.push(trial.clone());
            staged.tell(&space, &trial);
            points.push(point);
        }
        assert!(
            points.iter().all(|p| p[2] == 3),
            "the first stage keeps the running cold level: {points:?}"
        );
    }

    #[test]
    fn a_costly_restart_buys_a_longer_stage() {
        let mut history = History::default();
        assert_eq!(stage_length(&history, 3), 3);
        history.set_costs(SwitchCosts {
            restart_s: 60.0,
            hot_s: 1.0,
            window_s: 4.0,
        });
        assert_eq!(stage_length(&history, 3), 12);
    }

    #[test]
    fn cold_keys_enumerate_the_cold_grid() {
        let space = space();
        let keys = all_cold_keys(&space);
        assert_eq!(keys.len(), 4);
        assert!(keys.iter().all(|k| k[0].is_none() && k[1].is_none() && k[2].is_some()));
    }
}
