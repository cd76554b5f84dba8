//! The one-line setups: [`auto_pressure`] (a monitor on the best source
//! available, with the cgroup's usage watched where a limit applies),
//! [`auto_pressure_for`] (the same, linked to a budget) and
//! [`budget_from_cgroup`] (a budget of the cgroup's limit and usage).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::cgroup_usage::{cgroup_limit, CgroupLimit, WithUsage};
use super::{
    CgroupUsageSource, CgroupV1Source, CgroupV2, PressureMonitor, PressureSource, PsiTrigger,
    RssSource, SourceError,
};
use crate::domain::Rcu;
use crate::reclaim::{MemoryBudget, Reclaimer};

/// The one-line setup: a monitor on the global domain with the best source
/// available, tried in order: a PSI trigger on `/proc/pressure/memory`,
/// one on this cgroup v2's `memory.pressure`, cgroup v1
/// `memory.pressure_level` events, and finally an RSS poll every 100 ms
/// against `rss_threshold` bytes (always available; `usize::MAX` turns it
/// off). Each source passed over is logged and listed in
/// [`MonitorStats::passed_over`](super::MonitorStats::passed_over) with the file and the reason.
///
/// Where a cgroup limits the process (its own or the nearest ancestor's,
/// as [`budget_from_cgroup`] finds it), the cgroup's usage is watched too
/// ([`CgroupUsageSource`]: read every 20 ms, medium over 85 % of the
/// limit, critical over 95 %; on cgroup v1 the kernel also signals each
/// crossing of those marks, which wakes the monitor at once), and
/// [`MonitorStats::source`](super::MonitorStats::source) says so: the events above may never come
/// before the cgroup's OOM killer (the machine-wide PSI file does not see
/// a cgroup's limit, and anonymous memory without swap is killed without
/// stalling or being scanned). The domain's garbage is bounded by that
/// limit as well ([`bound_garbage_by_cgroup`](super::bound_garbage_by_cgroup)):
/// retiring threads read the usage themselves and wait for their garbage
/// while it is over half of the room left below 85 %, which needs no
/// monitor thread that gets a CPU in time. A program that can allocate more than about
/// 5 % of its limit in the time a cache takes to shrink (a grace period and
/// the frees), or beside another allocator that does (a memory hog in the
/// same cgroup), needs a budget as well ([`budget_from_cgroup`]), which is
/// checked on every insert. Byte counts
/// are `usize` throughout the crate, as in [`MemoryBudget`]; to link the
/// monitor to a budget, use [`auto_pressure_for`].
///
/// ```no_run
/// let monitor = rcu_reclaim::sources::auto_pressure(512 << 20);
/// println!("watching {}", monitor.stats().source);
/// ```
#[cfg(not(loom))]
pub fn auto_pressure(rss_threshold: usize) -> PressureMonitor {
    auto_pressure_in(Rcu::global(), rss_threshold, None, None)
}

/// [`auto_pressure`] linked to `budget`: the monitor runs on the domain
/// of the budget's reclaimer, its events wake the budget and shrink the
/// caches registered with its reclaimer (see [`PressureMonitor`]), and the
/// RSS fallback fires above the budget's `low` watermark.
///
/// ```
/// use std::sync::Arc;
/// use rcu_reclaim::reclaim::{AccountingAlloc, MemoryBudget, Reclaimer};
/// use rcu_reclaim::Rcu;
/// let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
/// let budget = Arc::new(MemoryBudget::new(512 << 20, reclaimer, AccountingAlloc::live_bytes));
/// let monitor = rcu_reclaim::sources::auto_pressure_for(&budget);
/// println!("watching {}", monitor.stats().source);
/// ```
#[cfg(not(loom))]
pub fn auto_pressure_for(budget: &Arc<MemoryBudget>) -> PressureMonitor {
    let reclaimer = budget.reclaimer().clone();
    let rcu = reclaimer.rcu().clone();
    let low = budget.watermarks().low;
    auto_pressure_in(&rcu, low, Some(budget.clone()), Some(reclaimer))
}

/// The monitor behind [`auto_pressure`] and [`auto_pressure_for`], also
/// for a reclaimer without a budget (an [`RcuCache`](crate::RcuCache)'s).
#[cfg(not(loom))]
pub(crate) fn auto_pressure_in(
    rcu: &Rcu,
    rss_threshold: usize,
    budget: Option<Arc<MemoryBudget>>,
    reclaimer: Option<Arc<Reclaimer>>,
) -> PressureMonitor {
    let (source, passed_over) = best_source(rss_threshold);
    // A signal may come too late (its thread short of CPU): the garbage is
    // bounded by the cgroup's limit as well, by the retiring threads.
    super::bound_garbage_if_limited(rcu);
    let quiet = Duration::from_secs(2);
    let monitor = PressureMonitor::start_linked(rcu, source, quiet, budget, reclaimer);
    monitor.set_passed_over(passed_over);
    monitor
}

/// Picks the first source that opens (see [`auto_pressure`]).
fn best_source(rss_threshold: usize) -> (Box<dyn PressureSource>, Vec<String>) {
    let (stall, window) = (Duration::from_millis(500), Duration::from_secs(2));
    let mut passed_over = Vec::new();
    let candidates: [&dyn Fn() -> Result<Box<dyn PressureSource>, SourceError>; 3] = [
        &|| {
            Ok(Box::new(PsiTrigger::open(
                "/proc/pressure/memory",
                stall,
                window,
            )?))
        },
        &|| {
            Ok(Box::new(
                CgroupV2::for_this_process()?.pressure_trigger(stall, window)?,
            ))
        },
        &|| Ok(Box::new(CgroupV1Source::for_this_process()?)),
    ];
    let mut picked = None;
    for open in candidates {
        match open() {
            Ok(source) => {
                picked = Some(source);
                break;
            }
            Err(mut e) => {
                e.fallback =
                    Some("the next source in line (PSI, cgroup v2, cgroup v1, RSS)".into());
                tracing::info!("rcu-reclaim: pressure source passed over: {e}");
                passed_over.push(e.to_string());
            }
        }
    }
    let source = picked
        .unwrap_or_else(|| Box::new(RssSource::new(rss_threshold, Duration::from_millis(100))));
    // Under a cgroup limit, its usage too: the events above may never come
    // before the cgroup's OOM killer (see CgroupUsageSource).
    match CgroupUsageSource::for_this_process() {
        Ok(usage) => (Box::new(WithUsage::new(source, usage)), passed_over),
        Err(e) => {
            tracing::debug!("rcu-reclaim: no cgroup usage to watch: {e}");
            (source, passed_over)
        }
    }
}

/// A [`MemoryBudget`] sized and measured by this process's cgroup: the limit
/// from cgroup v2 (`memory.high`, else `memory.max`) or v1
/// (`memory.limit_in_bytes`), of the process's own cgroup or, if that sets
/// none, of the nearest ancestor that does (a container's limit is often
/// set on a parent); usage from that cgroup's `memory.current` or
/// `memory.usage_in_bytes`. It only reads files, so a cgroup file system
/// mounted read-only (as containers mount it) will do. The error names the
/// files tried when no cgroup sets a limit, or a limit too small for a
/// budget (under [`Watermarks::MIN_LIMIT`](crate::reclaim::Watermarks::MIN_LIMIT)).
///
/// The usage is the cgroup's charge less its inactive page cache (from its
/// `memory.stat`, read at most every 20 ms), which the kernel reclaims
/// before it OOM-kills: the working set container runtimes judge by. The
/// reclaimer's domain has its garbage bounded by the same limit
/// ([`bound_garbage_by_cgroup`](super::bound_garbage_by_cgroup)).
///
/// The cgroup charges what the allocator holds, freed blocks included: a
/// reclaim step whose frees the usage does not show trims the heap (glibc's
/// `malloc_trim`), so that what reclaim evicted reaches the kernel.
///
/// ```no_run
/// use std::sync::Arc;
/// use rcu_reclaim::Rcu;
/// use rcu_reclaim::reclaim::Reclaimer;
/// use rcu_reclaim::sources::budget_from_cgroup;
/// let budget = budget_from_cgroup(Arc::new(Reclaimer::new(Rcu::global()))).unwrap();
/// println!("limit {} bytes", budget.limit());
/// ```
///
/// The same program outside a container (a developer's machine, a test
/// run) finds no limit; it falls back to a budget of its own, here 1 GiB
/// of resident memory ([`rss_bytes`](super::rss_bytes);
/// [`AccountingAlloc::live_bytes`](crate::reclaim::AccountingAlloc::live_bytes)
/// counts more precisely, where that allocator is installed):
///
/// ```
/// use std::sync::Arc;
/// use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
/// use rcu_reclaim::sources::{auto_pressure_for, budget_from_cgroup, rss_bytes};
/// use rcu_reclaim::{Rcu, RcuCache};
///
/// let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
/// let budget = Arc::new(match budget_from_cgroup(reclaimer.clone()) {
///     Ok(budget) => budget,
///     Err(why) => {
///         eprintln!("no cgroup budget ({why}); using 1 GiB of RSS");
///         MemoryBudget::new(1 << 30, reclaimer, || rss_bytes().unwrap_or(0))
///     }
/// });
/// let _monitor = auto_pressure_for(&budget); // kept alive: `let _ = ..` would stop it
/// let cache = RcuCache::builder().max_bytes(256 << 20).budget(&budget).build();
/// cache.insert(1u64, vec![0u8; 4096]);
/// ```
pub fn budget_from_cgroup(
    reclaimer: Arc<crate::reclaim::Reclaimer>,
) -> Result<MemoryBudget, SourceError> {
    let CgroupLimit {
        limit,
        limit_file,
        usage,
    } = cgroup_limit()?;
    let unread = UnreadUsage::default();
    // The cgroup charges page cache too, which the kernel reclaims before
    // it OOM-kills: a budget that counted it would evict caches for file
    // pages no eviction frees (and, as usage would not fall, all of them).
    let inactive = super::cgroup_usage::InactiveFile::beside(usage.path());
    let budget = budget_of(limit, limit_file, reclaimer, move || {
        let cached = inactive.as_ref().map_or(0, |i| i.bytes());
        unread
            .or_zero(usage.read())
            .saturating_sub(u64::try_from(cached).unwrap_or(u64::MAX))
    })?;
    budget.trim_heap_on_stall();
    super::bound_garbage_if_limited(budget.reclaimer().rcu());
    Ok(budget)
}

/// A budget of `limit` bytes (read from `file`) measured by `usage`, or
/// the error for a limit too small for one.
/// A cgroup budget's usage reads: one that fails counts as 0 bytes (the
/// budget then reclaims nothing), and is reported, once for each run of
/// failures, naming the file and why, instead of passing in silence.
#[derive(Default)]
struct UnreadUsage {
    failing: AtomicBool,
}

impl UnreadUsage {
    /// The usage `read` gave, or 0, reporting the first failure of a run.
    fn or_zero(&self, read: Result<Option<u64>, SourceError>) -> u64 {
        let (usage, error) = match read {
            Ok(Some(bytes)) => (bytes, None),
            Ok(None) => (0, Some("the usage file is empty".to_string())),
            Err(e) => (0, Some(e.to_string())),
        };
        match error {
            None => {
                self.failing.store(false, Ordering::Relaxed);
            }
            Some(why) if !self.failing.swap(true, Ordering::Relaxed) => {
                crate::sys::warn_loud(&format!(
                    "rcu-reclaim: a cgroup budget cannot read its usage: {why}; counting 0 \
                     bytes (no reclaim) until a read succeeds"
                ));
            }
            Some(_) => {}
        }
        usage
    }
}

fn budget_of(
    limit: usize,
    file: PathBuf,
    reclaimer: Arc<crate::reclaim::Reclaimer>,
    usage: impl Fn() -> u64 + Send + Sync + 'static,
) -> Result<MemoryBudget, SourceError> {
    if limit < crate::reclaim::Watermarks::MIN_LIMIT {
        return Err(SourceError {
            fallback: Some(super::NO_CGROUP_BUDGET.into()),
            ..SourceError::new(
                file,
                format!("a limit of {limit} bytes leaves no room for a budget's watermarks"),
            )
        });
    }
    Ok(MemoryBudget::new(limit, reclaimer, move || {
        super::bytes_usize(usage())
    }))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_unread_usage_counts_zero_and_is_reported_once_per_run_of_failures() {
        let u = UnreadUsage::default();
        assert_eq!(u.or_zero(Ok(Some(5))), 5);
        assert!(!u.failing.load(Ordering::Relaxed));
        let fail = || Err(SourceError::new("memory.current", "cannot read: gone"));
        assert_eq!(u.or_zero(fail()), 0);
        assert!(
            u.failing.load(Ordering::Relaxed),
            "the first failure reported"
        );
        assert_eq!(u.or_zero(Ok(None)), 0);
        assert!(u.failing.load(Ordering::Relaxed), "still the same run");
        assert_eq!(u.or_zero(Ok(Some(7))), 7);
        assert!(!u.failing.load(Ordering::Relaxed), "a success ends the run");
    }
}
