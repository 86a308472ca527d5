//! A study's original config against a real TorchServe: servetune's backup
//! is a study's original only when the study lock says this study was cut
//! short on this deployment. After an operator's `servetune apply --set`
//! (which leaves a backup and no lock) a study, fresh or resumed, takes
//! the config as it is now as its original, ends on it byte-identical, and
//! leaves the older backup for `servetune restore`; a study killed after
//! such an edit resumes from the original it kept beside its lock, not from
//! the older backup. (A study killed mid-run on an unedited deployment
//! resumes from its backup: `study.rs`, `a_killed_study_resumes_where_it_stopped`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn servetune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(args)
        .env("SERVETUNE_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// A short study of the test deployment (generous SLO: this is about
/// which config the study starts from and ends on).
fn write_study(deployment: &common::Deployment, name: &str) -> PathBuf {
    let space = common::repo_root().join("search-spaces/torchserve-cpu.toml");
    let bodies = common::repo_root().join("examples/deployment/bodies/tiny");
    let path = deployment.dir.path().join("study.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\ntarget = \"target.toml\"\nspace = \"{}\"\nmodel = \"tiny\"\nbudget = \"150s\"\n\
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

/// `servetune apply --set KEY=VALUE` on the deployment's config (file only).
fn apply_set(deployment: &common::Deployment, setting: &str) -> Vec<u8> {
    let output = servetune(&[
        "apply",
        "--config",
        deployment.config.to_str().unwrap(),
        "--set",
        setting,
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    deployment.config_bytes()
}

fn backup(deployment: &common::Deployment) -> Vec<u8> {
    std::fs::read(deployment.dir.path().join(".servetune/config.properties.orig")).expect("servetune's backup is kept")
}

fn tune(args: &[&str], results: &Path) {
    let mut all = vec!["tune", "--results-dir", results.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = servetune(&all);
    assert!(
        output.status.success(),
        "tune {args:?} failed: {}",
        text(&output.stderr)
    );
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn after_an_operators_apply_a_study_starts_from_and_ends_on_the_config_as_it_is() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let original = deployment.config_bytes();
    let study = write_study(&deployment, "after-apply");
    let results = deployment.dir.path().join("results");

    // An operator's edit, no study involved: servetune backs up the file as it was.
    let edited = apply_set(&deployment, "default_response_timeout=150");
    assert_eq!(backup(&deployment), original);

    // A fresh study ends on the edited config, and the older backup stays.
    tune(&["--study", study.to_str().unwrap(), "--max-trials", "2"], &results);
    assert_eq!(
        text(&deployment.config_bytes()),
        text(&edited),
        "the fresh study ends on the config it found"
    );
    assert_eq!(backup(&deployment), original, "restore still offers the older backup");
    let tier = results.join("after-apply/recommended/balanced/tier.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&tier).expect("tier.json exported")).unwrap();
    assert_eq!(manifest["study"], "after-apply");
    assert_eq!(
        manifest["original_sha256"],
        servetune::config::file::digest(&edited),
        "the study's original is the edited config"
    );

    // Another edit, then a resume (as a worker opens): the config as it is now is the original.
    let edited_again = apply_set(&deployment, "default_response_timeout=160");
    tune(&["--resume", "after-apply", "--max-trials", "3"], &results);
    assert_eq!(
        text(&deployment.config_bytes()),
        text(&edited_again),
        "the resumed study ends on the config it found, not on servetune's older backup"
    );
    assert_eq!(backup(&deployment), original);
    assert!(
        !deployment.dir.path().join(".servetune/study.lock").exists(),
        "the study released the deployment"
    );
    common::runtime().block_on(async {
        assert!(
            !deployment.server().is_ready().await,
            "the deployment was stopped before the study: it is left stopped"
        );
    });

    // And `restore` puts back what was there before the operator's apply.
    let output = servetune(&["restore", "--config", deployment.config.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(deployment.config_bytes(), original);
}

fn journal_len(results: &Path, name: &str) -> usize {
    std::fs::read_to_string(results.join(name).join("trials.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_study_killed_after_an_operators_apply_resumes_from_its_own_original() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let original = deployment.config_bytes();
    let study = write_study(&deployment, "killed");
    let results = deployment.dir.path().join("results");
    let edited = apply_set(&deployment, "default_response_timeout=150");

    let mut child = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["tune", "--study", study.to_str().unwrap(), "--results-dir"])
        .arg(&results)
        .env("SERVETUNE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    while journal_len(&results, "killed") < 3 {
        assert!(Instant::now() < deadline, "the study never journaled three trials");
        assert!(child.try_wait().unwrap().is_none(), "the study ended on its own");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap(); // SIGKILL: the lock and a candidate's config stay
    child.wait().unwrap();
    assert!(deployment.dir.path().join(".servetune/study.lock").exists());

    let trials = journal_len(&results, "killed");
    tune(
        &["--resume", "killed", "--max-trials", &(trials + 1).to_string()],
        &results,
    );
    assert_eq!(
        text(&deployment.config_bytes()),
        text(&edited),
        "the resumed study ends on the config it started from, not on the operator's older backup"
    );
    assert_eq!(backup(&deployment), original, "restore still offers the older backup");
    assert!(!deployment.dir.path().join(".servetune/study.lock").exists());
    assert!(!deployment.dir.path().join(".servetune/study.original").exists());
}
