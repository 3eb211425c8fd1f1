//! `SnapshotMap`'s place in the lab.
//!
//! TODO(lead): `readmostly::SnapshotMap` was not exported when the lab was written.
//! Once it is, replace `visit` below with the adapter (sketch at the end of this
//! file) and it runs in every workload, with `batch` as one published batch.
//! Nothing else in the lab changes.

use crate::keys::{LabHasher, LabKey};
use crate::maps::Visit;

/// Visits the `SnapshotMap` adapter (nothing yet; see the module docs).
pub fn visit<K: LabKey, S: LabHasher, V: Visit<K, S>>(_v: &mut V) {}
