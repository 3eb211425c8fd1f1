//! Every key and value a `SyncMap` takes is dropped exactly once — after an
//! overwrite, remove, clear, retain, compare-exchange, update, get-or-insert,
//! promotion, compaction and the map's own drop, alone and under concurrency —
//! and never while a `Pinned` that can see it lives.
//!
//! Keys and values are [`Tracked`]: each has an id, and a [`DropLedger`] records
//! every drop (and counts double drops: the map contains panics raised by
//! destructors it runs, so a panic alone could go unnoticed). Keys are looked up
//! by payload (`Tracked<u64>: Borrow<u64>`), so lookups create no tracked values.
//!
//! Retired objects are freed by crossbeam-epoch's global collector, which the
//! tests of this file share: [`quiet`] flushes until the map reports nothing
//! pending, with a timeout generous enough to wait out another test's guard.
mod common;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{flush_until, flush_until_quiet, DropLedger, Rng, Tracked};
use readmostly::{LoadOrStore, SyncMap};

type Map = SyncMap<Tracked<u64>, Tracked<u64>>;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Flushes until `map` has no retired object left to free.
fn quiet(map: &Map) {
    flush_until_quiet(map, TIMEOUT);
}

/// Flushes until `map` has nothing pending and exactly `alive` tracked values
/// are left, and checks that nothing was dropped twice.
///
/// Waiting on the ledger as well as on `pending == 0` keeps these tests exact
/// even if the map's accounting were to count a free before the destructor
/// finished (it once did: `stats_count_a_value_as_freed_only_after_its_drop_ran`
/// guards that); a value never dropped still fails, by timeout.
#[track_caller]
fn settle(map: &Map, ledger: &DropLedger, alive: usize) {
    quiet(map);
    flush_until(
        || ledger.alive() <= alive,
        TIMEOUT,
        &format!("{} values alive, expected {alive}", ledger.alive()),
    );
    ledger.assert_alive(alive);
}

/// Asserts the reclamation ledger adds up: nothing pending, every retired object
/// freed once.
#[track_caller]
fn assert_stats_consistent(map: &Map) {
    let stats = map.stats();
    assert_eq!((stats.pending, stats.pending_bytes), (0, 0), "{stats:?}");
    assert_eq!(
        stats.freed,
        stats.values_retired + stats.entries_retired + stats.tables_retired,
        "{stats:?}"
    );
}

/// Inserts `keys` with values `key * 10`, through `insert` of `Pinned`.
fn fill(map: &Map, ledger: &DropLedger, keys: impl IntoIterator<Item = u64>) {
    let pinned = map.pin();
    for k in keys {
        assert!(pinned
            .insert(ledger.track(k), ledger.track(k * 10))
            .is_none());
    }
}

/// The id of `key`'s current value.
fn value_id(map: &Map, key: u64) -> usize {
    map.pin().get(&key).expect("present").id()
}

#[test]
fn overwrite_drops_the_old_value_once_and_the_duplicate_key_at_once() {
    for promoted in [false, true] {
        let ledger = DropLedger::new();
        let map = Map::new();
        let first_key = ledger.track(1);
        let first_key_id = first_key.id();
        let first_value = ledger.track(10);
        let first_value_id = first_value.id();
        assert!(map.pin().insert(first_key, first_value).is_none());
        if promoted {
            map.promote();
        }
        {
            let pinned = map.pin();
            let duplicate_key = ledger.track(1);
            let duplicate_key_id = duplicate_key.id();
            let old = pinned.insert(duplicate_key, ledger.track(20)).unwrap();
            assert_eq!((old.id(), old.payload), (first_value_id, 10));
            // The map keeps the key it has; the one passed in goes at once.
            assert!(ledger.is_dropped(duplicate_key_id));
            assert_eq!(pinned.get_key_value(&1).unwrap().0.id(), first_key_id);
            // The old value is retired, but this guard can still see it.
            map.flush();
            assert!(!ledger.is_dropped(first_value_id));
            assert_eq!(old.payload, 10);
        }
        settle(&map, &ledger, 2);
        assert!(ledger.is_dropped(first_value_id));
        assert_stats_consistent(&map);
        // The map's own entries are freed at once when it is dropped.
        drop(map);
        ledger.assert_alive(0);
    }
}

#[test]
fn remove_drops_the_value_then_the_key_when_its_entry_goes() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, 0..100);
    map.promote(); // 0..100 in the read table
    fill(&map, &ledger, 100..140); // 100..140 in the delta (below half of read)
    let pinned = map.pin();
    let (read_key, read_value) = pinned.get_key_value(&5).unwrap();
    let (read_key, read_value) = (read_key.id(), read_value.id());
    let (delta_key, delta_value) = pinned.get_key_value(&120).unwrap();
    let (delta_key, delta_value) = (delta_key.id(), delta_value.id());
    assert_eq!(pinned.remove(&5).unwrap().payload, 50);
    assert_eq!(pinned.remove(&120).unwrap().payload, 1200);
    assert!(pinned.remove(&5).is_none() && pinned.remove(&120).is_none());
    drop(pinned);
    settle(&map, &ledger, 2 * 138 + 2);
    assert!(ledger.is_dropped(read_value) && ledger.is_dropped(delta_value));
    // Both entries stay as tombstones, holding their keys, until the next
    // promotion merges the read table and the delta without them.
    assert!(!ledger.is_dropped(delta_key));
    assert!(!ledger.is_dropped(read_key));
    map.promote();
    settle(&map, &ledger, 2 * 138);
    assert!(ledger.is_dropped(read_key) && ledger.is_dropped(delta_key));
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
}

#[test]
fn clear_drops_every_key_and_value_once() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, 0..50);
    map.promote();
    fill(&map, &ledger, 50..100);
    {
        let pinned = map.pin();
        for k in (0..100).step_by(7) {
            pinned.insert(ledger.track(k), ledger.track(k + 1000));
        }
        for k in (0..100).step_by(11) {
            pinned.remove(&k);
        }
        // A removed key of the read table: its tombstone revived in place.
        pinned.insert(ledger.track(0), ledger.track(7));
    }
    map.clear();
    assert!(map.is_empty());
    settle(&map, &ledger, 0);
    // Usable after `clear`, and its drop frees what came after.
    fill(&map, &ledger, 0..10);
    map.clear();
    fill(&map, &ledger, 5..15);
    settle(&map, &ledger, 20);
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
}

#[test]
fn retain_drops_exactly_the_rejected_values() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, 0..200);
    map.promote();
    fill(&map, &ledger, 200..250); // in the delta: retain walks it too
    let rejected: Vec<usize> = (0..250)
        .filter(|k| k % 3 == 0)
        .map(|k| value_id(&map, k))
        .collect();
    let kept: Vec<usize> = (0..250)
        .filter(|k| k % 3 != 0)
        .map(|k| value_id(&map, k))
        .collect();
    let mut visited = 0;
    map.retain(|k, v| {
        visited += 1;
        assert_eq!(v.payload, k.payload * 10);
        k.payload % 3 != 0
    });
    assert_eq!(visited, 250);
    assert_eq!(map.len(), kept.len());
    // Rejected values go now; their keys stay in tombstones until a promotion.
    quiet(&map);
    flush_until(
        || rejected.iter().all(|id| ledger.is_dropped(*id)),
        TIMEOUT,
        "rejected values dropped",
    );
    assert!(kept.iter().all(|id| !ledger.is_dropped(*id)));
    map.promote();
    settle(&map, &ledger, 2 * kept.len());
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
}

#[test]
fn compare_exchange_drops_the_replaced_value_and_hands_back_the_rejected_one() {
    let ledger = DropLedger::new();
    // Expected values are compared by payload; they come from another ledger.
    let probes = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, [1]);
    let old_id = value_id(&map, 1);
    {
        let pinned = map.pin();
        let new = ledger.track(11);
        let new_id = new.id();
        let replaced = pinned.compare_exchange(&1, &probes.track(10), new).unwrap();
        assert_eq!(replaced.id(), old_id);
        assert_eq!(pinned.get(&1).unwrap().id(), new_id);

        // Mismatch: the rejected value is handed back, and dropped once by us.
        let rejected = ledger.track(12);
        let rejected_id = rejected.id();
        let err = pinned
            .compare_exchange(&1, &probes.track(10), rejected)
            .unwrap_err();
        assert_eq!(err.current.map(Tracked::id), Some(new_id));
        assert_eq!(err.new.id(), rejected_id);
        drop(err);
        assert!(ledger.is_dropped(rejected_id));

        // Absent key: likewise.
        let rejected = ledger.track(13);
        let rejected_id = rejected.id();
        let err = pinned
            .compare_exchange(&2, &probes.track(0), rejected)
            .unwrap_err();
        assert!(err.current.is_none());
        assert_eq!(err.new.id(), rejected_id);
        drop(err);
        assert!(ledger.is_dropped(rejected_id));
        // The replaced value lives as long as this guard.
        map.flush();
        assert!(!ledger.is_dropped(old_id));
    }
    settle(&map, &ledger, 2);
    assert!(ledger.is_dropped(old_id));

    // Many threads in compare-exchange retry loops on one key: every losing
    // `new` comes back and is dropped; every replaced value is retired.
    const THREADS: u64 = 4;
    const INCREMENTS: u64 = 500;
    let start = Barrier::new(THREADS as usize);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            let (map, ledger, probes, start) = (&map, &ledger, &probes, &start);
            scope.spawn(move || {
                start.wait();
                for _ in 0..INCREMENTS {
                    let pinned = map.pin();
                    let mut current = probes.track(pinned.get(&1).unwrap().payload);
                    let mut new = ledger.track(current.payload + 1);
                    thread::yield_now();
                    loop {
                        match pinned.compare_exchange(&1, &current, new) {
                            Ok(_) => break,
                            Err(err) => {
                                current = probes.track(err.current.unwrap().payload);
                                new = err.new;
                                new.payload = current.payload + 1;
                            }
                        }
                    }
                }
            });
        }
    });
    assert_eq!(
        map.get_cloned(&1).unwrap().payload,
        11 + THREADS * INCREMENTS
    );
    settle(&map, &ledger, 2);
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
    probes.assert_alive(0);
}

#[test]
fn update_drops_the_replaced_value_and_the_values_of_lost_races() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, [1, 2]);
    map.promote();
    let old_id = value_id(&map, 1);
    {
        let pinned = map.pin();
        let new = pinned.update(&1, |v| ledger.track(v.payload + 1)).unwrap();
        assert_eq!(new.payload, 11);
        assert!(pinned.update(&3, |_| unreachable!("absent")).is_none());
        map.flush();
        assert!(!ledger.is_dropped(old_id));
    }
    settle(&map, &ledger, 4);
    assert!(ledger.is_dropped(old_id));

    // A panicking closure leaves the map as it was and leaks nothing.
    let before = value_id(&map, 2);
    let result = catch_unwind(AssertUnwindSafe(|| {
        map.pin()
            .update(&2, |_| {
                let _made = ledger.track(0);
                panic!("update closure panics");
            })
            .is_some()
    }));
    assert!(result.is_err());
    assert_eq!(value_id(&map, 2), before);
    ledger.assert_alive(4);

    // Racing updates: the closure runs again after each lost CAS, and only the
    // last value it made is stored; the others must be dropped.
    const THREADS: u64 = 4;
    const UPDATES: u64 = 1_000;
    let calls = AtomicU64::new(0);
    let start = Barrier::new(THREADS as usize);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            let (map, ledger, calls, start) = (&map, &ledger, &calls, &start);
            scope.spawn(move || {
                start.wait();
                for _ in 0..UPDATES {
                    let pinned = map.pin();
                    let updated = pinned.update(&1, |v| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        // Give the others a chance to win the CAS meanwhile.
                        thread::yield_now();
                        ledger.track(v.payload + 1)
                    });
                    assert!(updated.is_some());
                }
            });
        }
    });
    let calls = calls.load(Ordering::Relaxed);
    println!("{} updates, {} closure calls", THREADS * UPDATES, calls);
    assert!(calls >= THREADS * UPDATES);
    assert_eq!(value_id(&map, 1), value_id(&map, 1));
    assert_eq!(map.pin().get(&1).unwrap().payload, 11 + THREADS * UPDATES);
    settle(&map, &ledger, 4);
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
}

#[test]
fn get_or_insert_drops_the_unused_candidate_and_key() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, [1]);
    for promoted in [false, true] {
        if promoted {
            map.promote();
        }
        let pinned = map.pin();
        let (key, candidate) = (ledger.track(1), ledger.track(99));
        let (key_id, candidate_id) = (key.id(), candidate.id());
        assert_eq!(
            pinned.get_or_insert(key, candidate).value().payload,
            10,
            "loaded"
        );
        assert!(ledger.is_dropped(key_id) && ledger.is_dropped(candidate_id));
        let key = ledger.track(1);
        let key_id = key.id();
        let got = pinned.get_or_insert_with(key, || unreachable!("present"));
        assert!(matches!(got, LoadOrStore::Loaded(v) if v.payload == 10));
        assert!(ledger.is_dropped(key_id));
    }
    ledger.assert_alive(2);

    // Into a tombstone of the read table: the value is stored, the entry keeps
    // its original key and the one passed in is dropped. (Ten more keys, so that
    // one remove leaves a tombstone instead of compacting a one-key table.)
    fill(&map, &ledger, 2..12);
    map.promote();
    let original_key = map.pin().get_key_value(&1).unwrap().0.id();
    map.remove(&1);
    let key = ledger.track(1);
    let key_id = key.id();
    assert!(map.pin().get_or_insert(key, ledger.track(12)).is_stored());
    assert!(ledger.is_dropped(key_id));
    assert_eq!(map.pin().get_key_value(&1).unwrap().0.id(), original_key);

    // Racing stores of new keys: one value stored per key, the rest dropped.
    const THREADS: usize = 8;
    const KEYS: u64 = 100;
    let start = Barrier::new(THREADS);
    let stored: u64 = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (map, ledger, start) = (&map, &ledger, &start);
                scope.spawn(move || {
                    start.wait();
                    let mut stored = 0;
                    for k in 100..100 + KEYS {
                        let pinned = map.pin();
                        let (value, is_stored) =
                            match pinned.get_or_insert_with(ledger.track(k), || ledger.track(k)) {
                                LoadOrStore::Loaded(value) => (value, false),
                                LoadOrStore::Stored(value) => (value, true),
                            };
                        assert_eq!(value.payload, k);
                        stored += u64::from(is_stored);
                    }
                    stored
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(stored, KEYS);
    settle(&map, &ledger, 2 + 2 * 10 + 2 * KEYS as usize);
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
}

#[test]
fn promotion_and_compaction_drop_each_key_once() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, 0..1000);
    // 1000 new keys: the delta is merged into the read table each time it
    // reaches half of it (at least 64 keys); lookups of the keys still in the
    // delta are sampled toward the next promotion.
    for k in 0..1000 {
        assert_eq!(map.pin().get(&k).unwrap().payload, k * 10);
    }
    assert!(map.stats().promotions >= 1, "{:?}", map.stats());
    // Overwrites retire every value.
    let overwritten: Vec<usize> = (0..1000).map(|k| value_id(&map, k)).collect();
    for k in 0..1000 {
        map.pin().insert(ledger.track(k), ledger.track(k * 10 + 1));
    }
    // Removing 60%: tombstones reach half of the root's entries and it compacts.
    let removed: Vec<(usize, usize)> = (0..600)
        .map(|k| {
            let (key, value) = map
                .pin()
                .get_key_value(&k)
                .map(|(k, v)| (k.id(), v.id()))
                .unwrap();
            (key, value)
        })
        .collect();
    for k in 0..600 {
        assert_eq!(map.pin().remove(&k).unwrap().payload, k * 10 + 1);
    }
    assert!(map.stats().compactions >= 1, "{:?}", map.stats());
    // 400 live keys and values, and the keys of the 100 removes made after the
    // compaction, still in tombstones: the compaction (at 500 tombstones of
    // 1000) freed the entries removed before it, keys included.
    settle(&map, &ledger, 2 * 400 + 100);
    assert!(overwritten.iter().all(|id| ledger.is_dropped(*id)));
    assert!(removed.iter().all(|(_, value)| ledger.is_dropped(*value)));
    assert!(removed[..500]
        .iter()
        .all(|(key, _)| ledger.is_dropped(*key)));
    map.promote();
    settle(&map, &ledger, 2 * 400);
    assert!(removed.iter().all(|(key, _)| ledger.is_dropped(*key)));
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
}

#[test]
fn dropping_a_map_with_garbage_pending_drops_everything_once() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, 0..300);
    map.promote();
    {
        let pinned = map.pin();
        for k in 0..100 {
            pinned.remove(&k); // tombstones
        }
        fill(&map, &ledger, 300..320); // new keys, in the delta
        for k in 0..10 {
            pinned.insert(ledger.track(k), ledger.track(k)); // tombstones revived
        }
        for k in 100..150 {
            pinned.insert(ledger.track(k), ledger.track(k)); // overwritten
        }
    }
    map.promote();
    fill(&map, &ledger, 320..330); // in the delta
    drop(map); // retired tables may still hold entries: not everything goes now
    flush_until(
        || ledger.alive() == 0,
        TIMEOUT,
        "every key and value dropped after the map",
    );
    ledger.assert_alive(0);
}

/// 8 threads of random operations — every operation of the API, promotions,
/// iteration, retain and clear — on 256 shared tracked keys.
fn mixed_workload(map: &Map, ledger: &DropLedger, probes: &DropLedger, seed: u64) {
    const THREADS: usize = 8;
    const OPS: u64 = 6_000;
    const KEYS: u64 = 256;
    let start = Barrier::new(THREADS);
    thread::scope(|scope| {
        for t in 0..THREADS {
            let start = &start;
            scope.spawn(move || {
                let mut rng = Rng::new(seed + t as u64);
                start.wait();
                for _ in 0..OPS {
                    let pinned = map.pin();
                    let k = rng.below(KEYS);
                    let v = rng.below(1000);
                    match rng.below(100) {
                        0..=24 => {
                            pinned.insert(ledger.track(k), ledger.track(v));
                        }
                        25..=29 => {
                            map.insert(ledger.track(k), ledger.track(v));
                        }
                        30..=44 => {
                            pinned.remove(&k);
                        }
                        45..=54 => {
                            pinned.get_or_insert(ledger.track(k), ledger.track(v));
                        }
                        55..=59 => {
                            pinned.get_or_insert_with(ledger.track(k), || ledger.track(v));
                        }
                        60..=69 => {
                            pinned.update(&k, |old| ledger.track(old.payload + 1));
                        }
                        70..=79 => {
                            if let Some(current) = pinned.get(&k) {
                                let current = probes.track(current.payload);
                                // Success or failure: both drop what they must.
                                let _ = pinned.compare_exchange(&k, &current, ledger.track(v));
                            }
                        }
                        80..=84 => {
                            pinned.remove_if(&k, |old| old.payload % 2 == 0);
                        }
                        85..=94 => {
                            let _ = pinned.get(&k);
                            let _ = pinned.get(&(KEYS + k)); // absent: probes read and delta
                        }
                        95..=96 => {
                            drop(pinned);
                            map.promote();
                        }
                        97 => {
                            pinned.retain(|key, _| key.payload % 5 != t as u64 % 5);
                        }
                        98 => {
                            let _ = pinned.iter().count();
                        }
                        _ => {
                            if rng.one_in(8) {
                                drop(pinned);
                                map.clear();
                            }
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn concurrent_mixed_operations_drop_every_key_and_value_exactly_once() {
    let ledger = DropLedger::new();
    let probes = DropLedger::new();
    let map = Map::new();
    mixed_workload(&map, &ledger, &probes, 0xD20B);
    // Drop tombstones, then every alive key and value is in the map.
    map.promote();
    let len = map.len();
    assert_eq!(map.pin().iter().count(), len);
    settle(&map, &ledger, 2 * len);
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
    flush_until(|| probes.alive() == 0, TIMEOUT, "probes dropped");
    probes.assert_alive(0);
}

#[test]
fn concurrent_mixed_operations_then_drop_with_garbage_pending() {
    let ledger = DropLedger::new();
    let probes = DropLedger::new();
    let map = Map::new();
    mixed_workload(&map, &ledger, &probes, 0xD20C);
    // Dropped at once, retired objects still in the collector.
    drop(map);
    flush_until(
        || ledger.alive() == 0 && probes.alive() == 0,
        TIMEOUT,
        "every key and value dropped after the map",
    );
    ledger.assert_alive(0);
    probes.assert_alive(0);
}

static ZST_CREATED: AtomicUsize = AtomicUsize::new(0);
static ZST_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A zero-sized value that counts its drops (only the test below uses it).
#[derive(Debug, PartialEq)]
struct Unit;

impl Unit {
    fn new() -> Self {
        ZST_CREATED.fetch_add(1, Ordering::SeqCst);
        Unit
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        ZST_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Zero-sized values get an allocation each (slots compare addresses): every
/// overwrite, update and compare-exchange retires exactly the value it replaced.
#[test]
fn zero_sized_values_are_dropped_exactly_once() {
    let map: SyncMap<u64, Unit> = SyncMap::new();
    let alive = || ZST_CREATED.load(Ordering::SeqCst) - ZST_DROPPED.load(Ordering::SeqCst);
    {
        let pinned = map.pin();
        for k in 0..100 {
            assert!(pinned.insert(k, Unit::new()).is_none());
        }
    }
    map.promote();
    thread::scope(|scope| {
        for t in 0..4u64 {
            let map = &map;
            scope.spawn(move || {
                let expected = Unit::new();
                for k in 0..100 {
                    let pinned = map.pin();
                    match (k + t) % 4 {
                        0 => assert!(pinned.insert(k, Unit::new()).is_some()),
                        1 => assert!(pinned.update(&k, |_| Unit::new()).is_some()),
                        2 => {
                            // Every `Unit` equals every other: swaps unless absent.
                            if let Err(err) = pinned.compare_exchange(&k, &expected, Unit::new()) {
                                assert!(err.current.is_none());
                            }
                        }
                        _ => {
                            let _ = pinned.get_or_insert(k, Unit::new());
                        }
                    }
                }
            });
        }
    });
    for k in 0..50 {
        assert!(map.pin().remove(&k).is_some());
    }
    flush_until(
        || alive() <= 50,
        TIMEOUT,
        "replaced and removed units dropped",
    );
    assert_eq!(alive(), 50);
    map.clear();
    flush_until(|| alive() == 0, TIMEOUT, "cleared units dropped");
}

#[test]
fn a_value_seen_through_a_live_pinned_is_not_dropped_under_heavy_flushing() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, 0..200);
    map.promote();
    let pinned = map.pin();
    let (key, value) = pinned.get_key_value(&1).unwrap();
    let (key_id, value_id) = (key.id(), value.id());
    let removed = pinned.remove(&2).unwrap();
    let removed_id = removed.id();
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let (map, ledger, stop) = (&map, &ledger, &stop);
        let churn = scope.spawn(move || {
            // Remove key 1 and compact, so that its value *and* its entry (with
            // the key) are retired, then churn and flush as hard as possible.
            assert_eq!(map.remove(&1).unwrap().payload, 10);
            map.promote();
            let scratch: SyncMap<u64, u64> = SyncMap::new();
            for round in 0..1_500u64 {
                let k = 100 + round % 100;
                map.pin().insert(ledger.track(k), ledger.track(round));
                scratch.insert(round % 64, round);
                scratch.remove(&((round + 32) % 64));
                if round % 100 == 0 {
                    scratch.promote();
                }
                map.flush();
                scratch.flush();
            }
            stop.store(true, Ordering::Release);
        });
        while !stop.load(Ordering::Acquire) {
            assert!(!ledger.is_dropped(key_id) && !ledger.is_dropped(value_id));
            assert!(!ledger.is_dropped(removed_id));
            assert_eq!((key.payload, value.payload, removed.payload), (1, 10, 20));
            thread::sleep(Duration::from_millis(1));
        }
        churn.join().unwrap();
    });
    assert!(!map.contains_key(&1) && !map.contains_key(&2));
    assert!(!ledger.is_dropped(key_id) && !ledger.is_dropped(value_id));
    assert!(!ledger.is_dropped(removed_id));
    assert_eq!((key.payload, value.payload, removed.payload), (1, 10, 20));
    assert!(map.stats().pending > 0);
    drop(pinned);
    flush_until(
        || {
            ledger.is_dropped(key_id)
                && ledger.is_dropped(value_id)
                && ledger.is_dropped(removed_id)
        },
        TIMEOUT,
        "retired key and values dropped once the guard is gone",
    );
    map.promote();
    let len = map.len();
    assert!(len > 0);
    settle(&map, &ledger, 2 * len);
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
}

#[test]
fn stats_add_up_after_flushing() {
    let ledger = DropLedger::new();
    let map = Map::new();
    let mut expected = HashMap::new();
    let mut rng = Rng::new(0x57A7);
    for round in 0..2_000u64 {
        let k = rng.below(300);
        match rng.below(10) {
            0..=4 => {
                map.pin().insert(ledger.track(k), ledger.track(round));
                expected.insert(k, round);
            }
            5..=7 => {
                map.pin().remove(&k);
                expected.remove(&k);
            }
            8 => {
                map.pin().update(&k, |v| ledger.track(v.payload + 1));
                if let Some(v) = expected.get_mut(&k) {
                    *v += 1;
                }
            }
            _ => {
                let _ = map.pin().get(&(k + 1000));
                if round % 500 == 0 {
                    map.clear();
                    expected.clear();
                }
            }
        }
    }
    // (Iteration walks the read table, then the delta; it promotes nothing.)
    let contents: HashMap<u64, u64> = map
        .pin()
        .iter()
        .map(|(k, v)| (k.payload, v.payload))
        .collect();
    assert_eq!(contents, expected);
    map.promote(); // drops the tombstones, so only live keys hold tracked values
    settle(&map, &ledger, 2 * expected.len());
    let stats = map.stats();
    assert!(
        stats.values_retired > 0 && stats.tables_retired > 0,
        "{stats:?}"
    );
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
}

/// Where a [`SlowDrop`] is in its destructor.
#[derive(Default)]
struct Gate {
    /// (the destructor started, the test released it)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    /// Waits until `done(state)` holds, or panics after [`TIMEOUT`].
    fn wait_for(&self, done: impl Fn(&(bool, bool)) -> bool, what: &str) {
        let deadline = Instant::now() + TIMEOUT;
        let mut state = self.state.lock().unwrap();
        while !done(&state) {
            assert!(Instant::now() < deadline, "{what}: timed out");
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(10))
                .unwrap()
                .0;
        }
    }

    fn set(&self, update: impl FnOnce(&mut (bool, bool))) {
        update(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }
}

/// A value whose destructor announces that it started, then waits until the test
/// releases it.
struct SlowDrop(Arc<Gate>);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        self.0.set(|state| state.0 = true);
        self.0.wait_for(|state| state.1, "SlowDrop released");
    }
}

/// `Stats::pending` counts retired objects "not freed yet", and
/// `flush_until_quiet` takes `pending == 0` to mean every destructor has run: a
/// value whose destructor is still running (on whichever thread collects) must
/// still count as pending. (Regression: v1 recorded the free before the drop.)
#[test]
fn stats_count_a_value_as_freed_only_after_its_drop_ran() {
    let gate = Arc::new(Gate::default());
    let map: SyncMap<u64, SlowDrop> = SyncMap::new();
    assert!(map.pin().insert(1, SlowDrop(Arc::clone(&gate))).is_none());
    // Nine more keys, so that one remove leaves a tombstone rather than
    // compacting a one-key table (which would retire the old root too).
    for k in 2..=10 {
        assert!(map.pin().insert(k, SlowDrop(Arc::clone(&gate))).is_none());
    }
    // In the read table, with nothing pending: the remove retires the value alone.
    map.promote();
    flush_until(
        || map.stats().pending == 0,
        TIMEOUT,
        "promotion garbage freed",
    );
    let collected = AtomicBool::new(false);
    let pending_during_drop = thread::scope(|scope| {
        let (map, collected) = (&map, &collected);
        scope.spawn(move || {
            assert!(map.pin().remove(&1).is_some());
            // The destructor runs inside one of these flushes (or on another
            // thread that collects), and blocks until released below.
            while !collected.load(Ordering::Acquire) {
                map.flush();
                thread::yield_now();
            }
        });
        gate.wait_for(|state| state.0, "the destructor started");
        let pending = map.stats().pending;
        gate.set(|state| state.1 = true);
        flush_until(|| map.stats().pending == 0, TIMEOUT, "value freed");
        collected.store(true, Ordering::Release);
        pending
    });
    assert_eq!(
        pending_during_drop, 1,
        "stats reported the value freed while its destructor was still running"
    );
}
