//! One published version: an immutable table and its number.

use core::mem::size_of;

use hashbrown::HashMap;

use super::stats::Ledger;
use crate::sync::Arc;

/// An immutable table as readers see it. Never mutated after it is published;
/// freed (and its free counted) when the last `Arc` to it drops.
pub(crate) struct Version<K, V, S> {
    pub(crate) table: HashMap<K, V, S>,
    /// 0 for the map's first version, +1 per publish.
    pub(crate) number: u64,
    /// Heap bytes, fixed at publish: see [`Version::bytes`].
    bytes: usize,
    ledger: Arc<Ledger>,
}

impl<K, V, S> Version<K, V, S> {
    /// Wraps `table`, whose bucket array is `allocation` bytes (hashbrown reports
    /// it only under the `Hash + Eq` bounds, so callers measure it).
    pub(crate) fn new(
        table: HashMap<K, V, S>,
        allocation: usize,
        number: u64,
        ledger: &Arc<Ledger>,
    ) -> Arc<Self> {
        // The Arc's own block: two counts plus the version (std's layout; loom's
        // differs, which matters to no test run under it).
        let bytes = 2 * size_of::<usize>() + size_of::<Self>() + allocation;
        Arc::new(Version {
            table,
            number,
            bytes,
            ledger: Arc::clone(ledger),
        })
    }

    /// The version's own heap cell and its table's bucket array, for the ledger.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl<K, V, S> Drop for Version<K, V, S> {
    fn drop(&mut self) {
        // Counted before the table (and any user `Drop`) runs, so a panicking
        // value destructor cannot skip the count.
        self.ledger.record_free(self.bytes);
    }
}
