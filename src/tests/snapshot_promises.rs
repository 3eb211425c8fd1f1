//! The concrete promises of `SnapshotMap`'s public documentation
//! (src/snapshot_map/*.rs, docs/snapshot_map.md, README.md), one small test
//! each: versions and writes that publish nothing, batches, the writer lock and
//! what runs under it, conditional writes, diffs, watchers, statistics,
//! capacity, the std traits and the publication schemes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap as StdHashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::{block_on, no_hang, panic_message, DropLedger};

#[cfg(feature = "crossbeam-epoch")]
use readmostly::reclaim::CrossbeamEpoch;
use readmostly::reclaim::{ArcSwapPublish, DefaultReclaim};
use readmostly::{Change, Snapshot, SnapshotCompareExchangeError, SnapshotMap, SnapshotStats};

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// Serializes the tests that depend on crossbeam's global collector.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sorted<K: Ord + Clone, V: Clone>(s: &Snapshot<K, V>) -> Vec<(K, V)> {
    let mut v: Vec<_> = s.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A waker that counts its wake-ups.
struct CountingWaker(AtomicUsize);
impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}
fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

/// A value that counts live instances and clones.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static CLONES: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static LOCAL_CLONES: Cell<usize> = const { Cell::new(0) };
}
#[derive(Debug, PartialEq)]
struct Counted(u32);
impl Counted {
    fn new(n: u32) -> Self {
        LIVE.fetch_add(1, SeqCst);
        Counted(n)
    }
}
impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, SeqCst);
        LOCAL_CLONES.with(|c| c.set(c.get() + 1));
        Counted::new(self.0)
    }
}
impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, SeqCst);
    }
}
fn local_clones() -> usize {
    LOCAL_CLONES.with(|c| c.get())
}

// A value whose first drop after arming writes to the map (and records whether
// that write succeeded, i.e. ran outside the writer lock).
type BombMap = SnapshotMap<u32, Bomb>;
thread_local! {
    static HOOK: RefCell<Option<Arc<BombMap>>> = const { RefCell::new(None) };
    static HOOK_RESULT: Cell<Option<bool>> = const { Cell::new(None) };
}
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bomb(u32);
thread_local! {
    /// A `Bomb` with this id panics when cloned.
    static PANIC_CLONE_OF: Cell<Option<u32>> = const { Cell::new(None) };
}
impl Clone for Bomb {
    fn clone(&self) -> Self {
        if PANIC_CLONE_OF.with(|p| p.get()) == Some(self.0) {
            panic!("clone of {}", self.0);
        }
        Bomb(self.0)
    }
}
impl Drop for Bomb {
    fn drop(&mut self) {
        let hook = HOOK.try_with(|h| h.borrow_mut().take()).ok().flatten();
        if let Some(map) = hook {
            let ok = catch_unwind(AssertUnwindSafe(|| {
                map.insert(10_000, Bomb(10_000));
            }))
            .is_ok();
            HOOK_RESULT.with(|r| r.set(Some(ok)));
        }
    }
}
fn arm(map: &Arc<BombMap>) {
    HOOK_RESULT.with(|r| r.set(None));
    HOOK.with(|h| *h.borrow_mut() = Some(map.clone()));
}
/// Disarms; returns whether a drop fired and whether its write worked.
fn disarm() -> Option<bool> {
    HOOK.with(|h| h.borrow_mut().take());
    HOOK_RESULT.with(|r| r.take())
}
fn bomb_map(n: u32) -> Arc<BombMap> {
    let map: BombMap = (0..n).map(|i| (i, Bomb(i))).collect();
    Arc::new(map)
}

/// A key whose equality and hash ignore `tag`.
#[derive(Clone, Debug)]
struct Tagged {
    id: u32,
    tag: &'static str,
}
impl PartialEq for Tagged {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
    }
}
impl Eq for Tagged {}
impl Hash for Tagged {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h)
    }
}

fn is_reentrant_panic<R>(r: std::thread::Result<R>) -> bool {
    match r {
        Ok(_) => false,
        Err(p) => panic_message(&*p).contains("deadlock"),
    }
}

// ---------------------------------------------------------------------------
// construction and versions
// ---------------------------------------------------------------------------

#[test]
fn new_is_empty_version_zero() {
    let map: SnapshotMap<String, u32> = SnapshotMap::new();
    assert!(map.is_empty());
    assert_eq!(map.len(), 0);
    assert_eq!(map.version(), 0);
    assert_eq!(map.capacity(), 0);
    assert_eq!(map.stats().published, 0);
}

#[test]
fn default_is_same_as_new() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::default();
    assert!(map.is_empty());
    assert_eq!(map.version(), 0);
}

#[test]
fn with_hasher_builds_versions_with_that_hasher() {
    #[derive(Clone, Default)]
    struct MyHasher(std::collections::hash_map::RandomState);
    impl std::hash::BuildHasher for MyHasher {
        type Hasher = std::collections::hash_map::DefaultHasher;
        fn build_hasher(&self) -> Self::Hasher {
            self.0.build_hasher()
        }
    }
    let map = SnapshotMap::with_hasher(MyHasher::default());
    map.insert(1, "one");
    assert_eq!(map.get_cloned(&1), Some("one"));
    let _: &MyHasher = map.snapshot().hasher();
}

#[test]
fn each_publish_bumps_version_by_one() {
    let map = SnapshotMap::new();
    assert_eq!(map.insert(1, "a"), None);
    assert_eq!(map.version(), 1);
    assert_eq!(map.insert(1, "b"), Some("a"));
    assert_eq!(map.version(), 2);
    // equal value still publishes
    map.insert(1, "b");
    assert_eq!(map.version(), 3);
    assert_eq!(map.remove(&1), Some("b"));
    assert_eq!(map.version(), 4);
}

#[test]
fn no_change_writes_publish_nothing() {
    let map = SnapshotMap::new();
    map.insert(1, 10);
    let v = map.version();
    assert_eq!(map.remove(&2), None);
    assert_eq!(map.update(&2, |x| x + 1), None);
    assert!(map.compare_exchange(&1, &99, 5).is_err());
    assert!(map.compare_exchange(&2, &99, 5).is_err());
    assert_eq!(map.remove_if(&1, |_| false), None);
    assert_eq!(map.remove_if(&2, |_| true), None);
    map.retain(|_, _| true);
    map.batch(|txn| {
        txn.remove(&5);
        txn.update(&5, |x| x + 1);
        txn.retain(|_, _| true);
        txn.extend(std::iter::empty::<(i32, i32)>());
        assert!(!txn.is_changed());
    });
    (&map).extend(std::iter::empty::<(i32, i32)>());
    assert_eq!(map.version(), v);
    let empty: SnapshotMap<u8, u8> = SnapshotMap::new();
    empty.clear();
    empty.batch(|txn| txn.clear());
    assert_eq!(empty.version(), 0);
    assert_eq!(map.stats().published, v);
}

#[test]
fn a_batch_whose_changes_cancel_out_publishes() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::new();
    map.batch(|txn| {
        txn.insert(1, 1);
        txn.remove(&1);
        assert!(txn.is_changed());
    });
    assert_eq!(map.version(), 1);
    assert!(map.is_empty());
}

#[test]
fn reads_see_the_version_current_at_the_call() {
    let map = SnapshotMap::new();
    map.insert(String::from("k"), vec![1, 2, 3]);
    assert_eq!(map.get("k").map(|v| v.len()), Some(3));
    assert!(map.get("x").is_none());
    assert!(map.contains_key("k"));
    assert!(!map.contains_key("x"));
    assert_eq!(map.get_cloned("k"), Some(vec![1, 2, 3]));
    assert_eq!(map.get_cloned("x"), None);
}

#[test]
fn send_sync_claims() {
    fn send_sync<T: Send + Sync>() {}
    fn clone<T: Clone>() {}
    send_sync::<Snapshot<String, Vec<u8>>>();
    clone::<Snapshot<String, Vec<u8>>>();
    send_sync::<SnapshotMap<String, Vec<u8>>>();
    #[cfg(feature = "crossbeam-epoch")]
    send_sync::<
        SnapshotMap<String, Vec<u8>, std::collections::hash_map::RandomState, CrossbeamEpoch>,
    >();
    // a snapshot can cross threads
    let map = SnapshotMap::new();
    map.insert(1, 2);
    let s = map.snapshot();
    let got = thread::spawn(move || s.get(&1).copied()).join().unwrap();
    assert_eq!(got, Some(2));
}

// ---------------------------------------------------------------------------
// SnapshotRef
// ---------------------------------------------------------------------------

#[test]
fn snapshot_ref_keeps_its_version() {
    let map = SnapshotMap::new();
    map.insert("k", String::from("v"));
    let value = map.get("k").unwrap();
    map.insert("k", String::from("w"));
    map.clear();
    assert_eq!(*value, "v");
    assert_eq!(format!("{value:?}"), format!("{:?}", "v"));
    assert_eq!(format!("{value}"), "v");
}

// ---------------------------------------------------------------------------
// Snapshot
// ---------------------------------------------------------------------------

#[test]
fn snapshot_is_frozen() {
    let map = SnapshotMap::new();
    map.insert("a", 1);
    let s = map.snapshot();
    for i in 0..100 {
        map.insert("b", i);
    }
    map.clear();
    assert_eq!(s.len(), 1);
    assert_eq!(s.get("a"), Some(&1));
    assert_eq!(s.version(), 1);
    assert!(s.version() < map.version());
}

#[test]
fn snapshot_accessors() {
    let map = SnapshotMap::new();
    map.insert(String::from("k"), 1);
    map.insert(String::from("j"), 2);
    let s = map.snapshot();
    assert_eq!(s.get("k"), Some(&1));
    assert_eq!(s.get("x"), None);
    assert_eq!(s.get_key_value("k"), Some((&String::from("k"), &1)));
    assert!(s.contains_key("j"));
    assert!(!s.is_empty());
    assert_eq!(s.keys().len(), 2);
    assert_eq!(s.values().sum::<i32>(), 3);
    assert_eq!(s.iter().len(), 2);
    assert_eq!((&s).into_iter().count(), 2);
    assert!(s.capacity() >= 2);
    assert_eq!(s.version(), 2);
    let empty: SnapshotMap<u8, u8> = SnapshotMap::new();
    assert!(empty.snapshot().is_empty());
    assert_eq!(empty.snapshot().version(), 0);
}

#[test]
fn snapshot_same_version_and_eq() {
    let map = SnapshotMap::new();
    let a = map.snapshot();
    assert!(a.same_version(&map.snapshot()));
    assert!(a.same_version(&a.clone()));
    map.insert(1, 1);
    map.remove(&1);
    let b = map.snapshot();
    assert!(!a.same_version(&b));
    assert_eq!(a, b);
    map.insert(2, 2);
    assert_ne!(a, map.snapshot());
}

#[test]
fn snapshot_outlives_map() {
    let map = SnapshotMap::new();
    map.insert(1, String::from("x"));
    let s = map.snapshot();
    drop(map);
    assert_eq!(s.get(&1).map(String::as_str), Some("x"));
}

#[test]
fn snapshot_into_iter_yields_clones_and_holds_version() {
    let map: SnapshotMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
    let iter = map.snapshot().into_iter();
    assert_eq!(iter.len(), 2);
    map.clear();
    let mut pairs: Vec<_> = iter.collect();
    pairs.sort();
    assert_eq!(pairs, [("a", 1), ("b", 2)]);
}

#[test]
fn map_iter_sees_one_version() {
    let map: SnapshotMap<_, _> = [("a", 1), ("b", 2)].into_iter().collect();
    let mut iter = map.iter();
    let first = iter.next().unwrap();
    map.clear();
    map.insert("c", 3);
    let mut pairs: Vec<_> = std::iter::once(first).chain(iter).collect();
    pairs.sort();
    assert_eq!(pairs, [("a", 1), ("b", 2)]);
}

#[test]
fn snapshot_debug_lists_entries() {
    let map = SnapshotMap::new();
    map.insert(1, "x");
    assert_eq!(format!("{:?}", map.snapshot()), r#"{1: "x"}"#);
    assert_eq!(format!("{map:?}"), r#"{1: "x"}"#);
}

// ---------------------------------------------------------------------------
// batch / try_batch
// ---------------------------------------------------------------------------

#[test]
fn batch_publishes_once_and_returns_f() {
    let flags: SnapshotMap<&str, bool> = SnapshotMap::new();
    let enabled = flags.batch(|txn| {
        txn.insert("new-checkout", true);
        txn.insert("dark-mode", false);
        txn.iter().filter(|(_, on)| **on).count()
    });
    assert_eq!((enabled, flags.len(), flags.version()), (1, 2, 1));
    assert_eq!(flags.stats().copies, 1);
}

#[test]
fn batch_reads_its_own_writes_map_reads_see_base() {
    let map = SnapshotMap::new();
    map.insert("a", 1);
    map.batch(|txn| {
        assert_eq!(txn.base_version(), 1);
        assert_eq!(txn.get("a"), Some(&1));
        assert!(!txn.is_changed());
        txn.insert("b", 2);
        assert!(txn.is_changed());
        assert_eq!(txn.get("b"), Some(&2));
        assert!(txn.contains_key("b"));
        assert_eq!(txn.len(), 2);
        assert!(!txn.is_empty());
        // reads of the map see the version the batch started from
        assert_eq!(map.get_cloned("b"), None);
        assert_eq!(map.len(), 1);
        assert_eq!(map.snapshot().version(), 1);
        assert_eq!(map.version(), 1);
        txn.remove("a");
        assert_eq!(txn.get("a"), None);
    });
    assert_eq!(map.version(), 2);
    assert_eq!(map.get_cloned("b"), Some(2));
    assert_eq!(map.get_cloned("a"), None);
}

#[test]
fn readers_on_other_threads_do_not_see_a_half_batch_and_are_not_blocked() {
    let map = Arc::new(SnapshotMap::new());
    map.insert(0u32, 0u32);
    let (to_reader, reader_rx) = mpsc::channel::<()>();
    let (to_writer, writer_rx) = mpsc::channel::<(usize, Option<u32>)>();
    let m = map.clone();
    let reader = thread::spawn(move || {
        reader_rx.recv().unwrap();
        to_writer.send((m.len(), m.get_cloned(&1))).unwrap();
    });
    map.batch(|txn| {
        txn.insert(1, 1);
        txn.insert(2, 2);
        to_reader.send(()).unwrap();
        let seen = writer_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("reader blocked");
        assert_eq!(seen, (1, None));
    });
    reader.join().unwrap();
    assert_eq!(map.len(), 3);
}

#[test]
fn try_batch_err_publishes_nothing_and_counts_aborted() {
    let stock: SnapshotMap<_, _> = [("apples", 3u32)].into_iter().collect();
    let r: Result<(), &str> = stock.try_batch(|txn| {
        txn.insert("pears", 1);
        txn.update("apples", |_| 0);
        Err("no")
    });
    assert_eq!(r, Err("no"));
    assert_eq!(stock.version(), 0);
    assert_eq!(stock.get_cloned("apples"), Some(3));
    assert!(!stock.contains_key("pears"));
    assert_eq!(stock.stats().aborted, 1);
    assert_eq!(stock.stats().published, 0);
    let ok: Result<u32, ()> = stock.try_batch(|txn| Ok(*txn.update("apples", |n| n - 1).unwrap()));
    assert_eq!(ok, Ok(2));
    assert_eq!(stock.version(), 1);
}

#[test]
fn batch_panic_publishes_nothing_counts_aborted_and_lock_usable() {
    let map = Arc::new(SnapshotMap::new());
    map.insert(1, 1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        map.batch(|txn| {
            txn.insert(2, 2);
            panic!("boom");
        })
    }));
    assert!(r.is_err());
    assert_eq!(map.version(), 1);
    assert!(!map.contains_key(&2));
    assert_eq!(map.stats().aborted, 1);
    // lock released, unpoisoned: another thread can write
    let m = map.clone();
    no_hang(move || m.insert(3, 3));
    assert_eq!(map.version(), 2);
}

#[test]
fn update_panicking_closure_publishes_nothing() {
    let map = SnapshotMap::new();
    map.insert("k", 1);
    let r = catch_unwind(AssertUnwindSafe(|| map.update("k", |_| panic!("x"))));
    assert!(r.is_err());
    assert_eq!(map.version(), 1);
    assert_eq!(map.get_cloned("k"), Some(1));
    assert_eq!(map.stats().aborted, 1);
}

#[test]
fn panicking_clone_during_copy_leaves_map_as_it_was() {
    #[derive(Debug)]
    struct BadClone(u32);
    impl Clone for BadClone {
        fn clone(&self) -> Self {
            if self.0 == 7 {
                panic!("bad clone")
            }
            BadClone(self.0)
        }
    }
    let map: SnapshotMap<u32, BadClone> = (0..10).map(|i| (i, BadClone(i))).collect();
    let r = catch_unwind(AssertUnwindSafe(|| map.insert(100, BadClone(100))));
    assert!(r.is_err());
    assert_eq!(map.version(), 0);
    assert_eq!(map.len(), 10);
    assert_eq!(map.stats().aborted, 1);
}

#[test]
fn writes_to_the_same_map_inside_a_batch_panic_and_abort() {
    let map: Arc<SnapshotMap<u32, u32>> = Arc::new(SnapshotMap::new());
    map.insert(1, 1);
    type Write = Box<dyn Fn(&SnapshotMap<u32, u32>) + Send + Sync>;
    let writes: Vec<(&str, Write)> = vec![
        ("insert", Box::new(|m| _ = m.insert(5, 5))),
        ("remove absent", Box::new(|m| _ = m.remove(&99))),
        ("update", Box::new(|m| _ = m.update(&1, |v| v + 1))),
        ("batch", Box::new(|m| m.batch(|_| ()))),
        ("clear", Box::new(|m| m.clear())),
        ("retain", Box::new(|m| m.retain(|_, _| true))),
        ("reserve", Box::new(|m| m.reserve(1))),
        ("shrink_to_fit", Box::new(|m| m.shrink_to_fit())),
        ("replace_all", Box::new(|m| drop(m.replace_all([(7, 7)])))),
        (
            "compare_exchange match",
            Box::new(|m| _ = m.compare_exchange(&1, &1, 2)),
        ),
        (
            "remove_if true",
            Box::new(|m| _ = m.remove_if(&1, |_| true)),
        ),
    ];
    for (name, write) in writes {
        let m = map.clone();
        let before = (map.version(), map.stats().aborted);
        let r = no_hang(move || {
            catch_unwind(AssertUnwindSafe(|| {
                m.batch(|txn| {
                    txn.insert(42, 42);
                    write(&m);
                })
            }))
        });
        assert!(
            is_reentrant_panic(r),
            "{name}: expected a 'would deadlock' panic"
        );
        assert_eq!(map.version(), before.0, "{name}: the batch must be aborted");
        assert!(!map.contains_key(&42), "{name}");
        assert_eq!(map.stats().aborted, before.1 + 1, "{name}");
    }
}

#[test]
fn writing_to_another_map_inside_a_batch_is_fine() {
    let a: SnapshotMap<u32, u32> = SnapshotMap::new();
    let b: SnapshotMap<u32, u32> = SnapshotMap::new();
    a.batch(|txn| {
        txn.insert(1, 1);
        b.insert(2, 2);
    });
    assert_eq!((a.version(), b.version()), (1, 1));
}

#[test]
fn batch_extend_and_ref_extend() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::new();
    map.batch(|txn| {
        txn.reserve(10_000);
        assert!(txn.capacity() >= 10_000);
        txn.extend((0..10_000).map(|i| (i, i)));
    });
    assert_eq!(map.len(), 10_000);
    assert_eq!(map.version(), 1);
    let src = StdHashMap::from([(1u32, 7u32), (20_000, 1)]);
    map.batch(|txn| txn.extend(&src));
    assert_eq!(map.get_cloned(&1), Some(7));
    assert_eq!(map.len(), 10_001);
    assert_eq!(map.version(), 2);
}

#[test]
fn batch_update_and_remove_return_values() {
    let hits = SnapshotMap::new();
    hits.insert("/", 1u64);
    hits.batch(|txn| {
        assert_eq!(txn.update("/", |n| n + 1), Some(&2));
        assert_eq!(txn.update("/missing", |n| n + 1), None);
        assert_eq!(txn.insert("/", 5), Some(2));
        assert_eq!(txn.insert("/b", 3), None);
        assert_eq!(txn.remove("/b"), Some(3));
        assert_eq!(txn.remove("/b"), None);
    });
    assert_eq!(hits.get_cloned("/"), Some(5));
}

#[test]
fn batch_clear_does_not_copy() {
    let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
    map.batch(|txn| {
        txn.clear();
        assert!(txn.is_empty());
        txn.insert(99, 99);
    });
    assert_eq!(map.len(), 1);
    let st = map.stats();
    assert_eq!((st.published, st.copies, st.copied_entries), (1, 0, 0));
}

#[test]
fn batch_retain_keeps_matching() {
    let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
    map.batch(|txn| txn.retain(|_, v| v % 2 == 0));
    assert_eq!(map.len(), 5);
    assert_eq!(map.version(), 1);
}

#[test]
fn insert_over_present_key_keeps_the_tables_key() {
    let map = SnapshotMap::new();
    map.insert(
        Tagged {
            id: 1,
            tag: "first",
        },
        1,
    );
    map.insert(
        Tagged {
            id: 1,
            tag: "second",
        },
        2,
    );
    let s = map.snapshot();
    let (k, v) = s.get_key_value(&Tagged { id: 1, tag: "?" }).unwrap();
    assert_eq!((k.tag, *v), ("first", 2));
    map.batch(|txn| {
        txn.extend([(
            Tagged {
                id: 1,
                tag: "third",
            },
            3,
        )])
    });
    let s = map.snapshot();
    let (k, v) = s.get_key_value(&Tagged { id: 1, tag: "?" }).unwrap();
    assert_eq!((k.tag, *v), ("first", 3));
}

// ---------------------------------------------------------------------------
// single-key writes, retain, replace_all, clear
// ---------------------------------------------------------------------------

#[test]
fn update_returns_new_value() {
    let hits = SnapshotMap::new();
    hits.insert("/", 0u64);
    assert_eq!(hits.update("/", |n| n + 1), Some(1));
    assert_eq!(hits.get_cloned("/"), Some(1));
    assert_eq!(hits.update("/missing", |n| n + 1), None);
    assert_eq!(hits.version(), 2);
}

#[test]
fn update_runs_f_once_and_loses_no_update() {
    let map = Arc::new(SnapshotMap::new());
    map.insert(0u8, 0u64);
    let calls = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let (m, c) = (map.clone(), calls.clone());
            thread::spawn(move || {
                for _ in 0..250 {
                    m.update(&0, |v| {
                        c.fetch_add(1, SeqCst);
                        v + 1
                    });
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(map.get_cloned(&0), Some(1000));
    assert_eq!(calls.load(SeqCst), 1000);
    assert_eq!(map.version(), 1001);
}

#[test]
fn retain_publishes_once_and_copies_only_kept_entries() {
    let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i * i)).collect();
    map.retain(|_, v| v % 2 == 0);
    assert_eq!(map.len(), 5);
    assert_eq!(map.version(), 1);
    let st = map.stats();
    assert_eq!((st.copies, st.copied_entries), (1, 5));
}

/// docs/snapshot_map.md: "`retain` that keeps everything ... change nothing and
/// copy nothing".
#[test]
fn retain_that_keeps_everything_clones_nothing() {
    let map: SnapshotMap<u32, Counted> = (0..100).map(|i| (i, Counted::new(i))).collect();
    let before = local_clones();
    map.retain(|_, _| true);
    map.batch(|txn| txn.retain(|_, _| true));
    assert_eq!(map.version(), 0);
    assert_eq!(
        local_clones() - before,
        0,
        "retain keeping everything cloned entries"
    );
}

#[test]
fn replace_all_returns_old_version_and_later_pair_wins() {
    let config = SnapshotMap::new();
    config.insert("a", 1);
    let old = config.replace_all([("b", 2), ("c", 3), ("b", 4)]);
    assert_eq!(config.len(), 2);
    assert_eq!(config.get_cloned("b"), Some(4));
    assert_eq!(old.version(), 1);
    assert_eq!(config.version(), 2);
    assert_eq!(old.diff(&config.snapshot()).count(), 3);
    let st = config.stats();
    assert_eq!(
        st.copies, 1,
        "only the insert copied; replace_all builds from scratch"
    );
}

#[test]
fn replace_all_runs_iterator_before_the_lock() {
    let map: Arc<SnapshotMap<u32, u32>> = Arc::new(SnapshotMap::new());
    let m = map.clone();
    no_hang(move || {
        let m2 = m.clone();
        let entries = std::iter::once_with(move || {
            m2.insert(1, 1); // runs before the writer lock: must not panic
            (2, 2)
        });
        m.replace_all(entries);
    });
    assert_eq!(map.version(), 2);
    assert_eq!(map.len(), 1);
    assert_eq!(map.get_cloned(&2), Some(2));
}

#[test]
fn replace_all_panicking_iterator_publishes_nothing_counts_aborted() {
    let map = SnapshotMap::new();
    map.insert(1, 1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        map.replace_all((0..3).map(|i| if i == 2 { panic!("iter") } else { (i, i) }))
    }));
    assert!(r.is_err());
    assert_eq!(map.version(), 1);
    assert_eq!(map.get_cloned(&1), Some(1));
    assert_eq!(map.stats().aborted, 1);
}

#[test]
fn clear_publishes_empty_version_from_scratch() {
    let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
    map.clear();
    assert!(map.is_empty());
    assert_eq!(map.version(), 1);
    assert_eq!(map.stats().copies, 0);
    map.clear();
    assert_eq!(map.version(), 1);
}

// ---------------------------------------------------------------------------
// conditional writes
// ---------------------------------------------------------------------------

#[test]
fn compare_exchange_results() {
    let map = SnapshotMap::new();
    map.insert("version", 1);
    assert_eq!(map.compare_exchange("version", &1, 2), Ok(1));
    let err = map.compare_exchange("version", &1, 3).unwrap_err();
    assert_eq!(
        err,
        SnapshotCompareExchangeError {
            current: Some(2),
            new: 3
        }
    );
    let err = map.compare_exchange("absent", &1, 3).unwrap_err();
    assert_eq!((err.current, err.new), (None, 3));
    assert_eq!((map.get_cloned("version"), map.version()), (Some(2), 2));
    let e: Box<dyn std::error::Error> =
        Box::new(map.compare_exchange("version", &9, 1).unwrap_err());
    assert!(!e.to_string().is_empty());
}

thread_local! {
    static EQ_CALLS: Cell<usize> = const { Cell::new(0) };
    static EQ_HOOK: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
}
#[derive(Clone, Debug)]
struct Hv(u32);
impl PartialEq for Hv {
    fn eq(&self, o: &Self) -> bool {
        EQ_CALLS.with(|c| c.set(c.get() + 1));
        if let Some(h) = EQ_HOOK.with(|h| h.borrow_mut().take()) {
            h();
        }
        self.0 == o.0
    }
}

#[test]
fn compare_exchange_rechecks_against_the_newest_value() {
    let map: Arc<SnapshotMap<u8, Hv>> = Arc::new(SnapshotMap::new());
    map.insert(0, Hv(1));
    let m = map.clone();
    // The first comparison (outside the lock) publishes a newer value.
    EQ_HOOK.with(|h| *h.borrow_mut() = Some(Box::new(move || _ = m.insert(0, Hv(5)))));
    EQ_CALLS.with(|c| c.set(0));
    let r = map.compare_exchange(&0, &Hv(1), Hv(2));
    let calls = EQ_CALLS.with(|c| c.get());
    let err = r.unwrap_err();
    assert_eq!(err.current.map(|v| v.0), Some(5));
    assert_eq!(err.new.0, 2);
    assert_eq!(
        calls, 2,
        "PartialEq runs once outside and once under the lock"
    );
    assert_eq!(map.get_cloned(&0).map(|v| v.0), Some(5));
    assert_eq!(map.version(), 2);
}

#[test]
fn remove_if_asks_again_about_the_newest_value() {
    let map: Arc<SnapshotMap<u8, u32>> = Arc::new(SnapshotMap::new());
    map.insert(0, 1);
    let mut seen = Vec::new();
    let m = map.clone();
    let r = map.remove_if(&0, |v| {
        seen.push(*v);
        if seen.len() == 1 {
            m.insert(0, 2); // first call runs without the lock
        }
        *v == 1
    });
    assert_eq!(r, None);
    assert_eq!(seen, [1, 2]);
    assert_eq!(map.get_cloned(&0), Some(2));
    assert_eq!(map.version(), 2);
    assert_eq!(map.remove_if(&0, |v| *v == 2), Some(2));
    assert!(map.is_empty());
}

#[test]
fn conditional_first_check_panic_is_not_counted_as_aborted() {
    let map = SnapshotMap::new();
    map.insert(1, 1);
    let r = catch_unwind(AssertUnwindSafe(|| map.remove_if(&1, |_| panic!("pred"))));
    assert!(r.is_err());
    assert_eq!(map.stats().aborted, 0);
    assert_eq!(map.version(), 1);
}

#[test]
fn concurrent_compare_exchange_is_an_exact_counter() {
    let map = Arc::new(SnapshotMap::new());
    map.insert("n", 0u64);
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let m = map.clone();
            thread::spawn(move || {
                for _ in 0..200 {
                    loop {
                        let cur = m.get_cloned("n").unwrap();
                        if m.compare_exchange("n", &cur, cur + 1).is_ok() {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(map.get_cloned("n"), Some(800));
}

// ---------------------------------------------------------------------------
// drops after the writer lock
// ---------------------------------------------------------------------------

fn check_drop_after_unlock(
    name: &str,
    setup_n: u32,
    op: impl FnOnce(&Arc<BombMap>) + Send + 'static,
) {
    let name2 = name.to_string();
    let fired = no_hang(move || {
        let map = bomb_map(setup_n);
        arm(&map);
        op(&map);
        let r = disarm();
        drop(map);
        r
    });
    assert_ne!(
        fired,
        Some(false),
        "{name2}: a Drop ran under the writer lock (its write panicked)"
    );
}

#[test]
fn update_drops_replaced_value_after_unlock() {
    check_drop_after_unlock("update", 5, |m| drop(m.update(&1, |v| v.clone())));
}

#[test]
fn batch_update_drops_replaced_value_after_unlock() {
    check_drop_after_unlock("batch update", 5, |m| {
        m.batch(|t| _ = t.update(&1, |v| v.clone()))
    });
}

#[test]
fn retain_drops_removed_entries_after_unlock() {
    check_drop_after_unlock("retain", 5, |m| m.retain(|k, _| *k != 1));
}

#[test]
fn retain_keeping_everything_drops_nothing_under_lock() {
    check_drop_after_unlock("retain keep-all", 5, |m| m.retain(|_, _| true));
}

#[test]
fn batch_retain_after_copy_drops_after_unlock() {
    check_drop_after_unlock("batch retain", 5, |m| {
        m.batch(|t| {
            t.insert(100, Bomb(100));
            t.retain(|k, _| *k != 1);
        })
    });
}

#[test]
fn batch_clear_after_copy_drops_after_unlock() {
    check_drop_after_unlock("batch clear", 5, |m| {
        m.batch(|t| {
            t.insert(100, Bomb(100));
            t.clear();
        })
    });
}

#[test]
fn batch_extend_over_present_key_drops_after_unlock() {
    check_drop_after_unlock("batch extend", 5, |m| {
        m.batch(|t| t.extend([(1, Bomb(77))]))
    });
}

#[test]
fn clear_drops_old_version_after_unlock() {
    check_drop_after_unlock("clear", 5, |m| m.clear());
}

#[test]
fn aborted_batch_drops_copy_after_unlock() {
    check_drop_after_unlock("try_batch Err", 5, |m| {
        let _ = m.try_batch(|t| {
            t.insert(100, Bomb(100));
            Err::<(), ()>(())
        });
    });
}

#[test]
fn replaced_version_dropped_after_unlock() {
    check_drop_after_unlock("insert new key", 5, |m| drop(m.insert(100, Bomb(100))));
}

// ---------------------------------------------------------------------------
// capacity
// ---------------------------------------------------------------------------

#[test]
fn with_capacity_and_copies_inherit_room() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(1000);
    let cap = map.capacity();
    assert!(cap >= 1000);
    assert_eq!((map.len(), map.version()), (0, 0));
    assert!(map.snapshot().capacity() >= 1000);
    for i in 0..1000 {
        map.insert(i, i);
    }
    assert_eq!(
        map.capacity(),
        cap,
        "filling to the requested size regrew the table"
    );
    let m2: SnapshotMap<u32, u32> =
        SnapshotMap::with_capacity_and_hasher(64, std::collections::hash_map::RandomState::new());
    assert!(m2.capacity() >= 64);
}

#[test]
fn capacity_of_new_map_is_zero_then_grows() {
    let map = SnapshotMap::new();
    assert_eq!(map.capacity(), 0);
    map.insert(1, 1);
    assert!(map.capacity() >= 1);
}

#[test]
fn reserve_publishes_only_when_lacking_room() {
    let map = SnapshotMap::new();
    map.insert(0, 0);
    let mut watcher = map.watch();
    map.reserve(1000);
    let capacity = map.capacity();
    assert!(capacity >= 1001);
    assert_eq!(map.version(), 2);
    assert_eq!(watcher.try_next().map(|s| s.len()), Some(1));
    map.reserve(10);
    assert_eq!(map.version(), 2, "reserve with room must publish nothing");
    for i in 1..=1000 {
        map.insert(i, i);
    }
    assert_eq!(map.capacity(), capacity);
}

#[test]
fn shrink_to_fit_publishes_only_when_it_frees_memory() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(10_000);
    map.insert(1, 1);
    let v = map.version();
    map.shrink_to_fit();
    assert!(map.capacity() < 10_000);
    assert_eq!(map.version(), v + 1);
    assert_eq!(map.get_cloned(&1), Some(1));
    map.shrink_to_fit();
    assert_eq!(
        map.version(),
        v + 1,
        "second shrink frees nothing: no publish"
    );
    let m: SnapshotMap<u32, u32> = SnapshotMap::new();
    m.reserve(1000);
    m.batch(|txn| txn.shrink_to_fit());
    assert!(m.capacity() < 1000);
}

#[test]
fn a_removal_leaving_the_table_under_a_quarter_full_gives_memory_back() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(1000);
    map.batch(|t| t.extend((0..100).map(|i| (i, i))));
    let cap = map.capacity();
    map.remove(&0);
    assert!(map.capacity() < cap);
}

#[test]
fn a_removal_leaving_the_table_over_a_quarter_full_keeps_the_room() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(1000);
    map.batch(|t| t.extend((0..600).map(|i| (i, i))));
    let cap = map.capacity();
    assert!(600 * 4 >= cap);
    map.remove(&0);
    assert_eq!(map.capacity(), cap);
}

/// capacity.rs: "The room lasts until a write leaves fewer keys than it found
/// and its table (with a capacity above 64) less than a quarter full".
#[test]
fn retain_removing_one_key_keeps_the_room() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(1000);
    map.batch(|t| t.extend((0..600).map(|i| (i, i))));
    let cap = map.capacity();
    assert!(599 * 4 >= cap, "not under a quarter full after the retain");
    map.retain(|k, _| *k != 0);
    assert_eq!(map.len(), 599);
    assert_eq!(map.capacity(), cap, "retain lost the reserved room");
}

/// capacity.rs: "`clear` and `replace_all` build a fresh table, which does not
/// inherit" the room.
#[test]
fn clear_builds_a_fresh_table_without_the_room() {
    let map: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(50);
    assert!(map.capacity() >= 50);
    map.batch(|t| t.extend((0..20).map(|i| (i, i))));
    map.clear();
    assert_eq!((map.len(), map.capacity()), (0, 0));
}

// ---------------------------------------------------------------------------
// diff
// ---------------------------------------------------------------------------

#[test]
fn diff_contents_and_order() {
    let config = SnapshotMap::new();
    config.insert("timeout", 30);
    config.insert("retries", 3);
    config.insert("same", 0);
    let old = config.snapshot();
    config.batch(|txn| {
        txn.insert("timeout", 60);
        txn.remove("retries");
        txn.insert("region", 1);
        txn.insert("same", 0);
    });
    let new = config.snapshot();
    let changes: Vec<_> = old.diff(&new).collect();
    assert_eq!(changes.len(), 3);
    assert!(changes.contains(&Change::Changed {
        key: &"timeout",
        old: &30,
        new: &60
    }));
    assert!(changes.contains(&Change::Removed {
        key: &"retries",
        value: &3
    }));
    assert!(changes.contains(&Change::Added {
        key: &"region",
        value: &1
    }));
    // added/changed first, then removed
    let first_removed = changes
        .iter()
        .position(|c| matches!(c, Change::Removed { .. }))
        .unwrap();
    assert!(changes[first_removed..]
        .iter()
        .all(|c| matches!(c, Change::Removed { .. })));
    // reversed
    let rev: Vec<_> = new.diff(&old).collect();
    assert!(rev.contains(&Change::Changed {
        key: &"timeout",
        old: &60,
        new: &30
    }));
    assert!(rev.contains(&Change::Added {
        key: &"retries",
        value: &3
    }));
    assert!(rev.contains(&Change::Removed {
        key: &"region",
        value: &1
    }));
    // same version
    assert_eq!(new.diff(&new).count(), 0);
    assert_eq!(new.diff(&new.clone()).count(), 0);
    // fused
    let mut d = old.diff(&new);
    for _ in d.by_ref() {}
    assert!(d.next().is_none());
    assert!(d.next().is_none());
}

#[test]
fn diff_changed_key_is_the_newer_versions_key() {
    let map = SnapshotMap::new();
    map.insert(Tagged { id: 1, tag: "old" }, 1);
    let old = map.snapshot();
    map.batch(|t| {
        t.remove(&Tagged { id: 1, tag: "" });
        t.insert(Tagged { id: 1, tag: "new" }, 2);
    });
    let new = map.snapshot();
    let changes: Vec<_> = old.diff(&new).collect();
    assert_eq!(changes.len(), 1);
    match &changes[0] {
        Change::Changed { key, old, new } => assert_eq!((key.tag, **old, **new), ("new", 1, 2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(changes[0].key().tag, "new");
}

#[test]
fn diff_across_many_versions_is_net_change() {
    let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
    let before = map.snapshot();
    map.update(&3, |v| v + 100);
    map.update(&3, |v| v - 100);
    map.insert(20, 20);
    map.remove(&20);
    assert_eq!(before.diff(&map.snapshot()).count(), 0);
}

// ---------------------------------------------------------------------------
// watch
// ---------------------------------------------------------------------------

#[test]
fn watcher_starts_at_current_and_coalesces() {
    let map = SnapshotMap::new();
    map.insert(1, 1);
    let mut watcher = map.watch();
    assert_eq!(watcher.seen(), 1);
    assert!(watcher.try_next().is_none());
    map.insert(2, 2);
    map.insert(3, 3);
    assert_eq!(watcher.try_next().map(|s| s.version()), Some(3));
    assert_eq!(watcher.seen(), 3);
    assert!(watcher.try_next().is_none());
    map.insert(4, 4);
    map.insert(5, 5);
    assert_eq!(watcher.wait().version(), 5);
    assert_eq!(watcher.seen(), 5);
}

#[test]
fn wait_blocks_until_another_thread_publishes() {
    let config = SnapshotMap::new();
    config.insert("level", "info");
    thread::scope(|s| {
        let mut watcher = config.watch();
        let old = config.snapshot();
        let reloader = s.spawn(|| {
            thread::sleep(Duration::from_millis(50));
            config.insert("level", "debug")
        });
        let new = watcher.wait();
        reloader.join().unwrap();
        assert_eq!(new.get("level"), Some(&"debug"));
        assert_eq!(old.diff(&new).count(), 1);
    });
}

#[test]
fn wait_timeout_gives_up_and_keeps_seen() {
    let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    let mut watcher = map.watch();
    let t = Instant::now();
    assert!(watcher.wait_timeout(Duration::from_millis(30)).is_none());
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert_eq!(watcher.seen(), 0);
    map.insert(1, 1);
    assert_eq!(
        watcher
            .wait_timeout(Duration::from_secs(5))
            .map(|s| s.version()),
        Some(1)
    );
}

#[test]
fn wait_inside_a_batch_panics_unless_a_newer_version_exists() {
    let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    let mut watcher = map.watch();
    let r = catch_unwind(AssertUnwindSafe(|| {
        map.batch(|t| {
            t.insert(1, 1);
            watcher.wait();
        })
    }));
    assert!(r.is_err());
    assert_eq!(map.version(), 0);
    // a version newer than seen: returns at once
    let mut watcher = map.watch();
    map.insert(2, 2);
    let v = map.batch(|_| watcher.wait().version());
    assert_eq!(v, 1);
    // wait_timeout inside a batch, with nothing unseen published before it,
    // can only time out
    let mut watcher = map.watch();
    let got = map.batch(|t| {
        t.insert(3, 3);
        watcher.wait_timeout(Duration::from_millis(20)).is_none()
    });
    assert!(got);
}

#[test]
fn changed_future_resolves_and_drop_cancels() {
    let map = SnapshotMap::new();
    let mut watcher = map.watch();
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    {
        let mut changed = pin!(watcher.changed());
        assert!(changed.as_mut().poll(&mut cx).is_pending());
        map.insert(1, 1);
        assert_eq!(count.load_count(), 1);
        match changed.poll(&mut cx) {
            Poll::Ready(s) => assert_eq!(s.version(), 1),
            Poll::Pending => panic!("not ready after publish"),
        }
    }
    assert_eq!(watcher.seen(), 1);
    // dropping a pending future cancels its wait: its waker is not woken
    let (count2, waker2) = counting_waker();
    {
        let mut changed = Box::pin(watcher.changed());
        assert!(changed
            .as_mut()
            .poll(&mut Context::from_waker(&waker2))
            .is_pending());
    }
    map.insert(2, 2);
    assert_eq!(count2.load_count(), 0, "a dropped future was still woken");
}

#[test]
fn repolling_registers_only_the_latest_waker_once() {
    let map = SnapshotMap::new();
    let mut watcher = map.watch();
    let (a, wa) = counting_waker();
    let (b, wb) = counting_waker();
    let mut changed = pin!(watcher.changed());
    for _ in 0..3 {
        assert!(changed
            .as_mut()
            .poll(&mut Context::from_waker(&wa))
            .is_pending());
    }
    assert!(changed
        .as_mut()
        .poll(&mut Context::from_waker(&wb))
        .is_pending());
    map.insert(1, 1);
    assert_eq!((a.load_count(), b.load_count()), (0, 1));
}

impl CountingWaker {
    fn load_count(&self) -> usize {
        self.0.load(SeqCst)
    }
}

#[test]
fn changed_works_with_a_parking_executor_across_threads() {
    let flags = SnapshotMap::new();
    let mut watcher = flags.watch();
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(20));
            flags.insert("beta", true)
        });
        let snapshot = block_on(async { watcher.changed().await });
        assert_eq!(snapshot.get("beta"), Some(&true));
    });
}

#[test]
fn a_waker_that_writes_to_the_map_does_not_deadlock() {
    struct Writes(Arc<SnapshotMap<u32, u32>>, AtomicUsize);
    impl Wake for Writes {
        fn wake(self: Arc<Self>) {
            if self.1.fetch_add(1, SeqCst) == 0 {
                self.0.insert(99, 99);
            }
        }
    }
    let map = Arc::new(SnapshotMap::new());
    let m = map.clone();
    no_hang(move || {
        let mut watcher = m.watch();
        let waker = Waker::from(Arc::new(Writes(m.clone(), AtomicUsize::new(0))));
        let mut changed = pin!(watcher.changed());
        assert!(changed
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        m.insert(1, 1);
    });
    assert_eq!(map.get_cloned(&99), Some(99));
}

// ---------------------------------------------------------------------------
// stats
// ---------------------------------------------------------------------------

#[test]
fn stats_doc_example_numbers() {
    let map = SnapshotMap::new();
    map.insert("a", 1);
    let old = map.snapshot();
    map.insert("b", 2);
    let stats = map.stats();
    assert_eq!((stats.published, stats.retired, stats.held), (2, 2, 1));
    drop(old);
    let stats = map.stats();
    assert_eq!((stats.held, stats.peak_held), (0, 1));
    assert_eq!(stats.retired_bytes, stats.freed_bytes);
    assert_eq!(stats.freed, 2);
}

#[test]
fn stats_copies_and_copied_entries() {
    let map: SnapshotMap<_, _> = (0..100).map(|i| (i, i)).collect();
    map.insert(100, 100);
    let s = map.stats();
    assert_eq!(
        (s.published, s.copies, s.copied_entries, s.held),
        (1, 1, 100, 0)
    );
    map.replace_all((0..10).map(|i| (i, i)));
    map.clear();
    let s = map.stats();
    assert_eq!((s.published, s.copies, s.copied_entries), (3, 1, 100));
}

#[test]
fn stats_held_bytes_are_the_held_versions_bytes() {
    let map: SnapshotMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    let bytes0 = map.stats().current_bytes;
    assert!(bytes0 > 0);
    let held = map.snapshot();
    map.insert(1000, 1);
    let s = map.stats();
    assert_eq!(s.held, 1);
    assert_eq!(s.held_bytes, bytes0);
    assert_eq!(s.peak_held_bytes, bytes0);
    drop(held);
    let s = map.stats();
    assert_eq!((s.held, s.held_bytes), (0, 0));
    assert_eq!(s.retired_bytes, s.freed_bytes);
    let big: SnapshotMap<u32, u32> = SnapshotMap::with_capacity(10_000);
    let empty: SnapshotMap<u32, u32> = SnapshotMap::new();
    assert!(big.stats().current_bytes > empty.stats().current_bytes);
}

#[test]
fn stats_peak_counts_the_snapshot_replace_all_returns() {
    let map = SnapshotMap::new();
    map.insert(1, 1);
    let old = map.replace_all([(2, 2)]);
    let s = map.stats();
    assert_eq!((s.held, s.peak_held), (1, 1));
    drop(old);
    assert_eq!(map.stats().held, 0);
}

#[test]
fn stats_peak_does_not_count_the_writers_own_handle() {
    let map = SnapshotMap::new();
    for i in 0..10 {
        map.insert(i, i);
    }
    map.clear();
    map.retain(|_, _| true);
    let s = map.stats();
    assert_eq!((s.held, s.peak_held), (0, 0));
}

#[test]
fn stats_aborted_counts_panicking_hash_at_publish() {
    use std::sync::atomic::AtomicBool;
    static PANIC_HASH: AtomicBool = AtomicBool::new(false);
    #[derive(Clone, PartialEq, Eq, Debug)]
    struct H(u32);
    impl Hash for H {
        fn hash<S: Hasher>(&self, s: &mut S) {
            if PANIC_HASH.load(SeqCst) {
                panic!("hash");
            }
            self.0.hash(s)
        }
    }
    let map: SnapshotMap<H, u32> = SnapshotMap::with_capacity(1000);
    map.batch(|t| t.extend((0..100).map(|i| (H(i), i))));
    // a batch that removes most keys shrinks (rehashes) when it closes
    let r = catch_unwind(AssertUnwindSafe(|| {
        map.batch(|t| {
            t.retain(|k, _| k.0 < 2);
            PANIC_HASH.store(true, SeqCst);
        })
    }));
    PANIC_HASH.store(false, SeqCst);
    assert!(r.is_err());
    assert_eq!(map.version(), 1);
    assert_eq!(map.len(), 100);
    assert_eq!(map.stats().aborted, 1);
}

#[test]
fn stats_default_and_equality() {
    let a = SnapshotStats::default();
    assert_eq!(a, a);
    assert_eq!(a.published, 0);
}

// ---------------------------------------------------------------------------
// standard traits
// ---------------------------------------------------------------------------

#[test]
fn clone_is_independent_version_zero_same_capacity() {
    let map: SnapshotMap<&str, i32> = SnapshotMap::with_capacity(500);
    map.insert("a", 1);
    map.insert("b", 2);
    let copy = map.clone();
    assert_eq!(copy.version(), 0);
    assert_eq!(copy.capacity(), map.capacity());
    assert_eq!(copy.stats().published, 0);
    assert_eq!(copy.stats().copies, 0);
    copy.insert("c", 3);
    assert_eq!((map.len(), copy.len()), (2, 3));
    assert_eq!((map.version(), copy.version()), (2, 1));
    let mut w = map.watch();
    copy.insert("d", 4);
    assert!(
        w.try_next().is_none(),
        "the clone's publish woke the original's watcher"
    );
    assert!(copy.snapshot() != map.snapshot());
}

#[cfg(feature = "crossbeam-epoch")]
#[test]
fn clone_of_a_backend_map_is_independent() {
    let _g = serial();
    let map = SnapshotMap::with_publish(CrossbeamEpoch);
    map.insert(1, 1);
    let copy = map.clone();
    copy.insert(2, 2);
    assert_eq!((map.len(), copy.len(), copy.version()), (1, 2, 1));
}

#[test]
fn eq_compares_contents() {
    let a: SnapshotMap<_, _> = [(1, "x"), (2, "y")].into_iter().collect();
    let b = SnapshotMap::new();
    b.batch(|txn| {
        txn.insert(2, "y");
        txn.insert(1, "x");
    });
    assert!(a == b);
    b.insert(3, "z");
    assert!(a != b);
}

#[test]
fn from_iterator_is_version_zero_later_wins() {
    let map: SnapshotMap<_, _> = [("a", 1), ("a", 2)].into_iter().collect();
    assert_eq!((map.get_cloned("a"), map.version()), (Some(2), 0));
    assert_eq!(map.stats().published, 0);
}

#[test]
fn extend_is_one_batch() {
    let mut map = SnapshotMap::new();
    map.insert(0, 'z');
    (&map).extend([(1, 'a'), (2, 'b')]);
    assert_eq!((map.len(), map.version()), (3, 2));
    map.extend([(3, 'c'), (4, 'd')]);
    assert_eq!((map.len(), map.version()), (5, 3));
    assert_eq!(map.stats().copies, 3);
    map.extend(std::iter::empty::<(i32, char)>());
    assert_eq!(map.version(), 3);
    let defaults = StdHashMap::from([(10, 'x'), (11, 'y')]);
    map.extend(&defaults);
    assert_eq!((map.len(), map.version()), (7, 4));
    (&map).extend(&StdHashMap::from([(12, 'q')]));
    assert_eq!((map.len(), map.version()), (8, 5));
}

#[test]
fn extend_iterator_that_writes_to_the_map_panics() {
    let map: Arc<SnapshotMap<u32, u32>> = Arc::new(SnapshotMap::new());
    let m = map.clone();
    let r = no_hang(move || {
        let m2 = m.clone();
        catch_unwind(AssertUnwindSafe(|| {
            (&*m).extend((0..3).map(move |i| {
                if i == 1 {
                    m2.insert(100, 100);
                }
                (i, i)
            }))
        }))
    });
    assert!(is_reentrant_panic(r));
    assert_eq!(map.version(), 0);
    assert!(map.is_empty());
}

// ---------------------------------------------------------------------------
// publication schemes
// ---------------------------------------------------------------------------

#[test]
fn arc_swap_publish_is_the_default() {
    let map = SnapshotMap::with_hasher_and_publish(
        std::collections::hash_map::RandomState::new(),
        ArcSwapPublish,
    );
    map.insert(1, "one");
    assert_eq!(map.get_cloned(&1), Some("one"));
    map.flush(); // a no-op
    let _typed: SnapshotMap<u32, &str> = map;
}

#[test]
fn backend_scheme_behaves_the_same() {
    let _g = serial();
    let map = SnapshotMap::with_hasher_and_publish(
        std::collections::hash_map::RandomState::new(),
        DefaultReclaim::default(),
    );
    map.insert("a", 1);
    let old = map.snapshot();
    let mut w = map.watch();
    map.batch(|t| {
        t.insert("a", 2);
        t.insert("b", 3);
    });
    assert_eq!((old.get("a"), map.get_cloned("a")), (Some(&1), Some(2)));
    assert_eq!(old.diff(&map.snapshot()).count(), 2);
    assert_eq!(w.try_next().map(|s| s.version()), Some(2));
    let r = map.get("a").unwrap();
    map.insert("a", 9);
    assert_eq!(*r, 2);
    drop(r);
    assert_eq!(map.try_batch(|_| Err::<(), _>(1)), Err(1));
    assert_eq!(map.stats().aborted, 1);
}

#[cfg(feature = "crossbeam-epoch")]
#[test]
fn backend_flush_frees_unheld_versions() {
    let _g = serial();
    let map = SnapshotMap::with_publish(CrossbeamEpoch);
    map.insert(1, 1);
    map.insert(1, 2);
    map.insert(1, 3);
    let mut held = u64::MAX;
    for _ in 0..200 {
        map.flush();
        held = map.stats().held;
        if held == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(held, 0, "flush never freed the replaced versions");
}

#[cfg(feature = "crossbeam-epoch")]
#[test]
fn backend_map_drop_drops_every_value() {
    let _g = serial();
    let ledger = DropLedger::new();
    {
        let map = SnapshotMap::with_publish(CrossbeamEpoch);
        for i in 0..20u32 {
            map.insert(i % 5, ledger.track(()));
        }
        assert!(ledger.alive() >= 5);
    }
    // Values of a dropped backend map are all dropped, once.
    ledger.assert_alive(0);
}

#[cfg(feature = "seize")]
#[test]
fn seize_scheme_basics() {
    use readmostly::reclaim::Seize;
    let map = SnapshotMap::with_publish(Seize::default());
    map.insert(1, 1);
    let s = map.snapshot();
    map.insert(1, 2);
    assert_eq!((s.get(&1), map.get_cloned(&1)), (Some(&1), Some(2)));
}

// ---------------------------------------------------------------------------
// features
// ---------------------------------------------------------------------------

#[cfg(feature = "serde")]
#[test]
fn serde_round_trip() {
    let map = SnapshotMap::new();
    map.insert("level", "info");
    let snapshot = map.snapshot();
    map.insert("level", "debug");
    assert_eq!(
        serde_json::to_string(&snapshot).unwrap(),
        r#"{"level":"info"}"#
    );
    assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"level":"debug"}"#);
    let config: SnapshotMap<String, u32> =
        serde_json::from_str(r#"{"timeout": 30, "retries": 3, "timeout": 60}"#).unwrap();
    assert_eq!(config.version(), 0);
    assert_eq!(config.get_cloned("retries"), Some(3));
    assert_eq!(
        config.get_cloned("timeout"),
        Some(60),
        "a later duplicate key wins"
    );
}

#[cfg(feature = "rayon")]
#[test]
fn rayon_par_iter_visits_each_entry_once() {
    use rayon::prelude::*;
    let map: SnapshotMap<u64, u64> = (0..1000).map(|i| (i, i * 2)).collect();
    let snapshot = map.snapshot();
    let total: u64 = snapshot.par_iter().map(|(_, v)| *v).sum();
    assert_eq!(total, 999 * 1000);
    let count = (&snapshot).into_par_iter().count();
    assert_eq!(count, 1000);
}

// silence unused warnings in configurations without some features
#[allow(dead_code)]
fn _unused(_: &Snapshot<u8, u8>) -> Vec<(u8, u8)> {
    sorted(&SnapshotMap::<u8, u8>::new().snapshot())
}

// ---------------------------------------------------------------------------
// more promises
// ---------------------------------------------------------------------------

/// mod.rs `flush`: "Ends the grace period of every version replaced before the
/// call, so that those no Snapshot holds are freed — at once if no other
/// thread is pinned".
#[cfg(feature = "crossbeam-epoch")]
#[test]
fn backend_one_flush_frees_at_once() {
    let _g = serial();
    let map = SnapshotMap::with_publish(CrossbeamEpoch);
    map.insert(1, 1);
    map.insert(1, 2);
    let kept = map.snapshot();
    map.insert(1, 3);
    map.flush();
    let s = map.stats();
    assert_eq!(
        s.held, 1,
        "one flush must leave only the snapshot's version held"
    );
    drop(kept);
    assert_eq!(map.stats().held, 0);
}

/// SnapshotRef under a backend "holds back that backend's reclamation while it
/// lives"; once dropped, flush frees.
#[cfg(feature = "crossbeam-epoch")]
#[test]
fn backend_snapshot_ref_holds_back_reclamation() {
    let _g = serial();
    let map = SnapshotMap::with_publish(CrossbeamEpoch);
    map.insert(1, String::from("a"));
    let r = map.get(&1).unwrap();
    map.insert(1, String::from("b"));
    map.insert(1, String::from("c"));
    map.flush();
    assert!(map.stats().held >= 1);
    assert_eq!(r.as_str(), "a");
    drop(r);
    map.flush();
    assert_eq!(map.stats().held, 0);
}

/// Batch docs: "while a batch is open, other writers wait".
#[test]
fn other_writers_wait_while_a_batch_is_open() {
    use std::sync::atomic::AtomicBool;
    let map = Arc::new(SnapshotMap::new());
    let done = Arc::new(AtomicBool::new(false));
    let (m, d) = (map.clone(), done.clone());
    let mut writer = None;
    map.batch(|t| {
        t.insert(1, 1);
        writer = Some(thread::spawn(move || {
            m.insert(2, 2);
            d.store(true, SeqCst);
        }));
        thread::sleep(Duration::from_millis(100));
        assert!(
            !done.load(SeqCst),
            "another writer published while the batch was open"
        );
    });
    writer.unwrap().join().unwrap();
    assert_eq!(map.version(), 2);
    assert_eq!(map.len(), 2);
}

/// Clone "Takes no lock"; reads under the lock are fine.
#[test]
fn reads_and_clone_inside_a_batch_are_fine() {
    let map: Arc<SnapshotMap<u32, u32>> = Arc::new((0..3).map(|i| (i, i)).collect());
    let m = map.clone();
    no_hang(move || {
        m.batch(|t| {
            t.insert(9, 9);
            let c = (*m).clone();
            assert_eq!(c.len(), 3);
            assert_eq!(m.iter().count(), 3);
            assert_eq!(m.stats().published, 0);
            assert!(m.capacity() >= 3);
            assert!(*m == c);
            assert!(!format!("{:?}", *m).is_empty());
            let _w = m.watch();
        })
    });
    assert_eq!(map.len(), 4);
}

/// mod.rs type docs: "A panicking `Clone` ... during a write leaves the map as
/// it was" — here in the middle of the whole-table copy (whose clones hashbrown
/// drops as the panic unwinds, under the lock, as documented; only the map's
/// state is checked).
#[test]
fn a_copy_aborted_by_a_panicking_clone_leaves_the_map_as_it_was() {
    no_hang(|| {
        let map = bomb_map(200);
        PANIC_CLONE_OF.with(|p| p.set(Some(100)));
        let r = catch_unwind(AssertUnwindSafe(|| drop(map.insert(1000, Bomb(1000)))));
        PANIC_CLONE_OF.with(|p| p.set(None));
        assert!(r.is_err());
        assert_eq!((map.version(), map.len()), (0, 200));
        assert_eq!(map.stats().aborted, 1);
        assert!(map.get(&1000).is_none());
        drop(map.insert(1000, Bomb(1000)));
        assert_eq!((map.version(), map.len()), (1, 201));
    });
}

/// Same, for a `retain` whose predicate panics before anything was copied.
#[test]
fn a_retain_aborted_by_a_panicking_predicate_drops_its_copy_after_unlock() {
    let fired = no_hang(|| {
        let map = bomb_map(200);
        arm(&map);
        let mut n = 0;
        let r = catch_unwind(AssertUnwindSafe(|| {
            map.retain(|_, _| {
                n += 1;
                if n == 150 {
                    panic!("keep");
                }
                n % 2 == 0
            })
        }));
        let fired = disarm();
        assert!(r.is_err());
        assert_eq!(map.version(), 0);
        assert_eq!(map.stats().aborted, 1);
        fired
    });
    assert_ne!(
        fired,
        Some(false),
        "retain's partial copy was dropped under the writer lock"
    );
}

/// `update`: "if `f` writes to this same map: that write panics instead of
/// deadlocking" (and nothing is published).
#[test]
fn update_closure_that_writes_panics() {
    let map: Arc<SnapshotMap<u32, u32>> = Arc::new(SnapshotMap::new());
    map.insert(1, 1);
    let m = map.clone();
    let r = no_hang(move || {
        let m2 = m.clone();
        catch_unwind(AssertUnwindSafe(|| {
            m.update(&1, |v| {
                m2.insert(2, 2);
                v + 1
            })
        }))
    });
    assert!(is_reentrant_panic(r));
    assert_eq!((map.version(), map.get_cloned(&1)), (1, Some(1)));
}

/// Type docs: "A version's keys and values are dropped by whoever drops its
/// last holder; a panicking Drop propagates there": the write was published.
#[test]
fn a_panicking_drop_of_a_replaced_value_propagates_to_the_writer_after_publish() {
    thread_local! { static ARMED: Cell<bool> = const { Cell::new(false) }; }
    #[derive(Clone, Debug)]
    struct P(u32);
    impl Drop for P {
        fn drop(&mut self) {
            if self.0 == 1 && ARMED.with(|a| a.replace(false)) {
                panic!("drop");
            }
        }
    }
    let map = SnapshotMap::new();
    map.insert(0, P(1));
    ARMED.with(|a| a.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| map.update(&0, |_| P(2))));
    ARMED.with(|a| a.set(false));
    assert!(r.is_err());
    assert_eq!(map.version(), 2);
    assert_eq!(map.get_cloned(&0).map(|p| p.0), Some(2));
    assert_eq!(map.stats().aborted, 0);
}

#[cfg(feature = "seize")]
#[test]
fn seize_map_drop_drops_every_value() {
    use readmostly::reclaim::Seize;
    let ledger = DropLedger::new();
    {
        let map = SnapshotMap::with_publish(Seize::default());
        for i in 0..20u32 {
            map.insert(i % 5, ledger.track(()));
        }
    }
    ledger.assert_alive(0);
}
