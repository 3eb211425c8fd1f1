//! [`SnapshotMap`]: a copy-on-write map whose readers always see one whole,
//! immutable version.
//!
//! # Design
//!
//! The current version is an immutable `hashbrown` table in an `Arc` behind one
//! published pointer, whose scheme the map's type parameter `P`
//! ([`Publish`]) selects:
//!
//! * [`ArcSwapPublish`] (the default): arc-swap's `ArcSwap` (a loom-visible
//!   mutex stand-in under `cfg(loom)`). A read records a debt in a slot of the
//!   reading thread instead of incrementing the version's shared reference
//!   count, so concurrent readers write no common cache line; a swapping writer
//!   pays the debts of readers still on the old version.
//! * a reclamation backend (`CrossbeamEpoch`,
//!   `Seize`): the pointer is `Arc::into_raw` in an
//!   `AtomicPtr` (`reclaim::ReclaimCell`). A read pins the backend and loads
//!   the pointer; a swap retires the old version's published reference, which
//!   the backend drops after its grace period.
//!
//! A read loads the pointer, probes the table and lets go. A [`Snapshot`] is
//! the same version held by a real reference count, for as long as its owner
//! likes, under every scheme.
//!
//! Writers take one writer lock, so they never race each other and never retry
//! (`ArcSwap::rcu` retries a whole copy whenever another writer won). Under the
//! lock a writer opens a [`Batch`], which copies the current table on its first
//! change; when the batch closes, the copy is published as the next version
//! with one pointer swap. The replaced version is *retired*: under arc-swap it
//! is freed when its last holder (a snapshot, an in-flight read) drops it — on
//! that holder's thread, with no collector and no grace period to wait for;
//! under a backend, its published reference is dropped after the grace period
//! (by whichever thread ends it), and the version is freed then or with its
//! last snapshot, whichever comes later.
//!
//! User code and the writer lock: a batch's closure and the `Hash`, `Eq` and
//! `Clone` calls of building the copy run under the lock (they are the
//! transaction). Everything else runs after it is released: waking watchers,
//! dropping the replaced version, and dropping what the batch replaced or
//! removed in its copy. A write started by the thread holding the lock panics
//! instead of deadlocking (`writer`).
//!
//! Module map: `version` (one published table), `snapshot` (the handle and its
//! iterators, and the short-lived [`SnapshotRef`]), `batch` (the transaction),
//! `graveyard` (what a batch drops after the lock), `writer` (the writer lock
//! and its owner), `conditional` (`compare_exchange`, `remove_if`), `capacity`
//! (what capacity means for a copy-on-write map), `traits` (`Clone`,
//! `PartialEq`, `FromIterator`, `Extend`, …),
//! `diff` (changes between versions), `watch` (waiting for the next version),
//! `stats` (the version ledger).

mod batch;
mod capacity;
mod conditional;
mod diff;
mod graveyard;
mod snapshot;
mod stats;
mod traits;
mod version;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use std::collections::hash_map::RandomState;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crossbeam_utils::CachePadded;
use hashbrown::HashMap;

pub use batch::Batch;
pub use conditional::SnapshotCompareExchangeError;
pub use diff::{Change, Diff};
pub use snapshot::{Snapshot, SnapshotIntoIter, SnapshotIter, SnapshotRef};
pub use stats::SnapshotStats;
pub use watch::{Changed, Watcher};

use batch::trim;
use stats::Ledger;
use version::Version;
use watch::Watch;
use writer::{WriterGuard, WriterLock};

use crate::reclaim::{ArcSwapCell, ArcSwapPublish, AtomicArc, Publish};
use crate::sync::Arc;

/// A concurrent map for tables that are read constantly and rewritten as a
/// whole — routing tables, configuration, feature flags — where every reader
/// must see one consistent version.
///
/// Each write publishes a new immutable version; readers load the current one
/// without a lock and without touching a shared reference count. What that
/// buys, which neither Go's `sync.Map` nor a per-key concurrent map gives:
///
/// * **Snapshots.** [`snapshot`](SnapshotMap::snapshot) returns a cheap handle
///   to one version; iterate it, look things up, hold it across `.await`,
///   compare it with another ([`Snapshot::diff`]).
/// * **Multi-key atomicity.** [`batch`](SnapshotMap::batch) applies many
///   inserts, removes and updates that readers see all at once or not at all;
///   [`try_batch`](SnapshotMap::try_batch) may fail and publish nothing.
/// * **Cheap batched writes.** Writers serialize on a lock (no retry storms)
///   and copy the table once per batch, not once per key.
/// * **Change notification.** [`watch`](SnapshotMap::watch) waits for the next
///   version, blocking or as a future.
///
/// The price: every publish copies the table, so a single-key write costs
/// O(len). Batch writes, or use [`SyncMap`](crate::SyncMap) when keys change one
/// at a time and often.
///
/// # Publication schemes
///
/// How the current version is published — and so what a read costs and when a
/// replaced version is freed — is the type parameter `P`
/// ([`Publish`]), chosen at construction with
/// [`with_hasher_and_publish`](SnapshotMap::with_hasher_and_publish) or
/// [`with_publish`](SnapshotMap::with_publish):
///
/// * [`ArcSwapPublish`] (the default; [`new`](SnapshotMap::new) and every
///   other constructor): arc-swap, reference counting with *debts*. A read
///   writes a debt slot of its own thread and clears it; a writer's swap pays
///   the debts of readers still on the old version. A replaced version is freed
///   the moment its last holder drops it, on that holder's thread: memory comes
///   back at once, with nothing to flush.
/// * `CrossbeamEpoch` (feature
///   `crossbeam-epoch`) or `Seize` (feature `seize`):
///   epoch-style reclamation. A read pins the backend (a thread-local
///   announcement; no shared count is touched) and loads the pointer; a swap
///   retires the old version's published reference, which the backend drops
///   after its grace period, on whichever thread ends it. A replaced version
///   therefore lives until the readers that might see it have moved on — even
///   if no [`Snapshot`] holds it — and longer while a thread stays pinned (a
///   held [`SnapshotRef`]), or, with seize, until the retiring thread's batch
///   fills (`Seize::with_batch_size` bounds it). [`flush`](SnapshotMap::flush)
///   hurries it; dropping the map ends every grace period of its versions.
///   The keys, values and hasher must be `Send + Sync`, and a replaced
///   version's `Drop` runs inside the backend's reclamation, where a panic is
///   contained and a write to the same map may find the writer lock held (and
///   panic, contained too).
///
/// Snapshots, batches and watchers behave the same under every scheme.
///
/// Writes need `K: Clone, V: Clone` (the copy). For large or costly values,
/// store `Arc<V>`: the copy then bumps reference counts instead of cloning.
///
/// # Consistency
///
/// Publishes are linearizable: once a write returns, every later read on any
/// thread sees its version or a newer one. Each read method on the map reads
/// the version current at the call; two calls may see two versions — take a
/// [`Snapshot`] to read several things from one.
///
/// # Panics in user code
///
/// A panicking `Hash`, `Eq`, `Clone` or closure during a write leaves the map
/// as it was: nothing is published before user code has finished, and the
/// half-built copy is dropped after the writer lock is released — apart from
/// the entries a `Clone` that panics while the whole table is copied (a
/// batch's first change) had already cloned, which the copy drops as the
/// panic unwinds, under the lock. A version's keys and values are dropped by
/// whoever drops its last holder; a panicking `Drop` propagates there, as it
/// would from an `Arc<HashMap>`.
///
/// # User code and the writer lock
///
/// Writers hold one writer lock while they build the next version, so the user
/// code that builds it runs under the lock: a batch's closure, the closures of
/// [`update`](SnapshotMap::update) and [`retain`](SnapshotMap::retain), and the
/// `Hash`, `Eq`, `Clone` (and for the conditional writes `PartialEq` or
/// predicate) calls made while copying and editing the table. Other writers wait
/// meanwhile; readers never do. Nothing else runs under the lock: watchers'
/// wakers are woken, and replaced or removed values and old versions are
/// dropped, after it is released — a waker whose executor polls inline, or a
/// `Drop`, may write to the map.
///
/// Code running under the lock must not write to the same map — it would wait
/// for itself. Such a write **panics** with a message saying so, instead of
/// deadlocking; the panic aborts the batch like any other. Inside a batch,
/// write through the [`Batch`] handle. Reading the map under the lock is fine
/// (`get`, `snapshot`, `len`, … see the version the batch started from), and so
/// is writing to another map — though two batches that each write to the other's
/// map from two threads deadlock, as any two locks taken in opposite orders do.
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let routes = SnapshotMap::new();
/// routes.batch(|txn| {
///     txn.insert("/", "index");
///     txn.insert("/about", "about");
/// });
/// assert_eq!(routes.get_cloned("/"), Some("index"));
///
/// let snapshot = routes.snapshot();
/// routes.replace_all([("/", "home")]);
/// assert_eq!(snapshot.len(), 2); // still the version it was taken from
/// assert_eq!(routes.len(), 1);
/// ```
pub struct SnapshotMap<K, V, S = RandomState, P: Publish = ArcSwapPublish> {
    /// The current version: what every read touches, and only publish writes.
    current: CachePadded<P::Cell<Version<K, V, S>>>,
    /// Serializes writers: at most one batch is open at a time.
    writer: WriterLock,
    watch: Watch,
    ledger: Arc<Ledger>,
}

// These are the bounds the default scheme's `ArcSwap<Version>` gave the map as
// auto traits; the other fields are checked by the `const _` below.
// SAFETY: the cell is `Send + Sync` when `Version<K, V, S>` is (the `Publish`
// contract), which it is when `K`, `V` and `S` are; the other fields always are.
unsafe impl<K, V, S, P> Send for SnapshotMap<K, V, S, P>
where
    K: Send + Sync,
    V: Send + Sync,
    S: Send + Sync,
    P: Publish,
{
}

// SAFETY: as for `Send`: every field is `Sync` under these bounds.
unsafe impl<K, V, S, P> Sync for SnapshotMap<K, V, S, P>
where
    K: Send + Sync,
    V: Send + Sync,
    S: Send + Sync,
    P: Publish,
{
}

/// The fields the impls above vouch for without the cell: checked here, so a
/// change that made one of them `!Send` or `!Sync` fails to compile.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<WriterLock>();
    send_sync::<Watch>();
    send_sync::<Arc<Ledger>>();
};

impl<K, V> SnapshotMap<K, V> {
    /// An empty map (version 0) with the default hasher.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<String, u32> = SnapshotMap::new();
    /// assert!(map.is_empty());
    /// assert_eq!(map.version(), 0);
    /// ```
    pub fn new() -> Self {
        Self::with_hasher(RandomState::new())
    }
}

impl<K, V, S> SnapshotMap<K, V, S> {
    /// An empty map with `hasher`. Every version's table is built with a clone
    /// of it.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    /// use std::collections::hash_map::RandomState;
    ///
    /// let map = SnapshotMap::with_hasher(RandomState::new());
    /// map.insert(1, "one");
    /// assert_eq!(map.get_cloned(&1), Some("one"));
    /// ```
    pub fn with_hasher(hasher: S) -> Self {
        // A new hashbrown map has no bucket array yet: 0 bytes.
        Self::from_table(HashMap::with_hasher(hasher), 0)
    }

    /// A map whose version 0 is `table`, of `allocation` bytes.
    fn from_table(table: HashMap<K, V, S>, allocation: usize) -> Self {
        Self::from_table_in(table, allocation, ArcSwapCell::new)
    }
}

impl<K, V, P: Publish> SnapshotMap<K, V, RandomState, P>
where
    K: Send + Sync,
    V: Send + Sync,
{
    /// An empty map with the default hasher that publishes its versions through
    /// `publish` (see [`with_hasher_and_publish`](SnapshotMap::with_hasher_and_publish)).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{reclaim::DefaultReclaim, SnapshotMap};
    ///
    /// let map = SnapshotMap::with_publish(DefaultReclaim::default());
    /// map.insert("k", 1);
    /// assert_eq!(map.get_cloned("k"), Some(1));
    /// ```
    pub fn with_publish(publish: P) -> Self {
        Self::with_hasher_and_publish(RandomState::new(), publish)
    }
}

impl<K, V, S, P: Publish> SnapshotMap<K, V, S, P>
where
    K: Send + Sync,
    V: Send + Sync,
    S: Send + Sync,
{
    /// An empty map with `hasher` that publishes its versions through the
    /// scheme `publish`: [`ArcSwapPublish`] (what [`SnapshotMap::new`] uses),
    /// or a reclamation backend —
    /// `CrossbeamEpoch` (feature
    /// `crossbeam-epoch`), `Seize` (feature `seize`).
    /// See [the type's docs](SnapshotMap#publication-schemes) for what each
    /// costs.
    ///
    /// The keys, values and hasher must be `Send + Sync`: a backend may drop a
    /// replaced version on whichever thread ends its grace period.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{reclaim::DefaultReclaim, SnapshotMap};
    /// use std::collections::hash_map::RandomState;
    ///
    /// let map = SnapshotMap::with_hasher_and_publish(RandomState::new(), DefaultReclaim::default());
    /// map.insert("a", 1);
    /// let old = map.snapshot();
    /// map.insert("a", 2);
    /// assert_eq!((old.get("a"), map.get_cloned("a")), (Some(&1), Some(2)));
    /// ```
    pub fn with_hasher_and_publish(hasher: S, publish: P) -> Self {
        Self::from_table_in(HashMap::with_hasher(hasher), 0, |first| {
            publish.publish(first)
        })
    }
}

impl<K, V, S, P: Publish> SnapshotMap<K, V, S, P> {
    /// A map whose version 0 is `table`, of `allocation` bytes, published in
    /// the cell that `cell` makes.
    fn from_table_in(
        table: HashMap<K, V, S>,
        allocation: usize,
        cell: impl FnOnce(Arc<Version<K, V, S>>) -> P::Cell<Version<K, V, S>>,
    ) -> Self {
        let ledger = Arc::new(Ledger::default());
        let first = Version::new(table, allocation, 0, &ledger);
        SnapshotMap {
            current: CachePadded::new(cell(first)),
            writer: WriterLock::new(),
            watch: Watch::new(0),
            ledger,
        }
    }

    /// A handle to the current version, which stays readable and unchanged for
    /// as long as it is held. One reference-count increment.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("a", 1);
    /// let snapshot = map.snapshot();
    /// map.insert("b", 2);
    /// assert_eq!(snapshot.len(), 1);
    /// assert_eq!(map.snapshot().len(), 2);
    /// ```
    pub fn snapshot(&self) -> Snapshot<K, V, S> {
        Snapshot::new(self.current.load_full())
    }

    /// The current version's number: 0 for a new map, +1 per publish. A write
    /// that makes no change publishes nothing: removing an absent key, a
    /// failed conditional write, clearing an empty map, a batch none of whose
    /// operations changed anything. Values are not compared (`V` need not be
    /// `Eq`), so an insert publishes even if the value equals the old one, and
    /// so does a batch whose changes cancel out.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert(1, 1);
    /// map.remove(&2); // absent: nothing published
    /// assert_eq!(map.version(), 1);
    /// ```
    pub fn version(&self) -> u64 {
        self.current.load().number
    }

    /// Keys in the current version. O(1).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert(1, ());
    /// map.insert(2, ());
    /// assert_eq!(map.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.current.load().table.len()
    }

    /// Whether the current version has no keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    /// assert!(map.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Version counters and the memory ledger; see [`SnapshotStats`].
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = (0..100).map(|i| (i, i)).collect();
    /// map.insert(100, 100); // copies 100 entries
    /// let stats = map.stats();
    /// assert_eq!((stats.published, stats.copied_entries), (1, 100));
    /// assert_eq!(stats.held, 0); // nobody holds the old version: it is freed
    /// ```
    pub fn stats(&self) -> SnapshotStats {
        let current = self.current.load();
        let mut stats = SnapshotStats {
            published: current.number,
            current_bytes: current.bytes() as u64,
            ..SnapshotStats::default()
        };
        drop(current);
        self.ledger.fill(&mut stats);
        stats
    }

    /// A [`Watcher`] that waits for versions after the current one — blocking
    /// or as a future — so a config consumer needs no polling loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// let mut watcher = map.watch();
    /// map.insert("k", 1);
    /// assert_eq!(watcher.wait().version(), 1);
    /// ```
    pub fn watch(&self) -> Watcher<'_, K, V, S, P> {
        Watcher::new(self)
    }

    /// Ends the grace period of every version replaced before the call, so that
    /// those no [`Snapshot`] holds are freed — at once if no other thread is
    /// pinned, otherwise when the last thread pinned during the call unpins;
    /// whichever threads replaced them (see [`SyncMap::flush`](crate::SyncMap::flush),
    /// which works the same way: with a crossbeam-epoch scheme, whose collector
    /// is global, a thread pinned for any map or for crossbeam-epoch itself
    /// counts, not only readers of this one). A no-op for the default scheme,
    /// [`ArcSwapPublish`], which has no grace period.
    ///
    /// Never needed for correctness; for tests and memory-bound tools.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{reclaim::DefaultReclaim, SnapshotMap};
    ///
    /// let map = SnapshotMap::with_publish(DefaultReclaim::default());
    /// map.insert(1, 1);
    /// map.insert(1, 2); // version 1 is retired: freed after its grace period
    /// map.flush();
    /// assert!(map.stats().held <= 2);
    /// ```
    pub fn flush(&self) {
        self.current.flush();
    }
}

impl<K, V, S> SnapshotMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// A map whose version 0 is `table` (for the crate's builders: collect,
    /// deserialize).
    pub(crate) fn from_hash_map(table: HashMap<K, V, S>) -> Self {
        let allocation = table.allocation_size();
        Self::from_table(table, allocation)
    }
}

impl<K, V, S, P: Publish> SnapshotMap<K, V, S, P>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// `key`'s value in the current version, as a short-lived reference that
    /// keeps that version alive (see [`SnapshotRef`]). Takes no lock and
    /// touches no shared reference count.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert(String::from("k"), vec![1, 2, 3]);
    /// assert_eq!(map.get("k").map(|v| v.len()), Some(3)); // looked up by &str
    /// assert!(map.get("x").is_none());
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<SnapshotRef<'_, K, V, S, P>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        SnapshotRef::find(self.current.load(), key)
    }

    /// A clone of `key`'s value in the current version (for async code, or to
    /// keep it).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("k", 1);
    /// assert_eq!(map.get_cloned("k"), Some(1));
    /// assert_eq!(map.get_cloned("x"), None);
    /// ```
    #[inline]
    pub fn get_cloned<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.current.load().table.get(key).cloned()
    }

    /// Whether `key` is in the current version.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
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
        self.current.load().table.contains_key(key)
    }

    /// Publishes `table` as the next version; the caller holds the writer lock.
    /// Returns the version it replaced and the new version's number, which the
    /// caller announces to watchers ([`Watch::published`]) once it has released
    /// the lock. Runs no user code.
    fn publish(&self, table: HashMap<K, V, S>, copied: Option<usize>) -> (Snapshot<K, V, S>, u64) {
        // The writer lock is held: the current version cannot change under us.
        let number = self.current.load().number + 1;
        let allocation = table.allocation_size();
        let old = self
            .current
            .swap(Version::new(table, allocation, number, &self.ledger));
        self.ledger.record_retire(old.bytes());
        if let Some(copied) = copied {
            Ledger::add(&self.ledger.copies, 1);
            Ledger::add(&self.ledger.copied_entries, copied as u64);
        }
        (Snapshot::new(old), number)
    }

    /// Replaces the whole content with `entries`, publishing one version that
    /// readers see at once; returns the version it replaced (drop it to free it,
    /// or diff it against the new one). Builds the new table from scratch — the
    /// old one is not copied — running the iterator and `Hash`/`Eq` before taking
    /// the writer lock. A later pair for the same key wins. If the iterator or
    /// `Hash` panics, nothing is published and the write counts as
    /// [`aborted`](SnapshotStats::aborted).
    ///
    /// # Panics
    ///
    /// If called from code running under this map's writer lock (inside a batch
    /// closure, say): it would deadlock, so it panics instead; see
    /// [the type's docs](SnapshotMap#user-code-and-the-writer-lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let config = SnapshotMap::new();
    /// config.insert("a", 1);
    /// let old = config.replace_all([("b", 2), ("c", 3)]);
    /// assert_eq!(config.len(), 2);
    /// assert_eq!(old.diff(&config.snapshot()).count(), 3); // -a +b +c
    /// ```
    pub fn replace_all<I>(&self, entries: I) -> Snapshot<K, V, S>
    where
        I: IntoIterator<Item = (K, V)>,
        S: Clone,
    {
        let hasher = self.current.load().table.hasher().clone();
        let built = catch_unwind(AssertUnwindSafe(|| {
            let mut table = HashMap::with_hasher(hasher);
            table.extend(entries);
            trim(&mut table);
            table
        }));
        let table = built.unwrap_or_else(|panic| {
            Ledger::add(&self.ledger.aborted, 1);
            resume_unwind(panic)
        });
        let old = self.publish_built(self.writer.lock(), table);
        self.ledger.note_peak();
        old
    }

    /// Removes every key, publishing an empty version; clearing a map that is
    /// already empty changes nothing and publishes nothing.
    ///
    /// # Panics
    ///
    /// If called from code running under this map's writer lock (inside a batch
    /// closure, say): it would deadlock, so it panics instead; see
    /// [the type's docs](SnapshotMap#user-code-and-the-writer-lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
    /// map.clear();
    /// assert!(map.is_empty());
    /// ```
    pub fn clear(&self)
    where
        S: Clone,
    {
        let hasher = self.current.load().table.hasher().clone();
        let writer = self.writer.lock();
        if self.current.load().table.is_empty() {
            return;
        }
        // The replaced version's entries drop here, outside the lock.
        drop(self.publish_built(writer, HashMap::with_hasher(hasher)));
        self.ledger.note_peak();
    }

    /// Publishes `table`, built from scratch, under `writer` (this map's lock,
    /// held), then unlocks and wakes watchers; returns the replaced version.
    fn publish_built(&self, writer: WriterGuard<'_>, table: HashMap<K, V, S>) -> Snapshot<K, V, S> {
        let (old, number) = self.publish(table, None);
        drop(writer);
        self.watch.published(number);
        old
    }
}

impl<K, V, S, P: Publish> SnapshotMap<K, V, S, P>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// Runs `f` on a [`Batch`] of the current version and publishes its
    /// changes as one version, which readers see all at once or not at all.
    /// Returns what `f` returns.
    ///
    /// The first change copies the table (O(len)); the rest cost what a
    /// `HashMap` operation costs. Other writers wait while `f` runs; readers do
    /// not. If `f` panics, nothing is published and the partial copy is dropped.
    /// If `f` changes nothing, nothing is copied or published. What the batch
    /// replaced or removed, and the replaced version, are dropped after the
    /// writer lock is released.
    ///
    /// # Panics
    ///
    /// If `f` (or `Hash`/`Eq`/`Clone` code it triggers) writes to this same map
    /// other than through its [`Batch`] — `map.insert`, another `map.batch`, … —
    /// that write panics instead of deadlocking, and the batch is aborted.
    /// Reads of the map inside `f` are fine: they see the version the batch
    /// started from. See [the type's docs](SnapshotMap#user-code-and-the-writer-lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let flags: SnapshotMap<&str, bool> = SnapshotMap::new();
    /// let enabled = flags.batch(|txn| {
    ///     txn.insert("new-checkout", true);
    ///     txn.insert("dark-mode", false);
    ///     txn.iter().filter(|(_, on)| **on).count()
    /// });
    /// assert_eq!((enabled, flags.len(), flags.version()), (1, 2, 1));
    /// ```
    pub fn batch<R>(&self, f: impl FnOnce(&mut Batch<'_, K, V, S>) -> R) -> R {
        match self.try_batch(|txn| Ok::<R, core::convert::Infallible>(f(txn))) {
            Ok(out) => out,
            Err(never) => match never {},
        }
    }

    /// As [`batch`](SnapshotMap::batch), but `f` may fail: if it returns `Err`,
    /// nothing it did is published, the error is returned, and the write counts
    /// as [`aborted`](SnapshotStats::aborted).
    ///
    /// # Panics
    ///
    /// As `batch`: a write to this same map from inside `f` panics instead of
    /// deadlocking; reads are fine.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let stock: SnapshotMap<_, _> = [("apples", 3u32)].into_iter().collect();
    /// let sell = |n: u32| {
    ///     stock.try_batch(|txn| {
    ///         let left = txn.update("apples", |have| have.wrapping_sub(n)).copied();
    ///         match left {
    ///             Some(left) if left <= 3 => Ok(left),
    ///             _ => Err("not enough apples"), // aborts: the update is dropped
    ///         }
    ///     })
    /// };
    /// assert_eq!(sell(5), Err("not enough apples"));
    /// assert_eq!(stock.get_cloned("apples"), Some(3));
    /// assert_eq!(sell(2), Ok(1));
    /// ```
    pub fn try_batch<R, E>(
        &self,
        f: impl FnOnce(&mut Batch<'_, K, V, S>) -> Result<R, E>,
    ) -> Result<R, E> {
        let writer = self.writer.lock();
        let base = self.current.load_full();
        let mut batch = Batch::new(&base);
        let closed = catch_unwind(AssertUnwindSafe(|| {
            let outcome = f(&mut batch);
            if outcome.is_ok() {
                // Inside the unwind guard: a `Hash` that panics while the copy
                // is trimmed aborts the batch like a panic in `f`.
                batch.seal();
            }
            outcome
        }));
        let out = match closed {
            Ok(Ok(out)) => out,
            Ok(Err(error)) => {
                Ledger::add(&self.ledger.aborted, 1);
                // Unlock first: the partial copy's entries drop outside the lock.
                drop(writer);
                drop(batch);
                return Err(error);
            }
            Err(panic) => {
                Ledger::add(&self.ledger.aborted, 1);
                // Release the lock unpoisoned, then drop the partial copy.
                drop(writer);
                drop(batch);
                resume_unwind(panic);
            }
        };
        let (changes, buried) = batch.into_parts();
        let published = changes.map(|(table, copied)| self.publish(table, copied));
        drop(writer);
        // Outside the lock, in this order: wake watchers (an executor may poll
        // inline and write), then drop what the batch took out of its copy and
        // the replaced version (and our `base` handle to it) — if nothing else
        // holds that version, its entries are freed now, and their `Drop` may
        // write to the map too.
        let old = published.map(|(old, number)| {
            self.watch.published(number);
            old
        });
        drop(buried);
        drop(old);
        drop(base);
        self.ledger.note_peak();
        Ok(out)
    }

    /// Inserts `value` for `key` and publishes, returning the previous value.
    ///
    /// **O(len)**: copies the whole table. To write several keys, use
    /// [`batch`](SnapshotMap::batch), which copies once for all of them.
    ///
    /// # Panics
    ///
    /// If called from code running under this map's writer lock (inside a batch
    /// closure, say): it would deadlock, so it panics instead; see
    /// [the type's docs](SnapshotMap#user-code-and-the-writer-lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// assert_eq!(map.insert(1, "a"), None);
    /// assert_eq!(map.insert(1, "b"), Some("a"));
    /// assert_eq!(map.version(), 2);
    /// ```
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.batch(|txn| txn.insert(key, value))
    }

    /// Removes `key` and publishes, returning its value. An absent key publishes
    /// nothing.
    ///
    /// **O(len)** when the key is present: copies the whole table. To remove
    /// several keys, use [`batch`](SnapshotMap::batch) or
    /// [`retain`](SnapshotMap::retain).
    ///
    /// # Panics
    ///
    /// If called from code running under this map's writer lock (inside a batch
    /// closure, say): it would deadlock, so it panics instead; see
    /// [the type's docs](SnapshotMap#user-code-and-the-writer-lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("k", 7);
    /// assert_eq!(map.remove("k"), Some(7));
    /// assert_eq!(map.remove("k"), None);
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.batch(|txn| txn.remove(key))
    }

    /// Replaces `key`'s value with `f(current)`, publishes, and returns the new
    /// value (a read-modify-write: writers are serialized, so `f` runs once and
    /// no update is lost). Absent key: returns `None` and publishes nothing.
    ///
    /// **O(len)**: copies the whole table. Batch several updates with
    /// [`batch`](SnapshotMap::batch). `f` runs under the writer lock; the
    /// replaced value is dropped after it is released.
    ///
    /// # Panics
    ///
    /// If `f` panics (nothing is published), or if `f` writes to this same map:
    /// that write panics instead of deadlocking.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let hits = SnapshotMap::new();
    /// hits.insert("/", 0u64);
    /// assert_eq!(hits.update("/", |n| n + 1), Some(1));
    /// assert_eq!(hits.update("/missing", |n| n + 1), None);
    /// ```
    pub fn update<Q>(&self, key: &Q, f: impl FnOnce(&V) -> V) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.batch(|txn| txn.update(key, f).cloned())
    }

    /// Keeps only the entries for which `keep` returns true, as one atomic
    /// publish (unlike [`SyncMap::retain`](crate::SyncMap::retain)). Copies only
    /// the kept entries; if it removes nothing, publishes nothing. `keep` runs
    /// under the writer lock; removed entries are dropped after it is released.
    ///
    /// # Panics
    ///
    /// If `keep` panics (nothing is published), or if `keep` writes to this same
    /// map: that write panics instead of deadlocking.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i * i)).collect();
    /// map.retain(|_, v| v % 2 == 0);
    /// assert_eq!(map.len(), 5);
    /// ```
    pub fn retain(&self, keep: impl FnMut(&K, &V) -> bool) {
        self.batch(|txn| txn.retain(keep));
    }
}

impl<K, V, S, P: Publish> SnapshotMap<K, V, S, P>
where
    K: Clone + 'static,
    V: Clone + 'static,
{
    /// Iterates clones of the current version's entries. The iterator holds that
    /// version, so it sees one consistent version however long it runs. To
    /// iterate by reference, iterate a [`snapshot`](SnapshotMap::snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
    /// let total: i32 = map.iter().map(|(_, v)| v).sum();
    /// assert_eq!(total, 3);
    /// ```
    pub fn iter(&self) -> SnapshotIntoIter<K, V, S> {
        SnapshotIntoIter::new(self.current.load_full())
    }
}

impl<K, V, S, P: Publish> Drop for SnapshotMap<K, V, S, P> {
    fn drop(&mut self) {
        // The current version stops being current; snapshots may keep it alive.
        self.ledger.record_retire(self.current.load().bytes());
    }
}
