//! loom models of the two SyncMap protocols, on the crate's own code:
//! `SyncMap` (v3: an inline read table and a lock-free delta behind one root,
//! sealing promotions) and `classic::ClassicSyncMap` (Go's sync.Map: read table +
//! locked dirty table).
//!
//! Each model is one generic function, run on each map and reclamation backend
//! listed in `models!` at the bottom (with its preemption bound); `docs/design.md §9`
//! lists what each checks and how long it takes. The main thread is one of the
//! model's threads: it builds the map, spawns the others, races them, joins them
//! and then checks the quiescent state (`check_quiescent`).
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use readmostly_loom_tests::{check_quiescent, models, setup, ModelMap, Progress};

/// Model 1: `get` racing a promotion. Key 1 is in the read table and key 2 was
/// added since (delta / dirty table). A writer adds key 3 and then promotes:
/// `SyncMap` by `promote()`; `ClassicSyncMap` by missing on key 3 until misses
/// reach the dirty table's size (with the reader's first miss, the writer's
/// second). The reader holds one guard for three reads, so the root or table it
/// loaded first may be retired under it. It must find key 2 every time (present
/// before and after), must see key 3 absent or with its value, and must never
/// reach a freed table (the loom backend's audit panics if a guard protects a
/// table retired before it pinned, or a table is freed while a guard that
/// protected it is live).
///
/// Nothing but the promotion's swap of the root / read pointer (and, in
/// `SyncMap`, the delta bucket's store) publishes key 3 — in `SyncMap` its key
/// and value inline in the new read table's bucket — to the lock-free reader:
/// their `Release` is what the ordering mutants weaken. In `SyncMap` the reader's
/// third delta read may also promote (a reader `try_lock`s the writer lock once
/// its read budget is spent).
fn get_vs_promotion<M: ModelMap>() {
    let map = setup::<M>(&[(1, 10)], &[(2, 20)]);
    let progress = Progress::new();
    let writer = {
        let (map, progress) = (Arc::clone(&map), Arc::clone(&progress));
        thread::spawn(move || {
            assert_eq!(map.insert(3, 30), None);
            progress.mark(1);
            if M::CLASSIC {
                assert_eq!(map.get(3), Some(30));
                assert_eq!(map.get(3), Some(30));
            } else {
                map.promote();
            }
            progress.mark(2);
        })
    };
    // The probe between the reads only steers loom (see `Progress`); it orders
    // nothing, so key 3 may still be unseen after the reader saw its insert
    // return: the map promises that only to a reader ordered after the insert.
    let found = map.read_under_one_guard(&[2, 3, 2], |i| {
        if i == 1 {
            progress.seen();
        }
    });
    writer.join().unwrap();
    assert_eq!((found[0], found[2]), (Some(20), Some(20)), "key 2 lost");
    assert!(matches!(found[1], None | Some(30)), "key 3: {found:?}");
    assert!(map.stats().promotions >= 2, "{:?}", map.stats());
    check_quiescent(&*map, &[(1, 10), (2, 20), (3, 30)]);
}

/// Model 2: a removed key revived during a promotion. Key 1 is removed and
/// re-inserted while the map rebuilds its tables: `ClassicSyncMap` when a new key
/// makes it build the dirty table (deleted entries are expunged and left out);
/// `SyncMap` when a promotion seals every slot and copies the live ones (the
/// revival either lands before the seal and is copied, or meets the seal and is
/// retried in the new root). Key 1 must end up present exactly once.
fn revive_vs_promotion<M: ModelMap>() {
    let map = setup::<M>(&[(1, 10), (2, 20), (3, 30)], &[]);
    let t1 = {
        let map = Arc::clone(&map);
        thread::spawn(move || {
            assert_eq!(map.remove(1), Some(10));
            assert_eq!(map.insert(1, 11), None);
        })
    };
    if M::CLASSIC {
        assert_eq!(map.insert(4, 40), None);
    } else {
        map.promote();
    }
    t1.join().unwrap();
    let mut expected = vec![(1, 11), (2, 20), (3, 30)];
    if M::CLASSIC {
        expected.push((4, 40));
    }
    check_quiescent(&*map, &expected);
}

/// Model 2b: lock-free writes racing a promotion's seal (`SyncMap` only): a
/// writer overwrites key 1 (inline in the read table) and key 4 (a delta node)
/// while the main thread promotes. Each CAS lands before its slot is sealed,
/// and the promotion copies its value, or meets the seal, waits for the
/// promotion and writes into the new root: no write is lost.
fn write_vs_seal<M: ModelMap>() {
    let map = setup::<M>(&[(1, 10), (2, 20)], &[(4, 40)]);
    let writer = {
        let map = Arc::clone(&map);
        thread::spawn(move || {
            assert_eq!(map.insert(1, 11), Some(10));
            assert_eq!(map.insert(4, 41), Some(40));
        })
    };
    map.promote();
    writer.join().unwrap();
    check_quiescent(&*map, &[(1, 11), (2, 20), (4, 41)]);
}

/// Model 3a: two threads `get_or_insert` a key absent from the map (the locked
/// path: one creates the entry, the other finds it under the lock).
fn get_or_insert_new_key<M: ModelMap>() {
    let map = setup::<M>(&[], &[]);
    get_or_insert_race(&map, &[]);
}

/// Model 3b: two threads `get_or_insert` a key deleted in the read table (the
/// lock-free path: both CAS the deleted slot).
fn get_or_insert_deleted_key<M: ModelMap>() {
    let map = setup::<M>(&[(5, 1), (6, 60), (7, 70)], &[]);
    assert_eq!(map.remove(5), Some(1));
    get_or_insert_race(&map, &[(6, 60), (7, 70)]);
}

/// Exactly one of two racing `get_or_insert(5, _)` stores; both return the
/// stored value.
fn get_or_insert_race<M: ModelMap>(map: &Arc<M>, others: &[(u64, u64)]) {
    let t1 = {
        let map = Arc::clone(map);
        thread::spawn(move || map.get_or_insert(5, 51))
    };
    let mine = map.get_or_insert(5, 52);
    let theirs = t1.join().unwrap();
    assert!(
        mine.0 != theirs.0,
        "exactly one stores: {mine:?} {theirs:?}"
    );
    let stored = if mine.0 { mine.1 } else { theirs.1 };
    assert_eq!(
        (mine.1, theirs.1),
        (stored, stored),
        "both see the stored value"
    );
    let mut expected = others.to_vec();
    expected.push((5, stored));
    check_quiescent(&**map, &expected);
}

/// Model 4: `compare_exchange(1, 0 → n)` from two threads (`SyncMap` only): exactly
/// one wins and replaces 0; the loser sees the winner's value.
fn compare_exchange_race<M: ModelMap>() {
    let map = setup::<M>(&[(1, 0)], &[]);
    let t1 = {
        let map = Arc::clone(&map);
        thread::spawn(move || map.compare_exchange(1, 0, 1))
    };
    let mine = map.compare_exchange(1, 0, 2);
    let theirs = t1.join().unwrap();
    let winner = match (mine, theirs) {
        (Ok(0), Err(Some(2))) => 2,
        (Err(Some(1)), Ok(0)) => 1,
        other => panic!("exactly one wins, the loser sees its value: {other:?}"),
    };
    check_quiescent(&*map, &[(1, winner)]);
}

/// Model 5: `remove` then `insert` of key 1 racing a promotion that a third
/// thread's reads trigger. A second thread adds key 2; the third (main) reads
/// key 2: in `ClassicSyncMap` each read is a miss and the second one promotes
/// the dirty table (which the new key built, expunging key 1 if it was
/// removed); in `SyncMap` the third delta-served read spends the read budget
/// (under loom, where every read counts) and the reader promotes if the writer
/// lock is free, or leaves it to the next writer. Key 1 must never be lost.
fn remove_insert_vs_promotion<M: ModelMap>() {
    let (read, reads): (&[(u64, u64)], usize) = if M::CLASSIC {
        (&[(1, 10)], 2)
    } else {
        // Two more keys, so that removing key 1 alone does not reach the
        // tombstone bound (half the entries) and promote by itself.
        (&[(1, 10), (8, 80), (9, 90)], 3)
    };
    let map = setup::<M>(read, &[]);
    let t1 = {
        let map = Arc::clone(&map);
        thread::spawn(move || {
            assert_eq!(map.remove(1), Some(10));
            assert_eq!(map.insert(1, 11), None);
        })
    };
    let t2 = {
        let map = Arc::clone(&map);
        thread::spawn(move || assert_eq!(map.insert(2, 20), None))
    };
    for _ in 0..reads {
        let two = map.get(2);
        assert!(two.is_none() || two == Some(20), "key 2: {two:?}");
    }
    t1.join().unwrap();
    t2.join().unwrap();
    let mut expected = read.to_vec();
    expected[0] = (1, 11);
    expected.push((2, 20));
    check_quiescent(&*map, &expected);
}

/// Model 6: reclamation. Key 1's value is first overwritten once, so that it
/// lives in a heap cell (`SyncMap`; an inline value is never retired, it goes
/// with its table). A reader holds one guard across a writer's overwrite of key 1
/// (retiring that cell), a new key and a promotion (retiring the old root / read
/// table). Everything the reader got stays readable while its guard
/// lives (values check on every read that they were not freed; the audit checks
/// tables), and once every guard is gone everything retired has been freed:
/// `check_quiescent` checks the ledger, and loom's leak check at the end of the
/// execution catches anything never freed (every value carries a loom `Track`).
fn reclamation<M: ModelMap>() {
    let map = setup::<M>(&[(1, 10)], &[]);
    assert_eq!(map.insert(1, 10), Some(10));
    let writer = {
        let map = Arc::clone(&map);
        thread::spawn(move || {
            assert_eq!(map.insert(1, 11), Some(10));
            assert_eq!(map.insert(2, 20), None);
            map.promote();
        })
    };
    let found = map.read_under_one_guard(&[1, 2, 1], |_| {});
    assert!(matches!(found[0], Some(10 | 11)), "{found:?}");
    assert!(matches!(found[1], None | Some(20)), "{found:?}");
    assert!(matches!(found[2], Some(10 | 11)), "{found:?}");
    writer.join().unwrap();
    // A value that is never retired is caught by loom's leak check (it is never
    // freed), not by the ledger, which only counts what was retired.
    check_quiescent(&*map, &[(1, 11), (2, 20)]);
}

/// Model 7: `len` and iteration against a concurrent insert and remove. Key 1 is
/// in the read table and key 4 in the delta / dirty table throughout; a writer
/// adds key 3 and removes key 2. Iteration yields each key at most once and
/// every key present throughout, with its value; `len` is a count that was true
/// at some moment.
fn iteration<M: ModelMap>() {
    let map = setup::<M>(&[(1, 10), (2, 20)], &[(4, 40)]);
    let writer = {
        let map = Arc::clone(&map);
        thread::spawn(move || {
            assert_eq!(map.insert(3, 30), None);
            assert_eq!(map.remove(2), Some(20));
        })
    };
    let pairs = map.iterate();
    let len = map.len();
    writer.join().unwrap();
    let mut keys: Vec<u64> = pairs.iter().map(|&(k, _)| k).collect();
    keys.sort_unstable();
    let yielded = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), yielded, "a key iterated twice: {pairs:?}");
    assert!(keys.contains(&1) && keys.contains(&4), "{pairs:?}");
    for (k, v) in pairs {
        assert_eq!(v, k * 10, "key {k}");
    }
    assert!((3..=4).contains(&len), "len {len}");
    check_quiescent(&*map, &[(1, 10), (3, 30), (4, 40)]);
}

// Preemption bounds (loom's default is unbounded): chosen so that the whole suite
// fits its time budget; docs/design.md §9 lists each model's executions and time.
// crossbeam-epoch's own atomics multiply the state space, so its bounds are lower,
// and the three-thread model does not run on it (see docs/design.md §9).
/// Model 9: a delta growth racing a read (`SyncMap` only: the classic protocol
/// has no delta). Key 1 is in the read table and keys 2–5 fill the delta to its
/// room (4 of its 8 buckets), so the writer's new key 6 makes it move the nodes
/// into a delta twice the size and swap the root's delta pointer. The reader holds
/// one guard for three reads: keys 2 and 5, in the delta before and after, must be
/// found every time (whichever delta the reader probes), key 6 absent or with its
/// value, and the old delta, retired by the growth, never reached freed.
fn delta_growth_vs_read<M: ModelMap>() {
    let map = setup::<M>(&[(1, 10)], &[(2, 20), (3, 30), (4, 40), (5, 50)]);
    let writer = {
        let map = Arc::clone(&map);
        thread::spawn(move || {
            assert_eq!(map.insert(6, 60), None);
        })
    };
    let found = map.read_under_one_guard(&[2, 6, 5], |_| {});
    writer.join().unwrap();
    assert_eq!(found[0], Some(20), "key 2 lost by the growth: {found:?}");
    assert_eq!(found[2], Some(50), "key 5 lost by the growth: {found:?}");
    assert!(matches!(found[1], None | Some(60)), "key 6: {found:?}");
    // Unless a read of key 2 spent the read budget and promoted first (then key
    // 6 went into a fresh delta).
    let stats = map.stats();
    assert!(stats.delta_growths >= 1 || stats.promotions >= 2, "{stats:?}");
    check_quiescent(
        &*map,
        &[(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)],
    );
}

/// Model 10: a write seen is never lost to a later read (`SyncMap` only). Key 1
/// is in the read table, untouched. A writer overwrites it: one CAS on its link,
/// then it sets the slot's touched bit, which is what sends readers to the link.
/// The main thread's `compare_exchange` that cannot match reads the link; if it
/// saw the new value, the same thread's next `get` must return it, even while
/// the writer has not set the bit yet (every thread that acts on a link it
/// loaded sets the bit first).
fn observed_write_stays_visible<M: ModelMap>() {
    let map = setup::<M>(&[(1, 10)], &[]);
    let writer = {
        let map = Arc::clone(&map);
        thread::spawn(move || assert_eq!(map.insert(1, 11), Some(10)))
    };
    let seen = map.compare_exchange(1, 99, 100);
    let now = map.get(1);
    match seen {
        Err(Some(11)) => assert_eq!(now, Some(11), "a value seen by a CAS, then lost"),
        Err(Some(10)) => assert!(matches!(now, Some(10 | 11)), "key 1: {now:?}"),
        other => panic!("the CAS cannot match: {other:?}"),
    }
    writer.join().unwrap();
    check_quiescent(&*map, &[(1, 11)]);
}

/// Model 11: a new key racing a promotion (`SyncMap` only). Key 1 is in the
/// read table and key 2 in the delta; a writer adds key 3 — a lock-free CAS into
/// an empty delta bucket — while the main thread promotes. The promotion closes
/// the delta's empty buckets before it reads the delta, so the insert either
/// landed first, and is copied into the new read table, or meets a closed
/// bucket, waits for the promotion and goes into the new root's delta: key 3 is
/// never lost.
fn new_key_vs_promotion<M: ModelMap>() {
    let map = setup::<M>(&[(1, 10)], &[(2, 20)]);
    let writer = {
        let map = Arc::clone(&map);
        thread::spawn(move || assert_eq!(map.insert(3, 30), None))
    };
    map.promote();
    writer.join().unwrap();
    check_quiescent(&*map, &[(1, 10), (2, 20), (3, 30)]);
}

/// Model 12: two new keys racing for the last place in the delta (`SyncMap`
/// only). Keys 2–4 fill 3 of the delta's 4 places; one thread adds key 5 and the
/// main thread key 6. Whichever reserves the last place CASes its node in,
/// lock-free; the other finds the delta full and grows it under the lock, which
/// closes the old delta before it moves the nodes — so an insert into the old
/// delta either lands before the move, and is moved, or meets a closed bucket
/// and retries in the grown one. Both keys end up present, once.
fn new_keys_vs_growth<M: ModelMap>() {
    let map = setup::<M>(&[(1, 10)], &[(2, 20), (3, 30), (4, 40)]);
    let writer = {
        let map = Arc::clone(&map);
        thread::spawn(move || assert_eq!(map.insert(5, 50), None))
    };
    assert_eq!(map.insert(6, 60), None);
    writer.join().unwrap();
    let stats = map.stats();
    assert!(stats.delta_growths >= 1 || stats.promotions >= 2, "{stats:?}");
    check_quiescent(
        &*map,
        &[(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)],
    );
}

/// Model 13: a new key racing a `clear` of an empty map. `SyncMap`'s clear
/// closes the empty delta to look, finds no key anywhere, and opens it again
/// without publishing anything; an insert that met a closed bucket waits for
/// the writer lock and retries. Either the insert lands before the close (and
/// the clear removes it) or after the reopen (and stays): key 3 is present
/// with its value or absent, and the map takes the next key.
fn new_key_vs_clear_of_empty<M: ModelMap>() {
    let map = setup::<M>(&[], &[]);
    let writer = {
        let map = Arc::clone(&map);
        thread::spawn(move || assert_eq!(map.insert(3, 30), None))
    };
    map.clear();
    writer.join().unwrap();
    let mut expected: Vec<(u64, u64)> = map.get(3).map(|v| (3, v)).into_iter().collect();
    assert!(expected.is_empty() || expected == [(3, 30)], "key 3: {expected:?}");
    assert_eq!(map.insert(4, 40), None, "key 4 after the clear");
    expected.push((4, 40));
    check_quiescent(&*map, &expected);
}

models! {
    get_vs_promotion: v3 { loom 3, crossbeam 1 } classic { loom 5, crossbeam 1 };
    revive_vs_promotion: v3 { loom 4, crossbeam 1 } classic { loom 5, crossbeam 1 };
    write_vs_seal: v3 { loom 4, crossbeam 1 };
    get_or_insert_new_key: v3 { loom unbounded, crossbeam 1 } classic { loom unbounded, crossbeam 1 };
    get_or_insert_deleted_key: v3 { loom unbounded, crossbeam 1 } classic { loom unbounded, crossbeam 1 };
    compare_exchange_race: v3 { loom unbounded, crossbeam 1 };
    observed_write_stays_visible: v3 { loom unbounded, crossbeam 1 };
    remove_insert_vs_promotion: v3 { loom 3 } classic { loom 3 };
    reclamation: v3 { loom 4, crossbeam 1 } classic { loom 5, crossbeam 1 };
    iteration: v3 { loom 5, crossbeam 1 } classic { loom 5, crossbeam 1 };
    delta_growth_vs_read: v3 { loom 3, crossbeam 1 };
    new_key_vs_promotion: v3 { loom unbounded, crossbeam 1 };
    new_keys_vs_growth: v3 { loom unbounded, crossbeam 1 };
    new_key_vs_clear_of_empty: v3 { loom 3, crossbeam 1 } classic { loom 3, crossbeam 1 };
}
