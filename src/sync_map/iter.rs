//! Iteration over a [`SyncMap`](crate::SyncMap)'s read table.

use core::fmt;
use core::iter::FusedIterator;

use hashbrown::hash_table;

use super::entry::Entry;
use crate::sync::Arc;

/// An iterator over a [`SyncMap`](crate::SyncMap)'s live entries, from
/// [`Pinned::iter`](crate::Pinned::iter).
///
/// # Examples
///
/// ```
/// use readmostly::SyncMap;
///
/// let map: SyncMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
/// let total: i32 = map.pin().iter().map(|(_, v)| v).sum();
/// assert_eq!(total, 3);
/// ```
pub struct Iter<'g, K, V> {
    entries: hash_table::Iter<'g, Arc<Entry<K, V>>>,
}

impl<'g, K, V> Iter<'g, K, V> {
    /// # Safety
    ///
    /// `table` and the values of its entries are protected by a guard for `'g`.
    pub(crate) unsafe fn new(table: &'g super::table::Table<K, V>) -> Self {
        Iter {
            entries: table.iter(),
        }
    }
}

impl<'g, K, V> Iterator for Iter<'g, K, V> {
    type Item = (&'g K, &'g V);

    fn next(&mut self) -> Option<Self::Item> {
        for entry in self.entries.by_ref() {
            // SAFETY: `new`'s caller guaranteed a guard for 'g.
            if let Some(value) = unsafe { entry.get() } {
                return Some((entry.key(), value));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.entries.size_hint().1)
    }
}

impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("remaining_at_most", &self.entries.len())
            .finish()
    }
}
