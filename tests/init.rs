//! First contact: `servetune init` in a TorchServe folder, then `servetune
//! tune --budget 1m` with no study file named, against a real TorchServe;
//! init on a running server (token authorization on and off); bad input
//! gets one clear error and writes nothing.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// The tests that start TorchServe run one at a time: the one-minute tune
/// has no room for a baseline slowed by another test's JVM starting.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn servetune_in(dir: &Path, args: &[&str], torchserve: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(args)
        .current_dir(dir)
        .env("SERVETUNE_LOG", "warn")
        .env("SERVETUNE_TORCHSERVE", torchserve)
        .output()
        .expect("the servetune binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The test deployment with its sample requests beside it, as an operator's
/// folder would have them.
fn with_bodies(deployment: &common::Deployment) {
    std::os::unix::fs::symlink(
        common::repo_root().join("examples/deployment/bodies"),
        deployment.dir.path().join("bodies"),
    )
    .unwrap();
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn init_then_a_one_minute_tune_runs_to_a_recommendation() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    with_bodies(&deployment);
    let original = deployment.config_bytes();
    let dir = deployment.dir.path();
    let init = servetune_in(dir, &["init"], &provisioned.torchserve);
    assert!(init.status.success(), "{}", text(&init));
    let said = text(&init);
    assert!(
        said.contains("model: tiny") && said.contains("token authorization: on"),
        "{said}"
    );
    assert!(said.contains("no TorchServe runs on this config now"), "{said}");
    for file in ["target.toml", "study.toml", "space.toml"] {
        assert!(dir.join("servetune").join(file).exists(), "{file} written");
    }
    assert_eq!(deployment.config_bytes(), original, "init changes nothing");

    let tune = servetune_in(dir, &["tune", "--budget", "1m", "--json"], &provisioned.torchserve);
    assert!(tune.status.success(), "{}", text(&tune));
    let report: serde_json::Value = serde_json::from_slice(&tune.stdout).unwrap();
    assert!(
        report["recommendations"].as_array().is_some_and(|r| !r.is_empty()),
        "a recommendation (perhaps: keep the current config): {report}"
    );
    assert_eq!(report["slo_from_baseline"], true, "p99 no worse than the baseline's");
    assert!(
        report["elapsed_s"].as_f64().unwrap() < 75.0,
        "the minute holds: {report}"
    );
    assert_eq!(deployment.config_bytes(), original, "the config is back as it was");
    let left = servetune::server::process::jvms_under(dir);
    assert!(
        left.is_empty(),
        "no TorchServe ran before the tune, none runs after: {left:?}"
    );
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn init_finds_a_running_server_with_token_authorization_on_and_off() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let provisioned = require_torchserve!();
    for token_auth in [true, false] {
        let deployment = common::Deployment::new(&provisioned);
        with_bodies(&deployment);
        if !token_auth {
            let mut config = String::from_utf8(deployment.config_bytes()).unwrap();
            config.push_str("disable_token_authorization=true\n");
            std::fs::write(&deployment.config, config).unwrap();
        }
        common::runtime().block_on(async { deployment.server().start().await.unwrap() });
        let dir = deployment.dir.path();
        // Not the launcher's environment: init must find TorchServe from the running server.
        let init = Command::new(env!("CARGO_BIN_EXE_servetune"))
            .arg("init")
            .current_dir(dir)
            .env_remove("SERVETUNE_TORCHSERVE")
            .output()
            .unwrap();
        let said = text(&init);
        assert!(init.status.success(), "{said}");
        assert!(said.contains("TorchServe runs now"), "{said}");
        assert!(
            said.contains(if token_auth {
                "token authorization: on"
            } else {
                "token authorization: off"
            }),
            "{said}"
        );
        let target = std::fs::read_to_string(dir.join("servetune/target.toml")).unwrap();
        assert!(
            target.contains("work_dir") && target.contains("torchserve = "),
            "{target}"
        );
        let bench = Command::new(env!("CARGO_BIN_EXE_servetune"))
            .args(["bench", "--target", "servetune/target.toml", "--body", "bodies/tiny"])
            .args([
                "--users",
                "2",
                "--duration",
                "2s",
                "--warmup",
                "1s",
                "--fixed-window",
                "--no-save",
                "--json",
            ])
            .current_dir(dir)
            .env_remove("SERVETUNE_TORCHSERVE")
            .output()
            .unwrap();
        assert!(bench.status.success(), "{}", text(&bench));
        let result: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
        assert!(
            result["ok"].as_u64().unwrap() > 0,
            "the target init wrote reaches the server: {result}"
        );
    }
}

#[test]
fn bad_input_gets_one_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let torchserve = Path::new("torchserve");
    let cases: [(&str, &[&str], &str); 4] = [
        ("", &["init"], "--config config.properties: no such file"),
        (
            "load_models=tiny.mar\nmodel_store=/nonexistent/store\n",
            &["init"],
            "/nonexistent/store",
        ),
        ("load_models=tiny.mar\n", &["init", "--model", "big"], "--model big"),
        ("load_models=tiny.mar\n", &["init"], "--body"),
    ];
    for (config, args, expected) in cases {
        let _ = std::fs::remove_file(dir.path().join("config.properties"));
        if !config.is_empty() {
            std::fs::write(dir.path().join("config.properties"), config).unwrap();
            std::fs::create_dir_all(dir.path().join("model-store")).unwrap();
        }
        let output = servetune_in(dir.path(), args, torchserve);
        let said = text(&output);
        assert!(!output.status.success(), "{args:?} on {config:?} must fail");
        assert!(said.contains(expected), "{args:?} on {config:?}: {said}");
        assert!(!dir.path().join("servetune").exists(), "nothing written: {said}");
    }
    let tune = servetune_in(dir.path(), &["tune", "--budget", "1m"], torchserve);
    assert!(!tune.status.success());
    assert!(text(&tune).contains("servetune init"), "{}", text(&tune));
}
