//! The delta: the keys added since the last promotion, readable and writable
//! without a lock.
//!
//! An insert-only open-addressing table of boxed [`Slot`]s (*nodes*) with linear
//! probing. Each bucket keeps its node's hash beside the pointer, in the same
//! cache line, so a probe compares hashes without touching the nodes it passes: a
//! lookup of an absent key reads no node at all.
//!
//! A bucket is *empty* (null), *full* (a node) or *closed*, and only ever goes
//! from empty to one of the others. Inserters fill empty buckets by CAS, with no
//! lock: each probes its key's path and CASes the first empty bucket it meets.
//! A probe only passes full buckets, so a key present when a probe starts lies
//! before the first empty bucket on its path, and a key is never in two buckets:
//! an inserter that loses the CAS on a bucket compares the winner's key before it
//! moves on. Readers probe the same way with acquire loads and stop at the first
//! empty or closed bucket.
//!
//! The writer lock's holder *closes* a delta before it reads all of it — a
//! growth, which moves the nodes into a table twice the size, or a promotion,
//! which copies them into the next read table: it CASes every empty bucket to
//! closed, so no insert can land behind its back. An inserter that meets a closed
//! bucket waits for the lock and retries on what the holder published. The root
//! counts the delta's nodes, and an inserter reserves its place in that count
//! before its CAS, so the load factor stays at most 1/2, probe sequences stay
//! short and every probe ends at an empty or closed bucket.
//!
//! The bucket's hash is stored just after the CAS that publishes the node; until
//! then it reads 0, and a probe that sees 0 compares the node's key. Stored hashes
//! are never 0 (see [`tag`]).
//!
//! Nodes never move: a write to a key in the delta is a CAS on its node's link,
//! wherever the bucket array is. A delta owns its nodes until a grown delta takes
//! them over ([`Delta::grown`]); from then on it is only a set of pointers that
//! lock-free threads may still probe, and freeing it frees no node. The nodes of
//! the delta of a root replaced by a promotion are freed with that root.

use core::borrow::Borrow;
use core::mem::{size_of, ManuallyDrop};

use super::slot::Slot;
use crate::raw::mutant::mutant;
use crate::sync::{self, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Keys added since the last promotion.
pub(crate) struct Delta<K, V> {
    /// Each bucket holding a node owns it (`Box::into_raw`), unless `handed_over`.
    buckets: Box<[Bucket<K, V>]>,
    mask: usize,
    /// Set (under the lock) once a grown delta owns the nodes.
    handed_over: AtomicBool,
}

/// One bucket: a node pointer and a copy of its hash.
struct Bucket<K, V> {
    /// Null (empty), a node (full) or [`CLOSED`]; changed once, from null.
    node: AtomicPtr<Slot<K, V>>,
    /// The node's key's [`tag`], or 0 until its inserter has stored it.
    hash: AtomicU64,
}

/// The pointer of a closed bucket: address 1, never a node's (a node holds an
/// `AtomicPtr`, so it is at least pointer-aligned).
const CLOSED: usize = 1;
const _: () = assert!(align_of::<AtomicPtr<u8>>() > CLOSED);

/// What a bucket's pointer says.
#[inline]
fn is_node<K, V>(ptr: *mut Slot<K, V>) -> bool {
    ptr.addr() > CLOSED
}

/// The hash as stored in a bucket: never 0, which means "not stored yet". 0 and
/// 1 share a tag, and a probe position (see `probe_start`); a key whose tag is 1
/// is hashed again where its exact hash is needed ([`Nodes`] gives none).
#[inline]
fn tag(hash: u64) -> u64 {
    hash.max(1)
}

impl<K, V> Bucket<K, V> {
    /// The bucket's pointer, for a lock-free thread.
    #[inline]
    fn load(&self) -> *mut Slot<K, V> {
        // Acquire: pairs with the Release CAS in `Delta::insert`, so the node (its
        // key, value and link) is initialized.
        self.node.load(Ordering::Acquire)
    }

    /// The tag, after a load that found a node: 0 if its inserter has not stored
    /// it yet.
    #[inline]
    fn tag(&self) -> u64 {
        // Relaxed: written once, from 0, so any nonzero value read is the one;
        // a reader that sees 0 compares the key instead.
        self.hash.load(Ordering::Relaxed)
    }

    /// Whether `node` (this bucket's) may hold a key with `tag`: the bucket's tag
    /// matches, or is not stored yet.
    #[inline]
    fn may_hold(&self, tag: u64) -> bool {
        let stored = self.tag();
        stored == tag || stored == 0
    }

    /// The tag of this full bucket, waiting for its inserter to store it (the
    /// next step after its CAS). For the lock holder, which must place the node.
    fn settled_tag(&self) -> u64 {
        loop {
            match self.tag() {
                0 => sync::spin_wait(),
                tag => return tag,
            }
        }
    }
}

/// What [`Delta::insert`] did with a node.
pub(crate) enum Insert<'d, K, V> {
    /// The node is in; this is it, published.
    Inserted(&'d Slot<K, V>),
    /// Another node holds the key (an insert that won the race); the node back.
    Present(Box<Slot<K, V>>),
    /// The delta has no room: the lock holder must grow it (or promote).
    Full(Box<Slot<K, V>>),
    /// A growth or promotion closed the delta: wait for it and retry on what it
    /// publishes.
    Closed(Box<Slot<K, V>>),
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
        // delta position should not correlate with its read-table position. (So
        // 0 and 1, which share a tag, share a start.)
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
        let tag = tag(hash);
        let mut index = self.probe_start(hash);
        loop {
            let bucket = &self.buckets[index];
            let ptr = bucket.load();
            if !is_node(ptr) {
                return None;
            }
            if bucket.may_hold(tag) {
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

    /// Adds `node`, whose key has hash `hash`, unless the key is in the delta
    /// already. Lock-free. `len` is the count of this delta's nodes (kept by the
    /// root): the insert reserves its place in it first, and gives up with
    /// [`Insert::Full`] when the delta has no room.
    pub(crate) fn insert(
        &self,
        hash: u64,
        mut node: Box<Slot<K, V>>,
        len: &AtomicUsize,
    ) -> Insert<'_, K, V>
    where
        K: Eq,
    {
        let tag = tag(hash);
        let mut index = self.probe_start(hash);
        loop {
            let bucket = &self.buckets[index];
            let mut ptr = bucket.load();
            if ptr.is_null() {
                if !self.reserve(len) {
                    return Insert::Full(node);
                }
                let raw = Box::into_raw(node);
                // Release on success: publishes the node's initialization to the
                // threads that load the pointer. Acquire on failure: the winner's
                // node is read next.
                // (Mutant: publish the node without Release.)
                let order =
                    mutant!("delta_insert_relaxed" => Ordering::Relaxed, else Ordering::Release);
                match bucket
                    .node
                    .compare_exchange(ptr, raw, order, Ordering::Acquire)
                {
                    Ok(_) => {
                        // Relaxed: readers that see 0 compare the key instead.
                        bucket.hash.store(tag, Ordering::Relaxed);
                        // SAFETY: just published; owned by this delta, alive while
                        // it is borrowed.
                        return Insert::Inserted(unsafe { &*raw });
                    }
                    Err(found) => {
                        Self::unreserve(len);
                        // SAFETY: the CAS failed, so `raw` was never published:
                        // still this thread's own box.
                        node = unsafe { Box::from_raw(raw) };
                        ptr = found;
                    }
                }
            }
            if !is_node(ptr) {
                return Insert::Closed(node);
            }
            // (Mutant: a lost race on a bucket skips the winner's key, so the key
            // may go in twice.)
            let compare = mutant!("delta_insert_skips_winner" => false, else true);
            if compare && bucket.may_hold(tag) {
                // SAFETY: a published node, alive while this delta is borrowed.
                let found = unsafe { &*ptr };
                if found.as_slot().key() == node.as_slot().key() {
                    return Insert::Present(node);
                }
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Reserves a place for one more node in `len`, if there is room.
    fn reserve(&self, len: &AtomicUsize) -> bool {
        // Relaxed: the count only bounds the fill (its read-modify-writes are
        // totally ordered whatever the ordering); publication is the CAS's job.
        let before = len.fetch_add(1, Ordering::Relaxed);
        if before < self.room() {
            return true;
        }
        Self::unreserve(len);
        false
    }

    /// Gives back a reservation whose CAS lost.
    fn unreserve(len: &AtomicUsize) {
        // Relaxed: see `reserve`.
        len.fetch_sub(1, Ordering::Relaxed);
    }

    /// Closes every empty bucket (lock holder only), so that no insert lands from
    /// now on, and returns the number of nodes, which are then all of them.
    pub(crate) fn close(&self) -> usize {
        let mut nodes = 0;
        for bucket in self.buckets.iter() {
            // (Mutant: a growth or promotion reads the delta without closing it,
            // and an insert racing it is lost.)
            let closed = if mutant!("delta_not_closed" => true, else false) {
                bucket.load()
            } else {
                // Relaxed on success: a closed bucket publishes nothing (the
                // threads that meet it take the lock, which orders them after this
                // holder). Acquire on failure: the node is read next.
                match bucket.node.compare_exchange(
                    core::ptr::null_mut(),
                    core::ptr::without_provenance_mut(CLOSED),
                    Ordering::Relaxed,
                    Ordering::Acquire,
                ) {
                    Ok(_) => continue,
                    Err(node) => node,
                }
            };
            nodes += usize::from(is_node(closed));
        }
        nodes
    }

    /// Opens the buckets [`close`](Self::close) closed, after a promotion failed
    /// (lock holder only).
    pub(crate) fn reopen(&self) {
        for bucket in self.buckets.iter() {
            // Relaxed, load and store: only the lock holder changes a closed
            // bucket, and inserters that met it retry after taking the lock, which
            // orders this store before their load.
            if bucket.node.load(Ordering::Relaxed).addr() == CLOSED {
                bucket.node.store(core::ptr::null_mut(), Ordering::Relaxed);
            }
        }
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
        is_node(ptr).then(|| unsafe { &*ptr })
    }

    /// The nodes, in bucket order, each with its hash if the bucket has its
    /// exact hash stored. Lock-free; sees every node inserted before the call,
    /// and maybe some inserted during it.
    pub(crate) fn nodes(&self) -> Nodes<'_, K, V> {
        Nodes {
            buckets: self.buckets.iter(),
        }
    }

    /// A delta with room for `room` keys (at least this one's nodes) that takes
    /// over this one's nodes (lock holder only): it closes this one first, which
    /// then owns none.
    pub(crate) fn grown(&self, room: usize) -> Self {
        // Not dropped on a panic (an allocation failure) before the hand-over: the
        // nodes would be freed twice, once here and once with this delta.
        let grown = ManuallyDrop::new(Delta::with_room_for(room));
        let nodes = self.close();
        debug_assert!(nodes <= grown.room());
        let mut skipped = false;
        for bucket in self.buckets.iter() {
            let node = bucket.load();
            if !is_node(node) {
                continue;
            }
            // (Mutant: the grown delta leaves out its first node, which leaks.)
            if !skipped && mutant!("grow_drops_node" => true, else false) {
                skipped = true;
                continue;
            }
            let tag = bucket.settled_tag();
            let index = grown.free_bucket(tag);
            // Relaxed: `grown` is not published yet; its publication (a Release
            // swap in `Root::replace_delta`) publishes these stores.
            grown.buckets[index].hash.store(tag, Ordering::Relaxed);
            grown.buckets[index].node.store(node, Ordering::Relaxed);
        }
        // Relaxed: set under the lock; read only by `drop`, which runs after the
        // reclaimer's grace period (or with the map exclusively borrowed), ordered
        // after this by the retirement.
        self.handed_over.store(true, Ordering::Relaxed);
        ManuallyDrop::into_inner(grown)
    }

    /// The first empty bucket on `hash`'s probe path, in a delta no other thread
    /// has seen yet.
    fn free_bucket(&self, hash: u64) -> usize {
        let mut index = self.probe_start(hash);
        // Relaxed: nobody else has this delta.
        while !self.buckets[index].node.load(Ordering::Relaxed).is_null() {
            index = (index + 1) & self.mask;
        }
        index
    }
}

impl<K, V> Drop for Delta<K, V> {
    fn drop(&mut self) {
        // Relaxed: `grown` set the flag before this delta was retired, and the
        // `Reclaim` contract's clause 3 (retire happens-before reclaim) orders
        // that before this drop; a map dropped with `&mut` is ordered by the
        // borrow.
        if self.handed_over.load(Ordering::Relaxed) {
            return;
        }
        for bucket in self.buckets.iter() {
            // Relaxed: exclusive access (a delta is dropped after its grace period
            // or with the map exclusively borrowed).
            let node = bucket.node.load(Ordering::Relaxed);
            if is_node(node) {
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
    /// A node, and its key's hash if its bucket holds it exactly (not while its
    /// inserter has yet to store it, nor for the keys that hash to 0 or 1).
    type Item = (Option<u64>, &'d Slot<K, V>);

    fn next(&mut self) -> Option<Self::Item> {
        for bucket in self.buckets.by_ref() {
            let ptr = bucket.load();
            if is_node(ptr) {
                let hash = Some(bucket.tag()).filter(|&tag| tag > 1);
                // SAFETY: alive for 'd (see `Nodes`).
                return Some((hash, unsafe { &*ptr }));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.buckets.len()))
    }
}
