//! The workloads: operation mixes named after what users do with a read-mostly
//! map, and the key layout each one needs.
//!
//! Most mixes draw every key from one shared *universe* of key ids, of which the
//! first `present` are in the map when a run starts. A mix whose inserts and
//! removes draw keys from the same distribution keeps, in steady state, a key
//! present with probability insert / (insert + remove): the 9:1 ratio below holds
//! the hit rate of gets at ~90%, the 1:1 of `churn` at ~50%, whatever the key
//! distribution. `--keys` is the number of keys present at the start.

use clap::ValueEnum;

use crate::keys::KeyType;
use crate::ops::Dist;

/// One workload of the lab, in output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    ReadOnly,
    ReadHeavy,
    Mixed,
    WriteHeavy,
    Churn,
    ConfigReload,
    NewKeyStorm,
    BustleReadHeavy,
    BustleExchange,
    BustleRapidGrow,
    Routing,
}

/// How a workload's threads pick operations and keys.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Per-mille shares of get / insert / remove over the shared universe, in which
    /// `present_per_10` tenths of the keys are present at the start.
    Universe {
        get: u32,
        insert: u32,
        remove: u32,
        present_per_10: usize,
    },
    /// Per-mille share of gets over the universe, every key present; the rest
    /// overwrite a present key (nothing is inserted anew or removed).
    Overwrite { get: u32 },
    /// Readers get keys of the universe (11 slices of `keys / 10`, 10 present); one
    /// extra writer thread replaces a slice (10% of the keys) every 10 ms.
    ConfigReload,
    /// Each thread inserts a fresh key of its own, then gets `reads` of its
    /// `recent` latest fresh keys.
    Storm { reads: u32, recent: u32 },
    /// bustle's model (conc-map-bench): percent shares; each thread inserts fresh
    /// keys of its own region in order, removes its oldest, and reads or updates
    /// keys of its region that may or may not be present. `prefill` is the
    /// fraction of `keys` inserted before the run (split over the threads).
    Bustle {
        read: u32,
        insert: u32,
        remove: u32,
        update: u32,
        prefill: f64,
    },
}

impl Workload {
    /// The default matrix's workloads.
    pub const DEFAULT: [Workload; 7] = [
        Workload::ReadOnly,
        Workload::ReadHeavy,
        Workload::Mixed,
        Workload::Churn,
        Workload::ConfigReload,
        Workload::NewKeyStorm,
        Workload::Routing,
    ];

    /// Name on the command line and in the output (the kebab-case variant).
    pub fn id(self) -> String {
        crate::cli::value_name(self)
    }

    /// One line for `--help` and the table titles.
    pub fn describe(self) -> &'static str {
        match self {
            Workload::ReadOnly => "100% get, every key present",
            Workload::ReadHeavy => "99% get / 0.9% insert / 0.1% remove, ~90% hits",
            Workload::Mixed => "90% get / 9% insert / 1% remove, ~90% hits",
            Workload::WriteHeavy => "50% get / 45% insert / 5% remove, ~90% hits",
            Workload::Churn => "98% get / 1% insert / 1% remove, ~50% hits (half the gets miss)",
            Workload::ConfigReload => {
                "gets on all threads but one; that one replaces 10% of the keys every 10 ms (one batch)"
            }
            Workload::NewKeyStorm => "each op group: insert a fresh key, then 4 gets of the thread's 16 latest fresh keys",
            Workload::BustleReadHeavy => "bustle/conc-map-bench ReadHeavy: 98 read / 1 insert / 1 remove, 75% prefill",
            Workload::BustleExchange => "bustle/conc-map-bench Exchange: 10 read / 40 insert / 40 remove / 10 update, 75% prefill",
            Workload::BustleRapidGrow => "bustle/conc-map-bench RapidGrow: 5 read / 80 insert / 5 remove / 10 update, empty start",
            Workload::Routing => "a route table: 10k route keys, Zipf, 99.9% get by &str / 0.1% overwrite",
        }
    }

    /// The key type, key count and distribution this workload always runs with,
    /// whatever `--key-types`, `--keys` and `--dists` say (`None`: it follows them).
    pub fn fixed_axes(self) -> Option<(KeyType, usize, Dist)> {
        match self {
            Workload::Routing => Some((KeyType::Route, 10_000, Dist::Zipf)),
            _ => None,
        }
    }

    /// Whether every get asks for a key present throughout the run (nothing is
    /// removed; writes overwrite): then every miss is a wrong answer.
    pub fn gets_always_hit(self) -> bool {
        matches!(self, Workload::ReadOnly | Workload::Routing)
    }

    /// Whether the workload only reads, apart from a single writer thread: the
    /// workloads where a left-right map (one writer, many readers) belongs.
    pub fn single_writer(self) -> bool {
        matches!(self, Workload::ReadOnly | Workload::ConfigReload)
    }

    /// How threads pick operations and keys.
    pub fn shape(self) -> Shape {
        let universe = |get, insert, remove, present_per_10| Shape::Universe {
            get,
            insert,
            remove,
            present_per_10,
        };
        match self {
            Workload::ReadOnly => universe(1000, 0, 0, 10),
            Workload::ReadHeavy => universe(990, 9, 1, 9),
            Workload::Mixed => universe(900, 90, 10, 9),
            Workload::WriteHeavy => universe(500, 450, 50, 9),
            Workload::Churn => universe(980, 10, 10, 5),
            Workload::Routing => Shape::Overwrite { get: 999 },
            Workload::ConfigReload => Shape::ConfigReload,
            Workload::NewKeyStorm => Shape::Storm {
                reads: 4,
                recent: 16,
            },
            Workload::BustleReadHeavy => Shape::Bustle {
                read: 98,
                insert: 1,
                remove: 1,
                update: 0,
                prefill: 0.75,
            },
            Workload::BustleExchange => Shape::Bustle {
                read: 10,
                insert: 40,
                remove: 40,
                update: 10,
                prefill: 0.75,
            },
            Workload::BustleRapidGrow => Shape::Bustle {
                read: 5,
                insert: 80,
                remove: 5,
                update: 10,
                prefill: 0.0,
            },
        }
    }

    /// Threads that run operation streams when `threads` are asked for: all of
    /// them, except in `config-reload`, where one is the writer (at 1 thread, the
    /// lab runs one reader and the writer).
    pub fn stream_threads(self, threads: usize) -> usize {
        match self {
            Workload::ConfigReload => threads.saturating_sub(1).max(1),
            _ => threads,
        }
    }

    /// The key layout of this workload for `keys` keys and `threads` stream threads.
    pub fn layout(self, keys: usize, threads: usize) -> Layout {
        let keys = keys.max(16);
        let region = (2 * keys / threads).next_power_of_two().max(1024);
        match self.shape() {
            Shape::Universe { present_per_10, .. } => Layout {
                universe: keys * 10 / present_per_10,
                present: keys,
                ..Layout::empty(threads)
            },
            Shape::Overwrite { .. } => Layout {
                universe: keys,
                present: keys,
                ..Layout::empty(threads)
            },
            Shape::ConfigReload => {
                let slice = keys / 10;
                Layout {
                    universe: 11 * slice,
                    present: 10 * slice,
                    slice,
                    ..Layout::empty(threads)
                }
            }
            Shape::Storm { .. } => Layout {
                universe: keys,
                present: keys,
                region,
                exhaustible: true,
                ..Layout::empty(threads)
            },
            Shape::Bustle {
                prefill,
                insert,
                remove,
                ..
            } => Layout {
                region,
                region_prefill: (keys as f64 * prefill) as usize / threads,
                // Inserts outpace removes: a thread stops when its region is used
                // up, as bustle's threads stop after a fixed number of operations.
                exhaustible: insert > remove,
                ..Layout::empty(threads)
            },
        }
    }
}

/// Where a cell's keys live in its key table: ids `0..universe` are shared by all
/// threads, of which `0..present` are inserted before the run; then each stream
/// thread owns a region of `region` ids (a power of two, or 0), of which the first
/// `region_prefill` are inserted before the run.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub universe: usize,
    pub present: usize,
    pub threads: usize,
    pub region: usize,
    pub region_prefill: usize,
    /// Whether a thread stops once it has inserted every key of its region (else
    /// the region is reused cyclically: a window of live keys slides over it).
    pub exhaustible: bool,
    /// `config-reload`: keys per slice (the universe is 11 slices).
    pub slice: usize,
}

impl Layout {
    fn empty(threads: usize) -> Self {
        Layout {
            universe: 0,
            present: 0,
            threads,
            region: 0,
            region_prefill: 0,
            exhaustible: false,
            slice: 0,
        }
    }

    /// Keys in the key table.
    pub fn total(&self) -> usize {
        self.universe + self.threads * self.region
    }

    /// Index of thread `t`'s first region key.
    pub fn region_base(&self, t: usize) -> usize {
        self.universe + t * self.region
    }
}
