//! The promotion rule (misses >= len(dirty)), the dirty copy, `promote()`, and
//! the tombstone-triggered compaction (half of the read table, no minimum),
//! checked with exact counts from `stats()`.

use crate::classic::ClassicSyncMap;
use crate::test_support::{flush_until_quiet, Counted, DropLog, Slot};

fn map_with_dirty_keys(n: u32) -> ClassicSyncMap<u32, u32> {
    let map = ClassicSyncMap::new();
    for i in 0..n {
        assert_eq!(map.insert(i, i), None);
    }
    map
}

#[test]
fn promotes_exactly_when_misses_reach_dirty_len() {
    let n = 8;
    let map = map_with_dirty_keys(n);
    let stats = map.stats();
    assert_eq!(
        (stats.misses, stats.promotions, stats.dirty_copies),
        (0, 0, 1),
        "inserts count no misses; the first new key copied the (empty) read table once"
    );
    assert!(map.amended());
    assert_eq!(map.dirty_len(), Some(n as usize));
    assert_eq!(map.read_len(), 0);
    for i in 0..n - 1 {
        assert_eq!(map.get_cloned(&i), Some(i));
        let stats = map.stats();
        assert_eq!(stats.misses, u64::from(i) + 1);
        assert_eq!(stats.promotions, 0, "promoted after only {} misses", i + 1);
        assert_eq!(map.pending_misses(), i as usize + 1);
        map.check_invariants();
    }
    // The n-th miss reaches len(dirty): promotion.
    assert_eq!(map.get_cloned(&(n - 1)), Some(n - 1));
    let stats = map.stats();
    assert_eq!((stats.misses, stats.promotions), (u64::from(n), 1));
    assert!(!map.amended());
    assert_eq!(map.dirty_len(), None);
    assert_eq!(map.read_len(), n as usize);
    assert_eq!(map.pending_misses(), 0);
    map.check_invariants();
    // Every key is now served by the read table, and absent keys are answered
    // without the lock while the read table is not amended.
    for i in 0..n {
        assert_eq!(map.get_cloned(&i), Some(i));
    }
    assert_eq!(map.get_cloned(&1000), None);
    assert!(!map.contains_key(&1001));
    assert_eq!(map.remove(&1002), None);
    assert_eq!(map.stats().misses, u64::from(n));
    assert_eq!(map.stats().promotions, 1);
}

#[test]
fn every_lookup_that_misses_read_while_amended_counts_a_miss() {
    // get, contains_key, get_key_value, remove, update, compare_exchange and
    // remove_if of keys absent from `read` all take the locked path.
    let map = map_with_dirty_keys(16);
    let pinned = map.pin();
    assert_eq!(pinned.get(&100), None);
    assert!(!pinned.contains_key(&101));
    assert_eq!(pinned.get_key_value(&102), None);
    assert_eq!(pinned.remove(&103), None);
    assert_eq!(pinned.update(&104, |v| v + 1), None);
    assert!(pinned.compare_exchange(&105, &0, 1).is_err());
    assert_eq!(pinned.remove_if(&106, |_| true), None);
    assert_eq!(map.stats().misses, 7);
    assert_eq!(pinned.get(&0), Some(&0)); // a dirty key: a miss too
    assert_eq!(map.stats().misses, 8);
    assert_eq!(map.stats().promotions, 0);
    drop(pinned);
    map.check_invariants();
}

#[test]
fn misses_on_absent_keys_count_toward_promotion() {
    let map = map_with_dirty_keys(4);
    for probe in 0..3 {
        assert_eq!(map.get_cloned(&(100 + probe)), None);
    }
    assert_eq!((map.stats().misses, map.stats().promotions), (3, 0));
    assert_eq!(map.get_cloned(&200), None);
    assert_eq!((map.stats().misses, map.stats().promotions), (4, 1));
    assert_eq!(map.read_len(), 4);
    map.check_invariants();
}

#[test]
fn lookups_of_read_keys_never_miss_while_amended() {
    let map = map_with_dirty_keys(10);
    map.promote();
    assert_eq!(map.insert(1000, 0), None);
    assert!(map.amended());
    let misses = map.stats().misses;
    for _ in 0..100 {
        for i in 0..10 {
            assert_eq!(map.get_cloned(&i), Some(i));
            // Updates of keys in `read` are lock-free and count nothing either.
            assert_eq!(map.insert(i, i), Some(i));
        }
    }
    assert_eq!(map.stats().misses, misses);
    assert_eq!(map.stats().promotions, 1);
    map.check_invariants();
}

#[test]
fn get_or_insert_of_a_dirty_key_counts_a_miss_but_a_new_key_does_not() {
    let map = map_with_dirty_keys(3);
    let pinned = map.pin();
    assert!(pinned.get_or_insert(50, 50).is_stored());
    assert_eq!(
        map.stats().misses,
        0,
        "storing a new key is not a lookup miss"
    );
    assert_eq!(*pinned.get_or_insert(0, 9).value(), 0);
    assert_eq!(
        map.stats().misses,
        1,
        "loading a dirty key is a miss (Go's LoadOrStore)"
    );
    drop(pinned);
    map.check_invariants();
}

#[test]
fn remove_of_a_dirty_key_counts_a_miss_and_may_promote() {
    let map = map_with_dirty_keys(2);
    assert_eq!(map.remove(&0), Some(0));
    // The dirty table shrank to 1 and the miss reached it: promoted.
    let stats = map.stats();
    assert_eq!((stats.misses, stats.promotions), (1, 1));
    assert_eq!(map.read_len(), 1);
    assert_eq!(map.slots(&0), (None, None));
    assert_eq!(map.get_cloned(&1), Some(1));
    assert_eq!(map.len(), 1);
    map.check_invariants();
}

#[test]
fn first_new_key_after_promotion_copies_live_entries_and_expunges_deleted_ones() {
    let map = map_with_dirty_keys(10);
    map.promote();
    let copies = map.stats().dirty_copies;
    for i in [2, 5, 7] {
        assert_eq!(map.remove(&i), Some(i));
    }
    assert_eq!(map.stats().dirty_copies, copies, "removes never copy");
    assert_eq!(map.dirty_len(), None);
    assert_eq!(map.tombstones(), 3);
    assert_eq!(map.insert(100, 100), None);
    assert_eq!(map.stats().dirty_copies, copies + 1);
    assert_eq!(
        map.tombstones(),
        0,
        "the copy purged the 3 tombstones it counts"
    );
    assert_eq!(map.dirty_len(), Some(8)); // 7 live + the new key
    for i in 0..10 {
        let expected = if [2, 5, 7].contains(&i) {
            (Some(Slot::Expunged), None)
        } else {
            (Some(Slot::Live), Some(Slot::Live))
        };
        assert_eq!(map.slots(&i), expected, "key {i}");
    }
    assert_eq!(map.insert(101, 101), None);
    assert_eq!(
        map.stats().dirty_copies,
        copies + 1,
        "one copy per promotion"
    );
    map.check_invariants();
}

#[test]
fn promote_publishes_pending_keys() {
    let map = map_with_dirty_keys(100);
    assert_eq!(map.stats().misses, 0);
    map.promote();
    let stats = map.stats();
    assert_eq!(stats.promotions, 1);
    assert_eq!(
        stats.dirty_copies, 1,
        "the dirty table existed: no second copy"
    );
    assert!(!map.amended());
    assert_eq!(map.dirty_len(), None);
    assert_eq!(map.read_len(), 100);
    for i in 0..100 {
        assert_eq!(map.get_cloned(&i), Some(i));
    }
    assert_eq!(
        map.stats().misses,
        0,
        "published keys are served without the lock"
    );
    map.check_invariants();

    // Promoting again with nothing pending keeps every key and the map usable.
    map.promote();
    assert_eq!(map.stats().promotions, 2);
    assert!(!map.amended());
    assert_eq!(map.read_len(), 100);
    assert_eq!(map.len(), 100);
    map.check_invariants();
}

#[test]
fn promote_on_an_empty_map() {
    let map: ClassicSyncMap<u32, u32> = ClassicSyncMap::new();
    map.promote();
    map.promote();
    assert!(!map.amended());
    assert_eq!(map.read_len(), 0);
    assert!(map.is_empty());
    map.check_invariants();
    assert_eq!(map.insert(1, 1), None);
    assert_eq!(map.get_cloned(&1), Some(1));
    map.check_invariants();
}

#[test]
fn promote_drops_entries_of_removed_keys() {
    let map = map_with_dirty_keys(10);
    map.promote();
    for i in 0..3 {
        assert_eq!(map.remove(&i), Some(i));
    }
    // Tombstones stay in `read` until something rebuilds it.
    assert_eq!(map.read_len(), 10);
    assert_eq!(map.slots(&0), (Some(Slot::Deleted), None));
    // A dirty-only key deleted by remove_if keeps its (deleted) entry in `dirty`.
    assert_eq!(map.insert(50, 50), None);
    assert_eq!(map.insert(51, 51), None);
    assert_eq!(map.pin().remove_if(&50, |_| true), Some(&50));
    assert_eq!(map.slots(&50), (None, Some(Slot::Deleted)));
    map.check_invariants();

    map.promote();
    assert_eq!(map.read_len(), 8); // 3..10 and 51
    assert_eq!(map.dirty_len(), None);
    for i in (0..3).chain([50]) {
        assert_eq!(map.slots(&i), (None, None), "key {i}");
        assert_eq!(map.get_cloned(&i), None);
    }
    assert_eq!(map.len(), 8);
    map.check_invariants();
}

#[test]
fn removes_compact_once_tombstones_reach_half_of_the_table() {
    let log = DropLog::new();
    // Any size: compaction has no minimum (see `small_tables_compact_too`).
    let n = 64;
    let map: ClassicSyncMap<Counted<u32>, u32> = ClassicSyncMap::new();
    let mut key_ids = Vec::new();
    for i in 0..n {
        let key = log.make(i);
        key_ids.push(key.id);
        map.insert(key, i);
    }
    map.promote();
    let base = map.stats();
    assert_eq!(base.compactions, 0);
    let half = n / 2;
    for i in 0..half - 1 {
        assert_eq!(map.remove(&log.make(i)), Some(i));
    }
    let stats = map.stats();
    assert_eq!(stats.compactions, 0, "compacted below half");
    assert_eq!(stats.promotions, base.promotions);
    assert_eq!(map.read_len(), n as usize);
    // The removal that makes tombstones half of the table compacts it.
    assert_eq!(map.remove(&log.make(half - 1)), Some(half - 1));
    let stats = map.stats();
    assert_eq!(stats.compactions, 1);
    assert_eq!(stats.promotions, base.promotions + 1);
    assert!(!map.amended());
    assert_eq!(map.read_len(), (n - half) as usize);
    assert_eq!(map.len(), (n - half) as usize);
    for i in 0..n {
        let expected = if i < half {
            (None, None)
        } else {
            (Some(Slot::Live), None)
        };
        assert_eq!(map.slots(&log.make(i)), expected, "key {i}");
    }
    map.check_invariants();
    // The entries (and keys) of removed keys are freed; the others stay.
    flush_until_quiet(&map);
    log.flush_until_dropped(&key_ids[..half as usize]);
    for (i, id) in key_ids.iter().enumerate().skip(half as usize) {
        assert!(!log.is_dropped(*id), "key {i} is live but was dropped");
    }
    drop(map);
    log.flush_until_all_dropped();
}

#[test]
fn compaction_repeats_as_the_table_shrinks() {
    let n = 1000u32;
    let map = map_with_dirty_keys(n);
    map.promote();
    for i in 0..499 {
        map.remove(&i);
    }
    assert_eq!(map.stats().compactions, 0);
    map.remove(&499);
    assert_eq!(map.stats().compactions, 1);
    assert_eq!(map.read_len(), 500);
    for i in 500..749 {
        map.remove(&i);
    }
    assert_eq!(map.stats().compactions, 1);
    map.remove(&749);
    assert_eq!(map.stats().compactions, 2);
    assert_eq!(map.read_len(), 250);
    // And on down to an empty table: tombstones never make up half of it.
    for i in 750..n {
        map.remove(&i);
        let (read_len, live) = (map.read_len(), map.len());
        assert!(
            (read_len - live) * 2 < read_len || read_len == 0,
            "{} tombstones in a read table of {read_len}",
            read_len - live
        );
        map.check_invariants();
    }
    // 250 → 125 → 62 → 31 → 15 → 7 → 3 → 1 → 0.
    assert_eq!(map.stats().compactions, 2 + 8);
    assert_eq!(map.read_len(), 0);
    assert!(map.is_empty());
    map.check_invariants();
}

/// There is no minimum size for compaction (there was one, 64, which let up to
/// 63 dead entries stay in a read table forever without new keys).
#[test]
fn small_tables_compact_too() {
    let n = 63;
    let map = map_with_dirty_keys(n);
    map.promote();
    for i in 0..n {
        assert_eq!(map.remove(&i), Some(i));
    }
    // 63 → 31 → 15 → 7 → 3 → 1 → 0.
    assert_eq!(map.stats().compactions, 6);
    assert_eq!(map.read_len(), 0);
    assert!(map.is_empty());
    map.check_invariants();
    // A single key removed from a single-entry table compacts it at once.
    assert_eq!(map.insert(1000, 0), None);
    map.promote();
    assert_eq!(map.read_len(), 1);
    assert_eq!(map.remove(&1000), Some(0));
    assert_eq!(map.stats().compactions, 7);
    assert_eq!(map.read_len(), 0);
    map.check_invariants();
}

#[test]
fn compaction_with_a_dirty_table_keeps_new_keys() {
    let n = 64;
    let map = map_with_dirty_keys(n);
    map.promote();
    assert_eq!(map.insert(1000, 1000), None);
    assert!(map.amended());
    for i in 0..n / 2 {
        assert_eq!(map.remove(&i), Some(i));
    }
    assert_eq!(map.stats().compactions, 1);
    assert!(!map.amended());
    assert_eq!(map.read_len(), (n / 2 + 1) as usize);
    assert_eq!(map.slots(&1000), (Some(Slot::Live), None));
    assert_eq!(map.get_cloned(&1000), Some(1000));
    for i in 0..n {
        assert_eq!(map.get_cloned(&i), (i >= n / 2).then_some(i));
    }
    map.check_invariants();
}

#[test]
fn compaction_during_retain_keeps_the_right_keys() {
    let map = map_with_dirty_keys(200);
    map.promote();
    map.retain(|k, _| k % 2 == 0);
    assert!(map.stats().compactions >= 1);
    assert_eq!(map.len(), 100);
    assert_eq!(map.read_len(), 100, "the last removal compacted the table");
    for i in 0..200 {
        assert_eq!(map.get_cloned(&i), (i % 2 == 0).then_some(i));
    }
    map.check_invariants();
}

#[test]
fn iteration_and_retain_promote_first() {
    let map = map_with_dirty_keys(5);
    assert!(map.amended());
    let mut seen: Vec<u32> = map.pin().iter().map(|(k, _)| *k).collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    assert_eq!(map.stats().promotions, 1);
    assert!(!map.amended());
    assert_eq!(map.insert(5, 5), None);
    assert!(map.amended());
    let mut kept = 0;
    map.retain(|_, _| {
        kept += 1;
        true
    });
    assert_eq!(kept, 6);
    assert_eq!(map.stats().promotions, 2);
    assert!(!map.amended());
    map.check_invariants();
}

/// The docs promise that "once removed keys make up half of the read table, the
/// map rebuilds it without them". Removes made while a dirty table exists delete
/// entries shared with it, and a promotion by misses carries those tombstones
/// into the new read table: they must still count (a plain promotion keeps the
/// tombstone count; it once reset it to 0, and here 51 of the 101 entries were
/// then dead with nothing compacting).
#[test]
fn tombstones_carried_by_a_promotion_count_toward_compaction() {
    let map = map_with_dirty_keys(100);
    map.promote();
    assert_eq!(map.insert(1000, 1000), None); // dirty copy: 100 + 1 entries
    for i in 0..49 {
        assert_eq!(map.remove(&i), Some(i)); // 49 * 2 < 100: no compaction yet
    }
    assert_eq!(map.stats().compactions, 0);
    assert_eq!(map.tombstones(), 49);
    let mut absent = 10_000;
    while map.amended() {
        assert_eq!(map.get_cloned(&absent), None); // promotion by misses
        absent += 1;
    }
    assert_eq!(
        map.read_len(),
        101,
        "49 tombstones carried into the new read table"
    );
    assert_eq!(
        map.tombstones(),
        49,
        "a promotion keeps the tombstone count"
    );
    assert_eq!(map.remove(&49), Some(49));
    assert_eq!(map.remove(&50), Some(50));
    // 51 of 101 entries are tombstones now.
    assert!(
        map.stats().compactions >= 1,
        "more than half of the read table is tombstones ({} live of {} entries) \
         and it was not compacted",
        map.len(),
        map.read_len()
    );
    assert_eq!(map.read_len(), 50);
    map.check_invariants();
}
