//! The seize backend (`reclaim::Seize`, feature `seize`), named explicitly, so
//! that these tests run in a build with both backends (`--features seize`) as
//! well as in one with seize alone:
//!
//! * differential: `SyncMap` and `ClassicSyncMap` on seize against
//!   `std::collections::HashMap`, with small and default batch sizes;
//! * a value read through a live guard is never dropped while another thread
//!   churns the map and flushes (drop counting);
//! * seize's partial batches: what an exited thread retired stays in its batch
//!   in the map's collector — a flush on another thread cannot free it — and the
//!   map's drop frees it, every object exactly once;
//! * `Pinned::refresh` lets go of what the guard held.

mod common;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{seize_batch_size, DropLedger, Rng, Tracked};
use readmostly::classic::ClassicSyncMap;
use readmostly::reclaim::Seize;
use readmostly::{LoadOrStore, SyncMap};

type Map<K, V> = SyncMap<K, V, RandomState, Seize>;
type Classic<K, V> = ClassicSyncMap<K, V, RandomState, Seize>;

fn map_with_batch<K, V>(batch: Option<usize>) -> Map<K, V> {
    let reclaim = batch.map_or_else(Seize::new, Seize::with_batch_size);
    SyncMap::with_hasher_and_reclaim(RandomState::new(), reclaim)
}

/// Random operations on a `SyncMap<u64, u64, _, Seize>` and a `HashMap`, every
/// result compared; promotions, clears and flushes interleaved.
fn sync_map_differential(seed: u64, batch: Option<usize>) {
    let map: Map<u64, u64> = map_with_batch(batch);
    let mut model: HashMap<u64, u64> = HashMap::new();
    let mut rng = Rng::new(seed);
    for op in 0..20_000u64 {
        let k = rng.below(200);
        let v = rng.below(1_000);
        match rng.below(100) {
            0..=29 => assert_eq!(map.insert(k, v), model.insert(k, v), "op {op}: insert {k}"),
            30..=39 => {
                let got = map.pin().insert(k, v).copied();
                assert_eq!(got, model.insert(k, v), "op {op}: pinned insert {k}");
            }
            40..=54 => assert_eq!(map.remove(&k), model.remove(&k), "op {op}: remove {k}"),
            55..=64 => {
                let pinned = map.pin();
                let got = pinned.update(&k, |old| old + 1).copied();
                let want = model.get_mut(&k).map(|old| {
                    *old += 1;
                    *old
                });
                assert_eq!(got, want, "op {op}: update {k}");
            }
            65..=72 => {
                let pinned = map.pin();
                let got = match pinned.get_or_insert(k, v) {
                    LoadOrStore::Loaded(x) => (*x, false),
                    LoadOrStore::Stored(x) => (*x, true),
                };
                let stored = !model.contains_key(&k);
                let want = *model.entry(k).or_insert(v);
                assert_eq!(got, (want, stored), "op {op}: get_or_insert {k}");
            }
            73..=78 => {
                let pinned = map.pin();
                let current = model.get(&k).copied().unwrap_or(v);
                let got = pinned.compare_exchange(&k, &current, v + 1);
                if model.get(&k) == Some(&current) {
                    assert_eq!(got.ok().copied(), Some(current), "op {op}: cas {k}");
                    model.insert(k, v + 1);
                } else {
                    let err = got.expect_err("absent key: the exchange fails");
                    assert!(err.current.is_none(), "op {op}: cas {k}");
                }
            }
            79..=80 => {
                let got = map.pin().remove_if(&k, |x| x % 2 == 0).copied();
                let want = model.get(&k).copied().filter(|x| x % 2 == 0);
                if want.is_some() {
                    model.remove(&k);
                }
                assert_eq!(got, want, "op {op}: remove_if {k}");
            }
            81..=95 => {
                assert_eq!(
                    map.get_cloned(&k),
                    model.get(&k).copied(),
                    "op {op}: get {k}"
                );
            }
            96..=97 => map.promote(),
            98 => map.flush(),
            _ => {
                if rng.one_in(10) {
                    map.clear();
                    model.clear();
                }
            }
        }
        assert_eq!(map.len(), model.len(), "op {op}: len");
    }
    let mut got: Vec<(u64, u64)> = map.pin().iter().map(|(k, v)| (*k, *v)).collect();
    let mut want: Vec<(u64, u64)> = model.into_iter().collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    let stats = map.stats();
    assert!(
        stats.values_retired > 0 && stats.tables_retired > 0,
        "{stats:?}"
    );
}

#[test]
fn sync_map_on_seize_matches_a_hashmap() {
    sync_map_differential(0x5E12E, None);
}

#[test]
fn sync_map_on_seize_with_tiny_batches_matches_a_hashmap() {
    sync_map_differential(0x5E12F, Some(2));
}

/// As above for `ClassicSyncMap<u64, u64, _, Seize>`.
fn classic_differential(seed: u64, batch: Option<usize>) {
    let reclaim = batch.map_or_else(Seize::new, Seize::with_batch_size);
    let map: Classic<u64, u64> =
        ClassicSyncMap::with_hasher_and_reclaim(RandomState::new(), reclaim);
    let mut model: HashMap<u64, u64> = HashMap::new();
    let mut rng = Rng::new(seed);
    for op in 0..20_000u64 {
        let k = rng.below(200);
        let v = rng.below(1_000);
        match rng.below(100) {
            0..=29 => assert_eq!(map.insert(k, v), model.insert(k, v), "op {op}: insert {k}"),
            30..=39 => {
                let got = map.pin().insert(k, v).copied();
                assert_eq!(got, model.insert(k, v), "op {op}: pinned insert {k}");
            }
            40..=54 => assert_eq!(map.remove(&k), model.remove(&k), "op {op}: remove {k}"),
            55..=64 => {
                let pinned = map.pin();
                let got = pinned.update(&k, |old| old + 1).copied();
                let want = model.get_mut(&k).map(|old| {
                    *old += 1;
                    *old
                });
                assert_eq!(got, want, "op {op}: update {k}");
            }
            65..=72 => {
                let pinned = map.pin();
                let got = match pinned.get_or_insert(k, v) {
                    LoadOrStore::Loaded(x) => (*x, false),
                    LoadOrStore::Stored(x) => (*x, true),
                };
                let stored = !model.contains_key(&k);
                let want = *model.entry(k).or_insert(v);
                assert_eq!(got, (want, stored), "op {op}: get_or_insert {k}");
            }
            73..=80 => {
                let got = map.remove_if(&k, |x| x % 2 == 0);
                let want = model.get(&k).copied().filter(|x| x % 2 == 0);
                if want.is_some() {
                    model.remove(&k);
                }
                assert_eq!(got, want, "op {op}: remove_if {k}");
            }
            81..=95 => {
                let got = map.pin().get(&k).copied();
                assert_eq!(got, model.get(&k).copied(), "op {op}: get {k}");
            }
            96..=97 => map.promote(),
            98 => map.flush(),
            _ => {
                if rng.one_in(10) {
                    map.clear();
                    model.clear();
                }
            }
        }
        assert_eq!(map.len(), model.len(), "op {op}: len");
    }
    let mut got: Vec<(u64, u64)> = map
        .pin()
        .entries()
        .into_iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    let mut want: Vec<(u64, u64)> = model.into_iter().collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(map.stats().values_retired > 0, "{:?}", map.stats());
}

#[test]
fn classic_sync_map_on_seize_matches_a_hashmap() {
    classic_differential(0xC1A55, None);
}

#[test]
fn classic_sync_map_on_seize_with_tiny_batches_matches_a_hashmap() {
    classic_differential(0xC1A56, Some(2));
}

/// This thread reads key 1's value (in a cell: written after the insert) and
/// key 2's (inline in the read table) through one guard and keeps both
/// references while another thread removes both keys, overwrites and removes
/// others, promotes (retiring whole tables), and flushes after every round — with
/// batches of 2, so that it retires full batches all the time. Neither value is
/// dropped while the guard lives; everything is dropped exactly once by the end.
#[test]
fn a_value_read_through_a_live_guard_survives_churn_and_flushes_on_another_thread() {
    let ledger = DropLedger::new();
    {
        let map: Map<u64, Tracked<u64>> = map_with_batch(Some(2));
        for k in 0..64 {
            map.insert(k, ledger.track(k * 10));
        }
        map.promote();
        map.insert(1, ledger.track(11)); // a cell
        let pinned = map.pin();
        let cell = pinned.get(&1).unwrap();
        let inline = pinned.get(&2).unwrap();
        let (cell_id, inline_id) = (cell.id(), inline.id());
        let stop = AtomicBool::new(false);
        let freed_while_held = thread::scope(|scope| {
            let (map, ledger, stop) = (&map, &ledger, &stop);
            let churn = scope.spawn(move || {
                assert_eq!(map.remove(&1).map(|v| v.payload), Some(11));
                assert_eq!(map.remove(&2).map(|v| v.payload), Some(20));
                map.promote(); // retires the table holding key 2's inline value
                let mut rng = Rng::new(0xC4A2);
                for round in 0..2_000u64 {
                    let k = 3 + rng.below(61);
                    if rng.one_in(3) {
                        map.remove(&k);
                    } else {
                        map.pin().insert(k, ledger.track(round));
                    }
                    if round % 200 == 0 {
                        map.promote();
                    }
                    map.flush();
                }
                stop.store(true, Ordering::Release);
            });
            while !stop.load(Ordering::Acquire) {
                assert!(!ledger.is_dropped(cell_id), "a held value was dropped");
                assert!(!ledger.is_dropped(inline_id), "a held value was dropped");
                assert_eq!((cell.payload, inline.payload), (11, 20));
                thread::sleep(Duration::from_millis(1));
            }
            churn.join().unwrap();
            map.stats().freed
        });
        assert!(!ledger.is_dropped(cell_id) && !ledger.is_dropped(inline_id));
        assert_eq!((cell.payload, inline.payload), (11, 20));
        assert!(map.stats().pending > 0);
        drop(pinned);
        // The churning thread retired full batches while this thread was pinned:
        // seize handed each to this thread's reservation too, and this guard's
        // exit released them. (What the churn left in a partial batch waits for
        // the map's drop.)
        map.flush();
        let stats = map.stats();
        assert!(stats.freed > freed_while_held, "{stats:?}");
        assert_eq!(ledger.double_drops(), 0);
        assert!(!map.contains_key(&1) && !map.contains_key(&2));
    }
    ledger.assert_alive(0);
}

/// seize keeps what a thread retires in a batch of that thread's, inside the
/// map's collector, and retires the batch once it is full. Here threads retire
/// fewer objects than a batch and exit: flushing from this thread cannot free
/// what they left (a flush hands over only the calling thread's batch), and
/// dropping the map frees all of it, each object exactly once. One more thread
/// retires more than a batch, so some of its garbage is freed before the drop.
#[test]
fn dropping_the_map_frees_what_exited_threads_left_in_partial_batches() {
    let batch = seize_batch_size();
    let ledger = DropLedger::new();
    let map: Map<u64, Tracked<u64>> =
        SyncMap::with_hasher_and_reclaim(RandomState::new(), Seize::new());
    for k in 0..4 {
        map.insert(k, ledger.track(0));
    }
    map.promote();
    // Each key's first overwrite replaces its inline value, which stays in the
    // table (nothing retired); every later one retires exactly one cell.
    for k in 0..4 {
        map.insert(k, ledger.track(1));
    }
    map.flush();
    assert_eq!(map.stats().pending, 0, "{:?}", map.stats());
    let retired_before = map.stats().values_retired;
    // Threads 0..3 retire 1, 5, 9 and 2 * batch + 3 cells on a key of their own.
    let counts = [1, 5, 9, 2 * batch as u64 + 3];
    thread::scope(|scope| {
        for (k, &n) in counts.iter().enumerate() {
            let (map, ledger) = (&map, &ledger);
            scope.spawn(move || {
                for i in 0..n {
                    let old = map.insert(k as u64, ledger.track(100 + i));
                    assert!(old.is_some());
                }
            });
        }
    });
    let retired: u64 = counts.iter().sum();
    assert_eq!(map.stats().values_retired - retired_before, retired);
    for _ in 0..100 {
        map.flush();
    }
    let stats = map.stats();
    // Pending: the small partial batches (1, 5 and 9 cells) and the last
    // thread's remainder (3): it retired two full batches, freed once every
    // thread active at their retirement had left. (Were a thread id reused by a
    // later thread, its batch would carry over: the total pending is the same,
    // as only full batches are ever retired.)
    assert_eq!(stats.pending, 1 + 5 + 9 + 3, "{stats:?}");
    // Alive: 4 current values, 4 stale inline ones, and every pending cell.
    assert_eq!(ledger.alive() as u64, 8 + stats.pending);
    drop(map);
    ledger.assert_alive(0);
}

/// `Pinned::refresh` ends the guard's read: what it protected and was retired
/// meanwhile is freed on this thread's next flush, without dropping the guard.
#[test]
fn refresh_lets_go_of_what_the_guard_held() {
    let ledger = DropLedger::new();
    let map: Map<u64, Tracked<u64>> = map_with_batch(None);
    map.insert(1, ledger.track(1));
    map.insert(1, ledger.track(2)); // a cell
    map.flush();
    assert_eq!(map.stats().pending, 0, "{:?}", map.stats());
    let mut pinned = map.pin();
    let held = pinned.get(&1).unwrap().id();
    assert_eq!(
        pinned.insert(1, ledger.track(3)).map(|v| v.payload),
        Some(2)
    );
    // The flush hands the cell to this thread's own reservation; the live guard
    // keeps it.
    map.flush();
    assert!(!ledger.is_dropped(held), "freed under a live guard");
    assert_eq!(map.stats().pending, 1);
    pinned.refresh();
    assert!(ledger.is_dropped(held), "refresh did not let the cell go");
    assert_eq!(map.stats().pending, 0);
    // The refreshed guard reads the current state.
    assert_eq!(pinned.get(&1).map(|v| v.payload), Some(3));
    drop(pinned);
    drop(map);
    ledger.assert_alive(0);
    assert_eq!(ledger.double_drops(), 0);
}
