//! Heads on their way between queues: those a signal handler queued while
//! its thread held a lock (`ORPHANS`), and the hand-offs (a freed crdp's
//! queue to the default, orphans pushed) that `call_rcu_before_fork` waits
//! for and holds across the fork, so that no chain is in flight in a child.

use super::*;

/// Heads queued by a `call_rcu` made from a signal handler that interrupted
/// a `call_rcu` or `rcu_barrier` of its own thread, which may hold a lock
/// the normal path takes (newest first, linked through `next`): the
/// interrupted call hands them to the default crdp before it returns.
static ORPHANS: AtomicPtr<RcuHead> = AtomicPtr::new(ptr::null_mut());

/// Pushes `head` (its `func` set) on [`ORPHANS`]: lock-free, so safe in a
/// signal handler.
///
/// # Safety
/// `head` is valid and the caller's until it is invoked.
pub(crate) unsafe fn push_orphan(head: *mut RcuHead) {
    let mut top = ORPHANS.load(Ordering::Relaxed);
    loop {
        // SAFETY: the head is the caller's until the exchange publishes it.
        unsafe { (*head).next = top };
        match ORPHANS.compare_exchange_weak(top, head, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(t) => top = t,
        }
    }
}

/// Whether [`ORPHANS`] holds heads.
#[inline]
pub(crate) fn has_orphans() -> bool {
    !ORPHANS.load(Ordering::Acquire).is_null()
}

/// Takes every head of [`ORPHANS`], if any.
pub(crate) fn take_orphans() -> Option<Chain> {
    // Every call_rcu asks on its way out: a load of a line no one writes
    // but a signal handler, not a swap that every thread's calls would
    // bounce between their CPUs.
    if !has_orphans() {
        return None;
    }
    let newest = ORPHANS.swap(ptr::null_mut(), Ordering::AcqRel);
    if newest.is_null() {
        return None;
    }
    // SAFETY: the swap made the chain ours alone; each head is valid until
    // invoked (the C caller's promise).
    Some(unsafe { chain_of(newest, 0) })
}

/// Runs `f`, a wait for the `defer_rcu` flush lock, with the calling
/// thread's crdp (if it is a crdp's thread, inside a callback) marked as
/// waiting for it: `call_rcu_before_fork` holds that lock while it waits
/// for the crdp threads to pause, and lets it go for a callback waiting
/// for it (see [`CallRcuData::pause`]).
pub(crate) fn waiting_for_flush<R>(f: impl FnOnce() -> R) -> R {
    let me = WORKER_OF.with(|t| t.get());
    if me.is_null() {
        return f();
    }
    // SAFETY: the calling thread's own crdp, which its thread holds a
    // reference to as long as it runs.
    let crdp = unsafe { &*me };
    crdp.set_waiting_for_flush(true);
    let r = f();
    crdp.set_waiting_for_flush(false);
    r
}

/// Held while a chain of heads is between two queues (taken from the
/// orphan stack or a freed crdp, not yet pushed on another), and by
/// `call_rcu_before_fork` across `fork()`, taken last: a chain in a
/// thread's hands at the fork is in no queue the child can see, and the
/// thread that held it is not in the child (10 heads of 350,000 were lost
/// so, 1 run in 6 of a C stress that forks every 3 ms beside signal
/// handlers queueing). A holder takes only the two crdps' queue and state
/// locks, and waits for no grace period.
static HANDOFF: Mutex<()> = Mutex::new(());
/// Set while `call_rcu_before_fork` takes or holds [`HANDOFF`]: a
/// `call_rcu` that finds it held then leaves its chain where it is
/// ([`try_handing_off`]).
static FORKING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread holds [`HANDOFF`] (no destructor).
    static HANDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread may run a hand-off without [`HANDOFF`]: it
/// holds it already (the forking thread inside its fork window, or a
/// signal handler that interrupted a hand-off), and would wait for itself.
fn holds_handoffs() -> bool {
    crate::fork_window::forking_here() || HANDING.try_with(|h| h.get()).unwrap_or(false)
}

/// [`HANDOFF`] held by this thread, flagged in [`HANDING`].
struct Handing(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Handing {
    fn new(held: MutexGuard<'static, ()>) -> Handing {
        let _ = HANDING.try_with(|h| h.set(true));
        Handing(held)
    }
}

impl Drop for Handing {
    fn drop(&mut self) {
        let _ = HANDING.try_with(|h| h.set(false));
    }
}

/// [`HANDOFF`] for the calling thread, once no other hand-off holds it;
/// `None` while a fork holds it or waits to take it.
fn lock_unless_forking() -> Option<Handing> {
    loop {
        match HANDOFF.try_lock() {
            Ok(held) => return Some(Handing::new(held)),
            Err(TryLockError::Poisoned(p)) => return Some(Handing::new(p.into_inner())),
            Err(TryLockError::WouldBlock) => {
                // SeqCst: `hold_handoffs` sets it before it waits for the
                // lock, so no caller waits for a fork it cannot see.
                if FORKING.load(Ordering::SeqCst) {
                    return None;
                }
                std::thread::yield_now();
            }
        }
    }
}

/// Runs `f`, which moves a chain of heads from one queue to another, with
/// [`HANDOFF`] held: never across a fork. Waits for a fork under way,
/// except `in_section` (inside a read-side section: a free made there),
/// where the fork's thread may wait for this very section (a
/// `synchronize_rcu` in its window): `f` then runs without the lock, and
/// a child forked while it runs may miss that chain. For calls that a
/// signal handler does not make (a free, a barrier's sweep).
pub(crate) fn handing_off<R>(in_section: bool, f: impl FnOnce() -> R) -> R {
    if holds_handoffs() {
        return f();
    }
    let _held = if in_section {
        lock_unless_forking()
    } else {
        Some(Handing::new(lock(&HANDOFF)))
    };
    f()
}

/// [`handing_off`] for `call_rcu`, which a signal handler may make while
/// its thread holds a lock `fork()` needs (`malloc`'s): while a fork
/// holds [`HANDOFF`] it runs nothing and returns `false` (the chain stays
/// where it is: the orphan stack, which the fork's child takes over and
/// its parent hands on after it); while another hand-off does, it waits.
/// Its caller is marked busy (`call_rcu`'s `Busy`): a handler that
/// interrupts the hand-off queues aside instead of waiting for the lock
/// its own thread holds.
pub(crate) fn try_handing_off(f: impl FnOnce()) -> bool {
    if holds_handoffs() {
        f();
        return true;
    }
    match lock_unless_forking() {
        Some(_held) => {
            f();
            true
        }
        None => false,
    }
}

/// Waits until no chain is between two queues and no fork holds the
/// hand-offs (for `rcu_barrier`, offline, outside any section).
pub(crate) fn wait_for_handoffs() {
    if !holds_handoffs() {
        drop(lock(&HANDOFF));
    }
}

/// [`HANDOFF`], held by `call_rcu_before_fork` across the fork; dropped
/// by the `after_fork_*` hook.
pub(crate) struct HandoffsHeld(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for HandoffsHeld {
    fn drop(&mut self) {
        // Before the lock is let go: a `call_rcu` that then finds it held
        // waits a moment for it instead of leaving its chain aside.
        FORKING.store(false, Ordering::SeqCst);
    }
}

/// Takes [`HANDOFF`] for a fork (see [`HandoffsHeld`]).
pub(crate) fn hold_handoffs() -> HandoffsHeld {
    FORKING.store(true, Ordering::SeqCst);
    HandoffsHeld(lock(&HANDOFF))
}
