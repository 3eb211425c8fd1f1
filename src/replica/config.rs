//! [`ReplicaBuilder`]: the prefix, the decode function, the error handler and
//! the retry knobs of a replica, and `start`.

use core::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::apply::{ErrorHandler, Publisher, Shared};
use super::decode::Decoder;
use super::error::{BoxError, ReplicaError};
use super::sync::{follow, read_prefix, Settings};
use super::Replica;

/// Largest gRPC message the replica accepts from etcd (etcd's own Go client
/// accepts the same): a page of the prefix or a watch response is never
/// refused for its size.
const MAX_MESSAGE: usize = i32::MAX as usize;

/// Configures a [`Replica`] before [`start`](ReplicaBuilder::start): which
/// prefix, how values decode, where errors go, how it reads and retries.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use readmostly::replica::{BoxError, Replica};
/// use std::time::Duration;
///
/// let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
/// let limits = Replica::builder("/limits/")
///     .decode(|_key, raw: &[u8]| -> Result<u32, BoxError> {
///         Ok(std::str::from_utf8(raw)?.trim().parse()?)
///     })
///     .on_error(|error| eprintln!("limits: {error}"))
///     .retry(Duration::from_millis(50), Duration::from_secs(2))
///     .start(client)
///     .await?;
/// let per_second: Option<u32> = limits.map().get_cloned("api");
/// # Ok(())
/// # }
/// ```
pub struct ReplicaBuilder<V = Bytes> {
    decoder: Decoder<V>,
    prefix: String,
    on_error: ErrorHandler,
    settings: Settings,
}

impl ReplicaBuilder<Bytes> {
    /// A replica of every key that starts with `prefix` (`""` for the whole
    /// keyspace), values as bytes. The map's keys are the etcd keys with
    /// `prefix` removed.
    ///
    /// Defaults: errors printed to stderr, the prefix read in one request,
    /// retries after 100 ms doubling up to 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::replica::ReplicaBuilder;
    ///
    /// let builder = ReplicaBuilder::new("/routes/");
    /// assert_eq!(builder.prefix(), "/routes/");
    /// ```
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let for_errors = prefix.clone();
        ReplicaBuilder {
            decoder: Decoder::bytes(&prefix),
            on_error: Arc::new(move |error: &ReplicaError| {
                eprintln!("readmostly replica of {for_errors:?}: {error}");
            }),
            prefix,
            settings: Settings {
                page_size: 0,
                retry_min: Duration::from_millis(100),
                retry_max: Duration::from_secs(5),
            },
        }
    }
}

impl<V> ReplicaBuilder<V> {
    /// The prefix this replica mirrors.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::replica::Replica;
    ///
    /// assert_eq!(Replica::builder("/flags/").prefix(), "/flags/");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Decodes each value with `decode(key, raw)` (the key without the
    /// prefix), so the map holds typed values — JSON through serde, a number,
    /// a parsed route. Values are cloned on every publish (each version is a
    /// copy of the table): put large ones behind an `Arc`.
    ///
    /// A value that fails to decode (or whose decode panics) is reported as
    /// [`ReplicaError::Decode`] and the key keeps its last good value; see
    /// there.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::replica::Replica;
    /// use std::sync::Arc;
    ///
    /// // Values as shared strings; a non-UTF-8 value is a decode error.
    /// let builder = Replica::builder("/motd/")
    ///     .decode(|_key, raw| std::str::from_utf8(raw).map(Arc::<str>::from));
    /// # let _ = builder;
    /// ```
    pub fn decode<W, E, F>(self, decode: F) -> ReplicaBuilder<W>
    where
        F: Fn(&str, &[u8]) -> Result<W, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        let decode = move |key: &str, raw: &[u8]| decode(key, raw).map_err(Into::into);
        ReplicaBuilder {
            decoder: self.decoder.with(Arc::new(decode)),
            prefix: self.prefix,
            on_error: self.on_error,
            settings: self.settings,
        }
    }

    /// Sends every error the replica meets while it runs to `handler`
    /// instead of stderr: decode failures, lost connections (and the retries
    /// after them), compactions. It runs on the replica's task, after the
    /// version it concerns is published — except a compaction, reported
    /// before the re-read it starts. Decode errors of the first read are
    /// reported inside [`start`](Self::start), on the caller's task before
    /// `start` returns; a first read that fails is not reported here, `start`
    /// returns the error. Keep it short. A panic in it is caught.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::replica::{Replica, ReplicaError};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    ///
    /// let decode_errors = Arc::new(AtomicU64::new(0));
    /// let counter = Arc::clone(&decode_errors);
    /// let builder = Replica::builder("/config/").on_error(move |error| {
    ///     if let ReplicaError::Decode { .. } = error {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// # let _ = builder;
    /// ```
    pub fn on_error(mut self, handler: impl Fn(&ReplicaError) + Send + Sync + 'static) -> Self {
        self.on_error = Arc::new(handler);
        self
    }

    /// Reads the prefix (at start, and again after a compaction) `keys` keys
    /// per request, all at one revision; 0 (the default) reads it in one
    /// request.
    ///
    /// Pages bound the size of each response, at a price: etcd 3.4 walks the
    /// rest of the range for every page it serves, so a paged read costs more
    /// the more pages it takes (100,000 keys on 2 cores: a few tenths of a second
    /// in one request, about 0.9 s in pages of 10,000, 9 s in pages of 1,000).
    /// Page only prefixes too large for one message.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::replica::Replica;
    ///
    /// let builder = Replica::builder("/big/").page_size(10_000);
    /// # let _ = builder;
    /// ```
    pub fn page_size(mut self, keys: u32) -> Self {
        self.settings.page_size = i64::from(keys);
        self
    }

    /// After a failed request or a broken watch, waits `min`, then twice as
    /// long after each further failure, up to `max`, before trying again. The
    /// wait goes back to `min` once the replica makes progress again: a watch
    /// delivers events, or a re-read of the prefix succeeds (a watch that
    /// reconnects and then sees no change keeps the longer wait). A `max`
    /// below `min` is taken as `min`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::replica::Replica;
    /// use std::time::Duration;
    ///
    /// let builder = Replica::builder("/config/")
    ///     .retry(Duration::from_millis(20), Duration::from_secs(1));
    /// # let _ = builder;
    /// ```
    pub fn retry(mut self, min: Duration, max: Duration) -> Self {
        self.settings.retry_min = min;
        self.settings.retry_max = max.max(min);
        self
    }

    /// Reads the prefix at one revision, publishes it as the map's first
    /// version, and spawns the task that follows it (on the current Tokio
    /// runtime). Returns once the first version is readable.
    ///
    /// # Errors
    ///
    /// [`ReplicaError::Etcd`] if the first read fails; nothing is spawned.
    /// Errors after that are reported to the error handler and retried.
    /// Keys that fail to decode in the first read are reported too, and do not
    /// fail the start.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (after the first read, when it spawns the
    /// replica's task).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use readmostly::replica::Replica;
    ///
    /// let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
    /// let routes = Replica::builder("/routes/").start(client).await?;
    /// println!("{} routes at revision {}", routes.map().len(), routes.revision());
    /// routes.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(self, client: etcd_client::Client) -> Result<Replica<V>, ReplicaError>
    where
        V: Clone + Send + Sync + 'static,
    {
        let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let watch = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let (revision, entries) =
            read_prefix(&mut kv, self.decoder.prefix(), self.settings.page_size).await?;
        let shared = Arc::new(Shared::new());
        let (revisions, revisions_seen) = watch::channel(0);
        let mut publisher =
            Publisher::new(Arc::clone(&shared), self.decoder, self.on_error, revisions);
        publisher.publish_whole(revision, entries);
        let (stop, stopped) = oneshot::channel::<()>();
        let settings = self.settings;
        let task = tokio::spawn(async move {
            // Dropping `follow` at any of its awaits leaves the map whole: it
            // writes only between them.
            tokio::select! {
                _ = stopped => {}
                () = follow(publisher, kv, watch, settings) => {}
            }
        });
        Ok(Replica::new(
            shared,
            revisions_seen,
            self.prefix,
            stop,
            task,
        ))
    }
}

impl<V> fmt::Debug for ReplicaBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaBuilder")
            .field("prefix", &self.prefix)
            .field("page_size", &self.settings.page_size)
            .field("retry_min", &self.settings.retry_min)
            .field("retry_max", &self.settings.retry_max)
            .finish_non_exhaustive()
    }
}
