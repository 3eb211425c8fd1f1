//! Memory comes back after mass deletes: a counting global allocator measures
//! what a `SyncMap` keeps after every key it held was removed, without any call
//! to `promote()` (the map compacts itself once tombstones reach half of its read
//! table).
//!
//! # What is measured, and why this way
//!
//! The allocator counts the live bytes of the whole process, so three figures
//! are taken around each map, all by the test thread alone (the harness's main
//! thread is idle while a test runs):
//!
//! * **footprint** — the bytes freed by dropping the map, taken just before and
//!   just after `drop`, once its retired garbage has been freed. Dropping a map
//!   frees its tables, entries, keys and values synchronously and touches no
//!   collector state, so nothing else allocates or frees between the two
//!   readings: this is exactly the memory the map owns, with no noise at all.
//! * **process delta** — live bytes relative to a baseline taken just before the
//!   map was created, after the same *settle* routine (see [`settle`]). It adds
//!   what the map left behind in the process: retired values, entries and tables
//!   still waiting in crossbeam-epoch, and the collector's own bookkeeping.
//! * **residue** — the process delta once the map is dropped and settled again.
//!   This is not the map's: crossbeam-epoch keeps a few garbage-bag nodes in its
//!   global queue (they hold no map object once `stats().pending == 0`), and how
//!   many it keeps varies by a few KB between runs. The test measures that noise
//!   on an empty map and on a small scratch churn, in the same process, with the
//!   same routine, and bounds the residue by it — far below what even a tiny leak
//!   of the million keys would show.
//!
//! The baselines are taken after warming up this thread's crossbeam-epoch state
//! (its `Local` record and bag are allocated on the first pin) with a few pins,
//! flushes and a throwaway map, so that one-time allocations are not counted.
//!
//! Run `cargo test --test memory -- --nocapture` to see the figures.
//!
//! Both tests take the `SERIAL` lock, because the allocator counts the whole
//! process.
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hash::Hash;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use readmostly::classic::ClassicSyncMap;
use readmostly::{Stats, SyncMap};

/// Forwards to the system allocator and counts the bytes currently allocated
/// (by requested size) and their high-water mark.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
std::thread_local! {
    /// Calls that allocated (`alloc`, `alloc_zeroed`, `realloc`) on this
    /// thread: the harness's own threads allocate too, around test boundaries.
    /// Const-initialized and without a destructor, so reading it allocates
    /// nothing.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
    let now = LIVE.fetch_add(bytes as isize, Ordering::Relaxed) + bytes as isize;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes as isize, Ordering::Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds
// the `GlobalAlloc` contract; the counting around the calls allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller's contract for `alloc` is `System.alloc`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with
        // `layout` (our caller's contract).
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `dealloc`, and `new_size` is valid for `layout`'s alignment.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            grew(new_size);
            shrank(layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated right now, by the whole process.
fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// The allocator counts the whole process: tests of this file must not overlap.
static SERIAL: Mutex<()> = Mutex::new(());

/// Keys removed in the mass delete.
const KEYS: usize = 1_000_000;

/// The settle routine, the same before every reading: flush until the map
/// reports no pending garbage, then keep flushing in rounds until crossbeam's
/// queue stops shrinking (pending == 0 means every retired object was freed,
/// but the emptied garbage-bag nodes that carried them are themselves freed only
/// by later collections: right after `pending` reached 0 the first time, 28 MB
/// of them were still allocated).
fn settle<K, V>(map: &SyncMap<K, V>)
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Send + 'static,
{
    common::flush_until_quiet(map, Duration::from_secs(60));
    let mut last = live();
    for _ in 0..1000 {
        for _ in 0..64 {
            map.flush();
        }
        let now = live();
        if now >= last {
            return;
        }
        last = now;
    }
    panic!("the collector's memory kept shrinking after 1000 flush rounds");
}

/// Warms up this thread's collector state and measures the noise of [`settle`]:
/// the largest residue a small churn on a scratch map leaves after it is dropped.
fn warm_up_and_measure_noise() -> isize {
    let scratch: SyncMap<u64, u64> = SyncMap::new();
    for _ in 0..8 {
        scratch.flush();
        drop(scratch.pin());
    }
    settle(&scratch);
    drop(scratch);
    let mut noise = 0;
    for round in 0..4u64 {
        let probe: SyncMap<u8, u8> = SyncMap::new();
        settle(&probe);
        let base = live();
        let scratch: SyncMap<u64, u64> = SyncMap::new();
        for i in 0..20_000 * (round + 1) {
            scratch.insert(i, i);
        }
        for i in 0..20_000 * (round + 1) {
            scratch.remove(&i);
        }
        settle(&scratch);
        drop(scratch);
        settle(&probe);
        noise = noise.max(live() - base);
    }
    noise
}

/// Figures of one map's life, in bytes (process figures relative to the
/// baseline taken just before the map was created).
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// Process live bytes at the high-water mark.
    peak: isize,
    /// Process live bytes with all keys present.
    full: isize,
    /// Process live bytes after the removes, settled.
    after: isize,
    /// Bytes freed by dropping the map (exactly what it still owned).
    footprint: isize,
    /// Process live bytes once the map is dropped and settled (collector noise).
    residue: isize,
    /// The map's counters after the removes.
    stats: Stats,
}

/// Creates a map, inserts the keys `make_key(0..n)` (none if `n == 0`), removes
/// them all, settles, and measures; see the module docs.
fn measure<K>(n: usize, make_key: impl Fn(usize) -> K) -> Figures
where
    K: Hash + Eq + Clone + Send + 'static,
{
    let probe: SyncMap<u8, u8> = SyncMap::new();
    settle(&probe);
    let base = live();
    PEAK.store(base, Ordering::SeqCst);
    // Boxed, so that the map's own struct is counted too.
    let map: Box<SyncMap<K, u64>> = Box::new(SyncMap::new());
    for i in 0..n {
        map.insert(make_key(i), i as u64);
    }
    let full = live() - base;
    // One pin per remove (the owned convenience), as independent requests would
    // do, so that the collector can free garbage while the removes run.
    for i in 0..n {
        assert_eq!(map.remove(&make_key(i)), Some(i as u64));
    }
    assert!(map.is_empty());
    settle(&*map);
    let stats = map.stats();
    assert_eq!(stats.pending, 0, "{stats:?}");
    assert_eq!(
        stats.freed,
        stats.values_retired + stats.entries_retired + stats.tables_retired,
        "{stats:?}"
    );
    if n > 0 {
        assert!(stats.compactions > 0, "no compaction ran: {stats:?}");
    }
    let after = live() - base;
    let before_drop = live();
    drop(map);
    let footprint = before_drop - live();
    settle(&probe);
    Figures {
        peak: PEAK.load(Ordering::SeqCst) - base,
        full,
        after,
        footprint,
        residue: live() - base,
        stats,
    }
}

fn u64_key(i: usize) -> u64 {
    i as u64
}

/// A 20-byte key, in an allocation of exactly 20 bytes.
fn string_key(i: usize) -> String {
    use std::fmt::Write;
    let mut key = String::with_capacity(20);
    write!(key, "key:{i:016}").expect("writing to a String");
    key
}

/// Measurements for both key types, printed before any assertion.
struct Run {
    noise: isize,
    empty: Figures,
    u64_keys: Figures,
    empty_strings: Figures,
    string_keys: Figures,
}

fn run() -> Run {
    let noise = warm_up_and_measure_noise();
    let run = Run {
        noise,
        empty: measure(0, u64_key),
        u64_keys: measure(KEYS, u64_key),
        empty_strings: measure(0, string_key),
        string_keys: measure(KEYS, string_key),
    };
    println!(
        "settle noise (max residue of a scratch churn): {} B",
        run.noise
    );
    for (name, empty, churned) in [
        ("u64 keys", run.empty, run.u64_keys),
        ("20-byte String keys", run.empty_strings, run.string_keys),
    ] {
        println!(
            "{name}: {KEYS} keys inserted then removed: peak {} B, full {} B, \
             after removes {} B, footprint {} B, residue {} B; \
             empty map: after {} B, footprint {} B, residue {} B; {:?}",
            churned.peak,
            churned.full,
            churned.after,
            churned.footprint,
            churned.residue,
            empty.after,
            empty.footprint,
            empty.residue,
            churned.stats,
        );
    }
    run
}

/// The checks, on the figures of one key type: the map's own footprint back
/// within 10% of an empty map's (the check from the issue), every retired object
/// freed, and nothing left in the process beyond the collector's noise.
fn check(name: &str, noise: isize, empty: Figures, churned: Figures) {
    assert!(
        churned.footprint as f64 <= empty.footprint as f64 * 1.1,
        "{name}: the map owns {} B after removing every key, an empty map {} B",
        churned.footprint,
        empty.footprint,
    );
    // The collector's bookkeeping only: a few KB measured; one leaked value per
    // hundred keys would be 80 KB or more.
    let allowed_residue = 2 * noise.max(empty.residue) + 16 * 1024;
    assert!(
        churned.residue <= allowed_residue,
        "{name}: {} B left in the process after the map was dropped (noise {noise} B)",
        churned.residue,
    );
    assert!(
        churned.after <= churned.footprint + allowed_residue,
        "{name}: {} B held after the removes, the map owning {} B",
        churned.after,
        churned.footprint,
    );
}

/// The test from the issue: 1,000,000 keys inserted then removed, with no call to
/// `promote()`: the map's memory comes back within 10% of an empty map's.
#[test]
fn mass_delete_gives_memory_back() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let run = run();
    check("u64 keys", run.noise, run.empty, run.u64_keys);
    check("String keys", run.noise, run.empty_strings, run.string_keys);
}

/// Footprint of a map of 11 keys built by two promotions: 10 keys, `promote`,
/// one more key (a new dirty table), `promote` again; settled.
fn footprint_after_two_promotions(map: SyncMap<u64, u64>) -> isize {
    let map = Box::new(map);
    for i in 0..10 {
        map.insert(i, i);
    }
    map.promote();
    map.insert(10, 10);
    map.promote();
    settle(&*map);
    let before = live();
    drop(map);
    before - live()
}

/// `with_capacity` sizes the first table for the hint, and only the first:
/// tables rebuilt later are sized for what the map holds, so a map created with
/// a large capacity still gives memory back and each promotion costs O(len),
/// not O(capacity). (Regression: v1 sized every dirty copy for the hint.)
#[test]
fn with_capacity_sizes_only_the_first_dirty_table() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = warm_up_and_measure_noise();
    let plain = footprint_after_two_promotions(SyncMap::new());
    let hinted = footprint_after_two_promotions(SyncMap::with_capacity(100_000));
    println!("11 keys after two promotions: new() {plain} B, with_capacity(100_000) {hinted} B");
    assert!(
        hinted as f64 <= plain as f64 * 1.1,
        "with_capacity(100_000): {hinted} B for 11 keys after two promotions; new(): {plain} B"
    );
}

/// Bytes a map owns (freed by its drop) after `burst` values were written to one
/// key and retired, all while a guard was held so that they were pending at
/// once, and then freed: `stats().pending == 0` before the measurement.
fn footprint_after_a_burst_of_retirements(burst: u64) -> (isize, Stats) {
    let map: Box<SyncMap<u64, u64>> = Box::new(SyncMap::new());
    for k in 0..8 {
        map.insert(k, k);
    }
    map.promote();
    {
        let pinned = map.pin();
        for i in 0..burst {
            // Key 0's value is in a cell from the first write on: each write
            // after it retires the cell it replaces.
            pinned.insert(0, i);
        }
    }
    settle(&*map);
    let stats = map.stats();
    assert_eq!(stats.pending, 0, "{stats:?}");
    let before = live();
    drop(map);
    (before - live(), stats)
}

/// Garbage that has been freed leaves no memory behind in the map: a map whose
/// retired values all went back owns what a map with the same contents that
/// never retired much owns. (The map's ledger records every retired object
/// until it is freed; the record of a burst must not outlive the burst.)
#[test]
fn a_burst_of_retirements_leaves_no_memory_behind_once_freed() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = warm_up_and_measure_noise();
    let (quiet, quiet_stats) = footprint_after_a_burst_of_retirements(1);
    let (burst, burst_stats) = footprint_after_a_burst_of_retirements(10_000);
    println!(
        "footprint after 1 retirement: {quiet} B (peak pending {}); after a burst of 10,000: \
         {burst} B (peak pending {})",
        quiet_stats.peak_pending, burst_stats.peak_pending
    );
    assert!(burst_stats.peak_pending >= 10_000, "{burst_stats:?}");
    assert!(
        burst as f64 <= quiet as f64 * 1.1,
        "the map owns {burst} B after a burst of 10,000 retirements, all freed; {quiet} B after one"
    );
}

/// Allocations this thread makes while `f` runs.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Go's TestMapClearNoAllocations and TestMapRangeNoAllocations: clearing a
/// map that holds no key, on either protocol, and iterating a map allocate
/// nothing. Measured under an outer guard, so that crossbeam-epoch's periodic
/// collection (every 128th outermost pin, which may allocate a node of its own
/// queue) does not run inside the measurement: that allocation is the
/// collector's, not the map's.
#[test]
fn clearing_an_empty_map_and_iterating_allocate_nothing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let map: SyncMap<u64, u64> = SyncMap::new();
    let classic: ClassicSyncMap<u64, u64> = ClassicSyncMap::new();
    // Clears, under an outer guard, of both maps now: the allocations made.
    let clear_both = || {
        let outer = map.pin();
        allocations_in(|| {
            for _ in 0..100 {
                map.clear();
                classic.clear();
                outer.clear();
            }
        })
    };
    // Warm-up: this thread's collector state is allocated on its first pin.
    map.clear();
    classic.clear();
    assert_eq!(clear_both(), 0, "clears of new, empty maps");
    // Keys came and went: the first clear rebuilds; clearing again is free.
    for k in 0..100 {
        map.insert(k, k);
        classic.insert(k, k);
    }
    map.clear();
    classic.clear();
    assert_eq!(clear_both(), 0, "clears of cleared maps");
    assert!(map.is_empty() && classic.is_empty());

    // Iteration, over the read table and the delta alike.
    let full: SyncMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
    full.insert(1000, 1000);
    let outer = full.pin();
    let walks = || {
        for _ in 0..100 {
            assert_eq!(full.pin().iter().count(), 101);
            assert_eq!(outer.iter().count(), 101);
        }
    };
    assert_eq!(allocations_in(walks), 0, "iterations");
}
