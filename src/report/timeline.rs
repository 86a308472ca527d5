//! `timeline.svg` of a `bench` run: three panels over the run's seconds —
//! load (users or target rate, achieved throughput), latency (p50, p99) and
//! errors with the server's memory — with the warm-up shaded and the stages
//! marked, so a ramp-then-hold test reads at a glance.
//!
//! Pure rendering of `bench::timeline::Timeline` (plotters' SVG backend);
//! the axes are guarded like `plots.rs`'s against empty, flat or
//! non-finite data. Called by the `bench` command.

use std::path::Path;

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::bench::timeline::{Offered, StageMark, Timeline};

const SIZE: (u32, u32) = (1000, 960);
const AXIS_LIMIT: f64 = 1e12;

type Area<'a, 'b> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), Box<dyn std::error::Error>>;

/// The top of a 0-based axis holding `values`: the largest finite one
/// padded by a tenth, 1 when there is none or it is 0.
pub(super) fn top(values: impl Iterator<Item = f64>) -> f64 {
    let max = values
        .filter(|v| v.is_finite() && v.abs() <= AXIS_LIMIT)
        .fold(0.0_f64, f64::max);
    if max > 1e-3 {
        max * 1.1
    } else {
        1.0
    }
}

/// Finite points only: plotters must never see NaN or infinity.
fn finite(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points
        .filter(|(x, y)| x.is_finite() && y.is_finite() && y.abs() <= AXIS_LIMIT)
        .collect()
}

/// The picture as SVG text.
pub fn bench_timeline_svg(timeline: &Timeline) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        if let Err(e) = draw(&root, timeline) {
            tracing::warn!("drawing the timeline: {e}");
        }
        let _ = root.present();
    }
    svg
}

/// Writes the picture to `path`.
pub fn write_bench_timeline(timeline: &Timeline, path: &Path) -> anyhow::Result<()> {
    crate::config::file::write_data_atomically(path, bench_timeline_svg(timeline).as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn draw(root: &Area<'_, '_>, t: &Timeline) -> Drawn {
    root.fill(&WHITE)?;
    let root = root.titled(&format!("servetune bench: {}", t.mode), ("sans-serif", 22))?;
    let panels = root.split_evenly((3, 1));
    let end = (t.seconds.len() as f64)
        .max(t.stages.last().map_or(0.0, |s| s.end_s))
        .max(1.0);
    load_panel(&panels[0], t, end)?;
    latency_panel(&panels[1], t, end)?;
    errors_panel(&panels[2], t, end)?;
    Ok(())
}

/// The middle of each second, for its figures.
fn at(second: u64) -> f64 {
    second as f64 + 0.5
}

/// Grey warm-up band and stage boundaries on a chart whose y axis ends at `y1`.
fn marks<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    t: &Timeline,
    y1: f64,
    labels: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    if t.warmup_s > 0.0 {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (t.warmup_s, y1)],
            RGBColor(200, 200, 200).mix(0.35).filled(),
        )))?;
        if labels {
            chart.draw_series(std::iter::once(Text::new(
                "warm-up",
                (0.0, y1 * 0.08),
                ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90)),
            )))?;
        }
    }
    for StageMark { start_s, end_s, label } in &t.stages {
        chart.draw_series(std::iter::once(PathElement::new(
            [(*end_s, 0.0), (*end_s, y1)],
            RGBColor(120, 120, 120).stroke_width(1),
        )))?;
        if labels {
            chart.draw_series(std::iter::once(Text::new(
                format!(" {label} ({:.0}–{:.0} s)", start_s, end_s),
                (*start_s, y1 * 0.97),
                ("sans-serif", 13),
            )))?;
        }
    }
    Ok(())
}

fn load_panel(area: &Area<'_, '_>, t: &Timeline, end: f64) -> Drawn {
    let throughput = finite(t.seconds.iter().map(|s| (at(s.second), s.ok as f64)));
    let offered = finite(t.offered_series.iter().copied());
    let users = t.offered == Offered::Users;
    let mut y1 = top(throughput.iter().map(|p| p.1));
    if !users {
        y1 = y1.max(top(offered.iter().map(|p| p.1)));
    }
    let users_top = top(offered.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(64)
        .right_y_label_area_size(64)
        .build_cartesian_2d(0.0..end, 0.0..y1)?
        .set_secondary_coord(0.0..end, 0.0..if users { users_top } else { y1 });
    chart.configure_mesh().x_desc("seconds").y_desc("req/s").draw()?;
    if users {
        chart.configure_secondary_axes().y_desc("virtual users").draw()?;
    }
    marks(&mut chart, t, y1, true)?;
    chart
        .draw_series(LineSeries::new(throughput, BLUE.stroke_width(2)))?
        .label("achieved throughput (req/s)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    let color = RGBColor(230, 140, 0);
    let label = if users {
        "virtual users (right axis)"
    } else {
        "target rate (req/s)"
    };
    chart
        .draw_secondary_series(LineSeries::new(offered, color.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn latency_panel(area: &Area<'_, '_>, t: &Timeline, end: f64) -> Drawn {
    let served = || t.seconds.iter().filter(|s| s.ok > 0);
    let p50 = finite(served().map(|s| (at(s.second), s.p50_ms)));
    let p99 = finite(served().map(|s| (at(s.second), s.p99_ms)));
    let y1 = top(p99.iter().chain(&p50).map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(64)
        .right_y_label_area_size(64)
        .build_cartesian_2d(0.0..end, 0.0..y1)?;
    chart.configure_mesh().x_desc("seconds").y_desc("latency (ms)").draw()?;
    marks(&mut chart, t, y1, false)?;
    let p99_color = RGBColor(200, 30, 30);
    chart
        .draw_series(LineSeries::new(p99, p99_color.stroke_width(2)))?
        .label("p99 per second")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], p99_color.stroke_width(2)));
    let p50_color = RGBColor(30, 140, 60);
    chart
        .draw_series(LineSeries::new(p50, p50_color.stroke_width(2)))?
        .label("p50 per second")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], p50_color.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn errors_panel(area: &Area<'_, '_>, t: &Timeline, end: f64) -> Drawn {
    let errors = finite(t.seconds.iter().map(|s| (at(s.second), s.errors as f64)));
    let memory = finite(t.memory_mb.iter().copied());
    let y1 = top(errors.iter().map(|p| p.1));
    let (m0, m1) = if memory.is_empty() {
        (0.0, 1.0)
    } else {
        super::plots::bounds(memory.iter().map(|p| p.1))
    };
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(64)
        .right_y_label_area_size(64)
        .build_cartesian_2d(0.0..end, 0.0..y1)?
        .set_secondary_coord(0.0..end, m0..m1);
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("errors per second")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("memory, RSS of the server's processes (MB)")
        .draw()?;
    marks(&mut chart, t, y1, false)?;
    let red = RGBColor(200, 30, 30);
    chart
        .draw_series(LineSeries::new(errors, red.stroke_width(2)))?
        .label("errors per second")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], red.stroke_width(2)));
    let purple = RGBColor(110, 50, 160);
    let memory_label = if memory.is_empty() {
        "memory (not observed)"
    } else {
        "memory MB (right axis)"
    };
    chart
        .draw_secondary_series(LineSeries::new(memory, purple.stroke_width(2)))?
        .label(memory_label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], purple.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::SecondStats;

    fn second(second: u64, ok: u64, p99_ms: f64) -> SecondStats {
        SecondStats {
            second,
            warmup: second < 1,
            ok,
            errors: second % 3,
            p50_ms: p99_ms / 2.0,
            p99_ms,
        }
    }

    fn timeline(seconds: Vec<SecondStats>, memory_mb: Vec<(f64, f64)>) -> Timeline {
        Timeline {
            mode: "closed loop stages (peak 4 users)".into(),
            offered: Offered::Users,
            offered_series: (0..seconds.len()).map(|s| (s as f64 + 0.5, s as f64)).collect(),
            seconds,
            memory_mb,
            stages: vec![
                StageMark {
                    start_s: 0.0,
                    end_s: 2.0,
                    label: "0 → 4 users".into(),
                },
                StageMark {
                    start_s: 2.0,
                    end_s: 4.0,
                    label: "hold 4 users".into(),
                },
            ],
            warmup_s: 1.0,
        }
    }

    #[test]
    fn every_series_and_stage_is_drawn() {
        let svg = bench_timeline_svg(&timeline(
            (0..4).map(|s| second(s, 100 + s, 20.0)).collect(),
            vec![(0.5, 500.0), (1.5, 510.0)],
        ));
        for text in [
            "achieved throughput",
            "virtual users",
            "p99 per second",
            "p50 per second",
            "errors per second",
            "memory MB",
            "warm-up",
            "0 → 4 users (0–2 s)",
            "hold 4 users (2–4 s)",
        ] {
            assert!(svg.contains(text), "{text}");
        }
    }

    #[test]
    fn degenerate_timelines_render() {
        let nan = f64::NAN;
        let cases = [
            timeline(Vec::new(), Vec::new()),
            timeline(vec![second(0, 0, 0.0)], vec![(0.5, 0.0)]),
            timeline(
                vec![second(0, 5, nan), second(1, 5, f64::INFINITY)],
                vec![(nan, 3.0), (1.0, f64::INFINITY)],
            ),
            timeline(vec![second(0, 5, 1e300); 3], vec![(0.5, 400.0); 3]),
        ];
        for case in cases {
            let svg = bench_timeline_svg(&case);
            assert!(svg.starts_with("<svg") && svg.contains("achieved throughput"));
            assert!(!svg.contains("NaN") && !svg.contains("inf\""));
        }
        assert_eq!(top([].into_iter()), 1.0);
        assert_eq!(top([f64::NAN, 0.0].into_iter()), 1.0);
    }
}
