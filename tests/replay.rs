//! The replay benchmark on the bundled landscapes, as a test: every strategy
//! reaches the target, the default gets there in fewer study seconds than
//! random search and with fewer restarts than the cost-blind TPE, and
//! `servetune replay --json` keeps its fields and adds the seconds.

use std::path::PathBuf;
use std::process::Command;

use servetune::replay::{load_landscape, replay, throughput_under_slo};
use servetune::search::StrategyKind;

fn landscape(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/landscapes")
        .join(name)
}

/// The landscapes and the SLO each is replayed at (as in the README).
const LANDSCAPES: [(&str, f64); 2] = [("tiny-cpu.csv", 25.0), ("tiny-cpu-cold.csv", 40.0)];

#[test]
fn the_default_strategy_spends_fewer_seconds_than_random_and_fewer_restarts_than_tpe() {
    for (name, slo) in LANDSCAPES {
        let landscape = load_landscape(&landscape(name)).unwrap();
        assert!(
            !landscape.space.cold_dimensions().is_empty(),
            "{name} marks its cold parameters"
        );
        let run = |kind| {
            replay(
                &landscape,
                kind,
                30,
                throughput_under_slo(slo, 0.01),
                0.03,
                landscape.costs,
            )
        };
        let default = run(StrategyKind::Default);
        let random = run(StrategyKind::Random);
        let tpe_local = run(StrategyKind::TpeLocal);
        let seconds = |r: &servetune::replay::ReplayReport| r.median_seconds_to_target.unwrap_or(f64::INFINITY);
        eprintln!(
            "{name}: default {:.0} s ({} restarts), tpe-local {:.0} s ({} restarts), random {:.0} s",
            seconds(&default),
            default.median_restarts,
            seconds(&tpe_local),
            tpe_local.median_restarts,
            seconds(&random)
        );
        assert_eq!(default.failed_seeds, 0, "{name}: the default always reaches the target");
        assert!(
            seconds(&default) < seconds(&random) * 0.5,
            "{name}: the default needs under half of random search's seconds"
        );
        assert!(
            default.median_restarts < tpe_local.median_restarts,
            "{name}: the default restarts less than the cost-blind TPE"
        );
        assert!(
            seconds(&default) <= seconds(&tpe_local),
            "{name}: and so gets there no later"
        );
        for kind in [
            StrategyKind::Grid,
            StrategyKind::HillClimb,
            StrategyKind::Tpe,
            StrategyKind::TpeCost,
        ] {
            let report = run(kind);
            assert!(
                report.median_seconds_to_target.is_some(),
                "{name}: {kind:?} reaches the target in most seeds"
            );
        }
    }
}

#[test]
fn replay_json_keeps_its_fields_and_adds_seconds() {
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["replay", "--landscape"])
        .arg(landscape("tiny-cpu.csv"))
        .args(["--strategy", "staged", "--seeds", "5", "--slo-p99-ms", "25", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for field in [
        "strategy",
        "seeds",
        "median_trials_to_target",
        "p90_trials_to_target",
        "failed_seeds",
        "trials_per_seed",
        "points",
        "best_feasible_throughput_rps",
        "median_seconds_to_target",
        "seconds_per_seed",
        "median_restarts",
    ] {
        assert!(report.get(field).is_some(), "replay --json has {field}: {report}");
    }
    assert!(report["median_seconds_to_target"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_landscape_with_a_bad_number_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "# servetune-landscape cold=b restart_s=10 hot_s=1 window_s=4\n\
         a,b,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n1,1,10,1,2,0,100\nNaN,1,10,1,2,0,100\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["replay", "--slo-p99-ms", "25", "--landscape"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("bad.csv:4") && stderr.contains("NaN"), "{stderr}");
}
