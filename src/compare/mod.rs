//! `servetune compare`: for each model of a stack, TorchServe direct and
//! through the TensorZero gateway, measured side by side in one run — the
//! same request body on the same route (`/predictions/M/1.0/v1/ROUTE`
//! direct, `…/openai/v1/ROUTE` through the gateway), so the difference is
//! the gateway's own cost.
//!
//! Per model: one request each way, checked (a chat answer has exactly one
//! choice, an embeddings answer one vector per input: the gateway does not
//! check counts); then `rounds` rounds of a capacity search on each path
//! (the highest rate whose p99 meets the model's objective with errors ≤
//! the limit, `bench::capacity`, each warm-started from that path's last
//! answer), and `rounds` rounds at a fixed moderate load — half the lower
//! mean capacity — for p50/p99, the paths alternating which goes first in
//! every round. Figures are means over rounds with Student-t intervals; the
//! difference is paired by round, so a gap the rounds cannot tell from zero
//! shows as such. Memory is the PSS of TorchServe's process tree, plus the
//! gateway's for the second column. `tables` renders the result.

pub mod tables;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::bench::capacity::{find_capacity, CapacitySearch};
use crate::bench::{measure_once, torchserve_endpoint, ServerProbe};
use crate::load::request::read_bodies;
use crate::load::tls::Verification;
use crate::load::{Arrival, LoadPlan, Progress, Schedule, Workload};
use crate::measure::process::{TreeSampler, SAMPLE_INTERVAL};
use crate::server::gateway::{Gateway, GatewaySpec};
use crate::server::stack::{StackModel, StackSpec};
use crate::server::TorchServe;
use crate::stats::{mean, mean_interval, Interval};

pub use crate::server::gateway::INFERENCE_KEY_VARIABLE;

/// The machine the figures this command reproduces were published on.
pub const REFERENCE_MACHINE: &str = "an 8-core Xeon";

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: u32,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_error_rate: f64,
}

/// Which way the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    Direct,
    Gateway,
}

/// One window of the fixed-load rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: u32,
    pub path: Path,
    /// This round's capacity search on this path (requests/s).
    pub capacity_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub throughput_rps: f64,
    pub error_rate: f64,
    pub torchserve_pss_mb: Option<f64>,
    pub gateway_pss_mb: Option<f64>,
}

/// One column of a table.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Capacity at the model's p99 SLO with errors within the limit (mean of rounds).
    pub throughput_rps: f64,
    pub throughput_ci95: Option<Interval>,
    /// PSS of TorchServe's tree (and of the gateway, through the gateway).
    pub memory_mb: f64,
    pub p50_ci95: Option<Interval>,
    pub p99_ci95: Option<Interval>,
}

/// Gateway minus direct.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// Paired over rounds.
    pub p50_ms: Option<Interval>,
    pub p99_ms: Option<Interval>,
    /// Capacity, paired over rounds (requests/s).
    pub throughput_rps: Option<Interval>,
    pub throughput_pct: f64,
    pub memory_mb: f64,
    pub memory_pct: f64,
}

/// One model's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ModelComparison {
    pub model: String,
    pub route: String,
    pub slo_p99_ms: f64,
    /// The fixed moderate load of the latency rounds (requests/s).
    pub load_rps: f64,
    pub direct: Side,
    pub gateway: Side,
    pub difference: Difference,
    pub rounds: Vec<Round>,
}

/// This machine, to set beside the reference one.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub logical_cpus: i64,
    pub cpu_model: String,
    pub memory_gb: f64,
}

impl Machine {
    pub fn this() -> Self {
        Self {
            logical_cpus: crate::machine::logical_cpus(),
            cpu_model: crate::machine::cpu_model(),
            memory_gb: crate::machine::memory_gb(),
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub models: Vec<ModelComparison>,
    pub machine: Machine,
    pub reference_machine: &'static str,
    pub rounds: u32,
    pub window_s: f64,
}

/// Compares every model of `models`: starts TorchServe when it does not
/// run (and stops it after), starts the gateway, and stops what it started
/// on every way out.
pub async fn compare(
    stack: &StackSpec,
    models: &[StackModel],
    options: &Options,
    token: CancellationToken,
) -> anyhow::Result<Comparison> {
    let server = TorchServe::new(stack.torchserve.clone());
    crate::server::tls::announce_spec(server.spec());
    stack.check_gateway_routes(models, &server.endpoints()?.inference.base_url())?;
    for model in models {
        check_bodies(model)?;
    }
    let started = if server.is_ready().await {
        false
    } else {
        server.start().await.context("starting the stack's TorchServe")?;
        true
    };
    let outcome = async {
        // A service's gateway is measured as it runs; a managed one is started.
        let gateway = match &stack.gateway.service {
            Some(service) => Gateway::attach(service).await?,
            None => Gateway::start(&gateway_spec(stack, &server)?).await?,
        };
        let mut compared = Vec::new();
        let mut outcome = Ok(());
        for (index, model) in models.iter().enumerate() {
            if token.is_cancelled() {
                outcome = Err(anyhow::anyhow!("interrupted"));
                break;
            }
            match compare_model(&server, &gateway, model, index % 2 == 1, options, &token).await {
                Ok(c) => compared.push(c),
                Err(e) => {
                    outcome = Err(e.context(format!("model {}", model.name)));
                    break;
                }
            }
        }
        gateway.stop().await;
        outcome.map(|()| compared)
    }
    .await;
    if started {
        if let Err(e) = server.stop().await {
            tracing::warn!("stopping the stack's TorchServe: {e}");
        }
    }
    Ok(Comparison {
        models: outcome?,
        machine: Machine::this(),
        reference_machine: REFERENCE_MACHINE,
        rounds: options.rounds,
        window_s: options.duration.as_secs_f64(),
    })
}

/// The stack's gateway, with TorchServe's inference key in
/// `TORCHSERVE_INFERENCE_KEY` for its providers' `api_key_location =
/// "env::TORCHSERVE_INFERENCE_KEY"` (a placeholder when token authorization
/// is off: TorchServe then ignores the header).
pub fn gateway_spec(stack: &StackSpec, server: &TorchServe) -> anyhow::Result<GatewaySpec> {
    let key = crate::server::gateway::inference_key(server)?;
    let mut spec = stack.gateway.clone();
    spec.environment
        .entry(INFERENCE_KEY_VARIABLE.to_string())
        .or_insert(key);
    Ok(spec)
}

/// Where one path's load goes.
struct Way {
    path: Path,
    plan: LoadPlan,
    probe: ServerProbe,
    /// The gateway's process tree, measured beside TorchServe's.
    gateway_pid: Option<i32>,
}

async fn compare_model(
    server: &TorchServe,
    gateway: &Gateway,
    model: &StackModel,
    gateway_first: bool,
    options: &Options,
    token: &CancellationToken,
) -> anyhow::Result<ModelComparison> {
    let served = torchserve_endpoint(server, Some(&model.name)).await?;
    let inference = server.api()?.endpoints().inference.base_url();
    let direct_url = format!("{inference}{}", model.direct_path());
    let gateway_url = format!("{}/{}", gateway.base_url, model.route);
    let bodies = check_bodies(model)?;
    check_route(&direct_url, &served.headers, &served.verification, model, &bodies[0]).await?;
    check_route(&gateway_url, &[], &Verification::WebPki, model, &bodies[0]).await?;
    let workload = Workload {
        bodies,
        content_type: Some("application/json".into()),
        verification: served.verification.clone(),
        ..Workload::closed(1, options.warmup, options.duration)
    };
    let direct = Way {
        path: Path::Direct,
        plan: workload.plan(&direct_url, &served.headers).await?,
        probe: served.probe.clone(),
        gateway_pid: None,
    };
    let through = Way {
        path: Path::Gateway,
        plan: workload.plan(&gateway_url, &[]).await?,
        probe: served.probe.clone(),
        gateway_pid: gateway.pid(),
    };
    let mut search = CapacitySearch::new(Duration::from_secs_f64(model.p99_ms / 1000.0), options.max_error_rate);
    search.start_rate = 2.0;
    search.tolerance = 0.1;
    search.max_probes = 10;
    search.probe_warmup = options.warmup;
    search.probe_duration = options.duration;
    let order = |round: u32| {
        if (round % 2 == 1) != gateway_first {
            [&direct, &through]
        } else {
            [&through, &direct]
        }
    };
    let mut capacities: Vec<[f64; 2]> = Vec::new();
    for round in 1..=options.rounds {
        let mut found = [0.0; 2];
        for way in order(round) {
            if token.is_cancelled() {
                bail!("interrupted");
            }
            let mut warm = search.clone();
            if let Some(last) = capacities.last().map(|c| c[way.path as usize]).filter(|&c| c > 0.0) {
                warm.start_rate = (last * 0.7).max(0.5);
            }
            let capacity = find_capacity(&way.plan, &way.probe, &warm, token.clone())
                .await?
                .capacity_rps;
            tracing::info!(model = %model.name, path = ?way.path, round, capacity, "capacity");
            found[way.path as usize] = capacity;
        }
        capacities.push(found);
    }
    let mean_capacity = |path: Path| mean(&capacities.iter().map(|c| c[path as usize]).collect::<Vec<_>>());
    let (direct_capacity, gateway_capacity) = (mean_capacity(Path::Direct), mean_capacity(Path::Gateway));
    if direct_capacity <= 0.0 || gateway_capacity <= 0.0 {
        bail!(
            "{} reached no rate within p99 {} ms (direct {direct_capacity:.1}/s, gateway {gateway_capacity:.1}/s): \
             raise p99_ms in the stack file",
            model.name,
            model.p99_ms
        );
    }
    let load_rps = (direct_capacity.min(gateway_capacity) / 2.0).max(0.5);
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        for way in order(round) {
            if token.is_cancelled() {
                bail!("interrupted");
            }
            let mut measured = measure_round(way, round, load_rps, options, token).await?;
            measured.capacity_rps = capacities[round as usize - 1][way.path as usize];
            rounds.push(measured);
        }
    }
    Ok(summarize(model, load_rps, rounds))
}

async fn measure_round(
    way: &Way,
    round: u32,
    rate: f64,
    options: &Options,
    token: &CancellationToken,
) -> anyhow::Result<Round> {
    let mut plan = way.plan.clone();
    plan.schedule = Schedule::Open {
        rate_per_s: rate,
        arrival: Arrival::Poisson,
    };
    plan.warmup = options.warmup;
    plan.duration = options.duration;
    let gateway_sampler = way.gateway_pid.map(|pid| TreeSampler::start(pid, SAMPLE_INTERVAL));
    let measured = measure_once(plan, &way.probe, token.clone(), Arc::new(Progress::default())).await;
    let gateway_memory = gateway_sampler.map(|s| s.finish().0);
    let measured = measured?;
    let load = &measured.load;
    Ok(Round {
        round,
        path: way.path,
        capacity_rps: 0.0,
        p50_ms: load.latency_ms.p50,
        p99_ms: load.latency_ms.p99,
        throughput_rps: load.throughput_rps,
        error_rate: load.error_rate,
        torchserve_pss_mb: measured.memory_mb.as_ref().map(|m| m.pss_mean),
        gateway_pss_mb: gateway_memory.map(|m| m.pss_mean),
    })
}

/// The model's request bodies, each JSON (checked before any server is touched).
fn check_bodies(model: &StackModel) -> anyhow::Result<Vec<Vec<u8>>> {
    let bodies =
        read_bodies(&model.body).with_context(|| format!("model {}: reading {}", model.name, model.body.display()))?;
    for body in &bodies {
        serde_json::from_slice::<serde_json::Value>(body)
            .with_context(|| format!("model {}: {} is not JSON", model.name, model.body.display()))?;
    }
    Ok(bodies)
}

/// One request, and a look at the answer's shape.
async fn check_route(
    url: &str,
    headers: &[(String, String)],
    verification: &Verification,
    model: &StackModel,
    body: &[u8],
) -> anyhow::Result<()> {
    let client = crate::server::tls::http_client(verification, Duration::from_secs(60))?;
    let mut request = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "POST {url} answered {status}: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    let sent: serde_json::Value =
        serde_json::from_slice(body).with_context(|| format!("{}: not JSON", model.body.display()))?;
    let answer: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("POST {url}: the answer is not JSON"))?;
    answer_problem(&model.route, &sent, &answer).map_or(Ok(()), |problem| bail!("POST {url}: {problem}"))
}

/// What is wrong with an answer to `sent` on `route`, if anything.
pub fn answer_problem(route: &str, sent: &serde_json::Value, answer: &serde_json::Value) -> Option<String> {
    if route == "embeddings" {
        let inputs = match &sent["input"] {
            serde_json::Value::String(_) => 1,
            serde_json::Value::Array(items) => items.len(),
            _ => return Some("the request has no input".into()),
        };
        let Some(data) = answer["data"].as_array() else {
            return Some("the answer has no data array".into());
        };
        if data.len() != inputs {
            return Some(format!("{} embeddings for {inputs} inputs", data.len()));
        }
        let empty = data.iter().any(|d| {
            d["embedding"]
                .as_array()
                .is_none_or(|v| v.is_empty() || !v.iter().all(|x| x.is_number()))
        });
        return empty.then(|| "an embedding is empty or not numbers".into());
    }
    let Some(choices) = answer["choices"].as_array() else {
        return Some("the answer has no choices".into());
    };
    if choices.len() != 1 {
        return Some(format!("{} choices, not 1", choices.len()));
    }
    choices[0]["message"]["content"]
        .as_str()
        .is_none()
        .then(|| "the choice has no text content".into())
}

fn side_of(rounds: &[&Round], gateway: bool) -> Side {
    let capacity: Vec<f64> = rounds.iter().map(|r| r.capacity_rps).collect();
    let p50: Vec<f64> = rounds.iter().map(|r| r.p50_ms).collect();
    let p99: Vec<f64> = rounds.iter().map(|r| r.p99_ms).collect();
    let memory: Vec<f64> = rounds
        .iter()
        .map(|r| r.torchserve_pss_mb.unwrap_or(0.0) + if gateway { r.gateway_pss_mb.unwrap_or(0.0) } else { 0.0 })
        .collect();
    Side {
        p50_ms: mean(&p50),
        p99_ms: mean(&p99),
        throughput_rps: mean(&capacity),
        throughput_ci95: mean_interval(&capacity),
        memory_mb: mean(&memory),
        p50_ci95: mean_interval(&p50),
        p99_ci95: mean_interval(&p99),
    }
}

fn summarize(model: &StackModel, load_rps: f64, rounds: Vec<Round>) -> ModelComparison {
    let of = |path: Path| rounds.iter().filter(|r| r.path == path).collect::<Vec<_>>();
    let (direct_rounds, gateway_rounds) = (of(Path::Direct), of(Path::Gateway));
    let direct = side_of(&direct_rounds, false);
    let gateway = side_of(&gateway_rounds, true);
    let paired = |figure: fn(&Round) -> f64| {
        let differences: Vec<f64> = direct_rounds
            .iter()
            .zip(&gateway_rounds)
            .map(|(d, g)| figure(g) - figure(d))
            .collect();
        mean_interval(&differences)
    };
    let percent = |new: f64, old: f64| if old > 0.0 { (new - old) / old * 100.0 } else { 0.0 };
    let difference = Difference {
        p50_ms: paired(|r| r.p50_ms),
        p99_ms: paired(|r| r.p99_ms),
        throughput_rps: paired(|r| r.capacity_rps),
        throughput_pct: percent(gateway.throughput_rps, direct.throughput_rps),
        memory_mb: gateway.memory_mb - direct.memory_mb,
        memory_pct: percent(gateway.memory_mb, direct.memory_mb),
    };
    ModelComparison {
        model: model.name.clone(),
        route: model.route.clone(),
        slo_p99_ms: model.p99_ms,
        load_rps,
        direct,
        gateway,
        difference,
        rounds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_checked_for_their_shape_and_counts() {
        let one = json!({"input": "a"});
        let two = json!({"input": ["a", "b"]});
        let answer = json!({"data": [{"embedding": [0.1, 0.2]}]});
        assert_eq!(answer_problem("embeddings", &one, &answer), None);
        assert_eq!(
            answer_problem("embeddings", &two, &answer).as_deref(),
            Some("1 embeddings for 2 inputs")
        );
        let chat = json!({"messages": []});
        assert_eq!(
            answer_problem(
                "chat/completions",
                &chat,
                &json!({"choices": [{"message": {"content": "hi"}}]})
            ),
            None
        );
        assert!(answer_problem("chat/completions", &chat, &json!({"choices": []})).is_some());
    }

    #[test]
    fn differences_pair_rounds() {
        let model = StackModel {
            name: "m".into(),
            route: "embeddings".into(),
            body: "b".into(),
            version: "1.0".into(),
            p99_ms: 100.0,
        };
        let round = |round, path: Path, p50| Round {
            round,
            path,
            capacity_rps: if path == Path::Direct { 100.0 } else { 95.0 },
            p50_ms: p50,
            p99_ms: p50 * 2.0,
            throughput_rps: 10.0,
            error_rate: 0.0,
            torchserve_pss_mb: Some(100.0),
            gateway_pss_mb: (path == Path::Gateway).then_some(10.0),
        };
        let rounds = vec![
            round(1, Path::Direct, 10.0),
            round(1, Path::Gateway, 11.0),
            round(2, Path::Gateway, 13.0),
            round(2, Path::Direct, 12.0),
        ];
        let c = summarize(&model, 5.0, rounds);
        assert_eq!(c.direct.p50_ms, 11.0);
        assert_eq!(c.gateway.p50_ms, 12.0);
        let p50 = c.difference.p50_ms.unwrap();
        assert!(
            (p50.estimate - 1.0).abs() < 1e-9 && (p50.high - p50.low).abs() < 1e-9,
            "{p50:?}"
        );
        assert!((c.difference.throughput_pct + 5.0).abs() < 1e-9);
        assert_eq!((c.gateway.memory_mb, c.difference.memory_mb), (110.0, 10.0));
    }
}
