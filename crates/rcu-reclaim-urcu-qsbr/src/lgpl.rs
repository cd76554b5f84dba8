//! The calling thread's liburcu reader block (`urcu_qsbr_reader.ctr`) and
//! the grace-period word (`urcu_qsbr_gp.ctr`), defined in
//! `csrc/lgpl_reader.c`. Programs built with `_LGPL_SOURCE` inline
//! liburcu's quiescent states, which read the word and write the block
//! without calling the library; this library's own calls write the block
//! the same way. The block is the thread's state for grace periods: it is
//! attached to the thread's registration
//! (`QsbrThread::attach_foreign_counter`), where it stands for the
//! registration's own counter, and `urcu_qsbr_gp.ctr` is the domain's
//! foreign grace-period word (`Rcu::publish_foreign_gp_word`). The
//! registration's own online flag is kept in step, for the domain's misuse
//! checks.

use std::cell::Cell;
use std::os::raw::{c_int, c_ulong};
use std::sync::atomic::{fence, AtomicI32, AtomicUsize, Ordering};
use std::sync::Once;

use rcu_reclaim::QsbrThread;

use crate::rcu;

extern "C" {
    fn rcu_reclaim_qsbr_reader_ctr() -> *mut c_ulong;
    fn rcu_reclaim_qsbr_reader_mark(registered: c_int);
    fn rcu_reclaim_qsbr_gp_ctr() -> *mut c_ulong;
    fn rcu_reclaim_qsbr_gp_futex() -> *mut i32;
    fn rcu_reclaim_qsbr_reader_waiting() -> *mut c_int;
}

// `unsigned long` is the word both sides use: as wide as `usize` here.
const _: () = assert!(size_of::<c_ulong>() == size_of::<AtomicUsize>());

/// `urcu_qsbr_gp.ctr`: a process-lifetime `unsigned long`.
fn gp() -> &'static AtomicUsize {
    // SAFETY: a static of the C part, as wide and aligned as `AtomicUsize`.
    unsafe { &*(rcu_reclaim_qsbr_gp_ctr() as *const AtomicUsize) }
}

/// The calling thread's `urcu_qsbr_reader.ctr`: 0 offline, else the
/// grace-period word it last copied.
fn block_ptr() -> *const AtomicUsize {
    // SAFETY: returns the address of the calling thread's thread-local.
    unsafe { rcu_reclaim_qsbr_reader_ctr() as *const AtomicUsize }
}

/// Runs `f` on the calling thread's block.
fn with_block<R>(f: impl FnOnce(&AtomicUsize) -> R) -> R {
    // SAFETY: the calling thread's thread-local (an `unsigned long`, as
    // wide and aligned as `AtomicUsize`), alive while the thread runs,
    // so for the whole call.
    f(unsafe { &*block_ptr() })
}

/// `urcu_qsbr_gp.futex`: -1 while a grace period is parked on it.
fn futex() -> &'static AtomicI32 {
    // SAFETY: an `int32_t` of a process-lifetime static of the C part.
    unsafe { &*(rcu_reclaim_qsbr_gp_futex() as *const AtomicI32) }
}

/// The calling thread's `urcu_qsbr_reader.waiting`.
fn waiting_ptr() -> *const AtomicI32 {
    // SAFETY: returns the address of the calling thread's thread-local
    // (an `int`, as wide and aligned as `AtomicI32`).
    unsafe { rcu_reclaim_qsbr_reader_waiting() as *const AtomicI32 }
}

/// Hands the domain `urcu_qsbr_gp.ctr` and `urcu_qsbr_gp.futex`, once.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    // SAFETY: from now on only the domain writes the word (inlined
    // quiescent states only load it), and only the domain and liburcu's
    // wake-up protocol write the futex word.
    ONCE.call_once(|| unsafe {
        rcu().publish_foreign_gp_word(gp());
        rcu().publish_foreign_futex(futex());
    });
}

/// liburcu's `urcu_qsbr_wake_up_gp`: wakes a grace period parked on the
/// futex word if it raised this thread's `waiting` flag.
fn wake_up_gp() {
    // SAFETY: the calling thread's thread-local, alive for the call.
    let waiting = unsafe { &*waiting_ptr() };
    if waiting.load(Ordering::Relaxed) == 0 {
        return;
    }
    waiting.store(0, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    rcu_reclaim_urcu_common::wake_parked_grace_period(futex());
}

/// Whether the calling thread's block is online.
pub(crate) fn online() -> bool {
    with_block(|b| b.load(Ordering::Relaxed) != 0)
}

/// liburcu's `_urcu_qsbr_thread_offline`: no reference read before is
/// used after.
pub(crate) fn go_offline() {
    fence(Ordering::SeqCst);
    library_writes(|| with_block(|b| b.store(0, Ordering::Relaxed)));
    fence(Ordering::SeqCst);
    wake_up_gp();
}

/// liburcu's `_urcu_qsbr_thread_online`.
pub(crate) fn go_online() {
    library_writes(|| {
        with_block(|b| b.store(gp().load(Ordering::Relaxed), Ordering::Relaxed));
    });
    fence(Ordering::SeqCst);
}

/// liburcu's `_urcu_qsbr_quiescent_state`, on an online thread. `false`
/// on an offline one (nothing done): liburcu's stores the grace-period
/// counter there, which puts the thread online, and the caller does so.
///
/// When the word moved (a grace period waits, as the `call_rcu` threads'
/// do), the slow path reports, then pays a push-back that a `call_rcu`
/// over the mark owed (`reported_quiescent_state`, out of line:
/// the common case, the word unmoved, runs the same instructions as
/// without it).
pub(crate) fn quiescent_state() -> bool {
    with_block(|b| {
        let word = gp().load(Ordering::Relaxed);
        let mine = b.load(Ordering::Relaxed);
        if mine == 0 {
            return false;
        }
        if mine != word {
            fence(Ordering::SeqCst);
            library_writes(|| b.store(word, Ordering::Relaxed));
            fence(Ordering::SeqCst);
            wake_up_gp();
            fence(Ordering::SeqCst);
            reported_quiescent_state();
        }
        true
    })
}

thread_local! {
    /// The block value [`report_due`] last moved the calling thread's
    /// block back to (0: none since the library last wrote the block), and
    /// whether the thread's quiescent states were found, since it last
    /// registered, to bypass the library (inlined by `_LGPL_SOURCE`): then
    /// it moves the block back no more.
    static REWIND: (Cell<usize>, Cell<bool>) = const { (Cell::new(0), Cell::new(false)) };
}

/// `REWIND`'s value while the library writes the block: even, so never a
/// block moved back (an online block is odd).
const WRITING: usize = 2;

/// Runs `write`, the library's own write of the calling thread's block (a
/// quiescent state, going online or offline): a move back made before is
/// over, as it should be. Meanwhile `REWIND` says so, so that a signal
/// handler's `call_rcu` that owes, run between the write and the record of
/// it, neither takes the write for inlined code nor moves the block back
/// under it (`report_due`).
#[inline]
fn library_writes<R>(write: impl FnOnce() -> R) -> R {
    let _ = REWIND.try_with(|(rewound, _)| rewound.set(WRITING));
    let r = write();
    let _ = REWIND.try_with(|(rewound, _)| rewound.set(0));
    r
}

/// Makes the calling (online) thread's next quiescent state take its slow
/// path, where it pays a push-back its `call_rcu` owed
/// (`reported_quiescent_state`): the block, if it holds the
/// current word, goes one grace period back. That only makes grace
/// periods wait for the thread's next quiescent state, as if it had not
/// reported its last (the domain's writers, and liburcu's inlined
/// readers, compare the block with the word: an older epoch holds a
/// grace period up; the block stays odd, so online). The quiescent
/// state's common path is untouched.
///
/// Not on a thread whose quiescent states are inlined (a program built
/// with `_LGPL_SOURCE`): they copy the word and return, never taking the
/// library's slow path, so the debt stays and each `call_rcu` that owed
/// moved the block back again. Such a thread held up nearly every grace
/// period: under liburcu's `test_urcu_hash` (4 readers, 4 writers on two
/// cores) grace periods took about a second and the backlog peaked at
/// 600 MB, against liburcu-qsbr's 18 MB. Found by the block having moved
/// since the last move back while the library wrote it not (the block is
/// the thread's own: nothing else writes it); from then on the thread is
/// not moved back, and keeps one call's wait owed at most.
///
/// Returns whether the debt is paid at the thread's quiescent points:
/// `false` for such a thread (its `call_rcu` then waits itself while
/// memory is short).
pub(crate) fn report_due() -> bool {
    REWIND
        .try_with(|(rewound, inlined)| {
            if !inlined.get() {
                if rewound.get() == WRITING {
                    // A handler run inside the library's own write of the
                    // block.
                    return true;
                }
                let moved_by_others = with_block(|b| {
                    let mine = b.load(Ordering::Relaxed);
                    if rewound.get() != 0 && mine != rewound.get() {
                        return true;
                    }
                    if mine != 0 && mine == gp().load(Ordering::Relaxed) {
                        // The epoch is the word's upper bits
                        // (`(epoch << 1) | 1`): one epoch back, wrapping as
                        // the domain's comparison does.
                        let back = mine.wrapping_sub(2);
                        b.store(back, Ordering::Relaxed);
                        rewound.set(back);
                    }
                    false
                });
                if !moved_by_others {
                    return true;
                }
                inlined.set(true);
                rewound.set(0);
            }
            // Its quiescent states never pay: only what one call owes is
            // kept, for a library `rcu_thread_offline` or unregistration.
            rcu_reclaim_urcu_common::call_rcu::owe_one_push_back_at_most();
            false
        })
        .unwrap_or(true)
}

/// Whether the calling thread's quiescent states were found inlined
/// ([`report_due`]).
#[cfg(test)]
pub(crate) fn found_inlined() -> bool {
    REWIND.with(|(_, inlined)| inlined.get())
}

/// What liburcu's inlined `_urcu_qsbr_quiescent_state` does (a program
/// built with `_LGPL_SOURCE`): copies the word into the block, and wakes a
/// parked grace period, without the library's bookkeeping.
#[cfg(test)]
pub(crate) fn inlined_quiescent_state() {
    with_block(|b| {
        let word = gp().load(Ordering::Relaxed);
        if b.load(Ordering::Relaxed) != word {
            fence(Ordering::SeqCst);
            b.store(word, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            wake_up_gp();
        }
    });
}

/// Whether [`report_due`] moved the calling thread's block back since the
/// library last wrote it.
#[cfg(test)]
pub(crate) fn moved_back() -> bool {
    REWIND.with(|(rewound, _)| rewound.get() != 0)
}

/// The library's write of a quiescent state (the block takes the word),
/// with `handler` run between the write and its record, as a signal
/// handler interrupting it would.
#[cfg(test)]
pub(crate) fn library_quiescent_state_interrupted_by(handler: impl FnOnce()) {
    library_writes(|| {
        with_block(|b| b.store(gp().load(Ordering::Relaxed), Ordering::Relaxed));
        handler();
    });
}

/// The calling thread's block.
#[cfg(test)]
pub(crate) fn block() -> usize {
    with_block(|b| b.load(Ordering::Relaxed))
}

/// Puts the block online and attaches it to `reg`, the calling thread's
/// new registration.
pub(crate) fn attach(reg: &QsbrThread) {
    install();
    go_online();
    // Whether quiescent states are inlined is the registering code's: a
    // thread found so, unregistered, may be registered by other code (a
    // pool thread), whose library quiescent states must be moved back
    // again to pay a push-back.
    let _ = REWIND.try_with(|(_, inlined)| inlined.set(false));
    // SAFETY: the block is this thread's thread-local; `reg` is dropped
    // (which detaches it) no later than the thread's exit.
    unsafe {
        reg.attach_foreign_counter(block_ptr(), waiting_ptr());
        rcu_reclaim_qsbr_reader_mark(1);
    }
}

/// Puts the block offline as the thread unregisters.
pub(crate) fn unregistering() {
    go_offline();
    // SAFETY: the calling thread's own block.
    unsafe { rcu_reclaim_qsbr_reader_mark(0) };
}

/// Pays the push-back that the thread's `call_rcu`s owed while it was
/// online and the backlog was over the mark
/// ([`pay_owed_push_back`](rcu_reclaim_urcu_common::call_rcu::pay_owed_push_back)):
/// offline, it waits for the `call_rcu` thread's batch. Called at
/// quiescent points only (a quiescent state that reported, going offline,
/// unregistering), where the thread holds no reference read before; the
/// debt stays, unpaid, inside a section taken while the thread was not
/// online, and on a `call_rcu` thread.
#[cold]
#[inline(never)]
pub(crate) fn pay_owed_push_back() {
    // Its wait (a futex wait that times out) sets `errno`: the caller's
    // `rcu_quiescent_state` or `rcu_thread_offline` leaves it alone.
    rcu_reclaim_urcu_common::keeping_errno(|| {
        rcu_reclaim_urcu_common::call_rcu::pay_owed_push_back::<crate::Qsbr>()
    });
}

/// After a quiescent state that reported (the grace-period word had
/// moved): pays a push-back the thread owes. Out of line, so that the
/// quiescent state's common path is what it was without it.
///
/// A debt it may not pay here (inside a section taken while the thread
/// was offline) moves the block back again ([`report_due`]), so that the
/// first quiescent state after the section takes this path and pays,
/// whether or not a grace period waits by then.
#[cold]
#[inline(never)]
pub(crate) fn reported_quiescent_state() {
    use rcu_reclaim_urcu_common::call_rcu::owes_push_back;
    if owes_push_back() {
        pay_owed_push_back();
        if owes_push_back() {
            report_due();
        }
    }
}
