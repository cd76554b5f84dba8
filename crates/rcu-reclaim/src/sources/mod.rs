//! Pressure sources: where the signal that memory is short comes from, and
//! the monitor thread that turns it into RCU fast mode and reclaim.
//!
//! * [`PsiTrigger`]: a PSI trigger on `/proc/pressure/memory` (or a cgroup
//!   v2 `memory.pressure`), waited on with `poll(POLLPRI)`;
//! * [`CgroupV1Source`]: cgroup v1 `memory.pressure_level` notifications
//!   (`cgroup.event_control` + eventfd), plus usage and limit;
//! * [`CgroupUsageSource`]: polls a cgroup's usage against its limit
//!   (what [`auto_pressure`] adds under a cgroup limit);
//! * [`RssSource`]: polls `/proc/self/statm` against a threshold
//!   ([`rss_bytes`] reads it once);
//! * [`SyntheticSource`]: events sent by the program (tests, simulations).
//!
//! All implement [`PressureSource`]; [`PressureMonitor`] runs one in a
//! thread. [`CgroupV2`] reads a v2 cgroup's usage, limits and events and
//! opens PSI triggers on its `memory.pressure`. [`auto_pressure`] picks the
//! best source available ([`auto_pressure_for`]: linked to a budget, whose
//! caches it shrinks); [`budget_from_cgroup`] makes a
//! [`MemoryBudget`](crate::reclaim::MemoryBudget) from the cgroup's limit.
//!
//! Use it to let the kernel tell RCU that memory is short: the monitor
//! holds a pressure signal ([`Rcu::pressure_start_all`](crate::Rcu::pressure_start_all))
//! while events come, and asks RCU to run callbacks at the level's priority
//! (medium: 6, critical: 0). Without a monitor, a program can signal
//! pressure itself through [`pressure`](crate::pressure).
//!
//! ```
//! use std::time::Duration;
//! use rcu_reclaim::sources::{Level, PressureMonitor, SyntheticSource};
//! use rcu_reclaim::Rcu;
//!
//! let rcu = Rcu::new(Default::default()).unwrap();
//! let (events, source) = SyntheticSource::new();
//! let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(50), None);
//! events.send(Level::Critical).unwrap();
//! while monitor.stats().events == 0 {
//!     std::thread::sleep(Duration::from_millis(1));
//! }
//! assert!(rcu.in_fast_mode());
//! drop(monitor); // stops the thread and ends the signal
//! ```

mod auto;
mod cgroup_usage;
mod cgroup_v1;
mod cgroup_v2;
mod counter_file;
mod garbage_bound;
mod monitor;
mod parse;
mod psi;
mod rss;
mod usage_thresholds;

use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

#[cfg(not(loom))]
pub(crate) use auto::auto_pressure_in;
pub use auto::budget_from_cgroup;
#[cfg(not(loom))]
pub use auto::{auto_pressure, auto_pressure_for};
pub use cgroup_usage::{CgroupUsageSource, USAGE_POLL};
pub use cgroup_v1::{CgroupV1Source, V1_MEMORY_ROOT};
pub use cgroup_v2::{CgroupV2, CgroupV2Events, V2_ROOT};
pub use garbage_bound::bound_garbage_by_cgroup;
pub(crate) use garbage_bound::bound_garbage_if_limited;
pub(crate) use monitor::UNSHRUNK_CACHES;
pub use monitor::{MonitorStats, PressureMonitor};
pub use parse::{CgroupPaths, MemoryEvents, PsiLine, PsiStats};
pub use psi::PsiTrigger;
pub use rss::{rss_bytes, RssSource};

pub(crate) use cgroup_usage::cgroup_limit;

/// What a caller gets when no cgroup limit can make a budget (the error's
/// `fallback`).
pub(crate) const NO_CGROUP_BUDGET: &str =
    "no budget (make one with MemoryBudget::new and a limit of your own; with no limit at \
     all, Config::max_pending_bytes caps a domain's garbage)";

/// A byte count read from the kernel (`u64`) as the crate counts bytes,
/// `usize` (saturating; the same on 64-bit).
pub(crate) fn bytes_usize(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// How severe a pressure event is (cgroup v1's `memory.pressure_level`).
///
/// ```
/// use rcu_reclaim::sources::Level;
/// assert!(Level::Critical > Level::Medium && Level::Medium > Level::Low);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Level {
    /// Reclaim is running.
    Low,
    /// Memory is getting short; reclaim is working hard.
    Medium,
    /// Close to running out (the OOM killer may act).
    Critical,
}

/// The kernel's name of the level (`low`, `medium`, `critical`, as cgroup
/// v1's `memory.pressure_level` and the `serde` feature spell it), for logs.
///
/// ```
/// use rcu_reclaim::sources::Level;
/// assert_eq!(Level::Critical.to_string(), "critical");
/// assert_eq!(format!("pressure {}", Level::Medium), "pressure medium");
/// ```
impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::Critical => "critical",
        })
    }
}

/// A source of memory-pressure events.
///
/// ```
/// use std::time::Duration;
/// use rcu_reclaim::sources::{Level, PressureSource, SyntheticSource};
/// let (tx, mut src) = SyntheticSource::new();
/// tx.send(Level::Medium).unwrap();
/// assert_eq!(src.wait(Duration::from_millis(10)).unwrap(), Some(Level::Medium));
/// assert_eq!(src.wait(Duration::from_millis(1)).unwrap(), None);
/// ```
///
/// A source of your own (a gauge the kernel does not see: an arena's
/// usage, a quota shared by several processes) implements the trait and
/// is given to [`PressureMonitor::start`], to
/// [`RcuCacheBuilder::pressure_source`](crate::RcuCacheBuilder::pressure_source).
/// The monitor calls
/// [`wait`](PressureSource::wait) in a loop on its own thread; each event
/// expedites RCU (and, for a cache, shrinks it by an eighth for
/// [`Level::Medium`], by half for [`Level::Critical`], at least one
/// entry), so a polling source
/// reports at most one event per poll:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use rcu_reclaim::sources::{Level, PressureSource, SourceError};
/// use rcu_reclaim::RcuCache;
///
/// /// Medium over 80 % of a quota, critical over 95 %, read every 20 ms.
/// struct Quota {
///     used: Arc<AtomicUsize>,
///     quota: usize,
/// }
///
/// impl PressureSource for Quota {
///     fn describe(&self) -> String {
///         format!("application quota of {} bytes, polled every 20 ms", self.quota)
///     }
///     fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
///         std::thread::sleep(timeout.min(Duration::from_millis(20)));
///         let used = self.used.load(Ordering::Relaxed);
///         Ok(if used > self.quota / 100 * 95 {
///             Some(Level::Critical)
///         } else if used > self.quota / 100 * 80 {
///             Some(Level::Medium)
///         } else {
///             None // no event (also what a timeout returns)
///         })
///     }
/// }
///
/// let used = Arc::new(AtomicUsize::new(0));
/// let source = Quota { used: used.clone(), quota: 1 << 30 };
/// let cache = RcuCache::builder().max_bytes(16 << 20).pressure_source(Box::new(source)).build();
/// for i in 0..64u32 {
///     cache.insert(i, vec![0u8; 64 << 10]);
/// }
/// used.store(1 << 30, Ordering::Relaxed); // the quota is spent: critical
/// while cache.len() == 64 {
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// ```
pub trait PressureSource: Send {
    /// A description for reports and stats (kind, file, settings):
    /// [`MonitorStats::source`] and the monitor's log lines show it.
    ///
    /// ```
    /// use rcu_reclaim::sources::{PressureSource, RssSource};
    /// let rss = RssSource::new(1 << 30, std::time::Duration::from_millis(100));
    /// assert!(rss.describe().contains("RSS"));
    /// ```
    fn describe(&self) -> String;

    /// Waits up to `timeout` for the next event: `Ok(Some(level))` for an
    /// event, `Ok(None)` on timeout or when there is nothing to report
    /// (returning early is fine: the monitor calls again once the
    /// `timeout` it gave has passed), `Err` for a source that cannot be read (the monitor
    /// logs it, counts it in [`MonitorStats::errors`] and retries with a
    /// growing backoff). It runs on the monitor's thread, never inside a
    /// read-side section, and may block.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rcu_reclaim::sources::{Level, PressureSource, SyntheticSource};
    /// let (events, mut source) = SyntheticSource::new();
    /// assert_eq!(source.wait(Duration::from_millis(1)).unwrap(), None); // timed out
    /// events.send(Level::Critical).unwrap();
    /// assert_eq!(source.wait(Duration::from_secs(1)).unwrap(), Some(Level::Critical));
    /// ```
    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError>;

    /// The PSI averages behind this source, for sources that have them
    /// (the default: `None`); the monitor publishes them in
    /// [`MonitorStats::psi`].
    ///
    /// ```
    /// use rcu_reclaim::sources::{PressureSource, SyntheticSource};
    /// let (_events, source) = SyntheticSource::new();
    /// assert!(source.psi().is_none());
    /// ```
    fn psi(&self) -> Option<PsiStats> {
        None
    }

    /// Lets [`wait`](PressureSource::wait) also end early, with
    /// `Ok(None)`, once `fd` is readable (`Some` adds `fd` to those given
    /// before, `None` removes them all); returns whether this source does.
    /// [`auto_pressure`] uses it to wake on a cgroup v1 usage threshold
    /// while a source waits on its own file, and a [`PressureMonitor`] to
    /// stop at once when it is dropped. The source only polls `fd`: the
    /// caller reads it, and keeps it open until it calls this with `None`
    /// or drops the source. Sources that wait in `poll(2)` ([`PsiTrigger`],
    /// [`CgroupV1Source`], [`RssSource`]) do; the default does not.
    #[doc(hidden)]
    fn wake_also_on(&mut self, fd: Option<std::os::fd::RawFd>) -> bool {
        let _ = fd;
        false
    }
}

/// A source could not be used: the file, why, and what happens instead.
///
/// ```
/// use rcu_reclaim::sources::CgroupV1Source;
/// let e = CgroupV1Source::open("/nonexistent/cgroup").unwrap_err();
/// assert!(e.file.ends_with("memory.pressure_level"));
/// println!("{e}"); // the file, why, and what to do
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// The file involved.
    pub file: PathBuf,
    /// What went wrong.
    pub reason: String,
    /// What is used instead, if anything.
    pub fallback: Option<String>,
}

impl SourceError {
    pub(crate) fn new(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        SourceError {
            file: file.into(),
            reason: reason.into(),
            fallback: None,
        }
    }
}

/// What to do about an I/O error on a pressure file, where the error
/// alone does not say: for a permission refused, who may register
/// notifications (empty for any other error).
pub(crate) fn io_fix(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        " (registering memory-pressure notifications needs write access to this file: run as \
         root, or have the cgroup delegated to this user)"
    } else {
        ""
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)?;
        match &self.fallback {
            Some(fb) => write!(f, "; falling back to {fb}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for SourceError {}

/// Events sent through a channel: drives a [`PressureMonitor`]
/// deterministically in tests and simulations.
///
/// ```
/// use std::time::Duration;
/// use rcu_reclaim::sources::{Level, PressureSource, SyntheticSource};
/// let (events, mut source) = SyntheticSource::new();
/// events.send(Level::Low).unwrap();
/// assert_eq!(source.wait(Duration::from_millis(10)).unwrap(), Some(Level::Low));
/// assert_eq!(source.wait(Duration::from_millis(10)).unwrap(), None);
/// ```
#[derive(Debug)]
pub struct SyntheticSource {
    rx: mpsc::Receiver<Level>,
}

impl SyntheticSource {
    /// The sender and the source.
    ///
    /// ```
    /// let (tx, src) = rcu_reclaim::sources::SyntheticSource::new();
    /// drop((tx, src));
    /// ```
    pub fn new() -> (mpsc::Sender<Level>, SyntheticSource) {
        let (tx, rx) = mpsc::channel();
        (tx, SyntheticSource { rx })
    }
}

impl PressureSource for SyntheticSource {
    fn describe(&self) -> String {
        "synthetic".into()
    }

    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
        match self.rx.recv_timeout(timeout) {
            Ok(level) => Ok(Some(level)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // No sender left: no more events, ever. Sleep out the wait.
                std::thread::sleep(timeout);
                Ok(None)
            }
        }
    }
}

/// `d` from now, saturating far in the future (a century) where the clock
/// cannot represent it: intervals and timeouts of `Duration::MAX` are valid.
pub(crate) fn instant_after(d: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod parse_props;
