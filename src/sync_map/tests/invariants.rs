//! The invariants of `docs/design.md` as they apply to the v3 protocol: the
//! root's structure (each key at most once, no sealed slot in the current root),
//! retired objects freed once and never under a guard — value cells one by one,
//! tables (with their keys and inline values) as a whole — inserts visible to
//! every later get, and no write lost to a promotion (the seal race) or to
//! `clear`. Test names follow the numbering of §3, which the classic protocol's
//! tests share.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Barrier};
use std::thread;

use super::super::slot::Write;
use super::{Link, Place};
use crate::raw::cell::Owned;
use crate::reclaim::Reclaim;
use crate::test_support::{flush_until_quiet, settle, Counted, DropLog, Rng};
use crate::SyncMap;

// ---------------------------------------------------------------------------
// Invariant 1: a key has at most one slot in the current root (across read and
// delta), and no slot of the current root is sealed.
// ---------------------------------------------------------------------------

#[test]
fn invariant_1_each_key_once_and_no_sealed_slot_in_the_current_root() {
    let map: SyncMap<u32, u32> = (0..8).map(|i| (i, i)).collect();
    map.check_root_exact();
    assert_eq!(map.remove(&2), Some(2));
    assert_eq!(map.remove(&5), Some(5));
    assert_eq!(map.slot_of(&2), Some(Place::Read(Link::Removed)));
    map.check_root_exact();

    // A new key goes to the delta; the read table's tombstones stay as they are.
    assert_eq!(map.insert(100, 100), None);
    assert_eq!(map.slot_of(&100), Some(Place::Delta(Link::Inline)));
    assert_eq!(map.slot_of(&2), Some(Place::Read(Link::Removed)));
    map.check_root_exact();

    // Operations that do not insert leave a tombstone a tombstone: absent.
    {
        let pinned = map.pin();
        assert_eq!(pinned.get(&2), None);
        assert_eq!(pinned.update(&2, |v| v + 1), None);
        assert!(pinned.compare_exchange(&2, &2, 3).is_err());
        assert_eq!(pinned.remove_if(&2, |_| true), None);
        assert_eq!(pinned.remove(&2), None);
    }
    assert_eq!(map.slot_of(&2), Some(Place::Read(Link::Removed)));

    // A promotion seals every slot of the root it retires (seen here through a
    // guard held on it) and leaves removed keys out of the new one.
    let guard = map.read_side.reclaim.pin();
    let old_root = map.read_side.root.load(&guard);
    let old_tombstone = old_root.find_read(map.hash(&2), &2).expect("a tombstone");
    let old_live = old_root.find_read(map.hash(&3), &3).expect("a live slot");
    let old_node = old_root
        .delta(&guard)
        .find(map.hash(&100), &100)
        .expect("a delta node")
        .as_slot();
    map.promote();
    assert_eq!(Link::of(old_tombstone), (Link::Removed, true));
    assert_eq!(Link::of(old_live), (Link::Inline, true));
    assert_eq!(Link::of(old_node), (Link::Inline, true));
    assert_eq!((map.slot_of(&2), map.slot_of(&5)), (None, None));
    assert_eq!(map.slot_of(&100), Some(Place::Read(Link::Inline)));
    map.check_root_exact();

    // Re-inserting appends a new node to the delta; the old slot stays sealed in
    // the retired root.
    assert_eq!(map.insert(2, 20), None);
    assert_eq!(map.slot_of(&2), Some(Place::Delta(Link::Inline)));
    assert_eq!(Link::of(old_tombstone), (Link::Removed, true));
    assert!(map.pin().get_or_insert(5, 50).is_stored());
    assert_eq!(map.slot_of(&5), Some(Place::Delta(Link::Inline)));
    drop(guard);
    map.check_root_exact();

    // A remove removes in place, in the read table or the delta.
    assert_eq!(map.remove(&0), Some(0));
    assert_eq!(map.remove(&5), Some(50));
    assert_eq!(map.slot_of(&0), Some(Place::Read(Link::Removed)));
    assert_eq!(map.slot_of(&5), Some(Place::Delta(Link::Removed)));
    map.check_root_exact();
    map.promote();
    assert_eq!((map.slot_of(&0), map.slot_of(&5)), (None, None));
    assert_eq!(map.get_cloned(&2), Some(20));
    assert_eq!(map.len(), 7); // 1, 2, 3, 4, 6, 7, 100
    assert_eq!(map.root_sizes(), (7, 0));
    map.check_root_exact();
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
// Invariant 2: a retired object is freed exactly once, and never while a guard
// that could see it lives. In v3 a replaced or removed *cell* is retired on its
// own; an *inline* value stays in its table, which a promotion or clear retires
// as a whole (keys, inline values and still-linked cells with it).
// ---------------------------------------------------------------------------

#[test]
fn invariant_2_value_retired_once_and_not_freed_while_guarded() {
    let log = DropLog::new();
    let map: SyncMap<u32, Counted<u32>> = SyncMap::new();
    // Keys 1..=4 under test, and 12 more so that removing two compacts nothing.
    for k in (1..=4).chain(100..112) {
        map.pin().insert(k, log.make(k * 10));
    }
    map.promote();
    // Keys 1 and 2 get cells; 3 and 4 stay inline.
    map.pin().insert(1, log.make(11));
    map.pin().insert(2, log.make(21));
    assert_eq!(map.slot_of(&1), Some(Place::Read(Link::Cell)));
    assert_eq!(map.slot_of(&3), Some(Place::Read(Link::Inline)));
    flush_until_quiet(&map);
    let before = map.stats();

    let pinned = map.pin();
    let held: Vec<&Counted<u32>> = (1..=4).map(|k| pinned.get(&k).unwrap()).collect();
    let ids: Vec<usize> = held.iter().map(|v| v.id).collect();

    // Another thread overwrites and removes all four, promotes (retiring the
    // table that holds the inline values) and flushes hard.
    thread::scope(|s| {
        s.spawn(|| {
            let p = map.pin();
            assert_eq!(p.insert(1, log.make(12)).map(|v| v.payload), Some(11));
            assert_eq!(p.remove(&2).map(|v| v.payload), Some(21));
            assert_eq!(p.insert(3, log.make(31)).map(|v| v.payload), Some(30));
            assert_eq!(p.remove(&4).map(|v| v.payload), Some(40));
            drop(p);
            map.promote();
            for _ in 0..50 {
                map.flush();
            }
        });
    });
    // And so does this thread, while still holding the guard.
    for _ in 0..50 {
        map.flush();
    }
    let payloads: Vec<u32> = held.iter().map(|v| v.payload).collect();
    assert_eq!(payloads, [11, 21, 30, 40], "readable while guarded");
    assert!(
        ids.iter().all(|&id| !log.is_dropped(id)),
        "dropped under a guard"
    );
    let stats = map.stats();
    // The two cells, one each; the inline values went with the table.
    assert_eq!(stats.values_retired - before.values_retired, 2, "{stats:?}");
    assert_eq!(stats.tables_retired - before.tables_retired, 1, "{stats:?}");
    assert!(stats.pending >= 3, "retired objects are pending: {stats:?}");
    assert_eq!(pinned.get(&1).map(|v| v.payload), Some(12));
    assert_eq!(pinned.get(&2), None);
    assert_eq!(pinned.get(&3).map(|v| v.payload), Some(31));
    assert_eq!(pinned.get(&4), None);

    drop(pinned);
    flush_until_quiet(&map);
    log.flush_until_dropped(&ids);
    let stats = map.stats();
    assert_eq!(
        stats.values_retired - before.values_retired,
        2,
        "retired once each"
    );
    assert_eq!(
        stats.freed,
        stats.values_retired + stats.tables_retired,
        "{stats:?}"
    );
    assert_eq!(log.double_drops(), 0);
    // Only the promoted clones of 12, 31 and the 12 others are left.
    assert_eq!(log.alive(), 2 + 12);
    drop(map);
    assert_eq!(log.alive(), 0, "the map's drop frees what it holds at once");
    assert_eq!(log.double_drops(), 0);
}

/// A reference to an inline value (and to its key) points into the read table
/// itself. It must stay valid while its guard lives after the key is overwritten
/// and removed and the table is replaced by promotions and freed by the
/// reclaimer (under Miri, a use after free here is reported as undefined
/// behaviour; `.ci/reliability.sh` runs this test under Miri).
#[test]
fn invariant_2_inline_values_outlive_their_table_under_a_guard() {
    let log = DropLog::new();
    let map: SyncMap<String, Counted<String>> = SyncMap::new();
    map.pin()
        .insert("k".to_string(), log.make("first".to_string()));
    map.pin()
        .insert("gone".to_string(), log.make("doomed".to_string()));
    map.promote();

    let pinned = map.pin();
    let (key, first) = pinned.get_key_value("k").unwrap();
    let doomed = pinned.get("gone").unwrap();
    let ids = [first.id, doomed.id];
    thread::scope(|s| {
        s.spawn(|| {
            let p = map.pin();
            // Overwrite (the inline value stays, stale, in its table) and remove;
            // then promote twice, retiring the table and the one after it, and
            // flush past both.
            assert_eq!(
                p.insert("k".to_string(), log.make("second".to_string()))
                    .map(|v| v.payload.as_str()),
                Some("first")
            );
            assert_eq!(p.remove("gone").map(|v| v.payload.as_str()), Some("doomed"));
            drop(p);
            map.promote();
            map.promote();
            for _ in 0..50 {
                map.flush();
            }
        });
    });
    assert_eq!(
        (
            key.as_str(),
            first.payload.as_str(),
            doomed.payload.as_str()
        ),
        ("k", "first", "doomed")
    );
    assert!(
        ids.iter().all(|&id| !log.is_dropped(id)),
        "dropped while guarded"
    );
    let stats = map.stats();
    assert_eq!(
        stats.values_retired, 0,
        "inline values are never retired alone"
    );
    assert!(stats.tables_retired >= 3, "{stats:?}");
    drop(pinned);
    flush_until_quiet(&map);
    log.flush_until_dropped(&ids);
    assert_eq!(log.double_drops(), 0);
    assert_eq!(
        map.get_cloned("k").map(|v| v.payload.clone()),
        Some("second".to_string())
    );
    assert_eq!(map.get_cloned("gone"), None);
    assert_eq!(log.alive(), 1, "one clone of the one live value");
    drop(map);
    assert_eq!(log.alive(), 0);
    assert_eq!(log.double_drops(), 0);
}

/// The guard that keeps the value alive is on another thread than the writer.
#[test]
fn invariant_2_guard_on_another_thread_keeps_value_alive() {
    let log = DropLog::new();
    let map: SyncMap<u32, Counted<String>> = SyncMap::new();
    map.pin().insert(7, log.make("zero".to_string()));
    map.pin().insert(7, log.make("seven".to_string())); // in a cell
    map.pin().insert(8, log.make("eight".to_string())); // inline in the delta
    let (held_tx, held_rx) = mpsc::channel();
    let (check_tx, check_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        let (map_ref, log_ref) = (&map, &log);
        let reader = s.spawn(move || {
            let (map, log) = (map_ref, log_ref);
            let pinned = map.pin();
            let seven = pinned.get(&7).unwrap();
            let eight = pinned.get(&8).unwrap();
            held_tx.send([seven.id, eight.id]).unwrap();
            check_rx.recv().unwrap();
            // The writer removed, promoted and flushed meanwhile.
            assert_eq!(
                (seven.payload.as_str(), eight.payload.as_str()),
                ("seven", "eight")
            );
            assert!(!log.is_dropped(seven.id) && !log.is_dropped(eight.id));
            assert_eq!((pinned.get(&7), pinned.get(&8)), (None, None));
        });
        let ids = held_rx.recv().unwrap();
        let pinned = map.pin();
        assert_eq!(pinned.remove(&7).map(|v| v.payload.as_str()), Some("seven"));
        assert_eq!(pinned.remove(&8).map(|v| v.payload.as_str()), Some("eight"));
        drop(pinned);
        map.promote();
        for _ in 0..50 {
            map.flush();
        }
        assert!(
            ids.iter().all(|&id| !log.is_dropped(id)),
            "freed while a guard on another thread holds it"
        );
        check_tx.send(()).unwrap();
        reader.join().unwrap();
        flush_until_quiet(&map);
        log.flush_until_dropped(&ids);
    });
    assert_eq!(map.stats().values_retired, 1, "the cell of \"seven\"");
    assert_eq!(log.alive(), 0, "every value left with the promoted table");
    drop(map);
    assert_eq!(log.double_drops(), 0);
}

/// Every operation that unlinks a *cell* retires it exactly once; one that
/// replaces or removes an *inline* value retires nothing (the value stays in its
/// table until the table goes); values that never entered the map are handed
/// back or dropped by the caller, not retired.
#[test]
fn invariant_2_every_unlinking_operation_retires_a_cell_once_and_inline_values_never() {
    let log = DropLog::new();
    let map: SyncMap<u32, Counted<u32>> = SyncMap::new();
    for i in 0..40 {
        map.pin().insert(i, log.make(i));
    }
    map.promote();
    // Keys 10..16 overwritten: their values move to cells (retiring nothing).
    for i in 10..16 {
        assert_eq!(map.pin().insert(i, log.make(i)).map(|v| v.payload), Some(i));
    }
    assert_eq!(map.stats().values_retired, 0);
    let pinned = map.pin();
    let mut retired = 0;
    let mut check = |pinned: &crate::Pinned<'_, u32, Counted<u32>, _, _>, expected: u64| {
        retired += expected;
        assert_eq!(pinned.map().stats().values_retired, retired);
    };
    // Overwrite, update, compare_exchange, remove, remove_if, retain: nothing on
    // inline values (keys 0..6), one each on cells (keys 10..16).
    for (base, each) in [(0, 0), (10, 1)] {
        let p = &pinned;
        assert_eq!(p.insert(base, log.make(100)).map(|v| v.payload), Some(base));
        check(p, each);
        let updated = p.update(&(base + 1), |v| log.make(v.payload + 100));
        assert_eq!(updated.map(|v| v.payload), Some(base + 101));
        check(p, each);
        let exchanged = p.compare_exchange(&(base + 2), &log.make(base + 2), log.make(102));
        assert_eq!(exchanged.map(|v| v.payload), Ok(base + 2));
        check(p, each);
        assert_eq!(p.remove(&(base + 3)).map(|v| v.payload), Some(base + 3));
        check(p, each);
        assert_eq!(
            p.remove_if(&(base + 4), |_| true).map(|v| v.payload),
            Some(base + 4)
        );
        check(p, each);
        p.retain(|k, _| *k != base + 5);
        check(p, each);
    }
    // The values written above are all cells now: replacing one retires it.
    assert_eq!(
        pinned.insert(0, log.make(200)).map(|v| v.payload),
        Some(100)
    );
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
    // clear retires the whole root as one table: no value on its own.
    assert_eq!(map.len(), 40 - 6);
    let tables = map.stats().tables_retired;
    pinned.clear();
    check(&pinned, 0);
    assert_eq!(map.stats().tables_retired, tables + 1);
    drop(pinned);
    flush_until_quiet(&map);
    // Every value made is dropped (the map itself holds none after `clear`).
    log.flush_until_all_dropped();
    assert_eq!(map.stats().values_retired, 7);
    drop(map);
    assert_eq!(log.double_drops(), 0);
}

/// Values still in the map are dropped by the map's drop, exactly once: at once,
/// with nothing left for the reclaimer.
#[test]
fn invariant_2_map_drop_frees_live_values_once() {
    let log = DropLog::new();
    let map: SyncMap<Counted<u32>, Counted<u32>> = SyncMap::new();
    for i in 0..100 {
        map.pin().insert(log.make(i), log.make(i));
    }
    map.promote();
    for i in 0..30 {
        map.pin().remove(&log.make(i)); // tombstones in the read table
    }
    for i in 100..120 {
        map.pin().insert(log.make(i), log.make(i)); // new keys, in the delta
    }
    for i in 50..60 {
        map.pin().insert(log.make(i), log.make(i + 1000)); // overwrites: cells
    }
    for i in 100..105 {
        map.pin().remove(&log.make(i)); // tombstones in the delta
    }
    assert_eq!(map.len(), 85);
    map.check_root_exact();
    flush_until_quiet(&map); // the first table, retired by the promotion
    assert!(log.alive() > 0);
    drop(map);
    assert_eq!(log.alive(), 0, "the map's drop left values behind");
    assert_eq!(log.double_drops(), 0);
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
// Invariant 4: no write is lost to a promotion. A promotion seals each slot with
// one CAS before it copies it; a writer's CAS compares against the unsealed link
// it loaded, so either it lands before the seal (and the promotion copies its
// value) or it fails on the seal, waits for the promotion and retries on the
// root that promotion published.
// ---------------------------------------------------------------------------

/// A key removed and re-inserted by its only writer, racing promotions of every
/// kind (explicit, full delta, read budget, compaction): never lost.
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
        // delta reads spent the read budget, and compactions (tombstones reached
        // half of the root); each leaves the churners' tombstones out.
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

/// The seal race replayed step by step, both ways, on a live slot, a removed
/// slot and a delta node: a write that lands before the promotion's seal is
/// copied into the new root; a write that meets the seal changes nothing
/// (`Write::Sealed`, its `decide` not even run) and retries on the new root.
#[test]
fn invariant_4_a_write_that_meets_a_seal_retries_on_the_new_root() {
    let map: SyncMap<u32, u32> = (0..4).map(|i| (i, i)).collect();
    // The write wins: revived and overwritten in place, then promoted.
    assert_eq!(map.remove(&1), Some(1));
    assert_eq!(map.insert(1, 11), None);
    assert_eq!(map.insert(2, 22), Some(2));
    map.promote();
    assert_eq!(map.slot_of(&1), Some(Place::Read(Link::Inline)));
    assert_eq!(
        (map.get_cloned(&1), map.get_cloned(&2)),
        (Some(11), Some(22))
    );

    // The seal wins: writers found their slots, then a promotion sealed them.
    assert_eq!(map.remove(&1), Some(11));
    map.insert(100, 100);
    let guard = map.read_side.reclaim.pin();
    let root = map.read_side.root.load(&guard);
    let removed = root.find_read(map.hash(&1), &1).expect("a tombstone");
    let live = root.find_read(map.hash(&2), &2).expect("a live slot");
    let node = root
        .delta(&guard)
        .find(map.hash(&100), &100)
        .expect("a node")
        .as_slot();
    map.promote();
    for (name, slot) in [("removed", removed), ("live", live), ("node", node)] {
        let cell = Owned::new(999);
        let mut decided = false;
        // SAFETY: `guard` protects the retired root and anything it links.
        let write = unsafe {
            slot.write(|_| {
                decided = true;
                Some(cell.as_ptr())
            })
        };
        assert!(
            matches!(write, Write::Sealed),
            "{name}: a write landed in a sealed slot"
        );
        assert!(!decided, "{name}: decide ran on a sealed slot");
        assert!(Link::of(slot).1, "{name}: unsealed");
        let mut remove = |_: &u32| true;
        assert!(
            map.remove_from(&guard, slot, &mut remove).is_none(),
            "{name}: a remove landed in a sealed slot"
        );
    }
    // Readers of the retired root still see the values it was sealed with.
    // SAFETY: `guard` is held.
    unsafe {
        assert_eq!(
            (removed.get(), live.get(), node.get()),
            (None, Some(&22), Some(&100))
        );
    }
    // The writes, retried the way `retrying` does, land in the new root: the
    // removed key as a new node, the others in their new read-table slots.
    assert_eq!(map.insert(1, 12), None);
    assert_eq!(map.insert(2, 23), Some(22));
    assert_eq!(map.insert(100, 101), Some(100));
    assert_eq!(map.slot_of(&1), Some(Place::Delta(Link::Inline)));
    assert_eq!(map.slot_of(&2), Some(Place::Read(Link::Cell)));
    assert_eq!(map.slot_of(&100), Some(Place::Read(Link::Cell)));
    // The old slots stay sealed, their values unchanged.
    // SAFETY: `guard` is held.
    unsafe {
        assert_eq!(
            (removed.get(), live.get(), node.get()),
            (None, Some(&22), Some(&100))
        );
    }
    drop(guard);
    map.promote();
    assert_eq!(
        (map.get_cloned(&1), map.get_cloned(&2), map.get_cloned(&100)),
        (Some(12), Some(23), Some(101))
    );
    // Again, with get_or_insert as the reviver.
    assert_eq!(map.remove(&1), Some(12));
    map.promote();
    assert!(map.pin().get_or_insert_with(1, || 13).is_stored());
    map.promote();
    assert_eq!(map.get_cloned(&1), Some(13));
    assert_eq!(map.len(), 5);
    map.check_root_exact();
}

/// Writes racing a promotion in a loop lose nothing: each writer owns its keys
/// (some in the read table, some added to the delta as it goes) and overwrites,
/// updates, compare-exchanges, removes and revives them, checking every result
/// and read against its model, while another thread promotes as fast as it can.
/// At the end the map holds exactly the models, and after a promotion and a
/// flush exactly one value per live key is alive (nothing leaked, nothing
/// dropped twice).
#[test]
fn invariant_4_writes_racing_a_promotion_lose_nothing() {
    const WRITERS: u64 = 2;
    const OWNED: u64 = 48; // keys per writer: half preloaded, half new
    const OPS: u64 = 8_000;
    const MIN_PROMOTIONS: usize = 200;
    let log = DropLog::new();
    let map: SyncMap<u64, Counted<u64>> = SyncMap::new();
    for k in 0..WRITERS * OWNED / 2 {
        map.insert(k, log.make(0));
    }
    map.promote();
    let writing = AtomicUsize::new(WRITERS as usize);
    let start = Barrier::new(WRITERS as usize + 1);
    let models: Vec<HashMap<u64, u64>> = thread::scope(|s| {
        let promoter = {
            let (map, writing, start) = (&map, &writing, &start);
            s.spawn(move || {
                start.wait();
                let mut promotions = 0;
                while writing.load(Ordering::Acquire) > 0 || promotions < MIN_PROMOTIONS {
                    map.promote();
                    promotions += 1;
                }
                promotions
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let (map, log, writing, start) = (&map, &log, &writing, &start);
                s.spawn(move || {
                    let mut rng = Rng::new(0xE + t);
                    let keys: Vec<u64> = (0..OWNED).map(|i| t + WRITERS * i).collect();
                    // Preloaded keys hold 0; the others are absent until written.
                    let mut model: HashMap<u64, u64> = keys
                        .iter()
                        .filter(|&&k| k < WRITERS * OWNED / 2)
                        .map(|&k| (k, 0))
                        .collect();
                    start.wait();
                    for op in 1..=OPS {
                        let k = keys[rng.below(OWNED) as usize];
                        let now = model.get(&k).copied();
                        let pinned = map.pin();
                        let v = op * 10;
                        match rng.below(6) {
                            0 => {
                                let old = pinned.insert(k, log.make(v)).map(|x| x.payload);
                                assert_eq!(old, now, "insert {k}");
                                model.insert(k, v);
                            }
                            1 => {
                                let new = pinned.update(&k, |x| log.make(x.payload + 1));
                                assert_eq!(
                                    new.map(|x| x.payload),
                                    now.map(|n| n + 1),
                                    "update {k}"
                                );
                                if let Some(n) = now {
                                    model.insert(k, n + 1);
                                }
                            }
                            2 => {
                                let expected = log.make(now.unwrap_or(u64::MAX));
                                let got = pinned.compare_exchange(&k, &expected, log.make(v));
                                match now {
                                    Some(n) => {
                                        assert_eq!(got.map(|x| x.payload), Ok(n), "cas {k}");
                                        model.insert(k, v);
                                    }
                                    None => assert!(got.is_err(), "cas {k} found a removed key"),
                                }
                            }
                            3 => {
                                let got = pinned.remove(&k).map(|x| x.payload);
                                assert_eq!(got, now, "remove {k}");
                                model.remove(&k);
                            }
                            4 => {
                                let got = pinned.get_or_insert(k, log.make(v));
                                assert_eq!(got.is_stored(), now.is_none(), "get_or_insert {k}");
                                assert_eq!(got.value().payload, now.unwrap_or(v));
                                model.entry(k).or_insert(v);
                            }
                            _ => {
                                let got = pinned.remove_if(&k, |x| x.payload % 20 == 0);
                                let want = now.filter(|n| n % 20 == 0);
                                assert_eq!(got.map(|x| x.payload), want, "remove_if {k}");
                                if want.is_some() {
                                    model.remove(&k);
                                }
                            }
                        }
                        assert_eq!(
                            pinned.get(&k).map(|x| x.payload),
                            model.get(&k).copied(),
                            "read back {k}"
                        );
                    }
                    writing.fetch_sub(1, Ordering::Release);
                    model
                })
            })
            .collect();
        let models = writers.into_iter().map(|w| w.join().unwrap()).collect();
        assert!(promoter.join().unwrap() >= MIN_PROMOTIONS);
        models
    });
    map.check_root();
    let mut live = 0;
    for model in &models {
        for (k, v) in model {
            assert_eq!(map.get_cloned(k).map(|x| x.payload), Some(*v), "key {k}");
        }
        live += model.len();
    }
    for k in 0..WRITERS * OWNED {
        let owner = &models[(k % WRITERS) as usize];
        assert_eq!(map.contains_key(&k), owner.contains_key(&k), "key {k}");
    }
    assert_eq!(map.len(), live);
    assert_eq!(map.pin().iter().count(), live);
    map.promote();
    // The writers and the promoter retired garbage and have exited.
    settle(&map, || log.alive(), live);
    assert_eq!(log.double_drops(), 0);
    drop(map);
    assert_eq!(log.alive(), 0);
}

/// Tables are values too: keys borrowed from a read table that is then replaced
/// (promotion, compaction, clear) stay alive while the guard lives.
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
    // The old root is still walkable and still holds the values it was sealed
    // with (they were current when it was replaced): the iteration goes on and
    // yields every other key of 0..100 once (and maybe some of 100..120, added
    // to its delta before the promotion), and the keys borrowed from it are
    // intact.
    let mut seen: Vec<u32> = held.iter().map(|k| k.payload).collect();
    seen.extend(iter.map(|(k, v)| {
        assert_eq!(k.payload, *v);
        k.payload
    }));
    seen.sort_unstable();
    let len = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), len, "a key yielded twice");
    assert!(seen.iter().copied().take(100).eq(0..100), "{seen:?}");
    assert!(seen.iter().all(|&k| k < 120));
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

// ---------------------------------------------------------------------------
// `clear` racing with writers.
// ---------------------------------------------------------------------------

/// `clear` racing with lock-free and locked writers: at every quiescent point
/// the invariants hold and `len()` is exact (the count of live slots, and of
/// what iteration yields); at the end, after a promotion and a flush, exactly one
/// value per live key is alive.
#[test]
fn clear_racing_with_writers_keeps_len_exact() {
    const WRITERS: u64 = 2;
    const ROUNDS: usize = 20;
    const OPS: usize = 300;
    let log = DropLog::new();
    let map: SyncMap<u64, Counted<u64>> = SyncMap::new();
    let barrier = Barrier::new(WRITERS as usize + 2);
    thread::scope(|s| {
        for t in 0..WRITERS {
            let (map, barrier, log) = (&map, &barrier, &log);
            s.spawn(move || {
                let mut rng = Rng::new(7 + t);
                for _ in 0..ROUNDS {
                    for _ in 0..OPS {
                        let k = rng.below(32);
                        let pinned = map.pin();
                        match rng.below(5) {
                            0 => {
                                pinned.insert(k, log.make(k));
                            }
                            1 => {
                                pinned.remove(&k);
                            }
                            2 => {
                                pinned.get_or_insert(k, log.make(k));
                            }
                            3 => {
                                pinned.update(&k, |v| log.make(v.payload + 1));
                            }
                            _ => {
                                pinned.insert(1_000 + rng.below(1_000), log.make(0));
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
    let len = map.len();
    map.promote();
    // The writers and the clearer retired garbage and have exited.
    settle(&map, || log.alive(), len);
    drop(map);
    assert_eq!(log.alive(), 0);
    assert_eq!(log.double_drops(), 0);
}

/// `Stats::pending` is "retired objects not freed yet", and tests (and tools)
/// wait for it to reach 0 before checking that destructors ran, so an object must
/// count as pending until its destructor has finished (the ledger records the
/// free after dropping the object). Here the destructor blocks on another thread
/// until released, and `pending` must read 1 meanwhile.
#[test]
fn stats_pending_counts_an_object_until_its_destructor_has_run() {
    use std::time::{Duration, Instant};
    static ENTERED: AtomicBool = AtomicBool::new(false);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    /// Blocks in its destructor if armed; clones (made by promotions) are not.
    struct Blocker {
        armed: bool,
    }
    impl Clone for Blocker {
        fn clone(&self) -> Self {
            Blocker { armed: false }
        }
    }
    impl Drop for Blocker {
        fn drop(&mut self) {
            if !self.armed {
                return;
            }
            ENTERED.store(true, Ordering::SeqCst);
            let start = Instant::now();
            while !RELEASE.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
                thread::yield_now();
            }
        }
    }
    // Four keys, so that the remove below (1 tombstone of 4 keys) retires the
    // armed Blocker's cell alone and promotes nothing.
    let map: SyncMap<u32, Option<Blocker>> = SyncMap::new();
    for k in 1..=4 {
        map.pin().insert(k, None);
    }
    map.promote();
    map.pin().insert(1, Some(Blocker { armed: true })); // in a cell
    flush_until_quiet(&map);
    thread::scope(|s| {
        s.spawn(|| {
            map.pin().remove(&1); // retires the Blocker's cell on this thread
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
