//! `servetune bench` draws `timeline.svg` for a real run: a ramp-then-hold
//! of the tiny model on a real TorchServe 0.12.0, the picture parsed back
//! and checked for every series and the stages.

mod common;

use std::process::Command;

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_staged_bench_writes_a_timeline_with_every_series_and_its_stages() {
    let provisioned = require_torchserve!();
    let tiny = common::Deployment::with_target_extra(&provisioned, "[environment]\nOMP_NUM_THREADS = \"1\"");
    common::runtime().block_on(async { tiny.server().start().await.expect("tiny starts") });
    let out = tempfile::tempdir().unwrap();
    let bodies = common::repo_root().join("examples/deployment/bodies/tiny");
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["bench", "--target", tiny.target.to_str().unwrap()])
        .args(["--body", bodies.to_str().unwrap()])
        .args(["--stages", "0:4@4s,4@4s", "--warmup", "1s", "--json", "--no-save"])
        .args(["--out", out.path().to_str().unwrap()])
        .env("SERVETUNE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let path = out.path().join("timeline.svg");
    assert_eq!(report["timeline_svg"].as_str(), path.to_str(), "{report}");
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "a whole SVG"
    );
    for series in [
        "achieved throughput",
        "virtual users",
        "p99 per second",
        "p50 per second",
        "errors per second",
        "memory MB",
        "warm-up",
        "0 → 4 users",
        "hold 4 users",
    ] {
        assert!(svg.contains(series), "{series} missing from the timeline");
    }
    // Each series is a polyline with a point per second of the run (8 s).
    let longest = svg
        .split("<polyline")
        .skip(1)
        .map(|line| {
            line.split("points=\"")
                .nth(1)
                .map_or(0, |p| p.split('"').next().unwrap_or("").split(' ').count())
        })
        .max()
        .unwrap_or(0);
    assert!(longest >= 7, "a per-second series has its points: {longest}");
    let served: u64 = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ok"].as_u64().unwrap())
        .sum();
    assert!(served > 0, "{report}");
}
