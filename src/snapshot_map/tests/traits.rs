//! The standard traits: `Clone` (an independent map), `PartialEq` (contents),
//! `Extend` (one batch), `FromIterator`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::SnapshotMap;

/// Counts live instances.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Live(Arc::clone(count))
    }
}

impl Clone for Live {
    fn clone(&self) -> Self {
        Live::new(&self.0)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn a_clone_is_an_independent_map_starting_at_version_zero() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(300);
    map.batch(|txn| txn.extend((0..100).map(|i| (i, i))));
    map.insert(7, 70);
    let copy = map.clone();
    assert_eq!((copy.version(), copy.stats().published), (0, 0));
    assert_eq!(copy.capacity(), map.capacity());
    assert!(copy == map);
    copy.insert(1000, 1);
    map.remove(&7);
    assert_eq!((copy.get_cloned(&7), copy.len()), (Some(70), 101));
    assert_eq!((map.get_cloned(&1000), map.len()), (None, 99));
    let mut watcher = map.watch();
    copy.insert(1001, 1);
    assert!(
        watcher.try_next().is_none(),
        "the clone's publishes are its own"
    );
}

#[test]
fn a_clone_owns_its_values() {
    let live = Arc::new(AtomicUsize::new(0));
    let map: SnapshotMap<u32, Live> = (0..10).map(|i| (i, Live::new(&live))).collect();
    let copy = map.clone();
    assert_eq!(live.load(Ordering::SeqCst), 20);
    drop(map);
    assert_eq!(live.load(Ordering::SeqCst), 10);
    assert_eq!(copy.len(), 10);
    drop(copy);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn equality_compares_contents_not_versions() {
    let a: SnapshotMap<&str, u32> = [("x", 1), ("y", 2)].into_iter().collect();
    let b: SnapshotMap<&str, u32> = SnapshotMap::new();
    b.insert("y", 2);
    b.insert("x", 0);
    assert!(a != b);
    b.update("x", |_| 1);
    assert_eq!(a, b); // Eq: usable in assert_eq!
    assert!(a == a);
    b.insert("z", 3);
    assert_ne!(a, b);
    b.remove("z");
    assert_eq!(a, b);
    let empty: SnapshotMap<&str, u32> = SnapshotMap::new();
    assert_ne!(a, empty);
    assert_eq!(empty, SnapshotMap::new());
}

#[test]
fn extend_by_reference_is_one_batch_of_copies() {
    let source: HashMap<u32, u64> = (0..50).map(|i| (i, u64::from(i) * 2)).collect();
    let mut map: SnapshotMap<u32, u64> = [(0, 999), (100, 100)].into_iter().collect();
    map.extend(&source);
    assert_eq!(map.version(), 1, "one publish");
    assert_eq!(map.stats().copies, 1);
    assert_eq!((map.len(), map.get_cloned(&0)), (51, Some(0)));
    (&map).extend(source.iter().filter(|(k, _)| **k < 5));
    assert_eq!(map.version(), 2);
    (&map).extend(std::iter::empty::<(&u32, &u64)>());
    map.extend(Vec::<(u32, u64)>::new());
    assert_eq!(map.version(), 2, "an empty extend publishes nothing");
    // Inside a batch too.
    map.batch(|txn| txn.extend(&HashMap::from([(200u32, 2u64)])));
    assert_eq!((map.get_cloned(&200), map.version()), (Some(2), 3));
}

#[test]
fn collect_builds_version_zero_and_later_pairs_win() {
    let map: SnapshotMap<u8, char> = [(1, 'a'), (2, 'b'), (1, 'c')].into_iter().collect();
    assert_eq!((map.len(), map.version()), (2, 0));
    assert_eq!(map.get_cloned(&1), Some('c'));
    assert_eq!(map.stats().published, 0);
}
