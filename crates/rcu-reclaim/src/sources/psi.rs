//! PSI triggers (`Documentation/accounting/psi.rst`): write
//! `some <stall_us> <window_us>` to a pressure file, then `poll(POLLPRI)`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Level, PressureSource, PsiStats, SourceError};

/// A PSI trigger: an event whenever tasks stall on memory for `stall` within
/// a `window`.
///
/// ```no_run
/// use std::time::Duration;
/// use rcu_reclaim::sources::{PressureSource, PsiTrigger};
/// let mut t = PsiTrigger::open("/proc/pressure/memory", Duration::from_millis(150), Duration::from_secs(1)).unwrap();
/// println!("using {}", t.describe()); // the window may have been widened to 2 s
/// let _event = t.wait(Duration::from_secs(1)).unwrap();
/// ```
#[derive(Debug)]
pub struct PsiTrigger {
    file: File,
    path: PathBuf,
    stall: Duration,
    window: Duration,
    /// Descriptors that also end a wait (`PressureSource::wake_also_on`).
    also: Vec<std::os::fd::RawFd>,
}

fn write_trigger(path: &Path, stall: Duration, window: Duration) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !crate::sys::on_kernel_fs(&file) {
        return Err(std::io::Error::other(
            "not a file of /proc or of a cgroup file system (nothing was written): a PSI \
             trigger goes to /proc/pressure/memory or a cgroup v2 memory.pressure",
        ));
    }
    let spec = format!("some {} {}\0", stall.as_micros(), window.as_micros());
    file.write_all(spec.as_bytes())?;
    Ok(file)
}

/// The longest window the kernel accepts for a PSI trigger.
const PSI_MAX_WINDOW: Duration = Duration::from_secs(10);

/// What windows the kernel accepts, for messages.
const PSI_WINDOWS: &str = "the kernel accepts windows of 500 ms to 10 s (whole multiples of 2 s \
                           without CAP_SYS_RESOURCE, and on some kernels even with it)";

impl PsiTrigger {
    /// Opens `path` and registers the trigger. Where the kernel refuses the
    /// window with EINVAL (unprivileged triggers need a multiple of 2 s; on
    /// some machines even root is refused 1 s), retries once with the
    /// window rounded up to the next multiple of 2 s and the stall scaled to
    /// the same share; [`describe`](PressureSource::describe) reports the
    /// window in use. A window over 10 s (the kernel's limit) is an error,
    /// and so is a file other than a memory pressure file (`memory` or
    /// `memory.pressure`): the trigger is written into it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rcu_reclaim::sources::{PressureSource, PsiTrigger};
    /// // 100 ms of stall within 2 s; without PSI (or the right to register), the
    /// // error names the file and the fix.
    /// match PsiTrigger::open("/proc/pressure/memory", Duration::from_millis(100), Duration::from_secs(2)) {
    ///     Ok(trigger) => println!("watching {}", trigger.describe()),
    ///     Err(e) => println!("no PSI trigger: {e}"),
    /// }
    /// ```
    pub fn open(
        path: impl AsRef<Path>,
        stall: Duration,
        window: Duration,
    ) -> Result<Self, SourceError> {
        let path = path.as_ref().to_path_buf();
        // The trigger is written into the file: memory pressure files
        // alone. The kernel's other pressure files take the same triggers,
        // but their stalls are not memory's (a monitor on one would report
        // CPU, I/O or IRQ pressure as memory pressure); into any other
        // kernel file it would be a write with effects of its own (a cgroup
        // v1 `memory.force_empty` emptied the cgroup's page cache, and
        // `open` then succeeded).
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let wrong = match name {
            "memory" | "memory.pressure" => None,
            "cpu" | "io" | "irq" | "cpu.pressure" | "io.pressure" | "irq.pressure" => {
                Some(format!("{name} is a pressure file for another resource"))
            }
            _ => Some("not a memory pressure file (a PSI trigger is written into it)".into()),
        };
        if let Some(wrong) = wrong {
            return Err(SourceError::new(
                &path,
                format!("{wrong}: give /proc/pressure/memory or a cgroup v2 memory.pressure"),
            ));
        }
        if stall.is_zero() || stall > window {
            return Err(SourceError::new(
                &path,
                format!("a PSI trigger needs 0 < stall <= window (got {stall:?} in {window:?})"),
            ));
        }
        if window > PSI_MAX_WINDOW {
            return Err(SourceError::new(
                &path,
                format!("the kernel refuses a PSI window of {window:?}: {PSI_WINDOWS}"),
            ));
        }
        match write_trigger(&path, stall, window) {
            Ok(file) => Ok(PsiTrigger {
                file,
                path,
                stall,
                window,
                also: Vec::new(),
            }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let secs = window.as_secs_f64().max(2.0);
                let widened = Duration::from_secs(((secs / 2.0).ceil() as u64) * 2);
                let scaled = stall.mul_f64(widened.as_secs_f64() / window.as_secs_f64());
                match write_trigger(&path, scaled, widened) {
                    Ok(file) => {
                        tracing::info!(
                            path = %path.display(),
                            "rcu-reclaim: PSI window {window:?} refused, using {widened:?} (stall {scaled:?})"
                        );
                        Ok(PsiTrigger {
                            file,
                            path,
                            stall: scaled,
                            window: widened,
                            also: Vec::new(),
                        })
                    }
                    Err(e2) => Err(SourceError::new(
                        &path,
                        format!(
                            "trigger refused for window {window:?} ({e}) and {widened:?} ({e2}); \
                             {PSI_WINDOWS}"
                        ),
                    )),
                }
            }
            Err(e) => Err(SourceError::new(
                &path,
                format!("cannot register a PSI trigger: {e}{}", psi_fix(&e)),
            )),
        }
    }

    /// The window in use (possibly widened from the one asked for).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let t = rcu_reclaim::sources::PsiTrigger::open("/proc/pressure/memory", Duration::from_millis(500), Duration::from_secs(2)).unwrap();
    /// assert_eq!(t.window(), Duration::from_secs(2));
    /// ```
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// The fix to name when a PSI file cannot be opened: a missing file is
/// a wrong path or a kernel without PSI; a refused one, missing rights.
fn psi_fix(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound {
        " (no such file: give /proc/pressure/memory, or the memory.pressure file of a cgroup v2 \
         directory under /sys/fs/cgroup; a kernel built without PSI, or booted with psi=0, has \
         neither)"
    } else {
        super::io_fix(e)
    }
}

impl PressureSource for PsiTrigger {
    fn psi(&self) -> Option<PsiStats> {
        PsiStats::parse(&std::fs::read_to_string(&self.path).ok()?).ok()
    }

    fn describe(&self) -> String {
        format!(
            "PSI trigger on {} (some {:?} per {:?})",
            self.path.display(),
            self.stall,
            self.window
        )
    }

    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
        let mut pfds = vec![libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        }];
        // After the trigger's own descriptor (`pfds[0]`, checked below).
        super::usage_thresholds::push_also(&mut pfds, &self.also);
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds for the
        // duration of the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(SourceError::new(&self.path, format!("poll failed: {e}")));
        }
        if n == 0 {
            return Ok(None);
        }
        let own = pfds[0].revents;
        if own & libc::POLLERR != 0 {
            return Err(SourceError::new(
                &self.path,
                "the trigger file went away (POLLERR)",
            ));
        }
        // The extra descriptor alone: `Ok(None)` early, its owner reads it.
        Ok((own & libc::POLLPRI != 0).then_some(Level::Medium))
    }

    fn wake_also_on(&mut self, fd: Option<std::os::fd::RawFd>) -> bool {
        super::usage_thresholds::set_also(&mut self.also, fd);
        true
    }
}
