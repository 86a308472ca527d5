//! The study loop on a recorded landscape, without TorchServe, in
//! milliseconds: budget planning, confirmation planning, tiers, resume
//! from a file journal, and every way out (done, budget, cancellation, an
//! error, a panic) ending with the testbed restored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use servetune::landscape::{parse_landscape, throughput_under_slo, Landscape};
use servetune::objective::{Tier, Weights};
use servetune::search::{make_strategy, StrategyKind};
use servetune::store::file::Journal;
use servetune::study::planner::Plan;
use servetune::study::recorded::{Fault, Recorded};
use servetune::study::study_loop::{Finished, StudyLoop};
use servetune::trial::{Entry, StopReason, TrialKind};
use tokio_util::sync::CancellationToken;

/// 4x4 configs, `b` cold: throughput grows with a and b, p99 with a; under
/// a 70 ms SLO the best feasible mean is (a=2, b=3). Restart 10 s, live 2 s,
/// window 5 s.
fn landscape() -> Landscape {
    let mut csv = String::from(
        "# servetune-landscape cold=b restart_s=10 hot_s=2 window_s=5\n\
         a,b,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n",
    );
    for b in 0..4 {
        for a in 0..4 {
            let throughput = 100.0 * (a + 1) as f64 + 20.0 * b as f64;
            let p99 = 20.0 * (a + 1) as f64;
            csv.push_str(&format!("{a},{b},{throughput},5,{p99},0,100\n"));
            csv.push_str(&format!("{a},{b},{},5,{p99},0,100\n", throughput * 0.97));
        }
    }
    parse_landscape(&csv, "loop.csv").unwrap()
}

fn plan(budget: Duration, max_trials: usize) -> Plan {
    Plan {
        budget,
        max_trials,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(5),
        confirm_duration: Duration::from_secs(5),
        confirm_top: 3,
        confirm_rounds: 3,
        weights: Weights {
            throughput: 1.0,
            p99: 1.0,
            memory: 0.2,
        },
        constraints: throughput_under_slo(70.0, 0.01),
        p99_from_baseline: false,
    }
}

fn run<'a>(study: StudyLoop<'a, Recorded<'a>>, on_trial: &(dyn Fn(&Entry) + Sync)) -> Finished<Recorded<'a>> {
    study.run(on_trial).now_or_never().expect("the landscape never waits")
}

fn study<'a>(plan: &'a Plan, landscape: &'a Landscape, testbed: Recorded<'a>) -> StudyLoop<'a, Recorded<'a>> {
    StudyLoop::new(plan, &landscape.space, testbed, make_strategy(StrategyKind::Default, 1))
}

fn count(finished: &Finished<Recorded<'_>>, kind: TrialKind) -> usize {
    finished.entries.iter().filter(|e| e.kind == kind).count()
}

#[test]
fn a_study_measures_the_baseline_then_the_defaults_then_confirms_and_decides_tiers() {
    let landscape = landscape();
    let plan = plan(Duration::from_secs(3600), 8);
    let finished = run(
        study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 1)),
        &|_| {},
    );
    assert!(finished.failure.is_none());
    assert_eq!(finished.stop, StopReason::MaxTrials);
    assert_eq!(finished.entries[0].kind, TrialKind::Baseline);
    assert_eq!(finished.entries[1].point, Some(landscape.space.default_point()));
    assert_eq!(count(&finished, TrialKind::Screen), 8);
    // The baseline and up to three candidates, three rounds each.
    let confirms = count(&finished, TrialKind::Confirm);
    assert!(confirms >= 6 && confirms % 3 == 0, "{confirms} confirmation runs");
    assert!(finished.confirmation_incomplete.is_none());
    assert!(finished.decisions.iter().any(|d| d.tier == Tier::MaxThroughput));
    assert!(finished.restored.is_ok() && finished.testbed.restores == 1 && finished.testbed.on_baseline());
    // Simulated time: what the moves and windows cost, no sleeping.
    assert!(finished.elapsed >= Duration::from_secs(5 * (1 + 8 + 6)));
}

#[test]
fn the_search_stops_so_that_the_confirmation_fits() {
    let landscape = landscape();
    let plan = plan(Duration::from_secs(240), 100);
    let finished = run(
        study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 2)),
        &|_| {},
    );
    assert_eq!(finished.stop, StopReason::Budget);
    assert!(!finished.no_budget_to_confirm);
    assert!(
        count(&finished, TrialKind::Confirm) >= 4,
        "the smallest confirmation ran"
    );
    assert!(finished.confirmation_incomplete.is_none());
    assert!(
        finished.elapsed <= plan.budget,
        "{:?} within {:?}",
        finished.elapsed,
        plan.budget
    );
    assert_eq!(finished.testbed.restores, 1);
}

#[test]
fn a_budget_too_small_for_the_confirmation_says_so() {
    let landscape = landscape();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trials.jsonl");
    // Four trials journaled, then the study resumed with almost no budget left.
    let token = CancellationToken::new();
    let cancel = token.clone();
    let roomy = plan(Duration::from_secs(3600), 100);
    let (journal, entries) = Journal::open(&path).unwrap();
    let first = run(
        study(&roomy, &landscape, Recorded::new(&landscape, landscape.costs, 3))
            .with_token(token)
            .with_journal(journal, entries),
        &move |e: &Entry| {
            if e.number == 3 {
                cancel.cancel();
            }
        },
    );
    let spent = first.elapsed;
    let tight = plan(spent + Duration::from_secs(20), 100);
    let (journal, entries) = Journal::open(&path).unwrap();
    let finished = run(
        study(&tight, &landscape, Recorded::new(&landscape, landscape.costs, 3)).with_journal(journal, entries),
        &|_| {},
    );
    assert_eq!(finished.stop, StopReason::Budget);
    assert!(finished.no_budget_to_confirm);
    assert_eq!(count(&finished, TrialKind::Confirm), 0);
    let why = finished
        .confirmation_incomplete
        .expect("the report says the confirmation is incomplete");
    assert!(why.contains("budget"), "{why}");
    assert!(finished.decisions.is_empty(), "nothing confirmed, nothing decided");
    assert_eq!(finished.testbed.restores, 1);
}

#[test]
fn a_tighter_budget_confirms_in_fewer_rounds_or_fewer_candidates() {
    let landscape = landscape();
    let confirms = |budget_s: u64| {
        let plan = plan(Duration::from_secs(budget_s), 6);
        let finished = run(
            study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 4)),
            &|_| {},
        );
        assert!(finished.confirmation_incomplete.is_none(), "{budget_s} s");
        count(&finished, TrialKind::Confirm)
    };
    let roomy = confirms(3600);
    // Room for the screening and about half of the full confirmation.
    let tight = confirms(6 * 17 + roomy as u64 * 5 / 2 + 20);
    assert!(
        tight < roomy && tight >= 4,
        "{tight} runs on a tight budget, {roomy} with room"
    );
}

#[test]
fn every_way_out_restores_the_testbed() {
    let landscape = landscape();
    let plan = plan(Duration::from_secs(3600), 10);
    for fault in [Fault::Error, Fault::Panic] {
        let testbed = Recorded::new(&landscape, landscape.costs, 5).with_fault(3, fault);
        let finished = run(study(&plan, &landscape, testbed), &|_| {});
        assert_eq!(finished.stop, StopReason::Interrupted, "{fault:?}");
        let failure = format!("{:#}", finished.failure.expect("the failure is kept"));
        assert!(failure.contains("injected"), "{fault:?}: {failure}");
        assert_eq!(finished.entries.len(), 3);
        assert_eq!(finished.testbed.restores, 1, "{fault:?}");
        assert!(finished.testbed.on_baseline());
    }
    // SIGTERM: the token is cancelled during the fifth trial.
    let token = CancellationToken::new();
    let seen = AtomicUsize::new(0);
    let cancel = token.clone();
    let on_trial = move |_: &Entry| {
        if seen.fetch_add(1, Ordering::SeqCst) == 3 {
            cancel.cancel();
        }
    };
    let testbed = Recorded::new(&landscape, landscape.costs, 6);
    let finished = run(study(&plan, &landscape, testbed).with_token(token), &on_trial);
    assert_eq!(finished.stop, StopReason::Interrupted);
    assert!(finished.failure.is_none());
    assert_eq!(finished.entries.len(), 4);
    assert_eq!(finished.testbed.restores, 1);
}

#[test]
fn a_resumed_study_never_measures_a_journaled_trial_again() {
    let landscape = landscape();
    let plan = plan(Duration::from_secs(3600), 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trials.jsonl");
    let token = CancellationToken::new();
    let cancel = token.clone();
    let on_trial = move |e: &Entry| {
        if e.number == 4 {
            cancel.cancel();
        }
    };
    let (journal, entries) = Journal::open(&path).unwrap();
    let first = run(
        study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 7))
            .with_token(token)
            .with_journal(journal, entries),
        &on_trial,
    );
    assert_eq!(first.stop, StopReason::Interrupted);
    let journaled = first.entries.len();
    assert_eq!(first.testbed.restores, 1);
    let (journal, entries) = Journal::open(&path).unwrap();
    assert_eq!(entries.len(), journaled);
    let second = run(
        study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 8)).with_journal(journal, entries),
        &|_| {},
    );
    assert!(second.failure.is_none());
    assert_eq!(
        count(&second, TrialKind::Baseline),
        1,
        "the baseline is not measured again"
    );
    assert_eq!(count(&second, TrialKind::Screen), 8);
    assert_eq!(second.testbed.measured, second.entries.len() - journaled);
    let mut screened: Vec<_> = second
        .entries
        .iter()
        .filter(|e| e.kind == TrialKind::Screen)
        .map(|e| e.point.clone())
        .collect();
    screened.sort();
    screened.dedup();
    assert_eq!(screened.len(), 8, "no screening point twice");
    assert_eq!(Journal::open(&path).unwrap().1.len(), second.entries.len());
}
