//! `SyncMap::pin_owned` inside a real multi-threaded tokio runtime, and the
//! read-modify-writes a dashmap or papaya user reaches for first
//! (`update_or_insert_with`, `get_or_insert_with`), checked exactly.
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{DropLedger, Tracked};
use readmostly::{OwnedPinned, SyncMap};

const TIMEOUT: Duration = Duration::from_secs(60);

/// An `OwnedPinned` is `Send + Sync + 'static` for a map in an `Arc`.
#[test]
fn an_owned_guard_is_send_sync_and_static() {
    fn assert_send_sync_static<T: Send + Sync + 'static>() {}
    assert_send_sync_static::<OwnedPinned<String, Vec<u8>>>();
}

/// Tasks hold an owned guard and references from it across `.await` points
/// while the runtime moves them between its worker threads, and while other
/// tasks overwrite the keys they read (retiring the values they hold) and force
/// promotions (retiring whole tables). Every reference stays valid and
/// unchanged until its guard goes; afterwards everything is freed.
#[test]
fn references_from_an_owned_guard_survive_awaits_across_worker_threads() {
    const TASKS: u64 = 64;
    const KEYS: u64 = 200;
    let values = DropLedger::new();
    let map: Arc<SyncMap<u64, Tracked<u64>>> = Arc::new(SyncMap::new());
    for k in 0..KEYS {
        map.insert(k, values.track(k * 1000));
    }
    map.promote();
    let threads_seen = Arc::new(Mutex::new(HashSet::new()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let (map, values, threads_seen) =
                (Arc::clone(&map), values.clone(), Arc::clone(&threads_seen));
            tasks.push(tokio::spawn(async move {
                let pinned = map.pin_owned();
                let k = t % KEYS;
                let held = pinned.get(&k).expect("present");
                let (id, payload) = (held.id(), held.payload);
                for round in 0..20u64 {
                    threads_seen.lock().unwrap().insert(thread::current().id());
                    if round % 3 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    // Writers on other tasks: overwrite neighbours and promote.
                    map.insert((k + round) % KEYS, values.track(round));
                    if round % 7 == 0 {
                        map.promote();
                    }
                    assert_eq!((held.id(), held.payload), (id, payload), "task {t}");
                    assert!(!values.is_dropped(id), "task {t}: held value dropped");
                }
                // Writes through the owned guard hand back references too (a key
                // of this task's own, which no other task writes).
                let own = KEYS + t;
                assert!(pinned.insert(own, values.track(7)).is_none());
                let previous = pinned.insert(own, values.track(8)).expect("present");
                tokio::task::yield_now().await;
                assert_eq!(previous.payload, 7);
                assert_eq!(pinned.get(&own).map(|v| v.payload), Some(8));
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert!(
        threads_seen.lock().unwrap().len() > 1,
        "the tasks ran on one worker thread only"
    );
    // Everything retired while guards were held is freed once they are gone,
    // whatever thread retired it: a flush reaches what the runtime's workers
    // left in their thread-local bags or batches.
    common::flush_until_quiet(&map, TIMEOUT);
    drop(runtime);
    let map = Arc::into_inner(map).expect("no other handle");
    drop(map);
    values.assert_alive(0);
}

/// A long-held owned guard keeps what the map retires after it was taken (and
/// only that), and lets it go when dropped.
#[test]
fn an_owned_guard_holds_only_what_was_retired_after_it() {
    let values = DropLedger::new();
    let map: Arc<SyncMap<u64, Tracked<u64>>> = Arc::new(SyncMap::new());
    map.insert(1, values.track(1));
    map.insert(1, values.track(2)); // a cell
    let before = map.pin().get(&1).unwrap().id();
    map.insert(1, values.track(3)); // retires value 2 before the hold
    let pinned = map.pin_owned();
    let held = pinned.get(&1).unwrap().id();
    // Retires value 3 after the hold.
    map.insert(1, values.track(4));
    // (Flushing the map's own reclaimer too: seize's collector is per map.)
    common::flush_until(
        || {
            map.flush();
            values.is_dropped(before)
        },
        TIMEOUT,
        "a value retired before the hold is freed as usual",
    );
    for _ in 0..200 {
        map.flush();
    }
    assert!(!values.is_dropped(held), "held value freed under the hold");
    assert!(map.stats().pending >= 1);
    drop(pinned);
    common::flush_until(
        || {
            map.flush();
            values.is_dropped(held)
        },
        TIMEOUT,
        "freed after the hold",
    );
}

/// `update_or_insert_with` from 8 threads on a few hot keys: every increment
/// counts, exactly, and `insert` runs once per key.
#[test]
fn a_counter_map_incremented_from_8_threads_is_exact() {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 5_000;
    const KEYS: u64 = 8;
    let map: SyncMap<u64, u64> = SyncMap::new();
    let inserts = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (map, inserts) = (&map, &inserts);
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let key = (i + t as u64) % KEYS;
                    if i % 2 == 0 {
                        map.pin().update_or_insert_with(
                            key,
                            |n| n + 1,
                            || {
                                inserts.fetch_add(1, Ordering::Relaxed);
                                1
                            },
                        );
                    } else {
                        map.update_or_insert_with(
                            key,
                            |n| n + 1,
                            || {
                                inserts.fetch_add(1, Ordering::Relaxed);
                                1
                            },
                        );
                    }
                    if i % 1000 == 999 && t == 0 {
                        map.promote();
                    }
                }
            });
        }
    });
    let total: u64 = (0..KEYS).map(|k| map.get_cloned(&k).unwrap()).sum();
    assert_eq!(total, THREADS as u64 * PER_THREAD);
    // Once per key at least; more when a thread made a value while the key was
    // absent and another stored first (its value was then dropped).
    assert!(inserts.load(Ordering::Relaxed) as u64 >= KEYS);
}

/// The same through owned guards on tokio tasks.
#[test]
fn a_counter_map_incremented_from_tasks_through_owned_guards_is_exact() {
    let map: Arc<SyncMap<&'static str, u64>> = Arc::new(SyncMap::new());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let map = Arc::clone(&map);
                tokio::spawn(async move {
                    for _ in 0..200 {
                        let pinned = map.pin_owned();
                        pinned.update_or_insert_with("hits", |n| n + 1, || 1);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert_eq!(map.get_cloned("hits"), Some(32 * 200));
}

/// `update_or_insert_with`'s closures run without the lock: they may use the
/// map (a hang here would be a deadlock; the watchdog fails it instead).
#[test]
fn update_or_insert_with_closures_may_use_the_map() {
    common::no_hang(|| {
        let map: SyncMap<u64, u64> = SyncMap::new();
        map.insert(1, 10);
        let pinned = map.pin();
        let v = pinned.update_or_insert_with(
            2,
            |_| unreachable!("absent"),
            || {
                map.insert(3, 30);
                map.get_cloned(&1).unwrap() + 1
            },
        );
        assert_eq!(*v, 11);
        let v = pinned.update_or_insert_with(2, |n| n + map.get_cloned(&3).unwrap(), || 0);
        assert_eq!(*v, 41);
        assert_eq!(map.get_or_insert_with(4, || map.len() as u64), 3);
    });
}

/// `refresh` lets go of what the old hold kept, and keeps what the new one must.
#[test]
fn refresh_frees_what_only_the_old_hold_kept() {
    let values = DropLedger::new();
    let map = Arc::new(SyncMap::new());
    map.insert(1, values.track(1));
    map.promote();
    let mut pinned = map.pin_owned();
    let first = pinned.get(&1).unwrap().id();
    let two = values.track(2);
    let second = two.id();
    map.insert(1, two); // value 1 stays inline in the read table
    map.insert(1, values.track(3)); // retires value 2's cell, after the hold
    map.promote(); // retires the table holding value 1, after the hold
    for _ in 0..100 {
        map.flush();
    }
    assert!(
        !values.is_dropped(first) && !values.is_dropped(second),
        "freed under the hold"
    );
    pinned.refresh();
    common::flush_until(
        || {
            map.flush();
            values.is_dropped(first) && values.is_dropped(second)
        },
        TIMEOUT,
        "freed after the refresh",
    );
    assert_eq!(pinned.get(&1).map(|v| v.payload), Some(3));
}

/// `OwnedPinned::get_or_insert` is Go's `LoadOrStore`, as on `Pinned`: the
/// first call stores its value, later ones return it and drop theirs at once,
/// and the stored value lives until the map goes.
#[test]
fn get_or_insert_through_an_owned_guard_stores_once_and_drops_the_rest() {
    let values = DropLedger::new();
    {
        let map: Arc<SyncMap<u64, Tracked<u64>>> = Arc::new(SyncMap::new());
        let pinned = map.pin_owned();
        let first = pinned.get_or_insert(7, values.track(1));
        assert!(first.is_stored());
        assert_eq!(first.value().payload, 1);
        let second = pinned.get_or_insert(7, values.track(2));
        assert!(!second.is_stored());
        assert_eq!(second.value().payload, 1);
        assert_eq!(values.created(), 2);
        assert_eq!(values.alive(), 1, "the unused value drops at once");
        drop(pinned);
        assert_eq!(map.get_cloned(&7).map(|v| v.payload), Some(1));
    }
    values.assert_alive(0);
}
