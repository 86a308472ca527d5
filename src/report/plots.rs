//! SVG plots of a study (plotters' SVG backend): throughput against p99 with
//! the feasible Pareto frontier and the SLO line, and memory against p99.

use plotters::prelude::*;

use super::contents::Report;
use crate::objective::{pareto_front, Figures};

const SIZE: (u32, u32) = (800, 560);

/// The axis range of `values`: the finite ones, padded; `0..1` when none is
/// finite. The range is never empty nor narrower than a small share of
/// its magnitude: plotters' key-point search never returns on a range
/// that is empty, reversed, infinite or too narrow for `f64` steps.
pub(super) fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    const LIMIT: f64 = 1e12;
    let finite: Vec<f64> = values.filter(|v| v.is_finite() && v.abs() <= LIMIT).collect();
    let (Some(min), Some(max)) = (
        finite.iter().copied().reduce(f64::min),
        finite.iter().copied().reduce(f64::max),
    ) else {
        return (0.0, 1.0);
    };
    let pad = ((max - min) * 0.08).max(max.abs().max(min.abs()) * 0.05).max(1e-3);
    let low = if min >= 0.0 { (min - pad).max(0.0) } else { min - pad };
    (low, max + pad)
}

/// Whether a point can be drawn (both coordinates within the axes' reach).
pub(super) fn drawable((x, y): (f64, f64)) -> bool {
    x.is_finite() && y.is_finite() && x.abs() <= 1e12 && y.abs() <= 1e12
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

/// How many candidates (the baseline included) the plots leave out
/// because a figure they show is NaN, infinite or beyond the axes' reach.
pub fn left_out(report: &Report) -> usize {
    let shown = |f: &Figures| drawable((f.p99_ms, f.throughput_rps)) && drawable((f.p99_ms, f.memory_mb));
    let candidates = report.candidates.iter().filter(|c| !shown(&c.figures)).count();
    candidates + usize::from(report.baseline.is_some_and(|b| !shown(&b)))
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
    let (title, x_label, y_label, xy, frontier) = (plot.title, plot.x_label, plot.y_label, plot.xy, plot.frontier);
    // A candidate or baseline with a NaN or infinite figure is left out.
    let points: Vec<Figures> = report
        .candidates
        .iter()
        .map(|c| c.figures)
        .filter(|f| drawable(xy(f)))
        .collect();
    let baseline = report.baseline.filter(|f| drawable(xy(f)));
    root.fill(&WHITE)?;
    let mut all: Vec<(f64, f64)> = points.iter().map(xy).collect();
    all.extend(baseline.iter().map(xy));
    let (x0, mut x1) = bounds(all.iter().map(|p| p.0));
    let slo = Some(report.slo_p99_ms).filter(|&slo| slo > 0.0 && drawable((slo * 1.1, 0.0)));
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
    if let Some(baseline) = &baseline {
        chart
            .draw_series(std::iter::once(TriangleMarker::new(xy(baseline), 8, BLACK.filled())))?
            .label("baseline")
            .legend(|(x, y)| TriangleMarker::new((x, y), 6, BLACK.filled()));
    }
    // One marker per recommended config; tiers that chose the same config share a label.
    let mut labelled: Vec<(String, (f64, f64), Vec<&str>)> = Vec::new();
    for r in report.recommendations.iter().filter(|r| drawable(xy(&r.figures))) {
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
pub(super) mod tests {
    use super::*;
    use crate::trial::{Candidate, StopReason};

    pub(crate) fn figures(throughput_rps: f64, p99_ms: f64) -> Figures {
        Figures {
            throughput_rps,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            error_rate: 0.0,
            memory_mb: 500.0 + p99_ms,
            model_excess: 0.0,
        }
    }

    fn candidate(i: usize, figures: Figures) -> Candidate {
        Candidate {
            point: Some(vec![i]),
            description: format!("c{i}"),
            figures,
            runs: 1,
            throughput: None,
            confirmed: false,
            throughput_runs: vec![figures.throughput_rps],
            p99_runs: vec![figures.p99_ms],
            memory_runs: vec![figures.memory_mb],
        }
    }

    /// A report of candidates with these figures (tests of `report` use it too).
    pub(crate) fn report_of(figures: &[Figures], baseline: Option<Figures>, slo_p99_ms: f64) -> Report {
        Report {
            study: "s".into(),
            strategy: "grid".into(),
            stop: StopReason::Budget,
            trials: figures.len(),
            screening_trials: figures.len(),
            confirmation_runs: 0,
            failed_trials: 0,
            elapsed_s: 1.0,
            budget_s: 2.0,
            slo_p99_ms,
            model_limits: Default::default(),
            slo_from_baseline: false,
            baseline,
            defaults: None,
            recommendations: Vec::new(),
            pareto_front: Vec::new(),
            costs: Default::default(),
            hot_share: 1.0,
            not_searched: Vec::new(),
            incidents: Vec::new(),
            no_recommendation: None,
            confirmation_incomplete: None,
            not_confirmed: None,
            hosts: Vec::new(),
            warm_start: None,
            cost: None,
            soak: None,
            candidates: figures.iter().enumerate().map(|(i, &f)| candidate(i, f)).collect(),
            entries: Vec::new(),
            config_name: "config.properties".into(),
        }
    }

    #[test]
    fn plots_show_candidates_slo_and_frontier() {
        let all = [figures(100.0, 10.0), figures(300.0, 30.0), figures(400.0, 90.0)];
        let report = report_of(&all, Some(figures(80.0, 40.0)), 50.0);
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
        assert_eq!(left_out(&report), 0);
    }

    /// Both plots of `report`, drawn on a thread: a plot that does not
    /// return within 30 s fails the test instead of hanging it.
    fn render_within_a_deadline(report: Report) -> (String, String) {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send((throughput_vs_p99(&report), memory_vs_p99(&report)));
        });
        receiver
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the plots render within 30 s")
    }

    #[test]
    fn degenerate_data_renders_and_never_hangs() {
        let nan = f64::NAN;
        let cases: Vec<(&str, Vec<Figures>, Option<Figures>, f64)> = vec![
            ("no candidate, no baseline", vec![], None, f64::INFINITY),
            ("no candidate, a finite SLO", vec![], None, 50.0),
            ("one candidate", vec![figures(100.0, 10.0)], None, f64::INFINITY),
            ("only a baseline", vec![], Some(figures(80.0, 40.0)), 50.0),
            (
                "identical points",
                vec![figures(100.0, 10.0); 4],
                Some(figures(100.0, 10.0)),
                10.0,
            ),
            ("all zero", vec![figures(0.0, 0.0); 2], Some(figures(0.0, 0.0)), 0.0),
            (
                "NaN",
                vec![figures(nan, nan), figures(100.0, 10.0)],
                Some(figures(nan, 5.0)),
                nan,
            ),
            (
                "infinite",
                vec![figures(f64::INFINITY, 1.0), figures(1.0, f64::NEG_INFINITY)],
                None,
                50.0,
            ),
            (
                "huge and tiny",
                vec![figures(1e300, 1e-300), figures(f64::MAX, f64::MIN_POSITIVE)],
                None,
                1e308,
            ),
            ("negative", vec![figures(-5.0, -1.0), figures(-5.0, -1.0)], None, -3.0),
            ("a huge SLO", vec![figures(100.0, 10.0)], None, f64::MAX),
        ];
        for (what, candidates, baseline, slo) in cases {
            let (throughput, memory) = render_within_a_deadline(report_of(&candidates, baseline, slo));
            assert!(
                throughput.starts_with("<svg") && throughput.contains("Throughput vs p99"),
                "{what}"
            );
            assert!(memory.starts_with("<svg") && memory.contains("Memory vs p99"), "{what}");
        }
    }

    #[test]
    fn points_that_cannot_be_drawn_are_left_out_and_counted() {
        let report = report_of(
            &[
                figures(f64::NAN, 10.0),
                figures(100.0, 10.0),
                figures(200.0, f64::INFINITY),
            ],
            Some(figures(80.0, f64::NAN)),
            50.0,
        );
        assert_eq!(left_out(&report), 3, "two candidates and the baseline");
        let (svg, _) = render_within_a_deadline(report);
        assert_eq!(
            svg.matches("<circle").count(),
            1 + 1,
            "the one drawable candidate and the legend's marker"
        );
        let non_finite = ["NaN", "\"inf", "\"-inf", " inf", ",inf"];
        assert!(
            !non_finite.iter().any(|bad| svg.contains(bad)),
            "no non-finite coordinate reaches the SVG"
        );
    }

    #[test]
    fn axis_ranges_are_finite_and_never_empty() {
        let cases: [&[f64]; 6] = [
            &[],
            &[f64::NAN],
            &[5.0],
            &[0.0, 0.0],
            &[f64::INFINITY, 3.0],
            &[-2.0, -2.0],
        ];
        for values in cases {
            let (low, high) = bounds(values.iter().copied());
            assert!(
                low.is_finite() && high.is_finite() && high > low,
                "{values:?}: {low}..{high}"
            );
        }
        assert_eq!(bounds([].into_iter()), (0.0, 1.0));
    }
}
