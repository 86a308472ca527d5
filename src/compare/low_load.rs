//! Latency overhead at low load: one request in flight, the two paths
//! alternating request by request, so each pair's two requests meet the
//! same machine (the same neighbours, the same thermal and cache state) and
//! their difference is the second path's cost, not the noise of the model.
//! The order within a pair alternates too (A B, B A, …): a request that
//! runs right after another is not always the same path's.
//!
//! Sends with its own HTTP client per path (keep-alive, like the load
//! generator); `compare` calls it once per model and summarises the pairs
//! with `paired`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;

use crate::load::tls::Verification;

/// Pairs sent before the measured ones (connections opened, JIT warm).
pub const WARMUP_PAIRS: u32 = 20;

/// Where one path's requests go.
pub struct Endpoint {
    pub url: String,
    pub headers: Vec<(String, String)>,
    client: reqwest::Client,
}

impl Endpoint {
    pub fn new(url: String, headers: Vec<(String, String)>, verification: &Verification) -> anyhow::Result<Self> {
        let client = crate::server::tls::http_client(verification, Duration::from_secs(120))?;
        Ok(Self { url, headers, client })
    }

    /// One request; its latency in ms (the whole answer read).
    async fn time_one(&self, body: &[u8]) -> anyhow::Result<f64> {
        let mut request = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let started = Instant::now();
        let response = request.send().await.with_context(|| format!("POST {}", self.url))?;
        let status = response.status();
        response
            .bytes()
            .await
            .with_context(|| format!("POST {}: reading the answer", self.url))?;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            bail!("POST {} answered {status}", self.url);
        }
        Ok(elapsed_ms)
    }
}

/// Latencies (ms) of the measured pairs, index by index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairedLatencies {
    pub first_ms: Vec<f64>,
    pub second_ms: Vec<f64>,
    /// Pairs dropped because a request of theirs failed.
    pub failed_pairs: u32,
}

/// Sends `pairs` pairs (after `WARMUP_PAIRS`), one request at a time,
/// cycling through `bodies` (the same body for both requests of a pair).
pub async fn alternate(
    first: &Endpoint,
    second: &Endpoint,
    bodies: &[Vec<u8>],
    pairs: u32,
    token: &CancellationToken,
) -> anyhow::Result<PairedLatencies> {
    if bodies.is_empty() {
        bail!("no request body to send");
    }
    let mut measured = PairedLatencies::default();
    for index in 0..pairs + WARMUP_PAIRS {
        if token.is_cancelled() {
            bail!("interrupted");
        }
        let body = &bodies[index as usize % bodies.len()];
        let pair = if index % 2 == 0 {
            (first.time_one(body).await, second.time_one(body).await)
        } else {
            let second_ms = second.time_one(body).await;
            (first.time_one(body).await, second_ms)
        };
        if index < WARMUP_PAIRS {
            continue;
        }
        match pair {
            (Ok(a), Ok(b)) => {
                measured.first_ms.push(a);
                measured.second_ms.push(b);
            }
            (a, b) => {
                measured.failed_pairs += 1;
                if let Some(e) = a.err().or(b.err()) {
                    tracing::warn!("a low-load pair failed: {e:#}");
                }
                if measured.failed_pairs * 10 > pairs.max(10) {
                    bail!("more than a tenth of the low-load pairs failed");
                }
            }
        }
    }
    Ok(measured)
}
