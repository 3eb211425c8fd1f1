//! What a map reports about its protocol and its garbage.

use crate::reclaim::{Kind, Ledger};
use crate::sync::{AtomicU64, Ordering};

/// A snapshot of a map's protocol counters and reclamation ledger.
///
/// One type for every map of the crate; a counter a map's protocol has no use
/// for stays 0 (for example `misses` and `dirty_copies` belong to the classic
/// sync.Map protocol, `delta_reads` to [`SyncMap`](crate::SyncMap)'s).
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
/// map.insert("a", 1); // a new key: goes to the delta
/// map.promote();      // merges the delta into a fresh read table
/// let stats = map.stats();
/// assert_eq!(stats.promotions, 1);
/// assert!(stats.tables_retired >= 1); // the old root (read table and delta)
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// [`SyncMap`](crate::SyncMap): lookups served by the delta (keys added since
    /// the last promotion), counted by sampling — an estimate (the rate is in
    /// the crate docs, "When `SyncMap` promotes").
    pub delta_reads: u64,
    /// [`SyncMap`](crate::SyncMap): lookups served through a value cell (keys
    /// overwritten since the last promotion), counted by sampling — an estimate,
    /// as [`delta_reads`](Self::delta_reads).
    pub cell_reads: u64,
    /// Classic protocol: lookups that missed the read table while it was amended
    /// and so took the lock to look in the dirty table (Go's `misses`, never reset).
    pub misses: u64,
    /// Times a new read table was published (SyncMap: read and delta merged;
    /// classic: the dirty table promoted).
    pub promotions: u64,
    /// [`SyncMap`](crate::SyncMap): promotions the map started by itself and
    /// abandoned because a user `Clone` or `Hash` panicked (nothing was
    /// published; see "Panics in user code" on [`SyncMap`](crate::SyncMap)).
    pub promotions_abandoned: u64,
    /// Of those, promotions started by removed keys (tombstones), to give their
    /// memory back: for [`SyncMap`](crate::SyncMap), rule 3 of "When `SyncMap`
    /// promotes" in the crate docs. Classic protocol: what reaches
    /// half is a count of removes from the read table since its last rebuild,
    /// so a key removed, stored again and removed again counts twice toward it.
    pub compactions: u64,
    /// Entries of removed keys left out of a rebuilt table: by promotions
    /// (SyncMap), by dirty copies and compactions (classic protocol; there, a
    /// key stored again before the next promotion takes its entry back).
    pub tombstones_purged: u64,
    /// [`SyncMap`](crate::SyncMap): times the delta grew (copied into one twice the
    /// size).
    pub delta_growths: u64,
    /// Classic protocol: times the read table was copied into a fresh dirty table
    /// (the cost Go pays on the first new key after each promotion).
    pub dirty_copies: u64,
    /// Values retired after an overwrite, update or remove.
    pub values_retired: u64,
    /// Classic protocol: entries (key, hash, value slot) retired on their own,
    /// taken out of the dirty table by a remove or a compaction. Entries that
    /// leave with a whole table — every entry at `clear`, and the entries of
    /// removed keys a dirty copy left out, which go with the old read table at
    /// the next promotion — are freed with that table and counted neither
    /// here nor in its bytes.
    pub entries_retired: u64,
    /// Whole tables retired by promotion, delta growth or `clear` (a SyncMap root
    /// counts once, with its read table and delta).
    pub tables_retired: u64,
    /// Bytes of every object retired so far (see `pending_bytes` for what counts).
    pub retired_bytes: u64,
    /// Retired objects freed so far.
    pub freed: u64,
    /// Their bytes.
    pub freed_bytes: u64,
    /// Retired objects not freed yet: garbage waiting for readers to move on,
    /// or for its batch (values reach the reclaimer 16 at a time per ledger
    /// shard, see "Memory reclamation" in the crate docs; `flush()` reaches a
    /// partial batch too).
    pub pending: u64,
    /// Bytes held by those pending objects: their own allocations (a value
    /// cell's `size_of::<V>()`, at least 1; a table's bucket array, a root's
    /// delta nodes and the cells its slots still link), not memory their keys
    /// and values own further down. A classic-protocol entry's first value is
    /// stored inside the entry and counts 0 here: its bytes are counted with
    /// the entry (and an entry that leaves with its table counts 0; see
    /// `entries_retired`).
    pub pending_bytes: u64,
    /// The most objects ever pending at once, measured at each retirement.
    /// Each thread counts in one of the ledger's shards and this is the sum of
    /// their peaks: exact when only one thread ever retires into the map,
    /// otherwise an upper bound (never below the true peak), even for threads
    /// that retire one after another.
    pub peak_pending: u64,
    /// The most bytes ever pending at once, summed over shards like
    /// `peak_pending`.
    pub peak_pending_bytes: u64,
    /// Freed value cells whose memory the map keeps for its next values
    /// (`SyncMap` only; see "Memory reclamation" in the crate docs). Counted
    /// in `freed`, not in `pending`: their values are dropped.
    /// [`SyncMap::flush`](crate::SyncMap::flush) gives them back.
    pub spare_cells: u64,
    /// Their bytes (a cell's `size_of::<V>()`, at least 1; not counting the
    /// pools' lists of them, 8 bytes a cell).
    pub spare_bytes: u64,
}

/// The protocol's event counters. Written by writers (and, in the classic
/// protocol, by readers on the locked miss path) — never by a lock-free read.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) delta_reads: AtomicU64,
    pub(crate) cell_reads: AtomicU64,
    pub(crate) promotions_abandoned: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) promotions: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) tombstones_purged: AtomicU64,
    pub(crate) delta_growths: AtomicU64,
    pub(crate) dirty_copies: AtomicU64,
}

impl Counters {
    /// Counts one event.
    pub(crate) fn bump(counter: &AtomicU64) {
        // Relaxed: a statistic, read by no protocol decision.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` events.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: a statistic, read by no protocol decision.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn read(counter: &AtomicU64) -> u64 {
        // Relaxed: a statistic.
        counter.load(Ordering::Relaxed)
    }

    /// These counters and `ledger`'s figures, as one [`Stats`].
    pub(crate) fn snapshot(&self, ledger: &Ledger) -> Stats {
        let counts = ledger.counts();
        Stats {
            delta_reads: Self::read(&self.delta_reads),
            cell_reads: Self::read(&self.cell_reads),
            misses: Self::read(&self.misses),
            promotions: Self::read(&self.promotions),
            promotions_abandoned: Self::read(&self.promotions_abandoned),
            compactions: Self::read(&self.compactions),
            tombstones_purged: Self::read(&self.tombstones_purged),
            delta_growths: Self::read(&self.delta_growths),
            dirty_copies: Self::read(&self.dirty_copies),
            values_retired: counts.retired[Kind::Value as usize],
            entries_retired: counts.retired[Kind::Entry as usize],
            tables_retired: counts.retired[Kind::Table as usize],
            retired_bytes: counts.retired_bytes,
            freed: counts.freed,
            freed_bytes: counts.freed_bytes,
            pending: counts.pending(),
            pending_bytes: counts.pending_bytes(),
            peak_pending: counts.peak_pending,
            peak_pending_bytes: counts.peak_pending_bytes,
            spare_cells: counts.spare_cells,
            spare_bytes: counts.spare_bytes,
        }
    }
}
