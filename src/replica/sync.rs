//! The sync task: read the prefix, follow it with a watch, reconnect, re-read
//! after compaction. All writes go through [`Publisher`].

use std::time::Duration;

use etcd_client::{GetOptions, KvClient, WatchClient, WatchOptions};

use super::apply::Publisher;
use super::error::ReplicaError;
use super::group::{Grouper, KeyChange};
use super::stats::Counters;

/// etcd's event type for a delete (`mvccpb.Event.EventType.DELETE`).
const DELETE: i32 = 1;

/// How the task reads and retries; see the builder for each knob.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) page_size: i64,
    pub(crate) retry_min: Duration,
    pub(crate) retry_max: Duration,
}

/// One key as a read of the prefix found it.
#[derive(Debug)]
pub(crate) struct ReadEntry {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
    /// The revision that wrote this value.
    pub(crate) mod_revision: i64,
    /// The revision that created the key (since its last delete).
    pub(crate) create_revision: i64,
}

/// Reads every key under `prefix` at one revision, `page_size` keys per
/// request: the first request fixes the revision, the next ones ask for it.
/// Returns that revision and the keys in key order. Fails if the revision is
/// compacted between two pages; the caller reads again.
pub(crate) async fn read_prefix(
    kv: &mut KvClient,
    prefix: &[u8],
    page_size: i64,
) -> Result<(i64, Vec<ReadEntry>), etcd_client::Error> {
    let end = prefix_end(prefix);
    let mut from = if prefix.is_empty() {
        vec![0]
    } else {
        prefix.to_vec()
    };
    let mut revision = 0;
    let mut entries = Vec::new();
    loop {
        let options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(page_size)
            .with_revision(revision);
        let mut page = kv.get(from.clone(), Some(options)).await?;
        if revision == 0 {
            revision = page.header().map_or(0, |header| header.revision());
        }
        let more = page.more();
        let kvs = page.take_kvs();
        let Some(last) = kvs.last() else { break };
        // The next page starts just after the last key of this one.
        from = last.key().to_vec();
        from.push(0);
        entries.extend(kvs.into_iter().map(|kv| {
            let (mod_revision, create_revision) = (kv.mod_revision(), kv.create_revision());
            let (key, value) = kv.into_key_value();
            ReadEntry {
                key,
                value,
                mod_revision,
                create_revision,
            }
        }));
        if !more {
            break;
        }
    }
    Ok((revision, entries))
}

/// The end of the key range holding every key that starts with `prefix`
/// (etcd's convention: `[0]` means "no end").
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Exponential backoff between failed attempts.
struct Backoff {
    next: Duration,
    settings: Settings,
}

impl Backoff {
    fn new(settings: Settings) -> Self {
        Backoff {
            next: settings.retry_min,
            settings,
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.settings.retry_max);
    }

    fn reset(&mut self) {
        self.next = self.settings.retry_min;
    }
}

/// Why a watch stopped delivering.
enum Ended {
    Compacted(i64),
    Canceled(String),
    Closed,
    Failed(etcd_client::Error),
}

/// Follows the prefix forever: watches from the revision after the applied
/// one, applies each revision as it completes, and on any break resumes from
/// the last applied revision (or re-reads the prefix if that was compacted).
/// Stopped by dropping the future, which is safe at every `.await`: the map is
/// only written by synchronous code between them.
pub(crate) async fn follow<V: Clone>(
    mut publisher: Publisher<V>,
    mut kv: KvClient,
    mut watch: WatchClient,
    settings: Settings,
) {
    let prefix = publisher.prefix().to_vec();
    let mut backoff = Backoff::new(settings);
    let mut grouper = Grouper::default();
    let mut complete = Vec::new();
    let mut resync = false;
    loop {
        if resync {
            match read_prefix(&mut kv, &prefix, settings.page_size).await {
                Ok((revision, entries)) => {
                    backoff.reset();
                    publisher.publish_whole(revision, entries);
                    Counters::add(&publisher.counters().resyncs, 1);
                    resync = false;
                }
                Err(error) => {
                    publisher.report(&ReplicaError::Etcd(error));
                    backoff.wait().await;
                    continue;
                }
            }
        }
        let start = publisher.applied() + 1;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start)
            .with_fragment();
        let mut stream = match watch.watch(prefix.clone(), Some(options)).await {
            Ok(stream) => stream,
            Err(error) => {
                publisher.report(&ReplicaError::Etcd(error));
                backoff.wait().await;
                continue;
            }
        };
        let ended = loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => break Ended::Closed,
                Err(error) => break Ended::Failed(error),
            };
            if response.compact_revision() > 0 {
                break Ended::Compacted(response.compact_revision());
            }
            if response.canceled() {
                break Ended::Canceled(response.cancel_reason().to_owned());
            }
            let response = response.0;
            if !response.events.is_empty() {
                // Events flow: the watch works, so the next failure starts the
                // backoff afresh. (Not on `created` alone: a server that creates
                // and then cancels every watch must not be retried at full rate.)
                backoff.reset();
            }
            for event in response.events {
                let Some(kv) = event.kv else { continue };
                if kv.mod_revision <= publisher.applied() {
                    continue;
                }
                let value = (event.r#type != DELETE).then_some(kv.value);
                let change = KeyChange { key: kv.key, value };
                grouper.event(kv.mod_revision, change, &mut complete);
            }
            if response.fragment {
                Counters::add(&publisher.counters().fragments, 1);
            }
            grouper.end_of_response(response.fragment, &mut complete);
            for revision in complete.drain(..) {
                publisher.apply(revision);
            }
        };
        // Anything half-received comes again, whole, on the next watch.
        grouper.reset();
        complete.clear();
        Counters::add(&publisher.counters().reconnects, 1);
        match ended {
            Ended::Compacted(compacted) => {
                publisher.report(&ReplicaError::Compacted {
                    needed: start,
                    compacted,
                });
                resync = true;
            }
            Ended::Canceled(reason) => {
                publisher.report(&ReplicaError::WatchEnded { reason });
                backoff.wait().await;
            }
            Ended::Closed => {
                publisher.report(&ReplicaError::WatchEnded {
                    reason: String::new(),
                });
                backoff.wait().await;
            }
            Ended::Failed(error) => {
                publisher.report(&ReplicaError::Etcd(error));
                backoff.wait().await;
            }
        }
    }
}
