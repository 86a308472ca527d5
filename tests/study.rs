//! `servetune tune` end to end against a real TorchServe: the journal holds
//! the trials (most moves live, the confirmation in alternating rounds), the
//! recommended configs are exported and start a real TorchServe, the
//! original config is byte-identical afterwards, the budget holds, a study
//! killed mid-run resumes where it stopped, and every other way out (SIGTERM,
//! an export that fails, a journal that cannot be written, a panic) leaves
//! the original config and a ready server on it; a server that was stopped
//! before a study is stopped after it, also after a resume; a trial whose
//! server lost a worker or its JVM is marked and measured again.

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
    write_study_with(deployment, name, budget, "")
}

/// A study of the test deployment; `top` lines go before the tables. The
/// SLO is generous: these tests are about the loop's mechanics, on two cores
/// shared with other tests, not about how fast TorchServe is.
fn write_study_with(deployment: &common::Deployment, name: &str, budget: &str, top: &str) -> PathBuf {
    let space = common::repo_root().join("search-spaces/torchserve-cpu.toml");
    let bodies = common::repo_root().join("examples/deployment/bodies/tiny");
    let path = deployment.dir.path().join("study.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\ntarget = \"target.toml\"\nspace = \"{}\"\nmodel = \"tiny\"\nbudget = \"{budget}\"\n{top}\n\
             [workload]\nbody = \"{}\"\nusers = 8\nduration = \"2s\"\nwarmup = \"1s\"\nmax_window = \"4s\"\n\
             confirm_duration = \"2s\"\nconfirm_top = 1\nconfirm_rounds = 2\n\
             [constraints]\np99_ms = 2000.0\n",
            space.display(),
            bodies.display()
        ),
    )
    .unwrap();
    path
}

fn tune(study: &Path, results: &Path) -> Command {
    let mut command = servetune();
    command.args([
        "tune",
        "--study",
        study.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ]);
    command
}

/// The deployment's config is byte-identical to `original` and its server
/// is ready on the original settings.
fn assert_restored(deployment: &common::Deployment, original: &[u8]) {
    assert_eq!(
        deployment.config_bytes(),
        original,
        "the original config.properties is byte-identical"
    );
    common::runtime().block_on(async {
        let server = deployment.server();
        assert!(server.is_ready().await, "the server is ready after the study");
        let tiny = server.api().unwrap().describe_model("tiny").await.unwrap();
        assert_eq!(
            (tiny.batch_size, tiny.min_workers),
            (1, 1),
            "the server runs the original settings"
        );
    });
}

/// Starts the deployment's TorchServe, as production runs it, before a study.
fn start_server(deployment: &common::Deployment) {
    common::runtime()
        .block_on(deployment.server().start())
        .expect("the test deployment starts");
}

/// Nothing of TorchServe runs for the deployment: no JVM under its folder
/// (its workers go with it), and its ports are free.
fn assert_stopped(deployment: &common::Deployment, when: &str) {
    let jvms = servetune::server::process::jvms_under(deployment.dir.path());
    assert!(jvms.is_empty(), "{when}: TorchServe JVMs left running: {jvms:?}");
    let p = &deployment.ports;
    for port in [p.inference, p.management, p.metrics] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "{when}: port {port} is still bound"
        );
    }
}

fn journal(results: &Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(results.join(name).join("trials.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn tune_exports_recommendations_that_start_and_leaves_the_config_as_it_was() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let original = deployment.config_bytes();
    let study = write_study(&deployment, "e2e", "200s");
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
    assert!(took < Duration::from_secs(200 + 25), "took {took:?} on a 200 s budget");
    let entries = journal(&results, "e2e");
    assert!(entries.len() >= 4, "baseline, defaults and more: {}", entries.len());
    assert_eq!(entries[0]["kind"], "baseline");
    let moves: Vec<&str> = entries[1..].iter().filter_map(|e| e["switch"].as_str()).collect();
    let live = moves.iter().filter(|m| matches!(**m, "register" | "scale")).count();
    assert!(live >= 2, "live changes instead of restarts: {moves:?}");
    assert_eq!(
        entries[1]["switch"], "scale",
        "the defaults differ from the test config only in workers: a live move"
    );
    let confirmations: Vec<&serde_json::Value> = entries.iter().filter(|e| e["kind"] == "confirm").collect();
    assert!(
        confirmations.iter().any(|e| e["round"] == 2) && confirmations.iter().any(|e| e["point"].is_null()),
        "the confirmation ran two rounds, the baseline among its candidates: {confirmations:?}; stop {}, costs {}, \
         no recommendation: {}",
        report["stop"],
        report["costs"],
        report["no_recommendation"]
    );
    assert!(
        entries
            .iter()
            .all(|e| e["failure"].is_string() || e["latency_histogram"].is_string()),
        "each measured trial keeps its latencies for merging"
    );
    assert!(
        entries.iter().enumerate().all(|(i, e)| e["number"] == i),
        "numbered in order"
    );
    assert!(entries
        .iter()
        .any(|e| e["kind"] == "screen" && e["figures"]["throughput_rps"].as_f64().unwrap_or(0.0) > 10.0));
    assert!(report["baseline"]["throughput_rps"].as_f64().unwrap() > 10.0);

    // The config is back, byte for byte, and the server, stopped before
    // the study, is stopped again.
    assert_eq!(
        deployment.config_bytes(),
        original,
        "the original config.properties is byte-identical"
    );
    assert_stopped(&deployment, "after a study of a stopped deployment");

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
    assert!(
        balanced.join("model-config.yaml").exists(),
        "a balanced recommendation; summary:\n{}\njournal:\n{}",
        std::fs::read_to_string(dir.join("summary.md")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("trials.csv")).unwrap_or_default()
    );
    let recommended = std::fs::read(balanced.join("config.properties")).expect("a balanced recommendation");
    let recommendations = report["recommendations"].as_array().unwrap();
    assert!(recommendations.iter().any(|r| r["tier"] == "balanced"));
    assert!(
        recommendations
            .iter()
            .all(|r| r["confirmed"] == true && r["runs"].as_u64() >= Some(2)),
        "only confirmed candidates are recommended: {recommendations:?}"
    );
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("Not searched") && summary.contains("job_queue_size"),
        "{summary}"
    );
    assert!(
        summary.contains("log level") && summary.contains("threads per worker"),
        "{summary}"
    );

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
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_server_found_at_the_defaults_is_measured_there_once() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let original = deployment.config_bytes();
    // The batch size alone: the deployment runs TorchServe's default, 1.
    let space = deployment.dir.path().join("batch-only.toml");
    std::fs::write(
        &space,
        "[[parameter]]\nname = \"batch_size\"\nkind = \"pow2\"\nmin = 1\nmax = 2\ndefault = 1\n\
         target = \"models.{model}.batchSize\"\napply = \"hot\"\n",
    )
    .unwrap();
    let study = write_study_with(&deployment, "found", "300s", "max_trials = 2");
    let text = std::fs::read_to_string(&study).unwrap();
    let everything = common::repo_root().join("search-spaces/torchserve-cpu.toml");
    std::fs::write(
        &study,
        text.replace(&everything.display().to_string(), &space.display().to_string()),
    )
    .unwrap();
    let results = deployment.dir.path().join("results");
    start_server(&deployment);
    let output = tune(&study, &results).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let entries = journal(&results, "found");
    let screened: Vec<&serde_json::Value> = entries.iter().filter(|e| e["kind"] == "screen").collect();
    assert_eq!(screened.len(), 2, "{entries:#?}");
    let at_defaults = screened[0];
    assert_eq!(at_defaults["point"], serde_json::json!([0]), "{at_defaults:#}");
    assert_eq!(
        at_defaults["window_of"], entries[0]["number"],
        "the baseline's window: {at_defaults:#}"
    );
    assert_eq!(at_defaults["figures"], entries[0]["figures"]);
    assert_eq!(
        (at_defaults["duration_s"].as_f64(), at_defaults["switch"].as_str()),
        (Some(0.0), Some("none"))
    );
    assert_eq!(screened[1]["point"], serde_json::json!([1]));
    assert!(screened[1]["window_of"].is_null() && screened[1]["duration_s"].as_f64() > Some(0.0));
    let summary = std::fs::read_to_string(results.join("found").join("summary.md")).unwrap();
    assert!(
        summary.contains("screened on the baseline's window (trial 0)"),
        "{summary}"
    );
    assert_restored(&deployment, &original);
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
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

    // Until it is resumed or restored, the deployment says who holds it.
    let refused = servetune()
        .args([
            "apply",
            "--config",
            deployment.config.to_str().unwrap(),
            "--set",
            "job_queue_size=200",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "apply on a deployment an interrupted study holds"
    );
    assert!(
        said.contains("interrupted study 'resumable'") && said.contains("tune --resume resumable"),
        "{said}"
    );

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
    assert!(
        !deployment.dir.path().join(".servetune/study.lock").exists(),
        "the resumed study released the deployment"
    );
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn sigterm_stops_the_study_and_restores_the_server() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    start_server(&deployment);
    let original = deployment.config_bytes();
    let study = write_study(&deployment, "terminated", "300s");
    let results = deployment.dir.path().join("results");
    let mut child = tune(&study, &results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    while journal(&results, "terminated").len() < 3 {
        assert!(Instant::now() < deadline, "the study never journaled three trials");
        assert!(child.try_wait().unwrap().is_none(), "the study ended on its own");
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM is a normal way to stop: {status:?}");
    assert_restored(&deployment, &original);
    assert!(
        results.join("terminated/summary.md").exists(),
        "what there is was exported"
    );
    // Stopped before any confirmation: the report says so and what the
    // screening alone suggests, marked, with its figures.
    let summary = std::fs::read_to_string(results.join("terminated/summary.md")).unwrap();
    assert!(
        summary.contains("## Not confirmed") && summary.contains("did not complete") && summary.contains("req/s"),
        "{summary}"
    );
    let readme = results.join("terminated/recommended/balanced-not-confirmed/README.md");
    assert!(
        std::fs::read_to_string(&readme).unwrap().starts_with("# NOT CONFIRMED"),
        "{}",
        readme.display()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("terminated/report.json")).unwrap()).unwrap();
    assert_eq!(report["not_confirmed"]["confirmed"], false, "{report}");
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_failing_export_still_restores_the_server() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    start_server(&deployment);
    let original = deployment.config_bytes();
    let study = write_study_with(&deployment, "unwritable", "120s", "max_trials = 2");
    let results = deployment.dir.path().join("results");
    // A folder where the summary must go: the export fails mid-way.
    std::fs::create_dir_all(results.join("unwritable/summary.md/blocked")).unwrap();
    let output = tune(&study, &results).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "an export that fails is an error");
    assert!(stderr.contains("summary.md"), "the error names the file: {stderr}");
    assert_restored(&deployment, &original);
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
#[cfg_attr(
    all(not(torchserve_missing), not(feature = "failpoints")),
    ignore = "needs fault injection: cargo test --features failpoints (make test does)"
)]
fn a_panic_or_a_journal_failure_mid_study_restores_the_server() {
    let provisioned = require_torchserve!();
    for (name, fault, expected) in [
        ("panicked", "study::after-trial=2*off->panic", "internal error"),
        ("unjournaled", "journal::append=3*off->return", "injected write failure"),
    ] {
        let deployment = common::Deployment::new(&provisioned);
        start_server(&deployment);
        let original = deployment.config_bytes();
        let study = write_study(&deployment, name, "300s");
        let results = deployment.dir.path().join("results");
        let output = tune(&study, &results).env("FAILPOINTS", fault).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: the fault is an error");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(
            journal(&results, name).len() <= 4,
            "{name}: the study stopped at the fault"
        );
        assert_restored(&deployment, &original);
    }
}

/// A trial whose server lost a process during its window, and the trial
/// that measured its candidate again: the next entry, same point, clean.
fn lost_and_measured_again<'a>(
    entries: &'a [serde_json::Value],
    lost: &str,
) -> (&'a serde_json::Value, &'a serde_json::Value) {
    let at = entries
        .iter()
        .position(|e| e["server_lost"].as_str().is_some_and(|s| s.contains(lost)))
        .unwrap_or_else(|| panic!("a trial is marked for its lost {lost}: {entries:#?}"));
    let again = entries
        .get(at + 1)
        .unwrap_or_else(|| panic!("the trial after the lost one: {entries:#?}"));
    assert_eq!(
        again["point"], entries[at]["point"],
        "the same candidate is measured again"
    );
    assert!(
        again["server_lost"].is_null()
            && again["failure"].is_null()
            && again["figures"]["throughput_rps"].as_f64() > Some(0.0),
        "and measured cleanly: {again}"
    );
    (&entries[at], again)
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
#[cfg_attr(
    all(not(torchserve_missing), not(feature = "failpoints")),
    ignore = "needs fault injection: cargo test --features failpoints (make test does)"
)]
fn a_trial_that_lost_a_worker_or_the_jvm_is_marked_and_measured_again_on_a_live_server() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    start_server(&deployment);
    let original = deployment.config_bytes();
    let study = write_study_with(&deployment, "incidents", "300s", "max_trials = 4");
    let results = deployment.dir.path().join("results");
    // A 2 s pause before each move: the JVM is killed between trials, not
    // mid-move. The study itself SIGKILLs a worker halfway through the
    // fourth measurement and the JVM halfway through the sixth (a timed
    // kill from here would race the window on a slow machine).
    let mut child = tune(&study, &results)
        .env(
            "FAILPOINTS",
            "study::before-move=sleep(2000);study::kill-worker-mid-window=3*off->1*return;\
             study::kill-jvm-mid-window=5*off->1*return",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The JVM dies between trials: the next move must restart it, not fail.
    let deadline = Instant::now() + Duration::from_secs(150);
    while journal(&results, "incidents").len() < 2 {
        assert!(Instant::now() < deadline, "the study never journaled 2 trials");
        std::thread::sleep(Duration::from_millis(100));
    }
    let jvm = deployment.jvm().expect("the study runs TorchServe");
    servetune::server::process::kill_tree(jvm);
    let status = child.wait().unwrap();
    assert!(status.success(), "the study goes on after all three: {status:?}");
    let entries = journal(&results, "incidents");
    let after_kill = &entries[2];
    assert!(
        after_kill["failure"].is_null() && after_kill["figures"]["throughput_rps"].as_f64() > Some(0.0),
        "the trial after the JVM died was measured, not failed: {after_kill}"
    );
    assert!(
        after_kill["incidents"].to_string().contains("not ready"),
        "and it says the server was found down: {after_kill}"
    );
    // A worker killed mid-window: that trial is marked, and measured again.
    let (worker_lost, _) = lost_and_measured_again(&entries, "worker restarted");
    assert!(
        worker_lost["incidents"].to_string().contains("worker restarted"),
        "{worker_lost}"
    );
    // The JVM killed mid-window: marked, and the server restarted before
    // the candidate is measured again.
    let (_, again) = lost_and_measured_again(&entries, "JVM");
    assert_eq!(
        again["switch"], "restart",
        "the dead server was restarted first: {again}"
    );
    assert!(again["incidents"].to_string().contains("not ready"), "{again}");
    let counted = entries
        .iter()
        .filter(|e| e["kind"] == "screen" && e["server_lost"].is_null())
        .count();
    assert_eq!(counted, 4, "lost trials do not count against max_trials: {entries:#?}");
    assert_restored(&deployment, &original);
}

/// Stopped before, stopped after: a study of a deployment whose TorchServe
/// does not run starts it, and stops it again when it ends; so does a study
/// killed mid-run and resumed (the killed run left the server running: the
/// lock remembers how the first run found it).
#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_stopped_deployment_is_left_stopped_by_a_study_and_by_a_resumed_one() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let original = deployment.config_bytes();
    let results = deployment.dir.path().join("results");
    let study = write_study_with(&deployment, "fresh", "120s", "max_trials = 1");
    let output = tune(&study, &results).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(deployment.config_bytes(), original, "byte-identical after the study");
    assert_stopped(&deployment, "after a study of a stopped deployment");

    // A budget the resumed study cannot run out of on a loaded machine
    // (it gets what the cut one left, less what confirmation keeps back):
    // --max-trials ends it.
    let study = write_study(&deployment, "cut", "900s");
    let mut child = tune(&study, &results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    while journal(&results, "cut").len() < 2 {
        assert!(Instant::now() < deadline, "the study never journaled two trials");
        assert!(child.try_wait().unwrap().is_none(), "the study ended on its own");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();
    assert!(deployment.jvm().is_some(), "the killed study left its server running");
    let lock = std::fs::read_to_string(deployment.dir.path().join(".servetune/study.lock")).unwrap();
    assert!(lock.contains("\"server_was_running\":false"), "{lock}");
    let before = journal(&results, "cut").len();
    // One screening trial more than the journal holds: the resumed study
    // measures at least that one, whether or not its confirmation finds
    // anything to confirm (the baseline may have stayed the best) or the
    // time for it on a loaded machine.
    let output = servetune()
        .args(["tune", "--resume", "cut", "--results-dir", results.to_str().unwrap()])
        .args(["--max-trials", &(before + 1).to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        journal(&results, "cut").len() > before,
        "the resumed study ran trials: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        deployment.config_bytes(),
        original,
        "byte-identical after the resumed study"
    );
    assert_stopped(&deployment, "after a resumed study of a stopped deployment");
    assert!(
        !deployment.dir.path().join(".servetune/study.lock").exists(),
        "the resumed study released the deployment"
    );
}
