//! Go's own `sync.Map` tests (`src/sync/map_test.go`, Go 1.23/1.24), ported and
//! run against both maps of the crate: [`SyncMap`] and
//! [`ClassicSyncMap`](readmostly::classic::ClassicSyncMap).
//!
//! Each check is written once, generic over [`GoMap`] — Go's `sync.Map` method
//! set (Load, Store, LoadOrStore, LoadAndDelete, Delete, Swap, CompareAndSwap,
//! CompareAndDelete, Range, Clear) plus what the crate adds (update, remove_if,
//! retain, promote, len) — and instantiated for each map by [`go_tests!`], as
//! `sync_map::<test>` and `classic::<test>`.
//!
//! Go names → this crate: Load = `get`, Store/Swap = `insert`, LoadOrStore =
//! `get_or_insert`, LoadAndDelete/Delete = `remove`, CompareAndSwap =
//! `compare_exchange`, CompareAndDelete = `remove_if` with equality, Range =
//! `iter` (`ClassicPinned::entries`), Clear = `clear`.
//!
//! `ClassicSyncMap`'s public API is Go's: it has no `retain` or
//! `get_or_insert_with` (its unit tests build them from crate-private code,
//! `src/classic/tests/mod.rs`). Checks of those operations run on `SyncMap`
//! only ([`GoMap::FULL_API`]); everything else runs on both.
//!
//! Go's allocation counts (`TestMapRangeNoAllocations`,
//! `TestMapClearNoAllocations`) need a counting global allocator, so they live
//! in `src/tests/memory.rs`. Every check asserts results, never timings.
mod common;

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{no_hang, size, DropLedger, Rng, Tracked};
use readmostly::classic::ClassicSyncMap;
use readmostly::{LoadOrStore, Stats, SyncMap};

/// How long a check may wait for the reclaimer (shared by every test of the
/// process: crossbeam-epoch's collector is global, and other tests hold guards).
const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The two maps behind one interface.
// ---------------------------------------------------------------------------

/// What a key must be for every check.
trait Key: Hash + Eq + Clone + Debug + Send + Sync + 'static {}
impl<T: Hash + Eq + Clone + Debug + Send + Sync + 'static> Key for T {}

/// What a value must be for every check.
trait Val: Clone + PartialEq + Debug + Send + Sync + 'static {}
impl<T: Clone + PartialEq + Debug + Send + Sync + 'static> Val for T {}

/// Go's `sync.Map` method set (plus the crate's additions), returning owned
/// values so that one check body serves both maps. Each method pins the map for
/// the call, so methods may be called from inside the closures of others (as
/// Go's callbacks call the map they range over).
trait GoMap<K: Key, V: Val>: Send + Sync + Sized + 'static {
    /// Whether the public API has `retain` and `get_or_insert_with`
    /// (`ClassicSyncMap`'s does not).
    const FULL_API: bool;

    fn new() -> Self;
    /// Go's `Load` (`Pinned::get`).
    fn load<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>;
    /// Go's `Store` (the guard-free `insert`, result ignored).
    fn store(&self, key: K, value: V);
    /// Go's `Swap` (`Pinned::insert`): the previous value.
    fn swap(&self, key: K, value: V) -> Option<V>;
    /// Go's `LoadOrStore` (`Pinned::get_or_insert`): `(value now, loaded)`.
    fn load_or_store(&self, key: K, value: V) -> (V, bool);
    /// `Pinned::get_or_insert_with`: `(value now, loaded)`. Full API only.
    fn load_or_store_with(&self, key: K, make: impl FnOnce() -> V) -> (V, bool);
    /// Go's `LoadAndDelete` (`Pinned::remove`).
    fn load_and_delete<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>;
    /// Go's `Delete` (the guard-free `remove`, result ignored).
    fn delete<Q: Hash + Eq + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>;
    /// Go's `CompareAndSwap` (`Pinned::compare_exchange`): `Ok(replaced)`, or
    /// `Err(what was found)`.
    fn compare_and_swap<Q: Hash + Eq + ?Sized>(
        &self,
        key: &Q,
        old: &V,
        new: V,
    ) -> Result<V, Option<V>>
    where
        K: Borrow<Q>;
    /// Go's `CompareAndDelete` (`Pinned::remove_if` with equality): the removed
    /// value.
    fn compare_and_delete<Q: Hash + Eq + ?Sized>(&self, key: &Q, old: &V) -> Option<V>
    where
        K: Borrow<Q>;
    /// `Pinned::remove_if`.
    fn remove_if<Q: Hash + Eq + ?Sized>(
        &self,
        key: &Q,
        remove: impl FnMut(&V) -> bool,
    ) -> Option<V>
    where
        K: Borrow<Q>;
    /// `Pinned::update`: the new value.
    fn update<Q: Hash + Eq + ?Sized>(&self, key: &Q, f: impl FnMut(&V) -> V) -> Option<V>
    where
        K: Borrow<Q>;
    /// `retain`. Full API only.
    fn retain(&self, keep: impl FnMut(&K, &V) -> bool);
    /// Go's `Range`: calls `f` for each entry while holding the iterator (and
    /// its guard), until `f` returns false.
    fn range(&self, f: impl FnMut(&K, &V) -> bool);
    /// Go's `Clear`.
    fn clear(&self);
    fn len(&self) -> usize;
    fn promote(&self);
    fn flush(&self);
    fn stats(&self) -> Stats;
}

fn loaded<V: Clone>(result: LoadOrStore<'_, V>) -> (V, bool) {
    (result.value().clone(), !result.is_stored())
}

/// Implements [`GoMap`] for one map: the methods both maps spell alike, plus
/// `$range`, the guard's method that lists the live pairs, and the items that
/// differ (`FULL_API` and the full-API-only methods).
macro_rules! go_map_impl {
    ($map:ident, $range:ident, { $($specific:tt)* }) => {
        impl<K: Key, V: Val> GoMap<K, V> for $map<K, V> {
            $($specific)*

            fn new() -> Self {
                $map::new()
            }
            fn load<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
            where
                K: Borrow<Q>,
            {
                self.pin().get(key).cloned()
            }
            fn store(&self, key: K, value: V) {
                $map::insert(self, key, value);
            }
            fn swap(&self, key: K, value: V) -> Option<V> {
                self.pin().insert(key, value).cloned()
            }
            fn load_or_store(&self, key: K, value: V) -> (V, bool) {
                loaded(self.pin().get_or_insert(key, value))
            }
            fn load_and_delete<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
            where
                K: Borrow<Q>,
            {
                self.pin().remove(key).cloned()
            }
            fn delete<Q: Hash + Eq + ?Sized>(&self, key: &Q)
            where
                K: Borrow<Q>,
            {
                $map::remove(self, key);
            }
            fn compare_and_swap<Q: Hash + Eq + ?Sized>(
                &self,
                key: &Q,
                old: &V,
                new: V,
            ) -> Result<V, Option<V>>
            where
                K: Borrow<Q>,
            {
                let pinned = self.pin();
                match pinned.compare_exchange(key, old, new) {
                    Ok(replaced) => Ok(replaced.clone()),
                    Err(err) => Err(err.current.cloned()),
                }
            }
            fn compare_and_delete<Q: Hash + Eq + ?Sized>(&self, key: &Q, old: &V) -> Option<V>
            where
                K: Borrow<Q>,
            {
                self.pin().remove_if(key, |v| v == old).cloned()
            }
            fn remove_if<Q: Hash + Eq + ?Sized>(
                &self,
                key: &Q,
                remove: impl FnMut(&V) -> bool,
            ) -> Option<V>
            where
                K: Borrow<Q>,
            {
                self.pin().remove_if(key, remove).cloned()
            }
            fn update<Q: Hash + Eq + ?Sized>(&self, key: &Q, f: impl FnMut(&V) -> V) -> Option<V>
            where
                K: Borrow<Q>,
            {
                self.pin().update(key, f).cloned()
            }
            fn range(&self, mut f: impl FnMut(&K, &V) -> bool) {
                let pinned = self.pin();
                for (k, v) in pinned.$range() {
                    if !f(k, v) {
                        break;
                    }
                }
            }
            fn clear(&self) {
                $map::clear(self);
            }
            fn len(&self) -> usize {
                $map::len(self)
            }
            fn promote(&self) {
                $map::promote(self);
            }
            fn flush(&self) {
                $map::flush(self);
            }
            fn stats(&self) -> Stats {
                $map::stats(self)
            }
        }
    };
}

go_map_impl!(SyncMap, iter, {
    const FULL_API: bool = true;

    fn load_or_store_with(&self, key: K, make: impl FnOnce() -> V) -> (V, bool) {
        loaded(self.pin().get_or_insert_with(key, make))
    }
    fn retain(&self, keep: impl FnMut(&K, &V) -> bool) {
        self.pin().retain(keep);
    }
});

go_map_impl!(ClassicSyncMap, entries, {
    const FULL_API: bool = false;

    fn load_or_store_with(&self, _: K, _: impl FnOnce() -> V) -> (V, bool) {
        unreachable!("ClassicSyncMap has no public get_or_insert_with")
    }
    fn retain(&self, _: impl FnMut(&K, &V) -> bool) {
        unreachable!("ClassicSyncMap has no public retain")
    }
});

/// What one Range yields, as a map; panics if a key is yielded twice.
fn contents<K: Key, V: Val, M: GoMap<K, V>>(map: &M) -> HashMap<K, V> {
    let mut seen = HashMap::new();
    map.range(|k, v| {
        let again = seen.insert(k.clone(), v.clone());
        assert!(again.is_none(), "Range yielded key {k:?} twice");
        true
    });
    seen
}

/// Instantiates each generic check for both maps: `sync_map::<check>` and
/// `classic::<check>`, each carrying the check's doc comment.
macro_rules! go_tests {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        mod sync_map {
            type Map<K, V> = readmostly::SyncMap<K, V>;
            $( $(#[$doc])* #[test] fn $name() { super::$name::<Map<_, _>>(); } )*
        }
        mod classic {
            type Map<K, V> = readmostly::classic::ClassicSyncMap<K, V>;
            $( $(#[$doc])* #[test] fn $name() { super::$name::<Map<_, _>>(); } )*
        }
    };
}

go_tests! {
    /// Ports Go's TestMapMatchesRWMutex / TestMapMatchesDeepCopy.
    matches_hashmap_model,
    /// Ports Go's TestConcurrentRange.
    concurrent_range,
    /// Ports Go's TestIssue40999.
    removed_keys_are_dropped,
    /// Ports Go's TestMapRangeNestedCall.
    range_nested_call,
    /// Ports Go's TestMapRangeNestedCall, for the closures of update, remove_if, get_or_insert_with and retain.
    nested_calls_in_closures,
    /// Ports Go's TestCompareAndSwap_NonExistingKey.
    compare_and_swap_non_existing_key,
    /// Ports Go's TestConcurrentClear.
    concurrent_clear,
    /// Ports Go's TestMapClear.
    map_clear,
    /// Ports Go's TestMapDelete.
    map_delete,
    /// Ports Go's Swap / LoadAndDelete / LoadOrStore semantics (TestMapMatchesRWMutex's ops).
    swap_load_and_delete_load_or_store,
}

// ---------------------------------------------------------------------------
// TestMapMatchesRWMutex / TestMapMatchesDeepCopy
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Load,
    Store,
    LoadOrStore,
    LoadOrStoreWith,
    LoadAndDelete,
    Delete,
    Swap,
    CompareAndSwap,
    CompareAndDelete,
    Update,
    RemoveIf,
    Retain,
    Range,
    Clear,
    Promote,
}

impl Op {
    /// Each operation with its weight in the random mix.
    const MIX: [(Op, u64); 15] = [
        (Op::Load, 10),
        (Op::Store, 10),
        (Op::LoadOrStore, 8),
        (Op::LoadOrStoreWith, 6),
        (Op::LoadAndDelete, 6),
        (Op::Delete, 6),
        (Op::Swap, 8),
        (Op::CompareAndSwap, 8),
        (Op::CompareAndDelete, 6),
        (Op::Update, 6),
        (Op::RemoveIf, 4),
        (Op::Retain, 1),
        (Op::Range, 2),
        (Op::Clear, 1),
        (Op::Promote, 2),
    ];

    fn full_api_only(self) -> bool {
        matches!(self, Op::LoadOrStoreWith | Op::Retain)
    }
}

/// Go's quick.CheckEqual of sync.Map against a mutex-guarded map: a seeded
/// random sequence of every operation (promotions included) applied to the map
/// and to a `HashMap` model; what each call returns and `len` are compared after
/// every call, the Range contents now and then and at the end.
fn matches_hashmap_model<M: GoMap<u64, u64>>() {
    const KEYS: u64 = 24;
    const VALUES: u64 = 6;
    let mix: Vec<(Op, u64)> = Op::MIX
        .into_iter()
        .filter(|(op, _)| M::FULL_API || !op.full_api_only())
        .collect();
    let total: u64 = mix.iter().map(|(_, w)| w).sum();
    for seed in 0..size(32, 2) {
        let map = M::new();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut rng = Rng::new(0x6f5f_4d61_7000 + seed);
        for step in 0..size(800, 80) {
            let mut pick = rng.below(total);
            let op = mix
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .expect("a weighted pick")
                .0;
            let k = rng.below(KEYS);
            let v = rng.below(VALUES);
            // Half the time, the expected value of a compare is the current one.
            let expected = match model.get(&k) {
                Some(&current) if rng.one_in(2) => current,
                _ => rng.below(VALUES),
            };
            let at = format!("seed {seed} step {step}: {op:?} k={k} v={v} expected={expected}");
            match op {
                Op::Load => assert_eq!(map.load(&k), model.get(&k).copied(), "{at}"),
                Op::Store => {
                    map.store(k, v);
                    model.insert(k, v);
                }
                Op::LoadOrStore => {
                    let want = match model.get(&k) {
                        Some(&current) => (current, true),
                        None => {
                            model.insert(k, v);
                            (v, false)
                        }
                    };
                    assert_eq!(map.load_or_store(k, v), want, "{at}");
                }
                Op::LoadOrStoreWith => {
                    let mut called = false;
                    let got = map.load_or_store_with(k, || {
                        called = true;
                        v
                    });
                    let want = match model.get(&k) {
                        Some(&current) => (current, true),
                        None => {
                            model.insert(k, v);
                            (v, false)
                        }
                    };
                    assert_eq!(got, want, "{at}");
                    assert_eq!(called, !want.1, "{at}: the value is made iff absent");
                }
                Op::LoadAndDelete => {
                    assert_eq!(map.load_and_delete(&k), model.remove(&k), "{at}")
                }
                Op::Delete => {
                    map.delete(&k);
                    model.remove(&k);
                }
                Op::Swap => assert_eq!(map.swap(k, v), model.insert(k, v), "{at}"),
                Op::CompareAndSwap => {
                    let want = match model.get(&k).copied() {
                        Some(current) if current == expected => {
                            model.insert(k, v);
                            Ok(current)
                        }
                        current => Err(current),
                    };
                    assert_eq!(map.compare_and_swap(&k, &expected, v), want, "{at}");
                }
                Op::CompareAndDelete => {
                    let want = match model.get(&k).copied() {
                        Some(current) if current == expected => model.remove(&k),
                        _ => None,
                    };
                    assert_eq!(map.compare_and_delete(&k, &expected), want, "{at}");
                    // Go's op also loads the key after a successful delete.
                    assert_eq!(map.load(&k), model.get(&k).copied(), "{at}: load after");
                }
                Op::Update => {
                    let f = |x: &u64| (x * 5 + 1) % VALUES;
                    let want = model.get_mut(&k).map(|x| {
                        *x = f(x);
                        *x
                    });
                    assert_eq!(map.update(&k, f), want, "{at}");
                }
                Op::RemoveIf => {
                    let odd = |x: &u64| x % 2 == 1;
                    let want = match model.get(&k) {
                        Some(x) if odd(x) => model.remove(&k),
                        _ => None,
                    };
                    assert_eq!(map.remove_if(&k, odd), want, "{at}");
                }
                Op::Retain => {
                    let keep = |k: &u64, v: &u64| !(k + v).is_multiple_of(3);
                    map.retain(keep);
                    model.retain(|k, v| keep(k, v));
                }
                Op::Range => assert_eq!(contents(&map), model, "{at}"),
                Op::Clear => {
                    map.clear();
                    model.clear();
                }
                Op::Promote => map.promote(),
            }
            assert_eq!(map.len(), model.len(), "{at}: len");
        }
        assert_eq!(contents(&map), model, "seed {seed}: final Range");
        for k in 0..KEYS {
            assert_eq!(
                map.load(&k),
                model.get(&k).copied(),
                "seed {seed}: final load"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// TestConcurrentRange
// ---------------------------------------------------------------------------

/// Sets a flag when dropped, so worker threads stop even if the main thread's
/// checks panic (a scope would otherwise wait for them forever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Keys 1..=MAP_SIZE always present; writers overwrite key `n` only with
/// multiples of `n`; every concurrent Range must see each key exactly once, with
/// a multiple of it (crate docs, "Consistency": a key present for the whole
/// iteration is yielded once, with a value it had during the iteration).
fn concurrent_range<M: GoMap<u64, u64>>() {
    no_hang(|| {
        let map_size = size(1 << 10, 64);
        let writers = size(4, 2);
        let iterations = size(64, 2);
        let map = M::new();
        for n in 1..=map_size {
            map.store(n, n);
        }
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            let _stop = StopOnDrop(&stop);
            for g in 1..=writers {
                let (map, stop) = (&map, &stop);
                s.spawn(move || {
                    let mut rng = Rng::new(g);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Acquire) {
                        for n in 1..map_size {
                            if rng.one_in(map_size) {
                                map.store(n, n * i * g);
                            } else {
                                let v = map.load(&n).expect("keys are never removed");
                                assert_eq!(v % n, 0, "writer {g} loaded {v} for key {n}");
                            }
                        }
                        i += 1;
                    }
                });
            }
            for iteration in 0..iterations {
                let mut seen = HashSet::new();
                map.range(|&k, &v| {
                    assert_eq!(
                        v % k,
                        0,
                        "iteration {iteration}: while storing multiples of {k}, Range saw {v}"
                    );
                    assert!(
                        seen.insert(k),
                        "iteration {iteration}: key {k} visited twice"
                    );
                    true
                });
                assert_eq!(
                    seen.len() as u64,
                    map_size,
                    "iteration {iteration}: Range visited {} of {map_size} keys",
                    seen.len()
                );
            }
        });
        assert_eq!(map.len() as u64, map_size);
    });
}

// ---------------------------------------------------------------------------
// TestIssue40999
// ---------------------------------------------------------------------------

/// Go's sync.Map leaked deleted keys (issue 40999); the test stores and deletes a
/// fresh key until one of them is finalized.
///
/// What the crate promises: a remove unlinks the key from the map by itself —
/// `SyncMap` compacts once removed keys reach half of the map's keys (crate docs,
/// "When `SyncMap` promotes", rule 3: "memory of removed keys comes back by
/// itself"); `ClassicSyncMap` takes a key found only in its dirty table out of it
/// at once, and compacts its read table likewise (`docs/design.md`, classic §2) —
/// and retires it to the reclaimer, which frees it once no guard can reach it;
/// `flush()` frees everything retired before the call once no guard that was
/// live during it remains. When the reclaimer gets to it without a flush is not
/// promised as a number, so without a flush this checks Go's condition (some
/// removed key is dropped); after flushing, that *every* removed key and value
/// was dropped, exactly once — which proves the map unlinked all of them by
/// itself, since `flush` only frees what was already retired (it never promotes).
/// Other tests of this process hold guards meanwhile (crossbeam-epoch's collector
/// is global), so the flush is repeated until that holds, with a timeout.
fn removed_keys_are_dropped<M: GoMap<Tracked<u64>, Tracked<u64>>>() {
    let keys = DropLedger::new();
    let values = DropLedger::new();
    let map = M::new();
    // Go's bias entry (it keeps the map non-empty, so the deletes alone do not
    // empty it).
    map.store(keys.track(0), values.track(0));
    let mut removed: Vec<usize> = Vec::new();
    let mut next = 1u64;
    let mut round = |map: &M, removed: &mut Vec<usize>| {
        let key = keys.track(next);
        removed.push(key.id());
        map.store(key, values.track(next));
        map.delete(&next);
        assert_eq!(map.load(&next), None);
        next += 1;
    };

    // Go's loop: store and delete fresh keys, without any promote or flush,
    // until one of the deleted keys has been dropped.
    let rounds = size(10_000, 100);
    for _ in 0..rounds {
        round(&map, &mut removed);
    }
    let start = Instant::now();
    while !removed.iter().any(|&id| keys.is_dropped(id)) {
        assert!(
            start.elapsed() < TIMEOUT,
            "no removed key dropped after {} rounds: {:?}",
            removed.len(),
            map.stats()
        );
        for _ in 0..64 {
            round(&map, &mut removed);
        }
    }
    assert_eq!(map.len(), 1, "only the bias entry is left");

    // Every removed key and value goes, exactly once: after flushing, only the
    // bias entry (one key, one value) is alive.
    let start = Instant::now();
    while keys.alive() > 1 || values.alive() > 1 {
        map.flush();
        assert!(
            start.elapsed() < TIMEOUT,
            "after {} removes and flushing for {TIMEOUT:?}: {} keys and {} values \
             alive, expected 1 each; {:?}",
            removed.len(),
            keys.alive(),
            values.alive(),
            map.stats()
        );
        thread::yield_now();
    }
    keys.assert_alive(1);
    values.assert_alive(1);
    assert!(removed.iter().all(|&id| keys.is_dropped(id)));
    assert_eq!(map.load(&0).map(|v| v.payload), Some(0));
}

// ---------------------------------------------------------------------------
// TestMapRangeNestedCall
// ---------------------------------------------------------------------------

/// Go's issue 46399: a Range callback calls the map it ranges over — nested
/// Range, Load, LoadOrStore, Store, LoadAndDelete, Delete — without deadlock,
/// and with the results of a map no other thread touches.
fn range_nested_call<M: GoMap<u64, String>>() {
    no_hang(|| {
        let map = M::new();
        for (i, v) in ["hello", "world", "Go"].into_iter().enumerate() {
            map.store(i as u64, v.to_string());
        }
        let mut visited = Vec::new();
        map.range(|&key, value| {
            let mut inner = 0;
            map.range(|k, v| {
                // The key offered by Range loads with the offered value: no
                // concurrent delete involved.
                assert_eq!(map.load(k).as_ref(), Some(v), "nested Load of {k}");
                assert_eq!(
                    map.load_or_store(*k, "other".to_string()),
                    (v.clone(), true),
                    "nested LoadOrStore of a present key loads"
                );
                // 42 was never kept in the map: LoadOrStore stores it.
                assert_eq!(
                    map.load_or_store(42, "dummy".to_string()),
                    ("dummy".to_string(), false),
                    "nested LoadOrStore of 42 must store"
                );
                map.store(42, "sync.Map".to_string());
                assert_eq!(
                    map.load_and_delete(&42),
                    Some("sync.Map".to_string()),
                    "nested LoadAndDelete of 42"
                );
                inner += 1;
                true
            });
            // The keys not yet removed by the outer Range were present for the
            // whole inner one: each was yielded once (42 never was: it is
            // absent whenever the inner iterator advances).
            assert_eq!(inner, 3 - visited.len(), "inner Range at outer key {key}");
            // Remove the key on the fly.
            assert_eq!(map.load_and_delete(&key).as_ref(), Some(value));
            visited.push(key);
            true
        });
        visited.sort_unstable();
        assert_eq!(visited, [0, 1, 2], "the outer Range visited every key");
        // After a Range of deletes every key is gone, and a further Range
        // yields nothing.
        assert_eq!(map.len(), 0);
        assert!(contents(&map).is_empty());
        assert_eq!(map.load(&42), None);
    });
}

/// The closures of `update`, `remove_if`, `get_or_insert_with` and `retain` run
/// without the map's lock (`SyncMap` docs, "Locks and user code"; classic docs,
/// the same for `update` and `remove_if`), so they may read and write other
/// keys of the same map. Each write inside a closure is idempotent: a closure
/// may run again if its write raced a promotion.
fn nested_calls_in_closures<M: GoMap<u64, u64>>() {
    no_hang(|| {
        let map = M::new();
        for k in 0..8 {
            map.store(k, k * 10);
        }

        // update: reads another key, adds a new one, overwrites another.
        let updated = map.update(&1, |v| {
            let two = map.load(&2).expect("key 2 present");
            map.store(100, 1000);
            map.store(3, 31);
            assert_eq!(map.update(&4, |_| 41), Some(41));
            v + two
        });
        assert_eq!(updated, Some(30));
        assert_eq!(
            [1, 3, 4, 100].map(|k| map.load(&k)),
            [Some(30), Some(31), Some(41), Some(1000)]
        );

        // remove_if: the predicate removes another key and adds a new one.
        let removed = map.remove_if(&5, |v| {
            map.delete(&6);
            map.store(101, 1010);
            assert_eq!(map.load(&7), Some(70));
            *v == 50
        });
        assert_eq!(removed, Some(50));
        assert_eq!([5, 6, 101].map(|k| map.load(&k)), [None, None, Some(1010)]);

        // A compare-and-delete whose comparison fails leaves the key.
        assert_eq!(map.compare_and_delete(&7, &71), None);
        assert_eq!(map.load(&7), Some(70));

        if M::FULL_API {
            // get_or_insert_with: the value is made by code that uses the map.
            let got = map.load_or_store_with(200, || {
                map.store(201, 2010);
                map.load(&0).expect("key 0 present") + 2000
            });
            assert_eq!(got, (2000, false));
            assert_eq!(map.load(&201), Some(2010));

            // retain: the predicate reads and writes other keys; it keeps the
            // keys it adds (retain may or may not visit them).
            map.retain(|&k, &v| {
                if k < 100 {
                    map.store(k + 300, v);
                    assert!(map.load(&(k + 300)).is_some());
                }
                k >= 100 || k % 2 == 0
            });
            let mut left: Vec<u64> = contents(&map).into_keys().collect();
            left.sort_unstable();
            assert_eq!(
                left,
                [0, 2, 4, 100, 101, 200, 201, 300, 301, 302, 303, 304, 307]
            );
        }

        let want = if M::FULL_API { 13 } else { 8 };
        assert_eq!(map.len(), want);
        assert_eq!(contents(&map).len(), want);
    });
}

// ---------------------------------------------------------------------------
// TestCompareAndSwap_NonExistingKey
// ---------------------------------------------------------------------------

/// A compare-and-swap (or -delete, or update) of an absent key fails and stores
/// nothing (Go issue 51972).
fn compare_and_swap_non_existing_key<M: GoMap<u64, u64>>() {
    let map = M::new();
    // "An absent key never matches" (`compare_exchange` of both maps).
    assert_eq!(map.compare_and_swap(&1, &0, 42), Err(None));
    assert_eq!(map.compare_and_delete(&1, &0), None);
    assert_eq!(map.remove_if(&1, |_| true), None);
    assert_eq!(map.update(&1, |_| 42), None);
    assert_eq!(map.load(&1), None);
    assert_eq!(map.len(), 0);
    assert!(contents(&map).is_empty());

    // Also after the key existed and was removed (a tombstone, not a slot-less
    // key), and after a promotion dropped it.
    map.store(1, 0);
    map.delete(&1);
    for promoted in [false, true] {
        if promoted {
            map.promote();
        }
        assert_eq!(map.compare_and_swap(&1, &0, 42), Err(None), "{promoted}");
        assert_eq!(map.compare_and_delete(&1, &0), None, "{promoted}");
        assert_eq!(map.update(&1, |_| 42), None, "{promoted}");
        assert_eq!((map.load(&1), map.len()), (None, 0), "{promoted}");
        assert!(contents(&map).is_empty(), "{promoted}");
    }
}

// ---------------------------------------------------------------------------
// TestConcurrentClear, TestMapClear, TestMapDelete
// ---------------------------------------------------------------------------

/// Storers, loaders and clearers at once (Go: ten of each); then a Clear leaves
/// the map empty — `len` 0 and a Range that yields nothing — and the map still
/// works.
fn concurrent_clear<M: GoMap<u64, u64>>() {
    no_hang(|| {
        let threads = size(4, 2);
        let ops = size(300, 5);
        let map = M::new();
        thread::scope(|s| {
            for t in 0..threads {
                let map = &map;
                s.spawn(move || {
                    for i in 0..ops {
                        let k = (t + i) % 10;
                        map.store(k, k * 10);
                    }
                });
                s.spawn(move || {
                    for i in 0..ops {
                        let k = (t + i) % 10;
                        if let Some(v) = map.load(&k) {
                            assert_eq!(v, k * 10, "loaded a value never stored for {k}");
                        }
                    }
                });
                s.spawn(move || {
                    for _ in 0..ops / 10 + 1 {
                        map.clear();
                    }
                });
            }
        });
        map.clear();
        assert_eq!(map.len(), 0);
        map.range(|k, v| panic!("after Clear, Range yielded ({k}, {v}); want no calls"));
        assert!((0..10).all(|k| map.load(&k).is_none()));
        map.store(7, 70);
        assert_eq!((map.load(&7), map.len()), (Some(70), 1));
        assert_eq!(contents(&map), HashMap::from([(7, 70)]));
    });
}

/// Store, Load, Clear, Load (absent), Store again after the Clear.
fn map_clear<M: GoMap<String, u64>>() {
    let map = M::new();
    let key = "go".to_string();
    map.store(key.clone(), 121);
    assert_eq!(map.load("go"), Some(121));
    map.clear();
    assert_eq!((map.load("go"), map.len()), (None, 0));
    map.store(key, 121);
    assert_eq!((map.load("go"), map.len()), (Some(121), 1));
}

/// Store, Load, Delete, Load (absent).
fn map_delete<M: GoMap<String, u64>>() {
    let map = M::new();
    map.store("go".to_string(), 122);
    assert_eq!(map.load("go"), Some(122));
    map.delete("go");
    assert_eq!((map.load("go"), map.len()), (None, 0));
    // Delete of an absent key is a no-op.
    map.delete("go");
    assert_eq!(map.len(), 0);
}

// ---------------------------------------------------------------------------
// Swap / LoadAndDelete / LoadOrStore
// ---------------------------------------------------------------------------

/// Swap returns the previous value (none if absent); LoadAndDelete returns the
/// value once, then nothing; LoadOrStore stores once, then loads the stored
/// value — on a key added since the last promotion and on a promoted one.
fn swap_load_and_delete_load_or_store<M: GoMap<u64, String>>() {
    let s = |v: &str| v.to_string();
    let map = M::new();
    for promoted in [false, true] {
        let at = |what: &str| format!("{what} (promoted first: {promoted})");
        if promoted {
            map.store(1, s("seed"));
            map.promote();
            map.delete(&1);
        }
        assert_eq!(map.swap(1, s("a")), None, "{}", at("Swap on absent"));
        assert_eq!(
            map.swap(1, s("b")),
            Some(s("a")),
            "{}",
            at("Swap on present")
        );
        assert_eq!(map.load(&1), Some(s("b")), "{}", at("Load after Swap"));
        if promoted {
            map.promote();
            assert_eq!(
                map.swap(1, s("c")),
                Some(s("b")),
                "{}",
                at("Swap after promote")
            );
            map.store(1, s("b"));
        }

        assert_eq!(
            map.load_and_delete(&1),
            Some(s("b")),
            "{}",
            at("LoadAndDelete")
        );
        assert_eq!(
            map.load_and_delete(&1),
            None,
            "{}",
            at("LoadAndDelete again")
        );
        assert_eq!(
            (map.load(&1), map.len()),
            (None, 0),
            "{}",
            at("after delete")
        );

        assert_eq!(
            map.load_or_store(2, s("x")),
            (s("x"), false),
            "{}",
            at("LoadOrStore stores")
        );
        assert_eq!(
            map.load_or_store(2, s("y")),
            (s("x"), true),
            "{}",
            at("LoadOrStore loads")
        );
        if promoted {
            map.promote();
            assert_eq!(
                map.load_or_store(2, s("z")),
                (s("x"), true),
                "{}",
                at("after promote")
            );
        }
        assert_eq!(
            map.load(&2),
            Some(s("x")),
            "{}",
            at("LoadOrStore kept the first")
        );
        assert_eq!(
            map.load_and_delete(&2),
            Some(s("x")),
            "{}",
            at("LoadAndDelete of 2")
        );
        assert_eq!(
            map.load_or_store(2, s("w")),
            (s("w"), false),
            "{}",
            at("re-store")
        );
        assert_eq!(
            map.swap(2, s("v")),
            Some(s("w")),
            "{}",
            at("Swap after re-store")
        );
        map.delete(&2);
        assert_eq!(map.len(), 0, "{}", at("len"));
    }
}
