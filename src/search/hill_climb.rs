//! Coordinate hill-climb, the analogue of Triton Model Analyzer's quick
//! search: start at the default config, try its neighbours (one parameter one
//! level up or down, hot changes first), move to the first one that improves,
//! and keep going in the direction that worked; at a local optimum, restart
//! from an unexplored random point.

use std::collections::VecDeque;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::random::unseen_uniform;
use super::strategy::{neighbours, History, SearchError, Strategy, Trial};
use crate::space::{Point, Space};

pub struct HillClimb {
    rng: SmallRng,
    current: Option<(Point, f64)>,
    queue: VecDeque<Point>,
}

impl HillClimb {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            current: None,
            queue: VecDeque::new(),
        }
    }
}

impl Strategy for HillClimb {
    fn name(&self) -> &'static str {
        "hill-climb"
    }

    fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
        if self.current.is_none() {
            if let Some(best) = history.best() {
                self.current = Some(best);
            } else {
                return Ok(Some(space.default_point()));
            }
        }
        loop {
            let sizes = space.sizes();
            while let Some(point) = self.queue.pop_front() {
                if point.iter().zip(&sizes).any(|(level, size)| level >= size) {
                    continue;
                }
                let point = space.normalize(&point);
                if !history.contains(&point) {
                    return Ok(Some(point));
                }
            }
            let (current, _) = self.current.clone().expect("set above");
            let fresh: Vec<Point> = neighbours(space, &current)
                .into_iter()
                .filter(|p| !history.contains(p))
                .collect();
            if !fresh.is_empty() {
                self.queue.extend(fresh);
                continue;
            }
            // A local optimum (every neighbour seen): restart elsewhere.
            let Some(restart) = unseen_uniform(space, history, &mut self.rng) else {
                return Ok(None);
            };
            self.current = Some((restart.clone(), f64::INFINITY));
            return Ok(Some(restart));
        }
    }

    fn tell(&mut self, _space: &Space, trial: &Trial) {
        let improves = match &self.current {
            None => true,
            Some((point, loss)) => trial.point == *point || trial.loss < *loss,
        };
        if !improves {
            return;
        }
        // Keep going the way that worked: the same step again comes first.
        let previous = self.current.as_ref().map(|(p, _)| p.clone());
        self.queue.clear();
        if let Some(previous) = previous.filter(|p| *p != trial.point) {
            let continued: Option<Point> = trial
                .point
                .iter()
                .zip(&previous)
                .map(|(&now, &before)| {
                    let step = now as i64 - before as i64;
                    let next = now as i64 + step;
                    (next >= 0).then_some(next as usize)
                })
                .collect();
            if let Some(continued) = continued {
                self.queue.push_back(continued);
            }
        }
        self.current = Some((trial.point.clone(), trial.loss));
    }
}
