//! `study-timeline.svg`: a study over its own time, from its journal —
//! each trial's throughput when it finished, marked by how the server got
//! to it (restart, live move, no change), hollow when it broke a
//! constraint, failed trials on the axis; the best so far (the lowest loss
//! among feasible trials) as a step line; the confirmation rounds shaded,
//! each confirmation run labelled with its round (`r1`, `r2`, …).
//!
//! Pure rendering of `trial::Entry` lines (plotters' SVG backend), guarded
//! against empty and non-finite journals like `plots.rs`. Called by
//! `report::export`.

use plotters::prelude::*;

use crate::trial::{Entry, Switch, TrialKind};

const SIZE: (u32, u32) = (1000, 560);

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// How a trial is drawn: its legend label and colour (confirmation runs
/// too: the shaded band and their `rN` label say they are).
fn style(entry: &Entry) -> (&'static str, RGBColor) {
    match (entry.kind, entry.switch) {
        (TrialKind::Baseline, _) => ("baseline", RGBColor(0, 0, 0)),
        (_, Switch::Restart) => ("after a restart", RGBColor(210, 50, 40)),
        (_, Switch::None) => ("no change needed", RGBColor(130, 130, 130)),
        (_, Switch::Scale | Switch::Register | Switch::Gateway) => ("after a live move", RGBColor(30, 150, 70)),
    }
}

/// Seconds, or minutes for a study over ten minutes: (divisor, unit).
fn time_unit(entries: &[Entry]) -> (f64, &'static str) {
    let last = entries
        .iter()
        .map(|e| e.elapsed_s)
        .filter(|t| t.is_finite())
        .fold(0.0, f64::max);
    if last > 600.0 {
        (60.0, "minutes")
    } else {
        (1.0, "seconds")
    }
}

fn throughput(entry: &Entry) -> Option<f64> {
    entry
        .figures
        .map(|f| f.throughput_rps)
        .filter(|t| t.is_finite() && t.abs() <= 1e12)
}

/// (time, throughput) of the best feasible trial so far (lowest loss), as a step line.
fn best_so_far(entries: &[Entry], unit: f64) -> Vec<(f64, f64)> {
    let mut best: Option<(f64, f64)> = None;
    let mut line = Vec::new();
    for e in entries.iter().filter(|e| e.elapsed_s.is_finite()) {
        let Some(rps) = throughput(e).filter(|_| e.feasible && e.failure.is_none()) else {
            continue;
        };
        if best.is_none_or(|(loss, _)| e.loss < loss) {
            if let Some((_, previous)) = best {
                line.push((e.elapsed_s / unit, previous));
            }
            line.push((e.elapsed_s / unit, rps));
            best = Some((e.loss, rps));
        }
    }
    if let (Some((_, rps)), Some(last)) = (
        best,
        entries
            .iter()
            .map(|e| e.elapsed_s)
            .filter(|t| t.is_finite())
            .reduce(f64::max),
    ) {
        line.push((last / unit, rps));
    }
    line
}

/// (start, end) in study time of each stretch of confirmation runs (the
/// journal's consecutive `confirm` lines; each run is labelled with its
/// round where it is drawn).
fn confirmation_spans(entries: &[Entry]) -> Vec<(f64, f64)> {
    let mut spans: Vec<(f64, f64)> = Vec::new();
    let mut in_span = false;
    for e in entries.iter().filter(|e| e.elapsed_s.is_finite()) {
        if e.kind != TrialKind::Confirm {
            in_span = false;
            continue;
        }
        let start = (e.elapsed_s - e.duration_s - e.warmup_s - e.switch_s).max(0.0);
        match spans.last_mut().filter(|_| in_span) {
            Some(span) => span.1 = span.1.max(e.elapsed_s),
            None => spans.push((start, e.elapsed_s)),
        }
        in_span = true;
    }
    spans
}

/// The picture as SVG text.
pub fn study_timeline_svg(entries: &[Entry]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        if let Err(e) = draw(&root, entries) {
            tracing::warn!("drawing the study timeline: {e}");
        }
        let _ = root.present();
    }
    svg
}

fn draw(root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>, entries: &[Entry]) -> Drawn {
    root.fill(&WHITE)?;
    let (unit, unit_name) = time_unit(entries);
    let end = entries
        .iter()
        .map(|e| e.elapsed_s / unit)
        .filter(|t| t.is_finite())
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.03;
    // Headroom above the highest trial for the legend.
    let y1 = super::timeline::top(entries.iter().filter_map(throughput)) * 1.3;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Study timeline: each trial's throughput (hollow: outside the constraints)",
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..end, 0.0..y1)?;
    chart
        .configure_mesh()
        .x_desc(format!("study time ({unit_name})"))
        .y_desc("throughput (req/s)")
        .draw()?;
    for (start, stop) in confirmation_spans(entries) {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(start / unit, 0.0), (stop / unit, y1)],
            RGBColor(236, 226, 246).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            " confirmation rounds",
            (start / unit, y1 * 0.74),
            ("sans-serif", 12),
        )))?;
    }
    let best = best_so_far(entries, unit);
    let blue = RGBColor(30, 90, 200);
    chart
        .draw_series(LineSeries::new(best, blue.stroke_width(2)))?
        .label("best so far (lowest loss, feasible)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], blue.stroke_width(2)));
    draw_trials(&mut chart, entries, unit)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One series per style, so the legend names each; infeasible trials hollow.
fn draw_trials(chart: &mut Chart<'_, '_>, entries: &[Entry], unit: f64) -> Drawn {
    let measured: Vec<&Entry> = entries.iter().filter(|e| e.elapsed_s.is_finite()).collect();
    let mut labels: Vec<(&'static str, RGBColor)> = measured.iter().map(|e| style(e)).collect();
    labels.sort_by_key(|(label, _)| *label);
    labels.dedup();
    for (label, color) in labels {
        let points: Vec<(f64, f64, bool)> = measured
            .iter()
            .filter(|e| style(e).0 == label)
            .filter_map(|e| throughput(e).map(|rps| (e.elapsed_s / unit, rps, e.feasible)))
            .collect();
        chart
            .draw_series(points.into_iter().map(move |(x, y, feasible)| {
                let style = if feasible {
                    color.filled()
                } else {
                    color.stroke_width(2)
                };
                EmptyElement::at((x, y)) + Circle::new((0, 0), 5, style)
            }))?
            .label(label)
            .legend(move |(x, y)| Circle::new((x, y), 5, color.filled()));
    }
    let rounds = measured
        .iter()
        .filter(|e| e.kind == TrialKind::Confirm)
        .filter_map(|e| {
            let (round, rps) = (e.round?, throughput(e)?);
            Some(
                EmptyElement::at((e.elapsed_s / unit, rps))
                    + Text::new(format!("r{round}"), (7, -14), ("sans-serif", 11)),
            )
        });
    chart.draw_series(rounds)?;
    let failed: Vec<f64> = measured
        .iter()
        .filter(|e| e.failure.is_some() || throughput(e).is_none())
        .map(|e| e.elapsed_s / unit)
        .collect();
    if !failed.is_empty() {
        let red = RGBColor(210, 50, 40);
        chart
            .draw_series(
                failed
                    .into_iter()
                    .map(move |x| Cross::new((x, 0.0), 6, red.stroke_width(2))),
            )?
            .label("failed trial")
            .legend(move |(x, y)| Cross::new((x, y), 5, red.stroke_width(2)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Figures;

    fn entry(number: usize, kind: TrialKind, switch: Switch, elapsed_s: f64, rps: Option<f64>, loss: f64) -> Entry {
        Entry {
            number,
            kind,
            point: None,
            values: Default::default(),
            figures: rps.map(|throughput_rps| Figures {
                throughput_rps,
                p50_ms: 5.0,
                p99_ms: 10.0,
                error_rate: 0.0,
                memory_mb: 500.0,
                model_excess: 0.0,
            }),
            failure: rps.is_none().then(|| "never ready".to_string()),
            loss,
            feasible: rps.is_some_and(|r| r > 50.0),
            restarted: switch == Switch::Restart,
            throughput_ci95: None,
            duration_s: 5.0,
            elapsed_s,
            switch,
            switch_s: 1.0,
            warmup_s: 1.0,
            stability: None,
            round: (kind == TrialKind::Confirm).then_some(1 + (number % 2) as u32),
            latency_histogram: None,
            server_cpu_cores: None,
            observer_cpu_share: None,
            incidents: Vec::new(),
            worker: None,
            server_lost: None,
            models: Default::default(),
            peak: None,
            window_of: None,
        }
    }

    fn journal() -> Vec<Entry> {
        vec![
            entry(0, TrialKind::Baseline, Switch::None, 8.0, Some(100.0), 0.0),
            entry(1, TrialKind::Screen, Switch::Restart, 20.0, Some(150.0), -0.5),
            entry(2, TrialKind::Screen, Switch::Scale, 28.0, Some(40.0), 0.3),
            entry(3, TrialKind::Screen, Switch::Register, 36.0, Some(220.0), -1.0),
            entry(4, TrialKind::Screen, Switch::None, 44.0, Some(120.0), 0.1),
            entry(5, TrialKind::Screen, Switch::Restart, 50.0, None, f64::INFINITY),
            entry(6, TrialKind::Confirm, Switch::Register, 60.0, Some(210.0), -1.0),
            entry(7, TrialKind::Confirm, Switch::Register, 70.0, Some(150.0), -0.5),
        ]
    }

    #[test]
    fn trials_moves_best_so_far_and_rounds_are_drawn() {
        let svg = study_timeline_svg(&journal());
        for label in [
            "after a restart",
            "after a live move",
            "no change needed",
            "baseline",
            "failed trial",
            "best so far",
            "confirmation rounds",
            "study time (seconds)",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        for round in ["r1", "r2"] {
            assert!(
                svg.lines().any(|l| l.trim() == round),
                "confirmation runs are labelled {round}"
            );
        }
        let best = best_so_far(&journal(), 1.0);
        assert_eq!(best.first(), Some(&(8.0, 100.0)));
        assert!(
            best.contains(&(36.0, 220.0)) && best.last() == Some(&(70.0, 220.0)),
            "{best:?}"
        );
        assert!(
            !best.iter().any(|p| p.1 == 40.0),
            "an infeasible trial is never the best"
        );
    }

    #[test]
    fn long_studies_count_minutes_and_degenerate_journals_render() {
        let mut long = journal();
        long.iter_mut().for_each(|e| e.elapsed_s *= 60.0);
        assert!(study_timeline_svg(&long).contains("study time (minutes)"));
        let mut odd = journal();
        odd[1].elapsed_s = f64::NAN;
        odd[2].figures.as_mut().unwrap().throughput_rps = f64::INFINITY;
        for entries in [
            Vec::new(),
            odd,
            vec![entry(0, TrialKind::Baseline, Switch::None, 0.0, Some(0.0), 0.0)],
        ] {
            let svg = study_timeline_svg(&entries);
            assert!(svg.starts_with("<svg") && svg.contains("Study timeline"));
            assert!(!svg.contains("NaN") && !svg.contains("inf\""));
        }
    }
}
