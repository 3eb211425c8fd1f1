//! `readmostly::SnapshotMap` in the lab: copy-on-write versions published
//! atomically. Every single write copies the table, as `ArcSwap<HashMap>`'s do;
//! the config-reload writer's batch is one `SnapshotMap::batch` (one copy, one
//! publish).

use readmostly::SnapshotMap;

use crate::keys::{LabHasher, LabKey};
use crate::maps::{LabMap, Visit};

/// Visits the `SnapshotMap` adapter.
pub fn visit<K: LabKey, S: LabHasher, V: Visit<K, S>>(v: &mut V) {
    v.visit::<SnapshotMapLab<K, S>>();
}

/// `readmostly::SnapshotMap`.
pub struct SnapshotMapLab<K, S>(SnapshotMap<K, u64, S>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for SnapshotMapLab<K, S> {
    type Local = ();
    fn name() -> String {
        "SnapshotMap".into()
    }
    fn id() -> String {
        "snapshotmap".into()
    }
    fn new(hasher: S) -> Self {
        SnapshotMapLab(SnapshotMap::with_hasher(hasher))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.get(key).map(|v| *v)
    }
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.insert(key, value);
    }
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.remove(key).is_some()
    }
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0.update(key, |_| value).is_some()
    }
    fn batch(&self, _: &(), remove: &[K], insert: &[K], value: u64) {
        self.0.batch(|txn| {
            for key in remove {
                txn.remove(key);
            }
            for key in insert {
                txn.insert(key.clone(), value);
            }
        });
    }
}
