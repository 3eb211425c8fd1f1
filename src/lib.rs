//! Lock-free, read-mostly concurrent hash maps with epoch-based memory reclamation.
//!
//! Services keep hot, read-mostly state in memory — routing tables, configuration,
//! feature flags, session and symbol caches — where reads outnumber writes a
//! hundred to one and a read must never block. `readmostly` builds Go's
//! `sync.Map` design for that in Rust, and fixes what its users keep hitting.
//!
//! # Quick start
//!
//! ```
//! use readmostly::SyncMap;
//! use std::sync::Arc;
//! use std::thread;
//!
//! let flags = Arc::new(SyncMap::new());
//! flags.insert("new-checkout", true);
//!
//! let reader = {
//!     let flags = Arc::clone(&flags);
//!     thread::spawn(move || flags.get_cloned("new-checkout"))
//! };
//! assert_eq!(reader.join().unwrap(), Some(true));
//!
//! // Hold a guard to read without cloning; references live as long as it does.
//! let pinned = flags.pin();
//! if let Some(enabled) = pinned.get("new-checkout") {
//!     assert!(*enabled);
//! }
//! ```
//!
//! # Choosing a map
//!
//! | you have | use | because |
//! |---|---|---|
//! | a mostly stable key set, values updated in place (caches, sessions, symbol tables) | [`SyncMap`] | no read ever locks; updates and removes are one CAS per key; new keys append to a lock-free delta under a writer mutex |
//! | a table reloaded or edited as a whole, readers needing one consistent version (routing, config) | [`SnapshotMap`] | every read and iteration sees one version; batches publish atomically |
//! | frequent inserts of new keys, or writes as common as reads | `dashmap`, `papaya`, or `RwLock<HashMap>` | `SyncMap`'s new keys serialize on one writer mutex, and a read costs one more dependent load than an inline table (`docs/performance.md`) |
//! | a few threads and no measured contention | `RwLock<HashMap>` | simplest; a read lock is two atomic RMWs on one shared cache line, which only hurts under many cores |
//!
//! # How `SyncMap` works
//!
//! One atomically published *root* holds an immutable **read** table and a
//! **delta**: a lock-free, insert-only table of the keys added since the last
//! promotion. A lookup loads the root and probes the read table, then the delta —
//! no lock, whatever the outcome. Both tables point to shared entries; each entry
//! holds its value behind an atomic pointer, so updating or removing an existing
//! key is a compare-and-swap on that entry. New keys take a writer mutex and
//! append to the delta. A *promotion* merges read table and delta into a fresh read
//! table, dropping removed keys, when delta-served reads reach four per key of
//! the map, when the delta is full and holds half as many keys, when removed keys
//! reach half of the map, or on [`SyncMap::promote`]. Go's protocol exactly — a
//! locked dirty table and a misses counter — is kept as
//! [`classic::ClassicSyncMap`] for comparison. The full protocols, their
//! invariants and the argument for each memory ordering are in `docs/design.md`.
//!
//! # Memory reclamation
//!
//! A value overwritten or removed, or a read table replaced, may still be in use
//! by a reader that loaded it a moment before. Such objects are *retired* to a
//! reclamation scheme ([`reclaim`]) and freed once no reader can hold them. The
//! default scheme is crossbeam-epoch. [`SyncMap::stats`] counts what was retired
//! and what is still waiting, in objects and bytes.
//!
//! Unlike Go's `sync.Map`, memory of removed keys comes back by itself: once
//! removed keys make up half of the map, the next promotion drops them.
//!
//! # Consistency
//!
//! Operations on one key are linearizable: once `insert` returns, every `get` of
//! that key that happens after it (on any thread) sees the value or a newer one. Operations on
//! different keys are independent — there is no multi-key atomicity, and iteration
//! is not a snapshot. `len` is exact when no writer is running.
//!
//! # Optional features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `crossbeam-epoch` | on | the default reclamation backend, [`reclaim::CrossbeamEpoch`] |
//! | `serde` | off | `Serialize` for [`SnapshotMap`] (its current version) and [`Snapshot`], as a map; `Deserialize` for [`SnapshotMap`], into a new map whose version 0 holds the entries |
//! | `rayon` | off | parallel iteration over a [`Snapshot`]: `snapshot.par_iter()` (rayon's `IntoParallelRefIterator`), yielding `(&K, &V)` through `SnapshotParIter` |
//!
//! ```toml
//! [dependencies]
//! readmostly = { version = "0.1", features = ["serde", "rayon"] }
//! ```
//!
//! Both are optional dependencies: without the features, neither crate is built.
//! The minimum supported Rust version (`rust-version` in `Cargo.toml`) covers
//! every feature; CI checks it against what each dependency declares.
//!
//! # Guards and async code
//!
//! [`SyncMap::pin`] returns a [`Pinned`] handle that keeps references valid. It is
//! not `Send`; in async code, finish with it before an `.await`, or use the
//! guard-free methods that return owned values ([`SyncMap::get_cloned`],
//! [`SyncMap::insert`], [`SyncMap::remove`]).
//!
//! # Beyond one process: an etcd replica (feature `etcd`)
//!
//! With the `etcd` feature, `readmostly::replica::Replica` keeps a [`SnapshotMap`]
//! equal to one key prefix of an etcd cluster, so a fleet of processes serves a
//! shared routing or config table from memory. It reads the prefix at one revision
//! and follows etcd's watch: each etcd revision — a put, a delete, a multi-key
//! transaction — becomes one version, so readers never see half of one, and each
//! version is paired with the revision it reflects. A dropped connection resumes
//! after the last applied revision; a compaction past it makes the replica re-read
//! the prefix and publish it whole. Replicas agree only eventually: at one instant
//! two may be at different revisions. The module's docs state the guarantees
//! exactly. Without the feature, nothing of it (nor its dependencies) is built.
#![deny(missing_docs, unsafe_op_in_unsafe_fn, rustdoc::broken_intra_doc_links)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod classic;
#[cfg(feature = "rayon")]
mod rayon_impls;
pub mod reclaim;
#[cfg(feature = "etcd")]
pub mod replica;
#[cfg(feature = "serde")]
mod serde_impls;
mod snapshot_map;
mod stats;
mod sync;
mod sync_map;
#[cfg(test)]
mod test_support;

#[cfg(feature = "rayon")]
pub use rayon_impls::SnapshotParIter;
pub use snapshot_map::{
    Batch, Change, Changed, Diff, Snapshot, SnapshotCompareExchangeError, SnapshotIntoIter,
    SnapshotIter, SnapshotMap, SnapshotRef, SnapshotStats, Watcher,
};
pub use stats::Stats;
pub use sync_map::{CompareExchangeError, Iter, LoadOrStore, Pinned, SyncMap};
