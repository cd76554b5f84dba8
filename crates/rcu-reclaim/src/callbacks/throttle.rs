//! Back-pressure on retiring threads: a thread that retires faster than
//! its garbage can be freed waits, briefly, for it to be freed (the
//! kernel throttles writers of dirty pages the same way, in
//! `balance_dirty_pages`, and reclaimers in `reclaim_throttle`).
//!
//! * **Producer throttle** (always): a thread handing its shard a page
//!   while more than `policy::THROTTLE_PAGES` pages wait ready to free,
//!   or queueing a callback while more than `policy::CALL_THROTTLE`
//!   callbacks wait ready to run, yields to the worker, for at most
//!   `policy::THROTTLE_MAX_WAIT`.
//! * **Pressure throttle** (while a pressure signal is held): a thread
//!   handing off a page while the shards hold more than
//!   `Config::pressure_throttle_bytes` waits, outside any read-side
//!   section, until they hold half that, for at most 10 ms per hand-off
//!   (100 ms when they hold over twice the mark, 1 s over four times:
//!   the wait ends when a grace period cannot, and says who holds it up),
//!   moving grace
//!   periods on itself and waking the workers. Without it, two threads
//!   storing 1 MiB values at full speed in a 100 MiB cgroup kept up to
//!   28 MiB waiting for grace periods that the grace-period thread, short
//!   of CPU, could not run, and were OOM-killed in 3 runs of 3 although a
//!   pressure source had put the domain in fast mode.
//!
//! * **Call backlog** (a pressure signal held, or a known memory limit's
//!   usage over three quarters of its mark): `call` books no bytes, so a
//!   thread handing off a page of calls while more than
//!   `policy::CALL_BACKLOG` entries are outstanding (queued, ready or in a
//!   worker's hands; `CALL_BACKLOG_OVER` over the limit's mark itself)
//!   waits until they are half as many, for at most 10 ms (100 ms far
//!   over). Four threads queueing closures that owned 4 KiB each in a
//!   100 MiB cgroup were OOM-killed in every run before.
//! * **Headroom** (`headroom.rs`): under a known memory limit, garbage
//!   over half of the room left below its mark waits, signal or not.
//!
//! A retire inside a read-side section cannot wait for a grace period
//! (it waits for that very section): the section owes the wait and pays it
//! when it ends (`reader::OWES_THROTTLE`, through the domain's hook
//! `Registry::pay_owed` into `api::pay_owed_throttle`); an online QSBR
//! registration pays, offline, at its next quiescent state,
//! or when it goes offline. Writers that read and replace inside one
//! section (as `compare_exchange` needs) were OOM-killed in 4 runs of 4
//! before; 13 of 14 survived after.
//!
//! Both waits are bounded, so a worker or a reader stuck on a lock the
//! retiring thread holds costs it a delay, never a deadlock; and both stop
//! once a worker has spent `policy::WORKER_STUCK_MS` on one callback or
//! destructor and is asleep in the kernel (`Callbacks::runner_stuck`; a
//! worker that only lost its CPU is waited for): a writer that retires
//! under a lock the values' `Drop` takes waited up to 1 s per retire under
//! pressure, for a worker blocked on that very lock. The wait over a
//! memory limit's allowance gives such a worker longer the nearer the limit
//! (`policy::headroom_stuck_ms`: 100 ms while memory is short, 500 ms over
//! the limit's mark): there a worker asleep for 5 ms on one free is most
//! often waiting for glibc's arena lock or the cgroup's reclaim, and a
//! wait given up lets the OOM killer in.

#[cfg(not(loom))]
use std::cell::Cell;
use std::sync::atomic::Ordering;
#[cfg(not(loom))]
use std::time::Duration;
use std::time::Instant;

use super::{add, Callbacks};
use crate::gp::GracePeriods;
use crate::policy;
use crate::sync::{lock, try_lock};

#[cfg(not(loom))]
thread_local! {
    /// The pressure throttle's waits so far in the call that retires many
    /// values now running on this thread (`one_call`), or `None` outside
    /// one.
    static CALL_WAITED: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Runs `f`, a call that may retire many values (a map's `clear`, a cache
/// insert's evictions), with the pressure throttle's waits in it limited
/// to `policy::PRESSURE_THROTTLE_PER_CALL` in all: behind a reader that
/// stays in its section every hand-off would wait its bound, and one
/// `clear` of 2,000 values waited 5 s (at 10 ms each). Nested calls share
/// the outer one's limit.
#[cfg(not(loom))]
pub(crate) fn one_call<R>(f: impl FnOnce() -> R) -> R {
    let outer = CALL_WAITED.try_with(|c| c.get().is_some()).unwrap_or(true);
    if outer {
        return f();
    }
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            let _ = CALL_WAITED.try_with(|c| c.set(None));
        }
    }
    let _ = CALL_WAITED.try_with(|c| c.set(Some(Duration::ZERO)));
    let _end = End;
    f()
}

/// As the other `one_call` (no throttle under loom).
#[cfg(loom)]
pub(crate) fn one_call<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// How long a wait may last within the current call (`one_call`): what is
/// left of its limit, or `max` outside one.
#[cfg(not(loom))]
fn left_in_call(max: Duration) -> Duration {
    match CALL_WAITED.try_with(Cell::get).ok().flatten() {
        Some(waited) => max.min(policy::PRESSURE_THROTTLE_PER_CALL.saturating_sub(waited)),
        None => max,
    }
}

/// Counts `waited` against the current call's limit (`one_call`).
#[cfg(not(loom))]
fn spent_in_call(waited: Duration) {
    let _ = CALL_WAITED.try_with(|c| {
        if let Some(w) = c.get() {
            c.set(Some(w + waited));
        }
    });
}

impl Callbacks {
    /// Back-pressure on a thread that has just handed shard `cpu` a full
    /// page, when the domain does not let retiring threads free
    /// (`retiring_thread_frees`), outside callbacks and reclaim: while the
    /// shard holds more than `policy::THROTTLE_PAGES` pages whose grace
    /// period has elapsed, wake its worker and give it the CPU, for at most
    /// `policy::THROTTLE_MAX_WAIT`. Threads that retire faster than one
    /// worker frees would otherwise grow the backlog without bound (two
    /// updating threads on two cores: 810 MiB in 2 s). Only ready pages
    /// count: freeing them waits for no read-side section, so this works
    /// inside one too. The thread runs no destructor and holds no lock
    /// here, and the wait is bounded, so a worker stuck on a lock the
    /// thread holds costs a delay, never a deadlock.
    pub(crate) fn throttle_producer(&self, gp: &GracePeriods, cpu: usize) {
        let shard = &self.shards[cpu];
        if shard.count.load(Ordering::Relaxed) <= policy::THROTTLE_PAGES * 255 {
            return;
        }
        let ready = || lock(&shard.state).ready_pages(gp.seq(), policy::THROTTLE_PAGES + 1);
        if !policy::throttles(ready()) {
            return;
        }
        if self.pages_left_to_producer(&lock(&shard.state), cpu) {
            // They are left to this thread, which frees plain pages itself
            // (the worker would leave them to it): its drain takes
            // `DRAIN_STEP_HURRY` objects per retire while the backlog is
            // this large, so it shrinks without a pause here (freeing a
            // throttle's worth at once kept the caller's read-side section
            // open for milliseconds).
            return;
        }
        self.yield_to_worker(cpu, || policy::throttle_done(ready()));
    }

    /// Wakes the worker of shard `cpu` and gives it the CPU until `done`,
    /// for at most `policy::THROTTLE_MAX_WAIT` (counted in
    /// `producer_throttles`).
    fn yield_to_worker(&self, cpu: usize, done: impl Fn() -> bool) {
        self.workers.wake(self.worker_group(cpu));
        if self.runner_stuck() {
            // Seen stuck already: woken, but not even one yield (on a
            // loaded CPU a yield costs a time slice, and a caller holding
            // the lock the worker waits for paid it at every call).
            return;
        }
        add(&self.counters.throttles, 1);
        let start = Instant::now();
        while start.elapsed() < policy::THROTTLE_MAX_WAIT {
            std::thread::yield_now();
            if done() || self.runner_stuck() {
                // Done, or the worker is stuck on one item (maybe on a
                // lock this thread holds): waiting longer cannot help.
                break;
            }
        }
    }

    /// Back-pressure on a thread that has just queued a callback on shard
    /// `cpu` (`Rcu::call` and its kin), outside callbacks and reclaim: while
    /// more than `policy::CALL_THROTTLE` callbacks of the shard wait ready
    /// to run, wake its worker and give it the CPU until half that many
    /// are left, for at most `policy::THROTTLE_MAX_WAIT`. Callbacks run on
    /// the workers only (the caller may hold a lock a callback takes), and
    /// threads that queue faster than a worker runs them grew the backlog
    /// without bound (two threads queueing closures that own 4 KiB each,
    /// on two cores: 212 MiB of resident memory within 6 s; eight threads:
    /// 1.9 GiB). As for pages, only ready callbacks count, so this works
    /// inside a read-side section too, and the wait is bounded, so a
    /// worker stuck on a lock the caller holds costs a delay, never a
    /// deadlock.
    #[cfg(not(loom))]
    pub(crate) fn throttle_caller(&self, gp: &GracePeriods, cpu: usize) {
        let shard = &self.shards[cpu];
        if shard.count.load(Ordering::Relaxed) <= policy::CALL_THROTTLE {
            return;
        }
        if super::in_callback() || crate::sync::NO_RECLAIM.with(Cell::get) {
            return;
        }
        let ready = || lock(&shard.state).list.ready_len(gp.seq());
        if ready() <= policy::CALL_THROTTLE {
            return;
        }
        self.yield_to_worker(cpu, || ready() <= policy::CALL_THROTTLE / 2);
    }

    /// Bytes on the shards: waiting for a grace period, ready to free, or
    /// taken by a runner and not freed yet (`Shard::running_bytes`); what
    /// threads still buffer in their pages is not counted (under pressure
    /// the grace-period thread takes those at once).
    pub(super) fn shard_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.bytes.load(Ordering::Relaxed) + s.running_bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// Whether the pressure throttle would make a thread that hands off a
    /// page now wait (a signal held, the shards over the mark).
    #[cfg(not(loom))]
    pub(crate) fn pressure_throttle_due(&self) -> bool {
        policy::pressure_throttles(&self.params, self.pressure.total(), self.shard_bytes())
    }

    /// The pressure throttle (see the module docs), for a thread that has
    /// just handed off a page, outside read-side sections of this domain,
    /// callbacks and reclaim: while a pressure signal is held and the
    /// shards hold more than `pressure_throttle_bytes`, it moves grace
    /// periods on (`try_advance`, which never waits), wakes the workers of
    /// shards with ready pages and naps, until they hold half that or
    /// `pressure_throttle_max_wait` has passed (10 ms; 100 ms when it
    /// started over twice the throttle's bytes, 1 s over four times); a
    /// wait of 100 ms or more that ran out is reported (`report_held_up`). `kick` wakes the
    /// grace-period thread (which expedites in fast mode).
    #[cfg(not(loom))]
    pub(crate) fn throttle_under_pressure(&self, gp: &GracePeriods, kick: &dyn Fn()) {
        let signals = || self.pressure.total();
        let bytes = self.shard_bytes();
        if !policy::pressure_throttles(&self.params, signals(), bytes) {
            return;
        }
        let max_wait = left_in_call(policy::pressure_throttle_max_wait(&self.params, bytes));
        if max_wait.is_zero() {
            return;
        }
        add(&self.counters.pressure_throttles, 1);
        let waited = self.wait_for_frees(
            gp,
            kick,
            max_wait,
            Some((policy::WORKER_STUCK_MS, "under memory pressure")),
            &|bytes| policy::pressure_throttle_done(&self.params, signals(), bytes),
        );
        add(
            &self.counters.pressure_throttle_us,
            usize::try_from(waited.as_micros()).unwrap_or(usize::MAX),
        );
        if waited >= max_wait && max_wait >= policy::PRESSURE_THROTTLE_MAX_WAIT_FAR_OVER {
            self.report_held_up(gp, self.shard_bytes(), waited, "under memory pressure");
        }
    }

    /// The bound under a memory limit (`headroom.rs`), for a thread that
    /// has just handed off a page (or whose section owed it), outside
    /// read-side sections of this domain, callbacks and reclaim: while the
    /// shards hold more than the limit's allowance, waits as the pressure
    /// throttle does until they hold half of it, for at most
    /// `policy::HEADROOM_MAX_WAIT`; a wait that runs out is reported.
    /// Returns whether it waited.
    #[cfg(not(loom))]
    pub(crate) fn wait_for_headroom(&self, gp: &GracePeriods, kick: &dyn Fn()) -> bool {
        let Some(allow) = self.over_headroom() else {
            return false;
        };
        let max_wait = left_in_call(policy::HEADROOM_MAX_WAIT);
        if max_wait.is_zero() {
            return false;
        }
        add(&self.counters.headroom_waits, 1);
        // Done as well once the bound is removed: the limit waited for is
        // gone (before, the wait ran on to its full second).
        // Patient with a runner that pauses, the more the nearer the
        // limit (see `headroom_stuck_ms`).
        let patience = policy::headroom_stuck_ms(self.memory_state());
        let why = self.headroom_why(allow);
        let waited = self.wait_for_frees(gp, kick, max_wait, Some((patience, why)), &|bytes| {
            !self.has_headroom() || policy::headroom_wait_done(allow, bytes)
        });
        add(
            &self.counters.headroom_wait_us,
            usize::try_from(waited.as_micros()).unwrap_or(usize::MAX),
        );
        if waited >= max_wait {
            self.report_held_up(gp, self.shard_bytes(), waited, why);
        }
        true
    }

    /// Entries handed to the shards (callbacks and deferred drops) and not
    /// yet run: waiting for a grace period, ready, or taken by a worker
    /// that has not finished its batch (`invoked` is counted at a batch's
    /// end). What threads still buffer in their pages is not counted.
    pub(crate) fn outstanding(&self) -> u64 {
        let c = &self.counters;
        // `invoked` first: an entry is counted queued before it runs.
        let invoked = c.invoked.load(Ordering::Relaxed);
        let queued = c.calls.load(Ordering::Relaxed) + c.deferred_drops.load(Ordering::Relaxed);
        queued.saturating_sub(invoked)
    }

    /// Whether a thread that has just queued a `call` booking no bytes
    /// should wait for the backlog (`wait_for_call_backlog`): more entries
    /// outstanding than `policy::call_backlog_mark` allows in the memory
    /// state (4,096 while short, 256 over a known limit's mark).
    #[cfg(not(loom))]
    pub(crate) fn call_backlog_due(&self) -> bool {
        self.call_backlog_due_state().is_some()
    }

    /// The memory state a `call_backlog_due` wait is due in (`None`: not
    /// due); the state is read only past `CALL_BACKLOG_OVER` entries.
    #[cfg(not(loom))]
    fn call_backlog_due_state(&self) -> Option<policy::MemoryState> {
        let outstanding = self.outstanding();
        if outstanding <= policy::CALL_BACKLOG_OVER {
            return None;
        }
        let state = self.memory_state();
        policy::call_backlog_mark(state)
            .is_some_and(|m| outstanding > m)
            .then_some(state)
    }

    /// The bound on callbacks that book no bytes, for a thread that has
    /// just queued one (or whose section owed the wait), outside read-side
    /// sections of this domain, callbacks and reclaim: while
    /// `call_backlog_due`, waits as the pressure throttle does (moving
    /// grace periods on, waking the workers) until the entries outstanding
    /// are half what they were, for at most `policy::call_backlog_max_wait`
    /// (within the current call's limit). Neither the pressure throttle
    /// nor the headroom bound sees such callbacks (they count bytes), and
    /// the producer throttle counts only what waits ready on the shard,
    /// not what a worker has taken: four threads queueing closures that
    /// own 4 KiB each in a 100 MiB cgroup were OOM-killed in every run,
    /// most of the backlog in the worker's hands. The callbacks still run
    /// on the workers only (the caller may hold a lock one takes), so the
    /// caller only waits, and the wait is bounded. Returns whether it
    /// waited.
    #[cfg(not(loom))]
    pub(crate) fn wait_for_call_backlog(&self, gp: &GracePeriods, kick: &dyn Fn()) -> bool {
        // The state the wait is due in also sets how long it may last.
        let Some(state) = self.call_backlog_due_state() else {
            return false;
        };
        let backlog = self.outstanding();
        let mut max_wait = policy::call_backlog_max_wait(backlog, state);
        if self.runner_stuck() && state != policy::MemoryState::OverMark {
            // A worker asleep in the kernel for 5 ms on one callback: near
            // a cgroup's limit, its frees and faults wait for reclaim, and
            // stopping at once (as the byte-counting waits do) let the
            // flood on (OOM-killed 2 runs of 3). It may also wait for a
            // lock this thread holds: the wait goes on, but for no more
            // than the short bound, so that costs a delay, not a deadlock;
            // over the limit's mark, the longer one (a loaded machine's
            // worker is often stuck there, and 10 ms let floods of 64 KiB
            // closures on).
            max_wait = max_wait.min(policy::PRESSURE_THROTTLE_MAX_WAIT);
        }
        let max_wait = left_in_call(max_wait);
        if max_wait.is_zero() {
            return false;
        }
        add(&self.counters.call_backlog_waits, 1);
        let target = backlog / 2;
        // Done as well once memory is no longer short (the bound removed,
        // the signal ended, the usage down), as the headroom bound's wait.
        let waited = self.wait_for_frees(gp, kick, max_wait, None, &|_| {
            self.outstanding() <= target || self.memory_state() == policy::MemoryState::Plenty
        });
        add(
            &self.counters.call_backlog_wait_us,
            usize::try_from(waited.as_micros()).unwrap_or(usize::MAX),
        );
        true
    }

    /// The wait of the pressure throttle and the headroom bound: moves
    /// grace periods on (`try_advance`, which never waits), wakes the
    /// workers of shards with ready pages and naps, until `done` holds of
    /// the shards' bytes or `max_wait` has passed, or (`stuck_after`: a
    /// patience in milliseconds, and why the thread waits) a runner has
    /// been stuck on one item that long (which is reported). `kick` wakes
    /// the grace-period thread. Returns how long it waited (counted against
    /// the current call's limit).
    #[cfg(not(loom))]
    fn wait_for_frees(
        &self,
        gp: &GracePeriods,
        kick: &dyn Fn(),
        max_wait: Duration,
        stuck_after: Option<(usize, &str)>,
        done: &dyn Fn(usize) -> bool,
    ) -> Duration {
        let target = gp.snapshot();
        let start = Instant::now();
        kick();
        loop {
            // Grace periods moved on and workers woken at every round, the
            // first included.
            gp.try_advance(target);
            for cpu in 0..self.shards.len() {
                if self.hand_ready_to_worker(gp, cpu) {
                    self.wake_worker(cpu);
                }
            }
            if let Some((patience, why)) = stuck_after.filter(|&(p, _)| self.runner_stuck_for(p)) {
                // A worker (or a thread running a barrier or reclaim) has
                // spent `patience` on one callback or destructor: if it
                // waits for a lock this thread holds, the wait would run
                // to its bound (up to 1 s per retire) and free nothing.
                // Looked at before each nap, the first too: a retire that
                // finds it stuck already does not nap at all.
                self.report_stuck(start.elapsed(), patience, why);
                break;
            }
            std::thread::sleep(policy::PRESSURE_THROTTLE_NAP);
            if done(self.shard_bytes()) || start.elapsed() >= max_wait {
                break;
            }
        }
        let waited = start.elapsed();
        spent_in_call(waited);
        waited
    }

    /// The grace period a thread that has just handed off a page waits for
    /// as held up (see `Config::held_up_bytes`), if any: no pressure signal
    /// held (fast mode expedites grace periods, and the pressure throttle
    /// bounds the garbage; waiting here as well cost writers 10-30 % of
    /// their updates under a flapping signal), one in progress too long,
    /// the shards over the mark. Their bytes are summed only for a grace
    /// period already old enough: a hand-off looks at every one.
    #[cfg(not(loom))]
    pub(crate) fn held_up(&self, gp: &GracePeriods) -> Option<u64> {
        if self.pressure.total() > 0 {
            return None;
        }
        let (seq, age) = gp.held_up()?;
        policy::held_up_waits(&self.params, Some(age), || self.shard_bytes()).then_some(seq)
    }

    /// For a waiting thread, which frees nothing while it naps: shard
    /// `cpu`'s ready pages left to the thread that hands it pages
    /// (`producer_window`) go to its worker now. Without a pressure signal
    /// (the headroom and call-backlog waits) the worker left them alone,
    /// and each wait lasted the window (5 ms) for garbage whose grace
    /// period had ended. Every shard, at every round: the waiting thread
    /// may have handed its pages to another CPU's shard than the one it
    /// waits on (migrated meanwhile), and a shard's lock held at one round
    /// is free at the next. Returns whether its worker has pages to free
    /// (or the lock was held: woken in doubt).
    #[cfg(not(loom))]
    fn hand_ready_to_worker(&self, gp: &GracePeriods, cpu: usize) -> bool {
        try_lock(&self.shards[cpu].state).map_or(true, |mut st| {
            st.last_handoff = None;
            self.pages_for_worker(&st, cpu, gp.seq())
        })
    }

    /// The held-up wait (see `Config::held_up_bytes`), for a thread that
    /// has just handed off a page (or whose section owed it), outside
    /// read-side sections of this domain, callbacks and reclaim: naps until
    /// the grace period in progress ends, moving it on (`try_end`, which
    /// never waits), for at most `policy::HELD_UP_MAX_WAIT`; one that runs
    /// out marks that grace period so that no thread waits on it again.
    /// `kick` wakes the grace-period thread.
    #[cfg(not(loom))]
    pub(crate) fn wait_held_up(&self, gp: &GracePeriods, kick: &dyn Fn()) {
        let Some(seq) = self.held_up(gp) else {
            return;
        };
        let max_wait = left_in_call(policy::HELD_UP_MAX_WAIT);
        if max_wait.is_zero() {
            return;
        }
        add(&self.counters.held_up_waits, 1);
        let start = Instant::now();
        kick();
        while !gp.try_end(seq) {
            if start.elapsed() >= max_wait {
                gp.gave_up_on(seq);
                break;
            }
            std::thread::sleep(policy::PRESSURE_THROTTLE_NAP);
        }
        let waited = start.elapsed();
        spent_in_call(waited);
        add(
            &self.counters.held_up_wait_us,
            usize::try_from(waited.as_micros()).unwrap_or(usize::MAX),
        );
    }

    /// Says, loudly and at most once a second, that a thread retiring
    /// under pressure (or near its memory limit: `why`) stopped waiting
    /// after `waited` because a runner has spent `patience_ms` or more on
    /// one item.
    #[cfg(not(loom))]
    fn report_stuck(&self, waited: std::time::Duration, patience_ms: usize, why: &str) {
        static REPORTS: crate::sys::LoudThrottle = crate::sys::LoudThrottle::new();
        REPORTS.warn_loud(&format!(
            "rcu-reclaim: {why}, a thread retiring garbage stopped waiting for \
             it after {} ms: a worker has spent {} ms or more on one callback or destructor \
             (a slow free: the allocator's lock, or the kernel reclaiming memory for the \
             cgroup, can take that long). If that callback or Drop takes a lock the retiring \
             thread holds, retire outside that lock (or with try_defer_drop, which never \
             waits): every retire under it waits for nothing, and the garbage is freed only \
             once the lock is released",
            waited.as_millis(),
            patience_ms
        ));
    }

    /// Says, loudly and at most once a second, that a thread retiring
    /// under pressure (or near its memory limit: `why`) waited its longest while `bytes` waited to be freed,
    /// and names the readers the grace period in progress waits for: one
    /// that stays in its section holds every free up (the stall warning
    /// comes only after `stall_timeout`, 21 s by default, and the cgroup's
    /// OOM killer may act first).
    #[cfg(not(loom))]
    fn report_held_up(
        &self,
        gp: &GracePeriods,
        bytes: usize,
        waited: std::time::Duration,
        why: &str,
    ) {
        static REPORTS: crate::sys::LoudThrottle = crate::sys::LoudThrottle::new();
        let holdouts = gp.holdouts();
        let late: Vec<String> = holdouts
            .iter()
            .map(|(owner, qsbr)| {
                let what = if *qsbr {
                    "online QSBR thread"
                } else {
                    "thread"
                };
                format!("{what} {:?} (tid {})", owner.name, owner.tid)
            })
            .collect();
        let forked = gp.fork_check("a retire");
        let who = if forked.forked() {
            // A process forked without `prepare_fork`: the domain's
            // threads, which end grace periods and free, are not here.
            format!(
                "this process ({}) was forked from process {} without Rcu::prepare_fork(), so \
                 the domain's grace-period thread and workers do not exist here and nothing \
                 frees its garbage but this process's own synchronize() or barrier(); call \
                 rcu.prepare_fork() before fork() and ForkGuard::child() in the child",
                std::process::id(),
                forked.home
            )
        } else if late.is_empty() {
            "the grace-period thread and workers could not keep up".to_string()
        } else {
            format!("the grace period waits for {}", late.join(", "))
        };
        // What ends a holdout's hold: a section's end, or an online QSBR
        // thread's report (it has no section to keep short).
        let advice = match (
            holdouts.iter().any(|(_, qsbr)| !*qsbr),
            holdouts.iter().any(|(_, qsbr)| *qsbr),
        ) {
            (false, true) => {
                "an online QSBR thread must report quiescent states regularly \
                 (QsbrThread::quiescent_state, rcu_quiescent_state() through the liburcu \
                 drop-in) and go offline before it blocks"
            }
            (true, true) => {
                "keep read-side sections short (a section that lasts holds back every value \
                 retired meanwhile), and have online QSBR threads report quiescent states \
                 regularly and go offline before they block"
            }
            _ => {
                "keep read-side sections short (a section that lasts holds back every value \
                 retired meanwhile)"
            }
        };
        REPORTS.warn_loud(&format!(
            "rcu-reclaim: {why}, a thread retiring garbage waited {} ms for it to be freed and \
             goes on with {} KiB still waiting: {who}; {advice}, or retire large values with \
             RcuCell::store_sync",
            waited.as_millis(),
            bytes.div_ceil(1024)
        ));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{Config, Rcu};

    /// The entries outstanding, which the bound on `call`s counts, come
    /// back to 0 once everything has run (a count that drifted up would
    /// make every `call` under pressure wait), and a flood of `call`s
    /// under a limit whose usage is over its mark, behind a reader that
    /// holds every grace period up, waits (it booked no bytes, so no other
    /// wait saw it).
    #[test]
    #[cfg_attr(
        miri,
        ignore = "timing: the reader leaves after 100 ms of the interpreter's clock, which \
                  12,000 calls outrun"
    )]
    fn calls_that_book_no_bytes_wait_for_their_backlog_under_a_limit() {
        let rcu = Rcu::new(Config::new()).unwrap();
        // Usage over the mark: the bound applies from the first read.
        rcu.bound_garbage(64 << 20, || Some(80 << 20));
        let cbs = &rcu.inner().callbacks;
        assert_eq!(cbs.memory_state(), crate::policy::MemoryState::OverMark);
        let (go_tx, reader) = super::super::reader_held_until_go(&rcu, 100);
        go_tx.send(()).unwrap();
        let n = 3 * crate::policy::CALL_BACKLOG as usize;
        for i in 0..n {
            let v = vec![i as u8; 16];
            rcu.call(move || drop(v));
        }
        let s = rcu.stats();
        assert!(s.call_backlog_waits >= 1, "{s:?}");
        reader.join().unwrap();
        rcu.barrier();
        assert_eq!(cbs.outstanding(), 0, "{:?}", rcu.stats());
        // Without a limit or a signal, nothing waits.
        rcu.unbound_garbage();
        let before = rcu.stats().call_backlog_waits;
        for i in 0..n {
            let v = vec![i as u8; 16];
            rcu.call(move || drop(v));
        }
        assert_eq!(rcu.stats().call_backlog_waits, before);
        rcu.barrier();
        assert_eq!(cbs.outstanding(), 0);
    }

    /// Between `CALL_BACKLOG_OVER` and `CALL_BACKLOG` entries outstanding
    /// behind a reader that holds grace periods up: a `call` waits while
    /// the usage is over the limit's mark, not while it is only short
    /// (over three quarters of it). Closures owning 16 KiB each were
    /// OOM-killed in a 100 MiB cgroup with the one mark of 4,096.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "timing: the reader leaves after 100 ms of the interpreter's clock, which \
                  2,048 calls outrun"
    )]
    fn over_the_limits_mark_calls_wait_behind_a_smaller_backlog() {
        let waits_at = |usage: usize| {
            let rcu = Rcu::new(Config::new()).unwrap();
            rcu.bound_garbage(64 << 20, move || Some(usage));
            let (go_tx, reader) = super::super::reader_held_until_go(&rcu, 100);
            go_tx.send(()).unwrap();
            for i in 0..2048usize {
                let v = vec![i as u8; 16];
                rcu.call(move || drop(v));
            }
            let waits = rcu.stats().call_backlog_waits;
            reader.join().unwrap();
            rcu.barrier();
            assert_eq!(rcu.inner().callbacks.outstanding(), 0);
            waits
        };
        assert_eq!(waits_at(50 << 20), 0, "short, under 4,096 outstanding");
        assert!(
            waits_at(80 << 20) >= 1,
            "over the mark, over 256 outstanding"
        );
    }

    /// Values a runner has taken off a shard still count in the bytes the
    /// garbage bounds compare (`shard_bytes`) until they are freed: a
    /// worker preempted in the middle of a 1.6 MiB batch left writers
    /// under a cap of 1.4 MiB free to retire, and the garbage reached
    /// 2.8 MiB. The first value's `Drop` looks while the rest of its page
    /// (a 1 MiB buffer) is still to be freed.
    #[test]
    fn a_runners_batch_counts_until_it_is_freed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Look(Rcu, Arc<AtomicUsize>);
        impl Drop for Look {
            fn drop(&mut self) {
                let seen = self.0.inner().callbacks.shard_bytes();
                self.1.store(seen, Ordering::SeqCst);
            }
        }
        let rcu = Rcu::new(Config::new()).unwrap();
        let seen = Arc::new(AtomicUsize::new(usize::MAX));
        // A reader holds the grace period until both are on one page.
        let guard = rcu.read_lock();
        rcu.defer_drop_sized(Box::new(Look(rcu.clone(), seen.clone())), 64);
        rcu.defer_drop(Box::new(vec![7u8; 1 << 20]));
        drop(guard);
        rcu.barrier();
        let seen = seen.load(Ordering::SeqCst);
        assert!(
            seen >= 1 << 20,
            "the first value's drop saw {seen} bytes, not the 1 MiB buffer still to free"
        );
        assert_eq!(rcu.inner().callbacks.shard_bytes(), 0);
    }

    /// A wait that runs out behind a reader that stays in its section says
    /// so on standard error (no `tracing` subscriber here) and names the
    /// reader: a writer filled a 100 MiB cgroup behind a section held for
    /// 3 s without a word (the stall warning comes after 21 s).
    #[test]
    fn a_wait_that_runs_out_names_the_reader_holding_it_up() {
        let rcu = Rcu::new(Config::new().pressure_throttle_bytes(256 << 10)).unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let r = rcu.clone();
        let reader = std::thread::Builder::new()
            .name("slow-reader".into())
            .spawn(move || {
                let _section = r.read_lock();
                held_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
            .unwrap();
        held_rx.recv().unwrap();
        let pressure = rcu.pressure_start_all();
        let stderr = crate::sys::tests::stderr_of(|| {
            // 512 KiB: 10 ms; 1 MiB, over twice the mark: 100 ms, which
            // runs out (no grace period can end) and is reported.
            for i in 0..2u8 {
                rcu.defer_drop(Box::new(vec![i; 512 << 10]));
            }
        });
        assert!(
            stderr.contains("under memory pressure") && stderr.contains("\"slow-reader\""),
            "{stderr}"
        );
        assert_eq!(rcu.stats().pressure_throttles, 2);
        drop(release_tx);
        reader.join().unwrap();
        pressure.end();
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    }
}
