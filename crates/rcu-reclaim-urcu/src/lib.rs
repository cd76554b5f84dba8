//! # rcu-reclaim-urcu
//!
//! A drop-in for liburcu's *memb* flavor (`liburcu-memb.so.8`), backed by
//! rcu-reclaim, so C and C++ programs built against liburcu get
//! pressure-aware reclamation by relinking, or without relinking through
//! `LD_LIBRARY_PATH`.
//!
//! The library exports what a program compiled against liburcu 0.13's
//! headers *without* `_LGPL_SOURCE` calls for the memb flavor (the read
//! side, `synchronize_rcu`, `call_rcu` and its `call_rcu_data` family,
//! `rcu_barrier`, the fork hooks, the `defer_rcu` family, the pointer
//! helpers, the `urcu_memb_flavor` table) plus liburcu 0.14's polled grace
//! periods, and, in `include/rcu_reclaim.h`, what liburcu lacks: pressure
//! signals, the backlog in callbacks and bytes, `run_callbacks` for a
//! reclaimer, and statistics as JSON.
//!
//! Everything runs on the process-wide domain [`rcu_reclaim::Rcu::global`].
//! Programs built with `_LGPL_SOURCE` inline liburcu's read side and reach
//! into its private TLS block; they cannot use this library.
//!
//! Every function here is called from C: none unwinds. Misuse that liburcu
//! reports and survives (`rcu_barrier` inside a read-side section) prints an
//! `[error]` line and returns; misuse that would deadlock or corrupt
//! (`synchronize_rcu` inside a section, an unbalanced `rcu_read_unlock`)
//! prints the reason and aborts.

mod call_rcu;
mod crdp;
mod defer;
mod ext;
mod flavor;
mod fork;
mod pointer;
mod reader;

use rcu_reclaim::Rcu;

/// The domain behind every exported function.
#[inline]
fn rcu() -> &'static Rcu {
    Rcu::global()
}

/// Prints `msg` as liburcu prints its errors and aborts the process: for
/// misuse after which continuing would deadlock or free memory in use.
#[cold]
fn die(msg: &str) -> ! {
    eprintln!("[error] rcu-reclaim-urcu: {msg}");
    std::process::abort()
}

/// Runs `f`, turning a panic of the library (misuse it detected and already
/// described through the panic hook) into `None`, so nothing unwinds into C.
fn no_unwind<R>(f: impl FnOnce() -> R) -> Option<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}
