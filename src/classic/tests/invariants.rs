//! The invariants specific to the classic protocol (`docs/design.md` §3): the
//! dirty table never holds an expunged entry and holds every other entry of the
//! read table (1), a key removed and re-inserted racing a dirty copy and
//! promotions is never lost (4), and promotion is amortized: at most once per
//! `len(dirty)` misses (5). Invariants 2 and 3 (retirement, visibility) are the
//! same for both protocols and are tested on `ClassicSyncMap` (`sync_map/tests/`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;

use crate::classic::ClassicSyncMap;
use crate::test_support::{Rng, Slot};

// ---------------------------------------------------------------------------
// Invariant 1: an expunged entry is never in `dirty`; a non-expunged entry of
// `read` is in `dirty` whenever `dirty` is present.
// ---------------------------------------------------------------------------

#[test]
fn invariant_1_expunged_never_in_dirty() {
    let map: ClassicSyncMap<u32, u32> = ClassicSyncMap::from_pairs((0..8).map(|i| (i, i)));
    map.check_invariants();
    assert_eq!(map.remove(&2), Some(2));
    assert_eq!(map.remove(&5), Some(5));
    assert_eq!(map.slots(&2), (Some(Slot::Deleted), None));
    map.check_invariants();

    // The first new key copies `read`: deleted entries are expunged and left out,
    // the others are shared with the dirty table.
    assert_eq!(map.insert(100, 100), None);
    for i in 0..8 {
        let (entry, shared) = map.read_entry_shared(&i).expect("still in read");
        if i == 2 || i == 5 {
            assert_eq!(map.slots(&i), (Some(Slot::Expunged), None));
            assert!(!shared);
        } else {
            assert_eq!(map.slots(&i), (Some(Slot::Live), Some(Slot::Live)));
            assert!(shared, "key {i}: read and dirty must share one entry");
        }
        drop(entry);
    }
    map.check_invariants();

    // Operations that do not insert leave an expunged entry expunged and out of
    // `dirty`: it is absent.
    {
        let pinned = map.pin();
        assert_eq!(pinned.get(&2), None);
        assert_eq!(pinned.update(&2, |v| v + 1), None);
        assert!(pinned.compare_exchange(&2, &2, 3).is_err());
        assert_eq!(pinned.remove_if(&2, |_| true), None);
        assert_eq!(pinned.remove(&2), None);
    }
    assert_eq!(map.slots(&2), (Some(Slot::Expunged), None));
    map.check_invariants();

    // Re-inserting revives the same entry into `dirty` under the lock.
    let (before, _) = map.read_entry_shared(&2).unwrap();
    assert_eq!(map.insert(2, 20), None);
    let (after, shared) = map.read_entry_shared(&2).unwrap();
    assert!(std::sync::Arc::ptr_eq(&before, &after), "revived in place");
    assert!(shared, "a revived entry is back in the dirty table");
    assert_eq!(map.slots(&2), (Some(Slot::Live), Some(Slot::Live)));
    drop((before, after));
    // get_or_insert revives too.
    assert!(map.pin().get_or_insert(5, 50).is_stored());
    assert_eq!(map.slots(&5), (Some(Slot::Live), Some(Slot::Live)));
    map.check_invariants();

    // A remove while `dirty` exists deletes the shared entry in place.
    assert_eq!(map.remove(&0), Some(0));
    assert_eq!(map.slots(&0), (Some(Slot::Deleted), Some(Slot::Deleted)));
    map.check_invariants();
    map.promote();
    assert_eq!(map.slots(&0), (None, None));
    assert_eq!(map.get_cloned(&2), Some(20));
    assert_eq!(map.get_cloned(&5), Some(50));
    assert_eq!(map.len(), 8); // 1, 2, 3, 4, 5, 6, 7, 100
    map.check_invariants();
}

/// Threads run random operations in rounds; between rounds, with every writer
/// parked on a barrier, the map's invariants are checked.
#[test]
fn invariant_1_holds_at_quiescence_under_concurrent_churn() {
    const THREADS: u64 = 3;
    const ROUNDS: usize = 25;
    const OPS: usize = 400;
    const KEYS: u64 = 48;
    let map: ClassicSyncMap<u64, u64> = ClassicSyncMap::new();
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
            map.check_invariants();
            barrier.wait();
        }
    });
    map.check_invariants();
}

// ---------------------------------------------------------------------------
// Invariant 4: a key removed and re-inserted concurrently with promotion is never
// lost (the expunge / un-expunge race).
// ---------------------------------------------------------------------------

#[test]
fn invariant_4_remove_reinsert_racing_promotion_never_lost() {
    const CHURNERS: u64 = 2;
    const OWNED: u64 = 32; // keys per churner
    const OPS: usize = 30_000;
    let map: ClassicSyncMap<u64, u64> =
        ClassicSyncMap::from_pairs((0..CHURNERS * OWNED).map(|k| (k, 0)));
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
        // New keys and misses: dirty copies (which expunge deleted entries) and
        // promotions by the miss counter.
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
        // Explicit promotions and iterations (which promote when amended).
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
    map.check_invariants();
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
    assert!(stats.promotions > 0 && stats.dirty_copies > 0, "{stats:?}");
}

/// The race of invariant 4 replayed step by step: a key is removed, expunged by a
/// dirty copy, re-inserted through the lock, promoted, and survives.
#[test]
fn invariant_4_expunged_key_reinserted_survives_promotion() {
    let map: ClassicSyncMap<u32, u32> = ClassicSyncMap::from_pairs((0..4).map(|i| (i, i)));
    assert_eq!(map.remove(&1), Some(1)); // deleted in read
    assert_eq!(map.insert(10, 10), None); // dirty copy: 1 expunged
    assert_eq!(map.slots(&1), (Some(Slot::Expunged), None));
    assert_eq!(map.insert(1, 11), None); // revived into dirty
    map.check_invariants();
    // Promote by misses.
    while map.amended() {
        assert_eq!(map.get_cloned(&999), None);
    }
    assert_eq!(map.get_cloned(&1), Some(11));
    assert_eq!(map.slots(&1), (Some(Slot::Live), None));
    // Again, with get_or_insert as the reviver and promote() as the promotion.
    assert_eq!(map.remove(&1), Some(11));
    assert_eq!(map.insert(11, 11), None);
    assert_eq!(map.slots(&1), (Some(Slot::Expunged), None));
    assert!(map.pin().get_or_insert_with(1, || 12).is_stored());
    map.promote();
    assert_eq!(map.get_cloned(&1), Some(12));
    assert_eq!(map.len(), 6); // 0, 1, 2, 3, 10, 11
    map.check_invariants();
}

// ---------------------------------------------------------------------------
// Invariant 5: promotion costs O(len) and happens at most once per len(dirty)
// misses, so misses stay amortized O(1).
// ---------------------------------------------------------------------------

#[test]
fn invariant_5_promotion_amortized() {
    const N: u64 = 40;
    let map: ClassicSyncMap<u64, u64> = ClassicSyncMap::new();
    for round in 0..5u64 {
        let before = map.stats();
        let keys: Vec<u64> = (round * N..(round + 1) * N).collect();
        // The first new key after a promotion copies `read` once; later ones don't.
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(map.insert(k, k), None);
            assert_eq!(
                map.stats().dirty_copies,
                before.dirty_copies + 1,
                "round {round}, new key #{i}"
            );
        }
        let dirty_len = map.dirty_len().expect("new keys pending");
        assert_eq!(dirty_len as u64, (round + 1) * N, "dirty holds every key");
        // Lookups of the new keys miss `read`; the len(dirty)-th promotes.
        for m in 1..=dirty_len as u64 {
            let k = keys[(m as usize - 1) % keys.len()];
            assert_eq!(map.get_cloned(&k), Some(k));
            let stats = map.stats();
            assert_eq!(stats.misses, before.misses + m);
            let promoted = stats.promotions - before.promotions;
            assert_eq!(
                promoted,
                u64::from(m == dirty_len as u64),
                "after {m} misses"
            );
        }
        // Then the new keys are served by `read`: no more misses.
        let misses = map.stats().misses;
        for &k in &keys {
            assert_eq!(map.get_cloned(&k), Some(k));
        }
        let stats = map.stats();
        assert_eq!(stats.misses, misses);
        assert_eq!(stats.promotions, before.promotions + 1);
        assert_eq!(stats.dirty_copies, before.dirty_copies + 1);
        assert_eq!(
            stats.tables_retired,
            before.tables_retired + 1,
            "a promotion retires the old read table"
        );
        map.check_invariants();
    }
}

/// Under a stream of misses on absent keys, promotions stay bounded by
/// misses / len(dirty).
#[test]
fn invariant_5_misses_per_promotion_bounded_by_dirty_len() {
    let map: ClassicSyncMap<u64, u64> = ClassicSyncMap::from_pairs((0..100).map(|i| (i, i)));
    let base = map.stats();
    for next in 1_000..1_020 {
        assert_eq!(map.insert(next, next), None);
        let len = map.dirty_len().unwrap() as u64;
        let before = map.stats();
        let mut absent = 1_000_000;
        while map.amended() {
            assert_eq!(map.get_cloned(&absent), None);
            absent += 1;
        }
        let after = map.stats();
        assert_eq!(
            after.misses - before.misses,
            len,
            "one promotion per len(dirty) misses"
        );
        assert_eq!(after.promotions - before.promotions, 1);
    }
    let stats = map.stats();
    assert_eq!(stats.promotions - base.promotions, 20);
    assert_eq!(stats.dirty_copies - base.dirty_copies, 20);
    map.check_invariants();
}
