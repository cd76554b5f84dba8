//! The key traces the cache scenario replays: one per thread, generated
//! from the seed before any backend runs, and the same for every backend.

use super::zipf::Zipf;
use super::CacheWorkload;
use crate::rng::Rng;

/// The bit of an operation that makes it an insert (else a get); the
/// other bits are the key.
const INSERT: u32 = 1 << 31;

/// The largest key count a trace can carry (keys below [`INSERT`]).
pub const MAX_KEYS: u64 = INSERT as u64;

/// One operation of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get(u64),
    Insert(u64),
}

/// One thread's operations, replayed in a loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace(Vec<u32>);

/// SplitMix64's finalizer: spreads a counter over all 64 bits.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The size of `key`'s value: uniform over `min..=max` across keys, and a
/// function of the key alone, so every backend and every thread sees the
/// same size for it.
pub fn value_size(key: u64, min: usize, max: usize) -> usize {
    let span = (max - min) as u64 + 1;
    min + (mix(key ^ 0x5EED_5EED) % span) as usize
}

impl Trace {
    /// Thread `thread`'s trace of `w.trace_len` operations: keys
    /// `0..w.keys` by Zipf(`w.zipf`) rank (key 0 the hottest), a get with
    /// probability `w.get_percent` %. A function of `w.seed`, `thread` and
    /// those parameters alone. `w.keys` must be in `1..=MAX_KEYS`.
    pub fn generate(w: &CacheWorkload, thread: usize) -> Result<Trace, String> {
        if w.keys == 0 || w.keys > MAX_KEYS {
            return Err(format!(
                "a trace holds 1 to {MAX_KEYS} keys, not {}",
                w.keys
            ));
        }
        let zipf = Zipf::new(w.keys, w.zipf)?;
        let mut rng = Rng::new(mix(w.seed ^ mix(thread as u64 + 1)));
        let ops = (0..w.trace_len)
            .map(|_| {
                let key = (zipf.sample(&mut rng) - 1) as u32;
                if rng.below(100) < u64::from(w.get_percent) {
                    key
                } else {
                    key | INSERT
                }
            })
            .collect();
        Ok(Trace(ops))
    }

    /// The traces of threads `0..w.threads`, generated in parallel (on
    /// this thread, one whose generator thread could not be started: the
    /// run's own workers then say so, naming --threads).
    pub fn for_threads(w: &CacheWorkload) -> Result<Vec<Trace>, String> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..w.threads)
                .map(|t| {
                    let h = std::thread::Builder::new()
                        .spawn_scoped(s, move || Trace::generate(w, t))
                        .ok();
                    (t, h)
                })
                .collect();
            handles
                .into_iter()
                .map(|(t, h)| match h {
                    Some(h) => h
                        .join()
                        .map_err(|_| "a trace generator panicked".to_string())?,
                    None => Trace::generate(w, t),
                })
                .collect()
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Operation `i` (modulo the trace's length).
    #[inline]
    pub fn op(&self, i: usize) -> Op {
        let op = self.0[i % self.0.len()];
        if op & INSERT == 0 {
            Op::Get(u64::from(op))
        } else {
            Op::Insert(u64::from(op & !INSERT))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// The default workload, with a short trace.
    pub(crate) fn workload() -> CacheWorkload {
        CacheWorkload {
            threads: 2,
            keys: 100_000,
            zipf: 0.99,
            get_percent: 90,
            value_min: 1 << 10,
            value_max: 64 << 10,
            capacity: 64 << 20,
            seed: 1,
            memory_guard: 256 << 20,
            trace_len: 100_000,
            cgroup_limit: None,
            hog: 0,
            duration: Duration::from_millis(100),
            warmup: Duration::from_millis(20),
        }
    }

    #[test]
    fn a_trace_is_a_function_of_its_seed_and_thread() {
        let w = workload();
        let a = Trace::generate(&w, 0).unwrap();
        assert_eq!(a, Trace::generate(&w, 0).unwrap());
        assert_eq!(a.len(), w.trace_len);
        assert_ne!(a, Trace::generate(&w, 1).unwrap());
        let other = CacheWorkload {
            seed: 2,
            ..w.clone()
        };
        assert_ne!(a, Trace::generate(&other, 0).unwrap());
        // In parallel, the same traces.
        let all = Trace::for_threads(&w).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], a);
        assert_eq!(all[1], Trace::generate(&w, 1).unwrap());
    }

    #[test]
    fn a_trace_mixes_gets_and_inserts_of_hot_keys_as_asked() {
        let w = workload();
        let t = Trace::generate(&w, 3).unwrap();
        let (mut gets, mut hot) = (0, 0);
        for i in 0..t.len() {
            let key = match t.op(i) {
                Op::Get(k) => {
                    gets += 1;
                    k
                }
                Op::Insert(k) => k,
            };
            assert!(key < w.keys);
            hot += usize::from(key < w.keys / 100);
        }
        let gets = gets as f64 / t.len() as f64;
        assert!((gets - 0.9).abs() < 0.005, "{gets}");
        // The hottest 1 % of the keys: about 60 % of the operations.
        let hot = hot as f64 / t.len() as f64;
        assert!((hot - 0.605).abs() < 0.01, "{hot}");
        assert_eq!(t.op(t.len()), t.op(0), "the trace loops");
        let all_gets = CacheWorkload {
            get_percent: 100,
            ..w.clone()
        };
        let t = Trace::generate(&all_gets, 0).unwrap();
        assert!((0..t.len()).all(|i| matches!(t.op(i), Op::Get(_))));
        let too_many = CacheWorkload {
            keys: MAX_KEYS + 1,
            ..w
        };
        assert!(Trace::generate(&too_many, 0).is_err());
    }

    #[test]
    fn value_sizes_are_a_function_of_the_key_spread_over_the_range() {
        let (min, max) = (1 << 10, 64 << 10);
        let sizes: Vec<usize> = (0..100_000).map(|k| value_size(k, min, max)).collect();
        assert!(sizes.iter().all(|s| (min..=max).contains(s)));
        assert_eq!(sizes[12_345], value_size(12_345, min, max));
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        let want = (min + max) as f64 / 2.0;
        assert!((mean / want - 1.0).abs() < 0.01, "{mean} vs {want}");
        // Not sorted by key: hot keys are no smaller than cold ones.
        let hot = sizes[..1000].iter().sum::<usize>() as f64 / 1000.0;
        assert!((hot / want - 1.0).abs() < 0.05, "{hot} vs {want}");
        assert_eq!(value_size(7, 5, 5), 5);
    }
}
