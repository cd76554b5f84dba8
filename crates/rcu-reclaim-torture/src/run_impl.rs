//! Running a torture: start the threads, wait, stop them, drain every pipe
//! and callback, then judge.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use std::fmt;

use rcu_reclaim::{Error, Rcu};

use super::faults::{self, FailingPages};
use super::ledger::Ledger;
use super::report::{Progress, TortureReport};
use super::ring::Ring;
use super::threads::{self, ReadCounts};
use super::{Counters, Fault, Shared, TortureConfig, PIPE_LEN};

/// Runs a torture test as `config` says, in a domain of its own, and
/// reports. `Err` only for an invalid config, a domain that cannot be
/// created (a forced memb flavor without `membarrier`), or a thread that
/// cannot be started (a thread limit: the threads already started are
/// stopped); a failed torture is an `Ok` report whose
/// [`success`](TortureReport::success) is false.
///
/// ```
/// use std::time::Duration;
/// let mut c = rcu_reclaim_torture::TortureConfig::new();
/// c.duration = Duration::from_millis(200);
/// let report = rcu_reclaim_torture::run(&c).unwrap();
/// assert!(report.success(), "{report}");
/// ```
pub fn run(config: &TortureConfig) -> Result<TortureReport, RunError> {
    run_with_progress(config, |_| {})
}

/// As [`run`], calling `progress` about once a second while it runs.
///
/// ```
/// use std::time::Duration;
/// let mut c = rcu_reclaim_torture::TortureConfig::new();
/// c.duration = Duration::from_millis(1200);
/// let mut seen = 0;
/// let report = rcu_reclaim_torture::run_with_progress(&c, |p| seen = p.reads).unwrap();
/// assert!(report.success() && seen > 0);
/// ```
pub fn run_with_progress(
    config: &TortureConfig,
    mut progress: impl FnMut(&Progress),
) -> Result<TortureReport, RunError> {
    config.validate()?;
    let hook_calls = Arc::new(AtomicU64::new(0));
    let pages = config
        .has(Fault::PageAllocFailure)
        .then(|| Arc::new(FailingPages::new(2)));
    let rcu = Rcu::new(config.domain_config(pages.clone(), hook_calls.clone()))?;
    let pool = if config.pool > 0 {
        config.pool
    } else {
        1024 * config.writers
    };
    let sh = Arc::new(Shared {
        cfg: config.clone(),
        rcu,
        ring: Ring::new(pool),
        ledger: Ledger::default(),
        stop: AtomicBool::new(false),
        counters: Counters::default(),
        reads: Mutex::new(ReadCounts::default()),
        reads_progress: AtomicU64::new(0),
        pages,
        hook_calls,
        bound_usage: Arc::new(AtomicUsize::new(0)),
    });
    if config.garbage_bound {
        let usage = sh.bound_usage.clone();
        sh.rcu.bound_garbage(faults::BOUND_MARK, move || {
            Some(usage.load(Ordering::Relaxed))
        });
    }
    let start = Instant::now();
    let handles = start_threads(&sh)?;
    let mut next_progress = Duration::from_secs(1);
    loop {
        let elapsed = start.elapsed();
        if elapsed >= config.duration {
            break;
        }
        if elapsed >= next_progress {
            next_progress += Duration::from_secs(1);
            progress(&Progress::now(&sh, elapsed));
        }
        let left = (config.duration - elapsed).min(next_progress - elapsed);
        thread::sleep(left.min(Duration::from_millis(100)));
    }
    wait_for_a_stall_episode(&sh, start);
    sh.stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut thread_panics = Vec::new();
    for (name, h) in handles {
        if let Err(payload) = h.join() {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            thread_panics.push(format!("thread {name} panicked: {msg}"));
        }
    }
    // The bound's waits would only slow the final barriers down.
    sh.rcu.unbound_garbage();
    let drained = drain(&sh);
    let stats = sh.rcu.stats();
    Ok(TortureReport::judge(
        &sh,
        stats,
        elapsed,
        drained,
        thread_panics,
    ))
}

/// With the reader-stall fault, runs on past the duration until the
/// staller has finished one episode, at most [`STALL_OVERRUN`] more: its
/// first stall begins after a nap of one stall timeout, and a thread
/// starved of CPU (under valgrind on a loaded 2-core machine, 2 s and 3 s
/// runs) finished none in time, which failed the run as "no reader stall
/// was injected" although nothing was wrong.
fn wait_for_a_stall_episode(sh: &Shared, start: Instant) {
    if !sh.cfg.has(Fault::ReaderStall) {
        return;
    }
    let until = sh.cfg.duration + STALL_OVERRUN;
    while sh.counters.stall_episodes.load(Ordering::Relaxed) == 0 && start.elapsed() < until {
        thread::sleep(Duration::from_millis(20));
    }
}

/// How long a run may overrun its duration waiting for the staller's
/// first episode (see `wait_for_a_stall_episode`).
const STALL_OVERRUN: Duration = Duration::from_secs(30);

/// Spawns every thread the config asks for.
fn start_threads(sh: &Arc<Shared>) -> Result<Vec<(String, JoinHandle<()>)>, RunError> {
    type Body = fn(Arc<Shared>, usize);
    let cfg = &sh.cfg;
    let mut jobs: Vec<(String, Body, usize)> = Vec::new();
    for r in 0..cfg.readers {
        jobs.push((format!("rcu-torture-reader-{r}"), threads::reader, r));
    }
    for w in 0..cfg.writers {
        jobs.push((format!("rcu-torture-writer-{w}"), threads::writer, w));
    }
    jobs.push((
        "rcu-torture-barrier".into(),
        |s, _| faults::barrier_test(s),
        0,
    ));
    if cfg.flood {
        jobs.push(("rcu-torture-flood".into(), |s, _| faults::flood(s), 0));
    }
    if cfg.pressure_hz > 0.0 {
        jobs.push(("rcu-torture-flap".into(), |s, _| faults::flap(s), 0));
    }
    if cfg.garbage_bound {
        jobs.push(("rcu-torture-bound".into(), |s, _| faults::bound(s), 0));
    }
    if cfg.churn {
        jobs.push(("rcu-torture-churn".into(), |s, _| faults::churn(s), 0));
    }
    if cfg.has(Fault::ExitingThreads) {
        jobs.push(("rcu-torture-exiters".into(), |s, _| faults::exiters(s), 0));
    }
    if cfg.has(Fault::ReaderStall) {
        jobs.push(("rcu-torture-staller".into(), |s, _| faults::staller(s), 0));
    }
    let mut started = Vec::with_capacity(jobs.len());
    for (name, body, n) in jobs {
        let s = sh.clone();
        match thread::Builder::new()
            .name(name.clone())
            .spawn(move || body(s, n))
        {
            Ok(h) => started.push((name, h)),
            // No thread to be had (`ulimit -u`, a cgroup's `pids.max`):
            // the threads started stop, and the run is refused, not a panic.
            Err(e) => {
                sh.stop.store(true, Ordering::Relaxed);
                for (_, h) in started {
                    let _ = h.join();
                }
                return Err(RunError::ThreadStart {
                    thread: name,
                    source: e,
                });
            }
        }
    }
    Ok(started)
}

/// After the threads stopped: barriers until every retired element has
/// walked its pipe back to the freelist and every booked callback has run.
/// Returns whether that happened.
fn drain(sh: &Shared) -> bool {
    // Each barrier moves every queued pipe one stage at least.
    for _ in 0..4 * PIPE_LEN {
        if sh.ring.free_count() == sh.ring.size() - 1 && sh.ledger.settled() {
            return true;
        }
        sh.rcu.barrier();
    }
    sh.ring.free_count() == sh.ring.size() - 1 && sh.ledger.settled()
}

/// Why a torture could not run ([`run`] and [`run_with_progress`]; a
/// torture that ran and failed is an `Ok` report instead).
///
/// ```
/// use rcu_reclaim_torture::{run, RunError, TortureConfig};
/// let mut c = TortureConfig::new();
/// c.readers = 0; // at least one reader is needed
/// assert!(matches!(run(&c), Err(RunError::Config(_))));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// The config is out of range, or its domain cannot be created (a
    /// forced memb flavor without `membarrier`).
    Config(Error),
    /// A torture thread could not be started: the process may start no
    /// more threads (`ulimit -u`, a cgroup's `pids.max`). The threads
    /// already started were stopped.
    ThreadStart {
        /// The thread's name.
        thread: String,
        /// What the system said.
        source: std::io::Error,
    },
}

impl From<Error> for RunError {
    fn from(e: Error) -> Self {
        RunError::Config(e)
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Config(e) => e.fmt(f),
            RunError::ThreadStart { thread, source } => write!(
                f,
                "cannot start the torture thread {thread} ({source}): this process may start \
                 no more threads (its limit: ulimit -u, or the cgroup's pids.max); run fewer \
                 readers and writers (--readers, --writers) or raise the limit"
            ),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Config(e) => Some(e),
            RunError::ThreadStart { source, .. } => Some(source),
        }
    }
}
