//! Differential fuzzing: arbitrary operation sequences run on `SyncMap`,
//! `ClassicSyncMap` (the `SyncMap` scripts, restricted to its API) and
//! `SnapshotMap`, and on `std::collections::HashMap` as the model; every result,
//! the length after every operation and the final contents must agree, and every
//! key and value must be dropped exactly once when the map goes.
//!
//! A proptest harness on stable (no nightly, no libFuzzer): scripts are generated
//! from scratch or by splicing random operations into a seed from the corpus in
//! `src/tests/fuzz/<map>/*.ops` (a line per operation; see the `.ops` files), and
//! every corpus file is also replayed as is. A failing script is shrunk and
//! printed in the corpus format, ready to be saved as a new seed; proptest also
//! records its seed in `src/tests/fuzz/regressions/`.
//!
//! Budget: by default a fixed number of cases (cheap, for `cargo test`). With
//! `READMOSTLY_FUZZ_SECS=N` each target runs for N seconds and prints how many
//! scripts it executed (`.ci/reliability.sh` does this in release mode).
//!
//! Keys and values are `Tracked` (`src/tests/common`): the drop ledger catches
//! double drops and leaks, including garbage still pending in the epoch
//! collector, which the test flushes and waits for.
mod common;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{flush_until, flush_until_quiet, DropLedger, Tracked};
use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, TestCaseError, TestError, TestRng, TestRunner,
};
use readmostly::classic::{ClassicPinned, ClassicSyncMap};
use readmostly::reclaim::DefaultReclaim;
use readmostly::{Change, LoadOrStore, Pinned, Snapshot, SnapshotMap, SyncMap};
use std::collections::hash_map::RandomState;

/// Keys are drawn from `0..KEYS`: few, so that scripts revisit removed keys.
const KEYS: u64 = 24;
/// How long to flush the epoch collector for garbage to be freed before calling
/// it a leak. Short: a failing case is re-run many times while it is shrunk.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

type Model = HashMap<u64, u64>;

// ---------------------------------------------------------------------------
// The corpus format: one operation per line, `name arg arg …`, `#` comments.
// ---------------------------------------------------------------------------

/// A parsed line: the operation's name and its numeric arguments.
fn parse_line(line: &str) -> Option<Result<(String, Vec<u64>), String>> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return None;
    }
    let mut words = line.split_whitespace();
    let name = words.next()?.to_string();
    let args: Result<Vec<u64>, String> = words
        .map(|w| w.parse().map_err(|_| format!("`{line}`: bad number `{w}`")))
        .collect();
    Some(args.map(|args| (name, args)))
}

fn parse_script<Op>(
    text: &str,
    parse: impl Fn(&str, &[u64]) -> Option<Op>,
) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(parsed) = parse_line(line) {
            let (name, args) = parsed.map_err(|e| format!("line {}: {e}", n + 1))?;
            let op = parse(&name, &args)
                .ok_or_else(|| format!("line {}: unknown operation `{}`", n + 1, line.trim()))?;
            ops.push(op);
        }
    }
    Ok(ops)
}

/// The corpus files of one map, sorted by name.
fn corpus_files(map: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/tests/fuzz")
        .join(map);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ops"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("corpus file");
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                text,
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

/// A script, printed in the corpus format (proptest shows failing inputs with
/// `Debug`, so a shrunk failure can be pasted into a new corpus file).
#[derive(Clone)]
struct Script<Op>(Vec<Op>);

impl<Op: fmt::Display> fmt::Debug for Script<Op> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "script ({} ops):", self.0.len())?;
        for op in &self.0 {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

/// Where proptest records the seeds of failures, per target.
fn regressions_file(name: &str) -> &'static str {
    match name {
        "sync_map" => concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/tests/fuzz/regressions/sync_map.txt"
        ),
        "classic_sync_map" => concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/tests/fuzz/regressions/classic_sync_map.txt"
        ),
        "snapshot_map" => concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/tests/fuzz/regressions/snapshot_map.txt"
        ),
        other => panic!("no regressions file for {other}"),
    }
}

fn fuzz_config(cases: u32, name: &str) -> Config {
    Config {
        cases,
        max_shrink_iters: 1024,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions_file(
            name,
        )))),
        ..Config::default()
    }
}

/// Runs `test` on scripts from `strategy`: a fixed number of cases, or for
/// `READMOSTLY_FUZZ_SECS` seconds. Returns the number of scripts executed.
fn fuzz<Op: fmt::Display + Clone + fmt::Debug + 'static>(
    name: &str,
    strategy: impl Strategy<Value = Script<Op>>,
    test: impl Fn(&[Op]) + Sync,
) -> usize {
    let executions = AtomicUsize::new(0);
    let budget = std::env::var("READMOSTLY_FUZZ_SECS")
        .ok()
        .map(|s| Duration::from_secs(s.parse().expect("READMOSTLY_FUZZ_SECS: seconds")));
    let start = Instant::now();
    let round = |cases: u32| {
        let mut runner = TestRunner::new_with_rng(
            fuzz_config(cases, name),
            TestRng::from_seed(
                proptest::test_runner::RngAlgorithm::ChaCha,
                &seed_bytes(executions.load(Ordering::Relaxed) as u64 ^ time_seed()),
            ),
        );
        let result = runner.run(&strategy, |script| {
            executions.fetch_add(1, Ordering::Relaxed);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&script.0)))
                .map_err(|panic| TestCaseError::fail(common::panic_message(&*panic)))
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, script)) => {
                panic!("{name}: fuzzing found a failing script: {why}\n{script:?}")
            }
            Err(e) => panic!("{name}: {e}"),
        }
    };
    match budget {
        None => round(if cfg!(miri) { 2 } else { 64 }),
        Some(budget) => {
            while start.elapsed() < budget {
                round(128);
            }
        }
    }
    let n = executions.load(Ordering::Relaxed);
    println!(
        "fuzz {name}: {n} scripts executed in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    n
}

fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let word = seed
            .wrapping_add(i as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// Scripts: generated from scratch, or a corpus seed with random operations
/// spliced in at a random place.
fn scripts<Op: Clone + fmt::Debug + fmt::Display + 'static>(
    corpus: Vec<Vec<Op>>,
    op: impl Strategy<Value = Op> + Clone + 'static,
) -> impl Strategy<Value = Script<Op>> {
    // Shorter under Miri, which interprets every step.
    let (fresh_len, extra_len) = if cfg!(miri) { (30, 10) } else { (120, 40) };
    let fresh = prop::collection::vec(op.clone(), 0..fresh_len).prop_map(Script);
    let spliced = (
        0..corpus.len(),
        prop::collection::vec(op, 0..extra_len),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(seed, extra, at)| {
            let mut ops = corpus[seed].clone();
            let at = at.index(ops.len() + 1);
            ops.splice(at..at, extra);
            Script(ops)
        });
    prop_oneof![3 => fresh, 1 => spliced]
}

/// Waits until every tracked key and value is dropped, and checks none was
/// dropped twice.
fn assert_all_dropped(ledger: &DropLedger) {
    flush_until(
        || ledger.alive() == 0,
        FLUSH_TIMEOUT,
        &format!("{} tracked keys/values never dropped", ledger.alive()),
    );
    ledger.assert_alive(0);
}

// ---------------------------------------------------------------------------
// SyncMap.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum SyncOp {
    /// `Pinned::insert` (`owned: false`) or `SyncMap::insert`.
    Insert {
        k: u64,
        v: u64,
        owned: bool,
    },
    Get(u64),
    GetCloned(u64),
    GetKeyValue(u64),
    Contains(u64),
    Remove {
        k: u64,
        owned: bool,
    },
    RemoveIf {
        k: u64,
        v: u64,
    },
    GetOrInsert {
        k: u64,
        v: u64,
        with: bool,
    },
    /// `expected: None` expects the current value (an exchange that succeeds).
    CompareExchange {
        k: u64,
        expected: Option<u64>,
        new: u64,
    },
    Update {
        k: u64,
        add: u64,
    },
    /// Keeps values not divisible by the argument.
    Retain(u64),
    Clear,
    Promote,
    Flush,
    Iter,
    Extend(Vec<(u64, u64)>),
    /// Pins a guard, reads `k` through it, and holds both until the matching
    /// `End`: the value read must stay valid and unchanged meanwhile.
    Hold(u64),
    End,
}

impl fmt::Display for SyncOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncOp::Insert { k, v, owned: false } => write!(f, "insert {k} {v}"),
            SyncOp::Insert { k, v, owned: true } => write!(f, "insert_owned {k} {v}"),
            SyncOp::Get(k) => write!(f, "get {k}"),
            SyncOp::GetCloned(k) => write!(f, "get_cloned {k}"),
            SyncOp::GetKeyValue(k) => write!(f, "get_key_value {k}"),
            SyncOp::Contains(k) => write!(f, "contains {k}"),
            SyncOp::Remove { k, owned: false } => write!(f, "remove {k}"),
            SyncOp::Remove { k, owned: true } => write!(f, "remove_owned {k}"),
            SyncOp::RemoveIf { k, v } => write!(f, "remove_if {k} {v}"),
            SyncOp::GetOrInsert { k, v, with: false } => write!(f, "get_or_insert {k} {v}"),
            SyncOp::GetOrInsert { k, v, with: true } => write!(f, "get_or_insert_with {k} {v}"),
            SyncOp::CompareExchange {
                k,
                expected: Some(e),
                new,
            } => write!(f, "cas {k} {e} {new}"),
            SyncOp::CompareExchange {
                k,
                expected: None,
                new,
            } => write!(f, "cas_current {k} {new}"),
            SyncOp::Update { k, add } => write!(f, "update {k} {add}"),
            SyncOp::Retain(m) => write!(f, "retain {m}"),
            SyncOp::Clear => f.write_str("clear"),
            SyncOp::Promote => f.write_str("promote"),
            SyncOp::Flush => f.write_str("flush"),
            SyncOp::Iter => f.write_str("iter"),
            SyncOp::Extend(pairs) => {
                f.write_str("extend")?;
                for (k, v) in pairs {
                    write!(f, " {k} {v}")?;
                }
                Ok(())
            }
            SyncOp::Hold(k) => write!(f, "hold {k}"),
            SyncOp::End => f.write_str("end"),
        }
    }
}

fn parse_sync(name: &str, a: &[u64]) -> Option<SyncOp> {
    Some(match (name, a) {
        ("insert", &[k, v]) => SyncOp::Insert { k, v, owned: false },
        ("insert_owned", &[k, v]) => SyncOp::Insert { k, v, owned: true },
        ("get", &[k]) => SyncOp::Get(k),
        ("get_cloned", &[k]) => SyncOp::GetCloned(k),
        ("get_key_value", &[k]) => SyncOp::GetKeyValue(k),
        ("contains", &[k]) => SyncOp::Contains(k),
        ("remove", &[k]) => SyncOp::Remove { k, owned: false },
        ("remove_owned", &[k]) => SyncOp::Remove { k, owned: true },
        ("remove_if", &[k, v]) => SyncOp::RemoveIf { k, v },
        ("get_or_insert", &[k, v]) => SyncOp::GetOrInsert { k, v, with: false },
        ("get_or_insert_with", &[k, v]) => SyncOp::GetOrInsert { k, v, with: true },
        ("cas", &[k, e, new]) => SyncOp::CompareExchange {
            k,
            expected: Some(e),
            new,
        },
        ("cas_current", &[k, new]) => SyncOp::CompareExchange {
            k,
            expected: None,
            new,
        },
        ("update", &[k, add]) => SyncOp::Update { k, add },
        ("retain", &[m]) if m > 0 => SyncOp::Retain(m),
        ("clear", []) => SyncOp::Clear,
        ("promote", []) => SyncOp::Promote,
        ("flush", []) => SyncOp::Flush,
        ("iter", []) => SyncOp::Iter,
        ("extend", pairs) if pairs.len() % 2 == 0 => {
            SyncOp::Extend(pairs.chunks(2).map(|p| (p[0], p[1])).collect())
        }
        ("hold", &[k]) => SyncOp::Hold(k),
        ("end", []) => SyncOp::End,
        _ => return None,
    })
}

fn sync_op() -> impl Strategy<Value = SyncOp> + Clone {
    let k = 0..KEYS;
    let v = 0u64..64;
    prop_oneof![
        6 => (k.clone(), v.clone(), any::<bool>())
            .prop_map(|(k, v, owned)| SyncOp::Insert { k, v, owned }),
        4 => k.clone().prop_map(SyncOp::Get),
        1 => k.clone().prop_map(SyncOp::GetCloned),
        1 => k.clone().prop_map(SyncOp::GetKeyValue),
        1 => k.clone().prop_map(SyncOp::Contains),
        4 => (k.clone(), any::<bool>()).prop_map(|(k, owned)| SyncOp::Remove { k, owned }),
        2 => (k.clone(), v.clone()).prop_map(|(k, v)| SyncOp::RemoveIf { k, v }),
        3 => (k.clone(), v.clone(), any::<bool>())
            .prop_map(|(k, v, with)| SyncOp::GetOrInsert { k, v, with }),
        3 => (k.clone(), prop::option::weighted(0.5, v.clone()), v.clone())
            .prop_map(|(k, expected, new)| SyncOp::CompareExchange { k, expected, new }),
        2 => (k.clone(), 1u64..8).prop_map(|(k, add)| SyncOp::Update { k, add }),
        1 => (2u64..5).prop_map(SyncOp::Retain),
        1 => Just(SyncOp::Clear),
        2 => Just(SyncOp::Promote),
        1 => Just(SyncOp::Flush),
        1 => Just(SyncOp::Iter),
        1 => prop::collection::vec((k.clone(), v), 0..8).prop_map(SyncOp::Extend),
        2 => k.prop_map(SyncOp::Hold),
        2 => Just(SyncOp::End),
    ]
}

type SMap = SyncMap<Tracked<u64>, Tracked<u64>>;
type SPinned<'a> = Pinned<
    'a,
    Tracked<u64>,
    Tracked<u64>,
    std::collections::hash_map::RandomState,
    readmostly::reclaim::DefaultReclaim,
>;

struct SyncRun<'a> {
    map: &'a SMap,
    model: Model,
    keys: &'a DropLedger,
    values: &'a DropLedger,
    step: usize,
}

impl SyncRun<'_> {
    /// Runs operations from `ops[*i..]` until an unmatched `End`, through
    /// `held` if a guard is held, else pinning per operation.
    fn block(&mut self, ops: &[SyncOp], i: &mut usize, held: Option<&SPinned<'_>>) {
        while *i < ops.len() {
            let op = &ops[*i];
            *i += 1;
            self.step += 1;
            match op {
                SyncOp::End if held.is_some() => return,
                SyncOp::End => {}
                SyncOp::Hold(k) => {
                    let pinned = self.map.pin();
                    let seen = pinned.get(k);
                    assert_eq!(
                        seen.map(|v| v.payload),
                        self.model.get(k).copied(),
                        "hold {k}"
                    );
                    let snapshot = seen.map(|v| (v.id(), v.payload));
                    self.block(ops, i, Some(&pinned));
                    // The value read at `hold` is still valid, unchanged and not
                    // dropped, whatever happened to the key meanwhile.
                    if let (Some(value), Some((id, payload))) = (seen, snapshot) {
                        assert_eq!((value.id(), value.payload), (id, payload), "held value");
                        assert!(
                            !self.values.is_dropped(id),
                            "held value #{id} dropped under a guard"
                        );
                    }
                }
                op => match held {
                    Some(pinned) => self.apply(op, pinned),
                    None => self.apply(op, &self.map.pin()),
                },
            }
            assert_eq!(
                self.map.len(),
                self.model.len(),
                "len after step {} ({op})",
                self.step
            );
        }
    }

    fn apply(&mut self, op: &SyncOp, pinned: &SPinned<'_>) {
        let (map, model, keys, values) = (self.map, &mut self.model, self.keys, self.values);
        let payload = |v: Option<&Tracked<u64>>| v.map(|v| v.payload);
        let at = self.step;
        match *op {
            SyncOp::Insert { k, v, owned } => {
                let (key, value) = (keys.track(k), values.track(v));
                let got = if owned {
                    map.insert(key, value).map(|v| v.payload)
                } else {
                    payload(pinned.insert(key, value))
                };
                assert_eq!(got, model.insert(k, v), "step {at}: {op}");
            }
            SyncOp::Get(k) => assert_eq!(
                payload(pinned.get(&k)),
                model.get(&k).copied(),
                "step {at}: {op}"
            ),
            SyncOp::GetCloned(k) => {
                assert_eq!(
                    map.get_cloned(&k).map(|v| v.payload),
                    model.get(&k).copied(),
                    "step {at}: {op}"
                )
            }
            SyncOp::GetKeyValue(k) => assert_eq!(
                pinned
                    .get_key_value(&k)
                    .map(|(k, v)| (k.payload, v.payload)),
                model.get_key_value(&k).map(|(k, v)| (*k, *v)),
                "step {at}: {op}"
            ),
            SyncOp::Contains(k) => {
                assert_eq!(
                    pinned.contains_key(&k),
                    model.contains_key(&k),
                    "step {at}: {op}"
                );
                assert_eq!(
                    map.contains_key(&k),
                    model.contains_key(&k),
                    "step {at}: {op}"
                );
            }
            SyncOp::Remove { k, owned } => {
                let got = if owned {
                    map.remove(&k).map(|v| v.payload)
                } else {
                    payload(pinned.remove(&k))
                };
                assert_eq!(got, model.remove(&k), "step {at}: {op}");
            }
            SyncOp::RemoveIf { k, v } => {
                let expected = match model.get(&k) {
                    Some(&current) if current == v => model.remove(&k),
                    _ => None,
                };
                assert_eq!(
                    payload(pinned.remove_if(&k, |x| x.payload == v)),
                    expected,
                    "step {at}: {op}"
                );
            }
            SyncOp::GetOrInsert { k, v, with } => {
                let got = if with {
                    let key = keys.track(k);
                    pinned.get_or_insert_with(key, || values.track(v))
                } else {
                    pinned.get_or_insert(keys.track(k), values.track(v))
                };
                let got = match got {
                    LoadOrStore::Loaded(x) => (false, x.payload),
                    LoadOrStore::Stored(x) => (true, x.payload),
                };
                let expected = match model.get(&k) {
                    Some(&current) => (false, current),
                    None => {
                        model.insert(k, v);
                        (true, v)
                    }
                };
                assert_eq!(got, expected, "step {at}: {op}");
            }
            SyncOp::CompareExchange { k, expected, new } => {
                let current = model.get(&k).copied();
                let expected = expected.or(current).unwrap_or(u64::MAX);
                let got = pinned
                    .compare_exchange(&k, &values.track(expected), values.track(new))
                    .map(|old| old.payload)
                    .map_err(|e| (e.current.map(|c| c.payload), e.new.payload));
                let want = match current {
                    Some(c) if c == expected => {
                        model.insert(k, new);
                        Ok(c)
                    }
                    _ => Err((current, new)),
                };
                assert_eq!(got, want, "step {at}: {op}");
            }
            SyncOp::Update { k, add } => {
                let got = payload(pinned.update(&k, |old| values.track(old.payload + add)));
                let want = model.get_mut(&k).map(|v| {
                    *v += add;
                    *v
                });
                assert_eq!(got, want, "step {at}: {op}");
            }
            SyncOp::Retain(m) => {
                if m % 2 == 0 {
                    pinned.retain(|_, v| v.payload % m != 0);
                } else {
                    map.retain(|_, v| v.payload % m != 0);
                }
                model.retain(|_, v| *v % m != 0);
            }
            SyncOp::Clear => {
                pinned.clear();
                model.clear();
            }
            SyncOp::Promote => map.promote(),
            SyncOp::Flush => map.flush(),
            SyncOp::Iter => assert_sync_contents(pinned, model, at),
            SyncOp::Extend(ref pairs) => {
                let mut target = map;
                target.extend(pairs.iter().map(|&(k, v)| (keys.track(k), values.track(v))));
                model.extend(pairs.iter().copied());
            }
            SyncOp::Hold(_) | SyncOp::End => unreachable!("handled by `block`"),
        }
    }
}

fn assert_sync_contents(pinned: &SPinned<'_>, model: &Model, at: usize) {
    let mut seen: Vec<(u64, u64)> = pinned.iter().map(|(k, v)| (k.payload, v.payload)).collect();
    seen.sort_unstable();
    let mut want: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    want.sort_unstable();
    assert_eq!(seen, want, "contents after step {at}");
}

fn run_sync(ops: &[SyncOp]) {
    let (keys, values) = (DropLedger::new(), DropLedger::new());
    {
        let map = SMap::new();
        let mut run = SyncRun {
            map: &map,
            model: Model::new(),
            keys: &keys,
            values: &values,
            step: 0,
        };
        let mut i = 0;
        while i < ops.len() {
            run.block(ops, &mut i, None);
        }
        assert_sync_contents(&map.pin(), &run.model, run.step);
        // A promotion leaves a clone of each live key and value in a fresh read
        // table; once the collector has freed what it retired (the old root with
        // its keys, stale inline values, tombstones and linked cells; and every
        // cell replaced or removed before), exactly those are alive.
        let live = run.model.len();
        map.promote();
        flush_until_quiet(&map, FLUSH_TIMEOUT);
        values.assert_alive(live);
        keys.assert_alive(live);
        // Nothing is pending, so the map's drop frees the rest itself, at once.
        drop(map);
        values.assert_alive(0);
        keys.assert_alive(0);
    }
    // The collector's late calls (for garbage the map freed when it went) find
    // nothing.
    assert_all_dropped(&values);
    assert_all_dropped(&keys);
}

// ---------------------------------------------------------------------------
// ClassicSyncMap: the same scripts, through its reduced API.
// ---------------------------------------------------------------------------

type CMap = ClassicSyncMap<Tracked<u64>, Tracked<u64>>;
type CPinned<'a> = ClassicPinned<'a, Tracked<u64>, Tracked<u64>, RandomState, DefaultReclaim>;

struct ClassicRun<'a> {
    map: &'a CMap,
    model: Model,
    keys: &'a DropLedger,
    values: &'a DropLedger,
    step: usize,
}

impl ClassicRun<'_> {
    /// As [`SyncRun::block`]; operations `ClassicSyncMap` lacks are skipped.
    fn block(&mut self, ops: &[SyncOp], i: &mut usize, held: Option<&CPinned<'_>>) {
        while *i < ops.len() {
            let op = &ops[*i];
            *i += 1;
            self.step += 1;
            match op {
                SyncOp::End if held.is_some() => return,
                SyncOp::End => {}
                SyncOp::Hold(k) => {
                    let pinned = self.map.pin();
                    let seen = pinned.get(k);
                    assert_eq!(
                        seen.map(|v| v.payload),
                        self.model.get(k).copied(),
                        "hold {k}"
                    );
                    let snapshot = seen.map(|v| (v.id(), v.payload));
                    self.block(ops, i, Some(&pinned));
                    if let (Some(value), Some((id, payload))) = (seen, snapshot) {
                        assert_eq!((value.id(), value.payload), (id, payload), "held value");
                        assert!(
                            !self.values.is_dropped(id),
                            "held value #{id} dropped under a guard"
                        );
                    }
                }
                op => match held {
                    Some(pinned) => self.apply(op, pinned),
                    None => self.apply(op, &self.map.pin()),
                },
            }
            assert_eq!(
                self.map.len(),
                self.model.len(),
                "len after step {} ({op})",
                self.step
            );
        }
    }

    fn apply(&mut self, op: &SyncOp, pinned: &CPinned<'_>) {
        let (map, model, keys, values) = (self.map, &mut self.model, self.keys, self.values);
        let payload = |v: Option<&Tracked<u64>>| v.map(|v| v.payload);
        let at = self.step;
        match *op {
            SyncOp::Insert { k, v, owned } => {
                let (key, value) = (keys.track(k), values.track(v));
                let got = if owned {
                    map.insert(key, value).map(|v| v.payload)
                } else {
                    payload(pinned.insert(key, value))
                };
                assert_eq!(got, model.insert(k, v), "step {at}: {op}");
            }
            SyncOp::Get(k)
            | SyncOp::GetCloned(k)
            | SyncOp::GetKeyValue(k)
            | SyncOp::Contains(k) => {
                assert_eq!(
                    payload(pinned.get(&k)),
                    model.get(&k).copied(),
                    "step {at}: {op}"
                )
            }
            SyncOp::Remove { k, owned } => {
                let got = if owned {
                    map.remove(&k).map(|v| v.payload)
                } else {
                    payload(pinned.remove(&k))
                };
                assert_eq!(got, model.remove(&k), "step {at}: {op}");
            }
            SyncOp::GetOrInsert { k, v, .. } => {
                let got = match pinned.get_or_insert(keys.track(k), values.track(v)) {
                    LoadOrStore::Loaded(x) => (false, x.payload),
                    LoadOrStore::Stored(x) => (true, x.payload),
                };
                let want = match model.get(&k) {
                    Some(&current) => (false, current),
                    None => {
                        model.insert(k, v);
                        (true, v)
                    }
                };
                assert_eq!(got, want, "step {at}: {op}");
            }
            SyncOp::Update { k, add } => {
                let got = payload(pinned.update(&k, |old| values.track(old.payload + add)));
                let want = model.get_mut(&k).map(|v| {
                    *v += add;
                    *v
                });
                assert_eq!(got, want, "step {at}: {op}");
            }
            SyncOp::Clear => {
                map.clear();
                model.clear();
            }
            SyncOp::RemoveIf { k, v } => {
                let expected = match model.get(&k) {
                    Some(&current) if current == v => model.remove(&k),
                    _ => None,
                };
                assert_eq!(
                    payload(pinned.remove_if(&k, |x| x.payload == v)),
                    expected,
                    "step {at}: {op}"
                );
            }
            SyncOp::Extend(ref pairs) => {
                let mut target = map;
                target.extend(pairs.iter().map(|&(k, v)| (keys.track(k), values.track(v))));
                model.extend(pairs.iter().copied());
            }
            SyncOp::Promote => map.promote(),
            SyncOp::Flush => map.flush(),
            SyncOp::Iter => assert_classic_contents(pinned, model, at),
            // Not in ClassicSyncMap's API.
            SyncOp::CompareExchange { .. } | SyncOp::Retain(_) => {}
            SyncOp::Hold(_) | SyncOp::End => unreachable!("handled by `block`"),
        }
    }
}

fn assert_classic_contents(pinned: &CPinned<'_>, model: &Model, at: usize) {
    let mut seen: Vec<(u64, u64)> = pinned
        .entries()
        .into_iter()
        .map(|(k, v)| (k.payload, v.payload))
        .collect();
    seen.sort_unstable();
    let mut want: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    want.sort_unstable();
    assert_eq!(seen, want, "contents after step {at}");
}

fn run_classic(ops: &[SyncOp]) {
    let (keys, values) = (DropLedger::new(), DropLedger::new());
    {
        let map = CMap::new();
        let mut run = ClassicRun {
            map: &map,
            model: Model::new(),
            keys: &keys,
            values: &values,
            step: 0,
        };
        let mut i = 0;
        while i < ops.len() {
            run.block(ops, &mut i, None);
        }
        assert_classic_contents(&map.pin(), &run.model, run.step);
        let live = run.model.len();
        // Flushes the map's own reclaimer as well as the default one: seize's
        // collector is per map, and only this thread retired on it.
        flush_until(
            || {
                map.flush();
                values.alive() <= live
            },
            FLUSH_TIMEOUT,
            &format!("{} values alive with {live} keys live", values.alive()),
        );
        values.assert_alive(live);
    }
    assert_all_dropped(&values);
    assert_all_dropped(&keys);
}

// ---------------------------------------------------------------------------
// SnapshotMap.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum SnapOp {
    Insert(u64, u64),
    Remove(u64),
    Update(u64, u64),
    Get(u64),
    GetCloned(u64),
    Contains(u64),
    Retain(u64),
    Clear,
    ReplaceAll(Vec<(u64, u64)>),
    /// Opens a batch; the operations up to `Commit` or `Abort` run inside it.
    Batch,
    Commit,
    /// Ends the batch with an error: none of its writes may be published.
    Abort,
    /// Takes a snapshot and keeps it (the last four are kept).
    Snapshot,
    /// Every kept snapshot still shows its version; diffs between them are right.
    CheckSnapshots,
    Iter,
}

impl fmt::Display for SnapOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapOp::Insert(k, v) => write!(f, "insert {k} {v}"),
            SnapOp::Remove(k) => write!(f, "remove {k}"),
            SnapOp::Update(k, add) => write!(f, "update {k} {add}"),
            SnapOp::Get(k) => write!(f, "get {k}"),
            SnapOp::GetCloned(k) => write!(f, "get_cloned {k}"),
            SnapOp::Contains(k) => write!(f, "contains {k}"),
            SnapOp::Retain(m) => write!(f, "retain {m}"),
            SnapOp::Clear => f.write_str("clear"),
            SnapOp::ReplaceAll(pairs) => {
                f.write_str("replace_all")?;
                for (k, v) in pairs {
                    write!(f, " {k} {v}")?;
                }
                Ok(())
            }
            SnapOp::Batch => f.write_str("batch"),
            SnapOp::Commit => f.write_str("commit"),
            SnapOp::Abort => f.write_str("abort"),
            SnapOp::Snapshot => f.write_str("snapshot"),
            SnapOp::CheckSnapshots => f.write_str("check_snapshots"),
            SnapOp::Iter => f.write_str("iter"),
        }
    }
}

fn parse_snap(name: &str, a: &[u64]) -> Option<SnapOp> {
    Some(match (name, a) {
        ("insert", &[k, v]) => SnapOp::Insert(k, v),
        ("remove", &[k]) => SnapOp::Remove(k),
        ("update", &[k, add]) => SnapOp::Update(k, add),
        ("get", &[k]) => SnapOp::Get(k),
        ("get_cloned", &[k]) => SnapOp::GetCloned(k),
        ("contains", &[k]) => SnapOp::Contains(k),
        ("retain", &[m]) if m > 0 => SnapOp::Retain(m),
        ("clear", []) => SnapOp::Clear,
        ("replace_all", pairs) if pairs.len() % 2 == 0 => {
            SnapOp::ReplaceAll(pairs.chunks(2).map(|p| (p[0], p[1])).collect())
        }
        ("batch", []) => SnapOp::Batch,
        ("commit", []) => SnapOp::Commit,
        ("abort", []) => SnapOp::Abort,
        ("snapshot", []) => SnapOp::Snapshot,
        ("check_snapshots", []) => SnapOp::CheckSnapshots,
        ("iter", []) => SnapOp::Iter,
        _ => return None,
    })
}

fn snap_op() -> impl Strategy<Value = SnapOp> + Clone {
    let k = 0..KEYS;
    let v = 0u64..64;
    prop_oneof![
        6 => (k.clone(), v.clone()).prop_map(|(k, v)| SnapOp::Insert(k, v)),
        4 => k.clone().prop_map(SnapOp::Remove),
        2 => (k.clone(), 1u64..8).prop_map(|(k, add)| SnapOp::Update(k, add)),
        3 => k.clone().prop_map(SnapOp::Get),
        1 => k.clone().prop_map(SnapOp::GetCloned),
        1 => k.clone().prop_map(SnapOp::Contains),
        1 => (2u64..5).prop_map(SnapOp::Retain),
        1 => Just(SnapOp::Clear),
        1 => prop::collection::vec((k, v), 0..12).prop_map(SnapOp::ReplaceAll),
        3 => Just(SnapOp::Batch),
        2 => Just(SnapOp::Commit),
        1 => Just(SnapOp::Abort),
        2 => Just(SnapOp::Snapshot),
        1 => Just(SnapOp::CheckSnapshots),
        1 => Just(SnapOp::Iter),
    ]
}

type PMap = SnapshotMap<Tracked<u64>, Tracked<u64>>;
/// A kept snapshot and the model of its version.
type Kept = (Snapshot<Tracked<u64>, Tracked<u64>>, Model);

fn contents<'a>(
    entries: impl Iterator<Item = (&'a Tracked<u64>, &'a Tracked<u64>)>,
) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = entries.map(|(k, v)| (k.payload, v.payload)).collect();
    out.sort_unstable();
    out
}

fn sorted(model: &Model) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    out.sort_unstable();
    out
}

/// Applies a write that both the map and a batch offer to `model`, returning
/// what it returns.
fn model_write(model: &mut Model, op: &SnapOp) -> Option<u64> {
    match *op {
        SnapOp::Insert(k, v) => model.insert(k, v),
        SnapOp::Remove(k) => model.remove(&k),
        SnapOp::Update(k, add) => model.get_mut(&k).map(|v| {
            *v += add;
            *v
        }),
        SnapOp::Retain(m) => {
            model.retain(|_, v| *v % m != 0);
            None
        }
        SnapOp::Clear => {
            model.clear();
            None
        }
        _ => unreachable!("not a write: {op}"),
    }
}

fn run_snap(ops: &[SnapOp]) {
    let ledger = DropLedger::new();
    {
        let map = PMap::new();
        let mut model = Model::new();
        let mut kept: Vec<Kept> = Vec::new();
        let mut version = map.version();
        let mut i = 0;
        while i < ops.len() {
            let op = &ops[i];
            i += 1;
            let before = model.clone();
            match op {
                SnapOp::Get(k) => assert_eq!(
                    map.get(k).map(|v| v.payload),
                    model.get(k).copied(),
                    "step {i}: {op}"
                ),
                SnapOp::GetCloned(k) => {
                    assert_eq!(
                        map.get_cloned(k).map(|v| v.payload),
                        model.get(k).copied(),
                        "step {i}: {op}"
                    )
                }
                SnapOp::Contains(k) => {
                    assert_eq!(map.contains_key(k), model.contains_key(k), "step {i}: {op}")
                }
                SnapOp::Insert(k, v) => {
                    let got = map
                        .insert(ledger.track(*k), ledger.track(*v))
                        .map(|v| v.payload);
                    assert_eq!(got, model_write(&mut model, op), "step {i}: {op}");
                }
                SnapOp::Remove(k) => {
                    assert_eq!(
                        map.remove(k).map(|v| v.payload),
                        model_write(&mut model, op),
                        "step {i}: {op}"
                    )
                }
                SnapOp::Update(k, add) => {
                    let got = map
                        .update(k, |old| ledger.track(old.payload + add))
                        .map(|v| v.payload);
                    assert_eq!(got, model_write(&mut model, op), "step {i}: {op}");
                }
                SnapOp::Retain(m) => {
                    map.retain(|_, v| v.payload % m != 0);
                    model_write(&mut model, op);
                }
                SnapOp::Clear => {
                    map.clear();
                    model.clear();
                }
                SnapOp::ReplaceAll(pairs) => {
                    let old = map.replace_all(
                        pairs
                            .iter()
                            .map(|&(k, v)| (ledger.track(k), ledger.track(v))),
                    );
                    assert_eq!(
                        contents(old.iter()),
                        sorted(&model),
                        "step {i}: replace_all returns the old version"
                    );
                    model = pairs.iter().copied().collect();
                }
                SnapOp::Batch => {
                    // The operations up to the batch's end run inside it, against
                    // a copy of the model that is kept only on commit.
                    let mut copy = model.clone();
                    let outcome = map.try_batch(|txn| {
                        while i < ops.len() {
                            let op = &ops[i];
                            i += 1;
                            match op {
                                SnapOp::Commit => return Ok(()),
                                SnapOp::Abort => return Err(()),
                                SnapOp::Get(k) | SnapOp::GetCloned(k) => {
                                    assert_eq!(
                                        txn.get(k).map(|v| v.payload),
                                        copy.get(k).copied(),
                                        "batch step {i}: {op}"
                                    )
                                }
                                SnapOp::Contains(k) => {
                                    assert_eq!(
                                        txn.contains_key(k),
                                        copy.contains_key(k),
                                        "batch step {i}: {op}"
                                    )
                                }
                                SnapOp::Insert(k, v) => {
                                    let got = txn
                                        .insert(ledger.track(*k), ledger.track(*v))
                                        .map(|v| v.payload);
                                    assert_eq!(
                                        got,
                                        model_write(&mut copy, op),
                                        "batch step {i}: {op}"
                                    );
                                }
                                SnapOp::Remove(k) => {
                                    let got = txn.remove(k).map(|v| v.payload);
                                    assert_eq!(
                                        got,
                                        model_write(&mut copy, op),
                                        "batch step {i}: {op}"
                                    );
                                }
                                SnapOp::Update(k, add) => {
                                    let got = txn
                                        .update(k, |old| ledger.track(old.payload + add))
                                        .map(|v| v.payload);
                                    assert_eq!(
                                        got,
                                        model_write(&mut copy, op),
                                        "batch step {i}: {op}"
                                    );
                                }
                                SnapOp::Retain(m) => {
                                    txn.retain(|_, v| v.payload % m != 0);
                                    model_write(&mut copy, op);
                                }
                                SnapOp::Clear => {
                                    txn.clear();
                                    copy.clear();
                                }
                                // Not batch operations: skipped inside a batch.
                                _ => {}
                            }
                            assert_eq!(txn.len(), copy.len(), "batch len after step {i}");
                        }
                        Ok(()) // the script ended inside the batch: commit
                    });
                    if outcome.is_ok() {
                        model = copy;
                    }
                }
                SnapOp::Commit | SnapOp::Abort => {} // outside a batch: no-ops
                SnapOp::Snapshot => {
                    let snapshot = map.snapshot();
                    assert_eq!(snapshot.version(), map.version());
                    kept.push((snapshot, model.clone()));
                    if kept.len() > 4 {
                        kept.remove(0);
                    }
                }
                SnapOp::CheckSnapshots => check_snapshots(&kept, &map, &model, i),
                SnapOp::Iter => assert_eq!(
                    contents(map.snapshot().iter()),
                    sorted(&model),
                    "step {i}: iter"
                ),
            }
            assert_eq!(map.len(), model.len(), "len after step {i} ({op})");
            let now = map.version();
            assert!(now >= version, "version went back from {version} to {now}");
            if model != before {
                assert!(
                    now > version,
                    "step {i} ({op}) changed the map without a new version"
                );
            }
            version = now;
        }
        let mut owned: Vec<(u64, u64)> = map.iter().map(|(k, v)| (k.payload, v.payload)).collect();
        owned.sort_unstable();
        assert_eq!(owned, sorted(&model), "final contents (owned iterator)");
        check_snapshots(&kept, &map, &model, ops.len());
    }
    assert_all_dropped(&ledger);
}

/// Each kept snapshot still shows exactly the contents of its version, and the
/// diff from it to the current version is the model's.
fn check_snapshots(kept: &[Kept], map: &PMap, model: &Model, at: usize) {
    let current = map.snapshot();
    for (snapshot, then) in kept {
        assert_eq!(
            contents(snapshot.iter()),
            sorted(then),
            "step {at}: a kept snapshot changed"
        );
        for k in 0..KEYS {
            assert_eq!(snapshot.get(&k).map(|v| v.payload), then.get(&k).copied());
        }
        let mut diff: Vec<(u64, Option<u64>, Option<u64>)> = snapshot
            .diff(&current)
            .map(|change| match change {
                Change::Added { key, value } => (key.payload, None, Some(value.payload)),
                Change::Removed { key, value } => (key.payload, Some(value.payload), None),
                Change::Changed { key, old, new } => {
                    (key.payload, Some(old.payload), Some(new.payload))
                }
            })
            .collect();
        diff.sort_unstable();
        let mut want: Vec<(u64, Option<u64>, Option<u64>)> = (0..KEYS)
            .filter_map(|k| {
                let (a, b) = (then.get(&k).copied(), model.get(&k).copied());
                (a != b).then_some((k, a, b))
            })
            .collect();
        want.sort_unstable();
        assert_eq!(diff, want, "step {at}: diff from a kept snapshot");
    }
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

#[test]
fn sync_map_corpus_replays() {
    for (name, text) in corpus_files("sync_map") {
        let ops = parse_script(&text, parse_sync).unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("replaying sync_map/{name} ({} ops)", ops.len());
        run_sync(&ops);
    }
}

#[test]
fn classic_sync_map_corpus_replays() {
    for (name, text) in corpus_files("sync_map") {
        let ops = parse_script(&text, parse_sync).unwrap_or_else(|e| panic!("{name}: {e}"));
        run_classic(&ops);
    }
}

#[test]
fn snapshot_map_corpus_replays() {
    for (name, text) in corpus_files("snapshot_map") {
        let ops = parse_script(&text, parse_snap).unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("replaying snapshot_map/{name} ({} ops)", ops.len());
        run_snap(&ops);
    }
}

#[test]
fn the_corpus_format_round_trips() {
    let text =
        "insert 1 2\ncas 1 2 3\ncas_current 4 5\nextend 1 2 3 4\nhold 7\nend\nclear # note\n";
    let ops = parse_script(text, parse_sync).unwrap();
    let printed: String = ops.iter().map(|op| format!("{op}\n")).collect();
    assert_eq!(parse_script(&printed, parse_sync).unwrap(), ops);
    assert!(parse_script("frobnicate 1", parse_sync).is_err());
    let text = "batch\ninsert 1 2\nabort\nreplace_all 1 2\nsnapshot\ncheck_snapshots\n";
    let ops = parse_script(text, parse_snap).unwrap();
    let printed: String = ops.iter().map(|op| format!("{op}\n")).collect();
    assert_eq!(parse_script(&printed, parse_snap).unwrap(), ops);
}

#[test]
fn fuzz_sync_map_against_hash_map() {
    let corpus: Vec<Vec<SyncOp>> = corpus_files("sync_map")
        .iter()
        .map(|(name, text)| {
            parse_script(text, parse_sync).unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    fuzz("sync_map", scripts(corpus, sync_op()), run_sync);
}

#[test]
fn fuzz_classic_sync_map_against_hash_map() {
    let corpus: Vec<Vec<SyncOp>> = corpus_files("sync_map")
        .iter()
        .map(|(name, text)| {
            parse_script(text, parse_sync).unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    fuzz("classic_sync_map", scripts(corpus, sync_op()), run_classic);
}

#[test]
fn fuzz_snapshot_map_against_hash_map() {
    let corpus: Vec<Vec<SnapOp>> = corpus_files("snapshot_map")
        .iter()
        .map(|(name, text)| {
            parse_script(text, parse_snap).unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    fuzz("snapshot_map", scripts(corpus, snap_op()), run_snap);
}
