//! The one seam between the maps and their synchronization primitives.
//!
//! Every atomic, lock and `Arc` the crate uses comes from here, so that building
//! with `RUSTFLAGS="--cfg loom"` swaps in [loom]'s model-checked versions and the
//! `loom-tests/` suite checks the code users run, not a copy of it.
//!
//! Only methods that both std and loom provide may be used through this module:
//! in particular loom's atomics have no `get_mut`, so teardown code reads with
//! `load(Ordering::Relaxed)` under `&mut self` instead.
//!
//! [loom]: https://docs.rs/loom

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

#[cfg(loom)]
pub(crate) use loom::sync::Condvar;
#[cfg(not(loom))]
pub(crate) use std::sync::Condvar;

pub(crate) use publish::{Loaded, Published};

/// Locks `mutex`, ignoring poisoning.
///
/// Every critical section in this crate leaves the protected state consistent at
/// each point where user code (`Eq`, `PartialEq`) can panic — such code only runs
/// in read-only probes — so a panic while the lock was held never leaves a broken
/// invariant behind, and the map stays usable after it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Takes `mutex` if it is free, ignoring poisoning (see [`lock`]); never waits.
pub(crate) fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// The published-version pointer of [`SnapshotMap`](crate::SnapshotMap)'s default
/// publication scheme (inside `reclaim::ArcSwapCell`): an `Arc<T>` that readers
/// load and writers swap.
///
/// Normally it is `arc_swap::ArcSwap<T>`: a load takes no lock and leaves the
/// `Arc`'s shared count alone (it records a *debt* in a slot of its own thread,
/// which a swapping writer pays off). loom cannot see inside arc-swap, so under
/// `cfg(loom)` it is a mutex around the `Arc` instead, with the same contract —
/// a load returns one whole published value that stays alive while held, and a
/// swap is atomic with respect to loads — so the loom models check the map's own
/// publish, batch and wait logic through the code users run.
#[cfg(not(loom))]
mod publish {
    use core::ops::Deref;

    use super::Arc;

    /// An atomically replaceable `Arc<T>` (arc-swap).
    pub(crate) struct Published<T>(arc_swap::ArcSwap<T>);

    /// One loaded value; keeps it alive while held. Meant to be short-lived.
    pub(crate) struct Loaded<T>(arc_swap::Guard<Arc<T>>);

    impl<T> Published<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            Published(arc_swap::ArcSwap::new(value))
        }

        /// The current value, without touching its shared reference count.
        #[inline]
        pub(crate) fn load(&self) -> Loaded<T> {
            Loaded(self.0.load())
        }

        /// The current value as an owned `Arc` (one count increment).
        pub(crate) fn load_full(&self) -> Arc<T> {
            self.0.load_full()
        }

        /// Publishes `value` and returns the one it replaced.
        pub(crate) fn swap(&self, value: Arc<T>) -> Arc<T> {
            self.0.swap(value)
        }
    }

    impl<T> Deref for Loaded<T> {
        type Target = T;

        #[inline]
        fn deref(&self) -> &T {
            &self.0
        }
    }
}

/// The loom stand-in for the arc-swap pointer; see the non-loom module.
#[cfg(loom)]
mod publish {
    use core::ops::Deref;

    use super::{lock, Arc, Mutex};

    /// An atomically replaceable `Arc<T>` (a mutex under loom).
    pub(crate) struct Published<T>(Mutex<Arc<T>>);

    /// One loaded value; keeps it alive while held.
    pub(crate) struct Loaded<T>(Arc<T>);

    impl<T> Published<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            Published(Mutex::new(value))
        }

        pub(crate) fn load(&self) -> Loaded<T> {
            Loaded(self.load_full())
        }

        pub(crate) fn load_full(&self) -> Arc<T> {
            Arc::clone(&lock(&self.0))
        }

        pub(crate) fn swap(&self, value: Arc<T>) -> Arc<T> {
            core::mem::replace(&mut *lock(&self.0), value)
        }
    }

    impl<T> Deref for Loaded<T> {
        type Target = T;

        fn deref(&self) -> &T {
            &self.0
        }
    }
}

/// Waits a moment for another thread to finish a short step it has started (a
/// few instructions, unless it was preempted). Under loom, a yield, so that the
/// model schedules that thread.
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
