//! The cache scenario's flags, its backends, and its interleaved rounds.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::ProgressBar;

use super::backends::{Moka, Papaya, QuickCache};
use super::cgroup::{self, CgroupReport, CgroupRun};
use super::ours::{Ours, OursAhash, OursCollect};
use super::report::{self, CacheScenarioReport};
use super::run::{self, CacheRun};
use super::trace::Trace;
use super::{CacheUnderTest, CacheWorkload};
use crate::args::{self, Int, CACHE_CAPACITY, CACHE_VALUE, ZIPF};
use crate::stdout::outln;

/// The cache scenario's flags (the threads, the duration and the rounds
/// are the bench's).
#[derive(Args, Clone, Debug)]
pub struct CacheArgs {
    /// Cache scenario: distinct keys (100 to 10000000).
    #[arg(long, default_value_t = 100_000, allow_hyphen_values = true,
          value_parser = Int::<u64>::new(100, 10_000_000))]
    cache_keys: u64,
    /// Cache scenario: every bounded cache's capacity in bytes, e.g. 64M
    /// (1M to 64G; K, M, G and T are powers of 1024).
    #[arg(long, default_value = "64M", allow_hyphen_values = true, value_parser = CACHE_CAPACITY)]
    cache_capacity: usize,
    /// Cache scenario: the smallest value (1 B to 16M).
    #[arg(long, default_value = "1K", allow_hyphen_values = true, value_parser = CACHE_VALUE)]
    cache_value_min: usize,
    /// Cache scenario: the largest value (at least --cache-value-min, at
    /// most 16M and the capacity).
    #[arg(long, default_value = "64K", allow_hyphen_values = true, value_parser = CACHE_VALUE)]
    cache_value_max: usize,
    /// Cache scenario: the Zipf exponent of the key trace (0 (uniform) to 3).
    #[arg(long, default_value = "0.99", allow_hyphen_values = true, value_parser = ZIPF)]
    zipf: f64,
    /// Cache scenario: the seed of the key traces (the same seed, threads
    /// and flags give the same traces).
    #[arg(long, default_value_t = 19, allow_hyphen_values = true,
          value_parser = Int::<u64>::new(0, u64::MAX))]
    cache_seed: u64,
    /// Cache scenario: a backend's run is stopped when its RSS has grown by
    /// this many times the capacity (2 to 64; at most half the memory
    /// available at the start): papaya, which has no bound, always is.
    #[arg(long, default_value_t = 4, allow_hyphen_values = true,
          value_parser = Int::<u16>::new(2, 64))]
    cache_guard: u16,
    /// Cache scenario: run each cache in a child process inside a fresh
    /// memory cgroup with this hard limit (e.g. 512M; 16M to 64G), beside
    /// a memory hog thread that grows to the limit less the capacity and
    /// 32M, and shrinks again. rcu-reclaim's cache answers the cgroup's
    /// budget; moka and quick_cache run at the capacity and at a quarter of
    /// it. Needs root and a memory cgroup.
    #[arg(long, allow_hyphen_values = true, value_parser = args::CGROUP_LIMIT)]
    cgroup_limit: Option<usize>,
    /// Internal: run this cache backend once and print its figures as JSON
    /// (the child of --cgroup-limit).
    #[arg(long, hide = true)]
    cache_child: Option<String>,
    /// Internal: the hog's peak in bytes (the child of --cgroup-limit).
    #[arg(long, hide = true, value_parser = Int::<u64>::new(0, u64::MAX))]
    cache_hog: Option<u64>,
}

/// Per cent of the trace that is gets (the cache workload's default: 90).
const GET_PERCENT: u32 = 90;
/// The warm-up's share of each run.
const WARMUP_SHARE: f64 = 0.2;
/// The operations in all threads' traces together, at most (4 bytes each).
const TRACE_OPS: usize = 1 << 23;

/// MemAvailable from /proc/meminfo, in bytes.
pub(crate) fn mem_available() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl CacheArgs {
    /// The workload for `threads` threads and runs of `per_run`; the
    /// message names the flag at fault.
    pub fn workload(&self, threads: usize, per_run: Duration) -> Result<CacheWorkload, String> {
        let show = args::show_size;
        let (min, max, cap) = (
            self.cache_value_min,
            self.cache_value_max,
            self.cache_capacity,
        );
        if max < min {
            return Err(format!(
                "--cache-value-max ({}) must be at least --cache-value-min ({}): raise \
                 --cache-value-max or lower --cache-value-min",
                show(max),
                show(min)
            ));
        }
        if max > cap {
            return Err(format!(
                "--cache-value-max ({}) must be at most --cache-capacity ({}): a larger value \
                 is never cached",
                show(max),
                show(cap)
            ));
        }
        let guard = cap.saturating_mul(usize::from(self.cache_guard));
        let memory_guard = match mem_available() {
            Some(avail) if guard > avail / 2 => {
                if avail / 2 < cap.saturating_mul(2) {
                    return Err(format!(
                        "--cache-capacity {} is too large for this machine: about {} of memory \
                         is available, a run may use twice the capacity, and it is held to half \
                         of what is available (give at most {})",
                        show(cap),
                        args::show_size_about(avail),
                        show((avail / 4) & !((1 << 20) - 1)),
                    ));
                }
                avail / 2
            }
            _ => guard,
        };
        let hog = match (self.cgroup_limit, self.cache_hog) {
            (None, _) => 0,
            (Some(_), Some(hog)) => usize::try_from(hog).unwrap_or(usize::MAX),
            (Some(limit), None) => cgroup::hog_peak(limit, cap)?,
        };
        // Under a cgroup, its limit is the judge (and RSS counts the hog).
        let memory_guard = if self.cgroup_limit.is_some() {
            usize::MAX
        } else {
            memory_guard
        };
        let measured = per_run.mul_f64(1.0 - WARMUP_SHARE);
        Ok(CacheWorkload {
            threads,
            keys: self.cache_keys,
            zipf: self.zipf,
            get_percent: GET_PERCENT,
            value_min: min,
            value_max: max,
            capacity: cap,
            seed: self.cache_seed,
            memory_guard,
            trace_len: (TRACE_OPS / threads.max(1)).clamp(1 << 16, 1 << 20),
            cgroup_limit: self.cgroup_limit,
            hog,
            duration: measured,
            warmup: per_run - measured,
        })
    }
}

/// The cache backends, rcu-reclaim's RcuCache (the one the ratios are
/// against) first; the [`OPT_IN`] ones run only when named.
pub fn available() -> Vec<&'static str> {
    vec![
        <Ours>::NAME,
        OursCollect::NAME,
        Moka::NAME,
        QuickCache::NAME,
        Papaya::NAME,
        OursAhash::NAME,
    ]
}

/// The cache backends that run only when named with `--backend`.
pub const OPT_IN: [&str; 1] = [OursAhash::NAME];

impl CacheArgs {
    /// Whether --cgroup-limit was given.
    pub fn cgroup(&self) -> bool {
        self.cgroup_limit.is_some()
    }

    /// The backend this process runs as the child of --cgroup-limit.
    pub fn child(&self) -> Option<&str> {
        self.cache_child.as_deref()
    }

    /// Refuses the internal flags given other than as --cgroup-limit gives
    /// them to its child (`--scenario cache` alone, `--cache-child` naming a
    /// cache backend, with `--cgroup-limit` and `--cache-hog`): given by
    /// hand, they were ignored (a whole bench ran), or the other scenarios
    /// ran unseen before the child's line. `cache_only`: the cache
    /// scenario is the only one named.
    pub fn check_internal(&self, cache_only: bool) -> Result<(), String> {
        const FIX: &str = "run `rcu-reclaim bench --scenario cache --cgroup-limit SIZE`, which \
                           passes them to its children";
        let Some(name) = self.cache_child.as_deref() else {
            if self.cache_hog.is_some() {
                return Err(format!(
                    "--cache-hog is internal (the hog's peak for a child of --cgroup-limit, \
                     given with --cache-child): drop it; to run the caches beside a hog, {FIX}"
                ));
            }
            return Ok(());
        };
        let internal = "--cache-child is internal (one cache's run in a child of \
                        --cgroup-limit)";
        if !available().contains(&name) {
            return Err(format!(
                "{internal}, and {name:?} is not a cache backend (one of {}); {FIX}",
                available().join(", ")
            ));
        }
        if !cache_only || self.cgroup_limit.is_none() || self.cache_hog.is_none() {
            return Err(format!(
                "{internal}: it needs --scenario cache alone, --cgroup-limit and --cache-hog; \
                 {FIX}, or drop --cache-child to run the bench here"
            ));
        }
        Ok(())
    }
}

/// The child of --cgroup-limit: runs `name` once, prints its figures as
/// one JSON line.
pub fn child_main(w: &CacheWorkload, name: &str) -> Result<(), String> {
    let traces: Vec<Arc<Trace>> = Trace::for_threads(w)?.into_iter().map(Arc::new).collect();
    let r = run_one(name, w, &traces)?;
    let line = serde_json::to_string(&r).map_err(|e| e.to_string())?;
    outln!("{line}");
    Ok(())
}

/// Under --cgroup-limit: each of `names` in a child in its own cgroup, the
/// fixed-capacity caches also at a quarter of the capacity, `rounds`
/// rounds in a rotating order.
pub fn run_cgroup(
    w: &CacheWorkload,
    names: &[&'static str],
    rounds: usize,
    bar: &ProgressBar,
) -> Result<CgroupReport, String> {
    let low = (w.capacity / 4).max(w.value_max);
    let mut entries: Vec<(&str, usize)> = Vec::new();
    for &n in names {
        entries.push((n, w.capacity));
        if n == Moka::NAME || n == QuickCache::NAME {
            entries.push((n, low));
        }
    }
    bar.set_length((rounds * entries.len()) as u64);
    let mut runs: Vec<Vec<CgroupRun>> = entries.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for i in 0..entries.len() {
            let b = (round + i) % entries.len();
            let (name, capacity) = entries[b];
            bar.set_message(format!(
                "round {}: {name} at {}",
                round + 1,
                args::show_size(capacity)
            ));
            runs[b].push(cgroup::run_in_cgroup(name, capacity, w)?);
            bar.inc(1);
        }
    }
    Ok(cgroup::report(w, &entries, &runs))
}

/// One run of the backend named `name`.
fn run_one(name: &str, w: &CacheWorkload, traces: &[Arc<Trace>]) -> Result<CacheRun, String> {
    match name {
        <Ours>::NAME => run::run::<Ours>(w, traces),
        OursCollect::NAME => run::run::<OursCollect>(w, traces),
        OursAhash::NAME => run::run::<OursAhash>(w, traces),
        Moka::NAME => run::run::<Moka>(w, traces),
        QuickCache::NAME => run::run::<QuickCache>(w, traces),
        Papaya::NAME => run::run::<Papaya>(w, traces),
        other => Err(format!("no cache backend named {other}")),
    }
}

/// Whether the backend named `name` bounds its bytes.
fn bounded(name: &str) -> bool {
    match name {
        <Ours>::NAME => <Ours>::BOUNDED,
        OursCollect::NAME => OursCollect::BOUNDED,
        OursAhash::NAME => OursAhash::BOUNDED,
        Moka::NAME => Moka::BOUNDED,
        QuickCache::NAME => QuickCache::BOUNDED,
        Papaya::NAME => Papaya::BOUNDED,
        _ => true,
    }
}

/// Runs the scenario on the backends `names` (the first: the one the
/// ratios are against), `rounds` rounds in a rotating order; `bar` counts
/// the runs.
pub fn run(
    w: &CacheWorkload,
    names: &[&'static str],
    rounds: usize,
    bar: &ProgressBar,
) -> Result<CacheScenarioReport, String> {
    bar.set_message("generating the key traces");
    let traces: Vec<Arc<Trace>> = Trace::for_threads(w)?.into_iter().map(Arc::new).collect();
    let mut runs: Vec<Vec<CacheRun>> = names.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for i in 0..names.len() {
            let b = (round + i) % names.len();
            bar.set_message(format!("round {}: {}", round + 1, names[b]));
            runs[b].push(run_one(names[b], w, &traces)?);
            bar.inc(1);
        }
    }
    let named: Vec<(&str, bool)> = names.iter().map(|&n| (n, bounded(n))).collect();
    Ok(report::scenario(w, &named, &runs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cache: CacheArgs,
    }

    fn workload(args: &[&str]) -> Result<CacheWorkload, String> {
        let cli = Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.cache.workload(2, Duration::from_secs(1))
    }

    #[test]
    fn the_defaults_are_the_issues_workload() {
        let w = workload(&[]).unwrap();
        assert_eq!((w.keys, w.zipf, w.get_percent), (100_000, 0.99, 90));
        assert_eq!((w.value_min, w.value_max), (1 << 10, 64 << 10));
        assert_eq!(w.capacity, 64 << 20);
        assert!(w.memory_guard <= 4 * w.capacity && w.memory_guard >= 2 * w.capacity);
        assert_eq!(w.duration + w.warmup, Duration::from_secs(1));
        assert_eq!(w.trace_len, 1 << 20);
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, needle) in [
            (
                &["--cache-value-min", "8K", "--cache-value-max", "4K"][..],
                "--cache-value-max (4K) must be at least --cache-value-min (8K)",
            ),
            (
                &["--cache-capacity", "1M", "--cache-value-max", "2M"][..],
                "must be at most --cache-capacity (1M)",
            ),
            (&["--cache-capacity", "64T"][..], "--cache-capacity"),
            (&["--cache-capacity", "32G"][..], ""),
            (
                &["--cache-keys", "10"][..],
                "--cache-keys must be 100 to 10000000",
            ),
            (&["--zipf", "-1"][..], "--zipf must not be negative"),
            (&["--zipf", "nan"][..], "--zipf must be a number"),
            (
                &["--zipf", "4"][..],
                "--zipf must be 0 (uniform) to 3; 4 is too large",
            ),
            (&["--cache-value-min", "0"][..], "--cache-value-min"),
        ] {
            match workload(args) {
                Ok(w) => {
                    // 32G only passes where the machine has memory for it.
                    assert!(
                        needle.is_empty() && w.memory_guard >= 2 * w.capacity,
                        "{args:?}"
                    );
                }
                Err(e) => assert!(e.contains(needle), "{args:?}: {e}"),
            }
        }
    }

    /// The scenario end to end, a fraction of a second: every backend
    /// measured, the ratios against RcuCache's, the table.
    #[test]
    fn a_short_run_reports_every_backend() {
        let _one = crate::bench::cache::run::tests::one_at_a_time();
        let w = CacheWorkload {
            capacity: 8 << 20,
            memory_guard: 48 << 20,
            trace_len: 1 << 16,
            duration: Duration::from_millis(60),
            warmup: Duration::from_millis(15),
            ..crate::bench::cache::trace::tests::workload()
        };
        let names = available();
        let s = run(&w, &names, 2, &ProgressBar::hidden()).unwrap();
        assert_eq!(s.backends.len(), names.len());
        assert_eq!(names.len(), 6);
        assert_eq!(s.backends[0].backend, "rcu-reclaim");
        assert_eq!(s.rounds, 2);
        for b in &s.backends {
            assert_eq!(b.rounds.len(), 2, "{}", b.backend);
            assert_eq!(b.wrong_values, 0, "{}", b.backend);
            if b.stopped.len() < 2 {
                assert!(b.gets_per_sec > 0.0 && b.inserts_per_sec > 0.0, "{b:?}");
            }
        }
        assert_eq!(s.backends[0].vs_rcu_reclaim.gets_per_sec, 1.0);
        assert!(s
            .backends
            .iter()
            .all(|b| b.bounded == (b.backend != "papaya")));
        let text = report::table(&s);
        assert!(text.starts_with("cache: 90 % gets"), "{text}");
        serde_json::to_string(&s).unwrap();
    }
}
