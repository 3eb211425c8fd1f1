//! How a [`SnapshotMap`](crate::SnapshotMap) publishes its current version: an
//! `Arc` that readers load and writers replace, under a scheme chosen by type
//! parameter.

use core::fmt;
use core::ops::Deref;

use crate::sync::{Arc, Loaded, Published};

#[cfg(not(loom))]
pub use self::reclaim_cell::{ReclaimCell, ReclaimLoaded};

/// A publication scheme for [`SnapshotMap`](crate::SnapshotMap): which
/// [`AtomicArc`] holds the current version.
///
/// Implemented by [`ArcSwapPublish`] (the default) and by every [`Reclaim`]
/// backend (`CrossbeamEpoch`,
/// `Seize`). A scheme value is what a map is built with
/// ([`SnapshotMap::with_hasher_and_publish`](crate::SnapshotMap::with_hasher_and_publish)):
/// a marker, or a backend with its own collector.
///
/// | scheme ([`Publish`]) | cell ([`AtomicArc`]) | a read | a replaced version is freed |
/// |---|---|---|---|
/// | [`ArcSwapPublish`] (default) | [`ArcSwapCell`] | writes a *debt* in a slot of the reading thread; the writer pays the debts of readers still holding the old version | when its last holder drops it, on that holder's thread |
/// | any [`Reclaim`] backend: `CrossbeamEpoch`, `Seize` | [`ReclaimCell`] | pins the backend (the guard lives in the loaded value) and loads the pointer | the published reference is retired: dropped after the grace period, so a replaced version lives until readers move on even if no snapshot holds it |
///
/// [`Reclaim`]: super::Reclaim
///
/// # Safety
///
/// A `SnapshotMap` keeps references into a loaded value next to the value it
/// was loaded as, and is `Send + Sync` whenever its keys, values and hasher
/// are, trusting its cell to be. An implementation must guarantee, for every
/// `T`:
///
/// 1. **Stable loads.** A [`Loaded`](AtomicArc::Loaded) value returned by
///    [`Cell<T>::load`](AtomicArc::load) dereferences, for as long as it lives
///    (also after it is moved), to one and the same `T` at one address — a
///    value published in the cell, held in its `Arc`'s heap block, never a copy
///    inside the `Loaded` itself.
/// 2. **Thread safety.** `Cell<T>` is `Send + Sync` whenever `T: Send + Sync`.
///
/// # Examples
///
/// ```
/// use readmostly::reclaim::{ArcSwapPublish, AtomicArc, Publish};
/// use std::sync::Arc;
///
/// let cell = ArcSwapPublish.publish(Arc::new(1));
/// assert_eq!(*cell.load(), 1);
/// ```
pub unsafe trait Publish: Sized + Send + Sync + 'static {
    /// The cell that holds a published `Arc<T>` under this scheme.
    type Cell<T>: AtomicArc<T>;

    /// A cell that publishes `first`.
    ///
    /// `T: Send + Sync`: a scheme may drop a replaced value's reference on
    /// another thread (at the end of its grace period).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{AtomicArc, DefaultReclaim, Publish};
    /// use std::sync::Arc;
    ///
    /// let cell = DefaultReclaim::default().publish(Arc::new("v0"));
    /// assert_eq!(*cell.swap(Arc::new("v1")), "v0");
    /// assert_eq!(*cell.load_full(), "v1");
    /// ```
    fn publish<T: Send + Sync>(self, first: Arc<T>) -> Self::Cell<T>;
}

/// An atomically replaceable `Arc<T>`: readers [`load`](AtomicArc::load) the
/// current value, a writer [`swap`](AtomicArc::swap)s in the next one.
///
/// A loaded value is one whole published `T` that stays valid while it is held,
/// and a swap is atomic with respect to loads. Built by [`Publish::publish`].
///
/// # Examples
///
/// ```
/// use readmostly::reclaim::{ArcSwapPublish, AtomicArc, Publish};
/// use std::sync::Arc;
///
/// let cell = ArcSwapPublish.publish(Arc::new(vec![1]));
/// let loaded = cell.load();
/// let old = cell.swap(Arc::new(vec![1, 2]));
/// assert_eq!((loaded.len(), old.len(), cell.load().len()), (1, 1, 2));
/// ```
pub trait AtomicArc<T> {
    /// A loaded value: dereferences to `T` and keeps it alive while held.
    /// Meant to be short-lived (it may pin a reclamation scheme).
    type Loaded<'a>: Deref<Target = T>
    where
        Self: 'a;

    /// The current value, without an owned reference.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{ArcSwapPublish, AtomicArc, Publish};
    /// use std::sync::Arc;
    ///
    /// let cell = ArcSwapPublish.publish(Arc::new(7));
    /// assert_eq!(*cell.load(), 7);
    /// ```
    fn load(&self) -> Self::Loaded<'_>;

    /// The current value as an owned `Arc` (one reference-count increment).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{ArcSwapPublish, AtomicArc, Publish};
    /// use std::sync::Arc;
    ///
    /// let cell = ArcSwapPublish.publish(Arc::new(7));
    /// let held = cell.load_full();
    /// cell.swap(Arc::new(8));
    /// assert_eq!(*held, 7);
    /// ```
    fn load_full(&self) -> Arc<T>;

    /// Publishes `value` and returns the value it replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{ArcSwapPublish, AtomicArc, Publish};
    /// use std::sync::Arc;
    ///
    /// let cell = ArcSwapPublish.publish(Arc::new(1));
    /// assert_eq!(*cell.swap(Arc::new(2)), 1);
    /// assert_eq!(*cell.load(), 2);
    /// ```
    fn swap(&self, value: Arc<T>) -> Arc<T>;

    /// A new, independent cell of the same scheme (with its default
    /// configuration) that publishes `first`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{ArcSwapPublish, AtomicArc, Publish};
    /// use std::sync::Arc;
    ///
    /// let cell = ArcSwapPublish.publish(Arc::new(1));
    /// let other = cell.new_like(Arc::new(2));
    /// assert_eq!((*cell.load(), *other.load()), (1, 2));
    /// ```
    fn new_like(&self, first: Arc<T>) -> Self
    where
        Self: Sized;

    /// Tries to end the grace period of replaced values now, so that their
    /// references are dropped (see [`Reclaim::flush`](super::Reclaim::flush)
    /// for what each backend can reach). A no-op for schemes without one.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{AtomicArc, DefaultReclaim, Publish};
    /// use std::sync::Arc;
    ///
    /// let cell = DefaultReclaim::default().publish(Arc::new(1));
    /// let old = cell.swap(Arc::new(2));
    /// cell.flush();
    /// assert_eq!(Arc::strong_count(&old), 1); // the retired reference is gone
    /// ```
    fn flush(&self) {}
}

/// The default publication scheme: [arc-swap]'s `ArcSwap`.
///
/// A load takes no lock and leaves the value's shared reference count alone: it
/// records a *debt* in a slot of the reading thread, which a swapping writer pays
/// off by turning it into a real count. A replaced value is freed as soon as its
/// last holder drops it, on that holder's thread — no grace period, nothing to
/// flush.
///
/// [arc-swap]: https://docs.rs/arc-swap
///
/// # Examples
///
/// ```
/// use readmostly::{reclaim::ArcSwapPublish, SnapshotMap};
/// use std::collections::hash_map::RandomState;
///
/// // The same as `SnapshotMap::new()`.
/// let map = SnapshotMap::with_hasher_and_publish(RandomState::new(), ArcSwapPublish);
/// map.insert(1, "one");
/// assert_eq!(map.get_cloned(&1), Some("one"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ArcSwapPublish;

// A load is an arc-swap guard (under loom, an `Arc` clone); the cell's only
// field is `ArcSwap<T>` (under loom, `Mutex<Arc<T>>`).
// SAFETY: (1) the guard derefs to, and keeps alive, the value in the `Arc`'s
// heap block; (2) that field is `Send + Sync` when `T: Send + Sync`.
unsafe impl Publish for ArcSwapPublish {
    type Cell<T> = ArcSwapCell<T>;

    fn publish<T: Send + Sync>(self, first: Arc<T>) -> ArcSwapCell<T> {
        ArcSwapCell::new(first)
    }
}

/// The cell of [`ArcSwapPublish`]: an `arc_swap::ArcSwap` (under `--cfg loom`,
/// a mutex stand-in that loom can model, with the same contract).
///
/// # Examples
///
/// ```
/// use readmostly::reclaim::{ArcSwapCell, AtomicArc};
/// use std::sync::Arc;
///
/// let cell = ArcSwapCell::new(Arc::new("a"));
/// assert_eq!(*cell.load(), "a");
/// ```
pub struct ArcSwapCell<T>(Published<T>);

impl<T> ArcSwapCell<T> {
    /// A cell that publishes `first`. Needs no bound on `T`: a replaced value is
    /// dropped by its last holder, never by another thread on its behalf.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{ArcSwapCell, AtomicArc};
    /// use std::rc::Rc;
    /// use std::sync::Arc;
    ///
    /// let cell = ArcSwapCell::new(Arc::new(Rc::new(1))); // not `Send`: fine here
    /// assert_eq!(**cell.load(), 1);
    /// ```
    pub fn new(first: Arc<T>) -> Self {
        ArcSwapCell(Published::new(first))
    }
}

impl<T> fmt::Debug for ArcSwapCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArcSwapCell").finish_non_exhaustive()
    }
}

/// A value loaded from an [`ArcSwapCell`] (an arc-swap guard): keeps it alive
/// while held.
///
/// # Examples
///
/// ```
/// use readmostly::reclaim::{ArcSwapCell, ArcSwapLoaded, AtomicArc};
/// use std::sync::Arc;
///
/// let cell = ArcSwapCell::new(Arc::new(5));
/// let loaded: ArcSwapLoaded<i32> = cell.load();
/// assert_eq!(*loaded, 5);
/// ```
pub struct ArcSwapLoaded<T>(Loaded<T>);

impl<T> Deref for ArcSwapLoaded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for ArcSwapLoaded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArcSwapLoaded").finish_non_exhaustive()
    }
}

// The cell is `Send + Sync` through `Published<T>`'s auto traits (arc-swap's,
// or the loom mutex's): when `T: Send + Sync`, as for `Arc<T>`.
impl<T> AtomicArc<T> for ArcSwapCell<T> {
    type Loaded<'a>
        = ArcSwapLoaded<T>
    where
        Self: 'a;

    #[inline]
    fn load(&self) -> ArcSwapLoaded<T> {
        ArcSwapLoaded(self.0.load())
    }

    fn load_full(&self) -> Arc<T> {
        self.0.load_full()
    }

    fn swap(&self, value: Arc<T>) -> Arc<T> {
        self.0.swap(value)
    }

    fn new_like(&self, first: Arc<T>) -> Self {
        ArcSwapCell::new(first)
    }
}

#[cfg(not(loom))]
mod reclaim_cell {
    use core::fmt;
    use core::marker::PhantomData;
    use core::mem::size_of;
    use core::ops::Deref;
    use core::ptr::NonNull;

    use super::{AtomicArc, Publish};
    use crate::reclaim::{Guard, Kind, Ledger, Reclaim, Retired};
    use crate::sync::{Arc, AtomicPtr, Ordering};

    // `ReclaimCell<T, R>`'s fields: an `AtomicPtr`, `R` (`Reclaim: Send +
    // Sync`), an `Arc<Ledger>` and `PhantomData<Arc<T>>`.
    // SAFETY: (1) a `ReclaimLoaded` derefs to `*ptr`, in the `Arc`'s heap block,
    // which its guard keeps alive; (2) those fields are `Send + Sync` for `T: Send + Sync`.
    unsafe impl<R: Reclaim> Publish for R {
        type Cell<T> = ReclaimCell<T, R>;

        fn publish<T: Send + Sync>(self, first: Arc<T>) -> ReclaimCell<T, R> {
            // `T: Send + Sync` here is what `ReclaimCell`'s retirements rely on.
            ReclaimCell::new(self, first)
        }
    }

    /// The cell of a [`Reclaim`] backend used as a publication scheme: the
    /// published `Arc` as a raw pointer (`Arc::into_raw`) that owns one strong
    /// reference.
    ///
    /// A load pins the backend and protects the pointer (no count is touched;
    /// the guard lives in the [`ReclaimLoaded`]). A swap replaces the pointer
    /// and *retires* the old value's published reference: the backend drops it
    /// once every guard that was live at the swap is gone. So a replaced value
    /// stays alive until the readers that might see it have moved on — even if
    /// no one holds an `Arc` to it — and is freed by whichever thread ends its
    /// grace period. Dropping the cell drops the current reference and every
    /// retired one still waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{AtomicArc, DefaultReclaim, Publish};
    /// use std::sync::Arc;
    ///
    /// let cell = DefaultReclaim::default().publish(Arc::new(String::from("a")));
    /// let loaded = cell.load(); // pins; no reference count touched
    /// let old = cell.swap(Arc::new(String::from("b")));
    /// assert_eq!((loaded.as_str(), old.as_str()), ("a", "a"));
    /// drop(loaded);
    /// assert_eq!(*cell.load(), "b");
    /// ```
    pub struct ReclaimCell<T, R: Reclaim> {
        /// `Arc::into_raw` of the published value; the cell owns one strong
        /// reference to it. Never null.
        ptr: AtomicPtr<T>,
        reclaim: R,
        /// Owns the retired references until the backend reclaims them, and
        /// drops those still waiting when the cell is dropped.
        ledger: Arc<Ledger>,
        /// The cell owns an `Arc<T>`, for the auto traits: `Send + Sync` only
        /// when `T: Send + Sync`.
        _owns: PhantomData<Arc<T>>,
    }

    impl<T, R: Reclaim> ReclaimCell<T, R> {
        /// A cell publishing `first`. Only [`Publish::publish`] calls this, with
        /// `T: Send + Sync` (directly, or through `new_like` on such a cell): a
        /// retired reference may be dropped on any thread.
        fn new(reclaim: R, first: Arc<T>) -> Self {
            ReclaimCell {
                ptr: AtomicPtr::new(Arc::into_raw(first).cast_mut()),
                reclaim,
                ledger: Arc::new(Ledger::default()),
                _owns: PhantomData,
            }
        }
    }

    /// Drops one strong reference of an `Arc<T>`, for [`Retired`].
    ///
    /// # Safety
    ///
    /// `ptr` is an `Arc::into_raw` pointer whose reference the caller owns.
    unsafe fn drop_reference<T>(ptr: NonNull<()>) {
        // SAFETY: the function's contract: a reference the caller owns, given
        // back to `Arc` once.
        drop(unsafe { Arc::from_raw(ptr.as_ptr().cast_const().cast::<T>()) });
    }

    impl<T, R: Reclaim> AtomicArc<T> for ReclaimCell<T, R> {
        type Loaded<'a>
            = ReclaimLoaded<'a, T, R>
        where
            Self: 'a;

        #[inline]
        fn load(&self) -> ReclaimLoaded<'_, T, R> {
            let guard = self.reclaim.pin();
            // Acquire: pairs with the Release of the swap that published the
            // pointer, so the value's contents are visible here.
            let ptr = guard.protect(&self.ptr, Ordering::Acquire);
            ReclaimLoaded {
                ptr: ptr.cast_const(),
                _guard: guard,
            }
        }

        fn load_full(&self) -> Arc<T> {
            let loaded = self.load();
            // The reference keeping the count at 1 or more is the cell's, or the
            // retired one, which the backend drops only after this guard is gone.
            // SAFETY: `loaded.ptr` is an `Arc::into_raw` pointer whose strong
            // count is at least 1 while the guard protects it; the new one is ours.
            unsafe {
                Arc::increment_strong_count(loaded.ptr);
                Arc::from_raw(loaded.ptr)
            }
        }

        fn swap(&self, value: Arc<T>) -> Arc<T> {
            let new = Arc::into_raw(value).cast_mut();
            let guard = self.reclaim.pin();
            // AcqRel: Release publishes the new value's contents to readers that
            // load it (Acquire); Acquire makes the old value's contents, published
            // by the previous swap's Release, visible to the caller of this one.
            let old = self.ptr.swap(new, Ordering::AcqRel);
            // SAFETY: `old` is the `Arc::into_raw` pointer whose reference the
            // cell owned until the swap above, and still owns (it is retired
            // below): the count is at least 1. The new reference is returned.
            let replaced = unsafe {
                Arc::increment_strong_count(old);
                Arc::from_raw(old)
            };
            // Any thread may run it: a `ReclaimCell` exists only for `T: Send +
            // Sync` (see `new`); it runs after the grace period or at the cell's drop.
            // SAFETY: (`Retired::new`) `drop_reference::<T>` drops the published
            // reference once, when no reader can reach the pointer any more.
            let retired = unsafe {
                Retired::new(
                    NonNull::new_unchecked(old.cast::<()>()),
                    drop_reference::<T>,
                    Kind::Table,
                    size_of::<T>(),
                    &self.ledger,
                )
            };
            // SAFETY: the swap above unlinked `old` (guards pinned from now on
            // load the new pointer), and it is retired once: each swap retires
            // the pointer it took out.
            unsafe { guard.retire(retired) };
            replaced
        }

        fn new_like(&self, first: Arc<T>) -> Self {
            // `self` exists, so `T: Send + Sync` (see `new`).
            ReclaimCell::new(R::default(), first)
        }

        fn flush(&self) {
            Ledger::flush(&self.ledger, &self.reclaim);
        }
    }

    impl<T, R: Reclaim> Drop for ReclaimCell<T, R> {
        fn drop(&mut self) {
            // Relaxed: `&mut self` orders every earlier swap before this.
            let current = self.ptr.load(Ordering::Relaxed);
            // SAFETY: the cell owns the published reference of `current`, an
            // `Arc::into_raw` pointer; no `ReclaimLoaded` is alive (each borrows
            // the cell), so nothing reads through the cell any more.
            drop(unsafe { Arc::from_raw(current.cast_const()) });
            // Retired references still waiting in the backend: no reader can
            // reach them (as above), so they are dropped now; the backend's later
            // `reclaim` calls find nothing.
            self.ledger.close();
        }
    }

    impl<T, R: Reclaim + fmt::Debug> fmt::Debug for ReclaimCell<T, R> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ReclaimCell")
                .field("reclaim", &self.reclaim)
                .finish_non_exhaustive()
        }
    }

    /// A value loaded from a [`ReclaimCell`]: a pinned guard of the backend and
    /// the pointer it protects. Keeps the value alive while held; holding it
    /// holds back the backend's reclamation, so keep it short-lived.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::reclaim::{AtomicArc, DefaultReclaim, Publish};
    /// use std::sync::Arc;
    ///
    /// let cell = DefaultReclaim::default().publish(Arc::new([1, 2, 3]));
    /// let loaded = cell.load();
    /// assert_eq!(loaded.len(), 3);
    /// ```
    pub struct ReclaimLoaded<'a, T, R: Reclaim + 'a> {
        /// Protected by `_guard`; never null.
        ptr: *const T,
        _guard: R::Guard<'a>,
    }

    impl<T, R: Reclaim> Deref for ReclaimLoaded<'_, T, R> {
        type Target = T;

        #[inline]
        fn deref(&self) -> &T {
            // SAFETY: `ptr` was loaded from a `ReclaimCell` through `_guard`,
            // which keeps its strong count above 0 (the retired reference is
            // dropped only after the guard is gone) while `self` lives.
            unsafe { &*self.ptr }
        }
    }

    impl<T, R: Reclaim> fmt::Debug for ReclaimLoaded<'_, T, R> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ReclaimLoaded").finish_non_exhaustive()
        }
    }
}
