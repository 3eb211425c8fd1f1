//! Copy-on-write maps: `ArcSwap<HashMap>` (a copy per write) and left-right
//! (two copies, one writer).

use std::collections::HashMap;
use std::sync::Mutex;

use arc_swap::ArcSwap;

use super::LabMap;
use crate::keys::{LabHasher, LabKey};
use crate::workloads::Workload;

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
    fn get(&self, _: &(), key: &K::Borrowed) -> Option<u64> {
        self.0.load().get(key).copied()
    }
    fn insert(&self, _: &(), key: K, value: u64) {
        self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(key.clone(), value);
            map
        });
    }
    fn remove(&self, _: &(), key: &K::Borrowed) -> bool {
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
        if !self.0.load().contains_key(key.borrowed()) {
            return false;
        }
        let before = self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            if let Some(v) = map.get_mut(key.borrowed()) {
                *v = value;
            }
            map
        });
        before.contains_key(key.borrowed())
    }
    fn batch(&self, _: &(), remove: &[K], insert: &[K], value: u64) {
        self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            for key in remove {
                map.remove(key.borrowed());
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
                self.0.remove(key.borrowed());
            }
        }
    }
    fn absorb_second(&mut self, op: LrOp<K>, _: &Self) {
        match op {
            LrOp::Insert(key, value) => {
                self.0.insert(key, value);
            }
            LrOp::Remove(key) => {
                self.0.remove(key.borrowed());
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
    fn get(&self, local: &Self::Local, key: &K::Borrowed) -> Option<u64> {
        local.enter().and_then(|map| map.0.get(key).copied())
    }
    fn insert(&self, _: &Self::Local, key: K, value: u64) {
        self.write([LrOp::Insert(key, value)]);
    }
    fn remove(&self, local: &Self::Local, key: &K::Borrowed) -> bool {
        let present = self.get(local, key).is_some();
        self.write([LrOp::Remove(key.to_owned())]);
        present
    }
    fn update(&self, local: &Self::Local, key: &K, value: u64) -> bool {
        let present = self.get(local, key.borrowed()).is_some();
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
