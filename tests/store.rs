//! The study store: the file journal and a real PostgreSQL (started by the
//! test from the distribution's packages) pass one suite — a study is
//! created empty, keeps its trials in order across reopening, names their
//! workers, refuses a trial number taken twice, and is listed with its state
//! and best trial. PostgreSQL's own: a newer schema is refused, a password
//! is never printed, and `tune --storage` runs a study whose trials land in
//! the database and in results/<study>/ alike.

mod common;

use std::path::Path;

use serde_json::{json, Value};
use servetune::store::{list_studies, Storage, StudyRecord, TrialStore};
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
    assert_eq!(postgres.psql("SELECT max(version) FROM servetune_schema").trim(), "1");

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
    let postgres = common::postgres::Postgres::start();
    let deployment = common::Deployment::new(&provisioned);
    let dir = deployment.dir.path();
    let root = common::repo_root();
    std::fs::write(
        dir.join("study.toml"),
        format!(
            "name = \"shared\"\ntarget = \"target.toml\"\nspace = \"{}\"\nmodel = \"tiny\"\nbudget = \"50s\"\n\
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
