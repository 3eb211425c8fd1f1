//! The writer lock of a [`SnapshotMap`](crate::SnapshotMap), which knows the
//! thread holding it: a write started by the thread that already holds the lock
//! — from a batch closure, or from `Hash`, `Eq`, `PartialEq` or `Clone` code run
//! by a write — would wait for itself forever, so it panics instead.
//!
//! The check costs a thread-local read and one relaxed load per write, next to
//! a write's O(len) table copy.

// Not the `crate::sync` shim's atomics: the owner field is a diagnostic that no
// other thread's correctness depends on, and a loom-modelled atomic would only
// multiply the interleavings of every loom model of the map for nothing.
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::{self, Mutex, MutexGuard};

/// What a re-entrant write panics with.
pub(crate) const REENTRANT_WRITE: &str =
    "SnapshotMap: a write to this map was started by the thread that holds its writer lock \
     (from inside a batch, try_batch, update, retain, compare_exchange or remove_if closure, \
     or from Hash, Eq, PartialEq, Clone or predicate code run by one of its writes); \
     it would deadlock. Inside a batch, write through the `Batch` handle";

/// A per-thread id, never reused: 0 is no thread, the first thread to write gets 1.
/// (`Relaxed` increments: uniqueness is all that matters, and every read-modify-
/// write of one atomic sees the latest value whatever its ordering.)
static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

#[cfg(not(loom))]
std::thread_local! {
    static THREAD_ID: u64 = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
}
// loom runs its threads on one OS thread: each needs loom's thread-locals.
#[cfg(loom)]
loom::thread_local! {
    static THREAD_ID: u64 = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
}

/// This thread's id; 0 while its thread-locals are being destroyed (a value
/// dropped by a thread-local destructor may still write to a map), which turns
/// the check off for that moment.
fn current_thread() -> u64 {
    THREAD_ID.try_with(|id| *id).unwrap_or(0)
}

/// The lock every writer of one map takes, and who holds it.
pub(crate) struct WriterLock {
    lock: Mutex<()>,
    /// The id of the thread holding `lock`, 0 when none (or when its holder's id
    /// was unavailable). Stored only by the holder, under the lock.
    ///
    /// Relaxed throughout: a thread compares it only with its own id, and only
    /// that thread ever stores its id. By coherence a thread's load never returns
    /// a value older than its own latest store to the field, so it reads its own
    /// id exactly when its latest store was that id — when it holds the lock.
    owner: AtomicU64,
}

impl WriterLock {
    pub(crate) fn new() -> Self {
        WriterLock {
            lock: Mutex::new(()),
            owner: AtomicU64::new(0),
        }
    }

    /// Takes the lock, waiting for the current writer if there is one.
    ///
    /// # Panics
    ///
    /// With [`REENTRANT_WRITE`] if this thread already holds it.
    pub(crate) fn lock(&self) -> WriterGuard<'_> {
        let me = current_thread();
        // Relaxed: see `owner` — only this thread ever stores `me`.
        if me != 0 && self.owner.load(Ordering::Relaxed) == me {
            panic!("{REENTRANT_WRITE}");
        }
        let guard = sync::lock(&self.lock);
        // Relaxed: read back only by this thread (see `owner`).
        self.owner.store(me, Ordering::Relaxed);
        WriterGuard {
            owner: &self.owner,
            _lock: guard,
        }
    }

    /// Whether the calling thread holds the lock (so waiting for another writer
    /// to publish would wait forever).
    pub(crate) fn held_by_current_thread(&self) -> bool {
        let me = current_thread();
        // Relaxed: see `owner`.
        me != 0 && self.owner.load(Ordering::Relaxed) == me
    }
}

/// The held writer lock; released on drop.
pub(crate) struct WriterGuard<'a> {
    owner: &'a AtomicU64,
    // Dropped after `Drop::drop` below has cleared `owner`.
    _lock: MutexGuard<'a, ()>,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // Relaxed: see `owner`; the unlock that follows publishes it to the next
        // holder anyway.
        self.owner.store(0, Ordering::Relaxed);
    }
}
