//! The bench's plot: one row per scenario with reads/s and updates/s bars
//! per backend, and each backend's garbage over time (first round). SVG.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{BackendReport, ScenarioReport};

const MIB: f64 = (1 << 20) as f64;

pub(super) const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A bar per backend: `(name, value)`.
pub(super) fn bars(area: &Area<'_>, title: &str, values: &[(String, f64)]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let top = values.iter().map(|v| v.1).fold(0.0, f64::max).max(1e-9) * 1.25;
    let n = values.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .y_label_area_size(50)
        .x_label_area_size(10)
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, v)) in values.iter().enumerate() {
        let (x, v) = (i as f64, *v);
        let c = COLOURS[i % COLOURS.len()];
        chart
            .draw_series([Rectangle::new([(x + 0.15, 0.0), (x + 0.85, v)], c.filled())])
            .map_err(|e| err(&e))?;
        chart
            .draw_series([Text::new(
                format!("{name} {v:.3}"),
                (x + 0.1, v + top * 0.03),
                ("sans-serif", 11).into_font(),
            )])
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

/// A line per backend over a run's seconds: `(name, [(seconds, MiB)])`,
/// the legend at `legend`.
pub(super) fn lines(
    area: &Area<'_>,
    title: &str,
    secs: f64,
    series: Vec<(String, Vec<(f64, f64)>)>,
    legend: SeriesLabelPosition,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(1.0 / MIB, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..secs.max(0.01), 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, points)) in series.into_iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))
}

/// Garbage over time, one line per backend.
fn garbage(area: &Area<'_>, s: &ScenarioReport) -> Result<(), String> {
    let series = s
        .backends
        .iter()
        .map(|b| {
            let points = b.samples.iter();
            let points = points.map(|x| (x.ms as f64 / 1e3, x.garbage as f64 / MIB));
            (b.backend.clone(), points.collect())
        })
        .collect();
    lines(
        area,
        &format!("{}: garbage over time (MiB, round 1)", s.scenario),
        s.seconds_per_run,
        series,
        SeriesLabelPosition::UpperRight,
    )
}

/// `(backend, f(backend))` for each backend.
fn values(backends: &[BackendReport], f: fn(&BackendReport) -> f64) -> Vec<(String, f64)> {
    backends.iter().map(|b| (b.backend.clone(), f(b))).collect()
}

/// A row drawn by its own scenario (the cache scenario's), after the
/// dentry-cache scenarios' rows.
pub type ExtraRow<'r> = &'r dyn Fn(&Area<'_>) -> Result<(), String>;

/// Writes the plot to `path` (SVG): a row per scenario, `extra`'s last;
/// drawn in memory, then written in one call whose every error is reported.
pub fn write_svg(
    path: &Path,
    scenarios: &[ScenarioReport],
    extra: Option<ExtraRow<'_>>,
) -> Result<(), String> {
    let mut svg = String::new();
    draw(&mut svg, path, scenarios, extra)?;
    crate::args::write_plot(path, &svg)
}

/// Draws the plot into `svg` (`path` only names it in messages).
fn draw(
    svg: &mut String,
    path: &Path,
    scenarios: &[ScenarioReport],
    extra: Option<ExtraRow<'_>>,
) -> Result<(), String> {
    let wrap = |e: String| format!("cannot draw the plot {}: {e}", path.display());
    let rows = (scenarios.len() + usize::from(extra.is_some())).max(1);
    let root = SVGBackend::with_string(svg, (1280, 340 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| wrap(e.to_string()))?;
    let areas = root.split_evenly((rows, 1));
    for (s, row) in scenarios.iter().zip(&areas) {
        let (left, right) = row.split_horizontally(640);
        let (reads, updates) = left.split_horizontally(320);
        bars(
            &reads,
            &format!("{}: M reads/s", s.scenario),
            &values(&s.backends, |b| b.reads_per_sec / 1e6),
        )
        .map_err(wrap)?;
        bars(
            &updates,
            &format!("{}: k updates/s", s.scenario),
            &values(&s.backends, |b| b.updates_per_sec / 1e3),
        )
        .map_err(wrap)?;
        garbage(&right, s).map_err(wrap)?;
    }
    if let (Some(extra), Some(row)) = (extra, areas.last()) {
        extra(row).map_err(wrap)?;
    }
    root.present().map_err(|e| wrap(e.to_string()))
}
