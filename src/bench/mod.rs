//! Benchmarking one configuration: a load run with the server's memory,
//! CPU and own metrics measured alongside (`measure_once`), and the two
//! reusable measurements built on it: the highest rate within an SLO
//! (`capacity`) and the stress test (`stress`); a run seen second by
//! second with every process's memory (`timeline`, `track`) and the
//! long-running stability test built on it (`soak`).
//!
//! `torchserve_endpoint` resolves what a managed TorchServe is loaded
//! through (URL, bearer key, process tree, metrics), for `bench --target`
//! and the study alike.
//!
//! `replay` checks, before a replay, that the server serves every model of
//! the log.
//!
//! Called by the `bench` command and by the study's runner.

pub mod capacity;
pub mod replay;
pub mod soak;
pub mod stress;
pub mod timeline;
pub mod track;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::load::tls::Verification;
use crate::load::{run_load_traffic, LoadError, LoadPlan, Progress, TrafficReport};
use crate::measure::metrics::{scrape, ServerLatency};
use crate::measure::process::{MemoryReport, ObserverCost, TreeSampler, SAMPLE_INTERVAL};
use crate::measure::LoadReport;
use crate::server::{ServerError, TorchServe};

/// What to watch on the server side while load runs.
#[derive(Debug, Clone, Default)]
pub struct ServerProbe {
    /// Root of the server's process tree (the TorchServe JVM).
    pub pid: Option<i32>,
    /// Base URL of TorchServe's metrics endpoint (prometheus mode).
    pub metrics_url: Option<String>,
    /// How an https metrics endpoint's certificate is checked.
    pub metrics_tls: Verification,
    /// Further process trees whose memory and CPU count with the server's
    /// (the gateway in front of it, in a stack).
    pub also: Vec<i32>,
}

/// Where load goes for one model of a managed TorchServe, and what to watch.
#[derive(Debug, Clone)]
pub struct ServedModel {
    pub url: String,
    /// The bearer key when token authorization is on.
    pub headers: Vec<(String, String)>,
    /// How an https inference address's certificate is checked (the
    /// target file's `ca_file` or `insecure_tls`).
    pub verification: Verification,
    pub probe: ServerProbe,
}

/// The inference URL of `model` (default: the first registered), the
/// bearer key, and the server's process tree and metrics endpoint.
pub async fn torchserve_endpoint(server: &TorchServe, model: Option<&str>) -> Result<ServedModel, ServerError> {
    let api = server.api()?;
    let model = match model {
        Some(model) => model.to_string(),
        None => api
            .list_models()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ServerError::Unsupported("the target serves no model".into()))?,
    };
    let mut headers = Vec::new();
    if let Some(key) = api.inference_key()? {
        headers.push(("Authorization".to_string(), format!("Bearer {key}")));
    }
    Ok(ServedModel {
        url: format!("{}/predictions/{model}", api.endpoints().inference.base_url()),
        headers,
        verification: api.verification().clone(),
        probe: ServerProbe {
            pid: server.running_jvm(),
            metrics_url: Some(api.endpoints().metrics.base_url()),
            metrics_tls: api.verification().clone(),
            also: Vec::new(),
        },
    })
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
    /// What the memory sampling cost (None when nothing was sampled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observer: Option<ObserverCost>,
}

/// Runs `plan` while sampling the server named by `probe`.
pub async fn measure_once(
    plan: LoadPlan,
    probe: &ServerProbe,
    token: CancellationToken,
    progress: Arc<Progress>,
) -> Result<Measurement, LoadError> {
    Ok(measure_traffic(plan, probe, token, progress).await?.0)
}

/// `measure_once`, with a replay's or a profile's own figures (per model,
/// fidelity to the log, at the peak).
pub async fn measure_traffic(
    plan: LoadPlan,
    probe: &ServerProbe,
    token: CancellationToken,
    progress: Arc<Progress>,
) -> Result<(Measurement, TrafficReport), LoadError> {
    let http = crate::server::tls::http_client(&probe.metrics_tls, Duration::from_secs(5))
        .map_err(|e| tracing::warn!("metrics: {e}"))
        .ok();
    let before = match (&probe.metrics_url, &http) {
        (Some(url), Some(http)) => scrape(http, url).await.map_err(|e| tracing::warn!("metrics: {e}")).ok(),
        _ => None,
    };
    let warmup = plan.warmup;
    // Memory is sampled over the measured window only: the warm-up is skipped.
    let sampler = probe.pid.map(|pid| {
        let token = token.clone();
        let roots: Vec<i32> = std::iter::once(pid).chain(probe.also.iter().copied()).collect();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(warmup) => Some(TreeSampler::start_trees(roots, SAMPLE_INTERVAL)),
                _ = token.cancelled() => None,
            }
        })
    });
    let load = run_load_traffic(plan, token, progress).await;
    let (memory_mb, observer) = match sampler {
        Some(handle) => match handle.await.ok().flatten().map(TreeSampler::finish) {
            Some((memory, cost)) => (Some(memory), Some(cost)),
            None => (None, None),
        },
        None => (None, None),
    };
    let (load, traffic) = load?;
    let server = match (&probe.metrics_url, &http, before) {
        (Some(url), Some(http), Some(before)) => scrape(http, url).await.ok().map(|after| before.delta(&after)),
        _ => None,
    };
    Ok((
        Measurement {
            load,
            memory_mb,
            server,
            observer,
        },
        traffic,
    ))
}
