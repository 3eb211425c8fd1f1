//! Unit tests of the SyncMap (v2) protocol.
//!
//! This module holds what the test files share: [`SyncMap::check_root`], which
//! checks the structural invariants of a quiescent map's root, and accessors for
//! the private state ([`SyncMap::slot_of`], [`SyncMap::root_sizes`], …). The
//! drop log, flush helpers and PRNG shared with the classic protocol's tests are
//! in `crate::test_support`.
//!
//! The tests run on std's atomics only (loom has its own suite in `loom-tests/`).
#![cfg(not(loom))]

mod bad_input;
mod delta_protocol;
mod differential;
mod invariants;

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::entry::Entry;
use super::table::find;
use super::value;
use super::SyncMap;
use crate::reclaim::Reclaim;
use crate::sync;
use crate::test_support::Slot;

/// Where a key's entry is in the current root, and the state of its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Read(Slot),
    Delta(Slot),
}

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Checks the v2 root's structural invariants. Call it only while no writer
    /// runs (it takes the lock, which excludes locked writers, but lock-free CASes
    /// on entries could still change slots under it).
    ///
    /// * invariant 1: no expunged entry in the current root (only promotion and
    ///   clear expunge, and both replace the root);
    /// * invariant 2: each key at most once across read ∪ delta, and each entry
    ///   found where it is by its own table's probe (the delta's probe sequence
    ///   reaches every entry before an empty slot); cached hashes right;
    /// * the delta's count (`delta_len`) and load factor (at most 1/2);
    /// * `len()` = the live entries of the root, and the raw count is not negative.
    pub(crate) fn check_root(&self) {
        let _writer = sync::lock(&self.write_side.writer);
        let guard = self.read_side.reclaim.pin();
        let root = self.read_side.root.load(&guard);
        let delta = root.delta(&guard);
        let mut seen = HashSet::new();
        let mut live = 0;
        let read_entries = root.read.iter().map(|e| (&**e, true));
        for (entry, in_read) in read_entries.chain(delta.iter().map(|e| (e, false))) {
            let ptr = entry.load();
            assert!(
                ptr != value::expunged(),
                "an expunged entry in the current root"
            );
            live += usize::from(value::is_live(ptr));
            assert_eq!(self.hash(entry.key()), entry.hash, "stale cached hash");
            assert!(
                seen.insert(entry as *const Entry<K, V>),
                "one entry stored twice"
            );
            let (hash, key) = (entry.hash, entry.key());
            let by_read = find(&root.read, hash, key).map(|e| &**e as *const Entry<K, V>);
            let by_delta = delta.find(hash, key).map(|e| e as *const Entry<K, V>);
            let (own, other) = if in_read {
                (by_read, by_delta)
            } else {
                (by_delta, by_read)
            };
            assert_eq!(
                own,
                Some(entry as *const Entry<K, V>),
                "an entry of the {} is not the one its probe finds",
                if in_read { "read table" } else { "delta" }
            );
            assert_eq!(other, None, "a key is in both the read table and the delta");
        }
        let delta_len = delta.iter().count();
        assert_eq!(self.write_side.delta_len.load(Ordering::Relaxed), delta_len);
        assert!(delta_len <= delta.room(), "delta past its load factor");
        let raw_len = self.write_side.len.load(Ordering::Relaxed);
        assert!(raw_len >= 0, "the live-key count went negative: {raw_len}");
        assert_eq!(
            self.len(),
            live,
            "len() must equal the live entries of the root"
        );
    }

    /// Where `key`'s entry is in the current root (read table or delta) and its
    /// slot's state; `None` if the root has no entry for it (never inserted, or
    /// dropped by a promotion, which expunged it in the retired root).
    pub(crate) fn slot_of<Q>(&self, key: &Q) -> Option<Place>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let _writer = sync::lock(&self.write_side.writer);
        let guard = self.read_side.reclaim.pin();
        let root = self.read_side.root.load(&guard);
        let hash = self.hash(key);
        if let Some(entry) = find(&root.read, hash, key) {
            return Some(Place::Read(Slot::of(entry)));
        }
        root.delta(&guard)
            .find(hash, key)
            .map(|entry| Place::Delta(Slot::of(entry)))
    }

    /// `(entries in the read table, entries in the delta)` of the current root.
    pub(crate) fn root_sizes(&self) -> (usize, usize) {
        let guard = self.read_side.reclaim.pin();
        let root = self.read_side.root.load(&guard);
        (root.read.len(), root.delta(&guard).iter().count())
    }

    /// Entries (live or tombstones) in the read table.
    pub(crate) fn read_len(&self) -> usize {
        self.root_sizes().0
    }

    /// Whether sampled delta reads have asked the next writer to promote.
    pub(crate) fn promote_wanted(&self) -> bool {
        self.sampler.promote_wanted.load(Ordering::Relaxed)
    }

    /// Lock acquisitions so far.
    pub(crate) fn audit_locks(&self) -> usize {
        self.lock_audit.locks.load(Ordering::Relaxed)
    }
}

#[test]
fn check_root_accepts_fresh_and_used_maps() {
    let map: SyncMap<u32, u32> = SyncMap::new();
    map.check_root();
    for i in 0..10 {
        map.insert(i, i);
        map.check_root();
    }
    map.promote();
    map.check_root();
    map.remove(&3);
    map.insert(100, 100);
    map.remove(&100);
    map.insert(101, 101);
    map.check_root();
    assert_eq!(map.slot_of(&3), Some(Place::Read(Slot::Deleted)));
    assert_eq!(map.slot_of(&4), Some(Place::Read(Slot::Live)));
    assert_eq!(map.slot_of(&100), Some(Place::Delta(Slot::Deleted)));
    assert_eq!(map.slot_of(&101), Some(Place::Delta(Slot::Live)));
    assert_eq!(map.slot_of(&102), None);
    map.promote();
    map.check_root();
    assert_eq!(map.slot_of(&3), None, "promotion drops tombstones");
    assert_eq!(map.slot_of(&100), None);
    assert_eq!(map.slot_of(&101), Some(Place::Read(Slot::Live)));
    assert_eq!(map.root_sizes(), (10, 0));
}
