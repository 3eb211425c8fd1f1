//! Unit tests of the classic protocol.
//!
//! `v1/` holds the suite written for the classic protocol when it was `SyncMap`;
//! it is being ported to `ClassicSyncMap` (declared here file by file once it
//! compiles against it).
