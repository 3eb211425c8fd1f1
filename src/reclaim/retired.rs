//! A retired object and the ledger that counts retirements and frees.

use core::panic::AssertUnwindSafe;
use core::ptr::NonNull;
use std::panic::catch_unwind;

use crate::sync::{Arc, AtomicU64, Ordering};

/// What kind of object was retired; each kind has its own counter in
/// [`Stats`](crate::Stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value replaced by an insert or update, or removed.
    Value = 0,
    /// A map entry (key, hash and value slot) that left its last table.
    Entry = 1,
    /// A whole table: an old read table after a promotion, or a cleared one.
    Table = 2,
}

/// Counts what a map has retired and what has been freed since.
///
/// Shared (through an `Arc`) between a map and the retired objects still waiting
/// in a collector, so frees that happen after the map is gone are still counted
/// somewhere valid. All counters are monotonic statistics: `Relaxed` suffices
/// because no decision of the protocol reads them.
#[derive(Default, Debug)]
pub(crate) struct Ledger {
    retired: [AtomicU64; 3],
    retired_bytes: AtomicU64,
    freed: AtomicU64,
    freed_bytes: AtomicU64,
}

impl Ledger {
    fn record_retire(&self, kind: Kind, bytes: usize) {
        // Relaxed: a statistic, read by no protocol decision.
        self.retired[kind as usize].fetch_add(1, Ordering::Relaxed);
        // Relaxed: as above.
        self.retired_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Records that an object of `bytes` bytes is being freed.
    pub(crate) fn record_free(&self, bytes: usize) {
        // Relaxed: a statistic, read by no protocol decision.
        self.freed.fetch_add(1, Ordering::Relaxed);
        // Relaxed: as above.
        self.freed_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Objects of `kind` retired so far.
    pub(crate) fn retired(&self, kind: Kind) -> u64 {
        // Relaxed: a statistic.
        self.retired[kind as usize].load(Ordering::Relaxed)
    }

    /// `(count, bytes)` retired but not yet freed.
    pub(crate) fn pending(&self) -> (u64, u64) {
        // Frees are read before retirements: every free is preceded by its
        // retirement, so this order never reports more frees than retirements
        // for objects it has seen both of; saturating_sub covers the rest.
        // Relaxed: statistics.
        let freed = self.freed.load(Ordering::Relaxed);
        let freed_bytes = self.freed_bytes.load(Ordering::Relaxed);
        let retired: u64 = self.retired.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        let retired_bytes = self.retired_bytes.load(Ordering::Relaxed);
        (
            retired.saturating_sub(freed),
            retired_bytes.saturating_sub(freed_bytes),
        )
    }

    /// Objects freed so far.
    pub(crate) fn freed(&self) -> u64 {
        // Relaxed: a statistic.
        self.freed.load(Ordering::Relaxed)
    }
}

/// An object unlinked from a map, waiting for its reclamation scheme to free it.
///
/// Three words: a type-erased pointer, the function that frees it, and the ledger
/// that counts the free. Small enough that crossbeam-epoch stores it inline in its
/// garbage bags without a separate allocation.
///
/// A `Retired` that is dropped without [`reclaim`](Retired::reclaim) leaks its
/// object, which is safe; a scheme must call `reclaim` exactly once, when no guard
/// can reach the object any more.
#[must_use = "a retired object is freed only by `reclaim`"]
pub struct Retired {
    ptr: NonNull<()>,
    free: unsafe fn(NonNull<()>, &Ledger),
    ledger: Arc<Ledger>,
    /// For the loom backend's checks.
    #[cfg(loom)]
    kind: Kind,
}

impl core::fmt::Debug for Retired {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Retired").field("ptr", &self.ptr).finish()
    }
}

// SAFETY: `Retired` owns the object behind `ptr`. The maps create one only for
// objects whose contents are `Send` (their impls require `K: Send, V: Send`), so
// freeing it on whichever thread the scheme chooses is sound.
unsafe impl Send for Retired {}

impl Retired {
    /// Wraps an unlinked object and counts its retirement.
    ///
    /// # Safety
    ///
    /// `free(ptr, ledger)` must be sound to call once, on any thread, after the
    /// scheme's grace period, and must call `ledger.record_free` for the object.
    pub(crate) unsafe fn new(
        ptr: NonNull<()>,
        free: unsafe fn(NonNull<()>, &Ledger),
        kind: Kind,
        bytes: usize,
        ledger: &Arc<Ledger>,
    ) -> Self {
        ledger.record_retire(kind, bytes);
        Retired {
            ptr,
            free,
            ledger: Arc::clone(ledger),
            #[cfg(loom)]
            kind,
        }
    }

    /// The object's address.
    #[cfg(loom)]
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr().addr()
    }

    /// What kind of object it is.
    #[cfg(loom)]
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Frees the object.
    ///
    /// A panic from the object's destructor (a user `Drop` impl) is caught here:
    /// reclamation runs on an arbitrary thread inside an arbitrary map operation,
    /// where unwinding would corrupt the collector's own bookkeeping. The memory is
    /// still released; the panic message has already been printed by the panic hook.
    ///
    /// # Safety
    ///
    /// Call at most once, and only when no guard can still reach the object (the
    /// [`Reclaim`](super::Reclaim) contract).
    pub unsafe fn reclaim(self) {
        let Retired {
            ptr, free, ledger, ..
        } = self;
        // SAFETY: the caller upholds the grace period; `new`'s caller promised that
        // `free` is sound to call once after it.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { free(ptr, &ledger) }));
    }
}
