//! The server lifecycle against a real TorchServe 0.12.0 with token
//! authorization on: start, cold change with restart, hot change through the
//! management API, refused and failed changes with rollback, stop, and the
//! production mode that restarts through an argv.

mod common;

use servetune::apply::{self, ApplyError, Edit};
use servetune::config::Assignment;
use servetune::server::{process, Keys, TorchServe};

fn assignments(items: &[&str]) -> Vec<Assignment> {
    items.iter().map(|item| item.parse().unwrap()).collect()
}

async fn predict(server: &TorchServe, key: &str) -> reqwest::StatusCode {
    let url = format!("{}/predictions/tiny", server.endpoints().unwrap().inference.base_url());
    reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 3072])
        .send()
        .await
        .unwrap()
        .status()
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn cold_and_hot_changes_reach_the_running_server() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let server = deployment.server();
    common::runtime().block_on(async {
        server.start().await.expect("TorchServe starts and becomes ready");
        let first_jvm = deployment.jvm().expect("the JVM is running");

        // Token authorization is on: no key, no answer.
        let ping = format!("{}/ping", server.endpoints().unwrap().inference.base_url());
        let anonymous = reqwest::get(&ping).await.unwrap();
        assert!(
            !anonymous.status().is_success(),
            "ping without a key answered {}",
            anonymous.status()
        );
        let keys = Keys::read(&server.spec().key_file).unwrap();
        assert_eq!(predict(&server, &keys.inference).await, 200);

        // Cold: netty threads and queue size need a restart.
        let edit = Edit::prepare(
            &deployment.config,
            &assignments(&["number_of_netty_threads=4", "job_queue_size=50"]),
        )
        .unwrap();
        apply::apply_with_restart(&server, edit)
            .await
            .expect("cold change applies");
        let second_jvm = deployment.jvm().expect("the JVM is running again");
        assert_ne!(first_jvm, second_jvm, "a cold change restarts the JVM");
        let api = server.api().unwrap();
        let tiny = api.describe_model("tiny").await.unwrap();
        assert_eq!(
            tiny.job_queue_status.unwrap().remaining_capacity,
            50,
            "job_queue_size reached the server"
        );
        let text = String::from_utf8(deployment.config_bytes()).unwrap();
        assert!(text.contains("\nnumber_of_netty_threads=4\n") && text.contains("\njob_queue_size=50\n"));

        // Hot: batch size and delay by re-registering, workers by scaling.
        let hot = assignments(&[
            "models.tiny.batchSize=4",
            "models.tiny.maxBatchDelay=20",
            "models.tiny.minWorkers=2",
            "models.tiny.maxWorkers=2",
        ]);
        let edit = Edit::prepare(&deployment.config, &hot).unwrap();
        apply::apply_hot(&server, edit, &hot).await.expect("hot change applies");
        assert_eq!(
            deployment.jvm(),
            Some(second_jvm),
            "a hot change does not restart the JVM"
        );
        let tiny = api.describe_model("tiny").await.unwrap();
        assert_eq!((tiny.batch_size, tiny.max_batch_delay), (4, 20));
        assert_eq!((tiny.min_workers, tiny.max_workers), (2, 2));
        assert_eq!(tiny.workers.len(), 2);
        assert!(tiny.workers.iter().all(|w| w.status == "READY"), "{:?}", tiny.workers);
        let keys = Keys::read(&server.spec().key_file).unwrap();
        assert_eq!(predict(&server, &keys.inference).await, 200);
        // The file says what the server runs, so a restart keeps it.
        let text = String::from_utf8(deployment.config_bytes()).unwrap();
        assert!(
            text.contains("\"batchSize\": 4,\\\n") && text.contains("\"maxBatchDelay\": 20,\\\n"),
            "{text}"
        );

        // A cold-only key is refused for a hot change, and nothing changes.
        let before = deployment.config_bytes();
        let cold = assignments(&["number_of_netty_threads=3"]);
        let edit = Edit::prepare(&deployment.config, &cold).unwrap();
        let error = apply::apply_hot(&server, edit, &cold).await.unwrap_err();
        assert!(matches!(error, ApplyError::Refused(_)), "{error}");
        assert_eq!(deployment.config_bytes(), before);

        // Stop: the JVM and every worker are gone.
        let tree = process::process_tree(second_jvm);
        assert!(tree.len() >= 3, "JVM and two workers: {tree:?}");
        server.stop().await.expect("TorchServe stops");
        assert!(
            tree.iter().all(|&pid| !process::is_alive(pid)),
            "left running: {tree:?}"
        );
        assert_eq!(deployment.jvm(), None);
    });
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_port_in_use_is_refused_and_the_server_stays_up() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let server = deployment.server();
    common::runtime().block_on(async {
        server.start().await.unwrap();
        let jvm = deployment.jvm().unwrap();
        let before = deployment.config_bytes();
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = holder.local_addr().unwrap().port();
        let change = assignments(&[&format!("inference_address=http://127.0.0.1:{busy}")]);
        let edit = Edit::prepare(&deployment.config, &change).unwrap();
        let error = apply::apply_with_restart(&server, edit).await.unwrap_err().to_string();
        assert!(
            error.contains(&format!("port {busy}")) && error.contains("inference_address"),
            "{error}"
        );
        assert!(error.contains("config.properties"), "{error}");
        assert_eq!(deployment.config_bytes(), before, "the config file is unchanged");
        assert_eq!(deployment.jvm(), Some(jvm), "the server was not touched");
        server.wait_ready().await.expect("the server is still ready");

        // Without its pid file (`torchserve --stop` deletes it before the JVM
        // exits; a servetune killed then leaves it so), the JVM is still
        // found by its work directory, and stopped for good.
        std::fs::remove_file(deployment.work_dir().join("tmp/.model_server.pid")).unwrap();
        assert_eq!(server.running_jvm(), Some(jvm));
        let tree = servetune::server::process::process_tree(jvm);
        server.stop().await.expect("stops a JVM found without its pid file");
        assert!(
            tree.iter().all(|&pid| !servetune::server::process::is_alive(pid)),
            "left running: {tree:?}"
        );
    });
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_change_that_breaks_start_is_rolled_back_and_the_server_comes_back() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::new(&provisioned);
    let server = deployment.server();
    common::runtime().block_on(async {
        server.start().await.unwrap();
        let before = deployment.config_bytes();
        // A heap too small for the JVM: TorchServe itself fails to start.
        let edit = Edit::prepare(&deployment.config, &assignments(&["vmargs=-Xmx1k"])).unwrap();
        let error = apply::apply_with_restart(&server, edit).await.unwrap_err();
        assert!(matches!(error, ApplyError::RolledBack { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("Too small maximum heap"),
            "the log tail shows TorchServe's own words: {message}"
        );
        assert!(message.contains("put back"), "{message}");
        assert_eq!(deployment.config_bytes(), before, "the config file is byte-identical");
        server
            .wait_ready()
            .await
            .expect("the server is back up on the previous config");
        assert!(deployment.jvm().is_some());
        assert!(
            !deployment.dir.path().join(".servetune").exists(),
            "after the rollback nothing of servetune's remains"
        );

        // The operator edits by hand, servetune changes the file, and restore
        // gives back the hand edit (not the file before the failed apply).
        let edited = String::from_utf8(before.clone())
            .unwrap()
            .replace("number_of_netty_threads=2", "number_of_netty_threads=6");
        std::fs::write(&deployment.config, &edited).unwrap();
        let mut edit = Edit::prepare(&deployment.config, &assignments(&["job_queue_size=200"])).unwrap();
        edit.write().unwrap();
        servetune::config::restore(&deployment.config, false).expect("no --force needed");
        assert_eq!(
            String::from_utf8(deployment.config_bytes()).unwrap(),
            edited,
            "restore puts back the hand edit"
        );
    });
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn production_mode_restarts_through_the_configured_argv() {
    let provisioned = require_torchserve!();
    // The restart command is a script standing in for `systemctl restart
    // torchserve`; its arguments contain shell syntax that must arrive
    // verbatim, since servetune runs the argv without a shell.
    let scratch = tempfile::tempdir().unwrap();
    let script = scratch.path().join("restart-torchserve");
    let argv_log = scratch.path().join("argv.log");
    let deployment_dir_placeholder = "__DEPLOYMENT__";
    let script_text = format!(
        "#!/bin/sh\nset -e\nprintf '%s\\n' \"$@\" > '{argv}'\ncd '{dir}/run'\nexport TMPDIR='{dir}/run/tmp' LOG_LOCATION='{dir}/run/logs'\n\
         '{ts}' --stop >/dev/null 2>&1 || true\nwhile [ -f \"$TMPDIR/.model_server.pid\" ] && kill -0 \"$(cat \"$TMPDIR/.model_server.pid\")\" 2>/dev/null; do sleep 0.2; done\n\
         '{ts}' --start --ts-config '{dir}/config.properties' --ncs --model-store '{dir}/model-store' >'{dir}/run/logs/console.log' 2>&1\n",
        argv = argv_log.display(),
        dir = deployment_dir_placeholder,
        ts = provisioned.torchserve.display(),
    );
    let extra = format!(
        "restart_command = [\"{}\", \"$(touch /tmp/servetune-shell-injection)\", \"a b;c\"]\nkey_file = \"run/key_file.json\"",
        script.display()
    );
    let deployment = common::Deployment::with_target_extra(&provisioned, &extra);
    let dir = deployment.dir.path().display().to_string();
    std::fs::create_dir_all(deployment.work_dir().join("tmp")).unwrap();
    std::fs::create_dir_all(deployment.work_dir().join("logs")).unwrap();
    std::fs::write(&script, script_text.replace(deployment_dir_placeholder, &dir)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let server = deployment.server();
    common::runtime().block_on(async {
        assert!(
            server.start().await.is_err(),
            "production mode never starts TorchServe itself"
        );
        server
            .restart()
            .await
            .expect("the restart command brings TorchServe up and it becomes ready");
        let first = deployment.jvm().expect("running");
        let edit = Edit::prepare(&deployment.config, &assignments(&["job_queue_size=30"])).unwrap();
        apply::apply_with_restart(&server, edit)
            .await
            .expect("cold change through the restart command");
        assert_ne!(deployment.jvm(), Some(first));
        let tiny = server.api().unwrap().describe_model("tiny").await.unwrap();
        assert_eq!(tiny.job_queue_status.unwrap().remaining_capacity, 30);
    });
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert_eq!(argv, "$(touch /tmp/servetune-shell-injection)\na b;c\n");
}
