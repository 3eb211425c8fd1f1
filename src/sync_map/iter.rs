//! Iteration over a [`SyncMap`](crate::SyncMap)'s current root.

use core::fmt;
use core::iter::FusedIterator;

use super::delta::Nodes;
use super::read::Slots;
use super::root::Root;
use crate::raw::mutant::mutant;
use crate::reclaim::Protect;

/// An iterator over a [`SyncMap`](crate::SyncMap)'s live keys, from
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
    read: Slots<'g, K, V>,
    delta: Nodes<'g, K, V>,
}

impl<'g, K, V> Iter<'g, K, V> {
    /// # Safety
    ///
    /// `guard` protects `root` and the cells its slots link for `'g`.
    pub(crate) unsafe fn new<P: Protect>(root: &'g Root<K, V>, guard: &'g P) -> Self {
        Iter {
            read: root.read.slots(),
            delta: root.delta(guard).nodes(),
        }
    }
}

impl<'g, K, V> Iterator for Iter<'g, K, V> {
    type Item = (&'g K, &'g V);

    fn next(&mut self) -> Option<Self::Item> {
        // (Mutant: iterate the read table only, not the delta.)
        let delta = mutant!("iter_skips_delta" => None, else Some(&mut self.delta));
        let slots = self.read.by_ref().chain(
            delta
                .into_iter()
                .flat_map(|nodes| nodes.map(|(_, node)| node.as_slot())),
        );
        for slot in slots {
            // SAFETY: `new`'s caller guaranteed a guard for 'g.
            if let Some(value) = unsafe { slot.get() } {
                return Some((slot.key(), value));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let read = self.read.size_hint().1;
        let delta = self.delta.size_hint().1;
        (0, read.zip(delta).map(|(r, d)| r + d))
    }
}

impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}
