//! Command-line flags: what to run. `cargo bench --bench lab -- --help` prints
//! [`HELP`].

use std::path::PathBuf;
use std::time::Duration;

use crate::ops::Dist;
use crate::workloads::Workload;

/// Key types the lab can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    U64,
    String,
}

/// Hashers the lab can build every map with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HasherKind {
    Std,
    Foldhash,
}

/// One lab invocation.
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
    /// Also write the SVG plots here (e.g. `docs/lab`).
    pub plots_dir: Option<PathBuf>,
    pub seed: u64,
    /// Tiny matrix, checks on (what `cargo test --benches` runs).
    pub smoke: bool,
    /// Print the plan and the time estimate, run nothing.
    pub dry_run: bool,
    /// The command line, for the output header.
    pub command: String,
}

/// `--help`.
pub const HELP: &str = "\
readmostly performance lab: every map side by side over user-shaped workloads.

USAGE
    cargo bench --bench lab [-- FLAGS]

    The default matrix (u64 keys, 100k keys, uniform + zipf, threads 1,2,4,8,16,
    six workloads, 3 runs of 60 ms per cell) takes 3 to 5 minutes on 2 cores.
    The full run (every workload, key count and key type; about 6 hours or more on
    2 cores, --dry-run prints the estimate; --runs 3 cuts it by 40%):
    cargo bench --bench lab -- --full --plots-dir docs/lab

PRESETS
    --full                  all workloads, keys 1k,100k,1M, key types u64,string,
                            500 ms x 5 runs per cell, 1 s latency runs
    --smoke                 seconds-long check of every map and workload (what a
                            run without --bench does, e.g. `cargo test --benches`)

FLAGS (they override a preset, wherever they stand)
    --workloads LIST        comma-separated, or `all`, or `default`:
WORKLOADS
    --maps LIST             map ids or id prefixes (`syncmap` = every SyncMap
                            backend), or `all`:
MAPS
    --threads LIST          thread counts [1,2,4,8,16]
    --keys LIST             keys present at the start; k and M suffixes [100k]
    --key-types LIST        u64,string or all [u64]
    --dists LIST            uniform,zipf (Zipf s = 0.99) [uniform,zipf]
    --duration-ms N         per run [60]
    --runs N                runs per cell; the median is reported, min and max kept [3]
    --hasher NAME           std (SipHash-1-3, RandomState) or foldhash, for every map [std]
    --latency-threads N     reader threads of the latency runs [2]
    --latency-ms N          per latency run [300]
    --no-latency            skip get latency percentiles
    --memory-keys N         keys of the live-bytes table [1M]
    --memory-threads N      threads of the churn peak-memory runs [2]
    --no-memory             skip the memory tables
    --no-plots              skip the SVG plots
    --out DIR               tables, CSV, JSON and SVG go here [target/lab]
    --plots-dir DIR         also write the SVG plots here
    --seed N                operation streams and keys [42]
    --dry-run               print the plan and its time estimate, run nothing
    -h, --help              this text
";

impl Config {
    /// The default matrix.
    pub fn default_matrix() -> Self {
        Config {
            workloads: Workload::DEFAULT.to_vec(),
            maps: Vec::new(),
            threads: vec![1, 2, 4, 8, 16],
            keys: vec![100_000],
            key_types: vec![KeyType::U64],
            dists: Dist::ALL.to_vec(),
            duration: Duration::from_millis(60),
            runs: 3,
            hasher: HasherKind::Std,
            latency: true,
            latency_threads: 2,
            latency_duration: Duration::from_millis(300),
            memory: true,
            memory_keys: 1_000_000,
            memory_threads: 2,
            plots: true,
            out: default_out(),
            plots_dir: None,
            seed: 42,
            smoke: false,
            dry_run: false,
            command: String::new(),
        }
    }

    fn full(&mut self) {
        self.workloads = Workload::ALL.to_vec();
        self.keys = vec![1_000, 100_000, 1_000_000];
        self.key_types = vec![KeyType::U64, KeyType::String];
        self.duration = Duration::from_millis(500);
        self.runs = 5;
        self.latency_duration = Duration::from_secs(1);
    }

    fn smoke(&mut self) {
        self.smoke = true;
        self.workloads = Workload::ALL.to_vec();
        self.threads = vec![1, 3];
        self.keys = vec![1_000];
        self.key_types = vec![KeyType::U64, KeyType::String];
        self.duration = Duration::from_millis(3);
        self.runs = 1;
        self.latency_threads = 2;
        self.latency_duration = Duration::from_millis(5);
        self.memory_keys = 2_000;
        self.out = default_out().join("smoke");
    }

    /// Whether map `id` is selected.
    pub fn selects_map(&self, id: &str) -> bool {
        self.maps.is_empty()
            || self
                .maps
                .iter()
                .any(|m| id == m || id.starts_with(&format!("{m}-")))
    }
}

fn default_out() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("lab")
}

/// What the command line asks for.
pub enum Parsed {
    Run(Box<Config>),
    Help(String),
}

/// Parses the arguments after the program name. Cargo passes `--bench` to a
/// `harness = false` target under `cargo bench`; without it (`cargo test
/// --benches`) the lab runs its smoke matrix.
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut cfg = Config::default_matrix();
    cfg.command = std::iter::once("cargo bench --bench lab --".to_string())
        .chain(args.iter().filter(|a| *a != "--bench").cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let bench = args.iter().any(|a| a == "--bench");
    if args.iter().any(|a| a == "--full") {
        cfg.full();
    }
    if args.iter().any(|a| a == "--smoke") || !bench {
        cfg.smoke();
        if !bench {
            cfg.command = "(no --bench: smoke matrix, as under `cargo test --benches`)".into();
        }
    }
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--bench" | "--full" | "--smoke" => {}
            "-h" | "--help" => return Ok(Parsed::Help(help())),
            "--workloads" => cfg.workloads = parse_workloads(&value()?)?,
            "--maps" => {
                let v = value()?;
                cfg.maps = if v == "all" { Vec::new() } else { list(&v) };
                let known = crate::maps::all_maps();
                for m in &cfg.maps {
                    if !known
                        .iter()
                        .any(|(id, _)| id == m || id.starts_with(&format!("{m}-")))
                    {
                        return Err(format!("unknown map `{m}`"));
                    }
                }
            }
            "--threads" => cfg.threads = parse_counts(&value()?)?,
            "--keys" => cfg.keys = parse_counts(&value()?)?,
            "--key-types" => {
                cfg.key_types = list(&value()?)
                    .iter()
                    .map(|k| match k.as_str() {
                        "u64" => Ok(vec![KeyType::U64]),
                        "string" | "String" => Ok(vec![KeyType::String]),
                        "all" => Ok(vec![KeyType::U64, KeyType::String]),
                        other => Err(format!("unknown key type `{other}`")),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .concat();
            }
            "--dists" => {
                cfg.dists = list(&value()?)
                    .iter()
                    .map(|d| Dist::parse(d).ok_or_else(|| format!("unknown distribution `{d}`")))
                    .collect::<Result<_, _>>()?;
            }
            "--duration-ms" => cfg.duration = Duration::from_millis(number(&value()?)? as u64),
            "--runs" => cfg.runs = number(&value()?)?.max(1),
            "--hasher" => {
                cfg.hasher = match value()?.as_str() {
                    "std" => HasherKind::Std,
                    "foldhash" => HasherKind::Foldhash,
                    other => return Err(format!("unknown hasher `{other}`")),
                }
            }
            "--latency-threads" => cfg.latency_threads = number(&value()?)?.max(1),
            "--latency-ms" => {
                cfg.latency_duration = Duration::from_millis(number(&value()?)? as u64)
            }
            "--no-latency" => cfg.latency = false,
            "--memory-keys" => cfg.memory_keys = number(&value()?)?,
            "--memory-threads" => cfg.memory_threads = number(&value()?)?.max(1),
            "--no-memory" => cfg.memory = false,
            "--no-plots" => cfg.plots = false,
            "--dry-run" => cfg.dry_run = true,
            "--out" => cfg.out = PathBuf::from(value()?),
            "--plots-dir" => cfg.plots_dir = Some(PathBuf::from(value()?)),
            "--seed" => cfg.seed = number(&value()?)? as u64,
            other if other.starts_with('-') => {
                return Err(format!("unknown flag `{other}` (see --help)"))
            }
            // A positional filter meant for another bench target of `cargo bench`.
            _ => {}
        }
    }
    if cfg.threads.is_empty() || cfg.keys.is_empty() || cfg.workloads.is_empty() {
        return Err("empty --threads, --keys or --workloads".into());
    }
    Ok(Parsed::Run(Box::new(cfg)))
}

/// [`HELP`] with the workload and map lists filled in.
fn help() -> String {
    let workloads: String = Workload::ALL
        .iter()
        .map(|w| {
            let default = if Workload::DEFAULT.contains(w) {
                " (default)"
            } else {
                ""
            };
            format!("        {:<22}{}{}\n", w.id(), w.describe(), default)
        })
        .collect();
    let maps: String = crate::maps::all_maps()
        .iter()
        .map(|(id, name)| format!("        {id:<22}{name}\n"))
        .collect();
    HELP.replace("WORKLOADS\n", &workloads)
        .replace("MAPS\n", &maps)
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

fn parse_workloads(s: &str) -> Result<Vec<Workload>, String> {
    match s {
        "all" => Ok(Workload::ALL.to_vec()),
        "default" => Ok(Workload::DEFAULT.to_vec()),
        _ => list(s)
            .iter()
            .map(|w| Workload::parse(w).ok_or_else(|| format!("unknown workload `{w}`")))
            .collect(),
    }
}

fn parse_counts(s: &str) -> Result<Vec<usize>, String> {
    list(s).iter().map(|n| number(n)).collect()
}

/// `1000`, `1k`, `100k`, `1M`.
fn number(s: &str) -> Result<usize, String> {
    let (digits, scale) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    digits
        .parse::<usize>()
        .map(|n| n * scale)
        .map_err(|_| format!("not a number: `{s}`"))
}

/// `1k`, `100k`, `1M`, or the plain number.
pub fn short_count(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}
