//! One key of a [`SyncMap`](crate::SyncMap): the key, the value it had when its
//! table was built, and one atomic *link* that says where the current value is.
//!
//! A slot is a bucket of the read table with its link beside the buckets (see
//! `read`), or a boxed [`Slot`] node of the delta; [`SlotRef`] is either, and the
//! protocol is the same for both. The link is one word:
//!
//! ```text
//! link          the key's current value              reached by
//! null          the slot's own `value` (inline)      the build of the table
//! REMOVED (1)   none: the key is absent              remove, remove_if
//! cell          a heap cell (`raw::cell`)            insert, update, compare_exchange
//! … | SEALED    as above, frozen by a promotion      promotion and clear (writer lock)
//!
//!             write (CAS)                       write / remove (CAS)
//!   inline ──────────────► cell ◄────────────────────────────► cell
//!      │ remove (CAS)      │ remove (CAS)      revive (CAS)      ▲
//!      └──────────────► REMOVED ──────────────────────────────────┘
//!   any state ── seal (CAS, writer lock) ──► state | SEALED   (final for this table)
//! ```
//!
//! The inline value is never written after the table is published and never
//! returns once the link has left it: a reader that loads a null link may return
//! `&value` at once, and the value it returns stays valid until the table is
//! freed, after the reader's guard is gone.
//!
//! A read-table slot also has a *touched* bit (see `read`): readers that find it
//! clear return the inline value without loading the link. A write therefore
//! takes effect for readers when the bit is set — by its writer just after the
//! CAS, or earlier by any thread that loads the non-null link and acts on it
//! (writers, declined writes, seals), which sets the bit first. Without that
//! help, a thread could see a value through the link and then the older inline
//! value through the still-clear bit.
//!
//! *Sealing* is how a promotion copies a slot without losing a write: it sets the
//! `SEALED` bit with one CAS, and from then on every write's CAS fails (writers
//! compare against the unsealed link they loaded). The promotion then clones the
//! sealed value into the next table; a writer that meets the seal waits for the
//! promotion and retries on the table it published. Readers ignore the bit: the
//! sealed value *is* the key's current value until the next table is published.

use core::mem::ManuallyDrop;

use crate::raw::cell::{self, drop_contained, CELL_ALIGN};
use crate::raw::mutant::mutant;
use crate::sync::{AtomicPtr, AtomicU64, Ordering};

/// The link of a removed key: address 1, never a cell (cells are
/// [`CELL_ALIGN`]-aligned).
const REMOVED: usize = 1;
/// The tag bit a promotion sets; free in every cell address.
const SEALED: usize = 2;
const _: () = assert!(REMOVED < CELL_ALIGN && SEALED < CELL_ALIGN && SEALED & REMOVED == 0);

/// A link value, decoded.
pub(crate) mod link {
    use super::{REMOVED, SEALED};

    /// The link of a removed key.
    #[inline]
    pub(crate) fn removed<V>() -> *mut V {
        core::ptr::without_provenance_mut(REMOVED)
    }

    /// The current value is the slot's own (sealed or not).
    #[inline]
    pub(crate) fn is_inline<V>(link: *mut V) -> bool {
        link.addr() & !SEALED == 0
    }

    /// The key is absent (sealed or not).
    #[inline]
    pub(crate) fn is_removed<V>(link: *mut V) -> bool {
        link.addr() & !SEALED == REMOVED
    }

    /// A promotion has frozen the slot.
    #[inline]
    pub(crate) fn is_sealed<V>(link: *mut V) -> bool {
        link.addr() & SEALED != 0
    }

    /// The cell a link points to, if it points to one.
    #[inline]
    pub(crate) fn cell<V>(link: *mut V) -> Option<*mut V> {
        (link.addr() & !SEALED > REMOVED).then(|| link.map_addr(|addr| addr & !SEALED))
    }
}

/// A delta node: a key, its value as inserted, and its link; see the
/// [module docs](self).
pub(crate) struct Slot<K, V> {
    /// Dropped by hand in `Drop`, each destructor's panic contained.
    key: ManuallyDrop<K>,
    /// The value as of the table's build; never mutated, dropped with the slot.
    value: ManuallyDrop<V>,
    /// Null, [`link::removed`], or a cell owned by this slot; maybe `SEALED`.
    link: AtomicPtr<V>,
}

/// What [`SlotRef::write`] did.
pub(crate) enum Write<V> {
    /// The CAS installed the new link; this is the link it replaced (without the
    /// seal bit, which it never has): null (the inline value), removed, or a cell
    /// the caller now owns and must retire.
    Done(*mut V),
    /// `decide` declined, having seen this link.
    Declined(*mut V),
    /// A promotion sealed the slot: nothing was written; retry on the next root.
    Sealed,
}

impl<K, V> Slot<K, V> {
    /// A node whose current value is `value`, inline.
    pub(crate) fn new(key: K, value: V) -> Self {
        Slot {
            key: ManuallyDrop::new(key),
            value: ManuallyDrop::new(value),
            link: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The key and value of a node that was never published (its link is still
    /// null and no other thread has seen it).
    pub(crate) fn into_parts(self) -> (K, V) {
        let mut node = ManuallyDrop::new(self);
        // Relaxed: exclusive access (loom's atomics have no `get_mut`).
        debug_assert!(node.link.load(Ordering::Relaxed).is_null());
        // SAFETY: `node` is never dropped (ManuallyDrop) and its link holds no
        // cell, so the key and value are each moved out exactly once, here.
        unsafe {
            (
                ManuallyDrop::take(&mut node.key),
                ManuallyDrop::take(&mut node.value),
            )
        }
    }

    /// This node as a slot (a delta node has no touched bit: readers always load
    /// its link, which shares the node's cache line).
    #[inline]
    pub(crate) fn as_slot(&self) -> SlotRef<'_, K, V> {
        SlotRef::new(&self.key, &self.value, &self.link, None)
    }
}

/// One key's slot, wherever it lives: its key, its inline value, its link, and —
/// for a read-table slot — the bitmap word and bit that say whether the link may
/// be non-null (see `read`).
pub(crate) struct SlotRef<'a, K, V> {
    key: &'a K,
    value: &'a V,
    link: &'a AtomicPtr<V>,
    touched: Option<(&'a AtomicU64, u64)>,
}

// Manual impls: a derive would require `K: Copy, V: Copy`; only references are
// copied.
impl<K, V> Clone for SlotRef<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for SlotRef<'_, K, V> {}

impl<'a, K, V> SlotRef<'a, K, V> {
    #[inline]
    pub(crate) fn new(
        key: &'a K,
        value: &'a V,
        link: &'a AtomicPtr<V>,
        touched: Option<(&'a AtomicU64, u64)>,
    ) -> Self {
        SlotRef {
            key,
            value,
            link,
            touched,
        }
    }

    pub(crate) fn key(self) -> &'a K {
        self.key
    }

    /// The inline value (current while the link is null).
    #[inline]
    pub(crate) fn inline_value(self) -> &'a V {
        self.value
    }

    /// The inline value if no write has touched this read-table slot since the
    /// table was published: the read path's one-bit check. `None` for a delta
    /// node, or a touched slot (load its link).
    #[inline]
    pub(crate) fn untouched_value(self) -> Option<&'a V> {
        let (word, bit) = self.touched?;
        // Acquire: pairs with the Release of `touch`, so that a reader that sees
        // the bit set also sees the link its writer installed.
        (word.load(Ordering::Acquire) & bit == 0).then_some(self.value)
    }

    /// The link, for a reader: Acquire, so that a cell it points to is
    /// initialized before the reader dereferences it (pairs with the Release of
    /// the CAS that installed it). An inline value needs nothing more: it was
    /// published with the table.
    #[inline]
    pub(crate) fn load(self) -> *mut V {
        self.link.load(Ordering::Acquire)
    }

    /// The value `link` (loaded from this slot) says is current, if any.
    ///
    /// # Safety
    ///
    /// A cell `link` points to is protected by a guard for `'a`.
    #[inline]
    pub(crate) unsafe fn resolve(self, link: *mut V) -> Option<&'a V> {
        if link::is_inline(link) {
            return Some(self.value);
        }
        // SAFETY: a cell is live while linked, and retired (not freed) when
        // unlinked: the caller's guard keeps it.
        link::cell(link).map(|cell| unsafe { &*cell })
    }

    /// The current value, if any.
    ///
    /// # Safety
    ///
    /// The caller holds a guard of the map's reclaimer for `'a`.
    #[inline]
    pub(crate) unsafe fn get(self) -> Option<&'a V> {
        if let Some(value) = self.untouched_value() {
            return Some(value);
        }
        // SAFETY: the caller's guard.
        unsafe { self.resolve(self.load()) }
    }

    /// [`touch`](Self::touch), unless the mutant that skips helping is on.
    #[inline]
    fn touch_for(self, _seen: *mut V) {
        // (Mutant: a thread that saw another's link does not set the bit.)
        if !mutant!("observer_skips_touch" => true, else false) {
            self.touch();
        }
    }

    /// Marks a read-table slot as touched after a write left its link non-null;
    /// no-op for a delta node, or if the bit is set already (so a hot key's
    /// overwrites write no shared line besides its link).
    #[inline]
    fn touch(self) {
        if let Some((word, bit)) = self.touched {
            // Relaxed: a set bit stays set, and whoever set it did so after an
            // earlier CAS in this link's modification order; a reader that comes
            // after this write (ordered after its return) sees the bit and then,
            // through that order, this write's link.
            if word.load(Ordering::Relaxed) & bit == 0 {
                // Release: publishes the CAS before it to readers that see the
                // bit (see `untouched_value`), which is what lets a write take
                // effect when its bit is set.
                word.fetch_or(bit, Ordering::Release);
            }
        }
    }

    /// The CAS loop behind every write. `decide` sees the current value (`None`:
    /// absent) and returns the link to install — a cell it owns, or
    /// [`link::removed`] — or `None` to decline. When a CAS loses a race, `decide`
    /// runs again on the newer value; a cell it returned earlier was not installed
    /// and stays its maker's. A successful write marks the slot touched before
    /// returning.
    ///
    /// # Safety
    ///
    /// The caller holds a guard of the map's reclaimer for `'a`.
    pub(crate) unsafe fn write(
        self,
        mut decide: impl FnMut(Option<&'a V>) -> Option<*mut V>,
    ) -> Write<V> {
        let mut current = self.load();
        loop {
            // A write takes effect for readers when its slot's touched bit is
            // set, which its writer does just after the CAS. A write (or a
            // failed CAS, or a declined decision) that has seen a non-inline link
            // sets the bit itself before acting on it: otherwise a thread could
            // see a value through the link and then, in a later read, the older
            // inline value through the clear bit (a stale read, found by the
            // linearizability histories).
            if !link::is_inline(current) {
                self.touch_for(current);
            }
            // (Mutant: a write that revives a removed key ignores the seal, so the
            // revival lands in a table the promotion has already copied.)
            let ignore_seal =
                mutant!("revive_ignores_seal" => link::is_removed(current), else false);
            if link::is_sealed(current) && !ignore_seal {
                return Write::Sealed;
            }
            // SAFETY: the caller's guard.
            let Some(new) = decide(unsafe { self.resolve(current) }) else {
                return Write::Declined(current);
            };
            // Success AcqRel: Release publishes the new cell's contents to readers;
            // Acquire makes the writes into the replaced cell happen-before the
            // caller retires it (and a collector later drops it). Failure Acquire:
            // `decide` reads the value found.
            // (Mutant: the loser does not acquire the value it finds.)
            let failure =
                mutant!("slot_cas_failure_relaxed" => Ordering::Relaxed, else Ordering::Acquire);
            match self
                .link
                .compare_exchange(current, new, Ordering::AcqRel, failure)
            {
                Ok(old) => {
                    self.touch();
                    return Write::Done(old);
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Freezes the slot for a promotion or a clear and returns its link from before
    /// (never sealed already). Caller holds the writer lock.
    pub(crate) fn seal(self) -> *mut V {
        // Acquire: the caller clones the value the link points to, so the writes
        // that made it must happen-before; Release publishes nothing (writers that
        // meet the seal synchronize through the lock instead). Failure Relaxed:
        // the CAS is retried.
        let mut current = self.link.load(Ordering::Relaxed);
        loop {
            debug_assert!(!link::is_sealed(current), "sealed twice");
            // (Mutant: promotion copies the value without sealing the slot.)
            if mutant!("promote_skips_seal" => true, else false) {
                return self.link.load(Ordering::Acquire);
            }
            match self.link.compare_exchange_weak(
                current,
                current.map_addr(|addr| addr | SEALED),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // The next table gets the value the link points to: readers
                    // of this one must see it too (see `write`).
                    if !link::is_inline(current) {
                        self.touch_for(current);
                    }
                    return current;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Undoes [`seal`](Self::seal) after a promotion failed (a panicking `Clone`
    /// or `Hash`). Caller holds the writer lock.
    pub(crate) fn unseal(self) {
        // Relaxed, load and store: no write changes a sealed link (so no CAS is
        // needed), and writers waiting for the promotion retry after taking the
        // lock, which orders this store before their load.
        let sealed = self.link.load(Ordering::Relaxed);
        self.link
            .store(sealed.map_addr(|addr| addr & !SEALED), Ordering::Relaxed);
    }
}

impl<K, V> Drop for Slot<K, V> {
    /// Drops the key, the inline value and the linked cell, if any. A node is
    /// dropped with its delta, after its grace period or with the map
    /// exclusively borrowed: nobody can read it. Each destructor's panic is
    /// contained, so one bad value cannot leak the rest of a table.
    fn drop(&mut self) {
        // Relaxed: exclusive access (loom's atomics have no `get_mut`).
        let current = self.link.load(Ordering::Relaxed);
        if let Some(cell) = link::cell(current) {
            // SAFETY: a linked cell is owned by its slot; dropped once, here.
            drop_contained(|| unsafe { cell::drop_raw(cell) });
        }
        // SAFETY: each is dropped exactly once, here, and never used again.
        drop_contained(|| unsafe { ManuallyDrop::drop(&mut self.key) });
        // SAFETY: as above.
        drop_contained(|| unsafe { ManuallyDrop::drop(&mut self.value) });
    }
}
