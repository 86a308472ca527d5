//! The replay benchmark: strategies run against a recorded landscape instead
//! of a live server, to choose the default strategy by evidence.
//!
//! A landscape CSV has one column per parameter (named as in the search
//! space), then `throughput_rps`, `p50_ms`, `p99_ms`, `error_rate`,
//! `memory_mb`; rows with equal parameters are repeats (the noise). An
//! evaluation returns one recorded repeat of the point, drawn at random. A
//! seed reaches the target at the first trial after which some evaluated
//! point has a landscape mean that is feasible (p99 ≤ SLO, errors ≤ limit)
//! and within the target regret of the best feasible mean throughput.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::search::{make_strategy, History, StrategyKind, Trial, FAILED_LOSS};
use crate::space::{Apply, Parameter, Point, Space, Value};

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

/// A recorded landscape.
#[derive(Debug, Clone)]
pub struct Landscape {
    pub space: Space,
    pub samples: HashMap<Point, Vec<Sample>>,
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
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
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
                .map_err(|_| error(index + 1, format!("{} = '{}' is not a number", columns[i], cells[i])))
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
        parameters.push(Parameter {
            name: columns[column].to_string(),
            levels: levels.into_iter().map(value_of).collect(),
            default_level,
            targets: vec![columns[column].to_string()],
            apply: Apply::Hot,
            when: None,
        });
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
    Ok(Landscape { space, samples })
}

pub fn load_landscape(path: &Path) -> Result<Landscape, LandscapeError> {
    let text = std::fs::read_to_string(path).map_err(|e| LandscapeError {
        file: path.display().to_string(),
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    parse_landscape(&text, &path.display().to_string())
}

/// The scalar objective: maximize throughput subject to p99 ≤ SLO and
/// error rate ≤ limit, as a loss (feasible: −throughput; infeasible: the
/// size of the violation, ≥ 1).
#[derive(Debug, Clone, Copy)]
pub struct ThroughputUnderSlo {
    pub slo_p99_ms: f64,
    pub max_error_rate: f64,
}

impl ThroughputUnderSlo {
    pub fn feasible(&self, p99_ms: f64, error_rate: f64) -> bool {
        p99_ms <= self.slo_p99_ms && error_rate <= self.max_error_rate
    }

    pub fn loss(&self, throughput_rps: f64, p99_ms: f64, error_rate: f64) -> f64 {
        if self.feasible(p99_ms, error_rate) {
            -throughput_rps
        } else {
            (p99_ms / self.slo_p99_ms).max(1.0) + 100.0 * (error_rate - self.max_error_rate).max(0.0)
        }
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

/// Runs `strategy` over `seeds` seeds against `landscape`.
pub fn replay(
    landscape: &Landscape,
    strategy: StrategyKind,
    seeds: u64,
    objective: ThroughputUnderSlo,
    target_regret: f64,
) -> ReplayReport {
    let good: HashMap<&Point, bool> = {
        let means: Vec<(&Point, f64, bool)> = landscape
            .samples
            .iter()
            .map(|(p, s)| {
                let feasible = objective.feasible(mean(s, |x| x.p99_ms), mean(s, |x| x.error_rate));
                (p, mean(s, |x| x.throughput_rps), feasible)
            })
            .collect();
        let best = means
            .iter()
            .filter(|m| m.2)
            .map(|m| m.1)
            .fold(f64::NEG_INFINITY, f64::max);
        means
            .iter()
            .map(|(p, t, f)| (*p, *f && *t >= (1.0 - target_regret) * best))
            .collect()
    };
    let best_feasible = landscape
        .samples
        .values()
        .filter(|s| objective.feasible(mean(s, |x| x.p99_ms), mean(s, |x| x.error_rate)))
        .map(|s| mean(s, |x| x.throughput_rps))
        .fold(0.0, f64::max);
    let points = landscape.samples.len();
    let trials_per_seed: Vec<Option<usize>> = (0..seeds)
        .map(|seed| {
            let mut strategy = make_strategy(strategy, seed);
            let mut noise = SmallRng::seed_from_u64(seed.wrapping_mul(7919).wrapping_add(17));
            let mut history = History::default();
            for trial_number in 1..=points {
                let point = match strategy.ask(&landscape.space, &history) {
                    Ok(Some(point)) => landscape.space.normalize(&point),
                    _ => return None,
                };
                let loss = match landscape.samples.get(&point) {
                    Some(samples) => {
                        let s = samples[noise.random_range(0..samples.len())];
                        objective.loss(s.throughput_rps, s.p99_ms, s.error_rate)
                    }
                    None => FAILED_LOSS,
                };
                let trial = Trial {
                    point: point.clone(),
                    loss,
                };
                history.push(trial.clone());
                strategy.tell(&landscape.space, &trial);
                if good.get(&point).copied().unwrap_or(false) {
                    return Some(trial_number);
                }
            }
            None
        })
        .collect();
    let mut sorted: Vec<f64> = trials_per_seed
        .iter()
        .map(|t| t.map_or(f64::INFINITY, |n| n as f64))
        .collect();
    sorted.sort_by(f64::total_cmp);
    ReplayReport {
        strategy: match strategy {
            StrategyKind::Default => format!("default ({})", strategy.resolve().label()),
            other => other.label().to_string(),
        },
        seeds,
        median_trials_to_target: quantile(&sorted, 0.5),
        p90_trials_to_target: quantile(&sorted, 0.9),
        failed_seeds: trials_per_seed.iter().filter(|t| t.is_none()).count(),
        trials_per_seed,
        points,
        best_feasible_throughput_rps: best_feasible,
        slo_p99_ms: objective.slo_p99_ms,
        target_regret,
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
    fn grid_reaches_the_target_and_medians_count_failures() {
        let landscape = parse_landscape(&synthetic(), "s.csv").unwrap();
        let objective = ThroughputUnderSlo {
            slo_p99_ms: 80.0,
            max_error_rate: 0.01,
        };
        let report = replay(&landscape, StrategyKind::Grid, 5, objective, 0.0);
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
}
