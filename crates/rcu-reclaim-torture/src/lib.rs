//! Torture testing in the style of the kernel's `kernel/rcu/rcutorture.c`
//! and liburcu's `tests/regression/rcutorture.h`.
//!
//! A ring of elements, one current at a time. Writers replace the current
//! element and walk each retired one down a pipe of [`PIPE_LEN`] stages, one
//! per grace period — through `synchronize`, `synchronize_expedited`, polled
//! cookies, `call` (re-queued from its own callback) or `defer_drop`
//! (re-deferred from its own drop), rotating among them — and put it back
//! on the freelist at the end. Readers load the current element inside a
//! section and record the stage they see ("Reader Pipe") and the grace
//! periods that completed during the section ("Reader Batch"). A reader may
//! see stage 0 (current) or 1 (just retired) and one completed grace period
//! (one already running when it began); anything beyond the first two
//! buckets means a grace period ended under a reader: [`TortureReport::success`]
//! is false.
//!
//! The run also counts memory-ordering errors (an element seen not fully
//! initialised or already freed), barrier errors (a callback queued before
//! `barrier()` that had not run when it returned), free-block circulation
//! (every stage of every element, elements lost or freed twice), and books
//! every callback and deferred drop it queues: each must run exactly once,
//! after a grace period. Options add callback floods past `qhimark`,
//! pressure flapping, thread churn, random reader delays and a synthetic
//! multi-node topology; [`Fault`]s inject panicking callbacks, failing page
//! allocations, threads that exit with queued callbacks and a reader stalled
//! past the stall timeout, each checked to have been seen and survived.
//!
//! On a [`Flavor::Qsbr`] domain the readers are registered
//! [`QsbrThread`](rcu_reclaim::QsbrThread)s that read under its guards and
//! report quiescent states between reads (after every read, a few, or
//! many); their "Reader Batch" counts from the last report, where their
//! section really begins. They go offline now and then (both ways) and
//! wait for grace periods offline; the stalled reader reports nothing for
//! twice the stall timeout; even-numbered writers are registered too,
//! offline while they wait or sleep.
//!
//! ```
//! use std::time::Duration;
//! use rcu_reclaim_torture::{self as torture, TortureConfig};
//!
//! let mut config = TortureConfig::new();
//! config.duration = Duration::from_millis(300);
//! let report = torture::run(&config).unwrap();
//! assert!(report.success(), "{report}");
//! assert!(report.reads > 0);
//! ```

#![warn(missing_docs)]

mod faults;
mod ledger;
mod report;
mod ring;
mod threads;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use rcu_reclaim::topology::Topology;
use rcu_reclaim::{Config, Error, Flavor, Rcu};
use std::sync::{MutexGuard, PoisonError};

/// Locks `m`, ignoring poisoning: an injected panic must not wedge the run
/// (every structure here stays consistent if a holder panicked).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub use faults::silence_injected_panics;
pub use report::{Progress, TortureReport};
pub use run_impl::{run, run_with_progress, RunError};

mod run_impl;

use faults::FailingPages;
use ledger::Ledger;
use ring::Ring;
use threads::{ReadCounts, Rng};

/// Stages of the pipe an element walks after removal before it is freed
/// (the kernel's `RCU_TORTURE_PIPE_LEN`). The histograms have one more
/// bucket, for "beyond".
///
/// ```
/// assert_eq!(rcu_reclaim_torture::PIPE_LEN, 10);
/// ```
pub const PIPE_LEN: usize = 10;

/// How a writer waits out the grace periods of a retired element.
///
/// ```
/// use rcu_reclaim_torture::UpdateMode;
/// assert_eq!("exp".parse::<UpdateMode>(), Ok(UpdateMode::Expedited));
/// assert_eq!(UpdateMode::Defer.to_string(), "defer");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    /// `synchronize()`, one stage per call.
    Sync,
    /// `synchronize_expedited()` (named `exp`, in JSON too).
    #[serde(rename = "exp")]
    Expedited,
    /// `start_poll()` then `poll()` until done, or `cond_synchronize()`.
    Poll,
    /// `call()`, `call_hurry()` or `call_sized()`, re-queued from the callback.
    Call,
    /// `defer_drop()` of a token that re-defers itself from its drop.
    Defer,
}

impl UpdateMode {
    /// Every mode, in rotation order.
    ///
    /// ```
    /// assert_eq!(rcu_reclaim_torture::UpdateMode::ALL.len(), 5);
    /// ```
    pub const ALL: [UpdateMode; 5] = [
        UpdateMode::Sync,
        UpdateMode::Expedited,
        UpdateMode::Poll,
        UpdateMode::Call,
        UpdateMode::Defer,
    ];

    /// The short name used on the command line and in reports.
    ///
    /// ```
    /// assert_eq!(rcu_reclaim_torture::UpdateMode::Poll.name(), "poll");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            UpdateMode::Sync => "sync",
            UpdateMode::Expedited => "exp",
            UpdateMode::Poll => "poll",
            UpdateMode::Call => "call",
            UpdateMode::Defer => "defer",
        }
    }
}

impl std::fmt::Display for UpdateMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for UpdateMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        UpdateMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown update mode {s:?}; use sync, exp, poll, call or defer"))
    }
}

/// A fault a torture run injects, and checks it survived.
///
/// ```
/// use rcu_reclaim_torture::Fault;
/// assert_eq!("stall".parse::<Fault>(), Ok(Fault::ReaderStall));
/// assert_eq!(Fault::ALL.len(), 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// One callback per flood burst (or every other barrier round without
    /// floods) panics;
    /// `Stats::callback_panics` must count exactly those, and the rest run.
    CallbackPanic,
    /// Every other bulk-page allocation fails: `defer_drop` falls back to
    /// waiting for a grace period, and `call` to queueing on its shard,
    /// once per failure (`Stats::fallback_syncs`).
    PageAllocFailure,
    /// Threads queue callbacks and a partly filled page of deferred drops,
    /// then exit at once; all of it must still run.
    ExitingThreads,
    /// A reader holds one section for twice the stall timeout: the stall
    /// warning must fire (`Stats::stalls_reported`) and nothing it reads
    /// may be freed meanwhile.
    ReaderStall,
}

impl Fault {
    /// Every fault.
    ///
    /// ```
    /// assert!(rcu_reclaim_torture::Fault::ALL.contains(&rcu_reclaim_torture::Fault::CallbackPanic));
    /// ```
    pub const ALL: [Fault; 4] = [
        Fault::CallbackPanic,
        Fault::PageAllocFailure,
        Fault::ExitingThreads,
        Fault::ReaderStall,
    ];

    /// The short name used on the command line and in reports.
    ///
    /// ```
    /// assert_eq!(rcu_reclaim_torture::Fault::PageAllocFailure.name(), "alloc");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Fault::CallbackPanic => "panic",
            Fault::PageAllocFailure => "alloc",
            Fault::ExitingThreads => "exit",
            Fault::ReaderStall => "stall",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Fault::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown fault {s:?}; use panic, alloc, exit or stall"))
    }
}

/// What a torture run does. Start from [`TortureConfig::new`] (a plain run:
/// every update mode, no options, no faults) or [`TortureConfig::everything`]
/// and set fields.
///
/// ```
/// use std::time::Duration;
/// use rcu_reclaim_torture::{Fault, TortureConfig};
/// let mut c = TortureConfig::new();
/// c.readers = 4;
/// c.flood = true;
/// c.pressure_hz = 100.0;
/// c.faults = vec![Fault::ExitingThreads];
/// c.duration = Duration::from_millis(200);
/// assert!(c.validate().is_ok());
/// ```
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct TortureConfig {
    /// Reader threads (1 to 256; default 2).
    pub readers: usize,
    /// Writer threads (1 to 64; default 1).
    pub writers: usize,
    /// How long the readers and writers run (default 10 s).
    #[serde(serialize_with = "report::secs")]
    pub duration: Duration,
    /// Forced flavor, or `None` to detect. With [`Flavor::Qsbr`] the
    /// readers (and the stalled reader, the churn threads and the
    /// even-numbered writers) are registered
    /// [`QsbrThread`](rcu_reclaim::QsbrThread)s: they read under its
    /// guards, report quiescent states between reads, go offline now and
    /// then, and wait for grace periods offline.
    pub flavor: Option<Flavor>,
    /// Update modes the writers rotate through (default: all).
    pub modes: Vec<UpdateMode>,
    /// Mean pause between a writer's updates (0 to 1 s; default 100 µs).
    #[serde(serialize_with = "report::secs")]
    pub writer_delay: Duration,
    /// Bursts of `2 × qhimark` callbacks every 100 ms.
    pub flood: bool,
    /// The domain's `qhimark` (100 to 1,000,000; default 10,000).
    pub qhimark: usize,
    /// Pressure signals raised and dropped per second (0 = off, up to 10,000).
    pub pressure_hz: f64,
    /// The domain's garbage bounded by a memory limit
    /// ([`Rcu::bound_garbage`](rcu_reclaim::Rcu::bound_garbage)) whose
    /// usage jumps to just under its mark and back every 5 ms, while a
    /// thread retires 4 MiB (booked) in 512 KiB values each time it is
    /// near: retiring threads wait for their garbage, free their own
    /// drains and hand off their pages over the bound (writers and readers
    /// inside sections too, which owe the wait). The run fails if no
    /// retire ever waited.
    pub garbage_bound: bool,
    /// Short-lived reader threads, one after another, alongside the readers.
    pub churn: bool,
    /// Random delays inside reader sections (spins, yields, rare sleeps).
    pub reader_stalls: bool,
    /// Synthetic topology: nodes (0 = the machine's own topology).
    pub nodes: usize,
    /// Synthetic topology: CPUs per node (used when `nodes > 0`).
    pub cpus_per_node: usize,
    /// Faults to inject.
    pub faults: Vec<Fault>,
    /// The domain's stall timeout (default 1 s; [`Fault::ReaderStall`]
    /// needs a run of at least three of them).
    #[serde(serialize_with = "report::secs")]
    pub stall_timeout: Duration,
    /// Elements in the ring (0 = 1024 per writer).
    pub pool: usize,
    /// Seed of the threads' random choices.
    pub seed: u64,
    /// A deliberately broken RCU (the kernel's `torture_type=busted`):
    /// writers walk a retired element down its whole pipe at once, without
    /// waiting for any grace period, so readers are handed freed elements.
    /// Such a run must end in FAILURE; it shows the checks catch a broken
    /// implementation.
    pub busted: bool,
}

impl Default for TortureConfig {
    fn default() -> Self {
        TortureConfig {
            readers: 2,
            writers: 1,
            duration: Duration::from_secs(10),
            flavor: None,
            modes: UpdateMode::ALL.to_vec(),
            writer_delay: Duration::from_micros(100),
            flood: false,
            qhimark: 10_000,
            pressure_hz: 0.0,
            garbage_bound: false,
            churn: false,
            reader_stalls: false,
            nodes: 0,
            cpus_per_node: 2,
            faults: Vec::new(),
            stall_timeout: Duration::from_secs(1),
            pool: 0,
            seed: 0x5eed,
            busted: false,
        }
    }
}

impl TortureConfig {
    /// A plain run: 2 readers, 1 writer, every update mode, 10 s.
    ///
    /// ```
    /// let c = rcu_reclaim_torture::TortureConfig::new();
    /// assert_eq!((c.readers, c.writers), (2, 1));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Every option and every fault at once, for `duration`: floods
    /// (qhimark 2,000), pressure flapping at 50 Hz, a garbage bound, churn, reader delays,
    /// a 2-node × 2-CPU synthetic topology, stall timeout 200 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = rcu_reclaim_torture::TortureConfig::everything(Duration::from_secs(1));
    /// assert_eq!(c.faults.len(), 4);
    /// assert!(c.validate().is_ok());
    /// ```
    pub fn everything(duration: Duration) -> Self {
        TortureConfig {
            duration,
            flood: true,
            qhimark: 2_000,
            pressure_hz: 50.0,
            garbage_bound: true,
            churn: true,
            reader_stalls: true,
            nodes: 2,
            cpus_per_node: 2,
            faults: Fault::ALL.to_vec(),
            stall_timeout: Duration::from_millis(200),
            ..Self::default()
        }
    }

    /// Whether `fault` is injected.
    ///
    /// ```
    /// use rcu_reclaim_torture::{Fault, TortureConfig};
    /// assert!(!TortureConfig::new().has(Fault::ReaderStall));
    /// ```
    pub fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }

    /// Checks every field's range; the error names the field and the range.
    ///
    /// ```
    /// let mut c = rcu_reclaim_torture::TortureConfig::new();
    /// c.readers = 0;
    /// assert!(c.validate().unwrap_err().to_string().contains("readers"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::InvalidConfig(format!("torture: {msg}")));
        if !(1..=256).contains(&self.readers) {
            return bad(format!("readers is {}; use 1 to 256", self.readers));
        }
        if !(1..=64).contains(&self.writers) {
            return bad(format!("writers is {}; use 1 to 64", self.writers));
        }
        if self.duration.is_zero() {
            return bad("duration must be greater than zero".into());
        }
        if self.modes.is_empty() {
            return bad("modes is empty; give at least one of sync, exp, poll, call, defer".into());
        }
        if self.writer_delay > Duration::from_secs(1) {
            return bad(format!(
                "writer_delay is {:?}; use 0 to 1 s",
                self.writer_delay
            ));
        }
        if !(100..=1_000_000).contains(&self.qhimark) {
            return bad(format!("qhimark is {}; use 100 to 1,000,000", self.qhimark));
        }
        if !(0.0..=10_000.0).contains(&self.pressure_hz) {
            return bad(format!(
                "pressure_hz is {}; use 0 (off) to 10,000",
                self.pressure_hz
            ));
        }
        if self.nodes > 64 || (self.nodes > 0 && !(1..=64).contains(&self.cpus_per_node)) {
            return bad(format!(
                "a synthetic topology of {} nodes × {} CPUs; use 0 to 64 nodes of 1 to 64 CPUs",
                self.nodes, self.cpus_per_node
            ));
        }
        if self.stall_timeout < Duration::from_millis(10) {
            return bad(format!(
                "stall_timeout is {:?}; use at least 10 ms",
                self.stall_timeout
            ));
        }
        if self.has(Fault::ReaderStall) && self.duration < self.stall_timeout * 3 {
            return bad(format!(
                "the reader-stall fault needs a duration of at least three stall timeouts \
                 ({:?}); the duration is {:?}",
                self.stall_timeout * 3,
                self.duration
            ));
        }
        if self.pool > 0 && !(2..=1 << 24).contains(&self.pool) {
            return bad(format!(
                "pool is {}; use 0 (auto) or 2 to 16,777,216",
                self.pool
            ));
        }
        Ok(())
    }

    fn domain_config(&self, pages: Option<Arc<FailingPages>>, hook: Arc<AtomicU64>) -> Config {
        let mut c = Config::new()
            .stall_timeout(self.stall_timeout)
            .qhimark(self.qhimark)
            .qlowmark(self.qhimark / 100)
            .on_callback_panic(move |_| {
                hook.fetch_add(1, Ordering::Relaxed);
            });
        if let Some(f) = self.flavor {
            c = c.flavor(f);
        }
        if self.nodes > 0 {
            c = c.topology(Topology::synthetic(self.nodes, self.cpus_per_node));
        }
        if let Some(p) = pages {
            c = c.page_allocator(p);
        }
        c
    }
}

/// Counters of the torture's own threads.
#[derive(Default)]
pub(crate) struct Counters {
    updates: [AtomicU64; 5],
    barrier_rounds: AtomicU64,
    barrier_errors: AtomicU64,
    floods: AtomicU64,
    flaps: AtomicU64,
    bound_flips: AtomicU64,
    churned: AtomicU64,
    exited_with_callbacks: AtomicU64,
    stall_episodes: AtomicU64,
    panics_injected: AtomicU64,
}

/// State shared by every thread of a run.
pub(crate) struct Shared {
    cfg: TortureConfig,
    rcu: Rcu,
    ring: Ring,
    ledger: Ledger,
    stop: AtomicBool,
    counters: Counters,
    reads: Mutex<ReadCounts>,
    reads_progress: AtomicU64,
    pages: Option<Arc<FailingPages>>,
    hook_calls: Arc<AtomicU64>,
    /// The usage the garbage bound reads (`TortureConfig::garbage_bound`).
    bound_usage: Arc<AtomicUsize>,
}

impl Shared {
    /// Whether the domain is of the QSBR flavor: its readers are
    /// registered [`QsbrThread`](rcu_reclaim::QsbrThread)s.
    fn qsbr(&self) -> bool {
        self.rcu.flavor() == Flavor::Qsbr
    }

    fn merge_reads(&self, counts: &ReadCounts) {
        lock(&self.reads).merge(counts);
    }

    /// A random CPU of a synthetic topology to queue on, or `None` (the
    /// thread's real CPU) on the machine's own.
    fn random_cpu(&self, rng: &mut Rng) -> Option<usize> {
        (self.cfg.nodes > 0).then(|| rng.below(self.rcu.topology().cpus() as u64) as usize)
    }
}
