//! The maps under test, each behind one small trait, and the list of them.
//!
//! Values are `u64`. Every map is built with the same hasher type `S` (see
//! `keys::LabHasher`) and used the way its documentation shows for a single
//! operation: epoch-based maps pin per operation, locked maps lock per operation.
//! The one exception is [`LabMap::batch`], the config-reload writer's bulk change,
//! which each map does the cheapest way its API offers.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use arc_swap::ArcSwap;
use readmostly::classic::ClassicSyncMap;
use readmostly::reclaim::CrossbeamEpoch;
use readmostly::reclaim::Reclaim;
use readmostly::SyncMap;

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
    /// Whether the map is run on `workload` (default: all).
    fn supports(_workload: Workload) -> bool {
        true
    }

    /// The value of `key`, copied out.
    fn get(&self, local: &Self::Local, key: &K) -> Option<u64>;
    /// Inserts or overwrites.
    fn insert(&self, local: &Self::Local, key: K, value: u64);
    /// Removes `key`; whether it was present.
    fn remove(&self, local: &Self::Local, key: &K) -> bool;
    /// Overwrites `key`'s value if present (never inserts); whether it was.
    fn update(&self, local: &Self::Local, key: &K, value: u64) -> bool;
    /// Removes `remove` and inserts `insert` (with `value`) as one change where
    /// the map has batches (one lock, one copy, one publish); by default one
    /// operation at a time.
    fn batch(&self, local: &Self::Local, remove: &[K], insert: &[K], value: u64) {
        for key in remove {
            self.remove(local, key);
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

/// Every map of the lab, in output order. Adding a map, or a `SyncMap`
/// reclamation backend, is one line here.
pub fn for_each_map<K: LabKey, S: LabHasher, V: Visit<K, S>>(v: &mut V) {
    // SyncMap, one line per reclamation backend:
    v.visit::<SyncMapLab<K, S, readmostly::reclaim::CrossbeamEpoch>>();
    // The classic protocol (Go's sync.Map, SyncMap v1): the "before" of v2.
    v.visit::<ClassicSyncMapLab<K, S>>();
    crate::snapshot::visit(v);
    v.visit::<StdRwLock<K, S>>();
    v.visit::<ParkingLotRwLock<K, S>>();
    v.visit::<StdMutex<K, S>>();
    v.visit::<DashMapLab<K, S>>();
    v.visit::<PapayaLab<K, S>>();
    v.visit::<FlurryLab<K, S>>();
    v.visit::<SccHashMap<K, S>>();
    v.visit::<SccHashIndex<K, S>>();
    v.visit::<ArcSwapLab<K, S>>();
    v.visit::<LeftRightLab<K, S>>();
}

/// The map the tables divide by.
pub const BASELINE: &str = "RwLock<HashMap>";

/// Names and ids of every map, in order.
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
/// it is not freed inside the next memory measurement.
pub fn drain_reclaimers() {
    for _ in 0..128 {
        crossbeam_epoch::pin().flush();
        let guard = scc::ebr::Guard::new();
        guard.accelerate();
        drop(guard);
    }
}

/// The last path segment of a type's name (`CrossbeamEpoch`).
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

// ---------------------------------------------------------------------------
// readmostly

/// `readmostly::SyncMap` with reclamation backend `R`, pinned per operation.
pub struct SyncMapLab<K, S, R: Reclaim>(SyncMap<K, u64, S, R>);

impl<K: LabKey, S: LabHasher, R: Reclaim> LabMap<K, S> for SyncMapLab<K, S, R> {
    type Local = ();
    fn name() -> String {
        format!("SyncMap/{}", short_type_name::<R>())
    }
    fn id() -> String {
        format!("syncmap-{}", short_type_name::<R>().to_lowercase())
    }
    fn new(hasher: S) -> Self {
        SyncMapLab(SyncMap::with_hasher_and_reclaim(hasher, R::default()))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.pin().get(key).copied()
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.pin().insert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.pin().remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0.pin().update(key, |_| value).is_some()
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

/// `readmostly::classic::ClassicSyncMap`: Go's protocol exactly, as `SyncMap`
/// ran it before v2 — kept in the lab to measure v2 against it in one run.
pub struct ClassicSyncMapLab<K, S>(ClassicSyncMap<K, u64, S, CrossbeamEpoch>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for ClassicSyncMapLab<K, S> {
    type Local = ();
    fn name() -> String {
        "ClassicSyncMap (v1)".to_string()
    }
    fn id() -> String {
        "classic".to_string()
    }
    fn new(hasher: S) -> Self {
        ClassicSyncMapLab(ClassicSyncMap::with_hasher_and_reclaim(
            hasher,
            CrossbeamEpoch,
        ))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.pin().get(key).copied()
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.pin().insert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.pin().remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0.pin().update(key, |_| value).is_some()
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

// ---------------------------------------------------------------------------
// Locked std and hashbrown maps

/// `std::sync::RwLock<std::collections::HashMap>`: the baseline.
pub struct StdRwLock<K, S>(RwLock<HashMap<K, u64, S>>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for StdRwLock<K, S> {
    type Local = ();
    fn name() -> String {
        BASELINE.into()
    }
    fn id() -> String {
        "rwlock".into()
    }
    fn new(hasher: S) -> Self {
        StdRwLock(RwLock::new(HashMap::with_hasher(hasher)))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.read().unwrap().get(key).copied()
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.write().unwrap().insert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.write().unwrap().remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0
            .write()
            .unwrap()
            .get_mut(key)
            .map(|v| *v = value)
            .is_some()
    }
    fn batch(&self, _: &(), remove: &[K], insert: &[K], value: u64) {
        let mut map = self.0.write().unwrap();
        for key in remove {
            map.remove(key);
        }
        for key in insert {
            map.insert(key.clone(), value);
        }
    }
}

/// `parking_lot::RwLock<hashbrown::HashMap>`.
pub struct ParkingLotRwLock<K, S>(parking_lot::RwLock<hashbrown::HashMap<K, u64, S>>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for ParkingLotRwLock<K, S> {
    type Local = ();
    fn name() -> String {
        "pl::RwLock<hashbrown>".into()
    }
    fn id() -> String {
        "pl-rwlock".into()
    }
    fn new(hasher: S) -> Self {
        ParkingLotRwLock(parking_lot::RwLock::new(hashbrown::HashMap::with_hasher(
            hasher,
        )))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.read().get(key).copied()
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.write().insert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.write().remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0.write().get_mut(key).map(|v| *v = value).is_some()
    }
    fn batch(&self, _: &(), remove: &[K], insert: &[K], value: u64) {
        let mut map = self.0.write();
        for key in remove {
            map.remove(key);
        }
        for key in insert {
            map.insert(key.clone(), value);
        }
    }
}

/// `std::sync::Mutex<std::collections::HashMap>`.
pub struct StdMutex<K, S>(Mutex<HashMap<K, u64, S>>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for StdMutex<K, S> {
    type Local = ();
    fn name() -> String {
        "Mutex<HashMap>".into()
    }
    fn id() -> String {
        "mutex".into()
    }
    fn new(hasher: S) -> Self {
        StdMutex(Mutex::new(HashMap::with_hasher(hasher)))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.lock().unwrap().get(key).copied()
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.lock().unwrap().insert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.lock().unwrap().remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0
            .lock()
            .unwrap()
            .get_mut(key)
            .map(|v| *v = value)
            .is_some()
    }
    fn batch(&self, _: &(), remove: &[K], insert: &[K], value: u64) {
        let mut map = self.0.lock().unwrap();
        for key in remove {
            map.remove(key);
        }
        for key in insert {
            map.insert(key.clone(), value);
        }
    }
}

// ---------------------------------------------------------------------------
// Concurrent peers

/// `dashmap::DashMap` (sharded `RwLock`s over hashbrown tables).
pub struct DashMapLab<K, S>(dashmap::DashMap<K, u64, S>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for DashMapLab<K, S> {
    type Local = ();
    fn name() -> String {
        "DashMap".into()
    }
    fn id() -> String {
        "dashmap".into()
    }
    fn new(hasher: S) -> Self {
        DashMapLab(dashmap::DashMap::with_hasher(hasher))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.get(key).map(|r| *r)
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.insert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0.get_mut(key).map(|mut r| *r = value).is_some()
    }
}

/// `papaya::HashMap` (lock-free, seize reclamation), pinned per operation.
pub struct PapayaLab<K, S>(papaya::HashMap<K, u64, S>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for PapayaLab<K, S> {
    type Local = ();
    fn name() -> String {
        "papaya".into()
    }
    fn id() -> String {
        "papaya".into()
    }
    fn new(hasher: S) -> Self {
        PapayaLab(papaya::HashMap::builder().hasher(hasher).build())
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.pin().get(key).copied()
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.pin().insert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.pin().remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        // papaya's `update` takes the key by value.
        self.0.pin().update(key.clone(), |_| value).is_some()
    }
}

/// `flurry::HashMap` (Java's ConcurrentHashMap), pinned per operation.
pub struct FlurryLab<K, S>(flurry::HashMap<K, u64, S>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for FlurryLab<K, S> {
    type Local = ();
    fn name() -> String {
        "flurry".into()
    }
    fn id() -> String {
        "flurry".into()
    }
    fn new(hasher: S) -> Self {
        FlurryLab(flurry::HashMap::with_hasher(hasher))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.pin().get(key).copied()
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.pin().insert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.pin().remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0
            .pin()
            .compute_if_present(key, |_, _| Some(value))
            .is_some()
    }
}

/// `scc::HashMap` (bucket locks, lock-free resizing).
pub struct SccHashMap<K, S: LabHasher>(scc::HashMap<K, u64, S>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for SccHashMap<K, S> {
    type Local = ();
    fn name() -> String {
        "scc::HashMap".into()
    }
    fn id() -> String {
        "scc-hashmap".into()
    }
    fn new(hasher: S) -> Self {
        SccHashMap(scc::HashMap::with_hasher(hasher))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.read(key, |_, v| *v)
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.upsert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0.update(key, |_, v| *v = value).is_some()
    }
}

/// `scc::HashIndex` (lock-free reads, copy-on-write updates).
pub struct SccHashIndex<K, S: LabHasher>(scc::HashIndex<K, u64, S>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for SccHashIndex<K, S> {
    type Local = ();
    fn name() -> String {
        "scc::HashIndex".into()
    }
    fn id() -> String {
        "scc-hashindex".into()
    }
    fn new(hasher: S) -> Self {
        SccHashIndex(scc::HashIndex::with_hasher(hasher))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.peek_with(key, |_, v| *v)
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        match self.0.entry(key) {
            scc::hash_index::Entry::Occupied(entry) => entry.update(value),
            scc::hash_index::Entry::Vacant(entry) => {
                entry.insert_entry(value);
            }
        }
    }
    #[inline]
    fn remove(&self, _: &(), key: &K) -> bool {
        self.0.remove(key)
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0.get(key).map(|entry| entry.update(value)).is_some()
    }
}

// ---------------------------------------------------------------------------
// Copy-on-write maps

/// `arc_swap::ArcSwap<HashMap>`: readers load the current map; every write
/// copies the whole map and swaps it in with `rcu` (one copy per batch).
pub struct ArcSwapLab<K, S>(ArcSwap<HashMap<K, u64, S>>);

impl<K: LabKey, S: LabHasher> LabMap<K, S> for ArcSwapLab<K, S> {
    type Local = ();
    fn name() -> String {
        "ArcSwap<HashMap>".into()
    }
    fn id() -> String {
        "arcswap".into()
    }
    fn new(hasher: S) -> Self {
        ArcSwapLab(ArcSwap::from_pointee(HashMap::with_hasher(hasher)))
    }
    fn local(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &K) -> Option<u64> {
        self.0.load().get(key).copied()
    }
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(key.clone(), value);
            map
        });
    }
    fn remove(&self, _: &(), key: &K) -> bool {
        // As a user would: no copy when there is nothing to remove.
        if !self.0.load().contains_key(key) {
            return false;
        }
        let before = self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.remove(key);
            map
        });
        before.contains_key(key)
    }
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        if !self.0.load().contains_key(key) {
            return false;
        }
        let before = self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            if let Some(v) = map.get_mut(key) {
                *v = value;
            }
            map
        });
        before.contains_key(key)
    }
    fn batch(&self, _: &(), remove: &[K], insert: &[K], value: u64) {
        self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            for key in remove {
                map.remove(key);
            }
            for key in insert {
                map.insert(key.clone(), value);
            }
            map
        });
    }
}

/// A `left_right` map: two copies of a `HashMap`, readers on one, the single
/// writer (behind a mutex here) on the other, swapped at each publish. Run only
/// where there is at most one writer (`read-only`, `config-reload`); every write
/// outside a batch publishes at once, as a map that must show it would.
pub struct LeftRightLab<K: LabKey, S: LabHasher> {
    write: Mutex<left_right::WriteHandle<LrInner<K, S>, LrOp<K>>>,
    readers: left_right::ReadHandleFactory<LrInner<K, S>>,
}

/// The map left-right keeps two copies of.
#[derive(Clone)]
pub struct LrInner<K, S>(HashMap<K, u64, S>);

/// A write to a [`LrInner`], replayed on the second copy.
pub enum LrOp<K> {
    Insert(K, u64),
    Remove(K),
}

impl<K: LabKey, S: LabHasher> left_right::Absorb<LrOp<K>> for LrInner<K, S> {
    fn absorb_first(&mut self, op: &mut LrOp<K>, _: &Self) {
        match op {
            LrOp::Insert(key, value) => {
                self.0.insert(key.clone(), *value);
            }
            LrOp::Remove(key) => {
                self.0.remove(key);
            }
        }
    }
    fn absorb_second(&mut self, op: LrOp<K>, _: &Self) {
        match op {
            LrOp::Insert(key, value) => {
                self.0.insert(key, value);
            }
            LrOp::Remove(key) => {
                self.0.remove(&key);
            }
        }
    }
    fn sync_with(&mut self, first: &Self) {
        self.0.clone_from(&first.0);
    }
}

impl<K: LabKey, S: LabHasher> LeftRightLab<K, S> {
    fn write(&self, ops: impl IntoIterator<Item = LrOp<K>>) {
        let mut write = self.write.lock().unwrap();
        for op in ops {
            write.append(op);
        }
        write.publish();
    }
}

impl<K: LabKey, S: LabHasher> LabMap<K, S> for LeftRightLab<K, S> {
    type Local = left_right::ReadHandle<LrInner<K, S>>;
    fn name() -> String {
        "left-right<HashMap>".into()
    }
    fn id() -> String {
        "left-right".into()
    }
    fn new(hasher: S) -> Self {
        let (write, read) = left_right::new_from_empty(LrInner(HashMap::with_hasher(hasher)));
        LeftRightLab {
            write: Mutex::new(write),
            readers: read.factory(),
        }
    }
    fn local(&self) -> Self::Local {
        self.readers.handle()
    }
    fn supports(workload: Workload) -> bool {
        workload.single_writer()
    }
    #[inline]
    fn get(&self, local: &Self::Local, key: &K) -> Option<u64> {
        local.enter().and_then(|map| map.0.get(key).copied())
    }
    fn insert(&self, _: &Self::Local, key: K, value: u64) {
        self.write([LrOp::Insert(key, value)]);
    }
    fn remove(&self, local: &Self::Local, key: &K) -> bool {
        let present = self.get(local, key).is_some();
        self.write([LrOp::Remove(key.clone())]);
        present
    }
    fn update(&self, local: &Self::Local, key: &K, value: u64) -> bool {
        let present = self.get(local, key).is_some();
        if present {
            self.write([LrOp::Insert(key.clone(), value)]);
        }
        present
    }
    fn batch(&self, _: &Self::Local, remove: &[K], insert: &[K], value: u64) {
        let removes = remove.iter().map(|key| LrOp::Remove(key.clone()));
        let inserts = insert.iter().map(|key| LrOp::Insert(key.clone(), value));
        self.write(removes.chain(inserts));
    }
}
