//! A map entry: the key, its cached hash, and one atomic value slot.
//!
//! Entries are shared between the read table and the dirty table (the same
//! `Arc`), so an update through either table is seen through both. The slot is the
//! state machine of the sync.Map protocol:
//!
//! ```text
//!            insert (CAS, lock-free)          remove (CAS, lock-free)
//!   deleted ─────────────────────────► live ─────────────────────────► deleted
//!      │  ▲                             │ ▲  replace / update (CAS, lock-free)
//!      │  └────── unexpunge (locked) ───┼─┘
//!      ▼                                │
//!   expunged ◄── dirty copy (locked) ───┘ (only from deleted)
//! ```
//!
//! *Expunged* means "deleted **and** left out of the dirty table": such an entry
//! must never be revived through the read table alone, or the key would be live in
//! `read` but missing from `dirty` and would vanish at the next promotion. Every
//! lock-free transition therefore refuses to leave *expunged*; only a lock holder,
//! who puts the entry back into `dirty` in the same critical section, may.

use core::cell::UnsafeCell;
use core::mem::{offset_of, ManuallyDrop};

use crate::raw::cell::{self, drop_contained, Owned, CELL_ALIGN};
use crate::raw::mutant::mutant;
use crate::sync::{Arc, AtomicPtr, Ordering};

/// The address that marks an expunged slot: 1, never a cell's (cells are at
/// least [`CELL_ALIGN`]-aligned) nor `first`'s (inside an `Arc` allocation). With
/// null marking *deleted*, a slot is live exactly when its address is above 1 —
/// one compare on the read path, no load of a marker's address.
const EXPUNGED_ADDR: usize = 1;
const _: () = assert!(EXPUNGED_ADDR < CELL_ALIGN);

/// The *expunged* marker for a slot of `V`s.
#[inline]
pub(crate) fn expunged<V>() -> *mut V {
    core::ptr::without_provenance_mut(EXPUNGED_ADDR)
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

/// One key of a [`SyncMap`](crate::SyncMap).
///
/// The value an entry is created with lives inside the entry (`first`), so a hit
/// on a key that was never overwritten reads the slot and the value from the same
/// allocation: one dependent load fewer than a boxed value, and no allocation of
/// its own. Later values are boxed cells (see [`cell`]). `first` cannot be reused
/// once replaced, because readers may still hold references to it; it is dropped
/// in place through the reclaimer (see [`retire_value`]) and its bytes go with
/// the entry.
///
/// `repr(C)` with `first` before `hash` so that a zero-sized `V` still gets an
/// address strictly inside the entry's allocation: unique among all value cells,
/// which slot compare-and-swaps rely on.
///
/// [`retire_value`]: super::garbage::retire_value
#[repr(C)]
pub(crate) struct Entry<K, V> {
    /// Null: deleted. [`expunged`]: expunged. Otherwise an owned value:
    /// `first`, or a boxed cell.
    slot: AtomicPtr<V>,
    /// The first value. Owned by whoever owns a pointer to it: the slot, then the
    /// record retiring it. Dropped by hand, so `ManuallyDrop`; written through
    /// shared references to the entry (by that drop), so `UnsafeCell`.
    first: UnsafeCell<ManuallyDrop<V>>,
    /// `S::hash_one(key)`, cached so that building, copying and growing tables
    /// never calls user `Hash` code (which could panic half-way through a resize).
    pub(crate) hash: u64,
    /// Dropped in `Drop`, with its panic contained.
    key: ManuallyDrop<K>,
}

/// What a [`Entry::try_load_or_store`] found or did.
pub(crate) enum LoadOrStoreRaw<V> {
    /// The slot held this value; the candidate was not stored.
    Loaded(*mut V),
    /// The candidate is now the slot's value (the slot was deleted).
    Stored(*mut V),
    /// The slot is expunged: retry under the lock.
    Expunged,
}

impl<K, V> Entry<K, V> {
    /// A new shared entry holding `value` inline.
    pub(crate) fn new_shared(hash: u64, key: K, value: V) -> Arc<Self> {
        let entry = Arc::new(Entry {
            slot: AtomicPtr::new(core::ptr::null_mut()),
            first: UnsafeCell::new(ManuallyDrop::new(value)),
            hash,
            key: ManuallyDrop::new(key),
        });
        // Derived from the `Arc`'s raw pointer, not from a reference to the field,
        // so that the slot's pointer may reach the whole entry: `retire_value` goes
        // back from it to the entry to keep the entry alive while it waits.
        let base = Arc::as_ptr(&entry);
        // SAFETY: `base` points to the entry just allocated, alive while `entry` is.
        let first = unsafe { UnsafeCell::raw_get(core::ptr::addr_of!((*base).first)) };
        // Relaxed: the entry is not shared yet; whoever publishes the `Arc` (a
        // table behind a Release store or a lock) publishes this store with it.
        entry.slot.store(first.cast::<V>(), Ordering::Relaxed);
        entry
    }

    /// Where `first` lives: the slot's pointer while the first value is current.
    #[inline]
    pub(crate) fn first_ptr(&self) -> *mut V {
        self.first.get().cast::<V>()
    }

    /// The entry that `first` (a pointer equal to its [`first_ptr`]) belongs to,
    /// with the pointer's provenance.
    ///
    /// [`first_ptr`]: Self::first_ptr
    pub(crate) fn from_first(first: *mut V) -> *const Self {
        first
            .cast::<u8>()
            .wrapping_sub(offset_of!(Self, first))
            .cast::<Self>()
    }

    /// Drops the value `ptr` owns: `first` in place, or a boxed cell.
    ///
    /// # Safety
    ///
    /// `ptr` is a live value of this entry (its slot's or one unlinked from it),
    /// owned by the caller, and no other thread can read it any more.
    pub(crate) unsafe fn drop_value(&self, ptr: *mut V) {
        if ptr == self.first_ptr() {
            // SAFETY: the caller owns `first` and nobody reads it; dropped once,
            // and the pointer is never dereferenced again.
            unsafe { ManuallyDrop::drop(&mut *ptr.cast::<ManuallyDrop<V>>()) }
        } else {
            // SAFETY: any other live pointer is a boxed cell; the caller's contract.
            unsafe { cell::drop_raw(ptr) }
        }
    }

    pub(crate) fn key(&self) -> &K {
        &self.key
    }

    /// The slot's current pointer: a value, null (deleted) or expunged.
    #[inline]
    pub(crate) fn load(&self) -> *mut V {
        // Acquire: pairs with the Release of the CAS/swap that installed the value,
        // so its contents are visible before the caller dereferences it.
        self.slot.load(Ordering::Acquire)
    }

    /// The live value, if any.
    ///
    /// # Safety
    ///
    /// The caller holds a guard of the map's reclaimer for all of `'g`.
    #[inline]
    pub(crate) unsafe fn get<'g>(&self) -> Option<&'g V> {
        let current = self.load();
        if current == self.first_ptr() {
            // The common case, a key never overwritten, gets its own branch: the
            // returned address then depends on the entry's address only, not on
            // the slot's contents, so the CPU can read the value while the slot's
            // load is still on its way (the branch is predicted).
            // SAFETY: the slot holds `first`, so `first` is the live value, owned
            // by the slot and retired only after leaving it; the caller's guard
            // keeps it (and the entry) alive for 'g.
            return Some(unsafe { &*self.first_ptr() });
        }
        // SAFETY: as above, for a boxed value (or none).
        unsafe { as_live(current) }
    }

    /// One compare-and-swap, with the orderings every value transition uses.
    #[inline]
    fn cas(&self, current: *mut V, new: *mut V) -> Result<*mut V, *mut V> {
        // Success AcqRel: Release publishes `new`'s contents to readers; Acquire
        // makes the writes into the replaced value happen-before the caller retires
        // (and a collector later drops) it. Failure Acquire: the caller may
        // dereference the value it finds.
        // (Mutant: the loser does not acquire the value it finds.)
        let failure = mutant!("cas_failure_relaxed" => Ordering::Relaxed, else Ordering::Acquire);
        self.slot
            .compare_exchange(current, new, Ordering::AcqRel, failure)
    }

    /// Installs `new` unless the slot is expunged (lock-free insert).
    ///
    /// Returns the previous pointer (a value, or null if the key was deleted), which
    /// the caller now owns and must retire; or gives `new` back if expunged.
    pub(crate) fn try_swap(&self, new: Owned<V>) -> Result<*mut V, Owned<V>> {
        let mut current = self.load();
        loop {
            // (Mutant: revive an expunged slot through `read` alone.)
            if current == expunged() && !mutant!("swap_ignores_expunged" => true, else false) {
                return Err(new);
            }
            match self.cas(current, new.as_ptr()) {
                Ok(old) => {
                    new.publish();
                    return Ok(old);
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Installs `new` unconditionally. The caller holds the map's lock and knows
    /// the slot is not expunged (it is in `dirty`, or was just unexpunged), and only
    /// lock holders expunge, so no other state can appear.
    ///
    /// Returns the previous pointer (a value or null) for the caller to retire.
    pub(crate) fn swap_locked(&self, new: Owned<V>) -> *mut V {
        // AcqRel: as for `cas` — publish the new value, acquire the old one.
        let old = self.slot.swap(new.publish(), Ordering::AcqRel);
        debug_assert!(old != expunged(), "swap_locked on an expunged slot");
        old
    }

    /// Expunged → deleted, under the lock; true if the slot was expunged (and the
    /// caller must now put the entry back into `dirty`).
    pub(crate) fn unexpunge_locked(&self) -> bool {
        // Relaxed: markers carry no data, and every decision taken on the expunged
        // marker is taken under the map's lock, whose acquire/release orders it.
        self.slot
            .compare_exchange(
                expunged(),
                core::ptr::null_mut(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Deleted → expunged, under the lock, while copying `read` into `dirty`.
    /// Returns true if the slot is now expunged (leave the entry out of `dirty`),
    /// false if it holds a value (copy it).
    pub(crate) fn try_expunge_locked(&self) -> bool {
        // Relaxed: see `unexpunge_locked`; a racing lock-free insert that wins the
        // slot makes this CAS fail, and the value it stored is copied.
        let mut current = self.slot.load(Ordering::Relaxed);
        while current.is_null() {
            match self.slot.compare_exchange(
                current,
                expunged(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        current == expunged()
    }

    /// Sets the slot to expunged whatever it holds, returning the previous pointer
    /// (for `clear`: the entry is being discarded, so a racing lock-free insert
    /// must fail and retry under the lock against the new tables).
    pub(crate) fn expunge_locked(&self) -> *mut V {
        // Acquire: if the old pointer is a value, the caller retires it, so the
        // installer's writes must happen-before; the marker itself publishes nothing.
        self.slot.swap(expunged(), Ordering::Acquire)
    }

    /// Deleted → `candidate()`, or reports the live value (Go's LoadOrStore).
    /// `candidate` is called at most once, only if the slot is deleted.
    pub(crate) fn try_load_or_store(
        &self,
        candidate: &mut Option<Owned<V>>,
        make: &mut dyn FnMut() -> Owned<V>,
    ) -> LoadOrStoreRaw<V> {
        let mut current = self.load();
        loop {
            if current == expunged() {
                return LoadOrStoreRaw::Expunged;
            }
            if !current.is_null() {
                return LoadOrStoreRaw::Loaded(current);
            }
            let new = candidate.get_or_insert_with(&mut *make).as_ptr();
            // (Mutant: a blind swap instead of the CAS from deleted.)
            if mutant!("load_or_store_blind" => true, else false) {
                self.slot.swap(new, Ordering::AcqRel);
                current = new;
            }
            match self.cas(current, new) {
                Ok(_) => {
                    if let Some(owned) = candidate.take() {
                        owned.publish();
                    }
                    return LoadOrStoreRaw::Stored(new);
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// The CAS loop behind every transition out of a live value: remove,
    /// compare-and-remove, compare-exchange and update.
    ///
    /// `decide` sees the current value and returns the pointer to install (null to
    /// delete) or `None` to give up. On success returns the replaced pointer, which
    /// the caller must retire; on failure the pointer found (null or expunged if the
    /// key is absent). When a CAS loses a race, `decide` runs again on the newer
    /// value; a pointer it returned earlier was not installed and stays the caller's.
    ///
    /// # Safety
    ///
    /// The caller holds a guard of the map's reclaimer for the whole call.
    pub(crate) unsafe fn replace_live(
        &self,
        mut decide: impl FnMut(&V) -> Option<*mut V>,
    ) -> Result<*mut V, *mut V> {
        let mut current = self.load();
        loop {
            if !is_live(current) {
                return Err(current);
            }
            // SAFETY: `current` is live and the caller's guard protects it.
            let Some(new) = decide(unsafe { &*current }) else {
                return Err(current);
            };
            match self.cas(current, new) {
                Ok(old) => return Ok(old),
                Err(actual) => current = actual,
            }
        }
    }
}

impl<K, V> Entry<K, V> {
    /// Replaces a live value equal to `current` with `new` (the CAS behind
    /// `compare_exchange`). Returns the replaced pointer, which the caller must
    /// retire; or the pointer found instead (maybe deleted or expunged) and `new`.
    ///
    /// # Safety
    ///
    /// The caller holds a guard of the map's reclaimer for the whole call.
    pub(crate) unsafe fn compare_exchange(&self, current: &V, new: V) -> Result<*mut V, (*mut V, V)>
    where
        V: PartialEq,
    {
        let new = Owned::new(new);
        // SAFETY: the caller's guard.
        match unsafe { self.replace_live(|v| (v == current).then(|| new.as_ptr())) } {
            Ok(old) => {
                new.publish();
                Ok(old)
            }
            Err(found) => Err((found, new.into_inner())),
        }
    }

    /// Replaces a live value with `f(value)`: the read-modify-write behind
    /// `update`. When a CAS loses a race, `f` runs again on the newer value and the
    /// losing result is dropped. Returns the replaced and the installed pointer;
    /// the caller must retire the replaced one. `None` if the key is absent.
    ///
    /// # Safety
    ///
    /// The caller holds a guard of the map's reclaimer for the whole call.
    pub(crate) unsafe fn update(&self, mut f: impl FnMut(&V) -> V) -> Option<(*mut V, *mut V)> {
        let mut next: Option<Owned<V>> = None;
        // SAFETY: the caller's guard.
        let old = unsafe {
            self.replace_live(|v| {
                let cell = next.insert(Owned::new(f(v)));
                Some(cell.as_ptr())
            })
        }
        .ok()?;
        let new = next.take().expect("the installed cell").publish();
        Some((old, new))
    }
}

impl<K, V> Drop for Entry<K, V> {
    fn drop(&mut self) {
        // An entry is dropped only after a grace period following its removal from
        // the last table (or with the whole map exclusively borrowed), so nobody can
        // read its slot now. Relaxed: loom's atomics have no `get_mut`; exclusive
        // access needs no ordering.
        let ptr = self.slot.load(Ordering::Relaxed);
        // Destructors of user types may panic. They run here from a collector or
        // from a map's drop, where unwinding would leak the rest of a table: contain
        // each one (the panic hook has already reported it) and free everything.
        // A `first` the slot no longer holds is not ours: its retire record holds
        // a reference to this entry, so it has been dropped already.
        if is_live(ptr) {
            // SAFETY: a live slot owns its value, and nobody else can reach it now.
            drop_contained(|| unsafe { self.drop_value(ptr) });
        }
        // SAFETY: the key is dropped exactly once, here, and never used again.
        drop_contained(|| unsafe { ManuallyDrop::drop(&mut self.key) });
    }
}
