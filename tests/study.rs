//! `servetune tune` end to end against a real TorchServe: the journal holds
//! the trials, the recommended configs are exported and start a real
//! TorchServe, the original config is byte-identical afterwards, the budget
//! holds, and a study killed mid-run resumes where it stopped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn servetune() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_servetune"));
    command.env("SERVETUNE_LOG", "warn");
    command
}

fn write_study(deployment: &common::Deployment, name: &str, budget: &str) -> PathBuf {
    let space = common::repo_root().join("search-spaces/torchserve-cpu.toml");
    let bodies = common::repo_root().join("examples/deployment/bodies/tiny");
    let path = deployment.dir.path().join("study.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\ntarget = \"target.toml\"\nspace = \"{}\"\nmodel = \"tiny\"\nbudget = \"{budget}\"\n\
             [workload]\nbody = \"{}\"\nusers = 8\nduration = \"2s\"\nwarmup = \"1s\"\nconfirm_duration = \"3s\"\nconfirm_top = 1\n\
             [constraints]\np99_ms = 80.0\n",
            space.display(),
            bodies.display()
        ),
    )
    .unwrap();
    path
}

fn journal(results: &Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(results.join(name).join("trials.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[test]
fn tune_exports_recommendations_that_start_and_leaves_the_config_as_it_was() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let original = deployment.config_bytes();
    let study = write_study(&deployment, "e2e", "100s");
    let results = deployment.dir.path().join("results");
    let started = Instant::now();
    let output = servetune()
        .args([
            "tune",
            "--study",
            study.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "tune failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    // Budget: the run ends within about one trial of it.
    assert!(took < Duration::from_secs(100 + 25), "took {took:?} on a 100 s budget");
    let entries = journal(&results, "e2e");
    assert!(entries.len() >= 4, "baseline, defaults and more: {}", entries.len());
    assert_eq!(entries[0]["kind"], "baseline");
    assert!(
        entries.iter().enumerate().all(|(i, e)| e["number"] == i),
        "numbered in order"
    );
    assert!(entries
        .iter()
        .any(|e| e["kind"] == "screen" && e["figures"]["throughput_rps"].as_f64().unwrap_or(0.0) > 10.0));
    assert!(report["baseline"]["throughput_rps"].as_f64().unwrap() > 10.0);

    // The config is back, byte for byte, and the server runs on it.
    assert_eq!(
        deployment.config_bytes(),
        original,
        "the original config.properties is byte-identical"
    );
    common::runtime().block_on(async {
        let tiny = deployment.server().api().unwrap().describe_model("tiny").await.unwrap();
        assert_eq!(
            (tiny.batch_size, tiny.min_workers),
            (1, 1),
            "the server is back on the original settings"
        );
    });

    // Exports: files for each tier, a summary, a CSV, plots.
    let dir = results.join("e2e");
    for file in [
        "summary.md",
        "trials.csv",
        "report.json",
        "throughput-vs-p99.svg",
        "memory-vs-p99.svg",
    ] {
        assert!(dir.join(file).exists(), "{file} exported");
    }
    let balanced = dir.join("recommended/balanced");
    assert!(balanced.join("model-config.yaml").exists());
    let recommended = std::fs::read(balanced.join("config.properties")).expect("a balanced recommendation");
    assert!(report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["tier"] == "balanced"));

    // The recommended config starts a real TorchServe (on other ports).
    let second = common::Deployment::new(&provisioned);
    std::fs::write(&second.config, &recommended).unwrap();
    let p = &second.ports;
    let moved = servetune()
        .args(["apply", "--config", second.config.to_str().unwrap()])
        .args(["--set", &format!("inference_address=http://127.0.0.1:{}", p.inference)])
        .args([
            "--set",
            &format!("management_address=http://127.0.0.1:{}", p.management),
        ])
        .args(["--set", &format!("metrics_address=http://127.0.0.1:{}", p.metrics)])
        .args(["--set", &format!("grpc_inference_port={}", p.grpc_inference)])
        .args(["--set", &format!("grpc_management_port={}", p.grpc_management)])
        .args(["--set", "initial_worker_port=61000"])
        .output()
        .unwrap();
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    common::runtime().block_on(async {
        second
            .server()
            .start()
            .await
            .expect("the recommended config starts and becomes ready");
    });
}

#[test]
fn a_killed_study_resumes_where_it_stopped() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let original = deployment.config_bytes();
    let study = write_study(&deployment, "resumable", "300s");
    let results = deployment.dir.path().join("results");
    let mut child = servetune()
        .args([
            "tune",
            "--study",
            study.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    while journal(&results, "resumable").len() < 3 {
        assert!(Instant::now() < deadline, "the study never journaled three trials");
        assert!(child.try_wait().unwrap().is_none(), "the study ended on its own");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();
    let before = journal(&results, "resumable");

    let output = servetune()
        .args([
            "tune",
            "--resume",
            "resumable",
            "--results-dir",
            results.to_str().unwrap(),
            "--max-trials",
            &(before.len() + 1).to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = journal(&results, "resumable");
    assert!(after.len() > before.len(), "the resumed study ran more trials");
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "journaled trials are kept as they were"
    );
    assert!(
        after.iter().enumerate().all(|(i, e)| e["number"] == i),
        "numbering continues"
    );
    assert_eq!(
        after.iter().filter(|e| e["kind"] == "baseline").count(),
        1,
        "the baseline is not measured again"
    );
    assert_eq!(
        deployment.config_bytes(),
        original,
        "byte-identical after the resumed run"
    );
    assert!(results.join("resumable/recommended").exists());
}
