//! Unit tests of [`SnapshotMap`](crate::SnapshotMap): one file per concept.
//!
//! The concurrent and process-wide tests (8 readers checking batch atomicity,
//! drop counting, the counting allocator) are integration targets:
//! `src/tests/snapshot_batches.rs` and `src/tests/snapshot_memory.rs`.

mod basics;
mod batch;
mod capacity;
mod conditional;
mod diff;
mod differential;
mod locks;
mod schemes;
mod traits;
mod watch;
