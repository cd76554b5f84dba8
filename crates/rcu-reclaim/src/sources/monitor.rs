//! The pressure monitor: one thread that waits on a source and turns its
//! events into RCU fast mode (and a wake-up of the budget's reclaimer).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Level, PressureSource, PsiTrigger, RssSource, SourceError};
use crate::domain::Rcu;
use crate::reclaim::MemoryBudget;
use crate::sync::lock_std as lock;

/// Counters of a [`PressureMonitor`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MonitorStats {
    /// The source in use, as it describes itself.
    pub source: String,
    /// Events received.
    pub events: u64,
    /// Critical events among them.
    pub critical: u64,
    /// Times the pressure signal was raised (after a quiet spell).
    pub episodes: u64,
    /// Whether the monitor holds a pressure signal on RCU now.
    pub active: bool,
    /// Errors from the source (the monitor keeps retrying).
    pub errors: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    events: AtomicU64,
    critical: AtomicU64,
    episodes: AtomicU64,
    errors: AtomicU64,
    active: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// Runs a [`PressureSource`] in a thread: each event raises a pressure
/// signal on every node of the domain (fast mode) and, with a budget, wakes
/// its reclaimer; the signal ends after `quiet` passes without events.
///
/// ```
/// use std::time::Duration;
/// use rcu_reclaim::{Level, PressureMonitor, Rcu, SyntheticSource};
/// let rcu = Rcu::new(Default::default()).unwrap();
/// let (tx, source) = SyntheticSource::new();
/// let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(50), None);
/// tx.send(Level::Medium).unwrap();
/// while !rcu.in_fast_mode() {
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// drop(monitor); // stops the thread and ends the signal
/// ```
pub struct PressureMonitor {
    shared: Arc<Shared>,
    source: String,
    thread: Option<JoinHandle<()>>,
}

impl PressureMonitor {
    /// Starts the monitor thread on `source`.
    pub fn start(
        rcu: &Rcu,
        mut source: Box<dyn PressureSource>,
        quiet: Duration,
        budget: Option<Arc<MemoryBudget>>,
    ) -> PressureMonitor {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            events: AtomicU64::new(0),
            critical: AtomicU64::new(0),
            episodes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            active: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        let description = source.describe();
        tracing::info!(source = %description, "rcu-reclaim: pressure monitor started");
        let (s, rcu) = (shared.clone(), rcu.clone());
        let thread = thread::Builder::new()
            .name("rcu-pressure".into())
            .spawn(move || run(&s, &rcu, source.as_mut(), quiet, budget.as_deref()))
            .ok();
        PressureMonitor {
            shared,
            source: description,
            thread,
        }
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// # use std::time::Duration; use rcu_reclaim::*;
    /// let (_tx, src) = SyntheticSource::new();
    /// let m = PressureMonitor::start(Rcu::global(), Box::new(src), Duration::from_millis(10), None);
    /// assert_eq!(m.stats().source, "synthetic");
    /// ```
    pub fn stats(&self) -> MonitorStats {
        let s = &self.shared;
        MonitorStats {
            source: self.source.clone(),
            events: s.events.load(Ordering::Relaxed),
            critical: s.critical.load(Ordering::Relaxed),
            episodes: s.episodes.load(Ordering::Relaxed),
            active: s.active.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            last_error: lock(&s.last_error).clone(),
        }
    }
}

impl Drop for PressureMonitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for PressureMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PressureMonitor")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn run(
    s: &Shared,
    rcu: &Rcu,
    source: &mut dyn PressureSource,
    quiet: Duration,
    budget: Option<&MemoryBudget>,
) {
    let tick = quiet.clamp(Duration::from_millis(1), Duration::from_millis(100));
    let mut guard = None;
    let mut last = Instant::now();
    while !s.stop.load(Ordering::Relaxed) {
        match source.wait(tick) {
            Ok(Some(level)) => {
                s.events.fetch_add(1, Ordering::Relaxed);
                if level == Level::Critical {
                    s.critical.fetch_add(1, Ordering::Relaxed);
                }
                last = Instant::now();
                if guard.is_none() {
                    guard = Some(rcu.pressure_start_all());
                    s.episodes.fetch_add(1, Ordering::Relaxed);
                    s.active.store(true, Ordering::Relaxed);
                }
                if let Some(b) = budget {
                    b.check();
                }
            }
            Ok(None) => {}
            Err(e) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "rcu-reclaim: pressure source failed; retrying");
                *lock(&s.last_error) = Some(e.to_string());
                thread::sleep(tick);
            }
        }
        if guard.is_some() && last.elapsed() >= quiet {
            guard = None;
            s.active.store(false, Ordering::Relaxed);
        }
    }
    s.active.store(false, Ordering::Relaxed);
}

/// The one-line setup: a monitor on the global domain with the best source
/// available — a PSI trigger on `/proc/pressure/memory` (some 500 ms per
/// 2 s window), else an RSS poll every 100 ms against `rss_threshold`
/// bytes. The error names the file that failed, why, and the fallback.
///
/// ```no_run
/// let monitor = rcu_reclaim::auto_pressure(512 << 20).unwrap();
/// println!("watching {}", monitor.stats().source);
/// ```
#[cfg(not(loom))]
pub fn auto_pressure(rss_threshold: u64) -> Result<PressureMonitor, SourceError> {
    let source: Box<dyn PressureSource> = match PsiTrigger::open(
        "/proc/pressure/memory",
        Duration::from_millis(500),
        Duration::from_secs(2),
    ) {
        Ok(t) => Box::new(t),
        Err(mut e) => {
            let fallback = RssSource::new(rss_threshold, Duration::from_millis(100));
            e.fallback = Some(fallback.describe());
            tracing::warn!("rcu-reclaim: {e}");
            Box::new(fallback)
        }
    };
    Ok(PressureMonitor::start(
        Rcu::global(),
        source,
        Duration::from_secs(2),
        None,
    ))
}
