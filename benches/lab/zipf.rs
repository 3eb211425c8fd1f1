//! Zipf-distributed ranks by rejection-inversion (Hörmann and Derflinger, "Rejection-
//! inversion to generate variates from monotone discrete distributions", 1996):
//! O(1) per sample and no table, so millions of skewed key choices are cheap to
//! pre-generate even over a million keys.

use crate::rng::Rng;

/// Ranks `0..n` where rank `k` has probability proportional to `1 / (k + 1)^s`.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    cut: f64,
}

impl Zipf {
    /// The distribution over `n >= 1` ranks with exponent `s > 0`.
    pub fn new(n: u64, s: f64) -> Self {
        assert!(n >= 1 && s > 0.0, "Zipf needs n >= 1 and s > 0");
        let mut z = Zipf {
            n: n as f64,
            s,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            cut: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.cut = 2.0 - z.h_integral_inv(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// One rank in `0..n` (0 is the most frequent).
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.unit() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.cut || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64 - 1;
            }
        }
    }

    /// `h(x) = x^-s`, the unnormalized density.
    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    /// An antiderivative of `h`: `(x^(1-s) - 1) / (1 - s)`, stable near `s = 1`.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        expm1_over_x((1.0 - self.s) * log_x) * log_x
    }

    /// The inverse of [`h_integral`](Self::h_integral).
    fn h_integral_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (ln1p_over_x(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, with its series near 0.
fn ln1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, with its series near 0.
fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// Checks the sampler against the exact probabilities of the top ranks (run by the
/// smoke mode, so `cargo test --benches` covers it). Returns a description of the
/// first mismatch.
pub fn self_check() -> Result<(), String> {
    let (n, s, samples) = (1000u64, 0.99, 400_000u64);
    let zipf = Zipf::new(n, s);
    let mut rng = Rng::new(7);
    let mut counts = vec![0u64; n as usize];
    for _ in 0..samples {
        counts[zipf.sample(&mut rng) as usize] += 1;
    }
    let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
    for k in [1u64, 2, 10, 100] {
        let expected = (k as f64).powf(-s) / norm;
        let seen = counts[k as usize - 1] as f64 / samples as f64;
        if (seen - expected).abs() > 0.1 * expected + 0.0005 {
            return Err(format!(
                "zipf rank {k}: frequency {seen:.5}, expected {expected:.5}"
            ));
        }
    }
    Ok(())
}
