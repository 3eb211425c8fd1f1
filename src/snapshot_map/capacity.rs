//! Capacity of a copy-on-write map: what `with_capacity`, `capacity`, `reserve`
//! and `shrink_to_fit` mean when every write publishes a copy.
//!
//! A version's table is immutable, and a batch's copy inherits its source's
//! capacity. So capacity is a property of the *current version*: reserving
//! publishes a version (same entries) whose table has room, which every later
//! copy inherits; shrinking publishes one with the smallest table that holds
//! its keys. Both publish only when they change the capacity.

use core::hash::{BuildHasher, Hash};
use std::collections::hash_map::RandomState;

use hashbrown::HashMap;

use super::{Snapshot, SnapshotMap};
use crate::reclaim::{AtomicArc, Publish};

impl<K, V> SnapshotMap<K, V>
where
    K: Hash + Eq,
{
    /// An empty map (version 0) whose table holds at least `capacity` keys
    /// before it must grow, with the default hasher. Later copies inherit the
    /// room, so a map filled to about this size by single writes or batches
    /// never regrows its table.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(1000);
    /// assert!(map.capacity() >= 1000);
    /// assert_eq!((map.len(), map.version()), (0, 0));
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, RandomState::new())
    }
}

impl<K, V, S> SnapshotMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// As [`with_capacity`](SnapshotMap::with_capacity), with `hasher`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    /// use std::collections::hash_map::RandomState;
    ///
    /// let map: SnapshotMap<u32, u32> =
    ///     SnapshotMap::with_capacity_and_hasher(64, RandomState::new());
    /// assert!(map.capacity() >= 64);
    /// ```
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        Self::from_hash_map(HashMap::with_capacity_and_hasher(capacity, hasher))
    }
}

impl<K, V, S, P: Publish> SnapshotMap<K, V, S, P> {
    /// How many keys the current version's table holds before it must grow.
    /// The next write's copy starts with this capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// assert_eq!(map.capacity(), 0); // no table allocated yet
    /// map.insert(1, 1);
    /// assert!(map.capacity() >= 1);
    /// ```
    pub fn capacity(&self) -> usize {
        self.current.load().table.capacity()
    }
}

impl<K, V, S, P: Publish> SnapshotMap<K, V, S, P>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// Makes room for at least `additional` more keys, so that the writes that
    /// add them do not grow the table step by step. If the current version
    /// lacks the room, publishes a version with the same entries in a table
    /// sized for them (one copy, O(len); watchers see a new version with
    /// unchanged contents); otherwise does nothing.
    ///
    /// The room lasts until a write leaves fewer keys than it found and its
    /// table (with a capacity above 64) less than a quarter full: such a publish
    /// gives the memory back. Writes that only add, change or remove keys
    /// otherwise keep it; [`clear`](SnapshotMap::clear) and
    /// [`replace_all`](SnapshotMap::replace_all) build a fresh table, which does
    /// not inherit it. To size one large batch, call
    /// [`Batch::reserve`](crate::Batch::reserve) inside it instead (no extra
    /// publish).
    ///
    /// # Panics
    ///
    /// If called from code running under this map's writer lock (it would
    /// deadlock); see [the type's docs](SnapshotMap#user-code-and-the-writer-lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert(0, 0);
    /// map.reserve(1000);
    /// let capacity = map.capacity();
    /// assert!(capacity >= 1001);
    /// for i in 1..=1000 {
    ///     map.insert(i, i); // each copy already has room: no regrowth
    /// }
    /// assert_eq!(map.capacity(), capacity);
    /// ```
    pub fn reserve(&self, additional: usize) {
        self.batch(|txn| txn.reserve(additional));
    }

    /// Publishes a version with the same entries in the smallest table that
    /// holds them, if that frees memory; otherwise does nothing. (A write that
    /// leaves fewer keys than it found, in a table with a capacity above 64 now
    /// under a quarter full, shrinks it by itself.) O(len): rebuilds the table,
    /// running `Hash` under the writer lock.
    ///
    /// # Panics
    ///
    /// If called from code running under this map's writer lock (it would
    /// deadlock); see [the type's docs](SnapshotMap#user-code-and-the-writer-lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(10_000);
    /// map.insert(1, 1);
    /// map.shrink_to_fit();
    /// assert!(map.capacity() < 10_000);
    /// assert_eq!(map.get_cloned(&1), Some(1));
    /// ```
    pub fn shrink_to_fit(&self) {
        self.batch(|txn| txn.shrink_to_fit());
    }
}

impl<K, V, S> Snapshot<K, V, S> {
    /// How many keys this version's table holds before it must grow.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(100);
    /// assert!(map.snapshot().capacity() >= 100);
    /// ```
    pub fn capacity(&self) -> usize {
        self.version.table.capacity()
    }
}
