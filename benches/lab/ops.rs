//! Pre-generated operation streams: each stream thread gets a fixed sequence of
//! operations, drawn from a seeded generator before the run, identical for every
//! map. A thread walks its stream cyclically until the run stops.

use clap::ValueEnum;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::workloads::{Layout, Shape, Workload};

/// How keys are chosen (`--dists`), in output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum Dist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent 0.99 (YCSB's skew): a few hot keys take most accesses.
    Zipf,
}

impl Dist {
    /// Name on the command line and in the output.
    pub fn id(self) -> String {
        crate::cli::value_name(self)
    }
}

/// Zipf's exponent for [`Dist::Zipf`].
pub const ZIPF_S: f64 = 0.99;

/// What an operation does; the key argument's meaning depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Get the universe key with this index.
    Get = 0,
    /// Insert (or overwrite) the universe key with this index.
    Insert = 1,
    /// Remove the universe key with this index.
    Remove = 2,
    /// Get the key at this offset in the thread's region.
    GetOwn = 3,
    /// Overwrite the key at this offset in the thread's region if present.
    UpdateOwn = 4,
    /// Insert the thread's next fresh key.
    InsertNext = 5,
    /// Remove the thread's oldest inserted key.
    RemoveOldest = 6,
    /// Get the thread's fresh key inserted this many inserts ago (0 = latest).
    GetRecent = 7,
}

/// One operation packed in 4 bytes: 3 bits of [`Kind`], 29 bits of argument
/// (streams stay small enough to sit in cache next to the map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op(u32);

const ARG_BITS: u32 = 29;
const ARG_MASK: u32 = (1 << ARG_BITS) - 1;

impl Op {
    fn new(kind: Kind, arg: usize) -> Self {
        assert!(arg <= ARG_MASK as usize, "key index {arg} too large");
        Op(((kind as u32) << ARG_BITS) | arg as u32)
    }

    /// The operation.
    #[inline(always)]
    pub fn kind(self) -> Kind {
        match self.0 >> ARG_BITS {
            0 => Kind::Get,
            1 => Kind::Insert,
            2 => Kind::Remove,
            3 => Kind::GetOwn,
            4 => Kind::UpdateOwn,
            5 => Kind::InsertNext,
            6 => Kind::RemoveOldest,
            _ => Kind::GetRecent,
        }
    }

    /// Its argument (a key index or offset).
    #[inline(always)]
    pub fn arg(self) -> usize {
        (self.0 & ARG_MASK) as usize
    }
}

/// Picks keys from `0..n` under a distribution; under Zipf, rank `r` maps to a
/// fixed random key, so hot keys are scattered over the key space (and over
/// present and absent keys alike).
enum Picker {
    Uniform(usize),
    Zipf {
        zipf: Zipf<f64>,
        /// Rank → key index, a random permutation.
        perm: Vec<u32>,
    },
}

impl Picker {
    fn new(n: usize, dist: Dist, seed: u64) -> Self {
        let n = n.max(1);
        match dist {
            Dist::Uniform => Picker::Uniform(n),
            Dist::Zipf => {
                let mut perm: Vec<u32> = (0..n as u32).collect();
                perm.shuffle(&mut SmallRng::seed_from_u64(seed ^ 0x005e_ed0f_9e47));
                let zipf = Zipf::new(n as f64, ZIPF_S).expect("n >= 1 and s > 0");
                Picker::Zipf { zipf, perm }
            }
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> usize {
        match self {
            Picker::Uniform(n) => rng.random_range(0..*n),
            // Zipf samples ranks 1..=n as floats.
            Picker::Zipf { zipf, perm } => perm[zipf.sample(rng) as usize - 1] as usize,
        }
    }
}

/// Stream length for a cell with `keys` keys: long enough that a thread's stream
/// touches most keys of a 1M-key map (no artificially small working set), short
/// enough for 16 streams to be generated in well under a second.
pub fn stream_len(keys: usize) -> usize {
    (4 * keys).next_power_of_two().clamp(1 << 16, 1 << 21)
}

/// The operation streams of one cell: one per stream thread.
pub fn generate(
    workload: Workload,
    layout: &Layout,
    dist: Dist,
    len: usize,
    seed: u64,
) -> Vec<Vec<Op>> {
    let universe = Picker::new(layout.universe, dist, seed);
    let region = Picker::new(layout.region, dist, seed ^ 1);
    (0..layout.threads)
        .map(|t| {
            let mut rng = SmallRng::seed_from_u64(seed ^ ((t as u64 + 1) << 40));
            let mut ops = Vec::with_capacity(len);
            match workload.shape() {
                Shape::Universe {
                    get,
                    insert,
                    remove,
                    ..
                } => {
                    assert_eq!(get + insert + remove, 1000, "per-mille shares");
                    while ops.len() < len {
                        let r = rng.random_range(0..1000);
                        let key = universe.pick(&mut rng);
                        let kind = if r < get {
                            Kind::Get
                        } else if r < get + insert {
                            Kind::Insert
                        } else {
                            Kind::Remove
                        };
                        ops.push(Op::new(kind, key));
                    }
                }
                Shape::Overwrite { get } => {
                    while ops.len() < len {
                        let kind = if rng.random_range(0..1000) < get {
                            Kind::Get
                        } else {
                            Kind::Insert
                        };
                        ops.push(Op::new(kind, universe.pick(&mut rng)));
                    }
                }
                Shape::ConfigReload => {
                    while ops.len() < len {
                        ops.push(Op::new(Kind::Get, universe.pick(&mut rng)));
                    }
                }
                Shape::Storm { reads, recent } => {
                    let recent = Picker::new(recent as usize, dist, seed ^ 2);
                    while ops.len() < len {
                        ops.push(Op::new(Kind::InsertNext, 0));
                        for _ in 0..reads {
                            ops.push(Op::new(Kind::GetRecent, recent.pick(&mut rng)));
                        }
                    }
                    ops.truncate(len);
                }
                Shape::Bustle {
                    read,
                    insert,
                    remove,
                    update,
                    ..
                } => {
                    assert_eq!(read + insert + remove + update, 100, "percent shares");
                    while ops.len() < len {
                        let r = rng.random_range(0..100);
                        let op = if r < read {
                            Op::new(Kind::GetOwn, region.pick(&mut rng))
                        } else if r < read + insert {
                            Op::new(Kind::InsertNext, 0)
                        } else if r < read + insert + remove {
                            Op::new(Kind::RemoveOldest, 0)
                        } else {
                            Op::new(Kind::UpdateOwn, region.pick(&mut rng))
                        };
                        ops.push(op);
                    }
                }
            }
            ops
        })
        .collect()
}
