//! Hostile use: keys engineered to collide, HashDoS resistance of the default
//! hasher, lookups on an empty map and on a map of 10 million keys, and values
//! of size 0 and 1 MiB. Every test checks results, never timings.
mod common;

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use common::{flush_until_quiet, size, Rng};
use readmostly::{LoadOrStore, SnapshotMap, SyncMap};

const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Every key collides.
// ---------------------------------------------------------------------------

/// A hasher that returns one constant: every key lands on the same probe chain
/// with the same control byte, so every lookup compares keys one by one.
#[derive(Clone, Copy, Default)]
struct ConstantHasher;

impl Hasher for ConstantHasher {
    fn finish(&self) -> u64 {
        0xDEAD_BEEF
    }
    fn write(&mut self, _: &[u8]) {}
}

impl BuildHasher for ConstantHasher {
    type Hasher = ConstantHasher;
    fn build_hasher(&self) -> ConstantHasher {
        ConstantHasher
    }
}

#[test]
fn every_sync_map_operation_stays_correct_when_all_keys_collide() {
    let map: SyncMap<u64, u64, ConstantHasher> = SyncMap::with_hasher(ConstantHasher);
    let mut model: HashMap<u64, u64> = HashMap::new();
    let keys = size(600, 12);
    let mut rng = Rng::new(7);
    for step in 0..size(12_000, 120) {
        let k = rng.below(keys);
        let v = rng.next_u64() >> 1;
        let pinned = map.pin();
        match rng.below(12) {
            0..=2 => assert_eq!(
                pinned.insert(k, v).copied(),
                model.insert(k, v),
                "step {step}"
            ),
            3..=4 => assert_eq!(pinned.get(&k), model.get(&k), "step {step}"),
            5 => assert_eq!(pinned.remove(&k).copied(), model.remove(&k), "step {step}"),
            6 => {
                let got = match pinned.get_or_insert(k, v) {
                    LoadOrStore::Loaded(x) => (false, *x),
                    LoadOrStore::Stored(x) => (true, *x),
                };
                let want = match model.get(&k) {
                    Some(&x) => (false, x),
                    None => {
                        model.insert(k, v);
                        (true, v)
                    }
                };
                assert_eq!(got, want, "step {step}");
            }
            7 => {
                let expected = model.get(&k).copied().unwrap_or(0);
                let got = pinned
                    .compare_exchange(&k, &expected, v)
                    .copied()
                    .map_err(|e| e.current.copied());
                let want = match model.get(&k).copied() {
                    Some(x) if x == expected => {
                        model.insert(k, v);
                        Ok(x)
                    }
                    other => Err(other),
                };
                assert_eq!(got, want, "step {step}");
            }
            8 => {
                let got = pinned.update(&k, |x| x / 2 + 1).copied();
                let want = model.get_mut(&k).map(|x| {
                    *x = *x / 2 + 1;
                    *x
                });
                assert_eq!(got, want, "step {step}");
            }
            9 => {
                let got = pinned.remove_if(&k, |x| x % 2 == 0).copied();
                let want = match model.get(&k) {
                    Some(x) if x % 2 == 0 => model.remove(&k),
                    _ => None,
                };
                assert_eq!(got, want, "step {step}");
            }
            10 => {
                if rng.one_in(20) {
                    map.promote();
                }
                assert_eq!(
                    pinned.contains_key(&k),
                    model.contains_key(&k),
                    "step {step}"
                );
            }
            _ => {
                if rng.one_in(50) {
                    pinned.retain(|_, v| v % 3 != 0);
                    model.retain(|_, v| *v % 3 != 0);
                }
            }
        }
        assert_eq!(map.len(), model.len(), "len after step {step}");
    }
    // Still usable as a whole: iteration, a full scan, clear, reuse.
    let mut seen: Vec<(u64, u64)> = map.pin().iter().map(|(k, v)| (*k, *v)).collect();
    seen.sort_unstable();
    let mut want: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    want.sort_unstable();
    assert_eq!(seen, want);
    for k in 0..keys {
        assert_eq!(map.get_cloned(&k), model.get(&k).copied());
    }
    map.clear();
    assert!(map.is_empty());
    map.insert(1, 1);
    assert_eq!(map.get_cloned(&1), Some(1));
    assert_eq!(map.get_cloned(&2), None);
}

#[test]
fn sync_map_with_all_keys_colliding_stays_correct_under_concurrency() {
    const THREADS: u64 = 4;
    let per_thread = size(150, 6);
    let rounds = size(6, 2);
    let map: SyncMap<u64, u64, ConstantHasher> = SyncMap::with_hasher(ConstantHasher);
    let start = Barrier::new(THREADS as usize);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (map, start) = (&map, &start);
            s.spawn(move || {
                // Each thread owns its keys, so it knows their exact values, while
                // every thread probes the one shared chain.
                let own = |i: u64| t * 1_000 + i;
                start.wait();
                for round in 0..rounds {
                    for i in 0..per_thread {
                        let previous = map.insert(own(i), round);
                        assert_eq!(previous, round.checked_sub(1));
                    }
                    if t == 0 {
                        map.promote();
                    }
                    for i in (0..per_thread).step_by(2) {
                        assert_eq!(map.remove(&own(i)), Some(round));
                    }
                    for i in 0..per_thread {
                        let want = (i % 2 == 1).then_some(round);
                        assert_eq!(map.get_cloned(&own(i)), want, "t{t} round {round} key {i}");
                    }
                    for i in (0..per_thread).step_by(2) {
                        assert!(map.pin().get_or_insert(own(i), round).is_stored());
                    }
                }
            });
        }
    });
    assert_eq!(map.len() as u64, THREADS * per_thread);
    for t in 0..THREADS {
        for i in 0..per_thread {
            assert_eq!(map.get_cloned(&(t * 1_000 + i)), Some(rounds - 1));
        }
    }
}

#[test]
fn snapshot_map_stays_correct_when_all_keys_collide() {
    let map: SnapshotMap<u64, u64, ConstantHasher> = SnapshotMap::with_hasher(ConstantHasher);
    let keys = size(300, 16);
    // One batch loads every key (each single write copies the whole table).
    map.batch(|txn| {
        for k in 0..keys {
            assert_eq!(txn.insert(k, k), None);
        }
    });
    let before = map.snapshot();
    map.batch(|txn| {
        for k in (0..keys).step_by(3) {
            assert_eq!(txn.remove(&k), Some(k));
        }
        for k in (1..keys).step_by(3) {
            assert_eq!(txn.update(&k, |v| v + 1), Some(&(k + 1)));
        }
    });
    assert_eq!(map.insert(keys, 0), None);
    assert_eq!(map.remove(&(keys + 1)), None);
    for k in 0..keys {
        let want = match k % 3 {
            0 => None,
            1 => Some(k + 1),
            _ => Some(k),
        };
        assert_eq!(map.get_cloned(&k), want, "key {k}");
        assert_eq!(before.get(&k), Some(&k), "old snapshot, key {k}");
    }
    let changes = before.diff(&map.snapshot()).count() as u64;
    assert_eq!(changes, keys.div_ceil(3) + (keys - 1).div_ceil(3) + 1);
    map.clear();
    assert!(map.is_empty());
}

// ---------------------------------------------------------------------------
// HashDoS: keys crafted against one fixed hasher.
// ---------------------------------------------------------------------------

/// Bits of the hash that pick a bucket in a table of up to 4,096 buckets (64
/// under Miri, where the brute-force search below is slow).
const BUCKET_BITS: u64 = if cfg!(miri) {
    (1 << 6) - 1
} else {
    (1 << 12) - 1
};

/// Keys whose hashes under `hasher` all agree on the bucket bits: in a table
/// of up to 4,096 buckets they all start probing at the same bucket. Found by
/// brute force, as an attacker who knows the hash keys would.
fn colliding_keys(hasher: &impl BuildHasher, n: usize) -> Vec<u64> {
    let target = hasher.hash_one(0u64) & BUCKET_BITS;
    (0u64..)
        .filter(|k| hasher.hash_one(k) & BUCKET_BITS == target)
        .take(n)
        .collect()
}

/// The largest number of `keys` sharing a start bucket under `hasher`.
fn max_bucket_load(hasher: &impl BuildHasher, keys: &[u64]) -> usize {
    let mut load: HashMap<u64, usize> = HashMap::new();
    for k in keys {
        *load.entry(hasher.hash_one(k) & BUCKET_BITS).or_default() += 1;
    }
    load.into_values().max().unwrap_or(0)
}

#[test]
fn keys_crafted_against_a_fixed_key_hasher_do_not_collide_under_the_default_hasher() {
    let n = size(200, 4) as usize;
    // SipHash with the fixed, public keys (0, 0), as `DefaultHasher::new()` uses.
    let fixed = BuildHasherDefault::<DefaultHasher>::default();
    let crafted = colliding_keys(&fixed, n);
    assert_eq!(
        max_bucket_load(&fixed, &crafted),
        n,
        "all collide under the fixed keys"
    );

    // The map's default hasher (`RandomState`) draws its keys per process and per
    // map: the crafted keys spread as random keys would. With 200 keys over
    // 4,096 buckets the expected maximum load is 2–3; 12 would take a
    // probability below 1e-12.
    let map: SyncMap<u64, u64> = crafted.iter().map(|&k| (k, k)).collect();
    if !cfg!(miri) {
        let load = max_bucket_load(map.hasher(), &crafted);
        assert!(
            load <= 12,
            "{load} crafted keys share a bucket under RandomState"
        );
    }
    for &k in &crafted {
        assert_eq!(map.get_cloned(&k), Some(k));
    }

    // Keys crafted against one map's own hasher (as if its keys leaked) do not
    // collide in another map: every map has its own keys.
    let other: SyncMap<u64, u64> = SyncMap::new();
    let against_map = colliding_keys(map.hasher(), n);
    assert_eq!(max_bucket_load(map.hasher(), &against_map), n);
    if !cfg!(miri) {
        let load = max_bucket_load(other.hasher(), &against_map);
        assert!(
            load <= 12,
            "{load} keys crafted against one map collide in another"
        );
    }
    let snapshot_map: SnapshotMap<u64, u64> = SnapshotMap::new();
    snapshot_map.replace_all(against_map.iter().map(|&k| (k, k)));
    for &k in &against_map {
        assert_eq!(snapshot_map.get_cloned(&k), Some(k));
    }
}

#[test]
fn every_map_gets_its_own_hash_keys() {
    let a: SyncMap<u64, u64> = SyncMap::new();
    let b: SyncMap<u64, u64> = SyncMap::new();
    let differing = (0u64..64)
        .filter(|k| a.hasher().hash_one(k) != b.hasher().hash_one(k))
        .count();
    assert_eq!(differing, 64, "two maps hash alike");
    let state = RandomState::new();
    assert_ne!(state.hash_one(1u64), a.hasher().hash_one(1u64));
}

// ---------------------------------------------------------------------------
// Empty maps and a map of 10 million keys.
// ---------------------------------------------------------------------------

fn assert_sync_map_empty(map: &SyncMap<String, u64>) {
    let pinned = map.pin();
    for key in ["", "a", "absent"] {
        assert_eq!(pinned.get(key), None);
        assert_eq!(pinned.get_key_value(key), None);
        assert!(!pinned.contains_key(key));
        assert_eq!(map.get_cloned(key), None);
        assert_eq!(pinned.remove(key), None);
        assert_eq!(map.remove(key), None);
        assert_eq!(pinned.remove_if(key, |_| true), None);
        assert_eq!(pinned.update(key, |v| v + 1), None);
        let err = pinned.compare_exchange(key, &0, 1).unwrap_err();
        assert_eq!((err.current, err.new), (None, 1));
    }
    assert_eq!(pinned.iter().count(), 0);
    pinned.retain(|_, _| panic!("retain called on an empty map"));
    assert_eq!((map.len(), pinned.len()), (0, 0));
    assert!(map.is_empty() && pinned.is_empty());
}

#[test]
fn every_read_of_an_empty_map_finds_nothing() {
    let fresh: SyncMap<String, u64> = SyncMap::new();
    assert_sync_map_empty(&fresh);
    fresh.promote();
    fresh.clear();
    assert_sync_map_empty(&fresh);
    let sized: SyncMap<String, u64> = SyncMap::with_capacity(1_000);
    assert_sync_map_empty(&sized);
    // Emptied every way: remove, clear, retain.
    let emptied: SyncMap<String, u64> = SyncMap::new();
    emptied.insert("a".into(), 1);
    emptied.promote();
    emptied.insert("b".into(), 2);
    emptied.remove("a");
    emptied.clear();
    emptied.insert("c".into(), 3);
    emptied.retain(|_, _| false);
    assert_sync_map_empty(&emptied);
    assert_eq!(fresh.stats().values_retired, 0);

    let snapshot_map: SnapshotMap<String, u64> = SnapshotMap::new();
    for map in [&snapshot_map, &{
        let m = SnapshotMap::new();
        m.insert("a".to_string(), 1);
        m.clear();
        m
    }] {
        assert!(map.get("a").is_none());
        assert_eq!(map.get_cloned("a"), None);
        assert!(!map.contains_key(""));
        assert_eq!(map.remove("a"), None);
        assert_eq!(map.update("a", |v| v + 1), None);
        map.retain(|_, _| panic!("retain called on an empty map"));
        assert_eq!(map.iter().count(), 0);
        let snapshot = map.snapshot();
        assert!(snapshot.is_empty() && snapshot.get("a").is_none());
        assert_eq!(snapshot.diff(&map.snapshot()).count(), 0);
        assert!(map.is_empty());
    }
    assert_eq!(
        snapshot_map.version(),
        0,
        "reads and no-op writes publish nothing"
    );
}

/// Keys of the big map: 10 million, spread (not 0..n) so that they do not hash
/// in sequence under any hasher.
fn big_key(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[test]
#[ignore = "10 million keys: ~2 GiB and tens of seconds; run in release by .ci/reliability.sh"]
fn get_on_a_map_of_ten_million_keys() {
    const N: u64 = 10_000_000;
    let map: SyncMap<u64, u64> = (0..N).map(|i| (big_key(i), i)).collect();
    assert_eq!(map.len() as u64, N);
    // Through the dirty table (before promotion) and the read table (after).
    for i in (0..N).step_by(997) {
        assert_eq!(map.get_cloned(&big_key(i)), Some(i));
    }
    map.promote();
    let pinned = map.pin();
    let mut found = 0u64;
    for i in 0..N {
        found += u64::from(pinned.get(&big_key(i)) == Some(&i));
    }
    assert_eq!(found, N);
    for i in N..N + 100_000 {
        assert_eq!(pinned.get(&big_key(i)), None);
    }
    // Still writable at that size.
    assert_eq!(pinned.insert(big_key(N), N), None);
    assert_eq!(pinned.remove(&big_key(0)), Some(&0));
    assert_eq!(pinned.update(&big_key(1), |v| v + 1), Some(&2));
    drop(pinned);
    assert_eq!(map.len() as u64, N);
    drop(map);

    let snapshot_map: SnapshotMap<u64, u64> = SnapshotMap::new();
    snapshot_map.replace_all((0..N).map(|i| (big_key(i), i)));
    let snapshot = snapshot_map.snapshot();
    assert_eq!(snapshot.len() as u64, N);
    for i in (0..N).step_by(7) {
        assert_eq!(snapshot.get(&big_key(i)), Some(&i));
    }
    assert_eq!(snapshot_map.get_cloned(&big_key(N)), None);
}

// ---------------------------------------------------------------------------
// Values of size 0 and of size 1 MiB.
// ---------------------------------------------------------------------------

static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);
static ZST_MADE: AtomicUsize = AtomicUsize::new(0);

/// A zero-sized value with a destructor, counted; so are its clones (promotions
/// clone values).
#[derive(Debug, PartialEq)]
struct Unit;

impl Unit {
    fn new() -> Self {
        ZST_MADE.fetch_add(1, Ordering::SeqCst);
        Unit
    }
}

impl Clone for Unit {
    fn clone(&self) -> Self {
        Unit::new()
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn zero_sized_values_and_keys_work_like_any_other() {
    assert_eq!(std::mem::size_of::<Unit>(), 0);
    let n = size(500, 20);
    {
        let map: SyncMap<u64, ()> = SyncMap::new();
        for k in 0..n {
            assert_eq!(map.insert(k, ()), None);
        }
        map.promote();
        for k in 0..n {
            assert_eq!(map.insert(k, ()), Some(()));
            assert_eq!(map.pin().get(&k), Some(&()));
        }
        let pinned = map.pin();
        assert_eq!(pinned.compare_exchange(&1, &(), ()), Ok(&()));
        assert_eq!(pinned.update(&2, |_| ()), Some(&()));
        assert_eq!(pinned.remove_if(&3, |_| true), Some(&()));
        assert!(!pinned.get_or_insert(4, ()).is_stored());
        assert!(pinned.get_or_insert(3, ()).is_stored());
        assert_eq!(pinned.iter().count() as u64, n);
        drop(pinned);
        for k in (0..n).step_by(2) {
            assert_eq!(map.remove(&k), Some(()));
        }
        assert_eq!(map.len() as u64, n / 2);
    }
    {
        // A zero-sized key too: a map of at most one entry.
        let map: SyncMap<(), ()> = SyncMap::new();
        assert_eq!(map.insert((), ()), None);
        assert_eq!(map.insert((), ()), Some(()));
        map.promote();
        assert_eq!(map.len(), 1);
        assert_eq!(map.remove(&()), Some(()));
        assert!(map.is_empty());
    }
    {
        // Zero-sized values with a destructor: each made (or cloned by a
        // promotion) dropped exactly once — the replaced ones with the reclaimer,
        // the rest with the map.
        let made = || ZST_MADE.load(Ordering::SeqCst);
        let dropped = || ZST_DROPS.load(Ordering::SeqCst);
        let (made_before, dropped_before) = (made(), dropped());
        let map: SyncMap<u64, Unit> = SyncMap::new();
        for k in 0..n {
            assert!(map.pin().insert(k, Unit::new()).is_none());
        }
        map.promote(); // clones each
        for k in 0..n {
            assert!(map.pin().insert(k, Unit::new()).is_some()); // the inline one stays
        }
        for k in 0..n / 2 {
            assert!(map.pin().remove(&k).is_some()); // retires a cell
        }
        map.promote(); // clones the other half again
        flush_until_quiet(&map, TIMEOUT);
        // Alive now: the n / 2 values of the current read table.
        assert_eq!(
            (made() - made_before) - (dropped() - dropped_before),
            (n / 2) as usize
        );
        drop(map);
        assert_eq!(
            made() - made_before,
            dropped() - dropped_before,
            "every value dropped once"
        );
    }
    {
        let map: SnapshotMap<u64, ()> = SnapshotMap::new();
        map.batch(|txn| {
            for k in 0..n {
                txn.insert(k, ());
            }
        });
        assert_eq!(map.insert(0, ()), Some(()));
        assert_eq!(map.update(&1, |_| ()), Some(()));
        assert_eq!(map.remove(&2), Some(()));
        assert_eq!(map.snapshot().values().count() as u64, n - 1);
    }
}

const MIB: usize = 1 << 20;

/// A value of exactly 1 MiB, stored inline (not behind a pointer).
type Big = [u8; MIB];

fn big(fill: u8) -> Box<Big> {
    let mut b: Box<Big> = vec![0u8; MIB].into_boxed_slice().try_into().unwrap();
    b.fill(fill);
    b[0] = fill.wrapping_add(1);
    b[MIB - 1] = fill.wrapping_add(2);
    b
}

fn assert_big(value: &Big, fill: u8) {
    assert_eq!(
        (value[0], value[MIB - 1]),
        (fill.wrapping_add(1), fill.wrapping_add(2))
    );
    assert!(
        value[1..MIB - 1].iter().all(|&b| b == fill),
        "1 MiB value corrupted"
    );
}

/// Runs `f` on a thread with a stack big enough to move 1 MiB values around
/// by value in an unoptimized build.
fn with_big_stack(f: impl FnOnce() + Send) {
    thread::scope(|s| {
        thread::Builder::new()
            .stack_size(64 * MIB)
            .spawn_scoped(s, f)
            .unwrap()
            .join()
            .unwrap();
    });
}

#[test]
fn one_mebibyte_values_are_stored_read_replaced_and_freed() {
    if cfg!(miri) {
        return; // megabytes of interpreted copies
    }
    assert_eq!(std::mem::size_of::<Big>(), MIB);
    with_big_stack(|| {
        let map: SyncMap<u8, Big> = SyncMap::new();
        for k in 0..8u8 {
            assert!(map.pin().insert(k, *big(k)).is_none());
        }
        map.promote();
        {
            let pinned = map.pin();
            let old = pinned.get(&3).unwrap();
            assert_big(old, 3);
            let retired = map.stats().values_retired;
            // Replaced and removed while a reference is held: the old values stay
            // intact until the guard goes. Both were inline in the read table,
            // where they stay until the next promotion: nothing is retired.
            assert_big(pinned.insert(3, *big(30)).unwrap(), 3);
            assert_big(pinned.remove(&4).unwrap(), 4);
            assert_eq!(map.stats().values_retired, retired);
            assert_big(old, 3);
            let second = pinned.get(&3).unwrap();
            assert_big(second, 30);
            // The second value is a heap cell of its own: replacing it retires 1 MiB.
            assert_big(pinned.insert(3, *big(31)).unwrap(), 30);
            let stats = map.stats();
            assert_eq!(stats.values_retired, retired + 1);
            assert!(stats.pending_bytes >= MIB as u64, "{stats:?}");
            assert_big(second, 30);
            // An identical copy: a new 1 MiB cell with the same bytes.
            assert_big(pinned.update(&5, |v| *v).unwrap(), 5);
            let cas = pinned.compare_exchange(&6, &*big(6), *big(60));
            assert_big(cas.unwrap(), 6);
        }
        flush_until_quiet(&map, TIMEOUT);
        assert_eq!(map.stats().pending_bytes, 0);
        for (k, fill) in [(0, 0), (3, 31), (5, 5), (6, 60), (7, 7)] {
            assert_big(map.pin().get(&k).unwrap(), fill);
        }
        assert!(map.pin().get(&4).is_none());
        assert_eq!(map.len(), 7);

        // Heap-backed 1 MiB values, in a SnapshotMap (each write copies them).
        let snapshots: SnapshotMap<u8, Vec<u8>> = SnapshotMap::new();
        for k in 0..4u8 {
            snapshots.insert(k, big(k).to_vec());
        }
        let before = snapshots.snapshot();
        snapshots.insert(0, big(100).to_vec());
        assert_big(before.get(&0).unwrap().as_slice().try_into().unwrap(), 0);
        assert_big(
            snapshots.get(&0).unwrap().as_slice().try_into().unwrap(),
            100,
        );
        assert_eq!(
            snapshots.snapshot().values().map(Vec::len).sum::<usize>(),
            4 * MIB
        );
    });
}

#[test]
fn distinct_keys_never_alias_across_a_colliding_rehash() {
    // Grow a colliding map through several promotions and compactions while
    // checking that no two keys ever read each other's value.
    let map: SyncMap<u64, u64, ConstantHasher> = SyncMap::with_hasher(ConstantHasher);
    let n = size(400, 12);
    let mut live = HashSet::new();
    for round in 0..4u64 {
        for k in 0..n {
            if (k + round) % 3 != 0 {
                map.insert(k, k * 10 + round);
                live.insert(k);
            } else if map.remove(&k).is_some() {
                live.remove(&k);
            }
        }
        map.promote();
        for k in 0..n {
            let got = map.get_cloned(&k);
            assert_eq!(got.is_some(), live.contains(&k), "round {round} key {k}");
            if let Some(v) = got {
                assert_eq!(v / 10, k, "key {k} read another key's value {v}");
            }
        }
    }
}
