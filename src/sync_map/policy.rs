//! When a [`SyncMap`](crate::SyncMap) promotes.
//!
//! The rule is stated once, for users, in the crate docs ("When `SyncMap`
//! promotes", `src/lib.rs`): four triggers, each firing only after Ω(n)
//! operations have paid for an O(n) promotion. This module implements
//! triggers 1–3, and its items carry the figures that statement quotes:
//!
//! 1. reads off the inline path: [`sampled`] (one in [`SAMPLE`] per thread),
//!    [`Sampler`], [`DELTA_READS_PER_KEY`], [`CELL_READS_PER_KEY`] and the
//!    64-key floor; the reader that spends the budget only `try_lock`s
//!    (`SyncMap::promote_from_reader`);
//! 2. a full delta: [`full_delta_promotes`], [`MIN_PROMOTION_LEN`];
//! 3. removed keys: [`removed_keys_compact`].
//!
//! Why the figures are what they are is said where each is defined.

use crate::sync::{AtomicBool, AtomicUsize, Ordering};

/// A delta of up to this many keys is never merged because of its size alone,
/// and reads never promote a map below this size: probing a tiny delta costs
/// little, and merging at every new key would be waste.
pub(crate) const MIN_PROMOTION_LEN: usize = 64;

/// The read budget is never smaller than this many keys' worth (see
/// [`MIN_PROMOTION_LEN`]). Under loom, whose models hold a handful of keys and
/// count every read, it is three delta reads, so that a model can make a reader
/// promote with a few reads without every read of a delta key doing so.
const MIN_READ_PROMOTION_LEN: usize = if cfg!(loom) {
    3 * SAMPLE * DELTA_WEIGHT / BUDGET_PER_KEY
} else {
    MIN_PROMOTION_LEN
};

/// One off-path read in this many, per thread, is counted (by adding this many),
/// so the shared counter's cache line is written by one such read in `SAMPLE`.
pub(crate) const SAMPLE: usize = 16;

/// Delta-served reads per key of the map before a promotion pays.
///
/// A delta hit costs a miss of the read table, a second probe and a node load —
/// about as much as one key's share of a promotion (a seal, a clone, a hash and
/// an insert). With 2, a new key read four times (the lab's new-key storm) still
/// promotes through the full-delta rule first, and a map filled by single inserts
/// and then only read is promoted by its readers once its delta has served 2n
/// reads: two reads per key when all n keys wait in the delta, 2n/d passes over
/// the keys when d of them do.
pub(crate) const DELTA_READS_PER_KEY: usize = 2;

/// Reads through a cell (a key overwritten since the last promotion) per key of
/// the map before a promotion pays. A cell read costs one dependent load more
/// than an inline hit — little when the cell is cached (hot keys, which are the
/// ones overwritten most), a cache miss when it is not — so it takes many more of
/// them than delta reads to pay for copying the whole map.
pub(crate) const CELL_READS_PER_KEY: usize = 16;

/// The budget, in units where a cell read costs 1: the least common multiple of
/// the two per-key figures, so each kind of read has an integer weight.
const BUDGET_PER_KEY: usize = CELL_READS_PER_KEY;
const DELTA_WEIGHT: usize = BUDGET_PER_KEY / DELTA_READS_PER_KEY;
const CELL_WEIGHT: usize = BUDGET_PER_KEY / CELL_READS_PER_KEY;
const _: () = assert!(BUDGET_PER_KEY.is_multiple_of(DELTA_READS_PER_KEY));

/// What kind of off-path read was sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OffPath {
    /// Served by the delta.
    Delta,
    /// Served through a cell.
    Cell,
}

/// The read-side trigger: sampled off-path reads since the last promotion, and
/// the flag that asks the next writer to promote. Readers write it (rarely); it
/// sits on a cache line of its own.
#[derive(Default)]
pub(crate) struct Sampler {
    delta_reads: AtomicUsize,
    cell_reads: AtomicUsize,
    promote_wanted: AtomicBool,
}

impl Sampler {
    /// Counts a sampled off-path read in a map of `keys` keys; true if the read
    /// budget is spent (the caller should try to promote).
    #[cold]
    pub(crate) fn count(&self, kind: OffPath, keys: usize) -> bool {
        // Relaxed: heuristic counters; a promotion runs under the lock.
        let (delta, cells) = match kind {
            OffPath::Delta => (
                self.delta_reads.fetch_add(SAMPLE, Ordering::Relaxed) + SAMPLE,
                self.cell_reads.load(Ordering::Relaxed),
            ),
            OffPath::Cell => (
                self.delta_reads.load(Ordering::Relaxed),
                self.cell_reads.fetch_add(SAMPLE, Ordering::Relaxed) + SAMPLE,
            ),
        };
        delta * DELTA_WEIGHT + cells * CELL_WEIGHT
            >= BUDGET_PER_KEY * keys.max(MIN_READ_PROMOTION_LEN)
    }

    /// Asks the next writer to promote.
    pub(crate) fn want_promotion(&self) {
        // Relaxed: a hint, re-checked under the lock. Loaded first so the line is
        // written once.
        if !self.promote_wanted.load(Ordering::Relaxed) {
            self.promote_wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a reader asked for a promotion.
    #[inline]
    pub(crate) fn promotion_wanted(&self) -> bool {
        // Relaxed: a hint, re-checked under the lock.
        self.promote_wanted.load(Ordering::Relaxed)
    }

    /// Starts afresh after a promotion (or a clear); returns the counted
    /// `(delta reads, cell reads)` for the statistics. Caller holds the lock.
    pub(crate) fn reset(&self) -> (u64, u64) {
        // Relaxed: heuristics reset under the lock. Swapped, not stored, so a
        // sample added meanwhile is folded into the statistics, not lost.
        self.promote_wanted.store(false, Ordering::Relaxed);
        let delta = self.delta_reads.swap(0, Ordering::Relaxed);
        let cells = self.cell_reads.swap(0, Ordering::Relaxed);
        (delta as u64, cells as u64)
    }

    /// The counts since the last reset, for the statistics.
    pub(crate) fn unfolded(&self) -> (u64, u64) {
        // Relaxed: statistics.
        (
            self.delta_reads.load(Ordering::Relaxed) as u64,
            self.cell_reads.load(Ordering::Relaxed) as u64,
        )
    }
}

/// Whether this off-path read is one of the sampled ones (one in [`SAMPLE`]),
/// decided by a per-thread countdown so the shared counter is touched rarely.
#[inline]
pub(crate) fn sampled() -> bool {
    #[cfg(not(loom))]
    {
        use core::cell::Cell;
        std::thread_local! {
            static COUNTDOWN: Cell<u8> = const { Cell::new(0) };
        }
        // `try_with`: a read may run in a thread-local destructor (a value's
        // `Drop` at thread exit); it then simply goes uncounted.
        COUNTDOWN
            .try_with(|countdown| {
                let left = countdown.get();
                if left == 0 {
                    countdown.set(SAMPLE as u8 - 1);
                    true
                } else {
                    countdown.set(left - 1);
                    false
                }
            })
            .unwrap_or(false)
    }
    // Under loom every off-path read counts: deterministic, and models are tiny.
    #[cfg(loom)]
    {
        true
    }
}

/// Rule 2: whether a new key that finds the delta full (`delta_len` keys) should
/// promote rather than grow it, with `read_len` keys in the read table.
pub(crate) fn full_delta_promotes(delta_len: usize, read_len: usize) -> bool {
    delta_len >= (read_len / 2).max(MIN_PROMOTION_LEN)
}

/// Rule 3: whether `removed` removed keys among `keys` call for a compaction.
pub(crate) fn removed_keys_compact(removed: usize, keys: usize) -> bool {
    removed > 0 && removed * 2 >= keys
}
