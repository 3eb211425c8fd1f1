//! Every write of a [`SyncMap`]: one CAS on the key's link when the key has a
//! slot in the current root, one CAS on a delta bucket to add a new key. The
//! writer lock only makes room in a full delta, or waits out a promotion.
//!
//! Each write finds the key's slot — read table, then delta — and runs one
//! [`SlotRef::write`]. If a promotion sealed the slot, the write waits for that
//! promotion (by taking the writer lock, which it holds) and starts over on the
//! root it published; nothing was written to the sealed slot, so nothing is lost
//! ([`retrying`](SyncMap::retrying)). Every function takes the caller's guard;
//! references it returns live as long as that guard.

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use super::delta::Insert;
use super::pinned::LoadOrStore;
use super::policy::{self, OffPath};
use super::root::Root;
use super::slot::{link, Slot, SlotRef, Write};
use super::{SyncMap, Writer};
use crate::raw::cell::{drop_contained, Owned};
use crate::raw::retire::{hand_back_replaced, retire_cell};
use crate::reclaim::{Protect, Reclaim};
use crate::sync::{self, MutexGuard, Ordering};

/// The guard type of a map's reclaimer.
pub(crate) type GuardOf<'r, R> = <R as Reclaim>::Guard<'r>;

/// What [`SyncMap::add_new`] did.
enum NewKey<'g, K, V> {
    /// The key is in the delta, with the value inline in this node.
    Added(&'g Slot<K, V>),
    /// The key has a slot after all: the key and value back.
    Present(K, V),
}

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        // Not `hash_one(key)`, which hashes through `<&Q as Hash>`: one more call
        // level, which the compiler does not always inline on the read path.
        let mut state = self.read_side.hasher.build_hasher();
        key.hash(&mut state);
        core::hash::Hasher::finish(&state)
    }

    /// Takes the writer lock, waiting. Readers never call this (a test counts it).
    pub(super) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        #[cfg(test)]
        self.lock_audit.note_lock();
        sync::lock(&self.write_side.writer)
    }

    /// Waits for the promotion that sealed a slot this thread wanted to write: it
    /// holds the writer lock until it has published the next root.
    fn wait_for_promotion(&self) {
        drop(self.lock_writer());
    }

    /// The current root, protected by `guard`.
    #[inline]
    pub(crate) fn root<'g, P: Protect>(&self, guard: &'g P) -> &'g Root<K, V> {
        self.read_side.root.load(guard)
    }

    /// Runs `attempt` on `key`'s slot until no promotion gets in the way:
    /// `attempt` returns `None` when the slot was sealed, and is then run again on
    /// the slot of the root that promotion published. `None` if the key has no
    /// slot in the current root.
    fn retrying<'g, Q, T>(
        &self,
        guard: &'g GuardOf<'_, R>,
        hash: u64,
        key: &Q,
        attempt: impl FnMut(SlotRef<'g, K, V>) -> Option<T>,
    ) -> Option<T>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.attempt_slot(guard, hash, key, attempt).ok()
    }

    /// [`retrying`](Self::retrying), which gives back the root that has no slot
    /// for the key, for [`add_new`](Self::add_new).
    fn attempt_slot<'g, Q, T>(
        &self,
        guard: &'g GuardOf<'_, R>,
        hash: u64,
        key: &Q,
        mut attempt: impl FnMut(SlotRef<'g, K, V>) -> Option<T>,
    ) -> Result<T, &'g Root<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        loop {
            let root = self.root(guard);
            let slot = root
                .find_read(hash, key)
                .or_else(|| root.delta(guard).find(hash, key).map(|node| node.as_slot()));
            let Some(slot) = slot else {
                return Err(root);
            };
            if let Some(done) = attempt(slot) {
                return Ok(done);
            }
            self.wait_for_promotion();
        }
    }

    /// Adds `key` — which has no slot in `searched`, a root the caller searched —
    /// with `value` inline in a new delta node, lock-free. Gives the key and value
    /// back if the key has a slot after all: another thread added it, and the
    /// caller writes it there instead. The writer lock is taken only to wait for a
    /// promotion or growth, or to make room in a full delta.
    fn add_new<'g>(
        &self,
        guard: &'g GuardOf<'_, R>,
        searched: &'g Root<K, V>,
        hash: u64,
        key: K,
        value: V,
    ) -> NewKey<'g, K, V> {
        let mut node = Box::new(Slot::new(key, value));
        let mut searched = searched;
        loop {
            let root = self.root(guard);
            if !core::ptr::eq(root, searched) {
                // A promotion published a new read table, which may hold the key.
                if root.find_read(hash, node.as_slot().key()).is_some() {
                    let (key, value) = node.into_parts();
                    return NewKey::Present(key, value);
                }
                searched = root;
            }
            let delta = root.delta(guard);
            match root.insert_node(delta, hash, node) {
                Insert::Inserted(node) => {
                    self.count_insert();
                    self.promote_if_wanted(guard);
                    return NewKey::Added(node);
                }
                Insert::Present(back) => {
                    let (key, value) = back.into_parts();
                    return NewKey::Present(key, value);
                }
                Insert::Full(back) => {
                    node = back;
                    self.make_room(guard, root, delta);
                }
                Insert::Closed(back) => {
                    node = back;
                    self.wait_for_promotion();
                }
            }
        }
    }

    /// A read that left the inline path: counts it (sampled) toward the promotion
    /// rule, and promotes if the budget is spent and the writer lock is free.
    /// `root` is the root the read used (protected by the reader).
    // Inlined: under a skewed load most reads of hot keys take the cell path, and
    // only one in `SAMPLE` needs more than the thread-local countdown.
    #[inline]
    pub(crate) fn note_off_path_read(&self, root: &Root<K, V>, kind: OffPath) {
        if policy::sampled() {
            self.count_off_path_read(root, kind);
        }
    }

    /// The sampled part of [`note_off_path_read`](Self::note_off_path_read).
    #[cold]
    #[inline(never)]
    fn count_off_path_read(&self, root: &Root<K, V>, kind: OffPath) {
        let keys = root.read.len() + root.delta_len();
        if self.sampler.count(kind, keys) {
            // A guard of the scheme's own (the reader's may be an owned guard's
            // hold), for the old root this promotion retires.
            let guard = self.read_side.reclaim.pin();
            self.promote_from_reader(&guard);
        }
    }

    /// `insert` (Go's `Swap`): returns the previous value, valid for `guard`.
    /// A key with a slot in the root takes one CAS; a new key one CAS into the
    /// delta.
    pub(crate) fn swap<'g>(
        &self,
        guard: &'g GuardOf<'_, R>,
        mut key: K,
        mut value: V,
    ) -> Option<&'g V> {
        let hash = self.hash(&key);
        loop {
            let mut pending = Some(value);
            let mut cell: Option<Owned<V>> = None;
            let done = self.attempt_slot(guard, hash, &key, |slot| {
                let new = cell
                    .get_or_insert_with(|| {
                        Owned::new_in(pending.take().expect("moved once"), &self.ledger)
                    })
                    .as_ptr();
                // SAFETY: `guard` is held for 'g.
                match unsafe { slot.write(|_| Some(new)) } {
                    Write::Done(old) => Some((slot, old)),
                    Write::Sealed => None,
                    Write::Declined(_) => unreachable!("an insert never declines"),
                }
            });
            let searched = match done {
                Ok((slot, old)) => {
                    cell.expect("installed").publish();
                    // An existing key keeps its stored key, as with `HashMap`.
                    drop_contained(|| drop(key));
                    return self.replaced(guard, slot, old);
                }
                Err(searched) => searched,
            };
            // A new key (rare after warm-up): its value goes inline into a node.
            let new = match cell {
                Some(cell) => cell.into_inner(),
                None => pending.expect("not moved"),
            };
            match self.add_new(guard, searched, hash, key, new) {
                NewKey::Added(_) => return None,
                NewKey::Present(back, new) => (key, value) = (back, new),
            }
        }
    }

    /// Accounts for the link a write replaced and hands back the value it held: a
    /// removed key gained a value (none to hand back); an inline value stays in
    /// its table; a cell is retired.
    fn replaced<'g>(
        &self,
        guard: &'g GuardOf<'_, R>,
        slot: SlotRef<'g, K, V>,
        old: *mut V,
    ) -> Option<&'g V> {
        let previous = if link::is_removed(old) {
            self.count_insert();
            self.count_revival();
            None
        } else if let Some(cell) = link::cell(old) {
            // SAFETY: unlinked by this thread's CAS; retired once, here.
            let retire = || unsafe { retire_cell(guard, &self.ledger, cell) };
            // SAFETY: the cell is live and protected by `guard`; `retire`
            // retires it.
            Some(unsafe { hand_back_replaced(cell, retire) })
        } else {
            Some(slot.inline_value())
        };
        self.promote_if_wanted(guard);
        previous
    }

    /// A key became present (a new node, or a removed slot took a value).
    pub(super) fn count_insert(&self) {
        // Relaxed: `len` is exact only when no write is in flight, and orders
        // nothing.
        self.write_side.len.fetch_add(1, Ordering::Relaxed);
    }

    /// A removed slot took a value again.
    fn count_revival(&self) {
        // Relaxed: a heuristic trigger.
        self.write_side.tombstones.fetch_sub(1, Ordering::Relaxed);
    }

    /// `get_or_insert_with` (Go's `LoadOrStore`). `make` runs at most once, with
    /// no lock held, and only if the key is absent when this thread tries to store.
    pub(crate) fn load_or_store<'g>(
        &self,
        guard: &'g GuardOf<'_, R>,
        mut key: K,
        make: &mut dyn FnMut() -> V,
    ) -> LoadOrStore<'g, V> {
        let hash = self.hash(&key);
        // `make()`'s value, made at most once and kept across retries.
        let mut made: Option<Owned<V>> = None;
        loop {
            let done = self.attempt_slot(guard, hash, &key, |slot| {
                // SAFETY: `guard` is held for 'g.
                let write = unsafe {
                    slot.write(|current| match current {
                        Some(_) => None,
                        None => Some(
                            made.get_or_insert_with(|| Owned::new_in(make(), &self.ledger))
                                .as_ptr(),
                        ),
                    })
                };
                match write {
                    Write::Done(_) => Some(Ok(())),
                    // SAFETY: `guard` is held for 'g.
                    Write::Declined(found) => Some(Err(unsafe { slot.resolve(found) })),
                    Write::Sealed => None,
                }
            });
            let searched = match done {
                Ok(Ok(())) => {
                    // A removed key revived.
                    let stored = made.take().expect("installed").publish();
                    drop_contained(|| drop(key));
                    self.count_insert();
                    self.count_revival();
                    self.promote_if_wanted(guard);
                    // SAFETY: now linked; cells leave links only through the
                    // reclaimer.
                    return LoadOrStore::Stored(unsafe { &*stored });
                }
                Ok(Err(found)) => {
                    drop_contained(|| drop((key, made)));
                    return LoadOrStore::Loaded(found.expect("declined only when present"));
                }
                Err(searched) => searched,
            };
            // A new key: make the value now, so that `make` may use the map.
            let value = match made.take() {
                Some(cell) => cell.into_inner(),
                None => make(),
            };
            match self.add_new(guard, searched, hash, key, value) {
                NewKey::Added(node) => return LoadOrStore::Stored(node.as_slot().inline_value()),
                // Another writer added the key meanwhile (rare): try again there,
                // with the value made.
                NewKey::Present(back, value) => {
                    key = back;
                    made = Some(Owned::new_in(value, &self.ledger));
                }
            }
        }
    }

    /// Removes `key` if `remove` says so for its current value (Go's `Delete`,
    /// `LoadAndDelete` and `CompareAndDelete`). Lock-free; the slot stays as a
    /// tombstone until the next promotion.
    pub(crate) fn remove_if<'g, Q>(
        &self,
        guard: &'g GuardOf<'_, R>,
        key: &Q,
        mut remove: impl FnMut(&V) -> bool,
    ) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let (slot, old) = self.retrying(guard, hash, key, |slot| {
            self.remove_from(guard, slot, &mut remove)
        })??;
        self.removed(guard, slot, old)
    }

    /// One attempt of [`remove_if`](Self::remove_if) on `slot`: `None` if sealed,
    /// `Some(None)` if declined (absent, or `remove` said no).
    pub(super) fn remove_from<'g>(
        &self,
        _guard: &'g GuardOf<'_, R>,
        slot: SlotRef<'g, K, V>,
        remove: &mut impl FnMut(&V) -> bool,
    ) -> Option<Option<(SlotRef<'g, K, V>, *mut V)>> {
        // SAFETY: `_guard` is held for 'g.
        let write =
            unsafe { slot.write(|current| current.filter(|v| remove(v)).map(|_| link::removed())) };
        match write {
            Write::Done(old) => Some(Some((slot, old))),
            Write::Declined(_) => Some(None),
            Write::Sealed => None,
        }
    }

    /// Accounts for a remove that replaced `old`, hands back the removed value,
    /// and compacts if the promotion rule says so (`note_tombstone`).
    pub(super) fn removed<'g>(
        &self,
        guard: &'g GuardOf<'_, R>,
        slot: SlotRef<'g, K, V>,
        old: *mut V,
    ) -> Option<&'g V> {
        // Relaxed: see `count_insert`.
        self.write_side.len.fetch_sub(1, Ordering::Relaxed);
        let value = match link::cell(old) {
            // SAFETY: unlinked by this thread's CAS; retired once, here.
            Some(cell) => unsafe { retire_cell(guard, &self.ledger, cell) },
            None => slot.inline_value(),
        };
        self.note_tombstone(guard);
        Some(value)
    }

    /// `compare_exchange` (Go's `CompareAndSwap`): replaces a value equal to
    /// `current` with `new`. Returns the replaced value, or the value found (none
    /// if absent) and `new` back.
    pub(crate) fn compare_exchange<'g, Q>(
        &self,
        guard: &'g GuardOf<'_, R>,
        key: &Q,
        current: &V,
        new: V,
    ) -> Result<&'g V, (Option<&'g V>, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: PartialEq,
    {
        let hash = self.hash(key);
        let cell = Owned::new_in(new, &self.ledger);
        let done = self.retrying(guard, hash, key, |slot| {
            // SAFETY: `guard` is held for 'g.
            let write =
                unsafe { slot.write(|found| (found == Some(current)).then(|| cell.as_ptr())) };
            match write {
                Write::Done(old) => Some(Ok((slot, old))),
                // SAFETY: `guard` is held for 'g.
                Write::Declined(found) => Some(Err(unsafe { slot.resolve(found) })),
                Write::Sealed => None,
            }
        });
        match done {
            Some(Ok((slot, old))) => {
                cell.publish();
                Ok(self
                    .replaced(guard, slot, old)
                    .expect("a compare_exchange replaces a present value"))
            }
            Some(Err(found)) => Err((found, cell.into_inner())),
            None => Err((None, cell.into_inner())),
        }
    }

    /// `update`: replaces `key`'s value with `f(value)`, a read-modify-write. When
    /// a CAS loses a race, `f` runs again on the newer value and the losing result
    /// is dropped. Returns the new value; `None` (and `f` not called) if absent.
    pub(crate) fn update<'g, Q>(
        &self,
        guard: &'g GuardOf<'_, R>,
        key: &Q,
        mut f: impl FnMut(&V) -> V,
    ) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut next: Option<Owned<V>> = None;
        let (slot, old) = self.retrying(guard, hash, key, |slot| {
            // SAFETY: `guard` is held for 'g.
            let write = unsafe {
                slot.write(|current| {
                    current.map(|v| next.insert(Owned::new_in(f(v), &self.ledger)).as_ptr())
                })
            };
            match write {
                Write::Done(old) => Some(Some((slot, old))),
                Write::Declined(_) => Some(None),
                Write::Sealed => None,
            }
        })??;
        let new = next.take().expect("installed").publish();
        self.replaced(guard, slot, old);
        // SAFETY: now linked; cells leave links only through the reclaimer.
        Some(unsafe { &*new })
    }

    /// `update_or_insert_with`: replaces `key`'s value with `update(value)` if it
    /// is present, or stores `insert()` if it is absent, atomically either way,
    /// and returns the value stored. `insert` runs at most once and `update` runs
    /// again on the newer value when a CAS loses a race (the losing results are
    /// dropped); neither runs under a lock.
    pub(crate) fn upsert<'g>(
        &self,
        guard: &'g GuardOf<'_, R>,
        mut key: K,
        update: &mut dyn FnMut(&V) -> V,
        insert: &mut dyn FnMut() -> V,
    ) -> &'g V {
        let hash = self.hash(&key);
        // `insert()`'s value, made at most once and kept across retries.
        let mut made: Option<Owned<V>> = None;
        loop {
            let mut updated: Option<Owned<V>> = None;
            let done = self.attempt_slot(guard, hash, &key, |slot| {
                // SAFETY: `guard` is held for 'g.
                let write = unsafe {
                    slot.write(|current| {
                        Some(match current {
                            Some(value) => updated
                                .insert(Owned::new_in(update(value), &self.ledger))
                                .as_ptr(),
                            None => made
                                .get_or_insert_with(|| Owned::new_in(insert(), &self.ledger))
                                .as_ptr(),
                        })
                    })
                };
                match write {
                    Write::Done(old) => Some((slot, old)),
                    Write::Sealed => None,
                    Write::Declined(_) => unreachable!("an upsert never declines"),
                }
            });
            let searched = match done {
                Ok((slot, old)) => {
                    // The link said which cell went in: `insert()`'s if the key was
                    // removed, `update`'s otherwise.
                    let stored = if link::is_removed(old) {
                        made.take().expect("installed").publish()
                    } else {
                        updated.take().expect("installed").publish()
                    };
                    drop_contained(|| drop((key, made, updated)));
                    self.replaced(guard, slot, old);
                    // SAFETY: now linked; cells leave links only through the
                    // reclaimer.
                    return unsafe { &*stored };
                }
                Err(searched) => searched,
            };
            drop_contained(|| drop(updated));
            // A new key: its value goes inline into a delta node. Made once.
            let value = match made.take() {
                Some(cell) => cell.into_inner(),
                None => insert(),
            };
            match self.add_new(guard, searched, hash, key, value) {
                NewKey::Added(node) => return node.as_slot().inline_value(),
                // Another writer added the key meanwhile: update it.
                NewKey::Present(back, value) => {
                    key = back;
                    made = Some(Owned::new_in(value, &self.ledger));
                }
            }
        }
    }

    /// `retain`: removes every key of the current root for which `keep` says no,
    /// each with its own compare-and-remove. A key whose slot a promotion sealed
    /// meanwhile is judged again in the root that promotion published.
    pub(crate) fn retain_keys<'g>(
        &self,
        guard: &'g GuardOf<'_, R>,
        keep: &mut dyn FnMut(&K, &V) -> bool,
    ) {
        let root = self.root(guard);
        for (_, slot) in root.slots(root.delta(guard)) {
            let key = slot.key();
            let mut remove = |value: &V| !keep(key, value);
            let done = match self.remove_from(guard, slot, &mut remove) {
                Some(done) => done,
                None => {
                    self.wait_for_promotion();
                    let hash = self.hash(key);
                    self.retrying(guard, hash, key, |slot| {
                        self.remove_from(guard, slot, &mut remove)
                    })
                    .flatten()
                }
            };
            if let Some((slot, old)) = done {
                self.removed(guard, slot, old);
            }
        }
    }
}

/// Counts this map's waiting lock acquisitions, and those made while a read
/// operation runs, for the test that proves reads never wait on a lock.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct LockAudit {
    pub(crate) locks: std::sync::atomic::AtomicUsize,
    pub(crate) reader_locks: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
std::thread_local! {
    static IN_READ: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

#[cfg(test)]
impl LockAudit {
    fn note_lock(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.locks.fetch_add(1, Relaxed);
        if IN_READ.with(core::cell::Cell::get) {
            self.reader_locks.fetch_add(1, Relaxed);
        }
    }

    /// Runs `read` with this thread flagged as inside a read operation.
    pub(crate) fn as_reader<T>(read: impl FnOnce() -> T) -> T {
        IN_READ.with(|flag| flag.set(true));
        let result = read();
        IN_READ.with(|flag| flag.set(false));
        result
    }
}
