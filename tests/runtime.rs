//! The runtime as a thing TorchServe serves and a study tunes: the example
//! tiny model's TorchScript and ONNX archives (built by the setup script
//! from the eager model's weights) register on a real TorchServe and give
//! the eager model's answers; a study over `runtime = eager | onnx` loads
//! the ONNX archive under the model's own name, measures it, and leaves
//! the config as it was.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

async fn classify(url: &str, key: &str) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .body(b"a few pixels".to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

fn require_archives(store: &Path, archives: &[&str]) {
    for archive in archives {
        assert!(
            store.join(archive).exists(),
            "{archive} is missing: run scripts/setup-torchserve.sh (it exports the runtimes)"
        );
    }
}

#[test]
#[cfg_attr(
    torchserve_missing,
    ignore = "TorchServe is not provisioned: run `make test` or scripts/setup-torchserve.sh"
)]
fn torchscript_and_onnx_archives_register_and_answer_as_the_eager_model_does() {
    let provisioned = require_torchserve!();
    require_archives(&provisioned.model_store, &["tiny-ts.mar", "tiny-onnx.mar"]);
    let deployment = common::Deployment::serving_models(&provisioned, &["tiny", "tiny-ts", "tiny-onnx"], "");
    let server = deployment.server();
    common::runtime().block_on(async {
        server.start().await.unwrap();
        let api = server.api().unwrap();
        let key = api.inference_key().unwrap().expect("token authorization is on");
        let inference = api.endpoints().inference.base_url();
        let registered = api.list_models().await.unwrap();
        for model in ["tiny", "tiny-ts", "tiny-onnx"] {
            assert!(registered.iter().any(|m| m == model), "{model} in {registered:?}");
        }
        let eager = classify(&format!("{inference}/predictions/tiny"), &key).await;
        for exported in ["tiny-ts", "tiny-onnx"] {
            let answer = classify(&format!("{inference}/predictions/{exported}"), &key).await;
            assert_eq!(answer["class"], eager["class"], "{exported}: {answer} vs eager {eager}");
            let (a, b) = (answer["score"].as_f64().unwrap(), eager["score"].as_f64().unwrap());
            assert!(
                (a - b).abs() < 1e-4,
                "{exported}: the same weights give the same score: {a} vs {b}"
            );
        }
        server.stop().await.unwrap();
    });
}

const RUNTIME_SPACE: &str = "[[parameter]]\nname = \"runtime\"\nkind = \"choice\"\nvalues = [\"eager\", \"onnx\"]\n\
                             default = \"eager\"\ntarget = \"runtime\"\napply = \"cold\"\n";

#[test]
#[cfg_attr(
    torchserve_missing,
    ignore = "TorchServe is not provisioned: run `make test` or scripts/setup-torchserve.sh"
)]
fn a_study_over_the_runtime_loads_the_onnx_archive_and_measures_it() {
    let provisioned = require_torchserve!();
    require_archives(&provisioned.model_store, &["tiny-onnx.mar"]);
    let deployment = common::Deployment::serving_models(&provisioned, &["tiny"], "");
    let dir = deployment.dir.path();
    let original = deployment.config_bytes();
    std::fs::write(dir.join("space.toml"), RUNTIME_SPACE).unwrap();
    let bodies = common::repo_root().join("examples/deployment/bodies/tiny");
    std::fs::write(
        dir.join("study.toml"),
        format!(
            "name = \"runtime\"\ntarget = \"target.toml\"\nspace = \"space.toml\"\nmodel = \"tiny\"\n\
             strategy = \"grid\"\n\
             [workload]\nbody = \"{}\"\nusers = 2\nduration = \"2s\"\nwarmup = \"1s\"\nsteady = false\n\
             confirm_duration = \"2s\"\nconfirm_top = 1\nconfirm_rounds = 2\n\
             [constraints]\np99_ms = 5000\n",
            bodies.display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["tune", "--study", "study.toml", "--results-dir", "results"])
        .current_dir(dir)
        .env("SERVETUNE_LOG", "warn")
        .output()
        .expect("the servetune binary runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let journal = std::fs::read_to_string(dir.join("results/runtime/trials.jsonl")).unwrap();
    let trials: Vec<Value> = journal.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let onnx: Vec<&Value> = trials
        .iter()
        .filter(|t| t["values"]["runtime"] == "onnx" && t["figures"].is_object())
        .collect();
    assert!(!onnx.is_empty(), "a trial measured the onnx runtime:\n{journal}");
    assert!(
        onnx.iter().all(|t| t["failure"].is_null()),
        "the onnx archive served: {onnx:?}"
    );
    assert!(
        onnx.iter().any(|t| t["restarted"] == true),
        "the runtime is cold: TorchServe restarted for it: {onnx:?}"
    );
    // TorchServe's own log says which archive it loaded for the model.
    let logs = deployment.work_dir().join("logs");
    let loaded = std::fs::read_dir(&logs)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .any(|text| text.contains("tiny=tiny-onnx.mar"));
    assert!(
        loaded,
        "TorchServe was started with load_models=tiny=tiny-onnx.mar (logs in {})",
        logs.display()
    );
    assert_eq!(deployment.config_bytes(), original, "the config is as it was");
}
