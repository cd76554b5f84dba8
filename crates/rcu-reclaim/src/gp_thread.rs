//! The domain's grace-period thread: runs the grace periods that
//! [`Rcu::start_poll`](crate::Rcu::start_poll) and queued callbacks need, so
//! they make progress without anyone calling `synchronize`. It applies the
//! lazy rules (see `callbacks`), sleeping until the oldest lazily queued
//! entry is due. Started on first use; stopped when the domain is dropped.

use std::sync::atomic::Ordering;
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
    /// Highest sequence value asked for by `start_poll`.
    requested: u64,
    /// Set when callbacks want attention before the lazy timer.
    kicked: bool,
    /// Look by this time (`epoch_ms`) at the latest: a fallback asked for by
    /// a retiring thread that drives its own grace periods (`look_by`).
    look_by: Option<u64>,
    shutdown: bool,
    /// Set by `pause` (before `fork()`): the thread parks at the top of its
    /// loop, holding nothing, until `resume`.
    pause: bool,
    /// The thread is parked for `pause`.
    parked: bool,
    handle: Option<JoinHandle<()>>,
    thread: Option<ThreadId>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when the thread parks for `pause`.
    parked: Condvar,
    /// When the thread will next look at the callback queues unasked: the
    /// end of its timed sleep, or, while it runs a grace period, the time
    /// that grace period began (it looks again right after).
    promise: WakePromise,
}

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
        let mut st = lock(&self.shared.state);
        st.requested = st.requested.max(target);
        self.wake_locked(st, inner, Some(target));
    }

    /// Asks the thread to look at the callback queues now.
    pub(crate) fn kick<H: EngineHost>(&self, inner: &Arc<H>) {
        let mut st = lock(&self.shared.state);
        st.kicked = true;
        self.wake_locked(st, inner, None);
    }

    /// Makes sure the thread looks at the callback queues by `by_ms` (on
    /// the `epoch_ms` clock), without waking it now if it has promised to
    /// look by then anyway. A retiring thread that moves its own grace
    /// periods on asks for this fallback instead of a kick: if it stops
    /// retiring, the thread finishes what it left in progress.
    pub(crate) fn look_by<H: EngineHost>(&self, inner: &Arc<H>, by_ms: u64) {
        if !self.shared.promise.must_kick_for(by_ms) {
            return;
        }
        let mut st = lock(&self.shared.state);
        st.look_by = Some(st.look_by.map_or(by_ms, |t| t.min(by_ms)));
        self.wake_locked(st, inner, None);
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
                thread::Builder::new()
                    .name(format!("rcu-gp-{}", inner.id()))
                    .spawn(move || run(&shared, &weak))
            });
            match spawned {
                Ok(h) => {
                    st.thread = Some(h.thread().id());
                    st.handle = Some(h);
                }
                Err(e) => {
                    // No thread: run the grace period here, so the cookie
                    // still completes (callbacks wait for barrier or a later
                    // try); a later request tries to spawn again.
                    drop(st);
                    tracing::warn!(error = %e, "rcu-reclaim: cannot start the grace-period thread; running the grace period on the caller");
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
        self.shared.wake.notify_one();
    }

    /// Whether a thread that has just buffered work due at `due_ms` (on the
    /// `epoch_ms` clock) must [`kick`](GpThread::kick): not when the
    /// sleeping thread has promised to look by then anyway. A fresh bulk
    /// page used to kick every time, a futex wake and a context switch per
    /// page. Call after publishing the work (`wake_promise.rs` has the
    /// pairing and its loom model).
    pub(crate) fn must_kick_for(&self, due_ms: usize) -> bool {
        self.shared.promise.must_kick_for(due_ms as u64)
    }

    /// Parks the thread at a point where it holds no lock (before
    /// `fork()`); returns once it is parked or if it is not running.
    pub(crate) fn pause(&self) {
        let mut st = lock(&self.shared.state);
        st.pause = true;
        self.shared.wake.notify_all();
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
    }

    /// Holds the thread's state across `fork()` (after `pause`): a thread
    /// that asks for a grace period or kicks the thread takes its lock for
    /// a moment, and one caught holding it at the fork would leave it held
    /// for ever in the child, whose `reset_in_child` then never returned.
    /// Taken after the domain's other locks (a callback, run under its
    /// shard's lock, may ask for a grace period).
    pub(crate) fn hold_for_fork(&self) -> GpThreadForkHeld<'_> {
        GpThreadForkHeld(crate::sync::lock_for_fork(&self.shared.state))
    }
}

/// The grace-period thread's state, held across `fork()`
/// ([`GpThread::hold_for_fork`]).
pub(crate) struct GpThreadForkHeld<'a>(crate::sync::ForkHeld<'a, State>);

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
    }
}

impl GpThread {
    /// Stops the thread; joins it unless called from it.
    pub(crate) fn shutdown(&self) {
        let handle = {
            let mut st = lock(&self.shared.state);
            st.shutdown = true;
            self.shared.wake.notify_one();
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
            st.kicked = false;
            // Whether the fallback look is due (else it bounds the sleep).
            if st.look_by.is_some_and(|t| t <= epoch_ms() as u64) {
                st.look_by = None;
            }
            st.requested
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
        let st = lock(&shared.state);
        if st.shutdown || st.pause || st.kicked || st.requested != requested {
            continue;
        }
        let fallback = st
            .look_by
            .map(|t| Duration::from_millis(t.saturating_sub(epoch_ms() as u64).max(1)));
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
                drop(shared.wake.wait_timeout(st, d));
            }
            None => drop(shared.wake.wait(st)),
        }
    }
}
