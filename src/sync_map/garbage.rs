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
use super::value::{self, drop_contained};
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
    unsafe fn free_cell<V>(ptr: NonNull<()>, ledger: &Ledger) {
        let _record = FreeRecord::new(ledger, value::cell_bytes::<V>());
        // SAFETY: `Retired::reclaim` runs this once, after the grace period.
        unsafe { value::drop_raw(ptr.cast::<V>().as_ptr()) }
    }
    unsafe fn free_first<K, V>(ptr: NonNull<()>, ledger: &Ledger) {
        // The value's bytes are the entry's, freed with it.
        let _record = FreeRecord::new(ledger, 0);
        let first = ptr.cast::<V>().as_ptr();
        let entry = Entry::<K, V>::from_first(first);
        // SAFETY: run once, after the grace period; the reference taken in
        // `retire_value` keeps the entry (and so `first`) allocated until the
        // `Arc` below is dropped, after the value.
        unsafe {
            let entry = Arc::from_raw(entry);
            drop_contained(|| entry.drop_value(first));
        }
    }
    debug_assert!(value::is_live(ptr));
    let (free, bytes): (unsafe fn(NonNull<()>, &Ledger), usize) = if ptr == entry.first_ptr() {
        // SAFETY: `ptr` is `first`, derived in `Entry::new_shared` from the `Arc`'s
        // own pointer, so `from_first` gives the pointer `Arc::as_ptr` gave there,
        // and the caller's `&Entry` proves a strong reference is alive now.
        unsafe { Arc::increment_strong_count(Entry::<K, V>::from_first(ptr)) };
        (free_first::<K, V>, 0)
    } else {
        (free_cell::<V>, value::cell_bytes::<V>())
    };
    // SAFETY: `ptr` is a live value, non-null; `free` drops exactly that (and
    // releases the entry reference taken above); `K, V: Send + 'static` let them be
    // dropped on any thread, at any later time.
    unsafe {
        let retired = Retired::new(
            NonNull::new_unchecked(ptr.cast()),
            free,
            Kind::Value,
            bytes,
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
