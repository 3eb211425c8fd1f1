//! Reads, single-key writes, versions, snapshots and stats.

use std::collections::hash_map::RandomState;

use crate::{Snapshot, SnapshotMap, SnapshotRef};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn handles_are_send_and_sync() {
    assert_send_sync::<SnapshotMap<String, Vec<u8>>>();
    assert_send_sync::<Snapshot<String, Vec<u8>, RandomState>>();
    assert_send_sync::<crate::SnapshotIntoIter<String, u8, RandomState>>();
    assert_send_sync::<crate::Watcher<'static, String, u8, RandomState>>();
    assert_send_sync::<crate::Changed<'static, 'static, String, u8, RandomState>>();
}

#[test]
fn empty_map_is_version_zero() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::new();
    assert_eq!((map.len(), map.version()), (0, 0));
    assert!(map.is_empty());
    assert!(map.get(&1).is_none());
    assert_eq!(map.iter().count(), 0);
    assert_eq!(map.stats().published, 0);
}

#[test]
fn each_publish_bumps_the_version_once() {
    let map = SnapshotMap::new();
    assert_eq!(map.insert(1, "a"), None);
    assert_eq!(map.insert(1, "b"), Some("a"));
    assert_eq!(
        map.update(&1, |v| if *v == "b" { "c" } else { "x" }),
        Some("c")
    );
    assert_eq!(map.version(), 3);
    // Writes that change nothing publish nothing.
    assert_eq!(map.remove(&9), None);
    assert_eq!(map.update(&9, |_| "z"), None);
    map.retain(|_, _| true);
    map.batch(|_| ());
    assert_eq!(map.version(), 3);
    assert_eq!(map.remove(&1), Some("c"));
    assert_eq!(map.version(), 4);
    assert_eq!(map.stats().published, 4);
}

#[test]
fn get_ref_outlives_later_publishes() {
    let map = SnapshotMap::new();
    map.insert("k", String::from("old"));
    let held: SnapshotRef<_, _, _> = map.get("k").unwrap();
    for i in 0..100 {
        map.insert("k", format!("new{i}"));
    }
    assert_eq!(*held, "old");
    assert_eq!(map.get("k").as_deref().map(String::as_str), Some("new99"));
    assert_eq!(map.stats().held, 1, "only the version `held` points into");
    drop(held);
    assert_eq!(map.stats().held, 0);
}

#[test]
fn a_snapshot_held_across_1000_publishes_reads_its_own_version() {
    let map: SnapshotMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    let first = map.snapshot();
    for round in 1..=1000u32 {
        map.batch(|txn| {
            txn.insert(round % 100, round * 1000);
            txn.insert(1000 + round, round);
            txn.remove(&(round % 7));
        });
    }
    assert_eq!(map.version(), 1000);
    assert_eq!(first.version(), 0);
    assert_eq!(first.len(), 100);
    for i in 0..100 {
        assert_eq!(first.get(&i), Some(&i));
    }
    assert!(first.get(&1001).is_none());
    let mut seen: Vec<_> = first.iter().map(|(k, v)| (*k, *v)).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..100).map(|i| (i, i)).collect::<Vec<_>>());
    // Versions 1..999 had no holder and are gone; version 0 is held.
    let stats = map.stats();
    assert_eq!((stats.retired, stats.freed, stats.held), (1000, 999, 1));
    drop(first);
    assert_eq!(map.stats().held, 0);
}

#[test]
fn iterators_see_one_version() {
    let map: SnapshotMap<u32, u32> = (0..1000).map(|i| (i, 1)).collect();
    let mut owned = map.iter();
    let snapshot = map.snapshot();
    let mut by_ref = snapshot.iter();
    // Half-way through, rewrite everything.
    let first_half: u32 = owned.by_ref().take(500).map(|(_, v)| v).sum::<u32>()
        + by_ref.by_ref().take(500).map(|(_, v)| *v).sum::<u32>();
    map.replace_all((0..1000).map(|i| (i, 2)));
    map.clear();
    let rest: u32 = owned.map(|(_, v)| v).sum::<u32>() + by_ref.map(|(_, v)| *v).sum::<u32>();
    assert_eq!(first_half + rest, 2000, "both iterators saw only version 0");
    assert!(map.is_empty());
}

#[test]
fn replace_all_returns_the_replaced_version_and_later_pairs_win() {
    let map = SnapshotMap::new();
    map.insert("a", 1);
    let old = map.replace_all([("b", 1), ("b", 2)]);
    assert_eq!(old.get("a"), Some(&1));
    assert_eq!(map.get_cloned("b"), Some(2));
    assert_eq!(map.len(), 1);
    let stats = map.stats();
    assert_eq!(
        stats.copies, 1,
        "only the insert copied; replace_all builds anew"
    );
    assert_eq!(stats.held, 1, "`old` holds the replaced version");
}

#[test]
fn retain_publishes_once_and_copies_only_kept_entries() {
    let map: SnapshotMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    map.retain(|k, _| k % 4 == 0);
    assert_eq!(map.len(), 25);
    assert_eq!(map.version(), 1);
    assert_eq!(map.stats().copied_entries, 25);
    assert!((0..100).all(|k| map.contains_key(&k) == (k % 4 == 0)));
}

#[test]
fn snapshots_compare_by_version_and_by_contents() {
    let map = SnapshotMap::new();
    let empty = map.snapshot();
    map.insert(1, 1);
    let one = map.snapshot();
    map.remove(&1);
    let empty_again = map.snapshot();
    assert!(!empty.same_version(&empty_again));
    assert_eq!(empty, empty_again);
    assert_ne!(empty, one);
    assert!(one.clone().same_version(&one));
    assert_eq!(format!("{one:?}"), "{1: 1}");
    assert_eq!(format!("{map:?}"), "{}");
}

#[test]
fn stats_count_bytes_of_held_and_current_versions() {
    let map: SnapshotMap<u64, [u8; 64]> = (0..1000).map(|i| (i, [0; 64])).collect();
    let big = map.stats().current_bytes;
    assert!(
        big >= 1000 * (8 + 64),
        "current_bytes covers the bucket array: {big}"
    );
    let held = map.snapshot();
    map.clear();
    let stats = map.stats();
    assert_eq!(stats.held, 1);
    assert_eq!(stats.held_bytes, big);
    assert!(stats.current_bytes < big);
    drop(held);
    let stats = map.stats();
    assert_eq!(stats.held_bytes, 0);
    assert_eq!((stats.retired_bytes, stats.freed_bytes), (big, big));
    assert_eq!((stats.peak_held, stats.peak_held_bytes), (1, big));
}

#[test]
fn stats_keep_the_high_water_mark_of_held_versions() {
    let map: SnapshotMap<u64, u64> = SnapshotMap::new();
    let mut snapshots = Vec::new();
    for i in 0..5 {
        snapshots.push(map.snapshot());
        map.insert(i, i);
    }
    let stats = map.stats();
    assert_eq!((stats.held, stats.peak_held), (5, 5));
    let peak_bytes = stats.peak_held_bytes;
    assert_eq!(peak_bytes, stats.held_bytes);
    snapshots.clear();
    map.insert(9, 9); // a retirement with nothing else held: the peak stays
    let stats = map.stats();
    assert_eq!((stats.held, stats.peak_held), (0, 5));
    assert_eq!(stats.peak_held_bytes, peak_bytes);
    assert_eq!(stats.retired, stats.freed);
    assert_eq!(stats.retired_bytes, stats.freed_bytes);
}

#[test]
fn the_peak_counts_only_what_snapshots_hold() {
    let map: SnapshotMap<u64, u64> = SnapshotMap::new();
    for i in 0..10 {
        map.insert(i, i);
    }
    map.clear();
    let stats = map.stats();
    assert_eq!((stats.retired, stats.freed), (11, 11));
    assert_eq!(stats.peak_held, 0, "the writer's own handle is no hold");
    // The version `replace_all` hands back is held until the caller drops it.
    drop(map.replace_all([(1, 1)]));
    assert_eq!((map.stats().held, map.stats().peak_held), (0, 1));
    let held = map.snapshot();
    for i in 0..100 {
        map.insert(i, i);
    }
    let stats = map.stats();
    assert_eq!((stats.held, stats.peak_held), (1, 1));
    drop(held);
    assert_eq!(map.stats().held, 0);
}

#[test]
fn dropping_the_map_keeps_snapshots_readable() {
    let map = SnapshotMap::new();
    map.insert(String::from("k"), String::from("v"));
    let snapshot = map.snapshot();
    drop(map);
    assert_eq!(snapshot.get("k").map(String::as_str), Some("v"));
}

#[test]
fn extend_is_one_batch() {
    let mut map = SnapshotMap::new();
    map.extend((0..10).map(|i| (i, i)));
    (&map).extend((10..20).map(|i| (i, i)));
    map.extend(std::iter::empty::<(i32, i32)>());
    assert_eq!((map.len(), map.version()), (20, 2));
}

#[test]
fn memory_comes_back_after_mass_removal() {
    let map: SnapshotMap<u64, u64> = (0..10_000).map(|i| (i, i)).collect();
    let big = map.stats().current_bytes;
    map.batch(|txn| {
        for i in 0..9_990 {
            txn.remove(&i);
        }
    });
    assert_eq!(map.len(), 10);
    assert!(map.stats().current_bytes * 10 < big, "{:?}", map.stats());
    assert!((9_990..10_000).all(|k| map.get_cloned(&k) == Some(k)));
}
