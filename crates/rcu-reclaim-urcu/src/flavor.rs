//! `urcu_memb_flavor`: liburcu's table of the flavor's functions, which
//! liburcu-cds calls through. The top of the crate: it names every part.

use std::os::raw::c_int;

use crate::call_rcu::{urcu_memb_barrier, urcu_memb_call_rcu, RcuFunc, RcuHead};
use crate::defer::{urcu_memb_defer_rcu, DeferFunc};
use crate::fork::{
    urcu_memb_register_rculfhash_atfork, urcu_memb_unregister_rculfhash_atfork, UrcuAtfork,
};
use crate::reader::{
    urcu_memb_read_lock, urcu_memb_read_ongoing, urcu_memb_read_unlock, urcu_memb_register_thread,
    urcu_memb_synchronize_rcu, urcu_memb_unregister_thread,
};

/// A no-op, as in liburcu's memb flavor (quiescent states are for QSBR).
extern "C" fn quiescent_noop() {}

/// liburcu's `struct rcu_flavor_struct` (urcu/flavor.h).
#[repr(C)]
pub struct RcuFlavorStruct {
    read_lock: extern "C" fn(),
    read_unlock: extern "C" fn(),
    read_ongoing: extern "C" fn() -> c_int,
    read_quiescent_state: extern "C" fn(),
    update_call_rcu: unsafe extern "C" fn(*mut RcuHead, RcuFunc),
    update_synchronize_rcu: extern "C" fn(),
    update_defer_rcu: unsafe extern "C" fn(DeferFunc, *mut std::ffi::c_void),
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
    update_call_rcu: urcu_memb_call_rcu,
    update_synchronize_rcu: urcu_memb_synchronize_rcu,
    update_defer_rcu: urcu_memb_defer_rcu,
    thread_offline: quiescent_noop,
    thread_online: quiescent_noop,
    register_thread: urcu_memb_register_thread,
    unregister_thread: urcu_memb_unregister_thread,
    barrier: urcu_memb_barrier,
    register_rculfhash_atfork: urcu_memb_register_rculfhash_atfork,
    unregister_rculfhash_atfork: urcu_memb_unregister_rculfhash_atfork,
};
