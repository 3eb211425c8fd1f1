//! Turning etcd's bytes into map entries: keys without the prefix as
//! `Arc<str>`, values through the user's decode function.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;

use super::error::{BoxError, ReplicaError};

/// A user decode function: key (without the prefix) and raw value in, the
/// map's value out.
pub(crate) type DecodeFn<V> = dyn Fn(&str, &[u8]) -> Result<V, BoxError> + Send + Sync;

/// The decode function of a replica, shared by its task and its builder.
pub(crate) struct Decoder<V> {
    prefix: Vec<u8>,
    decode: Arc<DecodeFn<V>>,
}

impl<V> Clone for Decoder<V> {
    fn clone(&self) -> Self {
        Decoder {
            prefix: self.prefix.clone(),
            decode: Arc::clone(&self.decode),
        }
    }
}

impl Decoder<Bytes> {
    /// Values stay bytes: one copy out of the response, then reference-counted.
    pub(crate) fn bytes(prefix: &str) -> Self {
        Decoder::new(
            prefix,
            Arc::new(|_: &str, raw: &[u8]| Ok(Bytes::copy_from_slice(raw))),
        )
    }
}

impl<V> Decoder<V> {
    pub(crate) fn new(prefix: &str, decode: Arc<DecodeFn<V>>) -> Self {
        Decoder {
            prefix: prefix.as_bytes().to_vec(),
            decode,
        }
    }

    /// The same prefix with another decode function.
    pub(crate) fn with<W>(&self, decode: Arc<DecodeFn<W>>) -> Decoder<W> {
        Decoder {
            prefix: self.prefix.clone(),
            decode,
        }
    }

    /// The prefix every replicated key starts with.
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The map key for the etcd key `raw`: the prefix removed, UTF-8 checked.
    pub(crate) fn key(&self, raw: &[u8], revision: i64) -> Result<Arc<str>, ReplicaError> {
        // etcd only sends keys in the watched range; a stray key is no entry of ours.
        let rest = raw.strip_prefix(self.prefix.as_slice()).unwrap_or(raw);
        match core::str::from_utf8(rest) {
            Ok(key) => Ok(Arc::from(key)),
            Err(_) => Err(ReplicaError::KeyNotUtf8 {
                key: rest.to_vec(),
                revision,
            }),
        }
    }

    /// Runs the user's decode function on one value. A panic in it is caught
    /// and treated as a failed decode, so the replica keeps running.
    pub(crate) fn value(&self, key: &str, raw: &[u8]) -> Result<V, BoxError> {
        match catch_unwind(AssertUnwindSafe(|| (self.decode)(key, raw))) {
            Ok(decoded) => decoded,
            Err(_) => Err("the decode function panicked".into()),
        }
    }
}
