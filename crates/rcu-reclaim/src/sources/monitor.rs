//! The pressure monitor: one thread that waits on a source and turns its
//! events into RCU fast mode (and a wake-up of the budget's reclaimer).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{Level, PressureSource, SourceError};
use crate::domain::Rcu;
use crate::pressure::{NodeMask, PressureGuard};
use crate::reclaim::{MemoryBudget, Reclaimer};
use crate::sync::lock_std as lock;

/// Live caches that registered no shrinker (no budget, reclaimer or
/// pressure source; counted by the cache, a layer above): no pressure
/// monitor can shrink them, which a monitor with nothing to shrink says at
/// its first critical event, only while one exists (a program with no such
/// cache has nothing to be told).
pub(crate) static UNSHRUNK_CACHES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Counters of a [`PressureMonitor`].
///
/// ```
/// use std::time::Duration;
/// use rcu_reclaim::sources::{Level, PressureMonitor, SyntheticSource};
/// let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new()).unwrap();
/// let (events, source) = SyntheticSource::new();
/// let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(50), None);
/// events.send(Level::Critical).unwrap();
/// while monitor.stats().critical == 0 {
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// assert_eq!(monitor.stats().source, "synthetic");
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
    /// Errors from the source, and panics in it or in the reclaim its
    /// events run (the monitor keeps retrying).
    pub errors: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// The source's PSI averages, read at each quiet tick (PSI sources).
    pub psi: Option<super::PsiStats>,
    /// Sources tried before the one in use, and why each was passed over.
    pub passed_over: Vec<String>,
}

struct Shared {
    stop: AtomicBool,
    events: AtomicU64,
    critical: AtomicU64,
    episodes: AtomicU64,
    errors: AtomicU64,
    active: AtomicBool,
    last_error: Mutex<Option<String>>,
    psi: Mutex<Option<super::PsiStats>>,
    passed_over: Mutex<Vec<String>>,
    /// The pressure signal the thread holds, here rather than on its
    /// stack so that a forked child, where the thread does not exist, can
    /// still end it when it drops the monitor.
    guard: Mutex<Option<PressureGuard>>,
    /// What the thread's events act on (its handle of the domain, the
    /// budget and reclaimer linked), held locked while an event runs.
    /// Here, not on the thread's stack, for the same reason: a forked
    /// child lets go of them when it drops the monitor (before, the
    /// thread's handle of the domain counted there for ever, so the
    /// child's last handle of it ran none of its callbacks).
    links: Mutex<Option<Links>>,
    /// An eventfd the source also wakes on, if it can
    /// (`PressureSource::wake_also_on`): the drop writes it, so the thread
    /// stops at once rather than at the end of its wait (25 ms on average,
    /// up to 100 ms, without it). Here, not in the thread, so it stays open as
    /// long as either side may use it.
    waker: Option<OwnedFd>,
    /// The thread has stopped watching and let go of the domain, the
    /// links and a source of the caller's: it only drops one of the
    /// library's sources now (one that took the waker), which takes the
    /// kernel 10–20 ms for a PSI trigger (its removal waits for an RCU
    /// grace period of the kernel's), and which the drop does not wait for.
    ran: AtomicBool,
}

/// Monitor threads whose monitor's drop has returned while they still
/// close one of the library's sources (a PSI trigger's close waits for a
/// kernel grace period: 10–50 ms).
static CLOSING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// At most this many monitor threads are left closing a source after their
/// monitors' drops returned; a drop beyond it waits for its thread's close.
const CLOSING_MAX: usize = 4;

/// A monitor thread's place among the [`CLOSING`] ones, left as it drops.
struct Closing;

impl Closing {
    fn enter() -> Closing {
        CLOSING.fetch_add(1, Ordering::AcqRel);
        Closing
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        CLOSING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A new eventfd that `source` wakes on, if it can.
fn waker_for(source: &mut dyn PressureSource) -> Option<OwnedFd> {
    // SAFETY: eventfd takes two integers and returns a new descriptor or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // A source of the caller's that panics here wakes on nothing: the
    // monitor starts all the same, as it goes on past a panicking wait.
    let took = crate::sync::catch_panic(|| source.wake_also_on(Some(fd.as_raw_fd())));
    took.unwrap_or(false).then_some(fd)
}

/// Makes a monitor's waker readable: the source's wait ends.
fn wake(waker: &OwnedFd) {
    let one = 1u64;
    // SAFETY: writes the 8 bytes of `one` to an eventfd the caller keeps
    // open. It can only fail with the counter at its maximum, when the
    // descriptor is readable anyway.
    unsafe { libc::write(waker.as_raw_fd(), std::ptr::from_ref(&one).cast(), 8) };
}

/// Runs a [`PressureSource`] in a thread: each event raises a pressure
/// signal on every node of the domain (fast mode) and, with a budget, wakes
/// its reclaimer ([`MemoryBudget::check`]); with a budget, a medium event
/// also runs one pass of the budget's shrinkers at priority 4 (an eighth
/// of each cache) and a critical one at priority 2 (half), see
/// [`Reclaimer::shrink`]: the machine is short of memory even when the
/// budget is not. Then a medium event runs RCU's ready callbacks at
/// priority 6 and a critical one drains the backlog (priority 0), and
/// either gives the allocator's free pages back to the kernel (glibc's
/// `malloc_trim`, at most every 100 ms; freed memory stays charged to the
/// process until then). The signal ends after `quiet` passes without
/// events.
///
/// ```
/// use std::time::Duration;
/// use rcu_reclaim::Rcu;
/// use rcu_reclaim::sources::{Level, PressureMonitor, SyntheticSource};
/// let rcu = Rcu::new(Default::default()).unwrap();
/// let (tx, source) = SyntheticSource::new();
/// let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(50), None);
/// tx.send(Level::Medium).unwrap();
/// while !rcu.in_fast_mode() {
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// drop(monitor); // stops the thread and ends the signal
/// ```
///
/// In a child process created by `fork()` the monitor's thread does not
/// exist: the monitor watches nothing there. Dropping it ends the signal it
/// held at the fork and lets go of the thread's handle of the domain (so
/// the child's last handle still runs the domain's callbacks); start a new
/// monitor in the child to keep watching. The source stays with the
/// thread: in a child, a source of your own that holds a handle of the
/// domain keeps it for good (the child's last other handle then runs no
/// callbacks), so a program that forks gives its sources none.
///
/// Dropping the monitor stops it, so one that is not kept watches nothing:
/// bind it (`let _monitor = ...`, not `let _ = ...`) for as long as it
/// should watch. The drop stops the monitor's thread, which sees the stop
/// when its source's wait returns: at once for the library's sources
/// ([`PsiTrigger`](super::PsiTrigger), [`CgroupV1Source`](super::CgroupV1Source), [`RssSource`](super::RssSource) and
/// [`auto_pressure`](super::auto_pressure)'s, whose waits also end on a descriptor the drop
/// writes); for a source of yours (or a
/// [`SyntheticSource`](super::SyntheticSource)), after at most `quiet`,
/// clamped between 1 ms and 100 ms. A source of yours is dropped before
/// the drop returns; one of the library's may be closed just after, on
/// the thread, which then ends (closing a PSI trigger takes the kernel
/// 10–50 ms). At most four such threads, each with its source's
/// descriptors, are left closing at once: beyond that a drop waits for its
/// own thread's close, so monitors made and dropped in a loop do not pile
/// up threads. That holds for a cache built with
/// [`RcuCacheBuilder::auto_pressure`](crate::RcuCacheBuilder::auto_pressure)
/// or [`pressure_source`](crate::RcuCacheBuilder::pressure_source) too (the
/// cache's drop drops its monitor); a program with many caches can still
/// build them with one [`budget`](crate::RcuCacheBuilder::budget) and no
/// monitor of their own, and start one with [`auto_pressure_for`](super::auto_pressure_for), for one
/// thread in all. An event may be running shrinkers, which may wait for a
/// lock the dropping thread holds: the join waits one second at most, then
/// leaves the thread to stop on its own, and says so. A call whose
/// monitor is thrown away is warned about:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// rcu_reclaim::sources::auto_pressure(512 << 20); // error: stopped at once
/// ```
#[must_use = "the monitor stops when it is dropped: keep it (`let _monitor = ...`, not \
              `let _ = ...`, which drops it at once) for as long as it should watch"]
pub struct PressureMonitor {
    shared: Arc<Shared>,
    /// The process that started the thread (a forked child has none).
    pid: u32,
    source: String,
    rcu: Rcu,
    thread: Option<JoinHandle<()>>,
}

impl PressureMonitor {
    /// Starts the monitor thread on `source`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rcu_reclaim::sources::{Level, PressureMonitor, SyntheticSource};
    /// let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new()).unwrap();
    /// let (events, source) = SyntheticSource::new();
    /// // Pressure holds while events come, and 50 ms after the last.
    /// let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(50), None);
    /// events.send(Level::Medium).unwrap();
    /// while monitor.stats().events == 0 {
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// drop(monitor); // stops the thread and ends the signal
    /// assert_eq!(rcu.pressure(), 0);
    /// ```
    pub fn start(
        rcu: &Rcu,
        source: Box<dyn PressureSource>,
        quiet: Duration,
        budget: Option<Arc<MemoryBudget>>,
    ) -> PressureMonitor {
        let reclaimer = budget.as_ref().map(|b| b.reclaimer().clone());
        Self::start_linked(rcu, source, quiet, budget, reclaimer)
    }

    /// As [`start`](PressureMonitor::start), shrinking `reclaimer`'s
    /// shrinkers on events (with or without a budget).
    pub(crate) fn start_linked(
        rcu: &Rcu,
        mut source: Box<dyn PressureSource>,
        quiet: Duration,
        budget: Option<Arc<MemoryBudget>>,
        reclaimer: Option<Arc<Reclaimer>>,
    ) -> PressureMonitor {
        let waker = waker_for(source.as_mut());
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            events: AtomicU64::new(0),
            critical: AtomicU64::new(0),
            episodes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            active: AtomicBool::new(false),
            last_error: Mutex::new(None),
            psi: Mutex::new(None),
            passed_over: Mutex::new(Vec::new()),
            guard: Mutex::new(None),
            links: Mutex::new(Some(Links {
                rcu: rcu.clone(),
                budget,
                reclaimer,
            })),
            waker,
            ran: AtomicBool::new(false),
        });
        let description = crate::sync::catch_panic(|| source.describe())
            .unwrap_or_else(|_| "a pressure source (its describe() panicked)".into());
        tracing::info!(source = %description, "rcu-reclaim: pressure monitor started");
        let (s, name) = (shared.clone(), description.clone());
        let thread = crate::sys::spawn_quiet(
            thread::Builder::new().name("rcu-pressure".into()),
            move || {
                run(&s, (source.as_mut(), &name), quiet);
                // Out of the lock first: the last handle's drop may run
                // the domain's callbacks.
                let links = lock(&s.links).take();
                drop(links);
                // Only the library's sources take the waker (the trait's
                // method for it is hidden), and only theirs are dropped
                // after the drop returns. A source of the caller's may
                // hold what the caller counts on being gone once the
                // monitor is (a handle of the domain, whose last one runs
                // its callbacks and deferred drops): it goes first, as it
                // did when the drop joined the thread.
                let source = match s.waker {
                    Some(_) => Some(source),
                    None => {
                        drop(source);
                        None
                    }
                };
                // Counted as closing before `ran` is seen: a drop that
                // sees `ran` sees this thread among the closing ones.
                let closing = source.is_some().then(Closing::enter);
                s.ran.store(true, Ordering::Release);
                drop(source);
                drop(s); // the waker's descriptor, unless the monitor holds it still
                drop(closing);
            },
        );
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                // No thread, no events: say so where the monitor reports.
                let text = format!(
                    "cannot start the monitor thread (rcu-pressure): {e}; no pressure events \
                     are watched (raise the process or thread limit, e.g. RLIMIT_NPROC, and \
                     start the monitor again)"
                );
                crate::sys::error_loud(&format!("rcu-reclaim: {text}"));
                shared.errors.store(1, Ordering::Relaxed);
                *lock(&shared.last_error) = Some(text);
                None
            }
        };
        PressureMonitor {
            shared,
            pid: std::process::id(),
            source: description,
            rcu: rcu.clone(),
            thread,
        }
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// # use std::time::Duration; use rcu_reclaim::{pressure::*, reclaim::*, sources::*, stats::*, *};
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
            last_error: self.read(&s.last_error).flatten(),
            psi: self.read(&s.psi).flatten(),
            passed_over: self.read(&s.passed_over).unwrap_or_default(),
        }
    }

    /// A copy of what `m` holds. In a forked child (where the monitor's
    /// thread does not exist) a lock that thread held at the fork stays
    /// held for ever: there the copy is taken only if the lock is free,
    /// else `None`, so `stats` never blocks.
    fn read<T: Clone>(&self, m: &Mutex<T>) -> Option<T> {
        if std::process::id() == self.pid {
            return Some(lock(m).clone());
        }
        try_lock_in_child(m).map(|v| v.clone())
    }
}

impl PressureMonitor {
    /// Lists the sources passed over for this one ([`MonitorStats::passed_over`]).
    pub(super) fn set_passed_over(&self, passed_over: Vec<String>) {
        *lock(&self.shared.passed_over) = passed_over;
    }
}

impl Drop for PressureMonitor {
    fn drop(&mut self) {
        // SeqCst, before `end_signal` below takes the lock: the thread
        // either sees the stop after it starts a signal, or its signal is
        // there to be taken (see `run`).
        self.shared.stop.store(true, Ordering::SeqCst);
        let Some(t) = self.thread.take() else { return };
        if std::process::id() == self.pid {
            // Not in a forked child: the descriptor is shared with the
            // parent, whose monitor it would wake for good.
            if let Some(waker) = &self.shared.waker {
                wake(waker);
            }
            // Done once the thread only closes a library source, unless
            // more than `CLOSING_MAX` threads already do: then wait for
            // this one's close too, so that monitors made and dropped in a
            // loop leave at most that many threads and descriptors behind.
            let done = || {
                self.shared.ran.load(Ordering::Acquire)
                    && CLOSING.load(Ordering::Acquire) <= CLOSING_MAX
            };
            // Past the wait, a thread done with the program's code is only
            // closing its source: say so, not that the program's code
            // holds it.
            let slow = |waited: Duration| {
                self.shared.ran.load(Ordering::Acquire).then(|| {
                    format!(
                        "rcu-reclaim: waited {waited:?} for the rcu-pressure thread of a dropped \
                         PressureMonitor to close its pressure source, as {} other monitors' \
                         threads were still closing theirs (the kernel is slow to close them: \
                         PSI triggers, cgroup event files); it is left to finish on its own. \
                         Monitors made and dropped in a loop wait for this; keep one monitor \
                         for the program's life instead",
                        CLOSING.load(Ordering::Acquire).saturating_sub(1)
                    )
                })
            };
            self.rcu.join_helper_until(t, "rcu-pressure", done, slow);
            // Not joined (dropped in a callback, a read-side section, or on
            // the thread itself): the thread stops at its next look (at
            // once where its source took the waker, else up to a tick
            // later); its signal ends now, so a pressure signal never
            // outlives its monitor.
            end_signal(&self.shared);
            return;
        }
        // A forked child: the thread stayed in the parent, and joining
        // (or detaching) its handle here would act on a thread that does
        // not exist. End the signal it held, unless it was updating it at
        // the fork (the lock is then held for ever).
        std::mem::forget(t);
        let links = match try_lock_in_child(&self.shared.links) {
            Some(mut l) => l.take(),
            None => {
                crate::sys::warn_loud(
                    "rcu-reclaim: a pressure monitor dropped in a forked child could not let go \
                     of its thread's handle of the domain (its thread was running an event at \
                     the fork): the child's last handle of the domain will not run its callbacks",
                );
                None
            }
        };
        drop(links);
        let guard = match try_lock_in_child(&self.shared.guard) {
            Some(mut g) => g.take(),
            None => {
                crate::sys::warn_loud(
                    "rcu-reclaim: a pressure monitor dropped in a forked child could not end \
                     its pressure signal (its thread was updating it at the fork)",
                );
                None
            }
        };
        drop(guard);
        self.shared.active.store(false, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for PressureMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PressureMonitor")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What a monitor's events act on: the domain, and a budget and a
/// reclaimer if linked.
struct Links {
    rcu: Rcu,
    budget: Option<Arc<MemoryBudget>>,
    reclaimer: Option<Arc<Reclaimer>>,
}

/// `source`: the source and its description (taken once, at the start).
fn run(s: &Shared, (source, name): (&mut dyn PressureSource, &str), quiet: Duration) {
    let tick = quiet.clamp(Duration::from_millis(1), Duration::from_millis(100));
    // Whether this thread holds the signal in `s.guard`.
    let mut held = false;
    let mut last = Instant::now();
    // Errors in a row: each retry waits twice as long (up to
    // `ERROR_BACKOFF_MAX`), and only the first of a run, or a new
    // message, is logged as a warning.
    let mut failing = 0u32;
    let mut last_trim = Instant::now() - TRIM_EVERY;
    // Bytes evicted and freed since the last trim.
    let mut freed_since_trim = 0usize;
    // A monitor with no budget or reclaimer shrinks nothing: said once, at
    // its first critical event while a cache exists that nothing shrinks
    // (a program of cells and maps alone has no cache to be told about).
    let mut told_bare = lock(&s.links)
        .as_ref()
        .is_some_and(|l| l.budget.is_some() || l.reclaimer.is_some());
    while !s.stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        // A source of the caller's that panics is a failing source: the
        // thread goes on (with the backoff), and the signal it holds ends
        // after `quiet` as usual instead of lasting as long as the monitor.
        let result = crate::sync::catch_panic(|| source.wait(tick)).unwrap_or_else(|msg| {
            Err(SourceError::new(
                name,
                format!(
                    "the source panicked: {}",
                    msg.as_deref().unwrap_or("(no message)")
                ),
            ))
        });
        if result.is_ok() {
            failing = 0;
        }
        match result {
            Ok(Some(level)) => {
                // Held while the event runs (see `Shared::links`).
                let links = lock(&s.links);
                let Some(link) = links.as_ref() else { break };
                let rcu = &link.rcu;
                s.events.fetch_add(1, Ordering::Relaxed);
                if level == Level::Critical {
                    s.critical.fetch_add(1, Ordering::Relaxed);
                    if !told_bare && UNSHRUNK_CACHES.load(Ordering::Relaxed) > 0 {
                        told_bare = true;
                        crate::sys::warn_loud(&format!(
                            "rcu-reclaim: critical memory pressure from {name}: this monitor \
                             expedites RCU and frees its backlog, but no budget or reclaimer is \
                             linked to it, and an RcuCache registered no shrinker, so it does \
                             not shrink; build caches with \
                             RcuCacheBuilder::auto_pressure() or .budget(..), or link a budget \
                             (auto_pressure_for(&budget))"
                        ));
                    }
                }
                last = Instant::now();
                if !held {
                    let guard = rcu.pressure_start_all();
                    *lock(&s.guard) = Some(guard);
                    held = true;
                    s.episodes.fetch_add(1, Ordering::Relaxed);
                    s.active.store(true, Ordering::Relaxed);
                    // A monitor dropped meanwhile may have ended the signal
                    // already (before this one was set): end this one.
                    if s.stop.load(Ordering::SeqCst) {
                        end_signal(s);
                        break;
                    }
                }
                // The caller's code (the budget's usage function, a
                // shrinker, the OOM handler) may panic: report it and go
                // on watching, as the budget's background reclaimer does.
                let linked = crate::sync::catch_panic(|| {
                    if let Some(b) = &link.budget {
                        b.check();
                    }
                    // The machine (or the cgroup) is short of memory: caches
                    // give back a share, as the kernel's shrinkers do under
                    // reclaim, whatever the budget's own usage.
                    if let Some(r) = &link.reclaimer {
                        let done = match level {
                            Level::Critical => r.shrink(2),
                            Level::Medium => r.shrink(4),
                            Level::Low => Default::default(),
                        };
                        // Freed at once, or queued for RCU (freed a grace
                        // period on, by the run below or by the domain).
                        freed_since_trim = freed_since_trim
                            .saturating_add(done.freed_bytes)
                            .saturating_add(done.queued_via_rcu_bytes);
                    }
                });
                if let Err(msg) = linked {
                    let text = format!(
                        "reclaim on a pressure event panicked (in the budget's usage function, a \
                         shrinker or the OOM handler): {}",
                        msg.as_deref().unwrap_or("(no message)")
                    );
                    crate::sync::report_caught(|| {
                        tracing::error!("rcu-reclaim: {text}; the monitor goes on");
                    });
                    s.errors.fetch_add(1, Ordering::Relaxed);
                    *lock(&s.last_error) = Some(text);
                }
                // The level sets how hard RCU works for it right now, as
                // reclaim's priority would: critical drains the backlog.
                let run = match level {
                    Level::Critical => rcu.run_callbacks(&NodeMask::all(), 0).bytes_freed,
                    Level::Medium => rcu.run_callbacks(&NodeMask::all(), 6).bytes_freed,
                    Level::Low => 0,
                };
                freed_since_trim = freed_since_trim.saturating_add(run);
                // What was freed must reach the kernel to relieve it: the
                // allocator keeps freed blocks for reuse (glibc gave back
                // none of the 64 KiB values of a cache emptied under a
                // 100 MiB cgroup: RSS stayed at the limit). At most every
                // 100 ms, unless this event freed much more since the last
                // trim (a second halving of a cache 50 ms after the first
                // left 40 MiB charged until the OOM killer came).
                if level >= Level::Medium
                    && (last_trim.elapsed() >= TRIM_EVERY || freed_since_trim >= TRIM_BYTES)
                {
                    crate::sys::trim_heap();
                    last_trim = Instant::now();
                    freed_since_trim = 0;
                }
            }
            Ok(None) => {
                if let Some(p) = source.psi() {
                    *lock(&s.psi) = Some(p);
                }
                // A source that returns at once without an event (it does
                // not wait, or its file is gone): keep to the tick rather
                // than spin.
                if let Some(rest) = tick.checked_sub(asked.elapsed()) {
                    pause(s, rest);
                }
            }
            Err(e) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                let text = e.to_string();
                let mut last_error = lock(&s.last_error);
                if failing == 0 || last_error.as_deref() != Some(text.as_str()) {
                    crate::sys::warn_loud(&format!(
                        "rcu-reclaim: pressure source failed: {e}; no pressure events are \
                         seen until it works (retrying, backing off; PressureMonitor::stats() \
                         counts the errors)"
                    ));
                } else {
                    tracing::debug!(error = %e, failing, "rcu-reclaim: pressure source still failing");
                }
                *last_error = Some(text);
                drop(last_error);
                let backoff = tick
                    .saturating_mul(1 << failing.min(10))
                    .min(ERROR_BACKOFF_MAX);
                failing = failing.saturating_add(1);
                pause(s, backoff);
            }
        }
        if held && last.elapsed() >= quiet {
            held = false;
            end_signal(s);
        }
    }
    end_signal(s);
}

/// `m` locked, in a forked child, if it is free (poisoned or not): a lock
/// the monitor's thread held at the fork stays held there for ever.
fn try_lock_in_child<T>(m: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Ends the signal the monitor holds, if any (dropped outside the lock).
fn end_signal(s: &Shared) {
    let guard = lock(&s.guard).take();
    drop(guard);
    s.active.store(false, Ordering::Relaxed);
}

/// The least time between two trims of the heap by a monitor...
const TRIM_EVERY: Duration = Duration::from_millis(100);

/// ...unless its events freed this much since the last one.
const TRIM_BYTES: usize = 8 << 20;

/// The longest a monitor waits between retries of a failing source.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Sleeps `d`, returning early once the monitor is told to stop (so
/// dropping it never waits for a whole backoff): woken by its waker where
/// the source took one, else looking every 50 ms.
fn pause(s: &Shared, d: Duration) {
    let until = Instant::now() + d;
    while !s.stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match &s.waker {
            Some(fd) => {
                super::usage_thresholds::wait_readable(&[fd.as_raw_fd()], left);
            }
            None => thread::sleep(left.min(Duration::from_millis(50))),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A source that waits on the descriptors it is given for far longer
    /// than asked: only the monitor's waker can end its wait early.
    struct Sleepy {
        also: Vec<std::os::fd::RawFd>,
    }

    impl PressureSource for Sleepy {
        fn describe(&self) -> String {
            "sleepy".into()
        }

        fn wait(&mut self, _: Duration) -> Result<Option<Level>, SourceError> {
            super::super::usage_thresholds::wait_readable(&self.also, Duration::from_secs(30));
            Ok(None)
        }

        fn wake_also_on(&mut self, fd: Option<std::os::fd::RawFd>) -> bool {
            super::super::usage_thresholds::set_also(&mut self.also, fd);
            true
        }
    }

    /// Library sources whose close has ended (`SlowClose`'s drop).
    static CLOSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// `Sleepy`, whose close takes 100 ms, as a PSI trigger's may.
    struct SlowClose(Sleepy);

    impl PressureSource for SlowClose {
        fn describe(&self) -> String {
            "slow to close".into()
        }

        fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
            self.0.wait(timeout)
        }

        fn wake_also_on(&mut self, fd: Option<std::os::fd::RawFd>) -> bool {
            self.0.wake_also_on(fd)
        }
    }

    impl Drop for SlowClose {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(100));
            CLOSED.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Monitors made and dropped in a loop leave at most `CLOSING_MAX`
    /// threads closing their sources (before, every one was left: 108
    /// threads and descriptors at once in a loop of `auto_pressure`).
    #[test]
    #[cfg_attr(miri, ignore = "Miri has no eventfd nor poll")]
    fn monitors_dropped_in_a_loop_leave_few_threads_closing() {
        let rcu = Rcu::new(crate::Config::new()).unwrap();
        let n = 3 * CLOSING_MAX;
        for _ in 0..n {
            let monitor = PressureMonitor::start(
                &rcu,
                Box::new(SlowClose(Sleepy { also: Vec::new() })),
                Duration::from_millis(100),
                None,
            );
            drop(monitor);
        }
        let left = n - CLOSED.load(Ordering::SeqCst);
        assert!(
            left <= CLOSING_MAX,
            "{left} monitor threads were still closing their sources"
        );
    }

    /// Dropping a monitor wakes its source's wait (before, the thread saw
    /// the stop only when the wait ended: after up to 100 ms, and a source
    /// that waits longer held the drop for its whole second's bound).
    #[test]
    #[cfg_attr(miri, ignore = "Miri has no eventfd nor poll")]
    fn dropping_a_monitor_ends_its_sources_wait_at_once() {
        let rcu = Rcu::new(crate::Config::new()).unwrap();
        for _ in 0..5 {
            let monitor = PressureMonitor::start(
                &rcu,
                Box::new(Sleepy { also: Vec::new() }),
                Duration::from_millis(100),
                None,
            );
            std::thread::sleep(Duration::from_millis(5));
            let t = Instant::now();
            drop(monitor);
            // Without the wake, the join gives up after a second.
            assert!(
                t.elapsed() < Duration::from_millis(900),
                "the drop waited {:?}",
                t.elapsed()
            );
        }
    }

    /// The library's sources end their waits on the descriptors given.
    #[test]
    #[cfg_attr(miri, ignore = "Miri has no eventfd nor poll")]
    fn an_rss_source_wakes_on_the_descriptors_given() {
        let mut source = super::super::RssSource::new(usize::MAX, Duration::from_secs(60));
        // The first read is due at once.
        assert_eq!(source.wait(Duration::from_secs(1)).unwrap(), None);
        let waker = waker_for(&mut source).expect("an RSS source takes a waker");
        let t = Instant::now();
        let sleeper = std::thread::spawn(move || source.wait(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        wake(&waker);
        assert_eq!(sleeper.join().unwrap().unwrap(), None);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri has no pipe nor dup2")]
    fn a_monitor_that_shrinks_nothing_says_so_at_its_first_critical_event() {
        let rcu = Rcu::new(crate::Config::new()).unwrap();
        // A cache that registered no shrinker: what the warning is about.
        let _bare: crate::RcuCache<u8, u8> = crate::RcuCache::builder().rcu(&rcu).build();
        let (events, source) = super::super::SyntheticSource::new();
        let out = crate::sys::tests::stderr_of(|| {
            let monitor =
                PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(20), None);
            for _ in 0..2 {
                events.send(Level::Critical).unwrap();
            }
            let start = Instant::now();
            while monitor.stats().critical < 2 && start.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(monitor);
        });
        assert_eq!(
            out.matches("no budget or reclaimer is linked to it")
                .count(),
            1,
            "{out}"
        );
        assert!(out.contains("RcuCacheBuilder::auto_pressure()"), "{out}");
    }

    /// In a forked child, a lock the monitor's thread held at the fork is
    /// held for ever: `stats` there reads what it can without blocking.
    #[test]
    #[cfg_attr(miri, ignore = "forks, which Miri cannot")]
    fn stats_in_a_forked_child_skip_a_lock_held_at_the_fork() {
        let rcu = Rcu::new(crate::Config::new()).unwrap();
        let (_tx, source) = super::super::SyntheticSource::new();
        let mut monitor =
            PressureMonitor::start(&rcu, Box::new(source), Duration::from_secs(1), None);
        *lock(&monitor.shared.last_error) = Some("an old error".into());
        // As in a child: another process id than the one that started it.
        let pid = monitor.pid;
        monitor.pid = pid.wrapping_add(1);
        {
            let _held = lock(&monitor.shared.last_error);
            let s = monitor.stats();
            assert_eq!(s.last_error, None);
        }
        assert_eq!(monitor.stats().last_error.as_deref(), Some("an old error"));
        monitor.pid = pid;
    }
}
