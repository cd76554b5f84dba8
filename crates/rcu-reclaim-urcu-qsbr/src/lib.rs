//! # rcu-reclaim-urcu-qsbr
//!
//! A drop-in for liburcu's *QSBR* flavor (`liburcu-qsbr.so.8`), backed by
//! rcu-reclaim's [`Flavor::Qsbr`](rcu_reclaim::Flavor::Qsbr) domain, so C
//! and C++ programs built against `<urcu-qsbr.h>` get pressure-aware
//! reclamation by relinking, or without relinking through
//! `LD_LIBRARY_PATH`.
//!
//! The library exports what a program compiled against liburcu 0.13's
//! headers *without* `_LGPL_SOURCE` calls for the QSBR flavor: the read
//! side (`urcu_qsbr_read_lock`/`unlock`, which such programs inline as
//! empty functions unless built with `DEBUG_RCU`, `urcu_qsbr_read_ongoing`,
//! `urcu_qsbr_quiescent_state`, `urcu_qsbr_thread_offline`/`online`),
//! registration, `synchronize_rcu`, `call_rcu` and its `call_rcu_data`
//! family, `rcu_barrier`, the fork hooks, the `defer_rcu` family, the
//! pointer helpers, `urcu_qsbr_exit` and the `urcu_qsbr_flavor` table; plus
//! liburcu 0.14's polled grace periods, as the memb drop-in does.
//!
//! Everything above the read side (`call_rcu`, `defer_rcu`, the fork
//! hooks...) is the code of the memb drop-in, shared through
//! `rcu-reclaim-urcu-common`; this crate adds the QSBR read side
//! (`reader.rs`) and the flavor table.
//!
//! # Programs built with `_LGPL_SOURCE`
//! Such a program inlines liburcu's read side: its `rcu_quiescent_state`,
//! `rcu_thread_offline`/`online` and `rcu_read_ongoing` read liburcu's
//! grace-period word (`urcu_qsbr_gp`) and write the thread's reader block
//! (the TLS symbol `urcu_qsbr_reader`) directly. This library defines both
//! with liburcu 0.13's layout (`csrc/lgpl_reader.c`), and the block is the
//! thread's state for grace periods whatever wrote it (`lgpl.rs`): the
//! library's own calls write it the same way, and `rcu_register_thread`
//! attaches it to the thread's registration in the domain
//! ([`QsbrThread::attach_foreign_counter`](rcu_reclaim::QsbrThread::attach_foreign_counter)),
//! where it stands for the registration's own counter. A grace period held
//! up by a block parks on `urcu_qsbr_gp.futex` with the block's `waiting`
//! flag raised, and the thread's next quiescent state wakes it, inlined or
//! not, as in liburcu. Such a program's inlined quiescent states and
//! `rcu_thread_offline` never reach the library, so its online threads are
//! not held back by `call_rcu`'s push-back (below), as liburcu holds back
//! no one: the first over-the-mark `call_rcu` moves the thread's block a
//! grace period back, its next inlined quiescent state reports as
//! liburcu's own would (its slow path: three fences), and the library,
//! finding the block moved by no call of its own, moves that thread back
//! no more (each move would hold up a grace period until the thread's
//! next quiescent state) and keeps one call's wait owed at most, paid at a
//! library `rcu_thread_offline` or `rcu_unregister_thread`; while memory
//! is short, its `call_rcu` over the mark takes the wait's time itself,
//! online. Registering again judges the thread afresh.
//!
//! # Semantics, where liburcu leaves them open
//! * A registered thread starts online. `rcu_read_lock` on an online
//!   thread does nothing (as in liburcu); its section lasts until its next
//!   quiescent state or `rcu_thread_offline`.
//! * `rcu_read_lock` on a thread that is not registered, or is offline, is
//!   a bug in liburcu (an assertion in debug builds, no protection at all
//!   otherwise). Here it enters a real read-side section of the domain
//!   (as the memb flavor's, with a fence), which `rcu_read_unlock` ends:
//!   what the thread reads is protected. `rcu_read_ongoing` is 1 online or
//!   inside such a section, else 0 (liburcu returns its reader counter).
//!   Only a program built with `DEBUG_RCU` calls the library for these:
//!   without it, liburcu's header makes `rcu_read_lock`/`unlock` empty
//!   inline functions (with or without `_LGPL_SOURCE`), so no library can
//!   protect such a reader.
//! * `synchronize_rcu`, `rcu_barrier`, `rcu_defer_barrier` and a full
//!   `defer_rcu` queue on an online thread put it offline for the wait and
//!   back online after, as liburcu does; inside a section entered while not
//!   online (which liburcu does not protect), `synchronize_rcu` would wait
//!   for itself: it says so, ends the section for the wait and enters it
//!   again after, and returns, as liburcu's does.
//! * `rcu_unregister_thread` works online or offline (it goes offline
//!   first, as liburcu does); a thread that exits without unregistering is
//!   unregistered at its exit and never holds up a later grace period
//!   (liburcu leaves the dead thread in its registry).
//!   Registering twice only puts the thread online (liburcu would corrupt
//!   its registry); `rcu_quiescent_state`, `rcu_thread_offline` and
//!   `rcu_thread_online` on a thread that is not registered do nothing;
//!   `rcu_quiescent_state` on an offline thread puts it online, as
//!   liburcu's does (it stores the grace-period counter).
//! * `call_rcu` on an online thread never puts it offline (it may be
//!   inside a read-side section). Past the push-back mark (the memb
//!   drop-in's, tighter under a cgroup's memory limit) it owes the wait
//!   that an offline caller makes at once, and pays it, offline, at its
//!   next quiescent state (the owing call moves the thread's reader block
//!   a grace period back, so that this quiescent state takes its slow
//!   path: the common path is unchanged), at `rcu_thread_offline`, or
//!   before `rcu_unregister_thread`; never inside a section taken while
//!   not online, and a fork drops the debt (`lgpl::pay_owed_push_back`).
//!   liburcu-qsbr never holds such a thread back, and a flood of heavy
//!   objects from online threads is OOM-killed in a 100 MiB cgroup.
//! * The `call_rcu` threads are registered and online while they invoke
//!   callbacks, offline otherwise, as liburcu-qsbr's: what a callback reads
//!   is protected until it returns (a callback that waits for a grace
//!   period to end, other than through `synchronize_rcu` or `rcu_barrier`,
//!   which go offline, waits for itself, as with liburcu).
//! * `call_rcu_before_fork` unregisters the calling thread for the fork
//!   and the `after_fork` hooks register it again, online or offline as it
//!   was; in the child, threads that do not exist there never hold up a
//!   grace period (liburcu's child waits forever for a thread that was
//!   online at the fork). Unregistered, an online forking thread passes a
//!   quiescent state there (liburcu's does not): the hooks are called,
//!   as from `pthread_atfork`, where it holds no reference read before.
//! * Where liburcu waits for nothing, the call stays online and is no
//!   quiescent state: `rcu_defer_barrier`, `rcu_defer_barrier_thread` and
//!   `rcu_defer_unregister_thread` with nothing queued (the flush lock
//!   tried, never waited for online), `call_rcu_data_free` of an idle
//!   `call_rcu_data` (its thread stopped online).
//!
//! Every function here is called from C: none unwinds.

mod lgpl;
mod reader;

use std::sync::OnceLock;

use rcu_reclaim::{Config, Rcu};
use rcu_reclaim_urcu_common::{die, Flavor as UrcuFlavor};

/// The QSBR domain behind every exported function.
static DOMAIN: OnceLock<Rcu> = OnceLock::new();

/// The domain, created on first use.
#[inline]
fn rcu() -> &'static Rcu {
    DOMAIN.get_or_init(|| {
        // Reading `/sys` set the caller's `errno` to 0 (liburcu leaves it
        // alone).
        rcu_reclaim_urcu_common::keeping_errno(|| {
            Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Qsbr))
                .unwrap_or_else(|e| die(&format!("cannot create the QSBR domain: {e}")))
        })
    })
}

/// Makes the domain as the library loads, as liburcu sets its flavors up
/// in a constructor: a program's first call may then come from a signal
/// handler (`rcu_read_ongoing`, or a section on a registered thread),
/// which, made on first use, could interrupt the domain's making on its
/// own thread and wait for it for good, or re-enter `malloc` (an audit: 3
/// of 5 runs hung). Making a domain starts no thread.
#[used]
#[link_section = ".init_array"]
static MAKE_DOMAIN_AT_LOAD: extern "C" fn() = make_domain_at_load;

extern "C" fn make_domain_at_load() {
    if rcu_reclaim_urcu_common::no_unwind(rcu).is_none() {
        die("cannot create the QSBR domain as the library loads");
    }
}

/// The QSBR flavor, for the shared half: an online thread goes offline for
/// the waits, and only a section entered while not online blocks them.
struct Qsbr;

impl UrcuFlavor for Qsbr {
    fn rcu() -> &'static Rcu {
        rcu()
    }

    fn in_read_section() -> bool {
        reader::in_raw_section()
    }

    fn offline_while<R>(f: impl FnOnce() -> R) -> R {
        reader::offline_while(f)
    }

    fn outside_sections<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
        Some(reader::without_raw_sections(what, f))
    }

    fn online() -> bool {
        reader::online()
    }

    fn push_back_owed() -> bool {
        lgpl::report_due()
    }

    fn before_fork() {
        // As memb's: finish a hand-over another thread may be in the middle
        // of, or the child's call_rcu thread waits for it for ever.
        lgpl::install();
        reader::before_fork();
    }

    fn after_fork() {
        reader::after_fork();
    }

    fn register_callback_thread() {
        reader::urcu_qsbr_register_thread();
        reader::urcu_qsbr_thread_offline();
    }

    fn callback_thread_online() {
        reader::urcu_qsbr_thread_online();
    }

    fn callback_thread_offline() {
        reader::urcu_qsbr_thread_offline();
    }
}

/// `urcu_qsbr_call_rcu` and the rest of the shared half, under QSBR names.
mod common {
    rcu_reclaim_urcu_common::export_flavor!("qsbr", crate::Qsbr, pointer_helpers);
}
