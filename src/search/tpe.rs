//! A tree-structured Parzen estimator over the levels (the field's default,
//! as in Optuna): after a space-filling start, trials are split into the
//! best γ and the rest; each parameter gets a smoothed level density for
//! both (a Gaussian kernel over neighbouring levels, since levels are
//! ordered); candidates drawn from the good density are ranked by
//! l(x)/g(x) and the best unseen one is proposed (among near-ties, one that
//! keeps the running config's cold parameters, to save a restart). `with_local_steps` mixes
//! in hill-climb steps around the incumbent: TPE finds the right region,
//! the local steps refine it (batch size, delay and workers act smoothly).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::random::{latin_hypercube, unseen_uniform};
use super::{History, SearchError, Strategy};
use crate::space::{Point, Space};

pub struct Tpe {
    rng: SmallRng,
    start: Option<Vec<Point>>,
    candidates: usize,
    /// Two proposals in three are an unseen neighbour of the incumbent
    /// (local refinement) instead of a TPE draw (the ratio the replay
    /// benchmark preferred over one in two and one in three).
    local_steps: bool,
    asks: usize,
}

impl Tpe {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            start: None,
            candidates: 32,
            local_steps: false,
            asks: 0,
        }
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

fn sample(weights: &[f64], rng: &mut SmallRng) -> usize {
    let mut u = rng.random::<f64>();
    for (index, w) in weights.iter().enumerate() {
        if u < *w {
            return index;
        }
        u -= w;
    }
    weights.len() - 1
}

impl Strategy for Tpe {
    fn name(&self) -> &'static str {
        if self.local_steps {
            "tpe-local"
        } else {
            "tpe"
        }
    }

    fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
        let start = self.start.get_or_insert_with(|| {
            let count = (space.dimensions() + 2).max(6);
            let mut points = latin_hypercube(space, count, &mut self.rng);
            points.insert(0, space.default_point());
            points.reverse();
            points
        });
        while let Some(point) = start.pop() {
            if !history.contains(&point) {
                return Ok(Some(point));
            }
        }
        self.asks += 1;
        if self.local_steps && self.asks % 3 != 0 {
            if let Some((best, _)) = history.best() {
                if let Some(next) = super::neighbours(space, &best)
                    .into_iter()
                    .find(|p| !history.contains(p))
                {
                    return Ok(Some(next));
                }
            }
        }
        let mut ranked: Vec<(&Point, f64)> = history.points().collect();
        if ranked.len() < 2 {
            return Ok(unseen_uniform(space, history, &mut self.rng));
        }
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        let good_count = ((ranked.len() as f64 * 0.2).ceil() as usize).clamp(1, 25);
        let (good, bad) = ranked.split_at(good_count);
        let models: Vec<(Vec<f64>, Vec<f64>)> = space
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
        let mut scored: Vec<(Point, f64)> = Vec::new();
        for _ in 0..self.candidates * 4 {
            let raw: Vec<usize> = models.iter().map(|(l, _)| sample(l, &mut self.rng)).collect();
            let point = space.normalize(&raw);
            if history.contains(&point) || scored.iter().any(|(p, _)| *p == point) {
                continue;
            }
            let score: f64 = models.iter().zip(&point).map(|((l, g), &x)| (l[x] / g[x]).ln()).sum();
            scored.push((point, score));
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
