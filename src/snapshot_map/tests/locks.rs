//! User code and the writer lock: wakers, destructors and closures that write to
//! the map they were called from. Each of these hung before the writer lock was
//! released before user code ran (or before re-entrant writes were detected),
//! so each runs under the hang watchdog.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};

use crate::test_support::no_hang;
use crate::SnapshotMap;

/// The message of a panic payload.
fn message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("<not a string>")
    }
}

/// Runs `write`, which must panic with the re-entrant-write message.
fn assert_reentrant_panic(write: impl FnOnce()) {
    let panic = catch_unwind(AssertUnwindSafe(write)).expect_err("a re-entrant write panics");
    let message = message(&*panic);
    assert!(
        message.contains("holds its writer lock") && message.contains("deadlock"),
        "unexpected panic: {message}"
    );
}

/// A waker standing for an executor that polls the woken task inline, and the
/// task writes to the map: `wake` inserts `(100, 100)` into the map, once.
struct WritingWaker {
    map: Arc<SnapshotMap<u32, u32>>,
    woken: AtomicUsize,
}

impl Wake for WritingWaker {
    fn wake(self: Arc<Self>) {
        if self.woken.fetch_add(1, Ordering::SeqCst) == 0 {
            self.map.insert(100, 100);
        }
    }
}

#[test]
fn a_waker_that_writes_to_the_map_does_not_deadlock() {
    no_hang(|| {
        let map = Arc::new(SnapshotMap::new());
        let writer = Arc::new(WritingWaker {
            map: Arc::clone(&map),
            woken: AtomicUsize::new(0),
        });
        let waker = Waker::from(Arc::clone(&writer));
        let mut watcher = map.watch();
        let mut changed = pin!(watcher.changed());
        assert!(changed
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        map.insert(1, 1); // wakes `writer`, which writes version 2
        assert_eq!(writer.woken.load(Ordering::SeqCst), 1);
        assert_eq!((map.version(), map.get_cloned(&100)), (2, Some(100)));
        assert!(matches!(
            changed.poll(&mut Context::from_waker(&waker)),
            Poll::Ready(s) if s.version() == 2
        ));
    });
}

/// Panics when woken.
struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("waker panics on purpose");
    }
}

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_panicking_waker_keeps_no_other_waiter_asleep_and_the_map_usable() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::new();
    let counted = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let (mut w1, mut w2, mut w3) = (map.watch(), map.watch(), map.watch());
    let mut f1 = pin!(w1.changed());
    let mut f2 = pin!(w2.changed());
    let mut f3 = pin!(w3.changed());
    let panicking = Waker::from(Arc::new(PanickingWaker));
    let counting = Waker::from(Arc::clone(&counted));
    assert!(f1
        .as_mut()
        .poll(&mut Context::from_waker(&counting))
        .is_pending());
    assert!(f2
        .as_mut()
        .poll(&mut Context::from_waker(&panicking))
        .is_pending());
    assert!(f3
        .as_mut()
        .poll(&mut Context::from_waker(&counting))
        .is_pending());
    let panicked = catch_unwind(AssertUnwindSafe(|| map.insert(1, 1)));
    assert!(panicked.is_err(), "the waker's panic reaches the writer");
    assert_eq!(
        counted.0.load(Ordering::SeqCst),
        2,
        "both other wakers woken"
    );
    // Published before the wakers ran, and the lock is free.
    assert_eq!((map.version(), map.get_cloned(&1)), (1, Some(1)));
    map.insert(2, 2);
    assert_eq!(map.version(), 2);
}

/// A value whose drop runs a hook (once per hook, whichever copy drops first).
struct Hooked {
    value: u32,
    on_drop: Option<Arc<dyn Fn() + Send + Sync>>,
}

std::thread_local! {
    /// Clones of a `Hooked` this thread may still make before one panics;
    /// `None`: no limit.
    static CLONES_LEFT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl Clone for Hooked {
    fn clone(&self) -> Self {
        if let Some(left) = CLONES_LEFT.get() {
            assert!(left > 0, "Hooked::clone: out of clones");
            CLONES_LEFT.set(Some(left - 1));
        }
        Hooked {
            value: self.value,
            on_drop: self.on_drop.clone(),
        }
    }
}

impl Hooked {
    fn plain(value: u32) -> Self {
        Hooked {
            value,
            on_drop: None,
        }
    }
}

impl Drop for Hooked {
    fn drop(&mut self) {
        if let Some(hook) = &self.on_drop {
            hook();
        }
    }
}

type HookMap = SnapshotMap<u32, Hooked>;

/// A map holding key 1 with a value whose first drop (of it or of any clone)
/// inserts key 999 into the same map; and a flag set once it has.
fn map_with_writing_drop() -> (Arc<HookMap>, Arc<AtomicBool>) {
    let map = Arc::new(HookMap::new());
    let weak: Weak<HookMap> = Arc::downgrade(&map);
    let fired = Arc::new(AtomicBool::new(false));
    let hook = {
        let fired = Arc::clone(&fired);
        move || {
            if !fired.swap(true, Ordering::SeqCst) {
                if let Some(map) = weak.upgrade() {
                    map.insert(999, Hooked::plain(999));
                }
            }
        }
    };
    map.insert(
        1,
        Hooked {
            value: 1,
            on_drop: Some(Arc::new(hook)),
        },
    );
    (map, fired)
}

/// Runs `write` on a map whose key 1 writes to the map when a copy of its value
/// is dropped; checks that the drop's write landed and what `write` did.
fn check_drop_writes(write: impl FnOnce(&HookMap) + Send + 'static) {
    no_hang(move || {
        let (map, fired) = map_with_writing_drop();
        write(&map);
        assert!(fired.load(Ordering::SeqCst), "the hooked value was dropped");
        assert_eq!(map.get(&999).map(|v| v.value), Some(999));
    });
}

#[test]
fn update_drops_the_replaced_value_after_unlocking() {
    check_drop_writes(|map| {
        assert_eq!(
            map.update(&1, |v| Hooked::plain(v.value + 1))
                .map(|v| v.value),
            Some(2)
        );
        assert_eq!(map.get(&1).map(|v| v.value), Some(2));
    });
}

#[test]
fn insert_and_remove_drop_the_old_value_after_unlocking() {
    check_drop_writes(|map| {
        let old = map.insert(1, Hooked::plain(5));
        assert_eq!(old.as_ref().map(|v| v.value), Some(1));
    });
    check_drop_writes(|map| {
        assert_eq!(map.remove(&1).map(|v| v.value), Some(1));
        assert!(map.get(&1).is_none());
    });
}

#[test]
fn a_batch_drops_what_it_replaced_or_removed_after_unlocking() {
    // extend over an existing key
    check_drop_writes(|map| {
        map.batch(|txn| txn.extend([(1, Hooked::plain(7))]));
        assert_eq!(map.get(&1).map(|v| v.value), Some(7));
    });
    // Batch::update
    check_drop_writes(|map| {
        map.batch(|txn| {
            txn.update(&1, |v| Hooked::plain(v.value * 10));
        });
        assert_eq!(map.get(&1).map(|v| v.value), Some(10));
    });
    // retain after the copy was made
    check_drop_writes(|map| {
        map.batch(|txn| {
            txn.insert(2, Hooked::plain(2));
            txn.retain(|k, _| *k != 1);
        });
        assert!(map.get(&1).is_none());
    });
    // clear after the copy was made
    check_drop_writes(|map| {
        map.batch(|txn| {
            txn.insert(2, Hooked::plain(2));
            txn.clear();
        });
        assert_eq!(map.len(), 1); // only the drop's 999
    });
    // map-level retain and clear (the replaced version drops after unlocking)
    check_drop_writes(|map| map.retain(|k, _| *k != 1));
    check_drop_writes(|map| map.clear());
    check_drop_writes(|map| drop(map.replace_all([(2, Hooked::plain(2))])));
}

#[test]
fn an_aborted_batch_drops_its_copy_after_unlocking() {
    check_drop_writes(|map| {
        let result: Result<(), &str> = map.try_batch(|txn| {
            txn.insert(2, Hooked::plain(2)); // copies key 1's value
            Err("abort")
        });
        assert_eq!(result, Err("abort"));
        assert!(map.get(&2).is_none());
    });
    check_drop_writes(|map| {
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            map.batch(|txn| {
                txn.insert(2, Hooked::plain(2));
                panic!("abort");
            })
        }));
        assert!(panicked.is_err());
        assert!(map.get(&2).is_none());
    });
}

/// A map holding keys `1..=n`, each value carrying one shared hook that, at
/// the first drop of any of them or of a clone, inserts key 999 into the same
/// map; and a flag set once it has. Built in one batch, so no copy of a value
/// has been dropped yet.
fn map_of_writing_values(n: u32) -> (Arc<HookMap>, Arc<AtomicBool>) {
    let map = Arc::new(HookMap::new());
    let weak: Weak<HookMap> = Arc::downgrade(&map);
    let fired = Arc::new(AtomicBool::new(false));
    let hook: Arc<dyn Fn() + Send + Sync> = {
        let fired = Arc::clone(&fired);
        Arc::new(move || {
            if !fired.swap(true, Ordering::SeqCst) {
                // The clone limit is for the write under test, not this one.
                CLONES_LEFT.set(None);
                if let Some(map) = weak.upgrade() {
                    map.insert(999, Hooked::plain(999));
                }
            }
        })
    };
    map.batch(|txn| {
        for value in 1..=n {
            let on_drop = Some(Arc::clone(&hook));
            txn.insert(value, Hooked { value, on_drop });
        }
    });
    (map, fired)
}

#[test]
fn retain_clones_and_drops_nothing_under_the_lock_unless_it_removes() {
    // Keeps everything: no clone is made (one would panic), none is dropped
    // and nothing is published.
    no_hang(|| {
        let (map, fired) = map_of_writing_values(10);
        let copies = map.stats().copies;
        CLONES_LEFT.set(Some(0));
        map.retain(|_, _| true);
        map.batch(|txn| txn.retain(|_, _| true));
        CLONES_LEFT.set(None);
        assert!(!fired.load(Ordering::SeqCst));
        assert_eq!((map.version(), map.stats().copies), (1, copies));
    });
    // A panicking `keep` panics before anything is cloned.
    no_hang(|| {
        let (map, fired) = map_of_writing_values(10);
        CLONES_LEFT.set(Some(0));
        let mut calls = 0;
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            map.retain(|k, _| {
                calls += 1;
                assert!(calls < 10, "keep panics");
                *k != 5
            })
        }));
        CLONES_LEFT.set(None);
        assert!(panicked.is_err());
        assert!(!fired.load(Ordering::SeqCst));
        assert_eq!((map.version(), map.len()), (1, 10));
    });
}

#[test]
fn a_retain_aborted_by_a_panicking_clone_drops_its_copy_after_unlocking() {
    // Whichever value is cloned first, its clone sits in the partial copy when
    // the second clone panics, and drops after the lock is released: the
    // hook's write lands.
    no_hang(|| {
        let (map, fired) = map_of_writing_values(10);
        CLONES_LEFT.set(Some(1));
        let panicked = catch_unwind(AssertUnwindSafe(|| map.retain(|k, _| *k != 5)));
        CLONES_LEFT.set(None);
        assert!(panicked.is_err());
        assert!(fired.load(Ordering::SeqCst), "the partial copy was dropped");
        // Nothing of the retain was published; the hook's insert was.
        assert_eq!((map.version(), map.len()), (2, 11));
        assert!(map.get(&5).is_some() && map.get(&999).is_some());
    });
}

#[test]
fn a_write_from_inside_a_batch_panics_instead_of_deadlocking() {
    no_hang(|| {
        let map: SnapshotMap<u32, u32> = (0..10).map(|i| (i, i)).collect();
        assert_reentrant_panic(|| {
            map.batch(|_| map.insert(1, 1));
        });
        assert_reentrant_panic(|| {
            let _: Result<(), ()> = map.try_batch(|txn| {
                txn.insert(20, 20);
                map.remove(&1);
                Ok(())
            });
        });
        assert_reentrant_panic(|| {
            map.update(&1, |v| map.insert(2, *v).unwrap_or(0));
        });
        assert_reentrant_panic(|| map.retain(|k, _| map.remove(k).is_some()));
        assert_reentrant_panic(|| map.batch(|_| map.clear()));
        assert_reentrant_panic(|| map.batch(|_| drop(map.replace_all([(1, 1)]))));
        assert_reentrant_panic(|| map.batch(|_| map.batch(|_| ())));
        // Nothing was published, each attempt was aborted, and the lock is free.
        assert_eq!((map.version(), map.len()), (0, 10));
        assert_eq!(map.stats().aborted, 7);
        map.insert(1, 100);
        assert_eq!(map.get_cloned(&1), Some(100));
    });
}

/// A key whose `Hash` writes to the map named in a thread-local, when armed.
#[derive(Clone, PartialEq, Eq)]
struct WritingKey(u32);

std::thread_local! {
    static HASH_WRITES_TO: std::cell::RefCell<Option<Arc<SnapshotMap<WritingKey, u32>>>> =
        const { std::cell::RefCell::new(None) };
}

impl core::hash::Hash for WritingKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        let map = HASH_WRITES_TO.with(|m| m.borrow_mut().take());
        if let Some(map) = map {
            map.insert(WritingKey(1000), 0);
        }
        self.0.hash(state);
    }
}

#[test]
fn a_hash_that_writes_to_the_map_during_a_write_panics_instead_of_deadlocking() {
    no_hang(|| {
        let map = Arc::new(SnapshotMap::new());
        map.insert(WritingKey(1), 1);
        HASH_WRITES_TO.with(|m| *m.borrow_mut() = Some(Arc::clone(&map)));
        assert_reentrant_panic(|| {
            map.insert(WritingKey(2), 2);
        });
        assert_eq!((map.len(), map.version()), (1, 1));
        map.insert(WritingKey(3), 3); // the hook was used up: an ordinary write
        assert_eq!(map.len(), 2);
    });
}

#[test]
fn reads_inside_a_batch_see_the_version_the_batch_started_from() {
    no_hang(|| {
        let map: SnapshotMap<u32, u32> = (0..4).map(|i| (i, i)).collect();
        map.batch(|txn| {
            txn.insert(10, 10);
            txn.remove(&0);
            // Every read of the map goes through the published version: no lock.
            assert_eq!(map.get(&0).map(|v| *v), Some(0));
            assert_eq!(map.get_cloned(&10), None);
            assert!(map.contains_key(&0));
            assert_eq!((map.len(), map.version()), (4, 0));
            assert_eq!(map.snapshot().len(), 4);
            assert_eq!(map.iter().count(), 4);
            assert_eq!(map.stats().published, 0);
            assert!(map.watch().try_next().is_none());
            assert_eq!(format!("{:?}", map.snapshot().get(&1)), "Some(1)");
        });
        assert_eq!((map.len(), map.version()), (4, 1));
        assert_eq!(map.get_cloned(&10), Some(10));
    });
}

#[test]
fn waiting_for_a_version_inside_a_batch_panics_instead_of_waiting_forever() {
    no_hang(|| {
        let map: SnapshotMap<u32, u32> = SnapshotMap::new();
        let mut watcher = map.watch();
        let panic = catch_unwind(AssertUnwindSafe(|| {
            map.batch(|txn| {
                txn.insert(1, 1);
                watcher.wait();
            })
        }))
        .expect_err("waits forever otherwise");
        assert!(message(&*panic).contains("wait forever"));
        assert_eq!(map.version(), 0);
        // Outside a batch, the same watcher waits as usual.
        map.insert(1, 1);
        assert_eq!(watcher.wait().version(), 1);
    });
}

#[test]
fn a_batch_on_another_map_from_inside_a_batch_is_fine() {
    no_hang(|| {
        let a: SnapshotMap<u32, u32> = SnapshotMap::new();
        let b: SnapshotMap<u32, u32> = SnapshotMap::new();
        a.batch(|txn| {
            txn.insert(1, 1);
            b.insert(2, 2);
            b.batch(|inner| inner.insert(3, 3));
        });
        assert_eq!((a.len(), b.len()), (1, 2));
    });
}

#[test]
fn writers_on_other_threads_wait_for_the_lock_and_are_not_taken_for_reentrant() {
    no_hang(|| {
        let map: SnapshotMap<u32, u32> = SnapshotMap::new();
        std::thread::scope(|s| {
            for t in 0..4 {
                let map = &map;
                s.spawn(move || {
                    for i in 0..100 {
                        map.batch(|txn| {
                            txn.insert(t * 1000 + i, i);
                        });
                    }
                });
            }
        });
        assert_eq!((map.len(), map.version()), (400, 400));
        assert_eq!(map.stats().aborted, 0);
    });
}

/// A key, equal and hashed by `id`, whose drop runs a hook.
struct HookedKey {
    id: u32,
    on_drop: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl HookedKey {
    fn plain(id: u32) -> Self {
        HookedKey { id, on_drop: None }
    }
}

impl Clone for HookedKey {
    /// Clones carry no hook: only the instance the test made writes.
    fn clone(&self) -> Self {
        HookedKey::plain(self.id)
    }
}

impl PartialEq for HookedKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for HookedKey {}

impl core::hash::Hash for HookedKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl core::borrow::Borrow<u32> for HookedKey {
    fn borrow(&self) -> &u32 {
        &self.id
    }
}

impl Drop for HookedKey {
    fn drop(&mut self) {
        if let Some(hook) = &self.on_drop {
            hook();
        }
    }
}

type KeyHookMap = SnapshotMap<HookedKey, u32>;

/// Key 1 of a map holding keys 1 and 2, made with `hooked(1)`, whose drop
/// inserts key 999 into the map: the write panics if it runs under the lock.
fn check_key_drop_writes(write: impl FnOnce(&KeyHookMap, HookedKey) + Send + 'static) {
    no_hang(move || {
        let map = Arc::new(KeyHookMap::new());
        let weak: Weak<KeyHookMap> = Arc::downgrade(&map);
        map.insert(HookedKey::plain(2), 2);
        let fired = Arc::new(AtomicBool::new(false));
        let hook = {
            let fired = Arc::clone(&fired);
            move || {
                fired.store(true, Ordering::SeqCst);
                if let Some(map) = weak.upgrade() {
                    map.insert(HookedKey::plain(999), 999);
                }
            }
        };
        let key = HookedKey {
            id: 1,
            on_drop: Some(Arc::new(hook)),
        };
        write(&map, key);
        assert!(fired.load(Ordering::SeqCst), "the hooked key was dropped");
        assert_eq!(map.get_cloned(&999), Some(999), "its drop wrote");
    });
}

#[test]
fn keys_a_write_lets_go_of_drop_after_unlocking() {
    // The stored key goes: remove, remove_if, Batch::remove.
    check_key_drop_writes(|map, key| {
        map.insert(key, 1);
        assert_eq!(map.remove(&1), Some(1));
    });
    check_key_drop_writes(|map, key| {
        map.insert(key, 1);
        assert_eq!(map.remove_if(&1, |v| *v == 1), Some(1));
    });
    check_key_drop_writes(|map, key| {
        map.insert(key, 1);
        map.batch(|txn| assert_eq!(txn.remove(&1), Some(1)));
    });
    // The key given for a key already present goes (the table keeps its own):
    // insert, Batch::insert, extend.
    check_key_drop_writes(|map, key| {
        map.insert(HookedKey::plain(1), 1);
        assert_eq!(map.insert(key, 10), Some(1));
        assert_eq!(map.get_cloned(&1), Some(10));
    });
    check_key_drop_writes(|map, key| {
        map.insert(HookedKey::plain(1), 1);
        map.batch(|txn| assert_eq!(txn.insert(key, 10), Some(1)));
        assert_eq!(map.get_cloned(&1), Some(10));
    });
    check_key_drop_writes(|map, key| {
        map.insert(HookedKey::plain(1), 1);
        map.batch(|txn| txn.extend([(key, 10), (HookedKey::plain(3), 3)]));
        assert_eq!(
            (map.get_cloned(&1), map.get_cloned(&3)),
            (Some(10), Some(3))
        );
    });
}
