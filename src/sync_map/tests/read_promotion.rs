//! A map filled by single inserts and then only read — no writer at all, no
//! `promote()` — reaches the inline read path by itself: its readers promote it
//! (rule 1 of `policy.rs`) after O(n) reads served by the delta, and never wait
//! on a lock to do so.
//!
//! The bound, from `policy.rs`: a promotion pays once the sampled delta reads
//! reach `DELTA_READS_PER_KEY` (2) per key of the map; one read in `SAMPLE` (16)
//! per thread is counted, by adding `SAMPLE`, so the reader that spends the
//! budget comes at most `SAMPLE` reads late (and at most `SAMPLE` early). So a
//! single reader promotes within `2·n + SAMPLE` reads served by the delta — the
//! constant checked here is c = `DELTA_READS_PER_KEY`, plus one sample.

use std::collections::HashSet;

use super::super::policy::{DELTA_READS_PER_KEY, SAMPLE};
use super::super::write::LockAudit;
use super::super::SyncMap;
use super::{Link, Place};

/// What one reader did before the map promoted.
#[derive(Debug)]
struct Reads {
    /// Every read until (and including) the one that promoted.
    total: usize,
    /// Those of keys that were in the delta: reads served by the delta.
    from_delta: usize,
}

/// Reads `0..n` round-robin, one guard per read as independent requests do,
/// each read flagged as a read operation, until the map has promoted; checks
/// every value; gives up after `limit` reads.
fn read_until_promoted(map: &SyncMap<u64, u64>, n: u64, limit: usize) -> Reads {
    let in_delta: HashSet<u64> = (0..n)
        .filter(|k| matches!(map.slot_of(k), Some(Place::Delta(_))))
        .collect();
    let promotions = map.stats().promotions;
    let mut reads = Reads {
        total: 0,
        from_delta: 0,
    };
    'reading: loop {
        for k in 0..n {
            let value = LockAudit::as_reader(|| map.get_cloned(&k));
            assert_eq!(value, Some(k * 3), "key {k}");
            reads.total += 1;
            reads.from_delta += usize::from(in_delta.contains(&k));
            if map.stats().promotions != promotions {
                break 'reading;
            }
            assert!(reads.total < limit, "no promotion after {reads:?}");
        }
    }
    reads
}

/// After the promotion: every key inline in the read table, the delta empty,
/// and reading every key again counts no off-path read and promotes nothing.
fn assert_inline_from_now_on(map: &SyncMap<u64, u64>, n: u64) {
    assert_eq!(map.root_sizes(), (n as usize, 0));
    for k in (0..n).step_by(97) {
        assert_eq!(map.slot_of(&k), Some(Place::Read(Link::Inline)));
    }
    map.check_root_exact();
    let before = map.stats();
    for k in 0..n {
        assert_eq!(LockAudit::as_reader(|| map.get_cloned(&k)), Some(k * 3));
    }
    let after = map.stats();
    assert_eq!(
        (after.delta_reads, after.cell_reads, after.promotions),
        (before.delta_reads, before.cell_reads, before.promotions),
        "reads of a promoted map left the inline path"
    );
    assert_eq!(
        map.audit_reader_locks(),
        0,
        "a reader waited on the writer lock"
    );
}

/// The bound on reads served by the delta, for a map of `n` keys.
fn delta_read_bound(n: usize) -> usize {
    DELTA_READS_PER_KEY * n + SAMPLE
}

/// Pre-sized, so the bulk load never promotes: every key is in the delta, every
/// read is served by it until a reader promotes — within 2·n + SAMPLE reads.
#[test]
fn a_presized_map_filled_then_only_read_promotes_within_two_reads_per_key() {
    const N: u64 = 10_000;
    let map: SyncMap<u64, u64> = SyncMap::with_capacity(N as usize);
    for k in 0..N {
        map.insert(k, k * 3);
    }
    assert_eq!(map.root_sizes(), (0, N as usize));
    assert_eq!(map.stats().promotions, 0);
    let reads = read_until_promoted(&map, N, 100 * N as usize);
    println!("with_capacity({N}), {N} keys: promoted by a reader after {reads:?}");
    assert_eq!(reads.total, reads.from_delta);
    assert!(
        reads.from_delta <= delta_read_bound(N as usize),
        "{reads:?}: more than {} delta reads",
        delta_read_bound(N as usize)
    );
    // Rent or buy: not before the delta reads have paid for the promotion.
    assert!(
        reads.from_delta + SAMPLE >= DELTA_READS_PER_KEY * N as usize,
        "{reads:?}"
    );
    assert_inline_from_now_on(&map, N);
}

/// The shape, scaled down: a map pre-sized for more keys than it gets
/// (there, 1M and 786k; here 100k and 78.6k).
#[test]
fn a_map_presized_for_more_keys_than_it_gets_promotes_from_its_readers() {
    const CAPACITY: usize = 100_000;
    const N: u64 = 78_600;
    let map: SyncMap<u64, u64> = SyncMap::with_capacity(CAPACITY);
    for k in 0..N {
        map.insert(k, k * 3);
    }
    assert_eq!(map.root_sizes(), (0, N as usize));
    let reads = read_until_promoted(&map, N, 100 * N as usize);
    println!("with_capacity({CAPACITY}), {N} keys: promoted by a reader after {reads:?}");
    assert!(
        reads.from_delta <= delta_read_bound(N as usize),
        "{reads:?}"
    );
    assert_inline_from_now_on(&map, N);
}

/// Filled by single inserts with no pre-sizing: full-delta promotions ran during
/// the fill, so part of the map is in the read table already and part in the
/// delta. Reads of read-table keys cost nothing extra and count nothing, so the
/// budget is spent by the reads served by the delta alone: at most 2·n + SAMPLE
/// of them. (Round-robin over all keys, the total is that times n / delta.)
#[test]
fn a_map_filled_by_single_inserts_then_only_read_promotes_from_its_readers() {
    const N: u64 = 1_000;
    let map: SyncMap<u64, u64> = SyncMap::new();
    for k in 0..N {
        map.insert(k, k * 3);
    }
    let (read, delta) = map.root_sizes();
    assert_eq!(read + delta, N as usize);
    assert!(delta > 0 && read > 0, "({read}, {delta})");
    let reads = read_until_promoted(&map, N, 100 * N as usize);
    println!("new(), {N} keys ({read} read, {delta} delta): promoted by a reader after {reads:?}");
    assert!(
        reads.from_delta <= delta_read_bound(N as usize),
        "{reads:?}"
    );
    assert!(
        reads.total <= (delta_read_bound(N as usize) * N as usize).div_ceil(delta) + N as usize,
        "{reads:?}"
    );
    assert_inline_from_now_on(&map, N);
}
