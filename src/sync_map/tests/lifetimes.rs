//! When keys and values are dropped in v3: the map's drop frees everything at
//! once — what its tables hold and what it retired and the reclaimer has not
//! freed yet — whatever guards other threads hold; zero-sized keys and values
//! with destructors are dropped exactly once, clones included.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use super::{Link, Place};
use crate::reclaim::{DefaultReclaim, Reclaim};
use crate::test_support::{flush_until_quiet, Counted, DropLog};
use crate::{LoadOrStore, SyncMap};

/// Runs `body` while another thread holds a guard pinned on a map of its own,
/// pinned before `body` starts and released after it returns. With the
/// crossbeam-epoch collector that freezes reclamation: the global epoch cannot
/// advance twice past the pin, so nothing retired inside `body` can be freed by
/// any thread's collection — only by its map's drop.
fn with_another_map_pinned<T>(body: impl FnOnce() -> T) -> T {
    let other: SyncMap<u8, u8> = SyncMap::new();
    other.insert(0, 0);
    let (pinned_tx, pinned_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        // Owned by this closure, so a panicking `body` drops it on the way out
        // and the other thread's `recv` returns: the scope's join cannot hang.
        let release_tx = release_tx;
        let other = &other;
        s.spawn(move || {
            let pinned = other.pin();
            assert_eq!(pinned.get(&0), Some(&0));
            pinned_tx.send(()).unwrap();
            // Pinned until released (or until the test fails and drops the sender).
            let _ = release_rx.recv();
            drop(pinned);
        });
        pinned_rx.recv().expect("the other thread pinned");
        let result = body();
        release_tx.send(()).unwrap();
        result
    })
}

/// The case: `insert(1, a); insert(1, b); drop(map)` — `b` is the
/// current value of an overwritten key, in a cell; `a` stays inline, stale, in
/// the delta node — while another thread holds a guard of *another* map the
/// whole time. Both, the key, every other key and value, every clone a
/// promotion made and every retired object are dropped by the time `drop`
/// returns.
#[test]
fn dropping_the_map_drops_everything_at_once_while_another_map_is_pinned() {
    let log = DropLog::new();
    with_another_map_pinned(|| {
        let map: SyncMap<Counted<u32>, Counted<&str>> = SyncMap::new();
        let (a, b) = (log.make("a"), log.make("b"));
        let (a_id, b_id) = (a.id, b.id);
        assert!(map.insert(log.make(1), a).is_none());
        assert_eq!(map.insert(log.make(1), b).map(|v| v.payload), Some("a"));
        assert_eq!(map.slot_of(&log.make(1)), Some(Place::Delta(Link::Cell)));
        drop(map);
        assert!(log.is_dropped(a_id) && log.is_dropped(b_id));
        assert_eq!(log.alive(), 0, "left behind by the map's drop");

        // Again with retired objects waiting: replaced cells, a promoted root
        // (keys, stale inline values, linked cells, delta nodes), grown deltas'
        // bucket arrays, removed keys, a cleared root.
        let map: SyncMap<Counted<u32>, Counted<&str>> = SyncMap::new();
        for k in 0..20 {
            map.insert(log.make(k), log.make("first"));
        }
        map.insert(log.make(1), log.make("second"));
        map.insert(log.make(1), log.make("third")); // retires "second"'s cell
        map.promote(); // retires the root: clones live on
        map.insert(log.make(2), log.make("second")); // a stale inline clone
        map.remove(&log.make(3));
        for k in 20..40 {
            map.insert(log.make(k), log.make("new"));
        }
        map.insert(log.make(25), log.make("second"));
        map.insert(log.make(25), log.make("third"));
        // With crossbeam-epoch's global collector the other thread's pin holds
        // back every free: flushing frees nothing. (seize's collector is this
        // map's own: another map's guard holds nothing back, and a flush may
        // free what it can.)
        for _ in 0..100 {
            map.flush();
        }
        let stats = map.stats();
        assert!(
            stats.values_retired >= 2 && stats.tables_retired >= 1,
            "{stats:?}"
        );
        #[cfg(feature = "crossbeam-epoch")]
        assert_eq!(
            stats.freed, 0,
            "the collector freed garbage despite the pin: {stats:?}"
        );
        assert!(log.alive() > 0);
        drop(map);
        assert_eq!(log.alive(), 0, "left behind by the map's drop");
        assert_eq!(log.double_drops(), 0);
    });
    // The collector's late calls for the retired objects find nothing to free.
    for _ in 0..100 {
        DefaultReclaim::default().flush();
    }
    assert_eq!(
        log.double_drops(),
        0,
        "the collector freed what the map's drop had freed"
    );
}

/// As above, and the overwrite happens while another thread holds a guard on
/// *this* map and reads the value being replaced: the guard keeps it alive
/// (the collector cannot free it, and here cannot free anything); once that
/// guard is gone the map can be dropped, and its drop frees it at once.
#[test]
fn dropping_the_map_drops_a_value_replaced_under_another_threads_guard() {
    let log = DropLog::new();
    with_another_map_pinned(|| {
        let map: SyncMap<u32, Counted<&str>> = SyncMap::new();
        map.insert(1, log.make("a"));
        map.insert(1, log.make("b")); // in a cell
        let (held_tx, held_rx) = mpsc::channel();
        let (check_tx, check_rx) = mpsc::channel::<()>();
        let b_id = thread::scope(|s| {
            let (map, log) = (&map, &log);
            s.spawn(move || {
                let pinned = map.pin();
                let b = pinned.get(&1).unwrap();
                held_tx.send(b.id).unwrap();
                check_rx.recv().unwrap();
                assert_eq!(b.payload, "b");
                assert!(!log.is_dropped(b.id), "dropped under a guard");
                assert_eq!(pinned.get(&1).map(|v| v.payload), Some("c"));
            });
            let b_id = held_rx.recv().unwrap();
            assert_eq!(map.insert(1, log.make("c")).map(|v| v.payload), Some("b"));
            map.flush();
            check_tx.send(()).unwrap();
            b_id
        });
        // The guard is gone, but the other map's pin keeps the collector from
        // freeing `b`: only the map's drop can.
        map.flush();
        // Only crossbeam-epoch's collector is global: seize's is this map's own,
        // and this thread's flush frees `b` (it retired it) once the guard is gone.
        #[cfg(feature = "crossbeam-epoch")]
        {
            assert!(!log.is_dropped(b_id));
            assert_eq!(map.stats().pending, 1);
        }
        drop(map);
        assert!(log.is_dropped(b_id));
        assert_eq!(log.alive(), 0, "left behind by the map's drop");
    });
    for _ in 0..100 {
        DefaultReclaim::default().flush();
    }
    assert_eq!(log.double_drops(), 0);
}

/// Zero-sized values with destructors: each gets a cell of its own when it is
/// written (compare-and-swap tells old from new by address), every one made —
/// clones by promotions included — is dropped exactly once, and the drop timing
/// is v3's: a replaced inline value is not retired, a replaced cell is.
#[test]
fn zero_sized_values_with_destructors_drop_exactly_once() {
    static MADE: AtomicUsize = AtomicUsize::new(0);
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug, PartialEq)]
    struct Unit;
    fn unit() -> Unit {
        MADE.fetch_add(1, Ordering::Relaxed);
        Unit
    }
    impl Clone for Unit {
        fn clone(&self) -> Self {
            unit()
        }
    }
    impl Drop for Unit {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    let alive = || MADE.load(Ordering::Relaxed) as isize - DROPS.load(Ordering::Relaxed) as isize;
    assert_eq!(core::mem::size_of::<Unit>(), 0);
    let map: SyncMap<u32, Unit> = SyncMap::new();
    {
        let pinned = map.pin();
        for i in 0..10 {
            assert!(pinned.insert(i, unit()).is_none());
        }
        // On inline values (in delta nodes): nothing retired.
        assert!(pinned.insert(0, unit()).is_some());
        assert!(pinned.compare_exchange(&1, &unit(), unit()).is_ok());
        assert!(pinned.update(&2, |_| unit()).is_some());
        assert!(pinned.remove(&3).is_some());
        assert!(pinned.remove(&3).is_none());
        assert!(!pinned.get_or_insert(4, unit()).is_stored());
        assert!(matches!(
            pinned.get_or_insert(3, unit()),
            LoadOrStore::Stored(_)
        ));
        assert_eq!(map.stats().values_retired, 0);
        // On cells: each one replaced is retired, exactly once.
        assert!(pinned.insert(0, unit()).is_some());
        assert!(pinned.compare_exchange(&1, &unit(), unit()).is_ok());
        assert!(pinned.update(&2, |_| unit()).is_some());
        assert!(pinned.remove(&3).is_some());
        assert_eq!(map.stats().values_retired, 4);
        assert_eq!(pinned.iter().count(), 9);
    }
    map.promote();
    map.check_root_exact();
    flush_until_quiet(&map);
    assert_eq!(
        alive(),
        9,
        "one unit per live key after promote() and a flush"
    );
    drop(map);
    assert_eq!(alive(), 0, "left behind by the map's drop");
}

/// Zero-sized keys *and* values with destructors: all keys of a zero-sized type
/// are equal, so the map has at most one key; every key and value made — the
/// duplicate keys an insert drops at once, the clones promotions make — is
/// dropped exactly once.
#[test]
fn zero_sized_keys_and_values_with_destructors_drop_exactly_once() {
    static KEYS_MADE: AtomicUsize = AtomicUsize::new(0);
    static KEYS_DROPPED: AtomicUsize = AtomicUsize::new(0);
    static VALUES_MADE: AtomicUsize = AtomicUsize::new(0);
    static VALUES_DROPPED: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug, PartialEq, Eq, Hash)]
    struct ZKey;
    #[derive(Debug, PartialEq)]
    struct ZValue;
    fn key() -> ZKey {
        KEYS_MADE.fetch_add(1, Ordering::Relaxed);
        ZKey
    }
    fn value() -> ZValue {
        VALUES_MADE.fetch_add(1, Ordering::Relaxed);
        ZValue
    }
    impl Clone for ZKey {
        fn clone(&self) -> Self {
            key()
        }
    }
    impl Clone for ZValue {
        fn clone(&self) -> Self {
            value()
        }
    }
    impl Drop for ZKey {
        fn drop(&mut self) {
            KEYS_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    impl Drop for ZValue {
        fn drop(&mut self) {
            VALUES_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let alive = || {
        let load = |a: &AtomicUsize| a.load(Ordering::Relaxed) as isize;
        (
            load(&KEYS_MADE) - load(&KEYS_DROPPED),
            load(&VALUES_MADE) - load(&VALUES_DROPPED),
        )
    };
    let map: SyncMap<ZKey, ZValue> = SyncMap::new();
    assert!(map.insert(key(), value()).is_none());
    assert_eq!(alive(), (1, 1));
    // The map keeps its key and drops the one passed in, at once.
    assert!(map.insert(key(), value()).is_some());
    assert_eq!(alive().0, 1);
    // (Probes are made with `key()` too, so that every drop has its making.)
    assert!(map.pin().update(&key(), |_| value()).is_some()); // retires a cell
    assert!(map.remove(&key()).is_some()); // retires a cell; the owned clone dropped
    assert_eq!(map.len(), 0);
    // One removed key of one: the map compacted itself.
    assert_eq!(map.root_sizes(), (0, 0));
    assert!(map.pin().get_or_insert_with(key(), value).is_stored());
    assert!(!map.pin().get_or_insert(key(), value()).is_stored());
    assert_eq!(map.slot_of(&key()), Some(Place::Delta(Link::Inline)));
    assert!(map.pin().insert(key(), value()).is_some());
    assert_eq!(map.slot_of(&key()), Some(Place::Delta(Link::Cell)));
    map.check_root_exact();
    map.promote();
    assert_eq!(map.slot_of(&key()), Some(Place::Read(Link::Inline)));
    flush_until_quiet(&map);
    assert_eq!(
        alive(),
        (1, 1),
        "one key and one value after promote() and a flush"
    );
    map.clear();
    flush_until_quiet(&map);
    assert_eq!(alive(), (0, 0), "cleared");
    map.insert(key(), value());
    map.insert(key(), value());
    map.promote();
    map.insert(key(), value());
    drop(map);
    assert_eq!(alive(), (0, 0), "left behind by the map's drop");
}

/// crossbeam-epoch only: its global collector runs a map's destructors from a
/// thread that no longer holds the map; seize's collector is the map's own and
/// runs them only inside a call on the map, which its drop cannot race.
#[cfg(feature = "crossbeam-epoch")]
mod collector_running_a_destructor {
    use std::thread;

    use crate::reclaim::{DefaultReclaim, Reclaim};
    use crate::SyncMap;

    /// Where a gated destructor is: (started, released, finished).
    #[derive(Default)]
    struct Gate {
        state: std::sync::Mutex<(bool, bool, bool)>,
        changed: std::sync::Condvar,
    }

    impl Gate {
        fn update(&self, f: impl FnOnce(&mut (bool, bool, bool))) {
            f(&mut self.state.lock().unwrap());
            self.changed.notify_all();
        }

        /// Waits until `done` holds, or `timeout` passes; the state then.
        fn wait(
            &self,
            done: impl Fn(&(bool, bool, bool)) -> bool,
            timeout: std::time::Duration,
        ) -> (bool, bool, bool) {
            let state = self.state.lock().unwrap();
            *self
                .changed
                .wait_timeout_while(state, timeout, |state| !done(state))
                .unwrap()
                .0
        }
    }

    /// A value whose destructor, if gated, announces that it started, waits to be
    /// released, and records that it finished. Clones are not gated.
    struct SlowDrop(Option<std::sync::Arc<Gate>>);

    impl Clone for SlowDrop {
        fn clone(&self) -> Self {
            SlowDrop(None)
        }
    }

    impl Drop for SlowDrop {
        fn drop(&mut self) {
            if let Some(gate) = &self.0 {
                gate.update(|state| state.0 = true);
                gate.wait(|state| state.1, std::time::Duration::from_secs(60));
                gate.update(|state| state.2 = true);
            }
        }
    }

    /// "Dropping the map drops every key and value at once": also one whose
    /// destructor the collector had started on another thread just before. Here
    /// another thread's flush runs the destructor of a retired value and it blocks;
    /// meanwhile the map is dropped, and the drop returns only once that destructor
    /// has finished. (The destructor is released after a second if `drop` waits for
    /// it, at once after `drop` returns otherwise; nothing here depends on how long
    /// anything takes.)
    #[test]
    fn dropping_the_map_waits_for_a_destructor_the_collector_is_running() {
        let gate = std::sync::Arc::new(Gate::default());
        let map: std::sync::Arc<SyncMap<u32, SlowDrop>> = std::sync::Arc::new(SyncMap::new());
        map.insert(1, SlowDrop(None));
        map.pin().insert(1, SlowDrop(Some(gate.clone()))); // in a cell
        let finished_when_dropped = thread::scope(|s| {
            // Another thread retires the gated cell (with enough values after it
            // to fill its ledger shard's batch, which then goes into its garbage
            // bag), lets go of the map and collects until the destructor runs
            // (and blocks).
            s.spawn({
                let (map, gate) = (map.clone(), gate.clone());
                move || {
                    for _ in 0..64 {
                        map.pin().insert(1, SlowDrop(None));
                    }
                    drop(map);
                    let reclaim = DefaultReclaim::default();
                    while !gate.state.lock().unwrap().0 {
                        reclaim.flush();
                        thread::yield_now();
                    }
                }
            });
            let started = gate.wait(|state| state.0, std::time::Duration::from_secs(60));
            assert!(started.0, "the collector never ran the destructor");
            // The releaser: lets the destructor finish once `drop` has returned, or
            // after a second if `drop` is waiting for it.
            let dropped = std::sync::Arc::new(Gate::default());
            let releaser = {
                let (gate, dropped) = (gate.clone(), dropped.clone());
                s.spawn(move || {
                    dropped.wait(|state| state.0, std::time::Duration::from_secs(1));
                    gate.update(|state| state.1 = true);
                })
            };
            let map = std::sync::Arc::into_inner(map).expect("the last reference");
            drop(map);
            let finished = gate.state.lock().unwrap().2;
            dropped.update(|state| state.0 = true);
            releaser.join().unwrap();
            finished
        });
        assert!(
            finished_when_dropped,
            "drop(map) returned while the destructor of one of its values was still running"
        );
    }

    /// A value that may hold its own map: the map's last reference, dropped by
    /// the collector while it frees a batch of the map's values.
    #[derive(Clone)]
    struct Owner(
        // Never read: held only to be dropped.
        #[allow(dead_code)] Option<std::sync::Arc<SyncMap<u32, Owner>>>,
    );

    /// A value whose drop drops the map it was retired from: the map's drop
    /// runs inside the collector's free of that value's batch, on the same
    /// thread, and must not wait for the rest of the batch (which runs after
    /// it, below it on the stack). Every value is still dropped exactly once.
    #[test]
    fn a_value_whose_drop_drops_its_own_map_does_not_stall_the_collector() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // Not scoped: if the drop waits for itself, this thread hangs and the
        // test fails on the timeout below instead of hanging too.
        thread::spawn(move || {
            let map = std::sync::Arc::new(SyncMap::<u32, Owner>::new());
            let weak = std::sync::Arc::downgrade(&map);
            map.insert(1, Owner(None));
            // In a cell; the loop retires that cell, then fills its batch (and
            // more) behind it.
            map.insert(1, Owner(Some(map.clone())));
            for _ in 0..64 {
                map.insert(1, Owner(None));
            }
            drop(map);
            let reclaim = DefaultReclaim::default();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while weak.strong_count() > 0 && std::time::Instant::now() < deadline {
                reclaim.flush();
                thread::yield_now();
            }
            done_tx.send(weak.strong_count()).unwrap();
        });
        let left = done_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the collector stalled: the map's drop waited for its own batch");
        assert_eq!(left, 0, "the collector never dropped the map");
    }
}

/// Overwrites reuse the memory of freed cells (outside builds for memory
/// checkers): each value is still dropped exactly once, and a flush with
/// nothing pending gives every kept cell back.
#[test]
fn reused_cells_drop_each_value_once_and_a_flush_gives_them_back() {
    let log = DropLog::new();
    let map = SyncMap::new();
    for i in 0..5_000u64 {
        map.insert(i % 4, log.make(i));
        if i % 1_000 == 0 {
            let stats = map.stats();
            assert_eq!(
                stats.spare_bytes,
                stats.spare_cells
                    * crate::raw::cell::cell_bytes::<crate::test_support::Counted<u64>>() as u64
            );
        }
    }
    flush_until_quiet(&map);
    // Nothing is pending now, so no free can refill the spares after this.
    map.flush();
    let stats = map.stats();
    assert_eq!((stats.spare_cells, stats.spare_bytes), (0, 0), "{stats:?}");
    // The current values, and the first ones while they stay inline in their
    // slots (until a promotion retires the table that holds them).
    assert!((4..=8).contains(&log.alive()), "{} alive", log.alive());
    assert_eq!(log.double_drops(), 0);
    drop(map);
    assert_eq!(log.alive(), 0);
    assert_eq!(log.double_drops(), 0);
}
