//! Retiring what a protocol unlinks: value cells and whole structures.
//!
//! The rule that keeps every reference a reader holds valid: **whatever a map
//! unlinks while readers may hold it goes through the reclaimer** — a replaced or
//! removed value cell, a replaced table or root. Nothing a reader could have
//! reached under its guard is freed in place, except when the map is exclusively
//! borrowed (`&mut self` or `Drop`), where no guard on it can exist.

use core::ptr::NonNull;

use super::cell;
use super::mutant::mutant;
use crate::reclaim::{Guard, Kind, Ledger, Retired};
use crate::sync::Arc;

/// Retires a value cell unlinked from a protocol's atomic word, and returns the
/// value: still valid for the guard's lifetime (what a `remove` or `insert`
/// hands back).
///
/// # Safety
///
/// `ptr` came from [`cell::into_raw`], was just unlinked by a successful CAS or
/// swap of this thread (so guards pinned from now on cannot reach it), and is
/// retired only here.
pub(crate) unsafe fn retire_cell<'g, V: Send + 'static>(
    guard: &'g impl Guard,
    ledger: &Arc<Ledger>,
    ptr: *mut V,
) -> &'g V {
    unsafe fn free<V>(ptr: NonNull<()>) {
        // SAFETY: `Retired` calls this once, when no reader can reach the cell.
        unsafe { cell::drop_raw(ptr.cast::<V>().as_ptr()) }
    }
    unsafe fn drop_value<V>(ptr: NonNull<()>) {
        // SAFETY: as for `free`; the ledger keeps or frees the memory.
        unsafe { ptr.cast::<V>().drop_in_place() }
    }
    // A ledger that keeps cells of this layout takes the memory after the drop.
    let reuse = ledger.keeps_cells(cell::layout::<V>());
    let free = if reuse { drop_value::<V> } else { free::<V> };
    // SAFETY: `ptr` is a cell (non-null), and `free` drops exactly it (and with
    // `reuse`, a cell of the layout the ledger keeps); `V: Send + 'static` lets
    // it be dropped on any thread, at any later time.
    unsafe {
        ledger.retire_value(
            guard,
            NonNull::new_unchecked(ptr.cast()),
            free,
            reuse,
            Kind::Value,
            cell::cell_bytes::<V>(),
        );
        // Retired through the reclaimer (in a batch whose record is retired now
        // or later, by this or another thread: either way after the unlink
        // that `guard` was pinned before), so `guard` keeps it alive for 'g.
        &*ptr
    }
}

/// Hands back the value a write replaced, after `retire` has retired it: the one
/// place both protocols do so, and so the one place for the loom mutant that
/// forgets the retirement.
///
/// # Safety
///
/// `ptr` is the replaced value, protected by the guard of `'g`; `retire`
/// retires it (once) and returns it.
#[inline]
pub(crate) unsafe fn hand_back_replaced<'g, V>(
    ptr: *mut V,
    retire: impl FnOnce() -> &'g V,
) -> &'g V {
    // (Mutant: the replaced value is never retired, and leaks.)
    if mutant!("skip_replaced_retire" => true, else false) {
        // SAFETY: a deliberately broken build (the value leaks); the caller's
        // guard keeps `ptr` valid for 'g, as `retire` would have.
        return unsafe { &*ptr };
    }
    retire()
}

/// Retires a boxed structure — a table, a root, a delta's bucket array — counted
/// as a table of `bytes` heap bytes; whatever it owns is freed with it.
///
/// # Safety
///
/// `ptr` came from `Box::into_raw`, is unlinked (no guard pinned from now on can
/// reach it), is never written again, and is retired only here; what it owns is
/// `Send + 'static`.
pub(crate) unsafe fn retire_structure<T>(
    guard: &impl Guard,
    ledger: &Arc<Ledger>,
    ptr: *mut T,
    bytes: usize,
) {
    unsafe fn free<T>(ptr: NonNull<()>) {
        // SAFETY: from `Box::into_raw`, freed once, when no reader can reach it.
        drop(unsafe { Box::from_raw(ptr.cast::<T>().as_ptr()) });
    }
    // SAFETY: the caller's contract.
    unsafe {
        let retired = Retired::new(
            NonNull::new_unchecked(ptr.cast()),
            free::<T>,
            Kind::Table,
            bytes,
            ledger,
        );
        guard.retire(retired);
    }
}
