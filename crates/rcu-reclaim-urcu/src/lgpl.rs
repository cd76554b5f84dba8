//! Programs built with `_LGPL_SOURCE`: liburcu's headers then inline the
//! memb read side, which reads `urcu_memb_gp.ctr` and
//! `urcu_memb_has_sys_membarrier` and writes the calling thread's
//! `urcu_memb_reader.ctr` without calling the library. Those symbols are
//! defined in `csrc/lgpl_reader.c`; here the domain takes them over:
//! `urcu_memb_gp.ctr` becomes the domain's foreign grace-period word
//! (`Rcu::publish_foreign_gp_word`), `urcu_memb_gp.futex` the word a grace
//! period parks on (`Rcu::publish_foreign_futex`), and a registering
//! thread's `urcu_memb_reader.ctr` one of its foreign reader counters
//! (`Rcu::attach_foreign_reader`), which every grace period then waits for.
//!
//! On a registered thread the library's own `rcu_read_lock`/`unlock` run
//! the same protocol on the same block, so that inlined and exported calls
//! nest and pair with each other as they do on liburcu (a program may
//! build some files with `_LGPL_SOURCE` and some without). Elsewhere (a
//! thread that never registered, or whose registration has ended at its
//! exit) they take sections of the domain itself.
//!
//! A thread's block is let go with its registration, at the latest as its
//! thread-locals are destroyed (`Rcu::attach_foreign_reader`): a section
//! still open in it then no longer holds grace periods up, though the
//! thread's later pthread key destructors might read under it (a section
//! of the domain left open by an exiting thread holds them up until the
//! thread is gone).

use std::cell::Cell;
use std::os::raw::{c_int, c_ulong};
use std::sync::atomic::{
    compiler_fence, fence, AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering,
};
use std::sync::Once;

use rcu_reclaim::Flavor;

use crate::rcu;

extern "C" {
    fn rcu_reclaim_memb_reader_ctr() -> *mut c_ulong;
    fn rcu_reclaim_memb_reader_mark(registered: c_int);
    fn rcu_reclaim_memb_gp_ctr() -> *mut c_ulong;
    fn rcu_reclaim_memb_gp_futex() -> *mut i32;
    fn rcu_reclaim_memb_set_has_sys_membarrier(has: c_int);
}

// `unsigned long` is the word both sides use: as wide as `usize` here.
const _: () = assert!(size_of::<c_ulong>() == size_of::<AtomicUsize>());

/// liburcu's `URCU_GP_CTR_NEST_MASK`: the nesting in a reader word.
const NEST_MASK: usize = (1 << (usize::BITS / 2)) - 1;

/// `urcu_memb_gp.ctr` and `.futex`, once installed (null before).
static GP_CTR: AtomicPtr<AtomicUsize> = AtomicPtr::new(std::ptr::null_mut());
static GP_FUTEX: AtomicPtr<AtomicI32> = AtomicPtr::new(std::ptr::null_mut());

/// Whether grace periods issue `membarrier()` (the domain's memb flavor):
/// then a reader's fence is a compiler barrier.
static HAS_MEMBARRIER: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The calling thread's `urcu_memb_reader.ctr` while it is attached to
    /// the domain (registered with `rcu_register_thread`), else null. No
    /// destructor: readable to the thread's very end.
    static ATTACHED: Cell<*const AtomicUsize> = const { Cell::new(std::ptr::null()) };
    /// The calling thread's block once it has ever been attached, never
    /// cleared: a section recorded there and still open after `ATTACHED`
    /// was cleared (at thread exit) is ended there.
    static BLOCK: Cell<*const AtomicUsize> = const { Cell::new(std::ptr::null()) };
    /// Clears `ATTACHED` as the thread's thread-locals are destroyed: it
    /// is set up after the thread registers in the domain, so it goes
    /// first, and a read lock in a later destructor takes a section of the
    /// domain (which still protects it) instead of the detached block.
    static DETACH_AT_EXIT: DetachAtExit = const { DetachAtExit };
    /// The thread was registered when its thread-locals were destroyed:
    /// its exit ended the registration, and an `rcu_unregister_thread` in
    /// a later pthread key destructor pairs with it (liburcu keeps the
    /// thread registered until then). No destructor.
    static EXITED_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

struct DetachAtExit;

impl Drop for DetachAtExit {
    fn drop(&mut self) {
        let was = ATTACHED.try_with(|a| a.replace(std::ptr::null()));
        if was.is_ok_and(|b| !b.is_null()) {
            let _ = EXITED_REGISTERED.try_with(|e| e.set(true));
        }
    }
}

/// Whether the thread's exit ended its registration (see
/// `EXITED_REGISTERED`); clears the mark, so that it pairs with one
/// `rcu_unregister_thread` only.
pub(crate) fn take_exited_registered() -> bool {
    EXITED_REGISTERED
        .try_with(|e| e.replace(false))
        .unwrap_or(false)
}

/// The calling thread's block, if attached.
fn attached() -> Option<&'static AtomicUsize> {
    let p = ATTACHED.try_with(Cell::get).ok()?;
    // SAFETY: non-null only while the thread runs and its block (a
    // thread-local `unsigned long`, as wide and aligned as `AtomicUsize`)
    // is attached; the reference does not outlive the caller's call.
    unsafe { p.as_ref() }
}

/// Hands the domain `urcu_memb_gp.ctr` and `urcu_memb_gp.futex`, once, and
/// tells inlined readers whether grace periods issue `membarrier()` (then a
/// compiler barrier is their fence; else they issue full fences).
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `urcu_memb_gp` is a process-lifetime static of the C
        // part: `ctr` an `unsigned long` (as wide and aligned as
        // `AtomicUsize`) that only the domain writes from now on (inlined
        // readers only load it), `futex` an `int32_t` written only by the
        // domain and by readers following liburcu's wake-up protocol.
        unsafe {
            let word = &*(rcu_reclaim_memb_gp_ctr() as *const AtomicUsize);
            let futex = &*(rcu_reclaim_memb_gp_futex() as *const AtomicI32);
            rcu().publish_foreign_gp_word(word);
            rcu().publish_foreign_futex(futex);
            let memb = rcu().flavor() == Flavor::Memb;
            HAS_MEMBARRIER.store(memb, Ordering::Relaxed);
            GP_CTR.store(std::ptr::from_ref(word).cast_mut(), Ordering::Release);
            GP_FUTEX.store(std::ptr::from_ref(futex).cast_mut(), Ordering::Release);
            rcu_reclaim_memb_set_has_sys_membarrier(c_int::from(memb));
        }
    });
}

/// Attaches the calling thread's `urcu_memb_reader.ctr` to the domain (it
/// is registered by then).
pub(crate) fn attach() {
    install();
    // SAFETY: the calling thread's thread-local.
    let block = unsafe { rcu_reclaim_memb_reader_ctr() } as *const AtomicUsize;
    // SAFETY: the block is this thread's thread-local, alive until the
    // thread exits, after its registration ends (which detaches it).
    unsafe {
        rcu().attach_foreign_reader(block);
        rcu_reclaim_memb_reader_mark(1);
    }
    let _ = ATTACHED.try_with(|a| a.set(block));
    let _ = BLOCK.try_with(|a| a.set(block));
    // Set up now, after the registration: destroyed before it.
    let _ = DETACH_AT_EXIT.try_with(|_| ());
}

/// Whether the calling thread is registered with `rcu_register_thread`
/// (and has not unregistered).
pub(crate) fn registered() -> bool {
    attached().is_some()
}

/// Marks the calling thread's block unregistered (its registration has
/// ended, which detached it).
pub(crate) fn unregistered() {
    let _ = ATTACHED.try_with(|a| a.set(std::ptr::null()));
    // SAFETY: the calling thread's own block.
    unsafe { rcu_reclaim_memb_reader_mark(0) };
}

/// Whether the calling thread is inside a section recorded in its block
/// (inlined, or entered by this library's `rcu_read_lock` on a registered
/// thread). A block taken below 0 by a stray inlined `rcu_read_unlock` is
/// set back to 0 first ([`repair_underflow`]).
pub(crate) fn in_section() -> bool {
    depth() != 0 && !repair_underflow()
}

/// Whether the calling thread's block said it left more sections than it
/// entered: an inlined `rcu_read_unlock` without its `rcu_read_lock`
/// takes the word below 0, which reads as a section nested half a word
/// deep (liburcu does not check). Then says so, once per process, and
/// sets the word back to 0 (no section), as if the stray unlock had not
/// run: the thread's later calls, and every grace period, see it outside
/// any section. No thread nests that deep.
pub(crate) fn repair_underflow() -> bool {
    let Some(block) = attached() else {
        return false;
    };
    if block.load(Ordering::Relaxed) & NEST_MASK <= NEST_MASK / 2 {
        return false;
    }
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "[error] rcu-reclaim-urcu: rcu_read_unlock() was called more often than \
             rcu_read_lock() on a thread (a program built with _LGPL_SOURCE: its inlined \
             rcu_read_unlock() took the thread's reader count below zero, which reads as a \
             section that never ends). The count is set back to zero; balance every \
             rcu_read_unlock() with an rcu_read_lock()"
        );
    }
    block.store(0, Ordering::SeqCst);
    true
}

/// The nesting depth of the calling thread's section in its block (0 on a
/// thread without one).
pub(crate) fn depth() -> usize {
    attached().map_or(0, |b| b.load(Ordering::Relaxed) & NEST_MASK)
}

/// liburcu's `urcu_memb_smp_mb_slave`.
#[inline]
fn mb_slave() {
    if HAS_MEMBARRIER.load(Ordering::Relaxed) {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The library's `rcu_read_lock` on a registered thread: liburcu's
/// `_urcu_memb_read_lock` on the thread's block. Returns `false`, doing
/// nothing, where the block is not attached.
#[inline]
pub(crate) fn read_lock() -> bool {
    let Some(b) = attached() else {
        return false;
    };
    compiler_fence(Ordering::SeqCst);
    let tmp = b.load(Ordering::Relaxed);
    if tmp & NEST_MASK == 0 {
        let gp = GP_CTR.load(Ordering::Acquire);
        // SAFETY: set by `install` (which `attach` ran) to a
        // process-lifetime static.
        b.store(unsafe { &*gp }.load(Ordering::Relaxed), Ordering::Relaxed);
        mb_slave();
    } else {
        b.store(tmp + 1, Ordering::Relaxed);
    }
    true
}

/// The library's `rcu_read_unlock` where the thread's block is in a
/// section: liburcu's `_urcu_memb_read_unlock` (the outermost one wakes a
/// grace period parked on `urcu_memb_gp.futex`). Returns `false`, doing
/// nothing, where the block is not attached or in no section.
#[inline]
pub(crate) fn read_unlock() -> bool {
    let b = match attached() {
        Some(b) => b,
        None => {
            let p = BLOCK.try_with(Cell::get).unwrap_or(std::ptr::null());
            // SAFETY: the calling thread's block (see `attached`), alive
            // while the thread runs.
            match unsafe { p.as_ref() } {
                Some(b) => b,
                None => return false,
            }
        }
    };
    let tmp = b.load(Ordering::Relaxed);
    match tmp & NEST_MASK {
        0 => false,
        1 => {
            mb_slave();
            b.store(tmp - 1, Ordering::Relaxed);
            mb_slave();
            wake_up_gp();
            compiler_fence(Ordering::SeqCst);
            true
        }
        _ => {
            b.store(tmp - 1, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            true
        }
    }
}

/// liburcu's `urcu_common_wake_up_gp`: wakes a grace period parked on
/// `urcu_memb_gp.futex`.
fn wake_up_gp() {
    let f = GP_FUTEX.load(Ordering::Acquire);
    // SAFETY: set by `install` to a process-lifetime static (null only
    // before it, when no grace period can be parked on it).
    if let Some(f) = unsafe { f.as_ref() } {
        rcu_reclaim_urcu_common::wake_parked_grace_period(f);
    }
}
