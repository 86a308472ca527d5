//! What a study leaves behind in `results/<study>/`: the recommended files
//! per tier (`recommended/<tier>/config.properties`, written with the
//! lossless editor from the original, the `model-config.yaml` fields that
//! belong in a model archive, the `environment` TorchServe must start with,
//! servetune's log4j2 file when the tier changes the log level, and in a
//! stack the gateway's `tensorzero.toml` and `gateway.environment`),
//! `summary.md` (the table, each recommendation's interval and gain over the
//! baseline with its interval, what the measurements cannot tell apart, what
//! logging and threads the recommendation runs with, what was not searched
//! and why, what moves cost, the cost per million requests of each tier
//! and the balanced tier's soak when asked for), `trials.csv`, SVG plots
//! (`plots.rs`, `study_timeline.rs`) and `report.json`. When the confirmation did not complete, what the
//! screening alone suggests goes to `recommended/balanced-not-confirmed/`
//! with a README saying so. The study decides; this module only renders and
//! writes.

pub mod bars;
mod contents;
pub mod cost;
mod plots;
pub mod study_timeline;
pub mod timeline;

use std::path::Path;

use anyhow::Context as _;

use crate::objective::{Figures, Tier};
use crate::trial::Interval;
pub use contents::{hosts_of, Gains, HostFigures, Recommendation, RecommendedFiles, Report, WarmStartSummary};

/// The cost of the baseline and of each recommended tier on this machine
/// at `prices` (the study file's `[cost]`), with the lowest-cost tier.
pub fn cost_of_tiers(
    prices: &cost::Prices,
    baseline: Option<&Figures>,
    recommendations: &[Recommendation],
) -> cost::CostReport {
    let tiers: Vec<cost::Priced> = recommendations
        .iter()
        .map(|r| cost::Priced {
            label: r.tier.label(),
            description: &r.description,
            figures: &r.figures,
        })
        .collect();
    cost::tiers_cost(prices, crate::machine::logical_cpus() as f64, baseline, &tiers)
}

/// The `model-config.yaml` fields of `model` in a config's `models={…}`.
pub fn model_config_yaml(config: &[u8], model: &str) -> String {
    use crate::config::{ModelField, Models, Properties, MODELS_KEY};
    let mut yaml = format!("# Frontend settings of model '{model}' (model-config.yaml in its archive).\n");
    let Ok(props) = Properties::parse(config.to_vec()) else {
        return yaml;
    };
    if let Some(models) = props.get(MODELS_KEY).and_then(|v| Models::parse(v).ok()) {
        for field in [
            ModelField::MinWorkers,
            ModelField::MaxWorkers,
            ModelField::BatchSize,
            ModelField::MaxBatchDelay,
            ModelField::ResponseTimeout,
        ] {
            if let Ok(Some(value)) = models.field(model, field) {
                yaml.push_str(&format!("{}: {value}\n", field.name()));
            }
        }
    }
    yaml
}

/// Writes everything under `dir`.
pub fn export(report: &Report, dir: &Path) -> anyhow::Result<()> {
    let write = |path: &Path, bytes: &[u8]| -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        crate::config::file::write_data_atomically(path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    let recommended = dir.join("recommended");
    if recommended.exists() {
        std::fs::remove_dir_all(&recommended).with_context(|| format!("clearing {}", recommended.display()))?;
    }
    let config_name = if report.config_name.is_empty() {
        "config.properties"
    } else {
        &report.config_name
    };
    for r in &report.recommendations {
        write_tier(&recommended.join(r.tier.label()), config_name, r, &write)?;
    }
    if let Some(r) = &report.not_confirmed {
        let tier_dir = recommended.join(NOT_CONFIRMED_DIR);
        write_tier(&tier_dir, config_name, r, &write)?;
        write(&tier_dir.join("README.md"), not_confirmed_readme(report, r).as_bytes())?;
    }
    write(&dir.join("summary.md"), summary_markdown(report).as_bytes())?;
    write(&dir.join("trials.csv"), trials_csv(report).as_bytes())?;
    write(
        &dir.join("report.json"),
        serde_json::to_string_pretty(report).expect("serialises").as_bytes(),
    )?;
    write(
        &dir.join("throughput-vs-p99.svg"),
        plots::throughput_vs_p99(report).as_bytes(),
    )?;
    write(&dir.join("memory-vs-p99.svg"), plots::memory_vs_p99(report).as_bytes())?;
    write(
        &dir.join("study-timeline.svg"),
        study_timeline::study_timeline_svg(&report.entries).as_bytes(),
    )?;
    Ok(())
}

/// The folder, under `recommended/`, of what the screening alone suggests
/// when the confirmation did not complete.
pub const NOT_CONFIRMED_DIR: &str = "balanced-not-confirmed";

/// Writes one tier's deployable files into `tier_dir`.
fn write_tier(
    tier_dir: &Path,
    config_name: &str,
    r: &Recommendation,
    write: &dyn Fn(&Path, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    write(&tier_dir.join(config_name), &r.files.config)?;
    write(
        &tier_dir.join("model-config.yaml"),
        r.files.model_config_yaml.as_bytes(),
    )?;
    for (model, yaml) in &r.files.model_configs {
        write(&tier_dir.join(format!("model-config-{model}.yaml")), yaml.as_bytes())?;
    }
    let environment: String = r.environment.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    write(&tier_dir.join("environment"), environment.as_bytes())?;
    if let Some((file, text)) = &r.files.log4j {
        write(&tier_dir.join(file), text.as_bytes())?;
    }
    if let Some((file, bytes)) = &r.files.gateway_config {
        write(&tier_dir.join(file), bytes)?;
    }
    if let Some(gateway) = &r.gateway_environment {
        let environment: String = gateway.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        write(&tier_dir.join("gateway.environment"), environment.as_bytes())?;
    }
    if let Some(manifest) = &r.files.tier_manifest {
        write(&tier_dir.join(crate::apply::tier::TIER_FILE), manifest.as_bytes())?;
    }
    Ok(())
}

/// The figures of a recommendation in one line.
fn figures_line(f: &Figures, runs: usize) -> String {
    format!(
        "{:.1} req/s, p50 {:.2} ms, p99 {:.2} ms, errors {:.2}%, memory {:.0} MB (PSS), from {runs} screening run(s)",
        f.throughput_rps,
        f.p50_ms,
        f.p99_ms,
        f.error_rate * 100.0,
        f.memory_mb
    )
}

/// What the screening alone suggests, in words: the advice and its figures.
fn not_confirmed_text(report: &Report, r: &Recommendation) -> String {
    let advice = if r.keep_current {
        format!("**keep the current config** ({})", r.description)
    } else {
        format!("the best screening candidate, **NOT CONFIRMED**: {}", r.description)
    };
    let gain = r.gain_vs_baseline.map_or(String::new(), |g| {
        format!(
            " Over the baseline's screening: throughput {}, p99 {}, memory {}.",
            signed(g.throughput_pct),
            signed(g.p99_pct),
            signed(g.memory_pct)
        )
    });
    format!(
        "{}.\n\nWhat the screening alone suggests (balanced): {advice}. Figures: {}.{gain} {}.\n",
        report
            .confirmation_incomplete
            .as_deref()
            .unwrap_or("the confirmation did not complete"),
        figures_line(&r.figures, r.runs),
        r.reason
    )
}

/// The README of `recommended/balanced-not-confirmed/`.
fn not_confirmed_readme(report: &Report, r: &Recommendation) -> String {
    format!(
        "# NOT CONFIRMED: study `{}`\n\nThese files were not confirmed: {}\nThe files here realise it (the config \
         file, model-config.yaml fields, `environment`); they are no tier recommendation.\n",
        report.study,
        not_confirmed_text(report, r)
    )
}

fn signed(x: f64) -> String {
    format!("{}{x:.1}%", if x >= 0.0 { "+" } else { "" })
}

fn interval_pct(i: &Option<Interval>) -> String {
    i.map_or("n/a".into(), |i| {
        format!("{} [{}, {}]", signed(i.estimate), signed(i.low), signed(i.high))
    })
}

fn hosts_markdown(hosts: &[HostFigures]) -> String {
    let mut md = String::from(
        "
## Hosts

Several workers measured this study, each on its own server; each screened other candidates, \
         so their medians compare hosts only roughly. The confirmation rounds (and so every recommended figure) ran \
         on one host: the one with confirmation runs.\n\n\
         | worker | screening trials | failed | confirmation runs | median req/s | best there |\n|---|---|---|---|---|---|\n",
    );
    for h in hosts {
        let best = h.best.as_ref().map_or("none feasible".into(), |(description, f)| {
            format!("{description}: {:.1} req/s, p99 {:.1} ms", f.throughput_rps, f.p99_ms)
        });
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {best} |\n",
            h.worker,
            h.screening_trials,
            h.failed_trials,
            h.confirmation_runs,
            h.median_throughput_rps.map_or("n/a".into(), |t| format!("{t:.1}")),
        ));
    }
    md
}

/// A recommendation's figures at a profile's peak and per model, from its
/// latest window (empty without a profile or a replayed log).
fn traffic_text(r: &Recommendation) -> String {
    let mut text = String::new();
    if let Some(peak) = &r.peak {
        text.push_str(&format!(
            "At the profile's peak ({:.0} req/s offered): {:.1} req/s, p99 {:.1} ms, errors {:.2}%.\n",
            peak.rate_rps,
            peak.throughput_rps,
            peak.p99_ms,
            peak.error_rate * 100.0
        ));
    }
    if !r.models.is_empty() {
        text.push_str("\n| model | throughput req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n");
        for (model, f) in &r.models {
            text.push_str(&format!(
                "| {model} | {:.1} | {:.2} | {:.2} | {:.2}% |\n",
                f.throughput_rps,
                f.p50_ms,
                f.p99_ms,
                f.error_rate * 100.0
            ));
        }
    }
    text
}

/// What a warm start reused, as the summary says it.
fn warm_start_text(warm: &WarmStartSummary) -> String {
    let outcome = if warm.unchanged {
        "its recommendation still wins within the noise: unchanged, the search stopped early"
    } else {
        "the search went on from there"
    };
    format!(
        "Warm start from `{}`: its {} screening trials told to the strategy at weight {}, its recommendation and \
         best candidates ({}) measured first; {outcome}.\n\n",
        warm.from, warm.earlier_trials, warm.prior_weight, warm.measured_first
    )
}

pub fn summary_markdown(report: &Report) -> String {
    let mut md = format!(
        "# servetune study `{}`\n\nStrategy {}: {} screening trials and {} confirmation runs ({} failed) in {:.0} s \
         of a {:.0} s budget; search stopped: {:?}. Objective: maximum throughput with p99 ≤ {:.1} ms{}.\n\n",
        report.study,
        report.strategy,
        report.screening_trials,
        report.confirmation_runs,
        report.failed_trials,
        report.elapsed_s,
        report.budget_s,
        report.stop,
        report.slo_p99_ms,
        if report.slo_from_baseline {
            " (the baseline's own p99: no worse than the config as it was)"
        } else {
            ""
        }
    );
    if !report.model_limits.is_empty() {
        md.push_str(&format!(
            "Each model's own limits: {}.\n\n",
            report.model_limits.describe()
        ));
    }
    if let Some(warm) = &report.warm_start {
        md.push_str(&warm_start_text(warm));
    }
    let row = |name: &str, f: &Figures| {
        format!(
            "| {name} | {:.1} | {:.2} | {:.2} | {:.2}% | {:.0} |\n",
            f.throughput_rps,
            f.p50_ms,
            f.p99_ms,
            f.error_rate * 100.0,
            f.memory_mb
        )
    };
    md.push_str(
        "| config | throughput req/s | p50 ms | p99 ms | errors | memory MB (PSS) |\n|---|---|---|---|---|---|\n",
    );
    if let Some(b) = &report.baseline {
        md.push_str(&row("baseline (config before the study)", b));
    }
    if let Some(d) = &report.defaults {
        md.push_str(&row("TorchServe defaults", d));
    }
    for r in &report.recommendations {
        md.push_str(&row(&format!("**{}**: {}", r.tier.label(), r.description), &r.figures));
    }
    md.push_str(
        "\n## Recommendations\n\nOnly configs re-measured in the confirmation rounds (alternating on one server) are \
         recommended; intervals are 95 % Student-t intervals over those independent runs.\n\n\
         | tier | throughput req/s [95% CI] | runs | gain over baseline: throughput [95% CI] | p99 [95% CI] | memory [95% CI] | logging | threads per worker |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in &report.recommendations {
        let throughput = r.throughput.map_or(format!("{:.1}", r.figures.throughput_rps), |i| {
            format!("{:.1} [{:.1}, {:.1}]", i.estimate, i.low, i.high)
        });
        let gains = r.gain_vs_baseline_ci95;
        md.push_str(&format!(
            "| {}{} | {throughput} | {} | {} | {} | {} | {} | {} |\n",
            r.tier.label(),
            if r.keep_current { " (keep current)" } else { "" },
            r.runs,
            interval_pct(&gains.and_then(|g| g.throughput_pct)),
            interval_pct(&gains.and_then(|g| g.p99_pct)),
            interval_pct(&gains.and_then(|g| g.memory_pct)),
            r.logging,
            r.threads_per_worker
        ));
    }
    for r in &report.recommendations {
        md.push_str(&format!("\n**{}**: {}. {}", r.tier.label(), r.description, r.reason));
        if !r.indistinguishable_from.is_empty() {
            md.push_str(&format!(
                " Cannot be told apart from: {}.",
                r.indistinguishable_from.join("; ")
            ));
        }
        md.push('\n');
        md.push_str(&traffic_text(r));
    }
    if let Some(why) = &report.no_recommendation {
        md.push_str(&format!("\nNothing is recommended: {why}\n"));
    }
    if let Some(r) = &report.not_confirmed {
        md.push_str(&format!(
            "\n## Not confirmed\n\n{}\nIts files are in `recommended/{NOT_CONFIRMED_DIR}/` (with a README saying so).\n",
            not_confirmed_text(report, r)
        ));
    }
    md.push_str(
        "\nEach tier's deployable files are in `recommended/<tier>/`: the config file, the model-config.yaml fields, \
         `environment` (variables TorchServe must start with, e.g. in a systemd unit's `EnvironmentFile=`), and \
         servetune's log4j2 file when the tier changes TorchServe's log level (the config's `vmargs` names it in \
         `.servetune/` beside the config file).\n",
    );
    md.push_str(&deploy_line(report));
    if report.recommendations.iter().any(|r| r.gateway_environment.is_some()) {
        md.push_str(
            "In this stack each tier also has the gateway's config and `gateway.environment` (variables the \
             TensorZero gateway must start with, beside the stack's own).\n",
        );
    }
    if let Some(soak) = &report.soak {
        md.push_str(&soak_markdown(soak));
    }
    if let Some(cost) = &report.cost {
        md.push_str(&cost::cost_markdown(cost));
    }
    if !report.incidents.is_empty() {
        md.push_str(
            "\n## Incidents\n\nConfirmation runs with an incident were measured again and left out of the figures.\n\n",
        );
        for incident in &report.incidents {
            md.push_str(&format!("- {incident}\n"));
        }
    }
    if !report.hosts.is_empty() {
        md.push_str(&hosts_markdown(&report.hosts));
    }
    if !report.not_searched.is_empty() {
        md.push_str("\n## Not searched\n\n");
        for n in &report.not_searched {
            md.push_str(&format!("- `{}`: {}\n", n.parameter, n.reason));
        }
    }
    let c = &report.costs;
    let seconds = |s: Option<f64>| s.map_or("n/a".into(), |s| format!("{s:.1} s"));
    md.push_str(&format!(
        "\n## Moves\n\n{:.0}% of moves were live. Median cost until every worker was READY: restart {} ({}×), \
         re-register {} ({}×), scale workers {} ({}×){}; {} trials needed no change.\n",
        report.hot_share * 100.0,
        seconds(c.restart_s),
        c.restarts,
        seconds(c.register_s),
        c.registers,
        seconds(c.scale_s),
        c.scales,
        if c.gateways > 0 {
            format!(", the gateway alone {} ({}×)", seconds(c.gateway_s), c.gateways)
        } else {
            String::new()
        },
        c.unchanged
    ));
    for (e, window) in report.entries.iter().filter_map(|e| e.window_of.map(|w| (e, w))) {
        md.push_str(&format!(
            "Trial {} ({}) is the config the server was found at: it was screened on the baseline's window \
             (trial {window}), not measured again.\n",
            e.number,
            e.values
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ));
    }
    md.push_str("\nPareto front (throughput, p99, memory), feasible only:\n\n");
    for p in &report.pareto_front {
        md.push_str(&format!("- {p}\n"));
    }
    md.push_str(
        "\nPlots: `throughput-vs-p99.svg`, `memory-vs-p99.svg`, `study-timeline.svg` (each trial over study time). \
         Every trial: `trials.csv`, `trials.jsonl`.\n",
    );
    let left_out = plots::left_out(report);
    if left_out > 0 {
        md.push_str(&format!(
            "The plots leave out {left_out} config(s) whose figures are not finite numbers (see `trials.csv`).\n"
        ));
    }
    md
}

/// The balanced recommendation's soak, in words.
fn soak_markdown(soak: &crate::bench::soak::SoakReport) -> String {
    let slope = soak.memory.and_then(|m| m.slope_mb_per_h).map_or("n/a".into(), |i| {
        format!("{:+.1} MB/h [{:+.1}, {:+.1}]", i.estimate, i.low, i.high)
    });
    format!(
        "\n## Soak\n\nThe balanced recommendation ran {:.0} s under the study's load: **{}**. Memory slope (all \
         processes, RSS) {slope}; throughput {:.1} → {:.1} req/s ({:+.1} %) and p99 {:.2} → {:.2} ms ({:+.1} %) from \
         the first tenth to the last; {} errors ({:.2} %).\n",
        soak.duration_s,
        soak.verdict,
        soak.throughput_first_rps,
        soak.throughput_last_rps,
        soak.throughput_drift_pct,
        soak.p99_first_ms,
        soak.p99_last_ms,
        soak.p99_drift_pct,
        soak.errors,
        soak.error_rate * 100.0
    )
}

/// How to deploy a tier the way it was measured (its changed keys, its
/// environment and log4j2 file, rolled back if the server does not come up).
fn deploy_line(report: &Report) -> String {
    let deployable = |r: &&Recommendation| r.files.tier_manifest.is_some();
    let balanced = report.recommendation(Tier::Balanced).filter(deployable);
    let Some(tier) = balanced.or_else(|| report.recommendations.iter().find(deployable)) else {
        return String::new();
    };
    format!(
        "Deploy a tier as it was measured — only the keys it changes (hand edits made since the study stay), its \
         environment and log4j2 file, rolled back if TorchServe does not come up: \
         `servetune apply --from RESULTS/{}/recommended/{}/ --target TARGET.toml --restart` (`tier.json` says what \
         it changes and which deployment it was measured on; copying the config file alone loses the environment).\n",
        report.study,
        tier.tier.label()
    )
}

pub fn trials_csv(report: &Report) -> String {
    let names: Vec<String> = report
        .entries
        .iter()
        .flat_map(|e| e.values.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut csv = format!(
        "number,kind,round,{},throughput_rps,p50_ms,p99_ms,error_rate,memory_mb,feasible,switch,switch_s,warmup_s,duration_s,steady,failure,window_of\n",
        names.join(",")
    );
    for e in &report.entries {
        let values: Vec<String> = names
            .iter()
            .map(|n| e.values.get(n).cloned().unwrap_or_default())
            .collect();
        let f = e.figures;
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{:?},{:.2},{:.1},{:.1},{},\"{}\",{}\n",
            e.number,
            e.kind.label(),
            e.round.map_or(String::new(), |r| r.to_string()),
            values.join(","),
            f.map_or(String::new(), |f| format!("{:.2}", f.throughput_rps)),
            f.map_or(String::new(), |f| format!("{:.3}", f.p50_ms)),
            f.map_or(String::new(), |f| format!("{:.3}", f.p99_ms)),
            f.map_or(String::new(), |f| format!("{:.5}", f.error_rate)),
            f.map_or(String::new(), |f| format!("{:.1}", f.memory_mb)),
            e.feasible,
            e.switch,
            e.switch_s,
            e.warmup_s,
            e.duration_s,
            e.stability.as_ref().map_or(String::new(), |s| s.stable.to_string()),
            e.failure
                .clone()
                .unwrap_or_default()
                .replace('"', "'")
                .replace('\n', " "),
            e.window_of.map_or(String::new(), |w| w.to_string())
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use plots::tests::{figures, report_of};

    fn recommendation(description: &str, keep_current: bool) -> Recommendation {
        Recommendation {
            tier: Tier::Balanced,
            description: description.into(),
            values: BTreeMap::from([("batch_size".to_string(), "8".to_string())]),
            figures: figures(300.0, 20.0),
            models: Default::default(),
            peak: None,
            throughput_ci95: None,
            throughput: None,
            runs: 1,
            confirmed: false,
            keep_current,
            indistinguishable_from: Vec::new(),
            reason: "best balanced score of the screening; NOT CONFIRMED".into(),
            gain_vs_baseline: Some(Gains::between(&figures(300.0, 20.0), &figures(100.0, 40.0))),
            gain_vs_baseline_ci95: None,
            gain_vs_defaults: None,
            logging: "TorchServe log level INFO".into(),
            threads_per_worker: "1 (OMP_NUM_THREADS=1)".into(),
            environment: BTreeMap::from([("OMP_NUM_THREADS".to_string(), "1".to_string())]),
            gateway_environment: None,
            files: RecommendedFiles {
                config: b"batch_size=8\n".to_vec(),
                model_config_yaml: "batchSize: 8\n".into(),
                model_configs: BTreeMap::new(),
                log4j: None,
                gateway_config: None,
                tier_manifest: None,
            },
        }
    }

    /// A study whose confirmation did not complete: nothing recommended,
    /// the screening's suggestion exported and marked.
    fn unconfirmed_report(suggestion: Recommendation) -> Report {
        let mut report = report_of(&[figures(300.0, 20.0)], Some(figures(100.0, 40.0)), 50.0);
        report.no_recommendation = Some("nothing was confirmed".into());
        report.confirmation_incomplete =
            Some("the confirmation rounds did not complete (0 confirmation run(s) kept)".into());
        report.not_confirmed = Some(suggestion);
        report
    }

    #[test]
    fn an_unconfirmed_suggestion_is_exported_marked_with_its_figures() {
        let dir = tempfile::tempdir().unwrap();
        let report = unconfirmed_report(recommendation("batch_size=8", false));
        export(&report, dir.path()).unwrap();
        let tier = dir.path().join("recommended").join(NOT_CONFIRMED_DIR);
        assert_eq!(
            std::fs::read(tier.join("config.properties")).unwrap(),
            b"batch_size=8\n"
        );
        assert_eq!(
            std::fs::read_to_string(tier.join("environment")).unwrap(),
            "OMP_NUM_THREADS=1\n"
        );
        assert!(!dir.path().join("recommended/balanced").exists(), "no tier is claimed");
        let readme = std::fs::read_to_string(tier.join("README.md")).unwrap();
        assert!(readme.starts_with("# NOT CONFIRMED"), "{readme}");
        assert!(
            readme.contains("did not complete") && readme.contains("batch_size=8"),
            "{readme}"
        );
        assert!(
            readme.contains("300.0 req/s") && readme.contains("p99 20.00 ms"),
            "{readme}"
        );
        let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(
            summary.contains("## Not confirmed") && summary.contains("**NOT CONFIRMED**"),
            "{summary}"
        );
        assert!(
            summary.contains("throughput +200.0%") && summary.contains(NOT_CONFIRMED_DIR),
            "{summary}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
        assert!(json["confirmation_incomplete"]
            .as_str()
            .unwrap()
            .contains("did not complete"));
        assert_eq!(json["not_confirmed"]["confirmed"], false);
        assert_eq!(json["not_confirmed"]["figures"]["throughput_rps"], 300.0);
        assert!(
            json["recommendations"].as_array().unwrap().is_empty(),
            "the old fields stay"
        );
    }

    #[test]
    fn keeping_the_current_config_is_said_with_its_figures() {
        let dir = tempfile::tempdir().unwrap();
        let report = unconfirmed_report(recommendation("keep the current config (the config as it was)", true));
        export(&report, dir.path()).unwrap();
        let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(summary.contains("**keep the current config**"), "{summary}");
        assert!(summary.contains("300.0 req/s"), "{summary}");
        let readme = std::fs::read_to_string(dir.path().join("recommended").join(NOT_CONFIRMED_DIR).join("README.md"));
        assert!(readme.unwrap().contains("keep the current config"));
    }

    #[test]
    fn cost_rows_and_the_soak_verdict_reach_the_summary_and_report_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = report_of(&[figures(300.0, 20.0)], Some(figures(100.0, 40.0)), 50.0);
        report.recommendations = vec![recommendation("batch_size=8", false)];
        let prices: cost::Prices = serde_json::from_str(r#"{"core_hour": 0.05}"#).unwrap();
        report.cost = Some(cost_of_tiers(
            &prices,
            report.baseline.as_ref(),
            &report.recommendations,
        ));
        let memory = crate::bench::track::MemoryTrack::default();
        report.soak = Some(crate::bench::soak::analyse(&[], &memory, 0.0, 0.0));
        export(&report, dir.path()).unwrap();
        let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(
            summary.contains("## Cost") && summary.contains("lowest-cost: **balanced**"),
            "{summary}"
        );
        assert!(
            summary.contains("## Soak") && summary.contains("**stable**"),
            "{summary}"
        );
        let timeline = std::fs::read_to_string(dir.path().join("study-timeline.svg")).unwrap();
        assert!(timeline.starts_with("<svg") && summary.contains("study-timeline.svg"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(json["cost"]["lowest_cost"], "balanced");
        let baseline = json["cost"]["baseline"]["cost_per_million_requests"].as_f64().unwrap();
        let balanced = json["cost"]["tiers"][0]["cost_per_million_requests"].as_f64().unwrap();
        assert!(
            (baseline / balanced - 3.0).abs() < 1e-9,
            "a third of the cost at three times the throughput"
        );
        assert_eq!(json["soak"]["verdict"], "stable");
        assert!(json["recommendations"].is_array(), "the old fields stay");
    }

    #[test]
    fn an_unstable_soak_is_said_in_the_balanced_reason() {
        let mut report = report_of(&[figures(300.0, 20.0)], None, 50.0);
        report.recommendations = vec![recommendation("batch_size=8", false)];
        let leak: Vec<(f64, f64)> = (0..1800).map(|t| (f64::from(t), 800.0 + f64::from(t) / 60.0)).collect();
        let memory = crate::bench::track::MemoryTrack {
            processes: Vec::new(),
            total_mb: leak,
        };
        let soak = crate::bench::soak::analyse(&[], &memory, 0.0, 0.0);
        assert!(!soak.stable);
        report.record_soak(soak);
        let reason = &report.recommendations[0].reason;
        assert!(reason.contains("grows 60 MB/h"), "{reason}");
        assert!(summary_markdown(&report).contains("**grows 60 MB/h**"));
    }

    #[test]
    fn a_complete_confirmation_exports_no_unconfirmed_folder() {
        let dir = tempfile::tempdir().unwrap();
        let report = report_of(&[figures(300.0, 20.0)], Some(figures(100.0, 40.0)), 50.0);
        export(&report, dir.path()).unwrap();
        assert!(!dir.path().join("recommended").join(NOT_CONFIRMED_DIR).exists());
        let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(!summary.contains("Not confirmed"), "{summary}");
    }

    #[test]
    fn trials_csv_names_the_window_a_reused_trial_stands_on() {
        let entry = |number: usize,
                     kind: &str,
                     failure: Option<&str>,
                     window_of: Option<usize>|
         -> crate::trial::Entry {
            serde_json::from_value(serde_json::json!({
                "number": number, "kind": kind, "point": [0], "values": {"batch_size": "1"},
                "figures": {"throughput_rps": 100.0, "p50_ms": 5.0, "p99_ms": 9.0, "error_rate": 0.0, "memory_mb": 300.0},
                "failure": failure, "loss": -100.0, "feasible": true, "restarted": false,
                "throughput_ci95": null, "duration_s": 2.0, "elapsed_s": 1.0, "window_of": window_of,
            }))
            .unwrap()
        };
        let mut report = report_of(&[figures(100.0, 9.0)], None, 50.0);
        report.entries = vec![
            entry(0, "baseline", Some("a \"quoted\", failure"), None),
            entry(1, "screen", None, Some(0)),
        ];
        let csv = trials_csv(&report);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].ends_with(",failure,window_of"), "{}", lines[0]);
        assert!(lines[1].ends_with(",\"a 'quoted', failure\","), "{}", lines[1]);
        assert!(lines[2].ends_with(",\"\",0"), "{}", lines[2]);
    }
}
