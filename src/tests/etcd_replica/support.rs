//! Helpers both etcd test targets share: a bound on waits, waiting for a
//! revision, etcd's current revision, and replica builders whose errors are
//! collected for assertions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Txn, TxnOp};
use readmostly::replica::{Replica, ReplicaBuilder, ReplicaError, ReplicaSnapshot};

/// How long a test waits for what must happen before it fails (never a
/// timing it asserts: only a bound that keeps a broken build from hanging).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Waits (bounded by [`PATIENCE`]) until `replica` has applied `revision`.
pub async fn caught_up<V>(replica: &Replica<V>, revision: i64) -> ReplicaSnapshot<V> {
    tokio::time::timeout(PATIENCE, replica.wait_for_revision(revision))
        .await
        .unwrap_or_else(|_| panic!("replica stuck at {} < {revision}", replica.revision()))
        .expect("replica running")
}

/// etcd's current revision (a read of one key: the header carries it).
pub async fn etcd_revision(client: &mut Client) -> i64 {
    let response = client.get("\0", None).await.expect("read etcd");
    response.header().expect("header").revision()
}

/// What a replica's error handler was given, as `T`s, collected for assertions.
pub struct Errors<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Errors<T> {
    fn clone(&self) -> Self {
        Errors(Arc::clone(&self.0))
    }
}

impl<T> Default for Errors<T> {
    fn default() -> Self {
        Errors(Arc::default())
    }
}

impl<T: Clone> Errors<T> {
    pub fn all(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}

impl<T> Errors<T> {
    /// Records one error (for a handler built by hand).
    pub fn push(&self, error: T) {
        self.0.lock().unwrap().push(error);
    }
}

/// A builder with fast retries whose errors go to `errors`, each recorded by
/// `record`.
pub fn builder<T: Send + 'static>(
    prefix: &str,
    errors: &Errors<T>,
    record: fn(&ReplicaError) -> T,
) -> ReplicaBuilder {
    let sink = errors.clone();
    Replica::builder(prefix)
        .retry(Duration::from_millis(10), Duration::from_millis(200))
        .on_error(move |error| sink.push(record(error)))
}

/// Writes through one transaction, which must succeed, and returns its revision.
pub async fn txn(client: &mut Client, ops: Vec<TxnOp>) -> i64 {
    let response = client.txn(Txn::new().and_then(ops)).await.expect("txn");
    assert!(response.succeeded());
    response.header().expect("header").revision()
}
