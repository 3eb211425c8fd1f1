//! Iteration over a [`SyncMap`](crate::SyncMap)'s current root.

use core::fmt;
use core::iter::FusedIterator;

use hashbrown::hash_table;

use super::delta::Entries;
use super::entry::Entry;
use super::root::Root;
use crate::reclaim::Guard;
use crate::sync::Arc;

/// An iterator over a [`SyncMap`](crate::SyncMap)'s live entries, from
/// [`Pinned::iter`](crate::Pinned::iter): the read table, then the delta of keys
/// added since the last promotion.
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
    read: hash_table::Iter<'g, Arc<Entry<K, V>>>,
    delta: Entries<'g, K, V>,
}

impl<'g, K, V> Iter<'g, K, V> {
    /// # Safety
    ///
    /// `guard` protects `root` and the values of its entries for `'g`.
    pub(crate) unsafe fn new<G: Guard>(root: &'g Root<K, V>, guard: &'g G) -> Self {
        Iter {
            read: root.read.iter(),
            delta: root.delta(guard).iter(),
        }
    }
}

impl<'g, K, V> Iterator for Iter<'g, K, V> {
    type Item = (&'g K, &'g V);

    fn next(&mut self) -> Option<Self::Item> {
        #[cfg(loom_mutant)] // mutant: iterate the read table only, not the delta
        if crate::reclaim::mutant("iter_skips_delta") {
            // SAFETY: as below.
            return self
                .read
                .find_map(|e| unsafe { e.get() }.map(|v| (e.key(), v)));
        }
        let entries = self.read.by_ref().map(|entry| &**entry);
        for entry in entries.chain(self.delta.by_ref()) {
            // SAFETY: `new`'s caller guaranteed a guard for 'g.
            if let Some(value) = unsafe { entry.get() } {
                return Some((entry.key(), value));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let read = self.read.len();
        let delta = self.delta.size_hint().1;
        (0, delta.map(|d| d + read))
    }
}

impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("read_remaining", &self.read.len())
            .finish_non_exhaustive()
    }
}
