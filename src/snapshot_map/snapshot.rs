//! [`Snapshot`]: a handle to one version, and the ways to read it.

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::iter::FusedIterator;
use core::ops::Deref;
use core::ptr::NonNull;
use std::collections::hash_map::RandomState;

use hashbrown::hash_map;

use super::diff::Diff;
use super::version::Version;
use crate::reclaim::{ArcSwapPublish, AtomicArc, Publish};
use crate::sync::Arc;

/// One version of a [`SnapshotMap`](crate::SnapshotMap), frozen: every lookup and
/// iteration through it sees exactly the entries that version was published
/// with, however many versions are published after it.
///
/// Cheap to take ([`SnapshotMap::snapshot`](crate::SnapshotMap::snapshot): one
/// reference-count increment) and to clone. It is `Send + Sync` when the keys,
/// values and hasher are `Send + Sync`, so it can be held across an `.await`,
/// sent to another thread or shared. Lookups through a snapshot cost what a plain `hashbrown`
/// lookup costs — no synchronization at all — so a reader doing many lookups
/// should take one snapshot and reuse it.
///
/// A version's memory is freed when its last snapshot (and the map, if it is
/// still current) lets go of it — and, when the map publishes through a
/// reclamation backend, once the grace period after it was replaced has ended;
/// holding a snapshot for long keeps a whole old table alive, which
/// [`SnapshotMap::stats`](crate::SnapshotMap::stats) reports as `held`. A
/// snapshot is the same under every publication scheme: an `Arc` of its version.
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let routes = SnapshotMap::new();
/// routes.insert("/", "index");
/// let before = routes.snapshot();
/// routes.insert("/", "home");
/// assert_eq!(before.get("/"), Some(&"index")); // still its own version
/// assert_eq!(routes.snapshot().get("/"), Some(&"home"));
/// assert!(before.version() < routes.version());
/// ```
pub struct Snapshot<K, V, S = RandomState> {
    pub(crate) version: Arc<Version<K, V, S>>,
}

impl<K, V, S> Snapshot<K, V, S> {
    pub(crate) fn new(version: Arc<Version<K, V, S>>) -> Self {
        Snapshot { version }
    }

    /// This version's number: 0 for a new map, +1 for each publish.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// assert_eq!(map.snapshot().version(), 0);
    /// map.insert(1, 1);
    /// assert_eq!(map.snapshot().version(), 1);
    /// ```
    pub fn version(&self) -> u64 {
        self.version.number
    }

    /// Keys in this version.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = [(1, 'a'), (2, 'b')].into_iter().collect();
    /// assert_eq!(map.snapshot().len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.version.table.len()
    }

    /// Whether this version has no keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    /// assert!(map.snapshot().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.version.table.is_empty()
    }

    /// The entries of this version, in arbitrary order.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
    /// let snapshot = map.snapshot();
    /// let total: i32 = snapshot.iter().map(|(_, v)| v).sum();
    /// assert_eq!(total, 3);
    /// ```
    pub fn iter(&self) -> SnapshotIter<'_, K, V> {
        SnapshotIter::new(self.version.table.iter())
    }

    /// The keys of this version, in arbitrary order.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = [("a", 1)].into_iter().collect();
    /// assert_eq!(map.snapshot().keys().collect::<Vec<_>>(), [&"a"]);
    /// ```
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> + '_ {
        self.version.table.keys()
    }

    /// The values of this version, in arbitrary order.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
    /// assert_eq!(map.snapshot().values().sum::<i32>(), 3);
    /// ```
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> + '_ {
        self.version.table.values()
    }

    /// Whether both snapshots hold the same published version (of the same map).
    /// O(1); compare with `==` to compare contents.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// let a = map.snapshot();
    /// assert!(a.same_version(&map.snapshot()));
    /// map.insert(1, 1);
    /// map.remove(&1);
    /// let b = map.snapshot();
    /// assert!(!a.same_version(&b));
    /// assert_eq!(a, b); // equal contents
    /// ```
    pub fn same_version(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.version, &other.version)
    }

    /// The hasher this version's table was built with.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    /// use std::hash::BuildHasher;
    ///
    /// let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    /// let _hash = map.snapshot().hasher().hash_one(1u8);
    /// ```
    pub fn hasher(&self) -> &S {
        self.version.table.hasher()
    }
}

impl<K, V, S> Snapshot<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// `key`'s value in this version.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert(String::from("k"), 1);
    /// let snapshot = map.snapshot();
    /// assert_eq!(snapshot.get("k"), Some(&1)); // looked up by &str
    /// assert_eq!(snapshot.get("x"), None);
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.version.table.get(key)
    }

    /// `key`'s stored key and value in this version.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("k", 1);
    /// assert_eq!(map.snapshot().get_key_value("k"), Some((&"k", &1)));
    /// ```
    #[inline]
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.version.table.get_key_value(key)
    }

    /// Whether `key` is in this version.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert(1, ());
    /// assert!(map.snapshot().contains_key(&1));
    /// ```
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.version.table.contains_key(key)
    }

    /// What changed from this version to `newer`: keys added, removed, and keys
    /// whose value differs (by `PartialEq`). O(len of both); nothing when both are
    /// the same version. Either snapshot may be the newer one in time — the diff
    /// reads "from `self` to `newer`".
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{Change, SnapshotMap};
    ///
    /// let config = SnapshotMap::new();
    /// config.insert("timeout", 30);
    /// config.insert("retries", 3);
    /// let old = config.snapshot();
    /// config.batch(|txn| {
    ///     txn.insert("timeout", 60);
    ///     txn.remove("retries");
    ///     txn.insert("region", 1);
    /// });
    /// let mut log: Vec<String> = old
    ///     .diff(&config.snapshot())
    ///     .map(|change| match change {
    ///         Change::Added { key, value } => format!("+{key}={value}"),
    ///         Change::Removed { key, .. } => format!("-{key}"),
    ///         Change::Changed { key, old, new } => format!("{key}: {old}->{new}"),
    ///     })
    ///     .collect();
    /// log.sort();
    /// assert_eq!(log, ["+region=1", "-retries", "timeout: 30->60"]);
    /// ```
    pub fn diff<'a>(&'a self, newer: &'a Self) -> Diff<'a, K, V, S>
    where
        V: PartialEq,
    {
        Diff::new(
            &self.version.table,
            &newer.version.table,
            self.same_version(newer),
        )
    }
}

impl<K, V, S> Clone for Snapshot<K, V, S> {
    /// Another handle to the same version (one reference-count increment).
    fn clone(&self) -> Self {
        Snapshot {
            version: Arc::clone(&self.version),
        }
    }
}

impl<K, V, S> PartialEq for Snapshot<K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    /// Equal contents (O(1) when both hold the same version).
    fn eq(&self, other: &Self) -> bool {
        self.same_version(other) || self.version.table == other.version.table
    }
}

impl<K: Hash + Eq, V: Eq, S: BuildHasher> Eq for Snapshot<K, V, S> {}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for Snapshot<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a, K, V, S> IntoIterator for &'a Snapshot<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = SnapshotIter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V, S> IntoIterator for Snapshot<K, V, S>
where
    K: Clone + 'static,
    V: Clone + 'static,
{
    type Item = (K, V);
    type IntoIter = SnapshotIntoIter<K, V, S>;

    /// Iterates clones of the entries; the iterator keeps the version alive.
    fn into_iter(self) -> Self::IntoIter {
        SnapshotIntoIter::new(self.version)
    }
}

/// An iterator over a [`Snapshot`]'s entries by reference, from
/// [`Snapshot::iter`].
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let map: SnapshotMap<_, _> = [(1, 10), (2, 20)].into_iter().collect();
/// let snapshot = map.snapshot();
/// let mut keys: Vec<_> = snapshot.iter().map(|(k, _)| *k).collect();
/// keys.sort();
/// assert_eq!(keys, [1, 2]);
/// ```
pub struct SnapshotIter<'a, K, V> {
    inner: hash_map::Iter<'a, K, V>,
}

impl<'a, K, V> SnapshotIter<'a, K, V> {
    pub(crate) fn new(inner: hash_map::Iter<'a, K, V>) -> Self {
        SnapshotIter { inner }
    }
}

impl<'a, K, V> Iterator for SnapshotIter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<K, V> ExactSizeIterator for SnapshotIter<'_, K, V> {}
impl<K, V> FusedIterator for SnapshotIter<'_, K, V> {}

impl<K, V> Clone for SnapshotIter<'_, K, V> {
    fn clone(&self) -> Self {
        SnapshotIter {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> fmt::Debug for SnapshotIter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotIter")
            .field("remaining", &self.inner.len())
            .finish()
    }
}

/// An owning iterator over one version's entries, yielding clones; it holds the
/// version, so it sees one consistent version however long it runs. From
/// [`SnapshotMap::iter`](crate::SnapshotMap::iter) or `Snapshot::into_iter`.
///
/// To iterate by reference, iterate a [`Snapshot`] instead.
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let map: SnapshotMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
/// let iter = map.iter();
/// map.clear(); // the iterator still walks the version it started on
/// let mut pairs: Vec<_> = iter.collect();
/// pairs.sort();
/// assert_eq!(pairs, [("a", 1), ("b", 2)]);
/// ```
pub struct SnapshotIntoIter<K: 'static, V: 'static, S> {
    /// Borrows from `*version`; declared first so it is dropped first.
    inner: hash_map::Iter<'static, K, V>,
    version: Arc<Version<K, V, S>>,
}

impl<K: 'static, V: 'static, S> SnapshotIntoIter<K, V, S> {
    pub(crate) fn new(version: Arc<Version<K, V, S>>) -> Self {
        let inner = version.table.iter();
        // Only the lifetime changes. The table lives in the `Arc`'s heap block,
        // which does not move and is never mutated after publish; `inner`'s
        // references never leave this struct (`next` clones what they point to).
        // SAFETY: `version` keeps the table alive while `inner` exists (dropped first).
        let inner = unsafe {
            core::mem::transmute::<hash_map::Iter<'_, K, V>, hash_map::Iter<'static, K, V>>(inner)
        };
        SnapshotIntoIter { inner, version }
    }
}

impl<K: Clone + 'static, V: Clone + 'static, S> Iterator for SnapshotIntoIter<K, V, S> {
    type Item = (K, V);

    #[inline]
    fn next(&mut self) -> Option<(K, V)> {
        self.inner.next().map(|(k, v)| (k.clone(), v.clone()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<K: Clone + 'static, V: Clone + 'static, S> ExactSizeIterator for SnapshotIntoIter<K, V, S> {}
impl<K: Clone + 'static, V: Clone + 'static, S> FusedIterator for SnapshotIntoIter<K, V, S> {}

impl<K: 'static, V: 'static, S> fmt::Debug for SnapshotIntoIter<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotIntoIter")
            .field("version", &self.version.number)
            .field("remaining", &self.inner.len())
            .finish()
    }
}

/// A reference to one value of the current version, from
/// [`SnapshotMap::get`](crate::SnapshotMap::get); dereferences to the value.
///
/// It keeps its version alive without touching the version's shared reference
/// count: it holds what the map's publication scheme loaded — an arc-swap guard
/// by default, a pinned guard of the backend with
/// `CrossbeamEpoch` or
/// `Seize`, which holds back that backend's
/// reclamation while it lives. It borrows the map. Meant to be short-lived:
/// read the value and drop it. To keep a value across an `.await` or for long,
/// take a [`Snapshot`] or [`get_cloned`](crate::SnapshotMap::get_cloned).
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let map = SnapshotMap::new();
/// map.insert("k", String::from("v"));
/// let value = map.get("k").unwrap();
/// map.insert("k", String::from("w")); // `value` still reads its own version
/// assert_eq!(*value, "v");
/// ```
pub struct SnapshotRef<'a, K: 'a, V: 'a, S: 'a = RandomState, P: Publish = ArcSwapPublish> {
    /// Points into `*_version`'s table.
    value: NonNull<V>,
    _version: Loaded<'a, K, V, S, P>,
}

/// A version loaded from the map's publication cell.
type Loaded<'a, K, V, S, P> =
    <<P as Publish>::Cell<Version<K, V, S>> as AtomicArc<Version<K, V, S>>>::Loaded<'a>;

impl<'a, K, V, S, P: Publish> SnapshotRef<'a, K, V, S, P> {
    /// Looks `key` up in `version`, keeping the version alive in the result.
    #[inline]
    pub(crate) fn find<Q>(version: Loaded<'a, K, V, S, P>, key: &Q) -> Option<Self>
    where
        K: Hash + Eq + Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        S: BuildHasher,
    {
        let value = NonNull::from(version.table.get(key)?);
        Some(SnapshotRef {
            value,
            _version: version,
        })
    }
}

impl<K, V, S, P: Publish> Deref for SnapshotRef<'_, K, V, S, P> {
    type Target = V;

    #[inline]
    fn deref(&self) -> &V {
        // `_version` dereferences to the `Arc`'s heap block, not to a copy
        // inside itself (the `Publish` contract's stable loads).
        // SAFETY: `value` points into the table of the version `_version` keeps
        // alive; published versions are never mutated, and that block never moves.
        unsafe { self.value.as_ref() }
    }
}

impl<K, V: fmt::Debug, S, P: Publish> fmt::Debug for SnapshotRef<'_, K, V, S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<K, V: fmt::Display, S, P: Publish> fmt::Display for SnapshotRef<'_, K, V, S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
