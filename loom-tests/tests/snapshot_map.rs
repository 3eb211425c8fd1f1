//! loom model of `SnapshotMap`'s publication, on the crate's own code. Under
//! loom its published pointer (arc-swap otherwise) is a mutex around an `Arc`
//! (`src/sync.rs`), so this checks the map's own batch / copy / publish logic,
//! not arc-swap.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use readmostly::SnapshotMap;
use readmostly_loom_tests::{check, FixedHasher, Key, Val};

type Map = SnapshotMap<Key, Val, FixedHasher>;

fn pair(map: &Map) -> (Option<u64>, Option<u64>) {
    let snapshot = map.snapshot();
    let a = snapshot.get(&Key::new(1)).map(Val::get);
    let b = snapshot.get(&Key::new(2)).map(Val::get);
    (a, b)
}

/// Model 8: a batch of two inserts races a single insert from another writer and
/// a reader. The reader sees both of the batch's changes or neither (one
/// version); neither writer's change is lost; versions count the publications.
fn snapshot_batch() {
    let map = Arc::new(Map::with_hasher(FixedHasher::default()));
    map.batch(|txn| {
        txn.insert(Key::new(1), Val::new(10));
        txn.insert(Key::new(2), Val::new(20));
    });
    let batcher = {
        let map = Arc::clone(&map);
        thread::spawn(move || {
            map.batch(|txn| {
                txn.insert(Key::new(1), Val::new(11));
                txn.insert(Key::new(2), Val::new(21));
            })
        })
    };
    let single = {
        let map = Arc::clone(&map);
        thread::spawn(move || map.insert(Key::new(3), Val::new(30)).map(|v| v.get()))
    };
    let seen = pair(&map);
    assert!(
        seen == (Some(10), Some(20)) || seen == (Some(11), Some(21)),
        "a batch seen half-applied: {seen:?}"
    );
    batcher.join().unwrap();
    assert_eq!(single.join().unwrap(), None);
    assert_eq!(pair(&map), (Some(11), Some(21)));
    assert_eq!(map.get_cloned(&Key::new(3)).map(|v| v.get()), Some(30));
    assert_eq!((map.len(), map.version()), (3, 3));
}

#[test]
fn snapshot_batch_loom() {
    check("snapshot_batch", Some(3), snapshot_batch);
}
