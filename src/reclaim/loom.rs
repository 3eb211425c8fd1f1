//! The loom backend: reclamation that loom can model completely, and that turns a
//! map's reclamation mistake into a model failure.
//!
//! Only built under `--cfg loom`, where it is also the [`DefaultReclaim`]: the
//! crossbeam-epoch backend needs `--cfg crossbeam_loom` (crossbeam-epoch's own
//! loom support) to run inside loom's threads, and seize and arc-swap have no
//! loom support at all.
//!
//! # The scheme
//!
//! Reference-counted guards: every pin registers a guard under one (loom) mutex;
//! a retired object records the guards live at that moment and is freed when the
//! last of them is released. That is the [`Reclaim`] contract and nothing more —
//! no grace period beyond it — so a map that relies on more than the contract
//! fails here.
//!
//! # The checks
//!
//! Beside the scheme, an audit kept in a plain `std` mutex (invisible to loom, so
//! it adds no synchronization the model could lean on) checks the maps' side of
//! the contract and panics, inside the model, on:
//!
//! * a guard [`protect`](Guard::protect)ing a pointer that was retired before the
//!   guard was pinned (the map retired an object that was still reachable), or one
//!   already freed;
//! * freeing an object that a live guard protected;
//! * retiring the same value or table twice;
//! * a value or table retired and never freed although no guard is live
//!   ([`Reclaim::flush`] checks).
//!
//! A freed value or table is not handed back to the allocator at once: it waits
//! in a graveyard until [`flush`](Reclaim::flush) finds no guard live or the
//! reclaimer is dropped, and its address is listed meanwhile. So a late access is
//! caught by [`LoomReclaim::assert_not_freed`] (which the loom suite's value type
//! calls on every read) instead of being undefined behaviour, and no new
//! allocation can reuse the address while the model still checks it. Loom's own
//! leak check covers the rest: a `Retired` never reclaimed leaks its ledger `Arc`
//! (a loom `Arc`), which loom reports at the end of the execution.
//!
//! [`DefaultReclaim`]: super::DefaultReclaim

use core::mem::align_of;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex as StdMutex, MutexGuard as StdMutexGuard, PoisonError};

use super::{Guard, Kind, Reclaim, Retired};
use crate::sync::{self, AtomicPtr, Mutex, Ordering};

/// Addresses of the values and tables that some `LoomReclaim` has freed and keeps
/// in its graveyard. Global because a value does not know its map; sound because
/// an address stays allocated (so unique) while it is listed here.
static FREED: StdMutex<BTreeSet<usize>> = StdMutex::new(BTreeSet::new());

fn freed_set() -> StdMutexGuard<'static, BTreeSet<usize>> {
    FREED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reclamation for loom models: reference-counted guards on loom's mutex, plus
/// checks of the [`Reclaim`] contract (see the module docs).
///
/// Available only under `--cfg loom`, where it is the default reclaimer.
pub struct LoomReclaim {
    /// The scheme itself, on loom's mutex: what the model explores.
    scheme: Mutex<Scheme>,
    /// The checks, on std's mutex: bookkeeping the model must not see.
    audit: StdMutex<Audit>,
}

#[derive(Default)]
struct Scheme {
    /// The id the next pinned guard gets.
    next_guard: u64,
    /// Ids of the live guards.
    live: Vec<u64>,
    /// Retired, waiting for guards.
    pending: Vec<Pending>,
}

struct Pending {
    retired: Retired,
    /// The guards that were live at retirement and are still live.
    waiting: Vec<u64>,
}

#[derive(Default)]
struct Audit {
    /// Values and tables retired and not yet given back to the allocator.
    records: HashMap<usize, Record>,
    /// For each live guard, the addresses it protected.
    protected: HashMap<u64, Vec<usize>>,
    /// Freed by the scheme; memory kept until no guard is live.
    graveyard: Vec<Retired>,
}

struct Record {
    kind: Kind,
    /// Guards with this id or higher were pinned after the retirement.
    first_later_guard: u64,
    freed: bool,
}

impl Default for LoomReclaim {
    fn default() -> Self {
        LoomReclaim {
            scheme: Mutex::new(Scheme::default()),
            audit: StdMutex::new(Audit::default()),
        }
    }
}

impl core::fmt::Debug for LoomReclaim {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoomReclaim").finish_non_exhaustive()
    }
}

/// Values and tables are checked by address; an entry is retired as one of
/// several `Arc` references, so its address may legitimately stay reachable.
fn audited(kind: Kind) -> bool {
    matches!(kind, Kind::Value | Kind::Table)
}

impl LoomReclaim {
    /// Panics if `ptr` is a value or table that a `LoomReclaim` has freed: the
    /// caller is using memory after its grace period.
    ///
    /// The loom suite's value type calls this on every read, which is how a model
    /// sees a value freed while a reader could still reach it.
    pub fn assert_not_freed<T: ?Sized>(ptr: *const T) {
        let addr = ptr.cast::<()>().addr();
        if freed_set().contains(&addr) {
            panic!("use after free: {addr:#x} was freed by the reclaimer and is still read");
        }
    }

    fn audit(&self) -> StdMutexGuard<'_, Audit> {
        self.audit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the graveyard back to the allocator. Caller made sure no guard is
    /// live (or the reclaimer is being dropped).
    fn bury(&self) -> Vec<Retired> {
        let mut audit = self.audit();
        let graveyard = core::mem::take(&mut audit.graveyard);
        let mut freed = freed_set();
        for retired in &graveyard {
            audit.records.remove(&retired.addr());
            freed.remove(&retired.addr());
        }
        graveyard
    }
}

impl Audit {
    fn retire(&mut self, retired: &Retired, first_later_guard: u64) {
        let kind = retired.kind();
        if !audited(kind) {
            return;
        }
        let record = Record {
            kind,
            first_later_guard,
            freed: false,
        };
        if self.records.insert(retired.addr(), record).is_some() {
            panic!(
                "{kind:?} {:#x} retired twice (it is freed once per retirement)",
                retired.addr()
            );
        }
    }

    fn protect(&mut self, guard: u64, addr: usize) {
        if let Some(record) = self.records.get(&addr) {
            let kind = record.kind;
            assert!(
                !record.freed,
                "guard {guard} reached {kind:?} {addr:#x} after it was freed"
            );
            assert!(
                guard < record.first_later_guard,
                "guard {guard} was pinned after {kind:?} {addr:#x} was retired, and still \
                 reached it: it was retired while reachable"
            );
        }
        self.protected.entry(guard).or_default().push(addr);
    }

    /// Guard `guard` was released; `ready` are freed now, `live` are the guards
    /// still live.
    fn release(&mut self, guard: u64, live: &[u64], ready: Vec<Retired>) {
        self.protected.remove(&guard);
        for retired in ready {
            let addr = retired.addr();
            if let Some(record) = self.records.get_mut(&addr) {
                for other in live {
                    let reached = self
                        .protected
                        .get(other)
                        .is_some_and(|addrs| addrs.contains(&addr));
                    assert!(
                        !reached,
                        "{:?} {addr:#x} freed while guard {other}, which reached it, is live",
                        record.kind
                    );
                }
                record.freed = true;
                freed_set().insert(addr);
            }
            self.graveyard.push(retired);
        }
    }
}

// A retired object is freed (moved to the graveyard, and given back to the
// allocator later still) only once every guard that was live at its retirement
// has been released: `Pending::waiting` holds exactly those guards. Guards pinned
// later are not waited for: they cannot reach an object unlinked before retiring,
// on this thread or another (pins and retirements take the scheme's lock, so an
// unlink that happened-before the retirement happens-before every later pin).
// SAFETY: the `Reclaim` grace period holds, as argued above.
unsafe impl Reclaim for LoomReclaim {
    type Guard<'a> = LoomGuard<'a>;

    fn pin(&self) -> LoomGuard<'_> {
        let mut scheme = sync::lock(&self.scheme);
        let id = scheme.next_guard;
        scheme.next_guard += 1;
        scheme.live.push(id);
        LoomGuard { reclaim: self, id }
    }

    /// With no guard live, gives every freed object back to the allocator and
    /// checks that nothing retired is still waiting.
    fn flush(&self) {
        let scheme = sync::lock(&self.scheme);
        if !scheme.live.is_empty() {
            return;
        }
        assert!(
            scheme.pending.is_empty(),
            "{} retired objects not freed although no guard is live",
            scheme.pending.len()
        );
        let graveyard = self.bury();
        drop(scheme);
        for retired in graveyard {
            // SAFETY: freed by the scheme (its guards are gone) and no guard is
            // live at all now; each is reclaimed once, having left the graveyard.
            unsafe { retired.reclaim() };
        }
    }
}

impl Drop for LoomReclaim {
    fn drop(&mut self) {
        // Guards borrow the reclaimer, so none is live: everything can go.
        let pending = core::mem::take(&mut sync::lock(&self.scheme).pending);
        debug_assert!(
            pending.is_empty() || std::thread::panicking(),
            "retired objects still waiting with no guard live"
        );
        let graveyard = self.bury();
        if std::thread::panicking() {
            // A model failed; what it reached may be in a broken state (a mutant
            // may have retired something still linked): leak rather than free.
            core::mem::forget((graveyard, pending));
            return;
        }
        for retired in graveyard
            .into_iter()
            .chain(pending.into_iter().map(|p| p.retired))
        {
            // SAFETY: no guard exists any more; each object is reclaimed once.
            unsafe { retired.reclaim() };
        }
    }
}

/// A pinned read of [`LoomReclaim`].
pub struct LoomGuard<'a> {
    reclaim: &'a LoomReclaim,
    id: u64,
}

impl core::fmt::Debug for LoomGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoomGuard").field("id", &self.id).finish()
    }
}

// SAFETY: see `Reclaim for LoomReclaim`: `retire` records the guards live now and
// the object is freed only after all of them are released.
unsafe impl Guard for LoomGuard<'_> {
    fn protect<T>(&self, src: &AtomicPtr<T>, order: Ordering) -> *mut T {
        let ptr = src.load(order);
        // Tag bits below the alignment (the read table's `amended` flag) are not
        // part of the address.
        let addr = ptr.addr() & !(align_of::<T>() - 1);
        self.reclaim.audit().protect(self.id, addr);
        ptr
    }

    unsafe fn retire(&self, retired: Retired) {
        let mut scheme = sync::lock(&self.reclaim.scheme);
        self.reclaim.audit().retire(&retired, scheme.next_guard);
        let waiting = scheme.live.clone();
        debug_assert!(
            waiting.contains(&self.id),
            "retire through a released guard"
        );
        scheme.pending.push(Pending { retired, waiting });
    }

    fn refresh(&mut self) {
        let reclaim = self.reclaim;
        // Released (freeing what only it kept), then a new guard in its place.
        *self = reclaim.pin();
    }
}

impl Drop for LoomGuard<'_> {
    fn drop(&mut self) {
        let mut scheme = sync::lock(&self.reclaim.scheme);
        let id = self.id;
        scheme.live.retain(|&guard| guard != id);
        let mut ready = Vec::new();
        let mut i = 0;
        while i < scheme.pending.len() {
            let pending = &mut scheme.pending[i];
            pending.waiting.retain(|&guard| guard != id);
            if pending.waiting.is_empty() {
                ready.push(scheme.pending.remove(i).retired);
            } else {
                i += 1;
            }
        }
        if std::thread::panicking() {
            // Unwinding from a model failure: keep the objects, skip the checks.
            self.reclaim.audit().graveyard.extend(ready);
            return;
        }
        self.reclaim.audit().release(id, &scheme.live, ready);
    }
}

/// Mutation testing of the loom suite (`--cfg loom_mutant`): whether the mutant
/// `name`, one of [`MUTANTS`], is the one the `LOOM_MUTANT` environment variable
/// selects. Each mutant weakens one ordering or skips one step of the protocol,
/// and the loom suite must find the failure it causes.
#[cfg(loom_mutant)]
pub(crate) fn mutant(name: &str) -> bool {
    static ACTIVE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    debug_assert!(MUTANTS.contains(&name), "unknown mutant {name}");
    let active = ACTIVE.get_or_init(|| {
        let active = std::env::var("LOOM_MUTANT").ok();
        if let Some(active) = &active {
            assert!(
                MUTANTS.contains(&active.as_str()),
                "unknown mutant {active}"
            );
        }
        active
    });
    active.as_deref() == Some(name)
}

/// Every mutant the protocol's code knows; `loom-tests/run.sh` runs each against
/// the model that must catch it.
#[cfg(loom_mutant)]
pub(crate) const MUTANTS: &[&str] = &[
    // SyncMap (v3).
    "slot_cas_failure_relaxed",
    "promote_skips_seal",
    "revive_ignores_seal",
    "observer_skips_touch",
    "root_publish_relaxed",
    "delta_insert_relaxed",
    "retire_published_root",
    "skip_replaced_retire",
    "grow_drops_node",
    "iter_skips_delta",
    "delta_not_closed",
    "delta_insert_skips_winner",
    "clear_skips_reopen",
    // ClassicSyncMap.
    "swap_ignores_expunged",
    "load_or_store_blind",
    "cas_failure_relaxed",
    "promote_relaxed",
    "revive_skips_dirty",
    "retire_published_table",
    "iter_skips_promotion",
];
