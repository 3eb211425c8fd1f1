//! The seize backend: Hyaline-style reference-counted batches, one collector per
//! map.

use super::{Guard, Reclaim, Retired};
use crate::sync::{AtomicPtr, Ordering};

use seize::Guard as _;

/// Reclamation through a [seize] collector that the map owns.
///
/// seize implements Hyaline: retired objects are gathered in per-thread batches,
/// and a full batch is handed to the threads active at that moment, each of which
/// releases its reference when it leaves its guard; the last one frees the batch.
/// Reclamation is therefore spread over the threads that were reading, and a
/// thread that stays pinned holds back only the batches retired while it was
/// active — not, as with an epoch, everything retired after it pinned.
///
/// Pinning costs a thread-local lookup in the collector's thread table and a store
/// to the thread's reservation; a load through the guard is a plain load (seize
/// pairs it with a process-wide barrier on the reclaiming side, `membarrier` on
/// Linux). Each retirement allocates a small record.
///
/// # Batches, and what a flush reaches
///
/// Retired objects wait in a batch that belongs to the retiring thread — kept
/// *per thread id, inside the map's collector* — until the batch is full (32
/// objects with [`Seize::new`], or the machine's CPU count rounded up to a power
/// of two if that is larger; see [`Seize::with_batch_size`]), and seize hands a
/// batch over only once it holds an entry per thread active in the collector.
/// seize's own flush reaches only the calling thread's batch, so a thread that
/// retired fewer objects than a batch and then exited or went idle would leave
/// them pending for good.
///
/// A map's `flush` ([`SyncMap::flush`](crate::SyncMap::flush)) does not depend
/// on that: it retires a *sweep record* that frees everything the map retired
/// before it, and pads this thread's batch until seize hands it over (this
/// backend's [`Reclaim::flush`] adds four entries that own nothing, and the
/// map repeats it while that makes progress, and a few times more). Once
/// every guard live during the flush is gone, all of it is freed — at once if
/// none was live (on any thread, the caller's included), and otherwise by the
/// last of those guards as it is dropped, with no further call. (With more
/// than 32 threads inside a guard during the flush, the padding may not reach
/// seize's threshold; the sweep then waits in this thread's batch for its next
/// flush or retirements.)
///
/// **The map's drop frees everything.** Every map owns its collector, so nothing
/// a map retired outlives it: dropping the map frees every object it ever
/// retired — partial batches included — exactly once, whatever threads have
/// exited (the map's ledger frees their contents, and the collector frees its
/// remaining records). And another map's guards never hold this map's garbage
/// back.
///
/// # Examples
///
/// ```
/// use readmostly::{reclaim::Seize, SyncMap};
/// use std::collections::hash_map::RandomState;
///
/// // `SyncMap::default()` builds the default backend's map; name this one.
/// let map: SyncMap<&str, u32, RandomState, Seize> =
///     SyncMap::with_hasher_and_reclaim(RandomState::new(), Seize::new());
/// map.insert("a", 1);
/// let pinned = map.pin();
/// assert_eq!(pinned.get("a"), Some(&1));
/// ```
///
/// [seize]: https://docs.rs/seize
#[derive(Debug, Default)]
pub struct Seize {
    collector: seize::Collector,
}

impl Seize {
    /// A backend with its own collector, with seize's default batch size.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{reclaim::Seize, SyncMap};
    /// use std::collections::hash_map::RandomState;
    ///
    /// let map = SyncMap::with_hasher_and_reclaim(RandomState::new(), Seize::new());
    /// map.insert(1, "one");
    /// assert_eq!(map.get_cloned(&1), Some("one"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend whose collector starts reclaiming once `batch_size` objects are
    /// retired on a thread. Smaller batches free sooner and cost more per
    /// retirement; a batch is retired only once it holds at least as many objects
    /// as there are threads active in the collector, so with more active threads
    /// than `batch_size` batches grow past it. (seize uses the value as given:
    /// unlike [`Seize::new`]'s default, it is not raised to the CPU count.)
    /// A `batch_size` of 0 acts as 1: every retirement tries a hand-over.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::{reclaim::Seize, SyncMap};
    /// use std::collections::hash_map::RandomState;
    ///
    /// let map = SyncMap::with_hasher_and_reclaim(RandomState::new(), Seize::with_batch_size(8));
    /// map.insert(1, "one");
    /// map.insert(1, "uno");
    /// assert_eq!(map.get_cloned(&1), Some("uno"));
    /// ```
    pub fn with_batch_size(batch_size: usize) -> Self {
        Self {
            collector: seize::Collector::new().batch_size(batch_size),
        }
    }
}

/// Frees the record `Guard::retire` boxed, then what it stands for.
///
/// # Safety
///
/// `ptr` came from `Box::into_raw` in `retire`, and seize calls this once, after
/// every guard active at the retirement has been dropped or refreshed.
unsafe fn reclaim_boxed(ptr: *mut Retired, collector: &seize::Collector) {
    tsan::acquire(collector);
    // SAFETY: the function's contract: a box made by `retire`, taken back once.
    let retired = unsafe { Box::from_raw(ptr) };
    // SAFETY: seize's grace period has ended for it (the contract above), and
    // the box is consumed, so this is the one call.
    unsafe { retired.reclaim() }
}

/// The reclaimer of the records `Reclaim::flush` pads a batch with.
///
/// # Safety
///
/// Always safe; `unsafe` only to have the type seize's `defer_retire` takes.
unsafe fn reclaim_nothing(_: *mut (), _: &seize::Collector) {}

// The contract's clauses, one by one: (1) seize runs a retired object's
// reclaimer only once every guard active at its retirement has been dropped or
// refreshed (its documented guarantee for `defer_retire` and `protect`), and
// `retire` below retires through such a guard. (2) Which guards count as active
// is read after the process-wide barrier seize issues when it hands a batch over,
// which the retirement precedes: a guard entered after it sees every write that
// happened-before the retirement, on any thread, the unlink included. (3) A
// batch reaches the thread that frees it through its reference count,
// decremented with release and read with acquire by the last releaser; the
// collector's drop has `&mut` access. (4) A batch is freed by the one thread that
// drops its count to zero, or by the collector's drop.
// SAFETY: clauses 1-4 of the `Reclaim` contract, as argued above.
unsafe impl Reclaim for Seize {
    type Guard<'a> = SeizeGuard<'a>;

    #[inline]
    fn pin(&self) -> SeizeGuard<'_> {
        SeizeGuard {
            guard: self.collector.enter(),
        }
    }

    fn flush(&self) {
        // A flush hands this thread's partial batch to the active threads, and
        // seize does so only once it holds an entry per active thread (this one
        // included): pad it with records that own nothing, so that flushing
        // repeatedly hands the batch over however many threads are in a guard.
        // With none active but this one, it is freed when the guard leaves.
        const PADDING: usize = 4;
        let guard = self.collector.enter();
        for _ in 0..PADDING {
            // SAFETY: the null pointer owns nothing; `reclaim_nothing` ignores it.
            unsafe { guard.defer_retire(core::ptr::null_mut::<()>(), reclaim_nothing) };
        }
        guard.flush();
    }
}

/// A pinned read of a [`Seize`] backend: seize's guard for the map's collector.
///
/// # Examples
///
/// ```
/// use readmostly::reclaim::{Guard, Reclaim, Seize};
///
/// let backend = Seize::new();
/// let mut guard = backend.pin();
/// guard.refresh(); // ends this read and starts another
/// ```
pub struct SeizeGuard<'a> {
    guard: seize::LocalGuard<'a>,
}

impl core::fmt::Debug for SeizeGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SeizeGuard").finish_non_exhaustive()
    }
}

// SAFETY: `protect` loads through seize's `protect` (the ordering its protocol
// needs), and `retire` hands the object to the same collector through this
// active guard, so seize frees it only after every guard active now is gone.
unsafe impl Guard for SeizeGuard<'_> {
    #[inline]
    fn protect<T>(&self, src: &AtomicPtr<T>, order: Ordering) -> *mut T {
        seize::Guard::protect(&self.guard, src, order)
    }

    unsafe fn retire(&self, retired: Retired) {
        tsan::release(self.guard.collector());
        // seize retires a typed pointer: box the record (three words) to get one.
        let ptr = Box::into_raw(Box::new(retired));
        #[cfg(readmostly_tsan)]
        if tsan::mutant_without_grace_period() {
            // SAFETY: none — the mutant CI runs to show that TSan reports it.
            unsafe { reclaim_boxed(ptr, self.guard.collector()) };
            return;
        }
        // SAFETY: the caller unlinked the object before retiring it (the trait's
        // contract); `reclaim_boxed` matches the box made here.
        unsafe { self.guard.defer_retire(ptr, reclaim_boxed) }
    }

    fn refresh(&mut self) {
        tsan::release(self.guard.collector());
        seize::Guard::refresh(&mut self.guard);
    }
}

impl Drop for SeizeGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // seize's own guard leaves the collector right after this.
        tsan::release(self.guard.collector());
    }
}

/// What seize's protocol orders, told to ThreadSanitizer (builds with `--cfg
/// readmostly_tsan`, which CI's `tsan-seize` step sets; no-ops otherwise).
///
/// seize orders a reader's last access to an object before the object's free
/// through a `membarrier` system call, relaxed loads and standalone fences, none
/// of which TSan models: without help it reports every such free as a race. So
/// each guard's end and each retirement *releases* a sync object (the map's
/// collector), and each free *acquires* it first. That claims only what seize
/// guarantees — a free happens after every retirement before it and after the
/// end of every guard that could reach the object — and nothing about a guard
/// still live: a free while a reader is still inside its guard (retiring an
/// object still linked, freeing without retiring) stays a race TSan reports.
mod tsan {
    #[cfg(readmostly_tsan)]
    extern "C" {
        fn __tsan_acquire(addr: *mut core::ffi::c_void);
        fn __tsan_release(addr: *mut core::ffi::c_void);
    }

    /// Everything this thread did so far happens-before a later [`acquire`]
    /// of `collector`, for TSan.
    #[inline(always)]
    pub(super) fn release(collector: &seize::Collector) {
        #[cfg(readmostly_tsan)]
        annotate(__tsan_release, collector);
        let _ = collector;
    }

    /// Every [`release`] of `collector` so far happens-before what this thread
    /// does next, for TSan.
    #[inline(always)]
    pub(super) fn acquire(collector: &seize::Collector) {
        #[cfg(readmostly_tsan)]
        annotate(__tsan_acquire, collector);
        let _ = collector;
    }

    /// Calls a TSan annotation with the collector's address as the sync object.
    #[cfg(readmostly_tsan)]
    fn annotate(
        annotation: unsafe extern "C" fn(*mut core::ffi::c_void),
        collector: &seize::Collector,
    ) {
        // SAFETY: TSan's annotations take any address as a sync object's name
        // and never dereference it.
        unsafe { annotation(core::ptr::from_ref(collector).cast_mut().cast()) }
    }

    /// Whether this run is the mutant that CI's `tsan-seize` step checks TSan
    /// catches: `READMOSTLY_TSAN_MUTANT` set makes `retire` free at once, with
    /// no grace period.
    #[cfg(readmostly_tsan)]
    pub(super) fn mutant_without_grace_period() -> bool {
        static MUTANT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *MUTANT.get_or_init(|| std::env::var_os("READMOSTLY_TSAN_MUTANT").is_some())
    }
}
