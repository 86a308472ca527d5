//! A strategy that starts from a prediction (`Guess`es, from the landscape
//! model of `predict`) and corrects it with every measurement, then hands
//! over to another strategy once the prediction stops paying.
//!
//! Each guess is a point with the throughput the prediction expects and
//! the chance it meets the constraints, and what each prior landscape alone
//! expects there. Before each proposal the prior landscapes are weighed
//! again by how well each agrees with what was measured (`Agreement`: its
//! scale fitted, then the likelihood of what is left and of each trial's
//! feasibility), so a study learns which recorded model its model is like
//! from its first few trials (as Morphling adapts its meta-model to a new
//! service from a few samples). Each landscape's p99 is scaled the same
//! way by the p99s measured (`History::mean_p99_ms`), its misfit counts
//! in its likelihood, and its chance of meeting the p99 objective is
//! judged again from the scaled p99: feasibility alone is one bit a
//! trial, while a p99 at two thirds of the objective says how much room
//! its neighbours have (tiny at 16 users: 9 trials to the target instead
//! of 22, where its predicted chances sat near one half). Then the guesses are
//! corrected by what was measured: throughput by the mean log ratio of
//! measured to predicted throughput of the feasible points measured, the
//! chance of meeting the constraints by how much more often they were
//! missed than predicted — first over every measurement (the whole
//! prediction moves: a model twice as fast as predicted everywhere keeps
//! its ranking), then what is left near each guess (a kernel over level
//! distance, one level one unit); each shrunk toward the prediction by
//! `PRIOR_STRENGTH` measurements' worth. (Correcting only near the
//! measurements made every unmeasured guess look better than a measured
//! neighbourhood that had merely been predicted too high.) The unmeasured guess with the highest corrected
//! expected throughput (throughput × chance) is proposed; one that needs a
//! restart from where the server runs must promise `RESTART_MARGIN` more
//! (a restart costs several windows, and predictions that tie — a
//! parameter the prior landscapes did not vary — should not cost one).
//! After `PATIENCE` proposals in a row that did not beat the best loss so
//! far by `IMPROVEMENT`, after `MOST_PROPOSALS` in all, or when no guess is
//! left, the inner strategy takes over: a prediction that is right pays
//! within a few trials, one that is wrong must not keep the search creeping
//! along it. The inner strategy then searches as it would have from the
//! start: it is not shown the guided trials (except those it asks for, which
//! are not measured again), and it is told the server runs what it ran when
//! the guided phase began. Shown where the guided phase left the server
//! instead, `staged` opened its first stage there, under a cold config a
//! wrong prediction had chosen, and on a noisy landscape locked onto it
//! (tiny at 16 users: 55 trials against 16 from nothing); so started, a
//! wrong prediction costs at most the guided proposals.

use std::collections::HashMap;

use super::strategy::{History, SearchError, Strategy, Trial};
use crate::space::{Point, Space};

/// What the prediction expects of one point.
#[derive(Debug, Clone, PartialEq)]
pub struct Guess {
    pub point: Point,
    pub throughput_rps: f64,
    /// Chance of meeting the constraints (p99, errors, memory).
    pub chance_feasible: f64,
    /// What each prior landscape alone expects of the point, in the same
    /// order for every guess (empty: the prediction is not reweighed).
    pub components: Vec<Component>,
    /// The p99 objective the chances were judged against, where the
    /// components predict p99 (`Component::latency`; None: feasibility is
    /// corrected only by which trials met the constraints).
    pub slo_p99_ms: Option<f64>,
}

/// One prior landscape's part of a guess: its kernel mass there (its
/// share of the mixture before anything is measured) and what it alone
/// expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub mass: f64,
    pub throughput_rps: f64,
    pub chance_feasible: f64,
    /// What it expects of p99, where it predicts latency.
    pub latency: Option<Latency>,
}

/// A prior landscape's p99 at a point: its chance of feasibility is
/// `chance_otherwise` × the chance this p99 stays within the objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p99_ms: f64,
    /// Standard deviation of `ln` p99.
    pub ln_sd: f64,
    /// The chance of meeting the other constraints (errors, memory).
    pub chance_otherwise: f64,
}

/// Guided proposals in a row without a better loss before handing over.
pub const PATIENCE: usize = 3;
/// A guided proposal counts as better when its loss beats the best by this
/// share (a throughput 2 % higher is within one window's noise).
pub const IMPROVEMENT: f64 = 0.02;
/// Guided proposals at most, before the inner strategy takes over.
pub const MOST_PROPOSALS: usize = 8;
/// How many measurements' worth the prediction counts for in a correction.
pub const PRIOR_STRENGTH: f64 = 1.0;
/// How much more a guess that needs a restart must promise.
pub const RESTART_MARGIN: f64 = 0.15;
/// A loss below this is a feasible trial's (−throughput); above, infeasible.
const FEASIBLE_BELOW: f64 = 0.5;
/// How far (sd of `ln` throughput) a measurement may stray from what a
/// prior landscape expects, once its scale is fitted, before that
/// landscape loses weight: a window's noise and the model's own error.
pub const AGREEMENT_SD: f64 = 0.25;
/// A prior landscape's chance of feasibility counts as at least this and
/// at most one less it (one surprise must not rule a landscape out).
const LEAST_CHANCE: f64 = 0.1;

/// The guided strategy around an inner one.
pub struct Guided {
    guesses: Vec<Guess>,
    by_point: HashMap<Point, usize>,
    inner: Box<dyn Strategy>,
    proposed: Vec<Point>,
    /// Guided trials the inner strategy asked for, and so was shown.
    revealed: Vec<Point>,
    /// What the server ran when the guided phase began (what the inner
    /// strategy is told it runs: see the module doc).
    start: Option<Vec<Option<usize>>>,
    best_loss: f64,
    misses: usize,
    handed_over: bool,
}

impl Guided {
    pub fn new(guesses: Vec<Guess>, inner: Box<dyn Strategy>) -> Self {
        let by_point = guesses.iter().enumerate().map(|(i, g)| (g.point.clone(), i)).collect();
        Self {
            guesses,
            by_point,
            inner,
            proposed: Vec::new(),
            revealed: Vec::new(),
            start: None,
            best_loss: f64::INFINITY,
            misses: 0,
            handed_over: false,
        }
    }

    /// Whether the inner strategy has taken over.
    pub fn handed_over(&self) -> bool {
        self.handed_over
    }

    /// The guesses with each prior landscape weighed again by how well it
    /// agrees with what was measured (see `Agreement`): the mixture of what
    /// each expects, its throughput scaled by its agreement, in shares of
    /// its mass times its likelihood. A guess is that mixture with the
    /// likelihoods all equal (`predict::guesses`), so before anything is
    /// measured the guesses are the prediction as it was.
    ///
    /// Where the landscapes predict p99 and p99s were measured, each
    /// landscape's chance of meeting the objective is judged again with
    /// its p99 scaled as the measurements say (`Agreement::p99_log_scale`):
    /// a trial that met a 23 ms objective at 15 ms says its neighbours very
    /// likely will too, which its feasibility alone (one bit) does not.
    fn reweighed(&self, history: &History) -> Vec<Guess> {
        let components = self.guesses.first().map_or(0, |g| g.components.len());
        let measured: Vec<(&Guess, f64, Option<f64>)> = history
            .points()
            .filter_map(|(point, loss)| {
                Some((
                    &self.guesses[*self.by_point.get(point)?],
                    loss,
                    history.mean_p99_ms(point),
                ))
            })
            .collect();
        if components == 0 || measured.is_empty() {
            return self.guesses.clone();
        }
        let agreements: Vec<Agreement> = (0..components)
            .map(|j| Agreement::of(measured.iter().map(|(g, loss, p99)| (&g.components[j], *loss, *p99))))
            .collect();
        let most = agreements
            .iter()
            .map(|a| a.log_likelihood)
            .fold(f64::NEG_INFINITY, f64::max);
        let weights_of = |guess: &Guess| -> Option<Vec<f64>> {
            let weights: Vec<f64> = guess
                .components
                .iter()
                .zip(&agreements)
                .map(|(c, a)| c.mass * (a.log_likelihood - most).exp())
                .collect();
            let total: f64 = weights.iter().sum();
            (total.is_finite() && total > 1e-300).then_some(weights)
        };
        self.guesses
            .iter()
            .map(|guess| {
                let Some(weights) = weights_of(guess) else {
                    return guess.clone();
                };
                let total: f64 = weights.iter().sum();
                let mean = |value: &dyn Fn(&Component, &Agreement) -> f64| {
                    guess
                        .components
                        .iter()
                        .zip(&agreements)
                        .zip(&weights)
                        .map(|((c, a), w)| w * value(c, a))
                        .sum::<f64>()
                        / total
                };
                // Its chance judged again with its p99 scaled as fitted.
                let chance = |c: &Component, a: &Agreement| match (c.latency, guess.slo_p99_ms, a.p99_log_scale) {
                    (Some(latency), Some(slo), Some(scale)) => {
                        let z = (slo.ln() - latency.p99_ms.ln() - scale) / latency.ln_sd.max(1e-9);
                        latency.chance_otherwise * crate::stats::normal_cdf(z)
                    }
                    _ => c.chance_feasible,
                };
                Guess {
                    throughput_rps: mean(&|c, a| c.throughput_rps * a.log_scale.exp()),
                    chance_feasible: mean(&|c, a| chance(c, a)),
                    ..guess.clone()
                }
            })
            .collect()
    }

    /// The unmeasured guess with the best corrected expectation.
    fn best_unmeasured(&self, space: &Space, history: &History) -> Option<Point> {
        let guesses = self.reweighed(history);
        let errors = self.errors(&guesses, history);
        let global = Correction::of(errors.iter().map(|e| (1.0, e.clone())));
        let corrected = |guess: &Guess| {
            let local = Correction::of(
                errors
                    .iter()
                    .map(|e| (kernel(&e.point, &guess.point), e))
                    .map(|(k, e)| (k, global.residual(e))),
            );
            let log_ratio = global.log_ratio + local.log_ratio;
            let infeasible = (1.0 - guess.chance_feasible + global.infeasible + local.infeasible).clamp(0.0, 1.0);
            guess.throughput_rps * log_ratio.exp() * (1.0 - infeasible)
        };
        guesses
            .iter()
            .filter(|g| !history.contains(&space.normalize(&g.point)))
            .map(|g| {
                let restart = history.needs_restart(space, &g.point);
                (corrected(g) * if restart { 1.0 - RESTART_MARGIN } else { 1.0 }, g)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, g)| space.normalize(&g.point))
    }

    /// How wrong the prediction was at each measured point it predicted.
    fn errors(&self, guesses: &[Guess], history: &History) -> Vec<PredictionError> {
        history
            .points()
            .filter_map(|(point, loss)| {
                let guess = &guesses[*self.by_point.get(point)?];
                let feasible = loss < FEASIBLE_BELOW && -loss > 0.0;
                Some(PredictionError {
                    point: point.clone(),
                    // ln(measured / predicted) throughput, where it was feasible.
                    log_ratio: (feasible && guess.throughput_rps > 0.0).then(|| (-loss / guess.throughput_rps).ln()),
                    // Measured infeasible (1 or 0) less the predicted chance of it.
                    infeasible: f64::from(u8::from(!feasible)) - (1.0 - guess.chance_feasible),
                })
            })
            .collect()
    }
}

/// How well one prior landscape agrees with the measurements so far: its
/// scale fitted (the mean `ln` ratio of measured to expected throughput
/// where feasible, shrunk toward none by `PRIOR_STRENGTH` measurements'
/// worth: a model twice as fast as the recorded one is still like it),
/// and its p99 scale likewise where p99s were measured; then the
/// log-likelihood of what is left of both (normal, `AGREEMENT_SD`) and of
/// each measurement's feasibility under its chance. A landscape whose
/// shape the measurements contradict (a second worker predicted to help,
/// measured to cost half) loses weight; one that agrees gains it: the
/// study learns which recorded model the new one is like.
#[derive(Debug, Clone, Copy)]
struct Agreement {
    log_scale: f64,
    /// Its p99 scale, fitted the same way (None: no p99 to fit it to).
    p99_log_scale: Option<f64>,
    log_likelihood: f64,
}

impl Agreement {
    /// From each measured point: what the landscape expects there, the
    /// trial's loss and the p99 it measured (if known).
    fn of<'a>(measured: impl Iterator<Item = (&'a Component, f64, Option<f64>)>) -> Self {
        let mut ratios = Vec::new();
        let mut p99_ratios = Vec::new();
        let mut log_likelihood = 0.0;
        for (component, loss, p99_ms) in measured {
            let feasible = loss < FEASIBLE_BELOW && -loss > 0.0;
            let chance = component.chance_feasible.clamp(LEAST_CHANCE, 1.0 - LEAST_CHANCE);
            log_likelihood += if feasible { chance.ln() } else { (1.0 - chance).ln() };
            if feasible && component.throughput_rps > 0.0 {
                ratios.push((-loss / component.throughput_rps).ln());
            }
            if let (Some(measured), Some(latency)) = (p99_ms, component.latency) {
                p99_ratios.push((measured / latency.p99_ms).ln());
            }
        }
        let fit = |ratios: &[f64]| {
            let scale = ratios.iter().sum::<f64>() / (PRIOR_STRENGTH + ratios.len() as f64);
            let misfit = ratios
                .iter()
                .map(|r| (r - scale).powi(2) / (2.0 * AGREEMENT_SD.powi(2)))
                .sum::<f64>();
            (scale, misfit)
        };
        let (log_scale, misfit) = fit(&ratios);
        log_likelihood -= misfit;
        let p99_log_scale = (!p99_ratios.is_empty()).then(|| {
            let (scale, misfit) = fit(&p99_ratios);
            log_likelihood -= misfit;
            scale
        });
        Self {
            log_scale,
            p99_log_scale,
            log_likelihood,
        }
    }
}

/// How wrong the prediction was at one measured point.
#[derive(Debug, Clone)]
struct PredictionError {
    point: Point,
    log_ratio: Option<f64>,
    infeasible: f64,
}

/// A correction of the prediction: the weighted mean of its errors, shrunk
/// toward none by `PRIOR_STRENGTH` measurements' worth. The global one
/// (every measurement, equal weights) moves the whole prediction: a model
/// that is twice as fast as predicted everywhere keeps its ranking. The
/// local one (kernel weights) corrects what is left near each measurement.
#[derive(Debug, Clone, Copy, Default)]
struct Correction {
    log_ratio: f64,
    infeasible: f64,
}

impl Correction {
    fn of(weighted: impl Iterator<Item = (f64, PredictionError)>) -> Self {
        let (mut ratio_sum, mut ratio_weight, mut infeasible_sum, mut weight_sum) = (0.0, 0.0, 0.0, 0.0);
        for (k, error) in weighted {
            if let Some(r) = error.log_ratio {
                ratio_sum += k * r;
                ratio_weight += k;
            }
            infeasible_sum += k * error.infeasible;
            weight_sum += k;
        }
        Self {
            log_ratio: ratio_sum / (PRIOR_STRENGTH + ratio_weight),
            infeasible: infeasible_sum / (PRIOR_STRENGTH + weight_sum),
        }
    }

    /// What is left of `error` once this correction is made.
    fn residual(&self, error: &PredictionError) -> PredictionError {
        PredictionError {
            point: error.point.clone(),
            log_ratio: error.log_ratio.map(|r| r - self.log_ratio),
            infeasible: error.infeasible - self.infeasible,
        }
    }
}

/// The kernel over level distance: one level of one parameter is one unit.
fn kernel(a: &[usize], b: &[usize]) -> f64 {
    let squared: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    (-0.5 * squared).exp()
}

impl Strategy for Guided {
    fn name(&self) -> &'static str {
        "guided"
    }

    fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
        let start = self.start.get_or_insert_with(|| history.running().to_vec()).clone();
        if !self.handed_over {
            if let Some(point) = self.best_unmeasured(space, history) {
                self.proposed.push(point.clone());
                return Ok(Some(point));
            }
            self.handed_over = true;
        }
        // The inner strategy searches as if from the start, not shown the
        // guided trials, except those it asks for itself: it is shown the
        // trial instead of measuring the point again (and, never seeing it,
        // asking for it again and again). Each turn of the loop that does
        // not return reveals one more guided point: it ends.
        loop {
            let hidden: Vec<Point> = self
                .proposed
                .iter()
                .filter(|p| !self.revealed.contains(p))
                .cloned()
                .collect();
            let mut as_from_the_start = history.without(&hidden);
            as_from_the_start.set_running(start.clone());
            let Some(point) = self.inner.ask(space, &as_from_the_start)? else {
                return Ok(None);
            };
            let point = space.normalize(&point);
            if !hidden.contains(&point) || !history.contains(&point) {
                return Ok(Some(point));
            }
            for trial in history.trials().iter().filter(|t| t.point == point) {
                self.inner.tell(space, trial);
            }
            self.revealed.push(point);
        }
    }

    fn tell(&mut self, space: &Space, trial: &Trial) {
        if self.handed_over {
            self.inner.tell(space, trial);
        }
        let improved = trial.loss < self.best_loss - IMPROVEMENT * self.best_loss.abs().min(trial.loss.abs());
        self.best_loss = self.best_loss.min(trial.loss);
        if self.handed_over || !self.proposed.contains(&trial.point) {
            return;
        }
        self.misses = if improved { 0 } else { self.misses + 1 };
        if self.misses >= PATIENCE || self.proposed.len() >= MOST_PROPOSALS {
            self.handed_over = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::test_support::space;
    use crate::search::{make_strategy, StrategyKind};

    fn guesses(space: &Space, best: &Point) -> Vec<Guess> {
        let sizes = space.sizes();
        let count: usize = sizes.iter().product();
        let mut all = Vec::new();
        for index in 0..count {
            let mut rest = index;
            let p: Point = sizes
                .iter()
                .map(|size| {
                    let level = rest % size;
                    rest /= size;
                    level
                })
                .collect();
            let distance: usize = p.iter().zip(best).map(|(a, b)| a.abs_diff(*b)).sum();
            all.push(Guess {
                point: p.clone(),
                throughput_rps: 100.0 / (1.0 + distance as f64),
                chance_feasible: 0.9,
                components: Vec::new(),
                slo_p99_ms: None,
            });
        }
        all
    }

    #[test]
    fn proposes_the_predicted_best_first_then_hands_over_after_misses() {
        let space = space();
        let best = space.default_point().iter().map(|_| 1).collect::<Point>();
        let mut guided = Guided::new(guesses(&space, &best), make_strategy(StrategyKind::Random, 1));
        let mut history = History::default();
        // The baseline, measured before the strategy is asked, did well.
        let baseline = Trial {
            point: space.default_point(),
            loss: -50.0,
        };
        guided.tell(&space, &baseline);
        history.push(baseline);
        let first = guided.ask(&space, &history).unwrap().unwrap();
        assert_eq!(first, space.normalize(&best));
        // It disappoints, and so do the next ones: the inner strategy takes over.
        let mut point = first;
        for n in 1..=PATIENCE {
            assert!(!guided.handed_over(), "after {n} misses");
            let trial = Trial { point, loss: 5.0 };
            guided.tell(&space, &trial);
            history.push(trial);
            point = guided.ask(&space, &history).unwrap().unwrap();
        }
        assert!(guided.handed_over());
    }

    #[test]
    fn a_model_faster_than_predicted_everywhere_keeps_its_ranking() {
        let space = space();
        let best = space.default_point().iter().map(|_| 1).collect::<Point>();
        let guesses = guesses(&space, &best);
        let mut guided = Guided::new(guesses.clone(), make_strategy(StrategyKind::Random, 1));
        // The baseline (far from the predicted best) serves three times
        // what was predicted for it: the whole prediction moves up, and
        // the predicted best stays the best bet (a local-only correction
        // would prefer the baseline's neighbours).
        let baseline = space.default_point();
        let predicted = guesses.iter().find(|g| g.point == baseline).unwrap().throughput_rps;
        let mut history = History::default();
        history.push(Trial {
            point: baseline,
            loss: -3.0 * predicted,
        });
        assert_eq!(guided.ask(&space, &history).unwrap().unwrap(), space.normalize(&best));
    }

    /// An inner strategy that asks for the first point (in level order)
    /// it has not been shown, and remembers what it was told.
    struct FirstUnseen {
        told: std::sync::Arc<std::sync::Mutex<Vec<Point>>>,
    }

    impl Strategy for FirstUnseen {
        fn name(&self) -> &'static str {
            "first-unseen"
        }
        fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
            let all = guesses(space, &space.default_point());
            Ok(all.into_iter().map(|g| g.point).find(|p| !history.contains(p)))
        }
        fn tell(&mut self, _space: &Space, trial: &Trial) {
            self.told.lock().unwrap().push(trial.point.clone());
        }
    }

    #[test]
    fn after_hand_over_a_guided_trial_the_inner_strategy_asks_for_is_shown_not_measured_again() {
        let space = space();
        let first = vec![0; space.dimensions()];
        let only_guess = Guess {
            point: first.clone(),
            throughput_rps: 100.0,
            chance_feasible: 1.0,
            components: Vec::new(),
            slo_p99_ms: None,
        };
        let told = std::sync::Arc::default();
        let inner = FirstUnseen {
            told: std::sync::Arc::clone(&told),
        };
        let mut guided = Guided::new(vec![only_guess], Box::new(inner));
        let mut history = History::default();
        assert_eq!(guided.ask(&space, &history).unwrap(), Some(first.clone()));
        let trial = Trial {
            point: first.clone(),
            loss: -10.0,
        };
        guided.tell(&space, &trial);
        history.push(trial);
        // No guess is left: the inner strategy takes over, asks for the
        // guided trial's point first, is shown it, and asks again.
        let next = guided.ask(&space, &history).unwrap().unwrap();
        assert!(guided.handed_over());
        assert_ne!(next, first, "the point measured is not measured again");
        assert!(!history.contains(&next));
        assert_eq!(*told.lock().unwrap(), vec![first]);
    }

    /// An inner strategy that remembers the running config it was shown.
    struct SeesRunning {
        seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<Option<usize>>>>>,
    }

    impl Strategy for SeesRunning {
        fn name(&self) -> &'static str {
            "sees-running"
        }
        fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
            self.seen.lock().unwrap().push(history.running().to_vec());
            let all = guesses(space, &space.default_point());
            Ok(all.into_iter().map(|g| g.point).find(|p| !history.contains(p)))
        }
        fn tell(&mut self, _space: &Space, _trial: &Trial) {}
    }

    #[test]
    fn after_hand_over_the_inner_strategy_starts_where_the_server_was_when_the_guided_phase_began() {
        let space = space();
        let start: Vec<Option<usize>> = space.default_point().into_iter().map(Some).collect();
        let guess = vec![1; space.dimensions()];
        let seen = std::sync::Arc::default();
        let inner = SeesRunning {
            seen: std::sync::Arc::clone(&seen),
        };
        let mut guided = Guided::new(
            vec![Guess {
                point: guess.clone(),
                throughput_rps: 100.0,
                chance_feasible: 1.0,
                components: Vec::new(),
                slo_p99_ms: None,
            }],
            Box::new(inner),
        );
        let mut history = History::default();
        history.set_running(start.clone());
        let proposed = guided.ask(&space, &history).unwrap().unwrap();
        let trial = Trial {
            point: proposed.clone(),
            loss: -10.0,
        };
        guided.tell(&space, &trial);
        history.push(trial);
        // The server now runs the guided proposal; the inner strategy,
        // taking over, is told it runs what it ran before the guided phase.
        history.set_running(proposed.iter().map(|&l| Some(l)).collect());
        guided.ask(&space, &history).unwrap().unwrap();
        assert!(guided.handed_over());
        assert_eq!(*seen.lock().unwrap(), vec![start]);
    }

    /// Two prior landscapes: one expects 200 wherever `a` is 0 (and 10
    /// elsewhere), the other 100 at (5, 5, 0) alone (and 10 elsewhere).
    fn two_landscapes(space: &Space) -> Vec<Guess> {
        let mut all = Vec::new();
        for a in 0..10 {
            for b in 0..10 {
                for c in 0..4 {
                    let point = space.normalize(&[a, b, c]);
                    let region = if a == 0 { 200.0 } else { 10.0 };
                    let peak = if (a, b, c) == (5, 5, 0) { 100.0 } else { 10.0 };
                    let component = |throughput_rps| Component {
                        mass: 1.0,
                        throughput_rps,
                        chance_feasible: 0.9,
                        latency: None,
                    };
                    all.push(Guess {
                        point,
                        throughput_rps: (region + peak) / 2.0,
                        chance_feasible: 0.9,
                        components: vec![component(region), component(peak)],
                        slo_p99_ms: None,
                    });
                }
            }
        }
        all
    }

    #[test]
    fn before_any_measurement_the_guesses_are_the_prediction_as_it_was() {
        let space = space();
        let guesses = two_landscapes(&space);
        let guided = Guided::new(guesses.clone(), make_strategy(StrategyKind::Random, 1));
        let unmeasured = History::default();
        for (was, now) in guesses.iter().zip(guided.reweighed(&unmeasured)) {
            assert_eq!(was.point, now.point);
            assert!(
                (was.chance_feasible - now.chance_feasible).abs() < 1e-12,
                "{was:?} {now:?}"
            );
            assert!(
                (was.throughput_rps - now.throughput_rps).abs() < 1e-9,
                "{was:?} {now:?}"
            );
        }
    }

    #[test]
    fn a_landscape_the_measurements_contradict_loses_its_weight() {
        let space = space();
        let first_proposal = |guesses: Vec<Guess>| {
            let mut guided = Guided::new(guesses, make_strategy(StrategyKind::Random, 1));
            let mut history = History::default();
            let first = guided.ask(&space, &history).unwrap().unwrap();
            // The mixture expects 105 in the region; 10 is measured, what
            // the second landscape expects there.
            assert_eq!(first[0], 0, "{first:?}");
            let trial = Trial {
                point: first,
                loss: -10.0,
            };
            guided.tell(&space, &trial);
            history.push(trial);
            guided.ask(&space, &history).unwrap().unwrap()
        };
        let reweighed = first_proposal(two_landscapes(&space));
        assert_eq!(reweighed, space.normalize(&[5, 5, 0]), "the second landscape's peak");
        // Without the components, the correction only scales the mixture
        // down, and the region still looks best.
        let mixture_only = two_landscapes(&space)
            .into_iter()
            .map(|g| Guess {
                components: Vec::new(),
                ..g
            })
            .collect();
        assert_eq!(first_proposal(mixture_only)[0], 0);
    }

    #[test]
    fn a_measured_shortfall_moves_the_next_proposal_away() {
        let space = space();
        let best = space.default_point().iter().map(|_| 1).collect::<Point>();
        let mut guided = Guided::new(guesses(&space, &best), make_strategy(StrategyKind::Random, 1));
        let mut history = History::default();
        let first = guided.ask(&space, &history).unwrap().unwrap();
        let trial = Trial {
            point: first.clone(),
            loss: 3.0,
        };
        guided.tell(&space, &trial);
        history.push(trial);
        let second = guided.ask(&space, &history).unwrap().unwrap();
        assert_ne!(second, first);
        assert!(!guided.handed_over());
    }

    /// One prior landscape expecting a p99 of 100 ms everywhere, spread
    /// 0.3 in `ln`, against a 100 ms objective: every chance one half.
    fn at_the_objective(space: &Space) -> Vec<Guess> {
        let sizes = space.sizes();
        (0..sizes[0])
            .map(|a| {
                let point = space.normalize(&[a, 0, 0]);
                let throughput_rps = 100.0 + a as f64;
                let latency = Latency {
                    p99_ms: 100.0,
                    ln_sd: 0.3,
                    chance_otherwise: 1.0,
                };
                Guess {
                    point,
                    throughput_rps,
                    chance_feasible: 0.5,
                    components: vec![Component {
                        mass: 1.0,
                        throughput_rps,
                        chance_feasible: 0.5,
                        latency: Some(latency),
                    }],
                    slo_p99_ms: Some(100.0),
                }
            })
            .collect()
    }

    #[test]
    fn a_p99_measured_well_within_the_objective_raises_the_chances_it_scales() {
        let space = space();
        let guided = Guided::new(at_the_objective(&space), make_strategy(StrategyKind::Random, 1));
        let measured = space.normalize(&[0, 0, 0]);
        let mut history = History::default();
        history.push(Trial {
            point: measured.clone(),
            loss: -100.0,
        });
        let chance_elsewhere = |history: &History| {
            let guesses = guided.reweighed(history);
            guesses.iter().find(|g| g.point != measured).unwrap().chance_feasible
        };
        // Feasible, p99 unknown: one bit, the chances stay near one half.
        let without_p99 = chance_elsewhere(&history);
        assert!(without_p99 < 0.6, "{without_p99}");
        // Feasible at half the objective: the landscape's p99 is scaled
        // down (by half the ln ratio, shrunk by one measurement's worth).
        history.push_p99(&measured, 50.0);
        assert_eq!(history.mean_p99_ms(&measured).map(|p| p.round()), Some(50.0));
        let with_p99 = chance_elsewhere(&history);
        assert!(with_p99 > 0.85, "{with_p99}");
    }
}
