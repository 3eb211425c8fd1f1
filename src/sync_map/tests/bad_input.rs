//! Hostile user code and adversarial inputs.
//!
//! The documented contract ("Panics in user code" on [`SyncMap`]): a panicking
//! `Hash`, `Eq` or closure leaves the map as it was; a panicking `Drop` of a key or
//! value that the map drops is contained (freed, reported by the hook, not
//! propagated). After each caught panic the map must keep working, keep its
//! invariants, and leak or double-drop nothing.
//!
//! Also: a hasher under which every key collides, the empty map, a large map, and
//! zero-sized values.
//!
//! The fixture holds keys in every state of the v3 protocol (inline, in a cell
//! or removed, in the read table or in the delta; left out by a promotion; never
//! inserted), and "unchanged" means every key's place and link state, the root's
//! sizes and every protocol and ledger counter.
//!
//! Panicking `Clone` and `Hash` *inside promotions* are in `promotion_panics`.

use core::hash::{BuildHasher, Hash, Hasher};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::super::policy::MIN_PROMOTION_LEN;
use super::{Link, Place};
use crate::test_support::{flush_until_quiet, Counted, DropLog, Evil};
use crate::SyncMap;

type Key = Counted<Evil>;
type Val = Counted<u32>;
type EvilMap = SyncMap<Key, Val>;

struct Fixture {
    log: DropLog,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            log: DropLog::new(),
        }
    }

    fn key(&self, id: u32) -> Key {
        self.log.make(Evil {
            id,
            ..Evil::default()
        })
    }

    fn hash_bomb(&self, id: u32) -> Key {
        self.log.make(Evil {
            id,
            panic_hash: true,
            ..Evil::default()
        })
    }

    fn eq_bomb(&self, id: u32) -> Key {
        self.log.make(Evil {
            id,
            panic_eq: true,
            ..Evil::default()
        })
    }

    /// A new key (id `id`) whose hash collides with key `alias`'s, and whose `Eq`
    /// panics on its `calls + 1`-th call.
    fn fused_collider(&self, id: u32, alias: u32, calls: usize) -> Key {
        self.log.make(Evil {
            id,
            alias: Some(alias),
            eq_fuse: Some(Arc::new(AtomicUsize::new(calls))),
            ..Evil::default()
        })
    }

    fn val(&self, v: u32) -> Val {
        self.log.make(v)
    }

    /// A map with slots in every state, and its expected contents:
    /// * 0..10 promoted into the read table (inline), of which 3 removed and
    ///   then left out by a promotion (absent from the current root), 4 removed
    ///   after it (a tombstone in the read table) and 5 overwritten (a cell);
    /// * 10..16 new keys in the delta (inline in their nodes), of which 12
    ///   removed by `remove_if` (a tombstone in the delta) and 13 overwritten (a
    ///   cell);
    /// * 99 never inserted.
    fn populated(&self) -> (EvilMap, BTreeMap<u32, u32>) {
        let map = EvilMap::new();
        let mut model = BTreeMap::new();
        let pinned = map.pin();
        for i in 0..10 {
            pinned.insert(self.key(i), self.val(i));
            model.insert(i, i);
        }
        drop(pinned);
        map.promote();
        map.pin().remove(&self.key(3));
        model.remove(&3);
        map.promote();
        let pinned = map.pin();
        for i in 10..16 {
            pinned.insert(self.key(i), self.val(i));
            model.insert(i, i);
        }
        pinned.remove(&self.key(4));
        model.remove(&4);
        pinned.remove_if(&self.key(12), |_| true);
        model.remove(&12);
        for i in [5, 13] {
            pinned.insert(self.key(i), self.val(i * 10));
            model.insert(i, i * 10);
        }
        drop(pinned);
        let place = |i| map.slot_of(&self.key(i));
        assert_eq!(place(0), Some(Place::Read(Link::Inline)));
        assert_eq!(place(3), None);
        assert_eq!(place(4), Some(Place::Read(Link::Removed)));
        assert_eq!(place(5), Some(Place::Read(Link::Cell)));
        assert_eq!(place(11), Some(Place::Delta(Link::Inline)));
        assert_eq!(place(12), Some(Place::Delta(Link::Removed)));
        assert_eq!(place(13), Some(Place::Delta(Link::Cell)));
        assert_eq!(place(99), None);
        assert_eq!(map.root_sizes(), (9, 6));
        map.check_root_exact();
        (map, model)
    }

    /// Everything about the map's state that an operation could change. With
    /// `sampled: false`, leaves out the sampled delta reads (a lookup that finds
    /// a delta key may be sampled before an update closure runs).
    fn fingerprint(&self, map: &EvilMap, sampled: bool) -> impl PartialEq + core::fmt::Debug {
        let slots: Vec<_> = (0..20).map(|i| map.slot_of(&self.key(i))).collect();
        let stats = map.stats();
        (
            slots,
            (map.root_sizes(), map.len()),
            sampled.then(|| (map.promote_wanted(), stats.delta_reads, stats.cell_reads)),
            (
                stats.promotions,
                stats.promotions_abandoned,
                stats.compactions,
                stats.delta_growths,
            ),
            (
                stats.values_retired,
                stats.entries_retired,
                stats.tables_retired,
            ),
        )
    }

    /// The map holds exactly `model`.
    fn assert_contents(&self, map: &EvilMap, model: &BTreeMap<u32, u32>) {
        for i in 0..20 {
            assert_eq!(
                map.pin().get(&self.key(i)).map(|v| v.payload),
                model.get(&i).copied(),
                "key {i}"
            );
        }
        assert_eq!(map.len(), model.len());
    }

    /// After a caught panic: the invariants hold, the contents are `model`, and
    /// every operation still works.
    fn assert_works(&self, map: &EvilMap, model: &mut BTreeMap<u32, u32>) {
        map.check_root_exact();
        self.assert_contents(map, model);
        let pinned = map.pin();
        for (i, v) in [(3, 30), (4, 40), (12, 120), (50, 500), (1, 10)] {
            let old = pinned.insert(self.key(i), self.val(v)).map(|v| v.payload);
            assert_eq!(old, model.insert(i, v), "insert {i}");
        }
        assert_eq!(
            pinned.remove(&self.key(0)).map(|v| v.payload),
            model.remove(&0)
        );
        assert_eq!(
            pinned
                .update(&self.key(50), |v| self.val(v.payload + 1))
                .map(|v| v.payload),
            Some(501)
        );
        model.insert(50, 501);
        drop(pinned);
        map.check_root_exact();
        map.promote();
        map.check_root_exact();
        let seen: BTreeMap<u32, u32> = map
            .pin()
            .iter()
            .map(|(k, v)| (k.payload.id, v.payload))
            .collect();
        assert_eq!(&seen, model);
        self.assert_contents(map, model);
    }

    /// Drops `map` and checks that every key and value made was dropped once.
    fn finish(self, map: EvilMap) {
        drop(map);
        self.log.flush_until_all_dropped();
    }
}

// ---------------------------------------------------------------------------
// Panicking Hash and Eq: the map is exactly as before.
// ---------------------------------------------------------------------------

type KeyCase = (&'static str, fn(&Fixture, &EvilMap, Key));

/// Every operation that takes a key, each given the probe key.
fn key_cases() -> Vec<KeyCase> {
    vec![
        ("insert", |f, m, k| {
            m.pin().insert(k, f.val(0));
        }),
        ("insert_owned", |f, m, k| {
            m.insert(k, f.val(0));
        }),
        ("get", |_, m, k| {
            m.pin().get(&k);
        }),
        ("get_cloned", |_, m, k| {
            m.get_cloned(&k);
        }),
        ("get_key_value", |_, m, k| {
            m.pin().get_key_value(&k);
        }),
        ("contains_key", |_, m, k| {
            m.contains_key(&k);
        }),
        ("remove", |_, m, k| {
            m.pin().remove(&k);
        }),
        ("remove_owned", |_, m, k| {
            m.remove(&k);
        }),
        ("get_or_insert", |f, m, k| {
            m.pin().get_or_insert(k, f.val(0));
        }),
        ("get_or_insert_with", |f, m, k| {
            m.pin().get_or_insert_with(k, || f.val(0));
        }),
        ("compare_exchange", |f, m, k| {
            let _ = m.pin().compare_exchange(&k, &f.val(0), f.val(1));
        }),
        ("remove_if", |_, m, k| {
            m.pin().remove_if(&k, |_| true);
        }),
        ("update", |f, m, k| {
            m.pin().update(&k, |v| f.val(v.payload));
        }),
    ]
}

/// Runs every key operation with `probe(id)` for each id on a fresh populated map:
/// each must panic and leave the map exactly as it was.
fn assert_probe_panics_leave_map_unchanged(probe: fn(&Fixture, u32) -> Key, ids: &[u32]) {
    for (name, case) in key_cases() {
        for &id in ids {
            let f = Fixture::new();
            let (map, mut model) = f.populated();
            let before = f.fingerprint(&map, true);
            let result = catch_unwind(AssertUnwindSafe(|| case(&f, &map, probe(&f, id))));
            assert!(result.is_err(), "{name} on key {id}: expected a panic");
            assert_eq!(
                f.fingerprint(&map, true),
                before,
                "{name} on key {id} changed the map"
            );
            f.assert_works(&map, &mut model);
            f.finish(map);
        }
    }
}

#[test]
fn panicking_hash_leaves_map_unchanged() {
    // Keys in every state: inline, in a cell and removed in the read table,
    // left out by a promotion, inline, in a cell and removed in the delta,
    // never inserted.
    assert_probe_panics_leave_map_unchanged(Fixture::hash_bomb, &[0, 3, 4, 5, 11, 12, 13, 99]);
}

#[test]
fn panicking_eq_leaves_map_unchanged() {
    // Eq runs only on a hash match, so only keys with a slot in the current
    // root (3's was left out by a promotion): in the read table or the delta,
    // inline, in a cell or removed. Every probe is lock-free: Eq panics outside
    // the lock.
    assert_probe_panics_leave_map_unchanged(Fixture::eq_bomb, &[0, 4, 5, 11, 12, 13]);
}

/// A new key's insert runs no user code under the writer lock: its probes and
/// its CAS into the delta are lock-free. A key that collides with an existing one
/// (same full hash) and whose `Eq` panics — on the first lookup, or on the second
/// comparison, the delta insert's own probe — leaves the map unchanged and the
/// lock unpoisoned. (A `promote()` whose `Clone` panics does poison it, and the
/// map ignores that: see `promotion_panics`.)
#[test]
fn colliding_new_key_whose_eq_panics_poisons_nothing() {
    let f = Fixture::new();
    let (map, mut model) = f.populated();
    let inserts: [KeyCase; 4] = [
        ("insert", |f, m, k| {
            m.pin().insert(k, f.val(0));
        }),
        ("insert_owned", |f, m, k| {
            m.insert(k, f.val(0));
        }),
        ("get_or_insert", |f, m, k| {
            m.pin().get_or_insert(k, f.val(0));
        }),
        ("get_or_insert_with", |f, m, k| {
            m.pin().get_or_insert_with(k, || f.val(0));
        }),
    ];
    let before = f.fingerprint(&map, true);
    // Colliding with a key of the read table (Eq panics on its first call) and
    // with one of the delta (on its first, and on its second: in the insert).
    for (alias, calls) in [(0, 0), (11, 0), (11, 1)] {
        for (name, insert) in inserts {
            let result = catch_unwind(AssertUnwindSafe(|| {
                insert(&f, &map, f.fused_collider(200, alias, calls));
            }));
            assert!(
                result.is_err(),
                "{name} colliding with {alias} after {calls} calls: expected a panic"
            );
            assert_eq!(f.fingerprint(&map, true), before, "{name} changed the map");
        }
    }
    assert!(!map.write_side.writer.is_poisoned());
    f.assert_works(&map, &mut model);
    for i in 100..110 {
        map.pin().insert(f.key(i), f.val(i));
        model.insert(i, i);
    }
    map.check_root_exact();
    for i in 100..110 {
        assert_eq!(map.pin().get(&f.key(i)).map(|v| v.payload), Some(i));
    }
    f.finish(map);
}

// ---------------------------------------------------------------------------
// Panicking closures: the map's contents are unchanged.
// ---------------------------------------------------------------------------

#[test]
fn panicking_update_closure_leaves_map_unchanged() {
    for id in [0, 11] {
        let f = Fixture::new();
        let (map, mut model) = f.populated();
        let before = f.fingerprint(&map, false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            map.pin().update(&f.key(id), |_| -> Val {
                panic!("update panics on purpose")
            });
        }));
        assert!(result.is_err());
        assert_eq!(f.fingerprint(&map, false), before, "update of {id}");
        // A closure that panics after building a value: that value is dropped.
        let result = catch_unwind(AssertUnwindSafe(|| {
            map.pin().update(&f.key(id), |v| {
                let _made = f.val(v.payload + 1);
                panic!("update panics on purpose")
            });
        }));
        assert!(result.is_err());
        assert_eq!(f.fingerprint(&map, false), before, "update of {id}");
        f.assert_works(&map, &mut model);
        f.finish(map);
    }
}

#[test]
fn panicking_remove_if_closure_leaves_map_unchanged() {
    for id in [0, 11] {
        let f = Fixture::new();
        let (map, mut model) = f.populated();
        let before = f.fingerprint(&map, false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            map.pin()
                .remove_if(&f.key(id), |_| panic!("remove_if panics on purpose"));
        }));
        assert!(result.is_err());
        assert_eq!(f.fingerprint(&map, false), before, "remove_if of {id}");
        f.assert_works(&map, &mut model);
        f.finish(map);
    }
}

#[test]
fn panicking_get_or_insert_with_closure_leaves_key_absent() {
    // A tombstone in the read table or in the delta (lock-free path: the value is
    // made for the CAS), dropped by a promotion or never inserted (locked path:
    // the value is made before the lock).
    for id in [3, 4, 12, 99] {
        let f = Fixture::new();
        let (map, mut model) = f.populated();
        let before = f.fingerprint(&map, false);
        let locks = map.audit_locks();
        let result = catch_unwind(AssertUnwindSafe(|| {
            map.pin()
                .get_or_insert_with(f.key(id), || panic!("make panics on purpose"));
        }));
        assert!(result.is_err());
        assert_eq!(
            f.fingerprint(&map, false),
            before,
            "get_or_insert_with of {id}"
        );
        assert_eq!(map.audit_locks(), locks, "`make` ran under the lock");
        f.assert_works(&map, &mut model);
        f.finish(map);
    }
}

#[test]
fn panicking_get_or_insert_with_on_a_fresh_map_creates_no_entry() {
    let f = Fixture::new();
    let map = EvilMap::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        map.pin()
            .get_or_insert_with(f.key(1), || panic!("make panics on purpose"));
    }));
    assert!(result.is_err());
    assert_eq!(map.root_sizes(), (0, 0));
    assert_eq!(map.audit_locks(), 0, "`make` runs before the lock");
    assert_eq!(map.stats(), crate::Stats::default());
    assert!(map.is_empty());
    map.check_root_exact();
    assert!(map
        .pin()
        .get_or_insert_with(f.key(1), || f.val(1))
        .is_stored());
    assert_eq!(map.pin().get(&f.key(1)).map(|v| v.payload), Some(1));
    f.finish(map);
}

#[test]
fn panicking_value_eq_in_compare_exchange_leaves_map_unchanged() {
    let log = DropLog::new();
    let evil = |id, panic_eq| {
        log.make(Evil {
            id,
            panic_eq,
            ..Evil::default()
        })
    };
    let map: SyncMap<u32, Counted<Evil>> = SyncMap::new();
    map.pin().insert(1, evil(1, false));
    map.promote();
    map.pin().insert(2, evil(2, false)); // in the delta
    for key in [1, 2] {
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _ = map
                .pin()
                .compare_exchange(&key, &evil(key, true), evil(100, false));
        }));
        assert!(result.is_err());
        assert_eq!(map.pin().get(&key).map(|v| v.payload.id), Some(key));
        map.check_root_exact();
    }
    assert_eq!(map.stats().values_retired, 0);
    let pinned = map.pin();
    assert!(pinned
        .compare_exchange(&1, &evil(1, false), evil(10, false))
        .is_ok());
    assert_eq!(pinned.get(&1).map(|v| v.payload.id), Some(10));
    drop(pinned);
    drop(map);
    log.flush_until_all_dropped();
}

#[test]
fn panicking_retain_closure_leaves_a_consistent_map() {
    let f = Fixture::new();
    let (map, model) = f.populated();
    let mut calls = 0;
    let result = catch_unwind(AssertUnwindSafe(|| {
        map.retain(|_, _| {
            calls += 1;
            assert!(calls < 5, "retain panics on purpose");
            false
        });
    }));
    assert!(result.is_err());
    map.check_root_exact();
    // Each removal is atomic on its own: 4 keys removed, the rest intact.
    let mut remaining = BTreeMap::new();
    for (&k, &v) in &model {
        if let Some(value) = map.pin().get(&f.key(k)) {
            assert_eq!(value.payload, v);
            remaining.insert(k, v);
        }
    }
    assert_eq!(remaining.len(), model.len() - 4);
    let mut remaining_model = remaining;
    f.assert_works(&map, &mut remaining_model);
    f.finish(map);
}

// ---------------------------------------------------------------------------
// Panicking Clone in the owned conveniences.
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct CloneBomb {
    value: u32,
    armed: bool,
}

impl Clone for CloneBomb {
    fn clone(&self) -> Self {
        assert!(!self.armed, "Clone panics on purpose");
        CloneBomb {
            value: self.value,
            armed: false,
        }
    }
}

#[test]
fn panicking_clone_in_get_cloned_releases_the_guard() {
    let map: SyncMap<u32, CloneBomb> = SyncMap::new();
    map.pin().insert(
        1,
        CloneBomb {
            value: 1,
            armed: true,
        },
    );
    map.pin().insert(
        2,
        CloneBomb {
            value: 2,
            armed: false,
        },
    );
    let result = catch_unwind(AssertUnwindSafe(|| map.get_cloned(&1)));
    assert!(result.is_err());
    map.check_root_exact();
    assert_eq!(map.get_cloned(&2).map(|v| v.value), Some(2));
    // The guard pinned by get_cloned was released on unwind: garbage retired now
    // can be freed.
    map.pin().insert(
        2,
        CloneBomb {
            value: 3,
            armed: false,
        },
    );
    map.pin().remove(&1);
    flush_until_quiet(&map);
    assert_eq!(map.len(), 1);
}

#[test]
fn panicking_clone_after_owned_insert_or_remove_keeps_the_change() {
    // `SyncMap::insert` and `SyncMap::remove` clone the previous value after the
    // change is made: a panicking clone cannot undo it, and must not break the map.
    let map: SyncMap<u32, CloneBomb> = SyncMap::new();
    map.pin().insert(
        1,
        CloneBomb {
            value: 1,
            armed: true,
        },
    );
    map.pin().insert(
        2,
        CloneBomb {
            value: 2,
            armed: true,
        },
    );
    let result = catch_unwind(AssertUnwindSafe(|| {
        map.insert(
            1,
            CloneBomb {
                value: 10,
                armed: false,
            },
        )
    }));
    assert!(result.is_err());
    assert_eq!(map.pin().get(&1).map(|v| v.value), Some(10));
    let result = catch_unwind(AssertUnwindSafe(|| map.remove(&2)));
    assert!(result.is_err());
    assert_eq!(map.pin().get(&2), None);
    assert_eq!(map.len(), 1);
    map.check_root_exact();
    flush_until_quiet(&map);
}

// ---------------------------------------------------------------------------
// Panicking Drop of keys and values the map drops: contained.
// ---------------------------------------------------------------------------

/// A fixture whose keys and values all carry one bomb, armed on demand.
struct Bombs {
    log: DropLog,
    bomb: Arc<AtomicBool>,
}

impl Bombs {
    fn new() -> Self {
        Bombs {
            log: DropLog::new(),
            bomb: Arc::new(AtomicBool::new(false)),
        }
    }

    fn make(&self, v: u32) -> Counted<u32> {
        self.log.make_with_bomb(v, Some(Arc::clone(&self.bomb)))
    }

    fn arm(&self, armed: bool) {
        self.bomb.store(armed, Ordering::Relaxed);
    }

    /// A map of bomb-carrying keys and values `0..n`, promoted.
    fn map(&self, n: u32) -> SyncMap<Counted<u32>, Counted<u32>> {
        let map = SyncMap::new();
        for i in 0..n {
            map.pin().insert(self.make(i), self.make(i));
        }
        map.promote();
        map
    }

    /// A lookup key that never explodes.
    fn probe(&self, v: u32) -> Counted<u32> {
        self.log.make(v)
    }
}

/// Runs `op` with every bomb armed, then flushes until the map's garbage is
/// freed: neither may panic.
fn contained<K, V>(bombs: &Bombs, map: &SyncMap<K, V>, what: &str, op: impl FnOnce())
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
{
    bombs.arm(true);
    let result = catch_unwind(AssertUnwindSafe(|| {
        op();
        flush_until_quiet(map);
    }));
    bombs.arm(false);
    assert!(result.is_ok(), "{what}: a Drop panic escaped the map");
}

#[test]
fn panicking_value_drop_is_contained() {
    let b = Bombs::new();
    let map = b.map(40);
    map.pin().insert(b.make(100), b.make(100)); // a delta key too
                                                // Inline values are replaced without being dropped; cells are retired and
                                                // dropped by the reclaimer: both kinds are exercised.
    contained(&b, &map, "overwrite of an inline value", || {
        map.pin().insert(b.probe(1), b.make(1001));
    });
    contained(&b, &map, "overwrite of a cell", || {
        map.pin().insert(b.probe(1), b.log.make(1001));
    });
    assert!(map.stats().values_retired >= 1);
    contained(&b, &map, "remove", || {
        map.pin().remove(&b.probe(2));
    });
    contained(&b, &map, "update", || {
        map.pin()
            .update(&b.probe(3), |v| b.log.make(v.payload + 1000));
    });
    contained(&b, &map, "compare_exchange", || {
        let pinned = map.pin();
        assert!(pinned
            .compare_exchange(&b.probe(4), &b.probe(4), b.log.make(1004))
            .is_ok());
    });
    contained(&b, &map, "remove_if", || {
        map.pin().remove_if(&b.probe(5), |_| true);
    });
    contained(&b, &map, "retain", || {
        map.retain(|k, _| k.payload != 6);
    });
    contained(&b, &map, "remove of a delta key", || {
        map.pin().remove(&b.probe(100));
    });
    map.check_root_exact();
    assert_eq!(map.len(), 41 - 4);
    assert_eq!(map.pin().get(&b.probe(1)).map(|v| v.payload), Some(1001));
    assert_eq!(map.pin().get(&b.probe(3)).map(|v| v.payload), Some(1003));
    // A promotion retires the old root: its keys, stale inline values and
    // still-linked cells are dropped by the reclaimer, each panic contained.
    contained(&b, &map, "promotion", || map.promote());
    contained(&b, &map, "clear", || map.clear());
    assert!(map.is_empty());
    map.check_root_exact();
    // Still usable.
    map.pin().insert(b.log.make(7), b.log.make(7));
    assert_eq!(map.pin().get(&b.probe(7)).map(|v| v.payload), Some(7));
    drop(map);
    b.log.flush_until_all_dropped();
}

#[test]
fn panicking_drop_in_map_drop_is_contained() {
    let b = Bombs::new();
    let map = b.map(20);
    map.pin().insert(b.make(100), b.make(100));
    map.pin().remove(&b.probe(0));
    b.arm(true);
    let result = catch_unwind(AssertUnwindSafe(move || drop(map)));
    b.arm(false);
    assert!(result.is_ok(), "a Drop panic escaped the map's drop");
    b.log.flush_until_all_dropped();
}

#[test]
fn panicking_key_drop_is_contained() {
    let b = Bombs::new();
    const N: u32 = 74;
    let map = b.map(N);
    // Removed keys leave the root at the next promotion (their slots are freed
    // by the reclaimer with the retired root), or by a tombstone compaction.
    contained(&b, &map, "remove + promote", || {
        map.pin().remove(&b.probe(0));
        map.promote();
    });
    contained(&b, &map, "remove of a delta key + promote", || {
        map.pin().insert(b.make(500), b.log.make(500));
        map.pin().remove(&b.probe(500));
        map.promote();
    });
    contained(&b, &map, "tombstone compaction", || {
        // Tombstones reach half of the 73 slots at the 37th remove.
        for i in 1..=N / 2 + 1 {
            map.pin().remove(&b.probe(i));
        }
    });
    assert!(map.stats().compactions >= 1);
    map.check_root_exact();
    contained(&b, &map, "clear", || map.clear());
    assert!(map.is_empty());
    map.check_root_exact();
    map.pin().insert(b.make(1), b.make(1));
    assert_eq!(map.len(), 1);
    drop(map);
    b.log.flush_until_all_dropped();
}

/// `insert` of a present key keeps the stored key and drops the one passed in;
/// `get_or_insert` of a present key drops the key and the value passed in. The
/// doc promises that a panicking `Drop` of a key or value the map drops "on
/// overwrite" is contained; these drops happen on the caller's thread.
#[test]
fn panicking_drop_of_surplus_argument_is_contained() {
    let b = Bombs::new();
    let map = b.map(4);
    contained(&b, &map, "insert of a present key (surplus key)", || {
        map.pin().insert(b.make(1), b.log.make(10));
    });
    contained(
        &b,
        &map,
        "get_or_insert of a present key (surplus key)",
        || {
            map.pin().get_or_insert(b.make(2), b.log.make(20));
        },
    );
    drop(map);
    b.log.flush_until_all_dropped();
}

/// The third surplus argument of the test above, on its own: `get_or_insert`'s
/// value when the key is present. `Pinned::get_or_insert` keeps the value in an
/// `Option` captured by the `make` closure it hands to `load_or_store`; when the
/// key is present the value is never taken, and the `Option` is dropped at the
/// end of `get_or_insert`, outside `drop_contained`, so its panic propagates.
#[test]
fn panicking_drop_of_surplus_value_is_contained() {
    let b = Bombs::new();
    let map = b.map(4);
    contained(
        &b,
        &map,
        "get_or_insert of a present key (surplus value)",
        || {
            map.pin().get_or_insert(b.log.make(3), b.make(30));
        },
    );
    drop(map);
    b.log.flush_until_all_dropped();
}

/// Whatever the answer to the test above, the map stays consistent and the
/// operation takes effect when the caller's surplus key panics on drop.
#[test]
fn surplus_argument_drop_panic_leaves_map_consistent() {
    let b = Bombs::new();
    let map = b.map(4);
    b.arm(true);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        map.pin().insert(b.make(1), b.log.make(10));
    }));
    b.arm(false);
    assert_eq!(map.pin().get(&b.probe(1)).map(|v| v.payload), Some(10));
    // (Only one of key and value may panic here: a second panic while the first
    // unwinds would abort.)
    b.arm(true);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        map.pin().get_or_insert(b.make(2), b.log.make(20));
    }));
    let _ = catch_unwind(AssertUnwindSafe(|| {
        map.pin().get_or_insert(b.log.make(3), b.make(30));
    }));
    b.arm(false);
    assert_eq!(map.pin().get(&b.probe(2)).map(|v| v.payload), Some(2));
    assert_eq!(map.pin().get(&b.probe(3)).map(|v| v.payload), Some(3));
    map.check_root_exact();
    assert_eq!(map.len(), 4);
    flush_until_quiet(&map);
    drop(map);
    b.log.flush_until_all_dropped();
}

// ---------------------------------------------------------------------------
// Adversarial inputs.
// ---------------------------------------------------------------------------

/// Every key hashes to the same value: every probe walks every entry.
#[derive(Clone, Copy, Default)]
struct ConstantState;

struct ConstantHasher;

impl Hasher for ConstantHasher {
    fn finish(&self) -> u64 {
        0x5EED
    }
    fn write(&mut self, _: &[u8]) {}
}

impl BuildHasher for ConstantState {
    type Hasher = ConstantHasher;
    fn build_hasher(&self) -> ConstantHasher {
        ConstantHasher
    }
}

#[test]
fn constant_hasher_every_key_collides() {
    const N: u32 = 1_500;
    let map: SyncMap<u32, u32, ConstantState> = SyncMap::with_hasher(ConstantState);
    let mut model = BTreeMap::new();
    for i in 0..N {
        assert_eq!(map.insert(i, i), None);
        model.insert(i, i);
    }
    assert_eq!(map.len(), N as usize);
    for i in 0..N {
        assert_eq!(map.get_cloned(&i), Some(i), "lookup {i}");
    }
    // The delta was merged into the read table as it grew.
    let (read, delta) = map.root_sizes();
    assert!(map.stats().promotions >= 1);
    assert_eq!(read + delta, N as usize);
    // A full delta merges once it holds half of the read table; below that it
    // grows (room ×4), so it never reaches twice the read table (or 4 × 64).
    assert!(
        delta < (2 * read).max(4 * MIN_PROMOTION_LEN),
        "({read}, {delta})"
    );
    map.check_root_exact();
    let pinned = map.pin();
    for i in (0..N).step_by(3) {
        assert_eq!(pinned.remove(&i), Some(&i));
        model.remove(&i);
    }
    for i in (1..N).step_by(3) {
        assert_eq!(pinned.insert(i, i + 1), Some(&i));
        model.insert(i, i + 1);
    }
    for i in (2..N).step_by(3) {
        assert_eq!(pinned.update(&i, |v| v * 2), Some(&(i * 2)));
        model.insert(i, i * 2);
        assert_eq!(pinned.compare_exchange(&i, &(i * 2), i * 3), Ok(&(i * 2)));
        model.insert(i, i * 3);
        assert!(pinned.compare_exchange(&i, &0, 0).is_err() || i == 0);
    }
    for i in (0..N + 100).step_by(7) {
        let stored = pinned.get_or_insert(i, 7);
        assert_eq!(stored.is_stored(), !model.contains_key(&i));
        assert_eq!(stored.value(), model.entry(i).or_insert(7));
    }
    for i in N + 100..N + 110 {
        assert_eq!(pinned.get(&i), None);
        assert_eq!(pinned.remove(&i), None);
    }
    drop(pinned);
    map.check_root_exact();
    let seen: BTreeMap<u32, u32> = map.pin().iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(seen, model);
    map.retain(|k, _| k % 2 == 0);
    model.retain(|k, _| k % 2 == 0);
    map.promote();
    map.check_root_exact();
    for i in 0..N + 100 {
        assert_eq!(map.get_cloned(&i), model.get(&i).copied(), "key {i}");
    }
    assert_eq!(map.len(), model.len());
}

#[test]
fn empty_map_every_operation() {
    let map: SyncMap<String, u32> = SyncMap::new();
    let check = |map: &SyncMap<String, u32>| {
        map.check_root_exact();
        assert!(map.is_empty());
        assert_eq!(map.len(), 0);
    };
    check(&map);
    {
        let pinned = map.pin();
        assert_eq!(pinned.get("a"), None);
        assert_eq!(pinned.get_key_value("a"), None);
        assert!(!pinned.contains_key("a"));
        assert_eq!(pinned.remove("a"), None);
        assert_eq!(pinned.remove_if("a", |_| true), None);
        assert_eq!(pinned.update("a", |v| v + 1), None);
        let err = pinned.compare_exchange("a", &0, 1).unwrap_err();
        assert_eq!((err.current, err.new), (None, 1));
        assert_eq!(pinned.iter().count(), 0);
        let mut calls = 0;
        pinned.retain(|_, _| {
            calls += 1;
            true
        });
        assert_eq!(calls, 0);
        pinned.clear();
        assert_eq!(pinned.len(), 0);
        assert!(pinned.is_empty());
        assert_eq!(format!("{pinned:?}"), "{}");
    }
    check(&map);
    assert_eq!(map.get_cloned("a"), None);
    assert!(!map.contains_key("a"));
    assert_eq!(map.remove("a"), None);
    map.retain(|_, _| true);
    map.clear();
    map.promote();
    map.flush();
    check(&map);
    assert_eq!(format!("{map:?}"), "{}");
    let stats = map.stats();
    assert_eq!(
        (
            stats.delta_reads,
            stats.cell_reads,
            stats.values_retired,
            stats.entries_retired,
            stats.promotions_abandoned,
        ),
        (0, 0, 0, 0, 0)
    );
    // A key inserted then removed leaves an empty map behind.
    assert_eq!(map.insert("a".into(), 1), None);
    assert_eq!(map.remove("a"), Some(1));
    check(&map);
    map.promote();
    assert_eq!(map.root_sizes(), (0, 0));
    check(&map);
    // And dropping an empty map is fine.
    drop(map);
    let never_used: SyncMap<u8, u8> = SyncMap::new();
    drop(never_used);
}

#[test]
fn large_map_get_and_remove() {
    const N: u64 = 200_000;
    let map: SyncMap<u64, u64> = (0..N).map(|i| (i, i * 2)).collect();
    assert_eq!(map.len(), N as usize);
    assert_eq!(
        map.root_sizes(),
        (N as usize, 0),
        "collected maps are promoted"
    );
    let pinned = map.pin();
    for i in 0..N {
        assert_eq!(pinned.get(&i), Some(&(i * 2)));
    }
    assert_eq!(pinned.get(&N), None);
    drop(pinned);
    assert_eq!(
        map.stats().delta_reads,
        0,
        "every key served by the read table"
    );
    for i in (0..N).filter(|i| i % 4 != 0) {
        assert_eq!(map.remove(&i), Some(i * 2));
    }
    assert_eq!(map.len(), (N / 4) as usize);
    assert!(map.stats().compactions >= 1, "mass removes compact");
    assert!(
        map.read_len() < N as usize / 2,
        "removed keys gave their slots back"
    );
    let pinned = map.pin();
    for i in 0..N {
        assert_eq!(pinned.get(&i).copied(), (i % 4 == 0).then_some(i * 2));
    }
    drop(pinned);
    map.check_root_exact();
}

/// `get_or_insert_with` makes the value before it takes the map's lock, so a
/// `make` that uses the map itself — a memoized recursive function, a cache
/// filling a dependency — works (std's `Mutex` is not reentrant: a `make` run
/// under the lock would deadlock here). The docs do not say `make` must not use
/// the map. (The channel's timeout turns a deadlock into a failure, not a hang.)
#[test]
fn get_or_insert_with_make_may_use_the_map() {
    use std::sync::mpsc;
    use std::time::Duration;
    // Leaked, so that a deadlocked thread cannot outlive what it borrows.
    let map: &'static SyncMap<u32, u32> = Box::leak(Box::new(SyncMap::new()));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let pinned = map.pin();
        let v = *pinned
            .get_or_insert_with(1, || {
                // A dependency of key 1, computed and cached first.
                map.insert(2, 20);
                10
            })
            .value();
        tx.send(v).unwrap();
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(got, Ok(10), "get_or_insert_with deadlocked on its own map");
    assert_eq!(map.get_cloned(&2), Some(20));
}
