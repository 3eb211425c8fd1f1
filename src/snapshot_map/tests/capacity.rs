//! Capacity of a copy-on-write map: pre-sizing, reserving and shrinking publish
//! versions with the same contents, and only when they change the capacity.

use std::collections::HashMap;

use crate::SnapshotMap;

fn contents(map: &SnapshotMap<u32, u32>) -> HashMap<u32, u32> {
    map.iter().collect()
}

#[test]
fn with_capacity_sizes_version_zero_and_copies_inherit_the_room() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(500);
    let capacity = map.capacity();
    assert!(capacity >= 500);
    assert_eq!((map.len(), map.version(), map.stats().published), (0, 0, 0));
    for i in 0..500 {
        map.insert(i, i);
        assert_eq!(map.capacity(), capacity, "insert {i} regrew the table");
    }
    assert_eq!(map.snapshot().capacity(), capacity);
}

#[test]
fn reserve_publishes_only_when_it_grows_the_table() {
    let map: SnapshotMap<u32, u32> = (0..10).map(|i| (i, i * 3)).collect();
    let before = contents(&map);
    map.reserve(0);
    assert_eq!(map.version(), 0, "room for 0 more: nothing to do");
    map.reserve(1000);
    assert_eq!(map.version(), 1);
    assert!(map.capacity() >= 1010);
    assert_eq!(contents(&map), before);
    let stats = map.stats();
    assert_eq!((stats.copies, stats.copied_entries), (1, 10));
    let capacity = map.capacity();
    map.reserve(500); // already there
    assert_eq!(map.version(), 1);
    // The room survives writes that do not remove keys.
    for i in 10..1010 {
        map.insert(i, i);
    }
    assert_eq!(map.capacity(), capacity);
}

#[test]
fn shrink_to_fit_publishes_only_when_it_frees_memory() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(4096);
    map.batch(|txn| txn.extend((0..20).map(|i| (i, i))));
    let before = contents(&map);
    let version = map.version();
    map.shrink_to_fit();
    assert_eq!(map.version(), version + 1);
    assert!(map.capacity() < 4096 && map.capacity() >= 20);
    assert_eq!(contents(&map), before);
    let shrunk = map.capacity();
    map.shrink_to_fit(); // already as small as it gets
    assert_eq!((map.version(), map.capacity()), (version + 1, shrunk));
}

#[test]
fn batch_reserve_and_shrink_work_on_the_copy() {
    let map: SnapshotMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    map.batch(|txn| {
        assert!(txn.capacity() >= 100);
        txn.reserve(10_000);
        assert!(txn.capacity() >= 10_100);
        assert!(txn.is_changed());
        assert_eq!(txn.len(), 100);
        txn.reserve(10); // room already: a no-op on the copy
        txn.shrink_to_fit();
        assert!(txn.capacity() < 10_000);
    });
    assert_eq!(map.len(), 100);
    assert!(map.capacity() < 10_000);
    // A batch whose reserve finds room changes nothing.
    map.batch(|txn| {
        txn.reserve(1);
        assert!(!txn.is_changed());
    });
    assert_eq!(map.version(), 1);
}

#[test]
fn a_batch_that_removes_most_keys_gives_the_memory_back() {
    let map: SnapshotMap<u32, u32> = (0..4096).map(|i| (i, i)).collect();
    let big = map.capacity();
    map.retain(|k, _| *k < 16);
    assert_eq!(map.len(), 16);
    assert!(map.capacity() * 8 < big, "{} vs {big}", map.capacity());
    // Removing into a copy made by an earlier change shrinks too.
    let map: SnapshotMap<u32, u32> = (0..4096).map(|i| (i, i)).collect();
    map.batch(|txn| {
        txn.insert(5000, 5000);
        for i in 16..4096 {
            txn.remove(&i);
        }
    });
    assert_eq!(map.len(), 17);
    assert!(map.capacity() * 8 < big);
}

#[test]
fn retain_keeps_the_room_unless_it_leaves_the_table_under_a_quarter_full() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(1000);
    map.batch(|txn| txn.extend((0..600).map(|i| (i, i))));
    let room = map.capacity();
    map.retain(|k, _| *k != 0);
    assert_eq!((map.len(), map.capacity()), (599, room));
    map.batch(|txn| txn.retain(|k, _| *k != 1));
    assert_eq!((map.len(), map.capacity()), (598, room));
    // Under a quarter full: the memory comes back.
    map.retain(|k, _| *k < 100);
    assert!(map.capacity() < room / 4, "{} of {room}", map.capacity());
}
