//! The published root: the immutable read table and the delta that belongs with
//! it, behind one atomically swapped, reclaimer-protected pointer.
//!
//! One pointer, so that a reader that loads the root sees a read table and the
//! delta of keys added since *that* table was built — never a new read table with
//! an old delta or the reverse. A promotion publishes a new root; a delta growth
//! swaps only the root's delta pointer (the read table stays).
//!
//! The current root owns its entries (one strong reference each, in the read
//! table or the delta). A promotion moves those references into the next root
//! instead of cloning them, and hands the old root only the tombstones it purged:
//! freeing the old root after its grace period releases exactly those.

use core::borrow::Borrow;
use core::mem::size_of;

use super::delta::Delta;
use super::entry::Entry;
use super::table::{find, table_bytes, Table};
use crate::reclaim::Guard;
use crate::sync::{Arc, AtomicPtr, Ordering};

/// The entries a promotion dropped from the map, left to the root it replaced.
type Purged<K, V> = Vec<Arc<Entry<K, V>>>;

/// One version of the map's structure.
pub(crate) struct Root<K, V> {
    /// Immutable once published.
    pub(crate) read: Table<K, V>,
    /// Replaced (never mutated in place, apart from filling empty slots) when it
    /// grows.
    delta: AtomicPtr<Delta<K, V>>,
    /// Null while this root owns its entries. Set by the promotion that replaces
    /// it, to the entries that promotion purged: the others moved on to the next
    /// root, so dropping this one releases only these.
    purged: AtomicPtr<Purged<K, V>>,
}

impl<K, V> Root<K, V> {
    pub(crate) fn new(read: Table<K, V>, delta: Delta<K, V>) -> Self {
        Root {
            read,
            delta: AtomicPtr::new(Box::into_raw(Box::new(delta))),
            purged: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Every entry reference of this root — read table, then delta — moved out for
    /// the next root (see [`Delta::take_entries`]).
    ///
    /// # Safety
    ///
    /// The caller holds the map's lock, calls this once per root, and treats the
    /// references as borrowed (`ManuallyDrop`) until it calls
    /// [`hand_over`](Self::hand_over).
    pub(crate) unsafe fn take_entries(&self) -> impl Iterator<Item = Arc<Entry<K, V>>> + '_ {
        let read = self.read.iter().map(|entry| {
            // SAFETY: the table holds this strong reference; the caller takes it
            // over once (`as_ptr` is the pointer `into_raw` would give).
            unsafe { Arc::from_raw(Arc::as_ptr(entry)) }
        });
        // SAFETY: the caller's contract, for the delta's references.
        read.chain(unsafe { self.delta_locked().take_entries() })
    }

    /// Completes [`take_entries`](Self::take_entries): this root keeps only
    /// `purged`, and releases just those when it is dropped. Caller holds the lock.
    pub(crate) fn hand_over(&self, purged: Purged<K, V>) {
        self.delta_locked().hand_over();
        // Relaxed: as in `Delta::hand_over` (read only by `drop`).
        let old = self
            .purged
            .swap(Box::into_raw(Box::new(purged)), Ordering::Relaxed);
        debug_assert!(old.is_null(), "a root is handed over once");
    }

    /// The current delta, protected by `guard`.
    #[inline]
    pub(crate) fn delta<'g, G: Guard>(&'g self, guard: &'g G) -> &'g Delta<K, V> {
        // Acquire: pairs with the Release swap in `replace_delta`, so the grown
        // delta's slots are initialized.
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

    /// Publishes `delta` in place of the current one, which the caller must
    /// retire. Caller holds the lock.
    pub(crate) fn replace_delta(&self, delta: Delta<K, V>) -> *mut Delta<K, V> {
        // AcqRel: Release publishes the new delta's slots; Acquire is free on a swap.
        self.delta
            .swap(Box::into_raw(Box::new(delta)), Ordering::AcqRel)
    }

    /// Every entry of this root: the read table, then `delta` (this root's delta,
    /// loaded by the caller under a guard or the lock).
    pub(crate) fn entries<'a>(
        &'a self,
        delta: &'a Delta<K, V>,
    ) -> impl Iterator<Item = &'a Entry<K, V>> + 'a {
        self.read.iter().map(|entry| &**entry).chain(delta.iter())
    }

    /// Finds `key` in the read table, then in the delta, for the lock holder.
    pub(crate) fn find_locked<Q>(&self, hash: u64, key: &Q) -> Option<&Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        find(&self.read, hash, key)
            .map(|entry| &**entry)
            .or_else(|| self.delta_locked().find(hash, key))
    }

    /// Heap bytes of the read table, the delta and the purged list, for the
    /// reclamation ledger.
    pub(crate) fn bytes(&self) -> usize {
        // Relaxed: read by the lock holder that wrote it, or exclusively.
        let purged = self.purged.load(Ordering::Relaxed);
        // SAFETY: non-null only once handed over; owned by this root.
        let purged = unsafe { purged.as_ref() }.map_or(0, |p| {
            size_of::<Purged<K, V>>() + p.capacity() * size_of::<Arc<Entry<K, V>>>()
        });
        size_of::<Self>() + table_bytes(&self.read) + self.delta_locked().bytes() + purged
    }
}

impl<K, V> Drop for Root<K, V> {
    fn drop(&mut self) {
        // Relaxed: exclusive access (loom's atomics lack `get_mut`); the hand-over
        // happened before the retirement that led here.
        let purged = self.purged.load(Ordering::Relaxed);
        if !purged.is_null() {
            // The read table's references belong to a newer root now.
            self.read.drain().for_each(core::mem::forget);
            // SAFETY: from `Box::into_raw` in `hand_over`, owned by this root,
            // dropped once, here: releases the purged entries.
            drop(unsafe { Box::from_raw(purged) });
        }
        // Relaxed: exclusive access.
        let delta = self.delta.load(Ordering::Relaxed);
        // SAFETY: the root owns its current delta; dropped once, here (a handed
        // over delta releases nothing).
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
    pub(crate) fn load<'g, G: Guard>(&self, guard: &'g G) -> &'g Root<K, V> {
        // Acquire: pairs with the Release swap in `replace`, so the root's read
        // table and delta are initialized before the probe.
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
        #[cfg(loom_mutant)] // mutant: publish the root without Release
        if crate::reclaim::mutant("root_publish_relaxed") {
            return self
                .ptr
                .swap(Box::into_raw(Box::new(root)), Ordering::Relaxed);
        }
        // AcqRel: Release publishes the new root; Acquire is free on a swap.
        self.ptr
            .swap(Box::into_raw(Box::new(root)), Ordering::AcqRel)
    }

    /// The root, with the map exclusively borrowed.
    pub(crate) fn take_exclusive(&mut self) -> Box<Root<K, V>> {
        // Relaxed: exclusive access (loom's atomics lack `get_mut`).
        let root = self.ptr.swap(core::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: from `Box::into_raw`, owned here alone.
        unsafe { Box::from_raw(root) }
    }
}
