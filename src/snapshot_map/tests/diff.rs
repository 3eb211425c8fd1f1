//! `Snapshot::diff`.

use std::collections::BTreeSet;

use crate::{Change, SnapshotMap};

fn summary<'a, V: std::fmt::Debug + 'a>(
    changes: impl Iterator<Item = Change<'a, u32, V>>,
) -> BTreeSet<String> {
    changes
        .map(|c| match c {
            Change::Added { key, value } => format!("+{key}={value:?}"),
            Change::Removed { key, value } => format!("-{key}={value:?}"),
            Change::Changed { key, old, new } => format!("~{key}:{old:?}->{new:?}"),
        })
        .collect()
}

#[test]
fn diff_reports_added_removed_and_changed_keys() {
    let map: SnapshotMap<u32, u32> = (0..5).map(|i| (i, i)).collect();
    let before = map.snapshot();
    map.batch(|txn| {
        txn.remove(&0);
        txn.insert(1, 100);
        txn.insert(2, 2); // same value: not a change
        txn.insert(7, 7);
    });
    let after = map.snapshot();
    let expected: BTreeSet<String> = ["-0=0", "~1:1->100", "+7=7"].map(String::from).into();
    assert_eq!(summary(before.diff(&after)), expected);
    // Reversed, the roles swap.
    let reversed: BTreeSet<String> = ["+0=0", "~1:100->1", "-7=7"].map(String::from).into();
    assert_eq!(summary(after.diff(&before)), reversed);
}

#[test]
fn diff_of_a_version_with_itself_is_empty() {
    let map: SnapshotMap<u32, u32> = (0..5).map(|i| (i, i)).collect();
    let a = map.snapshot();
    assert_eq!(a.diff(&a.clone()).count(), 0);
}

#[test]
fn diff_across_many_versions_is_the_net_change() {
    let map: SnapshotMap<u32, u32> = (0..5).map(|i| (i, i)).collect();
    let before = map.snapshot();
    map.insert(9, 9);
    map.remove(&9);
    map.insert(3, 30);
    map.insert(3, 3);
    map.insert(4, 40);
    let expected: BTreeSet<String> = ["~4:4->40"].map(String::from).into();
    assert_eq!(summary(before.diff(&map.snapshot())), expected);
}
