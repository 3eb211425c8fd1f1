//! Unit tests of the classic protocol ([`ClassicSyncMap`], Go's `sync.Map`).
//!
//! This module holds what the test files share: [`ClassicSyncMap::check_invariants`],
//! which checks the structural invariants of `docs/design.md` §3 against the
//! private state of a quiescent map, small accessors for that state, and — for
//! tests only — the operations `SyncMap` has and `ClassicSyncMap`'s reduced public
//! API lacks (`retain`, `get_or_insert_with`, …), built on
//! the crate-private protocol functions the way the classic `Pinned` built them.
//! The drop log, flush helpers and PRNG are in `crate::test_support`.
//!
//! The tests run on std's atomics only (loom has its own suite in `loom-tests/`).
#![cfg(not(loom))]

mod fixes;
mod go_api;
mod invariants;
mod promotion;

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::entry::Entry;
use super::table::{find, Table};
use super::{ClassicPinned, ClassicSyncMap};
use crate::reclaim::Reclaim;
use crate::sync::{self, Arc};
use crate::test_support::Slot;
use crate::LoadOrStore;

impl<K, V, S, R> ClassicSyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Checks the protocol's structural invariants. Call it only while no writer
    /// runs (it takes the lock, so it excludes locked writers, but lock-free CASes
    /// on entries could still change slots under it).
    ///
    /// * `amended` is set exactly while the dirty table exists;
    /// * invariant 1: no expunged entry is in `dirty`; while `dirty` exists, every
    ///   non-expunged entry of `read` is in it (the same `Arc`);
    /// * without `dirty`, `read` holds no expunged entry (an expunged entry is
    ///   revived only into an existing dirty table);
    /// * a key appears at most once per table, and a key in both tables is the same
    ///   entry; each entry's cached hash is its key's hash;
    /// * the promotion rule holds: `misses < len(dirty)` while it exists, 0 without;
    /// * `len()` is the number of live entries in `read ∪ dirty`.
    pub(crate) fn check_invariants(&self) {
        let guard = self.read_side.reclaim.pin();
        let dirty = sync::lock(&self.write_side.dirty);
        let read = self.read_side.read.load(&guard);
        assert_eq!(
            read.amended,
            dirty.table.is_some(),
            "`amended` must be set exactly while the dirty table exists"
        );
        self.check_table("read", read.table);
        let mut live: HashSet<*const Entry<K, V>> = read
            .table
            .iter()
            .filter(|e| Slot::of(e) == Slot::Live)
            .map(Arc::as_ptr)
            .collect();
        match &dirty.table {
            Some(table) => {
                self.check_table("dirty", table);
                let in_dirty: HashSet<*const Entry<K, V>> = table.iter().map(Arc::as_ptr).collect();
                for entry in table.iter() {
                    assert_ne!(
                        Slot::of(entry),
                        Slot::Expunged,
                        "invariant 1: an expunged entry is in the dirty table"
                    );
                    if Slot::of(entry) == Slot::Live {
                        live.insert(Arc::as_ptr(entry));
                    }
                    if let Some(in_read) = find(read.table, entry.hash, entry.key()) {
                        assert!(
                            Arc::ptr_eq(in_read, entry),
                            "a key is in both tables as two different entries"
                        );
                    }
                }
                for entry in read.table.iter() {
                    if Slot::of(entry) != Slot::Expunged {
                        assert!(
                            in_dirty.contains(&Arc::as_ptr(entry)),
                            "invariant 1: a non-expunged entry of the read table ({:?}) \
                             is missing from the dirty table",
                            Slot::of(entry)
                        );
                    }
                }
                assert!(
                    dirty.misses < table.len(),
                    "promotion rule: {} misses with a dirty table of {} should have promoted",
                    dirty.misses,
                    table.len()
                );
            }
            None => {
                for entry in read.table.iter() {
                    assert_ne!(
                        Slot::of(entry),
                        Slot::Expunged,
                        "an expunged entry is in the read table while there is no dirty table"
                    );
                }
                assert_eq!(dirty.misses, 0, "misses counted without a dirty table");
            }
        }
        let raw_len = self.write_side.len.load(Ordering::Relaxed);
        assert!(raw_len >= 0, "the live-key count went negative: {raw_len}");
        assert_eq!(
            self.len(),
            live.len(),
            "len() must equal the live entries of read ∪ dirty"
        );
    }

    fn check_table(&self, name: &str, table: &Table<K, V>) {
        let mut seen = HashSet::new();
        for entry in table.iter() {
            assert!(
                seen.insert(Arc::as_ptr(entry)),
                "{name}: one entry stored twice"
            );
            assert_eq!(
                self.hash(entry.key()),
                entry.hash,
                "{name}: an entry's cached hash is not its key's hash"
            );
            let found = find(table, entry.hash, entry.key()).expect("an entry finds itself");
            assert!(
                Arc::ptr_eq(found, entry),
                "{name}: a key appears twice in one table"
            );
        }
    }

    /// The slot state of `key`'s entry in the read table and in the dirty table.
    pub(crate) fn slots<Q>(&self, key: &Q) -> (Option<Slot>, Option<Slot>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.read_side.reclaim.pin();
        let dirty = sync::lock(&self.write_side.dirty);
        let read = self.read_side.read.load(&guard);
        let hash = self.hash(key);
        let in_read = find(read.table, hash, key).map(|e| Slot::of(e));
        let in_dirty = dirty
            .table
            .as_ref()
            .and_then(|t| find(t, hash, key))
            .map(|e| Slot::of(e));
        (in_read, in_dirty)
    }

    /// `key`'s entry in the read table, and whether the dirty table holds the very
    /// same entry.
    pub(crate) fn read_entry_shared<Q>(&self, key: &Q) -> Option<(Arc<Entry<K, V>>, bool)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.read_side.reclaim.pin();
        let dirty = sync::lock(&self.write_side.dirty);
        let read = self.read_side.read.load(&guard);
        let hash = self.hash(key);
        let entry = Arc::clone(find(read.table, hash, key)?);
        let shared = dirty
            .table
            .as_ref()
            .and_then(|t| find(t, hash, key))
            .is_some_and(|d| Arc::ptr_eq(d, &entry));
        Some((entry, shared))
    }

    /// Entries in the read table (live, deleted or expunged).
    pub(crate) fn read_len(&self) -> usize {
        let guard = self.read_side.reclaim.pin();
        self.read_side.read.load(&guard).table.len()
    }

    /// Entries in the dirty table, if it exists.
    pub(crate) fn dirty_len(&self) -> Option<usize> {
        sync::lock(&self.write_side.dirty)
            .table
            .as_ref()
            .map(Table::len)
    }

    /// Whether the read table is amended.
    pub(crate) fn amended(&self) -> bool {
        let guard = self.read_side.reclaim.pin();
        self.read_side.read.load(&guard).amended
    }

    /// The misses counted toward the next promotion.
    pub(crate) fn pending_misses(&self) -> usize {
        sync::lock(&self.write_side.dirty).misses
    }

    /// The tombstone count that triggers compaction (removes that left a
    /// tombstone in the read table, less those a dirty copy purged).
    pub(crate) fn tombstones(&self) -> usize {
        self.write_side.tombstones.load(Ordering::Relaxed)
    }

    /// A map holding `pairs`, promoted once at the end (as `SyncMap`'s
    /// `FromIterator` builds one).
    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        S: Default,
    {
        let map = Self::with_hasher_and_reclaim(S::default(), R::default());
        {
            let pinned = map.pin();
            for (key, value) in pairs {
                pinned.insert(key, value);
            }
        }
        map.promote();
        map
    }

    /// A clone of `key`'s value.
    pub(crate) fn get_cloned<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.pin().get(key).cloned()
    }

    /// Whether `key` is present.
    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.pin().get(key).is_some()
    }

    /// Keeps only the keys for which `keep` returns true; see
    /// [`ClassicPinned::retain`].
    pub(crate) fn retain(&self, keep: impl FnMut(&K, &V) -> bool) {
        self.pin().retain(keep);
    }
}

/// The operations of the classic `Pinned` that `ClassicPinned` does not offer,
/// as it implemented them.
impl<K, V, S, R> ClassicPinned<'_, K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Go's `LoadOrStore` with a lazily made value.
    pub(crate) fn get_or_insert_with(
        &self,
        key: K,
        make: impl FnOnce() -> V,
    ) -> LoadOrStore<'_, V> {
        let mut make = Some(make);
        self.map.load_or_store(&self.guard, key, &mut || {
            (make
                .take()
                .expect("load_or_store makes the value at most once"))()
        })
    }

    pub(crate) fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.hash(key);
        let entry = self.map.lookup(&self.guard, hash, key)?;
        // SAFETY: `self.guard` is held for as long as the returned borrow of `self`.
        let value = unsafe { entry.get() }?;
        Some((entry.key(), value))
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// The live entries (Go's `Range`: promotes first if new keys are pending).
    pub(crate) fn iter(&self) -> std::vec::IntoIter<(&K, &V)> {
        self.entries().into_iter()
    }

    /// Removes the keys `keep` rejects, each with its own compare-and-remove,
    /// after promoting pending keys (as Go's `Range` does).
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let table = self.map.promote_if_amended(&self.guard);
        for entry in table.iter() {
            let key = entry.key();
            self.map
                .delete(&self.guard, entry, true, |value| !keep(key, value));
        }
    }

    pub(crate) fn clear(&self) {
        self.map.clear_tables(&self.guard);
    }
}

#[test]
fn check_invariants_accepts_fresh_and_used_maps() {
    let map: ClassicSyncMap<u32, u32> = ClassicSyncMap::new();
    map.check_invariants();
    for i in 0..10 {
        map.insert(i, i);
        map.check_invariants();
    }
    map.promote();
    map.check_invariants();
    map.remove(&3);
    map.insert(100, 100);
    map.check_invariants();
    assert_eq!(map.slots(&3), (Some(Slot::Expunged), None));
    assert_eq!(map.slots(&4), (Some(Slot::Live), Some(Slot::Live)));
    assert_eq!(map.slots(&100), (None, Some(Slot::Live)));
}
