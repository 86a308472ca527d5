//! The landscape model: what a config will do for a model never measured,
//! from the landscapes recorded with other models on this machine type.
//!
//! Method: kernel regression (Nadaraya–Watson) over every recorded config
//! of every prior landscape, in the settings the landscapes share
//! (`KNOWN`) and one feature of the model, its single-request latency.
//! Each landscape's figures are first made model-free: throughput as a
//! multiple of one request at a time (`throughput × latency`), p50 and p99
//! as multiples of the single-request latency, memory in workers of the
//! model above the frontend (`(memory − frontend) / worker`). A prediction
//! is the kernel-weighted mean of those, scaled back with the new model's
//! own features. The weight of a recorded config falls with its distance in
//! settings (one level of a parameter, on a log scale for sizes, is two
//! bandwidths) and with the ratio of the two models' latencies (a factor of
//! `e` is one bandwidth): a model is predicted mostly from the recorded
//! models most like it, at the settings nearest the asked ones. The spread
//! is the weighted standard deviation of the recorded values around the
//! prediction, floored: configs and models the weights mix disagree. The
//! same mix split by prior landscape (`predict_by_landscape`) is what a
//! study reweighs as it measures (`search::Guided`).
//!
//! Why this and not a GP or boosted trees: with four or five recorded models the
//! cross-model part is a handful of points, so anything with more
//! parameters than "which models are alike" overfits; the per-model shapes
//! are what transfers, and kernel regression transfers them as recorded.
//! The replay (`replay --landscape L --prior …`) is its test.

use std::collections::BTreeMap;

use crate::landscape::{Landscape, ModelFeatures};
use crate::objective::Figures;
use crate::space::Space;
use crate::stats::normal_cdf;

/// How a parameter's value becomes a coordinate where one level ≈ one unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// `log2(x)`: sizes that double from level to level.
    Log2,
    /// `log2(1 + x)`: a delay in ms, 0 allowed.
    Log2Plus1,
    /// `x`: counts that step by one.
    Linear,
}

impl Scale {
    fn coordinate(self, x: f64) -> f64 {
        match self {
            Scale::Log2 => x.max(1e-9).log2(),
            Scale::Log2Plus1 => (1.0 + x.max(0.0)).log2(),
            Scale::Linear => x,
        }
    }
}

/// The parameters the model knows (named as in the search spaces).
pub const KNOWN: [(&str, Scale); 4] = [
    ("batch_size", Scale::Log2),
    ("max_batch_delay", Scale::Log2Plus1),
    ("workers", Scale::Linear),
    ("number_of_netty_threads", Scale::Log2),
];

/// Bandwidth in settings (coordinate units, `KNOWN`). Both bandwidths are
/// chosen by how well the predictions of the landscapes left out one at a
/// time (within their load) rank their configs (`predict::accuracy`, mean
/// Spearman correlation over the nine bundled landscapes: 0.729 here;
/// 0.731 with a feature bandwidth of 0.5 and settings 0.35, 0.725 at 0.35
/// and 1.0, 0.704 at 0.5 and 1.0, the pair chosen on the 16-user
/// landscapes alone: near ties, see the README). The search replay
/// (`benches/landscape-prior.sh`) tests them; it did not choose them.
pub const SETTINGS_BANDWIDTH: f64 = 0.4;
/// Bandwidth in the model feature: `ln` of the single-request latency (a
/// model `e` ≈ 2.7 times slower or faster is one bandwidth away).
pub const FEATURE_BANDWIDTH: f64 = 1.0;
/// The least spread a prediction carries (`ln` units: about ±15 %).
pub const SPREAD_FLOOR: f64 = 0.15;
/// An error rate a recorded config counts as serving without errors at
/// (the study's default limit).
pub const ERROR_FREE: f64 = 0.01;
/// The users a landscape without `users=` in its header was recorded with
/// (`benches/record-landscape.sh`'s default).
pub const RECORDING_USERS: u32 = 16;

/// A config in the model's terms: a value for each `KNOWN` parameter it sets.
pub type Settings = BTreeMap<String, f64>;

/// One recorded config, model-free.
#[derive(Debug, Clone)]
struct Row {
    /// Which prior landscape it was recorded in (an index into `models`).
    landscape: usize,
    /// A coordinate per `KNOWN` parameter; None when its landscape did not vary it.
    at: [Option<f64>; 4],
    /// `ln` of the model's single-request latency.
    feature: f64,
    /// `ln(throughput × latency / 1000)`.
    capacity: f64,
    /// `ln(p50 / latency)` and `ln(p99 / latency)`.
    p50: f64,
    p99: f64,
    /// `(memory − frontend) / worker`.
    workers_of_memory: f64,
    error_rate: f64,
}

/// The model, fitted on prior landscapes.
#[derive(Debug, Clone)]
pub struct LandscapeModel {
    rows: Vec<Row>,
    /// The models it learnt from (their landscapes' names for them).
    pub models: Vec<String>,
    /// The load its latencies are for: the closed loop's users every prior
    /// landscape was recorded with. Latency multiples do not carry from one
    /// load to another (a saturated server's p99 grows with the users
    /// queued), so priors recorded at different loads are refused.
    pub users: u32,
    /// The least and most coordinate recorded per `KNOWN` parameter, over
    /// every prior (None: no prior varied it).
    recorded: [Option<(f64, f64)>; 4],
}

/// What the model expects of one config, with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Throughput, p50, p99, error rate and memory.
    #[serde(flatten)]
    pub figures: Figures,
    /// Standard deviation of `ln` throughput and `ln` p99 (about the
    /// relative error: 0.2 is ±20 %), and of memory in MB.
    pub throughput_ln_sd: f64,
    pub p99_ln_sd: f64,
    pub memory_sd_mb: f64,
    /// The weighted share of the configs it learnt from that served
    /// without errors (at most `ERROR_FREE`): errors are a threshold, not a
    /// level to average (an overloaded neighbour's 30 % would otherwise
    /// leak into every config near it).
    pub chance_error_free: f64,
}

impl Prediction {
    /// The chance that p99 stays within `slo_ms` (normal in `ln` p99).
    pub fn chance_p99_within(&self, slo_ms: f64) -> f64 {
        if !slo_ms.is_finite() {
            return 1.0;
        }
        let z = (slo_ms.ln() - self.figures.p99_ms.ln()) / self.p99_ln_sd.max(1e-9);
        normal_cdf(z)
    }
}

/// The coordinates of `settings`, per `KNOWN` parameter.
fn coordinates(settings: &Settings) -> [Option<f64>; 4] {
    KNOWN.map(|(name, scale)| settings.get(name).map(|&x| scale.coordinate(x)))
}

impl LandscapeModel {
    /// Fits the model on `priors` (each with its model's features and name).
    pub fn fit(priors: &[(&str, &Landscape)]) -> Result<Self, String> {
        let mut rows = Vec::new();
        let mut models = Vec::new();
        let users = one_load(priors)?;
        for (name, landscape) in priors {
            let features = landscape.features.ok_or_else(|| {
                format!("{name}: its header has no model features (latency_ms, worker_mb, frontend_mb)")
            })?;
            if !landscape
                .space
                .parameters
                .iter()
                .any(|p| KNOWN.iter().any(|(k, _)| *k == p.name))
            {
                return Err(format!(
                    "{name}: none of its parameters is one the model knows ({})",
                    KNOWN.map(|(k, _)| k).join(", ")
                ));
            }
            let index = models.len();
            models.push(landscape.model.clone().unwrap_or_else(|| name.to_string()));
            for (point, figures) in landscape.means() {
                let settings = settings_of_point(&landscape.space, point);
                if figures.throughput_rps <= 0.0 || figures.p99_ms <= 0.0 || figures.p50_ms <= 0.0 {
                    continue;
                }
                rows.push(Row {
                    landscape: index,
                    at: coordinates(&settings),
                    feature: features.latency_ms.ln(),
                    capacity: (figures.throughput_rps * features.latency_ms / 1000.0).ln(),
                    p50: (figures.p50_ms / features.latency_ms).ln(),
                    p99: (figures.p99_ms / features.latency_ms).ln(),
                    workers_of_memory: (figures.memory_mb - features.frontend_mb) / features.worker_mb.max(1.0),
                    error_rate: figures.error_rate,
                });
            }
        }
        if rows.is_empty() {
            return Err("no prior landscape has a usable row".into());
        }
        let recorded = std::array::from_fn(|i| {
            rows.iter()
                .filter_map(|r| r.at[i])
                .fold(None, |range: Option<(f64, f64)>, x| match range {
                    None => Some((x, x)),
                    Some((low, high)) => Some((low.min(x), high.max(x))),
                })
        });
        Ok(Self {
            rows,
            models,
            users,
            recorded,
        })
    }

    /// Whether every setting of `settings` the model knows lies within the
    /// levels its landscapes recorded. Outside, kernel regression does not
    /// extrapolate: it repeats the nearest recorded edge, and since the
    /// edge's neighbours all lie on one side, a rising trend makes the
    /// point past the edge look best of all (a batch size of 16 predicted
    /// above 8 from landscapes that stopped at 8).
    pub fn within_recorded(&self, settings: &Settings) -> bool {
        coordinates(settings)
            .iter()
            .zip(&self.recorded)
            .all(|(at, range)| match (at, range) {
                (Some(x), Some((low, high))) => *low - 1e-9 <= *x && *x <= *high + 1e-9,
                _ => true,
            })
    }

    /// What `settings` will do for a model with `features`.
    pub fn predict(&self, settings: &Settings, features: &ModelFeatures) -> Prediction {
        let at = coordinates(settings);
        let feature = features.latency_ms.ln();
        let weights: Vec<f64> = self.rows.iter().map(|row| weight(row, &at, feature)).collect();
        mixture(self.rows.iter().zip(weights), features)
    }

    /// What each prior landscape alone expects of `settings` (in the order
    /// of `models`), with its kernel mass there: the sum of its rows'
    /// weights, which is how much of `predict`'s mixture it makes up
    /// (`predict` is the mass-weighted mean of these). A study reweighs
    /// them by how well each agrees with what it measures
    /// (`search::Guided`).
    pub fn predict_by_landscape(&self, settings: &Settings, features: &ModelFeatures) -> Vec<(f64, Prediction)> {
        let at = coordinates(settings);
        let feature = features.latency_ms.ln();
        (0..self.models.len())
            .map(|landscape| {
                let rows: Vec<(&Row, f64)> = self
                    .rows
                    .iter()
                    .filter(|r| r.landscape == landscape)
                    .map(|r| (r, weight(r, &at, feature)))
                    .collect();
                let mass = rows.iter().map(|(_, w)| w).sum();
                (mass, mixture(rows.into_iter(), features))
            })
            .collect()
    }
}

/// The kernel-weighted prediction from `weighted` rows, scaled back with
/// `features` (the plain mean when every weight is nil).
fn mixture<'a>(weighted: impl Iterator<Item = (&'a Row, f64)>, features: &ModelFeatures) -> Prediction {
    let (rows, weights): (Vec<&Row>, Vec<f64>) = weighted.unzip();
    let total: f64 = weights.iter().sum();
    let weights: Vec<f64> = if total > 1e-300 {
        weights.iter().map(|w| w / total).collect()
    } else {
        // Nothing near: the plain mean (the spread says how little that is).
        vec![1.0 / rows.len().max(1) as f64; rows.len()]
    };
    let moments = |value: fn(&Row) -> f64| {
        let mean: f64 = rows.iter().zip(&weights).map(|(r, w)| w * value(r)).sum();
        let variance: f64 = rows
            .iter()
            .zip(&weights)
            .map(|(r, w)| w * (value(r) - mean).powi(2))
            .sum();
        (mean, variance.sqrt())
    };
    let (capacity, capacity_sd) = moments(|r| r.capacity);
    let (p50, _) = moments(|r| r.p50);
    let (p99, p99_sd) = moments(|r| r.p99);
    let (memory_workers, memory_sd) = moments(|r| r.workers_of_memory);
    let (error_rate, _) = moments(|r| r.error_rate);
    let (chance_error_free, _) = moments(|r| f64::from(u8::from(r.error_rate <= ERROR_FREE)));
    Prediction {
        figures: Figures {
            throughput_rps: capacity.exp() * 1000.0 / features.latency_ms,
            p50_ms: p50.exp() * features.latency_ms,
            p99_ms: p99.exp() * features.latency_ms,
            error_rate,
            memory_mb: features.frontend_mb + memory_workers * features.worker_mb,
            model_excess: 0.0,
        },
        throughput_ln_sd: capacity_sd.max(SPREAD_FLOOR),
        p99_ln_sd: p99_sd.max(SPREAD_FLOOR),
        memory_sd_mb: (memory_sd * features.worker_mb).max(SPREAD_FLOOR * features.worker_mb),
        chance_error_free,
    }
}

/// The users `landscape` was recorded with (`RECORDING_USERS` when its
/// header does not say).
pub fn users_of(landscape: &Landscape) -> u32 {
    landscape.users.unwrap_or(RECORDING_USERS)
}

/// The users all of `priors` were recorded with, or why they differ.
fn one_load(priors: &[(&str, &Landscape)]) -> Result<u32, String> {
    let Some((first, first_landscape)) = priors.first() else {
        return Ok(RECORDING_USERS);
    };
    let users = users_of(first_landscape);
    match priors.iter().find(|(_, l)| users_of(l) != users) {
        Some((other, l)) => Err(format!(
            "{other} was recorded with {} users, {first} with {users}: the model's latencies are for one load \
             (record the landscapes with the same users)",
            users_of(l)
        )),
        None => Ok(users),
    }
}

/// The kernel weight of `row` for a query at `at` with feature `feature`.
fn weight(row: &Row, at: &[Option<f64>; 4], feature: f64) -> f64 {
    let mut distance = ((row.feature - feature) / FEATURE_BANDWIDTH).powi(2);
    for (a, b) in at.iter().zip(&row.at) {
        if let (Some(a), Some(b)) = (a, b) {
            distance += ((a - b) / SETTINGS_BANDWIDTH).powi(2);
        }
    }
    (-0.5 * distance).exp()
}

/// The model's settings of `point` of `space`: its `KNOWN` parameters by name.
pub fn settings_of_point(space: &Space, point: &[usize]) -> Settings {
    space
        .parameters
        .iter()
        .zip(point)
        .filter(|(p, _)| KNOWN.iter().any(|(k, _)| *k == p.name))
        .filter_map(|(p, &level)| Some((p.name.clone(), p.levels[level].as_f64()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::landscape::parse_landscape;

    /// A landscape of a model whose single request takes `latency` ms:
    /// throughput grows with batch size up to 8 then falls, p99 with it.
    fn recorded(latency: f64) -> Landscape {
        let mut csv = format!(
            "# servetune-landscape model=m{latency} latency_ms={latency} worker_mb=100 frontend_mb=300\n\
             batch_size,workers,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n"
        );
        for b in [1, 2, 4, 8, 16] {
            for w in [1, 2] {
                let speedup = f64::from(b.min(8)) * if b == 16 { 0.5 } else { 1.0 } * f64::from(w);
                let throughput = 1000.0 / latency * speedup;
                let p99 = latency * f64::from(b) * 2.0;
                let memory = 300.0 + 100.0 * f64::from(w);
                csv.push_str(&format!("{b},{w},{throughput},{},{p99},0,{memory}\n", p99 / 2.0));
            }
        }
        parse_landscape(&csv, "m.csv").unwrap()
    }

    #[test]
    fn transfers_the_shape_scaled_by_the_new_models_latency() {
        let (a, b) = (recorded(10.0), recorded(40.0));
        let model = LandscapeModel::fit(&[("a", &a), ("b", &b)]).unwrap();
        let new = ModelFeatures {
            latency_ms: 20.0,
            worker_mb: 200.0,
            frontend_mb: 250.0,
        };
        let at = |batch: f64| Settings::from([("batch_size".into(), batch), ("workers".into(), 2.0)]);
        let best = model.predict(&at(8.0), &new);
        let worse = model.predict(&at(16.0), &new);
        let one = model.predict(&at(1.0), &new);
        assert!(
            best.figures.throughput_rps > worse.figures.throughput_rps,
            "{best:?} vs {worse:?}"
        );
        assert!(
            best.figures.throughput_rps > 3.0 * one.figures.throughput_rps,
            "{best:?} vs {one:?}"
        );
        // One request at a time on one worker: 1000 / 20 ms, times the
        // recorded speed-up of 2 workers (smoothed by the neighbours).
        assert!((60.0..140.0).contains(&one.figures.throughput_rps), "{one:?}");
        assert!((400.0..700.0).contains(&one.figures.memory_mb), "{one:?}");
        assert!(one.chance_p99_within(1e6) > 0.99 && one.chance_p99_within(1.0) < 0.01);
    }

    #[test]
    fn the_prediction_is_the_mass_weighted_mix_of_each_landscapes_alone() {
        let (a, b) = (recorded(10.0), recorded(40.0));
        let model = LandscapeModel::fit(&[("a", &a), ("b", &b)]).unwrap();
        let new = ModelFeatures {
            latency_ms: 15.0,
            worker_mb: 200.0,
            frontend_mb: 250.0,
        };
        let at = Settings::from([("batch_size".into(), 4.0), ("workers".into(), 2.0)]);
        let alone = model.predict_by_landscape(&at, &new);
        assert_eq!(alone.len(), 2);
        assert!(alone[0].0 > alone[1].0, "the nearer model weighs more: {alone:?}");
        let total: f64 = alone.iter().map(|(m, _)| m).sum();
        let mixed: f64 = alone
            .iter()
            .map(|(m, p)| m * p.figures.throughput_rps.ln())
            .sum::<f64>()
            / total;
        let predicted = model.predict(&at, &new).figures.throughput_rps.ln();
        assert!((mixed - predicted).abs() < 1e-9, "{mixed} vs {predicted}");
    }

    #[test]
    fn landscapes_recorded_at_different_loads_are_refused() {
        let a = recorded(10.0);
        let mut b = recorded(40.0);
        assert_eq!(
            LandscapeModel::fit(&[("a", &a), ("b", &b)]).unwrap().users,
            RECORDING_USERS
        );
        b.users = Some(4);
        let e = LandscapeModel::fit(&[("a", &a), ("b", &b)]).unwrap_err();
        assert!(e.contains("b was recorded with 4 users, a with 16"), "{e}");
        let mut a = a;
        a.users = Some(4);
        assert_eq!(LandscapeModel::fit(&[("a", &a), ("b", &b)]).unwrap().users, 4);
    }

    #[test]
    fn a_landscape_without_features_is_refused_by_name() {
        let csv = "batch_size,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n1,1,1,1,0,1\n";
        let bare = parse_landscape(csv, "bare.csv").unwrap();
        let e = LandscapeModel::fit(&[("bare.csv", &bare)]).unwrap_err();
        assert!(e.contains("bare.csv") && e.contains("latency_ms"), "{e}");
    }
}
