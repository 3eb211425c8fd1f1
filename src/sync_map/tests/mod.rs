//! Unit tests of the SyncMap protocol.
#![cfg(not(loom))]

mod delta_protocol;

use core::hash::{BuildHasher, Hash};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::entry::Entry;
use super::value;
use super::SyncMap;
use crate::reclaim::Reclaim;
use crate::sync;

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Checks the v2 root's structural invariants while no writer runs:
    /// no expunged entry in the current root (only promotion and clear expunge, and
    /// both replace the root); each key at most once across read ∪ delta; cached
    /// hashes right; the delta's count and load factor; `len()` = live entries.
    pub(crate) fn check_root(&self) {
        let _writer = sync::lock(&self.write_side.writer);
        let guard = self.read_side.reclaim.pin();
        let root = self.read_side.root.load(&guard);
        let delta = root.delta(&guard);
        let mut keys = HashSet::new();
        let mut live = 0;
        let entries: Vec<&Entry<K, V>> =
            root.read.iter().map(|e| &**e).chain(delta.iter()).collect();
        for entry in &entries {
            let ptr = entry.load();
            assert!(ptr != value::expunged(), "an expunged entry in the current root");
            live += usize::from(value::is_live(ptr));
            assert_eq!(self.hash(entry.key()), entry.hash, "stale cached hash");
            assert!(
                keys.insert(entry as *const _ as usize) && self.count_key(entry) == 1,
                "a key is in the root twice"
            );
        }
        let delta_len = delta.iter().count();
        assert_eq!(self.write_side.delta_len.load(Ordering::Relaxed), delta_len);
        assert!(delta_len <= delta.room(), "delta past its load factor");
        assert_eq!(self.len(), live, "len() must equal the live entries of the root");
    }

    fn count_key(&self, entry: &Entry<K, V>) -> usize {
        let guard = self.read_side.reclaim.pin();
        let root = self.read_side.root.load(&guard);
        let in_read = root
            .read
            .iter()
            .filter(|e| e.hash == entry.hash && e.key() == entry.key())
            .count();
        let in_delta = root
            .delta(&guard)
            .iter()
            .filter(|e| e.hash == entry.hash && e.key() == entry.key())
            .count();
        in_read + in_delta
    }

    /// `(entries in the read table, entries in the delta)` of the current root.
    pub(crate) fn root_sizes(&self) -> (usize, usize) {
        let guard = self.read_side.reclaim.pin();
        let root = self.read_side.root.load(&guard);
        (root.read.len(), root.delta(&guard).iter().count())
    }

    /// Lock acquisitions so far.
    pub(crate) fn audit_locks(&self) -> usize {
        self.lock_audit.locks.load(Ordering::Relaxed)
    }
}
