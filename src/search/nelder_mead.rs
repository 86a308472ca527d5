//! argmin's Nelder-Mead, driven ask/tell.
//!
//! argmin's `Executor` is push-style: it calls the cost function itself. So
//! the solver runs on a thread of its own with a cost function that sends
//! each parameter vector to this strategy and blocks until the loss comes
//! back: `ask` hands the solver's next point to the study, `tell` answers
//! it. Points are level coordinates, rounded to the nearest level; a point
//! already evaluated is answered from the history without a new trial. When
//! the simplex collapses the solver stops, and a new one starts from a random
//! simplex (a restart).

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use argmin::core::{CostFunction, Error, Executor};
use argmin::solver::neldermead::NelderMead;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::random::unseen_uniform;
use super::strategy::{History, SearchError, Strategy, Trial};
use crate::objective::FAILED_LOSS;
use crate::space::{Point, Space};

/// The cost function the solver thread calls.
struct RemoteCost {
    requests: Sender<Vec<f64>>,
    answers: std::sync::Mutex<Receiver<f64>>,
}

impl CostFunction for RemoteCost {
    type Param = Vec<f64>;
    type Output = f64;

    /// When the strategy is gone (the study stopped), every point costs
    /// `FAILED_LOSS` at once, so the solver winds down without blocking (an
    /// error here would panic inside argmin's Nelder-Mead `init`).
    fn cost(&self, param: &Vec<f64>) -> Result<f64, Error> {
        if self.requests.send(param.clone()).is_err() {
            return Ok(FAILED_LOSS);
        }
        let answers = self.answers.lock().map_err(|_| Error::msg("poisoned"))?;
        Ok(answers.recv().unwrap_or(FAILED_LOSS))
    }
}

struct Solver {
    requests: Receiver<Vec<f64>>,
    answers: Sender<f64>,
    _thread: JoinHandle<()>,
}

pub struct NelderMeadSearch {
    rng: SmallRng,
    solver: Option<Solver>,
    /// The point handed out by `ask` and not yet told.
    pending: Option<Point>,
    known: HashMap<Point, f64>,
}

impl NelderMeadSearch {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            solver: None,
            pending: None,
            known: HashMap::new(),
        }
    }

    fn start_solver(&mut self, space: &Space, history: &History) {
        let sizes = space.sizes();
        let start: Vec<f64> = match (history.best(), self.known.is_empty()) {
            (Some((best, _)), false) if self.rng.random::<f64>() < 0.5 => best.iter().map(|&l| l as f64).collect(),
            (None, true) => space.default_point().iter().map(|&l| l as f64).collect(),
            _ => unseen_uniform(space, history, &mut self.rng)
                .unwrap_or_else(|| space.default_point())
                .iter()
                .map(|&l| l as f64)
                .collect(),
        };
        // The simplex spans about a third of each parameter's levels.
        let mut simplex = vec![start.clone()];
        for (dimension, &size) in sizes.iter().enumerate() {
            let mut vertex = start.clone();
            let step = (size as f64 / 3.0).max(1.0);
            vertex[dimension] = if start[dimension] + step <= (size - 1) as f64 {
                start[dimension] + step
            } else {
                start[dimension] - step
            };
            simplex.push(vertex);
        }
        let (request_tx, request_rx) = channel();
        let (answer_tx, answer_rx) = channel();
        let cost = RemoteCost {
            requests: request_tx,
            answers: std::sync::Mutex::new(answer_rx),
        };
        let thread = std::thread::spawn(move || {
            let Ok(solver) = NelderMead::new(simplex).with_sd_tolerance(1e-3) else {
                return;
            };
            let _ = Executor::new(cost, solver)
                .configure(|state| state.max_iters(200))
                .run();
        });
        self.solver = Some(Solver {
            requests: request_rx,
            answers: answer_tx,
            _thread: thread,
        });
    }
}

fn to_point(space: &Space, x: &[f64]) -> Point {
    let raw: Vec<usize> = x
        .iter()
        .zip(space.sizes())
        .map(|(&v, size)| v.round().clamp(0.0, (size - 1) as f64) as usize)
        .collect();
    space.normalize(&raw)
}

/// Outside the box the solver is told the loss grows with the distance, so
/// it walks back in.
fn out_of_bounds_penalty(space: &Space, x: &[f64]) -> f64 {
    x.iter()
        .zip(space.sizes())
        .map(|(&v, size)| {
            if v < -0.5 {
                -0.5 - v
            } else if v > size as f64 - 0.5 {
                v - (size as f64 - 0.5)
            } else {
                0.0
            }
        })
        .sum()
}

impl Strategy for NelderMeadSearch {
    fn name(&self) -> &'static str {
        "nelder-mead"
    }

    fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
        for (point, loss) in history.points() {
            self.known.entry(point.clone()).or_insert(loss);
        }
        if let Some(pending) = &self.pending {
            return Ok(Some(pending.clone()));
        }
        for _restart in 0..50 {
            if self.solver.is_none() {
                self.start_solver(space, history);
            }
            let solver = self.solver.as_ref().expect("started above");
            // Answer the solver from what is known until it wants a new point.
            for _ in 0..10_000 {
                let Ok(x) = solver.requests.recv_timeout(Duration::from_secs(5)) else {
                    break;
                };
                let point = to_point(space, &x);
                let penalty = out_of_bounds_penalty(space, &x);
                if let Some(&loss) = self.known.get(&point) {
                    let loss = if loss >= FAILED_LOSS { FAILED_LOSS } else { loss };
                    let _ = solver.answers.send(loss + penalty * (1.0 + loss.abs()));
                    continue;
                }
                self.pending = Some(point.clone());
                return Ok(Some(point));
            }
            // The solver converged or stalled: start another.
            self.solver = None;
            if history.distinct() as u128 >= space.cardinality() {
                return Ok(None);
            }
        }
        Ok(unseen_uniform(space, history, &mut self.rng))
    }

    fn tell(&mut self, _space: &Space, trial: &Trial) {
        self.known.insert(trial.point.clone(), trial.loss);
        if self.pending.as_ref() == Some(&trial.point) {
            self.pending = None;
            if let Some(solver) = &self.solver {
                let _ = solver.answers.send(trial.loss);
            }
        }
    }
}
