//! The standard traits of [`SyncMap`]: `Default`, `Debug`, `Clone`,
//! `PartialEq`/`Eq`, `FromIterator`, `Extend`.

use core::fmt;
use core::hash::{BuildHasher, Hash};

use super::SyncMap;
use crate::reclaim::Reclaim;

impl<K, V> Default for SyncMap<K, V> {
    /// Same as [`SyncMap::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S, R> fmt::Debug for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static + fmt::Debug,
    V: Clone + Send + 'static + fmt::Debug,
    S: BuildHasher,
    R: Reclaim,
{
    /// Lists the live entries, as [`Pinned::iter`](crate::Pinned::iter) does (lock-free; never
    /// promotes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.pin().iter()).finish()
    }
}

impl<K, V, S, R> FromIterator<(K, V)> for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher + Default,
    R: Reclaim,
{
    /// Builds a map sized for the iterator's lower size hint, inserts each pair
    /// (a later duplicate key wins), then promotes, so that every key is inline
    /// in the read table. An iterator that knows its length (a `Vec`'s, a
    /// `HashMap`'s) fills it without growing or promoting, so the build
    /// promotes once; past the hint, the map grows and promotes as any insert
    /// would (`docs/design.md`).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut map = Self::with_parts(iter.size_hint().0, S::default(), R::default());
        map.extend(iter);
        map.promote();
        map
    }
}

impl<K, V, S, R> Extend<(K, V)> for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts every pair, as [`Pinned::insert`](crate::Pinned::insert) would, under one guard.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut shared = &*self;
        shared.extend(iter);
    }
}

impl<K, V, S, R> Extend<(K, V)> for &SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts every pair through a shared reference.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let pinned = self.pin();
        for (key, value) in iter {
            pinned.insert(key, value);
        }
    }
}

impl<'a, K, V, S, R> Extend<(&'a K, &'a V)> for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts a clone of every pair, under one guard.
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        let mut shared = &*self;
        shared.extend(iter);
    }
}

impl<'a, K, V, S, R> Extend<(&'a K, &'a V)> for &SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts a clone of every pair through a shared reference.
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        self.extend(iter.into_iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

impl<K, V, S, R> Clone for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher + Clone,
    R: Reclaim,
{
    /// A new, independent map with clones of this map's live keys and values (as
    /// [`Pinned::iter`](crate::Pinned::iter) sees them: with writers running, each
    /// key's value from some moment of the copy), all in its read table, and the
    /// same hasher. Its reclaimer is a new `R::default()`: a scheme's settings
    /// (seize's batch size, say) are not copied. Its statistics count only its
    /// own making (the inserts, delta growths and promotions that built it),
    /// none of this map's.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let a: SyncMap<_, _> = [(1, "one")].into_iter().collect();
    /// let b = a.clone();
    /// a.insert(2, "two");
    /// assert_eq!((a.len(), b.len()), (2, 1));
    /// ```
    fn clone(&self) -> Self {
        let copy = Self::with_hasher_and_reclaim(self.hasher().clone(), R::default());
        {
            let pinned = self.pin();
            let target = copy.pin();
            for (key, value) in pinned.iter() {
                target.insert(key.clone(), value.clone());
            }
        }
        copy.promote();
        copy
    }
}

impl<K, V, S, R> PartialEq for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static + PartialEq,
    S: BuildHasher,
    R: Reclaim,
{
    /// Whether both maps hold the same keys with equal values. Compares what the
    /// two iterations see: exact when no writer runs on either map. Each key
    /// of `self` is looked up in `other` as [`Pinned::get`](crate::Pinned::get)
    /// does, so the lookups count toward `other`'s promotion rule like any
    /// read.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let a: SyncMap<_, _> = [(1, 'a'), (2, 'b')].into_iter().collect();
    /// let b = SyncMap::new();
    /// b.insert(2, 'b');
    /// b.insert(1, 'a');
    /// assert!(a == b);
    /// b.insert(1, 'z');
    /// assert!(a != b);
    /// ```
    fn eq(&self, other: &Self) -> bool {
        let (mine, theirs) = (self.pin(), other.pin());
        let mut count = 0;
        for (key, value) in mine.iter() {
            count += 1;
            if theirs.get(key) != Some(value) {
                return false;
            }
        }
        count == theirs.iter().count()
    }
}

impl<K, V, S, R> Eq for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static + Eq,
    S: BuildHasher,
    R: Reclaim,
{
}
