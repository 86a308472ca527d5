//! `servetune tune` on a TorchServe that never comes up, with a fake
//! `torchserve` launcher (a shell script): one that fails at once, as a
//! launcher missing a dependency does, and one that never returns. The tune
//! exits non-zero within about twice `ready_timeout` with the log's last
//! lines, leaves config.properties byte-identical and no study lock, and
//! still exports a report; a second SIGTERM ends it at once, saying what it
//! leaves undone and how to recover.

mod common;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A deployment whose `torchserve` is a script; the study tunes it.
struct FakeDeployment {
    dir: tempfile::TempDir,
    config: PathBuf,
    study: PathBuf,
    results: PathBuf,
}

impl FakeDeployment {
    /// `launcher`: the script's body after the shebang (it writes its pid
    /// to `launcher.pid` and its arguments to `launches` first).
    fn new(launcher: &str, ready_timeout: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("servetune-way-out-").tempdir().unwrap();
        let script = dir.path().join("torchserve");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho $$ > \"$(dirname \"$0\")/launcher.pid\"\necho \"$@\" >> \"$(dirname \"$0\")/launches\"\n\
                 {launcher}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(dir.path().join("model-store")).unwrap();
        let example =
            std::fs::read_to_string(common::repo_root().join("examples/deployment/config.properties")).unwrap();
        let mut config_text = example;
        for (from, port) in [
            ("127.0.0.1:8080", common::free_port()),
            ("127.0.0.1:8081", common::free_port()),
            ("127.0.0.1:8082", common::free_port()),
            ("grpc_inference_port=7070", common::free_port()),
            ("grpc_management_port=7071", common::free_port()),
        ] {
            let to = match from.split_once(':') {
                Some((host, _)) => format!("{host}:{port}"),
                None => format!("{}={port}", from.split('=').next().unwrap()),
            };
            config_text = config_text.replace(from, &to);
        }
        let config = dir.path().join("config.properties");
        std::fs::write(&config, config_text).unwrap();
        std::fs::write(
            dir.path().join("target.toml"),
            format!(
                "config = \"config.properties\"\nmodel_store = \"model-store\"\nwork_dir = \"run\"\n\
                 torchserve = \"{}\"\nready_timeout = \"{ready_timeout}\"\nstop_timeout = \"5s\"\n",
                script.display()
            ),
        )
        .unwrap();
        let study = dir.path().join("study.toml");
        std::fs::write(
            &study,
            format!(
                "name = \"never-up\"\ntarget = \"target.toml\"\nspace = \"{}\"\nmodel = \"tiny\"\nbudget = \"1m\"\n\
                 [workload]\nbody = \"{}\"\nusers = 2\nduration = \"2s\"\nwarmup = \"1s\"\n[constraints]\np99_ms = 2000.0\n",
                common::repo_root().join("search-spaces/torchserve-cpu.toml").display(),
                common::repo_root().join("examples/deployment/bodies/tiny").display()
            ),
        )
        .unwrap();
        let results = dir.path().join("results");
        Self {
            dir,
            config,
            study,
            results,
        }
    }

    fn tune(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_servetune"))
            .env("SERVETUNE_LOG", "warn")
            .args(["tune", "--study"])
            .arg(&self.study)
            .arg("--results-dir")
            .arg(&self.results)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn lock(&self) -> PathBuf {
        self.dir.path().join(".servetune/study.lock")
    }

    fn console_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run/logs/console.log")).unwrap_or_default()
    }
}

impl Drop for FakeDeployment {
    /// Ends a launcher the test left running (the second-signal test does).
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("launcher.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                servetune::server::process::kill_tree(pid);
            }
        }
    }
}

/// Waits for `child` at most `limit`; kills it past that (the test then fails).
fn wait_at_most(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, String, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            return (status, stderr, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("servetune did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tune failed with the log's tail, put nothing in place, left no lock,
/// and exported a report saying nothing is recommended.
fn assert_left_as_found(deployment: &FakeDeployment, original: &[u8], stderr: &str, log_line: &str) {
    assert!(
        stderr.contains("--- last lines of"),
        "the error carries the log's tail: {stderr}"
    );
    assert!(stderr.contains("TorchServe never came up"), "{stderr}");
    assert!(stderr.contains(log_line), "the tail has the launcher's line: {stderr}");
    assert_eq!(
        std::fs::read(&deployment.config).unwrap(),
        original,
        "config.properties is byte-identical"
    );
    assert!(!deployment.lock().exists(), "no study lock is left");
    let summary = std::fs::read_to_string(deployment.results.join("never-up/summary.md")).unwrap();
    assert!(summary.contains("Nothing is recommended"), "{summary}");
}

#[test]
fn a_launcher_that_fails_at_once_ends_the_tune_with_its_log_tail() {
    let line = "fake torchserve: ModuleNotFoundError: No module named 'torch'";
    let deployment = FakeDeployment::new(&format!("echo \"{line}\"\nexit 1"), "10s");
    let original = std::fs::read(&deployment.config).unwrap();
    let mut tune = deployment.tune();
    let (status, stderr, took) = wait_at_most(&mut tune, Duration::from_secs(60));
    assert!(!status.success(), "{stderr}");
    assert!(
        took < Duration::from_secs(20),
        "exits within about twice ready_timeout: {took:?}"
    );
    assert!(stderr.contains("the torchserve launcher exited with"), "{stderr}");
    assert_left_as_found(&deployment, &original, &stderr, line);
    let launches = std::fs::read_to_string(deployment.dir.path().join("launches")).unwrap();
    assert_eq!(
        launches.matches("--start").count(),
        1,
        "one start, no retries: {launches}"
    );
}

#[test]
fn a_server_that_never_gets_ready_ends_the_tune_within_twice_ready_timeout() {
    let line = "fake torchserve: loading, forever";
    let deployment = FakeDeployment::new(&format!("echo \"{line}\"\nexec sleep 600"), "6s");
    let original = std::fs::read(&deployment.config).unwrap();
    let mut tune = deployment.tune();
    let (status, stderr, took) = wait_at_most(&mut tune, Duration::from_secs(90));
    assert!(!status.success(), "{stderr}");
    assert!(
        took < Duration::from_secs(12 + 4),
        "exits within about twice ready_timeout: {took:?}"
    );
    assert!(took >= Duration::from_secs(6), "waited ready_timeout first: {took:?}");
    assert!(stderr.contains("did not return within 6s"), "{stderr}");
    assert_left_as_found(&deployment, &original, &stderr, line);
}

#[test]
fn a_second_sigterm_ends_the_tune_at_once_and_says_how_to_recover() {
    let line = "fake torchserve: loading, forever";
    let deployment = FakeDeployment::new(&format!("echo \"{line}\"\nexec sleep 600"), "120s");
    let mut tune = deployment.tune();
    let started = Instant::now();
    while !deployment.console_log().contains(line) {
        assert!(started.elapsed() < Duration::from_secs(60), "the launcher never ran");
        assert!(
            tune.try_wait().unwrap().is_none(),
            "servetune exited before starting the server"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = tune.id() as i32;
    servetune::server::process::signal(pid, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        tune.try_wait().unwrap().is_none(),
        "the first SIGTERM waits for the way out (here: the start under way)"
    );
    servetune::server::process::signal(pid, libc::SIGTERM);
    let (status, stderr, took) = wait_at_most(&mut tune, Duration::from_secs(30));
    assert!(
        took < Duration::from_secs(5),
        "the second SIGTERM ends it at once: {took:?}"
    );
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(stderr.contains("a second signal: ending now"), "{stderr}");
    assert!(
        stderr.contains("left undone:") && stderr.contains("putting the server back") && stderr.contains("exporting"),
        "{stderr}"
    );
    assert!(
        stderr.contains("servetune restore --config") && stderr.contains("tune --resume never-up"),
        "the recovery the study lock names: {stderr}"
    );
    assert!(deployment.lock().exists(), "the lock stays and names the recovery");
}
