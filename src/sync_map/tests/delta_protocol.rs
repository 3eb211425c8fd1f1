//! The delta and the promotion triggers of `policy.rs`, and the rule that reads
//! never wait on a lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::super::policy::{MIN_PROMOTION_LEN, SAMPLE};
use super::super::write::LockAudit;
use super::super::SyncMap;
use super::{Link, Place};
use crate::sync;

/// The churn: 1% inserts of new keys, 1% removes, the rest updates;
/// readers read present and absent keys, half of them absent — with every read
/// flagged, no read may wait on the writer lock (a reader may only `try_lock`
/// to promote, which the audit does not count, and which the readers here do
/// get to try: they read the delta's new keys).
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
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) || reads < 20_000 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Half the keys are absent (>= 1M never exist); the others hit
                    // the read table (inline or through a cell) or the delta of
                    // churned-in keys.
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
    assert!(reads >= 60_000);
    assert!(
        map.audit_locks() > 0,
        "the writer's new keys grow the delta under the lock: the audit must see it"
    );
    assert_eq!(
        map.audit_reader_locks(),
        0,
        "a read operation waited on the writer lock"
    );
    map.check_root();
}

/// The audit itself can fail: a write flagged as a read is counted.
#[test]
fn lock_audit_catches_a_locking_read() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    LockAudit::as_reader(|| map.promote());
    assert_eq!(map.audit_reader_locks(), 1);
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
    // Two reads per key: at least one of every SAMPLE off-path reads is counted,
    // and 20 of them stay far below the read budget of a 64-key map.
    for _ in 0..2 {
        for k in 0..10u32 {
            assert_eq!(map.get_cloned(&k), Some(k * 2));
        }
    }
    let stats = map.stats();
    assert!(stats.delta_reads > 0, "{stats:?}");
    assert_eq!(stats.cell_reads, 0, "{stats:?}");
    assert_eq!(stats.promotions, 0, "{stats:?}");
    map.check_root_exact();
    assert_eq!(map.root_sizes(), (0, 10));
    assert_eq!(map.slot_of(&3), Some(Place::Delta(Link::Inline)));
}

#[test]
fn delta_grows_and_keeps_every_key() {
    let map = SyncMap::new();
    // Below the promotion bound the delta holds everything and must grow.
    for k in 0..(MIN_PROMOTION_LEN as u64 - 1) {
        map.insert(k, k);
        map.check_root_exact();
    }
    let stats = map.stats();
    assert!(stats.delta_growths >= 2, "{stats:?}");
    assert_eq!(stats.promotions, 0, "{stats:?}");
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
    map.check_root_exact();
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
    map.check_root_exact();
}

/// Rule 1, when the writer lock is free: the reader whose sampled delta reads
/// spend the budget (two per key of the map) promotes by itself — no writer
/// needed — and only then.
#[test]
fn delta_reads_promote_from_the_reader_once_the_budget_is_spent() {
    let map: SyncMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
    map.insert(1_000, 0);
    let promotions = map.stats().promotions;
    let keys = 101;
    // The budget is 2 delta reads per key (202), counted in samples of SAMPLE:
    // the first sample may come at the first read, so the reader may promote up
    // to SAMPLE - 1 reads early, and at the latest SAMPLE - 1 reads late.
    let early = 2 * keys - SAMPLE;
    LockAudit::as_reader(|| {
        for _ in 0..early {
            assert_eq!(map.get_cloned(&1_000), Some(0));
        }
    });
    assert_eq!(
        map.stats().promotions,
        promotions,
        "promoted before the budget was spent"
    );
    assert!(!map.promote_wanted());
    let mut reads = early;
    LockAudit::as_reader(|| {
        while map.stats().promotions == promotions {
            assert_eq!(map.get_cloned(&1_000), Some(0));
            reads += 1;
            assert!(
                reads <= 2 * keys + SAMPLE,
                "no promotion after {reads} delta reads"
            );
        }
    });
    assert_eq!(map.audit_reader_locks(), 0, "the reader waited on the lock");
    assert!(!map.promote_wanted());
    assert_eq!(map.root_sizes(), (101, 0));
    assert_eq!(map.slot_of(&1_000), Some(Place::Read(Link::Inline)));
    map.check_root_exact();
    // From now on the key is read inline: nothing more is counted.
    let stats = map.stats();
    for _ in 0..(4 * SAMPLE) {
        assert_eq!(map.get_cloned(&1_000), Some(0));
    }
    assert_eq!(map.stats().delta_reads, stats.delta_reads);
}

/// Rule 1, when the writer lock is taken: the reader never waits for it; it asks
/// the next writer to promote, and the next writer — of any key — does.
#[test]
fn delta_reads_ask_the_next_writer_to_promote_when_the_lock_is_taken() {
    let map: SyncMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
    map.insert(1_000, 0);
    let promotions = map.stats().promotions;
    {
        // Another thread holds the writer lock while this one reads.
        let held = sync::lock(&map.write_side.writer);
        thread::scope(|s| {
            s.spawn(|| {
                LockAudit::as_reader(|| {
                    for _ in 0..(4 * 101) {
                        assert_eq!(map.get_cloned(&1_000), Some(0));
                    }
                });
            });
        });
        drop(held);
    }
    assert_eq!(map.audit_reader_locks(), 0, "the reader waited on the lock");
    assert_eq!(map.stats().promotions, promotions, "nobody could promote");
    assert!(
        map.promote_wanted(),
        "the reader did not ask for a promotion"
    );
    // A lock-free write of an existing key is enough.
    map.pin().update(&7, |v| v + 1);
    assert_eq!(map.stats().promotions, promotions + 1);
    assert!(!map.promote_wanted());
    assert_eq!(map.root_sizes(), (101, 0));
    assert_eq!(map.get_cloned(&7), Some(8));
    map.check_root_exact();
}

/// Rule 1 for keys overwritten since the last promotion: reads through a cell
/// count too, at 16 per key (a cell read costs less than a delta read).
#[test]
fn cell_reads_promote_once_sixteen_per_key_are_counted() {
    let map: SyncMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
    map.insert(5, 50);
    assert_eq!(map.slot_of(&5), Some(Place::Read(Link::Cell)));
    let promotions = map.stats().promotions;
    let budget = 16 * 100;
    let mut reads = 0;
    LockAudit::as_reader(|| {
        while map.stats().promotions == promotions {
            assert_eq!(map.get_cloned(&5), Some(50));
            reads += 1;
            assert!(
                reads <= budget + SAMPLE,
                "no promotion after {reads} cell reads"
            );
        }
    });
    assert!(
        reads + SAMPLE >= budget,
        "promoted after {reads} cell reads"
    );
    assert_eq!(map.audit_reader_locks(), 0);
    assert_eq!(map.slot_of(&5), Some(Place::Read(Link::Inline)));
    assert!(map.stats().cell_reads > 0);
    map.check_root_exact();
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
    assert_eq!(
        map.root_sizes(),
        (0, 0),
        "the last remove compacts a one-key root"
    );
    assert!(map.is_empty());
    map.check_root_exact();
}

#[test]
fn a_removed_key_revives_in_place_until_promotion() {
    let map: SyncMap<u32, u32> = (0..100).map(|k| (k, k)).collect();
    map.remove(&7);
    assert_eq!(map.slot_of(&7), Some(Place::Read(Link::Removed)));
    let before = map.audit_locks();
    map.insert(7, 70); // the tombstone is in the read table: one CAS, no lock
    assert_eq!(map.audit_locks(), before);
    assert_eq!(map.slot_of(&7), Some(Place::Read(Link::Cell)));
    assert_eq!(map.get_cloned(&7), Some(70));
    // Likewise in the delta, and with get_or_insert.
    map.insert(1_000, 1);
    map.remove(&1_000);
    let before = map.audit_locks();
    assert!(map.pin().get_or_insert(1_000, 2).is_stored());
    assert_eq!(map.audit_locks(), before);
    assert_eq!(map.slot_of(&1_000), Some(Place::Delta(Link::Cell)));
    map.promote();
    assert_eq!(map.get_cloned(&7), Some(70));
    assert_eq!(map.get_cloned(&1_000), Some(2));
    map.check_root_exact();
}

#[test]
fn writes_to_present_keys_take_no_lock() {
    let map: SyncMap<u32, u32> = (0..100).map(|k| (k, k)).collect();
    map.insert(1_000, 0); // a delta key
    let before = map.audit_locks();
    let pinned = map.pin();
    for k in [3, 1_000] {
        pinned.insert(k, 1);
        pinned.update(&k, |v| v + 1);
        assert!(pinned.compare_exchange(&k, &2, 3).is_ok());
        assert!(!pinned.get_or_insert(k, 9).is_stored());
        assert_eq!(pinned.remove_if(&k, |v| *v == 3), Some(&3));
        assert!(pinned.get_or_insert(k, 4).is_stored());
        assert_eq!(pinned.remove(&k), Some(&4));
    }
    drop(pinned);
    assert_eq!(
        map.audit_locks(),
        before,
        "a write to a present or removed key locked"
    );
    map.check_root_exact();
}

#[test]
fn iteration_visits_read_and_delta_once_each() {
    let map: SyncMap<u32, u32> = (0..300).map(|k| (k, k)).collect();
    for k in 300..320 {
        map.insert(k, k);
    }
    map.remove(&5);
    map.remove(&305);
    map.insert(7, 70); // through a cell
    let pairs: Vec<(u32, u32)> = map.pin().iter().map(|(k, v)| (*k, *v)).collect();
    let unique: HashSet<u32> = pairs.iter().map(|(k, _)| *k).collect();
    assert_eq!(pairs.len(), unique.len(), "a key was yielded twice");
    let expected: HashSet<u32> = (0..320).filter(|k| *k != 5 && *k != 305).collect();
    assert_eq!(unique, expected);
    assert!(pairs.contains(&(7, 70)));
}

#[test]
fn clear_empties_read_and_delta() {
    let map: SyncMap<u32, u32> = (0..300).map(|k| (k, k)).collect();
    for k in 300..320 {
        map.insert(k, k);
    }
    map.insert(3, 33);
    map.remove(&4);
    let tables = map.stats().tables_retired;
    map.clear();
    assert!(map.is_empty());
    assert_eq!(map.root_sizes(), (0, 0));
    assert_eq!(
        map.stats().tables_retired,
        tables + 1,
        "the old root, as one table"
    );
    map.insert(1, 1);
    assert_eq!(map.get_cloned(&1), Some(1));
    assert_eq!(map.get_cloned(&3), None);
    map.check_root_exact();
}

/// New keys go in lock-free, by CAS into the delta: threads racing to add the
/// same keys, through growths and promotions, add each key exactly once. Every
/// key's first insert returns `None` on exactly one thread, each later one
/// returns the value just replaced, and `get_or_insert` agrees on one value.
#[test]
fn racing_inserts_of_the_same_new_keys_add_each_once() {
    const KEYS: u64 = 20_000;
    const THREADS: u64 = 4;
    let map: Arc<SyncMap<u64, u64>> = Arc::new(SyncMap::new());
    let start = Arc::new(Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (map, start) = (map.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let (mut firsts, mut agreed) = (Vec::new(), Vec::new());
                for k in 0..KEYS {
                    // Every thread walks the keys in its own order.
                    let k = (k * (2 * t + 1)) % KEYS;
                    if map.insert(k, t).is_none() {
                        firsts.push(k);
                    }
                    agreed.push((k, *map.pin().get_or_insert(KEYS + k, t).value()));
                }
                (firsts, agreed)
            })
        })
        .collect();
    let mut firsts = HashSet::new();
    let mut agreed = std::collections::HashMap::new();
    for thread in threads {
        let (f, a) = thread.join().unwrap();
        for k in f {
            assert!(firsts.insert(k), "key {k} was new to two inserts");
        }
        for (k, v) in a {
            assert_eq!(
                *agreed.entry(k).or_insert(v),
                v,
                "get_or_insert({k}) disagreed"
            );
        }
    }
    assert_eq!(firsts.len() as u64, KEYS, "some key was never new");
    assert_eq!(map.len() as u64, 2 * KEYS);
    map.check_root_exact();
    for k in 0..KEYS {
        assert!(map.get_cloned(&k).is_some_and(|v| v < THREADS));
        assert_eq!(map.get_cloned(&(KEYS + k)), agreed.get(&k).copied());
    }
    let stats = map.stats();
    assert!(stats.delta_growths + stats.promotions > 2, "{stats:?}");
}
