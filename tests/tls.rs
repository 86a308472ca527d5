//! TLS to TorchServe: a real TorchServe 0.12.0 serving https on all three
//! addresses with a self-signed certificate made here (rcgen; TorchServe
//! reads `private_key_file` as an RSA key in PKCS#8 PEM, so the key comes
//! from `openssl genpkey`), driven through the `servetune` binary as an
//! operator would: `server start`, `bench --target` (load generator and
//! metrics scrape), `apply --hot` (management API), `init`, with the
//! target's `ca_file`, with `insecure_tls = true`, and with neither.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use servetune::load::tls::Verification;
use servetune::server::TargetSpec;

fn servetune(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(args)
        .current_dir(dir)
        .env("SERVETUNE_LOG", "info")
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

/// A self-signed certificate for 127.0.0.1 with an RSA key, as PEM files
/// `cert.pem` and `key.pem` in `dir`; `is_ca` as `openssl req -x509` makes
/// them (saying it is a CA, which webpki refuses as a server's: servetune
/// pins it when it is the `ca_file` itself).
fn self_signed_certificate(dir: &Path, is_ca: bool) -> (PathBuf, PathBuf) {
    let key = dir.join("key.pem");
    let generated = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .expect("openssl makes the RSA key TorchServe needs");
    assert!(generated.status.success(), "{}", text(&generated));
    let key_pair = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    if is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let certificate = params.self_signed(&key_pair).unwrap();
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, certificate.pem()).unwrap();
    (cert, key)
}

/// The test deployment on https, with `target_extra` in its target file.
fn https_deployment(provisioned: &common::Provisioned, target_extra: &str, is_ca: bool) -> common::Deployment {
    let deployment = common::Deployment::with_target_extra(provisioned, target_extra);
    let (cert, key) = self_signed_certificate(deployment.dir.path(), is_ca);
    let config = std::fs::read_to_string(&deployment.config).unwrap();
    let config = format!(
        "{}certificate_file={}\nprivate_key_file={}\n",
        config.replace("=http://", "=https://"),
        cert.display(),
        key.display()
    );
    std::fs::write(&deployment.config, config).unwrap();
    deployment
}

/// Replaces the TLS line of the target file.
fn set_target_tls(deployment: &common::Deployment, from: &str, to: &str) {
    let text = std::fs::read_to_string(&deployment.target).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(&deployment.target, text.replace(from, to)).unwrap();
}

/// A short bench over https; its JSON report.
fn bench(dir: &Path) -> (Output, Option<serde_json::Value>) {
    let output = servetune(
        dir,
        &[
            "bench",
            "--target",
            "target.toml",
            "--users",
            "2",
            "--warmup",
            "1s",
            "--duration",
            "2s",
            "--fixed-window",
            "--json",
            "--no-save",
        ],
    );
    let report = serde_json::from_slice(&output.stdout).ok();
    (output, report)
}

fn assert_measured_over_https(output: &Output, report: Option<serde_json::Value>) {
    assert!(output.status.success(), "{}", text(output));
    let report = report.unwrap_or_else(|| panic!("no JSON: {}", text(output)));
    assert!(
        report["url"].as_str().unwrap().starts_with("https://127.0.0.1:"),
        "{report}"
    );
    assert!(report["requests"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["errors"]["total"].as_f64(), Some(0.0), "{report}");
    assert!(
        report["server"]["requests"].as_f64().unwrap_or(0.0) > 0.0,
        "TorchServe's metrics were scraped over https: {report}"
    );
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn an_https_torchserve_is_benched_hot_applied_and_scraped_with_ca_file_or_insecure_tls() {
    let provisioned = require_torchserve!();
    let deployment = https_deployment(&provisioned, "ca_file = \"cert.pem\"\n", false);
    let dir = deployment.dir.path();
    assert_eq!(
        deployment.spec().tls,
        Verification::CaFile(dir.join("cert.pem")),
        "ca_file is relative to the target file"
    );

    let started = servetune(dir, &["server", "start", "--target", "target.toml"]);
    assert!(started.status.success(), "readiness over https: {}", text(&started));
    assert!(
        text(&started).contains("certificate checked against ca_file"),
        "{}",
        text(&started)
    );

    let (output, report) = bench(dir);
    assert_measured_over_https(&output, report);

    let hot = servetune(
        dir,
        &[
            "apply",
            "--config",
            "config.properties",
            "--target",
            "target.toml",
            "--hot",
            "--set",
            "models.tiny.batchSize=4",
        ],
    );
    assert!(hot.status.success(), "{}", text(&hot));
    let live = common::runtime()
        .block_on(async { deployment.server().api().unwrap().describe_model("tiny").await })
        .unwrap();
    assert_eq!(live.batch_size, 4, "the hot change reached TorchServe over https");

    set_target_tls(&deployment, "ca_file = \"cert.pem\"", "insecure_tls = true");
    let (output, report) = bench(dir);
    assert!(
        text(&output).contains("insecure_tls = true in target.toml") && text(&output).contains("NOT checked"),
        "a warning names the setting: {}",
        text(&output)
    );
    assert_measured_over_https(&output, report);

    set_target_tls(&deployment, "insecure_tls = true", "");
    let refused = servetune(dir, &["server", "status", "--target", "target.toml"]);
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("not signed by a known CA") && said.contains("ca_file") && said.contains("insecure_tls"),
        "an unknown CA is a clear error naming the keys: {said}"
    );

    set_target_tls(&deployment, "ready_timeout", "ca_file = \"cert.pem\"\nready_timeout");
    let stopped = servetune(dir, &["server", "stop", "--target", "target.toml"]);
    assert!(stopped.status.success(), "{}", text(&stopped));
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn init_on_an_https_deployment_pins_its_self_signed_certificate_and_a_tune_measures_over_https() {
    let provisioned = require_torchserve!();
    // Made like `openssl req -x509` makes them: init pins it.
    let deployment = https_deployment(&provisioned, "", true);
    let dir = deployment.dir.path();
    let original = deployment.config_bytes();
    std::os::unix::fs::symlink(
        common::repo_root().join("examples/deployment/bodies"),
        dir.join("bodies"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_servetune"))
            .args(args)
            .current_dir(dir)
            .env("SERVETUNE_LOG", "info")
            .env("SERVETUNE_TORCHSERVE", &provisioned.torchserve)
            .output()
            .unwrap()
    };
    let init = run(&["init"]);
    let said = text(&init);
    assert!(init.status.success(), "{said}");
    assert!(
        said.contains("is self-signed and valid for 127.0.0.1: ca_file = it (guessed)"),
        "{said}"
    );
    let spec = TargetSpec::load(&dir.join("servetune/target.toml")).unwrap();
    assert_eq!(spec.tls, Verification::CaFile(dir.join("cert.pem")));

    let tune = run(&["tune", "--budget", "1m", "--json"]);
    let said = text(&tune);
    assert!(tune.status.success(), "{said}");
    assert!(said.contains("certificate checked against ca_file"), "{said}");
    let report: serde_json::Value = serde_json::from_slice(&tune.stdout).unwrap();
    assert!(
        report["baseline"]["throughput_rps"].as_f64().unwrap_or(0.0) > 0.0,
        "the baseline was measured over https: {report}"
    );
    assert!(
        report["trials"].as_u64().unwrap() > report["failed_trials"].as_u64().unwrap(),
        "{report}"
    );
    assert_eq!(deployment.config_bytes(), original, "the config is back as it was");
}
