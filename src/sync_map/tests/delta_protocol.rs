//! Tests specific to the v2 protocol: reads never lock, the delta, promotion
//! triggers, and the structural invariants of a root.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::super::protocol::{LockAudit, MIN_PROMOTION_LEN};
use super::super::SyncMap;
use crate::test_support::Rng;

/// `(locks, reader_locks)` of `map` so far.
fn audit<K, V, S, R: crate::reclaim::Reclaim>(map: &SyncMap<K, V, S, R>) -> (usize, usize) {
    (
        map.lock_audit.locks.load(Ordering::Relaxed),
        map.lock_audit.reader_locks.load(Ordering::Relaxed),
    )
}

/// The churn: 1% inserts of new keys, 1% removes, the rest reads, half of
/// them for absent keys — with every read flagged, no read may take the lock.
#[test]
fn reads_never_take_the_lock_during_churn() {
    let map: Arc<SyncMap<u64, u64>> = Arc::new((0..2_000).map(|k| (k, k)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(4));
    let readers: Vec<_> = (0..3u64)
        .map(|t| {
            let (map, stop, start) = (map.clone(), stop.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut rng = Rng::new(t);
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) || reads < 20_000 {
                    let state = rng.next_u64();
                    // Half the keys are absent (>= 1M never exist); the others hit the
                    // read table or the delta of churned-in keys.
                    let key = if state & 1 == 0 {
                        state % 4_000
                    } else {
                        1_000_000 + state % 4_000
                    };
                    LockAudit::as_reader(|| {
                        let pinned = map.pin();
                        let _ = pinned.get(&key);
                        let _ = pinned.contains_key(&key);
                        let _ = map.get_cloned(&key);
                        if reads.is_multiple_of(512) {
                            assert!(pinned.iter().count() <= 4_000);
                        }
                    });
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    start.wait();
    let mut next_new = 2_000u64;
    for round in 0..20_000u64 {
        match round % 100 {
            0 => {
                map.insert(next_new, next_new);
                next_new += 1;
            }
            1 => {
                map.remove(&(round % next_new));
            }
            _ => {
                map.pin().update(&(round % next_new), |v| v + 1);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let (locks, reader_locks) = audit(&map);
    assert!(reads >= 60_000);
    assert!(
        locks > 0,
        "the writer's new keys take the lock: the audit must see them"
    );
    assert_eq!(reader_locks, 0, "a read operation took the writer lock");
    map.check_root();
}

/// The audit itself can fail: a write flagged as a read is counted.
#[test]
fn lock_audit_catches_a_locking_read() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    LockAudit::as_reader(|| map.insert(1, 1));
    assert_eq!(audit(&map).1, 1);
}

#[test]
fn new_keys_are_found_in_the_delta_without_promotion() {
    let map = SyncMap::new();
    for k in 0..10u32 {
        map.insert(k, k * 2);
    }
    assert_eq!(
        map.stats().promotions,
        0,
        "below the delta bound, no promotion"
    );
    for k in 0..10u32 {
        assert_eq!(map.get_cloned(&k), Some(k * 2));
    }
    assert!(map.stats().delta_reads > 0);
    map.check_root();
    let (read, delta) = map.root_sizes();
    assert_eq!((read, delta), (0, 10));
}

#[test]
fn delta_grows_and_keeps_every_key() {
    let map = SyncMap::new();
    // Below the promotion bound the delta holds everything and must grow.
    for k in 0..(MIN_PROMOTION_LEN as u64 - 1) {
        map.insert(k, k);
        map.check_root();
    }
    assert!(map.stats().delta_growths >= 2);
    for k in 0..(MIN_PROMOTION_LEN as u64 - 1) {
        assert_eq!(map.get_cloned(&k), Some(k));
    }
}

#[test]
fn a_full_delta_holding_half_the_read_table_is_merged_instead_of_grown() {
    let map: SyncMap<u64, u64> = (0..1_000).map(|k| (k, k)).collect();
    assert_eq!(map.root_sizes(), (1_000, 0));
    let promotions = map.stats().promotions;
    let mut next = 1_000;
    while map.stats().promotions == promotions {
        map.insert(next, next);
        next += 1;
        assert!(next < 5_000, "the delta never merged");
    }
    // The insert that merged went into the fresh delta; the delta it merged was
    // full and held at least half of the read table.
    let merged = next - 1_000 - 1;
    let (read, delta) = map.root_sizes();
    assert_eq!((read as u64, delta), (1_000 + merged, 1));
    assert!(
        merged >= 500,
        "merged a delta of {merged} keys, under half of 1,000"
    );
    assert!(
        merged <= 1_024,
        "the delta grew past the read table: {merged}"
    );
    map.check_root();
}

#[test]
fn with_capacity_presizes_the_delta_for_a_bulk_load() {
    let map = SyncMap::with_capacity(10_000);
    for k in 0..10_000u64 {
        map.insert(k, k);
    }
    let stats = map.stats();
    assert_eq!((stats.promotions, stats.delta_growths), (0, 0), "{stats:?}");
    assert_eq!(map.root_sizes(), (0, 10_000));
    map.check_root();
}

#[test]
fn delta_reads_ask_the_next_writer_to_promote() {
    let map: SyncMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
    map.insert(1_000, 0);
    let promotions = map.stats().promotions;
    // 101 keys: reads of the delta are counted toward 4 * 101 = 404 (in samples
    // of 16, so at most 16 early); below that, nothing is asked.
    for _ in 0..384 {
        assert_eq!(map.get_cloned(&1_000), Some(0));
    }
    assert!(!map.promote_wanted(), "{:?}", map.stats());
    map.insert(2, 2); // a writer, with no promotion asked for
    assert_eq!(map.stats().promotions, promotions);
    // Read the delta key until the sampled count passes four reads per key.
    for _ in 0..(200 * 16) {
        assert_eq!(map.get_cloned(&1_000), Some(0));
    }
    assert_eq!(
        map.stats().promotions,
        promotions,
        "readers never promote themselves"
    );
    map.insert(1, 1); // any writer
    assert_eq!(map.stats().promotions, promotions + 1);
    assert_eq!(map.root_sizes(), (101, 0));
    map.check_root();
}

#[test]
fn mass_removal_promotes_and_purges_tombstones_by_itself() {
    let map: SyncMap<u64, Vec<u8>> = (0..10_000).map(|k| (k, vec![0; 16])).collect();
    for k in 0..10_000 {
        assert!(map.remove(&k).is_some());
    }
    let stats = map.stats();
    assert!(stats.compactions >= 1, "{stats:?}");
    assert!(stats.tombstones_purged >= 9_000, "{stats:?}");
    let (read, delta) = map.root_sizes();
    assert!(
        read + delta < MIN_PROMOTION_LEN * 2,
        "tombstones left: {read} + {delta}"
    );
    assert!(map.is_empty());
    map.check_root();
}

#[test]
fn a_removed_key_revives_in_place_until_promotion() {
    let map: SyncMap<u32, u32> = (0..100).map(|k| (k, k)).collect();
    map.remove(&7);
    let before = map.audit_locks();
    map.insert(7, 70); // the tombstone is in the read table: one CAS, no lock
    assert_eq!(map.audit_locks(), before);
    assert_eq!(map.get_cloned(&7), Some(70));
    map.promote();
    assert_eq!(map.get_cloned(&7), Some(70));
    map.check_root();
}

#[test]
fn iteration_visits_read_and_delta_once_each() {
    let map: SyncMap<u32, u32> = (0..300).map(|k| (k, k)).collect();
    for k in 300..320 {
        map.insert(k, k);
    }
    map.remove(&5);
    map.remove(&305);
    let keys: Vec<u32> = map.pin().iter().map(|(k, _)| *k).collect();
    let unique: HashSet<u32> = keys.iter().copied().collect();
    assert_eq!(keys.len(), unique.len(), "a key was yielded twice");
    let expected: HashSet<u32> = (0..320).filter(|k| *k != 5 && *k != 305).collect();
    assert_eq!(unique, expected);
}

#[test]
fn clear_empties_read_and_delta() {
    let map: SyncMap<u32, u32> = (0..300).map(|k| (k, k)).collect();
    for k in 300..320 {
        map.insert(k, k);
    }
    map.clear();
    assert!(map.is_empty());
    assert_eq!(map.root_sizes(), (0, 0));
    map.insert(1, 1);
    assert_eq!(map.get_cloned(&1), Some(1));
    map.check_root();
}
