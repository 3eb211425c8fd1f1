//! The read table: every key as of the last promotion, with its value, inline in
//! a `hashbrown` bucket — the same bytes a `HashMap<K, V>` would hold — and, beside
//! the buckets, one link per bucket and one *touched* bit per bucket.
//!
//! The buckets never change once the table is published. A write to a key goes
//! to its link (see `slot`), then sets the key's touched bit. A reader that finds
//! the bit clear knows the link is still null — the bucket's own value is current
//! — and never loads the link: a hit reads the control bytes and the bucket, as
//! `HashMap::get` does, plus one bit of a bitmap that is 1/128 of the buckets'
//! size (for `u64` keys and values) and stays in cache. Only keys written since
//! the last promotion take the link's dependent load.
//!
//! The links live apart from the buckets, rather than in them, to keep each bucket
//! as small as the key and value alone: a `u64 → u64` bucket stays 16 bytes (24
//! with a link), so the table needs as many cache lines as a `HashMap`'s, and a
//! bucket never straddles two.
//!
//! A bit is set at most once per table (links never return to null), by the
//! writer whose CAS left the link non-null, after that CAS and before it returns;
//! a write therefore takes effect for readers when the bit is set, or at its CAS if
//! the bit was set already. Readers load the bitmap word with Acquire, pairing with
//! the Release of the `fetch_or`, so a reader that sees the bit also sees the CAS
//! before it.

use core::borrow::Borrow;
use core::mem::{size_of, ManuallyDrop};

use hashbrown::{hash_table, HashTable};

use super::slot::{link, SlotRef};
use crate::raw::cell::{self, drop_contained};
use crate::sync::{AtomicPtr, AtomicU64, Ordering};

/// A key and the value it had when the table was built.
struct Entry<K, V> {
    /// Dropped by hand in `ReadTable::drop`, each destructor's panic contained.
    key: ManuallyDrop<K>,
    value: ManuallyDrop<V>,
}

/// The keys as of the last promotion; see the [module docs](self).
pub(crate) struct ReadTable<K, V> {
    entries: HashTable<Entry<K, V>>,
    /// One per bucket of `entries` (`links.len() == entries.num_buckets()`): null
    /// (the bucket's value is current), removed, or a cell owned by the table;
    /// maybe sealed.
    links: Box<[AtomicPtr<V>]>,
    /// Bit `i % 64` of word `i / 64`: bucket `i`'s link may be non-null.
    touched: Box<[AtomicU64]>,
}

/// What [`ReadTable::lookup`] found.
pub(crate) enum Lookup<'a, K, V> {
    /// The key, with its value in the bucket, current: no write since the
    /// table was published.
    Untouched(&'a K, &'a V),
    /// The key, written since: its link says where the value is.
    Touched(Bucket),
    /// Not in the read table.
    Missing,
}

/// An occupied bucket of one read table, found by [`ReadTable::lookup`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket(usize);

/// A read table being built by a promotion: entries only, all links null.
pub(crate) struct Builder<K, V> {
    entries: HashTable<Entry<K, V>>,
}

impl<K, V> Builder<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Builder {
            entries: HashTable::with_capacity(capacity),
        }
    }

    /// Adds `key` (whose hash `hasher` recomputes if the table must grow); the
    /// caller knows it is not there yet.
    pub(crate) fn insert(&mut self, hash: u64, key: K, value: V, hasher: impl Fn(&K) -> u64) {
        let entry = Entry {
            key: ManuallyDrop::new(key),
            value: ManuallyDrop::new(value),
        };
        self.entries
            .insert_unique(hash, entry, |entry| hasher(&entry.key));
    }

    /// The table, every link null and every bit clear.
    pub(crate) fn finish(mut self) -> ReadTable<K, V> {
        // Taken out, so that dropping `self` drops no entry.
        let entries = core::mem::take(&mut self.entries);
        let buckets = entries.num_buckets();
        ReadTable {
            entries,
            links: (0..buckets)
                .map(|_| AtomicPtr::new(core::ptr::null_mut()))
                .collect(),
            touched: (0..buckets.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl<K, V> Drop for Builder<K, V> {
    /// A promotion abandoned half-way (a panicking `Clone` or `Hash`): drops the
    /// copies made so far, each destructor's panic contained.
    fn drop(&mut self) {
        for entry in self.entries.iter_mut() {
            drop_entry(entry);
        }
    }
}

/// Drops an entry's key and value in place, containing their panics.
fn drop_entry<K, V>(entry: &mut Entry<K, V>) {
    // SAFETY: each entry is dropped once (by the table or builder that owns it,
    // in its own drop), and never used again.
    drop_contained(|| unsafe { ManuallyDrop::drop(&mut entry.key) });
    // SAFETY: as above.
    drop_contained(|| unsafe { ManuallyDrop::drop(&mut entry.value) });
}

impl<K, V> ReadTable<K, V> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Builder::with_capacity(0).finish()
    }

    /// Keys in the table, present or removed.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// What a read finds for `key`: the read path's probe and one bit, with
    /// nothing built that the common case (an untouched hit) does not need.
    #[inline(always)]
    pub(crate) fn lookup<Q>(&self, hash: u64, key: &Q) -> Lookup<'_, K, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(index) = self
            .entries
            .find_bucket_index(hash, |entry| (*entry.key).borrow() == key)
        else {
            return Lookup::Missing;
        };
        // SAFETY: `find_bucket_index` returns an occupied bucket; `touched` has
        // one bit per bucket.
        let (entry, word) = unsafe {
            (
                self.entries.get_bucket_unchecked(index),
                self.touched.get_unchecked(index / 64),
            )
        };
        // Acquire: see `SlotRef::untouched_value`.
        if word.load(Ordering::Acquire) & (1 << (index % 64)) == 0 {
            Lookup::Untouched(&entry.key, &entry.value)
        } else {
            Lookup::Touched(Bucket(index))
        }
    }

    /// The slot of a bucket [`lookup`](Self::lookup) found touched.
    pub(crate) fn touched(&self, bucket: Bucket) -> SlotRef<'_, K, V> {
        // SAFETY: `Bucket`s come from `lookup`, on this table (the caller's
        // root), so the bucket is occupied.
        unsafe { self.slot(bucket.0) }
    }

    /// `key`'s slot.
    #[inline(always)]
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<SlotRef<'_, K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let index = self
            .entries
            .find_bucket_index(hash, |entry| (*entry.key).borrow() == key)?;
        // SAFETY: `find_bucket_index` returns the index of an occupied bucket.
        Some(unsafe { self.slot(index) })
    }

    /// The slot of occupied bucket `index`.
    ///
    /// # Safety
    ///
    /// `index` is an occupied bucket of `entries`.
    #[inline(always)]
    unsafe fn slot(&self, index: usize) -> SlotRef<'_, K, V> {
        // SAFETY: occupied (the caller's contract); `links` has one element per
        // bucket and `touched` one bit per bucket, so both are in bounds.
        unsafe {
            let entry = self.entries.get_bucket_unchecked(index);
            SlotRef::new(
                &entry.key,
                &entry.value,
                self.links.get_unchecked(index),
                Some((self.touched.get_unchecked(index / 64), 1 << (index % 64))),
            )
        }
    }

    /// Buckets, occupied or not (for splitting the table among threads).
    #[cfg(feature = "rayon")]
    pub(crate) fn num_buckets(&self) -> usize {
        self.entries.num_buckets()
    }

    /// The slot of bucket `index`, if occupied.
    #[cfg(feature = "rayon")]
    pub(crate) fn slot_at(&self, index: usize) -> Option<SlotRef<'_, K, V>> {
        self.entries.get_bucket(index)?;
        // SAFETY: just checked occupied.
        Some(unsafe { self.slot(index) })
    }

    /// Every slot, in bucket order (the same order on every call).
    pub(crate) fn slots(&self) -> Slots<'_, K, V> {
        Slots {
            table: self,
            buckets: self.entries.iter_buckets(),
        }
    }

    /// Heap bytes of the buckets, links and bitmap, for the reclamation ledger.
    pub(crate) fn bytes(&self) -> usize {
        self.entries.allocation_size()
            + self.links.len() * size_of::<AtomicPtr<V>>()
            + self.touched.len() * size_of::<AtomicU64>()
    }
}

/// The slots of a [`ReadTable`], from [`ReadTable::slots`].
pub(crate) struct Slots<'a, K, V> {
    table: &'a ReadTable<K, V>,
    buckets: hash_table::IterBuckets<'a, Entry<K, V>>,
}

impl<'a, K, V> Iterator for Slots<'a, K, V> {
    type Item = SlotRef<'a, K, V>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let index = self.buckets.next()?;
        // SAFETY: `iter_buckets` yields occupied buckets.
        Some(unsafe { self.table.slot(index) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.buckets.size_hint()
    }
}

impl<K, V> Drop for ReadTable<K, V> {
    /// Drops every key, value and linked cell. A table is dropped after its grace
    /// period, or with the map exclusively borrowed: nobody can read it.
    fn drop(&mut self) {
        for entry in self.entries.iter_mut() {
            drop_entry(entry);
        }
        for link in self.links.iter() {
            // Relaxed: exclusive access (loom's atomics have no `get_mut`).
            if let Some(cell) = link::cell(link.load(Ordering::Relaxed)) {
                // SAFETY: a linked cell is owned by its table; dropped once, here.
                drop_contained(|| unsafe { cell::drop_raw(cell) });
            }
        }
    }
}
