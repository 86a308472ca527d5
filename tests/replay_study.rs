//! A study whose `[workload]` replays an access log, against a real
//! TorchServe 0.12.0 serving `tiny`: every trial's window replays the same
//! looped slice, so each measures the log's rate (not a closed loop's).

mod common;

/// A log of `tiny` at 20 requests/s for 3 s.
fn write_log(path: &std::path::Path) {
    let text: String = (0..60)
        .map(|i| {
            let ms = i * 50;
            format!(
                "2026-11-28T10:00:{:02}.{:03} - /127.0.0.1:1 \"POST /predictions/tiny HTTP/1.1\" 200 3\n",
                ms / 1000,
                ms % 1000
            )
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

#[test]
#[cfg_attr(torchserve_missing, ignore = "TorchServe 0.12 is not provisioned: run `make test`")]
fn a_study_measures_every_candidate_on_the_replayed_log() {
    let provisioned = require_torchserve!();
    let deployment = common::Deployment::with_target_extra(&provisioned, "[environment]\nOMP_NUM_THREADS = \"1\"");
    let original = deployment.config_bytes();
    let dir = deployment.dir.path();
    write_log(&dir.join("access_log.log"));
    let space = common::repo_root().join("search-spaces/torchserve-cpu.toml");
    let bodies = common::repo_root().join("examples/deployment/bodies");
    let study = dir.join("study.toml");
    std::fs::write(
        &study,
        format!(
            "name = \"replayed\"\ntarget = \"target.toml\"\nspace = \"{}\"\nmodel = \"tiny\"\nbudget = \"120s\"\nmax_trials = 2\n\
             [workload]\nreplay = \"access_log.log\"\nbody_dir = \"{}\"\nspeed = \"2x\"\nloop = true\n\
             duration = \"3s\"\nwarmup = \"1s\"\nconfirm_duration = \"3s\"\nconfirm_top = 1\nconfirm_rounds = 2\n\
             [constraints]\np99_ms = 2000.0\n",
            space.display(),
            bodies.display()
        ),
    )
    .unwrap();
    let results = dir.join("results");
    common::tune(&study, &results);
    let journal = std::fs::read_to_string(results.join("replayed/trials.jsonl")).unwrap();
    let windows: Vec<(f64, f64)> = journal
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| {
            let figures = &entry["figures"];
            Some((figures["throughput_rps"].as_f64()?, figures["error_rate"].as_f64()?))
        })
        .collect();
    eprintln!("throughput and error rate of each window: {windows:?}");
    assert!(
        windows.len() >= 3,
        "a baseline, a screened candidate, confirmations: {journal}"
    );
    // The log's 20 requests/s at 2x, looped: 40/s offered whatever the
    // candidate. A window without errors measured those 40; none measured
    // more (a closed loop would push tiny to hundreds a second); a candidate
    // too slow for the replay shows it as errors, not as a lower offered load.
    assert!(windows.iter().all(|(rate, _)| *rate <= 46.0), "{windows:?}");
    let clean: Vec<f64> = windows
        .iter()
        .filter(|(_, errors)| *errors == 0.0)
        .map(|(rate, _)| *rate)
        .collect();
    assert!(!clean.is_empty(), "the baseline serves the replay: {windows:?}");
    for rate in &clean {
        assert!(
            (rate - 40.0).abs() <= 6.0,
            "a clean window measured {rate} req/s, not the replay's 40: {windows:?}"
        );
    }
    // Each measured window carries its per-model figures (one model here).
    for line in journal.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        if entry["figures"].is_object() {
            let tiny = &entry["models"]["tiny"];
            assert!(tiny["throughput_rps"].as_f64().is_some_and(|r| r > 0.0), "{entry}");
            assert!(tiny["p99_ms"].as_f64().is_some(), "{entry}");
        }
    }
    assert_eq!(deployment.config_bytes(), original, "byte-identical after the study");
}
