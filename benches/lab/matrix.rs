//! The throughput matrix and the latency runs: prepares each cell's keys and
//! streams once, then runs every selected map on them, with the runs of a cell
//! interleaved across maps so that a noisy moment hits all of them alike.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use crate::cli::Config;
use crate::keys::{KeyTable, KeyType, LabHasher, LabKey};
use crate::machine::load_average_1m;
use crate::maps::{for_each_map, LabMap, Visit};
use crate::ops;
use crate::report::{Cell, Group, LatencyRow, Report};
use crate::runner::{self, CellInput, RunResult, Timed, Untimed};
use crate::workloads::Workload;

/// The latency scenarios: gets timed in the read-heavy mix, and while the
/// config-reload writer replaces keys.
pub const LATENCY_SCENARIOS: [Workload; 2] = [Workload::ReadHeavy, Workload::ConfigReload];

/// Seed of a cell's streams: the same for every map and thread count.
pub fn stream_seed(cfg: &Config, group: &Group) -> u64 {
    // DefaultHasher::new() has fixed keys: the same seed run after run.
    let mut h = DefaultHasher::new();
    (cfg.seed, group.workload, group.dist, group.keys).hash(&mut h);
    h.finish()
}

/// The tables `cfg` asks for, in output order. A workload with fixed axes
/// (`routing`) gives one table whatever the key types, counts and distributions.
pub fn groups(cfg: &Config) -> Vec<Group> {
    let mut groups = Vec::new();
    for &key_type in &cfg.key_types {
        for &keys in &cfg.keys {
            for &workload in &cfg.workloads {
                for &dist in &cfg.dists {
                    let (key_type, keys, dist) =
                        workload.fixed_axes().unwrap_or((key_type, keys, dist));
                    let group = Group {
                        workload,
                        key_type,
                        keys,
                        dist,
                    };
                    if !groups.contains(&group) {
                        groups.push(group);
                    }
                }
            }
        }
    }
    groups
}

/// How many maps selected by `cfg` run `workload`.
pub fn maps_for(cfg: &Config, workload: Workload) -> u64 {
    struct Count<'a>(&'a Config, Workload, u64);
    impl<K: LabKey, S: LabHasher> Visit<K, S> for Count<'_> {
        fn visit<M: LabMap<K, S> + 'static>(&mut self) {
            if self.0.selects_map(&M::id()) && M::supports(self.1) {
                self.2 += 1;
            }
        }
    }
    let mut count = Count(cfg, workload, 0);
    for_each_map::<u64, std::collections::hash_map::RandomState, _>(&mut count);
    count.2
}

/// Map runs the throughput matrix takes.
pub fn planned_runs(cfg: &Config) -> u64 {
    let per_group = (cfg.threads.len() * cfg.runs) as u64;
    groups(cfg)
        .iter()
        .map(|g| maps_for(cfg, g.workload) * per_group)
        .sum()
}

/// Map runs of the latency section.
pub fn planned_latency_runs(cfg: &Config) -> u64 {
    let per_dist: u64 = LATENCY_SCENARIOS.iter().map(|&w| maps_for(cfg, w)).sum();
    per_dist * (cfg.dists.len() * cfg.key_types.len()) as u64
}

/// Advances the progress bar by one map run. When the bar is hidden (stderr is
/// not a terminal, as in a logged run), prints a plain progress line to stderr
/// at most every 30 s instead.
pub fn tick(progress: &ProgressBar) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    progress.inc(1);
    if !progress.is_hidden() {
        return;
    }
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
        *last = Some(Instant::now());
        eprintln!(
            "lab: {}/{} runs after {:.0} s · {}",
            progress.position(),
            progress.length().unwrap_or(0),
            progress.elapsed().as_secs_f64(),
            progress.message()
        );
    }
}

/// Calls `f::<K>` with the key type of `key_type` (route keys are `String`s).
macro_rules! with_key_type {
    ($key_type:expr, $f:ident :: <_, $s:ty>($($arg:expr),*)) => {
        match $key_type {
            KeyType::U64 => $f::<u64, $s>($($arg),*),
            KeyType::String | KeyType::Route => $f::<String, $s>($($arg),*),
        }
    };
}

/// Runs the throughput matrix with hasher `S` into `report`.
/// Before the first cell, every map runs it once, untimed and discarded: a
/// process's first runs measure its own warm-up (fresh heap pages faulted in,
/// code paged in) as well as the map; without this round a map's first run
/// of the first cell measured up to 20% below its later ones.
pub fn throughput<S: LabHasher>(cfg: &Config, report: &mut Report, progress: &ProgressBar) {
    let mut process_warm = false;
    for group in groups(cfg) {
        with_key_type!(
            group.key_type,
            throughput_group::<_, S>(cfg, &group, report, progress, &mut process_warm)
        );
    }
}

/// Runs one table: every thread count, every selected map, `cfg.runs` rounds.
fn throughput_group<K: LabKey, S: LabHasher>(
    cfg: &Config,
    group: &Group,
    report: &mut Report,
    progress: &ProgressBar,
    process_warm: &mut bool,
) {
    let w = group.workload;
    let largest = cfg
        .threads
        .iter()
        .map(|&t| w.layout(group.keys, w.stream_threads(t)).total())
        .max()
        .unwrap_or(0);
    progress.set_message(format!("building {largest} {} keys", group.key_type.name()));
    let table = KeyTable::<K>::build(largest, cfg.seed, group.key_type);
    for &threads in &cfg.threads {
        let layout = w.layout(group.keys, w.stream_threads(threads));
        let streams = ops::generate(
            w,
            &layout,
            group.dist,
            ops::stream_len(group.keys),
            stream_seed(cfg, group),
        );
        let input = CellInput {
            workload: w,
            layout,
            keys: &table,
            streams: &streams,
            duration: cfg.duration,
            warmup: cfg.warmup,
        };
        if !*process_warm {
            progress.set_message("warming up the process");
            // Hidden: these runs are not in the plan the progress bar counts.
            let hidden = ProgressBar::hidden();
            for_each_map::<K, S, _>(&mut RunEach::new(cfg, &input, &hidden, false));
            *process_warm = true;
        }
        let load = load_average_1m();
        let mut cells: Vec<Cell> = Vec::new();
        for _ in 0..cfg.runs {
            let mut each = RunEach::new(cfg, &input, progress, false);
            for_each_map::<K, S, _>(&mut each);
            for (map, peer, outcome) in each.out {
                let Outcome::Throughput(result) = outcome else {
                    unreachable!("untimed runs give throughput")
                };
                match cells.iter_mut().find(|c| c.map == map) {
                    Some(cell) => cell.runs.push(result),
                    None => cells.push(Cell {
                        group: *group,
                        threads,
                        map,
                        peer,
                        runs: vec![result],
                        load,
                    }),
                }
            }
        }
        report.cells.extend(cells);
    }
}

/// What one map run produced.
enum Outcome {
    Throughput(RunResult),
    Latency(Histogram<u64>),
}

/// Runs every selected map that supports the cell's workload once on `input`.
struct RunEach<'a, 'k, K> {
    cfg: &'a Config,
    input: &'a CellInput<'k, K>,
    progress: &'a ProgressBar,
    timed: bool,
    out: Vec<(String, bool, Outcome)>,
}

impl<'a, 'k, K> RunEach<'a, 'k, K> {
    fn new(
        cfg: &'a Config,
        input: &'a CellInput<'k, K>,
        progress: &'a ProgressBar,
        timed: bool,
    ) -> Self {
        RunEach {
            cfg,
            input,
            progress,
            timed,
            out: Vec::new(),
        }
    }
}

impl<K: LabKey, S: LabHasher> Visit<K, S> for RunEach<'_, '_, K> {
    fn visit<M: LabMap<K, S> + 'static>(&mut self) {
        if !self.cfg.selects_map(&M::id()) || !M::supports(self.input.workload) {
            return;
        }
        self.progress.set_message(format!(
            "{} · {} stream threads · {}",
            self.input.workload.id(),
            self.input.streams.len(),
            M::name()
        ));
        let outcome = if self.timed {
            let (_, probes) = runner::run::<K, S, M, Timed>(self.input, Timed::new);
            let mut hist = Timed::new().0;
            for probe in &probes {
                hist.add(&probe.0).expect("same histogram bounds");
            }
            Outcome::Latency(hist)
        } else {
            Outcome::Throughput(runner::run::<K, S, M, Untimed>(self.input, || Untimed).0)
        };
        self.out.push((M::name(), M::peer(), outcome));
        tick(self.progress);
    }
}

/// Times every get of the latency scenarios with hasher `S`, with
/// `cfg.latency_threads` reader threads and the first `--keys` value.
pub fn latency<S: LabHasher>(cfg: &Config, report: &mut Report, progress: &ProgressBar) {
    for &key_type in &cfg.key_types {
        for &dist in &cfg.dists {
            for workload in LATENCY_SCENARIOS {
                let group = Group {
                    workload,
                    key_type,
                    keys: cfg.keys[0],
                    dist,
                };
                with_key_type!(
                    key_type,
                    latency_group::<_, S>(cfg, &group, report, progress)
                );
            }
        }
    }
}

fn latency_group<K: LabKey, S: LabHasher>(
    cfg: &Config,
    group: &Group,
    report: &mut Report,
    progress: &ProgressBar,
) {
    let threads = cfg.latency_threads;
    let layout = group.workload.layout(group.keys, threads);
    let table = KeyTable::<K>::build(layout.total(), cfg.seed, group.key_type);
    let streams = ops::generate(
        group.workload,
        &layout,
        group.dist,
        ops::stream_len(group.keys),
        stream_seed(cfg, group),
    );
    let input = CellInput {
        workload: group.workload,
        layout,
        keys: &table,
        streams: &streams,
        duration: cfg.latency_duration,
        warmup: cfg.warmup,
    };
    let mut each = RunEach::new(cfg, &input, progress, true);
    for_each_map::<K, S, _>(&mut each);
    for (map, _, outcome) in each.out {
        let Outcome::Latency(hist) = outcome else {
            unreachable!("timed runs give histograms")
        };
        report.latency.push(LatencyRow {
            group: *group,
            threads,
            map,
            hist,
        });
    }
}
