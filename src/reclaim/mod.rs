//! Deferred memory reclamation: the seam between the maps and a reclamation scheme.
//!
//! A reader of a [`SyncMap`](crate::SyncMap) loads raw pointers — the read table,
//! an entry's value — without taking a lock or touching a reference count. A
//! writer that unlinks such an object cannot free it at once: a reader that loaded
//! the pointer a moment earlier may still be dereferencing it. The writer
//! *retires* it instead, and the reclamation scheme frees it once no reader can
//! still hold it.
//!
//! The contract is two traits:
//!
//! * [`Reclaim`] is a scheme (for example crossbeam-epoch's global collector). Each
//!   map owns one value of it and calls [`Reclaim::pin`] to start a read.
//! * [`Guard`] is one pinned read. While a guard lives, every pointer it
//!   [`protect`](Guard::protect)ed stays valid, even if it is retired meanwhile.
//!
//! Backends in this crate:
//!
//! | backend | feature | scheme |
//! |---|---|---|
//! | `CrossbeamEpoch` | `crossbeam-epoch` (default) | epoch-based, crossbeam's global collector |
//! | `Seize` | `seize` | Hyaline (reference-counted batches), one collector per map |
//! | `LoomReclaim` | `--cfg loom` only | reference-counted guards that loom models, with use-after-free checks |
//!
//! The rest of the crate only ever talks to these traits, so adding a scheme is
//! one new module here.
//!
//! Every backend is also a *publication scheme* ([`Publish`]) for
//! [`SnapshotMap`](crate::SnapshotMap): its current version can be published
//! through a backend ([`ReclaimCell`]: readers pin, a replaced version's
//! reference is retired) instead of the default, arc-swap ([`ArcSwapPublish`]). Every retirement and every free is counted in a ledger
//! that [`SyncMap::stats`](crate::SyncMap::stats) reports, which is how the
//! documentation measures how long garbage lives under each scheme.

// Under `--cfg loom`, crossbeam-epoch runs inside loom's threads only when it is
// built on loom too (`--cfg crossbeam_loom`, its `loom` feature).
#[cfg(all(feature = "crossbeam-epoch", any(not(loom), crossbeam_loom)))]
mod crossbeam;
#[cfg(loom)]
mod loom;
mod publish;
mod retired;
mod spares;
// seize works on std's atomics, which loom replaces: it is not modelled.
#[cfg(all(feature = "seize", not(loom)))]
mod seize;

#[cfg(all(feature = "crossbeam-epoch", any(not(loom), crossbeam_loom)))]
pub use crossbeam::CrossbeamEpoch;
#[cfg(loom_mutant)]
pub(crate) use loom::mutant;
#[cfg(loom)]
pub use loom::{LoomGuard, LoomReclaim};
pub use publish::{ArcSwapCell, ArcSwapLoaded, ArcSwapPublish, AtomicArc, Publish};
#[cfg(not(loom))]
pub use publish::{ReclaimCell, ReclaimLoaded};
pub use retired::Retired;
pub(crate) use retired::{Kind, Ledger, Ticket};
#[cfg(all(feature = "seize", not(loom)))]
pub use seize::{Seize, SeizeGuard};

use crate::sync::{AtomicPtr, Ordering};

/// The reclamation scheme a map uses when none is named.
#[cfg(all(feature = "crossbeam-epoch", not(loom)))]
pub type DefaultReclaim = CrossbeamEpoch;

/// Under `--cfg loom` the default is the loom backend, which loom models
/// completely; see `src/reclaim/loom.rs`.
#[cfg(loom)]
pub type DefaultReclaim = LoomReclaim;

/// The reclamation scheme a map uses when none is named: `seize`, in a build
/// without the `crossbeam-epoch` feature.
#[cfg(all(feature = "seize", not(feature = "crossbeam-epoch"), not(loom)))]
pub type DefaultReclaim = Seize;

#[cfg(not(any(feature = "crossbeam-epoch", feature = "seize")))]
compile_error!(
    "readmostly needs a reclamation backend: enable the `crossbeam-epoch` feature (the default) or the `seize` feature"
);

/// A memory reclamation scheme.
///
/// # Safety
///
/// An implementation must guarantee, for every [`Retired`] object handed to
/// [`Guard::retire`]:
///
/// 1. **Grace period.** It is reclaimed (its [`Retired::reclaim`] called) only
///    after every guard that was live when `retire` was called has been dropped —
///    that is, only once no pointer [`protect`](Guard::protect)ed by such a guard
///    can still be dereferenced. Reclaiming later, or never, is allowed (it leaks
///    until the map is dropped, which frees it); reclaiming earlier is a
///    use-after-free in every map of this crate.
/// 2. **Unlinks on other threads count.** Clause 1 must hold when the object
///    was unlinked by a write that only happens-before the `retire` call — made
///    on another thread that then synchronized with the retiring one — and not
///    only when the retiring thread unlinked it itself: a guard pinned after the
///    call must not load it. A map's `flush` relies on it, retiring a sweep
///    record for everything other threads unlinked and entered in a shard of
///    the map's ledger (under that shard's lock), and so does every batch of
///    values. crossbeam-epoch and seize give it: after the call and before
///    reading which threads are pinned, the retiring side issues a `SeqCst`
///    fence (crossbeam-epoch, sealing a bag) or a process-wide barrier (seize,
///    handing a batch over).
/// 3. **Retire happens-before reclaim.** The `retire` call, and everything the
///    retiring thread did before it, happens-before the `reclaim` call, on
///    whichever thread that runs. The maps' destructors rely on it: they read,
///    with `Relaxed` loads, flags the retiring thread wrote just before retiring
///    (a delta handed over to its grown copy, a root's links), and must see them.
/// 4. **At most once.** `reclaim` is called at most once per retired object.
///
/// # Examples
///
/// Backends are chosen by type parameter; most users keep the default:
///
/// ```
/// use readmostly::{reclaim::DefaultReclaim, SyncMap};
/// use std::collections::hash_map::RandomState;
///
/// // `CrossbeamEpoch` (feature `crossbeam-epoch`) or `Seize` (feature `seize`);
/// // `DefaultReclaim` is whichever the build has, crossbeam-epoch first.
/// let map: SyncMap<u32, &str, RandomState, DefaultReclaim> = SyncMap::default();
/// map.insert(1, "one");
/// assert_eq!(map.get_cloned(&1), Some("one"));
/// ```
pub unsafe trait Reclaim: Default + Send + Sync + 'static {
    /// One pinned read; see [`Guard`].
    type Guard<'a>: Guard
    where
        Self: 'a;

    /// Starts a read: pointers protected by the returned guard stay valid until it
    /// is dropped.
    fn pin(&self) -> Self::Guard<'_>;

    /// Pushes what this thread retired toward reclamation, and frees what it can.
    ///
    /// Best effort, and about this thread only: garbage a live guard protects
    /// stays, and what other threads hold back in their own bags or batches is
    /// not reached. Maps call this from their own `flush`
    /// ([`SyncMap::flush`]), which retires a sweep record first and calls this
    /// until the sweep has run — that is what frees everything a map retired,
    /// whatever thread retired it. What one call does:
    ///
    /// * `CrossbeamEpoch`: moves this thread's bag to crossbeam-epoch's global
    ///   queue and collects from it, a few times (an object needs two epoch
    ///   advancements).
    /// * `Seize`: adds four records that own nothing to this thread's batch in
    ///   the map's collector and hands the batch over if it now holds an entry
    ///   per active thread.
    ///
    /// Every backend frees all of a map's garbage when the map is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{DefaultReclaim, Reclaim};
    ///
    /// // A no-op for a backend that has nothing to flush; never required.
    /// DefaultReclaim::default().flush();
    /// ```
    ///
    /// [`SyncMap::flush`]: crate::SyncMap::flush
    fn flush(&self) {}
}

/// A pinned read of a [`Reclaim`] scheme.
///
/// # Safety
///
/// See [`Reclaim`]: `retire` must not reclaim an object before every guard that
/// was live at the call has been dropped.
pub unsafe trait Guard {
    /// Loads `src` with `order` and protects the loaded pointer until this guard is
    /// dropped.
    fn protect<T>(&self, src: &AtomicPtr<T>, order: Ordering) -> *mut T;

    /// Hands `retired` to the scheme, which reclaims it once no guard live now can
    /// still reach it.
    ///
    /// # Safety
    ///
    /// The object must already be unreachable for guards pinned from now on (it
    /// was unlinked before this call), and must be retired only once.
    unsafe fn retire(&self, retired: Retired);

    /// Ends this read and starts a new one in place: what the guard protected
    /// may be freed, and what it protects from now on is loaded anew. For loops
    /// that hold a guard for long (`&mut self`: no reference obtained through
    /// the old read can outlive it).
    fn refresh(&mut self);
}

/// What keeps a loaded pointer valid: a [`Guard`] of a scheme, or an owned
/// guard's hold on a map's ledger (`sync_map::owned`). The maps' read paths take
/// either.
pub(crate) trait Protect {
    /// Loads `src` with `order`; the pointer stays valid while `self` lives.
    fn protect<T>(&self, src: &AtomicPtr<T>, order: Ordering) -> *mut T;
}

impl<G: Guard> Protect for G {
    #[inline]
    fn protect<T>(&self, src: &AtomicPtr<T>, order: Ordering) -> *mut T {
        Guard::protect(self, src, order)
    }
}
