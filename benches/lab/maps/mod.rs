//! The maps under test, each behind one small trait, and the list of them.
//!
//! Values are `u64`. Every map is built with the same hasher type `S` (see
//! `keys::LabHasher`) and used the way its documentation shows for a single
//! operation: epoch-based maps pin per operation, locked maps lock per operation.
//! The one exception is [`LabMap::batch`], the prefill and the config-reload
//! writer's bulk change, which each map does the cheapest way its API offers.
//!
//! Adding a map is one adapter (a type implementing [`LabMap`], in the file of
//! its family) and one line in [`for_each_map`].

mod cow;
mod locked;
mod peers;
mod readmostly;

use crate::keys::{LabHasher, LabKey};
use crate::workloads::Workload;

/// A concurrent map as the lab drives it.
pub trait LabMap<K: LabKey, S: LabHasher>: Sized + Send + Sync {
    /// Per-thread state, made on the thread that uses it (a left-right read
    /// handle); `()` for most maps.
    type Local;

    /// Name in the output.
    fn name() -> String;
    /// Name on the command line (`--maps`).
    fn id() -> String;
    /// An empty map.
    fn new(hasher: S) -> Self;
    /// The calling thread's state.
    fn local(&self) -> Self::Local;
    /// Whether the map is a peer (not one of readmostly's own): the
    /// "against the best peer" table compares with peers only.
    fn peer() -> bool {
        true
    }
    /// Whether the map is run on `workload` (default: all).
    fn supports(_workload: Workload) -> bool {
        true
    }

    /// The value of `key` (looked up by its borrowed form), copied out.
    fn get(&self, local: &Self::Local, key: &K::Borrowed) -> Option<u64>;
    /// Inserts or overwrites.
    fn insert(&self, local: &Self::Local, key: K, value: u64);
    /// Removes `key`; whether it was present.
    fn remove(&self, local: &Self::Local, key: &K::Borrowed) -> bool;
    /// Overwrites `key`'s value if present (never inserts); whether it was.
    fn update(&self, local: &Self::Local, key: &K, value: u64) -> bool;
    /// Removes `remove` and inserts `insert` (with `value`) as one change where
    /// the map has batches (one lock, one copy, one publish); by default one
    /// operation at a time.
    fn batch(&self, local: &Self::Local, remove: &[K], insert: &[K], value: u64) {
        for key in remove {
            self.remove(local, key.borrowed());
        }
        for key in insert {
            self.insert(local, key.clone(), value);
        }
    }
    /// Called once after the prefill: makes the map ready as its users would
    /// after a bulk load (SyncMap promotes its new keys).
    fn settle(&self) {}
    /// Frees what the map's reclaimer can free now (memory measurements only).
    fn quiesce(&self) {}
}

/// Receives each map type in turn (see [`for_each_map`]).
pub trait Visit<K: LabKey, S: LabHasher> {
    /// Called once per map type.
    fn visit<M: LabMap<K, S> + 'static>(&mut self);
}

/// Every map of the lab, in output order (the first is the subject of the
/// "against the best peer" table).
pub fn for_each_map<K: LabKey, S: LabHasher, V: Visit<K, S>>(v: &mut V) {
    v.visit::<readmostly::SyncMapLab<K, S>>();
    // Other SyncMap implementations (another backend; an earlier revision kept
    // under a hidden path, say) go here, with their adapters in
    // maps/readmostly.rs.
    v.visit::<readmostly::SyncMapSeizeLab<K, S>>();
    v.visit::<readmostly::ClassicSyncMapLab<K, S>>();
    v.visit::<readmostly::SnapshotMapLab<K, S>>();
    v.visit::<locked::StdRwLock<K, S>>();
    v.visit::<locked::ParkingLotRwLock<K, S>>();
    v.visit::<locked::StdMutex<K, S>>();
    v.visit::<peers::DashMapLab<K, S>>();
    v.visit::<peers::PapayaLab<K, S>>();
    v.visit::<peers::FlurryLab<K, S>>();
    v.visit::<peers::SccHashMap<K, S>>();
    v.visit::<peers::SccHashIndex<K, S>>();
    v.visit::<cow::ArcSwapLab<K, S>>();
    v.visit::<cow::LeftRightLab<K, S>>();
}

/// The map the tables divide by.
pub const BASELINE: &str = "RwLock<HashMap>";

/// Ids and names of every map, in order.
pub fn all_maps() -> Vec<(String, String)> {
    struct Names(Vec<(String, String)>);
    impl<K: LabKey, S: LabHasher> Visit<K, S> for Names {
        fn visit<M: LabMap<K, S> + 'static>(&mut self) {
            self.0.push((M::id(), M::name()));
        }
    }
    let mut names = Names(Vec::new());
    for_each_map::<u64, std::collections::hash_map::RandomState, _>(&mut names);
    names.0
}

/// Frees what the process-wide reclaimers hold and can free now: garbage of maps
/// dropped earlier (crossbeam-epoch's global queue, scc's epoch collector), so that
/// it is not freed inside the next measurement.
pub fn drain_reclaimers() {
    for _ in 0..128 {
        crossbeam_epoch::pin().flush();
        let guard = scc::ebr::Guard::new();
        guard.accelerate();
        drop(guard);
    }
}
