//! The demo's plot: heap in use and bytes pending in RCU over time, both
//! runs, with the budget (and cgroup limit) as lines; an OOM kill is marked
//! where the run ended. The legend sits in a strip below the chart, where it
//! covers no data. SVG, via plotters.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor;

use crate::demo::{DemoConfig, SideReport};

const MIB: f64 = (1 << 20) as f64;

fn colour(side: &SideReport) -> RGBColor {
    if side.mode == "aware" {
        RGBColor(31, 119, 180)
    } else {
        RGBColor(214, 39, 40)
    }
}

/// The plot's size in pixels, and the height of the legend strip under the
/// chart.
const SIZE: (u32, u32) = (960, 600);
const LEGEND_HEIGHT: u32 = 64;

/// One entry of the legend: a short stretch of the series' line, then its
/// label.
struct Key {
    label: String,
    style: ShapeStyle,
    dashed: bool,
}

impl Key {
    fn new(label: impl Into<String>, style: impl Into<ShapeStyle>) -> Self {
        Key {
            label: label.into(),
            style: style.into(),
            dashed: false,
        }
    }
}

/// Draws the legend in `area`: two rows, the series of one run in each
/// column, the budget and limit lines in the last.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    keys: &[Key],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (left, column, row) = (72, 296, 24);
    let font = ("sans-serif", 16)
        .into_font()
        .color(&BLACK)
        .pos(text_anchor::Pos::new(
            text_anchor::HPos::Left,
            text_anchor::VPos::Center,
        ));
    for (i, key) in keys.iter().enumerate() {
        let x = left + column * (i as i32 / 2);
        let y = 20 + row * (i as i32 % 2);
        if key.dashed {
            for dash in 0..3 {
                let x0 = x + dash * 11;
                area.draw(&PathElement::new(vec![(x0, y), (x0 + 6, y)], key.style))?;
            }
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + 28, y)], key.style))?;
        }
        area.draw(&Text::new(key.label.clone(), (x + 36, y), font.clone()))?;
    }
    Ok(())
}

/// Writes the plot to `path` (SVG): drawn in memory, then written in one
/// call whose every error is reported.
pub fn write_svg(path: &Path, cfg: &DemoConfig, sides: &[SideReport]) -> Result<(), String> {
    let mut svg = String::new();
    draw(&mut svg, path, cfg, sides)?;
    crate::args::write_plot(path, &svg)
}

/// Draws the plot into `svg` (`path` only names it in messages).
fn draw(
    svg: &mut String,
    path: &Path,
    cfg: &DemoConfig,
    sides: &[SideReport],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the plot {}: {e}", path.display());
    let secs = cfg.duration.as_secs_f64();
    let top = sides
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.mem.max(x.pending)))
        .chain([cfg.budget, cfg.cgroup_limit.unwrap_or(0)])
        .max()
        .unwrap_or(1) as f64
        / MIB
        * 1.15;
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (chart_area, legend_area) = root.split_vertically(SIZE.1 - LEGEND_HEIGHT);
    let mut lines = Vec::new();
    let mut keys = Vec::new();
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
    let mut chart = ChartBuilder::on(&chart_area)
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
        .map_err(|e| err(&e))?;
    lines.push(Key::new("budget", BLACK.stroke_width(1)));
    if let Some(limit) = cfg.cgroup_limit {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(
                hline(limit),
                6,
                4,
                grey.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        lines.push(Key {
            dashed: true,
            ..Key::new("cgroup hard limit", grey.stroke_width(2))
        });
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
            .map_err(|e| err(&e))?;
        keys.push(Key::new(
            format!("{}: heap in use", side.mode),
            c.stroke_width(2),
        ));
        chart
            .draw_series(LineSeries::new(
                points(|s| s.pending),
                c.mix(0.45).stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
        keys.push(Key::new(
            format!("{}: pending in RCU", side.mode),
            c.mix(0.45).stroke_width(2),
        ));
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
    keys.append(&mut lines);
    draw_legend(&legend_area, &keys).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::demo::{CgroupOutcome, Sample};

    /// The y of the SVG text element that reads `label`.
    fn text_y(svg: &str, label: &str) -> f64 {
        let at = svg.find(&format!(">\n{label}\n</text>")).expect(label);
        let start = svg[..at].rfind("<text ").unwrap();
        let y = &svg[start..at];
        let y = &y[y.find(" y=\"").unwrap() + 4..];
        y[..y.find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn the_legend_sits_below_the_chart() {
        let cfg = DemoConfig {
            duration: Duration::from_secs(1),
            budget: 64 << 20,
            unaware_budget: None,
            cgroup_limit: Some(96 << 20),
            readers: 1,
            writers: 1,
            keys: 100,
            payload_min: 1,
            payload_max: 2,
        };
        let side = |mode: &str| SideReport {
            mode: mode.into(),
            samples: (0..20)
                .map(|i| Sample {
                    ms: i * 50,
                    mem: 90 << 20,
                    pending: 80 << 20,
                    ..Sample::default()
                })
                .collect(),
            cgroup: Some(CgroupOutcome {
                oom_killed: mode == "unaware",
                ..CgroupOutcome::default()
            }),
            ..SideReport::default()
        };
        let path =
            std::env::temp_dir().join(format!("rcu-reclaim-plot-test-{}.svg", std::process::id()));
        write_svg(&path, &cfg, &[side("unaware"), side("aware")]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let axis = text_y(&svg, "seconds");
        for label in [
            "unaware: heap in use",
            "unaware: pending in RCU",
            "aware: heap in use",
            "aware: pending in RCU",
            "budget",
            "cgroup hard limit",
        ] {
            let y = text_y(&svg, label);
            assert!(
                y > axis && y < f64::from(SIZE.1),
                "{label} at y = {y}, the axis label at {axis}"
            );
        }
    }
}
