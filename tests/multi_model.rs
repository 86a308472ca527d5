//! A study of two models on one real TorchServe 0.12.0 (`tiny` and `echo`):
//! the space's model fields are searched per model, the synthetic load is
//! shared by the mix, each model is judged against its own SLO, and every
//! tier exports each model's `model-config-<model>.yaml`; the config ends
//! byte-identical.

mod common;

use std::path::Path;

use serde_json::Value;

const SPACE: &str = r#"
[[parameter]]
name = "batch_size"
kind = "pow2"
min = 1
max = 4
default = 1
target = "models.{model}.batchSize"
apply = "hot"

[[parameter]]
name = "max_batch_delay"
kind = "int"
values = [5, 100]
default = 100
target = "models.{model}.maxBatchDelay"
apply = "hot"
when = "batch_size > 1"

[[parameter]]
name = "workers"
kind = "int"
min = 1
max = 2
default = 1
target = ["models.{model}.minWorkers", "models.{model}.maxWorkers"]
apply = "hot"
"#;

/// A two-model study file with `echo_limits` as echo's own constraints.
fn write_study(dir: &Path, name: &str, max_trials: u32, echo_limits: &str) -> std::path::PathBuf {
    let bodies = dir.join("bodies");
    if !bodies.exists() {
        std::fs::create_dir_all(bodies.join("echo")).unwrap();
        std::fs::write(bodies.join("echo/hello.txt"), b"hello").unwrap();
        std::os::unix::fs::symlink(
            common::repo_root().join("examples/deployment/bodies/tiny"),
            bodies.join("tiny"),
        )
        .unwrap();
        std::fs::write(dir.join("space.toml"), SPACE).unwrap();
    }
    let study = dir.join(format!("{name}.toml"));
    std::fs::write(
        &study,
        format!(
            "name = \"{name}\"\ntarget = \"target.toml\"\nspace = \"space.toml\"\nmodels = [\"tiny\", \"echo\"]\n\
             budget = \"100s\"\nmax_trials = {max_trials}\n\
             [workload]\nbody_dir = \"bodies\"\nusers = 4\nmix = {{ tiny = 3, echo = 1 }}\n\
             duration = \"2s\"\nwarmup = \"1s\"\nsteady = false\nconfirm_duration = \"2s\"\nconfirm_top = 1\n\
             confirm_rounds = 2\n[constraints]\np99_ms = 3000.0\n[constraints.echo]\n{echo_limits}\n"
        ),
    )
    .unwrap();
    study
}

/// The measured trials of a study's journal.
fn measured(results: &Path, name: &str) -> Vec<Value> {
    let journal = std::fs::read_to_string(results.join(name).join("trials.jsonl")).unwrap();
    let entries: Vec<Value> = journal
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|e: &Value| e["figures"].is_object())
        .collect();
    assert!(
        entries.len() >= 3,
        "baseline, defaults and a candidate at least: {entries:?}"
    );
    entries
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_two_model_study_shares_the_load_judges_each_model_and_exports_both() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::serving_models(
        &provisioned,
        &["tiny", "echo"],
        "[environment]\nOMP_NUM_THREADS = \"1\"",
    );
    let original = deployment.config_bytes();
    let dir = deployment.dir.path();
    let results = dir.join("results");

    // Reachable limits: the study recommends, per model.
    common::tune(&write_study(dir, "two", 5, "p99_ms = 2500.0"), &results);
    let entries = measured(&results, "two");
    for entry in &entries {
        let models = &entry["models"];
        let (tiny, echo) = (&models["tiny"], &models["echo"]);
        let (tiny_n, echo_n) = (tiny["requests"].as_f64().unwrap(), echo["requests"].as_f64().unwrap());
        assert!(echo_n > 0.0, "both models measured: {models}");
        let share = tiny_n / (tiny_n + echo_n);
        assert!(
            (0.6..0.9).contains(&share),
            "tiny's share {share:.2} follows the mix's 0.75: {models}"
        );
        let echo_met = echo["p99_ms"].as_f64().unwrap() <= 2500.0;
        assert_eq!(
            entry["feasible"].as_bool().unwrap(),
            echo_met
                && entry["figures"]["p99_ms"].as_f64().unwrap() <= 3000.0
                && entry["figures"]["error_rate"].as_f64().unwrap() <= 0.01,
            "feasible exactly when the server and echo meet their limits: {entry}"
        );
    }
    let searched: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["values"].as_object())
        .flat_map(|values| values.keys().map(String::as_str))
        .collect();
    for name in ["tiny.batch_size", "echo.batch_size", "tiny.workers", "echo.workers"] {
        assert!(searched.contains(&name), "{name} is searched per model: {searched:?}");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("two/report.json")).unwrap()).unwrap();
    let balanced = report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tier"] == "balanced")
        .expect("a balanced recommendation");
    assert!(balanced["models"]["tiny"]["p99_ms"].is_number() && balanced["models"]["echo"]["p99_ms"].is_number());
    let tier = results.join("two/recommended/balanced");
    for model in ["tiny", "echo"] {
        let yaml = std::fs::read_to_string(tier.join(format!("model-config-{model}.yaml"))).unwrap();
        assert!(
            yaml.contains(&format!("model '{model}'")) && yaml.contains("batchSize:"),
            "{yaml}"
        );
    }
    let summary = std::fs::read_to_string(results.join("two/summary.md")).unwrap();
    assert!(
        summary.contains("| tiny |") && summary.contains("| echo |"),
        "per-model tables: {summary}"
    );
    assert!(
        summary.contains("Each model's own limits: echo p99 ≤ 2500.0 ms"),
        "{summary}"
    );
    assert_eq!(report["model_limits"]["echo"]["p99_ms"], 2500.0);
    assert_eq!(deployment.config_bytes(), original, "the config ends as it was found");

    // An SLO echo cannot meet: no trial is feasible, whatever tiny does.
    common::tune(&write_study(dir, "strict", 2, "p99_ms = 0.001"), &results);
    for entry in measured(&results, "strict") {
        assert_eq!(entry["feasible"], false, "echo misses its own SLO: {entry}");
        assert!(entry["figures"]["model_excess"].as_f64().unwrap() > 0.0, "{entry}");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("strict/report.json")).unwrap()).unwrap();
    let changed = report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["keep_current"] != true)
        .count();
    assert_eq!(
        changed, 0,
        "nothing feasible is recommended: {}",
        report["recommendations"]
    );
    assert_eq!(deployment.config_bytes(), original);
}
