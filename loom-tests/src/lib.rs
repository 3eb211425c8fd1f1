//! Shared pieces of the loom models in `tests/`: the key and value types, the
//! map's operations as the models call them, and the model runner.
//!
//! Everything here runs the crate's own code: `readmostly` is built with
//! `--cfg loom`, so its atomics, mutex and `Arc` are loom's (through its `sync`
//! shim) and loom explores the interleavings of `SyncMap`'s real protocol.
//!
//! The key and value types make the model see what plain integers would hide:
//!
//! * Both keep their payload in a `loom::cell::UnsafeCell`, written when created
//!   and when dropped, read on every comparison or read. A thread that reads a
//!   key or value it has no happens-before edge to (it was published with too
//!   weak an ordering), or one that is dropped while read, makes loom report a
//!   causality violation.
//! * A value asks the loom reclaimer whether it was freed before every read
//!   ([`LoomReclaim::assert_not_freed`]), and carries a `loom::alloc::Track`, so a
//!   value never freed fails loom's leak check at the end of the execution.
#![cfg(loom)]

use core::fmt;
use core::hash::{BuildHasherDefault, Hash, Hasher};
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::time::Instant;

pub use loom;
use loom::alloc::Track;
use loom::cell::UnsafeCell;
use readmostly::classic::ClassicSyncMap;
#[cfg(crossbeam_loom)]
pub use readmostly::reclaim::CrossbeamEpoch;
pub use readmostly::reclaim::{LoomReclaim, Reclaim};
use readmostly::{LoadOrStore, Stats, SyncMap};

/// Written into a key or value when it is dropped.
const POISON: u64 = 0xdead_dead_dead_dead;

/// A map key: `id` for hashing, the same number in a loom cell for comparing.
pub struct Key {
    id: u64,
    cell: UnsafeCell<u64>,
}

impl Key {
    pub fn new(id: u64) -> Self {
        Key {
            id,
            cell: UnsafeCell::new(id),
        }
    }

    fn read(&self) -> u64 {
        // SAFETY: the cell is written only at creation and in `drop` (with
        // `&mut self`); loom checks that this read is ordered after both.
        let id = self.cell.with(|p| unsafe { *p });
        assert_ne!(id, POISON, "read of a dropped key");
        id
    }
}

// SAFETY: the cell is only read through `&self` (written under `&mut self`), and
// loom checks every access.
unsafe impl Sync for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The caller's own key: `id` is plain data, no need to go through loom.
        self.id.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.read() == other.read()
    }
}

impl Eq for Key {}

impl Clone for Key {
    /// A new cell with the same number (reading this one, so loom checks it).
    fn clone(&self) -> Self {
        Key::new(self.read())
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: exclusive access.
        self.cell.with_mut(|p| unsafe { *p = POISON });
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// A map value: a number in a loom cell, tracked for leaks.
pub struct Val {
    cell: UnsafeCell<u64>,
    _track: Track<()>,
}

impl Val {
    pub fn new(value: u64) -> Self {
        Val {
            cell: UnsafeCell::new(value),
            _track: Track::new(()),
        }
    }

    /// The number; panics (a model failure) if the reclaimer freed this value.
    pub fn get(&self) -> u64 {
        LoomReclaim::assert_not_freed(self);
        // SAFETY: as for `Key::read`.
        let value = self.cell.with(|p| unsafe { *p });
        assert_ne!(value, POISON, "read of a dropped value");
        value
    }
}

// SAFETY: as for `Key`.
unsafe impl Sync for Val {}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Clone for Val {
    /// A new, separately tracked value with the same number.
    fn clone(&self) -> Self {
        Val::new(self.get())
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        // SAFETY: exclusive access.
        self.cell.with_mut(|p| unsafe { *p = POISON });
    }
}

impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: as for `Key::read`.
        write!(f, "Val({})", self.cell.with(|p| unsafe { *p }))
    }
}

/// A progress probe: a thread `mark`s how far it got, another reads it with
/// `seen`, both `Relaxed`, so the probe creates no happens-before edge that could
/// hide a missing one in the map.
///
/// Why a model needs it: loom's partial-order reduction only looks at the last
/// access to each atomic when it decides where another thread must be tried, so
/// "the writer runs its whole sequence between two steps of the reader" can go
/// unexplored when the writer touches the same atomic several times first (as a
/// promotion does with the read pointer). A relaxed load of the writer's progress
/// between the reader's steps is a direct conflict with the writer's last store,
/// which makes loom try the writer to completion there. It also lets a model
/// assert real-time order: a reader that saw an operation finish must see its
/// effect.
pub struct Progress(loom::sync::atomic::AtomicUsize);

impl Progress {
    pub fn new() -> loom::sync::Arc<Self> {
        loom::sync::Arc::new(Progress(loom::sync::atomic::AtomicUsize::new(0)))
    }

    pub fn mark(&self, step: usize) {
        self.0.store(step, loom::sync::atomic::Ordering::Relaxed);
    }

    pub fn seen(&self) -> usize {
        self.0.load(loom::sync::atomic::Ordering::Relaxed)
    }
}

/// SipHash with fixed keys: hashing (so table layout and iteration order) must
/// be the same in every execution of a model.
pub type FixedHasher = BuildHasherDefault<DefaultHasher>;

/// `SyncMap` (the v3 protocol: inline read table + lock-free delta, sealing
/// promotions) under test.
pub type V3<R> = SyncMap<Key, Val, FixedHasher, R>;
/// `ClassicSyncMap` (Go's protocol: read table + locked dirty table) under test.
pub type Classic<R> = ClassicSyncMap<Key, Val, FixedHasher, R>;

/// The operations the models use, for both maps. Each call pins for itself (as
/// the owned-value API does) and creates its key and value after pinning, so that
/// the pin's synchronization carries nothing about them to other threads.
#[allow(clippy::len_without_is_empty)] // mirrors the maps' API
pub trait ModelMap: Send + Sync + Sized + 'static {
    /// An empty map.
    fn build() -> Self;
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64) -> Option<u64>;
    fn remove(&self, k: u64) -> Option<u64>;
    /// `get_or_insert`: (whether this call stored, the value it returned).
    fn get_or_insert(&self, k: u64, v: u64) -> (bool, u64);
    /// One iteration: the (key, value) pairs in the order yielded.
    fn iterate(&self) -> Vec<(u64, u64)>;
    /// Reads `keys` in order under one guard, calling `before(i)` before the
    /// `i`-th read; then reads every value found again, still under the guard
    /// (whatever was retired meanwhile must still be readable).
    fn read_under_one_guard(&self, keys: &[u64], before: impl FnMut(usize)) -> Vec<Option<u64>>;
    fn len(&self) -> usize;
    fn promote(&self);
    fn clear(&self);
    fn flush(&self);
    fn stats(&self) -> Stats;
    /// Whether the map's reclaimer is the loom backend.
    fn loom_backend() -> bool;
    /// Whether this is `ClassicSyncMap` (whose promotions follow misses and whose
    /// new keys build a dirty table) rather than `SyncMap`.
    const CLASSIC: bool;
    /// `compare_exchange`: `Ok(replaced)` or `Err(found instead)`. `SyncMap` only.
    fn compare_exchange(&self, _k: u64, _current: u64, _new: u64) -> Result<u64, Option<u64>> {
        unimplemented!("ClassicSyncMap has no compare_exchange")
    }
}

macro_rules! model_map {
    ($map:ident, $classic:literal, { $($extra:tt)* }) => {
        impl<R: Reclaim> ModelMap for $map<R> {
            const CLASSIC: bool = $classic;

            $($extra)*

            fn build() -> Self {
                Self::with_hasher_and_reclaim(FixedHasher::default(), R::default())
            }

            fn get(&self, k: u64) -> Option<u64> {
                let pinned = self.pin();
                let found = pinned.get(&Key::new(k)).map(Val::get);
                found
            }

            fn insert(&self, k: u64, v: u64) -> Option<u64> {
                let pinned = self.pin();
                let old = pinned.insert(Key::new(k), Val::new(v)).map(Val::get);
                old
            }

            fn remove(&self, k: u64) -> Option<u64> {
                let pinned = self.pin();
                let old = pinned.remove(&Key::new(k)).map(Val::get);
                old
            }

            fn get_or_insert(&self, k: u64, v: u64) -> (bool, u64) {
                let pinned = self.pin();
                let result = match pinned.get_or_insert(Key::new(k), Val::new(v)) {
                    LoadOrStore::Stored(v) => (true, v.get()),
                    LoadOrStore::Loaded(v) => (false, v.get()),
                };
                result
            }

            fn iterate(&self) -> Vec<(u64, u64)> {
                let pinned = self.pin();
                let pairs = iter_of!($map, pinned)
                    .map(|(k, v)| (k.read(), v.get()))
                    .collect();
                pairs
            }

            fn read_under_one_guard(
                &self,
                keys: &[u64],
                mut before: impl FnMut(usize),
            ) -> Vec<Option<u64>> {
                let pinned = self.pin();
                let mut found = Vec::new();
                for (i, &k) in keys.iter().enumerate() {
                    before(i);
                    found.push(pinned.get(&Key::new(k)));
                }
                let values: Vec<Option<u64>> = found.iter().map(|v| v.map(Val::get)).collect();
                for (again, value) in found.iter().zip(&values) {
                    assert_eq!(again.map(Val::get), *value, "a value changed under a guard");
                }
                values
            }

            fn len(&self) -> usize {
                $map::len(self)
            }

            fn promote(&self) {
                $map::promote(self)
            }

            fn clear(&self) {
                $map::clear(self)
            }

            fn flush(&self) {
                $map::flush(self)
            }

            fn stats(&self) -> Stats {
                $map::stats(self)
            }

            fn loom_backend() -> bool {
                core::any::TypeId::of::<R>() == core::any::TypeId::of::<LoomReclaim>()
            }
        }
    };
}

macro_rules! iter_of {
    (V3, $pinned:ident) => {
        $pinned.iter()
    };
    (Classic, $pinned:ident) => {
        $pinned.entries().into_iter()
    };
}

model_map!(V3, false, {
    fn compare_exchange(&self, k: u64, current: u64, new: u64) -> Result<u64, Option<u64>> {
        let pinned = self.pin();
        let current = Val::new(current);
        let result = match pinned.compare_exchange(&Key::new(k), &current, Val::new(new)) {
            Ok(old) => Ok(old.get()),
            Err(err) => Err(err.current.map(Val::get)),
        };
        result
    }
});
model_map!(Classic, true, {});

/// A map holding `read` in its read table (promoted) and then `added` as keys
/// added since (in the delta, or in the dirty table with `amended` set).
pub fn setup<M: ModelMap>(read: &[(u64, u64)], added: &[(u64, u64)]) -> loom::sync::Arc<M> {
    let map = M::build();
    for &(k, v) in read {
        map.insert(k, v);
    }
    if !read.is_empty() {
        map.promote();
    }
    for &(k, v) in added {
        map.insert(k, v);
    }
    loom::sync::Arc::new(map)
}

/// End-of-model checks, with every other thread joined: the map holds exactly
/// `expected`, iteration yields each key once, every key survives a promotion,
/// and once every guard is gone everything retired has been freed.
pub fn check_quiescent<M: ModelMap>(map: &M, expected: &[(u64, u64)]) {
    let expected: BTreeMap<u64, u64> = expected.iter().copied().collect();
    for (&k, &v) in &expected {
        assert_eq!(map.get(k), Some(v), "key {k} before promotion");
    }
    let pairs = map.iterate();
    let seen: BTreeMap<u64, u64> = pairs.iter().copied().collect();
    assert_eq!(seen.len(), pairs.len(), "a key iterated twice: {pairs:?}");
    assert_eq!(seen, expected, "iteration");
    assert_eq!(map.len(), expected.len(), "len");
    map.promote();
    for (&k, &v) in &expected {
        assert_eq!(map.get(k), Some(v), "key {k} after promotion");
    }
    // Every retired object is freed once no guard is live. The loom backend
    // frees at the last release (its `flush` also checks that nothing is left
    // waiting); crossbeam-epoch needs a few epoch advances, and whatever it still
    // holds at the end of the execution is freed when its collector is dropped,
    // which loom's leak check verifies.
    for _ in 0..4 {
        map.flush();
        if map.stats().pending == 0 {
            break;
        }
    }
    if M::loom_backend() {
        let stats = map.stats();
        assert_eq!(stats.pending, 0, "retired but not freed: {stats:?}");
    }
}

/// Runs `model` under loom with at most `preemptions` preemptions per execution
/// (`None`: unbounded; `LOOM_MAX_PREEMPTIONS` overrides it), and prints the
/// bound, the number of executions explored and the wall time.
pub fn check<F>(name: &str, preemptions: Option<usize>, model: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = preemptions;
    }
    // Long single-threaded stretches (setup, the end checks, crossbeam-epoch's
    // internals) count towards loom's path length; the default of 1000 is too
    // short for them. It bounds no interleaving.
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        builder.max_branches = 100_000;
    }
    let bound = builder.preemption_bound;
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    let bound = bound.map_or_else(|| "none".to_string(), |b| b.to_string());
    println!(
        "loom-model {name}: preemption bound {bound}, {} executions, {:.2}s",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
}

/// Declares the tests of models: each `fn name<M: ModelMap>()` runs on each map
/// (`v3` = `SyncMap`, `classic` = `ClassicSyncMap`) and backend (`loom` =
/// `LoomReclaim`; `crossbeam` = `CrossbeamEpoch`, only with `--cfg
/// crossbeam_loom`) listed, as the test `name::map::backend`, each with its
/// preemption bound (a number, or `unbounded`).
#[macro_export]
macro_rules! models {
    ($($model:ident: $($map:ident { $($backend:ident $bound:tt),+ })+;)*) => {
        $(
            mod $model {
                $(
                    mod $map {
                        $( $crate::models!(@test $model $map $backend $bound); )+
                    }
                )+
            }
        )*
    };
    (@test $model:ident $map:ident loom $bound:tt) => {
        #[test]
        fn loom() {
            $crate::check(
                concat!(stringify!($model), "::", stringify!($map), "::loom"),
                $crate::models!(@bound $bound),
                super::super::$model::<$crate::models!(@map $map $crate::LoomReclaim)>,
            );
        }
    };
    (@test $model:ident $map:ident crossbeam $bound:tt) => {
        #[cfg(crossbeam_loom)]
        #[test]
        fn crossbeam() {
            $crate::check(
                concat!(stringify!($model), "::", stringify!($map), "::crossbeam"),
                $crate::models!(@bound $bound),
                super::super::$model::<$crate::models!(@map $map $crate::CrossbeamEpoch)>,
            );
        }
    };
    (@bound unbounded) => { None };
    (@bound $bound:literal) => { Some($bound) };
    (@map v3 $reclaim:path) => { $crate::V3<$reclaim> };
    (@map classic $reclaim:path) => { $crate::Classic<$reclaim> };
}
