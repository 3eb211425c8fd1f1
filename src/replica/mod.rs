//! A [`SnapshotMap`](crate::SnapshotMap) that mirrors one key prefix of an
//! etcd cluster (feature `etcd`).
//!
//! A fleet of processes shares a routing or config table whose source of truth
//! is etcd; each process serves reads from its own in-memory copy, which must
//! never show a half-applied change. [`Replica::start`] reads the prefix,
//! publishes it, and follows it with an etcd watch on a Tokio task; the map is
//! read like any `SnapshotMap`, without touching the network.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use readmostly::replica::Replica;
//!
//! let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
//! let routes = Replica::start(client, "/routes/").await?;
//! // Served from memory: the etcd key "/routes/api" is the map key "api".
//! let backend = routes.map().get_cloned("api");
//! // A version and the etcd revision it reflects, read together.
//! let snapshot = routes.snapshot();
//! println!("{} routes at revision {}", snapshot.len(), snapshot.revision());
//! routes.shutdown().await;
//! # let _ = backend;
//! # Ok(())
//! # }
//! ```
//!
//! # What a replica guarantees
//!
//! * **Whole revisions.** Each etcd revision under the prefix — one put, one
//!   delete (a range delete too), one transaction over many keys — is applied
//!   as one [`batch`](crate::SnapshotMap::batch): readers see all of it or
//!   none of it. A revision is applied only once all of its events have
//!   arrived, however etcd splits its watch responses.
//! * **Order.** Revisions are applied in etcd's order, each once. The map's
//!   version and the replica's revision only grow; a version never goes back
//!   to an older state.
//! * **Versions and revisions, paired.** [`Replica::snapshot`] returns a
//!   version together with the revision it reflects, from one atomic load: its
//!   entries are exactly the prefix at that revision (decode failures aside,
//!   below). The pair is published right after the version, so it can trail
//!   [`Replica::map`]'s newest version by the one being published at that
//!   instant; it never pairs a version with another version's revision.
//!   (`map().version()` and [`revision`](Replica::revision) read one after the
//!   other carry no such promise.)
//! * **Start.** [`start`](Replica::start) reads the whole prefix at one
//!   revision (in one request, or in [pages](ReplicaBuilder::page_size) all
//!   read at that revision) and publishes it as one version before it returns;
//!   the watch starts at the next revision.
//! * **Disconnects.** When the connection drops or etcd restarts, the map keeps
//!   serving its last version, and the replica retries with backoff and
//!   resumes the watch right after the last revision it applied: nothing is
//!   lost, nothing is applied twice. A connection that dies silently (no reset
//!   reaches the client) is noticed only through HTTP/2 keep-alive: enable it on
//!   the client (`etcd_client::ConnectOptions::with_keep_alive`).
//! * **Compaction.** If the revisions it needs to resume were compacted away,
//!   it re-reads the whole prefix at the current revision and publishes it as
//!   one version ([`replace_all`](crate::SnapshotMap::replace_all)): readers
//!   jump from the old state to the new one without the revisions between.
//! * **Decode errors** are reported to the error handler, never fatal: the key
//!   keeps the last good value the replica saw (a key that never decoded
//!   stays absent; a re-read after a compaction sees only the current value),
//!   and its next good value or its delete applies as usual. Keys that are not
//!   UTF-8 are reported where they are written and left out (their deletes
//!   have nothing to remove and are skipped silently). See [`ReplicaError`].
//! * **Watchers.** The replica publishes one version per applied revision
//!   that changed the map and one per re-read;
//!   [`map().watch()`](crate::SnapshotMap::watch) wakes with the newest, and
//!   may skip versions published in quick succession. (A revision whose only
//!   changes failed to decode publishes no version; the replica's revision
//!   still advances.) To wait for the next pair rather than the next version,
//!   use
//!   [`wait_for_revision(pair.revision() + 1)`](Replica::wait_for_revision).
//!
//! # What it does not guarantee
//!
//! * **Replicas agree only eventually.** Two replicas of one prefix, in one
//!   process or many, may be at different revisions at the same instant. Each
//!   converges to etcd's contents once it is connected and writes pause;
//!   compare [`revision`](Replica::revision)s to tell which is newer.
//! * **Freshness.** A replica trails etcd by the watch's delay, and by as long
//!   as it stays disconnected. To read your own write, pass the revision the
//!   write returned to [`wait_for_revision`](Replica::wait_for_revision).
//! * **Revisions elsewhere.** The replica's revision is that of the last change
//!   *under the prefix* it applied (or etcd's revision at its last full read);
//!   writes to other keys raise etcd's revision, not this one.
//! * **Cheap large prefixes under heavy writes.** Each applied revision copies
//!   the map's table (a `SnapshotMap` publish is O(keys)): a replica of a large
//!   prefix that changes many times a second pays that copy each time, and
//!   catching up after a long disconnect replays every revision it missed.
//! * **Local writes.** The replica is the map's only writer. Writing to
//!   [`Replica::map`] yourself sends nothing to etcd, is overwritten when etcd
//!   next changes those keys, and voids the pairing of versions and revisions.

mod apply;
mod config;
mod decode;
mod error;
mod group;
mod snapshot;
mod stats;
mod sync;

#[cfg(test)]
mod tests;

use core::fmt;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The default value type: etcd's bytes, reference-counted (re-exported from
/// the `bytes` crate, so you need not depend on it).
pub use bytes::Bytes;
/// The etcd client the replica uses (re-exported, so your client and the
/// replica's are the same version).
pub use etcd_client;

pub use apply::ReplicaMap;
pub use config::ReplicaBuilder;
pub use error::{BoxError, ReplicaError};
pub use snapshot::ReplicaSnapshot;
pub use stats::ReplicaStats;

use apply::Shared;

/// A [`SnapshotMap`](crate::SnapshotMap) kept equal to one etcd key prefix by
/// a background task; see the [module docs](self) for what it guarantees.
///
/// Dropping it stops the task at its next await (the map stays readable
/// through any `Arc` you cloned from [`map`](Replica::map));
/// [`shutdown`](Replica::shutdown) stops it and waits until it has. Either way
/// the watch stream to etcd is closed.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use readmostly::replica::Replica;
///
/// let mut client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
/// let flags = Replica::start(client.clone(), "/flags/").await?;
///
/// let put = client.put("/flags/dark-mode", "on", None).await?;
/// let revision = put.header().map_or(0, |h| h.revision());
/// let snapshot = flags.wait_for_revision(revision).await?;
/// assert_eq!(snapshot.get("dark-mode").map(|v| &v[..]), Some(&b"on"[..]));
/// flags.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct Replica<V = Bytes> {
    shared: Arc<Shared<V>>,
    revisions: watch::Receiver<i64>,
    prefix: String,
    /// Dropping it tells the task to stop.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Replica<Bytes> {
    /// A [`ReplicaBuilder`] for `prefix`: set a decode function, an error
    /// handler or retry times, then [`start`](ReplicaBuilder::start).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::replica::Replica;
    ///
    /// let builder = Replica::builder("/routes/").page_size(500);
    /// assert_eq!(builder.prefix(), "/routes/");
    /// ```
    pub fn builder(prefix: impl Into<String>) -> ReplicaBuilder<Bytes> {
        ReplicaBuilder::new(prefix)
    }

    /// Starts a replica of `prefix` with the defaults: values as bytes,
    /// errors printed to stderr. Same as `Replica::builder(prefix).start(client)`.
    ///
    /// # Errors
    ///
    /// [`ReplicaError::Etcd`] if the first read of the prefix fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
    /// let config = Replica::start(client, "/config/").await?;
    /// let timeout = config.map().get_cloned("timeout");
    /// # let _ = timeout;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(
        client: etcd_client::Client,
        prefix: impl Into<String>,
    ) -> Result<Self, ReplicaError> {
        ReplicaBuilder::new(prefix).start(client).await
    }
}

impl<V> Replica<V> {
    pub(crate) fn new(
        shared: Arc<Shared<V>>,
        revisions: watch::Receiver<i64>,
        prefix: String,
        stop: oneshot::Sender<()>,
        task: JoinHandle<()>,
    ) -> Self {
        Replica {
            shared,
            revisions,
            prefix,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The replicated map: keys are the etcd keys without the prefix. Read it
    /// like any [`SnapshotMap`](crate::SnapshotMap) — `get`, `snapshot`,
    /// `watch` — and clone the `Arc` to keep it past the replica. Do not write
    /// to it: the replica is its only writer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let routes = Replica::start(client, "/routes/").await?;
    /// let mut watcher = routes.map().watch();
    /// let next = watcher.changed().await; // the next applied revision
    /// println!("version {}: {} routes", next.version(), next.len());
    /// # Ok(())
    /// # }
    /// ```
    pub fn map(&self) -> &Arc<ReplicaMap<V>> {
        &self.shared.map
    }

    /// The newest published version together with the etcd revision it
    /// reflects, read in one atomic load (no lock; one reference-count
    /// increment).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let routes = Replica::start(client, "/routes/").await?;
    /// let snapshot = routes.snapshot();
    /// for (path, backend) in snapshot.iter() {
    ///     println!("{path} -> {backend:?} (revision {})", snapshot.revision());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn snapshot(&self) -> ReplicaSnapshot<V> {
        (**self.shared.latest.load()).clone()
    }

    /// The etcd revision of the newest published pair (see
    /// [`ReplicaSnapshot::revision`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let routes = Replica::start(client, "/routes/").await?;
    /// assert!(routes.revision() > 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn revision(&self) -> i64 {
        self.shared.latest.load().revision()
    }

    /// The prefix this replica mirrors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let routes = Replica::start(client, "/routes/").await?;
    /// assert_eq!(routes.prefix(), "/routes/");
    /// # Ok(())
    /// # }
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What the replica has done so far: revisions applied, re-reads,
    /// reconnects, decode errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let routes = Replica::start(client, "/routes/").await?;
    /// let stats = routes.stats();
    /// println!("{} revisions, {} reconnects", stats.revisions, stats.reconnects);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> ReplicaStats {
        self.shared.counters.read()
    }

    /// Waits until the replica reflects etcd revision `revision` or a later
    /// one, and returns that pair — read-your-writes for a write whose
    /// response gave `revision`.
    ///
    /// The replica's revision advances with changes under the prefix (and jumps
    /// to etcd's current revision on a re-read after compaction): for a
    /// revision made by a write elsewhere, this waits until a later change
    /// under the prefix. Wrap it in `tokio::time::timeout` to bound the wait.
    ///
    /// # Errors
    ///
    /// [`ReplicaError::Stopped`] if the replica's task ends first.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let routes = Replica::start(client.clone(), "/routes/").await?;
    /// let put = client.put("/routes/api", "10.0.0.7:8080", None).await?;
    /// let revision = put.header().map_or(0, |h| h.revision());
    /// let snapshot = routes.wait_for_revision(revision).await?;
    /// assert!(snapshot.get("api").is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_revision(
        &self,
        revision: i64,
    ) -> Result<ReplicaSnapshot<V>, ReplicaError> {
        let mut revisions = self.revisions.clone();
        let reached = revisions
            .wait_for(|applied| *applied >= revision)
            .await
            .is_ok();
        let latest = self.snapshot();
        if reached || latest.revision() >= revision {
            Ok(latest)
        } else {
            Err(ReplicaError::Stopped)
        }
    }

    /// Stops the task and waits until it has ended: the watch stream is closed
    /// and the map will not change again (it stays readable through any `Arc`
    /// cloned from [`map`](Replica::map)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let routes = Replica::start(client, "/routes/").await?;
    /// let map = routes.map().clone();
    /// routes.shutdown().await;
    /// println!("frozen at version {}", map.version());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
    }
}

impl<V> Drop for Replica<V> {
    fn drop(&mut self) {
        // Dropping the sender wakes the task, which drops its watch and ends.
        drop(self.stop.take());
    }
}

impl<V> fmt::Debug for Replica<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("prefix", &self.prefix)
            .field("revision", &self.revision())
            .field("version", &self.shared.map.version())
            .finish_non_exhaustive()
    }
}
