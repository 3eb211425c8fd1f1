//! Compile-fail tests of the thread-safety and lifetime guarantees users rely on:
//! what must *not* compile, each with the error it must fail with. (What must
//! compile — `Send + Sync` maps, `Send` snapshots and owned guards — is checked
//! by ordinary tests.) Built only for `cargo test --doc`.
//!
//! The maps implement `Send` and `Sync` by hand, with bounds of their own, so
//! these pin those bounds as much as the guards' lack of them.

/// A `SyncMap` whose keys are not `Send` is not `Send`:
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>(_: &T) {}
/// let map = readmostly::SyncMap::<std::rc::Rc<u8>, u8>::new();
/// assert_send(&map);
/// ```
///
/// nor one whose values are not `Send`:
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>(_: &T) {}
/// let map = readmostly::SyncMap::<u8, std::rc::Rc<u8>>::new();
/// assert_send(&map);
/// ```
///
/// and one whose values are `Send` but not `Sync` is not `Sync` (threads would
/// share `&V`):
///
/// ```compile_fail,E0277
/// fn assert_sync<T: Sync>(_: &T) {}
/// let map = readmostly::SyncMap::<u8, std::cell::Cell<u8>>::new();
/// assert_sync(&map);
/// ```
pub struct SyncMapBounds;

/// A [`Pinned`](crate::Pinned) is neither `Send` nor `Sync`: its guard belongs
/// to the thread that pinned it.
///
/// ```compile_fail,E0277
/// fn assert_sync<T: Sync>(_: &T) {}
/// let map = readmostly::SyncMap::<u8, u8>::new();
/// assert_sync(&map.pin());
/// ```
///
/// A reference it returns cannot outlive it:
///
/// ```compile_fail,E0597
/// let map = readmostly::SyncMap::<u8, u8>::new();
/// map.insert(1, 1);
/// let value = {
///     let pinned = map.pin();
///     pinned.get(&1)
/// };
/// println!("{value:?}");
/// ```
///
/// and it cannot outlive the map:
///
/// ```compile_fail,E0505
/// let map = readmostly::SyncMap::<u8, u8>::new();
/// let pinned = map.pin();
/// drop(map);
/// pinned.get(&1);
/// ```
///
/// [`OwnedPinned`](crate::OwnedPinned), the guard that may cross threads, is
/// only made for a map whose keys and values may too:
///
/// ```compile_fail,E0599
/// let map = std::sync::Arc::new(readmostly::SyncMap::<u8, std::rc::Rc<u8>>::new());
/// let _ = map.pin_owned();
/// ```
pub struct PinnedBounds;

/// [`ClassicSyncMap`](crate::classic::ClassicSyncMap) has `SyncMap`'s bounds,
/// and its pinned guard is not `Send` either:
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>(_: &T) {}
/// let map = readmostly::classic::ClassicSyncMap::<std::rc::Rc<u8>, u8>::new();
/// assert_send(&map);
/// ```
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>(_: T) {}
/// let map = readmostly::classic::ClassicSyncMap::<u8, u8>::new();
/// assert_send(map.pin());
/// ```
pub struct ClassicBounds;

/// A [`SnapshotMap`](crate::SnapshotMap) shares its versions between threads, so
/// its values must be `Sync` for it to be `Send`:
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>(_: &T) {}
/// let map = readmostly::SnapshotMap::<u8, std::cell::Cell<u8>>::new();
/// assert_send(&map);
/// ```
///
/// and a [`Snapshot`](crate::Snapshot) of such values cannot cross threads:
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>(_: &T) {}
/// let map = readmostly::SnapshotMap::<u8, std::cell::Cell<u8>>::new();
/// assert_send(&map.snapshot());
/// ```
pub struct SnapshotBounds;
