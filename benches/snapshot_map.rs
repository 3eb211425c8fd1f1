//! Criterion benchmarks of [`SnapshotMap`]: reads against [`SyncMap`] and an
//! unsynchronized `hashbrown::HashMap`, and the cost of copy-on-write against
//! table size — one write per publish versus a batch of 1,000 — with SyncMap's
//! per-key writes beside it, from which `docs/snapshot_map.md` derives the
//! crossover. All maps use std's `RandomState` (SipHash-1-3), `u64` keys and
//! values.
//!
//! Groups:
//!
//! * `snapshot_get/{1k,100k}`: a hit, walking a pre-generated random sequence of
//!   2^20 keys. `snapshotmap-get` loads the current version on every call (an
//!   arc-swap debt, no shared count); `snapshotmap-held` looks up through one
//!   `Snapshot` held across the loop; `syncmap-held` through one `Pinned`;
//!   `syncmap-fresh` pins on every call (`get_cloned`); `hashbrown` is the bar.
//! * `snapshot_write/{1k,100k,1m}`: overwriting existing keys (the table keeps
//!   its size). `snapshotmap-single`: one `insert`, one copy and publish each;
//!   `snapshotmap-batch1000`: a batch of 1,000 inserts, one copy and publish,
//!   reported per key; `syncmap-single`: `SyncMap::insert` (one CAS, the old
//!   value retired); `hashbrown`: `&mut` insert, no synchronization.
//!
//! The `1m` size runs only under `cargo bench` (not in `cargo test --benches`,
//! which builds without optimizations).

use std::collections::hash_map::RandomState;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use readmostly::{SnapshotMap, SyncMap};

type Snap = SnapshotMap<u64, u64, RandomState>;
type SMap = SyncMap<u64, u64, RandomState>;
type Brown = hashbrown::HashMap<u64, u64, RandomState>;

/// Length of a pre-generated lookup sequence (a power of two: indexed with a mask).
const SEQ: usize = 1 << 20;
const SEQ_MASK: usize = SEQ - 1;
/// Keys per batch in `snapshotmap-batch1000`.
const BATCH: usize = 1_000;

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

/// `n` distinct random keys.
fn distinct_keys(n: usize, seed: u64) -> Vec<u64> {
    let mut rng = XorShift(seed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        let k = rng.next();
        if seen.insert(k) {
            keys.push(k);
        }
    }
    keys
}

/// `SEQ` keys drawn uniformly (with repetition) from `from`.
fn sequence(from: &[u64], seed: u64) -> Vec<u64> {
    let mut rng = XorShift(seed);
    (0..SEQ).map(|_| from[rng.below(from.len())]).collect()
}

fn build_snap(keys: &[u64]) -> Snap {
    keys.iter().map(|&k| (k, k)).collect()
}

/// A `SyncMap` holding `keys`, all in the read table (promoted).
fn build_sync(keys: &[u64]) -> SMap {
    let map = SMap::with_capacity_and_hasher(keys.len(), RandomState::new());
    {
        let pinned = map.pin();
        for &k in keys {
            pinned.insert(k, k);
        }
    }
    map.promote();
    map
}

fn build_brown(keys: &[u64]) -> Brown {
    let mut map = Brown::with_hasher(RandomState::new());
    map.extend(keys.iter().map(|&k| (k, k)));
    map
}

fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    elements: u64,
    measure: Duration,
) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(elements));
    g.sample_size(30);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(measure);
    g
}

/// A walker over a lookup sequence.
fn walk(lookups: &[u64]) -> impl FnMut() -> u64 + '_ {
    let mut i = 0;
    move || {
        let k = lookups[i];
        i = (i + 1) & SEQ_MASK;
        k
    }
}

fn bench_get(c: &mut Criterion, label: &str, n: usize) {
    let keys = distinct_keys(n, 0x5eed ^ n as u64);
    let lookups = sequence(&keys, 42);
    let snap = build_snap(&keys);
    let sync = build_sync(&keys);
    let brown = build_brown(&keys);
    let mut g = group(
        c,
        &format!("snapshot_get/{label}"),
        1,
        Duration::from_secs(2),
    );

    g.bench_function("snapshotmap-get", |b| {
        let mut next = walk(&lookups);
        b.iter(|| black_box(snap.get(&next()).map(|v| *v)));
    });
    g.bench_function("snapshotmap-held", |b| {
        let snapshot = snap.snapshot();
        let mut next = walk(&lookups);
        b.iter(|| black_box(snapshot.get(&next()).copied()));
    });
    g.bench_function("syncmap-held", |b| {
        let pinned = sync.pin();
        let mut next = walk(&lookups);
        b.iter(|| black_box(pinned.get(&next()).copied()));
    });
    g.bench_function("syncmap-fresh", |b| {
        let mut next = walk(&lookups);
        b.iter(|| black_box(sync.get_cloned(&next())));
    });
    g.bench_function("hashbrown", |b| {
        let mut next = walk(&lookups);
        b.iter(|| black_box(brown.get(&next()).copied()));
    });
    g.finish();
}

fn bench_write(c: &mut Criterion, label: &str, n: usize) {
    let keys = distinct_keys(n, 0x5eed ^ n as u64);
    let lookups = sequence(&keys, 7);
    // Copy cost grows with n: give the big tables more time per sample.
    let measure = Duration::from_secs(if n >= 1_000_000 { 6 } else { 3 });

    let mut g = group(c, &format!("snapshot_write/{label}"), 1, measure);
    {
        let snap = build_snap(&keys);
        g.bench_function("snapshotmap-single", |b| {
            let mut next = walk(&lookups);
            b.iter(|| {
                let k = next();
                black_box(snap.insert(k, k ^ 1))
            });
        });
    }
    {
        let sync = build_sync(&keys);
        g.bench_function("syncmap-single", |b| {
            let mut next = walk(&lookups);
            b.iter(|| {
                let k = next();
                black_box(sync.insert(k, k ^ 1))
            });
        });
    }
    {
        let mut brown = build_brown(&keys);
        g.bench_function("hashbrown", |b| {
            let mut next = walk(&lookups);
            b.iter(|| {
                let k = next();
                black_box(brown.insert(k, k ^ 1))
            });
        });
    }
    g.finish();

    let mut g = group(c, &format!("snapshot_write/{label}"), BATCH as u64, measure);
    {
        let snap = build_snap(&keys);
        g.bench_function("snapshotmap-batch1000", |b| {
            let mut next = walk(&lookups);
            b.iter(|| {
                snap.batch(|txn| {
                    for _ in 0..BATCH {
                        let k = next();
                        txn.insert(k, k ^ 1);
                    }
                })
            });
        });
    }
    g.finish();
}

/// Whether this run measures (`cargo bench` passes `--bench`) rather than
/// smoke-tests each benchmark once.
fn measuring() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

fn benches(c: &mut Criterion) {
    bench_get(c, "1k", 1_000);
    bench_get(c, "100k", 100_000);
    bench_write(c, "1k", 1_000);
    bench_write(c, "100k", 100_000);
    if measuring() {
        bench_write(c, "1m", 1_000_000);
    }
}

criterion_group!(snapshot_map, benches);
criterion_main!(snapshot_map);
