//! Unit tests of the SyncMap protocol.
//!
//! This module holds what every test file shares: [`SyncMap::check_invariants`],
//! which checks the structural invariants of the design brief against the private
//! state of a quiescent map, small accessors for that state, a drop-counting value
//! type with a per-test ledger, and flush helpers for the reclaimer.
//!
//! The tests run on std's atomics only (loom has its own suite in `loom-tests/`).
#![cfg(not(loom))]

mod bad_input;
mod differential;
mod invariants;
mod promotion;

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash, Hasher};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::entry::Entry;
use super::table::{find, Table};
use super::value;
use super::SyncMap;
use crate::reclaim::{DefaultReclaim, Reclaim};
use crate::sync;

/// How long a flush helper waits for garbage to be freed before failing. Generous:
/// the crossbeam-epoch collector is global, so a test running in parallel that
/// holds a guard delays every free in the process.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// What an entry's slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Live,
    Deleted,
    Expunged,
}

impl Slot {
    fn of<K, V>(entry: &Entry<K, V>) -> Slot {
        let ptr = entry.load();
        if ptr.is_null() {
            Slot::Deleted
        } else if ptr == value::expunged() {
            Slot::Expunged
        } else {
            Slot::Live
        }
    }
}

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Checks the protocol's structural invariants. Call it only while no writer
    /// runs (it takes the lock, so it excludes locked writers, but lock-free CASes
    /// on entries could still change slots under it).
    ///
    /// * `amended` is set exactly while the dirty table exists;
    /// * invariant 1: no expunged entry is in `dirty`; while `dirty` exists, every
    ///   non-expunged entry of `read` is in it (the same `Arc`);
    /// * without `dirty`, `read` holds no expunged entry (an expunged entry is
    ///   revived only into an existing dirty table);
    /// * a key appears at most once per table, and a key in both tables is the same
    ///   entry; each entry's cached hash is its key's hash;
    /// * the promotion rule holds: `misses < len(dirty)` while it exists, 0 without;
    /// * `len()` is the number of live entries in `read ∪ dirty`.
    pub(crate) fn check_invariants(&self) {
        let guard = self.read_side.reclaim.pin();
        let dirty = sync::lock(&self.write_side.dirty);
        let read = self.read_side.read.load(&guard);
        assert_eq!(
            read.amended,
            dirty.table.is_some(),
            "`amended` must be set exactly while the dirty table exists"
        );
        self.check_table("read", read.table);
        let mut live: HashSet<*const Entry<K, V>> = read
            .table
            .iter()
            .filter(|e| Slot::of(e) == Slot::Live)
            .map(Arc::as_ptr)
            .collect();
        match &dirty.table {
            Some(table) => {
                self.check_table("dirty", table);
                let in_dirty: HashSet<*const Entry<K, V>> = table.iter().map(Arc::as_ptr).collect();
                for entry in table.iter() {
                    assert_ne!(
                        Slot::of(entry),
                        Slot::Expunged,
                        "invariant 1: an expunged entry is in the dirty table"
                    );
                    if Slot::of(entry) == Slot::Live {
                        live.insert(Arc::as_ptr(entry));
                    }
                    if let Some(in_read) = find(read.table, entry.hash, entry.key()) {
                        assert!(
                            Arc::ptr_eq(in_read, entry),
                            "a key is in both tables as two different entries"
                        );
                    }
                }
                for entry in read.table.iter() {
                    if Slot::of(entry) != Slot::Expunged {
                        assert!(
                            in_dirty.contains(&Arc::as_ptr(entry)),
                            "invariant 1: a non-expunged entry of the read table ({:?}) \
                             is missing from the dirty table",
                            Slot::of(entry)
                        );
                    }
                }
                assert!(
                    dirty.misses < table.len(),
                    "promotion rule: {} misses with a dirty table of {} should have promoted",
                    dirty.misses,
                    table.len()
                );
            }
            None => {
                for entry in read.table.iter() {
                    assert_ne!(
                        Slot::of(entry),
                        Slot::Expunged,
                        "an expunged entry is in the read table while there is no dirty table"
                    );
                }
                assert_eq!(dirty.misses, 0, "misses counted without a dirty table");
            }
        }
        let raw_len = self.write_side.len.load(Ordering::Relaxed);
        assert!(raw_len >= 0, "the live-key count went negative: {raw_len}");
        assert_eq!(
            self.len(),
            live.len(),
            "len() must equal the live entries of read ∪ dirty"
        );
    }

    fn check_table(&self, name: &str, table: &Table<K, V>) {
        let mut seen = HashSet::new();
        for entry in table.iter() {
            assert!(
                seen.insert(Arc::as_ptr(entry)),
                "{name}: one entry stored twice"
            );
            assert_eq!(
                self.hash(entry.key()),
                entry.hash,
                "{name}: an entry's cached hash is not its key's hash"
            );
            let found = find(table, entry.hash, entry.key()).expect("an entry finds itself");
            assert!(
                Arc::ptr_eq(found, entry),
                "{name}: a key appears twice in one table"
            );
        }
    }

    /// The slot state of `key`'s entry in the read table and in the dirty table.
    pub(crate) fn slots<Q>(&self, key: &Q) -> (Option<Slot>, Option<Slot>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.read_side.reclaim.pin();
        let dirty = sync::lock(&self.write_side.dirty);
        let read = self.read_side.read.load(&guard);
        let hash = self.hash(key);
        let in_read = find(read.table, hash, key).map(|e| Slot::of(e));
        let in_dirty = dirty
            .table
            .as_ref()
            .and_then(|t| find(t, hash, key))
            .map(|e| Slot::of(e));
        (in_read, in_dirty)
    }

    /// `key`'s entry in the read table, and whether the dirty table holds the very
    /// same entry.
    pub(crate) fn read_entry_shared<Q>(&self, key: &Q) -> Option<(Arc<Entry<K, V>>, bool)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.read_side.reclaim.pin();
        let dirty = sync::lock(&self.write_side.dirty);
        let read = self.read_side.read.load(&guard);
        let hash = self.hash(key);
        let entry = Arc::clone(find(read.table, hash, key)?);
        let shared = dirty
            .table
            .as_ref()
            .and_then(|t| find(t, hash, key))
            .is_some_and(|d| Arc::ptr_eq(d, &entry));
        Some((entry, shared))
    }

    /// Entries in the read table (live, deleted or expunged).
    pub(crate) fn read_len(&self) -> usize {
        let guard = self.read_side.reclaim.pin();
        self.read_side.read.load(&guard).table.len()
    }

    /// Entries in the dirty table, if it exists.
    pub(crate) fn dirty_len(&self) -> Option<usize> {
        sync::lock(&self.write_side.dirty)
            .table
            .as_ref()
            .map(Table::len)
    }

    /// Whether the read table is amended.
    pub(crate) fn amended(&self) -> bool {
        let guard = self.read_side.reclaim.pin();
        self.read_side.read.load(&guard).amended
    }

    /// The misses counted toward the next promotion.
    pub(crate) fn pending_misses(&self) -> usize {
        sync::lock(&self.write_side.dirty).misses
    }
}

/// Flushes the reclaimer until `map` reports no pending garbage; fails after
/// [`FLUSH_TIMEOUT`] with the stats (a leak, or a guard that is never dropped).
pub(crate) fn flush_until_quiet<K, V, S, R: Reclaim>(map: &SyncMap<K, V, S, R>) {
    let start = Instant::now();
    loop {
        map.flush();
        if map.stats().pending == 0 {
            return;
        }
        assert!(
            start.elapsed() < FLUSH_TIMEOUT,
            "garbage still pending after {FLUSH_TIMEOUT:?}: {:?}",
            map.stats()
        );
        std::thread::yield_now();
    }
}

/// Flushes the default reclaimer until `done()` holds (for garbage left by a map
/// that is gone); fails after [`FLUSH_TIMEOUT`].
pub(crate) fn flush_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    let reclaim = DefaultReclaim::default();
    while !done() {
        reclaim.flush();
        assert!(
            start.elapsed() < FLUSH_TIMEOUT,
            "{what}: not reached after {FLUSH_TIMEOUT:?}"
        );
        std::thread::yield_now();
    }
}

/// A per-test record of [`Counted`] values: how many were made and which were
/// dropped. A double drop is counted (and panics, though the map may contain that
/// panic inside the reclaimer, hence the counter).
#[derive(Clone, Default)]
pub(crate) struct DropLog {
    inner: Arc<DropLogInner>,
}

#[derive(Default)]
struct DropLogInner {
    created: AtomicUsize,
    dropped: Mutex<HashSet<usize>>,
    double_drops: AtomicUsize,
}

impl DropLog {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A new counted value.
    pub(crate) fn make<T>(&self, payload: T) -> Counted<T> {
        self.make_with_bomb(payload, None)
    }

    /// A new counted value whose drop panics (after being counted) while `bomb`
    /// is set.
    pub(crate) fn make_with_bomb<T>(
        &self,
        payload: T,
        bomb: Option<Arc<AtomicBool>>,
    ) -> Counted<T> {
        let id = self.inner.created.fetch_add(1, Ordering::Relaxed);
        Counted {
            id,
            payload,
            log: Arc::clone(&self.inner),
            bomb,
        }
    }

    pub(crate) fn created(&self) -> usize {
        self.inner.created.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped(&self) -> usize {
        self.inner.dropped.lock().unwrap().len()
    }

    pub(crate) fn alive(&self) -> usize {
        self.created() - self.dropped()
    }

    pub(crate) fn is_dropped(&self, id: usize) -> bool {
        self.inner.dropped.lock().unwrap().contains(&id)
    }

    pub(crate) fn double_drops(&self) -> usize {
        self.inner.double_drops.load(Ordering::Relaxed)
    }

    /// Flushes the reclaimer until the values `ids` have been dropped.
    ///
    /// (Waiting for `stats().pending == 0` is not enough: the ledger counts an
    /// object as freed just before its destructor runs, possibly on another
    /// thread — see `stats_pending_counts_an_object_until_its_destructor_has_run`.)
    pub(crate) fn flush_until_dropped(&self, ids: &[usize]) {
        flush_until("the given values dropped", || {
            ids.iter().all(|&id| self.is_dropped(id))
        });
        assert_eq!(self.double_drops(), 0, "a value was dropped twice");
    }

    /// Flushes the reclaimer until every value made so far has been dropped, then
    /// checks that none was dropped twice.
    pub(crate) fn flush_until_all_dropped(&self) {
        flush_until("every counted value dropped", || self.alive() == 0);
        assert_eq!(self.double_drops(), 0, "a value was dropped twice");
    }
}

/// A value whose drop is recorded in a [`DropLog`]. Hashes and compares by payload
/// only, so it serves as a key too; a clone is a new value with its own id.
pub(crate) struct Counted<T> {
    pub(crate) id: usize,
    pub(crate) payload: T,
    log: Arc<DropLogInner>,
    bomb: Option<Arc<AtomicBool>>,
}

impl<T: Clone> Clone for Counted<T> {
    fn clone(&self) -> Self {
        let id = self.log.created.fetch_add(1, Ordering::Relaxed);
        Counted {
            id,
            payload: self.payload.clone(),
            log: Arc::clone(&self.log),
            bomb: self.bomb.clone(),
        }
    }
}

impl<T: PartialEq> PartialEq for Counted<T> {
    fn eq(&self, other: &Self) -> bool {
        self.payload == other.payload
    }
}

impl<T: Eq> Eq for Counted<T> {}

impl<T: Hash> Hash for Counted<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.payload.hash(state);
    }
}

impl<T: fmt::Debug> fmt::Debug for Counted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counted#{}({:?})", self.id, self.payload)
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        let first = self.log.dropped.lock().unwrap().insert(self.id);
        if !first {
            self.log.double_drops.fetch_add(1, Ordering::Relaxed);
            panic!("Counted#{} dropped twice", self.id);
        }
        if self
            .bomb
            .as_ref()
            .is_some_and(|bomb| bomb.load(Ordering::Relaxed))
        {
            panic!("Counted#{}: drop panics on purpose", self.id);
        }
    }
}

/// A small deterministic PRNG (xorshift64*) for the threaded tests.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn check_invariants_accepts_fresh_and_used_maps() {
    let map: SyncMap<u32, u32> = SyncMap::new();
    map.check_invariants();
    for i in 0..10 {
        map.insert(i, i);
        map.check_invariants();
    }
    map.promote();
    map.check_invariants();
    map.remove(&3);
    map.insert(100, 100);
    map.check_invariants();
    assert_eq!(map.slots(&3), (Some(Slot::Expunged), None));
    assert_eq!(map.slots(&4), (Some(Slot::Live), Some(Slot::Live)));
    assert_eq!(map.slots(&100), (None, Some(Slot::Live)));
}

#[test]
fn counted_values_are_dropped_once() {
    let log = DropLog::new();
    let a = log.make(1);
    let b = a.clone();
    assert_ne!(a.id, b.id);
    assert_eq!(log.alive(), 2);
    drop(a);
    assert_eq!((log.alive(), log.dropped()), (1, 1));
    drop(b);
    log.flush_until_all_dropped();
}
