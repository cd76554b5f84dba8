//! Memory-pressure mode: the `rcu_mempressure_start()/end()` proposed in the
//! 2020 kernel discussion of RCU and the OOM killer (see the README), counted
//! per NUMA node, and `run_callbacks(nodemask, priority)`, the call memory
//! reclaim makes after each priority pass so that what its shrinkers queued
//! for RCU is really freed before it escalates.
//!
//! Use it when the program itself knows memory is short (an allocation
//! failed, a cache hit its limit, a watchdog fired): hold a
//! [`PressureGuard`] from [`Rcu::pressure_start`] (one NUMA node, chosen by
//! [`NodeMask`] where several are involved) or [`Rcu::pressure_start_all`]
//! while it lasts, and call [`Rcu::run_callbacks`] to free what RCU holds
//! now; its [`RunReport`] says what it did ([`RunAction`]). The
//! `sources` module does the same from kernel signals.
//!
//! ```
//! use rcu_reclaim::pressure::{NodeMask, RunAction};
//! use rcu_reclaim::{Config, Rcu};
//!
//! // A domain that frees only when asked, so the backlog waits here.
//! let rcu = Rcu::new(Config::new().on_demand()).unwrap();
//! rcu.defer_drop_sized(Box::new(vec![0u8; 1 << 20]), 1 << 20);
//! let guard = rcu.pressure_start_all(); // fast mode while held
//! let report = rcu.run_callbacks(&NodeMask::all(), 0);
//! // Freed by this call (a barrier, at priority 0), unless the domain's
//! // worker, which the signal woke, got there first (before the call, or
//! // during its barrier).
//! match report.action {
//!     RunAction::Barrier => assert!(report.bytes_freed <= 1 << 20),
//!     other => assert_eq!(other, RunAction::Nothing),
//! }
//! guard.end();
//! rcu.barrier();
//! assert_eq!(rcu.stats().bytes_freed, 1 << 20);
//! ```
//!
//! # Fast mode and its policy
//! Fast mode is in force while any pressure count is non-zero, and for at
//! least two grace periods after the last pressure ends (hysteresis). In
//! fast mode every shard on a pressured node asks for a grace period as soon
//! as it holds anything (the lazy delay and batch are cancelled), threads'
//! buffered pages are taken to the shards once a millisecond old while
//! any node is pressured (a thread that keeps retiring hands its own on
//! when due; taking every page at every look cost a `membarrier` each),
//! in the hysteresis no shard asks, so they wait for the lazy delay as
//! usual, workers run
//! without a batch limit, and grace periods are **expedited only while the
//! backlog on the pressured nodes holds at least
//! [`Config::fast_min_bytes`](crate::Config::fast_min_bytes)** (1 MiB by
//! default). So a pressure signal costs two counter updates and, on the
//! first start, one wake-up of the grace-period thread; with little to free
//! it changes nothing else, and a signal that flaps at 1 kHz cannot turn the
//! domain into a stream of expedited grace periods (the kernel's 2020
//! attempt, "fast mode for 0.1 s on every shrinker call", cost 78–86%).

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::callbacks::without_page_allocation;
use crate::domain::Rcu;
use crate::gp::WaitMode;
pub use crate::policy::MemoryState;
use crate::policy::{self, RunWork};

/// The bound on node ids a [`NodeMask`] holds (a mask is a bitmap).
const MAX_NODE_ID: usize = 1 << 16;

/// A set of NUMA nodes.
///
/// ```
/// use rcu_reclaim::pressure::NodeMask;
/// let m: NodeMask = [0, 2].into_iter().collect();
/// assert!(m.contains(2) && !m.contains(1));
/// assert!(NodeMask::all().contains(7));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct NodeMask {
    all: bool,
    bits: Vec<u64>,
}

impl NodeMask {
    /// Every node.
    ///
    /// ```
    /// assert!(rcu_reclaim::pressure::NodeMask::all().contains(0));
    /// ```
    pub fn all() -> NodeMask {
        NodeMask {
            all: true,
            bits: Vec::new(),
        }
    }

    /// No node.
    ///
    /// ```
    /// assert!(!rcu_reclaim::pressure::NodeMask::none().contains(0));
    /// ```
    pub fn none() -> NodeMask {
        NodeMask::default()
    }

    /// Just `node`.
    ///
    /// # Panics
    /// As [`with`](NodeMask::with), for a node id of 65,536 or more.
    ///
    /// ```
    /// let m = rcu_reclaim::pressure::NodeMask::node(1);
    /// assert!(m.contains(1) && !m.contains(0));
    /// ```
    pub fn node(node: usize) -> NodeMask {
        NodeMask::none().with(node)
    }

    /// This mask plus `node`.
    ///
    /// # Panics
    /// If `node` is 65,536 or more (Linux's node ids are below 1024).
    ///
    /// ```
    /// let m = rcu_reclaim::pressure::NodeMask::node(0).with(3);
    /// assert!(m.contains(3));
    /// ```
    pub fn with(mut self, node: usize) -> NodeMask {
        assert!(
            node < MAX_NODE_ID,
            "rcu-reclaim: NUMA node {node} is out of range: node ids are below {MAX_NODE_ID} \
             (Linux has at most 1024 nodes); use NodeMask::all() for every node"
        );
        let (w, b) = (node / 64, node % 64);
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        self.bits[w] |= 1 << b;
        self
    }

    /// Whether `node` is in the mask.
    ///
    /// ```
    /// assert!(rcu_reclaim::pressure::NodeMask::node(5).contains(5));
    /// ```
    pub fn contains(&self, node: usize) -> bool {
        self.all
            || self
                .bits
                .get(node / 64)
                .is_some_and(|w| w & (1 << (node % 64)) != 0)
    }
}

impl FromIterator<usize> for NodeMask {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        iter.into_iter().fold(NodeMask::none(), NodeMask::with)
    }
}

impl fmt::Debug for NodeMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all {
            return f.write_str("NodeMask(all)");
        }
        let nodes: Vec<usize> = (0..self.bits.len() * 64)
            .filter(|&n| self.contains(n))
            .collect();
        write!(f, "NodeMask({nodes:?})")
    }
}

/// Ends a pressure signal when dropped (see [`Rcu::pressure_start`]).
///
/// ```
/// let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new()).unwrap();
/// {
///     let _short = rcu.pressure_start_all(); // memory is short: fast mode
///     assert!(rcu.pressure() > 0);
/// } // dropped: the signal ends
/// assert_eq!(rcu.pressure(), 0);
/// ```
#[must_use = "pressure ends when the guard is dropped"]
pub struct PressureGuard {
    rcu: Rcu,
    node: Option<usize>,
}

impl PressureGuard {
    /// Ends the pressure signal now (the same as dropping the guard).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let guard = rcu.pressure_start(0);
    /// guard.end();
    /// assert_eq!(rcu.pressure(), 0);
    /// ```
    pub fn end(self) {}
}

impl Drop for PressureGuard {
    fn drop(&mut self) {
        let inner = self.rcu.inner();
        inner
            .callbacks
            .pressure
            .end(self.node, inner.gp.completed());
    }
}

impl fmt::Debug for PressureGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PressureGuard")
            .field("node", &self.node)
            .finish()
    }
}

/// What [`Rcu::run_callbacks`] decided to do.
///
/// ```
/// use rcu_reclaim::pressure::{NodeMask, RunAction};
/// let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new()).unwrap();
/// // Nothing queued: nothing to do.
/// assert_eq!(rcu.run_callbacks(&NodeMask::all(), 12).action, RunAction::Nothing);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum RunAction {
    /// Too little pending on those nodes to be worth anything.
    Nothing,
    /// Ran what was already past its grace period, on the caller's thread.
    InvokedReady,
    /// Ran an expedited grace period, then the callbacks it made ready.
    Expedited,
    /// Flushed every thread's buffer and ran everything queued on those
    /// nodes (a barrier restricted to them).
    Barrier,
}

/// What one [`Rcu::run_callbacks`] call did, so reclaim can count real
/// progress rather than "queued for freeing".
///
/// ```
/// use rcu_reclaim::pressure::NodeMask;
/// let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new()).unwrap();
/// rcu.defer_drop(Box::new(vec![0u8; 1 << 20]));
/// let report = rcu.run_callbacks(&NodeMask::all(), 0); // 0: the most urgent
/// println!("{:?}: {} run, {} bytes freed in {:?}", report.action, report.invoked, report.bytes_freed, report.elapsed);
/// assert!(report.invoked <= 1);
/// rcu.barrier();
/// assert_eq!(rcu.pending_bytes(), 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RunReport {
    /// The decision.
    pub action: RunAction,
    /// Callbacks and deferred drops run during the call: by this thread,
    /// or by a worker that ran some of those nodes' queue meanwhile (what
    /// left the queue, when that is more than this thread ran).
    pub invoked: usize,
    /// Bytes they accounted.
    pub bytes_freed: usize,
    /// Pending on those nodes before the call (callbacks, bytes).
    pub pending_before: (usize, usize),
    /// Wall time of the call (zero for [`RunAction::Nothing`], which does
    /// not read the clock).
    pub elapsed: Duration,
}

impl Rcu {
    /// Signals memory pressure on NUMA `node` until the guard is dropped.
    /// Signals nest and overlap (several sources, several threads); the
    /// domain is in fast mode while any is held and for at least two grace
    /// periods after the last ends. See the module docs for the policy.
    /// A `node` beyond the domain's [`topology`](Rcu::topology) wraps
    /// around (node `n` is node `n % nodes`), as CPUs do for shards.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// let guard = rcu.pressure_start(0);
    /// assert!(rcu.in_fast_mode());
    /// drop(guard);
    /// rcu.synchronize();
    /// rcu.synchronize();
    /// assert!(!rcu.in_fast_mode());
    /// ```
    pub fn pressure_start(&self, node: usize) -> PressureGuard {
        let nodes = self.topology().nodes();
        self.start_pressure(Some(node % nodes))
    }

    /// Signals memory pressure on every node (a process-wide source such as
    /// PSI or a cgroup limit).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// let _guard = rcu.pressure_start_all();
    /// assert_eq!(rcu.pressure_on(0), 1);
    /// ```
    pub fn pressure_start_all(&self) -> PressureGuard {
        self.start_pressure(None)
    }

    fn start_pressure(&self, node: Option<usize>) -> PressureGuard {
        let inner = self.inner();
        // The fast-mode clock's lock, which the parent's grace-period
        // thread takes: given up on in a child forked without
        // `prepare_fork`, naming the fix.
        let _forked = crate::sync::ForkedWaits::scope(inner.gp.fork_check("pressure_start"));
        let p = &inner.callbacks.pressure;
        // A node beyond the domain's topology wraps around, as CPUs do.
        let node = node.map(|n| n % p.nodes());
        let (first, entered) = p.start(node, inner.gp.completed());
        if first && entered && inner.callbacks.pending(&inner.gp).0 > 0 {
            // Cancel the lazy delay now, not at the next timer.
            #[cfg(not(loom))]
            inner.kthread.kick(inner);
        }
        PressureGuard {
            rcu: self.clone(),
            node,
        }
    }

    /// Bounds the garbage this domain holds (values retired and not yet
    /// freed) by a memory limit, with or without a pressure signal: a
    /// thread that retires while the garbage is over half of what would
    /// take `usage()` to `mark` bytes (the rest of the process as it was at
    /// the last read; at least 2 MiB) waits, outside read-side sections,
    /// for grace periods to end and the garbage to be freed, until it is
    /// under half of that again, for at most 1 s per retire (looked at
    /// between naps: on a machine with far more busy threads than CPUs, a
    /// thread that naps may wait longer for its CPU back). What a
    /// retiring thread holds itself (its buffered page, and ready values it
    /// frees a few per retire) counts too: when it would take the garbage
    /// over, it goes to the workers and the thread waits for it. The retiring
    /// thread reads `usage` itself (only while the garbage is over 2 MiB,
    /// at most every 5 ms, and every millisecond while over), so the bound
    /// needs no monitor thread that gets a CPU in time. `usage` returns the
    /// bytes in use, or `None` when it cannot tell (nothing waits then);
    /// it runs on a retiring thread, which may hold the caller's locks, so
    /// it must not block on them, retire, or panic (a panic is caught,
    /// reported, and bounds nothing). The domain keeps `usage` until the
    /// bound is replaced or removed: a reader that owns a clone of the
    /// domain keeps it alive (and its queued drops unrun) until then, so
    /// give it what it reads, not the `Rcu`. A wait also ends once a
    /// worker has been asleep on one callback or destructor for 5 ms while
    /// the usage is under three quarters of `mark`, 100 ms from there and
    /// 500 ms over `mark` (it may be blocked on a lock the retiring thread
    /// holds: retire outside locks that a deferred `Drop` takes; this
    /// warns): near the limit a free may sleep that long on the
    /// allocator's locks or the kernel's reclaim.
    ///
    /// `sources::bound_garbage_by_cgroup` sets it from the process's
    /// cgroup (as `sources::auto_pressure` and `budget_from_cgroup` do; the
    /// sources, a layer above, are not named from here);
    /// `Stats::headroom_waits` counts the waits. A new call replaces the
    /// bound. A [`MemoryBudget`](crate::reclaim::MemoryBudget)'s own bound
    /// that it replaces waits meanwhile, and bounds the garbage again once
    /// [`unbound_garbage`](Rcu::unbound_garbage) removes this one (for as
    /// long as its budget lives).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// // 85 MiB is where the process is short of memory; it uses 30.
    /// rcu.bound_garbage(85 << 20, || Some(30 << 20));
    /// assert!(rcu.garbage_bounded());
    /// rcu.defer_drop(Box::new(vec![0u8; 64 << 10]));
    /// assert_eq!(rcu.stats().headroom_waits, 0); // 27 MiB allowed
    /// rcu.unbound_garbage();
    /// assert!(!rcu.garbage_bounded());
    /// ```
    pub fn bound_garbage(
        &self,
        mark: usize,
        usage: impl Fn() -> Option<usize> + Send + Sync + 'static,
    ) {
        self.inner()
            .callbacks
            .set_headroom(Some(crate::callbacks::Headroom::new(mark, Box::new(usage))));
    }

    /// Removes the bound of [`bound_garbage`](Rcu::bound_garbage); threads
    /// waiting for their garbage under it go on at once. A
    /// [`MemoryBudget`](crate::reclaim::MemoryBudget)'s own bound is the
    /// budget's: it is not removed (it goes with its budget), and one that
    /// waited behind the bound removed takes its place.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// rcu.bound_garbage(64 << 20, || None);
    /// rcu.unbound_garbage();
    /// assert!(!rcu.garbage_bounded());
    /// ```
    pub fn unbound_garbage(&self) {
        self.inner().callbacks.set_headroom(None);
    }

    /// Whether a memory limit bounds this domain's garbage
    /// ([`bound_garbage`](Rcu::bound_garbage), or an RCU-aware
    /// `MemoryBudget`'s own bound), or a cap does
    /// ([`Config::max_pending_bytes`](crate::Config::max_pending_bytes)).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// assert!(!rcu.garbage_bounded());
    /// ```
    pub fn garbage_bounded(&self) -> bool {
        self.inner().callbacks.has_headroom()
    }

    /// How short memory is for this domain: [`MemoryState::OverMark`] while
    /// the usage of the memory limit given to
    /// [`bound_garbage`](Rcu::bound_garbage) (or the usage an RCU-aware
    /// `MemoryBudget` last read, against its `high` watermark, where the
    /// budget's own bound is the domain's) is over its mark,
    /// [`MemoryState::Short`] while it is over three quarters of the mark
    /// or a pressure signal is held, else [`MemoryState::Plenty`]. The
    /// usage is the last one read, read anew when older than a
    /// millisecond (by one thread at a time), and projected 8 ms ahead at
    /// the pace it grew since the read before (a flood fills a cgroup
    /// faster than reads a millisecond apart see); one that cannot be
    /// read counts as plenty. For code
    /// that queues work holding memory the domain cannot weigh (callbacks
    /// that book no bytes, a queue of its own) and would hold its
    /// producers back: the domain's own [`call`](Rcu::call) does so past
    /// 4,096 callbacks outstanding when `Short`, 256 when `OverMark`, and
    /// the liburcu
    /// drop-in's `call_rcu` past 4,096 waiting callbacks when `Short`, 256
    /// when `OverMark`. Without a bound or a signal: two loads.
    ///
    /// ```
    /// use rcu_reclaim::pressure::MemoryState;
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// assert_eq!(rcu.memory_state(), MemoryState::Plenty);
    /// // A limit whose mark is 80 MiB, with 70 MiB in use.
    /// rcu.bound_garbage(80 << 20, || Some(70 << 20));
    /// assert_eq!(rcu.memory_state(), MemoryState::Short);
    /// rcu.bound_garbage(80 << 20, || Some(90 << 20));
    /// assert_eq!(rcu.memory_state(), MemoryState::OverMark);
    /// rcu.unbound_garbage();
    /// let _signal = rcu.pressure_start(0);
    /// assert_eq!(rcu.memory_state(), MemoryState::Short);
    /// ```
    pub fn memory_state(&self) -> MemoryState {
        self.inner().callbacks.memory_state()
    }

    /// Bytes freed by callbacks and deferred drops of this domain so far,
    /// on any thread: reclaim reads it around a call to credit frees that
    /// workers did on its behalf.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// rcu.call_sized(|| {}, 10);
    /// rcu.barrier();
    /// assert_eq!(rcu.bytes_freed(), 10);
    /// ```
    pub fn bytes_freed(&self) -> u64 {
        self.inner()
            .callbacks
            .counters
            .bytes_freed
            .load(Ordering::Relaxed)
    }

    /// Pressure signals held now, all nodes together.
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::Rcu::new(Default::default()).unwrap().pressure(), 0);
    /// ```
    pub fn pressure(&self) -> usize {
        self.inner().callbacks.pressure.total()
    }

    /// Pressure signals held now on `node`.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// let _g = rcu.pressure_start(0);
    /// assert_eq!(rcu.pressure_on(0), 1);
    /// ```
    pub fn pressure_on(&self, node: usize) -> usize {
        self.inner().callbacks.pressure.count_on(node)
    }

    /// Whether the domain is in fast mode (pressure, or its hysteresis).
    ///
    /// ```
    /// assert!(!rcu_reclaim::Rcu::new(Default::default()).unwrap().in_fast_mode());
    /// ```
    pub fn in_fast_mode(&self) -> bool {
        let inner = self.inner();
        // As in `start_pressure`.
        let _forked = crate::sync::ForkedWaits::scope(inner.gp.fork_check("in_fast_mode()"));
        inner.callbacks.pressure.observe(inner.gp.completed())
    }

    /// Callbacks and deferred drops queued on the shards of the nodes in
    /// `mask`, and their bytes (pages still buffered by threads are on no
    /// node yet).
    ///
    /// ```
    /// use rcu_reclaim::pressure::NodeMask;
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// rcu.call_sized(|| {}, 100);
    /// assert_eq!(rcu.pending_on(&NodeMask::all()), (1, 100));
    /// rcu.barrier();
    /// ```
    pub fn pending_on(&self, mask: &NodeMask) -> (usize, usize) {
        let cbs = &self.inner().callbacks;
        (0..cbs.topology.nodes())
            .filter(|&n| mask.contains(n))
            .map(|n| cbs.pending_on_node(n))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// The call memory reclaim makes after each priority pass (12 gentle ..
    /// 0 desperate): RCU looks at the backlog on `mask`'s nodes and decides.
    ///
    /// * nothing pending there: [`RunAction::Nothing`] (a few loads);
    /// * priority 10 and above, or too little pending for the priority
    ///   (`64 KiB << priority`), or called inside a read-side section: run
    ///   what is already past its grace period ([`RunAction::InvokedReady`]);
    /// * otherwise an expedited grace period on the caller's thread, then
    ///   run what it made ready ([`RunAction::Expedited`]);
    /// * priority 0 with a backlog: flush every thread's buffered pages and
    ///   run everything on those nodes ([`RunAction::Barrier`]).
    ///
    /// Callbacks run on the caller's thread with bulk-page allocation
    /// forbidden ([`without_page_allocation`]), as the kernel marks reclaim
    /// with `PF_MEMALLOC`, so they cannot recurse into reclaim. When it only
    /// runs what is ready, shards a worker is running are skipped; after a
    /// grace period it waits for such a worker's batch, then runs the rest.
    /// [`Rcu::bytes_freed`] also counts what workers freed meanwhile.
    ///
    /// ```
    /// use rcu_reclaim::pressure::{NodeMask, RunAction};
    /// use rcu_reclaim::{Config, Rcu};
    /// // A domain that frees only when asked, so the backlog waits here.
    /// let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    /// assert_eq!(rcu.run_callbacks(&NodeMask::all(), 12).action, RunAction::Nothing);
    /// rcu.defer_drop_sized(Box::new(vec![0u8; 1 << 20]), 1 << 20);
    /// let report = rcu.run_callbacks(&NodeMask::all(), 0);
    /// assert_eq!(report.action, RunAction::Barrier);
    /// // Freed by this call, or by a worker once the call's grace period
    /// // made it ready (the call then waited for that worker's batch):
    /// assert!(report.bytes_freed <= 1 << 20);
    /// assert_eq!(rcu.pending_bytes(), 0);
    /// ```
    pub fn run_callbacks(&self, mask: &NodeMask, priority: u8) -> RunReport {
        self.run_callbacks_wanting(mask, priority, None)
    }

    /// [`run_callbacks`](Rcu::run_callbacks) for a reclaimer that still
    /// needs `want` bytes: a grace period is worth waiting for exactly when
    /// the backlog on `mask` could meet that (at any priority), so one
    /// reclaim waits once rather than at every priority below 10. It also
    /// flushes the calling thread's own buffered page first, so what this
    /// thread's shrinkers just deferred counts. This is what
    /// [`Reclaimer`](crate::reclaim::Reclaimer) calls after each priority
    /// pass; a reclaimer of your own calls it the same way.
    ///
    /// ```
    /// use rcu_reclaim::pressure::{NodeMask, RunAction};
    /// use rcu_reclaim::{Config, Rcu};
    /// let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    /// rcu.defer_drop_sized(Box::new(vec![0u8; 1 << 20]), 1 << 20);
    /// // At a gentle priority, but 1 MiB is wanted and 1 MiB is pending:
    /// // worth an expedited grace period.
    /// let report = rcu.run_callbacks_for(&NodeMask::all(), 11, 1 << 20);
    /// assert_eq!(report.action, RunAction::Expedited);
    /// // By this call, or by a worker it then waited for:
    /// assert!(report.bytes_freed <= 1 << 20);
    /// assert_eq!(rcu.pending_bytes(), 0);
    /// ```
    pub fn run_callbacks_for(&self, mask: &NodeMask, priority: u8, want: usize) -> RunReport {
        self.run_callbacks_wanting(mask, priority, Some(want))
    }

    /// Whether the calling thread is running an RCU callback or deferred
    /// drop (of any domain). Code that may run inside a callback, such as an
    /// allocator hook or a shrinker, checks it before waiting for a grace
    /// period or a barrier, which a callback must not do.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use rcu_reclaim::Rcu;
    ///
    /// assert!(!Rcu::in_callback());
    /// let rcu = Rcu::global();
    /// let seen = Arc::new(AtomicBool::new(false));
    /// let s = seen.clone();
    /// rcu.call(move || s.store(Rcu::in_callback(), Ordering::SeqCst));
    /// rcu.barrier();
    /// assert!(seen.load(Ordering::SeqCst));
    /// ```
    pub fn in_callback() -> bool {
        crate::callbacks::in_callback()
    }

    fn run_callbacks_wanting(
        &self,
        mask: &NodeMask,
        priority: u8,
        want: Option<usize>,
    ) -> RunReport {
        let inner = self.inner();
        let cbs = &inner.callbacks;
        let may_wait = !self.in_read_section() && !Rcu::in_callback();
        if want.is_some() && may_wait {
            // What this reclaimer's own shrinkers just queued counts too.
            self.flush_own_page();
        }
        let mut before = self.pending_on(mask);
        let locals = priority == 0 && cbs.has_local_pages(&inner.gp);
        if before.0 == 0 && !locals {
            // The common case while memory is plentiful: a few loads, no clock.
            return RunReport {
                action: RunAction::Nothing,
                invoked: 0,
                bytes_freed: 0,
                pending_before: before,
                elapsed: Duration::ZERO,
            };
        }
        let start = Instant::now();
        let action = match policy::run_work(may_wait, priority, before.1, want) {
            RunWork::ReadyOnly => RunAction::InvokedReady,
            RunWork::Expedite => RunAction::Expedited,
            RunWork::Barrier => RunAction::Barrier,
        };
        let mut cpus: Vec<usize> = (0..cbs.shards())
            .filter(|&c| mask.contains(cbs.topology.node_of(c)))
            .collect();
        if action == RunAction::Barrier {
            // Threads' pages land on this thread's shard: run that one too.
            if locals {
                cbs.flush_locals(&inner.gp, None);
                let here = cbs.current_shard();
                if !cpus.contains(&here) {
                    cpus.push(here);
                }
            }
            before = self.pending_on(mask);
        }
        if matches!(action, RunAction::Expedited | RunAction::Barrier) {
            let target = cbs.request_cpus(&inner.gp, &cpus);
            if let Some(t) = target {
                inner.gp.wait_for_seq(t, WaitMode::Expedited);
            }
        }
        // Having waited for a grace period, also wait for a worker that is
        // running one of these shards; otherwise skip busy shards.
        let wait_for_workers = matches!(action, RunAction::Expedited | RunAction::Barrier);
        let (invoked, bytes_freed) = without_page_allocation(|| {
            cpus.iter()
                .filter_map(|&c| {
                    if wait_for_workers {
                        Some(cbs.invoke_ready(&inner.gp, c, None))
                    } else {
                        cbs.try_invoke_ready(&inner.gp, c)
                    }
                })
                .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
        });
        // A worker may have run some of them meanwhile (woken by the
        // hand-off of the threads' pages or by the grace period's end, it
        // can win the race for a shard on a loaded machine): count what
        // left those nodes' queues, as long as it is more than this
        // thread ran (new arrivals meanwhile only make it less).
        let after = self.pending_on(mask);
        let invoked = invoked.max(before.0.saturating_sub(after.0));
        let bytes_freed = bytes_freed.max(before.1.saturating_sub(after.1));
        RunReport {
            action,
            invoked,
            bytes_freed,
            pending_before: before,
            elapsed: start.elapsed(),
        }
    }
}
