//! A tree-structured Parzen estimator over the levels (the field's default,
//! as in Optuna): after a space-filling start, trials are split into the
//! best γ and the rest; each parameter gets a smoothed level density for
//! both (a Gaussian kernel over neighbouring levels, since levels are
//! ordered); candidates drawn from the good density are ranked by
//! l(x)/g(x) and the best unseen one is proposed (among near-ties, one that
//! keeps the running config's cold parameters, to save a restart). `with_local_steps` mixes
//! in hill-climb steps around the incumbent: TPE finds the right region,
//! the local steps refine it (batch size, delay and workers act smoothly).
//!
//! `cost_aware` is the same with what each move costs weighed in: it starts
//! with a Latin hypercube over the live parameters under the running cold
//! config, and ranks every proposal (TPE draws and local steps alike) by
//! expected improvement per second — TPE's EI is proportional to
//! r / (γ·r + 1 − γ) with r = l(x)/g(x) — so a restart is proposed only when
//! the model expects enough from it to pay for it.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::random::{latin_hypercube, unseen_uniform};
use super::strategy::{History, SearchError, Strategy};
use crate::space::{Point, Space};

pub struct Tpe {
    rng: SmallRng,
    start: Option<Vec<Point>>,
    candidates: usize,
    /// Two proposals in three are an unseen neighbour of the incumbent
    /// (local refinement) instead of a TPE draw (the ratio the replay
    /// benchmark preferred over one in two and one in three).
    local_steps: bool,
    /// Rank proposals by expected improvement per second of study time.
    cost_aware: bool,
    asks: usize,
}

/// The share of points the model counts as good.
const GAMMA: f64 = 0.2;

/// TPE's expected improvement, up to a constant, from log l(x)/g(x).
fn expected_improvement(log_ratio: f64) -> f64 {
    let r = log_ratio.clamp(-50.0, 50.0).exp();
    r / (GAMMA * r + 1.0 - GAMMA)
}

impl Tpe {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            start: None,
            candidates: 32,
            local_steps: false,
            cost_aware: false,
            asks: 0,
        }
    }

    /// TPE with local steps, every proposal ranked by expected improvement
    /// per second of study time (moves and window).
    pub fn cost_aware(seed: u64) -> Self {
        Self {
            local_steps: true,
            cost_aware: true,
            ..Self::new(seed)
        }
    }

    /// The opening design: the defaults and a Latin hypercube; when cost
    /// aware, over the live parameters under the running cold config.
    fn opening(&mut self, space: &Space, history: &History) -> Vec<Point> {
        let count = (space.dimensions() + 2).max(6);
        let mut points = latin_hypercube(space, count, &mut self.rng);
        points.insert(0, space.default_point());
        let running = history.running();
        if self.cost_aware && running.len() == space.dimensions() {
            let pin = |point: &Point| -> Point {
                let pinned: Point = point
                    .iter()
                    .enumerate()
                    .map(|(d, &level)| match (space.parameters[d].apply, running[d]) {
                        (crate::space::Apply::Cold, Some(now)) => now,
                        _ => level,
                    })
                    .collect();
                space.normalize(&pinned)
            };
            points = points.iter().map(pin).collect();
            points.dedup();
        }
        points.reverse();
        points
    }

    /// The best of `candidates` by expected improvement per second.
    fn cheapest_gain(
        &self,
        space: &Space,
        history: &History,
        model: &TpeModel,
        candidates: Vec<Point>,
    ) -> Option<Point> {
        let costs = history.costs();
        candidates
            .into_iter()
            .map(|point| {
                let gain = expected_improvement(model.score(&point, None));
                let seconds = costs.of_move(space, history.running(), &point).max(1e-3);
                (gain / seconds, point)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
            .map(|(_, point)| point)
    }

    /// TPE interleaved with hill-climb steps around the best point so far:
    /// the default strategy (see `search::DEFAULT_STRATEGY`).
    pub fn with_local_steps(seed: u64) -> Self {
        Self {
            local_steps: true,
            ..Self::new(seed)
        }
    }
}

/// Level weights for one parameter from the points' levels, with a kernel
/// of width `bandwidth` levels and a flat prior.
fn density(levels: usize, observed: &[usize], bandwidth: f64) -> Vec<f64> {
    let mut weights = vec![1.0 / levels as f64; levels];
    for &x in observed {
        for (k, w) in weights.iter_mut().enumerate() {
            let z = (k as f64 - x as f64) / bandwidth;
            *w += (-0.5 * z * z).exp();
        }
    }
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

pub(crate) fn sample(weights: &[f64], rng: &mut SmallRng) -> usize {
    let mut u = rng.random::<f64>();
    for (index, w) in weights.iter().enumerate() {
        if u < *w {
            return index;
        }
        u -= w;
    }
    weights.len() - 1
}

/// The Parzen model of one history: per parameter, the level density of
/// the best γ of the points (l) and of the rest (g).
pub(crate) struct TpeModel {
    densities: Vec<(Vec<f64>, Vec<f64>)>,
}

impl TpeModel {
    /// Fits the model; None with fewer than two distinct points.
    pub(crate) fn fit(space: &Space, history: &History) -> Option<Self> {
        let mut ranked: Vec<(&Point, f64)> = history.points().collect();
        if ranked.len() < 2 {
            return None;
        }
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        let good_count = ((ranked.len() as f64 * 0.2).ceil() as usize).clamp(1, 25);
        let (good, bad) = ranked.split_at(good_count);
        let densities = space
            .parameters
            .iter()
            .enumerate()
            .map(|(dimension, parameter)| {
                let size = parameter.levels.len();
                let bandwidth = (size as f64 / 8.0).max(0.7);
                let column = |points: &[(&Point, f64)]| points.iter().map(|(p, _)| p[dimension]).collect::<Vec<_>>();
                (
                    density(size, &column(good), bandwidth),
                    density(size, &column(bad), bandwidth),
                )
            })
            .collect();
        Some(Self { densities })
    }

    /// log l(x)/g(x) over the dimensions in `over` (all when None).
    pub(crate) fn score(&self, point: &[usize], over: Option<&[usize]>) -> f64 {
        let term = |d: usize| {
            let (l, g) = &self.densities[d];
            (l[point[d]] / g[point[d]]).ln()
        };
        match over {
            Some(dimensions) => dimensions.iter().map(|&d| term(d)).sum(),
            None => (0..point.len()).map(term).sum(),
        }
    }

    /// Unseen points drawn from the good density, with `pinned` dimensions
    /// (Some level) held fixed, each with its score; best first.
    pub(crate) fn candidates(
        &self,
        space: &Space,
        history: &History,
        pinned: &[Option<usize>],
        draws: usize,
        rng: &mut SmallRng,
    ) -> Vec<(Point, f64)> {
        let mut scored: Vec<(Point, f64)> = Vec::new();
        for _ in 0..draws {
            let raw: Vec<usize> = self
                .densities
                .iter()
                .enumerate()
                .map(|(d, (l, _))| pinned.get(d).copied().flatten().unwrap_or_else(|| sample(l, rng)))
                .collect();
            let point = space.normalize(&raw);
            if history.contains(&point) || scored.iter().any(|(p, _)| *p == point) {
                continue;
            }
            let score = self.score(&point, None);
            scored.push((point, score));
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored
    }
}

impl Strategy for Tpe {
    fn name(&self) -> &'static str {
        match (self.cost_aware, self.local_steps) {
            (true, _) => "tpe-cost",
            (false, true) => "tpe-local",
            (false, false) => "tpe",
        }
    }

    fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
        if self.start.is_none() {
            self.start = Some(self.opening(space, history));
        }
        let start = self.start.as_mut().expect("set above");
        while let Some(point) = start.pop() {
            if !history.contains(&point) {
                return Ok(Some(point));
            }
        }
        self.asks += 1;
        let model = TpeModel::fit(space, history);
        if self.local_steps && self.asks % 3 != 0 {
            if let Some((best, _)) = history.best() {
                let unseen: Vec<Point> = super::strategy::neighbours(space, &best)
                    .into_iter()
                    .filter(|p| !history.contains(p))
                    .collect();
                let next = match (&model, self.cost_aware) {
                    (Some(model), true) => self.cheapest_gain(space, history, model, unseen),
                    _ => unseen.into_iter().next(),
                };
                if next.is_some() {
                    return Ok(next);
                }
            }
        }
        let Some(model) = model else {
            return Ok(unseen_uniform(space, history, &mut self.rng));
        };
        let scored = model.candidates(space, history, &[], self.candidates * 4, &mut self.rng);
        if self.cost_aware {
            let drawn: Vec<Point> = scored.into_iter().map(|(p, _)| p).collect();
            return match self.cheapest_gain(space, history, &model, drawn) {
                Some(point) => Ok(Some(point)),
                None => Ok(unseen_uniform(space, history, &mut self.rng)),
            };
        }
        let best = prefer_without_restart(space, history.trials().last().map(|t| &t.point), scored);
        match best {
            Some(point) => Ok(Some(point)),
            None => Ok(unseen_uniform(space, history, &mut self.rng)),
        }
    }
}

/// Scores within this much (log density ratio) of the best count as a tie.
const SCORE_TIE: f64 = 0.1;

/// The best-scored candidate; among those tied with it, one that keeps the
/// cold parameters of `last` (the config the server runs), so no restart is
/// needed. Ties only: the search is not bent, restarts are just avoided
/// where the model does not care.
fn prefer_without_restart(space: &Space, last: Option<&Point>, scored: Vec<(Point, f64)>) -> Option<Point> {
    let top = scored.iter().map(|(_, s)| *s).fold(f64::NEG_INFINITY, f64::max);
    let tied = scored.iter().filter(|(_, s)| *s >= top - SCORE_TIE);
    let best = scored
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(p, _)| p.clone())?;
    let Some(last) = last else { return Some(best) };
    let mut tied: Vec<&(Point, f64)> = tied.collect();
    tied.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some(
        tied.into_iter()
            .find(|(p, _)| !space.needs_restart(last, p))
            .map_or(best, |(p, _)| p.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::test_support::space;

    #[test]
    fn ties_are_broken_towards_no_restart() {
        let space = space();
        // c (the third parameter) is cold.
        let last = vec![0, 0, 1];
        let scored = vec![(vec![5, 5, 3], 2.00), (vec![4, 4, 1], 1.95), (vec![1, 1, 1], 0.5)];
        assert_eq!(
            prefer_without_restart(&space, Some(&last), scored.clone()),
            Some(vec![4, 4, 1])
        );
        let clear_winner = vec![(vec![5, 5, 3], 3.0), (vec![4, 4, 1], 1.95)];
        assert_eq!(
            prefer_without_restart(&space, Some(&last), clear_winner),
            Some(vec![5, 5, 3])
        );
        assert_eq!(prefer_without_restart(&space, None, scored), Some(vec![5, 5, 3]));
    }
}
