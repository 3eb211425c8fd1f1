//! The `serde` feature: the maps serialize as maps (a JSON object, say) and
//! deserialize into a new map.
//!
//! One section per map type; each uses only the map's public API and its
//! crate-internal constructors.
//!
//! - [`SnapshotMap`] serializes its current version (one consistent version,
//!   held as a [`Snapshot`] while it is written out) and deserializes into a
//!   new map whose version 0 holds the entries (a later duplicate key wins).
//! - [`Snapshot`] serializes its version the same way. It has no
//!   `Deserialize`: a snapshot is a version *of* a map, so deserialize a
//!   `SnapshotMap` and take its [`snapshot`](SnapshotMap::snapshot).
//! - [`SyncMap`] serializes what an iteration sees (not a snapshot: with writers
//!   running, each key's value from some moment of the walk) and deserializes
//!   into a new map, promoted once at the end so every key is in its read table.

use core::hash::{BuildHasher, Hash};

use hashbrown::HashMap;
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};

use crate::reclaim::Reclaim;
use crate::{Snapshot, SnapshotMap, SyncMap};

// ---------------------------------------------------------------------------
// SnapshotMap and Snapshot
// ---------------------------------------------------------------------------

impl<K, V, S> Serialize for Snapshot<K, V, S>
where
    K: Serialize,
    V: Serialize,
{
    /// Serializes this version's entries as a map, in arbitrary order.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("level", "info");
    /// let snapshot = map.snapshot();
    /// map.insert("level", "debug");
    /// assert_eq!(serde_json::to_string(&snapshot).unwrap(), r#"{"level":"info"}"#);
    /// ```
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<K, V, S, P: crate::reclaim::Publish> Serialize for SnapshotMap<K, V, S, P>
where
    K: Serialize,
    V: Serialize,
{
    /// Serializes the current version's entries as a map, in arbitrary order.
    /// Writers may publish meanwhile: what is written is one version, taken at
    /// the call.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("timeout", 30);
    /// assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"timeout":30}"#);
    /// ```
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        self.snapshot().serialize(serializer)
    }
}

impl<'de, K, V, S> Deserialize<'de> for SnapshotMap<K, V, S>
where
    K: Deserialize<'de> + Hash + Eq,
    V: Deserialize<'de>,
    S: BuildHasher + Default,
{
    /// Deserializes a map into a new `SnapshotMap` whose version 0 holds its
    /// entries (nothing is published; a later duplicate key wins).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let config: SnapshotMap<String, u32> =
    ///     serde_json::from_str(r#"{"timeout": 30, "retries": 3}"#).unwrap();
    /// assert_eq!((config.get_cloned("retries"), config.version()), (Some(3), 0));
    /// ```
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        HashMap::<K, V, S>::deserialize(deserializer).map(SnapshotMap::from_hash_map)
    }
}

// ---------------------------------------------------------------------------
// SyncMap
// ---------------------------------------------------------------------------

impl<K, V, S, R> Serialize for SyncMap<K, V, S, R>
where
    K: Serialize + Hash + Eq + Clone + Send + 'static,
    V: Serialize + Clone + Send + 'static,
    S: BuildHasher,
    R: Reclaim,
{
    /// Serializes the live entries as a map, in arbitrary order, as
    /// [`Pinned::iter`](crate::Pinned::iter) walks them: not a snapshot (use a
    /// `SnapshotMap` for that).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.insert("timeout", 30);
    /// assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"timeout":30}"#);
    /// ```
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.collect_map(self.pin().iter())
    }
}

impl<'de, K, V, S, R> Deserialize<'de> for SyncMap<K, V, S, R>
where
    K: Deserialize<'de> + Hash + Eq + Clone + Send + 'static,
    V: Deserialize<'de> + Clone + Send + 'static,
    S: BuildHasher + Default,
    R: Reclaim,
{
    /// Deserializes a map into a new `SyncMap` (a later duplicate key wins),
    /// promoted once so that every key is in its read table.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SyncMap;
    ///
    /// let map: SyncMap<String, u32> = serde_json::from_str(r#"{"a": 1, "b": 2}"#).unwrap();
    /// assert_eq!((map.len(), map.get_cloned("b")), (2, Some(2)));
    /// ```
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = std::collections::HashMap::<K, V>::deserialize(deserializer)?;
        Ok(entries.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use crate::{Snapshot, SnapshotMap, SyncMap};

    #[test]
    fn a_sync_map_json_round_trip_gives_an_equal_map_in_its_read_table() {
        let map: SyncMap<String, Vec<u32>> = SyncMap::new();
        for i in 0..500u32 {
            map.insert(format!("key {i}"), vec![i, i * 2]);
        }
        map.remove("key 7");
        map.insert("key 8".to_string(), vec![]); // a cell, not inline
        let json = serde_json::to_string(&map).unwrap();
        let back: SyncMap<String, Vec<u32>> = serde_json::from_str(&json).unwrap();
        assert!(back == map);
        assert_eq!(back.len(), 499);
        assert_eq!(back.get_cloned("key 8"), Some(vec![]));
        // Promoted at the end: every read is served by the read table.
        let delta_reads = back.stats().delta_reads;
        for i in 0..500u32 {
            back.get_cloned(format!("key {i}").as_str());
        }
        assert_eq!(back.stats().delta_reads, delta_reads);
        // Built at its size: promoted once, never grown.
        let stats = back.stats();
        assert_eq!((stats.promotions, stats.delta_growths), (1, 0));
        let as_std: HashMap<String, Vec<u32>> = serde_json::from_str(&json).unwrap();
        assert_eq!(as_std.len(), 499);
        let empty: SyncMap<u8, u8> = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        assert!(serde_json::from_str::<SyncMap<u8, u8>>("[1]").is_err());
    }

    #[test]
    fn a_json_round_trip_gives_an_equal_map_at_version_zero() {
        let map: SnapshotMap<String, Vec<u32>> = SnapshotMap::new();
        map.insert("a \"quoted\" key".to_string(), vec![1, 2]);
        map.insert("é".to_string(), vec![]);
        map.insert("n".to_string(), vec![u32::MAX]);
        let json = serde_json::to_string(&map).unwrap();
        let back: SnapshotMap<String, Vec<u32>> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, map);
        assert_eq!((back.version(), back.stats().published), (0, 0));
        // The same entries as std's map would have written.
        let std: HashMap<String, Vec<u32>> = serde_json::from_str(&json).unwrap();
        assert_eq!(std.len(), 3);
        assert!(std
            .iter()
            .all(|(k, v)| map.get_cloned(k.as_str()).as_ref() == Some(v)));
    }

    #[test]
    fn integer_keys_and_another_hasher_round_trip() {
        type Fold = hashbrown::DefaultHashBuilder;
        let map: SnapshotMap<u64, i8, Fold> = (0..300).map(|i| (i, (i % 100) as i8)).collect();
        let json = serde_json::to_vec(&map).unwrap();
        let back: SnapshotMap<u64, i8, Fold> = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, map);
        assert_eq!(back.len(), 300);
    }

    #[test]
    fn a_snapshot_serializes_its_own_version() {
        let map = SnapshotMap::new();
        map.insert(1u8, "one");
        let old: Snapshot<u8, &str> = map.snapshot();
        map.insert(2, "two");
        let written: BTreeMap<u8, String> =
            serde_json::from_str(&serde_json::to_string(&old).unwrap()).unwrap();
        assert_eq!(written, BTreeMap::from([(1, "one".to_string())]));
        let now: SnapshotMap<u8, String> =
            serde_json::from_str(&serde_json::to_string(&map.snapshot()).unwrap()).unwrap();
        assert_eq!(now.len(), 2);
    }

    #[test]
    fn an_empty_map_is_an_empty_object_and_duplicates_keep_the_last() {
        let empty: SnapshotMap<String, u8> = SnapshotMap::new();
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
        let map: SnapshotMap<String, u8> = serde_json::from_str(r#"{"k":1,"k":2}"#).unwrap();
        assert_eq!((map.len(), map.get_cloned("k")), (1, Some(2)));
    }

    #[test]
    fn what_is_not_a_map_is_an_error() {
        for bad in ["[1, 2]", "3", r#"{"k": "not a number"}"#, r#"{"k": 1"#] {
            let parsed: Result<SnapshotMap<String, u8>, _> = serde_json::from_str(bad);
            assert!(parsed.is_err(), "{bad} parsed");
        }
    }
}
