//! A memory budget with watermarks, a background reclaimer (the kernel's
//! kswapd) and direct reclaim.
//!
//! Watermarks are in bytes of usage: above `low` the background reclaimer
//! wakes and reclaims until usage is back at `high`, holding a pressure
//! signal on RCU while it works; above `min` the thread that checks the
//! budget (the allocating thread) reclaims directly before it proceeds.
//! Either reclaims in steps of about a 64th of `min`: each step evicts its
//! share and, with the reclaimer's RCU loop on, lets a grace period free
//! it before the next, so the garbage a reclaim makes stays near one step.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::budget_bound::{BudgetBound, SeenUsage};
use super::reclaimer::{reclaim_allowed, Reclaimer};
use crate::policy;
use crate::pressure::NodeMask;
use crate::sync::lock_std as lock;

/// Usage thresholds of a [`MemoryBudget`], in bytes: `high < low < min <= limit`.
///
/// ```
/// let w = rcu_reclaim::reclaim::Watermarks::from_limit(1000);
/// assert_eq!((w.high, w.low, w.min), (800, 850, 950));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Watermarks {
    /// Above this the allocating thread reclaims directly.
    pub min: usize,
    /// Above this the background reclaimer wakes.
    pub low: usize,
    /// The background reclaimer stops once usage is back here.
    pub high: usize,
}

impl Watermarks {
    /// The defaults for `limit`: high 80%, low 85%, min 95%; for a limit
    /// so small that these percentages meet, the nearest ordered marks
    /// (`high < low < min <= limit` holds for every limit of 2 bytes or
    /// more; [`MIN_LIMIT`](Watermarks::MIN_LIMIT)).
    ///
    /// ```
    /// use rcu_reclaim::reclaim::Watermarks;
    /// let w = Watermarks::from_limit(100 << 20);
    /// assert!(w.high < w.low && w.low < w.min);
    /// let tiny = Watermarks::from_limit(10);
    /// assert_eq!((tiny.high, tiny.low, tiny.min), (7, 8, 9));
    /// ```
    pub fn from_limit(limit: usize) -> Watermarks {
        let pct = |p: usize| limit / 100 * p + limit % 100 * p / 100;
        let min = pct(95).max(2).min(limit);
        let low = pct(85).min(min.saturating_sub(1)).max(1);
        let high = pct(80).min(low - 1);
        Watermarks { min, low, high }
    }

    /// The least limit for which ordered watermarks exist (`high` 0, `low`
    /// 1, `min` 2).
    ///
    /// ```
    /// use rcu_reclaim::reclaim::Watermarks;
    /// let w = Watermarks::from_limit(Watermarks::MIN_LIMIT);
    /// assert_eq!((w.high, w.low, w.min), (0, 1, 2));
    /// ```
    pub const MIN_LIMIT: usize = 2;
}

/// Why a [`MemoryBudget`] could not be made.
///
/// ```
/// use rcu_reclaim::reclaim::{BudgetError, Watermarks};
/// let err = BudgetError::UnorderedWatermarks {
///     marks: Watermarks { min: 10, low: 20, high: 30 },
///     limit: 100,
/// };
/// assert!(err.to_string().contains("Watermarks::from_limit"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetError {
    /// The watermarks are not `high < low < min <= limit`.
    UnorderedWatermarks {
        /// The watermarks given.
        marks: Watermarks,
        /// The limit given.
        limit: usize,
    },
    /// The background reclaimer's thread (`rcu-kswapd`) could not be
    /// started; the text is the system's reason.
    NoThread(String),
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetError::UnorderedWatermarks { marks, limit } => write!(
                f,
                "watermarks must satisfy high < low < min <= limit; got high {}, low {}, min {}, \
                 limit {limit}: order them, or take the defaults with Watermarks::from_limit \
                 (MemoryBudget::new)",
                marks.high, marks.low, marks.min
            ),
            BudgetError::NoThread(why) => write!(
                f,
                "cannot start the background reclaimer thread rcu-kswapd ({why}): raise the \
                 process's thread or memory limits, or create the budget before they are reached"
            ),
        }
    }
}

impl std::error::Error for BudgetError {}

/// Counters of a [`MemoryBudget`].
///
/// ```
/// use std::sync::Arc;
/// use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
/// let reclaimer = Arc::new(Reclaimer::new(rcu_reclaim::Rcu::global()));
/// let budget = MemoryBudget::new(1 << 20, reclaimer, || 0); // nothing used
/// budget.check();
/// let s = budget.stats();
/// assert_eq!((s.direct_reclaims, s.ooms), (0, 0));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BudgetStats {
    /// Times the background reclaimer woke to work.
    pub background_runs: u64,
    /// Direct reclaims by checking threads.
    pub direct_reclaims: u64,
    /// Reclaims (of either kind) that ended out of memory: usage still
    /// above `high` after the reclaimer had done all it could. Each is one
    /// [`Reclaimer`] out-of-memory event (one call of its OOM handler, one
    /// in [`ReclaimStats::ooms`](super::ReclaimStats::ooms)); the
    /// reclaimer's count is larger only by the reclaims other callers ran.
    pub ooms: u64,
    /// Direct reclaims not run because the checking thread was inside a
    /// read-side section of the reclaimer's domain (reclaim may wait for a
    /// grace period, which that section holds up): the background
    /// reclaimer was woken instead and the check passed.
    pub deferred_in_section: u64,
    /// Direct reclaims that gave up waiting (after one second) for a
    /// reclaim already running and let the allocation proceed.
    pub direct_wait_timeouts: u64,
    /// Of [`deferred_in_section`](Self::deferred_in_section): checks on an
    /// online thread of a QSBR reclaimer's domain, whose direct reclaim
    /// then ran at the thread's next reporting quiescent state (or when it
    /// went offline), the budget checked again there.
    pub owed_reclaims: u64,
}

type Usage = Arc<dyn Fn() -> usize + Send + Sync>;

struct Shared {
    usage: Usage,
    marks: Watermarks,
    reclaimer: Arc<Reclaimer>,
    /// `rcu-kswapd`'s requests, apart from the rest: the thread holds
    /// this while it waits, and only a `Weak` of the rest, so a forked
    /// child (where the thread does not exist) that drops the budget lets
    /// go of the reclaimer and its handle of the domain (before, the
    /// thread's strong reference counted there for ever, and the child's
    /// last handle of the domain ran none of its callbacks).
    wake: Arc<Wake>,
    /// Whether a reclaim to `high` runs (one at a time), and its end.
    reclaiming: Mutex<bool>,
    reclaim_done: Condvar,
    background_runs: AtomicU64,
    direct_reclaims: AtomicU64,
    ooms: AtomicU64,
    deferred_in_section: AtomicU64,
    direct_wait_timeouts: AtomicU64,
    owed_reclaims: AtomicU64,
    /// Whether a reclaim step whose frees the usage does not show trims
    /// the heap (usage read from the kernel: a cgroup's, RSS).
    trims_heap: AtomicBool,
}

#[derive(Default)]
struct BgState {
    requested: bool,
    shutdown: bool,
}

/// `rcu-kswapd`'s state and the condition it waits on.
#[derive(Default)]
struct Wake {
    state: Mutex<BgState>,
    cond: Condvar,
}

thread_local! {
    /// Set while this thread runs a budget's reclaim (re-entry returns).
    static IN_BUDGET_RECLAIM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Shared {
    /// Reclaims until usage is at `high`; returns false on out-of-memory.
    /// One reclaim runs at a time: a second caller waits for it and then
    /// usually finds usage back under `high`, instead of evicting again or
    /// declaring out-of-memory because the first one emptied the caches.
    /// A direct reclaimer waits at most [`DIRECT_WAIT`] for a running one
    /// and then proceeds (true): the running reclaim may be waiting for
    /// something the allocating thread holds (a lock some callback takes).
    fn reclaim_to_high(&self, direct: bool) -> bool {
        if IN_BUDGET_RECLAIM.with(std::cell::Cell::get) {
            return true;
        }
        crate::sync::with_flag(&IN_BUDGET_RECLAIM, || {
            let Some(_one_at_a_time) = self.one_at_a_time(direct.then_some(DIRECT_WAIT)) else {
                self.direct_wait_timeouts.fetch_add(1, Ordering::Relaxed);
                return true;
            };
            // Steps in a row that reclaim called met (by the bytes its
            // shrinkers booked) but that brought usage no lower.
            let mut no_progress = 0;
            loop {
                let usage = (self.usage)();
                if usage <= self.marks.high {
                    return true;
                }
                // In steps (the kernel reclaims in `SWAP_CLUSTER_MAX`
                // batches): each evicts about `reclaim_step` bytes and lets
                // a grace period free them before the next, so what waits
                // for a grace period stays near one step, not everything
                // from usage down to `high` at once (a 64 MiB budget held
                // 15 MiB of garbage after one reclaim from `min`).
                let step = (usage - self.marks.high).min(reclaim_step(&self.marks));
                // Met once usage is down by the step or back at `high`,
                // whatever the freed bytes booked say: reclaim then
                // declares no out-of-memory, and each one it declares (its
                // handler's call, its `ReclaimStats::ooms`) is this
                // budget's too.
                let goal = (usage - step).max(self.marks.high);
                let met = || (self.usage)() <= goal;
                // A shrinker that claims bytes it does not free (or usage
                // that does not see them) would have every step "met" and
                // this loop never end (the kernel's direct reclaim gives up
                // after `MAX_RECLAIM_RETRIES` rounds without progress).
                // After `MAX_NO_PROGRESS` such steps, one in which only the
                // usage counts: it ends the loop with the reclaimer's own
                // out-of-memory event (handler, `ReclaimStats::ooms`),
                // unless the usage does fall.
                let trust_booked = no_progress < MAX_NO_PROGRESS;
                // Counted as the reclaimer declares it, before its OOM
                // handler runs: a handler that panics unwinds past the
                // `Err` (the budget's count stayed behind the reclaimer's).
                let declared = || {
                    self.ooms.fetch_add(1, Ordering::Relaxed);
                };
                if self
                    .reclaimer
                    .reclaim_until(step, &NodeMask::all(), &met, trust_booked, &declared)
                    .is_err()
                {
                    return false;
                }
                // The kernel sees a free only once the allocator gives the
                // page back: glibc keeps freed blocks for reuse, so a
                // cgroup's usage did not fall and every step ended in
                // out-of-memory until the whole cache was evicted.
                if self.trims_heap.load(Ordering::Relaxed) && (self.usage)() >= usage {
                    crate::sys::trim_heap();
                }
                if (self.usage)() < usage {
                    no_progress = 0;
                } else {
                    no_progress += 1;
                }
            }
        })
    }
}

/// The bytes one step of a reclaim to `high` asks for: a 256th of `min`,
/// at least [`MIN_RECLAIM_STEP`] (256 KiB up to a 64 MiB budget). A
/// step's evictions wait for a grace period all at once, beside what the
/// writers retire meanwhile: steps of a 64th (1 MiB at 64 MiB) took the
/// garbage to 4.3–4.5 MiB, 256 KiB steps to 3.7 (1.5 with a bound at
/// `low`, 0.7–1.0 with the budget's at `high`).
fn reclaim_step(marks: &Watermarks) -> usize {
    (marks.min / 256).max(MIN_RECLAIM_STEP)
}

/// Steps of a reclaim to `high` in a row that may be met by the bytes
/// booked while usage does not fall, before one must lower the usage
/// itself (the kernel's `MAX_RECLAIM_RETRIES`).
const MAX_NO_PROGRESS: u32 = 16;

/// The smallest step of a reclaim to `high`.
const MIN_RECLAIM_STEP: usize = 256 << 10;

/// How long a direct reclaimer waits for a reclaim already running.
const DIRECT_WAIT: Duration = Duration::from_secs(1);

/// The turn of the one reclaim to `high` that runs; ends on drop.
struct Turn<'a>(&'a Shared);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *lock(&self.0.reclaiming) = false;
        self.0.reclaim_done.notify_all();
    }
}

impl Shared {
    /// Waits (at most `limit`) until no reclaim to `high` runs, and takes
    /// the turn; `None` on timeout.
    fn one_at_a_time(&self, limit: Option<Duration>) -> Option<Turn<'_>> {
        let deadline = limit.map(|l| Instant::now() + l);
        let mut busy = lock(&self.reclaiming);
        while *busy {
            busy = match deadline {
                None => self
                    .reclaim_done
                    .wait(busy)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    match self.reclaim_done.wait_timeout(busy, left) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    }
                }
            };
        }
        *busy = true;
        Some(Turn(self))
    }
}

/// A memory limit enforced by reclaim (see the module docs). In a child
/// process created by `fork()` its background reclaimer (`rcu-kswapd`)
/// does not exist: direct reclaim still works there, background reclaim
/// does not, and dropping the budget is fine (it lets go of its reclaimer
/// and that reclaimer's handle of the domain, so the child's last handle
/// still runs the domain's callbacks); make a new budget in the child to
/// have both.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use rcu_reclaim::Rcu;
/// use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
/// let used = Arc::new(AtomicUsize::new(0));
/// let u = used.clone();
/// let budget = MemoryBudget::new(
///     1 << 30,
///     Arc::new(Reclaimer::new(Rcu::global())),
///     move || u.load(Ordering::Relaxed),
/// );
/// used.store(10, Ordering::Relaxed);
/// budget.check(); // far under every watermark: nothing to do
/// assert_eq!(budget.stats().direct_reclaims, 0);
/// ```
pub struct MemoryBudget {
    limit: usize,
    shared: Arc<Shared>,
    /// The bound the budget set on its domain's garbage (`budget_bound`).
    bound: Option<BudgetBound>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The process that started `rcu-kswapd` (a forked child has none).
    pid: u32,
}

/// A budget stays consistent when a panic unwinds through one of its calls
/// (its locks ignore poisoning); only its `dyn` usage function and its
/// thread's handle kept the compiler from seeing that.
///
/// ```
/// fn unwind_safe<T: std::panic::RefUnwindSafe>(_: &T) {}
/// # use std::sync::Arc; use rcu_reclaim::{reclaim::*, Rcu};
/// let b = MemoryBudget::new(1 << 30, Arc::new(Reclaimer::new(Rcu::global())), || 0);
/// unwind_safe(&b);
/// ```
impl std::panic::UnwindSafe for MemoryBudget {}

/// See the [`UnwindSafe`](std::panic::UnwindSafe) impl.
impl std::panic::RefUnwindSafe for MemoryBudget {}

impl MemoryBudget {
    /// A budget of `limit` bytes with the default watermarks, reclaiming
    /// with `reclaimer`; `usage` reports the bytes in use (the accounting
    /// allocator, a cgroup file, RSS...). [`AccountingAlloc::live_bytes`](super::AccountingAlloc::live_bytes)
    /// counts only where an `AccountingAlloc` is the `#[global_allocator]`;
    /// without one it reads 0 and the budget never reclaims, so a budget
    /// given it then warns (through `tracing`, or on standard error without
    /// a subscriber).
    ///
    /// With an RCU-aware reclaimer (the default), the budget also bounds
    /// its domain's garbage while no other bound is set: one set first
    /// ([`Rcu::bound_garbage`](crate::Rcu::bound_garbage), a cgroup's, an
    /// earlier budget's) stays, and the budget's takes over as it goes (so
    /// `budget = MemoryBudget::new(..)`, which drops the old budget after
    /// making the new one, leaves the new one's bound in place). Near `high`, a
    /// thread that retires while the garbage is over half the room left
    /// below `high` (at least one reclaim step: a 256th of `min`, 256 KiB
    /// or more) waits for it to be freed, at most 1 s per retire. The
    /// bound uses the usage the budget read last (at its checks, and every
    /// 10 ms in its background thread), never calling `usage` from the
    /// retiring thread, and goes with the budget. In a forked child (no
    /// background thread there) it reads none, and holds nothing back.
    ///
    /// # Panics
    /// If `limit` is under [`Watermarks::MIN_LIMIT`] (2 bytes: no ordered
    /// watermarks fit), or the background reclaimer's thread cannot be
    /// started ([`with_watermarks`](MemoryBudget::with_watermarks) returns
    /// both as errors).
    ///
    /// ```
    /// # use std::sync::Arc; use rcu_reclaim::{pressure::*, reclaim::*, sources::*, stats::*, *};
    /// let b = MemoryBudget::new(256 << 20, Arc::new(Reclaimer::new(Rcu::global())), || 0);
    /// assert_eq!(b.watermarks(), Watermarks::from_limit(256 << 20));
    /// ```
    #[track_caller]
    pub fn new(
        limit: usize,
        reclaimer: Arc<Reclaimer>,
        usage: impl Fn() -> usize + Send + Sync + 'static,
    ) -> MemoryBudget {
        assert!(
            limit >= Watermarks::MIN_LIMIT,
            "MemoryBudget::new: a limit of {limit} bytes leaves no room for its watermarks \
             (high < low < min <= limit); give a limit of at least Watermarks::MIN_LIMIT \
             ({} bytes), in practice the bytes the process may use",
            Watermarks::MIN_LIMIT
        );
        Self::with_watermarks(limit, Watermarks::from_limit(limit), reclaimer, usage)
            .unwrap_or_else(|e| panic!("MemoryBudget::new: {e}"))
    }

    /// As [`new`](MemoryBudget::new) with explicit watermarks, which must
    /// satisfy `high < low < min <= limit`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rcu_reclaim::Rcu;
    /// use rcu_reclaim::reclaim::{BudgetError, MemoryBudget, Reclaimer, Watermarks};
    /// let r = Arc::new(Reclaimer::new(Rcu::global()));
    /// let bad = Watermarks { min: 10, low: 20, high: 30 };
    /// let err = MemoryBudget::with_watermarks(100, bad, r, || 0).unwrap_err();
    /// assert!(matches!(err, BudgetError::UnorderedWatermarks { .. }));
    /// assert!(err.to_string().contains("high < low < min"));
    /// ```
    pub fn with_watermarks(
        limit: usize,
        marks: Watermarks,
        reclaimer: Arc<Reclaimer>,
        usage: impl Fn() -> usize + Send + Sync + 'static,
    ) -> Result<MemoryBudget, BudgetError> {
        if !(marks.high < marks.low && marks.low < marks.min && marks.min <= limit) {
            return Err(BudgetError::UnorderedWatermarks { marks, limit });
        }
        if is_accounting_live_bytes(&usage) && !super::accounting::is_global_allocator() {
            let msg = "rcu-reclaim: a MemoryBudget's usage is AccountingAlloc::live_bytes, but no \
                       AccountingAlloc is the global allocator: it reads 0, and the budget never \
                       reclaims. Install it: #[global_allocator] static ALLOC: AccountingAlloc = \
                       AccountingAlloc::system();";
            crate::sys::warn_loud(msg);
        }
        // Every read is seen by the bound on the domain's garbage, which
        // never calls `usage` itself (see `budget_bound`).
        let seen = SeenUsage::new();
        let saw = seen.clone();
        let usage = move || {
            let u = usage();
            saw.saw(u);
            u
        };
        let shared = Arc::new(Shared {
            usage: Arc::new(usage),
            marks,
            reclaimer,
            wake: Arc::new(Wake::default()),
            reclaiming: Mutex::new(false),
            reclaim_done: Condvar::new(),
            background_runs: AtomicU64::new(0),
            direct_reclaims: AtomicU64::new(0),
            ooms: AtomicU64::new(0),
            deferred_in_section: AtomicU64::new(0),
            owed_reclaims: AtomicU64::new(0),
            direct_wait_timeouts: AtomicU64::new(0),
            trims_heap: AtomicBool::new(false),
        });
        let (weak, wake) = (Arc::downgrade(&shared), shared.wake.clone());
        let handle = crate::sys::spawn_quiet(
            thread::Builder::new().name("rcu-kswapd".into()),
            move || background(&weak, &wake),
        )
        .map_err(|e| BudgetError::NoThread(e.to_string()))?;
        let bound = if shared.reclaimer.rcu_loop_enabled() {
            let floor = reclaim_step(&marks);
            Some(BudgetBound::bind(
                shared.reclaimer.rcu(),
                marks.high,
                floor,
                seen,
            ))
        } else {
            None
        };
        Ok(MemoryBudget {
            limit,
            shared,
            bound,
            thread: Mutex::new(Some(handle)),
            pid: std::process::id(),
        })
    }

    /// Has reclaim trim the heap ([`crate::sys::trim_heap`]) after a step
    /// whose frees the usage does not show: for usage the kernel counts
    /// (a cgroup's, as [`budget_from_cgroup`](crate::sources::budget_from_cgroup)
    /// sets it), where freed blocks the allocator keeps still count.
    pub(crate) fn trim_heap_on_stall(&self) {
        self.shared.trims_heap.store(true, Ordering::Relaxed);
    }

    /// The limit in bytes.
    ///
    /// ```
    /// # use std::sync::Arc; use rcu_reclaim::{pressure::*, reclaim::*, sources::*, stats::*, *};
    /// let b = MemoryBudget::new(1000, Arc::new(Reclaimer::new(Rcu::global())), || 0);
    /// assert_eq!(b.limit(), 1000);
    /// ```
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The watermarks.
    ///
    /// ```
    /// # use std::sync::Arc; use rcu_reclaim::{pressure::*, reclaim::*, sources::*, stats::*, *};
    /// let b = MemoryBudget::new(1000, Arc::new(Reclaimer::new(Rcu::global())), || 0);
    /// assert_eq!(b.watermarks().min, 950);
    /// ```
    pub fn watermarks(&self) -> Watermarks {
        self.shared.marks
    }

    /// The usage now, as the budget counts it (its usage function; for
    /// [`budget_from_cgroup`](crate::sources::budget_from_cgroup), the
    /// cgroup's charge less its inactive page cache).
    ///
    /// ```
    /// # use std::sync::Arc; use rcu_reclaim::{reclaim::*, *};
    /// let b = MemoryBudget::new(1000, Arc::new(Reclaimer::new(Rcu::global())), || 640);
    /// assert_eq!(b.usage(), 640);
    /// ```
    pub fn usage(&self) -> usize {
        (self.shared.usage)()
    }

    /// The reclaimer the budget reclaims with: register the caches it may
    /// shrink there (an [`RcuCache`](crate::RcuCache) tied to the budget
    /// registers itself).
    ///
    /// ```
    /// # use std::sync::Arc; use rcu_reclaim::{reclaim::*, *};
    /// let r = Arc::new(Reclaimer::new(Rcu::global()));
    /// let b = MemoryBudget::new(1000, r.clone(), || 0);
    /// assert!(Arc::ptr_eq(b.reclaimer(), &r));
    /// ```
    pub fn reclaimer(&self) -> &Arc<Reclaimer> {
        &self.shared.reclaimer
    }

    /// Called by allocating code: over `min` (and allowed on this thread),
    /// reclaims directly back to `high` before returning; over `low`, wakes
    /// the background reclaimer. Returns false if direct reclaim ran out of
    /// memory. Direct reclaim ends: should reclaim meet its steps by the
    /// bytes the shrinkers report while usage does not fall (a shrinker
    /// that claims more than it frees), after 16 such steps one more must
    /// lower the usage itself, or it is out of memory.
    ///
    /// Inside a read-side section of the reclaimer's domain it never
    /// reclaims directly, and never waits: reclaim may wait for a grace
    /// period (or for a reclaim already running, which may be waiting for
    /// one), and the section holds every grace period up. It wakes the
    /// background reclaimer, counts [`BudgetStats::deferred_in_section`]
    /// and returns true. Allocating inside a section is ordinary Rust. On
    /// an online thread of a QSBR reclaimer domain (in no guard section),
    /// the direct reclaim is owed instead, and runs at the thread's next
    /// quiescent state, or when it goes offline
    /// ([`BudgetStats::owed_reclaims`]).
    ///
    /// ```
    /// # use std::sync::Arc; use rcu_reclaim::{pressure::*, reclaim::*, sources::*, stats::*, *};
    /// let b = MemoryBudget::new(1000, Arc::new(Reclaimer::new(Rcu::global())), || 10);
    /// assert!(b.check());
    /// ```
    pub fn check(&self) -> bool {
        check_shared(&self.shared)
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// # use std::sync::Arc; use rcu_reclaim::{pressure::*, reclaim::*, sources::*, stats::*, *};
    /// let b = MemoryBudget::new(1000, Arc::new(Reclaimer::new(Rcu::global())), || 0);
    /// assert_eq!(b.stats().background_runs, 0);
    /// ```
    pub fn stats(&self) -> BudgetStats {
        let s = &self.shared;
        BudgetStats {
            background_runs: s.background_runs.load(Ordering::Relaxed),
            direct_reclaims: s.direct_reclaims.load(Ordering::Relaxed),
            ooms: s.ooms.load(Ordering::Relaxed),
            deferred_in_section: s.deferred_in_section.load(Ordering::Relaxed),
            owed_reclaims: s.owed_reclaims.load(Ordering::Relaxed),
            direct_wait_timeouts: s.direct_wait_timeouts.load(Ordering::Relaxed),
        }
    }
}

/// [`MemoryBudget::check`] on the budget's shared state.
fn check_shared(s: &Arc<Shared>) -> bool {
    let usage = (s.usage)();
    if usage > s.marks.min && reclaim_allowed() {
        let rcu = s.reclaimer.rcu();
        if !rcu.in_read_section() {
            s.direct_reclaims.fetch_add(1, Ordering::Relaxed);
            return s.reclaim_to_high(true);
        }
        s.deferred_in_section.fetch_add(1, Ordering::Relaxed);
        #[cfg(not(loom))]
        owe_at_quiescent_state(s, rcu);
    }
    if usage > s.marks.low {
        let mut st = lock(&s.wake.state);
        if !st.requested {
            st.requested = true;
            s.wake.cond.notify_one();
        }
    }
    true
}

thread_local! {
    /// The budget (a `Weak<Shared>` made raw; null: none) whose direct
    /// reclaim an online QSBR registration of this thread owes. No
    /// destructor: set from inside the global allocator.
    #[cfg(not(loom))]
    static OWED_RECLAIM: std::cell::Cell<*const Shared> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// Over `min` on an online QSBR thread of the reclaimer's domain (and in
/// no other section of it), direct reclaim cannot run: it may wait for a
/// grace period, which this thread's online state holds up. The thread
/// owes it instead and runs it at its next quiescent state,
/// or when it goes offline, as it pays a pressure-throttle wait (an event
/// loop that reports every iteration reclaims an iteration later).
#[cfg(not(loom))]
fn owe_at_quiescent_state(s: &Arc<Shared>, rcu: &crate::Rcu) {
    if rcu.flavor() != crate::Flavor::Qsbr || !crate::reader::qsbr_only_section_in(rcu.id()) {
        return;
    }
    let _ = OWED_RECLAIM.try_with(|owed| {
        let old = owed.replace(Weak::into_raw(Arc::downgrade(s)));
        if !old.is_null() {
            // SAFETY: from `Weak::into_raw` above, taken back once.
            drop(unsafe { Weak::from_raw(old) });
        }
    });
    crate::reader::owe_at_quiescent_state(rcu.registry(), pay_owed_reclaim);
}

/// Runs the direct reclaim this thread owes (see
/// `owe_at_quiescent_state`), now offline.
#[cfg(not(loom))]
fn pay_owed_reclaim() {
    let owed = OWED_RECLAIM
        .try_with(|owed| owed.replace(std::ptr::null()))
        .unwrap_or(std::ptr::null());
    if owed.is_null() {
        return;
    }
    // SAFETY: from `Weak::into_raw` in `owe_at_quiescent_state`, taken
    // back once (the cell is cleared above).
    let weak = unsafe { Weak::from_raw(owed) };
    if let Some(s) = weak.upgrade() {
        s.owed_reclaims.fetch_add(1, Ordering::Relaxed);
        check_shared(&s);
    }
}

/// Whether `usage` is [`AccountingAlloc::live_bytes`](super::AccountingAlloc::live_bytes)
/// itself (its function item; a closure around it is not recognised).
fn is_accounting_live_bytes<F: 'static>(_usage: &F) -> bool {
    fn type_of<T: 'static>(_: &T) -> std::any::TypeId {
        std::any::TypeId::of::<T>()
    }
    std::any::TypeId::of::<F>() == type_of(&super::AccountingAlloc::live_bytes)
}

// `AccountingAlloc::enforce` is here, with the budget it installs, so
// that the allocator's file stays below this one (it checks the budget
// through `accounting::DirectReclaim`).
impl super::AccountingAlloc<std::alloc::System> {
    /// Makes allocations enforce `budget` (optional direct
    /// reclaim): every 16 KiB of growth a thread checks it, reclaiming
    /// directly over `min` and waking the background reclaimer over `low`.
    /// Threads inside reclaim, inside [`no_reclaim`](crate::reclaim::no_reclaim), or
    /// holding one of this crate's locks never reclaim from an allocation;
    /// code that allocates while holding a lock that a shrinker (or a
    /// `tracing` subscriber, which reclaim logs to) needs must use
    /// `no_reclaim` too, as kernel code uses `GFP_NOFS`. A panic in the
    /// reclaim an allocation runs (a shrinker's, say) never unwinds out of
    /// the allocator: it is reported with `tracing::error!` and the
    /// allocation proceeds. Once per process; returns the budget back if one
    /// is installed already.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use rcu_reclaim::Rcu;
    /// use rcu_reclaim::reclaim::{AccountingAlloc, MemoryBudget, Reclaimer};
    /// #[global_allocator]
    /// static ALLOC: AccountingAlloc = AccountingAlloc::system();
    /// let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
    /// let budget = MemoryBudget::new(512 << 20, reclaimer, AccountingAlloc::live_bytes);
    /// AccountingAlloc::enforce(Arc::new(budget)).unwrap();
    /// ```
    ///
    /// Only allocations through an `AccountingAlloc` that is the program's
    /// `#[global_allocator]` check the budget: without one, nothing ever
    /// does, and the call says so (through `tracing`, or on standard error
    /// with no subscriber), naming the fix.
    pub fn enforce(budget: Arc<MemoryBudget>) -> Result<(), Arc<MemoryBudget>> {
        if !super::accounting::is_global_allocator() {
            crate::sys::warn_loud(
                "rcu-reclaim: AccountingAlloc::enforce() was called, but no AccountingAlloc is the \
                 global allocator: no allocation will ever check the budget. Install it: \
                 #[global_allocator] static ALLOC: AccountingAlloc = AccountingAlloc::system();",
            );
        }
        if super::accounting::install_direct(budget.clone()) {
            Ok(())
        } else {
            Err(budget)
        }
    }
}

impl super::accounting::DirectReclaim for MemoryBudget {
    fn check_from_allocation(&self) {
        self.check();
    }
}

impl Drop for MemoryBudget {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A forked child: `rcu-kswapd` stayed in the parent, and
            // joining its handle here would wait on a thread that does not
            // exist (it panicked). Its state lock may have been held at the
            // fork: touch nothing shared.
            let handle = match self.thread.get_mut() {
                Ok(h) => h.take(),
                Err(p) => p.into_inner().take(),
            };
            std::mem::forget(handle);
            // Removed only if the limit's lock is free: it may have been
            // held at the fork, by a thread the child does not have.
            if let Some(bound) = self.bound.take() {
                bound.release_in_child();
            }
            // The rest lets go of the reclaimer (and its handle of the
            // domain) with the budget, unless the thread was reclaiming
            // at the fork: it then holds them for ever here.
            if Arc::strong_count(&self.shared) > 1 {
                crate::sys::warn_loud(
                    "rcu-reclaim: a MemoryBudget dropped in a forked child cannot let go of its \
                     reclaimer (its rcu-kswapd thread was reclaiming at the fork): the child's \
                     last handle of the domain will not run its callbacks",
                );
            }
            return;
        }
        lock(&self.shared.wake.state).shutdown = true;
        self.shared.wake.cond.notify_all();
        let handle = lock(&self.thread).take();
        if let Some(h) = handle {
            self.shared.reclaimer.rcu().join_helper(h, "rcu-kswapd");
        }
        if let Some(bound) = self.bound.take() {
            bound.release();
        }
    }
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit)
            .field("watermarks", &self.shared.marks)
            .finish_non_exhaustive()
    }
}

/// The background reclaimer: sleeps until woken (or every 10 ms, so a
/// budget nobody checks is still watched), then reclaims to `high` under a
/// pressure signal on RCU. A panic in a reclaim is reported, and the
/// thread goes on; while every look panics, its unasked looks come less
/// often ([`policy::kswapd_idle_wait`]).
fn background(shared: &Weak<Shared>, wake: &Wake) {
    let mut panics_in_a_row: u32 = 0;
    loop {
        {
            let mut st = lock(&wake.state);
            if st.shutdown {
                return;
            }
            // A request made while the last reclaim ran is not waited for.
            if !st.requested {
                let idle = policy::kswapd_idle_wait(panics_in_a_row);
                st = match wake.cond.wait_timeout(st, idle) {
                    Ok((st, _)) => st,
                    Err(p) => p.into_inner().0,
                };
            }
            if st.shutdown {
                return;
            }
            st.requested = false;
        }
        // Held for this look only, never across the wait (see
        // `Shared::wake`).
        let Some(s) = shared.upgrade() else { return };
        // A panic in the caller's code (a shrinker, the OOM handler, the
        // usage function, here or in the reclaim) would end this thread,
        // and with it background reclaim for the budget's lifetime: report
        // it and go on (the reclaim turn and the marks restore on unwind).
        let run = crate::sync::catch_panic(|| {
            if (s.usage)() > s.marks.low {
                s.background_runs.fetch_add(1, Ordering::Relaxed);
                // An RCU-unaware reclaimer (kept for comparison) signals nothing.
                let _pressure = s
                    .reclaimer
                    .rcu_loop_enabled()
                    .then(|| s.reclaimer.rcu().pressure_start_all());
                s.reclaim_to_high(false);
            }
        });
        if run.is_err() {
            panics_in_a_row = panics_in_a_row.saturating_add(1);
            crate::sync::report_caught(|| {
                tracing::error!(
                    "rcu-reclaim: background reclaim (rcu-kswapd) panicked in a shrinker, the \
                     OOM handler or the usage function ({panics_in_a_row} in a row); it goes on \
                     at the next request, or unasked after {:?}",
                    policy::kswapd_idle_wait(panics_in_a_row)
                );
            });
        } else {
            panics_in_a_row = 0;
        }
    }
}
