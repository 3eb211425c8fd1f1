//! The memory tables, measured with the counting allocator: heap bytes each map
//! holds for the same content, and its peak while the churn mix runs.

use std::thread;
use std::time::Duration;

use indicatif::ProgressBar;

use crate::alloc;
use crate::cli::Config;
use crate::keys::{KeyTable, KeyType, LabHasher, LabKey};
use crate::maps::{drain_reclaimers, for_each_map, LabMap, Visit};
use crate::matrix::stream_seed;
use crate::ops::{self, Dist};
use crate::report::{Group, MemoryRow, Report};
use crate::runner::{self, CellInput, Untimed};
use crate::workloads::Workload;

/// Maps the memory section measures (every selected map, once per key type; the
/// churn peak only for those that run `churn`).
pub fn planned_runs(cfg: &Config) -> u64 {
    crate::matrix::maps_for(cfg, Workload::ReadOnly) * cfg.key_types.len() as u64
}

struct Measure<'a, 'k, K> {
    cfg: &'a Config,
    content: &'a [K],
    churn: &'a CellInput<'k, K>,
    progress: &'a ProgressBar,
    key_type: KeyType,
    rows: Vec<MemoryRow>,
}

impl<K: LabKey, S: LabHasher> Visit<K, S> for Measure<'_, '_, K> {
    fn visit<M: LabMap<K, S> + 'static>(&mut self) {
        if !self.cfg.selects_map(&M::id()) {
            return;
        }
        self.progress
            .set_message(format!("memory · {} · {}", self.key_type.name(), M::name()));

        // Live bytes: built on a thread that then exits, so that per-thread
        // reclamation state is flushed as it would be in a service.
        drain_reclaimers();
        let base = alloc::live();
        let content = self.content;
        let map: M = thread::scope(|s| {
            s.spawn(|| {
                let map = M::new(S::default());
                map.batch(&map.local(), &[], content, 0);
                map.settle();
                map
            })
            .join()
            .expect("build panicked")
        });
        map.quiesce();
        drain_reclaimers();
        let live = alloc::live() - base;
        drop(map);
        drain_reclaimers();

        // Churn peak: every map gets the same streams and duration.
        let (churn_start, churn_peak) = if M::supports(Workload::Churn) {
            let base = alloc::live();
            let map: M = runner::build(&self.churn.layout, self.churn.keys);
            map.quiesce();
            drain_reclaimers();
            let start = alloc::live() - base;
            alloc::reset_peak();
            runner::run_on::<K, S, M, Untimed>(&map, self.churn, || Untimed);
            let peak = alloc::peak() - base;
            map.quiesce();
            drop(map);
            drain_reclaimers();
            (Some(start), Some(peak))
        } else {
            (None, None)
        };

        self.rows.push(MemoryRow {
            map: M::name(),
            key_type: self.key_type.name(),
            keys: content.len(),
            live_bytes: Some(live),
            churn_keys: self.churn.layout.present,
            churn_start_bytes: churn_start,
            churn_peak_bytes: churn_peak,
        });
        crate::matrix::tick(self.progress);
    }
}

/// Measures every selected map's memory for key type `key_type` (`K` holds it)
/// and hasher `S`. Counting starts here and stops at the end: run it before
/// anything else has made garbage.
pub fn measure<K: LabKey, S: LabHasher>(
    cfg: &Config,
    key_type: KeyType,
    report: &mut Report,
    progress: &ProgressBar,
) {
    let content = KeyTable::<K>::build(cfg.memory_keys, cfg.seed ^ 0x3e3, key_type);
    let group = Group {
        workload: Workload::Churn,
        key_type,
        keys: cfg.keys[0],
        dist: Dist::Uniform,
    };
    let layout = Workload::Churn.layout(group.keys, cfg.memory_threads);
    let table = KeyTable::<K>::build(layout.total(), cfg.seed, key_type);
    let streams = ops::generate(
        Workload::Churn,
        &layout,
        Dist::Uniform,
        ops::stream_len(group.keys),
        stream_seed(cfg, &group),
    );
    let churn = CellInput {
        workload: Workload::Churn,
        layout,
        keys: &table,
        streams: &streams,
        duration: cfg.latency_duration,
        warmup: Duration::ZERO,
    };
    alloc::start();
    let mut measure = Measure {
        cfg,
        content: content.keys(),
        churn: &churn,
        progress,
        key_type,
        rows: Vec::new(),
    };
    for_each_map::<K, S, _>(&mut measure);
    alloc::stop();
    report.memory.extend(measure.rows);
}
