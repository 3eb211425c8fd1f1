//! The five scenarios, each a function generic over the subject (and value
//! type) that returns one CSV row per run and appends its time series.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::alloc;
use crate::cli::Config;
use crate::run::{
    self, drain_global, flush_until_empty, spawn, Load, Mix, Recorder, Sample, Tally, CHURN,
    OVERWRITES, READ_ONLY, WRITES,
};
use crate::subjects::{Subject, Value};

/// One point of a garbage time series (`timeseries.csv`).
#[derive(Clone, Debug, Serialize)]
pub struct TsRow {
    pub scenario: String,
    pub subject: &'static str,
    pub phase: &'static str,
    /// Since the scenario's origin (the stall: the pin; the burst: its start).
    pub t_ms: f64,
    pub pending_objects: u64,
    pub pending_bytes: u64,
    pub heap_over_start_bytes: i64,
    pub ops: u64,
}

/// Keys a subject runs the churn, stall and burst scenarios on.
pub fn keys_for<V: Value, M: Subject<V>>(cfg: &Config) -> usize {
    if M::write_batch(cfg.snapshot_batch) > 1 {
        cfg.snapshot_keys
    } else {
        cfg.keys
    }
}

/// A prefilled map whose prefill garbage is gone, and the heap bytes at that
/// moment (the base of "over start" figures).
fn build<V: Value, M: Subject<V>>(keys: usize, seed: u64) -> (M, isize) {
    drain_global();
    let map = M::new();
    map.prefill(keys, seed, &V::make(0));
    // The prefill's own garbage (grown deltas, the promoted root) is not the
    // scenario's: free what can be freed before the clock starts.
    flush_until_empty(&map, 1_000);
    drain_global();
    (map, alloc::live())
}

fn ts(scenario: &str, subject: &'static str, samples: &[Sample], origin: Duration) -> Vec<TsRow> {
    samples
        .iter()
        .map(|s| TsRow {
            scenario: scenario.to_string(),
            subject,
            phase: s.phase,
            t_ms: (s.t.as_secs_f64() - origin.as_secs_f64()) * 1e3,
            pending_objects: s.garbage.objects,
            pending_bytes: s.garbage.bytes,
            heap_over_start_bytes: s.heap,
            ops: s.ops,
        })
        .collect()
}

fn mean(v: impl Iterator<Item = u64>) -> f64 {
    let (n, sum) = v.fold((0u64, 0f64), |(n, s), x| (n + 1, s + x as f64));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// A row of `churn.csv` and `large_values.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnRow {
    pub scenario: String,
    pub subject: &'static str,
    pub scheme: &'static str,
    pub value: &'static str,
    pub keys: usize,
    pub threads: usize,
    /// Writes per map write: 1 = every write by itself (SyncMap), more =
    /// gathered into batches (SnapshotMap).
    pub write_batch: usize,
    pub mix: String,
    pub seconds: f64,
    pub ops: u64,
    pub mops: f64,
    pub samples: usize,
    pub mean_pending_objects: f64,
    pub peak_pending_objects: u64,
    pub mean_pending_bytes: f64,
    pub peak_pending_bytes: u64,
    /// Highest process heap above the heap after the prefill (the counting
    /// allocator's exact peak, not a sample).
    pub peak_heap_over_start_bytes: i64,
    pub end_pending_objects: u64,
    pub end_pending_bytes: u64,
    pub retired: u64,
    pub freed: u64,
    /// The 1-minute load average when the run started (others' noise).
    pub load_average: f64,
}

/// Scenarios 1 and 4: the churn mix on `cfg.threads` workers for `duration`,
/// sampled every `cfg.sample`.
pub fn churn<V: Value, M: Subject<V>>(
    cfg: &Config,
    scenario: &str,
    keys: usize,
    duration: Duration,
    series: &mut Vec<TsRow>,
) -> ChurnRow {
    let (map, heap_base) = build::<V, M>(keys, cfg.seed);
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let write_batch = M::write_batch(cfg.snapshot_batch);
    let load = Load::new(&map, CHURN, keys, cfg.seed, write_batch, &stop, &ops);
    let load_1m = crate::machine::load_average_1m();
    let rec = Recorder::new(heap_base, "churn");
    alloc::reset_peak();
    let (tallies, elapsed) = thread::scope(|s| {
        let sampler = spawn(s, "sampler", || rec.run(cfg.sample, || map.garbage(), &ops));
        let out = run::run_workers::<V, M>(&load, cfg.threads, || thread::sleep(duration));
        rec.stop();
        sampler.join().expect("sampler panicked");
        out
    });
    let peak_heap = alloc::peak() - heap_base;
    let end = map.garbage();
    let samples = rec.samples();
    series.extend(ts(scenario, M::ID, &samples, Duration::ZERO));
    drop(map);
    drain_global();
    let total = Tally::sum(&tallies);
    let g = || samples.iter().map(|s| s.garbage);
    ChurnRow {
        scenario: scenario.to_string(),
        subject: M::ID,
        scheme: M::SCHEME,
        value: V::NAME,
        keys,
        threads: cfg.threads,
        write_batch,
        mix: CHURN.describe(),
        seconds: elapsed.as_secs_f64(),
        ops: total.ops,
        mops: total.ops as f64 / elapsed.as_secs_f64() / 1e6,
        samples: samples.len(),
        mean_pending_objects: mean(g().map(|g| g.objects)),
        peak_pending_objects: g().map(|g| g.objects).max().unwrap_or(0),
        mean_pending_bytes: mean(g().map(|g| g.bytes)),
        peak_pending_bytes: g().map(|g| g.bytes).max().unwrap_or(0),
        peak_heap_over_start_bytes: peak_heap as i64,
        end_pending_objects: end.objects,
        end_pending_bytes: end.bytes,
        retired: end.retired,
        freed: end.freed,
        load_average: load_1m,
    }
}

/// A row of `stall.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct StallRow {
    pub subject: &'static str,
    pub scheme: &'static str,
    pub stall_ms: u64,
    pub keys: usize,
    pub writers: usize,
    pub write_batch: usize,
    pub writer_ops: u64,
    /// The highest pending figures sampled in the last two thirds of the
    /// pre-stall window: the level the drain must get back to.
    pub baseline_objects: u64,
    pub baseline_bytes: u64,
    /// Highest pending figures from the pin until the end of the run.
    pub peak_objects: u64,
    pub peak_bytes: u64,
    /// Highest heap above the post-prefill heap from the pin to the end (the
    /// counting allocator's exact peak).
    pub peak_heap_over_start_bytes: i64,
    /// How long dropping the held guard (or snapshot) took on the stalled
    /// thread: what the reader itself pays for the release.
    pub release_ms: f64,
    /// From the release (the start of the guard's drop) to the first sample at
    /// or below the baseline (both objects and bytes); empty if it did not get
    /// there before the timeout.
    pub drain_ms: Option<f64>,
    pub timeout_ms: u64,
    pub end_objects: u64,
    pub end_bytes: u64,
}

/// Scenario 2: `cfg.stall_writers` writers run writes only; after a warm-up
/// the main thread pins a guard (SnapshotMap: takes a snapshot), holds it for
/// `stall` and drops it; the writers go on until pending garbage is back at
/// its pre-stall level or a timeout.
pub fn stall<V: Value, M: Subject<V>>(
    cfg: &Config,
    stall: Duration,
    series: &mut Vec<TsRow>,
) -> StallRow {
    let keys = keys_for::<V, M>(cfg);
    let (map, heap_base) = build::<V, M>(keys, cfg.seed);
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let write_batch = M::write_batch(cfg.snapshot_batch);
    let load = Load::new(&map, WRITES, keys, cfg.seed, write_batch, &stop, &ops);
    let pre = if cfg.quick {
        Duration::from_millis(60)
    } else {
        Duration::from_millis(300)
    };
    let timeout = (stall * 2).max(if cfg.quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    });
    let rec = Recorder::new(heap_base, "before");
    let mut marks = (Duration::ZERO, Duration::ZERO);
    let mut baseline = (0, 0);
    let mut drained_at = None;
    let mut release = Duration::ZERO;
    let (tallies, _) = thread::scope(|s| {
        let sampler = spawn(s, "sampler", || rec.run(cfg.sample, || map.garbage(), &ops));
        let out = run::run_workers::<V, M>(&load, cfg.stall_writers, || {
            thread::sleep(pre);
            let warm = rec.now() - pre * 2 / 3;
            for smp in rec.samples().iter().filter(|smp| smp.t >= warm) {
                baseline.0 = baseline.0.max(smp.garbage.objects);
                baseline.1 = baseline.1.max(smp.garbage.bytes);
            }
            // The stall, on this thread: a guard (or snapshot) that nobody uses.
            rec.set_phase("stall");
            let held = map.hold();
            alloc::reset_peak();
            marks.0 = rec.now();
            thread::sleep(stall);
            // The release starts here; dropping the guard can itself take long
            // (seize frees, on the releasing thread, every batch whose last
            // holder it was), and that time is part of the drain.
            marks.1 = rec.now();
            rec.set_phase("after");
            let dropping = Instant::now();
            drop(held);
            release = dropping.elapsed();
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                thread::sleep(cfg.sample);
                let drained = rec.samples().into_iter().find(|smp| {
                    smp.t >= marks.1
                        && smp.garbage.objects <= baseline.0
                        && smp.garbage.bytes <= baseline.1
                });
                if let Some(smp) = drained {
                    drained_at = Some(smp.t);
                    break;
                }
            }
        });
        rec.stop();
        sampler.join().expect("sampler panicked");
        out
    });
    let peak_heap = alloc::peak() - heap_base;
    let end = map.garbage();
    let samples = rec.samples();
    let label = format!("stall-{}ms", stall.as_millis());
    series.extend(ts(&label, M::ID, &samples, marks.0));
    drop(map);
    drain_global();
    let during = || samples.iter().filter(|s| s.t >= marks.0);
    StallRow {
        subject: M::ID,
        scheme: M::SCHEME,
        stall_ms: stall.as_millis() as u64,
        keys,
        writers: cfg.stall_writers,
        write_batch,
        writer_ops: Tally::sum(&tallies).ops,
        baseline_objects: baseline.0,
        baseline_bytes: baseline.1,
        peak_objects: during().map(|s| s.garbage.objects).max().unwrap_or(0),
        peak_bytes: during().map(|s| s.garbage.bytes).max().unwrap_or(0),
        peak_heap_over_start_bytes: peak_heap as i64,
        release_ms: release.as_secs_f64() * 1e3,
        drain_ms: drained_at.map(|t| (t - marks.1).as_secs_f64() * 1e3),
        timeout_ms: timeout.as_millis() as u64,
        end_objects: end.objects,
        end_bytes: end.bytes,
    }
}

/// A row of `burst.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct BurstRow {
    pub subject: &'static str,
    pub scheme: &'static str,
    pub keys: usize,
    pub threads: usize,
    pub write_batch: usize,
    pub burst_ops: u64,
    pub burst_seconds: f64,
    /// Pending right after the writers exited.
    pub after_burst_objects: u64,
    pub after_burst_bytes: u64,
    /// Phase A: nothing runs (the sampler only reads stats).
    pub after_idle_objects: u64,
    pub after_idle_bytes: u64,
    /// From the start of phase A to the first sample with nothing pending.
    pub idle_ms_to_zero: Option<f64>,
    /// Phase B: one thread does gets (fresh guard each).
    pub after_gets_objects: u64,
    pub after_gets_bytes: u64,
    pub gets_run: u64,
    /// Gets done when pending was first sampled at 0 in phase B (0: it was
    /// already; workers count in chunks of 1,024, so this is to within one). Gets may retire again afterwards: a read that spends the read
    /// budget promotes, retiring the old table.
    pub gets_to_zero: Option<u64>,
    /// From the start of phase B to that sample.
    pub gets_ms_to_zero: Option<f64>,
    /// Phase C: `flush()` from the main thread, up to `flushes` times.
    pub after_flush_objects: u64,
    pub after_flush_bytes: u64,
    pub flushes: u32,
    /// Flushes until nothing was pending (0: nothing was at the start of C).
    pub flushes_to_zero: Option<u32>,
    /// Heap above the post-prefill heap at the end of phase C.
    pub heap_over_start_after_flush: i64,
    /// Heap after dropping the map, above the heap before it was built.
    pub heap_after_drop_bytes: i64,
    /// The first of: at once, idle, gets, flush, drop (map dropped).
    pub drains_with: &'static str,
}

/// Scenario 3: `cfg.threads` writers overwrite (the burst) and exit; then
/// phase A (idle), B (gets only) and C (flushes), pending recorded after each.
pub fn burst<V: Value, M: Subject<V>>(cfg: &Config, series: &mut Vec<TsRow>) -> BurstRow {
    let keys = keys_for::<V, M>(cfg);
    let write_batch = M::write_batch(cfg.snapshot_batch);
    let burst_ops = if write_batch > 1 {
        cfg.snapshot_burst
    } else {
        cfg.burst
    } as u64;
    drain_global();
    let before_build = alloc::live();
    let (map, heap_base) = build::<V, M>(keys, cfg.seed);
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let threads = cfg.threads as u64;
    let rec = Recorder::new(heap_base, "burst");
    let mut out = BurstRow {
        subject: M::ID,
        scheme: M::SCHEME,
        keys,
        threads: cfg.threads,
        write_batch,
        burst_ops,
        burst_seconds: 0.0,
        after_burst_objects: 0,
        after_burst_bytes: 0,
        after_idle_objects: 0,
        after_idle_bytes: 0,
        after_gets_objects: 0,
        after_gets_bytes: 0,
        gets_run: 0,
        gets_to_zero: None,
        gets_ms_to_zero: None,
        idle_ms_to_zero: None,
        after_flush_objects: 0,
        after_flush_bytes: 0,
        flushes: 0,
        flushes_to_zero: None,
        heap_over_start_after_flush: 0,
        heap_after_drop_bytes: 0,
        drains_with: "drop",
    };
    let mut idle_start = Duration::ZERO;
    thread::scope(|s| {
        let sampler = spawn(s, "sampler", || rec.run(cfg.sample, || map.garbage(), &ops));
        // The burst: each writer does its share and exits (thread exit is
        // part of the story: crossbeam hands an exiting thread's bag to the
        // global queue; seize leaves its partial batch in the map's collector,
        // out of reach of everything but the map's flush and drop).
        let started = Instant::now();
        let writers: Vec<_> = (0..threads)
            .map(|t| {
                let load = Load {
                    limit: Some(burst_ops / threads + u64::from(t < burst_ops % threads)),
                    ..Load::new(&map, OVERWRITES, keys, cfg.seed, write_batch, &stop, &ops)
                };
                spawn(s, "burst", move || run::work::<V, M>(&load, t as usize))
            })
            .collect();
        for w in writers {
            w.join().expect("writer panicked");
        }
        out.burst_seconds = started.elapsed().as_secs_f64();
        let g = map.garbage();
        (out.after_burst_objects, out.after_burst_bytes) = (g.objects, g.bytes);

        // Phase A: nothing runs.
        rec.set_phase("idle");
        idle_start = rec.now();
        thread::sleep(cfg.phase);
        let g = map.garbage();
        (out.after_idle_objects, out.after_idle_bytes) = (g.objects, g.bytes);

        // Phase B: gets only, on a thread of their own.
        rec.set_phase("gets");
        let gets_from = ops.load(std::sync::atomic::Ordering::Relaxed);
        let gets_start = rec.now();
        let reader = Load::new(&map, READ_ONLY, keys, cfg.seed, write_batch, &stop, &ops);
        let (tallies, _) = run::run_workers::<V, M>(&reader, 1, || thread::sleep(cfg.phase));
        out.gets_run = Tally::sum(&tallies).ops;
        // Sampled: the gets done by the first sample of phase B that saw
        // nothing pending (0 if phase A had already drained it).
        let first_zero = rec
            .samples()
            .into_iter()
            .find(|smp| smp.t >= gets_start && smp.garbage.objects == 0);
        (out.gets_to_zero, out.gets_ms_to_zero) = if out.after_idle_objects == 0 {
            (Some(0), Some(0.0))
        } else {
            (
                first_zero.map(|smp| smp.ops - gets_from),
                first_zero.map(|smp| (smp.t - gets_start).as_secs_f64() * 1e3),
            )
        };
        let g = map.garbage();
        (out.after_gets_objects, out.after_gets_bytes) = (g.objects, g.bytes);

        // Phase C: flushes from this (the main) thread.
        rec.set_phase("flush");
        out.flushes = 100;
        out.flushes_to_zero = (map.garbage().objects == 0).then_some(0);
        for i in (1..=out.flushes).take_while(|_| out.flushes_to_zero.is_none()) {
            map.flush();
            if map.garbage().objects == 0 {
                out.flushes_to_zero = Some(i);
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let g = map.garbage();
        (out.after_flush_objects, out.after_flush_bytes) = (g.objects, g.bytes);
        thread::sleep(cfg.sample * 2);
        rec.stop();
        sampler.join().expect("sampler panicked");
    });
    out.heap_over_start_after_flush = (alloc::live() - heap_base) as i64;
    let samples = rec.samples();
    series.extend(ts("burst", M::ID, &samples, idle_start));
    out.idle_ms_to_zero = samples
        .iter()
        .find(|smp| smp.phase == "idle" && smp.t >= idle_start && smp.garbage.objects == 0)
        .map(|smp| (smp.t - idle_start).as_secs_f64() * 1e3);
    out.drains_with = if out.after_burst_objects == 0 {
        "at once"
    } else if out.idle_ms_to_zero.is_some() {
        "idle"
    } else if out.gets_to_zero.is_some() {
        "gets"
    } else if out.flushes_to_zero.is_some() {
        "flush"
    } else {
        "drop only"
    };
    drop(map);
    drain_global();
    out.heap_after_drop_bytes = (alloc::live() - before_build) as i64;
    out
}

/// A row of `throughput.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct TpRow {
    pub mix: &'static str,
    pub mix_ops: String,
    /// `fresh`: one guard per operation (`get`: a pin, or SnapshotMap's
    /// `get`); `held`: one guard (snapshot) per thread, refreshed every 1,024
    /// operations.
    pub guard: &'static str,
    pub subject: &'static str,
    pub scheme: &'static str,
    pub keys: usize,
    pub threads: usize,
    pub write_batch: usize,
    pub runs: usize,
    pub mops_median: f64,
    pub mops_min: f64,
    pub mops_max: f64,
    pub gets: u64,
    pub hits: u64,
}

/// One subject's map for the throughput scenario, kept between interleaved runs.
pub trait TpCell {
    /// The subject's id.
    fn id(&self) -> &'static str;
    /// What frees its garbage.
    fn scheme(&self) -> &'static str;
    /// See [`Subject::write_batch`].
    fn write_batch(&self, snapshot_batch: usize) -> usize;
    /// One run: `warmup` untimed, then `duration` timed.
    fn run(&self, cfg: &Config, mix: Mix, held: bool) -> (Tally, Duration);
}

/// A [`TpCell`] of subject `M`.
pub struct Built<V, M> {
    map: M,
    _value: std::marker::PhantomData<V>,
}

impl<V: Value, M: Subject<V>> Built<V, M> {
    /// `M` prefilled with `cfg.tp_keys` keys.
    pub fn new(cfg: &Config) -> Self {
        Built {
            map: build::<V, M>(cfg.tp_keys, cfg.seed).0,
            _value: std::marker::PhantomData,
        }
    }
}

impl<V: Value, M: Subject<V>> TpCell for Built<V, M> {
    fn id(&self) -> &'static str {
        M::ID
    }
    fn scheme(&self) -> &'static str {
        M::SCHEME
    }
    fn write_batch(&self, snapshot_batch: usize) -> usize {
        M::write_batch(snapshot_batch)
    }
    fn run(&self, cfg: &Config, mix: Mix, held: bool) -> (Tally, Duration) {
        let write_batch = M::write_batch(cfg.snapshot_batch);
        let go = |duration: Duration| {
            let stop = AtomicBool::new(false);
            let ops = AtomicU64::new(0);
            let load = Load {
                held,
                ..Load::new(
                    &self.map,
                    mix,
                    cfg.tp_keys,
                    cfg.seed,
                    write_batch,
                    &stop,
                    &ops,
                )
            };
            let (tallies, elapsed) =
                run::run_workers::<V, M>(&load, cfg.tp_threads, || thread::sleep(duration));
            (Tally::sum(&tallies), elapsed)
        };
        // Untimed: caches, the first promotion, a collector's thread state.
        go(cfg.tp_duration / 5);
        let out = go(cfg.tp_duration);
        // The run's garbage is not the next run's (of another subject) to free.
        flush_until_empty(&self.map, 100);
        drain_global();
        out
    }
}
