//! One timed run of one backend: fill the table, start the workers, sample
//! every 10 ms, stop, free everything, and check that every retired byte
//! was freed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::reclaim::AccountingAlloc;
use serde::Serialize;

use super::{Contender, PressureReport};
use crate::dcache::{garbage_now, reset_counters, Backend, Table, FREED, PEAK_GARBAGE, RETIRED};
use crate::rng::Rng;

/// The workload of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    /// Per thousand operations, how many are lookups (the rest updates:
    /// 80 % upserts, 20 % removes, as in `demo`).
    pub read_permille: u64,
    pub threads: usize,
    pub keys: u64,
    pub payload_min: usize,
    pub payload_max: usize,
    /// The budget rcu-reclaim reclaims against, if any.
    pub budget: Option<usize>,
    #[serde(skip)]
    pub duration: Duration,
}

/// One sample of a running backend.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sample {
    pub ms: u64,
    /// Bytes retired and not yet freed.
    pub garbage: u64,
    /// Heap bytes in use (accounting allocator, above the run's base).
    pub mem: usize,
}

/// What one run measured.
pub struct RunResult {
    pub secs: f64,
    pub reads: u64,
    pub updates: u64,
    pub hits: u64,
    pub peak_memory: usize,
    pub peak_garbage: u64,
    pub retired: u64,
    /// Freed by the time the backend finished (equal to `retired` unless
    /// the backend lost some).
    pub freed: u64,
    /// Sampled lookup latencies, ns (one lookup in 128 is timed).
    pub latencies: Vec<u32>,
    pub samples: Vec<Sample>,
    pub evicted: u64,
    pub pressure: Option<PressureReport>,
    /// rcu-reclaim: what its grace periods and threads cost.
    pub engine: Option<super::EngineReport>,
    /// The process's CPU time over the run, user and system, seconds.
    pub cpu_user_secs: f64,
    pub cpu_sys_secs: f64,
}

/// Lookups timed: one in this many.
const LATENCY_EVERY: u32 = 128;
/// At most this many latency samples per thread and run.
const LATENCY_CAP: usize = 1 << 16;
/// Operations between two looks at the stop flag.
const BATCH: usize = 64;

/// What a worker thread returns.
#[derive(Default)]
struct WorkerOut {
    reads: u64,
    updates: u64,
    hits: u64,
    latencies: Vec<u32>,
}

fn worker<B: Backend>(
    table: &Table<B>,
    w: &Workload,
    seed: u64,
    stop: &AtomicBool,
    check: Option<&(dyn Fn() + Send + Sync)>,
) -> WorkerOut {
    let mut local = table.backend().local();
    let mut rng = Rng::new(seed);
    let mut out = WorkerOut {
        latencies: Vec::with_capacity(4096),
        ..WorkerOut::default()
    };
    let span = (w.payload_max - w.payload_min + 1) as u64;
    let mut tick = 0u32;
    // At least one batch: a worker that starts late in a short run on a
    // loaded machine still measures something.
    loop {
        for _ in 0..BATCH {
            let key = rng.skewed(w.keys);
            if rng.below(1000) < w.read_permille {
                tick = tick.wrapping_add(1);
                if tick % LATENCY_EVERY == 0 && out.latencies.len() < LATENCY_CAP {
                    let start = Instant::now();
                    let hit = table.lookup(&local, key);
                    let ns = start.elapsed().as_nanos();
                    out.hits += u64::from(hit.is_some());
                    out.latencies.push(ns.min(u32::MAX as u128) as u32);
                } else {
                    out.hits += u64::from(table.lookup(&local, key).is_some());
                }
                out.reads += 1;
                table.backend().quiescent_state(&mut local);
            } else {
                if rng.below(10) < 8 {
                    let size = w.payload_min + rng.below(span) as usize;
                    table.upsert(&local, key, vec![key as u8; size]);
                } else {
                    table.remove(&local, key);
                }
                out.updates += 1;
                table.backend().safe_point(&local);
                table.backend().quiescent_state(&mut local);
                if out.updates % 16 == 0 {
                    if let Some(check) = check {
                        // A direct reclaim may wait for a grace period.
                        table.backend().offline_while(&mut local, check);
                    }
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    let guard = table.backend().pin(&local);
    table.backend().flush(&guard);
    drop(guard);
    out
}

/// Runs `backend` on the workload; `on_sample` sees every sample.
pub fn run<B: Contender>(
    backend: B,
    w: &Workload,
    on_sample: &mut dyn FnMut(&Sample),
) -> Result<RunResult, String> {
    reset_counters();
    let base = AccountingAlloc::live_bytes();
    let mut table = Table::new(backend, (w.keys as usize / 4).max(16));
    // Half the keys cached at the start (at most half the budget, so no
    // backend starts over it), without retiring anything.
    let mut rng = Rng::new(0x5EED);
    let span = (w.payload_max - w.payload_min + 1) as u64;
    let (mut filled, cap) = (0, w.budget.map_or(usize::MAX, |b| b / 2));
    table.prefill(w.keys, |k| {
        let size = w.payload_min + rng.below(span) as usize;
        (k % 2 == 0 && filled < cap).then(|| {
            filled += size;
            vec![k as u8; size]
        })
    });
    let table = Arc::new(table);
    let usage: Arc<dyn Fn() -> usize + Send + Sync> =
        Arc::new(move || AccountingAlloc::live_bytes().saturating_sub(base));
    let budget = w
        .budget
        .and_then(|limit| B::budget(&table, limit, usage.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    AccountingAlloc::reset_peak();
    let engine_start = table.backend().engine();
    // The clock starts once every worker runs: on a loaded machine a short
    // run could end before a late worker had started (a 0.1 s debug run
    // measured no reads at all).
    let started = Arc::new(std::sync::Barrier::new(w.threads + 1));
    let mut handles = Vec::new();
    for t in 0..w.threads {
        let (table, w, stop) = (table.clone(), w.clone(), stop.clone());
        let check = budget.as_ref().map(|b| b.check.clone());
        let started = started.clone();
        let h = thread::Builder::new()
            .name(format!("bench-{}", B::NAME))
            .spawn(move || {
                started.wait();
                worker(
                    &table,
                    &w,
                    0x1234 + t as u64 * 7919,
                    &stop,
                    check.as_deref(),
                )
            })
            .map_err(|e| {
                format!(
                    "cannot start a worker thread ({e}): this process may start no more \
                     threads (its limit: ulimit -u, or the cgroup's pids.max); lower --threads \
                     or raise the limit"
                )
            })?;
        handles.push(h);
    }
    started.wait();
    let start = Instant::now();
    let cpu_start = super::engine::process_cpu_secs();
    // Sized for the whole run before the workers start: growing it meant a
    // `realloc` on this thread, and once a `malloc_consolidate` in the
    // arena the table was filled from, holding that arena's lock for
    // milliseconds against the workers freeing what it holds (and,
    // inside their read-side sections, against every grace period).
    let mut samples = Vec::with_capacity((w.duration.as_millis() / 10) as usize + 16);
    while start.elapsed() < w.duration {
        thread::sleep(Duration::from_millis(10));
        let s = Sample {
            ms: start.elapsed().as_millis() as u64,
            garbage: garbage_now(),
            mem: usage(),
        };
        on_sample(&s);
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    let cpu_end = super::engine::process_cpu_secs();
    let mut out = WorkerOut::default();
    for h in handles {
        let o = h
            .join()
            .map_err(|_| format!("a {} worker panicked", B::NAME))?;
        out.reads += o.reads;
        out.updates += o.updates;
        out.hits += o.hits;
        out.latencies.extend(o.latencies);
    }
    let secs = start.elapsed().as_secs_f64();
    let retired = RETIRED.load(Ordering::SeqCst);
    let engine = engine_start
        .zip(table.backend().engine())
        .map(|(a, b)| super::EngineReport::between(&a, &b, secs, retired));
    let peak_memory = AccountingAlloc::peak_bytes().saturating_sub(base);
    let peak_garbage = PEAK_GARBAGE.load(Ordering::Relaxed);
    let pressure = budget.map(|b| {
        drop(b.check);
        (b.finish)()
    });
    let evicted = table.evicted.load(Ordering::Relaxed);
    let table = Arc::into_inner(table)
        .ok_or_else(|| format!("{}: the table is still shared after the run", B::NAME))?;
    table.finish();
    Ok(RunResult {
        secs,
        reads: out.reads,
        updates: out.updates,
        hits: out.hits,
        peak_memory,
        peak_garbage,
        retired: RETIRED.load(Ordering::SeqCst),
        freed: FREED.load(Ordering::SeqCst),
        latencies: out.latencies,
        samples,
        evicted,
        pressure,
        engine,
        cpu_user_secs: cpu_end.0 - cpu_start.0,
        cpu_sys_secs: cpu_end.1 - cpu_start.1,
    })
}
