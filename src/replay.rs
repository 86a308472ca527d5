//! The replay benchmark: strategies run the study's own loop against a
//! recorded landscape (`landscape`) instead of a live server, to choose the
//! default strategy by evidence.
//!
//! Each seed runs `study::study_loop` on the landscape testbed
//! (`study::recorded`): the baseline (the landscape's first row, at
//! TorchServe's defaults: their screening trial is the baseline's window),
//! the strategy while the budget allows (with the confirmation kept back),
//! the confirmation rounds and the tier decisions, on simulated time. A
//! measurement is one recorded repeat of the point (the same repeat for the
//! n-th measurement of a config in a seed, whatever else was measured);
//! moves cost what the landscape's header says. A seed reaches the target at the
//! first measured trial (the baseline counts) after which some measured point
//! has a landscape mean that is feasible (p99 ≤ SLO, errors ≤ limit) and
//! within the target regret of the best feasible mean throughput; trials and
//! seconds to that trial are reported. Without a budget the study may screen
//! every config (`max_trials` = the landscape's configs); with one, the
//! regret of the final recommendation (the max-throughput tier, judged on
//! landscape means) says whether confirmation picked well given the noise.
//!
//! `replay_parallel` simulates a shared study with several workers, each
//! with its own server: the same loop, once as the leader and once per
//! further worker, on one simulated timeline (`study::clock::Timeline`),
//! claiming from one study in memory (`store::memory`), so trials finish
//! in simulated wall-clock order and each claim sees every finished trial
//! and asks beside the points still in flight.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde::Serialize;

pub use crate::landscape::{
    load_landscape, parse_landscape, throughput_under_slo, Landscape, LandscapeError, Sample, MEASUREMENTS,
};
use crate::objective::{Constraints, Tier};
use crate::search::{make_strategy, Guess, Guided, Strategy, StrategyKind, SwitchCosts};
use crate::space::Point;
use crate::stats::quantile;
use crate::store::memory::MemoryStudy;
use crate::study::clock::Timeline;
use crate::study::planner::Plan;
use crate::study::recorded::Recorded;
use crate::study::study_loop::{Finished, Role, StudyLoop, TrialUpdate};
use crate::trial::{Entry, TrialKind};
use tokio_util::sync::CancellationToken;

/// A budget no replay reaches: the study then screens up to its trial limit.
const UNLIMITED: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The replay's answer for one strategy.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub strategy: String,
    pub seeds: u64,
    /// Median trials to reach the target; null when the median seed failed.
    pub median_trials_to_target: Option<f64>,
    pub p90_trials_to_target: Option<f64>,
    pub failed_seeds: usize,
    pub trials_per_seed: Vec<Option<usize>>,
    pub points: usize,
    pub best_feasible_throughput_rps: f64,
    pub slo_p99_ms: f64,
    pub target_regret: f64,
    /// Median study time (moves and windows) to reach the target; null when
    /// the median seed failed.
    pub median_seconds_to_target: Option<f64>,
    pub p90_seconds_to_target: Option<f64>,
    pub seconds_per_seed: Vec<Option<f64>>,
    /// Median restarts a seed made before reaching the target (or the end).
    pub median_restarts: f64,
    pub costs: SwitchCosts,
    /// The simulated study budget (null: unlimited up to the trial limit).
    pub budget_s: Option<f64>,
    /// Regret of the final max-throughput recommendation against the best
    /// feasible landscape mean (1 when it is infeasible on the means).
    pub median_recommendation_regret: Option<f64>,
    pub p90_recommendation_regret: Option<f64>,
    pub recommendation_regret_per_seed: Vec<f64>,
    /// Share of seeds whose recommendation was "keep the current config".
    pub kept_current_share: f64,
    /// Median study time a seed took in all, confirmation included.
    pub median_study_seconds: f64,
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// How one seed went.
#[derive(Debug, Clone, Copy)]
struct SeedRun {
    /// Trials and seconds until the target, if reached.
    reached: Option<(usize, f64)>,
    /// Restarts until the target (or the end).
    restarts: usize,
    recommendation_regret: f64,
    kept_current: bool,
    study_seconds: f64,
}

/// The points whose landscape mean is feasible and within the regret of
/// the best feasible mean.
fn good_points<'a>(landscape: &'a Landscape, objective: &Constraints, target_regret: f64) -> HashMap<&'a Point, bool> {
    let best = landscape.best_feasible_throughput(objective);
    landscape
        .means()
        .into_iter()
        .map(|(p, f)| {
            (
                p,
                objective.feasible(&f) && f.throughput_rps >= (1.0 - target_regret) * best,
            )
        })
        .collect()
}

/// Builds a strategy for a seed.
pub type MakeStrategy<'a> = &'a (dyn Fn(u64) -> Box<dyn Strategy> + Sync);

/// What a replayed study is judged by and how long it may run.
#[derive(Debug, Clone, Copy)]
pub struct ReplayObjective {
    pub objective: Constraints,
    pub target_regret: f64,
    pub costs: SwitchCosts,
    /// Simulated study time (None: unlimited up to the trial limit).
    pub budget: Option<Duration>,
}

impl ReplayObjective {
    /// The study plan a replay runs: windows of the landscape's length,
    /// confirmation as a study does it by default.
    fn plan(&self, landscape: &Landscape) -> Plan {
        let window = Duration::from_secs_f64(self.costs.window_s);
        Plan::fixed(
            self.budget.unwrap_or(UNLIMITED),
            landscape.samples.len(),
            window,
            self.objective,
        )
    }
}

/// One seed: the study loop on the landscape testbed, on simulated time.
fn run_seed(landscape: &Landscape, make: MakeStrategy<'_>, seed: u64, goal: &ReplayObjective) -> SeedRun {
    let plan = goal.plan(landscape);
    let testbed = Recorded::new(landscape, goal.costs, seed);
    let study = StudyLoop::new(&plan, &landscape.space, testbed, make(seed));
    let finished = study
        .run(&|_: &TrialUpdate| {})
        .now_or_never()
        .expect("the landscape testbed never waits");
    let good = good_points(landscape, &goal.objective, goal.target_regret);
    let default_point = landscape.space.default_point();
    let mut restarts = 0;
    let mut reached = None;
    // A trial screened on the baseline's window measured nothing: it costs no trial.
    let measured = finished.entries.iter().filter(|e| e.window_of.is_none());
    for (trial, entry) in measured.enumerate() {
        restarts += usize::from(entry.restarted);
        let point = entry.point.as_ref().unwrap_or(&default_point);
        if good.get(point).copied().unwrap_or(false) {
            reached = Some((trial + 1, entry.elapsed_s));
            break;
        }
    }
    let (recommendation_regret, kept_current) = recommendation(landscape, &goal.objective, &finished);
    SeedRun {
        reached,
        restarts,
        recommendation_regret,
        kept_current,
        study_seconds: finished.elapsed.as_secs_f64(),
    }
}

/// The regret of a study's max-throughput recommendation on the landscape's
/// means, and whether it kept the current config (also when it recommended
/// nothing: the config then stays as it is).
fn recommendation<T, S>(landscape: &Landscape, objective: &Constraints, finished: &Finished<T, S>) -> (f64, bool) {
    let decision = finished.decisions.iter().find(|d| d.tier == Tier::MaxThroughput);
    let chosen = decision.and_then(|d| finished.candidates[d.chosen].point.clone());
    let kept_current = decision.is_none_or(|d| d.keep_current);
    let point = chosen.unwrap_or_else(|| landscape.space.default_point());
    (regret_of(landscape, objective, &point), kept_current)
}

/// Runs `strategy` over `seeds` seeds against `landscape`, charging `costs`.
pub fn replay(
    landscape: &Landscape,
    strategy: StrategyKind,
    seeds: u64,
    objective: Constraints,
    target_regret: f64,
    costs: SwitchCosts,
) -> ReplayReport {
    let goal = ReplayObjective {
        objective,
        target_regret,
        costs,
        budget: None,
    };
    replay_strategy(landscape, strategy, seeds, &goal)
}

/// Runs `strategy` over `seeds` seeds against `landscape` as `goal` says.
pub fn replay_strategy(
    landscape: &Landscape,
    strategy: StrategyKind,
    seeds: u64,
    goal: &ReplayObjective,
) -> ReplayReport {
    let name = match strategy {
        StrategyKind::Default => format!("default ({})", strategy.resolve().label()),
        other => other.label().to_string(),
    };
    let make = |seed: u64| make_strategy(strategy, seed);
    replay_seeds(landscape, name, &make, seeds, goal)
}

/// Runs the strategies `make` builds (one per seed) against `landscape`.
pub fn replay_with(
    landscape: &Landscape,
    name: String,
    make: MakeStrategy<'_>,
    seeds: u64,
    objective: Constraints,
    target_regret: f64,
    costs: SwitchCosts,
) -> ReplayReport {
    let goal = ReplayObjective {
        objective,
        target_regret,
        costs,
        budget: None,
    };
    replay_seeds(landscape, name, make, seeds, &goal)
}

fn replay_seeds(
    landscape: &Landscape,
    name: String,
    make: MakeStrategy<'_>,
    seeds: u64,
    goal: &ReplayObjective,
) -> ReplayReport {
    let runs: Vec<SeedRun> = (0..seeds).map(|seed| run_seed(landscape, make, seed, goal)).collect();
    let trials = sorted(
        runs.iter()
            .map(|r| r.reached.map_or(f64::INFINITY, |(n, _)| n as f64))
            .collect(),
    );
    let seconds = sorted(
        runs.iter()
            .map(|r| r.reached.map_or(f64::INFINITY, |(_, s)| s))
            .collect(),
    );
    let restarts = sorted(runs.iter().map(|r| r.restarts as f64).collect());
    let regrets = sorted(runs.iter().map(|r| r.recommendation_regret).collect());
    let study_seconds = sorted(runs.iter().map(|r| r.study_seconds).collect());
    ReplayReport {
        strategy: name,
        seeds,
        median_trials_to_target: quantile(&trials, 0.5),
        p90_trials_to_target: quantile(&trials, 0.9),
        failed_seeds: runs.iter().filter(|r| r.reached.is_none()).count(),
        trials_per_seed: runs.iter().map(|r| r.reached.map(|(n, _)| n)).collect(),
        points: landscape.samples.len(),
        best_feasible_throughput_rps: landscape.best_feasible_throughput(&goal.objective),
        slo_p99_ms: goal.objective.p99_ms,
        target_regret: goal.target_regret,
        median_seconds_to_target: quantile(&seconds, 0.5),
        p90_seconds_to_target: quantile(&seconds, 0.9),
        seconds_per_seed: runs.iter().map(|r| r.reached.map(|(_, s)| s)).collect(),
        median_restarts: quantile(&restarts, 0.5).unwrap_or(0.0),
        costs: goal.costs,
        budget_s: goal.budget.map(|b| b.as_secs_f64()),
        median_recommendation_regret: quantile(&regrets, 0.5),
        p90_recommendation_regret: quantile(&regrets, 0.9),
        recommendation_regret_per_seed: runs.iter().map(|r| r.recommendation_regret).collect(),
        kept_current_share: runs.iter().filter(|r| r.kept_current).count() as f64 / runs.len().max(1) as f64,
        median_study_seconds: quantile(&study_seconds, 0.5).unwrap_or(0.0),
    }
}

/// A replay with and without the landscape model's prior, on a landscape
/// the model did not learn from (`replay --prior`).
#[derive(Debug, Clone, Serialize)]
pub struct PriorReport {
    /// The left-out landscape's model.
    pub model: Option<String>,
    /// The load it was recorded at (closed-loop users), the priors' too.
    pub users: u32,
    /// The landscapes the model learnt from.
    pub learnt_from: Vec<String>,
    /// The default strategy from nothing.
    pub without_prior: ReplayReport,
    /// The same strategy behind `search::Guided`, started from the prediction.
    pub with_prior: ReplayReport,
    /// The model's first choice (its best expected feasible throughput),
    /// judged on the landscape's means: its regret (1 when infeasible).
    pub first_prediction_regret: f64,
    pub first_prediction: String,
    /// Median trials to the target without, over with (above 1: the prior helps).
    pub trials_ratio: Option<f64>,
    /// The most `trials_ratio` any prior could reach: on each seed it needs
    /// the baseline and one guess, or the baseline alone where that is
    /// within the target already (and then so does the strategy from
    /// nothing).
    pub most_trials_ratio: Option<f64>,
    /// The landscape's repeat noise near its top (`Landscape::repeat_noise`).
    pub repeat_noise: Option<f64>,
    pub seconds_ratio: Option<f64>,
    /// How well the model predicted the landscape's throughput, config by
    /// config (set by the caller that fitted it; None: not measured).
    pub prediction: Option<crate::predict::accuracy::Accuracy>,
}

/// Replays `strategy` on `landscape` from nothing and from `guesses`.
pub fn replay_prior(
    landscape: &Landscape,
    strategy: StrategyKind,
    seeds: u64,
    goal: &ReplayObjective,
    guesses: &[Guess],
    learnt_from: Vec<String>,
) -> PriorReport {
    let without_prior = replay_strategy(landscape, strategy, seeds, goal);
    let make =
        |seed: u64| -> Box<dyn Strategy> { Box::new(Guided::new(guesses.to_vec(), make_strategy(strategy, seed))) };
    let name = format!("{} from the landscape model", without_prior.strategy);
    let with_prior = replay_seeds(landscape, name, &make, seeds, goal);
    let first = guesses
        .iter()
        .max_by(|a, b| (a.throughput_rps * a.chance_feasible).total_cmp(&(b.throughput_rps * b.chance_feasible)));
    let (first_prediction_regret, first_prediction) = match first {
        Some(guess) => (
            regret_of(landscape, &goal.objective, &guess.point),
            landscape.space.describe(&guess.point),
        ),
        None => (1.0, "none".into()),
    };
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?.max(f64::MIN_POSITIVE));
    PriorReport {
        model: landscape.model.clone(),
        users: crate::predict::users_of(landscape),
        learnt_from,
        trials_ratio: ratio(
            without_prior.median_trials_to_target,
            with_prior.median_trials_to_target,
        ),
        seconds_ratio: ratio(
            without_prior.median_seconds_to_target,
            with_prior.median_seconds_to_target,
        ),
        most_trials_ratio: most_ratio(&without_prior.trials_per_seed),
        repeat_noise: landscape.repeat_noise(),
        without_prior,
        with_prior,
        first_prediction_regret,
        first_prediction,
        prediction: None,
    }
}

/// The most a prior can divide the median trials from nothing by, seed
/// by seed: the fewest trials it can need are the baseline and its first
/// guess, or the baseline alone on a seed where the strategy from nothing
/// needs no more either (None: the median from nothing failed).
fn most_ratio(trials_from_nothing: &[Option<usize>]) -> Option<f64> {
    let cold = sorted(
        trials_from_nothing
            .iter()
            .map(|t| t.map_or(f64::INFINITY, |n| n as f64))
            .collect(),
    );
    let fewest = sorted(
        trials_from_nothing
            .iter()
            .map(|t| if *t == Some(1) { 1.0 } else { 2.0 })
            .collect(),
    );
    Some(quantile(&cold, 0.5)? / quantile(&fewest, 0.5)?)
}

/// The regret of `point` on the landscape's means (1 when infeasible or unrecorded).
fn regret_of(landscape: &Landscape, objective: &Constraints, point: &Point) -> f64 {
    let best = landscape.best_feasible_throughput(objective);
    match landscape.means().get(point) {
        Some(mean) if objective.feasible(mean) && best > 0.0 => (1.0 - mean.throughput_rps / best).max(0.0),
        _ => 1.0,
    }
}

/// How a study goes with several workers, each with its own server: the
/// strategy sees every finished trial and asks beside the points in flight
/// (`ask_beside_pending`); each worker pays its own moves.
#[derive(Debug, Clone, Serialize)]
pub struct ParallelReport {
    pub strategy: String,
    pub workers: usize,
    pub seeds: u64,
    /// Median trials (from all workers) finished when the target was reached.
    pub median_trials_to_target: Option<f64>,
    /// Median wall-clock seconds to the target.
    pub median_seconds_to_target: Option<f64>,
    pub failed_seeds: usize,
    /// Points measured twice at the same time (should be none).
    pub concurrent_duplicates: usize,
}

/// One seed with `workers` simulated workers: the study loop as the leader
/// and `workers - 1` loops as workers, each on its own landscape testbed,
/// all on one simulated timeline, claiming from one study in memory as
/// workers do from PostgreSQL. Returns the trials (in finishing order;
/// the baseline counts) and simulated seconds to the target, if reached,
/// and the points measured twice at once.
fn run_parallel_seed(
    landscape: &Landscape,
    make: MakeStrategy<'_>,
    seed: u64,
    workers: usize,
    plan: &Plan,
    costs: SwitchCosts,
    good: &HashMap<&Point, bool>,
) -> (Option<(usize, f64)>, usize) {
    let timeline = Timeline::default();
    let study = MemoryStudy::new("worker-0");
    // The study stops once the target is reached: what follows is not measured here.
    let reached = CancellationToken::new();
    let default_point = landscape.space.default_point();
    let on_trial = |update: &TrialUpdate| {
        let entries = study.entries();
        let entry = entries.iter().find(|e| e.number == update.number);
        let point = entry.and_then(|e| e.point.as_ref()).unwrap_or(&default_point);
        if good.get(point).copied().unwrap_or(false) {
            reached.cancel();
        }
    };
    let runs = (0..workers)
        .map(|w| {
            let noise = seed.wrapping_mul(1009).wrapping_add(w as u64);
            let testbed = Recorded::new(landscape, costs, noise).on_timeline(&timeline);
            let role = if w == 0 { Role::Leader } else { Role::Worker };
            // Each worker's own strategy, seeded apart (the leader's is the seed's).
            let strategy = make(seed.wrapping_add(7919 * w as u64));
            StudyLoop::new(plan, &landscape.space, testbed, strategy)
                .with_store(study.joined_by(&format!("worker-{w}")), Vec::new())
                .with_token(reached.clone())
                .as_role(role)
                .run(&on_trial)
        })
        .collect();
    let finished = timeline.run_together(runs);
    debug_assert!(finished.iter().all(|f| f.failure.is_none()));
    let mut measured: Vec<Entry> = study
        .entries()
        .into_iter()
        .filter(|e| e.kind != TrialKind::Confirm && e.window_of.is_none())
        .collect();
    measured.sort_by(|a, b| a.elapsed_s.total_cmp(&b.elapsed_s));
    let reached = measured.iter().enumerate().find_map(|(i, entry)| {
        let point = entry.point.as_ref().unwrap_or(&default_point);
        good.get(point)
            .copied()
            .unwrap_or(false)
            .then_some((i + 1, entry.elapsed_s))
    });
    (reached, study.measured_twice())
}

/// Runs `strategy` with `workers` simulated workers over `seeds` seeds.
pub fn replay_parallel(
    landscape: &Landscape,
    strategy: StrategyKind,
    workers: usize,
    seeds: u64,
    objective: Constraints,
    target_regret: f64,
    costs: SwitchCosts,
) -> ParallelReport {
    let good = good_points(landscape, &objective, target_regret);
    let goal = ReplayObjective {
        objective,
        target_regret,
        costs,
        budget: None,
    };
    let plan = goal.plan(landscape);
    let make = |seed: u64| make_strategy(strategy, seed);
    let mut trials = Vec::new();
    let mut seconds = Vec::new();
    let mut duplicates = 0;
    for seed in 0..seeds {
        let (reached, twice) = run_parallel_seed(landscape, &make, seed, workers.max(1), &plan, costs, &good);
        duplicates += twice;
        trials.push(reached.map_or(f64::INFINITY, |(n, _)| n as f64));
        seconds.push(reached.map_or(f64::INFINITY, |(_, s)| s));
    }
    trials.sort_by(f64::total_cmp);
    seconds.sort_by(f64::total_cmp);
    ParallelReport {
        strategy: strategy.label().to_string(),
        workers,
        seeds,
        median_trials_to_target: quantile(&trials, 0.5),
        median_seconds_to_target: quantile(&seconds, 0.5),
        failed_seeds: trials.iter().filter(|t| t.is_infinite()).count(),
        concurrent_duplicates: duplicates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::landscape::tests::synthetic;

    #[test]
    fn more_workers_reach_the_target_sooner_without_measuring_a_point_twice_at_once() {
        let landscape = parse_landscape(&synthetic(), "synthetic.csv").unwrap();
        let objective = throughput_under_slo(80.0, 0.01);
        let costs = SwitchCosts {
            restart_s: 10.0,
            hot_s: 2.0,
            window_s: 5.0,
        };
        let run = |workers| replay_parallel(&landscape, StrategyKind::Random, workers, 30, objective, 0.05, costs);
        let (one, four) = (run(1), run(4));
        assert_eq!(four.concurrent_duplicates, 0, "{four:?}");
        let (t1, t4) = (
            one.median_seconds_to_target.unwrap(),
            four.median_seconds_to_target.unwrap(),
        );
        assert!(t4 < t1, "four workers: {t4} s, one: {t1} s");
        assert!(
            four.median_trials_to_target >= one.median_trials_to_target,
            "parallel trials know less each: {four:?} vs {one:?}"
        );
    }

    #[test]
    fn a_perfect_prior_reaches_the_target_right_after_the_baseline() {
        let landscape = parse_landscape(&synthetic(), "s.csv").unwrap();
        let objective = throughput_under_slo(80.0, 0.01);
        let means = landscape.means();
        let guesses: Vec<Guess> = means
            .iter()
            .map(|(point, mean)| Guess {
                point: (*point).clone(),
                throughput_rps: mean.throughput_rps,
                chance_feasible: if objective.feasible(mean) { 0.95 } else { 0.05 },
                components: Vec::new(),
                slo_p99_ms: None,
            })
            .collect();
        let goal = ReplayObjective {
            objective,
            target_regret: 0.05,
            costs: landscape.costs,
            budget: None,
        };
        let report = replay_prior(&landscape, StrategyKind::Default, 10, &goal, &guesses, vec!["m".into()]);
        assert_eq!(report.first_prediction_regret, 0.0, "{report:?}");
        // The baseline, at the defaults, is trial 1 and their screening
        // trial is its window: the first guess is trial 2.
        assert_eq!(report.with_prior.median_trials_to_target, Some(2.0), "{report:?}");
        assert!(report.trials_ratio.unwrap() > 1.0, "{report:?}");
        // A perfect prior reaches the most any prior can.
        assert_eq!(report.trials_ratio, report.most_trials_ratio, "{report:?}");
        assert!(
            report.repeat_noise.is_some(),
            "the synthetic landscape repeats configs near its top"
        );
    }

    #[test]
    fn no_prior_halves_a_strategy_that_needs_the_baseline_alone() {
        assert_eq!(most_ratio(&[Some(1), Some(1), Some(1)]), Some(1.0));
        assert_eq!(most_ratio(&[Some(3), Some(3), Some(1)]), Some(1.5));
        assert_eq!(most_ratio(&[Some(4), Some(5), Some(3)]), Some(2.0));
        // Half the seeds need the baseline alone: the median from nothing
        // is 1.5, and so is the fewest a prior can need.
        assert_eq!(most_ratio(&[Some(1), Some(2)]), Some(1.0));
        assert_eq!(most_ratio(&[None, None, Some(4)]), None);
    }

    #[test]
    fn grid_reaches_the_target_and_medians_count_failures() {
        let landscape = parse_landscape(&synthetic(), "s.csv").unwrap();
        let objective = throughput_under_slo(80.0, 0.01);
        let report = replay(&landscape, StrategyKind::Grid, 5, objective, 0.0, landscape.costs);
        assert_eq!(report.failed_seeds, 0);
        assert_eq!(
            report.best_feasible_throughput_rps, 440.0,
            "(3, 5) has a slow repeat: its mean is 427.5"
        );
        // The baseline (the first row) is trial 1; then grid order, the
        // defaults first on the baseline's window (no trial): a varies
        // fastest (both hot), so (3, 4) is index 4*6+3, the 27th measured.
        assert_eq!(report.median_trials_to_target, Some(1.0 + 27.0));
        assert_eq!(quantile(&[1.0, 2.0, f64::INFINITY], 0.5), Some(2.0));
        assert_eq!(quantile(&[1.0, f64::INFINITY, f64::INFINITY], 0.5), None);
    }

    #[test]
    fn moves_are_charged_as_the_landscape_says() {
        let csv = "# servetune-landscape cold=b restart_s=10 hot_s=1 window_s=4\n\
                   a,b,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n\
                   0,0,100,1,5,0,1\n1,0,200,1,5,0,1\n0,1,300,1,5,0,1\n1,1,400,1,5,0,1\n";
        let landscape = parse_landscape(csv, "l.csv").unwrap();
        assert_eq!(landscape.space.cold_dimensions(), vec![1]);
        assert_eq!(landscape.costs.restart_s, 10.0);
        let report = replay(
            &landscape,
            StrategyKind::Grid,
            1,
            throughput_under_slo(50.0, 0.01),
            0.0,
            landscape.costs,
        );
        // The baseline (0,0) as running: 4; the defaults (0,0) on its
        // window: no trial, no time; (1,0) live: 5; (0,1) restart: 14;
        // (1,1) live: 5.
        assert_eq!(report.trials_per_seed, vec![Some(4)]);
        assert_eq!(report.seconds_per_seed, vec![Some(28.0)]);
        assert_eq!(report.median_restarts, 1.0);
        let e = parse_landscape(&csv.replace("cold=b", "cold=z"), "l.csv").unwrap_err();
        assert!(e.to_string().contains("cold=z"), "{e}");
    }
}
