//! Key types and hashers the lab is generic over, and the pre-built key table.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use crate::rng::mix64;

/// A key type of the lab: built from a key id once, before any timing starts.
pub trait LabKey: Hash + Eq + Ord + Clone + Debug + Send + Sync + 'static {
    /// Name in the output (`u64`, `String`).
    const NAME: &'static str;
    /// The key for id `id`; distinct ids give distinct keys.
    fn from_id(id: u64, seed: u64) -> Self;
    /// Calls `f` with key `idx` of a table built with `seed`, inside a timed loop.
    fn with_key<R>(table: &[Self], idx: usize, seed: u64, f: impl FnOnce(&Self) -> R) -> R;
    /// An owned copy of key `idx` of a table built with `seed` (to insert it).
    fn owned(table: &[Self], idx: usize, seed: u64) -> Self;
}

impl LabKey for u64 {
    const NAME: &'static str = "u64";
    fn from_id(id: u64, seed: u64) -> Self {
        // A bijection of the id: keys are scattered over the whole u64 range, as
        // hashes or random ids would be, and stay distinct.
        mix64(id ^ seed)
    }
    /// Recomputed (a few ALU operations) rather than loaded: a load from a
    /// multi-megabyte key table would add a cache miss to every operation of
    /// every map and dilute their differences.
    #[inline(always)]
    fn with_key<R>(_: &[Self], idx: usize, seed: u64, f: impl FnOnce(&Self) -> R) -> R {
        f(&Self::from_id(idx as u64, seed))
    }
    #[inline(always)]
    fn owned(_: &[Self], idx: usize, seed: u64) -> Self {
        Self::from_id(idx as u64, seed)
    }
}

impl LabKey for String {
    const NAME: &'static str = "String";
    fn from_id(id: u64, seed: u64) -> Self {
        // 21 bytes, like a short user, session or route key; always on the heap.
        format!("user:{:016x}", mix64(id ^ seed))
    }
    /// Borrowed from the pre-built table, as a service borrows a key it holds.
    #[inline(always)]
    fn with_key<R>(table: &[Self], idx: usize, _: u64, f: impl FnOnce(&Self) -> R) -> R {
        f(&table[idx])
    }
    /// A clone: the one allocation an owned `String` key costs any user.
    #[inline(always)]
    fn owned(table: &[Self], idx: usize, _: u64) -> Self {
        table[idx].clone()
    }
}

/// A hasher every map in a run is built with.
pub trait LabHasher: BuildHasher + Clone + Default + Send + Sync + 'static {
    /// Name in the output.
    const NAME: &'static str;
}

impl LabHasher for std::collections::hash_map::RandomState {
    const NAME: &'static str = "std RandomState (SipHash-1-3)";
}

impl LabHasher for foldhash::fast::RandomState {
    const NAME: &'static str = "foldhash::fast::RandomState";
}

/// Every key a workload cell can touch, built before the cell runs: the shared
/// universe first, then one region per thread (see `workloads::Layout`).
pub struct KeyTable<K> {
    keys: Vec<K>,
    seed: u64,
}

impl<K: LabKey> KeyTable<K> {
    /// `len` keys, ids `0..len`.
    pub fn build(len: usize, seed: u64) -> Self {
        KeyTable {
            keys: (0..len as u64).map(|id| K::from_id(id, seed)).collect(),
            seed,
        }
    }

    /// All keys, indexed by key index.
    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    /// Calls `f` with key `idx` (see [`LabKey::with_key`]).
    #[inline(always)]
    pub fn with<R>(&self, idx: usize, f: impl FnOnce(&K) -> R) -> R {
        K::with_key(&self.keys, idx, self.seed, f)
    }

    /// An owned key `idx` (see [`LabKey::owned`]).
    #[inline(always)]
    pub fn owned(&self, idx: usize) -> K {
        K::owned(&self.keys, idx, self.seed)
    }
}
