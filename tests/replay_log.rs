//! `bench --replay` and `bench --profile`: a log the test writes with known
//! instants, replayed against a real TorchServe 0.12.0 serving two example
//! models (followed within the stated tolerance, figures per model), a
//! step profile whose achieved rate per step follows the target, and the
//! bad input both refuse before any load (no server needed for those).

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// `servetune bench ARGS --json --no-save`.
fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servetune"))
        .arg("bench")
        .args(args)
        .args(["--json", "--no-save"])
        .env("SERVETUNE_LOG", "warn")
        .output()
        .unwrap()
}

fn bench_json(args: &[&str]) -> serde_json::Value {
    let output = bench(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// The bench fails, and its error names every one of `expected`.
fn assert_refused(args: &[&str], expected: &[&str]) {
    let output = bench(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded");
    for word in expected {
        assert!(stderr.contains(word), "{args:?}: '{word}' not in: {stderr}");
    }
    assert!(output.stdout.is_empty(), "nothing printed on stdout: {args:?}");
}

/// An access-log line at `ms` after 10:00:00 of 2026-11-28.
fn line(ms: u64, path: &str) -> String {
    let (s, ms) = (ms / 1_000, ms % 1_000);
    format!(
        "2026-11-28T10:{:02}:{:02},{ms:03} - /127.0.0.1:50886 \"POST {path} HTTP/1.1\" 200 3\n",
        s / 60,
        s % 60
    )
}

/// A log of `tiny` every 40 ms (25/s) and `resnet50` every second for
/// `seconds`, with unreadable lines and non-inference requests mixed in.
fn write_log(path: &Path, seconds: u64, models: &[(&str, u64)]) -> u64 {
    let mut entries: Vec<(u64, String)> = Vec::new();
    for (model, every_ms) in models {
        for at in (0..seconds * 1_000).step_by(*every_ms as usize) {
            entries.push((at, line(at, &format!("/predictions/{model}"))));
        }
    }
    let requests = entries.len() as u64;
    entries.push((
        500,
        "2026-11-28T10:00:00,500 [INFO ] W-9000-tiny_1.0 a worker line\n".into(),
    ));
    entries.push((700, "not a log line at all\n".into()));
    entries.push((
        900,
        "2026-11-28T10:00:00,900 - /127.0.0.1:1 \"GET /ping HTTP/1.1\" 200 0\n".into(),
    ));
    entries.sort_by_key(|(at, _)| *at);
    let text: String = entries.into_iter().map(|(_, text)| text).collect();
    std::fs::write(path, text).unwrap();
    requests
}

fn number(report: &serde_json::Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report}"))
}

#[test]
fn bad_replays_and_profiles_are_refused_before_any_load() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access_log.log");
    write_log(&log, 2, &[("tiny", 100)]);
    let bodies = dir.path().join("bodies");
    std::fs::create_dir_all(bodies.join("tiny")).unwrap();
    std::fs::write(bodies.join("tiny/a.bin"), b"x").unwrap();
    let empty_bodies = dir.path().join("empty");
    std::fs::create_dir_all(&empty_bodies).unwrap();
    let garbage = dir.path().join("garbage.log");
    std::fs::write(&garbage, "nothing\nto replay\n").unwrap();
    let (log, bodies, empty_bodies, garbage) = (
        log.to_str().unwrap(),
        bodies.to_str().unwrap(),
        empty_bodies.to_str().unwrap(),
        garbage.to_str().unwrap(),
    );
    let url = "http://127.0.0.1:1/predictions/tiny";
    let replay = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--url", url, "--replay", log, "--body-dir", bodies];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect()
    };
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            replay(&["--from", "+10m"]),
            vec!["--from/--to", "no inference requests", log],
        ),
        (
            replay(&["--from", "2026-11-28T11:00:00", "--to", "2026-11-28T12:00:00"]),
            vec!["--from/--to", "no inference requests"],
        ),
        (replay(&["--from", "yesterday"]), vec!["--from", "yesterday"]),
        (replay(&["--speed", "fast"]), vec!["--speed", "fast"]),
        (replay(&["--speed", "-2x"]), vec!["--speed"]),
        (
            vec!["--url", url, "--replay", log, "--body-dir", empty_bodies]
                .into_iter()
                .map(str::to_string)
                .collect(),
            vec!["--body-dir", "tiny", empty_bodies],
        ),
        (
            vec!["--url", url, "--replay", log]
                .into_iter()
                .map(str::to_string)
                .collect(),
            vec!["--replay needs --body-dir"],
        ),
        (
            vec!["--url", url, "--replay", garbage, "--body-dir", bodies]
                .into_iter()
                .map(str::to_string)
                .collect(),
            vec![garbage, "no inference requests", "2 unreadable lines"],
        ),
        (
            vec![
                "--url",
                url,
                "--replay",
                "/nonexistent/access_log.log",
                "--body-dir",
                bodies,
            ]
            .into_iter()
            .map(str::to_string)
            .collect(),
            vec!["--replay", "/nonexistent/access_log.log"],
        ),
        (replay(&["--users", "2"]), vec!["--users"]),
        (replay(&["--duration", "1m"]), vec!["--duration", "--loop"]),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&args, expected);
    }
    for (profile, says) in [
        ("steady:50", "not a profile"),
        ("step:50,0@20s", "positive rate"),
        ("step:50,100", "expected RATE"),
        ("burst:base=50,peak=400,every=30s", "'for' is missing"),
        ("burst:base=50,peak=400,every=5s,for=5s", "shorter than every"),
        ("diurnal:min=20,max=300,period=0s", "longer than 0s"),
        ("diurnal:min=20,max=300,period=10m,phase=1", "unknown key"),
    ] {
        assert_refused(&["--url", url, "--profile", profile], &["--profile", says]);
    }
    assert_refused(
        &["--url", url, "--profile", "step:50@1s", "--warmup", "2s"],
        &["--profile", "--warmup"],
    );
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn replay_follows_the_log_and_profiles_follow_their_steps() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::serving_models(
        &provisioned,
        &["tiny", "resnet50"],
        "[environment]\nOMP_NUM_THREADS = \"1\"",
    );
    common::runtime().block_on(async { deployment.server().start().await.expect("TorchServe starts") });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access_log.log");
    let logged = write_log(&log, 8, &[("tiny", 40), ("resnet50", 1_000)]);
    assert_eq!(logged, 8 * 25 + 8);
    let bodies = common::repo_root().join("examples/deployment/bodies");
    let target = deployment.target.to_str().unwrap();
    let replay_at = |speed: &str| {
        bench_json(&[
            "--target",
            target,
            "--replay",
            log.to_str().unwrap(),
            "--body-dir",
            bodies.to_str().unwrap(),
            "--speed",
            speed,
            "--warmup",
            "1s",
        ])
    };

    // As recorded: 26 requests a second, for 8 s.
    let report = replay_at("1x");
    eprintln!("replay 1x: {}", report["replay"]);
    let replay = &report["replay"];
    assert_eq!(number(replay, "/slice_requests"), logged as f64);
    assert_eq!(
        (number(replay, "/unreadable_lines"), number(replay, "/other_lines")),
        (2.0, 1.0)
    );
    let (recorded, sent) = (number(replay, "/recorded_rps"), number(replay, "/sent_rps"));
    assert!(
        (recorded - 26.0).abs() < 2.0,
        "the log's own rate over the window: {recorded}"
    );
    // Tolerance: the sent rate within 10 % of the recorded one, nothing
    // dropped, half the sends within 20 ms of their instant and none a
    // second late (the generator shares two cores with the server).
    assert!(
        (sent - recorded).abs() <= 0.1 * recorded,
        "sent {sent} vs recorded {recorded}"
    );
    assert_eq!(number(replay, "/dropped"), 0.0, "{replay}");
    assert!(number(replay, "/lateness_ms/p50") <= 20.0, "{replay}");
    assert!(number(replay, "/lateness_ms/max") < 1_000.0, "{replay}");
    for model in ["tiny", "resnet50"] {
        let figures = &report["models"][model];
        assert!(number(figures, "/requests") > 0.0, "{model}: {figures}");
        assert!(number(figures, "/p99_ms") >= number(figures, "/p50_ms"), "{figures}");
        assert_eq!(number(figures, "/error_rate"), 0.0, "{model}: {figures}");
        number(figures, "/throughput_rps");
    }
    let tiny_rps = number(&report["models"]["tiny"], "/throughput_rps");
    assert!(
        (tiny_rps - 25.0).abs() < 5.0,
        "tiny is 25 of the 26 a second: {tiny_rps}"
    );
    assert!(number(&report, "/models/resnet50/p50_ms") > number(&report, "/models/tiny/p50_ms"));

    // Twice as fast: twice the rate, over half the time.
    let fast = replay_at("2x");
    let (asked, sent) = (number(&fast, "/replay/asked_rps"), number(&fast, "/replay/sent_rps"));
    assert!((asked - 2.0 * number(&fast, "/replay/recorded_rps")).abs() < 1e-6);
    assert!((asked - 52.0).abs() < 5.0, "{}", fast["replay"]);
    assert!((sent - asked).abs() <= 0.1 * asked, "sent {sent} vs asked {asked}");

    // A log naming a model the server does not serve: refused before any load.
    let ghost_log = dir.path().join("ghost.log");
    write_log(&ghost_log, 2, &[("tiny", 100), ("ghost", 500)]);
    let ghost_bodies = dir.path().join("bodies");
    for model in ["tiny", "ghost"] {
        std::fs::create_dir_all(ghost_bodies.join(model)).unwrap();
        std::fs::copy(bodies.join("tiny/sample-0.bin"), ghost_bodies.join(model).join("a.bin")).unwrap();
    }
    assert_refused(
        &[
            "--target",
            target,
            "--replay",
            ghost_log.to_str().unwrap(),
            "--body-dir",
            ghost_bodies.to_str().unwrap(),
            "--warmup",
            "0s",
        ],
        &["'ghost'", "does not serve", "404"],
    );

    // A mix: three tiny requests to one of resnet50's, each to its own model.
    let mixed = bench_json(&[
        "--target",
        target,
        "--mix",
        "tiny=3,resnet50=1",
        "--body-dir",
        bodies.to_str().unwrap(),
        "--rate",
        "20",
        "--duration",
        "4s",
        "--warmup",
        "1s",
    ]);
    let (tiny, resnet) = (
        number(&mixed, "/models/tiny/requests"),
        number(&mixed, "/models/resnet50/requests"),
    );
    assert!(
        (tiny / (tiny + resnet) - 0.75).abs() < 0.05,
        "the mix's shares: {}",
        mixed["models"]
    );
    assert_eq!(
        number(&mixed, "/models/resnet50/error_rate"),
        0.0,
        "{}",
        mixed["models"]
    );
    assert_refused(
        &[
            "--target",
            target,
            "--mix",
            "tiny=1,ghost=1",
            "--body-dir",
            ghost_bodies.to_str().unwrap(),
            "--rate",
            "5",
            "--warmup",
            "0s",
        ],
        &["--mix", "'ghost'", "does not serve"],
    );

    // A step profile: each step's achieved rate follows its target.
    let profile = bench_json(&[
        "--target",
        target,
        "--model",
        "tiny",
        "--body",
        bodies.join("tiny").to_str().unwrap(),
        "--profile",
        "step:20,60,20@3s",
        "--warmup",
        "0s",
    ]);
    let timeline = profile["timeline"].as_array().unwrap();
    let per_second: Vec<f64> = timeline
        .iter()
        .map(|s| number(s, "/ok") + number(s, "/errors"))
        .collect();
    eprintln!("profile per second: {per_second:?}  peak {}", profile["peak"]);
    let mean = |seconds: std::ops::Range<usize>| {
        let n = seconds.len() as f64;
        seconds.map(|s| per_second[s]).sum::<f64>() / n
    };
    for (seconds, target_rps) in [(1..3, 20.0), (3..6, 60.0), (6..9, 20.0)] {
        let achieved = mean(seconds.clone());
        assert!(
            (achieved - target_rps).abs() <= 0.15 * target_rps,
            "seconds {seconds:?}: {achieved}/s for a target of {target_rps}/s"
        );
    }
    let peak = &profile["peak"];
    assert_eq!(number(peak, "/rate_rps"), 60.0);
    assert!((number(peak, "/seconds") - 3.0).abs() < 0.05, "{peak}");
    assert!((number(peak, "/throughput_rps") - 60.0).abs() <= 9.0, "{peak}");
    assert!(
        number(peak, "/p99_ms") > 0.0 && number(peak, "/requests") > 100.0,
        "{peak}"
    );
    assert_eq!(profile["mode"], "profile step:20,60,20@3s");
}
