//! The seeded random generator every test of the crate shares: unit tests reach
//! it as `crate::test_support::Rng`, integration tests as `common::Rng`. A test
//! seeds it with a fixed number, so every run replays the same operation mix
//! (for the `rand` version in `Cargo.lock`).
// Each test target uses a subset of these draws.
#![allow(dead_code)]

use rand::rngs::SmallRng;
use rand::{Rng as _, RngExt as _, SeedableRng as _};

/// rand's `SmallRng` (fast, not cryptographic), seeded, with the draws the
/// tests use.
#[derive(Clone, Debug)]
pub struct Rng(SmallRng);

impl Rng {
    /// The generator for `seed`: the same seed gives the same sequence.
    pub fn new(seed: u64) -> Self {
        Rng(SmallRng::seed_from_u64(seed))
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}
