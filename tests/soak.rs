//! `servetune bench --soak` against a real TorchServe 0.12.0 serving the
//! tiny model: a short soak gives every process's memory trend, the drift
//! between the first and last tenth, and a verdict, in `--json` and the
//! text output.

mod common;

use std::process::Command;

/// `bench` with `args`, which must fail: its stderr.
fn bench_fails(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .arg("bench")
        .args(args)
        .args(["--no-save"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_soak_flags_are_refused_naming_the_flag() {
    let url = ["--url", "http://127.0.0.1:1/x"];
    let zero = bench_fails(&[&url[..], &["--users", "1", "--soak", "0s"]].concat());
    assert!(zero.contains("--soak must be longer than 0s"), "{zero}");
    let negative = bench_fails(&[&url[..], &["--users", "1", "--soak", "-5m"]].concat());
    assert!(
        negative.contains("--soak") && negative.contains("negative"),
        "{negative}"
    );
    let no_load = bench_fails(&[&url[..], &["--soak", "5m"]].concat());
    assert!(no_load.contains("--soak needs a load"), "{no_load}");
    let with_stages = bench_fails(&[&url[..], &["--stages", "0:4@4s", "--soak", "5m"]].concat());
    assert!(
        with_stages.contains("--soak") && with_stages.contains("--stages"),
        "{with_stages}"
    );
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_short_soak_reports_memory_trends_drift_and_a_verdict() {
    let provisioned = require_torchserve!();
    let tiny = common::Deployment::with_target_extra(&provisioned, "[environment]\nOMP_NUM_THREADS = \"1\"");
    common::runtime().block_on(async { tiny.server().start().await.expect("tiny starts") });
    let results = tempfile::tempdir().unwrap();
    let bodies = common::repo_root().join("examples/deployment/bodies/tiny");
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["bench", "--target", tiny.target.to_str().unwrap()])
        .args(["--body", bodies.to_str().unwrap()])
        .args(["--users", "2", "--soak", "20s", "--warmup", "2s", "--json"])
        .args(["--results-dir", results.path().to_str().unwrap()])
        .env("SERVETUNE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let soak = &report["soak"];
    let verdict = soak["verdict"]
        .as_str()
        .unwrap_or_else(|| panic!("no verdict: {report}"));
    assert!(
        verdict == "stable"
            || ["grows", "p99 degrades", "throughput drops", "errors"]
                .iter()
                .any(|v| verdict.contains(v)),
        "{verdict}"
    );
    assert_eq!(soak["stable"].as_bool(), Some(verdict == "stable"));
    assert!((18.0..=21.0).contains(&soak["duration_s"].as_f64().unwrap()), "{soak}");
    assert!(
        (report["duration_s"].as_f64().unwrap() - 20.0).abs() < 0.5,
        "the window is the soak: {report}"
    );
    let roles: Vec<&str> = soak["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert!(roles.contains(&"frontend") && roles.contains(&"worker"), "{roles:?}");
    for p in soak["processes"].as_array().unwrap() {
        let slope = &p["slope_mb_per_h"];
        assert!(
            slope["low"].as_f64().unwrap() <= slope["estimate"].as_f64().unwrap()
                && slope["estimate"].as_f64().unwrap() <= slope["high"].as_f64().unwrap(),
            "{p}"
        );
        assert!(
            p["mean_mb"].as_f64().unwrap() > 10.0 && p["samples"].as_u64().unwrap() >= 15,
            "{p}"
        );
    }
    assert!(soak["memory"]["mean_mb"].as_f64().unwrap() > 100.0, "{soak}");
    assert!(soak["throughput_first_rps"].as_f64().unwrap() > 0.0 && soak["p99_last_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(soak["errors"].as_u64(), Some(0), "{soak}");
    // Saved beside the result: the JSON and its timeline.
    let saved = std::fs::read_dir(results.path().join("bench")).unwrap().count();
    assert_eq!(saved, 2, "the result and its timeline.svg");
    assert!(report["timeline_svg"].as_str().unwrap().ends_with(".timeline.svg"));
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_study_soaks_its_balanced_recommendation_before_recommending_it() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let original = deployment.config_bytes();
    let dir = deployment.dir.path();
    let root = common::repo_root();
    std::fs::write(
        dir.join("study.toml"),
        format!(
            "name = \"soaked\"\ntarget = \"target.toml\"\nspace = \"{}\"\nmodel = \"tiny\"\nbudget = \"150s\"\n\
             max_trials = 2\nsoak = \"10s\"\n\
             [workload]\nbody = \"{}\"\nusers = 4\nduration = \"2s\"\nwarmup = \"1s\"\nconfirm_top = 1\n\
             confirm_rounds = 2\n[constraints]\np99_ms = 2000\n",
            root.join("search-spaces/torchserve-cpu.toml").display(),
            root.join("examples/deployment/bodies/tiny").display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["tune", "--study", "study.toml", "--json"])
        .current_dir(dir)
        .env("SERVETUNE_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let balanced = report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tier"] == "balanced");
    let changes = balanced.is_some_and(|b| b["keep_current"] == false);
    if changes {
        // The recommendation that changes something was soaked first.
        let soak = &report["soak"];
        assert!(
            soak["duration_s"].as_f64().is_some_and(|s| (8.0..=12.0).contains(&s)),
            "{soak}"
        );
        assert!(soak["verdict"].is_string(), "{soak}");
        let summary = std::fs::read_to_string(dir.join("results/soaked/summary.md")).unwrap();
        assert!(summary.contains("Soak"), "{summary}");
    } else {
        // Keeping the current config: nothing new to soak.
        assert!(report.get("soak").is_none_or(|s| s.is_null()), "{report}");
    }
    assert_eq!(deployment.config_bytes(), original, "the config is back as it was");
}
