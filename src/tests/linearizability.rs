//! Linearizability checking: thousands of recorded concurrent histories of each
//! map, checked against the sequential specification of a map.
//!
//! Each history runs 4–8 threads over a small key space (4 keys), every thread
//! doing a random mix of the map's operations. Every operation is stamped from a
//! global counter just before its call and just after its return, and its
//! arguments and result are logged. The history is then split per key (a history
//! is linearizable iff every per-key sub-history is: linearizability is
//! compositional) and each sub-history is searched for a legal linearization with
//! the Wing–Gong–Lowe algorithm (`linearizability/checker.rs`) against the
//! specification (`linearizability/spec.rs`).
//!
//! Subjects: `SyncMap` with every reclamation backend of this build (and with a
//! constant hasher, where every key collides), `ClassicSyncMap` (its reduced
//! API), `SnapshotMap`, and two
//! deliberately broken wrappers around `SyncMap` (one returns stale values, one
//! loses inserts), which the checker must reject, to show it can fail.
//!
//! Sizing: `READMOSTLY_LIN_HISTORIES` histories per subject (default 200; CI's
//! reliability tier runs 5,000 with the crate optimized), `READMOSTLY_LIN_SEED` for the
//! operation mixes. Interleavings differ from run to run. Each test prints what it
//! checked; run with `--nocapture` to see it.
//!
//! To add a subject (a new backend is a type alias like `SyncCrossbeam`; a new
//! map implements [`Subject`], see `SyncSubject`), add a test calling
//! [`check_subject`].

mod common;

#[path = "linearizability/checker.rs"]
mod checker;
#[path = "linearizability/history.rs"]
mod history;
#[path = "linearizability/spec.rs"]
mod spec;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use common::Rng;
use history::{tick, Event, Recorder};
use readmostly::classic::{ClassicPinned, ClassicSyncMap};
#[cfg(feature = "crossbeam-epoch")]
use readmostly::reclaim::CrossbeamEpoch;
use readmostly::reclaim::Reclaim;
#[cfg(feature = "seize")]
use readmostly::reclaim::Seize;
use readmostly::{LoadOrStore, Pinned, Snapshot, SnapshotMap, SyncMap};
use spec::{bump, keep, KeyOp, Ret, Value};

/// Keys per history: few, so that operations collide on every key.
const KEYS: u8 = 4;
/// Operations per thread per history.
const OPS_PER_THREAD: usize = 64;

// ---------------------------------------------------------------------------
// The harness.
// ---------------------------------------------------------------------------

/// One thread's state while it runs a history.
pub struct Worker {
    pub rng: Rng,
    pub log: Recorder,
    /// Writes of this thread so far; makes every written value unique.
    seq: u64,
    /// The last value this thread saw or wrote for each key (for the expected
    /// values of compare-exchanges and conditional removes).
    seen: [Option<Value>; KEYS as usize],
}

impl Worker {
    fn new(thread: usize, seed: u64) -> Self {
        Worker {
            rng: Rng::new(seed),
            log: Recorder::new(thread),
            seq: 0,
            seen: [None; KEYS as usize],
        }
    }

    pub fn key(&mut self) -> u8 {
        self.rng.below(u64::from(KEYS)) as u8
    }

    /// A value no other write of the history writes.
    pub fn fresh(&mut self) -> Value {
        self.seq += 1;
        ((self.log.thread as u64 + 1) << 48) | (self.seq << 8) | self.rng.below(256)
    }

    /// An expected value for a conditional operation: usually the last one seen.
    pub fn expected(&mut self, key: u8) -> Value {
        match self.seen[key as usize] {
            Some(v) if !self.rng.one_in(4) => v,
            _ => self.fresh(),
        }
    }

    /// Logs one operation on one key and remembers what it showed.
    pub fn record(&mut self, call: u64, ret: u64, key: u8, op: KeyOp, result: Ret) {
        let seen = match (&op, &result) {
            (KeyOp::Insert(v), _) => Some(*v),
            (_, Ret::Val(v)) => *v,
            (_, Ret::LoadOrStore { value, .. }) => Some(*value),
            (KeyOp::CompareExchange { new, .. }, Ret::Cas(Ok(_))) => Some(*new),
            (_, Ret::Cas(Err(v))) => *v,
            _ => None,
        };
        if seen.is_some() {
            self.seen[key as usize] = seen;
        }
        self.log.record(call, ret, key, op, result);
    }

    /// Lets the other threads in: on 2 cores, most interleavings come from
    /// preemption, and yielding between operations adds more of them.
    fn pause(&mut self) {
        match self.rng.below(64) {
            0 => thread::yield_now(),
            1..=4 => {
                for _ in 0..self.rng.below(100) {
                    std::hint::spin_loop();
                }
            }
            _ => {}
        }
    }
}

/// A map under test, with its operation mix.
pub trait Subject: Sync + Sized {
    /// Per-thread state borrowing the map (a held guard, a held snapshot).
    type Ctx<'a>
    where
        Self: 'a;

    fn new() -> Self;
    fn ctx(&self) -> Self::Ctx<'_>;
    /// Performs one random operation and records its effect on each key.
    fn step<'a>(&'a self, ctx: &mut Self::Ctx<'a>, w: &mut Worker);
}

/// What checking a subject's histories found.
#[derive(Debug, Default)]
struct Summary {
    histories: usize,
    key_histories: usize,
    ops: usize,
    max_configurations: usize,
    /// Operations overlapping an operation of another thread on the same key
    /// (the ones whose order the checker had to search for).
    overlapping: usize,
    /// Reports of non-linearizable per-key histories (at most a few kept).
    violations: Vec<String>,
    violating_histories: usize,
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    })
}

/// Histories per subject.
fn histories() -> usize {
    if cfg!(miri) {
        return 2;
    }
    env_usize("READMOSTLY_LIN_HISTORIES").unwrap_or(200)
}

fn base_seed() -> u64 {
    env_usize("READMOSTLY_LIN_SEED").unwrap_or(0x5EED) as u64
}

/// Records one history of `M`: `threads` threads doing `ops` operations each.
fn record<M: Subject>(seed: u64, threads: usize, ops: usize) -> Vec<Event> {
    let map = M::new();
    // A spinning start line: threads parked on a `Barrier` wake one by one, tens
    // of microseconds apart, which is longer than a whole short history.
    let start = AtomicUsize::new(0);
    let logs: Vec<Recorder> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (map, start) = (&map, &start);
                s.spawn(move || {
                    let mut w = Worker::new(t, seed ^ (t as u64 + 1).wrapping_mul(0xA5A5_5A5A));
                    let mut ctx = map.ctx();
                    start.fetch_add(1, Ordering::SeqCst);
                    let mut spins = 0u32;
                    while start.load(Ordering::SeqCst) < threads {
                        spins += 1;
                        if spins.is_multiple_of(64) {
                            thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                    for _ in 0..ops {
                        w.pause();
                        map.step(&mut ctx, &mut w);
                    }
                    drop(ctx);
                    w.log
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    logs.into_iter().flat_map(|log| log.events).collect()
}

/// Records and checks `n` histories of `M`.
fn run<M: Subject>(n: usize, seed: u64, ops: usize) -> Summary {
    let mut summary = Summary::default();
    for i in 0..n {
        let threads = 4 + i % 5; // 4..=8
        let events = record::<M>(seed.wrapping_add(i as u64 * 0x9E37), threads, ops);
        summary.histories += 1;
        let mut violated = false;
        for (key, sub) in history::per_key(events) {
            summary.key_histories += 1;
            summary.ops += sub.len();
            summary.overlapping += overlapping(&sub);
            match checker::check_key(key, &sub) {
                Ok(checked) => {
                    summary.max_configurations =
                        summary.max_configurations.max(checked.configurations);
                }
                Err(report) => {
                    violated = true;
                    if summary.violations.len() < 3 {
                        summary
                            .violations
                            .push(format!("history {i} ({threads} threads): {report}"));
                    }
                }
            }
        }
        summary.violating_histories += usize::from(violated);
    }
    summary
}

/// Operations of `events` whose interval overlaps one of another thread's.
fn overlapping(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|a| {
            events
                .iter()
                .any(|b| b.thread != a.thread && b.call < a.ret && a.call < b.ret)
        })
        .count()
}

/// Checks `histories()` histories of `M` and fails with the first violations.
fn check_subject<M: Subject>(name: &str) {
    let n = histories();
    let ops = if cfg!(miri) { 6 } else { OPS_PER_THREAD };
    let summary = run::<M>(n, base_seed(), ops);
    println!(
        "linearizability {name}: {} histories (4-8 threads, {KEYS} keys), {} per-key \
         histories, {} operations checked ({}% overlapping another thread's), at most {} \
         configurations searched, {} violations",
        summary.histories,
        summary.key_histories,
        summary.ops,
        summary.overlapping * 100 / summary.ops.max(1),
        summary.max_configurations,
        summary.violating_histories
    );
    assert!(
        summary.violations.is_empty(),
        "{name}: {} of {} histories are not linearizable; first ones:\n{}",
        summary.violating_histories,
        summary.histories,
        summary.violations.join("\n")
    );
}

/// Checks histories of a deliberately broken `M` and requires the checker to
/// reject some: a checker that never fails proves nothing.
fn check_broken<M: Subject>(name: &str) {
    // Under Miri, fewer but longer histories: a broken map must get the chance
    // to show it.
    let (n, ops) = if cfg!(miri) {
        (2, 24)
    } else {
        (50, OPS_PER_THREAD)
    };
    let summary = run::<M>(n, base_seed(), ops);
    println!(
        "linearizability {name} (broken on purpose): {} of {} histories rejected",
        summary.violating_histories, summary.histories
    );
    if let Some(first) = summary.violations.first() {
        println!("first rejection:\n{first}");
    }
    assert!(
        summary.violating_histories > 0,
        "{name}: the checker accepted {} histories of a broken map",
        summary.histories
    );
}

// ---------------------------------------------------------------------------
// SyncMap.
// ---------------------------------------------------------------------------

/// `SyncMap<u8, u64>` with hasher `S` and reclamation backend `R`.
pub struct SyncSubject<S, R: Reclaim> {
    map: SyncMap<u8, u64, S, R>,
}

impl<S, R> SyncSubject<S, R>
where
    S: BuildHasher + Default + Sync + Send,
    R: Reclaim + Default,
{
    /// One random `SyncMap` operation through `pinned`.
    fn op(&self, pinned: &Pinned<'_, u8, u64, S, R>, w: &mut Worker) {
        let map = &self.map;
        let k = w.key();
        let (call, op, result, ret);
        match w.rng.below(100) {
            0..=19 => {
                op = KeyOp::Get;
                call = tick();
                result = Ret::Val(pinned.get(&k).copied());
                ret = tick();
            }
            20..=24 => {
                op = KeyOp::Get;
                call = tick();
                result = Ret::Val(map.get_cloned(&k));
                ret = tick();
            }
            25..=29 => {
                op = KeyOp::Contains;
                call = tick();
                result = Ret::Bool(pinned.contains_key(&k));
                ret = tick();
            }
            30..=39 => {
                let v = w.fresh();
                op = KeyOp::Insert(v);
                call = tick();
                result = Ret::Val(pinned.insert(k, v).copied());
                ret = tick();
            }
            40..=44 => {
                let v = w.fresh();
                op = KeyOp::Insert(v);
                call = tick();
                result = Ret::Val(map.insert(k, v));
                ret = tick();
            }
            45..=51 => {
                op = KeyOp::Remove;
                call = tick();
                result = Ret::Val(pinned.remove(&k).copied());
                ret = tick();
            }
            52..=54 => {
                op = KeyOp::Remove;
                call = tick();
                result = Ret::Val(map.remove(&k));
                ret = tick();
            }
            55..=62 => {
                let v = w.fresh();
                let with = w.rng.one_in(2);
                op = KeyOp::GetOrInsert(v);
                call = tick();
                let r = if with {
                    pinned.get_or_insert_with(k, || v)
                } else {
                    pinned.get_or_insert(k, v)
                };
                result = match r {
                    LoadOrStore::Loaded(x) => Ret::LoadOrStore {
                        stored: false,
                        value: *x,
                    },
                    LoadOrStore::Stored(x) => Ret::LoadOrStore {
                        stored: true,
                        value: *x,
                    },
                };
                ret = tick();
            }
            63..=76 => {
                let (expected, new) = (w.expected(k), w.fresh());
                op = KeyOp::CompareExchange { expected, new };
                call = tick();
                result = Ret::Cas(
                    pinned
                        .compare_exchange(&k, &expected, new)
                        .copied()
                        .map_err(|e| e.current.copied()),
                );
                ret = tick();
            }
            77..=84 => {
                let tag = w.fresh();
                op = KeyOp::Update(tag);
                call = tick();
                result = Ret::Val(pinned.update(&k, |v| bump(*v, tag)).copied());
                ret = tick();
            }
            85..=92 => {
                let expected = w.expected(k);
                op = KeyOp::RemoveIf(expected);
                call = tick();
                result = Ret::Val(pinned.remove_if(&k, |v| *v == expected).copied());
                ret = tick();
            }
            93..=94 => {
                // Multi-key: acts on every key at one instant each.
                let call = tick();
                if w.rng.one_in(2) {
                    pinned.clear();
                } else {
                    map.clear();
                }
                let ret = tick();
                for key in 0..KEYS {
                    w.record(call, ret, key, KeyOp::Clear, Ret::Unit);
                }
                return;
            }
            95..=96 => {
                let call = tick();
                if w.rng.one_in(2) {
                    pinned.retain(|_, v| keep(*v));
                } else {
                    map.retain(|_, v| keep(*v));
                }
                let ret = tick();
                for key in 0..KEYS {
                    w.record(call, ret, key, KeyOp::Retain, Ret::Unit);
                }
                return;
            }
            _ => {
                // No effect on any key's value: only on the tables' layout.
                map.promote();
                if w.rng.one_in(4) {
                    map.flush();
                }
                return;
            }
        }
        w.record(call, ret, k, op, result);
    }
}

impl<S, R> Subject for SyncSubject<S, R>
where
    S: BuildHasher + Default + Sync + Send,
    R: Reclaim + Default,
{
    /// A guard held across several operations, or none.
    type Ctx<'a>
        = Option<Pinned<'a, u8, u64, S, R>>
    where
        Self: 'a;

    fn new() -> Self {
        SyncSubject {
            map: SyncMap::with_hasher_and_reclaim(S::default(), R::default()),
        }
    }

    fn ctx(&self) -> Self::Ctx<'_> {
        None
    }

    fn step<'a>(&'a self, ctx: &mut Self::Ctx<'a>, w: &mut Worker) {
        // Sometimes hold one guard across operations (other threads' retired
        // values must stay valid meanwhile), sometimes pin per operation.
        if w.rng.one_in(6) {
            *ctx = match ctx.take() {
                Some(_) => None,
                None => Some(self.map.pin()),
            };
        }
        match ctx {
            Some(pinned) => self.op(pinned, w),
            None => self.op(&self.map.pin(), w),
        }
    }
}

/// Every key hashes to the same value: one long probe chain.
#[derive(Clone, Copy, Default)]
pub struct ConstantHasher;

impl Hasher for ConstantHasher {
    fn finish(&self) -> u64 {
        0x0123_4567_89AB_CDEF
    }
    fn write(&mut self, _: &[u8]) {}
}

impl BuildHasher for ConstantHasher {
    type Hasher = ConstantHasher;
    fn build_hasher(&self) -> ConstantHasher {
        ConstantHasher
    }
}

// ---------------------------------------------------------------------------
// ClassicSyncMap (the v1 protocol, kept for comparison).
// ---------------------------------------------------------------------------

/// `ClassicSyncMap<u8, u64>` with backend `R`: its reduced API.
pub struct ClassicSubject<R: Reclaim> {
    map: ClassicSyncMap<u8, u64, RandomState, R>,
}

impl<R: Reclaim + Default> ClassicSubject<R> {
    fn op(&self, pinned: &ClassicPinned<'_, u8, u64, RandomState, R>, w: &mut Worker) {
        let map = &self.map;
        let k = w.key();
        let (call, op, result, ret);
        match w.rng.below(100) {
            0..=29 => {
                op = KeyOp::Get;
                call = tick();
                result = Ret::Val(pinned.get(&k).copied());
                ret = tick();
            }
            30..=44 => {
                let v = w.fresh();
                op = KeyOp::Insert(v);
                call = tick();
                result = Ret::Val(pinned.insert(k, v).copied());
                ret = tick();
            }
            45..=52 => {
                let v = w.fresh();
                op = KeyOp::Insert(v);
                call = tick();
                result = Ret::Val(map.insert(k, v));
                ret = tick();
            }
            53..=62 => {
                op = KeyOp::Remove;
                call = tick();
                result = Ret::Val(pinned.remove(&k).copied());
                ret = tick();
            }
            63..=67 => {
                op = KeyOp::Remove;
                call = tick();
                result = Ret::Val(map.remove(&k));
                ret = tick();
            }
            68..=79 => {
                let v = w.fresh();
                op = KeyOp::GetOrInsert(v);
                call = tick();
                result = match pinned.get_or_insert(k, v) {
                    LoadOrStore::Loaded(x) => Ret::LoadOrStore {
                        stored: false,
                        value: *x,
                    },
                    LoadOrStore::Stored(x) => Ret::LoadOrStore {
                        stored: true,
                        value: *x,
                    },
                };
                ret = tick();
            }
            80..=92 => {
                let tag = w.fresh();
                op = KeyOp::Update(tag);
                call = tick();
                result = Ret::Val(pinned.update(&k, |v| bump(*v, tag)).copied());
                ret = tick();
            }
            93..=94 => {
                let call = tick();
                map.clear();
                let ret = tick();
                for key in 0..KEYS {
                    w.record(call, ret, key, KeyOp::Clear, Ret::Unit);
                }
                return;
            }
            _ => {
                map.promote();
                if w.rng.one_in(4) {
                    map.flush();
                }
                return;
            }
        }
        w.record(call, ret, k, op, result);
    }
}

impl<R: Reclaim + Default> Subject for ClassicSubject<R> {
    type Ctx<'a>
        = Option<ClassicPinned<'a, u8, u64, RandomState, R>>
    where
        Self: 'a;

    fn new() -> Self {
        ClassicSubject {
            map: ClassicSyncMap::with_hasher_and_reclaim(RandomState::new(), R::default()),
        }
    }

    fn ctx(&self) -> Self::Ctx<'_> {
        None
    }

    fn step<'a>(&'a self, ctx: &mut Self::Ctx<'a>, w: &mut Worker) {
        if w.rng.one_in(6) {
            *ctx = match ctx.take() {
                Some(_) => None,
                None => Some(self.map.pin()),
            };
        }
        match ctx {
            Some(pinned) => self.op(pinned, w),
            None => self.op(&self.map.pin(), w),
        }
    }
}

// ---------------------------------------------------------------------------
// SnapshotMap.
// ---------------------------------------------------------------------------

pub struct SnapshotSubject {
    map: SnapshotMap<u8, u64>,
}

/// A snapshot a thread holds on to, with the stamps of the call that took it.
pub struct HeldSnapshot {
    snapshot: Snapshot<u8, u64>,
    call: u64,
    ret: u64,
}

impl HeldSnapshot {
    /// Reads every key of the snapshot: each read is of the version current
    /// when `snapshot()` ran, so it carries that call's stamps.
    fn read_all(&self, w: &mut Worker) {
        for key in 0..KEYS {
            let value = if w.rng.one_in(2) {
                self.snapshot.get(&key).copied()
            } else {
                self.snapshot
                    .iter()
                    .find(|(k, _)| **k == key)
                    .map(|(_, v)| *v)
            };
            w.record(self.call, self.ret, key, KeyOp::Get, Ret::Val(value));
        }
    }
}

/// A batch's steps: (key, operation, result) in order.
type Steps = Vec<(u8, KeyOp, Ret)>;

impl SnapshotSubject {
    /// A batch of 1–4 random steps; its per-key projections are atomic.
    fn batch(&self, w: &mut Worker) {
        let steps = 1 + w.rng.below(4) as usize;
        let plan: Vec<(u8, u64, Value)> = (0..steps)
            .map(|_| (w.key(), w.rng.below(5), w.fresh()))
            .collect();
        let abort = w.rng.one_in(8);
        let call = tick();
        let outcome: Result<Steps, Steps> = self.map.try_batch(|txn| {
            let mut done = Vec::new();
            for &(k, kind, v) in &plan {
                let (op, ret) = match kind {
                    0 => (KeyOp::Get, Ret::Val(txn.get(&k).copied())),
                    1 => (KeyOp::Insert(v), Ret::Val(txn.insert(k, v))),
                    2 => (KeyOp::Remove, Ret::Val(txn.remove(&k))),
                    3 => (
                        KeyOp::Update(v),
                        Ret::Val(txn.update(&k, |old| bump(*old, v)).copied()),
                    ),
                    _ => (KeyOp::Contains, Ret::Bool(txn.contains_key(&k))),
                };
                done.push((k, op, ret));
            }
            if abort {
                Err(done)
            } else {
                Ok(done)
            }
        });
        let ret = tick();
        let (steps, aborted) = match outcome {
            Ok(steps) => (steps, false),
            Err(steps) => (steps, true),
        };
        for key in 0..KEYS {
            let mine: Vec<(KeyOp, Ret)> = steps
                .iter()
                .filter(|(k, ..)| *k == key)
                .map(|(_, op, ret)| (op.clone(), ret.clone()))
                .collect();
            if mine.is_empty() {
                continue;
            }
            if aborted {
                // Nothing was published; what the batch read of the base version
                // before its first write to the key still happened.
                let reads: Vec<(KeyOp, Ret)> = mine
                    .into_iter()
                    .take_while(|(op, _)| matches!(op, KeyOp::Get | KeyOp::Contains))
                    .collect();
                if !reads.is_empty() {
                    w.record(call, ret, key, KeyOp::Atomic(reads), Ret::Unit);
                }
            } else {
                w.record(call, ret, key, KeyOp::Atomic(mine), Ret::Unit);
            }
        }
    }
}

impl Subject for SnapshotSubject {
    type Ctx<'a> = Option<HeldSnapshot>;

    fn new() -> Self {
        SnapshotSubject {
            map: SnapshotMap::new(),
        }
    }

    fn ctx(&self) -> Option<HeldSnapshot> {
        None
    }

    fn step(&self, held: &mut Option<HeldSnapshot>, w: &mut Worker) {
        let map = &self.map;
        let k = w.key();
        let (call, op, result, ret);
        match w.rng.below(100) {
            0..=14 => {
                op = KeyOp::Get;
                call = tick();
                result = Ret::Val(map.get(&k).map(|r| *r));
                ret = tick();
            }
            15..=19 => {
                op = KeyOp::Get;
                call = tick();
                result = Ret::Val(map.get_cloned(&k));
                ret = tick();
            }
            20..=24 => {
                op = KeyOp::Contains;
                call = tick();
                result = Ret::Bool(map.contains_key(&k));
                ret = tick();
            }
            25..=39 => {
                let v = w.fresh();
                op = KeyOp::Insert(v);
                call = tick();
                result = Ret::Val(map.insert(k, v));
                ret = tick();
            }
            40..=49 => {
                op = KeyOp::Remove;
                call = tick();
                result = Ret::Val(map.remove(&k));
                ret = tick();
            }
            50..=59 => {
                let tag = w.fresh();
                op = KeyOp::Update(tag);
                call = tick();
                result = Ret::Val(map.update(&k, |v| bump(*v, tag)));
                ret = tick();
            }
            60..=74 => return self.batch(w),
            75..=79 => {
                let mut contents: Vec<(u8, Value)> = Vec::new();
                for key in 0..KEYS {
                    if w.rng.one_in(2) {
                        contents.push((key, w.fresh()));
                    }
                }
                let call = tick();
                drop(map.replace_all(contents.iter().copied()));
                let ret = tick();
                for key in 0..KEYS {
                    let v = contents.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
                    w.record(call, ret, key, KeyOp::Set(v), Ret::Unit);
                }
                return;
            }
            80..=91 => {
                // Take a snapshot and read it now; sometimes keep it and read it
                // again later, after this thread's later operations.
                if let Some(old) = held.take().filter(|_| w.rng.one_in(2)) {
                    old.read_all(w);
                    return;
                }
                let call = tick();
                let snapshot = map.snapshot();
                let ret = tick();
                let taken = HeldSnapshot {
                    snapshot,
                    call,
                    ret,
                };
                taken.read_all(w);
                if w.rng.one_in(2) {
                    *held = Some(taken);
                }
                return;
            }
            92..=95 => {
                let call = tick();
                map.retain(|_, v| keep(*v));
                let ret = tick();
                for key in 0..KEYS {
                    w.record(call, ret, key, KeyOp::Retain, Ret::Unit);
                }
                return;
            }
            _ => {
                let call = tick();
                map.clear();
                let ret = tick();
                for key in 0..KEYS {
                    w.record(call, ret, key, KeyOp::Clear, Ret::Unit);
                }
                return;
            }
        }
        w.record(call, ret, k, op, result);
    }
}

// ---------------------------------------------------------------------------
// Deliberately broken maps: the checker must reject their histories.
// ---------------------------------------------------------------------------

/// A `SyncMap` whose reads sometimes return the last value this thread saw
/// instead of reading the map (a stale cache).
pub struct StaleReads(SyncMap<u8, u64>);

impl Subject for StaleReads {
    /// This thread's cache: key → the last value it saw or wrote.
    type Ctx<'a> = HashMap<u8, u64>;

    fn new() -> Self {
        StaleReads(SyncMap::new())
    }

    fn ctx(&self) -> HashMap<u8, u64> {
        HashMap::new()
    }

    fn step(&self, cache: &mut HashMap<u8, u64>, w: &mut Worker) {
        let k = w.key();
        let call = tick();
        if w.rng.one_in(2) {
            let value = match cache.get(&k) {
                Some(&stale) if w.rng.one_in(2) => Some(stale),
                _ => self.0.get_cloned(&k),
            };
            let ret = tick();
            if let Some(v) = value {
                cache.insert(k, v);
            }
            w.record(call, ret, k, KeyOp::Get, Ret::Val(value));
        } else {
            let v = w.fresh();
            let previous = self.0.insert(k, v);
            let ret = tick();
            cache.insert(k, v);
            w.record(call, ret, k, KeyOp::Insert(v), Ret::Val(previous));
        }
    }
}

/// A `SyncMap` that sometimes drops an insert while reporting it done.
pub struct LostInserts(SyncMap<u8, u64>);

impl Subject for LostInserts {
    type Ctx<'a> = ();

    fn new() -> Self {
        LostInserts(SyncMap::new())
    }

    fn ctx(&self) {}

    fn step(&self, _: &mut (), w: &mut Worker) {
        let k = w.key();
        let call = tick();
        if w.rng.one_in(2) {
            let value = self.0.get_cloned(&k);
            let ret = tick();
            w.record(call, ret, k, KeyOp::Get, Ret::Val(value));
        } else {
            let v = w.fresh();
            let previous = if w.rng.one_in(4) {
                self.0.get_cloned(&k) // "inserted"
            } else {
                self.0.insert(k, v)
            };
            let ret = tick();
            w.record(call, ret, k, KeyOp::Insert(v), Ret::Val(previous));
        }
    }
}

/// The subjects by backend and hasher.
#[cfg(feature = "crossbeam-epoch")]
type SyncCrossbeam = SyncSubject<RandomState, CrossbeamEpoch>;
#[cfg(feature = "crossbeam-epoch")]
type SyncCollisions = SyncSubject<ConstantHasher, CrossbeamEpoch>;
#[cfg(feature = "crossbeam-epoch")]
type ClassicCrossbeam = ClassicSubject<CrossbeamEpoch>;
#[cfg(feature = "seize")]
type SyncSeize = SyncSubject<RandomState, Seize>;
#[cfg(feature = "seize")]
type SyncCollisionsSeize = SyncSubject<ConstantHasher, Seize>;
#[cfg(feature = "seize")]
type ClassicSeize = ClassicSubject<Seize>;

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

#[cfg(feature = "crossbeam-epoch")]
#[test]
fn sync_map_crossbeam_epoch_is_linearizable() {
    check_subject::<SyncCrossbeam>("SyncMap<RandomState, CrossbeamEpoch>");
}

#[cfg(feature = "crossbeam-epoch")]
#[test]
fn sync_map_with_every_key_colliding_is_linearizable() {
    check_subject::<SyncCollisions>("SyncMap<ConstantHasher, CrossbeamEpoch>");
}

#[cfg(feature = "crossbeam-epoch")]
#[test]
fn classic_sync_map_crossbeam_epoch_is_linearizable() {
    check_subject::<ClassicCrossbeam>("ClassicSyncMap<RandomState, CrossbeamEpoch>");
}

#[cfg(feature = "seize")]
#[test]
fn sync_map_seize_is_linearizable() {
    check_subject::<SyncSeize>("SyncMap<RandomState, Seize>");
}

#[cfg(feature = "seize")]
#[test]
fn sync_map_seize_with_every_key_colliding_is_linearizable() {
    check_subject::<SyncCollisionsSeize>("SyncMap<ConstantHasher, Seize>");
}

#[cfg(feature = "seize")]
#[test]
fn classic_sync_map_seize_is_linearizable() {
    check_subject::<ClassicSeize>("ClassicSyncMap<RandomState, Seize>");
}

#[test]
fn snapshot_map_is_linearizable() {
    check_subject::<SnapshotSubject>("SnapshotMap");
}

// The checker's own tests (here and below) run maps broken on purpose, with
// no unsafe code: nothing for Miri to find, and a minute of its time.
#[test]
#[cfg_attr(miri, ignore = "tests the checker, not a map's memory safety")]
fn the_checker_rejects_stale_reads() {
    check_broken::<StaleReads>("StaleReads");
}

#[test]
#[cfg_attr(miri, ignore = "tests the checker, not a map's memory safety")]
fn the_checker_rejects_lost_inserts() {
    check_broken::<LostInserts>("LostInserts");
}
