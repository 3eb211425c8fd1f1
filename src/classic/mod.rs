//! Go's `sync.Map` protocol (as of Go 1.23; Go 1.24 replaced it with a
//! hash-trie): the baseline [`SyncMap`](crate::SyncMap) is measured against.
//! Every operation follows Go's, with one addition, *compaction*: once removes
//! of read-table keys reach half of the read table, the remove that got there
//! takes the mutex and rebuilds the table without them, so that removed keys
//! give their memory back (Go keeps them until new keys happen to trigger a
//! copy; [`Stats::compactions`](crate::Stats::compactions) counts these).
//!
//! [`ClassicSyncMap`] is the faithful port this crate shipped first: an immutable
//! read table behind an atomic pointer; a mutex-protected *dirty* table holding
//! every live key; a lookup that misses the read table while new keys exist takes
//! the mutex and counts a miss; when misses reach the dirty table's size, the dirty
//! table is published as the read table; and the first new key after a promotion
//! copies the whole read table into a fresh dirty table. It inherits Go's two
//! costs — reads of absent or new keys lock, and new keys after each promotion
//! copy the table — which [`SyncMap`](crate::SyncMap) removes. It is kept so the
//! performance lab can put both side by side, and for readers studying the classic
//! design (`docs/design.md` describes both). Prefer `SyncMap`.
//!
//! # Examples
//!
//! ```
//! use readmostly::classic::ClassicSyncMap;
//!
//! let map = ClassicSyncMap::new();
//! map.insert("a", 1);
//! assert_eq!(map.pin().get("a"), Some(&1));
//! assert_eq!(map.stats().dirty_copies, 1); // the first new key built `dirty`
//! ```

pub(crate) mod entry;
mod garbage;
mod protocol;
mod read_ptr;
pub(crate) mod table;

#[cfg(test)]
mod tests;

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::marker::PhantomData;
use std::collections::hash_map::RandomState;

use crossbeam_utils::CachePadded;

use read_ptr::ReadPtr;

use crate::reclaim::{DefaultReclaim, Ledger, Reclaim};
use crate::stats::{Counters, Stats};
use crate::sync::{self, Arc, AtomicIsize, AtomicUsize, Mutex};
use crate::{CompareExchangeError, LoadOrStore};
use garbage::retire_value;
use table::{find, Table};

/// Go's `sync.Map`, ported faithfully; see the [module docs](self).
///
/// # Locks and user code
///
/// As in Go, a lookup that misses the read table while new keys are pending
/// takes the map's mutex, and so do new keys and promotions; so does the remove
/// that starts a compaction (see the [module docs](self)). `K`'s `Hash` and
/// `Eq` run under that lock on those paths (the key is looked up again in the
/// dirty table). A `Hash` or `Eq` that uses the same map deadlocks there; one
/// that panics leaves the map as it was. Closures (`update`, `remove_if`) and
/// the destructors the map runs are called without the lock.
///
/// # Examples
///
/// ```
/// use readmostly::classic::ClassicSyncMap;
///
/// let map = ClassicSyncMap::new();
/// map.insert("k", 1);
/// assert_eq!(map.pin().get("k"), Some(&1));
/// ```
pub struct ClassicSyncMap<K, V, S = RandomState, R: Reclaim = DefaultReclaim> {
    read_side: CachePadded<ReadSide<K, V, S, R>>,
    write_side: CachePadded<WriteSide<K, V>>,
    ledger: Arc<Ledger>,
    _owns: PhantomData<(*const K, *const V)>,
}

struct ReadSide<K, V, S, R> {
    read: ReadPtr<K, V>,
    hasher: S,
    reclaim: R,
}

struct WriteSide<K, V> {
    dirty: Mutex<Dirty<K, V>>,
    len: AtomicIsize,
    tombstones: AtomicUsize,
    counters: Counters,
}

/// The state behind the lock.
struct Dirty<K, V> {
    /// Present exactly while the read table is `amended`; then it holds every live
    /// key: all non-expunged entries of `read` plus the new ones.
    table: Option<Table<K, V>>,
    /// Lookups that missed `read` and took the lock since the last promotion.
    misses: usize,
}

// SAFETY: as for `SyncMap`: the map owns its keys and values, which may be dropped
// on the receiving thread.
unsafe impl<K: Send, V: Send, S: Send, R: Reclaim> Send for ClassicSyncMap<K, V, S, R> {}

// SAFETY: as for `SyncMap`: `&K`/`&V` are shared across threads, and values are
// dropped on whichever thread removes or reclaims them.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Sync, R: Reclaim> Sync
    for ClassicSyncMap<K, V, S, R>
{
}

impl<K, V> ClassicSyncMap<K, V> {
    /// An empty map with the default hasher and reclaimer.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map: ClassicSyncMap<u8, u8> = ClassicSyncMap::new();
    /// assert!(map.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_hasher_and_reclaim(RandomState::new(), DefaultReclaim::default())
    }
}

impl<K, V> Default for ClassicSyncMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S, R: Reclaim> ClassicSyncMap<K, V, S, R> {
    /// An empty map with `hasher` and the reclaimer `reclaim`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{classic::ClassicSyncMap, reclaim::DefaultReclaim};
    /// use std::collections::hash_map::RandomState;
    ///
    /// // `DefaultReclaim` is `CrossbeamEpoch`, or `Seize` without that feature.
    /// let map = ClassicSyncMap::with_hasher_and_reclaim(RandomState::new(), DefaultReclaim::default());
    /// map.insert(1, 2);
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn with_hasher_and_reclaim(hasher: S, reclaim: R) -> Self {
        ClassicSyncMap {
            read_side: CachePadded::new(ReadSide {
                read: ReadPtr::new(Table::new()),
                hasher,
                reclaim,
            }),
            write_side: CachePadded::new(WriteSide {
                dirty: Mutex::new(Dirty {
                    table: None,
                    misses: 0,
                }),
                len: AtomicIsize::new(0),
                tombstones: AtomicUsize::new(0),
                counters: Counters::default(),
            }),
            ledger: Arc::new(Ledger::default()),
            _owns: PhantomData,
        }
    }

    /// Live keys, exact when no writer runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert('a', 1);
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        // Relaxed: a count that orders nothing.
        self.write_side
            .len
            .load(crate::sync::Ordering::Relaxed)
            .max(0) as usize
    }

    /// Whether [`len`](Self::len) is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// assert!(ClassicSyncMap::<u8, u8>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Protocol counters (`misses`, `dirty_copies`, `promotions`, …) and the
    /// reclamation ledger.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert(1, 1); // new key: copies `read` into a dirty table
    /// map.pin().get(&1); // found in `dirty` under the lock: a miss, then promotion
    /// let stats = map.stats();
    /// assert_eq!((stats.misses, stats.promotions), (1, 1));
    /// ```
    pub fn stats(&self) -> Stats {
        self.write_side.counters.snapshot(&self.ledger)
    }

    /// Asks the reclaimer to free what it can now; see
    /// [`SyncMap::flush`](crate::SyncMap::flush).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map: ClassicSyncMap<u8, u8> = ClassicSyncMap::new();
    /// map.flush();
    /// ```
    pub fn flush(&self) {
        Ledger::flush(&self.ledger, &self.read_side.reclaim);
    }
}

impl<K, V, S, R> ClassicSyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Pins the reclaimer; references from the handle live as long as it does.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert(1, "one");
    /// assert_eq!(map.pin().get(&1), Some(&"one"));
    /// ```
    pub fn pin(&self) -> ClassicPinned<'_, K, V, S, R> {
        ClassicPinned {
            map: self,
            guard: self.read_side.reclaim.pin(),
        }
    }

    /// Inserts, returning a clone of the previous value (Go's `Swap`).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// assert_eq!(map.insert(1, 'a'), None);
    /// assert_eq!(map.insert(1, 'b'), Some('a'));
    /// ```
    pub fn insert(&self, key: K, value: V) -> Option<V>
    where
        V: Clone,
    {
        self.pin().insert(key, value).cloned()
    }

    /// Removes, returning a clone of the value (Go's `LoadAndDelete`).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert(1, 'a');
    /// assert_eq!(map.remove(&1), Some('a'));
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.pin().remove(key).cloned()
    }

    /// Removes `key` if `remove` returns true for its value, returning a clone
    /// of the removed value; see [`ClassicPinned::remove_if`]. With
    /// `|v| v == &old` this is Go's `CompareAndDelete`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert("lease", 7);
    /// assert_eq!(map.remove_if("lease", |v| *v == 8), None);
    /// assert_eq!(map.remove_if("lease", |v| *v == 7), Some(7));
    /// ```
    pub fn remove_if<Q>(&self, key: &Q, remove: impl FnMut(&V) -> bool) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.pin().remove_if(key, remove).cloned()
    }

    /// Publishes the dirty table now (dropping removed keys' entries).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert(1, 1);
    /// map.promote();
    /// assert_eq!(map.stats().promotions, 1);
    /// ```
    pub fn promote(&self) {
        let guard = self.read_side.reclaim.pin();
        self.promote_now(&guard);
    }

    /// Removes every key. As in Go, a map that holds no key at all (removed
    /// ones included) is left as it is: clearing it allocates nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert(1, 1);
    /// map.clear();
    /// assert!(map.is_empty());
    /// ```
    pub fn clear(&self) {
        let guard = self.read_side.reclaim.pin();
        self.clear_tables(&guard);
    }
}

/// A [`ClassicSyncMap`] with a reclamation guard held.
pub struct ClassicPinned<'map, K, V, S, R: Reclaim> {
    map: &'map ClassicSyncMap<K, V, S, R>,
    guard: R::Guard<'map>,
}

impl<K, V, S, R> ClassicPinned<'_, K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// `key`'s value (Go's `Load`): lock-free if the read table has the key; takes
    /// the lock and counts a miss if it does not and new keys are pending.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert(String::from("k"), 1);
    /// assert_eq!(map.pin().get("k"), Some(&1));
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.hash(key);
        let entry = self.map.lookup(&self.guard, hash, key)?;
        // SAFETY: `self.guard` is held for as long as the returned borrow of `self`.
        unsafe { entry.get() }
    }

    /// Inserts and returns the previous value (Go's `Swap`).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// assert_eq!(map.pin().insert(1, 'a'), None);
    /// ```
    pub fn insert(&self, key: K, value: V) -> Option<&V> {
        self.map.swap(&self.guard, key, value)
    }

    /// Go's `LoadOrStore`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{classic::ClassicSyncMap, LoadOrStore};
    ///
    /// let map = ClassicSyncMap::new();
    /// assert_eq!(map.pin().get_or_insert(1, 'a'), LoadOrStore::Stored(&'a'));
    /// ```
    pub fn get_or_insert(&self, key: K, value: V) -> LoadOrStore<'_, V> {
        crate::raw::cell::store_value(value, |make| self.map.load_or_store(&self.guard, key, make))
    }

    /// Replaces `key`'s value with `f(current)` and returns the new value; `None`
    /// if the key is absent. See [`Pinned::update`](crate::Pinned::update).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert("hits", 1);
    /// assert_eq!(map.pin().update("hits", |n| n + 1), Some(&2));
    /// ```
    pub fn update<Q>(&self, key: &Q, f: impl FnMut(&V) -> V) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.hash(key);
        let entry = self.map.lookup(&self.guard, hash, key)?;
        // SAFETY: `self.guard` is held for the call.
        let (old, new) = unsafe { entry.update(f) }?;
        // SAFETY: `old` was unlinked by our CAS, and is protected by our guard.
        unsafe { retire_value(&self.guard, &self.map.ledger, entry, old) };
        // SAFETY: now in the slot; values leave slots only through the reclaimer.
        Some(unsafe { &*new })
    }

    /// Removes and returns the value (Go's `LoadAndDelete`).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert(1, 'a');
    /// assert_eq!(map.pin().remove(&1), Some(&'a'));
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove_key(&self.guard, key)
    }

    /// Removes `key` if `remove` returns true for its current value, and
    /// returns the removed value, valid while this handle lives. Go's
    /// `CompareAndDelete` is `remove_if(key, |v| v == &old)`.
    ///
    /// As in Go: the key is looked up like [`get`](Self::get) (a key not in the
    /// read table while new keys are pending takes the lock and counts a miss),
    /// then removed with a compare-and-swap on its entry, without the lock
    /// (unless the removal starts a compaction; see the
    /// [module docs](self)). If another writer changes the value in between,
    /// `remove` is asked again about the new value, so it may run more than
    /// once; it never runs under the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert("lease", 7);
    /// let pinned = map.pin();
    /// assert_eq!(pinned.remove_if("lease", |v| *v == 8), None);
    /// assert_eq!(pinned.remove_if("lease", |v| *v == 7), Some(&7));
    /// assert_eq!(pinned.get("lease"), None);
    /// ```
    pub fn remove_if<Q>(&self, key: &Q, remove: impl FnMut(&V) -> bool) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.hash(key);
        let entry = self.map.lookup(&self.guard, hash, key)?;
        // A delete in the read table leaves a tombstone (counted toward
        // compaction); one of an entry found in the dirty table only does not.
        let read = self.map.read_side.read.load(&self.guard);
        let in_read = find(read.table, hash, key).is_some_and(|e| core::ptr::eq(&**e, entry));
        self.map.delete(&self.guard, entry, in_read, remove)
    }

    /// Replaces `key`'s value with `new` if it equals `current` (Go's
    /// `CompareAndSwap`). Returns the replaced value, or what was found instead
    /// together with `new`. An absent key never matches. As in Go, a key the read
    /// table lacks is looked up in the dirty table under the lock (a miss).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert("version", 1);
    /// let pinned = map.pin();
    /// assert_eq!(pinned.compare_exchange("version", &1, 2), Ok(&1));
    /// assert!(pinned.compare_exchange("version", &1, 3).is_err());
    /// assert!(pinned.compare_exchange("absent", &1, 3).is_err());
    /// assert_eq!(pinned.get("version"), Some(&2));
    /// assert_eq!(pinned.get("absent"), None);
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
        let hash = self.map.hash(key);
        let Some(entry) = self.map.lookup(&self.guard, hash, key) else {
            return Err(CompareExchangeError { current: None, new });
        };
        // SAFETY: `self.guard` is held for the call.
        match unsafe { entry.compare_exchange(current, new) } {
            // SAFETY: unlinked by our CAS, protected by our guard.
            Ok(old) => Ok(unsafe { retire_value(&self.guard, &self.map.ledger, entry, old) }),
            Err((found, new)) => Err(CompareExchangeError {
                // SAFETY: protected by our guard.
                current: unsafe { entry::as_live(found) },
                new,
            }),
        }
    }

    /// The live entries (Go's `Range`, which promotes first if new keys are
    /// pending).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// map.insert(1, 10);
    /// assert_eq!(map.pin().entries(), vec![(&1, &10)]);
    /// ```
    pub fn entries(&self) -> Vec<(&K, &V)> {
        let table = self.map.promote_if_amended(&self.guard);
        table
            .iter()
            // SAFETY: the table and its values are protected by `self.guard`.
            .filter_map(|entry| Some((entry.key(), unsafe { entry.get() }?)))
            .collect()
    }
}

impl<K, V, S, R: Reclaim> Drop for ClassicSyncMap<K, V, S, R> {
    fn drop(&mut self) {
        // Exclusive access: no guard holds references into this map. Its tables
        // go, then everything it retired that the scheme has not freed yet.
        let read = self.read_side.read.take_exclusive();
        let dirty = sync::lock(&self.write_side.dirty).table.take();
        drop(dirty);
        drop(read);
        self.ledger.close();
    }
}

/// Prints the map's length only (`ClassicSyncMap { len: 2, .. }`): listing its
/// entries would promote pending keys, as Go's `Range` does, and a `Debug`
/// print should not change the map.
impl<K, V, S, R: Reclaim> fmt::Debug for ClassicSyncMap<K, V, S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassicSyncMap")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<K, V, S, R> FromIterator<(K, V)> for ClassicSyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Default,
    R: Reclaim,
{
    /// Inserts every pair, then promotes once, so every key is in the read table.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map: ClassicSyncMap<_, _> = (0..3).map(|i| (i, i * 10)).collect();
    /// assert_eq!(map.pin().get(&2), Some(&20));
    /// assert_eq!(map.stats().promotions, 1);
    /// ```
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::with_hasher_and_reclaim(S::default(), R::default());
        map.extend(iter);
        map.promote();
        map
    }
}

impl<K, V, S, R> Extend<(K, V)> for &ClassicSyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts every pair (Go's `Store`), under one guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    ///
    /// let map = ClassicSyncMap::new();
    /// (&map).extend([(1, 'a'), (2, 'b')]);
    /// assert_eq!(map.len(), 2);
    /// ```
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let pinned = self.pin();
        for (key, value) in iter {
            pinned.insert(key, value);
        }
    }
}

impl<K, V, S, R> Extend<(K, V)> for ClassicSyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts every pair (Go's `Store`), under one guard.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut shared = &*self;
        shared.extend(iter);
    }
}

impl<'a, K, V, S, R> Extend<(&'a K, &'a V)> for &ClassicSyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + Copy + 'static,
    V: Send + Copy + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts a copy of every pair, as `HashMap`'s `Extend<(&K, &V)>` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::classic::ClassicSyncMap;
    /// use std::collections::HashMap;
    ///
    /// let source = HashMap::from([(1, 10), (2, 20)]);
    /// let mut map = ClassicSyncMap::new();
    /// map.extend(&source);
    /// assert_eq!(map.pin().get(&2), Some(&20));
    /// ```
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        self.extend(iter.into_iter().map(|(k, v)| (*k, *v)));
    }
}

impl<'a, K, V, S, R> Extend<(&'a K, &'a V)> for ClassicSyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + Copy + 'static,
    V: Send + Copy + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts a copy of every pair, as `HashMap`'s `Extend<(&K, &V)>` does.
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        let mut shared = &*self;
        shared.extend(iter);
    }
}
