//! `servetune bench`: benchmark a running endpoint, or the current config of
//! a managed TorchServe (`--target`), with a fixed load, a rate profile, a
//! replayed access log, a capacity search, a stress test or a soak (`--soak`:
//! a long fixed load and a stability verdict); prints a table (or `--json`),
//! saves the result under `results/bench/` and draws the run's
//! `timeline.svg` beside it (or in `--out`).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::bench_print::{print_measurement, print_traffic};
use crate::bench::capacity::{find_capacity, Capacity, CapacitySearch};
use crate::bench::replay::check_models_served;
use crate::bench::soak::{run_soak, SoakReport};
use crate::bench::stress::{run_stress, StressPlan, StressResult};
use crate::bench::timeline::{measure_observed, Timeline};
use crate::bench::{torchserve_endpoint, Measurement, ServerProbe};
use crate::load::replay::{ReplayLog, ReplayOptions, ReplayTraffic, Speed, TimePoint};
use crate::load::request::{parse_header, read_bodies};
use crate::load::tls::Verification;
use crate::load::{
    Arrival, LoadPlan, Mix, Profile, Progress, Protocol, Schedule, StabilityRule, Stages, TrafficReport, Workload,
};
use crate::server::{TargetSpec, TorchServe};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// URL to load, e.g. http://127.0.0.1:8080/predictions/tiny.
    #[arg(long, required_unless_present = "target")]
    url: Option<String>,
    /// A managed TorchServe: URL, bearer key, process tree and metrics come from it.
    #[arg(long, value_name = "TARGET.toml")]
    target: Option<PathBuf>,
    /// With --target: the model to load (default: the first registered).
    #[arg(long, requires = "target")]
    model: Option<String>,
    /// HTTP method (default: POST with a body, else GET).
    #[arg(long)]
    method: Option<String>,
    /// Request body: a file, or a directory whose files are sent round-robin.
    #[arg(long, value_name = "FILE|DIR")]
    body: Option<PathBuf>,
    /// Extra header NAME:VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// API the bodies are for (sets the default content type).
    #[arg(long, value_enum, default_value = "torchserve")]
    protocol: Protocol,
    #[arg(long)]
    content_type: Option<String>,
    /// Open loop: requests per second.
    #[arg(long, conflicts_with_all = ["users", "stages", "find_capacity", "stress", "profile", "replay"])]
    rate: Option<f64>,
    /// Open loop at a rate that varies: "step:50,200,50@20s",
    /// "burst:base=50,peak=400,every=30s,for=5s" or
    /// "diurnal:min=20,max=300,period=10m" (time counts from the start,
    /// warm-up included; default --duration: one pass less the warm-up).
    #[arg(long, conflicts_with_all = ["users", "stages", "find_capacity", "stress", "replay"])]
    profile: Option<Profile>,
    /// Replay the inference requests of a TorchServe access log at their
    /// recorded instants, each to its own path (open loop; needs --body-dir).
    #[arg(long, value_name = "ACCESS_LOG", conflicts_with_all = ["users", "stages", "find_capacity", "stress", "body"])]
    replay: Option<PathBuf>,
    /// Replay or a mix: sample bodies, one folder per model (BODY_DIR/<model>/).
    #[arg(long, value_name = "DIR")]
    body_dir: Option<PathBuf>,
    /// Several models of the server, each request to one of them by share:
    /// "resnet50=0.7,bert=0.3" (to /predictions/<model> on the URL's host;
    /// bodies from --body-dir DIR/<model>/); any schedule but a replay.
    #[arg(long, value_name = "MODEL=SHARE,…", conflicts_with_all = ["replay", "body"], requires = "body_dir")]
    mix: Option<String>,
    /// Replay: how much faster than recorded, e.g. 4x or 0.5x.
    #[arg(long, default_value = "1x", requires = "replay", allow_hyphen_values = true)]
    speed: Speed,
    /// Replay from this log time (2026-11-28T11:03:05,354) or offset from its first request (+30s).
    #[arg(long, value_name = "TIME", requires = "replay", allow_hyphen_values = true)]
    from: Option<TimePoint>,
    /// Replay up to (not including) this log time or offset.
    #[arg(long, value_name = "TIME", requires = "replay", allow_hyphen_values = true)]
    to: Option<TimePoint>,
    /// Replay: start the slice again when it ends, until --duration is over.
    #[arg(long = "loop", requires_all = ["replay", "duration"])]
    looped: bool,
    /// Open-loop arrivals.
    #[arg(long, value_enum, default_value = "constant")]
    arrival: Arrival,
    /// Closed loop: this many virtual users.
    #[arg(long, conflicts_with_all = ["stages", "find_capacity", "stress"])]
    users: Option<u32>,
    /// Closed loop stages, e.g. "0:100@60s,100@300s" (ramp, then hold).
    #[arg(long, conflicts_with_all = ["find_capacity", "stress"])]
    stages: Option<Stages>,
    /// Closed loop: pause between a user's answer and its next request.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    think_time: Duration,
    /// Measured window (after the warm-up). Default 10s; with --stages, the stages' length.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    duration: Option<Duration>,
    /// Warm-up before the window, excluded from the figures (the least
    /// warm-up unless --fixed-window).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "2s")]
    warmup: Duration,
    /// Measure exactly --duration after --warmup. By default the window goes
    /// on until throughput is steady: three sub-windows of a third of
    /// --duration within ±10 %, earlier ones counted as warm-up (a JVM that
    /// just started compiles for a while), at most --max-duration.
    #[arg(long)]
    fixed_window: bool,
    /// Longest measured time when waiting for steady throughput (default: 3x --duration).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_duration: Option<Duration>,
    /// Load only: no memory sampling or metrics scrapes of the server (to
    /// measure what observing it costs).
    #[arg(long)]
    no_observe: bool,
    /// Per-request timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Open loop: connections, hence requests in flight, at most.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Load threads (each a single-threaded event loop).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// https: accept any server certificate (self-signed TorchServe).
    #[arg(long)]
    insecure_tls: bool,
    /// Seed of Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Root pid of the server's process tree, for memory and CPU (automatic with --target).
    #[arg(long)]
    pid: Option<i32>,
    /// TorchServe metrics base URL, e.g. http://127.0.0.1:8082 (automatic with --target).
    #[arg(long)]
    metrics_url: Option<String>,
    /// Find the highest open-loop rate within --slo-p99 and --max-error-rate.
    #[arg(long, requires = "slo_p99", conflicts_with = "stress")]
    find_capacity: bool,
    /// Ramp users until degradation, then time the recovery.
    #[arg(long, requires = "slo_p99")]
    stress: bool,
    /// Latency objective for --find-capacity and --stress, e.g. 50ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    slo_p99: Option<Duration>,
    #[arg(long, default_value_t = 0.01)]
    max_error_rate: f64,
    /// Stress: users added per step.
    #[arg(long, default_value_t = 4)]
    step_users: u32,
    /// Stress: length of each step.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    step_duration: Duration,
    /// Stress: stop ramping here.
    #[arg(long, default_value_t = 256)]
    max_users: u32,
    /// Stress: how long recovery is watched at most.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    recovery_window: Duration,
    /// Capacity: first rate probed.
    #[arg(long, default_value_t = 10.0)]
    start_rate: f64,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Where results are saved.
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    /// Do not save the result.
    #[arg(long)]
    no_save: bool,
    /// Soak: hold --rate or --users this long (e.g. 2h) and judge the
    /// server's stability: memory slope per process, throughput and p99
    /// drift, errors.
    #[arg(
        long,
        value_parser = parse_duration,
        allow_hyphen_values = true,
        conflicts_with_all = ["stages", "duration", "find_capacity", "stress"]
    )]
    soak: Option<Duration>,
    /// Write timeline.svg here (default: beside the saved result).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// A duration flag: `10s`, `2m`; a negative one is named as such.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err(format!("'{text}' is negative: give a duration like 10s or 2m"));
    }
    humantime::parse_duration(text).map_err(|e| format!("'{text}': {e} (give a duration like 10s or 2m)"))
}

/// What `bench` measured, as saved and printed with --json.
#[derive(Debug, Serialize)]
struct BenchOutput {
    url: String,
    mode: String,
    #[serde(flatten)]
    measurement: Option<Measurement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<Capacity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stress: Option<StressResult>,
    /// A replay's or a profile's own figures: `models`, `replay`, `peak`.
    #[serde(flatten)]
    traffic: TrafficReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    soak: Option<SoakReport>,
    /// Where the run's timeline picture was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline_svg: Option<PathBuf>,
}

/// The URL, headers and server probe, from --url/--target.
struct Resolved {
    url: String,
    headers: Vec<(String, String)>,
    /// How an https URL's certificate is checked: --insecure-tls, else the
    /// target file's setting.
    verification: Verification,
    probe: ServerProbe,
}

/// What --insecure-tls asks for.
fn cli_verification(args: &BenchArgs) -> Verification {
    if args.insecure_tls {
        Verification::Insecure
    } else {
        Verification::WebPki
    }
}

async fn resolve_target(args: &BenchArgs) -> anyhow::Result<Resolved> {
    let mut probe = ServerProbe {
        pid: args.pid,
        metrics_url: args.metrics_url.clone(),
        metrics_tls: cli_verification(args),
        also: Vec::new(),
    };
    let Some(target) = &args.target else {
        return Ok(Resolved {
            url: args.url.clone().expect("clap requires --url or --target"),
            headers: Vec::new(),
            verification: cli_verification(args),
            probe,
        });
    };
    let server = TorchServe::new(TargetSpec::load(target)?);
    crate::server::tls::announce(&server.endpoints()?, &server.spec().tls, target);
    if let Some(holder) = crate::study::lock::holder(&server.spec().config) {
        tracing::warn!("{}", crate::study::lock::refusal(&server.spec().config, &holder));
    }
    server
        .wait_ready()
        .await
        .context("the target's TorchServe is not ready; start it with `servetune server start`")?;
    let served = torchserve_endpoint(&server, args.model.as_deref()).await?;
    probe.pid = probe.pid.or(served.probe.pid);
    if probe.metrics_url.is_none() {
        probe.metrics_url = served.probe.metrics_url;
        probe.metrics_tls = served.probe.metrics_tls;
    }
    Ok(Resolved {
        url: args.url.clone().unwrap_or(served.url),
        headers: served.headers,
        verification: if args.insecure_tls {
            Verification::Insecure
        } else {
            served.verification
        },
        probe,
    })
}

/// The workload the flags describe.
fn workload_of(args: &BenchArgs) -> anyhow::Result<Workload> {
    if let Some(open) = varying_schedule(args)? {
        return Ok(Workload {
            schedule: open.0,
            duration: open.1,
            stability: None,
            ..base_workload(args)?
        });
    }
    let (schedule, duration) = match (&args.rate, &args.users, &args.stages) {
        (Some(rate), _, _) => (
            Schedule::Open {
                rate_per_s: *rate,
                arrival: args.arrival,
            },
            args.soak.or(args.duration).unwrap_or(Duration::from_secs(10)),
        ),
        (_, Some(users), _) => {
            let duration = args.soak.or(args.duration).unwrap_or(Duration::from_secs(10));
            (
                Schedule::Closed {
                    stages: Stages::constant(*users, args.warmup + duration),
                    think_time: args.think_time,
                },
                duration,
            )
        }
        (_, _, Some(stages)) => {
            let total = stages.total_duration();
            let duration = args.duration.unwrap_or_else(|| total.saturating_sub(args.warmup));
            if duration.is_zero() {
                bail!(
                    "--stages last {total:?}, no longer than --warmup {:?}: nothing to measure",
                    args.warmup
                );
            }
            (
                Schedule::Closed {
                    stages: stages.clone(),
                    think_time: args.think_time,
                },
                duration,
            )
        }
        _ if args.find_capacity || args.stress => (
            Schedule::Open {
                rate_per_s: 1.0,
                arrival: args.arrival,
            },
            Duration::from_secs(1),
        ),
        _ => bail!(
            "say how to load: --rate N, --users N, --stages SPEC, --profile SPEC, --replay LOG, --find-capacity or --stress"
        ),
    };
    // Stages shape the load over time: measure them as given.
    let steady =
        !args.fixed_window && args.stages.is_none() && !args.find_capacity && !args.stress && args.soak.is_none();
    Ok(Workload {
        schedule,
        duration,
        stability: steady.then(|| StabilityRule::within(args.max_duration.unwrap_or(duration * 3))),
        ..base_workload(args)?
    })
}

/// What every workload of the flags shares (the schedule and window aside).
fn base_workload(args: &BenchArgs) -> anyhow::Result<Workload> {
    if args.body_dir.is_some() && args.replay.is_none() && args.mix.is_none() {
        bail!("--body-dir DIR is for --replay or --mix (one folder of bodies per model)");
    }
    Ok(Workload {
        method: args.method.clone(),
        bodies: match &args.body {
            Some(path) => read_bodies(path)?,
            None => Vec::new(),
        },
        protocol: args.protocol,
        content_type: args.content_type.clone(),
        headers: args.headers.clone(),
        schedule: Schedule::Open {
            rate_per_s: 1.0,
            arrival: args.arrival,
        },
        warmup: args.warmup,
        duration: Duration::from_secs(10),
        stability: None,
        request_timeout: args.timeout,
        max_in_flight: args.max_in_flight,
        threads: args.threads,
        seed: args.seed,
        verification: cli_verification(args),
        mix: args
            .mix
            .as_deref()
            .map(|text| mix_of(text, args))
            .transpose()?
            .map(Arc::new),
    })
}

/// `--mix a=0.7,b=0.3` with each model's bodies from `--body-dir`.
fn mix_of(text: &str, args: &BenchArgs) -> anyhow::Result<Mix> {
    let body_dir = args
        .body_dir
        .as_deref()
        .context("--mix needs --body-dir DIR (DIR/<model>/)")?;
    let mut parts = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (model, share) = part
            .split_once('=')
            .with_context(|| format!("--mix '{part}': expected MODEL=SHARE"))?;
        let share: f64 = share
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("--mix '{part}': the share is not a number"))?;
        let folder = body_dir.join(model.trim());
        let bodies = read_bodies(&folder).with_context(|| format!("--mix {}: its bodies", model.trim()))?;
        parts.push((model.trim().to_string(), share, bodies));
    }
    Mix::new(parts).map_err(|e| anyhow::anyhow!("--mix {text}: {e}"))
}

/// A profile's or a replay's schedule and measured window (a fixed one:
/// the load varies on purpose), or None for the other modes.
fn varying_schedule(args: &BenchArgs) -> anyhow::Result<Option<(Schedule, Duration)>> {
    let (schedule, length) = if let Some(profile) = &args.profile {
        let length = profile.natural_length();
        let schedule = Schedule::Profile {
            profile: profile.clone(),
            arrival: args.arrival,
        };
        (schedule, length)
    } else if let Some(log) = &args.replay {
        let Some(body_dir) = &args.body_dir else {
            bail!("--replay needs --body-dir DIR: one folder of sample bodies per model (DIR/<model>/)");
        };
        let options = ReplayOptions {
            speed: args.speed,
            from: args.from,
            to: args.to,
            looped: args.looped,
        };
        let traffic = ReplayTraffic::build(&ReplayLog::read(log)?, &options, body_dir)?;
        let length = traffic.pass_length();
        (Schedule::Replay(Arc::new(traffic)), length)
    } else {
        return Ok(None);
    };
    let duration = match args.duration {
        Some(duration) if args.replay.is_some() && !args.looped && args.warmup + duration > length => bail!(
            "--duration: --warmup and --duration last {:?}, longer than the replayed slice ({length:?}): add --loop, or shorten them",
            args.warmup + duration
        ),
        Some(duration) => duration,
        None => length.saturating_sub(args.warmup),
    };
    if duration.is_zero() {
        bail!(
            "the {} lasts {length:?}, no longer than --warmup {:?}: nothing to measure (shorten --warmup)",
            if args.profile.is_some() {
                "--profile"
            } else {
                "replayed slice"
            },
            args.warmup
        );
    }
    Ok(Some((schedule, duration)))
}

async fn build_plan(args: &BenchArgs, resolved: &Resolved) -> anyhow::Result<LoadPlan> {
    let workload = Workload {
        verification: resolved.verification.clone(),
        ..workload_of(args)?
    };
    Ok(workload.plan(&resolved.url, &resolved.headers).await?)
}

fn describe(schedule: &Schedule, args: &BenchArgs) -> String {
    if args.find_capacity {
        return "capacity search".into();
    }
    if args.stress {
        return "stress test".into();
    }
    match schedule {
        Schedule::Open { rate_per_s, arrival } => format!("open loop {rate_per_s}/s {arrival:?}").to_lowercase(),
        Schedule::Closed { stages, .. } if stages.stages().len() == 1 => {
            format!("closed loop {} users", stages.peak_users())
        }
        Schedule::Closed { stages, .. } => {
            format!("closed loop stages (peak {} users)", stages.peak_users())
        }
        Schedule::Profile { profile, .. } => format!("profile {profile}"),
        Schedule::Replay(traffic) => format!(
            "replay {} at {} ({} requests, models {})",
            traffic.log.display(),
            traffic.speed,
            traffic.entries.len(),
            traffic.models().join(", ")
        ),
    }
}

pub fn run(args: BenchArgs, runtime: tokio::runtime::Runtime) -> anyhow::Result<()> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args.users == Some(0) {
        bail!("--users must be at least 1");
    }
    if args.duration.is_some_and(|d| d.is_zero()) {
        bail!("--duration must be longer than 0s");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of requests per second");
    }
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        bail!("--max-error-rate must be within [0, 1]");
    }
    if args.soak.is_some_and(|d| d.is_zero()) {
        bail!("--soak must be longer than 0s");
    }
    if args.soak.is_some() && args.rate.is_none() && args.users.is_none() {
        bail!("--soak needs a load to hold: --rate N or --users N");
    }
    let token = CancellationToken::new();
    let output = runtime.block_on(async {
        super::signals::cancel_on_signals(
            token.clone(),
            "interrupted: stopping the load, then what this command started",
        );
        let mut resolved = resolve_target(&args).await?;
        if args.no_observe {
            resolved.probe = ServerProbe::default();
        }
        let plan = build_plan(&args, &resolved).await?;
        check_models_served(&plan).await?;
        let mode = describe(&plan.schedule, &args);
        let mut output = BenchOutput {
            url: resolved.url.clone(),
            mode,
            measurement: None,
            capacity: None,
            stress: None,
            traffic: TrafficReport::default(),
            soak: None,
            timeline_svg: None,
        };
        let mut timeline = None;
        if args.find_capacity {
            let mut search = CapacitySearch::new(args.slo_p99.expect("clap requires it"), args.max_error_rate);
            search.start_rate = args.start_rate;
            search.arrival = args.arrival;
            search.probe_warmup = args.warmup;
            if let Some(duration) = args.duration {
                search.probe_duration = duration;
            }
            output.capacity = Some(find_capacity(&plan, &resolved.probe, &search, token.clone()).await?);
        } else if args.stress {
            let stress = StressPlan {
                slo_p99: args.slo_p99.expect("clap requires it"),
                max_error_rate: args.max_error_rate,
                step_users: args.step_users,
                step_duration: args.step_duration,
                max_users: args.max_users,
                recovery_users: args.step_users,
                recovery_window: args.recovery_window,
            };
            output.stress = Some(run_stress(&plan, &resolved.probe, &stress, token.clone()).await?);
        } else {
            let progress = Arc::new(Progress::default());
            let bar = progress_bar(&args, plan.warmup + plan.duration, Arc::clone(&progress));
            let mode = output.mode.clone();
            let observed = match args.soak {
                Some(soak) => run_soak(plan, soak, &mode, &resolved.probe, token.clone(), progress)
                    .await
                    .map(|soaked| (soaked.observed, Some(soaked.report))),
                None => measure_observed(plan, &mode, &resolved.probe, token.clone(), progress)
                    .await
                    .map(|observed| (observed, None)),
            };
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let (observed, soak) = observed?;
            output.traffic = observed.traffic.clone();
            output.measurement = Some(observed.measurement);
            output.soak = soak;
            timeline = Some(observed.timeline);
        }
        anyhow::Ok((output, timeline))
    })?;
    let (mut output, timeline) = output;
    let result_path = (!args.no_save).then(|| result_path(&args.results_dir, &output));
    if let Some(timeline) = &timeline {
        output.timeline_svg = write_timeline(timeline, args.out.as_deref(), result_path.as_deref())?;
    }
    let saved = match &result_path {
        Some(path) => Some(save(path, &output)?),
        None => None,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output).expect("the output serialises")
        );
    } else {
        print_table(&output, saved.as_deref());
    }
    Ok(())
}

/// A live progress line on a terminal (nothing otherwise).
fn progress_bar(args: &BenchArgs, total: Duration, progress: Arc<Progress>) -> Option<indicatif::ProgressBar> {
    if args.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total.as_secs().max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4}/{len}s [{bar:30}] {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let ticker = bar.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut last = (0, Instant::now());
        while !ticker.is_finished() {
            std::thread::sleep(Duration::from_millis(500));
            let ok = progress.ok.load(Ordering::Relaxed);
            let errors = progress.errors.load(Ordering::Relaxed);
            let rate = (ok - last.0) as f64 / last.1.elapsed().as_secs_f64();
            last = (ok, Instant::now());
            ticker.set_position(started.elapsed().as_secs());
            ticker.set_message(format!("{ok} ok  {errors} errors  {rate:.0} req/s"));
        }
    });
    Some(bar)
}

/// Where the result is saved: `results/bench/<time>-<kind>.json`.
fn result_path(dir: &Path, output: &BenchOutput) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let kind = output.mode.split_whitespace().next().unwrap_or("bench");
    dir.join("bench").join(format!("{stamp}-{kind}.json"))
}

/// Writes `timeline.svg` into --out, else beside the saved result (none
/// when neither is asked for); returns where.
fn write_timeline(timeline: &Timeline, out: Option<&Path>, result: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    let path = match (out, result) {
        (Some(dir), _) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating --out {}", dir.display()))?;
            dir.join("timeline.svg")
        }
        (None, Some(result)) => result.with_extension("timeline.svg"),
        (None, None) => return Ok(None),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::report::timeline::write_bench_timeline(timeline, &path)?;
    Ok(Some(path))
}

fn save(path: &Path, output: &BenchOutput) -> anyhow::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let path = path.to_path_buf();
    let json = serde_json::to_string_pretty(output).expect("the output serialises");
    crate::config::file::write_data_atomically(&path, json.as_bytes())
        .with_context(|| format!("saving {}", path.display()))?;
    Ok(path)
}

fn print_table(output: &BenchOutput, saved: Option<&Path>) {
    println!("servetune bench  {}  {}", output.url, output.mode);
    if let Some(m) = &output.measurement {
        println!(
            "window        {:.0}s after {:.0}s warm-up",
            m.load.duration_s, m.load.warmup_s
        );
        print_measurement(m);
    }
    print_traffic(&output.traffic);
    if let Some(c) = &output.capacity {
        println!("probes (rate req/s -> p99 ms, error rate):");
        for p in &c.probes {
            println!(
                "  {:>9.1} -> {:>8.2} ms  {:>6.2}%  {}",
                p.rate,
                p.p99_ms,
                p.error_rate * 100.0,
                if p.feasible { "ok" } else { "over" }
            );
        }
        println!(
            "capacity      {:.1} req/s with p99 <= {} ms and errors <= {:.2}%",
            c.capacity_rps,
            c.slo_p99_ms,
            c.max_error_rate * 100.0
        );
        if let Some(m) = &c.at_capacity {
            print_measurement(m);
        }
    }
    if let Some(s) = &output.stress {
        println!("steps (users -> throughput, p99, error rate):");
        for step in &s.steps {
            println!(
                "  {:>5} -> {:>8.1} req/s  {:>8.2} ms  {:>6.2}%{}",
                step.users,
                step.throughput_rps,
                step.p99_ms,
                step.error_rate * 100.0,
                if step.degraded { "  degraded" } else { "" }
            );
        }
        println!("max users before degradation  {}", s.max_users_before_degradation);
        match s.degraded_at_users {
            Some(users) => println!(
                "degraded at   {users} users, error rate at the peak {:.2}%",
                s.error_rate_at_peak * 100.0
            ),
            None => println!("no degradation up to the maximum users"),
        }
        match (s.degraded_at_users, s.recovery_time_s) {
            (Some(_), Some(seconds)) => {
                println!("recovery time {seconds:.0} s after the load dropped")
            }
            (Some(_), None) => println!("recovery time not recovered within the recovery window"),
            _ => {}
        }
    }
    if let Some(s) = &output.soak {
        println!("{}", s.text());
    }
    if let Some(path) = &output.timeline_svg {
        println!("timeline      {}", path.display());
    }
    if let Some(path) = saved {
        println!("saved         {}", path.display());
    }
}
