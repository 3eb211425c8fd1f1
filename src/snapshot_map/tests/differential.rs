//! Differential test against `std::collections::HashMap`: random sequences of
//! every write, each checked against a model, with old snapshots re-checked
//! against the model of their own version. Runs once per publication scheme.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;

use proptest::prelude::*;

use crate::reclaim::Publish;
use crate::{Change, Snapshot, SnapshotMap};

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, u16),
    Remove(u8),
    Update(u8, u16),
    Retain(u8),
    Clear,
    ReplaceAll(Vec<(u8, u16)>),
    Batch(Vec<Op>, bool),
    /// `compare_exchange(k, expected, new)`; `expected` is the key's current
    /// value when the flag is set (a likely success), else the given guess.
    CompareExchange(u8, bool, u16, u16),
    /// `remove_if(k, |v| v == expected)`; same convention.
    RemoveIf(u8, bool, u16),
    Reserve(u16),
    ShrinkToFit,
}

fn leaf() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..32, any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
        3 => (0u8..32).prop_map(Op::Remove),
        2 => (0u8..32, any::<u16>()).prop_map(|(k, v)| Op::Update(k, v)),
        1 => (1u8..5).prop_map(Op::Retain),
        1 => Just(Op::Clear),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => leaf(),
        1 => prop::collection::vec((0u8..32, any::<u16>()), 0..20).prop_map(Op::ReplaceAll),
        2 => (0u8..32, any::<bool>(), 0u16..4, any::<u16>())
            .prop_map(|(k, current, guess, new)| Op::CompareExchange(k, current, guess, new)),
        2 => (0u8..32, any::<bool>(), 0u16..4).prop_map(|(k, current, guess)| Op::RemoveIf(k, current, guess)),
        1 => (0u16..300).prop_map(Op::Reserve),
        1 => Just(Op::ShrinkToFit),
        2 => (prop::collection::vec(leaf(), 0..12), any::<bool>())
            .prop_map(|(ops, abort)| Op::Batch(ops, abort)),
    ]
}

type Model = HashMap<u8, u16>;

/// Applies a leaf op to the model, returning what the map should return.
fn apply_model(model: &mut Model, op: &Op) -> Option<u16> {
    match *op {
        Op::Insert(k, v) => model.insert(k, v),
        Op::Remove(k) => model.remove(&k),
        Op::Update(k, v) => model.get_mut(&k).map(|old| {
            *old = old.wrapping_add(v);
            *old
        }),
        Op::Retain(m) => {
            model.retain(|k, _| k % m != 0);
            None
        }
        Op::Clear => {
            model.clear();
            None
        }
        _ => unreachable!("not a leaf"),
    }
}

fn check(snapshot: &Snapshot<u8, u16>, model: &Model) {
    assert_eq!(snapshot.len(), model.len());
    for k in 0..32u8 {
        assert_eq!(snapshot.get(&k), model.get(&k), "key {k}");
    }
    let listed: Model = snapshot.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(&listed, model);
}

fn run<P: Publish>(map: SnapshotMap<u8, u16, RandomState, P>, ops: Vec<Op>) {
    let mut model = Model::new();
    let mut history: Vec<(Snapshot<u8, u16>, Model)> = vec![(map.snapshot(), model.clone())];
    for op in &ops {
        let before = map.snapshot();
        let model_before = model.clone();
        match op {
            Op::Insert(k, v) => assert_eq!(map.insert(*k, *v), apply_model(&mut model, op)),
            Op::Remove(k) => assert_eq!(map.remove(k), apply_model(&mut model, op)),
            Op::Update(k, v) => {
                assert_eq!(
                    map.update(k, |old| old.wrapping_add(*v)),
                    apply_model(&mut model, op)
                )
            }
            Op::Retain(m) => {
                map.retain(|k, _| k % m != 0);
                apply_model(&mut model, op);
            }
            Op::Clear => {
                map.clear();
                model.clear();
            }
            Op::ReplaceAll(pairs) => {
                map.replace_all(pairs.iter().copied());
                model = pairs.iter().copied().collect();
            }
            Op::CompareExchange(k, use_current, guess, new) => {
                let expected = match model.get(k) {
                    Some(v) if *use_current => *v,
                    _ => *guess,
                };
                let want = match model.get(k).copied() {
                    Some(found) if found == expected => Ok(model.insert(*k, *new).unwrap()),
                    found => Err(crate::SnapshotCompareExchangeError {
                        current: found,
                        new: *new,
                    }),
                };
                let version = map.version();
                let got = map.compare_exchange(k, &expected, *new);
                assert_eq!(got, want, "{op:?}");
                assert_eq!(map.version(), version + u64::from(got.is_ok()));
            }
            Op::RemoveIf(k, use_current, guess) => {
                let expected = match model.get(k) {
                    Some(v) if *use_current => *v,
                    _ => *guess,
                };
                let want = match model.get(k) {
                    Some(found) if *found == expected => model.remove(k),
                    _ => None,
                };
                let version = map.version();
                let got = map.remove_if(k, |v| *v == expected);
                assert_eq!(got, want, "{op:?}");
                assert_eq!(map.version(), version + u64::from(got.is_some()));
            }
            Op::Reserve(n) => {
                map.reserve(usize::from(*n));
                assert!(map.capacity() >= model.len() + usize::from(*n));
            }
            Op::ShrinkToFit => map.shrink_to_fit(),
            Op::Batch(inner, abort) => {
                let mut staged = model.clone();
                let result: Result<(), ()> = map.try_batch(|txn| {
                    for op in inner {
                        let expected = apply_model(&mut staged, op);
                        let got = match *op {
                            Op::Insert(k, v) => txn.insert(k, v),
                            Op::Remove(k) => txn.remove(&k),
                            Op::Update(k, v) => txn.update(&k, |old| old.wrapping_add(v)).copied(),
                            Op::Retain(m) => {
                                txn.retain(|k, _| k % m != 0);
                                None
                            }
                            Op::Clear => {
                                txn.clear();
                                None
                            }
                            _ => unreachable!(),
                        };
                        assert_eq!(got, expected, "inside batch: {op:?}");
                        assert_eq!(txn.len(), staged.len());
                    }
                    if *abort {
                        Err(())
                    } else {
                        Ok(())
                    }
                });
                assert_eq!(result.is_err(), *abort);
                if !abort {
                    model = staged;
                }
            }
        }
        let after = map.snapshot();
        check(&after, &model);
        // Version numbers move iff the content may have changed.
        if model != model_before {
            assert!(after.version() > before.version());
        }
        // The diff is exactly the model's difference.
        let mut rebuilt = model_before.clone();
        for change in before.diff(&after) {
            match change {
                Change::Added { key, value } => {
                    assert!(rebuilt.insert(*key, *value).is_none())
                }
                Change::Removed { key, value } => assert_eq!(rebuilt.remove(key), Some(*value)),
                Change::Changed { key, old, new } => {
                    assert_ne!(old, new);
                    assert_eq!(rebuilt.insert(*key, *new), Some(*old));
                }
            }
        }
        assert_eq!(rebuilt, model);
        history.push((after, model.clone()));
    }
    // Every snapshot still reads its own version.
    for (snapshot, model) in &history {
        check(snapshot, model);
    }
    assert_eq!(map.stats().published, map.version());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_std_hash_map(ops in prop::collection::vec(op(), 0..60)) {
        run(SnapshotMap::new(), ops);
    }
}

#[cfg(feature = "crossbeam-epoch")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_std_hash_map_crossbeam_epoch(ops in prop::collection::vec(op(), 0..60)) {
        run(SnapshotMap::with_publish(crate::reclaim::CrossbeamEpoch), ops);
    }
}

#[cfg(feature = "seize")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_std_hash_map_seize(ops in prop::collection::vec(op(), 0..60)) {
        run(SnapshotMap::with_publish(crate::reclaim::Seize::new()), ops);
    }
}
