//! Unit tests of the SyncMap (v3) protocol.
//!
//! This module holds what the test files share: [`SyncMap::check_root`], which
//! checks the structural invariants of a quiescent map's root, and accessors for
//! the private state ([`SyncMap::slot_of`], [`SyncMap::root_sizes`], …). The
//! drop log, flush helpers and PRNG shared with the classic protocol's tests are
//! in `crate::test_support`.
//!
//! Files: `differential` (against `HashMap`), `delta_protocol` (the delta, the
//! promotion triggers, reads that never lock), `read_promotion` (a map that is
//! only read promotes itself), `invariants` (the root's structure, reclamation,
//! visibility, writes racing promotions and `clear`), `promotion_panics`
//! (panicking `Clone` and `Hash` inside promotions), `lifetimes` (drop timing:
//! the map's drop, zero-sized keys and values), `bad_input` (hostile user code
//! and inputs).
//!
//! The tests run on std's atomics only (loom has its own suite in `loom-tests/`).
#![cfg(not(loom))]

mod bad_input;
mod delta_protocol;
mod differential;
mod invariants;
mod lifetimes;
mod promotion_panics;
mod read_promotion;

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;

use super::slot::{link, SlotRef};
use super::SyncMap;
use crate::reclaim::Reclaim;
use crate::sync;

/// The state of a slot's link, as `slot.rs` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// The key's current value is the slot's own (the one the table was built
    /// with, or the node inserted with).
    Inline,
    /// The current value lives in a heap cell.
    Cell,
    /// The key is absent (a tombstone until the next promotion).
    Removed,
}

impl Link {
    /// The state of `slot`'s link, and whether a promotion or clear sealed it.
    pub(crate) fn of<K, V>(slot: SlotRef<'_, K, V>) -> (Link, bool) {
        let raw = slot.load();
        let state = if link::is_removed(raw) {
            Link::Removed
        } else if link::is_inline(raw) {
            Link::Inline
        } else {
            assert!(
                link::cell(raw).is_some(),
                "a link that is none of the states"
            );
            Link::Cell
        };
        (state, link::is_sealed(raw))
    }
}

/// Where a key's slot is in the current root, and the state of its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Read(Link),
    Delta(Link),
}

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Checks the v3 root's structural invariants. Call it only while no writer
    /// runs (it takes the lock, which excludes locked writers and promotions,
    /// but lock-free CASes on links could still change slots under it).
    ///
    /// * invariant 1: each key at most once across read ∪ delta, and every slot
    ///   found where it is by its own table's probe (the delta's probe sequence
    ///   reaches every node before an empty bucket); a delta bucket's cached hash
    ///   is its key's hash;
    /// * no `SEALED` link in the current root (only promotion and clear seal,
    ///   and both replace the root — or unseal everything if they are abandoned);
    /// * the delta's count (`Root::delta_len`) is exact and its load factor at
    ///   most 1/2 (quiescent: no insert in flight);
    /// * `len()` = the live slots of the root, and the raw count is not negative.
    pub(crate) fn check_root(&self) {
        self.check_root_with(false);
    }

    /// [`check_root`](Self::check_root), and the tombstone count (a heuristic
    /// that may lag by the removes in flight) is exact: for single-threaded
    /// tests, where nothing is in flight.
    pub(crate) fn check_root_exact(&self) {
        self.check_root_with(true);
    }

    fn check_root_with(&self, exact_tombstones: bool) {
        let _writer = sync::lock(&self.write_side.writer);
        let guard = self.read_side.reclaim.pin();
        let root = self.read_side.root.load(&guard);
        let delta = root.delta(&guard);
        let (mut live, mut removed, mut nodes) = (0usize, 0usize, 0usize);
        let read_slots = root.read.slots().map(|slot| (false, None, slot));
        let nodes_of_delta = delta
            .nodes()
            .map(|(hash, node)| (true, hash, node.as_slot()));
        for (in_delta, cached, slot) in read_slots.chain(nodes_of_delta) {
            let (state, sealed) = Link::of(slot);
            assert!(!sealed, "a sealed slot in the current root");
            if !in_delta && state != Link::Inline {
                // A read-table slot written since the build has its touched
                // bit set (its writer set it before returning).
                assert!(
                    slot.untouched_value().is_none(),
                    "a written read-table slot whose touched bit is clear"
                );
            }
            if state == Link::Removed {
                removed += 1;
            } else {
                live += 1;
            }
            let key = slot.key();
            let hash = self.hash(key);
            let by_read = root.find_read(hash, key).map(|s| s.key() as *const K);
            let by_delta = delta.find(hash, key).map(|s| s.as_slot().key() as *const K);
            let (own, other, table) = if in_delta {
                // Quiescent: every inserter has stored its hash; only the keys
                // hashing to 0 or 1 have none exact.
                match cached {
                    Some(cached) => assert_eq!(cached, hash, "a delta bucket's hash is stale"),
                    None => assert!(hash <= 1, "a delta bucket's hash was never stored"),
                }
                nodes += 1;
                (by_delta, by_read, "delta")
            } else {
                (by_read, by_delta, "read table")
            };
            assert_eq!(
                own,
                Some(key as *const K),
                "a slot of the {table} is not the one its probe finds (a key stored twice?)"
            );
            assert_eq!(other, None, "a key is in both the read table and the delta");
        }
        assert_eq!(
            root.delta_len(),
            nodes,
            "the root's delta_len is not the delta's node count"
        );
        assert!(nodes <= delta.room(), "delta past its load factor of 1/2");
        let raw_len = self.write_side.len.load(Ordering::Relaxed);
        assert!(raw_len >= 0, "the live-key count went negative: {raw_len}");
        assert_eq!(
            self.len(),
            live,
            "len() must equal the live slots of the root"
        );
        if exact_tombstones {
            assert_eq!(
                self.write_side.tombstones.load(Ordering::Relaxed),
                removed as isize,
                "the tombstone count is not the removed slots of the root"
            );
        }
    }

    /// Where `key`'s slot is in the current root (read table or delta) and its
    /// link's state; `None` if the root has no slot for it (never inserted, or
    /// left out by a promotion after its removal). Panics on a sealed slot.
    pub(crate) fn slot_of<Q>(&self, key: &Q) -> Option<Place>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let _writer = sync::lock(&self.write_side.writer);
        let guard = self.read_side.reclaim.pin();
        let root = self.read_side.root.load(&guard);
        let hash = self.hash(key);
        let unsealed = |slot| {
            let (state, sealed) = Link::of(slot);
            assert!(!sealed, "a sealed slot in the current root");
            state
        };
        if let Some(slot) = root.find_read(hash, key) {
            return Some(Place::Read(unsealed(slot)));
        }
        root.delta(&guard)
            .find(hash, key)
            .map(|slot| Place::Delta(unsealed(slot.as_slot())))
    }

    /// `(slots in the read table, nodes in the delta)` of the current root,
    /// removed keys included.
    pub(crate) fn root_sizes(&self) -> (usize, usize) {
        let guard = self.read_side.reclaim.pin();
        let root = self.read_side.root.load(&guard);
        (root.read.len(), root.delta(&guard).nodes().count())
    }

    /// Slots (live or removed) in the read table.
    pub(crate) fn read_len(&self) -> usize {
        self.root_sizes().0
    }

    /// Whether a reader that found the writer lock taken asked the next writer
    /// to promote.
    pub(crate) fn promote_wanted(&self) -> bool {
        self.sampler.promotion_wanted()
    }

    /// Waiting lock acquisitions so far.
    pub(crate) fn audit_locks(&self) -> usize {
        self.lock_audit.locks.load(Ordering::Relaxed)
    }

    /// Waiting lock acquisitions made inside a read operation (see
    /// `write::LockAudit::as_reader`): must stay 0.
    pub(crate) fn audit_reader_locks(&self) -> usize {
        self.lock_audit.reader_locks.load(Ordering::Relaxed)
    }

    /// The current root's address, to tell whether a root was published.
    pub(crate) fn root_addr(&self) -> usize {
        let guard = self.read_side.reclaim.pin();
        core::ptr::from_ref(self.read_side.root.load(&guard)).addr()
    }
}

#[test]
fn check_root_accepts_fresh_and_used_maps() {
    let map: SyncMap<u32, u32> = SyncMap::new();
    map.check_root_exact();
    for i in 0..10 {
        map.insert(i, i);
        map.check_root_exact();
    }
    map.promote();
    map.check_root_exact();
    map.remove(&3);
    map.insert(4, 40);
    map.insert(100, 100);
    map.remove(&100);
    map.insert(101, 101);
    map.insert(102, 102);
    map.insert(102, 1020);
    map.check_root_exact();
    assert_eq!(map.slot_of(&3), Some(Place::Read(Link::Removed)));
    assert_eq!(map.slot_of(&4), Some(Place::Read(Link::Cell)));
    assert_eq!(map.slot_of(&5), Some(Place::Read(Link::Inline)));
    assert_eq!(map.slot_of(&100), Some(Place::Delta(Link::Removed)));
    assert_eq!(map.slot_of(&101), Some(Place::Delta(Link::Inline)));
    assert_eq!(map.slot_of(&102), Some(Place::Delta(Link::Cell)));
    assert_eq!(map.slot_of(&103), None);
    map.promote();
    map.check_root_exact();
    assert_eq!(map.slot_of(&3), None, "promotion leaves removed keys out");
    assert_eq!(map.slot_of(&100), None);
    // Every live key is inline in the new read table, cells included.
    for k in [4, 5, 101, 102] {
        assert_eq!(map.slot_of(&k), Some(Place::Read(Link::Inline)), "key {k}");
    }
    assert_eq!(map.get_cloned(&102), Some(1020));
    assert_eq!(map.root_sizes(), (11, 0));
}
