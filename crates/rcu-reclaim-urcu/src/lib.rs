//! # rcu-reclaim-urcu
//!
//! A drop-in for liburcu's *memb* flavor (`liburcu-memb.so.8`), backed by
//! rcu-reclaim, so C and C++ programs built against liburcu get
//! pressure-aware reclamation by relinking, or without relinking through
//! `LD_LIBRARY_PATH`.
//!
//! The library exports what a program compiled against liburcu 0.13's
//! headers calls for the memb flavor, with or without `_LGPL_SOURCE` (the read
//! side, `synchronize_rcu`, `call_rcu` and its `call_rcu_data` family,
//! `rcu_barrier`, the fork hooks, the `defer_rcu` family, the pointer
//! helpers, the `urcu_memb_flavor` table) plus liburcu 0.14's polled grace
//! periods, and, in `include/rcu_reclaim.h`, what liburcu lacks: pressure
//! signals, the backlog in callbacks and bytes, `run_callbacks` for a
//! reclaimer, and statistics as JSON.
//!
//! Everything runs on the process-wide domain [`rcu_reclaim::Rcu::global`].
//! Programs built with `_LGPL_SOURCE` inline liburcu's read side, which
//! reads and writes three symbols of liburcu's directly (`urcu_memb_gp`,
//! the thread-local `urcu_memb_reader`, `urcu_memb_has_sys_membarrier`):
//! the library defines them with liburcu's layout (`csrc/lgpl_reader.c`)
//! and its grace periods wait for the sections they record on every thread
//! registered with `rcu_register_thread` (`lgpl.rs`), woken by their
//! outermost unlocks as liburcu's waiters are. A thread's block is let go
//! with its registration, at the latest when its thread-locals are
//! destroyed: an inlined section in a pthread key destructor, which runs
//! later, is not waited for (liburcu waits for it until the thread
//! unregisters).
//!
//! `call_rcu` and its `call_rcu_data` family, `rcu_barrier`, `defer_rcu`,
//! the fork hooks and the pointer helpers are written once, in
//! `rcu-reclaim-urcu-common`, for this library and the QSBR drop-in
//! (`rcu-reclaim-urcu-qsbr`); this crate adds the memb read side
//! (`reader.rs`), the flavor table and the extensions.
//!
//! Every function here is called from C: none unwinds. Misuse that liburcu
//! reports and survives (`rcu_barrier` inside a read-side section) prints an
//! `[error]` line and returns; misuse that would deadlock or corrupt
//! (`synchronize_rcu` inside a registered thread's section, an unbalanced
//! `rcu_read_unlock`) prints the reason and aborts. `synchronize_rcu`
//! inside the section of a thread that never registered, which liburcu
//! neither protects nor waits for, ends that section for the wait, says
//! so, and returns, as liburcu's does.

mod ext;
mod lgpl;
mod reader;

use rcu_reclaim::Rcu;
use rcu_reclaim_urcu_common::{die, no_unwind, Flavor};

/// The domain behind every exported function.
#[inline]
fn rcu() -> &'static Rcu {
    match DOMAIN.get() {
        Some(rcu) => rcu,
        None => first_use(),
    }
}

/// The domain, once made.
static DOMAIN: std::sync::OnceLock<&'static Rcu> = std::sync::OnceLock::new();

/// Makes the domain as the library loads, as liburcu sets its flavors up
/// in a constructor: a program's first call may then come from a signal
/// handler (liburcu's `rcu_read_ongoing` or a section, on a registered
/// thread), which, made on first use, could interrupt the domain's making
/// on its own thread and wait for it for good, or re-enter `malloc` (an
/// audit: 4 of 10 runs hung). Making a domain starts no thread.
#[used]
#[link_section = ".init_array"]
static MAKE_DOMAIN_AT_LOAD: extern "C" fn() = make_domain_at_load;

extern "C" fn make_domain_at_load() {
    if no_unwind(first_use).is_none() {
        die("cannot create the domain as the library loads");
    }
}

/// Makes the domain, keeping the caller's `errno` (reading `/sys` set it to
/// 0 under the program's first call, where liburcu leaves it alone).
#[cold]
#[inline(never)]
fn first_use() -> &'static Rcu {
    rcu_reclaim_urcu_common::keeping_errno(|| *DOMAIN.get_or_init(Rcu::global))
}

/// Whether the calling thread is inside a read-side section: one entered
/// through the library, or one inlined by a program built with
/// `_LGPL_SOURCE`.
fn in_read_section() -> bool {
    rcu().in_read_section() || lgpl::in_section()
}

/// The memb flavor, for the shared half: any section blocks a wait, and
/// there is nothing to put offline.
struct Memb;

impl Flavor for Memb {
    fn rcu() -> &'static Rcu {
        rcu()
    }

    fn in_read_section() -> bool {
        in_read_section()
    }

    fn offline_while<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    fn before_fork() {
        // Another thread may be handing the words over right now (its
        // first registration): the child's call_rcu thread would wait for
        // that hand-over for ever.
        lgpl::install();
    }

    fn register_callback_thread() {
        // As `rcu_register_thread` (the thread has its slot already): a
        // callback's inlined sections are recorded in the thread's block,
        // which grace periods then wait for.
        lgpl::attach();
    }
}

/// `urcu_memb_call_rcu` and the rest of the shared half, under memb names.
mod common {
    rcu_reclaim_urcu_common::export_flavor!("memb", crate::Memb, pointer_helpers);
}
