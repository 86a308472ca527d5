//! The `servetune` binary as an operator uses it: `apply`, `restore` and
//! `server`, with bad input giving one clear error that names the file and
//! line (or the flag), a non-zero exit, and an unchanged config file.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn servetune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(args)
        .env("SERVETUNE_LOG", "warn")
        .output()
        .expect("the servetune binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const EXAMPLE: &str = "# example\nnumber_of_netty_threads=2\r\njob_queue_size : 100\nmodels={\\\n  \"tiny\": {\\\n    \"1.0\": {\\\n      \"defaultVersion\": true,\\\n      \"batchSize\": 1\\\n    }\\\n  }\\\n}\n# end\n";

fn example_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.properties");
    std::fs::write(&path, EXAMPLE).unwrap();
    path
}

#[test]
fn apply_edits_losslessly_and_restore_puts_the_original_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let config_arg = config.to_str().unwrap();
    let output = servetune(&[
        "apply",
        "--config",
        config_arg,
        "--set",
        "number_of_netty_threads=4",
        "--set",
        "models.tiny.batchSize=8",
        "--set",
        "netty_client_threads=2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("number_of_netty_threads: 2 -> 4"), "{out}");
    assert!(out.contains("models.tiny.batchSize: 1 -> 8"), "{out}");
    let edited = std::fs::read_to_string(&config).unwrap();
    assert!(
        edited.starts_with("# example\nnumber_of_netty_threads=4\r\njob_queue_size : 100\n"),
        "{edited}"
    );
    assert!(edited.contains("\"batchSize\": 8\\\n"), "{edited}");
    assert!(edited.ends_with("}\n# end\nnetty_client_threads=2\n"), "{edited}");

    let output = servetune(&["restore", "--config", config_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        EXAMPLE,
        "byte-identical after restore"
    );
    let output = servetune(&["restore", "--config", config_arg]);
    assert!(!output.status.success(), "a second restore has nothing to restore");
    assert!(stderr(&output).contains("no backup"), "{}", stderr(&output));
}

/// Runs `apply` on a file with `content` and expects a one-line failure
/// mentioning every part of `expected`, with the file unchanged.
fn assert_refused(content: &[u8], set: &[&str], expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.properties");
    std::fs::write(&config, content).unwrap();
    let mut args = vec!["apply", "--config", config.to_str().unwrap()];
    for item in set {
        args.extend(["--set", item]);
    }
    let output = servetune(&args);
    let message = stderr(&output);
    assert!(!output.status.success(), "accepted {set:?}");
    for part in expected {
        assert!(message.contains(part), "error for {set:?} lacks {part:?}: {message}");
    }
    assert_eq!(std::fs::read(&config).unwrap(), content, "the file changed");
    assert!(
        !dir.path().join(".servetune").exists(),
        "a backup was made for a refused change"
    );
}

#[test]
fn bad_input_is_refused_with_file_and_line_and_changes_nothing() {
    let example = EXAMPLE.as_bytes();
    assert_refused(
        example,
        &["models.big.batchSize=2"],
        &["config.properties:4", "model 'big'", "tiny"],
    );
    assert_refused(example, &["models.tiny.batchSize=0"], &["batchSize", "'0'"]);
    assert_refused(
        b"a=1\nmodels={\"tiny\": \\\n  {\"1.0\": }\n",
        &["a=2"],
        &["config.properties:2", "JSON"],
    );
    assert_refused(b"a=1\n\nbad=\\u00zz\n", &["a=2"], &["config.properties:3", "\\uXXXX"]);
    assert_refused(
        b"a=1\n",
        &["models.tiny.batchSize=2"],
        &["config.properties", "no models="],
    );
    assert_refused(example, &["models.tiny"], &["--set", "KEY=VALUE"]);
    assert_refused(example, &["models.tiny.batchsize=2"], &["--set", "unknown model field"]);
    assert_refused(example, &["job_queue_size=lots"], &["--set", "job_queue_size"]);
    assert_refused(example, &["bad key=1"], &["--set", "not a property key"]);
}

#[test]
fn missing_files_and_flags_are_named() {
    let output = servetune(&["apply", "--config", "/nonexistent/config.properties", "--set", "a=1"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("/nonexistent/config.properties"),
        "{}",
        stderr(&output)
    );

    let dir = tempfile::tempdir().unwrap();
    let config = example_config(dir.path());
    let output = servetune(&[
        "apply",
        "--config",
        config.to_str().unwrap(),
        "--set",
        "a=1",
        "--restart",
    ]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--target"), "{}", stderr(&output));

    let target = dir.path().join("target.toml");
    std::fs::write(
        &target,
        "config = \"config.properties\"\nmodel_store = \"store\"\nready_timout = \"1s\"\n",
    )
    .unwrap();
    let output = servetune(&["server", "status", "--target", target.to_str().unwrap()]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("target.toml") && message.contains("line 3") && message.contains("ready_timout"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), EXAMPLE);
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn operator_round_trip_on_a_real_torchserve() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let target = deployment.target.to_str().unwrap();
    let config = deployment.config.to_str().unwrap();
    let original = deployment.config_bytes();

    let output = servetune(&["server", "start", "--target", target]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("workers READY 1/1"), "{}", stdout(&output));

    let output = servetune(&[
        "apply",
        "--config",
        config,
        "--set",
        "number_of_netty_threads=4",
        "--set",
        "models.tiny.batchSize=8",
        "--restart",
        "--target",
        target,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("batchSize=8"), "{}", stdout(&output));

    let output = servetune(&[
        "apply",
        "--config",
        config,
        "--set",
        "models.tiny.maxBatchDelay=5",
        "--hot",
        "--target",
        target,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("maxBatchDelay=5"), "{}", stdout(&output));

    let output = servetune(&["restore", "--config", config, "--restart", "--target", target]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(deployment.config_bytes(), original, "byte-identical after restore");
    let output = servetune(&["server", "status", "--target", target]);
    assert!(
        stdout(&output).contains("batchSize=1 maxBatchDelay=100"),
        "{}",
        stdout(&output)
    );

    let output = servetune(&["server", "stop", "--target", target]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(deployment.jvm(), None);
}

#[test]
fn bench_bad_input_gets_a_clear_error_and_no_hang() {
    let free_port = common::free_port();
    let url = format!("http://127.0.0.1:{free_port}/predictions/tiny");
    let empty = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--url".into(), url.clone(), "--stages".into(), "0:10@".into()],
            "--stages",
        ),
        (
            vec!["--url".into(), url.clone(), "--stages".into(), "ten@5s".into()],
            "number of users",
        ),
        (
            vec![
                "--url".into(),
                url.clone(),
                "--users".into(),
                "2".into(),
                "--body".into(),
                empty.path().display().to_string(),
            ],
            "no files",
        ),
        (
            vec![
                "--url".into(),
                url.clone(),
                "--users".into(),
                "2".into(),
                "--duration".into(),
                "1s".into(),
            ],
            "cannot connect",
        ),
        (
            vec![
                "--url".into(),
                "https://127.0.0.1:1/x".into(),
                "--rate".into(),
                "5".into(),
            ],
            "cannot connect",
        ),
        (vec!["--url".into(), url.clone(), "--rate=0".into()], "--rate"),
        (
            vec![
                "--url".into(),
                url.clone(),
                "--header".into(),
                "NoColon".into(),
                "--users".into(),
                "1".into(),
            ],
            "--header",
        ),
        (
            vec!["--url".into(), url, "--duration".into(), "1s".into()],
            "--rate N, --users N",
        ),
    ];
    for (args, expected) in cases {
        let started = std::time::Instant::now();
        let mut all = vec!["bench", "--no-save"];
        all.extend(args.iter().map(String::as_str));
        let output = servetune(&all);
        assert!(!output.status.success(), "accepted {args:?}");
        let message = stderr(&output);
        assert!(
            message.contains(expected),
            "error for {args:?} lacks {expected:?}: {message}"
        );
        assert!(!message.contains("panicked"), "{message}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}
