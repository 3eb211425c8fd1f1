//! The throughput matrix and the latency runs for one key type and hasher:
//! prepares each cell's keys and streams once, then runs every selected map on
//! them, with the runs of a cell interleaved across maps so that a noisy moment
//! hits all of them alike.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use crate::cli::Config;
use crate::keys::{KeyTable, LabHasher, LabKey};
use crate::maps::{for_each_map, LabMap, Visit};
use crate::ops::{self, Dist};
use crate::report::{Cell, LatencyRow, Report};
use crate::rng::mix64;
use crate::runner::{self, CellInput, RunResult, Timed, Untimed};
use crate::workloads::Workload;

/// The latency scenarios: gets timed in the read-heavy mix, and while the
/// config-reload writer replaces keys.
pub const LATENCY_SCENARIOS: [Workload; 2] = [Workload::ReadHeavy, Workload::ConfigReload];

/// Seed of a cell's streams: the same for every map and thread count.
pub fn stream_seed(cfg: &Config, workload: Workload, dist: Dist, keys: usize) -> u64 {
    mix64(cfg.seed ^ mix64(workload as u64 + 1) ^ mix64((dist as u64 + 1) << 20) ^ keys as u64)
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

/// Map runs the throughput matrix takes for one key type.
pub fn planned_runs(cfg: &Config) -> u64 {
    let points = (cfg.keys.len() * cfg.dists.len() * cfg.threads.len() * cfg.runs) as u64;
    cfg.workloads
        .iter()
        .map(|&w| maps_for(cfg, w) * points)
        .sum()
}

/// Map runs of the latency section for one key type.
pub fn planned_latency_runs(cfg: &Config) -> u64 {
    let per_dist: u64 = LATENCY_SCENARIOS.iter().map(|&w| maps_for(cfg, w)).sum();
    per_dist * cfg.dists.len() as u64
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
    out: Vec<(String, Outcome)>,
}

impl<K: LabKey, S: LabHasher> Visit<K, S> for RunEach<'_, '_, K> {
    fn visit<M: LabMap<K, S> + 'static>(&mut self) {
        if !self.cfg.selects_map(&M::id()) || !M::supports(self.input.workload) {
            return;
        }
        self.progress.set_message(format!(
            "{} · {} · {} stream threads · {}",
            self.input.workload.id(),
            K::NAME,
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
        self.out.push((M::name(), outcome));
        tick(self.progress);
    }
}

/// Runs the throughput matrix for key type `K` and hasher `S` into `report`.
pub fn throughput<K: LabKey, S: LabHasher>(
    cfg: &Config,
    report: &mut Report,
    progress: &ProgressBar,
) {
    let mut table = KeyTable::<K>::build(0, cfg.seed);
    for &keys in &cfg.keys {
        for &workload in &cfg.workloads {
            for &dist in &cfg.dists {
                for &threads in &cfg.threads {
                    let layout = workload.layout(keys, workload.stream_threads(threads));
                    if table.keys().len() < layout.total() {
                        progress.set_message(format!(
                            "building {} {} keys",
                            layout.total(),
                            K::NAME
                        ));
                        table = KeyTable::build(layout.total(), cfg.seed);
                    }
                    let streams = ops::generate(
                        workload,
                        &layout,
                        dist,
                        ops::stream_len(keys),
                        stream_seed(cfg, workload, dist, keys),
                    );
                    let input = CellInput {
                        workload,
                        layout,
                        keys: &table,
                        streams: &streams,
                        duration: cfg.duration,
                    };
                    let mut cells: Vec<Cell> = Vec::new();
                    for _ in 0..cfg.runs {
                        let mut each = RunEach {
                            cfg,
                            input: &input,
                            progress,
                            timed: false,
                            out: Vec::new(),
                        };
                        for_each_map::<K, S, _>(&mut each);
                        for (map, outcome) in each.out {
                            let Outcome::Throughput(result) = outcome else {
                                unreachable!()
                            };
                            match cells.iter_mut().find(|c| c.map == map) {
                                Some(cell) => cell.runs.push(result),
                                None => cells.push(Cell {
                                    workload,
                                    dist,
                                    key_type: K::NAME,
                                    keys,
                                    threads,
                                    map,
                                    runs: vec![result],
                                }),
                            }
                        }
                    }
                    report.cells.extend(cells);
                }
            }
        }
    }
}

/// Times every get of the latency scenarios for key type `K` and hasher `S`, with
/// `cfg.latency_threads` reader threads and the first `--keys` value.
pub fn latency<K: LabKey, S: LabHasher>(cfg: &Config, report: &mut Report, progress: &ProgressBar) {
    let keys = cfg.keys[0];
    let readers = cfg.latency_threads;
    for &dist in &cfg.dists {
        for scenario in LATENCY_SCENARIOS {
            let layout = scenario.layout(keys, readers);
            let table = KeyTable::<K>::build(layout.total(), cfg.seed);
            let streams = ops::generate(
                scenario,
                &layout,
                dist,
                ops::stream_len(keys),
                stream_seed(cfg, scenario, dist, keys),
            );
            let input = CellInput {
                workload: scenario,
                layout,
                keys: &table,
                streams: &streams,
                duration: cfg.latency_duration,
            };
            let mut each = RunEach {
                cfg,
                input: &input,
                progress,
                timed: true,
                out: Vec::new(),
            };
            for_each_map::<K, S, _>(&mut each);
            for (map, outcome) in each.out {
                let Outcome::Latency(hist) = outcome else {
                    unreachable!()
                };
                report.latency.push(LatencyRow {
                    scenario,
                    dist,
                    key_type: K::NAME,
                    keys,
                    threads: readers,
                    map,
                    hist,
                });
            }
        }
    }
}
