//! The concurrent peers: sharded locks (dashmap, scc::HashMap) and lock-free
//! maps (papaya, flurry, scc::HashIndex).

use super::LabMap;
use crate::keys::{LabHasher, LabKey};

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
    fn get(&self, _: &(), key: &K::Borrowed) -> Option<u64> {
        self.0.get(key).map(|r| *r)
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.insert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K::Borrowed) -> bool {
        self.0.remove(key).is_some()
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0
            .get_mut(key.borrowed())
            .map(|mut r| *r = value)
            .is_some()
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
        self.0
            .pin()
            .compute_if_present(key.borrowed(), |_, _| Some(value))
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
    fn get(&self, _: &(), key: &K::Borrowed) -> Option<u64> {
        self.0.read(key, |_, v| *v)
    }
    #[inline]
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.upsert(key, value);
    }
    #[inline]
    fn remove(&self, _: &(), key: &K::Borrowed) -> bool {
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
    fn get(&self, _: &(), key: &K::Borrowed) -> Option<u64> {
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
    fn remove(&self, _: &(), key: &K::Borrowed) -> bool {
        self.0.remove(key)
    }
    #[inline]
    fn update(&self, _: &(), key: &K, value: u64) -> bool {
        self.0.get(key).map(|entry| entry.update(value)).is_some()
    }
}
