//! `rcu-reclaim bench --scenario cache`: concurrent caches of large values
//! on a Zipf key trace, side by side.
//!
//! Every thread replays its own trace ([`trace`]): 90 % gets of a key
//! drawn from Zipf(`s`) over `keys` keys ([`zipf`]), 10 % inserts of a
//! fresh value; a get that misses inserts the value ("cache-aside"), as a
//! program that fills its cache from a slower store does. A key's value
//! size is a function of the key, so every backend caches the same bytes.
//! rcu-reclaim's `RcuCache` ([`ours`]) and the others ([`backends`]) are
//! bounded by the same byte capacity (RcuCache, moka, quick_cache) or not
//! bounded at all (papaya, a map: its run is stopped by a memory guard). [`run`] times one backend; [`report`] puts
//! them side by side; [`cmd`] interleaves the rounds.

pub mod backends;
pub mod cgroup;
pub mod cmd;
pub mod hog;
pub mod ours;
pub(crate) mod plot;
pub mod report;
pub mod run;
pub mod trace;
pub mod zipf;

use std::time::Duration;

use serde::Serialize;

/// A cache as the bench drives it. Values are `size` bytes, each
/// `key as u8`; every backend builds them in its own container (an
/// `Arc<Vec<u8>>` where `get` hands out clones, a `Vec<u8>` where it lends a
/// reference).
pub trait CacheUnderTest: Send + Sync + Sized + 'static {
    /// Its column in the tables and its `--backend` name.
    const NAME: &'static str;
    /// Whether it holds its bytes under the capacity (papaya does not).
    const BOUNDED: bool;

    /// An empty cache for the workload (its capacity, its key count).
    fn new(w: &CacheWorkload) -> Result<Self, String>;

    /// Looks `key` up: on a hit, the value's first byte.
    fn get(&self, key: u64) -> Option<u8>;

    /// Inserts (or replaces) `key`'s value, `size` bytes.
    fn insert(&self, key: u64, size: usize);

    /// The bytes the cache counts itself holding (its weights), if it
    /// counts them.
    fn bytes(&self) -> Option<usize>;

    /// Its entries.
    fn len(&self) -> usize;

    /// rcu-reclaim's: the bytes its domain holds retired, waiting for a
    /// grace period or a free (`Rcu::pending_bytes`); none for the others,
    /// which free an evicted value as its last handle drops.
    fn garbage(&self) -> Option<usize> {
        None
    }

    /// rcu-reclaim's: its domain's engine counters now (grace periods,
    /// `membarrier` calls, its threads' CPU time); none for the others.
    fn engine(&self) -> Option<crate::bench::engine::EngineSample> {
        None
    }

    /// Frees everything, so that the next run starts from the same memory
    /// (rcu-reclaim: after the grace periods its frees wait for).
    fn finish(self) {
        drop(self);
    }
}

/// The cache scenario's workload.
#[derive(Clone, Debug, Serialize)]
pub struct CacheWorkload {
    pub threads: usize,
    pub keys: u64,
    /// The Zipf exponent of the key trace.
    pub zipf: f64,
    /// Per cent of the trace's operations that are gets (the rest:
    /// inserts; a get that misses also inserts).
    pub get_percent: u32,
    pub value_min: usize,
    pub value_max: usize,
    /// Every bounded backend's capacity, in bytes.
    pub capacity: usize,
    pub seed: u64,
    /// RSS growth (above the run's start) at which a backend's run is
    /// stopped: `--cache-guard` (4) × the capacity, at most half the memory
    /// available when the bench starts.
    pub memory_guard: usize,
    /// Operations in each thread's trace (it replays it in a loop).
    pub trace_len: usize,
    /// `--cgroup-limit`: each run in a child process in a memory cgroup of
    /// this hard limit (rcu-reclaim's cache then answers the cgroup's
    /// budget), beside a hog thread.
    pub cgroup_limit: Option<usize>,
    /// The hog's peak, bytes (0: no hog).
    pub hog: usize,
    /// Measured time per run.
    #[serde(skip)]
    pub duration: Duration,
    /// Time each run runs before it is measured (the cache fills).
    #[serde(skip)]
    pub warmup: Duration,
}
