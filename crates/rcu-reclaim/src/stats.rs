//! Every counter snapshot the crate takes, in one place.
//!
//! [`Rcu::stats`] gives a domain's [`Stats`] (with one [`ShardStats`] per
//! CPU shard); [`MemoryBudget::stats`](crate::reclaim::MemoryBudget::stats)
//! gives [`BudgetStats`], [`Reclaimer::stats`](crate::reclaim::Reclaimer::stats)
//! [`ReclaimStats`] (with [`PriorityStats`] per priority), and
//! [`PressureMonitor::stats`](crate::sources::PressureMonitor::stats)
//! [`MonitorStats`] (with [`PsiStats`] where PSI is behind the source). The
//! snapshot types are also reachable from the modules they belong to
//! (`reclaim`, `sources`); this module lists them together. With the
//! `serde` feature they all implement `serde::Serialize`.
//!
//! Use it for dashboards, logs and tests: a snapshot is a plain value, cheap
//! to take (relaxed loads and one short lock per shard).
//!
//! ```
//! use rcu_reclaim::stats::Stats;
//! use rcu_reclaim::Rcu;
//!
//! let rcu = Rcu::global();
//! rcu.synchronize();
//! let stats: Stats = rcu.stats();
//! assert!(stats.gp_completed >= 1);
//! assert!(!stats.shards.is_empty());
//! ```

use std::sync::atomic::Ordering;

use crate::domain::Rcu;
use crate::flavor::Flavor;

pub use crate::reclaim::{BudgetStats, PriorityStats, ReclaimStats};
pub use crate::sources::{MonitorStats, PsiLine, PsiStats};

/// A snapshot of a domain's counters, serializable with serde (with the
/// `serde` feature).
///
/// What an operator logs first:
///
/// | field | says |
/// |---|---|
/// | [`pending_bytes`](Stats::pending_bytes), [`pending`](Stats::pending) | memory (and entries) waiting for a grace period: the garbage |
/// | [`gp_completed`](Stats::gp_completed) | grace periods so far (their rate: the pace) |
/// | [`bytes_freed`](Stats::bytes_freed), [`invoked`](Stats::invoked) | what was freed and run |
/// | [`stalls_reported`](Stats::stalls_reported) | readers that held a grace period past `stall_timeout` |
/// | [`callback_panics`](Stats::callback_panics) | callbacks and deferred drops that panicked (the rest still ran) |
/// | [`pressure_throttles`](Stats::pressure_throttles), [`headroom_waits`](Stats::headroom_waits) | retires made to wait for memory to come back |
/// | [`membarrier_us`](Stats::membarrier_us), [`reader_fences`](Stats::reader_fences) | what grace periods cost the machine |
///
/// ```
/// let rcu = rcu_reclaim::Rcu::global();
/// rcu.synchronize();
/// let stats = rcu.stats();
/// assert!(stats.gp_completed >= 1);
/// #[cfg(feature = "serde")]
/// {
///     let json = serde_json::to_string(&stats).unwrap();
///     assert!(json.contains("\"flavor\""));
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Stats {
    /// The domain's id.
    pub domain: u64,
    /// The flavor chosen at creation.
    pub flavor: Flavor,
    /// The raw grace-period sequence (`completed << 2 | in_progress`).
    pub gp_seq: u64,
    /// Grace periods completed.
    pub gp_completed: u64,
    /// Whether a grace period is running now.
    pub gp_in_progress: bool,
    /// Calls to `synchronize`, `cond_synchronize` (when it had to wait) and
    /// the blocking `RcuCell`/`Retired` helpers.
    pub synchronize_calls: u64,
    /// Calls to `synchronize_expedited`.
    pub expedited_calls: u64,
    /// Waits that were satisfied by a grace period another caller ran.
    pub shared_waits: u64,
    /// Grace periods run in normal mode (may park).
    pub normal_gps: u64,
    /// Grace periods run in expedited mode (never park).
    pub expedited_gps: u64,
    /// Times a writer parked waiting for a reader.
    pub writer_parks: u64,
    /// Reader stalls reported (once per stall).
    pub stalls_reported: u64,
    /// Grace periods requested through `start_poll` (or by a `Retired`'s
    /// `is_safe` or `try_into_box` that found its grace period pending).
    pub poll_requests: u64,
    /// Grace periods completed by retiring threads' non-blocking steps
    /// (without waiting, when they hand a full page to their queue), not by
    /// the grace-period thread or a waiter.
    pub retirer_gps: u64,
    /// `membarrier` system calls issued by the domain (memb flavor: one per
    /// grace period started, one per steal of a thread's page, one per
    /// writer park).
    pub membarriers: u64,
    /// Time spent in those `membarrier` calls, in microseconds (divide by
    /// [`membarriers`](Self::membarriers) for the mean). Each interrupts
    /// every CPU running one of the process's threads; in the KVM and
    /// Firecracker guests this crate is measured on, a call took 3-20 µs,
    /// the most when it had to interrupt a running thread (the interrupt
    /// goes through the hypervisor). Where it is dear and updates are
    /// frequent, the [QSBR flavor](crate::Flavor::Qsbr) has no
    /// `membarrier` at all.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
    /// rcu.synchronize();
    /// let s = rcu.stats();
    /// assert_eq!((s.membarriers, s.membarrier_us), (0, 0)); // fences only
    /// ```
    pub membarrier_us: u64,
    /// Whether the domain's readers fence now: always on an mb or QSBR
    /// domain; on a memb domain while its grace periods come so often that
    /// `membarrier` would cost more (see
    /// [`Config::adaptive_reader_fences`](crate::Config::adaptive_reader_fences)).
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let mb = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
    /// assert!(mb.stats().reader_fences);
    /// ```
    pub reader_fences: bool,
    /// Grace periods a memb domain started with a fence instead of
    /// `membarrier`, its readers fencing.
    pub fenced_gps: u64,
    /// Times a memb domain switched its readers to fences.
    pub reader_fence_switches: u64,
    /// Threads that have a slot in the domain now: every thread that took
    /// a read-side section of it, retired into it or registered a
    /// `QsbrThread`, until it exits or unregisters (the slot also holds
    /// the thread's buffered garbage). On a QSBR domain a thread that
    /// only retires (an unregistered writer's `store`) has one too,
    /// though only online `QsbrThread`s hold grace periods up; a stall
    /// report names the one that does.
    pub registered_readers: usize,
    /// Callbacks and deferred drops not yet run (as [`Rcu::pending`]).
    pub pending: usize,
    /// Bytes they will free (as [`Rcu::pending_bytes`]).
    pub pending_bytes: usize,
    /// Per-CPU shards.
    pub shards: Vec<ShardStats>,
    /// Callbacks queued with `call*`.
    pub callbacks_queued: u64,
    /// Objects deferred with `defer_drop*` (and the library's own retires)
    /// whose bulk page has reached a shard, or that took the no-page
    /// fallback (`fallback_syncs`). After a [`barrier`](crate::Rcu::barrier),
    /// with no thread retiring meanwhile, `callbacks_queued +
    /// deferred_drops == invoked`.
    pub deferred_drops: u64,
    /// Callbacks and deferred drops run.
    pub invoked: u64,
    /// Bytes they accounted.
    pub bytes_freed: u64,
    /// Bulk pages emptied after their grace period.
    pub pages_freed: u64,
    /// Retires that found no bulk page: `defer_drop`s that waited for a
    /// grace period (or queued a callback) instead, and `call`s queued on
    /// their shard instead.
    pub fallback_syncs: u64,
    /// Callbacks and deferred drops that panicked (caught; the rest ran).
    pub callback_panics: u64,
    /// Times a shard went over `qhimark`.
    pub overload_events: u64,
    /// Times the total backlog went over `qovld` (grace periods expedited).
    pub overload_expedited: u64,
    /// Calls to `barrier` (including those made by dropping a domain).
    pub barriers: u64,
    /// Thread pages flushed by the grace-period thread after `lazy_delay`.
    pub lazy_flushes: u64,
    /// Thread pages taken from their threads by another one (lazy flushes,
    /// pressure, `barrier`); each costs the domain's writer barrier.
    pub page_steals: u64,
    /// Times a thread handing off a page waited (at most 2 ms) for the
    /// worker because its shard held more than 16 pages whose grace period
    /// had elapsed (domains without `Config::retiring_thread_frees`), or a
    /// thread queueing a callback (`Rcu::call`) did because its shard held
    /// more than 4,080 callbacks ready to run.
    pub producer_throttles: u64,
    /// Times a thread handing off a page waited under memory pressure
    /// because the shards held more than
    /// [`Config::pressure_throttle_bytes`](crate::Config::pressure_throttle_bytes).
    pub pressure_throttles: u64,
    /// Microseconds those waits took, in all.
    pub pressure_throttle_us: u64,
    /// Times a thread handing off a page, with no pressure signal, waited
    /// for a held-up grace period: one in progress for longer than
    /// [`Config::held_up_after`](crate::Config::held_up_after) while the
    /// shards held more than
    /// [`Config::held_up_bytes`](crate::Config::held_up_bytes).
    pub held_up_waits: u64,
    /// Microseconds those waits took, in all.
    pub held_up_wait_us: u64,
    /// Times a thread retiring memory waited because the garbage was over
    /// what a memory limit allows ([`Rcu::bound_garbage`](crate::Rcu::bound_garbage)),
    /// or freed there the ready garbage it held itself, which was enough.
    pub headroom_waits: u64,
    /// Microseconds those waits took, in all.
    pub headroom_wait_us: u64,
    /// Times a thread queueing a [`call`](crate::Rcu::call) (which books
    /// no bytes) waited because more than 4,096 entries were outstanding
    /// (queued, ready, or in a worker's hands) while a pressure signal was
    /// held or the usage was over a memory limit's mark.
    pub call_backlog_waits: u64,
    /// Microseconds those waits took, in all.
    pub call_backlog_wait_us: u64,
    /// Pressure signals held now (all nodes together).
    pub pressure: usize,
    /// Whether fast mode is in force (pressure or its hysteresis).
    pub fast_mode: bool,
    /// Times fast mode was entered.
    pub fast_mode_entries: u64,
    /// Times fast mode was left.
    pub fast_mode_exits: u64,
    /// Time spent in fast mode, in milliseconds (the current stretch included).
    pub fast_mode_ms: u64,
}

/// One CPU's callback shard.
///
/// ```
/// let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new()).unwrap();
/// rcu.defer_drop(Box::new([0u8; 256]));
/// for sh in &rcu.stats().shards {
///     println!("cpu {} (node {}): {} pending, {} bytes", sh.cpu, sh.node, sh.pending, sh.pending_bytes);
/// }
/// rcu.barrier();
/// assert!(rcu.stats().shards.iter().all(|sh| sh.pending == 0));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ShardStats {
    /// The CPU.
    pub cpu: usize,
    /// Its NUMA node.
    pub node: usize,
    /// Callbacks and deferred drops queued.
    pub pending: usize,
    /// Their bytes.
    pub pending_bytes: usize,
    /// Over `qhimark` and not yet back under `qlowmark`.
    pub overloaded: bool,
}

impl Rcu {
    /// A snapshot of this domain's counters.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
    /// drop(rcu.read_lock());
    /// let s = rcu.stats();
    /// assert_eq!(s.flavor, Flavor::Mb);
    /// assert_eq!(s.registered_readers, 1);
    /// ```
    pub fn stats(&self) -> Stats {
        let gp = &self.inner().gp;
        // In a child forked without `prepare_fork`, a lock a thread of the
        // parent held at the fork is given up on, naming the fix.
        let _forked = crate::sync::ForkedWaits::scope(gp.fork_check("stats()"));
        let c = &gp.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let seq = gp.seq();
        let cbs = &self.inner().callbacks;
        let k = &cbs.counters;
        let (pending, pending_bytes) = cbs.pending(gp);
        Stats {
            domain: self.id(),
            flavor: self.flavor(),
            gp_seq: seq,
            gp_completed: gp.completed(),
            gp_in_progress: seq & 3 != 0,
            synchronize_calls: get(&c.synchronize_calls) + get(&c.synchronize_calls_no_reader),
            expedited_calls: get(&c.expedited_calls),
            shared_waits: get(&c.shared),
            normal_gps: get(&c.normal_gps),
            expedited_gps: get(&c.expedited_gps),
            writer_parks: get(&c.writer_parks),
            stalls_reported: get(&c.stalls_reported),
            poll_requests: get(&c.poll_requests),
            retirer_gps: get(&c.polled_gps),
            membarriers: get(&c.membarriers),
            membarrier_us: get(&c.membarrier_ns) / 1_000,
            reader_fences: crate::reader_fences::ReaderFences::on(&self.registry().fence_reads),
            fenced_gps: get(&gp.fences.fenced_gps),
            reader_fence_switches: get(&gp.fences.switches_on),
            registered_readers: self.registry().registered(),
            pending,
            pending_bytes,
            shards: (0..cbs.shards())
                .map(|cpu| {
                    let (pending, pending_bytes, overloaded) = cbs.shard_snapshot(cpu);
                    ShardStats {
                        cpu,
                        node: cbs.topology.node_of(cpu),
                        pending,
                        pending_bytes,
                        overloaded,
                    }
                })
                .collect(),
            callbacks_queued: get(&k.calls),
            deferred_drops: get(&k.deferred_drops),
            invoked: get(&k.invoked),
            bytes_freed: get(&k.bytes_freed),
            pages_freed: get(&k.pages_freed),
            fallback_syncs: get(&k.fallback_syncs),
            callback_panics: get(&k.panics),
            overload_events: get(&k.overload_events),
            overload_expedited: get(&k.overload_expedited),
            barriers: get(&k.barriers),
            lazy_flushes: get(&k.lazy_flushes),
            page_steals: get(&k.page_steals),
            producer_throttles: get(&k.throttles),
            pressure_throttles: get(&k.pressure_throttles),
            pressure_throttle_us: get(&k.pressure_throttle_us),
            held_up_waits: get(&k.held_up_waits),
            held_up_wait_us: get(&k.held_up_wait_us),
            headroom_waits: get(&k.headroom_waits),
            headroom_wait_us: get(&k.headroom_wait_us),
            call_backlog_waits: get(&k.call_backlog_waits),
            call_backlog_wait_us: get(&k.call_backlog_wait_us),
            pressure: cbs.pressure.total(),
            fast_mode: self.in_fast_mode(),
            fast_mode_entries: get(&cbs.pressure.entries),
            fast_mode_exits: get(&cbs.pressure.exits),
            fast_mode_ms: cbs.pressure.fast_time().as_millis() as u64,
        }
    }
}
