//! Random search: a Latin-hypercube start (each parameter's levels covered
//! evenly), then uniform draws; never the same point twice.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::strategy::{History, SearchError, Strategy};
use crate::space::{Point, Space};

pub struct RandomSearch {
    rng: SmallRng,
    start: Vec<Point>,
}

impl RandomSearch {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            start: Vec::new(),
        }
    }
}

/// `count` points spread over the space: each parameter's levels are cut
/// into `count` strata, one point per stratum, strata shuffled per parameter.
pub fn latin_hypercube(space: &Space, count: usize, rng: &mut SmallRng) -> Vec<Point> {
    let mut columns: Vec<Vec<usize>> = Vec::new();
    for parameter in &space.parameters {
        let size = parameter.levels.len();
        let mut strata: Vec<usize> = (0..count)
            .map(|i| (((i as f64 + rng.random::<f64>()) / count as f64) * size as f64) as usize)
            .map(|level| level.min(size - 1))
            .collect();
        strata.shuffle(rng);
        columns.push(strata);
    }
    (0..count)
        .map(|i| space.normalize(&columns.iter().map(|c| c[i]).collect::<Vec<_>>()))
        .collect()
}

/// A uniformly random point.
pub fn uniform(space: &Space, rng: &mut SmallRng) -> Point {
    let point: Vec<usize> = space.sizes().iter().map(|&n| rng.random_range(0..n)).collect();
    space.normalize(&point)
}

/// A point not yet evaluated, drawn at random (None when none is found).
pub fn unseen_uniform(space: &Space, history: &History, rng: &mut SmallRng) -> Option<Point> {
    (0..10_000).map(|_| uniform(space, rng)).find(|p| !history.contains(p))
}

impl Strategy for RandomSearch {
    fn name(&self) -> &'static str {
        "random"
    }

    fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
        if history.is_empty() && self.start.is_empty() {
            let count = (space.dimensions() + 1).max(5);
            self.start = latin_hypercube(space, count, &mut self.rng);
            self.start.reverse();
        }
        while let Some(point) = self.start.pop() {
            if !history.contains(&point) {
                return Ok(Some(point));
            }
        }
        Ok(unseen_uniform(space, history, &mut self.rng))
    }
}
