//! Unit tests of the parts that need no server: grouping, key ranges,
//! decoding and the publisher. The replica against a real etcd is tested in
//! `src/tests/etcd_replica.rs`.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use super::apply::{ErrorHandler, Publisher, Shared};
use super::decode::Decoder;
use super::error::ReplicaError;
use super::group::{Grouper, KeyChange, Revision};
use super::sync::{prefix_end, ReadEntry};

fn put(key: &str, value: &str) -> KeyChange {
    KeyChange {
        key: key.as_bytes().to_vec(),
        value: Some(value.as_bytes().to_vec()),
    }
}

fn delete(key: &str) -> KeyChange {
    KeyChange {
        key: key.as_bytes().to_vec(),
        value: None,
    }
}

#[test]
fn revisions_complete_at_a_later_revision_or_the_end_of_a_response() {
    let mut grouper = Grouper::default();
    let mut done = Vec::new();
    grouper.event(5, put("/p/a", "1"), &mut done);
    grouper.event(5, put("/p/b", "1"), &mut done);
    assert!(done.is_empty(), "revision 5 may still have events");
    grouper.event(6, delete("/p/a"), &mut done);
    assert_eq!(
        done,
        [Revision {
            revision: 5,
            changes: vec![put("/p/a", "1"), put("/p/b", "1")]
        }]
    );
    grouper.end_of_response(false, &mut done);
    assert_eq!(done.len(), 2);
    assert_eq!(done[1].revision, 6);
    assert!(!grouper.is_open());
}

#[test]
fn a_revision_split_across_fragments_is_held_until_its_last_piece() {
    let mut grouper = Grouper::default();
    let mut done = Vec::new();
    grouper.event(9, put("/p/a", "1"), &mut done);
    grouper.end_of_response(true, &mut done);
    grouper.event(9, put("/p/b", "2"), &mut done);
    grouper.end_of_response(true, &mut done);
    assert!(done.is_empty(), "no piece of revision 9 is applied early");
    grouper.event(9, delete("/p/c"), &mut done);
    grouper.end_of_response(false, &mut done);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].changes.len(), 3);
}

#[test]
fn a_broken_stream_forgets_the_incomplete_revision() {
    let mut grouper = Grouper::default();
    let mut done = Vec::new();
    grouper.event(3, put("/p/a", "1"), &mut done);
    grouper.end_of_response(true, &mut done);
    grouper.reset();
    grouper.end_of_response(false, &mut done);
    assert!(done.is_empty());
}

#[test]
fn prefix_ranges_follow_etcds_convention() {
    assert_eq!(prefix_end(b"/routes/"), b"/routes0");
    assert_eq!(prefix_end(b"a\xff"), b"b");
    assert_eq!(prefix_end(b"\xff\xff"), [0]);
    assert_eq!(prefix_end(b""), [0]);
}

/// A publisher over a fresh map whose errors are collected.
struct Harness<V> {
    shared: Arc<Shared<V>>,
    publisher: Publisher<V>,
    errors: Arc<Mutex<Vec<String>>>,
    revisions: watch::Receiver<i64>,
}

fn harness<V: Clone>(decoder: Decoder<V>) -> Harness<V> {
    let shared = Arc::new(Shared::new());
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&errors);
    let handler: ErrorHandler = Arc::new(move |error: &ReplicaError| {
        sink.lock().unwrap().push(error.to_string());
    });
    let (tx, revisions) = watch::channel(0);
    let publisher = Publisher::new(Arc::clone(&shared), decoder, handler, tx);
    Harness {
        shared,
        publisher,
        errors,
        revisions,
    }
}

fn numbers() -> Decoder<u32> {
    Decoder::new(
        "/n/",
        Arc::new(|_: &str, raw: &[u8]| Ok(std::str::from_utf8(raw)?.parse::<u32>()?)),
    )
}

/// A key as a read finds it, written at `mod_revision` and created (since its
/// last delete) at `create_revision`.
fn read_entry(key: &[u8], value: &str, mod_revision: i64, create_revision: i64) -> ReadEntry {
    ReadEntry {
        key: key.to_vec(),
        value: value.as_bytes().to_vec(),
        mod_revision,
        create_revision,
    }
}

/// Keys as a read finds them, each created and written at revision 1.
fn entries(pairs: &[(&str, &str)]) -> Vec<ReadEntry> {
    pairs
        .iter()
        .map(|(k, v)| read_entry(k.as_bytes(), v, 1, 1))
        .collect()
}

#[test]
fn one_revision_is_one_version_and_its_pair_carries_the_revision() {
    let mut h = harness(Decoder::bytes("/p/"));
    h.publisher
        .publish_whole(10, entries(&[("/p/a", "1"), ("/p/b", "2")]));
    assert_eq!(h.shared.map.version(), 1);
    h.publisher.apply(Revision {
        revision: 11,
        changes: vec![put("/p/a", "3"), delete("/p/b"), put("/p/c", "4")],
    });
    assert_eq!(h.shared.map.version(), 2, "three changes, one version");
    let pair = h.shared.latest.load_full();
    assert_eq!(pair.revision(), 11);
    assert_eq!(pair.snapshot().version(), 2);
    assert_eq!(pair.get("a"), Some(&Bytes::from_static(b"3")));
    assert_eq!(pair.get("b"), None);
    assert_eq!(*h.revisions.borrow(), 11);
    assert_eq!(h.shared.counters.read().revisions, 1);
}

#[test]
fn a_revision_already_applied_is_skipped() {
    let mut h = harness(Decoder::bytes("/p/"));
    h.publisher.publish_whole(10, entries(&[("/p/a", "1")]));
    h.publisher.apply(Revision {
        revision: 10,
        changes: vec![put("/p/a", "old")],
    });
    h.publisher.apply(Revision {
        revision: 7,
        changes: vec![delete("/p/a")],
    });
    assert_eq!(h.shared.map.version(), 1);
    assert_eq!(h.shared.map.get_cloned("a"), Some(Bytes::from_static(b"1")));
    assert_eq!(h.shared.latest.load().revision(), 10);
}

#[test]
fn a_value_that_fails_to_decode_keeps_the_previous_one() {
    let mut h = harness(numbers());
    h.publisher.publish_whole(2, entries(&[("/n/a", "1")]));
    h.publisher.apply(Revision {
        revision: 3,
        changes: vec![put("/n/a", "one"), put("/n/b", "2"), put("/n/c", "x")],
    });
    let pair = h.shared.latest.load_full();
    assert_eq!(pair.get("a"), Some(&1), "previous value kept");
    assert_eq!(pair.get("b"), Some(&2), "the rest of the revision applies");
    assert_eq!(pair.get("c"), None, "never decoded: absent");
    let errors = h.errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("\"a\"") && errors[0].contains("kept its previous value"));
    assert!(errors[1].contains("\"c\"") && errors[1].contains("left absent"));
    // A later good value and a delete apply as usual.
    h.publisher.apply(Revision {
        revision: 4,
        changes: vec![put("/n/a", "5"), delete("/n/c")],
    });
    assert_eq!(h.shared.map.get_cloned("a"), Some(5));
    assert_eq!(h.shared.counters.read().decode_errors, 2);
}

#[test]
fn a_revision_of_failed_decodes_only_advances_the_revision() {
    let mut h = harness(numbers());
    h.publisher.publish_whole(2, entries(&[]));
    h.publisher.apply(Revision {
        revision: 3,
        changes: vec![put("/n/x", "bad")],
    });
    assert_eq!(
        h.shared.map.version(),
        1,
        "nothing changed: nothing published"
    );
    assert_eq!(h.shared.latest.load().revision(), 3);
}

#[test]
fn a_full_read_keeps_the_last_good_value_of_keys_that_fail() {
    let mut h = harness(numbers());
    h.publisher
        .publish_whole(2, entries(&[("/n/a", "1"), ("/n/b", "2")]));
    h.publisher
        .publish_whole(9, entries(&[("/n/a", "bad"), ("/n/c", "bad")]));
    let pair = h.shared.latest.load_full();
    assert_eq!(pair.revision(), 9);
    assert_eq!(pair.get("a"), Some(&1));
    assert_eq!(pair.get("b"), None, "deleted in etcd: gone");
    assert_eq!(pair.get("c"), None);
    assert_eq!(h.errors.lock().unwrap().len(), 2);
}

#[test]
fn a_full_read_names_the_failed_value_s_revision_and_forgets_a_deleted_key() {
    let mut h = harness(numbers());
    h.publisher
        .publish_whole(2, entries(&[("/n/a", "1"), ("/n/b", "2")]));
    // Read at 9 after a compaction: `a` was deleted and created again at 5
    // with a value that does not decode; `b` was rewritten at 7, also badly.
    h.publisher.publish_whole(
        9,
        vec![
            read_entry(b"/n/a", "bad", 5, 5),
            read_entry(b"/n/b", "bad", 7, 1),
        ],
    );
    let pair = h.shared.latest.load_full();
    assert_eq!(pair.get("a"), None, "deleted since: its old value is gone");
    assert_eq!(
        pair.get("b"),
        Some(&2),
        "the same key keeps its last good value"
    );
    let errors = h.errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("revision 5"), "{errors:?}");
    assert!(errors[1].contains("revision 7"), "{errors:?}");
}

#[test]
fn panics_in_user_code_are_contained() {
    let decoder: Decoder<u32> = Decoder::new(
        "/n/",
        Arc::new(|key: &str, _: &[u8]| {
            if key == "boom" {
                panic!("decode bug");
            }
            Ok(1)
        }),
    );
    let mut h = harness(decoder);
    let handler: ErrorHandler = Arc::new(|_: &ReplicaError| panic!("handler bug"));
    let (tx, _rx) = watch::channel(0);
    let mut publisher = Publisher::new(Arc::clone(&h.shared), numbers(), handler, tx);
    publisher.publish_whole(1, entries(&[("/n/a", "bad")])); // the handler panics
    h.publisher
        .publish_whole(2, entries(&[("/n/boom", "x"), ("/n/ok", "x")]));
    assert_eq!(h.shared.map.get_cloned("ok"), Some(1));
    let errors = h.errors.lock().unwrap().clone();
    assert!(errors[0].contains("panicked"), "{errors:?}");
}

#[test]
fn keys_that_are_not_utf8_are_reported_and_left_out() {
    let mut h = harness(Decoder::bytes("/p/"));
    h.publisher.publish_whole(
        4,
        vec![
            read_entry(b"/p/\xff", "v", 3, 3),
            read_entry(b"/p/ok", "v", 1, 1),
        ],
    );
    assert_eq!(h.shared.map.len(), 1);
    let errors = h.errors.lock().unwrap().clone();
    assert!(errors[0].contains("not UTF-8"), "{errors:?}");
}

#[test]
fn handles_and_snapshots_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<super::Replica>();
    send_sync::<super::Replica<Arc<str>>>();
    send_sync::<super::ReplicaSnapshot>();
    send_sync::<super::ReplicaError>();
    send_sync::<super::ReplicaBuilder<u32>>();
}
