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

/// The example stack's models (echo: no model, the gateway's own cost).
const MODELS: [&str; 4] = ["resnet50", "bert", "gpt2", "echo"];

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
            "--pairs",
            "20",
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

/// Space parameters of the stack tests: a key of tensorzero.toml, a
/// variable of the gateway's environment, a live TorchServe setting.
const GATEWAY_DEBUG: &str = "[[parameter]]\nname = \"gateway_debug\"\nkind = \"bool\"\ndefault = false\n\
                             target = \"gateway.toml.gateway.debug\"\napply = \"hot\"\n";
const GATEWAY_THREADS: &str = "[[parameter]]\nname = \"gateway_worker_threads\"\nkind = \"int\"\n\
                               values = [1, 2]\ndefault = 2\ntarget = \"gateway.env.TOKIO_WORKER_THREADS\"\n\
                               apply = \"hot\"\n";
const BATCH_SIZE: &str = "[[parameter]]\nname = \"batch_size\"\nkind = \"int\"\nvalues = [1, 2]\ndefault = 1\n\
                          target = \"models.{model}.batchSize\"\napply = \"hot\"\n";

/// Runs `tune --json` on a short grid study of BERT through the stack in
/// `dir` (its stack.toml), with `parameters` as the space.
fn tune_stack(dir: &Path, name: &str, parameters: &[&str], limits: &str) -> std::process::Output {
    std::fs::write(dir.join("space.toml"), parameters.concat()).unwrap();
    std::fs::write(
        dir.join("study.toml"),
        format!(
            "name = \"{name}\"\nstack = \"stack.toml\"\nspace = \"space.toml\"\nmodel = \"bert\"\n\
             strategy = \"grid\"\n{limits}\
             [workload]\nusers = 2\nduration = \"2s\"\nwarmup = \"1s\"\nsteady = false\n\
             confirm_duration = \"2s\"\nconfirm_rounds = 2\nconfirm_top = 1\n\
             [constraints]\np99_ms = 5000\n"
        ),
    )
    .unwrap();
    servetune(&["tune", "--study", "study.toml", "--json"], dir)
}

/// The study's journal, as text and as lines.
fn journal_of(dir: &Path, study: &str) -> (String, Vec<Value>) {
    let journal = std::fs::read_to_string(dir.join(format!("results/{study}/trials.jsonl"))).unwrap();
    let trials = journal.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (journal, trials)
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

/// A study of the stack: BERT through the gateway, with a TorchServe
/// setting and two of the gateway's (a variable of its environment and a
/// key of its tensorzero.toml) in one space. Moves that change only the
/// gateway restart only the gateway; every candidate is measured through
/// it; its recommended config is the original with the one key changed;
/// at the end both config files are back as they were and the gateway the
/// study started is stopped.
#[test]
#[cfg_attr(
    gateway_missing,
    ignore = "the TensorZero gateway or the text models are not provisioned: run `make test`"
)]
fn a_tune_of_the_stack_measures_through_the_gateway_and_restores_both_configs() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::serving_models(&provisioned, &["bert"], "ready_timeout = \"300s\"");
    write_stack(&deployment);
    let dir = deployment.dir.path();
    let gateway_config = dir.join("tensorzero.toml");
    let gateway_before = std::fs::read(&gateway_config).unwrap();
    let config_before = deployment.config_bytes();
    let parameters = [GATEWAY_DEBUG, GATEWAY_THREADS, BATCH_SIZE];
    let output = tune_stack(dir, "stack", &parameters, "budget = \"150s\"\nmax_trials = 5\n");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["confirmation_runs"].as_u64() > Some(0), "{report}");

    let (journal, trials) = journal_of(dir, "stack");
    let screened: Vec<&Value> = trials.iter().filter(|t| t["kind"] == "screen").collect();
    assert!(screened.len() >= 4, "a few trials: {journal}");
    for trial in &trials {
        assert!(trial["failure"].is_null(), "every trial measured: {trial}");
        assert!(trial["figures"]["memory_mb"].as_f64() > Some(0.0), "{trial}");
    }
    // Where only the gateway's values change from one trial to the next,
    // only the gateway restarted; the grid starts with such moves.
    let mut gateway_only = 0;
    for pair in trials.windows(2) {
        let (before, after) = (&pair[0]["point"], &pair[1]["point"]);
        if before.is_null() || after.is_null() {
            continue; // the baseline's values read as set or unset, not as levels
        }
        let batch_size = |t: &Value| t["values"]["batch_size"].clone();
        if batch_size(&pair[0]) == batch_size(&pair[1]) && before != after {
            assert_eq!(pair[1]["switch"], "gateway", "{}", pair[1]);
            gateway_only += 1;
        }
    }
    assert!(gateway_only >= 2, "{journal}");
    assert!(
        screened.iter().any(|t| t["values"]["gateway_debug"] == "true"),
        "the config key was searched: {journal}"
    );

    // The recommended gateway config is the original with only the key.
    let original_text = String::from_utf8(gateway_before.clone()).unwrap();
    let recommended = dir.join("results/stack/recommended");
    let tiers: Vec<PathBuf> = std::fs::read_dir(&recommended)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!tiers.is_empty());
    for tier in tiers {
        let text = std::fs::read_to_string(tier.join("tensorzero.toml")).unwrap();
        let without_key = text
            .replacen("debug = true\n", "", 1)
            .replacen("debug = false\n", "", 1);
        assert_eq!(without_key, original_text, "{}", tier.display());
        assert!(tier.join("gateway.environment").is_file());
    }

    // Both files are back, without servetune's backups, and the gateway is gone.
    assert_eq!(std::fs::read(&gateway_config).unwrap(), gateway_before);
    assert_eq!(deployment.config_bytes(), config_before);
    for file in [&gateway_config, &deployment.config] {
        let backup = servetune::config::file::BackupPaths::of(file).original;
        assert!(!backup.exists(), "{} is left", backup.display());
    }
    assert!(
        gateways_on(&gateway_config).is_empty(),
        "the study's gateway is stopped"
    );
    assert!(
        deployment.jvm().is_none(),
        "TorchServe did not run before the study: it does not run after"
    );
}

/// In production a service manager runs the gateway: a study restarts it
/// with the stack's restart_command after each change of its config, finds
/// it at its url (its memory counted), and leaves it running on the
/// original config. The "service" here runs the real gateway behind a fixed
/// port (`tests/fixtures/gateway_service.py`).
#[test]
#[cfg_attr(
    gateway_missing,
    ignore = "the TensorZero gateway or the text models are not provisioned: run `make test`"
)]
fn a_tune_restarts_a_service_gateway_by_its_command_and_leaves_it_on_the_original() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::serving_models(&provisioned, &["bert"], "ready_timeout = \"300s\"");
    // The service's gateway has no key of TorchServe's to send.
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&deployment.config)
        .unwrap();
    std::io::Write::write_all(&mut config, b"disable_token_authorization=true\n").unwrap();
    let stack_path = write_stack(&deployment);
    let dir = deployment.dir.path();
    let gateway_config = dir.join("tensorzero.toml");
    let state = dir.join("gateway-service");
    let port = common::free_port().to_string();
    let python = servetune::server::gateway::GatewaySpec::python_beside(&provisioned.torchserve);
    let fixture = common::repo_root().join("tests/fixtures/gateway_service.py");
    let argv = [
        python.to_str().unwrap(),
        fixture.to_str().unwrap(),
        "restart",
        gateway_config.to_str().unwrap(),
        &port,
        state.to_str().unwrap(),
    ];
    let stack = std::fs::read_to_string(&stack_path).unwrap();
    let stack = stack.replace(
        "[gateway.environment]\n# One tokio worker per core by default; RUST_LOG sets its log level.\nRUST_LOG = \"warn\"\n",
        "",
    );
    let stack = stack.replace(
        "config = \"tensorzero.toml\"\n",
        &format!(
            "config = \"tensorzero.toml\"\nrestart_command = {}\nurl = \"http://127.0.0.1:{port}\"\n",
            serde_json::to_string(&argv).unwrap()
        ),
    );
    std::fs::write(&stack_path, stack).unwrap();
    // The operator's service runs before the study.
    assert!(Command::new(argv[0]).args(&argv[1..]).status().unwrap().success());
    let restarts = || {
        std::fs::read_to_string(state.join("restarts"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let gateway_before = std::fs::read(&gateway_config).unwrap();
    let parameters = [GATEWAY_DEBUG, BATCH_SIZE];
    let output = tune_stack(dir, "service", &parameters, "budget = \"120s\"\nmax_trials = 3\n");
    let said = String::from_utf8_lossy(&output.stderr);
    let service_pid: i32 = std::fs::read_to_string(state.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stopped = scopeguard_kill(service_pid);
    assert!(output.status.success(), "{said}");
    let (journal, trials) = journal_of(dir, "service");
    for trial in &trials {
        assert!(trial["failure"].is_null(), "every trial measured: {trial}");
    }
    assert!(
        trials
            .iter()
            .any(|t| t["switch"] == "gateway" && t["values"]["gateway_debug"] == "true"),
        "a trial on the edited config, reached by restarting the service only: {journal}"
    );
    assert!(
        restarts() >= 3,
        "the service was restarted by its command: {}",
        restarts()
    );
    // It runs again, on the original config, which is back on disk.
    assert_eq!(std::fs::read(&gateway_config).unwrap(), gateway_before);
    assert_eq!(std::fs::read(state.join("loaded")).unwrap(), gateway_before);
    assert!(servetune::server::process::is_alive(service_pid));
    // The wheel's gateway has no health route: a 404 from it says it serves.
    let health = common::runtime()
        .block_on(reqwest::get(format!("http://127.0.0.1:{port}/health")))
        .unwrap();
    assert_eq!(health.status().as_u16(), 404);
    drop(stopped);
}

/// Stops the test's gateway service when dropped (also on a panic).
fn scopeguard_kill(pid: i32) -> impl Drop {
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            servetune::server::process::signal(self.0, libc::SIGTERM);
        }
    }
    Kill(pid)
}
