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
//! | a mostly stable key set, values updated in place (caches, sessions, symbol tables) | [`SyncMap`] | no read ever locks, and a hit reads what a `HashMap` hit reads; updates, removes and new keys are one CAS each (new keys go into a delta until the next promotion); the writer lock only grows or promotes. `K` and `V` must be `Clone`: the read table holds them inline, so each promotion clones every live key and value once, under the writer lock |
//! | a table reloaded or edited as a whole, readers needing one consistent version (routing, config) | [`SnapshotMap`] | every read and iteration sees one version; batches publish atomically |
//! | frequent inserts of new keys, or writes as common as reads | `dashmap`, `papaya`, or `RwLock<HashMap>` | `SyncMap`'s promotions copy the map, and each overwrite allocates a cell (`docs/performance.md`) |
//! | a few threads and no measured contention | `RwLock<HashMap>` | simplest; a read lock is two atomic RMWs on one shared cache line, which only hurts under many cores |
//!
//! # How `SyncMap` works
//!
//! One atomically published *root* holds the **read table** and a **delta**. The
//! read table is a `hashbrown` table whose buckets hold each key with the value it
//! had at the last promotion — the bytes a `HashMap` would hold — and, beside the
//! buckets, one atomic *link* per key and one *touched* bit per key. The delta is
//! a lock-free, insert-only table of the keys added since the last promotion.
//!
//! A lookup loads the root, probes the read table and checks the key's bit: a key
//! not written since the last promotion is answered from its bucket. A key
//! written since has its bit set, and its link says where the value is now (in a
//! heap *cell*, or nowhere: removed). A key the read table lacks is looked up in
//! the delta. No lock, whatever the outcome.
//!
//! A write to a key the root holds — overwrite, update, compare-and-swap, remove,
//! or re-insert of a removed key — is one compare-and-swap on its link. A new key
//! is added to the delta with one compare-and-swap on an empty bucket; it takes
//! the writer mutex only to grow or promote a full delta, to wait for a growth
//! or promotion in progress, or to run a promotion a reader asked for.
//! A *promotion* copies every live
//! key into a fresh read table — values inline again, removed keys left out — by
//! *sealing* each link first, so that a write racing the copy either lands before
//! the seal (and is copied) or fails and is retried in the new table. That copy
//! **clones** keys and values (readers of the old table may still hold
//! references into it), hence `K: Clone` and `V: Clone`. Go's protocol — a
//! locked dirty table and a misses counter, plus a compaction that gives
//! removed keys' memory back — is kept as [`classic::ClassicSyncMap`] for
//! comparison. The full protocols, their
//! invariants and the argument for each memory ordering are in `docs/design.md`.
//!
//! # When `SyncMap` promotes
//!
//! A promotion costs O(n) for n keys, so each trigger fires only after Ω(n)
//! operations have paid for it, which keeps every operation amortized O(1):
//!
//! 1. **Reads off the inline path.** A read served by the delta, or through a
//!    cell, costs a probe or a dependent load more than an inline hit. One such
//!    read in 16 per thread is counted; once they add up to two delta reads or
//!    sixteen cell reads per key of the map (never below 64 keys' worth), the
//!    reader that sees it promotes if the writer lock is free — it only *tries*
//!    the lock, a read never waits — and otherwise leaves it to the next writer.
//!    A map filled by single inserts and then only read thus reaches the inline
//!    read path with no writer at all, after 2n reads served by the delta for
//!    n keys: about two reads per key when every key waits there (a map filled
//!    after `with_capacity`), and in general 2n/d passes over the keys when d
//!    of them do (the fill's own promotions took in the rest). A small delta
//!    costs little to keep, so it takes that long to be worth a copy of all n.
//! 2. **A full delta.** A new key that finds the delta full promotes instead of
//!    growing it once the delta holds half as many keys as the read table (and at
//!    least 64).
//! 3. **Removed keys.** A remove that brings removed keys to half of the keys
//!    the map's tables hold (live and removed) promotes (a compaction): their
//!    memory comes back by itself.
//! 4. [`SyncMap::promote`] (or [`SyncMap::shrink_to_fit`]), on request.
//!
//! A promotion the map starts by itself contains a panic of user `Clone` or
//! `Hash`: nothing is published, the triggers start over, and the operation
//! that started it completes. `promote()` propagates it.
//!
//! # Memory reclamation
//!
//! A value overwritten or removed, or a read table replaced, may still be in use
//! by a reader that loaded it a moment before. Such objects are *retired* to a
//! reclamation scheme ([`reclaim`]) and freed once no reader can hold them. The
//! default scheme is crossbeam-epoch; the `seize` feature adds a second one.
//! Replaced and removed values held in cells (a key written since the last
//! promotion) go to the scheme in batches of 16 per ledger shard (8 a map;
//! each thread retires into one), so up to 15 of a shard's retired values wait
//! for the next retirement into that shard, a [`SyncMap::flush`] or the map's
//! drop; tables and roots go one by one. A value still inline in its table (a
//! key's value as the last promotion left it, or a new key's first value) is
//! not retired on its own: it goes with that table, after the next promotion. A map keeps the memory of the
//! value cells it frees for its next values, which spares an overwrite two
//! trips to the allocator. A map has 8 such pools, which its writing threads
//! share round-robin (a thread uses one); each keeps up to 1,024 cells or
//! 64 KiB, whichever is less, plus one cell set aside, and none at all for
//! values over 4 KiB. [`Stats::spare_cells`] counts them; [`SyncMap::flush`]
//! and the map's drop give them back.
//! [`SyncMap::stats`] counts what was retired
//! and what is still waiting, in objects and bytes. A map owns what it retired
//! until it is freed: dropping the map frees all of it at once, whatever guards
//! other threads hold on other maps.
//!
//! Unlike Go's `sync.Map`, memory of removed keys comes back by itself: the
//! promotion that removed keys trigger (rule 3 of [When `SyncMap`
//! promotes](#when-syncmap-promotes)) drops them (apart from the spare cells
//! above, which wait for a flush or the drop).
//!
//! # Consistency
//!
//! Operations on one key are linearizable: once `insert` returns, every `get` of
//! that key that happens after it (on any thread) sees the value or a newer one.
//! Operations on different keys are independent — there is no multi-key
//! atomicity, and iteration is not a snapshot (each key present throughout is
//! seen once, with a value it had at some moment of the iteration). `len` is
//! exact when no insert or remove is in flight. For consistent versions and
//! multi-key batches, use [`SnapshotMap`].
//!
//! # Optional features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `crossbeam-epoch` | on | the default reclamation backend, `reclaim::CrossbeamEpoch` |
//! | `seize` | off | a second backend, `reclaim::Seize` (Hyaline, one collector per map); the default when `crossbeam-epoch` is off (`default-features = false, features = ["seize"]`) |
//! | `serde` | off | `Serialize` for [`SnapshotMap`] (its current version), [`Snapshot`] and [`SyncMap`] (what an iteration sees), as a map; `Deserialize` for [`SnapshotMap`] (version 0 holds the entries) and [`SyncMap`] (promoted once) |
//! | `rayon` | off | parallel iteration over a [`Snapshot`] (`snapshot.par_iter()`, rayon's `IntoParallelRefIterator`, through `SnapshotParIter`) and over a pinned [`SyncMap`] (`pinned.par_iter()`) |
//! | `etcd` | off | `replica::Replica`, a [`SnapshotMap`] mirroring an etcd key prefix (below) |
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
//! [`SyncMap::pin`] returns a [`Pinned`] handle that keeps references valid. It
//! pins the reclamation scheme for the current thread, so it is not `Send`. In
//! async code, use [`SyncMap::pin_owned`] on a map in an `Arc`: the
//! [`OwnedPinned`] it returns is `Send + Sync + 'static` and can be held across
//! `.await` (it protects its reads with a hold on the map's own ledger instead of
//! a thread pin), or the guard-free methods that return owned values
//! ([`SyncMap::get_cloned`], [`SyncMap::insert`], [`SyncMap::remove`], …).
//!
//! ```
//! use readmostly::SyncMap;
//! use std::sync::Arc;
//!
//! # let runtime = tokio::runtime::Builder::new_multi_thread().build().unwrap();
//! # runtime.block_on(async {
//! let routes = Arc::new(SyncMap::new());
//! routes.insert("/".to_string(), "index".to_string());
//! let task = tokio::spawn({
//!     let routes = Arc::clone(&routes);
//!     async move {
//!         let pinned = routes.pin_owned();
//!         let page = pinned.get("/").unwrap(); // a reference...
//!         tokio::task::yield_now().await; // ...held across an await
//!         page.len()
//!     }
//! });
//! assert_eq!(task.await.unwrap(), 5);
//! # });
//! ```
//!
//! # Beyond one process: an etcd replica (feature `etcd`)
//!
//! With the `etcd` feature, `readmostly::replica::Replica` keeps a [`SnapshotMap`]
//! equal to one key prefix of an etcd cluster, so a fleet of processes serves a
//! shared routing or config table from memory. It reads the prefix at one revision
//! and follows etcd's watch: each etcd revision — a put, a delete, a multi-key
//! transaction — becomes at most one version (none if every value it wrote
//! failed to decode), so readers never see half of one, and each version is
//! paired with the revision it reflects. A dropped connection resumes
//! after the last applied revision; a compaction past it makes the replica re-read
//! the prefix and publish it whole. Replicas agree only eventually: at one instant
//! two may be at different revisions. The module's docs state the guarantees
//! exactly. Without the feature, nothing of it (nor its dependencies) is built.
#![deny(missing_docs, unsafe_op_in_unsafe_fn, rustdoc::broken_intra_doc_links)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(doctest)]
mod auto_traits;
pub mod classic;
mod raw;
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
pub use sync_map::{CompareExchangeError, Iter, LoadOrStore, OwnedPinned, Pinned, SyncMap};
