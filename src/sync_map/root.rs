//! The published root: the read table and the delta that belongs with it, behind
//! one atomically swapped, reclaimer-protected pointer.
//!
//! One pointer, so that a reader that loads the root sees a read table and the
//! delta of keys added since *that* table was built — never a new read table with
//! an old delta or the reverse. A promotion or a clear publishes a new root; a
//! delta growth swaps only the root's delta pointer (the read table stays).
//!
//! A root owns everything in it: the read table's slots (keys, inline values and
//! linked cells) and its delta's nodes. When a promotion replaces it, it has been
//! sealed and copied — the next root holds clones — so freeing it after its grace
//! period drops exactly what readers of it could still see.

use core::borrow::Borrow;
use core::mem::size_of;

use crossbeam_utils::CachePadded;

use super::delta::{Delta, Insert};
use super::read::ReadTable;
use super::slot::{Slot, SlotRef};
use crate::raw::mutant::mutant;
use crate::reclaim::Protect;
use crate::sync::{AtomicPtr, AtomicUsize, Ordering};

/// One version of the map's structure.
pub(crate) struct Root<K, V> {
    pub(crate) read: ReadTable<K, V>,
    /// Replaced (never mutated in place, apart from filling and closing empty
    /// buckets) when it grows.
    delta: AtomicPtr<Delta<K, V>>,
    /// The delta's nodes, plus the inserts in flight that reserved a place (see
    /// `Delta::insert`); carried over when the delta grows. On a line of its own:
    /// every new key writes it, and every read loads the fields beside it.
    delta_len: CachePadded<AtomicUsize>,
}

impl<K, V> Root<K, V> {
    pub(crate) fn new(read: ReadTable<K, V>, delta: Delta<K, V>) -> Self {
        Root {
            read,
            delta: AtomicPtr::new(Box::into_raw(Box::new(delta))),
            delta_len: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// `key`'s slot in the read table.
    #[inline]
    pub(crate) fn find_read<Q>(&self, hash: u64, key: &Q) -> Option<SlotRef<'_, K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.read.find(hash, key)
    }

    /// The current delta, protected by `guard`.
    #[inline]
    pub(crate) fn delta<'g, P: Protect>(&'g self, guard: &'g P) -> &'g Delta<K, V> {
        // Acquire: pairs with the Release swap in `replace_delta`, so the grown
        // delta's buckets are initialized.
        let delta = guard.protect(&self.delta, Ordering::Acquire);
        // SAFETY: never null; a replaced delta is retired after the swap, and the
        // root's own delta is freed only with the root, after its grace period, so
        // `guard` keeps it alive for 'g.
        unsafe { &*delta }
    }

    /// The current delta for the lock holder (the only one who replaces it).
    pub(crate) fn delta_locked(&self) -> &Delta<K, V> {
        // Relaxed: only lock holders swap the delta, and the lock orders them.
        let delta = self.delta.load(Ordering::Relaxed);
        // SAFETY: non-null, and not replaced while the caller holds the lock.
        unsafe { &*delta }
    }

    /// Keys in the delta: exact for the lock holder once it has closed the delta,
    /// otherwise a hint that may count inserts in flight.
    pub(crate) fn delta_len(&self) -> usize {
        // Relaxed: a count that orders nothing (see `Delta::insert`).
        self.delta_len.load(Ordering::Relaxed)
    }

    /// Adds `node` to `delta` (this root's, protected by the caller); see
    /// [`Delta::insert`].
    #[inline]
    pub(crate) fn insert_node<'d>(
        &self,
        delta: &'d Delta<K, V>,
        hash: u64,
        node: Box<Slot<K, V>>,
    ) -> Insert<'d, K, V>
    where
        K: Eq,
    {
        delta.insert(hash, node, &self.delta_len)
    }

    /// Publishes `delta` in place of the current one, which the caller must
    /// retire. Caller holds the lock.
    pub(crate) fn replace_delta(&self, delta: Delta<K, V>) -> *mut Delta<K, V> {
        // AcqRel: Release publishes the new delta's buckets; Acquire is free on a
        // swap.
        self.delta
            .swap(Box::into_raw(Box::new(delta)), Ordering::AcqRel)
    }

    /// Every slot of this root — read table, then `delta`'s nodes — with its hash
    /// where the structure keeps it (delta nodes, see `delta::Nodes`).
    pub(crate) fn slots<'a>(
        &'a self,
        delta: &'a Delta<K, V>,
    ) -> impl Iterator<Item = (Option<u64>, SlotRef<'a, K, V>)> + 'a {
        let read = self.read.slots().map(|slot| (None, slot));
        read.chain(delta.nodes().map(|(hash, node)| (hash, node.as_slot())))
    }

    /// Heap bytes of the read table, the delta's buckets and its `delta_len`
    /// nodes, for the reclamation ledger.
    pub(crate) fn bytes(&self, delta_len: usize) -> usize {
        size_of::<Self>() + self.read.bytes() + self.delta_locked().bytes(delta_len)
    }
}

impl<K, V> Drop for Root<K, V> {
    fn drop(&mut self) {
        // Relaxed: exclusive access (loom's atomics lack `get_mut`). A root is
        // dropped with the map (`&mut`), or by its reclaimer after it was
        // retired, and the last `replace_delta` happened before that retirement:
        // the `Reclaim` contract's clause 3 (retire happens-before reclaim)
        // makes this load see it.
        let delta = self.delta.load(Ordering::Relaxed);
        // SAFETY: the root owns its current delta; dropped once, here. The read
        // table drops its keys, values and cells itself.
        drop(unsafe { Box::from_raw(delta) });
    }
}

/// The atomically swapped pointer to the current root.
pub(crate) struct RootPtr<K, V> {
    ptr: AtomicPtr<Root<K, V>>,
}

impl<K, V> RootPtr<K, V> {
    pub(crate) fn new(root: Root<K, V>) -> Self {
        RootPtr {
            ptr: AtomicPtr::new(Box::into_raw(Box::new(root))),
        }
    }

    /// The current root, protected by `guard`.
    #[inline]
    pub(crate) fn load<'g, P: Protect>(&self, guard: &'g P) -> &'g Root<K, V> {
        // Acquire: pairs with the Release swap in `replace`, so the root's read
        // table (keys and inline values) and delta are initialized.
        let root = guard.protect(&self.ptr, Ordering::Acquire);
        // SAFETY: never null; a replaced root is retired after the swap, so
        // `guard` keeps it alive for 'g.
        unsafe { &*root }
    }

    /// The current root for the lock holder.
    ///
    /// # Safety
    ///
    /// The caller holds the map's lock for all of `'l` (so the root is not
    /// replaced).
    pub(crate) unsafe fn load_locked<'l>(&self) -> &'l Root<K, V> {
        // Relaxed: only lock holders swap the root, and the lock orders them.
        let root = self.ptr.load(Ordering::Relaxed);
        // SAFETY: non-null, and not replaced while the caller holds the lock.
        unsafe { &*root }
    }

    /// Publishes `root` and returns the old one, which the caller must retire.
    /// Caller holds the lock.
    pub(crate) fn replace(&self, root: Root<K, V>) -> *mut Root<K, V> {
        // AcqRel: Release publishes the new root; Acquire is free on a swap.
        // (Mutant: publish the root without Release.)
        let order = mutant!("root_publish_relaxed" => Ordering::Relaxed, else Ordering::AcqRel);
        self.ptr.swap(Box::into_raw(Box::new(root)), order)
    }

    /// The root, with the map exclusively borrowed.
    pub(crate) fn take_exclusive(&mut self) -> Box<Root<K, V>> {
        // Relaxed: exclusive access (loom's atomics lack `get_mut`).
        let root = self.ptr.swap(core::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: from `Box::into_raw`, owned here alone.
        unsafe { Box::from_raw(root) }
    }
}
