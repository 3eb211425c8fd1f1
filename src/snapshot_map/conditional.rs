//! Conditional single-key writes without a batch: [`SnapshotMap::compare_exchange`]
//! and [`SnapshotMap::remove_if`].
//!
//! Both decide on the version current at the call first, without the writer
//! lock: a write that does not apply costs one lookup — no lock, no copy. One
//! that applies takes the lock; if no other write was published meanwhile, the
//! decision stands and the copy is made. Otherwise the condition is checked
//! again on the newest version, under the lock, where it can no longer change.
//! So the condition runs at most twice, and never in a retry loop.

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};

use super::SnapshotMap;
use crate::reclaim::{AtomicArc, Publish};

/// Why [`SnapshotMap::compare_exchange`] did not swap: the value found instead
/// of the expected one, and the new value handed back.
///
/// The owned counterpart of [`CompareExchangeError`](crate::CompareExchangeError),
/// which borrows from a [`SyncMap`](crate::SyncMap) guard: a `SnapshotMap` has no
/// guard to borrow from, so `current` is a clone.
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let map = SnapshotMap::new();
/// map.insert("k", 1);
/// let err = map.compare_exchange("k", &5, 6).unwrap_err();
/// assert_eq!((err.current, err.new), (Some(1), 6));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotCompareExchangeError<V> {
    /// A clone of the value found instead of the expected one, in the version
    /// the comparison was made on (`None`: the key was absent).
    pub current: Option<V>,
    /// The value that was not stored, handed back.
    pub new: V,
}

impl<V: fmt::Debug> fmt::Display for SnapshotCompareExchangeError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.current {
            Some(current) => write!(f, "compare_exchange failed: found {current:?}"),
            None => f.write_str("compare_exchange failed: key absent"),
        }
    }
}

impl<V: fmt::Debug> std::error::Error for SnapshotCompareExchangeError<V> {}

impl<K, V, S, P: Publish> SnapshotMap<K, V, S, P>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// Replaces `key`'s value with `new` if it equals `current`, and publishes
    /// (Go's `CompareAndSwap`, as [`Pinned::compare_exchange`](crate::Pinned::compare_exchange)).
    /// Returns the replaced value; or, if the value differs or the key is
    /// absent (an absent key never matches), an error holding a clone of what
    /// was found and `new`, handed back. Only a swap publishes.
    ///
    /// A failure costs one lookup and no lock: it is decided on the version
    /// current at the call. A swap copies the table (O(len)). Linearizable
    /// with every other write: concurrent `compare_exchange` calls on one key
    /// behave as if they ran one at a time, so a retry loop around it is an
    /// exact atomic counter.
    ///
    /// `PartialEq` runs once without the writer lock, and once more under it
    /// only if another write was published in between (against the newest
    /// value). Under the lock, it must not write to this map — such a write
    /// panics instead of deadlocking; see
    /// [the type's docs](SnapshotMap#user-code-and-the-writer-lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("version", 1);
    /// assert_eq!(map.compare_exchange("version", &1, 2), Ok(1));
    /// let err = map.compare_exchange("version", &1, 3).unwrap_err();
    /// assert_eq!((err.current, err.new), (Some(2), 3));
    /// assert!(map.compare_exchange("absent", &1, 3).unwrap_err().current.is_none());
    /// assert_eq!((map.get_cloned("version"), map.version()), (Some(2), 2));
    /// ```
    pub fn compare_exchange<Q>(
        &self,
        key: &Q,
        current: &V,
        new: V,
    ) -> Result<V, SnapshotCompareExchangeError<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: PartialEq,
    {
        let seen = self.current.load();
        match seen.table.get(key) {
            Some(found) if found == current => {}
            found => {
                return Err(SnapshotCompareExchangeError {
                    current: found.cloned(),
                    new,
                })
            }
        }
        let mut new = Some(new);
        let swapped = self.batch(|txn| {
            if !txn.is_based_on(&seen) {
                match txn.get(key) {
                    Some(found) if found == current => {}
                    found => return Err(found.cloned()),
                }
            }
            let new = new.take().expect("the new value is stored at most once");
            Ok(txn.replace_value(key, new))
        });
        swapped.map_err(|found| SnapshotCompareExchangeError {
            current: found,
            new: new.take().expect("not stored on failure"),
        })
    }

    /// Removes `key` if `remove` returns true for its value, and publishes;
    /// returns the removed value. With `|v| v == &expected` this is Go's
    /// `CompareAndDelete` (as [`Pinned::remove_if`](crate::Pinned::remove_if)).
    /// An absent key, or `false`, publishes nothing and returns `None`.
    ///
    /// A refusal costs one lookup and no lock: it is decided on the version
    /// current at the call. A removal copies the table (O(len)). Atomic with
    /// respect to other writers: if another write is published between the
    /// check and the removal, `remove` is asked again about the newest value
    /// (so it runs at most twice), and the key is removed only if it says so
    /// again.
    ///
    /// `remove` runs once without the writer lock, and the second time, if
    /// any, under it — where it must not write to this map: such a write
    /// panics instead of deadlocking; see
    /// [the type's docs](SnapshotMap#user-code-and-the-writer-lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let leases = SnapshotMap::new();
    /// leases.insert("db", 7);
    /// assert_eq!(leases.remove_if("db", |holder| *holder == 8), None);
    /// assert_eq!(leases.version(), 1); // refused: nothing published
    /// assert_eq!(leases.remove_if("db", |holder| *holder == 7), Some(7));
    /// assert!(leases.is_empty());
    /// ```
    pub fn remove_if<Q>(&self, key: &Q, mut remove: impl FnMut(&V) -> bool) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let seen = self.current.load();
        match seen.table.get(key) {
            Some(found) if remove(found) => {}
            _ => return None,
        }
        self.batch(|txn| {
            if !txn.is_based_on(&seen) {
                match txn.get(key) {
                    Some(found) if remove(found) => {}
                    _ => return None,
                }
            }
            txn.remove(key)
        })
    }
}
