//! What a [`SnapshotMap`](crate::SnapshotMap) reports about its versions.

use crate::sync::{AtomicU64, Ordering};

/// A [`SnapshotMap`](crate::SnapshotMap)'s version counters and memory ledger.
///
/// A *version* is one immutable table. Each write publishes a new one; the one it
/// replaces is *retired*, and is *freed* when its last [`Snapshot`] (or in-flight
/// read) lets go of it. `held` versions are retired but not yet freed: old
/// versions that snapshots keep alive. With the default publication scheme
/// (arc-swap) this is the map's whole garbage story — there is no collector to
/// flush: a version is freed on the thread that drops its last holder. With a
/// reclamation backend as the scheme ([`SnapshotMap::with_publish`]), a
/// retired version is also held until its grace period ends;
/// [`SnapshotMap::flush`] hurries that.
///
/// [`SnapshotMap::with_publish`]: crate::SnapshotMap::with_publish
/// [`SnapshotMap::flush`]: crate::SnapshotMap::flush
///
/// Counters are cumulative since the map was created and are read one by one
/// without stopping writers, so stats taken while writers run may mix moments.
///
/// [`Snapshot`]: crate::Snapshot
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let map = SnapshotMap::new();
/// map.insert("a", 1);
/// let old = map.snapshot();
/// map.insert("b", 2); // retires the version `old` holds
/// let stats = map.stats();
/// assert_eq!((stats.published, stats.retired, stats.held), (2, 2, 1));
/// drop(old);
/// let stats = map.stats();
/// assert_eq!((stats.held, stats.peak_held), (0, 1));
/// assert_eq!(stats.retired_bytes, stats.freed_bytes);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotStats {
    /// Versions published by writes (the empty or collected starting version is
    /// not counted). Equal to the current [`version`](crate::SnapshotMap::version).
    pub published: u64,
    /// Of those, publishes that first copied the previous table (single-key
    /// writes, batches, `retain`); `replace_all` and `clear` build from scratch.
    pub copies: u64,
    /// Entries cloned by those copies: the write amplification of copy-on-write.
    pub copied_entries: u64,
    /// Writes that ended in an error or a panic and published nothing: batches
    /// (and the single-key writes, which are batches) whose closure returned
    /// `Err` or panicked, or in which `Hash`, `Eq`, `Clone` or a conditional
    /// write's `PartialEq` or predicate panicked under the writer lock — also
    /// while the new table was being built for publishing — and `replace_all`
    /// calls whose iterator or `Hash` panicked. (A conditional write whose
    /// condition panics in its first check, before it takes the lock, had not
    /// started writing and is not counted; nor is one whose condition simply
    /// fails, which is an answer, not a failure.)
    pub aborted: u64,
    /// Versions replaced by a newer one.
    pub retired: u64,
    /// Retired versions freed (their last holder dropped them).
    pub freed: u64,
    /// Retired versions still alive, kept by snapshots or in-flight reads (or,
    /// under a reclamation backend, waiting for their grace period).
    pub held: u64,
    /// Bytes of those held versions: each one's own heap cell and its table's
    /// bucket array (not memory that keys and values own further down).
    pub held_bytes: u64,
    /// Bytes of the current version, counted the same way.
    pub current_bytes: u64,
    /// Bytes of every version retired so far, counted as `held_bytes` counts.
    pub retired_bytes: u64,
    /// Bytes of the retired versions freed so far.
    pub freed_bytes: u64,
    /// The most versions ever held at once, measured after each publish once
    /// the writer has let go of the version it replaced (the snapshot
    /// [`replace_all`](crate::SnapshotMap::replace_all) hands back is held
    /// until its caller drops it).
    pub peak_held: u64,
    /// The most bytes ever held at once, measured as `peak_held` is.
    pub peak_held_bytes: u64,
}

/// Counts versions retired and freed. Shared by the map and each version (which
/// records its own free), so frees after the map is gone land somewhere valid.
///
/// All counters are statistics read by no decision of the map: `Relaxed`.
#[derive(Default, Debug)]
pub(crate) struct Ledger {
    retired: AtomicU64,
    retired_bytes: AtomicU64,
    freed: AtomicU64,
    freed_bytes: AtomicU64,
    peak_held: AtomicU64,
    peak_held_bytes: AtomicU64,
    pub(crate) copies: AtomicU64,
    pub(crate) copied_entries: AtomicU64,
    pub(crate) aborted: AtomicU64,
}

impl Ledger {
    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: a statistic, read by no decision of the map.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub(crate) fn read(counter: &AtomicU64) -> u64 {
        // Relaxed: a statistic.
        counter.load(Ordering::Relaxed)
    }

    /// A version of `bytes` bytes stopped being the current one.
    pub(crate) fn record_retire(&self, bytes: usize) {
        Self::add(&self.retired, 1);
        Self::add(&self.retired_bytes, bytes as u64);
    }

    /// Raises the peaks to what is held now. Called by a writer once it has
    /// let go of its own handles to the version it replaced, so that only
    /// snapshots, in-flight reads and grace periods count.
    pub(crate) fn note_peak(&self) {
        // Frees read first, as in `fill`; with frees racing, a value the count
        // passed through, never more.
        let (freed, freed_bytes) = (Self::read(&self.freed), Self::read(&self.freed_bytes));
        let held = Self::read(&self.retired).saturating_sub(freed);
        let held_bytes = Self::read(&self.retired_bytes).saturating_sub(freed_bytes);
        // Relaxed: statistics.
        self.peak_held.fetch_max(held, Ordering::Relaxed);
        self.peak_held_bytes
            .fetch_max(held_bytes, Ordering::Relaxed);
    }

    /// A version of `bytes` bytes is being freed.
    pub(crate) fn record_free(&self, bytes: usize) {
        Self::add(&self.freed, 1);
        Self::add(&self.freed_bytes, bytes as u64);
    }

    /// Fills in the ledger's part of `stats`.
    pub(crate) fn fill(&self, stats: &mut SnapshotStats) {
        // Frees first: every free follows its retirement, so reading frees before
        // retirements never reports more frees than retirements of what it saw.
        let freed = Self::read(&self.freed);
        let freed_bytes = Self::read(&self.freed_bytes);
        let retired = Self::read(&self.retired);
        let retired_bytes = Self::read(&self.retired_bytes);
        stats.retired = retired;
        stats.freed = freed;
        stats.held = retired.saturating_sub(freed);
        stats.held_bytes = retired_bytes.saturating_sub(freed_bytes);
        stats.retired_bytes = retired_bytes;
        stats.freed_bytes = freed_bytes;
        stats.peak_held = Self::read(&self.peak_held);
        stats.peak_held_bytes = Self::read(&self.peak_held_bytes);
        stats.copies = Self::read(&self.copies);
        stats.copied_entries = Self::read(&self.copied_entries);
        stats.aborted = Self::read(&self.aborted);
    }
}
