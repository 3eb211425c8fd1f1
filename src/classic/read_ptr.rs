//! The classic protocol's published read table: a tagged pointer whose low bit
//! is `amended`.

use super::table::Table;
use crate::raw::mutant::mutant;
use crate::reclaim::Guard;
use crate::sync::{AtomicPtr, Ordering};

/// One loaded read table: the immutable table and its `amended` flag, which says
/// that `dirty` holds keys this table lacks.
pub(crate) struct ReadView<'g, K, V> {
    pub(crate) table: &'g Table<K, V>,
    pub(crate) amended: bool,
}

/// The atomically swappable pointer to the immutable read table.
///
/// The `amended` flag lives in bit 0 of the pointer (a `Box<Table>` is at least
/// 8-aligned), so a reader gets the table and the flag that belongs to it from one
/// load — Go keeps them together in one `readOnly` struct for the same reason — and
/// setting the flag needs no new allocation and no extra indirection on the read
/// path.
pub(crate) struct ReadPtr<K, V> {
    tagged: AtomicPtr<Table<K, V>>,
}

const AMENDED: usize = 1;

impl<K, V> ReadPtr<K, V> {
    pub(crate) fn new(table: Table<K, V>) -> Self {
        ReadPtr {
            tagged: AtomicPtr::new(Box::into_raw(Box::new(table))),
        }
    }

    /// Loads the current read table, protected by `guard`.
    #[inline]
    pub(crate) fn load<'g, G: Guard>(&self, guard: &'g G) -> ReadView<'g, K, V> {
        // Acquire: pairs with the Release store that published the table, so its
        // contents (and its entries') are visible.
        let tagged = guard.protect(&self.tagged, Ordering::Acquire);
        let table = tagged.map_addr(|addr| addr & !AMENDED);
        ReadView {
            // SAFETY: the pointer is never null, and a replaced table is retired
            // through the reclaimer only after it was unlinked here, so `guard`
            // keeps it alive for 'g.
            table: unsafe { &*table },
            amended: tagged.addr() & AMENDED != 0,
        }
    }

    /// Sets `amended` on the current table. Caller holds the map's lock (the only
    /// place `read` is written).
    pub(crate) fn set_amended(&self) {
        // Relaxed load: only lock holders store `read`, and the lock orders them.
        let tagged = self.tagged.load(Ordering::Relaxed);
        // Release: a reader that sees the flag and takes the lock must find the new
        // key in `dirty`; the lock gives that, and Release also keeps the table
        // contents published with the tagged pointer.
        self.tagged
            .store(tagged.map_addr(|addr| addr | AMENDED), Ordering::Release);
    }

    /// Publishes `table` (not amended) and returns the old one, which the caller
    /// must retire. Caller holds the map's lock.
    pub(crate) fn replace(&self, table: Table<K, V>) -> *mut Table<K, V> {
        let new = Box::into_raw(Box::new(table));
        // AcqRel: Release publishes the new table's contents to readers; Acquire is
        // not needed for the old one (the lock ordered its writes) but is free here.
        // (Mutant: publish without Release.)
        let order = mutant!("promote_relaxed" => Ordering::Relaxed, else Ordering::AcqRel);
        let old = self.tagged.swap(new, order);
        old.map_addr(|addr| addr & !AMENDED)
    }

    /// The current table for a caller holding the map's lock.
    ///
    /// # Safety
    ///
    /// The caller holds the lock for all of `'l` (so the table is not replaced) and
    /// a guard.
    pub(crate) unsafe fn load_locked<'l>(&self) -> ReadView<'l, K, V> {
        // Relaxed: lock holders are the only writers and the lock orders them.
        let tagged = self.tagged.load(Ordering::Relaxed);
        ReadView {
            // SAFETY: non-null, and not replaced while the caller holds the lock.
            table: unsafe { &*tagged.map_addr(|addr| addr & !AMENDED) },
            amended: tagged.addr() & AMENDED != 0,
        }
    }

    /// The table, for `&mut` access when the map is exclusively borrowed.
    pub(crate) fn take_exclusive(&mut self) -> Box<Table<K, V>> {
        // Relaxed: exclusive access (loom's atomics have no `get_mut`).
        let tagged = self.tagged.load(Ordering::Relaxed);
        self.tagged.store(core::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: the pointer came from `Box::into_raw` and is now owned here alone.
        unsafe { Box::from_raw(tagged.map_addr(|addr| addr & !AMENDED)) }
    }
}
