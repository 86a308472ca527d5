//! `servetune apply --from results/<study>/recommended/<tier>/` against a
//! real TorchServe: a tier is deployed the way it was measured (only the
//! keys it changes, its environment and log4j2 file), a hand edit made
//! since the study survives, a tier measured on another deployment is
//! refused unless `--force`, and a tier TorchServe does not come up on is
//! rolled back: the config byte-identical, the target file unchanged, the
//! server running on the old config.
//!
//! The tier folders are written by the study's own code for them
//! (`TierManifest::between`, as the export does), from the test
//! deployment's config.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use servetune::apply::tier::{TierManifest, TierOrigin, TierStates, TIER_FILE};
use servetune::config::{apply_assignments, Assignment, Properties};
use servetune::server::logging;

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

/// `original` with `changes` (`KEY=VALUE`) applied and, with `level`, the
/// log4j2 file of a study in `study_dir` named in `vmargs`.
fn tier_config(original: &[u8], changes: &[&str], level: Option<&str>, study_dir: &Path) -> Vec<u8> {
    let mut props = Properties::parse(original.to_vec()).unwrap();
    let assignments: Vec<Assignment> = changes.iter().map(|c| c.parse().unwrap()).collect();
    apply_assignments(&mut props, &assignments).unwrap();
    if let Some(level) = level {
        let vmargs = logging::vmargs_with(props.get("vmargs"), level, study_dir).unwrap();
        props.set("vmargs", &vmargs);
    }
    props.into_bytes()
}

/// What a tier folder holds, as a study exports it.
struct Tier<'a> {
    measured_config: &'a Path,
    original: &'a [u8],
    config: Vec<u8>,
    environment: BTreeMap<String, String>,
}

/// Writes the tier folder `dir` (`tier.json`, the config, `environment`).
fn write_tier(dir: &Path, tier: &Tier) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let manifest = TierManifest::between(
        &TierOrigin {
            study: "s",
            tier: "balanced",
            model: "tiny",
            measured_config: tier.measured_config,
            gateway: false,
        },
        &TierStates {
            original_config: tier.original,
            original_environment: &BTreeMap::new(),
            tier_config: &tier.config,
            tier_environment: &tier.environment,
        },
    )
    .unwrap();
    std::fs::write(dir.join(TIER_FILE), manifest.to_json()).unwrap();
    std::fs::write(dir.join("config.properties"), &tier.config).unwrap();
    let environment: String = tier.environment.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(dir.join("environment"), environment).unwrap();
    dir.to_path_buf()
}

fn omp_threads_one() -> BTreeMap<String, String> {
    BTreeMap::from([("OMP_NUM_THREADS".to_string(), "1".to_string())])
}

/// The tiny model's batch size on the running server.
fn batch_size(deployment: &common::Deployment) -> u32 {
    common::runtime().block_on(async {
        let server = deployment.server();
        assert!(server.is_ready().await, "the server is ready");
        server.api().unwrap().describe_model("tiny").await.unwrap().batch_size
    })
}

/// The environment of the deployment's JVM, `NAME=VALUE` entries.
fn jvm_environment(deployment: &common::Deployment) -> Vec<String> {
    let jvm = deployment.jvm().expect("a JVM runs");
    let raw = std::fs::read(format!("/proc/{jvm}/environ")).unwrap();
    raw.split(|b| *b == 0).map(text).collect()
}

fn start(deployment: &common::Deployment) {
    let output = servetune(&["server", "start", "--target", deployment.target.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_tier_is_deployed_as_measured_and_a_hand_edit_made_since_survives() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let target = deployment.target.to_str().unwrap();
    let original = deployment.config_bytes();
    let study_dir = Path::new("/srv/elsewhere");
    let results = deployment.dir.path().join("results/s/recommended");
    let tier = write_tier(
        &results.join("balanced"),
        &Tier {
            measured_config: &deployment.config,
            original: &original,
            config: tier_config(
                &original,
                &["job_queue_size=200", "models.tiny.batchSize=4"],
                Some("warn"),
                study_dir,
            ),
            environment: omp_threads_one(),
        },
    );
    start(&deployment);
    // A hand edit after the study, of a key the tier does not change.
    let mut edited = text(&original);
    edited.push_str("# raised by hand after the study\ndefault_response_timeout=150\n");
    std::fs::write(&deployment.config, &edited).unwrap();

    let output = servetune(&[
        "apply",
        "--from",
        tier.to_str().unwrap(),
        "--target",
        target,
        "--restart",
    ]);
    let said = text(&output.stdout);
    assert!(output.status.success(), "{}\n{said}", text(&output.stderr));
    assert!(
        said.contains("job_queue_size: 100 -> 200") && said.contains("env OMP_NUM_THREADS=1"),
        "{said}"
    );

    let config = text(&deployment.config_bytes());
    assert!(
        config.contains("# raised by hand after the study\ndefault_response_timeout=150"),
        "the hand edit survives:\n{config}"
    );
    assert!(config.contains("job_queue_size=200"), "{config}");
    let log4j = deployment.dir.path().join(".servetune/log4j2-warn.xml");
    assert!(
        config.contains(&log4j.display().to_string()) && !config.contains("/srv/elsewhere"),
        "vmargs names this deployment's log4j2 file:\n{config}"
    );
    assert!(log4j.exists(), "the log4j2 file is written");
    let target_text = std::fs::read_to_string(&deployment.target).unwrap();
    assert!(
        target_text.contains("OMP_NUM_THREADS = \"1\""),
        "the environment is the target file's:\n{target_text}"
    );
    assert_eq!(batch_size(&deployment), 4, "the server runs the tier");
    assert!(
        jvm_environment(&deployment).contains(&"OMP_NUM_THREADS=1".to_string()),
        "TorchServe started with the tier's environment"
    );

    // Applied again: nothing left to change, nothing restarted.
    let jvm = deployment.jvm();
    let output = servetune(&[
        "apply",
        "--from",
        tier.to_str().unwrap(),
        "--target",
        target,
        "--restart",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("nothing to change"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(deployment.jvm(), jvm, "no restart when the tier already runs");
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_tier_of_another_deployment_is_refused_unless_forced() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let target = deployment.target.to_str().unwrap();
    let original = deployment.config_bytes();
    // Another deployment: another file, other bytes (its own ports).
    let other = text(&original).replace("job_queue_size=100", "job_queue_size=100\nnumber_of_gpu=0");
    let elsewhere = Path::new("/srv/other-deployment/config.properties");
    let tier = write_tier(
        &deployment.dir.path().join("other/recommended/balanced"),
        &Tier {
            measured_config: elsewhere,
            original: other.as_bytes(),
            config: tier_config(other.as_bytes(), &["models.tiny.batchSize=2"], None, Path::new("/srv")),
            environment: BTreeMap::new(),
        },
    );
    start(&deployment);
    let target_before = std::fs::read(&deployment.target).unwrap();

    let refused = servetune(&["apply", "--from", tier.to_str().unwrap(), "--target", target, "--hot"]);
    let said = text(&refused.stderr);
    assert!(!refused.status.success(), "a tier of another deployment is refused");
    assert!(
        said.contains("another deployment") && said.contains("/srv/other-deployment") && said.contains("--force"),
        "{said}"
    );
    assert_eq!(deployment.config_bytes(), original, "nothing changed");
    assert_eq!(std::fs::read(&deployment.target).unwrap(), target_before);
    assert_eq!(batch_size(&deployment), 1);

    let forced = servetune(&[
        "apply",
        "--from",
        tier.to_str().unwrap(),
        "--target",
        target,
        "--hot",
        "--force",
    ]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(text(&forced.stdout).contains("--force"), "{}", text(&forced.stdout));
    assert_eq!(batch_size(&deployment), 2, "the forced tier runs, changed live");
    assert!(text(&deployment.config_bytes()).contains("\"batchSize\": 2"));
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_tier_torchserve_does_not_come_up_on_is_rolled_back() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::with_target_extra(&provisioned, "ready_timeout = \"60s\"");
    let target = deployment.target.to_str().unwrap();
    let original = deployment.config_bytes();
    // A heap the JVM cannot start with.
    let tier = write_tier(
        &deployment.dir.path().join("results/s/recommended/balanced"),
        &Tier {
            measured_config: &deployment.config,
            original: &original,
            config: tier_config(
                &original,
                &["vmargs=-Xmx1k", "models.tiny.batchSize=4"],
                None,
                Path::new("/srv"),
            ),
            environment: omp_threads_one(),
        },
    );
    start(&deployment);
    let target_before = std::fs::read(&deployment.target).unwrap();

    let output = servetune(&[
        "apply",
        "--from",
        tier.to_str().unwrap(),
        "--target",
        target,
        "--restart",
    ]);
    let said = text(&output.stderr);
    assert!(!output.status.success(), "the tier did not come up");
    assert!(said.contains("put back"), "{said}");
    assert_eq!(deployment.config_bytes(), original, "the config is byte-identical");
    assert_eq!(
        std::fs::read(&deployment.target).unwrap(),
        target_before,
        "the tier's environment is not written"
    );
    assert_eq!(batch_size(&deployment), 1, "the server runs the old config again");
    assert!(
        !jvm_environment(&deployment).contains(&"OMP_NUM_THREADS=1".to_string()),
        "on its old environment"
    );
}
