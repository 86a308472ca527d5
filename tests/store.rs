//! The study store: the file journal and a real PostgreSQL (started by the
//! test from the distribution's packages) pass one suite — a study is
//! created empty, keeps its trials in order across reopening, names their
//! workers, refuses a trial number taken twice, and is listed with its state
//! and best trial. PostgreSQL's own: a newer schema is refused, a password
//! is never printed, and `tune --storage` runs a study whose trials land in
//! the database and in results/<study>/ alike. Claims: many claimants at
//! once get unique numbers and never the same point; a trial whose worker
//! falls silent is given up after the grace period and its point handed out
//! again, while a beating one is kept; a host with another space is refused;
//! and two `servetune` processes (`tune` and `worker`), each with its own
//! TorchServe, run one study to the end, one of them killed with -9, and
//! another two to the end across two restarts of the database.

mod common;

use std::path::Path;

use std::time::Duration;

use serde_json::{json, Value};
use servetune::store::{
    list_studies, Appended, RunningTrial, Storage, Store as _, StudyRecord, StudyState, TrialStore,
};
use servetune::trial::Entry;

fn entry(number: usize, throughput: f64, feasible: bool) -> Entry {
    serde_json::from_value(json!({
        "number": number, "kind": "screen", "point": [number, 0],
        "values": {"batch_size": (1 << number).to_string()},
        "figures": {"throughput_rps": throughput, "p50_ms": 5.0, "p99_ms": 9.0, "error_rate": 0.0, "memory_mb": 300.0},
        "failure": null, "loss": -throughput, "feasible": feasible, "restarted": false,
        "throughput_ci95": null, "duration_s": 2.0, "elapsed_s": number as f64,
        "worker": format!("host-{}:42", number % 2),
    }))
    .unwrap()
}

/// The suite both backends pass.
async fn suite(storage: &Storage, results: &Path) {
    let source = results.join("study.toml");
    let record = |name: &'static str| StudyRecord {
        name,
        source: &source,
        journal: results.join(name).join("trials.jsonl"),
        space: None,
    };
    for name in ["alpha", "beta"] {
        std::fs::create_dir_all(results.join(name)).unwrap();
    }
    let (mut alpha, so_far) = TrialStore::open(storage, &record("alpha")).await.unwrap();
    assert!(so_far.is_empty(), "a new study has no trials");
    let written = [entry(0, 100.0, true), entry(1, 180.0, true), entry(2, 250.0, false)];
    for e in &written {
        alpha.append(e).await.unwrap();
    }
    let taken = alpha.append(&entry(1, 1.0, true)).await;
    if let Storage::Postgres(_) = storage {
        let e = taken.unwrap_err().to_string();
        assert!(e.contains("trial 1") && e.contains("already stored"), "{e}");
    }
    drop(alpha);
    let (mut beta, none) = TrialStore::open(storage, &record("beta")).await.unwrap();
    assert!(none.is_empty(), "studies are apart");
    beta.append(&entry(0, 50.0, true)).await.unwrap();
    beta.finish().await.unwrap();

    let (_, reopened) = TrialStore::open(storage, &record("alpha")).await.unwrap();
    let reread: Vec<(usize, f64, Option<String>)> = reopened
        .iter()
        .take(3)
        .map(|e| (e.number, e.figures.unwrap().throughput_rps, e.worker.clone()))
        .collect();
    let expected: Vec<(usize, f64, Option<String>)> = written
        .iter()
        .map(|e| (e.number, e.figures.unwrap().throughput_rps, e.worker.clone()))
        .collect();
    assert_eq!(reread, expected, "in order, with their workers");

    let studies = list_studies(storage, results).await.unwrap();
    let alpha = studies.iter().find(|s| s.name == "alpha").unwrap();
    let best = alpha.best.as_ref().unwrap();
    assert_eq!(best.number, 1, "the best feasible trial: {alpha:?}");
    assert_eq!(alpha.workers, vec!["host-0:42", "host-1:42"]);
    assert_eq!(alpha.state, "running");
    if let Storage::Postgres(_) = storage {
        let beta = studies.iter().find(|s| s.name == "beta").unwrap();
        assert_eq!((beta.state.as_str(), beta.trials), ("finished", 1));
    }
}

#[test]
fn the_file_journal_passes_the_store_suite() {
    let results = tempfile::tempdir().unwrap();
    common::runtime().block_on(suite(&Storage::File, results.path()));
}

#[test]
#[cfg_attr(
    postgres_missing,
    ignore = "PostgreSQL is not installed (the distribution's `postgresql` package; .ci/run installs it)"
)]
fn postgresql_passes_the_store_suite_and_refuses_a_newer_schema() {
    let postgres = common::postgres::Postgres::start();
    let storage = Storage::parse(&postgres.url()).unwrap();
    let results = tempfile::tempdir().unwrap();
    common::runtime().block_on(suite(&storage, results.path()));
    assert_eq!(postgres.psql("SELECT max(version) FROM servetune_schema").trim(), "2");

    // `servetune studies` lists what the store holds.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["studies", "--storage", &postgres.url(), "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = listed["studies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);

    // A password stays out of every message, also when the connection fails.
    let wrong = format!("postgres://postgres:s3cret@127.0.0.1:{}/postgres", common::free_port());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["studies", "--storage", &wrong])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        said.contains("postgres:***@127.0.0.1") && !said.contains("s3cret"),
        "{said}"
    );

    // A database migrated by a newer servetune is refused, and left alone.
    postgres.psql("INSERT INTO servetune_schema (version) VALUES (99)");
    let refused = common::runtime()
        .block_on(list_studies(&storage, results.path()))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("version 99") && refused.contains("upgrade servetune"),
        "{refused}"
    );
    assert_eq!(postgres.psql("SELECT count(*) FROM trials").trim(), "4");
}

#[test]
#[cfg_attr(
    postgres_missing,
    ignore = "PostgreSQL is not installed (the distribution's `postgresql` package; .ci/run installs it)"
)]
#[cfg_attr(
    torchserve_missing,
    ignore = "TorchServe is not provisioned: run `make test` (scripts/setup-torchserve.sh)"
)]
fn tune_keeps_its_trials_in_postgresql_and_exports_them_alike() {
    let provisioned = require_torchserve!();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let postgres = common::postgres::Postgres::start();
    let deployment = common::Deployment::new(&provisioned);
    let dir = deployment.dir.path();
    let root = common::repo_root();
    std::fs::write(
        dir.join("study.toml"),
        format!(
            "name = \"shared\"\ntarget = \"target.toml\"\nspace = \"{}\"\nmodel = \"tiny\"\nbudget = \"80s\"\n\
             [workload]\nbody = \"{}\"\nusers = 4\nduration = \"2s\"\nwarmup = \"1s\"\nconfirm_rounds = 2\n\
             [constraints]\np99_ms = 200\n",
            root.join("search-spaces/torchserve-cpu.toml").display(),
            root.join("examples/deployment/bodies/tiny").display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["tune", "--study", "study.toml", "--storage", &postgres.url(), "--json"])
        .current_dir(dir)
        .env("SERVETUNE_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored: usize = postgres
        .psql("SELECT count(*) FROM trials t JOIN studies s ON s.id = t.study_id WHERE s.name = 'shared'")
        .trim()
        .parse()
        .unwrap();
    let exported = std::fs::read_to_string(dir.join("results/shared/trials.jsonl")).unwrap();
    let lines: Vec<Value> = exported.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        stored >= 3 && stored == lines.len(),
        "{stored} stored, {} exported",
        lines.len()
    );
    let numbers: Vec<u64> = lines.iter().map(|l| l["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..stored as u64).collect::<Vec<_>>());
    // Each line names the worker that measured it: this host, the tune's process.
    let workers: std::collections::BTreeSet<&str> = lines.iter().map(|l| l["worker"].as_str().unwrap()).collect();
    assert_eq!(workers.len(), 1, "{workers:?}");
    let (host, pid) = workers.first().unwrap().rsplit_once(':').unwrap();
    assert!(!host.is_empty() && pid.parse::<u32>().is_ok(), "{workers:?}");
    assert_eq!(
        postgres.psql("SELECT state FROM studies WHERE name = 'shared'").trim(),
        "finished"
    );
    for file in ["report.json", "summary.md", "trials.csv"] {
        assert!(dir.join("results/shared").join(file).is_file(), "{file}");
    }
}

/// A finished trial of `point` with `number` (a claimant's result).
fn measured(number: usize, point: usize) -> Entry {
    let mut e = entry(number, 100.0 + point as f64, true);
    e.point = Some(vec![point]);
    e.worker = Some(servetune::store::worker_id());
    e
}

fn lost(trial: &RunningTrial) -> Entry {
    let mut e = entry(trial.number, 0.0, false);
    e.point = trial.point.clone();
    e.figures = None;
    e.failure = Some(format!("lost: {} fell silent", trial.worker));
    e
}

#[test]
#[cfg_attr(
    postgres_missing,
    ignore = "PostgreSQL is not installed (the distribution's `postgresql` package; .ci/run installs it)"
)]
fn claims_are_atomic_and_a_silent_workers_candidate_goes_back_to_the_queue() {
    let postgres = common::postgres::Postgres::start();
    let storage = Storage::parse(&postgres.url()).unwrap();
    let results = tempfile::tempdir().unwrap();
    let source = results.path().join("study.toml");
    let space = json!([{"name": "batch_size", "levels": ["1", "2", "4"]}]);
    let record = |space: &Value| StudyRecord {
        name: "fleet",
        source: &source,
        journal: results.path().join("fleet/trials.jsonl"),
        space: Some(space.clone()),
    };
    const POINTS: usize = 24;
    common::runtime().block_on(async {
        // Six claimants at once, each on its own connection, each taking the
        // lowest point nobody has finished or is measuring.
        let claimants = (0..6).map(|_| {
            let (storage, source, space) = (storage.clone(), source.clone(), space.clone());
            let journal = results.path().join("fleet/trials.jsonl");
            tokio::spawn(async move {
                let record = StudyRecord {
                    name: "fleet",
                    source: &source,
                    journal,
                    space: Some(space),
                };
                let (mut store, _) = TrialStore::open(&storage, &record).await.unwrap();
                let mut taken = Vec::new();
                loop {
                    let shared = store.shared().unwrap();
                    let claim = shared.claim(Duration::from_secs(60), &lost).await.unwrap();
                    let busy: Vec<usize> = claim
                        .finished
                        .iter()
                        .filter_map(|e| e.point.as_ref())
                        .chain(claim.pending.iter())
                        .map(|p| p[0])
                        .collect();
                    let Some(point) = (0..POINTS).find(|p| !busy.contains(p)) else {
                        break;
                    };
                    let number = claim.take(&vec![point]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    assert_eq!(store.append(&measured(number, point)).await.unwrap(), Appended::Kept);
                    taken.push((number, point));
                }
                taken
            })
        });
        let mut all: Vec<(usize, usize)> = Vec::new();
        for claimant in claimants.collect::<Vec<_>>() {
            all.extend(claimant.await.unwrap());
        }
        all.sort();
        let numbers: Vec<usize> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, (0..POINTS).collect::<Vec<_>>(), "unique, gap-free numbers");
        let mut points: Vec<usize> = all.iter().map(|(_, p)| *p).collect();
        points.sort();
        assert_eq!(points, (0..POINTS).collect::<Vec<_>>(), "every point once: {all:?}");

        // A trial without heartbeats is given up once the grace period has
        // passed; one that beats stays.
        let (mut store, _) = TrialStore::open(&storage, &record(&space)).await.unwrap();
        let shared = store.shared().unwrap();
        let silent = shared
            .claim(Duration::from_secs(60), &lost)
            .await
            .unwrap()
            .take(&vec![100])
            .await
            .unwrap();
        let beating = shared
            .claim(Duration::from_secs(60), &lost)
            .await
            .unwrap()
            .take(&vec![101])
            .await
            .unwrap();
        let _alive = shared.keep_alive(Some(beating), Duration::from_millis(200));
        let early = shared.claim(Duration::from_secs(2), &lost).await.unwrap();
        assert!(
            early.lost.is_empty() && early.requeued.is_none(),
            "not yet: {:?}",
            early.lost
        );
        assert_eq!(early.pending, vec![vec![100], vec![101]]);
        drop(early);
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let claim = shared.claim(Duration::from_secs(2), &lost).await.unwrap();
        let given_up: Vec<usize> = claim.lost.iter().map(|t| t.number).collect();
        assert_eq!(given_up, vec![silent], "only the silent trial is given up");
        assert_eq!(claim.requeued, Some(vec![100]), "its candidate goes back to the queue");
        assert_eq!(claim.pending, vec![vec![101]]);
        let again = claim.take(&vec![100]).await.unwrap();
        assert!(again > beating);
        let next = shared.claim(Duration::from_secs(2), &lost).await.unwrap();
        assert_eq!(next.requeued, None, "handed out once");
        drop(next);
        // The silent worker's late result is dropped: the point counts once.
        assert_eq!(store.append(&measured(silent, 100)).await.unwrap(), Appended::GivenUp);
        assert_eq!(store.append(&measured(again, 100)).await.unwrap(), Appended::Kept);
        let lost_row = postgres.psql(&format!(
            "SELECT state, entry->>'failure' FROM trials WHERE number = {silent}"
        ));
        assert!(lost_row.starts_with("lost|lost: "), "{lost_row}");

        // A study that confirms hands nothing out.
        let shared = store.shared().unwrap();
        shared.set_state(StudyState::Confirming).await.unwrap();
        let closed = shared.claim(Duration::from_secs(60), &lost).await.unwrap();
        assert_eq!(closed.state, StudyState::Confirming);
        drop(closed);

        // A host whose files give another space is refused, naming why.
        let other = json!([{"name": "batch_size", "levels": ["1", "2", "8"]}]);
        let refused = TrialStore::open(&storage, &record(&other))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            refused.contains("another search space") && refused.contains("same study and space files"),
            "{refused}"
        );
    });

    // A second `tune` of a study whose leader beats is refused (it says how
    // to add the host); a finished study takes no more work.
    let folder = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(folder.path().join(name), text).unwrap();
    write(
        "config.properties",
        "inference_address=http://127.0.0.1:1\nmanagement_address=http://127.0.0.1:2\n\
         metrics_address=http://127.0.0.1:3\nload_models=tiny.mar\nmodels={\"tiny\": {\"1.0\": \
         {\"marName\": \"tiny.mar\", \"minWorkers\": 1, \"maxWorkers\": 1, \"batchSize\": 1, \"maxBatchDelay\": 100}}}\n",
    );
    write(
        "target.toml",
        "config = \"config.properties\"\nmodel_store = \".\"\nwork_dir = \"run\"\ntorchserve = \"/nonexistent/torchserve\"\n",
    );
    write(
        "space.toml",
        "[[parameter]]\nname = \"batch_size\"\nkind = \"pow2\"\nmin = 1\nmax = 4\ndefault = 1\n\
         target = \"models.{model}.batchSize\"\napply = \"hot\"\n",
    );
    write("body.bin", "x");
    write(
        "study.toml",
        "name = \"led\"\ntarget = \"target.toml\"\nspace = \"space.toml\"\nmodel = \"tiny\"\n\
         [workload]\nbody = \"body.bin\"\nusers = 1\n[constraints]\np99_ms = 50\n",
    );
    let tune = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_servetune"))
            .args(["tune", "--study", "study.toml", "--storage", &postgres.url()])
            .current_dir(folder.path())
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    common::runtime().block_on(async {
        let source = folder.path().join("study.toml");
        let record = StudyRecord {
            name: "led",
            source: &source,
            journal: folder.path().join("trials.jsonl"),
            space: None,
        };
        TrialStore::open(&storage, &record).await.unwrap();
    });
    let said = tune();
    assert!(
        said.contains("led by a running `servetune tune`") && said.contains("servetune worker --storage"),
        "{said}"
    );
    postgres
        .psql("UPDATE studies SET state = 'finished', leader_seen_at = now() - interval '1 hour' WHERE name = 'led'");
    let said = tune();
    assert!(said.contains("study 'led' is finished"), "{said}");
    assert!(!folder.path().join("run").exists(), "no server started");
    assert!(!folder.path().join("results").exists(), "no results written");

    // A worker for a study the store lacks says so, and starts nothing.
    let target = results.path().join("target.toml");
    std::fs::write(&target, "config = \"config.properties\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["worker", "--storage", &postgres.url(), "--study", "nope", "--target"])
        .arg(&target)
        .current_dir(results.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        said.contains("--study nope") && said.contains("no such study"),
        "{said}"
    );
    assert!(!results.path().join("results").exists());
}

/// The heavy tests of this file (TorchServe and PostgreSQL) one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `sql`'s rows, each split on `|` (psql's unaligned output).
fn rows(postgres: &common::postgres::Postgres, sql: &str) -> Vec<Vec<String>> {
    postgres
        .psql(sql)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// Polls `probe` until it finds something; on time out, says what it
/// waited for and what `logs` show.
fn wait_for<T>(what: &str, within: Duration, logs: &[&Path], mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {within:?}; logs:\n{}",
            logs.iter()
                .map(|l| format!("{}:\n{}", l.display(), std::fs::read_to_string(l).unwrap_or_default()))
                .collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn servetune_in(dir: &Path, args: &[&str], log: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(args)
        .current_dir(dir)
        .env("SERVETUNE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut std::process::Child, log: &Path, within: Duration) {
    let status = wait_for("the process to exit", within, &[log], || child.try_wait().unwrap());
    assert!(
        status.success(),
        "{status:?}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
#[cfg_attr(
    postgres_missing,
    ignore = "PostgreSQL is not installed (the distribution's `postgresql` package; .ci/run installs it)"
)]
#[cfg_attr(
    torchserve_missing,
    ignore = "TorchServe is not provisioned: run `make test` (scripts/setup-torchserve.sh)"
)]
fn two_workers_run_one_study_and_a_killed_workers_candidate_comes_back() {
    let provisioned = require_torchserve!();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let postgres = common::postgres::Postgres::start();
    let url = postgres.url();
    let (leader, host) = (
        common::Deployment::new(&provisioned),
        common::Deployment::new(&provisioned),
    );
    let (leader_original, host_original) = (leader.config_bytes(), host.config_bytes());
    // Both hosts find the study's files at one path (here: the leader's folder).
    let dir = leader.dir.path();
    write_shared_study(dir, "fleet", 4, 12, "5s");
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(name);
    let mut tune = start_leader(dir, &postgres, "fleet", &log("tune"));
    let target = host.target.to_str().unwrap().to_string();
    let worker_args = ["worker", "--storage", &url, "--study", "fleet", "--target", &target];
    let mut first = servetune_in(host.dir.path(), &worker_args, &log("worker-1"));
    let first_id = format!(
        "{}:{}",
        servetune::store::worker_id().rsplit_once(':').unwrap().0,
        first.id()
    );

    // Kill the worker with -9 in the middle of a trial it claimed.
    let (number, point) = wait_for(
        "a trial of the worker",
        Duration::from_secs(120),
        &[&log("tune"), &log("worker-1")],
        || {
            rows(
                &postgres,
                &format!("SELECT number, point::text FROM trials WHERE worker = '{first_id}' AND state = 'running'"),
            )
            .pop()
            .map(|row| (row[0].clone(), row[1].clone()))
        },
    );
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap();
    first.wait().unwrap();

    // Started again on the same host, it recovers its server and goes on.
    let mut second = servetune_in(host.dir.path(), &worker_args, &log("worker-2"));
    wait_exit(&mut tune, &log("tune"), Duration::from_secs(420));
    wait_exit(&mut second, &log("worker-2"), Duration::from_secs(120));

    let killed = rows(
        &postgres,
        &format!("SELECT state, entry->>'failure' FROM trials WHERE number = {number}"),
    );
    assert_eq!(killed[0][0], "lost", "{killed:?}");
    assert!(killed[0][1].contains(&first_id), "{killed:?}");
    let again = rows(
        &postgres,
        &format!(
            "SELECT number FROM trials WHERE point::text = '{point}' AND state = 'finished' AND number > {number}"
        ),
    );
    assert!(
        !again.is_empty(),
        "the killed worker's candidate {point} was measured again"
    );
    // No candidate measured twice; numbers unique and gap-free in the export.
    let screens = rows(
        &postgres,
        "SELECT point::text, count(*) FROM trials WHERE state = 'finished' AND entry->>'kind' = 'screen' GROUP BY 1",
    );
    assert!(screens.iter().all(|row| row[1] == "1"), "{screens:?}");
    let exported: Vec<Value> = std::fs::read_to_string(dir.join("results/fleet/trials.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let numbers: Vec<u64> = exported.iter().map(|l| l["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..exported.len() as u64).collect::<Vec<_>>());
    let measured_by: std::collections::BTreeSet<&str> = exported
        .iter()
        .filter(|l| l["kind"] == "screen" && l["failure"].is_null())
        .map(|l| l["worker"].as_str().unwrap())
        .collect();
    assert!(measured_by.len() >= 2, "both hosts measured: {measured_by:?}");
    // The confirmation ran on the leader's host alone; the report shows each worker.
    let confirmed_by: std::collections::BTreeSet<&str> = exported
        .iter()
        .filter(|l| l["kind"] == "confirm")
        .map(|l| l["worker"].as_str().unwrap())
        .collect();
    assert!(confirmed_by.len() <= 1, "{confirmed_by:?}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results/fleet/report.json")).unwrap()).unwrap();
    assert!(
        report["hosts"].as_array().is_some_and(|h| h.len() >= 2),
        "{}",
        report["hosts"]
    );
    assert_eq!(
        rows(&postgres, "SELECT state FROM studies WHERE name = 'fleet'")[0][0],
        "finished"
    );
    // Both servers are back on their original configs.
    assert_eq!(leader.config_bytes(), leader_original);
    assert_eq!(host.config_bytes(), host_original);
    // Neither ran before: neither runs after (the second worker learned it
    // from the lock the killed one left, although it found the server up).
    assert!(
        leader.jvm().is_none(),
        "the leader's TorchServe is stopped as it was found"
    );
    assert!(
        host.jvm().is_none(),
        "the worker's TorchServe is stopped as it was found"
    );
    assert!(std::fs::read_to_string(log("worker-2"))
        .unwrap()
        .contains("no longer hands out candidates"));
}

#[test]
#[cfg_attr(
    postgres_missing,
    ignore = "PostgreSQL is not installed (the distribution's `postgresql` package; .ci/run installs it)"
)]
#[cfg_attr(
    torchserve_missing,
    ignore = "TorchServe is not provisioned: run `make test` (scripts/setup-torchserve.sh)"
)]
fn a_database_restarted_twice_mid_study_ends_neither_leader_nor_worker() {
    let provisioned = require_torchserve!();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let postgres = common::postgres::Postgres::start();
    let url = postgres.url();
    let (leader, host) = (
        common::Deployment::new(&provisioned),
        common::Deployment::new(&provisioned),
    );
    let (leader_original, host_original) = (leader.config_bytes(), host.config_bytes());
    let dir = leader.dir.path();
    write_shared_study(dir, "restarts", 2, 8, "10s");
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(name);
    let mut tune = start_leader(dir, &postgres, "restarts", &log("tune"));
    let target = host.target.to_str().unwrap().to_string();
    let mut worker = servetune_in(
        host.dir.path(),
        &["worker", "--storage", &url, "--study", "restarts", "--target", &target],
        &log("worker"),
    );
    let worker_id = format!(
        "{}:{}",
        servetune::store::worker_id().rsplit_once(':').unwrap().0,
        worker.id()
    );
    // Restarted while the worker measures a trial it claimed, and again
    // once it has stored one (the leader busy with its own meanwhile).
    let running_of_worker = format!("SELECT number FROM trials WHERE worker = '{worker_id}' AND state = 'running'");
    wait_for(
        "a trial of the worker",
        Duration::from_secs(120),
        &[&log("tune"), &log("worker")],
        || rows(&postgres, &running_of_worker).pop(),
    );
    postgres.restart();
    let finished_of_worker = format!("SELECT number FROM trials WHERE worker = '{worker_id}' AND state = 'finished'");
    wait_for(
        "a finished trial of the worker",
        Duration::from_secs(120),
        &[&log("tune"), &log("worker")],
        || rows(&postgres, &finished_of_worker).pop(),
    );
    postgres.restart();
    wait_exit(&mut tune, &log("tune"), Duration::from_secs(420));
    wait_exit(&mut worker, &log("worker"), Duration::from_secs(120));

    let said = format!(
        "{}{}",
        std::fs::read_to_string(log("tune")).unwrap(),
        std::fs::read_to_string(log("worker")).unwrap()
    );
    assert!(
        said.contains("trying again"),
        "the broken connections were retried:\n{said}"
    );
    // No candidate counted twice; numbers unique and gap-free in the export.
    let screens = rows(
        &postgres,
        "SELECT point::text, count(*) FROM trials WHERE state = 'finished' AND entry->>'kind' = 'screen' GROUP BY 1",
    );
    assert!(screens.len() >= 2, "{screens:?}");
    assert!(screens.iter().all(|row| row[1] == "1"), "{screens:?}");
    let exported: Vec<Value> = std::fs::read_to_string(dir.join("results/restarts/trials.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let numbers: Vec<u64> = exported.iter().map(|l| l["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..exported.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        rows(&postgres, "SELECT state FROM studies WHERE name = 'restarts'")[0][0],
        "finished"
    );
    assert!(dir.join("results/restarts/report.json").is_file());
    assert_eq!(leader.config_bytes(), leader_original);
    assert_eq!(host.config_bytes(), host_original);
}

/// A shared study of `tiny` in `dir` (batch size 1-8, delay 1-`max_delay`
/// ms, random search, two confirmation rounds of the best).
fn write_shared_study(dir: &Path, name: &str, max_delay: u32, max_trials: usize, heartbeat_grace: &str) {
    std::fs::write(
        dir.join("space.toml"),
        format!(
            "[[parameter]]\nname = \"batch_size\"\nkind = \"pow2\"\nmin = 1\nmax = 8\ndefault = 1\n\
             target = \"models.{{model}}.batchSize\"\napply = \"hot\"\n\
             [[parameter]]\nname = \"max_batch_delay\"\nkind = \"int\"\nmin = 1\nmax = {max_delay}\ndefault = 1\n\
             target = \"models.{{model}}.maxBatchDelay\"\napply = \"hot\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("study.toml"),
        format!(
            "name = \"{name}\"\ntarget = \"target.toml\"\nspace = \"space.toml\"\nmodel = \"tiny\"\nbudget = \"240s\"\n\
             max_trials = {max_trials}\nstrategy = \"random\"\nheartbeat_grace = \"{heartbeat_grace}\"\n\
             [workload]\nbody = \"{}\"\nusers = 4\nduration = \"2s\"\nwarmup = \"1s\"\nsteady = false\n\
             confirm_top = 1\nconfirm_rounds = 2\n[constraints]\np99_ms = 2000\n",
            common::repo_root().join("examples/deployment/bodies/tiny").display()
        ),
    )
    .unwrap();
}

/// Starts the leader (`tune --storage`) of study `name` in `dir` and waits
/// until the study is in the store.
fn start_leader(dir: &Path, postgres: &common::postgres::Postgres, name: &str, log: &Path) -> std::process::Child {
    let url = postgres.url();
    let tune = servetune_in(
        dir,
        &["tune", "--study", "study.toml", "--storage", &url, "--json"],
        log,
    );
    let query = format!("SELECT id FROM studies WHERE name = '{name}'");
    wait_for("the study in the store", Duration::from_secs(60), &[log], || {
        (!rows(postgres, "SELECT 1 FROM pg_tables WHERE tablename = 'studies'").is_empty()
            && !rows(postgres, &query).is_empty())
        .then_some(())
    });
    tune
}
