//! Batches: atomic, lazily copied, abortable.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::SnapshotMap;

#[test]
fn a_batch_copies_once_and_publishes_once() {
    let map: SnapshotMap<u32, u32> = (0..1000).map(|i| (i, i)).collect();
    map.batch(|txn| {
        for i in 0..1000 {
            txn.update(&i, |v| v + 1);
        }
        for i in 1000..1500 {
            txn.insert(i, i);
        }
        txn.remove(&0);
    });
    let stats = map.stats();
    assert_eq!(
        (stats.published, stats.copies, stats.copied_entries),
        (1, 1, 1000)
    );
    assert_eq!(map.len(), 1499);
    assert_eq!(map.get_cloned(&5), Some(6));
}

#[test]
fn a_batch_reads_its_own_writes_and_readers_do_not() {
    let map = SnapshotMap::new();
    map.insert("a", 1);
    map.batch(|txn| {
        txn.insert("b", 2);
        assert_eq!(txn.get("b"), Some(&2));
        assert_eq!(txn.len(), 2);
        assert!(txn.is_changed());
        assert_eq!(txn.base_version(), 1);
        // Readers still see version 1.
        assert_eq!(map.get_cloned("b"), None);
        assert_eq!(map.version(), 1);
    });
    assert_eq!(map.get_cloned("b"), Some(2));
}

#[test]
fn an_error_publishes_nothing() {
    let map = SnapshotMap::new();
    map.insert("a", 1);
    let result: Result<(), &str> = map.try_batch(|txn| {
        txn.insert("b", 2);
        txn.remove("a");
        txn.clear();
        Err("no")
    });
    assert_eq!(result, Err("no"));
    assert_eq!((map.version(), map.len()), (1, 1));
    assert_eq!(map.get_cloned("a"), Some(1));
    let stats = map.stats();
    assert_eq!((stats.aborted, stats.published), (1, 1));
}

/// Counts live instances, to see that an aborted batch leaks nothing.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(live))
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(&self.0)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[test]
fn a_panic_publishes_nothing_leaks_nothing_and_leaves_the_map_usable() {
    let live = Arc::new(AtomicUsize::new(0));
    let map: SnapshotMap<u32, Counted> = (0..100).map(|i| (i, Counted::new(&live))).collect();
    assert_eq!(live.load(Ordering::Relaxed), 100);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        map.batch(|txn| {
            txn.insert(1000, Counted::new(&live)); // copies the 100 entries
            txn.remove(&3);
            panic!("half-way");
        })
    }));
    assert!(panicked.is_err());
    assert_eq!(
        live.load(Ordering::Relaxed),
        100,
        "the partial copy was dropped"
    );
    assert_eq!((map.version(), map.len()), (0, 100));
    assert_eq!(map.stats().aborted, 1);
    // The writer lock was released: writes go on.
    map.insert(1000, Counted::new(&live));
    assert_eq!(map.version(), 1);
    drop(map);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

#[test]
fn a_panicking_update_closure_aborts_the_batch() {
    let map: SnapshotMap<u32, u32> = (0..10).map(|i| (i, i)).collect();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        map.update(&5, |_| panic!("no"));
    }));
    assert!(panicked.is_err());
    assert_eq!(map.get_cloned(&5), Some(5));
    assert_eq!(map.version(), 0);
}

#[test]
fn clear_in_a_batch_does_not_copy() {
    let map: SnapshotMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    map.batch(|txn| {
        txn.clear();
        txn.insert(1, 1);
    });
    assert_eq!(map.len(), 1);
    assert_eq!(map.stats().copied_entries, 0);
}

#[test]
fn writers_are_serialized_and_lose_no_update() {
    let map: SnapshotMap<&str, u64> = [("n", 0)].into_iter().collect();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..250 {
                    map.update("n", |n| n + 1);
                }
            });
        }
    });
    assert_eq!(map.get_cloned("n"), Some(1000));
    assert_eq!(map.version(), 1000);
}

std::thread_local! {
    /// Makes the next `Fragile` hash on this thread panic.
    static PANIC_ON_HASH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A key whose `Hash` panics once `PANIC_ON_HASH` is set.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Fragile(u32);

impl std::hash::Hash for Fragile {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if PANIC_ON_HASH.with(|armed| armed.replace(false)) {
            panic!("hash panics on purpose");
        }
        self.0.hash(state);
    }
}

#[test]
fn a_batch_whose_publish_panics_counts_as_aborted_and_publishes_nothing() {
    let live = Arc::new(AtomicUsize::new(0));
    let map: SnapshotMap<Fragile, Counted> = (0..1000)
        .map(|i| (Fragile(i), Counted::new(&live)))
        .collect();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        map.batch(|txn| {
            txn.retain(|k, _| k.0 < 10);
            // The batch removed most keys: closing it rehashes the copy into a
            // smaller table, and that `Hash` panics.
            PANIC_ON_HASH.with(|armed| armed.set(true));
        })
    }));
    assert!(panicked.is_err());
    assert!(
        !PANIC_ON_HASH.with(|armed| armed.get()),
        "the publish hashed"
    );
    assert_eq!((map.version(), map.len()), (0, 1000));
    assert_eq!(map.stats().aborted, 1);
    assert_eq!(live.load(Ordering::Relaxed), 1000, "the copy was dropped");
    map.retain(|k, _| k.0 < 10);
    assert_eq!((map.version(), map.len()), (1, 10));
    drop(map);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

#[test]
fn a_replace_all_whose_hash_panics_counts_as_aborted() {
    let map: SnapshotMap<Fragile, u32> = [(Fragile(1), 1)].into_iter().collect();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        PANIC_ON_HASH.with(|armed| armed.set(true));
        map.replace_all([(Fragile(2), 2)])
    }));
    assert!(panicked.is_err());
    assert_eq!((map.version(), map.stats().aborted), (0, 1));
    assert_eq!(map.get_cloned(&Fragile(1)), Some(1));
}

#[test]
fn clearing_what_is_already_empty_publishes_nothing() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::new();
    map.clear();
    map.batch(|txn| {
        txn.clear();
        assert!(!txn.is_changed());
    });
    assert_eq!(map.version(), 0);
    map.insert(1, 1);
    map.clear();
    map.clear();
    assert_eq!((map.version(), map.len()), (2, 0));
    // A batch that emptied its copy and clears it again publishes once.
    map.insert(1, 1);
    map.batch(|txn| {
        txn.remove(&1);
        txn.clear();
    });
    assert_eq!((map.version(), map.len()), (4, 0));
}

#[test]
fn a_copy_a_batch_clears_afterwards_still_counts() {
    let map: SnapshotMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    map.batch(|txn| {
        txn.insert(1000, 1000); // copies the 100 entries
        txn.clear();
        txn.insert(1, 1);
    });
    let stats = map.stats();
    assert_eq!((stats.copies, stats.copied_entries), (1, 100));
    assert_eq!(map.len(), 1);
}
