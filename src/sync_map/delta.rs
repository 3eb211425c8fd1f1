//! The delta table: the keys added since the last promotion, readable without a
//! lock.
//!
//! An insert-only open-addressing table of entry pointers with linear probing.
//! Each slot keeps the entry's hash beside the pointer, in the same cache line, so a
//! probe compares hashes without touching the entries it passes: a lookup of an
//! absent key (half of all reads in a churn workload) reads no entry at all.
//! One writer at a time (the map's mutex) fills empty slots; readers probe with
//! plain acquire loads and stop at the first empty slot. Because slots only ever go
//! from empty to full — a removed key's entry stays, as a tombstone, until the next
//! promotion builds a fresh read table and starts an empty delta — a key that was
//! present when a reader started probing lies before the first empty slot on its
//! probe path, and the reader finds it. Growth copies the entries into a table
//! twice the size and publishes it through the root; the old one is retired.
//!
//! The load factor stays at most 1/2, so probe sequences stay short and every
//! probe ends at an empty slot.
//!
//! A delta owns one strong reference to each of its entries until a newer
//! structure — a grown delta, or the read table of the next root — takes them over
//! without touching the reference counts ([`Delta::take_entries`]); from then on it
//! is only a set of pointers that lock-free readers may still probe, and freeing
//! it releases nothing.

use core::borrow::Borrow;
use core::mem::{size_of, ManuallyDrop};

use super::entry::Entry;
use crate::sync::{Arc, AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// Keys added since the last promotion.
pub(crate) struct Delta<K, V> {
    /// Each non-null slot holds one strong reference (`Arc::into_raw`), owned by
    /// this delta unless `handed_over`.
    slots: Box<[Slot<K, V>]>,
    mask: usize,
    /// Set (under the lock) once a newer structure owns the slots' references.
    handed_over: AtomicBool,
}

/// One slot: an entry pointer and a copy of its hash.
struct Slot<K, V> {
    /// Null until filled, then never changed (until the delta is dropped).
    entry: AtomicPtr<Entry<K, V>>,
    /// The entry's hash, stored before `entry` is published.
    hash: AtomicU64,
}

impl<K, V> Slot<K, V> {
    /// The entry, for a lock-free reader.
    #[inline]
    fn load(&self) -> *mut Entry<K, V> {
        // Acquire: pairs with the Release in `Delta::insert`, so the entry behind
        // the pointer (its key, hash and first value) and this slot's `hash` are
        // initialized.
        self.entry.load(Ordering::Acquire)
    }

    /// The entry, for the lock holder (the only writer of slots).
    fn load_locked(&self) -> *mut Entry<K, V> {
        // Relaxed: only the lock holder writes slots, and the lock orders writers.
        self.entry.load(Ordering::Relaxed)
    }
}

/// The smallest delta: a map with no new keys pays 8 pointers for it.
const MIN_CAPACITY: usize = 8;

impl<K, V> Delta<K, V> {
    /// An empty delta with room for `len` entries at load factor 1/2.
    pub(crate) fn with_room_for(len: usize) -> Self {
        let capacity = len
            .saturating_mul(2)
            .max(MIN_CAPACITY)
            .checked_next_power_of_two()
            .expect("delta capacity overflows usize");
        Delta {
            slots: (0..capacity)
                .map(|_| Slot {
                    entry: AtomicPtr::new(core::ptr::null_mut()),
                    hash: AtomicU64::new(0),
                })
                .collect(),
            mask: capacity - 1,
            handed_over: AtomicBool::new(false),
        }
    }

    /// Entries this delta can hold before it must grow.
    pub(crate) fn room(&self) -> usize {
        self.slots.len() / 2
    }

    /// Heap bytes of the slot array and the struct, for the reclamation ledger.
    pub(crate) fn bytes(&self) -> usize {
        size_of::<Self>() + self.slots.len() * size_of::<Slot<K, V>>()
    }

    #[inline]
    fn probe_start(&self, hash: u64) -> usize {
        // The high bits: hashbrown uses the low ones for its own index, and a key's
        // delta position should not correlate with its read-table position.
        (hash >> 32) as usize & self.mask
    }

    /// Finds `key`'s entry. Lock-free; the returned reference lives as long as
    /// the borrow of this delta (see [`Entries`] for why).
    #[inline]
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<&Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut index = self.probe_start(hash);
        loop {
            let slot = &self.slots[index];
            let ptr = slot.load();
            if ptr.is_null() {
                return None;
            }
            // Relaxed: the Acquire load of `entry` above ordered this after the
            // store of the hash, which is never changed.
            if slot.hash.load(Ordering::Relaxed) == hash {
                // SAFETY: a non-null slot's entry is alive while this delta is
                // borrowed (see `Entries`).
                let entry = unsafe { &*ptr };
                if entry.key().borrow() == key {
                    return Some(entry);
                }
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Adds `entry`. Only the single writer (holding the map's lock) calls this,
    /// only for a key not yet in the delta, and only while `len < room()`.
    pub(crate) fn insert(&self, entry: Arc<Entry<K, V>>) {
        let mut index = self.probe_start(entry.hash);
        while !self.slots[index].load_locked().is_null() {
            index = (index + 1) & self.mask;
        }
        let slot = &self.slots[index];
        // Relaxed: published by the Release store of the pointer below.
        slot.hash.store(entry.hash, Ordering::Relaxed);
        // Release: publishes the entry's initialization and the slot's hash to
        // lock-free readers.
        #[cfg(loom_mutant)] // mutant: publish the delta slot without Release
        if crate::reclaim::mutant("delta_insert_relaxed") {
            return slot
                .entry
                .store(Arc::into_raw(entry).cast_mut(), Ordering::Relaxed);
        }
        slot.entry
            .store(Arc::into_raw(entry).cast_mut(), Ordering::Release);
    }

    /// The entries, in slot order. Lock-free; sees every entry inserted before the
    /// call, and maybe some inserted during it.
    pub(crate) fn iter(&self) -> Entries<'_, K, V> {
        Entries {
            slots: self.slots.iter(),
        }
    }

    /// This delta's references, moved out: the same pointers, no reference-count
    /// traffic (a promotion of `n` entries would otherwise pay `n` atomic
    /// increments on cold cache lines, and `n` decrements when the old root goes).
    ///
    /// # Safety
    ///
    /// The caller holds the map's lock, calls this once per delta, and before
    /// dropping any of the returned references (or letting a panic drop them)
    /// calls [`hand_over`](Self::hand_over), which makes this delta give up its
    /// own claim; until then it must treat them as borrowed (`ManuallyDrop`).
    pub(crate) unsafe fn take_entries(&self) -> impl Iterator<Item = Arc<Entry<K, V>>> + '_ {
        self.slots.iter().filter_map(|slot| {
            let ptr = slot.load_locked();
            // SAFETY: the slot holds a strong reference (`Arc::into_raw`), which the
            // caller takes over once, per this function's contract.
            (!ptr.is_null()).then(|| unsafe { Arc::from_raw(ptr) })
        })
    }

    /// Gives up this delta's references after [`take_entries`](Self::take_entries)
    /// moved them into a newer structure: dropping it then releases none.
    pub(crate) fn hand_over(&self) {
        // Relaxed: set under the lock; read only by `drop`, which runs after the
        // reclaimer's grace period (or with the map exclusively borrowed), ordered
        // after this by the retirement.
        self.handed_over.store(true, Ordering::Relaxed);
    }

    /// A delta with room for `len` entries that takes over this one's entries
    /// (writer only); this one then owns none.
    pub(crate) fn grown(&self, len: usize) -> Self {
        // Not dropped on a panic before the hand-over: the references would be
        // released twice (once here, once with this delta).
        let grown = ManuallyDrop::new(Delta::with_room_for(len));
        // SAFETY: lock held (our caller's contract: "writer only"); handed over
        // below before `grown` can drop anything.
        for entry in unsafe { self.take_entries() } {
            #[cfg(loom_mutant)] // mutant: the grown delta leaves out the first entry
            if crate::reclaim::mutant("grow_drops_entry") && grown.iter().next().is_none() {
                // Leaked: simply not copied.
                core::mem::forget(entry);
                continue;
            }
            grown.insert(entry);
        }
        self.hand_over();
        ManuallyDrop::into_inner(grown)
    }
}

impl<K, V> Drop for Delta<K, V> {
    fn drop(&mut self) {
        // Relaxed: see `hand_over`.
        if self.handed_over.load(Ordering::Relaxed) {
            return;
        }
        for slot in self.slots.iter() {
            // Exclusive access (a delta is dropped after its grace period or with
            // the map exclusively borrowed): the lock holder's load will do.
            let ptr = slot.load_locked();
            if !ptr.is_null() {
                // SAFETY: the slot's strong reference, released once.
                drop(unsafe { Arc::from_raw(ptr) });
            }
        }
    }
}

/// The entries of a [`Delta`], from [`Delta::iter`].
///
/// An entry reached through a delta borrowed for `'d` is alive for `'d`: the
/// delta, or the newer structure its references were handed over to, holds a
/// strong reference; that structure is the current root's or was retired after
/// the delta was reached, so the guard that keeps the delta alive keeps it too.
pub(crate) struct Entries<'d, K, V> {
    slots: core::slice::Iter<'d, Slot<K, V>>,
}

impl<'d, K, V> Iterator for Entries<'d, K, V> {
    type Item = &'d Entry<K, V>;

    fn next(&mut self) -> Option<Self::Item> {
        for slot in self.slots.by_ref() {
            let ptr = slot.load();
            if !ptr.is_null() {
                // SAFETY: alive for 'd (see `Entries`).
                return Some(unsafe { &*ptr });
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.slots.len()))
    }
}
