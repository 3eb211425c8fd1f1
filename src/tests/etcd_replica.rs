//! `readmostly::replica` against a real etcd server (feature `etcd`).
//!
//! Each test starts its own etcd (`server.rs`: the `etcd` binary from `PATH` or
//! `$ETCD_BIN`, free ports on 127.0.0.1, a temporary data directory), so it
//! controls restarts and compaction; a missing binary fails the test with
//! directions. Nothing here reaches anything but 127.0.0.1. Partitions go
//! through a TCP proxy the test can cut (`proxy.rs`).
//!
//! Each test prints what it checked; run with `--nocapture` to see it.

#[path = "etcd_replica/proxy.rs"]
mod proxy;
#[path = "etcd_replica/server.rs"]
mod server;
#[path = "etcd_replica/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use readmostly::replica::{BoxError, Replica, ReplicaBuilder, ReplicaMap};
use readmostly::Snapshot;

use proxy::Proxy;
use server::EtcdServer;
use support::{caught_up, etcd_revision, txn, PATIENCE};

type Contents = BTreeMap<String, Vec<u8>>;

/// Every key under `prefix` (prefix removed) at `revision` (0: now), and the
/// revision read.
async fn etcd_state(client: &mut Client, prefix: &str, revision: i64) -> (i64, Contents) {
    let options = GetOptions::new().with_prefix().with_revision(revision);
    let response = client.get(prefix, Some(options)).await.expect("read etcd");
    let read_at = response.header().expect("header").revision();
    assert!(!response.more(), "the test prefixes fit one response");
    let contents = response
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().expect("UTF-8 key");
            (key[prefix.len()..].to_owned(), kv.value().to_vec())
        })
        .collect();
    (read_at, contents)
}

fn contents<V: AsRef<[u8]>>(snapshot: &Snapshot<Arc<str>, V>) -> Contents {
    snapshot
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_ref().to_vec()))
        .collect()
}

/// The error messages a replica reported, collected for assertions.
type Errors = support::Errors<String>;

/// A builder with fast retries and collected error messages.
fn builder(prefix: &str, errors: &Errors) -> ReplicaBuilder {
    support::builder(prefix, errors, |error| error.to_string())
}

async fn start(endpoint: &str, prefix: &str) -> (Replica, Errors) {
    let errors = Errors::default();
    let client = Client::connect([endpoint], None).await.expect("connect");
    let replica = builder(prefix, &errors)
        .start(client)
        .await
        .expect("start the replica");
    (replica, errors)
}

/// A small deterministic generator (xorshift64*), so no test needs a crate for it.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Puts `pairs` in transactions of at most 100 operations (etcd allows 128).
async fn put_all(client: &mut Client, pairs: &[(String, String)]) -> i64 {
    let mut revision = 0;
    for chunk in pairs.chunks(100) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
            .collect();
        let response = client.txn(Txn::new().and_then(ops)).await.expect("txn");
        revision = response.header().expect("header").revision();
    }
    revision
}

#[tokio::test]
async fn start_publishes_the_prefix_at_one_revision_as_one_version() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    // 2,500 keys: three pages of 1,000 (one read, at one revision).
    let inside: Vec<(String, String)> = (0..2500)
        .map(|i| (format!("/app/cfg/k{i:04}"), format!("v{i}")))
        .collect();
    put_all(&mut client, &inside).await;
    // Neighbours that share bytes with the prefix but are not under it.
    for key in ["/app/cfg", "/app/cfg0", "/app/cf", "/app/other/k"] {
        client.put(key, "outside", None).await.expect("put");
    }
    let (etcd_at, expected) = etcd_state(&mut client, "/app/cfg/", 0).await;

    let errors = Errors::default();
    let replica = builder("/app/cfg/", &errors)
        .page_size(1000)
        .start(server.client().await)
        .await
        .expect("start");
    let snapshot = replica.snapshot();
    assert_eq!(snapshot.revision(), etcd_at, "the read's revision");
    assert_eq!(replica.map().version(), 1, "one version for the whole read");
    assert_eq!(contents(&snapshot), expected);
    assert_eq!(snapshot.len(), 2500);
    assert_eq!(
        replica.map().get_cloned("k0042").as_deref(),
        Some(&b"v42"[..])
    );
    assert!(errors.all().is_empty(), "{:?}", errors.all());

    // A write outside the prefix is not applied: one version for the one
    // write inside.
    client
        .put("/app/other/k", "again", None)
        .await
        .expect("put");
    let put = client
        .put("/app/cfg/k0000", "new", None)
        .await
        .expect("put");
    let at = put.header().expect("header").revision();
    let seen = caught_up(&replica, at).await;
    assert_eq!(seen.revision(), at);
    assert_eq!(seen.get("k0000").map(|v| &v[..]), Some(&b"new"[..]));
    assert_eq!(replica.map().version(), 2);

    // A paged start while a writer rewrites the prefix: every page is read at
    // the first page's revision, so the first version is etcd's state then.
    let writer = {
        let mut writer = server.client().await;
        tokio::spawn(async move {
            for i in 0..300 {
                let key = format!("/app/cfg/k{:04}", (i * 7) % 2500);
                writer.put(key, format!("w{i}"), None).await.expect("put");
            }
        })
    };
    let during = builder("/app/cfg/", &errors)
        .page_size(500)
        .start(server.client().await)
        .await
        .expect("start");
    let first = during.snapshot();
    writer.await.expect("writer");
    let (_, then) = etcd_state(&mut client, "/app/cfg/", first.revision()).await;
    assert_eq!(contents(&first), then, "five pages, one revision");
    assert_eq!(first.version(), 1);
    println!(
        "initial load: 2500 keys in 1 version at revision {etcd_at}; a start in 5 pages during \
         300 writes equals etcd's state at its revision {}",
        first.revision()
    );
    during.shutdown().await;
    replica.shutdown().await;
}

/// Accounts whose balances always sum to `TOTAL`; every transaction moves
/// money or closes and reopens an account, so a half-applied one breaks the sum.
const ACCOUNTS: u64 = 16;
const TOTAL: u64 = ACCOUNTS * 1000;

fn sum_of(snapshot: &Snapshot<Arc<str>, bytes::Bytes>) -> u64 {
    snapshot
        .values()
        .map(|v| std::str::from_utf8(v).unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn readers_never_see_half_a_transaction() {
    const TXNS: usize = 3000;
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let prefix = "/bank/";
    let mut balances: BTreeMap<String, u64> = (0..ACCOUNTS)
        .map(|i| (format!("{prefix}acct-{i}"), 1000))
        .collect();
    let initial: Vec<(String, String)> = balances
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    put_all(&mut client, &initial).await;

    let (replica, errors) = start(&server.endpoint(), prefix).await;
    let map: Arc<ReplicaMap<bytes::Bytes>> = Arc::clone(replica.map());
    let done = Arc::new(AtomicBool::new(false));
    // Two readers take snapshots as fast as they can; a third waits on the
    // map's watcher. Each checks the sum on every version it sees.
    let mut readers = Vec::new();
    for watcher in [false, false, true] {
        let (map, done) = (Arc::clone(&map), Arc::clone(&done));
        readers.push(thread::spawn(move || {
            let mut last = 0;
            let mut checked = Vec::new();
            let mut watch = map.watch();
            while !done.load(Ordering::Relaxed) {
                let snapshot = if watcher {
                    match watch.wait_timeout(Duration::from_millis(50)) {
                        Some(snapshot) => snapshot,
                        None => continue,
                    }
                } else {
                    map.snapshot()
                };
                if snapshot.version() != last {
                    assert!(
                        snapshot.version() > last,
                        "versions went back: {} after {last}",
                        snapshot.version()
                    );
                    last = snapshot.version();
                    let sum = sum_of(&snapshot);
                    assert_eq!(sum, TOTAL, "version {last} shows half a transaction");
                    checked.push(last);
                }
                if !watcher {
                    thread::yield_now();
                }
            }
            checked
        }));
    }
    // And the pairs: each revision's version, never another's.
    let pairs_checked = Arc::new(AtomicU64::new(0));

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next_id = ACCOUNTS;
    let mut last_revision = 0;
    let mut kinds = [0usize; 3];
    for _ in 0..TXNS {
        let keys: Vec<String> = balances.keys().cloned().collect();
        let kind = rng.below(10);
        let ops = if kind < 6 {
            // Transfer between two accounts.
            let a = &keys[rng.below(keys.len() as u64) as usize];
            let b = &keys[rng.below(keys.len() as u64) as usize];
            if a == b {
                continue;
            }
            kinds[0] += 1;
            let amount = rng.below(balances[a] + 1);
            *balances.get_mut(a).unwrap() -= amount;
            *balances.get_mut(b).unwrap() += amount;
            vec![
                TxnOp::put(a.as_str(), balances[a].to_string(), None),
                TxnOp::put(b.as_str(), balances[b].to_string(), None),
            ]
        } else if kind < 9 {
            // Three-way rotation of everything three accounts hold.
            kinds[1] += 1;
            let mut pick: Vec<&String> = Vec::new();
            while pick.len() < 3 {
                let k = &keys[rng.below(keys.len() as u64) as usize];
                if !pick.contains(&k) {
                    pick.push(k);
                }
            }
            let held: Vec<u64> = pick.iter().map(|k| balances[*k]).collect();
            let mut ops = Vec::new();
            for (i, key) in pick.iter().enumerate() {
                let value = held[(i + 1) % 3];
                balances.insert((*key).clone(), value);
                ops.push(TxnOp::put(key.as_str(), value.to_string(), None));
            }
            ops
        } else {
            // Close an account and open a new one with its balance: a delete
            // and a put in one revision.
            kinds[2] += 1;
            let old = keys[rng.below(keys.len() as u64) as usize].clone();
            let balance = balances.remove(&old).unwrap();
            let new = format!("{prefix}acct-{next_id}");
            next_id += 1;
            balances.insert(new.clone(), balance);
            vec![
                TxnOp::delete(old.as_str(), None),
                TxnOp::put(new.as_str(), balance.to_string(), None),
            ]
        };
        last_revision = txn(&mut client, ops).await;
        // Every fiftieth transaction, check a pair against etcd's history.
        if last_revision % 50 == 0 {
            let pair = replica.snapshot();
            assert_eq!(sum_of(&pair), TOTAL);
            let (_, at) = etcd_state(&mut client, prefix, pair.revision()).await;
            assert_eq!(contents(&pair), at, "pair at revision {}", pair.revision());
            pairs_checked.fetch_add(1, Ordering::Relaxed);
        }
    }
    let applied = kinds.iter().sum::<usize>();
    let last = caught_up(&replica, last_revision).await;
    done.store(true, Ordering::Relaxed);
    let mut per_reader = Vec::new();
    let mut checked = std::collections::BTreeSet::new();
    for reader in readers {
        let seen = reader.join().expect("a reader saw a broken invariant");
        per_reader.push(seen.len());
        checked.extend(seen);
    }
    let (_, expected) = etcd_state(&mut client, prefix, 0).await;
    assert_eq!(contents(&last), expected);
    // One version per transaction: no revision was split over two versions.
    assert_eq!(map.version(), 1 + applied as u64);
    assert_eq!(replica.stats().revisions, applied as u64);
    assert!(errors.all().is_empty(), "{:?}", errors.all());
    println!(
        "atomicity: {applied} transactions ({} transfers, {} rotations, {} close-and-reopen) \
         applied as {applied} versions; 3 readers checked the sum on {} distinct versions \
         (per reader {per_reader:?}), never broken; {} (version, revision) pairs matched \
         etcd's history",
        kinds[0],
        kinds[1],
        kinds[2],
        checked.len(),
        pairs_checked.load(Ordering::Relaxed),
    );
    replica.shutdown().await;
}

#[tokio::test]
async fn a_revision_too_large_for_one_response_is_applied_whole() {
    const KEYS: usize = 4000;
    // etcd splits a watch response into fragments past --max-request-bytes
    // plus 512 KiB of gRPC allowance: 576 KiB here.
    let server = EtcdServer::start_with(&["--max-request-bytes", "65536"]).await;
    let mut client = server.client().await;
    let prefix = "/frag/";
    let keys: Vec<(String, String)> = (0..KEYS)
        .map(|i| (format!("{prefix}{i:05}-{}", "x".repeat(200)), i.to_string()))
        .collect();
    put_all(&mut client, &keys).await;
    let (replica, errors) = start(&server.endpoint(), prefix).await;
    let map = Arc::clone(replica.map());
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (map, done) = (Arc::clone(&map), Arc::clone(&done));
        thread::spawn(move || {
            let mut seen = BTreeMap::new();
            while !done.load(Ordering::Relaxed) {
                let len = map.len();
                assert!(len == KEYS || len == 0, "saw {len} keys: half a revision");
                *seen.entry(len).or_insert(0u64) += 1;
                thread::yield_now();
            }
            seen
        })
    };
    // One revision deletes 4,000 keys: ~900 KB of events.
    let deleted = client
        .delete(prefix, Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("delete the prefix");
    assert_eq!(deleted.deleted(), KEYS as i64);
    let at = deleted.header().expect("header").revision();
    let after = caught_up(&replica, at).await;
    done.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("the reader saw half a revision");
    assert!(after.is_empty());
    assert_eq!(map.version(), 2, "the whole delete is one version");
    let stats = replica.stats();
    assert!(stats.fragments >= 1, "etcd did not fragment: {stats:?}");
    assert_eq!(stats.revisions, 1);
    assert!(errors.all().is_empty(), "{:?}", errors.all());
    println!(
        "fragments: one revision of {KEYS} deletes arrived in {} fragment(s) + 1, applied as 1 version; \
         reader saw key counts {seen:?}",
        stats.fragments
    );
    replica.shutdown().await;
}

/// A random put or delete under `prefix` over `keys` keys; returns its revision,
/// or `None` if it changed nothing (a delete of an absent key makes no revision).
async fn random_write(client: &mut Client, rng: &mut Rng, prefix: &str, keys: u64) -> Option<i64> {
    let key = format!("{prefix}k{}", rng.below(keys));
    if rng.below(4) == 0 {
        let response = client.delete(key, None).await.ok()?;
        (response.deleted() > 0).then(|| response.header().expect("header").revision())
    } else {
        let value = format!("v{}", rng.below(1_000_000));
        let response = client.put(key, value, None).await.ok()?;
        Some(response.header().expect("header").revision())
    }
}

#[tokio::test]
async fn the_revision_is_etcds_and_each_pair_matches_etcds_history() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let prefix = "/rev/";
    let (replica, errors) = start(&server.endpoint(), prefix).await;
    let mut rng = Rng(7);
    let mut pairs = Vec::new();
    for i in 0..400 {
        random_write(&mut client, &mut rng, prefix, 30).await;
        if i % 5 == 0 {
            pairs.push(replica.snapshot());
        }
    }
    // A transaction that also compares: applied as one revision too.
    let guarded = Txn::new()
        .when([Compare::version(
            format!("{prefix}k0"),
            CompareOp::Greater,
            -1,
        )])
        .and_then([
            TxnOp::put(format!("{prefix}k1"), "t", None),
            TxnOp::put(format!("{prefix}k2"), "t", None),
        ]);
    let last = client
        .txn(guarded)
        .await
        .expect("txn")
        .header()
        .expect("header")
        .revision();
    caught_up(&replica, last).await;
    assert_eq!(replica.revision(), etcd_revision(&mut client).await);
    pairs.push(replica.snapshot());
    let mut distinct = 0;
    for pair in &pairs {
        let (_, at) = etcd_state(&mut client, prefix, pair.revision()).await;
        assert_eq!(contents(pair), at, "pair at revision {}", pair.revision());
        distinct += 1;
    }
    assert!(errors.all().is_empty(), "{:?}", errors.all());
    println!(
        "revision: replica at {last} = etcd's; {distinct} sampled (version, revision) pairs \
         equal etcd's range at their revision"
    );
    replica.shutdown().await;
}

#[tokio::test]
async fn an_etcd_restart_mid_stream_loses_and_repeats_nothing() {
    let mut server = EtcdServer::start().await;
    let mut client = server.client().await;
    let prefix = "/restart/";
    let (replica, errors) = start(&server.endpoint(), prefix).await;
    let first = replica.revision();
    let map = Arc::clone(replica.map());
    let mut rng = Rng(42);
    // A writer task keeps writing, through the crash, retrying each write
    // until the server answers again.
    let writer_endpoint = server.endpoint();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut writer = Client::connect([writer_endpoint], None)
                .await
                .expect("connect");
            let mut writes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if random_write(&mut writer, &mut rng, prefix, 50)
                    .await
                    .is_some()
                {
                    writes += 1;
                } else {
                    // A no-op delete, or the server is down: do not spin.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            writes
        })
    };
    // Let the stream run, crash the server mid-stream, bring it back.
    while map.version() < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before_crash = map.version();
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await;
    // Writes go on after the restart; then stop and compare.
    let resumed_from = map.version();
    while map.version() < resumed_from + 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    let final_revision = etcd_revision(&mut client).await;
    let last = caught_up(&replica, final_revision).await;
    let (_, expected) = etcd_state(&mut client, prefix, 0).await;
    assert_eq!(contents(&last), expected, "converged to etcd's contents");
    assert_eq!(last.revision(), final_revision);
    // Every revision since the start changed the prefix: one version each,
    // none missing (lost) and none extra (applied twice), no re-read.
    let stats = replica.stats();
    assert_eq!(stats.resyncs, 0, "{stats:?}");
    assert_eq!(map.version(), 1 + (final_revision - first) as u64);
    assert_eq!(stats.revisions, (final_revision - first) as u64);
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(
        errors.all().iter().all(|e| !e.contains("decode")),
        "{:?}",
        errors.all()
    );
    println!(
        "restart: {writes} acknowledged writes, {} revisions from {first} to {final_revision} \
         (crash at version {before_crash}), applied as as many versions after {} reconnect(s)",
        final_revision - first,
        stats.reconnects
    );
    replica.shutdown().await;
}

#[tokio::test]
async fn a_partition_resumes_and_a_compaction_past_it_re_reads_the_prefix() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let prefix = "/part/";
    let keys: Vec<(String, String)> = (0..50)
        .map(|i| (format!("{prefix}k{i}"), "0".into()))
        .collect();
    put_all(&mut client, &keys).await;
    let proxy = Proxy::start(server.address());
    let (replica, errors) = start(&proxy.endpoint(), prefix).await;
    let map = Arc::clone(replica.map());
    let mut rng = Rng(3);

    // 1. Partition, 100 writes, heal: the watch resumes where it stopped.
    proxy.cut();
    let v0 = map.version();
    let r0 = replica.revision();
    let mut last = r0;
    for _ in 0..100 {
        if let Some(revision) = random_write(&mut client, &mut rng, prefix, 60).await {
            last = revision;
        }
    }
    proxy.restore();
    caught_up(&replica, last).await;
    assert_eq!(
        map.version(),
        v0 + (last - r0) as u64,
        "one version per revision"
    );
    assert_eq!(replica.stats().resyncs, 0);
    assert_eq!(
        contents(&map.snapshot()),
        etcd_state(&mut client, prefix, 0).await.1
    );

    // 2. Partition, writes, compaction past the replica's revision, heal: it
    //    re-reads the prefix and publishes it as one version.
    proxy.cut();
    let v1 = map.version();
    let r1 = replica.revision();
    let mut watcher_seen = Vec::new();
    let mut watcher = map.watch();
    for _ in 0..100 {
        if let Some(revision) = random_write(&mut client, &mut rng, prefix, 60).await {
            last = revision;
        }
    }
    client
        .compact(
            last,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .expect("compact");
    proxy.restore();
    let resynced = caught_up(&replica, last).await;
    if let Some(next) = watcher.try_next() {
        watcher_seen.push(next.version());
    }
    let stats = replica.stats();
    assert_eq!(stats.resyncs, 1, "{stats:?}");
    assert_eq!(map.version(), v1 + 1, "the re-read is one version");
    assert_eq!(watcher_seen, [v1 + 1]);
    assert_eq!(resynced.revision(), last);
    assert_eq!(
        contents(&resynced),
        etcd_state(&mut client, prefix, 0).await.1
    );
    assert!(
        errors.all().iter().any(|e| e.contains("compacted")),
        "{:?}",
        errors.all()
    );

    // 3. And it follows the watch again afterwards.
    let put = client
        .put(format!("{prefix}after"), "1", None)
        .await
        .expect("put");
    let at = put.header().expect("header").revision();
    assert!(caught_up(&replica, at).await.get("after").is_some());
    assert_eq!(map.version(), v1 + 2);
    println!(
        "partition: {} revisions resumed as {} versions; compaction at {last} (replica at {r1}) \
         re-read as 1 version; {} reconnects",
        r1 - r0,
        v1 - v0,
        replica.stats().reconnects
    );
    replica.shutdown().await;
}

#[tokio::test]
async fn a_hundred_replicas_of_one_prefix_end_identical() {
    const REPLICAS: usize = 100;
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let prefix = "/fleet/";
    let mut rng = Rng(99);
    let mut replicas = Vec::new();
    // Replicas join while the prefix changes: each starts at another revision.
    for _ in 0..REPLICAS {
        for _ in 0..3 {
            random_write(&mut client, &mut rng, prefix, 40).await;
        }
        replicas.push(start(&server.endpoint(), prefix).await);
    }
    for _ in 0..200 {
        random_write(&mut client, &mut rng, prefix, 40).await;
    }
    let final_revision = etcd_revision(&mut client).await;
    let (_, expected) = etcd_state(&mut client, prefix, 0).await;
    let mut first_revisions = Vec::new();
    for (replica, errors) in &replicas {
        let last = caught_up(replica, final_revision).await;
        assert_eq!(last.revision(), final_revision);
        assert_eq!(contents(&last), expected);
        assert!(errors.all().is_empty(), "{:?}", errors.all());
        first_revisions.push(final_revision - replica.stats().revisions as i64);
    }
    first_revisions.dedup();
    println!(
        "fleet: {REPLICAS} replicas started at {} distinct revisions, all equal to etcd's {} keys \
         at revision {final_revision}",
        first_revisions.len(),
        expected.len()
    );
    for (replica, _) in replicas {
        replica.shutdown().await;
    }
}

#[tokio::test]
async fn typed_values_and_decode_errors_through_a_real_watch() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let prefix = "/limits/";
    client.put("/limits/api", "100", None).await.expect("put");
    client.put("/limits/bad", "lots", None).await.expect("put");
    let errors = Errors::default();
    let sink = errors.clone();
    let replica = Replica::builder(prefix)
        .decode(|_key, raw: &[u8]| -> Result<u32, BoxError> {
            Ok(std::str::from_utf8(raw)?.parse()?)
        })
        .on_error(move |error| sink.push(error.to_string()))
        .start(server.client().await)
        .await
        .expect("start");
    assert_eq!(replica.map().get_cloned("api"), Some(100));
    assert_eq!(replica.map().get_cloned("bad"), None, "never decoded");
    assert_eq!(errors.all().len(), 1);

    let revision = client
        .put("/limits/api", "a hundred", None)
        .await
        .expect("put")
        .header()
        .expect("header")
        .revision();
    let seen = caught_up(&replica, revision).await;
    assert_eq!(seen.get("api"), Some(&100), "kept the last good value");
    let all = errors.all();
    assert!(
        all[1].contains("\"api\"") && all[1].contains("kept its previous value"),
        "{all:?}"
    );
    let revision = txn(
        &mut client,
        vec![
            TxnOp::put("/limits/api", "200", None),
            TxnOp::put("/limits/bad", "7", None),
        ],
    )
    .await;
    let seen = caught_up(&replica, revision).await;
    assert_eq!((seen.get("api"), seen.get("bad")), (Some(&200), Some(&7)));
    assert_eq!(replica.stats().decode_errors, 2);
    replica.shutdown().await;
}

#[tokio::test]
async fn shutdown_and_drop_close_the_watch() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let watchers = || server.metric("etcd_debugging_mvcc_watcher_total");
    let until = |want: f64| async move {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while watchers() != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd reports {} watchers, want {want}",
                watchers()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (a, _) = start(&server.endpoint(), "/a/").await;
    let (b, _) = start(&server.endpoint(), "/b/").await;
    until(2.0).await;

    let map = Arc::clone(a.map());
    a.shutdown().await;
    // The task has ended: it held the only other reference to the map.
    assert_eq!(Arc::strong_count(&map), 1);
    until(1.0).await;
    let version = map.version();
    client.put("/a/k", "1", None).await.expect("put");

    let b_map = Arc::clone(b.map());
    drop(b);
    until(0.0).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while Arc::strong_count(&b_map) > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped replica's task lives on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(map.version(), version, "a stopped replica changes nothing");
}

/// Measurement, run by hand (it reports wall times, so one measurement at a time):
///
/// ```sh
/// flock /work/.measure.lock cargo test --release --features etcd --test etcd_replica \
///     -- --ignored --nocapture resync_of_100k_keys
/// ```
///
/// How long a replica takes to read and publish 100,000 keys: at start, and
/// when a compaction past its revision forces a re-read (timed from the
/// compaction report to the re-read version being published).
#[tokio::test]
#[ignore = "a measurement: run by hand, see its doc comment"]
async fn resync_of_100k_keys() {
    const KEYS: usize = 100_000;
    const RUNS: usize = 5;
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let prefix = "/big/";
    let pairs: Vec<(String, String)> = (0..KEYS)
        .map(|i| {
            (
                format!("{prefix}service-{i:06}"),
                format!(
                    "10.{}.{}.{}:8080 weight=1",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ),
            )
        })
        .collect();
    put_all(&mut client, &pairs).await;
    let proxy = Proxy::start(server.address());
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    for page_size in [10_000, 0] {
        let mut starts = Vec::new();
        let mut resyncs = Vec::new();
        for _ in 0..RUNS {
            let compacted_at = Arc::new(Mutex::new(None));
            let mark = Arc::clone(&compacted_at);
            let t0 = std::time::Instant::now();
            let replica = Replica::builder(prefix)
                .page_size(page_size)
                .retry(Duration::from_millis(10), Duration::from_millis(50))
                .on_error(move |error| {
                    if let readmostly::replica::ReplicaError::Compacted { .. } = error {
                        *mark.lock().unwrap() = Some(std::time::Instant::now());
                    }
                })
                .start(
                    Client::connect([proxy.endpoint()], None)
                        .await
                        .expect("connect"),
                )
                .await
                .expect("start");
            starts.push(t0.elapsed());
            assert_eq!(replica.map().len(), KEYS);
            proxy.cut();
            // Two revisions, compacted up to the second: the replica needs the
            // first, which is gone.
            let key = format!("{prefix}service-000000");
            client.put(key.as_str(), "moved", None).await.expect("put");
            let put = client.put(key.as_str(), "back", None).await.expect("put");
            let at = put.header().expect("header").revision();
            client.compact(at, None).await.expect("compact");
            proxy.restore();
            let seen = caught_up(&replica, at).await;
            let resynced = std::time::Instant::now();
            let from = compacted_at.lock().unwrap().expect("compaction reported");
            resyncs.push(resynced - from);
            assert_eq!(seen.len(), KEYS);
            assert_eq!(replica.stats().resyncs, 1);
            replica.shutdown().await;
        }
        println!(
            "{KEYS} keys, pages of {page_size}: start median {:?} {starts:?}; re-sync after compaction median {:?} {resyncs:?}",
            median(starts.clone()),
            median(resyncs.clone()),
        );
    }
}

#[tokio::test]
async fn map_watchers_wake_on_each_applied_revision() {
    let server = EtcdServer::start().await;
    let mut client = server.client().await;
    let prefix = "/watch/";
    let (replica, _) = start(&server.endpoint(), prefix).await;
    let mut watcher = replica.map().watch();
    for i in 0..50u64 {
        let ops = vec![
            TxnOp::put(format!("{prefix}a"), i.to_string(), None),
            TxnOp::put(format!("{prefix}b"), i.to_string(), None),
        ];
        let revision = txn(&mut client, ops).await;
        let woken = tokio::time::timeout(PATIENCE, watcher.changed())
            .await
            .expect("the watcher woke");
        // The version it wakes with holds this revision, whole.
        assert_eq!(woken.version(), 2 + i);
        let value = i.to_string();
        assert_eq!(woken.get("a").map(|v| &v[..]), Some(value.as_bytes()));
        assert_eq!(woken.get("b").map(|v| &v[..]), Some(value.as_bytes()));
        // And the pair for it follows.
        let pair = caught_up(&replica, revision).await;
        assert_eq!((pair.revision(), pair.version()), (revision, 2 + i));
    }
    replica.shutdown().await;
}
