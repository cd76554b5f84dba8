//! cgroup v1 usage thresholds: the kernel signals an eventfd when a memory
//! cgroup's usage crosses a value registered through its
//! `cgroup.event_control` (`"<eventfd> <fd of memory.usage_in_bytes>
//! <bytes>"`), upwards or downwards. It checks them every 128 pages charged
//! or uncharged on a CPU, so a crossing is seen within about half a MiB,
//! where a poll every 20 ms sees it up to 20 ms late: 30 MB at the
//! 1.5 GB/s a thread filling fresh memory reaches.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// Usage thresholds registered on one cgroup v1 memory directory, all
/// signalling the same eventfd (closing it unregisters them).
#[derive(Debug)]
pub(crate) struct UsageThresholds {
    event: OwnedFd,
}

impl UsageThresholds {
    /// Registers `marks` (bytes) on the cgroup whose v1 usage file is
    /// `usage_file` (`memory.usage_in_bytes`). The error says why not: not
    /// such a file, not on a cgroup file system, or `cgroup.event_control`
    /// not writable (a read-only mount, no permission).
    pub(crate) fn register(usage_file: &Path, marks: &[usize]) -> Result<Self, String> {
        if usage_file.file_name().and_then(|n| n.to_str()) != Some("memory.usage_in_bytes") {
            return Err(format!(
                "{}: not a cgroup v1 memory.usage_in_bytes",
                usage_file.display()
            ));
        }
        let usage = std::fs::File::open(usage_file)
            .map_err(|e| format!("{}: cannot open: {e}", usage_file.display()))?;
        if !crate::sys::on_kernel_fs(&usage) {
            return Err(format!(
                "{}: not on a cgroup file system",
                usage_file.display()
            ));
        }
        let control_path = usage_file.with_file_name("cgroup.event_control");
        // SAFETY: eventfd takes two integers and returns a new fd or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(format!(
                "eventfd failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(raw) };
        for mark in marks {
            // The kernel takes what it needs from the usage file's
            // descriptor while the line is written; the registration lasts
            // until the eventfd is closed.
            let line = format!("{} {} {mark}", event.as_raw_fd(), usage.as_raw_fd());
            std::fs::OpenOptions::new()
                .write(true)
                .open(&control_path)
                .and_then(|mut control| control.write_all(line.as_bytes()))
                .map_err(|e| format!("{}: registering {mark}: {e}", control_path.display()))?;
        }
        Ok(UsageThresholds { event })
    }

    /// The eventfd, readable once a threshold was crossed.
    pub(crate) fn fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    /// Whether a threshold was crossed since the last call (reads the
    /// eventfd's count, never waits).
    pub(crate) fn take(&self) -> bool {
        let mut count = 0u64;
        // SAFETY: reads at most 8 bytes into `count` from our nonblocking
        // eventfd; with no crossing it fails with EAGAIN and reads nothing.
        let n = unsafe { libc::read(self.fd(), (&mut count as *mut u64).cast(), 8) };
        n == 8 && count > 0
    }

    /// Waits up to `timeout` for a crossing; whether one came (consumed).
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        wait_readable(&[self.fd()], timeout) && self.take()
    }
}

/// Adds `also` (descriptors to wake on, see
/// [`PressureSource::wake_also_on`](super::PressureSource::wake_also_on))
/// to the end of a `poll(2)` set: when they alone are readable, the poll
/// returns and the source's wait ends with `Ok(None)`.
pub(crate) fn push_also(pfds: &mut Vec<libc::pollfd>, also: &[RawFd]) {
    pfds.extend(also.iter().map(|&fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }));
}

/// What a source does with [`PressureSource::wake_also_on`]'s argument:
/// `Some` adds a descriptor to `also` (once), `None` empties it.
///
/// [`PressureSource::wake_also_on`]: super::PressureSource::wake_also_on
pub(crate) fn set_also(also: &mut Vec<RawFd>, fd: Option<RawFd>) {
    match fd {
        Some(fd) if !also.contains(&fd) => also.push(fd),
        Some(_) => {}
        None => also.clear(),
    }
}

/// Waits up to `timeout` (in whole milliseconds, rounded up: a wait cut
/// short would look early) for a descriptor of `fds` to be readable;
/// whether one is. Reads none of them.
pub(crate) fn wait_readable(fds: &[RawFd], timeout: Duration) -> bool {
    let mut pfds = Vec::with_capacity(fds.len());
    push_also(&mut pfds, fds);
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds for the
    // duration of the call.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    n > 0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_a_v1_usage_file_on_a_cgroup_file_system_takes_thresholds() {
        let e = UsageThresholds::register(Path::new("/tmp/memory.current"), &[1]).unwrap_err();
        assert!(e.contains("not a cgroup v1 memory.usage_in_bytes"), "{e}");
        let dir = std::env::temp_dir().join(format!("rcu-reclaim-thr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let usage = dir.join("memory.usage_in_bytes");
        std::fs::write(&usage, "10\n").unwrap();
        let e = UsageThresholds::register(&usage, &[1]).unwrap_err();
        assert!(e.contains("not on a cgroup file system"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_poll_set_wakes_on_the_extra_descriptor() {
        // SAFETY: eventfd takes two integers and returns a new fd or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(raw >= 0);
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut pfds = Vec::new();
        push_also(&mut pfds, &[]);
        assert!(pfds.is_empty());
        push_also(&mut pfds, &[fd.as_raw_fd()]);
        assert_eq!(pfds.len(), 1);
        assert!(!wait_readable(&[fd.as_raw_fd()], Duration::ZERO));
        // SAFETY: a valid pollfd array of the length given.
        assert_eq!(unsafe { libc::poll(pfds.as_mut_ptr(), 1, 0) }, 0);
        let one = 1u64;
        // SAFETY: writes 8 bytes from `one` to our eventfd.
        assert_eq!(
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) },
            8
        );
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(pfds.as_mut_ptr(), 1, 0) }, 1);
        assert_eq!(pfds[0].revents, libc::POLLIN);
        assert!(wait_readable(&[fd.as_raw_fd()], Duration::ZERO));
    }
}
