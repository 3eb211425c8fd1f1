//! What a map reports about its protocol and its garbage.

use crate::sync::{AtomicU64, Ordering};

/// A snapshot of a [`SyncMap`](crate::SyncMap)'s protocol counters and
/// reclamation ledger.
///
/// Counters are cumulative since the map was created. They are read one by one
/// without stopping writers, so a snapshot taken while writers run may mix moments
/// (each counter is exact on its own).
///
/// # Examples
///
/// ```
/// use readmostly::SyncMap;
///
/// let map = SyncMap::new();
/// map.insert("a", 1); // a new key: copies `read` into a fresh dirty table
/// map.promote();      // publishes it
/// let stats = map.stats();
/// assert_eq!(stats.promotions, 1);
/// assert_eq!(stats.dirty_copies, 1);
/// assert!(stats.tables_retired >= 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups that missed the read table while it was amended and so took the
    /// lock to look in the dirty table (Go's `misses`, but never reset).
    pub misses: u64,
    /// Times the dirty table was published as the new read table.
    pub promotions: u64,
    /// Of those, promotions started because removed keys (tombstones) reached half
    /// of the read table, to give their memory back.
    pub compactions: u64,
    /// Times the read table was copied into a fresh dirty table (the cost Go pays
    /// on the first new key after each promotion).
    pub dirty_copies: u64,
    /// Values retired after an overwrite, update or remove.
    pub values_retired: u64,
    /// Entries (key, hash, value slot) retired after leaving their last table.
    pub entries_retired: u64,
    /// Whole tables retired by promotion or `clear`.
    pub tables_retired: u64,
    /// Retired objects freed so far.
    pub freed: u64,
    /// Retired objects not freed yet: garbage waiting for readers to move on.
    pub pending: u64,
    /// Bytes held by those pending objects (their own heap cells: a value's
    /// `size_of`, a table's bucket array; not memory they own further down).
    pub pending_bytes: u64,
}

/// The protocol's event counters. Written by writers and by readers on the locked
/// miss path only — never on a read hit.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) misses: AtomicU64,
    pub(crate) promotions: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) dirty_copies: AtomicU64,
}

impl Counters {
    /// Counts one event.
    pub(crate) fn bump(counter: &AtomicU64) {
        // Relaxed: a statistic, read by no protocol decision.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(counter: &AtomicU64) -> u64 {
        // Relaxed: a statistic.
        counter.load(Ordering::Relaxed)
    }
}
