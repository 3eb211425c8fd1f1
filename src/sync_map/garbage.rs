//! Retiring what a [`SyncMap`](crate::SyncMap) unlinks: values, entries and tables.
//!
//! The rule that makes every reference a reader holds safe: **whatever a table
//! or a slot lets go of goes through the reclaimer** — an overwritten or removed
//! value, an entry's `Arc` dropped from a table, a replaced table. Nothing a reader
//! could have reached under its guard is ever freed in place, except when the map
//! is exclusively borrowed (`&mut self` or `Drop`), where no guard can exist.

use core::mem::size_of;
use core::ptr::NonNull;

use super::delta::Delta;
use super::entry::Entry;
use super::root::Root;
use super::table::{table_bytes, Table};
use super::value;
use crate::reclaim::{Guard, Kind, Ledger, Retired};
use crate::sync::Arc;

/// Counts a free in the ledger when dropped — after the object's destructor has
/// run, even if it panicked — so `pending` never reaches 0 while a destructor is
/// still running.
struct FreeRecord<'l> {
    ledger: &'l Ledger,
    bytes: usize,
}

impl<'l> FreeRecord<'l> {
    fn new(ledger: &'l Ledger, bytes: usize) -> Self {
        FreeRecord { ledger, bytes }
    }
}

impl Drop for FreeRecord<'_> {
    fn drop(&mut self) {
        self.ledger.record_free(self.bytes);
    }
}

/// Retires a value unlinked from its slot, and returns it: still valid for the
/// guard's lifetime (the value a `remove` or `insert` hands back).
///
/// # Safety
///
/// `ptr` is live (from [`value::into_raw`]), was just unlinked by a successful CAS
/// or swap of this thread, and is retired only here.
pub(crate) unsafe fn retire_value<'g, V: Send + 'static>(
    guard: &'g impl Guard,
    ledger: &Arc<Ledger>,
    ptr: *mut V,
) -> &'g V {
    unsafe fn free<V>(ptr: NonNull<()>, ledger: &Ledger) {
        let _record = FreeRecord::new(ledger, value::cell_bytes::<V>());
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
        // SAFETY: retired through the reclaimer, so `guard` keeps it alive for 'g.
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
    unsafe fn free<K, V>(ptr: NonNull<()>, ledger: &Ledger) {
        let _record = FreeRecord::new(ledger, size_of::<Entry<K, V>>());
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

/// Heap bytes a retired structure holds, for the reclamation ledger.
pub(crate) trait HeapBytes {
    fn heap_bytes(&self) -> usize;
}

impl<K, V> HeapBytes for Table<K, V> {
    fn heap_bytes(&self) -> usize {
        table_bytes(self)
    }
}

impl<K, V> HeapBytes for Root<K, V> {
    fn heap_bytes(&self) -> usize {
        self.bytes()
    }
}

impl<K, V> HeapBytes for Delta<K, V> {
    fn heap_bytes(&self) -> usize {
        self.bytes()
    }
}

/// Retires a boxed structure — a table, a root (with its read table and delta) or
/// a delta replaced by a grown copy — counted as a table; the entries it refers to
/// are released with it.
///
/// # Safety
///
/// `ptr` came from `Box::into_raw`, is unlinked (no guard pinned from now on can
/// reach it), is never written again, and is retired only here; the keys and
/// values it owns are `Send + 'static`.
pub(crate) unsafe fn retire_structure<T: HeapBytes>(
    guard: &impl Guard,
    ledger: &Arc<Ledger>,
    ptr: *mut T,
) {
    unsafe fn free<T: HeapBytes>(ptr: NonNull<()>, ledger: &Ledger) {
        // SAFETY: from `Box::into_raw`, reclaimed once.
        let boxed = unsafe { Box::from_raw(ptr.cast::<T>().as_ptr()) };
        let _record = FreeRecord::new(ledger, boxed.heap_bytes());
        drop(boxed);
    }
    // SAFETY: the caller's contract; the structure no longer changes, so its size
    // read here is the one the free will count.
    unsafe {
        let bytes = (*ptr).heap_bytes();
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
