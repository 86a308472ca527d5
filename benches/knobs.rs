//! Chooses the `staged` strategy's knobs by replay: every combination of a
//! small grid, 30 seeds each, on a recorded landscape (by default the
//! *second* one, `tiny-cpu-cold.csv`, so that the README's headline figures,
//! from `tiny-cpu.csv`, are not those the knobs were fitted to). Prints one
//! row per combination, best median seconds to target first, and the row of
//! the knobs servetune ships. Asserts nothing: it informs a choice.
//!
//! `cargo bench --bench knobs [-- LANDSCAPE.csv SLO_P99_MS]`

use servetune::replay::{load_landscape, replay_with, throughput_under_slo, ReplayReport};
use servetune::search::{Knobs, Staged, Strategy, KNOBS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and runs benches once: nothing to do.
        return;
    }
    let path = args
        .first()
        .cloned()
        .unwrap_or_else(|| "benches/landscapes/tiny-cpu-cold.csv".to_string());
    let slo: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(40.0);
    let landscape = match load_landscape(std::path::Path::new(&path)) {
        Ok(landscape) => landscape,
        Err(e) => {
            eprintln!("knobs: {e}");
            std::process::exit(2);
        }
    };
    let objective = throughput_under_slo(slo, 0.01);
    let mut rows: Vec<(Knobs, ReplayReport)> = Vec::new();
    for initial_design in [0, 4] {
        for min_stage_trials in [2, 3, 4] {
            for patience in [2, 3, 4] {
                for local_cycle in [2, 3] {
                    for stage_cap in [2, 3] {
                        let knobs = Knobs {
                            initial_design,
                            min_stage_trials,
                            patience,
                            local_cycle,
                            stage_cap,
                        };
                        let make = |seed: u64| -> Box<dyn Strategy> { Box::new(Staged::with_knobs(seed, knobs)) };
                        let report =
                            replay_with(&landscape, "staged".into(), &make, 30, objective, 0.03, landscape.costs);
                        rows.push((knobs, report));
                    }
                }
            }
        }
    }
    let key = |r: &ReplayReport| r.median_seconds_to_target.unwrap_or(f64::INFINITY);
    rows.sort_by(|a, b| key(&a.1).total_cmp(&key(&b.1)));
    println!(
        "landscape {path}: {} configs, SLO p99 <= {slo} ms, 30 seeds; restart {} s, live change {} s, window {} s",
        rows[0].1.points, landscape.costs.restart_s, landscape.costs.hot_s, landscape.costs.window_s
    );
    println!("| initial design | min stage | patience | local cycle | stage cap | median s | p90 s | median trials | failed |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let show = |v: Option<f64>| v.map_or("failed".to_string(), |v| format!("{v:.0}"));
    for (knobs, report) in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            knobs.initial_design,
            knobs.min_stage_trials,
            knobs.patience,
            knobs.local_cycle,
            knobs.stage_cap,
            show(report.median_seconds_to_target),
            show(report.p90_seconds_to_target),
            show(report.median_trials_to_target),
            report.failed_seeds,
            if *knobs == KNOBS { " ← shipped" } else { "" }
        );
    }
}
