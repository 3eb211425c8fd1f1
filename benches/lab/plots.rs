//! SVG plots: throughput against threads for each table, and a CDF of get latency
//! for each latency scenario.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::chart::{color, PlotResult};
use crate::report::{Cell, Group, LatencyRow};

/// `throughput-<group>.svg` in `dir`: median Mops/s against threads, one line per
/// map (both axes log-scaled). Returns the file written.
pub fn throughput(
    dir: &Path,
    group: &Group,
    cells: &[&Cell],
    maps: &[String],
) -> PlotResult<PathBuf> {
    let path = dir.join(format!("throughput-{}.svg", group.stem()));
    let max_threads = cells.iter().map(|c| c.threads).max().unwrap_or(1).max(2) as f64;
    // Log-scaled: copy-on-write maps under writes run 100-1000x below the rest.
    let all_mops = || cells.iter().map(|c| c.mops().0).filter(|m| *m > 0.0);
    let max_mops = all_mops().fold(1e-3, f64::max) * 1.5;
    let min_mops = all_mops().fold(max_mops / 10.0, f64::min) / 1.5;
    let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(group.title(), ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (1f64..max_threads).log_scale(),
            (min_mops..max_mops).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("threads")
        .y_desc("Mops/s (median, log scale)")
        .y_label_formatter(&|y| crate::report::fmt_mops(*y))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for map in maps {
        let mut points: Vec<(f64, f64)> = cells
            .iter()
            .filter(|c| &c.map == map)
            .map(|c| (c.threads as f64, c.mops().0))
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = color(maps, map);
        let width = if map.starts_with("SyncMap") || map.starts_with("SnapshotMap") {
            3
        } else {
            2
        };
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(width)).point_size(3))?
            .label(map.as_str())
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

/// `latency-<scenario>-<dist>-<key>.svg` in `dir`: the CDF of get latency, one line
/// per map (log-scaled latency axis, cut at p99.99). Returns the file written.
pub fn latency_cdf(dir: &Path, rows: &[&LatencyRow], maps: &[String]) -> PlotResult<PathBuf> {
    let first = rows[0];
    let path = dir.join(format!(
        "latency-{}-{}-{}.svg",
        first.group.workload.id(),
        first.group.dist.id(),
        first.group.key_type.name().to_lowercase()
    ));
    let lo = rows.iter().map(|r| r.hist.min()).min().unwrap_or(1).max(1) as f64;
    let hi = rows
        .iter()
        .map(|r| r.hist.value_at_quantile(0.9999))
        .max()
        .unwrap_or(2)
        .max(lo as u64 * 2) as f64;
    let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "get latency CDF · {} · {} · {} · {} {}",
        first.group.workload.id(),
        first.group.dist.id(),
        first.group.key_type.name(),
        first.threads,
        if first.group.workload == crate::workloads::Workload::ConfigReload {
            "readers + writer"
        } else {
            "threads"
        }
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("latency, ns (timer included)")
        .y_desc("% of gets at or below")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for row in rows {
        let h = &row.hist;
        let points: Vec<(f64, f64)> = (0..=400)
            .map(|i| {
                // Denser towards the tail: q = 1 - 10^(-4 i / 400), up to 99.99%.
                let q = 1.0 - 10f64.powf(-4.0 * i as f64 / 400.0);
                (h.value_at_quantile(q).max(1) as f64, q * 100.0)
            })
            .collect();
        let c = color(maps, &row.map);
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))?
            .label(row.map.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    drop(chart);
    drop(root);
    Ok(path)
}
