//! Helpers shared by the unit tests of both maps (`sync_map/tests/` for
//! [`SyncMap`], `classic/tests/` for [`ClassicSyncMap`]): a drop-counting value
//! type with a per-test log, flush helpers for the reclaimer, a small PRNG, the
//! state of an entry's slot, and the hang watchdog (`no_hang`, shared with the
//! integration targets).
//!
//! (The integration targets in `src/tests/` have their own helpers in
//! `src/tests/common/`: they see only the public API, and this module is compiled
//! only into the crate's unit tests.)
#![cfg(not(loom))]

use core::fmt;
use core::hash::{Hash, Hasher};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::classic::entry::{self, Entry};
use crate::classic::ClassicSyncMap;
use crate::reclaim::{DefaultReclaim, Reclaim};
use crate::{Stats, SyncMap};

// One watchdog for unit and integration tests: the file lives with the
// integration targets' helpers and is compiled here too.
#[path = "tests/common/watchdog.rs"]
mod watchdog;
#[allow(unused_imports)] // what a given test build uses varies
pub(crate) use watchdog::{no_hang, watchdog, HANG_LIMIT};

/// How long a flush helper waits for garbage to be freed before failing. Generous:
/// the crossbeam-epoch collector is global, so a test running in parallel that
/// holds a guard delays every free in the process.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// What a key's value state is: a classic entry's slot, or a SyncMap slot's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Live,
    /// A tombstone: removed, the entry still in its table.
    Deleted,
    /// Classic: deleted and dropped from the map's tables (see `classic/entry.rs`).
    Expunged,
}

impl Slot {
    pub(crate) fn of<K, V>(entry: &Entry<K, V>) -> Slot {
        let ptr = entry.load();
        if ptr.is_null() {
            Slot::Deleted
        } else if ptr == entry::expunged() {
            Slot::Expunged
        } else {
            Slot::Live
        }
    }
}

/// A map whose garbage the flush helpers can wait for.
pub(crate) trait Garbage {
    fn flush(&self);
    fn stats(&self) -> Stats;
}

impl<K, V, S, R: Reclaim> Garbage for SyncMap<K, V, S, R> {
    fn flush(&self) {
        SyncMap::flush(self);
    }
    fn stats(&self) -> Stats {
        SyncMap::stats(self)
    }
}

impl<K, V, S, R: Reclaim> Garbage for ClassicSyncMap<K, V, S, R> {
    fn flush(&self) {
        ClassicSyncMap::flush(self);
    }
    fn stats(&self) -> Stats {
        ClassicSyncMap::stats(self)
    }
}

/// Flushes the reclaimer until `map` reports no pending garbage; fails after
/// [`FLUSH_TIMEOUT`] with the stats (a leak, or a guard that is never dropped).
pub(crate) fn flush_until_quiet(map: &impl Garbage) {
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

/// Flushes `map` until nothing it retired is pending — on every backend a
/// flush frees what was retired before it once no guard live during it remains,
/// whatever threads retired it — and checks that exactly `expected` tracked
/// values are alive.
#[track_caller]
pub(crate) fn settle(map: &impl Garbage, alive: impl Fn() -> usize, expected: usize) {
    flush_until_quiet(map);
    assert_eq!(alive(), expected, "values alive after flushing");
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

/// A key (or value) whose `Hash` or `Eq` panics on demand, for the tests of
/// user code that panics inside a map operation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Evil {
    pub(crate) id: u32,
    pub(crate) panic_hash: bool,
    pub(crate) panic_eq: bool,
    /// Hashes as this id instead of its own (a full-hash collision with that
    /// key; the two still differ by `Eq`).
    pub(crate) alias: Option<u32>,
    /// `Eq` calls allowed before `Eq` panics.
    pub(crate) eq_fuse: Option<Arc<AtomicUsize>>,
}

impl Hash for Evil {
    fn hash<H: Hasher>(&self, state: &mut H) {
        assert!(!self.panic_hash, "Hash panics on purpose");
        self.alias.unwrap_or(self.id).hash(state);
    }
}

impl PartialEq for Evil {
    fn eq(&self, other: &Self) -> bool {
        assert!(!(self.panic_eq || other.panic_eq), "Eq panics on purpose");
        for fuse in [&self.eq_fuse, &other.eq_fuse].into_iter().flatten() {
            let burnt = fuse
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err();
            assert!(!burnt, "Eq panics on purpose (fuse burnt)");
        }
        self.id == other.id
    }
}

impl Eq for Evil {}

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
    /// (A map's `stats().pending == 0` says its own garbage is freed; values left
    /// in the reclaimer by a map that is gone, or by another map, are waited for
    /// here by id.)
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
    /// The payload is cloned first: a payload `Clone` that panics (the tests of
    /// panicking promotions) makes no counted value, so none is counted.
    fn clone(&self) -> Self {
        let payload = self.payload.clone();
        let id = self.log.created.fetch_add(1, Ordering::Relaxed);
        Counted {
            id,
            payload,
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

// The seeded generator the unit tests share with the integration tests: one
// file, src/tests/common/rng.rs, included here by path.
#[path = "tests/common/rng.rs"]
mod rng;
pub(crate) use rng::Rng;

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

#[test]
fn the_watchdog_returns_what_the_body_returns() {
    assert_eq!(no_hang(|| 6 * 7), 42);
}

#[test]
#[should_panic(expected = "on purpose")]
fn the_watchdog_re_raises_the_body_s_panic() {
    no_hang(|| panic!("on purpose"));
}

#[test]
#[should_panic(expected = "did not finish")]
fn the_watchdog_fails_a_body_that_hangs() {
    // A body that never finishes: parked for good (left behind when the test ends).
    watchdog(Duration::from_millis(50), || loop {
        std::thread::park();
    });
}
