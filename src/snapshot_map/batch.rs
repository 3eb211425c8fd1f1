//! [`Batch`]: the transaction a [`SnapshotMap`](crate::SnapshotMap) writer edits
//! before publishing it as one version.

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};

use hashbrown::HashMap;

use super::snapshot::SnapshotIter;
use super::version::Version;

/// A set of changes to a [`SnapshotMap`](crate::SnapshotMap), published as one
/// new version when the closure given to
/// [`batch`](crate::SnapshotMap::batch) or
/// [`try_batch`](crate::SnapshotMap::try_batch) returns — readers see all of it
/// or none of it.
///
/// Reads through the batch see its own changes. The first change copies the
/// current table (once, O(len)); later changes are plain hash-map operations on
/// the copy. A batch that changes nothing copies and publishes nothing. Writers
/// are serialized: while a batch is open, other writers wait, and readers keep
/// reading the version the batch started from.
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let accounts: SnapshotMap<_, _> = [("alice", 100), ("bob", 0)].into_iter().collect();
/// accounts.batch(|txn| {
///     let amount = 30;
///     txn.update("alice", |v| v - amount);
///     txn.update("bob", |v| v + amount);
///     assert_eq!(txn.get("bob"), Some(&30)); // the batch sees its own changes
/// });
/// assert_eq!(accounts.get_cloned("alice"), Some(70));
/// ```
pub struct Batch<'a, K, V, S> {
    base: &'a Version<K, V, S>,
    /// The copy being edited; `None` until the first change.
    next: Option<HashMap<K, V, S>>,
    /// Entries cloned from `base` into `next`; `None` when `next` was built
    /// from scratch (or not at all).
    copied: Option<usize>,
}

impl<'a, K, V, S> Batch<'a, K, V, S> {
    pub(crate) fn new(base: &'a Version<K, V, S>) -> Self {
        Batch {
            base,
            next: None,
            copied: None,
        }
    }

    /// The table as this batch sees it.
    fn view(&self) -> &HashMap<K, V, S> {
        self.next.as_ref().unwrap_or(&self.base.table)
    }

    /// The new table, if the batch changed anything, and the entries it copied.
    pub(crate) fn into_changes(self) -> Option<(HashMap<K, V, S>, Option<usize>)> {
        self.next.map(|table| (table, self.copied))
    }

    /// The number of the version this batch started from; it publishes the next.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert(1, 1);
    /// map.batch(|txn| {
    ///     assert_eq!(txn.base_version(), 1);
    ///     txn.insert(2, 2);
    /// });
    /// assert_eq!(map.version(), 2);
    /// ```
    pub fn base_version(&self) -> u64 {
        self.base.number
    }

    /// Whether the batch has changed anything yet (and so will publish).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    /// map.batch(|txn| {
    ///     assert!(txn.remove(&1).is_none());
    ///     assert!(!txn.is_changed()); // removing an absent key changes nothing
    /// });
    /// assert_eq!(map.version(), 0);
    /// ```
    pub fn is_changed(&self) -> bool {
        self.next.is_some()
    }

    /// Keys as the batch sees them.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.batch(|txn| {
    ///     txn.insert("a", 1);
    ///     assert_eq!(txn.len(), 1);
    /// });
    /// ```
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether the batch sees no keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    /// map.batch(|txn| assert!(txn.is_empty()));
    /// ```
    pub fn is_empty(&self) -> bool {
        self.view().is_empty()
    }

    /// The entries as the batch sees them, in arbitrary order.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = [(1, 10), (2, 20)].into_iter().collect();
    /// let total = map.batch(|txn| {
    ///     txn.insert(3, 30);
    ///     txn.iter().map(|(_, v)| v).sum::<i32>()
    /// });
    /// assert_eq!(total, 60);
    /// ```
    pub fn iter(&self) -> SnapshotIter<'_, K, V> {
        SnapshotIter::new(self.view().iter())
    }
}

impl<K, V, S> Batch<'_, K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// `key`'s value as the batch sees it.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("a", 1);
    /// map.batch(|txn| {
    ///     assert_eq!(txn.get("a"), Some(&1));
    ///     txn.remove("a");
    ///     assert_eq!(txn.get("a"), None);
    /// });
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.view().get(key)
    }

    /// Whether the batch sees `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.batch(|txn| {
    ///     txn.insert(1, ());
    ///     assert!(txn.contains_key(&1));
    /// });
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.view().contains_key(key)
    }
}

impl<K, V, S> Batch<'_, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// The table to change, copying the base on the first change.
    fn table(&mut self) -> &mut HashMap<K, V, S> {
        let (base, copied) = (self.base, &mut self.copied);
        self.next.get_or_insert_with(|| {
            *copied = Some(base.table.len());
            base.table.clone()
        })
    }

    /// Inserts `value` for `key`, returning the value it replaces in the batch.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("a", 1);
    /// map.batch(|txn| {
    ///     assert_eq!(txn.insert("a", 2), Some(1));
    ///     assert_eq!(txn.insert("b", 3), None);
    /// });
    /// assert_eq!(map.len(), 2);
    /// ```
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.table().insert(key, value)
    }

    /// Removes `key`, returning its value. Removing an absent key changes nothing
    /// (and copies nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("a", 1);
    /// map.batch(|txn| assert_eq!(txn.remove("a"), Some(1)));
    /// assert!(map.is_empty());
    /// ```
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        self.table().remove(key)
    }

    /// Replaces `key`'s value with `f(current)` and returns the new value; does
    /// nothing and returns `None` if the key is absent. If `f` panics, the batch
    /// is aborted like any other panic in it.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let hits = SnapshotMap::new();
    /// hits.insert("/", 1u64);
    /// hits.batch(|txn| {
    ///     assert_eq!(txn.update("/", |n| n + 1), Some(&2));
    ///     assert_eq!(txn.update("/missing", |n| n + 1), None);
    /// });
    /// ```
    pub fn update<Q>(&mut self, key: &Q, f: impl FnOnce(&V) -> V) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let new = f(self.get(key)?);
        let slot = self.table().get_mut(key)?;
        *slot = new;
        Some(slot)
    }

    /// Keeps only the entries for which `keep` returns true. Removing nothing
    /// changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
    /// map.batch(|txn| txn.retain(|_, v| v % 2 == 0));
    /// assert_eq!(map.len(), 5);
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        if let Some(table) = &mut self.next {
            table.retain(|k, v| keep(k, v));
            return;
        }
        // Not copied yet: copy only what is kept, and nothing at all if `keep`
        // keeps everything.
        let base = &self.base.table;
        let mut kept = HashMap::with_capacity_and_hasher(base.len(), base.hasher().clone());
        let mut removed = false;
        for (k, v) in base {
            if keep(k, v) {
                kept.insert(k.clone(), v.clone());
            } else {
                removed = true;
            }
        }
        if removed {
            self.copied = Some(kept.len());
            self.next = Some(kept);
        }
    }

    /// Removes every key, without copying the current table.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
    /// map.batch(|txn| {
    ///     txn.clear();
    ///     txn.insert(99, 99);
    /// });
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn clear(&mut self) {
        let hasher = self.view().hasher().clone();
        self.next = Some(HashMap::with_hasher(hasher));
        self.copied = None;
    }
}

impl<K, V, S> Extend<(K, V)> for Batch<'_, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// Inserts every pair (an empty iterator changes nothing).
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut iter = iter.into_iter().peekable();
        if iter.peek().is_some() {
            self.table().extend(iter);
        }
    }
}

impl<K, V, S> fmt::Debug for Batch<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("base_version", &self.base.number)
            .field("changed", &self.next.is_some())
            .field("len", &self.view().len())
            .finish()
    }
}
