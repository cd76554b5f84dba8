//! `rcu-reclaim demo`: the dentry-cache workload under a memory budget, run
//! once unaware of pressure (RCU at its lazy pace, reclaim never calling
//! RCU: the kernel before the 2020 fix) and once aware (this project).
//! Both sides run the same table ([`crate::dcache::Table`] on the
//! rcu-reclaim backend, as `bench` does); only the reclaimer differs.

pub mod cgroup_side;
pub mod cmd;
pub mod plot;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use rcu_reclaim::reclaim::{AccountingAlloc, MemoryBudget, Reclaimer};
use serde::{Deserialize, Serialize};

use crate::dcache::{Ours, Table};
use crate::rng::Rng;

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
    /// In JSON: seconds, as a number.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// The budget the process reclaims against (bytes the accounting
    /// allocator counts as live).
    pub budget: usize,
    /// A different budget for the unaware side, to measure its throughput
    /// when it is not short of memory ("under a larger limit").
    pub unaware_budget: Option<usize>,
    /// The hard limit of the memory cgroup each side runs in, if any.
    pub cgroup_limit: Option<usize>,
    pub readers: usize,
    pub writers: usize,
    pub keys: u64,
    pub payload_min: usize,
    pub payload_max: usize,
}

impl DemoConfig {
    /// The budget `aware`'s side runs under.
    pub fn budget_for(&self, aware: bool) -> usize {
        match self.unaware_budget {
            Some(b) if !aware => b,
            _ => self.budget,
        }
    }
}

/// One sample of a running side, taken every 50 ms.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the side started.
    pub ms: u64,
    /// Bytes the accounting allocator counts as live (the process's heap).
    pub mem: usize,
    /// Bytes waiting in RCU for a grace period.
    pub pending: usize,
    /// Lookups and updates done so far.
    pub reads: u64,
    pub updates: u64,
}

/// How a side run in its own memory cgroup ended.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CgroupOutcome {
    /// "v1" or "v2".
    pub version: String,
    pub limit: usize,
    /// The cgroup's peak usage (`memory.max_usage_in_bytes` or `memory.peak`).
    pub peak_usage: Option<usize>,
    /// Whether the kernel's OOM killer killed the child.
    pub oom_killed: bool,
    /// `oom_kill` from `memory.oom_control` or `memory.events`.
    pub oom_kills: u64,
    /// The child's exit, in words.
    pub exit: String,
}

/// What one side measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SideReport {
    pub mode: String,
    /// False for a side that died: then only its samples (and the
    /// throughput and peaks they give) are known.
    pub complete: bool,
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
    /// Lookups that found their key, per second: the useful reads (a
    /// lookup that misses in an emptied cache is cheap but buys nothing).
    pub hits_per_sec: f64,
    pub cache_entries_end: usize,
    pub cache_bytes_end: usize,
    /// Set when the side ran in its own memory cgroup.
    pub cgroup: Option<CgroupOutcome>,
    /// Every 50 ms.
    pub samples: Vec<Sample>,
}

impl SideReport {
    /// What a side that died left: its samples, and throughput up to its
    /// last one.
    pub fn from_samples(aware: bool, samples: Vec<Sample>) -> SideReport {
        let last = samples.last().copied().unwrap_or_default();
        let secs = (last.ms as f64 / 1e3).max(1e-3);
        SideReport {
            mode: mode_name(aware).to_string(),
            reads_per_sec: last.reads as f64 / secs,
            updates_per_sec: last.updates as f64 / secs,
            peak_memory: samples.iter().map(|s| s.mem).max().unwrap_or(0),
            peak_pending_bytes: samples.iter().map(|s| s.pending).max().unwrap_or(0),
            samples,
            ..SideReport::default()
        }
    }
}

/// "aware" or "unaware".
pub fn mode_name(aware: bool) -> &'static str {
    if aware {
        "aware"
    } else {
        "unaware"
    }
}

/// Per-thread progress counters, each on its own cache line: a thread
/// stores its running total, the sampler adds them up.
struct Progress {
    reads: Vec<CachePadded<AtomicU64>>,
    updates: Vec<CachePadded<AtomicU64>>,
    hits: AtomicU64,
    stop: AtomicBool,
}

/// The error for a thread that could not be started (`ulimit -u`, a
/// cgroup's `pids.max`): the threads already started are stopped and
/// joined, and the message names the flag that asks for fewer.
fn no_thread(
    progress: &Progress,
    started: Vec<thread::JoinHandle<()>>,
    what: &str,
    flag: &str,
    e: &std::io::Error,
) -> String {
    progress.stop.store(true, Ordering::Relaxed);
    for t in started {
        let _ = t.join();
    }
    format!(
        "cannot start a {what} thread ({e}): this process may start no more threads (its \
         limit: ulimit -u, or the cgroup's pids.max); lower {flag} or raise the limit"
    )
}

impl Progress {
    fn sum(v: &[CachePadded<AtomicU64>]) -> u64 {
        v.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Runs one side in this process; `on_sample` sees every 50 ms sample as
/// it is taken.
pub fn run_side(
    cfg: &DemoConfig,
    aware: bool,
    on_sample: &mut dyn FnMut(&Sample),
) -> Result<SideReport, String> {
    let backend = <Ours>::new().expect("a domain with the default config");
    let rcu = backend.rcu().clone();
    let cache = Arc::new(Table::new(backend, 4096));
    let reclaimer = Arc::new(Reclaimer::new(&rcu).rcu_loop(aware));
    reclaimer.set_oom_handler(|_| {});
    reclaimer.register(cache.clone());
    let base = AccountingAlloc::live_bytes();
    let used = move || AccountingAlloc::live_bytes().saturating_sub(base);
    let limit = cfg.budget_for(aware);
    let budget = Arc::new(MemoryBudget::new(limit, reclaimer.clone(), used));
    let counter = || CachePadded::new(AtomicU64::new(0));
    let progress = Arc::new(Progress {
        reads: (0..cfg.readers).map(|_| counter()).collect(),
        updates: (0..cfg.writers).map(|_| counter()).collect(),
        hits: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let mut threads = Vec::new();
    let named = |name: &str| thread::Builder::new().name(name.to_string());
    for r in 0..cfg.readers {
        let (cache, p, keys) = (cache.clone(), progress.clone(), cfg.keys);
        let reader = move || {
            let mut rng = Rng::new(0x1234 + r as u64);
            let (mut reads, mut hits) = (0u64, 0u64);
            while !p.stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    hits += u64::from(cache.lookup(&(), rng.skewed(keys)).is_some());
                }
                reads += 64;
                p.reads[r].store(reads, Ordering::Relaxed);
            }
            p.hits.fetch_add(hits, Ordering::Relaxed);
        };
        match named("demo-reader").spawn(reader) {
            Ok(t) => threads.push(t),
            Err(e) => return Err(no_thread(&progress, threads, "reader", "--readers", &e)),
        }
    }
    for w in 0..cfg.writers {
        let (cache, p, budget, cfg) =
            (cache.clone(), progress.clone(), budget.clone(), cfg.clone());
        let writer = move || {
            let mut rng = Rng::new(0xABCD + w as u64);
            let mut updates = 0u64;
            let span = (cfg.payload_max - cfg.payload_min + 1) as u64;
            while !p.stop.load(Ordering::Relaxed) {
                for _ in 0..16 {
                    let key = rng.skewed(cfg.keys);
                    if rng.below(10) < 8 {
                        let size = cfg.payload_min + rng.below(span) as usize;
                        cache.upsert(&(), key, vec![key as u8; size]);
                    } else {
                        cache.remove(&(), key);
                    }
                }
                updates += 16;
                p.updates[w].store(updates, Ordering::Relaxed);
                // The allocating thread checks the budget, as an allocator would.
                budget.check();
            }
        };
        match named("demo-writer").spawn(writer) {
            Ok(t) => threads.push(t),
            Err(e) => return Err(no_thread(&progress, threads, "writer", "--writers", &e)),
        }
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut over_ms = 0u64;
    while start.elapsed() < cfg.duration {
        thread::sleep(Duration::from_millis(50));
        let sample = Sample {
            ms: start.elapsed().as_millis() as u64,
            mem: used(),
            pending: rcu.pending_bytes(),
            reads: Progress::sum(&progress.reads),
            updates: Progress::sum(&progress.updates),
        };
        if sample.mem > limit {
            over_ms += 50;
        }
        on_sample(&sample);
        samples.push(sample);
    }
    progress.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let (reads, updates) = (
        Progress::sum(&progress.reads),
        Progress::sum(&progress.updates),
    );
    let r = reclaimer.stats();
    let s = rcu.stats();
    let b = budget.stats();
    let report = SideReport {
        mode: mode_name(aware).to_string(),
        complete: true,
        reads_per_sec: reads as f64 / secs,
        updates_per_sec: updates as f64 / secs,
        peak_memory: samples.iter().map(|s| s.mem).max().unwrap_or(0),
        peak_pending_bytes: samples.iter().map(|s| s.pending).max().unwrap_or(0),
        over_budget_ms: over_ms,
        reclaim_calls: r.calls,
        reclaim_passes: r.passes,
        oom_events: b.ooms,
        fast_mode_ms: s.fast_mode_ms,
        passes_by_priority: r.by_priority.iter().rev().map(|p| p.passes).collect(),
        direct_reclaims: b.direct_reclaims,
        background_reclaims: b.background_runs,
        barrier_waits: r.rcu_waits,
        grace_periods: s.gp_completed,
        expedited_grace_periods: s.expedited_gps,
        fallback_syncs: s.fallback_syncs,
        cache_hit_ratio: progress.hits.load(Ordering::Relaxed) as f64 / reads.max(1) as f64,
        hits_per_sec: progress.hits.load(Ordering::Relaxed) as f64 / secs,
        cache_entries_end: cache.len(),
        cache_bytes_end: cache.bytes(&()),
        cgroup: None,
        samples,
    };
    drop(budget);
    rcu.barrier();
    Ok(report)
}

/// The sides whose child ended before its first sample other than by the
/// OOM killer (an error of its own, exit code 2 or a panic's 101, or
/// another signal), each with how it ended: they measured nothing, and a
/// table of zeros once stood for them with exit status 0.
pub fn failed_sides(sides: &[SideReport]) -> Vec<(&str, &str)> {
    sides
        .iter()
        .filter(|s| s.samples.is_empty())
        .filter_map(|s| {
            let c = s.cgroup.as_ref()?;
            (!c.oom_killed && c.exit != "exit code 0").then_some((s.mode.as_str(), c.exit.as_str()))
        })
        .collect()
}

/// How one table row renders a side.
type Column = Box<dyn Fn(&SideReport) -> String>;

/// Whether the kernel's OOM killer ended `side` (run in a cgroup).
fn oom_killed(side: &SideReport) -> bool {
    side.cgroup.as_ref().is_some_and(|c| c.oom_killed)
}

/// The sides killed before their first sample: the cgroup's limit was
/// below what the program needs to start, so they measured nothing.
pub fn unstarted_sides(sides: &[SideReport]) -> Vec<&str> {
    sides
        .iter()
        .filter(|s| s.samples.is_empty() && oom_killed(s))
        .map(|s| s.mode.as_str())
        .collect()
}

/// `b` in MiB, or in GiB from 1 GiB on ("65536.0 MiB" read badly).
fn mib(b: usize) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    }
}

/// The side-by-side table.
pub fn table(cfg: &DemoConfig, sides: &[SideReport]) -> String {
    let mut out = format!(
        "dentry-cache workload, {} readers, {} writers, {} keys, payload {}-{} B, budget {}{}, {:?} per side\n\n",
        cfg.readers,
        cfg.writers,
        cfg.keys,
        cfg.payload_min,
        cfg.payload_max,
        match cfg.unaware_budget {
            Some(u) => format!("{} (unaware: {})", mib(cfg.budget), mib(u)),
            None => mib(cfg.budget),
        },
        cfg.cgroup_limit
            .map_or(String::new(), |l| format!(" in a cgroup limited to {}", mib(l))),
        cfg.duration
    );
    // (name, needs the side's own counters, cell): a side that died left
    // only its samples, so the rows that need its counters show "-".
    let mut rows: Vec<(&str, bool, Column)> = vec![
        (
            "reads/s",
            false,
            Box::new(|s| format!("{:.2} M", s.reads_per_sec / 1e6)),
        ),
        (
            "updates/s",
            false,
            Box::new(|s| format!("{:.1} k", s.updates_per_sec / 1e3)),
        ),
        (
            "peak memory (heap)",
            false,
            Box::new(|s| mib(s.peak_memory)),
        ),
        (
            "peak bytes pending in RCU",
            false,
            Box::new(|s| mib(s.peak_pending_bytes)),
        ),
        (
            "cache hit ratio",
            true,
            Box::new(|s| format!("{:.1} %", s.cache_hit_ratio * 100.0)),
        ),
        (
            "cache hits/s",
            true,
            Box::new(|s| format!("{:.2} M", s.hits_per_sec / 1e6)),
        ),
        (
            "time over budget",
            true,
            Box::new(|s| format!("{} ms", s.over_budget_ms)),
        ),
        (
            "reclaims (direct/background)",
            true,
            Box::new(|s| format!("{}/{}", s.direct_reclaims, s.background_reclaims)),
        ),
        (
            "passes from priority 12",
            true,
            Box::new(|s| passes(&s.passes_by_priority)),
        ),
        (
            "grace periods (expedited)",
            true,
            Box::new(|s| format!("{} ({})", s.grace_periods, s.expedited_grace_periods)),
        ),
        (
            "OOM events (in process)",
            true,
            Box::new(|s| s.oom_events.to_string()),
        ),
        (
            "time in fast mode",
            true,
            Box::new(|s| format!("{} ms", s.fast_mode_ms)),
        ),
        (
            "cache size at the end",
            true,
            Box::new(|s| mib(s.cache_bytes_end)),
        ),
    ];
    if cfg.cgroup_limit.is_some() {
        rows.push((
            "cgroup peak usage",
            false,
            Box::new(|s| {
                s.cgroup
                    .as_ref()
                    .and_then(|c| c.peak_usage)
                    .map_or("?".into(), mib)
            }),
        ));
        rows.push((
            "killed by the kernel's OOM",
            false,
            Box::new(|s| match &s.cgroup {
                Some(c) if c.oom_killed => format!(
                    "yes, at {:.1} s",
                    s.samples.last().map_or(0.0, |x| x.ms as f64 / 1e3)
                ),
                Some(_) => "no".into(),
                None => "?".into(),
            }),
        ));
    }
    out += &format!("{:<30}", "");
    for s in sides {
        out += &format!("{:>18}", s.mode);
    }
    out.push('\n');
    for (name, needs_counters, f) in rows.iter() {
        out += &format!("{name:<30}");
        for s in sides {
            let cell = if s.complete || !needs_counters {
                f(s)
            } else {
                "-".to_string()
            };
            out += &format!("{cell:>18}");
        }
        out.push('\n');
    }
    // A side killed before its first sample never ran: the limit is
    // below what the program needs to start, not a result.
    if let Some(limit) = cfg.cgroup_limit {
        let unstarted = unstarted_sides(sides);
        if unstarted.is_empty() && sides.len() > 1 && sides.iter().all(oom_killed) {
            out += &format!(
                "\nnote: both sides were killed by the kernel's OOM killer: {} leaves too \
                 little room beside the program's code, threads and first entries for a \
                 comparison; give --cgroup-limit 128M or more\n",
                mib(limit)
            );
        }
        if !unstarted.is_empty() {
            let verb = if unstarted.len() > 1 { "were" } else { "was" };
            out += &format!(
                "\nnote: {} {verb} killed before the first sample: {} is less than the \
                 program needs to start (its code, threads and first entries); give \
                 --cgroup-limit 128M or more for a comparison\n",
                unstarted.join(" and "),
                mib(limit)
            );
        }
    }
    out
}

/// Passes by priority, compactly: how many passes started at priority 12,
/// then how many reached the deepest priority, e.g. "518 (4 at 3)".
fn passes(by_priority: &[u64]) -> String {
    let started = by_priority.first().copied().unwrap_or(0);
    match by_priority.iter().rposition(|&n| n > 0) {
        Some(i) => format!("{started} ({} at {})", by_priority[i], 12 - i),
        None => "0".into(),
    }
}

/// A duration in JSON: seconds, as a number (serde's default is an object
/// of `secs` and `nanos`).
fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_side_killed_before_its_first_sample_or_both_killed_is_explained() {
        let cfg = DemoConfig {
            duration: Duration::from_secs(1),
            budget: 8 << 20,
            unaware_budget: None,
            cgroup_limit: Some(16 << 20),
            readers: 1,
            writers: 1,
            keys: 100,
            payload_min: 1,
            payload_max: 2,
        };
        let side = |mode: &str, samples: u64| SideReport {
            mode: mode.into(),
            samples: (0..samples)
                .map(|i| Sample {
                    ms: i * 50,
                    ..Sample::default()
                })
                .collect(),
            cgroup: Some(CgroupOutcome {
                oom_killed: true,
                oom_kills: 1,
                ..CgroupOutcome::default()
            }),
            ..SideReport::default()
        };
        let both = table(&cfg, &[side("unaware", 0), side("aware", 0)]);
        assert!(
            both.contains("note: unaware and aware were killed before the first sample: 16.0 MiB"),
            "{both}"
        );
        assert!(both.contains("give --cgroup-limit 128M or more"), "{both}");
        let one = table(&cfg, &[side("unaware", 0), side("aware", 5)]);
        assert!(one.contains("note: unaware was killed before"), "{one}");
        let late = table(&cfg, &[side("unaware", 3), side("aware", 5)]);
        assert!(
            late.contains("note: both sides were killed by the kernel's OOM killer: 16.0 MiB"),
            "{late}"
        );
        let mut survived = side("aware", 5);
        survived.cgroup = Some(CgroupOutcome::default());
        let none = table(&cfg, &[side("unaware", 3), survived]);
        assert!(!none.contains("note:"), "{none}");
    }

    /// A child that ended before its first sample by an error of its own
    /// (its usage error, a panic) or a signal other than the OOM killer's
    /// is a failed side; one the OOM killer ended is an unstarted side
    /// (its own message), and one with samples measured something.
    #[test]
    fn a_side_whose_child_failed_before_its_first_sample_is_named() {
        let side = |mode: &str, samples: usize, exit: &str, oom_killed: bool| SideReport {
            mode: mode.into(),
            samples: vec![Sample::default(); samples],
            cgroup: Some(CgroupOutcome {
                oom_killed,
                exit: exit.into(),
                ..CgroupOutcome::default()
            }),
            ..SideReport::default()
        };
        let sides = [
            side("unaware", 0, "exit code 2", false),
            side("aware", 0, "killed by signal 6", false),
        ];
        assert_eq!(
            failed_sides(&sides),
            [("unaware", "exit code 2"), ("aware", "killed by signal 6")]
        );
        let sides = [
            side("unaware", 0, "killed by the OOM killer", true),
            side("aware", 4, "exit code 101", false),
        ];
        assert!(failed_sides(&sides).is_empty());
        assert!(failed_sides(&[side("aware", 0, "exit code 0", false)]).is_empty());
        // In this process (no cgroup) a side never fails so.
        assert!(failed_sides(&[SideReport::default()]).is_empty());
    }
}
