//! [`SyncMap`]: Go's `sync.Map` idea — an immutable read table, a side table for
//! new keys, promotion by a counter — with reads that never lock.
//!
//! Module map: `entry` (the per-key value slot and its state machine), `value`
//! (value cells and slot markers), `table` (the shared-entry hash table), `delta`
//! (the lock-free table of keys added since the last promotion), `root` (read
//! table + delta behind one published pointer), `protocol` (the algorithm),
//! `garbage` (retiring what the protocol unlinks), `pinned` (the guarded public
//! API), `iter`. The classic protocol, Go's exactly, is in `crate::classic` and
//! shares `entry`, `value`, `table` and `garbage`.

mod delta;
pub(crate) mod entry;
pub(crate) mod garbage;
mod iter;
mod pinned;
mod protocol;
mod root;
pub(crate) mod table;
pub(crate) mod value;

#[cfg(test)]
mod tests;

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::marker::PhantomData;
use std::collections::hash_map::RandomState;

use crossbeam_utils::CachePadded;

use delta::Delta;
pub use iter::Iter;
pub use pinned::{CompareExchangeError, LoadOrStore, Pinned};
use root::{Root, RootPtr};
use table::Table;

use crate::reclaim::{DefaultReclaim, Ledger, Reclaim};
use crate::stats::{Counters, Stats};
use crate::sync::{Arc, AtomicBool, AtomicIsize, AtomicUsize, Mutex, Ordering};

/// A concurrent hash map for read-mostly workloads: Go's `sync.Map` idea, with
/// reads that never lock.
///
/// Reads are lock-free and wait-free: a lookup pins the reclaimer (or reuses the
/// caller's [`Pinned`] guard), loads the published root, hashes once and probes
/// the immutable read table — and, on a miss, the *delta* of keys added since the
/// last promotion, itself a lock-free table. No lock, no reference count; the only
/// shared write on the read path is a sampled counter (one delta hit in 16) that
/// decides when to merge the delta into the read table.
///
/// Updates and removes of existing keys are one compare-and-swap on the key's
/// entry, wherever it lives. A new key takes a mutex (one writer at a time adds to
/// the delta). Promotion merges the read table and the delta into a fresh read
/// table, dropping removed keys, when delta-served reads reach four per key of
/// the map, when the delta is full and holds half as many keys as it, when removed
/// keys reach half of the map, or on [`promote`](SyncMap::promote). Each costs
/// O(len) and follows O(len) operations, so it is amortized O(1).
///
/// It suits caches and tables with a mostly stable key set. For tables rewritten
/// as a whole, with consistent snapshots, see the crate docs on choosing a map.
///
/// # Guards
///
/// Methods that hand out references live on [`Pinned`], obtained from
/// [`pin`](SyncMap::pin); references stay valid while it lives, even if the entry
/// is overwritten or removed meanwhile. A `Pinned` is not `Send`: in async code,
/// drop it before an `.await`, or use the guard-free methods on `SyncMap` that
/// return owned values ([`get_cloned`](SyncMap::get_cloned),
/// [`insert`](SyncMap::insert), [`remove`](SyncMap::remove), …). Holding a guard
/// for long delays the freeing of every retired value in the process (with the
/// default crossbeam-epoch backend).
///
/// # Consistency
///
/// Each operation on one key is linearizable. [`len`](SyncMap::len) is exact when
/// no writer runs. Iteration sees every key present for its whole duration exactly
/// once and is not a snapshot (use `SnapshotMap` for that).
///
/// # Memory
///
/// Each key is one entry holding the key, its hash and the value it was inserted
/// with, inline; a value that replaces it gets a heap cell of its own, and the
/// entry's inline storage stays (dead, its value dropped) until the entry goes. So
/// an overwritten key costs `size_of::<V>()` extra bytes: store large values
/// behind a `Box` or an `Arc`. Removed keys give their memory back by themselves,
/// once enough of the map is removed to trigger a merge (see [`promote`]).
///
/// [`promote`]: SyncMap::promote
///
/// # Panics in user code
///
/// A panicking `Hash`, `Eq` or update closure leaves the map as it was before the
/// call: user code runs only before a change is published or in read-only probes,
/// and the internal lock ignores poisoning. A panicking `Drop` of a key or value
/// that the map drops (on overwrite, remove, clear or its own drop) is contained:
/// the memory is freed, the panic is reported by the panic hook and not propagated,
/// because it may run on an unrelated thread inside the reclaimer.
///
/// # Examples
///
/// ```
/// use readmostly::SyncMap;
///
/// let routes = SyncMap::new();
/// routes.insert("/", "index");
/// routes.insert("/about", "about");
///
/// let pinned = routes.pin();
/// assert_eq!(pinned.get("/"), Some(&"index"));
/// assert_eq!(pinned.insert("/", "home"), Some(&"index"));
/// assert_eq!(routes.len(), 2);
/// ```
pub struct SyncMap<K, V, S = RandomState, R: Reclaim = DefaultReclaim> {
    /// What every read touches, and nothing a writer writes except at promotion.
    read_side: CachePadded<ReadSide<K, V, S, R>>,
    /// Written by writers, on its own cache lines so that readers never share one
    /// with it.
    write_side: CachePadded<WriteSide>,
    /// The promotion trigger fed by sampled delta reads: the one line readers may
    /// write, rarely, and apart from both of the above.
    sampler: CachePadded<Sampler>,
    ledger: Arc<Ledger>,
    #[cfg(test)]
    lock_audit: protocol::LockAudit,
    /// The map owns keys and values through raw pointers; this makes `Send`/`Sync`
    /// opt-in (see the impls below) instead of derived from those pointers.
    _owns: PhantomData<(*const K, *const V)>,
}

struct ReadSide<K, V, S, R> {
    root: RootPtr<K, V>,
    hasher: S,
    reclaim: R,
}

struct WriteSide {
    writer: Mutex<Writer>,
    /// Live keys: +1 when a slot gains a value, −1 when it loses one.
    len: AtomicIsize,
    /// Removes since the last promotion (each left a tombstone in the root).
    tombstones: AtomicUsize,
    /// Entries in the current delta; written under the lock, read without it by
    /// the tombstone trigger.
    delta_len: AtomicUsize,
    counters: Counters,
}

/// The writer lock's token: holding it proves the right to add keys, replace the
/// root or the delta, and fill delta slots. The state it guards is atomic (so
/// readers can read it without the lock).
struct Writer;

/// Sampled delta-served reads since the last promotion, and the flag asking the
/// next writer to promote.
#[derive(Default)]
struct Sampler {
    delta_reads: AtomicUsize,
    promote_wanted: AtomicBool,
}

// SAFETY: the map owns its keys and values (through `Arc<Entry>` and raw value
// pointers); sending the map sends them, and they may be dropped on the receiving
// thread: `K: Send, V: Send`. The hasher and reclaimer move with it.
unsafe impl<K: Send, V: Send, S: Send, R: Reclaim> Send for SyncMap<K, V, S, R> {}

// SAFETY: through `&SyncMap`, threads get `&K` and `&V` concurrently (`Sync`), and
// insert or remove values that are then dropped on another thread, possibly by the
// reclaimer (`Send`). The hasher is shared by `&`.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Sync, R: Reclaim> Sync for SyncMap<K, V, S, R> {}

impl<K, V> SyncMap<K, V> {
    /// An empty map with the default hasher and reclaimer.
    ///
    /// Allocates an empty root: an empty read table and an 8-slot delta.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<String, u64> = SyncMap::new();
    /// assert!(map.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_hasher_and_reclaim(RandomState::new(), DefaultReclaim::default())
    }

    /// An empty map whose first delta has room for `capacity` new keys (so a bulk
    /// load does not grow it step by step).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<u32, u32> = SyncMap::with_capacity(1024);
    /// assert!(map.is_empty());
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, RandomState::new())
    }
}

impl<K, V, S> SyncMap<K, V, S> {
    /// An empty map with `hasher` (and the default reclaimer).
    ///
    /// The hasher decides HashDoS resistance: std's `RandomState` (the default)
    /// resists it; faster unkeyed hashers do not.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::collections::hash_map::RandomState;
    ///
    /// let map = SyncMap::with_hasher(RandomState::new());
    /// map.insert(1, "one");
    /// assert_eq!(map.get_cloned(&1), Some("one"));
    /// ```
    pub fn with_hasher(hasher: S) -> Self {
        Self::with_hasher_and_reclaim(hasher, DefaultReclaim::default())
    }

    /// An empty map with `hasher`, whose first delta has room for `capacity` new
    /// keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::collections::hash_map::RandomState;
    ///
    /// let map = SyncMap::with_capacity_and_hasher(100, RandomState::new());
    /// map.insert("k", 1);
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        Self::with_parts(capacity, hasher, DefaultReclaim::default())
    }
}

impl<K, V, S, R: Reclaim> SyncMap<K, V, S, R> {
    /// An empty map with `hasher` and the reclaimer `reclaim`, for choosing a
    /// backend other than the default.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{reclaim::CrossbeamEpoch, SyncMap};
    /// use std::collections::hash_map::RandomState;
    ///
    /// let map = SyncMap::with_hasher_and_reclaim(RandomState::new(), CrossbeamEpoch);
    /// map.insert(1u8, 'a');
    /// assert_eq!(map.get_cloned(&1), Some('a'));
    /// ```
    pub fn with_hasher_and_reclaim(hasher: S, reclaim: R) -> Self {
        Self::with_parts(0, hasher, reclaim)
    }

    fn with_parts(capacity: usize, hasher: S, reclaim: R) -> Self {
        SyncMap {
            read_side: CachePadded::new(ReadSide {
                root: RootPtr::new(Root::new(Table::new(), Delta::with_room_for(capacity))),
                hasher,
                reclaim,
            }),
            write_side: CachePadded::new(WriteSide {
                writer: Mutex::new(Writer),
                len: AtomicIsize::new(0),
                tombstones: AtomicUsize::new(0),
                delta_len: AtomicUsize::new(0),
                counters: Counters::default(),
            }),
            sampler: CachePadded::new(Sampler::default()),
            ledger: Arc::new(Ledger::default()),
            #[cfg(test)]
            lock_audit: protocol::LockAudit::default(),
            _owns: PhantomData,
        }
    }

    /// The map's hasher.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::hash::BuildHasher;
    ///
    /// let map: SyncMap<u8, u8> = SyncMap::new();
    /// let _same_hash = map.hasher().hash_one(7u8);
    /// ```
    pub fn hasher(&self) -> &S {
        &self.read_side.hasher
    }

    /// Live keys. Exact when no writer runs; while writers run, a value that was
    /// true at some moment during the call (never negative).
    ///
    /// O(1): the map keeps a count (Go's `sync.Map` has no `Len` at all).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(1, ());
    /// map.insert(2, ());
    /// map.remove(&1);
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        // Relaxed: a count that orders nothing; see the doc comment.
        self.write_side.len.load(Ordering::Relaxed).max(0) as usize
    }

    /// Whether [`len`](SyncMap::len) is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<u8, u8> = SyncMap::new();
    /// assert!(map.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Protocol counters and the reclamation ledger; see [`Stats`].
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(1, "a");
    /// map.insert(1, "b"); // overwrites: retires "a"
    /// assert_eq!(map.stats().values_retired, 1);
    /// ```
    pub fn stats(&self) -> Stats {
        let stats = self.write_side.counters.snapshot(&self.ledger);
        // Delta reads are counted on the sampler's line (readers never write the
        // writers' counters) and folded into `counters` when the sampler resets.
        // Relaxed: a statistic.
        let unfolded = self.sampler.delta_reads.load(Ordering::Relaxed) as u64;
        Stats {
            delta_reads: stats.delta_reads + unfolded,
            ..stats
        }
    }

    /// Asks the reclaimer to free what it can now (see [`Reclaim::flush`]): garbage
    /// that no live guard protects. For tests and memory diagnostics; the map never
    /// needs it.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(1, vec![0u8; 1024]);
    /// map.remove(&1);
    /// for _ in 0..100 {
    ///     map.flush();
    ///     if map.stats().pending == 0 {
    ///         break;
    ///     }
    /// }
    /// ```
    pub fn flush(&self) {
        self.read_side.reclaim.flush();
    }
}

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Pins the reclaimer and returns a handle whose references stay valid until it
    /// is dropped. Every operation is available on it.
    ///
    /// Pinning is cheap (a thread-local access and, for the outermost guard, one
    /// fence); reuse one `Pinned` for a batch of reads to pay it once.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert("a", 1);
    /// let pinned = map.pin();
    /// let a = pinned.get("a").unwrap();
    /// pinned.insert("a", 2); // `a` still points to the old value, kept alive
    /// assert_eq!((*a, pinned.get("a")), (1, Some(&2)));
    /// ```
    #[inline]
    pub fn pin(&self) -> Pinned<'_, K, V, S, R> {
        Pinned::new(self)
    }

    /// A clone of `key`'s value, without a guard to hold (for async code).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(String::from("k"), 1);
    /// assert_eq!(map.get_cloned("k"), Some(1)); // looked up by &str
    /// assert_eq!(map.get_cloned("x"), None);
    /// ```
    #[inline]
    pub fn get_cloned<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.pin().get(key).cloned()
    }

    /// Whether `key` is present.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert(1, 'a');
    /// assert!(map.contains_key(&1));
    /// assert!(!map.contains_key(&2));
    /// ```
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.pin().contains_key(key)
    }

    /// Inserts `value` for `key`, returning a clone of the previous value (Go's
    /// `Swap`; `Store` when the result is ignored). Without `V: Clone`, use
    /// [`Pinned::insert`], which returns a reference.
    ///
    /// An existing key keeps its original key value, as with `HashMap`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// assert_eq!(map.insert(1, "a"), None);
    /// assert_eq!(map.insert(1, "b"), Some("a"));
    /// ```
    pub fn insert(&self, key: K, value: V) -> Option<V>
    where
        V: Clone,
    {
        self.pin().insert(key, value).cloned()
    }

    /// Removes `key`, returning a clone of its value (Go's `LoadAndDelete`).
    /// Without `V: Clone`, use [`Pinned::remove`].
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert("k", 7);
    /// assert_eq!(map.remove("k"), Some(7));
    /// assert_eq!(map.remove("k"), None);
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.pin().remove(key).cloned()
    }

    /// Merges the delta of new keys into a fresh read table now, dropping the
    /// entries of removed keys, instead of waiting for the promotion rule.
    ///
    /// The rule: new keys go to the delta; lookups that miss the read table probe
    /// the delta (lock-free) and are sampled; the next writer promotes once
    /// delta-served reads reach four per key of the map, and a new key promotes
    /// first when the delta is full and holds half as many keys as the read table;
    /// a remove promotes once removed keys reach half of the map. Each promotion
    /// costs O(len) after O(len) operations. Call `promote` after a bulk load so that lookups of the new keys
    /// probe one table. Costs O(len).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// for i in 0..1000 {
    ///     map.insert(i, i);
    /// }
    /// map.promote();
    /// let delta_reads = map.stats().delta_reads;
    /// assert_eq!(map.get_cloned(&500), Some(500));
    /// assert_eq!(map.stats().delta_reads, delta_reads); // served by the read table
    /// ```
    pub fn promote(&self) {
        let guard = self.read_side.reclaim.pin();
        self.promote_now(&guard);
    }

    /// Removes every key. Linearizable with respect to each key: an insert racing
    /// with `clear` either happens before it (and is cleared) or after (and stays).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<_, _> = (0..10).map(|i| (i, i)).collect();
    /// map.clear();
    /// assert!(map.is_empty());
    /// assert_eq!(map.get_cloned(&3), None);
    /// ```
    pub fn clear(&self) {
        let guard = self.read_side.reclaim.pin();
        self.clear_tables(&guard);
    }

    /// Keeps only the keys for which `keep` returns true. Each removal is its own
    /// atomic compare-and-remove, so a value changed concurrently is judged again
    /// (and `keep` may see a key more than once); `retain` as a whole is not atomic.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<_, _> = (0..10).map(|i| (i, i * i)).collect();
    /// map.retain(|_, v| v % 2 == 0);
    /// assert_eq!(map.len(), 5);
    /// ```
    pub fn retain(&self, keep: impl FnMut(&K, &V) -> bool) {
        self.pin().retain(keep);
    }
}

impl<K, V, S, R: Reclaim> Drop for SyncMap<K, V, S, R> {
    fn drop(&mut self) {
        // Exclusive access: no guard can hold references into this map (they borrow
        // it), so the tables, entries and values are freed at once. Garbage retired
        // earlier stays with the reclaimer, which frees it after its grace period.
        drop(self.read_side.root.take_exclusive());
    }
}

impl<K, V> Default for SyncMap<K, V> {
    /// Same as [`SyncMap::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S, R> fmt::Debug for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static + fmt::Debug,
    V: Send + 'static + fmt::Debug,
    S: BuildHasher,
    R: Reclaim,
{
    /// Lists the live entries, as [`Pinned::iter`] does (lock-free; never
    /// promotes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.pin().iter()).finish()
    }
}

impl<K, V, S, R> FromIterator<(K, V)> for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Default,
    R: Reclaim,
{
    /// Builds a map and promotes once at the end, so that every key is in the read
    /// table and lookups probe one table.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::with_hasher_and_reclaim(S::default(), R::default());
        map.extend(iter);
        map.promote();
        map
    }
}

impl<K, V, S, R> Extend<(K, V)> for SyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts every pair, as [`Pinned::insert`] would, under one guard.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut shared = &*self;
        shared.extend(iter);
    }
}

impl<K, V, S, R> Extend<(K, V)> for &SyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Inserts every pair through a shared reference.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let pinned = self.pin();
        for (key, value) in iter {
            pinned.insert(key, value);
        }
    }
}
