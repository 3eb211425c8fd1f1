//! Multi-threaded stress of `SyncMap`, with exact checks of the final state.
//!
//! Every test runs 8 threads. CI machines have 2 cores, so threads are
//! preempted at arbitrary points — inside CAS loops, between a lock-free probe and
//! the locked insert of a new key, in the middle of a promotion or of a delta
//! growth — which is the point. Each
//! thread's operation mix comes from a seeded generator; the interleavings differ
//! from run to run.
//!
//! The tests assert behaviour only: the results every operation returns (checked
//! against a per-thread model where a thread owns the key), the final contents,
//! counters' sums, and what readers observe. None asserts a timing.
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use common::{Rendezvous, Rng};
use readmostly::{CompareExchangeError, LoadOrStore, SyncMap};

const THREADS: usize = 8;

/// The share of each test's rounds to run, in percent:
/// `READMOSTLY_STRESS_PERCENT` (default 100). CI runs the tests again under
/// valgrind, which runs the 8 threads one at a time and some 50x slower, with
/// a tenth of the rounds, and under ThreadSanitizer with half; the checks are
/// the same.
fn rounds<T: TryFrom<u64> + TryInto<u64> + Copy>(full: T) -> T {
    let percent: u64 = std::env::var("READMOSTLY_STRESS_PERCENT")
        .ok()
        .map(|v| v.parse().expect("READMOSTLY_STRESS_PERCENT: a number"))
        .unwrap_or(100);
    let full: u64 = full.try_into().ok().expect("a count");
    T::try_from((full * percent / 100).max(1))
        .ok()
        .expect("no larger than the full count")
}

// ---------------------------------------------------------------------------
// Mixed operations with an exact final state.
// ---------------------------------------------------------------------------

/// Keys each thread owns in `mixed_operations_leave_an_exact_final_state`.
const OWN_KEYS: u64 = 256;
/// Counter keys all threads increment.
const SHARED_KEYS: u64 = 8;
/// Operations per thread in the mixed phase.
const MIXED_OPS: u64 = 45_000;

/// A key owned by thread `t`: only `t` writes it.
fn own_key(t: usize, j: u64) -> u64 {
    ((t as u64 + 1) << 32) | j
}

/// The thread that owns `key`, if it is an owned key.
fn owner(key: u64) -> Option<usize> {
    let t = key >> 32;
    (1..=THREADS as u64).contains(&t).then(|| t as usize - 1)
}

fn shared_key(s: u64) -> u64 {
    (1 << 48) | s
}

/// Keys that are never inserted: a lookup of one probes the read table, then the
/// delta of new keys, lock-free, and finds nothing (only reads the delta serves
/// count toward a promotion).
fn absent_key(r: u64) -> u64 {
    (1 << 56) | (r & 0xFFFF_FFFF)
}

/// Values of owned keys: the owner in the high bits, then a per-thread sequence
/// number, so a value is unique and says who wrote it.
fn own_value(t: usize, seq: u64) -> u64 {
    ((t as u64 + 1) << 40) | seq
}

/// What one thread of the mixed phase knows at the end.
struct MixedOutcome {
    /// Exact contents of this thread's keys.
    model: HashMap<u64, u64>,
    /// Increments this thread applied to each shared counter.
    increments: [u64; SHARED_KEYS as usize],
    /// Shared counters this thread created through `get_or_insert`.
    stored: [u64; SHARED_KEYS as usize],
}

/// One thread of the mixed phase: every operation of the API on its own keys
/// (each result checked against `model`: nobody else writes them), increments
/// of the shared counters through `update` and `compare_exchange` retry loops,
/// lookups of absent and of other threads' keys, promotions, iteration, retain.
fn mixed_thread(map: &SyncMap<u64, u64>, t: usize, start: &Rendezvous) -> MixedOutcome {
    let _guard = start.guard();
    let mut rng = Rng::new(0x5EED + t as u64);
    let mut model: HashMap<u64, u64> = HashMap::new();
    let mut increments = [0; SHARED_KEYS as usize];
    let mut stored = [0; SHARED_KEYS as usize];
    let mut seq = 0;
    let mut next_value = || {
        seq += 1;
        own_value(t, seq)
    };
    start.wait();
    // All threads race to create the counters: exactly one store each.
    for s in 0..SHARED_KEYS {
        if map.pin().get_or_insert(shared_key(s), 0).is_stored() {
            stored[s as usize] += 1;
        }
    }
    for _ in 0..rounds(MIXED_OPS) {
        let pinned = map.pin();
        let k = own_key(t, rng.below(OWN_KEYS));
        let s = rng.below(SHARED_KEYS);
        let sk = shared_key(s);
        match rng.below(1000) {
            0..=79 => {
                let v = next_value();
                assert_eq!(pinned.insert(k, v).copied(), model.insert(k, v), "insert");
            }
            80..=119 => {
                let v = next_value();
                assert_eq!(map.insert(k, v), model.insert(k, v), "owned insert");
            }
            120..=179 => {
                assert_eq!(pinned.remove(&k).copied(), model.remove(&k), "remove");
            }
            180..=219 => {
                assert_eq!(map.remove(&k), model.remove(&k), "owned remove");
            }
            220..=259 => {
                assert_eq!(pinned.get(&k), model.get(&k), "get");
            }
            260..=279 => {
                assert_eq!(map.get_cloned(&k), model.get(&k).copied(), "get_cloned");
                assert_eq!(map.contains_key(&k), model.contains_key(&k));
            }
            280..=319 => {
                let expected = model.get_mut(&k).map(|v| {
                    *v += 1;
                    *v
                });
                assert_eq!(pinned.update(&k, |v| v + 1).copied(), expected, "update");
            }
            320..=369 => {
                // The right expected value: must swap if present.
                let new = next_value();
                match model.get(&k).copied() {
                    Some(current) => {
                        assert_eq!(pinned.compare_exchange(&k, &current, new), Ok(&current));
                        model.insert(k, new);
                    }
                    None => assert_eq!(
                        pinned.compare_exchange(&k, &0, new),
                        Err(CompareExchangeError { current: None, new })
                    ),
                }
            }
            370..=399 => {
                // A wrong expected value: must fail, showing the current value.
                let new = next_value();
                assert_eq!(
                    pinned.compare_exchange(&k, &u64::MAX, new),
                    Err(CompareExchangeError {
                        current: model.get(&k),
                        new
                    })
                );
            }
            400..=449 => {
                let v = next_value();
                let got = pinned.get_or_insert(k, v);
                match model.get(&k) {
                    Some(current) => assert_eq!(got, LoadOrStore::Loaded(current)),
                    None => {
                        assert_eq!(got, LoadOrStore::Stored(&v));
                        model.insert(k, v);
                    }
                }
            }
            450..=479 => {
                let v = next_value();
                let mut made = false;
                let got = pinned.get_or_insert_with(k, || {
                    made = true;
                    v
                });
                let present = model.get(&k).copied();
                assert_eq!(made, present.is_none(), "get_or_insert_with made a value");
                match present {
                    Some(current) => assert_eq!(got, LoadOrStore::Loaded(&current)),
                    None => {
                        assert_eq!(got, LoadOrStore::Stored(&v));
                        model.insert(k, v);
                    }
                }
            }
            480..=519 => {
                let expected = match model.get(&k) {
                    Some(v) if v % 2 == 0 => model.remove(&k),
                    _ => None,
                };
                assert_eq!(
                    pinned.remove_if(&k, |v| v % 2 == 0).copied(),
                    expected,
                    "remove_if"
                );
            }
            520..=639 => {
                let after = pinned.update(&sk, |v| v + 1);
                assert!(after.is_some(), "counter {s} vanished");
                increments[s as usize] += 1;
            }
            640..=719 => {
                // A compare-and-swap retry loop.
                loop {
                    let current = *pinned.get(&sk).expect("counter vanished");
                    match pinned.compare_exchange(&sk, &current, current + 1) {
                        Ok(old) => {
                            assert_eq!(*old, current);
                            break;
                        }
                        Err(err) => {
                            assert_eq!(err.new, current + 1);
                            assert!(err.current.is_some_and(|now| *now != current));
                        }
                    }
                }
                increments[s as usize] += 1;
            }
            720..=749 => {
                let got = pinned.get_or_insert(sk, u64::MAX);
                assert!(matches!(got, LoadOrStore::Loaded(v) if *v != u64::MAX));
            }
            750..=869 => {
                let absent = absent_key(rng.next_u64());
                assert_eq!(pinned.get(&absent), None);
                assert!(!map.contains_key(&absent));
            }
            870..=969 => {
                // Another thread's key: absent, or a value that thread wrote.
                let other = (t + 1 + rng.below(THREADS as u64 - 1) as usize) % THREADS;
                let ok = own_key(other, rng.below(OWN_KEYS));
                if let Some(v) = pinned.get(&ok) {
                    assert_eq!(v >> 40, other as u64 + 1, "key {ok:#x} holds {v:#x}");
                }
            }
            970..=979 => {
                drop(pinned);
                map.promote();
            }
            980..=989 => {
                // This thread's keys cannot change during its own iteration: each
                // is present throughout (or absent throughout), so iteration must
                // yield exactly the model.
                let mut mine = HashMap::new();
                for (key, value) in pinned.iter() {
                    if owner(*key) == Some(t) {
                        assert!(mine.insert(*key, *value).is_none(), "{key:#x} twice");
                    }
                }
                assert_eq!(mine, model, "iteration of thread {t}'s keys");
            }
            990..=994 => {
                // Removes this thread's keys with a value divisible by 3; keeps
                // every other key.
                pinned.retain(|key, value| !(owner(*key) == Some(t) && value % 3 == 0));
                model.retain(|_, value| *value % 3 != 0);
            }
            _ => {
                let len = pinned.len();
                assert!(len <= THREADS * OWN_KEYS as usize + SHARED_KEYS as usize);
            }
        }
    }
    MixedOutcome {
        model,
        increments,
        stored,
    }
}

/// Checks that `map` holds exactly `expected`, through every read path.
#[track_caller]
fn assert_contents(map: &SyncMap<u64, u64>, expected: &HashMap<u64, u64>, what: &str) {
    assert_eq!(map.len(), expected.len(), "{what}: len");
    let pinned = map.pin();
    for (k, v) in expected {
        assert_eq!(pinned.get(k), Some(v), "{what}: key {k:#x}");
    }
    let mut seen = HashMap::new();
    for (k, v) in pinned.iter() {
        assert!(
            seen.insert(*k, *v).is_none(),
            "{what}: {k:#x} yielded twice"
        );
    }
    assert_eq!(&seen, expected, "{what}: iteration");
}

#[test]
fn mixed_operations_leave_an_exact_final_state() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    let start = Rendezvous::new(THREADS);

    // Phase 1: mixed operations.
    let outcomes: Vec<MixedOutcome> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (map, start) = (&map, &start);
                scope.spawn(move || mixed_thread(map, t, start))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut expected: HashMap<u64, u64> = HashMap::new();
    for s in 0..SHARED_KEYS as usize {
        let stores: u64 = outcomes.iter().map(|o| o.stored[s]).sum();
        assert_eq!(stores, 1, "counter {s} stored {stores} times");
        let sum = outcomes.iter().map(|o| o.increments[s]).sum();
        expected.insert(shared_key(s as u64), sum);
    }
    for outcome in &outcomes {
        expected.extend(&outcome.model);
    }
    assert_contents(&map, &expected, "after the mixed phase");
    let stats = map.stats();
    println!("mixed phase: {stats:?}");
    // The run exercised the protocol's moving parts: new keys served from the
    // delta, promotions merging it, tombstones purged.
    assert!(
        stats.promotions > 0 && stats.delta_reads > 0 && stats.tombstones_purged > 0,
        "{stats:?}"
    );

    // Phase 2: `clear` racing with writers. Each writer records the outcome of
    // the last operation it completed on each of its keys (nobody else writes
    // them; `clear` only removes): a key then ends absent (cleared after that
    // operation) or with exactly that outcome — never an older value, never a
    // value after a completed remove. Writers keep going until the clears are
    // done, so the two overlap.
    let clears_done = AtomicBool::new(false);
    let last_ops: Vec<HashMap<u64, Option<u64>>> = thread::scope(|scope| {
        let writers: Vec<_> = (0..THREADS - 1)
            .map(|t| {
                let (map, start, clears_done) = (&map, &start, &clears_done);
                scope.spawn(move || {
                    let mut rng = Rng::new(0xC1EA + t as u64);
                    let mut last = HashMap::new();
                    let _guard = start.guard();
                    start.wait();
                    let mut seq = 0;
                    while seq < 2_000 || !clears_done.load(Ordering::Acquire) {
                        start.check();
                        seq += 1;
                        let k = own_key(t, rng.below(OWN_KEYS));
                        let v = own_value(t, seq);
                        let pinned = map.pin();
                        let outcome = match rng.below(6) {
                            0 => {
                                pinned.remove(&k);
                                None
                            }
                            1 => pinned.update(&k, |v| v + 1).copied(),
                            2 => Some(*pinned.get_or_insert(k, v).value()),
                            3 => match pinned.get(&k).copied() {
                                Some(current) => match pinned.compare_exchange(&k, &current, v) {
                                    Ok(_) => Some(v),
                                    Err(err) => err.current.copied(),
                                },
                                None => None,
                            },
                            _ => {
                                pinned.insert(k, v);
                                Some(v)
                            }
                        };
                        last.insert(k, outcome);
                        assert!(seq < 10_000_000, "the clearer never finished");
                    }
                    last
                })
            })
            .collect();
        let (map, start, clears_done) = (&map, &start, &clears_done);
        scope.spawn(move || {
            let _guard = start.guard();
            start.wait();
            for _ in 0..40 {
                map.clear();
                for _ in 0..50 {
                    thread::yield_now();
                }
            }
            clears_done.store(true, Ordering::Release);
        });
        writers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut present = HashMap::new();
    for last in &last_ops {
        for (k, op) in last {
            let got = map.get_cloned(k);
            match op {
                None => assert_eq!(got, None, "{k:#x} present after it was found absent"),
                Some(v) => assert!(
                    got.is_none() || got == Some(*v),
                    "{k:#x}: {got:?}, last outcome {v:#x}"
                ),
            }
            if let Some(v) = got {
                present.insert(*k, v);
            }
        }
    }
    // Counters were cleared by the first `clear` and never written again.
    assert_contents(&map, &present, "after clear raced with writers");

    // The map is empty after a quiet `clear`, and usable again.
    map.clear();
    assert_contents(&map, &HashMap::new(), "after a quiet clear");

    // Phase 3: all threads refill their keys at once; every store is new.
    thread::scope(|scope| {
        for t in 0..THREADS {
            let (map, start) = (&map, &start);
            scope.spawn(move || {
                let _guard = start.guard();
                start.wait();
                for j in 0..OWN_KEYS {
                    let v = own_value(t, j);
                    if j % 2 == 0 {
                        assert!(map.pin().get_or_insert(own_key(t, j), v).is_stored());
                    } else {
                        assert_eq!(map.insert(own_key(t, j), v), None);
                    }
                    // Lookups of absent keys meanwhile probe the read table and
                    // the delta the refill grows (and promotes as it grows).
                    assert!(!map.contains_key(&absent_key(j)));
                }
            });
        }
    });
    let refilled = (0..THREADS)
        .flat_map(|t| (0..OWN_KEYS).map(move |j| (own_key(t, j), own_value(t, j))))
        .collect();
    assert_contents(&map, &refilled, "after the refill");
}

// ---------------------------------------------------------------------------
// Visibility: once insert returns, every thread sees the value (or a newer one).
// ---------------------------------------------------------------------------

const WRITERS: usize = 2;
/// Keys each writer inserts and publishes.
const PUBLISHED_KEYS: u64 = 30_000;

fn published_key(w: usize, i: u64) -> u64 {
    ((w as u64) << 32) | i
}

/// Keys a writer inserts and removes to make tombstones and compactions.
fn churn_key(w: usize, i: u64) -> u64 {
    ((w as u64) << 32) | (1 << 31) | i
}

/// Key `i`'s value at version `version` (updates only raise the version).
fn versioned(i: u64, version: u64) -> u64 {
    (i << 16) | version
}

#[test]
fn a_value_is_visible_to_every_thread_once_insert_returns() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    let published: [AtomicU64; WRITERS] = Default::default();
    let writers_done = AtomicUsize::new(0);
    let checks = AtomicU64::new(0);
    let start = Rendezvous::new(THREADS);

    thread::scope(|scope| {
        for w in 0..WRITERS {
            let (map, published, writers_done, start) = (&map, &published, &writers_done, &start);
            scope.spawn(move || {
                let mut rng = Rng::new(0xF00D + w as u64);
                let _guard = start.guard();
                start.wait();
                for i in 0..rounds(PUBLISHED_KEYS) {
                    let k = published_key(w, i);
                    let v = versioned(i, 0);
                    // Every insertion path, in turn.
                    match i % 4 {
                        0 => assert_eq!(map.pin().insert(k, v), None),
                        1 => assert_eq!(map.insert(k, v), None),
                        2 => assert!(map.pin().get_or_insert(k, v).is_stored()),
                        _ => assert!(map.pin().get_or_insert_with(k, || v).is_stored()),
                    }
                    // Release: a reader that loads `i + 1` with Acquire happens
                    // after the insert returned.
                    published[w].store(i + 1, Ordering::Release);
                    if i % 8 == 7 {
                        // Move an older key to a newer version.
                        let j = rng.below(i);
                        let updated = map
                            .pin()
                            .update(&published_key(w, j), |v| {
                                if v & 0xFFFF < 0xFFFF {
                                    v + 1
                                } else {
                                    *v
                                }
                            })
                            .is_some();
                        assert!(updated, "key {j} of writer {w} vanished");
                    }
                    // Churn: new keys, removes (tombstones, compactions), and
                    // re-inserts of removed keys (tombstones revived in place, or,
                    // once a promotion dropped them, new entries in the delta).
                    let c = churn_key(w, rng.below(512));
                    if rng.one_in(2) {
                        map.insert(c, 0);
                    } else {
                        map.remove(&c);
                    }
                    if i % 2048 == 1024 {
                        map.promote();
                    }
                }
                writers_done.fetch_add(1, Ordering::Release);
            });
        }
        for r in 0..THREADS - WRITERS {
            let (map, published, writers_done, start, checks) =
                (&map, &published, &writers_done, &start, &checks);
            scope.spawn(move || {
                let mut rng = Rng::new(0xBEEF + r as u64);
                let check = |w: usize, i: u64, how: u64| {
                    let k = published_key(w, i);
                    let v = match how % 3 {
                        0 => map.pin().get(&k).copied(),
                        1 => map.get_cloned(&k),
                        _ => map.pin().get_key_value(&k).map(|(key, v)| {
                            assert_eq!(*key, k);
                            *v
                        }),
                    };
                    let v =
                        v.unwrap_or_else(|| panic!("key {i} of writer {w} published but absent"));
                    assert!(
                        v >= versioned(i, 0) && v < versioned(i + 1, 0),
                        "key {i} of writer {w}: value {v:#x}"
                    );
                };
                let _guard = start.guard();
                start.wait();
                let mut done = false;
                let mut local = 0;
                while !done {
                    start.check();
                    // Read the flag first: a final round starts after both
                    // writers published everything.
                    done = writers_done.load(Ordering::Acquire) == WRITERS;
                    for (w, published) in published.iter().enumerate() {
                        let p = published.load(Ordering::Acquire);
                        if p == 0 {
                            continue;
                        }
                        // The newest key (most likely still in the delta), and older
                        // ones (in the read table, or merged into it by a promotion).
                        check(w, p - 1, rng.next_u64());
                        for _ in 0..3 {
                            check(w, rng.below(p), rng.next_u64());
                        }
                        local += 4;
                    }
                }
                // Everything, once more, after the writers finished.
                for w in 0..WRITERS {
                    for i in 0..rounds(PUBLISHED_KEYS) {
                        check(w, i, i);
                    }
                }
                checks.fetch_add(local, Ordering::Relaxed);
            });
        }
    });
    assert!(checks.load(Ordering::Relaxed) > 0);
    let stats = map.stats();
    println!(
        "visibility: {} checks; {stats:?}",
        checks.load(Ordering::Relaxed)
    );
    assert!(stats.promotions > 0 && stats.delta_reads > 0, "{stats:?}");
    let published_len = map
        .pin()
        .iter()
        .filter(|(k, _)| (**k >> 31) & 1 == 0)
        .count();
    assert_eq!(published_len, WRITERS * rounds(PUBLISHED_KEYS) as usize);
}

// ---------------------------------------------------------------------------
// Iteration during concurrent inserts and removes.
// ---------------------------------------------------------------------------

/// Keys present for the whole test: the first half promoted to the read table
/// before it starts, the second half in the delta.
const STABLE_KEYS: u64 = 1_000;
const ITERATORS: usize = 4;
const ITERATIONS: usize = 200;

/// Stable key `k`'s values stay in `k * 16 .. k * 16 + 16`.
fn stable_value(k: u64, n: u64) -> u64 {
    k * 16 + n % 16
}

/// Transient keys per writer.
const TRANSIENT_KEYS: u64 = 1_024;

/// Keys inserted and removed while iterations run; their value is `key + 1`.
fn transient_key(w: usize, i: u64) -> u64 {
    (1 << 40) | ((w as u64) << 32) | i
}

#[test]
fn iteration_yields_each_key_at_most_once_and_every_key_present_throughout() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    for k in 0..STABLE_KEYS / 2 {
        map.insert(k, stable_value(k, 0));
    }
    map.promote();
    for k in STABLE_KEYS / 2..STABLE_KEYS {
        map.insert(k, stable_value(k, 0));
    }
    let iterators_done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let start = Rendezvous::new(THREADS);

    thread::scope(|scope| {
        for w in 0..THREADS - ITERATORS {
            let (map, stop, start) = (&map, &stop, &start);
            scope.spawn(move || {
                let mut rng = Rng::new(0x17E2 + w as u64);
                let _guard = start.guard();
                start.wait();
                // Bounded, in case the iterators fail.
                for op in 0..2_000_000u64 {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    start.check();
                    let pinned = map.pin();
                    match rng.below(10) {
                        0..=2 => {
                            // Mostly new keys: they go to the delta, which an
                            // iteration walks after the read table (and which
                            // promotions merge into it while iterations run).
                            let k = transient_key(w, rng.below(TRANSIENT_KEYS));
                            pinned.insert(k, k + 1);
                        }
                        3..=5 => {
                            let k = transient_key(w, rng.below(TRANSIENT_KEYS));
                            pinned.remove(&k);
                        }
                        6..=8 => {
                            let k = rng.below(STABLE_KEYS);
                            let updated = pinned.update(&k, |v| stable_value(k, v + 1));
                            assert!(updated.is_some(), "stable key {k} vanished");
                        }
                        _ => {
                            if op % 64 == 0 {
                                drop(pinned);
                                map.promote();
                            } else {
                                let k = rng.below(STABLE_KEYS);
                                pinned.insert(k, stable_value(k, rng.next_u64()));
                            }
                        }
                    }
                }
            });
        }
        for _ in 0..ITERATORS {
            let (map, stop, start, iterators_done) = (&map, &stop, &start, &iterators_done);
            scope.spawn(move || {
                let _guard = start.guard();
                start.wait();
                for round in 0..rounds(ITERATIONS) {
                    let pinned = map.pin();
                    let mut seen = HashSet::new();
                    let mut stable = 0;
                    let mut visit = |k: u64, v: u64| {
                        assert!(seen.insert(k), "round {round}: key {k:#x} yielded twice");
                        if k < STABLE_KEYS {
                            assert_eq!(v / 16, k, "stable key {k}: value {v}");
                            stable += 1;
                        } else {
                            assert_eq!(k >> 40, 1, "unknown key {k:#x}");
                            assert_eq!(v, k + 1, "transient key {k:#x}");
                        }
                    };
                    if round % 8 == 7 {
                        // `retain` walks the same way; keeping everything, it must
                        // visit each key once too.
                        pinned.retain(|k, v| {
                            visit(*k, *v);
                            true
                        });
                    } else {
                        for (k, v) in pinned.iter() {
                            visit(*k, *v);
                        }
                    }
                    assert_eq!(stable, STABLE_KEYS, "round {round}: stable keys missing");
                }
                if iterators_done.fetch_add(1, Ordering::AcqRel) + 1 == ITERATORS {
                    stop.store(true, Ordering::Release);
                }
            });
        }
    });
    let stats = map.stats();
    println!("iteration: {stats:?}");
    assert!(stats.promotions > 0, "{stats:?}");
    for k in 0..STABLE_KEYS {
        assert_eq!(map.get_cloned(&k).map(|v| v / 16), Some(k));
    }
}

// ---------------------------------------------------------------------------
// Removes, re-inserts and compactions racing (invariant 4), with an iterator.
// ---------------------------------------------------------------------------

/// Keys per worker in the compaction test; every eighth is never removed.
const COMPACT_KEYS: u64 = 512;
const COMPACT_ROUNDS: u64 = 40;
const COMPACT_WORKERS: usize = THREADS - 1;

fn is_survivor(j: u64) -> bool {
    j.is_multiple_of(8)
}

#[test]
fn removes_and_reinserts_racing_with_compaction_never_lose_a_key() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    let start = Rendezvous::new(THREADS);
    let round_barrier = Rendezvous::new(COMPACT_WORKERS);
    let workers_done = AtomicUsize::new(0);
    let filled = AtomicBool::new(false);

    thread::scope(|scope| {
        for t in 0..COMPACT_WORKERS {
            let (map, start, round_barrier, workers_done, filled) =
                (&map, &start, &round_barrier, &workers_done, &filled);
            scope.spawn(move || {
                let mut rng = Rng::new(0xC0417AC7 + t as u64);
                let mut model: HashMap<u64, u64> = HashMap::new();
                let mut seq = 0;
                let mut next_value = || {
                    seq += 1;
                    own_value(t, seq)
                };
                let _guard = start.guard();
                let _round_guard = round_barrier.guard();
                start.wait();
                for round in 0..rounds(COMPACT_ROUNDS) {
                    // Fill: every key present, then all in the read table.
                    for j in 0..COMPACT_KEYS {
                        let k = own_key(t, j);
                        let v = next_value();
                        assert_eq!(map.insert(k, v), model.insert(k, v));
                    }
                    round_barrier.wait();
                    if t == 0 {
                        map.promote();
                        filled.store(true, Ordering::Release);
                    }
                    round_barrier.wait();
                    // Mass delete: tombstones pile up in the read table until half
                    // of the root's entries are dead, and the thread whose remove
                    // crosses that line compacts it — while the others keep
                    // removing, re-inserting (into tombstones, lock-free, or as new
                    // entries in the delta, under the lock, once a compaction
                    // dropped the key) and looking up.
                    let step = 1 + 2 * rng.below(COMPACT_KEYS / 2); // odd: a permutation
                    for n in 0..COMPACT_KEYS {
                        let j = (n * step + round) % COMPACT_KEYS;
                        let k = own_key(t, j);
                        let pinned = map.pin();
                        if is_survivor(j) {
                            let expected = model.get_mut(&k).map(|v| {
                                *v += 1;
                                *v
                            });
                            assert_eq!(pinned.update(&k, |v| v + 1).copied(), expected);
                            continue;
                        }
                        // Removes outnumber revivals enough that removed keys reach
                        // half of the map (about 55% of the non-survivors net).
                        match rng.below(12) {
                            0..=6 => assert_eq!(pinned.remove(&k), model.remove(&k).as_ref()),
                            7..=8 => {
                                assert_eq!(pinned.remove(&k), model.remove(&k).as_ref());
                                let v = next_value();
                                if rng.one_in(2) {
                                    assert_eq!(pinned.insert(k, v), None);
                                } else {
                                    assert!(pinned.get_or_insert(k, v).is_stored());
                                }
                                model.insert(k, v);
                            }
                            9 => {
                                let expected = match model.get(&k) {
                                    Some(v) if v % 2 == 0 => model.remove(&k),
                                    _ => None,
                                };
                                assert_eq!(pinned.remove_if(&k, |v| v % 2 == 0).copied(), expected);
                            }
                            10 => {
                                assert_eq!(pinned.get(&k), model.get(&k));
                                assert_eq!(pinned.get(&absent_key(rng.next_u64())), None);
                            }
                            _ => {
                                // Re-insert a key removed earlier in this round.
                                let j = rng.below(COMPACT_KEYS);
                                if !is_survivor(j) {
                                    let k = own_key(t, j);
                                    let v = next_value();
                                    assert_eq!(pinned.insert(k, v).copied(), model.insert(k, v));
                                }
                            }
                        }
                    }
                    // This thread's keys, exactly, through lookups and iteration.
                    let pinned = map.pin();
                    for j in 0..COMPACT_KEYS {
                        let k = own_key(t, j);
                        assert_eq!(pinned.get(&k), model.get(&k), "round {round}: {k:#x}");
                    }
                    let mine: HashMap<u64, u64> = pinned
                        .iter()
                        .filter(|(k, _)| owner(**k) == Some(t))
                        .map(|(k, v)| (*k, *v))
                        .collect();
                    assert_eq!(mine, model, "round {round}: iteration");
                    drop(pinned);
                    round_barrier.wait();
                }
                workers_done.fetch_add(1, Ordering::Release);
            });
        }
        // The iterator: each key at most once, survivors always there.
        let (map, start, workers_done, filled) = (&map, &start, &workers_done, &filled);
        scope.spawn(move || {
            let _guard = start.guard();
            start.wait();
            let mut round = 0;
            while workers_done.load(Ordering::Acquire) < COMPACT_WORKERS {
                start.check();
                round += 1;
                // Survivors are present throughout once the first fill is done.
                let filled_before = filled.load(Ordering::Acquire);
                let mut seen = HashSet::new();
                let mut survivors = 0;
                for (k, v) in map.pin().iter() {
                    assert!(seen.insert(*k), "round {round}: {k:#x} yielded twice");
                    let t = owner(*k).expect("only owned keys");
                    assert_eq!(v >> 40, t as u64 + 1, "{k:#x}: {v:#x}");
                    survivors += usize::from(is_survivor(k & 0xFFFF_FFFF));
                }
                if filled_before {
                    assert_eq!(
                        survivors,
                        COMPACT_WORKERS * COMPACT_KEYS as usize / 8,
                        "round {round}: survivors missing"
                    );
                }
            }
        });
    });
    let stats = map.stats();
    println!("compaction: {stats:?}");
    assert!(stats.compactions > 0, "{stats:?}");
    let survivors = (0..COMPACT_WORKERS).flat_map(|t| {
        (0..COMPACT_KEYS)
            .filter(|j| is_survivor(*j))
            .map(move |j| own_key(t, j))
    });
    for k in survivors {
        assert!(map.contains_key(&k), "survivor {k:#x} lost");
    }
}

// ---------------------------------------------------------------------------
// What `len` promises while writers run.
// ---------------------------------------------------------------------------

/// `SyncMap::len` is exact when no insert or remove is in flight, and otherwise
/// off by at most the number in flight (each adds or takes one, a moment late),
/// never negative. Two threads insert and remove one key over a map of 1,000
/// others, so the truth is always 1,000 or 1,001: with at most two writes in
/// flight, every `len` is within 998..=1,003, and once they stop it is exact.
#[test]
fn len_is_off_by_at_most_the_writes_in_flight() {
    const BASE: u64 = 1_000;
    let map: SyncMap<u64, u64> = (0..BASE).map(|k| (k, k)).collect();
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    let (mut lowest, mut highest) = (usize::MAX, 0);
    thread::scope(|scope| {
        for t in 0..2u64 {
            let (map, stop, rounds) = (&map, &stop, &rounds);
            scope.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    map.insert(BASE, t * 1_000_000 + i);
                    map.remove(&BASE);
                    rounds.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    if i.is_multiple_of(5_000) {
                        map.promote();
                    }
                }
            });
        }
        while rounds.load(Ordering::Relaxed) < 50_000 {
            let len = map.len();
            lowest = lowest.min(len);
            highest = highest.max(len);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        lowest >= BASE as usize - 2 && highest <= BASE as usize + 3,
        "len ranged over {lowest}..={highest}"
    );
    assert_eq!(map.len() as u64, BASE + u64::from(map.contains_key(&BASE)));
}
