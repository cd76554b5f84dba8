//! cgroup v2 memory controller: `memory.current`, `memory.max`,
//! `memory.high`, `memory.events`, and PSI triggers on `memory.pressure`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::time::Instant;

use super::counter_file::CounterFile;
use super::parse::{parse_cgroup_bytes, CgroupPaths, MemoryEvents};
use super::{Level, PressureSource, PsiTrigger, SourceError};

/// Where the unified hierarchy is mounted on common systems.
///
/// ```
/// assert_eq!(rcu_reclaim::sources::V2_ROOT, "/sys/fs/cgroup");
/// ```
pub const V2_ROOT: &str = "/sys/fs/cgroup";

/// This process's cgroup v2 directory, when the memory controller is
/// enabled there.
///
/// ```no_run
/// let cg = rcu_reclaim::sources::CgroupV2::for_this_process().unwrap();
/// println!("{:?} of {:?}", cg.current().unwrap(), cg.max().unwrap());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupV2 {
    dir: PathBuf,
    /// `memory.current`, kept open: a budget reads it per check.
    current: CounterFile,
}

fn read(path: &Path) -> Result<String, SourceError> {
    std::fs::read_to_string(path).map_err(|e| SourceError::new(path, format!("cannot read: {e}")))
}

impl CgroupPaths {
    /// Reads `/proc/self/cgroup`: the cgroups this process is in.
    ///
    /// ```
    /// let paths = rcu_reclaim::sources::CgroupPaths::for_this_process().unwrap();
    /// println!("{paths:?}");
    /// ```
    pub fn for_this_process() -> Result<CgroupPaths, SourceError> {
        const FILE: &str = "/proc/self/cgroup";
        CgroupPaths::parse(&read(Path::new(FILE))?)
            .map_err(|e| SourceError::new(FILE, e.to_string()))
    }
}

impl MemoryEvents {
    /// Reads a `memory.events` file (or a cgroup v1 `memory.oom_control`,
    /// for its `oom_kill` line).
    ///
    /// ```
    /// let e = rcu_reclaim::sources::MemoryEvents::read("/nonexistent/memory.events").unwrap_err();
    /// assert!(e.to_string().contains("cannot read"));
    /// ```
    pub fn read(path: impl AsRef<Path>) -> Result<MemoryEvents, SourceError> {
        let path = path.as_ref();
        MemoryEvents::parse(&read(path)?).map_err(|e| SourceError::new(path, e.to_string()))
    }
}

impl CgroupV2 {
    /// Finds the directory from `/proc/self/cgroup`; an error names the
    /// file when there is no v2 cgroup or no memory controller in it.
    ///
    /// ```
    /// match rcu_reclaim::sources::CgroupV2::for_this_process() {
    ///     Ok(cgroup) => println!("in {cgroup:?}"),
    ///     Err(e) => println!("no cgroup v2 memory controller: {e}"), // names the file
    /// }
    /// ```
    pub fn for_this_process() -> Result<CgroupV2, SourceError> {
        let paths = CgroupPaths::for_this_process()?;
        let rel = paths.v2.ok_or_else(|| {
            SourceError::new(
                "/proc/self/cgroup",
                "the process is in no cgroup v2 hierarchy",
            )
        })?;
        Self::open(Path::new(V2_ROOT).join(rel.trim_start_matches('/')))
    }

    /// A cgroup v2 directory; it must have the memory controller.
    ///
    /// ```
    /// let e = rcu_reclaim::sources::CgroupV2::open("/nonexistent").unwrap_err();
    /// assert!(e.to_string().contains("memory.current"));
    /// let e = rcu_reclaim::sources::CgroupV2::open(std::env::temp_dir()).unwrap_err();
    /// assert!(e.to_string().contains("not a cgroup v2 directory"), "{e}");
    /// ```
    pub fn open(dir: impl Into<PathBuf>) -> Result<CgroupV2, SourceError> {
        let dir = dir.into();
        let current = dir.join("memory.current");
        if let Err(e) = std::fs::metadata(&current) {
            // Only a directory that exists and lacks the file is one without
            // the memory controller; say what else went wrong.
            let reason = match std::fs::metadata(&dir) {
                Err(d) if d.kind() == std::io::ErrorKind::NotFound => format!(
                    "{} does not exist: give a cgroup v2 directory (they lie under {V2_ROOT})",
                    dir.display()
                ),
                Ok(m) if !m.is_dir() => format!(
                    "{} is not a directory: give a cgroup v2 directory (they lie under \
                     {V2_ROOT})",
                    dir.display()
                ),
                // A cgroup v2 directory always has `cgroup.controllers`.
                _ if !dir.join("cgroup.controllers").exists() => format!(
                    "{} is not a cgroup v2 directory (it has no cgroup.controllers): give one \
                     (they lie under {V2_ROOT})",
                    dir.display()
                ),
                _ if e.kind() == std::io::ErrorKind::NotFound => {
                    "missing: the memory controller is not enabled in this cgroup v2 directory \
                     (enable it in the parent's cgroup.subtree_control)"
                        .into()
                }
                _ => format!("cannot read: {e} (run as a user allowed to read the cgroup)"),
            };
            return Err(SourceError::new(current, reason));
        }
        Ok(CgroupV2 {
            current: CounterFile::new(current),
            dir,
        })
    }

    /// The directory.
    ///
    /// ```no_run
    /// println!("{}", rcu_reclaim::sources::CgroupV2::for_this_process().unwrap().dir().display());
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn bytes(&self, name: &str) -> Result<Option<usize>, SourceError> {
        let path = self.dir.join(name);
        let bytes = parse_cgroup_bytes(&read(&path)?)
            .map_err(|e| SourceError::new(&path, e.to_string()))?;
        Ok(bytes.map(super::bytes_usize))
    }

    /// `memory.current`: bytes in use. The file is kept open after the
    /// first call and read with `pread` (about half a microsecond, against
    /// several for an open, read and close), so a budget may read it on
    /// every check.
    ///
    /// ```no_run
    /// println!("{}", rcu_reclaim::sources::CgroupV2::for_this_process().unwrap().current().unwrap());
    /// ```
    pub fn current(&self) -> Result<usize, SourceError> {
        Ok(self.current.read()?.map_or(usize::MAX, super::bytes_usize))
    }

    /// `memory.max`: the hard limit, `None` for `max`.
    ///
    /// ```no_run
    /// println!("{:?}", rcu_reclaim::sources::CgroupV2::for_this_process().unwrap().max().unwrap());
    /// ```
    pub fn max(&self) -> Result<Option<usize>, SourceError> {
        self.bytes("memory.max")
    }

    /// `memory.high`: the throttling limit, `None` for `max`.
    ///
    /// ```no_run
    /// println!("{:?}", rcu_reclaim::sources::CgroupV2::for_this_process().unwrap().high().unwrap());
    /// ```
    pub fn high(&self) -> Result<Option<usize>, SourceError> {
        self.bytes("memory.high")
    }

    /// The limit a budget should use: the lower of `memory.high` and
    /// `memory.max`, if either is set.
    ///
    /// ```no_run
    /// let cg = rcu_reclaim::sources::CgroupV2::for_this_process().unwrap();
    /// if let Some(limit) = cg.budget_limit().unwrap() {
    ///     println!("budget {limit} bytes");
    /// }
    /// ```
    pub fn budget_limit(&self) -> Result<Option<usize>, SourceError> {
        Ok(match (self.high()?, self.max()?) {
            (Some(h), Some(m)) => Some(h.min(m)),
            (h, m) => h.or(m),
        })
    }

    /// `memory.events` counters (high, max, oom, oom_kill...).
    ///
    /// ```no_run
    /// println!("{:?}", rcu_reclaim::sources::CgroupV2::for_this_process().unwrap().events().unwrap());
    /// ```
    pub fn events(&self) -> Result<MemoryEvents, SourceError> {
        MemoryEvents::read(self.dir.join("memory.events"))
    }

    /// A PSI trigger on this cgroup's `memory.pressure`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let cg = rcu_reclaim::sources::CgroupV2::for_this_process().unwrap();
    /// let _t = cg.pressure_trigger(Duration::from_millis(500), Duration::from_secs(2)).unwrap();
    /// ```
    pub fn pressure_trigger(
        &self,
        stall: Duration,
        window: Duration,
    ) -> Result<PsiTrigger, SourceError> {
        PsiTrigger::open(self.dir.join("memory.pressure"), stall, window)
    }
}

/// Watches a cgroup v2's `memory.events`: an increase of `high` is a
/// medium event (the cgroup is being throttled), of `max`, `oom` or
/// `oom_kill` a critical one. Polled every `interval`.
///
/// ```no_run
/// use std::time::Duration;
/// use rcu_reclaim::sources::{CgroupV2, CgroupV2Events, PressureSource};
/// let mut src = CgroupV2Events::new(CgroupV2::for_this_process().unwrap(), Duration::from_millis(100)).unwrap();
/// let _event = src.wait(Duration::from_secs(1)).unwrap();
/// ```
#[derive(Debug)]
pub struct CgroupV2Events {
    cgroup: CgroupV2,
    interval: Duration,
    last: MemoryEvents,
    next: Instant,
}

impl CgroupV2Events {
    /// Starts from the current counts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rcu_reclaim::sources::{CgroupV2, CgroupV2Events};
    /// if let Ok(cgroup) = CgroupV2::for_this_process() {
    ///     let events = CgroupV2Events::new(cgroup, Duration::from_millis(100));
    ///     println!("{events:?}");
    /// }
    /// ```
    pub fn new(cgroup: CgroupV2, interval: Duration) -> Result<Self, SourceError> {
        let last = cgroup.events()?;
        Ok(CgroupV2Events {
            cgroup,
            interval: interval.max(Duration::from_millis(1)),
            last,
            next: Instant::now(),
        })
    }
}

impl PressureSource for CgroupV2Events {
    fn describe(&self) -> String {
        format!(
            "cgroup v2 memory.events of {} every {:?}",
            self.cgroup.dir().display(),
            self.interval
        )
    }

    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
        let deadline = super::instant_after(timeout);
        loop {
            let now = Instant::now();
            if self.next > now {
                let nap = (self.next - now).min(deadline.saturating_duration_since(now));
                std::thread::sleep(nap);
                if Instant::now() < self.next {
                    return Ok(None);
                }
            }
            self.next = super::instant_after(self.interval);
            let e = self.cgroup.events()?;
            let was = std::mem::replace(&mut self.last, e);
            if e.max > was.max || e.oom > was.oom || e.oom_kill > was.oom_kill {
                return Ok(Some(Level::Critical));
            }
            if e.high > was.high {
                return Ok(Some(Level::Medium));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}
