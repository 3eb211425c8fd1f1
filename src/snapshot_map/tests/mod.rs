//! Unit tests of SnapshotMap.
