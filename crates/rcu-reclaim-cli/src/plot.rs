//! The demo's plot: heap in use and bytes pending in RCU over time, both
//! runs, with the budget (and cgroup limit) as lines; an OOM kill is marked
//! where the run ended. SVG, via plotters.

use std::path::Path;

use plotters::prelude::*;

use crate::demo::{DemoConfig, SideReport};

const MIB: f64 = (1 << 20) as f64;

fn colour(side: &SideReport) -> RGBColor {
    if side.mode == "aware" {
        RGBColor(31, 119, 180)
    } else {
        RGBColor(214, 39, 40)
    }
}

/// Writes the plot to `path` (SVG).
pub fn write_svg(path: &Path, cfg: &DemoConfig, sides: &[SideReport]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("cannot write the plot {}: {e}", path.display());
    let secs = cfg.duration.as_secs_f64();
    let top = sides
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.mem.max(x.pending)))
        .chain([cfg.budget, cfg.cgroup_limit.unwrap_or(0)])
        .max()
        .unwrap_or(1) as f64
        / MIB
        * 1.15;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = match cfg.cgroup_limit {
        _ if cfg.unaware_budget.is_some() => format!(
            "rcu-reclaim demo: budget {:.0} MiB (unaware: {:.0} MiB)",
            cfg.budget as f64 / MIB,
            cfg.unaware_budget.unwrap_or(0) as f64 / MIB
        ),
        Some(l) => format!(
            "rcu-reclaim demo: budget {:.0} MiB, cgroup limit {:.0} MiB",
            cfg.budget as f64 / MIB,
            l as f64 / MIB
        ),
        None => format!(
            "rcu-reclaim demo: budget {:.0} MiB",
            cfg.budget as f64 / MIB
        ),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..secs, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .x_desc("seconds")
        .y_desc("MiB")
        .draw()
        .map_err(|e| err(&e))?;
    let hline = |y: usize| vec![(0.0, y as f64 / MIB), (secs, y as f64 / MIB)];
    chart
        .draw_series(LineSeries::new(hline(cfg.budget), BLACK.stroke_width(1)))
        .map_err(|e| err(&e))?
        .label("budget")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    if let Some(limit) = cfg.cgroup_limit {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(
                hline(limit),
                6,
                4,
                grey.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("cgroup hard limit")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    for side in sides {
        let c = colour(side);
        let points = |f: fn(&crate::demo::Sample) -> usize| {
            side.samples
                .iter()
                .map(move |s| (s.ms as f64 / 1e3, f(s) as f64 / MIB))
                .collect::<Vec<_>>()
        };
        chart
            .draw_series(LineSeries::new(points(|s| s.mem), c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{}: heap in use", side.mode))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                points(|s| s.pending),
                c.mix(0.45).stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("{}: pending in RCU", side.mode))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.mix(0.45)));
        if side.cgroup.as_ref().is_some_and(|g| g.oom_killed) {
            if let Some(last) = side.samples.last() {
                let at = (last.ms as f64 / 1e3, last.mem as f64 / MIB);
                chart
                    .draw_series([Cross::new(at, 8, c.stroke_width(3))])
                    .map_err(|e| err(&e))?;
                chart
                    .draw_series([Text::new(
                        format!("{}: OOM-killed", side.mode),
                        (at.0, at.1 * 1.04),
                        ("sans-serif", 16).into_font().color(&c),
                    )])
                    .map_err(|e| err(&e))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
