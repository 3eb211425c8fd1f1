//! The seize backend (`reclaim::Seize`, feature `seize`), named explicitly, so
//! that these tests run in a build with both backends (`--features seize`) as
//! well as in one with seize alone:
//!
//! * differential: `SyncMap` and `ClassicSyncMap` on seize against
//!   `std::collections::HashMap`, with small and default batch sizes;
//! * a value read through a live guard is never dropped while another thread
//!   churns the map and flushes (drop counting);
//! * seize's partial batches: what a thread retired stays in its batch in the
//!   map's collector, out of reach of seize's own flush, yet the map's `flush`
//!   frees it — after the thread exited or while it idles — and what a live
//!   guard may reach is freed when that guard goes, every object exactly once;
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

/// Operations per differential run: Miri interprets every one.
const OPS: u64 = if cfg!(miri) { 600 } else { 20_000 };
/// Writes of the churning thread in the guard test.
const CHURN: u64 = if cfg!(miri) { 80 } else { 2_000 };
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
    for op in 0..OPS {
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
    for op in 0..OPS {
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
                for round in 0..CHURN {
                    let k = 3 + rng.below(61);
                    if rng.one_in(3) {
                        map.remove(&k);
                    } else {
                        map.pin().insert(k, ledger.track(round));
                    }
                    if round % (CHURN / 10) == 0 {
                        map.promote();
                    }
                    // Each flush waits a few rounds for the sweep this thread's
                    // guard holds back: under Miri, every fourth round only.
                    if !cfg!(miri) || round % 4 == 0 {
                        map.flush();
                    }
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
/// map's collector, and hands the batch over only once it is full. Here threads
/// retire fewer objects than a batch and exit: no flush of seize's can reach
/// what they left, but the map's `flush` retires a sweep record that frees
/// everything retired before it — one flush from this thread frees it all, each
/// object exactly once. One more thread retires more than a batch of values.
/// (The map's ledger hands values to seize in batches of its own, so what
/// waits before the flush is at least what seize's batches hold.)
#[test]
fn a_flush_frees_what_exited_threads_left_in_partial_batches() {
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
    // Left in the exited threads' partial batches: at least 1, 5 and 9 cells
    // and the last thread's remainder (3) — more, with the values that wait in
    // the ledger's own batches (a record per batch of values is what seize
    // counts).
    let pending = map.stats().pending;
    assert!(
        (1 + 5 + 9 + 3..=retired).contains(&pending),
        "{:?}",
        map.stats()
    );
    map.flush();
    let stats = map.stats();
    assert_eq!(stats.pending, 0, "{stats:?}");
    // Alive: 4 current values and 4 stale inline ones.
    assert_eq!(ledger.alive(), 8);
    drop(map);
    ledger.assert_alive(0);
    assert_eq!(ledger.double_drops(), 0);
}

/// Threads that retired on the map and then sit idle — alive, holding no
/// guard — keep their partial batches in the collector, where only they could
/// hand them over. One flush from another thread frees what they retired.
#[test]
fn a_flush_frees_what_idle_threads_left_in_partial_batches() {
    let ledger = DropLedger::new();
    let map: Map<u64, Tracked<u64>> =
        SyncMap::with_hasher_and_reclaim(RandomState::new(), Seize::new());
    for k in 0..3 {
        map.insert(k, ledger.track(0));
    }
    map.promote();
    let retired = std::sync::Barrier::new(4);
    let flushed = std::sync::Barrier::new(4);
    thread::scope(|scope| {
        for k in 0..3u64 {
            let (map, ledger, retired, flushed) = (&map, &ledger, &retired, &flushed);
            scope.spawn(move || {
                for i in 0..=k + 2 {
                    map.insert(k, ledger.track(i + 1));
                }
                retired.wait();
                // Idle, alive, no guard: the main thread flushes now.
                flushed.wait();
            });
        }
        retired.wait();
        assert!(map.stats().pending > 0, "{:?}", map.stats());
        map.flush();
        let stats = map.stats();
        assert_eq!(stats.pending, 0, "{stats:?}");
        // Alive: 3 current values and 3 stale inline ones.
        assert_eq!(ledger.alive(), 6);
        flushed.wait();
    });
    drop(map);
    ledger.assert_alive(0);
    assert_eq!(ledger.double_drops(), 0);
}

/// A flush while another thread holds a guard cannot free what that guard may
/// reach; it hands its sweep over, and the sweep runs when the guard is
/// dropped, with no further flush.
#[test]
fn what_a_flush_leaves_to_a_live_guard_is_freed_when_the_guard_goes() {
    let ledger = DropLedger::new();
    let map: Map<u64, Tracked<u64>> =
        SyncMap::with_hasher_and_reclaim(RandomState::new(), Seize::new());
    map.insert(1, ledger.track(0));
    map.insert(1, ledger.track(1)); // a cell
    map.flush();
    let pinned_now = std::sync::Barrier::new(2);
    let flushed = std::sync::Barrier::new(2);
    thread::scope(|scope| {
        let (map, pinned_now, flushed) = (&map, &pinned_now, &flushed);
        let reader = scope.spawn(move || {
            let pinned = map.pin();
            let held = pinned.get(&1).unwrap().id();
            pinned_now.wait();
            flushed.wait();
            drop(pinned);
            held
        });
        pinned_now.wait();
        let old = map.insert(1, ledger.track(2)).unwrap();
        assert_eq!(old.payload, 1);
        drop(old);
        map.flush();
        // The reader's guard may still reach the replaced cell.
        assert_eq!(map.stats().pending, 1, "{:?}", map.stats());
        flushed.wait();
        let held = reader.join().unwrap();
        assert!(
            ledger.is_dropped(held),
            "the sweep did not run at the guard's drop"
        );
    });
    assert_eq!(map.stats().pending, 0, "{:?}", map.stats());
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
