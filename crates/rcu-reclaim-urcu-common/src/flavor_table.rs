//! liburcu's `struct rcu_flavor_struct` (`urcu/flavor.h`), the table of a
//! flavor's functions that liburcu-cds calls through. Each drop-in fills
//! one (`urcu_memb_flavor`, `urcu_qsbr_flavor`).

use std::ffi::c_void;
use std::os::raw::c_int;

use crate::poll::UrcuGpPollState;
use crate::{DeferFunc, RcuFunc, RcuHead, UrcuAtfork};

/// liburcu's `struct rcu_flavor_struct`, 0.14's layout: 0.13's fourteen
/// entries and the polled pair after them. A program built against 0.14's
/// headers calls the pair through the table; one built against 0.13's
/// reads only the first fourteen (as with liburcu 0.14 itself, a non-PIE
/// 0.13 binary that copies the table is told by the dynamic linker that
/// the symbol grew).
#[repr(C)]
pub struct RcuFlavorStruct {
    /// `rcu_read_lock`.
    pub read_lock: extern "C" fn(),
    /// `rcu_read_unlock`.
    pub read_unlock: extern "C" fn(),
    /// `rcu_read_ongoing`.
    pub read_ongoing: extern "C" fn() -> c_int,
    /// `rcu_quiescent_state` (a no-op but for QSBR).
    pub read_quiescent_state: extern "C" fn(),
    /// `call_rcu`.
    pub update_call_rcu: unsafe extern "C" fn(*mut RcuHead, Option<RcuFunc>),
    /// `synchronize_rcu`.
    pub update_synchronize_rcu: extern "C" fn(),
    /// `defer_rcu`.
    pub update_defer_rcu: unsafe extern "C" fn(Option<DeferFunc>, *mut c_void),
    /// `rcu_thread_offline` (a no-op but for QSBR).
    pub thread_offline: extern "C" fn(),
    /// `rcu_thread_online` (a no-op but for QSBR).
    pub thread_online: extern "C" fn(),
    /// `rcu_register_thread`.
    pub register_thread: extern "C" fn(),
    /// `rcu_unregister_thread`.
    pub unregister_thread: extern "C" fn(),
    /// `rcu_barrier`.
    pub barrier: extern "C" fn(),
    /// `urcu_<flavor>_register_rculfhash_atfork`.
    pub register_rculfhash_atfork: unsafe extern "C" fn(*mut UrcuAtfork),
    /// `urcu_<flavor>_unregister_rculfhash_atfork`.
    pub unregister_rculfhash_atfork: unsafe extern "C" fn(*mut UrcuAtfork),
    /// `start_poll_synchronize_rcu` (0.14).
    pub update_start_poll_synchronize_rcu: extern "C" fn() -> UrcuGpPollState,
    /// `poll_state_synchronize_rcu` (0.14).
    pub update_poll_state_synchronize_rcu: extern "C" fn(UrcuGpPollState) -> bool,
}

const _: () = assert!(std::mem::size_of::<RcuFlavorStruct>() == 16 * 8);
