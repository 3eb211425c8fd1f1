//! The delta: the keys added since the last promotion, readable without a lock.
//!
//! An insert-only open-addressing table of boxed [`Slot`]s (*nodes*) with linear
//! probing. Each bucket keeps its node's hash beside the pointer, in the same
//! cache line, so a probe compares hashes without touching the nodes it passes: a
//! lookup of an absent key reads no node at all.
//!
//! One writer at a time (the map's writer lock) fills empty buckets; readers probe
//! with acquire loads and stop at the first empty bucket. Buckets only ever go from
//! empty to full — a removed key's node stays, its link `REMOVED`, until the next
//! promotion starts an empty delta — so a key present when a reader starts probing
//! lies before the first empty bucket on its probe path, and the reader finds it.
//! Growth moves the node pointers into a table twice the size and publishes it
//! through the root; the old bucket array is retired. The load factor stays at
//! most 1/2, so probe sequences stay short and every probe ends at an empty bucket.
//!
//! Nodes never move: a write to a key in the delta is a CAS on its node's link,
//! wherever the bucket array is. A delta owns its nodes until a grown delta takes
//! them over ([`Delta::grown`]); from then on it is only a set of pointers that
//! lock-free readers may still probe, and freeing it frees no node. The nodes of
//! the delta of a root replaced by a promotion are freed with that root.

use core::borrow::Borrow;
use core::mem::{size_of, ManuallyDrop};

use super::slot::Slot;
use crate::raw::mutant::mutant;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// Keys added since the last promotion.
pub(crate) struct Delta<K, V> {
    /// Each non-null bucket owns its node (`Box::into_raw`), unless `handed_over`.
    buckets: Box<[Bucket<K, V>]>,
    mask: usize,
    /// Set (under the lock) once a grown delta owns the nodes.
    handed_over: AtomicBool,
}

/// One bucket: a node pointer and a copy of its hash.
struct Bucket<K, V> {
    /// Null until filled, then never changed (until the delta is dropped).
    node: AtomicPtr<Slot<K, V>>,
    /// The node's key's hash, stored before `node` is published.
    hash: AtomicU64,
}

impl<K, V> Bucket<K, V> {
    /// The node, for a lock-free reader.
    #[inline]
    fn load(&self) -> *mut Slot<K, V> {
        // Acquire: pairs with the Release in `Delta::insert`, so the node (its
        // key, value and link) and this bucket's `hash` are initialized.
        self.node.load(Ordering::Acquire)
    }

    /// The node, for the lock holder (the only writer of buckets).
    fn load_locked(&self) -> *mut Slot<K, V> {
        // Relaxed: only the lock holder writes buckets, and the lock orders writers.
        self.node.load(Ordering::Relaxed)
    }

    /// The hash, after a load of a non-null node.
    fn hash(&self) -> u64 {
        // Relaxed: the load of `node` ordered this after the store of the hash,
        // which is never changed.
        self.hash.load(Ordering::Relaxed)
    }
}

/// The smallest delta: a map with no new keys pays 8 buckets for it.
const MIN_BUCKETS: usize = 8;

impl<K, V> Delta<K, V> {
    /// An empty delta with room for `len` keys at load factor 1/2.
    pub(crate) fn with_room_for(len: usize) -> Self {
        let buckets = len
            .saturating_mul(2)
            .max(MIN_BUCKETS)
            .checked_next_power_of_two()
            .expect("delta capacity overflows usize");
        Delta {
            buckets: (0..buckets)
                .map(|_| Bucket {
                    node: AtomicPtr::new(core::ptr::null_mut()),
                    hash: AtomicU64::new(0),
                })
                .collect(),
            mask: buckets - 1,
            handed_over: AtomicBool::new(false),
        }
    }

    /// Keys this delta can hold before it must grow.
    pub(crate) fn room(&self) -> usize {
        self.buckets.len() / 2
    }

    /// Heap bytes of the bucket array and of `nodes` nodes, for the ledger.
    pub(crate) fn bytes(&self, nodes: usize) -> usize {
        size_of::<Self>()
            + self.buckets.len() * size_of::<Bucket<K, V>>()
            + nodes * size_of::<Slot<K, V>>()
    }

    #[inline]
    fn probe_start(&self, hash: u64) -> usize {
        // The high bits: hashbrown uses the low ones for its own index, and a key's
        // delta position should not correlate with its read-table position.
        (hash >> 32) as usize & self.mask
    }

    /// Finds `key`'s node. Lock-free; the node lives as long as the borrow of this
    /// delta (see [`Nodes`] for why).
    #[inline]
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<&Slot<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut index = self.probe_start(hash);
        loop {
            let bucket = &self.buckets[index];
            let ptr = bucket.load();
            if ptr.is_null() {
                return None;
            }
            if bucket.hash() == hash {
                // SAFETY: a published node is alive while this delta is borrowed
                // (see `Nodes`).
                let node = unsafe { &*ptr };
                if node.as_slot().key().borrow() == key {
                    return Some(node);
                }
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Adds `node` for a key not in the delta, and returns it. Only the writer
    /// (holding the map's lock) calls this, and only while `len < room()`.
    pub(crate) fn insert(&self, hash: u64, node: Box<Slot<K, V>>) -> &Slot<K, V> {
        let mut index = self.probe_start(hash);
        while !self.buckets[index].load_locked().is_null() {
            index = (index + 1) & self.mask;
        }
        let bucket = &self.buckets[index];
        // Relaxed: published by the Release store of the pointer below.
        bucket.hash.store(hash, Ordering::Relaxed);
        let node = Box::into_raw(node);
        // Release: publishes the node's initialization and the bucket's hash to
        // lock-free readers.
        // (Mutant: publish the node without Release.)
        let order = mutant!("delta_insert_relaxed" => Ordering::Relaxed, else Ordering::Release);
        bucket.node.store(node, order);
        // SAFETY: just published; owned by this delta, alive while it is borrowed.
        unsafe { &*node }
    }

    /// Buckets, filled or not (for splitting the delta among threads).
    #[cfg(feature = "rayon")]
    pub(crate) fn num_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// The node of bucket `index`, if filled. Lock-free, as [`find`](Self::find).
    #[cfg(feature = "rayon")]
    pub(crate) fn node_at(&self, index: usize) -> Option<&Slot<K, V>> {
        let ptr = self.buckets[index].load();
        // SAFETY: a published node is alive while this delta is borrowed (see
        // `Nodes`).
        (!ptr.is_null()).then(|| unsafe { &*ptr })
    }

    /// The nodes with their hashes, in bucket order. Lock-free; sees every node
    /// inserted before the call, and maybe some inserted during it.
    pub(crate) fn nodes(&self) -> Nodes<'_, K, V> {
        Nodes {
            buckets: self.buckets.iter(),
        }
    }

    /// A delta with room for `len` keys that takes over this one's nodes (writer
    /// only); this one then owns none.
    pub(crate) fn grown(&self, len: usize) -> Self {
        // Not dropped on a panic (an allocation failure) before the hand-over: the
        // nodes would be freed twice, once here and once with this delta.
        let grown = ManuallyDrop::new(Delta::with_room_for(len));
        let mut skipped = false;
        for bucket in self.buckets.iter() {
            let node = bucket.load_locked();
            if node.is_null() {
                continue;
            }
            // (Mutant: the grown delta leaves out its first node, which leaks.)
            if !skipped && mutant!("grow_drops_node" => true, else false) {
                skipped = true;
                continue;
            }
            let index = grown.free_bucket(bucket.hash());
            // Relaxed: `grown` is not published yet; its publication (a Release
            // swap in `Root::replace_delta`) publishes these stores.
            grown.buckets[index]
                .hash
                .store(bucket.hash(), Ordering::Relaxed);
            grown.buckets[index].node.store(node, Ordering::Relaxed);
        }
        // Relaxed: set under the lock; read only by `drop`, which runs after the
        // reclaimer's grace period (or with the map exclusively borrowed), ordered
        // after this by the retirement.
        self.handed_over.store(true, Ordering::Relaxed);
        ManuallyDrop::into_inner(grown)
    }

    /// The first empty bucket on `hash`'s probe path (writer only).
    fn free_bucket(&self, hash: u64) -> usize {
        let mut index = self.probe_start(hash);
        while !self.buckets[index].load_locked().is_null() {
            index = (index + 1) & self.mask;
        }
        index
    }
}

impl<K, V> Drop for Delta<K, V> {
    fn drop(&mut self) {
        // Relaxed: see `grown`.
        if self.handed_over.load(Ordering::Relaxed) {
            return;
        }
        for bucket in self.buckets.iter() {
            // Exclusive access (a delta is dropped after its grace period or with
            // the map exclusively borrowed): the lock holder's load will do.
            let node = bucket.load_locked();
            if !node.is_null() {
                // SAFETY: the bucket owns its node; freed once, here. The slot's
                // own drop contains its destructors' panics.
                drop(unsafe { Box::from_raw(node) });
            }
        }
    }
}

/// The nodes of a [`Delta`] with their hashes, from [`Delta::nodes`].
///
/// A node reached through a delta borrowed for `'d` is alive for `'d`: the delta,
/// or the grown delta its nodes were handed to, owns it; that delta belongs to the
/// current root or to one retired after the delta was reached, so the guard that
/// keeps this delta alive keeps the node too.
pub(crate) struct Nodes<'d, K, V> {
    buckets: core::slice::Iter<'d, Bucket<K, V>>,
}

impl<'d, K, V> Iterator for Nodes<'d, K, V> {
    type Item = (u64, &'d Slot<K, V>);

    fn next(&mut self) -> Option<Self::Item> {
        for bucket in self.buckets.by_ref() {
            let ptr = bucket.load();
            if !ptr.is_null() {
                // SAFETY: alive for 'd (see `Nodes`).
                return Some((bucket.hash(), unsafe { &*ptr }));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.buckets.len()))
    }
}
