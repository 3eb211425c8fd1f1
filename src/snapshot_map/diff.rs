//! [`Diff`]: what changed between two versions.

use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::iter::FusedIterator;

use hashbrown::{hash_map, HashMap};

/// One difference between two versions, from [`Diff`].
///
/// # Examples
///
/// ```
/// use readmostly::{Change, SnapshotMap};
///
/// let map = SnapshotMap::new();
/// let empty = map.snapshot();
/// map.insert("k", 1);
/// let now = map.snapshot();
/// let changes: Vec<_> = empty.diff(&now).collect();
/// assert_eq!(changes, [Change::Added { key: &"k", value: &1 }]);
/// assert_eq!(changes[0].key(), &"k");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a, K, V> {
    /// The key is only in the newer version.
    Added {
        /// The key.
        key: &'a K,
        /// Its value in the newer version.
        value: &'a V,
    },
    /// The key is only in the older version.
    Removed {
        /// The key.
        key: &'a K,
        /// Its value in the older version.
        value: &'a V,
    },
    /// The key is in both, with values that are not equal.
    Changed {
        /// The key (as stored in the newer version).
        key: &'a K,
        /// Its value in the older version.
        old: &'a V,
        /// Its value in the newer version.
        new: &'a V,
    },
}

impl<'a, K, V> Change<'a, K, V> {
    /// The key this change is about.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::Change;
    ///
    /// let change = Change::Removed { key: &1, value: &"one" };
    /// assert_eq!(change.key(), &1);
    /// ```
    pub fn key(&self) -> &'a K {
        match *self {
            Change::Added { key, .. }
            | Change::Removed { key, .. }
            | Change::Changed { key, .. } => key,
        }
    }
}

/// The changes from one version to another, from
/// [`Snapshot::diff`](crate::Snapshot::diff), in arbitrary order: first the
/// added and changed keys (a walk of the newer version), then the removed ones
/// (a walk of the older).
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
/// let before = map.snapshot();
/// map.update(&3, |v| v + 100);
/// let after = map.snapshot();
/// assert_eq!(before.diff(&after).count(), 1);
/// assert_eq!(after.diff(&after).count(), 0);
/// ```
pub struct Diff<'a, K, V, S> {
    older: &'a HashMap<K, V, S>,
    newer: &'a HashMap<K, V, S>,
    /// Walks `newer` for added and changed keys, then `older` for removed ones.
    walk: Walk<'a, K, V>,
}

enum Walk<'a, K, V> {
    Newer(hash_map::Iter<'a, K, V>),
    Older(hash_map::Iter<'a, K, V>),
    Done,
}

impl<'a, K, V, S> Diff<'a, K, V, S> {
    pub(crate) fn new(
        older: &'a HashMap<K, V, S>,
        newer: &'a HashMap<K, V, S>,
        same_version: bool,
    ) -> Self {
        Diff {
            older,
            newer,
            walk: if same_version {
                Walk::Done
            } else {
                Walk::Newer(newer.iter())
            },
        }
    }
}

impl<'a, K, V, S> Iterator for Diff<'a, K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    type Item = Change<'a, K, V>;

    fn next(&mut self) -> Option<Change<'a, K, V>> {
        loop {
            match &mut self.walk {
                Walk::Newer(iter) => match iter.next() {
                    Some((key, new)) => match self.older.get(key) {
                        None => return Some(Change::Added { key, value: new }),
                        Some(old) if old != new => return Some(Change::Changed { key, old, new }),
                        Some(_) => {}
                    },
                    None => self.walk = Walk::Older(self.older.iter()),
                },
                Walk::Older(iter) => match iter.next() {
                    Some((key, value)) if !self.newer.contains_key(key) => {
                        return Some(Change::Removed { key, value })
                    }
                    Some(_) => {}
                    None => self.walk = Walk::Done,
                },
                Walk::Done => return None,
            }
        }
    }
}

impl<K: Hash + Eq, V: PartialEq, S: BuildHasher> FusedIterator for Diff<'_, K, V, S> {}

impl<K, V, S> fmt::Debug for Diff<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.walk {
            Walk::Newer(_) => "added/changed",
            Walk::Older(_) => "removed",
            Walk::Done => "done",
        };
        f.debug_struct("Diff").field("phase", &phase).finish()
    }
}
