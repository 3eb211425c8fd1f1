//! The classic sync.Map protocol: lookups, the locked slow paths, the dirty copy
//! and promotion. [`ClassicPinned`](super::ClassicPinned) wraps these.
//!
//! Every function takes the caller's guard; references it returns live as long
//! as that guard (see `garbage` for why that is sound). The lock is the only
//! writer of `read` and the only reader or writer of `dirty`.

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use super::entry::{self, Entry, LoadOrStoreRaw};
use super::garbage::{retire_entry, retire_table, retire_value};
use super::table::{find, insert_new, Table};
use super::{ClassicSyncMap as SyncMap, Dirty};
use crate::raw::cell::{drop_contained, Owned};
use crate::raw::mutant::mutant;
use crate::raw::retire::hand_back_replaced;
use crate::reclaim::Reclaim;
use crate::stats::Counters;
use crate::sync::{self, Arc, MutexGuard, Ordering};
use crate::LoadOrStore;

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.read_side.hasher.hash_one(key)
    }

    fn lock_dirty(&self) -> MutexGuard<'_, Dirty<K, V>> {
        sync::lock(&self.write_side.dirty)
    }

    /// Extends a reference obtained under the lock (or through an owned `Arc`) to
    /// the guard's lifetime.
    ///
    /// # Safety
    ///
    /// `entry` is held by one of the map's tables (or by an `Arc` the caller retires
    /// later) while the caller holds `_guard`: tables let go of entries only through
    /// the reclaimer, so the entry outlives every guard pinned before that.
    unsafe fn extend<'g>(_guard: &'g R::Guard<'_>, entry: &Entry<K, V>) -> &'g Entry<K, V> {
        // SAFETY: the caller's contract.
        unsafe { &*(entry as *const Entry<K, V>) }
    }

    /// Finds `key`'s entry: the read table first, then — only if the read table is
    /// amended — the dirty table under the lock, counting a miss (Go's `Load`).
    #[inline]
    pub(crate) fn lookup<'g, Q>(
        &self,
        guard: &'g R::Guard<'_>,
        hash: u64,
        key: &Q,
    ) -> Option<&'g Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let read = self.read_side.read.load(guard);
        if let Some(entry) = find(read.table, hash, key) {
            return Some(entry);
        }
        if !read.amended {
            return None;
        }
        self.lookup_slow(guard, hash, key)
    }

    #[cold]
    fn lookup_slow<'g, Q>(
        &self,
        guard: &'g R::Guard<'_>,
        hash: u64,
        key: &Q,
    ) -> Option<&'g Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut dirty = self.lock_dirty();
        // SAFETY: lock held for this scope.
        let read = unsafe { self.read_side.read.load_locked() };
        // Double-checked: a promotion may have published the key meanwhile.
        if let Some(entry) = find(read.table, hash, key) {
            // SAFETY: in the read table while we hold the lock; guard held.
            return Some(unsafe { Self::extend(guard, entry) });
        }
        if !read.amended {
            return None;
        }
        let entry = dirty
            .table
            .as_ref()
            .and_then(|t| find(t, hash, key))
            .map(|entry| {
                // SAFETY: in the dirty table while we hold the lock; guard held.
                unsafe { Self::extend(guard, entry) }
            });
        self.miss_locked(guard, &mut dirty);
        entry
    }

    /// Counts a miss and promotes once misses reach the dirty table's size, so the
    /// O(len) promotion is paid at most once per `len` misses.
    fn miss_locked(&self, guard: &R::Guard<'_>, dirty: &mut Dirty<K, V>) {
        Counters::bump(&self.write_side.counters.misses);
        dirty.misses += 1;
        if dirty.misses >= dirty.table.as_ref().map_or(0, Table::len) {
            self.promote_locked(guard, dirty);
        }
    }

    /// Publishes the dirty table as the read table (`amended` cleared) and retires
    /// the old read table. No-op without a dirty table.
    fn promote_locked(&self, guard: &R::Guard<'_>, dirty: &mut Dirty<K, V>) {
        let Some(table) = dirty.table.take() else {
            return;
        };
        let old = self.read_side.read.replace(table);
        // (Mutant: retire the table just published instead of the old one.)
        let old = mutant!("retire_published_table" =>
            // SAFETY: none — a deliberately broken build the loom models must
            // catch (a use after free of the published table).
            (unsafe { self.read_side.read.load_locked() }).table as *const Table<K, V>
                as *mut Table<K, V>,
            else old);
        dirty.misses = 0;
        // The tombstones count stays: removes made since the dirty copy left their
        // deleted entries in the table just published (the copy itself subtracted
        // the ones it dropped, and a compaction resets the count).
        Counters::bump(&self.write_side.counters.promotions);
        // SAFETY: `old` was just unlinked by `replace`; only promotion and clear
        // retire a read table, both under the lock, so it is retired once.
        unsafe { retire_table(guard, &self.ledger, old) };
    }

    /// The dirty table, copying every non-deleted entry of the read table into a
    /// fresh one first if there is none (Go's `dirtyLocked`). Deleted entries are
    /// expunged and left out: that is how removed keys eventually leave the map.
    /// Sets `amended`, which is set exactly while a dirty table exists.
    fn dirty_locked<'d>(&self, dirty: &'d mut Dirty<K, V>) -> &'d mut Table<K, V> {
        if dirty.table.is_none() {
            // SAFETY: we hold the lock (`dirty` is its guard's contents).
            let read = unsafe { self.read_side.read.load_locked() };
            let mut copy = Table::with_capacity(read.table.len());
            let mut purged = 0;
            for entry in read.table.iter() {
                if entry.try_expunge_locked() {
                    purged += 1;
                } else {
                    insert_new(&mut copy, Arc::clone(entry));
                }
            }
            // Relaxed: a heuristic counter, changed under the lock here.
            let tombstones = self.write_side.tombstones.load(Ordering::Relaxed);
            self.write_side
                .tombstones
                .store(tombstones.saturating_sub(purged), Ordering::Relaxed);
            Counters::add(&self.write_side.counters.tombstones_purged, purged as u64);
            Counters::bump(&self.write_side.counters.dirty_copies);
            dirty.table = Some(copy);
            self.read_side.read.set_amended();
        }
        dirty.table.as_mut().expect("just ensured")
    }

    /// Puts a new entry for `key` into the dirty table (creating it if needed). The
    /// caller checked under the lock that neither table has the key.
    fn insert_new_locked(&self, dirty: &mut Dirty<K, V>, hash: u64, key: K, value: V) -> *mut V {
        let entry = Entry::new_shared(hash, key, value);
        let ptr = entry.load();
        insert_new(self.dirty_locked(dirty), entry);
        self.count_insert();
        ptr
    }

    /// Un-expunges `entry` (found in the read table under the lock) and puts it back
    /// into the dirty table if it was expunged, so its slot may take a value again.
    fn revive_locked(&self, dirty: &mut Dirty<K, V>, entry: &Arc<Entry<K, V>>) {
        if entry.unexpunge_locked() {
            // An entry is expunged only by a dirty copy, and stays so at most until
            // the next promotion, which drops it: the dirty table is present.
            let table = dirty
                .table
                .as_mut()
                .expect("expunged implies a dirty table");
            // (Mutant: unexpunged but left out of `dirty`.)
            if mutant!("revive_skips_dirty" => true, else false) {
                return;
            }
            insert_new(table, Arc::clone(entry));
        }
    }

    /// `insert` (Go's `Swap`): returns the previous value, retired but protected by
    /// `guard`.
    pub(crate) fn swap<'g>(&self, guard: &'g R::Guard<'_>, key: K, value: V) -> Option<&'g V> {
        let hash = self.hash(&key);
        let mut value = value;
        if let Some(entry) = find(self.read_side.read.load(guard).table, hash, &key) {
            match entry.try_swap(Owned::new(value)) {
                Ok(old) => {
                    drop_contained(|| drop(key));
                    return self.finish_swap(guard, entry, old);
                }
                // The value may go inline into a new entry below.
                Err(expunged) => value = expunged.into_inner(),
            }
        }
        let mut dirty = self.lock_dirty();
        // SAFETY: lock held for this scope.
        let read = unsafe { self.read_side.read.load_locked() };
        let entry = if let Some(entry) = find(read.table, hash, &key) {
            self.revive_locked(&mut dirty, entry);
            Arc::clone(entry)
        } else if let Some(entry) = dirty.table.as_ref().and_then(|t| find(t, hash, &key)) {
            Arc::clone(entry)
        } else {
            self.insert_new_locked(&mut dirty, hash, key, value);
            return None;
        };
        let old = entry.swap_locked(Owned::new(value));
        drop(dirty);
        drop_contained(|| drop(key));
        self.finish_swap(guard, &entry, old)
    }

    /// Accounts for the pointer a swap replaced: a deleted slot gained a key; a live
    /// value is retired and handed back under the guard.
    fn finish_swap<'g>(
        &self,
        guard: &'g R::Guard<'_>,
        entry: &Entry<K, V>,
        old: *mut V,
    ) -> Option<&'g V> {
        if !entry::is_live(old) {
            self.count_insert();
            return None;
        }
        // SAFETY: unlinked by this thread's swap; retired once, here.
        let retire = || unsafe { retire_value(guard, &self.ledger, entry, old) };
        // SAFETY: `old` is live and protected by `guard`; `retire` retires it.
        Some(unsafe { hand_back_replaced(old, retire) })
    }

    /// A key became present (a new entry, or a deleted slot took a value).
    fn count_insert(&self) {
        // Relaxed: `len` is exact only when no writer runs, and orders nothing.
        self.write_side.len.fetch_add(1, Ordering::Relaxed);
    }

    /// `get_or_insert_with` (Go's `LoadOrStore`). `make` runs at most once, and only
    /// if the key is absent when this thread tries to store.
    pub(crate) fn load_or_store<'g>(
        &self,
        guard: &'g R::Guard<'_>,
        key: K,
        make: &mut dyn FnMut() -> V,
    ) -> LoadOrStore<'g, V> {
        let hash = self.hash(&key);
        let mut candidate: Option<Owned<V>> = None;
        let mut make_cell = || Owned::new(make());
        if let Some(entry) = find(self.read_side.read.load(guard).table, hash, &key) {
            match entry.try_load_or_store(&mut candidate, &mut make_cell) {
                LoadOrStoreRaw::Expunged => {}
                found => {
                    drop_contained(|| drop(key));
                    // SAFETY: protected by `guard` (values leave slots only via retire).
                    return unsafe { self.finish_load_or_store(found) };
                }
            }
        }
        // Make the value before the lock, so that `make` may use the map itself.
        let value = match candidate.take() {
            Some(cell) => cell.into_inner(),
            None => make(),
        };
        // An existing entry stores a cell (made under the lock: only when the key
        // turns out present); a new entry takes the value inline.
        let mut candidate: Option<Owned<V>>;
        let mut unreachable = || -> Owned<V> { unreachable!("the candidate is made first") };
        let mut dirty = self.lock_dirty();
        // SAFETY: lock held for this scope.
        let read = unsafe { self.read_side.read.load_locked() };
        let found = if let Some(entry) = find(read.table, hash, &key) {
            self.revive_locked(&mut dirty, entry);
            candidate = Some(Owned::new(value));
            entry.try_load_or_store(&mut candidate, &mut unreachable)
        } else if let Some(entry) = dirty.table.as_ref().and_then(|t| find(t, hash, &key)) {
            candidate = Some(Owned::new(value));
            let found = entry.try_load_or_store(&mut candidate, &mut unreachable);
            self.miss_locked(guard, &mut dirty);
            found
        } else {
            let ptr = self.insert_new_locked(&mut dirty, hash, key, value);
            // SAFETY: just stored; protected by `guard` like any slot value.
            return LoadOrStore::Stored(unsafe { &*ptr });
        };
        drop(dirty);
        drop_contained(|| drop(key));
        // The value's cell, if the slot was live and it went unused.
        drop(candidate);
        // SAFETY: as above.
        unsafe { self.finish_load_or_store(found) }
    }

    /// # Safety
    ///
    /// The pointer in `found` is protected by the caller's guard for `'g`.
    unsafe fn finish_load_or_store<'g>(&self, found: LoadOrStoreRaw<V>) -> LoadOrStore<'g, V> {
        match found {
            // SAFETY: the caller's contract.
            LoadOrStoreRaw::Loaded(ptr) => LoadOrStore::Loaded(unsafe { &*ptr }),
            LoadOrStoreRaw::Stored(ptr) => {
                self.count_insert();
                // SAFETY: the caller's contract.
                LoadOrStore::Stored(unsafe { &*ptr })
            }
            LoadOrStoreRaw::Expunged => unreachable!("revived under the lock"),
        }
    }

    /// `remove` (Go's `LoadAndDelete`): a key in the read table is deleted in place
    /// (leaving a tombstone); a key only in the dirty table is taken out of it.
    pub(crate) fn remove_key<'g, Q>(&self, guard: &'g R::Guard<'_>, key: &Q) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let read = self.read_side.read.load(guard);
        if let Some(entry) = find(read.table, hash, key) {
            return self.delete(guard, entry, true, |_| true);
        }
        if !read.amended {
            return None;
        }
        let mut dirty = self.lock_dirty();
        // SAFETY: lock held for this scope.
        let read = unsafe { self.read_side.read.load_locked() };
        if let Some(entry) = find(read.table, hash, key) {
            // SAFETY: in the read table while we hold the lock; guard held.
            let entry = unsafe { Self::extend(guard, entry) };
            drop(dirty);
            return self.delete(guard, entry, true, |_| true);
        }
        if !read.amended {
            return None;
        }
        let removed = dirty.table.as_mut().and_then(|t| {
            t.find_entry(hash, |e| e.hash == hash && e.key().borrow() == key)
                .ok()
                .map(|occupied| occupied.remove().0)
        });
        self.miss_locked(guard, &mut dirty);
        drop(dirty);
        let removed = removed?;
        // SAFETY: the `Arc` we own keeps the entry alive; it is retired below, and
        // the reclaimer then keeps it alive for `guard`.
        let entry = unsafe { Self::extend(guard, &removed) };
        let old = self.delete(guard, entry, false, |_| true);
        // SAFETY: just removed from the dirty table under the lock.
        unsafe { retire_entry(guard, &self.ledger, removed) };
        old
    }

    /// Deletes `entry`'s value if `remove` says so (Go's `delete` and
    /// `CompareAndDelete`), retiring it. A delete in the read table leaves a
    /// tombstone, which may trigger a compaction.
    pub(crate) fn delete<'g>(
        &self,
        guard: &'g R::Guard<'_>,
        entry: &'g Entry<K, V>,
        in_read: bool,
        mut remove: impl FnMut(&V) -> bool,
    ) -> Option<&'g V> {
        // SAFETY: `guard` is held for the call.
        let old = unsafe { entry.replace_live(|v| remove(v).then(core::ptr::null_mut)) }.ok()?;
        // Relaxed: see `count_insert`.
        self.write_side.len.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: unlinked by this thread's CAS.
        let old = unsafe { retire_value(guard, &self.ledger, entry, old) };
        if in_read {
            self.note_tombstone(guard);
        }
        Some(old)
    }

    /// Counts a tombstone left in the read table; once they reach half of it,
    /// rebuilds the table without them, so deleted keys give their memory back (Go's
    /// sync.Map keeps them until a new key happens to arrive). Amortized O(1): a
    /// rebuild of `n` entries follows at least `n / 2` removes.
    fn note_tombstone(&self, guard: &R::Guard<'_>) {
        // Relaxed: a heuristic trigger, re-checked under the lock.
        let tombstones = self.write_side.tombstones.fetch_add(1, Ordering::Relaxed) + 1;
        if tombstones * 2 < self.read_side.read.load(guard).table.len() {
            return;
        }
        let mut dirty = self.lock_dirty();
        // SAFETY: lock held.
        let read_len = unsafe { self.read_side.read.load_locked() }.table.len();
        // Relaxed: promotions reset it under the lock we hold.
        if self.write_side.tombstones.load(Ordering::Relaxed) * 2 >= read_len {
            Counters::bump(&self.write_side.counters.compactions);
            self.compact_locked(guard, &mut dirty);
        }
    }

    /// Rebuilds and publishes the read table with only live entries: copies `read`
    /// into `dirty` if needed (expunging deleted entries), expunges and drops the
    /// entries deleted since the copy, then promotes. `promote()` is this.
    fn compact_locked(&self, guard: &R::Guard<'_>, dirty: &mut Dirty<K, V>) {
        let table = self.dirty_locked(dirty);
        // Expunging keeps invariant 1 (no expunged entry in `dirty`) and makes a
        // racing lock-free insert through the old read table retake the lock.
        for removed in table.extract_if(|entry| entry.try_expunge_locked()) {
            Counters::bump(&self.write_side.counters.tombstones_purged);
            // SAFETY: just removed from the dirty table under the lock.
            unsafe { retire_entry(guard, &self.ledger, removed) };
        }
        // Relaxed: reset under the lock; the new read table holds no tombstone.
        self.write_side.tombstones.store(0, Ordering::Relaxed);
        self.promote_locked(guard, dirty);
    }

    /// `promote()`: publishes the pending new keys now, dropping tombstones.
    pub(crate) fn promote_now(&self, guard: &R::Guard<'_>) {
        let mut dirty = self.lock_dirty();
        self.compact_locked(guard, &mut dirty);
    }

    /// Promotes if the read table is amended, so that it holds every key (Go's
    /// `Range` does this first), and returns the read table to iterate.
    pub(crate) fn promote_if_amended<'g>(&self, guard: &'g R::Guard<'_>) -> &'g Table<K, V> {
        let read = self.read_side.read.load(guard);
        if !read.amended {
            return read.table;
        }
        // (Mutant: iterate without promoting the dirty table first.)
        if mutant!("iter_skips_promotion" => true, else false) {
            return read.table;
        }
        let mut dirty = self.lock_dirty();
        self.promote_locked(guard, &mut dirty);
        drop(dirty);
        self.read_side.read.load(guard).table
    }

    /// Empties the map. Every entry of both tables is expunged, so a lock-free
    /// writer still holding one fails over to the lock and writes into the new,
    /// empty tables instead of into a discarded entry; that also keeps `len` exact.
    pub(crate) fn clear_tables(&self, guard: &R::Guard<'_>) {
        let mut dirty = self.lock_dirty();
        // SAFETY: lock held.
        let read = unsafe { self.read_side.read.load_locked() };
        if read.table.is_empty() && dirty.table.is_none() {
            // Go's `Clear` of a clear map: no key anywhere, nothing allocated.
            return;
        }
        let old_read = self.read_side.read.replace(Table::new());
        let old_dirty = dirty.table.take();
        dirty.misses = 0;
        // Relaxed: a heuristic, reset under the lock.
        self.write_side.tombstones.store(0, Ordering::Relaxed);
        // SAFETY: `old_read` is unlinked and ours to retire; nobody writes it.
        let old_read_table = unsafe { &*old_read };
        let mut removed = 0isize;
        for entry in old_read_table
            .iter()
            .chain(old_dirty.iter().flat_map(Table::iter))
        {
            let old = entry.expunge_locked();
            if entry::is_live(old) {
                removed += 1;
                // SAFETY: unlinked by this swap; retired once.
                unsafe { retire_value(guard, &self.ledger, entry, old) };
            }
        }
        // Relaxed: see `count_insert`.
        self.write_side.len.fetch_sub(removed, Ordering::Relaxed);
        drop(dirty);
        // SAFETY: both tables are unlinked: `read` points to the new empty table and
        // the dirty table has left the mutex; each is retired once.
        unsafe {
            retire_table(guard, &self.ledger, old_read);
            if let Some(table) = old_dirty {
                retire_table(guard, &self.ledger, Box::into_raw(Box::new(table)));
            }
        }
    }
}
