//! The read side, grace periods, registration and the polled API.

use std::os::raw::c_int;

use crate::{die, rcu};

/// Enters a read-side critical section (nestable).
#[no_mangle]
pub extern "C" fn urcu_memb_read_lock() {
    // On a registered thread, the section is liburcu's, in the thread's
    // reader block, as an inlined one (`_LGPL_SOURCE`) is: the two mix.
    if crate::lgpl::read_lock() {
        return;
    }
    rcu().read_lock_raw();
}

/// Leaves the innermost read-side critical section.
#[no_mangle]
pub extern "C" fn urcu_memb_read_unlock() {
    if crate::lgpl::read_unlock() || rcu().read_unlock_raw() {
        return;
    }
    if crate::lgpl::registered() {
        // liburcu's counter underflows: the thread seems inside a section
        // for ever, and every later grace period hangs.
        die(
            "rcu_read_unlock() called outside any read-side critical section (unbalanced \
             unlock); every rcu_read_unlock() must match an earlier rcu_read_lock() on the same \
             thread",
        );
    }
    // On a thread that never registered, liburcu's counter underflows
    // where no grace period looks: the program goes on. So does this one.
    eprintln!(
        "[error] rcu-reclaim-urcu: rcu_read_unlock() called outside any read-side critical \
         section (unbalanced unlock) on an unregistered thread; ignored. Every \
         rcu_read_unlock() must match an earlier rcu_read_lock() on the same thread."
    );
}

/// Whether the calling thread is inside a read-side critical section: as
/// liburcu's, its nesting depth (0 outside).
#[no_mangle]
pub extern "C" fn urcu_memb_read_ongoing() -> c_int {
    let depth = crate::lgpl::depth().saturating_add(rcu().read_depth());
    match c_int::try_from(depth) {
        // A section still open after the thread's registration is gone
        // (in a thread-local's destructor) has no depth to give.
        Ok(0) => c_int::from(crate::in_read_section()),
        Ok(depth) => depth,
        Err(_) => c_int::MAX,
    }
}

/// Registers the calling thread as a reader. liburcu requires it before the
/// first `rcu_read_lock`; here threads also register on first use, so the
/// call is optional and idempotent, except in a program built with
/// `_LGPL_SOURCE`, whose inlined read side the domain sees only on
/// threads registered this way (as with liburcu). A second call on a
/// registered thread (liburcu asserts) is reported and ignored, and so is
/// the `rcu_unregister_thread` that pairs with it.
#[no_mangle]
pub extern "C" fn urcu_memb_register_thread() {
    // Between `call_rcu_before_fork` and its `after_fork_*` (where liburcu
    // registers as anywhere), with the domain let go for the call.
    rcu_reclaim_urcu_common::keeping_errno(|| {
        rcu_reclaim_urcu_common::fork::domain_resumed_for::<crate::Memb, _>(|| {
            rcu_reclaim_urcu_common::with_signals_blocked(register_thread)
        })
    });
}

/// `urcu_memb_register_thread`'s body, run with signals blocked.
fn register_thread() {
    if crate::lgpl::registered() {
        // liburcu asserts (or, built without assertions, corrupts its
        // registry).
        eprintln!(
            "[error] rcu-reclaim-urcu: rcu_register_thread() called on a thread that is already \
             registered; ignored (call rcu_unregister_thread() before registering again)"
        );
        rcu_reclaim_urcu_common::ignored_registrations::ignored();
        return;
    }
    // A registration in a pthread key destructor, after the thread's exit
    // ended the one before: its own unregistration pairs with it.
    let _ = crate::lgpl::take_exited_registered();
    rcu().register_thread();
    crate::lgpl::attach();
    // Sets up the thread-locals that `call_rcu`'s push-back looks at
    // (`in_read_section`) here, with signals blocked: set up first inside a
    // signal handler, which a held-back `call_rcu` may run in, their
    // destructors' registration called `calloc`, and hung for good when
    // the handler had interrupted `malloc`.
    let _ = crate::in_read_section();
}

/// Unregisters the calling thread (its slot goes back at once; a later
/// `rcu_read_lock` registers it again). Inside a read-side section, which
/// liburcu forbids, it prints an error and does nothing.
#[no_mangle]
pub extern "C" fn urcu_memb_unregister_thread() {
    rcu_reclaim_urcu_common::keeping_errno(|| {
        rcu_reclaim_urcu_common::fork::domain_resumed_for::<crate::Memb, _>(|| {
            rcu_reclaim_urcu_common::with_signals_blocked(unregister_thread)
        })
    });
}

/// `urcu_memb_unregister_thread`'s body, run with signals blocked.
fn unregister_thread() {
    if rcu_reclaim_urcu_common::ignored_registrations::take_one() {
        return;
    }
    if !crate::lgpl::registered() && crate::lgpl::take_exited_registered() {
        // In a pthread key destructor of a thread registered at its exit,
        // which ended the registration (the domain's thread-locals were
        // destroyed first): liburcu's thread is still registered there,
        // and this is its unregistration. A section taken since then
        // registered it implicitly: its slot goes back.
        let _ = rcu().unregister_thread();
        return;
    }
    if !crate::lgpl::registered() && !rcu().in_read_section() {
        // liburcu asserts (or unlinks a node it never linked). A thread
        // registered implicitly by `rcu_read_lock` still lets its slot go.
        eprintln!(
            "[error] rcu-reclaim-urcu: rcu_unregister_thread() called on a thread that is not \
             registered (no rcu_register_thread() before it); ignored"
        );
        let _ = rcu().unregister_thread();
        return;
    }
    if crate::lgpl::in_section() || !rcu().unregister_thread() {
        eprintln!(
            "[error] rcu-reclaim-urcu: rcu_unregister_thread() called inside a read-side \
             critical section; the thread stays registered"
        );
        return;
    }
    crate::lgpl::unregistered();
}

/// Waits until every read-side critical section that began before the call
/// has ended.
#[no_mangle]
pub extern "C" fn urcu_memb_synchronize_rcu() {
    // Between `call_rcu_before_fork` and its `after_fork_*`, where
    // liburcu's grace periods run (its hooks pause only the call_rcu
    // threads), the domain is let go for the wait (before: a panic in the
    // domain, which held it stopped, and an abort).
    rcu_reclaim_urcu_common::keeping_errno(|| {
        rcu_reclaim_urcu_common::fork::domain_resumed_for::<crate::Memb, _>(synchronize_rcu)
    });
}

/// `urcu_memb_synchronize_rcu`'s body.
fn synchronize_rcu() {
    // One call: with no reader registered it completes a grace period at
    // once without looking at thread-locals; the section check (refusal
    // here) is made only when a reader is registered.
    if crate::lgpl::in_section() {
        die_waiting_for_itself();
    }
    if rcu().try_synchronize() {
        return;
    }
    // Inside a section of a thread that never registered: liburcu does not
    // wait for such a thread (its section protects nothing), and returns.
    let depth = rcu().read_depth();
    if crate::lgpl::registered() || depth == 0 {
        die_waiting_for_itself();
    }
    eprintln!(
        "[error] rcu-reclaim-urcu: synchronize_rcu() called inside rcu_read_lock() on a thread \
         that never called rcu_register_thread(), whose section liburcu does not protect: the \
         section ends for the wait and starts again after it, so what it read before may be \
         freed. Call rcu_read_unlock() first, and register reader threads."
    );
    rcu_reclaim_urcu_common::with_raw_sections_ended(rcu(), depth, || rcu().synchronize());
}

/// `synchronize_rcu` inside the caller's own section, which liburcu turns
/// into a deadlock.
fn die_waiting_for_itself() -> ! {
    die(
        "synchronize_rcu() called inside a read-side critical section; it would wait for itself \
         forever: call it after the section's rcu_read_unlock(), or use call_rcu()",
    )
}

/// Explicit initialisation (liburcu's `rcu_init`): creates the domain now.
#[no_mangle]
pub extern "C" fn urcu_memb_init() {
    let _ = rcu();
}

pub use rcu_reclaim_urcu_common::poll::UrcuGpPollState;

/// Starts a grace period if needed and returns a snapshot to poll (0.14).
#[no_mangle]
pub extern "C" fn urcu_memb_start_poll_synchronize_rcu() -> UrcuGpPollState {
    rcu_reclaim_urcu_common::keeping_errno(|| rcu_reclaim_urcu_common::poll::start(rcu()))
}

/// Whether a grace period has elapsed since `state` was taken (0.14).
#[no_mangle]
pub extern "C" fn urcu_memb_poll_state_synchronize_rcu(state: UrcuGpPollState) -> bool {
    rcu_reclaim_urcu_common::poll::done(rcu(), state)
}
