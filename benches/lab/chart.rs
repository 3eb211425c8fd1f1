//! Colours and a line chart shared by both bench targets of the lab (`plots`
//! of the `lab` target, the time series of the `reclaim` target).
//!
//! Depends on nothing else in either crate (the `reclaim` target includes it
//! with `#[path]`).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// Line colours, one per series in order (the first, strongest, for `SyncMap`).
pub const COLORS: [RGBColor; 13] = [
    RGBColor(200, 30, 30),
    RGBColor(230, 120, 0),
    RGBColor(30, 30, 30),
    RGBColor(120, 120, 120),
    RGBColor(170, 170, 170),
    RGBColor(30, 90, 200),
    RGBColor(0, 150, 140),
    RGBColor(120, 60, 180),
    RGBColor(40, 150, 40),
    RGBColor(140, 200, 60),
    RGBColor(200, 80, 160),
    RGBColor(150, 100, 40),
    RGBColor(90, 170, 230),
];

/// What plotting functions return.
pub type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The colour of `name`, by its place in `names` (stable across plots).
pub fn color(names: &[String], name: &str) -> RGBColor {
    let i = names.iter().position(|m| m == name).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

/// One named line of a [`lines`] chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Axis text and layout of a [`lines`] chart.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
    /// A vertical line at each of these x values, labelled (e.g. "release").
    pub markers: &'a [(f64, &'a str)],
}

/// `dir/file`: one line per series, linear axes (y from 0, x from 0 or the
/// lowest x), colours by the
/// series' place in `names`. Returns the file written.
pub fn lines(
    dir: &Path,
    file: &str,
    axes: &Axes<'_>,
    series: &[Series],
    names: &[String],
) -> PlotResult<PathBuf> {
    let path = dir.join(file);
    let all = || series.iter().flat_map(|s| s.points.iter());
    let min_x = all().map(|p| p.0).fold(0.0, f64::min);
    let max_x = all().map(|p| p.0).fold(min_x + 1e-9, f64::max);
    // Head room above the highest point, so the legend covers less of it.
    let max_y = all().map(|p| p.1).fold(1e-9, f64::max) * 1.15;
    let root = SVGBackend::new(&path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(axes.title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(min_x..max_x, 0f64..max_y)?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .y_label_formatter(&|y| human(*y))
        .draw()?;
    for &(x, label) in axes.markers {
        chart.draw_series(LineSeries::new(
            [(x, 0.0), (x, max_y)],
            BLACK.mix(0.4).stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            label.to_string(),
            (x, max_y * 0.97),
            ("sans-serif", 13),
        )))?;
    }
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let c = color(names, &s.name);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    drop(chart);
    drop(root);
    Ok(path)
}

/// `12.3M`, `45.6k`, `789`: an axis label.
fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
