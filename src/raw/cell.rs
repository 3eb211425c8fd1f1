//! Heap cells for values, with addresses a protocol can compare and tag.
//!
//! Both sync-map protocols keep a key's current value behind one atomic word and
//! change it with compare-and-swap, which compares *addresses*. So every cell is a
//! real allocation of its own — zero-sized values included, padded to one byte —
//! and two live cells never share an address: otherwise a CAS could swap out a
//! value it never read, and that value would be dropped twice or never.
//!
//! Every cell is also aligned to at least [`CELL_ALIGN`], so the low bits of its
//! address are zero and the small addresses `0..CELL_ALIGN` are never cells: a
//! protocol may use them as markers, and the low bits as tags (each protocol
//! names its own; see `classic::entry` and `sync_map::slot`).

use core::alloc::Layout;
use core::ptr::NonNull;
use std::alloc::{alloc, dealloc, handle_alloc_error};

use crate::reclaim::Ledger;

/// The least alignment of a cell: two tag bits free in every cell address.
pub(crate) const CELL_ALIGN: usize = 4;

/// The allocation of a cell holding a `V`.
#[inline]
pub(crate) fn layout<V>() -> Layout {
    let value = Layout::new::<V>();
    // Cannot fail: the size only grows to 1 and the alignment to 4, both powers
    // of two well below `isize::MAX`.
    Layout::from_size_align(value.size().max(1), value.align().max(CELL_ALIGN))
        .expect("a cell layout is valid")
}

/// Moves `value` into a new cell; the address is unique, non-null and a multiple
/// of [`CELL_ALIGN`].
pub(crate) fn into_raw<V>(value: V) -> *mut V {
    into_memory(value, None)
}

/// Moves `value` into `memory` — a freed cell of a `V` that a ledger kept (see
/// [`Ledger::take_cell`]) — or into a new cell if there is none.
fn into_memory<V>(value: V, memory: Option<NonNull<u8>>) -> *mut V {
    let layout = layout::<V>();
    let ptr = match memory {
        Some(memory) => memory.as_ptr().cast::<V>(),
        None => {
            // SAFETY: `layout` has a non-zero size.
            let ptr = unsafe { alloc(layout) }.cast::<V>();
            if ptr.is_null() {
                handle_alloc_error(layout);
            }
            ptr
        }
    };
    // SAFETY: allocated with a `V`'s cell layout (fresh, or kept by a ledger
    // with its value dropped), so aligned for a `V`, and unused.
    unsafe { ptr.write(value) };
    ptr
}

/// Heap bytes of one cell (what [`into_raw`] allocates), for the reclamation
/// ledger.
pub(crate) fn cell_bytes<V>() -> usize {
    layout::<V>().size()
}

/// Drops the value and frees its cell.
///
/// # Safety
///
/// `ptr` came from [`into_raw`], is not used again, and no other thread can still
/// read it.
pub(crate) unsafe fn drop_raw<V>(ptr: *mut V) {
    // Frees the cell after the destructor, even if that panics.
    let _free = FreeOnDrop(ptr);
    // SAFETY: the caller hands over sole ownership of a live value.
    unsafe { ptr.drop_in_place() };
}

/// Frees a cell whose value has been moved out or dropped.
///
/// # Safety
///
/// `ptr` came from [`into_raw`] and is not used again.
unsafe fn free_raw<V>(ptr: *mut V) {
    // SAFETY: allocated by `into_raw` with this very layout.
    unsafe { dealloc(ptr.cast::<u8>(), layout::<V>()) }
}

/// Frees a cell when dropped: after its value's destructor, even if that panics.
struct FreeOnDrop<V>(*mut V);

impl<V> Drop for FreeOnDrop<V> {
    fn drop(&mut self) {
        // SAFETY: `drop_raw`'s caller gave us the cell; its value is gone by now.
        unsafe { free_raw(self.0) }
    }
}

/// An owned cell not yet published in a protocol's atomic word; freed (and its
/// value dropped, a panic contained) if dropped.
pub(crate) struct Owned<V>(NonNull<V>);

impl<V> Owned<V> {
    pub(crate) fn new(value: V) -> Self {
        Owned(NonNull::new(into_raw(value)).expect("cells are non-null"))
    }

    /// A cell for `value` in memory `ledger` kept for reuse if it has some,
    /// otherwise a new one: for a value about to go into the map whose
    /// cells `ledger` retires.
    #[inline]
    pub(crate) fn new_in(value: V, ledger: &Ledger) -> Self {
        let memory = ledger.take_cell(layout::<V>());
        Owned(NonNull::new(into_memory(value, memory)).expect("cells are non-null"))
    }

    pub(crate) fn as_ptr(&self) -> *mut V {
        self.0.as_ptr()
    }

    /// Gives up ownership: the atomic word that now holds the pointer owns the
    /// cell.
    pub(crate) fn publish(self) -> *mut V {
        let ptr = self.0.as_ptr();
        core::mem::forget(self);
        ptr
    }

    /// Takes the value back out of its cell (for a retry that stores it elsewhere).
    pub(crate) fn into_inner(self) -> V {
        let ptr = self.publish();
        // SAFETY: never published, so this is the only owner; the value is read
        // out once and the cell freed without dropping it.
        unsafe {
            let value = ptr.read();
            free_raw(ptr);
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
/// panic: the panic hook reports it and the map's call goes on. Destructors run
/// inside map operations of unrelated threads and inside the reclaimer, where
/// unwinding would leave the rest of a table undropped (see "Panics in user code"
/// on [`SyncMap`](crate::SyncMap)).
pub(crate) fn drop_contained(drop: impl FnOnce()) {
    let _ = std::panic::catch_unwind(core::panic::AssertUnwindSafe(drop));
}

/// Go's `LoadOrStore` with a value, for both protocols' `get_or_insert`: runs
/// `load_or_store` with a maker that hands `value` over (at most once), then
/// drops `value` if it was not taken — the key was present — containing a
/// panic like every drop the map makes.
pub(crate) fn store_value<V, T>(
    value: V,
    load_or_store: impl FnOnce(&mut dyn FnMut() -> V) -> T,
) -> T {
    let mut value = Some(value);
    let result = load_or_store(&mut || {
        value
            .take()
            .expect("load_or_store makes the value at most once")
    });
    drop_contained(|| drop(value));
    result
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn cells_are_unique_aligned_and_above_the_markers() {
        let a = Owned::new(());
        let b = Owned::new(());
        assert_ne!(
            a.as_ptr(),
            b.as_ptr(),
            "zero-sized values get cells of their own"
        );
        for ptr in [
            a.as_ptr().addr(),
            b.as_ptr().addr(),
            Owned::new(1u8).as_ptr().addr(),
        ] {
            assert_eq!(ptr % CELL_ALIGN, 0);
            assert!(ptr >= CELL_ALIGN);
        }
        assert_eq!(cell_bytes::<()>(), 1);
        assert_eq!(cell_bytes::<u64>(), 8);
    }

    #[test]
    fn into_inner_gives_the_value_back_without_dropping_it() {
        let cell = Owned::new(String::from("kept"));
        assert_eq!(cell.into_inner(), "kept");
    }
}
