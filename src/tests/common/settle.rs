//! What flushing a map can free once the threads that retired garbage on it have
//! exited, backend by backend.
//!
//! * **crossbeam-epoch** (the default reclaimer): the collector is global and a
//!   flush on any thread collects every thread's garbage, so flushing until
//!   `pending == 0` terminates once no guard is held.
//! * **seize** (the default reclaimer when `crossbeam-epoch` is off): each thread
//!   gathers what it retires in a batch of its own, kept per thread id inside the
//!   map's collector, and a flush hands over only the *calling* thread's batch. A
//!   partial batch left by a thread that has exited stays pending until a thread
//!   reusing its id retires on the same map, or until the map is dropped (which
//!   frees it). What a flush from this thread leaves is therefore bounded: fewer
//!   than one batch per thread that retired and exited.
//!
//! Shared by the crate's unit tests (`crate::test_support` includes this file) and
//! the integration targets in `src/tests/` (through `common`), so it uses only std
//! and takes the map's `flush` and `stats().pending` as closures.

use std::time::{Duration, Instant};

/// The batch size of a seize collector made by `Collector::new` (what
/// `reclaim::Seize::new` uses): 32 objects, or the CPU count if that is larger.
pub fn seize_batch_size() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .max(32)
}

/// Flushes a map after `threads` threads that retired garbage on it have exited
/// (their guards dropped), and returns how many retired objects are still
/// pending: 0 with crossbeam-epoch, which is flushed until nothing is pending
/// (panicking after `timeout`, with the count); with seize, at most `threads`
/// partial batches — checked here, with the count in the message.
///
/// The caller still owes the exact check seize does give: dropping the map
/// frees every object it retired (its drop counters reach zero).
#[track_caller]
pub fn flush_after_threads(
    flush: impl Fn(),
    pending: impl Fn() -> u64,
    threads: usize,
    timeout: Duration,
) -> u64 {
    if cfg!(feature = "crossbeam-epoch") {
        let start = Instant::now();
        loop {
            flush();
            let left = pending();
            if left == 0 {
                return 0;
            }
            assert!(
                start.elapsed() < timeout,
                "garbage still pending after {timeout:?}: {left} objects"
            );
            std::thread::yield_now();
        }
    }
    // seize: one flush hands this thread's batch to the threads active now (this
    // one, if the others have exited) and frees it as its guard leaves; more
    // flushes cannot reach the batches of exited threads.
    for _ in 0..3 {
        flush();
    }
    let left = pending();
    let bound = (threads * seize_batch_size()) as u64;
    assert!(
        left <= bound,
        "{left} objects pending after flushing, more than {threads} threads x {} (one partial batch each)",
        seize_batch_size()
    );
    left
}

/// After [`flush_after_threads`] left `left` objects pending: with none left,
/// exactly `expected` tracked values are alive; otherwise at least `expected`
/// (the live ones; a pending object may still own more). Exact under
/// crossbeam-epoch, where `left` is always 0.
#[track_caller]
pub fn assert_alive_after_flush(alive: usize, expected: usize, left: u64) {
    if left == 0 {
        assert_eq!(alive, expected, "values alive after flushing");
    } else {
        assert!(
            alive >= expected,
            "{alive} values alive, fewer than the {expected} live ones ({left} objects pending)"
        );
    }
}
