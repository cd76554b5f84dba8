//! Grace periods: the sequence and the waits for readers (normal, which
//! parks, and expedited). The public `synchronize` family is in
//! `synchronize.rs`.
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

use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::flavor::writer_barrier;
use crate::reader::Registry;
use crate::reader_fences::{ReaderFences, StartBarrier};
use crate::sync::ForkedFrom;
use crate::sync::{fence, lock, mutated_for_loom, ord_for_loom, Arc, AtomicU64, Mutex};

mod readers;
mod stall;

use readers::{slot_quiescent, ReaderWait};

const SEQ_STATE_MASK: u64 = 3;

/// The sequence value at which the last grace period ended, the sequence
/// read as `seq`: a page whose cookie ([`GracePeriods::snapshot`], an end)
/// is this became ready as that grace period ended; one whose cookie is
/// lower, at an earlier end.
pub(crate) fn last_end(seq: u64) -> u64 {
    seq & !SEQ_STATE_MASK
}

/// How long a waiter for `gp_lock` waits for an unresolved `ForkGuard`
/// (`Rcu::prepare_fork`) before it says so, then waits on.
#[cfg(not(loom))]
pub(crate) const FORK_GUARD_WAIT: Duration = Duration::from_secs(5);

/// The longest nap between two looks of a waiter for a shard's run lock
/// (`lock_after_fork_reporting`): the most a `barrier` that waited for a
/// long batch adds to it once the batch ends.
#[cfg(not(loom))]
const RUN_LOCK_NAP_MAX: Duration = Duration::from_millis(1);

/// Spins, then yields, of a waiter for `gp_lock` that watches the
/// sequence before it blocks on the lock (`lock_gp_unless_done`).
#[cfg(not(loom))]
const GP_LOCK_SPINS: u32 = 64;
#[cfg(not(loom))]
const GP_LOCK_YIELDS: u32 = 16;

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
    /// `synchronize` calls that completed a grace period at once with no
    /// reader registered, counted under `gp_lock` (`bump_locked`: no locked
    /// instruction on that path); `Stats::synchronize_calls` adds them in.
    pub(crate) synchronize_calls_no_reader: StdAtomicU64,
    pub(crate) expedited_calls: StdAtomicU64,
    pub(crate) shared: StdAtomicU64,
    pub(crate) normal_gps: StdAtomicU64,
    pub(crate) expedited_gps: StdAtomicU64,
    pub(crate) writer_parks: StdAtomicU64,
    pub(crate) stalls_reported: StdAtomicU64,
    pub(crate) poll_requests: StdAtomicU64,
    /// `membarrier` system calls issued (memb flavor).
    pub(crate) membarriers: StdAtomicU64,
    /// Their time in all, in nanoseconds.
    pub(crate) membarrier_ns: StdAtomicU64,
    /// The recent cost of one (`policy::membarrier_recent_ns`), in
    /// nanoseconds; 0 before the first. For the retiring
    /// threads' pace (`GracePeriods::start_cost`): the mean since the
    /// domain was made would stay low for long after a program that
    /// started on one thread (cheap `membarrier`s) spreads over many CPUs.
    pub(crate) membarrier_recent_ns: StdAtomicU64,
    /// Grace periods completed by `try_advance` (a retiring thread's
    /// non-blocking step), not by a waiter.
    pub(crate) polled_gps: StdAtomicU64,
}

/// What [`GracePeriods::complete_now_if_no_reader`] did.
pub(crate) enum FastPath {
    /// Completed a grace period: no reader was registered.
    Completed,
    /// Started one (a reader was registered): the caller waits for its
    /// end, this sequence value.
    Started(u64),
    /// Nothing: the lock was held, or a grace period was in progress.
    NotTried,
}

pub(crate) fn bump(c: &StdAtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// `bump` for a counter only ever written under `gp_lock` (one writer at a
/// time): a load and a store, no locked instruction on the fast paths.
fn bump_locked(c: &StdAtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Grace-period state of one domain, and the readers it waits for.
pub(crate) struct GracePeriods {
    seq: AtomicU64,
    /// The readers' counter value the grace period in progress waits for
    /// (meaningful while `seq`'s state bits say one is in progress). Written
    /// and read under `gp_lock`.
    in_flight: AtomicU64,
    gp_lock: Mutex<()>,
    pub(crate) counters: GpCounters,
    /// The domain's number, for stall reports.
    id: u64,
    registry: Arc<Registry>,
    stall_timeout: Duration,
    /// When `try_advance` last started a grace period (µs since `base`).
    retirer_started_us: AtomicU64,
    /// When the grace period in progress started (µs since `base`; 0 under
    /// loom). Stale while none is in progress.
    started_us: AtomicU64,
    /// The grace period (`seq` while in progress) that a held-up wait ran
    /// to its bound on: no thread waits on it again.
    held_up_gave_up: AtomicU64,
    base: Instant,
    /// Whether its readers fence and its grace periods skip `membarrier`
    /// (see `reader_fences.rs`).
    pub(crate) fences: ReaderFences,
    /// `Config::simulate_membarrier_cost`: the policy's `membarrier` cost.
    assumed_membarrier_ns: Option<u64>,
    /// The process whose threads the domain knows: the one that created
    /// it, or the child that `ForkGuard::child` made it ready in. In any
    /// other process (forked without `prepare_fork`), `gp_lock` may be
    /// held for good by a thread that does not exist there.
    pid: std::sync::atomic::AtomicU32,
    /// Whether a `ForkGuard` holds `gp_lock` (from `prepare_fork` until
    /// the guard is resolved or dropped): a waiter that finds the lock
    /// held that long says so (`lock_after_fork`).
    #[cfg(not(loom))]
    held_for_fork: std::sync::atomic::AtomicBool,
    /// Whether `ForkGuard::child` made the domain ready in this process, a
    /// child: a lock of a map's or cache's writer (which `prepare_fork`
    /// does not stop) may then be held by a thread of the parent
    /// (`lock_written`).
    #[cfg(not(loom))]
    adopted: std::sync::atomic::AtomicBool,
}

impl GracePeriods {
    /// The grace periods of domain `id`, whose readers are `registry`'s;
    /// `adaptive_fences`: whether a memb domain may switch its readers to
    /// fences (`Config::adaptive_reader_fences`); `membarrier_ns`: the cost
    /// its policy assumes for a `membarrier` instead of the measured one
    /// (`Config::simulate_membarrier_cost`).
    pub(crate) fn new(
        id: u64,
        registry: Arc<Registry>,
        stall_timeout: Duration,
        adaptive_fences: bool,
        membarrier_ns: Option<u64>,
    ) -> Self {
        let fixed = Registry::reads_always_fenced(registry.flavor);
        GracePeriods {
            fences: ReaderFences::new(fixed, adaptive_fences),
            assumed_membarrier_ns: membarrier_ns,
            seq: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            gp_lock: Mutex::new(()),
            counters: GpCounters::default(),
            id,
            registry,
            stall_timeout,
            retirer_started_us: AtomicU64::new(0),
            started_us: AtomicU64::new(0),
            held_up_gave_up: AtomicU64::new(u64::MAX),
            base: Instant::now(),
            pid: std::sync::atomic::AtomicU32::new(crate::reader::current_pid()),
            #[cfg(not(loom))]
            held_for_fork: std::sync::atomic::AtomicBool::new(false),
            #[cfg(not(loom))]
            adopted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// In a child made ready by `ForkGuard::child`: this is the domain's
    /// process now.
    #[cfg(not(loom))]
    pub(crate) fn adopt_process(&self) {
        self.pid
            .store(crate::reader::current_pid(), Ordering::Relaxed);
        self.adopted.store(true, Ordering::Relaxed);
    }

    /// Takes `gp_lock`. In a process forked without `Rcu::prepare_fork`,
    /// a thread of the parent may have held it at the fork; that thread
    /// does not exist here, so the lock is never released: after
    /// `sync::FORKED_WAIT` this panics, naming the fix, rather than
    /// hang. (A grace period of the child's own threads lasting that long
    /// is reported the same way: such a child is using a domain its fork
    /// did not prepare.)
    fn lock_gp(&self) -> crate::sync::Locked<'_, ()> {
        self.lock_after_fork(&self.gp_lock, "a grace period", "the grace-period lock")
    }

    /// `gp_lock` for a caller that needs the sequence at `target`, or
    /// `None` once grace periods run by others have reached it. While
    /// another thread holds the lock (running a grace period, most likely
    /// the one this caller needs), the caller first spins, then yields,
    /// watching the sequence, and blocks on the lock only after that:
    /// many writers waiting for one grace period (a cache's inserts each
    /// freeing the backlog) otherwise queued on the lock, and each, woken
    /// in turn, took it only to find its grace period done (16 threads
    /// waited 95 % of their 84,000 acquisitions a second, 16 % of their
    /// time).
    fn lock_gp_unless_done(&self, target: u64) -> Option<crate::sync::Locked<'_, ()>> {
        #[cfg(not(loom))]
        for round in 0..GP_LOCK_SPINS + GP_LOCK_YIELDS {
            if self.done(target) {
                return None;
            }
            if let Some(held) = crate::sync::try_lock(&self.gp_lock) {
                return Some(held);
            }
            if round < GP_LOCK_SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let held = self.lock_gp();
        (!self.done(target)).then_some(held)
    }

    /// Takes `m`, a lock of this domain that a thread of the parent may
    /// have held at a fork the domain was not prepared for (as
    /// [`lock_gp`](Self::lock_gp) says); `what` cannot proceed without it,
    /// and `which` names it in the panic.
    pub(crate) fn lock_after_fork<'a, T>(
        &self,
        m: &'a Mutex<T>,
        what: &'static str,
        which: &str,
    ) -> crate::sync::Locked<'a, T> {
        #[cfg(loom)]
        let _ = (what, which);
        #[cfg(not(loom))]
        {
            if let Some(held) = crate::sync::try_lock(m) {
                return held;
            }
            let f = self.fork_check(what);
            if f.forked() {
                return crate::sync::lock_within(m, crate::sync::FORKED_WAIT, |waited| {
                    f.stuck(which, waited)
                });
            }
            if self.held_for_fork.load(Ordering::Relaxed) {
                return crate::sync::lock_within(m, FORK_GUARD_WAIT, |waited| {
                    self.warn_fork_guard_unresolved(what, waited);
                    lock(m)
                });
            }
        }
        lock(m)
    }

    /// As [`lock_after_fork`](Self::lock_after_fork), for a lock that a
    /// runner of callbacks holds while it runs them (a shard's run lock,
    /// which `barrier` waits for): should the wait last
    /// [`Config::stall_timeout`](crate::Config::stall_timeout), `stuck`
    /// is told how long it has lasted (once), and the wait goes on. A
    /// callback that waits for the waiting thread (a lock it holds, a
    /// message it would send after the wait) then deadlocks with a word,
    /// not in silence. Until then the wait naps, from 10 µs doubling up to
    /// [`RUN_LOCK_NAP_MAX`].
    pub(crate) fn lock_after_fork_reporting<'a, T>(
        &self,
        m: &'a Mutex<T>,
        what: &'static str,
        which: &str,
        stuck: impl FnOnce(Duration),
    ) -> crate::sync::Locked<'a, T> {
        #[cfg(not(loom))]
        {
            if let Some(held) = crate::sync::try_lock(m) {
                return held;
            }
            // After a fork, `lock_after_fork` gives up (or warns) itself.
            if !self.fork_check(what).forked() && !self.held_for_fork.load(Ordering::Relaxed) {
                let start = Instant::now();
                let mut nap = Duration::from_micros(10);
                loop {
                    if let Some(held) = crate::sync::try_lock(m) {
                        return held;
                    }
                    let waited = start.elapsed();
                    if waited >= self.stall_timeout {
                        stuck(waited);
                        break;
                    }
                    std::thread::sleep(nap.min(self.stall_timeout - waited));
                    nap = (nap * 2).min(RUN_LOCK_NAP_MAX);
                }
            }
        }
        #[cfg(loom)]
        let _ = stuck;
        self.lock_after_fork(m, what, which)
    }

    /// Says, once a waiter has waited `waited` for a lock that a
    /// `ForkGuard` holds, that the guard was never resolved.
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    pub(crate) fn warn_fork_guard_unresolved(&self, what: &str, waited: Duration) {
        crate::sys::warn_loud(&format!(
            "rcu-reclaim: {what} of domain {} has waited {waited:?} for the domain to come back \
             from prepare_fork(): its ForkGuard was never resolved. Call fork(), then \
             guard.parent() in the parent and guard.child() in the child, or drop the guard; \
             a guard leaked with mem::forget stops the domain for good. Waiting on",
            self.id
        ));
    }

    /// Takes `m`, a lock that a writer of a map or cache of this domain
    /// holds (an `RcuHashMap`'s stripe, an `RcuCache`'s policy shard),
    /// after the caller's try-lock found it held: the slow path alone, so
    /// the uncontended write pays nothing for it. [`Rcu::prepare_fork`]
    /// does not stop those writers (the domain does not know its maps, and
    /// a writer holds its stripe with no lock of the domain), so a thread
    /// of the parent may have held `m` at any fork, and that thread does
    /// not exist in the child: the lock is never released there.
    ///
    /// In a forked process, a lock whose `holder` is a thread of the
    /// parent (`lock_holder.rs`) is never released: the wait panics at
    /// once, naming the cause and the fix. Else, in a process forked
    /// without `prepare_fork` ([`ForkedFrom::forked`], looked at only now),
    /// the wait gives up after [`FORKED_WAIT`](crate::sync::FORKED_WAIT)
    /// with such a panic, as the domain's own locks do there (a holder
    /// caught at the fork before it noted itself is not known). In a child
    /// that `ForkGuard::child` made ready, where a closure of the child's
    /// own threads (a slow `get_or_insert_with` loader) may hold the lock
    /// that long too, it says so once, loudly, and waits on. `what` is the
    /// write, `which` the lock, both for those messages.
    ///
    /// [`Rcu::prepare_fork`]: crate::Rcu::prepare_fork
    #[cold]
    #[inline(never)]
    #[track_caller]
    pub(crate) fn lock_written<'a, T>(
        &self,
        m: &'a Mutex<T>,
        holder: &crate::lock_holder::Holder,
        what: &'static str,
        which: &str,
    ) -> crate::sync::Locked<'a, T> {
        #[cfg(not(loom))]
        return self.wait_for_writers_lock(
            what,
            which,
            holder,
            || crate::sync::try_lock(m),
            || lock(m),
        );
        #[cfg(loom)]
        {
            let _ = (what, which, holder);
            lock(m)
        }
    }

    /// [`lock_written`](Self::lock_written) for a writer's lock that is a
    /// plain `std` mutex (an `RcuCache`'s policy shard), after the
    /// caller's try-lock found it held.
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    #[track_caller]
    pub(crate) fn lock_std_written<'a, T>(
        &self,
        m: &'a std::sync::Mutex<T>,
        holder: &crate::lock_holder::Holder,
        what: &'static str,
        which: &str,
    ) -> std::sync::MutexGuard<'a, T> {
        self.wait_for_writers_lock(
            what,
            which,
            holder,
            || crate::sync::try_lock_std(m),
            || crate::sync::lock_std(m),
        )
    }

    /// The wait of [`lock_written`](Self::lock_written) and
    /// [`lock_std_written`](Self::lock_std_written), for a lock that
    /// `attempt` tries and `block` waits for.
    #[cfg(not(loom))]
    #[track_caller]
    fn wait_for_writers_lock<G>(
        &self,
        what: &'static str,
        which: &str,
        holder: &crate::lock_holder::Holder,
        attempt: impl FnMut() -> Option<G>,
        block: impl FnOnce() -> G,
    ) -> G {
        self.unless_holder_gone(what, which, holder);
        let f = self.fork_check(what);
        if f.forked() || self.adopted_in_child() {
            return crate::sync::retry_within(attempt, crate::sync::FORKED_WAIT, |waited| {
                self.writers_lock_waited(f, which, waited);
                block()
            });
        }
        block()
    }

    /// Panics if `holder` says the lock `which` (taken for `what`) is held
    /// by a thread of the parent this process was forked from (see
    /// `lock_holder.rs`; never so in a process not forked): no wait would
    /// end. A few loads unless it is.
    #[cfg(not(loom))]
    #[track_caller]
    pub(crate) fn unless_holder_gone(
        &self,
        what: &'static str,
        which: &str,
        holder: &crate::lock_holder::Holder,
    ) {
        if holder.gone() {
            let f = self.fork_check(what);
            // Not forked from the domain's process: `ForkGuard::child` made
            // the domain ready here.
            f.writers_lock_holder_gone(which, !f.forked());
        }
    }

    /// Whether `ForkGuard::child` made this domain ready in this process
    /// (a child of a prepared fork).
    #[cfg(not(loom))]
    pub(crate) fn adopted_in_child(&self) -> bool {
        self.adopted.load(Ordering::Relaxed)
    }

    /// What a wait for a map's or cache's writer's lock `which` does once
    /// it has waited `waited` ([`FORKED_WAIT`](crate::sync::FORKED_WAIT))
    /// in a forked process (see [`lock_written`](Self::lock_written)):
    /// panics if the fork was not prepared (`f` says), else warns (the
    /// caller waits on).
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    #[track_caller]
    pub(crate) fn writers_lock_waited(&self, f: ForkedFrom, which: &str, waited: Duration) {
        if f.forked() {
            f.stuck_on_writers_lock(which, waited);
        }
        crate::sys::warn_loud(&format!(
            "rcu-reclaim: {} of domain {} has waited {waited:?} for {which} in process {}, a \
             child that ForkGuard::child() made ready after fork(). If a thread of the parent \
             was writing to the same map or cache at the fork, it held that lock, does not \
             exist here, and never releases it: Rcu::prepare_fork() stops the domain's own \
             threads and locks, not the writers of maps and caches. Fork only while no thread \
             writes the maps and caches that the child writes, or write in the child only to \
             maps and caches made after the fork. (A closure of this process's own threads \
             that holds the lock this long is waited for as well.) Still waiting",
            f.what,
            self.id,
            std::process::id(),
        ));
    }

    /// The domain and its process, with `what` (the call), for the waits
    /// that give up in a process forked from it without
    /// `Rcu::prepare_fork` (`sync::ForkedWaits`; `ForkedFrom::forked`
    /// says whether this is such a process, looked at only once a wait
    /// blocks).
    pub(crate) fn fork_check(&self, what: &'static str) -> ForkedFrom {
        ForkedFrom {
            domain: self.id,
            home: self.pid.load(Ordering::Relaxed),
            what,
        }
    }

    /// The number of the domain these grace periods are of.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The readers this domain's grace periods wait for.
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
            .load(ord_for_loom("gp.seq.acquire", Ordering::Acquire))
    }

    /// The `seq` value that proves a full grace period after this call.
    pub(crate) fn snapshot(&self) -> u64 {
        // Orders the caller's earlier unlinks before reading the sequence: a
        // grace period that had not started by now will see them.
        if !mutated_for_loom("gp.snapshot.fence") {
            fence(Ordering::SeqCst);
        }
        (self
            .seq
            .load(ord_for_loom("gp.snapshot.acquire", Ordering::Acquire))
            + 2 * SEQ_STATE_MASK
            + 1)
            & !SEQ_STATE_MASK
    }

    /// Grace periods completed so far (the sequence without its state bits).
    pub(crate) fn completed(&self) -> u64 {
        self.seq() >> 2
    }

    pub(crate) fn done(&self, target: u64) -> bool {
        self.seq
            .load(ord_for_loom("gp.done.acquire", Ordering::Acquire))
            >= target
    }

    /// A broken `done` for the loom model's mutation check
    /// (`Rcu::poll_relaxed_for_loom_mutation`): a relaxed load, which does
    /// not acquire the completing grace period's release. The model must
    /// fail.
    #[cfg(loom)]
    pub(crate) fn done_relaxed(&self, target: u64) -> bool {
        self.seq.load(Ordering::Relaxed) >= target
    }

    /// Holds off every grace period (across `fork()`).
    #[cfg(not(loom))]
    pub(crate) fn lock_gp_for_fork(&self) -> crate::sync::ForkHeld<'_, ()> {
        let held = crate::sync::lock_for_fork(&self.gp_lock);
        self.held_for_fork.store(true, Ordering::Relaxed);
        held
    }

    /// Whether a `ForkGuard` holds the domain stopped (see
    /// `held_for_fork`): a waiter for one of the locks it holds says,
    /// after [`FORK_GUARD_WAIT`], that the guard was never resolved.
    #[cfg(not(loom))]
    pub(crate) fn held_for_fork(&self) -> bool {
        self.held_for_fork.load(Ordering::Relaxed)
    }

    /// The `ForkGuard` that holds `gp_lock` is about to let it go.
    #[cfg(not(loom))]
    pub(crate) fn fork_guard_released(&self) {
        self.held_for_fork.store(false, Ordering::Relaxed);
    }
}

impl GracePeriods {
    /// Runs grace periods until the sequence reaches `target`.
    pub(crate) fn wait_for_seq_normal(&self, target: u64) {
        self.wait_for_seq(target, WaitMode::Normal);
    }

    pub(crate) fn wait_for_seq(&self, target: u64, mode: WaitMode) {
        // A helper thread (rcu-kswapd, the pressure monitor) asleep here
        // waits for readers, not for the program's code: a drop joining it
        // waits on (see `Rcu::join_helper`).
        crate::sys::note_grace_period_wait(|| self.wait_for_seq_noted(target, mode))
    }

    fn wait_for_seq_noted(&self, target: u64, mode: WaitMode) {
        let gp = self;
        let Some(mut held) = gp.lock_gp_unless_done(target) else {
            bump(&gp.counters.shared);
            return;
        };
        let mut wait: Option<ReaderWait> = None;
        // Whether this caller ended a grace period itself; if not, it was
        // served by others' (they may complete one while it yields).
        let mut ran = false;
        while !gp.done(target) {
            if self.complete_if_no_reader(self.mode_counter(mode)) {
                ran = true;
                continue;
            }
            let s = self.seq.load(Ordering::Relaxed);
            let new = self.start_or_resume(s);
            let w = match &mut wait {
                Some(w) if w.new == new => w,
                _ => wait.insert(ReaderWait::new(new)),
            };
            match self.wait_for_readers(&self.registry, w, mode) {
                None => {
                    self.complete(s);
                    ran = true;
                    bump_locked(self.mode_counter(mode));
                }
                Some(pause) => {
                    // A long wait sleeps without `gp_lock`, so a retiring
                    // thread's `try_advance` may complete this grace period
                    // (and start the next) the moment its readers are done,
                    // instead of waiting for this thread to wake up. The
                    // loop resumes whatever is in progress when it is back.
                    drop(held);
                    if pause.is_zero() {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(pause);
                    }
                    match gp.lock_gp_unless_done(target) {
                        Some(again) => held = again,
                        // Another thread completed it meanwhile.
                        None => break,
                    }
                }
            }
        }
        if !ran {
            bump(&gp.counters.shared);
        }
    }

    /// A whole grace period at once, if no thread is registered as a reader
    /// (but the caller, outside its sections: see
    /// [`other_reader_claimed`](Self::other_reader_claimed))
    /// and no grace period is in progress or being run (`gp_lock` free):
    /// `synchronize`'s fast path, which skips the snapshot's fence (the
    /// sequence marked by a read-modify-write, with
    /// [`fence_after_lock`](crate::sync::fence_after_lock), orders the
    /// caller's unlinks and the mark before the scan) and counts the call
    /// itself. With a reader registered, the grace period it marked goes
    /// on (started, not waited for): [`FastPath::Started`] says when it
    /// ends.
    ///
    /// The caller is never inside a section of this domain when it returns
    /// `true`: a thread in a section (or online in a QSBR domain) holds a
    /// claimed slot, which makes the scan fail. So `synchronize` checks for
    /// misuse only after this fails, and its no-reader path reads no
    /// thread-local at all (the caller's own slot is looked up only once
    /// a claimed slot is found).
    pub(crate) fn complete_now_if_no_reader(&self) -> FastPath {
        // Not `sync::try_lock`: nothing here allocates, so the no-reclaim
        // mark (two thread-local accesses) is not needed. A poisoned lock
        // is used as `sync::lock` uses it.
        crate::sync::fence_before_rmw();
        let _held = match self.gp_lock.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return FastPath::NotTried,
        };
        let s = self.seq.load(Ordering::Relaxed);
        if s & SEQ_STATE_MASK != 0 {
            return FastPath::NotTried;
        }
        self.mark_no_reader_try();
        // Marked by a read-modify-write: on x86 that is the fence the scan
        // needs (see `complete_if_no_reader`), one locked instruction where
        // a store and a fence would be two.
        self.seq.swap(s + 1, Ordering::Relaxed);
        crate::sync::fence_after_lock();
        if !self.complete_if_no_reader_marked(s, &self.counters.normal_gps) {
            // Started, after the caller's unlinks: its end is the caller's
            // target (a snapshot now would read the mark and ask for one
            // grace period more).
            return FastPath::Started((s | SEQ_STATE_MASK) + 1);
        }
        bump_locked(&self.counters.synchronize_calls_no_reader);
        FastPath::Completed
    }

    /// With `gp_lock` held: if no grace period is in progress and no thread
    /// is registered as a reader (but the caller, outside its sections),
    /// completes one at once, without the
    /// writer's barrier and without waiting (liburcu's `synchronize_rcu`
    /// returns early on an empty registry too). Returns whether it did.
    ///
    /// Sound because a thread registers (claims its slot) and then issues a
    /// full fence before its first section (`reader::current_slot_slow`),
    /// while this fence (or `complete_now_if_no_reader`'s) orders
    /// everything that happened before the caller's snapshot before the
    /// scan: either the scan sees the slot claimed, or the new reader's
    /// section sees every unlink made before the grace period. A thread that unregistered ended its sections first (release
    /// store of `in_use`, acquired by the scan); an abandoned slot stays
    /// claimed.
    ///
    /// The sequence is marked in progress *before* the fence, as a grace
    /// period's start marks it before its barrier: another thread's
    /// snapshot that reads it unmarked then comes before the fence, and
    /// its unlinks are seen by any reader the scan misses. Marked after
    /// the scan (as it was), a thread could unlink and take its snapshot
    /// between the scan and the mark, while a reader that registered
    /// after the scan held the unlinked object: this grace period then
    /// completed that snapshot's cookie, and the object was freed under
    /// the reader (`tests/loom.rs`,
    /// `a_polled_cookie_orders_the_sections_it_waited_for_before_the_free`).
    fn complete_if_no_reader(&self, counter: &StdAtomicU64) -> bool {
        let s = self.seq.load(Ordering::Relaxed);
        if s & SEQ_STATE_MASK != 0 {
            return false;
        }
        self.mark_no_reader_try();
        self.seq.store(s + 1, Ordering::Relaxed);
        if !mutated_for_loom("gp.complete_if_no_reader.fence") {
            fence(Ordering::SeqCst);
        }
        self.complete_if_no_reader_marked(s, counter)
    }

    /// Whether a thread other than the caller is registered as a reader,
    /// or the caller is inside a section ([`Registry::any_claimed_but`]
    /// its own slot): the no-reader completion's test. A thread that
    /// retires outside its sections while no other thread reads (a
    /// single-threaded writer and reader) completes its grace periods at
    /// once, with a fence instead of a `membarrier`.
    fn other_reader_claimed(&self) -> bool {
        self.registry
            .any_claimed_but(|| crate::reader::own_slot_cached_in(self.id))
    }

    /// The counter of the grace periods run in `mode`.
    fn mode_counter(&self, mode: WaitMode) -> &StdAtomicU64 {
        match mode {
            WaitMode::Normal => &self.counters.normal_gps,
            WaitMode::Expedited => &self.counters.expedited_gps,
        }
    }

    /// Before the sequence is marked for a no-reader try: a start time
    /// that [`held_up`](Self::held_up) takes for a grace period that has
    /// only just started (none that it would wait on), should it look
    /// while the mark stands.
    fn mark_no_reader_try(&self) {
        #[cfg(not(loom))]
        self.started_us.store(u64::MAX, Ordering::Relaxed);
    }

    /// [`complete_if_no_reader`](Self::complete_if_no_reader) once the
    /// sequence, read as `s`, has been marked `s + 1`, and a full fence
    /// issued after the mark (and after the caller's unlinks). With a
    /// reader registered, the grace period so marked goes on as any other
    /// (its barrier, the counter's bump: `start_marked`), left in progress
    /// for the caller's wait (or a later one) to finish: the sequence
    /// never goes back, so a snapshot taken earlier never asks for more
    /// than one taken later.
    fn complete_if_no_reader_marked(&self, s: u64, counter: &StdAtomicU64) -> bool {
        if self.other_reader_claimed() {
            #[cfg(not(loom))]
            let now_us = self.start_clock();
            self.start_marked(
                #[cfg(not(loom))]
                now_us,
            );
            return false;
        }
        self.complete(s);
        bump_locked(counter);
        true
    }

    /// With `gp_lock` held and the sequence at `s`: starts a grace period
    /// if none is in progress (mark it, issue the writer's barrier, bump the
    /// readers' counter), and returns the counter value it waits for.
    fn start_or_resume(&self, s: u64) -> u64 {
        if s & SEQ_STATE_MASK != 0 {
            // Started by `try_advance`, which left it for later. Waiting
            // for its readers now is as a scan that took that long would be.
            return self.in_flight.load(Ordering::Relaxed);
        }
        // The start time first: `held_up` (a heuristic for a bounded wait,
        // relaxed) then rarely pairs the new `seq` with the last start.
        #[cfg(not(loom))]
        let now_us = self.start_clock();
        self.seq.store(s + 1, Ordering::Relaxed);
        self.start_marked(
            #[cfg(not(loom))]
            now_us,
        )
    }

    /// The start time of a grace period, stored for `held_up`.
    #[cfg(not(loom))]
    fn start_clock(&self) -> u64 {
        let now_us = crate::clock::elapsed(self.base).as_micros() as u64;
        self.started_us.store(now_us, Ordering::Relaxed);
        now_us
    }

    /// With `gp_lock` held and the sequence just marked in progress: the
    /// rest of a grace period's start (the barrier, the counter's bump);
    /// returns the counter value it waits for.
    fn start_marked(&self, #[cfg(not(loom))] now_us: u64) -> u64 {
        self.start_barrier(
            #[cfg(not(loom))]
            now_us,
        );
        let new = self.registry.gp_ctr.fetch_add(1, Ordering::Relaxed) + 1;
        #[cfg(not(loom))]
        self.publish_foreign_epoch(new);
        self.in_flight.store(new, Ordering::Relaxed);
        new
    }

    /// A grace period's start barrier: the writer's barrier, or, while the
    /// domain's readers fence (`reader_fences.rs`), a fence.
    fn start_barrier(&self, #[cfg(not(loom))] now_us: u64) {
        #[cfg(loom)]
        let now_us = 0;
        #[cfg(not(loom))]
        let foreign = !self.registry.foreign_gp.load(Ordering::Relaxed).is_null();
        #[cfg(loom)]
        let foreign = false;
        let each = self.membarrier_ns_each();
        let flag = &self.registry.fence_reads;
        match self.fences.at_start(flag, now_us, each, foreign) {
            StartBarrier::Fence => {
                if !mutated_for_loom("gp.start_barrier.fence") {
                    fence(Ordering::SeqCst)
                }
            }
            StartBarrier::Flavor => {
                self.writer_barrier();
                self.fences.issued_membarrier(flag);
            }
        }
    }

    /// The mean cost of this domain's `membarrier`s so far, in nanoseconds
    /// (`None`: none timed yet), or the one a test assumes
    /// (`Config::simulate_membarrier_cost`).
    fn membarrier_ns_each(&self) -> Option<u64> {
        let c = &self.counters;
        let n = c.membarriers.load(Ordering::Relaxed);
        self.assumed_membarrier_ns
            .or_else(|| (n > 0).then(|| c.membarrier_ns.load(Ordering::Relaxed) / n))
    }

    /// Stores reader counter `ctr` in the foreign readers' grace-period
    /// word, if the domain has one (`foreign.rs`), where the domain's own
    /// readers see it: right after the counter.
    #[cfg(not(loom))]
    fn publish_foreign_epoch(&self, ctr: u64) {
        let word = self.registry.foreign_gp.load(Ordering::Relaxed);
        if !word.is_null() {
            // SAFETY: a `&'static AtomicUsize` (`publish_foreign_word`).
            unsafe { &*word }.store(
                crate::foreign::gp_word(ctr, self.registry.flavor == crate::Flavor::Qsbr),
                Ordering::Relaxed,
            );
        }
    }

    /// Makes `word` the foreign readers' grace-period word (`foreign.rs`),
    /// holding the current epoch; under `gp_lock`, so no grace period
    /// starting meanwhile leaves an older epoch there.
    #[cfg(not(loom))]
    pub(crate) fn publish_foreign_word(&self, word: &'static std::sync::atomic::AtomicUsize) {
        let _held = self.lock_gp();
        self.registry
            .foreign_gp
            .store(std::ptr::from_ref(word).cast_mut(), Ordering::Relaxed);
        // Foreign readers never fence: every grace period from now on
        // issues `membarrier` (`reader_fences.rs`), this one too if it
        // started with a fence. The `membarrier` comes before the flag is
        // cleared: a grace period that started with a fence may be in
        // progress (waiting without `gp_lock`), and a reader of ours that
        // sees the flag clear, unfenced, may have snapshotted its new
        // counter; seeing a store made after the `membarrier` places the
        // reader's barrier before the rest of its section, which then sees
        // every unlink made before that grace period. Cleared first, the
        // barrier could fall after the section's loads (reordered before
        // the snapshot's load on Arm), which the scan would then not wait
        // for (tests/loom_fence_protocol.rs).
        if self.fences.switched_on(&self.registry.fence_reads) {
            self.writer_barrier();
            self.fences.disarm(&self.registry.fence_reads);
        }
        self.publish_foreign_epoch(self.registry.gp_ctr.load(Ordering::Relaxed));
    }

    /// With `gp_lock` held: ends the grace period in progress (the sequence
    /// read `s` when it was started or resumed).
    fn complete(&self, s: u64) {
        self.seq.store(
            (s | SEQ_STATE_MASK) + 1,
            ord_for_loom("gp.complete.release", Ordering::Release),
        );
    }

    /// The writer's half of the read-side barrier pairing, counted.
    pub(crate) fn writer_barrier(&self) {
        if self.registry.flavor != crate::Flavor::Memb {
            writer_barrier(self.registry.flavor);
            return;
        }
        bump(&self.counters.membarriers);
        // Timed (two clock reads, some 40 ns, against 3-20 µs for the call):
        // what each costs depends on the machine (an IPI to every CPU
        // running one of our threads; through a hypervisor, many times
        // dearer), and `Stats::membarrier_us` lets a user see it.
        #[cfg(not(loom))]
        let start = std::time::Instant::now();
        writer_barrier(self.registry.flavor);
        #[cfg(not(loom))]
        {
            let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let c = &self.counters;
            c.membarrier_ns.fetch_add(ns, Ordering::Relaxed);
            // Threads issuing `membarrier` at once may lose one another's
            // update here: the figure is a hint for the pace.
            let recent = c.membarrier_recent_ns.load(Ordering::Relaxed);
            c.membarrier_recent_ns.store(
                crate::policy::membarrier_recent_ns(recent, ns),
                Ordering::Relaxed,
            );
        }
    }

    /// Moves grace periods towards `target` without waiting: if no one else
    /// is running one, completes the one in progress if its readers have all
    /// moved on, then starts the next if `target` still needs it, and
    /// returns. A retiring thread calls this when it hands off a page, so
    /// its garbage does not wait for the grace-period thread to be
    /// scheduled; the grace-period thread (or any waiter) finishes what this
    /// leaves in progress. Returns whether `target` has been reached.
    pub(crate) fn try_advance(&self, target: u64) -> bool {
        if self.done(target) {
            return true;
        }
        let Some(_held) = crate::sync::try_lock(&self.gp_lock) else {
            return false;
        };
        let s = self.seq.load(Ordering::Relaxed);
        if s & SEQ_STATE_MASK != 0 {
            let new = self.in_flight.load(Ordering::Relaxed);
            let mut quiescent = true;
            self.registry.for_each_slot(|slot| {
                quiescent = quiescent && slot_quiescent(slot, new);
            });
            if !quiescent {
                return false;
            }
            self.complete(s);
            bump_locked(&self.counters.polled_gps);
        }
        if self.done(target) {
            return true;
        }
        let s = self.seq.load(Ordering::Relaxed);
        // No other reader (looked at before the mark, which then starts a
        // grace period whatever it finds: the pace below is for the
        // barrier a reader makes it issue): one completes at once.
        if s & SEQ_STATE_MASK == 0 && !self.other_reader_claimed() {
            self.complete_if_no_reader(&self.counters.polled_gps);
            return self.done(target);
        }
        // Not under loom: a clock would make its executions differ.
        if !cfg!(loom) && s & SEQ_STATE_MASK == 0 {
            // Paced: a retiring thread starts one at most every
            // `retirer_gp_min_interval` (its next hand-off, or the
            // grace-period thread's fallback look, starts it later):
            // sooner where the start costs a fence or a cheap `membarrier`.
            let now = crate::clock::elapsed(self.base).as_micros() as u64;
            let last = self.retirer_started_us.load(Ordering::Relaxed);
            let gap = crate::policy::retirer_gp_min_interval(self.start_cost());
            if last != 0 && now.saturating_sub(last) < gap.as_micros() as u64 {
                return false;
            }
            self.retirer_started_us.store(now.max(1), Ordering::Relaxed);
        }
        self.start_or_resume(s);
        false
    }

    /// What a grace period started now would most likely cost: a fence (an
    /// mb or QSBR domain, or a memb domain whose readers fence), or a
    /// `membarrier` with its recent cost (never below the mean the fence
    /// policy weighs). A hint for the pace only: the start's own
    /// `ReaderFences::at_start` may still switch the mode (so one start
    /// around a switch may issue `membarrier` 10 µs after the last), and it
    /// alone decides which barrier is issued. (A QSBR grace period also
    /// waits for every online thread's next report: starting them often
    /// costs nothing while it waits, since none starts before the last has
    /// completed, and frees sooner where threads report often. At 100 µs,
    /// two bench threads reporting after every operation held 2.8–3.4×
    /// crossbeam-epoch's mean garbage in read-mostly; as here, 1.3×.)
    pub(crate) fn start_cost(&self) -> crate::policy::StartCost {
        use crate::policy::StartCost;
        match self.registry.flavor {
            crate::Flavor::Mb | crate::Flavor::Qsbr => StartCost::Fence,
            crate::Flavor::Memb if self.fences.armed_now() => StartCost::Fence,
            // The recent cost, or the mean where that is higher: the mean
            // is what the fence policy weighs (`start_barrier`), and spaced
            // by a recent cost below it, the starts it counts would switch
            // readers to fences while `membarrier`s took under its mark.
            crate::Flavor::Memb => {
                StartCost::Membarrier(self.assumed_membarrier_ns.or_else(|| {
                    let recent = self.counters.membarrier_recent_ns.load(Ordering::Relaxed);
                    (recent != 0).then(|| recent.max(self.membarrier_ns_each().unwrap_or(0)))
                }))
            }
        }
    }

    /// How long ago a retiring thread last started a grace period
    /// (`try_advance`), or `None` while one is in progress (and under loom,
    /// whose executions a clock would make differ).
    pub(crate) fn retirer_quiet_for(&self) -> Option<Duration> {
        if cfg!(loom) || self.seq.load(Ordering::Relaxed) & SEQ_STATE_MASK != 0 {
            return None;
        }
        let now = crate::clock::elapsed(self.base).as_micros() as u64;
        let last = self.retirer_started_us.load(Ordering::Relaxed);
        Some(Duration::from_micros(now.saturating_sub(last)))
    }

    /// The grace period in progress (`seq`) and how long ago it started,
    /// unless none is, or a held-up wait has already run to its bound on it
    /// ([`gave_up_on`](Self::gave_up_on)). Never on a QSBR domain: its
    /// grace periods wait for every online thread's next report, so a long
    /// one is the usual, not a reader that is not running.
    #[cfg(not(loom))]
    pub(crate) fn held_up(&self) -> Option<(u64, Duration)> {
        if self.registry.flavor == crate::Flavor::Qsbr {
            return None;
        }
        let s = self.seq.load(Ordering::Relaxed);
        if s & SEQ_STATE_MASK == 0 || self.held_up_gave_up.load(Ordering::Relaxed) == s {
            return None;
        }
        let now = crate::clock::elapsed(self.base).as_micros() as u64;
        let started = self.started_us.load(Ordering::Relaxed);
        Some((s, Duration::from_micros(now.saturating_sub(started))))
    }

    /// Completes grace period `s` (in progress when [`held_up`](Self::held_up)
    /// returned it) if its readers have all moved on; returns whether it
    /// has ended (by this call or another).
    #[cfg(not(loom))]
    pub(crate) fn try_end(&self, s: u64) -> bool {
        self.try_advance((s | SEQ_STATE_MASK) + 1)
    }

    /// Records that a held-up wait on grace period `s` ran to its bound.
    #[cfg(not(loom))]
    pub(crate) fn gave_up_on(&self, s: u64) {
        self.held_up_gave_up.store(s, Ordering::Relaxed);
    }

    /// Completes the grace period in progress, if there is one and every
    /// reader has moved on since it started, without waiting and without
    /// starting another (see `try_advance`). Returns whether one completed.
    pub(crate) fn try_complete_in_progress(&self) -> bool {
        let s = self.seq.load(Ordering::Relaxed);
        s & SEQ_STATE_MASK != 0 && self.try_advance((s | SEQ_STATE_MASK) + 1)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The retiring threads' spacing where a start costs a `membarrier`
    /// (`MEMBARRIER_SPACING_PER_COST`) keeps their starts under half the
    /// share at which the fence policy (`reader_fences.rs`) switches
    /// readers to fences, as that policy weighs a `membarrier`: the mean
    /// since the domain was made. Weighed at their recent cost alone, a
    /// domain whose `membarrier`s got cheaper (threads on several CPUs at
    /// first, 2 µs each; one thread left, 0.5 µs) spaced them 20 µs apart,
    /// 1,000 a policy window, which the policy weighed at 10 % of a CPU
    /// and switched every reader to fences for, although they took 2.5 %.
    #[test]
    fn the_pace_never_weighs_a_membarrier_cheaper_than_the_fence_policy_does() {
        use crate::reader_fences::WINDOW_US;
        let gp = GracePeriods::new(
            1,
            Arc::new(Registry::new(crate::Flavor::Memb)),
            Duration::from_secs(10),
            true,
            None,
        );
        let c = &gp.counters;
        let starts_per_window = |gp: &GracePeriods| {
            let apart = crate::policy::retirer_gp_min_interval(gp.start_cost());
            WINDOW_US / apart.as_micros() as u64
        };
        // Dearer lately than on average: the recent cost (a rise the mean
        // would take long to show).
        c.membarriers.store(1_000, Ordering::Relaxed);
        c.membarrier_ns.store(1_000 * 500, Ordering::Relaxed);
        c.membarrier_recent_ns.store(2_000, Ordering::Relaxed);
        assert_eq!(
            gp.start_cost(),
            crate::policy::StartCost::Membarrier(Some(2_000))
        );
        // Cheaper lately: no cheaper than the fence policy weighs them.
        c.membarrier_ns.store(1_000 * 2_000, Ordering::Relaxed);
        c.membarrier_recent_ns.store(500, Ordering::Relaxed);
        let starts = starts_per_window(&gp);
        assert!(
            !crate::policy::fence_reads(false, starts, WINDOW_US, gp.membarrier_ns_each()),
            "{starts} starts a window at {:?} switch readers to fences",
            gp.start_cost()
        );
        // Untimed: the full spacing.
        c.membarriers.store(0, Ordering::Relaxed);
        c.membarrier_ns.store(0, Ordering::Relaxed);
        c.membarrier_recent_ns.store(0, Ordering::Relaxed);
        assert_eq!(gp.start_cost(), crate::policy::StartCost::Membarrier(None));
    }
}
