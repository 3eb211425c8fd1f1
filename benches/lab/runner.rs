//! Runs one cell: builds and prefills a map, starts every thread on a barrier,
//! lets them walk their pre-generated streams untimed for the warm-up, then
//! counts what they do until the duration is up (or, in the growing workloads,
//! until a thread has used up its fresh keys), and reports the measured
//! operations over the slowest thread's measured wall time.
//!
//! The warm-up keeps a run's first milliseconds out of the measurement: the map's
//! lines moving from the core that built it into the caches of the cores that
//! read it, each new thread's first pin and allocations. Each thread's CPU share
//! and moves between cores are recorded beside its count, so that a run the
//! machine disturbed shows as such (docs/performance.md, "How to read the
//! figures").

use std::hint::black_box;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::keys::{KeyTable, LabHasher, LabKey};
use crate::maps::LabMap;
use crate::ops::{Kind, Op};
use crate::workloads::{Layout, Workload};

/// Gets between two looks at the stop flag. Every write also looks: a write to
/// a copy-on-write map copies the whole table (tens of milliseconds at 1M String
/// keys), and a run must not overshoot its duration by a chunk of those.
const CHUNK: usize = 16;
/// The config-reload writer's period.
pub const RELOAD_PERIOD: Duration = Duration::from_millis(10);

/// Everything a cell's runs share, prepared before any timing.
pub struct CellInput<'a, K> {
    pub workload: Workload,
    pub layout: Layout,
    /// The key table; operations index it.
    pub keys: &'a KeyTable<K>,
    /// One operation stream per stream thread.
    pub streams: &'a [Vec<crate::ops::Op>],
    pub duration: Duration,
    pub warmup: Duration,
}

/// One run's outcome (the measured part only).
#[derive(Clone, Copy, Debug, Default)]
pub struct RunResult {
    /// Operations of the stream threads (the config-reload writer's not counted).
    pub ops: u64,
    pub gets: u64,
    pub hits: u64,
    /// The slowest stream thread's wall time.
    pub wall: Duration,
    /// Batches the config-reload writer applied.
    pub reloads: u64,
    /// CPU time the stream threads got over their wall time, summed over threads
    /// and divided by the threads the machine can run at once: 1.0 = every
    /// runnable thread on a core for the whole run.
    pub cpu_share: f64,
    /// Times the scheduler moved a stream thread to another core (Linux with
    /// scheduler statistics; 0 elsewhere): each move leaves the thread's cached
    /// lines behind.
    pub migrations: u64,
}

impl RunResult {
    /// Millions of operations per second.
    pub fn mops(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(1e-9) / 1e6
    }

    /// Gets that found nothing.
    pub fn misses(&self) -> u64 {
        self.gets - self.hits
    }

    /// Share of gets that found their key.
    pub fn hit_rate(&self) -> f64 {
        if self.gets == 0 {
            f64::NAN
        } else {
            self.hits as f64 / self.gets as f64
        }
    }
}

/// What a thread does around each get: nothing, or time it.
pub trait Probe: Send {
    /// Runs one get.
    fn get(&mut self, get: impl FnOnce() -> Option<u64>) -> Option<u64>;
    /// Forgets what the warm-up recorded.
    fn reset(&mut self) {}
}

/// No timing: the throughput runs.
pub struct Untimed;

impl Probe for Untimed {
    #[inline(always)]
    fn get(&mut self, get: impl FnOnce() -> Option<u64>) -> Option<u64> {
        get()
    }
}

/// Times every get into a histogram (nanoseconds, 3 significant digits); the
/// timer's own cost is measured by [`timer_overhead`] and reported beside.
pub struct Timed(pub Histogram<u64>);

impl Timed {
    /// An empty histogram from 1 ns to 10 s.
    pub fn new() -> Self {
        Timed(Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds"))
    }
}

impl Probe for Timed {
    #[inline(always)]
    fn get(&mut self, get: impl FnOnce() -> Option<u64>) -> Option<u64> {
        let start = Instant::now();
        let found = black_box(get());
        let nanos = start.elapsed().as_nanos() as u64;
        self.0.saturating_record(nanos.max(1));
        found
    }

    fn reset(&mut self) {
        self.0.reset();
    }
}

/// Median cost of timing nothing with [`Timed`], in nanoseconds.
pub fn timer_overhead() -> u64 {
    let mut timed = Timed::new();
    for _ in 0..200_000 {
        timed.get(|| black_box(None));
    }
    timed.0.value_at_quantile(0.5)
}

/// Builds `M` and inserts the layout's prefilled keys (as one batch per range:
/// one lock, one copy, one publish where the map has batches), then settles it.
pub fn build<K: LabKey, S: LabHasher, M: LabMap<K, S>>(layout: &Layout, keys: &KeyTable<K>) -> M {
    let keys = keys.keys();
    let map = M::new(S::default());
    {
        let local = map.local();
        map.batch(&local, &[], &keys[..layout.present], 0);
        if layout.region_prefill > 0 {
            for t in 0..layout.threads {
                let base = layout.region_base(t);
                map.batch(&local, &[], &keys[base..base + layout.region_prefill], 0);
            }
        }
    }
    map.settle();
    map
}

/// Runs one cell on a fresh map; returns the result and each stream thread's probe.
pub fn run<K, S, M, P>(
    input: &CellInput<'_, K>,
    probe: impl Fn() -> P + Sync,
) -> (RunResult, Vec<P>)
where
    K: LabKey,
    S: LabHasher,
    M: LabMap<K, S>,
    P: Probe,
{
    let map: M = build(&input.layout, input.keys);
    // The garbage of the prefill and of earlier runs is freed here, not by the
    // measured threads' pins.
    crate::maps::drain_reclaimers();
    let out = run_on(&map, input, probe);
    drop(map);
    out
}

/// Phases of a run, in order: walking the streams untimed, measured, stopped.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Runs one cell on `map`, already prefilled.
pub fn run_on<K, S, M, P>(
    map: &M,
    input: &CellInput<'_, K>,
    probe: impl Fn() -> P + Sync,
) -> (RunResult, Vec<P>)
where
    K: LabKey,
    S: LabHasher,
    M: LabMap<K, S>,
    P: Probe,
{
    let layout = &input.layout;
    let writer = input.workload == Workload::ConfigReload;
    let streams = input.streams.len();
    let barrier = Barrier::new(streams + 1 + usize::from(writer));
    // The growing workloads measure a map filling up from its prefill: a warm-up
    // would use up their fresh keys.
    let warmup = if layout.exhaustible {
        Duration::ZERO
    } else {
        input.warmup
    };
    let phase = Phases {
        phase: AtomicU8::new(if warmup.is_zero() { MEASURE } else { WARMUP }),
        measuring: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        streams,
        main: thread::current(),
    };

    thread::scope(|scope| {
        let workers: Vec<_> = input
            .streams
            .iter()
            .enumerate()
            .map(|(t, ops)| {
                let (barrier, phase, probe) = (&barrier, &phase, &probe);
                scope.spawn(move || {
                    let local = map.local();
                    let mut probe = probe();
                    let mut state = ThreadState::new(layout, t);
                    barrier.wait();
                    let measured =
                        exec(map, &local, input.keys, ops, &mut state, phase, &mut probe);
                    phase.arrive(&phase.done);
                    (measured, probe)
                })
            })
            .collect();
        let reloader = writer.then(|| {
            let (barrier, phase) = (&barrier, &phase.phase);
            scope.spawn(move || reload_writer(map, input.keys, layout, barrier, phase))
        });

        // The main thread sleeps through the run (no polling: on 2 cores a
        // waking main thread preempts a stream thread). The measured part lasts
        // `duration` from the moment every thread has started measuring, so a
        // thread the scheduler kept off its core for the whole window still
        // measures something.
        barrier.wait();
        let finished = || phase.done.load(Ordering::Acquire) == streams;
        sleep_until(Instant::now() + warmup, finished);
        phase.phase.store(MEASURE, Ordering::Relaxed);
        while phase.measuring.load(Ordering::Acquire) < streams && !finished() {
            thread::park_timeout(Duration::from_millis(1));
        }
        sleep_until(Instant::now() + input.duration, finished);
        phase.phase.store(STOP, Ordering::Relaxed);

        let mut result = RunResult::default();
        let mut probes = Vec::with_capacity(streams);
        let mut cpu = Duration::ZERO;
        for worker in workers {
            let (m, probe) = worker.join().expect("worker panicked");
            result.ops += m.counts.ops;
            result.gets += m.counts.gets;
            result.hits += m.counts.hits;
            result.wall = result.wall.max(m.wall);
            result.migrations += m.usage.migrations;
            cpu += m.usage.cpu;
            probes.push(probe);
        }
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let runnable = streams.min(cores) as f64;
        result.cpu_share = cpu.as_secs_f64() / (result.wall.as_secs_f64().max(1e-9) * runnable);
        if let Some(reloader) = reloader {
            result.reloads = reloader.join().expect("writer panicked");
        }
        (result, probes)
    })
}

/// The run's phase and the threads' progress through it.
struct Phases {
    /// [`WARMUP`], [`MEASURE`] or [`STOP`].
    phase: AtomicU8,
    /// Stream threads that have started measuring (or finished without).
    measuring: AtomicUsize,
    /// Stream threads that have finished.
    done: AtomicUsize,
    streams: usize,
    /// The main thread, woken when the last thread arrives at either count.
    main: thread::Thread,
}

impl Phases {
    fn arrive(&self, count: &AtomicUsize) {
        // AcqRel: the main thread that reads the full count sees every arrival.
        if count.fetch_add(1, Ordering::AcqRel) + 1 == self.streams {
            self.main.unpark();
        }
    }
}

/// Parks until `deadline` or until `finished()` (a worker unparks this thread).
fn sleep_until(deadline: Instant, finished: impl Fn() -> bool) {
    loop {
        let now = Instant::now();
        if now >= deadline || finished() {
            return;
        }
        thread::park_timeout(deadline - now);
    }
}

/// CPU time and moves between cores of the calling thread so far, from the
/// scheduler's statistics (`/proc/thread-self/sched`, Linux); zero where the
/// platform has none.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    cpu: Duration,
    migrations: u64,
}

impl Usage {
    fn now() -> Usage {
        let stats = std::fs::read_to_string("/proc/thread-self/sched").unwrap_or_default();
        let field = |name: &str| -> f64 {
            let line = stats.lines().find(|l| l.starts_with(name));
            line.and_then(|l| l.rsplit(':').next()?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        Usage {
            // Milliseconds, with nanoseconds as decimals.
            cpu: Duration::from_secs_f64(field("se.sum_exec_runtime") / 1e3),
            migrations: field("se.nr_migrations") as u64,
        }
    }

    fn since(self, start: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(start.cpu),
            migrations: self.migrations.saturating_sub(start.migrations),
        }
    }
}

/// What a stream thread did while measured.
struct Measured {
    counts: Counts,
    wall: Duration,
    usage: Usage,
}

/// A stream thread's position in its own key region.
struct ThreadState {
    base: usize,
    mask: usize,
    region: u64,
    exhaustible: bool,
    /// Fresh keys inserted so far (including the prefilled ones).
    inserted: u64,
    /// Oldest keys removed so far.
    erased: u64,
}

impl ThreadState {
    fn new(layout: &Layout, t: usize) -> Self {
        ThreadState {
            base: layout.region_base(t),
            mask: layout.region.saturating_sub(1),
            region: layout.region as u64,
            exhaustible: layout.exhaustible,
            inserted: layout.region_prefill as u64,
            erased: 0,
        }
    }

    #[inline(always)]
    fn key(&self, seq: u64) -> usize {
        self.base + (seq as usize & self.mask)
    }
}

#[derive(Clone, Copy, Default)]
struct Counts {
    ops: u64,
    gets: u64,
    hits: u64,
}

/// Walks `ops` cyclically until the phase is [`STOP`] (checked every [`CHUNK`]
/// operations and after every write) or, in an exhaustible layout, until the
/// thread's fresh keys run out; counts from the moment it sees [`MEASURE`].
#[inline(never)]
fn exec<K, S, M, P>(
    map: &M,
    local: &M::Local,
    keys: &KeyTable<K>,
    ops: &[Op],
    st: &mut ThreadState,
    phases: &Phases,
    probe: &mut P,
) -> Measured
where
    K: LabKey,
    S: LabHasher,
    M: LabMap<K, S>,
    P: Probe,
{
    let mut c = Counts::default();
    let mut value = 0u64;
    // Where the measured part started: counts, clock, CPU time.
    let mut start: Option<(Counts, Instant, Usage)> = None;
    // Whether to stop; notes the start of the measured part when it comes.
    let mut look = |c: &Counts, probe: &mut P| -> bool {
        match phases.phase.load(Ordering::Relaxed) {
            STOP => true,
            MEASURE if start.is_none() => {
                probe.reset();
                start = Some((*c, Instant::now(), Usage::now()));
                phases.arrive(&phases.measuring);
                false
            }
            _ => false,
        }
    };
    look(&c, probe);
    'run: loop {
        for chunk in ops.chunks(CHUNK) {
            for &op in chunk {
                value = value.wrapping_add(1);
                match op.kind() {
                    Kind::Get => {
                        c.gets += 1;
                        let found =
                            keys.with(op.arg(), |key| probe.get(|| map.get(local, key.borrowed())));
                        c.hits += u64::from(found.is_some());
                    }
                    Kind::Insert => map.insert(local, keys.owned(op.arg()), value),
                    Kind::Remove => {
                        black_box(keys.with(op.arg(), |key| map.remove(local, key.borrowed())));
                    }
                    Kind::GetOwn => {
                        c.gets += 1;
                        let found = keys.with(st.base + op.arg(), |key| {
                            probe.get(|| map.get(local, key.borrowed()))
                        });
                        c.hits += u64::from(found.is_some());
                    }
                    Kind::UpdateOwn => {
                        black_box(
                            keys.with(st.base + op.arg(), |key| map.update(local, key, value)),
                        );
                    }
                    Kind::InsertNext => {
                        if st.exhaustible && st.inserted >= st.region {
                            break 'run;
                        }
                        map.insert(local, keys.owned(st.key(st.inserted)), value);
                        st.inserted += 1;
                    }
                    Kind::RemoveOldest => {
                        // With nothing left to remove, this removes an absent key.
                        black_box(
                            keys.with(st.key(st.erased), |key| map.remove(local, key.borrowed())),
                        );
                        if st.erased < st.inserted {
                            st.erased += 1;
                        }
                    }
                    Kind::GetRecent => {
                        let seq = st.inserted.wrapping_sub(1 + op.arg() as u64);
                        c.gets += 1;
                        let found = keys.with(st.key(seq), |key| {
                            probe.get(|| map.get(local, key.borrowed()))
                        });
                        c.hits += u64::from(found.is_some());
                    }
                }
                c.ops += 1;
                if !matches!(op.kind(), Kind::Get | Kind::GetOwn | Kind::GetRecent)
                    && look(&c, probe)
                {
                    break 'run;
                }
            }
            if look(&c, probe) {
                break 'run;
            }
        }
    }
    black_box(value);
    // A thread that ran out of keys before the measured part measured nothing.
    let (before, started, usage) = start.unwrap_or_else(|| {
        phases.arrive(&phases.measuring);
        (c, Instant::now(), Usage::now())
    });
    Measured {
        counts: Counts {
            ops: c.ops - before.ops,
            gets: c.gets - before.gets,
            hits: c.hits - before.hits,
        },
        wall: started.elapsed(),
        usage: Usage::now().since(usage),
    }
}

/// The config-reload writer: every [`RELOAD_PERIOD`], one batch that removes one
/// slice of the universe and inserts the absent one (10% of the keys each way).
/// Returns the number of batches.
fn reload_writer<K: LabKey, S: LabHasher, M: LabMap<K, S>>(
    map: &M,
    keys: &KeyTable<K>,
    layout: &Layout,
    barrier: &Barrier,
    phase: &AtomicU8,
) -> u64 {
    let local = map.local();
    let keys = keys.keys();
    let slice = layout.slice;
    barrier.wait();
    let start = Instant::now();
    let mut reloads = 0u64;
    while phase.load(Ordering::Relaxed) != STOP {
        let out = (reloads % 11) as usize;
        let back = ((reloads + 10) % 11) as usize;
        map.batch(
            &local,
            &keys[out * slice..(out + 1) * slice],
            &keys[back * slice..(back + 1) * slice],
            reloads,
        );
        reloads += 1;
        let next = start + RELOAD_PERIOD * reloads as u32;
        loop {
            let now = Instant::now();
            if now >= next || phase.load(Ordering::Relaxed) == STOP {
                break;
            }
            thread::sleep((next - now).min(Duration::from_millis(1)));
        }
    }
    reloads
}
