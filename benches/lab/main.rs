//! The performance lab: every map side by side over user-shaped workloads.
//!
//! `cargo bench -p readmostly-lab` runs the default matrix (5 to 6 minutes on 2
//! cores) and prints one table per workload; `-- --help` lists the flags that
//! select workloads, maps, thread counts, key counts and durations, and `--
//! --full` is the quiet-machine measurement. Without `--bench` (as under `cargo
//! test -p readmostly-lab --benches`) it runs a seconds-long smoke matrix with
//! checks. Results also go to `target/lab/` as CSV, JSON, markdown and SVG. How
//! to read them: docs/performance.md.
//!
//! Modules: `cli` (flags), `workloads` (mixes and key layouts), `ops`
//! (pre-generated operation streams), `keys` (key types, hashers, the key
//! table), `maps` (the trait and one adapter per map), `runner` (one run:
//! threads, warm-up, timing), `matrix` (the throughput and latency sections),
//! `memory` and `alloc` (the counting allocator), `machine` (the header),
//! `report` (tables, CSV, JSON, markdown), `plots` (SVG); `common` (counts, CSV
//! files) and `chart` (colours, line charts) are shared with the `reclaim` target.

mod alloc;
// Shared with the `reclaim` target: its line chart (`chart::lines`) is used
// there only.
#[allow(dead_code)]
mod chart;
mod cli;
mod common;
mod keys;
mod machine;
mod maps;
mod matrix;
mod memory;
mod ops;
mod plots;
mod report;
mod runner;
mod workloads;

use std::collections::hash_map::RandomState;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use cli::{short_count, Config, HasherKind};
use keys::{KeyType, LabHasher};
use report::Report;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn main() -> ExitCode {
    let cfg = cli::parse();
    match cfg.hasher {
        HasherKind::Std => run::<RandomState>(&cfg),
        HasherKind::Foldhash => run::<foldhash::fast::RandomState>(&cfg),
    }
}

/// Runs everything `cfg` asks for with hasher `S`.
fn run<S: LabHasher>(cfg: &Config) -> ExitCode {
    let started = Instant::now();
    let mut report = Report {
        header: machine::describe(S::NAME, &cfg.command),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        subject: maps::all_maps()
            .into_iter()
            .find(|(id, _)| *id == cfg.subject && cfg.selects_map(id))
            .map(|(_, name)| name),
        ..Report::default()
    };
    report.header.push(("matrix".into(), matrix_line(cfg)));
    print!("{}", report.header_text());

    let throughput_runs = matrix::planned_runs(cfg);
    let latency_runs = if cfg.latency {
        matrix::planned_latency_runs(cfg)
    } else {
        0
    };
    let memory_runs = if cfg.memory {
        memory::planned_runs(cfg)
    } else {
        0
    };
    let estimate = estimate(cfg, throughput_runs, latency_runs, memory_runs);
    println!(
        "{:>22}: {throughput_runs} throughput runs, {latency_runs} latency runs, {memory_runs} \
         memory runs; about {} min {} s\n",
        "plan",
        estimate.as_secs() / 60,
        estimate.as_secs() % 60
    );
    if cfg.dry_run {
        return ExitCode::SUCCESS;
    }

    let progress = ProgressBar::new(throughput_runs + latency_runs + memory_runs);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} eta {eta} {msg}")
            .expect("valid template"),
    );
    if cfg.memory {
        for &kt in &cfg.key_types {
            match kt {
                KeyType::U64 => memory::measure::<u64, S>(cfg, kt, &mut report, &progress),
                _ => memory::measure::<String, S>(cfg, kt, &mut report, &progress),
            }
        }
    }
    matrix::throughput::<S>(cfg, &mut report, &progress);
    if cfg.latency {
        report.timer_overhead_ns = runner::timer_overhead();
        matrix::latency::<S>(cfg, &mut report, &progress);
    }
    progress.finish_and_clear();
    report
        .header
        .push(("load average at end".into(), machine::load_average()));
    report.header.push((
        "wall time".into(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));

    let body = [
        report.tables_text(),
        report.wrong_answers_text(),
        report.subject_text(),
        report.latency_text(),
        report.memory_text(),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("\n");
    println!("\n{body}");
    let mut ok = true;
    let summary = format!("{}\n{body}", report.header_text());
    if let Err(e) = report.write_files(&cfg.out, &summary) {
        eprintln!("lab: writing {}: {e}", cfg.out.display());
        ok = false;
    }
    if cfg.plots {
        ok &= write_plots(&report, &cfg.out)
            && cfg
                .plots_dir
                .as_deref()
                .is_none_or(|d| write_plots(&report, d));
    }
    println!("results: {}", cfg.out.display());
    println!("total wall time: {:.1} s", started.elapsed().as_secs_f64());
    if cfg.smoke {
        ok &= smoke_checks(&report);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn matrix_line(cfg: &Config) -> String {
    let join = |v: Vec<String>| v.join(",");
    format!(
        "workloads {}; keys {}; key types {}; dists {}; threads {}; {} ms (after {} ms of \
         warm-up) x {} runs per cell",
        join(cfg.workloads.iter().map(|w| w.id().to_string()).collect()),
        join(cfg.keys.iter().map(|&k| short_count(k)).collect()),
        join(cfg.key_types.iter().map(|k| k.name().to_string()).collect()),
        join(cfg.dists.iter().map(|d| d.id().to_string()).collect()),
        join(cfg.threads.iter().map(|t| t.to_string()).collect()),
        cfg.duration.as_millis(),
        cfg.warmup.as_millis(),
        cfg.runs
    )
}

/// Rough expected wall time: each run's warm-up and duration, about 25 ms of
/// threads starting, draining and stopping, plus the building, prefilling and
/// dropping of its map, measured at about 15 ms per 100k u64 keys and three
/// times that for String keys on a 2-core machine.
fn estimate(cfg: &Config, throughput: u64, latency: u64, memory: u64) -> Duration {
    let setup = |keys: usize, kt: KeyType| {
        let per_100k = if kt == KeyType::U64 { 0.015 } else { 0.045 };
        Duration::from_secs_f64(0.025 + per_100k * keys as f64 / 100_000.0)
    };
    let groups = matrix::groups(cfg);
    let per_group = throughput as f64 / groups.len().max(1) as f64;
    let mut total = Duration::ZERO;
    for g in &groups {
        total += (cfg.warmup + cfg.duration + setup(g.keys, g.key_type)).mul_f64(per_group);
    }
    let first = setup(cfg.keys[0], cfg.key_types[0]);
    total += (cfg.warmup + cfg.latency_duration + first) * latency as u32;
    total += (cfg.latency_duration + first + setup(cfg.memory_keys, cfg.key_types[0]) * 2)
        * memory as u32;
    total
}

fn write_plots(report: &Report, dir: &Path) -> bool {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("lab: {}: {e}", dir.display());
        return false;
    }
    let maps: Vec<String> = maps::all_maps().into_iter().map(|(_, name)| name).collect();
    let mut ok = true;
    for (group, cells) in report.groups() {
        if let Err(e) = plots::throughput(dir, &group, &cells, &maps) {
            eprintln!("lab: plot {}: {e}", group.stem());
            ok = false;
        }
    }
    let mut scenarios: Vec<_> = report.latency.iter().map(|r| r.group).collect();
    scenarios.dedup();
    for group in scenarios {
        let rows: Vec<_> = report.latency.iter().filter(|r| r.group == group).collect();
        if let Err(e) = plots::latency_cdf(dir, &rows, &maps) {
            eprintln!("lab: latency plot {}: {e}", group.stem());
            ok = false;
        }
    }
    ok
}

/// The smoke matrix's checks: every map ran, hit rates match each workload's
/// design, no map answered a get for a present key with nothing, every table
/// and file was written.
fn smoke_checks(report: &Report) -> bool {
    use workloads::Workload;
    let mut failures = Vec::new();
    for cell in &report.cells {
        let at = format!("{} {} {}t", cell.group.title(), cell.map, cell.threads);
        // A run with no operations is a defect if its threads had their cores;
        // one whose threads a loaded machine kept off the CPU for the whole few
        // milliseconds of a smoke run says nothing about the map.
        for run in cell.runs.iter().filter(|r| r.ops == 0) {
            if run.cpu_share >= 0.5 {
                failures.push(format!("{at}: no operations"));
            } else {
                eprintln!(
                    "lab smoke: note: {at}: no operations, with {:.0}% of a core (a loaded machine)",
                    run.cpu_share * 100.0
                );
            }
        }
        if cell.wrong_misses() > 0 {
            failures.push(format!(
                "{at}: {} gets for present keys found nothing",
                cell.wrong_misses()
            ));
        }
        let hits = cell.hit_rate();
        let expected = match cell.group.workload {
            Workload::ReadOnly | Workload::Routing => Some((1.0, 1.0)),
            // Sanity bounds, not the design's ~90%: with Zipf keys the hot keys
            // are nearly always present, and a 1k-key smoke run of a write-heavy
            // mix drifts a few percent either way.
            Workload::ReadHeavy | Workload::Mixed => Some((0.7, 1.0)),
            Workload::WriteHeavy => Some((0.5, 1.0)),
            Workload::Churn => Some((0.3, 0.7)),
            Workload::ConfigReload => Some((0.8, 1.0)),
            _ => None,
        };
        // A few gets say nothing about a rate (a debug-build run of 3 ms may
        // measure one slow write and no get).
        let enough = cell.gets_and_misses().0 >= 100;
        if let Some((lo, hi)) = expected.filter(|_| enough) {
            if !(lo..=hi).contains(&hits) {
                failures.push(format!("{at}: hit rate {hits:.3} outside {lo}..={hi}"));
            }
        }
    }
    if report.latency.iter().any(|r| r.hist.is_empty()) {
        failures.push("a latency histogram is empty".into());
    }
    if report.memory.iter().any(|r| r.live_bytes.unwrap_or(0) <= 0) {
        failures.push("a map's live bytes are not positive".into());
    }
    let checks = report.cells.len() + report.latency.len() + report.memory.len();
    for f in &failures {
        eprintln!("lab smoke: FAILED {f}");
    }
    println!(
        "lab smoke: {} passed, {} failed",
        checks.saturating_sub(failures.len()),
        failures.len()
    );
    failures.is_empty()
}
