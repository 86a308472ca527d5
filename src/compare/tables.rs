//! The comparison as the published report lays it out — three tables
//! (latency, throughput, memory), each Direct | With TensorZero |
//! Difference — in Markdown, CSV and an SVG of p50/p99 per model, and the
//! files of `results/compare/<time>/` (with the three tables as bar charts
//! with interval whiskers, `compare-{latency,throughput,memory}.svg`, drawn
//! by `report::bars`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::prelude::*;

use super::overhead_tables::bracketed;
use super::{Comparison, ModelComparison};
use crate::stats::Interval;

fn plus_minus(interval: &Option<Interval>) -> String {
    interval
        .as_ref()
        .map(|i| format!(" ± {:.1}", (i.high - i.low) / 2.0))
        .unwrap_or_default()
}

/// A paired difference with its interval, and "(noise)" when the interval
/// holds zero: the rounds cannot tell the two paths apart.
fn signed(interval: &Option<Interval>, unit: &str) -> String {
    match interval {
        Some(i) => format!(
            "{:+.1} {unit} [{:+.1}, {:+.1}]{}",
            i.estimate,
            i.low,
            i.high,
            if i.low <= 0.0 && i.high >= 0.0 { " (noise)" } else { "" }
        ),
        None => "n/a (one round)".into(),
    }
}

fn latency_row(m: &ModelComparison) -> String {
    format!(
        "| {} | {:.1}{} / {:.1}{} | {:.1}{} / {:.1}{} | p50 {} · p99 {} |",
        m.model,
        m.direct.p50_ms,
        plus_minus(&m.direct.p50_ci95),
        m.direct.p99_ms,
        plus_minus(&m.direct.p99_ci95),
        m.gateway.p50_ms,
        plus_minus(&m.gateway.p50_ci95),
        m.gateway.p99_ms,
        plus_minus(&m.gateway.p99_ci95),
        signed(&m.difference.p50_ms, "ms"),
        signed(&m.difference.p99_ms, "ms"),
    )
}

/// The three tables and what they were measured on, as Markdown.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Direct TorchServe vs with TensorZero\n");
    let _ = writeln!(
        out,
        "Measured on {} logical CPUs ({}), {:.0} GB; the published comparison ran on {}: \
         absolute figures differ with the machine, the differences are what carries over. \
         Throughput: capacity at the model's p99 objective with errors ≤ 1 %, one search per path and \
         round. Latency: {} rounds of {:.0} s windows at a fixed load (half the lower capacity). The \
         paths alternate which goes first in every round; ± is the 95 % interval over rounds; a \
         difference is paired by round, with its interval, and \"(noise)\" when that interval holds \
         zero. Memory: PSS of TorchServe's process tree, plus the gateway's in the second column.\n",
        c.machine.logical_cpus, c.machine.cpu_model, c.machine.memory_gb, c.reference_machine, c.rounds, c.window_s
    );
    let _ = writeln!(out, "## Latency (p50 / p99, ms)\n");
    let _ = writeln!(out, "| Model | Direct | With TensorZero | Difference |");
    let _ = writeln!(out, "|---|---|---|---|");
    for m in &c.models {
        let _ = writeln!(out, "{}", latency_row(m));
    }
    let _ = writeln!(out, "\n## Throughput (requests/s at the p99 SLO)\n");
    let _ = writeln!(out, "| Model | SLO p99 | Direct | With TensorZero | Difference |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for m in &c.models {
        let _ = writeln!(
            out,
            "| {} | {:.0} ms | {:.1}{} | {:.1}{} | {:+.1} % (paired {} %): {} |",
            m.model,
            m.slo_p99_ms,
            m.direct.throughput_rps,
            plus_minus(&m.direct.throughput_ci95),
            m.gateway.throughput_rps,
            plus_minus(&m.gateway.throughput_ci95),
            m.difference.throughput_pct,
            bracketed(&m.difference.throughput_pct_ci95, 1),
            signed(&m.difference.throughput_rps, "req/s")
        );
    }
    let _ = writeln!(out, "\n## Memory (PSS, MB)\n");
    let _ = writeln!(out, "| Model | Direct | With TensorZero | Difference |");
    let _ = writeln!(out, "|---|---|---|---|");
    for m in &c.models {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:+.0} MB ({:+.1} %), paired {} |",
            m.model,
            m.direct.memory_mb,
            m.gateway.memory_mb,
            m.difference.memory_mb,
            m.difference.memory_pct,
            bracketed(&m.difference.memory_mb_ci95, 1)
        );
    }
    out.push_str(&super::overhead_tables::overhead_sections(c));
    out
}

/// One line per model and path, every figure in its own column.
pub fn csv(c: &Comparison) -> String {
    let mut out = String::from(
        "model,route,path,p50_ms,p99_ms,throughput_rps,memory_mb,slo_p99_ms,load_rps,cpu_ms_per_request\n",
    );
    for m in &c.models {
        let sides = [
            ("direct", Some(&m.direct)),
            ("gateway", Some(&m.gateway)),
            ("onnxruntime", m.onnxruntime.as_ref()),
        ];
        for (path, side) in sides.into_iter().filter_map(|(path, side)| Some((path, side?))) {
            let cpu = side
                .cpu_ms_per_request
                .map_or_else(String::new, |i| format!("{:.4}", i.estimate));
            let _ = writeln!(
                out,
                "{},{},{path},{:.3},{:.3},{:.3},{:.1},{},{:.3},{cpu}",
                m.model,
                m.route,
                side.p50_ms,
                side.p99_ms,
                side.throughput_rps,
                side.memory_mb,
                m.slo_p99_ms,
                m.load_rps
            );
        }
    }
    out
}

/// Bars of p50 and p99 per model, direct beside with TensorZero.
pub fn svg(c: &Comparison) -> String {
    let mut text = String::new();
    if let Err(e) = draw(c, &mut text) {
        tracing::warn!("drawing the comparison: {e}");
    }
    text
}

const BARS: [(&str, RGBColor, f64); 4] = [
    ("direct p50", RGBColor(120, 160, 220), 0.5),
    ("direct p99", RGBColor(40, 80, 160), 1.5),
    ("gateway p50", RGBColor(240, 170, 110), 2.5),
    ("gateway p99", RGBColor(200, 90, 30), 3.5),
];

fn bar_value(m: &ModelComparison, bar: usize) -> f64 {
    [m.direct.p50_ms, m.direct.p99_ms, m.gateway.p50_ms, m.gateway.p99_ms][bar]
}

fn draw(c: &Comparison, text: &mut String) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::with_string(text, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let top = c
        .models
        .iter()
        .map(|m| m.direct.p99_ms.max(m.gateway.p99_ms))
        .fold(1.0_f64, f64::max)
        * 1.15;
    let slots = (c.models.len() * 5).max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("p50 and p99 latency: direct vs with TensorZero", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..slots, 0.0..top)
        .map_err(|e| failed(&e))?;
    let names: Vec<String> = c.models.iter().map(|m| m.model.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("ms")
        .x_labels(c.models.len().max(1) * 5 + 1)
        .x_label_formatter(&|x| {
            let slot = (*x / 5.0).floor();
            if (x - slot * 5.0 - 2.0).abs() < 0.5 {
                names.get(slot as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| failed(&e))?;
    for (bar, (label, color, offset)) in BARS.into_iter().enumerate() {
        let series = c.models.iter().enumerate().map(move |(i, m)| {
            let x = i as f64 * 5.0 + offset;
            Rectangle::new([(x - 0.45, 0.0), (x + 0.45, bar_value(m, bar))], color.filled())
        });
        chart
            .draw_series(series)
            .map_err(|e| failed(&e))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

/// Writes compare.{md,csv,json,svg} and compare-*.svg to `results/compare/<time>/`.
pub fn save(results: &Path, c: &Comparison) -> anyhow::Result<PathBuf> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let dir = results.join("compare").join(stamp);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(c).expect("the comparison serialises");
    for (name, content) in [
        ("compare.md", markdown(c)),
        ("compare.csv", csv(c)),
        ("compare.json", json),
        ("compare.svg", svg(c)),
    ] {
        let path = dir.join(name);
        crate::config::file::write_data_atomically(&path, content.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let value = serde_json::to_value(c).expect("the comparison serialises");
    for (name, svg) in crate::report::bars::comparison_bars(&value) {
        let path = dir.join(name);
        crate::config::file::write_data_atomically(&path, svg.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}
