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
//! When each goes (SyncMap v3): a value written since the last promotion lives
//! in a cell, and replacing or removing it retires the cell, which the collector
//! frees once no guard can see it; the value a key was inserted or last
//! promoted with lives *inline* in its table, and replacing or removing it
//! retires nothing — it stays, stale, until the table goes with the next
//! promotion (which leaves one clone of each live key and value) or with the
//! map. Dropping the map drops everything at once, retired garbage included.
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

/// [`settle`] after the threads that retired garbage on `map` have exited
/// (a flush reaches what they left, on every backend), then checks that the
/// stats add up.
#[track_caller]
fn settle_after_threads(map: &Map, ledger: &DropLedger, alive: usize) {
    settle(map, ledger, alive);
    assert_stats_consistent(map);
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

/// An overwrite drops the key passed in at once (the map keeps its own). The
/// value it replaces is dropped by whoever owns it: an *inline* value (the one a
/// key was inserted or last promoted with) stays, stale, in its table until the
/// table goes — the next promotion, or the map's drop; a value in a *cell* (one
/// written since) is retired by the overwrite and dropped once no guard can see
/// it.
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
        let (key_id, inline_id) = if promoted {
            map.promote();
            quiet(&map);
            // The promotion cloned the key and value; the originals went with
            // the old table.
            assert!(ledger.is_dropped(first_key_id) && ledger.is_dropped(first_value_id));
            let pinned = map.pin();
            let (key, value) = pinned.get_key_value(&1).unwrap();
            (key.id(), value.id())
        } else {
            (first_key_id, first_value_id)
        };
        let second_id;
        {
            let pinned = map.pin();
            let duplicate_key = ledger.track(1);
            let duplicate_key_id = duplicate_key.id();
            let second = ledger.track(20);
            second_id = second.id();
            let old = pinned.insert(duplicate_key, second).unwrap();
            assert_eq!((old.id(), old.payload), (inline_id, 10));
            // The map keeps the key it has; the one passed in goes at once.
            assert!(ledger.is_dropped(duplicate_key_id));
            assert_eq!(pinned.get_key_value(&1).unwrap().0.id(), key_id);
            // The inline value is not retired: it stays in its table.
            assert_eq!(map.stats().values_retired, 0);
            let third = pinned.insert(ledger.track(1), ledger.track(30)).unwrap();
            // The second value was in a cell: retired, but this guard can still
            // see it.
            assert_eq!((third.id(), third.payload), (second_id, 20));
            assert_eq!(map.stats().values_retired, 1);
            map.flush();
            assert!(!ledger.is_dropped(second_id));
            assert_eq!(third.payload, 20);
        }
        // The key, the stale inline value and the current value (in a cell).
        settle(&map, &ledger, 3);
        assert!(ledger.is_dropped(second_id));
        assert!(
            !ledger.is_dropped(inline_id),
            "an inline value left its table"
        );
        assert_stats_consistent(&map);
        // The next promotion takes the stale value away: a key and a value left.
        map.promote();
        settle(&map, &ledger, 2);
        assert!(ledger.is_dropped(inline_id) && ledger.is_dropped(key_id));
        assert_stats_consistent(&map);
        // The map's own keys and values are freed at once when it is dropped.
        drop(map);
        ledger.assert_alive(0);
    }
}

/// A remove retires the value if it is in a cell; an inline value stays in its
/// table with the key, in the tombstone, until the next promotion merges the
/// read table and the delta without them.
#[test]
fn remove_drops_the_value_then_the_key_when_its_slot_goes() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, 0..100);
    map.promote(); // 0..100 in the read table
    fill(&map, &ledger, 100..140); // 100..140 in the delta (below half of read)
                                   // Key 6's value moves to a cell; its inline value stays, stale.
    map.pin().insert(ledger.track(6), ledger.track(66));
    quiet(&map);
    let pinned = map.pin();
    let ids = |k: u64| {
        let (key, value) = pinned.get_key_value(&k).unwrap();
        (key.id(), value.id())
    };
    let (read_key, read_value) = ids(5);
    let (delta_key, delta_value) = ids(120);
    let (cell_key, cell_value) = ids(6);
    assert_eq!(pinned.remove(&5).unwrap().payload, 50);
    assert_eq!(pinned.remove(&120).unwrap().payload, 1200);
    assert_eq!(pinned.remove(&6).unwrap().payload, 66);
    assert!(pinned.remove(&5).is_none() && pinned.remove(&120).is_none());
    assert_eq!(map.stats().values_retired, 1, "the cell, alone");
    drop(pinned);
    // 140 keys with their inline values, and the cell's value gone.
    settle(&map, &ledger, 2 * 140);
    assert!(ledger.is_dropped(cell_value));
    // The inline values stay in their tables, with the keys, until the next
    // promotion.
    for id in [read_key, read_value, delta_key, delta_value, cell_key] {
        assert!(!ledger.is_dropped(id), "#{id} dropped before the promotion");
    }
    map.promote();
    settle(&map, &ledger, 2 * 137);
    for id in [read_key, read_value, delta_key, delta_value, cell_key] {
        assert!(ledger.is_dropped(id), "#{id} not dropped by the promotion");
    }
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

/// `retain` removes each rejected key with its own compare-and-remove: a
/// rejected value in a cell is retired and dropped at once (after the guard), an
/// inline one stays in its table until the next promotion; kept values stay.
#[test]
fn retain_drops_exactly_the_rejected_values() {
    // `total` keys, the first `promoted` in the read table, the rest in the delta.
    let (promoted, total) = (common::size(200, 60), common::size(250, 75));
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, 0..promoted);
    map.promote();
    // The rest in the delta: retain walks it too.
    fill(&map, &ledger, promoted..total);
    // Keys 0..30 get cells (their inline values stay, stale).
    for k in 0..30 {
        map.pin().insert(ledger.track(k), ledger.track(k * 10));
    }
    quiet(&map);
    let rejected: Vec<(u64, usize)> = (0..total)
        .filter(|k| k % 3 == 0)
        .map(|k| (k, value_id(&map, k)))
        .collect();
    let kept: Vec<usize> = (0..total)
        .filter(|k| k % 3 != 0)
        .map(|k| value_id(&map, k))
        .collect();
    let retired = map.stats().values_retired;
    let mut visited = 0;
    map.retain(|k, v| {
        visited += 1;
        assert_eq!(v.payload, k.payload * 10);
        k.payload % 3 != 0
    });
    assert_eq!(visited, total);
    assert_eq!(map.len(), kept.len());
    // The rejected cells (keys 0, 3, …, 27) are retired and go now; rejected
    // inline values stay in their tables until a promotion.
    assert_eq!(map.stats().values_retired - retired, 10);
    quiet(&map);
    for &(k, id) in &rejected {
        assert_eq!(ledger.is_dropped(id), k < 30, "rejected value of key {k}");
    }
    assert!(kept.iter().all(|id| !ledger.is_dropped(*id)));
    map.promote();
    settle(&map, &ledger, 2 * kept.len());
    assert!(rejected.iter().all(|(_, id)| ledger.is_dropped(*id)));
    for k in 0..total {
        let value = map.get_cloned(&k).map(|v| v.payload);
        assert_eq!(value, (k % 3 != 0).then_some(k * 10), "key {k}");
    }
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
    let inline_id = value_id(&map, 1);
    let old_id;
    {
        let pinned = map.pin();
        // Replacing the inline value retires nothing: it stays in its table.
        let new = ledger.track(11);
        old_id = new.id();
        let replaced = pinned.compare_exchange(&1, &probes.track(10), new).unwrap();
        assert_eq!(replaced.id(), inline_id);
        assert_eq!(map.stats().values_retired, 0);
        // Replacing the value in a cell retires the cell.
        let new = ledger.track(12);
        let new_id = new.id();
        let replaced = pinned.compare_exchange(&1, &probes.track(11), new).unwrap();
        assert_eq!(replaced.id(), old_id);
        assert_eq!(pinned.get(&1).unwrap().id(), new_id);
        assert_eq!(map.stats().values_retired, 1);

        // Mismatch: the rejected value is handed back, and dropped once by us.
        let rejected = ledger.track(13);
        let rejected_id = rejected.id();
        let err = pinned
            .compare_exchange(&1, &probes.track(10), rejected)
            .unwrap_err();
        assert_eq!(err.current.map(Tracked::id), Some(new_id));
        assert_eq!(err.new.id(), rejected_id);
        drop(err);
        assert!(ledger.is_dropped(rejected_id));

        // Absent key: likewise.
        let rejected = ledger.track(14);
        let rejected_id = rejected.id();
        let err = pinned
            .compare_exchange(&2, &probes.track(0), rejected)
            .unwrap_err();
        assert!(err.current.is_none());
        assert_eq!(err.new.id(), rejected_id);
        drop(err);
        assert!(ledger.is_dropped(rejected_id));
        // The replaced cell's value lives as long as this guard.
        map.flush();
        assert!(!ledger.is_dropped(old_id));
    }
    // The key, its stale inline value and the current one.
    settle(&map, &ledger, 3);
    assert!(ledger.is_dropped(old_id));
    assert!(!ledger.is_dropped(inline_id));

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
        12 + THREADS * INCREMENTS
    );
    // A promotion leaves the key and its current value (clones) alone.
    map.promote();
    settle_after_threads(&map, &ledger, 2);
    assert!(ledger.is_dropped(inline_id));
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
    let inline_id = value_id(&map, 1);
    let old_id;
    {
        let pinned = map.pin();
        // The inline value is replaced, not retired: it stays in its table.
        let new = pinned.update(&1, |v| ledger.track(v.payload + 1)).unwrap();
        assert_eq!(new.payload, 11);
        old_id = new.id();
        assert_eq!(map.stats().values_retired, 0);
        // The value in a cell is retired, and lives as long as this guard.
        let new = pinned.update(&1, |v| ledger.track(v.payload + 1)).unwrap();
        assert_eq!(new.payload, 12);
        assert_eq!(map.stats().values_retired, 1);
        assert!(pinned.update(&3, |_| unreachable!("absent")).is_none());
        map.flush();
        assert!(!ledger.is_dropped(old_id));
    }
    // Two keys, two current values, and key 1's stale inline value.
    settle(&map, &ledger, 5);
    assert!(ledger.is_dropped(old_id));
    assert!(!ledger.is_dropped(inline_id));

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
    ledger.assert_alive(5);

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
    assert_eq!(map.pin().get(&1).unwrap().payload, 12 + THREADS * UPDATES);
    // A promotion leaves each key and its current value (clones) alone.
    map.promote();
    settle_after_threads(&map, &ledger, 4);
    assert!(ledger.is_dropped(inline_id));
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
    // The key and value (clones made by the promotion; the originals went with
    // the old table).
    settle(&map, &ledger, 2);

    // Into a tombstone of the read table: the value is stored (in a cell), the
    // slot keeps its key and the one passed in is dropped. (Ten more keys, so
    // that one remove leaves a tombstone instead of compacting a one-key table.)
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
    // Key 1's removed inline value stays in its table until a promotion (the
    // racing new keys may have caused one), which leaves exactly a key and a
    // value per live key.
    map.promote();
    settle_after_threads(&map, &ledger, 2 + 2 * 10 + 2 * KEYS as usize);
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
    // Overwrites move every value to a cell; the inline values they replace
    // stay, stale, in their tables until the next promotion.
    let overwritten: Vec<usize> = (0..1000).map(|k| value_id(&map, k)).collect();
    for k in 0..1000 {
        map.pin().insert(ledger.track(k), ledger.track(k * 10 + 1));
    }
    assert_eq!(map.stats().values_retired, 0);
    quiet(&map);
    assert!(overwritten.iter().all(|id| !ledger.is_dropped(*id)));
    // Removing 60%: tombstones reach half of the root's keys and it compacts.
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
    // The compaction (at 500 removed keys of 1000) cloned the 500 live keys and
    // values into a fresh read table and retired the old root: its stale inline
    // values, the removed keys and the cells still linked went with it (the
    // cells of removed values were retired by their removes). 100 of the clones
    // were removed after it: inline, they stay in their tombstones with their
    // keys until the next promotion.
    settle(&map, &ledger, 2 * 400 + 2 * 100);
    assert!(overwritten.iter().all(|id| ledger.is_dropped(*id)));
    assert!(removed.iter().all(|(_, value)| ledger.is_dropped(*value)));
    assert!(removed.iter().all(|(key, _)| ledger.is_dropped(*key)));
    map.promote();
    settle(&map, &ledger, 2 * 400);
    assert!(removed.iter().all(|(key, _)| ledger.is_dropped(*key)));
    assert_stats_consistent(&map);
    drop(map);
    ledger.assert_alive(0);
}

/// Dropping the map drops every key and value at once: what its tables hold
/// (stale inline values and tombstones included) and everything it retired that
/// the collector has not freed — here nothing was, another thread's pin holds
/// the collector back — and the collector's later calls find nothing to free.
#[test]
fn dropping_a_map_with_garbage_pending_drops_everything_once() {
    let ledger = DropLedger::new();
    with_another_map_pinned(|| {
        let n = common::size(300, 60);
        let map = Map::new();
        fill(&map, &ledger, 0..n);
        map.promote();
        {
            let pinned = map.pin();
            for k in 0..n / 3 {
                pinned.remove(&k); // tombstones
            }
            fill(&map, &ledger, n..n + 20); // new keys, in the delta
            for k in 0..10 {
                pinned.insert(ledger.track(k), ledger.track(k)); // tombstones revived
            }
            for k in n / 3..n / 2 {
                pinned.insert(ledger.track(k), ledger.track(k)); // overwritten
            }
        }
        map.promote();
        fill(&map, &ledger, n + 20..n + 30); // in the delta
        map.flush();
        // Only crossbeam-epoch's collector is global, so that another map's pin
        // holds this one's frees back; seize's is this map's own.
        #[cfg(feature = "crossbeam-epoch")]
        {
            let stats = map.stats();
            assert!(
                stats.pending > 0 && stats.freed == 0,
                "the pin holds back every free: {stats:?}"
            );
        }
        // The map's drop frees its tables and everything it retired, at once.
        drop(map);
        ledger.assert_alive(0);
    });
    // The collector's late calls find nothing left to free.
    flush_hard();
    ledger.assert_alive(0);
}

/// Flushes the collector many times: the late calls for garbage of a dropped map
/// run (and must find nothing left to free).
fn flush_hard() {
    let probe: SyncMap<u8, u8> = SyncMap::new();
    for _ in 0..100 {
        probe.flush();
    }
}

/// Runs `body` while another thread holds a guard pinned on a map of its own,
/// pinned before `body` starts and released after it returns. With the
/// crossbeam-epoch collector that freezes reclamation: nothing retired inside
/// `body` can be freed by any thread's collection, only by its map's drop — so
/// what a drop frees is known to be freed by the drop itself.
fn with_another_map_pinned<T>(body: impl FnOnce() -> T) -> T {
    let other: SyncMap<u8, u8> = SyncMap::new();
    other.insert(0, 0);
    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    thread::scope(|scope| {
        // Owned by this closure, so a panicking `body` drops it on the way out
        // and the other thread's `recv` returns: the scope's join cannot hang.
        let release_tx = release_tx;
        let other = &other;
        scope.spawn(move || {
            let pinned = other.pin();
            assert_eq!(pinned.get(&0), Some(&0));
            pinned_tx.send(()).unwrap();
            let _ = release_rx.recv();
            drop(pinned);
        });
        pinned_rx.recv().expect("the other thread pinned");
        let result = body();
        release_tx.send(()).unwrap();
        result
    })
}

/// The threads of [`mixed_workload`].
const MIXED_THREADS: usize = 8;

/// 8 threads of random operations — every operation of the API, promotions,
/// iteration, retain and clear — on 256 shared tracked keys.
fn mixed_workload(map: &Map, ledger: &DropLedger, probes: &DropLedger, seed: u64) {
    const THREADS: usize = MIXED_THREADS;
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
    settle_after_threads(&map, &ledger, 2 * len);
    drop(map);
    ledger.assert_alive(0);
    flush_until(|| probes.alive() == 0, TIMEOUT, "probes dropped");
    probes.assert_alive(0);
}

#[test]
fn concurrent_mixed_operations_then_drop_with_garbage_pending() {
    let ledger = DropLedger::new();
    let probes = DropLedger::new();
    // With another thread pinned the whole time, the collector frees nothing
    // this map retires: its drop has to free it all, at once.
    with_another_map_pinned(|| {
        let map = Map::new();
        mixed_workload(&map, &ledger, &probes, 0xD20C);
        // Only crossbeam-epoch's collector is global, so that another map's pin
        // holds this one's frees back; seize's is this map's own.
        #[cfg(feature = "crossbeam-epoch")]
        {
            let stats = map.stats();
            assert!(stats.pending > 0 && stats.freed == 0, "{stats:?}");
        }
        drop(map);
        ledger.assert_alive(0);
        // Expected values for compare_exchange are dropped by the caller.
        probes.assert_alive(0);
    });
    flush_hard();
    ledger.assert_alive(0);
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

impl Clone for Unit {
    /// A new counted unit (promotions clone values).
    fn clone(&self) -> Self {
        Unit::new()
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        ZST_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a thread retired and left in its own bag (crossbeam-epoch) or batch
/// (seize) while it stays alive and idle, holding no guard, is freed by a flush
/// on another thread: the map's flush sweeps everything retired before it.
#[test]
fn a_flush_frees_what_an_idle_thread_retired() {
    let ledger = DropLedger::new();
    let map = Map::new();
    fill(&map, &ledger, 0..8);
    map.promote();
    let retired = Barrier::new(2);
    let checked = Barrier::new(2);
    thread::scope(|scope| {
        let (map, ledger, retired, checked) = (&map, &ledger, &retired, &checked);
        scope.spawn(move || {
            // Fewer replaced values than a bag or a batch holds.
            for round in 0..3 {
                for k in 0..8 {
                    let old = map.insert(ledger.track(k), ledger.track(100 * round + k));
                    assert!(old.is_some());
                }
            }
            retired.wait();
            // Alive and idle until the other thread has flushed and checked.
            checked.wait();
        });
        retired.wait();
        // 8 keys and their current values; the replaced values were retired
        // (the first overwrite of each key replaced an inline value, which
        // stays with its table until the next promotion).
        settle(map, ledger, 8 + 8 + 8);
        assert_stats_consistent(map);
        checked.wait();
    });
    drop(map);
    ledger.assert_alive(0);
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
    // A promotion leaves one inline unit per live key; everything else —
    // replaced and removed units, the old table's — goes to the reclaimer.
    map.promote();
    // The four writers retired units and have exited: a flush reaches them.
    flush_until_quiet(&map, TIMEOUT);
    assert_eq!(alive(), 50, "replaced and removed units dropped");
    map.clear();
    flush_until_quiet(&map, TIMEOUT);
    assert_eq!(alive(), 0, "cleared units dropped");
    drop(map);
    assert_eq!(alive(), 0, "left behind by the map's drop");
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
            // Remove key 1 and promote, so that its inline value *and* its key
            // are retired with the old table, then churn and flush as hard as
            // possible.
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
    // The churning thread retired garbage and has exited.
    settle_after_threads(&map, &ledger, 2 * len);
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

/// A value whose destructor, if it has a gate, announces that it started, then
/// waits until the test releases it. Clones (made by promotions) have none.
struct SlowDrop(Option<Arc<Gate>>);

impl Clone for SlowDrop {
    fn clone(&self) -> Self {
        SlowDrop(None)
    }
}

impl Drop for SlowDrop {
    fn drop(&mut self) {
        if let Some(gate) = &self.0 {
            gate.set(|state| state.0 = true);
            gate.wait_for(|state| state.1, "SlowDrop released");
        }
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
    // Ten keys, so that one remove leaves a tombstone rather than compacting a
    // one-key table (which would retire the old root too).
    for k in 1..=10 {
        assert!(map.pin().insert(k, SlowDrop(None)).is_none());
    }
    map.promote();
    flush_until_quiet(&map, TIMEOUT);
    // Key 1's gated value goes to a cell; the remove retires that cell alone.
    assert!(map
        .pin()
        .insert(1, SlowDrop(Some(Arc::clone(&gate))))
        .is_some());
    assert_eq!(
        map.stats().pending,
        0,
        "the inline value stays in its table"
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
        flush_until_quiet(map, TIMEOUT);
        collected.store(true, Ordering::Release);
        pending
    });
    assert_eq!(
        pending_during_drop, 1,
        "stats reported the value freed while its destructor was still running"
    );
}
