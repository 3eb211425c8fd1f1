//! Writing etcd's state into the map: one batch per revision, one
//! `replace_all` per read of the whole prefix, and after each the
//! (version, revision) pair readers take.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::decode::Decoder;
use super::error::{BoxError, ReplicaError};
use super::group::Revision;
use super::snapshot::ReplicaSnapshot;
use super::stats::Counters;
use super::sync::ReadEntry;
use crate::SnapshotMap;

/// The map a [`Replica`](super::Replica) fills: the etcd keys without the
/// prefix, as shared strings (a lookup takes a `&str`), and decoded values.
///
/// # Examples
///
/// ```
/// use readmostly::replica::{Bytes, ReplicaMap};
/// use std::sync::Arc;
///
/// // What `Replica::map` returns, read like any SnapshotMap.
/// fn backend(routes: &ReplicaMap<Bytes>, path: &str) -> Option<Bytes> {
///     routes.get_cloned(path)
/// }
/// let routes: ReplicaMap<Bytes> = ReplicaMap::new();
/// routes.insert(Arc::from("api"), Bytes::from_static(b"10.0.0.7:8080"));
/// assert_eq!(backend(&routes, "api").as_deref(), Some(&b"10.0.0.7:8080"[..]));
/// ```
pub type ReplicaMap<V> = SnapshotMap<Arc<str>, V>;

/// A user error handler.
pub(crate) type ErrorHandler = Arc<dyn Fn(&ReplicaError) + Send + Sync>;

/// What the handle and the sync task share.
pub(crate) struct Shared<V> {
    pub(crate) map: Arc<ReplicaMap<V>>,
    /// The last version the task published and the revision it reflects,
    /// replaced as one pointer after each publish.
    pub(crate) latest: ArcSwap<ReplicaSnapshot<V>>,
    pub(crate) counters: Counters,
}

impl<V> Shared<V> {
    pub(crate) fn new() -> Self {
        let map = Arc::new(SnapshotMap::new());
        let latest = ArcSwap::from_pointee(ReplicaSnapshot::new(map.snapshot(), 0));
        Shared {
            map,
            latest,
            counters: Counters::default(),
        }
    }
}

/// One key's part of a revision, decoded before the batch opens so that no
/// user code runs under the map's writer lock.
enum Op<V> {
    Insert(V),
    Remove,
    Failed(BoxError),
}

/// The only writer of a replica's map. Owned by the sync task (and by `start`
/// for the first read).
pub(crate) struct Publisher<V> {
    shared: Arc<Shared<V>>,
    decoder: Decoder<V>,
    on_error: ErrorHandler,
    revisions: watch::Sender<i64>,
    /// The etcd revision the map reflects: every change up to it is applied.
    applied: i64,
}

impl<V: Clone> Publisher<V> {
    pub(crate) fn new(
        shared: Arc<Shared<V>>,
        decoder: Decoder<V>,
        on_error: ErrorHandler,
        revisions: watch::Sender<i64>,
    ) -> Self {
        Publisher {
            shared,
            decoder,
            on_error,
            revisions,
            applied: 0,
        }
    }

    pub(crate) fn prefix(&self) -> &[u8] {
        self.decoder.prefix()
    }

    pub(crate) fn applied(&self) -> i64 {
        self.applied
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Publishes the prefix as read at `revision` as one version, replacing
    /// everything. A key whose value does not decode keeps the value the map
    /// had for it, if it had one and the key was not deleted since (created
    /// at or before the applied revision): what following every revision
    /// would have left.
    pub(crate) fn publish_whole(&mut self, revision: i64, entries: Vec<ReadEntry>) {
        let mut errors = Vec::new();
        let mut table = Vec::with_capacity(entries.len());
        let previous = self.shared.map.snapshot();
        for entry in entries {
            let key = match self.decoder.key(&entry.key, entry.mod_revision) {
                Ok(key) => key,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            match self.decoder.value(&key, &entry.value) {
                Ok(value) => table.push((key, value)),
                Err(source) => {
                    // A key created after the applied revision was deleted
                    // since the value the map holds: that value is gone.
                    let same_key = entry.create_revision <= self.applied;
                    let kept = previous.get(&*key).filter(|_| same_key).cloned();
                    errors.push(ReplicaError::Decode {
                        key: Arc::clone(&key),
                        revision: entry.mod_revision,
                        kept_previous: kept.is_some(),
                        source,
                    });
                    table.extend(kept.map(|value| (key, value)));
                }
            }
        }
        // Let the old version go with the `replace_all` below, not after it.
        drop(previous);
        drop(self.shared.map.replace_all(table));
        self.applied = revision;
        self.record(revision);
        self.report_all(errors);
    }

    /// Applies one revision as one batch: readers see all of its changes or
    /// none. A revision at or below the applied one is already in the map and
    /// is skipped, so a replayed event is never applied twice.
    pub(crate) fn apply(&mut self, revision: Revision) {
        if revision.revision <= self.applied {
            return;
        }
        let mut errors = Vec::new();
        let mut ops = Vec::with_capacity(revision.changes.len());
        for change in revision.changes {
            let key = match self.decoder.key(&change.key, revision.revision) {
                Ok(key) => key,
                // Reported when it was written; its delete has nothing to remove.
                Err(_) if change.value.is_none() => continue,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            let op = match change.value {
                None => Op::Remove,
                Some(raw) => match self.decoder.value(&key, &raw) {
                    Ok(value) => Op::Insert(value),
                    Err(source) => Op::Failed(source),
                },
            };
            ops.push((key, op));
        }
        let at = revision.revision;
        self.shared.map.batch(|txn| {
            for (key, op) in ops {
                match op {
                    Op::Insert(value) => {
                        txn.insert(key, value);
                    }
                    Op::Remove => {
                        txn.remove(&*key);
                    }
                    Op::Failed(source) => errors.push(ReplicaError::Decode {
                        kept_previous: txn.contains_key(&*key),
                        key,
                        revision: at,
                        source,
                    }),
                }
            }
        });
        self.applied = at;
        Counters::add(&self.shared.counters.revisions, 1);
        self.record(at);
        self.report_all(errors);
    }

    /// Publishes the pair (current version, `revision`), then wakes
    /// `wait_for_revision`. The task is the map's only writer, so the version
    /// it reads back is the one it just published.
    fn record(&self, revision: i64) {
        let pair = ReplicaSnapshot::new(self.shared.map.snapshot(), revision);
        self.shared.latest.store(Arc::new(pair));
        self.revisions.send_replace(revision);
    }

    fn report_all(&self, errors: Vec<ReplicaError>) {
        for error in errors {
            if matches!(
                error,
                ReplicaError::Decode { .. } | ReplicaError::KeyNotUtf8 { .. }
            ) {
                Counters::add(&self.shared.counters.decode_errors, 1);
            }
            self.report(&error);
        }
    }

    /// Hands `error` to the user's handler. A panicking handler is contained:
    /// the replica must keep running.
    pub(crate) fn report(&self, error: &ReplicaError) {
        if catch_unwind(AssertUnwindSafe(|| (self.on_error)(error))).is_err() {
            eprintln!("readmostly replica: the error handler panicked on: {error}");
        }
    }
}
