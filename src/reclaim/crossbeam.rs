//! The crossbeam-epoch backend: epoch-based reclamation on crossbeam's global
//! collector.

use super::{Guard, Reclaim, Retired};
use crate::sync::{AtomicPtr, Ordering};

/// Epoch-based reclamation through [crossbeam-epoch]'s global collector.
///
/// Pinning costs a thread-local access and, for the outermost guard of a thread,
/// one store and one `SeqCst` fence; nested pins only bump a thread-local count.
/// Retired objects collect in thread-local bags and are freed two epoch
/// advancements later, by whichever thread happens to collect. A thread that stays
/// pinned holds back every free in the process: keep guards short-lived.
///
/// Because the collector is global, garbage may outlive the map that produced it
/// (it is freed by later pins on any thread); the map's own tables and values are
/// freed at once when the map is dropped.
///
/// # Examples
///
/// ```
/// use readmostly::{reclaim::CrossbeamEpoch, SyncMap};
/// use std::collections::hash_map::RandomState;
///
/// let map: SyncMap<&str, u32, RandomState, CrossbeamEpoch> = SyncMap::default();
/// map.insert("a", 1);
/// let pinned = map.pin();
/// assert_eq!(pinned.get("a"), Some(&1));
/// ```
///
/// [crossbeam-epoch]: https://docs.rs/crossbeam-epoch
#[derive(Clone, Copy, Debug, Default)]
pub struct CrossbeamEpoch;

// The contract's clauses, one by one: (1) crossbeam-epoch runs a deferred
// function only after every thread that was pinned when it was deferred has
// unpinned (its documented guarantee), and `Guard::retire` below defers through a
// pinned guard. (2) A bag is sealed with the global epoch read after a `SeqCst`
// fence, and a pin publishes its epoch before a `SeqCst` fence of its own: an
// unlink that happened-before the defer, on any thread, is seen by every pin the
// sealed epoch does not wait for. (3) The function travels from the deferring
// thread's bag to the collecting thread through crossbeam's global queue, whose
// push (Release) and pop (Acquire) order the defer before the call. (4) Each
// deferred function runs once.
// SAFETY: clauses 1-4 of the `Reclaim` contract, as argued above.
unsafe impl Reclaim for CrossbeamEpoch {
    type Guard<'a> = crossbeam_epoch::Guard;

    #[inline]
    fn pin(&self) -> crossbeam_epoch::Guard {
        crossbeam_epoch::pin()
    }

    fn flush(&self) {
        // One flush seals this thread's bag and advances the epoch at most once;
        // garbage needs two advancements past its epoch, so repeat a few times.
        for _ in 0..4 {
            crossbeam_epoch::pin().flush();
        }
    }
}

// SAFETY: `retire` defers through the pinned guard (never `unprotected()`, which
// would run the closure at once), so crossbeam-epoch runs it only after all guards
// pinned at that moment are gone.
unsafe impl Guard for crossbeam_epoch::Guard {
    #[inline]
    fn protect<T>(&self, src: &AtomicPtr<T>, order: Ordering) -> *mut T {
        // The pin's SeqCst fence orders this thread's epoch announcement before the
        // load, which is all epoch protection needs: a plain load.
        src.load(order)
    }

    unsafe fn retire(&self, retired: Retired) {
        // SAFETY: the caller unlinked the object before retiring it (the trait's
        // contract); `Retired` is `Send`, and the closure owns it.
        unsafe { self.defer_unchecked(move || retired.reclaim()) }
    }

    fn refresh(&mut self) {
        // Unpins and pins again when this is the thread's only guard; with
        // nested guards the thread stays pinned (crossbeam's `repin`).
        self.repin();
    }
}
