//! A Zipf sampler: rank `k` in `1..=n` drawn with probability proportional
//! to `k^-s`, in constant expected time and without a table.
//!
//! Rejection-inversion (W. Hörmann and G. Derflinger, "Rejection-inversion
//! to generate variates from monotone discrete distributions", ACM TOMACS
//! 6(3), 1996), as Apache Commons RNG and `rand_distr` implement it: invert
//! the integral `H` of the continuous hat `h(x) = x^-s`, round to the
//! nearest rank, and accept unless the point falls in the sliver between
//! the hat and the rank's bar. Written here rather than taken from
//! `rand_distr`, which would bring `rand` and its generators into a CLI
//! that has its own ([`Rng`]).

use crate::rng::Rng;

/// Zipf(`s`) over the ranks `1..=n`.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    /// `H(1.5) - 1`: the top of the integral's range (rank 1's bar is 1).
    h_x1: f64,
    /// `H(n + 0.5)`: its bottom.
    h_n: f64,
    /// Ranks within this of their point are accepted without a test.
    squeeze: f64,
}

/// `(e^x - 1) / x`, continuous at 0.
fn expm1_over(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x / 2.0 * (1.0 + x / 3.0 * (1.0 + x / 4.0))
    }
}

/// `ln(1 + x) / x`, continuous at 0.
fn ln1p_over(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

impl Zipf {
    /// Zipf(`s`) over `1..=n`; `n >= 1`, `s >= 0` and finite (0 is
    /// uniform), else the message.
    pub fn new(n: u64, s: f64) -> Result<Zipf, String> {
        if n == 0 {
            return Err("a Zipf distribution needs at least one rank".into());
        }
        if !(s.is_finite() && s >= 0.0) {
            return Err(format!(
                "a Zipf exponent must be finite and not negative, not {s}"
            ));
        }
        let mut z = Zipf {
            n: n as f64,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            squeeze: 0.0,
        };
        z.h_x1 = z.big_h(1.5) - 1.0;
        z.h_n = z.big_h(z.n + 0.5);
        z.squeeze = 2.0 - z.big_h_inv(z.big_h(2.5) - z.h(2.0));
        Ok(z)
    }

    /// The hat: `x^-s`.
    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    /// Its integral, `(x^(1-s) - 1) / (1 - s)` (`ln x` at `s = 1`).
    fn big_h(&self, x: f64) -> f64 {
        let ln = x.ln();
        expm1_over((1.0 - self.s) * ln) * ln
    }

    /// The integral's inverse.
    fn big_h_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (ln1p_over(t) * x).exp()
    }

    /// One rank, `1..=n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let unit = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            let u = self.h_n + unit * (self.h_x1 - self.h_n);
            let x = self.big_h_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.squeeze || u >= self.big_h(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact probabilities of ranks `1..=n`.
    fn pmf(n: u64, s: f64) -> Vec<f64> {
        let w: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = w.iter().sum();
        w.into_iter().map(|x| x / total).collect()
    }

    /// Draws `draws` ranks and checks each of the first `top` ranks' share,
    /// and the share of the rest together, against the exact probability
    /// (within 5 standard deviations of a binomial count).
    fn matches_pmf(n: u64, s: f64, draws: u64, top: usize) {
        let z = Zipf::new(n, s).unwrap();
        let mut rng = Rng::new(42);
        let mut counts = vec![0u64; n as usize + 1];
        for _ in 0..draws {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k), "rank {k} outside 1..={n}");
            counts[k as usize] += 1;
        }
        let p = pmf(n, s);
        let d = draws as f64;
        let check = |what: String, got: u64, p: f64| {
            let sd = (d * p * (1.0 - p)).sqrt().max(1.0);
            let want = d * p;
            assert!(
                (got as f64 - want).abs() <= 5.0 * sd,
                "n {n}, s {s}: {what}: {got} draws, want {want:.0} ± {:.0}",
                5.0 * sd
            );
        };
        for k in 1..=top.min(n as usize) {
            check(format!("rank {k}"), counts[k], p[k - 1]);
        }
        if (top as u64) < n {
            let rest: u64 = counts[top + 1..].iter().sum();
            check(format!("ranks above {top}"), rest, p[top..].iter().sum());
        }
    }

    #[test]
    fn ranks_follow_the_exact_distribution() {
        matches_pmf(1000, 0.99, 400_000, 20);
        matches_pmf(100_000, 0.99, 400_000, 10);
        // s = 1 exactly (the integral is ln x) and around it.
        matches_pmf(1000, 1.0, 200_000, 10);
        matches_pmf(50, 1.5, 200_000, 50);
        matches_pmf(1000, 0.5, 200_000, 10);
        // s = 0 is uniform.
        matches_pmf(10, 0.0, 100_000, 10);
        // One rank: always 1.
        matches_pmf(1, 0.99, 1000, 1);
    }

    #[test]
    fn the_head_of_a_zipf_099_trace_is_as_heavy_as_it_should_be() {
        // Over 100 k keys, the hottest 1 % take about 60 % of the draws
        // (the hottest 2 %, what 64 MiB of 32 KiB values holds: 66 %, the
        // best hit ratio a cache of the bench's default size can have).
        let (n, draws) = (100_000u64, 300_000u64);
        let z = Zipf::new(n, 0.99).unwrap();
        let mut rng = Rng::new(7);
        let hot = (0..draws).filter(|_| z.sample(&mut rng) <= n / 100).count();
        let p: f64 = pmf(n, 0.99)[..(n / 100) as usize].iter().sum();
        let share = hot as f64 / draws as f64;
        assert!((share - p).abs() < 0.01, "{share} vs {p}");
        assert!((0.6..0.61).contains(&p), "{p}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(10, -0.5).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
        assert!(Zipf::new(10, f64::INFINITY).is_err());
        assert!(Zipf::new(u64::MAX, 3.0).is_ok());
    }
}
