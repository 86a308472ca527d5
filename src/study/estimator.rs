//! Statistics of a study: each candidate's estimate from its runs, Student-t
//! intervals from independent repeats (between-run variance, never from
//! per-second counts of one window), percentiles of several runs from their
//! merged latency histograms (never averaged p99s), gains over the baseline
//! with intervals, and the tier decisions that only pick among confirmed
//! candidates and keep the current config when nothing beats it by more
//! than the noise. Pure: no I/O.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;

use crate::measure::{latency_histogram, LatencySummary};
use crate::objective::{Constraints, Figures, Tier, Weights};
use crate::space::{Point, Space};
use crate::stats::mean;
pub use crate::stats::{change_pct_interval, difference_interval, mean_interval};
use crate::trial::{Candidate, Entry, TierDecision, TrialKind};

/// A histogram as compact text for the journal.
pub fn encode_histogram(histogram: &Histogram<u64>) -> Option<String> {
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(histogram, &mut bytes).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub fn decode_histogram(text: &str) -> Option<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).ok()
}

/// The runs of one candidate.
#[derive(Default)]
struct Runs<'a> {
    screens: Vec<&'a Entry>,
    confirms: Vec<&'a Entry>,
}

/// One estimate from a set of runs of the same config.
fn combine(point: Option<Point>, description: String, runs: &[&Entry], confirmed: bool) -> Option<Candidate> {
    let measured: Vec<(&Entry, Figures)> = runs.iter().filter_map(|e| e.figures.map(|f| (*e, f))).collect();
    if measured.is_empty() {
        return None;
    }
    let throughput_runs: Vec<f64> = measured.iter().map(|(_, f)| f.throughput_rps).collect();
    let p99_runs: Vec<f64> = measured.iter().map(|(_, f)| f.p99_ms).collect();
    let memory_runs: Vec<f64> = measured.iter().map(|(_, f)| f.memory_mb).collect();
    let total_s: f64 = measured.iter().map(|(e, _)| e.duration_s).sum::<f64>().max(1e-9);
    let mut merged = latency_histogram();
    let all_histograms = measured.iter().all(|(e, _)| {
        e.latency_histogram
            .as_deref()
            .and_then(decode_histogram)
            .is_some_and(|h| merged.add(&h).is_ok())
    });
    let (p50_ms, p99_ms) = if all_histograms && !merged.is_empty() {
        let summary = LatencySummary::of(&merged);
        (summary.p50, summary.p99)
    } else {
        (
            mean(&measured.iter().map(|(_, f)| f.p50_ms).collect::<Vec<_>>()),
            mean(&p99_runs),
        )
    };
    let figures = Figures {
        throughput_rps: mean(&throughput_runs),
        p50_ms,
        p99_ms,
        error_rate: measured.iter().map(|(e, f)| f.error_rate * e.duration_s).sum::<f64>() / total_s,
        memory_mb: mean(&memory_runs),
        model_excess: mean(&measured.iter().map(|(_, f)| f.model_excess).collect::<Vec<_>>()),
    };
    Some(Candidate {
        point,
        description,
        figures,
        runs: measured.len(),
        throughput: mean_interval(&throughput_runs),
        confirmed,
        throughput_runs,
        p99_runs,
        memory_runs,
    })
}

/// Relative changes of a candidate over the baseline, with 95 % intervals.
pub fn gains_over(candidate: &Candidate, baseline: &Candidate) -> crate::trial::GainIntervals {
    crate::trial::GainIntervals {
        throughput_pct: change_pct_interval(&candidate.throughput_runs, &baseline.throughput_runs),
        p99_pct: change_pct_interval(&candidate.p99_runs, &baseline.p99_runs),
        memory_pct: change_pct_interval(&candidate.memory_runs, &baseline.memory_runs),
    }
}

/// Every evaluated config (the baseline included) with its best estimate:
/// its confirmation runs when it has any, else its screening runs.
pub fn candidates(entries: &[Entry], space: &Space) -> Vec<Candidate> {
    let mut by_point: BTreeMap<Option<Point>, Runs<'_>> = BTreeMap::new();
    // A trial whose server lost a worker or its JVM measured a server in trouble.
    for entry in entries.iter().filter(|e| e.server_lost.is_none()) {
        let runs = by_point.entry(entry.point.clone()).or_default();
        match entry.kind {
            // A run during which a worker restarted measured something else.
            TrialKind::Confirm if !entry.incidents.is_empty() => {}
            TrialKind::Confirm => runs.confirms.push(entry),
            TrialKind::Baseline | TrialKind::Screen => runs.screens.push(entry),
        }
    }
    by_point
        .into_iter()
        .filter_map(|(point, runs)| {
            let description = match &point {
                Some(p) => space.describe(p),
                None => "the config as it was (baseline)".to_string(),
            };
            if runs.confirms.is_empty() {
                combine(point, description, &runs.screens, false)
            } else {
                combine(point, description, &runs.confirms, true)
            }
        })
        .collect()
}

/// Per-run values of a tier's measure, oriented so that higher is better.
fn measure_runs(tier: Tier, candidate: &Candidate, weights: &Weights, reference: &Figures) -> Vec<f64> {
    match tier {
        Tier::MaxThroughput => candidate.throughput_runs.clone(),
        Tier::LowestLatency => candidate.p99_runs.iter().map(|x| -x).collect(),
        Tier::LowestMemory => candidate.memory_runs.iter().map(|x| -x).collect(),
        Tier::Balanced => (0..candidate.throughput_runs.len())
            .map(|i| {
                let run = Figures {
                    throughput_rps: candidate.throughput_runs[i],
                    p99_ms: candidate.p99_runs[i],
                    memory_mb: candidate.memory_runs[i],
                    ..candidate.figures
                };
                weights.score(&run, reference)
            })
            .collect(),
    }
}

fn measure_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Balanced => "balanced score",
        Tier::MaxThroughput => "throughput",
        Tier::LowestLatency => "p99 latency",
        Tier::LowestMemory => "memory",
    }
}

/// The figures the tiers' scores are relative to: the baseline's, else
/// TorchServe's defaults', else ones (nothing measured to compare with).
pub fn reference_figures(candidates: &[Candidate], space: &Space) -> Figures {
    let defaults = space.default_point();
    candidates
        .iter()
        .find(|c| c.is_baseline())
        .or_else(|| candidates.iter().find(|c| c.point.as_ref() == Some(&defaults)))
        .map_or(
            Figures {
                throughput_rps: 1.0,
                p50_ms: 1.0,
                p99_ms: 1.0,
                error_rate: 0.0,
                memory_mb: 1.0,
                model_excess: 0.0,
            },
            |c| c.figures,
        )
}

/// Chooses each tier among the confirmed, feasible candidates. The best
/// mean wins unless the measurements cannot tell it from the baseline, in
/// which case the current config is kept; candidates it cannot be told
/// from are listed, never silently dropped.
pub fn decide_tiers(
    candidates: &[Candidate],
    constraints: &Constraints,
    weights: &Weights,
    reference: &Figures,
) -> Vec<TierDecision> {
    let eligible: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].confirmed && constraints.feasible(&candidates[i].figures))
        .collect();
    let mut decisions = Vec::new();
    for tier in Tier::ALL {
        let runs: BTreeMap<usize, Vec<f64>> = eligible
            .iter()
            .map(|&i| (i, measure_runs(tier, &candidates[i], weights, reference)))
            .collect();
        let Some(best) = eligible.iter().copied().max_by(|&a, &b| {
            mean(&runs[&a])
                .total_cmp(&mean(&runs[&b]))
                .then_with(|| candidates[b].is_baseline().cmp(&candidates[a].is_baseline()).reverse())
        }) else {
            continue;
        };
        let tied: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|&i| i != best)
            .filter(|&i| difference_interval(&runs[&best], &runs[&i]).is_none_or(|d| !d.above_zero()))
            .collect();
        let baseline = eligible.iter().copied().find(|&i| candidates[i].is_baseline());
        let name = measure_name(tier);
        let decision = match baseline {
            Some(b) if b == best || tied.contains(&b) => TierDecision {
                tier,
                chosen: b,
                keep_current: true,
                indistinguishable_from: tied.iter().chain([&best]).copied().filter(|&i| i != b).collect(),
                reason: if b == best {
                    format!("the current config has the best {name} of the confirmed candidates")
                } else {
                    format!(
                        "no candidate beats the current config on {name} by more than the noise \
                         (best: {}, within the 95% interval)",
                        candidates[best].description
                    )
                },
            },
            _ => TierDecision {
                tier,
                chosen: best,
                keep_current: false,
                reason: if tied.is_empty() {
                    format!("best {name} of the confirmed candidates, ahead of the others beyond the noise")
                } else {
                    format!(
                        "best mean {name}; {} other candidate(s) cannot be told apart from it within the 95% interval",
                        tied.len()
                    )
                },
                indistinguishable_from: tied,
            },
        };
        decisions.push(decision);
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(point: Option<Point>, throughput: &[f64], p99: &[f64]) -> Candidate {
        let figures = Figures {
            throughput_rps: mean(throughput),
            p50_ms: 1.0,
            p99_ms: mean(p99),
            error_rate: 0.0,
            memory_mb: 100.0,
            model_excess: 0.0,
        };
        Candidate {
            description: format!("{point:?}"),
            point,
            figures,
            runs: throughput.len(),
            throughput: mean_interval(throughput),
            confirmed: true,
            throughput_runs: throughput.to_vec(),
            p99_runs: p99.to_vec(),
            memory_runs: vec![100.0; throughput.len()],
        }
    }

    const LIMITS: Constraints = Constraints {
        p99_ms: 50.0,
        error_rate: 0.01,
        memory_mb: None,
        throughput_rps: None,
    };
    const WEIGHTS: Weights = Weights {
        throughput: 1.0,
        p99: 1.0,
        memory: 0.2,
    };

    #[test]
    fn intervals_come_from_between_run_variance() {
        let i = mean_interval(&[100.0, 110.0, 90.0]).unwrap();
        // s = 10, n = 3, t(2) = 4.303: half-width 24.8
        assert!((i.estimate - 100.0).abs() < 1e-9);
        assert!((i.half_width() - 4.303 * 10.0 / 3f64.sqrt()).abs() < 0.01, "{i:?}");
        assert!(mean_interval(&[5.0]).is_none());
        let d = difference_interval(&[200.0, 202.0, 198.0], &[100.0, 101.0, 99.0]).unwrap();
        assert!(d.above_zero());
        let g = change_pct_interval(&[200.0, 202.0, 198.0], &[100.0, 101.0, 99.0]).unwrap();
        assert!((g.estimate - 100.0).abs() < 1.0 && g.low > 90.0, "{g:?}");
    }

    #[test]
    fn histograms_round_trip_through_text() {
        let mut h = latency_histogram();
        for v in [1000u64, 2000, 3000, 250_000] {
            h.record(v).unwrap();
        }
        let text = encode_histogram(&h).unwrap();
        let back = decode_histogram(&text).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
    }

    #[test]
    fn the_current_config_is_kept_when_nothing_beats_it_beyond_the_noise() {
        let all = vec![
            candidate(None, &[1000.0, 1100.0, 900.0], &[20.0, 22.0, 21.0]),
            candidate(Some(vec![1]), &[1050.0, 1150.0, 950.0], &[20.0, 21.0, 22.0]),
        ];
        let decisions = decide_tiers(&all, &LIMITS, &WEIGHTS, &all[0].figures);
        let throughput = decisions.iter().find(|d| d.tier == Tier::MaxThroughput).unwrap();
        assert!(throughput.keep_current, "{throughput:?}");
        assert_eq!(throughput.chosen, 0);
        assert_eq!(throughput.indistinguishable_from, vec![1]);
    }

    #[test]
    fn a_clear_winner_is_recommended_and_ties_are_named() {
        let all = vec![
            candidate(None, &[500.0, 510.0, 490.0], &[20.0, 21.0, 22.0]),
            candidate(Some(vec![1]), &[1000.0, 1010.0, 990.0], &[20.0, 21.0, 22.0]),
            candidate(Some(vec![2]), &[1005.0, 1020.0, 985.0], &[20.0, 21.0, 22.0]),
            candidate(Some(vec![3]), &[2000.0, 2000.0, 2000.0], &[80.0, 81.0, 82.0]),
        ];
        let decisions = decide_tiers(&all, &LIMITS, &WEIGHTS, &all[0].figures);
        let throughput = decisions.iter().find(|d| d.tier == Tier::MaxThroughput).unwrap();
        assert!(!throughput.keep_current);
        assert_eq!(throughput.chosen, 2, "best mean among the feasible (3 breaks the SLO)");
        assert_eq!(throughput.indistinguishable_from, vec![1]);
        let unconfirmed = Candidate {
            confirmed: false,
            ..candidate(Some(vec![4]), &[5000.0, 5000.0], &[10.0, 10.0])
        };
        let with_screening_only = [all.clone(), vec![unconfirmed]].concat();
        let again = decide_tiers(&with_screening_only, &LIMITS, &WEIGHTS, &all[0].figures);
        assert!(
            again.iter().all(|d| d.chosen != 4),
            "only confirmed candidates are recommended"
        );
    }
}
