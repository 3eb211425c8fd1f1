//! Retiring what the classic protocol unlinks that is its own: a value that may
//! live inside its entry, and an entry's reference. Cells and tables go through
//! [`crate::raw::retire`].

use core::mem::size_of;
use core::ptr::NonNull;

use super::entry::Entry;
use super::table::{table_bytes, Table};
use crate::raw::cell::drop_contained;
use crate::raw::retire::{retire_cell, retire_structure};
use crate::reclaim::{Guard, Kind, Ledger, Retired};
use crate::sync::Arc;

/// Retires a value unlinked from `entry`'s slot, and returns it: still valid for
/// the guard's lifetime (the value a `remove` or `insert` hands back).
///
/// A boxed cell is freed with its value. The entry's inline first value is
/// dropped in place, so its record also holds a reference to the entry, which
/// keeps the memory under the value alive until the value has been dropped.
///
/// # Safety
///
/// `ptr` is live, was just unlinked from `entry`'s slot by a successful CAS or
/// swap of this thread, and is retired only here; `entry` is owned by an `Arc`.
pub(crate) unsafe fn retire_value<'g, K, V>(
    guard: &'g impl Guard,
    ledger: &Arc<Ledger>,
    entry: &Entry<K, V>,
    ptr: *mut V,
) -> &'g V
where
    K: Send + 'static,
    V: Send + 'static,
{
    unsafe fn free_first<K, V>(ptr: NonNull<()>) {
        let first = ptr.cast::<V>().as_ptr();
        let entry = Entry::<K, V>::from_first(first);
        // SAFETY: run once, when no reader can reach the value; the reference
        // taken in `retire_value` keeps the entry (and so `first`) allocated
        // until the `Arc` below is dropped, after the value.
        unsafe {
            let entry = Arc::from_raw(entry);
            drop_contained(|| entry.drop_value(first));
        }
    }
    debug_assert!(super::entry::is_live(ptr));
    if ptr != entry.first_ptr() {
        // SAFETY: any other live pointer is a cell; the caller's contract.
        return unsafe { retire_cell(guard, ledger, ptr) };
    }
    // `ptr` is `first`, derived in `Entry::new_shared` from the `Arc`'s own
    // pointer; its bytes are the entry's, counted when the entry goes: 0 here.
    // SAFETY: `from_first` gives back the pointer `Arc::as_ptr` gave, and the
    // caller's `&Entry` proves a strong reference is alive now.
    unsafe {
        Arc::increment_strong_count(Entry::<K, V>::from_first(ptr));
        let retired = Retired::new(
            NonNull::new_unchecked(ptr.cast()),
            free_first::<K, V>,
            Kind::Value,
            0,
            ledger,
        );
        guard.retire(retired);
        // Retired through the reclaimer, so `guard` keeps it alive for 'g.
        &*ptr
    }
}

/// Retires a table's reference to an entry (the entry's memory goes with its last
/// reference).
///
/// # Safety
///
/// `entry` was just removed from a table under the map's lock, so guards pinned
/// from now on cannot reach it through that table.
pub(crate) unsafe fn retire_entry<K, V>(
    guard: &impl Guard,
    ledger: &Arc<Ledger>,
    entry: Arc<Entry<K, V>>,
) where
    K: Send + 'static,
    V: Send + 'static,
{
    unsafe fn free<K, V>(ptr: NonNull<()>) {
        // SAFETY: the pointer came from `Arc::into_raw` in `retire_entry` and this
        // reference is released once.
        drop(unsafe { Arc::from_raw(ptr.cast::<Entry<K, V>>().as_ptr()) });
    }
    let ptr = Arc::into_raw(entry).cast_mut();
    // SAFETY: `Arc::into_raw` is non-null; `free` releases exactly this reference;
    // the entry's key and value are `Send + 'static`.
    unsafe {
        let retired = Retired::new(
            NonNull::new_unchecked(ptr.cast()),
            free::<K, V>,
            Kind::Entry,
            size_of::<Entry<K, V>>(),
            ledger,
        );
        guard.retire(retired);
    }
}

/// Retires a boxed table (a replaced read table, or a cleared dirty table); the
/// entry references it holds are released with it.
///
/// # Safety
///
/// As for [`retire_structure`]: `table` came from `Box::into_raw`, is unlinked,
/// and is retired only here.
pub(crate) unsafe fn retire_table<K, V>(
    guard: &impl Guard,
    ledger: &Arc<Ledger>,
    table: *mut Table<K, V>,
) where
    K: Send + 'static,
    V: Send + 'static,
{
    // SAFETY: the caller's contract; the table no longer changes, so its size read
    // here is the one freed later.
    unsafe {
        let bytes = table_bytes(&*table);
        retire_structure(guard, ledger, table, bytes);
    }
}
