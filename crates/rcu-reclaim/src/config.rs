//! A domain's settings ([`Config`]), the errors of making one ([`Error`]),
//! and the choice of its flavor.

use std::fmt;
use std::time::Duration;

use crate::callbacks::{PageAllocator, PanicHook, Params, SystemPageAllocator};
use crate::flavor::Flavor;
use crate::topology::Topology;
#[cfg(doc)]
use crate::Rcu;

/// The most callback workers per node `Config::workers_per_node` accepts:
/// each is a thread, started on the domain's first retire, and a value such
/// as `usize::MAX` spawned threads until the process aborted.
const MAX_WORKERS_PER_NODE: usize = 1024;

/// Settings of an [`Rcu`] domain, built with chained setters.
///
/// ```
/// use std::time::Duration;
/// use rcu_reclaim::{Config, Rcu};
/// let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_secs(5))).unwrap();
/// assert_eq!(rcu.config().stall_timeout_value(), Duration::from_secs(5));
/// ```
#[derive(Clone)]
#[must_use = "a Config does nothing until a domain is made with it: `Rcu::new(config)`"]
pub struct Config {
    pub(crate) flavor: Option<Flavor>,
    pub(crate) stall_timeout: Duration,
    pub(crate) simulate_no_membarrier: bool,
    pub(crate) adaptive_reader_fences: bool,
    pub(crate) simulate_membarrier_ns: Option<u64>,
    pub(crate) topology: Option<Topology>,
    pub(crate) params: Params,
    pub(crate) page_allocator: std::sync::Arc<dyn PageAllocator>,
    pub(crate) panic_hook: Option<PanicHook>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flavor: None,
            stall_timeout: Duration::from_secs(21),
            simulate_no_membarrier: false,
            adaptive_reader_fences: true,
            simulate_membarrier_ns: None,
            topology: None,
            params: Params::default(),
            page_allocator: std::sync::Arc::new(SystemPageAllocator),
            panic_hook: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("flavor", &self.flavor)
            .field("stall_timeout", &self.stall_timeout)
            .field("adaptive_reader_fences", &self.adaptive_reader_fences)
            .field("topology", &self.topology)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The defaults: flavor detected at creation, stall timeout 21 s (the
    /// kernel's `CONFIG_RCU_CPU_STALL_TIMEOUT`).
    ///
    /// ```
    /// let config = rcu_reclaim::Config::new();
    /// assert_eq!(config.flavor_value(), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Forces a flavor instead of detecting one. Forcing [`Flavor::Memb`]
    /// where the kernel refuses `membarrier` makes [`Rcu::new`] fail with
    /// [`Error::MembarrierUnavailable`].
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor};
    /// assert_eq!(Config::new().flavor(Flavor::Mb).flavor_value(), Some(Flavor::Mb));
    /// ```
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = Some(flavor);
        self
    }

    /// How long a reader may hold up a grace period before it is reported
    /// (once per stall) through `tracing::warn!` and the `stalls_reported`
    /// counter of [`Rcu::stats`]. A [`barrier`](Rcu::barrier) (or
    /// `run_callbacks`, or the drop of a domain's last handle) that has
    /// waited this long for a callback or deferred `Drop` still running on
    /// another thread says so too, naming that thread, and waits on.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = rcu_reclaim::Config::new().stall_timeout(Duration::from_millis(500));
    /// assert_eq!(c.stall_timeout_value(), Duration::from_millis(500));
    /// ```
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Whether a memb domain may switch its readers to fences while its
    /// grace periods come so often that their `membarrier`s would cost
    /// more (default `true`). Each `membarrier` interrupts every CPU running
    /// one of the process's threads (3-20 µs a call in virtual machines);
    /// past 5 % of a CPU in them (some 3,300 grace periods a second at
    /// 15 µs each), the domain's readers issue a fence on entering their
    /// outermost section (2-10 ns) and its grace periods a fence instead
    /// of `membarrier`, until grace periods are rare again. `false` keeps
    /// the read side at a load, a store and a compiler fence always, for
    /// readers whose every nanosecond counts more than the writers' time.
    /// `Stats::reader_fences` says whether the mode is on,
    /// `Stats::fenced_gps` how many grace periods it spared `membarrier`.
    /// No effect on mb or QSBR domains, whose readers always fence.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu};
    /// let rcu = Rcu::new(Config::new().adaptive_reader_fences(false)).unwrap();
    /// for _ in 0..10_000 {
    ///     rcu.synchronize();
    /// }
    /// assert_eq!(rcu.stats().fenced_gps, 0);
    /// assert!(!rcu.config().adaptive_reader_fences_value());
    /// ```
    pub fn adaptive_reader_fences(mut self, adaptive: bool) -> Self {
        self.adaptive_reader_fences = adaptive;
        self
    }

    /// Makes the reader-fence policy ([`adaptive_reader_fences`](Self::adaptive_reader_fences))
    /// weigh each `membarrier` as costing `cost` instead of the time the
    /// domain measured, so tests can drive the switch both ways wherever
    /// they run (a `membarrier` took 0.8 µs on one run of a test machine
    /// and 15 µs on the next).
    ///
    /// A test hook, only with the `testing` feature: not for production.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rcu_reclaim::{Config, Rcu};
    /// let c = Config::new().simulate_membarrier_cost(Duration::from_micros(50));
    /// # let _ = Rcu::new(c).unwrap();
    /// ```
    #[cfg(feature = "testing")]
    pub fn simulate_membarrier_cost(mut self, cost: Duration) -> Self {
        self.simulate_membarrier_ns = Some(u64::try_from(cost.as_nanos()).unwrap_or(u64::MAX));
        self
    }

    /// Makes flavor detection behave as on a kernel without `membarrier`, so
    /// the fallback and the error for a forced memb flavor can be tested.
    ///
    /// A test hook, only with the `testing` feature: not for production.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().simulate_no_membarrier(true)).unwrap();
    /// assert_eq!(rcu.flavor(), Flavor::Mb);
    /// ```
    #[cfg(feature = "testing")]
    pub fn simulate_no_membarrier(mut self, yes: bool) -> Self {
        self.simulate_no_membarrier = yes;
        self
    }

    /// The CPU/node layout used to shard callback queues (default: detected
    /// from `/sys`). A synthetic one exercises per-node behaviour anywhere.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu};
    /// use rcu_reclaim::topology::Topology;
    /// let rcu = Rcu::new(Config::new().topology(Topology::synthetic(2, 2))).unwrap();
    /// assert_eq!(rcu.topology().nodes(), 2);
    /// ```
    pub fn topology(mut self, topology: Topology) -> Self {
        self.topology = Some(topology);
        self
    }

    /// Lazy pace: a shard asks for a grace period once its oldest callback
    /// has waited this long (default 50 ms; the kernel's lazy RCU waits up
    /// to 10 s). Longer means fewer grace periods and more memory in flight.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = rcu_reclaim::Config::new().lazy_delay(Duration::from_millis(5));
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn lazy_delay(mut self, delay: Duration) -> Self {
        self.params.lazy_delay = delay;
        self
    }

    /// Lets a thread that keeps retiring free garbage itself (default
    /// `false`): each time `defer_drop` (or [`RcuCell::store`](crate::RcuCell::store),
    /// or [`Retired::defer_drop`](crate::Retired::defer_drop)) hands a full
    /// bulk page to its CPU's shard, it also drops up to eight of that
    /// shard's pages whose grace period has elapsed — on the core that
    /// allocated the objects, as crossbeam-epoch and seize free inside
    /// their retiring calls. A busy thread freeing its own garbage ran 2.1x
    /// faster on 16 cores than a worker freeing it on another core
    /// (BENCHMARKS.md, "Scaling on a quiet 16-core machine").
    ///
    /// The price: a retiring call then runs destructors of other objects
    /// and callbacks (retired or queued earlier on this CPU, by any
    /// thread), so it must not be made
    /// while holding a lock that any deferred `Drop` takes, or the thread
    /// deadlocks itself. With the default, retiring calls run only the
    /// drops of values that drop anywhere
    /// ([`drops_anywhere`](crate::drops_anywhere)); workers free the rest.
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().retiring_thread_frees(true);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn retiring_thread_frees(mut self, enabled: bool) -> Self {
        self.params.retiring_thread_frees = enabled;
        self
    }

    /// How long a shard's ready pages are left to the thread that frees
    /// them itself (default 5 ms): a thread with
    /// [`retiring_thread_frees`](Config::retiring_thread_frees), counted from
    /// its last hand-off of a full bulk page, or a thread that calls
    /// [`Rcu::collect`](crate::Rcu::collect), counted from its last
    /// collect that freed something. After that, or at once under memory
    /// pressure, a callback worker frees them. Zero wakes a worker for
    /// every ready page at once. With neither, it applies to pages of
    /// values that drop anywhere ([`drops_anywhere`](crate::drops_anywhere),
    /// as `Vec<u8>`), which a thread that keeps handing them off frees
    /// itself; a worker frees every other page at once. A thread that
    /// waits for its garbage to be freed (over a garbage bound, say) gives
    /// its pages to the worker for the wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = rcu_reclaim::Config::new().producer_window(Duration::ZERO);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn producer_window(mut self, window: Duration) -> Self {
        self.params.producer_window = window;
        self
    }

    /// Lazy pace: a shard asks for a grace period at once when it holds this
    /// many callbacks and deferred drops not yet assigned one (default 1000).
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().lazy_batch(64);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn lazy_batch(mut self, batch: usize) -> Self {
        self.params.lazy_batch = batch;
        self
    }

    /// The pace by memory: a shard asks for a grace period at once when the
    /// callbacks and deferred drops it holds not yet assigned one account
    /// this many bytes, and a thread's bulk page goes to its shard when it
    /// holds this many in at least 32 objects, or four times as many bytes
    /// (default 16 KiB: a page of objects of up to 512 bytes goes at 16
    /// KiB, one of larger values at 64 KiB or 32 values; a page of 128
    /// small objects goes once they hold a 32nd of this). Smaller values free sooner, with
    /// more grace periods; `usize::MAX` leaves the pace to
    /// [`lazy_delay`](Config::lazy_delay) and
    /// [`lazy_batch`](Config::lazy_batch) alone (under
    /// [`max_pending_bytes`](Config::max_pending_bytes), a thread's page
    /// still goes at a sixteenth of the cap). Must be at least 1.
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().pace_bytes(256 << 10);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn pace_bytes(mut self, bytes: usize) -> Self {
        self.params.pace_bytes = bytes;
        self
    }

    /// Overload: a shard holding more than `qhimark` entries (default
    /// 10,000) starts a grace period at once and runs without a batch limit
    /// until it falls under `qlowmark` (default 100).
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().qhimark(500).qlowmark(10);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn qhimark(mut self, n: usize) -> Self {
        self.params.qhimark = n;
        self
    }

    /// See [`qhimark`](Config::qhimark).
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().qlowmark(50);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn qlowmark(mut self, n: usize) -> Self {
        self.params.qlowmark = n;
        self
    }

    /// Overload: a total backlog over `qovld` entries (default 20,000)
    /// expedites grace periods.
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().qovld(1_000);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn qovld(mut self, n: usize) -> Self {
        self.params.qovld = n;
        self
    }

    /// Smallest batch a worker runs between yields (default 10, the
    /// kernel's `blimit`); batches are `max(blimit, pending >> 7)`.
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().blimit(32);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn blimit(mut self, n: usize) -> Self {
        self.params.blimit = n;
        self
    }

    /// Fast mode expedites grace periods only while the backlog on the
    /// pressured nodes holds at least this many bytes (default 1 MiB): with
    /// less to free, pressure changes nothing (see [`Rcu::pressure_start`]).
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().fast_min_bytes(64 << 10);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn fast_min_bytes(mut self, bytes: usize) -> Self {
        self.params.fast_min_bytes = bytes;
        self
    }

    /// While a pressure signal is held, a thread retiring garbage (handing
    /// off a page of deferred drops: `defer_drop`, `RcuCell::store`, the
    /// map's and cache's removals) while more than this many bytes wait on
    /// the domain's shards (for a grace period, or to be freed) waits until
    /// half that is left, moving grace periods on itself, for at most 10 ms
    /// per page (100 ms while over twice this, 1 s while over four times).
    /// Inside a read-side section of the domain it cannot wait (the grace
    /// period waits for that very section): the section owes the wait and
    /// pays it when its outermost guard drops (or its raw section ends; an
    /// online QSBR registration, when it next reports a quiescent state or
    /// goes offline; a section opened by foreign code owes nothing). So writers
    /// that retire faster than grace periods end slow down to their pace
    /// once the domain is in fast mode. The wait is bounded, so it cannot
    /// keep memory bounded behind a reader that stays in its section (every
    /// value retired meanwhile waits for that reader): a wait of 100 ms or
    /// more that runs out is reported (through `tracing`, or on standard
    /// error without a subscriber), naming the threads the grace period
    /// waits for. A wait also ends once a worker has spent 5 ms on one
    /// callback or destructor, asleep (it may be blocked on a lock the
    /// retiring thread holds: retire outside locks that a deferred `Drop`
    /// takes; this warns). Default 8 MiB; `usize::MAX` turns it off.
    /// `Stats::pressure_throttles` (from `Rcu::stats`) counts the waits.
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().pressure_throttle_bytes(32 << 20);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn pressure_throttle_bytes(mut self, bytes: usize) -> Self {
        self.params.pressure_throttle_bytes = bytes;
        self
    }

    /// Garbage on the shards above which, with no pressure signal held
    /// (fast mode expedites grace periods then, and
    /// [`pressure_throttle_bytes`](Self::pressure_throttle_bytes) bounds
    /// the garbage), a thread that hands off a page waits for a *held-up*
    /// grace period:
    /// one in progress for longer than [`held_up_after`](Self::held_up_after)
    /// (500 µs by default, several times a usual one). A grace period that
    /// long waits for a reader that is not running (preempted inside its
    /// section, on a machine with more runnable threads than cores): a
    /// writer that kept retiring meanwhile would pile up garbage that
    /// nothing can free, so it sleeps instead (in naps of 50 µs, giving
    /// its CPU away) until that grace period ends, for at most 2 ms. A
    /// reader still in its section after that is not merely preempted: no
    /// thread waits on that grace period again. As under pressure, a
    /// section cannot wait for itself: inside one the wait is owed and
    /// paid when it ends (see
    /// [`pressure_throttle_bytes`](Self::pressure_throttle_bytes)).
    /// Not on a [`Flavor::Qsbr`] domain, whose grace
    /// periods wait for every online thread's next report and are long as
    /// a rule. Default 512 KiB; `usize::MAX` turns it off. `Stats::held_up_waits`
    /// counts the waits, `Stats::held_up_wait_us` their time.
    ///
    /// ```
    /// // A writer that must never sleep for a reader's sake:
    /// let c = rcu_reclaim::Config::new().held_up_bytes(usize::MAX);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn held_up_bytes(mut self, bytes: usize) -> Self {
        self.params.held_up_bytes = bytes;
        self
    }

    /// How long a grace period must have been in progress before a writer
    /// waits for it ([`held_up_bytes`](Self::held_up_bytes)). Default
    /// 500 µs.
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().held_up_after(std::time::Duration::from_millis(2));
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn held_up_after(mut self, after: std::time::Duration) -> Self {
        self.params.held_up_after = after;
        self
    }

    /// Caps the garbage waiting for grace periods at about `bytes`, with
    /// no pressure signal, memory limit or usage function needed: a thread
    /// that hands off a page while the domain's shards hold more than
    /// `bytes` waits for grace periods to end and the garbage to be freed,
    /// until they hold half of it, outside read-side sections (inside one
    /// the section owes the wait and pays it as it ends, since a grace
    /// period waits for that very section). Without a cap, garbage grows
    /// for as long as a reader holds a grace period up: 200 stores of
    /// 1 MiB behind a reader stuck for 2 s leave 200 MiB waiting.
    ///
    /// The wait is bounded (1 s per retire; a wait that runs out is
    /// reported, naming the threads the grace period waits for), so a
    /// reader that never leaves its section slows the writers down to one
    /// retire a second rather than stopping them, and a thread's own page
    /// (up to four times [`pace_bytes`](Self::pace_bytes), and never over
    /// a quarter of the cap, whatever the pace: with a cap, a page goes at
    /// a sixteenth of it at most) may come on top. A cap
    /// below 2 MiB is taken as 2 MiB (smaller garbage never waits); the
    /// default, `usize::MAX`, sets none. Where the domain's garbage is also
    /// bounded by a memory limit ([`Rcu::bound_garbage`](crate::Rcu::bound_garbage),
    /// which the pressure sources' `auto_pressure` sets under a cgroup
    /// limit), the smaller of the two bounds holds.
    /// `Stats::headroom_waits` counts the waits, as for a memory limit.
    /// [`Rcu::try_defer_drop`](crate::Rcu::try_defer_drop), which never
    /// waits, is not held to it: a thread that retires only through it can
    /// take the garbage past the cap.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu, RcuCell};
    /// let rcu = Rcu::new(Config::new().max_pending_bytes(8 << 20)).unwrap();
    /// let cell = RcuCell::new_in(&rcu, Some(Box::new(vec![0u8; 1 << 20])));
    /// for i in 0..64u8 {
    ///     cell.store(Box::new(vec![i; 1 << 20])); // 64 MiB retired in all
    ///     // never much over the cap, whatever the grace periods do
    ///     assert!(rcu.pending_bytes() <= (8 << 20) + 2 * ((1 << 20) + 24));
    /// }
    /// ```
    pub fn max_pending_bytes(mut self, bytes: usize) -> Self {
        self.params.max_pending_bytes = if bytes == usize::MAX {
            usize::MAX
        } else {
            bytes.max(crate::policy::HEADROOM_FLOOR)
        };
        self
    }

    /// No background pace: queued callbacks and deferred drops wait until
    /// `barrier`, `run_callbacks`, a pressure signal or `call_hurry` asks
    /// (lazy delay of an hour, no batch or overload trigger). For
    /// deterministic tests and benchmarks, and for reproducing "RCU at a
    /// slowed normal pace". Dropping the last handle runs what is queued,
    /// but a callback that holds a clone of its own domain keeps that
    /// handle alive: call `barrier` before dropping such a domain.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new().on_demand()).unwrap();
    /// rcu.call(|| {});
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// assert_eq!(rcu.pending(), 1);
    /// rcu.barrier();
    /// ```
    pub fn on_demand(self) -> Self {
        self.lazy_delay(Duration::from_secs(3600))
            .lazy_batch(usize::MAX / 2)
            .pace_bytes(usize::MAX / 2)
            .qhimark(usize::MAX / 2)
            .qovld(usize::MAX / 2)
    }

    /// Callback worker threads per NUMA node, unpinned (default 1; see also
    /// [`worker_per_cpu`](Config::worker_per_cpu)). From 1 to 1024: more
    /// makes [`Rcu::new`] fail with [`Error::InvalidConfig`].
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().workers_per_node(2);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn workers_per_node(mut self, n: usize) -> Self {
        self.params.workers_per_node = n;
        self.params.worker_per_cpu = false;
        self
    }

    /// One callback worker per CPU, pinned to it, serving that CPU's queue
    /// (as the kernel's per-CPU callback threads), instead of
    /// [`workers_per_node`](Config::workers_per_node) unpinned workers per
    /// node (the default).
    ///
    /// A worker on the CPU where the garbage was retired frees it while
    /// that CPU's cache still holds it, and takes turns with the retiring
    /// thread instead of contending with it for the allocator's locks
    /// (glibc's arena lock). With one updating thread on two cores this
    /// halved mean garbage and raised updates/s by a fifth; with every core
    /// updating, the workers took more CPU for no gain (BENCHMARKS.md,
    /// "Lean by default"). It costs a thread per CPU per domain, started on
    /// the domain's first retire: opt in for a few long-lived domains. A
    /// worker whose CPU the process may not use runs unpinned.
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().worker_per_cpu(false);
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn worker_per_cpu(mut self, enabled: bool) -> Self {
        self.params.worker_per_cpu = enabled;
        self
    }

    /// Where bulk pages for `defer_drop` come from (default: the global
    /// allocator). Inject one to observe or fail page allocations.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rcu_reclaim::Config;
    /// use rcu_reclaim::pages::SystemPageAllocator;
    /// let c = Config::new().page_allocator(Arc::new(SystemPageAllocator));
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn page_allocator(mut self, alloc: std::sync::Arc<dyn PageAllocator>) -> Self {
        self.page_allocator = alloc;
        self
    }

    /// Called with the message of every callback or deferred drop that
    /// panics (after it is caught and counted; the others still run).
    ///
    /// ```
    /// let c = rcu_reclaim::Config::new().on_callback_panic(|msg| eprintln!("callback panicked: {msg}"));
    /// # let _ = rcu_reclaim::Rcu::new(c).unwrap();
    /// ```
    pub fn on_callback_panic(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.panic_hook = Some(std::sync::Arc::new(hook));
        self
    }

    /// The forced flavor, or `None` for detection.
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::Config::new().flavor_value(), None);
    /// ```
    pub fn flavor_value(&self) -> Option<Flavor> {
        self.flavor
    }

    /// Whether a memb domain may switch its readers to fences (see
    /// [`adaptive_reader_fences`](Self::adaptive_reader_fences)).
    ///
    /// ```
    /// assert!(rcu_reclaim::Config::new().adaptive_reader_fences_value());
    /// ```
    pub fn adaptive_reader_fences_value(&self) -> bool {
        self.adaptive_reader_fences
    }

    /// The stall timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(rcu_reclaim::Config::new().stall_timeout_value(), Duration::from_secs(21));
    /// ```
    pub fn stall_timeout_value(&self) -> Duration {
        self.stall_timeout
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let p = &self.params;
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        if self.stall_timeout.is_zero() {
            return bad("stall_timeout must be greater than zero (the default is 21 s)".into());
        }
        let d = crate::policy::Params::default();
        let zero: Vec<String> = [
            ("lazy_batch", p.lazy_batch, d.lazy_batch),
            ("pace_bytes", p.pace_bytes, d.pace_bytes),
            ("blimit", p.blimit, d.blimit),
            ("workers_per_node", p.workers_per_node, d.workers_per_node),
            ("qovld", p.qovld, d.qovld),
        ]
        .iter()
        .filter(|(_, value, _)| *value == 0)
        .map(|(name, _, default)| format!("{name} (the default is {default})"))
        .collect();
        if !zero.is_empty() {
            return bad(format!("{} must be at least 1, not 0", zero.join(", ")));
        }
        if p.workers_per_node > MAX_WORKERS_PER_NODE {
            return bad(format!(
                "workers_per_node ({}) must be at most {MAX_WORKERS_PER_NODE} (the default is 1; \
                 for a worker per CPU use worker_per_cpu(true))",
                p.workers_per_node
            ));
        }
        if p.qlowmark >= p.qhimark {
            return bad(format!(
                "qlowmark ({}) must be below qhimark ({}) (defaults 100 and 10,000)",
                p.qlowmark, p.qhimark
            ));
        }
        Ok(())
    }
}

/// Why a domain could not be created.
///
/// ```
/// use rcu_reclaim::{Config, Error, Flavor, Rcu};
/// match Rcu::new(Config::new().flavor(Flavor::Memb)) {
///     Ok(rcu) => assert_eq!(rcu.flavor(), Flavor::Memb),
///     Err(err) => {
///         // A kernel without membarrier(2): the error names the way out.
///         assert!(matches!(err, Error::MembarrierUnavailable { .. }));
///         assert!(err.to_string().contains("Flavor::Mb"));
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// [`Flavor::Memb`] was forced but the kernel refuses
    /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED`.
    MembarrierUnavailable {
        /// What the kernel said.
        reason: String,
    },
    /// A [`Config`] value is out of range.
    InvalidConfig(String),
    /// [`Rcu::init_global`] was called after the global domain was created.
    GlobalAlreadyInitialized,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MembarrierUnavailable { reason } => write!(
                f,
                "the memb flavor was requested but membarrier cannot be used: {reason}; \
                 use Flavor::Mb, or leave the flavor unset to fall back automatically"
            ),
            Error::InvalidConfig(msg) => write!(f, "invalid rcu-reclaim config: {msg}"),
            Error::GlobalAlreadyInitialized => f.write_str(
                "the global RCU domain already exists (Rcu::init_global() ran first, or \
                 Rcu::global() did, maybe through a constructor that uses the global domain: \
                 RcuCell::new, RcuHashMap::new, RcuCache::builder().build(), \
                 sources::auto_pressure); call Rcu::init_global() once, first thing in main, \
                 or build those with a domain of your own (Rcu::new, RcuCell::new_in, ...)",
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Picks the flavor: the forced one (checked) or the best available.
pub(crate) fn choose_flavor(config: &Config) -> Result<Flavor, Error> {
    if config.flavor == Some(Flavor::Qsbr) {
        // Its writers fence; `membarrier` is not needed.
        return Ok(Flavor::Qsbr);
    }
    let membarrier = if config.simulate_no_membarrier {
        Err("membarrier disabled by Config::simulate_no_membarrier".to_string())
    } else if cfg!(loom) {
        Err("membarrier is not modelled under loom".to_string())
    } else {
        crate::sys::membarrier_register()
    };
    match (config.flavor, membarrier) {
        (Some(Flavor::Mb), _) => Ok(Flavor::Mb),
        (Some(Flavor::Qsbr), _) => Ok(Flavor::Qsbr),
        (Some(Flavor::Memb), Err(reason)) => Err(Error::MembarrierUnavailable { reason }),
        (_, Ok(())) => Ok(Flavor::Memb),
        (None, Err(reason)) => {
            tracing::info!(%reason, "rcu-reclaim: membarrier unavailable, using the mb flavor");
            Ok(Flavor::Mb)
        }
    }
}
