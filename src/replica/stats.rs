//! [`ReplicaStats`]: what a replica has done since it started.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a [`Replica`](super::Replica), from
/// [`Replica::stats`](super::Replica::stats). Each is read on its own: a set
/// taken while the replica works may mix two moments.
///
/// # Examples
///
/// ```
/// use readmostly::replica::ReplicaStats;
///
/// let stats = ReplicaStats::default();
/// assert_eq!(stats.revisions + stats.resyncs, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// etcd revisions applied from the watch, each as one batch (which
    /// publishes nothing if the revision changed nothing in the map). Reads of
    /// the whole prefix are not counted here.
    pub revisions: u64,
    /// Whole-prefix re-reads after the revisions needed were compacted (the
    /// first read at start is not counted).
    pub resyncs: u64,
    /// Times a running watch stopped — the connection broke, the server ended
    /// it, or it was compacted away — and was followed by a resume or a re-read.
    pub reconnects: u64,
    /// Keys that failed to decode or were not UTF-8 (each reported to the
    /// error handler).
    pub decode_errors: u64,
    /// Watch responses marked as fragments: pieces of a response too large for
    /// one message, with more of it to follow.
    pub fragments: u64,
}

/// The live counters behind [`ReplicaStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) revisions: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) fragments: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`. Relaxed: a statistic orders nothing else.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> ReplicaStats {
        // Relaxed: each counter is reported on its own (documented on ReplicaStats).
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ReplicaStats {
            revisions: load(&self.revisions),
            resyncs: load(&self.resyncs),
            reconnects: load(&self.reconnects),
            decode_errors: load(&self.decode_errors),
            fragments: load(&self.fragments),
        }
    }
}
