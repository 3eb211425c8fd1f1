//! readmostly's maps: `SyncMap`, the classic protocol and `SnapshotMap`.

use readmostly::classic::ClassicSyncMap;
use readmostly::reclaim::{CrossbeamEpoch, Seize};
use readmostly::{SnapshotMap, SyncMap};

use super::LabMap;
use crate::keys::{LabHasher, LabKey};

/// The adapter of a map with `SyncMap`'s API (`pin()` per operation,
/// `promote()`, `flush()`, `stats()`): `$name` wrapping `$map<K, u64, S, $reclaim>`.
/// Another SyncMap implementation with that API (an earlier revision, another
/// reclamation backend) is one more invocation and one line in `for_each_map`;
/// with an earlier revision exposed as `readmostly::v2::SyncMap`, say:
/// `use readmostly::v2::SyncMap as SyncMapV2;`, then
/// `sync_map_adapter!(SyncMapV2Lab, SyncMapV2<CrossbeamEpoch>, "SyncMap v2", "syncmap-v2");`
/// and `v.visit::<readmostly::SyncMapV2Lab<K, S>>();` after `SyncMapLab`
/// (`--maps syncmap` then selects both).
macro_rules! sync_map_adapter {
    ($(#[$doc:meta])* $name:ident, $map:ident<$reclaim:ty>, $label:expr, $id:expr) => {
        $(#[$doc])*
        pub struct $name<K, S>($map<K, u64, S, $reclaim>);

        impl<K: LabKey, S: LabHasher> LabMap<K, S> for $name<K, S> {
            type Local = ();
            fn name() -> String {
                $label.into()
            }
            fn id() -> String {
                $id.into()
            }
            fn peer() -> bool {
                false
            }
            fn new(hasher: S) -> Self {
                $name($map::with_hasher_and_reclaim(hasher, <$reclaim>::default()))
            }
            fn local(&self) {}
            #[inline]
            fn get(&self, _: &(), key: &K::Borrowed) -> Option<u64> {
                self.0.pin().get(key).copied()
            }
            #[inline]
            fn insert(&self, _: &(), key: K, value: u64) {
                self.0.pin().insert(key, value);
            }
            #[inline]
            fn remove(&self, _: &(), key: &K::Borrowed) -> bool {
                self.0.pin().remove(key).is_some()
            }
            #[inline]
            fn update(&self, _: &(), key: &K, value: u64) -> bool {
                self.0.pin().update(key.borrowed(), |_| value).is_some()
            }
            fn settle(&self) {
                self.0.promote();
            }
            fn quiesce(&self) {
                for _ in 0..10_000 {
                    self.0.flush();
                    if self.0.stats().pending == 0 {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        }
    };
}

sync_map_adapter!(
    /// `readmostly::SyncMap` on crossbeam-epoch, pinned per operation.
    SyncMapLab,
    SyncMap<CrossbeamEpoch>,
    "SyncMap",
    "syncmap"
);

sync_map_adapter!(
    /// `readmostly::SyncMap` on seize (a collector per map), pinned per
    /// operation: the same map on the other reclamation backend.
    SyncMapSeizeLab,
    SyncMap<Seize>,
    "SyncMap (seize)",
    "syncmap-seize"
);

sync_map_adapter!(
    /// `readmostly::classic::ClassicSyncMap`: Go's `sync.Map` protocol exactly,
    /// the baseline the other SyncMaps are measured against in one run.
    ClassicSyncMapLab,
    ClassicSyncMap<CrossbeamEpoch>,
    "ClassicSyncMap (Go)",
    "classic"
);

/// `readmostly::SnapshotMap`: copy-on-write versions published atomically. Every
/// single write copies the table, as `ArcSwap<HashMap>`'s do; a batch (the
/// prefill, the config-reload writer's change) is one `batch`: one copy, one
/// publish.
pub struct SnapshotMapLab<K, S>(SnapshotMap<K, u64, S>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for SnapshotMapLab<K, S> {
    type Local = ();
    fn name() -> String {
        "SnapshotMap".into()
    }
    fn id() -> String {
        "snapshotmap".into()
    }
    fn peer() -> bool {
        false
    }
    fn new(hasher: S) -> Self {
        SnapshotMapLab(SnapshotMap::with_hasher(hasher))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K::Borrowed) -> Option<u64> {
        self.0.get(key).map(|v| *v)
    }
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.insert(key, value);
    }
    fn remove(&self, _: &(), key: &K::Borrowed) -> bool {
        self.0.remove(key).is_some()
    }
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0.update(key.borrowed(), |_| value).is_some()
    }
    fn batch(&self, _: &(), remove: &[K], insert: &[K], value: u64) {
        self.0.batch(|txn| {
            for key in remove {
                txn.remove(key.borrowed());
            }
            for key in insert {
                txn.insert(key.clone(), value);
            }
        });
    }
}
