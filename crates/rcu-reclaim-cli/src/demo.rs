//! `rcu-reclaim demo`: the dentry-cache workload under a memory budget, run
//! once unaware of pressure (RCU at its lazy pace, reclaim never calling
//! RCU: the kernel before the seed's fix) and once aware (this project).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{AccountingAlloc, Config, MemoryBudget, Rcu, Reclaimer};
use serde::Serialize;

use crate::workload::{Counters, DCache, Rng};

/// Which runs a demo makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// Unaware, then aware.
    Both,
    /// RCU at its lazy pace; reclaim never calls RCU.
    Unaware,
    /// This project: reclaim expedites and runs RCU callbacks.
    Aware,
}

impl Side {
    /// The runs, in order (`true` = aware).
    pub fn runs(self) -> &'static [bool] {
        match self {
            Side::Both => &[false, true],
            Side::Unaware => &[false],
            Side::Aware => &[true],
        }
    }
}

/// Settings of one demo (validated by the CLI).
#[derive(Clone, Debug, Serialize)]
pub struct DemoConfig {
    pub duration: Duration,
    pub budget: usize,
    pub readers: usize,
    pub writers: usize,
    pub keys: u64,
    pub payload_min: usize,
    pub payload_max: usize,
}

/// What one side measured.
#[derive(Clone, Debug, Serialize)]
pub struct SideReport {
    pub mode: &'static str,
    pub reads_per_sec: f64,
    pub updates_per_sec: f64,
    pub peak_memory: usize,
    pub peak_pending_bytes: usize,
    pub over_budget_ms: u64,
    pub reclaim_calls: u64,
    pub reclaim_passes: u64,
    pub oom_events: u64,
    pub fast_mode_ms: u64,
    /// Reclaim passes at each priority, 12 (gentle) down to 0 (desperate).
    pub passes_by_priority: Vec<u64>,
    pub direct_reclaims: u64,
    pub background_reclaims: u64,
    pub barrier_waits: u64,
    pub grace_periods: u64,
    pub expedited_grace_periods: u64,
    pub fallback_syncs: u64,
    pub cache_hit_ratio: f64,
    pub cache_entries_end: usize,
    pub cache_bytes_end: usize,
    /// (ms since start, memory used, bytes pending in RCU), every 50 ms.
    pub samples: Vec<(u64, usize, usize)>,
}

/// Runs one side.
pub fn run_side(cfg: &DemoConfig, aware: bool, progress: &dyn Fn(f64)) -> SideReport {
    let rcu = Rcu::new(Config::new()).expect("default config");
    let cache = Arc::new(DCache::new(&rcu, 4096));
    let reclaimer = Arc::new(Reclaimer::new(&rcu).rcu_loop(aware));
    reclaimer.set_oom_handler(|_| {});
    reclaimer.register(cache.clone());
    let base = AccountingAlloc::live_bytes();
    let used = move || AccountingAlloc::live_bytes().saturating_sub(base);
    let budget = Arc::new(MemoryBudget::new(cfg.budget, reclaimer.clone(), used));
    let counters = Arc::new(Counters::default());
    let mut threads = Vec::new();
    let named = |name: &str| thread::Builder::new().name(name.to_string());
    for r in 0..cfg.readers {
        let (cache, c, keys) = (cache.clone(), counters.clone(), cfg.keys);
        threads.push(
            named("demo-reader")
                .spawn(move || {
                    let mut rng = Rng::new(0x1234 + r as u64);
                    let (mut reads, mut hits) = (0u64, 0u64);
                    while !c.stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            hits += u64::from(cache.lookup(rng.skewed(keys)).is_some());
                        }
                        reads += 64;
                    }
                    c.reads.fetch_add(reads, Ordering::Relaxed);
                    c.hits.fetch_add(hits, Ordering::Relaxed);
                })
                .expect("spawn a reader"),
        );
    }
    for w in 0..cfg.writers {
        let (cache, c, budget, cfg) =
            (cache.clone(), counters.clone(), budget.clone(), cfg.clone());
        threads.push(
            named("demo-writer")
                .spawn(move || {
                    let mut rng = Rng::new(0xABCD + w as u64);
                    let mut updates = 0u64;
                    let span = (cfg.payload_max - cfg.payload_min + 1) as u64;
                    while !c.stop.load(Ordering::Relaxed) {
                        for _ in 0..16 {
                            let key = rng.skewed(cfg.keys);
                            if rng.below(10) < 8 {
                                let size = cfg.payload_min + rng.below(span) as usize;
                                cache.upsert(key, vec![key as u8; size]);
                            } else {
                                cache.remove(key);
                            }
                        }
                        updates += 16;
                        // The allocating thread checks the budget, as an allocator would.
                        budget.check();
                    }
                    c.updates.fetch_add(updates, Ordering::Relaxed);
                })
                .expect("spawn a writer"),
        );
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    let (mut peak, mut peak_pending, mut over_ms) = (0usize, 0usize, 0u64);
    while start.elapsed() < cfg.duration {
        thread::sleep(Duration::from_millis(50));
        let (mem, pending) = (used(), rcu.pending_bytes());
        peak = peak.max(mem);
        peak_pending = peak_pending.max(pending);
        if mem > cfg.budget {
            over_ms += 50;
        }
        samples.push((start.elapsed().as_millis() as u64, mem, pending));
        progress(start.elapsed().as_secs_f64() / cfg.duration.as_secs_f64());
    }
    counters.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let r = reclaimer.stats();
    let s = rcu.stats();
    let report = SideReport {
        mode: if aware { "aware" } else { "unaware" },
        reads_per_sec: counters.reads.load(Ordering::Relaxed) as f64 / secs,
        updates_per_sec: counters.updates.load(Ordering::Relaxed) as f64 / secs,
        peak_memory: peak,
        peak_pending_bytes: peak_pending,
        over_budget_ms: over_ms,
        reclaim_calls: r.calls,
        reclaim_passes: r.passes,
        oom_events: budget.stats().ooms,
        fast_mode_ms: s.fast_mode_ms,
        passes_by_priority: r.by_priority.iter().rev().map(|p| p.passes).collect(),
        direct_reclaims: budget.stats().direct_reclaims,
        background_reclaims: budget.stats().background_runs,
        barrier_waits: r.rcu_waits,
        grace_periods: s.gp_completed,
        expedited_grace_periods: s.expedited_gps,
        fallback_syncs: s.fallback_syncs,
        cache_hit_ratio: counters.hits.load(Ordering::Relaxed) as f64
            / counters.reads.load(Ordering::Relaxed).max(1) as f64,
        cache_entries_end: cache.len(),
        cache_bytes_end: cache.bytes(),
        samples,
    };
    drop(budget);
    rcu.barrier();
    report
}

/// How one table row renders a side.
type Column = Box<dyn Fn(&SideReport) -> String>;

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// The side-by-side table.
pub fn table(cfg: &DemoConfig, sides: &[SideReport]) -> String {
    let mut out = format!(
        "dentry-cache workload, {} readers, {} writers, {} keys, payload {}-{} B, budget {}, {:?} per side\n\n",
        cfg.readers,
        cfg.writers,
        cfg.keys,
        cfg.payload_min,
        cfg.payload_max,
        mib(cfg.budget),
        cfg.duration
    );
    let rows: [(&str, Column); 11] = [
        (
            "reads/s",
            Box::new(|s| format!("{:.2} M", s.reads_per_sec / 1e6)),
        ),
        (
            "updates/s",
            Box::new(|s| format!("{:.0} k", s.updates_per_sec / 1e3)),
        ),
        ("peak memory", Box::new(|s| mib(s.peak_memory))),
        (
            "peak bytes pending in RCU",
            Box::new(|s| mib(s.peak_pending_bytes)),
        ),
        (
            "time over budget",
            Box::new(|s| format!("{} ms", s.over_budget_ms)),
        ),
        ("reclaim calls", Box::new(|s| s.reclaim_calls.to_string())),
        (
            "reclaim priority passes",
            Box::new(|s| s.reclaim_passes.to_string()),
        ),
        ("OOM events", Box::new(|s| s.oom_events.to_string())),
        (
            "time in fast mode",
            Box::new(|s| format!("{} ms", s.fast_mode_ms)),
        ),
        (
            "cache entries at the end",
            Box::new(|s| s.cache_entries_end.to_string()),
        ),
        (
            "cache size at the end",
            Box::new(|s| mib(s.cache_bytes_end)),
        ),
    ];
    out += &format!("{:<28}", "");
    for s in sides {
        out += &format!("{:>16}", s.mode);
    }
    out.push('\n');
    for (name, f) in rows.iter() {
        out += &format!("{name:<28}");
        for s in sides {
            out += &format!("{:>16}", f(s));
        }
        out.push('\n');
    }
    out
}
