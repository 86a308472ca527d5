//! The comparison's sections beyond the published three tables: the
//! overhead at low load (paired), CPU per request of each process tree, the
//! runtimes row (ONNX Runtime, TF Serving), and which differences reached
//! the goals of precision (±1 ms, ±3 %, ±10 MB) and why not where not.
//! Markdown text only; `tables` puts it after the three tables.

use std::fmt::Write as _;

use super::{Comparison, Side};
use crate::stats::Interval;

/// A difference's goal and whether this run's interval reached it.
fn precision(interval: &Option<Interval>, goal: f64, unit: &str, why: &str) -> String {
    match interval {
        Some(i) if i.half_width() <= goal => format!("±{:.2} {unit}: reached ±{goal} {unit}", i.half_width()),
        Some(i) => format!("±{:.2} {unit}: not ±{goal} {unit} here ({why})", i.half_width()),
        None => format!("not measured: not ±{goal} {unit} here ({why})"),
    }
}

/// An interval as `estimate [low, high]`.
pub fn bracketed(interval: &Option<Interval>, digits: usize) -> String {
    interval.as_ref().map_or_else(
        || "n/a".to_string(),
        |i| format!("{:+.digits$} [{:+.digits$}, {:+.digits$}]", i.estimate, i.low, i.high),
    )
}

/// An interval of a positive figure as `estimate ± half`.
fn about(interval: &Option<Interval>) -> String {
    interval.as_ref().map_or_else(
        || "n/a".to_string(),
        |i| format!("{:.3} ± {:.3}", i.estimate, i.half_width()),
    )
}

/// The overhead measured apart from the model's noise (low-load pairs, CPU
/// per request), the ONNX Runtime and TF Serving rows, and which
/// differences reached the goals of precision.
pub fn overhead_sections(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Overhead at low load (one request in flight, paired, ms)\n\n\
         The two paths alternate request by request ({} pairs asked per model); each pair's \
         difference is free of the noise both requests share. Bootstrap 95 % intervals.\n",
        c.pairs
    );
    let _ = writeln!(
        out,
        "| Model | Pairs | Direct p50 / p99 | With TensorZero p50 / p99 | Difference p50 | Difference p99 |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for m in &c.models {
        let figure = |x: Option<f64>| x.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} | {} / {} | {} | {} |",
            m.model,
            m.difference.low_load_pairs,
            figure(m.direct.low_load_p50_ms),
            figure(m.direct.low_load_p99_ms),
            figure(m.gateway.low_load_p50_ms),
            figure(m.gateway.low_load_p99_ms),
            bracketed(&m.difference.low_load_p50_ms, 2),
            bracketed(&m.difference.low_load_p99_ms, 2),
        );
    }
    let _ = writeln!(
        out,
        "\n## CPU per request (ms of CPU, /proc times over each fixed-load window ÷ requests)\n\n\
         The whole path: TorchServe's frontend JVM and workers, and the gateway through it. \
         \"CPU-bound host\" is the throughput change when every core is busy (throughput ∝ 1 / CPU per request).\n"
    );
    let _ = writeln!(out, "| Model | Direct | With TensorZero | Frontend / workers (direct) | Gateway alone | Gateway share | CPU-bound host |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for m in &c.models {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} / {} | {} | {} | {} % |",
            m.model,
            about(&m.direct.cpu_ms_per_request),
            about(&m.gateway.cpu_ms_per_request),
            about(&m.direct.frontend_cpu_ms_per_request),
            about(&m.direct.workers_cpu_ms_per_request),
            about(&m.gateway.gateway_cpu_ms_per_request),
            m.difference
                .gateway_cpu_share_pct
                .map_or_else(|| "n/a".into(), |s| format!("{s:.1} %")),
            bracketed(&m.difference.cpu_bound_throughput_pct, 1),
        );
    }
    out.push_str(&runtime_rows(c));
    out.push_str(&precision_section(c));
    out
}

/// The published table's other runtimes: ONNX Runtime where the model has
/// an ONNX archive served, TF Serving never (and why).
fn runtime_rows(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Runtimes (direct, p50 / p99 ms · requests/s at the SLO · CPU ms per request)\n"
    );
    let _ = writeln!(out, "| Model | TorchServe (eager) | ONNX Runtime | TF Serving |");
    let _ = writeln!(out, "|---|---|---|---|");
    let row = |side: &Side| {
        format!(
            "{:.1} / {:.1} · {:.1}{} · {}",
            side.p50_ms,
            side.p99_ms,
            side.throughput_rps,
            side.throughput_ci95
                .map_or_else(String::new, |i| format!(" ± {:.1}", i.half_width())),
            about(&side.cpu_ms_per_request)
        )
    };
    for m in &c.models {
        let onnx = m
            .onnxruntime
            .as_ref()
            .map_or_else(|| format!("no {}-onnx served", m.model), row);
        let _ = writeln!(out, "| {} | {} | {onnx} | {} |", m.model, row(&m.direct), c.tf_serving);
    }
    out
}

/// Which differences reached ±1 ms, ±3 %, ±10 MB, and why not where not.
fn precision_section(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Precision of the differences (95 % half-widths against the goals)\n"
    );
    for m in &c.models {
        let d = &m.difference;
        let spread = |i: &Option<Interval>| i.as_ref().map_or(0.0, Interval::half_width);
        let lines = [
            (
                "latency p50 under load",
                precision(&d.p50_ms, 1.0, "ms", &format!(
                    "the model's own latency varies between rounds by ±{:.1} ms at this load; the low-load pairs measure the overhead instead",
                    spread(&m.direct.p50_ci95)
                )),
            ),
            (
                "latency p50 at low load",
                precision(&d.low_load_p50_ms, 1.0, "ms", "too few pairs for this model's spread: raise --pairs"),
            ),
            (
                "latency p99 at low load",
                precision(&d.low_load_p99_ms, 1.0, "ms", "a tail quantile needs many more pairs than the median"),
            ),
            (
                "throughput",
                precision(&d.throughput_pct_ci95, 3.0, "%", &match d.throughput_rounds_for_3pct {
                    Some(n) => format!("capacity varies between rounds; this spread needs about {n} rounds (--rounds)"),
                    None => "one round: no spread to judge".into(),
                }),
            ),
            (
                "memory",
                precision(&d.memory_mb_ci95, 10.0, "MB", &format!(
                    "TorchServe's own PSS (JVM heap, workers) drifts between windows; the gateway process alone: {}",
                    d.gateway_memory_mb.map_or_else(|| "n/a".into(), |i| format!("{:.1} ± {:.1} MB", i.estimate, i.half_width()))
                )),
            ),
        ];
        let _ = writeln!(out, "- **{}**", m.model);
        for (what, verdict) in lines {
            let _ = writeln!(out, "  - {what}: {verdict}");
        }
        if let Some(i) = &d.throughput_pct_ci95 {
            let _ = writeln!(
                out,
                "  - smallest throughput difference this run could detect: ±{:.1} %",
                i.half_width()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_says_whether_it_reached_its_goal_and_why_not() {
        let narrow = Some(Interval {
            estimate: 0.8,
            low: 0.6,
            high: 1.0,
        });
        let wide = Some(Interval {
            estimate: 2.0,
            low: -4.0,
            high: 8.0,
        });
        assert_eq!(precision(&narrow, 1.0, "ms", "noise"), "±0.20 ms: reached ±1 ms");
        assert_eq!(precision(&wide, 3.0, "%", "spread"), "±6.00 %: not ±3 % here (spread)");
        assert_eq!(
            precision(&None, 10.0, "MB", "one round"),
            "not measured: not ±10 MB here (one round)"
        );
        assert_eq!(bracketed(&narrow, 1), "+0.8 [+0.6, +1.0]");
    }
}
