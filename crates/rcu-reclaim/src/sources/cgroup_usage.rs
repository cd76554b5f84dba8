//! A cgroup's usage polled against its limit: the signal that comes before
//! the cgroup's OOM killer where the kernel's events do not. Anonymous
//! memory without swap cannot be reclaimed, so a cgroup that reaches its
//! limit is OOM-killed without stalling long enough for a PSI trigger, and
//! (cgroup v1) without scanning enough pages for a `memory.pressure_level`
//! event; the machine-wide `/proc/pressure/memory` does not see a cgroup's
//! limit at all.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::counter_file::CounterFile;
use super::usage_thresholds::UsageThresholds;
use super::{CgroupPaths, CgroupV2, Level, PressureSource, SourceError, V1_MEMORY_ROOT, V2_ROOT};
use crate::reclaim::Watermarks;

/// How often [`CgroupUsageSource::for_this_process`] reads the usage file.
///
/// ```
/// assert_eq!(rcu_reclaim::sources::USAGE_POLL, std::time::Duration::from_millis(20));
/// ```
pub const USAGE_POLL: Duration = Duration::from_millis(20);

/// How often the usage is read while it is under the medium mark and the
/// kernel signals crossings (cgroup v1 usage thresholds): a safety net.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The least time between two events of the same level while usage stays
/// over a mark: each event shrinks caches (an eighth, or half, at least one entry), and usage
/// falls only once the memory is back with the kernel.
const REPEAT: Duration = Duration::from_millis(100);

/// Polls a cgroup's usage file (v2 `memory.current`, v1
/// `memory.usage_in_bytes`) against its limit: a medium event above the
/// `low` watermark of [`Watermarks::from_limit`] (85 %), a critical one
/// above `min` (95 %); while usage stays over a mark, at most one event of
/// its level each 100 ms. The file is kept open and read with `pread`
/// (about half a microsecond). On cgroup v1, where `cgroup.event_control`
/// is writable, the kernel also signals when usage crosses either mark
/// (usage thresholds, checked every 128 pages charged on a CPU): a crossing
/// is read at once instead of at the next poll, and under the medium mark
/// the file is read once a second only. Over a mark, the inactive page cache in the
/// `memory.stat` beside a kernel usage file (`memory.current`,
/// `memory.usage_in_bytes`) is left out: the cgroup charges file pages
/// too, and the kernel reclaims those before it OOM-kills.
///
/// ```
/// use std::time::Duration;
/// use rcu_reclaim::sources::{CgroupUsageSource, Level, PressureSource};
/// let file = std::env::temp_dir().join(format!("usage-doc-{}", std::process::id()));
/// std::fs::write(&file, "90\n").unwrap(); // a regular file stands for the kernel's
/// let mut src = CgroupUsageSource::new(&file, 100, Duration::from_millis(1));
/// assert_eq!(src.wait(Duration::from_millis(5)).unwrap(), Some(Level::Medium));
/// std::fs::write(&file, "10\n").unwrap();
/// std::thread::sleep(Duration::from_millis(2));
/// assert_eq!(src.wait(Duration::from_millis(5)).unwrap(), None);
/// # std::fs::remove_file(&file).unwrap();
/// ```
#[derive(Debug)]
pub struct CgroupUsageSource {
    usage: CounterFile,
    /// The `memory.stat` beside a kernel usage file, whose inactive page
    /// cache is left out of the usage (`None` for another file).
    stat: Option<PathBuf>,
    limit: usize,
    marks: Watermarks,
    interval: Duration,
    next: Instant,
    last: Option<(Instant, Level)>,
    /// The kernel's signal of a crossing of either mark (cgroup v1).
    thresholds: Option<UsageThresholds>,
    /// A crossing was signalled: read the usage now.
    woken: bool,
}

impl CgroupUsageSource {
    /// Polls `usage_file` every `interval` (at least 1 ms) against `limit`
    /// bytes (`usize`, as every byte count in the crate).
    ///
    /// ```
    /// use std::time::Duration;
    /// use rcu_reclaim::sources::CgroupUsageSource;
    /// let src = CgroupUsageSource::new("/sys/fs/cgroup/memory.current", 512 << 20, Duration::from_millis(20));
    /// assert_eq!(src.limit(), 512 << 20);
    /// ```
    ///
    /// # Panics
    /// If `limit` is 0: every usage would be over it, and the source would
    /// report critical pressure on every poll.
    #[track_caller]
    pub fn new(usage_file: impl Into<PathBuf>, limit: usize, interval: Duration) -> Self {
        assert!(
            limit > 0,
            "rcu-reclaim: CgroupUsageSource::new with a limit of 0 bytes: every usage would be \
             over it; give the cgroup's limit (CgroupUsageSource::for_this_process() reads it)"
        );
        let marks = Watermarks::from_limit(limit);
        let usage_file = usage_file.into();
        let stat = stat_beside(&usage_file);
        let thresholds = UsageThresholds::register(&usage_file, &[marks.low, marks.min])
            .map_err(|e| tracing::debug!("rcu-reclaim: usage polled without thresholds: {e}"))
            .ok();
        CgroupUsageSource {
            usage: CounterFile::new(usage_file),
            stat,
            limit,
            marks,
            interval: interval.max(Duration::from_millis(1)),
            next: Instant::now(),
            last: None,
            thresholds,
            woken: false,
        }
    }

    /// Whether the kernel signals this cgroup's crossings of the marks
    /// (cgroup v1 usage thresholds, registered when `cgroup.event_control`
    /// beside the usage file is writable); without, the usage is polled
    /// alone.
    ///
    /// ```
    /// use std::time::Duration;
    /// let src = rcu_reclaim::sources::CgroupUsageSource::new("/tmp/usage", 1 << 30, Duration::ZERO);
    /// assert!(!src.signals_crossings()); // not a cgroup's file
    /// ```
    pub fn signals_crossings(&self) -> bool {
        self.thresholds.is_some()
    }

    /// The usage of this process's cgroup against the limit that
    /// [`budget_from_cgroup`](super::budget_from_cgroup) would use (the
    /// nearest cgroup, v2 then v1, that sets one), polled every
    /// [`USAGE_POLL`]. The error names the files tried when no cgroup sets
    /// a limit.
    ///
    /// ```no_run
    /// let src = rcu_reclaim::sources::CgroupUsageSource::for_this_process().unwrap();
    /// println!("{} of {} bytes", src.usage().unwrap(), src.limit());
    /// ```
    pub fn for_this_process() -> Result<Self, SourceError> {
        let found = cgroup_limit().map_err(|e| SourceError {
            fallback: Some(
                "no usage poll: the kernel's events alone (or CgroupUsageSource::new with a \
                 usage file and a limit)"
                    .into(),
            ),
            ..e
        })?;
        let limit = found.limit;
        Ok(Self::new(found.usage.path(), limit, USAGE_POLL))
    }

    /// The limit in bytes.
    ///
    /// ```
    /// use std::time::Duration;
    /// let src = rcu_reclaim::sources::CgroupUsageSource::new("usage", 1 << 30, Duration::ZERO);
    /// assert_eq!(src.limit(), 1 << 30);
    /// ```
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The usage file's value now; an error names the file.
    ///
    /// ```
    /// use std::time::Duration;
    /// let file = std::env::temp_dir().join(format!("usage-now-{}", std::process::id()));
    /// std::fs::write(&file, "4096\n").unwrap();
    /// let src = rcu_reclaim::sources::CgroupUsageSource::new(&file, 1 << 20, Duration::ZERO);
    /// assert_eq!(src.usage().unwrap(), 4096);
    /// # std::fs::remove_file(&file).unwrap();
    /// let gone = rcu_reclaim::sources::CgroupUsageSource::new("/nonexistent/usage", 1, Duration::ZERO);
    /// assert!(gone.usage().unwrap_err().file.ends_with("usage"));
    /// ```
    pub fn usage(&self) -> Result<usize, SourceError> {
        let Some(bytes) = self.usage.read()? else {
            // "max", or a count no machine holds: a limit file's value.
            return Err(SourceError::new(
                self.usage.path(),
                "reads as unlimited: that is a limit file's value (memory.max, \
                 memory.limit_in_bytes), not a usage; give memory.current (v2) or \
                 memory.usage_in_bytes (v1)",
            ));
        };
        Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
    }

    /// The usage file.
    ///
    /// ```
    /// use std::time::Duration;
    /// let src = rcu_reclaim::sources::CgroupUsageSource::new("/sys/fs/cgroup/memory.current", 1, Duration::ZERO);
    /// assert_eq!(src.file(), std::path::Path::new("/sys/fs/cgroup/memory.current"));
    /// ```
    pub fn file(&self) -> &Path {
        self.usage.path()
    }

    /// How long until the next read is due (zero when it is, or when a
    /// crossing was signalled).
    pub(crate) fn until_next(&self) -> Duration {
        if self.woken {
            return Duration::ZERO;
        }
        self.next.saturating_duration_since(Instant::now())
    }

    /// The descriptor the kernel signals crossings on, for a combined
    /// source to wake on ([`check_crossing`](Self::check_crossing) reads it).
    pub(crate) fn crossing_fd(&self) -> Option<std::os::fd::RawFd> {
        self.thresholds.as_ref().map(UsageThresholds::fd)
    }

    /// Whether a crossing was signalled and not yet read (never waits).
    pub(crate) fn check_crossing(&mut self) -> bool {
        self.woken |= self.thresholds.as_ref().is_some_and(UsageThresholds::take);
        self.woken
    }

    /// Stops listening for the kernel's signal (nobody waits on it): the
    /// usage is polled at the interval alone.
    pub(crate) fn ignore_crossings(&mut self) {
        self.thresholds = None;
    }

    /// Waits up to `nap` for the next read: on the kernel's signal of a
    /// crossing where there is one (which ends the nap early), else asleep.
    fn nap(&mut self, nap: Duration) {
        match &self.thresholds {
            Some(t) => self.woken |= t.wait(nap),
            None => std::thread::sleep(nap),
        }
    }

    /// Reads the usage now and returns the event it calls for, if any.
    pub(crate) fn poll(&mut self) -> Result<Option<Level>, SourceError> {
        self.woken = false;
        self.next = super::instant_after(self.interval);
        let mut usage = self.usage()?;
        // Under the medium mark, the kernel's signal says when it is
        // crossed: no need to read before then (but for a safety net).
        if self.thresholds.is_some() && usage <= self.marks.low {
            self.next = super::instant_after(IDLE_POLL);
        }
        // Over a mark, leave out the page cache the kernel reclaims before
        // it OOM-kills (the cgroup charges file pages too: a container
        // that reads or writes files fills its limit with them, and caches
        // would shrink for memory that is free for the taking).
        if usage > self.marks.low {
            if let Some(stat) = &self.stat {
                usage = usage.saturating_sub(inactive_file(stat));
            }
        }
        let level = if usage > self.marks.min {
            Level::Critical
        } else if usage > self.marks.low {
            Level::Medium
        } else {
            self.last = None;
            return Ok(None);
        };
        let now = Instant::now();
        let due = match self.last {
            Some((at, was)) => level > was || now.duration_since(at) >= REPEAT,
            None => true,
        };
        if !due {
            return Ok(None);
        }
        self.last = Some((now, level));
        Ok(Some(level))
    }
}

impl PressureSource for CgroupUsageSource {
    fn describe(&self) -> String {
        format!(
            "usage of {} every {:?}{} against its limit of {} bytes (medium over {}, critical \
             over {})",
            self.usage.path().display(),
            self.interval,
            if self.thresholds.is_some() {
                " and on the kernel's signal of a crossing"
            } else {
                ""
            },
            self.limit,
            self.marks.low,
            self.marks.min
        )
    }

    /// Reads the usage each time a read is due or a crossing is signalled,
    /// until an event or the end of `timeout`.
    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
        let deadline = super::instant_after(timeout);
        loop {
            let nap = self.until_next();
            let left = deadline.saturating_duration_since(Instant::now());
            if nap > left {
                self.nap(left);
                if !self.woken {
                    return Ok(None);
                }
            } else {
                self.nap(nap);
            }
            if let Some(level) = self.poll()? {
                return Ok(Some(level));
            }
        }
    }
}

/// The inactive page cache in a cgroup's `memory.stat` (v1's hierarchical
/// `total_inactive_file`, else `inactive_file`, as v2 has it), in bytes: what
/// the kernel reclaims before it OOM-kills (the working set that container
/// runtimes judge by is the usage less it). 0 when the file cannot be read.
///
/// Read into a buffer on the stack, allocating nothing (unless the file
/// outgrows it): the drop-in's `call_rcu` looks at the memory state, and
/// may be called from a signal handler that interrupted `malloc` (four
/// threads whose handlers queued heads in a limited cgroup hung for good
/// in `malloc`'s arena lock, called by `read_to_string` here).
fn inactive_file(stat: &Path) -> usize {
    use std::io::Read;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    let Ok(mut file) = std::fs::File::open(stat) else {
        return 0;
    };
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return 0,
        }
    }
    let owned;
    let text = if len < buf.len() {
        match std::str::from_utf8(&buf[..len]) {
            Ok(text) => text,
            Err(_) => return 0,
        }
    } else {
        let Ok(text) = std::fs::read_to_string(stat) else {
            return 0;
        };
        owned = text;
        &owned
    };
    let mut own = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|v| v.parse::<u64>().ok()),
        ) {
            (Some("total_inactive_file"), Some(v)) => {
                return usize::try_from(v).unwrap_or(usize::MAX)
            }
            (Some("inactive_file"), Some(v)) => own = Some(v),
            _ => {}
        }
    }
    own.map_or(0, |v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// A cgroup's inactive page cache ([`inactive_file`]) for a budget, which
/// reads its usage on every check: `memory.stat` is read at most every
/// [`USAGE_POLL`] (it takes tens of microseconds), the value kept between.
pub(crate) struct InactiveFile {
    stat: PathBuf,
    bytes: std::sync::atomic::AtomicUsize,
    /// `clock::epoch_ms()` of the last read (0: never).
    read_at: std::sync::atomic::AtomicUsize,
}

impl InactiveFile {
    /// The cache beside a kernel usage file (`memory.current`,
    /// `memory.usage_in_bytes`); `None` for another file.
    pub(crate) fn beside(usage_file: &Path) -> Option<InactiveFile> {
        stat_beside(usage_file).map(|stat| InactiveFile {
            stat,
            bytes: std::sync::atomic::AtomicUsize::new(0),
            read_at: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The inactive page cache, at most [`USAGE_POLL`] old (0 until the
    /// first read has finished, or when the file cannot be read).
    pub(crate) fn bytes(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        let now = crate::clock::epoch_ms();
        let at = self.read_at.load(Relaxed);
        let poll = usize::try_from(USAGE_POLL.as_millis()).unwrap_or(usize::MAX);
        if (at == 0 || now.saturating_sub(at) >= poll)
            && self
                .read_at
                .compare_exchange(at, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.bytes.store(inactive_file(&self.stat), Relaxed);
        }
        self.bytes.load(Relaxed)
    }
}

/// The `memory.stat` beside a kernel usage file, or `None`.
fn stat_beside(usage_file: &Path) -> Option<PathBuf> {
    match usage_file.file_name().and_then(|n| n.to_str()) {
        Some("memory.current" | "memory.usage_in_bytes") => {
            Some(usage_file.with_file_name("memory.stat"))
        }
        _ => None,
    }
}

/// The limit that binds this process and the usage file it is measured by.
pub(crate) struct CgroupLimit {
    pub(crate) limit: usize,
    /// Where the limit was read (for messages).
    pub(crate) limit_file: PathBuf,
    pub(crate) usage: CounterFile,
}

/// The limit of the nearest cgroup (v2, then v1) of this process that sets
/// one, and its usage file (see [`budget_from_cgroup`](super::budget_from_cgroup)).
pub(crate) fn cgroup_limit() -> Result<CgroupLimit, SourceError> {
    let paths = CgroupPaths::for_this_process()?;
    let v2 = match &paths.v2 {
        // A cgroup v1 or hybrid host lists a v2 hierarchy ("0::/") whose
        // root is not mounted where v2's is: say that, rather than what
        // `CgroupV2::open` tells a caller who passed it a directory.
        Some(_) if !Path::new(V2_ROOT).join("cgroup.controllers").exists() => {
            Err(SourceError::new(
                V2_ROOT,
                "not a cgroup v2 mount (a cgroup v1 or hybrid host: no v2 memory controller)",
            ))
        }
        Some(rel) => limited_ancestor(Path::new(V2_ROOT), rel, |dir| {
            let cg = CgroupV2::open(dir)?;
            Ok(cg.budget_limit()?.map(|limit| (limit, cg)))
        }),
        None => Err(SourceError::new(
            "/proc/self/cgroup",
            "the process is in no cgroup v2 hierarchy",
        )),
    };
    let v2_err = match v2 {
        Ok(Ok((limit, cg))) => {
            return Ok(CgroupLimit {
                limit,
                limit_file: cg.dir().join("memory.max"),
                usage: CounterFile::new(cg.dir().join("memory.current")),
            })
        }
        Ok(Err(dir)) => format!("{}: no memory.high or memory.max set", dir.display()),
        Err(e) => format!("{}: {}", e.file.display(), e.reason),
    };
    let v1 = match &paths.v1_memory {
        Some(rel) => limited_ancestor(Path::new(V1_MEMORY_ROOT), rel, |dir| {
            let limit = super::cgroup_v1::read_bytes(&dir.join("memory.limit_in_bytes"))?;
            Ok(limit.map(|l| {
                (
                    super::bytes_usize(l),
                    CounterFile::new(dir.join("memory.usage_in_bytes")),
                )
            }))
        }),
        None => Err(SourceError::new(
            "/proc/self/cgroup",
            "the process is in no cgroup v1 memory hierarchy",
        )),
    };
    match v1 {
        Ok(Ok((limit, usage))) => Ok(CgroupLimit {
            limit,
            limit_file: usage.path().with_file_name("memory.limit_in_bytes"),
            usage,
        }),
        Ok(Err(dir)) => Err(SourceError {
            fallback: Some(super::NO_CGROUP_BUDGET.into()),
            ..SourceError::new(
                dir.join("memory.limit_in_bytes"),
                format!(
                    "no cgroup sets a memory limit (cgroup v2: {v2_err}; cgroup v1: unlimited \
                     here and in every parent)"
                ),
            )
        }),
        Err(e) => Err(SourceError {
            reason: format!("{} (cgroup v2: {v2_err})", e.reason),
            ..e
        }),
    }
}

/// The limit of the nearest of `root/rel` and its ancestors (up to `root`)
/// for which `limit` finds one, with what `limit` returned; `Ok(Err(dir))`
/// (the process's own directory) when none sets one. Errors are those of
/// the process's own directory; an ancestor that cannot be read ends the
/// walk.
fn limited_ancestor<T>(
    root: &Path,
    rel: &str,
    limit: impl Fn(&Path) -> Result<Option<(usize, T)>, SourceError>,
) -> Result<Result<(usize, T), PathBuf>, SourceError> {
    let own = root.join(rel.trim_start_matches('/'));
    if let Some(found) = limit(&own)? {
        return Ok(Ok(found));
    }
    let mut dir = own.as_path();
    while let Some(parent) = dir.parent().filter(|p| p.starts_with(root)) {
        match limit(parent) {
            Ok(Some(found)) => return Ok(Ok(found)),
            Ok(None) => dir = parent,
            Err(_) => break,
        }
    }
    Ok(Err(own))
}

/// An event source watched together with a cgroup's usage (see
/// [`auto_pressure`](super::auto_pressure)): whichever speaks first.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct WithUsage {
    /// Declared (so dropped) before `usage`, whose descriptor it may poll.
    pub(crate) events: Box<dyn PressureSource>,
    /// `None` once the cgroup is gone: the events alone then.
    pub(crate) usage: Option<CgroupUsageSource>,
    /// The usage's descriptor of crossings, while the events wake on it.
    crossing: Option<std::os::fd::RawFd>,
    /// The descriptors given through `wake_also_on` (a monitor's, to stop
    /// it): the events wake on them too.
    also: Vec<std::os::fd::RawFd>,
}

#[cfg_attr(loom, allow(dead_code))]
impl WithUsage {
    /// `events` also wakes on `usage`'s signal of a crossing, where both
    /// can; else the usage is polled at its interval alone.
    pub(crate) fn new(mut events: Box<dyn PressureSource>, mut usage: CgroupUsageSource) -> Self {
        let crossing = usage
            .crossing_fd()
            .filter(|&fd| events.wake_also_on(Some(fd)));
        if crossing.is_none() {
            usage.ignore_crossings();
        }
        WithUsage {
            events,
            usage: Some(usage),
            crossing,
            also: Vec::new(),
        }
    }

    /// The usage's event, if a read is due; a cgroup removed (its usage
    /// file gone) ends the poll, with an error that says so.
    fn poll_usage(&mut self) -> Result<Option<Level>, SourceError> {
        let Some(usage) = self.usage.as_mut().filter(|u| u.until_next().is_zero()) else {
            return Ok(None);
        };
        match usage.poll() {
            Err(e) if !usage.file().exists() => {
                // Before the descriptor it wakes on is closed; the
                // caller's stay.
                self.events.wake_also_on(None);
                for &fd in &self.also {
                    self.events.wake_also_on(Some(fd));
                }
                self.crossing = None;
                self.usage = None;
                Err(SourceError::new(
                    e.file,
                    format!(
                        "{}: the cgroup was removed (or is no longer this process's); its usage \
                         is no longer polled, the kernel's events still are: start a new \
                         monitor to watch the cgroup the process is in now",
                        e.reason
                    ),
                ))
            }
            other => other,
        }
    }
}

impl PressureSource for WithUsage {
    fn describe(&self) -> String {
        match &self.usage {
            Some(u) => format!("{}, and the {}", self.events.describe(), u.describe()),
            None => self.events.describe(),
        }
    }

    /// Waits on the events between the usage's reads, until an event or
    /// the end of `timeout`.
    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
        let deadline = super::instant_after(timeout);
        loop {
            if let Some(level) = self.poll_usage()? {
                return Ok(Some(level));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let Some(usage) = &self.usage else {
                return self.events.wait(left);
            };
            // In whole milliseconds, rounded up: poll(2) takes those, and
            // a wait cut short by rounding down would wake twice a read.
            let asked = usage.until_next().min(left);
            let asked = Duration::from_millis(asked.as_micros().div_ceil(1000) as u64).min(left);
            let start = Instant::now();
            if let Some(level) = self.events.wait(asked)? {
                return Ok(Some(level));
            }
            // Woken by a crossing of the usage's marks: read it now.
            if self.usage.as_mut().is_some_and(|u| u.check_crossing()) {
                continue;
            }
            // Woken by the caller's descriptor: its owner reads it.
            if super::usage_thresholds::wait_readable(&self.also, Duration::ZERO) {
                return Ok(None);
            }
            // A source that returns at once without an event: wait out
            // what was asked of it rather than spin.
            if let Some(rest) = asked.checked_sub(start.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }

    fn psi(&self) -> Option<super::PsiStats> {
        self.events.psi()
    }

    fn wake_also_on(&mut self, fd: Option<std::os::fd::RawFd>) -> bool {
        match fd {
            Some(fd) => {
                let woken = self.events.wake_also_on(Some(fd));
                if woken {
                    super::usage_thresholds::set_also(&mut self.also, Some(fd));
                }
                woken
            }
            None => {
                // The caller's only: the crossings still wake the events.
                self.events.wake_also_on(None);
                if let Some(fd) = self.crossing {
                    self.events.wake_also_on(Some(fd));
                }
                self.also.clear();
                true
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("rcu-reclaim-usage-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_budgets_inactive_page_cache_is_read_at_most_every_poll() {
        let dir = std::env::temp_dir().join(format!("rcu-reclaim-istat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let usage = dir.join("memory.current");
        let stat = dir.join("memory.stat");
        std::fs::write(&stat, "anon 10\ninactive_file 300\n").unwrap();
        let cache = InactiveFile::beside(&usage).expect("a kernel usage file");
        assert_eq!(cache.bytes(), 300);
        // Within the poll the value is kept; after it, read anew.
        std::fs::write(&stat, "inactive_file 50\n").unwrap();
        let kept = cache.bytes();
        std::thread::sleep(USAGE_POLL * 2);
        assert_eq!(
            cache.bytes(),
            50,
            "read again after the poll (kept {kept} before)"
        );
        // A stat file that is gone counts nothing.
        std::fs::remove_file(&stat).unwrap();
        std::thread::sleep(USAGE_POLL * 2);
        assert_eq!(cache.bytes(), 0);
        std::fs::remove_dir(&dir).unwrap();
        assert!(InactiveFile::beside(Path::new("/tmp/usage")).is_none());
    }

    #[test]
    fn inactive_page_cache_is_not_pressure() {
        let dir = std::env::temp_dir().join(format!("rcu-reclaim-stat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (usage_file, key) in [
            ("memory.usage_in_bytes", "total_inactive_file"),
            ("memory.current", "inactive_file"),
        ] {
            let usage = dir.join(usage_file);
            let stat = dir.join("memory.stat");
            std::fs::write(&usage, "960\n").unwrap();
            // Of 960 bytes charged, 300 are inactive page cache: 660 is
            // under the medium mark (850).
            std::fs::write(&stat, format!("cache 500\nactive_file 100\n{key} 300\n")).unwrap();
            let mut s = CgroupUsageSource::new(&usage, 1000, Duration::from_millis(1));
            assert_eq!(s.poll().unwrap(), None, "{usage_file}");
            // The same charge of anonymous memory is critical.
            std::fs::write(&stat, format!("{key} 0\n")).unwrap();
            assert_eq!(s.poll().unwrap(), Some(Level::Critical), "{usage_file}");
            // No memory.stat: the usage as it is.
            std::fs::remove_file(&stat).unwrap();
            std::thread::sleep(REPEAT);
            assert_eq!(s.poll().unwrap(), Some(Level::Critical), "{usage_file}");
            std::fs::remove_file(&usage).unwrap();
        }
        std::fs::remove_dir(&dir).unwrap();
        // Another file's sibling memory.stat is not read.
        let other = temp("other", "960\n");
        let s = CgroupUsageSource::new(&other, 1000, Duration::from_millis(1));
        assert!(s.stat.is_none());
        std::fs::remove_file(&other).unwrap();
    }

    #[test]
    fn levels_follow_the_watermarks_and_repeat_at_most_each_100_ms() {
        let path = temp("levels", "0\n");
        let mut s = CgroupUsageSource::new(&path, 1000, Duration::from_millis(1));
        assert_eq!(s.poll().unwrap(), None);
        std::fs::write(&path, "851\n").unwrap();
        assert_eq!(s.poll().unwrap(), Some(Level::Medium));
        assert_eq!(s.poll().unwrap(), None, "the same level again at once");
        std::fs::write(&path, "951\n").unwrap();
        assert_eq!(
            s.poll().unwrap(),
            Some(Level::Critical),
            "a worse level at once"
        );
        assert_eq!(s.poll().unwrap(), None);
        std::thread::sleep(REPEAT);
        assert_eq!(
            s.poll().unwrap(),
            Some(Level::Critical),
            "and again 100 ms on"
        );
        std::fs::write(&path, "100\n").unwrap();
        assert_eq!(s.poll().unwrap(), None);
        std::fs::write(&path, "900\n").unwrap();
        assert_eq!(
            s.poll().unwrap(),
            Some(Level::Medium),
            "a new crossing at once"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn an_unreadable_usage_file_is_an_error_naming_it() {
        let mut s = CgroupUsageSource::new("/nonexistent/memory.current", 1 << 30, USAGE_POLL);
        let e = s.wait(Duration::from_millis(1)).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/memory.current"), "{e}");
    }

    /// A removed cgroup (its usage file gone) is reported once, naming it
    /// and what to do; the events are still watched, without the poll.
    #[test]
    fn with_usage_drops_the_poll_of_a_removed_cgroup_and_keeps_the_events() {
        let path = temp("removed", "10\n");
        let (tx, events) = super::super::SyntheticSource::new();
        let mut s = WithUsage::new(
            Box::new(events),
            CgroupUsageSource::new(&path, 1000, Duration::from_millis(1)),
        );
        // Removed before the first read (a regular file kept open would
        // still read; a removed cgroup's does not).
        std::fs::remove_file(&path).unwrap();
        let e = s.wait(Duration::from_millis(50)).unwrap_err();
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        assert!(e.reason.contains("the cgroup was removed"), "{e}");
        assert!(e.reason.contains("start a new monitor"), "{e}");
        assert_eq!(s.describe(), "synthetic");
        assert_eq!(s.wait(Duration::from_millis(5)).unwrap(), None);
        tx.send(Level::Medium).unwrap();
        assert_eq!(
            s.wait(Duration::from_millis(50)).unwrap(),
            Some(Level::Medium)
        );
    }

    #[test]
    fn with_usage_reports_the_poll_beside_a_silent_source() {
        let path = temp("with", "990\n");
        let (_tx, events) = super::super::SyntheticSource::new();
        let mut s = WithUsage::new(
            Box::new(events),
            CgroupUsageSource::new(&path, 1000, Duration::from_millis(5)),
        );
        assert!(s.describe().starts_with("synthetic, and the usage of"));
        let t = Instant::now();
        let mut got = None;
        while got.is_none() && t.elapsed() < Duration::from_secs(2) {
            got = s.wait(Duration::from_millis(100)).unwrap();
        }
        assert_eq!(got, Some(Level::Critical));
        std::fs::remove_file(&path).unwrap();
    }
}
