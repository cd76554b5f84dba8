//! The cache scenario's row of the bench's plot: gets/s and hit ratio per
//! backend, and each backend's RSS over time (first round), where an
//! unbounded one climbs until the memory guard stops it.

use plotters::prelude::*;

use super::report::CacheScenarioReport;
use crate::bench::plot::{bars, Area, COLOURS};

const MIB: f64 = (1 << 20) as f64;

/// RSS over time, one line per backend.
fn memory(area: &Area<'_>, s: &CacheScenarioReport) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let secs = (s.seconds_per_run + s.warmup_seconds).max(0.01);
    let top = s
        .backends
        .iter()
        .flat_map(|b| b.samples.iter().map(|x| x.rss))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / MIB
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "cache: RSS above the start (MiB, round 1)",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..secs, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, b) in s.backends.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let points = b
            .samples
            .iter()
            .map(|x| (x.ms as f64 / 1e3, x.rss as f64 / MIB));
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(b.backend.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))
}

/// Draws the row into `row`.
pub fn row(row: &Area<'_>, s: &CacheScenarioReport) -> Result<(), String> {
    let (left, right) = row.split_horizontally(640);
    let (gets, hits) = left.split_horizontally(320);
    let values = |f: fn(&super::report::CacheBackendReport) -> f64| {
        s.backends
            .iter()
            .map(|b| (b.backend.clone(), f(b)))
            .collect::<Vec<_>>()
    };
    bars(&gets, "cache: M gets/s", &values(|b| b.gets_per_sec / 1e6))?;
    bars(&hits, "cache: hit ratio", &values(|b| b.hit_ratio))?;
    memory(&right, s)
}
