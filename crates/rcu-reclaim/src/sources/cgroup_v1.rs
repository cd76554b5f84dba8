//! cgroup v1 memory controller: usage and limit files, and
//! `memory.pressure_level` notifications through `cgroup.event_control`
//! and eventfds (`Documentation/admin-guide/cgroup-v1/memory.rst`, 11).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::counter_file::CounterFile;
use super::parse::{parse_cgroup_bytes, CgroupPaths};
use super::{Level, PressureSource, SourceError};

/// Where the v1 memory hierarchy is mounted on common systems.
///
/// ```
/// assert_eq!(rcu_reclaim::sources::V1_MEMORY_ROOT, "/sys/fs/cgroup/memory");
/// ```
pub const V1_MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

/// Pressure-level events of a cgroup v1 memory cgroup.
///
/// ```no_run
/// use std::time::Duration;
/// use rcu_reclaim::sources::{CgroupV1Source, PressureSource};
/// let mut src = CgroupV1Source::for_this_process().unwrap();
/// println!("{} (limit {:?})", src.describe(), src.limit().unwrap());
/// let _event = src.wait(Duration::from_millis(100)).unwrap();
/// ```
#[derive(Debug)]
pub struct CgroupV1Source {
    dir: PathBuf,
    /// `memory.usage_in_bytes`, kept open: a budget reads it per check.
    usage: CounterFile,
    /// One eventfd per level, in `Level` order.
    fds: Vec<(Level, OwnedFd)>,
    /// Descriptors that also end a wait (`PressureSource::wake_also_on`).
    also: Vec<std::os::fd::RawFd>,
}

/// A cgroup byte-count file (a number, or no limit), or the error naming it.
pub(crate) fn read_bytes(path: &Path) -> Result<Option<u64>, SourceError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SourceError::new(path, format!("cannot read: {e}")))?;
    parse_cgroup_bytes(&text).map_err(|e| SourceError::new(path, e.to_string()))
}

impl CgroupV1Source {
    /// The memory cgroup this process is in, from `/proc/self/cgroup`.
    ///
    /// ```
    /// match rcu_reclaim::sources::CgroupV1Source::for_this_process() {
    ///     Ok(source) => println!("{source:?}"),
    ///     Err(e) => println!("no cgroup v1 memory controller: {e}"), // names the file
    /// }
    /// ```
    pub fn for_this_process() -> Result<Self, SourceError> {
        let paths = CgroupPaths::for_this_process()?;
        let rel = paths.v1_memory.ok_or_else(|| {
            SourceError::new(
                "/proc/self/cgroup",
                "the process is in no cgroup v1 memory hierarchy",
            )
        })?;
        Self::open(Path::new(V1_MEMORY_ROOT).join(rel.trim_start_matches('/')))
    }

    /// Registers low, medium and critical notifications on the memory
    /// cgroup directory `dir`.
    ///
    /// ```
    /// use rcu_reclaim::sources::{CgroupV1Source, V1_MEMORY_ROOT};
    /// // The root memory cgroup takes no pressure-level notifications on some
    /// // kernels: the error says which file refused.
    /// match CgroupV1Source::open(V1_MEMORY_ROOT) {
    ///     Ok(source) => println!("{source:?}"),
    ///     Err(e) => println!("{e}"),
    /// }
    /// ```
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SourceError> {
        let dir = dir.into();
        let level_path = dir.join("memory.pressure_level");
        let control_path = dir.join("cgroup.event_control");
        let level_file = File::open(&level_path).map_err(|e| {
            SourceError::new(
                &level_path,
                format!(
                    "cannot open: {e} (is {} a cgroup v1 memory directory? they lie under {})",
                    dir.display(),
                    V1_MEMORY_ROOT
                ),
            )
        })?;
        if !crate::sys::on_kernel_fs(&level_file) {
            return Err(SourceError::new(
                &level_path,
                "not a file of a cgroup file system (nothing was written): give a cgroup v1 \
                 memory directory",
            ));
        }
        let mut fds = Vec::new();
        for (level, name) in [
            (Level::Low, "low"),
            (Level::Medium, "medium"),
            (Level::Critical, "critical"),
        ] {
            // SAFETY: eventfd takes two integers and returns a new fd or -1.
            let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if raw < 0 {
                return Err(SourceError::new(
                    &control_path,
                    format!("eventfd failed: {}", std::io::Error::last_os_error()),
                ));
            }
            // SAFETY: `raw` is a fresh descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let line = format!("{} {} {name}", fd.as_raw_fd(), level_file.as_raw_fd());
            let mut control = std::fs::OpenOptions::new()
                .write(true)
                .open(&control_path)
                .map_err(|e| {
                    SourceError::new(
                        &control_path,
                        format!("cannot open: {e}{}", super::io_fix(&e)),
                    )
                })?;
            control.write_all(line.as_bytes()).map_err(|e| {
                SourceError::new(
                    &control_path,
                    format!(
                        "registering {name} notifications failed: {e}{}",
                        super::io_fix(&e)
                    ),
                )
            })?;
            fds.push((level, fd));
        }
        let usage = CounterFile::new(dir.join("memory.usage_in_bytes"));
        Ok(CgroupV1Source {
            dir,
            usage,
            fds,
            also: Vec::new(),
        })
    }

    /// `memory.usage_in_bytes`. The file is kept open after the first
    /// call and read with `pread` (about half a microsecond, against
    /// several for an open, read and close), so a budget may read it on
    /// every check.
    ///
    /// ```no_run
    /// let src = rcu_reclaim::sources::CgroupV1Source::for_this_process().unwrap();
    /// println!("{} bytes", src.usage().unwrap());
    /// ```
    pub fn usage(&self) -> Result<usize, SourceError> {
        Ok(self.usage.read()?.map_or(usize::MAX, super::bytes_usize))
    }

    /// `memory.limit_in_bytes`, or `None` for no limit.
    ///
    /// ```no_run
    /// let src = rcu_reclaim::sources::CgroupV1Source::for_this_process().unwrap();
    /// println!("{:?}", src.limit().unwrap());
    /// ```
    pub fn limit(&self) -> Result<Option<usize>, SourceError> {
        Ok(read_bytes(&self.dir.join("memory.limit_in_bytes"))?.map(super::bytes_usize))
    }
}

impl PressureSource for CgroupV1Source {
    fn describe(&self) -> String {
        format!("cgroup v1 memory.pressure_level of {}", self.dir.display())
    }

    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
        let mut pfds: Vec<libc::pollfd> = self
            .fds
            .iter()
            .map(|(_, fd)| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // After the levels' descriptors, which the loop below zips with.
        super::usage_thresholds::push_also(&mut pfds, &self.also);
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds for the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(SourceError::new(&self.dir, format!("poll failed: {e}")));
        }
        let mut worst = None;
        for (p, (level, fd)) in pfds.iter().zip(&self.fds) {
            if p.revents & libc::POLLIN != 0 {
                let mut count = 0u64;
                // SAFETY: reads 8 bytes into `count` from our eventfd; a
                // failed read (EAGAIN) leaves it untouched.
                unsafe { libc::read(fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
                worst = worst.max(Some(*level));
            }
        }
        // Removing the cgroup signals every registered eventfd: not
        // pressure, and no event will follow.
        if worst.is_some() && !self.dir.join("memory.pressure_level").exists() {
            return Err(SourceError::new(
                &self.dir,
                "the cgroup was removed: no more pressure notifications come from it; watch \
                 the cgroup the process is in now (CgroupV1Source::for_this_process)",
            ));
        }
        Ok(worst)
    }

    fn wake_also_on(&mut self, fd: Option<std::os::fd::RawFd>) -> bool {
        super::usage_thresholds::set_also(&mut self.also, fd);
        true
    }
}
