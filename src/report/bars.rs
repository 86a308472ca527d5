//! Grouped bar charts with 95 % interval whiskers, and the three charts of
//! a `compare` run (latency, throughput, memory: each model's paths side by
//! side) built from its JSON, so any column the comparison has — direct,
//! with TensorZero, ONNX Runtime when measured — is drawn the same way.
//!
//! Pure rendering (plotters' SVG backend) with the axes guarded against
//! empty and non-finite values. Called by `compare` when it saves.

use plotters::prelude::*;
use serde_json::Value;

/// One bar: its value and the 95 % interval (low, high) when known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// Groups (e.g. models) of bars, one per series (e.g. path).
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    pub series: Vec<String>,
    pub groups: Vec<String>,
    /// `bars[group][series]`; None where the group lacks that series.
    pub bars: Vec<Vec<Option<Bar>>>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(70, 120, 200),
    RGBColor(230, 130, 40),
    RGBColor(60, 160, 90),
    RGBColor(25, 60, 130),
    RGBColor(170, 80, 20),
    RGBColor(30, 110, 60),
];

type Drawn = Result<(), Box<dyn std::error::Error>>;

fn finite(x: f64) -> bool {
    x.is_finite() && x.abs() <= 1e12
}

/// The chart as SVG text.
pub fn bar_chart_svg(chart: &BarChart) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 520)).into_drawing_area();
        if let Err(e) = draw(&root, chart) {
            tracing::warn!("drawing {}: {e}", chart.title);
        }
        let _ = root.present();
    }
    svg
}

fn draw(root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>, c: &BarChart) -> Drawn {
    root.fill(&WHITE)?;
    let per_group = c.series.len() + 1;
    let slots = (c.groups.len() * per_group).max(1) as f64;
    let tops = c
        .bars
        .iter()
        .flatten()
        .flatten()
        .flat_map(|b| std::iter::once(b.value).chain(b.interval.map(|(_, high)| high)));
    // Headroom above the tallest bar for the legend.
    let top = super::timeline::top(tops) * (1.1 + 0.06 * c.series.len() as f64);
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..slots, 0.0..top)?;
    let groups = c.groups.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(c.y_label.as_str())
        .x_labels(c.groups.len().max(1) * per_group * 2 + 1)
        .x_label_formatter(&|x| {
            let group = (*x / per_group as f64).floor();
            let centre = group * per_group as f64 + (per_group - 1) as f64 / 2.0;
            if (x - centre).abs() < 0.26 {
                groups.get(group as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()?;
    for (s, name) in c.series.iter().enumerate() {
        let color = PALETTE[s % PALETTE.len()];
        let bars: Vec<(f64, Bar)> = c
            .bars
            .iter()
            .enumerate()
            .filter_map(|(g, row)| {
                row.get(s)
                    .copied()
                    .flatten()
                    .map(|bar| ((g * per_group + s) as f64, bar))
            })
            .filter(|(_, bar)| finite(bar.value))
            .collect();
        chart
            .draw_series(bars.iter().map(|(x, bar)| {
                Rectangle::new([(x + 0.1, 0.0), (x + 0.9, bar.value.clamp(0.0, top))], color.filled())
            }))?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        let whiskers = bars.iter().filter_map(|(x, bar)| {
            let (low, high) = bar.interval.filter(|(l, h)| finite(*l) && finite(*h))?;
            let (low, high) = (low.clamp(0.0, top), high.clamp(0.0, top));
            let mid = x + 0.5;
            Some(PathElement::new(
                [
                    (mid - 0.15, low),
                    (mid + 0.15, low),
                    (mid, low),
                    (mid, high),
                    (mid - 0.15, high),
                    (mid + 0.15, high),
                ],
                BLACK.stroke_width(2),
            ))
        });
        chart.draw_series(whiskers)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The columns of a compare JSON's model, in the tables' order, and their titles.
const COLUMNS: [(&str, &str); 3] = [
    ("direct", "direct"),
    ("gateway", "with TensorZero"),
    ("onnxruntime", "ONNX Runtime"),
];

fn number(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64()
}

/// `{estimate, low, high}` as (low, high).
fn interval(v: &Value, key: &str) -> Option<(f64, f64)> {
    let i = v.get(key)?;
    Some((number(i, "low")?, number(i, "high")?))
}

/// Mean PSS of one path over its rounds, with its 95 % interval.
fn memory_over_rounds(model: &Value, path: &str) -> Option<(f64, f64)> {
    let runs: Vec<f64> = model
        .get("rounds")?
        .as_array()?
        .iter()
        .filter(|r| r.get("path").and_then(Value::as_str) == Some(path))
        .filter_map(|r| Some(number(r, "torchserve_pss_mb")? + number(r, "gateway_pss_mb").unwrap_or(0.0)))
        .collect();
    crate::stats::mean_interval(&runs).map(|i| (i.low, i.high))
}

/// The columns the comparison measured (those present in any model).
fn columns(models: &[Value]) -> Vec<(&'static str, &'static str)> {
    COLUMNS
        .into_iter()
        .filter(|(key, _)| models.iter().any(|m| m.get(key).is_some_and(Value::is_object)))
        .collect()
}

/// The (low, high) interval of a model's column for one figure: (model, column, interval key).
type IntervalOf = dyn Fn(&Value, &str, &str) -> Option<(f64, f64)>;

/// One chart: a bar per column (and per figure) of each model.
fn chart_of(
    models: &[Value],
    title: &str,
    y_label: &str,
    figures: &[(&str, &str, &str)],
    interval_of: &IntervalOf,
) -> BarChart {
    let columns = columns(models);
    let series = figures
        .iter()
        .flat_map(|(_, _, label)| {
            columns.iter().map(move |(_, name)| match figures.len() {
                1 => name.to_string(),
                _ => format!("{name} {label}"),
            })
        })
        .collect();
    let bars = models
        .iter()
        .map(|m| {
            figures
                .iter()
                .flat_map(|(figure, ci, _)| {
                    columns.iter().map(move |(key, _)| {
                        let side = m.get(*key)?;
                        Some(Bar {
                            value: number(side, figure)?,
                            interval: interval_of(m, key, ci),
                        })
                    })
                })
                .collect()
        })
        .collect();
    BarChart {
        title: title.to_string(),
        y_label: y_label.to_string(),
        series,
        groups: models
            .iter()
            .map(|m| m.get("model").and_then(Value::as_str).unwrap_or("?").to_string())
            .collect(),
        bars,
    }
}

/// `compare-latency.svg`, `compare-throughput.svg` and `compare-memory.svg`
/// of a compare JSON (`compare --json`, `compare.json`).
pub fn comparison_bars(comparison: &Value) -> Vec<(&'static str, String)> {
    let models: Vec<Value> = comparison
        .get("models")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let side_interval = |m: &Value, key: &str, ci: &str| interval(m.get(key)?, ci);
    let latency = chart_of(
        &models,
        "Latency: p50 and p99 per path (whiskers: 95 % interval over rounds)",
        "ms",
        &[("p50_ms", "p50_ci95", "p50"), ("p99_ms", "p99_ci95", "p99")],
        &side_interval,
    );
    let throughput = chart_of(
        &models,
        "Throughput at the p99 SLO per path (whiskers: 95 % interval over rounds)",
        "requests/s",
        &[("throughput_rps", "throughput_ci95", "throughput")],
        &side_interval,
    );
    let memory = chart_of(
        &models,
        "Memory (PSS) per path (whiskers: 95 % interval over rounds)",
        "MB",
        &[("memory_mb", "", "memory")],
        &|m: &Value, key: &str, _: &str| memory_over_rounds(m, key),
    );
    vec![
        ("compare-latency.svg", bar_chart_svg(&latency)),
        ("compare-throughput.svg", bar_chart_svg(&throughput)),
        ("compare-memory.svg", bar_chart_svg(&memory)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `compare --json` of three models, ResNet-50 with an ONNX Runtime column.
    const FIXTURE: &str = include_str!("../../tests/fixtures/compare.json");

    #[test]
    fn the_three_tables_become_bar_charts_with_whiskers() {
        let json: Value = serde_json::from_str(FIXTURE).unwrap();
        let charts = comparison_bars(&json);
        let names: Vec<&str> = charts.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["compare-latency.svg", "compare-throughput.svg", "compare-memory.svg"]
        );
        for (name, svg) in &charts {
            assert!(svg.starts_with("<svg") && svg.contains("whiskers"), "{name}");
            for model in ["resnet50", "bert", "gpt2"] {
                assert!(svg.contains(model), "{name}: {model}");
            }
            assert!(
                svg.contains("with TensorZero") && svg.contains("ONNX Runtime"),
                "{name}"
            );
        }
        let latency = &charts[0].1;
        assert!(latency.contains("direct p50") && latency.contains("with TensorZero p99"));
        // Latency: 4 bars for each of 3 models plus ResNet-50's 2 ONNX Runtime
        // bars, each with a whisker; the legend adds a swatch per series.
        let throughput = &charts[1].1;
        let memory = &charts[2].1;
        // Whiskers are the only black lines 2 px wide.
        let whiskers = |svg: &str| svg.matches(r##"stroke="#000000" stroke-width="2""##).count();
        assert_eq!(whiskers(latency), 14, "a whisker per latency bar");
        assert_eq!(whiskers(throughput), 7, "a whisker per throughput bar");
        assert_eq!(
            whiskers(memory),
            4,
            "memory whiskers where two rounds measured a path (GPT-2 had one, ONNX Runtime none)"
        );
    }

    #[test]
    fn an_empty_or_odd_comparison_still_draws() {
        for json in [
            serde_json::json!({}),
            serde_json::json!({"models": []}),
            serde_json::json!({"models": [{"model": "m", "direct": {"p50_ms": "x"}, "gateway": {"p50_ms": f64::MAX}}]}),
        ] {
            for (name, svg) in comparison_bars(&json) {
                assert!(svg.starts_with("<svg") && !svg.contains("NaN"), "{name}");
            }
        }
        let chart = BarChart {
            title: "t".into(),
            y_label: "y".into(),
            series: vec!["a".into()],
            groups: vec!["g".into()],
            bars: vec![vec![Some(Bar {
                value: f64::NAN,
                interval: Some((f64::NEG_INFINITY, f64::INFINITY)),
            })]],
        };
        assert!(bar_chart_svg(&chart).starts_with("<svg"));
    }
}
