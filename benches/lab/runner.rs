//! Runs one cell: builds and prefills a map, starts every thread on a barrier,
//! lets them walk their pre-generated streams until the duration is up (or, in
//! the growing workloads, until a thread has used up its fresh keys), and reports
//! total operations over the slowest thread's wall time.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
}

/// One run's outcome.
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
}

impl RunResult {
    /// Millions of operations per second.
    pub fn mops(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(1e-9) / 1e6
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
    let out = run_on(&map, input, probe);
    drop(map);
    out
}

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
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);

    thread::scope(|scope| {
        let workers: Vec<_> = input
            .streams
            .iter()
            .enumerate()
            .map(|(t, ops)| {
                let (barrier, stop, done, probe) = (&barrier, &stop, &done, &probe);
                scope.spawn(move || {
                    let local = map.local();
                    let mut probe = probe();
                    let mut state = ThreadState::new(layout, t);
                    barrier.wait();
                    let start = Instant::now();
                    let counts = exec(map, &local, input.keys, ops, &mut state, stop, &mut probe);
                    let wall = start.elapsed();
                    done.fetch_add(1, Ordering::Relaxed);
                    (counts, wall, probe)
                })
            })
            .collect();
        let reloader = writer.then(|| {
            let (barrier, stop) = (&barrier, &stop);
            scope.spawn(move || reload_writer(map, input.keys, layout, barrier, stop))
        });

        barrier.wait();
        let deadline = Instant::now() + input.duration;
        loop {
            let now = Instant::now();
            if now >= deadline || done.load(Ordering::Relaxed) == streams {
                break;
            }
            thread::sleep((deadline - now).min(Duration::from_millis(1)));
        }
        stop.store(true, Ordering::Relaxed);

        let mut result = RunResult::default();
        let mut probes = Vec::with_capacity(streams);
        for worker in workers {
            let (counts, wall, probe) = worker.join().expect("worker panicked");
            result.ops += counts.ops;
            result.gets += counts.gets;
            result.hits += counts.hits;
            result.wall = result.wall.max(wall);
            probes.push(probe);
        }
        if let Some(reloader) = reloader {
            result.reloads = reloader.join().expect("writer panicked");
        }
        (result, probes)
    })
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

#[derive(Default)]
struct Counts {
    ops: u64,
    gets: u64,
    hits: u64,
}

/// Walks `ops` cyclically until `stop` (checked every [`CHUNK`] operations and
/// after every write) or,
/// in an exhaustible layout, until the thread's fresh keys run out.
#[inline(never)]
fn exec<K, S, M, P>(
    map: &M,
    local: &M::Local,
    keys: &KeyTable<K>,
    ops: &[Op],
    st: &mut ThreadState,
    stop: &AtomicBool,
    probe: &mut P,
) -> Counts
where
    K: LabKey,
    S: LabHasher,
    M: LabMap<K, S>,
    P: Probe,
{
    let mut c = Counts::default();
    let mut value = 0u64;
    'run: loop {
        for chunk in ops.chunks(CHUNK) {
            for &op in chunk {
                value = value.wrapping_add(1);
                match op.kind() {
                    Kind::Get => {
                        c.gets += 1;
                        let found = keys.with(op.arg(), |key| probe.get(|| map.get(local, key)));
                        c.hits += u64::from(found.is_some());
                    }
                    Kind::Insert => map.insert(local, keys.owned(op.arg()), value),
                    Kind::Remove => {
                        black_box(keys.with(op.arg(), |key| map.remove(local, key)));
                    }
                    Kind::GetOwn => {
                        c.gets += 1;
                        let found =
                            keys.with(st.base + op.arg(), |key| probe.get(|| map.get(local, key)));
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
                        black_box(keys.with(st.key(st.erased), |key| map.remove(local, key)));
                        if st.erased < st.inserted {
                            st.erased += 1;
                        }
                    }
                    Kind::GetRecent => {
                        let seq = st.inserted.wrapping_sub(1 + op.arg() as u64);
                        c.gets += 1;
                        let found = keys.with(st.key(seq), |key| probe.get(|| map.get(local, key)));
                        c.hits += u64::from(found.is_some());
                    }
                }
                c.ops += 1;
                if !matches!(op.kind(), Kind::Get | Kind::GetOwn | Kind::GetRecent)
                    && stop.load(Ordering::Relaxed)
                {
                    break 'run;
                }
            }
            if stop.load(Ordering::Relaxed) {
                break 'run;
            }
        }
    }
    black_box(value);
    c
}

/// The config-reload writer: every [`RELOAD_PERIOD`], one batch that removes one
/// slice of the universe and inserts the absent one (10% of the keys each way).
/// Returns the number of batches.
fn reload_writer<K: LabKey, S: LabHasher, M: LabMap<K, S>>(
    map: &M,
    keys: &KeyTable<K>,
    layout: &Layout,
    barrier: &Barrier,
    stop: &AtomicBool,
) -> u64 {
    let local = map.local();
    let keys = keys.keys();
    let slice = layout.slice;
    barrier.wait();
    let start = Instant::now();
    let mut reloads = 0u64;
    while !stop.load(Ordering::Relaxed) {
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
            if now >= next || stop.load(Ordering::Relaxed) {
                break;
            }
            thread::sleep((next - now).min(Duration::from_millis(1)));
        }
    }
    reloads
}
