//! The domain's grace-period thread: runs the grace periods that
//! [`Rcu::start_poll`](crate::Rcu::start_poll) and queued callbacks need, so
//! they make progress without anyone calling `synchronize`. It applies the
//! lazy rules (see `callbacks`), sleeping until the oldest lazily queued
//! entry is due. Started on first use; stopped when the domain is dropped.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use crate::callbacks::EngineHost;
use crate::clock::epoch_ms;
use crate::gp::WaitMode;
use crate::policy;
use crate::sync::lock_std as lock;
use crate::wake_promise::WakePromise;

#[derive(Default)]
struct State {
    shutdown: bool,
    /// Set by `pause` (before `fork()`): the thread parks at the top of its
    /// loop, holding nothing, until `resume`.
    pause: bool,
    /// The thread is parked for `pause`.
    parked: bool,
    handle: Option<JoinHandle<()>>,
    thread: Option<ThreadId>,
}

/// `Shared::look_by` when no look is asked for.
const NO_LOOK: u64 = u64::MAX;

struct Shared {
    state: Mutex<State>,
    /// Wakes the thread parked for `pause` (and `shutdown` there).
    wake: Condvar,
    /// The doorbell the thread sleeps on between looks (a futex word):
    /// every request bumps it after setting what it asks for, so a request
    /// never waits for a lock the thread holds. A retiring thread kicks
    /// from inside its read-side sections: blocked on the thread's state
    /// lock while the thread, holding it, waited for a CPU behind the other
    /// retiring thread, it held every grace period up for milliseconds
    /// (the update-heavy bench's peaks of garbage).
    bell: AtomicI32,
    /// Highest sequence value asked for by `start_poll`.
    requested: AtomicU64,
    /// Set when callbacks want attention before the lazy timer.
    kicked: AtomicBool,
    /// Look by this time (`epoch_ms`) at the latest ([`NO_LOOK`]: none): a
    /// fallback asked for by a retiring thread that drives its own grace
    /// periods (`look_by`).
    look_by: AtomicU64,
    /// The thread has been started (and not stopped or lost to `fork()`):
    /// a request only rings the bell.
    running: AtomicBool,
    /// Signalled when the thread parks for `pause`.
    parked: Condvar,
    /// When the thread will next look at the callback queues unasked: the
    /// end of its timed sleep, or, while it runs a grace period, the time
    /// that grace period began (it looks again right after).
    promise: WakePromise,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            state: Mutex::default(),
            wake: Condvar::new(),
            bell: AtomicI32::new(0),
            requested: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
            look_by: AtomicU64::new(NO_LOOK),
            running: AtomicBool::new(false),
            parked: Condvar::new(),
            promise: WakePromise::default(),
        }
    }
}

impl Shared {
    /// Wakes the thread from its sleep between looks, after the caller set
    /// what it asks for: the thread reads the bell before looking at those,
    /// and sleeps only while the bell still reads the same.
    fn ring(&self) {
        self.bell.fetch_add(1, Ordering::SeqCst);
        crate::sys::futex_wake_all(&self.bell);
    }
}

/// How much later than asked a look may come (`GpThread::look_by`,
/// `GpThread::must_kick_for`). The thread rounds its promise up to the next
/// millisecond, so without the slack every ask made in the millisecond it
/// went to sleep woke it again (a promise of `t + 6` against work due at
/// `t + 5`), and that wake-up made a new promise: a thread retiring
/// 64-byte values, refilling its drain every few microseconds, kept the
/// grace-period thread waking tens of thousands of times a second.
const LOOK_SLACK_MS: u64 = 1;

#[derive(Default)]
pub(crate) struct GpThread {
    shared: Arc<Shared>,
}

impl GpThread {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Asks for grace periods until the sequence reaches `target`.
    pub(crate) fn request<H: EngineHost>(&self, inner: &Arc<H>, target: u64) {
        self.shared.requested.fetch_max(target, Ordering::SeqCst);
        self.wake(inner, Some(target));
    }

    /// Asks the thread to look at the callback queues now.
    pub(crate) fn kick<H: EngineHost>(&self, inner: &Arc<H>) {
        self.shared.kicked.store(true, Ordering::SeqCst);
        self.wake(inner, None);
    }

    /// Makes sure the thread looks at the callback queues by `by_ms` (on
    /// the `epoch_ms` clock), without waking it now if it has promised to
    /// look by then anyway. A retiring thread that moves its own grace
    /// periods on asks for this fallback instead of a kick: if it stops
    /// retiring, the thread finishes what it left in progress.
    pub(crate) fn look_by<H: EngineHost>(&self, inner: &Arc<H>, by_ms: u64) {
        // A promise up to `LOOK_SLACK_MS` later will do (see there).
        if !self
            .shared
            .promise
            .must_kick_for(by_ms.saturating_add(LOOK_SLACK_MS))
        {
            return;
        }
        self.shared
            .look_by
            .fetch_min(by_ms.min(NO_LOOK - 1), Ordering::SeqCst);
        self.wake(inner, None);
    }

    /// [`look_by`](GpThread::look_by) the retiring threads' fallback: within
    /// `RETIRER_FALLBACK_MS`, in case the caller stops retiring (or
    /// collecting) and leaves a grace period in progress or a page behind.
    pub(crate) fn fallback_look<H: EngineHost>(&self, inner: &Arc<H>) {
        self.look_by(inner, epoch_ms() as u64 + policy::RETIRER_FALLBACK_MS);
    }

    /// Wakes the thread for what the caller just asked for: rings the bell
    /// if the thread runs (no lock: callers may be inside read-side
    /// sections, which a grace period waits for), else starts it.
    fn wake<H: EngineHost>(&self, inner: &Arc<H>, target: Option<u64>) {
        if self.shared.running.load(Ordering::SeqCst) {
            self.shared.ring();
        } else {
            self.wake_locked(lock(&self.shared.state), inner, target);
        }
    }

    fn wake_locked<H: EngineHost>(
        &self,
        mut st: std::sync::MutexGuard<'_, State>,
        inner: &Arc<H>,
        target: Option<u64>,
    ) {
        if st.shutdown || st.pause {
            // Paused for fork: `resume` wakes (or, in the child, respawns)
            // the thread, which then sees the request.
            return;
        }
        if st.handle.is_none() {
            let shared = self.shared.clone();
            let weak: Weak<dyn EngineHost> = Arc::downgrade(inner) as Weak<H>;
            // Under the state lock (a std lock, unmarked): the spawn's
            // allocations must not enter direct reclaim, which may kick
            // this very thread and take the lock again.
            let spawned = crate::sync::with_flag(&crate::sync::NO_RECLAIM, || {
                crate::sys::spawn_quiet(
                    thread::Builder::new().name(format!("rcu-gp-{}", inner.id())),
                    move || run(&shared, &weak),
                )
            });
            match spawned {
                Ok(h) => {
                    st.thread = Some(h.thread().id());
                    st.handle = Some(h);
                    self.shared.running.store(true, Ordering::SeqCst);
                }
                Err(e) => {
                    // No thread: run the grace period here, so the cookie
                    // still completes (callbacks wait for barrier or a later
                    // try); a later request tries to spawn again.
                    drop(st);
                    crate::sys::warn_loud(&format!(
                        "rcu-reclaim: cannot start the grace-period thread: {e}; running the \
                         grace period on the caller"
                    ));
                    // Never inside one of the domain's sections: the grace
                    // period would wait for the caller (`start_poll` and
                    // `call` never block).
                    if let Some(t) = target.filter(|_| !crate::reader::in_section(inner.id())) {
                        inner.gp().wait_for_seq_normal(t);
                    }
                    return;
                }
            }
        }
        self.shared.ring();
    }

    /// Whether a thread that has just buffered work due at `due_ms` (on the
    /// `epoch_ms` clock) must [`kick`](GpThread::kick): not when the
    /// sleeping thread has promised to look by then anyway. A fresh bulk
    /// page used to kick every time, a futex wake and a context switch per
    /// page. Call after publishing the work (`wake_promise.rs` has the
    /// pairing and its loom model).
    /// A promise up to `LOOK_SLACK_MS` later than `due_ms` will do, as for
    /// [`look_by`](GpThread::look_by).
    pub(crate) fn must_kick_for(&self, due_ms: usize) -> bool {
        self.shared
            .promise
            .must_kick_for((due_ms as u64).saturating_add(LOOK_SLACK_MS))
    }

    /// Parks the thread at a point where it holds no lock (before
    /// `fork()`); returns once it is parked or if it is not running.
    pub(crate) fn pause(&self) {
        let mut st = lock(&self.shared.state);
        st.pause = true;
        self.shared.ring();
        while st.handle.is_some() && !st.parked && !st.shutdown {
            st = match self.shared.parked.wait(st) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }

    /// Lets a paused thread run again (in the parent after `fork()`).
    pub(crate) fn resume(&self) {
        lock(&self.shared.state).pause = false;
        self.shared.wake.notify_all();
        self.shared.ring();
    }

    /// Holds the thread's state across `fork()` (after `pause`): a thread
    /// that asks for a grace period or kicks the thread takes its lock for
    /// a moment, and one caught holding it at the fork would leave it held
    /// for ever in the child, whose `reset_in_child` then never returned.
    /// Taken after the domain's other locks (a callback, run under its
    /// shard's lock, may ask for a grace period).
    pub(crate) fn hold_for_fork(&self) -> GpThreadForkHeld<'_> {
        GpThreadForkHeld(
            crate::sync::lock_for_fork(&self.shared.state),
            &self.shared.running,
        )
    }
}

/// The grace-period thread's state, held across `fork()`
/// ([`GpThread::hold_for_fork`]).
pub(crate) struct GpThreadForkHeld<'a>(crate::sync::ForkHeld<'a, State>, &'a AtomicBool);

impl GpThreadForkHeld<'_> {
    /// In the child after `fork()`: the thread does not exist there. Forget
    /// it (its handle is leaked: joining or detaching a thread of the parent
    /// is undefined), so the next request starts a new one.
    pub(crate) fn reset_in_child(&mut self) {
        let st = &mut *self.0;
        if let Some(h) = st.handle.take() {
            std::mem::forget(h);
        }
        st.thread = None;
        st.pause = false;
        st.parked = false;
        // The next request starts a thread (and finds what was asked for
        // before the fork in the atomics, which it reads first).
        self.1.store(false, Ordering::SeqCst);
    }
}

impl GpThread {
    /// Stops the thread; joins it unless called from it.
    pub(crate) fn shutdown(&self) {
        let handle = {
            let mut st = lock(&self.shared.state);
            st.shutdown = true;
            self.shared.running.store(false, Ordering::SeqCst);
            self.shared.wake.notify_all();
            self.shared.ring();
            if st.thread == Some(thread::current().id()) {
                None // the thread dropped the last handle itself; it returns next
            } else {
                st.handle.take()
            }
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn run(shared: &Shared, domain: &Weak<dyn EngineHost>) {
    // The grace-period thread never enters direct reclaim (the kernel's
    // kthreads run with PF_MEMALLOC): reclaim may wait for a grace period.
    crate::sync::NO_RECLAIM.with(|c| c.set(true));
    // Grace periods retiring threads had completed at the last look.
    let mut retirer_gps: Option<u64> = None;
    // When this thread last started waiting for a normal grace period.
    let mut last_normal: Option<std::time::Instant> = None;
    loop {
        let requested = {
            let mut st = lock(&shared.state);
            while st.pause && !st.shutdown {
                st.parked = true;
                shared.parked.notify_all();
                st = match shared.wake.wait(st) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
            }
            st.parked = false;
            if st.shutdown {
                return;
            }
            shared.kicked.store(false, Ordering::SeqCst);
            // Whether the fallback look is due (else it bounds the sleep).
            let by = shared.look_by.load(Ordering::SeqCst);
            if by != NO_LOOK && by <= epoch_ms() as u64 {
                // A later (smaller or equal) ask made meanwhile stays.
                let _ = shared.look_by.compare_exchange(
                    by,
                    NO_LOOK,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            shared.requested.load(Ordering::SeqCst)
        };
        let Some(inner) = domain.upgrade() else {
            return;
        };
        shared.promise.clear_before_look();
        let (gp, cbs) = (inner.gp(), inner.callbacks());
        let plan = cbs.plan(gp);
        let poll_target = (!gp.done(requested)).then_some(requested);
        let mut driven = None;
        if let Some(target) = plan.target.max(poll_target) {
            // Retiring threads that completed grace periods since the last
            // look are driving them (`try_advance` at each hand-off): a
            // blocking wait here would only hold `gp_lock` against them.
            // Look again later; once they stop, the count stands still and
            // the next look runs the grace period, so nothing is stranded.
            // Not under pressure or overload, which want speed.
            let by_retirers = gp.counters.polled_gps.load(Ordering::Relaxed);
            let driving = plan.mode == WaitMode::Normal
                && !cbs.is_overloaded()
                && retirer_gps.is_some_and(|n| n != by_retirers);
            retirer_gps = Some(by_retirers);
            if !driving {
                // Promise to look again right after this grace period.
                shared.promise.promise(epoch_ms() as u64);
                if plan.mode == WaitMode::Normal {
                    // Spaced (`GP_THREAD_MIN_INTERVAL`): a short sleep, with
                    // the promise standing, so threads queueing meanwhile
                    // do not kick; what they queue waits for the next look,
                    // right after this grace period. `inner` is held: a
                    // drop of the domain meanwhile waits this long.
                    if let Some(gap) = policy::gp_thread_gap(last_normal.map(|t| t.elapsed())) {
                        thread::sleep(gap);
                    }
                    last_normal = Some(std::time::Instant::now());
                }
                gp.wait_for_seq(target, plan.mode);
                retirer_gps = Some(gp.counters.polled_gps.load(Ordering::Relaxed));
                cbs.after_gp(gp);
                continue;
            }
            driven = Some(Duration::from_millis(policy::RETIRER_FALLBACK_MS));
        }
        // Entries whose grace period already elapsed (a page sealed with a
        // cookie another grace period completed) need only a worker.
        cbs.after_gp(gp);
        // Dropped outside the lock: it may be the last handle, whose drop
        // calls `shutdown`.
        drop(inner);
        // Read before what the bell announces: a request made after this
        // changes it, and the sleep below then returns at once.
        let bell = shared.bell.load(Ordering::SeqCst);
        let st = lock(&shared.state);
        if st.shutdown
            || st.pause
            || shared.kicked.load(Ordering::SeqCst)
            || shared.requested.load(Ordering::SeqCst) != requested
        {
            continue;
        }
        drop(st);
        let by = shared.look_by.load(Ordering::SeqCst);
        let fallback = (by != NO_LOOK)
            .then(|| Duration::from_millis(by.saturating_sub(epoch_ms() as u64).max(1)));
        let deadline = [plan.next_deadline, fallback, driven]
            .into_iter()
            .flatten()
            .min();
        match deadline {
            Some(d) => {
                // Rounded up: the promise is never earlier than the look.
                // Saturating: a `lazy_delay` of `Duration::MAX` is valid.
                let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                let by = (epoch_ms() as u64).saturating_add(ms).saturating_add(1);
                shared.promise.promise(by);
                crate::sys::futex_wait(&shared.bell, bell, d);
            }
            // Asleep until rung: an hour's timeout only bounds one wait.
            None => crate::sys::futex_wait(&shared.bell, bell, Duration::from_secs(3600)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::clock::epoch_ms;
    use crate::sync::lock_std as lock;
    use crate::{Config, Rcu};

    /// Requests to a running grace-period thread ring its doorbell and
    /// never wait for its state lock: a retiring thread kicks from inside
    /// its read-side sections, and waiting there for the thread (holding
    /// the lock, but off its CPU) held every grace period up. Here the
    /// test holds the lock; before, the kick waited for it.
    #[test]
    fn a_request_never_waits_for_the_threads_state_lock() {
        let rcu = Rcu::new(Config::new()).unwrap();
        rcu.call(|| {});
        rcu.barrier();
        let inner = rcu.inner().clone();
        assert!(inner.kthread.shared.running.load(Ordering::SeqCst));
        let shared = inner.kthread.shared.clone();
        let held = lock(&shared.state);
        let (tx, rx) = mpsc::channel();
        let asker = std::thread::spawn(move || {
            inner.kthread.kick(&inner);
            inner.kthread.look_by(&inner, epoch_ms() as u64 + 1);
            inner.kthread.request(&inner, inner.gp.snapshot());
            tx.send(()).unwrap();
        });
        let returned = rx.recv_timeout(Duration::from_secs(5));
        drop(held);
        asker.join().unwrap();
        assert!(
            returned.is_ok(),
            "a request waited for the thread's state lock"
        );
        // And what was asked for is done once the lock is free.
        let cookie = rcu.start_poll();
        rcu.cond_synchronize(cookie);
        assert!(rcu.poll(&cookie));
    }
}
