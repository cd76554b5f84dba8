//! Grace periods: the sequence, `synchronize`, expedited and polled waits.
//!
//! The sequence `seq` follows the kernel's `rcu_seq`: the low two bits say
//! whether a grace period is in progress, the rest count completed ones. A
//! waiter takes a snapshot (the value `seq` will hold once a grace period that
//! starts after the snapshot has ended) and is done when `seq` reaches it.
//! Grace periods run one at a time under `gp_lock`; a caller that finds its
//! snapshot already reached when it gets the lock returns at once, so
//! concurrent callers share grace periods.
//!
//! One grace period: mark the sequence in progress, issue the writer's
//! barrier (`membarrier` for the memb flavor, a fence for mb), bump the
//! readers' counter to `new`, then wait until every slot reads `0` or at least
//! `new`. A reader whose slot the scan saw as `0`, or that snapshotted `new`,
//! began after the barrier and so sees every pointer unlinked before it.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::domain::{Inner, Rcu};
use crate::flavor::writer_barrier;
use crate::reader::{Registry, Slot};
use crate::sync::{fence, lock, thread, AtomicU64, Mutex};

const SEQ_STATE_MASK: u64 = 3;

/// Busy-wait rounds before a waiter starts yielding.
const SPIN_ROUNDS: u32 = 100;
/// Yield rounds (after spinning) before a normal waiter parks.
const YIELD_ROUNDS: u32 = 20;
/// Under loom (no clock), how often a yielding waiter checks for stalls.
/// Elsewhere an expedited waiter, which never parks, reads the clock at
/// every yield: on an oversubscribed CPU one yield can take a whole time
/// slice, and 1024 of them outlasted the stalls they were meant to catch.
const STALL_CHECK_YIELDS: u32 = 1024;

/// A snapshot of a domain's grace-period sequence, from [`Rcu::get_state`] or
/// [`Rcu::start_poll`]: [`Rcu::poll`] says whether a full grace period has
/// elapsed since it was taken.
///
/// ```
/// use rcu_reclaim::{Cookie, Rcu};
/// let rcu = Rcu::global();
/// assert!(rcu.poll(&Cookie::completed()));
/// let cookie = rcu.get_state();
/// rcu.synchronize();
/// assert!(rcu.poll(&cookie));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Cookie {
    seq: u64,
    domain: u64,
}

impl Cookie {
    /// A cookie that every domain reports as completed (the kernel's
    /// `get_completed_synchronize_rcu()`), for "nothing to wait for".
    ///
    /// ```
    /// use rcu_reclaim::{Cookie, Rcu};
    /// Rcu::global().cond_synchronize(Cookie::completed()); // returns at once
    /// ```
    pub const fn completed() -> Cookie {
        Cookie { seq: 0, domain: 0 }
    }

    /// The grace-period sequence value this cookie waits for.
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::Cookie::completed().seq(), 0);
    /// ```
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitMode {
    /// Spin, yield, then park on a futex.
    Normal,
    /// Spin and yield; never park.
    Expedited,
}

/// Counters kept by the grace-period machinery (relaxed; for stats only).
#[derive(Default)]
pub(crate) struct GpCounters {
    pub(crate) synchronize_calls: StdAtomicU64,
    pub(crate) expedited_calls: StdAtomicU64,
    pub(crate) shared: StdAtomicU64,
    pub(crate) normal_gps: StdAtomicU64,
    pub(crate) expedited_gps: StdAtomicU64,
    pub(crate) writer_parks: StdAtomicU64,
    pub(crate) stalls_reported: StdAtomicU64,
    pub(crate) poll_requests: StdAtomicU64,
}

fn bump(c: &StdAtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Grace-period state of one domain.
pub(crate) struct GracePeriods {
    seq: AtomicU64,
    gp_lock: Mutex<()>,
    pub(crate) counters: GpCounters,
    #[cfg(not(loom))]
    pub(crate) kthread: crate::gp_thread::GpThread,
}

impl GracePeriods {
    pub(crate) fn new() -> Self {
        GracePeriods {
            seq: AtomicU64::new(0),
            gp_lock: Mutex::new(()),
            counters: GpCounters::default(),
            #[cfg(not(loom))]
            kthread: crate::gp_thread::GpThread::new(),
        }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// The `seq` value that proves a full grace period after this call.
    fn snapshot(&self) -> u64 {
        // Orders the caller's earlier unlinks before reading the sequence: a
        // grace period that had not started by now will see them.
        fence(Ordering::SeqCst);
        (self.seq.load(Ordering::Acquire) + 2 * SEQ_STATE_MASK + 1) & !SEQ_STATE_MASK
    }

    pub(crate) fn done(&self, target: u64) -> bool {
        self.seq.load(Ordering::Acquire) >= target
    }

    /// Holds off every grace period (across `fork()`).
    #[cfg(not(loom))]
    #[cfg(not(loom))]
    pub(crate) fn lock_gp_for_fork(&self) -> crate::sync::ForkHeld<'_, ()> {
        crate::sync::lock_for_fork(&self.gp_lock)
    }

    pub(crate) fn shutdown(&self) {
        #[cfg(not(loom))]
        self.kthread.shutdown();
    }
}

impl Rcu {
    /// Waits until every read-side section of this domain that began before
    /// the call has ended. Concurrent callers share grace periods.
    ///
    /// The wait spins briefly, then yields, then parks until a reader leaving
    /// its section wakes it.
    ///
    /// # Panics
    /// Inside a read-side section of this domain (it would wait for itself).
    ///
    /// ```
    /// use rcu_reclaim::{Rcu, RcuCell};
    /// let cell = RcuCell::new(1u64);
    /// let old = cell.replace(Box::new(2));
    /// Rcu::global().synchronize();
    /// drop(old);
    /// ```
    #[track_caller]
    pub fn synchronize(&self) {
        self.assert_not_in_section("synchronize()");
        bump(&self.inner().gp.counters.synchronize_calls);
        let target = self.inner().gp.snapshot();
        self.wait_for_seq(target, WaitMode::Normal);
    }

    /// As [`synchronize`](Rcu::synchronize), for the shortest latency: the
    /// waiter spins and yields but never parks.
    ///
    /// # Panics
    /// Inside a read-side section of this domain.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let before = rcu.stats().gp_completed;
    /// rcu.synchronize_expedited();
    /// assert!(rcu.stats().gp_completed > before);
    /// ```
    #[track_caller]
    pub fn synchronize_expedited(&self) {
        self.assert_not_in_section("synchronize_expedited()");
        bump(&self.inner().gp.counters.expedited_calls);
        let target = self.inner().gp.snapshot();
        self.wait_for_seq(target, WaitMode::Expedited);
    }

    /// A cookie for the current state: once [`poll`](Rcu::poll) returns
    /// `true` for it, a full grace period has elapsed since this call.
    /// Starts nothing; pair it with [`start_poll`](Rcu::start_poll) or a
    /// later `synchronize`.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let c = rcu.get_state();
    /// rcu.cond_synchronize(c);
    /// assert!(rcu.poll(&c));
    /// ```
    pub fn get_state(&self) -> Cookie {
        Cookie {
            seq: self.inner().gp.snapshot(),
            domain: self.id(),
        }
    }

    /// As [`get_state`](Rcu::get_state), and makes sure a grace period that
    /// completes the cookie will run without anyone calling `synchronize`
    /// (the domain's grace-period thread runs it). Never blocks; usable inside
    /// a read-side section.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let c = rcu.start_poll();
    /// while !rcu.poll(&c) {
    ///     std::thread::yield_now();
    /// }
    /// ```
    pub fn start_poll(&self) -> Cookie {
        let cookie = self.get_state();
        if !self.poll(&cookie) {
            bump(&self.inner().gp.counters.poll_requests);
            #[cfg(not(loom))]
            self.inner().gp.kthread.request(self.inner(), cookie.seq);
        }
        cookie
    }

    /// Whether a full grace period has elapsed since `cookie` was taken.
    /// Never blocks.
    ///
    /// # Panics
    /// If `cookie` came from another domain.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let c = rcu.get_state();
    /// assert!(!rcu.poll(&c)); // nothing has run a grace period yet
    /// rcu.synchronize();
    /// assert!(rcu.poll(&c));
    /// ```
    #[track_caller]
    pub fn poll(&self, cookie: &Cookie) -> bool {
        self.check_cookie(cookie);
        self.inner().gp.done(cookie.seq)
    }

    /// Waits for a grace period only if none has elapsed since `cookie`.
    ///
    /// # Panics
    /// Inside a read-side section of this domain while the cookie is not
    /// complete, or if `cookie` came from another domain.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let c = rcu.get_state();
    /// rcu.synchronize();
    /// rcu.cond_synchronize(c); // returns at once: a grace period already passed
    /// ```
    #[track_caller]
    pub fn cond_synchronize(&self, cookie: Cookie) {
        if self.poll(&cookie) {
            return;
        }
        self.assert_not_in_section("cond_synchronize()");
        bump(&self.inner().gp.counters.synchronize_calls);
        self.wait_for_seq(cookie.seq, WaitMode::Normal);
    }

    #[track_caller]
    fn check_cookie(&self, cookie: &Cookie) {
        if cookie.domain != 0 && cookie.domain != self.id() {
            panic!(
                "rcu-reclaim: a Cookie of domain {} was passed to domain {}; poll a cookie on the \
                 Rcu that issued it",
                cookie.domain,
                self.id()
            );
        }
    }

    fn wait_for_seq(&self, target: u64, mode: WaitMode) {
        self.inner().wait_for_seq(target, mode);
    }
}

impl Inner {
    /// A grace-period snapshot (see `GracePeriods::snapshot`).
    pub(crate) fn gp_snapshot(&self) -> u64 {
        self.gp.snapshot()
    }

    /// Runs grace periods until the sequence reaches `target`.
    pub(crate) fn wait_for_seq_normal(&self, target: u64) {
        self.wait_for_seq(target, WaitMode::Normal);
    }

    pub(crate) fn wait_for_seq(&self, target: u64, mode: WaitMode) {
        let gp = &self.gp;
        if gp.done(target) {
            bump(&gp.counters.shared);
            return;
        }
        let _held = lock(&gp.gp_lock);
        if gp.done(target) {
            bump(&gp.counters.shared);
            return;
        }
        while !gp.done(target) {
            self.run_grace_period(mode);
        }
    }

    /// One grace period. Called with `gp_lock` held.
    fn run_grace_period(&self, mode: WaitMode) {
        let gp = &self.gp;
        let registry = &*self.registry;
        let start = gp.seq.load(Ordering::Relaxed);
        gp.seq.store(start + 1, Ordering::Relaxed);
        writer_barrier(self.registry.flavor);
        let new = registry.gp_ctr.fetch_add(1, Ordering::Relaxed) + 1;
        self.wait_for_readers(registry, new, mode);
        gp.seq
            .store((start | SEQ_STATE_MASK) + 1, Ordering::Release);
        bump(match mode {
            WaitMode::Normal => &gp.counters.normal_gps,
            WaitMode::Expedited => &gp.counters.expedited_gps,
        });
    }

    /// Waits until every slot reads `0` or at least `new`.
    fn wait_for_readers(&self, registry: &Registry, new: u64, mode: WaitMode) {
        let quiescent = |slot: &Slot| {
            let v = slot.ctr.load(Ordering::Acquire);
            v == 0 || v >= new
        };
        let started = Instant::now();
        let mut rounds = 0u32;
        registry.for_each_slot(|slot| {
            while !quiescent(slot) {
                rounds = rounds.saturating_add(1);
                if !cfg!(loom) && rounds <= SPIN_ROUNDS {
                    spin_loop();
                    continue;
                }
                if cfg!(loom) || mode == WaitMode::Expedited || rounds <= SPIN_ROUNDS + YIELD_ROUNDS
                {
                    if rounds % STALL_CHECK_YIELDS == 0
                        || (!cfg!(loom) && mode == WaitMode::Expedited)
                    {
                        self.check_stall(slot, started);
                    }
                    thread::yield_now();
                    continue;
                }
                #[cfg(not(loom))]
                self.park_on(registry, slot, &quiescent, started);
            }
        });
    }

    /// Parks until a reader leaves its section (or a stall check is due).
    #[cfg(not(loom))]
    fn park_on(
        &self,
        registry: &Registry,
        slot: &Slot,
        quiescent: &dyn Fn(&Slot) -> bool,
        started: Instant,
    ) {
        let timeout = self.check_stall(slot, started);
        registry.waiter.store(-1, Ordering::Relaxed);
        // Pairs with the reader's fence between clearing its slot and reading
        // `waiter`: either we see the slot cleared, or the reader sees -1 and
        // wakes us.
        writer_barrier(self.registry.flavor);
        if quiescent(slot) {
            registry.waiter.store(0, Ordering::Relaxed);
            return;
        }
        bump(&self.gp.counters.writer_parks);
        crate::sys::futex_wait(&registry.waiter, -1, timeout);
    }

    /// Reports `slot` once if it has held up the grace period past the stall
    /// timeout; returns how long to park before checking again.
    fn check_stall(&self, slot: &Slot, started: Instant) -> Duration {
        let limit = self.config.stall_timeout_value();
        let waited = started.elapsed();
        if waited < limit {
            return limit - waited;
        }
        let section = slot.ctr.load(Ordering::Relaxed);
        if section != 0 && slot.stall_reported.swap(section, Ordering::Relaxed) != section {
            let owner = lock(&slot.owner).clone();
            bump(&self.gp.counters.stalls_reported);
            let msg = format!(
                "rcu-reclaim: reader stall: thread '{}' (tid {}) has held up a grace period of \
                 domain {} for {:?}, longer than the stall timeout {:?}; a read-side section must \
                 not block or run for long (nor wait for something that needs a grace period)",
                owner.name, owner.tid, self.id, waited, limit
            );
            tracing::warn!(
                domain = self.id,
                thread = %owner.name,
                tid = owner.tid,
                waited_ms = waited.as_millis() as u64,
                "{msg}"
            );
            // As the kernel prints its stall warnings whatever the log
            // level: a stall is never silent for want of a subscriber.
            if tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>()) {
                eprintln!("{msg}");
            }
        }
        limit.min(Duration::from_secs(1))
    }
}
