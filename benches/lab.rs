//! The performance lab: every map side by side over user-shaped workloads.
//!
//! `cargo bench --bench lab` runs the default matrix (a few minutes on 2 cores)
//! and prints one table per workload; `-- --help` lists the flags that select
//! workloads, maps, thread counts, key counts and durations, and `-- --full` is the
//! quiet-machine measurement. Without `--bench` (as under `cargo test --benches`)
//! it runs a seconds-long smoke matrix with checks. Results also go to
//! `target/lab/` as CSV, JSON and SVG. How to read them: `docs/lab.md`.
//!
//! Module map: `cli` (flags), `workloads` (mixes and key layouts), `ops`
//! (pre-generated operation streams), `zipf` and `rng` (key choice), `keys` (key
//! types, hashers, the key table), `maps` (the trait and every adapter),
//! `snapshot` (SnapshotMap's place), `runner` (one cell: threads, barrier,
//! timing), `matrix` (the throughput and latency sections), `memory` and `alloc`
//! (the counting allocator), `machine` (the header), `report` (tables, CSV,
//! JSON), `plots` (SVG).

// The modules live in benches/lab/ (a bench target's root looks beside itself).
#[path = "lab/alloc.rs"]
mod alloc;
#[path = "lab/cli.rs"]
mod cli;
#[path = "lab/keys.rs"]
mod keys;
#[path = "lab/machine.rs"]
mod machine;
#[path = "lab/maps.rs"]
mod maps;
#[path = "lab/matrix.rs"]
mod matrix;
#[path = "lab/memory.rs"]
mod memory;
#[path = "lab/ops.rs"]
mod ops;
#[path = "lab/plots.rs"]
mod plots;
#[path = "lab/report.rs"]
mod report;
#[path = "lab/rng.rs"]
mod rng;
#[path = "lab/runner.rs"]
mod runner;
#[path = "lab/snapshot.rs"]
mod snapshot;
#[path = "lab/workloads.rs"]
mod workloads;
#[path = "lab/zipf.rs"]
mod zipf;

use std::collections::hash_map::RandomState;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use cli::{short_count, Config, HasherKind, KeyType, Parsed};
use keys::LabHasher;
use report::Report;
use workloads::Workload;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match cli::parse(&args) {
        Ok(Parsed::Run(cfg)) => cfg,
        Ok(Parsed::Help(help)) => {
            print!("{help}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("lab: {e}\n(--help lists the flags)");
            return ExitCode::from(2);
        }
    };
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
        ..Report::default()
    };
    report.header.push(("matrix".into(), matrix_line(cfg)));
    print!("{}", report.header_text());

    let key_types = cfg.key_types.len() as u64;
    let throughput_runs = matrix::planned_runs(cfg) * key_types;
    let latency_runs = if cfg.latency {
        matrix::planned_latency_runs(cfg) * key_types
    } else {
        0
    };
    let memory_runs = if cfg.memory {
        memory::planned_runs(cfg) * key_types
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
                KeyType::U64 => memory::measure::<u64, S>(cfg, &mut report, &progress),
                KeyType::String => memory::measure::<String, S>(cfg, &mut report, &progress),
            }
        }
    }
    for &kt in &cfg.key_types {
        match kt {
            KeyType::U64 => matrix::throughput::<u64, S>(cfg, &mut report, &progress),
            KeyType::String => matrix::throughput::<String, S>(cfg, &mut report, &progress),
        }
    }
    if cfg.latency {
        report.timer_overhead_ns = runner::timer_overhead();
        for &kt in &cfg.key_types {
            match kt {
                KeyType::U64 => matrix::latency::<u64, S>(cfg, &mut report, &progress),
                KeyType::String => matrix::latency::<String, S>(cfg, &mut report, &progress),
            }
        }
    }
    progress.finish_and_clear();
    report
        .header
        .push(("load average at end".into(), machine::load_average()));
    report.header.push((
        "wall time".into(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));

    let summary = format!(
        "{}\n{}{}\n{}\n{}",
        report.header_text(),
        report.tables_text(),
        report.latency_text(),
        report.memory_text(),
        report.bar_text()
    );
    println!("{}", &summary[report.header_text().len()..]);
    let mut ok = true;
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
        "workloads {}; keys {}; key types {}; dists {}; threads {}; {} ms x {} runs per cell",
        join(cfg.workloads.iter().map(|w| w.id().to_string()).collect()),
        join(cfg.keys.iter().map(|&k| short_count(k)).collect()),
        join(
            cfg.key_types
                .iter()
                .map(|k| match k {
                    KeyType::U64 => "u64".to_string(),
                    KeyType::String => "String".to_string(),
                })
                .collect()
        ),
        join(cfg.dists.iter().map(|d| d.id().to_string()).collect()),
        join(cfg.threads.iter().map(|t| t.to_string()).collect()),
        cfg.duration.as_millis(),
        cfg.runs
    )
}

/// Rough expected wall time: each run's duration plus the building, prefilling
/// and dropping of its map, measured at about 15 ms per 100k u64 keys and three
/// times that for String keys on this 2-core machine.
fn estimate(cfg: &Config, throughput: u64, latency: u64, memory: u64) -> Duration {
    let setup = |keys: usize, kt: KeyType| {
        let per_100k = if kt == KeyType::String { 0.045 } else { 0.015 };
        Duration::from_secs_f64(per_100k * keys as f64 / 100_000.0)
    };
    let key_types = cfg.key_types.len() as u32;
    let per_key_count = (throughput / cfg.keys.len() as u64) as u32 / key_types;
    let mut total = Duration::ZERO;
    for &kt in &cfg.key_types {
        for &keys in &cfg.keys {
            total += (cfg.duration + setup(keys, kt)) * per_key_count;
        }
        let first = setup(cfg.keys[0], kt);
        total += (cfg.latency_duration + first) * (latency as u32 / key_types);
        total += (cfg.latency_duration + first + setup(cfg.memory_keys, kt) * 2)
            * (memory as u32 / key_types);
    }
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
    let mut scenarios: Vec<_> = report
        .latency
        .iter()
        .map(|r| (r.scenario, r.dist, r.key_type))
        .collect();
    scenarios.dedup();
    for (scenario, dist, key_type) in scenarios {
        let rows: Vec<_> = report
            .latency
            .iter()
            .filter(|r| (r.scenario, r.dist, r.key_type) == (scenario, dist, key_type))
            .collect();
        if let Err(e) = plots::latency_cdf(dir, &rows, &maps) {
            eprintln!("lab: latency plot {}: {e}", scenario.id());
            ok = false;
        }
    }
    ok
}

/// The smoke matrix's checks: every map ran, hit rates match each workload's
/// design, the Zipf sampler matches its distribution.
fn smoke_checks(report: &Report) -> bool {
    let mut failures = Vec::new();
    if let Err(e) = zipf::self_check() {
        failures.push(e);
    }
    for cell in &report.cells {
        let at = format!(
            "{} {} {}t {}",
            cell.group().title(),
            cell.map,
            cell.threads,
            cell.key_type
        );
        if cell.runs.iter().any(|r| r.ops == 0) {
            failures.push(format!("{at}: no operations"));
        }
        let hits = cell.hit_rate();
        let expected = match cell.workload {
            Workload::ReadOnly => Some((1.0, 1.0)),
            // Sanity bounds, not the design's ~90%: with Zipf keys the hot keys
            // are nearly always present, and a 1k-key smoke run of a write-heavy
            // mix drifts a few percent either way.
            Workload::ReadHeavy | Workload::Mixed => Some((0.7, 1.0)),
            Workload::WriteHeavy => Some((0.5, 1.0)),
            Workload::Churn => Some((0.3, 0.7)),
            Workload::ConfigReload => Some((0.8, 1.0)),
            _ => None,
        };
        if let Some((lo, hi)) = expected {
            if !(lo..=hi).contains(&hits) {
                failures.push(format!("{at}: hit rate {hits:.3} outside {lo}..={hi}"));
            }
        }
    }
    if report.latency.iter().any(|r| r.hist.is_empty()) {
        failures.push("a latency histogram is empty".into());
    }
    if report.memory.iter().any(|r| r.live.unwrap_or(0) <= 0) {
        failures.push("a map's live bytes are not positive".into());
    }
    let checks = report.cells.len() + report.latency.len() + report.memory.len() + 1;
    for f in &failures {
        eprintln!("lab smoke: FAILED {f}");
    }
    println!(
        "lab smoke: {} passed, {} failed",
        checks - failures.len().min(checks),
        failures.len()
    );
    failures.is_empty()
}
