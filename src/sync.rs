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
    atomic::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

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
