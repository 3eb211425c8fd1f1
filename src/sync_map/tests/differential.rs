//! Differential tests: random single-threaded operation sequences run on a
//! `SyncMap` and on `std::collections::HashMap`, compared after every step, with
//! the map's invariants checked after every step too.
//!
//! The key space is small (16 keys) so that operations keep hitting keys in every
//! state of the v3 protocol — inline, in a cell or removed, in the read table or
//! in the delta, left out by a promotion — and `promote()` is forced at arbitrary
//! points (removes also promote by themselves once tombstones reach half of the
//! root, and reads once they have spent the read budget). After every step the
//! root's invariants are checked, with exact counts (nothing is in flight).

use core::borrow::Borrow;
use core::fmt::Debug;
use core::hash::Hash;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::{Link, Place};
use crate::test_support::{flush_until_quiet, Counted, DropLog};
use crate::{LoadOrStore, SyncMap};

const KEYS: u8 = 16;

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, u32),
    /// `SyncMap::insert` (owned, clones the previous value).
    InsertOwned(u8, u32),
    Get(u8),
    GetCloned(u8),
    GetKeyValue(u8),
    ContainsKey(u8),
    Remove(u8),
    /// `SyncMap::remove` (owned).
    RemoveOwned(u8),
    GetOrInsert(u8, u32),
    GetOrInsertWith(u8, u32),
    /// `expected: None` uses the key's current value (a matching exchange).
    CompareExchange {
        key: u8,
        expected: Option<u32>,
        new: u32,
    },
    /// Removes if the current value is below the threshold.
    RemoveIf(u8, u32),
    Update(u8, u32),
    /// A guard held across a read, an overwrite and a remove of the same key: the
    /// first reference must stay valid and unchanged.
    HoldAcrossWrites(u8, u32),
    Clear,
    /// `SyncMap::clear` vs `Pinned::clear`.
    ClearPinned,
    /// Keeps pairs where `(key + value) % m != 0`.
    Retain(u32),
    RetainPinned(u32),
    Iter,
    Len,
    Promote,
}

fn key() -> impl Strategy<Value = u8> {
    0..KEYS
}

/// Values from a small range, so that compare_exchange with a guessed expected
/// value sometimes matches.
fn val() -> impl Strategy<Value = u32> {
    0..8u32
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (key(), val()).prop_map(|(k, v)| Op::Insert(k, v)),
        3 => (key(), val()).prop_map(|(k, v)| Op::InsertOwned(k, v)),
        5 => key().prop_map(Op::Get),
        2 => key().prop_map(Op::GetCloned),
        2 => key().prop_map(Op::GetKeyValue),
        2 => key().prop_map(Op::ContainsKey),
        6 => key().prop_map(Op::Remove),
        2 => key().prop_map(Op::RemoveOwned),
        3 => (key(), val()).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
        3 => (key(), val()).prop_map(|(k, v)| Op::GetOrInsertWith(k, v)),
        4 => (key(), prop::option::weighted(0.3, val()), val())
            .prop_map(|(key, expected, new)| Op::CompareExchange { key, expected, new }),
        3 => (key(), 0..9u32).prop_map(|(k, t)| Op::RemoveIf(k, t)),
        3 => (key(), 1..4u32).prop_map(|(k, d)| Op::Update(k, d)),
        2 => (key(), val()).prop_map(|(k, v)| Op::HoldAcrossWrites(k, v)),
        1 => Just(Op::Clear),
        1 => Just(Op::ClearPinned),
        1 => (1..4u32).prop_map(Op::Retain),
        1 => (1..4u32).prop_map(Op::RetainPinned),
        2 => Just(Op::Iter),
        1 => Just(Op::Len),
        3 => Just(Op::Promote),
    ]
}

/// How a test instantiates keys and values from the model's `u8` / `u32`.
trait Flavor {
    type K: Hash + Eq + Clone + Send + Sync + 'static + Debug;
    /// What lookups borrow: `K` itself, or `str` for `String` keys.
    type Q: Hash + Eq + ?Sized;
    type V: Send + Sync + 'static + Clone + PartialEq + Debug;
    fn key(&self, k: u8) -> Self::K;
    fn borrow(key: &Self::K) -> &Self::Q;
    fn index(key: &Self::K) -> u8;
    fn value(&self, v: u32) -> Self::V;
    fn payload(value: &Self::V) -> u32;
}

struct IntKeys;

impl Flavor for IntKeys {
    type K = u8;
    type Q = u8;
    type V = u32;
    fn key(&self, k: u8) -> u8 {
        k
    }
    fn borrow(key: &u8) -> &u8 {
        key
    }
    fn index(key: &u8) -> u8 {
        *key
    }
    fn value(&self, v: u32) -> u32 {
        v
    }
    fn payload(value: &u32) -> u32 {
        *value
    }
}

/// `String` keys looked up by `&str`.
struct StringKeys;

impl Flavor for StringKeys {
    type K = String;
    type Q = str;
    type V = u32;
    fn key(&self, k: u8) -> String {
        format!("key-{k}")
    }
    fn borrow(key: &String) -> &str {
        key.as_str()
    }
    fn index(key: &String) -> u8 {
        key.strip_prefix("key-").unwrap().parse().unwrap()
    }
    fn value(&self, v: u32) -> u32 {
        v
    }
    fn payload(value: &u32) -> u32 {
        *value
    }
}

/// Drop-counted keys and values: at the end, everything made is dropped once.
struct CountedKV(DropLog);

impl Flavor for CountedKV {
    type K = Counted<u8>;
    type Q = Counted<u8>;
    type V = Counted<u32>;
    fn key(&self, k: u8) -> Counted<u8> {
        self.0.make(k)
    }
    fn borrow(key: &Counted<u8>) -> &Counted<u8> {
        key
    }
    fn index(key: &Counted<u8>) -> u8 {
        key.payload
    }
    fn value(&self, v: u32) -> Counted<u32> {
        self.0.make(v)
    }
    fn payload(value: &Counted<u32>) -> u32 {
        value.payload
    }
}

fn payload<T: Flavor>(value: Option<&T::V>) -> Option<u32> {
    value.map(T::payload)
}

/// Runs `ops` on a fresh map and on a `HashMap` model, comparing every result.
fn run<T: Flavor>(kind: &T, ops: &[Op])
where
    T::K: Borrow<T::Q>,
{
    run_checked(kind, ops, |_, _| {});
}

/// [`run`], calling `after_step(step, map)` after each step's own checks.
fn run_checked<T: Flavor>(
    kind: &T,
    ops: &[Op],
    mut after_step: impl FnMut(usize, &SyncMap<T::K, T::V>),
) where
    T::K: Borrow<T::Q>,
{
    let map: SyncMap<T::K, T::V> = SyncMap::new();
    let mut model: HashMap<u8, u32> = HashMap::new();
    for (step, op) in ops.iter().enumerate() {
        apply(kind, &map, &mut model, op);
        map.check_root_exact();
        assert_eq!(map.len(), model.len(), "len after step {step}: {op:?}");
        assert_eq!(map.is_empty(), model.is_empty());
        after_step(step, &map);
    }
    for k in 0..KEYS {
        let probe = kind.key(k);
        assert_eq!(
            map.get_cloned(T::borrow(&probe)).map(|v| T::payload(&v)),
            model.get(&k).copied(),
            "final state of key {k}"
        );
    }
}

fn apply<T: Flavor>(kind: &T, map: &SyncMap<T::K, T::V>, model: &mut HashMap<u8, u32>, op: &Op)
where
    T::K: Borrow<T::Q>,
{
    let pinned = map.pin();
    // A lookup key for `k` (a fresh `K`, borrowed as `Q`).
    let probe = |k: u8| kind.key(k);
    match *op {
        Op::Insert(k, v) => {
            let old = pinned.insert(kind.key(k), kind.value(v));
            assert_eq!(payload::<T>(old), model.insert(k, v), "{op:?}");
        }
        Op::InsertOwned(k, v) => {
            let old = map.insert(kind.key(k), kind.value(v));
            assert_eq!(old.as_ref().map(T::payload), model.insert(k, v), "{op:?}");
        }
        Op::Get(k) => {
            let p = probe(k);
            assert_eq!(
                payload::<T>(pinned.get(T::borrow(&p))),
                model.get(&k).copied()
            );
        }
        Op::GetCloned(k) => {
            let p = probe(k);
            let got = map.get_cloned(T::borrow(&p));
            assert_eq!(got.as_ref().map(T::payload), model.get(&k).copied());
        }
        Op::GetKeyValue(k) => {
            let p = probe(k);
            let got = pinned
                .get_key_value(T::borrow(&p))
                .map(|(key, value)| (T::index(key), T::payload(value)));
            assert_eq!(got, model.get(&k).map(|v| (k, *v)));
        }
        Op::ContainsKey(k) => {
            let p = probe(k);
            assert_eq!(pinned.contains_key(T::borrow(&p)), model.contains_key(&k));
            assert_eq!(map.contains_key(T::borrow(&p)), model.contains_key(&k));
        }
        Op::Remove(k) => {
            let p = probe(k);
            assert_eq!(payload::<T>(pinned.remove(T::borrow(&p))), model.remove(&k));
        }
        Op::RemoveOwned(k) => {
            let p = probe(k);
            let got = map.remove(T::borrow(&p));
            assert_eq!(got.as_ref().map(T::payload), model.remove(&k));
        }
        Op::GetOrInsert(k, v) => {
            let got = pinned.get_or_insert(kind.key(k), kind.value(v));
            match model.get(&k) {
                Some(&current) => {
                    assert!(matches!(got, LoadOrStore::Loaded(x) if T::payload(x) == current))
                }
                None => {
                    assert!(matches!(got, LoadOrStore::Stored(x) if T::payload(x) == v));
                    model.insert(k, v);
                }
            }
        }
        Op::GetOrInsertWith(k, v) => {
            let called = Cell::new(false);
            let got = pinned.get_or_insert_with(kind.key(k), || {
                called.set(true);
                kind.value(v)
            });
            assert_eq!(
                called.get(),
                !model.contains_key(&k),
                "make runs iff absent"
            );
            assert_eq!(matches!(got, LoadOrStore::Stored(_)), called.get());
            let expected = *model.entry(k).or_insert(v);
            assert_eq!(T::payload(got.value()), expected);
        }
        Op::CompareExchange {
            key: k,
            expected,
            new,
        } => {
            let expected = expected.unwrap_or_else(|| model.get(&k).copied().unwrap_or(0));
            let p = probe(k);
            let current = kind.value(expected);
            let got = pinned.compare_exchange(T::borrow(&p), &current, kind.value(new));
            match model.get(&k).copied() {
                Some(now) if now == expected => {
                    assert_eq!(got.map(T::payload).ok(), Some(expected), "{op:?}");
                    model.insert(k, new);
                }
                now => {
                    let err = got.expect_err("compare_exchange must fail");
                    assert_eq!(payload::<T>(err.current), now, "{op:?}");
                    assert_eq!(T::payload(&err.new), new, "`new` handed back");
                }
            }
        }
        Op::RemoveIf(k, threshold) => {
            let p = probe(k);
            let calls = Cell::new(0);
            let got = pinned.remove_if(T::borrow(&p), |v| {
                calls.set(calls.get() + 1);
                T::payload(v) < threshold
            });
            let expected = match model.get(&k) {
                Some(&v) if v < threshold => model.remove(&k),
                _ => None,
            };
            assert_eq!(payload::<T>(got), expected, "{op:?}");
            assert_eq!(
                calls.get(),
                usize::from(model.contains_key(&k) || expected.is_some())
            );
        }
        Op::Update(k, delta) => {
            let p = probe(k);
            let calls = Cell::new(0);
            let got = pinned.update(T::borrow(&p), |v| {
                calls.set(calls.get() + 1);
                kind.value(T::payload(v) + delta)
            });
            let expected = model.get_mut(&k).map(|v| {
                *v += delta;
                *v
            });
            assert_eq!(payload::<T>(got), expected, "{op:?}");
            assert_eq!(calls.get(), usize::from(expected.is_some()));
            if let Some(v) = expected {
                let p = probe(k);
                assert_eq!(payload::<T>(pinned.get(T::borrow(&p))), Some(v));
            }
        }
        Op::HoldAcrossWrites(k, v) => {
            let p = probe(k);
            let before = pinned.get(T::borrow(&p));
            let snapshot = payload::<T>(before);
            assert_eq!(snapshot, model.get(&k).copied());
            // Overwrite and remove through another guard, then promote.
            {
                let other = map.pin();
                assert_eq!(
                    payload::<T>(other.insert(kind.key(k), kind.value(v))),
                    snapshot
                );
                assert_eq!(payload::<T>(other.remove(T::borrow(&p))), Some(v));
            }
            map.promote();
            assert_eq!(
                payload::<T>(before),
                snapshot,
                "a guarded reference changed"
            );
            assert_eq!(pinned.get(T::borrow(&p)), None);
            model.remove(&k);
        }
        Op::Clear => {
            drop(pinned);
            map.clear();
            model.clear();
        }
        Op::ClearPinned => {
            pinned.clear();
            model.clear();
        }
        Op::Retain(m) | Op::RetainPinned(m) => {
            let mut seen = Vec::new();
            let keep = |key: &T::K, value: &T::V| {
                let (k, v) = (T::index(key), T::payload(value));
                seen.push(k);
                (u32::from(k) + v) % m != 0
            };
            if matches!(op, Op::Retain(_)) {
                drop(pinned);
                map.retain(keep);
            } else {
                pinned.retain(keep);
            }
            let mut expected_seen: Vec<u8> = model.keys().copied().collect();
            expected_seen.sort_unstable();
            seen.sort_unstable();
            assert_eq!(seen, expected_seen, "retain visits every live key once");
            model.retain(|&k, &mut v| (u32::from(k) + v) % m != 0);
        }
        Op::Iter => {
            let pairs: Vec<(u8, u32)> = pinned
                .iter()
                .map(|(key, value)| (T::index(key), T::payload(value)))
                .collect();
            let set: HashSet<(u8, u32)> = pairs.iter().copied().collect();
            assert_eq!(set.len(), pairs.len(), "iteration yielded a pair twice");
            let expected: HashSet<(u8, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(set, expected);
        }
        Op::Len => {
            assert_eq!(pinned.len(), model.len());
            assert_eq!(pinned.is_empty(), model.is_empty());
        }
        Op::Promote => {
            drop(pinned);
            map.promote();
        }
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported with their minimal sequence; no files in src/.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn differential_int_keys(ops in prop::collection::vec(op(), 1..120)) {
        run(&IntKeys, &ops);
    }

    #[test]
    fn differential_string_keys_looked_up_by_str(ops in prop::collection::vec(op(), 1..120)) {
        run(&StringKeys, &ops);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// With drop-counted keys and values: after `promote()` and a flush exactly
    /// one key and one value per live key are alive (the new table's clones;
    /// stale inline values, removed keys, replaced cells and the old tables all
    /// gone), and dropping the map then drops them at once; nothing is dropped
    /// twice.
    #[test]
    fn differential_counted_no_leak_no_double_drop(ops in prop::collection::vec(op(), 1..100)) {
        let log = DropLog::new();
        let kind = CountedKV(log.clone());
        let map: SyncMap<Counted<u8>, Counted<u32>> = SyncMap::new();
        let mut model = HashMap::new();
        for op in &ops {
            apply(&kind, &map, &mut model, op);
            map.check_root_exact();
            prop_assert_eq!(map.len(), model.len());
            // Never fewer than the map holds: a live key and its value each.
            prop_assert!(log.alive() >= 2 * model.len());
        }
        map.promote();
        flush_until_quiet(&map);
        prop_assert_eq!(log.alive(), 2 * model.len());
        prop_assert_eq!(map.root_sizes(), (model.len(), 0));
        drop(map);
        prop_assert_eq!(log.alive(), 0, "left behind by the map's drop");
        prop_assert_eq!(log.double_drops(), 0);
    }
}

/// A regression-style sequence walking a key through every state of the v3
/// protocol in order — inline, in a cell and removed, in the read table and in
/// the delta, revived in place by each kind of insert, left out by a promotion
/// and re-inserted as a new node — with the state checked after every step.
#[test]
fn differential_scripted_transitions() {
    use Link::{Cell, Inline, Removed};
    use Op::*;
    use Place::{Delta, Read};
    let script = [
        (Insert(0, 0), 0, Some(Delta(Inline))),
        (Insert(1, 1), 1, Some(Delta(Inline))),
        (Insert(2, 2), 2, Some(Delta(Inline))),
        (Insert(3, 3), 3, Some(Delta(Inline))),
        (Insert(4, 4), 4, Some(Delta(Inline))),
        (Insert(5, 5), 5, Some(Delta(Inline))),
        (Insert(5, 6), 5, Some(Delta(Cell))), // overwritten: a cell
        (Promote, 5, Some(Read(Inline))),     // inline again, in the read table
        (Remove(2), 2, Some(Read(Removed))),  // 1 tombstone of 6 slots
        (Insert(7, 7), 7, Some(Delta(Inline))),
        (Remove(7), 7, Some(Delta(Removed))),        // 2 of 7
        (GetOrInsert(2, 4), 2, Some(Read(Cell))),    // revived in place, lock-free
        (InsertOwned(7, 8), 7, Some(Delta(Cell))),   // revived in place
        (Remove(2), 2, Some(Read(Removed))),         // 1 of 7: below half
        (Promote, 2, None),                          // left out of the new root
        (InsertOwned(2, 5), 2, Some(Delta(Inline))), // a new node, through the lock
        (
            CompareExchange {
                key: 2,
                expected: Some(5),
                new: 6,
            },
            2,
            Some(Delta(Cell)),
        ),
        (RemoveIf(3, 9), 3, Some(Read(Removed))),
        (Update(2, 1), 2, Some(Delta(Cell))),
        (Update(4, 1), 4, Some(Read(Cell))),
        (Iter, 3, Some(Read(Removed))),
        (GetOrInsertWith(3, 7), 3, Some(Read(Cell))),
        (HoldAcrossWrites(4, 1), 4, None), // removed, then promoted away
        (ClearPinned, 2, None),
        (Insert(2, 1), 2, Some(Delta(Inline))),
        (Retain(3), 2, None), // (2 + 1) % 3 == 0: removed, and 1 of 1 compacts
        (Len, 2, None),
    ];
    let ops: Vec<Op> = script.iter().map(|(op, _, _)| op.clone()).collect();
    fn check<T: Flavor>(kind: &T, script: &[(Op, u8, Option<Place>)], ops: &[Op])
    where
        T::K: Borrow<T::Q>,
    {
        run_checked(kind, ops, |step, map| {
            let (op, key, expected) = &script[step];
            let probe = kind.key(*key);
            assert_eq!(
                map.slot_of(T::borrow(&probe)),
                *expected,
                "key {key} after step {step}: {op:?}"
            );
        });
    }
    check(&IntKeys, &script, &ops);
    check(&StringKeys, &script, &ops);
}

/// As with `HashMap`, overwriting keeps the key the map holds (and drops the one
/// passed in at once), whichever table its slot is in. A promotion replaces the
/// map's key with a clone: a new identity, the same key.
#[test]
fn existing_key_keeps_its_original_key_value() {
    let log = DropLog::new();
    let map: SyncMap<Counted<u8>, u32> = SyncMap::new();
    let first = log.make(1);
    let first_id = first.id;
    map.insert(first, 1);
    let second = log.make(1);
    let second_id = second.id;
    assert_eq!(map.insert(second, 2), Some(1)); // in the delta
    assert!(
        log.is_dropped(second_id),
        "the duplicate key is dropped at once"
    );
    let key_id =
        |map: &SyncMap<Counted<u8>, u32>| map.pin().get_key_value(&log.make(1)).unwrap().0.id;
    assert_eq!(key_id(&map), first_id);
    map.promote();
    let promoted_id = key_id(&map);
    assert_ne!(promoted_id, first_id, "a promotion clones the key");
    flush_until_quiet(&map);
    assert!(
        log.is_dropped(first_id),
        "the original went with the old root"
    );
    let third = log.make(1);
    let third_id = third.id;
    assert_eq!(map.insert(third, 3), Some(2)); // in the read table
    assert!(log.is_dropped(third_id));
    assert!(map.pin().get_or_insert(log.make(1), 4).value() == &3);
    let pinned = map.pin();
    let (key, value) = pinned.get_key_value(&log.make(1)).unwrap();
    assert_eq!((key.id, *value), (promoted_id, 3));
    drop(pinned);
    drop(map);
    assert_eq!(log.alive(), 0);
    assert_eq!(log.double_drops(), 0);
}
