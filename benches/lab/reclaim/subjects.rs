//! The maps under test ("subjects"), each behind one small trait, and the
//! value types they hold.
//!
//! Every subject stores `u64` keys, built with the lab's key generation
//! (`keys::LabKey::from_id`: distinct ids give distinct keys scattered over the
//! whole range), with std's `RandomState`, the lab's default hasher.

use std::collections::hash_map::RandomState;

use readmostly::reclaim::{ArcSwapPublish, CrossbeamEpoch, Publish, Reclaim, Seize};
use readmostly::{Snapshot, SnapshotMap, SyncMap};

use crate::keys::{KeyType, LabKey};

/// The hasher of every subject.
pub type Hasher = RandomState;

/// Key number `id` of a run seeded with `seed`.
#[inline(always)]
pub fn key(id: u64, seed: u64) -> u64 {
    <u64 as LabKey>::from_id(id, seed, KeyType::U64)
}

/// A value type of the scenarios.
pub trait Value: Clone + Send + Sync + 'static {
    /// Name in the output.
    const NAME: &'static str;
    /// A value (its content says nothing; `tag` keeps the optimizer honest).
    fn make(tag: u64) -> Self;
    /// Reads the value (one word), so a get touches what it found.
    fn touch(&self) -> u64;
}

impl Value for u64 {
    const NAME: &'static str = "u64";
    fn make(tag: u64) -> Self {
        tag
    }
    #[inline(always)]
    fn touch(&self) -> u64 {
        *self
    }
}

/// `N` bytes stored inline in whatever holds the value (a SyncMap cell or
/// table slot, a SnapshotMap bucket), so that the maps' ledgers, which count
/// `size_of::<V>()` and not memory a value owns further down, count these
/// bytes too. A `Vec<u8>` of the same length would be 24 bytes to the ledgers.
#[derive(Clone)]
pub struct Blob<const N: usize>(pub [u8; N]);

impl<const N: usize> Value for Blob<N> {
    const NAME: &'static str = if N == 4096 {
        "[u8; 4096]"
    } else if N == 65536 {
        "[u8; 65536]"
    } else {
        "[u8; N]"
    };
    fn make(tag: u64) -> Self {
        Blob([tag as u8; N])
    }
    #[inline(always)]
    fn touch(&self) -> u64 {
        u64::from(self.0[0])
    }
}

/// One write of a worker.
#[derive(Clone, Copy, Debug)]
pub enum Write {
    /// Replace the value of a present key.
    Overwrite(u64),
    /// Remove the key, then insert it again (the key count stays the same).
    Reinsert(u64),
}

/// A map's garbage at one moment, from its own ledger (`stats()`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Garbage {
    /// SyncMap: retired objects not freed yet (`Stats::pending`); SnapshotMap:
    /// retired versions still held (`SnapshotStats::held`), each a whole table.
    pub objects: u64,
    /// Their bytes as the ledger counts them (`pending_bytes`, `held_bytes`).
    pub bytes: u64,
    /// Objects (versions) retired so far.
    pub retired: u64,
    /// Of those, freed so far.
    pub freed: u64,
}

/// A map under test.
pub trait Subject<V: Value>: Send + Sync + Sized {
    /// A held read: a pinned guard, or a snapshot.
    type Held<'a>
    where
        Self: 'a;
    /// Id on the command line and in the output.
    const ID: &'static str;
    /// What frees its garbage.
    const SCHEME: &'static str;

    /// An empty map.
    fn new() -> Self;
    /// Writes a worker gathers into one write of the map: 1 for the SyncMaps
    /// (every write by itself), `--snapshot-batch` for SnapshotMap.
    fn write_batch(snapshot_batch: usize) -> usize;
    /// Keys `0..n` (of `seed`) with `value`, then whatever the map does after a
    /// bulk load (SyncMap promotes).
    fn prefill(&self, n: usize, seed: u64, value: &V);
    /// A get with a fresh guard (what `get_cloned` does, without cloning a
    /// large value): the word it read, if found.
    fn get(&self, key: u64) -> Option<u64>;
    /// Starts a held read.
    fn hold(&self) -> Self::Held<'_>;
    /// A get through a held read.
    fn get_held(&self, held: &Self::Held<'_>, key: u64) -> Option<u64>;
    /// Ends a held read and starts a new one (what frees garbage it held back).
    fn refresh(&self, held: &mut Self::Held<'_>);
    /// Applies `writes` (one batch for SnapshotMap), each pinning afresh.
    fn write(&self, writes: &[Write], value: &V);
    /// Applies `writes` through a held read where the map allows it.
    fn write_held(&self, held: &Self::Held<'_>, writes: &[Write], value: &V);
    /// The garbage the ledger reports now.
    fn garbage(&self) -> Garbage;
    /// Asks the reclaimer to free what it can (`SyncMap::flush`; SnapshotMap
    /// has no collector: a version is freed by its last holder).
    fn flush(&self);
}

/// A reclamation backend of SyncMap, as a subject.
pub trait Backend: Reclaim {
    const ID: &'static str;
    const SCHEME: &'static str;
}

impl Backend for CrossbeamEpoch {
    const ID: &'static str = "syncmap-crossbeam";
    const SCHEME: &'static str = "crossbeam-epoch (global epochs)";
}

impl Backend for Seize {
    const ID: &'static str = "syncmap-seize";
    const SCHEME: &'static str = "seize (Hyaline, one collector per map)";
}

/// `SyncMap<u64, V, Hasher, R>`, one operation per pin (fresh) or through a
/// held `Pinned`.
pub struct SyncSubject<V, R: Reclaim>(SyncMap<u64, V, Hasher, R>);

impl<V: Value, R: Backend> Subject<V> for SyncSubject<V, R> {
    type Held<'a> = readmostly::Pinned<'a, u64, V, Hasher, R>;
    const ID: &'static str = R::ID;
    const SCHEME: &'static str = R::SCHEME;

    fn new() -> Self {
        // `Seize::default()` is `Seize::new()`: a collector of its own.
        SyncSubject(SyncMap::with_hasher_and_reclaim(
            Hasher::default(),
            R::default(),
        ))
    }
    fn write_batch(_: usize) -> usize {
        1
    }
    fn prefill(&self, n: usize, seed: u64, value: &V) {
        let mut pinned = self.0.pin();
        for id in 0..n as u64 {
            pinned.insert(key(id, seed), value.clone());
            // A guard held through a million inserts would hold back every
            // delta it grew past.
            if id % 1024 == 1023 {
                pinned.refresh();
            }
        }
        drop(pinned);
        self.0.promote();
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.pin().get(&key).map(V::touch)
    }
    fn hold(&self) -> Self::Held<'_> {
        self.0.pin()
    }
    #[inline]
    fn get_held(&self, held: &Self::Held<'_>, key: u64) -> Option<u64> {
        held.get(&key).map(V::touch)
    }
    fn refresh(&self, held: &mut Self::Held<'_>) {
        held.refresh();
    }
    #[inline]
    fn write(&self, writes: &[Write], value: &V) {
        self.write_held(&self.0.pin(), writes, value);
    }
    #[inline]
    fn write_held(&self, pinned: &Self::Held<'_>, writes: &[Write], value: &V) {
        for w in writes {
            match *w {
                Write::Overwrite(k) => {
                    pinned.insert(k, value.clone());
                }
                Write::Reinsert(k) => {
                    pinned.remove(&k);
                    pinned.insert(k, value.clone());
                }
            }
        }
    }
    fn garbage(&self) -> Garbage {
        let s = self.0.stats();
        Garbage {
            objects: s.pending,
            bytes: s.pending_bytes,
            retired: s.values_retired + s.entries_retired + s.tables_retired,
            freed: s.freed,
        }
    }
    fn flush(&self) {
        self.0.flush();
    }
}

/// A publication scheme of SnapshotMap, as a subject.
pub trait Scheme: Publish + Default + 'static {
    const ID: &'static str;
    const SCHEME: &'static str;
}

impl Scheme for ArcSwapPublish {
    const ID: &'static str = "snapshotmap-arcswap";
    const SCHEME: &'static str = "arc-swap (reference-counted versions)";
}

impl Scheme for CrossbeamEpoch {
    const ID: &'static str = "snapshotmap-crossbeam";
    const SCHEME: &'static str =
        "crossbeam-epoch (a version's last reference dropped after the grace period)";
}

impl Scheme for Seize {
    const ID: &'static str = "snapshotmap-seize";
    const SCHEME: &'static str =
        "seize (a version's last reference dropped after the grace period)";
}

/// `SnapshotMap<u64, V, Hasher, P>` (versions published through the scheme
/// `P`): writes in batches, reads through `get` (fresh) or a held `Snapshot`.
pub struct SnapshotSubject<V, P: Publish>(SnapshotMap<u64, V, Hasher, P>);

impl<V: Value, P: Scheme> Subject<V> for SnapshotSubject<V, P> {
    type Held<'a> = Snapshot<u64, V, Hasher>;
    const ID: &'static str = P::ID;
    const SCHEME: &'static str = P::SCHEME;

    fn new() -> Self {
        SnapshotSubject(SnapshotMap::with_hasher_and_publish(
            Hasher::default(),
            P::default(),
        ))
    }
    fn write_batch(snapshot_batch: usize) -> usize {
        snapshot_batch
    }
    fn prefill(&self, n: usize, seed: u64, value: &V) {
        self.0.batch(|b| {
            b.reserve(n);
            for id in 0..n as u64 {
                b.insert(key(id, seed), value.clone());
            }
        });
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key).map(|v| v.touch())
    }
    fn hold(&self) -> Self::Held<'_> {
        self.0.snapshot()
    }
    #[inline]
    fn get_held(&self, held: &Self::Held<'_>, key: u64) -> Option<u64> {
        held.get(&key).map(V::touch)
    }
    fn refresh(&self, held: &mut Self::Held<'_>) {
        *held = self.0.snapshot();
    }
    fn write(&self, writes: &[Write], value: &V) {
        // One copy of the table and one publish for the whole batch.
        self.0.batch(|b| {
            for w in writes {
                match *w {
                    Write::Overwrite(k) => {
                        b.insert(k, value.clone());
                    }
                    Write::Reinsert(k) => {
                        b.remove(&k);
                        b.insert(k, value.clone());
                    }
                }
            }
        });
    }
    fn write_held(&self, _: &Self::Held<'_>, writes: &[Write], value: &V) {
        // A snapshot is read-only: writes go to the map.
        self.write(writes, value);
    }
    fn garbage(&self) -> Garbage {
        let s = self.0.stats();
        Garbage {
            objects: s.held,
            bytes: s.held_bytes,
            retired: s.retired,
            freed: s.freed,
        }
    }
    fn flush(&self) {
        self.0.flush();
    }
}

/// Receives each subject type in turn (see [`for_each`]).
pub trait Visit<V: Value> {
    /// Called once per subject type, in run order.
    fn visit<M: Subject<V> + 'static>(&mut self);
}

/// Every subject, in run order.
pub fn for_each<V: Value, T: Visit<V>>(v: &mut T) {
    v.visit::<SyncSubject<V, CrossbeamEpoch>>();
    v.visit::<SyncSubject<V, Seize>>();
    v.visit::<SnapshotSubject<V, ArcSwapPublish>>();
    v.visit::<SnapshotSubject<V, CrossbeamEpoch>>();
    v.visit::<SnapshotSubject<V, Seize>>();
}
