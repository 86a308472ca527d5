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
//!
//! The overhead apart from the model's noise: before the capacity rounds,
//! `pairs` alternating request pairs at one request in flight (`low_load`,
//! summarised by `paired`: bootstrap intervals of the median and p99 of the
//! differences), and in every fixed-load window the CPU each process tree
//! spent per request (`cpu`). When TorchServe also serves `<model>-onnx`
//! (the model's ONNX archive), it is measured as a third way, direct.

pub mod check;
pub mod cpu;
pub mod low_load;
pub mod overhead_tables;
pub mod paired;
pub mod tables;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use self::check::answer_problem;
use self::check::{check_bodies, check_route};
use self::cpu::{CpuPerRequest, CpuReading};
use crate::bench::capacity::{find_capacity, CapacitySearch};
use crate::bench::{measure_once, torchserve_endpoint, ServedModel, ServerProbe};
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

/// Why the published table's TF Serving row stays empty.
pub const TF_SERVING: &str = "not measured: no TensorFlow Serving server package is installable from the \
                              package registries this runs with (it ships as a Docker image)";

/// The model name of a model's ONNX archive (`<model>-onnx.mar`).
pub fn onnx_model_name(model: &str) -> String {
    format!("{model}-onnx")
}

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: u32,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_error_rate: f64,
    /// Alternating request pairs of the low-load overhead measurement.
    pub pairs: u32,
}

/// Which way the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    Direct,
    Gateway,
    /// Direct, to the model's ONNX archive (`<model>-onnx`) run by onnxruntime.
    Onnxruntime,
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
    /// CPU per request of each process tree over the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_per_request: Option<CpuPerRequest>,
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
    /// CPU (ms) the whole path spends per request — TorchServe's frontend
    /// and workers, and the gateway through it — over rounds.
    pub cpu_ms_per_request: Option<Interval>,
    /// TorchServe's frontend JVM alone.
    pub frontend_cpu_ms_per_request: Option<Interval>,
    /// TorchServe's workers alone.
    pub workers_cpu_ms_per_request: Option<Interval>,
    /// The gateway process alone (through the gateway only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_cpu_ms_per_request: Option<Interval>,
    /// Median and p99 with one request in flight (the low-load pairs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_load_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_load_p99_ms: Option<f64>,
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
    /// Median of the paired low-load differences, bootstrap 95 % interval.
    pub low_load_p50_ms: Option<Interval>,
    /// p99 of the paired low-load differences, bootstrap 95 % interval.
    pub low_load_p99_ms: Option<Interval>,
    /// Pairs measured at low load.
    pub low_load_pairs: usize,
    /// Capacity change in percent, paired over rounds (the mean of the
    /// rounds' log ratios, so one bad round cannot make it absurd).
    pub throughput_pct_ci95: Option<Interval>,
    /// Rounds this run's spread would need for a ±3 % throughput interval.
    pub throughput_rounds_for_3pct: Option<u32>,
    /// Memory difference, paired over rounds.
    pub memory_mb_ci95: Option<Interval>,
    /// PSS of the gateway process alone over its rounds: the part of the
    /// memory difference that is not TorchServe's drift between windows.
    pub gateway_memory_mb: Option<Interval>,
    /// CPU per request of the whole path, paired over rounds.
    pub cpu_ms_per_request: Option<Interval>,
    /// Throughput change of a CPU-bound host (every core busy): direct CPU
    /// per request over the gateway path's, paired over rounds, in percent.
    pub cpu_bound_throughput_pct: Option<Interval>,
    /// The gateway's share of all CPU the gateway path spends per request.
    pub gateway_cpu_share_pct: Option<f64>,
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
    /// The model's ONNX archive (`<model>-onnx`) served by TorchServe through
    /// onnxruntime, direct, when TorchServe serves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onnxruntime: Option<Side>,
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
    /// Low-load pairs asked for per model.
    pub pairs: u32,
    /// The published table's TF Serving row: why it has no figures here.
    pub tf_serving: &'static str,
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
    let started = server
        .start_unless_ready()
        .await
        .context("starting the stack's TorchServe")?;
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
    server.stop_if_started(started).await;
    Ok(Comparison {
        models: outcome?,
        machine: Machine::this(),
        reference_machine: REFERENCE_MACHINE,
        rounds: options.rounds,
        window_s: options.duration.as_secs_f64(),
        pairs: options.pairs,
        tf_serving: TF_SERVING,
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
    let onnx_url = onnx_url(server, model, &inference).await?;
    if let Some(url) = &onnx_url {
        check_route(url, &served.headers, &served.verification, model, &bodies[0]).await?;
    }
    let low_load = {
        let direct = low_load::Endpoint::new(direct_url.clone(), served.headers.clone(), &served.verification)?;
        let through = low_load::Endpoint::new(gateway_url.clone(), Vec::new(), &Verification::WebPki)?;
        low_load::alternate(&direct, &through, &bodies, options.pairs, token).await?
    };
    tracing::info!(model = %model.name, pairs = low_load.first_ms.len(), "low-load pairs");
    let ways = ways_of(
        &workload_of(bodies, &served, options),
        &served,
        gateway,
        [&direct_url, &gateway_url],
        onnx_url.as_deref(),
        gateway_first,
    )
    .await?;
    let capacities = search_capacities(model, &ways, options, token).await?;
    let capacity_of = |path: Path| mean(&capacities.iter().map(|c| c[path as usize]).collect::<Vec<_>>());
    let (direct_capacity, gateway_capacity) = (capacity_of(Path::Direct), capacity_of(Path::Gateway));
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
        for way in in_round_order(&ways, round) {
            if token.is_cancelled() {
                bail!("interrupted");
            }
            let mut measured = measure_round(way, round, load_rps, options, token).await?;
            measured.capacity_rps = capacities[round as usize - 1][way.path as usize];
            rounds.push(measured);
        }
    }
    let mut compared = summarize(model, load_rps, rounds);
    set_low_load(&mut compared, &low_load);
    Ok(compared)
}

/// The load of a model's rounds: its bodies, one user (the plans set the schedule).
fn workload_of(bodies: Vec<Vec<u8>>, served: &ServedModel, options: &Options) -> Workload {
    Workload {
        bodies,
        content_type: Some("application/json".into()),
        verification: served.verification.clone(),
        ..Workload::closed(1, options.warmup, options.duration)
    }
}

/// The ways of a model: direct, through the gateway and, when TorchServe
/// serves the model's ONNX archive, to it; the gateway first when asked.
async fn ways_of(
    workload: &Workload,
    served: &ServedModel,
    gateway: &Gateway,
    [direct_url, gateway_url]: [&str; 2],
    onnx_url: Option<&str>,
    gateway_first: bool,
) -> anyhow::Result<Vec<Way>> {
    let way = |path, plan, gateway_pid| Way {
        path,
        plan,
        probe: served.probe.clone(),
        gateway_pid,
    };
    let mut ways = vec![
        way(Path::Direct, workload.plan(direct_url, &served.headers).await?, None),
        way(Path::Gateway, workload.plan(gateway_url, &[]).await?, gateway.pid()),
    ];
    if let Some(url) = onnx_url {
        ways.push(way(Path::Onnxruntime, workload.plan(url, &served.headers).await?, None));
    }
    if gateway_first {
        ways.swap(0, 1);
    }
    Ok(ways)
}

/// The ways in the order of `round`: the first way of the list goes first
/// in odd rounds, last in even ones.
fn in_round_order(ways: &[Way], round: u32) -> Vec<&Way> {
    let mut ordered: Vec<&Way> = ways.iter().collect();
    if round % 2 == 0 {
        ordered.reverse();
    }
    ordered
}

/// The direct URL of the model's ONNX archive when TorchServe serves it.
async fn onnx_url(server: &TorchServe, model: &StackModel, inference: &str) -> anyhow::Result<Option<String>> {
    let onnx = onnx_model_name(&model.name);
    let served = server.api()?.list_models().await?;
    Ok(served
        .contains(&onnx)
        .then(|| format!("{inference}/predictions/{onnx}/{}/v1/{}", model.version, model.route)))
}

/// `rounds` capacity searches per way, each warm-started from that way's
/// last answer: capacity by round and path.
async fn search_capacities(
    model: &StackModel,
    ways: &[Way],
    options: &Options,
    token: &CancellationToken,
) -> anyhow::Result<Vec<[f64; 3]>> {
    let mut search = CapacitySearch::new(Duration::from_secs_f64(model.p99_ms / 1000.0), options.max_error_rate);
    search.start_rate = 2.0;
    search.tolerance = 0.1;
    search.max_probes = 10;
    search.probe_warmup = options.warmup;
    search.probe_duration = options.duration;
    let mut capacities: Vec<[f64; 3]> = Vec::new();
    for round in 1..=options.rounds {
        let mut found = [0.0; 3];
        for way in in_round_order(ways, round) {
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
    Ok(capacities)
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
    let progress = Arc::new(Progress::default());
    let cpu_start = way.probe.pid.map(|frontend| {
        let (progress, warmup, gateway) = (Arc::clone(&progress), options.warmup, way.gateway_pid);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            read_cpu(frontend, gateway, &progress)
        })
    });
    let measured = measure_once(plan, &way.probe, token.clone(), Arc::clone(&progress)).await;
    let cpu_end = way
        .probe
        .pid
        .map(|frontend| read_cpu(frontend, way.gateway_pid, &progress));
    let cpu_start = match cpu_start {
        Some(task) => task.await.ok(),
        None => None,
    };
    let ticks_per_s = procfs::ticks_per_second();
    let cpu_per_request = cpu_start
        .zip(cpu_end)
        .and_then(|(start, end)| cpu::per_request(&start, &end, ticks_per_s));
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
        cpu_per_request,
    })
}

/// CPU ticks of the path's trees and the requests completed so far.
fn read_cpu(frontend: i32, gateway: Option<i32>, progress: &Progress) -> CpuReading {
    let completed = progress.ok.load(Ordering::Relaxed) + progress.errors.load(Ordering::Relaxed);
    cpu::read_parts(std::path::Path::new("/proc"), frontend, gateway, completed)
}

fn side_of(rounds: &[&Round], gateway: bool) -> Side {
    let capacity: Vec<f64> = rounds.iter().map(|r| r.capacity_rps).collect();
    let p50: Vec<f64> = rounds.iter().map(|r| r.p50_ms).collect();
    let p99: Vec<f64> = rounds.iter().map(|r| r.p99_ms).collect();
    let memory: Vec<f64> = rounds.iter().map(|r| memory_of(r, gateway)).collect();
    let cpu = |part: fn(&CpuPerRequest) -> f64| -> Option<Interval> {
        let values: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.cpu_per_request.as_ref().map(part))
            .collect();
        interval_or_single(&values)
    };
    Side {
        p50_ms: mean(&p50),
        p99_ms: mean(&p99),
        throughput_rps: mean(&capacity),
        throughput_ci95: mean_interval(&capacity),
        memory_mb: mean(&memory),
        p50_ci95: mean_interval(&p50),
        p99_ci95: mean_interval(&p99),
        cpu_ms_per_request: cpu(CpuPerRequest::total_ms),
        frontend_cpu_ms_per_request: cpu(|c| c.frontend_ms),
        workers_cpu_ms_per_request: cpu(|c| c.workers_ms),
        gateway_cpu_ms_per_request: if gateway { cpu(|c| c.gateway_ms) } else { None },
        low_load_p50_ms: None,
        low_load_p99_ms: None,
    }
}

/// PSS of the round's TorchServe tree, plus the gateway's when `gateway`.
fn memory_of(round: &Round, gateway: bool) -> f64 {
    round.torchserve_pss_mb.unwrap_or(0.0)
        + if gateway {
            round.gateway_pss_mb.unwrap_or(0.0)
        } else {
            0.0
        }
}

/// The 95 % interval over rounds; one round's figure with no width when
/// there is only one (None for none).
fn interval_or_single(values: &[f64]) -> Option<Interval> {
    match values {
        [] => None,
        [one] => Some(Interval {
            estimate: *one,
            low: *one,
            high: *one,
        }),
        _ => mean_interval(values),
    }
}

/// Rounds the observed spread would need for a 95 % interval of ±`target`
/// (the half-width shrinks as 1/√n).
fn rounds_for(interval: &Option<Interval>, rounds: usize, target: f64) -> Option<u32> {
    let half = interval.as_ref()?.half_width();
    let needed = (rounds as f64 * (half / target).powi(2)).ceil();
    Some(needed.clamp(2.0, 10_000.0) as u32)
}

fn summarize(model: &StackModel, load_rps: f64, rounds: Vec<Round>) -> ModelComparison {
    let of = |path: Path| rounds.iter().filter(|r| r.path == path).collect::<Vec<_>>();
    let (direct_rounds, gateway_rounds, onnx_rounds) = (of(Path::Direct), of(Path::Gateway), of(Path::Onnxruntime));
    let direct = side_of(&direct_rounds, false);
    let gateway = side_of(&gateway_rounds, true);
    let onnxruntime = (!onnx_rounds.is_empty()).then(|| side_of(&onnx_rounds, false));
    let pairs = |figure: &dyn Fn(&Round, &Round) -> Option<f64>| -> Vec<f64> {
        direct_rounds
            .iter()
            .zip(&gateway_rounds)
            .filter_map(|(d, g)| figure(d, g))
            .collect()
    };
    let paired = |figure: fn(&Round) -> f64| mean_interval(&pairs(&|d, g| Some(figure(g) - figure(d))));
    let percent = |new: f64, old: f64| if old > 0.0 { (new - old) / old * 100.0 } else { 0.0 };
    let log_ratios =
        pairs(&|d, g| (d.capacity_rps > 0.0 && g.capacity_rps > 0.0).then(|| (g.capacity_rps / d.capacity_rps).ln()));
    let throughput_pct_ci95 = mean_interval(&log_ratios).map(|i| Interval {
        estimate: (i.estimate.exp() - 1.0) * 100.0,
        low: (i.low.exp() - 1.0) * 100.0,
        high: (i.high.exp() - 1.0) * 100.0,
    });
    let gateway_pss: Vec<f64> = gateway_rounds.iter().filter_map(|r| r.gateway_pss_mb).collect();
    let cpu_total = |r: &Round| r.cpu_per_request.as_ref().map(CpuPerRequest::total_ms);
    let cpu_bound = pairs(&|d, g| cpu::cpu_bound_throughput_change_pct(cpu_total(d)?, cpu_total(g)?));
    let gateway_cpu_share_pct = gateway
        .gateway_cpu_ms_per_request
        .zip(gateway.cpu_ms_per_request)
        .filter(|(_, total)| total.estimate > 0.0)
        .map(|(own, total)| own.estimate / total.estimate * 100.0);
    let difference = Difference {
        p50_ms: paired(|r| r.p50_ms),
        p99_ms: paired(|r| r.p99_ms),
        throughput_rps: paired(|r| r.capacity_rps),
        throughput_pct: percent(gateway.throughput_rps, direct.throughput_rps),
        memory_mb: gateway.memory_mb - direct.memory_mb,
        memory_pct: percent(gateway.memory_mb, direct.memory_mb),
        low_load_p50_ms: None,
        low_load_p99_ms: None,
        low_load_pairs: 0,
        throughput_rounds_for_3pct: rounds_for(&throughput_pct_ci95, direct_rounds.len(), 3.0),
        gateway_memory_mb: interval_or_single(&gateway_pss),
        throughput_pct_ci95,
        memory_mb_ci95: mean_interval(&pairs(&|d, g| Some(memory_of(g, true) - memory_of(d, false)))),
        cpu_ms_per_request: interval_or_single(&pairs(&|d, g| Some(cpu_total(g)? - cpu_total(d)?))),
        cpu_bound_throughput_pct: interval_or_single(&cpu_bound),
        gateway_cpu_share_pct,
    };
    ModelComparison {
        model: model.name.clone(),
        route: model.route.clone(),
        slo_p99_ms: model.p99_ms,
        load_rps,
        direct,
        gateway,
        onnxruntime,
        difference,
        rounds,
    }
}

/// The low-load pairs' figures: each path's median and p99, and the
/// paired differences' with their bootstrap intervals.
fn set_low_load(compared: &mut ModelComparison, pairs: &low_load::PairedLatencies) {
    let median = |values: &[f64]| paired::quantile_of(values, 0.5);
    let p99 = |values: &[f64]| paired::quantile_of(values, 0.99);
    compared.direct.low_load_p50_ms = median(&pairs.first_ms);
    compared.direct.low_load_p99_ms = p99(&pairs.first_ms);
    compared.gateway.low_load_p50_ms = median(&pairs.second_ms);
    compared.gateway.low_load_p99_ms = p99(&pairs.second_ms);
    let summary = paired::summarize_pairs(&pairs.first_ms, &pairs.second_ms);
    compared.difference.low_load_p50_ms = summary.map(|s| s.p50);
    compared.difference.low_load_p99_ms = summary.map(|s| s.p99);
    compared.difference.low_load_pairs = pairs.first_ms.len();
}

#[cfg(test)]
mod tests {
    use super::*;

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
            cpu_per_request: Some(CpuPerRequest {
                frontend_ms: 1.0,
                workers_ms: 4.0,
                gateway_ms: if path == Path::Gateway { 1.0 } else { 0.0 },
                requests: 100,
            }),
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
        let memory = c.difference.memory_mb_ci95.expect("two rounds");
        assert!(
            (memory.estimate - 10.0).abs() < 1e-9 && memory.half_width() < 1e-9,
            "{memory:?}"
        );
        let throughput = c.difference.throughput_pct_ci95.expect("two rounds");
        assert!((throughput.estimate + 5.0).abs() < 1e-9, "{throughput:?}");
        let gateway_memory = c.difference.gateway_memory_mb.expect("two rounds");
        assert!((gateway_memory.estimate - 10.0).abs() < 1e-9, "{gateway_memory:?}");
        assert_eq!(
            c.difference.throughput_rounds_for_3pct,
            Some(2),
            "no spread: two rounds do"
        );
        // CPU: 5 ms per request direct, 6 through the gateway, 1 of them the gateway's own.
        let cpu = c.difference.cpu_ms_per_request.expect("measured");
        assert!((cpu.estimate - 1.0).abs() < 1e-9, "{cpu:?}");
        assert!((c.gateway.gateway_cpu_ms_per_request.expect("measured").estimate - 1.0).abs() < 1e-9);
        assert!(c.direct.gateway_cpu_ms_per_request.is_none());
        let share = c.difference.gateway_cpu_share_pct.expect("measured");
        assert!((share - 100.0 / 6.0).abs() < 1e-9, "{share}");
        let host = c.difference.cpu_bound_throughput_pct.expect("measured");
        assert!((host.estimate - (5.0 / 6.0 - 1.0) * 100.0).abs() < 1e-9, "{host:?}");
        assert!(c.onnxruntime.is_none());
        // The low-load pairs: the gateway 0.5 ms slower in every pair.
        let mut c = c;
        let first: Vec<f64> = (0..100).map(|i| 3.0 + f64::from(i % 5)).collect();
        let pairs = low_load::PairedLatencies {
            second_ms: first.iter().map(|x| x + 0.5).collect(),
            first_ms: first,
            failed_pairs: 0,
        };
        set_low_load(&mut c, &pairs);
        let p50 = c.difference.low_load_p50_ms.expect("100 pairs");
        assert!((p50.estimate - 0.5).abs() < 1e-9 && p50.half_width() < 1e-9, "{p50:?}");
        assert_eq!(c.difference.low_load_pairs, 100);
        assert_eq!(c.direct.low_load_p50_ms, Some(5.0));
    }
}
