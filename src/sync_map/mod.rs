//! [`SyncMap`]: Go's `sync.Map` idea — an immutable read table, a side table for
//! new keys, promotion by a counter — with keys and values inline in the read
//! table and reads that never lock.
//!
//! Module map: `slot` (a key, its inline value and the link that says where the
//! current value is), `read` (the read table: buckets as `HashMap`'s, links and
//! touched bits beside them), `root` (the read table and the delta behind one
//! published pointer), `delta` (the lock-free table of keys added since the last
//! promotion), `policy` (when to promote: the rule, stated once), `lookup` (the
//! read path), `write` (every write), `promote` (sealing promotion and clear),
//! `pinned` and `owned` (the guarded APIs), `iter`.

mod delta;
mod iter;
mod lookup;
mod owned;
mod pinned;
mod policy;
mod promote;
mod read;
mod root;
mod slot;
mod traits;
mod write;

#[cfg(test)]
mod tests;

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use core::marker::PhantomData;
use std::collections::hash_map::RandomState;

use crossbeam_utils::CachePadded;

use delta::Delta;
pub use iter::Iter;
#[cfg(feature = "rayon")]
pub(crate) use lookup::par_slots;
pub use owned::OwnedPinned;
pub use pinned::{CompareExchangeError, LoadOrStore, Pinned};
use policy::Sampler;
use read::ReadTable;
use root::{Root, RootPtr};

use crate::reclaim::{DefaultReclaim, Ledger, Reclaim};
use crate::stats::{Counters, Stats};
use crate::sync::{Arc, AtomicIsize, Mutex, Ordering};

/// A concurrent hash map for read-mostly workloads: Go's `sync.Map` idea, with
/// keys and values inline in the read table and reads that never lock.
///
/// A lookup pins the reclaimer (or reuses the caller's [`Pinned`] guard), loads
/// the published root, hashes once and probes the read table — an immutable
/// `hashbrown` table whose buckets hold the key, its value and one atomic *link*.
/// A key never overwritten since the last promotion is answered from the bucket
/// itself: one load of the root, one probe and one bit of a bitmap beside the
/// buckets that says the key has not been written, no lock, no shared write —
/// the memory a plain `HashMap` lookup touches, plus that bit. A key
/// overwritten since is one dependent load further (its value is in a heap cell
/// the link points to); a key added since is found in the *delta*, a second
/// lock-free table.
///
/// Updates and removes of existing keys are one compare-and-swap on the key's
/// link, wherever it lives; a new key is one compare-and-swap into an empty
/// bucket of the delta. A *promotion* copies every live key into a fresh read
/// table, values inline again and removed keys dropped; when it happens is the
/// rule in the crate docs' "When `SyncMap` promotes". Each costs O(len) and
/// follows Ω(len) operations, so it is amortized O(1).
///
/// It suits caches and tables with a mostly stable key set. For tables rewritten
/// as a whole, with consistent snapshots, see the crate docs on choosing a map.
///
/// # Why `K: Clone` and `V: Clone`
///
/// A promotion *clones* each live key and value into the new read table: readers
/// of the old table may still hold references into it, so its keys and values
/// stay where they are until it is freed, and a bitwise move would leave two
/// owners of one value (unsound for values with interior mutability). Big or
/// non-`Clone` values belong behind an `Arc`, which makes the clone one reference
/// count increment. `Clone` runs while the writer lock is held (see "Locks and
/// user code").
///
/// # Guards
///
/// Methods that hand out references live on [`Pinned`], obtained from
/// [`pin`](SyncMap::pin); references stay valid while it lives, even if the key
/// is overwritten, removed or promoted meanwhile. A `Pinned` is not `Send`: in
/// async code, drop it before an `.await`, or use the guard-free methods on
/// `SyncMap` that return owned values ([`get_cloned`](SyncMap::get_cloned),
/// [`insert`](SyncMap::insert), [`remove`](SyncMap::remove), …). Holding a guard
/// for long delays the freeing of every value retired in the process meanwhile
/// (with the default crossbeam-epoch backend).
///
/// # Consistency
///
/// Each operation on one key is linearizable. [`len`](SyncMap::len) is exact when
/// no write is in flight. Iteration sees every key present for its whole
/// duration exactly once, with a value it had at some moment during the
/// iteration; it is not a snapshot (use `SnapshotMap` for that).
///
/// # Memory
///
/// The read table holds each key and value inline, plus one word: for `u64` keys
/// and values, 24 bytes a bucket. A value written since the last promotion gets a
/// heap cell, and the key's inline value stays (stale) until the next promotion;
/// a key added since lives in a heap node of the delta. Removed keys give their
/// memory back by themselves, once enough of the map is removed to trigger a
/// compaction. Dropping the map drops every key and value it holds or has
/// retired, at once, whatever guards other threads hold.
///
/// # Locks and user code
///
/// Reads never take a lock and never wait: a reader that finds the read budget
/// spent *tries* the writer lock to promote, and moves on if it is taken. Writes
/// are lock-free too: to keys present in the map, one compare-and-swap on the
/// key's slot; a new key, one into an empty bucket of the delta. A write takes
/// the writer lock only to grow a full delta, to promote, or to wait for a
/// promotion that froze the slot it wanted. Promotions run user code while
/// holding the writer lock, and that code must not use the same map (it would
/// deadlock or, for a reader's promotion, be skipped):
///
/// * `Hash` of `K`, to place each key in the new read table;
/// * `Clone` of `K` and `V`, to fill it.
///
/// Closures passed to `update`, `remove_if`, `get_or_insert_with` and `retain`
/// run without the lock, as do the destructors the map runs.
///
/// # Panics in user code
///
/// A panicking `Hash`, `Eq` or closure leaves the map as it was before the call
/// (for `retain`, which removes key by key, as it was before the key whose
/// `keep` panicked): user code runs only before a change is published, and the
/// internal lock ignores poisoning. The one exception is the `Clone` of the value
/// a guard-free method (`insert`, `remove`, `get_or_insert_with`, …) returns:
/// it runs after the change is made, so if it panics, the change stays. A
/// panicking `Clone` or `Hash` in a promotion the map starts
/// by itself abandons that promotion (nothing is published, the panic is reported
/// by the panic hook and not propagated; `stats().promotions_abandoned` counts
/// it); in [`promote`](SyncMap::promote) it propagates, the map unchanged. A
/// panicking `Drop` of a key or value that the map drops is contained: the memory
/// is freed and the panic is reported by the panic hook, because it may run on an
/// unrelated thread inside the reclaimer.
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
///
/// A `Pinned` cannot cross threads (so it cannot be held across an `.await` in a
/// multi-threaded runtime):
///
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let map = readmostly::SyncMap::<u8, u8>::new();
/// assert_send(map.pin());
/// ```
pub struct SyncMap<K, V, S = RandomState, R: Reclaim = DefaultReclaim> {
    /// What every read touches, and nothing a writer writes except at promotion.
    read_side: CachePadded<ReadSide<K, V, S, R>>,
    /// Written by writers, on its own cache lines so that readers never share one
    /// with it.
    write_side: CachePadded<WriteSide>,
    /// The promotion trigger fed by sampled off-path reads: the one line readers
    /// may write, rarely, and apart from both of the above.
    sampler: CachePadded<Sampler>,
    ledger: Arc<Ledger>,
    #[cfg(test)]
    lock_audit: write::LockAudit,
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
    /// Removed keys in the current root (links `REMOVED`): +1 per remove, −1 per
    /// revival; a heuristic (it may lag by the writes in flight).
    tombstones: AtomicIsize,
    counters: Counters,
}

/// The writer lock's token: holding it proves the right to replace the root or
/// the delta, and to seal slots and close deltas. The state it guards is atomic
/// (so readers can read it without the lock).
struct Writer;

// SAFETY: the map owns its keys and values (inline in its tables, in delta nodes
// and in cells); sending the map sends them, and they may be dropped on the
// receiving thread: `K: Send, V: Send`. The hasher and reclaimer move with it.
unsafe impl<K: Send, V: Send, S: Send, R: Reclaim> Send for SyncMap<K, V, S, R> {}

// SAFETY: through `&SyncMap`, threads get `&K` and `&V` concurrently (`Sync`), and
// insert or remove values that are then dropped on another thread, possibly by the
// reclaimer (`Send`). The hasher is shared by `&`.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Sync, R: Reclaim> Sync for SyncMap<K, V, S, R> {}

impl<K, V> SyncMap<K, V> {
    /// An empty map with the default hasher and reclaimer.
    ///
    /// Allocates an empty root: an empty read table and a delta of 8 buckets,
    /// with room for 4 keys.
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
    /// use readmostly::{reclaim::DefaultReclaim, SyncMap};
    /// use std::collections::hash_map::RandomState;
    ///
    /// // `DefaultReclaim` is `CrossbeamEpoch`, or `Seize` without that feature;
    /// // `reclaim::Seize::with_batch_size(8)` is one choice of many (feature `seize`).
    /// let map = SyncMap::with_hasher_and_reclaim(RandomState::new(), DefaultReclaim::default());
    /// map.insert(1u8, 'a');
    /// assert_eq!(map.get_cloned(&1), Some('a'));
    /// ```
    pub fn with_hasher_and_reclaim(hasher: S, reclaim: R) -> Self {
        Self::with_parts(0, hasher, reclaim)
    }

    fn with_parts(capacity: usize, hasher: S, reclaim: R) -> Self {
        SyncMap {
            read_side: CachePadded::new(ReadSide {
                root: RootPtr::new(Root::new(ReadTable::new(), Delta::with_room_for(capacity))),
                hasher,
                reclaim,
            }),
            write_side: CachePadded::new(WriteSide {
                writer: Mutex::new(Writer),
                len: AtomicIsize::new(0),
                tombstones: AtomicIsize::new(0),
                counters: Counters::default(),
            }),
            sampler: CachePadded::new(Sampler::default()),
            ledger: Arc::new(Ledger::for_cells(crate::raw::cell::layout::<V>())),
            #[cfg(test)]
            lock_audit: write::LockAudit::default(),
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

    /// Live keys. O(1): the map keeps a count (Go's `sync.Map` has no `Len` at
    /// all).
    ///
    /// Exact when no insert or remove is in flight. The count is updated just
    /// after each change takes effect, not with it, so while writes run it may
    /// differ from the number of keys present at any one moment by up to the
    /// number of inserts and removes in flight (each adds or takes one, a moment
    /// late; a `clear` in flight counts as removing every key it clears). It is
    /// never negative.
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
    /// map.insert(1, "b"); // "a" was inline in its slot: it stays there
    /// assert_eq!(map.stats().values_retired, 0);
    /// map.insert(1, "c"); // "b" was in a cell: retired
    /// assert_eq!(map.stats().values_retired, 1);
    /// ```
    pub fn stats(&self) -> Stats {
        let stats = self.write_side.counters.snapshot(&self.ledger);
        // Off-path reads are counted on the sampler's line (readers never write
        // the writers' counters) and folded into `counters` when it resets.
        let (delta_reads, cell_reads) = self.sampler.unfolded();
        Stats {
            delta_reads: stats.delta_reads + delta_reads,
            cell_reads: stats.cell_reads + cell_reads,
            ..stats
        }
    }

    /// Frees everything this map retired before the call — replaced and removed
    /// values, old tables — once no guard that was live during the call can
    /// still reach it. For tests and memory diagnostics; the map never needs it.
    /// (Without it, what the reclaimer has not been handed yet waits for more:
    /// values go to it in batches of 16 per ledger shard, see "Memory
    /// reclamation" in the crate docs.)
    ///
    /// * If no guard of this map is live on any thread, the calling thread
    ///   included (with the default backend, crossbeam-epoch, whose collector
    ///   is global: no guard of any map pinned before the call), and no
    ///   [`OwnedPinned`] of this map is live, everything retired before the
    ///   call is freed when `flush` returns and `stats().pending` counts only
    ///   what other threads retired meanwhile. (crossbeam-epoch frees in the
    ///   order garbage was queued, every map's alike: behind a large backlog of
    ///   *other* maps' garbage, `flush` may return first, and a later flush or
    ///   pin on any thread finishes the job.)
    /// * Otherwise everything retired before the call waits for those guards,
    ///   what they cannot reach included (an epoch scheme knows when a guard
    ///   began, not what it read): it is freed once the last of them is
    ///   dropped — on seize by that guard's own drop; on crossbeam-epoch by the
    ///   next collection, which any thread's pin or flush may run. What an
    ///   owned guard's hold keeps (everything retired after it was taken) is
    ///   freed when it is dropped or [refreshed](OwnedPinned::refresh).
    ///
    /// It reaches garbage wherever the backend keeps it, whichever thread
    /// retired it — threads that have exited or sit idle included: the map
    /// retires a *sweep record* through its backend, which frees everything it
    /// retired before it once the record's own grace period is over, and flushes
    /// the backend until the record has run (a bounded number of times).
    ///
    /// Then it gives the memory of freed value cells that the map kept for
    /// reuse back to the allocator (see "Memory reclamation" in the crate
    /// docs); cells freed by later collections are kept again.
    ///
    /// Dropping the map frees everything it ever retired, at once.
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
        Ledger::flush(&self.ledger, &self.read_side.reclaim);
    }
}

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
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
    /// `Swap`; `Store` when the result is ignored). [`Pinned::insert`] returns a
    /// reference instead.
    ///
    /// A key already present keeps the key the map holds and `key` is dropped, as
    /// with `HashMap`. So does a key removed and inserted again before the next
    /// promotion: its slot, stored key included, comes back to life (`HashMap`
    /// would store the new key).
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
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.pin().insert(key, value).cloned()
    }

    /// Removes `key`, returning a clone of its value (Go's `LoadAndDelete`).
    /// [`Pinned::remove`] returns a reference instead.
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
    {
        self.pin().remove(key).cloned()
    }

    /// Returns a clone of `key`'s value if present; otherwise stores `make()` and
    /// returns a clone of it (Go's `LoadOrStore` with a lazily made value). `make`
    /// runs at most once, without the lock. [`Pinned::get_or_insert_with`] returns
    /// a reference and says which happened.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let sessions = SyncMap::new();
    /// assert_eq!(sessions.get_or_insert_with("alice", || 1), 1);
    /// assert_eq!(sessions.get_or_insert_with("alice", || unreachable!()), 1);
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V {
        self.pin().get_or_insert_with(key, make).value().clone()
    }

    /// Replaces `key`'s value with `update(value)` if it is present, or stores
    /// `insert()` if it is absent, atomically, and returns a clone of the value now
    /// stored; see [`Pinned::update_or_insert_with`].
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let counts = SyncMap::new();
    /// for word in ["a", "b", "a"] {
    ///     counts.update_or_insert_with(word, |n| n + 1, || 1);
    /// }
    /// assert_eq!((counts.get_cloned("a"), counts.get_cloned("b")), (Some(2), Some(1)));
    /// ```
    pub fn update_or_insert_with(
        &self,
        key: K,
        update: impl FnMut(&V) -> V,
        insert: impl FnOnce() -> V,
    ) -> V {
        self.pin()
            .update_or_insert_with(key, update, insert)
            .clone()
    }

    /// A guard that owns its handle to the map: `Send`, `Sync` and `'static` when
    /// the map is (it holds an `Arc` of it), so it can be kept across `.await`
    /// points in a multi-threaded async runtime, where a [`Pinned`] cannot.
    /// References it returns stay valid while it lives. See [`OwnedPinned`] for
    /// what holding one costs.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    /// use std::sync::Arc;
    ///
    /// let routes = Arc::new(SyncMap::new());
    /// routes.insert("/", "index");
    /// let pinned = routes.pin_owned();
    /// let handle = std::thread::spawn(move || pinned.get("/").copied());
    /// assert_eq!(handle.join().unwrap(), Some("index"));
    /// ```
    pub fn pin_owned(self: &std::sync::Arc<Self>) -> OwnedPinned<K, V, S, R> {
        OwnedPinned::new(std::sync::Arc::clone(self))
    }

    /// Promotes now: copies every live key into a fresh read table, values inline
    /// again and removed keys dropped, instead of waiting for the promotion rule
    /// (crate docs, "When `SyncMap` promotes"). Call it after a bulk load so that
    /// lookups of the new keys are answered from the read table's buckets. Costs
    /// O(len), with the writer lock held; clones every key and value.
    ///
    /// # Panics
    ///
    /// If `Clone` or `Hash` panics; the map is then unchanged.
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

    /// Keys the map holds or can take without reorganizing: the read table's keys
    /// (a removed key comes back into its own slot) plus the keys the delta has
    /// room for, those it holds included. New keys beyond it grow the delta or
    /// promote.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<u32, u32> = SyncMap::with_capacity(1000);
    /// assert!(map.capacity() >= 1000);
    /// ```
    pub fn capacity(&self) -> usize {
        let guard = self.read_side.reclaim.pin();
        self.capacity_now(&guard)
    }

    /// Makes room for `additional` more new keys in the delta, so that adding
    /// them grows nothing (as [`with_capacity`](SyncMap::with_capacity) does for
    /// a new map). Takes the writer lock; O(delta).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<u32, u32> = SyncMap::new();
    /// map.reserve(10_000);
    /// assert!(map.capacity() >= 10_000);
    /// let growths = map.stats().delta_growths;
    /// for i in 0..10_000 {
    ///     map.insert(i, i);
    /// }
    /// assert_eq!(map.stats().delta_growths, growths);
    /// ```
    pub fn reserve(&self, additional: usize) {
        let guard = self.read_side.reclaim.pin();
        self.reserve_locked(&guard, additional);
    }

    /// Gives back what the map holds beyond its live keys: a promotion, which
    /// drops removed keys, sizes the read table for the keys present and starts
    /// an empty delta. See [`promote`](SyncMap::promote) (including its panics).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<u32, u32> = (0..1000).map(|i| (i, i)).collect();
    /// for i in 0..900 {
    ///     map.remove(&i);
    /// }
    /// map.shrink_to_fit();
    /// assert!(map.capacity() < 1000);
    /// ```
    pub fn shrink_to_fit(&self) {
        self.promote();
    }

    /// Removes every key. Linearizable with respect to each key: an insert racing
    /// with `clear` either happens before it (and is cleared) or after (and stays).
    /// O(len): every slot is sealed, so that no racing lock-free write lands in
    /// the discarded tables. A map with no key at all (removed ones included)
    /// is left as it is: clearing it allocates and retires nothing.
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
    /// (and `keep` may see a key more than once, also when a promotion or a
    /// `clear` interrupts the removal); `retain` as a whole is not atomic.
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
        // Exclusive access: no guard can hold references into this map (they
        // borrow it), so everything goes at once — the current tables with every
        // key and value in them, and everything retired and still waiting for
        // the reclaimer, whose later `reclaim` calls then find nothing.
        drop(self.read_side.root.take_exclusive());
        self.ledger.close();
    }
}
