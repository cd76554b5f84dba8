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

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Skewed towards small values (hot keys): the square of a uniform.
    pub fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u) * n as f64) as u64 % n
    }
}
