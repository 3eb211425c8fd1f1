//! Criterion benchmarks of [`SyncMap`] against an unsynchronized
//! `hashbrown::HashMap` and a `std::sync::RwLock<std::collections::HashMap>`, all
//! three with std's `RandomState` (SipHash-1-3), `u64` keys and values.
//!
//! One group per operation; in each, side by side:
//!
//! * `syncmap-held`: through one [`Pinned`](readmostly::Pinned) guard held across
//!   many operations (the read-path bar is against hashbrown with this);
//! * `syncmap-fresh`: the guard-free methods (`get_cloned`, `insert`, `remove`),
//!   which pin crossbeam-epoch on every call;
//! * `hashbrown`: `hashbrown::HashMap<u64, u64, RandomState>`, no synchronization;
//! * `rwlock`: `RwLock<std::collections::HashMap<u64, u64, RandomState>>`, a read or
//!   write lock per operation.
//!
//! Keys are random (a fixed-seed xorshift), the maps hold 100k of them (1k in
//! `get_hit_1k`, 1M in `get_hit_1m`, 10k and 1M in `promotion_*`), and lookups walk a pre-generated
//! random sequence of 2^20 keys, so the working set is bigger than L2 and the
//! branch predictor cannot learn the probe. Results, commands and
//! how to read them: `docs/performance.md`.
//!
//! The clock is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) by
//! default, so that time spent descheduled while other processes run on this
//! shared machine is not counted; `READMOSTLY_BENCH_CLOCK=wall` selects criterion's
//! usual wall clock. Every benchmark is single-threaded, so on an idle machine the
//! two agree.

use std::collections::hash_map::RandomState;
use std::hint::black_box;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use readmostly::SyncMap;

type SMap = SyncMap<u64, u64, RandomState>;
type Brown = hashbrown::HashMap<u64, u64, RandomState>;
type StdMap = std::collections::HashMap<u64, u64, RandomState>;
type Locked = RwLock<StdMap>;

/// Keys in the maps of every group except the promotion ones.
const KEYS: usize = 100_000;
/// Keys in the cache-resident variant of `get_hit`.
const SMALL_KEYS: usize = 1_000;
/// Keys in the variant of `get_hit` that outgrows every cache level but L3.
const LARGE_KEYS: usize = 1_000_000;
/// Length of a pre-generated lookup sequence (a power of two: indexed with a mask).
const SEQ: usize = 1 << 20;
const SEQ_MASK: usize = SEQ - 1;
/// Operations per timed batch in `insert_new` and `remove` (10% of `KEYS`: the maps
/// never resize during a batch, hashbrown's and SyncMap's tables alike).
const BATCH: usize = 10_000;
/// Single-key operations per criterion iteration (`get_*`, `insert_existing`); for
/// held-guard writes also the operations per guard, after which it is dropped and
/// the retired values are reclaimed (inside the timed region; see `reclaim`).
const CHUNK: usize = 1024;

/// The benchmarks' clock: this thread's CPU time, or the wall clock.
#[derive(Clone, Copy)]
struct Clock {
    thread_cpu: bool,
}

impl Clock {
    /// From `READMOSTLY_BENCH_CLOCK` (`thread`, the default, or `wall`), read once.
    fn get() -> Clock {
        static CLOCK: OnceLock<Clock> = OnceLock::new();
        *CLOCK.get_or_init(|| {
            let wall = std::env::var("READMOSTLY_BENCH_CLOCK").is_ok_and(|v| v == "wall");
            Clock {
                thread_cpu: !wall && thread_cpu_time().is_some(),
            }
        })
    }

    /// The time since an arbitrary fixed point.
    fn now(self) -> Duration {
        static START: OnceLock<Instant> = OnceLock::new();
        match self.thread_cpu.then(thread_cpu_time).flatten() {
            Some(t) => t,
            None => START.get_or_init(Instant::now).elapsed(),
        }
    }
}

/// CPU time consumed by the calling thread (user + system), if the platform has it.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_time() -> Option<Duration> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `struct timespec` (two 64-bit fields on
    // 64-bit Linux) through a valid pointer and reads nothing else.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

impl Measurement for Clock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }

    fn end(&self, start: Duration) -> Duration {
        self.now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds either way: criterion's duration formatting.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

/// xorshift64*: deterministic, fast, good enough to scatter keys.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `present + absent` distinct random keys, split in two.
fn distinct_keys(present: usize, absent: usize, seed: u64) -> (Vec<u64>, Vec<u64>) {
    let mut rng = XorShift(seed);
    let mut seen = std::collections::HashSet::with_capacity(present + absent);
    let mut keys = Vec::with_capacity(present + absent);
    while keys.len() < present + absent {
        let k = rng.next();
        if seen.insert(k) {
            keys.push(k);
        }
    }
    let absent = keys.split_off(present);
    (keys, absent)
}

/// `SEQ` keys drawn uniformly (with repetition) from `from`.
fn sequence(from: &[u64], seed: u64) -> Vec<u64> {
    let mut rng = XorShift(seed);
    (0..SEQ).map(|_| from[rng.below(from.len())]).collect()
}

/// The first `n` keys of a random permutation of `from`.
fn shuffled_prefix(from: &[u64], n: usize, seed: u64) -> Vec<u64> {
    let mut rng = XorShift(seed);
    let mut v = from.to_vec();
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v.truncate(n);
    v
}

/// Frees what this map has retired (old values, old roots and tables): crossbeam-epoch
/// frees garbage only every 128th pin of a thread, so a thread that pins once per
/// thousand writes would otherwise never catch up.
fn reclaim(map: &SMap) {
    for _ in 0..10_000 {
        if map.stats().pending == 0 {
            return;
        }
        map.flush();
    }
}

/// A `SyncMap` holding `keys` (value = key), all in the read table: promoted, an
/// empty delta, nothing left to reclaim.
fn build_sync(keys: &[u64]) -> SMap {
    let map = SMap::with_capacity_and_hasher(keys.len(), RandomState::new());
    {
        let pinned = map.pin();
        for &k in keys {
            pinned.insert(k, k);
        }
    }
    map.promote();
    reclaim(&map);
    map
}

fn build_brown(keys: &[u64]) -> Brown {
    let mut map = Brown::with_hasher(RandomState::new());
    map.extend(keys.iter().map(|&k| (k, k)));
    map
}

fn build_std(keys: &[u64]) -> StdMap {
    let mut map = StdMap::with_hasher(RandomState::new());
    map.extend(keys.iter().map(|&k| (k, k)));
    map
}

/// The next `CHUNK` keys of `lookups`, advancing the cursor `at` (wrapping).
fn next_chunk<'a>(lookups: &'a [u64], at: &mut usize) -> &'a [u64] {
    let chunk = &lookups[*at..*at + CHUNK];
    *at = (*at + CHUNK) & SEQ_MASK;
    chunk
}

/// Groups of single-key operations: each iteration runs `CHUNK` of them in a tight
/// loop (so criterion's per-iteration overhead does not dilute the comparison),
/// throughput is per operation; many samples, short warm-up.
fn per_op_group<'c>(c: &'c mut Criterion<Clock>, name: &str) -> BenchmarkGroup<'c, Clock> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(CHUNK as u64));
    g.sample_size(50);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g
}

/// Groups whose every iteration needs a freshly built map (`iter_batched`, setup
/// untimed): flat sampling and a small time target, because criterion plans the
/// iteration count from the routine's time alone and the setup costs 10–100x more.
fn batched_group<'c>(
    c: &'c mut Criterion<Clock>,
    name: &str,
    ops_per_iter: usize,
    target: Duration,
) -> BenchmarkGroup<'c, Clock> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(ops_per_iter as u64));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(1));
    g.measurement_time(target);
    g
}

/// `get` of keys walked in `lookups` (all present for `get_hit*`, all absent for
/// `get_miss`); every variant reads the value out (`.copied()`), as a caller would,
/// and each result goes through `black_box`.
fn bench_get(c: &mut Criterion<Clock>, name: &str, keys: &[u64], lookups: &[u64]) {
    let sync = build_sync(keys);
    let brown = build_brown(keys);
    let locked = Locked::new(build_std(keys));
    let mut g = per_op_group(c, name);

    g.bench_function("syncmap-held", |b| {
        let pinned = sync.pin();
        let mut at = 0;
        b.iter(|| {
            let mut sum = 0u64;
            for k in next_chunk(lookups, &mut at) {
                sum = sum.wrapping_add(black_box(pinned.get(k).copied()).unwrap_or(0));
            }
            sum
        });
    });
    g.bench_function("syncmap-fresh", |b| {
        let mut at = 0;
        b.iter(|| {
            let mut sum = 0u64;
            for k in next_chunk(lookups, &mut at) {
                sum = sum.wrapping_add(black_box(sync.get_cloned(k)).unwrap_or(0));
            }
            sum
        });
    });
    g.bench_function("hashbrown", |b| {
        let mut at = 0;
        b.iter(|| {
            let mut sum = 0u64;
            for k in next_chunk(lookups, &mut at) {
                sum = sum.wrapping_add(black_box(brown.get(k).copied()).unwrap_or(0));
            }
            sum
        });
    });
    g.bench_function("rwlock", |b| {
        let mut at = 0;
        b.iter(|| {
            let mut sum = 0u64;
            for k in next_chunk(lookups, &mut at) {
                let found = locked.read().unwrap().get(k).copied();
                sum = sum.wrapping_add(black_box(found).unwrap_or(0));
            }
            sum
        });
    });
    g.finish();
}

/// Overwriting the value of a present key (SyncMap: one CAS on the entry, the old
/// value retired).
fn bench_insert_existing(c: &mut Criterion<Clock>, keys: &[u64], lookups: &[u64]) {
    let sync = build_sync(keys);
    let mut brown = build_brown(keys);
    let locked = Locked::new(build_std(keys));
    let mut g = per_op_group(c, "insert_existing");

    // One guard per chunk; the chunk ends by dropping it and freeing the retired
    // values, all timed, so the variant pays for reclamation as `syncmap-fresh`
    // does (crossbeam collects inline every 128 pins there).
    g.bench_function("syncmap-held", |b| {
        let mut at = 0;
        b.iter(|| {
            {
                let pinned = sync.pin();
                for &k in next_chunk(lookups, &mut at) {
                    black_box(pinned.insert(k, k ^ 1).copied());
                }
            }
            reclaim(&sync);
        });
    });
    g.bench_function("syncmap-fresh", |b| {
        let mut at = 0;
        b.iter(|| {
            for &k in next_chunk(lookups, &mut at) {
                black_box(sync.insert(k, k ^ 1));
            }
        });
    });
    g.bench_function("hashbrown", |b| {
        let mut at = 0;
        b.iter(|| {
            for &k in next_chunk(lookups, &mut at) {
                black_box(brown.insert(k, k ^ 1));
            }
        });
    });
    g.bench_function("rwlock", |b| {
        let mut at = 0;
        b.iter(|| {
            for &k in next_chunk(lookups, &mut at) {
                black_box(locked.write().unwrap().insert(k, k ^ 1));
            }
        });
    });
    g.finish();
}

/// Inserting `BATCH` new keys into a map of `KEYS` just promoted (no resize of any
/// read table). SyncMap puts new keys into its delta under the writer lock; the
/// delta grows by doubling (copy and publish, included) and 10k keys stay below the
/// promotion threshold (half of the read table), so no promotion is timed here.
fn bench_insert_new(c: &mut Criterion<Clock>, keys: &[u64], new_keys: &[u64]) {
    let brown = build_brown(keys);
    let std_map = build_std(keys);
    let mut g = batched_group(c, "insert_new", new_keys.len(), Duration::from_millis(100));

    g.bench_function("syncmap-held", |b| {
        b.iter_batched(
            || build_sync(keys),
            |map| {
                {
                    let pinned = map.pin();
                    for &k in new_keys {
                        black_box(pinned.insert(k, k));
                    }
                }
                map
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("syncmap-fresh", |b| {
        b.iter_batched(
            || build_sync(keys),
            |map| {
                for &k in new_keys {
                    black_box(map.insert(k, k));
                }
                map
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("hashbrown", |b| {
        b.iter_batched(
            || brown.clone(),
            |mut map| {
                for &k in new_keys {
                    black_box(map.insert(k, k));
                }
                map
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("rwlock", |b| {
        b.iter_batched(
            || Locked::new(std_map.clone()),
            |map| {
                for &k in new_keys {
                    black_box(map.write().unwrap().insert(k, k));
                }
                map
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

/// Removing `BATCH` present keys from a map of `KEYS` (SyncMap: a CAS to *deleted*
/// on the entry, the value retired, a tombstone counted; 10% tombstones stay below
/// the compaction threshold of 50%, so no compaction is timed here).
fn bench_remove(c: &mut Criterion<Clock>, keys: &[u64], victims: &[u64]) {
    let brown = build_brown(keys);
    let std_map = build_std(keys);
    let mut g = batched_group(c, "remove", victims.len(), Duration::from_millis(100));

    // As in `insert_existing`: the retired values are freed inside the timed
    // region, at the end of the batch.
    g.bench_function("syncmap-held", |b| {
        b.iter_batched(
            || build_sync(keys),
            |map| {
                {
                    let pinned = map.pin();
                    for k in victims {
                        black_box(pinned.remove(k).copied());
                    }
                }
                reclaim(&map);
                map
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("syncmap-fresh", |b| {
        b.iter_batched(
            || build_sync(keys),
            |map| {
                for k in victims {
                    black_box(map.remove(k));
                }
                map
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("hashbrown", |b| {
        b.iter_batched(
            || brown.clone(),
            |mut map| {
                for k in victims {
                    black_box(map.remove(k));
                }
                map
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("rwlock", |b| {
        b.iter_batched(
            || Locked::new(std_map.clone()),
            |map| {
                for k in victims {
                    black_box(map.write().unwrap().remove(k));
                }
                map
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

/// `promote()` on a map of `n` keys in the read table with `n / 100` new keys
/// pending in the delta. Per iteration = one promotion; throughput is reported per
/// key of the map.
///
/// * `syncmap-promote`: `promote()` — a fresh read table built from every live
///   entry of the read table and the delta (one `Arc` clone and one insert per
///   entry, tombstones expunged and left out), a new root published, the old one
///   retired (and freed later, untimed).
/// * `hashbrown-clone`: `HashMap::clone()` of a map of the same size — the cost of
///   copying a table once, as a copy-on-write map pays per publish. `RwLock` has no
///   analogue (new keys are visible at insert) and is left out.
fn bench_promotion(c: &mut Criterion<Clock>, name: &str, n: usize, target: Duration) {
    let (keys, pending) = distinct_keys(n, n / 100, 0x9e37_79b9 ^ n as u64);
    let setup = || {
        let map = build_sync(&keys);
        {
            let pinned = map.pin();
            for &k in &pending {
                pinned.insert(k, k);
            }
        }
        map
    };
    let brown = build_brown(&keys);
    let mut g = batched_group(c, name, n, target);

    g.bench_function("syncmap-promote", |b| {
        b.iter_batched(
            setup,
            |map| {
                map.promote();
                map
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("hashbrown-clone", |b| {
        b.iter_with_large_drop(|| brown.clone());
    });
    g.finish();
}

fn benches(c: &mut Criterion<Clock>) {
    let (keys, absent) = distinct_keys(KEYS, KEYS, 0x5eed_0001);
    let hits = sequence(&keys, 0x5eed_0002);
    let misses = sequence(&absent, 0x5eed_0003);

    bench_get(c, "get_hit", &keys, &hits);
    let small = &keys[..SMALL_KEYS];
    bench_get(c, "get_hit_1k", small, &sequence(small, 0x5eed_0004));
    let (large, _) = distinct_keys(LARGE_KEYS, 0, 0x5eed_0006);
    bench_get(c, "get_hit_1m", &large, &sequence(&large, 0x5eed_0007));
    bench_get(c, "get_miss", &keys, &misses);
    bench_insert_existing(c, &keys, &hits);
    bench_insert_new(c, &keys, &absent[..BATCH]);
    bench_remove(c, &keys, &shuffled_prefix(&keys, BATCH, 0x5eed_0005));
    bench_promotion(c, "promotion_10k", 10_000, Duration::from_millis(50));
    bench_promotion(c, "promotion_1m", 1_000_000, Duration::from_millis(500));
}

criterion_group! {
    name = sync_map;
    config = Criterion::default().with_measurement(Clock::get());
    targets = benches
}
criterion_main!(sync_map);
