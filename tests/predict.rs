//! `servetune predict` against a real TorchServe 0.12.0 serving `tiny`: the
//! features are measured on a probe copy that is gone afterwards, the
//! model's own settings are untouched, `--json` has every field, and
//! `tune --prior` starts a study from it.

mod common;

use std::process::Command;

use serde_json::Value;

fn servetune(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(args)
        .env("SERVETUNE_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn predict_measures_a_probe_copy_and_ranks_every_tier() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let runtime = common::runtime();
    let server = deployment.server();
    runtime.block_on(server.start()).unwrap();
    let body = common::repo_root().join("examples/deployment/bodies/tiny");
    let target = deployment.target.to_str().unwrap();
    let output = servetune(&[
        "predict",
        "--target",
        target,
        "--body",
        body.to_str().unwrap(),
        "--slo-p99-ms",
        "40",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let (models, status) = runtime.block_on(async {
        let api = server.api().unwrap();
        (
            api.list_models().await.unwrap(),
            api.describe_model("tiny").await.unwrap(),
        )
    });
    runtime.block_on(server.stop()).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert_eq!(models, vec!["tiny".to_string()], "the probe copy is unregistered");
    assert_eq!(
        (status.batch_size, status.min_workers),
        (1, 1),
        "tiny's settings are untouched"
    );

    let forecast: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(forecast["model"], "tiny");
    for feature in ["latency_ms", "worker_mb", "frontend_mb"] {
        let value = forecast["features"][feature].as_f64().unwrap();
        assert!(value > 0.0 && value < 5000.0, "{feature} = {value}");
    }
    assert_eq!(forecast["slo_p99_ms"], 40.0);
    assert!(forecast["learnt_from"].as_array().unwrap().len() >= 2, "{forecast}");
    assert_eq!(forecast["users"], 16, "the bundled landscapes' load");
    assert!(forecast["configs"].as_u64().unwrap() >= 24, "{forecast}");
    assert_eq!(forecast["current"]["settings"]["batch_size"], 1.0);
    let tiers = forecast["tiers"].as_array().unwrap();
    let names: Vec<&str> = tiers.iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(names, ["balanced", "max_throughput", "lowest_latency", "lowest_memory"]);
    let best = &tiers[1]["configs"][0];
    for field in [
        "throughput_rps",
        "p50_ms",
        "p99_ms",
        "memory_mb",
        "error_rate",
        "throughput_ln_sd",
        "p99_ln_sd",
        "memory_sd_mb",
    ] {
        assert!(best["predicted"][field].is_number(), "{field}: {best}");
    }
    assert!(best["chance_within_slo"].as_f64().unwrap() >= 0.5, "{best}");
    assert!(best["settings"]["workers"].is_number(), "{best}");
    let throughputs: Vec<f64> = tiers[1]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["predicted"]["throughput_rps"].as_f64().unwrap())
        .collect();
    assert!(throughputs.windows(2).all(|w| w[0] >= w[1]), "ranked: {throughputs:?}");

    // tune --prior starts from it: the prediction is fitted again, the study runs, the config is back.
    let prior = deployment.dir.path().join("prior.json");
    std::fs::write(&prior, &output.stdout).unwrap();
    let before = deployment.config_bytes();
    let space = deployment.dir.path().join("space.toml");
    std::fs::write(
        &space,
        "[[parameter]]\nname = \"batch_size\"\nkind = \"pow2\"\nmin = 1\nmax = 8\ndefault = 1\n\
         target = \"models.{model}.batchSize\"\napply = \"hot\"\n\
         [[parameter]]\nname = \"workers\"\nkind = \"int\"\nmin = 1\nmax = 2\ndefault = 1\n\
         target = [\"models.{model}.minWorkers\", \"models.{model}.maxWorkers\"]\napply = \"hot\"\n",
    )
    .unwrap();
    let study = deployment.dir.path().join("study.toml");
    std::fs::write(
        &study,
        format!(
            "name = \"prior\"\ntarget = \"target.toml\"\nspace = \"space.toml\"\nmodel = \"tiny\"\n\
             budget = \"90s\"\nmax_trials = 4\n[workload]\nbody = \"{}\"\nusers = 4\nduration = \"1s\"\n\
             warmup = \"1s\"\nconfirm_duration = \"1s\"\nconfirm_rounds = 2\n[constraints]\np99_ms = 40\n",
            body.display()
        ),
    )
    .unwrap();
    let results = deployment.dir.path().join("results");
    let output = servetune(&[
        "tune",
        "--study",
        study.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
        "--prior",
        prior.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let predicted_from = stderr
        .lines()
        .find(|l| l.contains("configs predicted from"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        predicted_from.contains("gpt2"),
        "the study's 4 users: learnt from the landscapes recorded at 4 users: {predicted_from}"
    );
    assert_eq!(deployment.config_bytes(), before, "the config is back as found");
    let journal = std::fs::read_to_string(results.join("prior/trials.jsonl")).unwrap();
    let screened: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "screen")
        .collect();
    assert!(
        screened.len() >= 3,
        "baseline, defaults and a predicted point: {journal}"
    );
}

#[test]
fn a_prior_of_another_model_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let prior = dir.path().join("prior.json");
    std::fs::write(
        &prior,
        r#"{"model": "resnet50", "features": {"latency_ms": 90, "worker_mb": 400, "frontend_mb": 200}}"#,
    )
    .unwrap();
    let study = common::repo_root().join("examples/deployment/study.toml");
    let config = common::repo_root().join("examples/deployment/config.properties");
    let before = std::fs::read(&config).unwrap();
    let output = servetune(&[
        "tune",
        "--study",
        study.to_str().unwrap(),
        "--results-dir",
        dir.path().join("results").to_str().unwrap(),
        "--prior",
        prior.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("prior.json") && stderr.contains("predicts model resnet50, the study tunes tiny"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&config).unwrap(), before);
    assert!(!dir.path().join("results").exists(), "nothing written");
}
