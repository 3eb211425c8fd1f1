//! The reclaim target's flags (clap) and the configuration they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::common::{count, from_repo_root, short_count, target_dir};

/// The five scenarios, in run order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// Churn mix on every thread; pending garbage sampled over time.
    Churn,
    /// A reader holds a guard (or a snapshot) while writers churn.
    Stall,
    /// A burst of overwrites, then idle, gets only, flushes: what drains it.
    Burst,
    /// The churn mix with 4 KiB and 64 KiB values: bytes, not only counts.
    Large,
    /// Throughput of each backend: read-only, read-heavy and churn mixes.
    Throughput,
}

/// The flags. `--quick` sets every size to a seconds-long smoke run; a flag
/// given with it overrides its value.
#[derive(Parser, Debug)]
#[command(
    name = "reclaim",
    about = "readmostly reclamation lab: garbage and throughput of SyncMap on crossbeam-epoch, \
             SyncMap on seize and SnapshotMap (arc-swap), scenario by scenario",
    long_about = "readmostly reclamation lab: garbage and throughput of SyncMap on \
        crossbeam-epoch, SyncMap on seize and SnapshotMap (arc-swap), scenario by scenario.\n\n\
        The default run (every scenario) takes about 2-3 minutes on 2 cores. SnapshotMap \
        copies its whole table per write, so its writes are grouped into batches \
        (--snapshot-batch) and it runs on fewer keys (--snapshot-keys); every table and CSV \
        row says so.",
    override_usage = "cargo bench -p readmostly-lab --bench reclaim [-- FLAGS]"
)]
pub struct Args {
    /// Seconds-long smoke run of every scenario (what a run without --bench
    /// does, e.g. `cargo test -p readmostly-lab --benches`)
    #[arg(long)]
    quick: bool,
    /// Comma-separated scenarios [default: all]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    scenarios: Option<Vec<Scenario>>,
    /// Comma-separated subjects: syncmap-crossbeam, syncmap-seize,
    /// snapshotmap-arcswap, snapshotmap-crossbeam, snapshotmap-seize
    /// [default: all]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    subjects: Option<Vec<String>>,
    /// Keys of the churn, stall and burst scenarios (SyncMaps) [default: 1M]
    #[arg(long, value_name = "N", value_parser = count)]
    keys: Option<usize>,
    /// Keys of those scenarios for SnapshotMap, which copies them all per
    /// write batch [default: 100k]
    #[arg(long, value_name = "N", value_parser = count)]
    snapshot_keys: Option<usize>,
    /// SnapshotMap's writes per batch (one copy, one publish); the SyncMaps
    /// write one operation at a time [default: 1000]
    #[arg(long, value_name = "N", value_parser = count)]
    snapshot_batch: Option<usize>,
    /// Worker threads of churn, burst and large values [default: 4]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Churn duration [default: 3000]
    #[arg(long, value_name = "MS")]
    duration_ms: Option<u64>,
    /// Sampling interval of the garbage time series [default: 10]
    #[arg(long, value_name = "MS")]
    sample_ms: Option<u64>,
    /// Stall lengths, one stall scenario each [default: 100,1000]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    stall_ms: Option<Vec<u64>>,
    /// Writer threads during a stall [default: 2]
    #[arg(long, value_name = "N")]
    stall_writers: Option<usize>,
    /// Overwrites of the burst (SyncMaps); k and M suffixes [default: 10M]
    #[arg(long, value_name = "N", value_parser = count)]
    burst: Option<usize>,
    /// Overwrites of SnapshotMap's burst [default: 1M, i.e. 1,000 batches]
    #[arg(long, value_name = "N", value_parser = count)]
    snapshot_burst: Option<usize>,
    /// Length of each phase after the burst (idle, gets only) [default: 1000]
    #[arg(long, value_name = "MS")]
    phase_ms: Option<u64>,
    /// Table size of the large-value scenario, MiB of values (keys = this /
    /// value size) [default: 32]
    #[arg(long, value_name = "MIB")]
    large_mib: Option<usize>,
    /// Duration of each large-value run [default: 1000]
    #[arg(long, value_name = "MS")]
    large_ms: Option<u64>,
    /// Keys of the throughput scenario (every subject) [default: 100k]
    #[arg(long, value_name = "N", value_parser = count)]
    tp_keys: Option<usize>,
    /// Threads of the throughput scenario [default: the core count]
    #[arg(long, value_name = "N")]
    tp_threads: Option<usize>,
    /// Measured time per throughput run [default: 500]
    #[arg(long, value_name = "MS")]
    tp_ms: Option<u64>,
    /// Throughput runs per cell, subjects interleaved; the median is reported
    /// [default: 3]
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// CSV files, SVG plots and summary.md go here [default: target/reclaim-lab]
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Seed of keys and operation choices
    #[arg(long, value_name = "N", default_value_t = 42)]
    seed: u64,
    /// Passed by `cargo bench`; without it the quick run and its checks run.
    #[arg(long, hide = true)]
    bench: bool,
    /// Filters `cargo bench` passes to every bench target: ignored.
    #[arg(hide = true)]
    filters: Vec<String>,
}

/// One invocation, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    pub scenarios: Vec<Scenario>,
    /// Subject ids to run; empty = all.
    pub subjects: Vec<String>,
    pub keys: usize,
    pub snapshot_keys: usize,
    pub snapshot_batch: usize,
    pub threads: usize,
    pub duration: Duration,
    pub sample: Duration,
    pub stalls: Vec<Duration>,
    pub stall_writers: usize,
    pub burst: usize,
    pub snapshot_burst: usize,
    pub phase: Duration,
    pub large_mib: usize,
    pub large_duration: Duration,
    pub tp_keys: usize,
    pub tp_threads: usize,
    pub tp_duration: Duration,
    pub runs: usize,
    pub out_dir: PathBuf,
    pub seed: u64,
    /// Small sizes; with `checks`, what `cargo test --benches` runs.
    pub quick: bool,
    /// Assert the behaviour checks at the end (a run without `--bench`).
    pub checks: bool,
    /// The command line, for the output header.
    pub command: String,
}

impl Config {
    /// Whether subject `id` is selected.
    pub fn selects(&self, id: &str) -> bool {
        self.subjects.is_empty() || self.subjects.iter().any(|s| s == id)
    }

    /// Whether `scenario` runs.
    pub fn runs_scenario(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// The configuration line of the output header.
    pub fn describe(&self) -> String {
        let ms = |d: Duration| d.as_millis();
        format!(
            "keys {} (SnapshotMap {}, writes in batches of {}); threads {}; churn {} ms; \
             sample every {} ms; stalls {:?} ms with {} writers; burst {} (SnapshotMap {}); \
             phases {} ms; large values {} MiB for {} ms; throughput {} keys, {} threads, {} ms \
             x {} runs",
            short_count(self.keys),
            short_count(self.snapshot_keys),
            self.snapshot_batch,
            self.threads,
            ms(self.duration),
            ms(self.sample),
            self.stalls
                .iter()
                .map(|d| d.as_millis())
                .collect::<Vec<_>>(),
            self.stall_writers,
            short_count(self.burst),
            short_count(self.snapshot_burst),
            ms(self.phase),
            self.large_mib,
            ms(self.large_duration),
            short_count(self.tp_keys),
            self.tp_threads,
            ms(self.tp_duration),
            self.runs
        )
    }
}

/// The subject ids, in run order.
pub const SUBJECTS: [&str; 5] = [
    "syncmap-crossbeam",
    "syncmap-seize",
    "snapshotmap-arcswap",
    "snapshotmap-crossbeam",
    "snapshotmap-seize",
];

/// Flags of the `lab` target that this one does not take. `cargo bench -p
/// readmostly-lab -- FLAGS` (no `--bench NAME`) runs both targets with the same
/// FLAGS; given one of these, this target steps aside instead of failing after
/// the lab's run (`--threads 1,2,4` lists and the like are the lab's too).
const LAB_ONLY: [&str; 19] = [
    "--full",
    "--smoke",
    "--workloads",
    "--maps",
    "--key-types",
    "--dists",
    "--warmup-ms",
    "--hasher",
    "--latency-threads",
    "--latency-ms",
    "--no-latency",
    "--memory-keys",
    "--memory-threads",
    "--no-memory",
    "--no-plots",
    "--out",
    "--plots-dir",
    "--subject",
    "--dry-run",
];

/// Parses the process's arguments. Cargo passes `--bench` to a `harness =
/// false` target under `cargo bench`; without it (`cargo test --benches`) the
/// quick run and its checks run. Exits with clap's message on a bad flag;
/// `None` when the flags are the lab target's (see [`LAB_ONLY`]).
pub fn parse() -> Option<Config> {
    let lab_flag = std::env::args().skip(1).find(|a| {
        let name = a.split('=').next().unwrap_or(a);
        LAB_ONLY.contains(&name)
    });
    if let Some(flag) = lab_flag {
        eprintln!(
            "reclaim: not run: `{flag}` is a flag of the lab target; the reclamation lab runs \
             with `cargo bench -p readmostly-lab --bench reclaim [-- FLAGS]`"
        );
        return None;
    }
    let args = Args::parse();
    let command = std::iter::once("cargo bench -p readmostly-lab --bench reclaim --".to_string())
        .chain(std::env::args().skip(1).filter(|a| a != "--bench"))
        .collect::<Vec<_>>()
        .join(" ");
    match resolve(args, command) {
        Ok(cfg) => Some(cfg),
        Err(msg) => {
            use clap::CommandFactory;
            Args::command()
                .error(clap::error::ErrorKind::InvalidValue, msg)
                .exit()
        }
    }
}

fn resolve(a: Args, command: String) -> Result<Config, String> {
    let checks = !a.bench;
    let quick = a.quick || checks;
    // The quick value, or the default.
    let q = |quick_value: u64, default: u64| if quick { quick_value } else { default };
    let ms = |flag: Option<u64>, quick_value, default| {
        Duration::from_millis(flag.unwrap_or(q(quick_value, default)))
    };
    let subjects = a.subjects.unwrap_or_default();
    if let Some(s) = subjects.iter().find(|s| !SUBJECTS.contains(&s.as_str())) {
        return Err(format!(
            "unknown subject `{s}` (one of {})",
            SUBJECTS.join(", ")
        ));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cfg = Config {
        scenarios: a
            .scenarios
            .unwrap_or_else(|| Scenario::value_variants().to_vec()),
        subjects,
        keys: a.keys.unwrap_or(q(20_000, 1_000_000) as usize),
        snapshot_keys: a.snapshot_keys.unwrap_or(q(5_000, 100_000) as usize),
        snapshot_batch: a.snapshot_batch.unwrap_or(q(100, 1_000) as usize).max(1),
        threads: a.threads.unwrap_or(4).max(1),
        duration: ms(a.duration_ms, 200, 3_000),
        sample: ms(a.sample_ms, 5, 10).max(Duration::from_millis(1)),
        stalls: a
            .stall_ms
            .unwrap_or_else(|| {
                if quick {
                    vec![20, 100]
                } else {
                    vec![100, 1_000]
                }
            })
            .into_iter()
            .map(Duration::from_millis)
            .collect(),
        stall_writers: a.stall_writers.unwrap_or(2).max(1),
        burst: a.burst.unwrap_or(q(100_000, 10_000_000) as usize),
        snapshot_burst: a.snapshot_burst.unwrap_or(q(10_000, 1_000_000) as usize),
        phase: ms(a.phase_ms, 150, 1_000),
        large_mib: a.large_mib.unwrap_or(q(2, 32) as usize).max(1),
        large_duration: ms(a.large_ms, 150, 1_000),
        tp_keys: a.tp_keys.unwrap_or(q(10_000, 100_000) as usize),
        tp_threads: a.tp_threads.unwrap_or(cores).max(1),
        tp_duration: ms(a.tp_ms, 60, 500),
        runs: a.runs.unwrap_or(q(1, 3) as usize).max(1),
        out_dir: a.out_dir.map(from_repo_root).unwrap_or_else(|| {
            let dir = target_dir().join("reclaim-lab");
            if quick {
                dir.join("quick")
            } else {
                dir
            }
        }),
        seed: a.seed,
        quick,
        checks,
        command: if a.bench {
            command
        } else {
            "(no --bench: quick run with checks, as under `cargo test --benches`)".into()
        },
    };
    if cfg.keys == 0 || cfg.snapshot_keys == 0 || cfg.tp_keys == 0 {
        return Err("key counts must be positive".into());
    }
    Ok(cfg)
}
