//! A retired object, and the ledger of everything a map has retired.
//!
//! The ledger is what lets a map promise more than its reclamation scheme: the
//! scheme decides *when* a retired object may be freed (after its grace period),
//! but the map's ledger *owns* the object until then. When the map is dropped, the
//! ledger frees everything still waiting at once — no reader can reach it any
//! more, since every reference into a map borrows the map — and the scheme's late
//! call to [`Retired::reclaim`] then finds nothing to do. With crossbeam-epoch's
//! global collector, garbage would otherwise wait for other threads' pins, maybe
//! for ever.
//!
//! Writers of one map must not meet in the ledger, so it is sharded: a thread
//! retires into a shard of its own, with its own lock on its own cache line.
//! And a record per retired value would cost each overwrite more than its own
//! write (a scheme's deferral, two lock rounds, an `Arc` count twice): values
//! reach the scheme a batch at a time instead, one record per [`BATCH`] values,
//! while tables and roots (rare, and large) get a record each.

use core::panic::AssertUnwindSafe;
use core::ptr::NonNull;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use core::alloc::Layout;

use crossbeam_utils::CachePadded;
use slab::Slab;

use super::spares::Spares;
use crate::sync::Arc;

/// What kind of object was retired; each kind has its own counter in
/// [`Stats`](crate::Stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value replaced by an insert or update, or removed.
    Value = 0,
    /// A classic-protocol entry (key, hash and value slot) that left its last
    /// table.
    Entry = 1,
    /// A table or root: an old read table after a promotion, a grown delta's old
    /// bucket array, a cleared root.
    Table = 2,
}

/// One retired object: a type-erased pointer and the function that frees it.
struct Object {
    ptr: NonNull<()>,
    free: unsafe fn(NonNull<()>),
    bytes: u64,
    /// Its place in the order of retirements: the holds it must wait for are
    /// those taken at or before it (see [`Ledger::hold`]).
    sequence: u64,
    /// A value cell of the ledger's cell layout: `free` drops the value only,
    /// and the memory goes to the shard's spares (see [`Ledger::for_cells`]).
    reuse: bool,
}

// SAFETY: an `Object` stands for ownership of what it points to, which the maps
// retire only when its contents are `Send` (their impls require `K: Send,
// V: Send`), so it may be freed on any thread.
unsafe impl Send for Object {}

impl Object {
    /// Frees the object, containing a panic from a user destructor: frees run on
    /// arbitrary threads inside the scheme, where unwinding would corrupt its
    /// bookkeeping. The panic hook has already reported it.
    ///
    /// # Safety
    ///
    /// No reader can reach the object, and it is freed once.
    unsafe fn free(&self) {
        let Object { ptr, free, .. } = *self;
        // SAFETY: the caller's contract, and `Retired::new`'s caller promised that
        // `free` is sound to call once then.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { free(ptr) }));
    }
}

/// How many shards a ledger has. Each thread retires into one, its *home*
/// shard (assigned round-robin at its first retirement), so that threads
/// writing one map neither wait on one lock nor pass one cache line back and
/// forth: a retirement and its free each take the lock of the object's shard,
/// which is almost always the retiring thread's own.
const SHARDS: usize = 8;

/// Values a shard collects before it hands them to the scheme as one record.
/// Per value, a record costs a scheme's deferral, a lock and an `Arc` count
/// twice over — about 300 instructions, a third of an overwrite — which a
/// batch shares out. The price: up to `BATCH - 1` values per shard wait for
/// the next retirement into the shard, a `flush` or the map's drop. Under loom
/// every value gets its own record, so that the models' reclamation checks
/// see each one.
const BATCH: usize = if cfg!(loom) { 1 } else { 16 };

/// Values retired together, reclaimed by one record.
struct Batch {
    /// The sequence of its first value, which tells the batch from a later one
    /// in the same place.
    id: u64,
    objects: Vec<Object>,
}

/// The next home shard to hand out.
static NEXT_HOME: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// The ledger shards this thread is freeing objects of, right now, with
    /// how many objects each of those frees counts in its shard's `freeing`
    /// (see `Shard::close`).
    static FREEING_HERE: RefCell<Vec<(*const Shard, usize)>> = const { RefCell::new(Vec::new()) };
    /// This thread's home shard, once it has retired something.
    static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The shard this thread retires into.
#[inline]
fn home() -> usize {
    HOME.try_with(|home| {
        let mut shard = home.get();
        if shard == usize::MAX {
            // Relaxed: it only spreads threads over shards; any shard is correct.
            shard = NEXT_HOME.fetch_add(1, Ordering::Relaxed) % SHARDS;
            home.set(shard);
        }
        shard
    })
    // A thread-local destructor retiring (a value dropping a map it owns).
    .unwrap_or(0)
}

/// A shard's counts, exact because they change under its lock.
#[derive(Default)]
struct State {
    /// Retired with a record of their own and not yet taken for freeing.
    waiting: Slab<Object>,
    /// Values retired into this shard whose batch is not handed to the scheme
    /// yet (see [`Ledger::retire_value`]).
    open: Vec<Object>,
    /// Batches handed to the scheme and not yet reclaimed.
    batches: Slab<Batch>,
    /// Retirements into this shard so far: the next one's `sequence`.
    sequence: u64,
    /// Live holds, by the sequence at which each was taken (with a count).
    holds: BTreeMap<u64, usize>,
    /// Objects whose grace period the scheme ended but that a hold still covers.
    held: Vec<Object>,
    retired: [u64; 3],
    retired_bytes: u64,
    peak_pending: u64,
    peak_pending_bytes: u64,
    /// Every object retired before this sequence has been freed (or moved to
    /// `held`) by a sweep (see [`Retired::sweep`]).
    swept: u64,
    /// Set when the map is dropped: everything waiting was freed then.
    closed: bool,
    /// Freed value cells kept for the shard's next values.
    spares: Spares,
    /// Objects taken out by [`Retired::reclaim`] whose destructors are running.
    freeing: usize,
    /// Freed so far (counted after the destructor ran, so `pending` never
    /// reaches 0 while one is still running).
    freed: u64,
    freed_bytes: u64,
}

/// One shard of a [`Ledger`]: the objects its threads retired, and their counts,
/// under one lock.
///
/// Shared (through an `Arc`) between the ledger and the [`Retired`] records
/// waiting in a scheme, so frees that happen after the map is gone find it. The
/// lock is a `std` mutex even under loom: it guards statistics and ownership
/// records only, never a protocol decision, and no loom operation runs inside
/// it, so loom's scheduler never sees it (and it adds no happens-before edge a
/// model could lean on).
#[derive(Default)]
struct Shard {
    state: Mutex<State>,
    /// Signalled when a free in flight ends, once the map is closing (for
    /// [`close`](Shard::close)).
    freed_one: Condvar,
    /// One spare cell set aside for the shard's next new value, so that a
    /// writer takes it without the lock: a retirement into the shard (which
    /// holds the lock anyway) refills it from the spares. A `std` atomic even
    /// under loom, like the lock (loom models keep no spares).
    next_cell: AtomicPtr<u8>,
}

impl Drop for Shard {
    fn drop(&mut self) {
        // The cell set aside lives outside the spares, which free the rest.
        self.free_spares();
    }
}

/// Everything a map has retired: what still waits, and counts of what was retired
/// and freed, in [`SHARDS`] independent shards (see there).
pub(crate) struct Ledger {
    shards: [Arc<CachePadded<Shard>>; SHARDS],
    /// The layout of the value cells whose memory the shards keep for reuse,
    /// if they keep any.
    cells: Option<Layout>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            shards: core::array::from_fn(|_| Arc::new(CachePadded::new(Shard::default()))),
            cells: None,
        }
    }
}

impl core::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ledger")
            .field("counts", &self.counts())
            .finish()
    }
}

/// A snapshot of a [`Ledger`]'s counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LedgerCounts {
    pub(crate) retired: [u64; 3],
    pub(crate) retired_bytes: u64,
    pub(crate) freed: u64,
    pub(crate) freed_bytes: u64,
    /// The sum of the shards' peaks: exact while one thread retires, otherwise
    /// an upper bound of the ledger's peak (each shard's pending count is at most
    /// its peak at every instant).
    pub(crate) peak_pending: u64,
    pub(crate) peak_pending_bytes: u64,
    /// Freed cells kept for reuse, set aside or not, and their bytes.
    pub(crate) spare_cells: u64,
    pub(crate) spare_bytes: u64,
}

impl LedgerCounts {
    /// Retired objects not freed yet.
    pub(crate) fn pending(&self) -> u64 {
        self.retired.iter().sum::<u64>().saturating_sub(self.freed)
    }

    /// Their bytes.
    pub(crate) fn pending_bytes(&self) -> u64 {
        self.retired_bytes.saturating_sub(self.freed_bytes)
    }
}

/// A hold's place in each shard: the sequence at which it was taken there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket([u64; SHARDS]);

impl State {
    /// The sequence of the oldest live hold, or `u64::MAX` with none: an
    /// object retired at or after it may still be reached through that hold.
    fn oldest_hold(&self) -> u64 {
        self.holds.keys().next().copied().unwrap_or(u64::MAX)
    }

    /// Gives the record array back once nothing waits: after a burst of
    /// garbage, an idle map holds no more than an empty one.
    fn shrink_waiting(&mut self) {
        if self.waiting.is_empty() && self.waiting.capacity() > 0 {
            self.waiting = Slab::new();
        }
        if self.batches.is_empty() && self.batches.capacity() > 0 {
            self.batches = Slab::new();
        }
    }

    /// Counts the retirement of `ptr`, `bytes` of `kind`, and returns its
    /// record, with the next sequence.
    fn retirement(
        &mut self,
        ptr: NonNull<()>,
        free: unsafe fn(NonNull<()>),
        kind: Kind,
        bytes: usize,
    ) -> Object {
        debug_assert!(!self.closed, "retire into a dropped map's ledger");
        let bytes = bytes as u64;
        self.retired[kind as usize] += 1;
        self.retired_bytes += bytes;
        let pending = self.retired.iter().sum::<u64>().saturating_sub(self.freed);
        let pending_bytes = self.retired_bytes.saturating_sub(self.freed_bytes);
        self.peak_pending = self.peak_pending.max(pending);
        self.peak_pending_bytes = self.peak_pending_bytes.max(pending_bytes);
        let sequence = self.sequence;
        self.sequence += 1;
        Object {
            ptr,
            free,
            bytes,
            sequence,
            reuse: false,
        }
    }

    /// Whether nothing waits for a sweep: no record's object, no batch, no
    /// open batch.
    fn nothing_waits(&self) -> bool {
        self.waiting.is_empty() && self.batches.is_empty() && self.open.is_empty()
    }

    /// Of `objects`, whose grace period is over, moves those a live hold may
    /// still reach to `held` and returns the rest, counted in `freeing` (so
    /// that `close` waits for their frees).
    fn release_or_hold(&mut self, objects: Vec<Object>) -> Vec<Object> {
        let oldest = self.oldest_hold();
        let (free, held): (Vec<Object>, Vec<Object>) = if oldest == u64::MAX {
            (objects, Vec::new())
        } else {
            objects
                .into_iter()
                .partition(|object| object.sequence < oldest)
        };
        self.held.extend(held);
        self.freeing += free.len();
        free
    }

    /// Takes out every object still waiting that was retired before `through`.
    fn take_due(&mut self, through: u64) -> Vec<Object> {
        let mut due: Vec<Object> = Vec::new();
        let indices: Vec<usize> = self
            .waiting
            .iter()
            .filter(|(_, object)| object.sequence < through)
            .map(|(index, _)| index)
            .collect();
        due.extend(indices.into_iter().map(|index| self.waiting.remove(index)));
        let slots: Vec<usize> = self.batches.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            let batch = &mut self.batches[slot];
            let (now, later) = core::mem::take(&mut batch.objects)
                .into_iter()
                .partition(|object| object.sequence < through);
            due.extend::<Vec<Object>>(now);
            batch.objects = later;
            if batch.objects.is_empty() {
                self.batches.remove(slot);
            }
        }
        let (now, later) = core::mem::take(&mut self.open)
            .into_iter()
            .partition(|object| object.sequence < through);
        due.extend::<Vec<Object>>(now);
        self.open = later;
        self.shrink_waiting();
        due
    }
}

impl Ledger {
    /// A ledger whose shards keep the memory of the value cells they free, all
    /// of `layout`, and hand it to [`take_cell`](Self::take_cell) (see
    /// `reclaim::spares`). Keeps nothing in builds for memory checkers.
    pub(crate) fn for_cells(layout: Layout) -> Self {
        Ledger::with_spares(layout, false)
    }

    /// [`for_cells`](Self::for_cells), keeping cells even in a build for
    /// memory checkers if `always`.
    fn with_spares(layout: Layout, always: bool) -> Self {
        let spares = || Spares::new(Some(layout), BATCH, always);
        Ledger {
            cells: spares().layout(),
            shards: core::array::from_fn(|_| {
                let state = State {
                    spares: spares(),
                    ..State::default()
                };
                Arc::new(CachePadded::new(Shard {
                    state: Mutex::new(state),
                    freed_one: Condvar::new(),
                    next_cell: AtomicPtr::default(),
                }))
            }),
        }
    }

    /// Whether the shards keep freed cells of `layout` for reuse: the
    /// memory of a value retired with `reuse` set must be a cell of it.
    #[inline]
    pub(crate) fn keeps_cells(&self, layout: Layout) -> bool {
        self.cells == Some(layout)
    }

    /// A freed cell of `layout` from this thread's home shard, for a new
    /// value, if the shard keeps one: memory the global allocator gave with
    /// `layout`, unused, whose old value is dropped.
    #[inline]
    pub(crate) fn take_cell(&self, layout: Layout) -> Option<NonNull<u8>> {
        if !self.keeps_cells(layout) {
            return None;
        }
        let slot = &self.shards[home()].next_cell;
        // Relaxed: only spares a swap on an empty slot; the swap decides.
        if slot.load(Ordering::Relaxed).is_null() {
            return None;
        }
        // Acquire: pairs with the Release that set the cell aside, after its
        // last value was dropped (on whichever thread freed it).
        NonNull::new(slot.swap(core::ptr::null_mut(), Ordering::Acquire))
    }

    /// Gives every kept cell back to the allocator.
    fn free_spares(&self) {
        for shard in &self.shards {
            shard.free_spares();
        }
    }

    /// The counts now, summed over the shards; exact when no thread is retiring
    /// or freeing.
    pub(crate) fn counts(&self) -> LedgerCounts {
        let mut counts = LedgerCounts::default();
        for shard in &self.shards {
            let state = shard.lock();
            for (sum, kind) in counts.retired.iter_mut().zip(state.retired) {
                *sum += kind;
            }
            counts.retired_bytes += state.retired_bytes;
            counts.freed += state.freed;
            counts.freed_bytes += state.freed_bytes;
            counts.peak_pending += state.peak_pending;
            counts.peak_pending_bytes += state.peak_pending_bytes;
            if let Some(layout) = state.spares.layout() {
                // Relaxed: a statistic; only a writer's swap empties the slot.
                let aside = !shard.next_cell.load(Ordering::Relaxed).is_null();
                let cells = (state.spares.len() + usize::from(aside)) as u64;
                counts.spare_cells += cells;
                counts.spare_bytes += cells * layout.size() as u64;
            }
        }
        counts
    }

    /// Frees everything still waiting, for the map's `Drop`: with the map
    /// exclusively borrowed, no reader can reach any of it, whatever guards other
    /// threads hold (an owned guard holds the map, so none is live). Later
    /// [`Retired::reclaim`] calls find nothing.
    pub(crate) fn close(&self) {
        for shard in &self.shards {
            shard.close();
        }
    }

    /// Takes a *hold*: until [`release`](Self::release)d, no object retired from
    /// now on is freed, whatever the reclamation scheme says. This is what an
    /// owned guard (which cannot pin a thread-bound scheme, since it may move
    /// between threads) protects its reads with: an object it can reach was
    /// unlinked after the hold was taken — before, and the hold's own reads, which
    /// follow this call, could not have found it — so it was retired after, and
    /// waits. Per shard: an object retired into a shard before the hold locked
    /// that shard was unlinked before the hold's reads; one retired after has a
    /// sequence at or past the hold's ticket there. Returns the hold's ticket.
    pub(crate) fn hold(&self) -> Ticket {
        Ticket(core::array::from_fn(|at| {
            let mut state = self.shards[at].lock();
            let ticket = state.sequence;
            *state.holds.entry(ticket).or_default() += 1;
            ticket
        }))
    }

    /// Releases the hold `ticket`, and frees the objects only it (or holds
    /// released before) kept.
    pub(crate) fn release(&self, ticket: Ticket) {
        for (shard, ticket) in self.shards.iter().zip(ticket.0) {
            shard.release(ticket);
        }
    }

    /// Retires a value cell (or any small object) through `guard` in a batch:
    /// the calling thread's shard collects [`BATCH`] of them, then hands the
    /// scheme one record for all, whose grace period covers each (every one was
    /// unlinked before it joined the batch, under the shard's lock, which the
    /// thread that retires the record takes after — the [`Reclaim`] contract's
    /// "unlinked before", across threads).
    ///
    /// With `reuse`, `ptr` is a cell of the layout the ledger keeps (see
    /// [`keeps_cells`](Self::keeps_cells)) and `free` drops its value only: the
    /// ledger keeps the memory for [`take_cell`](Self::take_cell) or frees it.
    ///
    /// # Safety
    ///
    /// As for [`Retired::new`], and `ptr` was unlinked before this call; with
    /// `reuse`, as above.
    ///
    /// [`Reclaim`]: super::Reclaim
    pub(crate) unsafe fn retire_value(
        &self,
        guard: &impl super::Guard,
        ptr: NonNull<()>,
        free: unsafe fn(NonNull<()>),
        reuse: bool,
        kind: Kind,
        bytes: usize,
    ) {
        debug_assert!(
            !reuse || self.cells.is_some(),
            "a cell to keep needs spares"
        );
        if BATCH == 1 {
            debug_assert!(!reuse, "spares are kept only with batches");
            // SAFETY: the caller's contract.
            unsafe { guard.retire(Retired::new(ptr, free, kind, bytes, self)) };
            return;
        }
        let shard = &self.shards[home()];
        let record = {
            let mut state = shard.lock();
            let mut object = state.retirement(ptr, free, kind, bytes);
            object.reuse = reuse;
            if reuse {
                shard.set_aside_cell(&mut state);
            }
            if state.open.capacity() == 0 {
                state.open.reserve_exact(BATCH);
            }
            state.open.push(object);
            if state.open.len() < BATCH {
                return;
            }
            let objects = core::mem::take(&mut state.open);
            let id = objects[0].sequence;
            let slot = state.batches.insert(Batch { id, objects });
            Retired {
                shard: Arc::clone(shard),
                index: BATCH_RECORD | slot,
                sequence: id,
                #[cfg(loom)]
                addr: 0,
                #[cfg(loom)]
                kind,
            }
        };
        // SAFETY: every object of the batch was unlinked before it joined (the
        // callers' contract), under the lock this thread took after; the
        // record is retired once.
        unsafe { guard.retire(record) };
    }

    /// Objects freed so far, over all shards.
    fn freed(&self) -> u64 {
        self.shards.iter().map(|shard| shard.lock().freed).sum()
    }

    /// Frees, through `reclaim`, everything retired into this ledger before the
    /// call, once no guard live during the call can still reach it: at once if
    /// no such guard is left by the time this returns, otherwise as soon as the
    /// last one is gone (the sweep records retired here run then).
    ///
    /// This is what lets a map's `flush` reach garbage the scheme keeps where a
    /// flush on this thread cannot (seize's per-thread batches of other threads,
    /// crossbeam-epoch's thread-local bags): a sweep record needs only its own
    /// grace period to end, and that ends for every object retired before it.
    ///
    /// Then it gives the shards' spare cells back to the allocator.
    pub(crate) fn flush<R: super::Reclaim>(&self, reclaim: &R) {
        self.sweep_all(reclaim);
        self.free_spares();
    }

    /// [`flush`](Self::flush)'s sweeps.
    fn sweep_all<R: super::Reclaim>(&self, reclaim: &R) {
        use super::Guard as _;
        // A scheme needs a few rounds: crossbeam-epoch two epoch advances and
        // as many collections as there are bags queued before the sweep's,
        // seize a batch with an entry per active thread (each round pads a
        // few). Keep going while frees make progress; stop after this many
        // rounds without any (a live guard holds the sweeps back, and the last
        // such guard will run them).
        const IDLE_ROUNDS: usize = 8;
        // The loom backend frees at the last guard's release: nothing to sweep.
        if cfg!(loom) {
            reclaim.flush();
            return;
        }
        let sweeps: Vec<(&Shard, Retired)> = self
            .shards
            .iter()
            .filter_map(|shard| Some((&***shard, Retired::sweep(shard)?)))
            .collect();
        if sweeps.is_empty() {
            reclaim.flush();
            return;
        }
        let mut targets = Vec::with_capacity(sweeps.len());
        {
            let guard = reclaim.pin();
            for (shard, sweep) in sweeps {
                targets.push((shard, sweep.sequence));
                // SAFETY: a sweep record owns nothing; what it frees was unlinked
                // before its retirement (see `Retired::sweep`), and it is retired
                // once.
                unsafe { guard.retire(sweep) };
            }
        }
        let mut idle = 0;
        let mut freed = self.freed();
        while idle < IDLE_ROUNDS {
            reclaim.flush();
            if targets
                .iter()
                .all(|(shard, through)| shard.lock().swept >= *through)
            {
                return;
            }
            let now = self.freed();
            idle = if now > freed { 0 } else { idle + 1 };
            freed = now;
        }
    }
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock, so a poisoned one is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees everything still waiting in this shard (see [`Ledger::close`]).
    fn close(&self) {
        let all = {
            let mut state = self.lock();
            state.closed = true;
            // A destructor another thread's collector is running right now still
            // belongs to this map: the drop returns only once it is done. (One
            // running on this thread — a value whose drop dropped this map — is
            // not waited for: it is below us on the stack.)
            let own = FREEING_HERE
                .try_with(|here| {
                    here.borrow()
                        .iter()
                        .filter(|&&(shard, _)| core::ptr::eq(shard, self))
                        .map(|&(_, count)| count)
                        .sum()
                })
                .unwrap_or(0);
            while state.freeing > own {
                state = self
                    .freed_one
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let mut all: Vec<Object> = core::mem::take(&mut state.waiting)
                .into_iter()
                .map(|(_, object)| object)
                .collect();
            all.append(&mut state.held);
            all.append(&mut state.open);
            for (_, mut batch) in core::mem::take(&mut state.batches) {
                all.append(&mut batch.objects);
            }
            state.freeing += all.len();
            all
        };
        // Freed outside the lock: destructors are user code.
        // SAFETY: unreachable (see `Ledger::close`), and taken out of the shard
        // (and counted in `freeing`), so freed once.
        unsafe { self.free_in_flight(all) };
        // Closed: no cell is kept from now on.
        self.free_spares();
    }

    /// Frees `objects`, which were taken out of the shard and counted in
    /// `freeing`, counts them as freed, and signals [`close`](Self::close) if it
    /// waits.
    ///
    /// # Safety
    ///
    /// No reader can reach them, and each is freed once.
    unsafe fn free_in_flight(&self, objects: Vec<Object>) {
        /// Ends the frees in flight even if a destructor panics (each is
        /// contained, but the counts must not be left behind), and takes the
        /// memory of the value cells among them.
        struct Done<'l> {
            shard: &'l Shard,
            objects: Vec<Object>,
            bytes: u64,
        }
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                let count = self.objects.len();
                // `try_with`: a collector may run this from a thread-local
                // destructor (crossbeam-epoch flushes a thread's bag as the
                // thread exits), after this thread-local is gone.
                let _ = FREEING_HERE.try_with(|here| {
                    let mut here = here.borrow_mut();
                    if let Some(at) = here
                        .iter()
                        .rposition(|&(shard, _)| core::ptr::eq(shard, self.shard))
                    {
                        here.swap_remove(at);
                    }
                });
                let mut state = self.shard.lock();
                // The cells the spares do not keep (none once the map is
                // closed: nothing would take them), freed outside the lock.
                let mut surplus: Vec<NonNull<u8>> = Vec::new();
                let layout = state.spares.layout();
                if layout.is_some() {
                    for object in &self.objects {
                        let cell = object.ptr.cast::<u8>();
                        if object.reuse && (state.closed || !state.spares.keep(cell)) {
                            surplus.push(cell);
                        }
                    }
                }
                state.freeing -= count;
                state.freed += count as u64;
                state.freed_bytes += self.bytes;
                // Only a closing map waits (a wake-up is a system call).
                if state.closed {
                    self.shard.freed_one.notify_all();
                }
                drop(state);
                if let Some(layout) = layout {
                    // SAFETY: cells of the spares' layout (`reuse` objects,
                    // whose values `free` dropped), neither kept nor used.
                    unsafe { Spares::free(layout, surplus) };
                }
            }
        }
        if objects.is_empty() {
            return;
        }
        // The whole batch counts as this thread's own until `Done`: a value
        // whose drop drops this map must not wait for the rest of its batch,
        // which runs on this thread after it.
        let _ = FREEING_HERE.try_with(|here| {
            here.borrow_mut()
                .push((self as *const Shard, objects.len()))
        });
        let bytes = objects.iter().map(|object| object.bytes).sum();
        let done = Done {
            shard: self,
            objects,
            bytes,
        };
        for object in &done.objects {
            // SAFETY: the caller's contract; each object is freed once, here
            // (`Done` only gives back the memory of the `reuse` ones).
            unsafe { object.free() };
        }
    }

    /// Sets a spare cell aside for [`Ledger::take_cell`] if none is.
    fn set_aside_cell(&self, state: &mut State) {
        // Relaxed: only a writer's swap empties the slot, and a stale
        // non-null just skips this refill.
        if self.next_cell.load(Ordering::Relaxed).is_null() {
            if let Some(cell) = state.spares.pop() {
                // Release: the cell's last value was dropped before it was
                // kept (under this lock); the taker's Acquire sees that.
                self.next_cell.store(cell.as_ptr(), Ordering::Release);
            }
        }
    }

    /// Gives this shard's spare cells back to the allocator.
    fn free_spares(&self) {
        let (layout, mut cells) = {
            let mut state = self.lock();
            (state.spares.layout(), state.spares.take_all())
        };
        // Acquire: as in `Ledger::take_cell`.
        let aside = self
            .next_cell
            .swap(core::ptr::null_mut(), Ordering::Acquire);
        cells.extend(NonNull::new(aside));
        if let Some(layout) = layout {
            // SAFETY: kept cells have the spares' layout and are unused.
            unsafe { Spares::free(layout, cells) };
        }
    }

    /// Releases this shard's part of a hold (see [`Ledger::release`]).
    fn release(&self, ticket: u64) {
        let free = {
            let mut state = self.lock();
            let remove = match state.holds.get_mut(&ticket) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => true,
                None => unreachable!("a hold is released once"),
            };
            if remove {
                state.holds.remove(&ticket);
            }
            let held = core::mem::take(&mut state.held);
            state.release_or_hold(held)
        };
        // SAFETY: their scheme's grace period is over, and no hold that could
        // reach them is left; taken out of the shard (and counted in
        // `freeing`), so freed once.
        unsafe { self.free_in_flight(free) };
    }

    /// Takes every object retired into this shard before `through` out of
    /// `waiting` and frees it, or moves it to `held` if a hold may still reach
    /// it: what a sweep record does when its scheme reclaims it.
    ///
    /// # Safety
    ///
    /// The grace period of every object retired before `through` is over (the
    /// sweep record was retired after them and its own grace period is over).
    unsafe fn sweep(&self, through: u64) {
        let free = {
            let mut state = self.lock();
            if state.closed || state.swept >= through {
                return;
            }
            let due = state.take_due(through);
            state.release_or_hold(due)
        };
        // SAFETY: the caller's contract (their grace period is over) and
        // `release_or_hold` (no hold reaches them); taken out of the shard and
        // counted in `freeing`, so freed once.
        unsafe { self.free_in_flight(free) };
        // Marked once the frees are done, so that a flush waiting for this
        // sweep returns with its garbage gone, not going.
        let mut state = self.lock();
        state.swept = state.swept.max(through);
    }
}

/// An object unlinked from a map, waiting for its reclamation scheme to call
/// [`reclaim`](Retired::reclaim).
///
/// Three words: the ledger shard that owns the object meanwhile, the object's
/// place in it and its sequence number (which tells it from a later object in
/// the same place) — small enough that crossbeam-epoch stores it inline in its
/// garbage bags.
///
/// A `Retired` dropped without `reclaim` leaves its object to the ledger, which
/// frees it when the map is dropped; a scheme calls `reclaim` at most once, when
/// no guard can reach the object any more.
///
/// A map's `flush` also retires *sweep records*, which own no object: reclaiming
/// one frees every object of its shard retired before it (their grace periods
/// ended no later than its own).
#[must_use = "a retired object is freed by `reclaim`, or only when its map is dropped"]
pub struct Retired {
    shard: Arc<CachePadded<Shard>>,
    /// The object's place in `waiting`; for a batch, [`BATCH_RECORD`] and its
    /// place in `batches`; [`SWEEP`] for a sweep record.
    index: usize,
    /// The object's sequence; a batch's id; for a sweep record, the sequence
    /// it sweeps up to.
    sequence: u64,
    /// For the loom backend's checks.
    #[cfg(loom)]
    addr: usize,
    #[cfg(loom)]
    kind: Kind,
}

/// The `index` of a sweep record.
const SWEEP: usize = usize::MAX;
/// Set in the `index` of a batch's record, over the batch's place in
/// `batches` (a slab index never comes near it).
const BATCH_RECORD: usize = 1 << (usize::BITS - 1);

impl core::fmt::Debug for Retired {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Retired")
            .field("index", &self.index)
            .finish()
    }
}

impl Retired {
    /// Hands `ptr` to `ledger` (the calling thread's shard of it) and counts its
    /// retirement.
    ///
    /// # Safety
    ///
    /// `free(ptr)` must be sound to call once, on any thread, once no reader can
    /// reach the object: after the scheme's grace period, or when the map that
    /// owns `ledger` is dropped.
    pub(crate) unsafe fn new(
        ptr: NonNull<()>,
        free: unsafe fn(NonNull<()>),
        kind: Kind,
        bytes: usize,
        ledger: &Ledger,
    ) -> Self {
        let shard = &ledger.shards[home()];
        let (index, sequence) = {
            let mut state = shard.lock();
            let object = state.retirement(ptr, free, kind, bytes);
            let sequence = object.sequence;
            (state.waiting.insert(object), sequence)
        };
        Retired {
            shard: Arc::clone(shard),
            index,
            sequence,
            #[cfg(loom)]
            addr: ptr.as_ptr().addr(),
            #[cfg(loom)]
            kind,
        }
    }

    /// A sweep record for `shard`: reclaimed, it frees every object retired
    /// into `shard` before this call. `None` if nothing waits that it would
    /// sweep.
    ///
    /// Retiring it is sound wherever retiring those objects was: each was
    /// unlinked before its own `Retired::new`, which took the shard's lock
    /// before this call did, so every unlink happens-before this record's
    /// retirement (the [`Reclaim`](super::Reclaim) contract's "unlinked
    /// before", across threads).
    fn sweep(shard: &Arc<CachePadded<Shard>>) -> Option<Self> {
        let state = shard.lock();
        if state.closed || state.sequence <= state.swept || state.nothing_waits() {
            return None;
        }
        Some(Retired {
            shard: Arc::clone(shard),
            index: SWEEP,
            sequence: state.sequence,
            #[cfg(loom)]
            addr: 0,
            #[cfg(loom)]
            kind: Kind::Table,
        })
    }

    /// The object's address.
    #[cfg(loom)]
    pub(crate) fn addr(&self) -> usize {
        self.addr
    }

    /// What kind of object it is.
    #[cfg(loom)]
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Frees the object, unless its map was dropped first (which freed it).
    ///
    /// A panic from the object's destructor (a user `Drop` impl) is caught here:
    /// reclamation runs on an arbitrary thread inside an arbitrary map operation,
    /// where unwinding would corrupt the collector's own bookkeeping. The memory is
    /// still released; the panic message has already been printed by the panic hook.
    ///
    /// # Safety
    ///
    /// Call at most once, and only when no guard can still reach the object (the
    /// [`Reclaim`](super::Reclaim) contract).
    pub unsafe fn reclaim(self) {
        if self.index == SWEEP {
            // SAFETY: this record's grace period is over, and with it that of
            // every object retired into its shard before it (`Retired::sweep`).
            unsafe { self.shard.sweep(self.sequence) };
            return;
        }
        // Taken out under the lock, so that this, a sweep and `Ledger::close`
        // never both free one; freed outside the lock (a destructor is user
        // code).
        let free = {
            let mut state = self.shard.lock();
            // A sweep may have freed them, and their place may hold later ones.
            let objects = if self.index & BATCH_RECORD != 0 {
                let slot = self.index & !BATCH_RECORD;
                match state.batches.get(slot) {
                    Some(batch) if batch.id == self.sequence => state.batches.remove(slot).objects,
                    _ => Vec::new(),
                }
            } else {
                match state.waiting.get(self.index) {
                    Some(object) if object.sequence == self.sequence => {
                        vec![state.waiting.remove(self.index)]
                    }
                    _ => Vec::new(),
                }
            };
            state.shrink_waiting();
            // A hold taken at or before an object's retirement may still reach
            // it: that one waits in `held`.
            state.release_or_hold(objects)
        };
        // SAFETY: the caller upholds the grace period and no hold covers them;
        // taken out of the shard above (and counted in `freeing`), so freed once.
        unsafe { self.shard.free_in_flight(free) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    static FREES: AtomicUsize = AtomicUsize::new(0);

    unsafe fn count_free(_: NonNull<()>) {
        FREES.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn close_frees_what_waits_and_reclaim_after_it_does_nothing() {
        let ledger = Arc::new(Ledger::default());
        let before = FREES.load(Ordering::Relaxed);
        // SAFETY: `count_free` frees nothing.
        let (a, b) = unsafe {
            (
                Retired::new(NonNull::dangling(), count_free, Kind::Value, 8, &ledger),
                Retired::new(NonNull::dangling(), count_free, Kind::Table, 100, &ledger),
            )
        };
        let counts = ledger.counts();
        assert_eq!((counts.pending(), counts.pending_bytes()), (2, 108));
        // SAFETY: nothing reaches the dangling objects.
        unsafe { a.reclaim() };
        assert_eq!(FREES.load(Ordering::Relaxed) - before, 1);
        assert_eq!(ledger.counts().pending_bytes(), 100);
        ledger.close();
        assert_eq!(FREES.load(Ordering::Relaxed) - before, 2);
        // SAFETY: as above; the ledger has freed it already.
        unsafe { b.reclaim() };
        assert_eq!(FREES.load(Ordering::Relaxed) - before, 2, "freed once");
        let counts = ledger.counts();
        assert_eq!(
            (
                counts.pending(),
                counts.peak_pending,
                counts.peak_pending_bytes
            ),
            (0, 2, 108)
        );
    }

    static SWEPT: AtomicUsize = AtomicUsize::new(0);

    unsafe fn count_sweep_free(_: NonNull<()>) {
        SWEPT.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn a_sweep_frees_what_was_retired_before_it_and_late_reclaims_do_nothing() {
        let ledger = Arc::new(Ledger::default());
        // SAFETY: `count_sweep_free` frees nothing.
        let retire = || unsafe {
            Retired::new(
                NonNull::dangling(),
                count_sweep_free,
                Kind::Value,
                8,
                &ledger,
            )
        };
        let (a, b) = (retire(), retire());
        let sweep = Retired::sweep(&ledger.shards[home()]).expect("two objects wait");
        let c = retire(); // after the sweep record: not its to free
                          // SAFETY: nothing reaches the dangling objects; each reclaimed once.
        unsafe { sweep.reclaim() };
        assert_eq!(SWEPT.load(Ordering::Relaxed), 2, "a and b, not c");
        assert_eq!(ledger.counts().pending(), 1);
        // A later object may take a swept one's place in the slab: the swept
        // one's late `reclaim` must leave it alone.
        let d = retire();
        // SAFETY: nothing reaches the dangling objects; each reclaimed once.
        unsafe { a.reclaim() };
        // SAFETY: nothing reaches the dangling objects; each reclaimed once.
        unsafe { b.reclaim() };
        assert_eq!(
            SWEPT.load(Ordering::Relaxed),
            2,
            "late reclaims freed nothing"
        );
        assert_eq!(ledger.counts().pending(), 2);
        // SAFETY: nothing reaches the dangling objects; each reclaimed once.
        unsafe { c.reclaim() };
        // SAFETY: nothing reaches the dangling objects; each reclaimed once.
        unsafe { d.reclaim() };
        assert_eq!(SWEPT.load(Ordering::Relaxed), 4);
        assert!(
            Retired::sweep(&ledger.shards[home()]).is_none(),
            "nothing left to sweep"
        );
        let counts = ledger.counts();
        assert_eq!(
            (counts.pending(), counts.freed, counts.freed_bytes),
            (0, 4, 32)
        );
    }

    /// Counts the frees of the objects retired against it: one per test, as
    /// tests run side by side in one process.
    #[derive(Default)]
    struct Frees(AtomicUsize);

    impl Frees {
        /// The "object" to retire: this counter.
        fn object(&self) -> NonNull<()> {
            NonNull::from(&self.0).cast()
        }

        fn count(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// Frees an object retired by [`Frees::object`]: counts it.
    unsafe fn count_free_at(object: NonNull<()>) {
        // SAFETY: a test's `Frees`, which outlives its ledger's frees.
        unsafe { object.cast::<AtomicUsize>().as_ref() }.fetch_add(1, Ordering::Relaxed);
    }

    fn retire_sharded(ledger: &Ledger, frees: &Frees, bytes: usize) -> Retired {
        // SAFETY: `count_free_at` only counts.
        unsafe { Retired::new(frees.object(), count_free_at, Kind::Value, bytes, ledger) }
    }

    #[test]
    fn threads_retire_into_shards_of_their_own_and_counts_and_close_cover_them_all() {
        let frees = Frees::default();
        let ledger = Ledger::default();
        let records: Vec<Retired> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..SHARDS)
                .map(|_| {
                    scope.spawn(|| {
                        [
                            retire_sharded(&ledger, &frees, 8),
                            retire_sharded(&ledger, &frees, 8),
                        ]
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|thread| thread.join().unwrap())
                .collect()
        });
        let shards: std::collections::HashSet<*const CachePadded<Shard>> = records
            .iter()
            .map(|record| Arc::as_ptr(&record.shard))
            .collect();
        assert!(shards.len() >= 2, "{SHARDS} threads share one shard");
        let counts = ledger.counts();
        let retired = 2 * SHARDS as u64;
        assert_eq!(
            (counts.pending(), counts.pending_bytes()),
            (retired, 8 * retired)
        );
        assert!(
            counts.peak_pending >= retired,
            "the summed peak bounds the real one"
        );
        ledger.close();
        assert_eq!(frees.count(), 2 * SHARDS);
        for record in records {
            // SAFETY: nothing reaches the dangling objects; the ledger freed them.
            unsafe { record.reclaim() };
        }
        assert_eq!(frees.count(), 2 * SHARDS, "freed once");
        assert_eq!(ledger.counts().pending(), 0);
    }

    #[test]
    fn a_hold_keeps_what_other_threads_retire_after_it_in_their_own_shards() {
        let frees = Frees::default();
        let ledger = Ledger::default();
        let spawn_retire = || {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| retire_sharded(&ledger, &frees, 8))
                    .join()
                    .unwrap()
            })
        };
        let early = spawn_retire();
        let ticket = ledger.hold();
        let late: Vec<Retired> = (0..SHARDS).map(|_| spawn_retire()).collect();
        // SAFETY: nothing reaches the dangling objects; each reclaimed once.
        unsafe { early.reclaim() };
        assert_eq!(frees.count(), 1, "retired before the hold");
        for record in late {
            // SAFETY: as above.
            unsafe { record.reclaim() };
        }
        assert_eq!(
            frees.count(),
            1,
            "retired after the hold, in whichever shard: kept"
        );
        ledger.release(ticket);
        assert_eq!(frees.count(), 1 + SHARDS);
        assert_eq!(ledger.counts().pending(), 0);
    }

    /// A guard that keeps what it is handed, for the test to reclaim.
    #[derive(Default)]
    struct Keeper(RefCell<Vec<Retired>>);

    // SAFETY: it never reclaims anything itself.
    unsafe impl crate::reclaim::Guard for Keeper {
        fn protect<T>(&self, src: &crate::sync::AtomicPtr<T>, order: Ordering) -> *mut T {
            src.load(order)
        }

        unsafe fn retire(&self, retired: Retired) {
            self.0.borrow_mut().push(retired);
        }

        fn refresh(&mut self) {}
    }

    fn retire_batched(ledger: &Ledger, keeper: &Keeper, frees: &Frees) {
        // SAFETY: `count_free_at` only counts.
        unsafe { ledger.retire_value(keeper, frees.object(), count_free_at, false, Kind::Value, 8) }
    }

    #[test]
    fn values_reach_the_scheme_a_batch_at_a_time_and_one_record_frees_the_batch() {
        let frees = Frees::default();
        let ledger = Ledger::default();
        let keeper = Keeper::default();
        for _ in 0..BATCH - 1 {
            retire_batched(&ledger, &keeper, &frees);
        }
        assert!(keeper.0.borrow().is_empty(), "a partial batch waits");
        assert_eq!(
            ledger.counts().pending(),
            (BATCH - 1) as u64,
            "counted at once"
        );
        retire_batched(&ledger, &keeper, &frees);
        let records: Vec<Retired> = keeper.0.take();
        assert_eq!(records.len(), 1, "one record for a full batch");
        let ticket = ledger.hold();
        retire_batched(&ledger, &keeper, &frees);
        for record in records {
            // SAFETY: nothing reaches the dangling objects; reclaimed once.
            unsafe { record.reclaim() };
        }
        assert_eq!(frees.count(), BATCH, "the batch, freed");
        ledger.release(ticket);
        assert_eq!(ledger.counts().pending(), 1, "the next batch's first value");
        ledger.close();
        assert_eq!(frees.count(), BATCH + 1, "close frees an open batch");
        assert_eq!(ledger.counts().pending(), 0);
    }

    #[test]
    fn a_sweep_frees_open_and_sealed_batches_and_their_records_then_do_nothing() {
        let frees = Frees::default();
        let ledger = Ledger::default();
        let keeper = Keeper::default();
        for _ in 0..BATCH + 2 {
            retire_batched(&ledger, &keeper, &frees);
        }
        let sealed: Vec<Retired> = keeper.0.take();
        assert_eq!(sealed.len(), 1);
        let sweep = Retired::sweep(&ledger.shards[home()]).expect("values wait");
        retire_batched(&ledger, &keeper, &frees); // after the sweep record: not its to free
                                                  // SAFETY: nothing reaches the dangling objects; each reclaimed once.
        unsafe { sweep.reclaim() };
        assert_eq!(frees.count(), BATCH + 2);
        assert_eq!(ledger.counts().pending(), 1);
        for record in sealed {
            // SAFETY: as above; the sweep freed its batch already.
            unsafe { record.reclaim() };
        }
        assert_eq!(frees.count(), BATCH + 2, "freed once");
        ledger.close();
        assert_eq!(frees.count(), BATCH + 3);
    }

    #[test]
    fn a_hold_keeps_the_values_of_a_batch_retired_after_it() {
        let frees = Frees::default();
        let ledger = Ledger::default();
        let keeper = Keeper::default();
        for _ in 0..BATCH / 2 {
            retire_batched(&ledger, &keeper, &frees);
        }
        let ticket = ledger.hold();
        for _ in 0..BATCH / 2 {
            retire_batched(&ledger, &keeper, &frees);
        }
        for record in keeper.0.take() {
            // SAFETY: nothing reaches the dangling objects; reclaimed once.
            unsafe { record.reclaim() };
        }
        assert_eq!(frees.count(), BATCH / 2, "the half retired before the hold");
        ledger.release(ticket);
        assert_eq!(frees.count(), BATCH);
        assert_eq!(ledger.counts().pending(), 0);
    }

    /// Retires one full batch of `String` cells through `ledger` and reclaims
    /// it; returns the cells' addresses.
    fn retire_and_reclaim_a_batch_of_cells(ledger: &Arc<Ledger>, keeper: &Keeper) -> Vec<usize> {
        let cells: Vec<*mut String> = (0..BATCH)
            .map(|i| crate::raw::cell::into_raw(i.to_string()))
            .collect();
        for &cell in &cells {
            // SAFETY: a cell nobody else holds, retired once.
            let _ = unsafe { crate::raw::retire::retire_cell(keeper, ledger, cell) };
        }
        for record in keeper.0.take() {
            // SAFETY: nothing else reaches the cells; reclaimed once.
            unsafe { record.reclaim() };
        }
        assert_eq!(ledger.counts().pending(), 0, "every value dropped");
        cells.into_iter().map(|cell| cell.addr()).collect()
    }

    impl Ledger {
        /// Cells kept, set aside or not.
        fn spare_cells(&self) -> usize {
            self.counts().spare_cells as usize
        }
    }

    #[test]
    fn freed_cells_go_to_the_next_values_and_a_flush_gives_the_rest_back() {
        use crate::raw::cell::{layout, Owned};
        // Kept under Miri too, which checks the reuse itself here.
        let ledger = Arc::new(Ledger::with_spares(layout::<String>(), true));
        let keeper = Keeper::default();
        let freed = retire_and_reclaim_a_batch_of_cells(&ledger, &keeper);
        assert_eq!(ledger.spare_cells(), BATCH, "the batch's cells are kept");
        assert!(
            ledger.take_cell(layout::<String>()).is_none(),
            "none is set aside before the next retirement"
        );
        assert!(
            !ledger.keeps_cells(layout::<u64>()),
            "only the map's own cells"
        );
        // A retirement sets one aside, and the next new value takes it.
        let extra = crate::raw::cell::into_raw(String::from("extra"));
        // SAFETY: a cell nobody else holds, retired once.
        let _ = unsafe { crate::raw::retire::retire_cell(&keeper, &ledger, extra) };
        let reused = Owned::new_in(String::from("again"), &ledger);
        assert!(
            freed.contains(&reused.as_ptr().addr()),
            "a freed cell's memory"
        );
        // SAFETY: the test owns the unpublished cell.
        assert_eq!(unsafe { &*reused.as_ptr() }, "again");
        let fresh = Owned::new_in(String::from("fresh"), &ledger);
        assert!(
            !freed.contains(&fresh.as_ptr().addr()),
            "one set aside per retirement"
        );
        drop((reused, fresh));
        assert_eq!(ledger.spare_cells(), BATCH - 1);
        ledger.free_spares();
        assert_eq!(ledger.spare_cells(), 0, "a flush gives every spare back");
        ledger.close();
        drop(keeper);
    }

    #[test]
    fn a_closed_ledger_keeps_no_cells_and_gives_back_what_is_freed_after() {
        use crate::raw::cell::layout;
        let ledger = Arc::new(Ledger::with_spares(layout::<String>(), true));
        let keeper = Keeper::default();
        retire_and_reclaim_a_batch_of_cells(&ledger, &keeper);
        let cells: Vec<*mut String> = (0..BATCH)
            .map(|i| crate::raw::cell::into_raw(i.to_string()))
            .collect();
        for &cell in &cells {
            // SAFETY: a cell nobody else holds, retired once.
            let _ = unsafe { crate::raw::retire::retire_cell(&keeper, &ledger, cell) };
        }
        // The map's drop: what waits is freed at once, the spares go back.
        ledger.close();
        assert_eq!(ledger.spare_cells(), 0);
        assert_eq!(ledger.counts().pending(), 0);
        // A late record finds nothing left to free, and keeps nothing.
        for record in keeper.0.take() {
            // SAFETY: reclaimed once.
            unsafe { record.reclaim() };
        }
        assert_eq!(ledger.spare_cells(), 0);
    }
}
