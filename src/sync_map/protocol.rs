//! The SyncMap v2 protocol: a read table and a delta of new keys behind one root;
//! reads never lock; promotion merges the two.
//!
//! Every function takes the caller's guard; references it returns live as long
//! as that guard (see `garbage`). The writer lock is the only writer of the root
//! pointer, of a root's delta pointer and of delta slots; readers take no lock.

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use core::mem::ManuallyDrop;

use super::delta::Delta;
use super::entry::{Entry, LoadOrStoreRaw};
use super::garbage::{retire_structure, retire_value};
use super::root::Root;
use super::table::{insert_new, Table};
use super::value::{self, drop_contained, Owned};
use super::{LoadOrStore, SyncMap, Writer};
use crate::reclaim::Reclaim;
use crate::stats::Counters;
use crate::sync::{self, MutexGuard, Ordering};

/// A delta of up to this many keys is never merged because of its size alone:
/// probing it costs no more than the read table, and merging a tiny map at every
/// new key would be waste.
pub(crate) const MIN_PROMOTION_LEN: usize = 64;

/// One delta-served read in this many is counted (by adding this many), so that
/// the shared counter's cache line is written by one read in `SAMPLE` at most.
const SAMPLE: usize = 16;

/// Delta-served reads per entry of the root before readers ask for a promotion.
///
/// Rent or buy: a delta hit costs a few nanoseconds more than a read-table hit (an
/// out-of-line probe and the sample countdown), a promotion about 50 ns per entry
/// it copies (a cold cache line and an insert each). Waiting for this many delta
/// reads per entry before paying for the merge bounds the total at about twice the
/// cheaper of the two. With 1 (reads ≥ the read table's size), a stream of new
/// keys read four times each promoted every quarter of the map's size: measured on
/// a new-key storm (100k keys, 2 threads), 5 promotions and 0.96 entries copied
/// per operation against 1 and 0.23 with 4, and about twice the throughput.
const DELTA_READS_PER_ENTRY: usize = 4;

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

    /// Takes the writer lock. Readers never call this (a test counts it).
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        #[cfg(test)]
        self.lock_audit.note_lock();
        sync::lock(&self.write_side.writer)
    }

    /// Finds `key`'s entry in the current root: the read table, then the delta.
    /// Lock-free and wait-free; a delta hit is sampled toward the next promotion.
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
        let root = self.read_side.root.load(guard);
        if let Some(entry) = super::table::find(&root.read, hash, key) {
            return Some(entry);
        }
        self.lookup_delta(guard, root, hash, key)
    }

    #[inline(never)]
    fn lookup_delta<'g, Q>(
        &self,
        guard: &'g R::Guard<'_>,
        root: &'g Root<K, V>,
        hash: u64,
        key: &Q,
    ) -> Option<&'g Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let entry = root.delta(guard).find(hash, key)?;
        if sampled() {
            self.count_delta_reads(root);
        }
        Some(entry)
    }

    /// Adds a sample of delta-served reads; once they reach
    /// [`DELTA_READS_PER_ENTRY`] per entry of the root, asks the next writer to
    /// promote (amortized O(1) per read: a promotion of `n` entries follows about
    /// `4n` delta reads). Writes the sampler's line only: `stats()` reads the
    /// count from there too (see `reset_triggers_locked`).
    #[cold]
    fn count_delta_reads(&self, root: &Root<K, V>) {
        let reads = &self.sampler;
        // Relaxed: a heuristic trigger; the promotion itself runs under the lock.
        let seen = reads.delta_reads.fetch_add(SAMPLE, Ordering::Relaxed) + SAMPLE;
        // Relaxed: as above. Checked first so the flag's line is written once.
        let entries = root.read.len() + self.delta_len();
        if seen >= (DELTA_READS_PER_ENTRY * entries).max(MIN_PROMOTION_LEN)
            && !reads.promote_wanted.load(Ordering::Relaxed)
        {
            reads.promote_wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Starts the promotion triggers afresh for a newly published, empty-delta
    /// root (after a promotion or a clear). Caller holds the lock.
    fn reset_triggers_locked(&self) {
        self.set_delta_len(0);
        // Relaxed: heuristics reset under the lock; readers use them as hints.
        self.write_side.tombstones.store(0, Ordering::Relaxed);
        self.sampler.promote_wanted.store(false, Ordering::Relaxed);
        // Swapped, not stored: a sample added meanwhile is folded into the
        // statistic rather than lost.
        let reads = self.sampler.delta_reads.swap(0, Ordering::Relaxed);
        Counters::add(&self.write_side.counters.delta_reads, reads as u64);
    }

    /// Promotes if readers asked for it. Called by writers after their change.
    #[inline]
    fn promote_if_wanted(&self, guard: &R::Guard<'_>) {
        // Relaxed: a hint; re-checked under the lock.
        if self.sampler.promote_wanted.load(Ordering::Relaxed) {
            let mut writer = self.lock_writer();
            // Relaxed: the lock orders the re-check with the reset in `promote_locked`.
            if self.sampler.promote_wanted.load(Ordering::Relaxed) {
                self.promote_locked(guard, &mut writer);
            }
        }
    }

    /// Builds a fresh read table from the live entries of the read table and the
    /// delta, expunging every tombstone (so a racing lock-free revival fails and
    /// retakes the lock), publishes it with an empty delta, and retires the old
    /// root. O(read + delta).
    fn promote_locked(&self, guard: &R::Guard<'_>, _writer: &mut Writer) {
        // SAFETY: the caller holds the lock (`writer` is its contents).
        let root = unsafe { self.read_side.root.load_locked() };
        // Sized for the live entries only: after a mass delete, a table sized for
        // the tombstones it is about to drop would keep their memory.
        let entries = root.read.len() + self.delta_len();
        // Relaxed: a heuristic size hint, read under the lock.
        let tombstones = self.write_side.tombstones.load(Ordering::Relaxed);
        // The old root's references move into these; until the hand-over below
        // the old root still owns them, so a panic here (an allocation failure)
        // must leak the copies rather than release them twice.
        let mut read = ManuallyDrop::new(Table::with_capacity(entries.saturating_sub(tombstones)));
        let mut purged = ManuallyDrop::new(Vec::new());
        // SAFETY: lock held; called once for this root, which is replaced below;
        // handed over before anything is released.
        for entry in unsafe { root.take_entries() } {
            #[cfg(loom_mutant)] // mutant: drop a tombstone without expunging it
            if crate::reclaim::mutant("promote_skips_expunge") && entry.load().is_null() {
                purged.push(entry);
                continue;
            }
            if entry.try_expunge_locked() {
                purged.push(entry);
            } else {
                insert_new(&mut read, entry);
            }
        }
        let purged_count = purged.len() as u64;
        root.hand_over(ManuallyDrop::into_inner(purged));
        let read = ManuallyDrop::into_inner(read);
        let old = self
            .read_side
            .root
            .replace(Root::new(read, Delta::with_room_for(0)));
        #[cfg(loom_mutant)] // mutant: retire the root just published instead of the old one
        let old = if crate::reclaim::mutant("retire_published_root") {
            // SAFETY: lock held.
            (unsafe { self.read_side.root.load_locked() }) as *const Root<K, V> as *mut Root<K, V>
        } else {
            old
        };
        self.reset_triggers_locked();
        let counters = &self.write_side.counters;
        Counters::bump(&counters.promotions);
        Counters::add(&counters.tombstones_purged, purged_count);
        // SAFETY: `old` was just unlinked by `replace`; roots are replaced only
        // under the lock, so it is retired once.
        unsafe { retire_structure(guard, &self.ledger, old) };
    }

    /// Adds a new entry for `key` to the delta, growing the delta or promoting
    /// first as the policy says. The caller checked under the lock that the root
    /// lacks the key.
    fn insert_new_locked(
        &self,
        guard: &R::Guard<'_>,
        writer: &mut Writer,
        hash: u64,
        key: K,
        value: V,
    ) -> *mut V {
        // SAFETY: lock held.
        let mut root = unsafe { self.read_side.root.load_locked() };
        let mut delta = root.delta_locked();
        let mut delta_len = self.delta_len();
        if delta_len >= delta.room() {
            // Full: merge it into the read table once it holds half as many keys
            // (each merge then copies at most three entries per key added since the
            // last), otherwise grow it. A delta pre-sized by `with_capacity` takes
            // its whole room first.
            if delta_len >= (root.read.len() / 2).max(MIN_PROMOTION_LEN) {
                self.promote_locked(guard, writer);
                // SAFETY: lock held.
                root = unsafe { self.read_side.root.load_locked() };
                delta = root.delta_locked();
                delta_len = 0;
            } else {
                let old = root.replace_delta(delta.grown((delta_len + 1) * 2));
                Counters::bump(&self.write_side.counters.delta_growths);
                // SAFETY: just unlinked by `replace_delta` under the lock; retired once.
                unsafe { retire_structure(guard, &self.ledger, old) };
                delta = root.delta_locked();
            }
        }
        let entry = Entry::new_shared(hash, key, value);
        let ptr = entry.load();
        delta.insert(entry);
        self.set_delta_len(delta_len + 1);
        self.count_insert();
        ptr
    }

    /// `insert` (Go's `Swap`): returns the previous value, retired but protected by
    /// `guard`. Existing keys — in the read table or the delta — take one CAS; only a
    /// key absent from the root (or expunged by a racing promotion) takes the lock.
    pub(crate) fn swap<'g>(&self, guard: &'g R::Guard<'_>, key: K, value: V) -> Option<&'g V> {
        let hash = self.hash(&key);
        let mut value = value;
        if let Some(entry) = self.lookup(guard, hash, &key) {
            match entry.try_swap(Owned::new(value)) {
                Ok(old) => {
                    // An existing key keeps its stored key, as with `HashMap`.
                    drop_contained(|| drop(key));
                    return self.finish_swap(guard, entry, old);
                }
                // Rare (a promotion raced this insert): the value may go inline
                // into a new entry below, so take it back out of its cell.
                Err(expunged) => value = expunged.into_inner(),
            }
        }
        let mut writer = self.lock_writer();
        // SAFETY: lock held for this scope.
        let root = unsafe { self.read_side.root.load_locked() };
        // An entry of the current root is never expunged: only a promotion or a
        // clear expunges, and both replace the root under this lock.
        match root.find_locked(hash, &key) {
            Some(entry) => {
                let old = entry.swap_locked(Owned::new(value));
                drop(writer);
                drop_contained(|| drop(key));
                self.finish_swap(guard, entry, old)
            }
            None => {
                self.insert_new_locked(guard, &mut writer, hash, key, value);
                drop(writer);
                self.promote_if_wanted(guard);
                None
            }
        }
    }

    /// Accounts for the pointer a swap replaced: a deleted slot gained a key; a live
    /// value is retired and handed back under the guard.
    fn finish_swap<'g>(
        &self,
        guard: &'g R::Guard<'_>,
        entry: &Entry<K, V>,
        old: *mut V,
    ) -> Option<&'g V> {
        self.promote_if_wanted(guard);
        if !value::is_live(old) {
            self.count_insert();
            return None;
        }
        #[cfg(loom_mutant)] // mutant: the replaced value is never retired (leaks)
        if crate::reclaim::mutant("skip_value_retire_v2") {
            // SAFETY: never freed.
            return Some(unsafe { &*old });
        }
        // SAFETY: unlinked by this thread's swap; retired once, here.
        Some(unsafe { retire_value(guard, &self.ledger, entry, old) })
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
        if let Some(entry) = self.lookup(guard, hash, &key) {
            match entry.try_load_or_store(&mut candidate, &mut make_cell) {
                LoadOrStoreRaw::Expunged => {}
                found => {
                    drop_contained(|| drop(key));
                    // SAFETY: protected by `guard` (values leave slots only via retire).
                    return unsafe { self.finish_load_or_store(guard, found) };
                }
            }
        }
        // The key is absent (or was expunged by a racing promotion): make the value
        // now, outside the lock, so that `make` may itself use the map and never
        // holds up other writers.
        // A cell made for an entry a promotion then expunged gives its value back,
        // to go inline into a new entry.
        let value = match candidate.take() {
            Some(cell) => cell.into_inner(),
            None => make(),
        };
        let mut writer = self.lock_writer();
        // SAFETY: lock held for this scope.
        let root = unsafe { self.read_side.root.load_locked() };
        match root.find_locked(hash, &key) {
            Some(entry) => {
                // Another writer added the key meanwhile (rare): store in its slot.
                let mut candidate = Some(Owned::new(value));
                let found = entry.try_load_or_store(&mut candidate, &mut || {
                    unreachable!("the candidate was made before the lock")
                });
                drop(writer);
                drop_contained(|| drop(key));
                drop(candidate);
                // SAFETY: as above.
                unsafe { self.finish_load_or_store(guard, found) }
            }
            None => {
                let ptr = self.insert_new_locked(guard, &mut writer, hash, key, value);
                drop(writer);
                self.promote_if_wanted(guard);
                // SAFETY: just stored; protected by `guard` like any slot value.
                LoadOrStore::Stored(unsafe { &*ptr })
            }
        }
    }

    /// # Safety
    ///
    /// The pointer in `found` is protected by the caller's guard for `'g`.
    unsafe fn finish_load_or_store<'g>(
        &self,
        guard: &'g R::Guard<'_>,
        found: LoadOrStoreRaw<V>,
    ) -> LoadOrStore<'g, V> {
        match found {
            // SAFETY: the caller's contract.
            LoadOrStoreRaw::Loaded(ptr) => LoadOrStore::Loaded(unsafe { &*ptr }),
            LoadOrStoreRaw::Stored(ptr) => {
                self.count_insert();
                self.promote_if_wanted(guard);
                // SAFETY: the caller's contract.
                LoadOrStore::Stored(unsafe { &*ptr })
            }
            LoadOrStoreRaw::Expunged => unreachable!("the current root has no expunged entry"),
        }
    }

    /// `remove` (Go's `LoadAndDelete`): lock-free. The entry stays in its table as a
    /// tombstone until the next promotion.
    pub(crate) fn remove_key<'g, Q>(&self, guard: &'g R::Guard<'_>, key: &Q) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let entry = self.lookup(guard, hash, key)?;
        self.delete(guard, entry, |_| true)
    }

    /// Deletes `entry`'s value if `remove` says so (Go's `delete` and
    /// `CompareAndDelete`), retiring it and counting the tombstone it leaves.
    pub(crate) fn delete<'g>(
        &self,
        guard: &'g R::Guard<'_>,
        entry: &'g Entry<K, V>,
        mut remove: impl FnMut(&V) -> bool,
    ) -> Option<&'g V> {
        // SAFETY: `guard` is held for the call.
        let old = unsafe { entry.replace_live(|v| remove(v).then(core::ptr::null_mut)) }.ok()?;
        // Relaxed: see `count_insert`.
        self.write_side.len.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: unlinked by this thread's CAS.
        let old = unsafe { retire_value(guard, &self.ledger, entry, old) };
        self.note_tombstone(guard);
        Some(old)
    }

    /// Counts a tombstone; once they reach half of the root's entries, promotes, so
    /// deleted keys give their memory back by themselves (Go's sync.Map keeps them
    /// until a new key happens to arrive). Amortized O(1): a merge of `n` entries
    /// follows at least `n / 2` removes.
    fn note_tombstone(&self, guard: &R::Guard<'_>) {
        // Relaxed: a heuristic trigger, re-checked under the lock.
        let tombstones = self.write_side.tombstones.fetch_add(1, Ordering::Relaxed) + 1;
        let entries = self.read_side.root.load(guard).read.len() + self.delta_len();
        if tombstones * 2 < entries {
            return self.promote_if_wanted(guard);
        }
        let mut writer = self.lock_writer();
        // SAFETY: lock held.
        let entries = unsafe { self.read_side.root.load_locked() }.read.len() + self.delta_len();
        // Relaxed: promotions reset it under the lock we hold.
        if self.write_side.tombstones.load(Ordering::Relaxed) * 2 >= entries {
            Counters::bump(&self.write_side.counters.compactions);
            self.promote_locked(guard, &mut writer);
        }
    }

    /// Entries in the current delta (exact under the lock, a hint without it).
    fn delta_len(&self) -> usize {
        // Relaxed: written only under the lock, which orders it for lock holders;
        // lock-free readers use it as a heuristic.
        self.write_side.delta_len.load(Ordering::Relaxed)
    }

    fn set_delta_len(&self, len: usize) {
        // Relaxed: see `delta_len`.
        self.write_side.delta_len.store(len, Ordering::Relaxed);
    }

    /// `promote()`: merges the delta into a fresh read table now, dropping
    /// tombstones.
    pub(crate) fn promote_now(&self, guard: &R::Guard<'_>) {
        let mut writer = self.lock_writer();
        self.promote_locked(guard, &mut writer);
    }

    /// The current root, for iteration: its read table and its delta hold every
    /// key present when it was loaded, each exactly once.
    pub(crate) fn root<'g>(&self, guard: &'g R::Guard<'_>) -> &'g Root<K, V> {
        self.read_side.root.load(guard)
    }

    /// Empties the map: publishes an empty root and expunges every entry of the
    /// old one, so a lock-free writer still holding one fails over to the lock and
    /// writes into the new root instead of into a discarded entry (which also keeps
    /// `len` exact).
    pub(crate) fn clear_tables(&self, guard: &R::Guard<'_>) {
        let writer = self.lock_writer();
        let old = self
            .read_side
            .root
            .replace(Root::new(Table::new(), Delta::with_room_for(0)));
        self.reset_triggers_locked();
        // SAFETY: `old` is unlinked and ours to retire; nobody else writes it now
        // (its delta only changes under the lock we hold).
        let old_root = unsafe { &*old };
        let mut removed = 0isize;
        for entry in old_root.entries(old_root.delta_locked()) {
            let old_value = entry.expunge_locked();
            if value::is_live(old_value) {
                removed += 1;
                // SAFETY: unlinked by this swap; retired once.
                unsafe { retire_value(guard, &self.ledger, entry, old_value) };
            }
        }
        // Relaxed: see `count_insert`.
        self.write_side.len.fetch_sub(removed, Ordering::Relaxed);
        drop(writer);
        // SAFETY: unlinked by `replace`; retired once.
        unsafe { retire_structure(guard, &self.ledger, old) };
    }
}

/// Whether this delta-served read is one of the sampled ones (one in [`SAMPLE`]),
/// decided by a per-thread countdown so the shared counter is touched rarely.
#[inline]
fn sampled() -> bool {
    #[cfg(not(loom))]
    {
        use core::cell::Cell;
        std::thread_local! {
            static COUNTDOWN: Cell<u8> = const { Cell::new(0) };
        }
        COUNTDOWN.with(|countdown| {
            let left = countdown.get();
            if left == 0 {
                countdown.set(SAMPLE as u8 - 1);
                true
            } else {
                countdown.set(left - 1);
                false
            }
        })
    }
    // Under loom every delta read counts: deterministic, and models are tiny.
    #[cfg(loom)]
    {
        true
    }
}

/// Counts this map's lock acquisitions, and those made while a read operation
/// runs, for the test that proves reads never lock.
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
