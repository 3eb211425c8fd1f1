//! Helpers shared by the integration test targets in `src/tests/` (each target is
//! registered in `Cargo.toml` and runs as its own process).
#![allow(dead_code)]

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use readmostly::reclaim::Reclaim;
use readmostly::SyncMap;

/// Records every drop of the values it hands out, and catches double drops.
///
/// Each [`Tracked`] value carries a unique id; dropping it twice panics (so a
/// double free in the map fails the test even if the allocator does not notice).
#[derive(Clone, Default)]
pub struct DropLedger {
    inner: Arc<LedgerInner>,
}

#[derive(Default)]
struct LedgerInner {
    created: AtomicUsize,
    dropped: Mutex<HashSet<usize>>,
}

impl DropLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new tracked value carrying `payload`.
    pub fn track<T>(&self, payload: T) -> Tracked<T> {
        let id = self.inner.created.fetch_add(1, Ordering::Relaxed);
        Tracked {
            id,
            payload,
            ledger: Arc::clone(&self.inner),
        }
    }

    pub fn created(&self) -> usize {
        self.inner.created.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> usize {
        self.inner.dropped.lock().unwrap().len()
    }

    /// Values created but not yet dropped.
    pub fn alive(&self) -> usize {
        self.created() - self.dropped()
    }
}

/// A value whose drop is recorded in a [`DropLedger`]. Compares by payload only.
pub struct Tracked<T> {
    id: usize,
    pub payload: T,
    ledger: Arc<LedgerInner>,
}

impl<T> Tracked<T> {
    pub fn id(&self) -> usize {
        self.id
    }
}

impl<T: Clone> Clone for Tracked<T> {
    /// A clone is a new tracked value with its own id.
    fn clone(&self) -> Self {
        let id = self.ledger.created.fetch_add(1, Ordering::Relaxed);
        Tracked {
            id,
            payload: self.payload.clone(),
            ledger: Arc::clone(&self.ledger),
        }
    }
}

impl<T: PartialEq> PartialEq for Tracked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.payload == other.payload
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracked#{}({:?})", self.id, self.payload)
    }
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        let first = self.ledger.dropped.lock().unwrap().insert(self.id);
        assert!(first, "value #{} dropped twice", self.id);
    }
}

/// Flushes the reclaimer until the map reports no pending garbage, or panics
/// after `timeout` with the stats (a leak or a stuck guard).
pub fn flush_until_quiet<K, V, S, R>(map: &SyncMap<K, V, S, R>, timeout: Duration)
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    let start = Instant::now();
    loop {
        map.flush();
        if map.stats().pending == 0 {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "garbage still pending after {timeout:?}: {:?}",
            map.stats()
        );
        std::thread::yield_now();
    }
}

/// Flushes the default reclaimer until `done()` holds (for checks after the map
/// is gone), or panics after `timeout`.
pub fn flush_until(mut done: impl FnMut() -> bool, timeout: Duration, what: &str) {
    let start = Instant::now();
    let probe: SyncMap<u8, u8> = SyncMap::new();
    while !done() {
        probe.flush();
        assert!(start.elapsed() < timeout, "{what}: not reached after {timeout:?}");
        std::thread::yield_now();
    }
}
