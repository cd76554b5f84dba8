//! What reclaim reports: a successful call's [`Reclaimed`], an
//! out-of-memory outcome's [`OomReport`] (and the [`OutOfMemory`] error
//! that carries it), and the reclaimer's running [`ReclaimStats`].

use std::fmt;

/// What a successful [`Reclaimer::reclaim`](super::Reclaimer::reclaim) did.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use rcu_reclaim::pressure::NodeMask;
/// use rcu_reclaim::reclaim::{Reclaimer, Scanned, ShrinkControl, Shrinker};
/// // A pool that frees at once (not through RCU).
/// struct Pool(Mutex<Vec<Vec<u8>>>);
/// impl Shrinker for Pool {
///     fn count(&self, _: &ShrinkControl) -> usize {
///         self.0.lock().unwrap().len()
///     }
///     fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
///         let mut pool = self.0.lock().unwrap();
///         let n = ctl.nr_to_scan().min(pool.len());
///         let bytes = pool.drain(..n).map(|v| v.len()).sum();
///         Scanned { freed: n, bytes }
///     }
/// }
/// let pool = Arc::new(Pool(Mutex::new(vec![vec![0u8; 4096]; 256]))); // 1 MiB
/// let reclaimer = Reclaimer::new(rcu_reclaim::Rcu::global());
/// reclaimer.register(pool.clone());
/// let done = reclaimer.reclaim(64 << 10, &NodeMask::all()).unwrap();
/// assert!(done.freed_bytes >= 64 << 10);
/// assert_eq!(done.queued_via_rcu_bytes, 0); // the pool frees at once
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Reclaimed {
    /// Bytes really freed: by shrinkers that free at once, and by RCU
    /// callbacks that reclaim ran or waited for.
    pub freed_bytes: usize,
    /// Of those, bytes freed by RCU (`run_callbacks` and the final barrier).
    pub freed_by_rcu_bytes: usize,
    /// Bytes shrinkers queued for RCU (in flight until a grace period).
    pub queued_via_rcu_bytes: usize,
    /// The lowest (most desperate) priority reached.
    pub priority: u8,
    /// Whether reclaim waited for RCU with a barrier.
    pub waited_for_rcu: bool,
    /// Whether the call did nothing because this thread may not reclaim
    /// (it is reclaiming already, or inside [`no_reclaim`](super::no_reclaim)).
    pub recursion_refused: bool,
}

/// What reclaim saw when it gave up; passed to the OOM handler.
///
/// ```
/// use rcu_reclaim::{pressure::NodeMask, reclaim::Reclaimer, Rcu};
/// let reclaimer = Reclaimer::new(Rcu::global());
/// reclaimer.set_oom_handler(|report| assert_eq!(report.target_bytes, 1 << 30));
/// // Nothing to free: reclaim gives up, and the handler sees why.
/// let err = reclaimer.reclaim(1 << 30, &NodeMask::all()).unwrap_err();
/// assert!(err.0.shrinkers.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct OomReport {
    /// The bytes asked for.
    pub target_bytes: usize,
    /// What reclaim achieved (see [`Reclaimed`]).
    pub reclaimed: Reclaimed,
    /// Each shrinker's name and freeable count at the end.
    pub shrinkers: Vec<(String, usize)>,
    /// RCU's backlog at the end: callbacks and bytes.
    pub rcu_pending: (usize, usize),
}

impl fmt::Display for OomReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "out of memory: reclaim freed {} of {} bytes down to priority {} ({} bytes queued for RCU; RCU still holds {} callbacks, {} bytes); shrinkers:",
            self.reclaimed.freed_bytes,
            self.target_bytes,
            self.reclaimed.priority,
            self.reclaimed.queued_via_rcu_bytes,
            self.rcu_pending.0,
            self.rcu_pending.1
        )?;
        if self.shrinkers.is_empty() {
            write!(f, " none registered (register a cache or another shrinker with the budget's reclaimer)")?;
        }
        for (name, count) in &self.shrinkers {
            write!(f, " {name}={count}")?;
        }
        if self.shrinkers.iter().all(|(_, count)| *count == 0)
            && !self.shrinkers.is_empty()
            && self.reclaimed.freed_bytes < self.target_bytes
        {
            // A new user's cache, emptied by a memory hog beside it, read
            // "RcuCache=0" and could not tell what held the memory.
            write!(
                f,
                "; every shrinker is empty: what holds the memory is outside them (other \
                 allocations in the process or its cgroup, or free memory the allocator keeps): \
                 shed that load, or give the budget a higher limit"
            )?;
        }
        if self.target_bytes > 0 && self.reclaimed.freed_bytes >= self.target_bytes {
            // Counted as freed, yet the measure of memory did not come down.
            write!(
                f,
                "; the bytes counted as freed cover the target, but the memory measured did not \
                 fall to it: a shrinker may report more than it frees (its `scan` must return \
                 the bytes its objects really held), or other code allocated meanwhile"
            )?;
        }
        Ok(())
    }
}

/// Reclaim failed to meet its target; the report says why.
///
/// ```
/// use rcu_reclaim::{pressure::NodeMask, reclaim::Reclaimer, Rcu};
/// let reclaimer = Reclaimer::new(Rcu::global());
/// reclaimer.set_oom_handler(|_| {}); // quiet
/// match reclaimer.reclaim(1 << 30, &NodeMask::all()) {
///     Ok(done) => println!("freed {} bytes", done.freed_bytes),
///     Err(oom) => println!("{oom}"), // what was freed, what RCU still holds
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfMemory(pub OomReport);

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for OutOfMemory {}

/// Per-priority counts, in [`ReclaimStats`].
///
/// ```
/// use rcu_reclaim::reclaim::Reclaimer;
/// let reclaimer = Reclaimer::new(rcu_reclaim::Rcu::global());
/// reclaimer.shrink(2);
/// let s = reclaimer.stats();
/// assert_eq!(s.by_priority.len(), 13); // 12 (gentle) .. 0 (desperate)
/// println!("priority 2: {:?}", s.by_priority[2]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PriorityStats {
    /// Passes made at this priority.
    pub passes: u64,
    /// Objects scanned at this priority.
    pub scanned: u64,
    /// Bytes freed at once by shrinkers.
    pub freed_bytes: u64,
    /// Bytes queued for RCU by shrinkers.
    pub queued_via_rcu_bytes: u64,
    /// Bytes freed by `run_callbacks` after the pass.
    pub rcu_freed_bytes: u64,
}

/// Counters of a [`Reclaimer`](super::Reclaimer), serializable with serde.
///
/// ```
/// use rcu_reclaim::reclaim::Reclaimer;
/// let reclaimer = Reclaimer::new(rcu_reclaim::Rcu::global());
/// assert_eq!(reclaimer.stats().calls, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ReclaimStats {
    /// Calls to `reclaim`.
    pub calls: u64,
    /// Priority passes run.
    pub passes: u64,
    /// Index 12 (gentle) .. 0 (desperate).
    pub by_priority: Vec<PriorityStats>,
    /// Barriers reclaim waited on before giving up.
    pub rcu_waits: u64,
    /// Out-of-memory outcomes: calls that returned [`OutOfMemory`], each
    /// handed to the OOM handler once (so this equals the handler's calls).
    /// A [`MemoryBudget`](super::MemoryBudget) counts in
    /// [`BudgetStats::ooms`](super::BudgetStats::ooms) the same events for
    /// the reclaims it ran: the two agree when the budget is the
    /// reclaimer's only caller.
    pub ooms: u64,
    /// Calls refused because the thread was already reclaiming.
    pub recursion_refused: u64,
    /// Time spent reclaiming, in microseconds.
    pub time_us: u64,
}

impl ReclaimStats {
    /// Adds one pass at `priority` (saturating, see `book_scan`).
    pub(super) fn add_pass(&mut self, priority: u8, pass: &PriorityStats) {
        self.passes = self.passes.saturating_add(1);
        let p = &mut self.by_priority[usize::from(priority)];
        p.passes = p.passes.saturating_add(1);
        p.scanned = p.scanned.saturating_add(pass.scanned);
        p.freed_bytes = p.freed_bytes.saturating_add(pass.freed_bytes);
        p.queued_via_rcu_bytes = p
            .queued_via_rcu_bytes
            .saturating_add(pass.queued_via_rcu_bytes);
        p.rcu_freed_bytes = p.rcu_freed_bytes.saturating_add(pass.rcu_freed_bytes);
    }
}
