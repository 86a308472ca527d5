//! Capacity at an SLO: the highest open-loop rate whose p99 stays within the
//! SLO and whose error rate stays within a limit, by a bounded search — the
//! rate doubles until a probe fails, then the bracket is bisected until it is
//! narrower than the tolerance or the probe budget is spent. An overloaded
//! probe leaves requests queued in the server; before the next probe the
//! search waits until they are worked off (`settle`), else the next probe
//! would be judged on the last one's backlog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{measure_once, Measurement, ServerProbe};
use crate::load::{run_load, Arrival, LoadError, LoadPlan, Progress, Schedule, Stages};

/// The longest `settle` waits for a backlog to clear.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// What the search is for and what it may spend.
#[derive(Debug, Clone)]
pub struct CapacitySearch {
    pub slo_p99: Duration,
    pub max_error_rate: f64,
    /// First rate probed (requests/s).
    pub start_rate: f64,
    /// Never probe above this rate.
    pub max_rate: f64,
    /// Stop when (high - low) / high is below this.
    pub tolerance: f64,
    pub max_probes: usize,
    /// Warm-up and window of each probe.
    pub probe_warmup: Duration,
    pub probe_duration: Duration,
    pub arrival: Arrival,
}

impl CapacitySearch {
    pub fn new(slo_p99: Duration, max_error_rate: f64) -> Self {
        Self {
            slo_p99,
            max_error_rate,
            start_rate: 10.0,
            max_rate: 100_000.0,
            tolerance: 0.05,
            max_probes: 14,
            probe_warmup: Duration::from_secs(1),
            probe_duration: Duration::from_secs(5),
            arrival: Arrival::Constant,
        }
    }
}

/// One probe of the search.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub rate: f64,
    pub feasible: bool,
    pub throughput_rps: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
}

/// The search's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// The highest feasible rate probed (0 when even the lowest failed).
    pub capacity_rps: f64,
    /// The lowest infeasible rate probed, if any (the answer lies below it).
    pub first_infeasible_rps: Option<f64>,
    pub slo_p99_ms: f64,
    pub max_error_rate: f64,
    pub probes: Vec<Probe>,
    /// The full measurement at the capacity.
    pub at_capacity: Option<Measurement>,
}

/// Waits until the server has worked off what an overloaded run left
/// queued: one user sends requests back to back in 2 s windows until a
/// window's median is within 1.5x of the best window seen (a backlog shows
/// as a slow first window), for at most `limit`.
pub async fn settle(base: &LoadPlan, limit: Duration, token: &CancellationToken) -> Result<(), LoadError> {
    let started = Instant::now();
    let window = Duration::from_secs(2);
    let mut best = f64::INFINITY;
    while started.elapsed() < limit && !token.is_cancelled() {
        let mut plan = base.clone();
        plan.schedule = Schedule::Closed {
            stages: Stages::constant(1, window),
            think_time: Duration::ZERO,
        };
        plan.warmup = Duration::ZERO;
        plan.duration = window;
        plan.stability = None;
        let report = run_load(plan, token.clone(), Arc::new(Progress::default())).await?;
        if report.ok == 0 {
            continue;
        }
        let p50 = report.latency_ms.p50;
        if best.is_finite() && p50 <= best * 1.5 {
            return Ok(());
        }
        best = best.min(p50);
    }
    tracing::warn!("the server was still slow after {limit:?} of waiting for its backlog to clear");
    Ok(())
}

/// Whether a measurement meets the SLO at the rate it was offered.
pub fn is_feasible(measurement: &Measurement, rate: f64, search: &CapacitySearch) -> bool {
    let load = &measurement.load;
    load.latency_ms.p99 <= search.slo_p99.as_secs_f64() * 1000.0
        && load.error_rate <= search.max_error_rate
        && load.throughput_rps >= 0.9 * rate
}

/// Finds the capacity. `base` supplies the request and connection settings;
/// its schedule, warm-up and duration are replaced per probe.
pub async fn find_capacity(
    base: &LoadPlan,
    probe: &ServerProbe,
    search: &CapacitySearch,
    token: CancellationToken,
) -> Result<Capacity, LoadError> {
    let mut probes = Vec::new();
    let mut best: Option<(f64, Measurement)> = None;
    let mut low = 0.0_f64;
    let mut high: Option<f64> = None;
    let mut rate = search.start_rate.min(search.max_rate);
    while probes.len() < search.max_probes && !token.is_cancelled() {
        let mut plan = base.clone();
        plan.schedule = Schedule::Open {
            rate_per_s: rate,
            arrival: search.arrival,
        };
        plan.warmup = search.probe_warmup;
        plan.duration = search.probe_duration;
        let measurement = measure_once(plan, probe, token.clone(), Arc::new(Progress::default())).await?;
        let feasible = is_feasible(&measurement, rate, search);
        tracing::info!(
            rate,
            feasible,
            p99_ms = measurement.load.latency_ms.p99,
            "capacity probe"
        );
        probes.push(Probe {
            rate,
            feasible,
            throughput_rps: measurement.load.throughput_rps,
            p99_ms: measurement.load.latency_ms.p99,
            error_rate: measurement.load.error_rate,
        });
        if !feasible {
            settle(base, SETTLE_LIMIT, &token).await?;
        }
        if feasible {
            low = rate;
            best = Some((rate, measurement));
        } else {
            high = Some(high.map_or(rate, |h| h.min(rate)));
        }
        let next = match high {
            None if rate >= search.max_rate => break,
            None => (rate * 2.0).min(search.max_rate),
            Some(h) if low == 0.0 => {
                if h <= 1.0 {
                    break;
                }
                h / 2.0
            }
            Some(h) => {
                if (h - low) / h <= search.tolerance {
                    break;
                }
                (low + h) / 2.0
            }
        };
        rate = next;
    }
    let (capacity_rps, at_capacity) = match best {
        Some((rate, measurement)) => (rate, Some(measurement)),
        None => (0.0, None),
    };
    Ok(Capacity {
        capacity_rps,
        first_infeasible_rps: high,
        slo_p99_ms: search.slo_p99.as_secs_f64() * 1000.0,
        max_error_rate: search.max_error_rate,
        probes,
        at_capacity,
    })
}
