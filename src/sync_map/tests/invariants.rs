//! The invariants of `docs/design.md` as they apply to the v2 protocol: the
//! root's structure (§A.5, 1 and 2), values retired once and never freed under a
//! guard (§3 invariant 2, §A.5 invariant 6), inserts visible to every later get
//! (§3 invariant 3), and a key removed and re-inserted racing promotions never
//! lost (§3 invariant 4, which v2 keeps as §A.5 invariant 3). Test names follow
//! the numbering of §3, which the classic protocol's tests share.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Barrier};
use std::thread;

use super::super::entry::LoadOrStoreRaw;
use super::super::value::Owned;
use super::Place;
use crate::reclaim::Reclaim;
use crate::test_support::{flush_until_quiet, Counted, DropLog, Rng, Slot};
use crate::SyncMap;

// ---------------------------------------------------------------------------
// Invariants 1 and 2: the current root holds no expunged entry, and a key has at
// most one entry in it (across read and delta).
// ---------------------------------------------------------------------------

#[test]
fn invariant_1_no_expunged_entry_in_the_current_root() {
    let map: SyncMap<u32, u32> = (0..8).map(|i| (i, i)).collect();
    map.check_root();
    assert_eq!(map.remove(&2), Some(2));
    assert_eq!(map.remove(&5), Some(5));
    assert_eq!(map.slot_of(&2), Some(Place::Read(Slot::Deleted)));
    map.check_root();

    // A new key goes to the delta; the read table's tombstones stay as they are.
    assert_eq!(map.insert(100, 100), None);
    assert_eq!(map.slot_of(&100), Some(Place::Delta(Slot::Live)));
    assert_eq!(map.slot_of(&2), Some(Place::Read(Slot::Deleted)));
    map.check_root();

    // Operations that do not insert leave a tombstone a tombstone: absent.
    {
        let pinned = map.pin();
        assert_eq!(pinned.get(&2), None);
        assert_eq!(pinned.update(&2, |v| v + 1), None);
        assert!(pinned.compare_exchange(&2, &2, 3).is_err());
        assert_eq!(pinned.remove_if(&2, |_| true), None);
        assert_eq!(pinned.remove(&2), None);
    }
    assert_eq!(map.slot_of(&2), Some(Place::Read(Slot::Deleted)));

    // A promotion expunges the tombstones in the root it retires (seen here
    // through a guard held on it) and leaves them out of the new one.
    let guard = map.read_side.reclaim.pin();
    let old_entry = map.lookup(&guard, map.hash(&2), &2).expect("a tombstone");
    map.promote();
    assert_eq!(Slot::of(old_entry), Slot::Expunged);
    assert_eq!((map.slot_of(&2), map.slot_of(&5)), (None, None));
    assert_eq!(map.slot_of(&100), Some(Place::Read(Slot::Live)));
    map.check_root();

    // Re-inserting appends a new entry to the delta; the expunged one stays in
    // the retired root, expunged.
    assert_eq!(map.insert(2, 20), None);
    assert_eq!(map.slot_of(&2), Some(Place::Delta(Slot::Live)));
    assert_eq!(Slot::of(old_entry), Slot::Expunged);
    assert!(map.pin().get_or_insert(5, 50).is_stored());
    assert_eq!(map.slot_of(&5), Some(Place::Delta(Slot::Live)));
    drop(guard);
    map.check_root();

    // A remove deletes in place, in the read table or the delta.
    assert_eq!(map.remove(&0), Some(0));
    assert_eq!(map.remove(&5), Some(50));
    assert_eq!(map.slot_of(&0), Some(Place::Read(Slot::Deleted)));
    assert_eq!(map.slot_of(&5), Some(Place::Delta(Slot::Deleted)));
    map.check_root();
    map.promote();
    assert_eq!((map.slot_of(&0), map.slot_of(&5)), (None, None));
    assert_eq!(map.get_cloned(&2), Some(20));
    assert_eq!(map.len(), 7); // 1, 2, 3, 4, 6, 7, 100
    assert_eq!(map.root_sizes(), (7, 0));
    map.check_root();
}

/// Threads run random operations in rounds; between rounds, with every writer
/// parked on a barrier, the root's invariants are checked.
#[test]
fn root_invariants_hold_at_quiescence_under_concurrent_churn() {
    const THREADS: u64 = 3;
    const ROUNDS: usize = 25;
    const OPS: usize = 400;
    const KEYS: u64 = 48;
    let map: SyncMap<u64, u64> = SyncMap::new();
    let barrier = Barrier::new(THREADS as usize + 1);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (map, barrier) = (&map, &barrier);
            s.spawn(move || {
                let mut rng = Rng::new(t + 1);
                for _ in 0..ROUNDS {
                    for _ in 0..OPS {
                        let k = rng.below(KEYS);
                        let v = rng.below(4);
                        let pinned = map.pin();
                        match rng.below(100) {
                            0..=29 => {
                                pinned.insert(k, v);
                            }
                            30..=49 => {
                                pinned.remove(&k);
                            }
                            50..=69 => {
                                pinned.get(&k);
                            }
                            70..=77 => {
                                pinned.get_or_insert(k, v);
                            }
                            78..=84 => {
                                pinned.update(&k, |x| x + 1);
                            }
                            85..=90 => {
                                pinned.remove_if(&k, |x| *x == v);
                            }
                            91..=95 => {
                                let _ = pinned.compare_exchange(&k, &v, v + 1);
                            }
                            96..=97 => map.promote(),
                            98 => {
                                pinned.iter().count();
                            }
                            _ => {
                                if rng.below(10) == 0 {
                                    pinned.clear();
                                } else {
                                    // A burst of new keys, then their removal.
                                    let base = 1_000 + 100 * t;
                                    for i in 0..8 {
                                        pinned.insert(base + i, i);
                                    }
                                    for i in 0..8 {
                                        pinned.remove(&(base + i));
                                    }
                                }
                            }
                        }
                    }
                    barrier.wait();
                    barrier.wait();
                }
            });
        }
        for _ in 0..ROUNDS {
            barrier.wait();
            map.check_root();
            barrier.wait();
        }
    });
    map.check_root();
}

// ---------------------------------------------------------------------------
// Invariant 2: a value is retired exactly once, and never freed while a guard
// that could see it lives.
// ---------------------------------------------------------------------------

#[test]
fn invariant_2_value_retired_once_and_not_freed_while_guarded() {
    let log = DropLog::new();
    let map: SyncMap<u32, Counted<u32>> = SyncMap::new();
    map.pin().insert(1, log.make(10));
    map.pin().insert(2, log.make(20));
    map.promote();

    let pinned = map.pin();
    let one = pinned.get(&1).unwrap();
    let two = pinned.get(&2).unwrap();
    let (one_id, two_id) = (one.id, two.id);

    // Another thread overwrites one, removes the other and flushes hard.
    thread::scope(|s| {
        s.spawn(|| {
            let p = map.pin();
            assert_eq!(p.insert(1, log.make(11)).map(|v| v.payload), Some(10));
            assert_eq!(p.remove(&2).map(|v| v.payload), Some(20));
            drop(p);
            for _ in 0..50 {
                map.flush();
            }
        });
    });
    // And so does this thread, while still holding the guard.
    for _ in 0..50 {
        map.flush();
    }
    assert_eq!(
        (one.payload, two.payload),
        (10, 20),
        "readable while guarded"
    );
    assert!(!log.is_dropped(one_id) && !log.is_dropped(two_id));
    let stats = map.stats();
    assert_eq!(stats.values_retired, 2);
    assert!(stats.pending >= 2, "retired values are pending: {stats:?}");
    assert_eq!(pinned.get(&1).map(|v| v.payload), Some(11));
    assert_eq!(pinned.get(&2), None);

    drop(pinned);
    flush_until_quiet(&map);
    log.flush_until_dropped(&[one_id, two_id]);
    assert_eq!(map.stats().values_retired, 2, "retired once each");
    assert_eq!(log.double_drops(), 0);
    assert_eq!(map.get_cloned(&1).map(|v| v.payload), Some(11));
    drop(map);
    log.flush_until_all_dropped();
}

/// A key's first value lives inside its entry. Retired, it must keep the entry
/// (its storage) alive until it is dropped, even after the entry has left every
/// table and the tables were retired and freed (under Miri, a use after free here
/// is reported as undefined behaviour).
#[test]
fn invariant_2_inline_first_value_outlives_its_entry_leaving_the_tables() {
    let log = DropLog::new();
    let map: SyncMap<String, Counted<String>> = SyncMap::new();
    map.pin()
        .insert("k".to_string(), log.make("first".to_string()));
    map.pin()
        .insert("gone".to_string(), log.make("doomed".to_string()));
    map.promote();

    let pinned = map.pin();
    let first = pinned.get("k").unwrap();
    let doomed = pinned.get("gone").unwrap();
    let ids = [first.id, doomed.id];
    thread::scope(|s| {
        s.spawn(|| {
            let p = map.pin();
            // Overwrite (the first value retired, its entry kept) and remove (the
            // first value retired, then the entry expunged and dropped from the
            // table by the promotion); then flush past the retired root.
            assert_eq!(
                p.insert("k".to_string(), log.make("second".to_string()))
                    .map(|v| v.payload.as_str()),
                Some("first")
            );
            assert_eq!(p.remove("gone").map(|v| v.payload.as_str()), Some("doomed"));
            drop(p);
            map.promote();
            for _ in 0..50 {
                map.flush();
            }
        });
    });
    assert_eq!(
        (first.payload.as_str(), doomed.payload.as_str()),
        ("first", "doomed")
    );
    assert!(
        ids.iter().all(|&id| !log.is_dropped(id)),
        "dropped while guarded"
    );
    let stats = map.stats();
    assert_eq!(stats.values_retired, 2);
    assert_eq!(
        stats.entries_retired, 0,
        "v2 retires entries with their root"
    );
    drop(pinned);
    flush_until_quiet(&map);
    log.flush_until_dropped(&ids);
    assert_eq!(log.double_drops(), 0);
    assert_eq!(map.stats().pending, 0);
    // The overwritten entry still serves its boxed second value.
    assert_eq!(
        map.get_cloned("k").map(|v| v.payload.clone()),
        Some("second".to_string())
    );
    assert_eq!(map.get_cloned("gone"), None);
    drop(map);
    log.flush_until_all_dropped();
    assert_eq!(log.double_drops(), 0);
}

/// The guard that keeps the value alive is on another thread than the writer.
#[test]
fn invariant_2_guard_on_another_thread_keeps_value_alive() {
    let log = DropLog::new();
    let map: SyncMap<u32, Counted<String>> = SyncMap::new();
    map.pin().insert(7, log.make("seven".to_string()));
    let (held_tx, held_rx) = mpsc::channel();
    let (check_tx, check_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        let (map_ref, log_ref) = (&map, &log);
        let reader = s.spawn(move || {
            let (map, log) = (map_ref, log_ref);
            let pinned = map.pin();
            let value = pinned.get(&7).unwrap();
            held_tx.send(value.id).unwrap();
            check_rx.recv().unwrap();
            // The writer removed and flushed meanwhile.
            assert_eq!(value.payload, "seven");
            assert!(!log.is_dropped(value.id));
            assert_eq!(pinned.get(&7), None);
        });
        let id = held_rx.recv().unwrap();
        assert_eq!(
            map.pin().remove(&7).map(|v| v.payload.clone()),
            Some("seven".into())
        );
        for _ in 0..50 {
            map.flush();
        }
        assert!(
            !log.is_dropped(id),
            "freed while a guard on another thread holds it"
        );
        check_tx.send(()).unwrap();
        reader.join().unwrap();
        flush_until_quiet(&map);
        log.flush_until_dropped(&[id]);
    });
    assert_eq!(map.stats().values_retired, 1);
    drop(map);
    log.flush_until_all_dropped();
}

/// Every operation that unlinks a value retires it exactly once; values that
/// never entered the map are handed back or dropped by the caller, not retired.
#[test]
fn invariant_2_every_unlinking_operation_retires_once() {
    let log = DropLog::new();
    let map: SyncMap<u32, Counted<u32>> = SyncMap::new();
    let pinned = map.pin();
    for i in 0..10 {
        pinned.insert(i, log.make(i));
    }
    let mut retired = 0;
    let mut check = |pinned: &crate::Pinned<'_, u32, Counted<u32>, _, _>, expected: u64| {
        retired += expected;
        assert_eq!(pinned.map().stats().values_retired, retired);
    };
    // Overwrite, update, compare_exchange, remove, remove_if, retain: one each.
    assert_eq!(pinned.insert(0, log.make(100)).map(|v| v.payload), Some(0));
    check(&pinned, 1);
    assert_eq!(
        pinned
            .update(&1, |v| log.make(v.payload + 100))
            .map(|v| v.payload),
        Some(101)
    );
    check(&pinned, 1);
    assert_eq!(
        pinned
            .compare_exchange(&2, &log.make(2), log.make(102))
            .map(|v| v.payload),
        Ok(2)
    );
    check(&pinned, 1);
    assert_eq!(pinned.remove(&3).map(|v| v.payload), Some(3));
    check(&pinned, 1);
    assert_eq!(pinned.remove_if(&4, |_| true).map(|v| v.payload), Some(4));
    check(&pinned, 1);
    pinned.retain(|k, _| *k != 5);
    check(&pinned, 1);
    // Nothing unlinked: a failed compare_exchange hands `new` back, get_or_insert
    // of a present key drops its argument, removes of absent keys find nothing.
    let err = pinned
        .compare_exchange(&6, &log.make(999), log.make(106))
        .unwrap_err();
    assert_eq!(err.current.map(|v| v.payload), Some(6));
    assert_eq!(err.new.payload, 106);
    drop(err);
    assert!(!pinned.get_or_insert(6, log.make(206)).is_stored());
    assert_eq!(pinned.remove(&3), None);
    assert_eq!(pinned.remove_if(&7, |_| false), None);
    assert_eq!(pinned.update(&3, |v| log.make(v.payload)), None);
    check(&pinned, 0);
    // clear retires every live value: 10 keys, 3 removed.
    assert_eq!(map.len(), 7);
    pinned.clear();
    check(&pinned, 7);
    drop(pinned);
    flush_until_quiet(&map);
    // Every value made is dropped (the map itself holds none after `clear`).
    log.flush_until_all_dropped();
    assert_eq!(map.stats().values_retired, 13);
    drop(map);
    log.flush_until_all_dropped();
}

/// Values still in the map are dropped by the map's drop, exactly once, and the
/// ones retired earlier by the reclaimer.
#[test]
fn invariant_2_map_drop_frees_live_values_once() {
    let log = DropLog::new();
    let map: SyncMap<Counted<u32>, Counted<u32>> = SyncMap::new();
    for i in 0..100 {
        map.pin().insert(log.make(i), log.make(i));
    }
    map.promote();
    for i in 0..30 {
        map.pin().remove(&log.make(i));
    }
    for i in 100..120 {
        map.pin().insert(log.make(i), log.make(i)); // new keys, in the delta
    }
    for i in 50..60 {
        map.pin().insert(log.make(i), log.make(i + 1000)); // overwrites
    }
    assert_eq!(map.len(), 90);
    map.check_root();
    drop(map);
    log.flush_until_all_dropped();
}

// ---------------------------------------------------------------------------
// Invariant 3: after `insert(k, v)` returns, every later `get(k)` on any thread
// sees `v` or a newer value.
// ---------------------------------------------------------------------------

#[test]
fn invariant_3_insert_visible_to_every_thread() {
    const NEW_KEYS: u64 = 2_000;
    const HOT: u64 = u64::MAX;
    let map: SyncMap<u64, u64> = SyncMap::new();
    map.insert(HOT, 0);
    map.promote();
    // Keys 0..published have been inserted; HOT holds at least hot_published.
    let published = AtomicU64::new(0);
    let hot_published = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        for t in 0..2 {
            let (map, published, hot_published, done) = (&map, &published, &hot_published, &done);
            s.spawn(move || {
                let mut rng = Rng::new(100 + t);
                let mut last_hot = 0;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let n = published.load(Ordering::Acquire);
                    if n > 0 {
                        let newest = n - 1;
                        assert_eq!(map.get_cloned(&newest), Some(newest), "newest key");
                        let any = rng.below(n);
                        assert_eq!(map.pin().get(&any), Some(&any), "key {any}");
                    }
                    let h = hot_published.load(Ordering::Acquire);
                    let seen = map.get_cloned(&HOT).expect("HOT is never removed");
                    assert!(seen >= h, "saw {seen} after {h} was published");
                    assert!(seen >= last_hot, "HOT went back from {last_hot} to {seen}");
                    last_hot = seen;
                    if finished {
                        break;
                    }
                }
            });
        }
        for i in 0..NEW_KEYS {
            assert_eq!(map.insert(i, i), None);
            published.store(i + 1, Ordering::Release);
            assert_eq!(map.insert(HOT, i + 1), Some(i));
            hot_published.store(i + 1, Ordering::Release);
            if i % 500 == 499 {
                map.promote();
            }
        }
        done.store(true, Ordering::Release);
    });
    for i in 0..NEW_KEYS {
        assert_eq!(map.get_cloned(&i), Some(i));
    }
    assert_eq!(map.get_cloned(&HOT), Some(NEW_KEYS));
    map.check_root();
}

// ---------------------------------------------------------------------------
// Invariant 4: a key removed and re-inserted concurrently with promotions is
// never lost — in v2 (§A.5 invariant 3), a revival racing an expunge. A lock-free
// insert into a tombstone CASes deleted → value, a promotion CASes deleted →
// expunged: one wins. The value: the promotion keeps the entry. The expunge: the
// insert sees *expunged*, takes the lock and appends a new entry to the new root.
// ---------------------------------------------------------------------------

#[test]
fn invariant_4_remove_reinsert_racing_promotions_never_lost() {
    const CHURNERS: u64 = 2;
    const OWNED: u64 = 32; // keys per churner
    const OPS: usize = 30_000;
    let map: SyncMap<u64, u64> = (0..CHURNERS * OWNED).map(|k| (k, 0)).collect();
    let done = AtomicBool::new(false);
    let (models, fresh) = thread::scope(|s| {
        // Churners: each owns keys k ≡ t (mod CHURNERS), so it knows what each of
        // them must hold; any lost key fails its next remove or insert.
        let churners: Vec<_> = (0..CHURNERS)
            .map(|t| {
                let map = &map;
                s.spawn(move || {
                    let mut rng = Rng::new(t + 1);
                    let mut model: HashMap<u64, Option<u64>> =
                        (0..OWNED).map(|i| (t + CHURNERS * i, Some(0))).collect();
                    for version in 1..=OPS as u64 {
                        let k = t + CHURNERS * rng.below(OWNED);
                        let expected = model[&k];
                        let now = match expected {
                            Some(v) => {
                                let removed = match rng.below(3) {
                                    0 => map.remove(&k),
                                    1 => map.pin().remove_if(&k, |x| *x == v).copied(),
                                    _ => {
                                        let p = map.pin();
                                        assert_eq!(
                                            p.compare_exchange(&k, &v, version).copied(),
                                            Ok(v),
                                            "key {k} changed under its only writer"
                                        );
                                        p.remove(&k).copied().map(|_| v)
                                    }
                                };
                                assert_eq!(removed, Some(v), "key {k} was lost");
                                None
                            }
                            None => {
                                if rng.below(2) == 0 {
                                    assert_eq!(map.insert(k, version), None, "key {k} revived");
                                } else {
                                    assert!(
                                        map.pin().get_or_insert(k, version).is_stored(),
                                        "key {k} revived"
                                    );
                                }
                                Some(version)
                            }
                        };
                        model.insert(k, now);
                        if rng.below(4) == 0 {
                            assert_eq!(map.get_cloned(&k), now, "key {k}");
                        }
                    }
                    model
                })
            })
            .collect();
        // New keys, delta reads of them and removes of older ones: promotions
        // because the delta reached half of the read table, because sampled
        // delta reads reached its size, and compactions (tombstones reached half
        // of the root); each expunges the churners' tombstones.
        let fresh = {
            let (map, done) = (&map, &done);
            s.spawn(move || {
                let mut window = VecDeque::new();
                let mut next = 1_000_000u64;
                while !done.load(Ordering::Acquire) {
                    assert_eq!(map.insert(next, next), None);
                    window.push_back(next);
                    assert_eq!(map.get_cloned(&next), Some(next));
                    assert_eq!(map.get_cloned(&(u64::MAX - next)), None);
                    if window.len() > 8 {
                        let old = window.pop_front().unwrap();
                        assert_eq!(map.remove(&old), Some(old));
                    }
                    next += 1;
                }
                window
            })
        };
        // Explicit promotions, and iterations racing them.
        {
            let (map, done) = (&map, &done);
            s.spawn(move || {
                let mut i = 0u64;
                while !done.load(Ordering::Acquire) {
                    if i.is_multiple_of(4) {
                        map.pin().iter().count();
                    } else {
                        map.promote();
                    }
                    i += 1;
                    thread::yield_now();
                }
            });
        }
        let models: Vec<_> = churners.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, Ordering::Release);
        (models, fresh.join().unwrap())
    });
    map.check_root();
    let mut live = fresh.len();
    for model in &models {
        for (k, v) in model {
            assert_eq!(map.get_cloned(k), *v, "key {k} at quiescence");
            live += usize::from(v.is_some());
        }
    }
    for k in &fresh {
        assert_eq!(map.get_cloned(k), Some(*k));
    }
    assert_eq!(map.len(), live);
    let stats = map.stats();
    assert!(
        stats.promotions > 0 && stats.tombstones_purged > 0,
        "{stats:?}"
    );
}

/// The race of invariant 4 replayed step by step, both ways: a writer holding a
/// tombstone's entry revives it before the promotion's expunge (kept), or after
/// it (its CAS fails, and the insert goes through the lock into the new root).
#[test]
fn invariant_4_revival_racing_an_expunge_is_never_lost() {
    let map: SyncMap<u32, u32> = (0..4).map(|i| (i, i)).collect();
    // The value wins: revived in place, then promoted.
    assert_eq!(map.remove(&1), Some(1));
    assert_eq!(map.insert(1, 11), None);
    map.promote();
    assert_eq!(map.slot_of(&1), Some(Place::Read(Slot::Live)));
    assert_eq!(map.get_cloned(&1), Some(11));

    // The expunge wins: a writer found the tombstone, then a promotion ran.
    assert_eq!(map.remove(&1), Some(11));
    let guard = map.read_side.reclaim.pin();
    let entry = map.lookup(&guard, map.hash(&1), &1).expect("a tombstone");
    map.promote();
    assert_eq!(map.slot_of(&1), None);
    // Every lock-free transition refuses to leave *expunged*: the insert's CAS,
    // get_or_insert's CAS and the update/remove loop (which finds the key absent).
    assert!(
        entry.try_swap(Owned::new(12)).is_err(),
        "revived an expunged entry"
    );
    let mut candidate = None;
    let found = entry.try_load_or_store(&mut candidate, &mut || Owned::new(12));
    assert!(matches!(found, LoadOrStoreRaw::Expunged));
    // SAFETY: `guard` is held for the call.
    let replaced = unsafe { entry.replace_live(|_| Some(core::ptr::null_mut())) };
    assert!(replaced.is_err());
    // So the writer retakes the lock, and the key lands in the new root.
    assert_eq!(map.insert(1, 12), None);
    assert_eq!(map.slot_of(&1), Some(Place::Delta(Slot::Live)));
    assert_eq!(
        Slot::of(entry),
        Slot::Expunged,
        "the old entry stays expunged"
    );
    drop(guard);
    map.promote();
    assert_eq!(map.get_cloned(&1), Some(12));
    // Again, with get_or_insert as the reviver.
    assert_eq!(map.remove(&1), Some(12));
    map.promote();
    assert!(map.pin().get_or_insert_with(1, || 13).is_stored());
    map.promote();
    assert_eq!(map.get_cloned(&1), Some(13));
    assert_eq!(map.len(), 4);
    map.check_root();
}

/// Tables and entries are values too: keys borrowed from a read table that is
/// then replaced (promotion, compaction, clear) stay alive while the guard lives.
#[test]
fn invariant_2_tables_and_keys_not_freed_while_guarded() {
    let log = DropLog::new();
    let map: SyncMap<Counted<u32>, u32> = SyncMap::new();
    for i in 0..100 {
        map.insert(log.make(i), i);
    }
    map.promote();
    let pinned = map.pin();
    let mut iter = pinned.iter();
    let held: Vec<&Counted<u32>> = iter.by_ref().take(50).map(|(k, _)| k).collect();
    thread::scope(|s| {
        s.spawn(|| {
            for i in 100..120 {
                map.insert(log.make(i), i);
            }
            map.promote();
            for i in 0..100 {
                map.remove(&log.make(i)); // compacts
            }
            map.clear();
            for _ in 0..50 {
                map.flush();
            }
        });
    });
    for _ in 0..50 {
        map.flush();
    }
    assert!(map.stats().compactions >= 1);
    assert!(map.is_empty());
    // The old table is still walkable (every value is gone now) and the keys
    // borrowed from it are intact.
    assert_eq!(iter.count(), 0);
    for key in &held {
        assert!(
            !log.is_dropped(key.id),
            "key {} freed under a guard",
            key.payload
        );
        assert!(key.payload < 100);
    }
    let ids: Vec<usize> = held.iter().map(|k| k.id).collect();
    drop(pinned);
    flush_until_quiet(&map);
    log.flush_until_dropped(&ids);
    drop(map);
    log.flush_until_all_dropped();
}

/// `clear` racing with lock-free and locked writers: at every quiescent point
/// the invariants hold and `len()` is exact (the count of live entries, and of
/// what iteration yields).
#[test]
fn clear_racing_with_writers_keeps_len_exact() {
    const WRITERS: u64 = 2;
    const ROUNDS: usize = 20;
    const OPS: usize = 300;
    let map: SyncMap<u64, u64> = SyncMap::new();
    let barrier = Barrier::new(WRITERS as usize + 2);
    thread::scope(|s| {
        for t in 0..WRITERS {
            let (map, barrier) = (&map, &barrier);
            s.spawn(move || {
                let mut rng = Rng::new(7 + t);
                for _ in 0..ROUNDS {
                    for _ in 0..OPS {
                        let k = rng.below(32);
                        let pinned = map.pin();
                        match rng.below(5) {
                            0 => {
                                pinned.insert(k, k);
                            }
                            1 => {
                                pinned.remove(&k);
                            }
                            2 => {
                                pinned.get_or_insert(k, k);
                            }
                            3 => {
                                pinned.update(&k, |v| v + 1);
                            }
                            _ => {
                                pinned.insert(1_000 + rng.below(1_000), 0);
                            }
                        }
                    }
                    barrier.wait();
                    barrier.wait();
                }
            });
        }
        {
            let (map, barrier) = (&map, &barrier);
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    for i in 0..10 {
                        if i % 2 == 0 {
                            map.clear();
                        } else {
                            map.pin().clear();
                        }
                        thread::yield_now();
                    }
                    barrier.wait();
                    barrier.wait();
                }
            });
        }
        for _ in 0..ROUNDS {
            barrier.wait();
            map.check_root();
            assert_eq!(map.pin().iter().count(), map.len());
            barrier.wait();
        }
    });
}

/// `Stats::pending` is "retired objects not freed yet", and tests (and tools)
/// wait for it to reach 0 before checking that destructors ran, so an object must
/// count as pending until its destructor has finished (`garbage.rs` records the
/// free after dropping the object). Here the destructor blocks on another thread
/// until released, and `pending` must read 1 meanwhile.
#[test]
fn stats_pending_counts_an_object_until_its_destructor_has_run() {
    use std::time::{Duration, Instant};
    static ENTERED: AtomicBool = AtomicBool::new(false);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    struct Blocker;
    impl Drop for Blocker {
        fn drop(&mut self) {
            ENTERED.store(true, Ordering::SeqCst);
            let start = Instant::now();
            while !RELEASE.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
                thread::yield_now();
            }
        }
    }
    // Keys without a Blocker too, so that the remove below (1 tombstone of 4
    // entries) retires the Blocker alone and promotes nothing.
    let map: SyncMap<u32, Option<Blocker>> = SyncMap::new();
    map.pin().insert(1, Some(Blocker));
    for k in 2..=4 {
        map.pin().insert(k, None);
    }
    map.promote();
    flush_until_quiet(&map);
    thread::scope(|s| {
        s.spawn(|| {
            map.pin().remove(&1); // retires the Blocker on this thread
            while !ENTERED.load(Ordering::SeqCst) {
                map.flush(); // its destructor runs (and blocks) in here
            }
        });
        while !ENTERED.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        // The destructor has started and not finished: the value is not freed.
        let pending = map.stats().pending;
        RELEASE.store(true, Ordering::SeqCst);
        assert_eq!(
            pending, 1,
            "pending reached 0 while a destructor was still running"
        );
    });
}
