//! The study loop on a recorded landscape, without TorchServe, in
//! milliseconds: budget planning, confirmation planning, tiers, resume
//! from a file journal, and every way out (done, budget, cancellation, an
//! error, a panic) ending with the testbed restored.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use servetune::landscape::{parse_landscape, throughput_under_slo, Landscape};
use servetune::objective::Tier;
use servetune::search::{make_strategy, StrategyKind};
use servetune::space::Point;
use servetune::store::file::Journal;
use servetune::study::planner::Plan;
use servetune::study::recorded::{Fault, Recorded};
use servetune::study::study_loop::{Finished, StudyLoop, TrialUpdate};
use servetune::study::warm::{WarmStart, FIRST_CANDIDATES};
use servetune::trial::{StopReason, TrialKind};
use tokio_util::sync::CancellationToken;

/// 4x4 configs, `b` cold: throughput grows with a and b, p99 with a; under
/// a 70 ms SLO the best feasible mean is (a=2, b=3). Restart 10 s, live 2 s,
/// window 5 s.
fn landscape() -> Landscape {
    landscape_scaled(|_, _| 1.0)
}

/// `landscape()` with the throughput of (a, b) scaled by `scale(a, b)` (a server that changed).
fn landscape_scaled(scale: impl Fn(usize, usize) -> f64) -> Landscape {
    let mut csv = String::from(
        "# servetune-landscape cold=b restart_s=10 hot_s=2 window_s=5\n\
         a,b,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n",
    );
    for b in 0..4 {
        for a in 0..4 {
            let throughput = (100.0 * (a + 1) as f64 + 20.0 * b as f64) * scale(a, b);
            let p99 = 20.0 * (a + 1) as f64;
            csv.push_str(&format!("{a},{b},{throughput},5,{p99},0,100\n"));
            csv.push_str(&format!("{a},{b},{},5,{p99},0,100\n", throughput * 0.97));
        }
    }
    parse_landscape(&csv, "loop.csv").unwrap()
}

fn plan(budget: Duration, max_trials: usize) -> Plan {
    Plan::fixed(
        budget,
        max_trials,
        Duration::from_secs(5),
        throughput_under_slo(70.0, 0.01),
    )
}

fn run<'a>(
    study: StudyLoop<'a, Recorded<'a>, Journal>,
    on_trial: &(dyn Fn(&TrialUpdate) + Sync),
) -> Finished<Recorded<'a>, Journal> {
    study.run(on_trial).now_or_never().expect("the landscape never waits")
}

fn study<'a>(plan: &'a Plan, landscape: &'a Landscape, testbed: Recorded<'a>) -> StudyLoop<'a, Recorded<'a>, Journal> {
    StudyLoop::new(plan, &landscape.space, testbed, make_strategy(StrategyKind::Default, 1))
}

/// The study's trials kept in the journal at `path`, going on from what it holds.
fn journaled<'a>(study: StudyLoop<'a, Recorded<'a>, Journal>, path: &Path) -> StudyLoop<'a, Recorded<'a>, Journal> {
    let (journal, entries) = Journal::open(path).unwrap();
    study.with_store(journal, entries)
}

fn count(finished: &Finished<Recorded<'_>, Journal>, kind: TrialKind) -> usize {
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
fn a_server_found_at_the_defaults_is_not_measured_twice_at_them() {
    let landscape = landscape();
    let plan = plan(Duration::from_secs(3600), 8);
    let finished = run(
        study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 1)),
        &|_| {},
    );
    let defaults = landscape.space.default_point();
    let (baseline, screened) = (&finished.entries[0], &finished.entries[1]);
    assert_eq!(
        (screened.kind, screened.point.as_ref()),
        (TrialKind::Screen, Some(&defaults))
    );
    assert_eq!(screened.window_of, Some(baseline.number), "{screened:?}");
    assert_eq!(screened.figures, baseline.figures);
    assert_eq!(
        (screened.duration_s, screened.switch_s, screened.warmup_s),
        (0.0, 0.0, 0.0)
    );
    let at_defaults = finished
        .entries
        .iter()
        .filter(|e| e.kind == TrialKind::Screen && e.point.as_ref() == Some(&defaults))
        .count();
    assert_eq!(at_defaults, 1, "the defaults are screened once");
    // Eight screening trials, seven of them measured; every window the
    // testbed ran is a journaled trial of its own.
    assert_eq!(count(&finished, TrialKind::Screen), 8);
    let measured = finished.entries.iter().filter(|e| e.window_of.is_none()).count();
    assert_eq!(finished.testbed.measured, measured);
    assert_eq!(measured, finished.entries.len() - 1);
}

#[test]
fn a_server_found_at_the_best_config_is_confirmed_there_once_as_the_baseline() {
    // The defaults, where the testbed starts, serve ten times the rest.
    let landscape = landscape_scaled(|a, b| if (a, b) == (0, 0) { 10.0 } else { 1.0 });
    let plan = plan(Duration::from_secs(3600), 8);
    let finished = run(
        study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 1)),
        &|_| {},
    );
    assert!(finished.failure.is_none());
    let defaults = landscape.space.default_point();
    let confirmed_at = |point: Option<&Point>| {
        finished
            .entries
            .iter()
            .filter(|e| e.kind == TrialKind::Confirm && e.point.as_ref() == point)
            .count()
    };
    assert_eq!(confirmed_at(Some(&defaults)), 0, "the same config twice a round");
    assert!(confirmed_at(None) >= 2, "the baseline's runs confirm it");
    let max = finished.decisions.iter().find(|d| d.tier == Tier::MaxThroughput);
    assert!(max.is_some_and(|d| d.keep_current), "{:?}", finished.decisions);
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
    let first = run(
        journaled(
            study(&roomy, &landscape, Recorded::new(&landscape, landscape.costs, 3)).with_token(token),
            &path,
        ),
        &move |e: &TrialUpdate| {
            if e.number == 3 {
                cancel.cancel();
            }
        },
    );
    let spent = first.elapsed;
    let tight = plan(spent + Duration::from_secs(20), 100);
    let finished = run(
        journaled(
            study(&tight, &landscape, Recorded::new(&landscape, landscape.costs, 3)),
            &path,
        ),
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
    // Room for the screening (five windows: the defaults' is the
    // baseline's) and about half of the full confirmation.
    let tight = confirms(5 * 17 + roomy as u64 * 5 / 2 + 20);
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
        // The baseline, the defaults on its window, two windows more.
        assert_eq!(finished.entries.len(), 4);
        assert_eq!(finished.testbed.restores, 1, "{fault:?}");
        assert!(finished.testbed.on_baseline());
    }
    // SIGTERM: the token is cancelled during the fifth trial.
    let token = CancellationToken::new();
    let seen = AtomicUsize::new(0);
    let cancel = token.clone();
    let on_trial = move |_: &TrialUpdate| {
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
    let on_trial = move |e: &TrialUpdate| {
        if e.number == 4 {
            cancel.cancel();
        }
    };
    let first = run(
        journaled(
            study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 7)).with_token(token),
            &path,
        ),
        &on_trial,
    );
    assert_eq!(first.stop, StopReason::Interrupted);
    let kept = first.entries.len();
    assert_eq!(first.testbed.restores, 1);
    assert_eq!(Journal::open(&path).unwrap().1.len(), kept);
    let second = run(
        journaled(
            study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 8)),
            &path,
        ),
        &|_| {},
    );
    assert!(second.failure.is_none());
    assert_eq!(
        count(&second, TrialKind::Baseline),
        1,
        "the baseline is not measured again"
    );
    assert_eq!(count(&second, TrialKind::Screen), 8);
    assert_eq!(second.testbed.measured, second.entries.len() - kept);
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

#[test]
fn a_window_whose_server_was_lost_is_measured_again_and_three_in_a_row_fail_the_candidate() {
    let landscape = landscape();
    let plan = plan(Duration::from_secs(3600), 6);
    // Window 1 loses a worker once: the second screening trial (the first,
    // the defaults', is the baseline's window).
    let testbed = Recorded::new(&landscape, landscape.costs, 9).with_fault(1, Fault::ServerLost(1));
    let finished = run(study(&plan, &landscape, testbed), &|_| {});
    assert!(finished.failure.is_none());
    let lost = &finished.entries[2];
    assert!(lost.server_lost.is_some() && lost.failure.is_none(), "{lost:?}");
    let again = &finished.entries[3];
    assert_eq!(
        (again.point.as_ref(), again.server_lost.as_ref()),
        (lost.point.as_ref(), None)
    );
    assert!(again.figures.is_some());
    // The lost window does not count against the trial limit.
    let counted = finished
        .entries
        .iter()
        .filter(|e| e.kind == TrialKind::Screen && e.server_lost.is_none())
        .count();
    assert_eq!(counted, 6);
    // Lost three windows in a row: the candidate is taken as the cause.
    let testbed = Recorded::new(&landscape, landscape.costs, 9).with_fault(1, Fault::ServerLost(3));
    let finished = run(study(&plan, &landscape, testbed), &|_| {});
    let marked: Vec<_> = finished.entries[2..5].iter().map(|e| e.server_lost.is_some()).collect();
    assert_eq!(marked, [true, true, false]);
    let third = &finished.entries[4];
    assert!(
        third
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("3 windows in a row")),
        "{third:?}"
    );
    assert!(third.figures.is_none() && !third.feasible);
    assert_eq!(finished.testbed.restores, 1);
}

#[test]
fn a_study_that_applies_its_best_ends_on_the_balanced_recommendation() {
    let landscape = landscape();
    let plan = plan(Duration::from_secs(3600), 8);
    let testbed = Recorded::new(&landscape, landscape.costs, 1);
    let finished = run(study(&plan, &landscape, testbed).applying_best(true), &|_| {});
    let balanced = finished
        .decisions
        .iter()
        .find(|d| d.tier == Tier::Balanced)
        .expect("a balanced tier");
    assert!(!balanced.keep_current, "the landscape's best beats its baseline");
    let point = finished.candidates[balanced.chosen].point.clone().unwrap();
    assert_eq!(finished.testbed.running_point(), &point);
    assert_eq!(finished.testbed.restores, 1);
    // A failed study never applies anything: it ends on the baseline.
    let testbed = Recorded::new(&landscape, landscape.costs, 1).with_fault(12, Fault::Error);
    let failed = run(study(&plan, &landscape, testbed).applying_best(true), &|_| {});
    assert!(failed.failure.is_some());
    assert!(failed.testbed.on_baseline());
}

#[test]
fn trial_updates_carry_the_best_so_far_this_trial_included() {
    let landscape = landscape();
    let plan = plan(Duration::from_secs(3600), 6);
    let updates = std::sync::Mutex::new(Vec::new());
    let finished = run(
        study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 2)),
        &|u: &TrialUpdate| updates.lock().unwrap().push(u.clone()),
    );
    let updates = updates.into_inner().unwrap();
    assert_eq!(updates.len(), finished.entries.len());
    for (i, (update, entry)) in updates.iter().zip(&finished.entries).enumerate() {
        assert_eq!(update.number, entry.number);
        if let Some(best) = update.best {
            let so_far = &finished.entries[..=i];
            assert!(
                so_far.iter().any(|e| e.figures == Some(best)),
                "the best shown after trial {i} is a trial so far"
            );
        }
        assert!(update.elapsed <= update.budget);
    }
    let first_good = finished
        .entries
        .iter()
        .position(|e| e.kind == TrialKind::Screen && e.loss < 0.0)
        .expect("a feasible screening trial");
    assert!(
        updates[first_good].best.is_some(),
        "the best includes the trial just measured"
    );
}

#[test]
fn a_warm_started_study_measures_the_earlier_best_first_and_stops_when_it_is_unchanged() {
    let landscape = landscape();
    let plan = plan(Duration::from_secs(3600), 12);
    let earlier = run(
        study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 1)),
        &|_| {},
    );
    let warm = WarmStart::from_entries(Path::new("results/earlier"), &earlier.entries, &landscape.space, &plan);
    let (best, _) = warm
        .previous_best
        .clone()
        .expect("the earlier study recommends a config");
    assert!(
        warm.first[..2].contains(&best),
        "its recommendations are measured first"
    );
    assert_eq!(warm.prior.len(), count(&earlier, TrialKind::Screen));
    let again = run(
        study(&plan, &landscape, Recorded::new(&landscape, landscape.costs, 2)).warm_started(Some(warm.clone())),
        &|_| {},
    );
    assert_eq!(again.stop, StopReason::Unchanged);
    assert_eq!(again.entries[0].kind, TrialKind::Baseline);
    let measured_first: Vec<_> = again.entries[1..=warm.first.len()]
        .iter()
        .map(|e| e.point.clone().unwrap())
        .collect();
    assert_eq!(measured_first, warm.first, "right after the baseline");
    let screened = count(&again, TrialKind::Screen);
    assert!(
        screened <= FIRST_CANDIDATES && screened < count(&earlier, TrialKind::Screen),
        "{screened} screening trials"
    );
    assert!(count(&again, TrialKind::Confirm) >= 4, "the confirmation still runs");
    assert!(again.elapsed < earlier.elapsed, "the rest of the budget is saved");
    let summary = again.warm_start.expect("the loop says what it reused");
    assert!(summary.unchanged && summary.earlier_trials == warm.prior.len());
    assert_eq!(again.testbed.restores, 1);

    // The server changed: the earlier best lost 40 %; the search goes on.
    let values = landscape.space.values(&best);
    let at = |name: &str| values.iter().find(|(n, _)| n.as_str() == name).unwrap().1.to_string();
    let (best_a, best_b) = (at("a"), at("b"));
    let changed = landscape_scaled(|a, b| {
        if (a.to_string(), b.to_string()) == (best_a.clone(), best_b.clone()) {
            0.6
        } else {
            1.0
        }
    });
    let warm = WarmStart::from_entries(Path::new("results/earlier"), &earlier.entries, &changed.space, &plan);
    let moved = run(
        study(&plan, &changed, Recorded::new(&changed, changed.costs, 3)).warm_started(Some(warm)),
        &|_| {},
    );
    assert_ne!(moved.stop, StopReason::Unchanged);
    assert!(!moved.warm_start.as_ref().expect("a summary").unchanged);
    assert!(count(&moved, TrialKind::Screen) > FIRST_CANDIDATES);
}
