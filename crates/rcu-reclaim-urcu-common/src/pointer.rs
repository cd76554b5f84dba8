//! liburcu's out-of-line pointer helpers (`urcu/pointer.h` without
//! `_LGPL_SOURCE`), with the same ordering: publication is a release store,
//! exchanges are full barriers. [`export_flavor!`](crate::export_flavor)
//! exports them as `rcu_dereference_sym` and the rest.

use std::ffi::c_void;
use std::sync::atomic::{compiler_fence, AtomicPtr, Ordering};

/// `rcu_dereference`: the caller already loaded `p`; this orders what the
/// caller reads through it after the load (a dependency on every
/// architecture Rust supports, so a compiler fence suffices).
pub fn dereference(p: *mut c_void) -> *mut c_void {
    compiler_fence(Ordering::Acquire);
    p
}

/// `rcu_set_pointer`: publishes `v` in `*p` (release); returns `v`.
///
/// # Safety
/// `p` points to a pointer-sized, aligned word that is only accessed
/// atomically or under RCU's rules while this runs.
pub unsafe fn set_pointer(p: *mut *mut c_void, v: *mut c_void) -> *mut c_void {
    // SAFETY: per the contract, `p` is valid and aligned for an atomic access.
    unsafe { AtomicPtr::from_ptr(p) }.store(v, Ordering::Release);
    v
}

/// `rcu_xchg_pointer`: stores `v` in `*p` and returns the old value (a
/// full barrier).
///
/// # Safety
/// As [`set_pointer`].
pub unsafe fn xchg_pointer(p: *mut *mut c_void, v: *mut c_void) -> *mut c_void {
    // SAFETY: per the contract.
    unsafe { AtomicPtr::from_ptr(p) }.swap(v, Ordering::SeqCst)
}

/// `rcu_cmpxchg_pointer`: stores `new` in `*p` if it holds `old`; returns
/// the value found (a full barrier).
///
/// # Safety
/// As [`set_pointer`].
pub unsafe fn cmpxchg_pointer(
    p: *mut *mut c_void,
    old: *mut c_void,
    new: *mut c_void,
) -> *mut c_void {
    // SAFETY: per the contract.
    match unsafe { AtomicPtr::from_ptr(p) }.compare_exchange(
        old,
        new,
        Ordering::SeqCst,
        Ordering::SeqCst,
    ) {
        Ok(v) | Err(v) => v,
    }
}
