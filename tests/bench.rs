//! `servetune bench` and the capacity and stress measurements against a real
//! TorchServe 0.12.0 serving the example models (token authorization on).

mod common;

use std::process::Command;
use std::time::Duration;

use servetune::bench::capacity::{find_capacity, CapacitySearch};
use servetune::bench::stress::{run_stress, StressPlan};
use servetune::bench::ServerProbe;
use servetune::load::request::read_bodies;
use servetune::load::run::resolve;
use servetune::load::{Arrival, Endpoint, LoadPlan, RenderedRequests, RequestSpec, Schedule};
use servetune::server::Keys;
use tokio_util::sync::CancellationToken;

/// One test at a time: both measure, and a stress test beside a ResNet-50
/// window on two cores starves it (seen: under 1 request/s).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bench_json(args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .arg("bench")
        .args(args)
        .args(["--json", "--no-save"])
        .env("SERVETUNE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// The figures an operator relies on are present and sane; at least
/// `min_requests` completed (ResNet-50 on two shared cores manages a few per second).
fn assert_complete(report: &serde_json::Value, min_requests: f64) {
    let number = |path: &str| {
        report
            .pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{path} missing in {report}"))
    };
    assert!(number("/requests") >= min_requests, "{report}");
    assert!(number("/throughput_rps") > 1.0);
    let percentiles: Vec<f64> = ["p50", "p90", "p95", "p99", "p999", "max"]
        .iter()
        .map(|p| number(&format!("/latency_ms/{p}")))
        .collect();
    assert!(
        percentiles.windows(2).all(|w| w[0] <= w[1]) && percentiles[0] > 0.0,
        "{percentiles:?}"
    );
    assert!(number("/latency_ms/mean") > 0.0);
    assert_eq!(number("/errors/total"), 0.0, "{report}");
    for class in ["connect", "timeout", "status_503", "status_4xx", "status_5xx", "io"] {
        number(&format!("/errors/{class}"));
    }
    assert!(
        number("/memory_mb/rss_peak") > 100.0,
        "JVM + worker use more than 100 MB: {report}"
    );
    assert!(number("/memory_mb/pss_peak") > 50.0);
    assert!(number("/memory_mb/pss_mean") > 50.0);
    assert!(
        number("/server/requests") > 0.0,
        "TorchServe's own metrics were read: {report}"
    );
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn bench_reports_percentiles_errors_and_memory_for_tiny_and_resnet50() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let provisioned = require_torchserve!();
    let tiny = common::Deployment::with_target_extra(&provisioned, "[environment]\nOMP_NUM_THREADS = \"1\"");
    let resnet = common::Deployment::serving(&provisioned, "resnet50", "");
    common::runtime().block_on(async {
        let (tiny_server, resnet_server) = (tiny.server(), resnet.server());
        let (a, b) = tokio::join!(tiny_server.start(), resnet_server.start());
        a.expect("tiny starts");
        b.expect("resnet50 starts");
    });
    let bodies = common::repo_root().join("examples/deployment/bodies");
    let tiny_target = tiny.target.to_str().unwrap();
    let closed = bench_json(&[
        "--target",
        tiny_target,
        "--body",
        bodies.join("tiny").to_str().unwrap(),
        "--users",
        "4",
        "--duration",
        "3s",
        "--warmup",
        "1s",
    ]);
    assert_complete(&closed, 50.0);
    let open = bench_json(&[
        "--target",
        tiny_target,
        "--body",
        bodies.join("tiny").to_str().unwrap(),
        "--rate",
        "100",
        "--arrival",
        "poisson",
        "--duration",
        "3s",
        "--warmup",
        "1s",
    ]);
    assert_complete(&open, 50.0);
    let rate = open["throughput_rps"].as_f64().unwrap();
    assert!((70.0..130.0).contains(&rate), "Poisson at 100/s over 3 s: {rate}");

    let resnet_report = bench_json(&[
        "--target",
        resnet.target.to_str().unwrap(),
        "--body",
        bodies.join("resnet50").to_str().unwrap(),
        "--users",
        "2",
        "--duration",
        "4s",
        "--warmup",
        "2s",
    ]);
    assert_complete(&resnet_report, 3.0);
    assert!(
        resnet_report["latency_ms"]["p50"].as_f64().unwrap()
            > 3.0 * closed["latency_ms"]["p50"].as_f64().unwrap() / 4.0,
        "ResNet-50 is slower than tiny"
    );
    assert!(
        resnet_report["memory_mb"]["pss_peak"].as_f64().unwrap() > closed["memory_mb"]["pss_peak"].as_f64().unwrap()
    );
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn capacity_at_slo_and_stress_run_end_to_end() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let provisioned = require_torchserve!();
    // One torch thread per worker: with torch's default (one per core) on two
    // cores shared with the other tests, OpenMP's spinning threads make
    // tiny's latency jumpy, and this test is about capacity and stress.
    let deployment = common::Deployment::with_target_extra(&provisioned, "[environment]\nOMP_NUM_THREADS = \"1\"");
    let server = deployment.server();
    common::runtime().block_on(async {
        server.start().await.unwrap();
        let endpoints = server.endpoints().unwrap();
        let key = Keys::read(&server.spec().key_file).unwrap().inference;
        let endpoint = Endpoint::parse(&format!("{}/predictions/tiny", endpoints.inference.base_url())).unwrap();
        let spec = RequestSpec {
            method: "POST".into(),
            endpoint: endpoint.clone(),
            headers: vec![("Authorization".into(), format!("Bearer {key}"))],
            content_type: Some("application/octet-stream".into()),
            bodies: read_bodies(&common::repo_root().join("examples/deployment/bodies/tiny")).unwrap(),
        };
        let base = LoadPlan {
            address: resolve(&endpoint.host, endpoint.port).await.unwrap(),
            requests: std::sync::Arc::new(RenderedRequests::render(&spec)),
            schedule: Schedule::Open {
                rate_per_s: 1.0,
                arrival: Arrival::Constant,
            },
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            max_in_flight: 64,
            threads: 1,
            seed: 3,
            tls: None,
            stability: None,
            mix: None,
        };
        let probe = ServerProbe {
            pid: deployment.jvm(),
            metrics_url: Some(endpoints.metrics.base_url()),
            ..ServerProbe::default()
        };

        let mut search = CapacitySearch::new(Duration::from_millis(50), 0.01);
        search.start_rate = 50.0;
        search.max_probes = 6;
        search.probe_warmup = Duration::from_millis(500);
        search.probe_duration = Duration::from_secs(2);
        let capacity = find_capacity(&base, &probe, &search, CancellationToken::new())
            .await
            .unwrap();
        eprintln!("capacity probes: {:?}", capacity.probes);
        assert!(
            capacity.capacity_rps >= 50.0,
            "tiny serves at least 50 req/s within 50 ms: {:?}",
            capacity.probes
        );
        assert!(capacity.probes.len() <= 6);
        let at = capacity.at_capacity.as_ref().unwrap();
        assert!(at.load.latency_ms.p99 <= 50.0 && at.memory_mb.is_some());
        if let Some(high) = capacity.first_infeasible_rps {
            assert!(high > capacity.capacity_rps);
        }

        // A 2 ms SLO that a CPU model under load cannot hold: degradation
        // comes within a few steps, and recovery is timed after it.
        let stress = StressPlan {
            slo_p99: Duration::from_millis(2),
            max_error_rate: 0.01,
            step_users: 4,
            step_duration: Duration::from_secs(2),
            max_users: 16,
            recovery_users: 1,
            recovery_window: Duration::from_secs(5),
        };
        let result = run_stress(&base, &probe, &stress, CancellationToken::new())
            .await
            .unwrap();
        eprintln!("stress steps: {:?} recovery {:?}", result.steps, result.recovery_time_s);
        assert!(!result.steps.is_empty());
        assert_eq!(result.degraded_at_users, Some(result.steps.last().unwrap().users));
        assert!(result.max_users_before_degradation < result.degraded_at_users.unwrap());
        assert!(!result.recovery_timeline.is_empty(), "recovery was watched");
        server.stop().await.unwrap();
    });
}
