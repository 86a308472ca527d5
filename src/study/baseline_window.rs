//! A server found at a config of the space (TorchServe's defaults, most
//! often) is not measured twice at it: the baseline's window stands for that
//! config's screening trial. Moving there would change nothing
//! (`Space::realize` leaves a default that was unset, unset), so a second
//! window would measure the very same deployment. The entry says so
//! (`Entry::window_of`), costs no move and no time, and is judged by the
//! constraints of the moment it is journaled.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::objective::Constraints;
use crate::space::Point;
use crate::trial::{Entry, Switch, TrialKind};

/// The baseline entry among `entries` whose window can stand for screening
/// `point`: the config as found is `point` (`found_at`, as
/// `Planner::found_at` gives it), the baseline has figures and lost nothing,
/// and no trial reused it for `point` yet. Only the loop that measured the
/// baseline (the leader) may ask: a worker's own server may have been found
/// elsewhere.
pub fn stands_for<'e>(entries: &'e [Entry], found_at: Option<&Point>, point: &Point) -> Option<&'e Entry> {
    let found_at_point = found_at == Some(point);
    let reused = entries
        .iter()
        .any(|e| e.window_of.is_some() && e.point.as_ref() == Some(point));
    if !found_at_point || reused {
        return None;
    }
    entries.iter().find(|e| {
        e.kind == TrialKind::Baseline && e.figures.is_some() && e.failure.is_none() && e.server_lost.is_none()
    })
}

/// Screening trial `number` of `point` on `baseline`'s window.
pub fn screening_entry(
    baseline: &Entry,
    number: usize,
    point: &Point,
    values: BTreeMap<String, String>,
    constraints: &Constraints,
    elapsed: Duration,
) -> Entry {
    let figures = baseline.figures.expect("stands_for keeps a measured baseline");
    Entry {
        number,
        kind: TrialKind::Screen,
        point: Some(point.clone()),
        values,
        loss: constraints.loss(&figures),
        feasible: constraints.feasible(&figures),
        restarted: false,
        duration_s: 0.0,
        elapsed_s: elapsed.as_secs_f64(),
        switch: Switch::None,
        switch_s: 0.0,
        warmup_s: 0.0,
        round: None,
        window_of: Some(baseline.number),
        ..baseline.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::landscape::throughput_under_slo;

    fn baseline(p99_ms: f64) -> Entry {
        serde_json::from_value(serde_json::json!({
            "number": 0, "kind": "baseline", "point": null, "values": {"a": "(unset: 1)"},
            "figures": {"throughput_rps": 100.0, "p50_ms": 5.0, "p99_ms": p99_ms, "error_rate": 0.0, "memory_mb": 300.0},
            "failure": null, "loss": -100.0, "feasible": true, "restarted": false,
            "throughput_ci95": null, "duration_s": 5.0, "elapsed_s": 5.0, "switch": "restart", "switch_s": 9.0,
        }))
        .unwrap()
    }

    /// The config as found, from its levels (None off the grid).
    fn found(levels: &[Option<usize>]) -> Option<Point> {
        levels.iter().copied().collect()
    }

    #[test]
    fn only_a_measured_baseline_found_at_the_point_stands_for_it_and_once() {
        let entries = vec![baseline(9.0)];
        let point = vec![1, 0];
        assert!(stands_for(&entries, found(&[Some(1), Some(0)]).as_ref(), &point).is_some());
        assert!(
            stands_for(&entries, found(&[Some(1), Some(1)]).as_ref(), &point).is_none(),
            "found elsewhere"
        );
        assert!(
            stands_for(&entries, found(&[Some(1), None]).as_ref(), &point).is_none(),
            "off the grid"
        );
        let mut failed = baseline(9.0);
        failed.figures = None;
        failed.failure = Some("did not come up".into());
        assert!(stands_for(&[failed], found(&[Some(1), Some(0)]).as_ref(), &point).is_none());
        let mut lost = baseline(9.0);
        lost.server_lost = Some("a worker died".into());
        assert!(stands_for(&[lost], found(&[Some(1), Some(0)]).as_ref(), &point).is_none());
        let reused = screening_entry(
            &entries[0],
            1,
            &point,
            Default::default(),
            &throughput_under_slo(50.0, 0.01),
            Duration::ZERO,
        );
        let both = vec![entries[0].clone(), reused];
        assert!(
            stands_for(&both, found(&[Some(1), Some(0)]).as_ref(), &point).is_none(),
            "reused once only"
        );
    }

    #[test]
    fn the_screening_trial_is_judged_now_and_costs_nothing() {
        let slo = throughput_under_slo(8.0, 0.01);
        let entry = screening_entry(
            &baseline(9.0),
            3,
            &vec![1, 0],
            Default::default(),
            &slo,
            Duration::from_secs(40),
        );
        assert_eq!(
            (entry.number, entry.kind, entry.point),
            (3, TrialKind::Screen, Some(vec![1, 0]))
        );
        assert_eq!(entry.window_of, Some(0));
        assert!(
            !entry.feasible,
            "9 ms misses an 8 ms objective the baseline was not judged by"
        );
        assert_eq!(
            (entry.switch, entry.switch_s, entry.duration_s, entry.elapsed_s),
            (Switch::None, 0.0, 0.0, 40.0)
        );
        assert_eq!(entry.figures.map(|f| f.p99_ms), Some(9.0));
    }
}
