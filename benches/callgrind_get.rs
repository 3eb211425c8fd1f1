//! Deterministic driver for counting instructions per `get` hit under callgrind.
//!
//! ```text
//! callgrind_get IMPL [N] [M]
//! ```
//!
//! Builds a map of `N` random `u64` keys (default 10 000) with a fixed-key hasher
//! (`BuildHasherDefault<DefaultHasher>`: SipHash-1-3 with zero keys, the same
//! algorithm as `RandomState`, minus the random keys, so that runs are
//! repeatable), then looks up `M` hit keys (default 1 000 000) drawn from a
//! fixed-seed sequence, in one `#[inline(never)]` function per implementation:
//!
//! * `baseline`: the loop alone (load the key, `black_box` it): subtracted;
//! * `hashbrown`: `hashbrown::HashMap::get`, unsynchronized;
//! * `hashbrown-table`: the same probe on a `hashbrown::HashTable`, hashing the
//!   key as SyncMap's read path does (whether LLVM inlines `HashMap::get`'s
//!   SipHash varies between builds);
//! * `syncmap-held`: `SyncMap::pin()` once, then `Pinned::get` for each key;
//! * `syncmap-fresh`: `SyncMap::get_cloned`, which pins the reclaimer per call;
//! * `syncmap-held-seize`, `syncmap-fresh-seize` (built with `--features seize`):
//!   the same two on the seize backend; the two rows above use `DefaultReclaim`
//!   (crossbeam-epoch in a default build);
//! * `rwlock`: `RwLock<std::collections::HashMap>`, a read lock per get;
//! * `classic-held`: `classic::ClassicSyncMap` (Go's read/dirty design), one
//!   guard held;
//! * `syncmap-overwrite` (and `syncmap-overwrite-seize`): `SyncMap::insert` of
//!   keys already present, a pin per call: a cell allocated, the replaced one
//!   retired and, amortized, freed;
//! * `rwlock-overwrite`: the same overwrites in place under a write lock (what
//!   `DashMap` does in one shard).
//!
//! Run it under `valgrind --tool=callgrind --toggle-collect='*measure_*'` so only
//! the measured function is counted; `docs/performance.md` has the commands. The
//! program prints the sum of the values it found, so that nothing is optimized
//! away and a wrong map is noticed. `cargo bench` runs it once with small sizes.
//!
//! ```text
//! callgrind_get interleaved [N] [BLOCK] [ROUNDS]
//! ```
//!
//! A wall-clock cross-check for a shared, noisy machine: times blocks of `BLOCK`
//! gets (default 4096) on maps of `N` keys (default 100 000), the implementations
//! taking turns block by block for `ROUNDS` rounds (default 1000), so that every
//! implementation runs under the same background load; prints the median ns per
//! get of each and the median over rounds of each per-round ratio to hashbrown
//! (with `--features seize`, `syncmap-fresh-seize` as well).

use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::hint::black_box;
use std::sync::RwLock;
use std::time::Instant;

use readmostly::classic::{ClassicPinned, ClassicSyncMap};
#[cfg(feature = "seize")]
use readmostly::reclaim::Seize;
use readmostly::reclaim::{DefaultReclaim, Reclaim};
use readmostly::{Pinned, SyncMap};

type Fixed = BuildHasherDefault<DefaultHasher>;
type Brown = hashbrown::HashMap<u64, u64, Fixed>;
type BrownTable = hashbrown::HashTable<(u64, u64)>;
type SMap<R = DefaultReclaim> = SyncMap<u64, u64, Fixed, R>;
type Classic = ClassicSyncMap<u64, u64, Fixed, DefaultReclaim>;
type StdMap = std::collections::HashMap<u64, u64, Fixed>;
type Locked = RwLock<StdMap>;

/// xorshift64*, as in `benches/sync_map.rs`.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[inline(never)]
fn measure_baseline(lookups: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &k in lookups {
        sum = sum.wrapping_add(black_box(Some(k)).unwrap_or(0));
    }
    sum
}

#[inline(never)]
fn measure_hashbrown(map: &Brown, lookups: &[u64]) -> u64 {
    let mut sum = 0u64;
    for k in lookups {
        sum = sum.wrapping_add(black_box(map.get(k).copied()).unwrap_or(0));
    }
    sum
}

/// The probe `hashbrown::HashMap::get` does, with the key hashed the way
/// SyncMap's read path hashes it (`key.hash(&mut state)`, not `hash_one(&key)`):
/// `HashMap::get` hashes through `<&Q as Hash>`, which LLVM inlines in some
/// builds and not in others (SipHash out of line costs about 60 instructions
/// more per get), so this is the like-for-like row of the comparison.
#[inline(never)]
fn measure_hashbrown_table(table: &(BrownTable, Fixed), lookups: &[u64]) -> u64 {
    let (table, hasher) = table;
    let mut sum = 0u64;
    for k in lookups {
        let hash = hash_u64(hasher, k);
        let found = table.find(hash, |&(key, _)| key == *k).map(|&(_, v)| v);
        sum = sum.wrapping_add(black_box(found).unwrap_or(0));
    }
    sum
}

#[inline(never)]
fn measure_syncmap_held<R: Reclaim>(
    pinned: &Pinned<'_, u64, u64, Fixed, R>,
    lookups: &[u64],
) -> u64 {
    let mut sum = 0u64;
    for k in lookups {
        sum = sum.wrapping_add(black_box(pinned.get(k).copied()).unwrap_or(0));
    }
    sum
}

#[inline(never)]
fn measure_syncmap_fresh<R: Reclaim>(map: &SMap<R>, lookups: &[u64]) -> u64 {
    let mut sum = 0u64;
    for k in lookups {
        sum = sum.wrapping_add(black_box(map.get_cloned(k)).unwrap_or(0));
    }
    sum
}

#[inline(never)]
fn measure_classic_held(
    pinned: &ClassicPinned<'_, u64, u64, Fixed, DefaultReclaim>,
    lookups: &[u64],
) -> u64 {
    let mut sum = 0u64;
    for k in lookups {
        sum = sum.wrapping_add(black_box(pinned.get(k).copied()).unwrap_or(0));
    }
    sum
}

/// Overwrites through `SyncMap::insert`, a pin per call (as the lab's writers
/// do): the allocation of the new value's cell, the CAS, the retirement of the
/// replaced cell and, amortized, its later free. Returns the sum of the
/// replaced values.
#[inline(never)]
fn measure_syncmap_overwrite<R: Reclaim>(map: &SMap<R>, lookups: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &k in lookups {
        sum = sum.wrapping_add(black_box(map.insert(k, k)).unwrap_or(0));
    }
    sum
}

/// Overwrites in place under a write lock: what `DashMap` does in one shard.
#[inline(never)]
fn measure_rwlock_overwrite(map: &Locked, lookups: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &k in lookups {
        sum = sum.wrapping_add(black_box(map.write().unwrap().insert(k, k)).unwrap_or(0));
    }
    sum
}

#[inline(never)]
fn measure_rwlock(map: &Locked, lookups: &[u64]) -> u64 {
    let mut sum = 0u64;
    for k in lookups {
        sum = sum.wrapping_add(black_box(map.read().unwrap().get(k).copied()).unwrap_or(0));
    }
    sum
}

/// A map of `keys` (value = key), promoted: every key is in the read table.
fn build_sync<R: Reclaim>(keys: &[u64]) -> SMap<R> {
    let map = SMap::with_hasher_and_reclaim(Fixed::default(), R::default());
    {
        let pinned = map.pin();
        for &k in keys {
            pinned.insert(k, k);
        }
    }
    map.promote();
    map
}

fn build_classic(keys: &[u64]) -> Classic {
    let map = Classic::with_hasher_and_reclaim(Fixed::default(), DefaultReclaim::default());
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
    let mut map = Brown::default();
    map.extend(keys.iter().map(|&k| (k, k)));
    map
}

/// Hashes `key` exactly as SyncMap's read path does (`SyncMap::hash`).
// Not `hash_one`: it hashes through `<&u64 as Hash>`, one more call level that
// the compiler left out of line here (38 of 173 instructions per get), while
// SyncMap's own hash inlines; the rows must hash alike to compare the probes.
#[allow(clippy::manual_hash_one)]
#[inline]
fn hash_u64(hasher: &Fixed, key: &u64) -> u64 {
    let mut state = hasher.build_hasher();
    key.hash(&mut state);
    state.finish()
}

fn build_brown_table(keys: &[u64]) -> (BrownTable, Fixed) {
    let hasher = Fixed::default();
    let mut table = BrownTable::with_capacity(keys.len());
    for &k in keys {
        table.insert_unique(hash_u64(&hasher, &k), (k, k), |(key, _)| {
            hash_u64(&hasher, key)
        });
    }
    (table, hasher)
}

fn build_locked(keys: &[u64]) -> Locked {
    let mut map = StdMap::default();
    map.extend(keys.iter().map(|&k| (k, k)));
    RwLock::new(map)
}

/// `n` distinct keys from `rng`.
fn distinct_keys(rng: &mut XorShift, n: usize) -> Vec<u64> {
    let mut keys = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::with_capacity(n);
    while keys.len() < n {
        let k = rng.next();
        if seen.insert(k) {
            keys.push(k);
        }
    }
    keys
}

/// Median of `v` (sorts it).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `interleaved` mode: see the module docs.
fn interleaved(keys: &[u64], rng: &mut XorShift, block: usize, rounds: usize) {
    let n = keys.len();
    let lookups: Vec<u64> = (0..1 << 20)
        .map(|_| keys[(rng.next() % n as u64) as usize])
        .collect();
    let brown = build_brown(keys);
    let sync = build_sync::<DefaultReclaim>(keys);
    let pinned = sync.pin();
    let locked = build_locked(keys);
    #[cfg(feature = "seize")]
    let seized = build_sync::<Seize>(keys);

    // The first is the reference the others are divided by.
    type Subject<'a> = (&'a str, Box<dyn Fn(&[u64]) -> u64 + 'a>);
    let subjects: Vec<Subject<'_>> = vec![
        ("hashbrown", Box::new(|s| measure_hashbrown(&brown, s))),
        (
            "syncmap-held",
            Box::new(|s| measure_syncmap_held(&pinned, s)),
        ),
        (
            "syncmap-fresh",
            Box::new(|s| measure_syncmap_fresh(&sync, s)),
        ),
        ("rwlock", Box::new(|s| measure_rwlock(&locked, s))),
        #[cfg(feature = "seize")]
        (
            "syncmap-fresh-seize",
            Box::new(|s| measure_syncmap_fresh(&seized, s)),
        ),
    ];
    let count = subjects.len();
    let mut per_get = vec![Vec::new(); count];
    let mut ratios = vec![Vec::new(); count];
    let mut this_round = vec![0.0; count];
    let mut offset = 0;
    for round in 0..rounds {
        // Rotate the order, so no implementation always runs first in a round.
        for turn in 0..count {
            let which = (round + turn) % count;
            if offset + block > lookups.len() {
                offset = 0;
            }
            let slice = &lookups[offset..offset + block];
            offset += block;
            let start = Instant::now();
            black_box((subjects[which].1)(slice));
            let ns = start.elapsed().as_nanos() as f64 / block as f64;
            this_round[which] = ns;
            per_get[which].push(ns);
        }
        for (r, ns) in ratios.iter_mut().zip(&this_round).skip(1) {
            r.push(ns / this_round[0]);
        }
    }
    println!("interleaved: n={n} block={block} rounds={rounds}");
    for ((name, _), v) in subjects.iter().zip(per_get.iter_mut()) {
        println!("  {name:<20} median {:7.2} ns/get", median(v));
    }
    for ((name, _), v) in subjects.iter().zip(ratios.iter_mut()).skip(1) {
        println!(
            "  {name:<20} / hashbrown: median of per-round ratios {:.3}",
            median(v)
        );
    }
}

fn main() {
    // `cargo bench` appends `--bench`; anything starting with `--` is ignored.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let under_cargo_bench = args.is_empty();
    let which = args.first().map_or("all", String::as_str);
    if which == "interleaved" {
        let arg = |i: usize, default: usize| {
            args.get(i).map_or(default, |s| {
                s.parse().expect("N, BLOCK and ROUNDS are integers")
            })
        };
        let n = arg(1, 100_000);
        let mut rng = XorShift(0x00c0_ffee);
        let keys = distinct_keys(&mut rng, n);
        interleaved(&keys, &mut rng, arg(2, 4096), arg(3, 1000));
        return;
    }
    let arg = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("N and M are integers"))
    };
    // Under a bare `cargo bench`, a quick smoke run of every implementation.
    let (n, m) = if under_cargo_bench {
        (1_000, 10_000)
    } else {
        (arg(1, 10_000), arg(2, 1_000_000))
    };

    let mut rng = XorShift(0x00c0_ffee);
    let keys = distinct_keys(&mut rng, n);
    let lookups: Vec<u64> = (0..m)
        .map(|_| keys[(rng.next() % n as u64) as usize])
        .collect();
    // Every key maps to itself, so each implementation must print the same sum.
    let expected = lookups.iter().fold(0u64, |s, &k| s.wrapping_add(k));

    let run = |name: &str| -> u64 {
        match name {
            "baseline" => measure_baseline(&lookups),
            "hashbrown" => measure_hashbrown(&build_brown(&keys), &lookups),
            "hashbrown-table" => measure_hashbrown_table(&build_brown_table(&keys), &lookups),
            "rwlock" => measure_rwlock(&build_locked(&keys), &lookups),
            "classic-held" => {
                let map = build_classic(&keys);
                let pinned = map.pin();
                measure_classic_held(&pinned, &lookups)
            }
            "syncmap-held" => measure_syncmap_held(&build_sync::<DefaultReclaim>(&keys).pin(), &lookups),
            "syncmap-fresh" => measure_syncmap_fresh(&build_sync::<DefaultReclaim>(&keys), &lookups),
            "syncmap-overwrite" => measure_syncmap_overwrite(&build_sync::<DefaultReclaim>(&keys), &lookups),
            "rwlock-overwrite" => measure_rwlock_overwrite(&build_locked(&keys), &lookups),
            #[cfg(feature = "seize")]
            "syncmap-held-seize" => measure_syncmap_held(&build_sync::<Seize>(&keys).pin(), &lookups),
            #[cfg(feature = "seize")]
            "syncmap-fresh-seize" => measure_syncmap_fresh(&build_sync::<Seize>(&keys), &lookups),
            #[cfg(feature = "seize")]
            "syncmap-overwrite-seize" => measure_syncmap_overwrite(&build_sync::<Seize>(&keys), &lookups),
            other => panic!(
                "unknown implementation {other:?}: baseline, hashbrown, hashbrown-table, syncmap-held, \
                 syncmap-fresh, rwlock, classic-held, syncmap-overwrite, rwlock-overwrite (and with \
                 --features seize: syncmap-held-seize, syncmap-fresh-seize, syncmap-overwrite-seize)"
            ),
        }
    };

    let names: &[&str] = if which == "all" {
        &[
            "baseline",
            "hashbrown",
            "hashbrown-table",
            "syncmap-held",
            "syncmap-fresh",
            "rwlock",
            "classic-held",
            "syncmap-overwrite",
            "rwlock-overwrite",
            #[cfg(feature = "seize")]
            "syncmap-held-seize",
            #[cfg(feature = "seize")]
            "syncmap-fresh-seize",
            #[cfg(feature = "seize")]
            "syncmap-overwrite-seize",
        ]
    } else {
        std::slice::from_ref(&which)
    };
    for &name in names {
        let sum = run(name);
        assert_eq!(sum, expected, "{name}: wrong sum");
        println!("{name}: n={n} m={m} sum={sum:#x}");
    }
}
