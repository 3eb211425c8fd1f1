//! Hash maps behind one lock: std's `RwLock` and `Mutex`, parking_lot's `RwLock`.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use super::{LabMap, BASELINE};
use crate::keys::{LabHasher, LabKey};

/// The adapter of a map behind the lock `$lock`, where `.$read` and `.$write`
/// (method calls) take a read and a write guard.
macro_rules! locked_adapter {
    ($(#[$doc:meta])* $name:ident, $lock:ty, $new:expr, $label:expr, $id:expr,
     read: ($($read:tt)*), write: ($($write:tt)*)) => {
        $(#[$doc])*
        pub struct $name<K, S>($lock);

        impl<K: LabKey, S: LabHasher> LabMap<K, S> for $name<K, S> {
            type Local = ();
            fn name() -> String {
                $label.into()
            }
            fn id() -> String {
                $id.into()
            }
            fn new(hasher: S) -> Self {
                $name($new(hasher))
            }
            fn local(&self) {}
            #[inline]
            fn get(&self, _: &(), key: &K::Borrowed) -> Option<u64> {
                self.0.$($read)*.get(key).copied()
            }
            #[inline]
            fn insert(&self, _: &(), key: K, value: u64) {
                self.0.$($write)*.insert(key, value);
            }
            #[inline]
            fn remove(&self, _: &(), key: &K::Borrowed) -> bool {
                self.0.$($write)*.remove(key).is_some()
            }
            #[inline]
            fn update(&self, _: &(), key: &K, value: u64) -> bool {
                self.0.$($write)*.get_mut(key.borrowed()).map(|v| *v = value).is_some()
            }
            fn batch(&self, _: &(), remove: &[K], insert: &[K], value: u64) {
                let mut map = self.0.$($write)*;
                for key in remove {
                    map.remove(key.borrowed());
                }
                for key in insert {
                    map.insert(key.clone(), value);
                }
            }
        }
    };
}

locked_adapter!(
    /// `std::sync::RwLock<std::collections::HashMap>`: the baseline.
    StdRwLock,
    RwLock<HashMap<K, u64, S>>,
    |h| RwLock::new(HashMap::with_hasher(h)),
    BASELINE,
    "rwlock",
    read: (read().unwrap()),
    write: (write().unwrap())
);

locked_adapter!(
    /// `parking_lot::RwLock<hashbrown::HashMap>`.
    ParkingLotRwLock,
    parking_lot::RwLock<hashbrown::HashMap<K, u64, S>>,
    |h| parking_lot::RwLock::new(hashbrown::HashMap::with_hasher(h)),
    "pl::RwLock<hashbrown>",
    "pl-rwlock",
    read: (read()),
    write: (write())
);

locked_adapter!(
    /// `std::sync::Mutex<std::collections::HashMap>`.
    StdMutex,
    Mutex<HashMap<K, u64, S>>,
    |h| Mutex::new(HashMap::with_hasher(h)),
    "Mutex<HashMap>",
    "mutex",
    read: (lock().unwrap()),
    write: (lock().unwrap())
);
