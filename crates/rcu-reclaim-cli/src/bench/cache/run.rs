//! One timed run of one cache: start the threads on their traces, let the
//! cache fill (warm-up), measure, sample memory every 10 ms, and stop early
//! if the backend's memory passes the guard.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::reclaim::AccountingAlloc;
use rcu_reclaim::sources::RssSource;
use serde::{Deserialize, Serialize};

use super::hog::Hog;
use super::trace::{value_size, Op, Trace};
use super::{CacheUnderTest, CacheWorkload};

/// One sample of a running backend's memory, above the run's start.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct MemSample {
    pub ms: u64,
    pub rss: u64,
    /// Heap bytes in use (the CLI's accounting allocator).
    pub accounted: usize,
    /// What the hog holds (`--cgroup-limit`; 0 without one).
    pub hog: usize,
    /// rcu-reclaim: bytes retired and not yet freed (0 for the others).
    #[serde(default)]
    pub garbage: usize,
}

/// Where the memory guard stopped a run.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Stopped {
    /// RSS above the run's start when it was stopped.
    pub rss: u64,
    /// Seconds from the run's start (warm-up included).
    pub after_secs: f64,
}

/// rcu-reclaim's garbage over a run's measured time (10 ms samples).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct GarbageSamples {
    pub sum: u128,
    pub count: u64,
    pub peak: usize,
}

impl GarbageSamples {
    /// Adds one sample.
    pub fn add(&mut self, bytes: usize) {
        self.sum += bytes as u128;
        self.count += 1;
        self.peak = self.peak.max(bytes);
    }

    /// Merges another run's samples.
    pub fn merge(self, other: GarbageSamples) -> GarbageSamples {
        GarbageSamples {
            sum: self.sum + other.sum,
            count: self.count + other.count,
            peak: self.peak.max(other.peak),
        }
    }

    /// The mean sample, bytes (0 without samples).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// What one run measured (the counts: after the warm-up).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CacheRun {
    /// Measured seconds.
    pub secs: f64,
    pub gets: u64,
    pub hits: u64,
    /// Inserts the trace asked for.
    pub puts: u64,
    /// Inserts after a miss (cache-aside).
    pub fills: u64,
    /// Hits whose value was not the key's (must stay 0).
    pub wrong_values: u64,
    /// Sampled get latencies, ns (one get in 128 is timed).
    pub latencies: Vec<u32>,
    /// rcu-reclaim: the bytes its domain held retired, not yet freed, in
    /// the measured time's samples: their sum and count (for the mean) and
    /// the highest (none for the others).
    #[serde(default)]
    pub garbage: Option<GarbageSamples>,
    /// Peak RSS and heap above the run's start, warm-up included.
    pub peak_rss: u64,
    pub peak_accounted: usize,
    /// The cache's own count of its bytes, and its entries, at the end.
    pub bytes_held: Option<usize>,
    pub entries: usize,
    pub stopped: Option<Stopped>,
    pub samples: Vec<MemSample>,
    /// The process's CPU time over the measured time, user and system,
    /// seconds (every thread: workers, sampler, the engine's threads).
    #[serde(default)]
    pub cpu_user_secs: f64,
    #[serde(default)]
    pub cpu_sys_secs: f64,
    /// rcu-reclaim: what its engine spent over the measured time.
    #[serde(default)]
    pub engine: Option<crate::bench::EngineReport>,
    /// Grow-and-shrink cycles the hog completed (`--cgroup-limit`).
    pub hog_cycles: usize,
}

/// Gets timed: one in this many.
const LATENCY_EVERY: u64 = 128;
/// At most this many latency samples per thread and run.
const LATENCY_CAP: usize = 1 << 16;
/// Operations between two looks at the phase.
const BATCH: usize = 64;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// This process's RSS in bytes (0 if it cannot be read).
pub fn rss() -> u64 {
    RssSource::new(usize::MAX, Duration::from_secs(1))
        .rss()
        .map_or(0, |bytes| bytes as u64)
}

/// Gives the heap's free pages back to the kernel, so that each run's RSS
/// starts from what is really in use.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn worker<C: CacheUnderTest>(
    cache: &C,
    trace: &Trace,
    w: &CacheWorkload,
    phase: &AtomicU8,
) -> CacheRun {
    let mut out = CacheRun {
        latencies: Vec::with_capacity(4096),
        ..CacheRun::default()
    };
    let mut measuring = false;
    let mut i = 0usize;
    loop {
        match phase.load(Ordering::Relaxed) {
            STOP => break,
            MEASURE if !measuring => {
                measuring = true;
                // Only what follows counts (the latencies are empty yet).
                out = CacheRun {
                    latencies: std::mem::take(&mut out.latencies),
                    ..CacheRun::default()
                };
            }
            _ => {}
        }
        for _ in 0..BATCH {
            match trace.op(i) {
                Op::Get(key) => {
                    out.gets += 1;
                    let found = if out.gets % LATENCY_EVERY == 0
                        && measuring
                        && out.latencies.len() < LATENCY_CAP
                    {
                        let start = Instant::now();
                        let found = cache.get(key);
                        let ns = start.elapsed().as_nanos();
                        out.latencies.push(ns.min(u128::from(u32::MAX)) as u32);
                        found
                    } else {
                        cache.get(key)
                    };
                    match found {
                        Some(b) => {
                            out.hits += 1;
                            out.wrong_values += u64::from(b != key as u8);
                        }
                        None => {
                            cache.insert(key, value_size(key, w.value_min, w.value_max));
                            out.fills += 1;
                        }
                    }
                }
                Op::Insert(key) => {
                    cache.insert(key, value_size(key, w.value_min, w.value_max));
                    out.puts += 1;
                }
            }
            i = if i + 1 == trace.len() { 0 } else { i + 1 };
        }
    }
    out
}

/// Runs `C` on the workload, thread `t` on `traces[t]`.
pub fn run<C: CacheUnderTest>(
    w: &CacheWorkload,
    traces: &[Arc<Trace>],
) -> Result<CacheRun, String> {
    trim_heap();
    let base_rss = rss();
    let base_heap = AccountingAlloc::live_bytes();
    AccountingAlloc::reset_peak();
    let cache = Arc::new(C::new(w)?);
    let hog = if w.hog > 0 {
        Some(Hog::start(w.hog)?)
    } else {
        None
    };
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let start = Instant::now();
    let mut handles = Vec::new();
    for trace in traces.iter().take(w.threads) {
        let (cache, trace, w, ph) = (cache.clone(), trace.clone(), w.clone(), phase.clone());
        let h = thread::Builder::new()
            .name(format!("cache-{}", C::NAME))
            .spawn(move || worker(&*cache, &trace, &w, &ph));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                phase.store(STOP, Ordering::Relaxed);
                for h in handles {
                    let _ = h.join();
                }
                return Err(format!(
                    "cannot start a worker thread ({e}): this process may start no more \
                     threads (its limit: ulimit -u, or the cgroup's pids.max); lower --threads \
                     or raise the limit"
                ));
            }
        }
    }
    let (mut peak_rss, end) = (0, w.warmup + w.duration);
    // Sized for the whole run: no `realloc` on this thread while the
    // workers run (see the dcache bench's sampler).
    let mut samples = Vec::with_capacity((end.as_millis() / 10) as usize + 64);
    let mut stopped = None;
    let mut garbage: Option<GarbageSamples> = None;
    let mut measured_from = None;
    let mut engine_start = None;
    let mut cpu_start = None;
    // The measured window lasts `duration` from where it started: a
    // sampler woken late (a loaded machine) starts it late, and a fixed
    // end cut it short (0.12 s measured of a 0.2 s run).
    while measured_from.is_none_or(|t: Instant| t.elapsed() < w.duration) {
        thread::sleep(Duration::from_millis(10));
        let elapsed = start.elapsed();
        if measured_from.is_none() && elapsed >= w.warmup {
            phase.store(MEASURE, Ordering::Relaxed);
            measured_from = Some(Instant::now());
            engine_start = cache.engine();
            cpu_start = Some(crate::bench::engine::process_cpu_secs());
        }
        // One look a sample: the domain's total walks its threads' pages.
        let pending = cache.garbage();
        let s = MemSample {
            ms: elapsed.as_millis() as u64,
            rss: rss().saturating_sub(base_rss),
            accounted: AccountingAlloc::live_bytes().saturating_sub(base_heap),
            hog: hog.as_ref().map_or(0, Hog::held),
            garbage: pending.unwrap_or(0),
        };
        if let Some(bytes) = pending.filter(|_| measured_from.is_some()) {
            garbage
                .get_or_insert_with(GarbageSamples::default)
                .add(bytes);
        }
        samples.push(s);
        peak_rss = peak_rss.max(s.rss);
        if s.rss > w.memory_guard as u64 {
            stopped = Some(Stopped {
                rss: s.rss,
                after_secs: elapsed.as_secs_f64(),
            });
            break;
        }
    }
    let engine_end = cache.engine();
    let cpu_end = crate::bench::engine::process_cpu_secs();
    phase.store(STOP, Ordering::Relaxed);
    let hog_cycles = hog.map_or(0, Hog::stop);
    let secs = measured_from.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let mut out = CacheRun::default();
    let mut panicked = false;
    for h in handles {
        match h.join() {
            Ok(o) => {
                out.gets += o.gets;
                out.hits += o.hits;
                out.puts += o.puts;
                out.fills += o.fills;
                out.wrong_values += o.wrong_values;
                out.latencies.extend(o.latencies);
            }
            Err(_) => panicked = true,
        }
    }
    if measured_from.is_none() {
        // Stopped during the warm-up: nothing was measured.
        out = CacheRun {
            latencies: Vec::new(),
            ..CacheRun::default()
        };
    }
    let peak_accounted = AccountingAlloc::peak_bytes().saturating_sub(base_heap);
    let cache = Arc::into_inner(cache)
        .ok_or_else(|| format!("{}: the cache is still shared after the run", C::NAME))?;
    let (bytes_held, entries) = (cache.bytes(), cache.len());
    cache.finish();
    trim_heap();
    if panicked {
        return Err(format!("a {} worker panicked", C::NAME));
    }
    Ok(CacheRun {
        secs,
        peak_rss,
        peak_accounted,
        bytes_held,
        entries,
        stopped,
        garbage,
        samples,
        hog_cycles,
        cpu_user_secs: cpu_start.map_or(0.0, |(user, _)| cpu_end.0 - user),
        cpu_sys_secs: cpu_start.map_or(0.0, |(_, sys)| cpu_end.1 - sys),
        engine: engine_start
            .zip(engine_end)
            .map(|(a, b)| crate::bench::EngineReport::between(&a, &b, secs, 0)),
        ..out
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::backends::{Moka, Papaya, QuickCache};
    use super::super::trace::tests::workload;
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// Runs measure the whole process's memory: one at a time.
    pub(crate) fn one_at_a_time() -> MutexGuard<'static, ()> {
        static RUNS: Mutex<()> = Mutex::new(());
        RUNS.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn traces(w: &CacheWorkload) -> Vec<Arc<Trace>> {
        Trace::for_threads(w)
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    #[test]
    fn a_short_run_counts_gets_hits_and_inserts() {
        let _one = one_at_a_time();
        let w = CacheWorkload {
            capacity: 8 << 20,
            value_max: 8 << 10,
            duration: Duration::from_millis(200),
            ..workload()
        };
        let traces = traces(&w);
        // On a machine loaded far past its CPUs the workers may not run at
        // all in 200 ms (one run under a 1,024-thread load counted no get):
        // each backend gets up to four runs, each twice as long, to count
        // some.
        let counted = |one: &dyn Fn(&CacheWorkload) -> CacheRun| {
            let mut w = w.clone();
            let mut r = one(&w);
            for _ in 0..3 {
                if r.gets > 0 && r.hits > 0 && r.hits < r.gets {
                    break;
                }
                w.duration *= 2;
                r = one(&w);
            }
            r
        };
        for r in [
            counted(&|w| run::<Moka>(w, &traces).unwrap()),
            counted(&|w| run::<QuickCache>(w, &traces).unwrap()),
        ] {
            assert!(r.gets > 0 && r.hits > 0 && r.hits < r.gets, "{r:?}");
            assert_eq!(r.fills, r.gets - r.hits, "every miss inserts");
            assert!(r.puts > 0);
            assert_eq!(r.wrong_values, 0);
            assert!(!r.latencies.is_empty(), "{} gets", r.gets);
            assert!(r.secs >= 0.19, "{}", r.secs);
            assert!(r.stopped.is_none());
            assert!(r.bytes_held.unwrap() <= w.capacity);
            assert!(r.peak_accounted > 0 && !r.samples.is_empty());
            assert!(r.garbage.is_none(), "only rcu-reclaim counts garbage");
        }
    }

    /// rcu-reclaim's run samples the garbage its domain holds (evicted
    /// values waiting for a grace period or a free) over the measured time.
    #[test]
    fn a_run_of_rcu_reclaim_samples_its_garbage() {
        let _one = one_at_a_time();
        let w = CacheWorkload {
            capacity: 4 << 20,
            value_max: 8 << 10,
            duration: Duration::from_millis(200),
            ..workload()
        };
        let r = run::<super::super::ours::Ours>(&w, &traces(&w)).unwrap();
        let g = r.garbage.expect("rcu-reclaim's garbage is sampled");
        assert!(g.count > 0 && g.mean() <= g.peak as f64, "{g:?}");
        assert!(r.fills > 0, "the trace's misses evict: {r:?}");
    }

    #[test]
    fn the_memory_guard_stops_an_unbounded_map() {
        let _one = one_at_a_time();
        let w = CacheWorkload {
            memory_guard: 32 << 20,
            duration: Duration::from_secs(20),
            ..workload()
        };
        let r = run::<Papaya>(&w, &traces(&w)).unwrap();
        let stopped = r.stopped.expect("papaya grows past the guard");
        assert!(stopped.rss > 32 << 20 && stopped.after_secs < 20.0);
        assert!(r.peak_rss >= stopped.rss);
        assert_eq!(r.bytes_held, None);
    }
}
