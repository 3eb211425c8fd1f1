//! The `rayon` feature: parallel iteration over the maps with [rayon].
//!
//! One section per map type. A [`Snapshot`] is one immutable version, so it
//! can be split among rayon's threads with no synchronization at all:
//! `snapshot.par_iter()` (from rayon's `IntoParallelRefIterator`, in
//! `rayon::prelude`) visits each entry of that version exactly once. A pinned
//! [`SyncMap`](crate::SyncMap) splits its current root the same way
//! ([`Pinned::par_iter`](crate::Pinned::par_iter)), with what a sequential
//! iteration promises.
//!
//! [rayon]: https://docs.rs/rayon

use core::fmt;

use rayon::iter::plumbing::UnindexedConsumer;
use rayon::iter::{IntoParallelIterator, ParallelIterator};

use crate::Snapshot;

// ---------------------------------------------------------------------------
// Snapshot
// ---------------------------------------------------------------------------

/// A parallel iterator over a [`Snapshot`]'s entries by reference, from
/// `snapshot.par_iter()` (or `(&snapshot).into_par_iter()`), in arbitrary order.
///
/// # Examples
///
/// ```
/// use rayon::prelude::*;
/// use readmostly::SnapshotMap;
///
/// let map: SnapshotMap<u64, u64> = (0..1000).map(|i| (i, i * 2)).collect();
/// let snapshot = map.snapshot();
/// let total: u64 = snapshot.par_iter().map(|(_, v)| *v).sum();
/// assert_eq!(total, 999 * 1000);
/// ```
pub struct SnapshotParIter<'a, K, V> {
    inner: hashbrown::hash_map::rayon::ParIter<'a, K, V>,
}

impl<'a, K: Sync, V: Sync> ParallelIterator for SnapshotParIter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn drive_unindexed<C>(self, consumer: C) -> C::Result
    where
        C: UnindexedConsumer<Self::Item>,
    {
        self.inner.drive_unindexed(consumer)
    }

    fn opt_len(&self) -> Option<usize> {
        self.inner.opt_len()
    }
}

impl<K, V> Clone for SnapshotParIter<'_, K, V> {
    fn clone(&self) -> Self {
        SnapshotParIter {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> fmt::Debug for SnapshotParIter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotParIter").finish_non_exhaustive()
    }
}

impl<'a, K: Sync, V: Sync, S> IntoParallelIterator for &'a Snapshot<K, V, S> {
    type Iter = SnapshotParIter<'a, K, V>;
    type Item = (&'a K, &'a V);

    /// Iterates this version's entries in parallel; see [`SnapshotParIter`].
    fn into_par_iter(self) -> Self::Iter {
        SnapshotParIter {
            inner: (&self.version.table).into_par_iter(),
        }
    }
}

// ---------------------------------------------------------------------------
// SyncMap, through a Pinned
// ---------------------------------------------------------------------------

impl<'map, K, V, S, R> crate::Pinned<'map, K, V, S, R>
where
    K: core::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: core::hash::BuildHasher,
    R: crate::reclaim::Reclaim,
{
    /// Iterates over live keys in parallel on rayon's threads, with what
    /// [`iter`](crate::Pinned::iter) promises: every key present for the whole
    /// iteration is visited exactly once, with a value it had at some moment of
    /// it. Not a snapshot. The iteration runs while this guard is held (rayon's
    /// consumers return before `par_iter`'s caller goes on), which keeps every
    /// value it reaches valid on every thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayon::prelude::*;
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<u64, u64> = (0..1000).map(|i| (i, i * 2)).collect();
    /// let pinned = map.pin();
    /// let total: u64 = pinned.par_iter().map(|(_, v)| *v).sum();
    /// assert_eq!(total, 999 * 1000);
    /// ```
    pub fn par_iter(&self) -> impl ParallelIterator<Item = (&K, &V)> + '_ {
        let guard = self.guard();
        let root = self.map().root(guard);
        // SAFETY: `guard` protects the root, its delta and their cells for the
        // borrow of `self`, which the iterator keeps.
        unsafe { crate::sync_map::par_slots(root, root.delta(guard)) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rayon::prelude::*;

    use crate::SnapshotMap;

    #[test]
    fn a_parallel_sum_equals_the_sequential_one() {
        let map: SnapshotMap<u64, u64> = (0..100_000).map(|i| (i, i * 7 + 1)).collect();
        let snapshot = map.snapshot();
        let sequential: u64 = snapshot.iter().map(|(k, v)| k ^ v).sum();
        let parallel: u64 = snapshot.par_iter().map(|(k, v)| k ^ v).sum();
        assert_eq!(parallel, sequential);
        assert_eq!(snapshot.par_iter().count(), snapshot.len());
    }

    #[test]
    fn a_pinned_sync_map_visits_every_stable_key_once_while_writers_run() {
        let map: crate::SyncMap<u32, u32> = (0..20_000).map(|i| (i, i)).collect();
        for i in 20_000..20_500 {
            map.insert(i, i); // in the delta
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..2_000 {
                    map.insert(100_000 + i, 100_000 + i);
                    map.remove(&(19_000 + i % 500));
                    map.insert(19_000 + i % 500, 19_000 + i % 500);
                    if i % 500 == 0 {
                        map.promote();
                    }
                }
            });
            let pinned = map.pin();
            let keys: Vec<u32> = pinned
                .par_iter()
                .map(|(k, v)| {
                    assert_eq!(k, v);
                    *k
                })
                .collect();
            let distinct: HashSet<u32> = keys.iter().copied().collect();
            assert_eq!(distinct.len(), keys.len(), "a key visited twice");
            // Keys present throughout: 0..19_000 and 19_500..20_500.
            for k in (0..19_000).chain(19_500..20_500) {
                assert!(distinct.contains(&k), "key {k} missed");
            }
        });
        let pinned = map.pin();
        let sequential: u64 = pinned.iter().map(|(_, v)| u64::from(*v)).sum();
        let parallel: u64 = pinned.par_iter().map(|(_, v)| u64::from(*v)).sum();
        assert_eq!(parallel, sequential);
    }

    #[test]
    fn every_entry_of_the_version_is_visited_once_while_writers_publish() {
        let map: SnapshotMap<u32, u32> = (0..20_000).map(|i| (i, i)).collect();
        let snapshot = map.snapshot();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..50 {
                    map.batch(|txn| {
                        txn.remove(&i);
                        txn.insert(100_000 + i, 0);
                    });
                }
            });
            let keys: Vec<u32> = snapshot
                .par_iter()
                .map(|(k, v)| {
                    assert_eq!(k, v, "a value from another version");
                    *k
                })
                .collect();
            assert_eq!(keys.len(), 20_000);
            let distinct: HashSet<u32> = keys.into_iter().collect();
            assert_eq!(distinct, (0..20_000).collect());
        });
        assert_eq!(map.version(), 50);
    }

    #[test]
    fn an_empty_snapshot_iterates_nothing() {
        let map: SnapshotMap<u8, u8> = SnapshotMap::new();
        assert_eq!((&map.snapshot()).into_par_iter().count(), 0);
    }
}
