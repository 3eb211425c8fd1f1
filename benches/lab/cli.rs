//! Command-line flags (clap) and the configuration they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

pub use crate::common::short_count;
use crate::common::{count, from_repo_root, target_dir};
use crate::keys::KeyType;
use crate::ops::Dist;
use crate::workloads::Workload;

/// Hashers the lab can build every map with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HasherKind {
    /// std `RandomState` (SipHash-1-3).
    Std,
    /// `foldhash::fast::RandomState`.
    Foldhash,
}

/// The flags. Each preset (`--full`, `--smoke`) sets several values; a flag given
/// with it overrides the preset's value, wherever it stands.
#[derive(Parser, Debug)]
#[command(
    name = "lab",
    about = "readmostly performance lab: every map side by side over user-shaped workloads",
    long_about = "readmostly performance lab: every map side by side over user-shaped workloads.\n\n\
        The default matrix (u64 keys, 100k keys, uniform + zipf, threads 1,2,4,8,16, \
        the seven default workloads, 3 runs of 50 ms per cell after 10 ms of warm-up) \
        measures for 5 to 6 minutes on 2 cores. The full run (every workload, key count and key \
        type) takes hours: --dry-run prints the plan and an estimate.",
    override_usage = "cargo bench -p readmostly-lab [-- FLAGS]"
)]
pub struct Args {
    /// All workloads, keys 1k,100k,1M, key types u64,string, 500 ms x 5 runs per
    /// cell, 1 s latency runs
    #[arg(long)]
    full: bool,
    /// Seconds-long check of every map and workload, with checks (what a run
    /// without --bench does, e.g. `cargo test -p readmostly-lab --benches`)
    #[arg(long)]
    smoke: bool,
    /// Comma-separated workloads, `all` or `default` (listed below) [default: default]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Comma-separated map ids or id prefixes (`syncmap` = every SyncMap), or `all`
    /// (listed below) [default: all]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    maps: Option<Vec<String>>,
    /// Thread counts [default: 1,2,4,8,16]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = count)]
    threads: Option<Vec<usize>>,
    /// Keys present at the start; k and M suffixes [default: 100k]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = count)]
    keys: Option<Vec<usize>>,
    /// Key types: u64, string (21-byte user keys), route (`/svc/01234/route`), or
    /// `all` [default: u64]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = key_types)]
    key_types: Option<Vec<Vec<KeyType>>>,
    /// Key distributions (Zipf s = 0.99) [default: uniform,zipf]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    dists: Option<Vec<Dist>>,
    /// Measured time per run [default: 50]
    #[arg(long, value_name = "MS")]
    duration_ms: Option<u64>,
    /// Untimed time per run before the measured part, every thread running its
    /// stream [default: 10]
    #[arg(long, value_name = "MS")]
    warmup_ms: Option<u64>,
    /// Runs per cell, interleaved across maps; the median is reported [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    runs: Option<u64>,
    /// Hasher of every map
    #[arg(long, value_enum, default_value_t = HasherKind::Std)]
    hasher: HasherKind,
    /// Reader threads of the latency runs
    #[arg(long, value_name = "N", default_value_t = 2)]
    latency_threads: usize,
    /// Per latency run [default: 300]
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Skip get latency percentiles
    #[arg(long)]
    no_latency: bool,
    /// Keys of the live-bytes table [default: 1M]
    #[arg(long, value_name = "N", value_parser = count)]
    memory_keys: Option<usize>,
    /// Threads of the churn peak-memory runs
    #[arg(long, value_name = "N", default_value_t = 2)]
    memory_threads: usize,
    /// Skip the memory tables
    #[arg(long)]
    no_memory: bool,
    /// Skip the SVG plots
    #[arg(long)]
    no_plots: bool,
    /// Tables, CSV, JSON, markdown and SVG go here [default: target/lab]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Also write the SVG plots here (e.g. docs/lab)
    #[arg(long, value_name = "DIR")]
    plots_dir: Option<PathBuf>,
    /// The map the "against the best peer" table is about
    #[arg(long, value_name = "ID", default_value = "syncmap")]
    subject: String,
    /// Seed of the operation streams and keys
    #[arg(long, value_name = "N", default_value_t = 42)]
    seed: u64,
    /// Print the plan and its time estimate, run nothing
    #[arg(long)]
    dry_run: bool,
    /// Passed by `cargo bench`; without it the smoke matrix runs.
    #[arg(long, hide = true)]
    bench: bool,
    /// Filters `cargo bench` passes to every bench target: ignored.
    #[arg(hide = true)]
    filters: Vec<String>,
}

/// One lab invocation, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    pub workloads: Vec<Workload>,
    /// Map ids (or id prefixes) to run; empty = all.
    pub maps: Vec<String>,
    pub threads: Vec<usize>,
    pub keys: Vec<usize>,
    pub key_types: Vec<KeyType>,
    pub dists: Vec<Dist>,
    pub duration: Duration,
    pub warmup: Duration,
    pub runs: usize,
    pub hasher: HasherKind,
    pub latency: bool,
    pub latency_threads: usize,
    pub latency_duration: Duration,
    pub memory: bool,
    pub memory_keys: usize,
    pub memory_threads: usize,
    pub plots: bool,
    pub out: PathBuf,
    pub plots_dir: Option<PathBuf>,
    pub subject: String,
    pub seed: u64,
    /// Tiny matrix, checks on (what `cargo test --benches` runs).
    pub smoke: bool,
    pub dry_run: bool,
    /// The command line, for the output header.
    pub command: String,
}

impl Config {
    /// Whether map `id` is selected.
    pub fn selects_map(&self, id: &str) -> bool {
        self.maps.is_empty() || self.maps.iter().any(|m| matches_id(id, m))
    }
}

/// `m` names `id` or is the prefix of a family of ids (`syncmap` for
/// `syncmap-v2`).
fn matches_id(id: &str, m: &str) -> bool {
    id == m || id.strip_prefix(m).is_some_and(|rest| rest.starts_with('-'))
}

/// Parses the process's arguments. Cargo passes `--bench` to a `harness = false`
/// target under `cargo bench`; without it (`cargo test --benches`) the lab runs
/// its smoke matrix. Exits with clap's message on a bad flag or `--help`.
pub fn parse() -> Config {
    let matches = Args::command()
        .after_help(lists())
        .get_matches_from(std::env::args_os());
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command = std::iter::once("cargo bench -p readmostly-lab --".to_string())
        .chain(std::env::args().skip(1).filter(|a| a != "--bench"))
        .collect::<Vec<_>>()
        .join(" ");
    match resolve(args, command) {
        Ok(cfg) => cfg,
        Err(msg) => Args::command()
            .error(clap::error::ErrorKind::InvalidValue, msg)
            .exit(),
    }
}

fn resolve(a: Args, command: String) -> Result<Config, String> {
    let smoke = a.smoke || !a.bench;
    let full = a.full && !smoke;
    let default_out = target_dir().join("lab");
    let preset = (smoke, full);
    let workloads = match a.workloads.as_deref() {
        None if smoke || full => Workload::value_variants().to_vec(),
        None => Workload::DEFAULT.to_vec(),
        Some([w]) if w == "all" => Workload::value_variants().to_vec(),
        Some([w]) if w == "default" => Workload::DEFAULT.to_vec(),
        Some(list) => list
            .iter()
            .map(|w| Workload::from_str(w, true).map_err(|_| format!("unknown workload `{w}`")))
            .collect::<Result<_, _>>()?,
    };
    let maps = match a.maps {
        Some(list) if list.iter().any(|m| m == "all") => Vec::new(),
        Some(list) => list,
        None => Vec::new(),
    };
    let known = crate::maps::all_maps();
    if let Some(m) = maps
        .iter()
        .find(|m| !known.iter().any(|(id, _)| matches_id(id, m)))
    {
        return Err(format!("unknown map `{m}` (see --help)"));
    }
    let cfg = Config {
        workloads,
        maps,
        threads: a.threads.unwrap_or_else(|| {
            pick(
                preset,
                vec![1, 3],
                vec![1, 2, 4, 8, 16],
                vec![1, 2, 4, 8, 16],
            )
        }),
        keys: a.keys.unwrap_or_else(|| {
            pick(
                preset,
                vec![1_000],
                vec![1_000, 100_000, 1_000_000],
                vec![100_000],
            )
        }),
        key_types: a.key_types.map(|k| k.concat()).unwrap_or_else(|| {
            pick(
                preset,
                vec![KeyType::U64, KeyType::String],
                vec![KeyType::U64, KeyType::String],
                vec![KeyType::U64],
            )
        }),
        dists: a.dists.unwrap_or_else(|| Dist::value_variants().to_vec()),
        duration: Duration::from_millis(a.duration_ms.unwrap_or(pick(preset, 3, 500, 50))),
        warmup: Duration::from_millis(a.warmup_ms.unwrap_or(pick(preset, 1, 100, 10))),
        runs: a.runs.unwrap_or(pick(preset, 1, 5, 3)) as usize,
        hasher: a.hasher,
        latency: !a.no_latency,
        latency_threads: a.latency_threads.max(1),
        latency_duration: Duration::from_millis(a.latency_ms.unwrap_or(pick(preset, 5, 1000, 300))),
        memory: !a.no_memory,
        memory_keys: a
            .memory_keys
            .unwrap_or(pick(preset, 2_000, 1_000_000, 1_000_000)),
        memory_threads: a.memory_threads.max(1),
        plots: !a.no_plots,
        out: a.out.map(from_repo_root).unwrap_or_else(|| {
            pick(
                preset,
                default_out.join("smoke"),
                default_out.clone(),
                default_out,
            )
        }),
        plots_dir: a.plots_dir.map(from_repo_root),
        subject: a.subject,
        seed: a.seed,
        smoke,
        dry_run: a.dry_run,
        command: if a.bench {
            command
        } else {
            "(no --bench: smoke matrix, as under `cargo test --benches`)".into()
        },
    };
    if cfg.threads.is_empty() || cfg.keys.is_empty() || cfg.workloads.is_empty() {
        return Err("empty --threads, --keys or --workloads".into());
    }
    Ok(cfg)
}

/// The value of the smoke preset, of the full one, or the default.
fn pick<T>((smoke, full): (bool, bool), smoke_value: T, full_value: T, default: T) -> T {
    if smoke {
        smoke_value
    } else if full {
        full_value
    } else {
        default
    }
}

/// The workloads and maps, for `--help`.
fn lists() -> String {
    let mut s = String::from("Workloads:\n");
    for &w in Workload::value_variants() {
        let default = if Workload::DEFAULT.contains(&w) {
            " (default)"
        } else {
            ""
        };
        s += &format!("  {:<20}{}{}\n", w.id(), w.describe(), default);
    }
    s += "\nMaps:\n";
    for (id, name) in crate::maps::all_maps() {
        s += &format!("  {id:<20}{name}\n");
    }
    s
}

/// One `--key-types` item: a key type or `all`.
fn key_types(s: &str) -> Result<Vec<KeyType>, String> {
    if s == "all" {
        return Ok(KeyType::value_variants().to_vec());
    }
    KeyType::from_str(s, true).map(|k| vec![k])
}

/// The command-line name of `v`.
pub fn value_name(v: impl ValueEnum) -> String {
    let value = v.to_possible_value().expect("no variant is skipped");
    value.get_name().to_string()
}
