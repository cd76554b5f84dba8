//! The `defer_rcu` family. liburcu keeps a per-thread queue and a defer
//! thread; here `defer_rcu` queues on rcu-reclaim's callback engine, whose
//! workers run `fct(p)` after a grace period, and never blocks.

use std::ffi::c_void;
use std::os::raw::c_int;

use crate::rcu;

/// A deferred function: `void (*fct)(void *p)`.
pub type DeferFunc = unsafe extern "C" fn(*mut c_void);

struct Deferred(DeferFunc, *mut c_void);
// SAFETY: liburcu's contract: `p` is handed over to `fct`, which runs once
// on some thread after a grace period.
unsafe impl Send for Deferred {}

/// Runs `fct(p)` after a grace period.
///
/// # Safety
/// `fct` may be called with `p` on another thread after a grace period.
#[no_mangle]
pub unsafe extern "C" fn urcu_memb_defer_rcu(fct: DeferFunc, p: *mut c_void) {
    let d = Deferred(fct, p);
    rcu().call(move || {
        let d = d;
        // SAFETY: per the contract of `defer_rcu`.
        unsafe { (d.0)(d.1) }
    });
}

/// Accepted for compatibility; always 0 (no per-thread queue is needed).
#[no_mangle]
pub extern "C" fn urcu_memb_defer_register_thread() -> c_int {
    0
}

/// As liburcu, runs what the thread deferred before returning.
#[no_mangle]
pub extern "C" fn urcu_memb_defer_unregister_thread() {
    urcu_memb_defer_barrier_thread();
}

/// Waits until everything deferred before the call, by any thread, has run.
#[no_mangle]
pub extern "C" fn urcu_memb_defer_barrier() {
    let rcu = rcu();
    if rcu.in_read_section() {
        eprintln!("[error] rcu-reclaim-urcu: rcu_defer_barrier() called from within RCU read-side critical section.");
        return;
    }
    let _ = crate::no_unwind(|| rcu.barrier());
}

/// Waits until what this thread deferred has run (here: everything queued
/// before the call, which includes it).
#[no_mangle]
pub extern "C" fn urcu_memb_defer_barrier_thread() {
    urcu_memb_defer_barrier();
}

/// Accepted for compatibility; nothing to tear down.
#[no_mangle]
pub extern "C" fn urcu_memb_defer_exit() {}
