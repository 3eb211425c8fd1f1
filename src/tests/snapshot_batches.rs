//! SnapshotMap batches under concurrency, and drop counting.
//!
//! * Readers never see half a batch: writers move amounts between accounts in
//!   batches that keep the total constant (and abort or panic half-way through
//!   batches that would break it); 8 reader threads check the total on every
//!   snapshot they take. Every check must hold.
//! * Every value clone the map makes is dropped exactly once, including the
//!   partial copies of aborted and panicking batches.
//!
//! Both run once per publication scheme (`reclaim::Publish`) the build has:
//! arc-swap (the default), crossbeam-epoch, seize. Under the reclamation
//! backends a replaced version waits for its grace period, so the counts are
//! checked after flushing.
//!
//! Scale with `SNAPSHOT_STRESS_BATCHES` (batches per writer; default 10,000 for
//! the default scheme, a quarter of that for each backend).

mod common;

use std::collections::hash_map::RandomState;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use common::{DropLedger, Rng};
use readmostly::reclaim::{ArcSwapPublish, Publish};
use readmostly::{Snapshot, SnapshotMap};

type Map<K, V, P> = SnapshotMap<K, V, RandomState, P>;

/// How a scheme's replaced versions are freed, for the checks after the threads
/// that replaced them have exited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Frees {
    /// By their last holder, at once (arc-swap).
    AtOnce,
    /// After a grace period; a flush from any thread reaches them all, whatever
    /// thread replaced them (crossbeam-epoch, seize).
    Flushed,
}

/// Flushes `map` until no replaced version is held (with `Frees::Flushed`), and
/// returns how many are still held.
fn settle<K, V, P: Publish>(map: &Map<K, V, P>, frees: Frees) -> u64 {
    if frees == Frees::Flushed {
        let start = Instant::now();
        while map.stats().held > 0 {
            map.flush();
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "versions still held: {:?}",
                map.stats()
            );
            thread::yield_now();
        }
    }
    map.stats().held
}

const ACCOUNTS: u64 = 64;
const START: i64 = 1_000;
const TOTAL: i64 = ACCOUNTS as i64 * START;
const READERS: usize = 8;
const WRITERS: u64 = 2;

fn batches_per_writer() -> u64 {
    std::env::var("SNAPSHOT_STRESS_BATCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

/// The total over one version; also checks the version is internally sane.
fn total(snapshot: &Snapshot<u64, i64>) -> i64 {
    assert!(snapshot.len() as u64 >= ACCOUNTS, "an account disappeared");
    snapshot.values().sum()
}

#[test]
fn readers_never_see_half_a_batch() {
    let map: SnapshotMap<u64, i64> = (0..ACCOUNTS).map(|k| (k, START)).collect();
    readers_never_see_half_a_batch_in(map, batches_per_writer(), Frees::AtOnce);
}

#[cfg(feature = "crossbeam-epoch")]
#[test]
fn readers_never_see_half_a_batch_crossbeam_epoch() {
    let map = SnapshotMap::with_publish(readmostly::reclaim::CrossbeamEpoch);
    readers_never_see_half_a_batch_in(map, batches_per_writer() / 4, Frees::Flushed);
}

#[cfg(feature = "seize")]
#[test]
fn readers_never_see_half_a_batch_seize() {
    let map = SnapshotMap::with_publish(readmostly::reclaim::Seize::new());
    readers_never_see_half_a_batch_in(map, batches_per_writer() / 4, Frees::Flushed);
}

fn readers_never_see_half_a_batch_in<P: Publish>(
    map: Map<u64, i64, P>,
    batches: u64,
    frees: Frees,
) {
    silence_deliberate_panics();
    if map.is_empty() {
        map.batch(|txn| txn.extend((0..ACCOUNTS).map(|k| (k, START))));
    }
    let published_before = map.stats().published;
    let writers_done = AtomicBool::new(false);
    let checks = AtomicU64::new(0);
    let aborted = AtomicU64::new(0);

    thread::scope(|s| {
        let mut readers = Vec::new();
        for reader in 0..READERS {
            let (map, writers_done, checks) = (&map, &writers_done, &checks);
            readers.push(s.spawn(move || {
                let mut last_version = 0;
                let mut mine = 0u64;
                loop {
                    // Read the flag first: a snapshot taken after seeing it is
                    // the final version, so the loop ends with one full check.
                    let done = writers_done.load(Ordering::Acquire);
                    let snapshot = map.snapshot();
                    assert_eq!(total(&snapshot), TOTAL, "reader {reader} saw half a batch");
                    assert!(snapshot.version() >= last_version, "versions went back");
                    last_version = snapshot.version();
                    // Other read paths see whole versions too.
                    if mine.is_multiple_of(16) {
                        assert_eq!(map.iter().map(|(_, v)| v).sum::<i64>(), TOTAL);
                        let key = mine % ACCOUNTS;
                        assert!(map.get(&key).is_some(), "account {key} missing");
                    }
                    mine += 1;
                    if done {
                        break;
                    }
                }
                checks.fetch_add(mine, Ordering::Relaxed);
            }));
        }

        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let (map, aborted) = (&map, &aborted);
            writers.push(s.spawn(move || {
                let mut rng = Rng::new(writer + 1);
                // The zero-balance key this writer added last (each writer's own).
                let mut previous_extra = None;
                for i in 0..batches {
                    match rng.below(10) {
                        // A transfer between two accounts.
                        0..=5 => map.batch(|txn| {
                            let (from, to) = (rng.below(ACCOUNTS), rng.below(ACCOUNTS));
                            let amount = rng.below(100) as i64;
                            txn.update(&from, |v| v - amount);
                            txn.update(&to, |v| v + amount);
                        }),
                        // A round of transfers over many accounts, plus a
                        // temporary zero-balance key coming and going.
                        6 | 7 => map.batch(|txn| {
                            for _ in 0..8 {
                                let (from, to) = (rng.below(ACCOUNTS), rng.below(ACCOUNTS));
                                let amount = rng.below(10) as i64;
                                txn.update(&from, |v| v - amount);
                                txn.update(&to, |v| v + amount);
                            }
                            let extra = ACCOUNTS + writer * batches + i;
                            txn.insert(extra, 0);
                            if let Some(previous) = previous_extra.replace(extra) {
                                assert_eq!(txn.remove(&previous), Some(0));
                            }
                        }),
                        // Breaks the total, then fails: must never be seen.
                        8 => {
                            let failed: Result<(), ()> = map.try_batch(|txn| {
                                txn.update(&rng.below(ACCOUNTS), |v| v + 1_000_000);
                                Err(())
                            });
                            assert!(failed.is_err());
                            aborted.fetch_add(1, Ordering::Relaxed);
                        }
                        // Breaks the total, then panics: must never be seen.
                        _ => {
                            let panicked = catch_unwind(AssertUnwindSafe(|| {
                                map.batch(|txn| {
                                    txn.insert(rng.below(ACCOUNTS), -1_000_000);
                                    panic!("{DELIBERATE}: writer {writer} gives up");
                                })
                            }));
                            assert!(panicked.is_err());
                            aborted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for writer in writers {
            writer.join().unwrap();
        }
        writers_done.store(true, Ordering::Release);
        for reader in readers {
            reader.join().unwrap();
        }
    });

    let checks = checks.load(Ordering::Relaxed);
    assert!(checks >= READERS as u64);
    println!(
        "{checks} snapshot checks by {READERS} readers while {WRITERS} writers ran {} batches",
        WRITERS * batches
    );
    assert_eq!(total(&map.snapshot()), TOTAL);
    let stats = map.stats();
    assert_eq!(stats.aborted, aborted.load(Ordering::Relaxed));
    assert_eq!(
        stats.published - published_before + stats.aborted,
        WRITERS * batches
    );
    let held = settle(&map, frees);
    assert_eq!(held, 0, "no reader holds an old version any more");
}

/// Marks the panics these tests raise on purpose.
const DELIBERATE: &str = "deliberate panic";

/// Silences the deliberate panics' messages (hundreds of them, with backtraces
/// under `RUST_BACKTRACE=1`); every other panic is reported as usual.
fn silence_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.contains(DELIBERATE) {
                report(info);
            }
        }));
    });
}

#[test]
fn every_clone_is_dropped_once_and_aborted_batches_leak_nothing() {
    every_clone_is_dropped_once_in(ArcSwapPublish, Frees::AtOnce);
}

#[cfg(feature = "crossbeam-epoch")]
#[test]
fn every_clone_is_dropped_once_crossbeam_epoch() {
    every_clone_is_dropped_once_in(readmostly::reclaim::CrossbeamEpoch, Frees::Flushed);
}

#[cfg(feature = "seize")]
#[test]
fn every_clone_is_dropped_once_seize() {
    every_clone_is_dropped_once_in(readmostly::reclaim::Seize::new(), Frees::Flushed);
}

fn every_clone_is_dropped_once_in<P: Publish>(publish: P, frees: Frees) {
    silence_deliberate_panics();
    let ledger = DropLedger::new();
    let map = SnapshotMap::with_publish(publish);
    map.batch(|txn| txn.extend((0..100).map(|k| (k, ledger.track(k)))));
    // Version 0 (empty) was replaced by version 1, which holds the 100 values.
    settle(&map, frees);
    assert_eq!(ledger.alive(), 100);

    // Each version owns its own clones: two versions alive, 200 values.
    let v0 = map.snapshot();
    map.insert(100, ledger.track(100));
    assert_eq!(ledger.alive(), 100 + 101);
    drop(v0);
    settle(&map, frees);
    assert_eq!(
        ledger.alive(),
        101,
        "version 1 freed with its last snapshot (and grace period)"
    );

    // Aborted and panicking batches drop their partial copies.
    let failed: Result<(), ()> = map.try_batch(|txn| {
        txn.insert(200, ledger.track(200));
        txn.remove(&1);
        Err(())
    });
    assert!(failed.is_err());
    assert_eq!(ledger.alive(), 101);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        map.batch(|txn| {
            txn.insert(300, ledger.track(300));
            txn.update(&2, |_| panic!("{DELIBERATE} in update"));
        })
    }));
    assert!(panicked.is_err());
    assert_eq!(ledger.alive(), 101);
    assert_eq!(map.version(), 2);

    // Many publishes with snapshots held at some of them.
    let mut held = Vec::new();
    for round in 0..1000u32 {
        map.batch(|txn| {
            txn.insert(round % 150, ledger.track(round));
            txn.remove(&(round % 37));
        });
        if round % 100 == 0 {
            held.push(map.snapshot());
        }
    }
    let expected: usize = held.iter().map(|s| s.len()).sum::<usize>() + map.len();
    let start = Instant::now();
    while ledger.alive() != expected && start.elapsed() < Duration::from_secs(60) {
        map.flush();
        thread::yield_now();
    }
    assert_eq!(
        ledger.alive(),
        expected,
        "exactly the held versions' values live"
    );
    assert_eq!(map.stats().held, held.len() as u64);
    drop(held);
    settle(&map, frees);
    assert_eq!(ledger.alive(), map.len());

    // Dropping the map drops the last version, and ends the grace period of
    // every version it replaced; a snapshot outliving the map keeps its values
    // until it goes.
    map.insert(5000, ledger.track(5000));
    let last = map.snapshot();
    let len = last.len();
    drop(map);
    assert_eq!(ledger.alive(), len);
    drop(last);
    assert_eq!(ledger.alive(), 0);
    assert_eq!(
        ledger.created(),
        ledger.dropped(),
        "no value dropped twice or leaked"
    );
}
