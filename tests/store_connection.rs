//! How servetune reaches its PostgreSQL study store, against real servers
//! the tests start: TLS as libpq's `sslmode` says (`require` encrypts,
//! `verify-ca` checks the chain against `sslrootcert`, `verify-full` the
//! host name too, `prefer` falls back to plain text, `require` refuses a
//! server without TLS, `disable` stays plain), said on the command line
//! without the password; and a database restarted under a running study:
//! the claims and stores of a worker and a leader go on once it is back, and
//! no trial is counted twice.

mod common;

use common::postgres::{Postgres, TestCertificates};
use serde_json::json;
use servetune::store::{PgStorage, Storage, Store, StudyRecord, TrialStore};
use servetune::trial::Entry;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// The store at `url`, parsed as `--storage` would be.
fn storage(url: &str) -> PgStorage {
    match Storage::parse(url).unwrap() {
        Storage::Postgres(pg) => *pg,
        Storage::File => unreachable!("a postgres:// URL"),
    }
}

/// Whether a connection to `url` is encrypted, or why it failed.
fn encrypted(url: &str) -> Result<bool, String> {
    runtime().block_on(storage(url).encrypted()).map_err(|e| e.to_string())
}

#[test]
#[cfg_attr(
    postgres_missing,
    ignore = "PostgreSQL is not installed (the distribution's `postgresql` package; .ci/run installs it)"
)]
fn tls_modes_connect_to_a_tls_server_like_libpq() {
    let certificates = TestCertificates::for_host("localhost");
    let postgres = Postgres::start_with_tls(&certificates);
    let dir = tempfile::tempdir().unwrap();
    let (ca, other_ca) = (dir.path().join("ca.pem"), dir.path().join("other-ca.pem"));
    std::fs::write(&ca, &certificates.ca_pem).unwrap();
    std::fs::write(&other_ca, TestCertificates::for_host("localhost").ca_pem).unwrap();
    let port = postgres.port;
    // By address (the certificate names "localhost"), and by the name it carries.
    let by_address = |query: &str| format!("postgres://postgres@127.0.0.1:{port}/postgres?{query}");
    let by_name = |query: &str| format!("postgres://postgres@localhost:{port}/postgres?hostaddr=127.0.0.1&{query}");
    let ca = ca.display();

    assert_eq!(encrypted(&by_address("sslmode=require")), Ok(true));
    assert_eq!(encrypted(&by_address("sslmode=prefer")), Ok(true));
    assert_eq!(encrypted(&by_address("")), Ok(true), "prefer is the default");
    assert_eq!(encrypted(&by_address("sslmode=disable")), Ok(false));
    assert_eq!(
        encrypted(&postgres.socket_url()),
        Ok(false),
        "prefer through a Unix socket: no host name to check, plain text"
    );
    assert_eq!(
        encrypted(&by_address(&format!("sslmode=verify-ca&sslrootcert={ca}"))),
        Ok(true),
        "verify-ca checks the chain, not the name"
    );
    assert_eq!(
        encrypted(&by_name(&format!("sslmode=verify-full&sslrootcert={ca}"))),
        Ok(true)
    );

    let wrong_name = encrypted(&by_address(&format!("sslmode=verify-full&sslrootcert={ca}"))).unwrap_err();
    assert!(
        wrong_name.contains("verify-full") && wrong_name.contains("not valid for name"),
        "{wrong_name}"
    );
    let other = other_ca.display();
    let wrong_ca = encrypted(&by_address(&format!("sslmode=verify-ca&sslrootcert={other}"))).unwrap_err();
    assert!(
        wrong_ca.contains("verify-ca") && wrong_ca.contains("invalid peer certificate"),
        "{wrong_ca}"
    );
    let wrong_ca = encrypted(&by_address(&format!("sslmode=require&sslrootcert={other}"))).unwrap_err();
    assert!(
        wrong_ca.contains("invalid peer certificate"),
        "require with a CA checks the chain: {wrong_ca}"
    );

    // A study opens (and migrates) over a checked connection.
    let url = by_name(&format!("sslmode=verify-full&sslrootcert={ca}"));
    let record = StudyRecord {
        name: "tls",
        source: dir.path(),
        journal: dir.path().join("trials.jsonl"),
        space: None,
    };
    let (_, entries) = runtime()
        .block_on(TrialStore::open(&Storage::parse(&url).unwrap(), &record))
        .unwrap();
    assert!(entries.is_empty());

    // The command line says how the store is reached, never the password.
    let with_password = url.replace("postgres@", "postgres:s3cret@");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["studies", "--storage", &with_password])
        .env("SERVETUNE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("sslmode=verify-full") && stderr.contains("host name checked"),
        "{stderr}"
    );
    assert!(stdout.contains("tls"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains("s3cret"), "{stderr}");
}

#[test]
#[cfg_attr(
    postgres_missing,
    ignore = "PostgreSQL is not installed (the distribution's `postgresql` package; .ci/run installs it)"
)]
fn prefer_falls_back_to_plain_text_and_require_refuses_a_server_without_tls() {
    let postgres = Postgres::start();
    let url = |query: &str| format!("{}?{query}", postgres.url());
    assert_eq!(encrypted(&url("sslmode=prefer")), Ok(false));
    assert_eq!(encrypted(&postgres.url()), Ok(false), "prefer is the default");
    assert_eq!(encrypted(&url("sslmode=disable")), Ok(false));
    assert_eq!(encrypted(&postgres.socket_url()), Ok(false), "a Unix socket, prefer");
    let refused = encrypted(&url("sslmode=require")).unwrap_err();
    assert!(
        refused.contains("cannot connect (require)") && refused.contains("does not support TLS"),
        "{refused}"
    );
}

/// A screening result of `point` as trial `number`, measured by this process.
fn screened(number: usize, point: usize) -> Entry {
    serde_json::from_value(json!({
        "number": number, "kind": "screen", "point": [point],
        "values": {"batch_size": point.to_string()},
        "figures": {"throughput_rps": 100.0, "p50_ms": 5.0, "p99_ms": 9.0, "error_rate": 0.0, "memory_mb": 300.0},
        "failure": null, "loss": -100.0, "feasible": true, "restarted": false,
        "throughput_ci95": null, "duration_s": 2.0, "elapsed_s": number as f64,
        "worker": servetune::store::worker_id(),
    }))
    .unwrap()
}

fn no_loss(_: &servetune::store::RunningTrial) -> Entry {
    unreachable!("no trial falls silent in this test")
}

#[test]
#[cfg_attr(
    postgres_missing,
    ignore = "PostgreSQL is not installed (the distribution's `postgresql` package; .ci/run installs it)"
)]
fn a_restarted_database_ends_no_run_and_counts_each_trial_once() {
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let record = StudyRecord {
        name: "restarts",
        source: dir.path(),
        journal: dir.path().join("trials.jsonl"),
        space: None,
    };
    let grace = std::time::Duration::from_secs(60);
    runtime().block_on(async {
        let storage = Storage::parse(&postgres.url()).unwrap();
        let (mut store, _) = TrialStore::open(&storage, &record).await.unwrap();
        let study = Store::shared(&mut store).unwrap();

        // A worker's claim, the database restarted while it measures, its store.
        let number = study
            .claim(grace, &no_loss)
            .await
            .unwrap()
            .take(&vec![1])
            .await
            .unwrap();
        postgres.restart();
        assert_eq!(
            study.append(&screened(number, 1)).await.unwrap(),
            servetune::store::Appended::Kept
        );
        // A store whose answer was lost is tried again: kept once, no error.
        assert_eq!(
            study.append(&screened(number, 1)).await.unwrap(),
            servetune::store::Appended::Kept
        );

        // A claim open while the database restarts fails as transient (the
        // loop claims again); the next claim goes through.
        let claim = study.claim(grace, &no_loss).await.unwrap();
        assert_eq!(claim.finished.len(), 1);
        postgres.restart();
        let broken = claim.take(&vec![2]).await.unwrap_err();
        assert!(broken.is_transient(), "{broken}");
        let number = study
            .claim(grace, &no_loss)
            .await
            .unwrap()
            .take(&vec![2])
            .await
            .unwrap();

        // The leader's own trial (no claim) across a restart.
        postgres.restart();
        let baseline = study.begin(None).await.unwrap();
        postgres.restart();
        study.append(&screened(number, 2)).await.unwrap();
        let mut entry = screened(baseline, 0);
        entry.point = None;
        study.append(&entry).await.unwrap();
        postgres.restart();
        let entries = study.entries().await.unwrap();
        let numbers: Vec<usize> = entries.iter().map(|e| e.number).collect();
        assert_eq!(entries.len(), 3, "{numbers:?}");
        study.set_state(servetune::store::StudyState::Finished).await.unwrap();
    });
    // Each candidate once in the table, nothing left running.
    assert_eq!(
        postgres.psql("SELECT point::text, count(*) FROM trials GROUP BY 1 ORDER BY 1"),
        "[1]|1\n[2]|1\n|1\n"
    );
    assert_eq!(
        postgres
            .psql("SELECT count(*) FROM trials WHERE state = 'running'")
            .trim(),
        "0"
    );
}
