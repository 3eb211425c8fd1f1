//! [`Pinned`]: a [`SyncMap`] with a reclamation guard held, and every operation.

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};

use super::iter::Iter;
use super::SyncMap;
use crate::reclaim::Reclaim;

/// A [`SyncMap`] pinned to the current thread: references it returns stay valid
/// until it is dropped.
///
/// Created by [`SyncMap::pin`]. Holding it keeps the reclaimer from freeing
/// what is retired while it lives: with the default crossbeam-epoch backend,
/// anything any map of the process retires (one global collector); with
/// `Seize`, what this map retires (its collector is
/// its own). Either way the held-back garbage grows with the writes made
/// meanwhile, so keep a guard for a request or a batch of lookups, not for the
/// life of a thread, or call [`refresh`](Pinned::refresh) in long loops
/// (`docs/reclamation.md` measures both). It is not `Send`: it cannot be held
/// across an `.await` in a multi-threaded runtime.
///
/// ```compile_fail
/// fn assert_send<T: Send>(_: &T) {}
/// let map = readmostly::SyncMap::<u8, u8>::new();
/// assert_send(&map.pin());
/// ```
///
/// # Examples
///
/// ```
/// use readmostly::SyncMap;
///
/// let map = SyncMap::new();
/// map.insert(1, String::from("one"));
///
/// let pinned = map.pin();
/// let one: &String = pinned.get(&1).unwrap();
/// pinned.remove(&1);
/// assert_eq!(one, "one"); // still valid: freed only after `pinned` is dropped
/// ```
pub struct Pinned<'map, K, V, S, R: Reclaim> {
    map: &'map SyncMap<K, V, S, R>,
    guard: R::Guard<'map>,
}

/// What [`Pinned::get_or_insert`] did (Go's `LoadOrStore` "loaded" flag).
///
/// # Examples
///
/// ```
/// use readmostly::{LoadOrStore, SyncMap};
///
/// let map = SyncMap::new();
/// let pinned = map.pin();
/// assert!(matches!(pinned.get_or_insert(1, 'a'), LoadOrStore::Stored(&'a')));
/// assert!(matches!(pinned.get_or_insert(1, 'b'), LoadOrStore::Loaded(&'a')));
/// ```
#[derive(Debug, PartialEq, Eq)]
pub enum LoadOrStore<'g, V> {
    /// The key was present: its value, unchanged.
    Loaded(&'g V),
    /// The key was absent: the value this call stored.
    Stored(&'g V),
}

// Manual impls: a derive would require `V: Copy`, but only references are copied.
impl<V> Clone for LoadOrStore<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for LoadOrStore<'_, V> {}

impl<'g, V> LoadOrStore<'g, V> {
    /// The key's value after the call, whichever way it got there.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// assert_eq!(*map.pin().get_or_insert("k", 1).value(), 1);
    /// ```
    pub fn value(self) -> &'g V {
        match self {
            LoadOrStore::Loaded(v) | LoadOrStore::Stored(v) => v,
        }
    }

    /// Whether this call stored its value.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// assert!(map.pin().get_or_insert("k", 1).is_stored());
    /// assert!(!map.pin().get_or_insert("k", 2).is_stored());
    /// ```
    pub fn is_stored(self) -> bool {
        matches!(self, LoadOrStore::Stored(_))
    }
}

/// Why [`Pinned::compare_exchange`] did not swap.
///
/// # Examples
///
/// ```
/// use readmostly::SyncMap;
///
/// let map = SyncMap::new();
/// map.insert("k", 1);
/// let pinned = map.pin();
/// let err = pinned.compare_exchange("k", &5, 6).unwrap_err();
/// assert_eq!((err.current, err.new), (Some(&1), 6));
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct CompareExchangeError<'g, V> {
    /// The value found instead of the expected one (`None`: the key is absent).
    pub current: Option<&'g V>,
    /// The value that was not stored, handed back.
    pub new: V,
}

impl<V: fmt::Debug> fmt::Display for CompareExchangeError<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.current {
            Some(current) => write!(f, "compare_exchange failed: found {current:?}"),
            None => f.write_str("compare_exchange failed: key absent"),
        }
    }
}

impl<V: fmt::Debug> std::error::Error for CompareExchangeError<'_, V> {}

impl<'map, K, V, S, R> Pinned<'map, K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    #[inline]
    pub(crate) fn new(map: &'map SyncMap<K, V, S, R>) -> Self {
        Pinned {
            map,
            guard: map.read_side.reclaim.pin(),
        }
    }

    /// The guard this handle holds.
    #[cfg(feature = "rayon")]
    pub(crate) fn guard(&self) -> &R::Guard<'map> {
        &self.guard
    }

    /// The map this handle pins.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<u8, u8> = SyncMap::new();
    /// assert!(std::ptr::eq(map.pin().map(), &map));
    /// ```
    pub fn map(&self) -> &'map SyncMap<K, V, S, R> {
        self.map
    }

    /// `key`'s value (Go's `Load`).
    ///
    /// A key not written since the last promotion costs one load of the root, one
    /// hash, one probe of the read table and one load of the link in the same
    /// bucket — the value is in that bucket too: no lock, no shared write. A key
    /// overwritten since is one dependent load further (its value is in a cell);
    /// a key added since costs a second probe, in the delta, still without a
    /// lock. One such off-path read in 16 is counted toward the next promotion.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(String::from("a"), 1);
    /// let pinned = map.pin();
    /// assert_eq!(pinned.get("a"), Some(&1));
    /// assert_eq!(pinned.get("b"), None);
    /// ```
    // Always inlined, like `HashMap::get`: a call, with the hasher's state
    // spilled around it, would cost a third as much again.
    #[inline(always)]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_in(&self.guard, key)
    }

    /// `key` and its value, as stored (the key the map holds, which may be a
    /// clone of the one first inserted: promotions clone keys). The read path of
    /// [`get`](Pinned::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(String::from("a"), 1);
    /// assert_eq!(map.pin().get_key_value("a"), Some((&String::from("a"), &1)));
    /// ```
    #[inline]
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_key_value_in(&self.guard, key)
    }

    /// Whether `key` is present.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(1, ());
    /// assert!(map.pin().contains_key(&1));
    /// ```
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Inserts `value` for `key` and returns the previous value, which stays valid
    /// while this handle lives (Go's `Swap`).
    ///
    /// A key with a slot in the map (in the read table or the delta, present or
    /// removed) is updated with one compare-and-swap and no lock; a new key goes
    /// into the delta with one compare-and-swap, and takes the writer lock only
    /// when the delta is full (to grow it, or promote).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// let pinned = map.pin();
    /// assert_eq!(pinned.insert("k", 1), None);
    /// assert_eq!(pinned.insert("k", 2), Some(&1));
    /// ```
    pub fn insert(&self, key: K, value: V) -> Option<&V> {
        self.map.swap(&self.guard, key, value)
    }

    /// Returns `key`'s value if present; otherwise stores `value` and returns it
    /// (Go's `LoadOrStore`). The result says which happened.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{LoadOrStore, SyncMap};
    ///
    /// let map = SyncMap::new();
    /// let pinned = map.pin();
    /// assert_eq!(pinned.get_or_insert("k", 1), LoadOrStore::Stored(&1));
    /// assert_eq!(pinned.get_or_insert("k", 2), LoadOrStore::Loaded(&1));
    /// ```
    pub fn get_or_insert(&self, key: K, value: V) -> LoadOrStore<'_, V> {
        crate::raw::cell::store_value(value, |make| self.map.load_or_store(&self.guard, key, make))
    }

    /// Like [`get_or_insert`](Pinned::get_or_insert), but makes the value only if
    /// the key is absent. `make` runs at most once; if another thread stores first
    /// after `make` ran, its value is dropped and the other returned as `Loaded`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// let pinned = map.pin();
    /// let v = pinned.get_or_insert_with("k", || vec![1, 2, 3]).value();
    /// assert_eq!(v, &[1, 2, 3]);
    /// pinned.get_or_insert_with("k", || unreachable!("present: not called"));
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> LoadOrStore<'_, V> {
        let mut make = Some(make);
        self.map.load_or_store(&self.guard, key, &mut || {
            (make
                .take()
                .expect("load_or_store makes the value at most once"))()
        })
    }

    /// Removes `key` and returns its value, valid while this handle lives (Go's
    /// `LoadAndDelete`).
    ///
    /// One compare-and-swap, leaving a tombstone that a later promotion drops;
    /// enough removes make the map compact itself (rule 3 of
    /// [When `SyncMap` promotes](crate#when-syncmap-promotes)), so removed keys
    /// give their memory back.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(1, "a");
    /// let pinned = map.pin();
    /// assert_eq!(pinned.remove(&1), Some(&"a"));
    /// assert_eq!(pinned.remove(&1), None);
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove_if(&self.guard, key, |_| true)
    }

    /// Removes `key` if `remove` returns true for its current value, atomically
    /// with respect to other writers: if the value changes between the check and
    /// the removal, or a promotion or a `clear` interrupts it, `remove` is asked
    /// again about the current value. Returns the
    /// removed value. With `|v| v == &expected` this is Go's `CompareAndDelete`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert("lease", 7);
    /// let pinned = map.pin();
    /// assert_eq!(pinned.remove_if("lease", |v| *v == 8), None);
    /// assert_eq!(pinned.remove_if("lease", |v| *v == 7), Some(&7));
    /// ```
    pub fn remove_if<Q>(&self, key: &Q, remove: impl FnMut(&V) -> bool) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove_if(&self.guard, key, remove)
    }

    /// Replaces `key`'s value with `new` if it equals `current` (Go's
    /// `CompareAndSwap`). Returns the replaced value, or what was found instead
    /// together with `new`. An absent key never matches.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert("version", 1);
    /// let pinned = map.pin();
    /// assert_eq!(pinned.compare_exchange("version", &1, 2), Ok(&1));
    /// assert!(pinned.compare_exchange("version", &1, 3).is_err());
    /// assert_eq!(pinned.get("version"), Some(&2));
    /// ```
    pub fn compare_exchange<Q>(
        &self,
        key: &Q,
        current: &V,
        new: V,
    ) -> Result<&V, CompareExchangeError<'_, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: PartialEq,
    {
        self.map
            .compare_exchange(&self.guard, key, current, new)
            .map_err(|(current, new)| CompareExchangeError { current, new })
    }

    /// Replaces `key`'s value with `f(current)` and returns the new value (a
    /// read-modify-write). Does nothing and returns `None` if the key is absent.
    ///
    /// `f` may run more than once: when another writer changes the value
    /// concurrently, or when a promotion or a `clear` (which a reader on another
    /// thread may start) interrupts the write. Each run sees the latest value, and
    /// only the last result is stored (earlier ones are dropped). If `f` panics
    /// the map is unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let hits = SyncMap::new();
    /// hits.insert("/", 0u64);
    /// let pinned = hits.pin();
    /// assert_eq!(pinned.update("/", |n| n + 1), Some(&1));
    /// assert_eq!(pinned.update("/missing", |n| n + 1), None);
    /// ```
    pub fn update<Q>(&self, key: &Q, f: impl FnMut(&V) -> V) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.update(&self.guard, key, f)
    }

    /// Replaces `key`'s value with `update(value)` if it is present, or stores
    /// `insert()` if it is absent — atomically either way — and returns the value
    /// now stored (papaya's `compute`, dashmap's
    /// `entry().and_modify().or_insert_with()`).
    ///
    /// `insert` runs at most once, and only if the key is absent when this thread
    /// tries to store. `update` may run more than once — when another writer
    /// changes the value concurrently, or a promotion or a `clear` interrupts the
    /// write: each run sees the latest value and only the last result is stored
    /// (earlier ones are dropped). Neither runs under a lock, so both may
    /// use the map. If either panics, the map is unchanged.
    ///
    /// # Examples
    ///
    /// A counter per key, exact under any number of threads:
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::thread;
    ///
    /// let hits = SyncMap::new();
    /// thread::scope(|s| {
    ///     for _ in 0..4 {
    ///         s.spawn(|| {
    ///             let pinned = hits.pin();
    ///             for _ in 0..1000 {
    ///                 pinned.update_or_insert_with("/", |n| n + 1, || 1u64);
    ///             }
    ///         });
    ///     }
    /// });
    /// assert_eq!(hits.get_cloned("/"), Some(4000));
    /// ```
    pub fn update_or_insert_with(
        &self,
        key: K,
        mut update: impl FnMut(&V) -> V,
        insert: impl FnOnce() -> V,
    ) -> &V {
        let mut insert = Some(insert);
        self.map.upsert(&self.guard, key, &mut update, &mut || {
            (insert
                .take()
                .expect("upsert makes the inserted value at most once"))()
        })
    }

    /// Ends this guard's read and starts a new one in place, so that what was
    /// retired meanwhile can be freed: for a loop that keeps one `Pinned` for
    /// long. Takes `&mut self`, so no reference obtained before outlives it.
    ///
    /// With crossbeam-epoch, a thread pinned by an outer guard stays pinned (the
    /// refresh frees nothing until that one is dropped too). With seize, the
    /// refresh releases this guard's hold on every batch retired while it was
    /// active, and the batches whose last holder it was are freed at once, on
    /// this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    /// let mut pinned = map.pin();
    /// let mut sum = 0;
    /// for round in 0..10 {
    ///     for k in 0..100 {
    ///         sum += pinned.get(&k).copied().unwrap_or(0);
    ///     }
    ///     pinned.insert(round, 0);
    ///     pinned.refresh(); // lets the overwritten values go
    /// }
    /// assert!(sum > 0);
    /// ```
    pub fn refresh(&mut self) {
        crate::reclaim::Guard::refresh(&mut self.guard);
    }

    /// Iterates over live keys (Go's `Range`): the read table, then the delta of
    /// keys added since the last promotion, of the root current when `iter` is
    /// called. Lock-free; never promotes.
    ///
    /// Every key present for the whole iteration is yielded exactly once, with a
    /// value it had at some moment during the iteration; keys inserted or removed
    /// meanwhile may or may not be. Not a snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<_, _> = (0..5).map(|i| (i, i * 10)).collect();
    /// let mut seen: Vec<_> = map.pin().iter().map(|(k, v)| (*k, *v)).collect();
    /// seen.sort();
    /// assert_eq!(seen, [(0, 0), (1, 10), (2, 20), (3, 30), (4, 40)]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V> {
        let root = self.map.root(&self.guard);
        // SAFETY: the root is protected by `self.guard` for the iterator's borrow.
        unsafe { Iter::new(root, &self.guard) }
    }

    /// Keeps only the keys for which `keep` returns true; see [`SyncMap::retain`].
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<_, _> = (0..4).map(|i| (i, i)).collect();
    /// map.pin().retain(|k, _| *k < 2);
    /// assert_eq!(map.len(), 2);
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.map.retain_keys(&self.guard, &mut keep);
    }

    /// Live keys; see [`SyncMap::len`].
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(1, 1);
    /// assert_eq!(map.pin().len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty; see [`SyncMap::len`].
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<u8, u8> = SyncMap::new();
    /// assert!(map.pin().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes every key; see [`SyncMap::clear`].
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(1, 1);
    /// let pinned = map.pin();
    /// let one = pinned.get(&1).unwrap();
    /// pinned.clear();
    /// assert_eq!((*one, pinned.get(&1)), (1, None));
    /// ```
    pub fn clear(&self) {
        self.map.clear_tables(&self.guard);
    }
}

impl<K, V, S, R> fmt::Debug for Pinned<'_, K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static + fmt::Debug,
    V: Clone + Send + 'static + fmt::Debug,
    S: BuildHasher,
    R: Reclaim,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
