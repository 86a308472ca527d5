//! Benchmarking one configuration: a load run with the server's memory,
//! CPU and own metrics measured alongside (`measure_once`), and the two
//! reusable measurements built on it: the highest rate within an SLO
//! (`capacity`) and the stress test (`stress`).
//!
//! Called by the `bench` command and, later, by the study loop.

pub mod capacity;
pub mod stress;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::load::{run_load, LoadError, LoadPlan, Progress};
use crate::measure::metrics::{scrape, ServerLatency};
use crate::measure::process::{MemoryReport, TreeSampler};
use crate::measure::LoadReport;

/// What to watch on the server side while load runs.
#[derive(Debug, Clone, Default)]
pub struct ServerProbe {
    /// Root of the server's process tree (the TorchServe JVM).
    pub pid: Option<i32>,
    /// Base URL of TorchServe's metrics endpoint (prometheus mode).
    pub metrics_url: Option<String>,
}

/// One load run with everything measured alongside.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    #[serde(flatten)]
    pub load: LoadReport,
    /// Memory (MB) and CPU of the server's process tree over the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<MemoryReport>,
    /// TorchServe's own inference and queue latency over the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerLatency>,
}

/// Sampling interval of the process tree.
const MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// Runs `plan` while sampling the server named by `probe`.
pub async fn measure_once(
    plan: LoadPlan,
    probe: &ServerProbe,
    token: CancellationToken,
    progress: Arc<Progress>,
) -> Result<Measurement, LoadError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("plain client builds");
    let before = match &probe.metrics_url {
        Some(url) => scrape(&http, url)
            .await
            .map_err(|e| tracing::warn!("metrics: {e}"))
            .ok(),
        None => None,
    };
    let warmup = plan.warmup;
    // Memory is sampled over the measured window only: the warm-up is skipped.
    let sampler = probe.pid.map(|pid| {
        let token = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(warmup) => Some(TreeSampler::start(pid, MEMORY_SAMPLE_INTERVAL)),
                _ = token.cancelled() => None,
            }
        })
    });
    let load = run_load(plan, token, progress).await;
    let memory_mb = match sampler {
        Some(handle) => handle.await.ok().flatten().map(TreeSampler::finish),
        None => None,
    };
    let load = load?;
    let server = match (&probe.metrics_url, before) {
        (Some(url), Some(before)) => scrape(&http, url).await.ok().map(|after| before.delta(&after)),
        _ => None,
    };
    Ok(Measurement {
        load,
        memory_mb,
        server,
    })
}
