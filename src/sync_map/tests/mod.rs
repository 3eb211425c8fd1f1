//! Unit tests of the SyncMap protocol (being written).
