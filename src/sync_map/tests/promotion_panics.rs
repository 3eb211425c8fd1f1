//! User code that panics inside a promotion: `Clone` of a key, `Clone` of a
//! value, `Hash` of a key (a promotion hashes the read table's keys; the delta
//! caches its hashes).
//!
//! The documented contract ("Panics in user code" on [`SyncMap`]):
//! * in [`promote`](SyncMap::promote) the panic propagates, and the map is
//!   unchanged;
//! * in a promotion the map starts by itself — a reader's (rule 1), a writer's
//!   on a reader's request, a full delta's on a new key (rule 2), a compaction
//!   (rule 3) — the panic is contained, the promotion abandoned (nothing
//!   published, every slot unsealed, the partial clones dropped),
//!   `stats().promotions_abandoned` counts it, and the operation completes.
//!
//! Either way the contents are intact, nothing leaks and nothing is dropped
//! twice (every key and value is drop-counted, clones included), the map stays
//! usable and a later promotion succeeds. The panic is injected at the first, a
//! middle and the last call a full promotion would make.

use core::fmt;
use core::hash::{Hash, Hasher};
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::super::policy::{MIN_PROMOTION_LEN, SAMPLE};
use super::{Link, Place};
use crate::reclaim::Reclaim;
use crate::sync;
use crate::test_support::{flush_until_quiet, settle, Counted, DropLog, Rng};
use crate::SyncMap;

/// A countdown to a panic: disarmed (negative), or the number of calls it lets
/// through before the next one panics — once: tripping disarms it.
struct Fuse(AtomicIsize);

impl Fuse {
    fn disarmed() -> Self {
        Fuse(AtomicIsize::new(-1))
    }

    /// Lets `after` calls through, then panics on the next one.
    fn arm(&self, after: usize) {
        self.0.store(after as isize, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.0.store(-1, Ordering::SeqCst);
    }

    fn is_armed(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= 0
    }

    fn burn(&self, what: &str) {
        let tripped = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                0 => Some(-1),
                left if left > 0 => Some(left - 1),
                _ => None,
            });
        if tripped == Ok(0) {
            panic!("{what} panics on purpose");
        }
    }
}

/// The user code a promotion runs, each with its own fuse.
struct Fuses {
    key_clone: Fuse,
    value_clone: Fuse,
    hash: Fuse,
}

/// A key whose `Clone` and `Hash` burn the fuses it carries (probe keys carry
/// none, so lookups never panic).
struct Key {
    id: u32,
    fuses: Option<Arc<Fuses>>,
}

impl Clone for Key {
    fn clone(&self) -> Self {
        if let Some(fuses) = &self.fuses {
            fuses.key_clone.burn("key Clone");
        }
        Key {
            id: self.id,
            fuses: self.fuses.clone(),
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if let Some(fuses) = &self.fuses {
            fuses.hash.burn("key Hash");
        }
        self.id.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// A value whose `Clone` burns the fuse it carries.
struct Val {
    v: u32,
    fuses: Option<Arc<Fuses>>,
}

impl Clone for Val {
    fn clone(&self) -> Self {
        if let Some(fuses) = &self.fuses {
            fuses.value_clone.burn("value Clone");
        }
        Val {
            v: self.v,
            fuses: self.fuses.clone(),
        }
    }
}

impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Val({})", self.v)
    }
}

type Map = SyncMap<Counted<Key>, Counted<Val>>;

/// Which user code panics.
#[derive(Clone, Copy, Debug)]
enum Bomb {
    KeyClone,
    ValueClone,
    Hash,
}

const BOMBS: [Bomb; 3] = [Bomb::KeyClone, Bomb::ValueClone, Bomb::Hash];

struct Fixture {
    log: DropLog,
    fuses: Arc<Fuses>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            log: DropLog::new(),
            fuses: Arc::new(Fuses {
                key_clone: Fuse::disarmed(),
                value_clone: Fuse::disarmed(),
                hash: Fuse::disarmed(),
            }),
        }
    }

    fn fuse(&self, bomb: Bomb) -> &Fuse {
        match bomb {
            Bomb::KeyClone => &self.fuses.key_clone,
            Bomb::ValueClone => &self.fuses.value_clone,
            Bomb::Hash => &self.fuses.hash,
        }
    }

    /// A key the map will own: its `Clone` and `Hash` burn the fuses.
    fn key(&self, id: u32) -> Counted<Key> {
        self.log.make(Key {
            id,
            fuses: Some(Arc::clone(&self.fuses)),
        })
    }

    /// A lookup key (or a key added while a fuse is armed): never panics.
    fn probe(&self, id: u32) -> Counted<Key> {
        self.log.make(Key { id, fuses: None })
    }

    fn val(&self, v: u32) -> Counted<Val> {
        self.log.make(Val {
            v,
            fuses: Some(Arc::clone(&self.fuses)),
        })
    }

    /// A map with slots in every state, and its expected contents:
    /// * 0..40 promoted into the read table (inline), of which 3 and 4 removed
    ///   and 5 and 6 overwritten (cells);
    /// * 40..60 new keys in the delta (inline in their nodes, hashes cached), of
    ///   which 41 removed and 42 overwritten (a cell).
    ///
    /// 57 live keys, 38 of them in the read table.
    fn populated(&self) -> (Map, BTreeMap<u32, u32>) {
        let map = Map::new();
        let mut model = BTreeMap::new();
        for i in 0..40 {
            map.pin().insert(self.key(i), self.val(i));
            model.insert(i, i);
        }
        map.promote();
        for i in 40..60 {
            map.pin().insert(self.key(i), self.val(i));
            model.insert(i, i);
        }
        for i in [3, 4, 41] {
            map.pin().remove(&self.probe(i));
            model.remove(&i);
        }
        for i in [5, 6, 42] {
            map.pin().insert(self.probe(i), self.val(i + 1000));
            model.insert(i, i + 1000);
        }
        assert_eq!(
            map.slot_of(&self.probe(3)),
            Some(Place::Read(Link::Removed))
        );
        assert_eq!(map.slot_of(&self.probe(5)), Some(Place::Read(Link::Cell)));
        assert_eq!(map.slot_of(&self.probe(7)), Some(Place::Read(Link::Inline)));
        assert_eq!(
            map.slot_of(&self.probe(41)),
            Some(Place::Delta(Link::Removed))
        );
        assert_eq!(map.slot_of(&self.probe(42)), Some(Place::Delta(Link::Cell)));
        assert_eq!(
            map.slot_of(&self.probe(43)),
            Some(Place::Delta(Link::Inline))
        );
        assert_eq!(map.root_sizes(), (40, 20));
        assert_eq!(map.len(), 57);
        map.check_root_exact();
        flush_until_quiet(&map);
        (map, model)
    }

    /// The calls of `bomb`'s kind a promotion of `map` makes now: a clone of
    /// each live key and of its value; a hash of each live key of the read
    /// table (the delta's are cached). No resize of the new table: it is
    /// sized for the live keys, and the tombstone count is exact here.
    fn calls(&self, bomb: Bomb, map: &Map) -> usize {
        match bomb {
            Bomb::KeyClone | Bomb::ValueClone => map.len(),
            Bomb::Hash => {
                let guard = map.read_side.reclaim.pin();
                let root = map.read_side.root.load(&guard);
                root.read
                    .slots()
                    .filter(|slot| Link::of(*slot).0 != Link::Removed)
                    .count()
            }
        }
    }

    /// Where to inject the panic in a promotion of `map`: the first, a middle
    /// and the last call.
    fn positions(&self, bomb: Bomb, map: &Map) -> [usize; 3] {
        spread(self.calls(bomb, map))
    }

    /// What must not change when a promotion fails (besides the contents).
    fn state(&self, map: &Map) -> State {
        let stats = map.stats();
        State {
            root: map.root_addr(),
            sizes: map.root_sizes(),
            promotions: stats.promotions,
            tables_retired: stats.tables_retired,
            values_retired: stats.values_retired,
            alive: self.log.alive(),
        }
    }

    /// After a failed promotion: nothing published, no slot sealed, counts
    /// exact, the contents `model`, and no key or value made by the promotion
    /// left alive (or dropped twice).
    #[track_caller]
    fn assert_intact(&self, map: &Map, model: &BTreeMap<u32, u32>, before: &State) {
        // Before any read: reads could start another (now successful) promotion.
        assert_eq!(
            &self.state(map),
            before,
            "a failed promotion changed the map"
        );
        assert_eq!(self.log.double_drops(), 0);
        map.check_root_exact();
        // Iteration never promotes.
        let seen: BTreeMap<u32, u32> = map
            .pin()
            .iter()
            .map(|(k, v)| (k.payload.id, v.payload.v))
            .collect();
        assert_eq!(&seen, model);
        assert_eq!(map.len(), model.len());
    }

    /// The map still works, a later promotion succeeds, and after it and a
    /// flush exactly one key and one value per live key are alive; dropping
    /// the map then drops them at once.
    #[track_caller]
    fn assert_usable(&self, map: Map, mut model: BTreeMap<u32, u32>) {
        for bomb in BOMBS {
            assert!(!self.fuse(bomb).is_armed(), "{bomb:?} fuse still armed");
        }
        let pinned = map.pin();
        for (i, v) in [(3, 30), (7, 70), (41, 410), (42, 420), (200, 2000)] {
            let old = pinned.insert(self.key(i), self.val(v)).map(|v| v.payload.v);
            assert_eq!(old, model.insert(i, v), "insert {i}");
        }
        assert_eq!(
            pinned.remove(&self.probe(8)).map(|v| v.payload.v),
            model.remove(&8)
        );
        drop(pinned);
        map.check_root_exact();
        let promotions = map.stats().promotions;
        map.promote();
        assert_eq!(map.stats().promotions, promotions + 1);
        map.check_root_exact();
        assert_eq!(map.root_sizes(), (model.len(), 0));
        for (&k, &v) in &model {
            let got = map.pin().get(&self.probe(k)).map(|v| v.payload.v);
            assert_eq!(got, Some(v), "key {k}");
        }
        flush_until_quiet(&map);
        assert_eq!(
            self.log.alive(),
            2 * model.len(),
            "after promote() and a flush"
        );
        drop(map);
        assert_eq!(self.log.alive(), 0, "left behind by the map's drop");
        assert_eq!(self.log.double_drops(), 0);
    }
}

/// The first, a middle and the last of `calls` calls.
fn spread(calls: usize) -> [usize; 3] {
    assert!(calls >= 3);
    [0, calls / 2, calls - 1]
}

/// [`Fixture::positions`] for the populated fixture.
fn positions_in_populated(bomb: Bomb) -> [usize; 3] {
    let f = Fixture::new();
    let (map, _) = f.populated();
    f.positions(bomb, &map)
}

#[derive(Debug, PartialEq, Eq)]
struct State {
    root: usize,
    sizes: (usize, usize),
    promotions: u64,
    tables_retired: u64,
    values_retired: u64,
    alive: usize,
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// `promote()`: the panic propagates; the map is unchanged.
// ---------------------------------------------------------------------------

#[test]
fn panicking_clone_or_hash_in_promote_propagates_and_leaves_the_map_intact() {
    for bomb in BOMBS {
        for at in positions_in_populated(bomb) {
            let f = Fixture::new();
            let (map, model) = f.populated();
            let before = f.state(&map);
            let abandoned = map.stats().promotions_abandoned;
            f.fuse(bomb).arm(at);
            let result = catch_unwind(AssertUnwindSafe(|| map.promote()));
            let panic =
                result.expect_err(&format!("{bomb:?} at call {at}: promote() did not panic"));
            assert!(
                panic_message(&panic).contains("panics on purpose"),
                "{bomb:?} at call {at}: {}",
                panic_message(&panic)
            );
            assert!(
                !f.fuse(bomb).is_armed(),
                "{bomb:?} at call {at}: the fuse did not trip"
            );
            f.assert_intact(&map, &model, &before);
            assert_eq!(
                map.stats().promotions_abandoned,
                abandoned,
                "promote() propagates: nothing is counted as abandoned"
            );
            // The panic unwound through the writer lock; the map ignores the
            // poisoning, and new keys (which may grow the delta) still go in.
            assert!(map.write_side.writer.is_poisoned());
            f.assert_usable(map, model);
        }
    }
}

// ---------------------------------------------------------------------------
// Promotions the map starts by itself: contained, counted, the operation done.
// ---------------------------------------------------------------------------

/// Rule 1: a reader spends the read budget and promotes; the panic is contained
/// and every read returns its value.
#[test]
fn panicking_clone_or_hash_in_a_readers_promotion_is_contained() {
    for bomb in BOMBS {
        for at in positions_in_populated(bomb) {
            let f = Fixture::new();
            let (map, model) = f.populated();
            let before = f.state(&map);
            f.fuse(bomb).arm(at);
            // Reads of a delta key: 2 per key of the map (at least 64 keys) spend
            // the budget, in samples of SAMPLE.
            let limit = 2 * MIN_PROMOTION_LEN.max(60) + 2 * SAMPLE;
            let mut reads = 0;
            while map.stats().promotions_abandoned == 0 {
                let got = map.pin().get(&f.probe(43)).map(|v| v.payload.v);
                assert_eq!(got, Some(43), "{bomb:?} at call {at}");
                reads += 1;
                assert!(reads <= limit, "{bomb:?} at call {at}: no promotion tried");
            }
            assert!(
                !f.fuse(bomb).is_armed(),
                "{bomb:?} at call {at}: the fuse did not trip"
            );
            assert_eq!(map.stats().promotions_abandoned, 1);
            f.assert_intact(&map, &model, &before);
            f.assert_usable(map, model);
        }
    }
}

/// A reader asked for a promotion while the lock was taken; the next writer
/// promotes for it: the panic is contained and the write is done.
#[test]
fn panicking_clone_or_hash_in_a_promotion_a_reader_asked_for_is_contained() {
    for bomb in BOMBS {
        for at in positions_in_populated(bomb) {
            let f = Fixture::new();
            let (map, mut model) = f.populated();
            {
                let held = sync::lock(&map.write_side.writer);
                thread::scope(|s| {
                    s.spawn(|| {
                        for _ in 0..(4 * MIN_PROMOTION_LEN) {
                            assert!(map.pin().get(&f.probe(43)).is_some());
                        }
                    });
                });
                drop(held);
            }
            assert!(map.promote_wanted());
            let before = f.state(&map);
            f.fuse(bomb).arm(at);
            // A lock-free update of a present key; it makes one value, uncloned.
            let updated = map
                .pin()
                .update(&f.probe(7), |v| f.val(v.payload.v + 1))
                .map(|v| v.payload.v);
            assert_eq!(updated, Some(8), "{bomb:?} at call {at}");
            model.insert(7, 8);
            assert!(
                !f.fuse(bomb).is_armed(),
                "{bomb:?} at call {at}: the fuse did not trip"
            );
            assert_eq!(map.stats().promotions_abandoned, 1);
            assert!(!map.promote_wanted(), "the triggers start over");
            // The update made one more value (in a cell) and changed key 7's link.
            let before = State {
                alive: before.alive + 1,
                ..before
            };
            f.assert_intact(&map, &model, &before);
            assert_eq!(map.slot_of(&f.probe(7)), Some(Place::Read(Link::Cell)));
            f.assert_usable(map, model);
        }
    }
}

/// Rule 2: a new key finds the delta full and big enough to merge; the panic is
/// contained, and the key goes into a grown delta instead.
#[test]
fn panicking_clone_or_hash_in_a_full_delta_promotion_is_contained() {
    for bomb in BOMBS {
        let f = Fixture::new();
        let (map, _) = f.populated();
        for i in 60..104 {
            map.pin().insert(f.key(i), f.val(i));
        }
        let positions = f.positions(bomb, &map);
        drop(map);
        for at in positions {
            let f = Fixture::new();
            let (map, mut model) = f.populated();
            // 44 more new keys fill the delta to its room (64 of 128 buckets) and
            // to the merge bound (64, at least half of the read table's 40).
            for i in 60..104 {
                map.pin().insert(f.key(i), f.val(i));
                model.insert(i, i);
            }
            assert_eq!(map.root_sizes(), (40, 64));
            assert_eq!(map.stats().promotions, 1);
            let before = f.state(&map);
            let growths = map.stats().delta_growths;
            f.fuse(bomb).arm(at);
            // The new key's own `Hash` must not burn the fuse: a probe-made key.
            assert!(map.pin().insert(f.probe(104), f.val(104)).is_none());
            model.insert(104, 104);
            assert!(
                !f.fuse(bomb).is_armed(),
                "{bomb:?} at call {at}: the fuse did not trip"
            );
            let stats = map.stats();
            assert_eq!(stats.promotions_abandoned, 1, "{stats:?}");
            assert_eq!(stats.delta_growths, growths + 1, "the delta grew instead");
            assert_eq!(map.slot_of(&f.probe(104)), Some(Place::Delta(Link::Inline)));
            // The grown delta retired the old bucket array; one more key and value.
            let before = State {
                sizes: (40, 65),
                tables_retired: before.tables_retired + 1,
                alive: before.alive + 2,
                ..before
            };
            f.assert_intact(&map, &model, &before);
            f.assert_usable(map, model);
        }
    }
}

/// Rule 3: a remove brings the removed keys to half of the root and compacts;
/// the panic is contained and the key is removed.
#[test]
fn panicking_clone_or_hash_in_a_compaction_is_contained() {
    // 3 removed keys of 60: 26 more removes leave 29 (below half); the 27th
    // compacts. Keys 7..34 are live keys of the read table.
    let prepare = |f: &Fixture| {
        let (map, mut model) = f.populated();
        for i in 7..33 {
            assert!(map.pin().remove(&f.probe(i)).is_some());
            model.remove(&i);
        }
        assert_eq!(map.stats().compactions, 0);
        (map, model)
    };
    for bomb in BOMBS {
        let f = Fixture::new();
        let (map, _) = prepare(&f);
        // The calls of the compaction: one fewer than now, 33 (a live key of
        // the read table) removed.
        let positions = spread(f.calls(bomb, &map) - 1);
        drop(map);
        for at in positions {
            let f = Fixture::new();
            let (map, mut model) = prepare(&f);
            let before = f.state(&map);
            f.fuse(bomb).arm(at);
            let removed = map.pin().remove(&f.probe(33)).map(|v| v.payload.v);
            assert_eq!(removed, Some(33), "{bomb:?} at call {at}");
            model.remove(&33);
            assert!(
                !f.fuse(bomb).is_armed(),
                "{bomb:?} at call {at}: the fuse did not trip"
            );
            assert_eq!(map.stats().promotions_abandoned, 1);
            assert_eq!(map.slot_of(&f.probe(33)), Some(Place::Read(Link::Removed)));
            f.assert_intact(&map, &model, &before);
            f.assert_usable(map, model);
        }
    }
}

// ---------------------------------------------------------------------------
// Writes racing promotions that fail.
// ---------------------------------------------------------------------------

/// Writers overwrite, update, remove and revive their own keys while another
/// thread runs promotions that panic part-way (and some that succeed): a write
/// that met a seal of a promotion later abandoned retries on the same root,
/// unsealed, and lands. Nothing is lost, no slot is left sealed, nothing leaks.
#[test]
fn writes_racing_abandoned_promotions_lose_nothing() {
    const WRITERS: u64 = 2;
    const OWNED: u64 = 32;
    const OPS: u64 = 4_000;
    let f = Fixture::new();
    let map = Map::new();
    for i in 0..(WRITERS * OWNED) as u32 {
        map.pin().insert(f.key(i), f.val(0));
    }
    map.promote();
    let writing = AtomicUsize::new(WRITERS as usize);
    let start = Barrier::new(WRITERS as usize + 1);
    let (models, (failed, succeeded)) = thread::scope(|s| {
        let promoter = {
            let (f, map, writing, start) = (&f, &map, &writing, &start);
            s.spawn(move || {
                let mut rng = Rng::new(0xBAD);
                let (mut failed, mut succeeded) = (0, 0);
                let mut first = true;
                while first || writing.load(Ordering::Acquire) > 0 {
                    let bomb = BOMBS[rng.below(3) as usize];
                    f.fuse(bomb).arm(rng.below(16) as usize);
                    match catch_unwind(AssertUnwindSafe(|| map.promote())) {
                        Ok(()) => succeeded += 1,
                        Err(_) => failed += 1,
                    }
                    f.fuse(bomb).disarm();
                    if first {
                        // The first one, on 64 live keys, fails for sure.
                        assert_eq!(failed, 1);
                        first = false;
                        start.wait();
                    }
                }
                (failed, succeeded)
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let (f, map, writing, start) = (&f, &map, &writing, &start);
                s.spawn(move || {
                    let mut rng = Rng::new(0x5EA1 + t);
                    // Preloaded keys, and as many new ones (added as it goes).
                    let keys: Vec<u32> = (0..2 * OWNED)
                        .map(|i| {
                            if i < OWNED {
                                t + WRITERS * i
                            } else {
                                1_000 + t + WRITERS * i
                            }
                        })
                        .map(|k| k as u32)
                        .collect();
                    let mut model: HashMap<u32, u32> =
                        keys[..OWNED as usize].iter().map(|&k| (k, 0)).collect();
                    start.wait();
                    for op in 1..=OPS as u32 {
                        let k = keys[rng.below(2 * OWNED) as usize];
                        let now = model.get(&k).copied();
                        // Only the Pinned API (the owned one clones, which the
                        // promoter's fuses may be armed to refuse), and keys made
                        // without fuses.
                        let pinned = map.pin();
                        let probe = f.probe(k);
                        match rng.below(4) {
                            0 => {
                                let old = pinned.insert(f.probe(k), f.val(op)).map(|v| v.payload.v);
                                assert_eq!(old, now, "insert {k}");
                                model.insert(k, op);
                            }
                            1 => {
                                let new = pinned.update(&probe, |v| f.val(v.payload.v + 1));
                                assert_eq!(
                                    new.map(|v| v.payload.v),
                                    now.map(|n| n + 1),
                                    "update {k}"
                                );
                                if let Some(n) = now {
                                    model.insert(k, n + 1);
                                }
                            }
                            2 => {
                                let got = pinned.remove(&probe).map(|v| v.payload.v);
                                assert_eq!(got, now, "remove {k}");
                                model.remove(&k);
                            }
                            _ => {
                                let got = pinned.get_or_insert(f.probe(k), f.val(op));
                                assert_eq!(got.is_stored(), now.is_none(), "get_or_insert {k}");
                                model.entry(k).or_insert(op);
                            }
                        }
                        let got = pinned.get(&probe).map(|v| v.payload.v);
                        assert_eq!(got, model.get(&k).copied(), "read back {k}");
                    }
                    writing.fetch_sub(1, Ordering::Release);
                    model
                })
            })
            .collect();
        let models: Vec<HashMap<u32, u32>> =
            writers.into_iter().map(|w| w.join().unwrap()).collect();
        (models, promoter.join().unwrap())
    });
    println!("promotions racing the writers: {failed} failed, {succeeded} succeeded");
    for bomb in BOMBS {
        f.fuse(bomb).disarm();
    }
    map.check_root();
    let mut live = 0;
    for model in &models {
        for (&k, &v) in model {
            assert_eq!(
                map.pin().get(&f.probe(k)).map(|v| v.payload.v),
                Some(v),
                "key {k}"
            );
        }
        live += model.len();
    }
    assert_eq!(map.len(), live);
    assert_eq!(map.pin().iter().count(), live);
    map.promote();
    // The writers and the promoter retired garbage and have exited.
    settle(&map, || f.log.alive(), 2 * live);
    assert_eq!(f.log.double_drops(), 0);
    drop(map);
    assert_eq!(f.log.alive(), 0);
}
