//! SnapshotMap version memory, measured by a counting global allocator (hence
//! its own process, and one test function so nothing else allocates meanwhile).
//!
//! A version's memory — its table and the keys' and values' heap — is freed
//! when its last snapshot drops, on whichever thread drops it; versions nobody
//! holds are freed at once, so a snapshot held across 1,000 publishes costs one
//! extra version, not 1,000.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use readmostly::SnapshotMap;

/// Counts bytes currently allocated, across all threads.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            ALLOCATED.fetch_add(layout.size() as isize, Ordering::SeqCst);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            ALLOCATED.fetch_add(new_size as isize - layout.size() as isize, Ordering::SeqCst);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> isize {
    ALLOCATED.load(Ordering::SeqCst)
}

const KEYS: u64 = 4_096;
const VALUE_BYTES: usize = 256;

/// Bookkeeping allocations of the test itself (and arc-swap's per-thread
/// slots) stay far below one version, which is over 1 MiB.
const SLACK: isize = 16 * 1024;

#[test]
fn version_memory_is_freed_with_its_last_snapshot() {
    let map: SnapshotMap<u64, Vec<u8>> = (0..KEYS).map(|k| (k, vec![0; VALUE_BYTES])).collect();
    let rewrite = |round: u8| {
        map.batch(|txn| {
            for k in 0..KEYS {
                txn.insert(k, vec![round; VALUE_BYTES]);
            }
        })
    };
    // Warm up: arc-swap's thread-local debt slots, the first publish.
    rewrite(1);
    drop(map.snapshot());
    let one_version = allocated();
    let version_bytes = map.stats().current_bytes as isize + (KEYS as isize * VALUE_BYTES as isize);
    assert!(version_bytes > 1 << 20);
    assert!(one_version >= version_bytes);

    // A held snapshot keeps exactly one extra version alive.
    let held = map.snapshot();
    rewrite(2);
    let two_versions = allocated();
    assert!(
        (two_versions - one_version - version_bytes).abs() < SLACK,
        "one extra version: {} bytes more, expected about {version_bytes}",
        two_versions - one_version
    );
    assert_eq!(map.stats().held, 1);

    // 1,000 publishes later it still reads its own version, and the versions
    // in between are gone: still two versions' worth.
    for round in 0..1_000u32 {
        map.batch(|txn| {
            txn.insert(u64::from(round) % KEYS, vec![3; VALUE_BYTES]);
        });
    }
    assert!(
        (allocated() - two_versions).abs() < SLACK,
        "intermediate versions freed"
    );
    assert!(held.values().all(|v| v[0] == 1));
    assert_eq!(map.stats().held, 1);

    // Dropping the last snapshot frees the version.
    drop(held);
    assert!(
        (allocated() - one_version).abs() < SLACK,
        "held version freed on drop"
    );
    assert_eq!((map.stats().held, map.stats().held_bytes), (0, 0));

    // Also when the last holder is on another thread.
    let held = map.snapshot();
    rewrite(4);
    assert!(allocated() - one_version > version_bytes - SLACK);
    std::thread::spawn(move || drop(held)).join().unwrap();
    assert!(
        (allocated() - one_version).abs() < SLACK,
        "freed by the other thread"
    );

    // Dropping the map frees the current version.
    drop(map);
    assert!(allocated() < one_version - version_bytes + SLACK);
}
