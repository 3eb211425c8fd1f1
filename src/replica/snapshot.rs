//! [`ReplicaSnapshot`]: one version of the replicated map and the etcd
//! revision it reflects, as a pair no reader can tear.

use core::fmt;
use core::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;

use crate::Snapshot;

/// One version of a [`Replica`](super::Replica)'s map together with the etcd
/// revision it reflects: its entries are exactly the keys under the prefix at
/// that revision (less keys that are not UTF-8 or never decoded, and with the
/// last good value of keys whose newest value did not decode — see
/// [`ReplicaError`](super::ReplicaError)).
///
/// The replica publishes the pair after each version it applies, so the two
/// always belong together. Dereferences to the [`Snapshot`], so lookups and
/// iteration work on it directly.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use readmostly::replica::Replica;
///
/// let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
/// let replica = Replica::start(client, "/config/").await?;
/// let snapshot = replica.snapshot();
/// println!("{} keys at etcd revision {}", snapshot.len(), snapshot.revision());
/// if let Some(value) = snapshot.get("timeout") {
///     println!("timeout = {:?}", value);
/// }
/// # Ok(())
/// # }
/// ```
pub struct ReplicaSnapshot<V = Bytes> {
    snapshot: Snapshot<Arc<str>, V>,
    revision: i64,
}

impl<V> ReplicaSnapshot<V> {
    pub(crate) fn new(snapshot: Snapshot<Arc<str>, V>, revision: i64) -> Self {
        ReplicaSnapshot { snapshot, revision }
    }

    /// The etcd revision this version reflects: the revision of the last
    /// change under the prefix that it contains, or etcd's revision at the read
    /// of the whole prefix it was built from (at start, or after a compaction).
    /// Writes elsewhere in etcd raise etcd's revision without changing this one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let replica = Replica::start(client.clone(), "/config/").await?;
    /// let put = client.put("/config/timeout", "30", None).await?;
    /// let written = put.header().map_or(0, |h| h.revision());
    /// let snapshot = replica.wait_for_revision(written).await?;
    /// assert!(snapshot.revision() >= written);
    /// # Ok(())
    /// # }
    /// ```
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The map version (a [`Snapshot`]) of this pair.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let replica = Replica::start(client, "/config/").await?;
    /// let pair = replica.snapshot();
    /// assert!(pair.snapshot().version() <= replica.map().version());
    /// # Ok(())
    /// # }
    /// ```
    pub fn snapshot(&self) -> &Snapshot<Arc<str>, V> {
        &self.snapshot
    }

    /// The map version, without the revision.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let replica = Replica::start(client, "/config/").await?;
    /// let snapshot = replica.snapshot().into_snapshot();
    /// for (key, value) in &snapshot {
    ///     println!("{key} = {value:?}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_snapshot(self) -> Snapshot<Arc<str>, V> {
        self.snapshot
    }
}

impl<V> Deref for ReplicaSnapshot<V> {
    type Target = Snapshot<Arc<str>, V>;

    fn deref(&self) -> &Self::Target {
        &self.snapshot
    }
}

impl<V> Clone for ReplicaSnapshot<V> {
    fn clone(&self) -> Self {
        ReplicaSnapshot {
            snapshot: self.snapshot.clone(),
            revision: self.revision,
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for ReplicaSnapshot<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaSnapshot")
            .field("revision", &self.revision)
            .field("version", &self.snapshot.version())
            .field("entries", &self.snapshot)
            .finish()
    }
}
