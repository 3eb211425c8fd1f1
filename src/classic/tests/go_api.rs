//! The parts of Go's `sync.Map` API added to `ClassicSyncMap`'s public surface:
//! `CompareAndDelete` (`remove_if`), `CompareAndSwap` (`compare_exchange`), and
//! filling a map from pairs (`FromIterator`, `Extend`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::classic::ClassicSyncMap;
use crate::test_support::{no_hang, DropLog, Evil};

#[test]
fn remove_if_is_go_s_compare_and_delete() {
    let map: ClassicSyncMap<u32, u32> = (0..4).map(|i| (i, i * 10)).collect();
    // In the read table: a CAS, no lock, no miss.
    let misses = map.stats().misses;
    assert_eq!(map.remove_if(&1, |v| *v == 11), None);
    assert_eq!(map.remove_if(&1, |v| *v == 10), Some(10));
    assert_eq!(map.remove_if(&1, |_| true), None, "already removed");
    assert_eq!(map.remove_if(&9, |_| true), None, "absent");
    assert_eq!((map.len(), map.stats().misses), (3, misses));
    map.check_invariants();

    // Only in the dirty table: like Go, the lookup takes the lock and counts a
    // miss, and the entry stays in `dirty` (deleted) until the next promotion.
    map.insert(100, 1000);
    assert!(map.amended());
    let misses = map.stats().misses;
    assert_eq!(map.pin().remove_if(&100, |v| *v == 1), None);
    assert_eq!(map.stats().misses, misses + 1);
    assert_eq!(map.pin().remove_if(&100, |v| *v == 1000), Some(&1000));
    assert_eq!(map.get_cloned(&100), None);
    assert_eq!(map.len(), 3);
    map.check_invariants();
}

#[test]
fn remove_if_on_the_read_table_leaves_tombstones_that_compact() {
    let map: ClassicSyncMap<u32, u32> = (0..64).map(|i| (i, i)).collect();
    for i in 0..32 {
        assert_eq!(map.remove_if(&i, |v| *v == i), Some(i));
    }
    // Half the read table removed: as with `remove`, the map rebuilt itself.
    assert_eq!(map.stats().compactions, 1);
    assert_eq!(map.read_len(), 32);
    map.check_invariants();
}

#[test]
fn the_predicate_never_runs_under_the_lock() {
    // A predicate that inserts a new key (which takes the lock) while its own
    // key was found in the dirty table under the lock: it would deadlock if the
    // lock were still held when it ran.
    no_hang(|| {
        let map = ClassicSyncMap::new();
        map.insert(1u32, 1u32);
        assert!(map.amended());
        let pinned = map.pin();
        let removed = pinned.remove_if(&1, |v| {
            map.insert(2, *v + 1);
            true
        });
        assert_eq!(removed, Some(&1));
        drop(pinned);
        assert_eq!((map.get_cloned(&1), map.get_cloned(&2)), (None, Some(2)));
    });
}

#[test]
fn concurrent_remove_if_removes_each_value_once_and_retires_it() {
    const KEYS: u64 = 256;
    let log = DropLog::new();
    {
        let map: ClassicSyncMap<u64, _> = (0..KEYS).map(|k| (k, log.make(k))).collect();
        map.insert(KEYS, log.make(KEYS)); // one key pending in `dirty`
        let removed = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (map, removed) = (&map, &removed);
                s.spawn(move || {
                    let pinned = map.pin();
                    for i in 0..=KEYS {
                        let k = (i + t * 37) % (KEYS + 1);
                        if let Some(v) = pinned.remove_if(&k, |v| v.payload == k) {
                            assert_eq!(v.payload, k);
                            removed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(removed.load(Ordering::Relaxed), KEYS as usize + 1);
        assert!(map.is_empty());
        map.promote();
        map.check_invariants();
    }
    log.flush_until_all_dropped();
}

#[test]
fn from_iter_and_extend_fill_the_map_like_inserts() {
    let mut map: ClassicSyncMap<u32, u32> = [(1, 1), (2, 2), (1, 3)].into_iter().collect();
    assert_eq!(
        (map.len(), map.get_cloned(&1)),
        (2, Some(3)),
        "later pairs win"
    );
    assert!(!map.amended(), "promoted once at the end");
    map.extend([(3, 30), (2, 20)]);
    (&map).extend([(4, 40)]);
    let source = std::collections::HashMap::from([(5, 50), (1, 10)]);
    map.extend(&source);
    (&map).extend(source.iter());
    let mut seen: Vec<(u32, u32)> = map
        .pin()
        .entries()
        .into_iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50)]);
    assert_eq!(map.len(), 5);
    map.check_invariants();
}

#[test]
fn compare_exchange_is_go_s_compare_and_swap() {
    let map: ClassicSyncMap<u32, u32> = (0..4).map(|i| (i, i * 10)).collect();
    // In the read table: a CAS, no lock, no miss.
    let misses = map.stats().misses;
    {
        let pinned = map.pin();
        assert_eq!(
            pinned.compare_exchange(&1, &11, 12).unwrap_err().current,
            Some(&10)
        );
        assert_eq!(pinned.compare_exchange(&1, &10, 12), Ok(&10));
        assert_eq!(pinned.get(&1), Some(&12));
        let absent = pinned.compare_exchange(&9, &0, 1).unwrap_err();
        assert_eq!((absent.current, absent.new), (None, 1));
    }
    assert_eq!((map.len(), map.stats().misses), (4, misses));
    assert_eq!(map.get_cloned(&9), None, "an absent key never matches");

    // Only in the dirty table: found under the lock, counting a miss, as in Go.
    map.insert(100, 1000);
    assert!(map.amended());
    let misses = map.stats().misses;
    assert_eq!(map.pin().compare_exchange(&100, &1000, 1001), Ok(&1000));
    assert_eq!(map.stats().misses, misses + 1);
    assert_eq!(map.get_cloned(&100), Some(1001));

    // A removed key is absent.
    map.remove(&2);
    assert!(map.pin().compare_exchange(&2, &20, 21).is_err());
    assert_eq!(map.get_cloned(&2), None);
    map.check_invariants();
}

#[test]
fn panicking_value_eq_in_compare_exchange_leaves_map_unchanged() {
    let log = DropLog::new();
    // `panic_eq`: its `PartialEq` panics, whichever side of the comparison it is.
    let evil = |id, panic_eq| {
        log.make(Evil {
            id,
            panic_eq,
            ..Evil::default()
        })
    };
    let map = ClassicSyncMap::new();
    map.insert(1u32, evil(10, false));
    map.promote();
    map.insert(2u32, evil(20, false));
    assert!(map.amended(), "key 2 only in the dirty table");
    for key in [1u32, 2] {
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _ =
                map.pin()
                    .compare_exchange(&key, &evil(key * 10, true), evil(key * 10 + 1, false));
        }));
        assert!(result.is_err(), "key {key}: the panic propagates");
        // Unchanged and usable: the value stayed, the lock is free, and the new
        // value was dropped once.
        assert_eq!(map.pin().get(&key).map(|v| v.payload.id), Some(key * 10));
        assert_eq!(
            map.pin()
                .compare_exchange(&key, &evil(key * 10, false), evil(key * 10 + 2, false))
                .map(|v| v.payload.id),
            Ok(key * 10)
        );
        map.insert(key + 100, evil(0, false));
    }
    map.check_invariants();
    assert_eq!(log.double_drops(), 0);
    drop(map);
    log.flush_until_all_dropped();
}
