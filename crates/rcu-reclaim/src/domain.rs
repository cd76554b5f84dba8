//! RCU domains: configuration, flavor detection, the global domain.

use std::fmt;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::OnceLock;

use crate::callbacks::Callbacks;
use crate::config::choose_flavor;
pub use crate::config::{Config, Error};
pub use crate::flavor::Flavor;
use crate::gp::GracePeriods;
use crate::reader::{self, Registry, Slot};
use crate::sync::Arc;
use crate::topology::Topology;

static NEXT_ID: StdAtomicU64 = StdAtomicU64::new(1);

/// The state of a domain that is not needed on the read side.
pub(crate) struct Inner {
    pub(crate) id: u64,
    /// Live `Rcu` handles (background threads hold `Inner` directly).
    handles: std::sync::atomic::AtomicUsize,
    pub(crate) config: Config,
    pub(crate) registry: Arc<Registry>,
    pub(crate) gp: GracePeriods,
    pub(crate) callbacks: Callbacks,
    /// The grace-period thread behind `start_poll` and the callbacks.
    #[cfg(not(loom))]
    pub(crate) kthread: crate::gp_thread::GpThread,
}

impl Inner {
    /// Runs everything queued or buffered (after its grace period), then
    /// stops the domain's threads. Called when the last user handle goes:
    /// no thread can queue more.
    fn shut_down(&self) {
        while !self.callbacks.is_idle(&self.gp) {
            self.callbacks.barrier(&self.gp);
        }
        #[cfg(not(loom))]
        self.kthread.shutdown();
        self.callbacks.workers.shutdown();
        self.registry.alive.store(false, Ordering::Relaxed);
    }
}

impl crate::callbacks::EngineHost for Inner {
    fn id(&self) -> u64 {
        self.id
    }
    fn gp(&self) -> &GracePeriods {
        &self.gp
    }
    fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Normally done by the last `Rcu` handle already (then cheap).
        self.shut_down();
    }
}

/// An RCU domain: its readers, its grace periods and (in later layers) its
/// deferred callbacks.
///
/// Most programs use [`Rcu::global()`]. Independent domains made with
/// [`Rcu::new`] do not see each other's readers: a grace period of one never
/// waits for a reader of another. `Rcu` is a cheap handle; clones share the
/// domain, which lives until the last clone is dropped.
///
/// ```
/// use rcu_reclaim::{Rcu, RcuCell};
/// let rcu = Rcu::global();
/// let cell = RcuCell::new(String::from("v1"));
/// {
///     let guard = rcu.read_lock();
///     assert_eq!(cell.load(&guard).map(String::as_str), Some("v1"));
/// }
/// let old = cell.replace(Box::new(String::from("v2")));
/// rcu.synchronize();
/// drop(old); // no reader can still see "v1"
/// ```
pub struct Rcu {
    id: u64,
    flavor: Flavor,
    registry: Arc<Registry>,
    inner: Arc<Inner>,
}

/// A domain stays consistent when a panic unwinds through one of its calls
/// (its locks ignore poisoning; a panicking callback or deferred `Drop` is
/// caught and counted), so it may be used inside and after
/// `catch_unwind`. Only the configuration's user-supplied hooks (`dyn`
/// objects) kept the compiler from seeing that.
///
/// ```
/// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
/// let r = std::panic::catch_unwind(|| {
///     let _g = rcu.read_lock();
///     panic!("a reader fails");
/// });
/// assert!(r.is_err());
/// rcu.synchronize(); // the unwound guard ended its section
/// ```
impl std::panic::UnwindSafe for Rcu {}

/// See the [`UnwindSafe`](std::panic::UnwindSafe) impl.
impl std::panic::RefUnwindSafe for Rcu {}

/// A `Config` is settings and shared hooks (a page allocator, a panic
/// hook) that nothing updates in place, so a panic cannot leave one half
/// changed: it crosses `catch_unwind` as the domain does (the hooks' trait
/// objects kept the compiler from seeing that).
///
/// ```
/// let config = rcu_reclaim::Config::new().on_callback_panic(|msg| eprintln!("{msg}"));
/// let r = std::panic::catch_unwind(|| config.clone().lazy_batch(0));
/// assert!(r.is_ok());
/// ```
impl std::panic::UnwindSafe for Config {}

/// See the [`UnwindSafe`](std::panic::UnwindSafe) impl of `Config`.
impl std::panic::RefUnwindSafe for Config {}

impl Clone for Rcu {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Rcu {
            id: self.id,
            flavor: self.flavor,
            registry: self.registry.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Rcu {
    /// The last handle of a domain runs every queued callback and deferred
    /// drop (after its grace period) and stops the domain's threads before
    /// returning. Dropped from inside an RCU callback, or inside a read-side
    /// section of the same domain (a raw one: a guard borrows its handle),
    /// it hands that work to a short-lived thread instead, which finishes
    /// once the callback's batch, or the section, has ended (at the latest
    /// when the thread exits); waiting here would wait for itself. A queued
    /// callback that holds a clone of the domain is itself a handle: the
    /// last handle is then the callback's, dropped when it runs (at the
    /// domain's pace; never, on an [`on_demand`](Config::on_demand) domain
    /// nobody calls `barrier` on). So does a domain that a thread left
    /// inside a section as it exited (a leaked [`ReadGuard`](crate::ReadGuard)
    /// or online [`QsbrThread`](crate::QsbrThread)): no grace period can
    /// end, so its callbacks run only if that section ever ends (its guard,
    /// kept in a thread-local, drops late), else never; the drop returns.
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let in_section = self.in_read_section();
        let left_open = self.registry.any_section_left_open();
        if !crate::callbacks::in_callback() && !in_section && !left_open {
            self.inner.shut_down();
            return;
        }
        if in_section {
            crate::sys::warn_loud(&format!(
                "rcu-reclaim: the last handle of domain {} was dropped inside one of its \
                 read-side sections; its callbacks run once the section ends (drop the guard, or \
                 read_unlock_raw(), before dropping the domain)",
                self.id
            ));
        } else if left_open {
            crate::sys::warn_loud(&format!(
                "rcu-reclaim: the last handle of domain {} was dropped while a thread that \
                 exited left one of its read-side sections open (a leaked ReadGuard or online \
                 QsbrThread); no grace period can end, so its callbacks and deferred drops are \
                 left to a background thread that runs them only if the section ever ends",
                self.id
            ));
        }
        #[cfg(not(loom))]
        {
            let inner = self.inner.clone();
            let spawned = crate::sys::spawn_quiet(
                std::thread::Builder::new().name(format!("rcu-drop-{}", self.id)),
                move || inner.shut_down(),
            );
            if let Err(e) = spawned {
                // The background threads finish the work; Inner's drop
                // runs it again when they let go.
                crate::sys::warn_loud(&format!(
                    "rcu-reclaim: cannot start a thread to shut the domain down: {e}"
                ));
            }
        }
    }
}

#[cfg(not(loom))]
static GLOBAL: OnceLock<Rcu> = OnceLock::new();

/// How long dropping a helper's owner (a `PressureMonitor`, a
/// `MemoryBudget`) waits for the helper thread to stop before it says why
/// it may not and leaves it to stop on its own (`Rcu::join_helper`), as
/// `Reclaimer::unregister` waits for a pass calling its shrinker.
const HELPER_JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long that wait goes on past [`HELPER_JOIN_WAIT`] for a helper that
/// is runnable (waiting for a CPU, not asleep on a lock) or asleep in a
/// wait for a grace period (`sys::HelperState`): on a machine
/// loaded far past its CPUs a cache's pressure monitor, in the middle of a
/// shrink, took 1.8 s to stop, and the cache's entries, which it held,
/// outlived the cache's drop.
const HELPER_JOIN_RUNNABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Rcu {
    /// Creates an independent domain. Unlike crossbeam-epoch's
    /// `Collector::new`, a domain has threads of its own: none at first,
    /// then, from its first retire, a grace-period thread and a worker per
    /// NUMA node (one per CPU with [`Config::worker_per_cpu`]), which stop
    /// when the domain's last handle (an `Rcu`, or a cell, map or cache of
    /// it) is dropped. Prefer [`Rcu::global`] unless readers of one
    /// structure must not hold up another's grace periods.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu};
    /// let a = Rcu::new(Config::new()).unwrap();
    /// let b = Rcu::new(Config::new()).unwrap();
    /// let _reader = a.read_lock();
    /// b.synchronize(); // does not wait for a's reader
    /// ```
    pub fn new(config: Config) -> Result<Rcu, Error> {
        config.validate()?;
        let flavor = choose_flavor(&config)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let registry = Arc::new(Registry::new(flavor));
        tracing::debug!(domain = id, %flavor, "rcu-reclaim: domain created");
        let rcu = Rcu {
            id,
            flavor,
            registry: registry.clone(),
            inner: Arc::new(Inner {
                id,
                handles: std::sync::atomic::AtomicUsize::new(1),
                callbacks: Callbacks::new(
                    config.topology.clone().unwrap_or_else(Topology::detect),
                    config.params.clone(),
                    config.page_allocator.clone(),
                    config.panic_hook.clone(),
                ),
                gp: GracePeriods::new(
                    id,
                    registry.clone(),
                    config.stall_timeout,
                    config.adaptive_reader_fences,
                    config.simulate_membarrier_ns,
                ),
                config,
                registry,
                #[cfg(not(loom))]
                kthread: crate::gp_thread::GpThread::new(),
            }),
        };
        // The reader layer pays a pressure-throttle wait that a section
        // owed, when it ends, through these hooks (weak: the registry lives
        // in the domain), and hands on an exited thread's page.
        #[cfg(not(loom))]
        {
            let weak = Arc::downgrade(&rcu.inner);
            let _ = rcu.registry.pay_owed.set(Box::new(move |payer| {
                if let Some(inner) = weak.upgrade() {
                    crate::callbacks::pay_owed_throttle(&inner, payer);
                }
            }));
            // A thread that exits leaves its buffered page in the
            // registry's orphans: the grace-period thread takes it now.
            let weak = Arc::downgrade(&rcu.inner);
            let _ = rcu.registry.adopt_orphans.set(Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.kthread.kick(&inner);
                }
            }));
            // What a stalled reader holds back, for its stall report.
            let weak = Arc::downgrade(&rcu.inner);
            let _ = rcu.registry.backlog_bytes.set(Box::new(move || {
                weak.upgrade()
                    .map_or(0, |inner| inner.callbacks.pending_bytes_unlocked(&inner.gp))
            }));
        }
        Ok(rcu)
    }

    /// The process-wide domain, created with [`Config::default`] on first use
    /// (or with the config given to [`Rcu::init_global`]).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// assert!(std::ptr::eq(rcu, rcu_reclaim::Rcu::global()));
    /// ```
    #[cfg(not(loom))]
    #[inline] // one load and a compare, inlined into other crates' hot paths (the C ABI's)
    pub fn global() -> &'static Rcu {
        GLOBAL.get_or_init(|| {
            Rcu::new(Config::default()).expect("the default config always yields a domain")
        })
    }

    /// Creates the global domain with `config`. Fails if it already exists.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Error, Rcu};
    /// let _ = Rcu::global();
    /// assert_eq!(Rcu::init_global(Config::new()).unwrap_err(), Error::GlobalAlreadyInitialized);
    /// ```
    #[cfg(not(loom))]
    pub fn init_global(config: Config) -> Result<&'static Rcu, Error> {
        if GLOBAL.get().is_some() {
            return Err(Error::GlobalAlreadyInitialized);
        }
        let rcu = Rcu::new(config)?;
        GLOBAL
            .set(rcu)
            .map_err(|_| Error::GlobalAlreadyInitialized)?;
        Ok(GLOBAL.get().expect("just set"))
    }

    /// A number that identifies this domain for the life of the process.
    ///
    /// ```
    /// let a = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// assert_eq!(a.id(), a.clone().id());
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    /// "domain N", or "domain N (the global one, `Rcu::global()`)", for
    /// messages that name a domain by id.
    pub(crate) fn name_of(id: u64) -> String {
        #[cfg(not(loom))]
        if GLOBAL.get().is_some_and(|g| g.id == id) {
            return format!("domain {id} (the global one, Rcu::global())");
        }
        format!("domain {id}")
    }

    /// The flavor chosen at creation.
    ///
    /// ```
    /// use rcu_reclaim::{Flavor, Rcu};
    /// let f = Rcu::global().flavor();
    /// assert!(f == Flavor::Memb || f == Flavor::Mb); // Qsbr only when asked for
    /// ```
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The mutation check of the loom model of reader fences: the domain's
    /// readers stop fencing while its grace periods still skip
    /// `membarrier` (under loom, always). Never use it: the model must fail
    /// with it.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn unfence_readers_for_loom_mutation(&self) {
        self.registry
            .fence_reads
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// For loom models of publication alone (nothing freed): the domain's
    /// read-side sections stop fencing, as a memb domain's do between its
    /// grace periods' `membarrier`s, so a model sees the orderings that
    /// publish (a map's links, a cell's pointer) without the sections'
    /// fences. Its grace periods are then unsound (loom has no
    /// `membarrier`): a model that frees must not use it.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn unfenced_sections_for_loom(&self) {
        self.registry
            .fence_reads
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// The configuration the domain was created with.
    ///
    /// ```
    /// use std::time::Duration;
    /// let rcu = rcu_reclaim::Rcu::global();
    /// assert!(rcu.config().stall_timeout_value() > Duration::ZERO);
    /// ```
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Whether the calling thread is inside a read-side section of this
    /// domain: a [`ReadGuard`](crate::ReadGuard) or raw section, or (QSBR
    /// flavor) an online [`QsbrThread`](crate::QsbrThread) registration,
    /// which is one long section between its quiescent states.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// assert!(!rcu.in_read_section());
    /// ```
    pub fn in_read_section(&self) -> bool {
        reader::nesting_in(self.id) > 0
            || (self.flavor == Flavor::Qsbr && reader::qsbr_online_in(self.id))
            // In a thread-local's destructor that runs after the thread's
            // registrations are gone, a guard or online registration kept
            // in such a thread-local is still open.
            || reader::in_section_after_registrations(&self.registry)
    }

    /// How many read-side sections of this domain the calling thread has
    /// open, nested ([`ReadGuard`](crate::ReadGuard)s and raw sections; a
    /// QSBR thread's online state is not counted: see
    /// [`in_read_section`](Rcu::in_read_section)).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let outer = rcu.read_lock();
    /// let inner = rcu.read_lock();
    /// assert_eq!(rcu.read_depth(), 2);
    /// drop(inner);
    /// drop(outer);
    /// assert_eq!(rcu.read_depth(), 0);
    /// ```
    pub fn read_depth(&self) -> usize {
        usize::try_from(reader::nesting_in(self.id)).unwrap_or(usize::MAX)
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// This thread's reader slot in this domain, registering the thread on
    /// first use; alive while the thread's registration is.
    #[inline]
    pub(crate) fn current_slot(&self) -> *const Slot {
        reader::current_slot(self.id, &self.registry)
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Joins `handle`, a helper thread told to stop, unless waiting for it
    /// could wait for the calling thread itself: from that very thread,
    /// from inside an RCU callback (the helper may be waiting for its
    /// batch), or inside a read-side section of this domain (the helper may
    /// be waiting for a grace period). Then the thread is left to finish
    /// on its own, as it does once it sees the stop request. So it is, with
    /// a warning, once [`HELPER_JOIN_WAIT`] has passed while the helper is
    /// asleep in the kernel (a helper on a CPU or waiting for one, or
    /// asleep in a wait for a grace period, is waited for up to
    /// [`HELPER_JOIN_RUNNABLE_WAIT`]): the helper runs the
    /// program's code (shrinkers, the OOM handler, a budget's usage
    /// function, a pressure source), which may wait for a lock the caller
    /// holds, and an unbounded join then deadlocked in silence.
    pub(crate) fn join_helper(&self, handle: std::thread::JoinHandle<()>, what: &str) {
        self.join_helper_until(handle, what, || false, |_| None);
    }

    /// [`join_helper`](Self::join_helper), which also stops waiting once
    /// `done()` (the helper has done all the caller waits for, and only
    /// lets its own resources go): the thread is then left to finish.
    /// `slow(waited)`: the warning for a wait past [`HELPER_JOIN_WAIT`]
    /// when the helper is known to be out of the program's code (`None`:
    /// the warning that it is still in it).
    pub(crate) fn join_helper_until(
        &self,
        handle: std::thread::JoinHandle<()>,
        what: &str,
        done: impl Fn() -> bool,
        slow: impl Fn(std::time::Duration) -> Option<String>,
    ) {
        let waits_on_us = handle.thread().id() == std::thread::current().id()
            || crate::callbacks::in_callback()
            || self.in_read_section();
        if waits_on_us {
            tracing::debug!(
                thread = what,
                "rcu-reclaim: not joining a helper that may wait for this thread"
            );
            return;
        }
        let start = std::time::Instant::now();
        let mut nap = std::time::Duration::from_micros(20);
        while !handle.is_finished() {
            if done() {
                return;
            }
            let waited = start.elapsed();
            // A helper on a CPU (or waiting for one), or asleep in a wait
            // for a grace period (which readers end, not this thread: it is
            // in no section of the domain, or it would not join), is on its
            // way to stop: on a machine with far more busy threads than
            // CPUs, readers preempted in their sections made one grace
            // period last seconds, and `rcu-kswapd` waiting there was given
            // up on after 1 s.
            let state = (waited >= HELPER_JOIN_WAIT)
                .then(|| crate::sys::helper_state(handle.thread().id()));
            let progressing = matches!(
                state,
                Some(crate::sys::HelperState::Runnable | crate::sys::HelperState::GracePeriodWait)
            );
            if state.is_some() && (waited >= HELPER_JOIN_RUNNABLE_WAIT || !progressing) {
                // Said from a destructor, maybe while its thread unwinds:
                // a `tracing` subscriber's panic must not leave it.
                let msg = slow(waited).unwrap_or_else(|| {
                    let why = if state == Some(crate::sys::HelperState::GracePeriodWait) {
                        "it is still waiting for a grace period, held up by readers that stay \
                         in their read-side sections (or lose their CPU in them, on a machine \
                         with far more busy threads than CPUs). It is left to stop on its own \
                         once the grace period ends"
                    } else {
                        "it is still running the program's code (a shrinker's count or scan, \
                         the OOM handler, a budget's usage function or a pressure source), \
                         most likely waiting for a lock this thread holds. It is left to stop \
                         on its own once that code returns; drop it without holding a lock \
                         that code takes"
                    };
                    format!(
                        "rcu-reclaim: waited {waited:?} for the {what} thread to stop (as its \
                         PressureMonitor, MemoryBudget or cache was dropped): {why}"
                    )
                });
                crate::sync::report_caught(|| crate::sys::warn_loud(&msg));
                return;
            }
            let left = HELPER_JOIN_WAIT.saturating_sub(waited);
            std::thread::sleep(if left.is_zero() { nap } else { nap.min(left) });
            nap = (nap * 2).min(std::time::Duration::from_millis(10));
        }
        if handle.join().is_err() {
            crate::sys::error_loud(&format!("rcu-reclaim: a helper thread ({what}) panicked"));
        }
    }

    /// How to leave the read-side section this thread holds in this
    /// domain (its nesting is above 0), for a misuse panic: the section a
    /// map or cache write or `RcuCell::update` holds around the caller's
    /// code has no guard of the caller's to drop, so the message names
    /// that call; a raw section names its end.
    pub(crate) fn section_fix(&self) -> &'static str {
        if crate::sync::in_map_write() {
            "The section is the one an RcuHashMap or RcuCache write holds while it runs \
             your code under its key's lock (update's closure, remove_if's predicate, \
             retain's predicate, get_or_insert_with's closure, a key's Hash or Eq): do \
             this after that call returns (and after dropping any ReadGuard of yours)"
        } else if crate::sync::in_cell_update() {
            "The section is the one RcuCell::update holds while its closure runs: do \
             this after that call returns (and after dropping any ReadGuard of yours)"
        } else if crate::callbacks::in_callback() {
            "The section is not this code's: it runs inside an RCU callback or a destructor \
             that RCU runs, which run_callbacks, reclaim, or another domain's barrier or last \
             handle's drop ran on a thread inside a read-side section of this domain, where \
             no grace-period wait can end; or a retiring call there (RcuCell::store, \
             defer_drop, a map or cache write) freed ready values of a type declared \
             drops_anywhere (ReclaimSize::DROPS_ANYWHERE), whose Drop must not wait for a grace \
             period: declare it without drops_anywhere. Queue the follow-up work with call() \
             (or poll with start_poll()/poll()) instead of waiting in a callback"
        } else if reader::raw_nesting_in(self.id) > 0 {
            "End the raw section first (read_unlock_raw(), and drop any ReadGuard)"
        } else {
            "Drop the ReadGuard first"
        }
    }

    /// Panics, naming `call` and, where it has one, the form of it that
    /// does not wait (`instead`), if this thread is inside a section of
    /// this domain.
    #[track_caller]
    pub(crate) fn assert_not_in_section(&self, call: &str, instead: WaitInstead) {
        // One look at the thread's nesting; the QSBR list only on a QSBR
        // domain (an online thread there is in one long section).
        if reader::nesting_in(self.id) > 0 {
            let fix = self.section_fix();
            let or = match instead {
                WaitInstead::Poll => ", or use start_poll()/poll() to wait without blocking".into(),
                WaitInstead::Nothing => String::new(),
                WaitInstead::Retire(other) => format!(", or use {other}, which never waits"),
            };
            panic!(
                "rcu-reclaim: {call} called inside a read-side critical section of the same \
                 domain; it would wait for itself forever. {fix}{or}"
            );
        }
        if self.flavor == Flavor::Qsbr && reader::qsbr_online_in(self.id) {
            // An RCU callback or a destructor that RCU runs, run on an
            // online thread (a call there ran ready ones; `collect()` no
            // longer does, on an online thread): its
            // code cannot put the thread offline, so the advice below
            // (offline_while) is no fix for it.
            if crate::callbacks::in_callback() {
                panic!(
                    "rcu-reclaim: {call} called inside an RCU callback (or a destructor that RCU \
                     runs) that runs on a thread online in the same QSBR domain (a call on that \
                     thread ran ready callbacks there, or a retiring call there, RcuCell::store, \
                     defer_drop or a map or cache write, freed ready values of a type declared \
                     drops_anywhere, whose Drop must not wait for a grace period: declare it \
                     without drops_anywhere); it would wait for that thread's own quiescent state \
                     forever, and the callback cannot put the thread offline. In the callback, \
                     queue the follow-up work with call() (or use start_poll()/poll()) instead of \
                     waiting; or make calls that run callbacks on QSBR threads only inside \
                     QsbrThread::offline_while(|| ...), where callbacks may wait"
                );
            }
            let or = match instead {
                WaitInstead::Poll => ", or use QsbrThread::synchronize()".into(),
                WaitInstead::Nothing => String::new(),
                WaitInstead::Retire(other) => format!(", or use {other}, which never waits"),
            };
            // Called inside one registration's `offline_while` with another
            // still online, the advice alone read as if it had not been
            // followed: the count says which case this is.
            let online = reader::qsbr_online_count_in(self.id);
            let which = if online > 1 {
                format!("{online} QsbrThread registrations of this thread are online there")
            } else {
                "a QsbrThread registration of this thread is online there; if this is inside \
                 another registration's offline_while, this one is still online"
                    .into()
            };
            panic!(
                "rcu-reclaim: {call} called on a thread that is online in the same QSBR domain \
                 ({which}); it would wait for the thread's own quiescent state forever. Call it \
                 through QsbrThread::offline_while(|| ...){or} (with two registrations on this \
                 thread, every one of them must be offline)"
            );
        }
        if reader::in_section_after_registrations(&self.registry) {
            panic!(
                "rcu-reclaim: {call} called after this thread's registrations were destroyed \
                 (from a thread-local's destructor as the thread exits, or from an atexit \
                 handler or static destructor as the process exits), while a read-side \
                 section of the same domain is still open on this thread (a ReadGuard or an \
                 online QsbrThread kept in a thread-local, or leaked with mem::forget); it \
                 would wait for itself forever. Drop the guard or registration first (take it \
                 out of the thread-local before the thread exits; never forget a guard)"
            );
        }
    }
}

/// What a call that waits for a grace period offers instead inside a
/// read-side section: its misuse panic names it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WaitInstead {
    /// A grace-period wait: the polled API (`start_poll()` / `poll()`), or
    /// `QsbrThread::synchronize()` on an online QSBR thread.
    Poll,
    /// No form that does not wait (`barrier()`, `prepare_fork()`): only
    /// ending the section.
    Nothing,
    /// A call that frees after a grace period instead of waiting for it,
    /// named here.
    Retire(&'static str),
}

impl fmt::Debug for Rcu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rcu")
            .field("id", &self.id)
            .field("flavor", &self.flavor)
            .finish_non_exhaustive()
    }
}
