//! The planner: what the study can afford next, from what it measured so
//! far. It costs the next screening trial and keeps back what the
//! confirmation will need (`reserve_after`), and plans the confirmation
//! rounds within what is left (fewer rounds, then fewer candidates, then
//! fixed-length windows instead of adaptive ones), and the window of each
//! kind of trial (`Plan::window`). Pure:
//! it reads the trials, the space and what runs now, and never measures;
//! the study loop asks it, whatever the testbed.

use std::time::Duration;

use crate::objective::{Constraints, Weights};
use crate::search::SwitchCosts;
use crate::space::{Apply, Point, Space};
use crate::trial::{Candidate, Entry, MeasuredCosts, TrialKind};

use super::estimator;
use super::runner::RESTART_WARMUP;
use super::scheduler::{self, Budget, Ends, Step};
use super::settings::Settings;
use super::testbed::Window;

/// Time kept for the export (the move back to the original is part of the confirmation plan).
pub const EXPORT_RESERVE: Duration = Duration::from_secs(3);
/// What the search keeps back for the confirmation is its estimate and a
/// quarter more: moves are costed from the medians of a few (a first
/// register may cost twice a scale), and a slow machine stretches all.
const RESERVE_MARGIN: f64 = 1.25;

/// The part of a study's settings that plans it.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub budget: Duration,
    pub max_trials: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub confirm_duration: Duration,
    pub confirm_top: usize,
    pub confirm_rounds: u32,
    pub weights: Weights,
    pub constraints: Constraints,
    pub p99_from_baseline: bool,
    /// An adaptive window goes on until throughput is steady, at most this long.
    pub max_window: Option<Duration>,
    /// A shared study's trial silent this long is given up (also: how
    /// often trials beat, a sixth of it).
    pub heartbeat_grace: Duration,
    /// Soak the balanced recommendation this long before recommending it.
    pub soak: Option<Duration>,
}

impl Plan {
    /// A plan of fixed windows (no adaptive window, the default grace).
    pub fn fixed(budget: Duration, max_trials: usize, window: Duration, constraints: Constraints) -> Self {
        Self {
            budget,
            max_trials,
            warmup: Duration::ZERO,
            duration: window,
            confirm_duration: window,
            confirm_top: 3,
            confirm_rounds: 3,
            weights: Weights {
                throughput: 1.0,
                p99: 1.0,
                memory: 0.2,
            },
            constraints,
            p99_from_baseline: false,
            max_window: None,
            heartbeat_grace: Duration::from_secs(60),
            soak: None,
        }
    }
}

impl From<&Settings> for Plan {
    fn from(s: &Settings) -> Self {
        Self {
            budget: s.budget,
            max_trials: s.max_trials,
            warmup: s.warmup,
            duration: s.duration,
            confirm_duration: s.confirm_duration,
            confirm_top: s.confirm_top,
            confirm_rounds: s.confirm_rounds,
            weights: s.weights,
            constraints: s.constraints,
            p99_from_baseline: s.p99_from_baseline,
            max_window: s.max_window,
            heartbeat_grace: s.heartbeat_grace,
            soak: s.soak,
        }
    }
}

impl Plan {
    /// The window of a trial of `kind`: a confirmation's is its own length
    /// (an adaptive one capped in proportion, none when `fixed_confirmation`);
    /// the baseline on a server the study started (`cold_start`) gets a
    /// restart's extra warm-up.
    pub fn window(&self, kind: TrialKind, cold_start: bool, fixed_confirmation: bool) -> Window {
        let (duration, max_window) = match kind {
            TrialKind::Confirm => (
                self.confirm_duration,
                self.max_window
                    .filter(|_| !fixed_confirmation)
                    .map(|m| m.mul_f64(self.confirm_duration.as_secs_f64() / self.duration.as_secs_f64())),
            ),
            _ => (self.duration, self.max_window),
        };
        Window {
            warmup: self.warmup + if cold_start { RESTART_WARMUP } else { Duration::ZERO },
            duration,
            max_window,
        }
    }
}

/// What the confirmation will measure, or why it measures nothing.
#[derive(Debug, Clone)]
pub enum Confirmation {
    /// Nothing beside the baseline to confirm.
    NothingToConfirm,
    /// Even the smallest plan (baseline and one candidate, two rounds) does not fit.
    NoBudget { needed_s: f64, left_s: f64 },
    /// These steps, into these candidates, in this order; in fixed-length
    /// windows when adaptive ones, stretched as the screening's were, would
    /// not fit the budget.
    Steps {
        candidates: Vec<Candidate>,
        steps: Vec<Step>,
        fixed_windows: bool,
    },
}

/// The planner's view of a study at one moment.
pub struct Planner<'a> {
    pub plan: &'a Plan,
    pub space: &'a Space,
    pub entries: &'a [Entry],
    /// The levels running now; None while unknown (the next move restarts).
    pub running: Option<Vec<Option<usize>>>,
    /// The levels of the config as found (None where off the grid).
    pub baseline_levels: Vec<Option<usize>>,
}

impl Planner<'_> {
    /// The constraints trials are judged by: the study's, with the p99 limit
    /// taken from the baseline when the study asks for "no worse than the
    /// baseline" (its confirmed p99 once confirmed, else its screening p99;
    /// unbounded before it is measured).
    pub fn constraints(&self) -> Constraints {
        let mut constraints = self.plan.constraints;
        if self.plan.p99_from_baseline {
            let baseline = |kind: TrialKind| -> Vec<Entry> {
                self.entries
                    .iter()
                    .filter(|e| e.point.is_none() && e.kind == kind && e.figures.is_some())
                    .cloned()
                    .collect()
            };
            let confirmed = baseline(TrialKind::Confirm);
            let runs = if confirmed.is_empty() {
                baseline(TrialKind::Baseline)
            } else {
                confirmed
            };
            if let Some(estimate) = estimator::candidates(&runs, self.space).into_iter().next() {
                constraints.p99_ms = estimate.figures.p99_ms;
            }
        }
        constraints
    }

    /// What moves and windows cost, as measured in this study so far.
    pub fn costs(&self) -> SwitchCosts {
        scheduler::switch_costs(
            &MeasuredCosts::of(self.entries),
            RESTART_WARMUP,
            self.plan.warmup + self.plan.duration,
        )
    }

    /// The levels running now (all None when unknown).
    pub fn running_levels(&self) -> Vec<Option<usize>> {
        self.running
            .clone()
            .unwrap_or_else(|| vec![None; self.space.dimensions()])
    }

    /// Whether measuring `point` next fits the budget with the confirmation
    /// kept back.
    pub fn fits(&self, point: &Point, budget: &Budget) -> bool {
        let costs = self.costs();
        let next = Duration::from_secs_f64(costs.window_s + self.move_seconds(point, &costs));
        budget.fits(next, self.most_reserved(&costs)) || budget.fits(next, self.reserve_after(point))
    }

    /// The most `reserve_after` can keep back: 40 % of the budget or the
    /// smallest confirmation with a restart before every window and back,
    /// whichever is more, with the margin (a far budget fits without the plan).
    fn most_reserved(&self, costs: &SwitchCosts) -> Duration {
        let move_s = costs.restart_s.max(costs.hot_s);
        let smallest = 4.0 * (self.confirmation_window() + move_s) + move_s;
        let most = (self.plan.budget.as_secs_f64() * 0.4).max(smallest);
        Duration::from_secs_f64(most * RESERVE_MARGIN) + EXPORT_RESERVE + self.soak_reserve()
    }

    /// Time kept back for the confirmation rounds and the export when
    /// `next` is measured first: the plan the screening so far gives (the
    /// baseline and the best candidates, every round, and the move back),
    /// but no more than 40 % of the budget, and never less than the
    /// smallest confirmation the confirmation phase accepts (the baseline
    /// and one candidate, two rounds) — whichever way `next` turns out:
    /// then it runs, and if it is the best its cold group joins that
    /// smallest confirmation. Costed as `confirm` will cost it, with a
    /// margin, so a search never ends where no confirmation fits.
    pub fn reserve_after(&self, next: &Point) -> Duration {
        let p = self.plan;
        let mut candidates = self.screened_candidates();
        let found_at = self.found_at();
        let pool = scheduler::confirmation_pool(
            &candidates,
            &self.constraints(),
            &p.weights,
            p.confirm_top,
            found_at.as_ref(),
        );
        let home = candidates.iter().position(Candidate::is_baseline);
        let running = match candidates.iter().position(|c| c.point.as_ref() == Some(next)) {
            Some(known) => Some(known),
            None => candidates.first().cloned().map(|template| {
                candidates.push(Candidate {
                    point: Some(next.clone()),
                    ..template
                });
                candidates.len() - 1
            }),
        };
        let ends = Ends { running, home };
        let full = self.confirmation_plan(&candidates, &pool, p.confirm_rounds, ends).1;
        let mut smallest = if pool.len() >= 2 {
            self.confirmation_plan(&candidates, &pool[..2], 2, ends).1
        } else {
            // Nothing measured yet beside the baseline: four windows, a live
            // move before each and one back.
            4.0 * self.confirmation_window() + 5.0 * self.costs().hot_s
        };
        if let (Some(home), Some(running)) = (home, running) {
            if home != running {
                smallest = smallest.max(self.confirmation_plan(&candidates, &[home, running], 2, ends).1);
            }
        }
        let confirmation = full.min(p.budget.as_secs_f64() * 0.4).max(smallest);
        Duration::from_secs_f64(confirmation * RESERVE_MARGIN) + EXPORT_RESERVE + self.soak_reserve()
    }

    /// Time kept back for soaking the balanced recommendation (a restart
    /// onto it and the soak), when the study soaks.
    fn soak_reserve(&self) -> Duration {
        match self.plan.soak {
            Some(soak) => soak + Duration::from_secs_f64(self.costs().restart_s),
            None => Duration::ZERO,
        }
    }

    /// What moving to `point` costs from what runs now: a live change when
    /// the cold settings match, else a restart (also when nothing is known
    /// to run).
    pub fn move_seconds(&self, point: &Point, costs: &SwitchCosts) -> f64 {
        let Some(running) = &self.running else {
            return costs.restart_s;
        };
        let running: Vec<Option<usize>> = self
            .space
            .parameters
            .iter()
            .zip(running)
            .map(|(p, level)| if p.apply == Apply::Cold { *level } else { None })
            .collect();
        if running == self.space.cold_key(point) {
            costs.hot_s
        } else {
            costs.restart_s
        }
    }

    /// Seconds a confirmation window is expected to take: warm-up and
    /// window, stretched as much as the screening windows were stretched
    /// (a steady window goes on while throughput still trends).
    pub fn confirmation_window(&self) -> f64 {
        let p = self.plan;
        let nominal = (p.warmup + p.duration).as_secs_f64();
        let stretch = (self.costs().window_s / nominal).max(1.0);
        (p.warmup + p.confirm_duration).as_secs_f64() * stretch
    }

    /// Every candidate the screening (baseline and search) measured.
    pub fn screened_candidates(&self) -> Vec<Candidate> {
        let screened: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.kind != TrialKind::Confirm)
            .cloned()
            .collect();
        estimator::candidates(&screened, self.space)
    }

    /// The candidate the server runs now (unknown after a failed trial or
    /// before the first move of a resumed study) and the baseline. A trial
    /// screened on the baseline's window moved nothing: the server runs
    /// what the last measured trial ran.
    pub fn confirmation_ends(&self, candidates: &[Candidate]) -> Ends {
        let running = self
            .running
            .as_ref()
            .and(self.entries.iter().rev().find(|e| e.window_of.is_none()))
            .filter(|e| e.failure.is_none())
            .and_then(|e| candidates.iter().position(|c| c.point == e.point));
        Ends {
            running,
            home: candidates.iter().position(Candidate::is_baseline),
        }
    }

    /// The order in which the confirmation would measure `pool` in
    /// `rounds` rounds, and how many seconds that takes.
    pub fn confirmation_plan(
        &self,
        candidates: &[Candidate],
        pool: &[usize],
        rounds: u32,
        ends: Ends,
    ) -> (Vec<Step>, f64) {
        self.confirmation_plan_in(candidates, pool, rounds, ends, None)
    }

    /// `confirmation_plan` in windows of `window_s` seconds (None: as
    /// `confirmation_window` expects them).
    fn confirmation_plan_in(
        &self,
        candidates: &[Candidate],
        pool: &[usize],
        rounds: u32,
        ends: Ends,
        window_s: Option<f64>,
    ) -> (Vec<Step>, f64) {
        let baseline_key = self.baseline_cold_key();
        let cold_keys: Vec<Vec<Option<usize>>> = candidates
            .iter()
            .map(|candidate| match &candidate.point {
                Some(point) => self.space.cold_key(point),
                None => baseline_key.clone(),
            })
            .collect();
        let group_of = |i: usize| cold_keys[i].clone();
        let steps = scheduler::confirmation_order(pool, group_of, ends, rounds);
        let window = Duration::from_secs_f64(window_s.unwrap_or_else(|| self.confirmation_window()));
        let seconds = scheduler::plan_seconds(&steps, group_of, ends, &self.costs(), window);
        (steps, seconds)
    }

    /// The baseline, the best candidates and each tier's leader in
    /// alternating rounds, grouped by cold config, as the budget allows:
    /// fewer rounds (two at least), then fewer candidates, until the plan
    /// fits. Adaptive windows are costed stretched as the screening's were;
    /// a screening window that ran long can make even the smallest such
    /// plan too long for what is left (the reserve was kept before it ran),
    /// and then the plan is tried again in fixed-length windows.
    pub fn confirmation(&self, budget: &Budget) -> Confirmation {
        let p = self.plan;
        let candidates = self.screened_candidates();
        let found_at = self.found_at();
        let mut pool = scheduler::confirmation_pool(
            &candidates,
            &self.constraints(),
            &p.weights,
            p.confirm_top,
            found_at.as_ref(),
        );
        if pool.len() < 2 {
            return Confirmation::NothingToConfirm;
        }
        let ends = self.confirmation_ends(&candidates);
        let available = p.budget.saturating_sub(budget.elapsed() + EXPORT_RESERVE);
        let stretched = self.confirmation_window();
        let fixed = (p.warmup + p.confirm_duration).as_secs_f64();
        let mut rounds = p.confirm_rounds;
        let mut fixed_windows = false;
        let full = pool.clone();
        loop {
            let window_s = if fixed_windows { fixed } else { stretched };
            let (steps, seconds) = self.confirmation_plan_in(&candidates, &pool, rounds, ends, Some(window_s));
            if seconds <= available.as_secs_f64() {
                return Confirmation::Steps {
                    candidates,
                    steps,
                    fixed_windows,
                };
            }
            if rounds > 2 {
                rounds -= 1;
            } else if pool.len() > 2 {
                pool.pop();
            } else if !fixed_windows && p.max_window.is_some() && fixed < stretched {
                tracing::info!(
                    "confirming in fixed-length windows: adaptive ones, as long as the screening's were, \
                     would not fit the budget left"
                );
                (fixed_windows, rounds, pool) = (true, p.confirm_rounds, full.clone());
            } else {
                return Confirmation::NoBudget {
                    needed_s: seconds,
                    left_s: available.as_secs_f64(),
                };
            }
        }
    }

    /// The config as it was, as a point of the space, when every parameter
    /// is on the grid (a server found at TorchServe's defaults, or at an
    /// earlier recommendation).
    pub fn found_at(&self) -> Option<Point> {
        self.baseline_levels.iter().copied().collect()
    }

    /// The cold levels of the config as it was (None where off the grid).
    pub fn baseline_cold_key(&self) -> Vec<Option<usize>> {
        self.space
            .parameters
            .iter()
            .zip(&self.baseline_levels)
            .map(|(p, l)| if p.apply == Apply::Cold { *l } else { None })
            .collect()
    }

    /// Whether a confirmation step was measured already (a resumed study).
    pub fn step_done(&self, candidate: &Candidate, round: u32) -> bool {
        self.entries
            .iter()
            .filter(|e| e.server_lost.is_none())
            .any(|e| e.kind == TrialKind::Confirm && e.point == candidate.point && e.round == Some(round))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::landscape::{parse_landscape, throughput_under_slo};
    use crate::study::clock::Clock;

    fn entry(number: usize, kind: &str, point: Option<Vec<usize>>, window_of: Option<usize>) -> Entry {
        serde_json::from_value(serde_json::json!({
            "number": number, "kind": kind, "point": point, "values": {},
            "figures": {"throughput_rps": 100.0 + number as f64, "p50_ms": 5.0, "p99_ms": 9.0, "error_rate": 0.0, "memory_mb": 300.0},
            "failure": null, "loss": -100.0 - number as f64, "feasible": true, "restarted": false,
            "throughput_ci95": null, "duration_s": 2.0, "elapsed_s": number as f64, "window_of": window_of,
        }))
        .unwrap()
    }

    #[test]
    fn a_confirmation_that_fits_only_in_fixed_windows_is_planned_in_them() {
        let csv = "a,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n0,100,5,9,0,300\n1,200,5,9,0,300\n";
        let landscape = parse_landscape(csv, "l.csv").unwrap();
        let mut plan = Plan::fixed(
            Duration::from_secs(60),
            10,
            Duration::from_secs(3),
            throughput_under_slo(50.0, 0.01),
        );
        plan.warmup = Duration::from_secs(1);
        plan.max_window = Some(Duration::from_secs(9));
        // The one screening window ran to its longest: 10 s against 4 nominal.
        let mut screened = entry(1, "screen", Some(vec![1]), None);
        (screened.warmup_s, screened.duration_s) = (1.0, 9.0);
        let entries = vec![entry(0, "baseline", None, None), screened];
        let planner = |plan| Planner {
            plan,
            space: &landscape.space,
            entries: &entries,
            running: Some(vec![Some(1)]),
            baseline_levels: vec![Some(0)],
        };
        let total = plan.budget;
        let after = |spent_s: u64| Budget::on(Clock::simulated(), total, Duration::from_secs(spent_s));
        let fixed = |confirmation: Confirmation| match confirmation {
            Confirmation::Steps { fixed_windows, .. } => Some(fixed_windows),
            _ => None,
        };
        // Room for two rounds of 10 s windows; then only for 4 s ones; then for none.
        assert_eq!(fixed(planner(&plan).confirmation(&after(0))), Some(false));
        assert_eq!(fixed(planner(&plan).confirmation(&after(25))), Some(true));
        assert_eq!(fixed(planner(&plan).confirmation(&after(50))), None);
        assert_eq!(
            plan.window(TrialKind::Confirm, false, true).max_window,
            None,
            "fixed: no adaptive extension"
        );
        // Fixed windows all along: nothing shorter to fall back on.
        let fixed_all_along = Plan {
            max_window: None,
            ..plan
        };
        assert_eq!(fixed(planner(&fixed_all_along).confirmation(&after(25))), None);
    }

    #[test]
    fn a_trial_on_the_baseline_s_window_moves_nothing_and_leaves_the_running_candidate_as_it_was() {
        let csv = "a,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n0,100,5,9,0,300\n1,200,5,9,0,300\n";
        let landscape = parse_landscape(csv, "l.csv").unwrap();
        let plan = Plan::fixed(
            Duration::from_secs(600),
            10,
            Duration::from_secs(5),
            throughput_under_slo(50.0, 0.01),
        );
        let entries = vec![
            entry(0, "baseline", None, None),
            entry(1, "screen", Some(vec![1]), None),
            entry(2, "screen", Some(vec![0]), Some(0)),
        ];
        let planner = Planner {
            plan: &plan,
            space: &landscape.space,
            entries: &entries,
            running: Some(vec![Some(1)]),
            baseline_levels: vec![Some(0)],
        };
        let candidates = planner.screened_candidates();
        let ends = planner.confirmation_ends(&candidates);
        let at = |i: Option<usize>| i.and_then(|i| candidates[i].point.clone());
        assert_eq!(
            at(ends.running),
            Some(vec![1]),
            "the server still runs trial 1's config"
        );
        assert_eq!(ends.home.map(|i| candidates[i].is_baseline()), Some(true));
        assert_eq!(planner.found_at(), Some(vec![0]));
    }
}
