//! The concrete promises of `SyncMap`'s public documentation (src/sync_map/*.rs,
//! the crate docs, README.md), each checked by a small test. Complements
//! go_map_test.rs and drop_counting.rs: it targets promises those leave out
//! (promotion rules, capacity, std trait impls, closures and destructors that
//! take the writer lock, panics, flush's exactness, ...).
//!
//! Every test takes [`serial`]: some check `flush`'s exact promise, which
//! holds only when no other guard of the (global) crossbeam collector is live.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use readmostly::{LoadOrStore, Stats, SyncMap};

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on its own thread; fails (instead of hanging) if it deadlocks.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: deadlocked (no result within 10 s)"),
    }
}

fn flush_until_quiet<K, V>(map: &SyncMap<K, V>) {
    for _ in 0..1000 {
        map.flush();
        if map.stats().pending == 0 {
            return;
        }
    }
}

fn contents(map: &SyncMap<u64, u64>) -> HashMap<u64, u64> {
    let mut out = HashMap::new();
    for (k, v) in map.pin().iter() {
        assert!(out.insert(*k, *v).is_none(), "key {k} yielded twice");
    }
    out
}

// ---------------------------------------------------------------------------
// Go's Load / Store / Swap / LoadOrStore / LoadAndDelete / CompareAndSwap /
// CompareAndDelete, through the owned and the pinned API.
// ---------------------------------------------------------------------------

#[test]
fn go_semantics_of_the_owned_value_api() {
    let _s = serial();
    let map: SyncMap<String, u64> = SyncMap::new();
    assert_eq!(map.get_cloned("a"), None); // Load of a missing key
    assert_eq!(map.remove("a"), None); // Delete of a missing key stores nothing
    assert!(map.is_empty());
    assert_eq!(map.insert("a".into(), 1), None); // Store/Swap
    assert_eq!(map.insert("a".into(), 2), Some(1)); // Swap: previous value
    assert_eq!(map.get_or_insert_with("a".into(), || unreachable!()), 2);
    assert_eq!(map.get_or_insert_with("b".into(), || 3), 3);
    assert!(map.contains_key("b") && !map.contains_key("c"));
    assert_eq!(map.len(), 2);
    assert_eq!(map.remove("a"), Some(2)); // LoadAndDelete
    assert_eq!(map.remove("a"), None);
    assert_eq!(map.get_cloned("a"), None);
    assert_eq!(map.update_or_insert_with("a".into(), |n| n + 1, || 10), 10);
    assert_eq!(map.update_or_insert_with("a".into(), |n| n + 1, || 10), 11);
    assert_eq!(map.len(), 2);
}

#[test]
fn compare_exchange_of_a_missing_or_removed_key_fails_and_stores_nothing() {
    let _s = serial();
    let map: SyncMap<u64, String> = SyncMap::new();
    let p = map.pin();
    let err = p
        .compare_exchange(&1, &"x".to_string(), "new".into())
        .unwrap_err();
    assert_eq!((err.current, err.new.as_str()), (None, "new"));
    assert_eq!(err.to_string(), "compare_exchange failed: key absent");
    assert_eq!((p.get(&1), p.len()), (None, 0));
    // A removed key (a tombstone slot) is absent as well.
    p.insert(1, "x".into());
    p.remove(&1);
    assert!(p
        .compare_exchange(&1, &"x".to_string(), "y".into())
        .is_err());
    assert_eq!((p.get(&1), p.len()), (None, 0));
    // Mismatch: what was found, and `new` handed back.
    p.insert(1, "x".into());
    let err = p
        .compare_exchange(&1, &"z".to_string(), "w".into())
        .unwrap_err();
    assert_eq!(
        (err.current.map(String::as_str), err.new.as_str()),
        (Some("x"), "w")
    );
    assert_eq!(err.to_string(), "compare_exchange failed: found \"x\"");
    // Match: the replaced value.
    assert_eq!(
        p.compare_exchange(&1, &"x".to_string(), "y".into())
            .map(String::as_str),
        Ok("x")
    );
    assert_eq!(p.get(&1).map(String::as_str), Some("y"));
    // CompareAndDelete (remove_if with equality) of a missing key: nothing.
    assert_eq!(p.remove_if(&2, |_| true), None);
    assert_eq!(p.len(), 1);
}

#[test]
fn get_or_insert_reports_loaded_or_stored_and_revives_removed_keys() {
    let _s = serial();
    let map: SyncMap<u64, u64> = SyncMap::new();
    let p = map.pin();
    let first = p.get_or_insert(1, 10);
    let copy = first; // LoadOrStore is Copy
    assert_eq!(
        (first, copy.is_stored(), *copy.value()),
        (LoadOrStore::Stored(&10), true, 10)
    );
    assert_eq!(p.get_or_insert(1, 20), LoadOrStore::Loaded(&10));
    p.remove(&1);
    assert_eq!(p.get_or_insert(1, 30), LoadOrStore::Stored(&30));
    assert_eq!(p.len(), 1);
    assert!(p.get_or_insert_with(1, || unreachable!()).value() == &30);
}

/// "if another thread stores first after `make` ran, its value is dropped and
/// the other returned as `Loaded`" (here the storer is `make` itself, which may
/// use the map): both for a new key and for a removed key's slot.
#[test]
fn get_or_insert_with_loses_to_a_store_made_after_make_ran() {
    let _s = serial();
    let drops = Arc::new(AtomicUsize::new(0));
    #[derive(Clone)]
    struct D(u64, Arc<AtomicUsize>);
    impl Drop for D {
        fn drop(&mut self) {
            if self.0 == 999 {
                self.1.fetch_add(1, SeqCst);
            }
        }
    }
    let map: SyncMap<u64, D> = SyncMap::new();
    for removed_first in [false, true] {
        if removed_first {
            map.insert(1, D(0, drops.clone()));
            map.remove(&1);
        }
        let p = map.pin();
        let mut runs = 0;
        let got = p.get_or_insert_with(1, || {
            runs += 1;
            map.insert(1, D(7, drops.clone()));
            D(999, drops.clone())
        });
        assert!(
            matches!(got, LoadOrStore::Loaded(D(7, _))),
            "removed_first={removed_first}"
        );
        assert_eq!(runs, 1, "make runs at most once");
        drop(p);
        map.remove(&1);
    }
    assert_eq!(drops.load(SeqCst), 2, "the made values were dropped");
}

/// `update_or_insert_with`: `insert` runs at most once; if the key appears
/// meanwhile, `update` runs on it. `update` re-runs on the newer value when its
/// CAS loses; only the last result is stored.
#[test]
fn update_or_insert_with_and_update_rerun_on_the_latest_value() {
    let _s = serial();
    let map: SyncMap<u64, u64> = SyncMap::new();
    let p = map.pin();
    let mut inserts = 0;
    let v = p.update_or_insert_with(
        1,
        |n| n + 1,
        || {
            inserts += 1;
            map.insert(1, 10);
            1
        },
    );
    assert_eq!((*v, inserts), (11, 1));

    let mut seen = Vec::new();
    let v = p.update(&1, |n| {
        seen.push(*n);
        if seen.len() == 1 {
            map.insert(1, 100); // a concurrent writer
        }
        n + 1
    });
    assert_eq!((v, seen.as_slice()), (Some(&101), &[11, 100][..]));

    let mut seen = Vec::new();
    let v = p.update_or_insert_with(
        1,
        |n| {
            seen.push(*n);
            if seen.len() == 1 {
                map.insert(1, 500);
            }
            n * 2
        },
        || unreachable!(),
    );
    assert_eq!((*v, seen.as_slice()), (1000, &[101, 500][..]));
    // update of an absent key: None, f not called.
    assert_eq!(p.update(&2, |_| unreachable!()), None);
    assert_eq!(p.get(&2), None);
}

/// "if the value changes between the check and the removal, `remove` is asked
/// again about the new value".
#[test]
fn remove_if_asks_again_about_a_changed_value() {
    let _s = serial();
    let map: SyncMap<u64, u64> = SyncMap::new();
    map.insert(1, 1);
    let p = map.pin();
    let mut asked = Vec::new();
    let removed = p.remove_if(&1, |v| {
        asked.push(*v);
        if asked.len() == 1 {
            map.insert(1, 2);
            true
        } else {
            false
        }
    });
    assert_eq!((removed, asked.as_slice()), (None, &[1, 2][..]));
    assert_eq!(p.get(&1), Some(&2));
}

// ---------------------------------------------------------------------------
// Keys: "An existing key keeps its original key value, as with HashMap".
// ---------------------------------------------------------------------------

/// `Eq` and `Hash` by the first field only, so that two values of one key can
/// differ in the rest.
macro_rules! eq_and_hash_by_id {
    ($name:ident) => {
        impl PartialEq for $name {
            fn eq(&self, o: &Self) -> bool {
                self.0 == o.0
            }
        }
        impl Eq for $name {}
        impl Hash for $name {
            fn hash<H: Hasher>(&self, h: &mut H) {
                self.0.hash(h)
            }
        }
    };
}

#[derive(Clone, Debug)]
struct Tagged(u32, &'static str);
eq_and_hash_by_id!(Tagged);

#[test]
fn an_existing_key_keeps_its_original_key_value() {
    let _s = serial();
    let map: SyncMap<Tagged, u32> = SyncMap::new();
    map.insert(Tagged(1, "first"), 1);
    map.insert(Tagged(1, "second"), 2); // in the delta
    assert_eq!(
        map.pin()
            .get_key_value(&Tagged(1, ""))
            .map(|(k, v)| (k.1, *v)),
        Some(("first", 2))
    );
    map.promote();
    map.insert(Tagged(1, "third"), 3); // in the read table
    assert_eq!(
        map.pin()
            .get_key_value(&Tagged(1, ""))
            .map(|(k, v)| (k.1, *v)),
        Some(("first", 3))
    );
    // Removed and inserted again before a promotion: the slot comes back with
    // its stored key. (Other keys keep the removal from compacting the map.)
    for k in 2..10 {
        map.insert(Tagged(k, ""), k);
    }
    map.remove(&Tagged(1, ""));
    map.insert(Tagged(1, "fourth"), 4);
    let stored = |map: &SyncMap<Tagged, u32>| {
        map.pin()
            .get_key_value(&Tagged(1, ""))
            .map(|(k, v)| (k.1, *v))
    };
    assert_eq!(stored(&map), Some(("first", 4)));
    // After a promotion has dropped the removed slot, the new key is stored.
    map.remove(&Tagged(1, ""));
    map.promote();
    map.insert(Tagged(1, "fifth"), 5);
    assert_eq!(stored(&map), Some(("fifth", 5)));
}

/// "`f` may run more than once: when another writer changes the value
/// concurrently, or when a promotion or a `clear` … interrupts the write".
#[test]
fn a_promotion_during_a_write_reruns_its_closure_on_the_same_value() {
    let _s = serial();
    let map: SyncMap<u64, u64> = SyncMap::new();
    map.insert(1, 1);
    let mut seen = Vec::new();
    let pinned = map.pin();
    let v = pinned.update(&1, |n| {
        seen.push(*n);
        if seen.len() == 1 {
            map.promote(); // no writer changes the value; the slot is sealed
        }
        n + 1
    });
    assert_eq!((v.copied(), seen.as_slice()), (Some(2), &[1, 1][..]));
}

// ---------------------------------------------------------------------------
// len / is_empty
// ---------------------------------------------------------------------------

#[test]
fn len_counts_every_kind_of_write_exactly() {
    let _s = serial();
    let map: SyncMap<u64, u64> = SyncMap::new();
    let p = map.pin();
    for k in 0..10 {
        p.insert(k, k);
    }
    p.insert(3, 33); // overwrite
    assert_eq!(p.len(), 10);
    p.remove(&3);
    p.remove(&3);
    p.remove(&100);
    assert_eq!(p.len(), 9);
    assert!(p.update(&3, |v| v + 1).is_none());
    assert!(p.compare_exchange(&3, &33, 1).is_err());
    assert_eq!(p.len(), 9);
    p.insert(3, 3); // revival through insert
    assert_eq!(p.len(), 10);
    p.remove(&3);
    p.get_or_insert(3, 3); // revival through get_or_insert
    p.remove(&3);
    p.update_or_insert_with(3, |v| *v, || 3); // revival through upsert
    assert_eq!(p.len(), 10);
    p.retain(|k, _| k % 2 == 0);
    assert_eq!((p.len(), p.iter().count()), (5, 5));
    map.promote();
    assert_eq!(map.len(), 5);
    p.clear();
    assert!(map.is_empty() && p.is_empty());
}

#[test]
fn len_is_exact_once_concurrent_writers_are_done() {
    let _s = serial();
    let map: SyncMap<u64, u64> = SyncMap::new();
    let present: usize = thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let map = &map;
                s.spawn(move || {
                    let mut model = HashSet::new();
                    let mut x = t * 7919 + 1;
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let k = t * 1_000_000 + x % 500;
                        match x % 5 {
                            0 | 1 => {
                                map.insert(k, x);
                                model.insert(k);
                            }
                            2 => {
                                map.remove(&k);
                                model.remove(&k);
                            }
                            3 => {
                                map.get_or_insert_with(k, || x);
                                model.insert(k);
                            }
                            _ => {
                                if map.pin().remove_if(&k, |v| v % 2 == 0).is_some() {
                                    model.remove(&k);
                                }
                            }
                        }
                    }
                    model.len()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(map.len(), present);
    assert_eq!(contents(&map).len(), present);
}

// ---------------------------------------------------------------------------
// Iteration (Go's Range)
// ---------------------------------------------------------------------------

/// "Every key present for the whole iteration is yielded exactly once, with a
/// value it had at some moment during the iteration", while other threads
/// overwrite those keys and churn others (delta growths, promotions,
/// compactions, explicit promote()).
#[test]
fn iteration_sees_each_key_present_throughout_once_with_a_current_value() {
    let _s = serial();
    const STABLE: u64 = 200;
    let map: SyncMap<u64, u64> = SyncMap::new();
    for k in 0..STABLE {
        map.insert(k, 0);
    }
    let generation = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            // Writer: pass g writes g to every stable key, then publishes g.
            let mut g = 0;
            let mut churn = 0u64;
            while !stop.load(SeqCst) {
                g += 1;
                for k in 0..STABLE {
                    map.insert(k, g);
                    churn += 1;
                    let c = 1_000_000 + churn % 3_000;
                    if churn.is_multiple_of(3) {
                        map.remove(&c);
                    } else {
                        map.insert(c, 0);
                    }
                }
                generation.store(g, SeqCst);
                if g % 7 == 0 {
                    map.promote();
                }
            }
        });
        let deadline = Instant::now() + Duration::from_millis(400);
        let mut rounds = 0;
        while Instant::now() < deadline || rounds < 20 {
            rounds += 1;
            let before = generation.load(SeqCst);
            let p = map.pin();
            let mut seen = HashMap::new();
            for (k, v) in p.iter() {
                if *k < STABLE {
                    assert!(
                        seen.insert(*k, *v).is_none(),
                        "stable key {k} yielded twice"
                    );
                }
            }
            let after = generation.load(SeqCst) + 1; // a pass may be in flight
            assert_eq!(seen.len() as u64, STABLE, "a stable key was missed");
            for (k, v) in seen {
                assert!(
                    v >= before && v <= after,
                    "key {k}: value {v} not in [{before}, {after}]"
                );
            }
        }
        stop.store(true, SeqCst);
    });
}

#[test]
fn iteration_and_debug_never_promote_and_iter_is_fused() {
    let _s = serial();
    let map: SyncMap<u64, u64> = SyncMap::with_capacity(1000);
    for k in 0..1000 {
        map.insert(k, k);
    }
    let promotions = map.stats().promotions;
    assert_eq!(promotions, 0);
    for _ in 0..200 {
        assert_eq!(map.pin().iter().count(), 1000);
    }
    let _ = format!("{map:?}");
    assert_eq!(map.stats().promotions, promotions, "iteration promoted");
    let p = map.pin();
    let mut it = p.iter();
    let (lo, hi) = it.size_hint();
    assert!(lo <= 1000 && hi.unwrap() >= 1000);
    assert_eq!(it.by_ref().count(), 1000);
    assert_eq!((it.next(), it.next()), (None, None));
}

/// Go's TestMapRangeNestedCall, extended to the calls that take the writer
/// lock (promote, clear, reserve, shrink_to_fit, inserts that grow the delta):
/// iteration is lock-free, so none of them deadlocks.
#[test]
fn map_calls_that_take_the_writer_lock_inside_iteration_do_not_deadlock() {
    let _s = serial();
    within("nested writes in iter", || {
        let map: SyncMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
        let p = map.pin();
        let mut n = 0;
        for (k, v) in p.iter() {
            if *k >= 100 {
                continue; // inserted meanwhile: may or may not be seen
            }
            assert_eq!(k, v);
            n += 1;
            for j in 0..20 {
                map.insert(10_000 + n * 20 + j, 1); // grows the delta, may promote
            }
            map.remove(k);
            map.promote();
            map.reserve(10);
            if n == 50 {
                map.shrink_to_fit();
            }
            let _ = map.len();
            let _ = format!("{:?}", map.get_cloned(k));
        }
        assert_eq!(n, 100, "every key present when its turn came was seen");
        map.clear();
        assert!(map.is_empty());
    });
}

// ---------------------------------------------------------------------------
// Locks and user code: closures and destructors run without the writer lock.
// ---------------------------------------------------------------------------

#[test]
fn closures_may_call_map_methods_that_take_the_writer_lock() {
    let _s = serial();
    within("closures taking the lock", || {
        // Each closure takes the lock on its first run only: one that promoted
        // on every run would seal its own slot each time and run forever.
        let once = |flag: &Cell<bool>| !flag.replace(true);
        let map: SyncMap<u64, u64> = (0..10).map(|k| (k, k)).collect();
        let p = map.pin();
        let f = Cell::new(false);
        assert_eq!(
            p.update(&1, |v| {
                if once(&f) {
                    map.promote()
                }
                v + 1
            }),
            Some(&2)
        );
        let f = Cell::new(false);
        let removed = p.remove_if(&2, |_| {
            if once(&f) {
                map.promote();
                map.reserve(100);
            }
            true
        });
        assert_eq!(removed, Some(&2));
        assert_eq!(
            map.get_or_insert_with(100, || {
                map.promote();
                100
            }),
            100
        );
        assert_eq!(
            *p.get_or_insert_with(101, || {
                map.clear();
                101
            })
            .value(),
            101
        );
        assert_eq!(map.pin().iter().count(), 1);
        for k in 0..10 {
            map.insert(k, k);
        }
        map.update_or_insert_with(
            200,
            |_| unreachable!(),
            || {
                map.promote();
                1
            },
        );
        let f = Cell::new(false);
        map.update_or_insert_with(
            200,
            |v| {
                if once(&f) {
                    map.shrink_to_fit()
                }
                v + 1
            },
            || unreachable!(),
        );
        assert_eq!(map.get_cloned(&200), Some(2));
        let f = Cell::new(false);
        map.retain(|k, _| {
            if once(&f) {
                map.promote();
            }
            *k % 2 == 0
        });
        let mut keys: Vec<_> = contents(&map).into_keys().collect();
        keys.sort_unstable();
        assert_eq!(keys, [0, 2, 4, 6, 8, 200]);
    });
}

struct Reenter(u64);
impl Clone for Reenter {
    fn clone(&self) -> Self {
        Reenter(self.0)
    }
}
static REENTRANT: LazyLock<SyncMap<u64, Reenter>> = LazyLock::new(SyncMap::new);
static REENTERED: AtomicUsize = AtomicUsize::new(0);
impl Drop for Reenter {
    fn drop(&mut self) {
        if self.0 == 1 {
            // A destructor the map runs uses the same map.
            REENTRANT.insert(5_000 + REENTERED.fetch_add(1, SeqCst) as u64, Reenter(0));
            REENTRANT.promote();
            let _ = REENTRANT.len();
        }
    }
}

#[test]
fn destructors_the_map_runs_may_use_the_map() {
    let _s = serial();
    within("destructors using the map", || {
        let map = &*REENTRANT;
        map.insert(1, Reenter(0));
        map.insert(1, Reenter(1)); // into a cell
        map.insert(1, Reenter(0)); // retires the cell
        map.pin().get_or_insert(1, Reenter(1)); // unused value, dropped at once
        map.insert(2, Reenter(1));
        map.promote(); // the old root's clones of Reenter(1)
        map.remove(&2);
        map.insert(3, Reenter(1));
        map.clear();
        flush_until_quiet(map);
        assert!(REENTERED.load(SeqCst) >= 3, "{}", REENTERED.load(SeqCst));
    });
}

// ---------------------------------------------------------------------------
// Standard traits
// ---------------------------------------------------------------------------

#[test]
fn default_debug_from_iterator_extend_and_eq() {
    let _s = serial();
    let empty: SyncMap<u64, u64> = SyncMap::default();
    assert!(empty.is_empty());
    assert_eq!(format!("{empty:?}"), "{}");
    assert!(empty == SyncMap::new());

    let one: SyncMap<u64, &str> = [(1, "a")].into_iter().collect();
    assert_eq!(format!("{one:?}"), "{1: \"a\"}");
    assert_eq!(format!("{:?}", one.pin()), "{1: \"a\"}");
    assert_eq!(format!("{:?}", Arc::new(one).pin_owned()), "{1: \"a\"}");

    // FromIterator: sized for the size hint, so an iterator that knows its
    // length fills it without growing and promotes once; past the hint, it
    // grows as inserts do.
    let sized: SyncMap<u64, u64> = (0..1000).map(|k| (k, k)).collect();
    let stats = sized.stats();
    assert_eq!((stats.promotions, stats.delta_growths), (1, 0));
    let unsized_: SyncMap<u64, u64> = (0..1000).filter(|_| true).map(|k| (k, k)).collect();
    assert!(unsized_.stats().delta_growths > 0);
    assert_eq!(unsized_.len(), 1000);
    // Duplicates, last wins; every key inline afterwards.
    let map: SyncMap<u64, u64> = (0..1000).map(|k| (k % 500, k)).collect();
    assert_eq!(map.len(), 500);
    assert_eq!(map.get_cloned(&3), Some(503));
    let before = map.stats();
    for _ in 0..4 {
        for k in 0..500 {
            assert!(map.contains_key(&k));
        }
    }
    let after = map.stats();
    assert_eq!(
        (after.delta_reads, after.cell_reads),
        (before.delta_reads, before.cell_reads)
    );

    // Extend: by value, by reference, through &SyncMap.
    let mut a: SyncMap<u64, u64> = SyncMap::new();
    a.extend([(1, 1), (2, 2), (1, 10)]);
    let b: SyncMap<u64, u64> = SyncMap::new();
    (&b).extend([(&1, &10), (&2, &2)]);
    assert!(a == b);
    let mut c: SyncMap<u64, u64> = SyncMap::new();
    c.extend(contents(&a).iter());
    assert!(c == a);

    // PartialEq: a subset is not equal; removed keys do not count.
    b.insert(3, 3);
    assert!(a != b);
    assert!(b != a);
    b.remove(&3);
    assert!(a == b);
    b.insert(2, 20);
    assert!(a != b);
}

#[test]
fn clone_is_independent_and_holds_the_live_keys_inline() {
    let _s = serial();
    let a: SyncMap<u64, u64> = (0..300).map(|k| (k, k)).collect();
    for k in 0..100 {
        a.remove(&k);
    }
    a.insert(1_000, 1);
    let b = a.clone();
    assert!(a == b);
    a.insert(2_000, 2);
    b.remove(&150);
    assert_eq!((a.len(), b.len()), (202, 200));
    assert_eq!(b.get_cloned(&2_000), None);
    assert_eq!(a.get_cloned(&150), Some(150));
    let before = b.stats().delta_reads;
    for _ in 0..4 {
        for k in 100..300 {
            let _ = b.contains_key(&k);
        }
    }
    assert_eq!(
        b.stats().delta_reads,
        before,
        "clone's keys are all in its read table"
    );
}

/// traits.rs, `Clone for SyncMap`: "Its statistics count only its own making
/// [...], none of this map's."
#[test]
fn clone_statistics_count_only_its_own_making() {
    let _s = serial();
    let a: SyncMap<u64, u64> = (0..300).map(|k| (k, k)).collect();
    // The second overwrite retires the first's cell (an inline value goes with
    // its table instead).
    for k in 0..100 {
        a.insert(k, k);
        a.insert(k, k + 1);
    }
    let before = a.stats();
    assert!(before.values_retired >= 100, "{before:?}");
    let b = a.clone();
    let s = b.stats();
    assert_eq!(s.values_retired, 0, "the original's overwrites: {s:?}");
    assert_eq!(b.len(), 300);
    assert_eq!(b.get_cloned(&7), Some(8));
}

// ---------------------------------------------------------------------------
// capacity / reserve / shrink_to_fit
// ---------------------------------------------------------------------------

#[test]
fn capacity_is_what_fits_without_growing_or_promoting() {
    let _s = serial();
    for n in [1, 5, 100, 1000] {
        let map: SyncMap<u64, u64> = SyncMap::with_capacity(n);
        assert!(map.capacity() >= n);
        let cap = map.capacity();
        for k in 0..cap as u64 {
            map.insert(k, k);
        }
        let s = map.stats();
        assert_eq!(
            (s.delta_growths, s.promotions),
            (0, 0),
            "with_capacity({n}), capacity {cap}"
        );
    }
    // A removed key comes back into its own slot: no room used.
    let map: SyncMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
    let cap = map.capacity();
    assert!(cap >= 100);
    map.remove(&5);
    map.insert(5, 5);
    assert_eq!(map.capacity(), cap);
    // reserve on a map with a read table and a non-empty delta.
    for k in 100..110 {
        map.insert(k, k);
    }
    map.reserve(500);
    assert!(map.capacity() >= 610);
    let s = map.stats();
    for k in 110..610 {
        map.insert(k, k);
    }
    let t = map.stats();
    assert_eq!(
        (t.delta_growths, t.promotions),
        (s.delta_growths, s.promotions)
    );
    // shrink_to_fit keeps the contents.
    for k in 0..600 {
        map.remove(&k);
    }
    map.shrink_to_fit();
    assert!(map.capacity() < 610, "{}", map.capacity());
    assert_eq!(map.len(), 10);
    assert_eq!(contents(&map).len(), 10);
}

// ---------------------------------------------------------------------------
// When SyncMap promotes (crate docs, policy.rs)
// ---------------------------------------------------------------------------

#[test]
fn a_full_delta_promotes_only_once_it_holds_half_the_read_table_and_64_keys() {
    let _s = serial();
    let map: SyncMap<u64, u64> = SyncMap::new();
    for k in 0..64 {
        map.insert(k, k);
    }
    assert_eq!(
        map.stats().promotions,
        0,
        "a delta below 64 keys never promotes by size"
    );
    for k in 64..200 {
        map.insert(k, k);
    }
    assert!(map.stats().promotions >= 1);

    let map: SyncMap<u64, u64> = (0..1000).map(|k| (k, k)).collect();
    let base = map.stats().promotions;
    for k in 1000..1499 {
        map.insert(k, k);
    }
    assert_eq!(
        map.stats().promotions,
        base,
        "delta below half the read table"
    );
    for k in 1499..3000 {
        map.insert(k, k);
    }
    assert!(map.stats().promotions > base);
}

#[test]
fn removing_half_of_the_keys_compacts() {
    let _s = serial();
    let map: SyncMap<u64, u64> = (0..1000).map(|k| (k, k)).collect();
    for k in 0..499 {
        map.remove(&k);
    }
    assert_eq!(map.stats().compactions, 0);
    map.remove(&499);
    let s = map.stats();
    assert_eq!((s.compactions, s.tombstones_purged), (1, 500));
    assert!(map.capacity() < 1000);
}

#[test]
fn reads_alone_promote_delta_keys_within_a_few_reads_and_cell_keys_after_16() {
    let _s = serial();
    within("reader promotion", || {
        let map: SyncMap<u64, u64> = SyncMap::with_capacity(1000);
        for k in 0..1000 {
            map.insert(k, k);
        }
        assert_eq!(map.stats().promotions, 0);
        'outer: for round in 0..3 {
            for k in 0..1000 {
                assert_eq!(map.get_cloned(&k), Some(k));
                if map.stats().promotions > 0 {
                    assert!(round < 3);
                    break 'outer;
                }
            }
        }
        assert_eq!(
            map.stats().promotions,
            1,
            "3 reads per key promote a delta-only map"
        );

        let map: SyncMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
        for k in 0..100 {
            map.insert(k, k + 1); // each value now in a cell
        }
        let p0 = map.stats().promotions;
        let pinned = map.pin();
        for _ in 0..15 {
            for k in 0..100 {
                let _ = pinned.get(&k);
            }
        }
        assert_eq!(
            map.stats().promotions,
            p0,
            "fewer than 16 cell reads per key"
        );
        for _ in 0..2 {
            for k in 0..100 {
                let _ = pinned.get(&k);
            }
        }
        assert_eq!(map.stats().promotions, p0 + 1, "17 cell reads per key");
    });
}

// ---------------------------------------------------------------------------
// Panics in user code
// ---------------------------------------------------------------------------

static CLONE_PANICS: AtomicBool = AtomicBool::new(false);
#[derive(Debug, PartialEq)]
struct Fragile(u64);
impl Clone for Fragile {
    fn clone(&self) -> Self {
        if CLONE_PANICS.load(SeqCst) {
            panic!("Fragile::clone");
        }
        Fragile(self.0)
    }
}

#[test]
fn a_panicking_clone_in_promote_propagates_and_leaves_the_map_unchanged() {
    let _s = serial();
    let map: SyncMap<u64, Fragile> = SyncMap::new();
    for k in 0..50 {
        map.insert(k, Fragile(k));
    }
    map.insert(3, Fragile(33));
    map.remove(&4);
    CLONE_PANICS.store(true, SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| map.promote()));
    let r2 = catch_unwind(AssertUnwindSafe(|| map.shrink_to_fit()));
    CLONE_PANICS.store(false, SeqCst);
    assert!(r.is_err() && r2.is_err());
    assert_eq!(map.stats().promotions, 0);
    assert_eq!(map.len(), 49);
    assert_eq!(map.get_cloned(&3), Some(Fragile(33)));
    // Every slot was unsealed: lock-free writes and new keys still work.
    map.insert(3, Fragile(333));
    map.insert(4, Fragile(4));
    map.insert(100, Fragile(100));
    assert_eq!(map.pin().iter().count(), 51);
    map.promote();
    assert_eq!(map.get_cloned(&3), Some(Fragile(333)));
}

#[test]
fn a_panicking_clone_in_an_automatic_promotion_is_contained() {
    let _s = serial();
    let map: SyncMap<u64, Fragile> = SyncMap::new();
    CLONE_PANICS.store(true, SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| {
        for k in 0..300 {
            map.insert(k, Fragile(k));
        }
    }));
    CLONE_PANICS.store(false, SeqCst);
    assert!(r.is_ok(), "the inserts that started promotions completed");
    let s = map.stats();
    assert!(s.promotions_abandoned >= 1 && s.promotions == 0, "{s:?}");
    assert_eq!(map.len(), 300);
    assert!((0..300).all(|k| map.get_cloned(&k) == Some(Fragile(k))));
}

static HASH_PANICS: AtomicBool = AtomicBool::new(false);
#[derive(Clone, PartialEq, Eq, Debug)]
struct TouchyKey(u64);
impl Hash for TouchyKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        if HASH_PANICS.load(SeqCst) && self.0 == 13 {
            panic!("TouchyKey::hash");
        }
        self.0.hash(h)
    }
}

#[test]
fn a_panicking_hash_or_closure_leaves_the_map_as_it_was() {
    let _s = serial();
    let map: SyncMap<TouchyKey, u64> = (0..20).map(|k| (TouchyKey(k), k)).collect();
    let snapshot = |m: &SyncMap<TouchyKey, u64>| {
        let mut v: Vec<_> = m.pin().iter().map(|(k, v)| (k.0, *v)).collect();
        v.sort_unstable();
        (v, m.len())
    };
    let before = snapshot(&map);
    HASH_PANICS.store(true, SeqCst);
    assert!(catch_unwind(AssertUnwindSafe(|| map.insert(TouchyKey(13), 0))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| map.remove(&TouchyKey(13)))).is_err());
    HASH_PANICS.store(false, SeqCst);
    assert_eq!(snapshot(&map), before);
    let p = map.pin();
    assert!(catch_unwind(AssertUnwindSafe(|| p.update(&TouchyKey(1), |_| panic!()))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| p.remove_if(&TouchyKey(1), |_| panic!()))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(
        || p.get_or_insert_with(TouchyKey(99), || panic!())
    ))
    .is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| {
        p.update_or_insert_with(TouchyKey(1), |_| panic!(), || 0)
    }))
    .is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| {
        p.update_or_insert_with(TouchyKey(98), |v| *v, || panic!())
    }))
    .is_err());
    drop(p);
    assert_eq!(snapshot(&map), before);
}

/// mod.rs "Panics in user code": a panicking `retain` closure leaves the map as
/// it was before the key whose `keep` panicked: earlier removals stay, that key
/// and the rest are untouched, and the map stays usable.
#[test]
fn a_panicking_retain_closure_keeps_the_removals_before_it() {
    let _s = serial();
    let map: SyncMap<u64, u64> = (0..20).map(|k| (k, k)).collect();
    let mut seen = Vec::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        map.retain(|k, _| {
            seen.push(*k);
            if seen.len() == 10 {
                panic!("keep");
            }
            false
        })
    }));
    assert!(r.is_err());
    assert_eq!(
        map.len(),
        11,
        "the 9 keys rejected before the panic are gone"
    );
    for (i, k) in seen.iter().enumerate() {
        assert_eq!(map.get_cloned(k).is_some(), i == 9, "key {k}");
    }
    map.insert(100, 100);
    assert_eq!(map.len(), 12);
}

static DROP_PANICS: AtomicBool = AtomicBool::new(false);
static LOUD_DROPS: AtomicUsize = AtomicUsize::new(0);
/// Eq and Hash by id; only `armed` instances (handed to the map) panic on drop,
/// so the test's own lookup temporaries do not.
#[derive(Clone, Debug)]
struct Loud(u64, bool);
eq_and_hash_by_id!(Loud);
fn armed(id: u64) -> Loud {
    Loud(id, true)
}
fn probe(id: u64) -> Loud {
    Loud(id, false)
}
impl Drop for Loud {
    fn drop(&mut self) {
        LOUD_DROPS.fetch_add(1, SeqCst);
        if self.1 && DROP_PANICS.load(SeqCst) && !thread::panicking() {
            panic!("Loud::drop");
        }
    }
}

#[test]
fn a_panicking_drop_of_what_the_map_drops_is_contained() {
    let _s = serial();
    DROP_PANICS.store(true, SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let map: SyncMap<Loud, Loud> = SyncMap::new();
        // Through a guard: SyncMap::insert/remove hand back clones, which the
        // caller (this test) would drop.
        let g = map.pin();
        for k in 0..40 {
            g.insert(armed(k), armed(k));
        }
        for k in 0..40 {
            g.insert(armed(k), armed(k + 1)); // the duplicate key is dropped
            g.insert(armed(k), armed(k + 2)); // a cell retired
        }
        map.pin().get_or_insert(armed(1), armed(0)); // the unused key and value
        map.pin().get_or_insert_with(armed(1), || unreachable!()); // the unused key
        map.pin().update(&probe(2), |v| armed(v.0 + 1)); // the old cell
        let p = map.pin();
        let mut first = true;
        p.update(&probe(5), |v| {
            if std::mem::take(&mut first) {
                g.insert(armed(5), armed(55)); // this update's first result loses
            }
            armed(v.0 + 1)
        });
        drop(p);
        g.update_or_insert_with(armed(6), |v| armed(v.0), || unreachable!()); // key dropped
        map.promote();
        for k in 0..25 {
            g.remove(&probe(k)); // compaction too
        }
        map.flush();
        map.clear();
        map.flush();
        for k in 0..40 {
            g.insert(armed(k), armed(k));
        }
        drop(g);
        drop(map); // drops every key and value
    }));
    DROP_PANICS.store(false, SeqCst);
    if let Err(e) = r {
        let msg = e.downcast_ref::<&str>().copied().unwrap_or("?");
        panic!("a drop panic escaped the map: {msg}");
    }
}

// ---------------------------------------------------------------------------
// flush, pending, batches, owned guards, drop
// ---------------------------------------------------------------------------

static FLUSH_DROPS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicIsize = AtomicIsize::new(0);
struct Counted;
impl Counted {
    fn new() -> Self {
        LIVE.fetch_add(1, SeqCst);
        Counted
    }
}
impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new()
    }
}
impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, SeqCst);
        FLUSH_DROPS.fetch_add(1, SeqCst);
    }
}

/// Crate docs: "Replaced and removed values go to the scheme in batches of 16
/// per thread, so up to 15 of a thread's retired values wait for its next
/// retirement on the same map, a flush or the map's drop". And `flush`: with no
/// other guard live, "everything retired before the call is freed when flush
/// returns and stats().pending counts only what other threads retired".
#[test]
fn a_partial_batch_waits_for_flush_and_flush_frees_everything() {
    let _s = serial();
    let map: SyncMap<u64, Counted> = SyncMap::new();
    let other: SyncMap<u64, u64> = SyncMap::new();
    map.insert(0, Counted::new()); // inline in the delta
    map.insert(0, Counted::new()); // into a cell: nothing retired (inline stays)
    assert_eq!(map.stats().values_retired, 0);
    let base = FLUSH_DROPS.load(SeqCst);
    for _ in 0..15 {
        map.insert(0, Counted::new()); // each retires the previous cell
    }
    let s = map.stats();
    assert_eq!((s.values_retired, s.pending), (15, 15));
    // The caller's arguments are dropped by us only when they were the key.
    let dropped_before = FLUSH_DROPS.load(SeqCst) - base;
    for _ in 0..50 {
        other.insert(1, 1);
        other.insert(1, 2);
        other.flush(); // another map's flush does not reach this map's batch
    }
    assert_eq!(
        FLUSH_DROPS.load(SeqCst) - base,
        dropped_before,
        "a partial batch was freed"
    );
    map.flush();
    let s = map.stats();
    assert_eq!(s.pending, 0, "flush with no other guard live: {s:?}");
    assert_eq!(FLUSH_DROPS.load(SeqCst) - base, dropped_before + 15);
}

/// OwnedPinned: what the map retires while it lives stays pending until it is
/// dropped; "Other maps are not affected."
#[test]
fn an_owned_guard_holds_back_only_its_own_maps_garbage() {
    let _s = serial();
    let a = Arc::new(SyncMap::<u64, String>::new());
    let b = SyncMap::<u64, String>::new();
    a.insert(1, "a0".into());
    b.insert(1, "b0".into());
    let owned = a.pin_owned();
    let seen = owned.get(&1).unwrap();
    for i in 0..40 {
        a.insert(1, format!("a{i}"));
        b.insert(1, format!("b{i}"));
    }
    a.remove(&1);
    a.flush();
    b.flush();
    assert_eq!(
        b.stats().pending,
        0,
        "another map's owned guard held b's garbage"
    );
    assert!(a.stats().pending > 0);
    assert_eq!(seen, "a0");
    drop(owned);
    a.flush();
    assert_eq!(a.stats().pending, 0);
}

/// "Dropping the map drops every key and value it holds or has retired, at
/// once, whatever guards other threads hold."
#[test]
fn dropping_the_map_drops_everything_while_another_thread_is_pinned() {
    let _s = serial();
    let pinned_elsewhere = SyncMap::<u64, u64>::new();
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        let pinned_elsewhere = &pinned_elsewhere;
        s.spawn(move || {
            let _p = pinned_elsewhere.pin();
            ready_tx.send(()).unwrap();
            hold_rx.recv().unwrap();
        });
        ready_rx.recv().unwrap();
        let base = LIVE.load(SeqCst);
        let left = {
            let map: SyncMap<u64, Counted> = SyncMap::new();
            for k in 0..100 {
                map.insert(k, Counted::new());
                map.insert(k, Counted::new());
                map.insert(k, Counted::new());
            }
            map.flush();
            for k in 0..50 {
                map.remove(&k);
            }
            for k in 0..100 {
                map.insert(k, Counted::new());
                map.insert(k, Counted::new());
            }
            map.remove(&3);
            map.insert(3, Counted::new());
            drop(map);
            LIVE.load(SeqCst) - base
        };
        hold_tx.send(()).unwrap();
        assert_eq!(left, 0, "values still alive after the map's drop");
    });
}

#[test]
fn stats_count_promotions_growths_and_retirements() {
    let _s = serial();
    let map: SyncMap<u64, u64> = SyncMap::new();
    let s0 = map.stats();
    assert_eq!(s0, Stats::default());
    for k in 0..10 {
        map.insert(k, k);
    }
    assert!(map.stats().delta_growths >= 1);
    map.promote();
    let s = map.stats();
    assert_eq!(s.promotions, s0.promotions + 1);
    assert!(s.tables_retired >= 1);
    map.insert(1, 100); // inline value stays
    assert_eq!(map.stats().values_retired, 0);
    map.insert(1, 101); // cell retired
    map.remove(&1); // cell retired
    assert_eq!(map.stats().values_retired, 2);
}
