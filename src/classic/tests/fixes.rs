//! Regressions of the fixes the classic protocol shares with `SyncMap` (whose
//! tests, in `sync_map/tests/bad_input.rs`, cover them for `SyncMap`): `make` runs
//! outside the lock, and surplus arguments the map drops have their `Drop`
//! panics contained. (The compaction fixes are checked in `promotion.rs`.)

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::classic::ClassicSyncMap;
use crate::test_support::{Counted, DropLog};

/// `get_or_insert_with` makes the value before it takes the lock, so a `make`
/// that uses the map itself works instead of deadlocking (the channel's timeout
/// turns a deadlock into a failure, not a hang).
#[test]
fn get_or_insert_with_make_may_use_the_map() {
    // Leaked, so that a deadlocked thread cannot outlive what it borrows.
    let map: &'static ClassicSyncMap<u32, u32> = Box::leak(Box::new(ClassicSyncMap::new()));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let pinned = map.pin();
        let v = *pinned
            .get_or_insert_with(1, || {
                // A dependency of key 1, computed and cached first.
                map.insert(2, 20);
                10
            })
            .value();
        tx.send(v).unwrap();
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(got, Ok(10), "get_or_insert_with deadlocked on its own map");
    assert_eq!(map.get_cloned(&2), Some(20));
    map.check_invariants();
}

/// Keys 0..4 in the read table and 4..8 in the dirty table (unarmed), and a
/// bomb to arm on the surplus arguments.
fn bombed_map() -> (
    ClassicSyncMap<Counted<u32>, Counted<u32>>,
    DropLog,
    Arc<AtomicBool>,
) {
    let log = DropLog::new();
    let map = ClassicSyncMap::new();
    for i in 0..8 {
        map.pin().insert(log.make(i), log.make(i));
        if i == 3 {
            map.promote();
        }
    }
    assert_eq!(map.read_len(), 4);
    assert_eq!(map.dirty_len(), Some(8));
    (map, log, Arc::new(AtomicBool::new(true)))
}

/// `insert` and `get_or_insert` of a present key drop the key passed in (the
/// entry keeps its own): a panic of that drop is contained, on the lock-free path
/// (a key of the read table) and on the locked one (a key of the dirty table).
#[test]
fn panicking_drop_of_surplus_key_is_contained() {
    let (map, log, bomb) = bombed_map();
    let armed = |v| log.make_with_bomb(v, Some(Arc::clone(&bomb)));
    for key in [1, 5] {
        let result = catch_unwind(AssertUnwindSafe(|| {
            map.pin().insert(armed(key), log.make(key + 10));
        }));
        assert!(
            result.is_ok(),
            "insert of {key}: a Drop panic escaped the map"
        );
        let result = catch_unwind(AssertUnwindSafe(|| {
            map.pin().get_or_insert(armed(key + 1), log.make(0));
        }));
        assert!(
            result.is_ok(),
            "get_or_insert of {}: a Drop panic escaped the map",
            key + 1
        );
    }
    bomb.store(false, Ordering::Relaxed);
    for (key, value) in [(1, 11), (2, 2), (5, 15), (6, 6)] {
        assert_eq!(
            map.pin().get(&log.make(key)).map(|v| v.payload),
            Some(value)
        );
    }
    map.check_invariants();
    drop(map);
    log.flush_until_all_dropped();
}

/// As `sync_map::tests::bad_input::panicking_drop_of_surplus_value_is_contained`:
/// `ClassicPinned::get_or_insert` keeps the value in an `Option` captured by the
/// `make` closure; when the key is present it is dropped at the end of
/// `get_or_insert`, outside `drop_contained`.
#[test]
fn panicking_drop_of_surplus_value_is_contained() {
    let (map, log, bomb) = bombed_map();
    let result = catch_unwind(AssertUnwindSafe(|| {
        map.pin().get_or_insert(
            log.make(1),
            log.make_with_bomb(100, Some(Arc::clone(&bomb))),
        );
    }));
    bomb.store(false, Ordering::Relaxed);
    assert!(result.is_ok(), "a Drop panic escaped the map");
    drop(map);
    log.flush_until_all_dropped();
}
