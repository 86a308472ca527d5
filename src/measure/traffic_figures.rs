//! The figures a replayed log or a rate profile adds to a window's: each
//! model's own, and those at the profile's peak. Kept here, beside the
//! recorder's report, so a trial's journal entry can carry them.

use serde::{Deserialize, Serialize};

use super::LoadReport;

/// One model's figures over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFigures {
    pub requests: u64,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
}

impl ModelFigures {
    pub fn of(report: &LoadReport) -> Self {
        Self {
            requests: report.requests,
            throughput_rps: report.throughput_rps,
            p50_ms: report.latency_ms.p50,
            p99_ms: report.latency_ms.p99,
            error_rate: report.error_rate,
        }
    }
}

/// The figures of the requests due at a profile's peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakFigures {
    pub profile: String,
    /// The target rate at the peak.
    pub rate_rps: f64,
    /// Seconds of peak within the window.
    pub seconds: f64,
    pub requests: u64,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
}
