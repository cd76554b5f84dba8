//! Resident-set polling: the fallback that works everywhere.

use std::time::{Duration, Instant};

use super::parse::parse_statm;
use super::{Level, PressureSource, SourceError};

const STATM: &str = "/proc/self/statm";

/// Polls this process's RSS every `interval`; an event while it is above
/// `threshold` bytes (critical above the threshold plus an eighth).
///
/// ```
/// use std::time::Duration;
/// use rcu_reclaim::sources::{Level, PressureSource, RssSource};
/// let mut low = RssSource::new(1, Duration::from_millis(1)); // 1 byte: always over
/// assert_eq!(low.wait(Duration::from_millis(5)).unwrap(), Some(Level::Critical));
/// let mut high = RssSource::new(usize::MAX, Duration::from_millis(1));
/// assert_eq!(high.wait(Duration::from_millis(5)).unwrap(), None);
/// ```
#[derive(Debug)]
pub struct RssSource {
    threshold: usize,
    interval: Duration,
    page_size: u64,
    next: Instant,
    /// Descriptors that also end a wait (`PressureSource::wake_also_on`).
    also: Vec<std::os::fd::RawFd>,
}

impl RssSource {
    /// A source firing while RSS is above `threshold` bytes, read every `interval`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rcu_reclaim::sources::{Level, PressureSource, RssSource};
    /// // Fires at once: every process has more than 1 KiB resident.
    /// let mut source = RssSource::new(1024, Duration::from_millis(10));
    /// assert!(source.wait(Duration::from_millis(100)).unwrap().is_some());
    /// ```
    pub fn new(threshold: usize, interval: Duration) -> RssSource {
        RssSource {
            threshold,
            interval: interval.max(Duration::from_millis(1)),
            page_size: page_size(),
            next: Instant::now(),
            also: Vec::new(),
        }
    }

    /// Sleeps `d`, or until a descriptor of `also` is readable: then
    /// returns `true` early.
    fn nap(&self, d: Duration) -> bool {
        if self.also.is_empty() {
            std::thread::sleep(d);
            return false;
        }
        super::usage_thresholds::wait_readable(&self.also, d)
    }

    /// Current RSS in bytes (as [`rss_bytes`]).
    ///
    /// ```
    /// let s = rcu_reclaim::sources::RssSource::new(0, std::time::Duration::from_secs(1));
    /// assert!(s.rss().unwrap() > 0);
    /// ```
    pub fn rss(&self) -> Result<usize, SourceError> {
        read_rss(self.page_size)
    }
}

/// This process's resident memory in bytes, from `/proc/self/statm`: what
/// [`RssSource`] compares with its threshold, for code that wants to log
/// or check it without a pressure source.
///
/// ```
/// let before = rcu_reclaim::sources::rss_bytes().unwrap();
/// let block = vec![1u8; 32 << 20]; // touched: resident
/// assert!(rcu_reclaim::sources::rss_bytes().unwrap() >= before + (16 << 20));
/// drop(block);
/// ```
pub fn rss_bytes() -> Result<usize, SourceError> {
    read_rss(page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).unwrap_or(4096)
}

fn read_rss(page_size: u64) -> Result<usize, SourceError> {
    let text = std::fs::read_to_string(STATM)
        .map_err(|e| SourceError::new(STATM, format!("cannot read: {e}")))?;
    let bytes =
        parse_statm(&text, page_size).map_err(|e| SourceError::new(STATM, e.to_string()))?;
    Ok(super::bytes_usize(bytes))
}

impl PressureSource for RssSource {
    fn describe(&self) -> String {
        format!(
            "RSS poll of {STATM} every {:?} against {} bytes",
            self.interval, self.threshold
        )
    }

    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
        let now = Instant::now();
        if self.next > now {
            let nap = (self.next - now).min(timeout);
            if self.nap(nap) || nap < self.next - now {
                return Ok(None);
            }
        }
        self.next = super::instant_after(self.interval);
        let rss = self.rss()?;
        Ok(if rss > self.threshold.saturating_add(self.threshold / 8) {
            Some(Level::Critical)
        } else if rss > self.threshold {
            Some(Level::Medium)
        } else {
            None
        })
    }

    fn wake_also_on(&mut self, fd: Option<std::os::fd::RawFd>) -> bool {
        super::usage_thresholds::set_also(&mut self.also, fd);
        true
    }
}
