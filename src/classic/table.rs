//! The classic protocol's table of shared entries.
//!
//! A table maps keys to shared entries: `hashbrown::HashTable<Arc<Entry>>`. It
//! stores no keys of its own — the entry owns the key — so the read and dirty
//! tables share one entry per key without `K: Clone` (Go's design), and it hashes
//! with the entry's cached hash, so no user code runs while a table grows or is
//! copied.

use core::borrow::Borrow;
use core::mem::size_of;

use hashbrown::HashTable;

use super::entry::Entry;
use crate::sync::Arc;

/// Key → shared entry.
pub(crate) type Table<K, V> = HashTable<Arc<Entry<K, V>>>;

/// Finds `key`'s entry in `table`.
///
/// Compares the cached hash before the key, so user `Eq` runs only on a full
/// 64-bit hash match.
#[inline]
pub(crate) fn find<'t, K, V, Q>(
    table: &'t Table<K, V>,
    hash: u64,
    key: &Q,
) -> Option<&'t Arc<Entry<K, V>>>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    table.find(hash, |entry| {
        entry.hash == hash && entry.key().borrow() == key
    })
}

/// Adds `entry` to `table`; the caller knows its key is not there yet.
pub(crate) fn insert_new<K, V>(table: &mut Table<K, V>, entry: Arc<Entry<K, V>>) {
    table.insert_unique(entry.hash, entry, |e| e.hash);
}

/// Heap bytes a table holds, for the reclamation ledger: its bucket array plus the
/// `Box` around a retired one.
pub(crate) fn table_bytes<K, V>(table: &Table<K, V>) -> usize {
    size_of::<Table<K, V>>() + table.allocation_size()
}
