//! Retiring what a [`SyncMap`](crate::SyncMap) unlinks: values, entries and tables.
//!
//! The rule that makes every reference a reader holds safe: **whatever a table
//! or a slot lets go of goes through the reclaimer** — an overwritten or removed
//! value, an entry's `Arc` dropped from a table, a replaced table. Nothing a reader
//! could have reached under its guard is ever freed in place, except when the map
//! is exclusively borrowed (`&mut self` or `Drop`), where no guard can exist.

use core::mem::size_of;
use core::ptr::NonNull;

use super::entry::Entry;
use super::table::{table_bytes, Table};
use super::value;
use crate::reclaim::{Guard, Kind, Ledger, Retired};
use crate::sync::Arc;

/// Retires a value unlinked from its slot.
///
/// # Safety
///
/// `ptr` is live (from [`value::into_raw`]), was just unlinked by a successful CAS
/// or swap of this thread, and is retired only here.
pub(crate) unsafe fn retire_value<V: Send + 'static>(
    guard: &impl Guard,
    ledger: &Arc<Ledger>,
    ptr: *mut V,
) {
    unsafe fn free<V>(ptr: NonNull<()>, ledger: &Ledger) {
        ledger.record_free(value::cell_bytes::<V>());
        // SAFETY: `Retired::reclaim` runs this once, after the grace period.
        unsafe { value::drop_raw(ptr.cast::<V>().as_ptr()) }
    }
    debug_assert!(value::is_live(ptr));
    // SAFETY: `ptr` is a live value cell, non-null; `free::<V>` frees exactly
    // that; `V: Send + 'static` lets it be dropped on any thread, at any later time.
    unsafe {
        let retired = Retired::new(
            NonNull::new_unchecked(ptr.cast()),
            free::<V>,
            Kind::Value,
            value::cell_bytes::<V>(),
            ledger,
        );
        guard.retire(retired);
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
    unsafe fn free<K, V>(ptr: NonNull<()>, ledger: &Ledger) {
        ledger.record_free(size_of::<Entry<K, V>>());
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

/// Retires a whole table (an old read table, or a cleared dirty table).
///
/// # Safety
///
/// `table` came from `Box::into_raw`, is unlinked (no guard pinned from now on
/// can reach it), and is retired only here.
pub(crate) unsafe fn retire_table<K, V>(
    guard: &impl Guard,
    ledger: &Arc<Ledger>,
    table: *mut Table<K, V>,
) where
    K: Send + 'static,
    V: Send + 'static,
{
    unsafe fn free<K, V>(ptr: NonNull<()>, ledger: &Ledger) {
        // SAFETY: from `Box::into_raw`, reclaimed once.
        let table = unsafe { Box::from_raw(ptr.cast::<Table<K, V>>().as_ptr()) };
        ledger.record_free(table_bytes(&table));
        drop(table);
    }
    // SAFETY: the caller's contract; the table is never written again, so reading
    // its size here races with nothing.
    unsafe {
        let bytes = table_bytes(&*table);
        let retired = Retired::new(
            NonNull::new_unchecked(table.cast()),
            free::<K, V>,
            Kind::Table,
            bytes,
            ledger,
        );
        guard.retire(retired);
    }
}
