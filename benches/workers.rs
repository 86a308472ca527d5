//! How a shared study scales with workers: each bundled landscape replayed
//! with 1, 2, 4 and 8 simulated workers, each with its own server (its own
//! moves and restarts), the strategy seeing every finished trial and asking
//! beside the points in flight (constant liar). Prints, per landscape and
//! worker count, the median trials and wall-clock seconds to the target and
//! the speed-up over one worker. No servers are needed. Asserts nothing.
//!
//! `cargo bench --bench workers [-- SEEDS]`

use servetune::replay::{load_landscape, replay_parallel, throughput_under_slo};
use servetune::search::StrategyKind;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and runs benches once: nothing to do.
        return;
    }
    let seeds: u64 = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    for (file, slo) in [("tiny-cpu.csv", 40.0), ("tiny-cpu-cold.csv", 40.0)] {
        let path = std::path::Path::new("benches/landscapes").join(file);
        let landscape = match load_landscape(&path) {
            Ok(landscape) => landscape,
            Err(e) => {
                eprintln!("workers: {e}");
                std::process::exit(2);
            }
        };
        let objective = throughput_under_slo(slo, 0.01);
        println!(
            "\n{file} (SLO p99 {slo} ms, {} points, {seeds} seeds, strategy default; moves as recorded: {:?})",
            landscape.samples.len(),
            landscape.costs
        );
        println!("| workers | median trials to target | median wall s to target | speed-up | failed seeds | concurrent duplicates |");
        println!("|---|---|---|---|---|---|");
        let mut one_worker = None;
        for workers in [1, 2, 4, 8] {
            let report = replay_parallel(
                &landscape,
                StrategyKind::Default,
                workers,
                seeds,
                objective,
                0.05,
                landscape.costs,
            );
            let seconds = report.median_seconds_to_target;
            if workers == 1 {
                one_worker = seconds;
            }
            let show = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.1}"));
            let speedup = match (one_worker, seconds) {
                (Some(one), Some(now)) if now > 0.0 => format!("{:.2}x", one / now),
                _ => "n/a".into(),
            };
            println!(
                "| {workers} | {} | {} | {speedup} | {} | {} |",
                show(report.median_trials_to_target),
                show(seconds),
                report.failed_seeds,
                report.concurrent_duplicates
            );
        }
    }
}
