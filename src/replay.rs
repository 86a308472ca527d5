//! The replay benchmark: strategies run against a recorded landscape instead
//! of a live server, to choose the default strategy by evidence.
//!
//! A landscape CSV has one column per parameter (named as in the search
//! space), then `throughput_rps`, `p50_ms`, `p99_ms`, `error_rate`,
//! `memory_mb`; rows with equal parameters are repeats (the noise). An
//! optional first line says which parameters are cold and what moves cost
//! where it was recorded:
//!
//! ```text
//! # servetune-landscape cold=number_of_netty_threads restart_s=9.5 hot_s=1.8 window_s=5
//! ```
//!
//! An evaluation returns one recorded repeat of the point, drawn at random,
//! and is charged the time the study would spend: the window, plus a restart
//! when a cold parameter differs from the running config, or a live change
//! when only hot ones do (the run starts on the first row's config). A seed
//! reaches the target at the first trial after which some evaluated point
//! has a landscape mean that is feasible (the study's constraints: p99 ≤
//! SLO, errors ≤ limit) and within the target regret of the best feasible
//! mean throughput; both trials and seconds to that trial are reported.
//!
//! `replay_parallel` does the same for a shared study with several workers,
//! each with its own server (its own moves): trials finish in wall-clock
//! order, the strategy sees each as it finishes and asks beside the points
//! still in flight (`search::ask_beside_pending`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::objective::{Constraints, Figures};
use crate::search::{make_strategy, History, Strategy, StrategyKind, SwitchCosts, Trial, FAILED_LOSS};
use crate::space::{Apply, Parameter, Point, Space, Target, Value};

/// The measurement columns, in order.
pub const MEASUREMENTS: [&str; 5] = ["throughput_rps", "p50_ms", "p99_ms", "error_rate", "memory_mb"];

/// One recorded measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    pub memory_mb: f64,
}

impl Sample {
    fn figures(&self) -> Figures {
        Figures {
            throughput_rps: self.throughput_rps,
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
            error_rate: self.error_rate,
            memory_mb: self.memory_mb,
        }
    }
}

/// A recorded landscape.
#[derive(Debug, Clone)]
pub struct Landscape {
    pub space: Space,
    pub samples: HashMap<Point, Vec<Sample>>,
    /// What moves cost where it was recorded (defaults when not recorded).
    pub costs: SwitchCosts,
}

/// The `# servetune-landscape …` line: cold parameters and costs.
fn parse_header_comment(line: &str) -> Result<(Vec<String>, SwitchCosts), String> {
    let mut cold = Vec::new();
    let mut costs = SwitchCosts::default();
    for field in line.trim_start_matches('#').split_whitespace().skip(1) {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("'{field}': expected key=value"))?;
        let seconds = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("{key} = '{value}' is not a number of seconds"))
        };
        match key {
            "cold" => cold = value.split(',').map(str::to_string).filter(|c| !c.is_empty()).collect(),
            "restart_s" => costs.restart_s = seconds()?,
            "hot_s" => costs.hot_s = seconds()?,
            "window_s" => costs.window_s = seconds()?,
            _ => return Err(format!("unknown field '{key}'")),
        }
    }
    Ok((cold, costs))
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct LandscapeError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

fn value_of(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::Int(x as i64)
    } else {
        Value::Float(x)
    }
}

/// Parses a landscape CSV; the first row's configuration is the default
/// point (where strategies that start from the current config start).
pub fn parse_landscape(text: &str, file: &str) -> Result<Landscape, LandscapeError> {
    let error = |line: usize, reason: String| LandscapeError {
        file: file.to_string(),
        line,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let mut cold: Vec<String> = Vec::new();
    let mut costs = SwitchCosts::default();
    while let Some((index, line)) = lines.next_if(|(_, l)| l.trim_start().starts_with('#')) {
        if line.trim_start().starts_with("# servetune-landscape") {
            (cold, costs) = parse_header_comment(line).map_err(|e| error(index + 1, e))?;
        }
    }
    let (_, header) = lines.next().ok_or_else(|| error(1, "empty file".into()))?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let measurement_at: Vec<usize> = MEASUREMENTS
        .iter()
        .map(|name| {
            columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| error(1, format!("no column '{name}'")))
        })
        .collect::<Result<_, _>>()?;
    let parameter_columns: Vec<usize> = (0..columns.len()).filter(|i| !measurement_at.contains(i)).collect();
    if parameter_columns.is_empty() {
        return Err(error(1, "no parameter columns".into()));
    }
    let mut rows: Vec<(Vec<f64>, Sample)> = Vec::new();
    for (index, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(error(
                index + 1,
                format!("{} cells, the header has {}", cells.len(), columns.len()),
            ));
        }
        let number = |i: usize| {
            cells[i]
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| error(index + 1, format!("{} = '{}' is not a number", columns[i], cells[i])))
        };
        let params = parameter_columns
            .iter()
            .map(|&i| number(i))
            .collect::<Result<Vec<_>, _>>()?;
        let m = measurement_at
            .iter()
            .map(|&i| number(i))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push((
            params,
            Sample {
                throughput_rps: m[0],
                p50_ms: m[1],
                p99_ms: m[2],
                error_rate: m[3],
                memory_mb: m[4],
            },
        ));
    }
    let first = rows.first().ok_or_else(|| error(2, "no data rows".into()))?.0.clone();
    let mut parameters = Vec::new();
    for (d, &column) in parameter_columns.iter().enumerate() {
        let distinct: BTreeSet<u64> = rows.iter().map(|(p, _)| p[d].to_bits()).collect();
        let mut levels: Vec<f64> = distinct.into_iter().map(f64::from_bits).collect();
        levels.sort_by(f64::total_cmp);
        let default_level = levels
            .iter()
            .position(|&x| x == first[d])
            .expect("the first row's value is a level");
        let name = columns[column].to_string();
        parameters.push(Parameter {
            apply: if cold.contains(&name) { Apply::Cold } else { Apply::Hot },
            targets: vec![Target::Config(name.clone())],
            name,
            levels: levels.into_iter().map(value_of).collect(),
            default_level,
            when: None,
        });
    }
    if let Some(unknown) = cold.iter().find(|c| !parameters.iter().any(|p| p.name == **c)) {
        return Err(error(1, format!("cold={unknown}: no such parameter column")));
    }
    let space = Space { parameters };
    let mut samples: HashMap<Point, Vec<Sample>> = HashMap::new();
    for (params, sample) in rows {
        let point: Point = params
            .iter()
            .zip(&space.parameters)
            .map(|(x, p)| {
                p.levels
                    .iter()
                    .position(|l| *l == value_of(*x))
                    .expect("levels come from the rows")
            })
            .collect();
        samples.entry(point).or_default().push(sample);
    }
    Ok(Landscape { space, samples, costs })
}

pub fn load_landscape(path: &Path) -> Result<Landscape, LandscapeError> {
    let text = std::fs::read_to_string(path).map_err(|e| LandscapeError {
        file: path.display().to_string(),
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    parse_landscape(&text, &path.display().to_string())
}

/// The study's objective "maximum throughput with p99 ≤ SLO and errors ≤
/// limit", as the study's own constraints and loss.
pub fn throughput_under_slo(slo_p99_ms: f64, max_error_rate: f64) -> Constraints {
    Constraints {
        p99_ms: slo_p99_ms,
        error_rate: max_error_rate,
        memory_mb: None,
        throughput_rps: None,
    }
}

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
}

fn mean(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    samples.iter().map(f).sum::<f64>() / samples.len() as f64
}

/// Quantile of trials-to-target where a failed seed counts as infinite.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    let value = sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64);
    value.is_finite().then_some(value)
}

/// How one seed went: trials, seconds and restarts until the target (or the end).
#[derive(Debug, Clone, Copy)]
struct SeedRun {
    reached: Option<(usize, f64)>,
    restarts: usize,
}

/// The points whose landscape mean is feasible and within the regret of
/// the best feasible mean, and that best mean.
fn targets<'a>(
    landscape: &'a Landscape,
    objective: &Constraints,
    target_regret: f64,
) -> (HashMap<&'a Point, bool>, f64) {
    let means: Vec<(&Point, f64, bool)> = landscape
        .samples
        .iter()
        .map(|(p, s)| {
            let mean_figures = Figures {
                throughput_rps: mean(s, |x| x.throughput_rps),
                p50_ms: mean(s, |x| x.p50_ms),
                p99_ms: mean(s, |x| x.p99_ms),
                error_rate: mean(s, |x| x.error_rate),
                memory_mb: mean(s, |x| x.memory_mb),
            };
            (p, mean_figures.throughput_rps, objective.feasible(&mean_figures))
        })
        .collect();
    let best = means.iter().filter(|m| m.2).map(|m| m.1).fold(0.0, f64::max);
    let good = means
        .iter()
        .map(|(p, t, f)| (*p, *f && *t >= (1.0 - target_regret) * best))
        .collect();
    (good, best)
}

/// Builds a strategy for a seed.
pub type MakeStrategy<'a> = &'a dyn Fn(u64) -> Box<dyn Strategy>;

/// One seed of a strategy against the landscape.
fn run_seed(
    landscape: &Landscape,
    make: MakeStrategy<'_>,
    seed: u64,
    objective: &Constraints,
    costs: SwitchCosts,
    good: &HashMap<&Point, bool>,
) -> SeedRun {
    let space = &landscape.space;
    let mut strategy = make(seed);
    let mut noise = SmallRng::seed_from_u64(seed.wrapping_mul(7919).wrapping_add(17));
    let mut history = History::default();
    history.set_costs(costs);
    history.set_running(space.default_point().into_iter().map(Some).collect());
    let (mut seconds, mut restarts) = (0.0, 0);
    for trial_number in 1..=landscape.samples.len() {
        let point = match strategy.ask(space, &history) {
            Ok(Some(point)) => space.normalize(&point),
            _ => break,
        };
        seconds += costs.of_move(space, history.running(), &point);
        restarts += usize::from(history.needs_restart(space, &point));
        let loss = match landscape.samples.get(&point) {
            Some(samples) => objective.loss(&samples[noise.random_range(0..samples.len())].figures()),
            None => FAILED_LOSS,
        };
        let trial = Trial {
            point: point.clone(),
            loss,
        };
        history.set_running(point.iter().map(|&l| Some(l)).collect());
        history.push(trial.clone());
        strategy.tell(space, &trial);
        if good.get(&point).copied().unwrap_or(false) {
            return SeedRun {
                reached: Some((trial_number, seconds)),
                restarts,
            };
        }
    }
    SeedRun {
        reached: None,
        restarts,
    }
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
    let name = match strategy {
        StrategyKind::Default => format!("default ({})", strategy.resolve().label()),
        other => other.label().to_string(),
    };
    let make = |seed: u64| make_strategy(strategy, seed);
    replay_with(landscape, name, &make, seeds, objective, target_regret, costs)
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
    let (good, best_feasible) = targets(landscape, &objective, target_regret);
    let runs: Vec<SeedRun> = (0..seeds)
        .map(|seed| run_seed(landscape, make, seed, &objective, costs, &good))
        .collect();
    let sorted = |values: Vec<f64>| {
        let mut values = values;
        values.sort_by(f64::total_cmp);
        values
    };
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
    ReplayReport {
        strategy: name,
        seeds,
        median_trials_to_target: quantile(&trials, 0.5),
        p90_trials_to_target: quantile(&trials, 0.9),
        failed_seeds: runs.iter().filter(|r| r.reached.is_none()).count(),
        trials_per_seed: runs.iter().map(|r| r.reached.map(|(n, _)| n)).collect(),
        points: landscape.samples.len(),
        best_feasible_throughput_rps: best_feasible,
        slo_p99_ms: objective.p99_ms,
        target_regret,
        median_seconds_to_target: quantile(&seconds, 0.5),
        p90_seconds_to_target: quantile(&seconds, 0.9),
        seconds_per_seed: runs.iter().map(|r| r.reached.map(|(_, s)| s)).collect(),
        median_restarts: quantile(&restarts, 0.5).unwrap_or(0.0),
        costs,
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

/// One trial in flight.
struct InFlight {
    finishes_at: f64,
    worker: usize,
    point: Point,
}

/// The state of one simulated shared study.
struct Simulation<'a> {
    landscape: &'a Landscape,
    costs: SwitchCosts,
    history: History,
    /// Where each worker's server runs.
    running: Vec<Vec<Option<usize>>>,
    in_flight: Vec<InFlight>,
    asked: usize,
    duplicates: usize,
}

impl Simulation<'_> {
    /// Worker `worker`, free at `now`, asks for a point and starts on it;
    /// false when the strategy has nothing more (or every point was asked).
    fn start(&mut self, strategy: &mut dyn Strategy, worker: usize, now: f64) -> bool {
        let space = &self.landscape.space;
        if self.asked >= self.landscape.samples.len() {
            return false;
        }
        self.history.set_running(self.running[worker].clone());
        let pending: Vec<Point> = self.in_flight.iter().map(|f| f.point.clone()).collect();
        let Ok(Some(point)) = crate::search::ask_beside_pending(strategy, space, &self.history, &pending) else {
            return false;
        };
        let point = space.normalize(&point);
        self.duplicates += usize::from(pending.contains(&point));
        let seconds = self.costs.of_move(space, &self.running[worker], &point);
        self.running[worker] = point.iter().map(|&l| Some(l)).collect();
        self.in_flight.push(InFlight {
            finishes_at: now + seconds,
            worker,
            point,
        });
        self.asked += 1;
        true
    }
}

/// One seed with `workers` simulated workers: trials and wall seconds to
/// the target (if reached), and points measured twice at once.
fn run_parallel_seed(
    landscape: &Landscape,
    strategy: &mut dyn Strategy,
    seed: u64,
    workers: usize,
    objective: &Constraints,
    costs: SwitchCosts,
    good: &HashMap<&Point, bool>,
) -> (Option<(usize, f64)>, usize) {
    let space = &landscape.space;
    let mut noise = SmallRng::seed_from_u64(seed.wrapping_mul(7919).wrapping_add(17));
    let mut history = History::default();
    history.set_costs(costs);
    let default_running: Vec<Option<usize>> = space.default_point().into_iter().map(Some).collect();
    let mut simulation = Simulation {
        landscape,
        costs,
        history,
        running: vec![default_running; workers],
        in_flight: Vec::new(),
        asked: 0,
        duplicates: 0,
    };
    for worker in 0..workers {
        simulation.start(strategy, worker, 0.0);
    }
    let mut finished = 0;
    while !simulation.in_flight.is_empty() {
        let flights = &simulation.in_flight;
        let next = (0..flights.len())
            .min_by(|&a, &b| flights[a].finishes_at.total_cmp(&flights[b].finishes_at))
            .expect("not empty");
        let done = simulation.in_flight.swap_remove(next);
        let loss = match landscape.samples.get(&done.point) {
            Some(samples) => objective.loss(&samples[noise.random_range(0..samples.len())].figures()),
            None => FAILED_LOSS,
        };
        let trial = Trial {
            point: done.point.clone(),
            loss,
        };
        simulation.history.push(trial.clone());
        strategy.tell(space, &trial);
        finished += 1;
        if good.get(&done.point).copied().unwrap_or(false) {
            return (Some((finished, done.finishes_at)), simulation.duplicates);
        }
        simulation.start(strategy, done.worker, done.finishes_at);
    }
    (None, simulation.duplicates)
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
    let (good, _) = targets(landscape, &objective, target_regret);
    let mut trials = Vec::new();
    let mut seconds = Vec::new();
    let mut duplicates = 0;
    for seed in 0..seeds {
        let mut made = make_strategy(strategy, seed);
        let (reached, twice) =
            run_parallel_seed(landscape, made.as_mut(), seed, workers.max(1), &objective, costs, &good);
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

    /// A 6x6 landscape: throughput grows with a and b, p99 with a only;
    /// under an 80 ms SLO the best feasible mean is at (a=3, b=4).
    fn synthetic() -> String {
        let mut csv = String::from("a,b,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n");
        for a in 0..6 {
            for b in 0..6 {
                let throughput = 100.0 * (a + 1) as f64 + 10.0 * b as f64;
                let p99 = 20.0 * (a + 1) as f64;
                csv.push_str(&format!("{a},{b},{throughput},5,{p99},0,100\n"));
                if (a + b) % 4 == 0 {
                    csv.push_str(&format!("{a},{b},{},5,{p99},0,100\n", throughput * 0.9));
                }
            }
        }
        csv
    }

    #[test]
    fn parses_levels_and_repeats() {
        let landscape = parse_landscape(&synthetic(), "s.csv").unwrap();
        assert_eq!(landscape.space.sizes(), vec![6, 6]);
        assert_eq!(landscape.samples.len(), 36);
        assert_eq!(landscape.samples[&vec![0, 0]].len(), 2);
        assert_eq!(landscape.space.default_point(), vec![0, 0]);
    }

    #[test]
    fn bad_landscapes_name_the_line() {
        let e = parse_landscape(
            "a,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n1,2,3,4,5\n",
            "l.csv",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("l.csv:2:"), "{e}");
        let e = parse_landscape("a,p50_ms\n", "l.csv").unwrap_err();
        assert!(e.to_string().contains("throughput_rps"), "{e}");
        let e = parse_landscape(
            "a,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\nx,1,1,1,0,1\n",
            "l.csv",
        )
        .unwrap_err();
        assert!(e.to_string().contains("'x'"), "{e}");
    }

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
    fn grid_reaches_the_target_and_medians_count_failures() {
        let landscape = parse_landscape(&synthetic(), "s.csv").unwrap();
        let objective = throughput_under_slo(80.0, 0.01);
        let report = replay(&landscape, StrategyKind::Grid, 5, objective, 0.0, landscape.costs);
        assert_eq!(report.failed_seeds, 0);
        assert_eq!(
            report.best_feasible_throughput_rps, 440.0,
            "(3, 5) has a slow repeat: its mean is 427.5"
        );
        // Grid order: a varies fastest (both hot), so (3, 4) is index 4*6+3.
        assert_eq!(report.median_trials_to_target, Some(28.0));
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
        // (0,0) as running: 4; (1,0) live: 5; (0,1) restart: 14; (1,1) live: 5.
        assert_eq!(report.trials_per_seed, vec![Some(4)]);
        assert_eq!(report.seconds_per_seed, vec![Some(28.0)]);
        assert_eq!(report.median_restarts, 1.0);
        let e = parse_landscape(&csv.replace("cold=b", "cold=z"), "l.csv").unwrap_err();
        assert!(e.to_string().contains("cold=z"), "{e}");
    }
}
