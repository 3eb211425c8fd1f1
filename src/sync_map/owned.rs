//! [`OwnedPinned`]: a guard that owns its handle to a [`SyncMap`], for async code.

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use std::collections::hash_map::RandomState;
use std::sync::Arc;

use super::iter::Iter;
use super::pinned::{CompareExchangeError, LoadOrStore};
use super::SyncMap;
use crate::reclaim::{DefaultReclaim, Protect, Reclaim, Ticket};
use crate::sync::{AtomicPtr, Ordering};

/// A [`SyncMap`] pinned by a guard that owns its handle to the map, from
/// [`SyncMap::pin_owned`]: references it returns stay valid while it lives, and
/// it is `Send + Sync + 'static` when the map's types are, so it can be held
/// across `.await` in a multi-threaded runtime and move between worker threads.
///
/// A [`Pinned`](crate::Pinned) pins the reclamation scheme for the current
/// thread, which is why it cannot move. An `OwnedPinned` pins nothing: it takes
/// a *hold* on the map's own ledger of retired objects, and no object the map
/// retires while the hold exists is freed until it is dropped, whatever the
/// scheme says (objects retired before it was taken are unreachable to it, so
/// they go as usual). Reads through it therefore cost what reads through a
/// `Pinned` cost, minus the pin; a write pins the scheme for its own duration.
///
/// The price of holding one for long: everything this map retires meanwhile —
/// overwritten values, old tables — stays allocated (counted in
/// [`stats().pending`](crate::Stats::pending)) until the last hold taken before
/// it is released. Other maps are not affected. Take one per request or task
/// step, not per task lifetime.
///
/// # Examples
///
/// ```
/// use readmostly::SyncMap;
/// use std::sync::Arc;
///
/// let cache = Arc::new(SyncMap::new());
/// cache.insert("k", String::from("v"));
///
/// let pinned = cache.pin_owned();
/// let v: &String = pinned.get("k").unwrap();
/// cache.insert("k", String::from("w")); // retires "v"; `v` stays valid
/// assert_eq!(v, "v");
/// assert_eq!(pinned.get("k").map(String::as_str), Some("w"));
/// ```
///
/// It is `Send` and `Sync` (a [`Pinned`](crate::Pinned) is neither):
///
/// ```
/// fn assert_send_sync<T: Send + Sync + 'static>(_: &T) {}
/// let map = std::sync::Arc::new(readmostly::SyncMap::<u8, u8>::new());
/// assert_send_sync(&map.pin_owned());
/// ```
pub struct OwnedPinned<K, V, S = RandomState, R: Reclaim = DefaultReclaim> {
    map: Arc<SyncMap<K, V, S, R>>,
    hold: Hold,
}

/// An owned guard's hold on its map's ledger: what its reads are protected by.
struct Hold {
    ticket: Ticket,
}

impl Protect for Hold {
    #[inline]
    fn protect<T>(&self, src: &AtomicPtr<T>, order: Ordering) -> *mut T {
        // A plain load: the hold (`Ledger::hold`) keeps whatever it reaches from
        // being freed, whichever thread this runs on.
        src.load(order)
    }
}

impl<K, V, S, R: Reclaim> Drop for OwnedPinned<K, V, S, R> {
    fn drop(&mut self) {
        self.map.ledger.release(self.hold.ticket);
    }
}

/// Extends a reference found through a temporary guard of the scheme to the
/// owned guard's lifetime.
///
/// # Safety
///
/// `value` belongs to `owned`'s map and was reachable after `owned`'s hold was
/// taken: it is either still linked, or was retired after the hold, so the hold
/// keeps it until `owned` is dropped.
unsafe fn extend<'o, T: ?Sized, K, V, S, R: Reclaim>(
    _owned: &'o OwnedPinned<K, V, S, R>,
    value: &T,
) -> &'o T {
    // SAFETY: the caller's contract.
    unsafe { &*(value as *const T) }
}

impl<K, V, S, R> OwnedPinned<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    pub(crate) fn new(map: Arc<SyncMap<K, V, S, R>>) -> Self {
        let ticket = map.ledger.hold();
        OwnedPinned {
            map,
            hold: Hold { ticket },
        }
    }

    /// The map this guard pins.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::<u8, u8>::new());
    /// assert!(Arc::ptr_eq(map.pin_owned().map(), &map));
    /// ```
    pub fn map(&self) -> &Arc<SyncMap<K, V, S, R>> {
        &self.map
    }

    /// Ends this guard's hold and takes a new one in place, so that what was
    /// retired meanwhile can be freed: for a task that keeps one guard across
    /// many operations. Takes `&mut self`, so no reference obtained before
    /// outlives it. What only the old hold kept, and whose grace period the
    /// reclaimer has ended, is freed at once, on this thread; the rest follows
    /// its usual way (a value waits for its batch of 16 and its grace period,
    /// see "Memory reclamation" in the crate docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// map.insert(1, vec![0u8; 1024]);
    /// map.insert(1, vec![1u8; 1024]); // overwritten: the value is in a cell
    /// let mut pinned = map.pin_owned();
    /// pinned.insert(1, vec![2u8; 1024]); // retires the cell of `[1; 1024]`
    /// map.flush(); // its grace period ends, but the hold keeps it
    /// assert_eq!(map.stats().pending, 1);
    /// pinned.refresh(); // ... until here, where it is freed
    /// assert_eq!(map.stats().pending, 0);
    /// assert_eq!(pinned.get(&1).map(|v| v[0]), Some(2));
    /// ```
    pub fn refresh(&mut self) {
        // The new hold first: nothing retired in between escapes both.
        let ticket = self.map.ledger.hold();
        let old = core::mem::replace(&mut self.hold.ticket, ticket);
        self.map.ledger.release(old);
    }

    /// `key`'s value; see [`Pinned::get`](crate::Pinned::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// map.insert(String::from("a"), 1);
    /// assert_eq!(map.pin_owned().get("a"), Some(&1));
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_in(&self.hold, key)
    }

    /// `key` and its value; see [`Pinned::get_key_value`](crate::Pinned::get_key_value).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// map.insert(1, 'a');
    /// assert_eq!(map.pin_owned().get_key_value(&1), Some((&1, &'a')));
    /// ```
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_key_value_in(&self.hold, key)
    }

    /// Whether `key` is present.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// map.insert(1, ());
    /// assert!(map.pin_owned().contains_key(&1));
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Inserts `value` for `key` and returns the previous value, valid while this
    /// guard lives; see [`Pinned::insert`](crate::Pinned::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// let pinned = map.pin_owned();
    /// assert_eq!(pinned.insert("k", 1), None);
    /// assert_eq!(pinned.insert("k", 2), Some(&1));
    /// ```
    pub fn insert(&self, key: K, value: V) -> Option<&V> {
        let guard = self.map.read_side.reclaim.pin();
        let old = self.map.swap(&guard, key, value)?;
        // SAFETY: the previous value was linked after our hold was taken (we
        // found it now), and is retired, if at all, by this call: the hold keeps it.
        Some(unsafe { extend(self, old) })
    }

    /// Returns `key`'s value if present; otherwise stores `value` and returns it
    /// (Go's `LoadOrStore`); see
    /// [`Pinned::get_or_insert`](crate::Pinned::get_or_insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{LoadOrStore, SyncMap};
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// let pinned = map.pin_owned();
    /// assert_eq!(pinned.get_or_insert("k", 1), LoadOrStore::Stored(&1));
    /// assert_eq!(pinned.get_or_insert("k", 2), LoadOrStore::Loaded(&1));
    /// ```
    pub fn get_or_insert(&self, key: K, value: V) -> LoadOrStore<'_, V> {
        crate::raw::cell::store_value(value, |make| self.get_or_insert_with(key, make))
    }

    /// Returns `key`'s value if present, otherwise stores `make()`; see
    /// [`Pinned::get_or_insert_with`](crate::Pinned::get_or_insert_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// let pinned = map.pin_owned();
    /// assert!(pinned.get_or_insert_with("k", || 1).is_stored());
    /// assert_eq!(*pinned.get_or_insert_with("k", || 2).value(), 1);
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> LoadOrStore<'_, V> {
        let guard = self.map.read_side.reclaim.pin();
        let mut make = Some(make);
        let found = self.map.load_or_store(&guard, key, &mut || {
            (make
                .take()
                .expect("load_or_store makes the value at most once"))()
        });
        match found {
            // SAFETY: found now, after our hold was taken: linked now, so retired
            // (if ever) after the hold, which keeps it.
            LoadOrStore::Loaded(v) => LoadOrStore::Loaded(unsafe { extend(self, v) }),
            // SAFETY: stored now: as above.
            LoadOrStore::Stored(v) => LoadOrStore::Stored(unsafe { extend(self, v) }),
        }
    }

    /// Removes `key` and returns its value, valid while this guard lives; see
    /// [`Pinned::remove`](crate::Pinned::remove).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// map.insert(1, "a");
    /// assert_eq!(map.pin_owned().remove(&1), Some(&"a"));
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_if(key, |_| true)
    }

    /// Removes `key` if `remove` says so for its current value; see
    /// [`Pinned::remove_if`](crate::Pinned::remove_if).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// map.insert("lease", 7);
    /// assert_eq!(map.pin_owned().remove_if("lease", |v| *v == 7), Some(&7));
    /// ```
    pub fn remove_if<Q>(&self, key: &Q, remove: impl FnMut(&V) -> bool) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.map.read_side.reclaim.pin();
        let old = self.map.remove_if(&guard, key, remove)?;
        // SAFETY: unlinked and retired by this call, after our hold was taken.
        Some(unsafe { extend(self, old) })
    }

    /// Replaces `key`'s value with `new` if it equals `current`; see
    /// [`Pinned::compare_exchange`](crate::Pinned::compare_exchange).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// map.insert("version", 1);
    /// let pinned = map.pin_owned();
    /// assert_eq!(pinned.compare_exchange("version", &1, 2), Ok(&1));
    /// assert!(pinned.compare_exchange("version", &1, 3).is_err());
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
        let guard = self.map.read_side.reclaim.pin();
        match self.map.compare_exchange(&guard, key, current, new) {
            // SAFETY: unlinked and retired by this call, after our hold was taken.
            Ok(old) => Ok(unsafe { extend(self, old) }),
            Err((found, new)) => Err(CompareExchangeError {
                // SAFETY: found now, after our hold was taken: linked now, so
                // retired (if ever) after the hold, which keeps it.
                current: found.map(|v| unsafe { extend(self, v) }),
                new,
            }),
        }
    }

    /// Replaces `key`'s value with `f(current)`; see
    /// [`Pinned::update`](crate::Pinned::update).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// map.insert("/", 0u64);
    /// assert_eq!(map.pin_owned().update("/", |n| n + 1), Some(&1));
    /// ```
    pub fn update<Q>(&self, key: &Q, f: impl FnMut(&V) -> V) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.map.read_side.reclaim.pin();
        let new = self.map.update(&guard, key, f)?;
        // SAFETY: linked by this call, after our hold was taken.
        Some(unsafe { extend(self, new) })
    }

    /// Updates `key`'s value or inserts one, atomically; see
    /// [`Pinned::update_or_insert_with`](crate::Pinned::update_or_insert_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// let pinned = map.pin_owned();
    /// assert_eq!(*pinned.update_or_insert_with("n", |n| n + 1, || 1), 1);
    /// assert_eq!(*pinned.update_or_insert_with("n", |n| n + 1, || 1), 2);
    /// ```
    pub fn update_or_insert_with(
        &self,
        key: K,
        mut update: impl FnMut(&V) -> V,
        insert: impl FnOnce() -> V,
    ) -> &V {
        let guard = self.map.read_side.reclaim.pin();
        let mut insert = Some(insert);
        let stored = self.map.upsert(&guard, key, &mut update, &mut || {
            (insert
                .take()
                .expect("upsert makes the inserted value at most once"))()
        });
        // SAFETY: linked by this call, after our hold was taken.
        unsafe { extend(self, stored) }
    }

    /// Iterates over live keys; see [`Pinned::iter`](crate::Pinned::iter).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map: Arc<SyncMap<_, _>> = Arc::new((0..3).map(|i| (i, i)).collect());
    /// assert_eq!(map.pin_owned().iter().count(), 3);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V> {
        let root = self.map.root(&self.hold);
        // SAFETY: the root and the cells its slots link are protected by the hold
        // for the iterator's borrow.
        unsafe { Iter::new(root, &self.hold) }
    }

    /// Live keys; see [`SyncMap::len`].
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::new());
    /// map.insert(1, 1);
    /// assert_eq!(map.pin_owned().len(), 1);
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
    /// use std::sync::Arc;
    ///
    /// let map = Arc::new(SyncMap::<u8, u8>::new());
    /// assert!(map.pin_owned().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<K, V, S, R> fmt::Debug for OwnedPinned<K, V, S, R>
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
