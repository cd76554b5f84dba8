//! Programs built with `_LGPL_SOURCE`: liburcu's headers then inline the
//! memb read side, which reads `urcu_memb_gp.ctr` and
//! `urcu_memb_has_sys_membarrier` and writes the calling thread's
//! `urcu_memb_reader.ctr` without calling the library. Those symbols are
//! defined in `csrc/lgpl_reader.c`; here the domain takes them over:
//! `urcu_memb_gp.ctr` becomes the domain's foreign grace-period word
//! (`Rcu::publish_foreign_gp_word`), and a registering thread's
//! `urcu_memb_reader.ctr` one of its foreign reader counters
//! (`Rcu::attach_foreign_reader`), which every grace period then waits for.

use std::cell::Cell;
use std::os::raw::{c_int, c_ulong};
use std::sync::atomic::{AtomicI32, AtomicUsize};
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

thread_local! {
    /// Whether this thread's `urcu_memb_reader` is attached to the domain.
    static ATTACHED: Cell<bool> = const { Cell::new(false) };
}

/// Hands the domain `urcu_memb_gp.ctr` and `urcu_memb_gp.futex`, once, and
/// tells inlined readers whether grace periods issue `membarrier()` (then a
/// compiler barrier is their fence; else they issue full fences).
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `urcu_memb_gp.ctr` is a process-lifetime `unsigned long`
        // (as wide and aligned as `AtomicUsize`), and from now on only the
        // domain writes it (inlined readers only load it).
        unsafe {
            let word = &*(rcu_reclaim_memb_gp_ctr() as *const AtomicUsize);
            rcu().publish_foreign_gp_word(word);
            // `urcu_memb_gp.futex`: an `int32_t` of the same static,
            // written only by the domain and by inlined unlocks that wake
            // it (liburcu's protocol).
            rcu().publish_foreign_futex(&*(rcu_reclaim_memb_gp_futex() as *const AtomicI32));
            rcu_reclaim_memb_set_has_sys_membarrier(c_int::from(rcu().flavor() == Flavor::Memb));
        }
    });
}

/// Attaches the calling thread's `urcu_memb_reader.ctr` to the domain (it
/// is registered by then).
pub(crate) fn attach() {
    install();
    // SAFETY: the block is this thread's thread-local, alive until the
    // thread exits, after its registration ends (which detaches it).
    unsafe {
        rcu().attach_foreign_reader(rcu_reclaim_memb_reader_ctr() as *const AtomicUsize);
        rcu_reclaim_memb_reader_mark(1);
    }
    let _ = ATTACHED.try_with(|a| a.set(true));
}

/// Marks the calling thread's block unregistered (its registration has
/// ended, which detached it).
pub(crate) fn unregistered() {
    let _ = ATTACHED.try_with(|a| a.set(false));
    // SAFETY: the calling thread's own block.
    unsafe { rcu_reclaim_memb_reader_mark(0) };
}

/// Whether the calling thread is inside an inlined read-side section.
pub(crate) fn in_section() -> bool {
    ATTACHED.try_with(Cell::get).unwrap_or(false) && rcu().foreign_reader_in_section()
}
