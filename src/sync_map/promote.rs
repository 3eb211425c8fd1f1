//! Promotion, the delta's growth, and `clear`: everything that replaces a
//! [`SyncMap`]'s root or its delta, always under the writer lock.
//!
//! A promotion *seals* each slot of the current root — read table, then delta —
//! with one CAS, and clones the sealed value (and the key) into a fresh read
//! table. A write that raced it either landed before the seal, and its value is
//! the one copied, or meets the seal, fails, and waits for the lock to retry on
//! the new root: no write is lost. The new root is published with one Release
//! swap, and the old one, sealed and complete, is retired as a whole: readers
//! still inside it keep seeing the values it was sealed with, which stay current
//! until the first write to the new root. When it runs is `policy`'s business.

use core::hash::{BuildHasher, Hash};
use core::panic::AssertUnwindSafe;
use std::panic::catch_unwind;

use super::delta::Delta;
use super::policy;
use super::read::{Builder, ReadTable};
use super::root::Root;
use super::slot::link;
use super::write::GuardOf;
use super::{SyncMap, Writer};
use crate::raw::cell::cell_bytes;
use crate::raw::mutant::mutant;
use crate::raw::retire::retire_structure;
use crate::reclaim::Reclaim;
use crate::stats::Counters;
use crate::sync::{self, Ordering};

/// Unseals, if a promotion unwinds (a panicking `Clone` or `Hash`), the slots it
/// had sealed — the first `sealed` slots of `root` in [`Root::slots`] order — and
/// reopens the delta it had closed.
struct Seals<'r, K, V> {
    root: &'r Root<K, V>,
    sealed: usize,
}

impl<K, V> Drop for Seals<'_, K, V> {
    fn drop(&mut self) {
        let delta = self.root.delta_locked();
        let slots = self.root.slots(delta).take(self.sealed);
        for (_, slot) in slots {
            slot.unseal();
        }
        delta.reopen();
    }
}

impl<K, V, S, R> SyncMap<K, V, S, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Removed keys in the current root, as counted (a heuristic).
    fn tombstones(&self) -> usize {
        // Relaxed: a heuristic; it may lag by the writes in flight.
        self.write_side.tombstones.load(Ordering::Relaxed).max(0) as usize
    }

    /// Builds a fresh read table from the live slots of the current root,
    /// sealing each first, publishes it with an empty delta, and retires the old
    /// root. O(read + delta). Unwinds, having unsealed everything and published
    /// nothing, if a user `Clone` or `Hash` panics.
    fn promote_locked(&self, guard: &GuardOf<'_, R>, _writer: &mut Writer) {
        // SAFETY: the caller holds the lock (`_writer` is its contents).
        let root = unsafe { self.read_side.root.load_locked() };
        let delta = root.delta_locked();
        // Closed first, so that no new key lands in the delta after it is read
        // (reopened by `seals` if the promotion unwinds).
        let delta_len = delta.close();
        let mut seals = Seals { root, sealed: 0 };
        // Sized for the live keys only: after a mass delete, a table sized for the
        // removed keys it is about to drop would keep their memory. A low guess
        // (the tombstone count lags) only costs hashbrown a resize.
        let live = (root.read.len() + delta_len).saturating_sub(self.tombstones());
        let mut read = Builder::with_capacity(live);
        let (mut purged, mut cells) = (0u64, 0usize);
        for (hash, slot) in root.slots(delta) {
            let current = slot.seal();
            seals.sealed += 1;
            // SAFETY: sealed, so no writer can unlink (and retire) its cell, and
            // the lock keeps the root current; our guard protects it besides.
            let Some(value) = (unsafe { slot.resolve(current) }) else {
                purged += 1;
                continue;
            };
            cells += usize::from(link::cell(current).is_some());
            let hash = hash.unwrap_or_else(|| self.hash(slot.key()));
            // Clones, never bitwise copies: readers of the old root may still use
            // the originals, interior mutability included.
            let (key, value) = (slot.key().clone(), value.clone());
            read.insert(hash, key, value, |key| self.hash(key));
        }
        // Every slot sealed and copied: nothing to undo from here on.
        core::mem::forget(seals);
        let bytes = root.bytes(delta_len) + cells * cell_bytes::<V>();
        let old = self
            .read_side
            .root
            .replace(Root::new(read.finish(), Delta::with_room_for(0)));
        // (Mutant: retire the root just published instead of the old one.)
        let old = mutant!("retire_published_root" =>
            // SAFETY: none — a deliberately broken build the loom models must
            // catch (a use after free of the published root).
            (unsafe { self.read_side.root.load_locked() }) as *const Root<K, V> as *mut Root<K, V>,
            else old);
        self.reset_triggers_locked(true);
        let counters = &self.write_side.counters;
        Counters::bump(&counters.promotions);
        Counters::add(&counters.tombstones_purged, purged);
        // SAFETY: `old` was just unlinked by `replace`; roots are replaced only
        // under the lock, so it is retired once.
        unsafe { retire_structure(guard, &self.ledger, old, bytes) };
    }

    /// A promotion the map starts by itself: contains a panic of user code
    /// (reported by the panic hook), counts it, and starts the triggers over so
    /// the next attempt waits for another Ω(n) operations. True if it published.
    fn promote_contained(&self, guard: &GuardOf<'_, R>, writer: &mut Writer) -> bool {
        let published = catch_unwind(AssertUnwindSafe(|| self.promote_locked(guard, writer)));
        if published.is_err() {
            self.reset_triggers_locked(false);
            Counters::bump(&self.write_side.counters.promotions_abandoned);
        }
        published.is_ok()
    }

    /// `promote()`: promotes now; a panic of user code propagates.
    pub(crate) fn promote_now(&self, guard: &GuardOf<'_, R>) {
        let mut writer = self.lock_writer();
        self.promote_locked(guard, &mut writer);
    }

    /// Promotes if a reader asked for it. Called by writers after their change.
    #[inline]
    pub(super) fn promote_if_wanted(&self, guard: &GuardOf<'_, R>) {
        if self.sampler.promotion_wanted() {
            let mut writer = self.lock_writer();
            // Re-checked under the lock: a promotion resets it.
            if self.sampler.promotion_wanted() {
                self.promote_contained(guard, &mut writer);
            }
        }
    }

    /// A reader whose off-path reads spent the budget: promotes if the writer
    /// lock is free, and otherwise leaves the promotion to the lock's holder or
    /// the next writer. Never waits.
    #[cold]
    pub(super) fn promote_from_reader(&self, guard: &GuardOf<'_, R>) {
        let Some(mut writer) = sync::try_lock(&self.write_side.writer) else {
            self.sampler.want_promotion();
            return;
        };
        self.promote_contained(guard, &mut writer);
    }

    /// Starts the promotion triggers afresh: for a newly published root with no
    /// removed keys (`fresh_root`, after a promotion or a clear), or after an
    /// abandoned promotion. Caller holds the lock.
    fn reset_triggers_locked(&self, fresh_root: bool) {
        if fresh_root {
            // Relaxed: a heuristic, reset under the lock.
            self.write_side.tombstones.store(0, Ordering::Relaxed);
        }
        let (delta_reads, cell_reads) = self.sampler.reset();
        let counters = &self.write_side.counters;
        Counters::add(&counters.delta_reads, delta_reads);
        Counters::add(&counters.cell_reads, cell_reads);
    }

    /// Makes room in the delta for a new key that found `full` (the delta of
    /// `root`) full: promotes or grows it, as the policy says, unless another
    /// thread did meanwhile. Takes the lock; the caller then retries.
    pub(super) fn make_room(&self, guard: &GuardOf<'_, R>, root: &Root<K, V>, full: &Delta<K, V>) {
        let mut writer = self.lock_writer();
        // SAFETY: the lock is held.
        let current = unsafe { self.read_side.root.load_locked() };
        let delta = current.delta_locked();
        let delta_len = current.delta_len();
        if !core::ptr::eq(current, root) || !core::ptr::eq(delta, full) || delta_len < delta.room()
        {
            return;
        }
        let promoted = policy::full_delta_promotes(delta_len, current.read.len())
            && self.promote_contained(guard, &mut writer);
        if !promoted {
            self.grow_delta_locked(guard, current, (delta_len + 1) * 2);
        }
    }

    /// Replaces `root`'s delta with one that has room for `room` keys, the nodes
    /// moved over, and retires the old bucket array. Caller holds the lock and
    /// `room` is at least the delta's node count.
    fn grow_delta_locked(&self, guard: &GuardOf<'_, R>, root: &Root<K, V>, room: usize) {
        let old = root.replace_delta(root.delta_locked().grown(room));
        Counters::bump(&self.write_side.counters.delta_growths);
        // SAFETY: `old` is a valid delta, unlinked just now under the lock; its
        // nodes belong to the grown one now.
        let bytes = unsafe { (*old).bytes(0) };
        // SAFETY: unlinked by `replace_delta` under the lock; retired once.
        unsafe { retire_structure(guard, &self.ledger, old, bytes) };
    }

    /// `reserve`: grows the delta, if needed, so that `additional` new keys fit
    /// without growing it again.
    pub(crate) fn reserve_locked(&self, guard: &GuardOf<'_, R>, additional: usize) {
        let _writer = self.lock_writer();
        // SAFETY: lock held.
        let root = unsafe { self.read_side.root.load_locked() };
        let needed = root.delta_len().saturating_add(additional);
        if needed > root.delta_locked().room() {
            self.grow_delta_locked(guard, root, needed);
        }
    }

    /// Keys the current root holds or can add without growing its delta.
    pub(crate) fn capacity_now(&self, guard: &GuardOf<'_, R>) -> usize {
        let root = self.root(guard);
        root.read.len() + root.delta(guard).room()
    }

    /// Counts a removed key, and compacts (promotes) when
    /// [`policy::removed_keys_compact`] says so. Amortized O(1): that rule lets
    /// a compaction follow only removes in proportion to the keys it copies.
    pub(super) fn note_tombstone(&self, guard: &GuardOf<'_, R>) {
        // Relaxed: a heuristic trigger, re-checked under the lock.
        let removed = self.write_side.tombstones.fetch_add(1, Ordering::Relaxed) + 1;
        let root = self.root(guard);
        let keys = root.read.len() + root.delta_len();
        if !policy::removed_keys_compact(removed.max(0) as usize, keys) {
            return self.promote_if_wanted(guard);
        }
        let mut writer = self.lock_writer();
        // SAFETY: lock held.
        let root = unsafe { self.read_side.root.load_locked() };
        let keys = root.read.len() + root.delta_len();
        if policy::removed_keys_compact(self.tombstones(), keys)
            && self.promote_contained(guard, &mut writer)
        {
            Counters::bump(&self.write_side.counters.compactions);
        }
    }

    /// Empties the map: seals every slot of the current root, so that a racing
    /// lock-free write fails and retries on the new, empty root instead of landing
    /// in a discarded one (which also keeps `len` exact), publishes the empty root
    /// and retires the old one. No user code runs.
    pub(crate) fn clear_tables(&self, guard: &GuardOf<'_, R>) {
        let writer = self.lock_writer();
        // SAFETY: lock held.
        let root = unsafe { self.read_side.root.load_locked() };
        // Closed first, so that no new key lands in the discarded root.
        let delta_len = root.delta_locked().close();
        if delta_len == 0 && root.read.len() == 0 {
            // No key at all, removed ones included: nothing to clear, so no
            // new root (as Go's `Clear` of an empty map allocates nothing).
            // Inserters that met a closed bucket wait for the lock, then retry.
            // (Mutant: leave the delta closed, and every later insert spins.)
            if mutant!("clear_skips_reopen" => false, else true) {
                root.delta_locked().reopen();
            }
            return;
        }
        let (mut removed, mut cells) = (0isize, 0usize);
        for (_, slot) in root.slots(root.delta_locked()) {
            let current = slot.seal();
            removed += isize::from(!link::is_removed(current));
            cells += usize::from(link::cell(current).is_some());
        }
        let bytes = root.bytes(delta_len) + cells * cell_bytes::<V>();
        let old = self
            .read_side
            .root
            .replace(Root::new(ReadTable::new(), Delta::with_room_for(0)));
        self.reset_triggers_locked(true);
        // Relaxed: see `count_insert`.
        self.write_side.len.fetch_sub(removed, Ordering::Relaxed);
        drop(writer);
        // SAFETY: unlinked by `replace` under the lock; retired once.
        unsafe { retire_structure(guard, &self.ledger, old, bytes) };
    }
}
