//! What a study leaves behind in `results/<study>/`: the recommended config
//! files per tier (`recommended/<tier>/config.properties`, written with the
//! lossless editor from the original, and the `model-config.yaml` fields that
//! belong in a model archive), `summary.md` with the table and the gains over
//! the baseline and over TorchServe's defaults, `trials.csv`, SVG plots
//! (`plots.rs`) and `report.json`.

mod plots;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::{apply_assignments, Assignment, ModelField, Models, Properties, MODELS_KEY};
use crate::objective::{choose_tiers, pareto_front, Figures, Tier};
use crate::space::{Point, Space};
use crate::study::journal::{Entry, TrialKind};
use crate::study::settings::Settings;
use crate::study::StopReason;

/// One evaluated point with its best estimate.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub point: Point,
    pub description: String,
    pub figures: Figures,
    pub throughput_ci95: Option<f64>,
    pub confirmed: bool,
}

/// Relative changes in percent (positive throughput gain is good; negative
/// p99 and memory changes are good).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gains {
    pub throughput_pct: f64,
    pub p99_pct: f64,
    pub memory_pct: f64,
}

impl Gains {
    fn between(new: &Figures, old: &Figures) -> Self {
        let pct = |a: f64, b: f64| if b > 0.0 { (a / b - 1.0) * 100.0 } else { 0.0 };
        Self {
            throughput_pct: pct(new.throughput_rps, old.throughput_rps),
            p99_pct: pct(new.p99_ms, old.p99_ms),
            memory_pct: pct(new.memory_mb, old.memory_mb),
        }
    }
}

/// A recommendation: a tier, the config that realises it, and its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub tier: Tier,
    pub description: String,
    pub values: BTreeMap<String, String>,
    pub figures: Figures,
    pub throughput_ci95: Option<f64>,
    pub confirmed: bool,
    pub gain_vs_baseline: Option<Gains>,
    pub gain_vs_defaults: Option<Gains>,
    #[serde(skip)]
    pub config: Vec<u8>,
    #[serde(skip)]
    pub model_config_yaml: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub study: String,
    pub strategy: String,
    pub stop: StopReason,
    pub trials: usize,
    pub failed_trials: usize,
    pub elapsed_s: f64,
    pub budget_s: f64,
    pub slo_p99_ms: f64,
    pub baseline: Option<Figures>,
    pub defaults: Option<Figures>,
    pub recommendations: Vec<Recommendation>,
    pub pareto_front: Vec<String>,
    #[serde(skip)]
    pub candidates: Vec<Candidate>,
    #[serde(skip)]
    pub entries: Vec<Entry>,
    #[serde(skip)]
    pub config_name: String,
}

impl Report {
    pub fn recommendation(&self, tier: Tier) -> Option<&Recommendation> {
        self.recommendations.iter().find(|r| r.tier == tier)
    }
}

pub struct Inputs<'a> {
    pub settings: &'a Settings,
    pub space: &'a Space,
    pub original_config: &'a [u8],
    pub config_name: String,
    pub entries: &'a [Entry],
    pub candidates: Vec<Candidate>,
    pub baseline: Option<Figures>,
    pub defaults: Option<Figures>,
    pub stop: StopReason,
    pub elapsed: Duration,
}

/// The original config with `point` applied, and the model-config.yaml
/// fields of the tuned model.
pub fn config_for(space: &Space, point: &[usize], model: &str, original: &[u8]) -> anyhow::Result<(Vec<u8>, String)> {
    let mut props = Properties::parse(original.to_vec()).map_err(|e| anyhow::anyhow!("original config: {e}"))?;
    let assignments: Vec<Assignment> = space
        .assignments(point, model)
        .iter()
        .map(|a| a.parse().map_err(|e: String| anyhow::anyhow!("{a}: {e}")))
        .collect::<Result<_, _>>()?;
    apply_assignments(&mut props, &assignments).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut yaml = format!("# Frontend settings of model '{model}' (model-config.yaml in its archive).\n");
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
    Ok((props.into_bytes(), yaml))
}

pub fn build(inputs: Inputs<'_>) -> anyhow::Result<Report> {
    let s = inputs.settings;
    let figures: Vec<Figures> = inputs.candidates.iter().map(|c| c.figures).collect();
    let reference = inputs.baseline.or(inputs.defaults).unwrap_or(Figures {
        throughput_rps: 1.0,
        p50_ms: 1.0,
        p99_ms: 1.0,
        error_rate: 0.0,
        memory_mb: 1.0,
    });
    let mut recommendations = Vec::new();
    for (tier, chosen) in choose_tiers(&figures, &s.constraints, &s.weights, &reference) {
        let Some(index) = chosen else { continue };
        let candidate = &inputs.candidates[index];
        let (config, model_config_yaml) = config_for(inputs.space, &candidate.point, &s.model, inputs.original_config)?;
        recommendations.push(Recommendation {
            tier,
            description: candidate.description.clone(),
            values: inputs
                .space
                .values(&candidate.point)
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            figures: candidate.figures,
            throughput_ci95: candidate.throughput_ci95,
            confirmed: candidate.confirmed,
            gain_vs_baseline: inputs.baseline.map(|b| Gains::between(&candidate.figures, &b)),
            gain_vs_defaults: inputs.defaults.map(|d| Gains::between(&candidate.figures, &d)),
            config,
            model_config_yaml,
        });
    }
    let feasible: Vec<usize> = (0..figures.len())
        .filter(|&i| s.constraints.feasible(&figures[i]))
        .collect();
    let feasible_figures: Vec<Figures> = feasible.iter().map(|&i| figures[i]).collect();
    let pareto = pareto_front(&feasible_figures)
        .into_iter()
        .map(|i| inputs.candidates[feasible[i]].description.clone())
        .collect();
    Ok(Report {
        study: s.name.clone(),
        strategy: s.strategy.resolve().label().to_string(),
        stop: inputs.stop,
        trials: inputs.entries.len(),
        failed_trials: inputs.entries.iter().filter(|e| e.failure.is_some()).count(),
        elapsed_s: inputs.elapsed.as_secs_f64(),
        budget_s: s.budget.as_secs_f64(),
        slo_p99_ms: s.constraints.p99_ms,
        baseline: inputs.baseline,
        defaults: inputs.defaults,
        recommendations,
        pareto_front: pareto,
        candidates: inputs.candidates,
        entries: inputs.entries.to_vec(),
        config_name: inputs.config_name,
    })
}

/// Writes everything under `dir`.
pub fn export(report: &Report, dir: &Path) -> anyhow::Result<()> {
    let write = |path: &Path, bytes: &[u8]| -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        crate::config::file::write_atomically(path, bytes, dir).with_context(|| format!("writing {}", path.display()))
    };
    let recommended = dir.join("recommended");
    if recommended.exists() {
        std::fs::remove_dir_all(&recommended).with_context(|| format!("clearing {}", recommended.display()))?;
    }
    for r in &report.recommendations {
        let tier_dir = recommended.join(r.tier.label());
        let name = if report.config_name.is_empty() {
            "config.properties"
        } else {
            &report.config_name
        };
        write(&tier_dir.join(name), &r.config)?;
        write(&tier_dir.join("model-config.yaml"), r.model_config_yaml.as_bytes())?;
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
    Ok(())
}

fn signed(x: f64) -> String {
    format!("{}{x:.1}%", if x >= 0.0 { "+" } else { "" })
}

pub fn summary_markdown(report: &Report) -> String {
    let mut md = format!(
        "# servetune study `{}`\n\nStrategy {}, {} trials ({} failed) in {:.0} s of a {:.0} s budget; stopped: {:?}. \
         Objective: maximum throughput with p99 ≤ {} ms.\n\n",
        report.study,
        report.strategy,
        report.trials,
        report.failed_trials,
        report.elapsed_s,
        report.budget_s,
        report.stop,
        report.slo_p99_ms
    );
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
    md.push_str("\n## Recommendations\n\n| tier | throughput ± 95% CI | vs baseline (throughput, p99, memory) | vs defaults | confirmed |\n|---|---|---|---|---|\n");
    for r in &report.recommendations {
        let ci = r.throughput_ci95.map_or(String::from("n/a"), |ci| {
            format!("{:.1} ± {ci:.1}", r.figures.throughput_rps)
        });
        let gains = |g: &Option<Gains>| {
            g.map_or("n/a".into(), |g| {
                format!(
                    "{} / {} / {}",
                    signed(g.throughput_pct),
                    signed(g.p99_pct),
                    signed(g.memory_pct)
                )
            })
        };
        md.push_str(&format!(
            "| {} | {ci} | {} | {} | {} |\n",
            r.tier.label(),
            gains(&r.gain_vs_baseline),
            gains(&r.gain_vs_defaults),
            if r.confirmed { "yes" } else { "screening only" }
        ));
    }
    if report.recommendations.is_empty() {
        md.push_str("\nNo candidate met the constraints: nothing is recommended.\n");
    }
    md.push_str("\nEach tier's deployable files are in `recommended/<tier>/`. Pareto front (throughput, p99, memory), feasible only:\n\n");
    for p in &report.pareto_front {
        md.push_str(&format!("- {p}\n"));
    }
    md.push_str("\nPlots: `throughput-vs-p99.svg`, `memory-vs-p99.svg`. Every trial: `trials.csv`, `trials.jsonl`.\n");
    md
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
        "number,kind,{},throughput_rps,p50_ms,p99_ms,error_rate,memory_mb,feasible,restarted,failure\n",
        names.join(",")
    );
    for e in &report.entries {
        let values: Vec<String> = names
            .iter()
            .map(|n| e.values.get(n).cloned().unwrap_or_default())
            .collect();
        let f = e.figures;
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},\"{}\"\n",
            e.number,
            kind_label(e.kind),
            values.join(","),
            f.map_or(String::new(), |f| format!("{:.2}", f.throughput_rps)),
            f.map_or(String::new(), |f| format!("{:.3}", f.p50_ms)),
            f.map_or(String::new(), |f| format!("{:.3}", f.p99_ms)),
            f.map_or(String::new(), |f| format!("{:.5}", f.error_rate)),
            f.map_or(String::new(), |f| format!("{:.1}", f.memory_mb)),
            e.feasible,
            e.restarted,
            e.failure
                .clone()
                .unwrap_or_default()
                .replace('"', "'")
                .replace('\n', " ")
        ));
    }
    csv
}

fn kind_label(kind: TrialKind) -> &'static str {
    match kind {
        TrialKind::Baseline => "baseline",
        TrialKind::Screen => "screen",
        TrialKind::Confirm => "confirm",
    }
}
