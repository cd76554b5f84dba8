//! The `call_rcu_data`s: each a queue of heads (linked through the heads
//! themselves) and the thread that waits for their grace period and invokes
//! them a batch at a time (paused across fork, stopped on free), and their
//! registry: every live one, the default, the per-CPU and per-thread
//! choices, and liburcu's `struct rcu_head`.

use std::os::raw::c_int;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::MemoryState;
use rcu_reclaim::Rcu;

use crate::Flavor;

mod chain;
mod handoff;
mod head_list;
mod registry;

pub(crate) use chain::*;
pub(crate) use handoff::*;
use head_list::HeadList;
pub(crate) use registry::*;

/// liburcu's `struct rcu_head`: a `cds_wfcq_node` (one pointer) then `func`.
#[repr(C)]
pub struct RcuHead {
    pub(crate) next: *mut RcuHead,
    pub(crate) func: Option<RcuFunc>,
}

/// A callback: `void (*func)(struct rcu_head *head)`.
pub type RcuFunc = unsafe extern "C" fn(*mut RcuHead);

const _: () = assert!(std::mem::size_of::<RcuHead>() == 16);

/// A thread's call_rcu state, in one thread-local (in a shared library
/// each costs a `__tls_get_addr`, and `call_rcu` needs both).
pub(crate) struct Caller {
    /// `set_thread_call_rcu_data`'s per-thread choice (no reference held).
    pub(crate) crdp: std::cell::Cell<*const CallRcuData>,
    /// Whether the thread is inside `call_rcu` or `rcu_barrier`, which may
    /// hold locks (creating the default crdp, push-back, waking a crdp
    /// thread): a `call_rcu` from a signal handler that interrupted one of
    /// them must take none.
    pub(crate) busy: std::cell::Cell<bool>,
}

thread_local! {
    /// This thread's [`Caller`] (no destructor: it lasts as long as the
    /// thread).
    pub(crate) static CALLER: Caller = const {
        Caller {
            crdp: std::cell::Cell::new(ptr::null()),
            busy: std::cell::Cell::new(false),
        }
    };
    /// On a crdp's own thread: that crdp.
    pub(crate) static WORKER_OF: std::cell::Cell<*const CallRcuData> = const { std::cell::Cell::new(ptr::null()) };
    /// On a thread that runs a crdp's batch for a reclaimer (`drain_here`,
    /// holding its `batch` lock): that crdp, while the batch runs.
    pub(crate) static DRAINING: std::cell::Cell<*const CallRcuData> = const { std::cell::Cell::new(ptr::null()) };
}

/// The crdp whose batch the calling thread invokes now: its own thread's,
/// or one it drains for a reclaimer (`drain_here`); null if none. A
/// callback's `rcu_barrier` cannot wait for it: its `done` counts the
/// batch only once the callback has returned.
pub(crate) fn invoking_here() -> *const CallRcuData {
    let own = WORKER_OF.with(|t| t.get());
    if own.is_null() {
        DRAINING.with(|d| d.get())
    } else {
        own
    }
}

#[derive(Default)]
struct State {
    /// Heads invoked (by the thread or a reclaimer): `rcu_barrier` waits for
    /// it to catch up with `queued`.
    done: u64,
    stop: bool,
    /// With `stop`: the thread stops without taking what is queued into a
    /// last batch (the freeing caller is inside a read-side section, which
    /// that batch's grace period would wait for while the caller waits for
    /// the thread).
    stop_now: bool,
    stopped: bool,
    /// Freed (or lost in a fork): what it still held went to the default,
    /// and is counted in `done` here.
    freed: bool,
    /// Once freed: the crdp that took what it still held, and that crdp's
    /// `queued` once it held it. `rcu_barrier` waits for that crdp to get
    /// there too: the heads it counted here may have been handed over
    /// rather than invoked.
    handed: Option<(Arc<CallRcuData>, u64)>,
    pause: bool,
    paused: bool,
    /// The thread is inside a callback that waits for the other crdps
    /// (`rcu_barrier` from a callback): it invokes nothing until they
    /// drain. Another crdp's thread doing the same skips this one rather
    /// than wait for it: each would wait for the other for ever.
    waiting_in_callback: bool,
    /// A batch ran into a cycle (a head queued twice, `cut_cycle`): heads
    /// counted as queued may never run, so `done` may never reach a
    /// barrier's count; barriers stop waiting once the queue is empty.
    lost_heads: bool,
    /// The thread is inside a callback that waits for the `defer_rcu`
    /// flush lock, which `call_rcu_before_fork` holds while it waits for
    /// the thread to pause: it cannot pause until it gets the lock.
    waiting_for_flush: bool,
    handle: Option<JoinHandle<()>>,
}

/// How often a barrier looks whether a queue that lost heads is empty
/// (`State::lost_heads`).
const LOST_HEADS_LOOK: Duration = Duration::from_millis(5);

/// How long the thread, woken from idle, lets callbacks gather before it
/// waits for their grace period (liburcu polls every 10 ms). Under memory
/// pressure it does not wait, and its grace periods are expedited.
const GATHER: Duration = Duration::from_millis(5);

/// Push-back: over this many heads queued on one crdp and not yet taken
/// into a batch, `call_rcu` waits for the batch in hand to be invoked, or
/// [`PUSH_BACK_WAIT`] at most, so a flood cannot outrun the thread that
/// frees. The next batch fills while the one in hand waits for its grace
/// period, so a crdp holds about twice this at most (about 80 bytes a head
/// in a typical node: about 8 MB).
///
/// Chosen by measurement (BENCHMARKS.md, "The push-back mark"): at 10,000
/// (the engine's `qhimark`) callers that the thread keeps up with were
/// held back every grace period, and liburcu's own lock-free queue
/// benchmark (`call_rcu` per dequeue) dequeued 0.7–0.8× liburcu's rate
/// while its queue held twice liburcu's memory; at 100,000 a batch no
/// longer stays in the caches and a hash-table flood slowed. At 50,000
/// both run faster than liburcu in no more memory.
pub(crate) const PUSH_BACK_AT: u64 = 50_000;
/// The push-back mark while memory is short for the domain
/// ([`Rcu::memory_state`] `Short`: a pressure signal, or the usage of the
/// process's memory cgroup over three quarters of its mark, 85 % of the
/// limit; [`CallRcuData::spawn`] bounds the domain by that limit). A
/// callback's memory is the caller's, which the library cannot weigh: at
/// the ordinary marks four threads queueing heads of 4 KiB objects held
/// 200–400 MB and were OOM-killed in a 100 MiB cgroup, as with liburcu.
pub(crate) const PUSH_BACK_AT_SHORT: u64 = 4_096;
/// The push-back mark while the cgroup's usage is over its mark
/// ([`Rcu::memory_state`] `OverMark`): a flood of heads of 16 KiB objects
/// was killed with [`PUSH_BACK_AT_SHORT`] alone (64 MiB a batch).
pub(crate) const PUSH_BACK_AT_OVER: u64 = 256;
/// How often a push looks at the domain's memory state (see
/// `CallRcuData::memory_state`): 64 heads are a few microseconds of a
/// flood, against the millisecond between reads of the usage.
const MEMORY_LOOK_EVERY: u64 = 64;
/// The longest one `call_rcu` waits: a bound, not a dependency, so a caller
/// holding a lock that a callback takes is never deadlocked (and, while
/// memory is plenty, waits once: see `CallRcuData::push_back`).
pub(crate) const PUSH_BACK_WAIT: Duration = Duration::from_millis(1);
/// The longest one `call_rcu` waits while the cgroup's usage is over its
/// mark ([`Rcu::memory_state`] `OverMark`), unless the batch in hand is
/// stuck (see `CallRcuData::push_back`). With [`PUSH_BACK_WAIT`] there,
/// a caller whose batch's grace period took longer than a millisecond
/// (its thread short of CPU) queued more at every wait that ran out: four
/// online threads flooding heads of 16 KiB objects peaked at 91–97 MB of
/// a 100 MiB limit with busy loops beside them, and were killed once.
pub(crate) const PUSH_BACK_WAIT_OVER: Duration = Duration::from_millis(50);

/// What a crdp's thread calls to be a reader of its flavor, as liburcu's
/// `call_rcu` thread is: [`Flavor::register_callback_thread`] and the
/// online/offline pair around each batch's invocation.
#[derive(Clone, Copy)]
pub(crate) struct ThreadHooks {
    register: fn(),
    online: fn(),
    offline: fn(),
    /// Whether the thread is in a read-side section it could not leave
    /// for a wait ([`Flavor::in_read_section`]): after a batch, offline,
    /// one a callback left open.
    in_section: fn() -> bool,
}

impl ThreadHooks {
    /// The hooks of the flavor `F`.
    pub(crate) fn of<F: Flavor>() -> ThreadHooks {
        ThreadHooks {
            register: F::register_callback_thread,
            online: F::callback_thread_online,
            offline: F::callback_thread_offline,
            in_section: F::in_read_section,
        }
    }

    /// No hooks: the thread takes a slot of its domain only.
    #[cfg(test)]
    pub(crate) const NONE: ThreadHooks = ThreadHooks {
        register: || {},
        online: || {},
        offline: || {},
        in_section: || false,
    };
}

/// liburcu's `struct call_rcu_data`: a queue of heads and the thread that
/// waits for their grace period and invokes them, a whole batch at a time.
/// (liburcu's `URCU_CALL_RCU_RT` flag, a worker that polls instead of
/// sleeping, is accepted and behaves like the default.)
pub struct CallRcuData {
    /// The domain whose grace periods the thread waits for.
    rcu: &'static Rcu,
    /// Heads queued and not yet taken by a batch: a stack linked through
    /// `RcuHead::next` (`call_rcu` pushes, the thread takes it whole).
    incoming: AtomicPtr<RcuHead>,
    /// Heads ever queued here (`rcu_barrier` and the backlog).
    queued: AtomicU64,
    /// Heads taken out of `incoming` (into a batch, or moved to another
    /// crdp), for `call_rcu`'s push-back check: `queued - taken` is what
    /// waits to be taken. Counted when a batch is taken, before its grace
    /// period, so callers fill the next batch meanwhile.
    taken: AtomicU64,
    /// Bytes declared by sized calls not yet invoked.
    bytes: AtomicUsize,
    /// Of `bytes`, those of the heads in `incoming`: a sized push and the
    /// taking of a batch hold this lock, so a batch knows its bytes.
    incoming_bytes: Mutex<usize>,
    /// The thread waits on `wake` for heads; `call_rcu` signals it only then.
    sleeping: AtomicBool,
    /// The domain's `MemoryState` at the last look (`over_mark`), as a
    /// `u8`.
    memory: AtomicU8,
    /// Freed by `call_rcu_data_free` (kept in [`DEAD`]): never chosen again.
    pub(crate) dead: AtomicBool,
    /// Threads that have it installed (`set_thread_call_rcu_data`, and its
    /// own thread): while any does, a freed one stays allocated.
    pub(crate) installs: AtomicUsize,
    /// Claimed by the `call_rcu_data_free` that frees it (under `ALL`).
    pub(crate) freeing: AtomicBool,
    /// Callbacks begun by invocations of batches, ever (each counted as it
    /// begins); with `invoking`, whether a batch's invocation moves.
    invoked: AtomicU64,
    /// A batch is being invoked.
    invoking: AtomicBool,
    /// A batch waits for its grace period (`run_batch_locked`): a thread
    /// inside a read-side section that waits for it to pause waits for
    /// ever (see [`pause`](Self::pause)).
    awaiting_gp: AtomicBool,
    /// `invoked + 1` when a push-back wait ran out while the invocation
    /// in hand did not begin one callback (0: none): callers do not wait
    /// again until it does (see [`push_back`](Self::push_back)).
    stalled_at: AtomicU64,
    cpu_affinity: c_int,
    /// What the thread calls to be a reader of the flavor.
    hooks: ThreadHooks,
    pub(crate) tid: OnceLock<libc::pthread_t>,
    /// The process whose thread this is: a child forked without the fork
    /// hooks has none (see `wait_done_or_stuck`).
    pid: u32,
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when `done` grows, or the thread pauses or stops.
    progress: Condvar,
    /// Held while a batch is taken, waits for its grace period and is
    /// invoked (by the thread, or by `drain_here` on a caller's), and by
    /// `hand_over`: batches complete in the order they were taken, so
    /// `done` reaches a count only once every head queued before that
    /// count has run, which `rcu_barrier` relies on. (A batch run on a
    /// caller's thread beside an older one in the thread's hands let a
    /// barrier count its newer heads for the older ones and return early.)
    batch: Mutex<HeadList>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `m` if no other holder has it (a poisoned one as it is), without
/// waiting.
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(held) => Some(held),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// How long [`CallRcuData::pause`] lets a call_rcu thread wait
/// for one grace period before it ends the process: the grace period
/// waits for the caller's own section, unless it had started before that
/// section did and only another reader holds it up.
const PAUSE_IN_SECTION_LIMIT: Duration = Duration::from_secs(2);

fn wait<'a>(cv: &Condvar, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    cv.wait(g).unwrap_or_else(|p| p.into_inner())
}

impl CallRcuData {
    /// A crdp and its thread. The first one a process spawns bounds the
    /// domain by the memory limit of the process's cgroup, if one sets a
    /// limit (`sources::bound_garbage_by_cgroup`), so that the push-back
    /// knows when memory is short ([`PUSH_BACK_AT_SHORT`]).
    pub(crate) fn spawn(
        rcu: &'static Rcu,
        cpu_affinity: c_int,
        hooks: ThreadHooks,
    ) -> Arc<CallRcuData> {
        bound_by_cgroup(rcu);
        let crdp = Arc::new(CallRcuData {
            rcu,
            incoming: AtomicPtr::new(ptr::null_mut()),
            queued: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            incoming_bytes: Mutex::new(0),
            sleeping: AtomicBool::new(false),
            memory: AtomicU8::new(MemoryState::Plenty as u8),
            dead: AtomicBool::new(false),
            installs: AtomicUsize::new(0),
            freeing: AtomicBool::new(false),
            invoked: AtomicU64::new(0),
            invoking: AtomicBool::new(false),
            awaiting_gp: AtomicBool::new(false),
            stalled_at: AtomicU64::new(0),
            cpu_affinity,
            hooks,
            tid: OnceLock::new(),
            pid: std::process::id(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            progress: Condvar::new(),
            batch: Mutex::new(HeadList::default()),
        });
        let me = crdp.clone();
        // Started with every signal blocked, which it keeps: a handler of
        // the program's on this thread could interrupt it holding its own
        // locks (its `call_rcu` would queue here and wait for `state`, held
        // by the thread it interrupted: seen with SIGALRM every 100 µs), or
        // run before the thread's runtime is set up (Rust aborts: "current
        // thread handle already set"). Process-directed signals go to the
        // program's threads instead.
        let handle = crate::with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("urcu-call-rcu".into())
                .spawn(move || me.run())
        })
        .unwrap_or_else(|e| crate::die(&format!("cannot start a call_rcu thread: {e}")));
        use std::os::unix::thread::JoinHandleExt;
        let _ = crdp.tid.set(handle.as_pthread_t());
        lock(&crdp.state).handle = Some(handle);
        crdp
    }

    /// The thread: take what was queued, wait for a grace period, invoke
    /// it; park for fork; stop on free. As liburcu's `call_rcu_thread`, it
    /// looks at the stop request only after a batch: asked to stop while
    /// idle, it first takes what is queued and runs it; asked while it runs
    /// a batch, it finishes that batch and stops, leaving what was queued
    /// behind it for `hand_over`.
    fn run(self: Arc<Self>) {
        if self.cpu_affinity >= 0 {
            set_affinity(self.cpu_affinity);
        }
        self.rcu.register_thread();
        // A reader of the flavor, as liburcu's thread (offline, for QSBR,
        // but while it invokes a batch): the callbacks' sections are
        // waited for however they are entered.
        (self.hooks.register)();
        // As liburcu: callbacks that queue callbacks use this crdp (until
        // the thread ends, whatever a callback installed instead).
        struct Uninstall;
        impl Drop for Uninstall {
            fn drop(&mut self) {
                install_for_thread(ptr::null());
            }
        }
        install_for_thread(Arc::as_ptr(&self));
        let _uninstall = Uninstall;
        WORKER_OF.with(|t| t.set(Arc::as_ptr(&self)));
        loop {
            {
                let mut st = lock(&self.state);
                if st.pause {
                    st.paused = true;
                    self.progress.notify_all();
                    while st.pause {
                        st = wait(&self.wake, st);
                    }
                    st.paused = false;
                    continue;
                }
                if st.stop && st.stop_now {
                    st.stopped = true;
                    self.progress.notify_all();
                    return;
                }
            }
            if !self.incoming.load(Ordering::Acquire).is_null() {
                self.run_batch();
            }
            let mut st = lock(&self.state);
            if st.stop {
                // What was queued since the batch was taken stays queued
                // (the freeing caller hands it to the default crdp).
                st.stopped = true;
                self.progress.notify_all();
                return;
            }
            // A pause asked for while the batch ran (its notification
            // went to no waiter) is answered at the top of the loop, not
            // slept through: `pause` (before fork) would wait for good.
            if st.pause {
                continue;
            }
            if self.incoming.load(Ordering::Acquire).is_null() {
                // Pairs with `push_chain` and `wake_if_sleeping`: the
                // store and load here and the push's exchange and load
                // of `sleeping` are all SeqCst, so in their single
                // order either the push's exchange comes before this
                // load (which sees its head), or this store comes
                // before the push's load (which sees `sleeping`).
                self.sleeping.store(true, Ordering::SeqCst);
                if self.incoming.load(Ordering::SeqCst).is_null() {
                    st = wait(&self.wake, st);
                }
                self.sleeping.store(false, Ordering::Relaxed);
                let idle_wake = !st.pause && !st.stop;
                drop(st);
                if idle_wake && !self.rcu.in_fast_mode() {
                    std::thread::sleep(GATHER);
                }
            }
        }
    }

    /// Takes what is queued, waits for its grace period and invokes it on
    /// the calling thread, after any batch taken before it (`batch`);
    /// returns how many heads, and their bytes.
    fn run_batch(&self) -> (usize, usize) {
        let mut in_order = lock(&self.batch);
        self.run_batch_locked(&mut in_order, Some(self.hooks))
    }

    /// [`run_batch`](Self::run_batch) with `batch` held; on the crdp's own
    /// thread, with its `hooks` (online while it invokes the batch).
    fn run_batch_locked(&self, list: &mut HeadList, hooks: Option<ThreadHooks>) -> (usize, usize) {
        let (newest, bytes) = self.take_raw();
        if newest.is_null() {
            return (0, 0);
        }
        // The batch's heads in a list, newest first, if it has room: one
        // pass over heads a flood's batch finds cold, after which the
        // invocation reads them ahead (see `HeadList`). Else reversed in
        // place, oldest first: two such passes.
        // SAFETY: the taken heads are ours alone, each valid until invoked.
        let listed = unsafe { list.collect(newest) };
        let (mut oldest, mut n) = match listed {
            Some(n) => (ptr::null_mut(), n),
            // SAFETY: as above.
            None => unsafe { reverse_counting(newest) },
        };
        if listed.is_none() && n > 1 && oldest == newest {
            // Reversed in place, a chain that runs into a cycle (a head
            // queued twice) comes back to its newest head, so a longer
            // chain cannot end there; reversed, it still runs into one
            // (`cut_cycle`). Its heads run once each, newest first.
            // SAFETY: as above.
            let (last, distinct) = unsafe { cut_cycle(oldest) };
            report_queued_twice(last);
            (oldest, n) = (newest, distinct);
            lock(&self.state).lost_heads = true;
            self.progress.notify_all();
        }
        self.taken.fetch_add(n, Ordering::Relaxed);
        let rcu = self.rcu;
        self.awaiting_gp.store(true, Ordering::Relaxed);
        if rcu.in_fast_mode() {
            rcu.synchronize_expedited();
        } else {
            rcu.synchronize();
        }
        self.awaiting_gp.store(false, Ordering::Relaxed);
        if let Some(h) = hooks {
            (h.online)();
        }
        self.invoking.store(true, Ordering::Relaxed);
        if listed.is_some() {
            // SAFETY: as above; the list holds the taken heads.
            unsafe { list.invoke_oldest_first(&self.invoked) };
        } else {
            // SAFETY: as above; `reverse_counting` linked them oldest first.
            unsafe { invoke_oldest_first(oldest, &self.invoked) };
        }
        self.invoking.store(false, Ordering::Relaxed);
        if let Some(h) = hooks {
            (h.offline)();
            // The batch began outside any section (its `synchronize` would
            // have refused one): a section open now is one a callback left
            // open, which every later grace period would wait for, this
            // thread's next batch included (liburcu hangs without a word).
            if (h.in_section)() {
                crate::die(
                    "a call_rcu callback returned inside a read-side critical section \
                     (an rcu_read_lock() without its rcu_read_unlock()): every grace period \
                     would wait for the call_rcu thread for ever. Balance the callback's \
                     rcu_read_lock() and rcu_read_unlock()",
                );
            }
        }
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.count_done(n);
        (n as usize, bytes)
    }

    fn count_done(&self, n: u64) {
        let mut st = lock(&self.state);
        st.done += n;
        self.progress.notify_all();
    }

    /// Queues `head` (its `func` set), declaring `bytes`. Lock-free unless
    /// `bytes` is not 0; wakes the thread only if it sleeps.
    #[inline]
    pub(crate) fn push(&self, head: *mut RcuHead, bytes: usize) -> bool {
        if self.incoming.load(Ordering::Relaxed) == head {
            // Queued already and not yet taken: pushed again, it would
            // link to itself, and its batch would run it for ever.
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "[error] rcu-reclaim-urcu: call_rcu() called with an rcu_head ({head:p}) \
                     that is already queued, its callback not yet run: this call is ignored \
                     (liburcu's queue would be corrupted). Pass a head to call_rcu() again \
                     only once its callback has started"
                );
            }
            return false;
        }
        let queued = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        if bytes == 0 {
            self.push_chain(head, head);
        } else {
            let mut acc = lock(&self.incoming_bytes);
            *acc += bytes;
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
            self.push_chain(head, head);
        }
        self.wake_if_sleeping();
        self.over_mark(queued.saturating_sub(self.taken.load(Ordering::Relaxed)))
    }

    /// Whether `waiting` heads not yet taken into a batch are over the
    /// push-back mark: [`PUSH_BACK_AT`], or [`PUSH_BACK_AT_SHORT`] or
    /// [`PUSH_BACK_AT_OVER`] while memory is short.
    #[inline]
    fn over_mark(&self, waiting: u64) -> bool {
        waiting > PUSH_BACK_AT_OVER
            && (waiting > PUSH_BACK_AT
                || match self.memory_state(waiting) {
                    MemoryState::OverMark => true,
                    MemoryState::Short => waiting > PUSH_BACK_AT_SHORT,
                    MemoryState::Plenty => false,
                })
    }

    /// The domain's memory state: while the last look found plenty, looked
    /// at again by every [`MEMORY_LOOK_EVERY`]th head only (`waiting`
    /// counts heads one by one); while memory is short, by every head, so
    /// that callers stop waiting as soon as it is no longer. Under a
    /// memory limit a look reads the clock (the usage is read again once a
    /// millisecond old): at every head, a flood of small callbacks in a
    /// limited cgroup ran 10–20 % slower; looking only every 64th head
    /// while short, a flood of 16 KiB objects waited on for up to 64 ms
    /// after the usage went back under the mark (5× slower).
    #[inline]
    fn memory_state(&self, waiting: u64) -> MemoryState {
        let plenty = self.memory.load(Ordering::Relaxed) == MemoryState::Plenty as u8;
        if plenty && waiting % MEMORY_LOOK_EVERY != 0 {
            return MemoryState::Plenty;
        }
        let state = self.rcu.memory_state();
        self.memory.store(state as u8, Ordering::Relaxed);
        state
    }

    /// Whether the last look at the domain's memory (`memory_state`) found
    /// it short: a pressure signal, or the cgroup's usage near its mark.
    pub(crate) fn memory_short(&self) -> bool {
        self.memory.load(Ordering::Relaxed) != MemoryState::Plenty as u8
    }

    /// Whether the heads queued and not yet taken into a batch are over the
    /// push-back mark now (as `push` judges it).
    pub(crate) fn over_mark_now(&self) -> bool {
        let queued = self.queued.load(Ordering::Relaxed);
        self.over_mark(queued.saturating_sub(self.taken.load(Ordering::Relaxed)))
    }

    /// Push-back, when `push` said the backlog is over the mark: waits for
    /// the batch in hand to be invoked (the thread then takes the next at
    /// once) or [`PUSH_BACK_WAIT`] ([`PUSH_BACK_WAIT_OVER`] while the
    /// cgroup's usage is over its mark). The caller is outside
    /// any read-side section (the batch waits for readers) and is no crdp
    /// thread (it would wait for itself, or for a crdp waiting for it).
    ///
    /// A wait that ran out while the batch in hand did not begin one more
    /// callback (one blocked, on a lock the caller holds, say) marks the
    /// batch stuck until it does: the waits could not help it. While memory
    /// is plenty, callers then do not wait at all (a flood under the
    /// callbacks' own lock waited 1 ms a call: 200,000 calls took 110 s,
    /// liburcu 15 ms); while it is short, they wait [`PUSH_BACK_WAIT`], as
    /// a bound on the flood's rate.
    pub(crate) fn push_back(&self) {
        let st = lock(&self.state);
        if st.pause || st.stop || st.freed {
            return;
        }
        let memory = self.memory.load(Ordering::Relaxed);
        let invoked = self.invoked.load(Ordering::Relaxed);
        let stalled = || {
            self.invoking.load(Ordering::Relaxed) && self.invoked.load(Ordering::Relaxed) == invoked
        };
        let stuck = stalled() && self.stalled_at.load(Ordering::Relaxed) == invoked + 1;
        if stuck && memory == MemoryState::Plenty as u8 {
            return;
        }
        let limit = if memory == MemoryState::OverMark as u8 && !stuck {
            PUSH_BACK_WAIT_OVER
        } else {
            PUSH_BACK_WAIT
        };
        let done = st.done;
        let (st, waited) = self
            .progress
            .wait_timeout_while(st, limit, |st| st.done == done)
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() && st.done == done && stalled() {
            self.stalled_at.store(invoked + 1, Ordering::Relaxed);
        }
    }

    /// Publishes a chain on `incoming`. SeqCst (no dearer than Release on
    /// x86: a locked instruction either way), so that with
    /// `wake_if_sleeping`'s SeqCst load no fence is needed (see `run`).
    #[inline]
    fn push_chain(&self, newest: *mut RcuHead, oldest: *mut RcuHead) {
        let mut top = self.incoming.load(Ordering::Relaxed);
        loop {
            // SAFETY: the chain is the caller's until the exchange below
            // publishes it; `oldest` is its last head.
            unsafe { (*oldest).next = top };
            match self.incoming.compare_exchange_weak(
                top,
                newest,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // Dead already: `call_rcu_data_free` took its queue
                    // before this push (that take, AcqRel, came before
                    // this exchange, which acquired it, so the flag is
                    // seen) and the chain waits for `sweep_dead`, told so
                    // here. Pushed before the take, it was handed over with
                    // the rest (a count then only costs a scan).
                    if self.dead.load(Ordering::Relaxed) {
                        STRAYS.fetch_add(1, Ordering::Release);
                    }
                    return;
                }
                Err(t) => top = t,
            }
        }
    }

    /// After `push_chain`: signals the thread if it sleeps. No fence: the
    /// SeqCst load here, after `push_chain`'s SeqCst exchange, pairs with
    /// the thread's SeqCst store of `sleeping` and load of `incoming`.
    #[inline]
    fn wake_if_sleeping(&self) {
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::Relaxed) {
            let _st = lock(&self.state);
            self.wake.notify_one();
        }
    }

    /// Takes every queued head (the newest; NULL if none), with the bytes
    /// they declared.
    fn take_raw(&self) -> (*mut RcuHead, usize) {
        let acc = &mut *lock(&self.incoming_bytes);
        // AcqRel: a push after this swap acquires it, and with it the
        // `dead` flag `call_rcu_data_free` set before (see `push`).
        let newest = self.incoming.swap(ptr::null_mut(), Ordering::AcqRel);
        (newest, std::mem::take(acc))
    }

    /// Takes every queued head as a chain, counted, with its bytes.
    fn take(&self) -> Chain {
        let (newest, bytes) = self.take_raw();
        // SAFETY: the stack was just taken whole: its heads are ours.
        unsafe { chain_of(newest, bytes) }
    }

    /// Adds a chain taken from another crdp (freed, or lost in a fork);
    /// returns `queued` once it is counted: once `done` reaches that, the
    /// chain has been invoked.
    ///
    /// Counted after it is pushed: every head pushed before it was counted
    /// before its own push (`push`), so fewer than that many heads come
    /// before the chain's last, and the batches invoked in order cannot
    /// reach that count without it.
    pub(crate) fn adopt(&self, chain: Chain) -> u64 {
        if chain.is_empty() {
            return self.queued.load(Ordering::SeqCst);
        }
        if chain.bytes == 0 {
            // No bytes to book with the batch: no lock, as `push`.
            self.push_chain(chain.newest, chain.oldest);
        } else {
            let mut acc = lock(&self.incoming_bytes);
            *acc += chain.bytes;
            self.bytes.fetch_add(chain.bytes, Ordering::Relaxed);
            self.push_chain(chain.newest, chain.oldest);
        }
        let queued = self.queued.fetch_add(chain.len, Ordering::SeqCst) + chain.len;
        self.wake_if_sleeping();
        queued
    }

    /// Heads queued and not yet invoked, and their bytes.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        let done = lock(&self.state).done;
        let queued = self.queued.load(Ordering::Relaxed);
        (
            queued.saturating_sub(done) as usize,
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// For a reclaimer: takes what is queued, waits for its grace period
    /// and invokes it on the calling thread; returns how many, and their
    /// bytes. Nothing while the thread is paused for a fork.
    pub(crate) fn drain_here(&self) -> (usize, usize) {
        if lock(&self.state).pause {
            return (0, 0);
        }
        // Only if no batch is in flight: the thread's, waiting for its
        // grace period, completes first anyway, and this caller need not
        // wait for it here (a barrier waits for it; reclaim moves on).
        let Some(mut in_order) = try_lock(&self.batch) else {
            return (0, 0);
        };
        // Its callbacks run here as on the crdp's thread: a barrier they
        // call must not wait for this crdp, whose batch is this one.
        let outer = DRAINING.with(|d| d.replace(self));
        let ran = self.run_batch_locked(&mut in_order, None);
        DRAINING.with(|d| d.set(outer));
        ran
    }

    /// Heads taken into batches so far.
    #[cfg(test)]
    pub(crate) fn taken_now(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Heads ever queued here: once `done` reaches the count read before
    /// a wait, everything queued before it was invoked (or handed over).
    pub(crate) fn queued_now(&self) -> u64 {
        self.queued.load(Ordering::SeqCst)
    }

    /// Waits until everything queued before the call was invoked here,
    /// or handed over to another crdp when this one was freed: then
    /// returns that crdp and the count its `done` must reach (see
    /// [`wait_done_or_stuck`](Self::wait_done_or_stuck)).
    #[cfg(test)]
    pub(crate) fn wait_drained(&self) -> Option<(Arc<CallRcuData>, u64)> {
        self.wait_done_or_stuck(self.queued_now(), false).0
    }

    /// Marks this crdp's thread as waiting, inside a callback, for the
    /// other crdps (or no longer), and wakes their waiters to see it.
    pub(crate) fn set_waiting_in_callback(&self, waiting: bool) {
        let mut st = lock(&self.state);
        st.waiting_in_callback = waiting;
        self.progress.notify_all();
    }

    /// Waits until `done` reaches `target` (or the crdp was lost in a
    /// fork); returns where what it still held went, if it was freed.
    /// With `unless_stuck` (the caller is
    /// a crdp's thread inside a callback), it also stops waiting once this
    /// crdp's thread waits inside a callback too (the second result then
    /// says so): neither thread would invoke anything until the other did.
    pub(crate) fn wait_done_or_stuck(
        &self,
        target: u64,
        unless_stuck: bool,
    ) -> (Option<(Arc<CallRcuData>, u64)>, bool) {
        if self.pid != std::process::id() {
            // Forked without `call_rcu_before_fork` / `_after_fork_child`:
            // the thread stayed in the parent, and what was queued here
            // would wait for ever (liburcu hangs silently).
            crate::die(
                "rcu_barrier() in a child process forked without the fork hooks: the call_rcu \
                 threads stayed in the parent, so the callbacks queued here can never run; call \
                 call_rcu_before_fork() before fork(), then call_rcu_after_fork_parent() in the \
                 parent and call_rcu_after_fork_child() in the child",
            );
        }
        let mut st = lock(&self.state);
        // Not done when the thread stops: what it still holds is counted
        // done only by `hand_over`, with where it went.
        while st.done < target && !st.freed {
            if unless_stuck && st.waiting_in_callback {
                return (None, true);
            }
            if st.lost_heads {
                // No count to wait for: look every few milliseconds
                // whether the queue is empty and no batch is in hand.
                if self.drained() {
                    break;
                }
                st = self
                    .progress
                    .wait_timeout(st, LOST_HEADS_LOOK)
                    .map_or_else(|p| p.into_inner().0, |(g, _)| g);
                continue;
            }
            st = wait(&self.progress, st);
        }
        (st.handed.clone(), false)
    }

    /// Whether nothing is queued here and no batch is in hand (a look, for
    /// barriers once heads were lost: `State::lost_heads`).
    fn drained(&self) -> bool {
        self.incoming.load(Ordering::Acquire).is_null()
            && !self.invoking.load(Ordering::Relaxed)
            && !matches!(self.batch.try_lock(), Err(TryLockError::WouldBlock))
    }

    /// Stops the thread, as liburcu's `call_rcu_data_free` does: once it
    /// has finished the batch in hand or, idle, taken what is queued and
    /// run it (unless `now`: then it takes nothing more). What is still
    /// queued then stays queued (see `hand_over`). Returns once the thread
    /// has stopped, and `join`s it.
    pub(crate) fn stop(&self, now: bool) {
        let handle = {
            let mut st = lock(&self.state);
            st.stop = true;
            st.stop_now |= now;
            self.wake.notify_all();
            while !st.stopped {
                st = wait(&self.progress, st);
            }
            st.handle.take()
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// For a caller that must not go offline (an online QSBR thread, whose
    /// every wait offline is a quiescent state): stops the thread as
    /// `stop(true)` does, online, unless it has a batch in hand (whose
    /// grace period such a caller holds up: liburcu's thread waits for it
    /// there, and liburcu's `call_rcu_data_free` for ever) or is paused for
    /// a fork. Returns whether it stopped; if not, the stop stays asked for
    /// and [`stop`](Self::stop), offline, finishes it.
    pub(crate) fn stop_if_idle(&self) -> bool {
        let mut st = lock(&self.state);
        st.stop = true;
        st.stop_now = true;
        self.wake.notify_all();
        loop {
            if st.stopped {
                let handle = st.handle.take();
                drop(st);
                if let Some(h) = handle {
                    let _ = h.join();
                }
                return true;
            }
            if st.paused || matches!(self.batch.try_lock(), Err(TryLockError::WouldBlock)) {
                return false;
            }
            // Between its look at `stop` and a batch: looked at again soon.
            st = self
                .progress
                .wait_timeout(st, Duration::from_millis(1))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Pauses the thread where it holds nothing (before fork). Returns
    /// `false`, the pause requested but not reached, if one of its
    /// callbacks waits for the `defer_rcu` flush lock (which the caller
    /// holds: the thread cannot get there until it has it).
    ///
    /// `caller_in_section`: the caller is inside a read-side section that
    /// grace periods wait for (`call_rcu_before_fork` there). A thread
    /// whose batch waits for its grace period then never pauses, since
    /// that grace period waits for the caller's section, and the caller
    /// waits for the thread. liburcu's hook waits for ever without a word;
    /// here, once the thread has waited [`PAUSE_IN_SECTION_LIMIT`] for one
    /// grace period, the process ends, saying why and what to change.
    pub(crate) fn pause(&self, caller_in_section: bool) -> bool {
        let mut st = lock(&self.state);
        st.pause = true;
        self.wake.notify_all();
        let mut awaiting_since: Option<Instant> = None;
        while !st.paused && !st.stopped {
            if st.waiting_for_flush {
                return false;
            }
            if !caller_in_section {
                st = wait(&self.progress, st);
                continue;
            }
            if !self.awaiting_gp.load(Ordering::Relaxed) {
                awaiting_since = None;
            } else if awaiting_since.get_or_insert_with(Instant::now).elapsed()
                >= PAUSE_IN_SECTION_LIMIT
            {
                crate::die(&format!(
                    "call_rcu_before_fork() was called inside a read-side critical section, \
                     and a call_rcu thread has waited {} s for a grace period that this \
                     section holds up: it cannot pause for the fork, and the fork would \
                     wait for it for ever. End the section (rcu_read_unlock()) before \
                     call_rcu_before_fork() and fork()",
                    PAUSE_IN_SECTION_LIMIT.as_secs()
                ));
            }
            st = self
                .progress
                .wait_timeout(st, Duration::from_millis(10))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Waits until the thread's callback no longer waits for the
    /// `defer_rcu` flush lock (see [`pause`](Self::pause)).
    pub(crate) fn wait_not_waiting_for_flush(&self) {
        let mut st = lock(&self.state);
        while st.waiting_for_flush {
            st = wait(&self.progress, st);
        }
    }

    fn set_waiting_for_flush(&self, waiting: bool) {
        let mut st = lock(&self.state);
        st.waiting_for_flush = waiting;
        self.progress.notify_all();
    }

    pub(crate) fn resume(&self) {
        lock(&self.state).pause = false;
        self.wake.notify_all();
    }

    /// In a forked child, where the thread does not exist: marks the crdp
    /// freed and returns what it still held, for the new default crdp.
    ///
    /// Blocks on no lock of the crdp: another thread of the parent may have
    /// held one at the fork (a `call_rcu` caller waking the thread or held
    /// back holds `state`, a sized one `incoming_bytes`), and no thread
    /// releases it in the child. Such a crdp is left as it is (it is
    /// reachable from nothing once the caller rebuilt the registry; its
    /// thread's reference keeps it, and its handle, from being dropped).
    pub(crate) fn abandon_in_child(&self) -> Chain {
        if let Some(mut st) = try_lock(&self.state) {
            if let Some(h) = st.handle.take() {
                std::mem::forget(h); // the thread is the parent's
            }
            st.freed = true;
            st.stopped = true;
        }
        let bytes = match self.incoming_bytes.try_lock() {
            Ok(mut acc) => std::mem::take(&mut *acc),
            Err(TryLockError::Poisoned(p)) => std::mem::take(&mut *p.into_inner()),
            // A sized push was under way at the fork: what is queued here
            // declared, at most, every byte not yet invoked (the thread was
            // paused holding no batch).
            Err(TryLockError::WouldBlock) => self.bytes.load(Ordering::Relaxed),
        };
        let newest = self.incoming.swap(ptr::null_mut(), Ordering::Acquire);
        // SAFETY: the stack was just taken whole: its heads are ours.
        unsafe { chain_of(newest, bytes) }
    }

    /// Hands what a stopped crdp still holds over to `to` (which counts it
    /// as queued), then counts it as done here and marks this one freed,
    /// noting where it went: a barrier that counted those heads here
    /// follows them there (`wait_done_or_stuck`), so they cannot escape it.
    /// `in_section`: the caller is inside a read-side section (see
    /// [`handing_off`]).
    pub(crate) fn hand_over(&self, to: &Arc<CallRcuData>, in_section: bool) {
        // After a batch a caller's `drain_here` still runs: `freed` must
        // not let a barrier stop waiting here before that batch is done.
        let _in_order = lock(&self.batch);
        let (n, there) = handing_off(in_section, || {
            let chain = self.take();
            let n = chain.len;
            self.taken.fetch_add(n, Ordering::Relaxed);
            self.bytes.fetch_sub(chain.bytes, Ordering::Relaxed);
            (n, to.adopt(chain))
        });
        let mut st = lock(&self.state);
        st.done += n;
        st.freed = true;
        if n > 0 {
            st.handed = Some((to.clone(), there));
        }
        self.progress.notify_all();
    }
}

fn set_affinity(cpu: c_int) {
    // CPU_SET indexes a fixed set of CPU_SETSIZE bits (it panics past it).
    let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if usize::try_from(cpu).map_or(true, |c| c >= bits) {
        eprintln!(
            "[error] rcu-reclaim-urcu: cannot bind a call_rcu thread to CPU {cpu}: out of \
             range (0..{}); it runs unbound (pass a CPU number below the number of CPUs, or \
             -1 for none)",
            bits
        );
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity get valid pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            eprintln!(
                "[error] rcu-reclaim-urcu: cannot bind a call_rcu thread to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests;
