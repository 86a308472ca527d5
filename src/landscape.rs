//! Recorded landscapes: what a grid of configs measured on a real server,
//! with its repeats (the noise) and what moves cost there. The replay
//! benchmark and the study's simulated testbed both read them; this module
//! only parses and holds them (no strategy, no study).
//!
//! A landscape CSV has one column per parameter (named as in the search
//! space), then `throughput_rps`, `p50_ms`, `p99_ms`, `error_rate`,
//! `memory_mb`; rows with equal parameters are repeats. An optional first
//! line says which parameters are cold and what moves cost where it was
//! recorded:
//!
//! ```text
//! # servetune-landscape cold=number_of_netty_threads restart_s=9.5 hot_s=1.8 window_s=5
//! ```
//!
//! A landscape recorded for the landscape model (`predict`) also names its
//! model and that model's cheap features (`ModelFeatures`, measured by
//! `servetune predict` the same way on any server):
//! `model=resnet50 latency_ms=96.1 worker_mb=402 frontend_mb=310`, and the
//! load it was recorded under, `users=16` (a closed loop of that many; the
//! latencies of a saturated server grow with it).
//!
//! The first row's configuration is the space's default point and the
//! config the recording started from.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::objective::{Constraints, Figures};
use crate::search::SwitchCosts;
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
    pub fn figures(&self) -> Figures {
        Figures {
            throughput_rps: self.throughput_rps,
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
            error_rate: self.error_rate,
            memory_mb: self.memory_mb,
            model_excess: 0.0,
        }
    }
}

/// What a model costs on its own, measured in seconds on a running server:
/// the landscape model's features of a model (`predict::features`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelFeatures {
    /// Median latency of one request at a time, batch size 1, one worker.
    pub latency_ms: f64,
    /// Memory (PSS) one more worker of the model adds.
    pub worker_mb: f64,
    /// Memory (PSS) of TorchServe's frontend (the JVM) alone.
    pub frontend_mb: f64,
}

/// A recorded landscape.
#[derive(Debug, Clone)]
pub struct Landscape {
    pub space: Space,
    pub samples: HashMap<Point, Vec<Sample>>,
    /// What moves cost where it was recorded (defaults when not recorded).
    pub costs: SwitchCosts,
    /// The model it was recorded with, when the header names it.
    pub model: Option<String>,
    /// That model's features, when the header has them (all three or none).
    pub features: Option<ModelFeatures>,
    /// The closed loop's users it was recorded with, when the header says.
    pub users: Option<u32>,
}

/// What the `# servetune-landscape …` line says.
#[derive(Debug, Default)]
struct Header {
    cold: Vec<String>,
    costs: SwitchCosts,
    model: Option<String>,
    features: Option<ModelFeatures>,
    users: Option<u32>,
}

/// The `# servetune-landscape …` line: cold parameters, costs, the model
/// and its features.
fn parse_header_comment(line: &str) -> Result<Header, String> {
    let mut cold = Vec::new();
    let mut costs = SwitchCosts::default();
    let mut model = None;
    let mut feature: [Option<f64>; 3] = [None; 3];
    let mut users = None;
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
            "model" => model = Some(value.to_string()),
            "users" => {
                users = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|u| *u > 0)
                        .ok_or_else(|| format!("users = '{value}' is not a positive whole number"))?,
                )
            }
            "latency_ms" | "worker_mb" | "frontend_mb" => {
                let number = value
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| format!("{key} = '{value}' is not a positive number"))?;
                let slot = ["latency_ms", "worker_mb", "frontend_mb"]
                    .iter()
                    .position(|k| *k == key)
                    .expect("one of the three");
                feature[slot] = Some(number);
            }
            _ => return Err(format!("unknown field '{key}'")),
        }
    }
    let features = match feature {
        [Some(latency_ms), Some(worker_mb), Some(frontend_mb)] => Some(ModelFeatures {
            latency_ms,
            worker_mb,
            frontend_mb,
        }),
        [None, None, None] => None,
        _ => return Err("latency_ms, worker_mb and frontend_mb go together: all three or none".into()),
    };
    Ok(Header {
        cold,
        costs,
        model,
        features,
        users,
    })
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
    let mut header_line = Header::default();
    while let Some((index, line)) = lines.next_if(|(_, l)| l.trim_start().starts_with('#')) {
        if line.trim_start().starts_with("# servetune-landscape") {
            header_line = parse_header_comment(line).map_err(|e| error(index + 1, e))?;
        }
    }
    let Header {
        cold,
        costs,
        model,
        features,
        users,
    } = header_line;
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
            model: None,
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
    Ok(Landscape {
        space,
        samples,
        costs,
        model,
        features,
        users,
    })
}

pub fn load_landscape(path: &Path) -> Result<Landscape, LandscapeError> {
    let text = std::fs::read_to_string(path).map_err(|e| LandscapeError {
        file: path.display().to_string(),
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    parse_landscape(&text, &path.display().to_string())
}

impl Landscape {
    /// The samples of `point`. TorchServe ignores the batch delay when the
    /// batch size is 1, so a recording measures one delay level there
    /// (`benches/record-landscape.sh` does): a batch-size-1 point that was
    /// not recorded takes the samples of the one that differs only in its
    /// delay.
    pub fn samples_at(&self, point: &Point) -> Option<&Vec<Sample>> {
        if let Some(samples) = self.samples.get(point) {
            return Some(samples);
        }
        let index = |name: &str| self.space.parameters.iter().position(|p| p.name == name);
        let (batch, delay) = (index("batch_size")?, index("max_batch_delay")?);
        let batch_of_one = self.space.parameters[batch].levels[point[batch]].as_f64() == Some(1.0);
        if !batch_of_one {
            return None;
        }
        let levels = self.space.parameters[delay].levels.len();
        (0..levels).find_map(|level| {
            let mut other = point.clone();
            other[delay] = level;
            self.samples.get(&other)
        })
    }

    /// The mean figures of every recorded point.
    pub fn means(&self) -> HashMap<&Point, Figures> {
        self.samples
            .iter()
            .map(|(point, samples)| {
                let mean = |f: fn(&Sample) -> f64| samples.iter().map(f).sum::<f64>() / samples.len() as f64;
                let figures = Figures {
                    throughput_rps: mean(|x| x.throughput_rps),
                    p50_ms: mean(|x| x.p50_ms),
                    p99_ms: mean(|x| x.p99_ms),
                    error_rate: mean(|x| x.error_rate),
                    memory_mb: mean(|x| x.memory_mb),
                    model_excess: 0.0,
                };
                (point, figures)
            })
            .collect()
    }

    /// How far two recorded windows of one config lie apart near the top:
    /// over the configs whose mean throughput is within `NEAR_TOP` of the
    /// best mean, the root mean square of the difference between their
    /// first two windows over the mean of the two (None: no config near the
    /// top was recorded twice). A mean of two windows carries about half
    /// this as its standard deviation, which is what a regret of a few
    /// percent is judged against. A root mean square, not a median: where
    /// throughputs come in steps (GPT-2's 2.5 requests/s), most pairs are
    /// equal and a median reads 0.
    pub fn repeat_noise(&self) -> Option<f64> {
        let throughput =
            |samples: &Vec<Sample>| samples.iter().map(|s| s.throughput_rps).sum::<f64>() / samples.len() as f64;
        let best = self.samples.values().map(throughput).fold(0.0, f64::max);
        let squares: Vec<f64> = self
            .samples
            .values()
            .filter(|samples| samples.len() >= 2 && throughput(samples) >= (1.0 - NEAR_TOP) * best)
            .filter_map(|samples| {
                let (a, b) = (samples[0].throughput_rps, samples[1].throughput_rps);
                let mean = (a + b) / 2.0;
                (mean > 0.0).then(|| ((a - b) / mean).powi(2))
            })
            .collect();
        (!squares.is_empty()).then(|| (squares.iter().sum::<f64>() / squares.len() as f64).sqrt())
    }

    /// The best feasible mean throughput under `objective` (0 when none is feasible).
    pub fn best_feasible_throughput(&self, objective: &Constraints) -> f64 {
        self.means()
            .values()
            .filter(|f| objective.feasible(f))
            .map(|f| f.throughput_rps)
            .fold(0.0, f64::max)
    }
}

/// How near the best mean throughput a config counts as "near the top"
/// for `Landscape::repeat_noise`.
pub const NEAR_TOP: f64 = 0.2;

/// The objective "maximum throughput with p99 ≤ SLO and errors ≤ limit",
/// as the study's own constraints and loss.
pub fn throughput_under_slo(slo_p99_ms: f64, max_error_rate: f64) -> Constraints {
    Constraints {
        p99_ms: slo_p99_ms,
        error_rate: max_error_rate,
        memory_mb: None,
        throughput_rps: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 6x6 landscape: throughput grows with a and b, p99 with a only;
    /// under an 80 ms SLO the best feasible mean is at (a=3, b=4).
    pub(crate) fn synthetic() -> String {
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
    fn repeat_noise_is_the_spread_of_two_windows_near_the_top() {
        let csv = "a,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n\
                   0,100,5,9,0,300\n0,90,5,9,0,300\n\
                   1,95,5,9,0,300\n1,95,5,9,0,300\n\
                   2,40,5,9,0,300\n2,60,5,9,0,300\n\
                   3,97,5,9,0,300\n";
        let landscape = parse_landscape(csv, "n.csv").unwrap();
        // Near the top (mean ≥ 80 % of 97): a=0 (10/95) and a=1 (0); a=2
        // is far below, a=3 was recorded once.
        let expected = ((10.0f64 / 95.0).powi(2) / 2.0).sqrt();
        assert!((landscape.repeat_noise().unwrap() - expected).abs() < 1e-12);
        let once = parse_landscape(
            "a,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n0,100,5,9,0,300\n",
            "o.csv",
        )
        .unwrap();
        assert_eq!(once.repeat_noise(), None);
    }

    #[test]
    fn a_batch_of_one_stands_for_every_delay() {
        let csv = "batch_size,max_batch_delay,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n\
                   1,5,10,1,2,0,100\n2,5,20,1,2,0,100\n2,50,30,1,2,0,100\n";
        let landscape = parse_landscape(csv, "l.csv").unwrap();
        let batch_one_delay_50 = vec![0, 1];
        assert_eq!(
            landscape.samples_at(&batch_one_delay_50).unwrap()[0].throughput_rps,
            10.0
        );
        assert_eq!(landscape.samples_at(&vec![1, 1]).unwrap()[0].throughput_rps, 30.0);
        assert_eq!(landscape.samples.len(), 3, "nothing is added to what was recorded");
    }

    #[test]
    fn the_header_carries_the_model_and_its_features() {
        let csv = "# servetune-landscape cold= restart_s=10 model=bert latency_ms=60.5 worker_mb=450 frontend_mb=210\n\
                   a,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n1,2,3,4,0,5\n";
        let landscape = parse_landscape(csv, "l.csv").unwrap();
        assert_eq!(landscape.model.as_deref(), Some("bert"));
        let features = landscape.features.unwrap();
        assert_eq!(
            (features.latency_ms, features.worker_mb, features.frontend_mb),
            (60.5, 450.0, 210.0)
        );
        let e = parse_landscape(&csv.replace(" frontend_mb=210", ""), "l.csv").unwrap_err();
        assert!(
            e.to_string().starts_with("l.csv:1:") && e.to_string().contains("all three"),
            "{e}"
        );
        let e = parse_landscape(&csv.replace("60.5", "fast"), "l.csv").unwrap_err();
        assert!(e.to_string().contains("latency_ms = 'fast'"), "{e}");
        assert_eq!(landscape.users, None);
        let loaded = parse_landscape(&csv.replace("model=", "users=16 model="), "l.csv").unwrap();
        assert_eq!(loaded.users, Some(16));
        let e = parse_landscape(&csv.replace("model=", "users=0 model="), "l.csv").unwrap_err();
        assert!(e.to_string().contains("users = '0'"), "{e}");
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
}
