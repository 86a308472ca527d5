//! The stress test: raise closed-loop users step by step until the service
//! degrades (p99 above the SLO or errors above the limit), then drop the load
//! and time how long the service takes to recover (p99 back under the SLO
//! and no errors, for two seconds in a row).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{measure_once, ServerProbe};
use crate::load::{LoadError, LoadPlan, Progress, Schedule, Stages};
use crate::measure::SecondStats;

/// The operator's plan for a stress test.
#[derive(Debug, Clone)]
pub struct StressPlan {
    pub slo_p99: Duration,
    pub max_error_rate: f64,
    /// Users added per step (also the first step).
    pub step_users: u32,
    pub step_duration: Duration,
    pub max_users: u32,
    /// Users kept on after the peak, to watch recovery.
    pub recovery_users: u32,
    /// How long recovery is watched at most.
    pub recovery_window: Duration,
}

/// One step of the ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub users: u32,
    pub throughput_rps: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    pub degraded: bool,
}

/// The stress test's answer.
#[derive(Debug, Clone, Serialize)]
pub struct StressResult {
    pub steps: Vec<Step>,
    /// The most users served within the SLO (0 when the first step degraded).
    pub max_users_before_degradation: u32,
    /// Users at the step that degraded (None: never degraded up to max_users).
    pub degraded_at_users: Option<u32>,
    /// Error rate at the peak step.
    pub error_rate_at_peak: f64,
    /// Seconds from dropping the load until the service was back within the
    /// SLO (None: not within the recovery window, or never degraded).
    pub recovery_time_s: Option<f64>,
    pub recovery_timeline: Vec<SecondStats>,
}

/// Seconds (from the start of `timeline`) until p99 ≤ SLO with no errors
/// for two consecutive seconds.
pub fn recovery_time(timeline: &[SecondStats], slo_ms: f64) -> Option<f64> {
    let healthy = |s: &SecondStats| s.ok > 0 && s.errors == 0 && s.p99_ms <= slo_ms;
    timeline
        .windows(2)
        .position(|pair| healthy(&pair[0]) && healthy(&pair[1]))
        .map(|second| second as f64)
}

pub async fn run_stress(
    base: &LoadPlan,
    probe: &ServerProbe,
    plan: &StressPlan,
    token: CancellationToken,
) -> Result<StressResult, LoadError> {
    if plan.step_users == 0 || plan.max_users < plan.step_users {
        return Err(LoadError::BadInput("--step-users must be ≥ 1 and ≤ --max-users".into()));
    }
    let slo_ms = plan.slo_p99.as_secs_f64() * 1000.0;
    let mut steps = Vec::new();
    let mut users = plan.step_users;
    while users <= plan.max_users && !token.is_cancelled() {
        let mut step_plan = base.clone();
        step_plan.schedule = Schedule::Closed {
            stages: Stages::constant(users, plan.step_duration),
            think_time: Duration::ZERO,
        };
        step_plan.warmup = Duration::ZERO;
        step_plan.duration = plan.step_duration;
        let measurement = measure_once(step_plan, probe, token.clone(), Arc::new(Progress::default())).await?;
        let load = &measurement.load;
        let degraded = load.latency_ms.p99 > slo_ms || load.error_rate > plan.max_error_rate;
        tracing::info!(users, degraded, p99_ms = load.latency_ms.p99, "stress step");
        steps.push(Step {
            users,
            throughput_rps: load.throughput_rps,
            p99_ms: load.latency_ms.p99,
            error_rate: load.error_rate,
            degraded,
        });
        if degraded {
            break;
        }
        users += plan.step_users;
    }
    let degraded_at_users = steps.last().filter(|step| step.degraded).map(|step| step.users);
    let max_users_before_degradation = steps.iter().filter(|s| !s.degraded).map(|s| s.users).max().unwrap_or(0);
    let error_rate_at_peak = steps.last().map_or(0.0, |s| s.error_rate);
    let (recovery_time_s, recovery_timeline) = if degraded_at_users.is_some() && !token.is_cancelled() {
        let mut recovery = base.clone();
        recovery.schedule = Schedule::Closed {
            stages: Stages::constant(plan.recovery_users.max(1), plan.recovery_window),
            think_time: Duration::ZERO,
        };
        recovery.warmup = Duration::ZERO;
        recovery.duration = plan.recovery_window;
        let measurement = measure_once(recovery, probe, token, Arc::new(Progress::default())).await?;
        let timeline = measurement.load.timeline;
        (recovery_time(&timeline, slo_ms), timeline)
    } else {
        (None, Vec::new())
    };
    Ok(StressResult {
        steps,
        max_users_before_degradation,
        degraded_at_users,
        error_rate_at_peak,
        recovery_time_s,
        recovery_timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(index: u64, p99_ms: f64, errors: u64) -> SecondStats {
        SecondStats {
            second: index,
            warmup: false,
            ok: 10,
            errors,
            p50_ms: 1.0,
            p99_ms,
        }
    }

    #[test]
    fn recovery_needs_two_healthy_seconds() {
        let timeline = vec![
            second(0, 900.0, 3),
            second(1, 20.0, 0),
            second(2, 300.0, 0),
            second(3, 20.0, 0),
            second(4, 25.0, 0),
        ];
        assert_eq!(recovery_time(&timeline, 50.0), Some(3.0));
        assert_eq!(recovery_time(&timeline[..4], 50.0), None);
        assert_eq!(
            recovery_time(&[second(0, 10.0, 0), second(1, 10.0, 0)], 50.0),
            Some(0.0)
        );
    }
}
