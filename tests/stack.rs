//! The TensorZero gateway in front of a real TorchServe serving ResNet-50,
//! BERT-base and GPT-2 small (the example stack's models): each answers on
//! its plain route and on its OpenAI-style route, direct and through a real
//! gateway started by servetune; a request on the wrong route is refused;
//! `servetune compare --json` reports every field and writes its files;
//! a compare stopped by SIGTERM stops the TorchServe and the gateway it
//! started.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{json, Value};
use servetune::compare::{answer_problem, gateway_spec};
use servetune::server::gateway::Gateway;
use servetune::server::stack::StackSpec;

const MODELS: [&str; 3] = ["resnet50", "bert", "gpt2"];

/// One TorchServe with text models at a time: two on two cores would time each other out.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The example stack's files, pointed at this deployment's TorchServe.
fn write_stack(deployment: &common::Deployment) -> PathBuf {
    let example = common::repo_root().join("examples/stack");
    let gateway = std::fs::read_to_string(example.join("tensorzero.toml"))
        .unwrap()
        .replace("127.0.0.1:8100", &format!("127.0.0.1:{}", deployment.ports.inference));
    let dir = deployment.dir.path();
    std::fs::write(dir.join("tensorzero.toml"), gateway).unwrap();
    let stack = std::fs::read_to_string(example.join("stack.toml"))
        .unwrap()
        .replace("\"bodies/", &format!("\"{}/bodies/", example.display()));
    let path = dir.join("stack.toml");
    std::fs::write(&path, stack).unwrap();
    path
}

async fn post(url: &str, key: Option<&str>, body: Vec<u8>, content_type: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Content-Type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The JPEG inside the example chat body's data URI.
fn example_jpeg() -> Vec<u8> {
    let body: Value = serde_json::from_slice(
        &std::fs::read(common::repo_root().join("examples/stack/bodies/resnet50-chat.json")).unwrap(),
    )
    .unwrap();
    let url = body["messages"][0]["content"][1]["image_url"]["url"].as_str().unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(url.split_once(',').unwrap().1)
        .unwrap()
}

fn servetune(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(args)
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
fn three_models_answer_direct_and_through_the_gateway_and_compare_reports_them() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::serving_models(&provisioned, &MODELS, "ready_timeout = \"300s\"");
    let stack_path = write_stack(&deployment);
    let stack = StackSpec::load(&stack_path).unwrap();
    let server = deployment.server();
    common::runtime().block_on(async {
        server.start().await.unwrap();
        let api = server.api().unwrap();
        let key = api.inference_key().unwrap().expect("token authorization is on");
        let inference = api.endpoints().inference.base_url();
        stack.check_gateway_routes(&stack.models, &inference).unwrap();
        let gateway = Gateway::start(&gateway_spec(&stack, &server).unwrap()).await.unwrap();

        // The OpenAI-style route, direct (with TorchServe's key) and through
        // the gateway (which sends the key itself), with the same body.
        for model in &stack.models {
            let body = std::fs::read(&model.body).unwrap();
            let sent: Value = serde_json::from_slice(&body).unwrap();
            let direct = format!("{inference}{}", model.direct_path());
            let through = format!("{}/{}", gateway.base_url, model.route);
            for (url, key) in [(direct, Some(key.as_str())), (through, None)] {
                let (status, answer) = post(&url, key, body.clone(), "application/json").await;
                assert_eq!(status, 200, "{url}: {answer}");
                assert_eq!(answer_problem(&model.route, &sent, &answer), None, "{url}: {answer}");
            }
        }
        // Several inputs: one embedding each, in order, through the gateway.
        let two = json!({"model": "tensorzero::embedding_model_name::bert", "input": ["one", "two words"]});
        let (status, answer) = post(
            &format!("{}/embeddings", gateway.base_url),
            None,
            two.to_string().into_bytes(),
            "application/json",
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer_problem("embeddings", &two, &answer), None, "{answer}");

        // The plain routes.
        let plain = |model: &str| format!("{inference}/predictions/{model}");
        let (status, classes) = post(&plain("resnet50"), Some(&key), example_jpeg(), "image/jpeg").await;
        assert_eq!((status, classes.as_array().map(Vec::len)), (200, Some(5)), "{classes}");
        let (status, embedding) = post(&plain("bert"), Some(&key), b"a sentence".to_vec(), "text/plain").await;
        assert_eq!(status, 200, "{embedding}");
        assert_eq!(
            embedding["embedding"].as_array().map(Vec::len),
            Some(768),
            "BERT-base width"
        );
        let (status, generated) = post(&plain("gpt2"), Some(&key), b"Once upon".to_vec(), "text/plain").await;
        assert!(status == 200 && generated["generated"].is_string(), "{generated}");

        // A route the model does not answer: refused, and said why.
        let (status, refused) = post(
            &format!("{inference}/predictions/gpt2/1.0/v1/embeddings"),
            Some(&key),
            two.to_string().into_bytes(),
            "application/json",
        )
        .await;
        assert_eq!(status, 400, "{refused}");
        assert!(refused.to_string().contains("not embeddings"), "{refused}");
        gateway.stop().await;
    });

    // compare on the running server (it leaves a server it did not start running).
    let results = deployment.dir.path().join("results");
    let output = servetune(
        &[
            "compare",
            "--stack",
            stack_path.to_str().unwrap(),
            "--models",
            "bert",
            "--rounds",
            "2",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--json",
            "--results-dir",
            results.to_str().unwrap(),
        ],
        deployment.dir.path(),
    );
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let model = &report["models"][0];
    assert_eq!(model["model"], "bert");
    for side in ["direct", "gateway"] {
        for field in ["p50_ms", "p99_ms", "throughput_rps", "memory_mb"] {
            let value = model[side][field].as_f64();
            assert!(value.is_some_and(|v| v > 0.0), "{side}.{field}: {model}");
        }
    }
    assert!(
        model["gateway"]["memory_mb"].as_f64() > model["direct"]["memory_mb"].as_f64(),
        "the gateway's memory is counted in its column: {model}"
    );
    assert_eq!(
        model["rounds"].as_array().map(Vec::len),
        Some(4),
        "two rounds, both paths"
    );
    assert!(report["machine"]["logical_cpus"].as_i64().is_some_and(|n| n > 0));
    let saved = std::fs::read_dir(results.join("compare"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for file in ["compare.md", "compare.csv", "compare.json", "compare.svg"] {
        assert!(saved.join(file).metadata().is_ok_and(|m| m.len() > 0), "{file} written");
    }
    assert!(
        common::runtime().block_on(server.is_ready()),
        "compare leaves a server it did not start running"
    );
}

/// The gateway processes running on `config`.
fn gateways_on(config: &Path) -> Vec<i32> {
    let wanted = config.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let text = String::from_utf8_lossy(&cmdline);
                text.contains("servetune-gateway-ready") && text.contains(&wanted)
            })
        })
        .collect()
}

#[test]
#[cfg_attr(
    gateway_missing,
    ignore = "the TensorZero gateway or the text models are not provisioned: run `make test`"
)]
fn a_compare_stopped_by_sigterm_stops_what_it_started() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::serving_models(&provisioned, &["bert"], "ready_timeout = \"300s\"");
    let stack_path = write_stack(&deployment);
    let gateway_config = deployment.dir.path().join("tensorzero.toml");
    let mut compare = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["compare", "--stack", stack_path.to_str().unwrap(), "--models", "bert"])
        .args(["--rounds", "3", "--duration", "5s"])
        .current_dir(deployment.dir.path())
        .env("SERVETUNE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The gateway starts once TorchServe is ready: then the measurement is under way.
    let started = std::time::Instant::now();
    while gateways_on(&gateway_config).is_empty() {
        assert!(started.elapsed().as_secs() < 300, "the gateway never started");
        assert!(
            compare.try_wait().unwrap().is_none(),
            "compare ended before its gateway started"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(deployment.jvm().is_some(), "compare started TorchServe");
    std::thread::sleep(std::time::Duration::from_secs(3));
    servetune::server::process::signal(compare.id() as i32, libc::SIGTERM);
    let status = compare.wait().unwrap();
    assert!(!status.success(), "an interrupted compare does not claim success");
    assert!(deployment.jvm().is_none(), "the TorchServe it started is stopped");
    assert!(
        gateways_on(&gateway_config).is_empty(),
        "the gateway it started is stopped"
    );
}
