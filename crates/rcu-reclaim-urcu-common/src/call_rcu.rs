//! `call_rcu`, `rcu_barrier` and the `call_rcu_data` family.
//!
//! As in liburcu, `call_rcu` pushes the `rcu_head` itself (no allocation)
//! on the queue of the `call_rcu_data` chosen at that time (the thread's,
//! else the CPU's, else the default), whose thread takes the whole queue,
//! waits for one grace period of the domain (expedited under memory
//! pressure) and invokes the batch. The backlog in callbacks and bytes is
//! counted per crdp (`rcu_reclaim_pending`), and a reclaimer can run a
//! batch itself (`rcu_reclaim_run_callbacks`). A freed `call_rcu_data`
//! stops after the batch in hand and passes the rest to the default one.

use std::cell::Cell;
use std::os::raw::{c_int, c_ulong};
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::marker::PhantomData;

use crate::crdp::{
    all, chosen_crdp, current_crdp, default_crdp, has_orphans, install_default, per_cpu,
    push_orphan, take_orphans, Caller, ThreadHooks, CALLER, DEFAULT, PER_CPU, WORKER_OF,
};
pub use crate::crdp::{CallRcuData, RcuFunc, RcuHead};
use crate::Flavor;

/// Whether the calling thread is a `call_rcu_data`'s own thread (running
/// its callbacks).
pub fn on_crdp_thread() -> bool {
    !WORKER_OF.with(|t| t.get()).is_null()
}

/// Held by a `call_rcu` or `rcu_barrier` that is not re-entrant: on its
/// way out, hands the heads that re-entrant calls (signal handlers)
/// queued meanwhile to a crdp ([`deliver_orphans_now`]), before the thread
/// leaves.
struct Busy<F: Flavor> {
    /// This thread's [`Caller`], whose `busy` this call set (null when the
    /// thread-locals are gone: nothing to clear).
    caller: *const Caller,
    flavor: PhantomData<F>,
}

impl<F: Flavor> Busy<F> {
    /// `None` if the calling thread is already inside `call_rcu` or
    /// `rcu_barrier` (a signal handler interrupted it).
    #[inline]
    fn enter() -> Option<Busy<F>> {
        // One thread-local access per call: the state's address is kept for
        // the thread's crdp and for the exit. `CALLER` has no destructor,
        // so its storage lasts as long as the thread, which drops the guard
        // before it leaves this call.
        match CALLER.try_with(|c| (c.busy.replace(true), c as *const Caller)) {
            Ok((true, _)) => None,
            Ok((false, caller)) => Some(Busy {
                caller,
                flavor: PhantomData,
            }),
            Err(_) => Some(Busy {
                caller: ptr::null(),
                flavor: PhantomData,
            }),
        }
    }

    /// The thread's `set_thread_call_rcu_data` choice (null: none).
    #[inline]
    fn thread_crdp(&self) -> *const CallRcuData {
        if self.caller.is_null() {
            return ptr::null();
        }
        // SAFETY: this thread's `CALLER`, alive as long as the thread (see
        // `enter`); its cells are touched by this thread alone.
        unsafe { (*self.caller).crdp.get() }
    }
}

impl<F: Flavor> Drop for Busy<F> {
    #[inline]
    fn drop(&mut self) {
        loop {
            // Left aside while a fork holds the hand-offs: the fork's
            // parent hands them on (trying again here would spin until
            // then, and the fork may wait for a lock this thread holds).
            let aside = !deliver_orphans::<F>();
            if self.caller.is_null() {
                return;
            }
            // SAFETY: as in `thread_crdp`; a signal handler runs on this
            // thread, between its instructions.
            let busy = unsafe { &(*self.caller).busy };
            busy.set(false);
            // A handler that ran after the delivery above, with `busy`
            // still set, left heads behind.
            if aside || !has_orphans() {
                return;
            }
            busy.set(true);
        }
    }
}

/// Hands the heads queued by re-entrant `call_rcu`s to a crdp (on the
/// way out of a `call_rcu`, maybe a handler's: not while a fork holds the
/// hand-offs, see [`crate::crdp::try_handing_off`]).
/// Returns `false` if it left them aside for a fork.
#[inline]
fn deliver_orphans<F: Flavor>() -> bool {
    !has_orphans() || deliver_orphans_now::<F>()
}

/// For `rcu_barrier` (outside any section): waits, offline, for the
/// hand-offs in flight (a chain another thread has taken and not yet
/// pushed, which the barrier must count) and for a fork under way, then
/// hands on the heads that handlers left aside. Never waits for the
/// hand-off lock inside a section (a per-CPU crdp is chosen in one) or
/// online: a fork holds it, and its thread may wait for a grace period
/// in its window (an atfork handler's `synchronize_rcu`).
pub(crate) fn deliver_orphans_for_barrier<F: Flavor>() {
    loop {
        F::offline_while(crate::crdp::wait_for_handoffs);
        if deliver_orphans::<F>() {
            return;
        }
    }
}

/// For `call_rcu_after_fork_parent`: hands on the heads that handlers left
/// aside while the fork held the hand-offs, as the way out of a `call_rcu`
/// does (`Busy`'s drop), busy meanwhile (a handler that interrupts the
/// hand-off leaves its head aside instead of waiting for the lock this
/// thread holds). A fork that another thread began meanwhile hands them on
/// after it.
pub(crate) fn deliver_orphans_after_fork<F: Flavor>() {
    drop(Busy::<F>::enter());
}

/// [`deliver_orphans`] once a handler left some; `false` if it left them
/// aside for a fork.
#[cold]
#[inline(never)]
fn deliver_orphans_now<F: Flavor>() -> bool {
    // To the crdp a `call_rcu` of this thread would pick now (its own, its
    // CPU's; the default, made for it, only when there is neither). This
    // runs on the way out of a handler's `call_rcu` too, where the handler
    // may have interrupted `malloc` (creating the default allocates) while
    // another thread forks (`before_fork` holds `ALL`, which creating it
    // takes, and fork waits for malloc's locks). The crdp is chosen first:
    // taking the heads then pushing them is a hand-off, which must not
    // wait for `ALL`.
    let mine = CALLER.with(|c| c.crdp.get());
    in_chosen_crdp::<F, _>(mine, |crdp| {
        crate::crdp::try_handing_off(|| {
            if let Some(chain) = take_orphans() {
                crdp.adopt(chain);
            }
        })
    })
}

/// Runs `f` on the crdp a `call_rcu` of this thread would pick now: `mine`
/// (the thread's own, if not null), its CPU's, else the default. The
/// default is created only when there is no other, so a program whose
/// threads or CPUs all have their own never makes one (liburcu neither),
/// and a `call_rcu` from a signal handler that interrupted `malloc` there
/// allocates nothing.
///
/// The thread's own crdp and the default need no section: only this
/// thread can uninstall its own (liburcu's contract frees a crdp only once
/// it is installed nowhere), and the default is never freed (only replaced
/// in a forked child, where no other thread runs). A per-CPU one is chosen
/// inside a section of the domain, which keeps it alive while `f` runs (a
/// crdp is freed a grace period after it was uninstalled), and the default,
/// if none, is created outside it: creation takes `ALL`, which
/// `before_fork` holds while it waits for grace periods. An online QSBR
/// thread is in a section already, until its next quiescent state (which
/// `call_rcu` is not), as liburcu-qsbr's no-op `rcu_read_lock` there says:
/// it takes none of its own (a raw section would, on the thread's first,
/// set up the domain's thread-local reader slot, which allocates: a
/// handler that had interrupted `malloc` hung there).
fn in_chosen_crdp<F: Flavor, R>(mine: *const CallRcuData, f: impl FnOnce(&CallRcuData) -> R) -> R {
    // One freed by another thread while installed here is dropped (before,
    // the call went on queueing on it, its heads run only at the next
    // rcu_barrier's sweep).
    let mine = crate::crdp::live_own(mine);
    if !mine.is_null() || PER_CPU.get().is_none() {
        let crdp = if mine.is_null() {
            let mut default = DEFAULT.load(Ordering::Acquire);
            if default.is_null() {
                ensure_default::<F>();
                default = DEFAULT.load(Ordering::Acquire);
            }
            default.cast_const()
        } else {
            mine
        };
        // SAFETY: alive, as said above.
        return f(unsafe { &*crdp });
    }
    let rcu = F::rcu();
    let section = !F::online();
    let crdp = loop {
        if section {
            rcu.read_lock_raw();
        }
        let crdp = chosen_crdp();
        if !crdp.is_null() {
            break crdp;
        }
        if section {
            rcu.read_unlock_raw();
        }
        ensure_default::<F>();
    };
    // SAFETY: inside the section the chosen crdp stays alive (see above;
    // the default is never freed).
    let r = f(unsafe { &*crdp });
    if section {
        rcu.read_unlock_raw();
    }
    r
}

/// Creates the default crdp if there is none yet, without putting an
/// online QSBR thread offline.
fn ensure_default<F: Flavor>() {
    if !DEFAULT.load(Ordering::Acquire).is_null() {
        return;
    }
    if F::online() {
        // An online QSBR thread may hold references read since its last
        // quiescent state, and call_rcu is no quiescent state: created
        // online, as liburcu does (going offline, even for a moment,
        // would let a grace period end under those references).
        drop(default_crdp::<F>());
    } else {
        // Created outside the section: creation takes `ALL`, which
        // `before_fork` holds while it waits for grace periods.
        F::offline_while(|| drop(default_crdp::<F>()));
    }
}

/// The `func` of an exported `call_rcu`, which C may pass as NULL: that
/// (or a NULL `head`) is a bug that liburcu turns into a segfault on its
/// call_rcu thread, later; here it aborts at once, saying so.
#[inline]
pub fn checked_func(head: *mut RcuHead, func: Option<RcuFunc>, name: &str) -> RcuFunc {
    match func {
        Some(func) if !head.is_null() => func,
        _ => null_argument(head.is_null(), name),
    }
}

/// `checked_func`'s end: a NULL head or function.
#[cold]
#[inline(never)]
fn null_argument(null_head: bool, name: &str) -> ! {
    if null_head {
        crate::die(&format!(
            "{name}() called with a NULL rcu_head: pass the address of a struct rcu_head \
             that stays valid until the callback runs"
        ));
    }
    crate::die(&format!(
        "{name}() called with a NULL callback function: liburcu would call NULL on its \
         call_rcu thread; pass the function that frees the object"
    ))
}

/// `call_rcu`: queues `head` (with `bytes` for the backlog) to run `func`
/// after a grace period.
///
/// The common case (no per-CPU `call_rcu_data` installed) takes no
/// read-side section and reads one thread-local: the thread's own crdp can
/// be uninstalled only by this thread (so not while it is here), and the
/// default one is never freed. Only a per-CPU choice, which another thread
/// may uninstall and free a grace period later, is used inside a section of
/// the domain, as liburcu does.
///
/// # Safety
/// `head` is valid and untouched by the caller until `func` runs.
pub unsafe fn queue<F: Flavor>(head: *mut RcuHead, func: RcuFunc, bytes: usize) {
    // SAFETY: the caller passes a valid head it hands over to us (`next` is
    // written when it is pushed).
    unsafe { (*head).func = Some(func) };
    let Some(busy) = Busy::<F>::enter() else {
        // A signal handler interrupted this thread's own `call_rcu` or
        // `rcu_barrier`, which may hold a lock taken below: the head waits
        // lock-free for the interrupted call to hand it over on its way out.
        // SAFETY: the caller hands the head over (`func` is set).
        unsafe { push_orphan(head) };
        return;
    };
    // Over the mark, a reference taken while the crdp is surely alive
    // keeps it alive after (an `Arc` clone only on this slow path).
    let over = in_chosen_crdp::<F, _>(busy.thread_crdp(), |crdp| {
        // SAFETY: `crdp` is alive (see `in_chosen_crdp`).
        crdp.push(head, bytes)
            .then(|| unsafe { crate::crdp::clone_raw(crdp) })
    });
    if let Some(crdp) = over {
        push_back::<F>(crdp);
    }
}

/// `call_rcu`'s slow path, when `push` said the backlog is over the mark:
/// as [`push_back_action`] says. Called outside `queue`'s own section, so
/// the check sees the caller's.
#[cold]
fn push_back<F: Flavor>(crdp: Arc<CallRcuData>) {
    match push_back_action(on_crdp_thread(), F::in_read_section(), F::online()) {
        PushBack::None => {}
        PushBack::Yield => std::thread::yield_now(),
        PushBack::Wait => F::offline_while(|| crdp.push_back()),
        PushBack::Owe => {
            let short = crdp.memory_short();
            owe_push_back(crdp);
            if !F::push_back_owed() && short {
                // Its quiescent states are inlined (`_LGPL_SOURCE`) and
                // will never pay: while memory is short, the call itself
                // takes the wait's time, online. It holds up the batch's
                // grace period no longer than the thread's next quiescent
                // state would, and slows what the thread queues to what
                // the crdp frees: four such threads flooding heads of
                // 4 KiB objects in a 100 MiB cgroup peaked at 71-72 MiB,
                // and of 16 KiB at 91-93 MiB, where every run was
                // OOM-killed (as on liburcu-qsbr); a yield instead was
                // killed too.
                std::thread::sleep(crate::crdp::PUSH_BACK_WAIT);
            }
        }
    }
}

/// What `call_rcu` does when its crdp's backlog is over the push-back mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PushBack {
    /// Nothing: the caller goes on.
    None,
    /// Gives the CPU away once (a bounded wait, no dependency).
    Yield,
    /// Waits, offline, for the crdp's next batch ([`CallRcuData::push_back`]).
    Wait,
    /// Owes that wait, paid at the thread's next quiescent state that
    /// reports or when it goes offline ([`pay_owed_push_back`]).
    Owe,
}

/// The push-back rule: a crdp thread is never held back (it would wait
/// for itself, or for a crdp waiting for it). A caller inside a read-side
/// section cannot wait for the batch, which waits for that section: it
/// gives the crdp threads the CPU once instead. Four threads flooding
/// `call_rcu` inside `rcu_read_lock` on two cores (20 million callbacks)
/// peaked at 650 MB without it, 28 MB with it (liburcu: 230-400 MB), in
/// 0.7-1.7x liburcu's time (BENCHMARKS.md).
///
/// An online QSBR thread *owes* the wait instead ([`PushBack::Owe`]): it
/// must not go offline here (`call_rcu` is no quiescent state: the
/// references it read since its last one would be freed under it), the
/// batch waits for its next quiescent state, which no wait of its own
/// brings closer, and a yield gave the CPU to whatever else ran (beside a
/// reader looping over sections, four such threads queueing 4 million
/// callbacks took 65 s with a yield per call over the mark, against 0.85 s
/// without). So the call returns at once, counting one wait owed, and the
/// thread pays at its next quiescent state that reports (the grace-period
/// counter moved: the crdp waits for it) or when it goes offline
/// (`rcu_thread_offline`, `rcu_unregister_thread`): there it holds no
/// reference, goes offline and waits for the batch as anyone else does,
/// once per owed call while the backlog stays over the mark
/// ([`pay_owed_push_back`]). Four online threads flooding heads of 4–64
/// KiB objects in a 100 MiB memory cgroup were OOM-killed without it, as
/// with liburcu-qsbr. An online thread in a section taken while it was
/// offline (liburcu's misuse) owes too, and pays once that section ends.
/// Anyone else waits for the batch.
fn push_back_action(on_crdp_thread: bool, in_section: bool, online: bool) -> PushBack {
    if on_crdp_thread {
        PushBack::None
    } else if online {
        PushBack::Owe
    } else if in_section {
        PushBack::Yield
    } else {
        PushBack::Wait
    }
}

/// A push-back owed by an online QSBR thread ([`PushBack::Owe`]).
struct Owed {
    /// The crdp whose backlog was over the mark (the last one, if the
    /// thread queued on several): kept alive until the debt is paid or
    /// dropped, so paying never touches a freed crdp (one stopped or freed
    /// meanwhile makes no one wait).
    crdp: Cell<Option<Arc<CallRcuData>>>,
    /// Calls over the mark since the thread last paid: the most waits it
    /// pays (one each, as a thread that may wait makes).
    waits: Cell<u32>,
}

thread_local! {
    /// The calling thread's owed push-back (none: `waits` is 0).
    static OWED: Owed = const {
        Owed {
            crdp: Cell::new(None),
            waits: Cell::new(0),
        }
    };
}

/// Records that the calling (online QSBR) thread owes a push-back wait
/// for `crdp`.
fn owe_push_back(crdp: Arc<CallRcuData>) {
    let _ = OWED.try_with(|o| {
        o.waits.set(o.waits.get().saturating_add(1));
        // The older crdp, if another, is let go: the wait is for the
        // backlog the thread fills now.
        drop(o.crdp.replace(Some(crdp)));
    });
}

/// Whether the calling thread owes a push-back (`call_rcu` over the mark
/// while it was an online QSBR thread). A thread-local load: the
/// drop-in checks it on the slow path of its quiescent state only.
#[inline]
pub fn owes_push_back() -> bool {
    OWED.try_with(|o| o.waits.get() != 0).unwrap_or(false)
}

/// Whether a thread that owes a push-back may pay it now: never on a crdp
/// thread (it would wait for itself), inside a read-side section the
/// batch waits for, nor from a signal handler that interrupted the
/// thread's own `call_rcu` or `rcu_barrier` (`Caller::busy`: it may hold
/// the crdp's lock that the wait takes); the debt is kept for a later
/// quiescent point.
fn may_pay(on_crdp_thread: bool, in_section: bool, in_call_rcu: bool) -> bool {
    !on_crdp_thread && !in_section && !in_call_rcu
}

/// Whether the calling thread is inside its own `call_rcu` or
/// `rcu_barrier` (a signal handler interrupted it).
fn in_call_rcu() -> bool {
    CALLER.try_with(|c| c.busy.get()).unwrap_or(true)
}

/// Pays the push-back the calling thread owes ([`owes_push_back`]), at a
/// quiescent point of an online QSBR thread (after its quiescent state
/// reported, or as it goes offline or unregisters), where it holds no
/// reference read before: offline for the wait ([`Flavor::offline_while`];
/// back online after if it was), it waits for the crdp's batch
/// (`CallRcuData::push_back`: until it has run, 1 ms at most), again
/// while the backlog stays over the mark, once per call that owed at
/// most, so bounded as the waits of a thread that may wait in `call_rcu`
/// are. Inside a section the batch
/// waits for, on a crdp thread, or in a signal handler that interrupted
/// the thread's `call_rcu`, it keeps the debt and returns.
///
/// The payment marks the thread busy as its `call_rcu` does: it waits
/// holding the crdp's `state` lock, and a signal handler's `call_rcu`
/// that interrupted it would otherwise pay its own push-back there and
/// wait for that lock, held by the code it interrupted (a hang, seen with
/// `signal_in_malloc_qsbr`: 1 run in 31). The handler's head goes on the
/// orphan stack instead, handed over on the way out.
#[cold]
#[inline(never)]
pub fn pay_owed_push_back<F: Flavor>() {
    if !may_pay(on_crdp_thread(), F::in_read_section(), in_call_rcu()) {
        return;
    }
    let Some(_busy) = Busy::<F>::enter() else {
        return;
    };
    let Ok((crdp, waits)) = OWED.try_with(|o| (o.crdp.take(), o.waits.replace(0))) else {
        return;
    };
    let Some(crdp) = crdp else { return };
    F::offline_while(|| {
        for _ in 0..waits {
            if !crdp.over_mark_now() {
                break;
            }
            crdp.push_back();
        }
    });
}

/// Keeps at most one wait of the push-back the calling thread owes: for a
/// thread whose quiescent states bypass the library (inlined by
/// `_LGPL_SOURCE`), which never pays at them. Its debt grew with each
/// `call_rcu` over the mark for the thread's whole life, and was paid at
/// once at `rcu_unregister_thread` (or a library `rcu_thread_offline`):
/// beside threads still flooding, one wait per call owed, so an
/// unregistration that liburcu makes in microseconds took seconds, more
/// the longer the thread had flooded.
pub fn owe_one_push_back_at_most() {
    let _ = OWED.try_with(|o| o.waits.set(o.waits.get().min(1)));
}

/// Drops the push-back the calling thread owes, unpaid: for
/// `call_rcu_before_fork` (no wait there; the crdp may not be the child's).
pub fn forget_owed_push_back() {
    let _ = OWED.try_with(|o| {
        o.waits.set(0);
        drop(o.crdp.take());
    });
}

/// How short memory is for `F`'s domain (`Rcu::memory_state`), the domain
/// bounded by the process's cgroup first if no `call_rcu` thread has done
/// so yet (as the first one does).
pub fn memory_state<F: Flavor>() -> rcu_reclaim::pressure::MemoryState {
    crate::crdp::bound_by_cgroup(F::rcu());
    F::rcu().memory_state()
}

/// `rcu_barrier`: waits until every callback queued before the call has
/// been invoked (an online QSBR thread goes offline for the wait).
pub fn barrier<F: Flavor>() {
    if crate::fork_window::forking_here() {
        // liburcu waits for its paused call_rcu threads for ever.
        eprintln!(
            "[error] rcu-reclaim-urcu: rcu_barrier() called between call_rcu_before_fork() and \
             call_rcu_after_fork_parent() / call_rcu_after_fork_child(): the call_rcu threads \
             are paused for the fork and cannot run the callbacks it would wait for; it returns \
             at once. Call it before call_rcu_before_fork() or after the after_fork hook."
        );
        return;
    }
    if F::in_read_section() {
        // liburcu-qsbr's sections taken offline protect nothing, and its
        // barrier waits: so does this one, the sections ended meanwhile.
        if F::outside_sections("rcu_barrier", barrier_now::<F>).is_none() {
            eprintln!("[error] rcu-reclaim-urcu: rcu_barrier() called from within RCU read-side critical section.");
        }
        return;
    }
    barrier_now::<F>();
}

/// `rcu_barrier` outside any section it would wait for.
fn barrier_now<F: Flavor>() {
    let rcu = F::rcu();
    // Heads queued from signal handlers wait on the orphan stack only
    // while a call of this thread is interrupted: handed over first.
    let _busy = Busy::<F>::enter();
    deliver_orphans_for_barrier::<F>();
    if !crate::crdp::invoking_here().is_null() {
        // liburcu deadlocks here (its thread waits for itself). The heads
        // queued on this thread before the call (the rest of the batch in
        // hand, and what came after it) run only once this callback has
        // returned: say so, rather than return as if they had run.
        eprintln!(
            "[error] rcu-reclaim-urcu: rcu_barrier() called from a call_rcu callback: it cannot \
             wait for the callbacks queued on its own call_rcu thread, which run after this \
             callback returns; it waits for the other call_rcu threads only."
        );
    }
    F::offline_while(|| {
        // Offline: the sweep hands heads over under a crdp's batch lock,
        // whose holder may be waiting for a grace period (an online QSBR
        // thread sweeping held it up: a hang, 3 runs in 10 of a C stress).
        crate::crdp::sweep_dead::<F>();
        if rcu_reclaim::Rcu::in_callback() {
            // A defer_rcu callback that the callback engine runs (deferred
            // from another defer_rcu callback while the queues were full):
            // the engine's barrier would wait for that callback itself.
            eprintln!(
                "[error] rcu-reclaim-urcu: rcu_barrier() called from a defer_rcu callback: it \
                 cannot wait for the callbacks deferred with it, which run after it returns; \
                 it waits for the call_rcu threads only."
            );
        } else if crate::no_unwind(|| rcu.barrier()).is_none() {
            return; // reported by the panic hook
        }
        if wait_all_drained(false).0 {
            eprintln!(
                "[error] rcu-reclaim-urcu: rcu_barrier() called from a call_rcu callback while \
                 another call_rcu thread's callback also waits in rcu_barrier(): it does not \
                 wait for that thread's callbacks either (each would wait for the other for ever)."
            );
        }
    });
}

/// Callbacks queued on every crdp and not yet invoked, and the bytes their
/// sized calls declared.
pub fn backlog() -> (usize, usize) {
    let crdps = all().clone();
    crdps
        .iter()
        .map(|c| c.backlog())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

/// Waits until every crdp has invoked what it was handed before the call,
/// first invoking it on the calling thread if `here`. Skips the caller's
/// own crdp (a callback waiting for its own crdp would wait for itself).
/// The caller is outside any read-side section (offline, for QSBR).
///
/// A crdp freed meanwhile hands what it still holds over to the default
/// one, possibly after this waited for the default: its wait then goes on
/// with the default, up to those heads. One that is no longer listed was
/// removed after the handover, so the default counted them before the
/// wait for it began.
///
/// On a crdp's thread (a callback waiting here), the crdp is marked as
/// waiting meanwhile, and crdps whose own thread waits the same way are
/// not waited for (each would wait for the other for ever; liburcu
/// deadlocks even with one): returns whether one was skipped, and how
/// many callbacks ran on the calling thread (`here`).
pub fn wait_all_drained(here: bool) -> (bool, usize) {
    // A callback of a batch that a reclaimer runs on its own thread
    // (`drain_here`) waits as one on the crdp's thread: that batch's crdp
    // counts it done only once the callback has returned.
    let me = crate::crdp::invoking_here();
    let crdps: Vec<_> = all().clone();
    let mine = crdps.iter().find(|c| ptr::eq(Arc::as_ptr(c), me)).cloned();
    if let Some(m) = &mine {
        m.set_waiting_in_callback(true);
    }
    let in_callback = !me.is_null();
    let (mut skipped, mut ran_here) = (false, 0);
    for c in crdps {
        if ptr::eq(Arc::as_ptr(&c), me) {
            continue;
        }
        if here {
            ran_here += c.drain_here().0;
        }
        let target = c.queued_now();
        let (mut next, stuck) = c.wait_done_or_stuck(target, in_callback);
        skipped |= stuck;
        while let Some((to, target)) = next {
            if ptr::eq(Arc::as_ptr(&to), me) {
                break;
            }
            let (n, stuck) = to.wait_done_or_stuck(target, in_callback);
            skipped |= stuck;
            next = n;
        }
    }
    if let Some(m) = &mine {
        m.set_waiting_in_callback(false);
    }
    (skipped, ran_here)
}

/// Takes `ALL` for `create_call_rcu_data` and `set_cpu_call_rcu_data`.
/// `before_fork` holds it while it waits for grace periods, so a caller
/// waits for it offline, except an online QSBR thread: it may hold
/// references read since its last quiescent state, and going offline, even
/// for a moment, is a quiescent state that would let a grace period end
/// under them. It waits online, as liburcu's callers do (and, as theirs,
/// can then deadlock against a concurrent `fork` whose hooks wait for a
/// grace period).
fn lock_all<F: Flavor>() -> std::sync::MutexGuard<'static, Vec<Arc<CallRcuData>>> {
    if F::online() {
        all()
    } else {
        F::offline_while(all)
    }
}

/// Takes `ALL` for `call_rcu_data_free`, which is no quiescent state in
/// liburcu: an online QSBR thread takes it online while no other thread
/// holds it for long (a few tries: a concurrent create or free lets it go
/// soon); else, as every other caller, it waits offline, since
/// `before_fork` holds it while it waits for grace periods (liburcu's free
/// takes its lock only once the thread has stopped, so a fork does not
/// hold it up there).
fn lock_all_for_free<F: Flavor>() -> std::sync::MutexGuard<'static, Vec<Arc<CallRcuData>>> {
    if F::online() {
        for _ in 0..100 {
            if let Some(all) = crate::crdp::try_all() {
                return all;
            }
            std::thread::yield_now();
        }
    }
    F::offline_while(all)
}

/// Creates a crdp with its own thread (bound to `cpu_affinity` if >= 0).
pub fn create_call_rcu_data<F: Flavor>(_flags: c_ulong, cpu_affinity: c_int) -> *mut CallRcuData {
    // Busy, as `call_rcu` is: this takes locks (`ALL`, a crdp's) that a
    // signal handler's `call_rcu` would wait for; its head goes on the
    // orphan stack instead, handed over when this returns (a handler
    // interrupting a free's hand-over waited for the default's lock the
    // free held: 3 hangs in 54 runs of a C stress with signals).
    let _busy = Busy::<F>::enter();
    let mut all = lock_all::<F>();
    let crdp = CallRcuData::spawn(F::rcu(), cpu_affinity, ThreadHooks::of::<F>());
    all.push(crdp.clone());
    Arc::into_raw(crdp).cast_mut()
}

/// Stops a crdp's thread and frees it; what it still holds goes to the
/// default crdp. Refuses (silently, as liburcu) NULL and the default. Its
/// memory is kept, flagged dead: a thread that still has it installed
/// (liburcu's `call_rcu` there uses freed memory) says so on its next
/// `call_rcu` and goes to the default, and `rcu_barrier` hands what
/// reached it meanwhile to the default, so nothing is lost.
///
/// Called from one of the crdp's own callbacks (liburcu waits there for
/// its thread to stop, that is for itself, for ever), it says so and
/// returns: a helper thread frees the crdp once the callback and the rest
/// of the batch in hand have run.
///
/// # Safety
/// `crdp` came from `create_call_rcu_data`, is no longer installed for any
/// thread or CPU, a grace period has passed since it was removed, and it is
/// freed once.
pub unsafe fn call_rcu_data_free<F: Flavor>(crdp: *mut CallRcuData) {
    // Busy, as `call_rcu` is: this takes locks (`ALL`, a crdp's) that a
    // signal handler's `call_rcu` would wait for; its head goes on the
    // orphan stack instead, handed over when this returns (a handler
    // interrupting a free's hand-over waited for the default's lock the
    // free held: 3 hangs in 54 runs of a C stress with signals).
    let _busy = Busy::<F>::enter();
    if crdp.is_null() || ptr::eq(crdp, DEFAULT.load(Ordering::Acquire)) {
        return;
    }
    // Under `ALL`, which `before_fork` holds across grace periods: offline.
    // Claimed there: of two threads freeing it at once (a double free),
    // one goes on and the other is refused, where both used to take the
    // reference `create` returned (a use after free once it is released).
    // An online QSBR thread takes it online if it can: the free is no
    // quiescent state in liburcu.
    let claimed = lock_all_for_free::<F>()
        .iter()
        .find(|c| ptr::eq(Arc::as_ptr(c), crdp))
        .is_some_and(|c| !c.freeing.swap(true, Ordering::Relaxed));
    if !claimed {
        // liburcu frees it again (a double free, or a crash).
        eprintln!(
            "[error] rcu-reclaim-urcu: call_rcu_data_free() called on a call_rcu_data that is \
             not live (freed already, or not from create_call_rcu_data()); ignored"
        );
        return;
    }
    if ptr::eq(crdp, CALLER.with(|c| c.crdp.get())) {
        // liburcu frees it under the thread, whose next call_rcu uses the
        // freed memory. Its own thread (a callback freeing it) has it
        // installed as liburcu's does, not by the program: the error
        // below names that misuse instead.
        if !ptr::eq(crdp.cast_const(), WORKER_OF.with(|t| t.get())) {
            eprintln!(
                "[error] rcu-reclaim-urcu: call_rcu_data_free() called on the calling thread's \
                 own call_rcu_data; uninstalled first (call set_thread_call_rcu_data(NULL) \
                 before freeing it)"
            );
        }
        crate::crdp::install_for_thread(ptr::null());
    }
    if let Some(table) = PER_CPU.get() {
        let mut installed = false;
        for slot in table.iter() {
            installed |= slot
                .compare_exchange(crdp, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        }
        if installed {
            // liburcu frees it while call_rcu on that CPU still picks it.
            eprintln!(
                "[error] rcu-reclaim-urcu: call_rcu_data_free() called on a call_rcu_data still \
                 installed for a CPU; uninstalled first (call set_cpu_call_rcu_data(cpu, NULL) \
                 and synchronize_rcu() before freeing it)"
            );
            if !F::in_read_section() {
                // A caller that chose it inside a section is done with it.
                let rcu = F::rcu();
                F::offline_while(|| rcu.synchronize());
            }
        }
    }
    // SAFETY: per the contract, `crdp` is the reference `create` returned.
    let crdp = unsafe { Arc::from_raw(crdp.cast_const()) };
    // Its own thread, or a reclaimer's that runs its batch (`drain_here`,
    // holding the batch order its thread waits for: stopping the thread
    // there waited for ever).
    if ptr::eq(Arc::as_ptr(&crdp), crate::crdp::invoking_here()) {
        eprintln!(
            "[error] rcu-reclaim-urcu: call_rcu_data_free() called from a callback of that \
             call_rcu_data: its thread cannot stop while it runs the callback; it is freed \
             once the callback returns."
        );
        free_on_helper::<F>(crdp);
        return;
    }
    if F::in_read_section() {
        // Its thread stops only once the batch in hand has run, and that
        // batch's grace period waits for the caller's section: stopping
        // it here waited for ever (as liburcu's free does) whenever the
        // thread had taken a batch. Freed once the section has ended.
        free_on_helper::<F>(crdp);
        return;
    }
    free_stopped::<F>(crdp);
}

/// [`free_stopped`] on a short-lived thread, for a caller that cannot wait
/// for `crdp`'s thread to stop (its own callback, or a read-side section
/// the thread's batch waits for).
fn free_on_helper<F: Flavor>(crdp: Arc<CallRcuData>) {
    crate::with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("urcu-crdp-free".into())
            .spawn(move || free_stopped::<F>(crdp))
    })
    .unwrap_or_else(|e| {
        crate::die(&format!(
            "cannot start a thread to free a call_rcu_data: {e}"
        ))
    });
}

/// `call_rcu_data_free` off the crdp's own thread: stops the thread (once
/// it has run what it held, or finished the batch in hand: see
/// `CallRcuData::stop`), hands what is still queued to the default crdp
/// and unlists it.
fn free_stopped<F: Flavor>(crdp: Arc<CallRcuData>) {
    // Listed as dead before it is marked so: a head that lands on it once
    // it is (counted a stray) is found there by the next sweep. Listed
    // after, a sweep in between found no such crdp, cleared the count,
    // and the head waited for some later stray (a barrier returned
    // without it: 5 runs in 40 of a C stress under AddressSanitizer). The
    // cookie is of a grace period after it left the per-CPU table
    // (`call_rcu_data_free`), as `prune_dead` needs.
    let died = F::rcu().get_state();
    crate::crdp::DEAD
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((crdp.clone(), died));
    // Its thread may be waiting for a grace period: offline meanwhile.
    // Handed over before it leaves the list: a barrier that does not find
    // it there finds its heads counted in the default's queue, and one that
    // does follows them there (`wait_all_drained`).
    // Dead first: a thread that still has it installed (a misuse) stops
    // choosing it; what it queued meanwhile is swept to the default.
    crdp.dead.store(true, Ordering::Release);
    // As liburcu, the thread runs what is queued before it stops, which
    // takes a grace period; not if the caller is inside a read-side section
    // (liburcu deadlocks there: the thread waits for the caller's section,
    // the caller for the thread). Then it takes nothing more, and what is
    // queued goes to the default crdp. (`call_rcu_data_free` runs this on
    // a helper thread for such a caller: the batch in hand waits for it.)
    //
    // An online QSBR thread, which may hold references read since its last
    // quiescent state, stays online when the thread is idle, as liburcu's
    // caller does (going offline, even for a moment, let a grace period end
    // under those references: the free is no quiescent state in liburcu);
    // what is queued goes to the default crdp without waiting for a
    // hand-off lock a fork may hold. Offline only where liburcu's thread
    // would wait for a grace period this caller holds up (a deadlock
    // there).
    if F::online() && crdp.stop_if_idle() {
        crdp.hand_over(&default_crdp::<F>(), true);
        lock_all_for_free::<F>().retain(|c| !Arc::ptr_eq(c, &crdp));
    } else {
        let now = F::in_read_section();
        F::offline_while(|| {
            crdp.stop(now);
            crdp.hand_over(&default_crdp::<F>(), F::in_read_section());
            all().retain(|c| !Arc::ptr_eq(c, &crdp));
        });
    }
    // Kept allocated (in `DEAD`) while another thread may still reach it;
    // those that none can any more are let go.
    drop(crdp);
    crate::crdp::prune_dead::<F>();
    // Heads that reached a freed crdp after its hand-over (this one's, or
    // another's) go to the default now, offline, unless the caller is in
    // a section the hand-over could wait for; else the next barrier does.
    if !F::in_read_section() && !F::online() {
        F::offline_while(crate::crdp::sweep_dead::<F>);
    }
}

/// The default crdp (created on first use).
pub fn get_default_call_rcu_data<F: Flavor>() -> *mut CallRcuData {
    let _busy = Busy::<F>::enter(); // as in `call_rcu_data_free`
    Arc::as_ptr(&default_crdp::<F>()).cast_mut()
}

/// The crdp installed for `cpu`, or NULL. Once the per-CPU table exists,
/// a CPU out of its range says so, once per process (as liburcu's).
pub fn get_cpu_call_rcu_data(cpu: c_int) -> *mut CallRcuData {
    let Some(table) = PER_CPU.get() else {
        return ptr::null_mut();
    };
    let Some(slot) = usize::try_from(cpu).ok().and_then(|c| table.get(c)) else {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            // liburcu's own words, for programs or tools that look for them.
            eprintln!("[error] liburcu: get CPU # out of range");
        }
        return ptr::null_mut();
    };
    slot.load(Ordering::Acquire)
}

/// The crdp installed for the calling thread, or NULL.
pub fn get_thread_call_rcu_data() -> *mut CallRcuData {
    CALLER.with(|c| c.crdp.get()).cast_mut()
}

/// The crdp `call_rcu` uses on this thread now.
pub fn get_call_rcu_data<F: Flavor>() -> *mut CallRcuData {
    current_crdp::<F>().cast_mut()
}

/// Installs `crdp` (or NULL) for the calling thread.
pub fn set_thread_call_rcu_data(crdp: *mut CallRcuData) {
    crate::crdp::install_for_thread(crdp);
}

/// Installs `crdp` for `cpu`: 0, or `-EINVAL` (CPU out of range) or
/// `-EEXIST` (one is installed and `crdp` is not NULL), with `errno` set.
pub fn set_cpu_call_rcu_data<F: Flavor>(cpu: c_int, crdp: *mut CallRcuData) -> c_int {
    let _busy = Busy::<F>::enter(); // as in `call_rcu_data_free`
    let _all = lock_all::<F>();
    let Some(slot) = usize::try_from(cpu).ok().and_then(|c| per_cpu().get(c)) else {
        // Once per process, as liburcu's (a static `warned` flag).
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            // liburcu's own words, as for `get` above.
            eprintln!("[error] liburcu: set CPU # out of range");
        }
        return fail(libc::EINVAL);
    };
    if !crdp.is_null() && !slot.load(Ordering::Acquire).is_null() {
        return fail(libc::EEXIST);
    }
    slot.store(crdp, Ordering::Release);
    0
}

fn fail(errno: c_int) -> c_int {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = errno };
    -errno
}

/// Creates and installs a crdp for every CPU that has none; 0 on success.
pub fn create_all_cpu_call_rcu_data<F: Flavor>(flags: c_ulong) -> c_int {
    let _busy = Busy::<F>::enter(); // as in `call_rcu_data_free`
    for cpu in 0..per_cpu().len() as c_int {
        if !get_cpu_call_rcu_data(cpu).is_null() {
            continue;
        }
        let crdp = create_call_rcu_data::<F>(flags, cpu);
        let ret = set_cpu_call_rcu_data::<F>(cpu, crdp);
        if ret != 0 {
            // SAFETY: just created, never installed.
            unsafe { call_rcu_data_free::<F>(crdp) };
            if ret != -libc::EEXIST {
                return ret;
            }
        }
    }
    0
}

/// Uninstalls and frees every per-CPU crdp (their callbacks still run).
pub fn free_all_cpu_call_rcu_data<F: Flavor>() {
    let _busy = Busy::<F>::enter(); // as in `call_rcu_data_free`
    let Some(table) = PER_CPU.get() else {
        return;
    };
    let mut old: Vec<*mut CallRcuData> = table
        .iter()
        .map(|s| s.swap(ptr::null_mut(), Ordering::AcqRel))
        .filter(|p| !p.is_null())
        .collect();
    // One crdp set for several CPUs (`set_cpu_call_rcu_data` allows it) is
    // freed once: liburcu frees it once per CPU (a double free), and a
    // second `call_rcu_data_free` here said the program had freed a crdp
    // that was not live, which it never did.
    old.sort_unstable();
    old.dedup();
    // call_rcu may still be using them inside its read-side section: a
    // grace period first, as liburcu waits for one. Not inside the
    // caller's own section (liburcu deadlocks there; ours aborted): as
    // `call_rcu_data_free` of a crdp still installed for a CPU, each is
    // then kept allocated on `DEAD` until a grace period after this
    // (`prune_dead`), and its thread stops at once, handing what it holds
    // to the default crdp (`free_stopped`).
    if !F::in_read_section() {
        let rcu = F::rcu();
        F::offline_while(|| rcu.synchronize());
    }
    for p in old {
        // SAFETY: uninstalled a grace period ago; created by
        // `create_all_cpu_call_rcu_data` or the caller, freed once here.
        unsafe { call_rcu_data_free::<F>(p) };
    }
}

/// The thread that invokes `crdp`'s callbacks.
///
/// # Safety
/// `crdp` is a live crdp from this library.
pub unsafe fn get_call_rcu_thread(crdp: *mut CallRcuData) -> libc::pthread_t {
    // SAFETY: per the contract.
    let crdp = unsafe { &*crdp };
    crdp.tid.get().copied().unwrap_or(0)
}

/// In a forked child: liburcu's `call_rcu_after_fork_child` — a new default
/// crdp with a live thread takes over everything the old ones held; the
/// per-CPU table and this thread's choice are cleared. The caller holds
/// `ALL` (taken before the fork).
pub(crate) fn rebuild_in_child<F: Flavor>(all: &mut Vec<Arc<CallRcuData>>) {
    if all.is_empty() {
        return; // call_rcu was never used
    }
    let old = std::mem::take(all);
    DEFAULT.store(ptr::null_mut(), Ordering::Release);
    if let Some(table) = PER_CPU.get() {
        table
            .iter()
            .for_each(|s| s.store(ptr::null_mut(), Ordering::Release));
    }
    crate::crdp::install_for_thread(ptr::null());
    // A callback that forked: in the child its thread runs no crdp (the
    // one it ran is abandoned below), so it waits for every crdp's
    // callbacks, the ones it adopts included.
    WORKER_OF.with(|t| t.set(ptr::null()));
    // Nor does a reclaimer's callback that forked (`drain_here`).
    crate::crdp::DRAINING.with(|t| t.set(ptr::null()));
    let new_default = install_default::<F>(all);
    for c in old {
        new_default.adopt(c.abandon_in_child());
    }
    // Heads a handler left for a `call_rcu` it interrupted on a thread
    // that is not in the child: that call never hands them over here.
    if let Some(chain) = take_orphans() {
        new_default.adopt(chain);
    }
}

#[cfg(test)]
mod tests;
