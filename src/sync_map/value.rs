//! Heap cells for values, and the marker pointers an entry's slot can hold besides
//! a value.
//!
//! An entry's slot is one `AtomicPtr<V>`: null means *deleted*, address 1
//! ([`expunged`]) means *expunged*, anything else owns a value allocated by
//! [`into_raw`].
//!
//! Every value gets an allocation of its own, zero-sized types included (they are
//! padded to one byte): compare-and-swap on the slot compares addresses, so two
//! live values must never share one, and `Box`'s dangling pointer for ZSTs would
//! make them all alike — an update could then swap out a value it never read, and
//! that value would never be dropped.

use core::mem::size_of;
use core::ptr::NonNull;

/// A ZST value with a byte of padding, so that it gets a real, unique allocation.
#[repr(C)]
struct Padded<V> {
    value: V,
    _pad: u8,
}

/// The address that marks an expunged slot: 1. No value cell can have it: every
/// cell is a real allocation (ZSTs are padded to one byte), and the first page of
/// the address space is never mapped, so no allocator returns it. With null
/// marking *deleted*, a slot is live exactly when its address is above 1 — one
/// compare on the read path, no load of a marker's address.
const EXPUNGED_ADDR: usize = 1;

/// The *expunged* marker for a slot of `V`s.
#[inline]
pub(crate) fn expunged<V>() -> *mut V {
    core::ptr::without_provenance_mut(EXPUNGED_ADDR)
}

/// Moves `value` to the heap; the result is unique, non-null and never
/// [`expunged`].
pub(crate) fn into_raw<V>(value: V) -> *mut V {
    if size_of::<V>() == 0 {
        Box::into_raw(Box::new(Padded { value, _pad: 0 })).cast()
    } else {
        Box::into_raw(Box::new(value))
    }
}

/// Heap bytes of one value cell (what [`into_raw`] allocates).
pub(crate) const fn cell_bytes<V>() -> usize {
    if size_of::<V>() == 0 {
        size_of::<Padded<V>>()
    } else {
        size_of::<V>()
    }
}

/// Drops the value and frees its cell.
///
/// # Safety
///
/// `ptr` came from [`into_raw`], is not used again, and no other thread can still
/// read it.
pub(crate) unsafe fn drop_raw<V>(ptr: *mut V) {
    if size_of::<V>() == 0 {
        // SAFETY: ZST cells are allocated as `Padded<V>` with `value` at offset 0
        // (`repr(C)`); the caller hands over sole ownership.
        drop(unsafe { Box::from_raw(ptr.cast::<Padded<V>>()) });
    } else {
        // SAFETY: as above, for a plain `Box<V>`.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

/// Whether `ptr` holds a value (neither deleted, 0, nor expunged, 1).
#[inline]
pub(crate) fn is_live<V>(ptr: *mut V) -> bool {
    ptr.addr() > EXPUNGED_ADDR
}

/// The value behind `ptr`, if it is live.
///
/// # Safety
///
/// If live, `ptr` is protected by a guard for `'g`.
pub(crate) unsafe fn as_live<'g, V>(ptr: *mut V) -> Option<&'g V> {
    // SAFETY: the caller's contract.
    is_live(ptr).then(|| unsafe { &*ptr })
}

/// An owned value cell not yet published in a slot; freed if dropped.
pub(crate) struct Owned<V>(NonNull<V>);

impl<V> Owned<V> {
    pub(crate) fn new(value: V) -> Self {
        // `into_raw` never returns null.
        Owned(NonNull::new(into_raw(value)).expect("allocation is non-null"))
    }

    pub(crate) fn as_ptr(&self) -> *mut V {
        self.0.as_ptr()
    }

    /// Gives up ownership: the slot that now holds the pointer owns the value.
    pub(crate) fn publish(self) -> *mut V {
        let ptr = self.0.as_ptr();
        core::mem::forget(self);
        ptr
    }

    /// Takes the value back out of its cell.
    pub(crate) fn into_inner(self) -> V {
        let ptr = self.publish();
        // SAFETY: the cell was never published, so this is its only owner; the
        // value is read out once and the cell is then freed without dropping it.
        unsafe {
            let value = core::ptr::read(ptr);
            free_cell_without_drop(ptr);
            value
        }
    }
}

impl<V> Drop for Owned<V> {
    /// A value the map made but did not store (a lost race, a present key): its
    /// destructor's panic is contained like any value the map drops.
    fn drop(&mut self) {
        let ptr = self.0.as_ptr();
        // SAFETY: never published, so nobody else can see it.
        drop_contained(|| unsafe { drop_raw(ptr) });
    }
}

/// Runs `drop`, a destructor of user data the map disposes of, containing a
/// panic: the panic hook reports it, the map's call goes on (see "Panics in user
/// code" on [`SyncMap`](crate::SyncMap)).
pub(crate) fn drop_contained(drop: impl FnOnce()) {
    let _ = std::panic::catch_unwind(core::panic::AssertUnwindSafe(drop));
}

/// Frees a cell whose value has been moved out.
///
/// # Safety
///
/// `ptr` came from [`into_raw`] and its value was already read out.
unsafe fn free_cell_without_drop<V>(ptr: *mut V) {
    use core::mem::ManuallyDrop;
    if size_of::<V>() == 0 {
        // SAFETY: see `drop_raw`; `ManuallyDrop` frees the cell without dropping
        // the moved-out value.
        drop(unsafe { Box::from_raw(ptr.cast::<ManuallyDrop<Padded<V>>>()) });
    } else {
        // SAFETY: as above.
        drop(unsafe { Box::from_raw(ptr.cast::<ManuallyDrop<V>>()) });
    }
}
