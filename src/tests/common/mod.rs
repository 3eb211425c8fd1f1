//! Helpers shared by the integration test targets in `src/tests/` (each target is
//! registered in `Cargo.toml` and runs as its own process).
#![allow(dead_code)]

mod watchdog;
#[allow(unused_imports)] // each target uses what it needs
pub use watchdog::{no_hang, watchdog, HANG_LIMIT};

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use readmostly::reclaim::Reclaim;
use readmostly::SyncMap;

mod rng;
#[allow(unused_imports)] // Not every test target draws random numbers.
pub use rng::Rng;

/// The message of a panic payload (`panic!` with a literal or a format), or
/// "panic" for any other payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}

/// Scales a test's size down under Miri, which interprets every instruction.
pub fn size(native: u64, miri: u64) -> u64 {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

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
    /// Drops of an id already dropped. Counted as well as panicked on: the map
    /// contains panics from destructors it runs (in its drop and in the
    /// reclaimer), so the panic alone could go unnoticed.
    double_drops: AtomicUsize,
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
        lock(&self.inner.dropped).len()
    }

    /// Values created but not yet dropped.
    pub fn alive(&self) -> usize {
        self.created() - self.dropped()
    }

    /// Whether the value with this id has been dropped.
    pub fn is_dropped(&self, id: usize) -> bool {
        lock(&self.inner.dropped).contains(&id)
    }

    /// Drops of a value that had already been dropped (must stay 0).
    pub fn double_drops(&self) -> usize {
        self.inner.double_drops.load(Ordering::SeqCst)
    }

    /// Asserts that nothing was dropped twice and that exactly `alive` values
    /// are still alive.
    #[track_caller]
    pub fn assert_alive(&self, alive: usize) {
        assert_eq!(self.double_drops(), 0, "values dropped twice");
        assert_eq!(self.alive(), alive, "values alive");
    }
}

/// Locks `mutex`, ignoring poisoning (a test that panicked must not hide the
/// ledger from the checks of another).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

impl<T: Eq> Eq for Tracked<T> {}

/// Hashes the payload only, consistently with `PartialEq`, so that tracked keys
/// with equal payloads are the same map key.
impl<T: Hash> Hash for Tracked<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.payload.hash(state);
    }
}

/// Lets a map of tracked keys be queried by payload (`map.get(&7)`), without
/// creating tracked probes. `Hash` and `Eq` above agree with the payload's.
impl<T> std::borrow::Borrow<T> for Tracked<T> {
    fn borrow(&self) -> &T {
        &self.payload
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracked#{}({:?})", self.id, self.payload)
    }
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        let first = lock(&self.ledger.dropped).insert(self.id);
        if !first {
            self.ledger.double_drops.fetch_add(1, Ordering::SeqCst);
        }
        assert!(first, "value #{} dropped twice", self.id);
    }
}

/// Flushes the reclaimer until the map reports no pending garbage, or panics
/// after `timeout` with the stats (a leak or a stuck guard).
///
/// The map counts an object as freed once its destructor has run (wherever the
/// collector ran it); drop-counting tests still wait on their ledger too.
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
        assert!(
            start.elapsed() < timeout,
            "{what}: not reached after {timeout:?}"
        );
        std::thread::yield_now();
    }
}

/// A barrier for test threads that fails instead of hanging: if a thread of the
/// group panics (holding a [`Rendezvous::guard`]), every thread waiting at the
/// barrier, and every loop that checks [`Rendezvous::is_broken`], gives up with
/// a panic, so the test reports the first failure instead of deadlocking.
pub struct Rendezvous {
    threads: usize,
    /// (threads arrived in this generation, generation)
    state: Mutex<(usize, u64)>,
    changed: std::sync::Condvar,
    broken: std::sync::atomic::AtomicBool,
}

impl Rendezvous {
    pub fn new(threads: usize) -> Self {
        Rendezvous {
            threads,
            state: Mutex::new((0, 0)),
            changed: std::sync::Condvar::new(),
            broken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Waits until all `threads` have called `wait` in this generation.
    pub fn wait(&self) {
        let mut state = lock(&self.state);
        let generation = state.1;
        state.0 += 1;
        if state.0 == self.threads {
            *state = (0, generation + 1);
            self.changed.notify_all();
            return;
        }
        while state.1 == generation {
            self.check();
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(20))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Whether a thread of the group panicked.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Panics if a thread of the group panicked (call in waiting loops).
    #[track_caller]
    pub fn check(&self) {
        assert!(!self.is_broken(), "another test thread failed");
    }

    /// Breaks the barrier if the current thread panics while the guard lives.
    pub fn guard(&self) -> BreakOnPanic<'_> {
        BreakOnPanic(self)
    }
}

/// See [`Rendezvous::guard`].
pub struct BreakOnPanic<'a>(&'a Rendezvous);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.broken.store(true, Ordering::Release);
            self.0.changed.notify_all();
        }
    }
}

/// The batch size of a seize collector made by `Collector::new` (what
/// `reclaim::Seize::new` uses): 32 objects, or the CPU count if that is larger.
pub fn seize_batch_size() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .max(32)
}

/// Runs `future` to completion on this thread, with no async runtime: a waker
/// that unparks the thread, which parks between polls. Panics after
/// [`HANG_LIMIT`], so a lost wake-up fails instead of hanging.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let deadline = Instant::now() + HANG_LIMIT;
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        assert!(Instant::now() < deadline, "block_on: no wake-up");
        std::thread::park_timeout(Duration::from_millis(10));
    }
}
