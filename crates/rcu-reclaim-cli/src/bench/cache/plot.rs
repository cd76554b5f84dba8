//! The cache scenario's row of the bench's plot: gets/s and hit ratio per
//! backend, and each backend's RSS over time (first round), where an
//! unbounded one climbs until the memory guard stops it.

use plotters::prelude::*;

use super::report::CacheScenarioReport;
use crate::bench::plot::{bars, lines, Area};

const MIB: f64 = (1 << 20) as f64;

/// RSS over time, one line per backend.
fn memory(area: &Area<'_>, s: &CacheScenarioReport) -> Result<(), String> {
    let series = s
        .backends
        .iter()
        .map(|b| {
            let points = b.samples.iter();
            let points = points.map(|x| (x.ms as f64 / 1e3, x.rss as f64 / MIB));
            (b.backend.clone(), points.collect())
        })
        .collect();
    lines(
        area,
        "cache: RSS above the start (MiB, round 1)",
        s.seconds_per_run + s.warmup_seconds,
        series,
        SeriesLabelPosition::UpperLeft,
    )
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
