//! The documented promises of `readmostly::replica` that `etcd_replica.rs` and
//! `src/replica/tests.rs` do not already check, each against a real etcd
//! started by the shared harness (`etcd_replica/server.rs`) and, for
//! partitions, its proxy (`etcd_replica/proxy.rs`).

#[path = "etcd_replica/proxy.rs"]
mod proxy;
// Not every helper of the harness is used here.
#[allow(dead_code)]
#[path = "etcd_replica/server.rs"]
mod server;
#[path = "etcd_replica/support.rs"]
mod support;

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use etcd_client::{Client, TxnOp};
use readmostly::replica::{
    BoxError, Bytes, Replica, ReplicaBuilder, ReplicaError, ReplicaMap, ReplicaStats,
};

use proxy::Proxy;
use server::EtcdServer;
use support::{caught_up, etcd_revision, txn, PATIENCE};

/// What the error handler was given, copied out (`ReplicaError` is not `Clone`).
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Etcd,
    WatchEnded(String),
    Compacted {
        needed: i64,
        compacted: i64,
    },
    Decode {
        key: String,
        revision: i64,
        kept_previous: bool,
        source: String,
        /// `Error::source()` of the `ReplicaError` is the decode function's error.
        source_is_parse_int: bool,
    },
    KeyNotUtf8 {
        key: Vec<u8>,
        revision: i64,
    },
    Other(String),
}

fn seen(error: &ReplicaError) -> Seen {
    match error {
        ReplicaError::Etcd(_) => Seen::Etcd,
        ReplicaError::WatchEnded { reason } => Seen::WatchEnded(reason.clone()),
        ReplicaError::Compacted { needed, compacted } => Seen::Compacted {
            needed: *needed,
            compacted: *compacted,
        },
        ReplicaError::Decode {
            key,
            revision,
            kept_previous,
            source,
        } => Seen::Decode {
            key: key.to_string(),
            revision: *revision,
            kept_previous: *kept_previous,
            source: source.to_string(),
            source_is_parse_int: std::error::Error::source(error)
                .is_some_and(|s| s.is::<std::num::ParseIntError>()),
        },
        ReplicaError::KeyNotUtf8 { key, revision } => Seen::KeyNotUtf8 {
            key: key.clone(),
            revision: *revision,
        },
        other => Seen::Other(other.to_string()),
    }
}

type Errors = support::Errors<Seen>;

fn builder(prefix: &str, errors: &Errors) -> ReplicaBuilder {
    support::builder(prefix, errors, seen)
}

fn rev_of(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("header").revision()
}

async fn put(client: &mut Client, key: impl Into<Vec<u8>>, value: &str) -> i64 {
    let response = client.put(key, value, None).await.expect("put");
    rev_of(response.header())
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// --- Builder defaults (no server) -------------------------------------------

/// config.rs "Defaults: errors printed to stderr, the prefix read in one
/// request, retries after 100 ms doubling up to 5 s." (Debug shows the knobs.)
#[test]
fn builder_defaults_are_one_request_and_100ms_to_5s() {
    let builder = ReplicaBuilder::new("/d/");
    let debug = format!("{builder:?}");
    assert!(debug.contains("page_size: 0"), "{debug}");
    assert!(debug.contains("retry_min: 100ms"), "{debug}");
    assert!(debug.contains("retry_max: 5s"), "{debug}");
    assert_eq!(builder.prefix(), "/d/");
    assert_eq!(Replica::builder("/d/").prefix(), "/d/");
}

// --- Keys that are not UTF-8, through the watch ------------------------------

/// mod.rs "Keys that are not UTF-8 are reported and left out";
/// error.rs KeyNotUtf8 { key: "The key's bytes, without the prefix",
/// revision: "The etcd revision at which it was seen" }; stats.rs
/// decode_errors counts them; stats.rs `revisions` counts the revision
/// even when it publishes nothing; mod.rs no version for such a revision,
/// the revision still advances.
#[tokio::test]
async fn a_non_utf8_key_from_the_watch_is_reported_and_left_out() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "/u/ok", "1").await;
    let errors = Errors::default();
    let replica = builder("/u/", &errors)
        .start(server.client().await)
        .await
        .expect("start");
    assert_eq!(replica.prefix(), "/u/");
    assert_eq!(
        replica.stats(),
        ReplicaStats::default(),
        "nothing counted at start"
    );
    let version = replica.map().version();
    let mut watcher = replica.map().watch();
    let _ = watcher.try_next();

    let bad = put(&mut client, b"/u/\xff\xfe".to_vec(), "v").await;
    let pair = caught_up(&replica, bad).await;
    assert_eq!(pair.revision(), bad, "the replica's revision advances");
    assert_eq!(
        replica.map().version(),
        version,
        "nothing changed: no version"
    );
    assert!(watcher.try_next().is_none(), "no version, no wake-up");
    assert_eq!(pair.len(), 1, "left out of the map");
    assert_eq!(
        errors.all(),
        [Seen::KeyNotUtf8 {
            key: vec![0xff, 0xfe],
            revision: bad
        }]
    );
    let stats = replica.stats();
    assert_eq!((stats.decode_errors, stats.revisions), (1, 1), "{stats:?}");

    // In one transaction with a good key: the good key applies, the bad one is reported.
    let both = txn(
        &mut client,
        vec![
            TxnOp::put(b"/u/\xc3".to_vec(), "v", None),
            TxnOp::put("/u/two", "2", None),
        ],
    )
    .await;
    let pair = caught_up(&replica, both).await;
    assert_eq!(pair.get("two").map(|v| &v[..]), Some(&b"2"[..]));
    assert_eq!(pair.len(), 2);
    assert_eq!(
        errors.all()[1],
        Seen::KeyNotUtf8 {
            key: vec![0xc3],
            revision: both
        }
    );
    replica.shutdown().await;
}

// --- Decode errors through the watch: the error's fields ----------------------

/// error.rs Decode { key without the prefix, revision "of the value that
/// failed", kept_previous "Whether the map still holds an older value",
/// source "What the decode function returned" }; config.rs decode gets
/// "the key without the prefix"; config.rs a panicking decode is a
/// Decode error; config.rs the handler runs "after the version it
/// concerns is published"; mod.rs a revision whose only changes failed to
/// decode publishes no version, its revision advances, and
/// `wait_for_revision(pair.revision() + 1)` waits for the next pair.
#[tokio::test]
async fn decode_errors_from_the_watch_carry_the_documented_fields() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "/n/a", "1").await;
    let errors = Errors::default();
    let sink = errors.clone();
    let keys_seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let keys = Arc::clone(&keys_seen);
    let map_cell: Arc<OnceLock<Arc<ReplicaMap<u32>>>> = Arc::new(OnceLock::new());
    let cell = Arc::clone(&map_cell);
    let in_handler = Arc::new(Mutex::new(Vec::<(String, Option<u32>)>::new()));
    let record = Arc::clone(&in_handler);
    let replica = Replica::builder("/n/")
        .decode(move |key: &str, raw: &[u8]| -> Result<u32, BoxError> {
            keys.lock().unwrap().push(key.to_owned());
            if raw == b"panic" {
                panic!("decode bug (expected by the test)");
            }
            Ok(std::str::from_utf8(raw)?.parse::<u32>()?)
        })
        .retry(Duration::from_millis(10), Duration::from_millis(200))
        .on_error(move |error| {
            if let (ReplicaError::Decode { key, .. }, Some(map)) = (error, cell.get()) {
                // What the map holds for `b` when the handler runs.
                record
                    .lock()
                    .unwrap()
                    .push((key.to_string(), map.get_cloned("b")));
            }
            sink.push(seen(error));
        })
        .start(server.client().await)
        .await
        .expect("start");
    map_cell.set(Arc::clone(replica.map())).ok().unwrap();
    assert_eq!(
        *keys_seen.lock().unwrap(),
        ["a"],
        "decode gets the key without the prefix"
    );

    // A bad value for a key that had a good one, in one revision with a good key.
    let r1 = txn(
        &mut client,
        vec![TxnOp::put("/n/a", "x", None), TxnOp::put("/n/b", "2", None)],
    )
    .await;
    let pair = caught_up(&replica, r1).await;
    assert_eq!((pair.get("a"), pair.get("b")), (Some(&1), Some(&2)));
    let all = errors.all();
    assert_eq!(all.len(), 1, "{all:?}");
    match &all[0] {
        Seen::Decode {
            key,
            revision,
            kept_previous,
            source_is_parse_int,
            ..
        } => {
            assert_eq!(key, "a");
            assert_eq!(*revision, r1);
            assert!(*kept_previous);
            assert!(
                *source_is_parse_int,
                "source() is the decode function's error"
            );
        }
        other => panic!("want Decode, got {other:?}"),
    }
    assert_eq!(
        *in_handler.lock().unwrap(),
        [("a".to_owned(), Some(2))],
        "the handler runs after the version holding the rest of the revision is published"
    );

    // A revision whose only change fails (here: the decode panics) on a key
    // that never decoded: no version, the revision advances.
    let version = replica.map().version();
    let mut watcher = replica.map().watch();
    let _ = watcher.try_next();
    let before = replica.snapshot();
    let r2 = put(&mut client, "/n/c", "panic").await;
    let pair = tokio::time::timeout(PATIENCE, replica.wait_for_revision(before.revision() + 1))
        .await
        .expect("the next pair comes")
        .expect("running");
    assert_eq!(pair.revision(), r2);
    assert_eq!(replica.map().version(), version, "no version published");
    assert!(watcher.try_next().is_none(), "map watchers do not wake");
    assert_eq!(pair.get("c"), None, "never decoded: absent");
    match &errors.all()[1] {
        Seen::Decode {
            key,
            revision,
            kept_previous,
            source,
            ..
        } => {
            assert_eq!((key.as_str(), *revision, *kept_previous), ("c", r2, false));
            assert!(source.contains("panicked"), "{source}");
        }
        other => panic!("want Decode, got {other:?}"),
    }
    let stats = replica.stats();
    assert_eq!((stats.revisions, stats.decode_errors), (2, 2), "{stats:?}");

    // "a delete removes it": the key that kept its previous value.
    let r3 = client
        .delete("/n/a", None)
        .await
        .expect("delete")
        .header()
        .expect("header")
        .revision();
    let pair = caught_up(&replica, r3).await;
    assert_eq!(pair.get("a"), None);
    replica.shutdown().await;
}

// --- Revisions elsewhere ------------------------------------------------------

/// mod.rs and snapshot.rs: the replica's revision is that of the
/// last change under the prefix; writes to other keys do not raise it.
/// mod.rs wait_for_revision for a revision made elsewhere "waits until
/// a later change under the prefix".
#[tokio::test]
async fn writes_elsewhere_do_not_raise_the_revision() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let errors = Errors::default();
    let replica = builder("/in/", &errors)
        .start(server.client().await)
        .await
        .expect("start");
    let start_revision = replica.revision();
    assert_eq!(
        start_revision,
        etcd_revision(&mut client).await,
        "etcd's revision at the read"
    );

    let outside = put(&mut client, "/out/k", "1").await;
    let inside = put(&mut client, "/in/k", "1").await;
    let after_inside = put(&mut client, "/out/k", "2").await;
    let pair = caught_up(&replica, inside).await;
    assert_eq!(pair.revision(), inside);
    assert!(outside < inside && inside < after_inside);
    // Give the watch time to deliver anything it would; the revision stays.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        replica.revision(),
        inside,
        "a write elsewhere raised the revision"
    );

    // Waiting for the outside revision is answered only by a later change inside.
    let waiting = tokio::time::timeout(
        Duration::from_millis(500),
        replica.wait_for_revision(after_inside),
    )
    .await;
    assert!(
        waiting.is_err(),
        "answered without a change under the prefix"
    );
    let wait = replica.wait_for_revision(after_inside);
    let later = put(&mut client, "/in/k", "2").await;
    let pair = tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("answered by the later change")
        .expect("running");
    assert_eq!(pair.revision(), later);
    assert!(errors.all().is_empty(), "{:?}", errors.all());
    replica.shutdown().await;
}

// --- Local writes ---------------------------------------------------------------

/// mod.rs "Writing to Replica::map yourself sends nothing to etcd, is
/// overwritten when etcd next changes those keys".
#[tokio::test]
async fn local_writes_send_nothing_and_are_overwritten_by_etcd() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let errors = Errors::default();
    let replica = builder("/lw/", &errors)
        .start(server.client().await)
        .await
        .expect("start");
    replica
        .map()
        .insert(Arc::from("k"), Bytes::from_static(b"local"));
    let in_etcd = client.get("/lw/k", None).await.expect("get");
    assert!(in_etcd.kvs().is_empty(), "a local write reached etcd");
    let at = put(&mut client, "/lw/k", "remote").await;
    let pair = caught_up(&replica, at).await;
    assert_eq!(pair.get("k").map(|v| &v[..]), Some(&b"remote"[..]));
    replica.shutdown().await;
}

// --- The whole keyspace ---------------------------------------------------------

/// config.rs `""` for the whole keyspace; map keys are the etcd keys.
#[tokio::test]
async fn an_empty_prefix_mirrors_the_whole_keyspace() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    put(&mut client, "a/1", "x").await;
    put(&mut client, "zz", "y").await;
    let errors = Errors::default();
    for page_size in [0, 1] {
        let replica = builder("", &errors)
            .page_size(page_size)
            .start(server.client().await)
            .await
            .expect("start");
        assert_eq!(replica.map().get_cloned("a/1").as_deref(), Some(&b"x"[..]));
        assert_eq!(replica.map().get_cloned("zz").as_deref(), Some(&b"y"[..]));
        let at = put(&mut client, format!("/any/{page_size}"), "z").await;
        let pair = caught_up(&replica, at).await;
        assert_eq!(
            pair.get(format!("/any/{page_size}").as_str())
                .map(|v| &v[..]),
            Some(&b"z"[..])
        );
        replica.shutdown().await;
    }
    assert!(errors.all().is_empty(), "{:?}", errors.all());
}

// --- The first read fails -------------------------------------------------------

/// mod.rs / config.rs "ReplicaError::Etcd if the first read
/// fails".
#[tokio::test]
async fn start_fails_with_an_etcd_error_when_the_first_read_fails() {
    let mut server = EtcdServer::start().await;
    let client = server.client().await;
    server.kill();
    let errors = Errors::default();
    let started = tokio::time::timeout(PATIENCE, builder("/x/", &errors).start(client))
        .await
        .expect("start gave up");
    match started {
        Err(ReplicaError::Etcd(_)) => {}
        Err(other) => panic!("want ReplicaError::Etcd, got {other}"),
        Ok(_) => panic!("started without etcd"),
    }
    println!("handler saw on a failed start: {:?}", errors.all());
}

// --- Disconnects and compaction: what the handler is told -------------------------

/// mod.rs the map keeps serving while disconnected; config.rs the
/// handler gets lost connections; stats.rs reconnects;
/// error.rs Compacted { needed: "The first revision the replica needed",
/// compacted: "The oldest revision etcd still has" }; config.rs pages
/// are used for the re-read too; mod.rs the revision "jumps to etcd's
/// current revision on a re-read after compaction", and mod.rs each
/// re-read is one version even when only keys elsewhere changed.
#[tokio::test]
async fn disconnects_and_compactions_are_reported_with_their_revisions() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    for i in 0..10 {
        put(&mut client, format!("/c/k{i}"), "0").await;
    }
    let proxy = Proxy::start(server.address());
    let errors = Errors::default();
    let replica = builder("/c/", &errors)
        .page_size(3)
        .start(
            Client::connect([proxy.endpoint()], None)
                .await
                .expect("connect"),
        )
        .await
        .expect("start");
    let map = Arc::clone(replica.map());

    // 1. A cut: reported, the map keeps serving.
    let v0 = map.version();
    proxy.cut();
    eventually("a lost connection is reported", || {
        errors
            .all()
            .iter()
            .any(|e| matches!(e, Seen::Etcd | Seen::WatchEnded(_)))
    })
    .await;
    assert_eq!(map.version(), v0);
    assert_eq!(map.get_cloned("k3").as_deref(), Some(&b"0"[..]));

    // 2. While cut: changes under the prefix, compacted past the replica.
    let r1 = replica.revision();
    let mut last = 0;
    for i in 0..5 {
        last = put(&mut client, format!("/c/k{i}"), "1").await;
    }
    client.compact(last, None).await.expect("compact");
    proxy.restore();
    let pair = caught_up(&replica, last).await;
    assert_eq!(pair.revision(), last);
    assert_eq!(pair.len(), 10, "the paged re-read got every key");
    assert_eq!(pair.get("k4").map(|v| &v[..]), Some(&b"1"[..]));
    let compactions: Vec<Seen> = errors
        .all()
        .into_iter()
        .filter(|e| matches!(e, Seen::Compacted { .. }))
        .collect();
    assert_eq!(
        compactions,
        [Seen::Compacted {
            needed: r1 + 1,
            compacted: last
        }]
    );
    let stats = replica.stats();
    assert_eq!(stats.resyncs, 1, "{stats:?}");
    assert!(stats.reconnects >= 1, "{stats:?}");
    // stats.rs "Reads of the whole prefix are not counted here."
    assert_eq!(stats.revisions, 0, "{stats:?}");

    // 3. Cut again; only keys elsewhere change, compacted: the re-read is one
    //    version and the revision jumps to etcd's current one.
    let v2 = map.version();
    proxy.cut();
    let mut elsewhere = 0;
    for i in 0..3 {
        elsewhere = put(&mut client, format!("/other/{i}"), "x").await;
    }
    client.compact(elsewhere, None).await.expect("compact");
    proxy.restore();
    let pair = caught_up(&replica, elsewhere).await;
    assert_eq!(pair.revision(), elsewhere);
    assert_eq!(map.version(), v2 + 1, "one version per re-read");
    assert_eq!(replica.stats().resyncs, 2);
    replica.shutdown().await;
}

// --- ReplicaSnapshot accessors -------------------------------------------------

/// snapshot.rs, 92-110: snapshot() and into_snapshot() are the pair's
/// version; its version is at most the map's.
#[tokio::test]
async fn a_pair_s_snapshot_accessors_agree() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let errors = Errors::default();
    let replica = builder("/s/", &errors)
        .start(server.client().await)
        .await
        .expect("start");
    let at = put(&mut client, "/s/a", "1").await;
    let pair = caught_up(&replica, at).await;
    assert!(pair.snapshot().version() <= replica.map().version());
    assert_eq!(pair.snapshot().version(), pair.version());
    let revision = pair.revision();
    let version = pair.version();
    let plain = pair.clone().into_snapshot();
    assert_eq!(plain.version(), version);
    assert_eq!(plain.get("a").map(|v| &v[..]), Some(&b"1"[..]));
    assert_eq!(pair.revision(), revision);
    replica.shutdown().await;
}

// --- wait_for_revision once the task has ended -----------------------------------

/// mod.rs "ReplicaError::Stopped if the replica's task ends first."
#[test]
fn wait_for_revision_reports_stopped_when_the_task_ends() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = main.block_on(EtcdServer::start());
    let endpoint = server.endpoint();
    let replica_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let replica = replica_rt.block_on(async {
        let client = Client::connect([endpoint], None).await.expect("connect");
        Replica::start(client, "/w/").await.expect("start")
    });
    let reached = replica.revision();
    // The runtime's end drops the replica's task.
    drop(replica_rt);
    main.block_on(async {
        let done = tokio::time::timeout(PATIENCE, replica.wait_for_revision(reached))
            .await
            .expect("no hang");
        assert!(done.is_ok(), "a revision already reached is returned");
        let never = tokio::time::timeout(PATIENCE, replica.wait_for_revision(reached + 1000))
            .await
            .expect("the wait ends when the task has ended");
        assert!(matches!(never, Err(ReplicaError::Stopped)), "{never:?}");
    });
    drop(replica);
    drop(server);
}

// --- start outside a runtime -------------------------------------------------------

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor with no Tokio context.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        assert!(std::time::Instant::now() < deadline, "hung");
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// config.rs "# Panics Outside a Tokio runtime."
#[test]
fn start_panics_outside_a_tokio_runtime() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = main.block_on(EtcdServer::start());
    let client = main.block_on(server.client());
    let outcome = std::thread::spawn(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            block_on(Replica::builder("/o/").start(client)).map(|_| ())
        }))
    })
    .join()
    .unwrap();
    match outcome {
        Err(_) => {}
        Ok(result) => panic!("start outside a runtime did not panic: {result:?}"),
    }
    drop(server);
}

// --- Stopping while disconnected ---------------------------------------------------

/// mod.rs dropping stops the task at its next await, shutdown stops it
/// and waits: also while the replica is cut off and retrying.
#[tokio::test]
async fn drop_and_shutdown_stop_a_disconnected_replica() {
    let server = EtcdServer::start().await;
    let proxy = Proxy::start(server.address());
    for how in ["drop", "shutdown"] {
        let errors = Errors::default();
        let replica = builder("/dc/", &errors)
            .retry(Duration::from_millis(200), Duration::from_secs(5))
            .start(
                Client::connect([proxy.endpoint()], None)
                    .await
                    .expect("connect"),
            )
            .await
            .expect("start");
        let map = Arc::clone(replica.map());
        proxy.cut();
        eventually("a lost connection is reported", || !errors.all().is_empty()).await;
        if how == "drop" {
            drop(replica);
        } else {
            tokio::time::timeout(PATIENCE, replica.shutdown())
                .await
                .expect("shutdown returned");
            assert_eq!(Arc::strong_count(&map), 1, "shutdown waited for the task");
        }
        eventually("the task ended", || Arc::strong_count(&map) == 1).await;
        proxy.restore();
    }
}
