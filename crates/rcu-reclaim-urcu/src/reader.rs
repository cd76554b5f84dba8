//! The read side, grace periods, registration, the polled API and the
//! `urcu_memb_flavor` table.

use std::os::raw::{c_int, c_ulong};

use crate::{die, rcu};

/// Enters a read-side critical section (nestable).
#[no_mangle]
pub extern "C" fn urcu_memb_read_lock() {
    rcu().read_lock_raw();
}

/// Leaves the innermost read-side critical section.
#[no_mangle]
pub extern "C" fn urcu_memb_read_unlock() {
    if !rcu().read_unlock_raw() {
        die("rcu_read_unlock() called outside any read-side critical section (unbalanced unlock)");
    }
}

/// Whether the calling thread is inside a read-side critical section.
#[no_mangle]
pub extern "C" fn urcu_memb_read_ongoing() -> c_int {
    c_int::from(rcu().in_read_section())
}

/// Registers the calling thread as a reader. liburcu requires it before the
/// first `rcu_read_lock`; here threads also register on first use, so the
/// call is optional and idempotent.
#[no_mangle]
pub extern "C" fn urcu_memb_register_thread() {
    rcu().register_thread();
}

/// Unregisters the calling thread (its slot goes back at once; a later
/// `rcu_read_lock` registers it again). Inside a read-side section, which
/// liburcu forbids, it prints an error and does nothing.
#[no_mangle]
pub extern "C" fn urcu_memb_unregister_thread() {
    if !rcu().unregister_thread() {
        eprintln!(
            "[error] rcu-reclaim-urcu: rcu_unregister_thread() called inside a read-side \
             critical section; the thread stays registered"
        );
    }
}

/// Waits until every read-side critical section that began before the call
/// has ended.
#[no_mangle]
pub extern "C" fn urcu_memb_synchronize_rcu() {
    let rcu = rcu();
    if rcu.in_read_section() {
        die("synchronize_rcu() called inside a read-side critical section; it would wait for itself forever");
    }
    rcu.synchronize();
}

/// Explicit initialisation (liburcu's `rcu_init`): creates the domain now.
#[no_mangle]
pub extern "C" fn urcu_memb_init() {
    let _ = rcu();
}

/// liburcu 0.14's `struct urcu_gp_poll_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UrcuGpPollState {
    /// The grace-period sequence value that completes the snapshot.
    pub grace_period_id: c_ulong,
}

const _: () = assert!(
    std::mem::size_of::<c_ulong>() == 8,
    "liburcu's grace_period_id must hold a u64"
);

/// Starts a grace period if needed and returns a snapshot to poll (0.14).
#[no_mangle]
pub extern "C" fn urcu_memb_start_poll_synchronize_rcu() -> UrcuGpPollState {
    UrcuGpPollState {
        grace_period_id: rcu().start_poll().seq() as c_ulong,
    }
}

/// Whether a grace period has elapsed since `state` was taken (0.14).
#[no_mangle]
#[allow(clippy::unnecessary_cast)] // c_ulong is u64 here, not everywhere
pub extern "C" fn urcu_memb_poll_state_synchronize_rcu(state: UrcuGpPollState) -> bool {
    // `unsigned long` is 64 bits on every target the library builds for
    // (see the assertion below).
    rcu().poll_seq(state.grace_period_id as u64)
}

/// A no-op, as in liburcu's memb flavor (quiescent states are for QSBR).
extern "C" fn quiescent_noop() {}

/// liburcu's `struct urcu_atfork`, registered by liburcu-cds's hash table.
#[repr(C)]
pub struct UrcuAtfork {
    pub(crate) before_fork: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
    pub(crate) after_fork_parent: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
    pub(crate) after_fork_child: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
    pub(crate) priv_: *mut std::ffi::c_void,
}

/// liburcu's `struct rcu_flavor_struct` (urcu/flavor.h).
#[repr(C)]
pub struct RcuFlavorStruct {
    read_lock: extern "C" fn(),
    read_unlock: extern "C" fn(),
    read_ongoing: extern "C" fn() -> c_int,
    read_quiescent_state: extern "C" fn(),
    update_call_rcu: unsafe extern "C" fn(*mut crate::call_rcu::RcuHead, crate::call_rcu::RcuFunc),
    update_synchronize_rcu: extern "C" fn(),
    update_defer_rcu: unsafe extern "C" fn(crate::defer::DeferFunc, *mut std::ffi::c_void),
    thread_offline: extern "C" fn(),
    thread_online: extern "C" fn(),
    register_thread: extern "C" fn(),
    unregister_thread: extern "C" fn(),
    barrier: extern "C" fn(),
    register_rculfhash_atfork: unsafe extern "C" fn(*mut UrcuAtfork),
    unregister_rculfhash_atfork: unsafe extern "C" fn(*mut UrcuAtfork),
}

/// The memb flavor's function table, for liburcu-cds (`rcu_flavor_memb`).
#[no_mangle]
pub static urcu_memb_flavor: RcuFlavorStruct = RcuFlavorStruct {
    read_lock: urcu_memb_read_lock,
    read_unlock: urcu_memb_read_unlock,
    read_ongoing: urcu_memb_read_ongoing,
    read_quiescent_state: quiescent_noop,
    update_call_rcu: crate::call_rcu::urcu_memb_call_rcu,
    update_synchronize_rcu: urcu_memb_synchronize_rcu,
    update_defer_rcu: crate::defer::urcu_memb_defer_rcu,
    thread_offline: quiescent_noop,
    thread_online: quiescent_noop,
    register_thread: urcu_memb_register_thread,
    unregister_thread: urcu_memb_unregister_thread,
    barrier: crate::call_rcu::urcu_memb_barrier,
    register_rculfhash_atfork: crate::fork::urcu_memb_register_rculfhash_atfork,
    unregister_rculfhash_atfork: crate::fork::urcu_memb_unregister_rculfhash_atfork,
};
