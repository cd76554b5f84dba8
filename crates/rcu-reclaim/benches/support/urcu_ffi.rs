//! The C shim's functions (`csrc/urcu_shim.c`, built with the `liburcu`
//! feature against Debian's liburcu-dev): liburcu's memb flavor with its
//! read side inlined into the shim's loops. Declared once; included with
//! `#[path]` by the benches and examples that compare with liburcu.

#![allow(dead_code)]

use std::os::raw::c_int;
use std::sync::atomic::AtomicI32;

extern "C" {
    pub fn shim_register_thread();
    pub fn shim_unregister_thread();
    pub fn shim_read_pairs(n: u64) -> u64;
    pub fn shim_read_pairs_nested(n: u64) -> u64;
    pub fn shim_read_deref_pairs(n: u64, slot: *const *mut u64) -> u64;
    pub fn shim_read_once(slot: *const *mut u64) -> u64;
    pub fn shim_busy_reader(stop: *const AtomicI32, ready: *const AtomicI32, work: u32) -> u64;
    pub fn shim_synchronize();
    pub fn shim_synchronize_n(n: u64);
    pub fn shim_has_sys_membarrier() -> c_int;
}
