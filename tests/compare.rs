//! `servetune compare` measures the gateway's overhead apart from any
//! model's noise: a short real run on the echo model (a real TorchServe and
//! a real gateway, both started by compare) reports the low-load paired
//! differences with their intervals, CPU per request of each process tree,
//! and the paired throughput and memory intervals — every new field
//! present and finite — measures the model's ONNX archive (`echo-onnx`, an
//! identity graph run by onnxruntime) as a third column, and says in its
//! tables which differences reached the goals of precision.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A stack of the echo model in front of `deployment`'s TorchServe.
fn write_echo_stack(deployment: &common::Deployment) -> PathBuf {
    let dir = deployment.dir.path();
    let gateway = format!(
        "[gateway]\nobservability.enabled = false\n\n[models.echo]\nrouting = [\"torchserve\"]\n\n\
         [models.echo.providers.torchserve]\ntype = \"openai\"\nmodel_name = \"echo\"\n\
         api_base = \"http://127.0.0.1:{}/predictions/echo/1.0/v1/\"\n\
         api_key_location = \"env::TORCHSERVE_INFERENCE_KEY\"\n",
        deployment.ports.inference
    );
    std::fs::write(dir.join("tensorzero.toml"), gateway).unwrap();
    let body = common::repo_root().join("examples/stack/bodies/echo-chat.json");
    let stack = format!(
        "torchserve = \"target.toml\"\n\n[gateway]\nconfig = \"tensorzero.toml\"\n\n\
         [gateway.environment]\nRUST_LOG = \"warn\"\n\n\
         [[models]]\nname = \"echo\"\nroute = \"chat/completions\"\nbody = \"{}\"\np99_ms = 300\n",
        body.display()
    );
    let path = dir.join("stack.toml");
    std::fs::write(&path, stack).unwrap();
    path
}

/// `{estimate, low, high}`, all finite and ordered.
fn interval(value: &Value, what: &str) -> (f64, f64, f64) {
    let field = |name: &str| {
        value[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}.{name} is a number: {value}"))
    };
    let (estimate, low, high) = (field("estimate"), field("low"), field("high"));
    assert!(
        estimate.is_finite() && low.is_finite() && high.is_finite(),
        "{what}: {value}"
    );
    assert!(low <= estimate && estimate <= high, "{what}: {value}");
    (estimate, low, high)
}

fn run_compare(stack: &Path, results: &Path, dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["compare", "--stack", stack.to_str().unwrap()])
        .args([
            "--rounds",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--pairs",
            "60",
            "--json",
        ])
        .args(["--results-dir", results.to_str().unwrap()])
        .current_dir(dir)
        .env("SERVETUNE_LOG", "warn")
        .output()
        .expect("the servetune binary runs")
}

#[test]
#[cfg_attr(
    gateway_missing,
    ignore = "the TensorZero gateway or the text models are not provisioned: run `make test`"
)]
fn compare_reports_the_overhead_at_low_load_and_cpu_per_request_with_intervals() {
    let provisioned = require_torchserve!();
    assert!(
        ["echo.mar", "echo-onnx.mar"]
            .iter()
            .all(|archive| provisioned.model_store.join(archive).exists()),
        "echo.mar or echo-onnx.mar is missing: run scripts/setup-torchserve.sh"
    );
    let deployment = common::Deployment::serving_models(&provisioned, &["echo", "echo-onnx"], "");
    let stack = write_echo_stack(&deployment);
    let results = deployment.dir.path().join("results");
    let output = run_compare(&stack, &results, deployment.dir.path());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let model = &report["models"][0];
    assert_eq!(model["model"], "echo");
    assert_eq!(report["pairs"], 60);

    // Every figure the published tables had is still there.
    for side in ["direct", "gateway"] {
        for field in ["p50_ms", "p99_ms", "throughput_rps", "memory_mb"] {
            assert!(
                model[side][field].as_f64().is_some_and(|v| v > 0.0),
                "{side}.{field}: {model}"
            );
        }
    }
    // The low-load pairs: every pair measured, the paired median and p99.
    let difference = &model["difference"];
    assert_eq!(difference["low_load_pairs"], 60, "{difference}");
    interval(&difference["low_load_p50_ms"], "difference.low_load_p50_ms");
    let (p99, _, _) = interval(&difference["low_load_p99_ms"], "difference.low_load_p99_ms");
    let (p50, _, _) = interval(&difference["low_load_p50_ms"], "difference.low_load_p50_ms");
    assert!(
        p99 >= p50,
        "the p99 of the differences is not below their median: {difference}"
    );
    for side in ["direct", "gateway"] {
        let low_load = model[side]["low_load_p50_ms"].as_f64();
        assert!(low_load.is_some_and(|v| v > 0.0), "{side}.low_load_p50_ms: {model}");
    }
    interval(&difference["throughput_pct_ci95"], "difference.throughput_pct_ci95");
    interval(&difference["memory_mb_ci95"], "difference.memory_mb_ci95");

    // CPU per request: TorchServe spends some on every request, on both
    // paths; through the gateway the path spends at least the gateway's.
    let (direct_cpu, _, _) = interval(&model["direct"]["cpu_ms_per_request"], "direct.cpu_ms_per_request");
    let (gateway_cpu, _, _) = interval(&model["gateway"]["cpu_ms_per_request"], "gateway.cpu_ms_per_request");
    let (gateway_alone, _, _) = interval(
        &model["gateway"]["gateway_cpu_ms_per_request"],
        "gateway.gateway_cpu_ms_per_request",
    );
    assert!(direct_cpu > 0.0 && gateway_cpu > 0.0, "{model}");
    assert!(gateway_alone >= 0.0 && gateway_alone <= gateway_cpu, "{model}");
    assert!(
        model["direct"]["gateway_cpu_ms_per_request"].is_null(),
        "the direct path has no gateway: {model}"
    );
    assert!(
        model["rounds"][0]["cpu_per_request"]["requests"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "each round says how many requests its CPU was divided by: {model}"
    );
    // TorchServe serves echo-onnx: the ONNX Runtime column, with the fields of direct.
    let onnx = &model["onnxruntime"];
    for field in ["p50_ms", "p99_ms", "throughput_rps", "memory_mb"] {
        assert!(
            onnx[field].as_f64().is_some_and(|v| v > 0.0),
            "onnxruntime.{field}: {model}"
        );
    }
    interval(&onnx["cpu_ms_per_request"], "onnxruntime.cpu_ms_per_request");
    let onnx_rounds = model["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == "onnxruntime")
        .count();
    assert_eq!(onnx_rounds, 2, "each round measures the third way too: {model}");
    assert!(report["tf_serving"]
        .as_str()
        .is_some_and(|s| s.contains("not measured")));

    let saved = std::fs::read_dir(results.join("compare"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let tables = std::fs::read_to_string(saved.join("compare.md")).unwrap();
    for section in [
        "Overhead at low load",
        "CPU per request",
        "Runtimes",
        "Precision of the differences",
        "smallest throughput difference this run could detect",
    ] {
        assert!(tables.contains(section), "compare.md has '{section}':\n{tables}");
    }
    assert!(
        common::runtime().block_on(async { !deployment.server().is_ready().await }),
        "compare stops the TorchServe it started"
    );
}

#[test]
fn too_few_pairs_are_refused_naming_the_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["compare", "--stack", "no-such-stack.toml", "--pairs", "1"])
        .output()
        .expect("the servetune binary runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("--pairs must be at least 2"), "{said}");
}
