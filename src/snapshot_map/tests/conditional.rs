//! Conditional single-key writes: `compare_exchange` and `remove_if`. (Random
//! sequences against `HashMap` are in `differential`.)

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::test_support::no_hang;
use crate::{SnapshotCompareExchangeError, SnapshotMap};

#[test]
fn compare_exchange_swaps_only_on_a_match_and_publishes_only_then() {
    let map: SnapshotMap<&str, String> = SnapshotMap::new();
    map.insert("k", "a".to_string());
    assert_eq!(
        map.compare_exchange("k", &"a".to_string(), "b".to_string()),
        Ok("a".to_string())
    );
    assert_eq!(map.version(), 2);
    assert_eq!(
        map.compare_exchange("k", &"a".to_string(), "c".to_string()),
        Err(SnapshotCompareExchangeError {
            current: Some("b".to_string()),
            new: "c".to_string()
        })
    );
    assert_eq!(
        map.compare_exchange("x", &"a".to_string(), "c".to_string()),
        Err(SnapshotCompareExchangeError {
            current: None,
            new: "c".to_string()
        })
    );
    assert_eq!(
        (map.version(), map.get_cloned("k")),
        (2, Some("b".to_string()))
    );
    let stats = map.stats();
    assert_eq!((stats.published, stats.copies, stats.aborted), (2, 2, 0));
}

#[test]
fn the_error_displays_what_was_found() {
    let map = SnapshotMap::new();
    map.insert(1, 10);
    let err = map.compare_exchange(&1, &0, 5).unwrap_err();
    assert_eq!(err.to_string(), "compare_exchange failed: found 10");
    let err = map.compare_exchange(&2, &0, 5).unwrap_err();
    assert_eq!(err.to_string(), "compare_exchange failed: key absent");
    let _: &dyn std::error::Error = &err;
}

#[test]
fn remove_if_removes_only_when_asked_and_publishes_only_then() {
    let map: SnapshotMap<u32, u32> = (0..5).map(|i| (i, i * 10)).collect();
    assert_eq!(map.remove_if(&1, |v| *v == 11), None);
    assert_eq!(map.remove_if(&9, |_| true), None);
    assert_eq!(map.version(), 0);
    assert_eq!(map.remove_if(&1, |v| *v == 10), Some(10));
    assert_eq!((map.version(), map.len()), (1, 4));
    assert!(!map.contains_key(&1));
}

std::thread_local! {
    /// A write `PartialEq`/the predicate makes to the map on its next call.
    static ON_NEXT_CALL: Cell<Option<u32>> = const { Cell::new(None) };
}

/// A value whose comparison first performs the planned write (standing for
/// another writer that publishes between the check and the lock).
#[derive(Clone, Debug)]
struct Meddling(u32, Option<Arc<SnapshotMap<u32, Meddling>>>);

impl PartialEq for Meddling {
    fn eq(&self, other: &Self) -> bool {
        if let (Some(value), Some(map)) = (ON_NEXT_CALL.with(Cell::take), &self.1) {
            map.insert(1, Meddling(value, None));
        }
        self.0 == other.0
    }
}

#[test]
fn compare_exchange_checks_again_when_a_write_came_in_between() {
    no_hang(|| {
        let map = Arc::new(SnapshotMap::new());
        map.insert(1, Meddling(1, Some(Arc::clone(&map))));
        // The first comparison (no lock) matches, then publishes 1 -> 2; the
        // second (under the lock, on the newest version) sees 2: no swap.
        ON_NEXT_CALL.with(|w| w.set(Some(2)));
        let err = map
            .compare_exchange(&1, &Meddling(1, None), Meddling(3, None))
            .unwrap_err();
        assert_eq!(err.current.map(|v| v.0), Some(2));
        assert_eq!(err.new.0, 3);
        assert_eq!(map.get(&1).map(|v| v.0), Some(2));
        // Meddling that writes the same value: the recheck matches, the swap lands.
        map.insert(1, Meddling(5, Some(Arc::clone(&map))));
        ON_NEXT_CALL.with(|w| w.set(Some(5)));
        let old = map.compare_exchange(&1, &Meddling(5, None), Meddling(6, None));
        assert_eq!(old.map(|v| v.0), Ok(5));
        assert_eq!(map.get(&1).map(|v| v.0), Some(6));
    });
}

#[test]
fn remove_if_asks_again_when_a_write_came_in_between() {
    no_hang(|| {
        let map: SnapshotMap<u32, u32> = [(1, 1)].into_iter().collect();
        let mut asked = Vec::new();
        let removed = map.remove_if(&1, |v| {
            asked.push(*v);
            if asked.len() == 1 {
                map.insert(1, 2); // no lock held yet: an ordinary write
            }
            *v == 1 || asked.len() == 1
        });
        assert_eq!(asked, [1, 2], "asked once per version it decided on");
        assert_eq!(removed, None);
        assert_eq!(map.get_cloned(&1), Some(2));
    });
}

#[test]
fn a_predicate_that_writes_under_the_lock_panics_instead_of_deadlocking() {
    no_hang(|| {
        let map: SnapshotMap<u32, u32> = [(1, 1)].into_iter().collect();
        // Every call writes: the first (no lock) lands; the second runs under the
        // writer lock, where the write would deadlock.
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            map.remove_if(&1, |v| {
                map.insert(2, *v);
                true
            })
        }));
        let panic = panicked.expect_err("re-entrant write");
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(message.contains("writer lock"), "{message}");
        assert_eq!(map.get_cloned(&1), Some(1));
        assert_eq!(map.stats().aborted, 1);
        assert_eq!(map.remove_if(&1, |_| true), Some(1));
    });
}

#[test]
fn a_panicking_comparison_leaves_the_map_as_it_was() {
    #[derive(Clone, Debug)]
    struct Explosive(u32);
    impl PartialEq for Explosive {
        fn eq(&self, _: &Self) -> bool {
            panic!("eq panics on purpose")
        }
    }
    let map = SnapshotMap::new();
    map.insert(1, Explosive(1));
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        map.compare_exchange(&1, &Explosive(1), Explosive(2))
    }));
    assert!(panicked.is_err());
    assert_eq!((map.version(), map.get(&1).map(|v| v.0)), (1, Some(1)));
    // It panicked in the first check, before taking the lock: not an aborted write.
    assert_eq!(map.stats().aborted, 0);
    map.insert(2, Explosive(2)); // the lock is free
}

#[test]
fn concurrent_compare_exchange_increments_are_exact() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = if cfg!(miri) { 5 } else { 200 };
    let map: SnapshotMap<&str, u64> = [("n", 0), ("other", 0)].into_iter().collect();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..PER_THREAD {
                    let mut current = map.get_cloned("n").unwrap();
                    loop {
                        match map.compare_exchange("n", &current, current + 1) {
                            Ok(old) => {
                                assert_eq!(old, current);
                                break;
                            }
                            Err(err) => {
                                assert!(err.current.unwrap() > current, "values only grow");
                                current = err.current.unwrap();
                            }
                        }
                    }
                }
            });
        }
    });
    assert_eq!(map.get_cloned("n"), Some(THREADS * PER_THREAD));
    assert_eq!(
        map.version(),
        THREADS * PER_THREAD,
        "one publish per success"
    );
    assert_eq!(map.get_cloned("other"), Some(0));
}

#[test]
fn concurrent_remove_if_removes_each_key_exactly_once() {
    const KEYS: u32 = if cfg!(miri) { 20 } else { 500 };
    let map: SnapshotMap<u32, u32> = (0..KEYS).map(|i| (i, i)).collect();
    let removed: Vec<Vec<u32>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let map = &map;
                s.spawn(move || {
                    (0..KEYS)
                        .map(|i| (i + t * 61) % KEYS) // each thread its own order
                        .filter(|k| map.remove_if(k, |v| v == k).is_some())
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all: Vec<u32> = removed.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (0..KEYS).collect::<Vec<_>>());
    assert!(map.is_empty());
    assert_eq!(map.version(), u64::from(KEYS));
}
