//! The moving parts every scenario shares: worker threads running a mix of
//! gets and writes, and the sampler that reads a map's ledger on a clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::thread::{self, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crate::alloc;
use crate::keys::mix64;
use crate::subjects::{key, Garbage, Subject, Value, Write};

/// Operations a worker does between looks at its stop flag (and, with a held
/// guard, between refreshes of it).
pub const CHUNK: u64 = 1024;

/// A mix of operations, per 10,000: gets, overwrites, and the rest
/// remove-then-insert of the same key.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub name: &'static str,
    pub get: u32,
    pub overwrite: u32,
}

impl Mix {
    /// `99% get / 0.5% overwrite / 0.5% remove+insert`.
    pub fn describe(&self) -> String {
        let pct = |n: u32| {
            let p = f64::from(n) / 100.0;
            if p.fract() == 0.0 {
                format!("{p:.0}%")
            } else {
                format!("{p}%")
            }
        };
        let reinsert = 10_000 - self.get - self.overwrite;
        format!(
            "{} get / {} overwrite / {} remove+insert",
            pct(self.get),
            pct(self.overwrite),
            pct(reinsert)
        )
    }
}

/// The churn mix.
pub const CHURN: Mix = Mix {
    name: "churn",
    get: 9_900,
    overwrite: 50,
};
/// Gets only.
pub const READ_ONLY: Mix = Mix {
    name: "read-only",
    get: 10_000,
    overwrite: 0,
};
/// 90% gets, 10% writes.
pub const READ_HEAVY: Mix = Mix {
    name: "read-heavy",
    get: 9_000,
    overwrite: 500,
};
/// Writes only, half overwrites and half remove+insert: the stall's writers.
pub const WRITES: Mix = Mix {
    name: "writes",
    get: 0,
    overwrite: 5_000,
};
/// Overwrites only: the burst.
pub const OVERWRITES: Mix = Mix {
    name: "overwrites",
    get: 0,
    overwrite: 10_000,
};

/// What a set of workers runs.
pub struct Load<'a, M> {
    pub map: &'a M,
    pub mix: Mix,
    /// Keys `0..keys` (all present at the start).
    pub keys: usize,
    pub seed: u64,
    /// Writes gathered into one write of the map (`Subject::write_batch`).
    pub write_batch: usize,
    /// Reads and writes through one held guard (snapshot) per worker,
    /// refreshed every [`CHUNK`] operations, instead of one per operation.
    pub held: bool,
    /// Set by the caller to stop the workers.
    pub stop: &'a AtomicBool,
    /// Operations done so far by every worker (added per chunk), for the sampler.
    pub ops: &'a AtomicU64,
    /// Operations per worker, after which it stops by itself.
    pub limit: Option<u64>,
}

impl<'a, M> Load<'a, M> {
    /// `mix` on `map`'s keys `0..keys`, one guard per operation, until `stop`.
    pub fn new(
        map: &'a M,
        mix: Mix,
        keys: usize,
        seed: u64,
        write_batch: usize,
        stop: &'a AtomicBool,
        ops: &'a AtomicU64,
    ) -> Self {
        Load {
            map,
            mix,
            keys,
            seed,
            write_batch,
            held: false,
            stop,
            ops,
            limit: None,
        }
    }
}

/// What one worker did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub ops: u64,
    pub gets: u64,
    pub hits: u64,
}

impl Tally {
    /// The sum of `tallies`.
    pub fn sum(tallies: &[Tally]) -> Tally {
        tallies.iter().fold(Tally::default(), |a, t| Tally {
            ops: a.ops + t.ops,
            gets: a.gets + t.gets,
            hits: a.hits + t.hits,
        })
    }
}

/// Worker `t` of `load`: runs the mix until the stop flag or its limit.
pub fn work<V: Value, M: Subject<V>>(load: &Load<'_, M>, t: usize) -> Tally {
    let map = load.map;
    let value = V::make(t as u64 + 1);
    let mut rng = load.seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut writes = Vec::with_capacity(load.write_batch);
    let mut held = load.held.then(|| map.hold());
    let mut tally = Tally::default();
    let limit = load.limit.unwrap_or(u64::MAX);
    let write_line = load.mix.get + load.mix.overwrite;
    while tally.ops < limit {
        let n = CHUNK.min(limit - tally.ops);
        for _ in 0..n {
            // SplitMix64: a counter through the lab's mixer.
            rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let r = mix64(rng);
            let k = key((r >> 32) % load.keys as u64, load.seed);
            let dice = (r as u32) % 10_000;
            if dice < load.mix.get {
                let found = match &held {
                    Some(h) => map.get_held(h, k),
                    None => map.get(k),
                };
                tally.gets += 1;
                tally.hits += u64::from(found.is_some());
            } else {
                writes.push(if dice < write_line {
                    Write::Overwrite(k)
                } else {
                    Write::Reinsert(k)
                });
                if writes.len() >= load.write_batch {
                    apply(map, held.as_ref(), &writes, &value);
                    writes.clear();
                }
            }
        }
        tally.ops += n;
        load.ops.fetch_add(n, Relaxed);
        if let Some(h) = &mut held {
            map.refresh(h);
        }
        if load.stop.load(Relaxed) {
            break;
        }
    }
    // The gathered writes were counted: apply them.
    if !writes.is_empty() {
        apply(map, held.as_ref(), &writes, &value);
    }
    tally
}

fn apply<V: Value, M: Subject<V>>(map: &M, held: Option<&M::Held<'_>>, writes: &[Write], v: &V) {
    match held {
        Some(h) => map.write_held(h, writes, v),
        None => map.write(writes, v),
    }
}

/// Spawns a scoped thread with a stack for 64 KiB values passed by value.
pub fn spawn<'s, 'e, T: Send + 's>(
    s: &'s Scope<'s, 'e>,
    name: &str,
    f: impl FnOnce() -> T + Send + 's,
) -> ScopedJoinHandle<'s, T> {
    thread::Builder::new()
        .name(name.into())
        .stack_size(16 << 20)
        .spawn_scoped(s, f)
        .expect("spawn a thread")
}

/// Runs `threads` workers of `load` until `until` returns (it sleeps, or
/// watches the sampler), then stops them. Returns their tallies and the time
/// from the first spawn to the last join.
pub fn run_workers<V: Value, M: Subject<V>>(
    load: &Load<'_, M>,
    threads: usize,
    until: impl FnOnce(),
) -> (Vec<Tally>, Duration) {
    thread::scope(|s| {
        let started = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| spawn(s, "worker", move || work::<V, M>(load, t)))
            .collect();
        until();
        load.stop.store(true, Relaxed);
        let tallies = handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect();
        (tallies, started.elapsed())
    })
}

/// One reading of a map's ledger and the process heap.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Since the recorder started.
    pub t: Duration,
    pub garbage: Garbage,
    /// Heap bytes above the recorder's base (counting allocator).
    pub heap: i64,
    /// The workers' operation count at that moment.
    pub ops: u64,
    /// The phase the caller had set.
    pub phase: &'static str,
}

/// The sampler's record, read by the caller while it runs.
pub struct Recorder {
    pub start: Instant,
    heap_base: isize,
    phase: Mutex<&'static str>,
    samples: Mutex<Vec<Sample>>,
    stop: AtomicBool,
}

impl Recorder {
    /// A recorder whose clock starts now and whose heap figures are relative
    /// to `heap_base`.
    pub fn new(heap_base: isize, phase: &'static str) -> Self {
        Recorder {
            start: Instant::now(),
            heap_base,
            phase: Mutex::new(phase),
            samples: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        }
    }

    /// Labels the samples from now on.
    pub fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap() = phase;
    }

    /// Time since the recorder started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Takes one sample now.
    pub fn sample(&self, garbage: Garbage, ops: u64) -> Sample {
        let sample = Sample {
            t: self.now(),
            garbage,
            heap: (alloc::live() - self.heap_base) as i64,
            ops,
            phase: *self.phase.lock().unwrap(),
        };
        self.samples.lock().unwrap().push(sample);
        sample
    }

    /// Every sample so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// The sampler: every `interval` (on a fixed clock, so a slow `stats()`
    /// does not stretch the series) reads `garbage()` and `ops`, until
    /// [`Recorder::stop`]; one last sample after that. The sampler only reads
    /// stats: it pins nothing and frees nothing.
    pub fn run(&self, interval: Duration, garbage: impl Fn() -> Garbage, ops: &AtomicU64) {
        let mut next = Instant::now();
        loop {
            self.sample(garbage(), ops.load(Relaxed));
            if self.stop.load(Relaxed) {
                break;
            }
            next += interval;
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            } else {
                // Behind (a descheduled sampler): skip the missed ticks.
                next = now;
            }
        }
    }

    /// Ends [`Recorder::run`] after its next sample.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }
}

/// Frees what crossbeam-epoch's global collector holds and can free now
/// (garbage of a map dropped earlier), so that it is not freed inside the
/// next measurement. The seize and SnapshotMap subjects free theirs with the
/// map.
pub fn drain_global() {
    for _ in 0..128 {
        crossbeam_epoch::pin().flush();
    }
}

/// Flushes `map` until its ledger shows no pending garbage, at most `tries`
/// times; how many flushes that took, or `None`.
pub fn flush_until_empty<V: Value, M: Subject<V>>(map: &M, tries: u32) -> Option<u32> {
    for i in 1..=tries {
        map.flush();
        if map.garbage().objects == 0 {
            return Some(i);
        }
        thread::yield_now();
    }
    None
}
