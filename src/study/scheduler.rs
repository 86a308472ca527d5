//! What a study does next and whether it can afford it: the wall-clock
//! budget (search, confirmation, export and the final restart all count),
//! what moves cost as measured in this study, which candidates the
//! confirmation re-measures, and in what order — grouped by cold config so
//! each group costs one restart, and inside a group in alternating rounds
//! (A B C, B C A, C A B, …) on the same server, so that drift (a JIT still
//! compiling, logs growing, a noisy neighbour) hits every candidate alike.
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use super::clock::Clock;

use crate::objective::{Constraints, Weights};
use crate::search::SwitchCosts;
use crate::space::Point;
use crate::trial::{Candidate, MeasuredCosts};
#[cfg(test)]
use crate::trial::{Entry, Switch, TrialKind};

/// The budget of one run of a study (a resumed study brings its time so
/// far), on the testbed's clock.
#[derive(Debug, Clone)]
pub struct Budget {
    clock: Clock,
    before: Duration,
    total: Duration,
}

impl Budget {
    /// A budget on the wall clock, started now.
    pub fn new(total: Duration, already_spent: Duration) -> Self {
        Self::on(Clock::wall(), total, already_spent)
    }

    /// A budget on `clock` (simulated for a recorded landscape).
    pub fn on(clock: Clock, total: Duration, already_spent: Duration) -> Self {
        Self {
            clock,
            before: already_spent,
            total,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.before + self.clock.elapsed()
    }

    pub fn total(&self) -> Duration {
        self.total
    }

    /// Whether `needed` more still fits, keeping `reserve` for later phases.
    pub fn fits(&self, needed: Duration, reserve: Duration) -> bool {
        self.elapsed() + needed + reserve <= self.total
    }
}

/// The costs a strategy weighs: measured in this study where known, else
/// defaults; a restart also costs the extra warm-up that follows it.
pub fn switch_costs(measured: &MeasuredCosts, restart_warmup: Duration, window: Duration) -> SwitchCosts {
    let defaults = SwitchCosts::default();
    let hot = match (measured.register_s, measured.scale_s) {
        (Some(r), Some(s)) => (r + s) / 2.0,
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => defaults.hot_s,
    };
    SwitchCosts {
        restart_s: measured.restart_s.unwrap_or(defaults.restart_s) + restart_warmup.as_secs_f64(),
        hot_s: hot,
        window_s: measured.screening_trial_s.unwrap_or(window.as_secs_f64()),
    }
}

/// Indices (into `candidates`) of what the confirmation re-measures: the
/// baseline, the `top` best screening candidates by loss (feasible first,
/// then the nearest misses, since a short window may have judged them
/// wrongly), and the screening leader of each tier.
pub fn confirmation_pool(
    candidates: &[Candidate],
    constraints: &Constraints,
    weights: &Weights,
    top: usize,
    found_at: Option<&Point>,
) -> Vec<usize> {
    let mut pool: Vec<usize> = candidates.iter().position(Candidate::is_baseline).into_iter().collect();
    // The candidate at the point the server was found at is the baseline's
    // config again: the baseline's runs confirm it.
    let mut ranked: Vec<usize> = (0..candidates.len())
        .filter(|&i| !candidates[i].is_baseline() && candidates[i].point.as_ref() != found_at)
        .collect();
    ranked.sort_by(|&a, &b| {
        constraints
            .loss(&candidates[a].figures)
            .total_cmp(&constraints.loss(&candidates[b].figures))
    });
    pool.extend(ranked.iter().take(top));
    let feasible: Vec<usize> = ranked
        .iter()
        .copied()
        .filter(|&i| constraints.feasible(&candidates[i].figures))
        .collect();
    let reference = pool
        .first()
        .map(|&b| candidates[b].figures)
        .filter(|_| candidates.iter().any(Candidate::is_baseline));
    let leaders = [
        feasible
            .iter()
            .copied()
            .min_by(|&a, &b| candidates[a].figures.p99_ms.total_cmp(&candidates[b].figures.p99_ms)),
        feasible.iter().copied().min_by(|&a, &b| {
            candidates[a]
                .figures
                .memory_mb
                .total_cmp(&candidates[b].figures.memory_mb)
        }),
        reference.and_then(|reference| {
            feasible.iter().copied().max_by(|&a, &b| {
                weights
                    .score(&candidates[a].figures, &reference)
                    .total_cmp(&weights.score(&candidates[b].figures, &reference))
            })
        }),
    ];
    for leader in leaders.into_iter().flatten() {
        if !pool.contains(&leader) {
            pool.push(leader);
        }
    }
    pool
}

/// One confirmation measurement: a candidate (index into the pool's
/// candidates) in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub candidate: usize,
    pub round: u32,
}

/// Where a confirmation starts and ends: the candidate the server runs now
/// (None when unknown: the first move then restarts) and the baseline, which
/// the study goes back to when it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    pub running: Option<usize>,
    pub home: Option<usize>,
}

/// The order of confirmation: groups of candidates that share a cold config
/// (`group_of`), the running candidate's group first (no restart) with that
/// candidate first in it (no move), the baseline's group last (going back
/// to the original config at the end is then live at most), the others
/// between in pool order; inside each group `rounds` rounds, each a
/// rotation of the group's members, so no candidate is always first after
/// a move.
pub fn confirmation_order<K: Ord + Clone>(
    pool: &[usize],
    group_of: impl Fn(usize) -> K,
    ends: Ends,
    rounds: u32,
) -> Vec<Step> {
    let mut groups: Vec<(K, Vec<usize>)> = Vec::new();
    let mut index_of: BTreeMap<K, usize> = BTreeMap::new();
    for &candidate in pool {
        let key = group_of(candidate);
        match index_of.get(&key) {
            Some(&i) => groups[i].1.push(candidate),
            None => {
                index_of.insert(key.clone(), groups.len());
                groups.push((key, vec![candidate]));
            }
        }
    }
    if let Some(running) = ends.running {
        let key = group_of(running);
        if let Some(position) = groups.iter().position(|(k, _)| *k == key) {
            let mut first = groups.remove(position);
            if let Some(at) = first.1.iter().position(|&c| c == running) {
                first.1.rotate_left(at);
            }
            groups.insert(0, first);
        }
    }
    if let Some(home) = ends.home {
        let key = group_of(home);
        if let Some(position) = groups.iter().position(|(k, _)| *k == key) {
            let last = groups.remove(position);
            groups.push(last);
        }
    }
    let mut steps = Vec::new();
    for (_, members) in groups {
        for round in 1..=rounds {
            let shift = (round as usize - 1) % members.len();
            for offset in 0..members.len() {
                steps.push(Step {
                    candidate: members[(shift + offset) % members.len()],
                    round,
                });
            }
        }
    }
    steps
}

/// Estimated seconds of a confirmation plan as it will run: from the
/// running candidate, a move before every step that measures another
/// candidate than the one before (live inside a cold group, a restart
/// across), a window per step, and the move back to the baseline at the end.
pub fn plan_seconds<K: PartialEq>(
    steps: &[Step],
    group_of: impl Fn(usize) -> K,
    ends: Ends,
    costs: &SwitchCosts,
    window: Duration,
) -> f64 {
    let move_s = |from: Option<usize>, to: usize| match from {
        Some(from) if from == to => 0.0,
        Some(from) if group_of(from) == group_of(to) => costs.hot_s,
        _ => costs.restart_s,
    };
    let mut at = ends.running;
    let mut seconds = 0.0;
    for step in steps {
        seconds += move_s(at, step.candidate) + window.as_secs_f64();
        at = Some(step.candidate);
    }
    if let Some(home) = ends.home {
        if !steps.is_empty() {
            seconds += move_s(at, home);
        }
    }
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Figures;

    fn candidate(point: Option<Vec<usize>>, throughput: f64, p99: f64, memory: f64) -> Candidate {
        Candidate {
            description: format!("{point:?}"),
            point,
            figures: Figures {
                throughput_rps: throughput,
                p50_ms: p99 / 2.0,
                p99_ms: p99,
                error_rate: 0.0,
                memory_mb: memory,
                model_excess: 0.0,
            },
            runs: 1,
            throughput: None,
            confirmed: false,
            throughput_runs: vec![throughput],
            p99_runs: vec![p99],
            memory_runs: vec![memory],
        }
    }

    #[test]
    fn the_pool_holds_the_baseline_the_best_and_each_tiers_leader() {
        let limits = Constraints {
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
        let all = vec![
            candidate(Some(vec![0]), 900.0, 40.0, 800.0),
            candidate(None, 500.0, 30.0, 700.0),
            candidate(Some(vec![1]), 1000.0, 45.0, 900.0),
            candidate(Some(vec![2]), 950.0, 20.0, 850.0),
            candidate(Some(vec![3]), 300.0, 35.0, 400.0),
            candidate(Some(vec![4]), 2000.0, 90.0, 900.0),
        ];
        let pool = confirmation_pool(&all, &limits, &weights, 2, None);
        assert_eq!(pool[0], 1, "the baseline first");
        assert!(pool.contains(&2) && pool.contains(&3), "the two best: {pool:?}");
        assert!(pool.contains(&4), "the lowest-memory leader: {pool:?}");
        assert!(!pool.contains(&5), "infeasible and not among the best: {pool:?}");
        // Found at [1], the best: the baseline's runs confirm it, and the next best joins.
        let pool = confirmation_pool(&all, &limits, &weights, 2, Some(&vec![1]));
        assert_eq!(pool[0], 1, "the baseline first");
        assert!(
            !pool.contains(&2),
            "the config as found once, as the baseline: {pool:?}"
        );
        assert!(
            pool.contains(&3) && pool.contains(&0),
            "the two best after it: {pool:?}"
        );
    }

    #[test]
    fn confirmation_groups_by_cold_config_and_alternates() {
        let cold = |c: usize| if c < 2 { 'a' } else { 'b' };
        let from_three = Ends {
            running: Some(3),
            home: None,
        };
        let steps = confirmation_order(&[0, 1, 2, 3], cold, from_three, 2);
        let order: Vec<(usize, u32)> = steps.iter().map(|s| (s.candidate, s.round)).collect();
        assert_eq!(
            order,
            vec![(3, 1), (2, 1), (2, 2), (3, 2), (0, 1), (1, 1), (1, 2), (0, 2)],
            "the running group first, the running candidate first in it, members rotated each round"
        );
        let ending_home = confirmation_order(
            &[0, 1, 2, 3],
            cold,
            Ends {
                running: Some(0),
                home: Some(0),
            },
            1,
        );
        assert_eq!(
            ending_home.iter().map(|s| s.candidate).collect::<Vec<_>>(),
            vec![2, 3, 0, 1],
            "the baseline's group last, even when it runs now"
        );
    }

    #[test]
    fn a_plan_costs_the_moves_it_makes() {
        let cold = |c: usize| if c < 2 { 'a' } else { 'b' };
        let costs = SwitchCosts {
            restart_s: 10.0,
            hot_s: 1.0,
            window_s: 5.0,
        };
        let window = Duration::from_secs(4);
        let ends = Ends {
            running: Some(1),
            home: Some(0),
        };
        // 1 1 0 0 1: stays twice, moves live twice, then live back home.
        let steps: Vec<Step> = [1, 1, 0, 0, 1]
            .into_iter()
            .map(|candidate| Step { candidate, round: 1 })
            .collect();
        assert_eq!(plan_seconds(&steps, cold, ends, &costs, window), 5.0 * 4.0 + 3.0 * 1.0);
        // Into the other cold group and back: two restarts.
        let across = [Step { candidate: 2, round: 1 }];
        assert_eq!(plan_seconds(&across, cold, ends, &costs, window), 4.0 + 2.0 * 10.0);
        // Nothing known to run: the first move restarts.
        let unknown = Ends { running: None, ..ends };
        assert_eq!(
            plan_seconds(&steps[..1], cold, unknown, &costs, window),
            10.0 + 4.0 + 1.0
        );
        assert_eq!(plan_seconds(&[], cold, ends, &costs, window), 0.0, "no plan, no move");
        // Two members from the running one, two rounds: A B | B A then home.
        let two = confirmation_order(&[0, 1], cold, ends, 2);
        assert_eq!(two.iter().map(|s| s.candidate).collect::<Vec<_>>(), vec![1, 0, 0, 1]);
        assert_eq!(plan_seconds(&two, cold, ends, &costs, window), 4.0 * 4.0 + 3.0 * 1.0);
    }

    #[test]
    fn costs_are_medians_of_what_happened() {
        let entry = |switch: Switch, switch_s: f64| Entry {
            number: 0,
            kind: TrialKind::Screen,
            point: Some(vec![0]),
            values: Default::default(),
            figures: Some(Figures {
                throughput_rps: 1.0,
                p50_ms: 1.0,
                p99_ms: 1.0,
                error_rate: 0.0,
                memory_mb: 1.0,
                model_excess: 0.0,
            }),
            failure: None,
            loss: -1.0,
            feasible: true,
            restarted: switch == Switch::Restart,
            throughput_ci95: None,
            duration_s: 3.0,
            elapsed_s: 0.0,
            switch,
            switch_s,
            warmup_s: 1.0,
            stability: None,
            round: None,
            latency_histogram: None,
            server_cpu_cores: None,
            observer_cpu_share: None,
            incidents: Vec::new(),
            server_lost: None,
            models: Default::default(),
            peak: None,
            window_of: None,
            worker: None,
        };
        let entries = vec![
            entry(Switch::Restart, 8.0),
            entry(Switch::Restart, 10.0),
            entry(Switch::Register, 2.0),
            entry(Switch::Scale, 1.0),
            entry(Switch::Scale, 1.0),
        ];
        let costs = MeasuredCosts::of(&entries);
        assert_eq!(costs.restart_s, Some(9.0));
        assert_eq!((costs.restarts, costs.registers, costs.scales), (2, 1, 2));
        assert!((costs.hot_share() - 0.6).abs() < 1e-9);
        let switch = switch_costs(&costs, Duration::from_secs(5), Duration::from_secs(3));
        assert_eq!(switch.restart_s, 14.0);
        assert_eq!(switch.window_s, 4.0);
    }
}
