//! The same map under every publication scheme (`reclaim::Publish`): arc-swap
//! (the default), crossbeam-epoch and seize. Each generic test below runs once
//! per scheme the build has (the `schemes!` list at the end).
//!
//! Under arc-swap a replaced version is freed by its last holder at once; under
//! the reclamation backends its published reference waits for a grace period,
//! so the tests that count frees flush (`settle`) until the count is reached.
//! Dropping the map ends every grace period of its own versions at once.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use crate::reclaim::Publish;
use crate::test_support::{Counted, DropLog, Rng, FLUSH_TIMEOUT};
use crate::{Snapshot, SnapshotMap};

type Map<K, V, P> = SnapshotMap<K, V, RandomState, P>;

/// Flushes `map`'s scheme until `done()` holds; fails after [`FLUSH_TIMEOUT`].
#[track_caller]
fn settle<K, V, P: Publish>(map: &Map<K, V, P>, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        map.flush();
        assert!(
            start.elapsed() < FLUSH_TIMEOUT,
            "{what}: not reached after {FLUSH_TIMEOUT:?}"
        );
        thread::yield_now();
    }
}

/// Reads, writes, version numbers and the standard traits.
fn basics<P: Publish>(make: fn() -> P) {
    let map: Map<&str, u32, P> = SnapshotMap::with_publish(make());
    assert_eq!((map.len(), map.version()), (0, 0));
    assert_eq!(map.insert("a", 1), None);
    assert_eq!(map.insert("a", 2), Some(1));
    map.batch(|txn| {
        txn.insert("b", 3);
        txn.insert("c", 4);
    });
    assert_eq!(map.remove("missing"), None);
    assert_eq!(map.version(), 3, "one version per publish, none for no-ops");
    assert_eq!(map.get("a").as_deref(), Some(&2));
    assert!(map.get("missing").is_none());
    assert_eq!(map.get_cloned("b"), Some(3));
    assert!(map.contains_key("c"));
    assert_eq!(map.update("c", |v| v * 10), Some(40));
    assert_eq!(map.compare_exchange("c", &40, 41), Ok(40));
    assert_eq!(map.remove_if("b", |v| *v == 3), Some(3));
    let mut listed: Vec<_> = map.iter().collect();
    listed.sort();
    assert_eq!(listed, [("a", 2), ("c", 41)]);

    let mut watcher = map.watch();
    let before = map.snapshot();
    map.replace_all([("z", 26)]);
    let after = watcher.try_next().expect("a new version");
    assert_eq!(before.diff(&after).count(), 3);

    let copy = map.clone();
    assert!(copy == map);
    copy.insert("y", 25);
    assert_eq!((map.len(), copy.len(), copy.version()), (1, 2, 1));
    map.clear();
    assert!(map.is_empty());
}

/// A snapshot, and a `SnapshotRef` (which holds the scheme's loaded value: a
/// pinned guard under the backends), taken before 1,000 publishes still read
/// their own version; once dropped, no old version is left.
fn held_across_many_swaps<P: Publish>(make: fn() -> P) {
    let map: Map<u32, String, P> = SnapshotMap::with_publish(make());
    map.batch(|txn| txn.extend((0..100).map(|i| (i, format!("v0-{i}")))));
    let first = map.snapshot();
    let held = map.get(&7).unwrap();
    for round in 1..=1000u32 {
        map.batch(|txn| {
            txn.insert(round % 100, format!("v{round}"));
            txn.remove(&(100 + round - 1));
            txn.insert(100 + round, String::new());
        });
    }
    assert_eq!(*held, "v0-7");
    assert_eq!(first.len(), 100);
    for i in 0..100 {
        assert_eq!(first.get(&i).map(String::as_str), Some(&*format!("v0-{i}")));
    }
    assert_eq!(map.get_cloned(&0).as_deref(), Some("v1000"));
    let stats = map.stats();
    assert_eq!(stats.published, 1001);
    assert!(stats.held >= 1, "the held version is alive: {stats:?}");
    drop(held);
    drop(first);
    settle(&map, "every replaced version freed", || {
        map.stats().held == 0
    });
    let stats = map.stats();
    assert_eq!((stats.retired, stats.freed), (1001, 1001));
}

/// Every value clone a version owns is dropped exactly once: replaced versions
/// after their last snapshot (and, under a backend, their grace period), the
/// rest with the map and the snapshots that outlive it.
fn every_value_dropped_once<P: Publish>(make: fn() -> P) {
    let log = DropLog::new();
    let map: Map<u32, Counted<u32>, P> = SnapshotMap::with_publish(make());
    map.batch(|txn| txn.extend((0..50).map(|k| (k, log.make(k)))));
    let mut held: Vec<Snapshot<u32, Counted<u32>>> = Vec::new();
    for round in 0..400u32 {
        map.batch(|txn| {
            txn.insert(round % 80, log.make(round));
            txn.remove(&(round % 23));
        });
        if round % 50 == 0 {
            held.push(map.snapshot());
        }
    }
    let live: usize = held.iter().map(Snapshot::len).sum::<usize>() + map.len();
    assert!(log.alive() >= live);
    settle(&map, "only the held versions' values alive", || {
        log.alive() == live
    });
    assert_eq!(map.stats().held, held.len() as u64);
    drop(held);
    settle(&map, "only the current version's values alive", || {
        log.alive() == map.len()
    });

    // Replaced versions waiting for their grace period are dropped with the
    // map, at once; a snapshot outliving the map keeps its own values.
    map.insert(1000, log.make(1000));
    map.insert(1001, log.make(1001));
    let last = map.snapshot();
    let len = last.len();
    drop(map);
    assert_eq!(log.alive(), len, "the map's drop ends every grace period");
    drop(last);
    assert_eq!(log.alive(), 0);
    assert_eq!(log.double_drops(), 0, "a value was dropped twice");
}

/// A writer moves amounts between accounts in batches that keep the total;
/// readers check it through every read path: never half a batch.
fn readers_see_whole_batches<P: Publish>(make: fn() -> P) {
    const ACCOUNTS: u64 = 16;
    const TOTAL: i64 = 16 * 100;
    let map: Map<u64, i64, P> = SnapshotMap::with_publish(make());
    map.batch(|txn| txn.extend((0..ACCOUNTS).map(|k| (k, 100))));
    let done = AtomicBool::new(false);
    let checks = AtomicU64::new(0);
    thread::scope(|s| {
        for reader in 0..3 {
            let (map, done, checks) = (&map, &done, &checks);
            s.spawn(move || {
                let mut last = 0;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let snapshot = map.snapshot();
                    assert_eq!(snapshot.values().sum::<i64>(), TOTAL, "reader {reader}");
                    assert!(snapshot.version() >= last, "versions went back");
                    last = snapshot.version();
                    assert_eq!(map.iter().map(|(_, v)| v).sum::<i64>(), TOTAL);
                    // Through the map's own loads: one version per call.
                    let one = map.get(&(last % ACCOUNTS)).map(|v| *v);
                    assert!(one.is_some());
                    checks.fetch_add(1, Ordering::Relaxed);
                    if finished {
                        break;
                    }
                }
            });
        }
        let mut rng = Rng::new(7);
        for _ in 0..2000 {
            let (from, to) = (rng.below(ACCOUNTS), rng.below(ACCOUNTS));
            let amount = rng.below(50) as i64;
            map.batch(|txn| {
                txn.update(&from, |v| v - amount);
                txn.update(&to, |v| v + amount);
            });
            if rng.one_in(10) {
                let failed: Result<(), ()> = map.try_batch(|txn| {
                    txn.update(&from, |v| v + 1_000_000);
                    Err(())
                });
                assert!(failed.is_err());
            }
        }
        done.store(true, Ordering::Release);
    });
    assert!(checks.load(Ordering::Relaxed) >= 3);
    assert_eq!(map.snapshot().values().sum::<i64>(), TOTAL);
}

/// A model check of one long random run, against `std::collections::HashMap`,
/// with snapshots of every 50th version re-checked at the end.
fn matches_hash_map<P: Publish>(make: fn() -> P) {
    let map: Map<u16, u64, P> = SnapshotMap::with_publish(make());
    let mut model: HashMap<u16, u64> = HashMap::new();
    let mut history = Vec::new();
    let mut rng = Rng::new(42);
    for step in 0..3000u64 {
        let key = rng.below(64) as u16;
        match rng.below(6) {
            0 | 1 => assert_eq!(map.insert(key, step), model.insert(key, step)),
            2 => assert_eq!(map.remove(&key), model.remove(&key)),
            3 => assert_eq!(
                map.update(&key, |v| v + 1),
                model.get_mut(&key).map(|v| {
                    *v += 1;
                    *v
                })
            ),
            4 => {
                let keys: Vec<u16> = (0..8).map(|_| rng.below(64) as u16).collect();
                map.batch(|txn| {
                    for &k in &keys {
                        txn.insert(k, step);
                    }
                });
                model.extend(keys.iter().map(|&k| (k, step)));
            }
            _ => assert_eq!(map.get(&key).map(|v| *v), model.get(&key).copied()),
        }
        assert_eq!(map.len(), model.len());
        if step % 50 == 0 {
            history.push((map.snapshot(), model.clone()));
        }
    }
    for (snapshot, model) in &history {
        let seen: HashMap<u16, u64> = snapshot.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(&seen, model, "version {}", snapshot.version());
    }
}

macro_rules! schemes {
    ($($(#[$cfg:meta])* $scheme:ident => $make:expr;)*) => {$(
        $(#[$cfg])*
        mod $scheme {
            #[test]
            fn basics() {
                super::basics($make);
            }

            #[test]
            fn held_across_many_swaps() {
                super::held_across_many_swaps($make);
            }

            #[test]
            fn every_value_dropped_once() {
                super::every_value_dropped_once($make);
            }

            #[test]
            fn readers_see_whole_batches() {
                super::readers_see_whole_batches($make);
            }

            #[test]
            fn matches_hash_map() {
                super::matches_hash_map($make);
            }
        }
    )*};
}

schemes! {
    arc_swap => || crate::reclaim::ArcSwapPublish;
    #[cfg(feature = "crossbeam-epoch")]
    crossbeam_epoch => || crate::reclaim::CrossbeamEpoch;
    #[cfg(feature = "seize")]
    seize => crate::reclaim::Seize::new;
    // Small batches: replaced versions are handed over after every retirement.
    #[cfg(feature = "seize")]
    seize_batch_of_one => || crate::reclaim::Seize::with_batch_size(1);
}
