//! The random numbers the dentry-cache workload draws (keys, payload
//! sizes, which operation), in `demo` and `bench` alike.

/// A small, fast generator (xorshift64*): the workload needs speed and
/// spread, not cryptographic quality.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (made odd: xorshift needs a nonzero
    /// state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`): the high half of a 64×64-bit product
    /// (Lemire's reduction). `next() % n` was a 64-bit division, 25–40
    /// cycles on x86-64: two of them per operation cost the bench's loop
    /// about as much as a read-side section of the faster backends, and
    /// blurred the differences it measures.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Skewed towards small values (hot keys): the square of a uniform.
    pub fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        // `u < 1`, so the product is below `n` but for rounding.
        (((u * u) * n as f64) as u64).min(n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn below_stays_in_range_and_covers_it_evenly() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..100_000 {
            seen[rng.below(10) as usize] += 1;
        }
        // Each bucket within 5 % of its share.
        assert!(
            seen.iter().all(|&c| (9_500..=10_500).contains(&c)),
            "{seen:?}"
        );
        assert_eq!(rng.below(1), 0);
        assert!((0..1000).all(|_| rng.below(u64::MAX) < u64::MAX));
    }

    #[test]
    fn skewed_stays_in_range_and_favours_small_keys() {
        let mut rng = Rng::new(11);
        let n = 1000;
        let draws: Vec<u64> = (0..100_000).map(|_| rng.skewed(n)).collect();
        assert!(draws.iter().all(|&k| k < n));
        // P(k < n/4) = P(u² < 1/4) = P(u < 1/2) = 1/2.
        let low = draws.iter().filter(|&&k| k < n / 4).count();
        assert!((48_000..=52_000).contains(&low), "{low}");
        assert_eq!(rng.skewed(1), 0);
    }
}
