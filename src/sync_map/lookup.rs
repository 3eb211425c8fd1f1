//! The read path of a [`SyncMap`]: `get` and `get_key_value`, for a scheme's
//! guard ([`Pinned`](super::Pinned)) or an owned guard's hold
//! ([`OwnedPinned`](super::OwnedPinned)).
//!
//! A hit on a key not written since the last promotion is
//! [`get_in`](SyncMap::get_in) → [`ReadTable::lookup`]: one Acquire load of the
//! root, one hash, one probe, one bit, and the value from the bucket the probe
//! found. No lock, no shared write. A key written since is read through its
//! link, inline too: under a skewed load the hot keys are the ones overwritten,
//! so that path is hot as well. A key added since (through the delta) and a
//! miss leave the hot function for a cold one. Reads that took an off-path load
//! count toward the promotion rule, one in a sample.
//!
//! [`ReadTable::lookup`]: super::read::ReadTable::lookup

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use super::policy::OffPath;
use super::read::{Bucket, Lookup};
use super::root::Root;
use super::slot::link;
use super::SyncMap;
use crate::reclaim::{Protect, Reclaim};

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// `key`'s value, protected by `guard`.
    // Always inlined, like `HashMap::get`: a call, with the hasher's state
    // spilled around it, would cost a third as much again. Not written as
    // `get_key_value_in(..).map(..)`: its touched path finds the key too, which
    // costs two instructions per hit here (callgrind).
    #[inline(always)]
    pub(crate) fn get_in<'g, P, Q>(&self, guard: &'g P, key: &Q) -> Option<&'g V>
    where
        P: Protect,
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // The root before the hash: loaded after, it has to be kept alive
        // around the hasher's out-of-line call, and the shuffling costs the
        // probe loop 5 instructions per hit (callgrind).
        let root = self.root(guard);
        let hash = self.hash(key);
        match root.read.lookup(hash, key) {
            // Not written since the table was built: the value is in the bucket.
            Lookup::Untouched(_, value) => Some(value),
            // SAFETY: `guard` protects `root` and its cells for 'g.
            Lookup::Touched(bucket) => unsafe { self.get_touched(root, bucket) },
            Lookup::Missing => {
                // SAFETY: as above.
                unsafe { self.get_from_delta(guard, root, hash, key) }.map(|(_, value)| value)
            }
        }
    }

    /// `key` and its value, protected by `guard`.
    #[inline]
    pub(crate) fn get_key_value_in<'g, P, Q>(&self, guard: &'g P, key: &Q) -> Option<(&'g K, &'g V)>
    where
        P: Protect,
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // The root before the hash, as in `get_in`.
        let root = self.root(guard);
        let hash = self.hash(key);
        match root.read.lookup(hash, key) {
            Lookup::Untouched(key, value) => Some((key, value)),
            Lookup::Touched(bucket) => {
                let key = root.read.touched(bucket).key();
                // SAFETY: `guard` protects `root` and its cells for 'g.
                unsafe { self.get_touched(root, bucket) }.map(|value| (key, value))
            }
            // SAFETY: as above.
            Lookup::Missing => unsafe { self.get_from_delta(guard, root, hash, key) },
        }
    }

    /// A read-table key written since the table was built: its value is in a
    /// cell, or the key is removed (or still inline, if only a promotion's seal
    /// changed the link).
    ///
    /// # Safety
    ///
    /// The caller protects `root`, and the cells its links point to, for 'g.
    // Inlined, not cold: with Zipf-distributed keys half the gets of the lab's
    // read-heavy mix come here; inlining it saved 11 of 210 instructions per
    // operation there (callgrind), and cost an untouched hit nothing.
    #[inline]
    unsafe fn get_touched<'g>(&self, root: &'g Root<K, V>, bucket: Bucket) -> Option<&'g V> {
        let slot = root.read.touched(bucket);
        let current = slot.load();
        if link::cell(current).is_some() {
            self.note_off_path_read(root, OffPath::Cell);
        }
        // SAFETY: the caller's contract.
        unsafe { slot.resolve(current) }
    }

    /// A key the read table lacks: added since the last promotion, or absent.
    /// Probes the delta of the root whose read table missed (a newer root's read
    /// table may hold the key instead).
    ///
    /// # Safety
    ///
    /// As for [`get_touched`](Self::get_touched); `guard` is the caller's.
    #[cold]
    #[inline(never)]
    unsafe fn get_from_delta<'g, P, Q>(
        &self,
        guard: &'g P,
        root: &'g Root<K, V>,
        hash: u64,
        key: &Q,
    ) -> Option<(&'g K, &'g V)>
    where
        P: Protect,
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let node = root.delta(guard).find(hash, key)?.as_slot();
        self.note_off_path_read(root, OffPath::Delta);
        // SAFETY: the caller's contract.
        unsafe { node.get() }.map(|value| (node.key(), value))
    }
}

/// The live keys of a root, split among rayon's threads by bucket ranges: the
/// read table's, then the delta's.
///
/// # Safety
///
/// `root` and `delta` (`root`'s) and the cells their slots link are protected
/// for 'g, on every thread, until the iterator is consumed (a `Pinned`'s guard,
/// borrowed for that long).
#[cfg(feature = "rayon")]
pub(crate) unsafe fn par_slots<'g, K: Sync, V: Sync>(
    root: &'g Root<K, V>,
    delta: &'g super::delta::Delta<K, V>,
) -> impl rayon::iter::ParallelIterator<Item = (&'g K, &'g V)> + 'g {
    use rayon::iter::{IntoParallelIterator, ParallelIterator};
    let read = &root.read;
    let read_slots = (0..read.num_buckets())
        .into_par_iter()
        .filter_map(move |index| read.slot_at(index));
    let delta_slots = (0..delta.num_buckets())
        .into_par_iter()
        .filter_map(move |index| delta.node_at(index).map(|node| node.as_slot()));
    read_slots.chain(delta_slots).filter_map(|slot| {
        // SAFETY: the caller's contract.
        unsafe { slot.get() }.map(|value| (slot.key(), value))
    })
}
