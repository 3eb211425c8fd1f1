//! The standard traits of [`SnapshotMap`]: `Default`, `Debug`, `Clone`,
//! `PartialEq`/`Eq` (contents of the current versions), `FromIterator` and
//! `Extend` (one batch per call).

use core::fmt;
use core::hash::{BuildHasher, Hash};

use hashbrown::HashMap;

use super::SnapshotMap;
use crate::reclaim::{AtomicArc, Publish};

impl<K, V> Default for SnapshotMap<K, V> {
    /// Same as [`SnapshotMap::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S, P: Publish> fmt::Debug for SnapshotMap<K, V, S, P> {
    /// Lists the current version's entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

impl<K, V, S, P: Publish> Clone for SnapshotMap<K, V, S, P>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// A new, independent map whose version 0 holds a copy of this map's
    /// current version (same entries, same capacity, a clone of the hasher).
    /// It has its own versions, watchers and stats: writes to either map do not
    /// show in the other. Takes no lock; O(len) clones. It publishes through
    /// the same scheme, configured by default (a `Seize`
    /// backend gets a collector of its own, with the default batch size).
    ///
    /// To share one version cheaply instead, take a [`snapshot`](SnapshotMap::snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("a", 1);
    /// map.insert("b", 2);
    /// let copy = map.clone();
    /// copy.insert("c", 3);
    /// assert_eq!((map.len(), copy.len()), (2, 3));
    /// assert_eq!((map.version(), copy.version()), (2, 1));
    /// ```
    fn clone(&self) -> Self {
        let table = self.current.load().table.clone();
        let allocation = table.allocation_size();
        Self::from_table_in(table, allocation, |first| self.current.new_like(first))
    }
}

impl<K, V, S, P: Publish> PartialEq for SnapshotMap<K, V, S, P>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    /// Whether the current versions of both maps hold the same entries (as
    /// [`Snapshot`](crate::Snapshot)'s `==`). Each map's version is read at its
    /// own moment: with writers running, compare two snapshots instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let a: SnapshotMap<_, _> = [(1, "x"), (2, "y")].into_iter().collect();
    /// let b = SnapshotMap::new();
    /// b.batch(|txn| {
    ///     txn.insert(2, "y");
    ///     txn.insert(1, "x");
    /// });
    /// assert!(a == b); // contents, not version numbers
    /// b.insert(3, "z");
    /// assert!(a != b);
    /// ```
    fn eq(&self, other: &Self) -> bool {
        let (mine, theirs) = (self.current.load(), other.current.load());
        core::ptr::eq(&*mine, &*theirs) || mine.table == theirs.table
    }
}

impl<K: Hash + Eq, V: Eq, S: BuildHasher, P: Publish> Eq for SnapshotMap<K, V, S, P> {}

impl<K, V, S> FromIterator<(K, V)> for SnapshotMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Default,
{
    /// Builds version 0 from the pairs (nothing is published). A later pair for
    /// the same key wins.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = [("a", 1), ("a", 2)].into_iter().collect();
    /// assert_eq!((map.get_cloned("a"), map.version()), (Some(2), 0));
    /// ```
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut table = HashMap::with_hasher(S::default());
        table.extend(iter);
        Self::from_hash_map(table)
    }
}

impl<K, V, S, P: Publish> Extend<(K, V)> for &SnapshotMap<K, V, S, P>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// Inserts every pair in one batch: one copy, one publish (none for an
    /// empty iterator). The iterator runs under the writer lock: it must not
    /// write to this map (such a write panics; see
    /// [the type's docs](SnapshotMap#user-code-and-the-writer-lock)).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// (&map).extend([(1, 'a'), (2, 'b')]);
    /// assert_eq!((map.len(), map.version()), (2, 1));
    /// ```
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.batch(|txn| txn.extend(iter));
    }
}

impl<K, V, S, P: Publish> Extend<(K, V)> for SnapshotMap<K, V, S, P>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// Inserts every pair in one batch: one copy, one publish.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut shared = &*self;
        shared.extend(iter);
    }
}

impl<'a, K, V, S, P: Publish> Extend<(&'a K, &'a V)> for &SnapshotMap<K, V, S, P>
where
    K: Hash + Eq + Copy,
    V: Copy,
    S: BuildHasher + Clone,
{
    /// Inserts a copy of every pair in one batch, as `HashMap`'s
    /// `Extend<(&K, &V)>` does: one copy of the table, one publish.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    /// use std::collections::HashMap;
    ///
    /// let defaults = HashMap::from([("timeout", 30), ("retries", 3)]);
    /// let mut config = SnapshotMap::new();
    /// config.extend(&defaults);
    /// assert_eq!((config.get_cloned("retries"), config.version()), (Some(3), 1));
    /// ```
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        self.batch(|txn| txn.extend(iter));
    }
}

impl<'a, K, V, S, P: Publish> Extend<(&'a K, &'a V)> for SnapshotMap<K, V, S, P>
where
    K: Hash + Eq + Copy,
    V: Copy,
    S: BuildHasher + Clone,
{
    /// Inserts a copy of every pair in one batch: one copy, one publish.
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        let mut shared = &*self;
        shared.extend(iter);
    }
}
