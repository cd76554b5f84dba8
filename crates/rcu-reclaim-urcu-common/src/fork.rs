//! liburcu's fork hooks (`call_rcu_before_fork`, `..._after_fork_parent`,
//! `..._after_fork_child`) and the registration of liburcu-cds's own.
//!
//! Before the fork the `call_rcu_data` list is locked, every crdp thread
//! and the domain's background threads are parked where they hold nothing
//! ([`rcu_reclaim::Rcu::prepare_fork`]), the `defer_rcu` flush lock and
//! queue list are held (no flush under way), and so is the hand-off lock
//! (no chain of heads is between two queues: `crdp::handing_off`); after
//! it, the parent resumes them all, and the child rebuilds: the domain
//! starts new threads for what was queued before the fork, a new default
//! crdp (with a live thread) takes over every callback the old crdps held,
//! as in liburcu, and a new defer thread drains the queues of the threads
//! the child lacks.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard};

use rcu_reclaim::fork::ForkGuard;

use crate::call_rcu::{self, CallRcuData};
use crate::crdp::all;
use crate::fork_window::{self, forking_here};
use crate::{defer, Flavor};

/// liburcu's `struct urcu_atfork`, registered by liburcu-cds's hash table.
#[repr(C)]
pub struct UrcuAtfork {
    pub(crate) before_fork: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
    pub(crate) after_fork_parent: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
    pub(crate) after_fork_child: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
    pub(crate) priv_: *mut std::ffi::c_void,
}

struct Held {
    /// The process that called `before_fork` (the parent, once forked).
    pid: u32,
    // Dropped in this order.
    domain: Option<ForkGuard<'static>>,
    defer: Option<defer::ForkHeld>,
    all: MutexGuard<'static, Vec<Arc<CallRcuData>>>,
    /// No chain of heads is between two queues (`crdp::handing_off`).
    handoffs: crate::crdp::HandoffsHeld,
}

thread_local! {
    /// What `before_fork` holds until the matching `after_fork_*` (the same
    /// thread: the one that forks).
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Runs `f` (`synchronize_rcu`, `rcu_register_thread`, ...: a call that
/// needs the domain running), on a thread between its
/// `call_rcu_before_fork` and the matching `after_fork_*`, with the domain
/// let go for the call and stopped again after it, as liburcu's grace
/// periods run there (its hooks stop only the call_rcu threads); `f()`
/// elsewhere. The call_rcu threads and the `defer_rcu` locks stay held.
pub fn domain_resumed_for<F: Flavor, R>(f: impl FnOnce() -> R) -> R {
    if !forking_here() {
        return f();
    }
    let guard = HELD.with(|h| {
        let mut h = h.try_borrow_mut().ok()?;
        let held = h.as_mut()?;
        if held.pid != std::process::id() {
            // The child, before `after_fork_child`: the domain's threads
            // of the parent are not here to let go.
            crate::die(
                "a call that waits for a grace period (synchronize_rcu, rcu_register_thread, \
                 ...) made in the child of fork() before call_rcu_after_fork_child(): the \
                 domain is still stopped for the fork. Call call_rcu_after_fork_child() first",
            );
        }
        held.domain.take()
    });
    let Some(guard) = guard else {
        return f();
    };
    guard.parent();
    let r = f();
    let again = stop_domain_for_fork::<F>(false);
    HELD.with(|h| {
        if let Some(held) = h.borrow_mut().as_mut() {
            held.domain = again;
        }
    });
    r
}

/// Says that `fork()` is prepared inside a read-side section.
fn say_fork_in_section() {
    eprintln!(
        "[error] rcu-reclaim-urcu: fork() prepared inside a read-side critical section; \
         the child may not be able to run grace periods"
    );
}

/// Stops the flavor's domain for `fork()` (`Rcu::prepare_fork`), unless
/// the caller is inside a read-side section, where it cannot (it says so
/// unless `said`, and the fork goes on with the domain running).
fn stop_domain_for_fork<F: Flavor>(said: bool) -> Option<ForkGuard<'static>> {
    if F::in_read_section() {
        if !said {
            say_fork_in_section();
        }
        None
    } else {
        crate::no_unwind(|| F::rcu().prepare_fork())
    }
}

/// liburcu-cds's registered hooks and their reference count.
struct Atfork(*mut UrcuAtfork, usize);
// SAFETY: the registered struct is owned by liburcu-cds for as long as it is
// registered, and only read here.
unsafe impl Send for Atfork {}
static ATFORK: Mutex<Atfork> = Mutex::new(Atfork(std::ptr::null_mut(), 0));

fn atfork(pick: impl Fn(&UrcuAtfork) -> Option<unsafe extern "C" fn(*mut std::ffi::c_void)>) {
    let a = ATFORK.lock().unwrap_or_else(|p| p.into_inner()).0;
    if a.is_null() {
        return;
    }
    // SAFETY: registered and not unregistered (see `Atfork`).
    let a = unsafe { &*a };
    if let Some(f) = pick(a) {
        // SAFETY: liburcu-cds's hook with its own private pointer.
        unsafe { f(a.priv_) };
    }
}

/// `call_rcu_before_fork`: quiesces RCU before `fork()` (for
/// `pthread_atfork` or a manual call).
pub fn before_fork<F: Flavor>() {
    if forking_here() {
        // liburcu deadlocks on its own call_rcu lock, without a word.
        eprintln!(
            "[error] rcu-reclaim-urcu: call_rcu_before_fork() called again before \
             call_rcu_after_fork_parent() or call_rcu_after_fork_child(); ignored (each \
             before_fork must be followed by one of them)"
        );
        return;
    }
    // Process-wide state set up once, on first use, may be half set up by
    // another thread right now; the child, lacking that thread, would wait
    // for it for ever (its call_rcu thread registers, which uses it). Wait
    // here until it is done.
    let _ = F::rcu();
    let _ = crate::crdp::per_cpu();
    F::before_fork();
    // On a call_rcu thread (a callback that forks, the hooks installed by
    // `pthread_atfork`), that thread's crdp is paused where it is: in the
    // callback, holding none of its locks but its batch order, which the
    // forking thread keeps in the child (liburcu waits for it for ever).
    // So is the crdp whose batch the thread runs for a reclaimer (a
    // callback of `rcu_reclaim_run_callbacks` that forks): it holds that
    // crdp's batch order, which the crdp's own thread waits for (to pause,
    // it must first take its batch: before, the fork waited for ever).
    let me = crate::crdp::invoking_here();
    // Said before the pauses below: a call_rcu thread whose batch waits
    // for a grace period this section holds up never pauses, and the
    // caller waits for it for ever (as liburcu's does), silently before.
    let in_section = F::in_read_section();
    if in_section {
        say_fork_in_section();
    }
    // Waits for flushes and batches under way, which wait for grace periods.
    let (flush, all) = F::offline_while(|| loop {
        let flush = defer::before_fork();
        let all = all();
        atfork(|a| a.before_fork);
        // A crdp thread whose callback waits for the flush lock, held here,
        // cannot pause (liburcu's hooks take no defer lock, and its
        // callbacks may flush): everything is let go until the callback
        // has the lock, then taken again.
        let Some(stuck) = all
            .iter()
            .find(|c| !std::ptr::eq(Arc::as_ptr(c), me) && !c.pause(in_section))
            .cloned()
        else {
            break (flush, all);
        };
        all.iter().for_each(|c| c.resume());
        atfork(|a| a.after_fork_parent);
        drop(all);
        drop(flush);
        stuck.wait_not_waiting_for_flush();
    });
    let defer = flush.map(defer::ForkHeld::new);
    let domain = stop_domain_for_fork::<F>(in_section);
    // Last: a thread handing a chain over waits for nothing held above.
    let handoffs = crate::crdp::hold_handoffs();
    let pid = std::process::id();
    HELD.with(|h| {
        *h.borrow_mut() = Some(Held {
            pid,
            domain,
            defer,
            all,
            handoffs,
        })
    });
    fork_window::enter();
}

/// What `before_fork` holds on this thread, taken for an `after_fork_*`.
fn take_held() -> Option<Held> {
    let held = HELD.with(|h| h.borrow_mut().take());
    if held.is_some() {
        fork_window::leave();
    }
    held
}

/// `call_rcu_after_fork_parent`: resumes RCU in the parent after `fork()`.
pub fn after_fork_parent<F: Flavor>() {
    let Some(held) = take_held() else {
        eprintln!(
            "[error] rcu-reclaim-urcu: call_rcu_after_fork_parent() without call_rcu_before_fork()"
        );
        return;
    };
    if let Some(d) = held.domain {
        d.parent();
    }
    if let Some(d) = held.defer {
        d.parent();
    }
    held.all.iter().for_each(|c| c.resume());
    atfork(|a| a.after_fork_parent);
    drop(held.all);
    drop(held.handoffs);
    // Heads a handler's `call_rcu` left aside while the fork held the
    // hand-offs (see `crdp::try_handing_off`).
    call_rcu::deliver_orphans_after_fork::<F>();
    F::after_fork();
}

/// `call_rcu_after_fork_child`: makes RCU and call_rcu usable in the child
/// after `fork()`: callbacks queued before the fork still run, new ones
/// work.
pub fn after_fork_child<F: Flavor>() {
    let Some(mut held) = take_held() else {
        eprintln!(
            "[error] rcu-reclaim-urcu: call_rcu_after_fork_child() without call_rcu_before_fork()"
        );
        return;
    };
    if let Some(d) = held.domain.take() {
        d.child();
    }
    call_rcu::rebuild_in_child::<F>(&mut held.all);
    if let Some(d) = held.defer.take() {
        d.child::<F>();
    }
    drop(held.all);
    atfork(|a| a.after_fork_child);
    F::after_fork();
}

/// Registers liburcu-cds's fork hooks (reference counted, as liburcu).
///
/// # Safety
/// `atfork` stays valid until unregistered.
pub unsafe fn register_rculfhash_atfork(atfork: *mut UrcuAtfork) {
    let mut a = ATFORK.lock().unwrap_or_else(|p| p.into_inner());
    if a.1 == 0 {
        a.0 = atfork;
    }
    a.1 += 1;
}

/// Drops one registration of liburcu-cds's fork hooks.
///
/// # Safety
/// Pairs with a registration.
pub unsafe fn unregister_rculfhash_atfork(_atfork: *mut UrcuAtfork) {
    let mut a = ATFORK.lock().unwrap_or_else(|p| p.into_inner());
    a.1 = a.1.saturating_sub(1);
    if a.1 == 0 {
        a.0 = std::ptr::null_mut();
    }
}
