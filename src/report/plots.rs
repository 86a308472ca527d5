//! SVG plots of a study (plotters' SVG backend): throughput against p99 with
//! the feasible Pareto frontier and the SLO line, and memory against p99.

use plotters::prelude::*;

use super::Report;
use crate::objective::{pareto_front, Figures};

const SIZE: (u32, u32) = (800, 560);

fn bounds(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let max = values.clone().fold(f64::MIN, f64::max);
    let min = values.fold(f64::MAX, f64::min);
    if !(max.is_finite() && min.is_finite()) {
        return (0.0, 1.0);
    }
    let pad = ((max - min) * 0.08).max(max.abs() * 0.05).max(1e-3);
    ((min - pad).max(0.0), max + pad)
}

/// What one scatter plot shows.
struct Plot {
    title: &'static str,
    x_label: &'static str,
    y_label: &'static str,
    /// The (x, y) of a candidate.
    xy: fn(&Figures) -> (f64, f64),
    /// Draw the feasible throughput/p99 frontier.
    frontier: bool,
}

/// Throughput (y) against p99 (x): every candidate, the feasible Pareto
/// frontier, the SLO line, the baseline and the recommendations.
pub fn throughput_vs_p99(report: &Report) -> String {
    render(
        report,
        &Plot {
            title: "Throughput vs p99 (each point a candidate)",
            x_label: "p99 latency (ms)",
            y_label: "throughput (req/s)",
            xy: |f| (f.p99_ms, f.throughput_rps),
            frontier: true,
        },
    )
}

/// Memory (y) against p99 (x).
pub fn memory_vs_p99(report: &Report) -> String {
    render(
        report,
        &Plot {
            title: "Memory vs p99",
            x_label: "p99 latency (ms)",
            y_label: "memory, PSS of the process tree (MB)",
            xy: |f| (f.p99_ms, f.memory_mb),
            frontier: false,
        },
    )
}

fn render(report: &Report, plot: &Plot) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = draw(&root, report, plot);
        let _ = root.present();
    }
    svg
}

fn draw<'a>(
    root: &'a DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    report: &Report,
    plot: &Plot,
) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let points: Vec<Figures> = report.candidates.iter().map(|c| c.figures).collect();
    let (title, x_label, y_label, xy, frontier) = (plot.title, plot.x_label, plot.y_label, plot.xy, plot.frontier);
    root.fill(&WHITE)?;
    let mut all: Vec<(f64, f64)> = points.iter().map(xy).collect();
    all.extend(report.baseline.iter().map(xy));
    let (x0, mut x1) = bounds(all.iter().map(|p| p.0));
    let slo = report.slo_p99_ms.is_finite().then_some(report.slo_p99_ms);
    x1 = x1.max(slo.unwrap_or(0.0) * 1.1);
    let (y0, y1) = bounds(all.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw()?;
    chart
        .draw_series(points.iter().map(|f| Circle::new(xy(f), 4, BLUE.mix(0.5).filled())))?
        .label("candidate")
        .legend(|(x, y)| Circle::new((x, y), 4, BLUE.mix(0.5).filled()));
    if let Some(slo) = slo {
        chart
            .draw_series(LineSeries::new([(slo, y0), (slo, y1)], RED.stroke_width(2)))?
            .label(format!("SLO p99 = {slo:.1} ms"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RED.stroke_width(2)));
    }
    if frontier {
        let feasible: Vec<Figures> = points
            .iter()
            .copied()
            .filter(|f| f.p99_ms <= slo.unwrap_or(f64::INFINITY))
            .collect();
        let mut front: Vec<(f64, f64)> = pareto_front(&feasible).into_iter().map(|i| xy(&feasible[i])).collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The throughput/p99 frontier: keep points that raise throughput as p99 grows.
        let mut best = f64::MIN;
        front.retain(|p| {
            let keep = p.1 > best;
            best = best.max(p.1);
            keep
        });
        chart
            .draw_series(LineSeries::new(front, GREEN.stroke_width(2)))?
            .label("Pareto frontier (feasible)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], GREEN.stroke_width(2)));
    }
    if let Some(baseline) = &report.baseline {
        chart
            .draw_series(std::iter::once(TriangleMarker::new(xy(baseline), 8, BLACK.filled())))?
            .label("baseline")
            .legend(|(x, y)| TriangleMarker::new((x, y), 6, BLACK.filled()));
    }
    // One marker per recommended config; tiers that chose the same config share a label.
    let mut labelled: Vec<(String, (f64, f64), Vec<&str>)> = Vec::new();
    for r in &report.recommendations {
        match labelled
            .iter_mut()
            .find(|(description, _, _)| *description == r.description)
        {
            Some((_, _, tiers)) => tiers.push(r.tier.label()),
            None => labelled.push((r.description.clone(), xy(&r.figures), vec![r.tier.label()])),
        }
    }
    for (_, (x, y), tiers) in labelled {
        chart.draw_series(std::iter::once(Circle::new((x, y), 7, MAGENTA.stroke_width(2))))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("  {}", tiers.join(", ")),
            (x, y),
            ("sans-serif", 13),
        )))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::{Candidate, StopReason};

    fn figures(throughput_rps: f64, p99_ms: f64) -> Figures {
        Figures {
            throughput_rps,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            error_rate: 0.0,
            memory_mb: 500.0 + p99_ms,
        }
    }

    #[test]
    fn plots_show_candidates_slo_and_frontier() {
        let candidates = [(100.0, 10.0), (300.0, 30.0), (400.0, 90.0)]
            .iter()
            .enumerate()
            .map(|(i, &(t, p))| Candidate {
                point: Some(vec![i]),
                description: format!("c{i}"),
                figures: figures(t, p),
                runs: 1,
                throughput: None,
                confirmed: false,
                throughput_runs: vec![t],
                p99_runs: vec![p],
                memory_runs: vec![500.0 + p],
            })
            .collect();
        let report = Report {
            study: "s".into(),
            strategy: "grid".into(),
            stop: StopReason::Budget,
            trials: 3,
            screening_trials: 3,
            confirmation_runs: 0,
            failed_trials: 0,
            elapsed_s: 1.0,
            budget_s: 2.0,
            slo_p99_ms: 50.0,
            slo_from_baseline: false,
            baseline: Some(figures(80.0, 40.0)),
            defaults: None,
            recommendations: Vec::new(),
            pareto_front: Vec::new(),
            costs: Default::default(),
            hot_share: 1.0,
            not_searched: Vec::new(),
            incidents: Vec::new(),
            no_recommendation: None,
            hosts: Vec::new(),
            candidates,
            entries: Vec::new(),
            config_name: "config.properties".into(),
        };
        let svg = throughput_vs_p99(&report);
        assert!(svg.starts_with("<svg") && svg.contains("Throughput vs p99"));
        assert!(svg.contains("SLO p99 = 50.0 ms") && svg.contains("Pareto frontier") && svg.contains("baseline"));
        assert_eq!(
            svg.matches("<circle").count(),
            3 + 1,
            "three candidates and the legend's marker"
        );
        let memory = memory_vs_p99(&report);
        assert!(memory.contains("Memory vs p99") && !memory.contains("Pareto frontier"));
    }
}
