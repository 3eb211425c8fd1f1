//! The reclamation lab: how much garbage each reclamation scheme holds, for
//! how long, what frees it, and what it costs in throughput.
//!
//! `cargo bench -p readmostly-lab --bench reclaim` runs five scenarios (churn,
//! stalled reader, burst then idle, large values, throughput) on five
//! subjects — `SyncMap` on crossbeam-epoch and on seize, `SnapshotMap`
//! publishing through arc-swap, crossbeam-epoch and seize — in about 2
//! minutes on 2 cores; `-- --help` lists the flags,
//! `-- --quick` is a seconds-long smoke run. Without `--bench` (as under
//! `cargo test -p readmostly-lab --benches`) the quick run also checks
//! behaviour (never timings). Output: markdown tables on stdout, and CSV, SVG
//! and `summary.md` in `--out-dir` (default `target/reclaim-lab`).
//!
//! Modules: `cli` (flags), `subjects` (the maps behind one trait, value
//! types), `run` (workers, the sampler), `scenarios` (the five scenarios),
//! `output` (tables, CSV, plots). Shared with the `lab` target: `alloc` (the
//! counting allocator), `machine` (the header), `keys` (key generation),
//! `common` (counts, CSV files), `chart` (line charts).

#[path = "../alloc.rs"]
mod alloc;
#[path = "../chart.rs"]
mod chart;
mod cli;
#[path = "../common.rs"]
mod common;
// Shared with the `lab` target, which uses all of it; this one uses the
// u64 key generation and the hasher's name only.
#[allow(dead_code)]
#[path = "../keys.rs"]
mod keys;
#[path = "../machine.rs"]
mod machine;
mod output;
mod run;
mod scenarios;
mod subjects;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use cli::{Config, Scenario};
use keys::LabHasher;
use output::Results;
use run::{CHURN, READ_HEAVY, READ_ONLY};
use scenarios::{Built, TpCell};
use subjects::{for_each, Blob, Hasher, Subject, Value, Visit};

// Heap figures of every scenario come from here; it counts only between
// `alloc::start` and `alloc::stop` (off for the throughput scenario).
#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn main() -> ExitCode {
    let Some(cfg) = cli::parse() else {
        // Flags for the lab target (both run under a plain `cargo bench -p
        // readmostly-lab -- FLAGS`): nothing to do here.
        return ExitCode::SUCCESS;
    };
    let started = Instant::now();
    let mut header = machine::describe(Hasher::NAME, &cfg.command);
    header.push((
        "scenarios".into(),
        format!("{:?}", cfg.scenarios).to_lowercase(),
    ));
    header.push(("config".into(), cfg.describe()));
    for (k, v) in &header {
        println!("{k:>22}: {v}");
    }
    println!();

    let progress = ProgressBar::new(planned(&cfg));
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} eta {eta} {msg}")
            .expect("valid template"),
    );
    let mut results = Results::default();
    alloc::start();
    let mut runner = Runner {
        cfg: &cfg,
        results: &mut results,
        progress: &progress,
        what: What::Churn,
        cells: Vec::new(),
    };
    if cfg.runs_scenario(Scenario::Churn) {
        runner.all::<u64>(What::Churn);
    }
    if cfg.runs_scenario(Scenario::Stall) {
        for &stall in &cfg.stalls {
            runner.all::<u64>(What::Stall(stall));
        }
    }
    if cfg.runs_scenario(Scenario::Burst) {
        runner.all::<u64>(What::Burst);
    }
    if cfg.runs_scenario(Scenario::Large) {
        runner.all::<Blob<4096>>(What::Large);
        runner.all::<Blob<65536>>(What::Large);
    }
    // The shared counter of the counting allocator would be one more
    // contended write per allocation: throughput runs without it.
    alloc::stop();
    if cfg.runs_scenario(Scenario::Throughput) {
        runner.throughput();
    }
    progress.finish_and_clear();
    header.push(("load average at end".into(), machine::load_average()));
    header.push((
        "wall time".into(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));

    let summary = output::markdown(&header, &cfg, &results);
    println!("{summary}");
    let mut ok = true;
    if let Err(e) = output::write_files(&cfg.out_dir, &results, &summary) {
        eprintln!("reclaim: writing {}: {e}", cfg.out_dir.display());
        ok = false;
    }
    if let Err(e) = output::write_plots(&cfg.out_dir, &cfg, &results) {
        eprintln!("reclaim: {e}");
        ok = false;
    }
    println!("results: {}", cfg.out_dir.display());
    if cfg.checks {
        ok &= checks(&cfg, &results);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Progress-bar steps: one per subject and scenario run, one per throughput run.
fn planned(cfg: &Config) -> u64 {
    let subjects = cli::SUBJECTS.iter().filter(|s| cfg.selects(s)).count() as u64;
    let per_subject: u64 = cfg
        .scenarios
        .iter()
        .map(|s| match s {
            Scenario::Churn | Scenario::Burst => 1,
            Scenario::Stall => cfg.stalls.len() as u64,
            Scenario::Large => 2,
            // Building each mix's map, then every run of both guard modes.
            Scenario::Throughput => 3 * (1 + 2 * cfg.runs as u64),
        })
        .sum();
    subjects * per_subject
}

/// What [`Runner`] does with each subject.
#[derive(Clone, Copy)]
enum What {
    Churn,
    Stall(Duration),
    Burst,
    Large,
    /// Build the subject's map for the throughput scenario.
    Build,
}

/// Runs one scenario on every selected subject.
struct Runner<'a> {
    cfg: &'a Config,
    results: &'a mut Results,
    progress: &'a ProgressBar,
    what: What,
    /// The maps of the throughput scenario, built by `What::Build`.
    cells: Vec<Box<dyn TpCell>>,
}

impl Runner<'_> {
    fn all<V: Value>(&mut self, what: What) {
        self.what = what;
        for_each::<V, _>(self);
    }

    /// Scenario 5: for each mix, every subject's map is built once; then for
    /// each guard mode, run `i` of every subject before run `i + 1` of any
    /// (so a moment of a noisy machine hits all of them alike).
    fn throughput(&mut self) {
        let cfg = self.cfg;
        for mix in [READ_ONLY, READ_HEAVY, CHURN] {
            self.cells.clear();
            self.all::<u64>(What::Build);
            for (guard, held) in [("fresh", false), ("held", true)] {
                let mut runs = vec![Vec::new(); self.cells.len()];
                for _ in 0..cfg.runs {
                    for (i, cell) in self.cells.iter().enumerate() {
                        self.progress.set_message(format!(
                            "throughput · {} · {guard} · {}",
                            mix.name,
                            cell.id()
                        ));
                        runs[i].push(cell.run(cfg, mix, held));
                        self.progress.inc(1);
                    }
                }
                for (cell, runs) in self.cells.iter().zip(runs) {
                    let mut mops: Vec<f64> = runs
                        .iter()
                        .map(|(t, d)| t.ops as f64 / d.as_secs_f64() / 1e6)
                        .collect();
                    mops.sort_by(f64::total_cmp);
                    let n = mops.len();
                    let median = if n % 2 == 1 {
                        mops[n / 2]
                    } else {
                        (mops[n / 2 - 1] + mops[n / 2]) / 2.0
                    };
                    self.results.throughput.push(scenarios::TpRow {
                        mix: mix.name,
                        mix_ops: mix.describe(),
                        guard,
                        subject: cell.id(),
                        scheme: cell.scheme(),
                        keys: cfg.tp_keys,
                        threads: cfg.tp_threads,
                        write_batch: cell.write_batch(cfg.snapshot_batch),
                        runs: n,
                        mops_median: median,
                        mops_min: mops[0],
                        mops_max: mops[n - 1],
                        gets: runs.iter().map(|(t, _)| t.gets).sum(),
                        hits: runs.iter().map(|(t, _)| t.hits).sum(),
                    });
                }
            }
        }
        self.cells.clear();
        run::drain_global();
    }
}

impl<V: Value> Visit<V> for Runner<'_> {
    fn visit<M: Subject<V> + 'static>(&mut self) {
        let cfg = self.cfg;
        if !cfg.selects(M::ID) {
            return;
        }
        let label = match self.what {
            What::Churn => "churn".to_string(),
            What::Stall(d) => format!("stall {} ms", d.as_millis()),
            What::Burst => "burst".into(),
            What::Large => format!("large {}", V::NAME),
            What::Build => "throughput · building".into(),
        };
        self.progress.set_message(format!("{label} · {}", M::ID));
        let r = &mut *self.results;
        match self.what {
            What::Churn => {
                let keys = scenarios::keys_for::<V, M>(cfg);
                let row = scenarios::churn::<V, M>(cfg, "churn", keys, cfg.duration, &mut r.series);
                r.churn.push(row);
            }
            What::Stall(stall) => r
                .stall
                .push(scenarios::stall::<V, M>(cfg, stall, &mut r.series)),
            What::Burst => r.burst.push(scenarios::burst::<V, M>(cfg, &mut r.series)),
            What::Large => {
                let size = std::mem::size_of::<V>();
                let keys = ((cfg.large_mib << 20) / size).max(16);
                let name = format!("large-{}KiB", size / 1024);
                let row =
                    scenarios::churn::<V, M>(cfg, &name, keys, cfg.large_duration, &mut r.series);
                r.large.push(row);
            }
            What::Build => self.cells.push(Box::new(Built::<V, M>::new(cfg))),
        }
        self.progress.inc(1);
    }
}

/// The quick run's checks (behaviour, never timings): every scenario has a
/// row per subject and did work, read-only gets all hit, what each backend
/// promises about draining after flushes holds, and the CSV files have their
/// rows.
fn checks(cfg: &Config, r: &Results) -> bool {
    let mut failures: Vec<String> = Vec::new();
    let subjects: Vec<&str> = cli::SUBJECTS
        .iter()
        .copied()
        .filter(|s| cfg.selects(s))
        .collect();
    let mut expect = |scenario: Scenario, what: &str, ids: Vec<&str>, per_subject: usize| {
        if !cfg.runs_scenario(scenario) {
            return;
        }
        for s in &subjects {
            let n = ids.iter().filter(|id| *id == s).count();
            if n != per_subject {
                failures.push(format!("{what}: {n} rows for {s}, expected {per_subject}"));
            }
        }
    };
    expect(
        Scenario::Churn,
        "churn",
        r.churn.iter().map(|x| x.subject).collect(),
        1,
    );
    expect(
        Scenario::Stall,
        "stall",
        r.stall.iter().map(|x| x.subject).collect(),
        cfg.stalls.len(),
    );
    expect(
        Scenario::Burst,
        "burst",
        r.burst.iter().map(|x| x.subject).collect(),
        1,
    );
    expect(
        Scenario::Large,
        "large",
        r.large.iter().map(|x| x.subject).collect(),
        2,
    );
    expect(
        Scenario::Throughput,
        "throughput",
        r.throughput.iter().map(|x| x.subject).collect(),
        6,
    );
    for x in r.churn.iter().chain(&r.large) {
        if x.ops == 0 {
            failures.push(format!("{} {}: no operations", x.scenario, x.subject));
        }
        if !r
            .series
            .iter()
            .any(|t| t.scenario == x.scenario && t.subject == x.subject)
        {
            failures.push(format!("{} {}: no samples", x.scenario, x.subject));
        }
    }
    for x in &r.stall {
        if x.writer_ops == 0 {
            failures.push(format!(
                "stall {} {}: writers did nothing",
                x.stall_ms, x.subject
            ));
        }
    }
    for x in &r.throughput {
        if x.mix == READ_ONLY.name && x.hits != x.gets {
            failures.push(format!(
                "throughput read-only {} {}: {} of {} gets for present keys found nothing",
                x.guard,
                x.subject,
                x.gets - x.hits,
                x.gets
            ));
        }
    }
    for x in &r.burst {
        if x.burst_ops > 0 && x.gets_run == 0 {
            failures.push(format!(
                "burst {}: the phase-B reader did no gets",
                x.subject
            ));
        }
        // Every map's flush frees everything it retired once no guard is
        // held, on every scheme: whatever the writers' threads left.
        if x.after_flush_objects != 0 {
            failures.push(format!(
                "burst {}: {} objects pending after flushes with no guard held",
                x.subject, x.after_flush_objects
            ));
        }
    }
    // The files hold what the tables hold.
    for (file, rows) in [
        ("churn.csv", r.churn.len()),
        ("stall.csv", r.stall.len()),
        ("burst.csv", r.burst.len()),
        ("large_values.csv", r.large.len()),
        ("throughput.csv", r.throughput.len()),
    ] {
        let read = csv::Reader::from_path(cfg.out_dir.join(file))
            .map(|mut rd| rd.records().filter(|rec| rec.is_ok()).count());
        match read {
            Ok(n) if n == rows => {}
            Ok(n) => failures.push(format!("{file}: {n} rows, expected {rows}")),
            Err(e) => failures.push(format!("{file}: {e}")),
        }
    }
    for f in &failures {
        eprintln!("reclaim checks: FAILED {f}");
    }
    println!("reclaim checks: {} failed", failures.len());
    failures.is_empty()
}
