//! Key types and hashers the lab is generic over, and the pre-built key table.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use clap::ValueEnum;

/// The key types of `--key-types`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum KeyType {
    /// `u64` keys spread over the whole range.
    U64,
    /// 21-byte `String` keys (`user:` and 16 hex digits), looked up by `&str`.
    String,
    /// `String` keys shaped like routes (`/svc/01234/route`), looked up by `&str`.
    Route,
}

impl KeyType {
    /// Name in the output.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::U64 => "u64",
            KeyType::String => "String",
            KeyType::Route => "route",
        }
    }
}

/// A key type of the lab: built from a key id once, before any timing starts.
pub trait LabKey:
    Hash + Eq + Ord + Clone + Debug + Send + Sync + 'static + Borrow<Self::Borrowed>
{
    /// What gets borrow (`str` for `String`, as a service looks up by `&str`).
    type Borrowed: Hash + Eq + Ord + ToOwned<Owned = Self> + ?Sized;
    /// The key for id `id` in `shape`; distinct ids give distinct keys.
    fn from_id(id: u64, seed: u64, shape: KeyType) -> Self;
    /// Calls `f` with key `idx` of a table built with `seed`, inside a timed loop.
    fn with_key<R>(table: &[Self], idx: usize, seed: u64, f: impl FnOnce(&Self) -> R) -> R;
    /// The form gets take.
    fn borrowed(&self) -> &Self::Borrowed;
}

impl LabKey for u64 {
    type Borrowed = u64;
    fn from_id(id: u64, seed: u64, _: KeyType) -> Self {
        // A bijection of the id: keys are scattered over the whole u64 range, as
        // hashes or random ids would be, and stay distinct.
        mix64(id ^ seed)
    }
    /// Recomputed (a few ALU operations) rather than loaded: a load from a
    /// multi-megabyte key table would add a cache miss to every operation of
    /// every map and dilute their differences.
    #[inline(always)]
    fn with_key<R>(_: &[Self], idx: usize, seed: u64, f: impl FnOnce(&Self) -> R) -> R {
        f(&mix64(idx as u64 ^ seed))
    }
    #[inline(always)]
    fn borrowed(&self) -> &u64 {
        self
    }
}

impl LabKey for String {
    type Borrowed = str;
    fn from_id(id: u64, seed: u64, shape: KeyType) -> Self {
        match shape {
            // A route table's paths: short, sharing a prefix and a suffix.
            KeyType::Route => format!("/svc/{id:05}/route"),
            // 21 bytes, like a short user or session key; always on the heap.
            _ => format!("user:{:016x}", mix64(id ^ seed)),
        }
    }
    /// Borrowed from the pre-built table, as a service borrows a key it holds.
    #[inline(always)]
    fn with_key<R>(table: &[Self], idx: usize, _: u64, f: impl FnOnce(&Self) -> R) -> R {
        f(&table[idx])
    }
    #[inline(always)]
    fn borrowed(&self) -> &str {
        self.as_str()
    }
}

/// SplitMix64's finalizer: a bijection on `u64`, so distinct ids give distinct,
/// scattered keys.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
    /// `len` keys of `shape`, ids `0..len`.
    pub fn build(len: usize, seed: u64, shape: KeyType) -> Self {
        KeyTable {
            keys: (0..len as u64)
                .map(|id| K::from_id(id, seed, shape))
                .collect(),
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

    /// An owned key `idx`: for `String`, the one allocation an owned key costs
    /// any user who inserts it.
    #[inline(always)]
    pub fn owned(&self, idx: usize) -> K {
        self.with(idx, K::clone)
    }
}
