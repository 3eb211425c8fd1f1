//! [`ReplicaError`]: what goes wrong, and what the replica does about it.

use core::fmt;
use std::error::Error;
use std::sync::Arc;

/// The error a user decode function returns, boxed: any error type converts
/// into it with `?`.
///
/// # Examples
///
/// ```
/// use readmostly::replica::BoxError;
///
/// fn port(raw: &[u8]) -> Result<u16, BoxError> {
///     Ok(std::str::from_utf8(raw)?.parse()?)
/// }
/// assert_eq!(port(b"8080").unwrap(), 8080);
/// assert!(port(b"http").is_err());
/// ```
pub type BoxError = Box<dyn Error + Send + Sync>;

/// Something a [`Replica`](super::Replica) ran into.
///
/// [`start`](super::ReplicaBuilder::start) returns one when the first read of
/// the prefix fails. After that the replica never stops on an error: each one is
/// handed to the error handler ([`ReplicaBuilder::on_error`](super::ReplicaBuilder::on_error))
/// and the replica carries on — it reconnects, re-reads, or keeps a key's last
/// good value, as each variant says.
///
/// # Examples
///
/// ```
/// use readmostly::replica::ReplicaError;
///
/// let error = ReplicaError::KeyNotUtf8 { key: vec![0xff], revision: 7 };
/// assert!(error.to_string().contains("UTF-8"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplicaError {
    /// A request to etcd or the watch stream failed (connection refused or
    /// dropped, server error). The replica retries with backoff and resumes the
    /// watch after the last revision it applied, so nothing is lost or applied
    /// twice.
    Etcd(etcd_client::Error),
    /// The server ended or canceled the watch for a reason other than
    /// compaction. The replica resumes it after the last revision it applied.
    WatchEnded {
        /// The server's reason, if it gave one.
        reason: String,
    },
    /// The revisions the replica needed to resume from were compacted away.
    /// The replica re-reads the whole prefix and publishes it as one version.
    Compacted {
        /// The first revision the replica needed.
        needed: i64,
        /// The oldest revision etcd still has.
        compacted: i64,
    },
    /// A value under the prefix did not decode (or the decode function
    /// panicked). The key keeps the last value that decoded, if it had one
    /// (`kept_previous`); a key that never decoded stays absent. Either way the
    /// next value that decodes replaces it, and a delete removes it.
    Decode {
        /// The key, without the prefix.
        key: Arc<str>,
        /// The etcd revision of the value that failed.
        revision: i64,
        /// Whether the map still holds an older value for this key.
        kept_previous: bool,
        /// What the decode function returned.
        source: BoxError,
    },
    /// A key under the prefix is not valid UTF-8 once the prefix is removed:
    /// the map's keys are strings, so it is left out of the map.
    KeyNotUtf8 {
        /// The key's bytes, without the prefix.
        key: Vec<u8>,
        /// The etcd revision that wrote it (a watch event's revision, or the
        /// key's `mod_revision` in a whole-prefix read).
        revision: i64,
    },
    /// The replica has stopped (it was shut down or dropped), so the revision
    /// waited for will never come.
    Stopped,
}

impl fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaError::Etcd(error) => write!(f, "etcd request failed: {error}"),
            ReplicaError::WatchEnded { reason } if reason.is_empty() => {
                f.write_str("the watch stream ended")
            }
            ReplicaError::WatchEnded { reason } => write!(f, "the watch ended: {reason}"),
            ReplicaError::Compacted { needed, compacted } => write!(
                f,
                "revision {needed} was compacted (oldest kept: {compacted}); re-reading the prefix"
            ),
            ReplicaError::Decode {
                key,
                revision,
                kept_previous,
                source,
            } => {
                let kept = if *kept_previous {
                    "kept its previous value"
                } else {
                    "left absent"
                };
                write!(
                    f,
                    "key {key:?} at revision {revision} did not decode ({kept}): {source}"
                )
            }
            ReplicaError::KeyNotUtf8 { key, revision } => write!(
                f,
                "key {:?} at revision {revision} is not UTF-8; left out of the map",
                String::from_utf8_lossy(key)
            ),
            ReplicaError::Stopped => f.write_str("the replica has stopped"),
        }
    }
}

impl Error for ReplicaError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ReplicaError::Etcd(error) => Some(error),
            ReplicaError::Decode { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

impl From<etcd_client::Error> for ReplicaError {
    fn from(error: etcd_client::Error) -> Self {
        ReplicaError::Etcd(error)
    }
}
