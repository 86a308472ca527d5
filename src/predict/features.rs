//! The cheap features of a served model, measured in seconds without
//! touching how it is served: a probe copy of the model is registered
//! beside it (`<model>-servetune-probe`, batch size 1, one worker, from the
//! same archive), timed with one request at a time, weighed, and
//! unregistered again on every way out. The recorder of landscapes
//! (`benches/record-landscape.sh`) measures its model the same way, so a
//! landscape's header and a live `predict` speak of the same quantities.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::landscape::ModelFeatures;
use crate::measure::process::{process_pss_bytes, sample_tree};
use crate::server::api::{Registration, TorchServeApi};
use crate::server::TorchServe;

/// Requests before the timed ones (the worker's first calls are slow)...
pub const WARMUP_REQUESTS: usize = 3;
/// ...and for at least this long: a fresh frontend's JIT needs hundreds of
/// requests before a 5 ms model's latency settles (measured: 10 ms after
/// three requests, 5 ms warm).
pub const WARMUP_TIME: Duration = Duration::from_secs(3);
/// Timed requests, one at a time (fewer when `TIME_LIMIT` runs out).
pub const TIMED_REQUESTS: usize = 30;
/// The timed requests stop after this long (a slow model gets fewer).
pub const TIME_LIMIT: Duration = Duration::from_secs(20);

/// The name the probe copy of `model` is registered under.
pub fn probe_name(model: &str) -> String {
    format!("{model}-servetune-probe")
}

/// Measures `model`'s features on the running `server` with `body`.
pub async fn measure(server: &TorchServe, model: &str, body: &[u8]) -> anyhow::Result<ModelFeatures> {
    let api = server.api()?;
    let jvm = server
        .running_jvm()
        .context("TorchServe's JVM was not found: its memory cannot be measured")?;
    let status = api
        .describe_model(model)
        .await
        .with_context(|| format!("the target does not serve model '{model}'"))?;
    let probe = probe_name(model);
    let before = sample_tree(jvm).pss_bytes;
    api.register(&Registration {
        url: status.model_url.clone(),
        model_name: probe.clone(),
        batch_size: 1,
        max_batch_delay: 1,
        initial_workers: 1,
        response_timeout: status.response_timeout,
    })
    .await
    .with_context(|| format!("registering the probe copy '{probe}' of {}", status.model_url))?;
    let measured = async {
        let latency_ms = time_requests(&api, &probe, body).await?;
        let after = sample_tree(jvm).pss_bytes;
        Ok::<_, anyhow::Error>(ModelFeatures {
            latency_ms,
            worker_mb: (after.saturating_sub(before)) as f64 / 1e6,
            frontend_mb: process_pss_bytes(jvm) as f64 / 1e6,
        })
    }
    .await;
    let removed = unregister(&api, &probe).await;
    let features = measured?;
    removed?;
    Ok(features)
}

/// Removes every version of the probe copy.
async fn unregister(api: &TorchServeApi, probe: &str) -> anyhow::Result<()> {
    let versions = api.model_versions(probe).await.unwrap_or_else(|_| vec!["1.0".into()]);
    for version in versions {
        api.unregister(probe, &version)
            .await
            .with_context(|| format!("unregistering the probe copy {probe}/{version}"))?;
    }
    Ok(())
}

/// Median latency (ms) of the timed requests, one at a time, after the warm-up.
async fn time_requests(api: &TorchServeApi, probe: &str, body: &[u8]) -> anyhow::Result<f64> {
    let url = format!("{}/predictions/{probe}", api.endpoints().inference.base_url());
    let client = crate::server::tls::http_client(api.verification(), Duration::from_secs(300))?;
    let key = api.inference_key()?;
    let once = || async {
        let mut request = client.post(&url).body(body.to_vec());
        if let Some(key) = &key {
            request = request.bearer_auth(key);
        }
        let started = Instant::now();
        let response = request.send().await.with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let answer = response.bytes().await.with_context(|| format!("POST {url}: reading"))?;
        if !status.is_success() {
            bail!(
                "POST {url} answered {status}: {} (is the body one the model reads?)",
                String::from_utf8_lossy(&answer).chars().take(200).collect::<String>()
            );
        }
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    let warming = Instant::now();
    let mut warmed = 0;
    while warmed < WARMUP_REQUESTS || warming.elapsed() < WARMUP_TIME {
        once().await?;
        warmed += 1;
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    while latencies.len() < TIMED_REQUESTS && (latencies.len() < 3 || started.elapsed() < TIME_LIMIT) {
        latencies.push(once().await?);
    }
    Ok(crate::stats::median(&mut latencies).expect("at least three requests were timed"))
}
