//! The forecast `predict` prints: every config of the recorded grid
//! predicted for the new model, and for each tier the best few among those
//! expected to meet the p99 objective, ranked as a study ranks its
//! candidates (`objective`'s tier keys; the balanced score against the
//! config the server runs now, predicted the same way).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use super::model::{LandscapeModel, Prediction, Settings, KNOWN};
use crate::landscape::{Landscape, ModelFeatures};
use crate::objective::{Tier, Weights};

/// Configs listed per tier.
pub const TOP: usize = 5;
/// The least chance a listed config has of meeting the p99 objective and
/// serving without errors (the chances multiplied, as a study's guesses
/// judge them).
pub const LEAST_CHANCE: f64 = 0.5;
/// The balanced tier's weights (a study's defaults).
pub const WEIGHTS: Weights = Weights {
    throughput: 1.0,
    p99: 1.0,
    memory: 0.2,
};

/// One config with what the model expects of it.
#[derive(Debug, Clone, Serialize)]
pub struct RankedConfig {
    pub settings: Settings,
    pub predicted: Prediction,
    /// The chance its p99 meets the objective.
    pub chance_within_slo: f64,
}

/// A tier's best configs, best first.
#[derive(Debug, Clone, Serialize)]
pub struct TierForecast {
    pub tier: Tier,
    pub configs: Vec<RankedConfig>,
}

/// What `predict` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    pub model: String,
    pub features: ModelFeatures,
    /// The landscapes the model learnt from.
    pub learnt_from: Vec<String>,
    /// The load the predicted latencies are for: a closed loop of this many
    /// users, as those landscapes were recorded.
    pub users: u32,
    /// Their folder (None: the bundled ones).
    pub landscapes: Option<PathBuf>,
    pub slo_p99_ms: f64,
    /// The config the server runs now, predicted.
    pub current: RankedConfig,
    pub tiers: Vec<TierForecast>,
    /// Configs predicted (the grid of the recorded levels).
    pub configs: usize,
}

/// Every combination of the levels the prior landscapes recorded for each
/// parameter the model knows (one recorded anywhere counts).
pub fn grid(priors: &[(String, Landscape)]) -> Vec<Settings> {
    let mut axes: Vec<(&str, Vec<f64>)> = Vec::new();
    for (name, _) in KNOWN {
        let mut levels = BTreeSet::new();
        for (_, landscape) in priors {
            if let Some(p) = landscape.space.parameters.iter().find(|p| p.name == name) {
                levels.extend(p.levels.iter().filter_map(|l| l.as_f64()).map(f64::to_bits));
            }
        }
        if !levels.is_empty() {
            let mut values: Vec<f64> = levels.into_iter().map(f64::from_bits).collect();
            values.sort_by(f64::total_cmp);
            axes.push((name, values));
        }
    }
    let mut configs = vec![Settings::new()];
    for (name, values) in axes {
        configs = configs
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |&v| {
                    let mut c = c.clone();
                    c.insert(name.to_string(), v);
                    c
                })
            })
            .collect();
    }
    configs
}

/// Predicts `current` and every config of `grid`; each tier's best.
pub fn rank(
    model: &LandscapeModel,
    features: &ModelFeatures,
    grid: &[Settings],
    current: &Settings,
    slo_p99_ms: f64,
) -> (RankedConfig, Vec<TierForecast>) {
    let ranked = |settings: &Settings| {
        let predicted = model.predict(settings, features);
        RankedConfig {
            settings: settings.clone(),
            chance_within_slo: predicted.chance_p99_within(slo_p99_ms),
            predicted,
        }
    };
    let current = ranked(current);
    let candidates: Vec<RankedConfig> = grid
        .iter()
        .map(ranked)
        .filter(|c| c.chance_within_slo * c.predicted.chance_error_free >= LEAST_CHANCE)
        .collect();
    let reference = current.predicted.figures;
    let tiers = Tier::ALL
        .iter()
        .map(|&tier| {
            let key = |c: &RankedConfig| {
                let f = c.predicted.figures;
                match tier {
                    Tier::Balanced => WEIGHTS.score(&f, &reference),
                    Tier::MaxThroughput => f.throughput_rps,
                    Tier::LowestLatency => -f.p99_ms,
                    Tier::LowestMemory => -f.memory_mb - 1e-6 * f.p99_ms,
                }
            };
            let mut configs = candidates.clone();
            configs.sort_by(|a, b| key(b).total_cmp(&key(a)));
            configs.truncate(TOP);
            TierForecast { tier, configs }
        })
        .collect();
    (current, tiers)
}

/// How a config reads in the text output: `batch_size=8 workers=2 …`.
pub fn describe(settings: &Settings) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::landscape::parse_landscape;

    #[test]
    fn a_config_its_neighbours_served_with_errors_is_not_listed() {
        // Two workers: twice the throughput, within the SLO, but every
        // recorded request batch failed half the time.
        let landscape = parse_landscape(
            "# servetune-landscape model=a latency_ms=10 worker_mb=100 frontend_mb=200\n\
             workers,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n\
             1,100,10,20,0,300\n2,200,10,20,0.5,400\n",
            "a.csv",
        )
        .unwrap();
        let priors = vec![("a.csv".to_string(), landscape)];
        let model = crate::predict::fit(&priors).unwrap();
        let features = ModelFeatures {
            latency_ms: 10.0,
            worker_mb: 100.0,
            frontend_mb: 200.0,
        };
        let one_worker = Settings::from([("workers".to_string(), 1.0)]);
        let (_, tiers) = rank(&model, &features, &grid(&priors), &one_worker, 100.0);
        for tier in tiers {
            assert_eq!(tier.configs.len(), 1, "{:?}: only one worker is listed", tier.tier);
            assert_eq!(tier.configs[0].settings, one_worker);
        }
    }
}
