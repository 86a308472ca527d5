//! When the confirmation rounds could not complete (the budget ran out,
//! the study was interrupted, its runs were lost to kills): whether they
//! did, and what the screening alone can still offer — keep the current
//! config, or the best screened candidate, marked *not confirmed*. Pure:
//! `findings` turns the answer into the report's fields.

use crate::objective::{Constraints, Figures, Tier, Weights};
use crate::trial::{Candidate, StopReason, TierDecision};

/// Runs a candidate needs in the confirmation rounds to count as confirmed
/// for this check (the smallest confirmation the study plans: two rounds).
const MIN_CONFIRM_RUNS: usize = 2;

/// Why the confirmation did not complete, or None when it did or there was
/// nothing to confirm. `candidates`: every candidate's best estimate
/// (confirmation runs where it has them). It completed when some candidate
/// other than the baseline, and the baseline when it was measured, each
/// have two confirmation runs.
pub fn confirmation_shortfall(candidates: &[Candidate], stop: StopReason, confirmation_runs: usize) -> Option<String> {
    let confirmed = |c: &Candidate| c.confirmed && c.runs >= MIN_CONFIRM_RUNS;
    let others: Vec<&Candidate> = candidates.iter().filter(|c| !c.is_baseline()).collect();
    if others.is_empty() {
        return None;
    }
    let baseline_done = candidates.iter().filter(|c| c.is_baseline()).all(confirmed);
    if baseline_done && others.iter().any(|c| confirmed(c)) {
        return None;
    }
    let why = match stop {
        StopReason::Interrupted => "the study was interrupted before they completed",
        _ => "the budget left no room for them, or their runs were lost",
    };
    Some(format!(
        "the confirmation rounds did not complete ({confirmation_runs} confirmation run(s) kept; the baseline and a \
         candidate need {MIN_CONFIRM_RUNS} each): {why}"
    ))
}

/// What the screening alone suggests for the balanced tier, from the
/// screened candidates (one short window each): the best feasible balanced
/// score, or the current config when it scores best or nothing else is
/// feasible. None when there is neither a feasible candidate nor a baseline.
pub fn best_unconfirmed(
    screened: &[Candidate],
    constraints: &Constraints,
    weights: &Weights,
    reference: &Figures,
) -> Option<TierDecision> {
    let baseline = screened.iter().position(Candidate::is_baseline);
    let best = (0..screened.len())
        .filter(|&i| constraints.feasible(&screened[i].figures) && screened[i].figures.throughput_rps.is_finite())
        .max_by(|&a, &b| {
            weights
                .score(&screened[a].figures, reference)
                .total_cmp(&weights.score(&screened[b].figures, reference))
        });
    let keep = |baseline: usize, reason: &str| TierDecision {
        tier: Tier::Balanced,
        chosen: baseline,
        keep_current: true,
        indistinguishable_from: Vec::new(),
        reason: format!("{reason}; not confirmed: screening figures of one short window each"),
    };
    match (best, baseline) {
        (Some(best), baseline) if Some(best) != baseline => Some(TierDecision {
            tier: Tier::Balanced,
            chosen: best,
            keep_current: false,
            indistinguishable_from: Vec::new(),
            reason: "best balanced score of the screening; NOT CONFIRMED: one short window, never re-measured \
                     against the baseline, so the gain may be noise. Resume the study with more budget \
                     (`servetune tune --resume NAME --budget …`) to confirm it before deploying"
                .into(),
        }),
        (Some(_), Some(baseline)) => Some(keep(
            baseline,
            "no screened candidate scored better than the current config",
        )),
        (None, Some(baseline)) => Some(keep(baseline, "no screened candidate met the constraints")),
        (_, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(point: Option<usize>, throughput: f64, runs: usize, confirmed: bool) -> Candidate {
        Candidate {
            point: point.map(|p| vec![p]),
            description: format!("{point:?}"),
            figures: Figures {
                throughput_rps: throughput,
                p50_ms: 5.0,
                p99_ms: 10.0,
                error_rate: 0.0,
                memory_mb: 500.0,
                model_excess: 0.0,
            },
            runs,
            throughput: None,
            confirmed,
            throughput_runs: vec![throughput; runs],
            p99_runs: vec![10.0; runs],
            memory_runs: vec![500.0; runs],
        }
    }

    #[test]
    fn a_confirmation_is_complete_only_with_the_baseline_and_a_candidate_twice() {
        let baseline = |runs, confirmed| candidate(None, 100.0, runs, confirmed);
        let other = |runs, confirmed| candidate(Some(1), 200.0, runs, confirmed);
        let complete = [baseline(2, true), other(2, true)];
        assert_eq!(confirmation_shortfall(&complete, StopReason::Budget, 4), None);
        // Nothing but the baseline: nothing to confirm.
        assert_eq!(
            confirmation_shortfall(&[baseline(1, false)], StopReason::Budget, 0),
            None
        );
        // No baseline measured (it failed): the candidates' rounds suffice.
        assert_eq!(confirmation_shortfall(&[other(2, true)], StopReason::Budget, 2), None);
        for (case, stop, why) in [
            (vec![baseline(1, false), other(1, false)], StopReason::Budget, "budget"),
            (vec![baseline(2, true), other(1, false)], StopReason::Budget, "budget"),
            (
                vec![baseline(1, true), other(1, true)],
                StopReason::Interrupted,
                "interrupted",
            ),
            (
                vec![baseline(1, false), other(2, true)],
                StopReason::MaxTrials,
                "budget",
            ),
        ] {
            let text = confirmation_shortfall(&case, stop, 2).expect("incomplete");
            assert!(text.contains("did not complete") && text.contains(why), "{text}");
        }
    }

    #[test]
    fn the_screening_offers_its_best_marked_or_keeps_the_current_config() {
        let constraints = Constraints {
            p99_ms: 50.0,
            error_rate: 0.01,
            memory_mb: None,
            throughput_rps: None,
        };
        let weights = Weights {
            throughput: 1.0,
            p99: 1.0,
            memory: 0.2,
        };
        let reference = candidate(None, 100.0, 1, false).figures;
        let screened = [candidate(None, 100.0, 1, false), candidate(Some(1), 300.0, 1, false)];
        let d = best_unconfirmed(&screened, &constraints, &weights, &reference).unwrap();
        assert_eq!((d.chosen, d.keep_current, d.tier), (1, false, Tier::Balanced));
        assert!(d.reason.contains("NOT CONFIRMED"), "{}", d.reason);
        // The baseline scores best: keep it.
        let worse = [candidate(None, 100.0, 1, false), candidate(Some(1), 50.0, 1, false)];
        let d = best_unconfirmed(&worse, &constraints, &weights, &reference).unwrap();
        assert_eq!((d.chosen, d.keep_current), (0, true));
        assert!(d.reason.contains("not confirmed"), "{}", d.reason);
        // Nothing feasible: keep the current config; no baseline either: nothing.
        let mut slow = candidate(Some(1), 300.0, 1, false);
        slow.figures.p99_ms = 500.0;
        let mut slow_baseline = candidate(None, 100.0, 1, false);
        slow_baseline.figures.p99_ms = 500.0;
        let d = best_unconfirmed(&[slow_baseline, slow.clone()], &constraints, &weights, &reference).unwrap();
        assert_eq!((d.chosen, d.keep_current), (0, true));
        assert!(d.reason.contains("met the constraints"), "{}", d.reason);
        assert!(best_unconfirmed(&[slow], &constraints, &weights, &reference).is_none());
        assert!(best_unconfirmed(&[], &constraints, &weights, &reference).is_none());
    }
}
